//! transformers' dual encoders from their `config.json` and weights:
//!
//! - `CLIPModel` (`model_type` `clip`): the vision tower (patch and class
//!   embeddings, the pre-norm, pre-norm encoder layers, the post-norm of
//!   the class token, `visual_projection`), the text tower (token and
//!   position embeddings, causal encoder layers, the final norm, the pooled
//!   end-of-text token, `text_projection`) and `logits_per_image`: the
//!   cosine similarities of the projected embeddings times
//!   `exp(logit_scale)`;
//! - `SiglipModel` (`model_type` `siglip`, SigLIP and the fixed-resolution
//!   SigLIP 2 checkpoints): the vision tower without class token or
//!   pre-norm, the post-norm of every token and the attention-pooling head
//!   (a learned probe attending to them, `nn.MultiheadAttention`, a norm
//!   and an MLP); the text tower bidirectional (blind to padding), pooled
//!   at the last position, then its `head`; the logits also add
//!   `logit_bias`;
//! - the towers of `OwlViTForObjectDetection` (`model_type` `owlvit`,
//!   `owlvit.py`): CLIP's, under `owlvit.`, the vision pre-norm named
//!   `pre_layernorm`, the text pooled at the highest token id, and the
//!   vision tower's every token post-normed ([`Clip::vision_tokens`]).
//!
//! Query, key and value are fused into one projection per layer, and
//! attention is libtorch's `scaled_dot_product_attention`.

use serde::Deserialize;
use serde_json::Value;
use tch::{Kind, TchError, Tensor};

use super::repo::Weights;
use super::vit::{bounded, pair};
use super::{Activation, HfError, layer_norm, linear};

/// One tower's fields of `CLIPTextConfig` / `CLIPVisionConfig` (the
/// fields of the other tower are ignored).
#[derive(Debug, Default, Deserialize)]
struct TowerConfig {
    #[serde(default)]
    hidden_size: Option<i64>,
    #[serde(default)]
    intermediate_size: Option<i64>,
    #[serde(default)]
    num_hidden_layers: Option<i64>,
    #[serde(default)]
    num_attention_heads: Option<i64>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    layer_norm_eps: Option<f64>,
    // Text.
    #[serde(default)]
    vocab_size: Option<i64>,
    #[serde(default)]
    max_position_embeddings: Option<i64>,
    #[serde(default)]
    eos_token_id: Option<Value>,
    #[serde(default)]
    projection_size: Option<i64>,
    // Vision.
    #[serde(default)]
    image_size: Option<Value>,
    #[serde(default)]
    patch_size: Option<Value>,
    #[serde(default)]
    num_channels: Option<i64>,
    #[serde(default)]
    vision_use_head: Option<bool>,
}

/// `CLIPConfig`'s and `SiglipConfig`'s fields zoo reads; transformers'
/// defaults where absent.
#[derive(Debug, Deserialize)]
pub(crate) struct ClipConfig {
    #[serde(default)]
    text_config: Option<TowerConfig>,
    #[serde(default)]
    text_config_dict: Option<TowerConfig>,
    #[serde(default)]
    vision_config: Option<TowerConfig>,
    #[serde(default)]
    vision_config_dict: Option<TowerConfig>,
    #[serde(default)]
    projection_dim: Option<i64>,
}

/// An encoder layer's tensors.
struct Layer {
    norm1: (Tensor, Tensor),
    /// Query, key and value stacked: `[3 * hidden, hidden]`, `[3 * hidden]`.
    qkv: (Tensor, Tensor),
    out: (Tensor, Tensor),
    norm2: (Tensor, Tensor),
    fc1: (Tensor, Tensor),
    fc2: (Tensor, Tensor),
}

/// A transformer encoder (either tower's).
struct Encoder {
    layers: Vec<Layer>,
    heads: i64,
    eps: f64,
    activation: Activation,
}

/// The sizes of a tower, checked.
struct Sizes {
    hidden: i64,
    intermediate: i64,
    layers: i64,
    heads: i64,
    eps: f64,
    activation: Activation,
}

fn sizes(
    config: &TowerConfig,
    defaults: (i64, i64, i64, i64),
    (activation, eps): (&str, f64),
    tower: &str,
) -> Result<Sizes, String> {
    let named = |field: &str| format!("{tower}.{field}");
    let hidden = bounded(
        config.hidden_size.unwrap_or(defaults.0),
        &named("hidden_size"),
        1..=16384,
    )?;
    let intermediate = bounded(
        config.intermediate_size.unwrap_or(defaults.1),
        &named("intermediate_size"),
        1..=65536,
    )?;
    let layers = bounded(
        config.num_hidden_layers.unwrap_or(defaults.2),
        &named("num_hidden_layers"),
        1..=256,
    )?;
    let heads = bounded(
        config.num_attention_heads.unwrap_or(defaults.3),
        &named("num_attention_heads"),
        1..=hidden,
    )?;
    if hidden % heads != 0 {
        return Err(format!(
            "`{}` {hidden} must be a multiple of `{}` {heads}",
            named("hidden_size"),
            named("num_attention_heads")
        ));
    }
    let eps = config.layer_norm_eps.unwrap_or(eps);
    if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
        return Err(format!(
            "`{}` must be from 0 to 1, got `{eps}`",
            named("layer_norm_eps")
        ));
    }
    let activation = Activation::named(config.hidden_act.as_deref().unwrap_or(activation))
        .map_err(|err| format!("{tower}: {err}"))?;
    Ok(Sizes {
        hidden,
        intermediate,
        layers,
        heads,
        eps,
        activation,
    })
}

fn take(weights: &mut Weights, name: &str, shape: &[i64]) -> Result<Tensor, String> {
    weights.take(name, shape).map_err(|err| err.to_string())
}

fn pair_of(
    weights: &mut Weights,
    prefix: &str,
    shape: &[i64],
    rows: i64,
) -> Result<(Tensor, Tensor), String> {
    Ok((
        take(weights, &format!("{prefix}.weight"), shape)?,
        take(weights, &format!("{prefix}.bias"), &[rows])?,
    ))
}

impl Encoder {
    fn build(weights: &mut Weights, prefix: &str, sizes: &Sizes) -> Result<Encoder, String> {
        let (hidden, intermediate) = (sizes.hidden, sizes.intermediate);
        let mut layers = Vec::with_capacity(sizes.layers as usize);
        for index in 0..sizes.layers {
            let layer = format!("{prefix}.encoder.layers.{index}");
            let mut qkv_weights = Vec::new();
            let mut qkv_biases = Vec::new();
            for part in ["q_proj", "k_proj", "v_proj"] {
                let (weight, bias) = pair_of(
                    weights,
                    &format!("{layer}.self_attn.{part}"),
                    &[hidden, hidden],
                    hidden,
                )?;
                qkv_weights.push(weight);
                qkv_biases.push(bias);
            }
            let fused = |parts: &[Tensor]| Tensor::f_cat(parts, 0).map_err(|err| err.to_string());
            layers.push(Layer {
                norm1: pair_of(weights, &format!("{layer}.layer_norm1"), &[hidden], hidden)?,
                qkv: (fused(&qkv_weights)?, fused(&qkv_biases)?),
                out: pair_of(
                    weights,
                    &format!("{layer}.self_attn.out_proj"),
                    &[hidden, hidden],
                    hidden,
                )?,
                norm2: pair_of(weights, &format!("{layer}.layer_norm2"), &[hidden], hidden)?,
                fc1: pair_of(
                    weights,
                    &format!("{layer}.mlp.fc1"),
                    &[intermediate, hidden],
                    intermediate,
                )?,
                fc2: pair_of(
                    weights,
                    &format!("{layer}.mlp.fc2"),
                    &[hidden, intermediate],
                    hidden,
                )?,
            });
        }
        Ok(Encoder {
            layers,
            heads: sizes.heads,
            eps: sizes.eps,
            activation: sizes.activation,
        })
    }

    /// Every layer on `xs` (`[N, tokens, hidden]`); `mask` is the boolean
    /// attention mask (`true` attends), else attention is `causal` or full.
    fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
    ) -> Result<Tensor, TchError> {
        let mut xs = xs.shallow_clone();
        for layer in &self.layers {
            xs = self.layer(layer, &xs, mask, causal)?;
        }
        Ok(xs)
    }

    fn layer(
        &self,
        layer: &Layer,
        xs: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
    ) -> Result<Tensor, TchError> {
        let size = xs.size();
        let [batch, tokens, channels] = size[..] else {
            return Err(TchError::Shape(format!(
                "a CLIP layer takes [batch, tokens, channels], got {size:?}"
            )));
        };
        let normed = layer_norm(xs, &layer.norm1, self.eps)?;
        let qkv = linear(&normed, &layer.qkv)?
            .f_reshape([batch, tokens, 3, self.heads, channels / self.heads])?
            .f_permute([2, 0, 3, 1, 4])?;
        let (q, k, v) = (qkv.f_get(0)?, qkv.f_get(1)?, qkv.f_get(2)?);
        let attended = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            mask,
            0.0,
            causal && mask.is_none(),
            None::<f64>,
            false,
        )?
        .f_transpose(1, 2)?
        .f_reshape([batch, tokens, channels])?;
        let xs = linear(&attended, &layer.out)?.f_add(xs)?;
        let normed = layer_norm(&xs, &layer.norm2, self.eps)?;
        let hidden = self.activation.apply(&linear(&normed, &layer.fc1)?)?;
        linear(&hidden, &layer.fc2)?.f_add(&xs)
    }
}

/// Which dual encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dual {
    /// `CLIPModel`.
    Clip,
    /// `SiglipModel`.
    Siglip,
    /// The CLIP towers of `OwlViTForObjectDetection`.
    OwlVit,
}

/// SigLIP's attention-pooling head (`SiglipMultiheadAttentionPoolingHead`).
struct PoolingHead {
    probe: Tensor,
    /// `in_proj_weight`, `in_proj_bias`: query, key and value stacked.
    in_proj: (Tensor, Tensor),
    out_proj: (Tensor, Tensor),
    norm: (Tensor, Tensor),
    fc1: (Tensor, Tensor),
    fc2: (Tensor, Tensor),
}

/// How the text tower picks its pooled token (`CLIPTextTransformer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    /// `eos_token_id` 2 (configs before transformers' PR #24773): the
    /// highest id's first position.
    HighestId,
    /// The first position of this end-of-text id (position 0 when absent).
    FirstEos(i64),
    /// The last position (SigLIP's).
    Last,
}

/// A `CLIPModel` or `SiglipModel` (see the module docs).
pub(crate) struct Clip {
    dual: Dual,
    patch: (Tensor, Option<Tensor>),
    patch_size: (i64, i64),
    image_size: (i64, i64),
    /// CLIP's class token and pre-norm.
    class_embedding: Option<Tensor>,
    pre_norm: Option<(Tensor, Tensor)>,
    vision_positions: Tensor,
    vision: Encoder,
    post_norm: (Tensor, Tensor),
    /// CLIP's `visual_projection`.
    visual_projection: Option<Tensor>,
    /// SigLIP's attention-pooling head.
    pooling_head: Option<PoolingHead>,
    vision_heads: i64,
    token_embedding: Tensor,
    text_positions: Tensor,
    text: Encoder,
    final_norm: (Tensor, Tensor),
    /// CLIP's `text_projection` (no bias) or SigLIP's `head`.
    text_projection: (Tensor, Option<Tensor>),
    logit_scale: Tensor,
    logit_bias: Option<Tensor>,
    vocab: i64,
    pooling: Pooling,
}

impl Clip {
    /// Builds the `dual` network `config` describes from `weights` (every
    /// tensor taken, shapes checked).
    pub(crate) fn build(
        dual: Dual,
        config: ClipConfig,
        weights: &mut Weights,
    ) -> Result<Clip, String> {
        let text_config = config
            .text_config
            .or(config.text_config_dict)
            .unwrap_or_default();
        let vision_config = config
            .vision_config
            .or(config.vision_config_dict)
            .unwrap_or_default();
        let siglip = dual == Dual::Siglip;
        let owl = dual == Dual::OwlVit;
        let norms = if siglip {
            ("gelu_pytorch_tanh", 1e-6)
        } else {
            ("quick_gelu", 1e-5)
        };
        let text_defaults = if siglip {
            (768, 3072, 12, 12)
        } else {
            (512, 2048, 12, 8)
        };
        let text = sizes(&text_config, text_defaults, norms, "text_config")?;
        let vision = sizes(&vision_config, (768, 3072, 12, 12), norms, "vision_config")?;
        let projection = if siglip {
            bounded(
                text_config.projection_size.unwrap_or(text.hidden),
                "text_config.projection_size",
                1..=16384,
            )?
        } else {
            bounded(
                config.projection_dim.unwrap_or(512),
                "projection_dim",
                1..=16384,
            )?
        };
        if siglip && projection != vision.hidden {
            return Err(format!(
                "`text_config.projection_size` {projection} must be the vision tower's `hidden_size` {}, the size of its embeddings",
                vision.hidden
            ));
        }
        if siglip && vision_config.vision_use_head == Some(false) {
            return Err(
                "`vision_config.vision_use_head` is false: the model has no image embeddings (transformers' `get_image_features` gives none)".to_owned(),
            );
        }
        let vocab = bounded(
            text_config
                .vocab_size
                .unwrap_or(if siglip { 32000 } else { 49408 }),
            "text_config.vocab_size",
            1..=1 << 22,
        )?;
        let positions = bounded(
            text_config.max_position_embeddings.unwrap_or(if siglip {
                64
            } else if owl {
                16
            } else {
                77
            }),
            "text_config.max_position_embeddings",
            1..=1 << 16,
        )?;
        let pooling = match (&text_config.eos_token_id, siglip) {
            // `OwlViTTextTransformer` pools at the highest id, whatever
            // the end-of-text id.
            _ if owl => Pooling::HighestId,
            (_, true) => Pooling::Last,
            (None, false) => Pooling::FirstEos(49407),
            (Some(value), false) => match value.as_i64() {
                Some(2) => Pooling::HighestId,
                Some(id) if (0..vocab).contains(&id) => Pooling::FirstEos(id),
                _ => {
                    return Err(format!(
                        "`text_config.eos_token_id` must be one token id below `vocab_size` {vocab}, got `{value}`"
                    ));
                }
            },
        };
        if vision_config.num_channels.unwrap_or(3) != 3 {
            return Err(format!(
                "`vision_config.num_channels` must be 3 (zoo feeds RGB images), got `{}`",
                vision_config.num_channels.unwrap_or(3)
            ));
        }
        let image_size = pair(
            vision_config
                .image_size
                .as_ref()
                .unwrap_or(&Value::from(if owl { 768 } else { 224 })),
            "vision_config.image_size",
        )?;
        let patch_size = pair(
            vision_config
                .patch_size
                .as_ref()
                .unwrap_or(&Value::from(if siglip { 16 } else { 32 })),
            "vision_config.patch_size",
        )?;
        if patch_size.0 > image_size.0 || patch_size.1 > image_size.1 {
            return Err(format!(
                "`vision_config.patch_size` {patch_size:?} must not exceed `image_size` {image_size:?}"
            ));
        }
        let patches = (image_size.0 / patch_size.0) * (image_size.1 / patch_size.1);
        if patches > 1 << 20 {
            return Err(format!(
                "{patches} patches is beyond the 1048576 zoo builds"
            ));
        }
        let root = if owl { "owlvit." } else { "" };
        let v = &format!("{root}vision_model");
        let t = &format!("{root}text_model");
        let hidden = vision.hidden;
        let patch_weight = take(
            weights,
            &format!("{v}.embeddings.patch_embedding.weight"),
            &[hidden, 3, patch_size.0, patch_size.1],
        )?;
        let patch_bias = if siglip {
            Some(take(
                weights,
                &format!("{v}.embeddings.patch_embedding.bias"),
                &[hidden],
            )?)
        } else {
            None
        };
        let (class_embedding, pre_norm) = if siglip {
            (None, None)
        } else {
            (
                Some(take(
                    weights,
                    &format!("{v}.embeddings.class_embedding"),
                    &[hidden],
                )?),
                Some(pair_of(
                    weights,
                    &format!("{v}.{}", if owl { "pre_layernorm" } else { "pre_layrnorm" }),
                    &[hidden],
                    hidden,
                )?),
            )
        };
        let vision_positions = take(
            weights,
            &format!("{v}.embeddings.position_embedding.weight"),
            &[patches + i64::from(!siglip), hidden],
        )?;
        let vision_encoder = Encoder::build(weights, v, &vision)?;
        let post_norm = pair_of(weights, &format!("{v}.post_layernorm"), &[hidden], hidden)?;
        let (visual_projection, pooling_head) = if siglip {
            let head = format!("{v}.head");
            let intermediate = vision.intermediate;
            let pooling_head = PoolingHead {
                probe: take(weights, &format!("{head}.probe"), &[1, 1, hidden])?,
                in_proj: (
                    take(
                        weights,
                        &format!("{head}.attention.in_proj_weight"),
                        &[3 * hidden, hidden],
                    )?,
                    take(
                        weights,
                        &format!("{head}.attention.in_proj_bias"),
                        &[3 * hidden],
                    )?,
                ),
                out_proj: pair_of(
                    weights,
                    &format!("{head}.attention.out_proj"),
                    &[hidden, hidden],
                    hidden,
                )?,
                norm: pair_of(weights, &format!("{head}.layernorm"), &[hidden], hidden)?,
                fc1: pair_of(
                    weights,
                    &format!("{head}.mlp.fc1"),
                    &[intermediate, hidden],
                    intermediate,
                )?,
                fc2: pair_of(
                    weights,
                    &format!("{head}.mlp.fc2"),
                    &[hidden, intermediate],
                    hidden,
                )?,
            };
            (None, Some(pooling_head))
        } else {
            (
                Some(take(
                    weights,
                    &format!("{root}visual_projection.weight"),
                    &[projection, hidden],
                )?),
                None,
            )
        };
        let token_embedding = take(
            weights,
            &format!("{t}.embeddings.token_embedding.weight"),
            &[vocab, text.hidden],
        )?;
        let text_positions = take(
            weights,
            &format!("{t}.embeddings.position_embedding.weight"),
            &[positions, text.hidden],
        )?;
        let text_encoder = Encoder::build(weights, t, &text)?;
        let final_norm = pair_of(
            weights,
            &format!("{t}.final_layer_norm"),
            &[text.hidden],
            text.hidden,
        )?;
        let text_projection = if siglip {
            let (weight, bias) = pair_of(
                weights,
                &format!("{t}.head"),
                &[projection, text.hidden],
                projection,
            )?;
            (weight, Some(bias))
        } else {
            (
                take(
                    weights,
                    &format!("{root}text_projection.weight"),
                    &[projection, text.hidden],
                )?,
                None,
            )
        };
        let (logit_scale, logit_bias) = if siglip {
            (
                take(weights, "logit_scale", &[1])?,
                Some(take(weights, "logit_bias", &[1])?),
            )
        } else {
            (take(weights, &format!("{root}logit_scale"), &[])?, None)
        };
        Ok(Clip {
            dual,
            patch: (patch_weight, patch_bias),
            patch_size,
            image_size,
            class_embedding,
            pre_norm,
            vision_positions,
            vision: vision_encoder,
            post_norm,
            visual_projection,
            pooling_head,
            vision_heads: vision.heads,
            token_embedding,
            text_positions,
            text: text_encoder,
            final_norm,
            text_projection,
            logit_scale,
            logit_bias,
            vocab,
            pooling,
        })
    }

    /// The input size the vision tower takes, `(height, width)`.
    pub(crate) fn image_size(&self) -> (i64, i64) {
        self.image_size
    }

    /// The most tokens a text may have (`max_position_embeddings`).
    pub(crate) fn max_tokens(&self) -> i64 {
        self.text_positions.size()[0]
    }

    /// `get_image_features`: the projected (unnormalised) embeddings of
    /// `pixels` (`[N, 3, H, W]`), `[N, projection]`.
    pub(crate) fn image_features(&self, pixels: &Tensor) -> Result<Tensor, HfError> {
        self.run_vision(pixels).map_err(HfError::Forward)
    }

    /// `vision_model`'s `last_hidden_state` post-normed, as
    /// `OwlViTForObjectDetection` takes it: `[N, 1 + patches, hidden]`.
    pub(crate) fn vision_tokens(&self, pixels: &Tensor) -> Result<Tensor, TchError> {
        let xs = self.encode_vision(pixels)?;
        layer_norm(&xs, &self.post_norm, self.vision.eps)
    }

    /// The vision tower's width and `layer_norm_eps`.
    pub(crate) fn vision_width(&self) -> (i64, f64) {
        (self.post_norm.0.size()[0], self.vision.eps)
    }

    /// The text tower's width and its projection's.
    pub(crate) fn text_widths(&self) -> (i64, i64) {
        (
            self.final_norm.0.size()[0],
            self.text_projection.0.size()[0],
        )
    }

    /// The patch grid, `(rows, columns)`.
    pub(crate) fn patch_grid(&self) -> (i64, i64) {
        (
            self.image_size.0 / self.patch_size.0,
            self.image_size.1 / self.patch_size.1,
        )
    }

    fn run_vision(&self, pixels: &Tensor) -> Result<Tensor, TchError> {
        let xs = self.encode_vision(pixels)?;
        match (&self.pooling_head, &self.visual_projection) {
            (Some(head), _) => {
                let xs = layer_norm(&xs, &self.post_norm, self.vision.eps)?;
                self.pool(head, &xs)
            }
            (None, Some(projection)) => {
                let pooled = layer_norm(&xs.f_select(1, 0)?, &self.post_norm, self.vision.eps)?;
                pooled.f_linear(projection, None::<&Tensor>)
            }
            (None, None) => Err(TchError::Shape(
                "the vision tower has neither a projection nor a pooling head".to_owned(),
            )),
        }
    }

    /// The vision encoder's output (`last_hidden_state`).
    fn encode_vision(&self, pixels: &Tensor) -> Result<Tensor, TchError> {
        let size = pixels.size();
        let [batch, _, height, width] = size[..] else {
            return Err(TchError::Shape(format!(
                "the vision tower takes [batch, 3, height, width], got {size:?}"
            )));
        };
        if (height, width) != self.image_size {
            return Err(TchError::Shape(format!(
                "input image size ({height}*{width}) doesn't match model ({}*{})",
                self.image_size.0, self.image_size.1
            )));
        }
        let patches = pixels
            .f_conv2d(
                &self.patch.0,
                self.patch.1.as_ref(),
                [self.patch_size.0, self.patch_size.1],
                [0, 0],
                [1, 1],
                1,
            )?
            .f_flatten(2, -1)?
            .f_transpose(1, 2)?;
        let xs = match &self.class_embedding {
            Some(class) => {
                let hidden = class.size()[0];
                let class = class.f_expand([batch, 1, hidden], false)?;
                Tensor::f_cat(&[class, patches], 1)?
            }
            None => patches,
        }
        .f_add(&self.vision_positions)?;
        let xs = match &self.pre_norm {
            Some(norm) => layer_norm(&xs, norm, self.vision.eps)?,
            None => xs,
        };
        self.vision.forward(&xs, None, false)
    }

    /// SigLIP's attention-pooling head on `xs` (`[N, tokens, hidden]`):
    /// `[N, hidden]`.
    fn pool(&self, head: &PoolingHead, xs: &Tensor) -> Result<Tensor, TchError> {
        let size = xs.size();
        let [batch, tokens, hidden] = size[..] else {
            return Err(TchError::Shape(format!(
                "the pooling head takes [batch, tokens, hidden], got {size:?}"
            )));
        };
        let heads = self.vision_heads;
        let weights = head.in_proj.0.f_chunk(3, 0)?;
        let biases = head.in_proj.1.f_chunk(3, 0)?;
        let ([wq, wk, wv], [bq, bk, bv]) = (&weights[..], &biases[..]) else {
            return Err(TchError::Shape(
                "`in_proj_weight` and `in_proj_bias` do not split in three".to_owned(),
            ));
        };
        let split = |xs: &Tensor, rows: i64| -> Result<Tensor, TchError> {
            xs.f_reshape([batch, rows, heads, hidden / heads])?
                .f_transpose(1, 2)
        };
        let probe = head.probe.f_expand([batch, 1, hidden], false)?;
        let q = split(&probe.f_linear(wq, Some(bq))?, 1)?;
        let k = split(&xs.f_linear(wk, Some(bk))?, tokens)?;
        let v = split(&xs.f_linear(wv, Some(bv))?, tokens)?;
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
        .f_reshape([batch, 1, hidden])?;
        let xs = linear(&attended, &head.out_proj)?;
        let normed = layer_norm(&xs, &head.norm, self.vision.eps)?;
        let fed = linear(
            &self.vision.activation.apply(&linear(&normed, &head.fc1)?)?,
            &head.fc2,
        )?;
        xs.f_add(&fed)?.f_select(1, 0)
    }

    /// `get_text_features`: the projected (unnormalised) embeddings of
    /// token rows of one length with their attention masks (`1` for a
    /// token, `0` for padding), `[N, projection]`.
    pub(crate) fn text_features(
        &self,
        ids: &[Vec<i64>],
        attention: &[Vec<i64>],
    ) -> Result<Tensor, HfError> {
        let length = ids.first().map_or(0, Vec::len);
        let fail = |message: String| HfError::Forward(TchError::Shape(message));
        if ids.iter().chain(attention).any(|row| row.len() != length)
            || ids.len() != attention.len()
        {
            return Err(fail("token rows of different lengths".to_owned()));
        }
        if length as i64 > self.max_tokens() {
            return Err(fail(format!(
                "a text of {length} tokens is longer than the {} the model takes (`max_position_embeddings`); shorten the prompt or set `transformers_processor_kwargs.truncation` to true",
                self.max_tokens()
            )));
        }
        if let Some(id) = ids
            .iter()
            .flatten()
            .find(|id| !(0..self.vocab).contains(*id))
        {
            return Err(fail(format!(
                "token id {id} is outside the model's vocabulary of {}",
                self.vocab
            )));
        }
        self.run_text(ids, attention).map_err(HfError::Forward)
    }

    fn run_text(&self, ids: &[Vec<i64>], attention: &[Vec<i64>]) -> Result<Tensor, TchError> {
        let (rows, length) = (ids.len() as i64, ids.first().map_or(0, Vec::len) as i64);
        let flat: Vec<i64> = ids.iter().flatten().copied().collect();
        let tokens = Tensor::f_from_slice(&flat)?.f_view([rows, length])?;
        let xs = self
            .token_embedding
            .f_index_select(0, &tokens.f_flatten(0, -1)?)?
            .f_view([rows, length, -1])?
            .f_add(&self.text_positions.f_narrow(0, 0, length)?)?;
        let padded = attention.iter().flatten().any(|value| *value == 0);
        let mask = if padded {
            // No key that is padding (and CLIP's causal mask).
            let keys: Vec<bool> = attention
                .iter()
                .flatten()
                .map(|value| *value != 0)
                .collect();
            let keys = Tensor::f_from_slice(&keys)?.f_view([rows, 1, 1, length])?;
            if self.dual != Dual::Siglip {
                let causal =
                    Tensor::f_ones([length, length], (Kind::Bool, tch::Device::Cpu))?.f_tril(0)?;
                Some(keys.f_logical_and(&causal)?)
            } else {
                Some(keys)
            }
        } else {
            None
        };
        let xs = self
            .text
            .forward(&xs, mask.as_ref(), self.dual != Dual::Siglip)?;
        let xs = layer_norm(&xs, &self.final_norm, self.text.eps)?;
        let positions: Vec<i64> = ids
            .iter()
            .map(|row| match self.pooling {
                Pooling::HighestId => {
                    let highest = row.iter().copied().max().unwrap_or(0);
                    row.iter().position(|id| *id == highest).unwrap_or(0) as i64
                }
                Pooling::FirstEos(eos) => row.iter().position(|id| *id == eos).unwrap_or(0) as i64,
                Pooling::Last => row.len().saturating_sub(1) as i64,
            })
            .collect();
        let index = Tensor::f_from_slice(&positions)?;
        let rows_index = Tensor::f_arange(rows, (Kind::Int64, tch::Device::Cpu))?;
        let pooled = xs.f_index(&[Some(rows_index), Some(index)])?;
        pooled.f_linear(&self.text_projection.0, self.text_projection.1.as_ref())
    }

    /// `logits_per_image` (`[images, texts]`) of image and text features:
    /// each normalised by its L2 norm, their products times
    /// `exp(logit_scale)`, plus SigLIP's `logit_bias`.
    pub(crate) fn logits(&self, images: &Tensor, texts: &Tensor) -> Result<Tensor, HfError> {
        let run = || -> Result<Tensor, TchError> {
            let normed = |xs: &Tensor| -> Result<Tensor, TchError> {
                let norm = xs
                    .f_pow_tensor_scalar(2)?
                    .f_sum_dim_intlist([-1i64].as_slice(), true, Kind::Float)?
                    .f_pow_tensor_scalar(0.5)?;
                xs.f_div(&norm)
            };
            let per_text = normed(texts)?
                .f_matmul(&normed(images)?.f_transpose(0, 1)?)?
                .f_mul(&self.logit_scale.f_exp()?)?;
            let per_text = match &self.logit_bias {
                Some(bias) => per_text.f_add(bias)?,
                None => per_text,
            };
            per_text.f_transpose(0, 1)?.f_contiguous()
        };
        run().map_err(HfError::Forward)
    }
}
