//! RetinaNet's head and post-processing at evaluation
//! (`models/detection/retinanet.py`): on every pyramid level (P3..P7), four
//! 3x3 convolutions with ReLU then 3x3 logits for 9 anchors x classes, and
//! the same tower for box deltas; per level the sigmoid scores above
//! `score_thresh` (0.05), their top `topk_candidates` (1000), decoding with
//! weights (1, 1, 1, 1) against anchors of sizes `x, int(x * 2^(1/3)),
//! int(x * 2^(2/3))` (x = 32..512) and ratios 0.5, 1, 2, clipping; then NMS
//! within each class (0.5) and the first `detections_per_img` (300).

use tch::nn;
use tch::{Kind, TchError, Tensor};

use crate::families::detection::backbone::conv;
use crate::families::detection::boxes;
use crate::families::detection::roi_heads::Boxes;
use crate::families::detection::rpn::{
    ASPECT_RATIOS, cell_anchors, grid_anchors, permute_and_flatten,
};
use crate::net::layers::{Conv, Forward};

/// RetinaNet's evaluation settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetinaSettings {
    pub(crate) score_thresh: f64,
    pub(crate) nms_thresh: f64,
    pub(crate) detections_per_img: i64,
    pub(crate) topk_candidates: i64,
}

impl Default for RetinaSettings {
    fn default() -> Self {
        RetinaSettings {
            score_thresh: 0.05,
            nms_thresh: 0.5,
            detections_per_img: 300,
            topk_candidates: 1000,
        }
    }
}

/// Four 3x3 convolutions with ReLU, then the output convolution.
struct Tower {
    convs: Vec<Conv>,
    output: Conv,
}

impl Tower {
    fn new(path: &nn::Path<'_>, output: &str, channels: i64) -> Tower {
        Tower {
            convs: (0..4)
                .map(|index| conv(path / "conv" / index / 0, 256, 256, 3, 1, 1, true))
                .collect(),
            output: conv(path / output, 256, channels, 3, 1, 1, true),
        }
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut x = xs.shallow_clone();
        for layer in &self.convs {
            x = layer.forward(&x)?.f_relu()?;
        }
        self.output.forward(&x)
    }
}

/// `RetinaNetHead` and its post-processing.
pub(crate) struct RetinaHead {
    classification: Tower,
    regression: Tower,
    classes: i64,
    pub(crate) settings: RetinaSettings,
}

/// The anchor sizes of a level whose base size is `x`.
fn level_sizes(x: f32) -> [f32; 3] {
    [
        x,
        (f64::from(x) * 2f64.powf(1.0 / 3.0)) as i64 as f32,
        (f64::from(x) * 2f64.powf(2.0 / 3.0)) as i64 as f32,
    ]
}

impl RetinaHead {
    pub(crate) fn new(path: &nn::Path<'_>, classes: i64) -> RetinaHead {
        let anchors = (ASPECT_RATIOS.len() * 3) as i64;
        RetinaHead {
            classification: Tower::new(
                &(path / "classification_head"),
                "cls_logits",
                anchors * classes,
            ),
            regression: Tower::new(&(path / "regression_head"), "bbox_reg", anchors * 4),
            classes,
            settings: RetinaSettings::default(),
        }
    }

    /// The detections for one image from its pyramid `features` (P3..P7),
    /// padded to `padded`, of size `image_size` before padding.
    pub(crate) fn detect(
        &self,
        features: &[Tensor],
        padded: [i64; 2],
        image_size: [i64; 2],
    ) -> Result<Boxes, TchError> {
        let mut all_boxes = Vec::new();
        let mut all_scores = Vec::new();
        let mut all_labels = Vec::new();
        for (feature, base) in features.iter().zip([32.0, 64.0, 128.0, 256.0, 512.0]) {
            let logits = permute_and_flatten(&self.classification.forward(feature)?, self.classes)?;
            let regression = permute_and_flatten(&self.regression.forward(feature)?, 4)?;
            let shape = feature.size();
            let grid = [shape[2], shape[3]];
            let stride = [padded[0] / grid[0], padded[1] / grid[1]];
            let cell =
                cell_anchors(&level_sizes(base), &ASPECT_RATIOS)?.f_to_device(feature.device())?;
            let anchors = grid_anchors(&cell, grid, stride)?;
            let scores = logits.f_sigmoid()?.f_flatten(0, -1)?;
            let keep = scores.f_gt(self.settings.score_thresh)?;
            let scores = scores.f_masked_select(&keep)?;
            let topk_idxs = boxes::where_true(&keep)?;
            let k = self.settings.topk_candidates.min(topk_idxs.size()[0]);
            let (scores, idxs) = scores.f_topk(k, -1, true, true)?;
            let topk_idxs = topk_idxs.f_index_select(0, &idxs)?;
            let anchor_idxs = topk_idxs.f_div_scalar_mode(self.classes, "floor")?;
            let labels = topk_idxs.f_remainder(self.classes)?;
            let decoded = boxes::decode(
                &regression.f_index_select(0, &anchor_idxs)?,
                &anchors.f_index_select(0, &anchor_idxs)?,
                [1.0; 4],
            )?;
            all_boxes.push(boxes::clip(&decoded, image_size[0], image_size[1])?);
            all_scores.push(scores);
            all_labels.push(labels);
        }
        let image_boxes = Tensor::f_cat(&all_boxes, 0)?;
        let image_scores = Tensor::f_cat(&all_scores, 0)?;
        let image_labels = Tensor::f_cat(&all_labels, 0)?.f_to_kind(Kind::Int64)?;
        let keep = boxes::batched_nms(
            &image_boxes,
            &image_scores,
            &image_labels,
            self.settings.nms_thresh,
        )?;
        let kept = keep.size()[0].min(self.settings.detections_per_img);
        let keep = keep.f_narrow(0, 0, kept)?;
        Ok(Boxes {
            boxes: image_boxes.f_index_select(0, &keep)?,
            scores: image_scores.f_index_select(0, &keep)?,
            labels: image_labels.f_index_select(0, &keep)?,
        })
    }
}
