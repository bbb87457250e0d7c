//! transformers' Swin V2 against FiftyOne 1.22.1 and transformers 5.25: the
//! oracle (`tests/fixtures/transformers/swinv2_oracle.json`, made by `cargo
//! xtask transformers-oracle`) ran FiftyOne's own
//! `load_zoo_model("swin-v2-tiny-torch", name_or_path=REPO)` with
//! `apply_model` (labels with logits) and `compute_embeddings`, and its image
//! processor (`model.transforms`), on a tiny seeded repo that transformers'
//! `save_pretrained` wrote (`transformers/swinv2/`, with
//! microsoft/swinv2-tiny-patch4-window8-256's own `preprocessor_config.json`:
//! 256x256, bicubic), on one thread; and transformers' own forward of the
//! repo on a 52x68 input, whose patches, windows and merges all pad.
//!
//! The processor's pixel values must be equal bit for bit (their sha256);
//! logits, confidences and embeddings within [`TOLERANCE`]; labels equal.

use std::path::Path;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use zoo_model_core::{Input, InputData, Label, Model, ModelSpec, Prediction};
use zoo_torch_backend::TorchTransformerModel;

use crate::transformers::{folder, largest_difference, model};

/// The largest difference allowed in a logit, confidence or embedding value.
const TOLERANCE: f64 = 1e-4;

fn oracle() -> Value {
    serde_json::from_str(&fs_err::read_to_string(folder().join("swinv2_oracle.json")).unwrap())
        .unwrap()
}

fn repo() -> std::path::PathBuf {
    folder().join("swinv2")
}

/// The logits of a one-prediction batch.
fn logits_of(prediction: &[Prediction]) -> (String, f64, Vec<f32>) {
    let [
        Prediction::Label(Some(Label::Classification {
            label,
            confidence,
            logits,
        })),
    ] = prediction
    else {
        panic!("{prediction:?}");
    };
    (
        label.clone(),
        confidence.unwrap(),
        logits.clone().unwrap().to_vec(),
    )
}

/// `swin-v2-tiny-torch`'s manifest config on every picture, one at a time
/// and all in one batch.
#[test]
fn swinv2_matches_fiftyones_own_classifier_and_embeddings() {
    tch::set_num_threads(1);
    let oracle = oracle();
    let expected = oracle["swin-v2-tiny-torch"].as_object().unwrap();
    let mut model = model(
        &repo(),
        json!({"name_or_path": "microsoft/swinv2-tiny-patch4-window8-256",
               "transformers_processor_kwargs": {"return_tensors": "pt"}}),
    );
    assert!(!model.ragged_batches(), "its processor gives one size");
    let preprocessor = model.preprocessor();
    let (mut worst_logits, mut worst_confidence, mut worst_embedding) = (0.0f64, 0.0f64, 0.0f64);
    let mut inputs = Vec::new();
    let mut labels = Vec::new();
    for (picture, expected) in expected {
        let image = zoo_datasets::decode_image(&folder().join(picture)).unwrap();
        let input = preprocessor.preprocess(image).unwrap();
        assert_eq!(input.shape, [3, 256, 256], "{picture}");
        let InputData::Values(values) = &input.data else {
            panic!("transformers inputs are values");
        };
        let sample: Vec<f32> = values.iter().step_by(997).copied().collect();
        let sampled = largest_difference(&sample, &expected["pixel_values_sample"]);
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(
            digest,
            expected["pixel_values_sha256"].as_str().unwrap(),
            "{picture}: pixel values differ (by up to {sampled} on every 997th)"
        );

        let (label, confidence, logits) =
            logits_of(&model.predict_all(std::slice::from_ref(&input)).unwrap());
        assert_eq!(label, expected["label"].as_str().unwrap(), "{picture}");
        let confidence = (confidence - expected["confidence"].as_f64().unwrap()).abs();
        let logits = largest_difference(&logits, &expected["logits"]);
        let embedding = model.embed_all(std::slice::from_ref(&input)).unwrap();
        let embedding = largest_difference(&embedding[0], &expected["embedding"]);
        assert!(
            confidence <= TOLERANCE && logits <= TOLERANCE && embedding <= TOLERANCE,
            "{picture}: confidence {confidence}, logits {logits}, embedding {embedding}"
        );
        worst_logits = worst_logits.max(logits);
        worst_confidence = worst_confidence.max(confidence);
        worst_embedding = worst_embedding.max(embedding);
        labels.push(label);
        inputs.push(input);
    }
    labels.sort();
    labels.dedup();
    assert!(labels.len() > 1, "the pictures' labels differ: {labels:?}");
    // One batch of every picture gives the same (the shift masks repeat
    // per image).
    let batched = model.embed_all(&inputs).unwrap();
    let predictions = model.predict_all(&inputs).unwrap();
    for (((picture, expected), ours), prediction) in expected.iter().zip(&batched).zip(&predictions)
    {
        let difference = largest_difference(ours, &expected["embedding"]);
        let (_, _, logits) = logits_of(std::slice::from_ref(prediction));
        let logits = largest_difference(&logits, &expected["logits"]);
        assert!(
            difference <= TOLERANCE && logits <= TOLERANCE,
            "{picture} batched: embedding {difference}, logits {logits}"
        );
    }
    println!(
        "swinv2 vs FiftyOne 1.22.1: logits {worst_logits:e}, confidence {worst_confidence:e}, embeddings {worst_embedding:e}"
    );
}

/// The oracle's 52x68 input: `((i * 7919) % 1000) / 500 - 1` in `CHW`
/// order.
fn odd_input(height: usize, width: usize) -> Input {
    let values = (0..3 * height * width)
        .map(|index| ((index as i64 * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Input {
        shape: [3, height, width],
        data: InputData::Values(values),
        original_size: (width as u32, height as u32),
    }
}

/// An input no window, patch or merge divides, against transformers' own
/// forward: the logits, and each hidden state's first token (FiftyOne's
/// `token` aggregation) and mean (`mean`).
#[test]
fn swinv2_pads_inputs_as_transformers_does() {
    tch::set_num_threads(1);
    let oracle = oracle();
    let odd = &oracle["odd_input"];
    let input = odd_input(
        odd["height"].as_u64().unwrap() as usize,
        odd["width"].as_u64().unwrap() as usize,
    );
    let mut whole = model(&repo(), json!({}));
    let (_, _, logits) = logits_of(&whole.predict_all(std::slice::from_ref(&input)).unwrap());
    let mut worst = largest_difference(&logits, &odd["logits"]);
    let states = odd["first_token"].as_array().unwrap().len();
    assert_eq!(states, 4);
    for state in 0..states {
        for (aggregation, key) in [("token", "first_token"), ("mean", "mean")] {
            let mut embedder = model(
                &repo(),
                json!({"hidden_state_position": state, "embeddings_aggregation": aggregation}),
            );
            let ours = embedder.embed_all(std::slice::from_ref(&input)).unwrap();
            worst = worst.max(largest_difference(&ours[0], &odd[key][state]));
        }
    }
    assert!(worst <= TOLERANCE, "52x68: {worst}");
    println!("swinv2 52x68 vs transformers: {worst:e}");
}

/// The logits of the fixture picture `image_0_48x40.png` through the repo
/// in `dir`.
fn picture_logits(dir: &Path) -> Vec<f32> {
    let mut model = model(dir, json!({}));
    let image = zoo_datasets::decode_image(&folder().join("image_0_48x40.png")).unwrap();
    let input = model.preprocessor().preprocess(image).unwrap();
    logits_of(&model.predict_all(&[input]).unwrap()).2
}

/// The fixture repo copied into a temporary folder, its `config.json`
/// changed by `edit` and its tensors by `tensors`.
fn edited_repo(
    edit: impl FnOnce(&mut Value),
    tensors: impl FnOnce(&mut Vec<(String, tch::Tensor)>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs_err::copy(
        repo().join("preprocessor_config.json"),
        dir.path().join("preprocessor_config.json"),
    )
    .unwrap();
    let mut config: Value =
        serde_json::from_str(&fs_err::read_to_string(repo().join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    fs_err::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mut weights =
        zoo_torch_backend::read_named_tensors(&repo().join("model.safetensors")).unwrap();
    tensors(&mut weights);
    tch::Tensor::write_safetensors(&weights, dir.path().join("model.safetensors")).unwrap();
    dir
}

/// Older checkpoints carry the position tables transformers recomputes;
/// they load and change nothing.
#[test]
fn swinv2_checkpoints_with_the_position_tables_load() {
    let dir = edited_repo(
        |_| {},
        |weights| {
            let prefix = "swinv2.encoder.layers.0.blocks.1.attention.self";
            weights.push((
                format!("{prefix}.relative_position_index"),
                tch::Tensor::zeros([81, 81], (tch::Kind::Int64, tch::Device::Cpu)),
            ));
            weights.push((
                format!("{prefix}.relative_coords_table"),
                tch::Tensor::zeros([1, 17, 17, 2], (tch::Kind::Float, tch::Device::Cpu)),
            ));
        },
    );
    assert_eq!(picture_logits(dir.path()), picture_logits(&repo()));
}

/// A Swin V2 repo whose `config.json` does not fit is an error naming the
/// field, never a panic.
#[test]
fn hostile_swinv2_configs_are_errors_naming_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "use_absolute_embeddings",
            json!(true),
            "`use_absolute_embeddings`",
        ),
        (
            "pretrained_window_sizes",
            json!([1, 0, 4]),
            "`pretrained_window_sizes` must be 0 or from 2",
        ),
        (
            "pretrained_window_sizes",
            json!([6, 0]),
            "`pretrained_window_sizes` lists 2 stages",
        ),
        (
            "window_size",
            json!(0),
            "`window_size` must be from 1 to 64",
        ),
        ("window_size", json!(1_000_000), "`window_size`"),
        (
            "num_heads",
            json!([1, 2]),
            "must list the same 1 to 8 stages",
        ),
        ("num_heads", json!([3, 2, 4]), "not a multiple"),
        ("num_heads", json!([1, 2, -4]), "`num_heads` must be from 1"),
        ("depths", json!([2, 2, 3]), "blocks.2.attention"),
        ("depths", json!([2, 2, 100_000]), "`depths` must be from 0"),
        (
            "embed_dim",
            json!(1_i64 << 40),
            "`embed_dim` must be from 1",
        ),
        ("mlp_ratio", json!(-1.0), "`mlp_ratio`"),
        ("image_size", json!(8), "leaves stage 3 no rows"),
        ("patch_size", json!(0), "`patch_size` must be"),
        ("hidden_act", json!("mish"), "`hidden_act` `mish`"),
        ("num_channels", json!(1), "`num_channels` must be 3"),
        ("layer_norm_eps", json!(-1.0), "`layer_norm_eps`"),
    ];
    for (field, value, expected) in cases {
        let dir = edited_repo(|config| config[field] = value.clone(), |_| {});
        let spec = ModelSpec {
            kind: "FiftyOneTransformerForImageClassification".into(),
            config: Map::new(),
            model_path: Some(dir.path().to_owned()),
        };
        let error = TorchTransformerModel::from_spec(&spec)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{field}={value}: {error}");
    }
}
