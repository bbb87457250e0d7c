//! transformers' `DINOv3ViTModel` (`model_type` `dinov3_vit`) from its
//! `config.json` and weights: the patch embedding, the `[CLS]` and register
//! tokens, pre-norm layers whose attention rotates the patch tokens'
//! queries and keys by 2D rotary position embeddings (RoPE; the `[CLS]` and
//! register tokens are not rotated), layer scale on both branches, a GELU
//! MLP or a gated (SwiGLU) one (`use_gated_mlp`, as dinov3-vith16plus has),
//! the final layer norm, and the pooler (`[CLS]` of the normed sequence).
//!
//! The network takes any input size: the patch grid, and the RoPE table
//! with it, follows the image (`image_size` is not read, as transformers'
//! forward does not read it). The RoPE table (patch centres in `[-1, 1]`,
//! `2π · centre · θ^(-4i/head_dim)` per axis) is computed with libtorch's
//! own kernels in the order transformers computes it, so the angles are
//! transformers' to the bit. Attention runs through libtorch's
//! `scaled_dot_product_attention`.
//!
//! The training-only fields (`pos_embed_shift`, `pos_embed_jitter`,
//! `pos_embed_rescale`, `drop_path_rate`, `attention_dropout`), the
//! initialisation-only `layerscale_value` and `initializer_range`, and the
//! backbone's (`out_features`, `apply_layernorm`, `reshape_hidden_states`)
//! do not change `DINOv3ViTModel`'s forward and are not read.

use serde::Deserialize;
use serde_json::Value;
use tch::{Device, Kind, TchError, Tensor};

use super::repo::Weights;
use super::vit::{bounded, pair};
use super::{Activation, HfError, layer_norm};

/// `DINOv3ViTConfig`'s fields zoo reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
pub(crate) struct Dinov3Config {
    #[serde(default = "defaults::hidden_size")]
    hidden_size: i64,
    #[serde(default = "defaults::intermediate")]
    intermediate_size: i64,
    #[serde(default = "defaults::layers")]
    num_hidden_layers: i64,
    #[serde(default = "defaults::heads")]
    num_attention_heads: i64,
    #[serde(default = "defaults::activation")]
    hidden_act: String,
    #[serde(default = "defaults::eps")]
    layer_norm_eps: f64,
    #[serde(default = "defaults::rope_theta")]
    rope_theta: f64,
    #[serde(default = "defaults::patch_size")]
    patch_size: Value,
    #[serde(default = "defaults::channels")]
    num_channels: i64,
    #[serde(default = "defaults::yes")]
    query_bias: bool,
    #[serde(default)]
    key_bias: bool,
    #[serde(default = "defaults::yes")]
    value_bias: bool,
    #[serde(default = "defaults::yes")]
    proj_bias: bool,
    #[serde(default = "defaults::yes")]
    mlp_bias: bool,
    #[serde(default)]
    use_gated_mlp: bool,
    #[serde(default)]
    num_register_tokens: i64,
}

mod defaults {
    pub(super) fn hidden_size() -> i64 {
        384
    }
    pub(super) fn intermediate() -> i64 {
        1536
    }
    pub(super) fn layers() -> i64 {
        12
    }
    pub(super) fn heads() -> i64 {
        6
    }
    pub(super) fn activation() -> String {
        "gelu".to_owned()
    }
    pub(super) fn eps() -> f64 {
        1e-5
    }
    pub(super) fn rope_theta() -> f64 {
        100.0
    }
    pub(super) fn patch_size() -> serde_json::Value {
        16.into()
    }
    pub(super) fn channels() -> i64 {
        3
    }
    pub(super) fn yes() -> bool {
        true
    }
}

/// The most register tokens zoo builds (the released models have 4).
const MAX_REGISTERS: i64 = 1024;

/// The most patches an input may make (a 16384x16384 image in 16x16
/// patches).
pub(crate) const MAX_PATCHES: i64 = 1 << 20;

/// A linear layer whose bias a config may leave out.
type Linear = (Tensor, Option<Tensor>);

fn linear(xs: &Tensor, (weight, bias): &Linear) -> Result<Tensor, TchError> {
    xs.f_linear(weight, bias.as_ref())
}

/// The feed-forward block: `down(act(up(x)))`, or with `use_gated_mlp`
/// `down(act(gate(x)) * up(x))`.
struct Mlp {
    gate: Option<Linear>,
    up: Linear,
    down: Linear,
}

struct Layer {
    norm1: (Tensor, Tensor),
    /// Query, key and value stacked: `[3 * hidden, hidden]`, the biases a
    /// config leaves out as zeros.
    qkv: Linear,
    output: Linear,
    scale1: Tensor,
    norm2: (Tensor, Tensor),
    mlp: Mlp,
    scale2: Tensor,
}

/// What a forward gives: transformers' `last_hidden_state` (`[N, tokens,
/// hidden]`), `pooler_output` (`[N, hidden]`) and, when asked for, one of
/// `hidden_states`.
pub(crate) struct Features {
    pub(crate) last_hidden_state: Tensor,
    pub(crate) pooler_output: Tensor,
    pub(crate) hidden_state: Option<Tensor>,
}

/// A DINOv3 ViT (see the module docs).
pub(crate) struct Dinov3 {
    patch: (Tensor, Tensor),
    patch_size: (i64, i64),
    cls_token: Tensor,
    registers: Tensor,
    /// `1 / rope_theta ** arange(0, 1, 4 / head_dim)`: `[head_dim / 4]`.
    inverse_frequencies: Tensor,
    layers: Vec<Layer>,
    norm: (Tensor, Tensor),
    heads: i64,
    eps: f64,
    activation: Activation,
}

impl Dinov3 {
    /// Builds the network `config` describes from `weights` (every tensor
    /// taken, shapes checked).
    pub(crate) fn build(config: Dinov3Config, weights: &mut Weights) -> Result<Dinov3, String> {
        let hidden = bounded(config.hidden_size, "hidden_size", 1..=16384)?;
        let layers = bounded(config.num_hidden_layers, "num_hidden_layers", 1..=256)?;
        let heads = bounded(
            config.num_attention_heads,
            "num_attention_heads",
            1..=hidden,
        )?;
        if hidden % heads != 0 {
            return Err(format!(
                "`hidden_size` {hidden} must be a multiple of `num_attention_heads` {heads}"
            ));
        }
        let head_dim = hidden / heads;
        if head_dim % 4 != 0 {
            return Err(format!(
                "`hidden_size` / `num_attention_heads` ({head_dim}) must be a multiple of 4: DINOv3's RoPE splits each head in four (transformers cannot run it either)"
            ));
        }
        let intermediate = bounded(config.intermediate_size, "intermediate_size", 1..=65536)?;
        let registers = bounded(
            config.num_register_tokens,
            "num_register_tokens",
            0..=MAX_REGISTERS,
        )?;
        if config.num_channels != 3 {
            return Err(format!(
                "`num_channels` must be 3 (zoo feeds RGB images), got `{}`",
                config.num_channels
            ));
        }
        let eps = config.layer_norm_eps;
        if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
            return Err(format!("`layer_norm_eps` must be from 0 to 1, got `{eps}`"));
        }
        let theta = config.rope_theta;
        if !(theta.is_finite() && theta > 0.0 && theta <= 1e9) {
            return Err(format!(
                "`rope_theta` must be a number above 0 and at most 1e9, got `{theta}`"
            ));
        }
        let activation = Activation::named(&config.hidden_act)?;
        let patch_size = pair(&config.patch_size, "patch_size")?;
        let take = |weights: &mut Weights, name: &str, shape: &[i64]| {
            weights.take(name, shape).map_err(|err| err.to_string())
        };
        let norm_of = |weights: &mut Weights, prefix: &str| {
            Ok::<_, String>((
                take(weights, &format!("{prefix}.weight"), &[hidden])?,
                take(weights, &format!("{prefix}.bias"), &[hidden])?,
            ))
        };
        let linear_of = |weights: &mut Weights, prefix: &str, shape: [i64; 2], bias: bool| {
            Ok::<_, String>((
                take(weights, &format!("{prefix}.weight"), &shape)?,
                if bias {
                    Some(take(weights, &format!("{prefix}.bias"), &shape[..1])?)
                } else {
                    None
                },
            ))
        };
        let patch = (
            take(
                weights,
                "embeddings.patch_embeddings.weight",
                &[hidden, 3, patch_size.0, patch_size.1],
            )?,
            take(weights, "embeddings.patch_embeddings.bias", &[hidden])?,
        );
        let cls_token = take(weights, "embeddings.cls_token", &[1, 1, hidden])?;
        // Pre-training's masked patches only: the forward never reads it.
        let _mask_token = take(weights, "embeddings.mask_token", &[1, 1, hidden])?;
        let register_tokens = take(
            weights,
            "embeddings.register_tokens",
            &[1, registers, hidden],
        )?;
        let failed = |err: TchError| err.to_string();
        // The Hub's files (and transformers' `save_pretrained`) name the
        // layers `layer.N`; transformers 5's module tree is `model.layer.N`,
        // which a state dict saved from it would hold.
        let layer_root = if weights.rows("model.layer.0.norm1.weight").is_some() {
            "model.layer"
        } else {
            "layer"
        };
        let mut built = Vec::with_capacity(layers as usize);
        for index in 0..layers {
            let prefix = format!("{layer_root}.{index}");
            let attention = format!("{prefix}.attention");
            let mut parts = Vec::new();
            let mut biases = Vec::new();
            for (part, bias) in [
                ("q_proj", config.query_bias),
                ("k_proj", config.key_bias),
                ("v_proj", config.value_bias),
            ] {
                let (weight, bias) = linear_of(
                    weights,
                    &format!("{attention}.{part}"),
                    [hidden, hidden],
                    bias,
                )?;
                parts.push(weight);
                biases.push(bias);
            }
            let qkv_bias = if biases.iter().any(Option::is_some) {
                let filled = biases
                    .into_iter()
                    .map(|bias| match bias {
                        Some(bias) => Ok(bias),
                        None => Tensor::f_zeros([hidden], (Kind::Float, Device::Cpu)),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failed)?;
                Some(Tensor::f_cat(&filled, 0).map_err(failed)?)
            } else {
                None
            };
            let mlp = format!("{prefix}.mlp");
            built.push(Layer {
                norm1: norm_of(weights, &format!("{prefix}.norm1"))?,
                qkv: (Tensor::f_cat(&parts, 0).map_err(failed)?, qkv_bias),
                output: linear_of(
                    weights,
                    &format!("{attention}.o_proj"),
                    [hidden, hidden],
                    config.proj_bias,
                )?,
                scale1: take(
                    weights,
                    &format!("{prefix}.layer_scale1.lambda1"),
                    &[hidden],
                )?,
                norm2: norm_of(weights, &format!("{prefix}.norm2"))?,
                mlp: Mlp {
                    gate: if config.use_gated_mlp {
                        Some(linear_of(
                            weights,
                            &format!("{mlp}.gate_proj"),
                            [intermediate, hidden],
                            config.mlp_bias,
                        )?)
                    } else {
                        None
                    },
                    up: linear_of(
                        weights,
                        &format!("{mlp}.up_proj"),
                        [intermediate, hidden],
                        config.mlp_bias,
                    )?,
                    down: linear_of(
                        weights,
                        &format!("{mlp}.down_proj"),
                        [hidden, intermediate],
                        config.mlp_bias,
                    )?,
                },
                scale2: take(
                    weights,
                    &format!("{prefix}.layer_scale2.lambda1"),
                    &[hidden],
                )?,
            });
        }
        let norm = norm_of(weights, "norm")?;
        // transformers: `1 / base ** torch.arange(0, 1, 4 / head_dim)` in
        // f32 (a non-persistent buffer, never in the weights).
        let inverse_frequencies = Tensor::f_arange_start_step(
            0.0,
            1.0,
            4.0 / head_dim as f64,
            (Kind::Float, Device::Cpu),
        )
        .and_then(|exponents| Tensor::f_pow_scalar(theta, &exponents))
        .and_then(|powers| powers.f_reciprocal())
        .map_err(failed)?;
        if inverse_frequencies.size() != [head_dim / 4] {
            return Err(format!(
                "`hidden_size` / `num_attention_heads` ({head_dim}) gives no whole RoPE table"
            ));
        }
        Ok(Dinov3 {
            patch,
            patch_size,
            cls_token,
            registers: register_tokens,
            inverse_frequencies,
            layers: built,
            norm,
            heads,
            eps,
            activation,
        })
    }

    /// The patch size, `(height, width)`: the smallest input.
    pub(crate) fn patch_size(&self) -> (i64, i64) {
        self.patch_size
    }

    /// How many hidden states the network has (the embeddings' output and
    /// each layer's).
    pub(crate) fn hidden_states(&self) -> usize {
        self.layers.len() + 1
    }

    /// The outputs of `pixels` (`[N, 3, H, W]`), with hidden state `keep`
    /// when asked for.
    pub(crate) fn forward(
        &self,
        pixels: &Tensor,
        keep: Option<usize>,
    ) -> Result<Features, HfError> {
        let _no_grad = tch::no_grad_guard();
        self.run(pixels, keep).map_err(HfError::Forward)
    }

    /// `(cos, sin)` of the RoPE angles of a `rows` x `columns` patch grid,
    /// each `[rows * columns, head_dim]`, as transformers'
    /// `DINOv3ViTRopePositionEmbedding` computes them (in eval mode).
    fn rope(&self, rows: i64, columns: i64) -> Result<(Tensor, Tensor), TchError> {
        let options = (Kind::Float, Device::Cpu);
        // Patch centres: arange(0.5, n) / n, then 2 * c - 1.
        let centres = |count: i64| {
            Tensor::f_arange_start_step(0.5, count as f64, 1.0, options)?.f_div_scalar(count)
        };
        let grid = Tensor::f_meshgrid_indexing(&[centres(rows)?, centres(columns)?], "ij")?;
        let coords = Tensor::f_stack(&grid, -1)?
            .f_flatten(0, 1)?
            .f_mul_scalar(2.0)?
            .f_sub_scalar(1.0)?;
        let angles = coords
            .f_unsqueeze(-1)?
            .f_mul_scalar(2.0 * std::f64::consts::PI)?
            .f_mul(&self.inverse_frequencies.f_view([1, 1, -1])?)?
            .f_flatten(1, 2)?
            .f_tile([2])?;
        Ok((angles.f_cos()?, angles.f_sin()?))
    }

    fn run(&self, pixels: &Tensor, keep: Option<usize>) -> Result<Features, TchError> {
        let size = pixels.size();
        let [batch, 3, height, width] = size[..] else {
            return Err(TchError::Shape(format!(
                "DINOv3 takes [batch, 3, height, width], got {size:?}"
            )));
        };
        let (rows, columns) = (height / self.patch_size.0, width / self.patch_size.1);
        if rows < 1 || columns < 1 || rows * columns > MAX_PATCHES {
            return Err(TchError::Shape(format!(
                "an input of {width}x{height} makes {rows}x{columns} patches of {}x{}; DINOv3 takes from 1 to {MAX_PATCHES}",
                self.patch_size.1, self.patch_size.0
            )));
        }
        let patches = pixels
            .f_conv2d(
                &self.patch.0,
                Some(&self.patch.1),
                [self.patch_size.0, self.patch_size.1],
                [0, 0],
                [1, 1],
                1,
            )?
            .f_flatten(2, -1)?
            .f_transpose(1, 2)?;
        let cls = self.cls_token.f_expand([batch, -1, -1], false)?;
        let registers = self.registers.f_expand([batch, -1, -1], false)?;
        let mut xs = Tensor::f_cat(&[cls, registers, patches], 1)?;
        let rope = self.rope(rows, columns)?;
        let mut kept = (keep == Some(0)).then(|| xs.shallow_clone());
        for (index, layer) in self.layers.iter().enumerate() {
            xs = self.layer(layer, &xs, &rope)?;
            if keep == Some(index + 1) {
                kept = Some(xs.shallow_clone());
            }
        }
        if let Some(keep) = keep
            && kept.is_none()
        {
            return Err(TchError::Shape(format!(
                "hidden state {keep} of {} asked for",
                self.hidden_states()
            )));
        }
        let last_hidden_state = layer_norm(&xs, &self.norm, self.eps)?;
        Ok(Features {
            pooler_output: last_hidden_state.f_select(1, 0)?,
            last_hidden_state,
            hidden_state: kept,
        })
    }

    /// transformers' `apply_rotary_pos_emb` on `[batch, heads, tokens,
    /// head_dim]`: the last `cos.size(0)` tokens (the patches) rotated,
    /// the others (`[CLS]` and registers) as they are.
    fn rotate(xs: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor, TchError> {
        let tokens = xs.size()[2];
        let patches = cos.size()[0];
        let prefix = xs.f_narrow(2, 0, tokens - patches)?;
        let grid = xs.f_narrow(2, tokens - patches, patches)?;
        let half = grid.size()[3] / 2;
        let rotated_half = Tensor::f_cat(
            &[
                grid.f_narrow(3, half, half)?.f_neg()?,
                grid.f_narrow(3, 0, half)?,
            ],
            -1,
        )?;
        let grid = grid.f_mul(cos)?.f_add(&rotated_half.f_mul(sin)?)?;
        Tensor::f_cat(&[prefix, grid], 2)
    }

    fn layer(
        &self,
        layer: &Layer,
        xs: &Tensor,
        rope: &(Tensor, Tensor),
    ) -> Result<Tensor, TchError> {
        let size = xs.size();
        let [batch, tokens, channels] = size[..] else {
            return Err(TchError::Shape(format!(
                "a DINOv3 layer takes [batch, tokens, channels], got {size:?}"
            )));
        };
        let head_dim = channels / self.heads;
        let normed = layer_norm(xs, &layer.norm1, self.eps)?;
        let qkv = linear(&normed, &layer.qkv)?
            .f_reshape([batch, tokens, 3, self.heads, head_dim])?
            .f_permute([2, 0, 3, 1, 4])?;
        let q = Self::rotate(&qkv.f_get(0)?, rope)?;
        let k = Self::rotate(&qkv.f_get(1)?, rope)?;
        let v = qkv.f_get(2)?;
        let attended = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<&Tensor>,
            0.0,
            false,
            Some((head_dim as f64).powf(-0.5)),
            false,
        )?
        .f_transpose(1, 2)?
        .f_reshape([batch, tokens, channels])?;
        let xs = linear(&attended, &layer.output)?
            .f_mul(&layer.scale1)?
            .f_add(xs)?;
        let normed = layer_norm(&xs, &layer.norm2, self.eps)?;
        let up = linear(&normed, &layer.mlp.up)?;
        let hidden = match &layer.mlp.gate {
            Some(gate) => self.activation.apply(&linear(&normed, gate)?)?.f_mul(&up)?,
            None => self.activation.apply(&up)?,
        };
        linear(&hidden, &layer.mlp.down)?
            .f_mul(&layer.scale2)?
            .f_add(&xs)
    }
}
