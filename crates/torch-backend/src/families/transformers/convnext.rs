//! transformers' `ConvNextForImageClassification` from its `config.json`
//! and weights: the patchify stem and its channels-first layer norm, four
//! stages (a layer norm and 2x2 convolution to downsample, then blocks of a
//! depthwise 7x7 convolution, layer norm, two pointwise projections around
//! the activation and the layer scale), global average pooling, the final
//! layer norm and the classifier. The blocks run channels-last, as
//! transformers' own do.

use serde::Deserialize;
use tch::{TchError, Tensor};

use super::repo::Weights;
use super::{Activation, layer_norm, linear};

/// The layer norms inside the network (transformers hard-codes 1e-6; the
/// config's `layer_norm_eps` is the final one's).
const INNER_EPS: f64 = 1e-6;

/// `ConvNextConfig`'s fields zoo reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
pub(crate) struct ConvNextConfig {
    #[serde(default = "defaults::channels")]
    num_channels: i64,
    #[serde(default = "defaults::patch_size")]
    patch_size: i64,
    #[serde(default = "defaults::hidden_sizes")]
    hidden_sizes: Vec<i64>,
    #[serde(default = "defaults::depths")]
    depths: Vec<i64>,
    #[serde(default = "defaults::activation")]
    hidden_act: String,
    #[serde(default = "defaults::eps")]
    layer_norm_eps: f64,
    #[serde(default = "defaults::layer_scale")]
    layer_scale_init_value: f64,
}

mod defaults {
    pub(super) fn channels() -> i64 {
        3
    }
    pub(super) fn patch_size() -> i64 {
        4
    }
    pub(super) fn hidden_sizes() -> Vec<i64> {
        vec![96, 192, 384, 768]
    }
    pub(super) fn depths() -> Vec<i64> {
        vec![3, 3, 9, 3]
    }
    pub(super) fn activation() -> String {
        "gelu".to_owned()
    }
    pub(super) fn eps() -> f64 {
        1e-12
    }
    pub(super) fn layer_scale() -> f64 {
        1e-6
    }
}

struct Block {
    depthwise: (Tensor, Tensor),
    norm: (Tensor, Tensor),
    expand: (Tensor, Tensor),
    project: (Tensor, Tensor),
    scale: Option<Tensor>,
}

struct Stage {
    downsample: Option<((Tensor, Tensor), (Tensor, Tensor))>,
    blocks: Vec<Block>,
}

/// A ConvNeXt classifier (see the module docs).
pub(crate) struct ConvNext {
    stem: (Tensor, Tensor),
    stem_norm: (Tensor, Tensor),
    patch_size: i64,
    stages: Vec<Stage>,
    norm: (Tensor, Tensor),
    eps: f64,
    classifier: (Tensor, Tensor),
    activation: Activation,
}

impl ConvNext {
    /// Builds the network `config` describes from `weights` (every tensor
    /// taken, shapes checked); `classes` is the classifier's size.
    pub(crate) fn build(
        config: ConvNextConfig,
        weights: &mut Weights,
        classes: i64,
    ) -> Result<ConvNext, String> {
        if config.num_channels != 3 {
            return Err(format!(
                "`num_channels` must be 3 (zoo feeds RGB images), got `{}`",
                config.num_channels
            ));
        }
        if !(1..=64).contains(&config.patch_size) {
            return Err(format!(
                "`patch_size` must be from 1 to 64, got `{}`",
                config.patch_size
            ));
        }
        let stages = config.hidden_sizes.len();
        if !(1..=8).contains(&stages) || config.depths.len() != stages {
            return Err(format!(
                "`hidden_sizes` ({stages}) and `depths` ({}) must list the same 1 to 8 stages",
                config.depths.len()
            ));
        }
        if let Some(bad) = config
            .hidden_sizes
            .iter()
            .find(|size| !(1..=16384).contains(*size))
        {
            return Err(format!(
                "`hidden_sizes` must be from 1 to 16384, got `{bad}`"
            ));
        }
        if let Some(bad) = config
            .depths
            .iter()
            .find(|depth| !(0..=256).contains(*depth))
        {
            return Err(format!("`depths` must be from 0 to 256, got `{bad}`"));
        }
        let eps = config.layer_norm_eps;
        if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
            return Err(format!("`layer_norm_eps` must be from 0 to 1, got `{eps}`"));
        }
        let layer_scale = config.layer_scale_init_value > 0.0;
        let activation = Activation::named(&config.hidden_act)?;
        let take = |weights: &mut Weights, name: &str, shape: &[i64]| {
            weights.take(name, shape).map_err(|err| err.to_string())
        };
        let pair_of = |weights: &mut Weights, prefix: &str, shape: &[i64], rows: i64| {
            Ok::<_, String>((
                take(weights, &format!("{prefix}.weight"), shape)?,
                take(weights, &format!("{prefix}.bias"), &[rows])?,
            ))
        };
        let first = config.hidden_sizes[0];
        let patch = config.patch_size;
        let stem = pair_of(
            weights,
            "convnext.embeddings.patch_embeddings",
            &[first, 3, patch, patch],
            first,
        )?;
        let stem_norm = pair_of(weights, "convnext.embeddings.layernorm", &[first], first)?;
        let mut built = Vec::with_capacity(stages);
        let mut previous = first;
        for (index, (&dim, &depth)) in config.hidden_sizes.iter().zip(&config.depths).enumerate() {
            let prefix = format!("convnext.encoder.stages.{index}");
            let downsample = if index > 0 || previous != dim {
                let stride = if index > 0 { 2 } else { 1 };
                Some((
                    pair_of(
                        weights,
                        &format!("{prefix}.downsampling_layer.0"),
                        &[previous],
                        previous,
                    )?,
                    pair_of(
                        weights,
                        &format!("{prefix}.downsampling_layer.1"),
                        &[dim, previous, stride, stride],
                        dim,
                    )?,
                ))
            } else {
                None
            };
            let mut blocks = Vec::with_capacity(depth as usize);
            for block in 0..depth {
                let at = format!("{prefix}.layers.{block}");
                blocks.push(Block {
                    depthwise: pair_of(weights, &format!("{at}.dwconv"), &[dim, 1, 7, 7], dim)?,
                    norm: pair_of(weights, &format!("{at}.layernorm"), &[dim], dim)?,
                    expand: pair_of(weights, &format!("{at}.pwconv1"), &[4 * dim, dim], 4 * dim)?,
                    project: pair_of(weights, &format!("{at}.pwconv2"), &[dim, 4 * dim], dim)?,
                    scale: if layer_scale {
                        Some(take(
                            weights,
                            &format!("{at}.layer_scale_parameter"),
                            &[dim],
                        )?)
                    } else {
                        None
                    },
                });
            }
            built.push(Stage { downsample, blocks });
            previous = dim;
        }
        let norm = pair_of(weights, "convnext.layernorm", &[previous], previous)?;
        let classifier = pair_of(weights, "classifier", &[classes, previous], classes)?;
        Ok(ConvNext {
            stem,
            stem_norm,
            patch_size: patch,
            stages: built,
            norm,
            eps,
            classifier,
            activation,
        })
    }

    /// How many hidden states the network has (the stem's output and each
    /// stage's).
    pub(crate) fn hidden_states(&self) -> usize {
        self.stages.len() + 1
    }

    /// The smallest input side: the stem's patch, then each stage's 2x2
    /// downsampling, must leave at least one pixel.
    pub(crate) fn min_input(&self) -> i64 {
        self.patch_size << (self.stages.len().saturating_sub(1))
    }

    /// The logits of `pixels` (`[N, 3, H, W]`) and hidden state `keep`
    /// (`[N, C, H, W]`).
    pub(crate) fn forward(
        &self,
        pixels: &Tensor,
        keep: usize,
    ) -> Result<(Tensor, Tensor), TchError> {
        let stride = [self.patch_size, self.patch_size];
        let stem = pixels.f_conv2d(&self.stem.0, Some(&self.stem.1), stride, [0, 0], [1, 1], 1)?;
        let mut xs = channels_first_norm(&stem, &self.stem_norm)?;
        let mut kept = (keep == 0).then(|| xs.shallow_clone());
        for (index, stage) in self.stages.iter().enumerate() {
            if let Some((norm, conv)) = &stage.downsample {
                let normed = channels_first_norm(&xs, norm)?;
                let stride = conv.0.size()[2];
                xs =
                    normed.f_conv2d(&conv.0, Some(&conv.1), [stride, stride], [0, 0], [1, 1], 1)?;
            }
            for block in &stage.blocks {
                xs = self.block(block, &xs)?;
            }
            if index + 1 == keep {
                kept = Some(xs.shallow_clone());
            }
        }
        let pooled = xs.f_mean_dim([-2, -1].as_slice(), false, None)?;
        let pooled = layer_norm(&pooled, &self.norm, self.eps)?;
        let logits = linear(&pooled, &self.classifier)?;
        let kept = kept.ok_or_else(|| {
            TchError::Shape(format!(
                "hidden state {keep} of {} asked for",
                self.hidden_states()
            ))
        })?;
        Ok((logits, kept))
    }

    fn block(&self, block: &Block, xs: &Tensor) -> Result<Tensor, TchError> {
        let channels = block.depthwise.0.size()[0];
        let features = xs
            .f_conv2d(
                &block.depthwise.0,
                Some(&block.depthwise.1),
                [1, 1],
                [3, 3],
                [1, 1],
                channels,
            )?
            .f_permute([0, 2, 3, 1])?;
        let features = layer_norm(&features, &block.norm, INNER_EPS)?;
        let features = self.activation.apply(&linear(&features, &block.expand)?)?;
        let mut features = linear(&features, &block.project)?;
        if let Some(scale) = &block.scale {
            features = features.f_mul(scale)?;
        }
        features.f_permute([0, 3, 1, 2])?.f_add(xs)
    }
}

/// transformers' `ConvNextLayerNorm(data_format="channels_first")`.
fn channels_first_norm(xs: &Tensor, norm: &(Tensor, Tensor)) -> Result<Tensor, TchError> {
    layer_norm(&xs.f_permute([0, 2, 3, 1])?, norm, INNER_EPS)?.f_permute([0, 3, 1, 2])
}
