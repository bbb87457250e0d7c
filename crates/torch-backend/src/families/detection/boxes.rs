//! Box operations of torchvision's detection models: the box coder
//! (`models/detection/_utils.py` `BoxCoder.decode_single`), clipping and
//! small-box removal (`ops/boxes.py`), and non-maximum suppression, which
//! libtorch lacks: [`nms`] follows torchvision's CPU kernel
//! (`csrc/ops/cpu/nms_kernel.cpp`) and [`batched_nms`] its two strategies.
//!
//! Every step is the tensor operation torchvision runs, in the same order
//! and precision, so the same libtorch gives the same bits.

use tch::{Device, Kind, TchError, Tensor};

/// torchvision's `bbox_xform_clip`: `log(1000 / 16)`.
pub(crate) const BBOX_XFORM_CLIP: f64 = 4.135_166_556_742_356;

/// torchvision's `batched_nms` switches from the coordinate trick to one
/// NMS per class above this many box coordinates on the CPU.
const VANILLA_ABOVE: i64 = 4000;

/// `BoxCoder(weights).decode_single(rel_codes, boxes)`: `rel_codes` is
/// `[N, 4 * k]` deltas for `boxes` `[N, 4]`; gives `[N, 4 * k]` boxes.
pub(crate) fn decode(
    rel_codes: &Tensor,
    boxes: &Tensor,
    weights: [f64; 4],
) -> Result<Tensor, TchError> {
    let boxes = boxes.f_to_kind(rel_codes.kind())?;
    let column = |index: i64| boxes.f_select(1, index);
    let widths = column(2)?.f_sub(&column(0)?)?;
    let heights = column(3)?.f_sub(&column(1)?)?;
    let ctr_x = column(0)?.f_add(&widths.f_mul_scalar(0.5)?)?;
    let ctr_y = column(1)?.f_add(&heights.f_mul_scalar(0.5)?)?;
    let [wx, wy, ww, wh] = weights;
    let deltas = |start: i64| rel_codes.f_slice(1, start, None, 4);
    let dx = deltas(0)?.f_div_scalar(wx)?;
    let dy = deltas(1)?.f_div_scalar(wy)?;
    let dw = deltas(2)?.f_div_scalar(ww)?.f_clamp_max(BBOX_XFORM_CLIP)?;
    let dh = deltas(3)?.f_div_scalar(wh)?.f_clamp_max(BBOX_XFORM_CLIP)?;
    let widths = widths.f_unsqueeze(1)?;
    let heights = heights.f_unsqueeze(1)?;
    let pred_ctr_x = dx.f_mul(&widths)?.f_add(&ctr_x.f_unsqueeze(1)?)?;
    let pred_ctr_y = dy.f_mul(&heights)?.f_add(&ctr_y.f_unsqueeze(1)?)?;
    let pred_w = dw.f_exp()?.f_mul(&widths)?;
    let pred_h = dh.f_exp()?.f_mul(&heights)?;
    // torchvision multiplies by a 0-dim tensor of 0.5 in the boxes' kind.
    let half = Tensor::f_from_slice(&[0.5f32])?
        .f_to_kind(pred_w.kind())?
        .f_to_device(pred_w.device())?
        .f_reshape([])?;
    let c_to_c_h = half.f_mul(&pred_h)?;
    let c_to_c_w = half.f_mul(&pred_w)?;
    Tensor::f_stack(
        &[
            pred_ctr_x.f_sub(&c_to_c_w)?,
            pred_ctr_y.f_sub(&c_to_c_h)?,
            pred_ctr_x.f_add(&c_to_c_w)?,
            pred_ctr_y.f_add(&c_to_c_h)?,
        ],
        2,
    )?
    .f_flatten(1, -1)
}

/// `clip_boxes_to_image(boxes, (height, width))` for boxes `[..., 4]`.
pub(crate) fn clip(boxes: &Tensor, height: i64, width: i64) -> Result<Tensor, TchError> {
    let dim = boxes.dim() as i64;
    let x = boxes.f_slice(dim - 1, 0, None, 2)?.f_clamp(0, width)?;
    let y = boxes.f_slice(dim - 1, 1, None, 2)?.f_clamp(0, height)?;
    Tensor::f_stack(&[x, y], dim)?.f_reshape(boxes.size())
}

/// `remove_small_boxes(boxes, min_size)`: the indices of the boxes whose
/// sides are both at least `min_size`.
pub(crate) fn remove_small(boxes: &Tensor, min_size: f64) -> Result<Tensor, TchError> {
    let ws = boxes.f_select(1, 2)?.f_sub(&boxes.f_select(1, 0)?)?;
    let hs = boxes.f_select(1, 3)?.f_sub(&boxes.f_select(1, 1)?)?;
    let keep = ws.f_ge(min_size)?.f_logical_and(&hs.f_ge(min_size)?)?;
    where_true(&keep)
}

/// `torch.where(mask)[0]`: the indices where a 1-D mask is true.
pub(crate) fn where_true(mask: &Tensor) -> Result<Tensor, TchError> {
    mask.f_nonzero()?.f_select(1, 0)
}

/// `box_area`: `(x2 - x1) * (y2 - y1)`.
pub(crate) fn area(boxes: &Tensor) -> Result<Tensor, TchError> {
    let w = boxes.f_select(1, 2)?.f_sub(&boxes.f_select(1, 0)?)?;
    let h = boxes.f_select(1, 3)?.f_sub(&boxes.f_select(1, 1)?)?;
    w.f_mul(&h)
}

/// torchvision's `nms(boxes, scores, iou_threshold)` as its CPU kernel
/// computes it: boxes in decreasing score order (a stable sort, so ties
/// keep their input order), each kept box suppressing the later ones whose
/// IoU with it, `inter / (area_i + area_j - inter)` in the boxes' `f32`,
/// exceeds the threshold. Gives the kept indices (`int64`), by decreasing
/// score.
pub(crate) fn nms(boxes: &Tensor, scores: &Tensor, iou_threshold: f64) -> Result<Tensor, TchError> {
    let count = boxes.size().first().copied().unwrap_or(0);
    if count == 0 {
        return Tensor::f_empty([0], (Kind::Int64, boxes.device()));
    }
    let boxes = boxes.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?;
    let areas = area(&boxes)?;
    let (_, order) = scores
        .f_to_device(Device::Cpu)?
        .f_sort_stable(true, 0, true)?;
    let coordinates = Vec::<f32>::try_from(boxes.f_contiguous()?.f_flatten(0, -1)?)?;
    let areas = Vec::<f32>::try_from(areas)?;
    let order = Vec::<i64>::try_from(order)?;
    let keep = nms_sorted(&coordinates, &areas, &order, iou_threshold);
    Tensor::f_from_slice(&keep)?.f_to_device(scores.device())
}

/// The kernel's loop over boxes in `order`; `threshold` is compared as the
/// kernel compares it (`ovr > iou_threshold`, a `float` against a `double`).
fn nms_sorted(coordinates: &[f32], areas: &[f32], order: &[i64], iou_threshold: f64) -> Vec<i64> {
    let count = order.len();
    let mut suppressed = vec![false; count];
    let mut keep = Vec::new();
    let corner = |index: usize| {
        let at = index * 4;
        (
            coordinates[at],
            coordinates[at + 1],
            coordinates[at + 2],
            coordinates[at + 3],
        )
    };
    for position in 0..count {
        let i = order[position] as usize;
        if suppressed[i] {
            continue;
        }
        keep.push(i as i64);
        let (ix1, iy1, ix2, iy2) = corner(i);
        let iarea = areas[i];
        for &later in &order[position + 1..] {
            let j = later as usize;
            if suppressed[j] {
                continue;
            }
            let (x1, y1, x2, y2) = corner(j);
            let xx1 = ix1.max(x1);
            let yy1 = iy1.max(y1);
            let xx2 = ix2.min(x2);
            let yy2 = iy2.min(y2);
            let w = (xx2 - xx1).max(0.0);
            let h = (yy2 - yy1).max(0.0);
            let inter = w * h;
            let ovr = inter / (iarea + areas[j] - inter);
            if f64::from(ovr) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// torchvision's `batched_nms`: NMS within each category of `idxs`, never
/// across; above 4,000 coordinates one NMS per category (then a sort by
/// decreasing score), else one NMS over boxes shifted apart by category
/// (`boxes + idxs * (max + 1)`), as torchvision chooses on the CPU.
pub(crate) fn batched_nms(
    boxes: &Tensor,
    scores: &Tensor,
    idxs: &Tensor,
    iou_threshold: f64,
) -> Result<Tensor, TchError> {
    let numel = boxes.numel() as i64;
    if numel == 0 {
        return Tensor::f_empty([0], (Kind::Int64, boxes.device()));
    }
    if numel > VANILLA_ABOVE {
        let mut keep_mask = Tensor::f_zeros([scores.size()[0]], (Kind::Bool, scores.device()))?;
        let (classes, _, _) = idxs.f_unique_dim(0, true, false, false)?;
        for class_id in Vec::<i64>::try_from(classes.f_to_kind(Kind::Int64)?)? {
            let current = where_true(&idxs.f_eq(class_id)?)?;
            let kept = nms(
                &boxes.f_index_select(0, &current)?,
                &scores.f_index_select(0, &current)?,
                iou_threshold,
            )?;
            let chosen = current.f_index_select(0, &kept)?;
            keep_mask = keep_mask.f_index_fill(0, &chosen, 1)?;
        }
        let keep = where_true(&keep_mask)?;
        let (_, order) = scores.f_index_select(0, &keep)?.f_sort(0, true)?;
        return keep.f_index_select(0, &order);
    }
    let max_coordinate = boxes.f_max()?;
    let one = Tensor::f_from_slice(&[1i64])?
        .f_reshape([])?
        .f_to_kind(boxes.kind())?;
    let offsets = idxs
        .f_to_kind(boxes.kind())?
        .f_mul(&max_coordinate.f_add(&one)?)?;
    let shifted = boxes.f_add(&offsets.f_unsqueeze(1)?)?;
    nms(&shifted, scores, iou_threshold)
}

#[cfg(test)]
mod tests {
    use tch::Tensor;

    use super::*;

    fn boxes(values: &[[f32; 4]]) -> Tensor {
        Tensor::from_slice(values.as_flattened()).view([values.len() as i64, 4])
    }

    /// One NMS case: boxes, scores, threshold, the indices kept.
    type Case = (&'static [[f32; 4]], &'static [f32], f64, &'static [i64]);

    /// Table: boxes, scores, threshold, the indices torchvision keeps.
    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_in_score_order() {
        let cases: [Case; 4] = [
            // Two boxes overlapping with IoU 0.6: the lower is dropped at 0.5,
            // kept at 0.7.
            (
                &[[0.0, 0.0, 10.0, 10.0], [0.0, 2.5, 10.0, 12.5]],
                &[0.4, 0.9],
                0.5,
                &[1],
            ),
            (
                &[[0.0, 0.0, 10.0, 10.0], [0.0, 2.5, 10.0, 12.5]],
                &[0.4, 0.9],
                0.7,
                &[1, 0],
            ),
            // Equal scores: the earlier box wins (a stable sort).
            (
                &[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]],
                &[0.5, 0.5],
                0.5,
                &[0],
            ),
            // IoU exactly at the threshold is kept (`>` suppresses).
            (
                &[
                    [0.0, 0.0, 3.0, 1.0],
                    [1.0, 0.0, 4.0, 1.0],
                    [10.0, 10.0, 11.0, 11.0],
                ],
                &[0.9, 0.8, 0.1],
                0.5,
                &[0, 1, 2],
            ),
        ];
        for (input, scores, threshold, expected) in cases {
            let kept = nms(&boxes(input), &Tensor::from_slice(scores), threshold).unwrap();
            assert_eq!(Vec::<i64>::try_from(kept).unwrap(), expected, "{input:?}");
        }
    }

    fn numbers<T: Copy>(
        value: &serde_json::Value,
        read: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Vec<T> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| read(v).unwrap())
            .collect()
    }

    /// `torchvision.ops.nms` and `torchvision.ops.batched_nms` (oracle:
    /// `cargo xtask detection-oracle`) on seeded boxes with tied scores, one
    /// case above 4,000 coordinates (one NMS per class): the same indices in
    /// the same order.
    #[test]
    fn nms_and_batched_nms_keep_what_torchvision_keeps() {
        let oracle = crate::families::detection::oracle();
        let cases = oracle["nms"].as_array().unwrap();
        assert!(
            cases
                .iter()
                .any(|case| case["boxes"].as_array().unwrap().len() > 4000)
        );
        for case in cases {
            let coordinates = numbers(&case["boxes"], |v| v.as_f64().map(|v| v as f32));
            let input = Tensor::from_slice(&coordinates).view([-1, 4]);
            let scores =
                Tensor::from_slice(&numbers(&case["scores"], |v| v.as_f64().map(|v| v as f32)));
            let idxs = Tensor::from_slice(&numbers(&case["idxs"], serde_json::Value::as_i64));
            let threshold = case["iou_threshold"].as_f64().unwrap();
            let kept = Vec::<i64>::try_from(nms(&input, &scores, threshold).unwrap()).unwrap();
            assert_eq!(
                kept,
                numbers(&case["nms"], serde_json::Value::as_i64),
                "nms, {} boxes",
                coordinates.len() / 4
            );
            let kept =
                Vec::<i64>::try_from(batched_nms(&input, &scores, &idxs, threshold).unwrap())
                    .unwrap();
            assert_eq!(
                kept,
                numbers(&case["batched_nms"], serde_json::Value::as_i64),
                "batched_nms, {} boxes",
                coordinates.len() / 4
            );
        }
    }

    #[test]
    fn batched_nms_never_suppresses_across_categories() {
        let input = boxes(&[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]);
        let scores = Tensor::from_slice(&[0.5f32, 0.9]);
        let same = batched_nms(&input, &scores, &Tensor::from_slice(&[3i64, 3]), 0.5).unwrap();
        assert_eq!(Vec::<i64>::try_from(same).unwrap(), [1]);
        let apart = batched_nms(&input, &scores, &Tensor::from_slice(&[3i64, 4]), 0.5).unwrap();
        assert_eq!(Vec::<i64>::try_from(apart).unwrap(), [1, 0]);
    }
}
