//! Instance masks as Ultralytics 8.4's segmentation predictor makes them
//! with `retina_masks=True` (FiftyOne's setting): `process_mask_native`
//! (the mask coefficients times the prototypes, upsampled by the smallest
//! factor that crops the letterbox padding on whole pixels, `scale_masks`
//! to the image's size, thresholded at 0, cropped to the box by
//! `crop_mask`), and FiftyOne's `to_instances` crop of each mask to its
//! relative box.
//!
//! Each mask is made one at a time (bilinear resampling treats channels
//! independently, so the values are those of Ultralytics' batched
//! chunks), and only the window of its box is kept: `crop_mask` zeroes
//! every pixel outside it.

use tch::{Kind, TchError, Tensor};

/// A binary mask of the image's size, zero outside its window (the box's
/// pixels that `crop_mask` keeps).
#[derive(Debug, Clone, PartialEq)]
pub struct PixelMask {
    /// The window's first column.
    pub left: usize,
    /// The window's first row.
    pub top: usize,
    /// The window's width.
    pub width: usize,
    /// The window's height.
    pub height: usize,
    /// `height * width` bytes, 0 or 1, row by row.
    pub bytes: Vec<u8>,
}

impl PixelMask {
    /// Whether any pixel is set (the predictor drops boxes whose mask has
    /// none).
    pub fn any(&self) -> bool {
        self.bytes.iter().any(|byte| *byte != 0)
    }

    /// The mask's pixel at column `x`, row `y` of the image.
    pub fn at(&self, x: usize, y: usize) -> u8 {
        if x < self.left || y < self.top {
            return 0;
        }
        let (column, row) = (x - self.left, y - self.top);
        if column >= self.width || row >= self.height {
            return 0;
        }
        self.bytes[row * self.width + column]
    }

    /// FiftyOne's `_to_instances` crop of an image of `width` x `height`
    /// to the relative `[x, y, w, h]` box: `int()` of `x * width`, `(x +
    /// w) * width`, `y * height`, `(y + h) * height` as NumPy slice bounds.
    /// `(rows, columns, bytes)`.
    pub fn fiftyone_crop(
        &self,
        bounding_box: [f64; 4],
        width: usize,
        height: usize,
    ) -> (usize, usize, Vec<u8>) {
        let [x, y, w, h] = bounding_box;
        let (image_width, image_height) = (width as f64, height as f64);
        // Python's int() truncates toward zero, as `as i64` does.
        let (x0, x1) = ((x * image_width) as i64, ((x + w) * image_width) as i64);
        let (y0, y1) = ((y * image_height) as i64, ((y + h) * image_height) as i64);
        let (columns, rows) = (slice(x0, x1, width), slice(y0, y1, height));
        let mut bytes = Vec::with_capacity(rows.len() * columns.len());
        for row in rows.clone() {
            for column in columns.clone() {
                bytes.push(self.at(column, row));
            }
        }
        (rows.len(), columns.len(), bytes)
    }
}

/// The indices NumPy's `a[start:stop]` takes from an axis of `length`.
fn slice(start: i64, stop: i64, length: usize) -> std::ops::Range<usize> {
    let length = length as i64;
    let bound = |index: i64| -> usize {
        let index = if index < 0 { index + length } else { index };
        index.clamp(0, length) as usize
    };
    let (start, stop) = (bound(start), bound(stop));
    start..stop.max(start)
}

/// Python's `round` (ties to even).
fn round(value: f64) -> f64 {
    value.round_ties_even()
}

/// Python's `math.gcd` of non-negative numbers.
fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `ops.process_mask_native(protos, coefficients, boxes, (height,
/// width))` then `crop_mask`: one [`PixelMask`] per box. `protos` is
/// `[nm, mh, mw]`, `coefficients` `[K, nm]`, `boxes` `[K, 4]` `x1, y1, x2,
/// y2` in the image's pixels.
pub(crate) fn process_mask_native(
    protos: &Tensor,
    coefficients: &Tensor,
    boxes: &Tensor,
    width: usize,
    height: usize,
) -> Result<Vec<PixelMask>, TchError> {
    let count = coefficients.size()[0];
    if count == 0 {
        return Ok(Vec::new());
    }
    let size = protos.size();
    let (channels, proto_height, proto_width) = (size[0], size[1], size[2]);
    // (N, mh * mw) prototype-resolution mask logits.
    let logits = coefficients.f_matmul(&protos.f_to_kind(Kind::Float)?.f_view([channels, -1])?)?;
    let (h, w) = (height as f64, width as f64);
    let (mh, mw) = (proto_height as f64, proto_width as f64);
    let gain = (4.0 * mh / h).min(4.0 * mw / w);
    let pad = (4 * proto_height - (round(h * gain).max(1.0) as i64))
        | (4 * proto_width - (round(w * gain).max(1.0) as i64));
    // The smallest upsampling (1, 2 or 4) that crops the padding on whole
    // pixels.
    let factor = 4 / gcd(4, pad | (pad / 2));
    let corners = Vec::<f32>::try_from(boxes.f_contiguous()?.f_flatten(0, -1)?)?;
    let mut masks = Vec::with_capacity(count as usize);
    for index in 0..count {
        let mut plane = logits
            .f_get(index)?
            .f_view([1, 1, proto_height, proto_width])?;
        if factor > 1 {
            let scale = factor as f64;
            plane = plane.f_upsample_bilinear2d(
                [proto_height * factor, proto_width * factor],
                false,
                Some(scale),
                Some(scale),
            )?;
        }
        let plane = scale_masks(&plane, width, height)?;
        // crop_mask: columns x1 <= c < x2 and rows y1 <= r < y2 (float
        // comparisons against whole numbers, so ceil of each bound).
        let index = index as usize;
        let window = |low: f32, high: f32, length: usize| -> (usize, usize) {
            let start = (f64::from(low).ceil().max(0.0) as usize).min(length);
            let end = (f64::from(high).ceil().max(0.0) as usize).min(length);
            (start, end.max(start))
        };
        let (left, right) = window(corners[index * 4], corners[index * 4 + 2], width);
        let (top, bottom) = window(corners[index * 4 + 1], corners[index * 4 + 3], height);
        let (window_width, window_height) = (right - left, bottom - top);
        let bytes = if window_width == 0 || window_height == 0 {
            Vec::new()
        } else {
            let cropped = plane
                .f_select(0, 0)?
                .f_select(0, 0)?
                .f_narrow(0, top as i64, window_height as i64)?
                .f_narrow(1, left as i64, window_width as i64)?
                .f_gt(0.0)?
                .f_to_kind(Kind::Uint8)?
                .f_contiguous()?;
            Vec::<u8>::try_from(cropped.f_flatten(0, -1)?)?
        };
        masks.push(PixelMask {
            left,
            top,
            width: window_width,
            height: window_height,
            bytes,
        });
    }
    Ok(masks)
}

/// `ops.scale_masks(masks, (height, width))` with the letterbox padding
/// computed from the sizes: the content without its padding, resized
/// bilinearly to the image.
fn scale_masks(masks: &Tensor, width: usize, height: usize) -> Result<Tensor, TchError> {
    let size = masks.size();
    let (in_height, in_width) = (size[2], size[3]);
    if in_height == height as i64 && in_width == width as i64 {
        return Ok(masks.shallow_clone());
    }
    let (h, w) = (height as f64, width as f64);
    let gain = (in_height as f64 / h).min(in_width as f64 / w);
    let content_height = round(h * gain).max(1.0);
    let content_width = round(w * gain).max(1.0);
    let pad_width = (in_width as f64 - content_width) / 2.0;
    let pad_height = (in_height as f64 - content_height) / 2.0;
    let top = round(pad_height - 0.1) as i64;
    let left = round(pad_width - 0.1) as i64;
    // Python's slicing clamps `top:bottom` to the axis.
    let span = |start: i64, length: f64, axis: i64| -> (i64, i64) {
        let start = start.clamp(0, axis);
        let end = (start + length as i64).clamp(start, axis);
        (start, end - start)
    };
    let (top, rows) = span(top, content_height, in_height);
    let (left, columns) = span(left, content_width, in_width);
    masks
        .f_narrow(2, top, rows)?
        .f_narrow(3, left, columns)?
        .f_upsample_bilinear2d([height as i64, width as i64], false, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NumPy's slice bounds: clamped, negative from the end, never
    /// reversed.
    #[test]
    fn slices_follow_numpy() {
        let cases = [
            ((0, 5, 10), 0..5),
            ((3, 20, 10), 3..10),
            ((7, 2, 10), 7..7),
            ((-2, 10, 10), 8..10),
            ((0, 0, 10), 0..0),
        ];
        for ((start, stop, length), expected) in cases {
            assert_eq!(slice(start, stop, length), expected, "{start}:{stop}");
        }
    }

    /// FiftyOne's crop of a mask reads the image-sized mask, zero outside
    /// its window.
    #[test]
    fn the_fiftyone_crop_reads_the_window_and_zeros_around_it() {
        let mask = PixelMask {
            left: 2,
            top: 1,
            width: 2,
            height: 2,
            bytes: vec![1, 0, 1, 1],
        };
        assert!(mask.any());
        assert_eq!(mask.at(2, 1), 1);
        assert_eq!(mask.at(3, 1), 0);
        assert_eq!(mask.at(0, 0), 0);
        // Columns 1..4 and rows 1..3 of a 5 x 4 image.
        let (rows, columns, bytes) = mask.fiftyone_crop([0.2, 0.25, 0.6, 0.5], 5, 4);
        assert_eq!((rows, columns), (2, 3));
        assert_eq!(bytes, vec![0, 1, 0, 0, 1, 1]);
        assert_eq!(gcd(4, 6), 2);
        assert_eq!(gcd(4, 0), 4);
    }
}
