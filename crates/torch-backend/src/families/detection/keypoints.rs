//! Keypoint R-CNN's keypoint branch at evaluation
//! (`models/detection/keypoint_rcnn.py`, `roi_heads.py`): 14x14
//! multi-scale RoIAlign of the detections' boxes, `KeypointRCNNHeads`
//! (eight 3x3 convolutions of 512 channels with ReLU),
//! `KeypointRCNNPredictor` (a 4x4 stride-2 transposed convolution to one
//! heatmap per keypoint, then `interpolate(scale_factor=2, bilinear,
//! align_corners=False)`), and `heatmaps_to_keypoints`: each detection's
//! heatmaps resized with `interpolate(bicubic)` to its box's size rounded
//! up, the argmax of each, its cell's centre (`+ 0.5`) scaled back to the
//! box, and the resized heatmap's value there as the keypoint's score.

use tch::nn;
use tch::{Device, Kind, TchError, Tensor};

use crate::families::detection::backbone::conv;
use crate::families::detection::roi_align::multi_scale_roi_align;
use crate::net::layers::{Conv, Forward};

/// Keypoints per detection in torchvision's builder (COCO's person
/// keypoints) unless `entrypoint_args.num_keypoints` says otherwise.
pub(crate) const COCO_KEYPOINTS: i64 = 17;

/// The keypoint head and predictor.
pub(crate) struct KeypointBranch {
    head: Vec<Conv>,
    lowres_weight: Tensor,
    lowres_bias: Tensor,
}

/// One image's keypoints in the transformed image's coordinates.
#[derive(Debug)]
pub(crate) struct Keypoints {
    /// `[K, P, 3]` `x, y, visibility` (visibility always 1).
    pub(crate) points: Tensor,
    /// `[K, P]` heatmap values at the points (logits; FiftyOne applies the
    /// sigmoid).
    pub(crate) scores: Tensor,
}

impl KeypointBranch {
    /// The branch under `path` (`roi_heads`) for `keypoints` keypoints:
    /// `keypoint_head.{0,2,..,14}` and
    /// `keypoint_predictor.kps_score_lowres`, as torchvision names them.
    pub(crate) fn new(path: &nn::Path<'_>, keypoints: i64) -> KeypointBranch {
        let head = (0..8)
            .map(|index| {
                let c_in = if index == 0 { 256 } else { 512 };
                conv(
                    path / "keypoint_head" / (2 * index),
                    c_in,
                    512,
                    3,
                    1,
                    1,
                    true,
                )
            })
            .collect();
        let lowres = path / "keypoint_predictor" / "kps_score_lowres";
        KeypointBranch {
            head,
            lowres_weight: lowres.var("weight", &[512, keypoints, 4, 4], nn::Init::Const(0.0)),
            lowres_bias: lowres.var("bias", &[keypoints], nn::Init::Const(0.0)),
        }
    }

    /// The keypoints of detections `boxes` `[K, 4]` (transformed image's
    /// coordinates) from the pyramid `features` (levels `0`..`3`).
    pub(crate) fn keypoints(
        &self,
        features: &[&Tensor],
        boxes: &Tensor,
        image_size: [i64; 2],
    ) -> Result<Keypoints, TchError> {
        let mut x = multi_scale_roi_align(features, boxes, image_size, 14)?;
        for layer in &self.head {
            x = layer.forward(&x)?.f_relu()?;
        }
        let x = x.f_conv_transpose2d(
            &self.lowres_weight,
            Some(&self.lowres_bias),
            [2, 2],
            [1, 1],
            [0, 0],
            1,
            [1, 1],
        )?;
        let size = x.size();
        let heatmaps =
            x.f_upsample_bilinear2d([2 * size[2], 2 * size[3]], false, Some(2.0), Some(2.0))?;
        heatmaps_to_keypoints(&heatmaps, boxes)
    }
}

/// torchvision's `heatmaps_to_keypoints(maps, rois)` for `maps`
/// `[K, P, H, W]` and `rois` `[K, 4]`, operation for operation (the box's
/// size clamped to at least 1 and rounded up, bicubic resize, argmax, the
/// `+ 0.5` cell centre times the width and height corrections, plus the
/// box's corner).
fn heatmaps_to_keypoints(maps: &Tensor, rois: &Tensor) -> Result<Keypoints, TchError> {
    let count = rois.size()[0];
    let keypoints = maps.size()[1];
    let options = (Kind::Float, maps.device());
    if count == 0 {
        return Ok(Keypoints {
            points: Tensor::f_zeros([0, keypoints, 3], options)?,
            scores: Tensor::f_zeros([0, keypoints], options)?,
        });
    }
    let column = |index: i64| rois.f_select(1, index);
    let widths = column(2)?.f_sub(&column(0)?)?.f_clamp_min(1)?;
    let heights = column(3)?.f_sub(&column(1)?)?.f_clamp_min(1)?;
    let sizes = Tensor::f_stack(&[widths.f_ceil()?, heights.f_ceil()?], 1)?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Int64)?;
    let sizes = Vec::<i64>::try_from(sizes.f_flatten(0, -1)?)?;
    let index = Tensor::f_arange(keypoints, (Kind::Int64, maps.device()))?;
    let mut points = Vec::with_capacity(count as usize);
    let mut scores = Vec::with_capacity(count as usize);
    for i in 0..count {
        let (map_width, map_height) = (sizes[2 * i as usize], sizes[2 * i as usize + 1]);
        let width_correction = widths.f_get(i)?.f_div_scalar(map_width)?;
        let height_correction = heights.f_get(i)?.f_div_scalar(map_height)?;
        let roi_map = maps
            .f_get(i)?
            .f_unsqueeze(1)?
            .f_upsample_bicubic2d([map_height, map_width], false, None, None)?
            .f_select(1, 0)?;
        let position = roi_map.f_reshape([keypoints, -1])?.f_argmax(1, false)?;
        let x_int = position.f_remainder(map_width)?;
        let y_int = position
            .f_sub(&x_int)?
            .f_div_scalar_mode(map_width, "floor")?;
        let x = x_int
            .f_to_kind(Kind::Float)?
            .f_add_scalar(0.5)?
            .f_mul(&width_correction)?
            .f_add(&rois.f_get(i)?.f_get(0)?)?;
        let y = y_int
            .f_to_kind(Kind::Float)?
            .f_add_scalar(0.5)?
            .f_mul(&height_correction)?
            .f_add(&rois.f_get(i)?.f_get(1)?)?;
        points.push(Tensor::f_stack(
            &[x, y, Tensor::f_ones([keypoints], options)?],
            1,
        )?);
        scores.push(roi_map.f_index(&[Some(index.shallow_clone()), Some(y_int), Some(x_int)])?);
    }
    Ok(Keypoints {
        points: Tensor::f_stack(&points, 0)?,
        scores: Tensor::f_stack(&scores, 0)?,
    })
}

/// torchvision's `resize_keypoints` from the transformed image's size
/// `image_size` back to `original_size` (`[height, width]`): `x` times
/// `original width / width` and `y` times the heights' ratio, each ratio a
/// `float32` division, visibility unchanged.
pub(crate) fn keypoints_to_original(
    points: &Tensor,
    image_size: [i64; 2],
    original_size: [i64; 2],
) -> Result<Tensor, TchError> {
    let ratio = |axis: usize| {
        Tensor::f_from_slice(&[original_size[axis] as f32])?
            .f_div(&Tensor::f_from_slice(&[image_size[axis] as f32])?)?
            .f_to_device(points.device())?
            .f_reshape([])
    };
    let (ratio_height, ratio_width) = (ratio(0)?, ratio(1)?);
    Tensor::f_stack(
        &[
            points.f_select(2, 0)?.f_mul(&ratio_width)?,
            points.f_select(2, 1)?.f_mul(&ratio_height)?,
            points.f_select(2, 2)?,
        ],
        2,
    )
}
