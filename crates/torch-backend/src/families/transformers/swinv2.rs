//! transformers' `Swinv2ForImageClassification` from its `config.json` and
//! weights: the patch embedding and its layer norm, stages of shifted-window
//! layers (scaled cosine attention with a learnt, clamped logit scale and a
//! continuous relative position bias from a small MLP over log-spaced
//! coordinates, `pretrained_window_sizes`; post-norm residuals), patch
//! merging between stages, the final layer norm, average pooling and the
//! classifier.
//!
//! As in transformers, each layer's window and shift come from the
//! configured `image_size` (a stage whose grid is no larger than the window
//! takes the grid's height as its window and does not shift), and any input
//! size runs: the pixels are padded to whole patches, each stage's grid to
//! whole windows (the shifted windows masked by region), and an odd grid
//! before patch merging. Attention runs in libtorch's
//! `scaled_dot_product_attention`, the normalised query scaled by the logit
//! scale, with the position bias and the shift mask as its additive mask.

use serde::Deserialize;
use serde_json::Value;
use tch::{Kind, TchError, Tensor};

use super::repo::Weights;
use super::vit::{bounded, pair};
use super::{Activation, HfError, layer_norm, linear};

/// transformers' `nn.LayerNorm` default, which the patch embedding's and
/// the patch merging's norms keep whatever `layer_norm_eps` says.
const DEFAULT_EPS: f64 = 1e-5;

/// The width of the position bias MLP's hidden layer (transformers'
/// constant).
const BIAS_MLP_WIDTH: i64 = 512;

/// The largest logit scale: `log(1 / 0.01)`.
fn max_logit_scale() -> f64 {
    (1.0f64 / 0.01).ln()
}

/// What transformers adds to the scores of token pairs from different
/// regions of a shifted window (its `-100`, which its attention adds twice).
const SHIFT_MASK: f64 = -200.0;

/// `Swinv2Config`'s fields zoo reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
pub(crate) struct Swinv2Config {
    #[serde(default = "defaults::image_size")]
    image_size: Value,
    #[serde(default = "defaults::patch_size")]
    patch_size: Value,
    #[serde(default = "defaults::channels")]
    num_channels: i64,
    #[serde(default = "defaults::embed_dim")]
    embed_dim: i64,
    #[serde(default = "defaults::depths")]
    depths: Vec<i64>,
    #[serde(default = "defaults::heads")]
    num_heads: Vec<i64>,
    #[serde(default = "defaults::window_size")]
    window_size: i64,
    #[serde(default)]
    pretrained_window_sizes: Option<Vec<i64>>,
    #[serde(default = "defaults::mlp_ratio")]
    mlp_ratio: f64,
    #[serde(default = "defaults::qkv_bias")]
    qkv_bias: bool,
    #[serde(default = "defaults::activation")]
    hidden_act: String,
    #[serde(default)]
    use_absolute_embeddings: bool,
    #[serde(default = "defaults::eps")]
    layer_norm_eps: f64,
}

mod defaults {
    pub(super) fn image_size() -> serde_json::Value {
        224.into()
    }
    pub(super) fn patch_size() -> serde_json::Value {
        4.into()
    }
    pub(super) fn channels() -> i64 {
        3
    }
    pub(super) fn embed_dim() -> i64 {
        96
    }
    pub(super) fn depths() -> Vec<i64> {
        vec![2, 2, 6, 2]
    }
    pub(super) fn heads() -> Vec<i64> {
        vec![3, 6, 12, 24]
    }
    pub(super) fn window_size() -> i64 {
        7
    }
    pub(super) fn mlp_ratio() -> f64 {
        4.0
    }
    pub(super) fn qkv_bias() -> bool {
        true
    }
    pub(super) fn activation() -> String {
        "gelu".to_owned()
    }
    pub(super) fn eps() -> f64 {
        1e-5
    }
}

/// One shifted-window layer.
struct Layer {
    /// The window's side and the cyclic shift (0: none).
    window: i64,
    shift: i64,
    heads: i64,
    /// Query, key and value stacked: `[3 * dim, dim]`, and their biases
    /// (the key's zero, as transformers' key has none).
    qkv: (Tensor, Option<Tensor>),
    /// `exp(min(logit_scale, log 100))`, `[heads, 1, 1]`.
    scale: Tensor,
    /// `16 * sigmoid(bias MLP)` at each token pair, `[heads, N, N]`.
    bias: Tensor,
    output: (Tensor, Tensor),
    norm_before: (Tensor, Tensor),
    intermediate: (Tensor, Tensor),
    feed_output: (Tensor, Tensor),
    norm_after: (Tensor, Tensor),
}

struct Stage {
    layers: Vec<Layer>,
    /// Patch merging: the reduction (`[2 * dim, 4 * dim]`, no bias) and its
    /// norm.
    merge: Option<(Tensor, (Tensor, Tensor))>,
}

/// A Swin Transformer V2 classifier (see the module docs).
pub(crate) struct Swinv2 {
    patch: (Tensor, Tensor),
    patch_size: (i64, i64),
    patch_norm: (Tensor, Tensor),
    stages: Vec<Stage>,
    norm: (Tensor, Tensor),
    classifier: (Tensor, Tensor),
    eps: f64,
    activation: Activation,
}

/// The continuous position bias table's coordinates for a `window`
/// (`[(2w - 1)^2, 2]`, row-major over the relative height and width), as
/// transformers computes them in `f32`: divided by `pretrained - 1` (else
/// `window - 1`), times 8, then `sign(x) * log2(|x| + 1) / 3`.
fn coordinates(window: i64, pretrained: i64) -> Result<Tensor, TchError> {
    let span = Tensor::f_arange_start(-(window - 1), window, (Kind::Int64, tch::Device::Cpu))?
        .f_to_kind(Kind::Float)?;
    let side = 2 * window - 1;
    let heights = span.f_view([side, 1])?.f_expand([side, side], false)?;
    let widths = span.f_view([1, side])?.f_expand([side, side], false)?;
    let mut table = Tensor::f_stack(&[heights, widths], -1)?;
    if pretrained > 0 {
        table = table.f_div_scalar((pretrained - 1) as f64)?;
    } else if window > 1 {
        table = table.f_div_scalar((window - 1) as f64)?;
    }
    let table = table.f_mul_scalar(8.0)?;
    let magnitude = table.f_abs()?.f_add_scalar(1.0)?.f_log2()?;
    table
        .f_sign()?
        .f_mul(&magnitude)?
        .f_div_scalar(3.0)?
        .f_view([side * side, 2])
}

/// Each token pair's row in the coordinates table (`[N * N]`, `N = w^2`).
fn relative_index(window: i64) -> Result<Tensor, TchError> {
    let side = 2 * window - 1;
    let mut index = Vec::with_capacity((window * window * window * window) as usize);
    for first in 0..window * window {
        let (h1, w1) = (first / window, first % window);
        for second in 0..window * window {
            let (h2, w2) = (second / window, second % window);
            index.push((h1 - h2 + window - 1) * side + (w1 - w2 + window - 1));
        }
    }
    Tensor::f_from_slice(&index)
}

/// Which of a padded axis's three shift regions each position is in.
fn regions(length: i64, window: i64, shift: i64) -> Vec<i64> {
    (0..length)
        .map(|at| i64::from(at >= length - window) + i64::from(at >= length - shift))
        .collect()
}

/// The shift mask of a padded `height x width` grid (`[windows, N, N]`):
/// 0 between tokens of one region, [`SHIFT_MASK`] across regions, the
/// windows in `window_partition`'s order.
fn shift_mask(height: i64, width: i64, window: i64, shift: i64) -> Result<Tensor, TchError> {
    let rows = regions(height, window, shift);
    let columns = regions(width, window, shift);
    let tokens = (window * window) as usize;
    let windows = ((height / window) * (width / window)) as usize;
    let mut mask = Vec::with_capacity(windows * tokens * tokens);
    let mut ids = Vec::with_capacity(tokens);
    for top in (0..height).step_by(window as usize) {
        for left in (0..width).step_by(window as usize) {
            ids.clear();
            for row in top..top + window {
                for column in left..left + window {
                    ids.push(rows[row as usize] * 3 + columns[column as usize]);
                }
            }
            for first in &ids {
                for second in &ids {
                    mask.push(if first == second {
                        0.0f32
                    } else {
                        SHIFT_MASK as f32
                    });
                }
            }
        }
    }
    Tensor::f_from_slice(&mask)?.f_view([windows as i64, tokens as i64, tokens as i64])
}

impl Swinv2 {
    /// Builds the network `config` describes from `weights` (every tensor
    /// taken, shapes checked); `classes` is the classifier's size.
    pub(crate) fn build(
        config: Swinv2Config,
        weights: &mut Weights,
        classes: i64,
    ) -> Result<Swinv2, String> {
        if config.num_channels != 3 {
            return Err(format!(
                "`num_channels` must be 3 (zoo feeds RGB images), got `{}`",
                config.num_channels
            ));
        }
        if config.use_absolute_embeddings {
            return Err(
                "`use_absolute_embeddings` true is not a Swin V2 zoo builds (transformers' own forward fails on it); set it to false"
                    .to_owned(),
            );
        }
        let embed_dim = bounded(config.embed_dim, "embed_dim", 1..=16384)?;
        let stages = config.depths.len();
        if !(1..=8).contains(&stages) || config.num_heads.len() != stages {
            return Err(format!(
                "`depths` ({stages}) and `num_heads` ({}) must list the same 1 to 8 stages",
                config.num_heads.len()
            ));
        }
        let last_dim = embed_dim << (stages - 1);
        if last_dim > 65536 {
            return Err(format!(
                "`embed_dim` {embed_dim} over {stages} stages makes {last_dim} features, beyond the 65536 zoo builds"
            ));
        }
        for depth in &config.depths {
            bounded(*depth, "depths", 0..=256)?;
        }
        let window_size = bounded(config.window_size, "window_size", 1..=64)?;
        let pretrained = match &config.pretrained_window_sizes {
            Some(sizes) if sizes.len() != stages => {
                return Err(format!(
                    "`pretrained_window_sizes` lists {} stages, `depths` {stages}",
                    sizes.len()
                ));
            }
            Some(sizes) => sizes.clone(),
            None if stages <= 4 => vec![0; stages],
            None => {
                return Err(format!(
                    "`pretrained_window_sizes` must list the {stages} stages (transformers' default has 4)"
                ));
            }
        };
        for size in &pretrained {
            if *size == 1 || !(0..=256).contains(size) {
                return Err(format!(
                    "`pretrained_window_sizes` must be 0 or from 2 to 256, got `{size}`"
                ));
            }
        }
        let mlp_ratio = config.mlp_ratio;
        if !(mlp_ratio.is_finite() && mlp_ratio > 0.0 && mlp_ratio <= 64.0) {
            return Err(format!(
                "`mlp_ratio` must be a number above 0 and at most 64, got `{mlp_ratio}`"
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
        let grid = (image_size.0 / patch_size.0, image_size.1 / patch_size.1);
        if grid.0 >> (stages - 1) == 0 {
            return Err(format!(
                "`image_size` {image_size:?} in `patch_size` {patch_size:?} patches leaves stage {stages} no rows"
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
        let failed = |err: TchError| err.to_string();
        let patch = pair_of(
            weights,
            "swinv2.embeddings.patch_embeddings.projection",
            &[embed_dim, 3, patch_size.0, patch_size.1],
            embed_dim,
        )?;
        let patch_norm = pair_of(weights, "swinv2.embeddings.norm", &[embed_dim], embed_dim)?;
        let mut built = Vec::with_capacity(stages);
        for (index, (&depth, &heads)) in config.depths.iter().zip(&config.num_heads).enumerate() {
            let dim = embed_dim << index;
            let heads = bounded(heads, "num_heads", 1..=dim)?;
            if dim % heads != 0 {
                return Err(format!(
                    "stage {} has {dim} features, not a multiple of its `num_heads` {heads}",
                    index + 1
                ));
            }
            let hidden = (mlp_ratio * dim as f64) as i64;
            if !(1..=262_144).contains(&hidden) {
                return Err(format!(
                    "`mlp_ratio` {mlp_ratio} makes stage {} {hidden} features wide, outside 1 to 262144",
                    index + 1
                ));
            }
            // transformers' `_compute_window_shift` on the stage's configured
            // grid (its height).
            let rows = grid.0 >> index;
            let window = rows.min(window_size);
            let mut layers = Vec::with_capacity(depth as usize);
            for block in 0..depth {
                let shift = if block % 2 == 0 || rows <= window {
                    0
                } else {
                    window_size / 2
                };
                let at = format!("swinv2.encoder.layers.{index}.blocks.{block}");
                let attention = format!("{at}.attention.self");
                let query = take(weights, &format!("{attention}.query.weight"), &[dim, dim])?;
                let key = take(weights, &format!("{attention}.key.weight"), &[dim, dim])?;
                let value = take(weights, &format!("{attention}.value.weight"), &[dim, dim])?;
                let qkv_weight = Tensor::f_cat(&[query, key, value], 0).map_err(failed)?;
                let qkv_bias = if config.qkv_bias {
                    let query = take(weights, &format!("{attention}.query.bias"), &[dim])?;
                    let value = take(weights, &format!("{attention}.value.bias"), &[dim])?;
                    let key =
                        Tensor::f_zeros([dim], (Kind::Float, tch::Device::Cpu)).map_err(failed)?;
                    Some(Tensor::f_cat(&[query, key, value], 0).map_err(failed)?)
                } else {
                    None
                };
                let logit_scale =
                    take(weights, &format!("{attention}.logit_scale"), &[heads, 1, 1])?;
                let scale = logit_scale
                    .f_clamp_max(max_logit_scale())
                    .and_then(|clamped| clamped.f_exp())
                    .map_err(failed)?;
                let mlp = format!("{attention}.continuous_position_bias_mlp");
                let first = pair_of(
                    weights,
                    &format!("{mlp}.0"),
                    &[BIAS_MLP_WIDTH, 2],
                    BIAS_MLP_WIDTH,
                )?;
                let second = take(
                    weights,
                    &format!("{mlp}.2.weight"),
                    &[heads, BIAS_MLP_WIDTH],
                )?;
                // Older checkpoints carry the (recomputed, unused) tables.
                let side = 2 * window - 1;
                let tokens = window * window;
                for (buffer, shape) in [
                    ("relative_coords_table", vec![1, side, side, 2]),
                    ("relative_position_index", vec![tokens, tokens]),
                ] {
                    let name = format!("{attention}.{buffer}");
                    if weights.rows(&name).is_some() {
                        drop(take(weights, &name, &shape)?);
                    }
                }
                let bias = Self::position_bias(window, pretrained[index], &first, &second)
                    .map_err(failed)?;
                layers.push(Layer {
                    window,
                    shift,
                    heads,
                    qkv: (qkv_weight, qkv_bias),
                    scale,
                    bias,
                    output: pair_of(
                        weights,
                        &format!("{at}.attention.output.dense"),
                        &[dim, dim],
                        dim,
                    )?,
                    norm_before: pair_of(weights, &format!("{at}.layernorm_before"), &[dim], dim)?,
                    intermediate: pair_of(
                        weights,
                        &format!("{at}.intermediate.dense"),
                        &[hidden, dim],
                        hidden,
                    )?,
                    feed_output: pair_of(
                        weights,
                        &format!("{at}.output.dense"),
                        &[dim, hidden],
                        dim,
                    )?,
                    norm_after: pair_of(weights, &format!("{at}.layernorm_after"), &[dim], dim)?,
                });
            }
            let merge = if index + 1 < stages {
                let prefix = format!("swinv2.encoder.layers.{index}.downsample");
                Some((
                    take(
                        weights,
                        &format!("{prefix}.reduction.weight"),
                        &[2 * dim, 4 * dim],
                    )?,
                    pair_of(weights, &format!("{prefix}.norm"), &[2 * dim], 2 * dim)?,
                ))
            } else {
                None
            };
            built.push(Stage { layers, merge });
        }
        let norm = pair_of(weights, "swinv2.layernorm", &[last_dim], last_dim)?;
        let classifier = pair_of(weights, "classifier", &[classes, last_dim], classes)?;
        Ok(Swinv2 {
            patch,
            patch_size,
            patch_norm,
            stages: built,
            norm,
            classifier,
            eps,
            activation,
        })
    }

    /// `16 * sigmoid` of the bias MLP (`first`, ReLU, `second`) at each
    /// token pair of a `window`: `[heads, N, N]`.
    fn position_bias(
        window: i64,
        pretrained: i64,
        first: &(Tensor, Tensor),
        second: &Tensor,
    ) -> Result<Tensor, TchError> {
        let _no_grad = tch::no_grad_guard();
        let table = linear(&coordinates(window, pretrained)?, first)?
            .f_relu()?
            .f_linear(second, None::<&Tensor>)?;
        let tokens = window * window;
        table
            .f_index_select(0, &relative_index(window)?)?
            .f_view([tokens, tokens, -1])?
            .f_permute([2, 0, 1])?
            .f_sigmoid()?
            .f_mul_scalar(16.0)?
            .f_contiguous()
    }

    /// How many hidden states the network has (the embeddings' output and
    /// each stage's, after its patch merging).
    pub(crate) fn hidden_states(&self) -> usize {
        self.stages.len() + 1
    }

    /// The logits of `pixels` (`[N, 3, H, W]`, any size) and hidden state
    /// `keep` (`[N, tokens, features]`; the last before the final layer
    /// norm, as transformers' `output_hidden_states` gives it).
    pub(crate) fn forward(
        &self,
        pixels: &Tensor,
        keep: usize,
    ) -> Result<(Tensor, Tensor), HfError> {
        self.run(pixels, keep).map_err(HfError::Forward)
    }

    fn run(&self, pixels: &Tensor, keep: usize) -> Result<(Tensor, Tensor), TchError> {
        let size = pixels.size();
        let [_, _, height, width] = size[..] else {
            return Err(TchError::Shape(format!(
                "Swin V2 takes [batch, 3, height, width], got {size:?}"
            )));
        };
        let (patch_height, patch_width) = self.patch_size;
        let padded = pixels.f_constant_pad_nd([
            0,
            (patch_width - width % patch_width) % patch_width,
            0,
            (patch_height - height % patch_height) % patch_height,
        ])?;
        let embedded = padded.f_conv2d(
            &self.patch.0,
            Some(&self.patch.1),
            [patch_height, patch_width],
            [0, 0],
            [1, 1],
            1,
        )?;
        let grid = embedded.size();
        let mut dims = (grid[2], grid[3]);
        let tokens = embedded.f_flatten(2, -1)?.f_transpose(1, 2)?;
        let mut xs = layer_norm(&tokens, &self.patch_norm, DEFAULT_EPS)?;
        let mut kept = (keep == 0).then(|| xs.shallow_clone());
        for (index, stage) in self.stages.iter().enumerate() {
            let mut masks: Vec<((i64, i64, i64), Tensor)> = Vec::new();
            for layer in &stage.layers {
                xs = self.layer(layer, &xs, dims, &mut masks)?;
            }
            if let Some((reduction, norm)) = &stage.merge {
                (xs, dims) = merge(&xs, dims, reduction, norm)?;
            }
            if index + 1 == keep {
                kept = Some(xs.shallow_clone());
            }
        }
        let pooled =
            layer_norm(&xs, &self.norm, self.eps)?.f_mean_dim([1].as_slice(), false, None)?;
        let logits = linear(&pooled, &self.classifier)?;
        let kept = kept.ok_or_else(|| {
            TchError::Shape(format!(
                "hidden state {keep} of {} asked for",
                self.hidden_states()
            ))
        })?;
        Ok((logits, kept))
    }

    /// One layer on `xs` (`[N, height * width, C]`); `masks` keeps the
    /// stage's shift masks by padded size and window.
    fn layer(
        &self,
        layer: &Layer,
        xs: &Tensor,
        (height, width): (i64, i64),
        masks: &mut Vec<((i64, i64, i64), Tensor)>,
    ) -> Result<Tensor, TchError> {
        let size = xs.size();
        let [batch, _, channels] = size[..] else {
            return Err(TchError::Shape(format!(
                "a Swin V2 layer takes [batch, tokens, channels], got {size:?}"
            )));
        };
        let window = layer.window;
        let (pad_height, pad_width) = (
            (window - height % window) % window,
            (window - width % window) % window,
        );
        let (padded_height, padded_width) = (height + pad_height, width + pad_width);
        let mut grid = xs
            .f_view([batch, height, width, channels])?
            .f_constant_pad_nd([0, 0, 0, pad_width, 0, pad_height])?;
        if layer.shift > 0 {
            grid = grid.f_roll([-layer.shift, -layer.shift], [1, 2])?;
        }
        let (rows, columns) = (padded_height / window, padded_width / window);
        let tokens = window * window;
        let windows = grid
            .f_view([batch, rows, window, columns, window, channels])?
            .f_permute([0, 1, 3, 2, 4, 5])?
            .f_reshape([batch * rows * columns, tokens, channels])?;
        let mask = if layer.shift > 0 {
            let key = (padded_height, padded_width, layer.shift);
            let shift_mask = match masks.iter().find(|(seen, _)| *seen == key) {
                Some((_, mask)) => mask.shallow_clone(),
                None => {
                    let mask = shift_mask(padded_height, padded_width, window, layer.shift)?;
                    masks.push((key, mask.shallow_clone()));
                    mask
                }
            };
            // [windows, heads, N, N], repeated for each image.
            layer
                .bias
                .f_unsqueeze(0)?
                .f_add(&shift_mask.f_unsqueeze(1)?)?
                .f_unsqueeze(0)?
                .f_expand([batch, rows * columns, layer.heads, tokens, tokens], false)?
                .f_reshape([batch * rows * columns, layer.heads, tokens, tokens])?
        } else {
            layer.bias.shallow_clone()
        };
        let attended = self.attention(layer, &windows, &mask)?;
        let mut grid = attended
            .f_view([batch, rows, columns, window, window, channels])?
            .f_permute([0, 1, 3, 2, 4, 5])?
            .f_reshape([batch, padded_height, padded_width, channels])?;
        if layer.shift > 0 {
            grid = grid.f_roll([layer.shift, layer.shift], [1, 2])?;
        }
        if pad_height > 0 || pad_width > 0 {
            grid = grid
                .f_slice(1, 0, height, 1)?
                .f_slice(2, 0, width, 1)?
                .f_contiguous()?;
        }
        let attended = grid.f_reshape([batch, height * width, channels])?;
        let xs = xs.f_add(&layer_norm(&attended, &layer.norm_before, self.eps)?)?;
        let hidden = self.activation.apply(&linear(&xs, &layer.intermediate)?)?;
        let fed = linear(&hidden, &layer.feed_output)?;
        xs.f_add(&layer_norm(&fed, &layer.norm_after, self.eps)?)
    }

    /// Scaled cosine attention within each window (`[windows, N, C]`), with
    /// `mask` (`[heads, N, N]` or `[windows, heads, N, N]`) added to the
    /// scores; then the output projection.
    fn attention(
        &self,
        layer: &Layer,
        windows: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor, TchError> {
        let size = windows.size();
        let [count, tokens, channels] = size[..] else {
            return Err(TchError::Shape(format!(
                "Swin V2 attention takes [windows, tokens, channels], got {size:?}"
            )));
        };
        let qkv = windows
            .f_linear(&layer.qkv.0, layer.qkv.1.as_ref())?
            .f_reshape([count, tokens, 3, layer.heads, channels / layer.heads])?
            .f_permute([2, 0, 3, 1, 4])?;
        let (query, key, value) = (qkv.f_get(0)?, qkv.f_get(1)?, qkv.f_get(2)?);
        let query = normalize(&query)?.f_mul(&layer.scale)?;
        let key = normalize(&key)?;
        let attended = Tensor::f_scaled_dot_product_attention(
            &query,
            &key,
            &value,
            Some(mask),
            0.0,
            false,
            Some(1.0),
            false,
        )?
        .f_transpose(1, 2)?
        .f_reshape([count, tokens, channels])?;
        linear(&attended, &layer.output)
    }
}

/// `F.normalize(xs, dim=-1)`: each row over its length (at least 1e-12).
fn normalize(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_div(
        &xs.f_norm_scalaropt_dim(2, [-1i64].as_slice(), true)?
            .f_clamp_min(1e-12)?,
    )
}

/// Patch merging of `xs` (`[N, height * width, C]`): an odd side padded,
/// each 2x2 block's four tokens concatenated (top-left, bottom-left,
/// top-right, bottom-right), reduced to `2C` and normalised.
fn merge(
    xs: &Tensor,
    (height, width): (i64, i64),
    reduction: &Tensor,
    norm: &(Tensor, Tensor),
) -> Result<(Tensor, (i64, i64)), TchError> {
    let size = xs.size();
    let [batch, _, channels] = size[..] else {
        return Err(TchError::Shape(format!(
            "patch merging takes [batch, tokens, channels], got {size:?}"
        )));
    };
    let (rows, columns) = ((height + 1) / 2, (width + 1) / 2);
    let merged = xs
        .f_view([batch, height, width, channels])?
        .f_constant_pad_nd([0, 0, 0, width % 2, 0, height % 2])?
        .f_view([batch, rows, 2, columns, 2, channels])?
        // [batch, rows, columns, column offset, row offset, channels].
        .f_permute([0, 1, 3, 4, 2, 5])?
        .f_reshape([batch, rows * columns, 4 * channels])?
        .f_linear(reduction, None::<&Tensor>)?;
    Ok((layer_norm(&merged, norm, DEFAULT_EPS)?, (rows, columns)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shift_mask_separates_the_regions_of_the_last_windows() {
        // A 4x4 grid in 2x2 windows shifted by 1: the first window is one
        // region; the last mixes four.
        let mask = shift_mask(4, 4, 2, 1).unwrap();
        assert_eq!(mask.size(), [4, 4, 4]);
        assert_eq!(mask.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0);
        let last = Vec::<f32>::try_from(mask.get(3).flatten(0, -1)).unwrap();
        let crossing = last.iter().filter(|value| **value != 0.0).count();
        assert_eq!(crossing, 12);
    }

    #[test]
    fn relative_indices_cover_the_table() {
        let index = Vec::<i64>::try_from(relative_index(3).unwrap()).unwrap();
        assert_eq!(index.len(), 81);
        assert_eq!(index[0], 12);
        assert_eq!(*index.iter().max().unwrap(), 24);
        assert_eq!(*index.iter().min().unwrap(), 0);
    }
}
