//! What the benchmark examples share: generated JPEGs, medians, table
//! cells and numbers from the environment.

use std::path::Path;

use image::ImageEncoder;

/// The number in the environment variable `name`, or `default`.
pub(crate) fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Smooth random pictures with mild noise, JPEG quality 90, named as the
/// FiftyOne anchor script names its own (it reuses files that exist).
pub(crate) fn pictures(dir: &Path, count: usize, width: u32, height: u32) {
    fs_err::create_dir_all(dir).unwrap();
    for index in 0..count {
        let path = dir.join(format!("img_{index:05}.jpg"));
        if path.exists() {
            continue;
        }
        let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (index as u64 * 1_000_003);
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let low = image::RgbImage::from_fn(8, 6, |_, _| {
            image::Rgb([next() as u8, next() as u8, next() as u8])
        });
        let mut picture =
            image::imageops::resize(&low, width, height, image::imageops::FilterType::CatmullRom);
        for value in picture.iter_mut() {
            let noise = (next() % 17) as i16 - 8;
            *value = (*value as i16 + noise).clamp(0, 255) as u8;
        }
        let file = std::io::BufWriter::new(fs_err::File::create(&path).unwrap());
        image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
            .write_image(&picture, width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
    }
}

/// The median (the upper one of an even count).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A table cell: the value with `digits` decimals, or `-`.
pub(crate) fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.digits$}"))
}
