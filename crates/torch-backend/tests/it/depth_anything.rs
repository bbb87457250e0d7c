//! transformers' Depth Anything V2 against FiftyOne 1.22.1: the oracle
//! (`tests/fixtures/depth_anything/oracle.json`, made by `cargo xtask
//! depth-anything-oracle`) ran FiftyOne's own
//! `load_zoo_model("depth-anything-v2-small-torch", name_or_path=REPO)`
//! with `apply_model` (`FiftyOneTransformerForDepthEstimation`: heatmaps)
//! and its image processor (`model.transforms`) on a tiny seeded
//! `DepthAnythingForDepthEstimation` repo that transformers'
//! `save_pretrained` wrote (`depth_anything/repo/`: DINOv2 backbone, DPT
//! neck, relative depth head; `DPTImageProcessor` keeping the aspect ratio,
//! sides multiples of 14), on one thread, on the pictures of
//! `tests/fixtures/transformers`.
//!
//! Each heatmap must have FiftyOne's dtype, shape and `range`, and its
//! values must be within [`TOLERANCE`] of FiftyOne's, relative to the map's
//! largest value (1: FiftyOne divides the depth by its maximum).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use zoo_model_core::{Input, Label, Model, ModelSpec, Prediction};
use zoo_torch_backend::TorchTransformerDepthModel;

use crate::fixtures;

/// The largest difference allowed, relative to the map's largest value.
const TOLERANCE: f64 = 1e-4;

fn folder() -> PathBuf {
    fixtures().join("depth_anything")
}

fn oracle() -> Value {
    serde_json::from_str(&fs_err::read_to_string(folder().join("oracle.json")).unwrap()).unwrap()
}

fn spec(repo: &Path, config: Value) -> ModelSpec {
    let Value::Object(config) = config else {
        panic!("a config is an object");
    };
    ModelSpec {
        kind: "fiftyone.utils.transformers.FiftyOneTransformerForDepthEstimation".into(),
        config,
        model_path: Some(repo.to_owned()),
    }
}

/// The built-in entry's config (`depth-anything-v2-small-torch`).
fn entry_config() -> Value {
    json!({"name_or_path": "depth-anything/Depth-Anything-V2-Small-hf"})
}

fn heatmap(prediction: &Prediction) -> (&zoo_model_core::NpyArray, Option<[f64; 2]>) {
    let Prediction::Label(Some(Label::Heatmap { map, range })) = prediction else {
        panic!("{prediction:?}");
    };
    (map, *range)
}

/// The largest difference between a map and the oracle's, relative to the
/// oracle's largest value.
fn relative_difference(ours: &[f32], theirs: &Value) -> f64 {
    let theirs: Vec<f32> = theirs
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs
        .iter()
        .fold(0.0f32, |max, value| max.max(value.abs()));
    assert!(scale > 0.0, "the oracle's map is not all zero");
    ours.iter()
        .zip(&theirs)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs() / f64::from(scale))
        .fold(0.0, f64::max)
}

/// `depth-anything-v2-small-torch`'s manifest config on every picture, one
/// at a time, and two pictures of one size in one batch.
#[test]
fn depth_anything_matches_fiftyones_own_heatmaps() {
    tch::set_num_threads(1);
    let oracle = oracle();
    let expected = oracle["depth-anything-v2-small-torch"].as_object().unwrap();
    assert!(expected.len() >= 5, "the oracle has every picture");
    let mut model =
        TorchTransformerDepthModel::from_spec(&spec(&folder().join("repo"), entry_config()))
            .unwrap();
    assert!(
        model.ragged_batches(),
        "its processor keeps aspect ratios: images of other sizes run apart"
    );
    let preprocessor = model.preprocessor();
    let mut worst = 0.0f64;
    let mut last: Option<(Input, Vec<f32>)> = None;
    for (picture, expected) in expected {
        let image =
            zoo_datasets::decode_image(&fixtures().join("transformers").join(picture)).unwrap();
        let input = preprocessor.preprocess(image).unwrap();
        let shape: Vec<usize> = expected["pixel_values_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|side| side.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            input.shape.to_vec(),
            shape[1..],
            "{picture}: processed size"
        );
        let predictions = model.predict_all(std::slice::from_ref(&input)).unwrap();
        let (map, range) = heatmap(&predictions[0]);
        assert_eq!(map.dtype, expected["dtype"].as_str().unwrap(), "{picture}");
        let oracle_shape: Vec<usize> = expected["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|side| side.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(map.shape, oracle_shape, "{picture}: map shape");
        assert_eq!(range, None, "FiftyOne stores no range");
        assert!(expected["range"].is_null());
        let values = map.to_f32().unwrap();
        let difference = relative_difference(&values, &expected["map"]);
        assert!(
            difference <= TOLERANCE,
            "{picture}: heatmap differs by {difference} (relative)"
        );
        worst = worst.max(difference);
        last = Some((input, values));
    }
    // Two of one picture in one batch give its map twice.
    let (input, alone) = last.unwrap();
    let predictions = model.predict_all(&[input.clone(), input]).unwrap();
    for prediction in &predictions {
        let values = heatmap(prediction).0.to_f32().unwrap();
        let difference = alone
            .iter()
            .zip(&values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(difference <= 1e-5, "batched differs by {difference}");
    }
    println!("depth anything: heatmaps within {worst:e} (relative) of FiftyOne's");
}

/// A copy of the fixture repo with `config.json` (and
/// `preprocessor_config.json`) edited by `edit`.
fn edited_repo(
    edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = folder().join("repo");
    for name in [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        fs_err::copy(source.join(name), dir.path().join(name)).unwrap();
    }
    let read = |name: &str| -> Map<String, Value> {
        serde_json::from_str(&fs_err::read_to_string(dir.path().join(name)).unwrap()).unwrap()
    };
    let (mut config, mut processor) = (read("config.json"), read("preprocessor_config.json"));
    edit(&mut config, &mut processor);
    for (name, value) in [
        ("config.json", config),
        ("preprocessor_config.json", processor),
    ] {
        fs_err::write(
            dir.path().join(name),
            serde_json::to_string(&Value::Object(value)).unwrap(),
        )
        .unwrap();
    }
    dir
}

fn load_error(dir: &Path) -> String {
    TorchTransformerDepthModel::from_spec(&spec(dir, entry_config()))
        .expect_err("a bad repo is an error")
        .to_string()
}

type Edit = fn(&mut Map<String, Value>, &mut Map<String, Value>);

/// Missing, odd and out-of-range fields, and weights that do not fit the
/// config, are errors naming the file and the field or tensor; never a
/// panic.
#[test]
fn bad_depth_anything_repos_are_errors_naming_the_file() {
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "no backbone config",
            |config, _| {
                config.remove("backbone_config");
            },
            "config.json",
            "backbone_config",
        ),
        (
            "another model type",
            |config, _| {
                config.insert("model_type".into(), json!("dpt"));
            },
            "config.json",
            "`dpt`",
        ),
        (
            "a string for a size",
            |config, _| {
                config.insert("fusion_hidden_size".into(), json!("sixteen"));
            },
            "config.json",
            "fusion_hidden_size",
        ),
        (
            "fewer neck sizes than stages",
            |config, _| {
                config.insert("neck_hidden_sizes".into(), json!([8, 12, 16]));
            },
            "config.json",
            "neck_hidden_sizes",
        ),
        (
            "a stage the backbone lacks",
            |config, _| {
                let mut backbone = config["backbone_config"].as_object().unwrap().clone();
                backbone.insert("out_indices".into(), json!([1, 2, 3, 40]));
                config.insert("backbone_config".into(), Value::Object(backbone));
            },
            "config.json",
            "out_indices",
        ),
        (
            "a fractional upsampling factor",
            |config, _| {
                config.insert("reassemble_factors".into(), json!([2.5, 2, 1, 0.5]));
            },
            "config.json",
            "reassemble_factors",
        ),
        (
            "an unknown depth type",
            |config, _| {
                config.insert("depth_estimation_type".into(), json!("absolute"));
            },
            "config.json",
            "depth_estimation_type",
        ),
        (
            "a huge layer count",
            |config, _| {
                let mut backbone = config["backbone_config"].as_object().unwrap().clone();
                backbone.insert("num_hidden_layers".into(), json!(1u64 << 40));
                config.insert("backbone_config".into(), Value::Object(backbone));
            },
            "config.json",
            "num_hidden_layers",
        ),
        (
            "weights of another width",
            |config, _| {
                config.insert("fusion_hidden_size".into(), json!(20));
            },
            "the weights in",
            "neck.convs.0.weight",
        ),
        (
            "a layer the weights lack",
            |config, _| {
                let mut backbone = config["backbone_config"].as_object().unwrap().clone();
                backbone.insert("num_hidden_layers".into(), json!(5));
                backbone.insert("out_indices".into(), json!([2, 3, 4, 5]));
                config.insert("backbone_config".into(), Value::Object(backbone));
            },
            "the weights in",
            "backbone.encoder.layer.4",
        ),
        (
            "padding",
            |_, processor| {
                processor.insert("do_pad".into(), json!(true));
            },
            "preprocessor_config.json",
            "do_pad",
        ),
        (
            "a zero multiple",
            |_, processor| {
                processor.insert("ensure_multiple_of".into(), json!(0));
            },
            "preprocessor_config.json",
            "ensure_multiple_of",
        ),
    ];
    for (what, edit, file, field) in cases {
        let dir = edited_repo(edit);
        let message = load_error(dir.path());
        assert!(
            message.contains(file) && message.contains(field),
            "{what}: {message}"
        );
    }
    // Garbage in place of the weights.
    let dir = edited_repo(|_, _| {});
    fs_err::write(
        dir.path().join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":",
    )
    .unwrap();
    let message = load_error(dir.path());
    assert!(message.contains("model.safetensors"), "{message}");
}

/// An input smaller than one patch is an error, not a panic.
#[test]
fn a_depth_input_below_one_patch_is_an_error() {
    tch::set_num_threads(1);
    let mut model =
        TorchTransformerDepthModel::from_spec(&spec(&folder().join("repo"), entry_config()))
            .unwrap();
    let input = Input {
        shape: [3, 10, 30],
        data: zoo_model_core::InputData::Values(vec![0.5; 900]),
        original_size: (30, 10),
    };
    let message = model.predict_all(&[input]).unwrap_err().to_string();
    assert!(message.contains("14x14"), "{message}");
}
