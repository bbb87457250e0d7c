//! The YOLOv5u, YOLOv8, YOLOv9c/e, YOLOv10, YOLO11 and YOLO26 detection (and
//! YOLOv8, YOLOv9c/e, YOLO11 and YOLO26 segmentation, YOLO26 classification
//! and pose, YOLOv8 oriented boxes) networks, built from an Ultralytics checkpoint's `yaml` as Ultralytics' `parse_model` builds it (rows `[from, repeats,
//! module, args]`, depths and widths from `scales[scale]`), with each
//! layer's hyperparameters (strides, paddings, batch norm `eps`,
//! activations, SPPF's pooling) read from the pickled module tree and its
//! weights from the tree's tensors. `Conv` + `BatchNorm2d` pairs are fused
//! at load as Ultralytics' `fuse()` fuses them (PyTorch's
//! `fuse_conv_bn_weights`, in `f32`), which is what FiftyOne's predictor
//! runs.

use std::collections::HashMap;

use serde_json::Value as Json;
use tch::{Kind, TchError, Tensor};

use crate::checkpoint::modules::{Module, ModuleCheckpoint};

mod blocks;
mod conv;
mod head;

use blocks::{C2Psa, C2f, C3, Elan};
use conv::Conv;
pub(crate) use head::{Classify, Detect, HeadOutput};

/// The most layers a YOLO yaml may list (YOLOv8 has 23).
const MAX_LAYERS: usize = 1000;

/// The most repeats a layer may have after depth scaling (YOLOv5x has 12).
const MAX_REPEATS: i64 = 100;

/// The most channels a layer may have (YOLOv8x has 640).
const MAX_CHANNELS: f64 = 65_536.0;

/// Why a checkpoint's network could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchitectureError {
    /// The yaml, the module tree or the tensors do not describe a YOLO
    /// detection network zoo builds.
    #[error("not a YOLO network zoo builds: {0}")]
    Unsupported(String),
    /// libtorch failed while fusing the weights.
    #[error("libtorch failed while building the network")]
    Torch(#[from] TchError),
}

fn unsupported(message: impl Into<String>) -> ArchitectureError {
    ArchitectureError::Unsupported(message.into())
}

/// One layer of the network.
#[derive(Debug)]
enum Layer {
    Conv(Conv),
    /// `C2f` and `C3k2`.
    C2f(C2f),
    /// `C3`.
    C3(C3),
    /// `C2PSA` and `PSA`.
    C2Psa(C2Psa),
    /// Convolutions in a row (`SCDown`).
    Convs(Vec<Conv>),
    /// YOLOv9's `RepNCSPELAN4`.
    Elan(Box<Elan>),
    /// YOLOv9's `ADown`.
    ADown([Conv; 2]),
    /// `nn.Identity` (YOLOv9e's first layer; `Silence` in older
    /// checkpoints): its input.
    Identity,
    /// YOLOv9e's `CBLinear`: a plain `Conv2d` whose output is split along
    /// the channels into pieces of `widths` (kept whole: only `CBFuse`
    /// reads it, a piece at a time).
    CbLinear {
        conv: Conv,
        widths: Vec<i64>,
    },
    /// YOLOv9e's `CBFuse`: of each `CBLinear` input but the last a piece
    /// (`(first channel, channels)`), resized (nearest) to the last
    /// input's size, and the sum of them all and the last input.
    CbFuse {
        pieces: Vec<(i64, i64)>,
    },
    /// `SPPF`: `cv1`, `repeats` max-pools, concatenated into `cv2`.
    Sppf {
        cv1: Conv,
        cv2: Conv,
        kernel: i64,
        stride: i64,
        padding: i64,
        repeats: i64,
        add: bool,
    },
    /// `nn.Upsample(scale_factor, mode="nearest")`.
    Upsample {
        scale: f64,
    },
    /// `Concat` along `dimension`.
    Concat {
        dimension: i64,
    },
    /// The `Detect` head.
    Detect(Box<Detect>),
    /// The `Classify` head.
    Classify(Box<Classify>),
}

impl Layer {
    /// Every convolution weight with channels-last strides.
    fn make_channels_last(&mut self) {
        match self {
            Layer::Conv(conv) => conv.make_channels_last(),
            Layer::C2f(block) => block
                .convs_mut()
                .into_iter()
                .for_each(Conv::make_channels_last),
            Layer::C3(block) => block
                .convs_mut()
                .into_iter()
                .for_each(Conv::make_channels_last),
            Layer::C2Psa(block) => block
                .convs_mut()
                .into_iter()
                .for_each(Conv::make_channels_last),
            Layer::Convs(convs) => convs.iter_mut().for_each(Conv::make_channels_last),
            Layer::Elan(block) => block
                .convs_mut()
                .into_iter()
                .for_each(Conv::make_channels_last),
            Layer::ADown(convs) => convs.iter_mut().for_each(Conv::make_channels_last),
            Layer::CbLinear { conv, .. } => conv.make_channels_last(),
            Layer::Sppf { cv1, cv2, .. } => {
                cv1.make_channels_last();
                cv2.make_channels_last();
            }
            Layer::Detect(detect) => detect.make_channels_last(),
            Layer::Classify(classify) => classify.make_channels_last(),
            Layer::Upsample { .. }
            | Layer::Concat { .. }
            | Layer::Identity
            | Layer::CbFuse { .. } => {}
        }
    }
}

/// A built row: its inputs (`from`, absolute indices) and its layer.
#[derive(Debug)]
struct Row {
    from: Vec<usize>,
    layer: Layer,
}

/// The network.
#[derive(Debug)]
pub(crate) struct Network {
    rows: Vec<Row>,
}

/// What builds the network: the tree, and the tensors by name (`f32`),
/// taken as they are used.
struct Builder<'a> {
    root: &'a Module,
    tensors: HashMap<String, Tensor>,
}

impl Builder<'_> {
    fn module(&self, path: &str) -> Result<&Module, ArchitectureError> {
        self.root
            .get(path)
            .ok_or_else(|| unsupported(format!("the checkpoint has no module `{path}`")))
    }

    fn expect(&self, path: &str, kind: &str) -> Result<&Module, ArchitectureError> {
        let module = self.module(path)?;
        if module.kind() != kind {
            return Err(unsupported(format!(
                "`{path}` is a `{}`, not a `{kind}`",
                module.class
            )));
        }
        Ok(module)
    }

    fn tensor(&mut self, name: &str) -> Result<Tensor, ArchitectureError> {
        self.tensors
            .remove(name)
            .ok_or_else(|| unsupported(format!("the checkpoint has no tensor `{name}`")))
    }

    fn optional_tensor(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.remove(name)
    }

    /// `SPPF` (`cv1`, its max-pool `m` `n` times, `cv2`), or YOLOv9's
    /// `SPPELAN` (`cv1`, three equal max-pools `cv2`..`cv4`, `cv5`): the
    /// same computation.
    fn sppf(&mut self, path: &str, kind: &str) -> Result<Layer, ArchitectureError> {
        let module = self.expect(path, kind)?;
        let elan = kind == "SPPELAN";
        let repeats = match module.attributes.get("n") {
            _ if elan => 3,
            None => 3,
            Some(n) => n
                .as_i64()
                .filter(|n| (1..=MAX_REPEATS).contains(n))
                .ok_or_else(|| unsupported(format!("`{path}.n` is {n}")))?,
        };
        let add = module
            .attributes
            .get("add")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let add = add && !elan;
        let pool_name = if elan { "cv2" } else { "m" };
        let pool = self.expect(&format!("{path}.{pool_name}"), "MaxPool2d")?;
        if elan {
            for other in ["cv3", "cv4"] {
                let same = self.expect(&format!("{path}.{other}"), "MaxPool2d")?;
                if same.attributes != pool.attributes {
                    return Err(unsupported(format!(
                        "`{path}.{other}` is not the same max-pool as `{path}.cv2`"
                    )));
                }
            }
        }
        let number = |name: &str| -> Result<i64, ArchitectureError> {
            pool.attributes
                .get(name)
                .and_then(Json::as_i64)
                .filter(|n| (0..=1024).contains(n))
                .ok_or_else(|| {
                    unsupported(format!("`{path}.{pool_name}.{name}` is not a whole number"))
                })
        };
        let (kernel, stride, padding) = (
            number("kernel_size")?,
            number("stride")?,
            number("padding")?,
        );
        if pool.attributes.get("dilation").and_then(Json::as_i64) != Some(1)
            || pool.attributes.get("ceil_mode").and_then(Json::as_bool) != Some(false)
            || kernel == 0
            || stride == 0
        {
            return Err(unsupported(format!(
                "`{path}.{pool_name}` is not a plain max-pool (dilation 1, floor mode)"
            )));
        }
        Ok(Layer::Sppf {
            cv1: self.conv(&format!("{path}.cv1"))?,
            cv2: self.conv(&format!("{path}.{}", if elan { "cv5" } else { "cv2" }))?,
            kernel,
            stride,
            padding,
            repeats,
            add,
        })
    }
}

/// A yaml number, or an error naming `what`.
fn number(value: &Json, what: &str) -> Result<f64, ArchitectureError> {
    value
        .as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| unsupported(format!("{what} is {value}, not a number")))
}

/// `make_divisible(x, 8)`: `ceil(x / 8) * 8`.
fn make_divisible(x: f64) -> f64 {
    (x / 8.0).ceil() * 8.0
}

/// The depth, width and max channels of the yaml's chosen scale (or its
/// `depth_multiple` / `width_multiple`).
fn scaling(yaml: &Json) -> Result<(f64, f64, f64), ArchitectureError> {
    let Some(scales) = yaml.get("scales").and_then(Json::as_object) else {
        let get = |key: &str| yaml.get(key).map_or(Ok(1.0), |v| number(v, key));
        return Ok((
            get("depth_multiple")?,
            get("width_multiple")?,
            f64::INFINITY,
        ));
    };
    let scale = match yaml.get("scale").and_then(Json::as_str) {
        Some(scale) if !scale.is_empty() => scale.to_owned(),
        // parse_model takes the first scale when none is named.
        _ => scales
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| unsupported("the yaml's `scales` is empty"))?,
    };
    let row = scales
        .get(&scale)
        .and_then(Json::as_array)
        .filter(|row| row.len() == 3)
        .ok_or_else(|| unsupported(format!("the yaml has no scale `{scale}`")))?;
    Ok((
        number(&row[0], "the depth")?,
        number(&row[1], "the width")?,
        number(&row[2], "the max channels")?,
    ))
}

impl Network {
    /// Builds the network of `checkpoint` (its root's `yaml`, its tree and
    /// its tensors, converted to `f32`).
    pub(crate) fn build(checkpoint: ModuleCheckpoint) -> Result<Network, ArchitectureError> {
        let ModuleCheckpoint {
            root,
            tensors,
            attribute_tensors,
            ..
        } = checkpoint;
        let yaml = root
            .attributes
            .get("yaml")
            .filter(|yaml| yaml.is_object())
            .ok_or_else(|| unsupported("the model has no `yaml` dict"))?
            .clone();
        let (depth, width, max_channels) = scaling(&yaml)?;
        if !(0.0..=16.0).contains(&depth) || !(0.0..=16.0).contains(&width) {
            return Err(unsupported(format!(
                "depth {depth} and width {width} are out of range"
            )));
        }
        let tensors = tensors
            .into_iter()
            .map(|(name, tensor)| Ok((name, tensor.f_to_kind(Kind::Float)?)))
            .collect::<Result<HashMap<_, _>, TchError>>()?;
        let mut builder = Builder {
            root: &root,
            tensors,
        };
        let mut rows_yaml = Vec::new();
        for part in ["backbone", "head"] {
            let rows = yaml
                .get(part)
                .and_then(Json::as_array)
                .ok_or_else(|| unsupported(format!("the yaml has no `{part}` list")))?;
            rows_yaml.extend(rows.iter());
        }
        if rows_yaml.len() > MAX_LAYERS {
            return Err(unsupported(format!(
                "the yaml lists {} layers (at most {MAX_LAYERS})",
                rows_yaml.len()
            )));
        }
        let mut channels: Vec<f64> = Vec::new();
        // The widths of each `CBLinear` row's pieces (`None` for others).
        let mut pieces_of: Vec<Option<Vec<i64>>> = Vec::new();
        let mut rows = Vec::new();
        let input_channels = yaml
            .get("channels")
            .map_or(Ok(3.0), |c| number(c, "channels"))?;
        for (index, row) in rows_yaml.iter().enumerate() {
            let path = format!("model.{index}");
            let fields = row
                .as_array()
                .filter(|fields| fields.len() == 4)
                .ok_or_else(|| {
                    unsupported(format!("yaml row {index} is not [from, n, module, args]"))
                })?;
            let from_of = |value: &Json| -> Result<usize, ArchitectureError> {
                let offset = value
                    .as_i64()
                    .ok_or_else(|| unsupported(format!("yaml row {index}: `from` is {value}")))?;
                if index == 0 && offset == -1 {
                    // The first layer reads the input.
                    return Ok(0);
                }
                let absolute = if offset < 0 {
                    index as i64 + offset
                } else {
                    offset
                };
                usize::try_from(absolute)
                    .ok()
                    .filter(|absolute| *absolute < index)
                    .ok_or_else(|| {
                        unsupported(format!(
                            "yaml row {index}: `from` {offset} is not an earlier layer"
                        ))
                    })
            };
            let from: Vec<usize> = match &fields[0] {
                Json::Array(items) => items.iter().map(from_of).collect::<Result<_, _>>()?,
                single => vec![from_of(single)?],
            };
            let channel_of = |from: usize| -> f64 {
                if index == 0 {
                    input_channels
                } else {
                    channels.get(from).copied().unwrap_or(0.0)
                }
            };
            let repeats = fields[1]
                .as_i64()
                .filter(|n| (1..=MAX_REPEATS).contains(n))
                .ok_or_else(|| {
                    unsupported(format!("yaml row {index}: repeats is {}", fields[1]))
                })?;
            let repeats = if repeats > 1 {
                ((repeats as f64 * depth).round_ties_even() as i64).max(1)
            } else {
                repeats
            };
            let name = fields[2]
                .as_str()
                .ok_or_else(|| unsupported(format!("yaml row {index}: module is {}", fields[2])))?;
            let args = fields[3].as_array().cloned().unwrap_or_default();
            let width_of = |args: &[Json]| -> Result<f64, ArchitectureError> {
                let c2 = args
                    .first()
                    .map(|c| number(c, "a layer's channels"))
                    .transpose()?
                    .unwrap_or(0.0);
                let c2 = make_divisible(c2.min(max_channels) * width);
                if !(1.0..=MAX_CHANNELS).contains(&c2) {
                    return Err(unsupported(format!("yaml row {index}: {c2} channels")));
                }
                Ok(c2)
            };
            // A `CBLinear` row's output is its pieces: only `CBFuse` reads
            // them (anything else fails in Ultralytics too).
            if name != "CBFuse"
                && let Some(split) = from
                    .iter()
                    .find(|from| index > 0 && pieces_of.get(**from).is_some_and(Option::is_some))
            {
                return Err(unsupported(format!(
                    "yaml row {index}: `{name}` reads the pieces of `CBLinear` row {split}; only `CBFuse` does"
                )));
            }
            let single = || -> Result<usize, ArchitectureError> {
                match from.as_slice() {
                    [one] => Ok(*one),
                    _ => Err(unsupported(format!(
                        "yaml row {index}: `{name}` takes one input"
                    ))),
                }
            };
            let repeats_one = || -> Result<(), ArchitectureError> {
                if repeats != 1 {
                    return Err(unsupported(format!(
                        "yaml row {index}: `{name}` repeated {repeats} times"
                    )));
                }
                Ok(())
            };
            if matches!(
                name,
                "Conv"
                    | "RepNCSPELAN4"
                    | "ADown"
                    | "SPPELAN"
                    | "C2f"
                    | "C3k2"
                    | "C2fCIB"
                    | "C3"
                    | "C2PSA"
                    | "PSA"
                    | "SCDown"
                    | "SPPF"
                    | "nn.Upsample"
                    | "nn.Identity"
                    | "Silence"
                    | "CBLinear"
            ) {
                single()?;
            }
            let (layer, out) = match name {
                "Conv" => {
                    repeats_one()?;
                    let c2 = width_of(&args)?;
                    let conv = builder.conv(&path)?;
                    (Layer::Conv(conv), c2)
                }
                "C2f" | "C3k2" | "C2fCIB" => {
                    let c2 = width_of(&args)?;
                    (Layer::C2f(builder.c2f(&path, name, repeats)?), c2)
                }
                "C3" => {
                    let c2 = width_of(&args)?;
                    (Layer::C3(builder.c3(&path, name, Some(repeats))?), c2)
                }
                "C2PSA" => {
                    let c2 = width_of(&args)?;
                    (Layer::C2Psa(builder.c2psa(&path, repeats)?), c2)
                }
                "PSA" => {
                    repeats_one()?;
                    let c2 = width_of(&args)?;
                    (Layer::C2Psa(builder.psa(&path)?), c2)
                }
                "SCDown" => {
                    repeats_one()?;
                    let c2 = width_of(&args)?;
                    (Layer::Convs(builder.sc_down(&path)?), c2)
                }
                "SPPF" | "SPPELAN" => {
                    repeats_one()?;
                    let c2 = width_of(&args)?;
                    (builder.sppf(&path, name)?, c2)
                }
                "RepNCSPELAN4" => {
                    repeats_one()?;
                    let c2 = width_of(&args)?;
                    (Layer::Elan(Box::new(builder.elan(&path)?)), c2)
                }
                "ADown" => {
                    repeats_one()?;
                    let c2 = width_of(&args)?;
                    (Layer::ADown(builder.a_down(&path)?), c2)
                }
                "nn.Identity" | "Silence" => {
                    repeats_one()?;
                    let module = builder.module(&path)?;
                    if !matches!(module.kind(), "Identity" | "Silence") {
                        return Err(unsupported(format!(
                            "`{path}` is a `{}`, not an `Identity`",
                            module.class
                        )));
                    }
                    (Layer::Identity, channel_of(single()?))
                }
                "CBLinear" => {
                    repeats_one()?;
                    let widths = args
                        .first()
                        .and_then(Json::as_array)
                        .filter(|widths| !widths.is_empty() && widths.len() <= MAX_LAYERS)
                        .and_then(|widths| {
                            widths
                                .iter()
                                .map(|width| {
                                    width
                                        .as_i64()
                                        .filter(|width| (1..=MAX_CHANNELS as i64).contains(width))
                                })
                                .collect::<Option<Vec<i64>>>()
                        })
                        .ok_or_else(|| {
                            unsupported(format!(
                                "yaml row {index}: `CBLinear`'s widths are not a list of channel counts"
                            ))
                        })?;
                    let module = builder.expect(&path, "CBLinear")?;
                    if module.attributes.get("c2s") != Some(&Json::from(widths.clone())) {
                        return Err(unsupported(format!(
                            "`{path}.c2s` is not the yaml's widths {widths:?}"
                        )));
                    }
                    let conv = builder.conv2d(&format!("{path}.conv"))?;
                    let total: i64 = widths.iter().sum();
                    if conv.out_channels() != total {
                        return Err(unsupported(format!(
                            "`{path}.conv` has {} output channels, not the {total} of its pieces",
                            conv.out_channels()
                        )));
                    }
                    (Layer::CbLinear { conv, widths }, total as f64)
                }
                "CBFuse" => {
                    repeats_one()?;
                    let module = builder.expect(&path, "CBFuse")?;
                    let indices = args
                        .first()
                        .and_then(Json::as_array)
                        .and_then(|indices| {
                            indices
                                .iter()
                                .map(|index| index.as_u64().and_then(|i| usize::try_from(i).ok()))
                                .collect::<Option<Vec<usize>>>()
                        })
                        .ok_or_else(|| {
                            unsupported(format!(
                                "yaml row {index}: `CBFuse`'s indices are not a list of whole numbers"
                            ))
                        })?;
                    if module.attributes.get("idx") != args.first() {
                        return Err(unsupported(format!(
                            "`{path}.idx` is not the yaml's indices {indices:?}"
                        )));
                    }
                    let Some((&last, inputs)) = from.split_last() else {
                        return Err(unsupported(format!(
                            "yaml row {index}: `CBFuse` has no inputs"
                        )));
                    };
                    if inputs.len() != indices.len() {
                        return Err(unsupported(format!(
                            "yaml row {index}: `CBFuse` has {} `CBLinear` inputs and {} indices",
                            inputs.len(),
                            indices.len()
                        )));
                    }
                    if pieces_of.get(last).is_some_and(Option::is_some) {
                        return Err(unsupported(format!(
                            "yaml row {index}: `CBFuse`'s last input is a `CBLinear`"
                        )));
                    }
                    let target = channel_of(last);
                    let mut pieces = Vec::with_capacity(inputs.len());
                    for (input, piece) in inputs.iter().zip(&indices) {
                        let widths = pieces_of.get(*input).and_then(Option::as_ref).ok_or_else(
                            || {
                                unsupported(format!(
                                    "yaml row {index}: `CBFuse` input {input} is not a `CBLinear`"
                                ))
                            },
                        )?;
                        let width = widths.get(*piece).copied().ok_or_else(|| {
                            unsupported(format!(
                                "yaml row {index}: `CBLinear` row {input} has no piece {piece}"
                            ))
                        })?;
                        if width as f64 != target {
                            return Err(unsupported(format!(
                                "yaml row {index}: piece {piece} of `CBLinear` row {input} has {width} channels, not the {target} of row {last}"
                            )));
                        }
                        pieces.push((widths[..*piece].iter().sum(), width));
                    }
                    (Layer::CbFuse { pieces }, target)
                }
                "nn.Upsample" => {
                    repeats_one()?;
                    let module = builder.expect(&path, "Upsample")?;
                    let mode = module.attributes.get("mode").and_then(Json::as_str);
                    let scale = module.attributes.get("scale_factor").and_then(Json::as_f64);
                    let size = module.attributes.get("size");
                    match (mode, scale, size) {
                        (Some("nearest"), Some(scale), None | Some(Json::Null))
                            if scale.is_finite() && (1.0..=8.0).contains(&scale) =>
                        {
                            (Layer::Upsample { scale }, channel_of(single()?))
                        }
                        _ => {
                            return Err(unsupported(format!(
                                "`{path}` is not a nearest upsampling by a scale factor"
                            )));
                        }
                    }
                }
                "Concat" => {
                    repeats_one()?;
                    let module = builder.expect(&path, "Concat")?;
                    let dimension = module
                        .attributes
                        .get("d")
                        .and_then(Json::as_i64)
                        .filter(|d| *d == 1)
                        .ok_or_else(|| {
                            unsupported(format!(
                                "`{path}` concatenates along a dimension other than 1"
                            ))
                        })?;
                    let total = from.iter().map(|from| channel_of(*from)).sum();
                    (Layer::Concat { dimension }, total)
                }
                "Classify" => {
                    repeats_one()?;
                    single()?;
                    if index + 1 != rows_yaml.len() {
                        return Err(unsupported("`Classify` is not the last layer"));
                    }
                    (Layer::Classify(Box::new(builder.classify(&path)?)), 0.0)
                }
                "Detect" | "Segment" | "Segment26" | "v10Detect" | "Pose" | "Pose26" | "OBB" => {
                    repeats_one()?;
                    if index + 1 != rows_yaml.len() {
                        return Err(unsupported(format!("`{name}` is not the last layer")));
                    }
                    let mut layer = builder.detect(&path, name, from.len())?;
                    if let Layer::Detect(detect) = &mut layer {
                        let strides = attribute_tensors
                            .iter()
                            .find(|(key, _)| *key == format!("{path}.stride"))
                            .or_else(|| attribute_tensors.iter().find(|(key, _)| key == "stride"))
                            .map(|(_, tensor)| tensor)
                            .ok_or_else(|| unsupported("the model has no `stride`"))?;
                        let strides: Vec<f64> =
                            Vec::try_from(strides.f_to_kind(Kind::Double)?.f_flatten(0, -1)?)?;
                        if strides.len() != from.len()
                            || strides
                                .iter()
                                .any(|s| !(s.is_finite() && *s > 0.0 && *s <= 4096.0))
                        {
                            return Err(unsupported(format!(
                                "the model's strides {strides:?} do not fit its {} levels",
                                from.len()
                            )));
                        }
                        detect.strides = strides;
                    }
                    (layer, 0.0)
                }
                other => {
                    return Err(unsupported(format!(
                        "yaml row {index}: layer `{other}` is not one zoo builds (YOLOv5u, YOLOv8, YOLOv9, YOLOv10, YOLO11 and YOLO26: Conv, C2f, C3, C3k2, C2fCIB, C2PSA, PSA, SCDown, SPPF, nn.Upsample, nn.Identity, Concat, RepNCSPELAN4, ADown, SPPELAN, CBLinear, CBFuse, Detect, v10Detect, Segment, Segment26, Pose, Pose26, OBB, Classify)"
                    )));
                }
            };
            // The widths parse_model computes must be the weights' widths.
            let built = match &layer {
                Layer::Conv(conv) => Some(conv.out_channels()),
                Layer::C2f(block) => Some(block.cv2.out_channels()),
                Layer::C3(block) => Some(block.cv3.out_channels()),
                Layer::C2Psa(block) => Some(block.cv2.out_channels()),
                Layer::Convs(convs) => convs.last().map(Conv::out_channels),
                Layer::Elan(block) => Some(block.cv4.out_channels()),
                Layer::ADown([cv1, cv2]) => Some(cv1.out_channels() + cv2.out_channels()),
                Layer::Sppf { cv2, .. } => Some(cv2.out_channels()),
                Layer::CbLinear { conv, .. } => Some(conv.out_channels()),
                _ => None,
            };
            if let Some(built) = built
                && built as f64 != out
            {
                return Err(unsupported(format!(
                    "`{path}` has {built} output channels; the yaml's scale gives {out}"
                )));
            }
            channels.push(out);
            pieces_of.push(match &layer {
                Layer::CbLinear { widths, .. } => Some(widths.clone()),
                _ => None,
            });
            rows.push(Row { from, layer });
        }
        // Ultralytics' AutoBackend runs the fused model channels-last on
        // x86 CPUs (oneDNN's kernels): so does zoo, for the same rounding.
        for row in &mut rows {
            row.layer.make_channels_last();
        }
        if !matches!(
            rows.last(),
            Some(Row {
                layer: Layer::Detect(_) | Layer::Classify(_),
                ..
            })
        ) {
            return Err(unsupported(
                "the network does not end in a `Detect` or `Classify` head",
            ));
        }
        let mut left: Vec<&String> = builder
            .tensors
            .keys()
            .filter(|name| !name.ends_with("num_batches_tracked"))
            .collect();
        if !left.is_empty() {
            left.sort();
            left.truncate(5);
            return Err(unsupported(format!(
                "the checkpoint has tensors the yaml's network does not use: {left:?}"
            )));
        }
        Ok(Network { rows })
    }

    /// The Detect head.
    pub(crate) fn detect(&self) -> Option<&Detect> {
        match self.rows.last().map(|row| &row.layer) {
            Some(Layer::Detect(detect)) => Some(detect),
            _ => None,
        }
    }

    /// The Classify head.
    pub(crate) fn classify(&self) -> Option<&Classify> {
        match self.rows.last().map(|row| &row.layer) {
            Some(Layer::Classify(classify)) => Some(classify),
            _ => None,
        }
    }

    /// The head's output as `Detect` (or `Segment`) returns it in
    /// inference.
    pub(crate) fn forward(&self, input: &Tensor) -> Result<NetworkOutput, TchError> {
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.rows.len());
        for (index, row) in self.rows.iter().enumerate() {
            let input_of =
                |from: usize| -> &Tensor { if index == 0 { input } else { &outputs[from] } };
            let output = match &row.layer {
                Layer::Conv(conv) => conv.forward(input_of(row.from[0]))?,
                Layer::C2f(block) => block.forward(input_of(row.from[0]))?,
                Layer::C3(block) => block.forward(input_of(row.from[0]))?,
                Layer::C2Psa(block) => block.forward(input_of(row.from[0]))?,
                Layer::Elan(block) => block.forward(input_of(row.from[0]))?,
                Layer::ADown([cv1, cv2]) => {
                    // avg_pool2d(2, 1, 0, ceil=False, count_include_pad=True).
                    let x = input_of(row.from[0]).f_avg_pool2d(
                        [2, 2],
                        [1, 1],
                        [0, 0],
                        false,
                        true,
                        None,
                    )?;
                    let halves = x.f_chunk(2, 1)?;
                    let first = cv1.forward(&halves[0])?;
                    let second = halves[1].f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
                    let second = cv2.forward(&second)?;
                    Tensor::f_cat(&[first, second], 1)?
                }
                Layer::Identity => input_of(row.from[0]).shallow_clone(),
                Layer::CbLinear { conv, .. } => conv.forward(input_of(row.from[0]))?,
                Layer::CbFuse { pieces } => {
                    let (last, inputs) = row
                        .from
                        .split_last()
                        .expect("a CBFuse row has inputs (checked at build)");
                    let target = input_of(*last);
                    let size = target.size();
                    let mut terms = Vec::with_capacity(row.from.len());
                    for (input, (first, width)) in inputs.iter().zip(pieces) {
                        // interpolate(piece, size=target's, mode="nearest").
                        let piece = input_of(*input).f_narrow(1, *first, *width)?;
                        terms.push(piece.f_upsample_nearest2d([size[2], size[3]], None, None)?);
                    }
                    terms.push(target.shallow_clone());
                    // torch.sum(torch.stack(terms), dim=0).
                    Tensor::f_stack(&terms, 0)?.f_sum_dim_intlist(
                        Some([0_i64].as_slice()),
                        false,
                        None::<Kind>,
                    )?
                }
                Layer::Convs(convs) => {
                    let mut y = input_of(row.from[0]).shallow_clone();
                    for conv in convs {
                        y = conv.forward(&y)?;
                    }
                    y
                }
                Layer::Sppf {
                    cv1,
                    cv2,
                    kernel,
                    stride,
                    padding,
                    repeats,
                    add,
                } => {
                    let x = input_of(row.from[0]);
                    let mut pieces = vec![cv1.forward(x)?];
                    for _ in 0..*repeats {
                        let last = pieces.last().expect("SPPF has its first piece");
                        let pooled = last.f_max_pool2d(
                            [*kernel, *kernel],
                            [*stride, *stride],
                            [*padding, *padding],
                            [1, 1],
                            false,
                        )?;
                        pieces.push(pooled);
                    }
                    let y = cv2.forward(&Tensor::f_cat(&pieces, 1)?)?;
                    if *add { y.f_add(x)? } else { y }
                }
                Layer::Upsample { scale } => {
                    let x = input_of(row.from[0]);
                    let size = x.size();
                    let (height, width) = (size[2], size[3]);
                    // interpolate(scale_factor=s, mode="nearest"): output
                    // floor(side * s), scales passed through.
                    let out = [
                        (height as f64 * scale).floor() as i64,
                        (width as f64 * scale).floor() as i64,
                    ];
                    x.f_upsample_nearest2d(out, Some(*scale), Some(*scale))?
                }
                Layer::Concat { dimension } => {
                    let inputs: Vec<&Tensor> =
                        row.from.iter().map(|from| input_of(*from)).collect();
                    Tensor::f_cat(&inputs, *dimension)?
                }
                Layer::Detect(detect) => {
                    let inputs: Vec<&Tensor> =
                        row.from.iter().map(|from| input_of(*from)).collect();
                    return Ok(NetworkOutput::Boxes(detect.forward(&inputs)?));
                }
                Layer::Classify(classify) => {
                    let probabilities = classify.forward(input_of(row.from[0]))?;
                    return Ok(NetworkOutput::Probabilities(probabilities));
                }
            };
            outputs.push(output);
        }
        Err(TchError::Kind("the network has no head".to_owned()))
    }
}

/// What the network gives in inference.
#[derive(Debug)]
pub(crate) enum NetworkOutput {
    /// A `Detect` or `Segment` head's.
    Boxes(HeadOutput),
    /// A `Classify` head's class probabilities, `[N, nc]`.
    Probabilities(Tensor),
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::checkpoint::modules::read_module_checkpoint;

    fn checkpoint() -> ModuleCheckpoint {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yolo/yolov8t.pt");
        read_module_checkpoint(&path).unwrap()
    }

    /// A yaml that does not describe the checkpoint's weights, or names a
    /// layer zoo does not build, is an error naming what is wrong.
    #[test]
    fn a_yaml_that_does_not_fit_the_weights_is_an_error_naming_it() {
        let cases: [(&str, Json, &str); 10] = [
            ("/scale", json!("n"), "the yaml's scale gives"),
            ("/backbone/0/2", json!("Foo"), "layer `Foo`"),
            ("/head/0/0", json!([]), "takes one input"),
            ("/backbone/1/0", json!(5), "not an earlier layer"),
            (
                "/backbone/2/1",
                json!(6),
                "blocks; the yaml's depth gives 2",
            ),
            ("/scales/t", json!([0.33]), "no scale `t`"),
            ("/head/12/2", json!("OBB26"), "layer `OBB26`"),
            ("/head/12/2", json!("OBB"), "not a `OBB`"),
            ("/head/12/2", json!("Pose"), "not a `Pose`"),
            ("/head/12/2", json!("Segment"), "not a `Segment`"),
        ];
        for (pointer, value, expected) in cases {
            let mut checkpoint = checkpoint();
            let yaml = checkpoint.root.attributes.get_mut("yaml").unwrap();
            *yaml.pointer_mut(pointer).unwrap() = value;
            let err = Network::build(checkpoint).unwrap_err().to_string();
            assert!(err.contains(expected), "{pointer}: {err}");
        }
        let mut checkpoint = checkpoint();
        checkpoint.root.attributes.remove("yaml");
        let err = Network::build(checkpoint).unwrap_err().to_string();
        assert!(err.contains("no `yaml`"), "{err}");
    }

    /// YOLOv9e's `CBLinear` and `CBFuse` rows must fit the module tree and
    /// each other; only `CBFuse` reads a `CBLinear`'s pieces.
    #[test]
    fn yolov9e_rows_that_do_not_fit_are_errors_naming_them() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yolo/yolov9te.pt");
        let cases: [(&str, Json, &str); 6] = [
            ("/backbone/10/3/0", json!([16]), "`model.10.c2s` is not"),
            (
                "/backbone/10/3/0",
                json!("64"),
                "not a list of channel counts",
            ),
            (
                "/backbone/16/3/0",
                json!([0, 0, 0, 0, 1]),
                "`model.16.idx` is not",
            ),
            (
                "/backbone/15/0",
                json!(10),
                "reads the pieces of `CBLinear` row 10",
            ),
            (
                "/backbone/16/0",
                json!([10, 11, 12, 13, 14, 14]),
                "last input is a `CBLinear`",
            ),
            (
                "/backbone/16/0",
                json!([10, 11, 12, 13, 15, -1]),
                "input 15 is not a `CBLinear`",
            ),
        ];
        for (pointer, value, expected) in cases {
            let mut checkpoint = read_module_checkpoint(&path).unwrap();
            let yaml = checkpoint.root.attributes.get_mut("yaml").unwrap();
            *yaml.pointer_mut(pointer).unwrap() = value;
            let err = Network::build(checkpoint).unwrap_err().to_string();
            assert!(err.contains(expected), "{pointer}: {err}");
        }
        // Older checkpoints name the first layer `Silence`: the same
        // identity.
        let mut checkpoint = read_module_checkpoint(&path).unwrap();
        let yaml = checkpoint.root.attributes.get_mut("yaml").unwrap();
        *yaml.pointer_mut("/backbone/0/2").unwrap() = json!("Silence");
        assert!(Network::build(checkpoint).unwrap().detect().is_some());
    }

    /// The widths and depths parse_model computes: `make_divisible` and
    /// Python's rounding of the repeats.
    #[test]
    fn scales_give_parse_models_widths() {
        assert_eq!(make_divisible(64.0 * 0.0625), 8.0);
        assert_eq!(make_divisible(1024.0 * 0.25), 256.0);
        assert_eq!(make_divisible(512.0_f64.min(512.0) * 1.25), 640.0);
        assert_eq!(make_divisible(768.0 * 0.75), 576.0);
        let yaml =
            json!({"scales": {"n": [0.33, 0.25, 1024], "x": [1.0, 1.25, 512]}, "scale": "x"});
        assert_eq!(scaling(&yaml).unwrap(), (1.0, 1.25, 512.0));
        let first = json!({"scales": {"n": [0.33, 0.25, 1024]}});
        assert_eq!(scaling(&first).unwrap(), (0.33, 0.25, 1024.0));
        assert_eq!(scaling(&json!({})).unwrap().0, 1.0);
    }
}
