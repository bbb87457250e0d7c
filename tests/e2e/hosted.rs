//! The model host (issue 13): a trusted source's `load_model` returns a
//! `fiftyone.core.models.Model`, and `zoo models apply/embed` run it in a
//! Python worker.
//!
//! Oracle: FiftyOne 1.22.1's own `dataset.apply_model` and
//! `dataset.compute_embeddings` (`ZOO_TEST_FIFTYONE_PYTHON`, the venv that
//! `cargo xtask ci` provisions, no torch) on the same PNG files, with the
//! same numpy-only models (`zoo_test_support::HOSTED_SOURCE`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zoo_model_core::Label;
use zoo_test_support::{Archive, FiftyOne, HOSTED_SOURCE, Response, TestServer, hosted_manifest};

use crate::util::Sandbox;

/// The interpreter of the FiftyOne test venv, or `None` (skipped outside
/// CI, as the other FiftyOne interop tests are).
#[allow(clippy::print_stderr)]
pub(crate) fn fiftyone_python() -> Option<String> {
    match std::env::var("ZOO_TEST_FIFTYONE_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var_os("ZOO_CI").is_some() || std::env::var_os("CI").is_some() => {
            panic!("ZOO_TEST_FIFTYONE_PYTHON is not set: the model host tests need it in CI")
        }
        _ => {
            eprintln!("SKIPPED: model host tests (set ZOO_TEST_FIFTYONE_PYTHON)");
            None
        }
    }
}

/// A sandbox with the hosted test source registered and trusted, and
/// `ZOO_PYTHON` set to `python`.
pub(crate) fn hosted_sandbox(server: &TestServer, python: &str) -> Sandbox {
    let mut sandbox = Sandbox::new();
    sandbox
        .env
        .push(("ZOO_PYTHON".to_owned(), python.to_owned()));
    let archive = Archive::new()
        .file("manifest.json", hosted_manifest().to_string())
        .file("__init__.py", HOSTED_SOURCE);
    server.route("/hosted.tar.gz", Response::ok(archive.to_tar_gz()));
    sandbox.ok(&[
        "models",
        "register-source",
        &server.url("/hosted.tar.gz"),
        "--trust",
    ]);
    sandbox
}

/// PNGs of several sizes and colours; one 13 pixels wide (the `boxes`
/// model fails on it).
pub(crate) fn pictures(dir: &Path, count: usize) -> Vec<String> {
    fs_err::create_dir_all(dir).unwrap();
    (0..count)
        .map(|index| {
            let (width, height) = match index % 3 {
                0 => (40, 30),
                1 => (24, 24),
                _ => (13, 20),
            };
            let path = dir.join(format!("im{index:02}.png"));
            let shade = index as u32 * 37;
            image::RgbImage::from_fn(width, height, |x, y| {
                image::Rgb([
                    (x * 6 + shade) as u8,
                    (y * 9 + shade * 3) as u8,
                    (200 - (shade % 200)) as u8,
                ])
            })
            .save(&path)
            .unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect()
}

/// `zoo datasets export` as JSON lines, by file name.
pub(crate) fn exported(sandbox: &Sandbox, dataset: &str) -> serde_json::Map<String, Value> {
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

/// FiftyOne's own runs of the same models: `apply_model` and
/// `compute_embeddings` with the same kwargs, thresholds and batch sizes,
/// each on a fresh `load_model` (as each zoo run loads its own).
const FIFTYONE_RUNS: &str = r#"
import importlib.util, sys
spec = importlib.util.spec_from_file_location("hosted_source_oracle", args["init"])
source = importlib.util.module_from_spec(spec)
spec.loader.exec_module(source)
def model(kind, **kwargs):
    path = args["weights"] + "/" + kind + ".txt"
    with open(path, "w") as f:
        f.write("numpy weights for zoo-test/" + kind)
    return source.load_model("zoo-test/" + kind, path, **kwargs)
dataset = fo.Dataset()
dataset.add_samples([fo.Sample(filepath=path) for path in args["images"]])
kwargs = args["kwargs"]
dataset.apply_model(model("colour", **kwargs), "pred", confidence_thresh=0.6, store_logits=True, batch_size=2)
dataset.apply_model(model("colour", **kwargs), "plain", batch_size=3)
dataset.compute_embeddings(model("colour", **kwargs), embeddings_field="emb", batch_size=2)
dataset.apply_model(model("boxes", fail_width=13), "det", confidence_thresh=0.3, batch_size=4)
result = {}
for sample in dataset:
    fields = {}
    for field in ("pred", "plain", "det_boxes", "det_size"):
        value = sample[field] if sample.has_field(field) else None
        fields[field] = None if value is None else value.to_dict(extended=True)
    fields["emb"] = None if sample["emb"] is None else [float(v) for v in sample["emb"]]
    result[sample.filepath.rsplit("/", 1)[-1]] = fields
dataset.delete()
"#;

/// A label's JSON without its `_id`s and logits (compared apart, as
/// numbers: the `.npy` bytes are compressed by each side's zlib).
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

#[test]
fn hosted_models_store_what_fiftyones_own_apply_model_and_compute_embeddings_store() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hosted_sandbox(&server, &python);
    let info = sandbox
        .ok(&["models", "info", "zoo-test/colour", "--json"])
        .json();
    assert_eq!(info["runs_in"], "python host", "{info}");
    let pics = sandbox.dir.path().join("pics");
    let images = pictures(&pics, 7);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    let dir = "pics";
    let kwargs = [
        "-k",
        "scale=3.5",
        "-k",
        r#"classes=["rot", "gruen", "blau"]"#,
    ];
    let apply = |field: &str, extra: &[&str]| {
        let mut command = vec!["models", "apply", "zoo-test/colour", dir, field];
        command.extend_from_slice(&kwargs);
        command.extend_from_slice(extra);
        sandbox.ok(&command).json()
    };
    let run = apply("pred", &["-t", "0.6", "-l", "-b", "2", "--json"]);
    assert_eq!(run["succeeded"], 7, "{run}");
    apply("plain", &["-b", "3", "--json"]);
    let mut embed = vec!["models", "embed", "zoo-test/colour", dir, "emb", "-b", "2"];
    embed.extend_from_slice(&kwargs);
    sandbox.ok(&embed);
    // Ragged and a dict of labels: one image per call, the 13-wide ones
    // fail alone, and the model thresholds itself.
    let run = sandbox
        .ok(&[
            "models",
            "apply",
            "zoo-test/boxes",
            dir,
            "det",
            "-t",
            "0.3",
            "-b",
            "4",
            "-k",
            "fail_width=13",
            "--json",
        ])
        .json();
    assert_eq!(
        (run["succeeded"].as_u64(), run["failed"].as_u64()),
        (Some(5), Some(2)),
        "{run}"
    );
    assert!(
        run["failures"][0]["error"]
            .as_str()
            .unwrap()
            .contains("ValueError: cannot handle an image 13 pixels wide"),
        "{run}"
    );

    let mut fiftyone = FiftyOne::start(&python);
    let source = sandbox.dir.path().join("oracle");
    fs_err::create_dir_all(&source).unwrap();
    fs_err::write(source.join("__init__.py"), HOSTED_SOURCE).unwrap();
    let theirs = fiftyone.run(
        FIFTYONE_RUNS,
        json!({
            "init": source.join("__init__.py"),
            "weights": source,
            "images": images,
            "kwargs": {"scale": 3.5, "classes": ["rot", "gruen", "blau"]},
        }),
    );
    let ours = exported(&sandbox, "pics");
    assert_eq!(theirs.as_object().unwrap().len(), 7);
    let mut thresholded = 0;
    for (name, theirs) in theirs.as_object().unwrap() {
        let sample = &ours[name];
        for field in ["pred", "plain", "det_boxes", "det_size"] {
            let (mine, oracle) = (&sample[field], &theirs[field]);
            assert_eq!(
                without_ids(mine),
                without_ids(oracle),
                "{name} {field}: zoo {mine} vs FiftyOne {oracle}"
            );
            if !oracle.is_null() {
                assert_eq!(logits(mine), logits(oracle), "{name} {field}");
            }
        }
        thresholded += usize::from(theirs["pred"].get("label").is_none());
        assert!(logits(&sample["pred"]).is_some() || theirs["pred"].get("label").is_none());
        let (mine, oracle) = (&sample["emb"], &theirs["emb"]);
        let (mine, oracle) = (mine.as_array().unwrap(), oracle.as_array().unwrap());
        assert_eq!(mine.len(), 6);
        for (a, b) in mine.iter().zip(oracle) {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{name}: {a} vs {b}"
            );
        }
    }
    assert!(
        thresholded > 0 && thresholded < 7,
        "the threshold should empty some classifications, not {thresholded}"
    );
}

/// How many samples of `dataset` have a label in `field`.
fn labelled(sandbox: &Sandbox, dataset: &str, field: &str) -> u64 {
    let info = sandbox.ok(&["datasets", "info", dataset, "--json"]).json();
    info["label_fields"][field].as_u64().unwrap_or(0)
}

/// The processes whose command line mentions `needle` (the worker's
/// arguments name the source folder, which is this test's own).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = fs_err::read(entry.path().join("cmdline")) else {
            continue;
        };
        let zombie = fs_err::read_to_string(entry.path().join("stat"))
            .is_ok_and(|stat| stat.contains(") Z "));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_host_that_dies_mid_run_records_its_batch_stops_and_the_next_run_resumes() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hosted_sandbox(&server, &python);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 8);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    let dir = "pics";
    let run = sandbox.fails(&[
        "models",
        "apply",
        "zoo-test/colour",
        dir,
        "pred",
        "-b",
        "2",
        "-k",
        "die_after=2",
        "--workers",
        "1",
    ]);
    let err = run.stderr();
    assert!(
        err.contains("the model host of `zoo-test/colour` died (signal: 9"),
        "{err}"
    );
    assert_eq!(
        labelled(&sandbox, "pics", "pred"),
        4,
        "two batches finished"
    );
    let resumed = sandbox
        .ok(&[
            "models",
            "apply",
            "zoo-test/colour",
            dir,
            "pred",
            "-b",
            "2",
            "--json",
        ])
        .json();
    assert_eq!(resumed["processed"], 4, "{resumed}");
    assert_eq!(resumed["failed"], 0, "{resumed}");
    assert_eq!(labelled(&sandbox, "pics", "pred"), 8);
}

#[test]
fn killing_zoo_mid_run_leaves_no_python_behind_and_the_next_run_resumes() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hosted_sandbox(&server, &python);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 12);
    let dir = pics.to_str().unwrap();
    sandbox.ok(&["datasets", "create", "pics", dir]);
    let mut child = sandbox
        .command(&[
            "models",
            "apply",
            "zoo-test/colour",
            "pics",
            "pred",
            "-b",
            "1",
            "-k",
            "delay=0.4",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let zoo_dir = sandbox.zoo_dir().to_string_lossy().into_owned();
    let started = Instant::now();
    while labelled(&sandbox, "pics", "pred") < 2 {
        assert!(
            child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(120),
            "the run ended or stalled before two labels"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !processes_mentioning(&zoo_dir).is_empty(),
        "the worker runs"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = labelled(&sandbox, "pics", "pred");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&zoo_dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        processes_mentioning(&zoo_dir),
        Vec::<String>::new(),
        "a Python process outlived zoo"
    );
    assert!(killed_at < 12, "killed midway, had {killed_at}");
    let resumed = sandbox
        .ok(&[
            "models",
            "apply",
            "zoo-test/colour",
            "pics",
            "pred",
            "--json",
        ])
        .json();
    assert_eq!(
        resumed["processed"].as_u64(),
        Some(12 - killed_at),
        "{resumed}"
    );
    assert_eq!(labelled(&sandbox, "pics", "pred"), 12);
}

#[test]
fn hosted_load_failures_are_clear_and_untrusted_sources_run_no_python() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hosted_sandbox(&server, &python);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 2);
    let dir = pics.to_str().unwrap();
    let apply = |model: &str, extra: &[&str]| {
        let mut command = vec!["models", "apply", model, dir, "pred"];
        command.extend_from_slice(extra);
        sandbox.fails(&command).stderr()
    };
    let err = apply("zoo-test/not-a-model", &[]);
    assert!(
        err.contains("neither a `fiftyone.core.models.Model` nor a JSON config"),
        "{err}"
    );
    let err = apply("zoo-test/needs-missing", &[]);
    assert!(
        err.contains("cannot import `zoo_missing_module_for_tests`")
            && err.contains("zoo models requirements zoo-test/needs-missing --install"),
        "{err}"
    );
    let err = apply("zoo-test/raises", &[]);
    assert!(
        err.contains("RuntimeError: the weights of zoo-test/raises are corrupt"),
        "{err}"
    );
    // Every sample failed: the run fails and says why.
    let err = apply("zoo-test/bad-output", &[]);
    assert!(err.contains("which is not a FiftyOne `Label`"), "{err}");
    let err = apply("zoo-test/colour", &["-k", "9lives=1"]);
    assert!(
        err.contains("`9lives` is not a Python keyword argument name"),
        "{err}"
    );
    // `config -k`: the kwargs reach `load_model`, whose JSON config runs
    // natively.
    sandbox.ok(&["models", "download", "zoo-test/config"]);
    sandbox.ok(&["models", "download", "zoo-test/colour"]);
    let config = sandbox
        .ok(&[
            "models",
            "config",
            "zoo-test/config",
            "-k",
            r#"labels=["x", "y"]"#,
            "-k",
            "note=plain text",
        ])
        .json();
    assert_eq!(config["config"]["labels"], json!(["x", "y"]), "{config}");
    assert_eq!(config["config"]["note"], "plain text", "{config}");
    let err = sandbox
        .fails(&["models", "config", "zoo-test/colour"])
        .stderr();
    assert!(err.contains("zoo runs it in its model host"), "{err}");

    let mut missing = Sandbox::new();
    missing.env = vec![
        (
            "ZOO_PYTHON".to_owned(),
            "/nonexistent/zoo-python".to_owned(),
        ),
        (
            "ZOO_MODEL_ZOO_DIR".to_owned(),
            sandbox.zoo_dir().to_string_lossy().into_owned(),
        ),
    ];
    let err = missing
        .fails(&["models", "apply", "zoo-test/colour", dir, "pred"])
        .stderr();
    assert!(
        err.contains("cannot start the Python interpreter `/nonexistent/zoo-python`"),
        "{err}"
    );

    // Untrusted: no Python runs (a marker `load_model` would write).
    let untrusted = Sandbox::new();
    let marker: PathBuf = untrusted.dir.path().join("ran");
    let source = format!(
        "def download_model(model_name, model_path):\n    open(model_path, 'w').write('x')\n\ndef load_model(model_name, model_path, **kwargs):\n    open({:?}, 'w').write('ran')\n",
        marker.to_str().unwrap()
    );
    let archive = Archive::new()
        .file("manifest.json", hosted_manifest().to_string())
        .file("__init__.py", source);
    server.route("/untrusted.tar.gz", Response::ok(archive.to_tar_gz()));
    untrusted.ok(&[
        "models",
        "register-source",
        &server.url("/untrusted.tar.gz"),
    ]);
    let err = untrusted
        .fails(&["models", "apply", "zoo-test/colour", dir, "pred"])
        .stderr();
    assert!(err.contains("trust"), "{err}");
    assert!(!marker.exists(), "an untrusted source's load_model ran");
}

#[test]
fn the_host_runs_in_its_source_folder_without_github_token() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let mut sandbox = hosted_sandbox(&server, &python);
    sandbox
        .env
        .push(("GITHUB_TOKEN".to_owned(), "secret-token".to_owned()));
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 1);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    sandbox.ok(&["models", "apply", "zoo-test/environment", "pics", "seen"]);
    let source = sandbox.zoo_dir().join("zoo-test/hosted");
    let labels = exported(&sandbox, "pics");
    let seen = labels["im00.png"]["seen"]["label"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected = format!(
        "token=False cwd={}",
        source.canonicalize().unwrap().display()
    );
    assert_eq!(seen, expected);
}

/// `zoo models embed-text` on a hosted FiftyOne `PromptMixin` (a remote
/// source's CLIP-like model): one JSON line per prompt, the vectors the
/// model's own `embed_prompts` returns; a hosted model that is none is
/// refused, naming why.
#[test]
fn embed_text_runs_a_hosted_prompt_model() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hosted_sandbox(&server, &python);
    let out = sandbox.ok(&[
        "models",
        "embed-text",
        "zoo-test/prompts",
        "a photo of a cat",
        "dog",
    ]);
    let lines: Vec<Value> = out
        .stdout()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout());
    assert_eq!(lines[0]["prompt"], "a photo of a cat");
    assert_eq!(
        lines[0]["embedding"],
        json!([16.0, 6.0, 97.0, 116.0, 1.0, -1.0])
    );
    assert_eq!(lines[1]["prompt"], "dog");
    assert_eq!(
        lines[1]["embedding"],
        json!([3.0, 1.0, 100.0, 103.0, 1.0, -1.0])
    );
    let err = sandbox
        .fails(&["models", "embed-text", "zoo-test/colour", "a cat"])
        .stderr();
    assert!(err.contains("does not embed text prompts"), "{err}");
}

/// FiftyOne's own run of the `shapes` model: `apply_model` with a
/// threshold (which FiftyOne applies to the polylines and the regression).
const FIFTYONE_SHAPES: &str = r#"
import importlib.util
spec = importlib.util.spec_from_file_location("hosted_source_shapes", args["init"])
source = importlib.util.module_from_spec(spec)
spec.loader.exec_module(source)
path = args["weights"] + "/shapes.txt"
with open(path, "w") as f:
    f.write("numpy weights for zoo-test/shapes")
dataset = fo.Dataset()
dataset.add_samples([fo.Sample(filepath=p) for p in args["images"]])
dataset.apply_model(source.load_model("zoo-test/shapes", path), "geo", confidence_thresh=0.4)
result = {}
for sample in dataset:
    result[sample.filepath.rsplit("/", 1)[-1]] = {
        field: (sample[field].to_dict(extended=True) if sample.has_field(field) and sample[field] is not None else None)
        for field in ("geo_obb", "geo_depth", "geo_score")
    }
dataset.delete()
"#;

/// `ours` equals `theirs` up to `_id`s, with `.npy` arrays (a heatmap's
/// `map`) compared as values: each side's zlib compresses its own way.
pub(crate) fn same_label(ours: &Value, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) if a.contains_key("$binary") => {
            let (a, b) = (
                zoo_model_core::array_from_json(ours).unwrap(),
                zoo_model_core::array_from_json(theirs).unwrap(),
            );
            (a.dtype, a.shape, a.data) == (b.dtype, b.shape, b.data)
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys = |map: &serde_json::Map<String, Value>| {
                map.keys()
                    .filter(|key| *key != "_id")
                    .cloned()
                    .collect::<Vec<_>>()
            };
            keys(a) == keys(b)
                && keys(a)
                    .iter()
                    .all(|key| same_label(&a[key.as_str()], &b[key.as_str()]))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_label(a, b))
        }
        (a, b) => a == b,
    }
}

/// A hosted model returning FiftyOne's `Polylines`, `Heatmap` and
/// `Regression` (in a dict): zoo stores them as FiftyOne's own
/// `apply_model` does, thresholds included.
#[test]
fn hosted_polylines_heatmaps_and_regressions_store_as_fiftyone_stores_them() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hosted_sandbox(&server, &python);
    let pics = sandbox.dir.path().join("pics");
    let images = pictures(&pics, 6);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    let run = sandbox
        .ok(&[
            "models",
            "apply",
            "zoo-test/shapes",
            "pics",
            "geo",
            "-t",
            "0.4",
            "--json",
        ])
        .json();
    assert_eq!(run["succeeded"], 6, "{run}");
    let mut fiftyone = FiftyOne::start(&python);
    let source = sandbox.dir.path().join("oracle");
    fs_err::create_dir_all(&source).unwrap();
    fs_err::write(source.join("__init__.py"), HOSTED_SOURCE).unwrap();
    let theirs = fiftyone.run(
        FIFTYONE_SHAPES,
        json!({"init": source.join("__init__.py"), "weights": source, "images": images}),
    );
    let ours = exported(&sandbox, "pics");
    let mut kept = 0;
    for (name, theirs) in theirs.as_object().unwrap() {
        for field in ["geo_obb", "geo_depth", "geo_score"] {
            let (mine, oracle) = (&ours[name][field], &theirs[field]);
            assert!(
                same_label(mine, oracle),
                "{name} {field}: zoo {mine} vs FiftyOne {oracle}"
            );
        }
        kept += theirs["geo_obb"]["polylines"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(ours[name]["geo_depth"]["_cls"], "Heatmap");
    }
    // The threshold dropped some polylines, not all.
    assert!(kept > 0 && kept < 12, "{kept} polylines kept");
}
