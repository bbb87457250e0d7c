//! Hugging Face zero-shot classifiers against FiftyOne 1.22.1: the oracle
//! (`tests/fixtures/zero_shot/zero_shot_oracle.json`, made by `cargo xtask
//! zero-shot-oracle`) ran FiftyOne's own `load_zoo_model(NAME,
//! name_or_path=REPO, classes=..., text_prompt=...)` with `apply_model`,
//! `compute_embeddings` and `embed_prompts`, for
//! `pubmed-clip-vit-base-patch32` (transformers' PIL image processor),
//! `monet-zero-torch` (the torchvision one, no logits stored) and the
//! generic `zero-shot-classification-transformer-torch`, on a tiny seeded
//! `CLIPModel` repo, and for `siglip-base-patch16-224-torch` and
//! `medsiglip-448-zero-torch` on a tiny `SiglipModel` repo (tokenizers
//! included) that transformers 5.25's `save_pretrained` wrote (committed
//! beside it), on one thread; the pictures are the transformers classifier
//! fixtures'.
//!
//! Pixel values must be equal bit for bit (libtorch's `uint8` resampling
//! and Pillow's); logits, confidences and embeddings within [`TOLERANCE`];
//! labels equal.

use std::path::PathBuf;

use serde_json::{Value, json};
use zoo_model_core::{Input, InputData, Label, Model, ModelSpec, Prediction};
use zoo_torch_backend::TorchZeroShotTransformerModel;

use crate::fixtures;

/// The largest difference allowed in a logit, confidence or embedding value.
const TOLERANCE: f64 = 1e-4;

fn folder() -> PathBuf {
    fixtures().join("zero_shot")
}

fn pictures() -> PathBuf {
    fixtures().join("transformers")
}

fn oracle() -> Value {
    serde_json::from_str(&fs_err::read_to_string(folder().join("zero_shot_oracle.json")).unwrap())
        .unwrap()
}

/// FiftyOne 1.22.1's manifest config of each entry the oracle ran.
fn manifest_config(name: &str) -> Value {
    match name {
        "pubmed-clip-vit-base-patch32" => json!({
            "name_or_path": "flaviagiammarino/pubmed-clip-vit-base-patch32",
            "transforms_args": {"use_fast": false},
            "transformers_processor_kwargs": {"padding": true}
        }),
        "monet-zero-torch" => json!({
            "name_or_path": "suinleelab/monet",
            "transformers_processor_kwargs": {"padding": true},
            "output_processor_args": {"logits_key": "logits_per_image"}
        }),
        "zero-shot-classification-transformer-torch" => json!({
            "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
            "transforms_args": {"use_fast": false}
        }),
        "siglip-base-patch16-224-torch" => json!({
            "name_or_path": "google/siglip2-base-patch16-224",
            "transformers_processor_kwargs": {"padding": "max_length", "max_length": 64}
        }),
        "medsiglip-448-zero-torch" => json!({
            "name_or_path": "google/medsiglip-448",
            "transformers_processor_kwargs": {"padding": true},
            "output_processor_args": {"store_logits": true, "logits_key": "logits_per_image"}
        }),
        other => panic!("no manifest config for {other}"),
    }
}

fn model(repo: &str, config: Value) -> Result<TorchZeroShotTransformerModel, String> {
    model_at(&folder().join(repo), config)
}

fn largest_difference(ours: &[f32], theirs: &Value) -> f64 {
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (f64::from(*a) - f64::from(b.as_f64().unwrap() as f32)).abs())
        .fold(0.0, f64::max)
}

/// The largest differences over one entry's pictures.
#[derive(Debug, Default)]
struct Differences {
    logits: f64,
    confidence: f64,
    embeddings: f64,
    prompt_embeddings: f64,
}

fn check(entry: &Value) -> Differences {
    check_in(&folder(), entry)
}

/// [`check`] on the repos of `root`.
fn check_in(root: &std::path::Path, entry: &Value) -> Differences {
    let name = entry["name"].as_str().unwrap();
    let mut config = manifest_config(name);
    for (key, value) in entry["kwargs"].as_object().unwrap() {
        config[key] = value.clone();
    }
    let mut model = model_at(&root.join(entry["repo"].as_str().unwrap()), config).unwrap();
    assert!(!model.ragged_batches(), "{name}: one size after the crop");
    let preprocessor = model.preprocessor();
    let mut seen = Differences::default();
    let mut inputs: Vec<Input> = Vec::new();
    let expected_images = entry["images"].as_object().unwrap();
    for (picture, expected) in expected_images {
        let image = zoo_datasets::decode_image(&pictures().join(picture)).unwrap();
        let input = preprocessor.preprocess(image).unwrap();
        let InputData::Values(values) = &input.data else {
            panic!("transformers inputs are values");
        };
        if !expected["pixel_values"].is_null() {
            let pixels = largest_difference(values, &expected["pixel_values"]);
            assert!(
                pixels == 0.0,
                "{name} {picture}: pixel values differ by {pixels}"
            );
        }
        let prediction = model.predict_all(std::slice::from_ref(&input)).unwrap();
        let [
            Prediction::Label(Some(Label::Classification {
                label,
                confidence,
                logits,
            })),
        ] = &prediction[..]
        else {
            panic!("{name} {picture}: {prediction:?}");
        };
        assert_eq!(
            label,
            expected["label"].as_str().unwrap(),
            "{name} {picture}"
        );
        let confidence = (confidence.unwrap() - expected["confidence"].as_f64().unwrap()).abs();
        let logits = match (&expected["logits"], logits) {
            (Value::Null, None) => 0.0,
            (theirs @ Value::Array(_), Some(ours)) => largest_difference(ours, theirs),
            (theirs, ours) => panic!("{name} {picture}: logits {ours:?}, FiftyOne's {theirs}"),
        };
        let embedding = model.embed_all(std::slice::from_ref(&input)).unwrap();
        let embeddings = largest_difference(&embedding[0], &expected["embedding"]);
        assert!(
            confidence <= TOLERANCE && logits <= TOLERANCE && embeddings <= TOLERANCE,
            "{name} {picture}: confidence {confidence}, logits {logits}, embedding {embeddings}"
        );
        seen.logits = seen.logits.max(logits);
        seen.confidence = seen.confidence.max(confidence);
        seen.embeddings = seen.embeddings.max(embeddings);
        inputs.push(input);
    }
    // One batch of every picture gives the same labels and embeddings.
    let batched = model.predict_all(&inputs).unwrap();
    for ((picture, expected), prediction) in expected_images.iter().zip(&batched) {
        let Prediction::Label(Some(Label::Classification { label, .. })) = prediction else {
            panic!("{name} {picture} batched: {prediction:?}");
        };
        assert_eq!(
            label,
            expected["label"].as_str().unwrap(),
            "{name} {picture} batched"
        );
    }
    let batched = model.embed_all(&inputs).unwrap();
    for ((picture, expected), ours) in expected_images.iter().zip(&batched) {
        let difference = largest_difference(ours, &expected["embedding"]);
        assert!(
            difference <= TOLERANCE,
            "{name} {picture} batched: {difference}"
        );
    }
    // `embed_prompts`, padded together as FiftyOne's processor pads them.
    let prompts: Vec<String> = entry["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|prompt| prompt.as_str().unwrap().to_owned())
        .collect();
    let ours = model.embed_prompts(&prompts).unwrap();
    for (index, expected) in entry["prompt_embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let difference = largest_difference(&ours[index], expected);
        assert!(
            difference <= TOLERANCE,
            "{name} prompt {index}: {difference}"
        );
        seen.prompt_embeddings = seen.prompt_embeddings.max(difference);
    }
    println!("{name} vs FiftyOne 1.22.1: {seen:?}");
    seen
}

/// The oracle's entries on `repo`, which must be `expected`.
fn check_repo(repo: &str, expected: &[&str]) {
    tch::set_num_threads(1);
    let oracle = oracle();
    let models: Vec<&Value> = oracle["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["repo"] == repo)
        .collect();
    let names: Vec<&str> = models
        .iter()
        .map(|entry| entry["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected);
    for entry in models {
        check(entry);
    }
}

/// `pubmed-clip-vit-base-patch32`, `monet-zero-torch` and
/// `zero-shot-classification-transformer-torch` on the CLIP repo.
#[test]
fn clip_zero_shot_matches_fiftyones_own_classifier_and_embeddings() {
    check_repo(
        "clip",
        &[
            "pubmed-clip-vit-base-patch32",
            "monet-zero-torch",
            "zero-shot-classification-transformer-torch",
        ],
    );
}

/// `siglip-base-patch16-224-torch` (texts padded to 64, on the left, as
/// the Gemma tokenizer pads) and `medsiglip-448-zero-torch` (padded to the
/// longest) on the SigLIP repo.
#[test]
fn siglip_zero_shot_matches_fiftyones_own_classifier_and_embeddings() {
    check_repo(
        "siglip",
        &["siglip-base-patch16-224-torch", "medsiglip-448-zero-torch"],
    );
}

/// Configs zoo cannot run as FiftyOne would are errors naming the field.
#[test]
fn configs_zoo_does_not_run_are_refused_by_name() {
    for (config, expected) in [
        (
            json!({"output_processor_args": {"store_logits": true}}),
            "logits_key",
        ),
        (
            json!({"transformers_processor_kwargs": {"return_overflowing_tokens": true}}),
            "return_overflowing_tokens",
        ),
        (
            json!({"transformers_processor_kwargs": {"padding": "sideways"}}),
            "sideways",
        ),
        (json!({"transforms_args": {"backend": "pil"}}), "backend"),
        (
            json!({"entrypoint_fcn": "my.module.build"}),
            "entrypoint_fcn",
        ),
    ] {
        let error = model("clip", config.clone()).unwrap_err();
        assert!(error.contains(expected), "{config}: {error}");
    }
    // A prompt beyond the model's 77 positions, without truncation.
    let mut model = model("clip", json!({"classes": ["cat"]})).unwrap();
    let long = vec![["word"; 100].join(" ")];
    let error = model.embed_prompts(&long).unwrap_err().to_string();
    assert!(error.contains("max_position_embeddings"), "{error}");
}

/// A copy of the fixture repo `repo` with `config.json` edited by `edit`.
fn edited_repo(repo: &str, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs_err::read_dir(folder().join(repo)).unwrap() {
        let entry = entry.unwrap();
        fs_err::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut config: Value = serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
    edit(&mut config);
    fs_err::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    dir
}

fn model_at(dir: &std::path::Path, config: Value) -> Result<TorchZeroShotTransformerModel, String> {
    let Value::Object(config) = config else {
        panic!("a config is an object");
    };
    let spec = ModelSpec {
        kind: "FiftyOneZeroShotTransformerForImageClassification".into(),
        config,
        model_path: Some(dir.to_owned()),
    };
    TorchZeroShotTransformerModel::from_spec(&spec).map_err(|err| err.to_string())
}

/// Configs written before transformers' PR #24773 say `eos_token_id` 2 and
/// pool the highest id's first position: on the fixture repo, whose
/// end-of-text id is its highest, the prompt embeddings are FiftyOne's.
#[test]
fn legacy_eos_token_id_pools_the_highest_id() {
    tch::set_num_threads(1);
    let oracle = oracle();
    let entry = &oracle["models"][0];
    let dir = edited_repo("clip", |config| {
        config["text_config"]["eos_token_id"] = json!(2);
    });
    let mut model = model_at(dir.path(), manifest_config(entry["name"].as_str().unwrap())).unwrap();
    let prompts: Vec<String> = entry["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|prompt| prompt.as_str().unwrap().to_owned())
        .collect();
    let ours = model.embed_prompts(&prompts).unwrap();
    for (row, theirs) in ours
        .iter()
        .zip(entry["prompt_embeddings"].as_array().unwrap())
    {
        assert!(largest_difference(row, theirs) <= TOLERANCE);
    }
}

/// A `config.json` that does not fit the weights, or names what zoo does not
/// build, is an error naming the field or tensor.
#[test]
fn hostile_zero_shot_configs_are_errors_naming_the_cause() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "clip",
            Box::new(|config| config["text_config"]["hidden_size"] = json!(48)),
            "text_model.",
        ),
        (
            "clip",
            Box::new(|config| config["text_config"]["eos_token_id"] = json!([1, 2])),
            "eos_token_id",
        ),
        (
            "clip",
            Box::new(|config| config["vision_config"]["hidden_act"] = json!("swishy")),
            "swishy",
        ),
        (
            "clip",
            Box::new(|config| config["model_type"] = json!("blip")),
            "`blip`",
        ),
        (
            "siglip",
            Box::new(|config| config["vision_config"]["vision_use_head"] = json!(false)),
            "vision_use_head",
        ),
        (
            "siglip",
            Box::new(|config| config["text_config"]["projection_size"] = json!(16)),
            "projection_size",
        ),
        (
            "siglip",
            Box::new(|config| config["vision_config"]["num_hidden_layers"] = json!(1)),
            "vision_model.encoder.layers.1",
        ),
    ];
    for (repo, edit, expected) in cases {
        let dir = edited_repo(repo, edit);
        let error = model_at(dir.path(), json!({})).unwrap_err();
        assert!(error.contains(expected), "{repo}: {error}");
    }
}

/// The full-size seeded CLIP ViT-B/32 and SigLIP base repos `cargo xtask
/// zero-shot-oracle` writes into the cache (600 and 800 MB, not committed),
/// as `pubmed-clip-vit-base-patch32` and `siglip-base-patch16-224-torch`
/// run them: transformers' default sizes, every layer; skipped when absent.
#[test]
fn full_size_zero_shot_matches_fiftyone_when_its_oracle_is_cached() {
    let Some(cache) = std::env::var_os("ZOO_ZERO_SHOT_ORACLE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .map(|cache| cache.join("zoo/zero-shot-oracle"))
        })
    else {
        return;
    };
    let Ok(text) = fs_err::read_to_string(cache.join("zero_shot_oracle.json")) else {
        println!(
            "no cached zero-shot oracle under {}: skipped",
            cache.display()
        );
        return;
    };
    tch::set_num_threads(1);
    let oracle: Value = serde_json::from_str(&text).unwrap();
    for entry in oracle["models"].as_array().unwrap() {
        check_in(&cache, entry);
    }
}
