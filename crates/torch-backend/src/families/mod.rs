//! The model families zoo builds natively, and the one table that names
//! them: [`FAMILIES`]. Every lookup (which architecture an `entrypoint_fcn`
//! names, how it is built, its minimum input and `embeddings_layer`, which
//! checkpoint renames it needs, whether it runs folded, which PyTorch Hub
//! repository serves it) reads a [`Family`] row; a name no row holds is an
//! error naming it ([`family`]), never another network.
//!
//! Each family is one module (a folder for a big one: `detection/`) that
//! exports its builder and imports only the building blocks (`net`), the
//! shared [`BuildOptions`] and, where a family reuses another's body, that
//! family (`segmentation` uses `resnet`'s). Adding a family is a new
//! module here plus one row in [`FAMILIES`].
//!
//! Most families are written once against a [`Maker`]
//! ([`Build::Maker`]): the same code builds the reference graph whose
//! variables loading checks, and the folded, channels-last graph that runs
//! (`net/fold.rs`). VGG, AlexNet and SqueezeNet (torchvision's layouts, key
//! names and adaptive pooling: tch's VGG has no adaptive pooling and tch's
//! AlexNet's `features.3` has stride 2 / padding 1 where torchvision's has
//! 1 / 2) and DINOv2 run as built ([`Build::Store`]); the detectors are
//! their own graphs ([`Build::Detector`]).
//!
//! Every forward is fallible ([`Forward`](crate::net::layers::Forward)): a
//! libtorch error fails the batch, not the process.

use std::collections::HashMap;

use serde_json::Value;
use tch::nn;
use tch::{Kind, Tensor};

use crate::checkpoint::renames::Renames;
use crate::net::Network;
use crate::net::fold::Weights;
use crate::net::maker::{Folding, Maker, Reference};

pub(crate) mod alexnet;
pub(crate) mod densenet;
pub(crate) mod detection;
pub(crate) mod dinov2;
pub(crate) mod googlenet;
pub(crate) mod hub;
pub(crate) mod inception;
pub(crate) mod mnasnet;
pub(crate) mod mobilenet_v2;
pub(crate) mod options;
pub(crate) mod resnet;
pub(crate) mod segmentation;
pub(crate) mod shufflenet;
pub(crate) mod squeezenet;
pub(crate) mod transformers;
pub(crate) mod vgg;
pub(crate) mod yolo;

pub(crate) use options::BuildOptions;

/// What a family's networks compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// `[N, classes]` logits (1000 ImageNet classes unless the config
    /// lists others).
    Classifier,
    /// `[N, classes, H, W]` scores at the input's size (torchvision's
    /// default [`segmentation::SEGMENTER_CLASSES`] classes).
    Segmenter,
    /// Features only, from a PyTorch Hub `repository` (no torchvision
    /// builder: named through `load_torch_hub_raw_model`, `hub.rs`).
    Hub { repository: &'static str },
    /// A torchvision detector; `masks` and `keypoints` say which of
    /// FiftyOne's instance and keypoint output processors it can feed.
    Detector { masks: bool, keypoints: bool },
    /// An Ultralytics detector (FiftyOne's `FiftyOneYOLOModel`): the
    /// network comes whole from the checkpoint's module tree and `yaml`
    /// (`yolo/`).
    Ultralytics,
    /// A Hugging Face `transformers` image classifier (FiftyOne's
    /// `FiftyOneTransformerForImageClassification`): built from its repo's
    /// `config.json` and weights (`transformers/`).
    Transformers,
    /// A Hugging Face `transformers` zero-shot image classifier (FiftyOne's
    /// `FiftyOneZeroShotTransformerForImageClassification`): image and text
    /// towers built from its repo, tokenizer included (`transformers/`).
    TransformersZeroShot,
    /// A Hugging Face `transformers` zero-shot object detector (FiftyOne's
    /// `FiftyOneZeroShotTransformerForObjectDetection`): image and text
    /// towers and box and class heads built from its repo, tokenizer
    /// included (`transformers/`).
    TransformersZeroShotDetector,
    /// A Hugging Face `transformers` feature extractor (FiftyOne's
    /// `FiftyOneTransformer`, transformers' `AutoModel`): embeddings only,
    /// built from its repo (`transformers/`).
    TransformersEmbedder,
    /// A Hugging Face `transformers` depth estimator (FiftyOne's
    /// `FiftyOneTransformerForDepthEstimation`, transformers'
    /// `AutoModelForDepthEstimation`): heatmaps, built from its repo
    /// (`transformers/`).
    TransformersDepth,
    /// A Hugging Face `transformers` semantic segmenter (FiftyOne's
    /// `FiftyOneTransformerForSemanticSegmentation`): `[N, classes, h, w]`
    /// logits, built from its repo (`transformers/`).
    TransformersSegmenter,
}

/// A detector family's builder: name, variables' root, classes,
/// `entrypoint_args`; `None` for a name it does not build, an error naming
/// a bad argument.
pub(crate) type DetectorBuilder =
    fn(&str, &nn::Path<'_>, i64, Option<&Value>) -> Option<Result<detection::Detector, String>>;

/// Build options adjusted to a checkpoint's tensors.
pub(crate) type CheckpointOptions = fn(BuildOptions, &[(String, Tensor)]) -> BuildOptions;

/// How a family builds a network by name.
#[derive(Clone, Copy)]
pub(crate) enum Build {
    /// Written once against a [`Maker`]: built on a variable store for
    /// loading, and folded from the loaded weights to run.
    Maker(fn(&str, &dyn Maker, i64, BuildOptions) -> Option<Network>),
    /// Built on a variable store, and run as built.
    Store(fn(&str, &nn::Path<'_>, i64) -> Option<Network>),
    /// A detector, configured from `entrypoint_args`.
    Detector(DetectorBuilder),
    /// Built from the checkpoint itself (its module tree and `yaml`), by
    /// the family's own loader ([`yolo::YoloDetector::load`]).
    Checkpoint,
}

/// One row of [`FAMILIES`].
pub(crate) struct Family {
    /// The names it builds: torchvision entrypoints (`entrypoint_fcn`'s
    /// last part) or PyTorch Hub entrypoints.
    pub(crate) names: &'static [&'static str],
    pub(crate) task: Task,
    pub(crate) build: Build,
    /// The smallest input height and width the networks accept
    /// (torchvision's `min_size`); the model checks it before a forward.
    pub(crate) min_input: i64,
    /// The `embeddings_layer` whose input the features are, if any.
    pub(crate) embeddings_layer: Option<&'static str>,
    /// What torchvision's loader does to the hosted checkpoints' names.
    pub(crate) renames: Renames,
    /// Whether torchvision's builder sets `transform_input` when named
    /// weights are given (Inception v3, GoogLeNet).
    pub(crate) transform_input: bool,
    /// Build options that depend on the checkpoint, read before the network
    /// is built (MNASNet 0.5's version-1 stem).
    pub(crate) options_from_checkpoint: Option<CheckpointOptions>,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("names", &self.names)
            .field("task", &self.task)
            .field("min_input", &self.min_input)
            .field("embeddings_layer", &self.embeddings_layer)
            .field("renames", &self.renames)
            .finish_non_exhaustive()
    }
}

/// A classifier row's defaults.
const CLASSIFIER: Family = Family {
    names: &[],
    task: Task::Classifier,
    build: Build::Store(|_, _, _| None),
    min_input: 1,
    embeddings_layer: None,
    renames: Renames::Drop(&[]),
    transform_input: false,
    options_from_checkpoint: None,
};

/// A detector row's defaults.
const DETECTOR: Family = Family {
    task: Task::Detector {
        masks: false,
        keypoints: false,
    },
    build: Build::Detector(detection::Detector::build),
    renames: Renames::Detection,
    ..CLASSIFIER
};

/// Every family zoo builds natively, one row per set of names that share
/// how they are built, their minimum input and their embeddings.
pub(crate) const FAMILIES: &[Family] = &[
    Family {
        names: &[
            "resnet18",
            "resnet34",
            "resnet50",
            "resnet101",
            "resnet152",
            "resnext50_32x4d",
            "resnext101_32x8d",
            "wide_resnet50_2",
            "wide_resnet101_2",
        ],
        build: Build::Maker(resnet::build),
        embeddings_layer: Some("<fc"),
        ..CLASSIFIER
    },
    Family {
        names: &["mobilenet_v2"],
        build: Build::Maker(mobilenet_v2::build),
        embeddings_layer: Some("<classifier.1"),
        ..CLASSIFIER
    },
    Family {
        names: &["densenet121", "densenet161", "densenet169", "densenet201"],
        build: Build::Maker(densenet::build),
        // torchvision's `min_size` for DenseNets is 29x29.
        min_input: 29,
        embeddings_layer: Some("<classifier"),
        renames: Renames::DenseNet,
        ..CLASSIFIER
    },
    Family {
        names: &["googlenet"],
        build: Build::Maker(googlenet::build),
        // torchvision's `min_size` for GoogLeNet is 15x15.
        min_input: 15,
        embeddings_layer: Some("<fc"),
        renames: Renames::Drop(&["aux1.", "aux2."]),
        transform_input: true,
        ..CLASSIFIER
    },
    Family {
        names: &["inception_v3"],
        build: Build::Maker(|_, m, classes, options| {
            inception::build(m, classes, options.transform_input)
        }),
        min_input: inception::MIN_INPUT,
        embeddings_layer: Some("<fc"),
        renames: Renames::Drop(&["AuxLogits."]),
        transform_input: true,
        ..CLASSIFIER
    },
    Family {
        names: &["mnasnet0_5"],
        build: Build::Maker(mnasnet::build),
        embeddings_layer: Some("<classifier.1"),
        options_from_checkpoint: Some(mnasnet::version_one_stem),
        ..CLASSIFIER
    },
    Family {
        names: &["mnasnet1_0"],
        build: Build::Maker(mnasnet::build),
        embeddings_layer: Some("<classifier.1"),
        ..CLASSIFIER
    },
    Family {
        names: &["shufflenet_v2_x0_5", "shufflenet_v2_x1_0"],
        build: Build::Maker(shufflenet::build),
        embeddings_layer: Some("<fc"),
        ..CLASSIFIER
    },
    Family {
        names: &["alexnet"],
        build: Build::Store(|_, root, classes| Some(alexnet::build(root, classes))),
        min_input: alexnet::MIN_INPUT,
        embeddings_layer: Some("<classifier.6"),
        ..CLASSIFIER
    },
    Family {
        names: &[
            "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
        ],
        build: Build::Store(vgg::build),
        min_input: vgg::MIN_INPUT,
        embeddings_layer: Some("<classifier.6"),
        ..CLASSIFIER
    },
    Family {
        names: &["squeezenet1_0"],
        build: Build::Store(squeezenet::build),
        // torchvision's `min_size`.
        min_input: 21,
        ..CLASSIFIER
    },
    Family {
        names: &["squeezenet1_1"],
        build: Build::Store(squeezenet::build),
        min_input: 17,
        ..CLASSIFIER
    },
    Family {
        names: &[
            "deeplabv3_resnet50",
            "deeplabv3_resnet101",
            "fcn_resnet50",
            "fcn_resnet101",
        ],
        task: Task::Segmenter,
        build: Build::Maker(segmentation::build),
        renames: Renames::Drop(&["aux_classifier."]),
        ..CLASSIFIER
    },
    Family {
        names: &["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"],
        ..DETECTOR
    },
    Family {
        names: &["maskrcnn_resnet50_fpn"],
        task: Task::Detector {
            masks: true,
            keypoints: false,
        },
        ..DETECTOR
    },
    Family {
        names: &["keypointrcnn_resnet50_fpn"],
        task: Task::Detector {
            masks: false,
            keypoints: true,
        },
        ..DETECTOR
    },
    Family {
        // FiftyOne's `entrypoint_fcn` `ultralytics.YOLO`: YOLOv5u, YOLOv8,
        // YOLOv9 (c, e), YOLOv10, YOLO11 and YOLO26 detection, YOLOv8,
        // YOLOv9, YOLO11 and YOLO26 segmentation (n, s, m, l, x), ..., each
        // from its release checkpoint.
        names: &["YOLO"],
        task: Task::Ultralytics,
        build: Build::Checkpoint,
        ..CLASSIFIER
    },
    Family {
        // transformers' classes, which a Hub repo's `model_type` names
        // (`transformers::CLASSIFIERS`); each built from its repo.
        names: &[
            "ViTForImageClassification",
            "ConvNextForImageClassification",
            "EfficientNetForImageClassification",
            "Swinv2ForImageClassification",
        ],
        task: Task::Transformers,
        build: Build::Checkpoint,
        ..CLASSIFIER
    },
    Family {
        // transformers' zero-shot classes, which a Hub repo's `model_type`
        // names (`transformers::ZERO_SHOT`); each built from its repo.
        names: &["CLIPModel", "SiglipModel"],
        task: Task::TransformersZeroShot,
        build: Build::Checkpoint,
        ..CLASSIFIER
    },
    Family {
        // transformers' zero-shot detectors, which a Hub repo's
        // `model_type` names (`transformers::owlvit::ZERO_SHOT_DETECTORS`);
        // each built from its repo.
        names: &["OwlViTForObjectDetection"],
        task: Task::TransformersZeroShotDetector,
        build: Build::Checkpoint,
        ..CLASSIFIER
    },
    Family {
        // transformers' feature extractors, which a Hub repo's `model_type`
        // names (`transformers::embedder::EMBEDDERS`); each built from its
        // repo.
        names: &["DINOv3ViTModel"],
        task: Task::TransformersEmbedder,
        build: Build::Checkpoint,
        ..CLASSIFIER
    },
    Family {
        // transformers' depth estimators, which a Hub repo's `model_type`
        // names (`transformers::depth_anything::DEPTH_ESTIMATORS`); each
        // built from its repo.
        names: &["DepthAnythingForDepthEstimation"],
        task: Task::TransformersDepth,
        build: Build::Checkpoint,
        ..CLASSIFIER
    },
    Family {
        // transformers' semantic segmenters, which a Hub repo's
        // `model_type` names (`transformers::segmenter::SEGMENTERS`); each
        // built from its repo.
        names: &["SegformerForSemanticSegmentation"],
        task: Task::TransformersSegmenter,
        build: Build::Checkpoint,
        ..CLASSIFIER
    },
    Family {
        names: &[
            "dinov2_vits14",
            "dinov2_vitb14",
            "dinov2_vitl14",
            "dinov2_vitg14",
            "dinov2_vits14_reg",
            "dinov2_vitb14_reg",
            "dinov2_vitl14_reg",
            "dinov2_vitg14_reg",
        ],
        task: Task::Hub {
            repository: "facebookresearch/dinov2",
        },
        build: Build::Store(|name, root, _| dinov2::build(name, root)),
        // One patch.
        min_input: 14,
        embeddings_layer: Some("head"),
        ..CLASSIFIER
    },
];

/// An architecture no row of [`FAMILIES`] names.
#[derive(Debug, thiserror::Error)]
#[error("architecture `{name}` is not available natively; zoo builds: {}", torchvision_names().collect::<Vec<_>>().join(", "))]
pub(crate) struct UnknownArchitecture {
    pub(crate) name: String,
}

/// The row that builds `name`, if any.
pub(crate) fn find(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|family| family.names.contains(&name))
}

/// The row that builds `name`, or an error naming it.
pub(crate) fn family(name: &str) -> Result<&'static Family, UnknownArchitecture> {
    find(name).ok_or_else(|| UnknownArchitecture {
        name: name.to_owned(),
    })
}

/// The torchvision builders zoo runs natively, classifiers and segmenters,
/// in table order (detectors and PyTorch Hub entrypoints are named
/// otherwise).
pub(crate) fn torchvision_names() -> impl Iterator<Item = &'static str> {
    FAMILIES
        .iter()
        .filter(|family| matches!(family.task, Task::Classifier | Task::Segmenter))
        .flat_map(|family| family.names.iter().copied())
}

/// Every torchvision architecture whose networks end in a classifier or
/// segmentation head (what [`torchvision_names`] lists).
#[cfg(test)]
pub(crate) fn architectures() -> impl Iterator<Item = &'static str> {
    torchvision_names()
}

impl Family {
    /// Whether the networks run folded once loaded.
    #[cfg(test)]
    pub(crate) fn folds(&self) -> bool {
        matches!(self.build, Build::Maker(_))
    }

    /// Whether this is a detector family.
    pub(crate) fn is_detector(&self) -> bool {
        matches!(self.task, Task::Detector { .. })
    }

    /// Network `name` built under `root` as torchvision's builder builds it
    /// with `options` (variables named as torchvision names them), with
    /// `classes` outputs; `None` for a detector or a name not in this row.
    pub(crate) fn build(
        &self,
        name: &str,
        root: &nn::Path<'_>,
        classes: i64,
        options: BuildOptions,
    ) -> Option<Network> {
        let network = match self.build {
            Build::Maker(build) => build(name, &Reference(root), classes, options),
            Build::Store(build) => build(name, root, classes),
            Build::Detector(_) | Build::Checkpoint => None,
        }?;
        Some(network.described(self.embeddings_layer, self.min_input))
    }

    /// The folded, channels-last graph of `name` from its loaded weights
    /// (f32), computing in `kind`; `None` for families that run as built.
    pub(crate) fn build_folded(
        &self,
        name: &str,
        by_name: HashMap<String, Tensor>,
        kind: Kind,
        options: BuildOptions,
    ) -> Option<Network> {
        let Build::Maker(build) = self.build else {
            return None;
        };
        let weights = Weights { by_name, kind };
        let network = tch::no_grad(|| build(name, &Folding(&weights), 0, options))?;
        Some(network.described(self.embeddings_layer, self.min_input))
    }

    /// Detector `name` under `root` with `classes` outputs, configured from
    /// `entrypoint_args`; `None` when this row builds no detector.
    pub(crate) fn build_detector(
        &self,
        name: &str,
        root: &nn::Path<'_>,
        classes: i64,
        entrypoint_args: Option<&Value>,
    ) -> Option<Result<detection::Detector, String>> {
        match self.build {
            Build::Detector(build) => build(name, root, classes, entrypoint_args),
            Build::Maker(_) | Build::Store(_) | Build::Checkpoint => None,
        }
    }
}

/// Builds architecture `name` (the last part of an `entrypoint_fcn`, or a
/// hub entrypoint) as torchvision's builder does without named weights.
#[cfg(test)]
pub(crate) fn build(name: &str, root: &nn::Path<'_>, classes: i64) -> Option<Network> {
    build_with(name, root, classes, BuildOptions::default())
}

/// Builds architecture `name` with torchvision's build `options`.
#[cfg(test)]
pub(crate) fn build_with(
    name: &str,
    root: &nn::Path<'_>,
    classes: i64,
    options: BuildOptions,
) -> Option<Network> {
    find(name)?.build(name, root, classes, options)
}

/// The folded graph of `name` from its loaded weights, when its family
/// runs folded.
#[cfg(test)]
pub(crate) fn build_folded(
    name: &str,
    by_name: HashMap<String, Tensor>,
    kind: Kind,
    options: BuildOptions,
) -> Option<Network> {
    find(name)?.build_folded(name, by_name, kind, options)
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind, Tensor};

    use super::{BuildOptions, FAMILIES, Task, architectures, build, build_folded, find};

    /// The markers around `docs/models.md`'s table of families.
    const TABLE_START: &str = "<!-- generated from torch-backend's FAMILIES by `ZOO_BLESS=1 cargo xtask test -p zoo-torch-backend --lib families_in_docs` -->";
    const TABLE_END: &str = "<!-- end of the generated table of families -->";

    /// `FAMILIES` as a Markdown table: one row per family.
    fn family_table() -> String {
        let mut out = String::from(
            "| names | task | runs | smallest input | embeddings layer |\n|---|---|---|---|---|\n",
        );
        for family in FAMILIES {
            let task = match family.task {
                Task::Classifier => "classifier".to_owned(),
                Task::Segmenter => "semantic segmenter".to_owned(),
                Task::Hub { repository } => format!("PyTorch Hub `{repository}`"),
                Task::Detector { masks: true, .. } => "instance segmenter".to_owned(),
                Task::Detector {
                    keypoints: true, ..
                } => "keypoint detector".to_owned(),
                Task::Detector { .. } => "detector".to_owned(),
                Task::Ultralytics => "Ultralytics detector".to_owned(),
                Task::Transformers => "transformers classifier".to_owned(),
                Task::TransformersZeroShot => "transformers zero-shot classifier".to_owned(),
                Task::TransformersZeroShotDetector => "transformers zero-shot detector".to_owned(),
                Task::TransformersEmbedder => "transformers feature extractor".to_owned(),
                Task::TransformersDepth => "transformers depth estimator".to_owned(),
                Task::TransformersSegmenter => "transformers semantic segmenter".to_owned(),
            };
            let runs = if family.folds() {
                "folded, channels-last"
            } else if family.task == Task::Ultralytics {
                "conv and batch norm fused"
            } else if matches!(
                family.task,
                Task::Transformers
                    | Task::TransformersZeroShot
                    | Task::TransformersZeroShotDetector
                    | Task::TransformersEmbedder
                    | Task::TransformersDepth
                    | Task::TransformersSegmenter
            ) {
                "built from its Hugging Face repo"
            } else if family.is_detector() {
                "backbone folded"
            } else {
                "as built"
            };
            let names = family
                .names
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let layer = family
                .embeddings_layer
                .map_or_else(|| "-".to_owned(), |layer| format!("`{layer}`"));
            out.push_str(&format!(
                "| {names} | {task} | {runs} | {} | {layer} |\n",
                family.min_input
            ));
        }
        out
    }

    /// `docs/models.md` lists the families this crate builds, as the table
    /// says; `ZOO_BLESS=1` rewrites the list.
    #[test]
    fn families_in_docs_are_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/models.md");
        let text = fs_err::read_to_string(&path).unwrap();
        let start = text
            .find(TABLE_START)
            .expect("docs/models.md has the table's start marker")
            + TABLE_START.len();
        let end = start + text[start..].find(TABLE_END).expect("and its end marker");
        let table = family_table();
        if std::env::var_os("ZOO_BLESS").is_some() {
            let updated = format!("{}\n{table}{}", &text[..start], &text[end..]);
            fs_err::write(&path, updated).unwrap();
            return;
        }
        assert!(
            text[start..end].trim() == table.trim(),
            "docs/models.md's table of families differs from FAMILIES: rerun with ZOO_BLESS=1"
        );
    }
    use crate::net::Network;
    use crate::net::fold::channels_last;
    use crate::net::testing::randomise;

    /// Every architecture as built here, and folded where it runs folded.
    fn every_network(check: impl Fn(&str, &Network)) {
        for name in architectures() {
            let store = VarStore::new(Device::Cpu);
            let network = build(name, &store.root(), 10).unwrap();
            check(name, &network);
            if let Some(folded) = build_folded(
                name,
                store.variables(),
                Kind::Float,
                BuildOptions::default(),
            ) {
                assert_eq!(folded.min_input, network.min_input, "{name}");
                check(&format!("{name} (folded)"), &folded);
            }
        }
    }

    fn run(network: &Network, shape: [i64; 4]) -> Result<Tensor, tch::TchError> {
        let input = Tensor::zeros(shape, (Kind::Float, Device::Cpu));
        tch::no_grad(|| {
            network
                .features(&input)
                .and_then(|features| network.head(&features))
        })
    }

    /// `min_input` is exactly the smallest side libtorch accepts: the
    /// model checks it before the forward, so it must be neither too strict
    /// nor too lax; a smaller input fails the forward with an error.
    #[test]
    fn inputs_below_the_minimum_are_an_error_not_a_panic() {
        every_network(|name, network| {
            let min = network.min_input;
            let output = run(network, [1, 3, min, min + 3]);
            assert!(output.is_ok(), "{name} at {min}: {:?}", output.err());
            let segmenter = FAMILIES.iter().any(|family| {
                family.task == Task::Segmenter && family.names.iter().any(|s| name.starts_with(s))
            });
            let expected = if segmenter {
                vec![1, 10, min, min + 3]
            } else {
                vec![1, 10]
            };
            assert_eq!(output.unwrap().size(), expected, "{name}");
            if min > 1 {
                for shape in [[1, 3, min - 1, min + 3], [1, 3, min + 3, min - 1]] {
                    assert!(run(network, shape).is_err(), "{name} at {shape:?}");
                }
            }
        });
    }

    /// A 4-channel batch makes libtorch raise in the first convolution:
    /// every network returns it as an error (the guarded `tch::vision`
    /// ones included), and the thread goes on.
    #[test]
    fn libtorch_error_in_forward_is_an_error_not_a_panic() {
        every_network(|name, network| {
            let size = network.min_input.max(40);
            let err = run(network, [2, 4, size, size]).unwrap_err().to_string();
            assert!(err.contains("channels"), "{name}: {err}");
        });
    }

    #[test]
    fn folded_graphs_compute_what_the_plain_graphs_compute() {
        let names = FAMILIES
            .iter()
            .filter(|family| family.folds())
            .flat_map(|family| family.names);
        for name in names {
            let store = VarStore::new(Device::Cpu);
            let plain = build(name, &store.root(), 10).unwrap();
            randomise(&store);
            let folded = build_folded(
                name,
                store.variables(),
                Kind::Float,
                BuildOptions::default(),
            )
            .unwrap();
            // Ragged, non-square input, like FiftyOne's native-size images
            // (Inception v3 needs 75 rows).
            let height = plain.min_input.max(72);
            let input = Tensor::randn([2, 3, height, 100], (Kind::Float, Device::Cpu));
            let (want, got) = tch::no_grad(|| {
                let want = plain.head(&plain.features(&input).unwrap()).unwrap();
                let got = folded
                    .head(&folded.features(&channels_last(&input)).unwrap())
                    .unwrap();
                (want, got)
            });
            assert_eq!(want.size(), got.size(), "{name}");
            let scale = want.abs().max().double_value(&[]).max(1.0);
            let difference = (&want - &got).abs().max().double_value(&[]);
            assert!(
                difference <= 1e-4 * scale,
                "{name}: max |diff| {difference} at scale {scale}"
            );
        }
    }

    /// Every name is in one row only, and a network's head and its row's
    /// `embeddings_layer` go together.
    #[test]
    fn each_name_has_one_row() {
        let mut names: Vec<&str> = FAMILIES
            .iter()
            .flat_map(|family| family.names)
            .copied()
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name is in two rows");
        for name in architectures() {
            let store = VarStore::new(Device::Cpu);
            let network = build(name, &store.root(), 10).unwrap();
            let family = find(name).unwrap();
            assert_eq!(network.embeddings_layer, family.embeddings_layer, "{name}");
            assert_eq!(network.min_input, family.min_input, "{name}");
        }
    }

    /// An architecture no row names is an error naming it, never another
    /// network: VGG used to be built for any unknown name.
    #[test]
    fn an_unknown_architecture_is_an_error_naming_it() {
        for name in ["vgg20", "resnet", "", "dinov2_vitx14"] {
            let err = super::family(name).unwrap_err();
            assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
            let store = VarStore::new(Device::Cpu);
            assert!(build(name, &store.root(), 10).is_none(), "{name}");
        }
    }
}
