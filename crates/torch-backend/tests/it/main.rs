//! Parity with PyTorch: the oracle in `tests/fixtures/oracle.json` was
//! computed by `cargo xtask fixtures` (torch 2.13, torchvision 0.28, Pillow,
//! on the CPU) on the same images and on weights given by a formula both
//! sides compute.
//!
//! The checks that run a network run on the CPU, or on the device named by
//! `ZOO_TEST_DEVICE` (`cuda`, `cuda:N`): there each runs twice, in f32
//! within [`TOLERANCE`] of the CPU oracle and with `use_half_precision`
//! within [`HALF_TOLERANCE`] of it. zoo's own convolutions run with TF32 off
//! (`layers::Conv`); the networks still taken from `tch::vision` follow
//! libtorch's default (TF32 on in cuDNN) unless `NVIDIA_TF32_OVERRIDE=0`.
//! `ZOO_TEST_FIXTURES` points at the fixtures when the binary runs away
//! from its source tree (`cargo xtask device-build`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod checkpoints;
mod clip_parity;
mod depth_anything;
mod detection;
mod dinov2_parity;
mod families_parity;
mod fiftyone_parity;
mod hostile_inputs;
mod owlvit;
mod real_checkpoints;
mod segformer;
mod swinv2;
mod transformers;
mod yolo;
mod zero_shot;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tch::Tensor;
use zoo_model_core::{Image, Input, InputData, Label, Model, ModelSpec, Prediction, Preprocess};
use zoo_torch_backend::{TorchImageModel, parameter_shapes, read_named_tensors, resize_bilinear};

/// Largest absolute difference allowed from the oracle in f32.
const TOLERANCE: f32 = 1e-4;
/// Largest absolute difference allowed in half precision (PyTorch's own
/// `model.half()` on these inputs differs from its f32 by up to 1e-3).
const HALF_TOLERANCE: f32 = 1e-2;

fn fixtures() -> PathBuf {
    std::env::var_os("ZOO_TEST_FIXTURES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
        PathBuf::from,
    )
}

/// One way of running the networks: a config `device` and whether in half
/// precision.
#[derive(Debug, Clone)]
struct Run {
    device: String,
    half: bool,
}

impl Run {
    /// The CPU in f32, or `ZOO_TEST_DEVICE` in f32 and in half precision.
    fn all() -> Vec<Run> {
        let device = std::env::var("ZOO_TEST_DEVICE").unwrap_or_default();
        let device = device.trim();
        if device.is_empty() || device == "cpu" {
            return vec![Run {
                device: "cpu".into(),
                half: false,
            }];
        }
        assert!(
            device.starts_with("cuda"),
            "ZOO_TEST_DEVICE must be `cpu`, `cuda` or `cuda:N`, not `{device}`"
        );
        [false, true]
            .map(|half| Run {
                device: device.to_owned(),
                half,
            })
            .to_vec()
    }

    /// The config keys that select this run.
    fn apply_to(&self, mut config: Value) -> Value {
        config["device"] = json!(self.device);
        if self.half {
            config["use_half_precision"] = json!(true);
        }
        config
    }

    /// Asserts `ours` is within this run's tolerance of the oracle's
    /// `theirs`, and prints the difference (`--nocapture` shows it).
    fn assert_close(&self, ours: &[f32], theirs: &Value, what: &str) {
        let difference = max_difference(ours, theirs);
        let tolerance = if self.half { HALF_TOLERANCE } else { TOLERANCE };
        println!(
            "parity {what} on {self}: max |diff| {difference:.3e} (tolerance {tolerance:.1e})"
        );
        let hint = if self.device != "cpu" && !self.half {
            " (cuDNN's TF32 convolutions differ by about 1e-3: did a network use libtorch's default convolution? NVIDIA_TF32_OVERRIDE=0 turns TF32 off)"
        } else {
            ""
        };
        assert!(
            difference <= tolerance,
            "{what} on {self}: max |diff| {difference} > {tolerance}{hint}"
        );
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let precision = if self.half { "half" } else { "f32" };
        write!(f, "{} {precision}", self.device)
    }
}

fn oracle() -> Value {
    serde_json::from_slice(&fs_err::read(fixtures().join("oracle.json")).unwrap()).unwrap()
}

fn load(file: &str) -> Image {
    let decoded = image::open(fixtures().join("images").join(file))
        .unwrap()
        .to_rgb8();
    Image::new(decoded.width(), decoded.height(), decoded.into_raw()).unwrap()
}

/// The same formula as `xtask/fixtures/torch_oracle.py`.
fn formula(name: &str, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let base: u64 = name.bytes().map(u64::from).sum::<u64>() % 1000;
    let values: Vec<f32> = (0..n as u64)
        .map(|k| {
            let s = (((k + base) as f64) * 0.618).sin();
            let value = if name.ends_with("running_var") {
                1.0 + 0.5 * s.abs()
            } else if name.ends_with("running_mean") {
                0.1 * s
            } else if shape.len() == 1 && name.ends_with("weight") {
                1.0 + 0.1 * s
            } else if shape.len() == 1 {
                0.1 * s
            } else {
                s * (1.0 / ((n / shape[0]) as f64).sqrt())
            };
            value as f32
        })
        .collect();
    Tensor::from_slice(&values).view(shape)
}

fn formula_weights(entrypoint: &str, dir: &Path) -> PathBuf {
    let tensors: Vec<(String, Tensor)> = parameter_shapes(entrypoint, 1000)
        .unwrap()
        .into_iter()
        .map(|(name, shape)| {
            let tensor = formula(&name, &shape);
            (name, tensor)
        })
        .collect();
    let path = dir.join(format!("{entrypoint}.safetensors"));
    Tensor::write_safetensors(&tensors, &path).unwrap();
    path
}

fn spec(config: Value, model_path: &Path) -> ModelSpec {
    ModelSpec {
        kind: "fiftyone.zoo.models.torch.TorchvisionImageModel".into(),
        config: config.as_object().unwrap().clone(),
        model_path: Some(model_path.to_path_buf()),
    }
}

fn imagenet_config(entrypoint: &str, embeddings: &str) -> Value {
    json!({
        "entrypoint_fcn": entrypoint,
        "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
        "labels_path": "{{eta-resources}}/imagenet-labels-no-background.txt",
        "image_min_dim": 224,
        "image_max_dim": 2048,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "embeddings_layer": embeddings,
        "device": "cpu",
    })
}

fn max_difference(ours: &[f32], theirs: &Value) -> f32 {
    let theirs: Vec<f32> = theirs
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn input(model: &TorchImageModel, file: &str) -> Input {
    model.preprocessor().preprocess(load(file)).unwrap()
}

#[test]
fn resized_pixels_are_identical_to_pillows() {
    let config = zoo_torch_backend::Preprocessing {
        min_dim: Some(224),
        max_dim: Some(2048),
        ..Default::default()
    };
    for entry in oracle()["images"].as_array().unwrap() {
        let image = load(entry["file"].as_str().unwrap());
        let (width, height) = config.target_size(image.width, image.height);
        assert_eq!(
            json!([width, height]),
            entry["resized"],
            "{}",
            entry["file"]
        );
        let resized = resize_bilinear(&image, width, height);
        let digest: String = Sha256::digest(&resized.pixels)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(
            digest,
            entry["resized_sha256"].as_str().unwrap(),
            "{}",
            entry["file"]
        );
    }
}

/// What a model on a GPU is fed (`u8` pixels, normalised on the device)
/// gives the very logits of host-normalised inputs: the same operations in
/// the same precision. Run on the CPU here (channels-last folded resnet18,
/// NCHW mobilenet_v2) and on `ZOO_TEST_DEVICE`.
#[test]
fn pixel_inputs_give_the_logits_of_host_normalised_inputs_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = zoo_torch_backend::Preprocessing {
        min_dim: Some(224),
        max_dim: Some(2048),
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        pixels: true,
        ..Default::default()
    };
    let host = zoo_torch_backend::Preprocessing {
        pixels: false,
        ..pixels.clone()
    };
    for (entrypoint, layer) in [
        ("torchvision.models.resnet.resnet18", "<fc"),
        ("torchvision.models.mobilenet.mobilenet_v2", "<classifier.1"),
    ] {
        let weights = formula_weights(entrypoint, dir.path());
        for run in Run::all().into_iter().filter(|run| !run.half) {
            let config = run.apply_to(imagenet_config(entrypoint, layer));
            let mut model = TorchImageModel::from_spec(&spec(config, &weights)).unwrap();
            model.set_store_logits(true);
            let logits = |model: &mut TorchImageModel, inputs: &[Input]| -> Vec<Vec<f32>> {
                model
                    .predict_all(inputs)
                    .unwrap()
                    .into_iter()
                    .map(|prediction| match prediction {
                        Prediction::Label(Some(Label::Classification {
                            logits: Some(logits),
                            ..
                        })) => logits,
                        other => panic!("no logits: {other:?}"),
                    })
                    .collect()
            };
            for entry in oracle()["images"].as_array().unwrap() {
                let image = load(entry["file"].as_str().unwrap());
                let as_pixels = pixels.preprocess(image.clone()).unwrap();
                let as_values = host.preprocess(image).unwrap();
                assert!(matches!(as_pixels.data, InputData::Pixels(_)));
                assert!(matches!(as_values.data, InputData::Values(_)));
                let batch = |input: &Input| vec![input.clone(), input.clone()];
                assert_eq!(
                    logits(&mut model, &batch(&as_pixels)),
                    logits(&mut model, &batch(&as_values)),
                    "{entrypoint} on {run}, {}",
                    entry["file"]
                );
            }
        }
    }
}

#[test]
fn logits_match_pytorch_for_resnet18_mobilenet_v2_and_densenet121() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("torchvision.models.resnet.resnet18", "resnet18", "<fc"),
        (
            "torchvision.models.mobilenet.mobilenet_v2",
            "mobilenet_v2",
            "<classifier.1",
        ),
        (
            "torchvision.models.densenet.densenet121",
            "densenet121",
            "<classifier",
        ),
    ];
    let oracle = oracle();
    for (entrypoint, key, layer) in cases {
        let weights = formula_weights(entrypoint, dir.path());
        for run in Run::all() {
            let config = run.apply_to(imagenet_config(entrypoint, layer));
            let mut model = TorchImageModel::from_spec(&spec(config, &weights)).unwrap();
            model.set_store_logits(true);
            for entry in oracle["images"].as_array().unwrap() {
                let file = entry["file"].as_str().unwrap();
                let input = input(&model, file);
                let Prediction::Label(Some(Label::Classification {
                    logits: Some(logits),
                    label,
                    confidence,
                })) = model.predict(&input).unwrap()
                else {
                    panic!("no classification");
                };
                run.assert_close(
                    &logits,
                    &entry["logits"][key],
                    &format!("{key} logits of {file}"),
                );
                assert!(!label.is_empty() && confidence.unwrap() > 0.0);
            }
        }
    }
}

/// VGG, AlexNet and SqueezeNet as zoo writes them, against torchvision's
/// own (oracle: `xtask/fixtures/torch_oracle.py`, torchvision 0.28) on the
/// fixture images, none of which is 224x224 (269x224, 336x224, 224x485):
/// the adaptive pooling tch's VGG lacks is exercised. vgg11's
/// `<classifier.6` embedding too.
#[test]
fn logits_match_pytorch_for_vgg11_alexnet_and_squeezenet1_1_on_non_224_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("torchvision.models.vgg.vgg11", "vgg11", "<classifier.6"),
        (
            "torchvision.models.alexnet.alexnet",
            "alexnet",
            "<classifier.6",
        ),
        (
            "torchvision.models.squeezenet.squeezenet1_1",
            "squeezenet1_1",
            "",
        ),
    ];
    let oracle = oracle();
    for (entrypoint, key, layer) in cases {
        let weights = formula_weights(entrypoint, dir.path());
        let mut model =
            TorchImageModel::from_spec(&spec(imagenet_config(entrypoint, layer), &weights))
                .unwrap();
        fs_err::remove_file(&weights).unwrap();
        model.set_store_logits(true);
        assert_eq!(model.has_embeddings(), !layer.is_empty(), "{key}");
        for entry in oracle["images"].as_array().unwrap() {
            let input = input(&model, entry["file"].as_str().unwrap());
            assert_ne!(input.shape[1..], [224, 224]);
            let Prediction::Label(Some(Label::Classification {
                logits: Some(logits),
                ..
            })) = model.predict(&input).unwrap()
            else {
                panic!("no classification");
            };
            let difference = max_difference(&logits, &entry["logits"][key]);
            assert!(
                difference <= TOLERANCE,
                "{key} on {}: max |diff| {difference}",
                entry["file"]
            );
            if key == "vgg11" {
                let vectors = model.embed_all(&[input]).unwrap();
                assert_eq!(vectors[0].len(), 4096);
                let difference = max_difference(&vectors[0], &entry["vgg11_embedding"]);
                assert!(difference <= TOLERANCE, "vgg11 embedding: {difference}");
            }
        }
    }
}

#[test]
fn embeddings_match_pytorch_and_batches_equal_singles() {
    let dir = tempfile::tempdir().unwrap();
    let entrypoint = "torchvision.models.resnet.resnet18";
    let weights = formula_weights(entrypoint, dir.path());
    let oracle = oracle();
    for run in Run::all() {
        let config = run.apply_to(imagenet_config(entrypoint, "<fc"));
        let mut model = TorchImageModel::from_spec(&spec(config, &weights)).unwrap();
        assert!(model.has_embeddings());
        for entry in oracle["images"].as_array().unwrap() {
            let file = entry["file"].as_str().unwrap();
            let input = input(&model, file);
            let vectors = model.embed_all(std::slice::from_ref(&input)).unwrap();
            assert_eq!(vectors[0].len(), 512);
            let expected = &entry["resnet18_embedding"];
            run.assert_close(
                &vectors[0],
                expected,
                &format!("resnet18 embedding of {file}"),
            );
            // A batch of equal-size inputs gives the same numbers as singles.
            let batch = model.embed_all(&[input.clone(), input.clone()]).unwrap();
            run.assert_close(&batch[1], expected, &format!("batched embedding of {file}"));
        }
    }
}

#[test]
fn torchscript_classifier_and_embedding_method() {
    let config = json!({"output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor", "classes": ["a", "b", "c"], "image_min_dim": 224, "image_max_dim": 2048,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "embeddings_layer": "embed"});
    for run in Run::all() {
        let mut model = TorchImageModel::from_spec(&ModelSpec {
            kind: "fiftyone.utils.torch.TorchImageModel".into(),
            config: run.apply_to(config.clone()).as_object().unwrap().clone(),
            model_path: Some(fixtures().join("script_classifier.pt")),
        })
        .unwrap();
        model.set_store_logits(true);
        for entry in oracle()["images"].as_array().unwrap() {
            let file = entry["file"].as_str().unwrap();
            let input = input(&model, file);
            let Prediction::Label(Some(Label::Classification {
                logits: Some(logits),
                ..
            })) = model.predict(&input).unwrap()
            else {
                panic!()
            };
            run.assert_close(
                &logits,
                &entry["script_logits"],
                &format!("TorchScript logits of {file}"),
            );
            let vectors = model.embed_all(&[input]).unwrap();
            run.assert_close(
                &vectors[0],
                &entry["script_embedding"],
                &format!("TorchScript embedding of {file}"),
            );
        }
    }
}

#[test]
fn torchscript_detector_goes_through_the_detector_processor() {
    let config = json!({"classes": ["background", "top-left", "bottom-right"], "image_min_dim": 224, "image_max_dim": 2048,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "output_processor_cls": "fiftyone.utils.torch.DetectorOutputProcessor"});
    for run in Run::all() {
        let mut model = TorchImageModel::from_spec(&ModelSpec {
            kind: "fiftyone.utils.torch.TorchImageModel".into(),
            config: run.apply_to(config.clone()).as_object().unwrap().clone(),
            model_path: Some(fixtures().join("script_detector.pt")),
        })
        .unwrap();
        let entry = &oracle()["images"][0];
        let input = input(&model, entry["file"].as_str().unwrap());
        let Prediction::Label(Some(Label::Detections(detections))) = model.predict(&input).unwrap()
        else {
            panic!()
        };
        assert_eq!(detections.len(), 2);
        assert_eq!(detections[0].label, "top-left");
        assert_eq!(detections[0].bounding_box, [0.0, 0.0, 0.5, 0.5]);
        assert_eq!(detections[1].bounding_box, [0.5, 0.5, 0.5, 0.5]);
        let score = entry["script_detections"]["scores"][0].as_f64().unwrap();
        let tolerance = if run.half {
            f64::from(HALF_TOLERANCE)
        } else {
            1e-6
        };
        let difference = (detections[0].confidence.unwrap() - score).abs();
        println!(
            "parity detector score on {run}: |diff| {difference:.3e} (tolerance {tolerance:.0e})"
        );
        assert!(
            difference < tolerance,
            "detector score on {run}: {difference}"
        );
    }
}

/// A TorchScript instance segmenter, as FiftyOne runs one
/// (`entrypoint_fcn: torch.jit.load`, `InstanceSegmenterOutputProcessor`):
/// the same detections and masks as FiftyOne 1.22.1's `TorchImageModel` on
/// it (`xtask/fixtures/script_segmenter_oracle.py`).
#[test]
fn torchscript_instance_segmenter_matches_fiftyone() {
    let script = fixtures().join("script_segmenter.pt");
    let config = json!({"entrypoint_fcn": "torch.jit.load", "entrypoint_args": {"f": script},
        "output_processor_cls": "fiftyone.utils.torch.InstanceSegmenterOutputProcessor",
        "classes": ["background", "top-left", "bottom-right"], "image_min_dim": 224, "image_max_dim": 2048,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]});
    let oracle: Value = serde_json::from_str(
        &fs_err::read_to_string(fixtures().join("script_segmenter_oracle.json")).unwrap(),
    )
    .unwrap();
    let mut model = TorchImageModel::from_spec(&ModelSpec {
        kind: "fiftyone.utils.torch.TorchImageModel".into(),
        config: config.as_object().unwrap().clone(),
        model_path: None,
    })
    .unwrap();
    let mut masks = 0;
    for (file, expected) in oracle.as_object().unwrap() {
        let Prediction::Label(Some(Label::Detections(found))) =
            model.predict(&input(&model, file)).unwrap()
        else {
            panic!("{file}: no detections")
        };
        let expected = expected.as_array().unwrap();
        assert_eq!(found.len(), expected.len(), "{file}");
        for (detection, theirs) in found.iter().zip(expected) {
            assert_eq!(detection.label, theirs["label"].as_str().unwrap(), "{file}");
            for (ours, theirs) in detection
                .bounding_box
                .iter()
                .zip(theirs["bounding_box"].as_array().unwrap())
            {
                assert!(
                    (ours - theirs.as_f64().unwrap()).abs() < 1e-6,
                    "{file}: box {ours} vs {theirs}"
                );
            }
            let confidence = detection.confidence.unwrap();
            let difference = (confidence - theirs["confidence"].as_f64().unwrap()).abs();
            assert!(
                difference < 1e-5,
                "{file}: confidence {confidence} vs {}",
                theirs["confidence"]
            );
            let (height, width, bytes) = detection.mask.as_ref().expect("a mask");
            assert_eq!(json!([height, width]), theirs["mask_shape"], "{file}");
            let ones = bytes.iter().filter(|byte| **byte != 0).count();
            assert_eq!(json!(ones), theirs["mask_ones"], "{file}");
            let zero_one: Vec<u8> = bytes.iter().map(|byte| u8::from(*byte != 0)).collect();
            let digest: String = Sha256::digest(&zero_one)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            assert_eq!(
                digest,
                theirs["mask_sha256"].as_str().unwrap(),
                "{file}: mask differs"
            );
            masks += 1;
        }
    }
    assert_eq!(masks, 6);
}

#[test]
fn pth_state_dicts_read_exactly_in_zip_and_legacy_formats() {
    for file in ["tiny_state_dict.pth", "tiny_state_dict_legacy.pth"] {
        let tensors = read_named_tensors(&fixtures().join(file)).unwrap();
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, tensor)| tensor.shallow_clone())
                .unwrap_or_else(|| panic!("{file}: no {name}"))
        };
        assert_eq!(
            Vec::<f32>::try_from(get("a.weight").flatten(0, -1)).unwrap(),
            (0..12).map(|v| v as f32).collect::<Vec<_>>(),
            "{file}"
        );
        assert_eq!(get("a.view").size(), vec![4, 3]);
        assert_eq!(
            Vec::<f32>::try_from(get("a.view").flatten(0, -1)).unwrap()[..3],
            [0.0, 4.0, 8.0]
        );
        assert_eq!(
            Vec::<f32>::try_from(get("a.row")).unwrap(),
            vec![4.0, 5.0, 6.0, 7.0],
            "{file}"
        );
        assert_eq!(
            Vec::<f32>::try_from(get("b.half").to_kind(tch::Kind::Float)).unwrap(),
            vec![1.5, -2.0]
        );
        assert_eq!(Vec::<i64>::try_from(get("b.long")).unwrap(), vec![7, -3]);
        assert_eq!(tensors.len(), 6, "{file}");
    }
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pth");
    fs_err::write(&junk, b"definitely not weights").unwrap();
    let err = read_named_tensors(&junk).unwrap_err().to_string();
    assert!(
        err.contains("junk.pth") && err.contains("not a PyTorch checkpoint"),
        "{err}"
    );
}

#[test]
fn weight_mismatches_name_the_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let entrypoint = "torchvision.models.resnet.resnet18";
    let mut tensors: Vec<(String, Tensor)> = parameter_shapes(entrypoint, 1000)
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name != "fc.bias")
        .map(|(name, shape)| (name, Tensor::zeros(shape.as_slice(), tch::kind::FLOAT_CPU)))
        .collect();
    tensors.push((
        "surprise.weight".into(),
        Tensor::zeros([1], tch::kind::FLOAT_CPU),
    ));
    tensors.push((
        "bn1.num_batches_tracked".into(),
        Tensor::zeros([1], tch::kind::INT64_CPU),
    ));
    let path = dir.path().join("bad.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let err = TorchImageModel::from_spec(&spec(imagenet_config(entrypoint, "<fc"), &path))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing fc.bias"), "{err}");
    assert!(err.contains("unexpected surprise.weight"), "{err}");
    assert!(!err.contains("num_batches_tracked"), "{err}");

    let unknown = TorchImageModel::from_spec(&spec(
        imagenet_config("torchvision.models.convnext.convnext_tiny", ""),
        &path,
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(unknown.contains("not available natively"), "{unknown}");
    let mut factory = zoo_model_core::ModelFactory::new();
    zoo_torch_backend::register(&mut factory);
    let other = factory
        .build(&ModelSpec {
            kind: "fiftyone.utils.sam.SegmentAnythingModel".into(),
            ..spec(json!({}), &path)
        })
        .err()
        .unwrap();
    assert!(
        other
            .to_string()
            .contains("cannot run models of type `fiftyone.utils.sam.SegmentAnythingModel`"),
        "{other}"
    );
}
