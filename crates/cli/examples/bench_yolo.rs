//! Benchmark: FiftyOne's Ultralytics YOLO built-ins run natively by zoo
//! (`yolov8n-coco-torch`, `yolo11s-coco-torch`, `yolo26m-coco-torch`,
//! `yolov8n-seg-coco-torch`), on the CPU, in interleaved rounds of one run
//! on the same JPEGs: `zoo models apply` as a user runs it, zoo's
//! model-only rate (`predict_all` on letterboxed batches), Ultralytics' own
//! `YOLO(weights).predict(images, batch=...)` and FiftyOne's
//! `load_zoo_model(NAME)` + `apply_model`, with the same weights; the
//! outputs are compared (detections per image, labels, boxes and scores
//! matched by label). Then the peak memory of `zoo models apply
//! yolov8n-coco-torch` over more and more images. Run through `cargo
//! xtask bench yolo`.
//!
//! Weights: full-size checkpoints seeded by Ultralytics from each model's
//! yaml and saved in its release format by `xtask/bench/yolo_bench.py`
//! (the Python side, one process for the whole run, which also runs
//! Ultralytics and FiftyOne), cached in `ZOO_BENCH_WEIGHTS`; zoo downloads
//! them from a loopback mirror of the release host
//! (`ZOO_DOWNLOAD_MIRRORS`). Without `ZOO_BENCH_PYTHON` the smoke run
//! (`ZOO_BENCH_SMOKE`) serves the committed tiny-width checkpoints of the
//! parity tests under the release names and runs zoo's columns alone;
//! a full run says it is skipped.
//!
//! Environment: `ZOO_BENCH_PYTHON` (a Python with torch, ultralytics
//! 8.4.190 and FiftyOne 1.22.1: the oracle venv), `ZOO_BENCH_YOLO_SCRIPT`
//! (the Python side), `ZOO_BENCH_WEIGHTS` (the weights cache),
//! `ZOO_BENCH_N` (images, default 64), `ZOO_BENCH_ROUNDS` (default 3),
//! `ZOO_BENCH_MODELS` (comma-separated subset: `yolov8n`, `yolo11s`,
//! `yolo26m`, `yolov8n-seg` or full names), `ZOO_BENCH_RSS_N` (image
//! counts for the memory, default `64,512`; `0` skips it),
//! `ZOO_BENCH_BATCH` (zoo's, Ultralytics' and FiftyOne's batch size,
//! default 16, `zoo models apply`'s default).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use common::{cell, env_number, median, pictures};
use serde_json::{Map, Value, json};
use zoo_model_core::{Input, Model, ModelFactory, ModelSpec};
use zoo_registry::{LoadPlan, Registry, RegistryConfig};
use zoo_test_support::{TestServer, ULTRALYTICS_RELEASES};

/// One benchmarked entry.
struct Entry {
    name: &'static str,
    /// The release file's stem (`yolov8n`), as the Python side seeds it.
    stem: &'static str,
    /// Its path under the release host, as the entry's URL names it.
    release: &'static str,
    /// The committed tiny-width checkpoint served in its place when there
    /// is no Python to seed it (smoke runs).
    tiny: &'static str,
}

const ENTRIES: [Entry; 4] = [
    Entry {
        name: "yolov8n-coco-torch",
        stem: "yolov8n",
        release: "v8.3.0/yolov8n.pt",
        tiny: "yolov8t.pt",
    },
    Entry {
        name: "yolo11s-coco-torch",
        stem: "yolo11s",
        release: "v8.3.0/yolo11s.pt",
        tiny: "yolo11t.pt",
    },
    Entry {
        name: "yolo26m-coco-torch",
        stem: "yolo26m",
        release: "v8.4.0/yolo26m.pt",
        tiny: "yolo26t.pt",
    },
    Entry {
        name: "yolov8n-seg-coco-torch",
        stem: "yolov8n-seg",
        release: "v8.1.0/yolov8n-seg.pt",
        tiny: "yolov8t-seg.pt",
    },
];

/// The Python side: one process, JSON commands in, `@@ `-prefixed JSON
/// replies out.
struct Python {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Python {
    fn start(python: &str, script: &str, weights: &Path) -> Self {
        let mut child = Command::new(python)
            .arg(script)
            .arg(weights)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            input,
            output,
        }
    }

    /// Sends `command`; its reply, or `None` (said) when it failed.
    fn ask(&mut self, command: &Value) -> Option<Value> {
        writeln!(self.input, "{command}").unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if self.output.read_line(&mut line).unwrap() == 0 {
                println!(
                    "  (the Python side ended before replying to {})",
                    command["op"]
                );
                return None;
            }
            if let Some(reply) = line.strip_prefix("@@ ") {
                let reply: Value = serde_json::from_str(reply).unwrap();
                if let Some(error) = reply.get("error") {
                    println!("  (the Python side failed on {}: {error})", command["op"]);
                    return None;
                }
                return Some(reply);
            }
        }
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "{}", json!({"op": "quit"}));
        let _ = self.input.flush();
        let _ = self.child.wait();
    }
}

/// The model as `zoo models apply` builds it: the registry's deployment
/// config for the downloaded model, through the torch backend's factory.
fn build_model(zoo_dir: &Path, name: &str) -> Box<dyn Model> {
    let mut config = RegistryConfig::new(zoo_dir);
    config.builtin = Some(zoo_registry::builtin_manifest());
    config.offline = true;
    let registry = Registry::new(config);
    let downloaded = registry
        .download(name, None, false, &zoo_sources::NoProgress)
        .unwrap();
    let LoadPlan::Config(deployment) = registry.load_plan(&downloaded.model, &Map::new()).unwrap()
    else {
        panic!("`{name}` is not built natively");
    };
    let spec = ModelSpec {
        kind: deployment.kind.unwrap(),
        config: deployment.config,
        model_path: Some(downloaded.path),
    };
    let mut factory = ModelFactory::new();
    zoo_torch_backend::register(&mut factory);
    let mut model = factory.build(&spec).unwrap();
    model.set_workers(1);
    model
}

/// zoo's model-only rate: `predict_all` on letterboxed inputs in batches
/// of `batch`.
fn model_only(model: &mut dyn Model, inputs: &[Input], batch: usize) -> f64 {
    let started = Instant::now();
    for chunk in inputs.chunks(batch) {
        model.predict_all(chunk).unwrap();
    }
    inputs.len() as f64 / started.elapsed().as_secs_f64()
}

/// One detection: label, relative `[x, y, w, h]`, confidence, whether it
/// has a mask.
type Found = (String, [f64; 4], f64, bool);

fn found_of(rows: &Value) -> Vec<Found> {
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let b: Vec<f64> = serde_json::from_value(row[1].clone()).unwrap();
                    (
                        row[0].as_str().unwrap().to_owned(),
                        [b[0], b[1], b[2], b[3]],
                        row[2].as_f64().unwrap(),
                        row[3].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How two sets of per-image detections agree: each of `theirs` matched
/// greedily with an unmatched one of `ours` of the same label and the
/// nearest box.
#[derive(Default)]
struct Agreement {
    images: usize,
    same_count: usize,
    same_labels: usize,
    ours: usize,
    theirs: usize,
    matched: usize,
    masks: (usize, usize),
    box_difference: f64,
    score_difference: f64,
}

impl Agreement {
    fn add(&mut self, ours: &[Found], theirs: &[Found]) {
        self.images += 1;
        self.ours += ours.len();
        self.theirs += theirs.len();
        self.masks.0 += ours.iter().filter(|found| found.3).count();
        self.masks.1 += theirs.iter().filter(|found| found.3).count();
        self.same_count += usize::from(ours.len() == theirs.len());
        fn labels(found: &[Found]) -> Vec<&str> {
            let mut labels: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
            labels.sort_unstable();
            labels
        }
        self.same_labels += usize::from(labels(ours) == labels(theirs));
        let mut taken = vec![false; ours.len()];
        for (label, bounds, score, _) in theirs {
            let best = ours
                .iter()
                .enumerate()
                .filter(|(j, other)| !taken[*j] && other.0 == *label)
                .map(|(j, other)| {
                    let difference = bounds
                        .iter()
                        .zip(&other.1)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max);
                    (j, difference, (score - other.2).abs())
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((j, difference, score_difference)) = best
                && difference < 0.05
            {
                taken[j] = true;
                self.matched += 1;
                self.box_difference = self.box_difference.max(difference);
                self.score_difference = self.score_difference.max(score_difference);
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} of {} images with as many detections, {} with the same labels; {} vs {} detections ({} vs {} masks), {} matched (same label, box within 0.05), max box diff {:.2e} (relative), max score diff {:.2e}",
            self.same_count,
            self.images,
            self.same_labels,
            self.ours,
            self.theirs,
            self.masks.0,
            self.masks.1,
            self.matched,
            self.box_difference,
            self.score_difference
        )
    }
}

/// zoo's stored detections, by image file name, from `zoo datasets export`.
fn exported(
    zoo: &dyn Fn(&[&str]) -> Value,
    dir: &Path,
    dataset: &str,
    field: &str,
) -> BTreeMap<String, Vec<Found>> {
    let export = dir.join(format!("{dataset}-export.jsonl"));
    zoo(&["datasets", "export", dataset, export.to_str().unwrap()]);
    fs_err::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|sample| {
            let file = Path::new(sample["filepath"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let found = sample[field]["detections"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    let b: Vec<f64> = serde_json::from_value(d["bounding_box"].clone()).unwrap();
                    (
                        d["label"].as_str().unwrap().to_owned(),
                        [b[0], b[1], b[2], b[3]],
                        d["confidence"].as_f64().unwrap(),
                        d.get("mask").is_some_and(|mask| !mask.is_null()),
                    )
                })
                .collect();
            (file, found)
        })
        .collect()
}

/// One entry's figures.
struct Row {
    name: &'static str,
    apply: f64,
    forward_share: f64,
    model: f64,
    ultralytics: Option<f64>,
    fiftyone: Option<f64>,
    detections: f64,
}

#[allow(clippy::too_many_lines)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = &args[1];
    let smoke = std::env::var_os("ZOO_BENCH_SMOKE").is_some();
    let count = env_number("ZOO_BENCH_N", 64);
    let rounds = env_number("ZOO_BENCH_ROUNDS", 3).max(1);
    let batch = env_number("ZOO_BENCH_BATCH", 16).max(1);
    let python = std::env::var("ZOO_BENCH_PYTHON").ok();
    if python.is_none() && !smoke {
        println!(
            "yolo: skipped (set ZOO_BENCH_PYTHON to a Python with torch, ultralytics 8.4.190 and FiftyOne 1.22.1 to seed the weights; `cargo xtask bench yolo` uses the oracle venv)"
        );
        return;
    }
    let selected: Option<Vec<String>> = std::env::var("ZOO_BENCH_MODELS")
        .ok()
        .map(|names| names.split(',').map(str::to_owned).collect());
    let rss_counts: Vec<usize> = std::env::var("ZOO_BENCH_RSS_N")
        .unwrap_or_else(|_| "64,512".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let weights = std::env::var_os("ZOO_BENCH_WEIGHTS").map_or_else(
        || {
            dirs::cache_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("zoo/bench-yolo")
        },
        PathBuf::from,
    );
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../torch-backend/tests/fixtures/yolo");

    let dir = tempfile::tempdir().unwrap();
    let zoo_dir = dir.path().join("zoo");
    fs_err::create_dir_all(&zoo_dir).unwrap();
    let server = TestServer::start();
    let env = [
        ("ZOO_MODEL_ZOO_DIR", zoo_dir.display().to_string()),
        (
            "ZOO_DATASETS_DIR",
            dir.path().join("datasets").display().to_string(),
        ),
        (
            "ZOO_DOWNLOAD_MIRRORS",
            format!("{ULTRALYTICS_RELEASES}={}", server.url("/releases/")),
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
            "zoo {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    };

    let images = dir.path().join("img640x480");
    pictures(&images, count, 640, 480);
    let mut files: Vec<String> = fs_err::read_dir(&images)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let paths: Vec<String> = files
        .iter()
        .map(|file| images.join(file).display().to_string())
        .collect();
    let folder = images.display().to_string();

    let threads = zoo_torch_backend::RuntimeInfo::detect().threads;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = fs_err::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "N={count} generated 640x480 JPEGs, {cores} cores, libtorch intra-op threads {threads} (Ultralytics and FiftyOne: torch.set_num_threads({threads})), batch {batch}, {rounds} interleaved rounds (medians), load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut py = python.as_deref().map(|python| {
        fs_err::create_dir_all(&weights).unwrap();
        let script = std::env::var("ZOO_BENCH_YOLO_SCRIPT").unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../xtask/bench/yolo_bench.py")
                .display()
                .to_string()
        });
        Python::start(python, &script, &weights)
    });
    if py.is_none() {
        println!(
            "  (no ZOO_BENCH_PYTHON: zoo alone, on the parity tests' tiny-width checkpoints under the release names)"
        );
    }
    let mut rows = Vec::new();
    let mut agreements = Vec::new();
    for entry in ENTRIES.iter().filter(|entry| {
        selected
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == entry.stem || n == entry.name))
    }) {
        let name = entry.name;
        let bytes = match py.as_mut() {
            Some(py) => {
                let Some(seeded) =
                    py.ask(&json!({"op": "seed", "model": name, "stem": entry.stem}))
                else {
                    continue;
                };
                fs_err::read(seeded["weights"].as_str().unwrap()).unwrap()
            }
            None => fs_err::read(tiny.join(entry.tiny)).unwrap(),
        };
        server.file(&format!("/releases/{}", entry.release), bytes);
        zoo_json(&["models", "download", name, "--quiet"]);

        let mut model = build_model(&zoo_dir, name);
        let preprocessor = model.preprocessor();
        let inputs: Vec<Input> = paths
            .iter()
            .map(|path| {
                let image = zoo_datasets::decode_image(Path::new(path)).unwrap();
                preprocessor.preprocess(image).unwrap()
            })
            .collect();
        // Warm-up at the batch shape (oneDNN primitive creation).
        model
            .predict_all(&inputs[..batch.min(inputs.len())])
            .unwrap();
        let field = format!("bench_{}", entry.stem.replace('-', "_"));
        let mut applied = Vec::new();
        let mut shares = Vec::new();
        let mut model_rates = Vec::new();
        let mut ultralytics = Vec::new();
        let mut fiftyone = Vec::new();
        let mut dataset = String::new();
        let (mut ultralytics_labels, mut fiftyone_labels) = (None, None);
        for round in 0..rounds {
            let summary = zoo_json(&[
                "models",
                "apply",
                name,
                &folder,
                &field,
                "--batch-size",
                &batch.to_string(),
                "--overwrite",
                "--json",
                "--quiet",
            ]);
            applied.push(summary["images_per_second"].as_f64().unwrap());
            shares.push(
                summary["model_seconds"].as_f64().unwrap() / summary["seconds"].as_f64().unwrap(),
            );
            dataset = summary["dataset"].as_str().unwrap_or_default().to_owned();
            model_rates.push(model_only(model.as_mut(), &inputs, batch));
            if let Some(py) = py.as_mut() {
                let command = json!({"op": "ultralytics", "model": name, "images": paths,
                    "batch": batch, "threads": threads});
                if let Some(reply) = py.ask(&command) {
                    ultralytics.push(reply["rate"].as_f64().unwrap());
                    ultralytics_labels.get_or_insert(reply["labels"].clone());
                }
                let command = json!({"op": "fiftyone", "model": name, "images": paths,
                    "batch": batch, "threads": threads});
                if let Some(reply) = py.ask(&command) {
                    fiftyone.push(reply["rate"].as_f64().unwrap());
                    fiftyone_labels.get_or_insert(reply["labels"].clone());
                }
            }
            println!(
                "  {} round {}: zoo apply {:.3} (forward {:.0}% of it), model-only {:.3}, Ultralytics {}, FiftyOne {} img/s",
                entry.stem,
                round + 1,
                applied[round],
                100.0 * shares[round],
                model_rates[round],
                cell(ultralytics.last().copied(), 3),
                cell(fiftyone.last().copied(), 3),
            );
        }
        drop(model);
        let ours = exported(&zoo_json, dir.path(), &dataset, &field);
        let detections = ours.values().map(Vec::len).sum::<usize>() as f64 / ours.len() as f64;
        let compare = |labels: &Option<Value>| {
            labels.as_ref().map(|labels| {
                let mut agreement = Agreement::default();
                for (file, theirs) in files.iter().zip(labels.as_array().unwrap()) {
                    agreement.add(&ours[file], &found_of(theirs));
                }
                agreement.describe()
            })
        };
        let (with_fiftyone, with_ultralytics) =
            (compare(&fiftyone_labels), compare(&ultralytics_labels));
        // Said as soon as known: a long run stopped later keeps them.
        println!(
            "  {} outputs, {detections:.1} detections per image: zoo vs FiftyOne: {}; zoo vs Ultralytics: {}",
            entry.stem,
            with_fiftyone.as_deref().unwrap_or("-"),
            with_ultralytics.as_deref().unwrap_or("-"),
        );
        agreements.push((entry.stem, with_fiftyone, with_ultralytics));
        rows.push(Row {
            name,
            apply: median(&mut applied),
            forward_share: median(&mut shares),
            model: median(&mut model_rates),
            ultralytics: (!ultralytics.is_empty()).then(|| median(&mut ultralytics)),
            fiftyone: (!fiftyone.is_empty()).then(|| median(&mut fiftyone)),
            detections,
        });
    }
    drop(py);

    println!();
    println!(
        "| model | N | detections/image | zoo apply | forward share of apply | zoo model-only | Ultralytics predict | FiftyOne apply_model | zoo/Ultralytics | zoo/FiftyOne |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {count} | {:.1} | {:.3} | {:.0}% | {:.3} | {} | {} | {} | {} |",
            row.name,
            row.detections,
            row.apply,
            100.0 * row.forward_share,
            row.model,
            cell(row.ultralytics, 3),
            cell(row.fiftyone, 3),
            cell(row.ultralytics.map(|rate| row.apply / rate), 2),
            cell(row.fiftyone.map(|rate| row.apply / rate), 2),
        );
    }
    println!();
    println!("outputs, zoo apply (stored, exported) against:");
    for (stem, with_fiftyone, with_ultralytics) in &agreements {
        println!(
            "  {stem} FiftyOne: {}",
            with_fiftyone.as_deref().unwrap_or("-")
        );
        println!(
            "  {stem} Ultralytics: {}",
            with_ultralytics.as_deref().unwrap_or("-")
        );
    }
    println!(
        "img/s; zoo apply = `zoo models apply NAME DIR FIELD --batch-size {batch}` as a user runs it, images / the apply's own seconds (`--json` `seconds`: decode, letterbox, forward, NMS, masks, SQLite; the model already loaded), forward share = its `model_seconds` / `seconds`; zoo model-only = predict_all on letterboxed inputs in batches of {batch}, after a warm-up batch; Ultralytics = `YOLO(weights).predict(paths, batch={batch}, stream=True)` with its defaults (rectangular letterbox of same-shaped batches: 640x480 here, where FiftyOne and zoo letterbox to 640x640; `retina_masks` off), after a warm-up image; FiftyOne = `dataset.apply_model(load_zoo_model(NAME), batch_size={batch})`, after a warm-up on one image"
    );

    if !rss_counts.is_empty()
        && selected
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == "yolov8n" || n == ENTRIES[0].name))
    {
        let mut figures = Vec::new();
        for rss_count in &rss_counts {
            let folder = dir.path().join(format!("rss{rss_count}"));
            pictures(&folder, *rss_count, 640, 480);
            let summary = zoo_json(&[
                "models",
                "apply",
                ENTRIES[0].name,
                folder.to_str().unwrap(),
                "pred",
                "--overwrite",
                "--json",
                "--quiet",
            ]);
            let peak = summary["peak_rss_bytes"].as_f64().unwrap() / 1e6;
            println!(
                "  peak RSS, yolov8n apply on {rss_count} images: {peak:.1} MB ({:.3} img/s)",
                summary["images_per_second"].as_f64().unwrap_or(f64::NAN)
            );
            figures.push((rss_count, peak));
        }
        let first = figures[0].1;
        println!(
            "peak RSS of `zoo models apply {}` (its VmHWM): {}",
            ENTRIES[0].name,
            figures
                .iter()
                .map(|(n, peak)| format!("{n} images {peak:.1} MB ({:.3}x)", peak / first))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
