//! Benchmark: `zoo models apply` on a hosted `TorchImageModel` (resnet18
//! with seeded weights, from the torch test source, in the model host)
//! against FiftyOne's own `dataset.apply_model` on the same model and the
//! same image files, interleaved round by round in one run; plus where the
//! host's time went (`ZOO_LOG=zoo_python_host=info`: zoo's time in its
//! requests, the worker's time in FiftyOne's DataLoader work, how much of
//! it `predict_all` waited for, its time in `predict_all`, and the
//! boundary's own cost).
//! Run through `cargo xtask bench hosted`.
//!
//! Two configurations: FiftyOne's resnet18-imagenet-torch transforms
//! (`image_min_dim` 224, `image_max_dim` 2048: ragged, so both sides run
//! one image per forward), and `image_size` [224, 224] (not ragged:
//! batches of 16 on both sides).
//!
//! Environment: `ZOO_BENCH_PYTHON` (required: a Python with torch,
//! torchvision and FiftyOne 1.22.1, the oracle venv), `ZOO_BENCH_N`
//! (images, default 256), `ZOO_BENCH_ROUNDS` (default 3), `ZOO_BENCH_SIDE`
//! (default 224), `ZOO_BENCH_CONFIGS` (a comma-separated subset of
//! `ragged,image_size`; default both).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use image::ImageEncoder;
use serde_json::{Value, json};
use zoo_test_support::{
    Archive, FiftyOne, HOSTED_TORCH_SOURCE, MongoServer, Response, TestServer,
    hosted_torch_manifest,
};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Smooth random pictures with mild noise, JPEG quality 90.
fn pictures(dir: &Path, count: usize, side: u32) -> Vec<String> {
    fs_err::create_dir_all(dir).unwrap();
    (0..count)
        .map(|index| {
            let path = dir.join(format!("img_{index:05}.jpg"));
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
                image::imageops::resize(&low, side, side, image::imageops::FilterType::CatmullRom);
            for value in picture.iter_mut() {
                let noise = (next() % 17) as i16 - 8;
                *value = (*value as i16 + noise).clamp(0, 255) as u8;
            }
            let file = std::io::BufWriter::new(fs_err::File::create(&path).unwrap());
            image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
                .write_image(&picture, side, side, image::ExtendedColorType::Rgb8)
                .unwrap();
            path.display().to_string()
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The `key=value` fields of the host's timing log lines, summed over
/// hosts: requests, feed, feed wait, predict, boundary seconds.
fn host_timing(stderr: &str) -> Option<(f64, f64, f64, f64, f64)> {
    let mut sums = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut found = false;
    for line in stderr
        .lines()
        .filter(|line| line.contains("model host timing"))
    {
        found = true;
        for field in line.split_whitespace() {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            match key {
                "request_seconds" => sums.0 += value,
                "feed_seconds" => sums.1 += value,
                "feed_wait_seconds" => sums.2 += value,
                "model_seconds" => sums.3 += value,
                "boundary_seconds" => sums.4 += value,
                _ => {}
            }
        }
    }
    found.then_some(sums)
}

/// FiftyOne's side: the same source's model, loaded once per
/// configuration; each round times `apply_model` alone. (The driver runs
/// each snippet in a fresh scope: what rounds share hangs on `fo`.)
const FIFTYONE_SETUP: &str = r#"
import importlib.util, time
spec = importlib.util.spec_from_file_location("hosted_torch_bench", args["init"])
source = importlib.util.module_from_spec(spec)
spec.loader.exec_module(source)
path = args["dir"] + "/weights.txt"
source.download_model("zoo-test/resnet18", path)
fo.zoo_bench_models = {
    name: source.load_model("zoo-test/resnet18", path, **kwargs)
    for name, kwargs in args["configs"].items()
}
fo.zoo_bench_dataset = fo.Dataset()
fo.zoo_bench_dataset.add_samples([fo.Sample(filepath=p) for p in args["images"]])
import torch
result = {"threads": torch.get_num_threads()}
"#;

const FIFTYONE_ROUND: &str = r#"
import time
started = time.perf_counter()
fo.zoo_bench_dataset.apply_model(fo.zoo_bench_models[args["config"]], "fo", batch_size=16)
result = time.perf_counter() - started
"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = &args[1];
    let Ok(python) = std::env::var("ZOO_BENCH_PYTHON") else {
        println!(
            "hosted: skipped (set ZOO_BENCH_PYTHON to a Python with torch, torchvision and fiftyone 1.22.1; `cargo xtask bench hosted` uses the oracle venv)"
        );
        return;
    };
    let count = env_number("ZOO_BENCH_N", 256);
    let rounds = env_number("ZOO_BENCH_ROUNDS", 3).max(1);
    let side = env_number("ZOO_BENCH_SIDE", 224) as u32;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join(format!("img{side}"));
    let images = pictures(&folder, count, side);
    let folder = folder.display().to_string();

    let server = TestServer::start();
    let archive = Archive::new()
        .file("manifest.json", hosted_torch_manifest().to_string())
        .file("__init__.py", HOSTED_TORCH_SOURCE);
    server.route("/source.tar.gz", Response::ok(archive.to_tar_gz()));
    let env = [
        (
            "ZOO_MODEL_ZOO_DIR",
            dir.path().join("zoo").display().to_string(),
        ),
        (
            "ZOO_DATASETS_DIR",
            dir.path().join("datasets").display().to_string(),
        ),
        ("ZOO_PYTHON", python.clone()),
        ("ZOO_LOG", "zoo_python_host=info".to_owned()),
    ];
    let zoo_run = |args: &[&str]| {
        let output = Command::new(zoo)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "zoo {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    zoo_run(&[
        "models",
        "register-source",
        &server.url("/source.tar.gz"),
        "--trust",
    ]);
    zoo_run(&["models", "download", "zoo-test/resnet18"]);

    let wanted = std::env::var("ZOO_BENCH_CONFIGS").unwrap_or_default();
    let configs: Vec<(&str, Value)> = [
        ("ragged", json!({"num_classes": 1000})),
        (
            "image_size",
            json!({"num_classes": 1000, "image_size": [224, 224]}),
        ),
    ]
    .into_iter()
    .filter(|(name, _)| wanted.is_empty() || wanted.split(',').any(|want| want.trim() == *name))
    .collect();
    // FiftyOne's private database service is shared by every FiftyOne
    // process of the machine and ends with the one that started it: the
    // bench runs FiftyOne on a mongod of its own.
    let mongo = MongoServer::start(&python);
    let mut fiftyone = FiftyOne::start_on(&python, &mongo.uri);
    fs_err::write(dir.path().join("__init__.py"), HOSTED_TORCH_SOURCE).unwrap();
    let setup = fiftyone.run(
        FIFTYONE_SETUP,
        json!({
            "init": dir.path().join("__init__.py"),
            "dir": dir.path(),
            "images": images,
            "configs": configs.iter().map(|(name, kwargs)| (name.to_string(), kwargs.clone())).collect::<serde_json::Map<_, _>>(),
        }),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "hosted resnet18 (seeded weights, 1000 classes), {count} JPEGs {side}x{side}, batch size 16, {cores} cores; torch threads in FiftyOne's process {}, in the host its default; medians of {rounds} interleaved rounds",
        setup["threads"]
    );
    println!(
        "{:<11} {:>8} {:>8} {:>8} {:>7} {:>9} {:>8} {:>9} {:>8} {:>8} {:>9}",
        "config",
        "zoo run",
        "zoo cmd",
        "FiftyOne",
        "FO/zoo",
        "requests",
        "feed",
        "feed wait",
        "predict",
        "boundary",
        "bnd/run"
    );
    for (name, kwargs) in &configs {
        let mut columns: [Vec<f64>; 9] = Default::default();
        let mut forwards = 0.0;
        let kwargs: Vec<String> = kwargs
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        for _ in 0..rounds {
            let mut command = vec![
                "models",
                "apply",
                "zoo-test/resnet18",
                &folder,
                "pred",
                "-b",
                "16",
                "--overwrite",
                "--json",
                "--quiet",
                "--workers",
                "1",
            ];
            for kwarg in &kwargs {
                command.extend_from_slice(&["-k", kwarg]);
            }
            let started = Instant::now();
            let output = zoo_run(&command);
            let whole = started.elapsed().as_secs_f64();
            let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            let (request, feed, feed_wait, model, boundary) = host_timing(&stderr)
                .unwrap_or_else(|| panic!("no timing line from the host: {stderr}"));
            let run = summary["seconds"].as_f64().unwrap();
            forwards = summary["forwards"].as_f64().unwrap_or_default();
            let theirs = fiftyone
                .run(FIFTYONE_ROUND, json!({"config": name}))
                .as_f64()
                .unwrap();
            println!(
                "            round: zoo run {run:.2} s (command {whole:.2} s), FiftyOne {theirs:.2} s; host: requests {request:.2} s, feed {feed:.2} s (waited for {feed_wait:.2} s), predict {model:.2} s, boundary {boundary:.3} s"
            );
            for (column, value) in columns.iter_mut().zip([
                run,
                whole,
                theirs,
                theirs / run,
                request,
                feed,
                feed_wait,
                model,
                boundary,
            ]) {
                column.push(value);
            }
        }
        let [
            run,
            whole,
            theirs,
            ratio,
            request,
            feed,
            feed_wait,
            model,
            boundary,
        ] = columns.map(|mut values| median(&mut values));
        println!(
            "{:<11} {:>8.2} {:>8.2} {:>8.2} {:>7.3} {:>9.2} {:>8.2} {:>9.2} {:>8.2} {:>8.3} {:>8.2}%",
            name,
            run,
            whole,
            theirs,
            ratio,
            request,
            feed,
            feed_wait,
            model,
            boundary,
            100.0 * boundary / run,
        );
        println!("            ({forwards} forward calls per zoo run)");
    }
    println!(
        "zoo run = the apply's own seconds (`--json` `seconds`: decode, requests to the host, SQLite; the host already loaded); zoo cmd = the whole `zoo models apply` process (with starting Python, importing torch and FiftyOne, load_model); FiftyOne = dataset.apply_model alone (model loaded, DataLoader path); FO/zoo = per-round ratio, >= 1 means zoo is as fast or faster; requests = zoo's seconds in its calls to the host (sending batches, waiting, reading answers); feed = the worker's seconds in FiftyOne's DataLoader work (GetItem: PIL image, transforms, collate), on its intake thread while the model runs the batch before; feed wait = the part of it predict_all waited for; predict = the worker's seconds in predict_all; boundary = the crossing's own seconds, measured piece by piece (zoo writing pixels and reading answers, the worker making arrays and serialising labels); bnd/run = boundary / zoo run"
    );
}
