//! `TorchImageModel`: FiftyOne's torch image model on libtorch.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ndarray::{Array1, Array2};
use tch::{CModule, Device, IValue, Kind, Tensor, nn::VarStore};
use zoo_model_core::{Input, InputData, Model, ModelError, ModelSpec, Prediction, Preprocess};
use zoo_output_processors::{
    Classifier, Detector, DetectorOutput, InstanceSegmenter, KeypointDetector, ProcessorKind,
    SemanticSegmenter,
};

use crate::checkpoint::weights::{load_file_into, load_into, read_named_tensors};
use crate::config::{KeypointSkeleton, MAX_CLASSES, TorchImageModelConfig};
use crate::device::DeviceSpec;
use crate::families::{self, BuildOptions, Task};
use crate::net::Network;
use crate::preprocess::Preprocessing;

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

/// FiftyOne's `entrypoint_fcn` for a TorchScript file.
const TORCH_JIT_LOAD: &str = "torch.jit.load";

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
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Processor {
    /// The output processor `output_processor_cls` names, built from the
    /// config as FiftyOne's `output_processor_cls(classes=classes,
    /// **output_processor_args)` is; FiftyOne passes `confidence_thresh` and
    /// `filter_classes` to it on every call.
    fn new(config: &TorchImageModelConfig, classes: &[String]) -> Result<Self, ModelError> {
        let threshold = config.confidence_thresh;
        let filter_classes = config.filter_classes.clone();
        let args = &config.output_processor_args;
        let detector = |confidence_thresh| Detector {
            classes: classes.to_vec(),
            confidence_thresh,
            filter_classes: filter_classes.clone(),
        };
        Ok(match config.output_processor()? {
            None => Processor::Raw,
            Some(ProcessorKind::Classifier) => Processor::Classifier(Classifier {
                classes: classes.to_vec(),
                store_logits: false,
                confidence_thresh: threshold,
                filter_classes: filter_classes.clone(),
            }),
            Some(ProcessorKind::SemanticSegmenter) => Processor::Segmenter {
                segmenter: SemanticSegmenter {
                    no_background_cls: args.no_background_cls.unwrap_or(false),
                    confidence_thresh: threshold,
                },
                softmax: !args.has_softmax_out.unwrap_or(true),
            },
            Some(ProcessorKind::Detector) => {
                Processor::Detector(detector(args.confidence_thresh.or(threshold)))
            }
            Some(ProcessorKind::InstanceSegmenter) => {
                Processor::InstanceSegmenter(InstanceSegmenter {
                    detector: detector(threshold),
                    mask_thresh: args.mask_thresh.unwrap_or(0.5),
                })
            }
            Some(ProcessorKind::KeypointDetector) => {
                Processor::KeypointDetector(KeypointDetector {
                    detector: detector(threshold),
                })
            }
        })
    }
}

/// The native detector `entrypoint_fcn` names, if it names one: its name
/// (the last dotted part) and family.
fn native_detector(entrypoint: &str) -> Option<(&str, &'static families::Family)> {
    let name = entrypoint.rsplit('.').next().unwrap_or(entrypoint);
    families::find(name)
        .filter(|family| family.is_detector())
        .map(|family| (name, family))
}

/// `255`, the mean and the standard deviation of `preprocessing` as
/// `[1, 3, 1, 1]` tensors on `device`, for inputs that arrive as pixels.
fn normalisation(preprocessing: &Preprocessing, device: Device) -> Result<[Tensor; 3], ModelError> {
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
    Ok([
        on_device([255.0; 3])?,
        on_device(preprocessing.mean)?,
        on_device(preprocessing.std)?,
    ])
}

/// What loading a network needs: the config and what
/// [`TorchImageModel::from_spec`] resolved from it.
struct Load<'a> {
    config: &'a TorchImageModelConfig,
    classes: &'a [String],
    model_path: &'a Path,
    device: Device,
    half: bool,
}

impl Load<'_> {
    /// An architecture is built for at most [`MAX_CLASSES`] classes.
    fn check_class_count(&self) -> Result<(), ModelError> {
        if self.classes.len() > MAX_CLASSES {
            return Err(config_error(format!(
                "the config lists {} classes; zoo builds architectures for at most {MAX_CLASSES}",
                self.classes.len()
            )));
        }
        Ok(())
    }

    /// Native detector `name` (of `family`, named by `entrypoint`), which
    /// `processor` must fit, with its weights, folded.
    fn detector(
        &self,
        entrypoint: &str,
        name: &str,
        family: &families::Family,
        processor: &Processor,
    ) -> Result<Net, ModelError> {
        let (masks, keypoints) = match family.task {
            Task::Detector { masks, keypoints } => (masks, keypoints),
            Task::Classifier
            | Task::Segmenter
            | Task::Hub { .. }
            | Task::Ultralytics
            | Task::Transformers
            | Task::TransformersZeroShot
            | Task::TransformersZeroShotDetector
            | Task::TransformersEmbedder
            | Task::TransformersDepth
            | Task::TransformersSegmenter => (false, false),
        };
        let fits = match processor {
            Processor::Detector(_) => true,
            Processor::InstanceSegmenter(_) => masks,
            Processor::KeypointDetector(_) => keypoints,
            Processor::Classifier(_) | Processor::Segmenter { .. } | Processor::Raw => false,
        };
        if !fits {
            let processor_name = self.config.output_processor_cls.as_deref().unwrap_or("");
            return Err(config_error(format!(
                "`{entrypoint}` cannot feed `{processor_name}`: a detector takes `fiftyone.utils.torch.DetectorOutputProcessor` (Mask R-CNN also `InstanceSegmenterOutputProcessor`, Keypoint R-CNN also `KeypointDetectorOutputProcessor`)"
            )));
        }
        let mut store = VarStore::new(self.device);
        let outputs = if self.classes.is_empty() {
            91
        } else {
            self.classes.len() as i64
        };
        self.check_class_count()?;
        let mut detector = family
            .build_detector(
                name,
                &store.root(),
                outputs,
                self.config.entrypoint_args.as_ref(),
            )
            .ok_or_else(|| config_error(format!("unknown detector `{entrypoint}`")))?
            .map_err(config_error)?;
        load_file_into(&mut store, self.model_path, &|key| family.renames.name(key))
            .map_err(|err| config_error(chain(&err)))?;
        detector.fold().map_err(|err| {
            ModelError::inference(format!("folding the batch norms of `{name}` failed: {err}"))
        })?;
        Ok(Net::Detection {
            _store: store,
            detector: Box::new(detector),
        })
    }

    /// The classifier, segmenter or hub network `entrypoint` names, with its
    /// weights (folded where its family folds), and its name.
    fn architecture(&self, entrypoint: &str) -> Result<(String, Net), ModelError> {
        let args = self.config.entrypoint_args.as_ref();
        let name = families::hub::architecture(entrypoint, args)?;
        self.check_class_count()?;
        let mut store = VarStore::new(self.device);
        let unsupported = |err: families::UnknownArchitecture| {
            ModelError::unsupported(format!("`{entrypoint}`: {err}"))
        };
        let family = families::family(name).map_err(unsupported)?;
        let outputs = if family.task == Task::Segmenter {
            self.config.segmenter_classes()?
        } else if self.classes.is_empty() {
            1000
        } else {
            self.classes.len() as i64
        };
        // MNASNet 0.5's checkpoint is read first: torchvision adapts its
        // stem to the checkpoint's version. Other checkpoints are read after
        // the network is built, each tensor copied into it as it is read (no
        // second copy of the weights in memory).
        let options = BuildOptions::new(name, args);
        let (options, tensors) = if BuildOptions::depends_on_checkpoint(name) {
            let tensors =
                read_named_tensors(self.model_path).map_err(|err| config_error(chain(&err)))?;
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
        if let Some(layer) = &self.config.embeddings_layer
            && network.embeddings_layer != Some(layer.as_str())
        {
            tracing::warn!(
                layer,
                entrypoint,
                "embeddings_layer not available for this architecture; embeddings disabled"
            );
        }
        match tensors {
            Some(tensors) => load_into(&mut store, family.renames.names(tensors), self.model_path),
            None => load_file_into(&mut store, self.model_path, &|key| family.renames.name(key)),
        }
        .map_err(|err| config_error(chain(&err)))?;
        let kind = if self.half { Kind::Half } else { Kind::Float };
        let net = match family.build_folded(name, store.variables(), kind, options) {
            Some(network) => Net::Vision {
                store: None,
                network,
            },
            None => {
                if self.half {
                    store.half();
                }
                Net::Vision {
                    store: Some(store),
                    network,
                }
            }
        };
        Ok((name.to_owned(), net))
    }

    /// The TorchScript module the weights file holds (no `entrypoint_fcn`),
    /// and its file name.
    fn script(&self, path: &Path) -> Result<(String, Net), ModelError> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |file| file.to_string_lossy().into_owned(),
        );
        let mut module = CModule::load_on_device(path, self.device).map_err(|err| {
            config_error(format!(
                "cannot load TorchScript `{}`: {err}",
                path.display()
            ))
        })?;
        module.set_eval();
        if self.half {
            // Inputs arrive in half precision (`batch`), so the parameters
            // must too, as FiftyOne's `model.half()`.
            module.to(self.device, Kind::Half, false);
        }
        let net = Net::Script {
            module,
            embed_method: self.config.embeddings_layer.clone(),
        };
        Ok((name, net))
    }
}

impl TorchImageModel {
    /// Builds the model a spec describes: reads its config
    /// ([`TorchImageModelConfig`]: the Python-only fields refused, every
    /// field checked), then builds the output processor and the network and
    /// loads the weights.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::device::tune_allocator();
        cpu_threads();
        let config = TorchImageModelConfig::for_native_model(&spec.config)?;
        let device = config
            .device
            .as_deref()
            .unwrap_or("")
            .parse::<DeviceSpec>()
            .and_then(DeviceSpec::resolve)
            .map_err(|err| config_error(err.to_string()))?;
        // FiftyOne's way to run a TorchScript file is `entrypoint_fcn:
        // torch.jit.load` with the file in `entrypoint_args` `f`.
        let model_path = if config.entrypoint_fcn.as_deref() == Some(TORCH_JIT_LOAD) {
            config.script_file(spec.model_path.as_deref())?
        } else {
            config.model_path(spec.model_path.as_deref())?
        };
        let weights_bytes = fs_err::metadata(&model_path).map_or(0, |meta| meta.len());
        let classes = config.class_names()?;
        let preprocessing = config.preprocessing(device.is_cuda());
        let processor = Processor::new(&config, &classes)?;
        let detector = config.entrypoint_fcn.as_deref().and_then(native_detector);
        // Detectors run in f32 (torchvision's box arithmetic and NMS in
        // half precision would not give FiftyOne's detections).
        let half =
            config.use_half_precision == Some(true) && device.is_cuda() && detector.is_none();
        let load = Load {
            config: &config,
            classes: &classes,
            model_path: &model_path,
            device,
            half,
        };
        let (name, net) = match (config.entrypoint_fcn.as_deref(), detector) {
            (Some(entrypoint), Some((name, family))) => (
                name.to_owned(),
                load.detector(entrypoint, name, family, &processor)?,
            ),
            (Some(TORCH_JIT_LOAD), None) => load.script(&model_path)?,
            (Some(entrypoint), None) => load.architecture(entrypoint)?,
            (None, _) => load.script(&model_path)?,
        };
        let normalise = if preprocessing.pixels {
            Some(normalisation(&preprocessing, device)?)
        } else {
            None
        };
        let model = Self {
            name,
            net,
            device,
            half,
            normalise,
            search: config.cudnn_benchmark.unwrap_or(false),
            shapes: Mutex::new(Vec::new()),
            ragged: config
                .ragged_batches
                .unwrap_or(preprocessing.size.is_none()),
            preprocessing: Arc::new(preprocessing),
            processor,
            skeleton: config.skeleton,
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

/// One image's output of a TorchScript detector.
struct ScriptDetections {
    boxes: Array2<f32>,
    labels: Array1<i64>,
    scores: Array1<f32>,
    /// `[N, 1, H, W]` (or `[N, H, W]`) mask probabilities, if it gave any.
    masks: Option<Tensor>,
}

impl ScriptDetections {
    /// The processors' view, boxes in `input`'s pixels.
    fn output(&self, input: &Input) -> DetectorOutput<'_> {
        DetectorOutput {
            boxes: self.boxes.view(),
            labels: self.labels.view(),
            scores: self.scores.view(),
            image_size: (input.shape[2] as u32, input.shape[1] as u32),
        }
    }

    /// The masks as `[N, height, width]`: one per box, at the input's size.
    fn masks(
        &self,
        model: &str,
        height: usize,
        width: usize,
    ) -> Result<ndarray::Array3<f32>, ModelError> {
        let Some(masks) = &self.masks else {
            return Err(ModelError::inference(format!(
                "`{model}` gives no `masks` for `InstanceSegmenterOutputProcessor`"
            )));
        };
        let count = self.boxes.nrows();
        let masks = masks
            .f_to_kind(Kind::Float)
            .and_then(|masks| masks.f_to_device(Device::Cpu))
            .map_err(|error| ModelError::inference(format!("`{model}`'s masks: {error}")))?;
        let size = masks.size();
        let fits = match size.as_slice() {
            [n, 1, h, w] | [n, h, w] => {
                *n as usize == count && *h as usize == height && *w as usize == width
            }
            _ => false,
        };
        if !fits {
            return Err(ModelError::inference(format!(
                "`{model}` returned masks of shape {size:?}; for {count} boxes on a {height}x{width} input they must be [{count}, 1, {height}, {width}]"
            )));
        }
        let masks = masks
            .f_reshape([count as i64, height as i64, width as i64])
            .map_err(|error| ModelError::inference(format!("`{model}`'s masks: {error}")))?;
        to_array3(&masks)
    }
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
                Net::Script { module, .. } => self
                    .script_detections(module, inputs, &batch)?
                    .into_iter()
                    .zip(inputs)
                    .map(|(found, input)| {
                        let (height, width) = (input.shape[1], input.shape[2]);
                        let masks = found.masks(&self.name, height, width)?;
                        let output = found.output(input);
                        Ok(Prediction::Label(Some(segmenter.process_with(
                            &output,
                            (height, width),
                            |k, row, column| masks.get((k, row, column)).copied().unwrap_or(0.0),
                        ))))
                    })
                    .collect(),
                _ => Err(ModelError::unsupported(
                    "instance segmenters run natively (Mask R-CNN) or as TorchScript".into(),
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
                self.script_detections(module, inputs, &batch)?
                    .into_iter()
                    .zip(inputs)
                    .map(|(found, input)| {
                        Ok(Prediction::Label(Some(
                            detector.process(&found.output(input)),
                        )))
                    })
                    .collect()
            }
        })
    }

    /// A TorchScript detector's outputs on `batch`, one per image. The
    /// module gets the stacked batch, as FiftyOne's `TorchImageModel` feeds
    /// it; one typed for a list of images (torchvision's scripted
    /// detectors) gets the list. It returns a list of dicts (or, scripted
    /// torchvision, a `(losses, detections)` tuple) with `boxes` (pixels,
    /// xyxy), `labels`, `scores` and, for instance segmenters, `masks`.
    fn script_detections(
        &self,
        module: &CModule,
        inputs: &[Input],
        batch: &Tensor,
    ) -> Result<Vec<ScriptDetections>, ModelError> {
        let failed = |error: tch::TchError| {
            let shape = inputs.first().map_or([0; 3], |input| input.shape);
            self.forward_error(shape, inputs.len(), &error)
        };
        let output = match module.forward_is(&[IValue::Tensor(batch.shallow_clone())]) {
            Ok(output) => output,
            Err(stacked) => {
                let images: Vec<Tensor> = (0..inputs.len() as i64)
                    .map(|index| batch.f_get(index))
                    .collect::<Result<_, _>>()
                    .map_err(failed)?;
                module
                    .forward_is(&[IValue::TensorList(images)])
                    .map_err(|listed| {
                        failed(tch::TchError::Torch(format!(
                            "{listed} (and given the stacked batch: {stacked})"
                        )))
                    })?
            }
        };
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
        if list.len() != inputs.len() {
            return Err(ModelError::inference(format!(
                "`{}` returned {} results for {} images",
                self.name,
                list.len(),
                inputs.len()
            )));
        }
        list.into_iter()
            .map(|item| {
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
                let labels =
                    Vec::<i64>::try_from(vector("labels", Kind::Int64)?).map_err(failed)?;
                let scores =
                    Vec::<f32>::try_from(vector("scores", Kind::Float)?).map_err(failed)?;
                // The processor reads four coordinates per box.
                if boxes.nrows() > 0 && boxes.ncols() != 4 {
                    return Err(ModelError::inference(format!(
                        "`{}` returned boxes of {} coordinates; a detector returns [x1, y1, x2, y2] boxes",
                        self.name,
                        boxes.ncols(),
                    )));
                }
                if labels.len() != boxes.nrows() || scores.len() != boxes.nrows() {
                    return Err(ModelError::inference(format!(
                        "`{}` returned {} boxes, {} labels and {} scores",
                        self.name,
                        boxes.nrows(),
                        labels.len(),
                        scores.len()
                    )));
                }
                let masks = dict_tensor(&dict, "masks").ok();
                Ok(ScriptDetections {
                    boxes,
                    labels: Array1::from(labels),
                    scores: Array1::from(scores),
                    masks,
                })
            })
            .collect()
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
    use super::{cpu_threads, share_cpu_threads};

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
}
