//! Checkpoints as torchvision hosts them and `torch.save` writes them
//! (issues 12 and 18).
//!
//! Oracles, all written by `cargo xtask named-weights-oracle`
//! (`xtask/fixtures/fiftyone_named_weights.py`, torch 2.13, torchvision
//! 0.28, FiftyOne 1.22.1):
//! - `fixtures/torch_save/*.pth`: small state dicts written by
//!   `torch.save` itself, to a path, to a buffer and in the legacy format;
//! - `fixtures/real_layouts.json`: the key layout of every built-in's hosted
//!   file, from torchvision's own model objects (DenseNet under its legacy
//!   names, Inception v3 with `AuxLogits.*`);
//! - `fixtures/fiftyone_named_weights.json`: FiftyOne's
//!   `load_zoo_model(name).apply_model(..., store_logits=True)` logits with
//!   formula weights in the file torchvision's named weights point at.
//! - `fixtures/fiftyone_builtins.json`: the same for all 22 built-in
//!   classifiers on every resize branch, PNG and JPEG (the pictures of
//!   `fixtures/fiftyone/`), with `compute_embeddings`, summarised.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tch::Tensor;
use zoo_model_core::{Image, Label, Model, ModelSpec, Prediction};
use zoo_test_support::{StateTensor, formula_state_dict, torch_save_legacy, torch_save_zip};
use zoo_torch_backend::{TorchImageModel, load_state_dict, read_named_tensors};

use crate::fixtures;

fn json_fixture(name: &str) -> Value {
    serde_json::from_slice(&fs_err::read(fixtures().join(name)).unwrap()).unwrap()
}

fn values(tensors: &[(String, Tensor)], name: &str) -> Vec<f32> {
    let tensor = tensors
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, tensor)| tensor.to_kind(tch::Kind::Float).flatten(0, -1))
        .unwrap_or_else(|| panic!("no `{name}`"));
    Vec::<f32>::try_from(tensor).unwrap()
}

/// Issue 18: `torch.save` in torch 2.13 writes records under the file's
/// stem, pads local headers with an `FB` field, sets the data-descriptor
/// bit with zero sizes in the local headers and writes a zip64 end record;
/// to a buffer it names the records `archive/`; the legacy format is
/// pickles back to back. zoo reads all three exactly.
#[test]
fn state_dicts_torch_save_writes_in_every_layout_are_read() {
    let expected: Vec<f32> = (0..4096).map(|value| value as f32).collect();
    for file in [
        "zip_stem_prefix.pth",
        "zip_archive_prefix.pth",
        "legacy.pth",
    ] {
        let tensors = read_named_tensors(&fixtures().join("torch_save").join(file)).unwrap();
        assert_eq!(tensors.len(), 5, "{file}");
        assert_eq!(values(&tensors, "features.0.weight"), expected, "{file}");
        let view: Vec<f32> = (0..64)
            .step_by(2)
            .flat_map(|row| {
                (1..64)
                    .step_by(3)
                    .map(move |column| (row * 64 + column) as f32)
            })
            .collect();
        assert_eq!(values(&tensors, "features.0.view"), view, "{file}");
        assert_eq!(values(&tensors, "features.1.half"), [1.5, -2.0], "{file}");
        assert_eq!(values(&tensors, "features.1.num_batches_tracked"), [7.0]);
        let bias = values(&tensors, "classifier.bias");
        assert!((bias[0] + 1.0).abs() < 1e-6 && (bias[9] - 1.0).abs() < 1e-6);
    }
}

/// The same layouts written here (torch's zip layout with data
/// descriptors, padding and zip64 end records, a deflated zip as a zip tool
/// would write it, and the legacy format): every one reads the same
/// tensors; a corrupted record fails its CRC-32.
#[test]
fn zip_layouts_with_padding_descriptors_zip64_and_deflate_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = vec![
        StateTensor {
            name: "layer.weight".into(),
            shape: vec![3, 5],
            values: Some((0..15).map(|value| value as f32 / 4.0).collect()),
        },
        StateTensor {
            name: "layer.num_batches_tracked".into(),
            shape: vec![],
            values: None,
        },
    ];
    let zip = torch_save_zip("mobilenet_v2", &tensors);
    // A deflated copy of the same records, as a zip tool would write it.
    let deflated = {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.clone())).unwrap();
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for index in 0..archive.len() {
            let mut entry = archive.by_index(index).unwrap();
            let name = entry.name().unwrap().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            writer
                .start_file(
                    name,
                    zip::write::SimpleFileOptions::default()
                        .compression_method(zip::CompressionMethod::Deflated),
                )
                .unwrap();
            std::io::Write::write_all(&mut writer, &bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    };
    for (file, bytes) in [
        ("torch_layout.pth", zip),
        ("deflated.pth", deflated),
        ("legacy.pth", torch_save_legacy(&tensors)),
    ] {
        let path = dir.path().join(file);
        fs_err::write(&path, bytes).unwrap();
        let read = read_named_tensors(&path).unwrap_or_else(|err| panic!("{file}: {err}"));
        assert_eq!(read.len(), 2, "{file}");
        assert_eq!(
            values(&read, "layer.weight"),
            (0..15).map(|value| value as f32 / 4.0).collect::<Vec<_>>(),
            "{file}"
        );
    }
    // A corrupted byte of a stored record fails its CRC, naming the record.
    let mut corrupt = torch_save_zip("model", &tensors);
    let at = corrupt
        .windows(4)
        .position(|w| w == [0, 0, 0x80, 0x3e])
        .unwrap();
    corrupt[at + 2] ^= 0xff;
    let path = dir.path().join("corrupt.pth");
    fs_err::write(&path, corrupt).unwrap();
    let err = read_named_tensors(&path).unwrap_err();
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    assert!(
        text.contains("CRC-32") && text.contains("model/data/0"),
        "{text}"
    );
}

/// Issue 12: every built-in architecture loads a state dict in the exact
/// key layout of its hosted file (from torchvision's own model objects):
/// DenseNet's legacy `norm.1`-style names are renamed as torchvision's
/// `_load_state_dict` renames them, Inception v3's `AuxLogits.*` are
/// dropped as torchvision drops the auxiliary head; nothing is missing,
/// extra or misshapen.
#[test]
fn every_builtin_loads_its_hosted_checkpoint_key_layout() {
    let layouts = json_fixture("real_layouts.json");
    let layouts = layouts.as_object().unwrap();
    assert_eq!(layouts.len(), 35);
    let path = Path::new("hosted.pth");
    for (architecture, layout) in layouts {
        let keys = layout["keys"].as_array().unwrap();
        let tensors: Vec<(String, Tensor)> = keys
            .iter()
            .map(|entry| {
                let shape: Vec<i64> = entry[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|size| size.as_i64().unwrap())
                    .collect();
                let kind = if entry[2] == "int64" {
                    tch::Kind::Int64
                } else {
                    tch::Kind::Float
                };
                let name = entry[0].as_str().unwrap().to_owned();
                (
                    name,
                    Tensor::zeros(shape.as_slice(), (kind, tch::Device::Cpu)),
                )
            })
            .collect();
        if architecture.starts_with("densenet") {
            assert!(
                tensors
                    .iter()
                    .any(|(name, _)| name.ends_with("denselayer1.norm.1.weight"))
            );
        }
        if architecture == "inception_v3" {
            assert!(
                tensors
                    .iter()
                    .any(|(name, _)| name.starts_with("AuxLogits."))
            );
        }
        // Issue 14: GoogLeNet's and the segmenters' auxiliary classifiers
        // are in the hosted files (and dropped); MNASNet 0.5's file has the
        // version-1 stem.
        let prefix = match architecture.as_str() {
            "googlenet" => Some("aux1."),
            name if name.starts_with("deeplabv3_") || name.starts_with("fcn_") => {
                Some("aux_classifier.")
            }
            _ => None,
        };
        if let Some(prefix) = prefix {
            assert!(
                tensors.iter().any(|(name, _)| name.starts_with(prefix)),
                "{architecture}"
            );
        }
        if architecture == "mnasnet0_5" {
            assert!(
                tensors
                    .iter()
                    .any(|(name, tensor)| name == "layers.0.weight" && tensor.size()[0] == 32)
            );
        }
        let args = json!({"weights": layout["weights"]});
        load_state_dict(architecture, Some(&args), tensors, path)
            .unwrap_or_else(|err| panic!("{architecture}: {err}"));
    }
}

fn load(file: &Path) -> Image {
    let decoded = image::open(file).unwrap().to_rgb8();
    Image::new(decoded.width(), decoded.height(), decoded.into_raw()).unwrap()
}

/// FiftyOne's deployment config of a built-in, from the built-in manifest.
fn builtin_config(base_name: &str) -> Value {
    let manifest: Value = serde_json::from_str(include_str!(
        "../../../registry/builtin/manifest-torch.json"
    ))
    .unwrap();
    let entry = manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["base_name"] == base_name)
        .unwrap();
    let mut config = entry["default_deployment_config_dict"]["config"].clone();
    config["device"] = json!("cpu");
    config
}

/// The built-in `base_name` as zoo runs it, its weights the oracle's
/// formula in the hosted file's key layout and format (legacy `torch.save`
/// for DenseNets, as torchvision hosts them; zip otherwise).
fn hosted_model(base_name: &str, expected: &Value, layouts: &Value, dir: &Path) -> TorchImageModel {
    let architecture = expected["architecture"].as_str().unwrap();
    let gain = expected["gain"].as_f64().unwrap();
    let state = formula_state_dict(layouts[architecture]["keys"].as_array().unwrap(), gain);
    let path: PathBuf = dir.join(expected["named_file"].as_str().unwrap());
    let bytes = if architecture.starts_with("densenet") {
        torch_save_legacy(&state)
    } else {
        torch_save_zip(architecture, &state)
    };
    drop(state);
    fs_err::write(&path, bytes).unwrap();
    let spec = ModelSpec {
        kind: "fiftyone.zoo.models.torch.TorchvisionImageModel".into(),
        config: builtin_config(base_name).as_object().unwrap().clone(),
        model_path: Some(path.clone()),
    };
    let mut model = TorchImageModel::from_spec(&spec).unwrap();
    fs_err::remove_file(&path).unwrap();
    model.set_store_logits(true);
    model
}

/// `ours` against the oracle's summary of a vector (its first values, sum
/// and L2 norm): the first values within 1e-4 each, and the sum and norm
/// within what 1e-4 per element allows. Returns the largest difference of
/// the first values.
fn assert_matches_summary(ours: &[f32], theirs: &Value, what: &str) -> f32 {
    assert_eq!(
        ours.len() as u64,
        theirs["len"].as_u64().unwrap(),
        "{what}: length"
    );
    let head = theirs["head"].as_array().unwrap();
    let difference = ours
        .iter()
        .zip(head)
        .map(|(a, b)| (a - b.as_f64().unwrap() as f32).abs())
        .fold(0.0f32, f32::max);
    assert!(difference <= 1e-4, "{what}: max |diff| {difference}");
    let len = ours.len() as f64;
    let sum: f64 = ours.iter().map(|&value| f64::from(value)).sum();
    let l2 = ours
        .iter()
        .map(|&value| f64::from(value).powi(2))
        .sum::<f64>()
        .sqrt();
    let sum_difference = (sum - theirs["sum"].as_f64().unwrap()).abs();
    assert!(
        sum_difference <= 1e-4 * len,
        "{what}: sum differs by {sum_difference}"
    );
    let l2_difference = (l2 - theirs["l2"].as_f64().unwrap()).abs();
    assert!(
        l2_difference <= 1e-4 * len.sqrt(),
        "{what}: L2 norm differs by {l2_difference}"
    );
    difference
}

/// Issue 12, for all 22 built-in classifiers: with formula weights in the
/// hosted file's key layout and format, zoo's label, confidence, logits and
/// `embeddings_layer` embeddings equal FiftyOne's own `apply_model` and
/// `compute_embeddings` (Inception v3's 2048-d `<fc` input included) on
/// every branch of the resize chain (none, upscale, downscale, both), PNG
/// and JPEG, at native size, decoded as `zoo models apply` decodes them.
/// Prints the worst difference per architecture, image kind and output
/// (`--nocapture`).
#[test]
fn every_builtin_classifier_matches_fiftyone_on_every_resize_branch_png_and_jpeg() {
    let oracle = json_fixture("fiftyone_builtins.json");
    let layouts = json_fixture("real_layouts.json");
    let dir = tempfile::tempdir().unwrap();
    let models = oracle["models"].as_object().unwrap();
    assert_eq!(
        models.len(),
        22,
        "the oracle covers every built-in classifier"
    );
    for (base_name, expected) in models {
        let mut model = hosted_model(base_name, expected, &layouts, dir.path());
        let branches = expected["branches"].as_object().unwrap();
        assert_eq!(branches.len(), 8, "{base_name}");
        // [png, jpeg] x [logits, embeddings].
        let mut worst = [[0.0f32; 2]; 2];
        for (file, theirs) in branches {
            let image =
                zoo_datasets::decode_image(&fixtures().join("fiftyone").join(file)).unwrap();
            let input = model.preprocessor().preprocess(image).unwrap();
            let Prediction::Label(Some(Label::Classification {
                label,
                confidence,
                logits: Some(logits),
            })) = model.predict(&input).unwrap()
            else {
                panic!("{base_name}: no classification for {file}");
            };
            let what = format!("{base_name} on {file}");
            assert_eq!(label, theirs["label"].as_str().unwrap(), "{what}");
            let confidence_difference =
                (confidence.unwrap() - theirs["confidence"].as_f64().unwrap()).abs();
            assert!(
                confidence_difference <= 1e-5,
                "{what}: confidence differs by {confidence_difference}"
            );
            let kind = usize::from(file.ends_with(".jpg"));
            let difference =
                assert_matches_summary(&logits, &theirs["logits"], &format!("{what}: logits"));
            worst[kind][0] = worst[kind][0].max(difference);
            if let Some(embedding) = theirs.get("embedding") {
                let vectors = model.embed_all(std::slice::from_ref(&input)).unwrap();
                let difference =
                    assert_matches_summary(&vectors[0], embedding, &format!("{what}: embedding"));
                worst[kind][1] = worst[kind][1].max(difference);
            } else {
                assert!(
                    !model.has_embeddings(),
                    "{what}: FiftyOne has no embeddings"
                );
            }
        }
        println!(
            "parity {base_name}: logits png {:.1e} jpeg {:.1e}, embeddings png {:.1e} jpeg {:.1e} (max |diff|)",
            worst[0][0], worst[1][0], worst[0][1], worst[1][1]
        );
    }
}

/// Issue 12: DenseNet-121 from a legacy-format file with legacy key names,
/// SqueezeNet 1.0 and Inception v3 (auxiliary tensors in the file,
/// `transform_input=True` as the pretrained model runs) give FiftyOne's
/// own logits within 1e-4 on an upscaled and a downscaled picture.
#[test]
fn named_weights_in_hosted_layouts_give_fiftyones_logits() {
    let oracle = json_fixture("fiftyone_named_weights.json");
    let layouts = json_fixture("real_layouts.json");
    let dir = tempfile::tempdir().unwrap();
    for base_name in [
        "densenet121-imagenet-torch",
        "squeezenet-imagenet-torch",
        "inception-v3-imagenet-torch",
    ] {
        let expected = &oracle["models"][base_name];
        let mut model = hosted_model(base_name, expected, &layouts, dir.path());
        for (file, theirs) in expected["images"].as_object().unwrap() {
            let image = load(&fixtures().join("named_weights").join(file));
            let input = model.preprocessor().preprocess(image).unwrap();
            let Prediction::Label(Some(Label::Classification {
                logits: Some(logits),
                ..
            })) = model.predict(&input).unwrap()
            else {
                panic!("{base_name}: no classification");
            };
            let theirs: Vec<f32> = theirs["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|value| value.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(logits.len(), theirs.len());
            let difference = logits
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            println!("parity {base_name} on {file}: max |diff| {difference:.3e}");
            assert!(
                difference <= 1e-4,
                "{base_name} on {file}: max |diff| {difference}"
            );
        }
    }
}

/// A small state dict in torch's zip layout, for mutation.
fn small_torch_zip() -> Vec<u8> {
    torch_save_zip(
        "model",
        &[
            StateTensor {
                name: "a.weight".into(),
                shape: vec![4, 3],
                values: Some((0..12).map(|value| value as f32).collect()),
            },
            StateTensor {
                name: "a.num_batches_tracked".into(),
                shape: vec![],
                values: None,
            },
        ],
    )
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 300,
        failure_persistence: None,
        ..Default::default()
    })]

    /// Hostile zips: a torch-layout checkpoint with bytes overwritten
    /// anywhere (sizes, offsets, counts, signatures, zip64 fields) or cut
    /// short reads or fails with an error naming the file, never panics
    /// or allocates without bound.
    #[test]
    fn mutated_torch_zip_checkpoints_never_panic(
        edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8),
        cut in proptest::option::of(0usize..4096),
    ) {
        let mut bytes = small_torch_zip();
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.min(bytes.len()).max(4));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mutated.pth");
        fs_err::write(&path, &bytes).unwrap();
        if let Err(err) = read_named_tensors(&path) {
            proptest::prop_assert!(err.to_string().contains("mutated.pth"), "{}", err);
        }
    }
}
