//! Ultralytics' `LetterBox` as FiftyOne's `FiftyOneYOLOModel` runs it
//! (`auto=False`: always the full square; `scaleup=True`, centred,
//! padding 114): an RGB image resized with OpenCV's `INTER_LINEAR` so that
//! its longer side fits, then padded.
//!
//! The resize is OpenCV's fixed-point `INTER_LINEAR` for 8-bit images
//! (`resizeGeneric_`): 11-bit coefficients, an exact integer horizontal
//! pass (the fraction clamped at the borders), and the vectorised vertical
//! pass's rounding (`VResizeLinearVec_32s8u`: `(hi16((S0 >> 4) * b0) +
//! hi16((S1 >> 4) * b1) + 2) >> 2`), whose fraction is *not* clamped at
//! the top and bottom (the rows are). It is bit-exact with OpenCV 5.1's
//! `cv2.resize` on the parity pictures and on random up- and down-scales
//! (checked against `cv2` while writing it).

use zoo_model_core::Image;

/// OpenCV's `INTER_RESIZE_COEF_BITS`.
const COEF_BITS: u32 = 11;

/// Ultralytics' padding value.
pub(crate) const PADDING: u8 = 114;

/// The letterboxed picture and where the image lies in it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Letterboxed {
    /// `size * size * 3` RGB bytes.
    pub(crate) pixels: Vec<u8>,
    /// The square's side.
    pub(crate) size: usize,
}

/// Python's `round` (ties to even).
fn round(value: f64) -> i64 {
    value.round_ties_even() as i64
}

/// The resized `(width, height)` of an image `(width, height)` in a
/// `size` square: `LetterBox.get_params`' `new_unpad`.
pub(crate) fn resized_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    let ratio = (size as f64 / height as f64).min(size as f64 / width as f64);
    (
        round(width as f64 * ratio).max(1) as usize,
        round(height as f64 * ratio).max(1) as usize,
    )
}

/// One destination index's taps: the two source indices (clamped to the
/// image) and their fixed-point weights (OpenCV's `xofs`/`ialpha`).
type Tap = (usize, usize, [i32; 2]);

/// The taps of each destination index; `clamp_fraction` zeroes the
/// fraction where the source index leaves the image (OpenCV's horizontal
/// pass does, its vertical one does not).
fn taps(destination: usize, source: usize, clamp_fraction: bool) -> Vec<Tap> {
    let scale = 1.0 / (destination as f64 / source as f64);
    let last = source as i64 - 1;
    (0..destination)
        .map(|index| {
            let position = ((index as f64 + 0.5) * scale - 0.5) as f32;
            let floor = position.floor();
            let mut fraction = position - floor;
            let mut first = floor as i64;
            if clamp_fraction {
                if first < 0 {
                    fraction = 0.0;
                    first = 0;
                }
                if first >= last {
                    fraction = 0.0;
                    first = last;
                }
            }
            let weight = |value: f32| (value * (1 << COEF_BITS) as f32).round_ties_even() as i32;
            (
                first.clamp(0, last) as usize,
                (first + 1).clamp(0, last) as usize,
                [weight(1.0 - fraction), weight(fraction)],
            )
        })
        .collect()
}

/// OpenCV's `cv2.resize(image, (width, height), INTER_LINEAR)` of an RGB
/// image.
pub(crate) fn resize_linear(image: &Image, width: usize, height: usize) -> Vec<u8> {
    let (source_width, source_height) = (image.width as usize, image.height as usize);
    let columns = taps(width, source_width, true);
    let rows = taps(height, source_height, false);
    // The horizontal pass of a source row, as OpenCV's int buffer.
    let horizontal = |row: usize| -> Vec<i32> {
        let line = &image.pixels[row * source_width * 3..(row + 1) * source_width * 3];
        let mut out = Vec::with_capacity(width * 3);
        for (first, second, [a0, a1]) in &columns {
            for channel in 0..3 {
                out.push(
                    i32::from(line[first * 3 + channel]) * a0
                        + i32::from(line[second * 3 + channel]) * a1,
                );
            }
        }
        out
    };
    let mut cache: Vec<Option<Vec<i32>>> = vec![None; source_height];
    let mut pixels = Vec::with_capacity(width * height * 3);
    for (first, second, [b0, b1]) in &rows {
        for row in [*first, *second] {
            if cache[row].is_none() {
                cache[row] = Some(horizontal(row));
            }
        }
        let (top, bottom) = (
            cache[*first].as_deref().unwrap_or_default(),
            cache[*second].as_deref().unwrap_or_default(),
        );
        for (upper, lower) in top.iter().zip(bottom) {
            let narrow = |value: i32| (value >> 4).clamp(i32::from(i16::MIN), i32::from(i16::MAX));
            let sum = ((narrow(*upper) * b0) >> 16) + ((narrow(*lower) * b1) >> 16);
            pixels.push(((sum + 2) >> 2).clamp(0, 255) as u8);
        }
    }
    pixels
}

/// `LetterBox(size, auto=False)(image=rgb)`: resized (when the size
/// changes), centred and padded with 114.
pub(crate) fn letterbox(image: &Image, size: usize) -> Letterboxed {
    let (width, height) = (image.width as usize, image.height as usize);
    let (new_width, new_height) = resized_size(width, height, size);
    let resized = if (new_width, new_height) == (width, height) {
        image.pixels.clone()
    } else {
        resize_linear(image, new_width, new_height)
    };
    let dw = (size - new_width) as f64 / 2.0;
    let dh = (size - new_height) as f64 / 2.0;
    let top = round(dh - 0.1).max(0) as usize;
    let left = round(dw - 0.1).max(0) as usize;
    let mut pixels = vec![PADDING; size * size * 3];
    for row in 0..new_height.min(size.saturating_sub(top)) {
        let source = &resized[row * new_width * 3..(row + 1) * new_width * 3];
        let start = ((top + row) * size + left) * 3;
        let length = source.len().min(size * size * 3 - start);
        pixels[start..start + length].copy_from_slice(&source[..length]);
    }
    Letterboxed { pixels, size }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_sizes_are_ultralytics_new_unpad() {
        assert_eq!(resized_size(96, 64, 640), (640, 427));
        assert_eq!(resized_size(50, 83, 640), (386, 640));
        assert_eq!(resized_size(200, 37, 640), (640, 118));
        assert_eq!(resized_size(6400, 1, 640), (640, 1));
        assert_eq!(resized_size(640, 640, 640), (640, 640));
    }

    /// A flat image stays flat, and the padding is 114 around it.
    #[test]
    fn a_flat_image_letterboxes_to_a_flat_band() {
        let image = Image::new(20, 10, vec![200; 20 * 10 * 3]).unwrap();
        let boxed = letterbox(&image, 64);
        // 64 x 32, padded 16 above and below.
        for row in 0..64 {
            let value = boxed.pixels[(row * 64 + 5) * 3];
            let expected = if (16..48).contains(&row) {
                200
            } else {
                PADDING
            };
            assert_eq!(value, expected, "row {row}");
        }
    }
}
