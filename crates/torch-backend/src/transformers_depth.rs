//! `FiftyOneTransformerForDepthEstimation`: FiftyOne's
//! `fiftyone.utils.transformers` depth estimator on libtorch (CPU), for the
//! Hugging Face repos whose architecture zoo builds
//! (`families/transformers/depth_anything.rs`): the repo's image processor
//! (DPT's), the network, and FiftyOne's
//! `TransformersDepthEstimatorOutputProcessor`: the processor's
//! `post_process_depth_estimation` without target sizes (the predicted
//! depth at the processed input's size, not resized to the image), divided
//! by its maximum, stored as a `Heatmap` whose map is `float32` and whose
//! `range` is unset.
//!
//! FiftyOne's processor does not pad (`do_pad` false, which zoo requires),
//! so images of other sizes make other input sizes; zoo batches equal sizes
//! only, which gives what FiftyOne's default (one image per batch) gives.
//!
//! The model's files are the downloaded repo (a folder), or the config's
//! `model_path`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};
use tch::Tensor;
use zoo_model_core::{
    Input, InputData, Label, Model, ModelError, ModelSpec, NpyArray, Prediction, Preprocess,
};

use crate::config::TorchImageModelConfig;
use crate::families::transformers::HfError;
use crate::families::transformers::depth_anything::HfDepthEstimator;
use crate::families::transformers::processor::ImageProcessor;
use crate::model::chain;

/// The type names this model answers to.
pub const DEPTH_TYPE_NAMES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneTransformerForDepthEstimation",
    "FiftyOneTransformerForDepthEstimation",
];

/// The output processor FiftyOne's class uses, the only one zoo runs here.
const DEPTH_OUTPUT_PROCESSOR: &str =
    "fiftyone.utils.transformers.TransformersDepthEstimatorOutputProcessor";

/// FiftyOne's `FiftyOneTransformerConfig` fields zoo reads besides
/// [`TorchImageModelConfig`]'s.
#[derive(Debug, Default, Deserialize)]
struct DepthFields {
    #[serde(default)]
    transformers_processor_kwargs: Option<Map<String, Value>>,
    #[serde(default)]
    transforms_args: Option<Map<String, Value>>,
    #[serde(default)]
    entrypoint_fcn: Option<Value>,
}

/// FiftyOne's transformers depth estimator (see the module docs).
pub struct TorchTransformerDepthModel {
    network: HfDepthEstimator,
    preprocessing: Arc<ImageProcessor>,
}

impl std::fmt::Debug for TorchTransformerDepthModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchTransformerDepthModel")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl TorchTransformerDepthModel {
    /// Builds the model a spec describes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::model::cpu_threads();
        let config = TorchImageModelConfig::for_native_model(&spec.config)?;
        let fields: DepthFields = crate::transformers_spec::fields(spec)?;
        crate::transformers_spec::refuse_entrypoint(
            fields.entrypoint_fcn.as_ref(),
            "transformers depth estimators",
        )?;
        crate::transformers_spec::check_output_processor(
            config.output_processor_cls.as_deref(),
            DEPTH_OUTPUT_PROCESSOR,
            "transformers depth estimators",
        )?;
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
            tracing::warn!(device, "zoo runs transformers depth estimators on the CPU");
        }
        let dir = config.model_path(spec.model_path.as_deref())?;
        let network = HfDepthEstimator::load(&dir).map_err(HfError::into_model_error)?;
        Ok(TorchTransformerDepthModel {
            preprocessing: Arc::new(network.processor.clone()),
            network,
        })
    }

    /// `[N, 3, H, W]` from the inputs, all of one size, at least one patch.
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
        let patch = self.network.network.patch_size();
        if (h as i64) < patch || (w as i64) < patch {
            return Err(ModelError::inference(format!(
                "`{}` needs images of at least {patch}x{patch} pixels after its processor, got {w}x{h}",
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
}

/// FiftyOne's `Heatmap(map=depth / depth.max())` of one `[H, W]` depth map,
/// in `float32` as NumPy divides it.
fn heatmap(depth: &Tensor) -> Result<Label, tch::TchError> {
    let size = depth.size();
    let [height, width] = size[..] else {
        return Err(tch::TchError::Shape(format!(
            "expected an [H, W] depth map, got {size:?}"
        )));
    };
    let values = Vec::<f32>::try_from(depth.f_contiguous()?.f_flatten(0, -1)?)?;
    let max = values
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, |max, value| {
            // NumPy's max: a NaN wins.
            if value.is_nan() || max.is_nan() {
                f32::NAN
            } else {
                max.max(value)
            }
        });
    let data = values
        .iter()
        .flat_map(|value| (value / max).to_le_bytes())
        .collect();
    Ok(Label::Heatmap {
        map: NpyArray {
            dtype: "<f4".to_owned(),
            shape: vec![height as usize, width as usize],
            data,
        },
        range: None,
    })
}

impl Model for TorchTransformerDepthModel {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.preprocessing.clone()
    }

    /// Images of other sizes are other inputs: equal sizes run together.
    fn ragged_batches(&self) -> bool {
        self.preprocessing.fixed_size().is_none()
    }

    fn set_workers(&mut self, workers: usize) {
        crate::model::share_cpu_threads(workers);
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.batch(inputs)?;
        let depth = self
            .network
            .network
            .forward(&batch)
            .map_err(|err| ModelError::inference(chain(&err)))?;
        let failed = |err: tch::TchError| ModelError::inference(err.to_string());
        (0..inputs.len() as i64)
            .map(|index| {
                let label = heatmap(&depth.f_get(index).map_err(failed)?).map_err(failed)?;
                Ok(Prediction::Label(Some(label)))
            })
            .collect()
    }
}
