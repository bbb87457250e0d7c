//! transformers' `EfficientNetForImageClassification` from its
//! `config.json` and weights: the stem (zero padding right and bottom, a
//! 3x3 stride-2 convolution, batch norm, activation), the MBConv blocks
//! (1x1 expansion, depthwise convolution with transformers' `correct_pad`
//! zero padding when strided, squeeze-and-excite, 1x1 projection; the
//! residual on every block of a stage but its first, as transformers adds
//! it), the top 1x1 convolution, pooling over the whole map and the
//! classifier. Widths and repeats are rounded as transformers'
//! `round_filters` and `round_repeats` do.

use serde::Deserialize;
use tch::{TchError, Tensor};

use super::repo::Weights;
use super::{Activation, linear};

/// `EfficientNetConfig`'s fields zoo reads, with transformers' defaults
/// (EfficientNet-B7's).
#[derive(Debug, Deserialize)]
pub(crate) struct EfficientNetConfig {
    #[serde(default = "defaults::channels")]
    num_channels: i64,
    #[serde(default = "defaults::width")]
    width_coefficient: f64,
    #[serde(default = "defaults::depth")]
    depth_coefficient: f64,
    #[serde(default = "defaults::divisor")]
    depth_divisor: i64,
    #[serde(default = "defaults::kernel_sizes")]
    kernel_sizes: Vec<i64>,
    #[serde(default = "defaults::in_channels")]
    in_channels: Vec<i64>,
    #[serde(default = "defaults::out_channels")]
    out_channels: Vec<i64>,
    #[serde(default)]
    depthwise_padding: Vec<i64>,
    #[serde(default = "defaults::strides")]
    strides: Vec<i64>,
    #[serde(default = "defaults::repeats")]
    num_block_repeats: Vec<i64>,
    #[serde(default = "defaults::expand_ratios")]
    expand_ratios: Vec<i64>,
    #[serde(default = "defaults::squeeze")]
    squeeze_expansion_ratio: f64,
    #[serde(default = "defaults::activation")]
    hidden_act: String,
    #[serde(default = "defaults::hidden_dim")]
    hidden_dim: i64,
    #[serde(default = "defaults::pooling")]
    pooling_type: String,
    #[serde(default = "defaults::eps")]
    batch_norm_eps: f64,
}

mod defaults {
    pub(super) fn channels() -> i64 {
        3
    }
    pub(super) fn width() -> f64 {
        2.0
    }
    pub(super) fn depth() -> f64 {
        3.1
    }
    pub(super) fn divisor() -> i64 {
        8
    }
    pub(super) fn kernel_sizes() -> Vec<i64> {
        vec![3, 3, 5, 3, 5, 5, 3]
    }
    pub(super) fn in_channels() -> Vec<i64> {
        vec![32, 16, 24, 40, 80, 112, 192]
    }
    pub(super) fn out_channels() -> Vec<i64> {
        vec![16, 24, 40, 80, 112, 192, 320]
    }
    pub(super) fn strides() -> Vec<i64> {
        vec![1, 2, 2, 2, 1, 2, 1]
    }
    pub(super) fn repeats() -> Vec<i64> {
        vec![1, 2, 2, 3, 3, 4, 1]
    }
    pub(super) fn expand_ratios() -> Vec<i64> {
        vec![1, 6, 6, 6, 6, 6, 6]
    }
    pub(super) fn squeeze() -> f64 {
        0.25
    }
    pub(super) fn activation() -> String {
        "swish".to_owned()
    }
    pub(super) fn hidden_dim() -> i64 {
        2560
    }
    pub(super) fn pooling() -> String {
        "mean".to_owned()
    }
    pub(super) fn eps() -> f64 {
        1e-3
    }
}

/// An eval-mode `BatchNorm2d`.
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    mean: Tensor,
    var: Tensor,
}

impl BatchNorm {
    fn take(weights: &mut Weights, prefix: &str, features: i64) -> Result<BatchNorm, String> {
        let mut get = |name: &str| {
            weights
                .take(&format!("{prefix}.{name}"), &[features])
                .map_err(|err| err.to_string())
        };
        let norm = BatchNorm {
            weight: get("weight")?,
            bias: get("bias")?,
            mean: get("running_mean")?,
            var: get("running_var")?,
        };
        // PyTorch saves the step counter with every batch norm; unused.
        let _ = weights.take(&format!("{prefix}.num_batches_tracked"), &[]);
        Ok(norm)
    }

    fn forward(&self, xs: &Tensor, eps: f64) -> Result<Tensor, TchError> {
        xs.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.mean),
            Some(&self.var),
            false,
            0.0,
            eps,
            false,
        )
    }
}

struct Block {
    expansion: Option<(Tensor, BatchNorm)>,
    depthwise: Tensor,
    depthwise_norm: BatchNorm,
    kernel: i64,
    stride: i64,
    /// `(left, right, top, bottom)` zero padding before a strided
    /// depthwise convolution.
    padding: [i64; 4],
    reduce: (Tensor, Tensor),
    expand: (Tensor, Tensor),
    project: Tensor,
    project_norm: BatchNorm,
    residual: bool,
}

/// An EfficientNet classifier (see the module docs).
pub(crate) struct EfficientNet {
    stem: Tensor,
    stem_norm: BatchNorm,
    blocks: Vec<Block>,
    top: Tensor,
    top_norm: BatchNorm,
    max_pooling: bool,
    classifier: (Tensor, Tensor),
    eps: f64,
    activation: Activation,
}

/// transformers' `round_filters`.
fn round_filters(config: &EfficientNetConfig, channels: i64) -> i64 {
    let divisor = config.depth_divisor;
    let channels = channels as f64 * config.width_coefficient;
    let rounded = ((channels + divisor as f64 / 2.0) as i64 / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * channels {
        rounded + divisor
    } else {
        rounded
    }
}

impl EfficientNet {
    /// Builds the network `config` describes from `weights` (every tensor
    /// taken, shapes checked); `classes` is the classifier's size.
    pub(crate) fn build(
        config: EfficientNetConfig,
        weights: &mut Weights,
        classes: i64,
    ) -> Result<EfficientNet, String> {
        if config.num_channels != 3 {
            return Err(format!(
                "`num_channels` must be 3 (zoo feeds RGB images), got `{}`",
                config.num_channels
            ));
        }
        let stages = config.in_channels.len();
        let lists = [
            config.out_channels.len(),
            config.kernel_sizes.len(),
            config.strides.len(),
            config.num_block_repeats.len(),
            config.expand_ratios.len(),
        ];
        if !(1..=16).contains(&stages) || lists.iter().any(|len| *len != stages) {
            return Err(format!(
                "`in_channels`, `out_channels`, `kernel_sizes`, `strides`, `num_block_repeats` and `expand_ratios` must list the same 1 to 16 stages, got {stages} and {lists:?}"
            ));
        }
        let checks: [(&str, &[i64], std::ops::RangeInclusive<i64>); 6] = [
            ("in_channels", &config.in_channels, 1..=8192),
            ("out_channels", &config.out_channels, 1..=8192),
            ("kernel_sizes", &config.kernel_sizes, 1..=15),
            ("strides", &config.strides, 1..=2),
            ("num_block_repeats", &config.num_block_repeats, 0..=64),
            ("expand_ratios", &config.expand_ratios, 1..=16),
        ];
        for (field, values, range) in checks {
            if let Some(bad) = values.iter().find(|value| !range.contains(*value)) {
                return Err(format!(
                    "`{field}` must hold numbers from {} to {}, got `{bad}`",
                    range.start(),
                    range.end()
                ));
            }
        }
        if let Some(even) = config.kernel_sizes.iter().find(|kernel| *kernel % 2 == 0) {
            return Err(format!("`kernel_sizes` must be odd, got `{even}`"));
        }
        let finite = |value: f64, range: std::ops::RangeInclusive<f64>| {
            value.is_finite() && range.contains(&value)
        };
        let in_range = finite(config.width_coefficient, 0.01..=16.0)
            && finite(config.depth_coefficient, 0.01..=16.0)
            && (1..=256).contains(&config.depth_divisor)
            && finite(config.squeeze_expansion_ratio, 0.0..=16.0)
            && config.batch_norm_eps.is_finite()
            && config.batch_norm_eps > 0.0
            && config.batch_norm_eps < 1.0;
        if !in_range {
            return Err(
                "`width_coefficient`, `depth_coefficient` (0.01 to 16), `depth_divisor` (1 to 256), `squeeze_expansion_ratio` (0 to 16) or `batch_norm_eps` (0 to 1) is out of range".to_owned(),
            );
        }
        let max_pooling = match config.pooling_type.as_str() {
            "mean" => false,
            "max" => true,
            other => {
                return Err(format!(
                    "`pooling_type` must be `mean` or `max`, got `{other}`"
                ));
            }
        };
        let activation = Activation::named(&config.hidden_act)?;
        let eps = config.batch_norm_eps;
        let take = |weights: &mut Weights, name: &str, shape: &[i64]| {
            weights.take(name, shape).map_err(|err| err.to_string())
        };
        let stem_width = round_filters(&config, 32);
        let stem = take(
            weights,
            "efficientnet.embeddings.convolution.weight",
            &[stem_width, 3, 3, 3],
        )?;
        let stem_norm = BatchNorm::take(weights, "efficientnet.embeddings.batchnorm", stem_width)?;
        let repeats = |count: i64| (config.depth_coefficient * count as f64).ceil() as i64;
        let mut blocks = Vec::new();
        let mut number = 0i64;
        let mut out_dim = stem_width;
        for stage in 0..stages {
            let stage_in = round_filters(&config, config.in_channels[stage]);
            out_dim = round_filters(&config, config.out_channels[stage]);
            let kernel = config.kernel_sizes[stage];
            let ratio = config.expand_ratios[stage];
            for repeat in 0..repeats(config.num_block_repeats[stage]) {
                if number >= 1024 {
                    return Err("more than 1024 blocks".to_owned());
                }
                let first = repeat == 0;
                let stride = if first { config.strides[stage] } else { 1 };
                let in_dim = if first { stage_in } else { out_dim };
                let adjust = !config.depthwise_padding.contains(&number);
                let prefix = format!("efficientnet.encoder.blocks.{number}");
                let expanded = in_dim * ratio;
                let expansion = if ratio != 1 {
                    Some((
                        take(
                            weights,
                            &format!("{prefix}.expansion.expand_conv.weight"),
                            &[expanded, in_dim, 1, 1],
                        )?,
                        BatchNorm::take(
                            weights,
                            &format!("{prefix}.expansion.expand_bn"),
                            expanded,
                        )?,
                    ))
                } else {
                    None
                };
                let squeezed = ((in_dim as f64 * config.squeeze_expansion_ratio) as i64).max(1);
                let half = kernel / 2;
                let padding = if adjust {
                    [half - 1, half, half - 1, half]
                } else {
                    [half, half, half, half]
                };
                let at = format!("{prefix}.squeeze_excite");
                blocks.push(Block {
                    expansion,
                    depthwise: take(
                        weights,
                        &format!("{prefix}.depthwise_conv.depthwise_conv.weight"),
                        &[expanded, 1, kernel, kernel],
                    )?,
                    depthwise_norm: BatchNorm::take(
                        weights,
                        &format!("{prefix}.depthwise_conv.depthwise_norm"),
                        expanded,
                    )?,
                    kernel,
                    stride,
                    padding,
                    reduce: (
                        take(
                            weights,
                            &format!("{at}.reduce.weight"),
                            &[squeezed, expanded, 1, 1],
                        )?,
                        take(weights, &format!("{at}.reduce.bias"), &[squeezed])?,
                    ),
                    expand: (
                        take(
                            weights,
                            &format!("{at}.expand.weight"),
                            &[expanded, squeezed, 1, 1],
                        )?,
                        take(weights, &format!("{at}.expand.bias"), &[expanded])?,
                    ),
                    project: take(
                        weights,
                        &format!("{prefix}.projection.project_conv.weight"),
                        &[out_dim, expanded, 1, 1],
                    )?,
                    project_norm: BatchNorm::take(
                        weights,
                        &format!("{prefix}.projection.project_bn"),
                        out_dim,
                    )?,
                    // `apply_dropout = stride == 1 and not id_skip`.
                    residual: stride == 1 && !first,
                });
                number += 1;
            }
        }
        let top_width = round_filters(&config, 1280);
        if top_width != config.hidden_dim {
            return Err(format!(
                "`hidden_dim` {} must be the top convolution's width {top_width}",
                config.hidden_dim
            ));
        }
        let top = take(
            weights,
            "efficientnet.encoder.top_conv.weight",
            &[top_width, out_dim, 1, 1],
        )?;
        let top_norm = BatchNorm::take(weights, "efficientnet.encoder.top_bn", top_width)?;
        let classifier = (
            take(weights, "classifier.weight", &[classes, top_width])?,
            take(weights, "classifier.bias", &[classes])?,
        );
        Ok(EfficientNet {
            stem,
            stem_norm,
            blocks,
            top,
            top_norm,
            max_pooling,
            classifier,
            eps,
            activation,
        })
    }

    /// How many hidden states the network has (the stem's output and each
    /// block's).
    pub(crate) fn hidden_states(&self) -> usize {
        self.blocks.len() + 1
    }

    /// The logits of `pixels` (`[N, 3, H, W]`) and hidden state `keep`
    /// (`[N, C, H, W]`).
    pub(crate) fn forward(
        &self,
        pixels: &Tensor,
        keep: usize,
    ) -> Result<(Tensor, Tensor), TchError> {
        let padded = pixels.f_constant_pad_nd([0, 1, 0, 1])?;
        let stem = padded.f_conv2d(&self.stem, None::<&Tensor>, [2, 2], [0, 0], [1, 1], 1)?;
        let mut xs = self
            .activation
            .apply(&self.stem_norm.forward(&stem, self.eps)?)?;
        let mut kept = (keep == 0).then(|| xs.shallow_clone());
        for (index, block) in self.blocks.iter().enumerate() {
            xs = self.block(block, &xs)?;
            if index + 1 == keep {
                kept = Some(xs.shallow_clone());
            }
        }
        let top = xs.f_conv2d(&self.top, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1)?;
        let top = self
            .activation
            .apply(&self.top_norm.forward(&top, self.eps)?)?;
        let pooled = if self.max_pooling {
            top.f_amax([-2, -1].as_slice(), false)?
        } else {
            top.f_mean_dim([-2, -1].as_slice(), false, None)?
        };
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
        let mut hidden = xs.shallow_clone();
        if let Some((conv, norm)) = &block.expansion {
            let expanded = hidden.f_conv2d(conv, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1)?;
            hidden = self.activation.apply(&norm.forward(&expanded, self.eps)?)?;
        }
        let channels = block.depthwise.size()[0];
        let (input, padding) = if block.stride == 2 {
            (hidden.f_constant_pad_nd(block.padding)?, [0, 0])
        } else {
            // PyTorch's `padding="same"` for an odd kernel.
            (hidden, [block.kernel / 2, block.kernel / 2])
        };
        let depthwise = input.f_conv2d(
            &block.depthwise,
            None::<&Tensor>,
            [block.stride, block.stride],
            padding,
            [1, 1],
            channels,
        )?;
        let hidden = self
            .activation
            .apply(&block.depthwise_norm.forward(&depthwise, self.eps)?)?;
        let squeezed = hidden.f_mean_dim([-2, -1].as_slice(), true, None)?;
        let reduced = squeezed.f_conv2d(
            &block.reduce.0,
            Some(&block.reduce.1),
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )?;
        let scale = self
            .activation
            .apply(&reduced)?
            .f_conv2d(
                &block.expand.0,
                Some(&block.expand.1),
                [1, 1],
                [0, 0],
                [1, 1],
                1,
            )?
            .f_sigmoid()?;
        let hidden = hidden.f_mul(&scale)?;
        let projected =
            hidden.f_conv2d(&block.project, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1)?;
        let projected = block.project_norm.forward(&projected, self.eps)?;
        if block.residual {
            projected.f_add(xs)
        } else {
            Ok(projected)
        }
    }
}
