//! Benchmark: the model families beyond classifiers, each through
//! `zoo models apply` / `zoo models embed` as a user runs it, next to zoo's
//! model-only rate, PyTorch eager and FiftyOne's `apply_model` /
//! `compute_embeddings` on the same JPEG files with the same weights, in
//! interleaved rounds of one run; the outputs of the three are compared
//! (detections matched by label and box, masks pixel by pixel, embeddings
//! value by value). Then the peak memory of `zoo models apply` on the
//! detector over more and more images. Run through
//! `cargo xtask bench families [--with-fiftyone]`.
//!
//! Weights: seeded, in the hosted files' layouts, written once by
//! `xtask/bench/families_bench.py` (the PyTorch/FiftyOne side, one Python
//! process for the whole run) into `ZOO_BENCH_WEIGHTS`. The torchvision
//! files go into zoo's model dir under their hosted names (their names
//! carry a digest that seeded weights cannot match, so a download would be
//! refused); CLIP's archive and vocabulary and DINOv2's checkpoint are
//! downloaded by `zoo models download` from a loopback mirror of their
//! hosts (`ZOO_DOWNLOAD_MIRRORS`).
//!
//! Environment: `ZOO_BENCH_PYTHON` (a Python with torch 2.13, torchvision
//! 0.28 and FiftyOne 1.22.1; required), `ZOO_BENCH_FAMILIES_SCRIPT` (the
//! Python side), `ZOO_BENCH_WEIGHTS` (the weights cache),
//! `ZOO_BENCH_DINOV2_HUB` (a facebookresearch/dinov2 checkout),
//! `ZOO_BENCH_FIFTYONE` (set: the FiftyOne column), `ZOO_BENCH_N` (images,
//! default 16), `ZOO_BENCH_ROUNDS` (default 3), `ZOO_BENCH_MODELS`
//! (comma-separated subset), `ZOO_BENCH_RSS_N` (image counts for the
//! detector's memory, default `64,512`; `0` skips it), `ZOO_BENCH_WORKERS`
//! (model copies for zoo, as `--workers`; default: the model's own choice).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::{cell, env_number, median, pictures};
use serde_json::{Map, Value, json};
use zoo_model_core::{Input, Model, ModelFactory, ModelSpec};
use zoo_registry::{LoadPlan, Registry, RegistryConfig};
use zoo_test_support::TestServer;

/// What a family's outputs are, and so how they are compared.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Detector,
    Segmenter,
    Embedder,
}

struct Family {
    name: &'static str,
    short: &'static str,
    kind: Kind,
    /// PyTorch eager batch sizes (zoo splits CPU forwards at ~400k pixels:
    /// one image per forward for the 640x480-and-larger inputs).
    eager_batches: &'static [usize],
}

const FAMILIES: [Family; 4] = [
    Family {
        name: "faster-rcnn-resnet50-fpn-coco-torch",
        short: "faster-rcnn",
        kind: Kind::Detector,
        eager_batches: &[1],
    },
    Family {
        name: "deeplabv3-resnet50-coco-torch",
        short: "deeplabv3",
        kind: Kind::Segmenter,
        eager_batches: &[1],
    },
    Family {
        name: "clip-vit-base32-torch",
        short: "clip-b32",
        kind: Kind::Embedder,
        eager_batches: &[1, 16],
    },
    Family {
        name: "dinov2-vits14-torch",
        short: "dinov2-s14",
        kind: Kind::Embedder,
        eager_batches: &[1, 4],
    },
];

/// The batch size of zoo's apply and model-only runs (`zoo models apply`'s
/// default) and of FiftyOne's calls.
const BATCH: usize = 16;

/// The Python side: one process, JSON commands in, `@@ `-prefixed JSON
/// replies out.
struct Python {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Python {
    fn start(python: &str, script: &str, weights: &Path, hub: &Path) -> Self {
        let mut child = Command::new(python)
            .arg(script)
            .arg(weights)
            .arg(hub)
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
    fn ask(&mut self, command: Value) -> Option<Value> {
        writeln!(self.input, "{command}").unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if self.output.read_line(&mut line).unwrap() == 0 {
                println!("  (the Python side ended before replying to {command})");
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
fn build_models(zoo_dir: &Path, name: &str) -> Vec<Box<dyn Model>> {
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
    let first = factory.build(&spec).unwrap();
    let workers = std::env::var("ZOO_BENCH_WORKERS")
        .ok()
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or_else(|| first.workers())
        .max(1);
    let mut models = vec![first];
    for _ in 1..workers {
        models.push(factory.build(&spec).unwrap());
    }
    for model in &mut models {
        model.set_workers(workers);
    }
    models
}

/// zoo's model-only rate: `predict_all` (or `embed_all`) on preprocessed
/// inputs in batches of [`BATCH`], the copies on their own threads as apply
/// runs them.
fn model_only(models: &mut [Box<dyn Model>], inputs: &[Input], embed: bool) -> f64 {
    let next = AtomicUsize::new(0);
    let count = inputs.len();
    // Batches as apply cuts them for this many copies.
    let chunk = zoo_model_core::chunk_len(count, BATCH, models.len());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for model in models.iter_mut() {
            let next = &next;
            scope.spawn(move || {
                loop {
                    let done = next.fetch_add(chunk, Ordering::Relaxed);
                    if done >= count {
                        break;
                    }
                    let chunk = &inputs[done..(done + chunk).min(count)];
                    if embed {
                        model.embed_all(chunk).unwrap();
                    } else {
                        model.predict_all(chunk).unwrap();
                    }
                }
            });
        }
    });
    count as f64 / started.elapsed().as_secs_f64()
}

/// One detection: label, relative `[x, y, w, h]`, confidence.
type Found = (String, [f64; 4], f64);

fn detections_of(value: &Value) -> Vec<Found> {
    value
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let b: Vec<f64> = row[1]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect();
                    (
                        row[0].as_str().unwrap().to_owned(),
                        [b[0], b[1], b[2], b[3]],
                        row[2].as_f64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How two sets of detections agree: each of `theirs` matched greedily by
/// an unmatched one of `ours` with the same label and the nearest box.
#[derive(Default)]
struct DetectionAgreement {
    ours: usize,
    theirs: usize,
    matched: usize,
    box_difference: f64,
    score_difference: f64,
}

impl DetectionAgreement {
    fn add(&mut self, ours: &[Found], theirs: &[Found]) {
        self.ours += ours.len();
        self.theirs += theirs.len();
        let mut taken = vec![false; ours.len()];
        for (label, bounds, score) in theirs {
            let best = ours
                .iter()
                .enumerate()
                .filter(|(j, (other, _, _))| !taken[*j] && other == label)
                .map(|(j, (_, other, other_score))| {
                    let difference = bounds
                        .iter()
                        .zip(other)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max);
                    (j, difference, (score - other_score).abs())
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
            "{} vs {} detections, {} matched (same label), max box diff {:.2e} (relative), max score diff {:.2e}",
            self.ours, self.theirs, self.matched, self.box_difference, self.score_difference
        )
    }
}

/// zoo's stored outputs, by image file name, from `zoo datasets export`.
fn exported(zoo: &dyn Fn(&[&str]) -> Value, dir: &Path, dataset: &str) -> BTreeMap<String, Value> {
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
            (file, sample)
        })
        .collect()
}

/// The Python side's outputs (written to `out`, shaped as its reply says)
/// against zoo's exported `field`, in words.
fn compare(
    kind: Kind,
    zoo_samples: &BTreeMap<String, Value>,
    field: &str,
    files: &[String],
    out: &Path,
    reply: &Value,
) -> String {
    match kind {
        Kind::Detector => {
            let theirs: Vec<Value> = serde_json::from_slice(&fs_err::read(out).unwrap()).unwrap();
            let mut agreement = DetectionAgreement::default();
            for (file, their) in files.iter().zip(&theirs) {
                let ours: Vec<Value> = zoo_samples[file][field]["detections"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|d| json!([d["label"], d["bounding_box"], d["confidence"]]))
                    .collect();
                agreement.add(&detections_of(&Value::Array(ours)), &detections_of(their));
            }
            agreement.describe()
        }
        Kind::Segmenter => {
            let shape: Vec<usize> = serde_json::from_value(reply["shape"].clone()).unwrap();
            let bytes = fs_err::read(out).unwrap();
            let per_image = shape[1] * shape[2] * 8;
            let (mut equal, mut total, mut shape_mismatches) = (0usize, 0usize, 0usize);
            for (index, file) in files.iter().enumerate() {
                let mask =
                    zoo_model_core::array_from_json(&zoo_samples[file][field]["mask"]).unwrap();
                let theirs = &bytes[index * per_image..(index + 1) * per_image];
                if mask.shape != shape[1..] || mask.dtype != "<i8" {
                    shape_mismatches += 1;
                    continue;
                }
                total += shape[1] * shape[2];
                equal += mask
                    .data
                    .chunks_exact(8)
                    .zip(theirs.chunks_exact(8))
                    .filter(|(a, b)| a == b)
                    .count();
            }
            format!(
                "masks {}x{}: {equal} of {total} pixels equal ({:.6}), {shape_mismatches} masks of another shape or dtype",
                shape[2],
                shape[1],
                equal as f64 / total.max(1) as f64
            )
        }
        Kind::Embedder => {
            let shape: Vec<usize> = serde_json::from_value(reply["shape"].clone()).unwrap();
            let bytes = fs_err::read(out).unwrap();
            let theirs: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let dimension = shape[1];
            let (mut difference, mut scale) = (0f64, 0f64);
            for (index, file) in files.iter().enumerate() {
                let ours: Vec<f64> = zoo_samples[file][field]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                assert_eq!(ours.len(), dimension, "{file}: embedding dimension");
                for (a, b) in ours
                    .iter()
                    .zip(&theirs[index * dimension..(index + 1) * dimension])
                {
                    difference = difference.max((a - f64::from(*b)).abs());
                    scale = scale.max(f64::from(*b).abs());
                }
            }
            format!(
                "{} embeddings of {dimension}: max abs diff {difference:.2e} (largest value {scale:.2e})",
                files.len()
            )
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = &args[1];
    let count = env_number("ZOO_BENCH_N", 16);
    let rounds = env_number("ZOO_BENCH_ROUNDS", 3).max(1);
    let with_fiftyone = std::env::var_os("ZOO_BENCH_FIFTYONE").is_some();
    let python = std::env::var("ZOO_BENCH_PYTHON")
        .expect("ZOO_BENCH_PYTHON: a Python with torch, torchvision and FiftyOne");
    let script = std::env::var("ZOO_BENCH_FAMILIES_SCRIPT").unwrap();
    let weights = PathBuf::from(std::env::var("ZOO_BENCH_WEIGHTS").unwrap());
    let hub = PathBuf::from(std::env::var("ZOO_BENCH_DINOV2_HUB").unwrap());
    let selected: Option<Vec<String>> = std::env::var("ZOO_BENCH_MODELS")
        .ok()
        .map(|names| names.split(',').map(str::to_owned).collect());
    let rss_counts: Vec<usize> = std::env::var("ZOO_BENCH_RSS_N")
        .unwrap_or_else(|_| "64,512".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    fs_err::create_dir_all(&weights).unwrap();

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
            format!(
                "https://dl.fbaipublicfiles.com/={0};https://openaipublic.azureedge.net/={0};https://github.com/={0}",
                server.url("/")
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
        "N={count} generated 640x480 JPEGs, {cores} cores, libtorch intra-op threads {threads} (PyTorch eager and FiftyOne: torch.set_num_threads({threads})), {rounds} interleaved rounds (medians), load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut py = Python::start(&python, &script, &weights, &hub);
    let mut rows = Vec::new();
    for family in FAMILIES.iter().filter(|family| {
        selected
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == family.short || n == family.name))
    }) {
        let name = family.name;
        let embed = family.kind == Kind::Embedder;
        // The Python side writes the weights (once) and loads FiftyOne's model.
        let Some(loaded) = py.ask(json!({"op": "load", "model": name, "threads": threads})) else {
            continue;
        };
        let file = PathBuf::from(loaded["files"]["weights"].as_str().unwrap());
        let bytes = fs_err::read(&file).unwrap();
        match name {
            "clip-vit-base32-torch" => {
                server.file(
                    "/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
                    bytes,
                );
                server.file(
                    "/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz",
                    fs_err::read(loaded["files"]["tokenizer"].as_str().unwrap()).unwrap(),
                );
            }
            "dinov2-vits14-torch" => {
                server.file("/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth", bytes);
            }
            _ => {
                // The hosted name carries a digest: into the model dir.
                fs_err::write(zoo_dir.join(file.file_name().unwrap()), bytes).unwrap();
            }
        }
        zoo_json(&["models", "download", name, "--quiet"]);

        let mut models = build_models(&zoo_dir, name);
        let workers = models.len();
        let preprocessor = models[0].preprocessor();
        let inputs: Vec<Input> = paths
            .iter()
            .map(|path| {
                let image = zoo_datasets::decode_image(Path::new(path)).unwrap();
                preprocessor.preprocess(image).unwrap()
            })
            .collect();
        // Warm-up: each copy's first forward at the batch shape it will run
        // (oneDNN primitive creation).
        let chunk = zoo_model_core::chunk_len(inputs.len(), BATCH, workers);
        for model in &mut models {
            let first = &inputs[..chunk.min(inputs.len())];
            if embed {
                model.embed_all(first).unwrap();
            } else {
                model.predict_all(first).unwrap();
            }
        }
        let field = format!("bench_{}", family.short.replace('-', "_"));
        let command = if embed { "embed" } else { "apply" };
        let apply = || {
            zoo_json(&[
                "models",
                command,
                name,
                &folder,
                &field,
                "--batch-size",
                &BATCH.to_string(),
                "--workers",
                &workers.to_string(),
                "--overwrite",
                "--json",
                "--quiet",
            ])
        };
        let mut applied = Vec::new();
        let mut model_rates = Vec::new();
        let mut eager: Vec<Vec<f64>> = vec![Vec::new(); family.eager_batches.len()];
        let mut fiftyone = Vec::new();
        let mut dataset = String::new();
        let (eager_out, fiftyone_out) = (
            dir.path().join(format!("{}-eager.out", family.short)),
            dir.path().join(format!("{}-fiftyone.out", family.short)),
        );
        let (mut eager_reply, mut fiftyone_reply) = (None, None);
        for round in 0..rounds {
            let summary = apply();
            applied.push(summary["images_per_second"].as_f64().unwrap());
            dataset = summary["dataset"].as_str().unwrap_or_default().to_owned();
            model_rates.push(model_only(&mut models, &inputs, embed));
            for (slot, batch) in eager.iter_mut().zip(family.eager_batches) {
                // Outputs from the first round at batch 1.
                let out = (round == 0 && *batch == 1).then(|| eager_out.display().to_string());
                let command = json!({"op": "eager", "model": name, "images": paths,
                    "batch": batch, "threads": threads, "out": out});
                if let Some(reply) = py.ask(command) {
                    slot.push(reply["rate"].as_f64().unwrap());
                    if out.is_some() {
                        eager_reply = Some(reply);
                    }
                }
            }
            if with_fiftyone {
                let out = (round == 0).then(|| fiftyone_out.display().to_string());
                let command = json!({"op": "fiftyone", "model": name, "images": paths,
                    "batch": BATCH, "threads": threads, "out": out});
                if let Some(reply) = py.ask(command) {
                    fiftyone.push(reply["rate"].as_f64().unwrap());
                    if out.is_some() {
                        fiftyone_reply = Some(reply);
                    }
                }
            }
            println!(
                "  {} round {}: apply {:.3}, model {:.3}, eager {:?}, FiftyOne {:?} img/s",
                family.short,
                round + 1,
                applied[round],
                model_rates[round],
                eager
                    .iter()
                    .map(|rates| rates.last().copied())
                    .collect::<Vec<_>>(),
                fiftyone.last()
            );
        }
        drop(models);
        let zoo_samples = exported(&zoo_json, dir.path(), &dataset);
        let eager_agreement = eager_reply
            .as_ref()
            .map(|reply| compare(family.kind, &zoo_samples, &field, &files, &eager_out, reply));
        let fiftyone_agreement = fiftyone_reply.as_ref().map(|reply| {
            compare(
                family.kind,
                &zoo_samples,
                &field,
                &files,
                &fiftyone_out,
                reply,
            )
        });
        // Said as soon as known: a long run stopped later keeps them.
        println!(
            "  {} outputs: zoo vs eager: {}; zoo vs FiftyOne: {}",
            family.short,
            eager_agreement.as_deref().unwrap_or("-"),
            fiftyone_agreement.as_deref().unwrap_or("-")
        );
        let apply_rate = median(&mut applied);
        let model_rate = median(&mut model_rates);
        let eager_rates: Vec<Option<f64>> = eager
            .iter_mut()
            .map(|rates| (!rates.is_empty()).then(|| median(rates)))
            .collect();
        let eager_best = eager_rates.iter().flatten().copied().reduce(f64::max);
        let fiftyone_rate = (!fiftyone.is_empty()).then(|| median(&mut fiftyone));
        rows.push((
            family,
            workers,
            apply_rate,
            model_rate,
            eager_rates,
            eager_best,
            fiftyone_rate,
            eager_agreement,
            fiftyone_agreement,
            fiftyone_reply.map(|reply| reply["ragged"].as_bool().unwrap_or(false)),
        ));
    }

    println!();
    println!(
        "| model | N | zoo threads | zoo apply | zoo model-only | apply/model | eager (batch: img/s) | model/eager | apply/eager | FiftyOne | apply/FiftyOne |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (
        family,
        workers,
        apply_rate,
        model_rate,
        eager_rates,
        eager_best,
        fiftyone_rate,
        _,
        _,
        _,
    ) in &rows
    {
        let eager_cells: Vec<String> = family
            .eager_batches
            .iter()
            .zip(eager_rates)
            .map(|(batch, rate)| format!("b{batch}: {}", cell(*rate, 3)))
            .collect();
        println!(
            "| {} | {count} | {workers} x {} | {apply_rate:.3} | {model_rate:.3} | {:.3} | {} | {} | {} | {} | {} |",
            family.short,
            (threads / workers).max(1),
            apply_rate / model_rate,
            eager_cells.join(", "),
            cell(eager_best.map(|eager| model_rate / eager), 3),
            cell(eager_best.map(|eager| apply_rate / eager), 3),
            cell(*fiftyone_rate, 3),
            cell(fiftyone_rate.map(|fiftyone| apply_rate / fiftyone), 3),
        );
    }
    println!();
    println!("outputs, zoo apply/embed (stored, exported) against:");
    for (family, _, _, _, _, _, _, eager_agreement, fiftyone_agreement, ragged) in &rows {
        println!(
            "  {} PyTorch eager: {}",
            family.short,
            eager_agreement.as_deref().unwrap_or("-")
        );
        if let Some(agreement) = fiftyone_agreement {
            println!(
                "  {} FiftyOne (ragged batches: {}): {agreement}",
                family.short,
                ragged.unwrap_or(false)
            );
        }
    }
    println!(
        "zoo apply = `zoo models apply`/`embed` as a user runs it (fresh process, the copies model-only runs, batch {BATCH}), images / the call's wall time (decode, preprocess, forward, SQLite); zoo model-only = predict_all/embed_all on preprocessed inputs in the batches apply cuts (at most {BATCH}, evened out across copies), copies on their own threads as apply runs them, after a warm-up forward at that batch size; eager = the torch module FiftyOne builds (torchvision's / CLIP's / the hub's), `inference_mode`, on FiftyOne's preprocessed inputs, after a warm-up batch; FiftyOne = dataset.apply_model / compute_embeddings (batch_size={BATCH}), after a warm-up on one image; model/eager and apply/eager against the better eager batch size"
    );
    drop(py);

    if !rss_counts.is_empty()
        && selected.as_ref().is_none_or(|names| {
            names
                .iter()
                .any(|n| n == "faster-rcnn" || n == FAMILIES[0].name)
        })
    {
        let mut figures = Vec::new();
        for rss_count in &rss_counts {
            let folder = dir.path().join(format!("rss{rss_count}"));
            pictures(&folder, *rss_count, 640, 480);
            let summary = zoo_json(&[
                "models",
                "apply",
                FAMILIES[0].name,
                folder.to_str().unwrap(),
                "pred",
                "--overwrite",
                "--json",
                "--quiet",
            ]);
            let peak = summary["peak_rss_bytes"].as_f64().unwrap() / 1e6;
            println!(
                "  peak RSS, faster-rcnn apply on {rss_count} images: {peak:.1} MB ({:.3} img/s)",
                summary["images_per_second"].as_f64().unwrap_or(f64::NAN)
            );
            figures.push((rss_count, peak));
        }
        let first = figures[0].1;
        println!(
            "peak RSS of `zoo models apply {}` (its VmHWM): {}",
            FAMILIES[0].name,
            figures
                .iter()
                .map(|(n, peak)| format!("{n} images {peak:.1} MB ({:.3}x)", peak / first))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
