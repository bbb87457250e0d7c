//! `FiftyOneTransformerForImageClassification`: FiftyOne's
//! `fiftyone.utils.transformers` classifier on libtorch (CPU), for the
//! Hugging Face repos whose architecture zoo builds
//! (`families/transformers`): the repo's image processor, the network, and
//! FiftyOne's `ClassifierOutputProcessor` with `store_logits` on (the
//! class's default `output_processor_args`).
//!
//! Embeddings are what FiftyOne's `TransformerEmbeddingsMixin` takes from a
//! classifier, whose output has neither `pooler_output` nor
//! `last_hidden_state`: `hidden_states[hidden_state_position]` (the last by
//! default: before the final layer norm), then `embeddings_aggregation`:
//! `token` (`[:, embeddings_token_position, :]`, the default; for a CNN's
//! `[N, C, H, W]` state that is the first channel's `H x W` map, flattened
//! here), `mean` or `max` over the tokens (`channels_last`, the default) or
//! over the spatial dimensions.
//!
//! The model's files are the downloaded repo (a folder), or the config's
//! `model_path`.

use std::sync::Arc;

use ndarray::Array2;
use serde::Deserialize;
use serde_json::{Map, Value};
use tch::{Kind, Tensor};
use zoo_model_core::{Input, InputData, Model, ModelError, ModelSpec, Prediction, Preprocess};
use zoo_output_processors::Classifier;

use crate::config::TorchImageModelConfig;
use crate::families::transformers::{HfClassifier, HfError};
use crate::model::chain;

/// The type names this model answers to.
pub const TRANSFORMERS_TYPE_NAMES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneTransformerForImageClassification",
    "FiftyOneTransformerForImageClassification",
];

/// The output processor FiftyOne's class uses, the only one zoo runs here.
const CLASSIFIER_OUTPUT_PROCESSOR: &str = "fiftyone.utils.torch.ClassifierOutputProcessor";

fn config_error(message: impl Into<String>) -> ModelError {
    ModelError::config(message.into())
}

/// How embeddings are reduced to one vector per image
/// (`embeddings_aggregation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregation {
    Token,
    Mean,
    Max,
}

/// FiftyOne's `FiftyOneTransformerConfig` fields zoo reads besides
/// [`TorchImageModelConfig`]'s.
#[derive(Debug, Default, Deserialize)]
struct TransformerFields {
    #[serde(default)]
    embeddings_output_key: Option<String>,
    #[serde(default)]
    hidden_state_position: Option<i64>,
    #[serde(default)]
    embeddings_aggregation: Option<String>,
    #[serde(default)]
    embeddings_token_position: Option<i64>,
    #[serde(default)]
    channels_last: Option<bool>,
    #[serde(default)]
    transformers_processor_kwargs: Option<Map<String, Value>>,
    #[serde(default)]
    entrypoint_fcn: Option<Value>,
    #[serde(default)]
    output_processor_args: Option<Map<String, Value>>,
}

/// How embeddings are taken (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embeddings {
    /// Which hidden state, from 0 (the embeddings' output).
    pub(crate) state: usize,
    pub(crate) aggregation: Aggregation,
    pub(crate) token: i64,
    pub(crate) channels_last: bool,
}

/// FiftyOne's transformers image classifier (see the module docs).
pub struct TorchTransformerModel {
    classifier_net: HfClassifier,
    preprocessing: Arc<crate::families::transformers::processor::ImageProcessor>,
    classifier: Classifier,
    embeddings: Embeddings,
}

impl std::fmt::Debug for TorchTransformerModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchTransformerModel")
            .field("network", &self.classifier_net)
            .finish_non_exhaustive()
    }
}

impl TorchTransformerModel {
    /// Builds the model a spec describes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::model::cpu_threads();
        let config = TorchImageModelConfig::for_native_model(&spec.config)?;
        let fields: TransformerFields = crate::transformers_spec::fields(spec)?;
        crate::transformers_spec::refuse_entrypoint(
            fields.entrypoint_fcn.as_ref(),
            "transformers classifiers",
        )?;
        crate::transformers_spec::check_output_processor(
            config.output_processor_cls.as_deref(),
            CLASSIFIER_OUTPUT_PROCESSOR,
            "transformers classifiers",
        )?;
        crate::transformers_spec::refuse_processor_kwargs(
            fields.transformers_processor_kwargs.as_ref(),
        )?;
        if let Some(device) = config.device.as_deref()
            && !device.is_empty()
            && device != "cpu"
        {
            tracing::warn!(device, "zoo runs transformers classifiers on the CPU");
        }
        let dir = config.model_path(spec.model_path.as_deref())?;
        let network = HfClassifier::load(&dir).map_err(HfError::into_model_error)?;
        let embeddings = embeddings(&fields, network.hidden_states())?;
        // FiftyOne's `_load_classes`: the config's classes win over the
        // repo's `id2label`.
        let classes = match config.class_names()? {
            classes if !classes.is_empty() => classes,
            _ => network.labels.clone(),
        };
        // The class's default `output_processor_args` is `{"store_logits":
        // True}`; given args say for themselves.
        let store_logits = match &fields.output_processor_args {
            None => true,
            Some(args) => match args.get("store_logits") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(store)) => *store,
                Some(other) => {
                    return Err(config_error(format!(
                        "`output_processor_args.store_logits` must be true or false, got `{other}`"
                    )));
                }
            },
        };
        let classifier = Classifier {
            classes,
            store_logits,
            confidence_thresh: config.confidence_thresh,
            filter_classes: config.filter_classes.clone(),
        };
        Ok(TorchTransformerModel {
            preprocessing: Arc::new(network.processor.clone()),
            classifier_net: network,
            classifier,
            embeddings,
        })
    }

    /// `[N, 3, H, W]` from the inputs, all of one size, at least the
    /// network's smallest.
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
        let min = self.classifier_net.min_input();
        if (h as i64) < min || (w as i64) < min {
            return Err(ModelError::inference(format!(
                "`{}` needs images of at least {min}x{min} pixels after its processor, got {w}x{h}",
                self.classifier_net.class
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

    fn forward(&self, inputs: &[Input]) -> Result<(Tensor, Tensor), ModelError> {
        let batch = self.batch(inputs)?;
        self.classifier_net
            .forward(&batch, self.embeddings.state)
            .map_err(|err| ModelError::inference(chain(&err)))
    }
}

/// The embeddings a config asks for, checked against the network's
/// `states` hidden states.
fn embeddings(fields: &TransformerFields, states: usize) -> Result<Embeddings, ModelError> {
    if let Some(key) = fields.embeddings_output_key.as_deref()
        && key != "hidden_states"
    {
        return Err(ModelError::unsupported(format!(
            "`embeddings_output_key` `{key}`: a transformers classifier's output has `logits` and `hidden_states`, and zoo takes embeddings from `hidden_states`; remove the field or set it to `hidden_states`"
        )));
    }
    let position = fields.hidden_state_position.unwrap_or(-1);
    let count = states as i64;
    let state = if position < 0 {
        count + position
    } else {
        position
    };
    if !(0..count).contains(&state) {
        return Err(config_error(format!(
            "`hidden_state_position` must be from {} to {}, the model has {count} hidden states; got `{position}`",
            -count,
            count - 1
        )));
    }
    let aggregation = match fields.embeddings_aggregation.as_deref().unwrap_or("token") {
        "token" => Aggregation::Token,
        "mean" => Aggregation::Mean,
        "max" => Aggregation::Max,
        other => {
            return Err(ModelError::unsupported(format!(
                "`embeddings_aggregation` `{other}`: zoo computes `token`, `mean` and `max` (one vector per image)"
            )));
        }
    };
    Ok(Embeddings {
        state: state as usize,
        aggregation,
        token: fields.embeddings_token_position.unwrap_or(0),
        channels_last: fields.channels_last.unwrap_or(true),
    })
}

/// FiftyOne's `_aggregate_embeddings` of a hidden state (`[N, ...]`): one
/// flattened vector per image.
pub(crate) fn aggregate(state: &Tensor, how: Embeddings) -> Result<Vec<Vec<f32>>, tch::TchError> {
    let dims = state.dim() as i64;
    let reduced = match how.aggregation {
        Aggregation::Token => {
            let size = state.size();
            let tokens = size.get(1).copied().unwrap_or(0);
            let token = if how.token < 0 {
                tokens + how.token
            } else {
                how.token
            };
            if dims < 2 || !(0..tokens).contains(&token) {
                return Err(tch::TchError::Shape(format!(
                    "`embeddings_token_position` {} is outside the hidden state's {tokens} positions",
                    how.token
                )));
            }
            state.f_select(1, token)?
        }
        _ if dims <= 2 => state.shallow_clone(),
        aggregation => {
            let axes: Vec<i64> = if how.channels_last {
                (1..dims - 1).collect()
            } else {
                (2..dims).collect()
            };
            if aggregation == Aggregation::Mean {
                state.f_mean_dim(axes.as_slice(), false, Kind::Float)?
            } else {
                let mut reduced = state.shallow_clone();
                for axis in axes.iter().rev() {
                    reduced = reduced.f_amax([*axis], false)?;
                }
                reduced
            }
        }
    };
    let rows = reduced.size().first().copied().unwrap_or(0);
    let flat = reduced.f_reshape([rows, -1])?.f_contiguous()?;
    let columns = flat.size()[1] as usize;
    let values = Vec::<f32>::try_from(flat.f_flatten(0, -1)?)?;
    Ok(values.chunks(columns.max(1)).map(<[f32]>::to_vec).collect())
}

fn to_array2(tensor: &Tensor) -> Result<Array2<f32>, ModelError> {
    let failed = |err: tch::TchError| ModelError::inference(err.to_string());
    let size = tensor.size();
    let [rows, columns] = size[..] else {
        return Err(ModelError::inference(format!(
            "expected [N, classes] logits, got {size:?}"
        )));
    };
    let values = tensor
        .f_contiguous()
        .and_then(|tensor| Vec::<f32>::try_from(tensor.f_flatten(0, -1)?))
        .map_err(failed)?;
    Array2::from_shape_vec((rows as usize, columns as usize), values)
        .map_err(|err| ModelError::inference(err.to_string()))
}

impl Model for TorchTransformerModel {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.preprocessing.clone()
    }

    /// Ragged when the processor keeps aspect ratios (a lone
    /// `shortest_edge`), as FiftyOne's `_processor_output_is_ragged` says.
    fn ragged_batches(&self) -> bool {
        self.preprocessing.fixed_size().is_none()
    }

    fn set_workers(&mut self, workers: usize) {
        crate::model::share_cpu_threads(workers);
    }

    fn has_logits(&self) -> bool {
        true
    }

    fn set_store_logits(&mut self, store: bool) {
        self.classifier.store_logits = store;
    }

    fn set_confidence_thresh(&mut self, threshold: f64) -> bool {
        self.classifier.confidence_thresh = Some(threshold as f32);
        true
    }

    fn has_embeddings(&self) -> bool {
        true
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (logits, _) = self.forward(inputs)?;
        let logits = to_array2(&logits)?;
        Ok(self
            .classifier
            .process(logits.view())
            .into_iter()
            .map(|label| Prediction::Label(Some(label)))
            .collect())
    }

    fn embed_all(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (_, state) = self.forward(inputs)?;
        aggregate(&state, self.embeddings).map_err(|err| ModelError::inference(err.to_string()))
    }
}
