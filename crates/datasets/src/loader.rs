//! Decoding sample images.

use std::path::Path;

use zoo_model_core::{Image, ImageLoader, Sample};

/// File extensions indexed as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "webp", "tiff", "tif"];

/// Decodes an image file to RGB the way FiftyOne's Pillow path does: grey
/// replicated, alpha dropped without compositing, palettes looked up, EXIF
/// orientation not applied.
pub fn decode_image(path: &Path) -> Result<Image, String> {
    let decoded = image::ImageReader::open(path)
        .map_err(|err| format!("cannot open `{}`: {err}", path.display()))?
        .with_guessed_format()
        .map_err(|err| format!("cannot read `{}`: {err}", path.display()))?
        .decode()
        .map_err(|err| format!("cannot decode `{}`: {err}", path.display()))?
        // No copy when the image is already 8-bit RGB (most JPEGs).
        .into_rgb8();
    let (width, height) = decoded.dimensions();
    Image::new(width, height, decoded.into_raw())
        .ok_or_else(|| format!("`{}` decoded to a malformed buffer", path.display()))
}

/// Loads sample images from disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileLoader;

impl ImageLoader for FileLoader {
    fn load(&self, sample: &Sample) -> Result<Image, String> {
        decode_image(&sample.filepath)
    }
}
