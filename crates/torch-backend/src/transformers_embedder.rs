//! `FiftyOneTransformer`: FiftyOne's `fiftyone.utils.transformers` model
//! for a repo transformers' `AutoModel` loads (no task head), on libtorch
//! (CPU), for the Hugging Face repos whose architecture zoo builds
//! (`families/transformers/embedder.rs`: DINOv3). It computes embeddings
//! only: FiftyOne's class has no output processor, so `apply_model` has
//! no labels to store, and zoo refuses `apply` up front.
//!
//! Embeddings are what FiftyOne's `TransformerEmbeddingsMixin` takes from
//! the output (`last_hidden_state`, `pooler_output`, and `hidden_states`
//! only with `hidden_state_position`):
//! - with `hidden_state_position`, `hidden_states[hidden_state_position]`
//!   (before the final layer norm), whatever `embeddings_output_key` says;
//! - else `embeddings_output_key`, by default the first of
//!   `pooler_output` and `last_hidden_state` the output has: the
//!   `pooler_output` as it is (DINOv3's: the normed `[CLS]` token), or
//!   `last_hidden_state`;
//!
//! then, for a hidden state, `embeddings_aggregation`: `token` (at
//! `embeddings_token_position`, the default), `mean` or `max` (over the
//! tokens, or with `channels_last: false` over the features), as for
//! FiftyOne's classifiers (`transformers_model.rs`).
//!
//! The model's files are the downloaded repo (a folder), or the config's
//! `model_path`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};
use tch::Tensor;
use zoo_model_core::{Input, InputData, Model, ModelError, ModelSpec, Prediction, Preprocess};

use crate::config::TorchImageModelConfig;
use crate::families::transformers::HfError;
use crate::families::transformers::embedder::HfEmbedder;
use crate::families::transformers::processor::ImageProcessor;
use crate::model::chain;
use crate::transformers_model::{Aggregation, Embeddings, aggregate};

/// The type names this model answers to.
pub const EMBEDDER_TYPE_NAMES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneTransformer",
    "FiftyOneTransformer",
];

fn config_error(message: impl Into<String>) -> ModelError {
    ModelError::config(message.into())
}

/// FiftyOne's `FiftyOneTransformerConfig` fields zoo reads besides
/// [`TorchImageModelConfig`]'s.
#[derive(Debug, Default, Deserialize)]
struct EmbedderFields {
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
    transforms_args: Option<Map<String, Value>>,
    #[serde(default)]
    entrypoint_fcn: Option<Value>,
}

/// Which output the embeddings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `pooler_output`, as it is.
    Pooler,
    /// `last_hidden_state`, aggregated.
    LastHiddenState,
    /// `hidden_states[i]`, aggregated.
    HiddenState(usize),
}

/// FiftyOne's transformers feature extractor (see the module docs).
pub struct TorchTransformerEmbedder {
    network: HfEmbedder,
    preprocessing: Arc<ImageProcessor>,
    source: Source,
    aggregation: Embeddings,
}

impl std::fmt::Debug for TorchTransformerEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchTransformerEmbedder")
            .field("network", &self.network)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl TorchTransformerEmbedder {
    /// Builds the model a spec describes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::model::cpu_threads();
        let config = TorchImageModelConfig::for_native_model(&spec.config)?;
        let fields: EmbedderFields = crate::transformers_spec::fields(spec)?;
        crate::transformers_spec::refuse_entrypoint(
            fields.entrypoint_fcn.as_ref(),
            "transformers feature extractors",
        )?;
        if let Some(processor) = config.output_processor_cls.as_deref()
            && !processor.rsplit('.').next().unwrap_or_default().is_empty()
        {
            return Err(ModelError::unsupported(format!(
                "`output_processor_cls` `{processor}`: FiftyOne's `FiftyOneTransformer` computes embeddings, and zoo runs it with no output processor; remove it"
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
                "zoo runs transformers feature extractors on the CPU"
            );
        }
        let dir = config.model_path(spec.model_path.as_deref())?;
        let network = HfEmbedder::load(&dir).map_err(HfError::into_model_error)?;
        let (source, aggregation) = embeddings(&fields, network.hidden_states())?;
        Ok(TorchTransformerEmbedder {
            preprocessing: Arc::new(network.processor.clone()),
            network,
            source,
            aggregation,
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
        let (min_height, min_width) = self.network.min_input();
        if (h as i64) < min_height || (w as i64) < min_width {
            return Err(ModelError::inference(format!(
                "`{}` needs images of at least {min_width}x{min_height} pixels after its processor, got {w}x{h}",
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

/// The output and aggregation a config asks for, checked against the
/// network's `states` hidden states.
fn embeddings(fields: &EmbedderFields, states: usize) -> Result<(Source, Embeddings), ModelError> {
    let source = match fields.hidden_state_position {
        Some(position) => {
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
            Source::HiddenState(state as usize)
        }
        None => match fields.embeddings_output_key.as_deref() {
            None | Some("pooler_output") => Source::Pooler,
            Some("last_hidden_state") => Source::LastHiddenState,
            Some("hidden_states") => {
                return Err(config_error(
                    "`embeddings_output_key` `hidden_states` without `hidden_state_position`: FiftyOne's `FiftyOneTransformer` then computes no hidden states and fails; set `hidden_state_position` (-1 for the last)",
                ));
            }
            Some(other) => {
                return Err(ModelError::unsupported(format!(
                    "`embeddings_output_key` `{other}`: the model's output has `pooler_output`, `last_hidden_state` and, with `hidden_state_position`, `hidden_states`"
                )));
            }
        },
    };
    // FiftyOne returns `pooler_output` as it is, whatever the aggregation.
    let aggregation = if source == Source::Pooler {
        Aggregation::Token
    } else {
        match fields.embeddings_aggregation.as_deref().unwrap_or("token") {
            "token" => Aggregation::Token,
            "mean" => Aggregation::Mean,
            "max" => Aggregation::Max,
            other => {
                return Err(ModelError::unsupported(format!(
                    "`embeddings_aggregation` `{other}`: zoo computes `token`, `mean` and `max` (one vector per image)"
                )));
            }
        }
    };
    Ok((
        source,
        Embeddings {
            state: 0,
            aggregation,
            token: fields.embeddings_token_position.unwrap_or(0),
            channels_last: fields.channels_last.unwrap_or(true),
        },
    ))
}

impl Model for TorchTransformerEmbedder {
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

    /// FiftyOne's class has no output processor: its raw outputs are not
    /// labels `apply_model` can store.
    fn has_labels(&self) -> bool {
        false
    }

    fn has_embeddings(&self) -> bool {
        true
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        let _ = inputs;
        Err(ModelError::unsupported(
            "FiftyOne's `FiftyOneTransformer` gives no labels, only embeddings: compute them with `zoo models embed`".into(),
        ))
    }

    fn embed_all(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.batch(inputs)?;
        let keep = match self.source {
            Source::HiddenState(state) => Some(state),
            Source::Pooler | Source::LastHiddenState => None,
        };
        let features = self
            .network
            .forward(&batch, keep)
            .map_err(|err| ModelError::inference(chain(&err)))?;
        let failed = |err: tch::TchError| ModelError::inference(err.to_string());
        let state = match (self.source, features.hidden_state) {
            // FiftyOne takes `pooler_output` as it is: one row per image.
            (Source::Pooler, _) => return rows(&features.pooler_output).map_err(failed),
            (Source::LastHiddenState, _) => features.last_hidden_state,
            (Source::HiddenState(_), Some(state)) => state,
            (Source::HiddenState(state), None) => {
                return Err(ModelError::inference(format!(
                    "the network gave no hidden state {state}"
                )));
            }
        };
        aggregate(&state, self.aggregation).map_err(failed)
    }
}

/// The rows of `[N, features]`.
fn rows(tensor: &Tensor) -> Result<Vec<Vec<f32>>, tch::TchError> {
    let size = tensor.size();
    let [_, columns] = size[..] else {
        return Err(tch::TchError::Shape(format!(
            "expected [N, features], got {size:?}"
        )));
    };
    let values = Vec::<f32>::try_from(tensor.f_contiguous()?.f_flatten(0, -1)?)?;
    Ok(values
        .chunks(columns.max(1) as usize)
        .map(<[f32]>::to_vec)
        .collect())
}
