//! `TorchImageModel`: FiftyOne's torch image model on libtorch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ndarray::{Array1, Array2};
use serde_json::{Map, Value};
use tch::{CModule, Device, IValue, Kind, Tensor, nn::VarStore};
use zoo_model_core::{Input, InputData, Model, ModelError, ModelSpec, Prediction, Preprocess};
use zoo_output_processors::{
    Classifier, Detector, DetectorOutput, InstanceSegmenter, KeypointDetector, SemanticSegmenter,
};

use crate::checkpoint::weights::{load_file_into, load_into, read_named_tensors};
use crate::device::DeviceSpec;
use crate::families::{self, BuildOptions, Task};
use crate::net::Network;
use crate::preprocess::{MAX_IMAGE_SIDE, Preprocessing};

/// ImageNet's 1,000 class names, as torchvision orders them; what
/// `{{eta-resources}}/imagenet-labels-no-background.txt` resolves to.
pub const IMAGENET_LABELS: &str = include_str!("../resources/imagenet-labels-no-background.txt");

/// Pascal VOC's 21 categories as `id:name` lines; what
/// `{{eta-resources}}/voc-labels.txt` (the segmenters' `mask_targets_path`)
/// resolves to.
pub const VOC_LABELS: &str = include_str!("../resources/voc-labels.txt");

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

/// FiftyOne's mask targets (`TorchImageModel._parse_mask_targets`):
/// `mask_targets` (`{"id": "name"}`), else the `id:name` file
/// `mask_targets_path` (zoo's own VOC file for `{{eta-resources}}`), else
/// none.
pub fn mask_targets(
    config: &Map<String, Value>,
) -> Result<Option<BTreeMap<i64, String>>, ModelError> {
    match config.get("mask_targets") {
        None | Some(Value::Null) => {}
        Some(Value::Object(targets)) => {
            let mut map = BTreeMap::new();
            for (id, name) in targets {
                let (Ok(id), Some(name)) = (id.trim().parse::<i64>(), name.as_str()) else {
                    return Err(config_error(format!(
                        "`mask_targets` maps whole-number ids to names, got `{id}`: `{name}`"
                    )));
                };
                map.insert(id, name.to_owned());
            }
            return Ok(Some(map));
        }
        Some(other) => {
            return Err(config_error(format!(
                "`mask_targets` must be an object of ids to names, got `{other}`"
            )));
        }
    }
    let path = match config.get("mask_targets_path") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(path)) => path,
        Some(other) => {
            return Err(config_error(format!(
                "`mask_targets_path` must be a path, got `{other}`"
            )));
        }
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
/// COCO's 91 detection classes by index (0 is `background`), as
/// `{{eta-resources}}/ms-coco-labels.txt` resolves through ETA's
/// `get_class_labels` (one name per line).
const COCO_LABELS: &str = include_str!("../resources/ms-coco-labels.txt");

/// The type names this backend answers to.
pub const TYPE_NAMES: &[&str] = &[
    "fiftyone.utils.torch.TorchImageModel",
    "fiftyone.zoo.models.torch.TorchvisionImageModel",
    "TorchImageModel",
    "TorchvisionImageModel",
    "torch",
];

/// libtorch's intra-op threads as the process started (before any
/// [`Model::set_workers`] divided them).
pub(crate) fn cpu_threads() -> i32 {
    static THREADS: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *THREADS.get_or_init(tch::get_num_threads)
}

/// Gives each of `workers` CPU copies its share of the threads libtorch
/// started with. libtorch's intra-op thread count is process-wide, so a
/// model run after copies of another must set it back: every CPU model's
/// `set_workers` calls this, one copy included.
pub(crate) fn share_cpu_threads(workers: usize) {
    let share = (cpu_threads() / workers.max(1) as i32).max(1);
    if tch::get_num_threads() != share {
        tch::set_num_threads(share);
    }
}

/// The input pixels (height x width x batch) one CPU forward is kept to:
/// eight 224x224 images, one 640x480 image. Measured on resnet18 with
/// 2 cores: 224x224 batches of 8 run at 106 img/s against 90 for 16 and 68
/// for 1; at 640x480 single images are fastest.
const CPU_PIXELS_PER_FORWARD: usize = 8 * 224 * 224;

enum Net {
    /// A torchvision architecture: a `tch::vision` network and the
    /// variables it reads, or (`store: None`) a folded graph, which owns its
    /// tensors and takes channels-last inputs.
    Vision {
        store: Option<VarStore>,
        network: Network,
    },
    Script {
        module: CModule,
        embed_method: Option<String>,
    },
    /// A torchvision detector (`detection`), and the variables it reads.
    Detection {
        _store: VarStore,
        detector: Box<families::detection::Detector>,
    },
}

enum Processor {
    Classifier(Classifier),
    Detector(Detector),
    InstanceSegmenter(InstanceSegmenter),
    /// FiftyOne's `KeypointDetectorOutputProcessor` (Keypoint R-CNN):
    /// `<field>_detections` and `<field>_keypoints`.
    KeypointDetector(KeypointDetector),
    /// FiftyOne's `SemanticSegmenterOutputProcessor`; `softmax` is
    /// `not has_softmax_out` (applied here in libtorch, as FiftyOne does).
    Segmenter {
        segmenter: SemanticSegmenter,
        softmax: bool,
    },
    /// No `output_processor_cls` in the config: FiftyOne's `TorchImageModel`
    /// then returns the network's raw output, which `apply_model` cannot
    /// store as labels (DINOv2's entries: embeddings only).
    Raw,
}

/// Why a model without an output processor gives no labels.
const NO_LABELS: &str = "the config names no `output_processor_cls`, so the model gives raw outputs, not labels (FiftyOne's `apply_model` cannot store them either); compute its embeddings with `zoo models embed`, or add an output processor to the config";

/// Refuses the `TorchImageModelConfig` fields that hand FiftyOne Python
/// objects or code (custom transforms, an output processor instance, a
/// module) or raw, untransformed images: zoo's native backend would
/// otherwise run the model differently from FiftyOne without saying so.
fn python_only_fields(config: &Map<String, Value>) -> Result<(), ModelError> {
    for key in ["model", "transforms", "transforms_fcn", "output_processor"] {
        match config.get(key) {
            None | Some(Value::Null) => {}
            Some(value) => {
                return Err(ModelError::unsupported(format!(
                    "the config's `{key}` (`{value}`) is Python that FiftyOne runs; zoo's native backend does not run Python: drop the field, or have the source's `load_model` return the model so that zoo hosts it in Python"
                )));
            }
        }
    }
    match config.get("raw_inputs") {
        None | Some(Value::Null | Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => Err(ModelError::unsupported(
            "the config sets `raw_inputs`: FiftyOne then feeds the untransformed images to a Python module, which zoo's native backend cannot run; have the source's `load_model` return the model so that zoo hosts it in Python".into(),
        )),
        Some(value) => Err(config_error(format!(
            "`raw_inputs` must be true or false, got `{value}`"
        ))),
    }
}

/// A boolean `output_processor_args` entry (`default` when absent).
fn processor_flag(args: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ModelError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value.as_bool().ok_or_else(|| {
            config_error(format!(
                "`output_processor_args.{key}` must be true or false, got `{value}`"
            ))
        }),
    }
}

/// The number of classes a segmentation architecture is built for:
/// `entrypoint_args.num_classes` when given (as torchvision's builder
/// takes it), else torchvision's default, 21 (the hosted weights' VOC
/// categories). FiftyOne's `mask_targets` only name them.
fn segmenter_classes(config: &Map<String, Value>) -> Result<i64, ModelError> {
    let value = config
        .get("entrypoint_args")
        .and_then(Value::as_object)
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

/// The most classes a native architecture is built for: its last layer
/// is allocated before the weights are read, so a config listing millions
/// of classes would otherwise ask for gigabytes.
const MAX_CLASSES: usize = 100_000;

/// A torch image model built from a FiftyOne deployment config.
pub struct TorchImageModel {
    /// What errors call the model: the architecture or the TorchScript file.
    name: String,
    net: Net,
    device: Device,
    half: bool,
    preprocessing: Arc<Preprocessing>,
    /// `255`, the mean and the standard deviation as `[1, 3, 1, 1]` tensors
    /// on the device, when the inputs arrive as pixels (on a GPU).
    normalise: Option<[Tensor; 3]>,
    /// Whether cuDNN may search for the fastest convolution algorithms
    /// (config `cudnn_benchmark`, off by default as in PyTorch).
    search: bool,
    /// The batch shapes seen so far, up to [`BENCHMARK_SHAPES`] (cuDNN's
    /// algorithm search pays off only when shapes repeat).
    shapes: Mutex<Vec<[i64; 4]>>,
    processor: Processor,
    ragged: bool,
    /// The config's `skeleton`, as FiftyOne's `TorchImageModel.skeleton`.
    skeleton: Option<KeypointSkeleton>,
    /// The weights file's size: what another copy of the model adds to
    /// memory, about.
    weights_bytes: u64,
}

/// A keypoint skeleton from a config's `skeleton` (FiftyOne's
/// `KeypointSkeleton`): the points' names and the edges between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeypointSkeleton {
    /// The name of each keypoint, if given.
    pub labels: Option<Vec<String>>,
    /// Polylines through keypoint indices.
    pub edges: Vec<Vec<i64>>,
}

/// With `cudnn_benchmark`, cuDNN searches for the fastest convolution
/// algorithms of each new batch shape while a run has seen at most this
/// many shapes; beyond it (a ragged dataset of many sizes) the search is
/// turned off, as its cost would not be repaid. On an H100 one search cost
/// 1.4 s (resnet18 in half precision) to 16 s (resnet50 in f32 without
/// TF32) and gained up to 2.5x afterwards (BENCHMARKS.md, GPU section).
const BENCHMARK_SHAPES: usize = 8;

fn config_error(message: impl Into<String>) -> ModelError {
    ModelError::config(message.into())
}

/// `error` and its sources, `: `-separated (the model error keeps text
/// only, so the chain is flattened here).
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

pub(crate) fn floats3(
    config: &Map<String, Value>,
    key: &str,
    default: [f32; 3],
) -> Result<[f32; 3], ModelError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value @ Value::Array(items)) if items.len() == 3 => {
            let mut out = [0f32; 3];
            for (slot, item) in out.iter_mut().zip(items) {
                *slot = item
                    .as_f64()
                    .map(|number| number as f32)
                    .filter(|number| number.is_finite())
                    .ok_or_else(|| {
                        config_error(format!("`{key}` must hold finite numbers, got `{value}`"))
                    })?;
            }
            Ok(out)
        }
        Some(other) => Err(config_error(format!(
            "`{key}` must be a list of 3 numbers, got `{other}`"
        ))),
    }
}

/// An image side in pixels: a whole number from 1 to [`MAX_IMAGE_SIDE`].
fn side(value: &Value) -> Option<u32> {
    value
        .as_u64()
        .and_then(|value| u32::try_from(value).ok())
        .filter(|value| (1..=MAX_IMAGE_SIDE).contains(value))
}

fn dim(config: &Map<String, Value>, key: &str) -> Result<Option<u32>, ModelError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => side(value).map(Some).ok_or_else(|| {
            config_error(format!(
                "`{key}` must be a whole number of pixels from 1 to {MAX_IMAGE_SIDE}, got `{value}`"
            ))
        }),
    }
}

/// `image_size`, as `(width, height)`: FiftyOne passes the list to
/// torchvision's `Resize`, which reads a pair as `[height, width]` (FiftyOne's
/// docstring says `(width, height)`; what runs is torchvision's order).
pub(crate) fn image_size(config: &Map<String, Value>) -> Result<Option<(u32, u32)>, ModelError> {
    let value = match config.get("image_size") {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let size = match value {
        Value::Array(items) if items.len() == 2 => side(&items[1]).zip(side(&items[0])),
        _ => None,
    };
    size.map(Some).ok_or_else(|| {
        config_error(format!(
            "`image_size` must be [height, width] in whole pixels from 1 to {MAX_IMAGE_SIDE}, got `{value}`"
        ))
    })
}

/// `confidence_thresh`: a number, or null.
pub(crate) fn confidence_thresh(config: &Map<String, Value>) -> Result<Option<f32>, ModelError> {
    match config.get("confidence_thresh") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|number| !number.is_nan())
            .map(|number| Some(number as f32))
            .ok_or_else(|| {
                config_error(format!(
                    "`confidence_thresh` must be a number, got `{value}`"
                ))
            }),
    }
}

/// `skeleton`: null, or an object with `labels` (null or a list of names)
/// and `edges` (a list of lists of keypoint indices), as FiftyOne's
/// `KeypointSkeleton.from_dict` accepts it (other keys are ignored there
/// too); anything else is an error naming the field.
fn skeleton(config: &Map<String, Value>) -> Result<Option<KeypointSkeleton>, ModelError> {
    let object = match config.get("skeleton") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(object)) => object,
        Some(other) => {
            return Err(config_error(format!(
                "`skeleton` must be an object with `labels` and `edges`, got `{other}`"
            )));
        }
    };
    let labels = match object.get("labels") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    config_error(format!(
                        "`skeleton.labels` must be a list of keypoint names, got `{}`",
                        Value::Array(items.clone())
                    ))
                })?,
        ),
        Some(other) => {
            return Err(config_error(format!(
                "`skeleton.labels` must be a list of keypoint names, got `{other}`"
            )));
        }
    };
    let edges = match object.get("edges") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|edge| {
                edge.as_array()?
                    .iter()
                    .map(Value::as_i64)
                    .collect::<Option<Vec<_>>>()
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                config_error(format!(
                    "`skeleton.edges` must be a list of lists of keypoint indices, got `{}`",
                    Value::Array(items.clone())
                ))
            })?,
        Some(other) => {
            return Err(config_error(format!(
                "`skeleton.edges` must be a list of lists of keypoint indices, got `{other}`"
            )));
        }
    };
    Ok(Some(KeypointSkeleton { labels, edges }))
}

/// `filter_classes`: the labels a prediction may carry, or null for all.
fn filter_classes(
    config: &Map<String, Value>,
) -> Result<Option<std::collections::BTreeSet<String>>, ModelError> {
    match config.get("filter_classes") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .map(Some)
            .ok_or_else(|| {
                config_error(format!(
                    "`filter_classes` must be a list of class names, got `{}`",
                    Value::Array(items.clone())
                ))
            }),
        Some(other) => Err(config_error(format!(
            "`filter_classes` must be a list of class names, got `{other}`"
        ))),
    }
}

/// The class names a config gives: `classes`, `labels_string`,
/// `labels_path` (zoo's own ImageNet file for `{{eta-resources}}`), or, as
/// FiftyOne's `_parse_classes`, the names of its [`mask_targets`], sorted.
pub fn class_names(config: &Map<String, Value>) -> Result<Vec<String>, ModelError> {
    if let Some(Value::Array(classes)) = config.get("classes") {
        return Ok(classes
            .iter()
            .map(|value| {
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned)
            })
            .collect());
    }
    if let Some(Value::String(labels)) = config.get("labels_string") {
        return Ok(labels
            .split(',')
            .map(|label| label.trim().to_owned())
            .collect());
    }
    if let Some(Value::String(path)) = config.get("labels_path") {
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
    if let Some(targets) = mask_targets(config)? {
        let mut names: Vec<String> = targets.into_values().collect();
        names.sort();
        return Ok(names);
    }
    Ok(Vec::new())
}

impl TorchImageModel {
    /// Builds the model a spec describes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::device::tune_allocator();
        cpu_threads();
        let config = &spec.config;
        python_only_fields(config)?;
        let device_text = config.get("device").and_then(Value::as_str).unwrap_or("");
        let device = device_text
            .parse::<DeviceSpec>()
            .and_then(DeviceSpec::resolve)
            .map_err(|err| config_error(err.to_string()))?;
        let half = config
            .get("use_half_precision")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            && device.is_cuda();
        let model_path: Option<PathBuf> = config
            .get("model_path")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .or_else(|| spec.model_path.clone());
        let model_path = model_path.ok_or_else(|| {
            config_error(
                "no weights: the model is not downloaded and the config has no `model_path`",
            )
        })?;
        let weights_bytes = fs_err::metadata(&model_path).map_or(0, |meta| meta.len());
        let classes = class_names(config)?;
        let search = match config.get("cudnn_benchmark") {
            None => false,
            Some(value) => value.as_bool().ok_or_else(|| {
                config_error(format!(
                    "`cudnn_benchmark` must be true or false, got `{value}`"
                ))
            })?,
        };
        let preprocessing = Preprocessing {
            dim: dim(config, "image_dim")?,
            min_dim: dim(config, "image_min_dim")?,
            max_dim: dim(config, "image_max_dim")?,
            size: image_size(config)?,
            mean: floats3(config, "image_mean", [0.0; 3])?,
            std: floats3(config, "image_std", [1.0; 3])?,
            // FiftyOne's `image_size` branch comes first and crops nothing.
            patch_size: match image_size(config)? {
                Some(_) => None,
                None => dim(config, "image_patch_size")?,
            },
            pixels: device.is_cuda(),
        };
        if preprocessing.std.contains(&0.0) {
            return Err(config_error(format!(
                "`image_std` must not hold 0, got `{}`",
                config.get("image_std").unwrap_or(&Value::Null)
            )));
        }
        let processor_name = match config.get("output_processor_cls") {
            None | Some(Value::Null) => "",
            Some(Value::String(name)) => name.as_str(),
            Some(other) => {
                return Err(config_error(format!(
                    "`output_processor_cls` must be a class name, got `{other}`"
                )));
            }
        };
        let processor_args = config
            .get("output_processor_args")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        // FiftyOne passes `config.confidence_thresh` and
        // `config.filter_classes` to the output processor on every call.
        let threshold = confidence_thresh(config)?;
        let filter_classes = filter_classes(config)?;
        let skeleton = skeleton(config)?;
        let processor = match processor_name.rsplit('.').next().unwrap_or_default() {
            "" => Processor::Raw,
            "ClassifierOutputProcessor" => Processor::Classifier(Classifier {
                classes: classes.clone(),
                store_logits: false,
                confidence_thresh: threshold,
                filter_classes,
            }),
            "SemanticSegmenterOutputProcessor" => Processor::Segmenter {
                segmenter: SemanticSegmenter {
                    no_background_cls: processor_flag(&processor_args, "no_background_cls", false)?,
                    confidence_thresh: threshold,
                },
                softmax: !processor_flag(&processor_args, "has_softmax_out", true)?,
            },
            "DetectorOutputProcessor" => Processor::Detector(Detector {
                classes: classes.clone(),
                confidence_thresh: processor_args
                    .get("confidence_thresh")
                    .and_then(Value::as_f64)
                    .map(|value| value as f32)
                    .or(threshold),
                filter_classes,
            }),
            "InstanceSegmenterOutputProcessor" => {
                let mask_thresh = match processor_args.get("mask_thresh") {
                    None | Some(Value::Null) => 0.5,
                    Some(value) => value
                        .as_f64()
                        .filter(|number| !number.is_nan())
                        .ok_or_else(|| {
                            config_error(format!(
                                "`output_processor_args.mask_thresh` must be a number, got `{value}`"
                            ))
                        })? as f32,
                };
                Processor::InstanceSegmenter(InstanceSegmenter {
                    detector: Detector {
                        classes: classes.clone(),
                        confidence_thresh: threshold,
                        filter_classes,
                    },
                    mask_thresh,
                })
            }
            "KeypointDetectorOutputProcessor" => Processor::KeypointDetector(KeypointDetector {
                detector: Detector {
                    classes: classes.clone(),
                    confidence_thresh: threshold,
                    filter_classes,
                },
            }),
            other => {
                return Err(ModelError::unsupported(format!(
                    "output processor `{other}` is not supported by zoo's torch backend yet"
                )));
            }
        };
        let embeddings_layer = config
            .get("embeddings_layer")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let model_name;
        let detector = config
            .get("entrypoint_fcn")
            .and_then(Value::as_str)
            .map(|entrypoint| entrypoint.rsplit('.').next().unwrap_or(entrypoint))
            .and_then(|name| Some((name, families::find(name)?)))
            .filter(|(_, family)| family.is_detector());
        // Detectors run in f32 (torchvision's box arithmetic and NMS in
        // half precision would not give FiftyOne's detections).
        let half = half && detector.is_none();
        let net = match (
            config.get("entrypoint_fcn").and_then(Value::as_str),
            detector,
        ) {
            (Some(entrypoint), Some((name, family))) => {
                model_name = name.to_owned();
                let (masks, keypoints) = match family.task {
                    Task::Detector { masks, keypoints } => (masks, keypoints),
                    Task::Classifier | Task::Segmenter | Task::Hub { .. } | Task::Ultralytics => {
                        (false, false)
                    }
                };
                let fits = match &processor {
                    Processor::Detector(_) => true,
                    Processor::InstanceSegmenter(_) => masks,
                    Processor::KeypointDetector(_) => keypoints,
                    Processor::Classifier(_) | Processor::Segmenter { .. } | Processor::Raw => {
                        false
                    }
                };
                if !fits {
                    return Err(config_error(format!(
                        "`{entrypoint}` cannot feed `{processor_name}`: a detector takes `fiftyone.utils.torch.DetectorOutputProcessor` (Mask R-CNN also `InstanceSegmenterOutputProcessor`, Keypoint R-CNN also `KeypointDetectorOutputProcessor`)"
                    )));
                }
                let mut store = VarStore::new(device);
                let outputs = if classes.is_empty() {
                    91
                } else {
                    classes.len() as i64
                };
                if classes.len() > MAX_CLASSES {
                    return Err(config_error(format!(
                        "the config lists {} classes; zoo builds architectures for at most {MAX_CLASSES}",
                        classes.len()
                    )));
                }
                let mut detector = family
                    .build_detector(name, &store.root(), outputs, config.get("entrypoint_args"))
                    .ok_or_else(|| config_error(format!("unknown detector `{entrypoint}`")))?
                    .map_err(config_error)?;
                load_file_into(&mut store, &model_path, &|key| family.renames.name(key))
                    .map_err(|err| config_error(chain(&err)))?;
                detector.fold().map_err(|err| {
                    ModelError::inference(format!(
                        "folding the batch norms of `{name}` failed: {err}"
                    ))
                })?;
                Net::Detection {
                    _store: store,
                    detector: Box::new(detector),
                }
            }
            (Some(entrypoint), None) => {
                let name = families::hub::architecture(entrypoint, config.get("entrypoint_args"))?;
                model_name = name.to_owned();
                if classes.len() > MAX_CLASSES {
                    return Err(config_error(format!(
                        "the config lists {} classes; zoo builds architectures for at most {MAX_CLASSES}",
                        classes.len()
                    )));
                }
                let mut store = VarStore::new(device);
                let unsupported = |err: families::UnknownArchitecture| {
                    ModelError::unsupported(format!("`{entrypoint}`: {err}"))
                };
                let family = families::family(name).map_err(unsupported)?;
                let outputs = if family.task == Task::Segmenter {
                    segmenter_classes(config)?
                } else if classes.is_empty() {
                    1000
                } else {
                    classes.len() as i64
                };
                // MNASNet 0.5's checkpoint is read first: torchvision adapts
                // its stem to the checkpoint's version. Other checkpoints are
                // read after the network is built, each tensor copied into it
                // as it is read (no second copy of the weights in memory).
                let options = BuildOptions::new(name, config.get("entrypoint_args"));
                let (options, tensors) = if BuildOptions::depends_on_checkpoint(name) {
                    let tensors =
                        read_named_tensors(&model_path).map_err(|err| config_error(chain(&err)))?;
                    (options.for_checkpoint(name, &tensors), Some(tensors))
                } else {
                    (options, None)
                };
                let network = family
                    .build(name, &store.root(), outputs, options)
                    .ok_or_else(|| {
                        unsupported(families::UnknownArchitecture {
                            name: name.to_owned(),
                        })
                    })?;
                if let Some(layer) = &embeddings_layer
                    && network.embeddings_layer != Some(layer.as_str())
                {
                    tracing::warn!(
                        layer,
                        entrypoint,
                        "embeddings_layer not available for this architecture; embeddings disabled"
                    );
                }
                match tensors {
                    Some(tensors) => {
                        load_into(&mut store, family.renames.names(tensors), &model_path)
                    }
                    None => {
                        load_file_into(&mut store, &model_path, &|key| family.renames.name(key))
                    }
                }
                .map_err(|err| config_error(chain(&err)))?;
                let kind = if half { Kind::Half } else { Kind::Float };
                match family.build_folded(name, store.variables(), kind, options) {
                    Some(network) => Net::Vision {
                        store: None,
                        network,
                    },
                    None => {
                        if half {
                            store.half();
                        }
                        Net::Vision {
                            store: Some(store),
                            network,
                        }
                    }
                }
            }
            (None, _) => {
                model_name = model_path.file_name().map_or_else(
                    || model_path.display().to_string(),
                    |file| file.to_string_lossy().into_owned(),
                );
                let mut module = CModule::load_on_device(&model_path, device).map_err(|err| {
                    config_error(format!(
                        "cannot load TorchScript `{}`: {err}",
                        model_path.display()
                    ))
                })?;
                module.set_eval();
                if half {
                    // Inputs arrive in half precision (`batch`), so the
                    // parameters must too, as FiftyOne's `model.half()`.
                    module.to(device, Kind::Half, false);
                }
                Net::Script {
                    module,
                    embed_method: embeddings_layer,
                }
            }
        };
        let ragged = config
            .get("ragged_batches")
            .and_then(Value::as_bool)
            .unwrap_or(preprocessing.size.is_none());
        let normalise = if preprocessing.pixels {
            let on_device = |values: [f32; 3]| {
                Tensor::f_from_slice(&values)
                    .and_then(|tensor| tensor.f_view([1, 3, 1, 1]))
                    .and_then(|tensor| tensor.f_to_device(device))
                    .map_err(|err| {
                        config_error(format!(
                            "cannot place the normalisation on {device:?}: {err}"
                        ))
                    })
            };
            Some([
                on_device([255.0; 3])?,
                on_device(preprocessing.mean)?,
                on_device(preprocessing.std)?,
            ])
        } else {
            None
        };
        let model = Self {
            name: model_name,
            net,
            device,
            half,
            normalise,
            search,
            shapes: Mutex::new(Vec::new()),
            preprocessing: Arc::new(preprocessing),
            processor,
            ragged,
            skeleton,
            weights_bytes,
        };
        if device.is_cuda() {
            model.warm_up();
        }
        Ok(model)
    }

    /// The config's keypoint `skeleton`, if any (FiftyOne's
    /// `TorchImageModel.skeleton`).
    pub fn skeleton(&self) -> Option<&KeypointSkeleton> {
        self.skeleton.as_ref()
    }

    /// One forward of a small blank batch on a GPU, at load: CUDA loads its
    /// kernels and cuDNN its handles on first use (0.7-1.1 s measured on an
    /// H100), which would otherwise land in the first batches of a run. A
    /// failure here is left for the first real batch to report.
    fn warm_up(&self) {
        let (width, height) = self.preprocessing.size.unwrap_or((224, 224));
        let kind = if self.half { Kind::Half } else { Kind::Float };
        let blank = Tensor::f_zeros([1, 3, height as i64, width as i64], (kind, self.device));
        let outcome = blank
            .map_err(|error| ModelError::inference(error.to_string()))
            .and_then(|batch| {
                let _no_grad = tch::no_grad_guard();
                self.logits(&batch).map(drop)
            });
        if let Err(error) = outcome {
            tracing::debug!(%error, "warm-up forward failed");
        }
    }

    /// A libtorch error in a forward, as the batch's error: which model,
    /// which input shape, and libtorch's message.
    fn forward_error(&self, shape: [usize; 3], count: usize, error: &tch::TchError) -> ModelError {
        let [c, h, w] = shape;
        ModelError::inference(format!(
            "`{}` failed on a batch of {count} input(s) of shape {c}x{h}x{w}: {error}",
            self.name
        ))
    }

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
        let values = c.checked_mul(h).and_then(|values| values.checked_mul(w));
        if inputs.iter().any(|input| Some(input.data.len()) != values) {
            return Err(ModelError::inference(format!(
                "an input of shape {c}x{h}x{w} does not hold {c}x{h}x{w} values"
            )));
        }
        if let Net::Vision { network, .. } = &self.net {
            let min = network.min_input;
            if (h as i64) < min || (w as i64) < min {
                return Err(ModelError::inference(format!(
                    "`{}` needs images of at least {min}x{min} pixels, got {w}x{h}; \
                     set `image_min_dim` (or `image_size`) in the model config to upscale them",
                    self.name
                )));
            }
        }
        let failed = |error: tch::TchError| self.forward_error([c, h, w], inputs.len(), &error);
        let shape = [inputs.len(), c, h, w].map(|side| side as i64);
        self.choose_algorithm_search(shape);
        let kind = if self.half { Kind::Half } else { Kind::Float };
        let channels_last = matches!(self.net, Net::Vision { store: None, .. });
        let pixels = inputs
            .iter()
            .filter(|input| matches!(input.data, InputData::Pixels(_)))
            .count();
        if pixels == inputs.len() {
            return self
                .batch_from_pixels(inputs, shape, kind, channels_last)
                .map_err(failed);
        }
        if pixels != 0 {
            return Err(ModelError::inference(
                "inputs of pixels and of values mixed in one batch".into(),
            ));
        }
        // One copy per input, straight into the batch in the layout, kind
        // and device the network takes.
        let [n, c, h, w] = shape;
        let batch = if channels_last {
            Tensor::f_empty_strided([n, c, h, w], [h * w * c, 1, w * c, c], (kind, self.device))
        } else {
            Tensor::f_empty([n, c, h, w], (kind, self.device))
        }
        .map_err(failed)?;
        // On a GPU, inputs are staged on the host in pinned (page-locked)
        // memory and cross to the device in one asynchronous copy; the kind
        // and layout change there.
        let staged = if self.device.is_cuda() {
            Tensor::f_empty([n, c, h, w], (Kind::Float, Device::Cpu))
                .and_then(|staging| staging.f_pin_memory(self.device))
                .map_err(failed)?
        } else {
            batch.shallow_clone()
        };
        for (index, input) in inputs.iter().enumerate() {
            let InputData::Values(values) = &input.data else {
                continue; // counted above: every input holds values
            };
            staged
                .f_get(index as i64)
                .and_then(|mut slot| {
                    slot.f_copy_(&Tensor::f_from_slice(values)?.f_view([c, h, w])?)
                })
                .map_err(failed)?;
        }
        if self.device.is_cuda() {
            let on_device = staged
                .f_to_device_(self.device, Kind::Float, true, false)
                .map_err(failed)?;
            let mut batch = batch;
            batch.f_copy_(&on_device).map_err(failed)?;
            return Ok(batch);
        }
        Ok(batch)
    }

    /// A batch from `u8` pixels (`HWC`): staged in pinned memory, one
    /// asynchronous copy to the device, then `x / 255`, `(x - mean) / std`
    /// there in `f32`, the same operations in the same precision as
    /// [`Preprocessing::apply`] on the host (true divisions by tensors, not
    /// by a host scalar, which libtorch's CUDA kernels turn into a
    /// multiplication by the reciprocal). Permuting `NHWC` to `NCHW` leaves
    /// the batch channels-last.
    fn batch_from_pixels(
        &self,
        inputs: &[Input],
        [n, c, h, w]: [i64; 4],
        kind: Kind,
        channels_last: bool,
    ) -> Result<Tensor, tch::TchError> {
        let mut staged = Tensor::f_empty([n, h, w, c], (Kind::Uint8, Device::Cpu))?;
        if self.device.is_cuda() {
            staged = staged.f_pin_memory(self.device)?;
        }
        for (index, input) in inputs.iter().enumerate() {
            if let InputData::Pixels(pixels) = &input.data {
                staged
                    .f_get(index as i64)?
                    .f_copy_(&Tensor::f_from_slice(pixels)?.f_view([h, w, c])?)?;
            }
        }
        let on_device = staged.f_to_device_(self.device, Kind::Uint8, true, false)?;
        let host;
        let [scale, mean, std] = match &self.normalise {
            Some(tensors) => tensors,
            None => {
                let on_host =
                    |values: [f32; 3]| Tensor::f_from_slice(&values)?.f_view([1, 3, 1, 1]);
                host = [
                    on_host([255.0; 3])?,
                    on_host(self.preprocessing.mean)?,
                    on_host(self.preprocessing.std)?,
                ];
                &host
            }
        };
        let values = on_device
            .f_permute([0, 3, 1, 2])?
            .f_to_kind(Kind::Float)?
            .f_div(scale)?
            .f_sub(mean)?
            .f_div(std)?;
        let values = if kind == Kind::Float {
            values
        } else {
            values.f_to_kind(kind)?
        };
        if channels_last {
            Ok(values)
        } else {
            values.f_contiguous()
        }
    }

    /// With `cudnn_benchmark` on a GPU, turns cuDNN's algorithm search on
    /// while the run has seen at most [`BENCHMARK_SHAPES`] batch shapes, off
    /// beyond.
    fn choose_algorithm_search(&self, shape: [i64; 4]) {
        if !self.search || !self.device.is_cuda() {
            return;
        }
        let Ok(mut shapes) = self.shapes.lock() else {
            return;
        };
        if shapes.len() > BENCHMARK_SHAPES || shapes.contains(&shape) {
            return;
        }
        shapes.push(shape);
        let search = shapes.len() <= BENCHMARK_SHAPES;
        crate::net::layers::set_cudnn_benchmark(search);
        tch::Cuda::cudnn_set_benchmark(search);
        tracing::debug!(search, shapes = shapes.len(), "cudnn algorithm search");
    }

    fn logits(&self, batch: &Tensor) -> Result<Tensor, ModelError> {
        let shape = batch.size();
        let failed = |error: tch::TchError| {
            let [n, c, h, w] = shape[..] else {
                return ModelError::inference(error.to_string());
            };
            self.forward_error([c, h, w].map(|side| side as usize), n as usize, &error)
        };
        match &self.net {
            Net::Vision { network, .. } => network
                .features(batch)
                .and_then(|features| network.head(&features))
                .map_err(failed),
            Net::Script { module, .. } => module.forward_ts(&[batch]).map_err(failed),
            Net::Detection { .. } => Err(ModelError::unsupported(format!(
                "`{}` is a detector: it has no logits",
                self.name
            ))),
        }
    }
}

fn to_array2(tensor: &Tensor) -> Result<Array2<f32>, ModelError> {
    let failed = |err: tch::TchError| ModelError::inference(err.to_string());
    let tensor = tensor
        .f_to_device(Device::Cpu)
        .and_then(|tensor| tensor.f_to_kind(Kind::Float))
        .and_then(|tensor| tensor.f_contiguous())
        .map_err(failed)?;
    let size = tensor.size();
    let [rows, columns] = size.as_slice() else {
        return Err(ModelError::inference(format!(
            "expected a [N, M] output, got {size:?}"
        )));
    };
    let values = tensor
        .f_flatten(0, -1)
        .and_then(Vec::<f32>::try_from)
        .map_err(failed)?;
    Array2::from_shape_vec((*rows as usize, *columns as usize), values)
        .map_err(|err| ModelError::inference(err.to_string()))
}

fn to_array3(tensor: &Tensor) -> Result<ndarray::Array3<f32>, ModelError> {
    let failed = |err: tch::TchError| ModelError::inference(err.to_string());
    let tensor = tensor
        .f_to_device(Device::Cpu)
        .and_then(|tensor| tensor.f_to_kind(Kind::Float))
        .and_then(|tensor| tensor.f_contiguous())
        .map_err(failed)?;
    let size = tensor.size();
    let [n, p, c] = size.as_slice() else {
        return Err(ModelError::inference(format!(
            "expected [K, P, 3] keypoints, got {size:?}"
        )));
    };
    let shape = [n, p, c].map(|side| *side as usize);
    let values = tensor
        .f_flatten(0, -1)
        .and_then(Vec::<f32>::try_from)
        .map_err(failed)?;
    ndarray::Array3::from_shape_vec(shape, values)
        .map_err(|err| ModelError::inference(err.to_string()))
}

fn to_array4(tensor: &Tensor) -> Result<ndarray::Array4<f32>, ModelError> {
    let failed = |err: tch::TchError| ModelError::inference(err.to_string());
    let tensor = tensor
        .f_to_device(Device::Cpu)
        .and_then(|tensor| tensor.f_to_kind(Kind::Float))
        .and_then(|tensor| tensor.f_contiguous())
        .map_err(failed)?;
    let size = tensor.size();
    let [n, c, h, w] = size.as_slice() else {
        return Err(ModelError::inference(format!(
            "a semantic segmenter returns [N, C, H, W] scores, got {size:?}"
        )));
    };
    let shape = [n, c, h, w].map(|side| *side as usize);
    let values = tensor
        .f_flatten(0, -1)
        .and_then(Vec::<f32>::try_from)
        .map_err(failed)?;
    ndarray::Array4::from_shape_vec(shape, values)
        .map_err(|err| ModelError::inference(err.to_string()))
}

fn dict_tensor(dict: &[(IValue, IValue)], key: &str) -> Result<Tensor, ModelError> {
    dict.iter()
        .find_map(|(name, value)| match (name, value) {
            (IValue::String(name), IValue::Tensor(tensor)) if name == key => {
                Some(tensor.shallow_clone())
            }
            _ => None,
        })
        .ok_or_else(|| ModelError::inference(format!("detector output has no `{key}` tensor")))
}

impl Model for TorchImageModel {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.preprocessing.clone()
    }

    fn ragged_batches(&self) -> bool {
        self.ragged
    }

    /// Two copies on a CPU with at least two libtorch threads, each with
    /// half the threads: measured on resnet18 with 2 cores, 2 copies x 1
    /// thread run 108-110 img/s at 224x224 against 93-104 for 1 copy x 2
    /// threads, and 18.2 against 16.4-17.0 at 640x480 (no thread waits at
    /// an OpenMP barrier, and one copy decodes while the other computes).
    ///
    /// The second copy is left out when memory is short: it needs another
    /// copy of the weights (DINOv2 ViT-g's are 4.5 GB), so it runs only
    /// while the memory available (see [`crate::memory::available_bytes`])
    /// is at least three times the weights file.
    fn workers(&self) -> usize {
        if self.device == Device::Cpu && cpu_threads() >= 2 {
            crate::memory::copies_that_fit(2, self.weights_bytes, crate::memory::available_bytes())
        } else {
            1
        }
    }

    fn set_workers(&mut self, workers: usize) {
        if self.device == Device::Cpu {
            share_cpu_threads(workers);
        }
    }

    fn has_logits(&self) -> bool {
        matches!(self.processor, Processor::Classifier(_))
    }

    fn set_store_logits(&mut self, store: bool) {
        if let Processor::Classifier(classifier) = &mut self.processor {
            classifier.store_logits = store;
        }
    }

    /// FiftyOne's `apply_model` sets `model.config.confidence_thresh` on a
    /// `TorchImageModel`, overriding the config's: the output processor
    /// applies it (an empty `Classification` below it).
    fn set_confidence_thresh(&mut self, threshold: f64) -> bool {
        let threshold = Some(threshold as f32);
        match &mut self.processor {
            Processor::Classifier(classifier) => classifier.confidence_thresh = threshold,
            Processor::Detector(detector) => detector.confidence_thresh = threshold,
            Processor::Segmenter { segmenter, .. } => segmenter.confidence_thresh = threshold,
            Processor::InstanceSegmenter(segmenter) => {
                segmenter.detector.confidence_thresh = threshold;
            }
            Processor::KeypointDetector(keypoints) => {
                keypoints.detector.confidence_thresh = threshold;
            }
            Processor::Raw => {}
        }
        true
    }

    fn has_labels(&self) -> bool {
        !matches!(self.processor, Processor::Raw)
    }

    fn has_embeddings(&self) -> bool {
        match &self.net {
            Net::Vision { network, .. } => network.embeddings_layer.is_some(),
            Net::Script { embed_method, .. } => embed_method.is_some(),
            Net::Detection { .. } => false,
        }
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        let mut predictions = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(self.forward_len(inputs)) {
            predictions.extend(self.predict_chunk(chunk)?);
        }
        Ok(predictions)
    }

    fn embed_all(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut vectors = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(self.forward_len(inputs)) {
            vectors.extend(self.embed_chunk(chunk)?);
        }
        Ok(vectors)
    }
}

impl TorchImageModel {
    /// The network's output for `inputs` (one batch of one size) before the
    /// output processor, on the CPU in `f32`: `[N, classes]` logits for a
    /// classifier, `[N, classes, H, W]` scores (before any softmax) for a
    /// semantic segmenter. For parity checks against PyTorch.
    pub fn raw_output(&self, inputs: &[Input]) -> Result<Tensor, ModelError> {
        let batch = self.batch(inputs)?;
        let output = tch::no_grad(|| self.logits(&batch))?;
        output
            .f_to_device(Device::Cpu)
            .and_then(|output| output.f_to_kind(Kind::Float))
            .map_err(|err| ModelError::inference(err.to_string()))
    }

    /// How many of `inputs` one forward takes. On the CPU, a forward over
    /// more than about [`CPU_PIXELS_PER_FORWARD`] input pixels runs slower
    /// per image (its activations fall out of cache: resnet18 at 640x480
    /// does 16.4 img/s one at a time and 10.2 in batches of 16), so CPU
    /// batches are split; results do not depend on the split.
    fn forward_len(&self, inputs: &[Input]) -> usize {
        let Some(first) = inputs.first() else {
            return 1;
        };
        if self.device != Device::Cpu {
            return inputs.len();
        }
        let pixels = (first.shape[1] * first.shape[2]).max(1);
        (CPU_PIXELS_PER_FORWARD / pixels).clamp(1, inputs.len())
    }

    fn predict_chunk(&self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        let batch = self.batch(inputs)?;
        tch::no_grad(|| match &self.processor {
            Processor::Raw => Err(ModelError::unsupported(NO_LABELS.into())),
            Processor::Classifier(classifier) => {
                let logits = to_array2(&self.logits(&batch)?)?;
                Ok(classifier
                    .process(logits.view())
                    .into_iter()
                    .map(|label| Prediction::Label(Some(label)))
                    .collect())
            }
            Processor::Segmenter { segmenter, softmax } => {
                let failed = |error: tch::TchError| {
                    let shape = inputs.first().map_or([0; 3], |input| input.shape);
                    self.forward_error(shape, inputs.len(), &error)
                };
                let scores = self
                    .logits(&batch)?
                    .f_to_kind(Kind::Float)
                    .map_err(failed)?;
                let scores = if *softmax {
                    scores.f_softmax(1, Kind::Float).map_err(failed)?
                } else {
                    scores
                };
                let scores = to_array4(&scores)?;
                Ok(segmenter
                    .process(scores.view())
                    .into_iter()
                    .map(|label| Prediction::Label(Some(label)))
                    .collect())
            }
            Processor::InstanceSegmenter(segmenter) => match &self.net {
                Net::Detection {
                    detector: network, ..
                } => self.detect(
                    network,
                    &segmenter.detector,
                    Some(segmenter),
                    inputs,
                    &batch,
                ),
                _ => Err(ModelError::unsupported(
                    "instance segmenters run natively only (Mask R-CNN)".into(),
                )),
            },
            Processor::KeypointDetector(keypoints) => match &self.net {
                Net::Detection {
                    detector: network, ..
                } => self.detect_keypoints(network, keypoints, inputs, &batch),
                _ => Err(ModelError::unsupported(
                    "keypoint detectors run natively only (Keypoint R-CNN)".into(),
                )),
            },
            Processor::Detector(detector) => {
                if let Net::Detection {
                    detector: network, ..
                } = &self.net
                {
                    return self.detect(network, detector, None, inputs, &batch);
                }
                let Net::Script { module, .. } = &self.net else {
                    return Err(ModelError::unsupported(
                        "detectors run as TorchScript only".into(),
                    ));
                };
                let failed = |error: tch::TchError| {
                    let shape = inputs.first().map_or([0; 3], |input| input.shape);
                    self.forward_error(shape, inputs.len(), &error)
                };
                let images: Vec<Tensor> = (0..inputs.len() as i64)
                    .map(|index| batch.f_get(index))
                    .collect::<Result<_, _>>()
                    .map_err(failed)?;
                let output = module
                    .forward_is(&[IValue::TensorList(images)])
                    .map_err(failed)?;
                // torchvision detectors return a list of dicts, or a
                // (losses, detections) tuple when scripted.
                let list = match output {
                    IValue::GenericList(items) => items,
                    IValue::Tuple(mut items) if items.len() == 2 => match items.pop() {
                        Some(IValue::GenericList(items)) => items,
                        other => {
                            return Err(ModelError::inference(format!(
                                "unexpected detector output {other:?}"
                            )));
                        }
                    },
                    other => {
                        return Err(ModelError::inference(format!(
                            "unexpected detector output {other:?}"
                        )));
                    }
                };
                list.into_iter()
                    .zip(inputs)
                    .map(|(item, input)| {
                        let IValue::GenericDict(dict) = item else {
                            return Err(ModelError::inference(
                                "detector output items must be dicts".into(),
                            ));
                        };
                        let boxes = to_array2(&dict_tensor(&dict, "boxes")?)?;
                        let vector = |key: &str, kind: Kind| {
                            dict_tensor(&dict, key)?
                                .f_to_kind(kind)
                                .and_then(|tensor| tensor.f_to_device(Device::Cpu))
                                .map_err(failed)
                        };
                        let labels = Vec::<i64>::try_from(vector("labels", Kind::Int64)?)
                            .map_err(failed)?;
                        let scores = Vec::<f32>::try_from(vector("scores", Kind::Float)?)
                            .map_err(failed)?;
                        // The processor reads four coordinates per box.
                        if boxes.nrows() > 0 && boxes.ncols() != 4 {
                            return Err(ModelError::inference(format!(
                                "`{}` returned boxes of {} coordinates; a detector returns [x1, y1, x2, y2] boxes",
                                self.name,
                                boxes.ncols(),
                            )));
                        }
                        let (labels, scores) = (Array1::from(labels), Array1::from(scores));
                        let output = DetectorOutput {
                            boxes: boxes.view(),
                            labels: labels.view(),
                            scores: scores.view(),
                            image_size: (input.shape[2] as u32, input.shape[1] as u32),
                        };
                        Ok(Prediction::Label(Some(detector.process(&output))))
                    })
                    .collect()
            }
        })
    }

    /// A native detector's detections: each image of `batch` on its own
    /// (FiftyOne feeds torchvision's detectors one size at a time), boxes
    /// in the input's pixels through FiftyOne's `DetectorOutputProcessor`,
    /// or with `segmenter` its `InstanceSegmenterOutputProcessor`.
    fn detect(
        &self,
        network: &families::detection::Detector,
        processor: &Detector,
        segmenter: Option<&InstanceSegmenter>,
        inputs: &[Input],
        batch: &Tensor,
    ) -> Result<Vec<Prediction>, ModelError> {
        let failed = |error: tch::TchError| {
            let shape = inputs.first().map_or([0; 3], |input| input.shape);
            self.forward_error(shape, inputs.len(), &error)
        };
        inputs
            .iter()
            .enumerate()
            .map(|(index, input)| {
                let image = batch
                    .f_get(index as i64)
                    .and_then(|image| image.f_to_kind(Kind::Float))
                    .map_err(failed)?;
                let found = network.detect(&image).map_err(failed)?;
                let boxes = to_array2(&found.boxes)?;
                let labels = Array1::from(Vec::<i64>::try_from(&found.labels).map_err(failed)?);
                let scores = Array1::from(Vec::<f32>::try_from(&found.scores).map_err(failed)?);
                let output = DetectorOutput {
                    boxes: boxes.view(),
                    labels: labels.view(),
                    scores: scores.view(),
                    image_size: (input.shape[2] as u32, input.shape[1] as u32),
                };
                let label = match (segmenter, &found.masks) {
                    (Some(segmenter), Some(masks)) => segmenter.process_with(
                        &output,
                        (input.shape[1], input.shape[2]),
                        |k, row, column| {
                            masks
                                .get(k)
                                .map_or(0.0, |mask| mask.at(row as i64, column as i64))
                        },
                    ),
                    (Some(_), None) => {
                        return Err(ModelError::inference(format!(
                            "`{}` gives no masks for `InstanceSegmenterOutputProcessor`",
                            self.name
                        )));
                    }
                    (None, _) => processor.process(&output),
                };
                Ok(Prediction::Label(Some(label)))
            })
            .collect()
    }

    /// A native keypoint detector's detections and keypoints, each image of
    /// `batch` on its own, through FiftyOne's
    /// `KeypointDetectorOutputProcessor`: `detections` and `keypoints`
    /// labels (stored as `<field>_detections`, `<field>_keypoints`).
    fn detect_keypoints(
        &self,
        network: &families::detection::Detector,
        processor: &KeypointDetector,
        inputs: &[Input],
        batch: &Tensor,
    ) -> Result<Vec<Prediction>, ModelError> {
        let failed = |error: tch::TchError| {
            let shape = inputs.first().map_or([0; 3], |input| input.shape);
            self.forward_error(shape, inputs.len(), &error)
        };
        inputs
            .iter()
            .enumerate()
            .map(|(index, input)| {
                let image = batch
                    .f_get(index as i64)
                    .and_then(|image| image.f_to_kind(Kind::Float))
                    .map_err(failed)?;
                let found = network.detect(&image).map_err(failed)?;
                let Some(keypoints) = &found.keypoints else {
                    return Err(ModelError::inference(format!(
                        "`{}` gives no keypoints for `KeypointDetectorOutputProcessor`",
                        self.name
                    )));
                };
                let boxes = to_array2(&found.boxes)?;
                let labels = Array1::from(Vec::<i64>::try_from(&found.labels).map_err(failed)?);
                let scores = Array1::from(Vec::<f32>::try_from(&found.scores).map_err(failed)?);
                let points = to_array3(&keypoints.points)?;
                let point_scores = to_array2(&keypoints.scores)?;
                let output = DetectorOutput {
                    boxes: boxes.view(),
                    labels: labels.view(),
                    scores: scores.view(),
                    image_size: (input.shape[2] as u32, input.shape[1] as u32),
                };
                let (detections, keypoints) =
                    processor.process(&output, points.view(), Some(point_scores.view()));
                Ok(Prediction::Map(BTreeMap::from([
                    ("detections".to_owned(), Some(detections)),
                    ("keypoints".to_owned(), Some(keypoints)),
                ])))
            })
            .collect()
    }

    fn embed_chunk(&self, inputs: &[Input]) -> Result<Vec<Vec<f32>>, ModelError> {
        let batch = self.batch(inputs)?;
        let failed = |error: tch::TchError| {
            let shape = inputs.first().map_or([0; 3], |input| input.shape);
            self.forward_error(shape, inputs.len(), &error)
        };
        let features = tch::no_grad(|| match &self.net {
            Net::Vision { network, .. } if network.embeddings_layer.is_some() => {
                network.features(&batch).map_err(failed)
            }
            Net::Script {
                module,
                embed_method: Some(method),
            } => module
                .method_ts(method, &[batch.shallow_clone()])
                .map_err(failed),
            _ => Err(ModelError::unsupported(
                "this model does not compute embeddings".into(),
            )),
        })?;
        let features = to_array2(&features.f_flatten(1, -1).map_err(failed)?)?;
        Ok(features
            .rows()
            .into_iter()
            .map(|row| row.to_vec())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{KeypointSkeleton, cpu_threads, share_cpu_threads, skeleton};

    /// libtorch's thread count is process-wide: one copy of a model run
    /// after two copies of another gets all the threads back.
    #[test]
    fn one_copy_after_two_gets_every_thread_back() {
        let all = cpu_threads();
        share_cpu_threads(2);
        assert_eq!(tch::get_num_threads(), (all / 2).max(1));
        share_cpu_threads(1);
        assert_eq!(tch::get_num_threads(), all);
    }

    /// A config's `skeleton` as FiftyOne's `KeypointSkeleton.from_dict`
    /// takes it (Keypoint R-CNN's COCO skeleton among them); a malformed
    /// one is an error naming the field, not a panic or a silent default.
    #[test]
    fn skeletons_parse_as_fiftyone_and_bad_ones_name_the_field() {
        let config =
            |value: serde_json::Value| json!({ "skeleton": value }).as_object().unwrap().clone();
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
}
