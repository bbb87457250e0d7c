//! Oriented boxes as Ultralytics 8.4 handles them for its `OBB` models:
//! the rotated NMS (`TorchNMS.fast_nms` with `batch_probiou`, the
//! probabilistic IoU of the boxes' Gaussians) and the corners
//! (`xywhr2xyxyxyxy`) FiftyOne's `obb_to_polylines` reads.

use tch::{Kind, TchError, Tensor};

/// `batch_probiou`'s `eps`.
const EPS: f64 = 1e-7;

/// `_get_covariance_matrix`: `a, b, c` of each `[N, 5]` `xywhr` box's
/// Gaussian, each `[N, 1]`.
fn covariance(boxes: &Tensor) -> Result<[Tensor; 3], TchError> {
    let sides = boxes
        .f_narrow(1, 2, 2)?
        .f_pow_tensor_scalar(2)?
        .f_div_scalar(12)?;
    let a = sides.f_narrow(1, 0, 1)?;
    let b = sides.f_narrow(1, 1, 1)?;
    let angle = boxes.f_narrow(1, 4, 1)?;
    let (cos, sin) = (angle.f_cos()?, angle.f_sin()?);
    let (cos2, sin2) = (cos.f_pow_tensor_scalar(2)?, sin.f_pow_tensor_scalar(2)?);
    Ok([
        a.f_mul(&cos2)?.f_add(&b.f_mul(&sin2)?)?,
        a.f_mul(&sin2)?.f_add(&b.f_mul(&cos2)?)?,
        a.f_sub(&b)?.f_mul(&cos)?.f_mul(&sin)?,
    ])
}

/// `batch_probiou(boxes, boxes)`: `[N, N]` probabilistic IoUs of `[N, 5]`
/// `xywhr` boxes.
fn batch_probiou(boxes: &Tensor) -> Result<Tensor, TchError> {
    let x1 = boxes.f_narrow(1, 0, 1)?;
    let y1 = boxes.f_narrow(1, 1, 1)?;
    let x2 = x1.f_squeeze_dim(-1)?.f_unsqueeze(0)?;
    let y2 = y1.f_squeeze_dim(-1)?.f_unsqueeze(0)?;
    let [a1, b1, c1] = covariance(boxes)?;
    let [a2, b2, c2] =
        covariance(boxes)?.map(|part| part.f_squeeze_dim(-1).and_then(|part| part.f_unsqueeze(0)));
    let (a2, b2, c2) = (a2?, b2?, c2?);
    let (sum_a, sum_b, sum_c) = (a1.f_add(&a2)?, b1.f_add(&b2)?, c1.f_add(&c2)?);
    let determinant = sum_a.f_mul(&sum_b)?.f_sub(&sum_c.f_pow_tensor_scalar(2)?)?;
    let dy = y1.f_sub(&y2)?;
    let dx = x1.f_sub(&x2)?;
    let t1 = sum_a
        .f_mul(&dy.f_pow_tensor_scalar(2)?)?
        .f_add(&sum_b.f_mul(&dx.f_pow_tensor_scalar(2)?)?)?
        .f_div(&determinant.f_add_scalar(EPS)?)?
        .f_mul_scalar(0.25)?;
    let t2 = sum_c
        .f_mul(&x2.f_sub(&x1)?)?
        .f_mul(&dy)?
        .f_div(&determinant.f_add_scalar(EPS)?)?
        .f_mul_scalar(0.5)?;
    let own1 = a1
        .f_mul(&b1)?
        .f_sub(&c1.f_pow_tensor_scalar(2)?)?
        .f_clamp_min(0.0)?;
    let own2 = a2
        .f_mul(&b2)?
        .f_sub(&c2.f_pow_tensor_scalar(2)?)?
        .f_clamp_min(0.0)?;
    let t3 = determinant
        .f_div(
            &own1
                .f_mul(&own2)?
                .f_sqrt()?
                .f_mul_scalar(4)?
                .f_add_scalar(EPS)?,
        )?
        .f_add_scalar(EPS)?
        .f_log()?
        .f_mul_scalar(0.5)?;
    let distance = t1.f_add(&t2)?.f_add(&t3)?.f_clamp(EPS, 100.0)?;
    let hellinger = distance
        .f_neg()?
        .f_exp()?
        .f_neg()?
        .f_add_scalar(1.0)?
        .f_add_scalar(EPS)?
        .f_sqrt()?;
    hellinger.f_neg()?.f_add_scalar(1.0)
}

/// `TorchNMS.fast_nms(boxes, scores, iou, iou_func=batch_probiou)`: the
/// indices of the `[N, 5]` `xywhr` boxes kept, by descending score.
pub(crate) fn fast_nms(boxes: &Tensor, scores: &Tensor, iou: f64) -> Result<Tensor, TchError> {
    if boxes.numel() == 0 {
        return Tensor::f_zeros([0], (Kind::Int64, boxes.device()));
    }
    let order = scores.f_argsort(0, true)?;
    let sorted = boxes.f_index_select(0, &order)?;
    let ious = batch_probiou(&sorted)?.f_triu(1)?;
    let pick = ious
        .f_gt(iou)?
        .f_sum_dim_intlist([0].as_slice(), false, Kind::Int64)?
        .f_le(0)?
        .f_nonzero()?
        .f_squeeze_dim(-1)?;
    order.f_index_select(0, &pick)
}

/// `xywhr2xyxyxyxy` of one box: its four corners.
pub(crate) fn corners(x: f32, y: f32, w: f32, h: f32, angle: f32) -> [[f32; 2]; 4] {
    let (cos, sin) = (angle.cos(), angle.sin());
    let vec1 = [w / 2.0 * cos, w / 2.0 * sin];
    let vec2 = [-h / 2.0 * sin, h / 2.0 * cos];
    [
        [x + vec1[0] + vec2[0], y + vec1[1] + vec2[1]],
        [x + vec1[0] - vec2[0], y + vec1[1] - vec2[1]],
        [x - vec1[0] - vec2[0], y - vec1[1] - vec2[1]],
        [x - vec1[0] + vec2[0], y - vec1[1] + vec2[1]],
    ]
}
