//! `FiftyOneZeroShotTransformerForImageClassification`: FiftyOne's
//! `fiftyone.utils.transformers` zero-shot classifier on libtorch (CPU), for
//! the Hugging Face repos whose architecture zoo builds
//! (`families/transformers`, [`ZERO_SHOT`](crate::families::transformers::ZERO_SHOT)):
//! the repo's image processor and tokenizer, the image and text towers, and
//! FiftyOne's `ClassifierOutputProcessor` on `logits_per_image`.
//!
//! As FiftyOne's class does: the prompts are the classes (the config's
//! `classes`, else the repo's `id2label`), each `"<text_prompt> <prompt>"`
//! when `text_prompt` is set, where a class's prompt is `class_prompts[class]`
//! if given, else the class; the texts are tokenized with the config's
//! `transformers_processor_kwargs` (`padding` true unless set); embeddings
//! are `get_image_features` (projected, unnormalised), prompt embeddings
//! `get_text_features` (the classes' prompts without their attention mask,
//! as `apply_model` runs them; `embed_prompts` with it); `store_logits` is
//! on when `output_processor_args`
//! is not given. The image processor is transformers' torchvision backend,
//! or its PIL backend with `transforms_args.use_fast` false.
//!
//! The model's files are the downloaded repo (a folder), or the config's
//! `model_path`.

use std::sync::Arc;

use ndarray::Array2;
use serde::Deserialize;
use serde_json::{Map, Value};
use tch::Tensor;
use zoo_model_core::{Input, InputData, Model, ModelError, ModelSpec, Prediction, Preprocess};
use zoo_output_processors::Classifier;

use crate::config::TorchImageModelConfig;
use crate::families::transformers::processor::ImageProcessor;
use crate::families::transformers::tokenizer::TextOptions;
use crate::families::transformers::{HfError, ZeroShotRepo};
use crate::model::chain;

/// The type names this model answers to.
pub const ZERO_SHOT_TYPE_NAMES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForImageClassification",
    "FiftyOneZeroShotTransformerForImageClassification",
];

/// The output processor FiftyOne's class uses, the only one zoo runs here.
const CLASSIFIER_OUTPUT_PROCESSOR: &str = "fiftyone.utils.torch.ClassifierOutputProcessor";

/// The output the classifier reads.
const LOGITS_KEY: &str = "logits_per_image";

fn config_error(message: impl Into<String>) -> ModelError {
    ModelError::config(message.into())
}

/// FiftyOne's `FiftyOneZeroShotTransformerConfig` fields zoo reads besides
/// [`TorchImageModelConfig`]'s.
#[derive(Debug, Default, Deserialize)]
struct ZeroShotFields {
    #[serde(default)]
    text_prompt: Option<String>,
    #[serde(default)]
    class_prompts: Option<Map<String, Value>>,
    #[serde(default)]
    transformers_processor_kwargs: Option<Map<String, Value>>,
    #[serde(default)]
    transforms_args: Option<Map<String, Value>>,
    #[serde(default)]
    entrypoint_fcn: Option<Value>,
    #[serde(default)]
    output_processor_args: Option<Map<String, Value>>,
}

/// FiftyOne's transformers zero-shot classifier (see the module docs).
pub struct TorchZeroShotTransformerModel {
    repo: ZeroShotRepo,
    preprocessing: Arc<ImageProcessor>,
    text_options: TextOptions,
    /// The class prompts, or why there are none.
    prompts: Result<Vec<String>, String>,
    classifier: Classifier,
    /// The class prompts' features, computed on first use.
    text_features: Option<Tensor>,
}

impl std::fmt::Debug for TorchZeroShotTransformerModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchZeroShotTransformerModel")
            .field("class", &self.repo.class)
            .finish_non_exhaustive()
    }
}

/// `transformers_processor_kwargs` as FiftyOne's class completes it
/// (`padding` true unless set): `padding`, `truncation`, `max_length`.
pub(crate) fn text_kwargs(kwargs: Option<&Map<String, Value>>) -> Result<[Value; 3], ModelError> {
    let empty = Map::new();
    let kwargs = kwargs.unwrap_or(&empty);
    if let Some((key, value)) = kwargs.iter().find(|(key, value)| {
        let read = matches!(key.as_str(), "padding" | "truncation" | "max_length");
        let tensors = key.as_str() == "return_tensors" && value.as_str() == Some("pt");
        !(read || tensors)
    }) {
        return Err(ModelError::unsupported(format!(
            "`transformers_processor_kwargs.{key}` (`{value}`): zoo runs the repo's processor with `padding`, `truncation` and `max_length` only; remove it"
        )));
    }
    let padding = match kwargs.get("padding") {
        None | Some(Value::Null) => Value::Bool(true),
        Some(value) => value.clone(),
    };
    Ok([
        padding,
        kwargs.get("truncation").cloned().unwrap_or(Value::Null),
        kwargs.get("max_length").cloned().unwrap_or(Value::Null),
    ])
}

/// Whether `transforms_args` asks for transformers' PIL backend
/// (`use_fast: false`); FiftyOne's default is the torchvision one.
pub(crate) fn pil_backend(args: Option<&Map<String, Value>>) -> Result<bool, ModelError> {
    let Some(args) = args else {
        return Ok(false);
    };
    if let Some((key, value)) = args.iter().find(|(key, _)| key.as_str() != "use_fast") {
        return Err(ModelError::unsupported(format!(
            "`transforms_args.{key}` (`{value}`): zoo runs the repo's processor and reads `use_fast` only; remove it"
        )));
    }
    match args.get("use_fast") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => Ok(false),
        Some(Value::Bool(false)) => Ok(true),
        Some(other) => Err(config_error(format!(
            "`transforms_args.use_fast` must be true or false, got `{other}`"
        ))),
    }
}

/// FiftyOne's `_get_text_prompts`.
pub(crate) fn class_prompts(
    classes: &[String],
    text_prompt: Option<&str>,
    class_prompts: Option<&Map<String, Value>>,
) -> Result<Vec<String>, String> {
    let text_prompt = text_prompt.filter(|prompt| !prompt.is_empty());
    let class_prompts = class_prompts.filter(|prompts| !prompts.is_empty());
    classes
        .iter()
        .map(|class| {
            let prompt = match class_prompts {
                None => class.clone(),
                Some(prompts) => match prompts.get(class) {
                    Some(Value::String(prompt)) => prompt.clone(),
                    Some(other) => other.to_string(),
                    None => {
                        return Err(format!(
                            "`class_prompts` has no prompt for class `{class}`; give one for every class"
                        ));
                    }
                },
            };
            Ok(match text_prompt {
                None => prompt,
                Some(text) => format!("{text} {prompt}"),
            })
        })
        .collect()
}

impl TorchZeroShotTransformerModel {
    /// Builds the model a spec describes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::model::cpu_threads();
        let config = TorchImageModelConfig::for_native_model(&spec.config)?;
        let fields: ZeroShotFields = crate::transformers_spec::fields(spec)?;
        crate::transformers_spec::refuse_entrypoint(
            fields.entrypoint_fcn.as_ref(),
            "transformers zero-shot classifiers",
        )?;
        crate::transformers_spec::check_output_processor(
            config.output_processor_cls.as_deref(),
            CLASSIFIER_OUTPUT_PROCESSOR,
            "transformers zero-shot classifiers",
        )?;
        // The class's default `output_processor_args` is `{"store_logits":
        // True, "logits_key": "logits_per_image"}`; given args say for
        // themselves (`ClassifierOutputProcessor`'s defaults: no logits
        // stored, `logits_key` `logits`, which a zero-shot output lacks).
        let store_logits = match &fields.output_processor_args {
            None => true,
            Some(args) => {
                if let Some((key, value)) = args
                    .iter()
                    .find(|(key, _)| !matches!(key.as_str(), "store_logits" | "logits_key"))
                {
                    return Err(ModelError::unsupported(format!(
                        "`output_processor_args.{key}` (`{value}`) is not one zoo reads (`store_logits`, `logits_key`); remove it"
                    )));
                }
                match args.get("logits_key") {
                    Some(Value::String(key)) if key == LOGITS_KEY => {}
                    other => {
                        return Err(config_error(format!(
                            "`output_processor_args.logits_key` must be `{LOGITS_KEY}` (a zero-shot classifier's output has no `{}`)",
                            other.and_then(Value::as_str).unwrap_or("logits")
                        )));
                    }
                }
                match args.get("store_logits") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(store)) => *store,
                    Some(other) => {
                        return Err(config_error(format!(
                            "`output_processor_args.store_logits` must be true or false, got `{other}`"
                        )));
                    }
                }
            }
        };
        if let Some(device) = config.device.as_deref()
            && !device.is_empty()
            && device != "cpu"
        {
            tracing::warn!(
                device,
                "zoo runs transformers zero-shot classifiers on the CPU"
            );
        }
        let pil = pil_backend(fields.transforms_args.as_ref())?;
        let [padding, truncation, max_length] =
            text_kwargs(fields.transformers_processor_kwargs.as_ref())?;
        let dir = config.model_path(spec.model_path.as_deref())?;
        let repo = ZeroShotRepo::load(&dir, pil).map_err(HfError::into_model_error)?;
        let text_options = repo
            .tokenizer
            .options(&padding, &truncation, Some(&max_length))
            .map_err(|err| config_error(format!("`transformers_processor_kwargs`: {err}")))?;
        // `_load_classes`: the config's classes, else the repo's labels.
        let classes = match config.class_names()? {
            classes if !classes.is_empty() => classes,
            _ => repo.labels.clone(),
        };
        let prompts = class_prompts(
            &classes,
            fields.text_prompt.as_deref(),
            fields.class_prompts.as_ref(),
        );
        let classifier = Classifier {
            classes,
            store_logits,
            confidence_thresh: config.confidence_thresh,
            filter_classes: config.filter_classes.clone(),
        };
        Ok(TorchZeroShotTransformerModel {
            preprocessing: Arc::new(repo.processor.clone()),
            repo,
            text_options,
            prompts,
            classifier,
            text_features: None,
        })
    }

    /// `get_text_features` of `texts`, tokenized as the config says; with
    /// their attention masks unless `ids_only`.
    fn text_features_of(&self, texts: &[String], ids_only: bool) -> Result<Tensor, ModelError> {
        let _no_grad = tch::no_grad_guard();
        let (ids, mut attention) = self
            .repo
            .tokenizer
            .encode(texts, self.text_options)
            .map_err(ModelError::inference)?;
        if ids_only {
            attention = ids.iter().map(|row| vec![1; row.len()]).collect();
        }
        self.repo
            .network
            .text_features(&ids, &attention)
            .map_err(|err| ModelError::inference(chain(&err)))
    }

    /// The class prompts' features (computed once). FiftyOne's
    /// `apply_model` hands the model the prompts' `input_ids` alone (its
    /// data loader's `_predict_all` path), so the text tower sees no
    /// attention mask here: padding takes part in SigLIP's attention.
    fn class_features(&mut self) -> Result<Tensor, ModelError> {
        if let Some(features) = &self.text_features {
            return Ok(features.shallow_clone());
        }
        let prompts = self.prompts.clone().map_err(config_error)?;
        if prompts.is_empty() {
            return Err(config_error(
                "zero-shot classification needs classes; give `classes`",
            ));
        }
        let features = self.text_features_of(&prompts, true)?;
        self.text_features = Some(features.shallow_clone());
        Ok(features)
    }

    /// `[N, 3, H, W]` from the inputs, all of the size the model takes.
    fn batch(&self, inputs: &[Input]) -> Result<Tensor, ModelError> {
        let (height, width) = self.repo.network.image_size();
        let (c, h, w) = (3usize, height as usize, width as usize);
        let mut values = Vec::with_capacity(inputs.len() * c * h * w);
        for input in inputs {
            match &input.data {
                InputData::Values(data) if input.shape == [c, h, w] && data.len() == c * h * w => {
                    values.extend_from_slice(data)
                }
                _ => {
                    return Err(ModelError::inference(format!(
                        "`{}` takes {w}x{h} inputs, got {}x{}",
                        self.repo.class, input.shape[2], input.shape[1]
                    )));
                }
            }
        }
        Tensor::f_from_slice(&values)
            .and_then(|tensor| tensor.f_view([inputs.len() as i64, 3, height, width]))
            .map_err(|err| ModelError::inference(err.to_string()))
    }

    fn image_features(&self, inputs: &[Input]) -> Result<Tensor, ModelError> {
        let _no_grad = tch::no_grad_guard();
        let batch = self.batch(inputs)?;
        self.repo
            .network
            .image_features(&batch)
            .map_err(|err| ModelError::inference(chain(&err)))
    }
}

/// The rows of a `[N, D]` tensor.
fn rows(tensor: &Tensor) -> Result<Vec<Vec<f32>>, ModelError> {
    let array = to_array2(tensor)?;
    Ok(array.outer_iter().map(|row| row.to_vec()).collect())
}

fn to_array2(tensor: &Tensor) -> Result<Array2<f32>, ModelError> {
    let failed = |err: tch::TchError| ModelError::inference(err.to_string());
    let size = tensor.size();
    let [rows, columns] = size[..] else {
        return Err(ModelError::inference(format!(
            "expected a [N, D] tensor, got {size:?}"
        )));
    };
    let values = tensor
        .f_contiguous()
        .and_then(|tensor| Vec::<f32>::try_from(tensor.f_flatten(0, -1)?))
        .map_err(failed)?;
    Array2::from_shape_vec((rows as usize, columns as usize), values)
        .map_err(|err| ModelError::inference(err.to_string()))
}

impl Model for TorchZeroShotTransformerModel {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.preprocessing.clone()
    }

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
        let texts = self.class_features()?;
        let images = self.image_features(inputs)?;
        let logits = self
            .repo
            .network
            .logits(&images, &texts)
            .map_err(|err| ModelError::inference(chain(&err)))?;
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
        rows(&self.image_features(inputs)?)
    }

    fn can_embed_prompts(&self) -> bool {
        true
    }

    fn embed_prompts(&mut self, prompts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        rows(&self.text_features_of(prompts, false)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_follow_fiftyones_get_text_prompts() {
        let classes = vec!["cat".to_owned(), "dog".to_owned()];
        assert_eq!(class_prompts(&classes, None, None).unwrap(), ["cat", "dog"]);
        assert_eq!(
            class_prompts(&classes, Some("A photo of a"), None).unwrap(),
            ["A photo of a cat", "A photo of a dog"]
        );
        let custom = serde_json::json!({"cat": "small feline", "dog": "hound"});
        assert_eq!(
            class_prompts(&classes, Some("a"), custom.as_object()).unwrap(),
            ["a small feline", "a hound"]
        );
        let partial = serde_json::json!({"cat": "feline"});
        let error = class_prompts(&classes, None, partial.as_object()).unwrap_err();
        assert!(error.contains("`dog`"), "{error}");
    }

    #[test]
    fn processor_kwargs_and_transforms_args_are_checked() {
        let [padding, truncation, max_length] = text_kwargs(None).unwrap();
        assert_eq!(padding, Value::Bool(true));
        assert!(truncation.is_null() && max_length.is_null());
        let siglip = serde_json::json!({"padding": "max_length", "max_length": 64});
        let [padding, _, max_length] = text_kwargs(siglip.as_object()).unwrap();
        assert_eq!(
            (padding.as_str(), max_length.as_u64()),
            (Some("max_length"), Some(64))
        );
        let odd = serde_json::json!({"return_attention_mask": false});
        let error = text_kwargs(odd.as_object()).unwrap_err().to_string();
        assert!(error.contains("return_attention_mask"), "{error}");
        let slow = serde_json::json!({"use_fast": false});
        assert!(pil_backend(slow.as_object()).unwrap());
        assert!(!pil_backend(None).unwrap());
        let odd = serde_json::json!({"backend": "pil"});
        assert!(pil_backend(odd.as_object()).is_err());
    }
}
