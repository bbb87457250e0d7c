//! Issue 30: FiftyOne's Hugging Face transformers classifiers natively
//! through `zoo`: `vit-base-patch16-224-imagenet-torch` (whose config names
//! no repo: its class's default, `google/vit-base-patch16-224`),
//! `convnext-tiny-224-torch` and `efficientnet-b0-imagenet-torch`, with
//! their repos from the loopback Hub.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/transformers/` (`cargo
//! xtask transformers-oracle`, `xtask/fixtures/transformers_oracle.py`):
//! tiny ViT, ConvNeXt and EfficientNet repos seeded and saved by transformers 5.25's
//! `save_pretrained`, and FiftyOne 1.22.1's own `load_zoo_model(NAME,
//! name_or_path=REPO)` labels (with logits) and embeddings on its pictures.
//! This test serves those repos as the entries' Hub repos; zoo downloads
//! them and runs them natively: labels equal, confidences, logits and
//! embeddings within 1e-4.

use std::path::Path;

use serde_json::Value;
use zoo_test_support::{FakeHub, HubRepo};

use crate::util::{Sandbox, fixtures};

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn max_difference(ours: &[f64], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// Runs `entry` with the fixture repo `folder` served as Hub repo `repo`:
/// `zoo models info` says native, `apply` and `embed` give FiftyOne's.
fn runs_natively_as_fiftyone(entry: &str, repo: &str, folder: &str) {
    let root = fixtures().join("transformers");
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(root.join("transformers_oracle.json")).unwrap())
            .unwrap();
    let expected = oracle[entry].as_object().unwrap();
    let read = |name: &str| fs_err::read(root.join(folder).join(name)).unwrap();
    let hub = FakeHub::start();
    hub.add_repo(
        HubRepo::new(repo, "seeded")
            .file("config.json", read("config.json"))
            .file("preprocessor_config.json", read("preprocessor_config.json"))
            .lfs_file("model.safetensors", read("model.safetensors")),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push(("HF_ENDPOINT".to_owned(), hub.endpoint()));
    let info = sandbox.ok(&["models", "info", entry, "--json"]).json();
    assert_eq!(info["runs_in"], "native", "{info}");
    assert_eq!(info["hugging_face"]["repo"], repo, "{info}");
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in expected.keys() {
        fs_err::copy(root.join(file), images.join(file)).unwrap();
    }
    let dir = images.to_str().unwrap();
    let summary = sandbox
        .ok(&["models", "apply", entry, dir, "pred", "--json"])
        .json();
    assert_eq!(summary["succeeded"], expected.len(), "{summary}");
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let summary = sandbox
        .ok(&["models", "embed", entry, &dataset, "emb", "--json"])
        .json();
    assert_eq!(summary["succeeded"], expected.len(), "{summary}");
    let export = sandbox.dir.path().join("out.jsonl");
    sandbox.ok(&["datasets", "export", &dataset, export.to_str().unwrap()]);
    let mut seen = 0;
    for line in fs_err::read_to_string(&export).unwrap().lines() {
        let sample: Value = serde_json::from_str(line).unwrap();
        let file = Path::new(sample["filepath"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let theirs = &expected[&file];
        let pred = &sample["pred"];
        assert_eq!(pred["_cls"], "Classification", "{file}: {pred}");
        assert_eq!(pred["label"], theirs["label"], "{file}");
        let confidence = pred["confidence"].as_f64().unwrap();
        assert!(
            (confidence - theirs["confidence"].as_f64().unwrap()).abs() <= 1e-4,
            "{file}"
        );
        let logits = zoo_model_core::array_from_json(&pred["logits"])
            .unwrap()
            .to_f32()
            .unwrap();
        let logits: Vec<f64> = logits.into_iter().map(f64::from).collect();
        let difference = max_difference(&logits, &floats(&theirs["logits"]));
        assert!(difference <= 1e-4, "{file}: logits differ by {difference}");
        let difference = max_difference(&floats(&sample["emb"]), &floats(&theirs["embedding"]));
        assert!(
            difference <= 1e-4,
            "{file}: embeddings differ by {difference}"
        );
        seen += 1;
    }
    assert_eq!(seen, expected.len());
}

#[test]
fn vit_builtin_runs_natively_from_the_hub_as_fiftyones_own() {
    runs_natively_as_fiftyone(
        "vit-base-patch16-224-imagenet-torch",
        "google/vit-base-patch16-224",
        "vit",
    );
}

#[test]
fn convnext_builtin_runs_natively_from_the_hub_as_fiftyones_own() {
    runs_natively_as_fiftyone(
        "convnext-tiny-224-torch",
        "facebook/convnext-tiny-224",
        "convnext",
    );
}

#[test]
fn efficientnet_builtin_runs_natively_from_the_hub_as_fiftyones_own() {
    runs_natively_as_fiftyone(
        "efficientnet-b0-imagenet-torch",
        "google/efficientnet-b0",
        "efficientnet",
    );
}
