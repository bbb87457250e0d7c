//! Throughput of the model host's boundary: batches of decoded 224x224 RGB
//! images through the pipe to a FiftyOne model that answers at once
//! (`zoo-test/echo` of the test source), and their labels back.
//!
//! ```text
//! ZOO_TEST_FIFTYONE_PYTHON=~/.cache/zoo/fiftyone-test-venv/bin/python \
//!   cargo run --release -p zoo-python-host --example bench_host [-- BATCHES BATCH_SIZE SIDE]
//! ```
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use zoo_model_core::{Image, Model};
use zoo_python_host::{HostSpec, Loaded, load};

fn main() {
    let python = std::env::var("ZOO_TEST_FIFTYONE_PYTHON")
        .expect("set ZOO_TEST_FIFTYONE_PYTHON to a Python with fiftyone");
    let arg = |index: usize, default: usize| {
        std::env::args()
            .nth(index)
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let (batches, batch_size, side) = (arg(1, 64), arg(2, 16), arg(3, 224));
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(
        dir.path().join("__init__.py"),
        zoo_test_support::HOSTED_SOURCE,
    )
    .unwrap();
    let model_path = dir.path().join("echo.txt");
    fs_err::write(&model_path, "numpy weights for zoo-test/echo").unwrap();
    let spec = HostSpec {
        python,
        init: dir.path().join("__init__.py"),
        model_name: "zoo-test/echo".into(),
        model_path,
        kwargs: serde_json::Map::new(),
        load_timeout: Duration::from_secs(300),
        batch_timeout: Duration::from_secs(60),
        threads: None,
        gpu: None,
    };
    let started = Instant::now();
    let Loaded::Model(mut model) = load(&spec).unwrap() else {
        panic!("echo is a model")
    };
    let load_seconds = started.elapsed().as_secs_f64();
    model.setup().unwrap();
    let side = side as u32;
    let pixels: Vec<u8> = (0..side * side * 3).map(|i| (i % 251) as u8).collect();
    let preprocess = model.preprocessor();
    let inputs: Vec<_> = (0..batch_size)
        .map(|_| {
            preprocess
                .preprocess(Image::new(side, side, pixels.clone()).unwrap())
                .unwrap()
        })
        .collect();
    // One warm-up batch.
    model.predict_all(&inputs).unwrap();
    let started = Instant::now();
    for _ in 0..batches {
        let labels = model.predict_all(&inputs).unwrap();
        assert_eq!(labels.len(), batch_size);
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = (batches * batch_size) as f64 * pixels.len() as f64;
    model.teardown();
    println!(
        "model host: load_model {load_seconds:.2} s; {batches} batches of {batch_size} {side}x{side} images in {seconds:.3} s: {:.0} MB/s, {:.0} images/s, {:.2} ms per batch",
        bytes / seconds / 1e6,
        (batches * batch_size) as f64 / seconds,
        seconds * 1e3 / batches as f64
    );
}
