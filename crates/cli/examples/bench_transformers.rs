//! Benchmark: Hugging Face transformers image classifiers (ConvNeXt tiny,
//! ViT base and EfficientNet-B0 at 224, full size, seeded weights) and the
//! zero-shot SigLIP 2 base at 224 (eight classes) on the same 640x480
//! JPEGs in one run: zoo's pipeline (decode, preprocess and forward through
//! the zoo library, batches of [`BATCH`]), zoo model-only (`predict_all` on
//! preprocessed batches), transformers eager (its own model forward under
//! `torch.inference_mode()` on the processor's output, batched) and
//! FiftyOne 1.22.1's `load_zoo_model(NAME, name_or_path=REPO).apply_model`;
//! the top labels of all must be equal. Run through
//! `cargo xtask bench transformers`.
//!
//! Weights: `xtask/bench/transformers_bench.py` (the PyTorch/FiftyOne side,
//! one Python process) writes the seeded repos with transformers'
//! `from_config(...).save_pretrained(...)` into `ZOO_BENCH_WEIGHTS` once.
//! Without `ZOO_BENCH_PYTHON` (CI's venvs have no torch), or with
//! `ZOO_BENCH_SMOKE`, only the zoo
//! columns run, on the tiny committed repos of zoo-torch-backend's
//! fixtures, and the Python peers are skipped.
//!
//! Environment: `ZOO_BENCH_PYTHON` (a Python with torch, transformers and
//! FiftyOne 1.22.1), `ZOO_BENCH_TRANSFORMERS_SCRIPT` (the Python side),
//! `ZOO_BENCH_WEIGHTS` (the repos), `ZOO_BENCH_N` (images, default 32),
//! `ZOO_BENCH_ROUNDS` (default 3).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{cell, env_number, median, pictures};
use serde_json::{Value, json};
use zoo_model_core::{Input, Label, Model, ModelSpec, Prediction};
use zoo_torch_backend::{TorchTransformerModel, TorchZeroShotTransformerModel};

/// The batch size of every column (`zoo models apply`'s default).
const BATCH: usize = 16;

/// The zero-shot classes (`xtask/bench/transformers_bench.py`'s `CLASSES`).
const CLASSES: [&str; 8] = [
    "cat", "dog", "bird", "car", "tree", "house", "person", "boat",
];

/// The benchmarked models: the zoo name, the tiny committed fixture's
/// folder (under zoo-torch-backend's `tests/fixtures`), whether it is
/// zero-shot and the manifest's config.
fn models() -> Vec<(&'static str, &'static str, bool, Value)> {
    vec![
        (
            "convnext-tiny-224-torch",
            "transformers/convnext",
            false,
            json!({"name_or_path": "facebook/convnext-tiny-224", "channels_last": false,
                   "transformers_processor_kwargs": {"return_tensors": "pt"}}),
        ),
        (
            "vit-base-patch16-224-imagenet-torch",
            "transformers/vit",
            false,
            json!({}),
        ),
        (
            "efficientnet-b0-imagenet-torch",
            "transformers/efficientnet",
            false,
            json!({"name_or_path": "google/efficientnet-b0", "channels_last": false,
                   "transformers_processor_kwargs": {"return_tensors": "pt"}}),
        ),
        (
            "siglip-base-patch16-224-torch",
            "zero_shot/siglip",
            true,
            json!({"name_or_path": "google/siglip2-base-patch16-224",
                   "transformers_processor_kwargs": {"padding": "max_length", "max_length": 64},
                   "classes": CLASSES}),
        ),
    ]
}

fn load(repo: &Path, zero_shot: bool, config: Value) -> Box<dyn Model> {
    let Value::Object(config) = config else {
        panic!("a config is an object");
    };
    let class = if zero_shot {
        "FiftyOneZeroShotTransformerForImageClassification"
    } else {
        "FiftyOneTransformerForImageClassification"
    };
    let spec = ModelSpec {
        kind: format!("fiftyone.utils.transformers.{class}"),
        config,
        model_path: Some(repo.to_owned()),
    };
    if zero_shot {
        Box::new(TorchZeroShotTransformerModel::from_spec(&spec).unwrap())
    } else {
        Box::new(TorchTransformerModel::from_spec(&spec).unwrap())
    }
}

fn labels(predictions: Vec<Prediction>) -> Vec<String> {
    predictions
        .into_iter()
        .map(|prediction| match prediction {
            Prediction::Label(Some(Label::Classification { label, .. })) => label,
            other => panic!("not a classification: {other:?}"),
        })
        .collect()
}

/// zoo's pipeline: decode, preprocess and forward every file, in batches.
fn pipeline(model: &mut dyn Model, files: &[PathBuf]) -> (f64, Vec<String>) {
    let preprocessor = model.preprocessor();
    let start = Instant::now();
    let mut found = Vec::new();
    for chunk in files.chunks(BATCH) {
        let inputs: Vec<Input> = chunk
            .iter()
            .map(|file| {
                preprocessor
                    .preprocess(zoo_datasets::decode_image(file).unwrap())
                    .unwrap()
            })
            .collect();
        found.extend(labels(model.predict_all(&inputs).unwrap()));
    }
    (files.len() as f64 / start.elapsed().as_secs_f64(), found)
}

/// zoo model-only: `predict_all` on the preprocessed batches.
fn model_only(model: &mut dyn Model, inputs: &[Input]) -> f64 {
    let start = Instant::now();
    for chunk in inputs.chunks(BATCH) {
        model.predict_all(chunk).unwrap();
    }
    inputs.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let smoke = std::env::var_os("ZOO_BENCH_SMOKE").is_some();
    let count = env_number("ZOO_BENCH_N", 32);
    let rounds = env_number("ZOO_BENCH_ROUNDS", 3);
    let dir = std::env::temp_dir().join(format!("zoo-bench-transformers-{count}"));
    pictures(&dir, count, 640, 480);
    let mut files: Vec<PathBuf> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jpg"))
        .collect();
    files.sort();
    files.truncate(count);

    let python = std::env::var_os("ZOO_BENCH_PYTHON");
    let weights = std::env::var_os("ZOO_BENCH_WEIGHTS").map(PathBuf::from);
    let peers: Option<Value> = match (&python, &weights) {
        (Some(python), Some(weights)) if !smoke => {
            let script = std::env::var_os("ZOO_BENCH_TRANSFORMERS_SCRIPT").unwrap();
            let names: Vec<&str> = models().iter().map(|model| model.0).collect();
            let fixtures =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../torch-backend/tests/fixtures");
            let output = Command::new(python)
                .arg(script)
                .arg(weights)
                .arg(&dir)
                .arg(names.join(","))
                .arg(rounds.to_string())
                .arg(BATCH.to_string())
                .arg(fixtures)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "the Python side failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let text = String::from_utf8(output.stdout).unwrap();
            let line = text.lines().find_map(|line| line.strip_prefix("@@ "));
            Some(serde_json::from_str(line.expect("the Python side's reply")).unwrap())
        }
        _ => {
            println!(
                "(transformers eager and FiftyOne skipped: smoke mode, or no ZOO_BENCH_PYTHON with torch)"
            );
            None
        }
    };

    println!(
        "| model | N | zoo pipeline | zoo model-only | eager (forward) | eager (with processor) | FiftyOne apply | zoo/FiftyOne | model-only/eager forward | labels equal |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, fixture, zero_shot, config) in models() {
        let repo = match &peers {
            Some(peers) => PathBuf::from(peers[name]["repo"].as_str().unwrap()),
            None => Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../torch-backend/tests/fixtures")
                .join(fixture),
        };
        let mut model = load(&repo, zero_shot, config);
        let model = model.as_mut();
        let preprocessor = model.preprocessor();
        let inputs: Vec<Input> = files
            .iter()
            .map(|file| {
                preprocessor
                    .preprocess(zoo_datasets::decode_image(file).unwrap())
                    .unwrap()
            })
            .collect();
        // Warm-up: one batch.
        model
            .predict_all(&inputs[..inputs.len().min(BATCH)])
            .unwrap();
        let (mut pipeline_rates, mut model_rates) = (Vec::new(), Vec::new());
        let mut ours = Vec::new();
        for _ in 0..rounds {
            let (rate, found) = pipeline(model, &files);
            pipeline_rates.push(rate);
            ours = found;
            model_rates.push(model_only(model, &inputs));
        }
        let zoo = median(&mut pipeline_rates);
        let only = median(&mut model_rates);
        let peer = peers.as_ref().map(|peers| &peers[name]);
        let rate = |key: &str| peer.map(|peer| peer[key].as_f64().unwrap());
        let same = peer.map(|peer| {
            let equal = |key: &str| {
                let theirs: Vec<&str> = peer[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|label| label.as_str().unwrap())
                    .collect();
                theirs == ours
            };
            equal("eager_labels") && equal("fiftyone_labels")
        });
        if let Some(false) = same {
            println!("{name}: labels differ: zoo {ours:?}, peers {peer:?}");
        }
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            files.len(),
            cell(Some(zoo), 1),
            cell(Some(only), 1),
            cell(rate("eager_forward"), 1),
            cell(rate("eager"), 1),
            cell(rate("fiftyone"), 1),
            cell(rate("fiftyone").map(|theirs| zoo / theirs), 2),
            cell(rate("eager_forward").map(|theirs| only / theirs), 2),
            same.map_or("-".into(), |same| same.to_string()),
        );
        if smoke {
            assert!(!ours.is_empty(), "{name}: no labels");
        }
    }
    println!(
        "img/s, medians of {rounds} rounds, batch {BATCH}, after a warm-up batch. zoo pipeline = decode, preprocess and predict_all through the zoo library in one process (no SQLite); model-only = predict_all on preprocessed batches; eager (forward) = the transformers model's forward under inference_mode on the processor's batch; eager (with processor) adds PIL decoding and the processor; FiftyOne = dataset.apply_model(load_zoo_model(NAME, name_or_path=REPO), batch_size={BATCH}); SigLIP 2: eight classes, its eager forward is SiglipModel on the class prompts and the images, as FiftyOne runs it"
    );
}
