//! FiftyOne's `TorchImageModel` preprocessing, reproduced exactly:
//! min-dim then max-dim resize with round-half-even sizes, Pillow's bilinear
//! resampler (separable, antialiased, 22-bit fixed point, rounded to `u8`
//! between passes), then `x / 255`, `(x - mean) / std` in `f32`.

use zoo_model_core::{Image, Input, InputData, ModelError, Preprocess};

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The largest image side, in pixels, a config may ask for and an image may
/// be resized to (a 16384x16384 input is 3 GiB of `f32`).
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// The preprocessing a model config asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    /// FiftyOne's `image_dim`: torchvision's `Resize(image_dim)`, the
    /// shorter side to exactly this, the longer one in proportion
    /// (truncated). Ignored with `size`; `min_dim` and `max_dim` are
    /// ignored with it.
    pub dim: Option<u32>,
    /// Upscale so both sides are at least this.
    pub min_dim: Option<u32>,
    /// Downscale so both sides are at most this.
    pub max_dim: Option<u32>,
    /// Resize to exactly `(width, height)` instead (FiftyOne's `image_size`,
    /// which torchvision's `Resize` reads as `[height, width]`).
    pub size: Option<(u32, u32)>,
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
    /// Centre-crop each side down to a multiple of this (FiftyOne's
    /// `image_patch_size`, its `PatchSize` transform); when set, FiftyOne
    /// applies `image_min_dim` and ignores `image_max_dim`.
    pub patch_size: Option<u32>,
    /// Leave the resized pixels as `u8` ([`InputData::Pixels`]) for the
    /// model to normalise where it runs (a GPU), instead of normalising
    /// here.
    pub pixels: bool,
}

impl Default for Preprocessing {
    fn default() -> Self {
        Self {
            dim: None,
            min_dim: None,
            max_dim: None,
            size: None,
            mean: [0.0; 3],
            std: [1.0; 3],
            patch_size: None,
            pixels: false,
        }
    }
}

impl Preprocessing {
    /// The sizes an image of `(width, height)` goes through, one per Pillow
    /// resize FiftyOne's transforms run, in order (empty when none applies).
    ///
    /// FiftyOne 1.22.1 (`TorchImageModel._build_transforms`) composes
    /// `MinResize` then `MaxResize`, each its own `F.resize` of the previous
    /// result, so a 3000x100 image with `image_min_dim=224` and
    /// `image_max_dim=2048` is resized to 6720x224 and then to 2048x68, not
    /// once to 2048x68. `MinResize` leaves an image alone when both sides
    /// are at least the minimum, `MaxResize` when both are at most the
    /// maximum; each new side is `int(round(scale * side))` (half to even).
    /// `image_size` is torchvision's `Resize([height, width])`.
    pub fn resize_steps(&self, width: u32, height: u32) -> Vec<(u32, u32)> {
        if let Some(size) = self.size {
            return if size == (width, height) {
                Vec::new()
            } else {
                vec![size]
            };
        }
        if let Some(dim) = self.dim {
            return resize_shorter_side(width, height, dim)
                .into_iter()
                .collect();
        }
        let mut steps = Vec::new();
        let (mut w, mut h) = (f64::from(width), f64::from(height));
        if let Some(min) = self.min_dim.map(f64::from)
            && (w < min || h < min)
        {
            let scale = (min / h).max(min / w);
            (w, h) = (scaled(scale, w), scaled(scale, h));
            steps.push((w, h));
        }
        // FiftyOne 1.22.1's `image_patch_size` branch applies `MinResize`
        // only, then `PatchSize`.
        if let Some(max) = self.max_dim.map(f64::from)
            && self.patch_size.is_none()
            && (w > max || h > max)
        {
            let scale = (max / h).min(max / w);
            (w, h) = (scaled(scale, w), scaled(scale, h));
            steps.push((w, h));
        }
        steps
            .into_iter()
            .map(|(w, h)| (w as u32, h as u32))
            .collect()
    }

    /// The size an image of `(width, height)` ends up with (after the
    /// resizes and the patch-size crop).
    pub fn target_size(&self, width: u32, height: u32) -> (u32, u32) {
        let (width, height) = self
            .resize_steps(width, height)
            .last()
            .copied()
            .unwrap_or((width, height));
        match self.patch_crop_box(width, height) {
            Some((_, _, width, height)) => (width, height),
            None => (width, height),
        }
    }

    /// FiftyOne's `PatchSize(patch)` on an image of `(width, height)`:
    /// torchvision's `center_crop` to `(h // patch * patch, w // patch *
    /// patch)`, whose offsets are `int(round((side - new) / 2))` (half to
    /// even), as `(left, top, width, height)`; `None` when nothing is
    /// cropped. A side shorter than the patch would crop to nothing:
    /// torchvision then pads, which FiftyOne never reaches with its
    /// `image_min_dim` equal to the patch size; zoo leaves such an image
    /// alone and the network refuses it.
    pub fn patch_crop_box(&self, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
        let patch = self.patch_size.filter(|patch| *patch > 0)?;
        let (new_width, new_height) = (width / patch * patch, height / patch * patch);
        if (new_width, new_height) == (width, height) || new_width == 0 || new_height == 0 {
            return None;
        }
        let offset = |side: u32, new: u32| (f64::from(side - new) / 2.0).round_ties_even() as u32;
        Some((
            offset(width, new_width),
            offset(height, new_height),
            new_width,
            new_height,
        ))
    }

    /// The patch-size crop of `image`, if any applies.
    fn patch_crop(&self, image: &Image) -> Option<Image> {
        let (left, top, width, height) = self.patch_crop_box(image.width, image.height)?;
        let row = image.width as usize * 3;
        let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
        for y in top as usize..(top + height) as usize {
            let start = y * row + left as usize * 3;
            pixels.extend_from_slice(image.pixels.get(start..start + width as usize * 3)?);
        }
        Some(Image {
            width,
            height,
            pixels,
        })
    }

    /// Resizes like FiftyOne's transforms (every step of
    /// [`Preprocessing::resize_steps`], each a Pillow bilinear resize) and
    /// normalises into a `CHW` input (or keeps the pixels, see
    /// [`Preprocessing::pixels`]).
    pub fn apply(&self, image: &Image) -> Input {
        let mut resized = std::borrow::Cow::Borrowed(image);
        for (width, height) in self.resize_steps(image.width, image.height) {
            resized = std::borrow::Cow::Owned(resize_bilinear(&resized, width, height));
        }
        if let Some(cropped) = self.patch_crop(&resized) {
            resized = std::borrow::Cow::Owned(cropped);
        }
        let source = resized.as_ref();
        let (width, height) = (source.width, source.height);
        if self.pixels {
            return Input {
                shape: [3, height as usize, width as usize],
                data: InputData::Pixels(resized.into_owned().pixels),
                original_size: (image.width, image.height),
            };
        }
        let plane = width as usize * height as usize;
        let mut data = vec![0.0f32; 3 * plane];
        for (index, pixel) in source.pixels.chunks_exact(3).enumerate() {
            for channel in 0..3 {
                let value = f32::from(pixel[channel]) / 255.0;
                data[channel * plane + index] = (value - self.mean[channel]) / self.std[channel];
            }
        }
        Input {
            shape: [3, height as usize, width as usize],
            data: InputData::Values(data),
            original_size: (image.width, image.height),
        }
    }
}

/// `int(round(scale * side))`: Python's round is half to even; a side never
/// drops below one pixel (Pillow refuses an empty image).
fn scaled(scale: f64, side: f64) -> f64 {
    (scale * side).round_ties_even().max(1.0)
}

impl Preprocess for Preprocessing {
    /// [`Preprocessing::apply`], refusing a resize beyond
    /// [`MAX_IMAGE_SIDE`] (e.g. `image_min_dim` on a 1-pixel-high strip).
    fn preprocess(&self, image: Image) -> Result<Input, ModelError> {
        for (width, height) in self.resize_steps(image.width, image.height) {
            if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
                return Err(ModelError::preprocess(format!(
                    "an image of {}x{} would be resized to {width}x{height}, beyond {MAX_IMAGE_SIDE} pixels a side",
                    image.width, image.height
                )));
            }
        }
        if self.pixels
            && self.resize_steps(image.width, image.height).is_empty()
            && self.patch_crop_box(image.width, image.height).is_none()
        {
            // Nothing to resize or normalise: hand the pixels over as they are.
            let (width, height) = (image.width, image.height);
            return Ok(Input {
                shape: [3, height as usize, width as usize],
                original_size: (image.width, image.height),
                data: InputData::Pixels(image.pixels),
            });
        }
        Ok(self.apply(&image))
    }
}

/// Pillow's per-output-pixel source bounds and fixed-point weights.
struct Coefficients {
    size: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0, widened when shrinking
    let size = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * size];
    let mut row = vec![0f64; size];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let inverse = 1.0 / filterscale;
        // C casts truncate towards zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, slot) in row.iter_mut().enumerate().take(count) {
            let distance = ((x + xmin) as f64 - center + 0.5) * inverse;
            let weight = (1.0 - distance.abs()).max(0.0);
            *slot = weight;
            total += weight;
        }
        for (x, slot) in row.iter().enumerate().take(count) {
            let weight = if total != 0.0 { slot / total } else { *slot };
            let fixed = weight * f64::from(1u32 << PRECISION_BITS);
            weights[xx * size + x] = if weight < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, count));
    }
    Coefficients {
        size,
        bounds,
        weights,
    }
}

fn clip8(value: i64) -> u8 {
    (value >> PRECISION_BITS).clamp(0, 255) as u8
}

/// torchvision's `Resize(dim)` of a `width` x `height` PIL image
/// (`_compute_resized_output_size`): the shorter side becomes `dim`, the
/// longer `int(dim * long / short)` (Python's true division, truncated;
/// [`Preprocess::preprocess`] refuses a side beyond [`MAX_IMAGE_SIDE`]);
/// `None` when that is the image's size (torchvision returns the image
/// itself).
fn resize_shorter_side(width: u32, height: u32, dim: u32) -> Option<(u32, u32)> {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (f64::from(dim) * f64::from(long) / f64::from(short.max(1))) as u32;
    let new_long = new_long.max(1);
    let size = if width <= height {
        (dim, new_long)
    } else {
        (new_long, dim)
    };
    (size != (width, height)).then_some(size)
}

/// Resizes an RGB image with Pillow's `Image.BILINEAR` (reducing gap off),
/// bit for bit.
pub fn resize_bilinear(image: &Image, width: u32, height: u32) -> Image {
    let (in_w, in_h) = (image.width as usize, image.height as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let horizontal = coefficients(in_w, out_w);
    let vertical = coefficients(in_h, out_h);
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;

    // The source rows the vertical pass reads.
    let first_row = vertical.bounds[0].0;
    let last = vertical.bounds[out_h - 1];
    let last_row = last.0 + last.1;

    let half = 1i64 << (PRECISION_BITS - 1);
    let (mut current, mut current_w, mut row_offset) =
        (std::borrow::Cow::Borrowed(&image.pixels), in_w, 0usize);
    if need_horizontal {
        let rows = last_row - first_row;
        let mut out = vec![0u8; rows * out_w * 3];
        for y in 0..rows {
            let src = &image.pixels[(y + first_row) * in_w * 3..(y + first_row + 1) * in_w * 3];
            for xx in 0..out_w {
                let (xmin, count) = horizontal.bounds[xx];
                let k = &horizontal.weights[xx * horizontal.size..xx * horizontal.size + count];
                let mut sums = [half; 3];
                for (x, weight) in k.iter().enumerate() {
                    let pixel = &src[(x + xmin) * 3..(x + xmin) * 3 + 3];
                    for channel in 0..3 {
                        sums[channel] += i64::from(pixel[channel]) * i64::from(*weight);
                    }
                }
                for channel in 0..3 {
                    out[(y * out_w + xx) * 3 + channel] = clip8(sums[channel]);
                }
            }
        }
        current = std::borrow::Cow::Owned(out);
        current_w = out_w;
        row_offset = first_row;
    }
    if need_vertical {
        let mut out = vec![0u8; out_h * current_w * 3];
        for yy in 0..out_h {
            let (ymin, count) = vertical.bounds[yy];
            let k = &vertical.weights[yy * vertical.size..yy * vertical.size + count];
            for x in 0..current_w {
                let mut sums = [half; 3];
                for (y, weight) in k.iter().enumerate() {
                    let row = y + ymin - row_offset;
                    let pixel = &current[(row * current_w + x) * 3..(row * current_w + x) * 3 + 3];
                    for channel in 0..3 {
                        sums[channel] += i64::from(pixel[channel]) * i64::from(*weight);
                    }
                }
                for channel in 0..3 {
                    out[(yy * current_w + x) * 3 + channel] = clip8(sums[channel]);
                }
            }
        }
        current = std::borrow::Cow::Owned(out);
    }
    Image {
        width,
        height,
        pixels: current.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_sizes_follow_fiftyone() {
        let config = Preprocessing {
            min_dim: Some(224),
            max_dim: Some(2048),
            ..Preprocessing::default()
        };
        let cases = [
            ((640, 480), (640, 480)),
            ((100, 50), (448, 224)),
            ((50, 100), (224, 448)),
            // 300x200: scale 1.12 -> 336x224.
            ((300, 200), (336, 224)),
            ((10000, 100), (2048, 20)),
            ((224, 224), (224, 224)),
            ((223, 1000), (224, 1004)),
        ];
        for ((w, h), size) in cases {
            assert_eq!(config.target_size(w, h), size, "{w}x{h}");
        }
        // Round half to even: 0.5 goes down to 0 -> clamped to 1 pixel; 2.5 -> 2.
        let tiny = Preprocessing {
            max_dim: Some(5),
            ..Preprocessing::default()
        };
        assert_eq!(tiny.target_size(10, 5), (5, 2));
    }

    /// FiftyOne 1.22.1's `MinResize` then `MaxResize`: two Pillow resizes
    /// when both apply (oracle: `xtask/fixtures/torch_oracle.py`, which runs
    /// FiftyOne's own transforms on `extreme.png`).
    #[test]
    fn min_then_max_dim_resize_twice_not_once() {
        let config = Preprocessing {
            min_dim: Some(224),
            max_dim: Some(2048),
            ..Preprocessing::default()
        };
        type Steps = &'static [(u32, u32)];
        let cases: [((u32, u32), Steps); 5] = [
            ((3000, 100), &[(6720, 224), (2048, 68)]),
            ((100, 3000), &[(224, 6720), (68, 2048)]),
            ((640, 480), &[]),
            ((100, 50), &[(448, 224)]),
            ((4000, 3000), &[(2048, 1536)]),
        ];
        for ((w, h), steps) in cases {
            assert_eq!(config.resize_steps(w, h), steps, "{w}x{h}");
        }
        // The two-step result differs from one resize straight to 2048x68.
        let pixels: Vec<u8> = (0..3000u32 * 100 * 3)
            .map(|index| (index.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let image = Image::new(3000, 100, pixels).unwrap();
        let chained = config.apply(&image);
        assert_eq!(chained.shape, [3, 68, 2048]);
        let once = Preprocessing::default().apply(&resize_bilinear(&image, 2048, 68));
        assert_ne!(chained.data, once.data);
        let twice = Preprocessing::default().apply(&resize_bilinear(
            &resize_bilinear(&image, 6720, 224),
            2048,
            68,
        ));
        assert_eq!(chained.data, twice.data);
    }

    #[test]
    fn a_step_beyond_the_side_limit_is_refused_even_when_the_last_is_not() {
        let config = Preprocessing {
            min_dim: Some(224),
            max_dim: Some(224),
            ..Preprocessing::default()
        };
        // 224 / 2 = 112x: 25000x2 -> 2800000x224 -> 224x0 (clamped to 1).
        assert_eq!(config.target_size(25_000, 2), (224, 1));
        let image = Image::new(25_000, 2, vec![0; 25_000 * 2 * 3]).unwrap();
        let error = config.preprocess(image).unwrap_err().to_string();
        assert!(error.contains("2800000x224"), "{error}");
    }

    #[test]
    fn identity_and_constant_images() {
        let image = Image::new(3, 2, (0..18).collect()).unwrap();
        assert_eq!(resize_bilinear(&image, 3, 2), image);
        let flat = Image::new(7, 5, vec![200; 7 * 5 * 3]).unwrap();
        for (w, h) in [(3, 2), (14, 11), (7, 9), (1, 1)] {
            let resized = resize_bilinear(&flat, w, h);
            assert!(resized.pixels.iter().all(|value| *value == 200), "{w}x{h}");
        }
    }

    #[test]
    fn upscaling_a_two_pixel_row_matches_pillow() {
        // PIL: Image.frombytes("RGB", (2, 1), bytes([0]*3 + [255]*3))
        //        .resize((4, 1), Image.BILINEAR) -> 0, 64, 191, 255 per channel.
        let image = Image::new(2, 1, vec![0, 0, 0, 255, 255, 255]).unwrap();
        let resized = resize_bilinear(&image, 4, 1);
        let red: Vec<u8> = resized.pixels.chunks(3).map(|pixel| pixel[0]).collect();
        assert_eq!(red, vec![0, 64, 191, 255]);
    }

    #[test]
    fn normalisation_is_true_division_in_f32() {
        let config = Preprocessing {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            ..Preprocessing::default()
        };
        let input = config.apply(&Image::new(1, 1, vec![255, 0, 128]).unwrap());
        assert_eq!(input.shape, [3, 1, 1]);
        let values = input.data.values().unwrap();
        assert_eq!(values[0], (1.0f32 - 0.485) / 0.229);
        assert_eq!(values[1], (0.0f32 - 0.456) / 0.224);
        assert_eq!(values[2], (128.0f32 / 255.0 - 0.406) / 0.225);
    }

    #[test]
    fn pixels_mode_keeps_the_resized_pixels_unnormalised() {
        let config = Preprocessing {
            min_dim: Some(4),
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            pixels: true,
            ..Preprocessing::default()
        };
        let image = Image::new(2, 1, vec![0, 0, 0, 255, 255, 255]).unwrap();
        let input = config.preprocess(image.clone()).unwrap();
        assert_eq!(input.shape, [3, 4, 8]);
        assert_eq!(
            input.data,
            InputData::Pixels(resize_bilinear(&image, 8, 4).pixels)
        );
        assert_eq!(input.original_size, (2, 1));
        let unresized = Preprocessing {
            pixels: true,
            ..Preprocessing::default()
        };
        let input = unresized.preprocess(image.clone()).unwrap();
        assert_eq!(input.data, InputData::Pixels(image.pixels));
    }
}
