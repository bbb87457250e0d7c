//! `TorchCLIPModel`: FiftyOne's `fiftyone.utils.clip.TorchCLIPModel` on
//! libtorch (CPU): image embeddings (`embeddings_layer: visual`), prompt
//! embeddings, and zero-shot classification over `classes` with prompts
//! `"<text_prompt> <class>"` and the logits of `_get_class_logits`, through
//! FiftyOne's `ClassifierOutputProcessor`.
//!
//! The weights are the model's file (OpenAI's TorchScript archive); the
//! tokenizer's vocabulary is `tokenizer_base_filename` beside it (where
//! FiftyOne keeps it: the model zoo dir), or the config's `tokenizer_path`
//! (a zoo extension).

use std::path::PathBuf;
use std::sync::Arc;

use ndarray::Array2;
use zoo_model_core::{Input, Model, ModelError, ModelSpec, Prediction, Preprocess};
use zoo_output_processors::Classifier;

use crate::clip::ClipModel;
use crate::clip_tokenizer::ClipTokenizer;
use crate::config::{TorchClipModelConfig, TorchImageModelConfig};
use crate::preprocess::Preprocessing;

/// The type names this model answers to.
pub const CLIP_TYPE_NAMES: &[&str] = &["fiftyone.utils.clip.TorchCLIPModel", "TorchCLIPModel"];

fn config_error(message: impl Into<String>) -> ModelError {
    ModelError::config(message.into())
}

/// FiftyOne's CLIP model (see the module docs).
pub struct TorchClipModel {
    clip: ClipModel,
    tokenizer: ClipTokenizer,
    preprocessing: Arc<Preprocessing>,
    context_length: usize,
    text_prompt: Option<String>,
    /// The zero-shot classes, or why the config gives none.
    classes: Result<Vec<String>, String>,
    classifier: Classifier,
    /// The class prompts' embeddings, computed on first use.
    text_features: Option<Vec<Vec<f32>>>,
}

impl std::fmt::Debug for TorchClipModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchClipModel")
            .field("clip", &self.clip)
            .finish()
    }
}

impl TorchClipModel {
    /// Builds the model a spec describes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::model::cpu_threads();
        let config = TorchImageModelConfig::from_map(&spec.config)?;
        let clip_config = TorchClipModelConfig::from_map(&spec.config)?;
        if let Some(device) = &config.device
            && !device.is_empty()
            && device != "cpu"
        {
            tracing::warn!(device, "zoo runs TorchCLIPModel on the CPU");
        }
        let model_path = config.model_path(spec.model_path.as_deref())?;
        let clip = ClipModel::load(&model_path).map_err(|err| config_error(chain(&err)))?;
        let tokenizer_path = match clip_config.tokenizer_path {
            Some(path) => path,
            None => {
                let name = clip_config
                    .tokenizer_base_filename
                    .as_deref()
                    .ok_or_else(|| {
                        config_error("a TorchCLIPModel config needs `tokenizer_base_filename`")
                    })?;
                let file = zoo_model_core_safe_name(name)?;
                model_path
                    .parent()
                    .map_or_else(|| PathBuf::from(file), |dir| dir.join(file))
            }
        };
        let tokenizer = ClipTokenizer::from_gz(&tokenizer_path).map_err(|err| {
            let url = clip_config
                .tokenizer_base_url
                .as_deref()
                .unwrap_or("its `tokenizer_base_url`");
            config_error(format!(
                "{}; download the CLIP vocabulary from {url} to `{}`",
                chain(&err),
                tokenizer_path.display()
            ))
        })?;
        let context_length = match clip_config.context_length {
            None => clip.context_length(),
            Some(length) => usize::try_from(length)
                .ok()
                .filter(|length| (2..=clip.context_length()).contains(length))
                .ok_or_else(|| {
                    config_error(format!(
                        "`context_length` must be a whole number from 2 to {}, got `{length}`",
                        clip.context_length()
                    ))
                })?,
        };
        let side = clip.image_resolution();
        let preprocessing = Preprocessing {
            size: Some(config.image_size.unwrap_or((side, side))),
            mean: config.image_mean.unwrap_or([0.0; 3]),
            std: config.image_std.unwrap_or([1.0; 3]),
            ..Preprocessing::default()
        };
        let classes = config.class_names().map_err(|err| err.to_string());
        let classifier = Classifier {
            classes: classes.clone().unwrap_or_default(),
            store_logits: false,
            confidence_thresh: config.confidence_thresh,
            filter_classes: None,
        };
        Ok(TorchClipModel {
            clip,
            tokenizer,
            preprocessing: Arc::new(preprocessing),
            context_length,
            text_prompt: clip_config.text_prompt,
            classes,
            classifier,
            text_features: None,
        })
    }

    /// `embed_prompts`: one text embedding per prompt (unnormalised), each
    /// tokenized as FiftyOne does (cut to the context length).
    pub fn prompt_embeddings(&self, prompts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let rows = self.tokenizer.prompt_rows(prompts, self.context_length);
        self.clip.embed_token_rows(&rows)
    }

    /// The class prompts' embeddings (`_get_text_features`).
    fn text_features(&mut self) -> Result<&[Vec<f32>], ModelError> {
        if self.text_features.is_none() {
            let classes = self.classes.as_ref().map_err(|reason| {
                config_error(format!(
                    "zero-shot classification needs classes: {reason}; give `classes`"
                ))
            })?;
            if classes.is_empty() {
                return Err(config_error(
                    "zero-shot classification needs classes; give `classes`",
                ));
            }
            let prompt = self.text_prompt.as_deref().ok_or_else(|| {
                config_error("zero-shot classification needs `text_prompt` (e.g. `A photo of`)")
            })?;
            let prompts: Vec<String> = classes
                .iter()
                .map(|class| format!("{prompt} {class}"))
                .collect();
            self.text_features = Some(self.prompt_embeddings(&prompts)?);
        }
        Ok(self.text_features.as_deref().unwrap_or_default())
    }
}

/// A vocabulary file name from a config: one plain path component.
fn zoo_model_core_safe_name(name: &str) -> Result<&str, ModelError> {
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    plain.then_some(name).ok_or_else(|| {
        config_error(format!(
            "`tokenizer_base_filename` must be a plain file name, got `{name}`"
        ))
    })
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Model for TorchClipModel {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.preprocessing.clone()
    }

    fn ragged_batches(&self) -> bool {
        false
    }

    /// CLIP runs on the CPU: its share of libtorch's threads (all of them
    /// for one copy, even after copies of another model took fewer).
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
        let texts = self.text_features()?.to_vec();
        let images = self.clip.embed_images(inputs)?;
        let logits = self.clip.logits(&images, &texts)?;
        let columns = texts.len();
        let flat: Vec<f32> = logits.into_iter().flatten().collect();
        let logits = Array2::from_shape_vec((inputs.len(), columns), flat)
            .map_err(|err| ModelError::inference(err.to_string()))?;
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
        self.clip.embed_images(inputs)
    }

    fn can_embed_prompts(&self) -> bool {
        true
    }

    fn embed_prompts(&mut self, prompts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        self.prompt_embeddings(prompts)
    }
}
