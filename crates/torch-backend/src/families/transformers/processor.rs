//! A repo's image processor (`preprocessor_config.json`) as transformers'
//! torchvision backend runs it on the `uint8` RGB image FiftyOne passes
//! (`AutoProcessor.from_pretrained(..., use_fast=True)`): resize (the
//! `resample` filter, [`resize`](super::resize)), ConvNeXt's `crop_pct`,
//! centre crop, then rescale and normalise fused into `(x - mean / factor) /
//! (std / factor)` in `f32`, as `_fuse_mean_std_and_rescale_factor` does.
//!
//! With `use_fast=False` (a config's `transforms_args`), transformers' PIL
//! backend instead: Pillow's resampling ([`resize_pillow`]) and NumPy's
//! `float64` rescale, then the normalisation in `f32`.
//!
//! DINOv3's processor keeps its own order ([`ImageProcessor::apply_rescaled`]):
//! rescale the `uint8` image to `f32`, resize the floats (libtorch's
//! antialiased float kernels), centre crop, then normalise.
//!
//! DPT's (Depth Anything's) resize keeps the aspect ratio when asked
//! (`keep_aspect_ratio`: the scale of the side nearer to its target applies
//! to both) and rounds each side to a multiple of `ensure_multiple_of`
//! (Python's `round`, half to even).
//!
//! ViT's, ConvNeXt's, EfficientNet's, CLIP's, SigLIP's, DINOv3's, DPT's and SegFormer's
//! processors are read, by `image_processor_type` (or the legacy `feature_extractor_type`),
//! else by the model's type.

use serde::Deserialize;
use serde_json::Value;
use zoo_model_core::{Image, Input, InputData, ModelError, Preprocess};

use super::HfError;
use super::resize::{Filter, resize, resize_pillow};
use crate::preprocess::MAX_IMAGE_SIDE;

/// Which processor's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessorKind {
    /// `ViTImageProcessor`: an integer `size` is a square; bilinear.
    Vit,
    /// `ConvNextImageProcessor`: an integer `size` is the shortest edge;
    /// below 384 resized to `shortest_edge / crop_pct` and centre-cropped;
    /// bicubic.
    ConvNext,
    /// `EfficientNetImageProcessor`: `rescale_offset` (`x * factor - 1`)
    /// and `include_top` (a second division by `image_std`); bicubic.
    EfficientNet,
    /// `CLIPImageProcessor`: an integer `size` is the shortest edge, then a
    /// centre crop (224 by default); bicubic; OpenAI's statistics.
    Clip,
    /// `SiglipImageProcessor`: 224x224 by default; bicubic.
    Siglip,
    /// `OwlViTImageProcessor`: an integer `size` is a square (768x768 by
    /// default), no aspect kept; bicubic; OpenAI's statistics; early
    /// configs' `rescale` is `do_rescale`.
    OwlVit,
    /// `DINOv3ViTImageProcessor`: rescale, then resize (in `f32`), then
    /// normalise; 224x224 by default; bilinear; ImageNet's statistics.
    Dinov3,
    /// `DPTImageProcessor`: `height` x `width` (384 by default), or with
    /// `keep_aspect_ratio` the aspect kept, each side a multiple of
    /// `ensure_multiple_of`; bicubic; the "standard" statistics.
    Dpt,
    /// `SegformerImageProcessor`: an integer `size` is a square (512x512
    /// by default); bilinear; ImageNet's statistics.
    Segformer,
}

impl ProcessorKind {
    /// The kind a processor type names (`ViTImageProcessor`,
    /// `ConvNextFeatureExtractor`, their `Fast` variants).
    fn named(name: &str) -> Option<ProcessorKind> {
        let base = name
            .strip_suffix("Fast")
            .unwrap_or(name)
            .replace("FeatureExtractor", "ImageProcessor");
        match base.as_str() {
            "ViTImageProcessor" => Some(ProcessorKind::Vit),
            "ConvNextImageProcessor" => Some(ProcessorKind::ConvNext),
            "EfficientNetImageProcessor" => Some(ProcessorKind::EfficientNet),
            "CLIPImageProcessor" | "CLIPImageProcessorPil" => Some(ProcessorKind::Clip),
            "SiglipImageProcessor" | "SiglipImageProcessorPil" => Some(ProcessorKind::Siglip),
            "DINOv3ViTImageProcessor" => Some(ProcessorKind::Dinov3),
            "OwlViTImageProcessor" | "OwlViTImageProcessorPil" => Some(ProcessorKind::OwlVit),
            "DPTImageProcessor" => Some(ProcessorKind::Dpt),
            "SegformerImageProcessor" => Some(ProcessorKind::Segformer),
            _ => None,
        }
    }
}

/// `preprocessor_config.json`'s fields zoo reads (transformers' names).
#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default)]
    image_processor_type: Option<String>,
    #[serde(default)]
    feature_extractor_type: Option<String>,
    #[serde(default)]
    do_resize: Option<bool>,
    #[serde(default)]
    size: Option<Value>,
    #[serde(default)]
    resample: Option<i64>,
    #[serde(default)]
    crop_pct: Option<f64>,
    #[serde(default)]
    do_center_crop: Option<bool>,
    #[serde(default)]
    crop_size: Option<Value>,
    #[serde(default)]
    do_rescale: Option<bool>,
    /// Early OWL-ViT configs' name for `do_rescale`.
    #[serde(default)]
    rescale: Option<bool>,
    #[serde(default)]
    rescale_factor: Option<f64>,
    #[serde(default)]
    do_normalize: Option<bool>,
    #[serde(default)]
    image_mean: Option<Value>,
    #[serde(default)]
    image_std: Option<Value>,
    #[serde(default)]
    rescale_offset: Option<bool>,
    #[serde(default)]
    include_top: Option<bool>,
    #[serde(default)]
    keep_aspect_ratio: Option<bool>,
    #[serde(default)]
    ensure_multiple_of: Option<Value>,
    #[serde(default)]
    do_pad: Option<bool>,
}

/// The resize an image processor's `size` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    /// Exactly `height` x `width`.
    Exact { height: u32, width: u32 },
    /// The shorter side to this, the longer in proportion (truncated).
    ShortestEdge(u32),
}

/// A resize to `(width, height)` (unchecked, so as wide as the
/// arithmetic gives) and ConvNeXt's own crop to `(width, height)`.
type Plan = (Option<(u64, u64)>, Option<(u32, u32)>);

/// An image processor, ready to run (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImageProcessor {
    pub(crate) kind: ProcessorKind,
    /// The resize, if `do_resize`.
    pub(crate) size: Option<Size>,
    pub(crate) filter: Filter,
    /// ConvNeXt's `crop_pct`.
    pub(crate) crop_pct: f64,
    /// The centre crop (`height`, `width`), if `do_center_crop`.
    pub(crate) crop: Option<(u32, u32)>,
    /// The arithmetic on each `u8` value, in this order.
    pub(crate) arithmetic: Arithmetic,
    /// transformers' PIL backend (`use_fast=False`): Pillow's resampling.
    pub(crate) pil: bool,
    /// DPT's `keep_aspect_ratio`.
    pub(crate) keep_aspect_ratio: bool,
    /// DPT's `ensure_multiple_of` (1 for the others).
    pub(crate) multiple: u32,
}

/// The rescale and normalisation of a processor, each step in `f32` as
/// libtorch computes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Arithmetic {
    /// `x * factor`, then `- 1` when the flag is set (EfficientNet's
    /// `rescale_offset`); absent when fused into the normalisation.
    pub(crate) rescale: Option<(f32, bool)>,
    /// `(x - mean) / std` per channel.
    pub(crate) normalize: Option<([f32; 3], [f32; 3])>,
    /// `x / std` per channel (EfficientNet's `include_top`).
    pub(crate) top: Option<[f32; 3]>,
    /// The rescale in `f64`, rounded to `f32` (NumPy's, in the PIL
    /// backend); DINOv3's factor, as the file gives it, for libtorch.
    pub(crate) rescale_f64: Option<f64>,
}

impl Arithmetic {
    fn apply(&self, value: u8, channel: usize) -> f32 {
        let mut value = f32::from(value);
        if let Some(factor) = self.rescale_f64 {
            value = (f64::from(value) * factor) as f32;
        }
        if let Some((factor, offset)) = self.rescale {
            value *= factor;
            if offset {
                value -= 1.0;
            }
        }
        if let Some((mean, std)) = &self.normalize {
            value = (value - mean[channel]) / std[channel];
        }
        if let Some(std) = &self.top {
            value /= std[channel];
        }
        value
    }
}

fn side(value: &Value, what: &str) -> Result<u32, String> {
    value
        .as_u64()
        .filter(|side| (1..=u64::from(MAX_IMAGE_SIDE)).contains(side))
        .map(|side| side as u32)
        .ok_or_else(|| {
            format!("`{what}` must be a whole number from 1 to {MAX_IMAGE_SIDE}, got `{value}`")
        })
}

/// A `size` or `crop_size` value: an integer (a square, or the shortest
/// edge when `integer_is_edge`), `{"height", "width"}` or
/// `{"shortest_edge"}`.
fn parse_size(value: &Value, what: &str, integer_is_edge: bool) -> Result<Size, String> {
    match value {
        Value::Number(_) => {
            let side = side(value, what)?;
            Ok(if integer_is_edge {
                Size::ShortestEdge(side)
            } else {
                Size::Exact {
                    height: side,
                    width: side,
                }
            })
        }
        Value::Object(map) => {
            let known = ["height", "width", "shortest_edge"];
            if let Some(key) = map
                .iter()
                .find(|(key, value)| !value.is_null() && !known.contains(&key.as_str()))
                .map(|(key, _)| key)
            {
                return Err(format!(
                    "`{what}.{key}` is a resize zoo does not reproduce (it reads `height` and `width`, or `shortest_edge`)"
                ));
            }
            let get = |key: &str| map.get(key).filter(|value| !value.is_null());
            match (get("height"), get("width"), get("shortest_edge")) {
                (Some(height), Some(width), None) => Ok(Size::Exact {
                    height: side(height, &format!("{what}.height"))?,
                    width: side(width, &format!("{what}.width"))?,
                }),
                (None, None, Some(edge)) => Ok(Size::ShortestEdge(side(
                    edge,
                    &format!("{what}.shortest_edge"),
                )?)),
                _ => Err(format!(
                    "`{what}` must give `height` and `width`, or `shortest_edge`, got `{value}`"
                )),
            }
        }
        _ => Err(format!(
            "`{what}` must be a number or an object, got `{value}`"
        )),
    }
}

/// A per-channel statistic: one number or three.
fn channels(value: Option<&Value>, default: [f64; 3], what: &str) -> Result<[f64; 3], String> {
    let finite = |value: &Value| value.as_f64().filter(|number| number.is_finite());
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Array(items)) if items.len() == 3 => {
            let mut out = [0.0; 3];
            for (slot, item) in out.iter_mut().zip(items) {
                *slot = finite(item).ok_or_else(|| {
                    format!(
                        "`{what}` must hold 3 numbers, got `{}`",
                        Value::Array(items.clone())
                    )
                })?;
            }
            Ok(out)
        }
        Some(value) => finite(value)
            .map(|number| [number; 3])
            .ok_or_else(|| format!("`{what}` must be a number or 3 numbers, got `{value}`")),
    }
}

/// ImageNet's "standard" statistics (transformers' defaults for ViT and
/// ConvNeXt).
const STANDARD: [f64; 3] = [0.5, 0.5, 0.5];

/// transformers' `IMAGENET_DEFAULT_MEAN` and `IMAGENET_DEFAULT_STD`.
const IMAGENET_DEFAULT_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_DEFAULT_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// transformers' `OPENAI_CLIP_MEAN` and `OPENAI_CLIP_STD`.
const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

impl ImageProcessor {
    /// Reads `preprocessor_config.json` in `dir`; `model_kind` decides the
    /// rules when the file names no processor type.
    pub(crate) fn read(
        dir: &std::path::Path,
        model_kind: ProcessorKind,
    ) -> Result<ImageProcessor, HfError> {
        Self::read_with(dir, model_kind, false)
    }

    /// [`ImageProcessor::read`], for transformers' PIL backend when `pil`;
    /// without `preprocessor_config.json`, the `image_processor` of
    /// `processor_config.json` (where transformers 5's `save_pretrained`
    /// of a processor writes it).
    pub(crate) fn read_with(
        dir: &std::path::Path,
        model_kind: ProcessorKind,
        pil: bool,
    ) -> Result<ImageProcessor, HfError> {
        let (raw, path) = if !super::repo::has_file(dir, "preprocessor_config.json")
            && super::repo::has_file(dir, "processor_config.json")
        {
            #[derive(Deserialize)]
            struct Nested {
                image_processor: Raw,
            }
            let nested: Nested = super::repo::read_json(dir, "processor_config.json")?;
            (nested.image_processor, dir.join("processor_config.json"))
        } else {
            let raw: Raw = super::repo::read_json(dir, "preprocessor_config.json")?;
            (raw, dir.join("preprocessor_config.json"))
        };
        Self::from_raw_with(raw, model_kind, pil)
            .map_err(|message| HfError::Config { path, message })
    }

    #[cfg(test)]
    fn from_raw(raw: Raw, model_kind: ProcessorKind) -> Result<ImageProcessor, String> {
        Self::from_raw_with(raw, model_kind, false)
    }

    fn from_raw_with(
        raw: Raw,
        model_kind: ProcessorKind,
        pil: bool,
    ) -> Result<ImageProcessor, String> {
        let named = raw
            .image_processor_type
            .as_deref()
            .or(raw.feature_extractor_type.as_deref());
        let kind = match named {
            None => model_kind,
            Some(name) => ProcessorKind::named(name).ok_or_else(|| {
                format!(
                    "image processor `{name}` is not one zoo reproduces (it runs `ViTImageProcessor`, `ConvNextImageProcessor`, `EfficientNetImageProcessor`, `CLIPImageProcessor`, `SiglipImageProcessor`, `DINOv3ViTImageProcessor`, `OwlViTImageProcessor`, `DPTImageProcessor` and `SegformerImageProcessor`)"
                )
            })?,
        };
        let (default_filter, default_size) = match kind {
            ProcessorKind::Vit => (
                2,
                Size::Exact {
                    height: 224,
                    width: 224,
                },
            ),
            ProcessorKind::ConvNext => (3, Size::ShortestEdge(384)),
            ProcessorKind::Clip => (3, Size::ShortestEdge(224)),
            ProcessorKind::Dinov3 => (
                2,
                Size::Exact {
                    height: 224,
                    width: 224,
                },
            ),
            ProcessorKind::Segformer => (
                2,
                Size::Exact {
                    height: 512,
                    width: 512,
                },
            ),
            ProcessorKind::Siglip => (
                3,
                Size::Exact {
                    height: 224,
                    width: 224,
                },
            ),
            ProcessorKind::OwlVit => (
                3,
                Size::Exact {
                    height: 768,
                    width: 768,
                },
            ),
            ProcessorKind::EfficientNet => (
                3,
                Size::Exact {
                    height: 346,
                    width: 346,
                },
            ),
            ProcessorKind::Dpt => (
                3,
                Size::Exact {
                    height: 384,
                    width: 384,
                },
            ),
        };
        let resample = raw.resample.unwrap_or(default_filter);
        let filter = Filter::from_pil(resample).ok_or_else(|| {
            format!(
                "`resample` {resample} is a filter zoo does not reproduce (it reproduces 0, nearest, 2, bilinear, and 3, bicubic)"
            )
        })?;
        let size = match &raw.size {
            None | Some(Value::Null) => default_size,
            Some(value) => parse_size(
                value,
                "size",
                matches!(kind, ProcessorKind::ConvNext | ProcessorKind::Clip),
            )?,
        };
        if kind == ProcessorKind::ConvNext && !matches!(size, Size::ShortestEdge(_)) {
            return Err("ConvNeXt's `size` must be `shortest_edge`".to_owned());
        }
        let (keep_aspect_ratio, multiple) = if kind == ProcessorKind::Dpt {
            if !matches!(size, Size::Exact { .. }) {
                return Err("DPT's `size` must give `height` and `width`".to_owned());
            }
            if raw.do_pad.unwrap_or(false) {
                return Err(
                    "`do_pad` true: zoo does not reproduce DPT's padding to `size_divisor`; set it to false".to_owned(),
                );
            }
            let multiple = match &raw.ensure_multiple_of {
                None | Some(Value::Null) => 1,
                Some(value) => side(value, "ensure_multiple_of")?,
            };
            (raw.keep_aspect_ratio.unwrap_or(false), multiple)
        } else {
            (false, 1)
        };
        let crop_pct = raw.crop_pct.unwrap_or(224.0 / 256.0);
        if !(crop_pct.is_finite() && (0.05..=1.0).contains(&crop_pct)) {
            return Err(format!(
                "`crop_pct` must be a number from 0.05 to 1, got `{crop_pct}`"
            ));
        }
        let clip = kind == ProcessorKind::Clip;
        let crop = if raw.do_center_crop.unwrap_or(clip) {
            match raw.crop_size.as_ref().filter(|value| !value.is_null()) {
                None if clip => Some((224, 224)),
                None => return Err("`do_center_crop` needs `crop_size`".to_owned()),
                Some(value) => match parse_size(value, "crop_size", false)? {
                    Size::Exact { height, width } => Some((height, width)),
                    Size::ShortestEdge(_) => {
                        return Err("`crop_size` must give `height` and `width`".to_owned());
                    }
                },
            }
        } else {
            None
        };
        let factor = raw.rescale_factor.unwrap_or(1.0 / 255.0);
        if !(factor.is_finite() && factor > 0.0) {
            return Err(format!(
                "`rescale_factor` must be a positive number, got `{factor}`"
            ));
        }
        let rescale = match kind {
            ProcessorKind::OwlVit => raw.do_rescale.or(raw.rescale),
            _ => raw.do_rescale,
        }
        .unwrap_or(true);
        let normalize = raw.do_normalize.unwrap_or(true);
        let (default_mean, default_std) = match kind {
            ProcessorKind::Clip | ProcessorKind::OwlVit => (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
            ProcessorKind::Dinov3 | ProcessorKind::Segformer => {
                (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
            }
            _ => (STANDARD, STANDARD),
        };
        let mean = channels(raw.image_mean.as_ref(), default_mean, "image_mean")?;
        let std = channels(raw.image_std.as_ref(), default_std, "image_std")?;
        if std.contains(&0.0) {
            return Err(format!("`image_std` must not hold 0, got {std:?}"));
        }
        let offset = kind == ProcessorKind::EfficientNet && raw.rescale_offset.unwrap_or(false);
        let to_f32 = |values: [f64; 3]| values.map(|value| value as f32);
        if kind == ProcessorKind::Dinov3 {
            if pil {
                return Err(
                    "DINOv3's processor has transformers' torchvision backend only; remove `transforms_args.use_fast: false`".to_owned(),
                );
            }
            if !rescale {
                return Err(
                    "`do_rescale` false: DINOv3's processor would then resize and normalise `uint8` values, which zoo does not reproduce".to_owned(),
                );
            }
            if filter == Filter::Nearest {
                return Err(
                    "`resample` 0 (nearest): zoo resizes DINOv3's `f32` images bilinear (2) or bicubic (3) only".to_owned(),
                );
            }
        }
        if pil && (kind == ProcessorKind::EfficientNet || filter == Filter::Nearest) {
            return Err(
                "zoo runs this processor with transformers' torchvision backend only; remove `transforms_args.use_fast: false`".to_owned(),
            );
        }
        let arithmetic = if pil {
            // NumPy: `x.astype(float64) * factor`, then `float32`, then
            // `(x - mean) / std` in `float32`.
            Arithmetic {
                rescale: None,
                normalize: normalize.then(|| (to_f32(mean), to_f32(std))),
                top: None,
                rescale_f64: rescale.then_some(factor),
            }
        } else if kind == ProcessorKind::Dinov3 {
            // `image * factor` (a uint8 tensor times a Python float, in
            // f32), then after the resize `tvF.normalize` in f32.
            Arithmetic {
                rescale: None,
                normalize: normalize.then(|| (to_f32(mean), to_f32(std))),
                top: None,
                rescale_f64: Some(factor),
            }
        } else if rescale && normalize && !offset {
            // torch.tensor(mean) (f32) * (1.0 / factor), a CPU scalar that
            // libtorch's kernel applies in f32.
            let inverse = (1.0 / factor) as f32;
            Arithmetic {
                rescale: None,
                normalize: Some((
                    to_f32(mean).map(|value| value * inverse),
                    to_f32(std).map(|value| value * inverse),
                )),
                top: None,
                rescale_f64: None,
            }
        } else {
            Arithmetic {
                rescale: rescale.then_some((factor as f32, offset)),
                normalize: normalize.then(|| (to_f32(mean), to_f32(std))),
                top: None,
                rescale_f64: None,
            }
        };
        let arithmetic = Arithmetic {
            top: (kind == ProcessorKind::EfficientNet && raw.include_top.unwrap_or(true))
                .then(|| to_f32(std)),
            ..arithmetic
        };
        Ok(ImageProcessor {
            kind,
            size: raw.do_resize.unwrap_or(true).then_some(size),
            filter,
            crop_pct,
            crop,
            arithmetic,
            pil,
            keep_aspect_ratio,
            multiple,
        })
    }

    /// The resize (to `(width, height)`) and ConvNeXt's own crop
    /// (`(width, height)`) an image of `width` x `height` goes through.
    fn plan(&self, width: u32, height: u32) -> Plan {
        let shorter = |edge: u32| {
            // get_resize_output_image_size(default_to_square=False):
            // int(edge * long / short).
            let (short, long) = if width <= height {
                (width, height)
            } else {
                (height, width)
            };
            let new_long = (f64::from(edge) * f64::from(long) / f64::from(short.max(1))) as u64;
            if width <= height {
                (u64::from(edge), new_long)
            } else {
                (new_long, u64::from(edge))
            }
        };
        match self.size {
            None => (None, None),
            // DPTImageProcessor's get_resize_output_image_size.
            Some(Size::Exact {
                height: target_height,
                width: target_width,
            }) if self.kind == ProcessorKind::Dpt => {
                let (input_height, input_width) = (f64::from(height), f64::from(width));
                let mut scale_height = f64::from(target_height) / input_height;
                let mut scale_width = f64::from(target_width) / input_width;
                if self.keep_aspect_ratio {
                    if (1.0 - scale_width).abs() < (1.0 - scale_height).abs() {
                        scale_height = scale_width;
                    } else {
                        scale_width = scale_height;
                    }
                }
                let multiple = f64::from(self.multiple);
                // round(val / multiple) * multiple, Python's round: half to
                // even.
                let constrain =
                    |value: f64| ((value / multiple).round_ties_even() * multiple) as u64;
                (
                    Some((
                        constrain(scale_width * input_width),
                        constrain(scale_height * input_height),
                    )),
                    None,
                )
            }
            Some(Size::Exact { height, width }) => {
                (Some((u64::from(width), u64::from(height))), None)
            }
            // ConvNextImageProcessor.resize: below 384, the short side to
            // int(edge / crop_pct), then a centre crop to edge x edge; from
            // 384, a square.
            Some(Size::ShortestEdge(edge)) if self.kind == ProcessorKind::ConvNext => {
                if edge < 384 {
                    let resized = shorter((f64::from(edge) / self.crop_pct) as u32);
                    (Some(resized), Some((edge, edge)))
                } else {
                    (Some((u64::from(edge), u64::from(edge))), None)
                }
            }
            Some(Size::ShortestEdge(edge)) => (Some(shorter(edge)), None),
        }
    }

    /// The size every output has, if they all have one (FiftyOne's
    /// `_processor_output_is_ragged` is then false).
    pub(crate) fn fixed_size(&self) -> Option<(u32, u32)> {
        if let Some((height, width)) = self.crop {
            return Some((width, height));
        }
        let final_size =
            |(resized, crop): Plan| crop.map(|(w, h)| (u64::from(w), u64::from(h))).or(resized);
        let landscape = final_size(self.plan(1000, 700))?;
        let portrait = final_size(self.plan(700, 1000))?;
        (landscape == portrait).then_some((landscape.0 as u32, landscape.1 as u32))
    }

    /// The processor's `pixel_values` for one image, `CHW`.
    pub(crate) fn apply(&self, image: &Image) -> Result<Input, ModelError> {
        if self.kind == ProcessorKind::Dinov3 {
            return self.apply_rescaled(image);
        }
        let (resized, own_crop) = self.plan(image.width, image.height);
        let mut current = std::borrow::Cow::Borrowed(image);
        if let Some((width, height)) = resized {
            let limit = u64::from(MAX_IMAGE_SIDE);
            if width == 0 || height == 0 || width > limit || height > limit {
                return Err(ModelError::preprocess(format!(
                    "an image of {}x{} would be resized to {width}x{height}; sides must be from 1 to {MAX_IMAGE_SIDE} pixels",
                    image.width, image.height
                )));
            }
            let (width, height) = (width as u32, height as u32);
            if (width, height) != (image.width, image.height) {
                current = std::borrow::Cow::Owned(if self.pil {
                    resize_pillow(&current, self.filter, width, height)
                } else {
                    resize(&current, self.filter, width, height)
                });
            }
        }
        for (width, height) in own_crop
            .into_iter()
            .chain(self.crop.map(|(height, width)| (width, height)))
        {
            if (current.width, current.height) != (width, height) {
                current = std::borrow::Cow::Owned(center_crop(&current, width, height));
            }
        }
        let (width, height) = (current.width as usize, current.height as usize);
        let plane = width * height;
        let mut data = vec![0.0f32; 3 * plane];
        for (index, pixel) in current.pixels.chunks_exact(3).enumerate() {
            for channel in 0..3 {
                data[channel * plane + index] = self.arithmetic.apply(pixel[channel], channel);
            }
        }
        Ok(Input {
            shape: [3, height, width],
            data: InputData::Values(data),
            original_size: (image.width, image.height),
        })
    }
}

impl ImageProcessor {
    /// DINOv3's order, on libtorch's kernels as transformers' torchvision
    /// backend calls them: the `uint8` image times `rescale_factor` (an
    /// `f32` tensor), `resize` (`interpolate(..., antialias=True)` on the
    /// floats, skipped at the same size), the centre crop (zero padding
    /// where the crop is larger), then `(x - mean) / std` in `f32`.
    fn apply_rescaled(&self, image: &Image) -> Result<Input, ModelError> {
        let failed = |err: tch::TchError| ModelError::preprocess(err.to_string());
        let (resized, _) = self.plan(image.width, image.height);
        let (width, height) = (i64::from(image.width), i64::from(image.height));
        let factor = self.arithmetic.rescale_f64.unwrap_or(1.0);
        let mut pixels = tch::Tensor::f_from_slice(&image.pixels)
            .and_then(|tensor| tensor.f_view([1, height, width, 3]))
            .and_then(|tensor| tensor.f_permute([0, 3, 1, 2]))
            .and_then(|tensor| tensor.f_mul_scalar(factor))
            .map_err(failed)?;
        if let Some((new_width, new_height)) = resized {
            let limit = u64::from(MAX_IMAGE_SIDE);
            if new_width == 0 || new_height == 0 || new_width > limit || new_height > limit {
                return Err(ModelError::preprocess(format!(
                    "an image of {width}x{height} would be resized to {new_width}x{new_height}; sides must be from 1 to {MAX_IMAGE_SIDE} pixels"
                )));
            }
            let size = [new_height as i64, new_width as i64];
            if size != [height, width] {
                pixels = match self.filter {
                    Filter::Bicubic => {
                        pixels.f_internal_upsample_bicubic2d_aa(size, false, None, None)
                    }
                    _ => pixels.f_internal_upsample_bilinear2d_aa(size, false, None, None),
                }
                .map_err(failed)?;
            }
        }
        if let Some((crop_height, crop_width)) = self.crop {
            pixels = center_crop_tensor(&pixels, i64::from(crop_height), i64::from(crop_width))
                .map_err(failed)?;
        }
        if let Some((mean, std)) = &self.arithmetic.normalize {
            let stat = |values: &[f32; 3]| {
                tch::Tensor::f_from_slice(values).and_then(|tensor| tensor.f_view([1, 3, 1, 1]))
            };
            pixels = pixels
                .f_sub(&stat(mean).map_err(failed)?)
                .and_then(|tensor| tensor.f_div(&stat(std)?))
                .map_err(failed)?;
        }
        let size = pixels.size();
        let (out_height, out_width) = (size[2] as usize, size[3] as usize);
        let data = pixels
            .f_contiguous()
            .and_then(|tensor| Vec::<f32>::try_from(tensor.f_flatten(0, -1)?))
            .map_err(failed)?;
        Ok(Input {
            shape: [3, out_height, out_width],
            data: InputData::Values(data),
            original_size: (image.width, image.height),
        })
    }
}

/// transformers' torchvision `center_crop` of `[N, C, H, W]`: zero padding
/// (`(crop - side) // 2` before, the rest after) where the crop is larger,
/// then the crop at `int((side - crop) / 2)`.
fn center_crop_tensor(
    pixels: &tch::Tensor,
    height: i64,
    width: i64,
) -> Result<tch::Tensor, tch::TchError> {
    let size = pixels.size();
    let (side_height, side_width) = (size[2], size[3]);
    let mut pixels = pixels.shallow_clone();
    if height > side_height || width > side_width {
        let before = |crop: i64, side: i64| if crop > side { (crop - side) / 2 } else { 0 };
        let after = |crop: i64, side: i64| {
            if crop > side {
                (crop - side + 1) / 2
            } else {
                0
            }
        };
        pixels = pixels.f_constant_pad_nd([
            before(width, side_width),
            after(width, side_width),
            before(height, side_height),
            after(height, side_height),
        ])?;
    }
    let size = pixels.size();
    let top = (size[2] - height) / 2;
    let left = (size[3] - width) / 2;
    pixels.f_narrow(2, top, height)?.f_narrow(3, left, width)
}

/// torchvision's `center_crop` as transformers calls it: offsets
/// `int((side - crop) / 2)`; a crop larger than the image pads it with
/// zeros, `(crop - side) // 2` before.
fn center_crop(image: &Image, width: u32, height: u32) -> Image {
    let offset = |side: u32, crop: u32| -> i64 {
        if side >= crop {
            i64::from((side - crop) / 2)
        } else {
            -i64::from((crop - side) / 2)
        }
    };
    let (left, top) = (offset(image.width, width), offset(image.height, height));
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    for y in 0..height as i64 {
        let source_y = y + top;
        if source_y < 0 || source_y >= i64::from(image.height) {
            continue;
        }
        for x in 0..width as i64 {
            let source_x = x + left;
            if source_x < 0 || source_x >= i64::from(image.width) {
                continue;
            }
            let from = ((source_y * i64::from(image.width) + source_x) * 3) as usize;
            let to = ((y * i64::from(width) + x) * 3) as usize;
            pixels[to..to + 3].copy_from_slice(&image.pixels[from..from + 3]);
        }
    }
    Image {
        width,
        height,
        pixels,
    }
}

impl Preprocess for ImageProcessor {
    fn preprocess(&self, image: Image) -> Result<Input, ModelError> {
        self.apply(&image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(json: Value, kind: ProcessorKind) -> Result<ImageProcessor, String> {
        ImageProcessor::from_raw(serde_json::from_value(json).unwrap(), kind)
    }

    /// google/vit-base-patch16-224's and facebook/convnext-tiny-224's
    /// legacy files (`feature_extractor_type`, an integer `size`).
    #[test]
    fn legacy_hub_files_read_as_transformers_reads_them() {
        let vit = processor(
            serde_json::json!({"do_normalize": true, "do_resize": true,
                "feature_extractor_type": "ViTFeatureExtractor",
                "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                "resample": 2, "size": 224}),
            ProcessorKind::ConvNext,
        )
        .unwrap();
        assert_eq!(vit.kind, ProcessorKind::Vit);
        assert_eq!(
            vit.size,
            Some(Size::Exact {
                height: 224,
                width: 224
            })
        );
        assert_eq!(vit.arithmetic.normalize, Some(([127.5; 3], [127.5; 3])));
        assert_eq!(vit.fixed_size(), Some((224, 224)));
        let convnext = processor(
            serde_json::json!({"crop_pct": 0.875, "do_normalize": true, "do_resize": true,
                "feature_extractor_type": "ConvNextFeatureExtractor",
                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                "resample": 3, "size": 224}),
            ProcessorKind::Vit,
        )
        .unwrap();
        assert_eq!(convnext.size, Some(Size::ShortestEdge(224)));
        assert_eq!(convnext.filter, Filter::Bicubic);
        assert_eq!(convnext.fixed_size(), Some((224, 224)));
        // 640x480: the short side to int(224 / 0.875) = 256, 341x256, then
        // 224x224 from the centre.
        assert_eq!(
            convnext.plan(640, 480),
            (Some((341, 256)), Some((224, 224)))
        );
    }

    #[test]
    fn bad_processor_files_are_errors_naming_the_field() {
        let cases = [
            (serde_json::json!({"resample": 1}), "`resample` 1"),
            (
                serde_json::json!({"size": {"longest_edge": 5}}),
                "size.longest_edge",
            ),
            (
                serde_json::json!({"size": 0}),
                "`size` must be a whole number",
            ),
            (
                serde_json::json!({"size": 1_000_000}),
                "`size` must be a whole number",
            ),
            (
                serde_json::json!({"image_std": [1, 0, 1]}),
                "`image_std` must not hold 0",
            ),
            (serde_json::json!({"image_mean": "x"}), "`image_mean`"),
            (
                serde_json::json!({"rescale_factor": -1.0}),
                "`rescale_factor`",
            ),
            (
                serde_json::json!({"image_processor_type": "BeitImageProcessor"}),
                "BeitImageProcessor",
            ),
            (serde_json::json!({"do_center_crop": true}), "crop_size"),
        ];
        for (json, expected) in cases {
            let error = processor(json.clone(), ProcessorKind::Vit).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn a_crop_larger_than_the_image_pads_with_zeros() {
        let image = Image::new(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let cropped = center_crop(&image, 4, 3);
        let mut expected = vec![0u8; 4 * 3 * 3];
        expected[(4 + 1) * 3..(4 + 1) * 3 + 6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(cropped.pixels, expected);
    }
}
