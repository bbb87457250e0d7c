//! `FiftyOneTransformerForSemanticSegmentation`: FiftyOne's
//! `fiftyone.utils.transformers` semantic segmenter on libtorch (CPU), for
//! the Hugging Face repos whose architecture zoo builds
//! (`families/transformers/segmenter.rs`: SegFormer).
//!
//! As FiftyOne 1.22.1 runs it: the repo's image processor, the network's
//! `logits` (`[N, classes, h, w]`, at the network's own resolution: for
//! SegFormer a quarter of the processed image, which FiftyOne's
//! `TransformersSemanticSegmentatorOutputProcessor` does not upsample), then
//! `SemanticSegmenterOutputProcessor`: a softmax over classes unless
//! `has_softmax_out`, NumPy's argmax as an `int64` mask, plus 1 with
//! `no_background_cls`, and pixels below a `confidence_thresh` set to 0.
//! The built-in entries set `no_background_cls: true` and
//! `has_softmax_out: false`.
//!
//! The model's files are the downloaded repo (a folder), or the config's
//! `model_path`.

use std::sync::Arc;

use ndarray::Array4;
use serde::Deserialize;
use serde_json::{Map, Value};
use tch::{Kind, Tensor};
use zoo_model_core::{Input, InputData, Model, ModelError, ModelSpec, Prediction, Preprocess};
use zoo_output_processors::SemanticSegmenter;

use crate::config::TorchImageModelConfig;
use crate::families::transformers::HfError;
use crate::families::transformers::processor::ImageProcessor;
use crate::families::transformers::segmenter::HfSegmenter;
use crate::model::chain;

/// The type names this model answers to.
pub const SEGMENTER_TYPE_NAMES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneTransformerForSemanticSegmentation",
    "FiftyOneTransformerForSemanticSegmentation",
];

/// The output processor FiftyOne's class uses, the only one zoo runs here.
const SEGMENTER_OUTPUT_PROCESSOR: &str =
    "fiftyone.utils.transformers.TransformersSemanticSegmentatorOutputProcessor";

/// FiftyOne's `FiftyOneTransformerConfig` fields zoo reads besides
/// [`TorchImageModelConfig`]'s.
#[derive(Debug, Default, Deserialize)]
struct SegmenterFields {
    #[serde(default)]
    transformers_processor_kwargs: Option<Map<String, Value>>,
    #[serde(default)]
    transforms_args: Option<Map<String, Value>>,
    #[serde(default)]
    entrypoint_fcn: Option<Value>,
    #[serde(default)]
    output_processor_args: Option<Map<String, Value>>,
}

/// FiftyOne's transformers semantic segmenter (see the module docs).
pub struct TorchTransformerSegmenter {
    network: HfSegmenter,
    preprocessing: Arc<ImageProcessor>,
    segmenter: SemanticSegmenter,
    /// `not has_softmax_out`.
    softmax: bool,
}

impl std::fmt::Debug for TorchTransformerSegmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchTransformerSegmenter")
            .field("network", &self.network)
            .field("segmenter", &self.segmenter)
            .finish_non_exhaustive()
    }
}

impl TorchTransformerSegmenter {
    /// Builds the model a spec describes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::model::cpu_threads();
        let config = TorchImageModelConfig::for_native_model(&spec.config)?;
        let fields: SegmenterFields = crate::transformers_spec::fields(spec)?;
        crate::transformers_spec::refuse_entrypoint(
            fields.entrypoint_fcn.as_ref(),
            "transformers semantic segmenters",
        )?;
        if let Some(processor) = config.output_processor_cls.as_deref()
            && processor != SEGMENTER_OUTPUT_PROCESSOR
            && processor != "TransformersSemanticSegmentatorOutputProcessor"
        {
            return Err(ModelError::unsupported(format!(
                "`output_processor_cls` `{processor}`: zoo runs transformers semantic segmenters with `{SEGMENTER_OUTPUT_PROCESSOR}` only"
            )));
        }
        if let Some(args) = &fields.output_processor_args
            && let Some(key) = args.get("logits_key").filter(|key| !key.is_null())
            && key.as_str() != Some("logits")
        {
            return Err(ModelError::unsupported(format!(
                "`output_processor_args.logits_key` `{key}`: the network's output has `logits` only"
            )));
        }
        crate::transformers_spec::refuse_processor_kwargs(
            fields.transformers_processor_kwargs.as_ref(),
        )?;
        if let Some(args) = &fields.transforms_args
            && let Some((key, value)) = args
                .iter()
                .find(|(key, value)| !(key.as_str() == "use_fast" && value.as_bool() == Some(true)))
        {
            return Err(ModelError::unsupported(format!(
                "`transforms_args.{key}` (`{value}`): zoo runs the repo's processor with transformers' torchvision backend (`use_fast: true`, FiftyOne's default) only; remove it"
            )));
        }
        if let Some(device) = config.device.as_deref()
            && !device.is_empty()
            && device != "cpu"
        {
            tracing::warn!(
                device,
                "zoo runs transformers semantic segmenters on the CPU"
            );
        }
        let dir = config.model_path(spec.model_path.as_deref())?;
        let network = HfSegmenter::load(&dir).map_err(HfError::into_model_error)?;
        let args = &config.output_processor_args;
        Ok(TorchTransformerSegmenter {
            preprocessing: Arc::new(network.processor.clone()),
            network,
            segmenter: SemanticSegmenter {
                no_background_cls: args.no_background_cls.unwrap_or(false),
                confidence_thresh: config.confidence_thresh,
            },
            softmax: !args.has_softmax_out.unwrap_or(true),
        })
    }

    /// The network's labels (`id2label` in index order).
    pub fn labels(&self) -> &[String] {
        &self.network.labels
    }

    /// `[N, 3, H, W]` from the inputs, all of one size, at least the
    /// network's smallest input.
    fn batch(&self, inputs: &[Input]) -> Result<Tensor, ModelError> {
        let [c, h, w] = inputs
            .first()
            .map(|input| input.shape)
            .ok_or_else(|| ModelError::inference("empty batch".into()))?;
        if inputs.iter().any(|input| input.shape != [c, h, w]) {
            return Err(ModelError::inference(
                "inputs of different sizes in one batch".into(),
            ));
        }
        let min = self.network.min_input();
        if (h as i64) < min || (w as i64) < min {
            return Err(ModelError::inference(format!(
                "`{}` needs images of at least {min}x{min} pixels after its processor, got {w}x{h}",
                self.network.class
            )));
        }
        let mut values = Vec::with_capacity(inputs.len() * c * h * w);
        for input in inputs {
            match &input.data {
                InputData::Values(data) if data.len() == c * h * w => {
                    values.extend_from_slice(data)
                }
                _ => {
                    return Err(ModelError::inference(format!(
                        "an input of shape {c}x{h}x{w} does not hold its {} values",
                        c * h * w
                    )));
                }
            }
        }
        Tensor::f_from_slice(&values)
            .and_then(|tensor| tensor.f_view([inputs.len() as i64, c as i64, h as i64, w as i64]))
            .map_err(|err| ModelError::inference(err.to_string()))
    }

    /// The network's `logits` (`[N, classes, h, w]`) for `inputs`, as
    /// FiftyOne's processor receives them.
    pub fn logits(&self, inputs: &[Input]) -> Result<Array4<f32>, ModelError> {
        let batch = self.batch(inputs)?;
        let logits = self
            .network
            .forward(&batch)
            .map_err(|err| ModelError::inference(chain(&err)))?;
        to_array4(&logits)
    }
}

/// A `[N, C, H, W]` tensor as an array.
fn to_array4(tensor: &Tensor) -> Result<Array4<f32>, ModelError> {
    let failed = |message: String| ModelError::inference(message);
    let size = tensor.size();
    let [n, c, h, w] = size[..] else {
        return Err(failed(format!(
            "expected [N, C, H, W] logits, got {size:?}"
        )));
    };
    let values = tensor
        .f_to_kind(Kind::Float)
        .and_then(|tensor| tensor.f_contiguous())
        .and_then(|tensor| tensor.f_flatten(0, -1))
        .and_then(Vec::<f32>::try_from)
        .map_err(|err| failed(err.to_string()))?;
    Array4::from_shape_vec((n as usize, c as usize, h as usize, w as usize), values)
        .map_err(|err| failed(err.to_string()))
}

impl Model for TorchTransformerSegmenter {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.preprocessing.clone()
    }

    /// Ragged when the processor keeps aspect ratios, as FiftyOne's
    /// `_processor_output_is_ragged` says.
    fn ragged_batches(&self) -> bool {
        self.preprocessing.fixed_size().is_none()
    }

    fn set_workers(&mut self, workers: usize) {
        crate::model::share_cpu_threads(workers);
    }

    fn set_confidence_thresh(&mut self, threshold: f64) -> bool {
        self.segmenter.confidence_thresh = Some(threshold as f32);
        true
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.batch(inputs)?;
        let logits = self
            .network
            .forward(&batch)
            .map_err(|err| ModelError::inference(chain(&err)))?;
        let scores = if self.softmax {
            logits
                .f_softmax(1, Kind::Float)
                .map_err(|err| ModelError::inference(err.to_string()))?
        } else {
            logits
        };
        let scores = to_array4(&scores)?;
        Ok(self
            .segmenter
            .process(scores.view())
            .into_iter()
            .map(|label| Prediction::Label(Some(label)))
            .collect())
    }
}
