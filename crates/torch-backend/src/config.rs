//! FiftyOne's model configs, typed: the fields of FiftyOne 1.22.1's
//! `TorchImageModelConfig` (`fiftyone/utils/torch.py`) that zoo's torch
//! models read, and those `TorchCLIPModelConfig` adds
//! (`fiftyone/utils/clip/zoo.py`).
//!
//! One struct, [`TorchImageModelConfig`], serves every torch model of the
//! backend: torchvision classifiers and segmenters, detectors, PyTorch Hub
//! models (DINOv2), TorchScript files and CLIP ([`TorchClipModelConfig`]
//! holds CLIP's own fields). Each field has FiftyOne's name; absent and
//! `null` are the same (FiftyOne's `default=None`); fields zoo does not
//! read are ignored, as before. A value of the wrong type or out of range
//! is a [`ModelErrorKind::Config`](zoo_model_core::ModelErrorKind) error
//! naming the field (`skeleton.labels` for a nested one), what it must be
//! and the value given.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeOwned, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use zoo_model_core::ModelError;
use zoo_output_processors::ProcessorKind;

use crate::families;
use crate::preprocess::{MAX_IMAGE_SIDE, Preprocessing};

/// ImageNet's 1,000 class names, as torchvision orders them; what
/// `{{eta-resources}}/imagenet-labels-no-background.txt` resolves to.
pub const IMAGENET_LABELS: &str = include_str!("../resources/imagenet-labels-no-background.txt");

/// Pascal VOC's 21 categories as `id:name` lines; what
/// `{{eta-resources}}/voc-labels.txt` (the segmenters' `mask_targets_path`)
/// resolves to.
pub const VOC_LABELS: &str = include_str!("../resources/voc-labels.txt");

/// COCO's 91 detection classes by index (0 is `background`), as
/// `{{eta-resources}}/ms-coco-labels.txt` resolves through ETA's
/// `get_class_labels` (one name per line).
const COCO_LABELS: &str = include_str!("../resources/ms-coco-labels.txt");

/// The most classes a native architecture is built for: its last layer
/// is allocated before the weights are read, so a config listing millions
/// of classes would otherwise ask for gigabytes.
pub(crate) const MAX_CLASSES: usize = 100_000;

fn config_error(message: impl Into<String>) -> ModelError {
    ModelError::config(message.into())
}

/// The fields of FiftyOne's `TorchImageModelConfig` that zoo's torch models
/// read, with FiftyOne's names. FiftyOne's other fields are not read:
/// `transforms_args` (no `transforms_fcn` runs here), `image_min_size`,
/// `image_max_size` and `as_feature_extractor`; the fields that hand
/// FiftyOne Python are [`PythonFields`], refused by
/// [`TorchImageModelConfig::for_native_model`].
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct TorchImageModelConfig {
    /// `entrypoint_fcn`: the function that builds the network
    /// (`torchvision.models.resnet50`,
    /// `fiftyone.utils.torch.load_torch_hub_raw_model`); without it, the
    /// weights file is a TorchScript module.
    #[serde(default, deserialize_with = "function_name")]
    pub(crate) entrypoint_fcn: Option<String>,
    /// `entrypoint_args`: the keyword arguments of `entrypoint_fcn` (a JSON
    /// object; each architecture reads its own: `weights`,
    /// `transform_input`, `num_classes`, a hub's `repo_or_dir` and `model`,
    /// a detector's thresholds).
    #[serde(default, deserialize_with = "keyword_arguments")]
    pub(crate) entrypoint_args: Option<Value>,
    /// `ragged_batches`: whether inputs may differ in size (default: unless
    /// `image_size` makes them equal).
    #[serde(default, deserialize_with = "flag")]
    pub(crate) ragged_batches: Option<bool>,
    /// `output_processor_cls`: the output processor's class
    /// (`fiftyone.utils.torch.ClassifierOutputProcessor`); none gives raw
    /// outputs, not labels.
    #[serde(default, deserialize_with = "class_name")]
    pub(crate) output_processor_cls: Option<String>,
    /// `output_processor_args`: the output processor's keyword arguments.
    #[serde(default, deserialize_with = "processor_arguments")]
    pub(crate) output_processor_args: OutputProcessorArgs,
    /// `confidence_thresh`: predictions below it are dropped.
    #[serde(default, deserialize_with = "number")]
    pub(crate) confidence_thresh: Option<f32>,
    /// `filter_classes`: the labels a prediction may carry (all if none).
    #[serde(default, deserialize_with = "class_set")]
    pub(crate) filter_classes: Option<BTreeSet<String>>,
    /// `classes`: the class names (items that are not strings are taken as
    /// their JSON text).
    #[serde(default, deserialize_with = "class_list")]
    pub(crate) classes: Option<Vec<String>>,
    /// `labels_string`: the class names, comma-separated.
    #[serde(default, deserialize_with = "labels_string")]
    pub(crate) labels_string: Option<String>,
    /// `labels_path`: a file of class names, one a line
    /// (`{{eta-resources}}/...` for the files zoo ships).
    #[serde(default, deserialize_with = "path_text")]
    pub(crate) labels_path: Option<String>,
    /// `mask_targets`: segmentation ids to names.
    #[serde(default, deserialize_with = "mask_target_map")]
    pub(crate) mask_targets: Option<BTreeMap<i64, String>>,
    /// `mask_targets_path`: an `id:name` file of mask targets.
    #[serde(default, deserialize_with = "path_text")]
    pub(crate) mask_targets_path: Option<String>,
    /// `skeleton`: the keypoints' names and edges (FiftyOne's
    /// `KeypointSkeleton`).
    #[serde(default, deserialize_with = "skeleton")]
    pub(crate) skeleton: Option<KeypointSkeleton>,
    /// `image_min_dim`: upscale so both sides are at least this.
    #[serde(default, deserialize_with = "side")]
    pub(crate) image_min_dim: Option<u32>,
    /// `image_max_dim`: downscale so both sides are at most this.
    #[serde(default, deserialize_with = "side")]
    pub(crate) image_max_dim: Option<u32>,
    /// `image_size`, as `(width, height)`: FiftyOne passes the list to
    /// torchvision's `Resize`, which reads a pair as `[height, width]`
    /// (FiftyOne's docstring says `(width, height)`; what runs is
    /// torchvision's order).
    #[serde(default, deserialize_with = "image_size")]
    pub(crate) image_size: Option<(u32, u32)>,
    /// `image_dim`: torchvision's `Resize(image_dim)`, the shorter side to
    /// this.
    #[serde(default, deserialize_with = "side")]
    pub(crate) image_dim: Option<u32>,
    /// `image_patch_size`: centre-crop each side down to a multiple of this.
    #[serde(default, deserialize_with = "side")]
    pub(crate) image_patch_size: Option<u32>,
    /// `image_mean`: the per-channel mean subtracted (default 0).
    #[serde(default, deserialize_with = "mean")]
    pub(crate) image_mean: Option<[f32; 3]>,
    /// `image_std`: the per-channel standard deviation divided by (default
    /// 1; never 0).
    #[serde(default, deserialize_with = "std")]
    pub(crate) image_std: Option<[f32; 3]>,
    /// `embeddings_layer`: the layer whose output (`<` for its input) is the
    /// embedding; for a TorchScript file, the exported method that computes
    /// it.
    #[serde(default, deserialize_with = "layer_name")]
    pub(crate) embeddings_layer: Option<String>,
    /// `use_half_precision`: run in half precision (on CUDA only).
    #[serde(default, deserialize_with = "flag")]
    pub(crate) use_half_precision: Option<bool>,
    /// `cudnn_benchmark`: let cuDNN search for the fastest convolutions.
    #[serde(default, deserialize_with = "flag")]
    pub(crate) cudnn_benchmark: Option<bool>,
    /// `device`: `cpu`, `cuda` or `cuda:N` (default: CUDA when available).
    #[serde(default, deserialize_with = "device")]
    pub(crate) device: Option<String>,
    /// `model_path` (FiftyOne's `HasZooModel`): the weights file, instead of
    /// the downloaded one.
    #[serde(default, deserialize_with = "path")]
    pub(crate) model_path: Option<PathBuf>,
}

/// The `output_processor_args` zoo's output processors read; other keys
/// are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct OutputProcessorArgs {
    /// `DetectorOutputProcessor`'s own `confidence_thresh`, before the
    /// config's.
    #[serde(default, deserialize_with = "number")]
    pub(crate) confidence_thresh: Option<f32>,
    /// `InstanceSegmenterOutputProcessor`'s `mask_thresh` (default 0.5).
    #[serde(default, deserialize_with = "number")]
    pub(crate) mask_thresh: Option<f32>,
    /// `SemanticSegmenterOutputProcessor`'s `no_background_cls` (default
    /// false).
    #[serde(default, deserialize_with = "flag")]
    pub(crate) no_background_cls: Option<bool>,
    /// `SemanticSegmenterOutputProcessor`'s `has_softmax_out` (default
    /// true).
    #[serde(default, deserialize_with = "flag")]
    pub(crate) has_softmax_out: Option<bool>,
}

/// A keypoint skeleton from a config's `skeleton` (FiftyOne's
/// `KeypointSkeleton`): the points' names and the edges between them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeypointSkeleton {
    /// The name of each keypoint, if given.
    #[serde(default, deserialize_with = "keypoint_names")]
    pub labels: Option<Vec<String>>,
    /// Polylines through keypoint indices.
    #[serde(default, deserialize_with = "keypoint_edges")]
    pub edges: Vec<Vec<i64>>,
}

/// The `TorchImageModelConfig` fields that hand FiftyOne Python objects or
/// code (custom transforms, an output processor instance, a module) or raw,
/// untransformed images: zoo's native backend would otherwise run the
/// model differently from FiftyOne without saying so.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PythonFields {
    /// `model`: a `torch.nn.Module`.
    #[serde(default, deserialize_with = "anything")]
    model: Option<Value>,
    /// `transforms`: a preprocessing transform.
    #[serde(default, deserialize_with = "anything")]
    transforms: Option<Value>,
    /// `transforms_fcn`: a function returning one.
    #[serde(default, deserialize_with = "anything")]
    transforms_fcn: Option<Value>,
    /// `output_processor`: an `OutputProcessor` instance.
    #[serde(default, deserialize_with = "anything")]
    output_processor: Option<Value>,
    /// `raw_inputs`: feed the untransformed images to the module.
    #[serde(default, deserialize_with = "flag")]
    raw_inputs: Option<bool>,
}

/// The fields FiftyOne's `TorchCLIPModelConfig` adds to
/// [`TorchImageModelConfig`], and zoo's `tokenizer_path`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct TorchClipModelConfig {
    /// `tokenizer_path` (zoo's): the BPE vocabulary file, instead of
    /// `tokenizer_base_filename` beside the weights.
    #[serde(default, deserialize_with = "path")]
    pub(crate) tokenizer_path: Option<PathBuf>,
    /// `tokenizer_base_filename`: the vocabulary's file name, beside the
    /// weights.
    #[serde(default, deserialize_with = "file_name")]
    pub(crate) tokenizer_base_filename: Option<String>,
    /// `tokenizer_base_url`: where the vocabulary is downloaded from.
    #[serde(default, deserialize_with = "url")]
    pub(crate) tokenizer_base_url: Option<String>,
    /// `context_length`: the tokens of a prompt (default: the model's).
    #[serde(default, deserialize_with = "whole_number")]
    pub(crate) context_length: Option<u64>,
    /// `text_prompt`: what precedes each class in the zero-shot prompts.
    #[serde(default, deserialize_with = "prompt")]
    pub(crate) text_prompt: Option<String>,
}

/// Reads `T` from `config`; a bad field is a config error naming it, what
/// it must be and the value given.
fn read<T: DeserializeOwned>(config: &Map<String, Value>) -> Result<T, ModelError> {
    serde_path_to_error::deserialize(Value::Object(config.clone())).map_err(|err| {
        let path = err.path().to_string();
        config_error(format!(
            "`{path}` {}; correct the value or remove the field from the model's config",
            err.inner()
        ))
    })
}

impl TorchImageModelConfig {
    /// The typed fields of a deployment config's `config` object.
    pub(crate) fn from_map(config: &Map<String, Value>) -> Result<Self, ModelError> {
        read(config)
    }

    /// As [`TorchImageModelConfig::from_map`], after refusing the
    /// [`PythonFields`] (by name, as
    /// [`ModelErrorKind::Unsupported`](zoo_model_core::ModelErrorKind)
    /// errors; a `raw_inputs` that is not a boolean is a config error).
    pub(crate) fn for_native_model(config: &Map<String, Value>) -> Result<Self, ModelError> {
        read::<PythonFields>(config)?.refuse()?;
        Self::from_map(config)
    }

    /// The weights file: `model_path`, else the downloaded one.
    pub(crate) fn model_path(&self, downloaded: Option<&Path>) -> Result<PathBuf, ModelError> {
        self.model_path
            .clone()
            .or_else(|| downloaded.map(Path::to_owned))
            .ok_or_else(|| {
                config_error(
                    "no weights: the model is not downloaded and the config has no `model_path`",
                )
            })
    }

    /// The TorchScript file of `entrypoint_fcn: torch.jit.load`: its
    /// `entrypoint_args` `f` (as FiftyOne calls `torch.jit.load(f=...)`),
    /// else the weights file ([`Self::model_path`]). With a downloaded file
    /// (a registry model), `f` may only name that file.
    pub(crate) fn script_file(&self, downloaded: Option<&Path>) -> Result<PathBuf, ModelError> {
        match self.entrypoint_args.as_ref().and_then(|args| args.get("f")) {
            None | Some(Value::Null) => self.model_path(downloaded),
            Some(Value::String(file)) if !file.is_empty() => {
                let file = PathBuf::from(file);
                // A registry model's `f` is manifest text: it may name only
                // the model's own file, never another file on this machine
                // for libtorch to parse.
                if let Some(own) = downloaded {
                    let same = |path: &Path| fs_err::canonicalize(path).ok();
                    if file != own && (same(&file).is_none() || same(&file) != same(own)) {
                        return Err(config_error(format!(
                            "`entrypoint_args.f` names `{}`, which is not this model's file `{}`; a model's config may only load its own file: remove `f`",
                            file.display(),
                            own.display()
                        )));
                    }
                }
                Ok(file)
            }
            Some(other) => Err(config_error(format!(
                "`entrypoint_args.f` must be the path of a TorchScript file for `torch.jit.load`, got `{other}`; correct it or remove it to load the model's own file"
            ))),
        }
    }

    /// The output processor `output_processor_cls` names: `None` when it
    /// names none (absent, or a name whose last dotted part is empty); one
    /// zoo does not implement is an
    /// [`ModelErrorKind::Unsupported`](zoo_model_core::ModelErrorKind)
    /// error naming it.
    pub(crate) fn output_processor(&self) -> Result<Option<ProcessorKind>, ModelError> {
        let Some(class) = &self.output_processor_cls else {
            return Ok(None);
        };
        let name = class.rsplit('.').next().unwrap_or_default();
        if name.is_empty() {
            return Ok(None);
        }
        ProcessorKind::from_fiftyone_class(class)
            .map(Some)
            .ok_or_else(|| {
                ModelError::unsupported(format!(
                    "output processor `{name}` is not supported by zoo's torch backend yet"
                ))
            })
    }

    /// The preprocessing the image fields ask for (`pixels`: leave the
    /// resized pixels as `u8` for the model to normalise where it runs).
    pub(crate) fn preprocessing(&self, pixels: bool) -> Preprocessing {
        Preprocessing {
            dim: self.image_dim,
            min_dim: self.image_min_dim,
            max_dim: self.image_max_dim,
            size: self.image_size,
            mean: self.image_mean.unwrap_or([0.0; 3]),
            std: self.image_std.unwrap_or([1.0; 3]),
            // FiftyOne's `image_size` branch comes first and crops nothing.
            patch_size: match self.image_size {
                Some(_) => None,
                None => self.image_patch_size,
            },
            pixels,
        }
    }

    /// The number of classes a segmentation architecture is built for:
    /// `entrypoint_args.num_classes` when given (as torchvision's builder
    /// takes it), else torchvision's default, 21 (the hosted weights' VOC
    /// categories). FiftyOne's `mask_targets` only name them.
    pub(crate) fn segmenter_classes(&self) -> Result<i64, ModelError> {
        let value = self
            .entrypoint_args
            .as_ref()
            .and_then(|args| args.get("num_classes"));
        match value {
            None | Some(Value::Null) => Ok(families::segmentation::SEGMENTER_CLASSES),
            Some(value) => value
                .as_u64()
                .filter(|classes| (1..=MAX_CLASSES as u64).contains(classes))
                .map(|classes| classes as i64)
                .ok_or_else(|| {
                    config_error(format!(
                        "`entrypoint_args.num_classes` must be a whole number from 1 to {MAX_CLASSES}, got `{value}`"
                    ))
                }),
        }
    }

    /// The class names the config gives: `classes`, `labels_string`,
    /// `labels_path` (zoo's own ImageNet and COCO files for
    /// `{{eta-resources}}`), or, as FiftyOne's `_parse_classes`, the names
    /// of its [`TorchImageModelConfig::mask_targets`], sorted.
    pub(crate) fn class_names(&self) -> Result<Vec<String>, ModelError> {
        if let Some(classes) = &self.classes {
            return Ok(classes.clone());
        }
        if let Some(labels) = &self.labels_string {
            return Ok(labels
                .split(',')
                .map(|label| label.trim().to_owned())
                .collect());
        }
        if let Some(path) = &self.labels_path {
            if let Some(resource) = path.strip_prefix("{{eta-resources}}/") {
                return match resource {
                    "imagenet-labels-no-background.txt" => {
                        Ok(IMAGENET_LABELS.lines().map(str::to_owned).collect())
                    }
                    "ms-coco-labels.txt" => Ok(COCO_LABELS.lines().map(str::to_owned).collect()),
                    other => Err(config_error(format!(
                        "labels file `{other}` is not shipped with zoo; give `classes` or a `labels_path` on disk"
                    ))),
                };
            }
            let text = fs_err::read_to_string(path).map_err(|err| config_error(err.to_string()))?;
            return Ok(text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect());
        }
        // FiftyOne's last resort: the mask targets' names, sorted.
        if let Some(targets) = self.mask_targets()? {
            let mut names: Vec<String> = targets.into_values().collect();
            names.sort();
            return Ok(names);
        }
        Ok(Vec::new())
    }

    /// FiftyOne's mask targets (`TorchImageModel._parse_mask_targets`):
    /// `mask_targets`, else the `id:name` file `mask_targets_path` (zoo's
    /// own VOC file for `{{eta-resources}}`), else none.
    pub(crate) fn mask_targets(&self) -> Result<Option<BTreeMap<i64, String>>, ModelError> {
        if let Some(targets) = &self.mask_targets {
            return Ok(Some(targets.clone()));
        }
        let Some(path) = &self.mask_targets_path else {
            return Ok(None);
        };
        if let Some(resource) = path.strip_prefix("{{eta-resources}}/") {
            return match resource {
                "voc-labels.txt" => labels_map(VOC_LABELS, path).map(Some),
                other => Err(config_error(format!(
                    "mask targets file `{other}` is not shipped with zoo; give `mask_targets` or a `mask_targets_path` on disk"
                ))),
            };
        }
        let text = fs_err::read_to_string(path).map_err(|err| config_error(err.to_string()))?;
        labels_map(&text, path).map(Some)
    }
}

impl PythonFields {
    /// Refuses the config if it sets any of these fields.
    fn refuse(self) -> Result<(), ModelError> {
        let fields = [
            ("model", self.model),
            ("transforms", self.transforms),
            ("transforms_fcn", self.transforms_fcn),
            ("output_processor", self.output_processor),
        ];
        if let Some((key, Some(value))) = fields.into_iter().find(|(_, value)| value.is_some()) {
            return Err(ModelError::unsupported(format!(
                "the config's `{key}` (`{value}`) is Python that FiftyOne runs; zoo's native backend does not run Python: drop the field, or have the source's `load_model` return the model so that zoo hosts it in Python"
            )));
        }
        if self.raw_inputs == Some(true) {
            return Err(ModelError::unsupported(
                "the config sets `raw_inputs`: FiftyOne then feeds the untransformed images to a Python module, which zoo's native backend cannot run; have the source's `load_model` return the model so that zoo hosts it in Python".into(),
            ));
        }
        Ok(())
    }
}

impl TorchClipModelConfig {
    /// The CLIP fields of a deployment config's `config` object.
    pub(crate) fn from_map(config: &Map<String, Value>) -> Result<Self, ModelError> {
        read(config)
    }
}

/// The class names a config gives (see
/// [`TorchImageModelConfig::class_names`]); a malformed field is an error
/// naming it.
pub fn class_names(config: &Map<String, Value>) -> Result<Vec<String>, ModelError> {
    TorchImageModelConfig::from_map(config)?.class_names()
}

/// FiftyOne's mask targets (`TorchImageModel._parse_mask_targets`):
/// `mask_targets` (`{"id": "name"}`), else the `id:name` file
/// `mask_targets_path` (zoo's own VOC file for `{{eta-resources}}`), else
/// none.
pub fn mask_targets(
    config: &Map<String, Value>,
) -> Result<Option<BTreeMap<i64, String>>, ModelError> {
    TorchImageModelConfig::from_map(config)?.mask_targets()
}

/// An `id:name` labels map (ETA's `load_labels_map`): one entry a line,
/// blank lines skipped; `what` names the file in errors.
fn labels_map(text: &str, what: &str) -> Result<BTreeMap<i64, String>, ModelError> {
    let mut map = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parsed = line
            .split_once(':')
            .and_then(|(id, name)| Some((id.trim().parse::<i64>().ok()?, name.trim())));
        let Some((id, name)) = parsed else {
            return Err(config_error(format!(
                "mask targets `{what}` line {}: expected `id:name`, got `{line}`",
                number + 1
            )));
        };
        map.insert(id, name.to_owned());
    }
    Ok(map)
}

// The fields' readers. Each reads one field's JSON value: absent or null is
// `None`; otherwise the value, or what is wrong with it ("must be ..., got
// `value`"), which `read` prefixes with the field's path.

/// An optional field read by `parse`.
fn optional<'de, D, T>(
    deserializer: D,
    parse: impl FnOnce(&Value) -> Result<T, String>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        value => parse(&value).map(Some).map_err(D::Error::custom),
    }
}

/// `Ok(parsed)`, or "must be `expected`, got `value`".
fn expect<T>(value: &Value, expected: &str, parsed: Option<T>) -> Result<T, String> {
    parsed.ok_or_else(|| format!("must be {expected}, got `{value}`"))
}

/// A string field described as `expected` in errors.
fn text<'de, D: Deserializer<'de>>(
    deserializer: D,
    expected: &str,
) -> Result<Option<String>, D::Error> {
    optional(deserializer, |value| {
        expect(value, expected, value.as_str().map(str::to_owned))
    })
}

fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    optional(deserializer, |value| {
        expect(value, "true or false", value.as_bool())
    })
}

fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f32>, D::Error> {
    optional(deserializer, |value| {
        expect(
            value,
            "a number",
            value.as_f64().map(|number| number as f32),
        )
    })
}

fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    optional(deserializer, |value| {
        expect(value, "a whole number", value.as_u64())
    })
}

fn function_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    text(
        deserializer,
        "a function name such as `torchvision.models.resnet50`",
    )
}

fn class_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    text(
        deserializer,
        "a class name such as `fiftyone.utils.torch.ClassifierOutputProcessor`",
    )
}

fn layer_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    text(deserializer, "a layer name such as `<fc`")
}

fn device<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    text(deserializer, "a device name: `cpu`, `cuda` or `cuda:N`")
}

fn labels_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    text(deserializer, "a string of comma-separated class names")
}

fn path_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    text(deserializer, "a path")
}

fn path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(path_text(deserializer)?.map(PathBuf::from))
}

fn file_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    text(deserializer, "a file name")
}

fn url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    text(deserializer, "a URL")
}

fn prompt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    text(deserializer, "a string such as `A photo of`")
}

/// Any value but null (the [`PythonFields`]).
fn anything<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    optional(deserializer, |value| Ok(value.clone()))
}

fn keyword_arguments<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    optional(deserializer, |value| {
        expect(
            value,
            "an object of keyword arguments",
            value.is_object().then(|| value.clone()),
        )
    })
}

/// A list of strings, or `None` if `value` is not one.
fn strings(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

fn class_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    optional(deserializer, |value| {
        let names = value.as_array().map(|items| {
            items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map_or_else(|| item.to_string(), str::to_owned)
                })
                .collect()
        });
        expect(value, "a list of class names", names)
    })
}

fn class_set<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeSet<String>>, D::Error> {
    optional(deserializer, |value| {
        let names = strings(value).map(|names| names.into_iter().collect());
        expect(value, "a list of class names", names)
    })
}

fn keypoint_names<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    optional(deserializer, |value| {
        expect(value, "a list of keypoint names", strings(value))
    })
}

fn keypoint_edges<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Vec<i64>>, D::Error> {
    let edges = optional(deserializer, |value| {
        let edges = value.as_array().and_then(|edges| {
            edges
                .iter()
                .map(|edge| edge.as_array()?.iter().map(Value::as_i64).collect())
                .collect()
        });
        expect(value, "a list of lists of keypoint indices", edges)
    })?;
    Ok(edges.unwrap_or_default())
}

fn mask_target_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<i64, String>>, D::Error> {
    optional(deserializer, |value| {
        let Value::Object(targets) = value else {
            return Err(format!("must be an object of ids to names, got `{value}`"));
        };
        targets
            .iter()
            .map(
                |(id, name)| match (id.trim().parse::<i64>(), name.as_str()) {
                    (Ok(id), Some(name)) => Ok((id, name.to_owned())),
                    _ => Err(format!(
                        "maps whole-number ids to names, got `{id}`: `{name}`"
                    )),
                },
            )
            .collect()
    })
}

/// An image side in pixels: a whole number from 1 to [`MAX_IMAGE_SIDE`].
fn pixels(value: &Value) -> Option<u32> {
    value
        .as_u64()
        .and_then(|value| u32::try_from(value).ok())
        .filter(|value| (1..=MAX_IMAGE_SIDE).contains(value))
}

fn side<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    optional(deserializer, |value| {
        expect(
            value,
            &format!("a whole number of pixels from 1 to {MAX_IMAGE_SIDE}"),
            pixels(value),
        )
    })
}

fn image_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<(u32, u32)>, D::Error> {
    optional(deserializer, |value| {
        let size = match value {
            Value::Array(items) if items.len() == 2 => pixels(&items[1]).zip(pixels(&items[0])),
            _ => None,
        };
        expect(
            value,
            &format!("[height, width] in whole pixels from 1 to {MAX_IMAGE_SIDE}"),
            size,
        )
    })
}

/// Three finite numbers, one per channel.
fn channels(value: &Value) -> Result<[f32; 3], String> {
    match value {
        Value::Array(items) if items.len() == 3 => {
            let mut out = [0f32; 3];
            for (slot, item) in out.iter_mut().zip(items) {
                *slot = item
                    .as_f64()
                    .map(|number| number as f32)
                    .filter(|number| number.is_finite())
                    .ok_or_else(|| format!("must hold finite numbers, got `{value}`"))?;
            }
            Ok(out)
        }
        _ => Err(format!("must be a list of 3 numbers, got `{value}`")),
    }
}

fn mean<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<[f32; 3]>, D::Error> {
    optional(deserializer, channels)
}

fn std<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<[f32; 3]>, D::Error> {
    optional(deserializer, |value| {
        let std = channels(value)?;
        if std.contains(&0.0) {
            return Err(format!("must not hold 0, got `{value}`"));
        }
        Ok(std)
    })
}

fn skeleton<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<KeypointSkeleton>, D::Error> {
    deserializer.deserialize_any(ObjectVisitor::new("an object with `labels` and `edges`"))
}

fn processor_arguments<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<OutputProcessorArgs, D::Error> {
    let args = deserializer.deserialize_any(ObjectVisitor::new(
        "an object of keyword arguments for `output_processor_cls`",
    ))?;
    Ok(args.unwrap_or_default())
}

/// Reads an optional object field as `T`, its own fields read through
/// the same deserializer (so their errors name `field.key`); null is
/// `None`, anything else an error saying the field must be `expected`.
struct ObjectVisitor<T> {
    expected: &'static str,
    object: PhantomData<T>,
}

impl<T> ObjectVisitor<T> {
    fn new(expected: &'static str) -> Self {
        Self {
            expected,
            object: PhantomData,
        }
    }

    fn wrong<E: serde::de::Error>(&self, value: Value) -> Result<Option<T>, E> {
        Err(E::custom(format!(
            "must be {}, got `{value}`",
            self.expected
        )))
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expected)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Self::Value, E> {
        self.wrong(Value::from(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
        self.wrong(Value::from(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
        self.wrong(Value::from(value))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
        self.wrong(Value::from(value))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
        self.wrong(Value::from(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let value = Value::deserialize(SeqAccessDeserializer::new(seq))?;
        self.wrong(value)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Map, Value, json};
    use zoo_model_core::{ModelError, ModelErrorKind};
    use zoo_output_processors::ProcessorKind;

    use super::{KeypointSkeleton, TorchClipModelConfig, TorchImageModelConfig};

    /// The `config` of built-in entry `name`'s
    /// `default_deployment_config_dict` in FiftyOne 1.22.1's
    /// `manifest-torch.json` (as zoo ships it).
    fn builtin(name: &str) -> Map<String, Value> {
        let manifest: Value =
            serde_json::from_str(include_str!("../../registry/builtin/manifest-torch.json"))
                .unwrap();
        let entry = manifest["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["base_name"] == name || entry["name"] == name)
            .unwrap_or_else(|| panic!("no built-in `{name}`"));
        entry["default_deployment_config_dict"]["config"]
            .as_object()
            .unwrap()
            .clone()
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn config_error(value: Value) -> String {
        match TorchImageModelConfig::for_native_model(&object(value.clone())) {
            Err(err) if err.kind() == ModelErrorKind::Config => err.message().to_owned(),
            Err(other) => panic!("{value}: not a config error: {other}"),
            Ok(_) => panic!("{value}: accepted"),
        }
    }

    #[test]
    fn resnet50s_fiftyone_config_reads_field_for_field() {
        let config =
            TorchImageModelConfig::for_native_model(&builtin("resnet50-imagenet-torch")).unwrap();
        assert_eq!(
            config.entrypoint_fcn.as_deref(),
            Some("torchvision.models.resnet.resnet50")
        );
        assert_eq!(
            config.entrypoint_args,
            Some(json!({"weights": "ResNet50_Weights.DEFAULT"}))
        );
        assert_eq!(
            config.output_processor().unwrap(),
            Some(ProcessorKind::Classifier)
        );
        assert_eq!(
            config.labels_path.as_deref(),
            Some("{{eta-resources}}/imagenet-labels-no-background.txt")
        );
        assert_eq!(config.class_names().unwrap().len(), 1000);
        assert_eq!(config.image_min_dim, Some(224));
        assert_eq!(config.image_max_dim, Some(2048));
        assert_eq!(config.image_mean, Some([0.485, 0.456, 0.406]));
        assert_eq!(config.image_std, Some([0.229, 0.224, 0.225]));
        assert_eq!(config.embeddings_layer.as_deref(), Some("<fc"));
        assert_eq!(config.image_size, None);
        assert_eq!(config.device, None);
        assert_eq!(config.use_half_precision, None);
        let preprocessing = config.preprocessing(false);
        assert_eq!(
            (
                preprocessing.min_dim,
                preprocessing.max_dim,
                preprocessing.patch_size
            ),
            (Some(224), Some(2048), None)
        );
    }

    #[test]
    fn dinov2s_fiftyone_config_reads_field_for_field() {
        let config =
            TorchImageModelConfig::for_native_model(&builtin("dinov2-vits14-torch")).unwrap();
        assert_eq!(
            config.entrypoint_fcn.as_deref(),
            Some("fiftyone.utils.torch.load_torch_hub_raw_model")
        );
        assert_eq!(
            config.entrypoint_args,
            Some(json!({"repo_or_dir": "facebookresearch/dinov2", "model": "dinov2_vits14"}))
        );
        assert_eq!(config.image_patch_size, Some(14));
        assert_eq!(config.embeddings_layer.as_deref(), Some("head"));
        // No output processor: raw outputs (embeddings only).
        assert_eq!(config.output_processor().unwrap(), None);
        assert_eq!(config.class_names().unwrap(), Vec::<String>::new());
        assert_eq!(config.preprocessing(false).patch_size, Some(14));
    }

    #[test]
    fn detectors_fiftyone_configs_read_field_for_field() {
        let config = TorchImageModelConfig::for_native_model(&builtin(
            "faster-rcnn-resnet50-fpn-coco-torch",
        ))
        .unwrap();
        assert_eq!(
            config.output_processor().unwrap(),
            Some(ProcessorKind::Detector)
        );
        assert_eq!(config.confidence_thresh, Some(0.3));
        let classes = config.class_names().unwrap();
        assert_eq!((classes.len(), classes[0].as_str()), (91, "background"));
        let config = TorchImageModelConfig::for_native_model(&builtin(
            "keypoint-rcnn-resnet50-fpn-coco-torch",
        ))
        .unwrap();
        assert_eq!(
            config.output_processor().unwrap(),
            Some(ProcessorKind::KeypointDetector)
        );
        let skeleton = config.skeleton.unwrap();
        assert_eq!(skeleton.labels.unwrap().len(), 17);
        assert!(!skeleton.edges.is_empty());
        let config =
            TorchImageModelConfig::for_native_model(&builtin("deeplabv3-resnet50-coco-torch"))
                .unwrap();
        assert_eq!(
            config.output_processor().unwrap(),
            Some(ProcessorKind::SemanticSegmenter)
        );
        assert_eq!(config.mask_targets().unwrap().unwrap().len(), 21);
    }

    #[test]
    fn clips_fiftyone_config_reads_field_for_field() {
        let config = builtin("clip-vit-base32-torch");
        let clip = TorchClipModelConfig::from_map(&config).unwrap();
        assert_eq!(
            clip.tokenizer_base_filename.as_deref(),
            Some("clip_bpe_simple_vocab_16e6.txt.gz")
        );
        assert_eq!(clip.context_length, Some(77));
        assert_eq!(clip.text_prompt.as_deref(), Some("A photo of"));
        let image = TorchImageModelConfig::from_map(&config).unwrap();
        assert_eq!(image.image_size, Some((224, 224)));
    }

    /// FiftyOne configs carry many fields zoo does not read: they are
    /// ignored, whatever their value.
    #[test]
    fn unknown_fields_are_ignored() {
        let mut config = builtin("resnet50-imagenet-torch");
        for (key, value) in [
            ("as_feature_extractor", json!("not even a boolean")),
            ("transforms_args", json!({"x": 1})),
            ("image_min_size", json!([1, 2])),
            ("some_future_field", json!([{"deep": null}])),
        ] {
            config.insert(key.to_owned(), value);
        }
        let config = TorchImageModelConfig::for_native_model(&config).unwrap();
        assert_eq!(config.image_min_dim, Some(224));
        // And inside `output_processor_args` and `skeleton`.
        let config = TorchImageModelConfig::for_native_model(&object(json!({
            "output_processor_args": {"store_logits": "x", "mask_thresh": 0.25},
            "skeleton": {"labels": ["a"], "edges": [], "colour": 3},
        })))
        .unwrap();
        assert_eq!(config.output_processor_args.mask_thresh, Some(0.25));
        assert_eq!(config.skeleton.unwrap().labels.unwrap(), ["a"]);
    }

    /// Null is FiftyOne's `default=None`: the same as absent.
    #[test]
    fn null_fields_are_absent() {
        let keys = [
            "entrypoint_fcn",
            "entrypoint_args",
            "ragged_batches",
            "output_processor_cls",
            "output_processor_args",
            "confidence_thresh",
            "filter_classes",
            "classes",
            "labels_string",
            "labels_path",
            "mask_targets",
            "mask_targets_path",
            "skeleton",
            "image_min_dim",
            "image_max_dim",
            "image_size",
            "image_dim",
            "image_patch_size",
            "image_mean",
            "image_std",
            "embeddings_layer",
            "use_half_precision",
            "cudnn_benchmark",
            "device",
            "model_path",
            "model",
            "transforms",
            "transforms_fcn",
            "output_processor",
            "raw_inputs",
        ];
        let config: Map<String, Value> = keys
            .iter()
            .map(|key| ((*key).to_owned(), Value::Null))
            .collect();
        let config = TorchImageModelConfig::for_native_model(&config).unwrap();
        assert!(config.entrypoint_fcn.is_none() && config.skeleton.is_none());
        assert_eq!(config.preprocessing(false), Default::default());
    }

    /// A field of the wrong type is a config error naming the field, what
    /// it must be and the value given.
    #[test]
    fn a_wrong_type_is_an_error_naming_the_field_and_the_value() {
        for (config, expected) in [
            (json!({"device": 0}), "`device` must be a device name"),
            (
                json!({"use_half_precision": "yes"}),
                "`use_half_precision` must be true or false",
            ),
            (
                json!({"model_path": ["w.pth"]}),
                "`model_path` must be a path",
            ),
            (
                json!({"classes": "a,b"}),
                "`classes` must be a list of class names",
            ),
            (json!({"labels_path": 3}), "`labels_path` must be a path"),
            (
                json!({"image_dim": "224"}),
                "`image_dim` must be a whole number of pixels",
            ),
            (
                json!({"image_patch_size": 0}),
                "`image_patch_size` must be a whole number of pixels",
            ),
            (
                json!({"image_mean": [0.5, 0.5]}),
                "`image_mean` must be a list of 3 numbers",
            ),
            (
                json!({"ragged_batches": 1}),
                "`ragged_batches` must be true or false",
            ),
            (
                json!({"output_processor_args": [1]}),
                "`output_processor_args` must be an object",
            ),
            (
                json!({"output_processor_args": {"mask_thresh": "high"}}),
                "`output_processor_args.mask_thresh` must be a number",
            ),
            (
                json!({"embeddings_layer": 3}),
                "`embeddings_layer` must be a layer name",
            ),
            (
                json!({"entrypoint_fcn": {"f": 1}}),
                "`entrypoint_fcn` must be a function name",
            ),
            (
                json!({"entrypoint_args": "weights"}),
                "`entrypoint_args` must be an object",
            ),
            (
                json!({"confidence_thresh": "0.5"}),
                "`confidence_thresh` must be a number",
            ),
            (
                json!({"filter_classes": ["a", 1]}),
                "`filter_classes` must be a list of class names",
            ),
        ] {
            let message = config_error(config.clone());
            assert!(message.contains(expected), "{config}: {message}");
            let value = config.as_object().unwrap().values().next().unwrap();
            let shown = match value {
                Value::Object(args) if args.contains_key("mask_thresh") => json!("high"),
                other => other.clone(),
            };
            assert!(
                message.contains(&format!("`{shown}`")),
                "{config}: {message}"
            );
            assert!(message.contains("remove the field"), "{config}: {message}");
        }
    }

    #[test]
    fn python_only_fields_are_refused_first_and_raw_inputs_must_be_a_boolean() {
        for key in ["model", "transforms", "transforms_fcn", "output_processor"] {
            let config = object(json!({key: "my_pkg.thing", "image_dim": "bad"}));
            let err = TorchImageModelConfig::for_native_model(&config).unwrap_err();
            assert!(
                err.is_unsupported() && err.message().contains(&format!("`{key}`")),
                "{key}: {err}"
            );
        }
        let err = TorchImageModelConfig::for_native_model(&object(json!({"raw_inputs": true})))
            .unwrap_err();
        assert!(
            err.is_unsupported() && err.message().contains("`raw_inputs`"),
            "{err}"
        );
        let message = config_error(json!({"raw_inputs": "yes"}));
        assert!(
            message.contains("`raw_inputs` must be true or false"),
            "{message}"
        );
        assert!(
            TorchImageModelConfig::for_native_model(&object(json!({"raw_inputs": false}))).is_ok()
        );
        // CLIP's config does not refuse them (FiftyOne's CLIP ignores them).
        assert!(TorchImageModelConfig::from_map(&object(json!({"model": "x"}))).is_ok());
    }

    #[test]
    fn unknown_output_processors_are_unsupported_naming_the_class() {
        let config = TorchImageModelConfig::from_map(&object(json!({
            "output_processor_cls": "fiftyone.utils.torch.MagicOutputProcessor",
        })))
        .unwrap();
        let err = config.output_processor().unwrap_err();
        assert!(
            err.is_unsupported() && err.message().contains("`MagicOutputProcessor`"),
            "{err}"
        );
        let config =
            TorchImageModelConfig::from_map(&object(json!({"output_processor_cls": ""}))).unwrap();
        assert_eq!(config.output_processor().unwrap(), None);
    }

    /// `classes` first, then `labels_string`, `labels_path`, and the mask
    /// targets' names; items of `classes` that are not strings are their
    /// JSON text.
    #[test]
    fn class_names_come_from_the_first_field_that_gives_them() {
        let names = |value: Value| {
            TorchImageModelConfig::from_map(&object(value))
                .unwrap()
                .class_names()
                .unwrap()
        };
        assert_eq!(
            names(json!({"classes": ["a", 2], "labels_string": "x, y"})),
            ["a", "2"]
        );
        assert_eq!(names(json!({"labels_string": "x, y"})), ["x", "y"]);
        assert_eq!(
            names(json!({"labels_path": "{{eta-resources}}/ms-coco-labels.txt"}))[1],
            "person"
        );
        assert_eq!(
            names(json!({"mask_targets": {"1": "road", "0": "sky"}})),
            ["road", "sky"]
        );
        assert!(names(json!({})).is_empty());
    }

    /// A config's `skeleton` as FiftyOne's `KeypointSkeleton.from_dict`
    /// takes it (Keypoint R-CNN's COCO skeleton among them); a malformed
    /// one is an error naming the field, not a panic or a silent default.
    #[test]
    fn skeletons_parse_as_fiftyone_and_bad_ones_name_the_field() {
        let config =
            |value: serde_json::Value| json!({ "skeleton": value }).as_object().unwrap().clone();
        let skeleton = |config: &Map<String, Value>| -> Result<_, ModelError> {
            Ok(TorchImageModelConfig::from_map(config)?.skeleton)
        };
        assert_eq!(
            skeleton(&config(
                json!({"labels": ["nose", "eye"], "edges": [[0, 1]]})
            ))
            .unwrap(),
            Some(KeypointSkeleton {
                labels: Some(vec!["nose".into(), "eye".into()]),
                edges: vec![vec![0, 1]],
            })
        );
        assert_eq!(
            skeleton(&config(json!({}))).unwrap(),
            Some(KeypointSkeleton {
                labels: None,
                edges: Vec::new(),
            })
        );
        assert_eq!(skeleton(&config(json!(null))).unwrap(), None);
        for (value, field) in [
            (json!("nose-eye"), "`skeleton`"),
            (json!({"labels": 3}), "`skeleton.labels`"),
            (json!({"labels": ["nose", 1]}), "`skeleton.labels`"),
            (json!({"edges": [[0, "a"]]}), "`skeleton.edges`"),
            (json!({"edges": [0, 1]}), "`skeleton.edges`"),
        ] {
            let message = skeleton(&config(value.clone())).unwrap_err().to_string();
            assert!(message.contains(field), "{value}: {message}");
        }
    }

    #[test]
    fn a_registry_models_jit_file_may_only_be_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("model.pt");
        let other = dir.path().join("secret.txt");
        fs_err::write(&own, b"x").unwrap();
        fs_err::write(&other, b"y").unwrap();
        let config = |f: &Path| {
            TorchImageModelConfig::from_map(
                json!({"entrypoint_fcn": "torch.jit.load", "entrypoint_args": {"f": f}})
                    .as_object()
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(config(&own).script_file(Some(&own)).unwrap(), own);
        let error = config(&other).script_file(Some(&own)).unwrap_err();
        assert!(
            error.to_string().contains("not this model's file"),
            "{error}"
        );
        // Built in code with no registry file: `f` is the caller's choice.
        assert_eq!(config(&other).script_file(None).unwrap(), other);
    }
}
