//! Hugging Face `transformers` image classifiers, from the files of a Hub
//! repo (`repo.rs`): the architecture and its sizes from `config.json`, the
//! weights from `model.safetensors` (or its shards, or `pytorch_model.bin`),
//! the image processor from `preprocessor_config.json` (`processor.rs`,
//! with libtorch's `uint8` resampling in `resize.rs`).
//!
//! Which network a repo is follows its `model_type`, as transformers'
//! `AutoModelForImageClassification` decides ([`CLASSIFIERS`]); each is a
//! `FAMILIES` row (`Task::Transformers`), built here from the repo itself:
//! `vit` (`ViTForImageClassification`, `vit.rs`), `convnext`
//! (`ConvNextForImageClassification`, `convnext.rs`), `efficientnet`
//! (`EfficientNetForImageClassification`, `efficientnet.rs`) and `swinv2`
//! (`Swinv2ForImageClassification`, `swinv2.rs`). Any other type is an
//! error naming it.
//!
//! The zero-shot classifiers ([`ZERO_SHOT`], `Task::TransformersZeroShot`,
//! run by `zero_shot_model.rs`) are the dual encoders of `clip.rs`: `clip`
//! (`CLIPModel`) and `siglip` (`SiglipModel`), with the repo's
//! `tokenizer.json` (`tokenizer.rs`).
//!
//! The zero-shot detectors ([`owlvit::ZERO_SHOT_DETECTORS`],
//! `Task::TransformersZeroShotDetector`, run by `zero_shot_detector.rs`):
//! `owlvit` (`OwlViTForObjectDetection`, `owlvit.rs`) on `clip.rs`'s towers,
//! with the repo's `tokenizer.json`.
//!
//! The feature extractors (`embedder.rs`, `Task::TransformersEmbedder`, run
//! by `transformers_embedder.rs`) are what transformers' `AutoModel` builds:
//! `dinov3_vit` (`DINOv3ViTModel`, `dinov3.rs`).
//!
//! The depth estimators (`Task::TransformersDepth`, run by
//! `transformers_depth.rs`) are what transformers'
//! `AutoModelForDepthEstimation` builds: `depth_anything`
//! (`DepthAnythingForDepthEstimation`, `depth_anything.rs`, with DPT's
//! image processor).
//! The semantic segmenters (`segmenter.rs`, `Task::TransformersSegmenter`,
//! run by `transformers_segmenter.rs`) are what transformers'
//! `AutoModelForSemanticSegmentation` builds: `segformer`
//! (`SegformerForSemanticSegmentation`, `segformer.rs`).
//!
//! ```text
//! <repo>/
//! ├── config.json                      model_type, sizes, id2label
//! ├── preprocessor_config.json         resize, crop, rescale, normalise
//! └── model.safetensors                or model.safetensors.index.json and
//!                                      its shards, or pytorch_model.bin
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::{TchError, Tensor};

use crate::checkpoint::weights::WeightsError;

pub(crate) mod clip;
pub(crate) mod convnext;
pub(crate) mod depth_anything;
pub(crate) mod dinov3;
pub(crate) mod efficientnet;
pub(crate) mod embedder;
pub(crate) mod owlvit;
pub(crate) mod processor;
pub(crate) mod repo;
pub(crate) mod resize;
pub(crate) mod segformer;
pub(crate) mod segmenter;
pub(crate) mod swinv2;
pub(crate) mod tokenizer;
pub(crate) mod vit;

use processor::{ImageProcessor, ProcessorKind};

/// Why a Hugging Face repo could not be read or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum HfError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A file's field is missing, of the wrong type or out of range.
    #[error("`{path}`: {message}; correct the file or use the repo transformers wrote")]
    Config {
        /// The file.
        path: PathBuf,
        /// Which field and what is wrong with it.
        message: String,
    },
    /// The repo's model type is not one zoo builds.
    #[error(
        "`{path}` has `model_type` `{model_type}`; zoo builds {known} {what} natively: run this model in the Python host"
    )]
    Unsupported {
        /// What kind of model (`image classifiers`).
        what: &'static str,
        /// `config.json`.
        path: PathBuf,
        /// Its `model_type`.
        model_type: String,
        /// The types zoo builds.
        known: String,
    },
    /// A weights file could not be read.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The weights do not fit the architecture.
    #[error("the weights in `{dir}` do not fit its `config.json`: {message}")]
    Mismatch {
        /// The repo's folder.
        dir: PathBuf,
        /// Which tensors are missing, extra or misshapen.
        message: String,
    },
    /// libtorch failed in a forward.
    #[error("the forward failed: {0}")]
    Forward(#[source] TchError),
}

impl HfError {
    /// As a model error: an architecture zoo does not build is
    /// `Unsupported` (zoo then runs FiftyOne's class on the repo, as for a
    /// `-k name_or_path=...` repo), anything else is the repo's `Config`
    /// problem; the message holds every cause.
    pub(crate) fn into_model_error(self) -> zoo_model_core::ModelError {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(&self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        match self {
            HfError::Unsupported { .. } => zoo_model_core::ModelError::unsupported(message),
            _ => zoo_model_core::ModelError::config(message),
        }
    }
}

/// The most labels a repo's `id2label` may list (as many classes as zoo
/// builds any classifier for).
const MAX_CLASSES: usize = 100_000;

/// The classifiers zoo builds: `model_type` and transformers' class (the
/// name in `FAMILIES`).
pub(crate) const CLASSIFIERS: &[(&str, &str)] = &[
    ("vit", "ViTForImageClassification"),
    ("convnext", "ConvNextForImageClassification"),
    ("efficientnet", "EfficientNetForImageClassification"),
    ("swinv2", "Swinv2ForImageClassification"),
];

/// The zero-shot classifiers zoo builds: `model_type` and transformers'
/// class (the name in `FAMILIES`).
pub(crate) const ZERO_SHOT: &[(&str, &str)] = &[("clip", "CLIPModel"), ("siglip", "SiglipModel")];

/// A zero-shot classifier read from a Hugging Face repo: its image and
/// text towers, image processor, tokenizer and labels.
pub(crate) struct ZeroShotRepo {
    /// transformers' class (`CLIPModel`, `SiglipModel`).
    pub(crate) class: &'static str,
    pub(crate) network: clip::Clip,
    pub(crate) processor: ImageProcessor,
    pub(crate) tokenizer: tokenizer::HfTokenizer,
    /// `id2label`'s values in the file's order (FiftyOne's default
    /// classes), else transformers' `LABEL_0` and `LABEL_1`.
    pub(crate) labels: Vec<String>,
}

/// `config.json`'s fields every zero-shot classifier has.
#[derive(Debug, Deserialize)]
struct ZeroShotCommon {
    model_type: Option<String>,
    #[serde(default)]
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A zero-shot model's default classes as FiftyOne reads them:
/// `id2label`'s values in the file's order, else transformers' `LABEL_0`
/// and `LABEL_1`.
pub(crate) fn zero_shot_labels(
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
    path: &Path,
) -> Result<Vec<String>, HfError> {
    match id2label {
        Some(map) if !map.is_empty() => {
            if map.len() > MAX_CLASSES {
                return Err(HfError::Config {
                    path: path.to_owned(),
                    message: format!(
                        "`id2label` lists {} labels, beyond the {MAX_CLASSES} zoo builds",
                        map.len()
                    ),
                });
            }
            map.into_iter()
                .map(|(key, value)| match value {
                    serde_json::Value::String(label) => Ok(label),
                    other => Err(HfError::Config {
                        path: path.to_owned(),
                        message: format!("`id2label.{key}` must be a label, got `{other}`"),
                    }),
                })
                .collect()
        }
        _ => Ok(vec!["LABEL_0".to_owned(), "LABEL_1".to_owned()]),
    }
}

impl ZeroShotRepo {
    /// Reads the repo in `dir`: `config.json`, the weights,
    /// `preprocessor_config.json` (or `processor_config.json`), run as
    /// transformers' PIL backend when `pil`, and `tokenizer.json`.
    pub(crate) fn load(dir: &Path, pil: bool) -> Result<ZeroShotRepo, HfError> {
        let path = dir.join("config.json");
        let common: ZeroShotCommon = repo::read_json(dir, "config.json")?;
        let model_type = common.model_type.unwrap_or_default();
        let class = ZERO_SHOT
            .iter()
            .find(|(kind, _)| *kind == model_type)
            .map(|(_, class)| *class)
            .ok_or_else(|| HfError::Unsupported {
                path: path.clone(),
                model_type: model_type.clone(),
                known: ZERO_SHOT
                    .iter()
                    .map(|(kind, _)| format!("`{kind}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                what: "zero-shot image classifiers",
            })?;
        let labels = zero_shot_labels(common.id2label, &path)?;
        let (dual, processor_kind) = if model_type == "siglip" {
            (clip::Dual::Siglip, ProcessorKind::Siglip)
        } else {
            (clip::Dual::Clip, ProcessorKind::Clip)
        };
        let mut weights = repo::read_weights(dir)?;
        let config: clip::ClipConfig = repo::read_json(dir, "config.json")?;
        let network =
            clip::Clip::build(dual, config, &mut weights).map_err(|message| HfError::Config {
                path: path.clone(),
                message,
            })?;
        weights.finish()?;
        let processor = ImageProcessor::read_with(dir, processor_kind, pil)?;
        let (height, width) = network.image_size();
        if processor.fixed_size() != Some((width as u32, height as u32)) {
            return Err(HfError::Config {
                path: dir.join("preprocessor_config.json"),
                message: format!(
                    "the processor's images are not the {width}x{height} the model's `image_size` takes (transformers would refuse them too)"
                ),
            });
        }
        let tokenizer = tokenizer::HfTokenizer::load(dir)?;
        Ok(ZeroShotRepo {
            class,
            network,
            processor,
            tokenizer,
            labels,
        })
    }
}

/// The activation a config's `hidden_act` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `gelu`: the exact (erf) GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    Relu,
    /// `silu`, `swish`.
    Silu,
    /// `quick_gelu`: `x * sigmoid(1.702 * x)` (CLIP's).
    QuickGelu,
}

impl Activation {
    fn named(name: &str) -> Result<Activation, String> {
        match name {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            "quick_gelu" => Ok(Activation::QuickGelu),
            other => Err(format!(
                "`hidden_act` `{other}` is not one zoo builds (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu, swish, quick_gelu)"
            )),
        }
    }

    fn apply(self, xs: &Tensor) -> Result<Tensor, TchError> {
        match self {
            Activation::Gelu => xs.f_gelu("none"),
            Activation::GeluTanh => xs.f_gelu("tanh"),
            Activation::Relu => xs.f_relu(),
            Activation::Silu => xs.f_silu(),
            Activation::QuickGelu => xs.f_mul(&xs.f_mul_scalar(1.702)?.f_sigmoid()?),
        }
    }
}

/// `nn.LayerNorm` over the last dimension.
fn layer_norm(
    xs: &Tensor,
    (weight, bias): &(Tensor, Tensor),
    eps: f64,
) -> Result<Tensor, TchError> {
    let size = weight.size();
    xs.f_layer_norm(size.as_slice(), Some(weight), Some(bias), eps, true)
}

/// `nn.Linear`.
fn linear(xs: &Tensor, (weight, bias): &(Tensor, Tensor)) -> Result<Tensor, TchError> {
    xs.f_linear(weight, Some(bias))
}

/// `config.json`'s fields every classifier has.
#[derive(Debug, Deserialize)]
struct CommonConfig {
    model_type: Option<String>,
    #[serde(default)]
    id2label: Option<BTreeMap<String, String>>,
}

/// The network of a repo.
pub(crate) enum Network {
    Vit(vit::Vit),
    ConvNext(convnext::ConvNext),
    EfficientNet(efficientnet::EfficientNet),
    Swinv2(swinv2::Swinv2),
}

/// A classifier read from a Hugging Face repo: its network, labels and
/// image processor.
pub(crate) struct HfClassifier {
    /// transformers' class (`ViTForImageClassification`).
    pub(crate) class: &'static str,
    pub(crate) network: Network,
    /// `id2label` in index order (FiftyOne's classes).
    pub(crate) labels: Vec<String>,
    pub(crate) processor: ImageProcessor,
}

impl std::fmt::Debug for HfClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfClassifier")
            .field("class", &self.class)
            .field("labels", &self.labels.len())
            .finish_non_exhaustive()
    }
}

/// `id2label` as FiftyOne reads it: `[id2label[i] for i in
/// range(len(id2label))]`.
fn labels(map: BTreeMap<String, String>, path: &Path) -> Result<Vec<String>, HfError> {
    if map.len() > MAX_CLASSES {
        return Err(HfError::Config {
            path: path.to_owned(),
            message: format!(
                "`id2label` lists {} labels, beyond the {MAX_CLASSES} zoo builds",
                map.len()
            ),
        });
    }
    let mut by_index: BTreeMap<usize, String> = BTreeMap::new();
    for (key, label) in map {
        let index = key.trim().parse::<usize>().map_err(|_| HfError::Config {
            path: path.to_owned(),
            message: format!("`id2label` key `{key}` is not a whole number"),
        })?;
        by_index.insert(index, label);
    }
    (0..by_index.len())
        .map(|index| {
            by_index.remove(&index).ok_or_else(|| HfError::Config {
                path: path.to_owned(),
                message: format!("`id2label` has no label {index}"),
            })
        })
        .collect()
}

impl HfClassifier {
    /// Reads the repo in `dir` (see the module docs).
    pub(crate) fn load(dir: &Path) -> Result<HfClassifier, HfError> {
        let path = dir.join("config.json");
        let common: CommonConfig = repo::read_json(dir, "config.json")?;
        let model_type = common.model_type.unwrap_or_default();
        let class = CLASSIFIERS
            .iter()
            .find(|(kind, _)| *kind == model_type)
            .map(|(_, class)| *class)
            .ok_or_else(|| HfError::Unsupported {
                path: path.clone(),
                model_type: model_type.clone(),
                known: CLASSIFIERS
                    .iter()
                    .map(|(kind, _)| format!("`{kind}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                what: "image classifiers",
            })?;
        // The class must be a transformers row of FAMILIES.
        let family = super::family(class).map_err(|err| HfError::Config {
            path: path.clone(),
            message: err.to_string(),
        })?;
        debug_assert_eq!(family.task, super::Task::Transformers);
        let mut weights = repo::read_weights(dir)?;
        let labels = match common.id2label {
            Some(map) if !map.is_empty() => labels(map, &path)?,
            // transformers' default: two labels, LABEL_0 and LABEL_1.
            _ => vec!["LABEL_0".to_owned(), "LABEL_1".to_owned()],
        };
        let classes = weights
            .rows("classifier.weight")
            .unwrap_or(labels.len() as i64);
        if classes != labels.len() as i64 {
            return Err(HfError::Mismatch {
                dir: dir.to_owned(),
                message: format!(
                    "`classifier.weight` has {classes} rows but `id2label` lists {} labels",
                    labels.len()
                ),
            });
        }
        let config_error = |message: String| HfError::Config {
            path: path.clone(),
            message,
        };
        let (network, kind) = match model_type.as_str() {
            "vit" => {
                let config: vit::VitConfig = repo::read_json(dir, "config.json")?;
                let network =
                    vit::Vit::build(config, &mut weights, classes).map_err(config_error)?;
                (Network::Vit(network), ProcessorKind::Vit)
            }
            "convnext" => {
                let config: convnext::ConvNextConfig = repo::read_json(dir, "config.json")?;
                let network = convnext::ConvNext::build(config, &mut weights, classes)
                    .map_err(config_error)?;
                (Network::ConvNext(network), ProcessorKind::ConvNext)
            }
            "swinv2" => {
                let config: swinv2::Swinv2Config = repo::read_json(dir, "config.json")?;
                let network =
                    swinv2::Swinv2::build(config, &mut weights, classes).map_err(config_error)?;
                (Network::Swinv2(network), ProcessorKind::Vit)
            }
            _ => {
                let config: efficientnet::EfficientNetConfig = repo::read_json(dir, "config.json")?;
                let network = efficientnet::EfficientNet::build(config, &mut weights, classes)
                    .map_err(config_error)?;
                (Network::EfficientNet(network), ProcessorKind::EfficientNet)
            }
        };
        weights.finish()?;
        let processor = ImageProcessor::read(dir, kind)?;
        if let Network::Vit(vit) = &network {
            let (height, width) = vit.image_size();
            if processor.fixed_size() != Some((width as u32, height as u32)) {
                return Err(HfError::Config {
                    path: dir.join("preprocessor_config.json"),
                    message: format!(
                        "the processor's images are not the {width}x{height} the model's `image_size` takes (transformers would refuse them too)"
                    ),
                });
            }
        }
        Ok(HfClassifier {
            class,
            network,
            labels,
            processor,
        })
    }

    /// How many hidden states `output_hidden_states` gives.
    pub(crate) fn hidden_states(&self) -> usize {
        match &self.network {
            Network::Vit(vit) => vit.hidden_states(),
            Network::ConvNext(convnext) => convnext.hidden_states(),
            Network::EfficientNet(efficientnet) => efficientnet.hidden_states(),
            Network::Swinv2(swinv2) => swinv2.hidden_states(),
        }
    }

    /// The smallest input side the network takes.
    pub(crate) fn min_input(&self) -> i64 {
        match &self.network {
            Network::Vit(vit) => vit.image_size().0.min(vit.image_size().1),
            Network::ConvNext(convnext) => convnext.min_input(),
            Network::EfficientNet(_) | Network::Swinv2(_) => 1,
        }
    }

    /// The logits (`[N, classes]`) and hidden state `keep` of `pixels`
    /// (`[N, 3, H, W]`).
    pub(crate) fn forward(
        &self,
        pixels: &Tensor,
        keep: usize,
    ) -> Result<(Tensor, Tensor), HfError> {
        let _no_grad = tch::no_grad_guard();
        match &self.network {
            Network::Vit(vit) => vit.forward(pixels, keep),
            Network::ConvNext(convnext) => convnext.forward(pixels, keep).map_err(HfError::Forward),
            Network::EfficientNet(efficientnet) => {
                efficientnet.forward(pixels, keep).map_err(HfError::Forward)
            }
            Network::Swinv2(swinv2) => swinv2.forward(pixels, keep),
        }
    }
}
