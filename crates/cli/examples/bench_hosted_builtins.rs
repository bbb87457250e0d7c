//! Benchmark: FiftyOne built-ins that came to zoo through the model host,
//! `zoo models apply` against FiftyOne's own `load_zoo_model(NAME)` +
//! `apply_model` on the same weights and the same JPEGs, interleaved round
//! by round in one run: `yolov8n-seg-coco-torch` (Ultralytics, weights
//! seeded by Ultralytics in its release format, from a loopback mirror of
//! the release host; FiftyOne's class in the host, so the difference is
//! what is around the forward) and `convnext-tiny-224-torch` (transformers,
//! a small ConvNeXt seeded by transformers, from the loopback Hub; zoo now
//! runs it natively, `zoo models info` says which).
//! Run through `cargo xtask bench hosted-builtins`.
//!
//! Environment: `ZOO_BENCH_PYTHON` (required: a Python with torch,
//! ultralytics, transformers and FiftyOne 1.22.1, the oracle venv),
//! `ZOO_BENCH_N` (images, default 64), `ZOO_BENCH_ROUNDS` (default 3).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use image::ImageEncoder;
use serde_json::{Value, json};
use zoo_test_support::{
    FIFTYONE_APPLIES, FakeHub, FiftyOne, HubRepo, MongoServer, SEED_CONVNEXT, SEED_YOLO,
    TestServer, ULTRALYTICS_RELEASES, seed,
};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Smooth pictures with mild noise, 640x480, JPEG quality 90.
fn pictures(dir: &Path, count: usize) -> Vec<String> {
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
                image::imageops::resize(&low, 640, 480, image::imageops::FilterType::CatmullRom);
            for value in picture.iter_mut() {
                let noise = (next() % 17) as i16 - 8;
                *value = (*value as i16 + noise).clamp(0, 255) as u8;
            }
            let file = std::io::BufWriter::new(fs_err::File::create(&path).unwrap());
            image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
                .write_image(&picture, 640, 480, image::ExtendedColorType::Rgb8)
                .unwrap();
            path.display().to_string()
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// How one entry's weights reach zoo and FiftyOne.
enum Weights {
    /// An Ultralytics release file (its path under the release host, the
    /// name FiftyOne keeps it under), seeded from a model yaml.
    Release {
        yaml: &'static str,
        release: &'static str,
        filename: &'static str,
    },
    /// A Hub repo seeded by a script.
    Hub {
        repo: &'static str,
        script: &'static str,
    },
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = &args[1];
    let Ok(python) = std::env::var("ZOO_BENCH_PYTHON") else {
        println!(
            "hosted-builtins: skipped (set ZOO_BENCH_PYTHON to a Python with torch, ultralytics, transformers and fiftyone 1.22.1; `cargo xtask bench hosted-builtins` uses the oracle venv)"
        );
        return;
    };
    let count = env_number("ZOO_BENCH_N", 64);
    let rounds = env_number("ZOO_BENCH_ROUNDS", 3).max(1);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("images");
    let images = pictures(&folder, count);
    let folder = folder.display().to_string();
    let server = TestServer::start();
    let hub = FakeHub::start();
    let entries = [
        (
            "yolov8n-seg-coco-torch",
            Weights::Release {
                yaml: "yolov8n-seg.yaml",
                release: "v8.1.0/yolov8n-seg.pt",
                filename: "yolov8n-seg-coco.pt",
            },
        ),
        (
            "convnext-tiny-224-torch",
            Weights::Hub {
                repo: "facebook/convnext-tiny-224",
                script: SEED_CONVNEXT,
            },
        ),
    ];
    let home = dir.path().join("home");
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
        ("HOME", home.display().to_string()),
        ("YOLO_OFFLINE", "1".to_owned()),
        ("HF_ENDPOINT", hub.endpoint()),
        ("HF_HUB_DISABLE_XET", "1".to_owned()),
        (
            "ZOO_DOWNLOAD_MIRRORS",
            format!("{ULTRALYTICS_RELEASES}={}", server.url("/releases/")),
        ),
    ];
    let zoo_run = |args: &[&str]| {
        let output = Command::new(zoo)
            .args(args)
            .envs(env.iter().map(|(key, value)| (*key, value)))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "zoo {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    // FiftyOne's private database service is shared by every FiftyOne
    // process of the machine and ends with the one that started it: the
    // bench runs FiftyOne on a mongod of its own.
    let mongo = MongoServer::start(&python);
    let mut fiftyone = FiftyOne::start_on(&python, &mongo.uri);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "hosted built-ins vs FiftyOne's own load_zoo_model + apply_model, {count} JPEGs 640x480, default batch sizes, {cores} cores; medians of {rounds} interleaved rounds (model loaded outside the timed part on both sides)"
    );
    println!(
        "{:<26} {:>8} {:>8} {:>9} {:>7}",
        "model", "zoo run", "zoo cmd", "FiftyOne", "FO/zoo"
    );
    for (name, weights) in &entries {
        let mut oracle = json!({
            "zoo": dir.path().join(format!("fiftyone-zoo-{name}")),
            "name": name,
            "images": images,
            "env": {"HF_ENDPOINT": hub.endpoint(), "HF_HUB_DISABLE_XET": "1",
                    "HF_HOME": dir.path().join("fiftyone-hf")},
        });
        match weights {
            Weights::Release {
                yaml,
                release,
                filename,
            } => {
                let file = dir.path().join(filename);
                seed(&python, SEED_YOLO, &[file.to_str().unwrap(), yaml], &home);
                server.file(
                    &format!("/releases/{release}"),
                    fs_err::read(&file).unwrap(),
                );
                oracle["weights"] = json!(file);
                oracle["filename"] = json!(filename);
            }
            Weights::Hub { repo, script } => {
                let out = dir.path().join(repo.replace('/', "--"));
                seed(&python, script, &[out.to_str().unwrap()], &home);
                let read = |file: &str| fs_err::read(out.join(file)).unwrap();
                hub.add_repo(
                    HubRepo::new(repo, "bench")
                        .file("config.json", read("config.json"))
                        .file("preprocessor_config.json", read("preprocessor_config.json"))
                        .lfs_file("model.safetensors", read("model.safetensors")),
                );
            }
        }
        zoo_run(&["models", "download", name]);
        let mut columns: [Vec<f64>; 4] = Default::default();
        for _ in 0..rounds {
            let started = Instant::now();
            let output = zoo_run(&[
                "models",
                "apply",
                name,
                &folder,
                "pred",
                "--overwrite",
                "--json",
                "--quiet",
            ]);
            let whole = started.elapsed().as_secs_f64();
            let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
            let run = summary["seconds"].as_f64().unwrap();
            let theirs = fiftyone.run(FIFTYONE_APPLIES, oracle.clone())["seconds"]
                .as_f64()
                .unwrap();
            println!(
                "    round {name}: zoo run {run:.2} s (command {whole:.2} s), FiftyOne {theirs:.2} s"
            );
            for (column, value) in columns.iter_mut().zip([run, whole, theirs, theirs / run]) {
                column.push(value);
            }
        }
        let [run, whole, theirs, ratio] = columns.map(|mut values| median(&mut values));
        println!("{name:<26} {run:>8.2} {whole:>8.2} {theirs:>9.2} {ratio:>7.3}");
    }
    println!(
        "zoo run = the apply's own seconds (`--json` `seconds`, the host already loaded); zoo cmd = the whole `zoo models apply` process (starting Python, importing torch and FiftyOne, load_model); FiftyOne = dataset.apply_model alone; FO/zoo = per-round ratio, >= 0.95 means zoo is within 5% of FiftyOne or faster"
    );
}
