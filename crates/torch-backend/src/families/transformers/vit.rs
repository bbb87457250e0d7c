//! transformers' `ViTForImageClassification` from its `config.json` and
//! weights: patch embedding, `[CLS]` and position embeddings, pre-norm
//! encoder layers (query, key and value fused into one projection, libtorch's
//! `scaled_dot_product_attention`), the final layer norm and the classifier
//! on the `[CLS]` token.
//!
//! The input must be the configured `image_size` (transformers refuses
//! another without `interpolate_pos_encoding`, which FiftyOne never sets).

use serde::Deserialize;
use serde_json::Value;
use tch::{TchError, Tensor};

use super::repo::Weights;
use super::{Activation, HfError, layer_norm, linear};

/// `ViTConfig`'s fields zoo reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
pub(crate) struct VitConfig {
    #[serde(default = "defaults::hidden_size")]
    hidden_size: i64,
    #[serde(default = "defaults::layers")]
    num_hidden_layers: i64,
    #[serde(default = "defaults::heads")]
    num_attention_heads: i64,
    #[serde(default = "defaults::intermediate")]
    intermediate_size: i64,
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
    #[serde(default = "defaults::qkv_bias")]
    qkv_bias: bool,
}

mod defaults {
    pub(super) fn hidden_size() -> i64 {
        768
    }
    pub(super) fn layers() -> i64 {
        12
    }
    pub(super) fn heads() -> i64 {
        12
    }
    pub(super) fn intermediate() -> i64 {
        3072
    }
    pub(super) fn activation() -> String {
        "gelu".to_owned()
    }
    pub(super) fn eps() -> f64 {
        1e-12
    }
    pub(super) fn image_size() -> serde_json::Value {
        224.into()
    }
    pub(super) fn patch_size() -> serde_json::Value {
        16.into()
    }
    pub(super) fn channels() -> i64 {
        3
    }
    pub(super) fn qkv_bias() -> bool {
        true
    }
}

/// A whole number in `range`, or what it must be.
pub(crate) fn bounded(
    value: i64,
    field: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, String> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "`{field}` must be from {} to {}, got `{value}`",
            range.start(),
            range.end()
        ))
    }
}

/// An `image_size`/`patch_size`: one number (a square) or `[height, width]`.
pub(crate) fn pair(value: &Value, field: &str) -> Result<(i64, i64), String> {
    let side = |value: &Value| {
        value
            .as_i64()
            .filter(|side| (1..=i64::from(crate::preprocess::MAX_IMAGE_SIDE)).contains(side))
    };
    let parsed = match value {
        Value::Array(items) if items.len() == 2 => side(&items[0]).zip(side(&items[1])),
        value => side(value).map(|side| (side, side)),
    };
    parsed.ok_or_else(|| {
        format!(
            "`{field}` must be a side from 1 to {} or two of them, got `{value}`",
            crate::preprocess::MAX_IMAGE_SIDE
        )
    })
}

struct Layer {
    norm_before: (Tensor, Tensor),
    /// Query, key and value stacked: `[3 * hidden, hidden]`.
    qkv: (Tensor, Option<Tensor>),
    output: (Tensor, Tensor),
    norm_after: (Tensor, Tensor),
    intermediate: (Tensor, Tensor),
    feed_output: (Tensor, Tensor),
}

/// A ViT classifier (see the module docs).
pub(crate) struct Vit {
    patch: (Tensor, Tensor),
    patch_size: (i64, i64),
    image_size: (i64, i64),
    cls_token: Tensor,
    position: Tensor,
    layers: Vec<Layer>,
    norm: (Tensor, Tensor),
    classifier: (Tensor, Tensor),
    hidden: i64,
    heads: i64,
    eps: f64,
    activation: Activation,
}

impl Vit {
    /// Builds the network `config` describes from `weights` (every tensor
    /// taken, shapes checked); `classes` is the classifier's size.
    pub(crate) fn build(
        config: VitConfig,
        weights: &mut Weights,
        classes: i64,
    ) -> Result<Vit, String> {
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
        let intermediate = bounded(config.intermediate_size, "intermediate_size", 1..=65536)?;
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
        let activation = Activation::named(&config.hidden_act)?;
        let image_size = pair(&config.image_size, "image_size")?;
        let patch_size = pair(&config.patch_size, "patch_size")?;
        if patch_size.0 > image_size.0 || patch_size.1 > image_size.1 {
            return Err(format!(
                "`patch_size` {patch_size:?} must not exceed `image_size` {image_size:?}"
            ));
        }
        let patches = (image_size.0 / patch_size.0) * (image_size.1 / patch_size.1);
        if patches > 1 << 20 {
            return Err(format!(
                "{patches} patches is beyond the 1048576 zoo builds"
            ));
        }
        let take = |weights: &mut Weights, name: &str, shape: &[i64]| {
            weights.take(name, shape).map_err(|err| err.to_string())
        };
        let pair_of = |weights: &mut Weights, prefix: &str, shape: &[i64], rows: i64| {
            Ok::<_, String>((
                take(weights, &format!("{prefix}.weight"), shape)?,
                take(weights, &format!("{prefix}.bias"), &[rows])?,
            ))
        };
        let patch = pair_of(
            weights,
            "vit.embeddings.patch_embeddings.projection",
            &[hidden, 3, patch_size.0, patch_size.1],
            hidden,
        )?;
        let cls_token = take(weights, "vit.embeddings.cls_token", &[1, 1, hidden])?;
        let position = take(
            weights,
            "vit.embeddings.position_embeddings",
            &[1, patches + 1, hidden],
        )?;
        let mut built = Vec::with_capacity(layers as usize);
        for index in 0..layers {
            let prefix = format!("vit.encoder.layer.{index}");
            let attention = format!("{prefix}.attention.attention");
            let mut weights_qkv = Vec::new();
            let mut biases_qkv = Vec::new();
            for part in ["query", "key", "value"] {
                weights_qkv.push(take(
                    weights,
                    &format!("{attention}.{part}.weight"),
                    &[hidden, hidden],
                )?);
                if config.qkv_bias {
                    biases_qkv.push(take(
                        weights,
                        &format!("{attention}.{part}.bias"),
                        &[hidden],
                    )?);
                }
            }
            let fused = |parts: &[Tensor]| Tensor::f_cat(parts, 0).map_err(|err| err.to_string());
            built.push(Layer {
                norm_before: pair_of(
                    weights,
                    &format!("{prefix}.layernorm_before"),
                    &[hidden],
                    hidden,
                )?,
                qkv: (
                    fused(&weights_qkv)?,
                    if config.qkv_bias {
                        Some(fused(&biases_qkv)?)
                    } else {
                        None
                    },
                ),
                output: pair_of(
                    weights,
                    &format!("{prefix}.attention.output.dense"),
                    &[hidden, hidden],
                    hidden,
                )?,
                norm_after: pair_of(
                    weights,
                    &format!("{prefix}.layernorm_after"),
                    &[hidden],
                    hidden,
                )?,
                intermediate: pair_of(
                    weights,
                    &format!("{prefix}.intermediate.dense"),
                    &[intermediate, hidden],
                    intermediate,
                )?,
                feed_output: pair_of(
                    weights,
                    &format!("{prefix}.output.dense"),
                    &[hidden, intermediate],
                    hidden,
                )?,
            });
        }
        let norm = pair_of(weights, "vit.layernorm", &[hidden], hidden)?;
        let classifier = pair_of(weights, "classifier", &[classes, hidden], classes)?;
        Ok(Vit {
            patch,
            patch_size,
            image_size,
            cls_token,
            position,
            layers: built,
            norm,
            classifier,
            hidden,
            heads,
            eps,
            activation,
        })
    }

    /// The input size the network takes, `(height, width)`.
    pub(crate) fn image_size(&self) -> (i64, i64) {
        self.image_size
    }

    /// How many hidden states the network has (the embeddings' output and
    /// each layer's).
    pub(crate) fn hidden_states(&self) -> usize {
        self.layers.len() + 1
    }

    /// The logits of `pixels` (`[N, 3, H, W]`) and hidden state `keep`
    /// (`[N, tokens, hidden]`; the last is before the final layer norm, as
    /// transformers' `output_hidden_states` gives it).
    pub(crate) fn forward(
        &self,
        pixels: &Tensor,
        keep: usize,
    ) -> Result<(Tensor, Tensor), HfError> {
        self.run(pixels, keep).map_err(HfError::Forward)
    }

    fn run(&self, pixels: &Tensor, keep: usize) -> Result<(Tensor, Tensor), TchError> {
        let size = pixels.size();
        let [batch, _, height, width] = size[..] else {
            return Err(TchError::Shape(format!(
                "ViT takes [batch, 3, height, width], got {size:?}"
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
                Some(&self.patch.1),
                [self.patch_size.0, self.patch_size.1],
                [0, 0],
                [1, 1],
                1,
            )?
            .f_flatten(2, -1)?
            .f_transpose(1, 2)?;
        let cls = self.cls_token.f_expand([batch, 1, self.hidden], false)?;
        let mut xs = Tensor::f_cat(&[cls, patches], 1)?.f_add(&self.position)?;
        let mut kept = (keep == 0).then(|| xs.shallow_clone());
        for (index, layer) in self.layers.iter().enumerate() {
            xs = self.layer(layer, &xs)?;
            if index + 1 == keep {
                kept = Some(xs.shallow_clone());
            }
        }
        let normed = layer_norm(&xs, &self.norm, self.eps)?;
        let logits = linear(&normed.f_select(1, 0)?, &self.classifier)?;
        let kept = kept.ok_or_else(|| {
            TchError::Shape(format!(
                "hidden state {keep} of {} asked for",
                self.hidden_states()
            ))
        })?;
        Ok((logits, kept))
    }

    fn layer(&self, layer: &Layer, xs: &Tensor) -> Result<Tensor, TchError> {
        let size = xs.size();
        let [batch, tokens, channels] = size[..] else {
            return Err(TchError::Shape(format!(
                "a ViT layer takes [batch, tokens, channels], got {size:?}"
            )));
        };
        let normed = layer_norm(xs, &layer.norm_before, self.eps)?;
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
        let xs = linear(&attended, &layer.output)?.f_add(xs)?;
        let normed = layer_norm(&xs, &layer.norm_after, self.eps)?;
        let hidden = self
            .activation
            .apply(&linear(&normed, &layer.intermediate)?)?;
        linear(&hidden, &layer.feed_output)?.f_add(&xs)
    }
}
