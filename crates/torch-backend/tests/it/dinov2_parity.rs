//! DINOv2 parity with FiftyOne 1.22.1 itself: `tests/fixtures/dinov2_oracle.json`
//! was written by `cargo xtask dinov2-oracle HUB_DIR`
//! (`xtask/fixtures/dinov2_oracle.py`) from `fiftyone.utils.torch.TorchImageModel`
//! built from FiftyOne's own `dinov2-vits14-torch` and
//! `dinov2-vits14-reg-torch` deployment configs (`load_torch_hub_raw_model`
//! with facebookresearch/dinov2's hub code, `image_min_dim` 14,
//! `image_patch_size` 14, `embeddings_layer: head`) and its `embed_all`, on
//! formula weights (`torch_oracle.py`'s `formula_weights`, the hub
//! checkpoints' key names) and PNG images of five sizes: one already a
//! multiple of 14 (224x224), two that FiftyOne's `PatchSize` crops (101x60,
//! 45x131), one its `MinResize(14)` upscales first (10x31 -> 14x43 ->
//! 14x42), and the training size 518x518, where the position embeddings are
//! used without interpolation.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zoo_model_core::{Image, Model, ModelSpec};
use zoo_torch_backend::{TorchImageModel, parameter_shapes};

use crate::{Run, fixtures, formula_weights};

fn oracle() -> Value {
    serde_json::from_slice(&fs_err::read(fixtures().join("dinov2_oracle.json")).unwrap()).unwrap()
}

fn decode(file: &str) -> Image {
    zoo_datasets::decode_image(&fixtures().join("dinov2").join(file)).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// FiftyOne's own config for `name`, on `run`'s device.
fn model(oracle: &Value, name: &str, weights: &std::path::Path, run: &Run) -> TorchImageModel {
    let deployment = &oracle["configs"][name];
    let config = run.apply_to(deployment["config"].clone());
    let spec = ModelSpec {
        kind: deployment["type"].as_str().unwrap().to_owned(),
        config: config.as_object().unwrap().clone(),
        model_path: Some(weights.to_path_buf()),
    };
    TorchImageModel::from_spec(&spec).unwrap()
}

/// `MinResize(14)` then `PatchSize(14)` (a centre crop whose odd margins
/// round half to even): the input size and the CHW float32 tensor the
/// network receives are identical, bit for bit, to FiftyOne's on every
/// image.
#[test]
fn dinov2_patch_size_crop_and_input_tensor_match_fiftyone() {
    let oracle = oracle();
    let dir = tempfile::tempdir().unwrap();
    let weights = formula_weights("dinov2_vits14", dir.path());
    let cpu = Run {
        device: "cpu".into(),
        half: false,
    };
    let model = model(&oracle, "dinov2-vits14-torch", &weights, &cpu);
    let entries = oracle["images"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    for entry in entries {
        let file = entry["file"].as_str().unwrap();
        let input = model.preprocessor().preprocess(decode(file)).unwrap();
        assert_eq!(
            json!([input.shape[2], input.shape[1]]),
            entry["input_size"],
            "{file}"
        );
        let bytes: Vec<u8> = input
            .data
            .values()
            .expect("host preprocessing normalises")
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        assert_eq!(
            hex(&bytes),
            entry["input_sha256"].as_str().unwrap(),
            "{file}: the input differs from FiftyOne's"
        );
    }
}

/// `TorchImageModel.embed_all` (`embeddings_layer: head`, the normalised
/// class token) of ViT-S/14 and ViT-S/14 with registers (bicubic position
/// embeddings with the `+0.1` offset, and antialiased without it) within
/// the tolerance of FiftyOne's on every image size, one image per batch as
/// FiftyOne runs them (ragged).
#[test]
fn dinov2_embeddings_match_fiftyone_on_every_size() {
    let oracle = oracle();
    let dir = tempfile::tempdir().unwrap();
    for (name, entrypoint) in [
        ("dinov2-vits14-torch", "dinov2_vits14"),
        ("dinov2-vits14-reg-torch", "dinov2_vits14_reg"),
    ] {
        let weights = formula_weights(entrypoint, dir.path());
        for run in Run::all() {
            let mut model = model(&oracle, name, &weights, &run);
            assert!(model.has_embeddings());
            assert!(model.ragged_batches());
            for entry in oracle["images"].as_array().unwrap() {
                let file = entry["file"].as_str().unwrap();
                let input = model.preprocessor().preprocess(decode(file)).unwrap();
                let vectors = model.embed_all(std::slice::from_ref(&input)).unwrap();
                run.assert_close(
                    &vectors[0],
                    &entry["embeddings"][name],
                    &format!("{name} embedding of {file}"),
                );
            }
        }
    }
}

/// `parameter_shapes` (what a model's load checks the weights against)
/// gives ViT-S/14's hub state dict, with and without registers (the unit
/// test `dinov2_layouts_are_the_hub_state_dicts_for_all_eight` covers the
/// larger ones block by block).
#[test]
fn dinov2_parameters_are_the_hub_checkpoints_layout() {
    let oracle = oracle();
    for name in ["dinov2_vits14", "dinov2_vits14_reg"] {
        let mut want: Vec<(String, Vec<i64>)> = oracle["layouts"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap().to_owned(),
                    pair[1]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|side| side.as_i64().unwrap())
                        .collect(),
                )
            })
            .collect();
        want.sort();
        assert_eq!(parameter_shapes(name, 1000).unwrap(), want, "{name}");
    }
}

/// A batch of several images of one size gives each image the embedding it
/// gets alone (zoo may batch what FiftyOne runs one at a time).
#[test]
fn dinov2_batched_embeddings_equal_single_ones() {
    let oracle = oracle();
    let dir = tempfile::tempdir().unwrap();
    let weights = formula_weights("dinov2_vits14", dir.path());
    let cpu = Run {
        device: "cpu".into(),
        half: false,
    };
    let mut model = model(&oracle, "dinov2-vits14-torch", &weights, &cpu);
    let input = model.preprocessor().preprocess(decode("wide.png")).unwrap();
    let flipped = Image::new(
        101,
        60,
        decode("wide.png").pixels.iter().rev().copied().collect(),
    )
    .unwrap();
    let other = model.preprocessor().preprocess(flipped).unwrap();
    let batch = model.embed_all(&[input.clone(), other.clone()]).unwrap();
    let alone = [
        model.embed_all(&[input]).unwrap().remove(0),
        model.embed_all(&[other]).unwrap().remove(0),
    ];
    for (got, want) in batch.iter().zip(&alone) {
        let difference = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(difference <= 1e-5, "batched vs alone: {difference}");
    }
    assert_ne!(batch[0], batch[1]);
}
