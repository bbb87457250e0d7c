//! Reading and decoding sample images, within limits.
//!
//! Every image is read from a regular file only (after following links: a
//! FIFO or a device named `.jpg` is refused without blocking), through a
//! byte cap, and decoded through a pixel cap, so one hostile file costs one
//! sample's failure, never the run's memory or a hang.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use zoo_model_core::{Image, ImageLoader, Sample};

/// JPEG files: libjpeg-turbo at Pillow's settings.
pub(crate) mod jpeg;

/// File extensions indexed as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "webp", "tiff", "tif"];

/// What reading and decoding one image may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Pillow's `Image.MAX_IMAGE_PIXELS`: an image with more pixels decodes
    /// with a warning, one with more than twice as many fails (Pillow's
    /// `DecompressionBombError`).
    pub max_pixels: u64,
    /// The largest image file read, in bytes.
    pub max_bytes: u64,
}

impl ImageLimits {
    /// Pillow's default `MAX_IMAGE_PIXELS`: `1024 * 1024 * 1024 / 4 / 3`.
    pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;
    /// 1 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

    /// The most pixels an image may have before it fails: twice
    /// `max_pixels`, as in Pillow.
    pub fn pixel_cap(&self) -> u64 {
        self.max_pixels.saturating_mul(2)
    }

    /// The image crate's decoding limits: no side longer than the pixel cap,
    /// and no more memory than the pixel cap in the widest pixel format
    /// (16-bit RGBA, 8 bytes).
    fn decoding(&self) -> image::Limits {
        let side = u32::try_from(self.pixel_cap()).unwrap_or(u32::MAX);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(side);
        limits.max_image_height = Some(side);
        limits.max_alloc = Some(self.pixel_cap().saturating_mul(8));
        limits
    }
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_pixels: Self::DEFAULT_MAX_PIXELS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be opened or read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The image file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path leads to something other than a regular file.
    #[error(
        "`{}` is not a regular file but {kind}: images are read from regular files only",
        path.display()
    )]
    NotRegular {
        /// The image path.
        path: std::path::PathBuf,
        /// What it is (`a FIFO`, `a character device`, ...).
        kind: &'static str,
    },
    /// The file is over the byte cap.
    #[error(
        "`{}` is {size} bytes, over the limit of {limit} bytes per image: raise `ZOO_MAX_IMAGE_BYTES` to read it",
        path.display()
    )]
    TooManyBytes {
        /// The image file.
        path: std::path::PathBuf,
        /// Its size (at least this, when it grew while being read).
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The image has more than twice `max_pixels` pixels.
    #[error(
        "`{}` is {width}x{height} = {pixels} pixels, over twice the limit of {limit} pixels (a decompression bomb, as Pillow calls it): raise `ZOO_MAX_IMAGE_PIXELS` to decode it",
        path.display()
    )]
    TooManyPixels {
        /// The image file.
        path: std::path::PathBuf,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// `max_pixels`.
        limit: u64,
    },
    /// The decoder needed more than the limits allow.
    #[error(
        "decoding `{}` needs more than the limits allow (twice {limit} pixels, 8 bytes each): raise `ZOO_MAX_IMAGE_PIXELS` to decode it",
        path.display()
    )]
    DecodeLimit {
        /// The image file.
        path: std::path::PathBuf,
        /// `max_pixels`.
        limit: u64,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// libjpeg refused a JPEG file.
    #[error("cannot decode the JPEG `{}`", path.display())]
    Jpeg {
        /// The image file.
        path: std::path::PathBuf,
        /// libjpeg's message.
        #[source]
        source: jpeg::JpegError,
    },
    /// The bytes are not an image zoo can decode.
    #[error("cannot decode `{}`", path.display())]
    Decode {
        /// The image file.
        path: std::path::PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// The decoder returned a buffer of the wrong size.
    #[error("`{}` decoded to a malformed buffer", path.display())]
    Malformed {
        /// The image file.
        path: std::path::PathBuf,
    },
}

impl LoadError {
    /// The error and its causes on one line, as a sample's failure is
    /// recorded.
    pub fn to_message(&self) -> String {
        let mut message = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            message.push_str(": ");
            message.push_str(&error.to_string());
            cause = error.source();
        }
        message
    }
}

/// Whether `path` (links followed) is a regular file; what it is if not.
pub(crate) fn regular_file(path: &Path) -> Result<(), LoadError> {
    let metadata = fs_err::metadata(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if metadata.is_file() {
        Ok(())
    } else {
        Err(LoadError::NotRegular {
            path: path.to_path_buf(),
            kind: zoo_fs::file_kind(metadata.file_type()),
        })
    }
}

/// Opens a regular file for reading, with its size, through
/// `zoo_fs::open_untrusted`: the path is checked before opening (no device
/// is opened) and the opened file again (it may have been swapped in
/// between); it is opened non-blocking, so a FIFO never blocks.
pub(crate) fn open_regular(path: &Path) -> Result<(fs_err::File, u64), LoadError> {
    zoo_fs::open_untrusted(path).map_err(load_error)
}

/// An untrusted file's error as a [`LoadError`].
pub(crate) fn load_error(error: zoo_fs::UntrustedError) -> LoadError {
    match error {
        zoo_fs::UntrustedError::NotRegular { path, kind } => LoadError::NotRegular { path, kind },
        zoo_fs::UntrustedError::TooBig { path, size, limit } => {
            LoadError::TooManyBytes { path, size, limit }
        }
        zoo_fs::UntrustedError::Io { path, source } => LoadError::Read { path, source },
        other => LoadError::Read {
            path: PathBuf::new(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// Reads a regular file ([`open_regular`]) through the byte cap.
fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
    let (file, size) = open_regular(path)?;
    let too_many = |size| LoadError::TooManyBytes {
        path: path.to_path_buf(),
        size,
        limit: max_bytes,
    };
    if size > max_bytes {
        return Err(too_many(size));
    }
    // Sized from the file, bounded by the cap; a file that grows while it is
    // read stops at one byte over the cap.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_many(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Decodes an image file to RGB the way FiftyOne's Pillow path does: grey
/// replicated, alpha dropped without compositing, palettes looked up, EXIF
/// orientation not applied, CMYK JPEGs and 16-bit samples converted as
/// Pillow converts them; within the default [`ImageLimits`].
pub fn decode_image(path: &Path) -> Result<Image, LoadError> {
    decode_image_within(path, &ImageLimits::default())
}

/// [`decode_image`] within `limits`: the file is read through the byte cap,
/// its size checked against the pixel cap before any pixel is decoded, and
/// the decoder held to the image crate's limits.
pub fn decode_image_within(path: &Path, limits: &ImageLimits) -> Result<Image, LoadError> {
    decode_bytes_within(path, read_capped(path, limits.max_bytes)?, limits)
}

/// [`decode_image_within`] of bytes already read (from object storage);
/// `path` names them in errors and gives the format's first guess.
pub(crate) fn decode_bytes_within(
    path: &Path,
    bytes: Vec<u8>,
    limits: &ImageLimits,
) -> Result<Image, LoadError> {
    // JPEG through libjpeg-turbo, as Pillow decodes it (`jpeg.rs`).
    if jpeg::is_jpeg(&bytes) {
        return jpeg::decode(path, &bytes, limits);
    }
    let decode_error = |source: image::ImageError| match source {
        image::ImageError::Limits(_) => LoadError::DecodeLimit {
            path: path.to_path_buf(),
            limit: limits.max_pixels,
            source,
        },
        source => LoadError::Decode {
            path: path.to_path_buf(),
            source,
        },
    };
    let mut reader = ImageReader::new(Cursor::new(bytes));
    // The name's guess first, then the content's, as `ImageReader::open`
    // followed by `with_guessed_format` does.
    if let Ok(format) = ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let mut reader = reader
        .with_guessed_format()
        .map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    reader.limits(limits.decoding());
    let decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.pixel_cap() {
        return Err(LoadError::TooManyPixels {
            path: path.to_path_buf(),
            width,
            height,
            pixels,
            limit: limits.max_pixels,
        });
    }
    if pixels > limits.max_pixels {
        tracing::warn!(
            "`{}` is {width}x{height} = {pixels} pixels, over the limit of {} (`ZOO_MAX_IMAGE_PIXELS`): decoding it anyway, as Pillow does below twice the limit",
            path.display(),
            limits.max_pixels
        );
    }
    // The decoded buffer counts against the memory limit (as
    // `ImageReader::decode` reserves it; `into_decoder` does not).
    limits
        .decoding()
        .reserve(decoder.total_bytes())
        .map_err(decode_error)?;
    let decoded = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    let (width, height) = (decoded.width(), decoded.height());
    Image::new(width, height, pillow_rgb(decoded)).ok_or_else(|| LoadError::Malformed {
        path: path.to_path_buf(),
    })
}

/// The RGB bytes Pillow's `convert("RGB")` gives for a decoded image.
/// Pillow opens 16-bit greyscale as `I;16`, whose conversion clips each
/// value to 255, and other 16-bit images through its `;16B` raw modes,
/// which keep each sample's high byte (grey with alpha becomes `RGBA`); the
/// image crate would scale by 1/257 instead. 8-bit images convert as the
/// image crate does it (grey replicated, alpha dropped without
/// compositing), with no copy when already RGB (most JPEGs).
fn pillow_rgb(image: DynamicImage) -> Vec<u8> {
    let high = |value: u16| value.to_be_bytes()[0];
    match image {
        DynamicImage::ImageLuma16(grey) => grey
            .pixels()
            .flat_map(|pixel| [u8::try_from(pixel.0[0]).unwrap_or(u8::MAX); 3])
            .collect(),
        DynamicImage::ImageLumaA16(grey) => grey
            .pixels()
            .flat_map(|pixel| [high(pixel.0[0]); 3])
            .collect(),
        DynamicImage::ImageRgb16(rgb) => rgb.into_raw().into_iter().map(high).collect(),
        DynamicImage::ImageRgba16(rgba) => rgba
            .pixels()
            .flat_map(|pixel| [high(pixel.0[0]), high(pixel.0[1]), high(pixel.0[2])])
            .collect(),
        other => other.into_rgb8().into_raw(),
    }
}

/// Loads sample images from disk, within [`ImageLimits`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FileLoader {
    limits: ImageLimits,
}

impl FileLoader {
    /// A loader that holds every image to `limits`.
    pub fn new(limits: ImageLimits) -> Self {
        Self { limits }
    }
}

impl ImageLoader for FileLoader {
    fn load(&self, sample: &Sample) -> Result<Image, String> {
        decode_image_within(&sample.filepath, &self.limits).map_err(|err| err.to_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_pillow() {
        let limits = ImageLimits::default();
        assert_eq!(limits.max_pixels, 1024 * 1024 * 1024 / 4 / 3);
        assert_eq!(limits.pixel_cap(), 178_956_970);
        let decoding = limits.decoding();
        assert_eq!(decoding.max_image_width, Some(178_956_970));
        assert_eq!(decoding.max_alloc, Some(178_956_970 * 8));
        let huge = ImageLimits {
            max_pixels: u64::MAX,
            max_bytes: 1,
        };
        assert_eq!(huge.decoding().max_image_height, Some(u32::MAX));
        assert_eq!(huge.decoding().max_alloc, Some(u64::MAX));
    }
}
