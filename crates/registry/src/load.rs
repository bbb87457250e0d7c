//! How a model is built: from a deployment config (natively), or by the
//! Python `load_model` of its source in the model host.
//!
//! The registry only says which; it never runs the model host itself (the
//! CLI starts `zoo-python-host` with the [`PythonLoad`] it gets here).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use zoo_manifest::{DeploymentConfig, Origin, ZooModel};

use crate::error::RegistryError;
use crate::hooks::{self, Hook, HookKind};
use crate::hub::{OtherRepo, config_repo, config_revision, hub_plan};
use crate::registry::Registry;

/// How [`Registry::load_plan`] says to build a model.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LoadPlan {
    /// A deployment config, run natively: the manifest's
    /// `default_deployment_config_dict`, or what an executable load hook
    /// printed (overrides applied).
    Config(DeploymentConfig),
    /// The trusted source's `__init__.py` defines `load_model`: run it in
    /// the model host, which serves the `fiftyone.core.models.Model` it
    /// returns (or hands back the JSON config it returns).
    Python(PythonLoad),
}

/// A trusted source's Python `load_model`, its paths checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonLoad {
    /// The source's `__init__.py`.
    pub init: PathBuf,
    /// The model's versioned name (`load_model`'s `model_name`).
    pub model_name: String,
    /// The model's path (`load_model`'s `model_path`).
    pub model_path: PathBuf,
    /// The interpreter ([`RegistryConfig::python`](crate::RegistryConfig)).
    pub python: String,
    /// How long `load_model` and each batch may take
    /// ([`RegistryConfig::hook_timeout`](crate::RegistryConfig)).
    pub timeout: Duration,
    /// Keyword arguments zoo itself passes to `load_model`, beside the
    /// user's (`zoo_deployment_config` for FiftyOne's classes).
    pub kwargs: Map<String, Value>,
    /// For a model run through FiftyOne's class: that class (the config's
    /// `type`), for messages; `None` for a source's own `load_model`.
    pub fiftyone_class: Option<String>,
}

/// The deployment config types zoo's native backend builds (FiftyOne's
/// names and zoo's short names; `zoo-torch-backend` registers exactly these,
/// checked by a test in `zoo-cli`). Any other type is FiftyOne's class, for
/// the model host; so is an Ultralytics config zoo does not build
/// ([`config_load_path`]).
pub const NATIVE_TYPES: &[&str] = &[
    "fiftyone.utils.torch.TorchImageModel",
    "fiftyone.zoo.models.torch.TorchvisionImageModel",
    "TorchImageModel",
    "TorchvisionImageModel",
    "torch",
    "fiftyone.utils.clip.TorchCLIPModel",
    "TorchCLIPModel",
    "fiftyone.utils.ultralytics.FiftyOneYOLOModel",
    "FiftyOneYOLOModel",
    "fiftyone.utils.transformers.FiftyOneTransformerForImageClassification",
    "FiftyOneTransformerForImageClassification",
    "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForImageClassification",
    "FiftyOneZeroShotTransformerForImageClassification",
    "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForObjectDetection",
    "FiftyOneZeroShotTransformerForObjectDetection",
    "fiftyone.utils.transformers.FiftyOneTransformer",
    "FiftyOneTransformer",
    "fiftyone.utils.transformers.FiftyOneTransformerForDepthEstimation",
    "FiftyOneTransformerForDepthEstimation",
    "fiftyone.utils.transformers.FiftyOneTransformerForSemanticSegmentation",
    "FiftyOneTransformerForSemanticSegmentation",
];

/// FiftyOne's transformers classifier class names among [`NATIVE_TYPES`]:
/// native only for the Hugging Face repos zoo builds
/// ([`native_transformers`]); FiftyOne's class runs the others.
pub(crate) const TRANSFORMERS_TYPES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneTransformerForImageClassification",
    "FiftyOneTransformerForImageClassification",
    "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForImageClassification",
    "FiftyOneZeroShotTransformerForImageClassification",
    "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForObjectDetection",
    "FiftyOneZeroShotTransformerForObjectDetection",
    "fiftyone.utils.transformers.FiftyOneTransformer",
    "FiftyOneTransformer",
    "fiftyone.utils.transformers.FiftyOneTransformerForDepthEstimation",
    "FiftyOneTransformerForDepthEstimation",
    "fiftyone.utils.transformers.FiftyOneTransformerForSemanticSegmentation",
    "FiftyOneTransformerForSemanticSegmentation",
];

/// FiftyOne's transformers depth estimator class names among
/// [`TRANSFORMERS_TYPES`].
const DEPTH_TYPES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneTransformerForDepthEstimation",
    "FiftyOneTransformerForDepthEstimation",
];

/// The Hugging Face repos of FiftyOne's built-in transformers depth
/// estimators whose architecture zoo builds (Depth Anything V2,
/// `zoo-torch-backend`'s `families/transformers`).
const NATIVE_DEPTH_REPOS: &[&str] = &[
    "depth-anything/Depth-Anything-V2-Small-hf",
    "depth-anything/Depth-Anything-V2-Base-hf",
    "depth-anything/Depth-Anything-V2-Large-hf",
];

/// FiftyOne's transformers feature extractor class names among
/// [`TRANSFORMERS_TYPES`] (`FiftyOneTransformer`: transformers' `AutoModel`).
const EMBEDDER_TYPES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneTransformer",
    "FiftyOneTransformer",
];

/// The Hugging Face repos of FiftyOne's built-in transformers feature
/// extractors whose architecture zoo builds (DINOv3, `zoo-torch-backend`'s
/// `families/transformers`).
const NATIVE_EMBEDDER_REPOS: &[&str] = &[
    "facebook/dinov3-vits16-pretrain-lvd1689m",
    "facebook/dinov3-vitb16-pretrain-lvd1689m",
    "facebook/dinov3-vitl16-pretrain-lvd1689m",
    "facebook/dinov3-vith16plus-pretrain-lvd1689m",
];

/// FiftyOne's transformers semantic segmenter class names among
/// [`TRANSFORMERS_TYPES`] (transformers' `AutoModelForSemanticSegmentation`).
const SEGMENTER_TYPES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneTransformerForSemanticSegmentation",
    "FiftyOneTransformerForSemanticSegmentation",
];

/// The Hugging Face repos of FiftyOne's built-in transformers semantic
/// segmenters whose architecture zoo builds (SegFormer, `zoo-torch-backend`'s
/// `families/transformers`), the generic entry's default
/// (`nvidia/segformer-b0-finetuned-ade-512-512`) included.
const NATIVE_SEGMENTER_REPOS: &[&str] = &[
    "nvidia/segformer-b0-finetuned-ade-512-512",
    "nvidia/segformer-b1-finetuned-ade-512-512",
    "nvidia/segformer-b2-finetuned-ade-512-512",
    "nvidia/segformer-b3-finetuned-ade-512-512",
    "nvidia/segformer-b4-finetuned-ade-512-512",
    "nvidia/segformer-b5-finetuned-ade-640-640",
];

/// FiftyOne's transformers zero-shot classifier class names among
/// [`TRANSFORMERS_TYPES`].
const ZERO_SHOT_TYPES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForImageClassification",
    "FiftyOneZeroShotTransformerForImageClassification",
];

/// The Hugging Face repos of FiftyOne's built-in transformers zero-shot
/// classifiers whose architecture zoo builds (CLIP as transformers writes
/// it, SigLIP and the fixed-resolution SigLIP 2, `zoo-torch-backend`'s
/// `families/transformers`), the generic entry's default
/// (`openai/clip-vit-large-patch14`) included.
const NATIVE_ZERO_SHOT_REPOS: &[&str] = &[
    "openai/clip-vit-large-patch14",
    "flaviagiammarino/pubmed-clip-vit-base-patch32",
    "suinleelab/monet",
    "google/siglip2-base-patch16-224",
    "google/medsiglip-448",
];

/// FiftyOne's transformers zero-shot detector class names among
/// [`TRANSFORMERS_TYPES`].
const ZERO_SHOT_DETECTION_TYPES: &[&str] = &[
    "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForObjectDetection",
    "FiftyOneZeroShotTransformerForObjectDetection",
];

/// The Hugging Face repos of FiftyOne's built-in transformers zero-shot
/// detectors whose architecture zoo builds (OWL-ViT, `zoo-torch-backend`'s
/// `families/transformers`), the generic entry's default
/// (`google/owlvit-base-patch32`) included.
const NATIVE_ZERO_SHOT_DETECTION_REPOS: &[&str] = &[
    "google/owlvit-base-patch32",
    "google/owlvit-base-patch16",
    "google/owlvit-large-patch14",
];

/// The Hugging Face repos of FiftyOne's built-in transformers classifiers
/// whose architecture zoo builds (ViT, ConvNeXt, EfficientNet and Swin V2,
/// `zoo-torch-backend`'s `families/transformers`).
const NATIVE_TRANSFORMERS_REPOS: &[&str] = &[
    "google/vit-base-patch16-224",
    "facebook/convnext-tiny-224",
    "facebook/convnext-small-224",
    "facebook/convnext-base-224",
    "facebook/convnext-large-224",
    "facebook/convnext-xlarge-224-22k-1k",
    "google/efficientnet-b0",
    "google/efficientnet-b1",
    "google/efficientnet-b2",
    "google/efficientnet-b3",
    "google/efficientnet-b4",
    "google/efficientnet-b5",
    "google/efficientnet-b6",
    "google/efficientnet-b7",
    "microsoft/swinv2-tiny-patch4-window8-256",
    "microsoft/swinv2-small-patch4-window8-256",
    "microsoft/swinv2-base-patch4-window8-256",
    "microsoft/swinv2-large-patch4-window12to16-192to256-22kto1k-ft",
];

/// Whether a transformers classifier config is one zoo runs natively: no
/// Python `model` or `entrypoint_fcn` of its own, and its repo
/// (`name_or_path`, else the class's default, [`crate::hub`]) is one of
/// [`NATIVE_TRANSFORMERS_REPOS`] (for a zero-shot class,
/// [`NATIVE_ZERO_SHOT_REPOS`]; for a zero-shot detector,
/// [`NATIVE_ZERO_SHOT_DETECTION_REPOS`]; for a feature extractor,
/// [`NATIVE_EMBEDDER_REPOS`]; for a depth estimator, [`NATIVE_DEPTH_REPOS`];
/// for a semantic segmenter, [`NATIVE_SEGMENTER_REPOS`]).
fn native_transformers(config: &DeploymentConfig) -> bool {
    let set = |key: &str| config.config.get(key).is_some_and(|value| !value.is_null());
    if set("model") || set("entrypoint_fcn") {
        return false;
    }
    let kind = config.kind.as_deref().unwrap_or_default();
    let repos = if ZERO_SHOT_TYPES.contains(&kind) {
        NATIVE_ZERO_SHOT_REPOS
    } else if ZERO_SHOT_DETECTION_TYPES.contains(&kind) {
        NATIVE_ZERO_SHOT_DETECTION_REPOS
    } else if EMBEDDER_TYPES.contains(&kind) {
        NATIVE_EMBEDDER_REPOS
    } else if DEPTH_TYPES.contains(&kind) {
        NATIVE_DEPTH_REPOS
    } else if SEGMENTER_TYPES.contains(&kind) {
        NATIVE_SEGMENTER_REPOS
    } else {
        NATIVE_TRANSFORMERS_REPOS
    };
    config_repo(config).is_some_and(|repo| repos.contains(&repo.as_str()))
}

/// FiftyOne's Ultralytics class names among [`NATIVE_TYPES`]: native only
/// for the checkpoints zoo builds ([`native_ultralytics`]); FiftyOne's
/// class runs the others (RT-DETR, YOLOE, YOLO-World).
const ULTRALYTICS_TYPES: &[&str] = &[
    "fiftyone.utils.ultralytics.FiftyOneYOLOModel",
    "FiftyOneYOLOModel",
];

/// FiftyOne's output processor for Ultralytics detectors.
const ULTRALYTICS_DETECTIONS: &str =
    "fiftyone.utils.ultralytics.UltralyticsDetectionOutputProcessor";

/// FiftyOne's output processor for Ultralytics classifiers.
const ULTRALYTICS_CLASSIFICATIONS: &str =
    "fiftyone.utils.ultralytics.UltralyticsClassificationOutputProcessor";

/// FiftyOne's output processor for Ultralytics pose models.
const ULTRALYTICS_KEYPOINTS: &str = "fiftyone.utils.ultralytics.UltralyticsPoseOutputProcessor";

/// FiftyOne's output processor for Ultralytics oriented box detectors.
const ULTRALYTICS_POLYLINES: &str = "fiftyone.utils.ultralytics.UltralyticsOBBOutputProcessor";

/// FiftyOne's output processor for Ultralytics instance segmenters.
const ULTRALYTICS_INSTANCES: &str =
    "fiftyone.utils.ultralytics.UltralyticsSegmentationOutputProcessor";

/// The scales of most generations.
const SCALES: &[&str] = &["n", "s", "m", "l", "x"];

/// The release checkpoints zoo builds natively, as `(prefix, suffix,
/// output processor, scales)` around the scale letter: YOLOv8 (`yolov8n.pt`),
/// YOLO11 (`yolo11n.pt`), YOLOv5u (`yolov5nu.pt`), YOLO26 (`yolo26n.pt`)
/// and YOLOv10 (`yolov10n.pt`) detection, YOLOv8 (`yolov8n-seg.pt`), YOLO11
/// (`yolo11n-seg.pt`) and YOLO26 (`yolo26n-seg.pt`) segmentation, YOLO26 (`yolo26n-cls.pt`)
/// classification, YOLO26 (`yolo26n-pose.pt`) pose and YOLOv8
/// (`yolov8n-obb.pt`) oriented boxes; YOLOv8 trained on Open Images V7
/// (`yolov8n-oiv7.pt`) is YOLOv8 detection with 601 classes; YOLOv9 at
/// scales `c` and `e`, detection (`yolov9c.pt`, `yolov9e.pt`: `CBLinear`
/// and `CBFuse`) and segmentation (`yolov9c-seg.pt`, `yolov9e-seg.pt`).
type NativeCheckpoint = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const NATIVE_CHECKPOINTS: &[NativeCheckpoint] = &[
    ("yolov8", ".pt", ULTRALYTICS_DETECTIONS, SCALES),
    ("yolo11", ".pt", ULTRALYTICS_DETECTIONS, SCALES),
    ("yolov5", "u.pt", ULTRALYTICS_DETECTIONS, SCALES),
    ("yolo26", ".pt", ULTRALYTICS_DETECTIONS, SCALES),
    ("yolov10", ".pt", ULTRALYTICS_DETECTIONS, SCALES),
    ("yolov9", ".pt", ULTRALYTICS_DETECTIONS, &["c", "e"]),
    ("yolov9", "-seg.pt", ULTRALYTICS_INSTANCES, &["c", "e"]),
    ("yolov8", "-seg.pt", ULTRALYTICS_INSTANCES, SCALES),
    ("yolo11", "-seg.pt", ULTRALYTICS_INSTANCES, SCALES),
    ("yolo26", "-seg.pt", ULTRALYTICS_INSTANCES, SCALES),
    ("yolo26", "-cls.pt", ULTRALYTICS_CLASSIFICATIONS, SCALES),
    ("yolo26", "-pose.pt", ULTRALYTICS_KEYPOINTS, SCALES),
    ("yolov8", "-obb.pt", ULTRALYTICS_POLYLINES, SCALES),
    ("yolov8", "-oiv7.pt", ULTRALYTICS_DETECTIONS, SCALES),
];

/// Whether an Ultralytics config is one zoo runs natively:
/// `entrypoint_args.model` one of [`NATIVE_CHECKPOINTS`] at scale `n`, `s`,
/// `m`, `l` or `x` (YOLOv9: `c` or `e`) with its output processor (`yolov8*-coco-torch`,
/// `yolo11*-coco-torch`, `yolov5*-coco-torch`, `yolo26*-coco-torch`,
/// `yolov10*-coco-torch`,
/// `yolov8*-seg-coco-torch`, `yolo11*-seg-coco-torch`, `yolo26*-seg-coco-torch`,
/// `yolo26*-cls-imagenet-torch`, `yolo26*-pose-coco-torch`,
/// `yolov8*-obb-dotav1-torch`, `yolov8*-oiv7-torch`, `yolov9{c,e}-coco-torch`,
/// `yolov9{c,e}-seg-coco-torch`).
fn native_ultralytics(config: &DeploymentConfig) -> bool {
    let processor = config
        .config
        .get("output_processor_cls")
        .and_then(Value::as_str);
    let weights = config
        .config
        .get("entrypoint_args")
        .and_then(|args| args.get("model"))
        .and_then(Value::as_str);
    weights.is_some_and(|weights| {
        NATIVE_CHECKPOINTS
            .iter()
            .any(|(prefix, suffix, native, scales)| {
                processor == Some(*native)
                    && weights
                        .strip_prefix(prefix)
                        .and_then(|rest| rest.strip_suffix(suffix))
                        .is_some_and(|scale| scales.contains(&scale))
            })
    })
}

/// FiftyOne's class for its legacy TensorFlow models (ETA's).
const TENSORFLOW_TYPE: &str = "fiftyone.utils.eta.ETAModel";

/// zoo's loader for FiftyOne's classes (`fiftyone_loader.py`), written into
/// the zoo dir as the `__init__.py` the model host runs.
const FIFTYONE_LOADER: &str = include_str!("fiftyone_loader.py");

/// The loader's folder in the zoo dir (versioned: a new loader gets a new
/// folder).
const FIFTYONE_LOADER_DIR: &str = ".fiftyone-loader-v1";

/// Which way a model is built, as far as can be known without running
/// anything (for `zoo models info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadPath {
    /// The manifest's deployment config, of a type zoo builds: zoo's native
    /// backend.
    Native,
    /// The manifest's deployment config names a class zoo does not build
    /// (Ultralytics, transformers, SAM, ...): FiftyOne's own class, in the
    /// model host, with the entry's `requirements` installed.
    FiftyOneClass,
    /// FiftyOne's legacy TensorFlow models (`fiftyone.utils.eta.ETAModel`):
    /// FiftyOne's class in the model host, with TensorFlow.
    FiftyOneTensorFlow,
    /// The source's Python `load_model`: the model host (or natively, when
    /// it returns a JSON config).
    PythonHost,
    /// An executable `load_model` that prints a config: natively.
    ExecutableHook,
    /// No config and no load hook: zoo cannot build it.
    Unavailable,
}

impl LoadPath {
    /// A short name: `native`, `python host`, `python host (TensorFlow)`,
    /// `native (config from an executable load hook)`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::PythonHost | Self::FiftyOneClass => "python host",
            Self::FiftyOneTensorFlow => "python host (TensorFlow)",
            Self::ExecutableHook => "native (config from an executable load hook)",
            Self::Unavailable => "none",
        }
    }
}

/// How a deployment config is built: natively when zoo builds its type (a
/// config without a type is left to the native backend, which names the
/// problem), else by FiftyOne's class in the model host.
pub fn config_load_path(config: &DeploymentConfig) -> LoadPath {
    match config.kind.as_deref() {
        None => LoadPath::Native,
        Some(kind) if ULTRALYTICS_TYPES.contains(&kind) => {
            if native_ultralytics(config) {
                LoadPath::Native
            } else {
                LoadPath::FiftyOneClass
            }
        }
        Some(kind) if TRANSFORMERS_TYPES.contains(&kind) => {
            if native_transformers(config) {
                LoadPath::Native
            } else {
                LoadPath::FiftyOneClass
            }
        }
        Some(kind) if NATIVE_TYPES.contains(&kind) => LoadPath::Native,
        Some(TENSORFLOW_TYPE) => LoadPath::FiftyOneTensorFlow,
        Some(_) => LoadPath::FiftyOneClass,
    }
}

/// `Ok` unless `model` is a remote source's whose deployment config names a
/// class zoo does not build: [`RegistryError::HostedClassNotWired`], naming
/// that class and the packages it needs. Built-in and custom-manifest
/// entries of such classes run through FiftyOne's class in the model host
/// ([`Registry::load_plan`]). Checked before anything is downloaded.
pub fn check_native(model: &ZooModel) -> Result<(), RegistryError> {
    let Some(config) = &model.model.default_deployment_config_dict else {
        return Ok(());
    };
    // Built-in and custom-manifest entries run through FiftyOne's class in
    // the model host; a remote source's manifest naming a class is not run
    // (the class would be imported from whatever the manifest names).
    if !matches!(model.origin, Origin::Source { .. }) {
        return Ok(());
    }
    match config_load_path(config) {
        LoadPath::FiftyOneClass | LoadPath::FiftyOneTensorFlow => {
            Err(RegistryError::HostedClassNotWired {
                model: model.name(),
                class: config.kind.clone().unwrap_or_default(),
                packages: model
                    .model
                    .requirements
                    .as_ref()
                    .map(|requirements| requirements.packages_for(false))
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            })
        }
        _ => Ok(()),
    }
}

/// Whether the `load_zoo_model` kwargs make a native transformers entry
/// another model: a `name_or_path` other than the repo zoo downloaded (the
/// generic `classification-transformer-torch` with `-k name_or_path=...`),
/// or a `model`/`entrypoint_fcn`. FiftyOne's class then runs it in the model
/// host, fetching that repo itself, as FiftyOne does.
fn leaves_the_downloaded_repo(config: &DeploymentConfig, overrides: &Map<String, Value>) -> bool {
    if config_load_path(config) != LoadPath::Native
        || !config
            .kind
            .as_deref()
            .is_some_and(|kind| TRANSFORMERS_TYPES.contains(&kind))
    {
        return false;
    }
    let mut effective = config.clone();
    for (key, value) in overrides {
        effective.config.insert(key.clone(), value.clone());
    }
    !native_transformers(&effective) || config_repo(&effective) != config_repo(config)
}

impl Registry {
    /// `<zoo dir>/.fiftyone-loader-v1/__init__.py`, written (atomically)
    /// unless it holds the loader already.
    fn fiftyone_loader(&self) -> Result<PathBuf, RegistryError> {
        let dir = self.root().join(FIFTYONE_LOADER_DIR);
        let init = dir.join("__init__.py");
        if fs_err::read(&init).ok().as_deref() != Some(FIFTYONE_LOADER.as_bytes()) {
            fs_err::create_dir_all(&dir)?;
            zoo_fs::ensure_inside(self.root(), &dir).map_err(|source| RegistryError::Escapes {
                action: "write zoo's FiftyOne loader".to_owned(),
                model: FIFTYONE_LOADER_DIR.to_owned(),
                source: Box::new(source),
            })?;
            zoo_fs::write_atomic(&init, FIFTYONE_LOADER.as_bytes())?;
        }
        Ok(init)
    }

    /// How to build `model`: its deployment config (an executable load
    /// hook runs here, trusted sources only), or its trusted source's
    /// Python `load_model` for the model host. `overrides` are the
    /// `load_zoo_model(name, **kwargs)` kwargs: they replace config values,
    /// and reach a hook's `load_model` as keyword arguments.
    pub fn load_plan(
        &self,
        model: &ZooModel,
        overrides: &Map<String, Value>,
    ) -> Result<LoadPlan, RegistryError> {
        if model.model.default_deployment_config_dict.is_none() {
            let source_dir = self.trusted_source_dir(model)?;
            if let Some(Hook::Python(init)) = hooks::find(&source_dir, HookKind::Load) {
                let paths = self.model_paths(model)?;
                self.check_paths(model, &paths, "run the load hook")?;
                return Ok(LoadPlan::Python(PythonLoad {
                    init,
                    model_name: model.name(),
                    model_path: paths.file,
                    python: self.config().python.clone(),
                    timeout: self.config().hook_timeout,
                    kwargs: Map::new(),
                    fiftyone_class: None,
                }));
            }
        }
        check_native(model)?;
        if let Some(config) = &model.model.default_deployment_config_dict
            && (matches!(
                config_load_path(config),
                LoadPath::FiftyOneClass | LoadPath::FiftyOneTensorFlow
            ) || leaves_the_downloaded_repo(config, overrides))
        {
            // FiftyOne's own class, as `load_zoo_model` builds it; the
            // user's kwargs reach `fom.load_model` as FiftyOne's do.
            let paths = self.model_paths(model)?;
            let deployment = self.deployment_config_of(model, &Map::new())?;
            let mut kwargs = Map::new();
            kwargs.insert(
                "zoo_deployment_config".to_owned(),
                serde_json::to_value(&deployment).unwrap_or_default(),
            );
            kwargs.insert(
                "zoo_pass_model_path".to_owned(),
                Value::Bool(model.model.base_filename.is_some()),
            );
            return Ok(LoadPlan::Python(PythonLoad {
                init: self.fiftyone_loader()?,
                model_name: model.name(),
                model_path: paths.file,
                python: self.config().python.clone(),
                timeout: self.config().hook_timeout,
                kwargs,
                fiftyone_class: deployment.kind.clone(),
            }));
        }
        Ok(LoadPlan::Config(
            self.deployment_config_of(model, overrides)?,
        ))
    }

    /// For a transformers entry zoo builds natively (ViT, ConvNeXt, CLIP,
    /// DINOv3 ... and the generic `classification-transformer-torch`), the
    /// other Hub repo its `load_zoo_model` kwargs name (`name_or_path`, with
    /// `revision`), when they name one other than the entry's own and no
    /// Python `model` or `entrypoint_fcn`. FiftyOne's class would fetch that
    /// repo when loading; zoo fetches it ([`Registry::fetch_other_repo`])
    /// and builds it natively when its architecture is one zoo builds.
    pub fn other_repo(
        &self,
        model: &ZooModel,
        overrides: &Map<String, Value>,
    ) -> Option<OtherRepo> {
        let deployment = model.model.default_deployment_config_dict.as_ref()?;
        let kind = deployment.kind.as_deref()?;
        if !TRANSFORMERS_TYPES.contains(&kind) || config_load_path(deployment) != LoadPath::Native {
            return None;
        }
        let mut config = deployment.clone();
        for (key, value) in overrides {
            config.config.insert(key.clone(), value.clone());
        }
        let set = |key: &str| config.config.get(key).is_some_and(|value| !value.is_null());
        if set("model") || set("entrypoint_fcn") {
            return None;
        }
        let repo = config_repo(&config)?;
        let revision = config_revision(&config);
        if hub_plan(model).is_some_and(|own| own.repo == repo && own.revision == revision) {
            return None;
        }
        Some(OtherRepo {
            config,
            repo,
            revision,
        })
    }

    /// Which way `model` is built (see [`LoadPath`]); runs nothing.
    pub fn load_path(&self, model: &ZooModel) -> LoadPath {
        if let Some(config) = &model.model.default_deployment_config_dict {
            return config_load_path(config);
        }
        if !matches!(model.origin, Origin::Source { .. }) {
            return LoadPath::Unavailable;
        }
        let Ok(paths) = self.model_paths(model) else {
            return LoadPath::Unavailable;
        };
        match hooks::find(&paths.dir, HookKind::Load) {
            Some(Hook::Python(_)) => LoadPath::PythonHost,
            Some(Hook::Executable(_)) => LoadPath::ExecutableHook,
            None => LoadPath::Unavailable,
        }
    }

    /// A config that a hosted `load_model` returned, as a deployment
    /// config with `overrides` applied.
    pub fn config_from_hook(
        &self,
        model: &ZooModel,
        value: Value,
        overrides: &Map<String, Value>,
    ) -> Result<DeploymentConfig, RegistryError> {
        let text = value.to_string();
        let value = hooks::parse_config(&text, "load_model", &model.name())?;
        let mut config: DeploymentConfig =
            serde_json::from_value(value).map_err(|err| RegistryError::BadLoadConfig {
                hook: "load_model".to_owned(),
                model: model.name(),
                message: err.to_string(),
            })?;
        for (key, value) in overrides {
            config.config.insert(key.clone(), value.clone());
        }
        Ok(config)
    }
}
