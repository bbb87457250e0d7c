//! JPEG decoding through libjpeg-turbo, as Pillow does it (the bit-for-bit
//! comparison with Pillow's output is in torch-backend's `fiftyone_parity`
//! tests, on FiftyOne's oracle images).

use zoo_datasets::{LoadError, decode_image};

fn jpeg(dir: &std::path::Path, name: &str, width: u32, height: u32) -> std::path::PathBuf {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 5) as u8, ((x * y) % 251) as u8])
    });
    let path = dir.join(name);
    image.save(&path).unwrap();
    path
}

#[test]
fn a_jpeg_decodes_to_its_size_whatever_its_extension() {
    let dir = tempfile::tempdir().unwrap();
    let path = jpeg(dir.path(), "photo.jpg", 37, 23);
    let image = decode_image(&path).unwrap();
    assert_eq!((image.width, image.height), (37, 23));
    // Pillow picks the decoder by content: a JPEG named `.png` is a JPEG.
    let renamed = dir.path().join("photo.png");
    fs_err::copy(&path, &renamed).unwrap();
    assert_eq!(decode_image(&renamed).unwrap(), image);
}

/// Pillow refuses a JPEG cut inside its image data ("image file is
/// truncated"); libjpeg alone would fill the missing rows with grey.
#[test]
fn a_truncated_jpeg_is_an_error_naming_the_file_not_a_grey_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = jpeg(dir.path(), "cut.jpg", 64, 64);
    let bytes = fs_err::read(&path).unwrap();
    fs_err::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = decode_image(&path).unwrap_err();
    assert!(matches!(error, LoadError::Jpeg { .. }), "{error:?}");
    let message = error.to_message();
    assert!(
        message.contains("cut.jpg") && message.contains("truncated"),
        "{message}"
    );
}

/// A libjpeg fatal error (here a corrupt header) is caught and reported,
/// never a panic or an abort.
#[test]
fn a_corrupt_jpeg_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jpg");
    // SOI, a bogus SOF0 with zero components, then an end marker.
    fs_err::write(
        &path,
        [
            0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x08, 0x08, 0x00, 0x10, 0x00, 0x10, 0x00, 0xFF, 0xD9,
        ],
    )
    .unwrap();
    let error = decode_image(&path).unwrap_err();
    assert!(
        error.to_message().contains("bad.jpg"),
        "{}",
        error.to_message()
    );
}
