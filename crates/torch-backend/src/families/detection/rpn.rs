//! torchvision's region proposal network (`models/detection/rpn.py`,
//! `anchor_utils.py`) at evaluation: anchors of sizes 32..512 (one per
//! level) and aspect ratios 0.5, 1, 2, the head's objectness and deltas,
//! then per level the top `pre_nms_top_n` (1000) by objectness, decoding,
//! clipping, small boxes (< 1e-3) dropped, NMS at 0.7 within each level,
//! and the first `post_nms_top_n` (1000) kept.

use tch::nn;
use tch::{Kind, TchError, Tensor};

use crate::families::detection::backbone::conv;
use crate::families::detection::boxes;
use crate::net::layers::{Conv, Forward};

/// The RPN's settings (torchvision's evaluation defaults).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RpnSettings {
    pub(crate) pre_nms_top_n: i64,
    pub(crate) post_nms_top_n: i64,
    pub(crate) nms_thresh: f64,
    pub(crate) score_thresh: f64,
}

impl Default for RpnSettings {
    fn default() -> Self {
        RpnSettings {
            pre_nms_top_n: 1000,
            post_nms_top_n: 1000,
            nms_thresh: 0.7,
            score_thresh: 0.0,
        }
    }
}

/// `RPNHead(256, 3)`: a 3x3 convolution and ReLU, then 1x1 objectness and
/// box deltas, on every level.
pub(crate) struct Rpn {
    conv: Conv,
    cls_logits: Conv,
    bbox_pred: Conv,
    pub(crate) settings: RpnSettings,
}

/// The sizes of the anchors on each level (`_default_anchorgen`).
const ANCHOR_SIZES: [f32; 5] = [32.0, 64.0, 128.0, 256.0, 512.0];
/// Their aspect ratios (height / width).
pub(crate) const ASPECT_RATIOS: [f32; 3] = [0.5, 1.0, 2.0];

/// `AnchorGenerator.generate_anchors(sizes, aspect_ratios)`: zero-centred
/// `[ratios x sizes, 4]` base anchors (ratio-major), rounded.
pub(crate) fn cell_anchors(sizes: &[f32], aspect_ratios: &[f32]) -> Result<Tensor, TchError> {
    let scales = Tensor::f_from_slice(sizes)?;
    let ratios = Tensor::f_from_slice(aspect_ratios)?;
    let h_ratios = ratios.f_sqrt()?;
    let w_ratios = h_ratios.f_reciprocal()?;
    let ws = w_ratios
        .f_unsqueeze(1)?
        .f_mul(&scales.f_unsqueeze(0)?)?
        .f_view([-1])?;
    let hs = h_ratios
        .f_unsqueeze(1)?
        .f_mul(&scales.f_unsqueeze(0)?)?
        .f_view([-1])?;
    Tensor::f_stack(&[ws.f_neg()?, hs.f_neg()?, ws, hs], 1)?
        .f_div_scalar(2)?
        .f_round()
}

/// `AnchorGenerator.grid_anchors` for one level: the base anchors shifted
/// to every cell of a `grid` (`[height, width]`) with `stride`, cell-major.
pub(crate) fn grid_anchors(
    base: &Tensor,
    grid: [i64; 2],
    stride: [i64; 2],
) -> Result<Tensor, TchError> {
    let options = (Kind::Int64, base.device());
    let shifts_x = Tensor::f_arange(grid[1], options)?.f_mul_scalar(stride[1])?;
    let shifts_y = Tensor::f_arange(grid[0], options)?.f_mul_scalar(stride[0])?;
    let shift_y = shifts_y
        .f_unsqueeze(1)?
        .f_expand([grid[0], grid[1]], false)?
        .f_reshape([-1])?;
    let shift_x = shifts_x
        .f_unsqueeze(0)?
        .f_expand([grid[0], grid[1]], false)?
        .f_reshape([-1])?;
    let shifts = Tensor::f_stack(&[&shift_x, &shift_y, &shift_x, &shift_y], 1)?;
    shifts
        .f_view([-1, 1, 4])?
        .f_add(&base.f_view([1, -1, 4])?)?
        .f_reshape([-1, 4])
}

/// `permute_and_flatten`: `[1, A * C, H, W]` to `[H * W * A, C]`.
pub(crate) fn permute_and_flatten(layer: &Tensor, channels: i64) -> Result<Tensor, TchError> {
    let size = layer.size();
    layer
        .f_view([size[0], -1, channels, size[2], size[3]])?
        .f_permute([0, 3, 4, 1, 2])?
        .f_reshape([-1, channels])
}

impl Rpn {
    pub(crate) fn new(path: &nn::Path<'_>, channels: i64) -> Rpn {
        let anchors = ASPECT_RATIOS.len() as i64;
        Rpn {
            conv: conv(path / "conv" / 0 / 0, channels, channels, 3, 1, 1, true),
            cls_logits: conv(path / "cls_logits", channels, anchors, 1, 1, 0, true),
            bbox_pred: conv(path / "bbox_pred", channels, anchors * 4, 1, 1, 0, true),
            settings: RpnSettings::default(),
        }
    }

    /// The proposals `[P, 4]` for one image whose pyramid is `features`
    /// (each `[1, 256, h, w]`), padded to `padded` and of size
    /// `image_size` (`[height, width]`) before padding.
    pub(crate) fn proposals(
        &self,
        features: &[Tensor],
        padded: [i64; 2],
        image_size: [i64; 2],
    ) -> Result<Tensor, TchError> {
        let mut objectness = Vec::new();
        let mut deltas = Vec::new();
        let mut anchors = Vec::new();
        let mut per_level = Vec::new();
        for (feature, size) in features.iter().zip(ANCHOR_SIZES) {
            let t = self.conv.forward(feature)?.f_relu()?;
            let logits = self.cls_logits.forward(&t)?;
            let regression = self.bbox_pred.forward(&t)?;
            let shape = logits.size();
            per_level.push(shape[1] * shape[2] * shape[3]);
            objectness.push(permute_and_flatten(&logits, 1)?);
            deltas.push(permute_and_flatten(&regression, 4)?);
            let grid = [shape[2], shape[3]];
            let stride = [padded[0] / grid[0], padded[1] / grid[1]];
            let base = cell_anchors(&[size], &ASPECT_RATIOS)?.f_to_device(feature.device())?;
            anchors.push(grid_anchors(&base, grid, stride)?);
        }
        let objectness = Tensor::f_cat(&objectness, 0)?.f_reshape([1, -1])?;
        let deltas = Tensor::f_cat(&deltas, 0)?.f_reshape([-1, 4])?;
        let anchors = Tensor::f_cat(&anchors, 0)?;
        let proposals = boxes::decode(&deltas, &anchors, [1.0; 4])?.f_reshape([-1, 4])?;
        // The top `pre_nms_top_n` of each level.
        let mut top = Vec::new();
        let mut levels = Vec::new();
        let mut offset = 0;
        for (level, count) in per_level.iter().enumerate() {
            let slice = objectness.f_narrow(1, offset, *count)?;
            let k = self.settings.pre_nms_top_n.min(*count);
            let (_, index) = slice.f_topk(k, 1, true, true)?;
            top.push(index.f_add_scalar(offset)?.f_squeeze_dim(0)?);
            levels.push(Tensor::f_full(
                [k],
                level as i64,
                (Kind::Int64, objectness.device()),
            )?);
            offset += count;
        }
        let top = Tensor::f_cat(&top, 0)?;
        let levels = Tensor::f_cat(&levels, 0)?;
        let scores = objectness
            .f_squeeze_dim(0)?
            .f_index_select(0, &top)?
            .f_sigmoid()?;
        let proposals = proposals.f_index_select(0, &top)?;
        let proposals = boxes::clip(&proposals, image_size[0], image_size[1])?;
        let keep = boxes::remove_small(&proposals, 1e-3)?;
        let (proposals, scores, levels) = (
            proposals.f_index_select(0, &keep)?,
            scores.f_index_select(0, &keep)?,
            levels.f_index_select(0, &keep)?,
        );
        let keep = boxes::where_true(&scores.f_ge(self.settings.score_thresh)?)?;
        let (proposals, scores, levels) = (
            proposals.f_index_select(0, &keep)?,
            scores.f_index_select(0, &keep)?,
            levels.f_index_select(0, &keep)?,
        );
        let keep = boxes::batched_nms(&proposals, &scores, &levels, self.settings.nms_thresh)?;
        let kept = keep.size()[0].min(self.settings.post_nms_top_n);
        proposals.f_index_select(0, &keep.f_narrow(0, 0, kept)?)
    }
}
