//! OWL-ViT zero-shot detection against FiftyOne 1.22.1: the oracle
//! (`tests/fixtures/owlvit/owlvit_oracle.json`, made by `cargo xtask
//! owlvit-oracle`) ran FiftyOne's own `load_zoo_model(NAME,
//! name_or_path=REPO, classes=..., ...)` and `apply_model` for
//! `owlvit-base-patch32-torch`, `owlvit-base-patch16-torch` (with
//! `text_prompt`) and `owlvit-large-patch14-torch` (prompts of different
//! lengths, so padded, and `confidence_thresh`) on a tiny seeded
//! `OwlViTForObjectDetection` repo that transformers 5.25's
//! `save_pretrained` wrote (committed beside it), on one thread; the
//! pictures are the transformers classifier fixtures'.
//!
//! Pixel values must be equal bit for bit; detections come in FiftyOne's
//! order (patch by patch) with equal labels, boxes (relative `[x, y, w,
//! h]`) and confidences within [`TOLERANCE`].

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use zoo_model_core::{Detection, Input, InputData, Label, Model, ModelSpec, Prediction};
use zoo_torch_backend::TorchZeroShotTransformerDetector;

use crate::fixtures;

/// The largest difference allowed in a box coordinate or confidence.
const TOLERANCE: f64 = 1e-4;

fn folder() -> PathBuf {
    fixtures().join("owlvit")
}

fn oracle() -> Value {
    serde_json::from_str(&fs_err::read_to_string(folder().join("owlvit_oracle.json")).unwrap())
        .unwrap()
}

/// FiftyOne 1.22.1's manifest config of each entry the oracle ran.
fn manifest_config(name: &str) -> Value {
    let repo = match name {
        "owlvit-base-patch32-torch" => "google/owlvit-base-patch32",
        "owlvit-base-patch16-torch" => "google/owlvit-base-patch16",
        "owlvit-large-patch14-torch" => "google/owlvit-large-patch14",
        other => panic!("no manifest config for {other}"),
    };
    json!({ "name_or_path": repo })
}

fn model_at(dir: &Path, config: Value) -> Result<TorchZeroShotTransformerDetector, String> {
    let Value::Object(config) = config else {
        panic!("a config is an object");
    };
    let spec = ModelSpec {
        kind: "fiftyone.utils.transformers.FiftyOneZeroShotTransformerForObjectDetection".into(),
        config,
        model_path: Some(dir.to_owned()),
    };
    TorchZeroShotTransformerDetector::from_spec(&spec).map_err(|err| err.to_string())
}

/// The largest box and confidence differences of `ours` from FiftyOne's
/// `theirs`, whose labels must be equal, one for one.
fn compare(what: &str, ours: &[Detection], theirs: &Value) -> (f64, f64) {
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{what}: detections");
    let (mut boxes, mut scores) = (0.0f64, 0.0f64);
    for (index, (ours, theirs)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(
            ours.label,
            theirs["label"].as_str().unwrap(),
            "{what}: detection {index}"
        );
        for (a, b) in ours
            .bounding_box
            .iter()
            .zip(theirs["bounding_box"].as_array().unwrap())
        {
            boxes = boxes.max((a - b.as_f64().unwrap()).abs());
        }
        let score = ours.confidence.unwrap() - theirs["confidence"].as_f64().unwrap();
        scores = scores.max(score.abs());
    }
    (boxes, scores)
}

fn detections(prediction: &Prediction) -> &[Detection] {
    match prediction {
        Prediction::Label(Some(Label::Detections(detections))) => detections,
        other => panic!("not detections: {other:?}"),
    }
}

/// Every entry of the oracle, one picture at a time and all in one batch:
/// FiftyOne's detections.
#[test]
fn owlvit_detections_match_fiftyones_own_apply_model() {
    tch::set_num_threads(1);
    let oracle = oracle();
    let models = oracle["models"].as_array().unwrap();
    let names: Vec<&str> = models
        .iter()
        .map(|entry| entry["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "owlvit-base-patch32-torch",
            "owlvit-base-patch16-torch",
            "owlvit-large-patch14-torch"
        ]
    );
    for entry in models {
        let name = entry["name"].as_str().unwrap();
        let mut config = manifest_config(name);
        for (key, value) in entry["kwargs"].as_object().unwrap() {
            config[key] = value.clone();
        }
        let mut model = model_at(&folder().join(entry["repo"].as_str().unwrap()), config).unwrap();
        assert!(!model.ragged_batches(), "{name}: one input size");
        let preprocessor = model.preprocessor();
        let (mut boxes, mut scores, mut count) = (0.0f64, 0.0f64, 0);
        let mut inputs: Vec<Input> = Vec::new();
        let images = entry["images"].as_object().unwrap();
        for (picture, expected) in images {
            let image =
                zoo_datasets::decode_image(&fixtures().join("transformers").join(picture)).unwrap();
            let input = preprocessor.preprocess(image).unwrap();
            if let Some(pixels) = expected["pixel_values"].as_array() {
                let InputData::Values(values) = &input.data else {
                    panic!("transformers inputs are values");
                };
                assert_eq!(values.len(), pixels.len());
                for (ours, theirs) in values.iter().zip(pixels) {
                    assert_eq!(*ours, theirs.as_f64().unwrap() as f32, "{name} {picture}");
                }
            }
            let prediction = model.predict_all(std::slice::from_ref(&input)).unwrap();
            let what = format!("{name} {picture}");
            let (box_difference, score_difference) =
                compare(&what, detections(&prediction[0]), &expected["detections"]);
            assert!(
                box_difference <= TOLERANCE && score_difference <= TOLERANCE,
                "{what}: boxes {box_difference}, confidences {score_difference}"
            );
            boxes = boxes.max(box_difference);
            scores = scores.max(score_difference);
            count += expected["detections"].as_array().unwrap().len();
            inputs.push(input);
        }
        let batched = model.predict_all(&inputs).unwrap();
        for ((picture, expected), prediction) in images.iter().zip(&batched) {
            let what = format!("{name} {picture} batched");
            let (box_difference, score_difference) =
                compare(&what, detections(prediction), &expected["detections"]);
            assert!(
                box_difference <= TOLERANCE && score_difference <= TOLERANCE,
                "{what}: boxes {box_difference}, confidences {score_difference}"
            );
        }
        assert!(count > 0, "{name}: the oracle detects");
        println!(
            "{name} vs FiftyOne 1.22.1: {count} detections, boxes within {boxes:e}, confidences within {scores:e}"
        );
    }
}

/// A copy of the fixture repo with `edit` applied to its `config.json`.
fn edited_repo(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs_err::read_dir(folder().join("owlvit")).unwrap() {
        let entry = entry.unwrap();
        fs_err::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut config: Value = serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
    edit(&mut config);
    fs_err::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    dir
}

/// A `config.json` that does not fit the weights, or that zoo does not
/// build, and configs zoo does not run, are errors naming the cause.
#[test]
fn hostile_owlvit_configs_are_errors_naming_the_cause() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let classes = json!({"classes": ["cat"]});
    let cases: Vec<(Edit, Value, &str)> = vec![
        (
            Box::new(|config| config["text_config"]["hidden_size"] = json!(48)),
            classes.clone(),
            "owlvit.text_model.",
        ),
        (
            Box::new(|config| config["vision_config"]["num_hidden_layers"] = json!(3)),
            classes.clone(),
            "owlvit.vision_model.encoder.layers.2",
        ),
        (
            Box::new(|config| config["projection_dim"] = json!(16)),
            classes.clone(),
            "owlvit.visual_projection.weight",
        ),
        (
            Box::new(|config| config["vision_config"]["image_size"] = json!(64)),
            classes.clone(),
            "position_embedding",
        ),
        (
            Box::new(|config| config["vision_config"]["hidden_act"] = json!("swishy")),
            classes.clone(),
            "swishy",
        ),
        (
            Box::new(|config| config["model_type"] = json!("owlv2")),
            classes.clone(),
            "`owlv2`",
        ),
        (
            Box::new(|config| config["text_config"] = json!("big")),
            classes.clone(),
            "config.json",
        ),
        (
            Box::new(|_| {}),
            json!({"classes": ["cat"], "output_processor_cls": "fiftyone.utils.torch.DetectorOutputProcessor"}),
            "output_processor_cls",
        ),
        (
            Box::new(|_| {}),
            json!({"classes": ["cat"], "entrypoint_fcn": "transformers.AutoModel.from_pretrained"}),
            "entrypoint_fcn",
        ),
        (
            Box::new(|_| {}),
            json!({"classes": ["cat"], "transformers_processor_kwargs": {"return_overflowing_tokens": true}}),
            "return_overflowing_tokens",
        ),
    ];
    for (edit, config, expected) in cases {
        let dir = edited_repo(edit);
        let error = model_at(dir.path(), config).unwrap_err();
        assert!(error.contains(expected), "{expected}: {error}");
    }
    // Weights that are not the config's: the error names the tensor.
    let dir = edited_repo(|_| {});
    fs_err::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let error = model_at(dir.path(), classes.clone()).unwrap_err();
    assert!(error.contains("model.safetensors"), "{error}");
    // A prompt longer than the text tower's 16 positions is an error at
    // prediction, not a panic.
    let mut model = model_at(
        &folder().join("owlvit"),
        json!({"classes": ["a very long prompt with far more words than sixteen tokens allow in total"]}),
    )
    .unwrap();
    let input = model
        .preprocessor()
        .preprocess(
            zoo_datasets::decode_image(&fixtures().join("transformers/image_1_32x32.png")).unwrap(),
        )
        .unwrap();
    let error = model.predict_all(&[input]).unwrap_err().to_string();
    assert!(error.contains("max_position_embeddings"), "{error}");
}

/// Without `classes`, FiftyOne's classes are the repo's `id2label`
/// (transformers' `LABEL_0` and `LABEL_1` when it names none).
#[test]
fn owlvit_without_classes_looks_for_the_repos_labels() {
    let mut model = model_at(&folder().join("owlvit"), json!({})).unwrap();
    let input = model
        .preprocessor()
        .preprocess(
            zoo_datasets::decode_image(&fixtures().join("transformers/image_1_32x32.png")).unwrap(),
        )
        .unwrap();
    let prediction = model.predict_all(&[input]).unwrap();
    let labels: std::collections::BTreeSet<&str> = detections(&prediction[0])
        .iter()
        .map(|detection| detection.label.as_str())
        .collect();
    assert!(!labels.is_empty());
    assert!(
        labels.is_subset(&["LABEL_0", "LABEL_1"].into()),
        "{labels:?}"
    );
}
