//! transformers' `DepthAnythingForDepthEstimation` (Depth Anything V1 and
//! V2) from its `config.json` and weights: a DINOv2 ViT as transformers'
//! `Dinov2Backbone` builds it (patch embedding, `[CLS]` token, position
//! embeddings resized bicubically to the input's grid, pre-norm layers with
//! layer scale; the final layer norm on each `out_indices` stage), the DPT
//! neck (each stage's tokens reassembled into a map, projected and resized
//! by its `reassemble_factors`, then fused from the deepest up through
//! pre-activation residual units and bilinear upsampling) and the depth
//! head (convolutions, upsampling to the input's size, ReLU for
//! `relative` depth or a sigmoid times `max_depth` for `metric`).
//!
//! The repo's `preprocessor_config.json` is DPT's processor (`processor.rs`,
//! `ProcessorKind::Dpt`).
//!
//! ```text
//! <repo>/
//! ├── config.json                model_type depth_anything, backbone_config
//! │                              (model_type dinov2), neck and head sizes
//! ├── preprocessor_config.json   DPTImageProcessor
//! └── model.safetensors          backbone.*, neck.*, head.*
//! ```

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use tch::{TchError, Tensor};

use super::processor::{ImageProcessor, ProcessorKind};
use super::repo::{self, Weights};
use super::vit::{bounded, pair};
use super::{Activation, HfError, layer_norm, linear};

/// transformers' `model_type` of the depth estimators zoo builds and its
/// class (the name in `FAMILIES`).
pub(crate) const DEPTH_ESTIMATORS: &[(&str, &str)] =
    &[("depth_anything", "DepthAnythingForDepthEstimation")];

/// The most patches an input may make (a 7168x7168 input in 14x14 patches).
const MAX_PATCHES: i64 = 1 << 18;

/// `DepthAnythingConfig`'s fields zoo reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
pub(crate) struct DepthAnythingConfig {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    backbone: Option<Value>,
    #[serde(default)]
    backbone_config: Option<Dinov2Config>,
    #[serde(default = "defaults::patch_size")]
    patch_size: Value,
    #[serde(default = "defaults::reassemble_hidden_size")]
    reassemble_hidden_size: i64,
    #[serde(default = "defaults::reassemble_factors")]
    reassemble_factors: Vec<f64>,
    #[serde(default = "defaults::neck_hidden_sizes")]
    neck_hidden_sizes: Vec<i64>,
    #[serde(default = "defaults::fusion_hidden_size")]
    fusion_hidden_size: i64,
    #[serde(default = "defaults::head_in_index")]
    head_in_index: i64,
    #[serde(default = "defaults::head_hidden_size")]
    head_hidden_size: i64,
    #[serde(default = "defaults::depth_estimation_type")]
    depth_estimation_type: String,
    #[serde(default)]
    max_depth: Option<f64>,
}

/// `Dinov2Config`'s fields zoo reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
pub(crate) struct Dinov2Config {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default = "defaults::hidden_size")]
    hidden_size: i64,
    #[serde(default = "defaults::layers")]
    num_hidden_layers: i64,
    #[serde(default = "defaults::heads")]
    num_attention_heads: i64,
    #[serde(default = "defaults::mlp_ratio")]
    mlp_ratio: f64,
    #[serde(default = "defaults::activation")]
    hidden_act: String,
    #[serde(default = "defaults::eps")]
    layer_norm_eps: f64,
    #[serde(default = "defaults::image_size")]
    image_size: Value,
    #[serde(default = "defaults::patch_size")]
    patch_size: Value,
    #[serde(default = "defaults::channels")]
    num_channels: i64,
    #[serde(default = "defaults::yes")]
    qkv_bias: bool,
    #[serde(default)]
    use_swiglu_ffn: bool,
    #[serde(default)]
    out_indices: Option<Vec<i64>>,
    #[serde(default)]
    out_features: Option<Vec<String>>,
    #[serde(default = "defaults::yes")]
    apply_layernorm: bool,
    #[serde(default = "defaults::yes")]
    reshape_hidden_states: bool,
    #[serde(default = "defaults::yes")]
    use_mask_token: bool,
}

mod defaults {
    pub(super) fn patch_size() -> serde_json::Value {
        14.into()
    }
    pub(super) fn reassemble_hidden_size() -> i64 {
        384
    }
    pub(super) fn reassemble_factors() -> Vec<f64> {
        vec![4.0, 2.0, 1.0, 0.5]
    }
    pub(super) fn neck_hidden_sizes() -> Vec<i64> {
        vec![48, 96, 192, 384]
    }
    pub(super) fn fusion_hidden_size() -> i64 {
        64
    }
    pub(super) fn head_in_index() -> i64 {
        -1
    }
    pub(super) fn head_hidden_size() -> i64 {
        32
    }
    pub(super) fn depth_estimation_type() -> String {
        "relative".to_owned()
    }
    pub(super) fn hidden_size() -> i64 {
        768
    }
    pub(super) fn layers() -> i64 {
        12
    }
    pub(super) fn heads() -> i64 {
        12
    }
    pub(super) fn mlp_ratio() -> f64 {
        4.0
    }
    pub(super) fn activation() -> String {
        "gelu".to_owned()
    }
    pub(super) fn eps() -> f64 {
        1e-6
    }
    pub(super) fn image_size() -> serde_json::Value {
        224.into()
    }
    pub(super) fn channels() -> i64 {
        3
    }
    pub(super) fn yes() -> bool {
        true
    }
}

/// A convolution's weight and bias.
type Conv = (Tensor, Option<Tensor>);

struct Layer {
    norm1: (Tensor, Tensor),
    /// Query, key and value stacked: `[3 * hidden, hidden]`.
    qkv: (Tensor, Option<Tensor>),
    output: (Tensor, Tensor),
    scale1: Tensor,
    norm2: (Tensor, Tensor),
    fc1: (Tensor, Tensor),
    fc2: (Tensor, Tensor),
    scale2: Tensor,
}

/// How a reassembled stage is resized.
enum Resize {
    /// `ConvTranspose2d` with kernel and stride `factor`.
    Up(Conv, i64),
    Identity,
    /// `Conv2d` 3x3 with stride `1 / factor`, padding 1.
    Down(Conv, i64),
}

struct Reassemble {
    projection: Conv,
    resize: Resize,
}

/// `DepthAnythingPreActResidualLayer`'s two convolutions.
struct Residual {
    first: Conv,
    second: Conv,
}

struct Fusion {
    projection: Conv,
    residual1: Residual,
    residual2: Residual,
}

/// The head's last activation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DepthType {
    Relative,
    /// A sigmoid times `max_depth`.
    Metric,
}

/// A Depth Anything depth estimator (see the module docs).
pub(crate) struct DepthAnything {
    patch: Conv,
    patch_size: i64,
    cls_token: Tensor,
    /// `[1, 1 + side * side, hidden]`.
    position: Tensor,
    /// The position embeddings' grid side.
    position_side: i64,
    layers: Vec<Layer>,
    norm: Option<(Tensor, Tensor)>,
    /// The hidden states the neck takes, in stage order (0 is the
    /// embeddings').
    stages: Vec<usize>,
    hidden: i64,
    heads: i64,
    eps: f64,
    activation: Activation,
    reassemble: Vec<Reassemble>,
    convs: Vec<Tensor>,
    fusion: Vec<Fusion>,
    head_index: usize,
    head: [Conv; 3],
    depth_type: DepthType,
    max_depth: f64,
}

/// The stage indices (0 is the embeddings', `stem`) a backbone's
/// `out_indices`, else `out_features`, name, in stage order.
fn stages(config: &Dinov2Config, layers: i64) -> Result<Vec<usize>, String> {
    let count = layers + 1;
    let indices: Vec<i64> = match (&config.out_indices, &config.out_features) {
        (Some(indices), _) => indices.clone(),
        (None, Some(features)) => features
            .iter()
            .map(|name| match name.as_str() {
                "stem" => Ok(0),
                name => name
                    .strip_prefix("stage")
                    .and_then(|number| number.parse::<i64>().ok())
                    .filter(|number| (1..count).contains(number))
                    .ok_or_else(|| {
                        format!(
                            "`backbone_config.out_features` names `{name}`, not a stage of `stem`, `stage1` to `stage{layers}`"
                        )
                    }),
            })
            .collect::<Result<_, _>>()?,
        (None, None) => vec![layers],
    };
    let mut stages = Vec::with_capacity(indices.len());
    for index in indices {
        let stage = if index < 0 { count + index } else { index };
        if !(0..count).contains(&stage) {
            return Err(format!(
                "`backbone_config.out_indices` holds `{index}`; the backbone has stages 0 to {layers}"
            ));
        }
        stages.push(stage as usize);
    }
    stages.sort_unstable();
    if stages.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err("`backbone_config.out_indices` names a stage twice".to_owned());
    }
    Ok(stages)
}

fn check_eps(eps: f64, field: &str) -> Result<f64, String> {
    if eps.is_finite() && eps > 0.0 && eps < 1.0 {
        Ok(eps)
    } else {
        Err(format!("`{field}` must be from 0 to 1, got `{eps}`"))
    }
}

impl DepthAnything {
    /// Builds the network `config` describes from `weights` (every tensor
    /// taken, shapes checked); a config error is its message, a weights
    /// error the weights'.
    pub(crate) fn build(
        config: DepthAnythingConfig,
        weights: &mut Weights,
    ) -> Result<DepthAnything, BuildError> {
        let bad = |message: String| BuildError::Config(message);
        if config
            .backbone
            .as_ref()
            .is_some_and(|value| !value.is_null())
        {
            return Err(bad(
                "`backbone` names a timm or Hub backbone; zoo builds the DINOv2 of `backbone_config` only".to_owned(),
            ));
        }
        let backbone = config.backbone_config.ok_or_else(|| {
            bad(
                "`backbone_config` is missing; zoo builds Depth Anything's DINOv2 backbone from it"
                    .to_owned(),
            )
        })?;
        if let Some(kind) = backbone.model_type.as_deref()
            && kind != "dinov2"
        {
            return Err(bad(format!(
                "`backbone_config.model_type` is `{kind}`; zoo builds Depth Anything on `dinov2` only"
            )));
        }
        let hidden = bounded(
            backbone.hidden_size,
            "backbone_config.hidden_size",
            1..=16384,
        )
        .map_err(bad)?;
        let layers = bounded(
            backbone.num_hidden_layers,
            "backbone_config.num_hidden_layers",
            1..=256,
        )
        .map_err(bad)?;
        let heads = bounded(
            backbone.num_attention_heads,
            "backbone_config.num_attention_heads",
            1..=hidden,
        )
        .map_err(bad)?;
        if hidden % heads != 0 {
            return Err(bad(format!(
                "`backbone_config.hidden_size` {hidden} must be a multiple of `num_attention_heads` {heads}"
            )));
        }
        let ratio = backbone.mlp_ratio;
        if !(ratio.is_finite() && ratio > 0.0 && ratio <= 64.0) {
            return Err(bad(format!(
                "`backbone_config.mlp_ratio` must be from 0 to 64, got `{ratio}`"
            )));
        }
        let intermediate = (hidden as f64 * ratio) as i64;
        if intermediate < 1 {
            return Err(bad(format!(
                "`backbone_config.mlp_ratio` {ratio} leaves no hidden features"
            )));
        }
        if backbone.use_swiglu_ffn {
            return Err(bad(
                "`backbone_config.use_swiglu_ffn` true: zoo builds DINOv2's GELU MLP only (Depth Anything V2's repos use it)".to_owned(),
            ));
        }
        if backbone.num_channels != 3 {
            return Err(bad(format!(
                "`backbone_config.num_channels` must be 3 (zoo feeds RGB images), got `{}`",
                backbone.num_channels
            )));
        }
        if backbone.reshape_hidden_states {
            return Err(bad(
                "`backbone_config.reshape_hidden_states` must be false: Depth Anything's neck takes the backbone's tokens".to_owned(),
            ));
        }
        let eps =
            check_eps(backbone.layer_norm_eps, "backbone_config.layer_norm_eps").map_err(bad)?;
        let activation = Activation::named(&backbone.hidden_act).map_err(bad)?;
        let image_size = pair(&backbone.image_size, "backbone_config.image_size").map_err(bad)?;
        let backbone_patch =
            pair(&backbone.patch_size, "backbone_config.patch_size").map_err(bad)?;
        let patch = pair(&config.patch_size, "patch_size").map_err(bad)?;
        if backbone_patch != patch || patch.0 != patch.1 {
            return Err(bad(format!(
                "`patch_size` {patch:?} and `backbone_config.patch_size` {backbone_patch:?} must be one square patch"
            )));
        }
        let patch_size = patch.0;
        if image_size.0 != image_size.1 || image_size.0 < patch_size {
            return Err(bad(format!(
                "`backbone_config.image_size` {image_size:?} must be a square of at least one patch"
            )));
        }
        let position_side = image_size.0 / patch_size;
        if position_side * position_side > MAX_PATCHES {
            return Err(bad(format!(
                "{} position embeddings is beyond the {MAX_PATCHES} zoo builds",
                position_side * position_side
            )));
        }
        let stages = stages(&backbone, layers).map_err(bad)?;
        let count = config.neck_hidden_sizes.len();
        if count == 0 || count > 16 {
            return Err(bad(format!(
                "`neck_hidden_sizes` must list from 1 to 16 sizes, got {count}"
            )));
        }
        if stages.len() != count || config.reassemble_factors.len() != count {
            return Err(bad(format!(
                "`neck_hidden_sizes` lists {count} sizes, `reassemble_factors` {} and the backbone's `out_indices` {} stages; they must be as many",
                config.reassemble_factors.len(),
                stages.len()
            )));
        }
        let reassemble_hidden = bounded(
            config.reassemble_hidden_size,
            "reassemble_hidden_size",
            1..=16384,
        )
        .map_err(bad)?;
        if reassemble_hidden != hidden {
            return Err(bad(format!(
                "`reassemble_hidden_size` {reassemble_hidden} must be the backbone's `hidden_size` {hidden}"
            )));
        }
        let fusion_hidden =
            bounded(config.fusion_hidden_size, "fusion_hidden_size", 2..=16384).map_err(bad)?;
        let head_hidden =
            bounded(config.head_hidden_size, "head_hidden_size", 1..=16384).map_err(bad)?;
        let head_index = if config.head_in_index < 0 {
            count as i64 + config.head_in_index
        } else {
            config.head_in_index
        };
        if !(0..count as i64).contains(&head_index) {
            return Err(bad(format!(
                "`head_in_index` must pick one of the {count} fused maps, got `{}`",
                config.head_in_index
            )));
        }
        let depth_type = match config.depth_estimation_type.as_str() {
            "relative" => DepthType::Relative,
            "metric" => DepthType::Metric,
            other => {
                return Err(bad(format!(
                    "`depth_estimation_type` must be `relative` or `metric`, got `{other}`"
                )));
            }
        };
        // transformers' default (1) when absent or null.
        let max_depth = config.max_depth.unwrap_or(1.0);
        if !max_depth.is_finite() {
            return Err(bad(format!(
                "`max_depth` must be a finite number, got `{max_depth}`"
            )));
        }

        let mut take =
            |name: &str, shape: &[i64]| weights.take(name, shape).map_err(BuildError::Weights);
        let embeddings = "backbone.embeddings";
        let patch = (
            take(
                &format!("{embeddings}.patch_embeddings.projection.weight"),
                &[hidden, 3, patch_size, patch_size],
            )?,
            Some(take(
                &format!("{embeddings}.patch_embeddings.projection.bias"),
                &[hidden],
            )?),
        );
        let cls_token = take(&format!("{embeddings}.cls_token"), &[1, 1, hidden])?;
        if backbone.use_mask_token {
            // Used in pre-training only.
            let _mask_token = take(&format!("{embeddings}.mask_token"), &[1, hidden])?;
        }
        let position = take(
            &format!("{embeddings}.position_embeddings"),
            &[1, position_side * position_side + 1, hidden],
        )?;
        let mut built = Vec::with_capacity(layers as usize);
        for index in 0..layers {
            let prefix = format!("backbone.encoder.layer.{index}");
            let mut pair_of = |name: &str, shape: &[i64], rows: i64| {
                Ok::<_, BuildError>((
                    take(&format!("{prefix}.{name}.weight"), shape)?,
                    take(&format!("{prefix}.{name}.bias"), &[rows])?,
                ))
            };
            let norm1 = pair_of("norm1", &[hidden], hidden)?;
            let output = pair_of("attention.output.dense", &[hidden, hidden], hidden)?;
            let norm2 = pair_of("norm2", &[hidden], hidden)?;
            let fc1 = pair_of("mlp.fc1", &[intermediate, hidden], intermediate)?;
            let fc2 = pair_of("mlp.fc2", &[hidden, intermediate], hidden)?;
            let mut qkv_weights = Vec::with_capacity(3);
            let mut qkv_biases = Vec::with_capacity(3);
            for part in ["query", "key", "value"] {
                let name = format!("{prefix}.attention.attention.{part}");
                qkv_weights.push(take(&format!("{name}.weight"), &[hidden, hidden])?);
                if backbone.qkv_bias {
                    qkv_biases.push(take(&format!("{name}.bias"), &[hidden])?);
                }
            }
            let fused = |parts: &[Tensor]| {
                Tensor::f_cat(parts, 0).map_err(|err| BuildError::Config(err.to_string()))
            };
            let qkv = (
                fused(&qkv_weights)?,
                if backbone.qkv_bias {
                    Some(fused(&qkv_biases)?)
                } else {
                    None
                },
            );
            built.push(Layer {
                norm1,
                qkv,
                output,
                scale1: take(&format!("{prefix}.layer_scale1.lambda1"), &[hidden])?,
                norm2,
                fc1,
                fc2,
                scale2: take(&format!("{prefix}.layer_scale2.lambda1"), &[hidden])?,
            });
        }
        let norm = (
            take("backbone.layernorm.weight", &[hidden])?,
            take("backbone.layernorm.bias", &[hidden])?,
        );
        let norm = backbone.apply_layernorm.then_some(norm);

        let mut conv = |name: &str, shape: &[i64], bias: bool| {
            Ok::<_, BuildError>((
                take(&format!("{name}.weight"), shape)?,
                if bias {
                    Some(take(&format!("{name}.bias"), &[shape[0]])?)
                } else {
                    None
                },
            ))
        };
        let mut reassemble = Vec::with_capacity(count);
        let mut convs = Vec::with_capacity(count);
        for (index, (&channels, &factor)) in config
            .neck_hidden_sizes
            .iter()
            .zip(&config.reassemble_factors)
            .enumerate()
        {
            let channels = bounded(channels, "neck_hidden_sizes", 1..=16384).map_err(bad)?;
            let prefix = format!("neck.reassemble_stage.layers.{index}");
            let projection = conv(
                &format!("{prefix}.projection"),
                &[channels, hidden, 1, 1],
                true,
            )?;
            let resize = if !(factor.is_finite() && factor > 0.0 && factor <= 64.0) {
                return Err(bad(format!(
                    "`reassemble_factors` must be from 0 to 64, got `{factor}`"
                )));
            } else if factor > 1.0 {
                if factor.fract() != 0.0 {
                    return Err(bad(format!(
                        "`reassemble_factors` above 1 must be whole numbers (a transposed convolution's kernel), got `{factor}`"
                    )));
                }
                let factor = factor as i64;
                // ConvTranspose2d's weight is [in, out, k, k].
                Resize::Up(
                    conv(
                        &format!("{prefix}.resize"),
                        &[channels, channels, factor, factor],
                        true,
                    )?,
                    factor,
                )
            } else if factor == 1.0 {
                Resize::Identity
            } else {
                let stride = (1.0 / factor) as i64;
                Resize::Down(
                    conv(
                        &format!("{prefix}.resize"),
                        &[channels, channels, 3, 3],
                        true,
                    )?,
                    stride,
                )
            };
            reassemble.push(Reassemble { projection, resize });
            convs.push(
                conv(
                    &format!("neck.convs.{index}"),
                    &[fusion_hidden, channels, 3, 3],
                    false,
                )?
                .0,
            );
        }
        let mut fusion = Vec::with_capacity(count);
        for index in 0..count {
            let prefix = format!("neck.fusion_stage.layers.{index}");
            let square = [fusion_hidden, fusion_hidden, 3, 3];
            let mut residual = |name: &str| {
                Ok::<_, BuildError>(Residual {
                    first: conv(&format!("{prefix}.{name}.convolution1"), &square, true)?,
                    second: conv(&format!("{prefix}.{name}.convolution2"), &square, true)?,
                })
            };
            let residual1 = residual("residual_layer1")?;
            let residual2 = residual("residual_layer2")?;
            fusion.push(Fusion {
                projection: conv(
                    &format!("{prefix}.projection"),
                    &[fusion_hidden, fusion_hidden, 1, 1],
                    true,
                )?,
                residual1,
                residual2,
            });
        }
        let half = fusion_hidden / 2;
        let head = [
            conv("head.conv1", &[half, fusion_hidden, 3, 3], true)?,
            conv("head.conv2", &[head_hidden, half, 3, 3], true)?,
            conv("head.conv3", &[1, head_hidden, 1, 1], true)?,
        ];
        Ok(DepthAnything {
            patch,
            patch_size,
            cls_token,
            position,
            position_side,
            layers: built,
            norm,
            stages,
            hidden,
            heads,
            eps,
            activation,
            reassemble,
            convs,
            fusion,
            head_index: head_index as usize,
            head,
            depth_type,
            max_depth,
        })
    }

    /// The patch side: inputs are cut to whole patches.
    pub(crate) fn patch_size(&self) -> i64 {
        self.patch_size
    }

    /// The predicted depth of `pixels` (`[N, 3, H, W]`): `[N, h, w]`, `h`
    /// and `w` the input's sides cut to whole patches.
    pub(crate) fn forward(&self, pixels: &Tensor) -> Result<Tensor, HfError> {
        let _no_grad = tch::no_grad_guard();
        self.run(pixels).map_err(HfError::Forward)
    }

    fn run(&self, pixels: &Tensor) -> Result<Tensor, TchError> {
        let size = pixels.size();
        let [batch, 3, height, width] = size[..] else {
            return Err(TchError::Shape(format!(
                "Depth Anything takes [batch, 3, height, width], got {size:?}"
            )));
        };
        let (grid_height, grid_width) = (height / self.patch_size, width / self.patch_size);
        if grid_height < 1 || grid_width < 1 || grid_height * grid_width > MAX_PATCHES {
            return Err(TchError::Shape(format!(
                "a {width}x{height} input makes {grid_width}x{grid_height} patches of {}; Depth Anything takes from 1 to {MAX_PATCHES}",
                self.patch_size
            )));
        }
        // The backbone.
        let tokens = pixels
            .f_conv2d(
                &self.patch.0,
                self.patch.1.as_ref(),
                [self.patch_size, self.patch_size],
                [0, 0],
                [1, 1],
                1,
            )?
            .f_flatten(2, -1)?
            .f_transpose(1, 2)?;
        let cls = self.cls_token.f_expand([batch, 1, self.hidden], false)?;
        let mut xs = Tensor::f_cat(&[cls, tokens], 1)?.f_add(&self.position(height, width)?)?;
        let mut kept = Vec::with_capacity(self.stages.len());
        let mut keep = |stage: usize, xs: &Tensor| -> Result<(), TchError> {
            if self.stages.contains(&stage) {
                kept.push(match &self.norm {
                    Some(norm) => layer_norm(xs, norm, self.eps)?,
                    None => xs.shallow_clone(),
                });
            }
            Ok(())
        };
        keep(0, &xs)?;
        for (index, layer) in self.layers.iter().enumerate() {
            xs = self.layer(layer, &xs)?;
            keep(index + 1, &xs)?;
        }
        // The neck: reassemble.
        let mut features = Vec::with_capacity(kept.len());
        for ((state, reassemble), conv) in kept.iter().zip(&self.reassemble).zip(&self.convs) {
            let map = state
                .f_narrow(1, 1, grid_height * grid_width)?
                .f_reshape([batch, grid_height, grid_width, self.hidden])?
                .f_permute([0, 3, 1, 2])?
                .f_contiguous()?;
            let map = conv2d(&map, &reassemble.projection, 1, 0)?;
            let map = match &reassemble.resize {
                Resize::Up((weight, bias), factor) => map.f_conv_transpose2d(
                    weight,
                    bias.as_ref(),
                    [*factor, *factor],
                    [0, 0],
                    [0, 0],
                    1,
                    [1, 1],
                )?,
                Resize::Identity => map,
                Resize::Down(weights, stride) => conv2d(&map, weights, *stride, 1)?,
            };
            features.push(map.f_conv2d(conv, None::<&Tensor>, [1, 1], [1, 1], [1, 1], 1)?);
        }
        // The neck: fuse, from the deepest up.
        features.reverse();
        let mut fused: Vec<Tensor> = Vec::with_capacity(features.len());
        for (index, (feature, fusion)) in features.iter().zip(&self.fusion).enumerate() {
            let size = features.get(index + 1).map(|next| {
                let size = next.size();
                [size[2], size[3]]
            });
            let (hidden, residual) = match fused.last() {
                None => (feature.shallow_clone(), None),
                Some(previous) => (previous.shallow_clone(), Some(feature)),
            };
            fused.push(self.fuse(fusion, &hidden, residual, size)?);
        }
        // The head.
        let features = &fused[self.head_index];
        let depth = conv2d(features, &self.head[0], 1, 1)?.f_upsample_bilinear2d(
            [grid_height * self.patch_size, grid_width * self.patch_size],
            true,
            None,
            None,
        )?;
        let depth = conv2d(&depth, &self.head[1], 1, 1)?.f_relu()?;
        let depth = conv2d(&depth, &self.head[2], 1, 0)?;
        let depth = match self.depth_type {
            DepthType::Relative => depth.f_relu()?,
            DepthType::Metric => depth.f_sigmoid()?,
        }
        .f_mul_scalar(self.max_depth)?;
        depth.f_squeeze_dim(1)
    }

    /// `Dinov2Embeddings.interpolate_pos_encoding`: the table as it is for
    /// a square input of its own grid, else its patch part resized
    /// (bicubic, `align_corners` false) to the input's grid.
    fn position(&self, height: i64, width: i64) -> Result<Tensor, TchError> {
        let (grid_height, grid_width) = (height / self.patch_size, width / self.patch_size);
        let side = self.position_side;
        if grid_height * grid_width == side * side && height == width {
            return Ok(self.position.shallow_clone());
        }
        let cls = self.position.f_narrow(1, 0, 1)?;
        let patches = self
            .position
            .f_narrow(1, 1, side * side)?
            .f_reshape([1, side, side, self.hidden])?
            .f_permute([0, 3, 1, 2])?
            .f_upsample_bicubic2d([grid_height, grid_width], false, None, None)?
            .f_permute([0, 2, 3, 1])?
            .f_reshape([1, -1, self.hidden])?;
        Tensor::f_cat(&[cls, patches], 1)
    }

    fn layer(&self, layer: &Layer, xs: &Tensor) -> Result<Tensor, TchError> {
        let size = xs.size();
        let [batch, tokens, channels] = size[..] else {
            return Err(TchError::Shape(format!(
                "a DINOv2 layer takes [batch, tokens, channels], got {size:?}"
            )));
        };
        let normed = layer_norm(xs, &layer.norm1, self.eps)?;
        let qkv = normed
            .f_linear(&layer.qkv.0, layer.qkv.1.as_ref())?
            .f_reshape([batch, tokens, 3, self.heads, channels / self.heads])?
            .f_permute([2, 0, 3, 1, 4])?;
        let (q, k, v) = (qkv.f_get(0)?, qkv.f_get(1)?, qkv.f_get(2)?);
        let attended = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<&Tensor>,
            0.0,
            false,
            None::<f64>,
            false,
        )?
        .f_transpose(1, 2)?
        .f_reshape([batch, tokens, channels])?;
        let xs = linear(&attended, &layer.output)?
            .f_mul(&layer.scale1)?
            .f_add(xs)?;
        let normed = layer_norm(&xs, &layer.norm2, self.eps)?;
        let hidden = self.activation.apply(&linear(&normed, &layer.fc1)?)?;
        linear(&hidden, &layer.fc2)?
            .f_mul(&layer.scale2)?
            .f_add(&xs)
    }

    /// `DepthAnythingFeatureFusionLayer`: the residual (resized bilinearly
    /// to `hidden`'s size if it differs) through the first unit added, the
    /// second unit, upsampling (to `size`, else twice; bilinear with
    /// `align_corners`), the projection.
    fn fuse(
        &self,
        fusion: &Fusion,
        hidden: &Tensor,
        residual: Option<&Tensor>,
        size: Option<[i64; 2]>,
    ) -> Result<Tensor, TchError> {
        let mut hidden = hidden.shallow_clone();
        let hidden_size = hidden.size();
        if let Some(residual) = residual {
            let residual = if residual.size() != hidden_size {
                residual.f_upsample_bilinear2d(
                    [hidden_size[2], hidden_size[3]],
                    false,
                    None,
                    None,
                )?
            } else {
                residual.shallow_clone()
            };
            hidden = hidden.f_add(&pre_activation(&fusion.residual1, &residual)?)?;
        }
        let hidden = pre_activation(&fusion.residual2, &hidden)?;
        let size = size.unwrap_or([hidden_size[2] * 2, hidden_size[3] * 2]);
        let hidden = hidden.f_upsample_bilinear2d(size, true, None, None)?;
        conv2d(&hidden, &fusion.projection, 1, 0)
    }
}

/// `DepthAnythingPreActResidualLayer`: ReLU, 3x3 convolution, ReLU, 3x3
/// convolution, plus the input.
fn pre_activation(residual: &Residual, xs: &Tensor) -> Result<Tensor, TchError> {
    let hidden = conv2d(&xs.f_relu()?, &residual.first, 1, 1)?;
    conv2d(&hidden.f_relu()?, &residual.second, 1, 1)?.f_add(xs)
}

fn conv2d(
    xs: &Tensor,
    (weight, bias): &Conv,
    stride: i64,
    padding: i64,
) -> Result<Tensor, TchError> {
    xs.f_conv2d(
        weight,
        bias.as_ref(),
        [stride, stride],
        [padding, padding],
        [1, 1],
        1,
    )
}

/// Why [`DepthAnything::build`] failed.
pub(crate) enum BuildError {
    /// A field of `config.json`: what is wrong with it.
    Config(String),
    /// The weights do not fit.
    Weights(HfError),
}

/// A depth estimator read from a Hugging Face repo: its network and image
/// processor.
pub(crate) struct HfDepthEstimator {
    /// transformers' class (`DepthAnythingForDepthEstimation`).
    pub(crate) class: &'static str,
    pub(crate) network: DepthAnything,
    pub(crate) processor: ImageProcessor,
}

impl std::fmt::Debug for HfDepthEstimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfDepthEstimator")
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

impl HfDepthEstimator {
    /// Reads the repo in `dir`: `config.json`, the weights and
    /// `preprocessor_config.json`.
    pub(crate) fn load(dir: &Path) -> Result<HfDepthEstimator, HfError> {
        let path = dir.join("config.json");
        let config: DepthAnythingConfig = repo::read_json(dir, "config.json")?;
        let model_type = config.model_type.clone().unwrap_or_default();
        let class = DEPTH_ESTIMATORS
            .iter()
            .find(|(kind, _)| *kind == model_type)
            .map(|(_, class)| *class)
            .ok_or_else(|| HfError::Unsupported {
                path: path.clone(),
                model_type: model_type.clone(),
                known: DEPTH_ESTIMATORS
                    .iter()
                    .map(|(kind, _)| format!("`{kind}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                what: "depth estimators",
            })?;
        // The class must be a transformers row of FAMILIES.
        let family = super::super::family(class).map_err(|err| HfError::Config {
            path: path.clone(),
            message: err.to_string(),
        })?;
        debug_assert_eq!(family.task, super::super::Task::TransformersDepth);
        let mut weights = repo::read_weights(dir)?;
        let network = DepthAnything::build(config, &mut weights).map_err(|err| match err {
            BuildError::Config(message) => HfError::Config { path, message },
            BuildError::Weights(err) => err,
        })?;
        weights.finish()?;
        let processor = ImageProcessor::read(dir, ProcessorKind::Dpt)?;
        if processor.kind != ProcessorKind::Dpt {
            return Err(HfError::Config {
                path: dir.join("preprocessor_config.json"),
                message: format!(
                    "Depth Anything takes `DPTImageProcessor`'s images, not {:?}'s",
                    processor.kind
                ),
            });
        }
        Ok(HfDepthEstimator {
            class,
            network,
            processor,
        })
    }
}
