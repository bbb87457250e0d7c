//! transformers' SegFormer against FiftyOne 1.22.1: the oracle
//! (`tests/fixtures/transformers/segformer_oracle.json`, made by `cargo xtask
//! segformer-oracle`) ran FiftyOne's own
//! `load_zoo_model("segformer-b0-ade20k-torch", name_or_path=REPO)` with
//! `apply_model` (its `Segmentation` masks) on a tiny seeded repo that
//! transformers 5.25's `save_pretrained` wrote (`transformers/segformer/`,
//! with nvidia/segformer-b0-finetuned-ade-512-512's processor file at
//! 64x64), on one thread; and the model's logits on its processor's pixel
//! values, with the margin between FiftyOne's top two softmax
//! probabilities per pixel.
//!
//! Masks must be equal except where FiftyOne's own top two are within
//! [`TIE`]; logits within [`TOLERANCE`].

use std::path::PathBuf;

use serde_json::{Value, json};
use zoo_model_core::{Input, Label, Model, ModelSpec, Prediction, SegmentationMask};
use zoo_torch_backend::TorchTransformerSegmenter;

use crate::transformers::{folder, largest_difference};

/// The largest difference allowed in a logit.
const TOLERANCE: f64 = 1e-4;

/// Pixels whose top two probabilities (FiftyOne's) are this close may take
/// either class.
const TIE: f64 = 1e-5;

fn oracle() -> Value {
    serde_json::from_str(&fs_err::read_to_string(folder().join("segformer_oracle.json")).unwrap())
        .unwrap()
}

fn repo() -> PathBuf {
    folder().join("segformer")
}

fn spec(dir: &std::path::Path, config: Value) -> ModelSpec {
    let Value::Object(config) = config else {
        panic!("a config is an object");
    };
    ModelSpec {
        kind: "fiftyone.utils.transformers.FiftyOneTransformerForSemanticSegmentation".into(),
        config,
        model_path: Some(dir.to_owned()),
    }
}

/// The built-in entries' config.
fn builtin() -> Value {
    json!({"name_or_path": "nvidia/segformer-b0-finetuned-ade-512-512",
           "output_processor_args": {"no_background_cls": true, "has_softmax_out": false}})
}

fn mask_of(prediction: &Prediction) -> (usize, usize, Vec<i64>) {
    let Prediction::Label(Some(Label::Segmentation {
        height,
        width,
        mask: SegmentationMask::I64(values),
    })) = prediction
    else {
        panic!("not an int64 mask: {prediction:?}");
    };
    (*height, *width, values.clone())
}

/// `segformer-b0-ade20k-torch`'s manifest config on every picture, one at a
/// time and all in one batch: FiftyOne's masks and the model's logits.
#[test]
fn segformer_matches_fiftyones_own_masks() {
    tch::set_num_threads(1);
    let oracle = oracle();
    let expected = oracle["segformer-b0-ade20k-torch"].as_object().unwrap();
    let mut model = TorchTransformerSegmenter::from_spec(&spec(&repo(), builtin())).unwrap();
    assert_eq!(model.labels(), ["wall", "building", "sky", "floor"]);
    assert!(!model.ragged_batches(), "its processor gives one size");
    let preprocessor = model.preprocessor();
    let (mut worst_logits, mut ties, mut pixels) = (0.0f64, 0usize, 0usize);
    let mut inputs: Vec<Input> = Vec::new();
    let mut masks = Vec::new();
    for (picture, expected) in expected {
        let image = zoo_datasets::decode_image(&folder().join(picture)).unwrap();
        let input = preprocessor.preprocess(image).unwrap();
        assert_eq!(input.shape, [3, 64, 64], "{picture}");
        let logits = model.logits(std::slice::from_ref(&input)).unwrap();
        let shape: Vec<usize> = logits.shape()[1..].to_vec();
        let want_shape: Vec<usize> = expected["logits_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|side| side.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, want_shape, "{picture}");
        let values: Vec<f32> = logits.iter().copied().collect();
        worst_logits = worst_logits.max(largest_difference(&values, &expected["logits"]));
        let prediction = model.predict_all(std::slice::from_ref(&input)).unwrap();
        let (height, width, mask) = mask_of(&prediction[0]);
        assert_eq!(
            json!([height, width]),
            expected["mask_shape"],
            "{picture}: FiftyOne stores the mask at the logits' size"
        );
        assert_eq!(expected["mask_dtype"], "<i8", "FiftyOne's mask is int64");
        let want = expected["mask"].as_array().unwrap();
        let margin = expected["margin"].as_array().unwrap();
        assert_eq!(mask.len(), want.len(), "{picture}");
        for ((ours, theirs), margin) in mask.iter().zip(want).zip(margin) {
            pixels += 1;
            if margin.as_f64().unwrap() <= TIE {
                ties += 1;
                continue;
            }
            assert_eq!(*ours, theirs.as_i64().unwrap(), "{picture}");
        }
        masks.push(mask);
        inputs.push(input);
    }
    // The masks are not trivial: every label wins somewhere.
    let mut seen: Vec<i64> = masks.iter().flatten().copied().collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, [1, 2, 3, 4], "no_background_cls shifts ids by 1");
    // One batch gives what one image at a time gave.
    let batched = model.predict_all(&inputs).unwrap();
    for (prediction, mask) in batched.iter().zip(&masks) {
        assert_eq!(&mask_of(prediction).2, mask);
    }
    println!(
        "segformer: largest logit difference {worst_logits:e}; {ties} of {pixels} pixels within {TIE} of a tie"
    );
    assert!(worst_logits <= TOLERANCE, "logits: {worst_logits}");
}

/// FiftyOne's `confidence_thresh` zeroes pixels whose top probability is
/// below it; `has_softmax_out` (FiftyOne's default) takes the raw logits.
#[test]
fn segformer_confidence_thresh_and_softmax_options_follow_fiftyone() {
    tch::set_num_threads(1);
    let image = zoo_datasets::decode_image(&folder().join("image_1_32x32.png")).unwrap();
    let mut model = TorchTransformerSegmenter::from_spec(&spec(&repo(), builtin())).unwrap();
    let input = model.preprocessor().preprocess(image).unwrap();
    let logits = model.logits(std::slice::from_ref(&input)).unwrap();
    let (_, _, plain) = mask_of(&model.predict_all(std::slice::from_ref(&input)).unwrap()[0]);
    assert!(model.set_confidence_thresh(0.6));
    let (_, _, thresholded) = mask_of(&model.predict_all(std::slice::from_ref(&input)).unwrap()[0]);
    let [_, classes, height, width] = [0, 1, 2, 3].map(|axis| logits.shape()[axis]);
    let mut zeroed = 0;
    for y in 0..height {
        for x in 0..width {
            let column: Vec<f64> = (0..classes)
                .map(|c| f64::from(logits[[0, c, y, x]]))
                .collect();
            let top = column.iter().copied().fold(f64::MIN, f64::max);
            let sum: f64 = column.iter().map(|value| (value - top).exp()).sum();
            let probability = 1.0 / sum;
            let index = y * width + x;
            if (probability - 0.6).abs() < 1e-4 {
                continue;
            }
            if probability < 0.6 {
                zeroed += 1;
                assert_eq!(thresholded[index], 0);
            } else {
                assert_eq!(thresholded[index], plain[index]);
            }
        }
    }
    assert!(zeroed > 0, "the threshold zeroes some pixels");
    // Without the built-in's `output_processor_args`: no shift, raw logits.
    let mut raw = TorchTransformerSegmenter::from_spec(&spec(&repo(), json!({}))).unwrap();
    let (_, _, unshifted) = mask_of(&raw.predict_all(std::slice::from_ref(&input)).unwrap()[0]);
    assert_eq!(
        unshifted.iter().map(|id| id + 1).collect::<Vec<_>>(),
        plain,
        "argmax of the logits is the softmax's"
    );
}

/// A copy of the fixture repo with `config.json` and the tensors edited.
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

fn load_error(dir: &std::path::Path, config: Value) -> String {
    TorchTransformerSegmenter::from_spec(&spec(dir, config))
        .unwrap_err()
        .to_string()
}

/// A SegFormer repo whose `config.json` does not fit is an error naming the
/// field and the file, never a panic.
#[test]
fn hostile_segformer_configs_are_errors_naming_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("depths", json!([2, 1]), "`depths` lists 2 values"),
        (
            "depths",
            json!([2, 1, 1, 100_000]),
            "`depths` must be from 0",
        ),
        ("depths", json!([2, 2, 1, 1]), "block.1.1.attention"),
        (
            "num_encoder_blocks",
            json!(0),
            "`num_encoder_blocks` must be from 1",
        ),
        ("num_encoder_blocks", json!(-1), "`num_encoder_blocks`"),
        (
            "hidden_sizes",
            json!([8, 16, 24, 1_i64 << 40]),
            "`hidden_sizes` must be from 1",
        ),
        ("num_attention_heads", json!([1, 2, 5, 4]), "not a multiple"),
        (
            "num_attention_heads",
            json!([1, 2, 3, 0]),
            "`num_attention_heads` must be from 1",
        ),
        (
            "sr_ratios",
            json!([0, 4, 2, 1]),
            "`sr_ratios` must be from 1",
        ),
        ("sr_ratios", json!([8, 4, 2, 2]), "attention.self.sr.weight"),
        (
            "patch_sizes",
            json!([7, 3, 3, 1000]),
            "`patch_sizes` must be from 1",
        ),
        ("strides", json!([4, 2, 2, "2"]), "`strides"),
        ("mlp_ratios", json!([4, 4, 2, 1e300]), "`mlp_ratios`"),
        ("mlp_ratios", json!([4, 4, 2, 3]), "dense1.weight"),
        ("hidden_act", json!("mish"), "`hidden_act` `mish`"),
        ("num_channels", json!(1), "`num_channels` must be 3"),
        ("reshape_last_stage", json!(false), "`reshape_last_stage`"),
        (
            "decoder_hidden_size",
            json!(0),
            "`decoder_hidden_size` must be from 1",
        ),
        ("decoder_hidden_size", json!(32), "linear_c.0.proj.weight"),
        (
            "id2label",
            json!({"0": "a", "1": "b"}),
            "has 4 rows but `id2label` lists 2",
        ),
        (
            "id2label",
            json!({"0": "a", "x": "b"}),
            "`id2label` key `x`",
        ),
        ("model_type", json!("beit"), "`model_type` `beit`"),
    ];
    for (field, value, expected) in cases {
        let dir = edited_repo(|config| config[field] = value.clone(), |_| {});
        let error = load_error(dir.path(), json!({}));
        assert!(error.contains(expected), "{field}={value}: {error}");
        if !error.contains("weights in") && !error.contains("`model_type`") {
            assert!(error.contains("config.json"), "{field}={value}: {error}");
        }
    }
}

/// Weights that do not fit the config are errors naming the repo and the
/// tensor; an odd processor file is an error naming it.
#[test]
fn mismatched_segformer_weights_and_processors_are_errors() {
    let missing = edited_repo(
        |_| {},
        |tensors| tensors.retain(|(name, _)| name != "decode_head.linear_fuse.weight"),
    );
    let error = load_error(missing.path(), json!({}));
    assert!(
        error.contains("`decode_head.linear_fuse.weight` is missing")
            && error.contains(&missing.path().display().to_string()),
        "{error}"
    );
    let extra = edited_repo(
        |_| {},
        |tensors| {
            tensors.push((
                "decode_head.extra.weight".into(),
                tch::Tensor::zeros([2], tch::kind::FLOAT_CPU),
            ))
        },
    );
    let error = load_error(extra.path(), json!({}));
    assert!(error.contains("`decode_head.extra.weight`"), "{error}");
    let misshapen = edited_repo(
        |_| {},
        |tensors| {
            for (name, tensor) in tensors.iter_mut() {
                if name == "segformer.encoder.block.0.0.mlp.dwconv.dwconv.weight" {
                    *tensor = tch::Tensor::zeros([32, 1, 5, 5], tch::kind::FLOAT_CPU);
                }
            }
        },
    );
    let error = load_error(misshapen.path(), json!({}));
    assert!(
        error.contains("dwconv.dwconv.weight` has shape [32, 1, 5, 5]"),
        "{error}"
    );
    for (processor, expected) in [
        (
            json!({"feature_extractor_type": "BeitFeatureExtractor"}),
            "`BeitFeatureExtractor`",
        ),
        (json!({"size": 0}), "`size` must be"),
        (json!({"size": {"longest_edge": 64}}), "`size.longest_edge`"),
        (json!({"resample": 5}), "`resample` 5"),
        (json!({"image_std": [0.2, 0.0, 0.2]}), "`image_std`"),
    ] {
        let dir = edited_repo(|_| {}, |_| {});
        fs_err::write(
            dir.path().join("preprocessor_config.json"),
            processor.to_string(),
        )
        .unwrap();
        let error = load_error(dir.path(), json!({}));
        assert!(
            error.contains(expected) && error.contains("preprocessor_config.json"),
            "{processor}: {error}"
        );
    }
}

/// FiftyOne options zoo does not reproduce are refused by name.
#[test]
fn segformer_options_zoo_does_not_run_are_refused() {
    for (config, expected) in [
        (
            json!({"entrypoint_fcn": "my.module.build"}),
            "`entrypoint_fcn`",
        ),
        (
            json!({"output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor"}),
            "`output_processor_cls`",
        ),
        (
            json!({"output_processor_args": {"logits_key": "pred_masks"}}),
            "`output_processor_args.logits_key`",
        ),
        (
            json!({"transforms_args": {"use_fast": false}}),
            "`transforms_args.use_fast`",
        ),
        (
            json!({"transformers_processor_kwargs": {"do_resize": false}}),
            "`transformers_processor_kwargs.do_resize`",
        ),
        (
            json!({"output_processor_args": {"no_background_cls": "yes"}}),
            "no_background_cls",
        ),
    ] {
        let error = load_error(&repo(), config.clone());
        assert!(error.contains(expected), "{config}: {error}");
    }
    // Too small an input (after a processor that keeps it) is an error,
    // not a panic: stage 1's grid must hold its 8x8 sequence reduction.
    let model = TorchTransformerSegmenter::from_spec(&spec(&repo(), json!({}))).unwrap();
    let small = Input {
        shape: [3, 16, 16],
        data: zoo_model_core::InputData::Values(vec![0.0; 3 * 16 * 16]),
        original_size: (16, 16),
    };
    let error = model.logits(&[small]).unwrap_err().to_string();
    assert!(error.contains("at least"), "{error}");
}
