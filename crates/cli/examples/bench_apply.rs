//! Benchmark: `zoo models apply` with resnet18 on generated JPEGs, next to
//! zoo's model-only forward rate on inputs of the same size, PyTorch eager
//! on the same sizes, and FiftyOne's `apply_model` on the same image files,
//! all in one run; then the peak memory of apply on N and on 8 N images.
//! Run through `cargo xtask bench apply [--with-fiftyone]`.
//!
//! Weights are untrained (seeded) and served from loopback through the
//! registry's download path: speed does not depend on their values.
//!
//! Environment: `ZOO_BENCH_N` (images per size, default 256),
//! `ZOO_BENCH_ROUNDS` (interleaved rounds, medians reported; default 3),
//! `ZOO_BENCH_RSS_N` (the large memory run, default 2048),
//! `ZOO_BENCH_PYTHON` (a Python with torch and torchvision, for the eager
//! column), `ZOO_BENCH_FIFTYONE` and `ZOO_BENCH_FIFTYONE_SCRIPT` (a Python
//! with FiftyOne 1.22.1 and the anchor script, for the FiftyOne column).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;
#[path = "common/untrained.rs"]
mod untrained;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::{cell, env_number, median, pictures};
use serde_json::{Value, json};
use untrained::UNTRAINED;
use zoo_model_core::{Model, ModelSpec};
use zoo_test_support::TestServer;
use zoo_torch_backend::TorchImageModel;

/// PyTorch eager (torchvision resnet18, `inference_mode`, NCHW as users run
/// it) on `count` random inputs of this size, in batches of `batch`.
fn eager_rate(width: u32, height: u32, count: usize, batch: usize, threads: usize) -> Option<f64> {
    let python = std::env::var("ZOO_BENCH_PYTHON").ok()?;
    let script = "import sys, time, torch, torchvision\ntorch.set_num_threads(int(sys.argv[5]))\nm = torchvision.models.resnet18(weights=None).eval()\nw, h, n, b = map(int, sys.argv[1:5])\nx = torch.randn(b, 3, h, w)\nwith torch.inference_mode():\n    m(x)\n    t = time.perf_counter(); done = 0\n    while done < n:\n        m(x[: min(b, n - done)]); done += b\n    print(n / (time.perf_counter() - t))\n";
    let threads = threads.to_string();
    let output = Command::new(python)
        .args(["-c", script])
        .args([width, height].map(|v| v.to_string()))
        .args([count, batch].map(|v| v.to_string()))
        .arg(&threads)
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// FiftyOne's `dataset.apply_model` (default config: ragged, batch 1 at
/// native size) on the same files, through the anchor script.
fn fiftyone_rate(dir: &Path, count: usize, width: u32, height: u32) -> Option<f64> {
    let python = std::env::var("ZOO_BENCH_FIFTYONE").ok()?;
    let script = std::env::var("ZOO_BENCH_FIFTYONE_SCRIPT").ok()?;
    let out = dir.join(format!("fiftyone-{width}x{height}.json"));
    let status = Command::new(python)
        .arg(script)
        .args(["--n", &count.to_string()])
        .args([
            "--width",
            &width.to_string(),
            "--height",
            &height.to_string(),
        ])
        .arg("--images-dir")
        .arg(dir.join(format!("img{width}x{height}")))
        .args(["--only", "fo_apply_default", "--json-out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        println!("  (the FiftyOne run failed: {status})");
        return None;
    }
    let results: Value = serde_json::from_slice(&fs_err::read(&out).ok()?).ok()?;
    results["benches"]["fo_apply_default"]["images_per_s"].as_f64()
}

fn config() -> Value {
    json!({
        "entrypoint_fcn": "torchvision.models.resnet.resnet18",
        "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
        "labels_path": "{{eta-resources}}/imagenet-labels-no-background.txt",
        "image_min_dim": 224, "image_max_dim": 2048,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "embeddings_layer": "<fc", "device": "cpu"
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = &args[1];
    let count = env_number("ZOO_BENCH_N", 256);
    let rounds = env_number("ZOO_BENCH_ROUNDS", 3).max(1);
    let rss_count = env_number("ZOO_BENCH_RSS_N", 2048);
    let dir = tempfile::tempdir().unwrap();
    // The built-in entry checks torchvision's sha256 prefix, which seeded
    // weights cannot match: the same entry under another name downloads
    // them from loopback through the same registry path.
    let server = TestServer::start();
    let manifest = untrained::untrained_resnet18_manifest(dir.path(), &server);
    let weights = dir.path().join("untrained-resnet18.safetensors");
    let env = [
        (
            "ZOO_MODEL_ZOO_DIR",
            dir.path().join("zoo").display().to_string(),
        ),
        (
            "ZOO_DATASETS_DIR",
            dir.path().join("datasets").display().to_string(),
        ),
        ("ZOO_MANIFEST_PATHS", manifest.display().to_string()),
    ];
    let zoo_command = |args: &[&str]| {
        let mut command = Command::new(zoo);
        command.args(args).envs(env.iter().map(|(k, v)| (*k, v)));
        command
    };
    let zoo_json = |args: &[&str]| -> Value {
        let output = zoo_command(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    };
    zoo_json(&["models", "download", UNTRAINED, "--quiet"]);

    let spec = ModelSpec {
        kind: "fiftyone.zoo.models.torch.TorchvisionImageModel".into(),
        config: config().as_object().unwrap().clone(),
        model_path: Some(weights.clone()),
    };
    // Model only, run the way apply runs it: as many copies as the model
    // prefers (`Model::workers`), each on its own thread with its share of
    // libtorch's threads.
    // libtorch's threads before the copies split them (the eager column
    // gets the same count).
    let threads = zoo_torch_backend::RuntimeInfo::detect().threads;
    let mut models = vec![TorchImageModel::from_spec(&spec).unwrap()];
    let workers = models[0].workers();
    for _ in 1..workers {
        models.push(TorchImageModel::from_spec(&spec).unwrap());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "resnet18 (untrained weights), apply batch size 16, N={count} JPEGs per size, {cores} cores, libtorch intra-op threads {threads}, split over {workers} model copies (workers) in apply and in the model-only loop"
    );
    println!(
        "zoo figures: medians of {rounds} interleaved rounds; apply rate = images / the apply call's wall time (decode, preprocess, forward, SQLite), as FiftyOne's column times dataset.apply_model"
    );
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "size",
        "apply",
        "1w piped",
        "1w serial",
        "model",
        "apl/mdl",
        "workers x",
        "eager b1",
        "eager b16",
        "mdl/eagr",
        "FiftyOne",
        "zoo/FO"
    );
    let mut folders = Vec::new();
    for (width, height) in [(640u32, 480u32), (224, 224)] {
        let images = dir.path().join(format!("img{width}x{height}"));
        pictures(&images, count, width, height);
        let folder = images.display().to_string();
        // The default (`--workers auto`, `--pipeline auto`), then one worker
        // with decoding pipelined and serial.
        let apply = |extra: &[&str]| {
            let mut args = vec![
                "models",
                "apply",
                UNTRAINED,
                &folder,
                "pred",
                "--batch-size",
                "16",
                "--overwrite",
                "--json",
                "--quiet",
            ];
            args.extend_from_slice(extra);
            zoo_json(&args)["images_per_second"].as_f64().unwrap()
        };
        let image = zoo_datasets::decode_image(&images.join("img_00000.jpg")).unwrap();
        let input = models[0].preprocessor().preprocess(image).unwrap();
        let batch: Vec<_> = (0..16).map(|_| input.clone()).collect();
        for model in &mut models {
            model.set_workers(workers);
            model.predict_all(&batch).unwrap();
        }
        let mut model_only = || {
            let next = AtomicUsize::new(0);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for model in models.iter_mut() {
                    let (next, batch) = (&next, &batch);
                    scope.spawn(move || {
                        loop {
                            let done = next.fetch_add(16, Ordering::Relaxed);
                            if done >= count {
                                break;
                            }
                            let take = (count - done).min(16);
                            model.predict_all(&batch[..take]).unwrap();
                        }
                    });
                }
            });
            count as f64 / started.elapsed().as_secs_f64()
        };
        let mut rounds_of: [Vec<f64>; 4] = Default::default();
        for _ in 0..rounds {
            rounds_of[0].push(apply(&[]));
            rounds_of[1].push(apply(&["--workers", "1", "--pipeline", "on"]));
            rounds_of[2].push(apply(&["--workers", "1", "--pipeline", "off"]));
            rounds_of[3].push(model_only());
        }
        let [applied, piped, serial, model_rate] = rounds_of.map(|mut rates| median(&mut rates));
        let eager_count = if width * height > 224 * 224 {
            64
        } else {
            count
        };
        let eager_1 = eager_rate(width, height, eager_count, 1, threads);
        let eager_16 = eager_rate(width, height, eager_count, 16, threads);
        let eager_best = match (eager_1, eager_16) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let fiftyone = fiftyone_rate(dir.path(), count, width, height);
        println!(
            "{:<8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.3} {:>8.3} {:>9} {:>9} {:>9} {:>9} {:>8}",
            format!("{width}x{height}"),
            applied,
            piped,
            serial,
            model_rate,
            applied / model_rate,
            applied / piped.max(serial),
            cell(eager_1, 2),
            cell(eager_16, 2),
            cell(eager_best.map(|eager| model_rate / eager), 3),
            cell(fiftyone, 2),
            cell(fiftyone.map(|fiftyone| applied / fiftyone), 3),
        );
        folders.push(images);
    }
    println!(
        "apply = `zoo models apply` as it runs by default ({workers} workers); 1w piped/serial = `--workers 1 --pipeline on/off`; workers x = apply / the better 1-worker column; model = zoo's predict_all on preprocessed inputs of that size, {workers} copies on their own threads as apply runs them (batches of 16, split on the CPU as apply splits them); eager b1/b16 = PyTorch resnet18 on the same sizes, {} inputs at 640x480; mdl/eagr = model / the better eager column; FiftyOne = dataset.apply_model, default config (batch 1 at native size), same files",
        64.min(count)
    );

    // Peak memory: the same apply on N and on `rss_count` 224x224 images.
    let large = dir.path().join("rss");
    pictures(&large, rss_count, 224, 224);
    let small = folders[1].display().to_string();
    let large = large.display().to_string();
    // zoo reports its own peak (VmHWM); a parent's wait4 figure would
    // include this benchmark's own memory, inherited through the spawn.
    let rss = |folder: &str| {
        zoo_json(&[
            "models",
            "apply",
            UNTRAINED,
            folder,
            "pred",
            "--overwrite",
            "--json",
            "--quiet",
        ])["peak_rss_bytes"]
            .as_f64()
            .unwrap()
            / 1e6
    };
    let (mut at_small, mut at_large) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        at_small.push(rss(&small));
        at_large.push(rss(&large));
    }
    let runs = |values: &[f64]| {
        values
            .iter()
            .map(|value| format!("{value:.1}"))
            .collect::<Vec<_>>()
            .join("/")
    };
    let (small_runs, large_runs) = (runs(&at_small), runs(&at_large));
    let (at_small, at_large) = (median(&mut at_small), median(&mut at_large));
    println!(
        "peak RSS of `zoo models apply` (its VmHWM, 224x224, median of {rounds}): {count} images {at_small:.1} MB ({small_runs}), {rss_count} images {at_large:.1} MB ({large_runs}), ratio {:.3}",
        at_large / at_small
    );
}
