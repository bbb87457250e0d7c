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
//! The SegFormer semantic segmenters (`segformer-b0-ade20k-torch`:
//! FiftyOne's `FiftyOneTransformerForSemanticSegmentation`) apply the same
//! way on the SegFormer repo there (`cargo xtask segformer-oracle`,
//! `segformer_oracle.json`: FiftyOne's own `apply_model` masks): the
//! stored masks equal FiftyOne's, `int64`, at the logits' size.

use std::path::Path;

use serde_json::Value;
use zoo_test_support::{FakeHub, HubRepo};

use crate::util::{Sandbox, exported_samples, fixtures};

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
