//! Benchmark: JPEG decoding as `zoo models apply` does it
//! (`zoo_datasets::decode_image`: libjpeg-turbo through the `mozjpeg`
//! crate, built from C without SIMD, bit for bit Pillow's output) against
//! the image crate's decoder zoo used before (`ImageReader::decode` then
//! `into_rgb8`), on the same generated photos-like JPEGs, in one run.
//!
//! Run through `cargo xtask bench decode` (or `cargo run --release -p
//! zoo-datasets --example bench_decode`). Prints medians per image, the
//! ratio, and how far apart the two decoders' pixels are.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A textured picture (gradients, a ring pattern and pseudo-random grain),
/// so that the JPEG has real high-frequency content, as photos do.
fn picture(width: u32, height: u32, seed: u32) -> image::RgbImage {
    let mut state = 0x9e37_79b9u32 ^ seed;
    image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let grain = (state % 24) as i32 - 12;
        let dx = x as i32 - width as i32 / 2;
        let dy = y as i32 - height as i32 / 2;
        let ring = (((dx * dx + dy * dy) as f32).sqrt() / 6.0).sin() * 60.0;
        let channel = |base: i32| (base + ring as i32 + grain).clamp(0, 255) as u8;
        image::Rgb([
            channel((x * 255 / width) as i32),
            channel((y * 255 / height) as i32),
            channel(128),
        ])
    })
}

fn write_jpegs(dir: &Path, count: u32, width: u32, height: u32) -> Vec<PathBuf> {
    (0..count)
        .map(|index| {
            let path = dir.join(format!("{width}x{height}-{index}.jpg"));
            let file = fs_err::File::create(&path).unwrap();
            let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(
                std::io::BufWriter::new(file),
                90,
            );
            encoder
                .encode_image(&picture(width, height, index))
                .unwrap();
            path
        })
        .collect()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The median time per image of `decode` over `rounds` passes.
fn per_image(paths: &[PathBuf], rounds: usize, decode: impl Fn(&Path)) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for path in paths {
                decode(path);
            }
            started.elapsed() / paths.len() as u32
        })
        .collect();
    median(&mut times)
}

fn image_crate(path: &Path) -> Vec<u8> {
    image::ImageReader::open(path)
        .unwrap()
        .decode()
        .unwrap()
        .into_rgb8()
        .into_raw()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!("JPEG decoding, median per image (quality 90, 4:2:0):");
    println!(
        "{:>10}  {:>22}  {:>26}  {:>6}  {:>14}",
        "size", "image crate (before)", "libjpeg-turbo (zoo, now)", "ratio", "max |pixel diff|"
    );
    // `ZOO_BENCH_SMOKE` (`cargo xtask bench --smoke`, run by CI): two
    // images, one round, so the benchmark is exercised without timing much.
    let smoke = std::env::var_os("ZOO_BENCH_SMOKE").is_some();
    let sizes = if smoke {
        [(640, 480, 2, 1), (1920, 1080, 1, 1)]
    } else {
        [(640, 480, 24, 7), (1920, 1080, 8, 5)]
    };
    for (width, height, count, rounds) in sizes {
        let paths = write_jpegs(dir.path(), count, width, height);
        let before = per_image(&paths, rounds, |path| {
            std::hint::black_box(image_crate(path));
        });
        let now = per_image(&paths, rounds, |path| {
            std::hint::black_box(zoo_datasets::decode_image(path).unwrap());
        });
        let difference = paths
            .iter()
            .map(|path| {
                let ours = zoo_datasets::decode_image(path).unwrap().pixels;
                let theirs = image_crate(path);
                ours.iter()
                    .zip(&theirs)
                    .map(|(a, b)| a.abs_diff(*b))
                    .max()
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        println!(
            "{:>10}  {:>19.2} ms  {:>23.2} ms  {:>5.2}x  {:>14}",
            format!("{width}x{height}"),
            before.as_secs_f64() * 1e3,
            now.as_secs_f64() * 1e3,
            now.as_secs_f64() / before.as_secs_f64(),
            difference
        );
    }
}
