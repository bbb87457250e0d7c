//! Benchmark: `zoo models apply` throughput with resnet18 (batch 16) on
//! generated JPEGs, next to the model-only forward rate on inputs of the
//! same size, measured in the same run; plus the apply pipeline with
//! decoding done serially. Run through `cargo xtask bench apply`.
//!
//! Weights are untrained (seeded) and served from loopback through the
//! registry's download path: speed does not depend on their values.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use zoo_model_core::{Model, ModelSpec};
use zoo_test_support::TestServer;
use zoo_torch_backend::TorchImageModel;

fn pictures(dir: &Path, count: usize, width: u32, height: u32) {
    fs_err::create_dir_all(dir).unwrap();
    for index in 0..count {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x + index as u32) as u8,
                (y * 2) as u8,
                ((x * y) >> 3) as u8,
            ])
        });
        image.save(dir.join(format!("img{index:04}.jpg"))).unwrap();
    }
}

/// PyTorch eager on the same input size and count, if a Python with torch
/// and torchvision is given in `ZOO_BENCH_PYTHON`.
fn eager_rate(width: u32, height: u32, count: usize) -> Option<f64> {
    let python = std::env::var("ZOO_BENCH_PYTHON").ok()?;
    let script = "import sys, time, torch, torchvision\ntorch.set_num_threads(int(sys.argv[4]))\nm = torchvision.models.resnet18(weights=None).eval()\nw, h, n = map(int, sys.argv[1:4])\nx = torch.randn(16, 3, h, w)\nwith torch.inference_mode():\n    m(x)\n    t = time.time(); done = 0\n    while done < n:\n        m(x[: min(16, n - done)]); done += 16\n    print(n / (time.time() - t))\n";
    let threads = zoo_torch_backend::RuntimeInfo::detect().threads.to_string();
    let output = Command::new(python)
        .args([
            "-c",
            script,
            &width.to_string(),
            &height.to_string(),
            &count.to_string(),
            &threads,
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

fn config() -> Value {
    json!({
        "entrypoint_fcn": "torchvision.models.resnet.resnet18",
        "labels_path": "{{eta-resources}}/imagenet-labels-no-background.txt",
        "image_min_dim": 224, "image_max_dim": 2048,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "embeddings_layer": "<fc", "device": "cpu"
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = &args[1];
    let sizes: Vec<(u32, u32, usize)> = vec![
        (640, 480, args.get(2).map_or(96, |n| n.parse().unwrap())),
        (224, 224, args.get(3).map_or(256, |n| n.parse().unwrap())),
    ];
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("resnet18.safetensors");
    zoo_torch_backend::write_untrained_weights("torchvision.models.resnet.resnet18", &weights, 0)
        .unwrap();
    let server = TestServer::start();
    server.file(
        "/models/resnet18-5c106cde.pth",
        fs_err::read(&weights).unwrap(),
    );
    let env = [
        (
            "ZOO_MODEL_ZOO_DIR",
            dir.path().join("zoo").display().to_string(),
        ),
        (
            "ZOO_DATASETS_DIR",
            dir.path().join("datasets").display().to_string(),
        ),
        (
            "ZOO_DOWNLOAD_MIRRORS",
            format!(
                "https://download.pytorch.org/models/={}",
                server.url("/models/")
            ),
        ),
    ];
    let zoo_json = |args: &[&str]| -> Value {
        let output = Command::new(zoo)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    };
    zoo_json(&["models", "download", "resnet18-imagenet-torch", "--quiet"]);

    let spec = ModelSpec {
        kind: "fiftyone.zoo.models.torch.TorchvisionImageModel".into(),
        config: config().as_object().unwrap().clone(),
        model_path: Some(weights.clone()),
    };
    let mut model = TorchImageModel::from_spec(&spec).unwrap();
    println!(
        "resnet18, batch 16, libtorch intra-op threads {}, {} cores",
        zoo_torch_backend::RuntimeInfo::detect().threads,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<10} {:>6} {:>14} {:>14} {:>14} {:>9} {:>9} {:>12} {:>9}",
        "size",
        "N",
        "piped img/s",
        "serial img/s",
        "model img/s",
        "auto/mdl",
        "pipe gain",
        "eager img/s",
        "mdl/eager"
    );
    for (width, height, count) in sizes {
        let images = dir.path().join(format!("img{width}x{height}"));
        pictures(&images, count, width, height);
        let folder = images.display().to_string();
        // `--pipeline on`, `off`, then `auto` (the default) as this machine picks it.
        let rate = |pipeline: &str| {
            let run = zoo_json(&[
                "models",
                "apply",
                "resnet18-imagenet-torch",
                &folder,
                "pred",
                "--batch-size",
                "16",
                "--overwrite",
                "--json",
                "--quiet",
                "--pipeline",
                pipeline,
            ]);
            run["images_per_second"].as_f64().unwrap()
        };
        let (apply_rate, serial_rate, auto_rate) = (rate("on"), rate("off"), rate("auto"));
        // Model only: the same preprocessed input, batches of 16, same count.
        let image = zoo_datasets::decode_image(&images.join("img0000.jpg")).unwrap();
        let input = model.preprocessor().preprocess(image).unwrap();
        let batch: Vec<_> = (0..16).map(|_| input.clone()).collect();
        model.predict_all(&batch).unwrap();
        let started = Instant::now();
        let mut done = 0;
        while done < count {
            let take = (count - done).min(16);
            model.predict_all(&batch[..take]).unwrap();
            done += take;
        }
        let model_rate = count as f64 / started.elapsed().as_secs_f64();
        let eager = eager_rate(width, height, count);
        println!(
            "{:<10} {:>6} {:>14.2} {:>14.2} {:>14.2} {:>9.3} {:>9.3} {:>12} {:>9}",
            format!("{width}x{height}"),
            count,
            apply_rate,
            serial_rate,
            model_rate,
            auto_rate / model_rate,
            apply_rate / serial_rate,
            eager.map_or_else(|| "-".to_owned(), |rate| format!("{rate:.2}")),
            eager.map_or_else(
                || "-".to_owned(),
                |rate| format!("{:.3}", model_rate / rate)
            ),
        );
    }
}
