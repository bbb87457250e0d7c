//! transformers' `OwlViTForObjectDetection` (`model_type` `owlvit`) from
//! its repo: the CLIP towers of `clip.rs` (under `owlvit.`), then per
//! patch token
//!
//! - the merge: every post-normed patch token times the post-normed class
//!   token, then `layer_norm`;
//! - the box head: `dense0`, GELU, `dense1`, GELU, `dense2`, plus the box
//!   bias of the patch grid (each patch's corner and size, as logits), then
//!   a sigmoid: `[cx, cy, w, h]` relative to the model's input;
//! - the class head: `dense0` of the token and the text queries (the
//!   projected, normalised text embeddings), each normalised (L2 plus
//!   `1e-6`), their products plus `logit_shift`, times `elu(logit_scale) +
//!   1`; queries whose first token id is 0 (padding) score the lowest
//!   `f32`.
//!
//! FiftyOne's default classes are `id2label`'s (transformers' `LABEL_0`
//! and `LABEL_1` unless the repo names some).
//!
//! The image processor is `OwlViTImageProcessor` (`processor.rs`), the
//! tokenizer the repo's `tokenizer.json` (`tokenizer.rs`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::{Kind, TchError, Tensor};

use super::clip::{Clip, ClipConfig, Dual};
use super::processor::{ImageProcessor, ProcessorKind};
use super::repo::Weights;
use super::tokenizer::HfTokenizer;
use super::{HfError, layer_norm, linear, repo};

/// The zero-shot detectors zoo builds: `model_type` and transformers'
/// class (the name in `FAMILIES`).
pub(crate) const ZERO_SHOT_DETECTORS: &[(&str, &str)] = &[("owlvit", "OwlViTForObjectDetection")];

/// `config.json`'s `model_type`.
#[derive(Debug, Deserialize)]
struct Common {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An `OwlViTForObjectDetection` (see the module docs).
pub(crate) struct OwlVit {
    towers: Clip,
    /// `layer_norm`, on the merged tokens.
    merged_norm: (Tensor, Tensor),
    eps: f64,
    box_head: [(Tensor, Tensor); 3],
    class_dense: (Tensor, Tensor),
    logit_shift: (Tensor, Tensor),
    logit_scale: (Tensor, Tensor),
    /// `[patches, 4]`.
    box_bias: Tensor,
}

/// The box bias of a `height` x `width` patch grid (`compute_box_bias`),
/// in `f32` as transformers computes it: `[height * width, 4]`.
fn box_bias(height: i64, width: i64) -> Result<Tensor, TchError> {
    let options = (Kind::Float, tch::Device::Cpu);
    let xs = Tensor::f_arange_start(1, width + 1, options)?.f_div_scalar(width as f64)?;
    let ys = Tensor::f_arange_start(1, height + 1, options)?.f_div_scalar(height as f64)?;
    // `meshgrid(x, y, indexing="xy")`, flattened row by row.
    let xx = xs.f_view([1, width])?.f_expand([height, width], false)?;
    let yy = ys.f_view([height, 1])?.f_expand([height, width], false)?;
    let corners = Tensor::f_stack(&[xx, yy], -1)?
        .f_reshape([height * width, 2])?
        .f_clamp(0.0, 1.0)?;
    let logit = |xs: &Tensor| -> Result<Tensor, TchError> {
        xs.f_add_scalar(1e-4)?
            .f_log()?
            .f_sub(&xs.f_neg()?.f_add_scalar(1e-4)?.f_log1p()?)
    };
    let sizes = Tensor::f_from_slice(&[1.0f32 / width as f32, 1.0f32 / height as f32])?
        .f_view([1, 2])?
        .f_expand([height * width, 2], false)?;
    Tensor::f_cat(&[logit(&corners)?, logit(&sizes)?], -1)
}

impl OwlVit {
    /// Builds the network `config` describes from `weights` (every tensor
    /// taken, shapes checked).
    fn build(config: ClipConfig, weights: &mut Weights) -> Result<OwlVit, String> {
        let towers = Clip::build(Dual::OwlVit, config, weights)?;
        let (hidden, eps) = towers.vision_width();
        let (text_width, projection) = towers.text_widths();
        if projection != text_width {
            return Err(format!(
                "`projection_dim` {projection} must be `text_config.hidden_size` {text_width}: the class head compares the projected queries with `class_head.dense0`'s outputs (transformers fails too)"
            ));
        }
        let take = |weights: &mut Weights, name: &str, shape: &[i64]| {
            weights.take(name, shape).map_err(|err| err.to_string())
        };
        let pair = |weights: &mut Weights, name: &str, rows: i64, columns: i64| {
            Ok::<_, String>((
                take(weights, &format!("{name}.weight"), &[rows, columns])?,
                take(weights, &format!("{name}.bias"), &[rows])?,
            ))
        };
        let merged_norm = (
            take(weights, "layer_norm.weight", &[hidden])?,
            take(weights, "layer_norm.bias", &[hidden])?,
        );
        let box_head = [
            pair(weights, "box_head.dense0", hidden, hidden)?,
            pair(weights, "box_head.dense1", hidden, hidden)?,
            pair(weights, "box_head.dense2", 4, hidden)?,
        ];
        let class_dense = pair(weights, "class_head.dense0", text_width, hidden)?;
        let logit_shift = pair(weights, "class_head.logit_shift", 1, hidden)?;
        let logit_scale = pair(weights, "class_head.logit_scale", 1, hidden)?;
        let (rows, columns) = towers.patch_grid();
        let box_bias = box_bias(rows, columns).map_err(|err| err.to_string())?;
        Ok(OwlVit {
            towers,
            merged_norm,
            eps,
            box_head,
            class_dense,
            logit_shift,
            logit_scale,
            box_bias,
        })
    }

    /// The input size the vision tower takes, `(height, width)`.
    pub(crate) fn image_size(&self) -> (i64, i64) {
        self.towers.image_size()
    }

    /// The text queries' embeddings (`text_embeds`: projected, L2
    /// normalised), `[queries, projection]`, and the query mask (the first
    /// token id above 0), of token rows with their attention masks.
    pub(crate) fn queries(
        &self,
        ids: &[Vec<i64>],
        attention: &[Vec<i64>],
    ) -> Result<(Tensor, Tensor), HfError> {
        let features = self.towers.text_features(ids, attention)?;
        let run = || -> Result<(Tensor, Tensor), TchError> {
            let norm = features.f_linalg_norm(2, [-1i64].as_slice(), true, None::<Kind>)?;
            let valid: Vec<bool> = ids
                .iter()
                .map(|row| row.first().is_some_and(|id| *id > 0))
                .collect();
            Ok((features.f_div(&norm)?, Tensor::f_from_slice(&valid)?))
        };
        run().map_err(HfError::Forward)
    }

    /// `logits` (`[N, patches, queries]`) and `pred_boxes` (`[N, patches,
    /// 4]`, relative `[cx, cy, w, h]`) of `pixels` (`[N, 3, H, W]`) for the
    /// `queries` of [`OwlVit::queries`], the same for every image.
    pub(crate) fn detect(
        &self,
        pixels: &Tensor,
        (queries, mask): &(Tensor, Tensor),
    ) -> Result<(Tensor, Tensor), HfError> {
        let _no_grad = tch::no_grad_guard();
        self.run(pixels, queries, mask).map_err(HfError::Forward)
    }

    fn run(
        &self,
        pixels: &Tensor,
        queries: &Tensor,
        mask: &Tensor,
    ) -> Result<(Tensor, Tensor), TchError> {
        let tokens = self.towers.vision_tokens(pixels)?;
        let count = tokens.size()[1];
        let class = tokens.f_narrow(1, 0, 1)?;
        let merged = tokens.f_narrow(1, 1, count - 1)?.f_mul(&class)?;
        let features = layer_norm(&merged, &self.merged_norm, self.eps)?;
        // The class head.
        let normed = |xs: &Tensor| -> Result<Tensor, TchError> {
            let norm = xs
                .f_linalg_norm(2, [-1i64].as_slice(), true, None::<Kind>)?
                .f_add_scalar(1e-6)?;
            xs.f_div(&norm)
        };
        let image_class = normed(&linear(&features, &self.class_dense)?)?;
        let queries = normed(queries)?;
        let logits = image_class.f_matmul(&queries.f_transpose(0, 1)?)?;
        let shift = linear(&features, &self.logit_shift)?;
        let scale = linear(&features, &self.logit_scale)?
            .f_elu()?
            .f_add_scalar(1.0)?;
        let logits = logits.f_add(&shift)?.f_mul(&scale)?;
        let lowest = Tensor::f_from_slice(&[f32::MIN])?;
        let logits = logits.f_where_self(&mask.f_view([1, 1, -1])?, &lowest)?;
        // The box head.
        let hidden = linear(&features, &self.box_head[0])?.f_gelu("none")?;
        let hidden = linear(&hidden, &self.box_head[1])?.f_gelu("none")?;
        let boxes = linear(&hidden, &self.box_head[2])?
            .f_add(&self.box_bias)?
            .f_sigmoid()?;
        Ok((logits, boxes))
    }
}

/// A zero-shot detector read from a Hugging Face repo: its network, image
/// processor and tokenizer.
pub(crate) struct ZeroShotDetectorRepo {
    /// transformers' class (`OwlViTForObjectDetection`).
    pub(crate) class: &'static str,
    pub(crate) network: OwlVit,
    pub(crate) processor: ImageProcessor,
    pub(crate) tokenizer: HfTokenizer,
    /// `id2label`'s values (FiftyOne's default classes), else
    /// transformers' `LABEL_0` and `LABEL_1`.
    pub(crate) labels: Vec<String>,
}

impl ZeroShotDetectorRepo {
    /// Reads the repo in `dir`: `config.json`, the weights,
    /// `preprocessor_config.json` (or `processor_config.json`), run as
    /// transformers' PIL backend when `pil`, and `tokenizer.json`.
    pub(crate) fn load(dir: &Path, pil: bool) -> Result<ZeroShotDetectorRepo, HfError> {
        let path: PathBuf = dir.join("config.json");
        let common: Common = repo::read_json(dir, "config.json")?;
        let model_type = common.model_type.unwrap_or_default();
        let class = ZERO_SHOT_DETECTORS
            .iter()
            .find(|(kind, _)| *kind == model_type)
            .map(|(_, class)| *class)
            .ok_or_else(|| HfError::Unsupported {
                path: path.clone(),
                model_type: model_type.clone(),
                known: ZERO_SHOT_DETECTORS
                    .iter()
                    .map(|(kind, _)| format!("`{kind}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                what: "zero-shot object detectors",
            })?;
        let labels = super::zero_shot_labels(common.id2label, &path)?;
        let mut weights = repo::read_weights(dir)?;
        let config: ClipConfig = repo::read_json(dir, "config.json")?;
        let network = OwlVit::build(config, &mut weights)
            .map_err(|message| HfError::Config { path, message })?;
        weights.finish()?;
        let processor = ImageProcessor::read_with(dir, ProcessorKind::OwlVit, pil)?;
        let (height, width) = network.image_size();
        if processor.fixed_size() != Some((width as u32, height as u32)) {
            return Err(HfError::Config {
                path: dir.join("preprocessor_config.json"),
                message: format!(
                    "the processor's images are not the {width}x{height} the model's `image_size` takes (transformers would refuse them too)"
                ),
            });
        }
        let tokenizer = HfTokenizer::load(dir)?;
        Ok(ZeroShotDetectorRepo {
            class,
            network,
            processor,
            tokenizer,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' `OwlViTForObjectDetection.compute_box_bias(2, 3)`,
    /// as transformers 5.25 prints it.
    #[test]
    fn box_bias_is_transformers_grid() {
        let expected: [f32; 24] = [
            -0.6929972, 5.96e-8, -0.6929972, 5.96e-8, 0.69299734, 5.96e-8, -0.6929972, 5.96e-8,
            9.210275, 5.96e-8, -0.6929972, 5.96e-8, -0.6929972, 9.210275, -0.6929972, 5.96e-8,
            0.69299734, 9.210275, -0.6929972, 5.96e-8, 9.210275, 9.210275, -0.6929972, 5.96e-8,
        ];
        let bias = box_bias(2, 3).unwrap();
        assert_eq!(bias.size(), [6, 4]);
        let values = Vec::<f32>::try_from(bias.flatten(0, -1)).unwrap();
        for (value, expected) in values.iter().zip(expected) {
            assert!((value - expected).abs() < 1e-6, "{value} {expected}");
        }
    }
}
