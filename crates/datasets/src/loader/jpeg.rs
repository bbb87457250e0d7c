//! JPEG decoding bit for bit as FiftyOne's Pillow does it.
//!
//! FiftyOne 1.22.1 loads images with `Image.open(f).convert("RGB")`; Pillow
//! 13 decodes JPEG with libjpeg-turbo 3 at its defaults: the accurate
//! integer IDCT (`JDCT_ISLOW`), fancy upsampling, libjpeg's own YCbCr to RGB
//! conversion, no scaling and no block smoothing of its own. zoo decodes
//! through the same library (the `mozjpeg` crate, which builds MozJPEG's
//! libjpeg-turbo decoder from C with the `cc` crate alone: no cmake, no
//! nasm) with the same settings, so the RGB bytes are identical.
//!
//! CMYK and YCCK JPEGs: Pillow asks libjpeg for CMYK (libjpeg converts YCCK
//! to it), reads the samples as Adobe-inverted (`CMYK;I`, whatever the
//! file's markers say) and converts to RGB with its own `cmyk2rgb`; zoo
//! does the same ([`pillow_cmyk_to_rgb`]). Anything that does not start
//! with a JPEG signature goes to the image crate.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use mozjpeg::{ColorSpace, Decompress};
use zoo_model_core::Image;

use super::{ImageLimits, LoadError};

/// The first bytes of every JPEG file (SOI and the start of a marker).
const SIGNATURE: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Why libjpeg refused a file: its own message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JpegError {
    message: String,
}

/// What the decoder made of the bytes.
enum Decoded {
    Image(Image),
    TooManyPixels { width: u32, height: u32 },
    Failed(String),
}

/// Whether `bytes` start like a JPEG file (Pillow picks its decoder by
/// content, not by the file name).
pub(crate) fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&SIGNATURE)
}

/// Whether the last scan of the file is followed by an end-of-image marker.
/// Pillow (without `LOAD_TRUNCATED_IMAGES`) fails on a file that ends
/// inside its image data, where libjpeg alone would pad the missing rows
/// with grey. Entropy-coded data never holds `FF D9` (every `FF` in it is
/// stuffed), so the last `FF DA` (start of scan) and the last `FF D9` tell.
fn is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|pair| pair == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

/// Decodes `bytes` of the JPEG file at `path` to RGB as Pillow does.
pub(crate) fn decode(path: &Path, bytes: &[u8], limits: &ImageLimits) -> Result<Image, LoadError> {
    let failed = |message: String| LoadError::Jpeg {
        path: path.to_path_buf(),
        source: JpegError { message },
    };
    if !is_complete(bytes) {
        return Err(failed(
            "the file is truncated: its image data has no end marker (Pillow refuses it too)"
                .to_owned(),
        ));
    }
    // libjpeg reports a fatal error by unwinding out of the decoder
    // (`resume_unwind`: no panic message is printed); it is caught here.
    let outcome = catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, limits)));
    let decoded = match outcome {
        Ok(decoded) => decoded,
        Err(payload) => Decoded::Failed(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| {
                    payload
                        .downcast_ref::<&str>()
                        .map(|text| (*text).to_owned())
                })
                .unwrap_or_else(|| "libjpeg failed".to_owned()),
        ),
    };
    match decoded {
        Decoded::Image(image) => {
            let pixels = u64::from(image.width) * u64::from(image.height);
            if pixels > limits.max_pixels {
                tracing::warn!(
                    "`{}` is {}x{} = {pixels} pixels, over the limit of {} (`ZOO_MAX_IMAGE_PIXELS`): decoded anyway, as Pillow does below twice the limit",
                    path.display(),
                    image.width,
                    image.height,
                    limits.max_pixels
                );
            }
            Ok(image)
        }
        Decoded::TooManyPixels { width, height } => Err(LoadError::TooManyPixels {
            path: path.to_path_buf(),
            width,
            height,
            pixels: u64::from(width) * u64::from(height),
            limit: limits.max_pixels,
        }),
        Decoded::Failed(message) => Err(failed(message)),
    }
}

fn decode_inner(bytes: &[u8], limits: &ImageLimits) -> Decoded {
    let decompress = match Decompress::new_mem(bytes) {
        Ok(decompress) => decompress,
        Err(err) => return Decoded::Failed(err.to_string()),
    };
    let cmyk = matches!(
        decompress.color_space(),
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
    );
    let (width, height) = decompress.size();
    let (Ok(width), Ok(height)) = (u32::try_from(width), u32::try_from(height)) else {
        return Decoded::Failed(format!("a size of {width}x{height} is not supported"));
    };
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.pixel_cap() {
        return Decoded::TooManyPixels { width, height };
    }
    // `rgb()` asks libjpeg for RGB output at its defaults (islow IDCT,
    // fancy upsampling), which is what Pillow asks for; CMYK for CMYK and
    // YCCK files, as Pillow does.
    let started = if cmyk {
        decompress.to_colorspace(ColorSpace::JCS_CMYK)
    } else {
        decompress.rgb()
    };
    let mut started = match started {
        Ok(started) => started,
        Err(err) => return Decoded::Failed(err.to_string()),
    };
    let pixels = match started.read_scanlines::<u8>() {
        Ok(pixels) => pixels,
        Err(err) => return Decoded::Failed(err.to_string()),
    };
    if let Err(err) = started.finish() {
        return Decoded::Failed(err.to_string());
    }
    let pixels = if cmyk {
        pillow_cmyk_to_rgb(&pixels)
    } else {
        pixels
    };
    match Image::new(width, height, pixels) {
        Some(image) => Decoded::Image(image),
        None => Decoded::Failed(format!(
            "libjpeg returned fewer rows than the {width}x{height} the header declares"
        )),
    }
}

/// Pillow's RGB of libjpeg's CMYK samples: Pillow reads them inverted
/// (`CMYK;I`: `c = 255 - C`, `k = 255 - K`), then its `cmyk2rgb` gives each
/// channel `nk - c * nk / 255` with `nk = 255 - k` (so `nk = K`), the
/// product rounded as its `MULDIV255`: `t = c * nk + 128`,
/// `((t >> 8) + t) >> 8`.
fn pillow_cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    cmyk.chunks_exact(4)
        .flat_map(|sample| {
            let nk = u32::from(sample[3]);
            let channel = |value: u8| {
                let c = 255 - u32::from(value);
                let t = c * nk + 128;
                let product = ((t >> 8) + t) >> 8;
                // `product <= nk`, as `c <= 255`.
                u8::try_from(nk.saturating_sub(product)).unwrap_or(u8::MAX)
            };
            [channel(sample[0]), channel(sample[1]), channel(sample[2])]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness_is_read_from_the_last_scan_and_end_markers() {
        let cases: [(&[u8], bool); 5] = [
            (&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9], true),
            (&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2], false),
            // A thumbnail's end marker before the main scan does not count.
            (&[0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA, 1, 2], false),
            (
                &[0xFF, 0xD8, 0xFF, 0xDA, 0xFF, 0xDA, 3, 0xFF, 0xD9, 0],
                true,
            ),
            (&[0xFF, 0xD8], false),
        ];
        for (bytes, complete) in cases {
            assert_eq!(is_complete(bytes), complete, "{bytes:?}");
        }
    }
}
