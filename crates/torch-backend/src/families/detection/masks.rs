//! Mask R-CNN's mask branch at evaluation (`models/detection/mask_rcnn.py`,
//! `roi_heads.py`): 14x14 multi-scale RoIAlign of the detections' boxes,
//! `MaskRCNNHeads` (four 3x3 convolutions with ReLU), `MaskRCNNPredictor`
//! (a 2x2 stride-2 transposed convolution, ReLU, 1x1 logits), the sigmoid
//! of each detection's own class (`maskrcnn_inference`), and
//! `paste_masks_in_image`: each 28x28 mask padded by one pixel, its box
//! expanded by 30/28 and truncated to whole pixels, the mask resized to
//! that box with `interpolate(bilinear)` and placed in the image.
//!
//! The pasted masks are not materialised at the image's size: [`Pasted`]
//! keeps each resized mask and its box, and answers for any pixel what the
//! image-sized mask holds there (zero outside the box).

use tch::nn;
use tch::{Device, Kind, TchError, Tensor};

use crate::families::detection::backbone::conv;
use crate::families::detection::roi_align::multi_scale_roi_align;
use crate::net::layers::{Conv, Forward};

/// The mask head and predictor.
pub(crate) struct MaskBranch {
    head: Vec<Conv>,
    upsample_weight: Tensor,
    upsample_bias: Tensor,
    logits: Conv,
}

impl MaskBranch {
    pub(crate) fn new(path: &nn::Path<'_>, classes: i64) -> MaskBranch {
        let head = (0..4)
            .map(|index| conv(path / "mask_head" / index / 0, 256, 256, 3, 1, 1, true))
            .collect();
        let predictor = path / "mask_predictor";
        let upsample = &predictor / "conv5_mask";
        MaskBranch {
            head,
            upsample_weight: upsample.var("weight", &[256, 256, 2, 2], nn::Init::Const(0.0)),
            upsample_bias: upsample.var("bias", &[256], nn::Init::Const(0.0)),
            logits: conv(&predictor / "mask_fcn_logits", 256, classes, 1, 1, 0, true),
        }
    }

    /// The `[K, 28, 28]` mask probabilities of detections `boxes` `[K, 4]`
    /// (transformed image's coordinates) of classes `labels`.
    pub(crate) fn probabilities(
        &self,
        features: &[&Tensor],
        boxes: &Tensor,
        labels: &Tensor,
        image_size: [i64; 2],
    ) -> Result<Tensor, TchError> {
        let mut x = multi_scale_roi_align(features, boxes, image_size, 14)?;
        for layer in &self.head {
            x = layer.forward(&x)?.f_relu()?;
        }
        let x = x
            .f_conv_transpose2d(
                &self.upsample_weight,
                Some(&self.upsample_bias),
                [2, 2],
                [0, 0],
                [0, 0],
                1,
                [1, 1],
            )?
            .f_relu()?;
        let logits = self.logits.forward(&x)?;
        let count = logits.size()[0];
        let index = Tensor::f_arange(count, (Kind::Int64, logits.device()))?;
        logits
            .f_sigmoid()?
            .f_index(&[Some(index), Some(labels.shallow_clone())])
    }
}

/// One detection's pasted mask: the mask resized to its expanded box
/// (`height` x `width` values, row-major) and the box's integer corner.
#[derive(Debug, Clone)]
pub(crate) struct Pasted {
    values: Vec<f32>,
    height: i64,
    width: i64,
    x0: i64,
    y0: i64,
}

impl Pasted {
    /// What torchvision's image-sized mask (`im_h` x `im_w`) holds at
    /// `(row, column)`: the resized mask inside the box and the image, zero
    /// elsewhere.
    pub(crate) fn at(&self, row: i64, column: i64) -> f32 {
        let (y, x) = (row - self.y0, column - self.x0);
        if (0..self.height).contains(&y) && (0..self.width).contains(&x) {
            self.values[(y * self.width + x) as usize]
        } else {
            0.0
        }
    }
}

/// `paste_masks_in_image(masks, boxes, (im_h, im_w), padding=1)` for
/// probabilities `[K, 28, 28]` and `boxes` `[K, 4]` in the original image's
/// coordinates, without the image-sized canvas (see [`Pasted`]; pixels
/// outside the image are never asked for).
pub(crate) fn paste(probabilities: &Tensor, boxes: &Tensor) -> Result<Vec<Pasted>, TchError> {
    let count = boxes.size()[0];
    if count == 0 {
        return Ok(Vec::new());
    }
    let side = probabilities.size()[2];
    let padding = 1;
    let scale = (side + 2 * padding) as f64 / side as f64;
    let padded = probabilities.f_constant_pad_nd([padding; 4])?;
    // `expand_boxes`.
    let column = |index: i64| boxes.f_select(1, index);
    let w_half = column(2)?
        .f_sub(&column(0)?)?
        .f_mul_scalar(0.5)?
        .f_mul_scalar(scale)?;
    let h_half = column(3)?
        .f_sub(&column(1)?)?
        .f_mul_scalar(0.5)?
        .f_mul_scalar(scale)?;
    let x_c = column(2)?.f_add(&column(0)?)?.f_mul_scalar(0.5)?;
    let y_c = column(3)?.f_add(&column(1)?)?.f_mul_scalar(0.5)?;
    let expanded = Tensor::f_stack(
        &[
            x_c.f_sub(&w_half)?,
            y_c.f_sub(&h_half)?,
            x_c.f_add(&w_half)?,
            y_c.f_add(&h_half)?,
        ],
        1,
    )?
    .f_to_kind(Kind::Int64)?
    .f_to_device(Device::Cpu)?;
    let corners = Vec::<i64>::try_from(expanded.f_flatten(0, -1)?)?;
    (0..count)
        .map(|k| {
            let at = k as usize * 4;
            let [x0, y0, x1, y1] = [
                corners[at],
                corners[at + 1],
                corners[at + 2],
                corners[at + 3],
            ];
            let width = (x1 - x0 + 1).max(1);
            let height = (y1 - y0 + 1).max(1);
            let resized = padded
                .f_get(k)?
                .f_unsqueeze(0)?
                .f_unsqueeze(0)?
                .f_upsample_bilinear2d([height, width], false, None::<f64>, None::<f64>)?
                .f_to_device(Device::Cpu)?
                .f_to_kind(Kind::Float)?
                .f_contiguous()?
                .f_flatten(0, -1)?;
            Ok(Pasted {
                values: Vec::<f32>::try_from(resized)?,
                height,
                width,
                x0,
                y0,
            })
        })
        .collect()
}
