//! transformers' `SegformerForSemanticSegmentation` from its `config.json`
//! and weights: the Mix Transformer encoder (per stage an overlapping patch
//! embedding, a strided convolution and its layer norm; layers of
//! efficient self-attention, whose keys and values come from the tokens
//! reduced by a `sr_ratio` convolution and a layer norm, and a Mix-FFN, a
//! linear layer, a 3x3 depthwise convolution, the activation and a second
//! linear layer; the stage's layer norm) and the all-MLP decode head (each
//! stage's features projected, upsampled bilinearly to the first stage's
//! grid, concatenated last stage first, fused by a 1x1 convolution, batch
//! norm and ReLU, then the 1x1 classifier).
//!
//! The logits are at the first stage's grid (a quarter of the input with
//! the usual stride 4): transformers upsamples them only for its loss and
//! its `post_process_semantic_segmentation`, and FiftyOne's
//! `TransformersSemanticSegmentatorOutputProcessor` uses neither.
//!
//! The weights are read under the names the Hub's repos and transformers'
//! `save_pretrained` use (`segformer.encoder.block.0.0.attention.self.sr`,
//! `decode_head.linear_c.0.proj`). Attention runs in libtorch's
//! `scaled_dot_product_attention`, as transformers' default `sdpa` does.

use serde::Deserialize;
use std::path::Path;

use tch::{TchError, Tensor};

use super::repo::Weights;
use super::vit::bounded;
use super::{Activation, HfError, layer_norm, linear};

/// transformers' `nn.LayerNorm` and `nn.BatchNorm2d` default, which every
/// SegFormer norm keeps whatever `layer_norm_eps` says.
const EPS: f64 = 1e-5;

/// The most stages, layers per stage, features and heads zoo builds.
const MAX_STAGES: usize = 8;
const MAX_DEPTH: i64 = 64;
const MAX_FEATURES: i64 = 4096;

/// `SegformerConfig`'s fields zoo reads, with transformers' defaults.
#[derive(Debug, Deserialize)]
pub(crate) struct SegformerConfig {
    #[serde(default = "defaults::channels")]
    num_channels: i64,
    #[serde(default = "defaults::stages")]
    num_encoder_blocks: usize,
    #[serde(default = "defaults::depths")]
    depths: Vec<i64>,
    #[serde(default = "defaults::sr_ratios")]
    sr_ratios: Vec<i64>,
    #[serde(default = "defaults::hidden_sizes")]
    hidden_sizes: Vec<i64>,
    #[serde(default = "defaults::patch_sizes")]
    patch_sizes: Vec<i64>,
    #[serde(default = "defaults::strides")]
    strides: Vec<i64>,
    #[serde(default = "defaults::heads")]
    num_attention_heads: Vec<i64>,
    #[serde(default = "defaults::mlp_ratios")]
    mlp_ratios: Vec<f64>,
    #[serde(default = "defaults::activation")]
    hidden_act: String,
    #[serde(default = "defaults::decoder")]
    decoder_hidden_size: i64,
    #[serde(default = "defaults::reshape")]
    reshape_last_stage: bool,
}

mod defaults {
    pub(super) fn channels() -> i64 {
        3
    }
    pub(super) fn stages() -> usize {
        4
    }
    pub(super) fn depths() -> Vec<i64> {
        vec![2, 2, 2, 2]
    }
    pub(super) fn sr_ratios() -> Vec<i64> {
        vec![8, 4, 2, 1]
    }
    pub(super) fn hidden_sizes() -> Vec<i64> {
        vec![32, 64, 160, 256]
    }
    pub(super) fn patch_sizes() -> Vec<i64> {
        vec![7, 3, 3, 3]
    }
    pub(super) fn strides() -> Vec<i64> {
        vec![4, 2, 2, 2]
    }
    pub(super) fn heads() -> Vec<i64> {
        vec![1, 2, 5, 8]
    }
    pub(super) fn mlp_ratios() -> Vec<f64> {
        vec![4.0, 4.0, 4.0, 4.0]
    }
    pub(super) fn activation() -> String {
        "gelu".to_owned()
    }
    pub(super) fn decoder() -> i64 {
        256
    }
    pub(super) fn reshape() -> bool {
        true
    }
}

/// A convolution's weight and bias.
type Conv = (Tensor, Tensor);

/// One efficient self-attention and Mix-FFN layer.
struct Layer {
    heads: i64,
    norm_before: (Tensor, Tensor),
    query: (Tensor, Tensor),
    key: (Tensor, Tensor),
    value: (Tensor, Tensor),
    /// The sequence reduction: its ratio, convolution and layer norm.
    reduction: Option<(i64, Conv, (Tensor, Tensor))>,
    output: (Tensor, Tensor),
    norm_after: (Tensor, Tensor),
    fc1: (Tensor, Tensor),
    /// The 3x3 depthwise convolution.
    depthwise: Conv,
    fc2: (Tensor, Tensor),
}

struct Stage {
    patch: Conv,
    stride: i64,
    padding: i64,
    patch_norm: (Tensor, Tensor),
    layers: Vec<Layer>,
    norm: (Tensor, Tensor),
}

/// The decode head.
struct Head {
    /// Each stage's linear projection.
    projections: Vec<(Tensor, Tensor)>,
    /// The 1x1 fuse convolution (no bias).
    fuse: Tensor,
    /// Batch norm: weight, bias, running mean and variance.
    norm: [Tensor; 4],
    classifier: Conv,
}

/// A SegFormer semantic segmenter (see the module docs).
pub(crate) struct Segformer {
    stages: Vec<Stage>,
    head: Head,
    activation: Activation,
    /// Per stage: kernel, stride, padding and reduction ratio (for
    /// [`Segformer::min_input`]).
    geometry: Vec<(i64, i64, i64, i64)>,
}

/// `list` has one value per stage.
fn per_stage<T>(list: &[T], field: &str, stages: usize) -> Result<(), String> {
    if list.len() == stages {
        Ok(())
    } else {
        Err(format!(
            "`{field}` lists {} values; `num_encoder_blocks` makes it {stages}",
            list.len()
        ))
    }
}

impl Segformer {
    /// Builds the network from `config` (read from `path`), taking its
    /// tensors from `weights`; the head has `classes` outputs.
    pub(crate) fn build(
        config: SegformerConfig,
        path: &Path,
        weights: &mut Weights,
        classes: i64,
    ) -> Result<Segformer, HfError> {
        let stages = config.num_encoder_blocks;
        let invalid = |message: String| HfError::Config {
            path: path.to_owned(),
            message,
        };
        let checked = || -> Result<Activation, String> {
            if !(1..=MAX_STAGES).contains(&stages) {
                return Err(format!(
                    "`num_encoder_blocks` must be from 1 to {MAX_STAGES}, got `{stages}`"
                ));
            }
            per_stage(&config.depths, "depths", stages)?;
            per_stage(&config.sr_ratios, "sr_ratios", stages)?;
            per_stage(&config.hidden_sizes, "hidden_sizes", stages)?;
            per_stage(&config.patch_sizes, "patch_sizes", stages)?;
            per_stage(&config.strides, "strides", stages)?;
            per_stage(&config.num_attention_heads, "num_attention_heads", stages)?;
            per_stage(&config.mlp_ratios, "mlp_ratios", stages)?;
            if config.num_channels != 3 {
                return Err(format!(
                    "`num_channels` must be 3 (zoo feeds RGB images), got `{}`",
                    config.num_channels
                ));
            }
            bounded(
                config.decoder_hidden_size,
                "decoder_hidden_size",
                1..=MAX_FEATURES,
            )?;
            for stage in 0..stages {
                bounded(config.depths[stage], "depths", 0..=MAX_DEPTH)?;
                bounded(config.sr_ratios[stage], "sr_ratios", 1..=64)?;
                bounded(config.patch_sizes[stage], "patch_sizes", 1..=64)?;
                bounded(config.strides[stage], "strides", 1..=64)?;
                let hidden = bounded(config.hidden_sizes[stage], "hidden_sizes", 1..=MAX_FEATURES)?;
                let heads = bounded(
                    config.num_attention_heads[stage],
                    "num_attention_heads",
                    1..=hidden,
                )?;
                if hidden % heads != 0 {
                    return Err(format!(
                        "`hidden_sizes` {hidden} of stage {stage} is not a multiple of its `num_attention_heads` {heads}"
                    ));
                }
                let ratio = config.mlp_ratios[stage];
                if !(ratio.is_finite() && (hidden as f64 * ratio) >= 1.0 && ratio <= 64.0) {
                    return Err(format!(
                        "`mlp_ratios` of stage {stage} must give from 1 to {} features, got `{ratio}`",
                        hidden * 64
                    ));
                }
            }
            if !config.reshape_last_stage {
                return Err(
                    "`reshape_last_stage` false: zoo builds SegFormer's decode head on the last stage's grid (`true`, every released config)".to_owned(),
                );
            }
            Activation::named(&config.hidden_act)
        };
        let activation = checked().map_err(invalid)?;
        let mut built = Vec::with_capacity(stages);
        let mut geometry = Vec::with_capacity(stages);
        let mut inputs = config.num_channels;
        for stage in 0..stages {
            let hidden = config.hidden_sizes[stage];
            let kernel = config.patch_sizes[stage];
            let ratio = config.sr_ratios[stage];
            let heads = config.num_attention_heads[stage];
            // transformers' `int(hidden_size * mlp_ratio)`.
            let inner = (hidden as f64 * config.mlp_ratios[stage]) as i64;
            let prefix = format!("segformer.encoder.patch_embeddings.{stage}");
            let patch = (
                weights.take(
                    &format!("{prefix}.proj.weight"),
                    &[hidden, inputs, kernel, kernel],
                )?,
                weights.take(&format!("{prefix}.proj.bias"), &[hidden])?,
            );
            let patch_norm = norm(weights, &format!("{prefix}.layer_norm"), hidden)?;
            let mut layers = Vec::with_capacity(config.depths[stage] as usize);
            for index in 0..config.depths[stage] {
                let prefix = format!("segformer.encoder.block.{stage}.{index}");
                let attention = format!("{prefix}.attention.self");
                let reduction = if ratio > 1 {
                    Some((
                        ratio,
                        (
                            weights.take(
                                &format!("{attention}.sr.weight"),
                                &[hidden, hidden, ratio, ratio],
                            )?,
                            weights.take(&format!("{attention}.sr.bias"), &[hidden])?,
                        ),
                        norm(weights, &format!("{attention}.layer_norm"), hidden)?,
                    ))
                } else {
                    None
                };
                layers.push(Layer {
                    heads,
                    norm_before: norm(weights, &format!("{prefix}.layer_norm_1"), hidden)?,
                    query: dense(weights, &format!("{attention}.query"), hidden, hidden)?,
                    key: dense(weights, &format!("{attention}.key"), hidden, hidden)?,
                    value: dense(weights, &format!("{attention}.value"), hidden, hidden)?,
                    reduction,
                    output: dense(
                        weights,
                        &format!("{prefix}.attention.output.dense"),
                        hidden,
                        hidden,
                    )?,
                    norm_after: norm(weights, &format!("{prefix}.layer_norm_2"), hidden)?,
                    fc1: dense(weights, &format!("{prefix}.mlp.dense1"), inner, hidden)?,
                    depthwise: (
                        weights.take(
                            &format!("{prefix}.mlp.dwconv.dwconv.weight"),
                            &[inner, 1, 3, 3],
                        )?,
                        weights.take(&format!("{prefix}.mlp.dwconv.dwconv.bias"), &[inner])?,
                    ),
                    fc2: dense(weights, &format!("{prefix}.mlp.dense2"), hidden, inner)?,
                });
            }
            let norm = norm(
                weights,
                &format!("segformer.encoder.layer_norm.{stage}"),
                hidden,
            )?;
            built.push(Stage {
                patch,
                stride: config.strides[stage],
                padding: kernel / 2,
                patch_norm,
                layers,
                norm,
            });
            geometry.push((kernel, config.strides[stage], kernel / 2, ratio));
            inputs = hidden;
        }
        let decoder = config.decoder_hidden_size;
        let projections = (0..stages)
            .map(|stage| {
                dense(
                    weights,
                    &format!("decode_head.linear_c.{stage}.proj"),
                    decoder,
                    config.hidden_sizes[stage],
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fuse = weights.take(
            "decode_head.linear_fuse.weight",
            &[decoder, decoder * stages as i64, 1, 1],
        )?;
        let norm = ["weight", "bias", "running_mean", "running_var"]
            .map(|part| weights.take(&format!("decode_head.batch_norm.{part}"), &[decoder]));
        let [weight, bias, mean, var] = norm;
        let norm = [weight?, bias?, mean?, var?];
        // The step counter of training, which the forward does not read.
        let _ = weights.take("decode_head.batch_norm.num_batches_tracked", &[]);
        let classifier = (
            weights.take("decode_head.classifier.weight", &[classes, decoder, 1, 1])?,
            weights.take("decode_head.classifier.bias", &[classes])?,
        );
        Ok(Segformer {
            stages: built,
            head: Head {
                projections,
                fuse,
                norm,
                classifier,
            },
            activation,
            geometry,
        })
    }

    /// The smallest side of an input every stage's patch embedding and
    /// sequence reduction take.
    pub(crate) fn min_input(&self) -> i64 {
        let fits = |side: i64| {
            let mut grid = side;
            for &(kernel, stride, padding, ratio) in &self.geometry {
                if grid + 2 * padding < kernel {
                    return false;
                }
                grid = (grid + 2 * padding - kernel) / stride + 1;
                if grid < ratio {
                    return false;
                }
            }
            true
        };
        (1..=i64::from(crate::preprocess::MAX_IMAGE_SIDE))
            .find(|side| fits(*side))
            .unwrap_or(i64::from(crate::preprocess::MAX_IMAGE_SIDE))
    }

    /// The logits (`[N, classes, h, w]`, at the first stage's grid) of
    /// `pixels` (`[N, C, H, W]`).
    pub(crate) fn forward(&self, pixels: &Tensor) -> Result<Tensor, HfError> {
        let _no_grad = tch::no_grad_guard();
        self.logits(pixels).map_err(HfError::Forward)
    }

    fn logits(&self, pixels: &Tensor) -> Result<Tensor, TchError> {
        let mut xs = pixels.shallow_clone();
        let mut features = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            xs = self.stage(stage, &xs)?;
            features.push(xs.shallow_clone());
        }
        let head = &self.head;
        let first = features[0].size();
        let (batch, height, width) = (first[0], first[2], first[3]);
        let mut projected = Vec::with_capacity(features.len());
        for (feature, projection) in features.iter().zip(&head.projections) {
            let size = feature.size();
            let tokens = feature.f_flatten(2, -1)?.f_transpose(1, 2)?;
            let ys = linear(&tokens, projection)?
                .f_transpose(1, 2)?
                .f_reshape([batch, -1, size[2], size[3]])?
                .f_upsample_bilinear2d([height, width], false, None, None)?;
            projected.push(ys);
        }
        projected.reverse();
        let [weight, bias, mean, var] = &head.norm;
        let ys = Tensor::f_cat(&projected, 1)?
            .f_conv2d(&head.fuse, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)?
            .f_batch_norm(
                Some(weight),
                Some(bias),
                Some(mean),
                Some(var),
                false,
                0.1,
                EPS,
                false,
            )?
            .f_relu()?;
        let (classifier, classifier_bias) = &head.classifier;
        ys.f_conv2d(classifier, Some(classifier_bias), [1, 1], [0, 0], [1, 1], 1)
    }

    /// One stage: `[N, C, H, W]` to `[N, hidden, h, w]`.
    fn stage(&self, stage: &Stage, xs: &Tensor) -> Result<Tensor, TchError> {
        let (weight, bias) = &stage.patch;
        let xs = xs.f_conv2d(
            weight,
            Some(bias),
            [stage.stride, stage.stride],
            [stage.padding, stage.padding],
            [1, 1],
            1,
        )?;
        let size = xs.size();
        let (batch, height, width) = (size[0], size[2], size[3]);
        let mut tokens = layer_norm(
            &xs.f_flatten(2, -1)?.f_transpose(1, 2)?,
            &stage.patch_norm,
            EPS,
        )?;
        for layer in &stage.layers {
            tokens = self.layer(layer, &tokens, height, width)?;
        }
        let channels = stage.norm.0.size()[0];
        layer_norm(&tokens, &stage.norm, EPS)?
            .f_reshape([batch, height, width, channels])?
            .f_permute([0, 3, 1, 2])?
            .f_contiguous()
    }

    /// One layer on `[N, h * w, hidden]` tokens.
    fn layer(
        &self,
        layer: &Layer,
        tokens: &Tensor,
        height: i64,
        width: i64,
    ) -> Result<Tensor, TchError> {
        let size = tokens.size();
        let (batch, count, hidden) = (size[0], size[1], size[2]);
        let head_dim = hidden / layer.heads;
        let normed = layer_norm(tokens, &layer.norm_before, EPS)?;
        let heads = |xs: &Tensor, projection: &(Tensor, Tensor)| {
            linear(xs, projection)?
                .f_view([batch, -1, layer.heads, head_dim])?
                .f_transpose(1, 2)
        };
        let query = heads(&normed, &layer.query)?;
        let reduced = match &layer.reduction {
            Some((ratio, (weight, bias), norm)) => {
                let grid = normed
                    .f_transpose(1, 2)?
                    .f_reshape([batch, hidden, height, width])?
                    .f_conv2d(weight, Some(bias), [*ratio, *ratio], [0, 0], [1, 1], 1)?
                    .f_reshape([batch, hidden, -1])?
                    .f_transpose(1, 2)?;
                layer_norm(&grid, norm, EPS)?
            }
            None => normed.shallow_clone(),
        };
        let key = heads(&reduced, &layer.key)?;
        let value = heads(&reduced, &layer.value)?;
        let attended = Tensor::f_scaled_dot_product_attention(
            &query,
            &key,
            &value,
            None::<Tensor>,
            0.0,
            false,
            Some((head_dim as f64).powf(-0.5)),
            false,
        )?
        .f_transpose(1, 2)?
        .f_reshape([batch, count, hidden])?;
        let tokens = linear(&attended, &layer.output)?.f_add(tokens)?;
        let normed = layer_norm(&tokens, &layer.norm_after, EPS)?;
        let inner = linear(&normed, &layer.fc1)?;
        let channels = inner.size()[2];
        let (weight, bias) = &layer.depthwise;
        let mixed = inner
            .f_transpose(1, 2)?
            .f_view([batch, channels, height, width])?
            .f_conv2d(weight, Some(bias), [1, 1], [1, 1], [1, 1], channels)?
            .f_flatten(2, -1)?
            .f_transpose(1, 2)?;
        let mixed = self.activation.apply(&mixed)?;
        linear(&mixed, &layer.fc2)?.f_add(&tokens)
    }
}

/// A layer norm's weight and bias.
fn norm(weights: &mut Weights, prefix: &str, size: i64) -> Result<(Tensor, Tensor), HfError> {
    Ok((
        weights.take(&format!("{prefix}.weight"), &[size])?,
        weights.take(&format!("{prefix}.bias"), &[size])?,
    ))
}

/// A linear layer's weight (`[outputs, inputs]`) and bias.
fn dense(
    weights: &mut Weights,
    prefix: &str,
    outputs: i64,
    inputs: i64,
) -> Result<(Tensor, Tensor), HfError> {
    Ok((
        weights.take(&format!("{prefix}.weight"), &[outputs, inputs])?,
        weights.take(&format!("{prefix}.bias"), &[outputs])?,
    ))
}
