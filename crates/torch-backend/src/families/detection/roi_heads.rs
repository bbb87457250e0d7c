//! torchvision's `RoIHeads` box branch at evaluation
//! (`models/detection/roi_heads.py`, `faster_rcnn.py`): 7x7 multi-scale
//! RoIAlign of the proposals, `TwoMLPHead` (`fc6`, `fc7` with ReLU),
//! `FastRCNNPredictor` (`cls_score`, `bbox_pred`), then
//! `postprocess_detections`: softmax, decoding with weights (10, 10, 5, 5),
//! clipping, the background column dropped, scores above `score_thresh`,
//! boxes of sides >= 1e-2, NMS within each class, the first
//! `detections_per_img`.

use tch::nn;
use tch::{Kind, TchError, Tensor};

use crate::families::detection::boxes;
use crate::families::detection::roi_align::multi_scale_roi_align;
use crate::net::layers::{Forward, linear};

/// The box branch's evaluation settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BoxSettings {
    /// `box_score_thresh` (0.05).
    pub(crate) score_thresh: f64,
    /// `box_nms_thresh` (0.5).
    pub(crate) nms_thresh: f64,
    /// `box_detections_per_img` (100).
    pub(crate) detections_per_img: i64,
}

impl Default for BoxSettings {
    fn default() -> Self {
        BoxSettings {
            score_thresh: 0.05,
            nms_thresh: 0.5,
            detections_per_img: 100,
        }
    }
}

/// One image's detections in the transformed image's coordinates.
#[derive(Debug)]
pub(crate) struct Boxes {
    /// `[K, 4]` `x1, y1, x2, y2`.
    pub(crate) boxes: Tensor,
    /// `[K]` scores.
    pub(crate) scores: Tensor,
    /// `[K]` class indices (`int64`).
    pub(crate) labels: Tensor,
}

/// The box head and predictor.
pub(crate) struct BoxBranch {
    fc6: nn::Linear,
    fc7: nn::Linear,
    cls_score: nn::Linear,
    bbox_pred: nn::Linear,
    pub(crate) settings: BoxSettings,
}

impl BoxBranch {
    pub(crate) fn new(path: &nn::Path<'_>, classes: i64) -> BoxBranch {
        let head = path / "box_head";
        let predictor = path / "box_predictor";
        BoxBranch {
            fc6: linear(&head / "fc6", 256 * 7 * 7, 1024),
            fc7: linear(&head / "fc7", 1024, 1024),
            cls_score: linear(&predictor / "cls_score", 1024, classes),
            bbox_pred: linear(&predictor / "bbox_pred", 1024, classes * 4),
            settings: BoxSettings::default(),
        }
    }

    /// The detections for one image from its pyramid `features` (the
    /// RoIAlign levels `0`..`3`), `proposals` `[P, 4]` and `image_size`.
    pub(crate) fn detect(
        &self,
        features: &[&Tensor],
        proposals: &Tensor,
        image_size: [i64; 2],
    ) -> Result<Boxes, TchError> {
        let pooled = multi_scale_roi_align(features, proposals, image_size, 7)?;
        let x = pooled.f_flatten(1, -1)?;
        let x = self.fc6.forward(&x)?.f_relu()?;
        let x = self.fc7.forward(&x)?.f_relu()?;
        let class_logits = self.cls_score.forward(&x)?;
        let box_regression = self.bbox_pred.forward(&x)?;
        let count = proposals.size()[0];
        let classes = class_logits.size()[1];
        let decoded = boxes::decode(
            &box_regression.f_reshape([count, -1])?,
            proposals,
            [10.0, 10.0, 5.0, 5.0],
        )?
        .f_reshape([count, -1, 4])?;
        let scores = class_logits.f_softmax(-1, None::<Kind>)?;
        let decoded = boxes::clip(&decoded, image_size[0], image_size[1])?;
        let labels = Tensor::f_arange(classes, (Kind::Int64, scores.device()))?
            .f_view([1, -1])?
            .f_expand_as(&scores)?;
        let decoded = decoded.f_slice(1, 1, None, 1)?.f_reshape([-1, 4])?;
        let scores = scores.f_slice(1, 1, None, 1)?.f_reshape([-1])?;
        let labels = labels.f_slice(1, 1, None, 1)?.f_reshape([-1])?;
        let select = |keep: &Tensor, (b, s, l): (Tensor, Tensor, Tensor)| {
            Ok::<_, TchError>((
                b.f_index_select(0, keep)?,
                s.f_index_select(0, keep)?,
                l.f_index_select(0, keep)?,
            ))
        };
        let inds = boxes::where_true(&scores.f_gt(self.settings.score_thresh)?)?;
        let found = select(&inds, (decoded, scores, labels))?;
        let keep = boxes::remove_small(&found.0, 1e-2)?;
        let found = select(&keep, found)?;
        let keep = boxes::batched_nms(&found.0, &found.1, &found.2, self.settings.nms_thresh)?;
        let kept = keep.size()[0].min(self.settings.detections_per_img);
        let (boxes, scores, labels) = select(&keep.f_narrow(0, 0, kept)?, found)?;
        Ok(Boxes {
            boxes,
            scores,
            labels,
        })
    }
}
