//! libtorch image models for zoo, through tch.
//!
//! This is the only crate that links libtorch. It builds FiftyOne's
//! `TorchImageModel` / `TorchvisionImageModel` from deployment configs:
//! torchvision architectures named by `entrypoint_fcn` with weights read
//! from PyTorch `.pth` state dicts (a small unpickler, no Python), or
//! TorchScript files; preprocessing reproduces FiftyOne's (Pillow's bilinear
//! resize, bit for bit); outputs go through `zoo-output-processors`.
//!
//! Weights files, configs and images are hostile input: every number a
//! weights file gives is checked before use (`weights.rs`), unpickling is
//! bounded (`pickle.rs`), config sizes are validated, and every forward is
//! fallible, so a bad file or config is an error naming it and a libtorch
//! error fails one batch, never the process.
//!
//! ```no_run
//! let mut factory = zoo_model_core::ModelFactory::new();
//! zoo_torch_backend::register(&mut factory);
//! assert!(factory.types().contains(&"fiftyone.utils.torch.TorchImageModel"));
//! ```

mod checkpoint;
mod clip;
mod clip_model;
mod clip_tokenizer;
mod config;
mod device;
mod families;
mod memory;
mod model;
mod net;
mod preprocess;
mod transformers_depth;
mod transformers_embedder;
mod transformers_model;
mod transformers_segmenter;
mod transformers_spec;
mod yolo_model;
mod zero_shot_detector;
mod zero_shot_model;

pub use checkpoint::pickle::PickleError;
pub use checkpoint::weights::{TensorError, WeightsError, load_into, read_named_tensors};
pub use clip::ClipModel;
pub use clip_model::{CLIP_TYPE_NAMES, TorchClipModel};
pub use clip_tokenizer::{ClipTokenizer, TokenizerError};
pub use config::{IMAGENET_LABELS, KeypointSkeleton, VOC_LABELS, class_names, mask_targets};
pub use device::{DeviceError, DeviceSpec, RuntimeInfo, load_cuda, tune_allocator};
pub use families::yolo::{
    ArchitectureError as YoloArchitectureError, Detection as YoloDetection, PixelDetection,
    PixelKeypoints, PixelMask, YoloDetector, YoloError,
};
pub use model::{TYPE_NAMES, TorchImageModel};
pub use preprocess::{MAX_IMAGE_SIDE, Preprocessing, resize_bilinear};
pub use transformers_depth::{DEPTH_TYPE_NAMES, TorchTransformerDepthModel};
pub use transformers_embedder::{EMBEDDER_TYPE_NAMES, TorchTransformerEmbedder};
pub use transformers_model::{TRANSFORMERS_TYPE_NAMES, TorchTransformerModel};
pub use transformers_segmenter::{SEGMENTER_TYPE_NAMES, TorchTransformerSegmenter};
pub use yolo_model::{TorchYoloModel, YOLO_TYPE_NAMES};
pub use zero_shot_detector::{TorchZeroShotTransformerDetector, ZERO_SHOT_DETECTOR_TYPE_NAMES};
pub use zero_shot_model::{TorchZeroShotTransformerModel, ZERO_SHOT_TYPE_NAMES};

/// The parameter names and shapes of a torchvision architecture as zoo
/// builds it (`entrypoint` as in `entrypoint_fcn`), for checking weights.
pub fn parameter_shapes(entrypoint: &str, classes: i64) -> Option<Vec<(String, Vec<i64>)>> {
    let name = entrypoint.rsplit('.').next().unwrap_or(entrypoint);
    let store = tch::nn::VarStore::new(tch::Device::Cpu);
    let family = families::find(name)?;
    if family.is_detector() {
        family
            .build_detector(name, &store.root(), classes, None)?
            .ok()?;
    } else {
        family.build(name, &store.root(), classes, Default::default())?;
    }
    let mut shapes: Vec<(String, Vec<i64>)> = store
        .variables()
        .into_iter()
        .map(|(name, tensor)| (name, tensor.size()))
        .collect();
    shapes.sort();
    Some(shapes)
}

/// Loads a state dict's `tensors` (as [`read_named_tensors`] gives them,
/// `path` naming their file in errors) into torchvision architecture
/// `entrypoint` built as torchvision's builder builds it for
/// `entrypoint_args` (FiftyOne's config field), after the renames
/// torchvision's loader applies to hosted checkpoints (DenseNet's legacy
/// names; Inception v3's, GoogLeNet's and the segmenters' auxiliary
/// classifiers are dropped; MNASNet's version-1 stem). Classifiers are
/// built for 1000 classes, segmenters for 21. This is the
/// check a model's load runs; an error names the tensors that do not fit.
pub fn load_state_dict(
    entrypoint: &str,
    entrypoint_args: Option<&serde_json::Value>,
    tensors: Vec<(String, tch::Tensor)>,
    path: &std::path::Path,
) -> Result<(), WeightsError> {
    let name = entrypoint.rsplit('.').next().unwrap_or(entrypoint);
    let mut store = tch::nn::VarStore::new(tch::Device::Cpu);
    let unknown = || WeightsError::Read {
        path: path.display().to_string(),
        message: format!("unknown architecture `{entrypoint}`"),
    };
    let family = families::family(name).map_err(|err| WeightsError::Read {
        path: path.display().to_string(),
        message: err.to_string(),
    })?;
    if family.is_detector() {
        // A detector's class count is the checkpoint's (COCO: 91).
        let classes = tensors
            .iter()
            .find(|(key, _)| key == "roi_heads.box_predictor.cls_score.weight")
            .and_then(|(_, tensor)| tensor.size().first().copied())
            .filter(|classes| *classes > 0)
            .unwrap_or(91);
        family
            .build_detector(name, &store.root(), classes, entrypoint_args)
            .ok_or_else(unknown)?
            .map_err(|message| WeightsError::Read {
                path: path.display().to_string(),
                message,
            })?;
    } else {
        let options =
            families::BuildOptions::new(name, entrypoint_args).for_checkpoint(name, &tensors);
        let classes = if family.task == families::Task::Segmenter {
            families::segmentation::SEGMENTER_CLASSES
        } else {
            1000
        };
        family
            .build(name, &store.root(), classes, options)
            .ok_or_else(unknown)?;
    }
    load_into(&mut store, family.renames.names(tensors), path)
}

/// Writes untrained weights for a torchvision architecture to `path`
/// (safetensors): Kaiming-normal convolutions and linear layers, BatchNorm
/// at identity, like torchvision's own initialisation, from `seed`.
/// For demonstrations and tests where the real weights cannot be fetched.
pub fn write_untrained_weights(
    entrypoint: &str,
    path: &std::path::Path,
    seed: i64,
) -> Result<(), WeightsError> {
    let failure = |message: String| WeightsError::Read {
        path: path.display().to_string(),
        message,
    };
    let shapes = parameter_shapes(entrypoint, 1000)
        .ok_or_else(|| failure(format!("unknown architecture `{entrypoint}`")))?;
    tch::manual_seed(seed);
    let tensors: Vec<(String, tch::Tensor)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let tensor = if name.ends_with("running_var")
                || (shape.len() == 1 && name.ends_with("weight"))
            {
                tch::Tensor::ones(shape.as_slice(), tch::kind::FLOAT_CPU)
            } else if shape.len() == 1 {
                tch::Tensor::zeros(shape.as_slice(), tch::kind::FLOAT_CPU)
            } else {
                let fan_out = shape[0] * shape[2..].iter().product::<i64>();
                tch::Tensor::randn(shape.as_slice(), tch::kind::FLOAT_CPU)
                    * (2.0 / fan_out as f64).sqrt()
            };
            (name, tensor)
        })
        .collect();
    tch::Tensor::write_safetensors(&tensors, path).map_err(|err| failure(err.to_string()))
}

/// Registers the torch model types with `factory`.
pub fn register(factory: &mut zoo_model_core::ModelFactory) {
    factory.register(TYPE_NAMES, |spec| {
        Ok(Box::new(TorchImageModel::from_spec(spec)?))
    });
    factory.register(CLIP_TYPE_NAMES, |spec| {
        Ok(Box::new(TorchClipModel::from_spec(spec)?))
    });
    factory.register(YOLO_TYPE_NAMES, |spec| {
        Ok(Box::new(TorchYoloModel::from_spec(spec)?))
    });
    factory.register(TRANSFORMERS_TYPE_NAMES, |spec| {
        Ok(Box::new(TorchTransformerModel::from_spec(spec)?))
    });
    factory.register(ZERO_SHOT_TYPE_NAMES, |spec| {
        Ok(Box::new(TorchZeroShotTransformerModel::from_spec(spec)?))
    });
    factory.register(ZERO_SHOT_DETECTOR_TYPE_NAMES, |spec| {
        Ok(Box::new(TorchZeroShotTransformerDetector::from_spec(spec)?))
    });
    factory.register(EMBEDDER_TYPE_NAMES, |spec| {
        Ok(Box::new(TorchTransformerEmbedder::from_spec(spec)?))
    });
    factory.register(DEPTH_TYPE_NAMES, |spec| {
        Ok(Box::new(TorchTransformerDepthModel::from_spec(spec)?))
    });
    factory.register(SEGMENTER_TYPE_NAMES, |spec| {
        Ok(Box::new(TorchTransformerSegmenter::from_spec(spec)?))
    });
}

/// The libtorch runtime, as the application layer (`zoo`) takes it: the
/// torch model types and what libtorch sees of the machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct TorchRuntime;

impl zoo_model_core::Runtime for TorchRuntime {
    fn system_info(&self) -> zoo_model_core::SystemInfo {
        let info = RuntimeInfo::detect();
        zoo_model_core::SystemInfo {
            cuda_available: info.cuda_available,
            cuda_devices: info.cuda_devices,
            cudnn_available: info.cudnn_available,
            threads: info.threads,
            mkl: info.mkl,
        }
    }

    fn factory(&self) -> zoo_model_core::ModelFactory {
        let mut factory = zoo_model_core::ModelFactory::new();
        register(&mut factory);
        factory
    }
}
