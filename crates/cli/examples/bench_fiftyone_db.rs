//! Benchmark: applying a model straight into FiftyOne's own database
//! (`fiftyone:NAME`), against FiftyOne's own `apply_model` into the same
//! dataset, in one run; and the write path alone (labels per second into
//! MongoDB) against FiftyOne's `set_values` of the same labels.
//! Run through `cargo xtask bench fiftyone-db`.
//!
//! FiftyOne and its bundled `mongod` come from `ZOO_BENCH_FIFTYONE` (a
//! Python with FiftyOne 1.22.1; with torch and torchvision for the
//! `apply_model` column: the oracle venv), else `ZOO_TEST_FIFTYONE_PYTHON`.
//! Weights are untrained (seeded) resnet18, served from loopback through
//! the registry's download path; FiftyOne's model is torchvision's resnet18
//! with random weights: speed does not depend on their values.
//!
//! Environment: `ZOO_BENCH_N` (images, default 256), `ZOO_BENCH_WRITE_N`
//! (samples of the write-path run, default 20,000), `ZOO_BENCH_ROUNDS`
//! (write-path rounds, medians reported; default 3).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;
#[path = "common/untrained.rs"]
mod untrained;

use std::process::Command;
use std::time::Instant;

use common::{cell, env_number, median, pictures};
use serde_json::{Value, json};
use untrained::UNTRAINED;
use zoo_fiftyone_db::{Connection, FiftyOne, ResultKind};
use zoo_model_core::{Detection, Label, Outcome};
use zoo_test_support::{FiftyOne as Driver, TestServer};

/// Makes dataset `name` of `paths`; answers where the database is.
const MAKE: &str = r#"
import fiftyone.core.odm as foo
dataset = fo.Dataset(args["name"])
dataset.add_samples([fo.Sample(filepath=p) for p in args["paths"]])
host, port = foo.get_db_conn().client.address
result = {"uri": "mongodb://%s:%d" % (host, port), "database": fo.config.database_name}
"#;

/// FiftyOne's own `apply_model` of torchvision's resnet18 (the config of
/// `xtask/bench/fiftyone_apply_bench.py`): `ragged_batches` unset (what a
/// user's config gets: FiftyOne runs one image at a time) or off (batches
/// of 16); seconds for the whole dataset after a warm-up on 16 samples.
const FIFTYONE_APPLY: &str = r#"
import time
try:
    import torch
    import fiftyone.utils.torch as fout
except ImportError:
    result = None
else:
    torch.set_num_threads(args["threads"])
    config = {
        "entrypoint_fcn": "torchvision.models.resnet.resnet18",
        "entrypoint_args": {"weights": None},
        "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
        "classes": ["c%d" % i for i in range(1000)],
        "image_min_dim": 224, "image_max_dim": 2048,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    }
    if args["batched"]:
        config["ragged_batches"] = False
    model = fout.TorchImageModel(fout.TorchImageModelConfig(config))
    dataset = fo.load_dataset(args["name"])
    dataset.limit(16).apply_model(model, args["field"] + "_warm", batch_size=16)
    started = time.perf_counter()
    dataset.apply_model(model, args["field"], batch_size=16)
    result = time.perf_counter() - started
"#;

/// FiftyOne's `set_values` of `n` classifications (with 10 logits) and of
/// `n` five-box detections; seconds for each.
const FIFTYONE_WRITE: &str = r#"
import time
dataset = fo.load_dataset(args["name"])
rng = np.random.default_rng(0)
n = len(dataset)
classifications = [fo.Classification(label="c%d" % (i % 10), confidence=0.5, logits=rng.standard_normal(10).astype(np.float32)) for i in range(n)]
detections = [fo.Detections(detections=[fo.Detection(label="d%d" % j, bounding_box=[0.1 * j, 0.1, 0.2, 0.3], confidence=0.5) for j in range(5)]) for i in range(n)]
started = time.perf_counter()
dataset.set_values("fo_cls", classifications)
classified = time.perf_counter() - started
started = time.perf_counter()
dataset.set_values("fo_det", detections)
result = [classified, time.perf_counter() - started]
"#;

fn python() -> Option<String> {
    ["ZOO_BENCH_FIFTYONE", "ZOO_TEST_FIFTYONE_PYTHON"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
}

/// zoo's write path: `n` samples' labels (made by `label`) in batches of
/// 64, every sample rewritten each round; the median of `rounds`, seconds.
fn write_seconds(
    fiftyone: &FiftyOne,
    name: &str,
    field: &str,
    rounds: usize,
    label: impl Fn(usize) -> Label,
) -> f64 {
    let mut dataset = fiftyone.dataset(name).unwrap();
    let mut times = Vec::new();
    for _ in 0..rounds {
        let samples = dataset
            .pending(field, ResultKind::Labels, true, &[])
            .unwrap();
        let outcomes: Vec<Outcome> = samples
            .iter()
            .enumerate()
            .map(|(index, sample)| Outcome::Labels {
                sample_id: sample.id,
                fields: vec![(field.to_owned(), Some(label(index)))],
            })
            .collect();
        let started = Instant::now();
        for batch in outcomes.chunks(64) {
            dataset.write_labels(batch).unwrap();
        }
        times.push(started.elapsed().as_secs_f64());
    }
    median(&mut times)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = &args[1];
    let Some(python) = python() else {
        println!(
            "skipped: no FiftyOne (set ZOO_BENCH_FIFTYONE to a Python with fiftyone==1.22.1, as `cargo xtask bench fiftyone-db` does)"
        );
        return;
    };
    let count = env_number("ZOO_BENCH_N", 256);
    let write_count = env_number(
        "ZOO_BENCH_WRITE_N",
        if std::env::var_os("ZOO_BENCH_SMOKE").is_some() {
            200
        } else {
            20_000
        },
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir().unwrap();
    let mut driver = Driver::start(&python);

    // The write path alone.
    let paths: Vec<String> = (0..write_count)
        .map(|index| format!("/bench/img_{index:06}.jpg"))
        .collect();
    let made = driver.run(MAKE, json!({"name": "bench-write", "paths": paths}));
    let uri = made["uri"].as_str().unwrap().to_owned();
    let database = made["database"].as_str().unwrap().to_owned();
    let fiftyone = FiftyOne::connect(Connection::new(&uri, &database)).unwrap();
    let classification = |index: usize| Label::Classification {
        label: format!("c{}", index % 10),
        confidence: Some(0.5),
        logits: Some((0..10).map(|k| (k as f32 - 4.5) * 0.25).collect()),
    };
    let detections = |_: usize| {
        Label::Detections(
            (0..5)
                .map(|j| Detection {
                    label: format!("d{j}"),
                    bounding_box: [0.1 * j as f64, 0.1, 0.2, 0.3],
                    confidence: Some(0.5),
                    mask: None,
                })
                .collect(),
        )
    };
    let rounds = env_number("ZOO_BENCH_ROUNDS", 3).max(1);
    let zoo_cls = write_seconds(&fiftyone, "bench-write", "zoo_cls", rounds, classification);
    let zoo_det = write_seconds(&fiftyone, "bench-write", "zoo_det", rounds, detections);
    let theirs = driver.run(FIFTYONE_WRITE, json!({"name": "bench-write"}));
    let (fo_cls, fo_det) = (theirs[0].as_f64().unwrap(), theirs[1].as_f64().unwrap());
    let n = write_count as f64;
    println!(
        "write path, {write_count} samples, zoo: batches of 64 through `Dataset::write_labels` (median of {rounds} rounds); FiftyOne: one `set_values`"
    );
    println!(
        "{:<28} {:>14} {:>14} {:>8}",
        "labels", "zoo labels/s", "FO labels/s", "zoo/FO"
    );
    for (what, ours, theirs) in [
        ("Classification (10 logits)", zoo_cls, fo_cls),
        ("Detections (5 boxes)", zoo_det, fo_det),
    ] {
        println!(
            "{what:<28} {:>14.0} {:>14.0} {:>8}",
            n / ours,
            n / theirs,
            cell(Some(theirs / ours), 2)
        );
    }
    println!(
        "  (Detections: {:.0} detection objects/s written by zoo)",
        5.0 * n / zoo_det
    );

    // End to end: the same images, zoo into `fiftyone:NAME` and FiftyOne's
    // own apply_model into the same dataset.
    let images = dir.path().join("images");
    pictures(&images, count, 640, 480);
    let paths: Vec<String> = (0..count)
        .map(|index| {
            images
                .join(format!("img_{index:05}.jpg"))
                .display()
                .to_string()
        })
        .collect();
    driver.run(MAKE, json!({"name": "bench-apply", "paths": paths}));
    let server = TestServer::start();
    let manifest = untrained::untrained_resnet18_manifest(dir.path(), &server);
    let zoo_command = |args: &[&str]| {
        let output = Command::new(zoo)
            .args(args)
            .env("ZOO_MODEL_ZOO_DIR", dir.path().join("zoo"))
            .env("ZOO_DATASETS_DIR", dir.path().join("datasets"))
            .env("ZOO_MANIFEST_PATHS", &manifest)
            .env("FIFTYONE_DATABASE_URI", &uri)
            .env("FIFTYONE_DATABASE_NAME", &database)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).unwrap_or(Value::Null)
    };
    zoo_command(&["models", "download", UNTRAINED, "--quiet"]);
    let started = Instant::now();
    let report = zoo_command(&[
        "models",
        "apply",
        UNTRAINED,
        "fiftyone:bench-apply",
        "zoo_pred",
        "--batch-size",
        "16",
        "--json",
        "--quiet",
    ]);
    let zoo_seconds = started.elapsed().as_secs_f64();
    assert_eq!(report["succeeded"], json!(count), "{report}");
    let mut fiftyone_run = |batched: bool, field: &str| {
        driver
            .run(
                FIFTYONE_APPLY,
                json!({"name": "bench-apply", "field": field, "batched": batched, "threads": threads}),
            )
            .as_f64()
    };
    let fo_default = fiftyone_run(false, "fo_default");
    let fo_batched = fiftyone_run(true, "fo_batched");
    let rate = |seconds: Option<f64>| seconds.map(|seconds| count as f64 / seconds);
    println!(
        "apply resnet18 (untrained) to {count} 640x480 JPEGs in a FiftyOne dataset, {threads} cores; zoo run: the apply call as `--json` times it (reading the samples, decode, forward, writes into MongoDB), as FiftyOne's columns time dataset.apply_model after a warm-up; zoo process: the whole `zoo models apply ... fiftyone:NAME` (start and model load too)"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "", "zoo run", "zoo process", "FO default", "FO batched", "zoo/FOdef", "zoo/FObat"
    );
    let ours = report["images_per_second"].as_f64().unwrap();
    println!(
        "{:<10} {:>12.1} {:>12.1} {:>12} {:>12} {:>10} {:>10}",
        "resnet18",
        ours,
        count as f64 / zoo_seconds,
        cell(rate(fo_default), 1),
        cell(rate(fo_batched), 1),
        cell(rate(fo_default).map(|theirs| ours / theirs), 2),
        cell(rate(fo_batched).map(|theirs| ours / theirs), 2),
    );
    if fo_default.is_none() {
        println!(
            "  (no FiftyOne apply_model column: this Python has no torch; use the oracle venv)"
        );
    }
}
