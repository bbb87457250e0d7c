//! torchvision's `GeneralizedRCNNTransform` at evaluation
//! (`models/detection/transform.py`): normalise with ImageNet's mean and
//! standard deviation, resize with `interpolate(bilinear,
//! recompute_scale_factor=True)` (not Pillow) so the shorter side is
//! `min_size` (800) unless the longer would pass `max_size` (1333), pad
//! to a multiple of 32; and map the boxes back to the original size.

use tch::{Kind, TchError, Tensor};

/// The transform's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transform {
    pub(crate) min_size: i64,
    pub(crate) max_size: i64,
    pub(crate) mean: [f32; 3],
    pub(crate) std: [f32; 3],
    pub(crate) size_divisible: i64,
}

impl Default for Transform {
    fn default() -> Self {
        Transform {
            min_size: 800,
            max_size: 1333,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            size_divisible: 32,
        }
    }
}

/// An image ready for the backbone.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// `[1, 3, H, W]`, padded.
    pub(crate) batch: Tensor,
    /// `[height, width]` after resizing, before padding.
    pub(crate) image_size: [i64; 2],
    /// `[height, width]` of the input.
    pub(crate) original_size: [i64; 2],
}

impl Transform {
    /// The resized `[height, width]` of an input of `height` x `width`:
    /// `scale = min(min_size / shorter, max_size / longer)` in `f64`, each
    /// side `floor(side * scale)` (`recompute_scale_factor=True`).
    pub(crate) fn resized_size(&self, height: i64, width: i64) -> [i64; 2] {
        let (shorter, longer) = (height.min(width) as f64, height.max(width) as f64);
        let scale = (self.min_size as f64 / shorter).min(self.max_size as f64 / longer);
        [height, width].map(|side| (side as f64 * scale) as i64)
    }

    /// One image `[3, H, W]` in `[0, 1]` to the backbone's input.
    pub(crate) fn prepare(&self, image: &Tensor) -> Result<Prepared, TchError> {
        let size = image.size();
        let [_, height, width] = size[..] else {
            return Err(TchError::Shape(format!(
                "a detector takes [3, H, W] images, got {size:?}"
            )));
        };
        let on = |values: [f32; 3]| {
            Tensor::f_from_slice(&values)?
                .f_to_kind(image.kind())?
                .f_to_device(image.device())?
                .f_view([3, 1, 1])
        };
        let normalised = image.f_sub(&on(self.mean)?)?.f_div(&on(self.std)?)?;
        let [new_height, new_width] = self.resized_size(height, width);
        if new_height < 1 || new_width < 1 {
            return Err(TchError::Shape(format!(
                "a {width}x{height} image resizes to nothing ({new_width}x{new_height})"
            )));
        }
        let resized = normalised.f_unsqueeze(0)?.f_upsample_bilinear2d(
            [new_height, new_width],
            false,
            None::<f64>,
            None::<f64>,
        )?;
        let stride = self.size_divisible;
        let padded = [new_height, new_width].map(|side| (side + stride - 1) / stride * stride);
        let batch =
            resized.f_constant_pad_nd([0, padded[1] - new_width, 0, padded[0] - new_height])?;
        Ok(Prepared {
            batch,
            image_size: [new_height, new_width],
            original_size: [height, width],
        })
    }

    /// `resize_boxes`: boxes of the resized image to the original's, each
    /// coordinate times `original / resized` computed in `f32`.
    pub(crate) fn boxes_to_original(
        boxes: &Tensor,
        image_size: [i64; 2],
        original_size: [i64; 2],
    ) -> Result<Tensor, TchError> {
        let ratio = |axis: usize| {
            Tensor::f_from_slice(&[original_size[axis] as f32])?
                .f_div(&Tensor::f_from_slice(&[image_size[axis] as f32])?)?
                .f_to_kind(Kind::Float)?
                .f_to_device(boxes.device())?
                .f_reshape([])
        };
        let (ratio_height, ratio_width) = (ratio(0)?, ratio(1)?);
        let column = |index: i64| boxes.f_select(1, index);
        Tensor::f_stack(
            &[
                column(0)?.f_mul(&ratio_width)?,
                column(1)?.f_mul(&ratio_height)?,
                column(2)?.f_mul(&ratio_width)?,
                column(3)?.f_mul(&ratio_height)?,
            ],
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Transform;

    /// torchvision's sizes: the shorter side to 800 unless the longer would
    /// pass 1333; each side floored.
    #[test]
    fn resized_sizes_follow_torchvisions_rule() {
        let transform = Transform::default();
        for (input, expected) in [
            ([480, 640], [800, 1066]),
            ([100, 1000], [133, 1333]),
            ([800, 800], [800, 800]),
            ([1000, 700], [1142, 800]),
        ] {
            assert_eq!(
                transform.resized_size(input[0], input[1]),
                expected,
                "{input:?}"
            );
        }
    }
}
