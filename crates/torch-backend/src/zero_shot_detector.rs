//! `FiftyOneZeroShotTransformerForObjectDetection`: FiftyOne's
//! `fiftyone.utils.transformers` zero-shot detector on libtorch (CPU), for
//! the Hugging Face repos whose architecture zoo builds (OWL-ViT,
//! `families/transformers/owlvit.rs`): the repo's image processor and
//! tokenizer, the network, and FiftyOne's
//! `TransformersDetectorOutputProcessor` on the image processor's
//! `post_process_object_detection`.
//!
//! As FiftyOne's class does: the queries are the classes (the config's
//! `classes`, else the repo's `id2label`), each `"<text_prompt> <prompt>"` when
//! `text_prompt` is set, where a class's prompt is `class_prompts[class]`
//! if given, else the class; every image gets them all, tokenized with the
//! config's `transformers_processor_kwargs` (`padding` true unless set)
//! and run with their attention mask. Per patch, the score is the sigmoid
//! of the best query's logit and the label that query's class; patches
//! scoring above `confidence_thresh` (else above 0, so every patch) are
//! detections, each box `[cx, cy, w, h]` turned into corners, scaled to
//! the image's pixels in `f32`, then divided by them into FiftyOne's
//! relative `[x, y, w, h]`; `filter_classes` keeps the classes it lists.
//! The image processor is transformers' torchvision backend, or its PIL
//! backend with `transforms_args.use_fast` false.
//!
//! The model's files are the downloaded repo (a folder), or the config's
//! `model_path`.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};
use tch::Tensor;
use zoo_model_core::{
    Detection, Input, InputData, Label, Model, ModelError, ModelSpec, Prediction, Preprocess,
};

use crate::config::TorchImageModelConfig;
use crate::families::transformers::HfError;
use crate::families::transformers::owlvit::ZeroShotDetectorRepo;
use crate::families::transformers::processor::ImageProcessor;
use crate::families::transformers::tokenizer::TextOptions;
use crate::model::chain;
use crate::zero_shot_model::{class_prompts, pil_backend, text_kwargs};

/// The type names this model answers to.
pub const ZERO_SHOT_DETECTOR_TYPE_NAMES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForObjectDetection",
    "FiftyOneZeroShotTransformerForObjectDetection",
];

/// The output processor FiftyOne's class uses, the only one zoo runs here.
const DETECTOR_OUTPUT_PROCESSOR: &str =
    "fiftyone.utils.transformers.TransformersDetectorOutputProcessor";

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

/// FiftyOne's transformers zero-shot detector (see the module docs).
pub struct TorchZeroShotTransformerDetector {
    repo: ZeroShotDetectorRepo,
    preprocessing: Arc<ImageProcessor>,
    text_options: TextOptions,
    classes: Vec<String>,
    /// The class prompts, or why there are none.
    prompts: Result<Vec<String>, String>,
    confidence_thresh: Option<f32>,
    filter_classes: Option<BTreeSet<String>>,
    /// The queries' embeddings and mask, computed on first use.
    queries: Option<(Tensor, Tensor)>,
}

impl std::fmt::Debug for TorchZeroShotTransformerDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchZeroShotTransformerDetector")
            .field("class", &self.repo.class)
            .field("classes", &self.classes.len())
            .finish_non_exhaustive()
    }
}

impl TorchZeroShotTransformerDetector {
    /// Builds the model a spec describes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::model::cpu_threads();
        let config = TorchImageModelConfig::for_native_model(&spec.config)?;
        let fields: ZeroShotFields = crate::transformers_spec::fields(spec)?;
        crate::transformers_spec::refuse_entrypoint(
            fields.entrypoint_fcn.as_ref(),
            "transformers zero-shot detectors",
        )?;
        crate::transformers_spec::check_output_processor(
            config.output_processor_cls.as_deref(),
            DETECTOR_OUTPUT_PROCESSOR,
            "transformers zero-shot detectors",
        )?;
        if let Some((key, value)) = fields
            .output_processor_args
            .as_ref()
            .and_then(|args| args.iter().next())
        {
            return Err(ModelError::unsupported(format!(
                "`output_processor_args.{key}` (`{value}`): zoo's zero-shot detectors take no output processor arguments; remove it"
            )));
        }
        if let Some(device) = config.device.as_deref()
            && !device.is_empty()
            && device != "cpu"
        {
            tracing::warn!(
                device,
                "zoo runs transformers zero-shot detectors on the CPU"
            );
        }
        let pil = pil_backend(fields.transforms_args.as_ref())?;
        let [padding, truncation, max_length] =
            text_kwargs(fields.transformers_processor_kwargs.as_ref())?;
        let dir = config.model_path(spec.model_path.as_deref())?;
        let repo = ZeroShotDetectorRepo::load(&dir, pil).map_err(HfError::into_model_error)?;
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
        Ok(TorchZeroShotTransformerDetector {
            preprocessing: Arc::new(repo.processor.clone()),
            repo,
            text_options,
            classes,
            prompts,
            confidence_thresh: config.confidence_thresh,
            filter_classes: config.filter_classes.clone(),
            queries: None,
        })
    }

    /// The queries' embeddings and mask (computed once).
    fn queries(&mut self) -> Result<(Tensor, Tensor), ModelError> {
        if let Some((embeddings, mask)) = &self.queries {
            return Ok((embeddings.shallow_clone(), mask.shallow_clone()));
        }
        let prompts = self.prompts.clone().map_err(config_error)?;
        if prompts.is_empty() {
            return Err(config_error(
                "zero-shot detection needs classes to look for; give `classes` (`--classes` on the command line)",
            ));
        }
        let (ids, attention) = self
            .repo
            .tokenizer
            .encode(&prompts, self.text_options)
            .map_err(ModelError::inference)?;
        let queries = self
            .repo
            .network
            .queries(&ids, &attention)
            .map_err(|err| ModelError::inference(chain(&err)))?;
        self.queries = Some((queries.0.shallow_clone(), queries.1.shallow_clone()));
        Ok(queries)
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

    /// `post_process_object_detection` and FiftyOne's `_parse_output` for
    /// one image: `scores` and `labels` per patch, `boxes` (`[patches,
    /// 4]`, relative `[cx, cy, w, h]` flattened).
    fn detections(
        &self,
        (scores, labels, boxes): (&[f32], &[i64], &[f32]),
        (width, height): (u32, u32),
    ) -> Vec<Detection> {
        let threshold = self.confidence_thresh.unwrap_or(0.0);
        let (image_width, image_height) = (width as f32, height as f32);
        let mut detections = Vec::new();
        for ((score, label), cxcywh) in scores.iter().zip(labels).zip(boxes.chunks_exact(4)) {
            // `keep = scores > threshold`.
            if *score <= threshold {
                continue;
            }
            let label = usize::try_from(*label)
                .ok()
                .and_then(|index| self.classes.get(index))
                .cloned()
                .unwrap_or_else(|| label.to_string());
            if self
                .filter_classes
                .as_ref()
                .is_some_and(|keep| !keep.contains(&label))
            {
                continue;
            }
            // `center_to_corners_format`, then `_scale_boxes`, in f32.
            let [cx, cy, w, h] = [cxcywh[0], cxcywh[1], cxcywh[2], cxcywh[3]];
            let x0 = (cx - 0.5 * w) * image_width;
            let y0 = (cy - 0.5 * h) * image_height;
            let x1 = (cx + 0.5 * w) * image_width;
            let y1 = (cy + 0.5 * h) * image_height;
            // `_convert_bounding_box`.
            let (image_width, image_height) = (f64::from(width), f64::from(height));
            detections.push(Detection {
                label,
                bounding_box: [
                    f64::from(x0) / image_width,
                    f64::from(y0) / image_height,
                    f64::from(x1 - x0) / image_width,
                    f64::from(y1 - y0) / image_height,
                ],
                confidence: Some(f64::from(*score)),
                mask: None,
            });
        }
        detections
    }
}

impl Model for TorchZeroShotTransformerDetector {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.preprocessing.clone()
    }

    fn ragged_batches(&self) -> bool {
        self.preprocessing.fixed_size().is_none()
    }

    fn set_workers(&mut self, workers: usize) {
        crate::model::share_cpu_threads(workers);
    }

    fn set_confidence_thresh(&mut self, threshold: f64) -> bool {
        self.confidence_thresh = Some(threshold as f32);
        true
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let queries = self.queries()?;
        let batch = self.batch(inputs)?;
        let (logits, boxes) = self
            .repo
            .network
            .detect(&batch, &queries)
            .map_err(|err| ModelError::inference(chain(&err)))?;
        let failed = |err: tch::TchError| ModelError::inference(err.to_string());
        let (best, labels) = logits.f_max_dim(-1, false).map_err(failed)?;
        let scores = Vec::<f32>::try_from(
            best.f_sigmoid()
                .map_err(failed)?
                .f_flatten(0, -1)
                .map_err(failed)?,
        )
        .map_err(failed)?;
        let labels =
            Vec::<i64>::try_from(labels.f_flatten(0, -1).map_err(failed)?).map_err(failed)?;
        let boxes = Vec::<f32>::try_from(
            boxes
                .f_contiguous()
                .and_then(|boxes| boxes.f_flatten(0, -1))
                .map_err(failed)?,
        )
        .map_err(failed)?;
        let patches = scores.len() / inputs.len();
        Ok(inputs
            .iter()
            .enumerate()
            .map(|(index, input)| {
                let rows = index * patches..(index + 1) * patches;
                let detections = self.detections(
                    (
                        &scores[rows.clone()],
                        &labels[rows.clone()],
                        &boxes[rows.start * 4..rows.end * 4],
                    ),
                    input.original_size,
                );
                Prediction::Label(Some(Label::Detections(detections)))
            })
            .collect())
    }
}
