//! transformers' `CLIPModel` (`model_type` `clip`) from its `config.json`
//! and weights: the vision tower (patch and class embeddings, the
//! pre-norm, pre-norm encoder layers, the post-norm of the class token,
//! `visual_projection`), the text tower (token and position embeddings,
//! causal encoder layers, the final norm, the pooled end-of-text token,
//! `text_projection`) and `logits_per_image`: the cosine similarities of
//! the projected embeddings times `exp(logit_scale)`.
//!
//! Query, key and value are fused into one projection per layer, and
//! attention is libtorch's `scaled_dot_product_attention` (causal, and
//! blind to padding, in the text tower).

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
    // Vision.
    #[serde(default)]
    image_size: Option<Value>,
    #[serde(default)]
    patch_size: Option<Value>,
    #[serde(default)]
    num_channels: Option<i64>,
}

/// `CLIPConfig`'s fields zoo reads; transformers' defaults where absent.
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
    let eps = config.layer_norm_eps.unwrap_or(1e-5);
    if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
        return Err(format!(
            "`{}` must be from 0 to 1, got `{eps}`",
            named("layer_norm_eps")
        ));
    }
    let activation = Activation::named(config.hidden_act.as_deref().unwrap_or("quick_gelu"))
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

/// How the text tower picks its pooled token (`CLIPTextTransformer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    /// `eos_token_id` 2 (configs before transformers' PR #24773): the
    /// highest id's first position.
    HighestId,
    /// The first position of this end-of-text id (position 0 when absent).
    FirstEos(i64),
}

/// A `CLIPModel` (see the module docs).
pub(crate) struct Clip {
    patch: Tensor,
    patch_size: (i64, i64),
    image_size: (i64, i64),
    class_embedding: Tensor,
    vision_positions: Tensor,
    pre_norm: (Tensor, Tensor),
    vision: Encoder,
    post_norm: (Tensor, Tensor),
    visual_projection: Tensor,
    token_embedding: Tensor,
    text_positions: Tensor,
    text: Encoder,
    final_norm: (Tensor, Tensor),
    text_projection: Tensor,
    logit_scale: Tensor,
    vocab: i64,
    pooling: Pooling,
}

impl Clip {
    /// Builds the network `config` describes from `weights` (every tensor
    /// taken, shapes checked).
    pub(crate) fn build(config: ClipConfig, weights: &mut Weights) -> Result<Clip, String> {
        let text_config = config
            .text_config
            .or(config.text_config_dict)
            .unwrap_or_default();
        let vision_config = config
            .vision_config
            .or(config.vision_config_dict)
            .unwrap_or_default();
        let text = sizes(&text_config, (512, 2048, 12, 8), "text_config")?;
        let vision = sizes(&vision_config, (768, 3072, 12, 12), "vision_config")?;
        let projection = bounded(
            config.projection_dim.unwrap_or(512),
            "projection_dim",
            1..=16384,
        )?;
        let vocab = bounded(
            text_config.vocab_size.unwrap_or(49408),
            "text_config.vocab_size",
            1..=1 << 22,
        )?;
        let positions = bounded(
            text_config.max_position_embeddings.unwrap_or(77),
            "text_config.max_position_embeddings",
            1..=1 << 16,
        )?;
        let pooling = match &text_config.eos_token_id {
            None => Pooling::FirstEos(49407),
            Some(value) => match value.as_i64() {
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
                .unwrap_or(&Value::from(224)),
            "vision_config.image_size",
        )?;
        let patch_size = pair(
            vision_config
                .patch_size
                .as_ref()
                .unwrap_or(&Value::from(32)),
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
        let v = "vision_model";
        let t = "text_model";
        Ok(Clip {
            patch: take(
                weights,
                &format!("{v}.embeddings.patch_embedding.weight"),
                &[vision.hidden, 3, patch_size.0, patch_size.1],
            )?,
            patch_size,
            image_size,
            class_embedding: take(
                weights,
                &format!("{v}.embeddings.class_embedding"),
                &[vision.hidden],
            )?,
            vision_positions: take(
                weights,
                &format!("{v}.embeddings.position_embedding.weight"),
                &[patches + 1, vision.hidden],
            )?,
            pre_norm: pair_of(
                weights,
                &format!("{v}.pre_layrnorm"),
                &[vision.hidden],
                vision.hidden,
            )?,
            vision: Encoder::build(weights, v, &vision)?,
            post_norm: pair_of(
                weights,
                &format!("{v}.post_layernorm"),
                &[vision.hidden],
                vision.hidden,
            )?,
            visual_projection: take(
                weights,
                "visual_projection.weight",
                &[projection, vision.hidden],
            )?,
            token_embedding: take(
                weights,
                &format!("{t}.embeddings.token_embedding.weight"),
                &[vocab, text.hidden],
            )?,
            text_positions: take(
                weights,
                &format!("{t}.embeddings.position_embedding.weight"),
                &[positions, text.hidden],
            )?,
            text: Encoder::build(weights, t, &text)?,
            final_norm: pair_of(
                weights,
                &format!("{t}.final_layer_norm"),
                &[text.hidden],
                text.hidden,
            )?,
            text_projection: take(
                weights,
                "text_projection.weight",
                &[projection, text.hidden],
            )?,
            logit_scale: take(weights, "logit_scale", &[])?,
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

    fn run_vision(&self, pixels: &Tensor) -> Result<Tensor, TchError> {
        let size = pixels.size();
        let [batch, _, height, width] = size[..] else {
            return Err(TchError::Shape(format!(
                "CLIP takes [batch, 3, height, width], got {size:?}"
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
                &self.patch,
                None::<&Tensor>,
                [self.patch_size.0, self.patch_size.1],
                [0, 0],
                [1, 1],
                1,
            )?
            .f_flatten(2, -1)?
            .f_transpose(1, 2)?;
        let hidden = self.class_embedding.size()[0];
        let class = self.class_embedding.f_expand([batch, 1, hidden], false)?;
        let xs = Tensor::f_cat(&[class, patches], 1)?.f_add(&self.vision_positions)?;
        let xs = layer_norm(&xs, &self.pre_norm, self.vision.eps)?;
        let xs = self.vision.forward(&xs, None, false)?;
        let pooled = layer_norm(&xs.f_select(1, 0)?, &self.post_norm, self.vision.eps)?;
        pooled.f_linear(&self.visual_projection, None::<&Tensor>)
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
            // Causal, and no key that is padding.
            let keys: Vec<bool> = attention
                .iter()
                .flatten()
                .map(|value| *value != 0)
                .collect();
            let keys = Tensor::f_from_slice(&keys)?.f_view([rows, 1, 1, length])?;
            let causal =
                Tensor::f_ones([length, length], (Kind::Bool, tch::Device::Cpu))?.f_tril(0)?;
            Some(keys.f_logical_and(&causal)?)
        } else {
            None
        };
        let xs = self.text.forward(&xs, mask.as_ref(), true)?;
        let xs = layer_norm(&xs, &self.final_norm, self.text.eps)?;
        let positions: Vec<i64> = ids
            .iter()
            .map(|row| match self.pooling {
                Pooling::HighestId => {
                    let highest = row.iter().copied().max().unwrap_or(0);
                    row.iter().position(|id| *id == highest).unwrap_or(0) as i64
                }
                Pooling::FirstEos(eos) => row.iter().position(|id| *id == eos).unwrap_or(0) as i64,
            })
            .collect();
        let index = Tensor::f_from_slice(&positions)?;
        let rows_index = Tensor::f_arange(rows, (Kind::Int64, tch::Device::Cpu))?;
        let pooled = xs.f_index(&[Some(rows_index), Some(index)])?;
        pooled.f_linear(&self.text_projection, None::<&Tensor>)
    }

    /// `logits_per_image` (`[images, texts]`) of image and text features:
    /// each normalised by its L2 norm, their products times
    /// `exp(logit_scale)`.
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
            per_text.f_transpose(0, 1)?.f_contiguous()
        };
        run().map_err(HfError::Forward)
    }
}
