//! Parity with FiftyOne 1.22.1 for GoogLeNet, MNASNet, ResNeXt,
//! ShuffleNetV2, Wide ResNet (classifiers) and DeepLabV3 / FCN (semantic
//! segmenters): `tests/fixtures/fiftyone_families.json` was written by
//! `cargo xtask fixtures` (`xtask/fixtures/fiftyone_families.py`) from
//! FiftyOne's own `TorchImageModel`, configured as FiftyOne's manifest
//! entries for these models, on the PNG pictures of
//! `fiftyone_parity.rs`, with formula weights both sides compute (the
//! segmenters' last layer scaled by an exact power of two so that their
//! masks hold several classes).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tch::Tensor;
use zoo_model_core::{Image, Label, Model, Prediction, SegmentationMask};
use zoo_torch_backend::{Preprocessing, TorchImageModel, parameter_shapes};

use crate::{Run, fixtures, formula, imagenet_config, spec};

fn oracle() -> Value {
    serde_json::from_slice(&fs_err::read(fixtures().join("fiftyone_families.json")).unwrap())
        .unwrap()
}

fn decode(file: &str) -> Image {
    zoo_datasets::decode_image(&fixtures().join("fiftyone").join(file)).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// FiftyOne's `entrypoint_fcn` for each architecture.
fn entrypoint(name: &str) -> String {
    let module = match name {
        "googlenet" => "googlenet",
        "mnasnet0_5" | "mnasnet1_0" => "mnasnet",
        "shufflenet_v2_x0_5" | "shufflenet_v2_x1_0" => "shufflenetv2",
        name if name.starts_with("deeplabv3") || name.starts_with("fcn") => "segmentation",
        _ => "resnet",
    };
    format!("torchvision.models.{module}.{name}")
}

/// The formula weights of `name` with `classes` outputs, `gain` times on
/// the segmenters' last convolution, as a safetensors file.
fn weights(name: &str, classes: i64, gain: f64, dir: &std::path::Path) -> std::path::PathBuf {
    let tensors: Vec<(String, Tensor)> = parameter_shapes(&entrypoint(name), classes)
        .unwrap()
        .into_iter()
        .map(|(key, shape)| {
            let tensor = formula(&key, &shape);
            let tensor = if key == "classifier.4.weight" {
                tensor * gain
            } else {
                tensor
            };
            (key, tensor)
        })
        .collect();
    let path = dir.join(format!("{name}.safetensors"));
    Tensor::write_safetensors(&tensors, &path).unwrap();
    path
}

/// Each new classifier through `TorchImageModel.predict` with
/// `store_logits`, configured as FiftyOne's manifest (GoogLeNet's named
/// `weights` turn `transform_input` on): the label, the confidence within
/// 1e-6 and the logits within the tolerance on PNGs of three sizes
/// (native, upscaled, downscaled), and the `embeddings_layer` embedding.
#[test]
fn new_classifier_families_match_fiftyone_torch_image_model() {
    let dir = tempfile::tempdir().unwrap();
    let oracle = oracle();
    let classifiers = oracle["classifiers"].as_object().unwrap();
    assert_eq!(classifiers.len(), 9);
    for (name, expected) in classifiers {
        let path = weights(name, 1000, 1.0, dir.path());
        let layer = expected["embeddings_layer"].as_str().unwrap();
        for run in Run::all() {
            let mut config = run.apply_to(imagenet_config(&entrypoint(name), layer));
            if name == "googlenet" {
                config["entrypoint_args"] = json!({"weights": "GoogLeNet_Weights.DEFAULT"});
            }
            let mut model = TorchImageModel::from_spec(&spec(config, &path)).unwrap();
            assert!(model.has_embeddings(), "{name}");
            model.set_store_logits(true);
            for entry in expected["images"].as_array().unwrap() {
                let file = entry["file"].as_str().unwrap();
                let input = model.preprocessor().preprocess(decode(file)).unwrap();
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
                    &entry["logits"],
                    &format!("{name} logits of {file}"),
                );
                if !run.half {
                    assert_eq!(label, entry["label"].as_str().unwrap(), "{name} {file}");
                    let difference =
                        (confidence.unwrap() - entry["confidence"].as_f64().unwrap()).abs();
                    assert!(difference <= 1e-6, "{name} confidence on {file}");
                }
                if let Some(embedding) = entry.get("embedding") {
                    let vectors = model.embed_all(std::slice::from_ref(&input)).unwrap();
                    run.assert_close(
                        &vectors[0],
                        embedding,
                        &format!("{name} {layer} embedding of {file}"),
                    );
                }
            }
        }
    }
}

/// The segmenters as FiftyOne's manifest configures them
/// (`SemanticSegmenterOutputProcessor` with `has_softmax_out: false`, VOC
/// `mask_targets_path`, ImageNet normalisation; `image_dim` 128): the
/// `int64` mask FiftyOne stores is identical byte for byte, of the input's
/// resized size; the raw `out` scores on a grid of pixels (divided by the
/// gain, i.e. the unscaled network's) are within the tolerance.
#[test]
fn deeplabv3_and_fcn_masks_equal_fiftyones_semantic_segmenter() {
    let dir = tempfile::tempdir().unwrap();
    let oracle = oracle();
    let segmenters = oracle["segmenters"].as_object().unwrap();
    assert_eq!(segmenters.len(), 4);
    for (name, expected) in segmenters {
        let gain = expected["gain"].as_f64().unwrap();
        let path = weights(name, 21, gain, dir.path());
        for run in Run::all() {
            let config = run.apply_to(json!({
                "entrypoint_fcn": entrypoint(name),
                "entrypoint_args": {"weights": "DeepLabV3_ResNet50_Weights.DEFAULT"},
                "output_processor_cls": "fiftyone.utils.torch.SemanticSegmenterOutputProcessor",
                "output_processor_args": {"has_softmax_out": false},
                "mask_targets_path": "{{eta-resources}}/voc-labels.txt",
                "image_dim": expected["image_dim"],
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
            }));
            let mut model = TorchImageModel::from_spec(&spec(config, &path)).unwrap();
            assert!(!model.has_logits() && !model.has_embeddings(), "{name}");
            for entry in expected["images"].as_array().unwrap() {
                let file = entry["file"].as_str().unwrap();
                let input = model.preprocessor().preprocess(decode(file)).unwrap();
                let scores = model.raw_output(std::slice::from_ref(&input)).unwrap();
                for (pixel, want) in entry["pixels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(entry["scores"].as_array().unwrap())
                {
                    let [y, x] = [0, 1].map(|i| pixel[i].as_i64().unwrap());
                    // Compared at the unscaled network's scale (the gain is
                    // a power of two: dividing is exact).
                    let ours: Vec<f32> =
                        Vec::try_from(scores.get(0).select(1, y).select(1, x) / gain).unwrap();
                    let want: Vec<f64> = want
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|value| value.as_f64().unwrap() / gain)
                        .collect();
                    run.assert_close(
                        &ours,
                        &json!(want),
                        &format!("{name} scores / gain of {file} at {y},{x}"),
                    );
                }
                let Prediction::Label(Some(Label::Segmentation {
                    height,
                    width,
                    mask: SegmentationMask::I64(ids),
                })) = model.predict(&input).unwrap()
                else {
                    panic!("no int64 segmentation for {name} on {file}");
                };
                assert_eq!(json!([height, width]), entry["mask_shape"], "{name} {file}");
                assert_eq!(entry["mask_dtype"], "<i8");
                let mut classes = std::collections::BTreeMap::<String, u64>::new();
                for id in &ids {
                    *classes.entry(id.to_string()).or_default() += 1;
                }
                let differing = entry["mask_classes"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(id, count)| {
                        classes
                            .get(id)
                            .copied()
                            .unwrap_or(0)
                            .abs_diff(count.as_u64().unwrap())
                    })
                    .sum::<u64>();
                if !run.half {
                    assert_eq!(
                        json!(classes),
                        entry["mask_classes"],
                        "{name} on {file}: class histogram ({differing} pixels apart)"
                    );
                    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
                    assert_eq!(
                        hex(&bytes),
                        entry["mask_sha256"].as_str().unwrap(),
                        "{name} mask of {file}"
                    );
                }
                println!(
                    "parity {name} mask of {file} on {run}: {} classes, {differing} pixels apart",
                    classes.len()
                );
            }
        }
    }
}

/// FiftyOne's `image_dim` 520 (the segmenters' manifest value), which is
/// torchvision's `Resize(520)`: the same sizes and, bit for bit, the same
/// normalised input on every picture (PNG and JPEG, upscaled and
/// downscaled, 3000x100 to 15600x520).
#[test]
fn image_dim_resizes_the_shorter_side_like_torchvision_resize() {
    let preprocessing = Preprocessing {
        dim: Some(520),
        min_dim: Some(224),
        max_dim: Some(2048),
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        ..Preprocessing::default()
    };
    let entries = oracle()["image_dim_520"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 8);
    for entry in entries {
        let file = entry["file"].as_str().unwrap();
        let image = decode(file);
        assert_eq!(json!([image.width, image.height]), entry["size"], "{file}");
        let steps = preprocessing.resize_steps(image.width, image.height);
        assert_eq!(
            json!(steps.iter().map(|(w, h)| [*w, *h]).collect::<Vec<_>>()),
            entry["resize_steps"],
            "{file}"
        );
        let input = zoo_model_core::Preprocess::preprocess(&preprocessing, image).unwrap();
        let bytes: Vec<u8> = input
            .data
            .values()
            .unwrap()
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        assert_eq!(
            hex(&bytes),
            entry["input_sha256"].as_str().unwrap(),
            "{file}"
        );
    }
}

/// FCN-ResNet50 with the formula weights (last layer scaled like the
/// parity test's) and `config` merged over FiftyOne's manifest config at
/// `image_dim` 32.
fn fcn_config(extra: Value) -> Value {
    let mut config = json!({
        "entrypoint_fcn": entrypoint("fcn_resnet50"),
        "output_processor_cls": "fiftyone.utils.torch.SemanticSegmenterOutputProcessor",
        "output_processor_args": {"has_softmax_out": false},
        "mask_targets_path": "{{eta-resources}}/voc-labels.txt",
        "image_dim": 32,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "device": "cpu",
    });
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    config
}

fn mask_of(model: &mut TorchImageModel, image: &Image) -> Vec<i64> {
    let input = model.preprocessor().preprocess(image.clone()).unwrap();
    match model.predict(&input).unwrap() {
        Prediction::Label(Some(Label::Segmentation {
            mask: SegmentationMask::I64(ids),
            ..
        })) => ids,
        other => panic!("not an int64 mask: {other:?}"),
    }
}

fn model_error(config: Value, path: &std::path::Path) -> String {
    match TorchImageModel::from_spec(&spec(config, path)) {
        Ok(_) => panic!("the config was accepted"),
        Err(err) => err.to_string(),
    }
}

/// `output_processor_args` (`no_background_cls`, `has_softmax_out`) and
/// `confidence_thresh` (config and `apply_model`'s override) do what
/// FiftyOne's `SemanticSegmenterOutputProcessor` does: ids shifted by one,
/// pixels below the threshold 0 (on the softmax, or on the raw scores
/// with `has_softmax_out`), a threshold of 0 ignored; a non-boolean flag is
/// an error naming it.
#[test]
fn segmenter_output_processor_args_and_confidence_thresh_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let path = weights("fcn_resnet50", 21, 4096.0, dir.path());
    let image = decode("upscale.png");
    let plain = mask_of(
        &mut TorchImageModel::from_spec(&spec(fcn_config(json!({})), &path)).unwrap(),
        &image,
    );
    assert_eq!(plain.len(), 48 * 32);
    let shifted = mask_of(
        &mut TorchImageModel::from_spec(&spec(
            fcn_config(json!({"output_processor_args":
                {"has_softmax_out": false, "no_background_cls": true}})),
            &path,
        ))
        .unwrap(),
        &image,
    );
    assert_eq!(
        shifted,
        plain.iter().map(|id| id + 1).collect::<Vec<_>>(),
        "no_background_cls"
    );
    // Probabilities never reach 1.5: every pixel is 0.
    let mut model =
        TorchImageModel::from_spec(&spec(fcn_config(json!({"confidence_thresh": 1.5})), &path))
            .unwrap();
    assert!(mask_of(&mut model, &image).iter().all(|id| *id == 0));
    // `apply_model`'s threshold replaces the config's; 0 is ignored.
    assert!(model.set_confidence_thresh(0.0));
    assert_eq!(mask_of(&mut model, &image), plain);
    // Without the softmax the raw scores are thresholded.
    let raw = fcn_config(json!({
        "output_processor_args": {"has_softmax_out": true},
        "confidence_thresh": 1.5,
    }));
    let mut model = TorchImageModel::from_spec(&spec(raw, &path)).unwrap();
    let input = model.preprocessor().preprocess(image.clone()).unwrap();
    let scores = model.raw_output(std::slice::from_ref(&input)).unwrap();
    let top: Vec<f32> = Vec::try_from(scores.get(0).amax(0, false).flatten(0, -1)).unwrap();
    let expected: Vec<i64> = plain
        .iter()
        .zip(&top)
        .map(|(id, top)| if *top >= 1.5 { *id } else { 0 })
        .collect();
    assert_eq!(mask_of(&mut model, &image), expected);
    let err = model_error(
        fcn_config(json!({"output_processor_args": {"has_softmax_out": "no"}})),
        &path,
    );
    assert!(
        err.contains("output_processor_args.has_softmax_out"),
        "{err}"
    );
}

/// `mask_targets` and `mask_targets_path` (FiftyOne's
/// `_parse_mask_targets`): zoo's VOC file for `{{eta-resources}}`, an
/// `id:name` file on disk, an inline map; their names, sorted, are the
/// classes when nothing else names them; a malformed one is an error
/// naming the field, an unknown resource an error saying so.
#[test]
fn mask_targets_name_the_classes_and_bad_ones_are_errors() {
    let config = |value: Value| value.as_object().unwrap().clone();
    let voc = zoo_torch_backend::mask_targets(&config(
        json!({"mask_targets_path": "{{eta-resources}}/voc-labels.txt"}),
    ))
    .unwrap()
    .unwrap();
    assert_eq!(voc.len(), 21);
    assert_eq!(voc[&0], "background");
    assert_eq!(voc[&15], "person");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.txt");
    fs_err::write(&file, "0:background\n\n2:zebra\n1:cat\n").unwrap();
    let names = zoo_torch_backend::class_names(&config(
        json!({"mask_targets_path": file.to_str().unwrap()}),
    ))
    .unwrap();
    assert_eq!(names, ["background", "cat", "zebra"]);
    // `mask_targets` wins over `mask_targets_path`.
    let names = zoo_torch_backend::class_names(&config(json!({
        "mask_targets": {"0": "sky", "1": "road"},
        "mask_targets_path": file.to_str().unwrap(),
    })))
    .unwrap();
    assert_eq!(names, ["road", "sky"]);
    for (bad, field) in [
        (json!({"mask_targets": ["sky"]}), "`mask_targets`"),
        (json!({"mask_targets": {"zero": "sky"}}), "`mask_targets`"),
        (json!({"mask_targets_path": 7}), "`mask_targets_path`"),
        (
            json!({"mask_targets_path": "{{eta-resources}}/coco-labels.txt"}),
            "not shipped with zoo",
        ),
    ] {
        let err = zoo_torch_backend::class_names(&config(bad.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{bad}: {err}");
    }
    fs_err::write(&file, "0:background\nno colon here\n").unwrap();
    let err = zoo_torch_backend::mask_targets(&config(
        json!({"mask_targets_path": file.to_str().unwrap()}),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 2") && err.contains("id:name"), "{err}");
}

/// `entrypoint_args.num_classes` sizes the segmenter as torchvision's
/// builder does (21 otherwise, whatever `mask_targets` lists); weights of
/// another size are an error; 0 classes is an error naming the field.
#[test]
fn entrypoint_args_num_classes_sizes_the_segmenter() {
    let dir = tempfile::tempdir().unwrap();
    let path = weights("fcn_resnet50", 5, 1.0, dir.path());
    let args = json!({"entrypoint_args": {"num_classes": 5}});
    let model = TorchImageModel::from_spec(&spec(fcn_config(args), &path)).unwrap();
    let input = model.preprocessor().preprocess(decode("none.png")).unwrap();
    let scores = model.raw_output(std::slice::from_ref(&input)).unwrap();
    assert_eq!(scores.size(), [1, 5, 32, 34]);
    let err = model_error(fcn_config(json!({})), &path);
    assert!(err.contains("classifier.4"), "{err}");
    let err = model_error(
        fcn_config(json!({"entrypoint_args": {"num_classes": 0}})),
        &path,
    );
    assert!(err.contains("entrypoint_args.num_classes"), "{err}");
}
