//! torchvision's `resize(uint8 tensor, antialias=True)` on the CPU, bit for
//! bit: what transformers' image processors (the torchvision backend,
//! which FiftyOne asks for with `use_fast=True`) run on the `uint8` image
//! FiftyOne hands them.
//!
//! On x86 CPUs with AVX2 (and ARM), libtorch resizes `uint8` images with
//! its own port of Pillow-SIMD's resampler
//! (`UpSampleKernelAVXAntialias.h`): Pillow's filter weights (computed in
//! `f64`, normalised per output pixel), but quantised to `i16` at the
//! largest precision below 15 bits that holds the largest weight, instead
//! of Pillow's fixed 22 bits. A horizontal pass (to `u8`, rounded and
//! clamped) then a vertical one, each skipped when its side does not
//! change. This differs from Pillow's own bilinear and bicubic by one
//! level on some pixels, so zoo reproduces libtorch's, not Pillow's.
//! (Without AVX2 libtorch resizes in `f32` instead, which this does not
//! reproduce; FiftyOne's outputs then differ by such a level too.)

use zoo_model_core::Image;

/// The resampling filter an image processor names (`resample`, PIL's
/// numbering: 2 bilinear, 3 bicubic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    /// PIL's `NEAREST` (0), which transformers maps to torchvision's
    /// `NEAREST_EXACT`: source pixel `floor((index + 0.5) * (in / out))`.
    Nearest,
    /// PIL's `BILINEAR` (2): the triangle filter, support 1.
    Bilinear,
    /// PIL's `BICUBIC` (3): Keys' cubic with `a = -0.5`, support 2.
    Bicubic,
}

impl Filter {
    /// The filter PIL's resampling number names, if zoo reproduces it.
    pub(crate) fn from_pil(number: i64) -> Option<Filter> {
        match number {
            0 => Some(Filter::Nearest),
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            _ => None,
        }
    }

    /// Half the filter's width in input pixels at scale 1.
    fn support(self) -> f64 {
        match self {
            Filter::Nearest => 0.0,
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    /// The filter's weight at distance `x`.
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Nearest => 0.0,
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// One axis's resampling: for each output pixel the first input pixel and
/// its `i16` weights, and the weights' precision in bits.
struct Axis {
    spans: Vec<(usize, Vec<i32>)>,
    precision: u32,
}

fn axis(filter: Filter, input: usize, output: usize, pillow: bool) -> Axis {
    let scale = input as f64 / output as f64;
    let (support, inverse) = if scale >= 1.0 {
        (filter.support() * scale, 1.0 / scale)
    } else {
        (filter.support(), 1.0)
    };
    let mut largest = 0.0f64;
    let mut spans = Vec::with_capacity(output);
    for index in 0..output {
        let center = scale * (index as f64 + 0.5);
        // C++ casts truncate towards zero.
        let first = ((center - support + 0.5) as i64).max(0) as usize;
        let end = ((center + support + 0.5) as i64).min(input as i64).max(0) as usize;
        let weights: Vec<f64> = (first..end.max(first))
            .map(|source| filter.weight((source as f64 - center + 0.5) * inverse))
            .collect();
        let total: f64 = weights.iter().sum();
        let weights: Vec<f64> = weights
            .into_iter()
            .map(|weight| if total != 0.0 { weight / total } else { weight })
            .collect();
        largest = weights.iter().copied().fold(largest, f64::max);
        spans.push((first, weights));
    }
    // Pillow's own: 22 bits. libtorch's: the largest precision below 22
    // bits at which twice the largest weight still fits 15 bits.
    let mut precision = if pillow { 22 } else { 0u32 };
    while precision < 22 {
        let next = (0.5 + largest * f64::from(1u32 << (precision + 1))) as i64;
        if next >= 1 << 15 {
            break;
        }
        precision += 1;
    }
    let spans = spans
        .into_iter()
        .map(|(first, weights)| {
            let fixed = weights
                .into_iter()
                .map(|weight| {
                    let value = weight * f64::from(1u32 << precision);
                    if value < 0.0 {
                        (-0.5 + value) as i32
                    } else {
                        (0.5 + value) as i32
                    }
                })
                .collect();
            (first, fixed)
        })
        .collect();
    Axis { spans, precision }
}

/// One weighted sum of `u8` values, rounded, shifted and clamped as the
/// AVX kernel's `madd`, shift and saturating packs do.
fn sum(values: impl Iterator<Item = u8>, weights: &[i32], precision: u32) -> u8 {
    let start = if precision == 0 {
        0
    } else {
        1i64 << (precision - 1)
    };
    let total = values.zip(weights).fold(start, |total, (value, weight)| {
        total + i64::from(value) * i64::from(*weight)
    });
    (total >> precision).clamp(0, 255) as u8
}

/// Resizes an RGB image to `width` x `height` as libtorch resizes a
/// `uint8` tensor with `antialias=True` (see the module docs); both sides
/// must be at least 1.
pub(crate) fn resize(image: &Image, filter: Filter, width: u32, height: u32) -> Image {
    resample(image, filter, width, height, false)
}

/// Resizes an RGB image to `width` x `height` as Pillow's `Image.resize`
/// does with a bilinear or bicubic filter (`reducing_gap` off), what
/// transformers' PIL image processors (`use_fast=False`) run: the same
/// passes as libtorch's (see the module docs) with Pillow's own 22-bit
/// weights. Pillow's nearest filter is not reproduced (`Nearest` resizes
/// as libtorch does).
pub(crate) fn resize_pillow(image: &Image, filter: Filter, width: u32, height: u32) -> Image {
    resample(image, filter, width, height, true)
}

fn resample(image: &Image, filter: Filter, width: u32, height: u32, pillow: bool) -> Image {
    if filter == Filter::Nearest {
        return nearest(image, width, height);
    }
    let (in_w, in_h) = (image.width as usize, image.height as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let mut pixels = std::borrow::Cow::Borrowed(&image.pixels);
    let mut current_w = in_w;
    if out_w != in_w {
        let horizontal = axis(filter, in_w, out_w, pillow);
        let mut out = vec![0u8; in_h * out_w * 3];
        for y in 0..in_h {
            let row = &pixels[y * in_w * 3..(y + 1) * in_w * 3];
            for (x, (first, weights)) in horizontal.spans.iter().enumerate() {
                for channel in 0..3 {
                    let values = (0..weights.len()).map(|k| row[(first + k) * 3 + channel]);
                    out[(y * out_w + x) * 3 + channel] = sum(values, weights, horizontal.precision);
                }
            }
        }
        pixels = std::borrow::Cow::Owned(out);
        current_w = out_w;
    }
    if out_h != in_h {
        let vertical = axis(filter, in_h, out_h, pillow);
        let mut out = vec![0u8; out_h * current_w * 3];
        for (y, (first, weights)) in vertical.spans.iter().enumerate() {
            for x in 0..current_w {
                for channel in 0..3 {
                    let values = (0..weights.len())
                        .map(|k| pixels[((first + k) * current_w + x) * 3 + channel]);
                    out[(y * current_w + x) * 3 + channel] =
                        sum(values, weights, vertical.precision);
                }
            }
        }
        pixels = std::borrow::Cow::Owned(out);
    }
    Image {
        width,
        height,
        pixels: pixels.into_owned(),
    }
}

/// libtorch's `nearest_exact_idx`: the source of output pixel `index`
/// (the scale in `f32`, the product in `f64` rounded to `f32`, as its
/// `floorf((index + 0.5) * scale)` computes).
fn nearest_source(index: usize, input: usize, output: usize) -> usize {
    let scale = input as f32 / output as f32;
    let position = ((index as f64 + 0.5) * f64::from(scale)) as f32;
    (position.floor() as usize).min(input - 1)
}

/// libtorch's `interpolate(mode="nearest-exact")` of a `uint8` image.
fn nearest(image: &Image, width: u32, height: u32) -> Image {
    let (in_w, in_h) = (image.width as usize, image.height as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let columns: Vec<usize> = (0..out_w).map(|x| nearest_source(x, in_w, out_w)).collect();
    let mut pixels = Vec::with_capacity(out_w * out_h * 3);
    for y in 0..out_h {
        let row = nearest_source(y, in_h, out_h) * in_w;
        for &x in &columns {
            let at = (row + x) * 3;
            pixels.extend_from_slice(&image.pixels[at..at + 3]);
        }
    }
    Image {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torch 2.13: `tvF.resize(x, [1, 7], NEAREST_EXACT)` of a row of 0..10
    /// picks columns 0, 2, 3, 5, 7, 8, 10 (`nearest` would pick 0, 1, 3,
    /// 4, 6, 7, 9).
    #[test]
    fn nearest_is_torchvisions_nearest_exact() {
        let pixels: Vec<u8> = (0..11u8).flat_map(|value| [value; 3]).collect();
        let image = Image::new(11, 1, pixels).unwrap();
        let resized = resize(&image, Filter::Nearest, 7, 1);
        let red: Vec<u8> = resized.pixels.chunks(3).map(|pixel| pixel[0]).collect();
        assert_eq!(red, [0, 2, 3, 5, 7, 8, 10]);
    }

    #[test]
    fn an_unchanged_size_is_the_image_and_a_flat_image_stays_flat() {
        let image = Image::new(3, 2, (0..18).collect()).unwrap();
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            assert_eq!(resize(&image, filter, 3, 2), image);
            let flat = Image::new(7, 5, vec![200; 7 * 5 * 3]).unwrap();
            for (w, h) in [(3, 2), (14, 11), (7, 9), (1, 1)] {
                let resized = resize(&flat, filter, w, h);
                assert!(resized.pixels.iter().all(|value| *value == 200), "{w}x{h}");
            }
        }
    }

    /// Pillow (transformers' PIL backend) and libtorch differ by a level:
    /// `Image.fromarray(row).resize((4, 1), Image.BICUBIC)` of a 9-pixel row
    /// gives 209, 166, 159, 42, and torch 2.13's `tvF.resize(..., [1, 4],
    /// BICUBIC, antialias=True)` 208, 166, 159, 42.
    #[test]
    fn pillows_own_weights_are_22_bits() {
        let row = [189u8, 227, 199, 113, 201, 159, 148, 9, 42];
        let image = Image::new(9, 1, row.iter().flat_map(|value| [*value; 3]).collect()).unwrap();
        let red =
            |image: Image| -> Vec<u8> { image.pixels.chunks(3).map(|pixel| pixel[0]).collect() };
        assert_eq!(
            red(resize_pillow(&image, Filter::Bicubic, 4, 1)),
            [209, 166, 159, 42]
        );
        assert_eq!(
            red(resize(&image, Filter::Bicubic, 4, 1)),
            [208, 166, 159, 42]
        );
    }

    /// torch 2.13 (AVX512):
    /// `tvF.resize(torch.tensor([[[0, 255]]]*3, dtype=torch.uint8), [1, 4],
    /// interpolation=..., antialias=True)` gives 0, 64, 191, 255 (bilinear)
    /// and 0, 53, 202, 255 (bicubic).
    #[test]
    fn upscaling_a_two_pixel_row_matches_libtorch() {
        let image = Image::new(2, 1, vec![0, 0, 0, 255, 255, 255]).unwrap();
        for (filter, expected) in [
            (Filter::Bilinear, [0, 64, 191, 255]),
            (Filter::Bicubic, [0, 53, 202, 255]),
        ] {
            let resized = resize(&image, filter, 4, 1);
            let red: Vec<u8> = resized.pixels.chunks(3).map(|pixel| pixel[0]).collect();
            assert_eq!(red, expected, "{filter:?}");
        }
    }
}
