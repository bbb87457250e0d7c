//! The model side of `xtask/device/gpu_check.py`, the GPU check run on a
//! machine with a GPU and PyTorch but no Rust (built by `cargo xtask
//! device-build`).
//!
//! ```text
//! device_probe rate CONFIG_JSON WEIGHTS IMAGE BATCH COUNT WARMUP
//!     zoo's model-only rate: `predict_all` on batches of BATCH copies of
//!     IMAGE's input (decoded and preprocessed once), as apply calls it
//!     (host to device copy, forward, logits back, softmax); WARMUP
//!     batches first, then COUNT images timed. Prints one JSON object.
//! device_probe logits CONFIG_JSON WEIGHTS OUT_DIR IMAGE...
//!     each IMAGE's preprocessed input written to OUT_DIR as raw
//!     little-endian f32 (`<index>.f32`, CHW), and zoo's logits for it.
//!     Prints one JSON object, so that PyTorch can run the same tensors.
//! ```
//!
//! CONFIG_JSON is a FiftyOne deployment config (`entrypoint_fcn`,
//! `device`, `use_half_precision`, ...); WEIGHTS its `model_path`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};
use zoo_model_core::{Image, Input, InputData, Label, Model, ModelSpec, Prediction};
use zoo_torch_backend::{Preprocessing, TorchImageModel};

fn model(config: &str, weights: &Path) -> TorchImageModel {
    let config: Value = serde_json::from_str(config).unwrap();
    TorchImageModel::from_spec(&ModelSpec {
        kind: "fiftyone.zoo.models.torch.TorchvisionImageModel".into(),
        config: config.as_object().unwrap().clone(),
        model_path: Some(weights.to_path_buf()),
    })
    .unwrap()
}

fn input(model: &TorchImageModel, path: &Path) -> Input {
    let decoded = image::open(path).unwrap().to_rgb8();
    let image = Image::new(decoded.width(), decoded.height(), decoded.into_raw()).unwrap();
    model.preprocessor().preprocess(image).unwrap()
}

fn rate(args: &[String]) -> Value {
    let [config, weights, image, batch, count, warmup] = args else {
        panic!("rate CONFIG_JSON WEIGHTS IMAGE BATCH COUNT WARMUP");
    };
    let (batch, count, warmup): (usize, usize, usize) = (
        batch.parse().unwrap(),
        count.parse().unwrap(),
        warmup.parse().unwrap(),
    );
    let loading = Instant::now();
    let mut model = model(config, Path::new(weights));
    let load_seconds = loading.elapsed().as_secs_f64();
    let input = input(&model, Path::new(image));
    let shape = input.shape;
    let inputs: Vec<Input> = (0..batch).map(|_| input.clone()).collect();
    let warming = Instant::now();
    for _ in 0..warmup {
        model.predict_all(&inputs).unwrap();
    }
    let warmup_seconds = warming.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut done = 0;
    let mut forwards = 0;
    while done < count {
        let take = (count - done).min(batch);
        let predictions = model.predict_all(&inputs[..take]).unwrap();
        assert_eq!(predictions.len(), take);
        done += take;
        forwards += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    json!({
        "images": done,
        "batch_size": batch,
        "forwards": forwards,
        "input_shape": shape,
        "seconds": seconds,
        "images_per_second": done as f64 / seconds,
        "load_seconds": load_seconds,
        "warmup_batches": warmup,
        "warmup_seconds": warmup_seconds,
    })
}

fn logits(args: &[String]) -> Value {
    let [config, weights, out, images @ ..] = args else {
        panic!("logits CONFIG_JSON WEIGHTS OUT_DIR IMAGE...");
    };
    let mut model = model(config, Path::new(weights));
    model.set_store_logits(true);
    let floats = |key: &str, default: f32| -> [f32; 3] {
        let parsed: Value = serde_json::from_str(config).unwrap();
        parsed
            .get(key)
            .and_then(Value::as_array)
            .map_or([default; 3], |values| {
                [0, 1, 2].map(|index| values[index].as_f64().unwrap() as f32)
            })
    };
    // On a GPU the model takes pixels and normalises them there; PyTorch
    // gets the host normalisation of the same pixels.
    let host = Preprocessing {
        mean: floats("image_mean", 0.0),
        std: floats("image_std", 1.0),
        ..Preprocessing::default()
    };
    let out = PathBuf::from(out);
    fs_err::create_dir_all(&out).unwrap();
    let mut results = Vec::new();
    for (index, image) in images.iter().enumerate() {
        let input = input(&model, Path::new(image));
        let values = match &input.data {
            InputData::Values(values) => values.clone(),
            InputData::Pixels(pixels) => {
                let [_, height, width] = input.shape;
                let image = Image::new(width as u32, height as u32, pixels.clone()).unwrap();
                match host.apply(&image).data {
                    InputData::Values(values) => values,
                    InputData::Pixels(_) => unreachable!("host preprocessing normalises"),
                }
            }
        };
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensor = out.join(format!("{index}.f32"));
        fs_err::write(&tensor, bytes).unwrap();
        let Prediction::Label(Some(Label::Classification {
            logits: Some(logits),
            label,
            ..
        })) = model.predict(&input).unwrap()
        else {
            panic!("{image}: no classification with logits");
        };
        results.push(json!({
            "image": image,
            "input": tensor,
            "shape": input.shape,
            "label": label,
            "logits": logits,
        }));
    }
    json!({ "results": results })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("rate") => rate(&args[1..]),
        Some("logits") => logits(&args[1..]),
        _ => panic!("usage: device_probe rate|logits ... (see the file's docs)"),
    };
    println!("{result}");
}
