//! `decode_image` against Pillow itself, bit for bit, on the image kinds
//! whose conversion to RGB is Pillow's own choice (FiftyOne 1.22.1 reads
//! every image with `Image.open(f).convert("RGB")`).
//!
//! Oracle: `fixtures/pillow/`, written by `cargo xtask pillow-decode-oracle`
//! (`xtask/fixtures/pillow_decode.py`, Pillow 13): the inputs, Pillow's RGB
//! of each as an 8-bit RGB PNG under `expected/`, and `pillow_decode.json`
//! (the mode Pillow opened each input in, its size, the SHA-256 of its RGB
//! bytes).

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use zoo_datasets::decode_image;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pillow")
}

/// How many bytes of `ours` differ from `theirs`, and by how much at most.
fn differences(ours: &[u8], theirs: &[u8]) -> (usize, u8) {
    ours.iter()
        .zip(theirs)
        .filter(|(a, b)| a != b)
        .fold((0, 0), |(count, worst), (a, b)| {
            (count + 1, worst.max(a.abs_diff(*b)))
        })
}

/// Asserts that zoo decodes `input` to Pillow's RGB exactly.
fn assert_decodes_like_pillow(input: &str) {
    let oracle: serde_json::Value =
        serde_json::from_slice(&fs_err::read(fixtures().join("pillow_decode.json")).unwrap())
            .unwrap();
    let entry = &oracle[input];
    let expected = decode_image(&fixtures().join("expected").join(format!("{input}.png"))).unwrap();
    // The expected PNG holds Pillow's bytes (its digest is Pillow's).
    assert_eq!(
        Sha256::digest(&expected.pixels)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>(),
        entry["rgb_sha256"].as_str().unwrap(),
        "{input}: expected/{input}.png"
    );
    let ours = decode_image(&fixtures().join(input)).unwrap();
    assert_eq!(
        [ours.width, ours.height],
        [
            entry["size"][0].as_u64().unwrap() as u32,
            entry["size"][1].as_u64().unwrap() as u32
        ],
        "{input}"
    );
    let (count, worst) = differences(&ours.pixels, &expected.pixels);
    assert!(
        count == 0,
        "{input} (Pillow mode {}): {count} of {} bytes differ from Pillow's, by up to {worst}",
        entry["mode"],
        ours.pixels.len()
    );
}

/// Pillow opens a 4-component JPEG as `CMYK` with Adobe's inverted samples
/// (`CMYK;I`, whatever the file's markers say) and converts it with its own
/// `cmyk2rgb`; the image crate's CMYK conversion differs.
#[test]
fn cmyk_jpeg_decodes_like_pillow() {
    assert_decodes_like_pillow("cmyk.jpg");
}

/// The same samples without an Adobe marker: libjpeg still reads CMYK and
/// Pillow still inverts them.
#[test]
fn cmyk_jpeg_without_adobe_marker_decodes_like_pillow() {
    assert_decodes_like_pillow("cmyk_no_adobe.jpg");
}

/// Adobe transform 2 (YCCK): libjpeg converts to CMYK, then as above.
#[test]
fn ycck_jpeg_decodes_like_pillow() {
    assert_decodes_like_pillow("ycck.jpg");
}

/// A greyscale JPEG: grey replicated to the three channels.
#[test]
fn grayscale_jpeg_decodes_like_pillow() {
    assert_decodes_like_pillow("gray.jpg");
}

/// PNGs in Pillow's modes `L`, `LA`, `RGBA`, `P` (with and without a
/// transparent index) and `1`: grey replicated, alpha dropped without
/// compositing, palettes looked up.
#[test]
fn grey_alpha_palette_and_bilevel_pngs_decode_like_pillow() {
    for input in [
        "gray.png",
        "gray_alpha.png",
        "rgba.png",
        "palette.png",
        "palette_transparency.png",
        "bilevel.png",
    ] {
        assert_decodes_like_pillow(input);
    }
}

/// A 16-bit greyscale PNG: Pillow opens it as `I;16` and its conversion to
/// RGB clips each value to 255 (a 16-bit image is mostly white), where
/// scaling by 1/257 keeps the picture.
#[test]
fn sixteen_bit_grey_png_decodes_like_pillow() {
    assert_decodes_like_pillow("gray16.png");
}

/// 16-bit PNGs with grey and alpha, RGB and RGBA: Pillow reads them
/// through its `;16B` raw modes, which keep each sample's high byte (grey
/// with alpha opens as `RGBA`), where rounding `value / 257` is one higher
/// for some.
#[test]
fn sixteen_bit_grey_alpha_rgb_and_rgba_pngs_decode_like_pillow() {
    for input in ["gray_alpha16.png", "rgb16.png", "rgba16.png"] {
        assert_decodes_like_pillow(input);
    }
}
