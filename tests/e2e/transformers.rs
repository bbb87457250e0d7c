//! Issue 30: FiftyOne's Hugging Face transformers classifiers natively
//! through `zoo`: `vit-base-patch16-224-imagenet-torch` (whose config names
//! no repo: its class's default, `google/vit-base-patch16-224`),
//! `convnext-tiny-224-torch`, `efficientnet-b0-imagenet-torch` and
//! `swin-v2-tiny-torch`, with their repos from the loopback Hub.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/transformers/` (`cargo
//! xtask transformers-oracle`, `xtask/fixtures/transformers_oracle.py`):
//! tiny ViT, ConvNeXt, EfficientNet and Swin V2 repos seeded and saved by transformers 5.25's
//! `save_pretrained`, and FiftyOne 1.22.1's own `load_zoo_model(NAME,
//! name_or_path=REPO)` labels (with logits) and embeddings on its pictures.
//! This test serves those repos as the entries' Hub repos; zoo downloads
//! them and runs them natively: labels equal, confidences, logits and
//! embeddings within 1e-4. The zero-shot entries (`pubmed-clip-vit-base-patch32`,
//! `monet-zero-torch` and the generic `zero-shot-classification-transformer-torch`,
//! then `siglip-base-patch16-224-torch` and `medsiglip-448-zero-torch`)
//! run the same way on the CLIP and SigLIP repos of
//! `crates/torch-backend/tests/fixtures/zero_shot/` (`cargo xtask zero-shot-oracle`),
//! `embed-text` included. The DINOv3 feature extractors
//! (`dinov3-vits16-torch`, `dinov3-vith16plus-torch`: FiftyOne's
//! `FiftyOneTransformer`) embed the same way on the DINOv3 repos of
//! `crates/torch-backend/tests/fixtures/transformers/` (`dinov3_oracle.json`).
//! The OWL-ViT zero-shot detectors (`owlvit-base-patch32-torch`,
//! `owlvit-large-patch14-torch`: FiftyOne's
//! `FiftyOneZeroShotTransformerForObjectDetection`) detect the same way on
//! the repo of `crates/torch-backend/tests/fixtures/owlvit/` (`cargo xtask
//! owlvit-oracle`).
//! The Depth Anything V2 depth estimators (`depth-anything-v2-small-torch`:
//! FiftyOne's `FiftyOneTransformerForDepthEstimation`) apply the same way
//! on the seeded repo of `crates/torch-backend/tests/fixtures/depth_anything/`
//! (`cargo xtask depth-anything-oracle`): heatmaps within 1e-4 of
//! FiftyOne's, relative to their largest value.
//! The SegFormer semantic segmenters (`segformer-b0-ade20k-torch`:
//! FiftyOne's `FiftyOneTransformerForSemanticSegmentation`) apply the same
//! way on the SegFormer repo there (`cargo xtask segformer-oracle`,
//! `segformer_oracle.json`: FiftyOne's own `apply_model` masks): the
//! stored masks equal FiftyOne's, `int64`, at the logits' size.

use std::path::Path;

use serde_json::Value;
use zoo_test_support::{FakeHub, HubRepo};

use crate::util::{Sandbox, exported_samples, fixtures, floats, max_difference};

/// Runs `entry` with the fixture repo `folder` served as Hub repo `repo`:
/// `zoo models info` says native, `apply` and `embed` give FiftyOne's.
fn runs_natively_as_fiftyone(entry: &str, repo: &str, folder: &str) {
    runs_natively_as_in("transformers_oracle.json", entry, repo, folder);
}

/// [`runs_natively_as_fiftyone`] against the oracle file `oracle` of
/// `crates/torch-backend/tests/fixtures/transformers`.
fn runs_natively_as_in(oracle: &str, entry: &str, repo: &str, folder: &str) {
    let root = fixtures().join("transformers");
    let oracle: Value = serde_json::from_slice(&fs_err::read(root.join(oracle)).unwrap()).unwrap();
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

/// `swin-v2-tiny-torch` on the tiny Swin V2 repo (`swinv2_oracle.json`:
/// FiftyOne's own `load_zoo_model("swin-v2-tiny-torch", name_or_path=REPO)`),
/// served as microsoft/swinv2-tiny-patch4-window8-256 with that repo's own
/// `preprocessor_config.json`.
#[test]
fn swinv2_builtin_runs_natively_from_the_hub_as_fiftyones_own() {
    runs_natively_as_in(
        "swinv2_oracle.json",
        "swin-v2-tiny-torch",
        "microsoft/swinv2-tiny-patch4-window8-256",
        "swinv2",
    );
}

/// Runs the zero-shot `entry` with the fixture repo `folder` served as Hub
/// repo `repo` (`crates/torch-backend/tests/fixtures/zero_shot`, `cargo xtask
/// zero-shot-oracle`): `zoo models info` says native, and `apply` (the
/// oracle's `classes` and `text_prompt` as `load_zoo_model` kwargs),
/// `embed` and `embed-text` give what FiftyOne 1.22.1's own
/// `load_zoo_model(entry, name_or_path=REPO, ...)` gave.
fn zero_shot_runs_natively_as_fiftyone(entry: &str, repo: &str, folder: &str) {
    let root = fixtures().join("zero_shot");
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(root.join("zero_shot_oracle.json")).unwrap()).unwrap();
    let expected = oracle["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == entry)
        .unwrap();
    let read = |name: &str| fs_err::read(root.join(folder).join(name)).unwrap();
    let hub = FakeHub::start();
    hub.add_repo(
        HubRepo::new(repo, "seeded")
            .file("config.json", read("config.json"))
            .file("processor_config.json", read("processor_config.json"))
            .file("tokenizer_config.json", read("tokenizer_config.json"))
            .lfs_file("tokenizer.json", read("tokenizer.json"))
            .lfs_file("model.safetensors", read("model.safetensors")),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push(("HF_ENDPOINT".to_owned(), hub.endpoint()));
    let info = sandbox.ok(&["models", "info", entry, "--json"]).json();
    assert_eq!(info["runs_in"], "native", "{info}");
    assert_eq!(info["hugging_face"]["repo"], repo, "{info}");
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    let pictures = expected["images"].as_object().unwrap();
    for file in pictures.keys() {
        fs_err::copy(
            fixtures().join("transformers").join(file),
            images.join(file),
        )
        .unwrap();
    }
    let dir = images.to_str().unwrap();
    let kwargs = expected["kwargs"].as_object().unwrap();
    let classes: Vec<&str> = kwargs["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|class| class.as_str().unwrap())
        .collect();
    let classes = classes.join(",");
    let mut command = vec!["models", "apply", entry, dir, "pred", "--classes", &classes];
    let prompt;
    if let Some(text) = kwargs.get("text_prompt") {
        prompt = format!("text_prompt={}", text.as_str().unwrap());
        command.extend(["-k", &prompt]);
    }
    command.push("--json");
    let summary = sandbox.ok(&command).json();
    assert_eq!(summary["succeeded"], pictures.len(), "{summary}");
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let summary = sandbox
        .ok(&["models", "embed", entry, &dataset, "emb", "--json"])
        .json();
    assert_eq!(summary["succeeded"], pictures.len(), "{summary}");
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
        let theirs = &pictures[&file];
        let pred = &sample["pred"];
        assert_eq!(pred["_cls"], "Classification", "{file}: {pred}");
        assert_eq!(pred["label"], theirs["label"], "{entry} {file}");
        let confidence = pred["confidence"].as_f64().unwrap();
        assert!(
            (confidence - theirs["confidence"].as_f64().unwrap()).abs() <= 1e-4,
            "{entry} {file}"
        );
        if theirs["logits"].is_null() {
            assert!(pred["logits"].is_null(), "{entry} {file}: {pred}");
        } else {
            let logits = zoo_model_core::array_from_json(&pred["logits"])
                .unwrap()
                .to_f32()
                .unwrap();
            let logits: Vec<f64> = logits.into_iter().map(f64::from).collect();
            let difference = max_difference(&logits, &floats(&theirs["logits"]));
            assert!(
                difference <= 1e-4,
                "{entry} {file}: logits differ by {difference}"
            );
        }
        let difference = max_difference(&floats(&sample["emb"]), &floats(&theirs["embedding"]));
        assert!(
            difference <= 1e-4,
            "{entry} {file}: embeddings differ by {difference}"
        );
        seen += 1;
    }
    assert_eq!(seen, pictures.len());
    let prompts: Vec<&str> = expected["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|prompt| prompt.as_str().unwrap())
        .collect();
    let mut command = vec!["models", "embed-text", entry];
    command.extend(&prompts);
    let lines = sandbox.ok(&command).lines();
    assert_eq!(lines.len(), prompts.len());
    for (line, theirs) in lines
        .iter()
        .zip(expected["prompt_embeddings"].as_array().unwrap())
    {
        let row: Value = serde_json::from_str(line).unwrap();
        let difference = max_difference(&floats(&row["embedding"]), &floats(theirs));
        assert!(
            difference <= 1e-4,
            "{entry}: a prompt embedding differs by {difference}"
        );
    }
}

/// `pubmed-clip-vit-base-patch32`: transformers' PIL image processor
/// (`use_fast: false`), logits stored.
#[test]
fn pubmed_clip_builtin_runs_natively_from_the_hub_as_fiftyones_own() {
    zero_shot_runs_natively_as_fiftyone(
        "pubmed-clip-vit-base-patch32",
        "flaviagiammarino/pubmed-clip-vit-base-patch32",
        "clip",
    );
}

/// `monet-zero-torch`: the torchvision processor, no logits stored.
#[test]
fn monet_builtin_runs_natively_from_the_hub_as_fiftyones_own() {
    zero_shot_runs_natively_as_fiftyone("monet-zero-torch", "suinleelab/monet", "clip");
}

/// The generic `zero-shot-classification-transformer-torch`, whose config
/// names no repo: its class's default, `openai/clip-vit-large-patch14`.
#[test]
fn generic_zero_shot_builtin_runs_natively_from_the_hub_as_fiftyones_own() {
    zero_shot_runs_natively_as_fiftyone(
        "zero-shot-classification-transformer-torch",
        "openai/clip-vit-large-patch14",
        "clip",
    );
}

/// `siglip-base-patch16-224-torch` (SigLIP 2 with its Gemma tokenizer,
/// texts padded to 64 on the left).
#[test]
fn siglip2_builtin_runs_natively_from_the_hub_as_fiftyones_own() {
    zero_shot_runs_natively_as_fiftyone(
        "siglip-base-patch16-224-torch",
        "google/siglip2-base-patch16-224",
        "siglip",
    );
}

/// `medsiglip-448-zero-torch` (texts padded to the longest).
#[test]
fn medsiglip_builtin_runs_natively_from_the_hub_as_fiftyones_own() {
    zero_shot_runs_natively_as_fiftyone(
        "medsiglip-448-zero-torch",
        "google/medsiglip-448",
        "siglip",
    );
}

/// Runs the DINOv3 `entry` with the fixture repo `folder` served as Hub repo
/// `repo`: `zoo models info` says native, `zoo models embed ENTRY DIR FIELD`
/// downloads the repo and stores FiftyOne's own `compute_embeddings`
/// (`dinov3_oracle.json`) within 1e-4, and `apply` is refused up front
/// (FiftyOne's class has no output processor: no labels to store).
#[allow(clippy::print_stdout)] // the worst difference, as the parity tests print theirs
fn dinov3_embeds_natively_as_fiftyone(entry: &str, repo: &str, folder: &str) {
    let root = fixtures().join("transformers");
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(root.join("dinov3_oracle.json")).unwrap()).unwrap();
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
        .ok(&["models", "embed", entry, dir, "emb", "--json"])
        .json();
    assert_eq!(summary["succeeded"], expected.len(), "{summary}");
    assert_eq!(summary["dimension"], 32, "{summary}");
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let mut seen = 0;
    let mut worst = 0.0f64;
    for (file, sample) in exported_samples(&sandbox, &dataset) {
        let difference = max_difference(
            &floats(&sample["emb"]),
            &floats(&expected[&file]["embedding"]),
        );
        assert!(
            difference <= 1e-4,
            "{entry} {file}: embeddings differ by {difference}"
        );
        worst = worst.max(difference);
        seen += 1;
    }
    assert_eq!(seen, expected.len());
    println!("{entry} through zoo vs FiftyOne 1.22.1: embeddings within {worst:e}");
    let refused = sandbox
        .fails(&["models", "apply", entry, dir, "label"])
        .stderr();
    assert!(
        refused.contains(entry) && refused.contains("zoo models embed"),
        "{refused}"
    );
}

/// `dinov3-vits16-torch` (GELU MLP, 4 registers, the Hub's processor file).
#[test]
fn dinov3_builtin_embeds_natively_from_the_hub_as_fiftyones_own() {
    dinov3_embeds_natively_as_fiftyone(
        "dinov3-vits16-torch",
        "facebook/dinov3-vits16-pretrain-lvd1689m",
        "dinov3",
    );
}

/// `dinov3-vith16plus-torch` (the gated SwiGLU MLP).
#[test]
fn gated_dinov3_builtin_embeds_natively_from_the_hub_as_fiftyones_own() {
    dinov3_embeds_natively_as_fiftyone(
        "dinov3-vith16plus-torch",
        "facebook/dinov3-vith16plus-pretrain-lvd1689m",
        "dinov3_gated",
    );
}

/// `classification-transformer-torch -k name_or_path=facebook/convnext-tiny-224`:
/// zoo fetches that repo alone (not the entry's default ViT repo, which the
/// Hub here does not even hold) into the zoo dir, sees a ConvNeXt in its
/// `config.json` and runs it natively, with FiftyOne's labels (the oracle
/// of `convnext-tiny-224-torch`: the same FiftyOne class with the same
/// effective config on the same repo). The field's provenance names the
/// repo and the commit that ran. A second run fetches nothing; offline it
/// still runs. A repo of an architecture zoo does not build (`beit`) goes
/// to FiftyOne's class in the model host, loading the folder zoo fetched.
#[test]
fn generic_entry_with_another_repo_runs_it_natively_when_zoo_builds_it() {
    let root = fixtures().join("transformers");
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(root.join("transformers_oracle.json")).unwrap())
            .unwrap();
    let expected = oracle["convnext-tiny-224-torch"].as_object().unwrap();
    let read = |name: &str| fs_err::read(root.join("convnext").join(name)).unwrap();
    let hub = FakeHub::start();
    let repo = HubRepo::new("facebook/convnext-tiny-224", "seeded")
        .file("config.json", read("config.json"))
        .file("preprocessor_config.json", read("preprocessor_config.json"))
        .lfs_file("model.safetensors", read("model.safetensors"));
    let commit = repo.commit().to_owned();
    hub.add_repo(repo);
    hub.add_repo(
        HubRepo::new("microsoft/beit-tiny", "seeded")
            .file("config.json", br#"{"model_type": "beit"}"#.to_vec())
            .file("preprocessor_config.json", read("preprocessor_config.json")),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push(("HF_ENDPOINT".to_owned(), hub.endpoint()));
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in expected.keys() {
        fs_err::copy(root.join(file), images.join(file)).unwrap();
    }
    let dir = images.to_str().unwrap();
    let apply = |sandbox: &Sandbox, field: &str| {
        sandbox
            .ok(&[
                "models",
                "apply",
                "classification-transformer-torch",
                dir,
                field,
                "-k",
                "name_or_path=facebook/convnext-tiny-224",
                "--json",
            ])
            .json()
    };
    let summary = apply(&sandbox, "pred");
    assert_eq!(summary["succeeded"], expected.len(), "{summary}");
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    // Only the named repo was fetched, into the zoo dir.
    let paths: Vec<String> = hub
        .hub
        .requests()
        .into_iter()
        .map(|request| request.path)
        .collect();
    assert!(
        paths.iter().all(|path| path.contains("convnext-tiny-224")),
        "{paths:?}"
    );
    let fetched = sandbox
        .zoo_dir()
        .join(".hf-repos/facebook--convnext-tiny-224@main");
    assert!(fetched.join("model.safetensors").is_file());
    let info = sandbox.ok(&["datasets", "info", &dataset, "--json"]).json();
    let provenance = &info["provenance"]["pred"];
    assert_eq!(provenance["runs"], "native", "{info}");
    assert_eq!(
        provenance["hub_repo"], "facebook/convnext-tiny-224",
        "{info}"
    );
    assert_eq!(provenance["commit"], commit.as_str(), "{info}");
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
        seen += 1;
    }
    assert_eq!(seen, expected.len());
    // Fetched once: a second run, offline, asks the Hub nothing.
    hub.hub.clear_requests();
    sandbox.env.push(("ZOO_OFFLINE".to_owned(), "1".to_owned()));
    let summary = apply(&sandbox, "again");
    assert_eq!(summary["succeeded"], expected.len(), "{summary}");
    assert!(hub.hub.requests().is_empty());
    sandbox.env.pop();
    // An architecture zoo does not build: FiftyOne's class, in the model
    // host, on the fetched folder (the test's Python has no transformers,
    // so building it there fails, naming the class).
    let out = sandbox.fails(&[
        "models",
        "apply",
        "classification-transformer-torch",
        dir,
        "beit",
        "-k",
        "name_or_path=microsoft/beit-tiny",
    ]);
    let stderr = out.stderr();
    assert!(
        stderr.contains("FiftyOneTransformerForImageClassification")
            && stderr.contains("model host"),
        "{stderr}"
    );
    assert!(
        sandbox
            .zoo_dir()
            .join(".hf-repos/microsoft--beit-tiny@main/config.json")
            .is_file()
    );
}

/// Runs the OWL-ViT `entry` (FiftyOne's
/// `FiftyOneZeroShotTransformerForObjectDetection`) with the seeded repo of
/// `crates/torch-backend/tests/fixtures/owlvit` (`cargo xtask
/// owlvit-oracle`) served as Hub repo `repo`: `zoo models info` says
/// native, and `apply` with the oracle's `classes` (`--classes`),
/// `text_prompt` and `confidence_thresh` (`-k`) stores the `Detections`
/// FiftyOne 1.22.1's own `load_zoo_model(entry, name_or_path=REPO, ...)` +
/// `apply_model` stored: labels equal, boxes and confidences within 1e-4.
fn owlvit_detects_natively_as_fiftyone(entry: &str, repo: &str) {
    let root = fixtures().join("owlvit");
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(root.join("owlvit_oracle.json")).unwrap()).unwrap();
    let expected = oracle["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == entry)
        .unwrap();
    let read = |name: &str| fs_err::read(root.join("owlvit").join(name)).unwrap();
    let hub = FakeHub::start();
    hub.add_repo(
        HubRepo::new(repo, "seeded")
            .file("config.json", read("config.json"))
            .file("processor_config.json", read("processor_config.json"))
            .file("tokenizer_config.json", read("tokenizer_config.json"))
            .lfs_file("tokenizer.json", read("tokenizer.json"))
            .lfs_file("model.safetensors", read("model.safetensors")),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push(("HF_ENDPOINT".to_owned(), hub.endpoint()));
    let info = sandbox.ok(&["models", "info", entry, "--json"]).json();
    assert_eq!(info["runs_in"], "native", "{info}");
    assert_eq!(info["hugging_face"]["repo"], repo, "{info}");
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    let pictures = expected["images"].as_object().unwrap();
    for file in pictures.keys() {
        fs_err::copy(
            fixtures().join("transformers").join(file),
            images.join(file),
        )
        .unwrap();
    }
    let dir = images.to_str().unwrap();
    let kwargs = expected["kwargs"].as_object().unwrap();
    let classes: Vec<&str> = kwargs["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|class| class.as_str().unwrap())
        .collect();
    let classes = classes.join(",");
    let mut command = vec!["models", "apply", entry, dir, "pred", "--classes", &classes];
    let options: Vec<String> = kwargs
        .iter()
        .filter(|(key, _)| key.as_str() != "classes")
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect();
    for option in &options {
        command.extend(["-k", option]);
    }
    command.push("--json");
    let summary = sandbox.ok(&command).json();
    assert_eq!(summary["succeeded"], pictures.len(), "{summary}");
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let export = sandbox.dir.path().join("out.jsonl");
    sandbox.ok(&["datasets", "export", &dataset, export.to_str().unwrap()]);
    let (mut seen, mut detections) = (0, 0);
    for line in fs_err::read_to_string(&export).unwrap().lines() {
        let sample: Value = serde_json::from_str(line).unwrap();
        let file = Path::new(sample["filepath"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let theirs = pictures[&file]["detections"].as_array().unwrap();
        let pred = &sample["pred"];
        assert_eq!(pred["_cls"], "Detections", "{file}: {pred}");
        let ours = pred["detections"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{entry} {file}");
        for (ours, theirs) in ours.iter().zip(theirs) {
            assert_eq!(ours["_cls"], "Detection", "{entry} {file}");
            assert_eq!(ours["label"], theirs["label"], "{entry} {file}");
            let boxes = max_difference(
                &floats(&ours["bounding_box"]),
                &floats(&theirs["bounding_box"]),
            );
            let confidence = (ours["confidence"].as_f64().unwrap()
                - theirs["confidence"].as_f64().unwrap())
            .abs();
            assert!(
                boxes <= 1e-4 && confidence <= 1e-4,
                "{entry} {file}: boxes differ by {boxes}, confidences by {confidence}"
            );
        }
        detections += ours.len();
        seen += 1;
    }
    assert_eq!(seen, pictures.len());
    assert!(detections > 0, "{entry}: the oracle detects");
}

/// `owlvit-base-patch32-torch`, `--classes` only: every patch is a
/// detection (FiftyOne's threshold is `confidence_thresh or 0`).
#[test]
fn owlvit_base_patch32_builtin_detects_natively_from_the_hub_as_fiftyones_own() {
    owlvit_detects_natively_as_fiftyone("owlvit-base-patch32-torch", "google/owlvit-base-patch32");
}

/// `owlvit-large-patch14-torch` with prompts of different lengths (padded,
/// with their attention mask) and `confidence_thresh`.
#[test]
fn owlvit_large_patch14_builtin_detects_natively_from_the_hub_as_fiftyones_own() {
    owlvit_detects_natively_as_fiftyone(
        "owlvit-large-patch14-torch",
        "google/owlvit-large-patch14",
    );
}

/// `depth-anything-v2-small-torch` with the seeded Depth Anything repo
/// served as `depth-anything/Depth-Anything-V2-Small-hf`: `zoo models info`
/// says native, and `zoo models apply` stores FiftyOne's heatmaps (a
/// `float32` map at the processed size, divided by its maximum, no range).
#[test]
fn depth_anything_builtin_applies_natively_from_the_hub_as_fiftyones_own() {
    let (entry, repo) = (
        "depth-anything-v2-small-torch",
        "depth-anything/Depth-Anything-V2-Small-hf",
    );
    let root = fixtures().join("depth_anything");
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(root.join("oracle.json")).unwrap()).unwrap();
    let expected = oracle[entry].as_object().unwrap();
    let read = |name: &str| fs_err::read(root.join("repo").join(name)).unwrap();
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
        fs_err::copy(
            fixtures().join("transformers").join(file),
            images.join(file),
        )
        .unwrap();
    }
    let summary = sandbox
        .ok(&[
            "models",
            "apply",
            entry,
            images.to_str().unwrap(),
            "depth",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], expected.len(), "{summary}");
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
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
        let depth = &sample["depth"];
        assert_eq!(depth["_cls"], "Heatmap", "{file}: {depth}");
        assert_eq!(depth["range"], Value::Null, "{file}");
        let map = zoo_model_core::array_from_json(&depth["map"]).unwrap();
        assert_eq!(map.dtype, theirs["dtype"].as_str().unwrap(), "{file}");
        let shape: Vec<usize> = floats(&theirs["shape"])
            .into_iter()
            .map(|side| side as usize)
            .collect();
        assert_eq!(map.shape, shape, "{file}");
        let ours: Vec<f64> = map.to_f32().unwrap().into_iter().map(f64::from).collect();
        let theirs = floats(&theirs["map"]);
        let scale = theirs
            .iter()
            .fold(0.0f64, |max, value| max.max(value.abs()));
        let difference = max_difference(&ours, &theirs) / scale;
        assert!(
            difference <= 1e-4,
            "{file}: heatmap differs by {difference} (relative)"
        );
        seen += 1;
    }
    assert_eq!(seen, expected.len());
}

/// `segformer-b0-ade20k-torch` with the seeded SegFormer repo served as
/// nvidia/segformer-b0-finetuned-ade-512-512: `zoo models info` says
/// native, and `zoo models apply` stores FiftyOne's own masks (the oracle
/// has no pixel within 1e-5 of a tie, so every pixel must agree).
#[test]
fn segformer_builtin_stores_fiftyones_own_masks() {
    let root = fixtures().join("transformers");
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(root.join("segformer_oracle.json")).unwrap()).unwrap();
    let entry = "segformer-b0-ade20k-torch";
    let repo = "nvidia/segformer-b0-finetuned-ade-512-512";
    let expected = oracle[entry].as_object().unwrap();
    let read = |name: &str| fs_err::read(root.join("segformer").join(name)).unwrap();
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
    let summary = sandbox
        .ok(&[
            "models",
            "apply",
            entry,
            images.to_str().unwrap(),
            "seg",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], expected.len(), "{summary}");
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let mut seen = 0;
    for (file, sample) in exported_samples(&sandbox, &dataset) {
        let theirs = &expected[&file];
        assert_eq!(sample["seg"]["_cls"], "Segmentation", "{file}");
        let mask = zoo_model_core::array_from_json(&sample["seg"]["mask"]).unwrap();
        assert_eq!(mask.dtype, theirs["mask_dtype"].as_str().unwrap(), "{file}");
        assert_eq!(
            serde_json::json!(mask.shape),
            theirs["mask_shape"],
            "{file}"
        );
        let ours: Vec<i64> = mask
            .data
            .chunks_exact(8)
            .map(|bytes| i64::from_le_bytes(bytes.try_into().unwrap()))
            .collect();
        let want: Vec<i64> = theirs["mask"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_i64().unwrap())
            .collect();
        assert_eq!(ours, want, "{file}");
        seen += 1;
    }
    assert_eq!(seen, expected.len());
    // FiftyOne's `-k` options: `confidence_thresh` applies, one zoo does
    // not reproduce is refused by name.
    sandbox.ok(&[
        "models",
        "apply",
        entry,
        &dataset,
        "seg_thresh",
        "-k",
        "confidence_thresh=0.9",
    ]);
    let zeroed = exported_samples(&sandbox, &dataset)
        .iter()
        .map(|(_, sample)| {
            let mask = zoo_model_core::array_from_json(&sample["seg_thresh"]["mask"]).unwrap();
            mask.data
                .chunks_exact(8)
                .filter(|bytes| i64::from_le_bytes((*bytes).try_into().unwrap()) == 0)
                .count()
        })
        .sum::<usize>();
    assert!(zeroed > 0, "confidence_thresh=0.9 zeroes some pixels");
    let refused = sandbox.fails(&[
        "models",
        "apply",
        entry,
        &dataset,
        "seg_bad",
        "-k",
        r#"transformers_processor_kwargs={"do_resize": false}"#,
    ]);
    let stderr = refused.stderr();
    assert!(
        stderr.contains("transformers_processor_kwargs.do_resize"),
        "{stderr}"
    );
}
