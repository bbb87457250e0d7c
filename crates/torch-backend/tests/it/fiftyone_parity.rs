//! Parity with FiftyOne 1.22.1 itself: `tests/fixtures/fiftyone_oracle.json`
//! was written by `cargo xtask fixtures` (`xtask/fixtures/fiftyone_oracle.py`)
//! from `fiftyone.utils.torch.TorchImageModel` (configured as the built-in
//! torchvision classifiers: `image_min_dim` 224, `image_max_dim` 2048,
//! ImageNet mean/std, `ClassifierOutputProcessor`) on images loaded by
//! FiftyOne's own loader (Pillow 13, libjpeg-turbo 3.2), one PNG and one
//! JPEG per resize branch: none (256x240), upscale (150x100 -> 336x224),
//! downscale (2300x260 -> 2048x232) and both (3000x100 -> 6720x224 ->
//! 2048x68), all at their native sizes.
//!
//! zoo's side decodes with `zoo_datasets::decode_image` (what `zoo models
//! apply` uses) and preprocesses with the model's own preprocessor.

use serde_json::Value;
use sha2::{Digest, Sha256};
use zoo_model_core::{Image, Label, Model, Prediction};
use zoo_torch_backend::{Preprocessing, TorchImageModel, resize_bilinear};

use crate::{Run, fixtures, formula_weights, imagenet_config, spec};

fn oracle() -> Value {
    serde_json::from_slice(&fs_err::read(fixtures().join("fiftyone_oracle.json")).unwrap()).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The image as `zoo models apply` decodes it.
fn decode(file: &str) -> Image {
    zoo_datasets::decode_image(&fixtures().join("fiftyone").join(file)).unwrap()
}

fn imagenet() -> Preprocessing {
    Preprocessing {
        min_dim: Some(224),
        max_dim: Some(2048),
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        ..Preprocessing::default()
    }
}

fn entries() -> Vec<Value> {
    let entries = oracle()["images"].as_array().unwrap().clone();
    // Every resize branch, in PNG and in JPEG.
    assert_eq!(entries.len(), 8);
    entries
}

/// Pillow's decoding (through FiftyOne's `_load_image`) and zoo's give the
/// same RGB bytes, for JPEG (libjpeg-turbo's islow IDCT and fancy
/// upsampling) as for PNG.
#[test]
fn jpeg_and_png_decode_to_pillows_bytes() {
    for entry in entries() {
        let file = entry["file"].as_str().unwrap();
        let image = decode(file);
        assert_eq!(
            serde_json::json!([image.width, image.height]),
            entry["size"],
            "{file}"
        );
        assert_eq!(
            hex(&image.pixels),
            entry["decoded_sha256"].as_str().unwrap(),
            "{file}: decoded pixels differ from Pillow's"
        );
    }
}

/// FiftyOne's `MinResize` then `MaxResize`, each its own Pillow resize: the
/// sizes, the resized pixels and the normalised input tensor are identical
/// bit for bit on every branch (both: 3000x100 -> 6720x224 -> 2048x68).
#[test]
fn the_resize_chain_and_input_tensor_match_fiftyone_on_every_branch() {
    let preprocessing = imagenet();
    for entry in entries() {
        let file = entry["file"].as_str().unwrap();
        let image = decode(file);
        let steps = preprocessing.resize_steps(image.width, image.height);
        assert_eq!(
            serde_json::json!(steps.iter().map(|(w, h)| [*w, *h]).collect::<Vec<_>>()),
            entry["resize_steps"],
            "{file}"
        );
        let mut resized = image.clone();
        for (width, height) in &steps {
            resized = resize_bilinear(&resized, *width, *height);
        }
        assert_eq!(
            hex(&resized.pixels),
            entry["resized_sha256"].as_str().unwrap(),
            "{file}: resized pixels differ from FiftyOne's"
        );
        let input = zoo_model_core::Preprocess::preprocess(&preprocessing, image).unwrap();
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
            "{file}: the normalised input differs from FiftyOne's"
        );
    }
}

/// `TorchImageModel.predict_all` with `store_logits`: the same label, the
/// confidence within 1e-6 and the logits within the tolerance, on PNG and
/// JPEG inputs of native size; resnet18's `<fc` embedding (`embed_all`)
/// within the tolerance too.
#[test]
fn classifications_match_fiftyone_torch_image_model_on_png_and_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("torchvision.models.resnet.resnet18", "resnet18", "<fc"),
        (
            "torchvision.models.mobilenet.mobilenet_v2",
            "mobilenet_v2",
            "<classifier.1",
        ),
        (
            "torchvision.models.squeezenet.squeezenet1_1",
            "squeezenet1_1",
            "",
        ),
        (
            "torchvision.models.densenet.densenet121",
            "densenet121",
            "<classifier",
        ),
        (
            "torchvision.models.alexnet.alexnet",
            "alexnet",
            "<classifier.6",
        ),
    ];
    let entries = entries();
    for (entrypoint, key, layer) in cases {
        let weights = formula_weights(entrypoint, dir.path());
        for run in Run::all() {
            let config = run.apply_to(imagenet_config(entrypoint, layer));
            let mut model = TorchImageModel::from_spec(&spec(config, &weights)).unwrap();
            model.set_store_logits(true);
            for entry in &entries {
                let file = entry["file"].as_str().unwrap();
                let input = model.preprocessor().preprocess(decode(file)).unwrap();
                let expected = &entry["labels"][key];
                let Prediction::Label(Some(Label::Classification {
                    label,
                    confidence,
                    logits: Some(logits),
                })) = model.predict(&input).unwrap()
                else {
                    panic!("no classification for {file}");
                };
                run.assert_close(
                    &logits,
                    &expected["logits"],
                    &format!("{key} logits of {file}"),
                );
                if !run.half {
                    assert_eq!(
                        label,
                        expected["label"].as_str().unwrap(),
                        "{key} on {file}"
                    );
                    let difference =
                        (confidence.unwrap() - expected["confidence"].as_f64().unwrap()).abs();
                    assert!(
                        difference <= 1e-6,
                        "{key} confidence on {file}: {difference}"
                    );
                }
                if key == "resnet18" {
                    let vectors = model.embed_all(std::slice::from_ref(&input)).unwrap();
                    run.assert_close(
                        &vectors[0],
                        &entry["resnet18_embedding"],
                        &format!("resnet18 embedding of {file}"),
                    );
                }
            }
        }
    }
}
