//! The model host with torch models (issue 13, item a) and with several
//! hosts (`--workers N`).
//!
//! Oracle: FiftyOne 1.22.1's own `dataset.apply_model` and
//! `dataset.compute_embeddings` on the same PNG files with the same models
//! (`zoo_test_support::HOSTED_TORCH_SOURCE`: a seeded `TorchImageModel`
//! from a torchvision config, one with PIL-only transforms, and a plain
//! `TorchModelMixin`), which FiftyOne feeds through its DataLoader path.
//! They need torch in the host's Python: `ZOO_TEST_TORCH_PYTHON` names it
//! (`cargo xtask hosted-torch-check` sets it to the oracle venv, and
//! `cargo xtask ci` does when that venv exists). Without it they say they
//! are skipped, in CI too: CI's FiftyOne venv has no torch.

use std::path::Path;

use serde_json::{Value, json};
use zoo_model_core::Label;
use zoo_test_support::{
    Archive, FiftyOne, HOSTED_SOURCE, HOSTED_TORCH_SOURCE, Response, TestServer, hosted_manifest,
    hosted_torch_manifest,
};

use crate::hosted::fiftyone_python;
use crate::util::Sandbox;

/// A Python with torch, torchvision and FiftyOne 1.22.1, or `None`.
#[allow(clippy::print_stderr)]
fn torch_python() -> Option<String> {
    match std::env::var("ZOO_TEST_TORCH_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            eprintln!(
                "SKIPPED: hosted torch models (set ZOO_TEST_TORCH_PYTHON to a Python with torch, torchvision and fiftyone==1.22.1; `cargo xtask hosted-torch-check` does)"
            );
            None
        }
    }
}

/// A sandbox with `source` (its manifest and `__init__.py`) registered and
/// trusted, and `ZOO_PYTHON` set to `python`.
fn sandbox_with(server: &TestServer, python: &str, manifest: &Value, init: &str) -> Sandbox {
    let mut sandbox = Sandbox::new();
    sandbox
        .env
        .push(("ZOO_PYTHON".to_owned(), python.to_owned()));
    let archive = Archive::new()
        .file("manifest.json", manifest.to_string())
        .file("__init__.py", init);
    server.route("/source.tar.gz", Response::ok(archive.to_tar_gz()));
    sandbox.ok(&[
        "models",
        "register-source",
        &server.url("/source.tar.gz"),
        "--trust",
    ]);
    sandbox
}

/// PNGs of three sizes, in name order (the dataset's order).
fn pictures(dir: &Path, count: usize) -> Vec<String> {
    fs_err::create_dir_all(dir).unwrap();
    (0..count)
        .map(|index| {
            let (width, height) = match index % 3 {
                0 => (40, 30),
                1 => (24, 24),
                _ => (31, 20),
            };
            let path = dir.join(format!("im{index:02}.png"));
            let shade = index as u32 * 41;
            image::RgbImage::from_fn(width, height, |x, y| {
                image::Rgb([
                    (x * 7 + shade) as u8,
                    (y * 11 + shade * 3) as u8,
                    ((x * y + shade) % 256) as u8,
                ])
            })
            .save(&path)
            .unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect()
}

/// `zoo datasets export` as JSON lines, by file name.
fn exported(sandbox: &Sandbox, dataset: &str) -> serde_json::Map<String, Value> {
    let path = sandbox.dir.path().join(format!("{dataset}.jsonl"));
    sandbox.ok(&["datasets", "export", dataset, path.to_str().unwrap()]);
    fs_err::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            let name = Path::new(value["filepath"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, value)
        })
        .collect()
}

/// A label's JSON without `_id`s and logits (compared apart, as numbers).
fn without_ids(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| *key != "_id" && *key != "logits")
                .map(|(key, value)| (key.clone(), without_ids(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_ids).collect()),
        other => other.clone(),
    }
}

fn logits(value: &Value) -> Option<Vec<f32>> {
    match Label::from_json(value).unwrap() {
        Label::Classification { logits, .. } => logits,
        _ => None,
    }
}

/// Asserts `mine` and `theirs` within 1e-6 (relative past 1).
fn assert_close(mine: &[f64], theirs: &[f64], what: &str) {
    assert_eq!(mine.len(), theirs.len(), "{what}: lengths");
    for (a, b) in mine.iter().zip(theirs) {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        );
    }
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// FiftyOne's own runs: each on a fresh `load_model`, as each zoo run
/// loads its own, with the same thresholds, kwargs and batch sizes.
const FIFTYONE_RUNS: &str = r#"
import importlib.util
spec = importlib.util.spec_from_file_location("hosted_torch_oracle", args["init"])
source = importlib.util.module_from_spec(spec)
spec.loader.exec_module(source)
def model(kind, **kwargs):
    path = args["weights"] + "/" + kind + ".txt"
    source.download_model("zoo-test/" + kind, path)
    return source.load_model("zoo-test/" + kind, path, **kwargs)
dataset = fo.Dataset()
dataset.add_samples([fo.Sample(filepath=path) for path in args["images"]])
dataset.apply_model(model("resnet18"), "pred", confidence_thresh=0.5, store_logits=True, batch_size=4)
dataset.compute_embeddings(model("resnet18"), embeddings_field="emb", batch_size=4)
dataset.apply_model(model("resnet18", image_size=[64, 48]), "sized", store_logits=True, batch_size=3)
dataset.apply_model(model("resnet18-pil"), "pil", store_logits=True, batch_size=4)
dataset.compute_embeddings(model("resnet18-pil"), embeddings_field="pil_emb", batch_size=4)
dataset.apply_model(model("tiny"), "tiny", store_logits=True, batch_size=4)
result = {}
for sample in dataset:
    fields = {}
    for field in ("pred", "sized", "pil", "tiny"):
        value = sample[field]
        fields[field] = None if value is None else value.to_dict(extended=True)
    for field in ("emb", "pil_emb"):
        fields[field] = None if sample[field] is None else [float(v) for v in sample[field]]
    result[sample.filepath.rsplit("/", 1)[-1]] = fields
dataset.delete()
"#;

#[test]
fn a_hosted_torch_image_model_stores_what_fiftyones_data_loader_path_stores() {
    let Some(python) = torch_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = sandbox_with(
        &server,
        &python,
        &hosted_torch_manifest(),
        HOSTED_TORCH_SOURCE,
    );
    let pics = sandbox.dir.path().join("pics");
    let images = pictures(&pics, 8);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    let zoo = |args: &[&str]| sandbox.ok(args).json();
    let run = zoo(&[
        "models",
        "apply",
        "zoo-test/resnet18",
        "pics",
        "pred",
        "-t",
        "0.5",
        "-l",
        "-b",
        "4",
        "--json",
    ]);
    assert_eq!(run["succeeded"], 8, "{run}");
    sandbox.ok(&[
        "models",
        "embed",
        "zoo-test/resnet18",
        "pics",
        "emb",
        "-b",
        "4",
    ]);
    // `image_size`: not ragged, batches of 3 collated by FiftyOne's
    // `ErrorHandlingCollate`; `-k` takes JSON.
    zoo(&[
        "models",
        "apply",
        "zoo-test/resnet18",
        "pics",
        "sized",
        "-k",
        "image_size=[64, 48]",
        "-l",
        "-b",
        "3",
        "--json",
    ]);
    // Transforms that take PIL images only: the host must hand the model
    // the RGB PIL image FiftyOne's loader reads, not the array.
    let run = zoo(&[
        "models",
        "apply",
        "zoo-test/resnet18-pil",
        "pics",
        "pil",
        "-l",
        "-b",
        "4",
        "--json",
    ]);
    assert_eq!(run["succeeded"], 8, "{run}");
    sandbox.ok(&[
        "models",
        "embed",
        "zoo-test/resnet18-pil",
        "pics",
        "pil_emb",
        "-b",
        "4",
    ]);
    // A plain `TorchModelMixin`: its transforms run on PIL images and it
    // refuses to run with `preprocess` on.
    let run = zoo(&[
        "models",
        "apply",
        "zoo-test/tiny",
        "pics",
        "tiny",
        "-l",
        "-b",
        "4",
        "--json",
    ]);
    assert_eq!(run["succeeded"], 8, "{run}");

    let mut fiftyone = FiftyOne::start(&python);
    let oracle = sandbox.dir.path().join("oracle");
    fs_err::create_dir_all(&oracle).unwrap();
    fs_err::write(oracle.join("__init__.py"), HOSTED_TORCH_SOURCE).unwrap();
    let theirs = fiftyone.run(
        FIFTYONE_RUNS,
        json!({"init": oracle.join("__init__.py"), "weights": oracle, "images": images}),
    );
    let ours = exported(&sandbox, "pics");
    assert_eq!(theirs.as_object().unwrap().len(), 8);
    let mut thresholded = 0;
    for (name, theirs) in theirs.as_object().unwrap() {
        let sample = &ours[name];
        for field in ["pred", "sized", "pil", "tiny"] {
            let (mine, oracle) = (&sample[field], &theirs[field]);
            assert_eq!(
                without_ids(mine),
                without_ids(oracle),
                "{name} {field}: zoo {mine} vs FiftyOne {oracle}"
            );
            if !oracle.is_null() {
                let (a, b) = (logits(mine), logits(oracle));
                assert_eq!(a.is_some(), b.is_some(), "{name} {field}: logits");
                if let (Some(a), Some(b)) = (a, b) {
                    let a: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
                    let b: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
                    assert_close(&a, &b, &format!("{name} {field} logits"));
                }
            }
        }
        thresholded += usize::from(theirs["pred"].get("label").is_none());
        for field in ["emb", "pil_emb"] {
            let mine = numbers(&sample[field]);
            assert_eq!(mine.len(), 512, "{name} {field}: the input of `fc`");
            assert_close(&mine, &numbers(&theirs[field]), &format!("{name} {field}"));
        }
    }
    assert!(
        thresholded > 0 && thresholded < 8,
        "the threshold should empty some classifications, not {thresholded}"
    );
}

/// The threads each host of a `--workers N` run reports, as the labels of
/// `field`.
fn labels_of(sandbox: &Sandbox, dataset: &str, field: &str) -> Vec<String> {
    let mut labels: Vec<String> = exported(sandbox, dataset)
        .values()
        .map(|sample| sample[field]["label"].as_str().unwrap().to_owned())
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

#[test]
fn workers_n_starts_n_hosts_that_split_the_cpu_threads_as_the_native_backend() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = sandbox_with(&server, &python, &hosted_manifest(), HOSTED_SOURCE);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 6);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    let threads = sandbox.ok(&["system", "--json"]).json()["threads"]
        .as_u64()
        .unwrap();
    for (workers, field) in [("1", "one"), ("2", "two"), ("3", "three")] {
        let run = sandbox
            .ok(&[
                "models",
                "apply",
                "zoo-test/threads",
                "pics",
                field,
                "-b",
                "1",
                "--workers",
                workers,
                "--json",
            ])
            .json();
        assert_eq!(run["succeeded"], 6, "{run}");
    }
    // One host keeps the interpreter's defaults; N hosts get threads / N
    // each (at least 1), as `--workers N` splits libtorch's threads.
    assert_eq!(labels_of(&sandbox, "pics", "one"), vec!["omp=None"]);
    assert_eq!(
        labels_of(&sandbox, "pics", "two"),
        vec![format!("omp={}", (threads / 2).max(1))]
    );
    assert_eq!(
        labels_of(&sandbox, "pics", "three"),
        vec![format!("omp={}", (threads / 3).max(1))]
    );
}

#[test]
fn hosted_torch_models_on_the_cpu_get_torch_threads_split_between_hosts() {
    let Some(python) = torch_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = sandbox_with(
        &server,
        &python,
        &hosted_torch_manifest(),
        HOSTED_TORCH_SOURCE,
    );
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 4);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    let threads = sandbox.ok(&["system", "--json"]).json()["threads"]
        .as_u64()
        .unwrap();
    for (workers, field) in [("1", "one"), ("2", "two")] {
        sandbox.ok(&[
            "models",
            "apply",
            "zoo-test/torch-threads",
            "pics",
            field,
            "-b",
            "1",
            "--workers",
            workers,
        ]);
    }
    assert_eq!(
        labels_of(&sandbox, "pics", "two"),
        vec![format!("torch={}", (threads / 2).max(1))]
    );
    let one = labels_of(&sandbox, "pics", "one");
    assert_eq!(one.len(), 1, "{one:?}");
}
