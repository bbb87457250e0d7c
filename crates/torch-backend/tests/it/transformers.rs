//! Hugging Face transformers classifiers against FiftyOne 1.22.1: the
//! oracle (`tests/fixtures/transformers/transformers_oracle.json`, made by
//! `cargo xtask transformers-oracle`) ran FiftyOne's own
//! `load_zoo_model("vit-base-patch16-224-imagenet-torch" /
//! "convnext-tiny-224-torch" / "efficientnet-b0-imagenet-torch",
//! name_or_path=REPO)` with `apply_model`
//! (labels with logits) and `compute_embeddings`, and its image processor
//! (`model.transforms`), on tiny seeded repos that transformers 5.25's
//! `save_pretrained` wrote (committed beside it), on one thread.
//!
//! The processor's pixel values must be equal bit for bit (libtorch's
//! `uint8` AVX resampling, which the oracle machine used); logits,
//! confidences and embeddings within [`TOLERANCE`]; labels equal.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use zoo_model_core::{Input, InputData, Label, Model, ModelSpec, Prediction};
use zoo_test_support::{StateTensor, torch_save_zip};
use zoo_torch_backend::TorchTransformerModel;

use crate::fixtures;

/// The largest difference allowed in a logit, confidence or embedding value.
const TOLERANCE: f64 = 1e-4;

pub(crate) fn folder() -> PathBuf {
    fixtures().join("transformers")
}

fn oracle() -> Value {
    serde_json::from_str(
        &fs_err::read_to_string(folder().join("transformers_oracle.json")).unwrap(),
    )
    .unwrap()
}

pub(crate) fn model(repo: &Path, config: Value) -> TorchTransformerModel {
    let Value::Object(config) = config else {
        panic!("a config is an object");
    };
    let spec = ModelSpec {
        kind: "fiftyone.utils.transformers.FiftyOneTransformerForImageClassification".into(),
        config,
        model_path: Some(repo.to_owned()),
    };
    TorchTransformerModel::from_spec(&spec).unwrap()
}

pub(crate) fn largest_difference(ours: &[f32], theirs: &Value) -> f64 {
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        // The oracle's values are f32s; serde_json may read their decimal
        // text one f64 ulp off, which the f32 absorbs.
        .map(|(a, b)| (f64::from(*a) - f64::from(b.as_f64().unwrap() as f32)).abs())
        .fold(0.0, f64::max)
}

/// The largest differences over one repo's pictures.
#[derive(Debug, Default)]
struct Differences {
    pixels: f64,
    logits: f64,
    confidence: f64,
    embeddings: f64,
}

/// Runs the repo `name` of the fixtures as `entry` does (its manifest
/// config) on every picture, one at a time and all in one batch, against
/// the oracle.
fn check(name: &str, entry: &str, config: Value) -> Differences {
    tch::set_num_threads(1);
    let oracle = oracle();
    let expected = oracle[entry].as_object().unwrap();
    let mut model = model(&folder().join(name), config);
    assert!(
        !model.ragged_batches(),
        "{name}: its processor gives one size"
    );
    let preprocessor = model.preprocessor();
    let mut seen = Differences::default();
    let mut inputs: Vec<Input> = Vec::new();
    for (picture, expected) in expected {
        let image = zoo_datasets::decode_image(&folder().join(picture)).unwrap();
        let input = preprocessor.preprocess(image).unwrap();
        let shape: Vec<u64> = expected["pixel_values_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|side| side.as_u64().unwrap())
            .collect();
        assert_eq!(shape[1..], input.shape.map(|side| side as u64), "{picture}");
        let InputData::Values(values) = &input.data else {
            panic!("transformers inputs are values");
        };
        let pixels = largest_difference(values, &expected["pixel_values"]);
        assert!(
            pixels == 0.0,
            "{name} {picture}: pixel values differ by {pixels}"
        );
        seen.pixels = seen.pixels.max(pixels);

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
        assert_eq!(label, expected["label"].as_str().unwrap(), "{picture}");
        let confidence = (confidence.unwrap() - expected["confidence"].as_f64().unwrap()).abs();
        let logits = largest_difference(logits.as_deref().unwrap(), &expected["logits"]);
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
    // One batch of every picture gives the same.
    let batched = model.embed_all(&inputs).unwrap();
    for ((picture, expected), ours) in expected.iter().zip(&batched) {
        let difference = largest_difference(ours, &expected["embedding"]);
        assert!(
            difference <= TOLERANCE,
            "{name} {picture} batched: {difference}"
        );
    }
    println!("{name} vs FiftyOne 1.22.1: {seen:?}");
    seen
}

/// `vit-base-patch16-224-imagenet-torch` (an empty config).
#[test]
fn vit_matches_fiftyones_own_classifier_and_embeddings() {
    check("vit", "vit-base-patch16-224-imagenet-torch", json!({}));
}

/// `convnext-tiny-224-torch`'s manifest config; its embeddings are
/// FiftyOne's `token` aggregation of the last stage (`[:, 0, :]` of
/// `[N, C, H, W]`: the first channel's map, flattened).
#[test]
fn convnext_matches_fiftyones_own_classifier_and_embeddings() {
    check(
        "convnext",
        "convnext-tiny-224-torch",
        json!({"name_or_path": "facebook/convnext-tiny-224", "channels_last": false,
               "transformers_processor_kwargs": {"return_tensors": "pt"}}),
    );
}

/// `efficientnet-b0-imagenet-torch`'s manifest config, on google's
/// processor (nearest resampling, `include_top`); block 1 has no
/// `correct_pad` adjustment (`depthwise_padding`).
#[test]
fn efficientnet_matches_fiftyones_own_classifier_and_embeddings() {
    check(
        "efficientnet",
        "efficientnet-b0-imagenet-torch",
        json!({"name_or_path": "google/efficientnet-b0", "channels_last": false,
               "transformers_processor_kwargs": {"return_tensors": "pt"}}),
    );
}

/// FiftyOne's embedding options (`embeddings_aggregation`,
/// `hidden_state_position`, `channels_last`, `embeddings_token_position`)
/// on top of each entry's manifest config, against the oracle's
/// `compute_embeddings` with the same kwargs.
#[test]
fn embedding_options_match_fiftyones() {
    tch::set_num_threads(1);
    let oracle = oracle();
    let options = oracle["embedding_options"].as_array().unwrap();
    assert_eq!(options.len(), 4);
    for option in options {
        let name = option["name"].as_str().unwrap();
        let mut config = if name.starts_with("vit-") {
            json!({})
        } else {
            json!({"channels_last": false})
        };
        for (key, value) in option["kwargs"].as_object().unwrap() {
            config[key] = value.clone();
        }
        let mut model = model(
            &folder().join(option["repo"].as_str().unwrap()),
            config.clone(),
        );
        for (picture, expected) in option["embeddings"].as_object().unwrap() {
            let image = zoo_datasets::decode_image(&folder().join(picture)).unwrap();
            let input = model.preprocessor().preprocess(image).unwrap();
            let ours = model.embed_all(&[input]).unwrap().remove(0);
            let difference = largest_difference(&ours, expected);
            assert!(
                difference <= TOLERANCE,
                "{name} {config} {picture}: {difference}"
            );
        }
    }
}

/// The logits of the fixture ViT's repo copied into `dir` in another
/// layout by `write`, against the fixture's own.
fn same_logits_in_layout(write: impl Fn(&Path, Vec<(String, tch::Tensor)>)) {
    let source = folder().join("vit");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "preprocessor_config.json"] {
        fs_err::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    let tensors = zoo_torch_backend::read_named_tensors(&source.join("model.safetensors")).unwrap();
    write(dir.path(), tensors);
    let image = zoo_datasets::decode_image(&folder().join("image_0_48x40.png")).unwrap();
    let mut logits = Vec::new();
    for repo in [source.as_path(), dir.path()] {
        let mut model = model(repo, json!({}));
        let input = model.preprocessor().preprocess(image.clone()).unwrap();
        let prediction = model.predict_all(&[input]).unwrap();
        let [
            Prediction::Label(Some(Label::Classification {
                logits: Some(found),
                ..
            })),
        ] = &prediction[..]
        else {
            panic!("{prediction:?}");
        };
        logits.push(found.clone());
    }
    assert_eq!(logits[0], logits[1]);
}

#[test]
fn sharded_safetensors_load_through_their_index() {
    same_logits_in_layout(|dir, tensors| {
        let mut map = Map::new();
        let (first, second): (Vec<_>, Vec<_>) = tensors
            .into_iter()
            .enumerate()
            .partition(|(index, _)| index % 2 == 0);
        for (file, part) in [
            ("model-00001-of-00002.safetensors", first),
            ("model-00002-of-00002.safetensors", second),
        ] {
            let part: Vec<(String, tch::Tensor)> = part.into_iter().map(|(_, pair)| pair).collect();
            for (name, _) in &part {
                map.insert(name.clone(), json!(file));
            }
            tch::Tensor::write_safetensors(&part, dir.join(file)).unwrap();
        }
        let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
        fs_err::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    });
}

#[test]
fn a_pytorch_model_bin_loads_through_zoos_unpickler() {
    same_logits_in_layout(|dir, tensors| {
        let state: Vec<StateTensor> = tensors
            .into_iter()
            .map(|(name, tensor)| StateTensor {
                name,
                shape: tensor.size(),
                values: Some(Vec::<f32>::try_from(tensor.flatten(0, -1)).unwrap()),
            })
            .collect();
        fs_err::write(
            dir.join("pytorch_model.bin"),
            torch_save_zip("archive", &state),
        )
        .unwrap();
    });
}

/// A repo whose files do not fit is an error naming the file and what is
/// wrong, never a panic or another network.
#[test]
fn hostile_repos_are_errors_naming_the_problem() {
    let source = folder().join("vit");
    let config: Value =
        serde_json::from_str(&fs_err::read_to_string(source.join("config.json")).unwrap()).unwrap();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("model_type", json!("swin"), "`model_type` `swin`"),
        ("hidden_size", json!(33), "must be a multiple"),
        (
            "hidden_size",
            json!(64),
            "has shape [32, 3, 8, 8]; the config makes it [64, 3, 8, 8]",
        ),
        (
            "num_hidden_layers",
            json!(3),
            "`vit.encoder.layer.2.attention",
        ),
        (
            "num_hidden_layers",
            json!(1),
            "the architecture does not have",
        ),
        (
            "num_hidden_layers",
            json!(1_000_000),
            "`num_hidden_layers` must be from 1 to 256",
        ),
        ("hidden_act", json!("mish"), "`hidden_act` `mish`"),
        ("image_size", json!(-3), "`image_size` must be"),
        ("image_size", json!(64), "position_embeddings"),
        ("num_channels", json!(4), "`num_channels` must be 3"),
        ("id2label", json!({"0": "a", "7": "b"}), "no label 1"),
        ("id2label", json!({"x": "a"}), "key `x`"),
        ("layer_norm_eps", json!("small"), "layer_norm_eps"),
    ];
    for (field, value, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        for file in ["preprocessor_config.json", "model.safetensors"] {
            fs_err::copy(source.join(file), dir.path().join(file)).unwrap();
        }
        let mut changed = config.clone();
        changed[field] = value.clone();
        fs_err::write(dir.path().join("config.json"), changed.to_string()).unwrap();
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

/// Config fields that FiftyOne reads and zoo would otherwise ignore are
/// refused by name; the embedding options zoo reproduces change the
/// embeddings as FiftyOne's do.
#[test]
fn config_fields_are_read_or_refused_by_name() {
    let repo = folder().join("vit");
    for (config, expected) in [
        (
            json!({"embeddings_output_key": "pooler_output"}),
            "`embeddings_output_key` `pooler_output`",
        ),
        (
            json!({"embeddings_aggregation": "no_agg"}),
            "`embeddings_aggregation` `no_agg`",
        ),
        (
            json!({"hidden_state_position": 3}),
            "`hidden_state_position` must be from -3 to 2",
        ),
        (
            json!({"transformers_processor_kwargs": {"size": 64}}),
            "`transformers_processor_kwargs.size`",
        ),
        (
            json!({"output_processor_cls": "fiftyone.utils.torch.DetectorOutputProcessor"}),
            "ClassifierOutputProcessor",
        ),
        (
            json!({"entrypoint_fcn": "transformers.AutoModel.from_pretrained"}),
            "entrypoint_fcn",
        ),
    ] {
        let Value::Object(map) = config.clone() else {
            unreachable!()
        };
        let spec = ModelSpec {
            kind: "FiftyOneTransformerForImageClassification".into(),
            config: map,
            model_path: Some(repo.clone()),
        };
        let error = TorchTransformerModel::from_spec(&spec)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{config}: {error}");
    }
    let image = zoo_datasets::decode_image(&folder().join("image_1_32x32.png")).unwrap();
    let embed = |config: Value| {
        let mut model = model(&repo, config);
        let input = model.preprocessor().preprocess(image.clone()).unwrap();
        model.embed_all(&[input]).unwrap().remove(0)
    };
    // 17 tokens x 32 features: the first token, the mean over tokens, and
    // with `channels_last: false` the mean over features (17 values).
    assert_eq!(embed(json!({})).len(), 32);
    assert_eq!(embed(json!({"embeddings_aggregation": "mean"})).len(), 32);
    assert_eq!(
        embed(json!({"embeddings_aggregation": "max", "channels_last": false})).len(),
        17
    );
    assert_ne!(embed(json!({"hidden_state_position": 0})), embed(json!({})));
    assert_eq!(
        embed(json!({"hidden_state_position": 2, "embeddings_output_key": "hidden_states"})),
        embed(json!({}))
    );
}

/// DINOv3 (`dinov3-*-torch`, FiftyOne's `FiftyOneTransformer` on
/// transformers' `DINOv3ViTModel`) against FiftyOne 1.22.1: the oracle
/// (`tests/fixtures/transformers/dinov3_oracle.json`, `cargo xtask
/// transformers-oracle`) ran FiftyOne's own `load_zoo_model(NAME,
/// name_or_path=REPO)` with `compute_embeddings`, and its processor, on
/// two tiny seeded repos: `dinov3` (dinov3-vits16's layout: GELU MLP, 4
/// registers, no key bias; its Hub processor file at 32x32) and
/// `dinov3_gated` (dinov3-vith16plus's: SwiGLU; at 40x48, a 5x6 patch grid).
mod dinov3 {
    use super::*;
    use zoo_torch_backend::TorchTransformerEmbedder;

    fn oracle() -> Value {
        serde_json::from_str(&fs_err::read_to_string(folder().join("dinov3_oracle.json")).unwrap())
            .unwrap()
    }

    fn spec(repo: &Path, config: Value) -> ModelSpec {
        let Value::Object(config) = config else {
            panic!("a config is an object");
        };
        ModelSpec {
            kind: "fiftyone.utils.transformers.FiftyOneTransformer".into(),
            config,
            model_path: Some(repo.to_owned()),
        }
    }

    fn embedder(repo: &Path, config: Value) -> TorchTransformerEmbedder {
        TorchTransformerEmbedder::from_spec(&spec(repo, config)).unwrap()
    }

    fn error(repo: &Path, config: Value) -> String {
        TorchTransformerEmbedder::from_spec(&spec(repo, config))
            .unwrap_err()
            .to_string()
    }

    /// The largest pixel and embedding differences of repo `name` run as
    /// `entry`'s manifest config, one picture at a time and all in one
    /// batch.
    fn check(name: &str, entry: &str) -> (f64, f64) {
        tch::set_num_threads(1);
        let oracle = oracle();
        let expected = oracle[entry].as_object().unwrap();
        let repo = format!("facebook/{entry}");
        let mut model = embedder(&folder().join(name), json!({"name_or_path": repo}));
        assert!(!model.ragged_batches(), "{name}: one size");
        assert!(!model.has_labels() && model.has_embeddings());
        let preprocessor = model.preprocessor();
        let (mut pixels, mut embeddings) = (0.0f64, 0.0f64);
        let mut inputs = Vec::new();
        for (picture, expected) in expected {
            let image = zoo_datasets::decode_image(&folder().join(picture)).unwrap();
            let input = preprocessor.preprocess(image).unwrap();
            let shape: Vec<u64> = expected["pixel_values_shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|side| side.as_u64().unwrap())
                .collect();
            assert_eq!(shape[1..], input.shape.map(|side| side as u64), "{picture}");
            let InputData::Values(values) = &input.data else {
                panic!("transformers inputs are values");
            };
            let difference = largest_difference(values, &expected["pixel_values"]);
            pixels = pixels.max(difference);
            let ours = model.embed_all(std::slice::from_ref(&input)).unwrap();
            let difference = largest_difference(&ours[0], &expected["embedding"]);
            assert!(
                difference <= TOLERANCE,
                "{name} {picture}: embedding {difference}"
            );
            embeddings = embeddings.max(difference);
            inputs.push(input);
        }
        let batched = model.embed_all(&inputs).unwrap();
        for ((picture, expected), ours) in expected.iter().zip(&batched) {
            let difference = largest_difference(ours, &expected["embedding"]);
            assert!(
                difference <= TOLERANCE,
                "{name} {picture} batched: {difference}"
            );
            embeddings = embeddings.max(difference);
        }
        println!("{name} vs FiftyOne 1.22.1: pixels {pixels:e}, embeddings {embeddings:e}");
        (pixels, embeddings)
    }

    /// `dinov3-vits16-torch`'s manifest config: the `pooler_output`.
    /// The processor (rescale, then libtorch's float antialiased bilinear
    /// resize, then normalise) gives the oracle's pixel values exactly.
    #[test]
    fn dinov3_matches_fiftyones_own_embeddings() {
        let (pixels, _) = check("dinov3", "dinov3-vits16-torch");
        assert!(pixels == 0.0, "pixel values differ by {pixels}");
    }

    /// `dinov3-vith16plus-torch`'s: the gated (SwiGLU) MLP on a 5x6 grid.
    #[test]
    fn gated_dinov3_matches_fiftyones_own_embeddings() {
        let (pixels, _) = check("dinov3_gated", "dinov3-vith16plus-torch");
        assert!(pixels == 0.0, "pixel values differ by {pixels}");
    }

    /// FiftyOne's embedding options (`embeddings_output_key`,
    /// `hidden_state_position`, `embeddings_aggregation`,
    /// `embeddings_token_position`) against the oracle's
    /// `compute_embeddings` with the same kwargs.
    #[test]
    fn dinov3_embedding_options_match_fiftyones() {
        tch::set_num_threads(1);
        let oracle = oracle();
        let options = oracle["embedding_options"].as_array().unwrap();
        assert_eq!(options.len(), 5);
        for option in options {
            let config = Value::Object(option["kwargs"].as_object().unwrap().clone());
            let mut model = embedder(
                &folder().join(option["repo"].as_str().unwrap()),
                config.clone(),
            );
            for (picture, expected) in option["embeddings"].as_object().unwrap() {
                let image = zoo_datasets::decode_image(&folder().join(picture)).unwrap();
                let input = model.preprocessor().preprocess(image).unwrap();
                let ours = model.embed_all(&[input]).unwrap().remove(0);
                let difference = largest_difference(&ours, expected);
                assert!(difference <= TOLERANCE, "{config} {picture}: {difference}");
            }
        }
    }

    /// A DINOv3 repo whose files do not fit is an error naming the field
    /// and what is wrong, never a panic.
    #[test]
    fn hostile_dinov3_repos_are_errors_naming_the_problem() {
        let source = folder().join("dinov3");
        let config: Value =
            serde_json::from_str(&fs_err::read_to_string(source.join("config.json")).unwrap())
                .unwrap();
        let cases: Vec<(&str, Value, &str)> = vec![
            ("model_type", json!("dinov2"), "`model_type` `dinov2`"),
            ("hidden_size", json!(36), "must be a multiple of 4"),
            (
                "hidden_size",
                json!(1 << 20),
                "`hidden_size` must be from 1",
            ),
            ("num_attention_heads", json!(0), "`num_attention_heads`"),
            (
                "num_register_tokens",
                json!(2),
                "`embeddings.register_tokens` has shape [1, 4, 32]",
            ),
            (
                "num_register_tokens",
                json!(1_000_000_000),
                "`num_register_tokens` must be from 0 to 1024",
            ),
            ("use_gated_mlp", json!(true), "`layer.0.mlp.gate_proj"),
            ("key_bias", json!(true), "`layer.0.attention.k_proj.bias`"),
            ("query_bias", json!(false), "the architecture does not have"),
            ("hidden_act", json!("mish"), "`hidden_act` `mish`"),
            ("rope_theta", json!(-1.0), "`rope_theta` must be"),
            ("rope_theta", json!("big"), "rope_theta"),
            ("patch_size", json!(0), "`patch_size` must be"),
            ("num_channels", json!(4), "`num_channels` must be 3"),
            ("num_hidden_layers", json!(3), "`layer.2."),
        ];
        for (field, value, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            for file in ["preprocessor_config.json", "model.safetensors"] {
                fs_err::copy(source.join(file), dir.path().join(file)).unwrap();
            }
            let mut changed = config.clone();
            changed[field] = value.clone();
            fs_err::write(dir.path().join("config.json"), changed.to_string()).unwrap();
            let error = error(dir.path(), json!({}));
            assert!(error.contains(expected), "{field}={value}: {error}");
        }
        // The processor file too.
        let processor: Value = serde_json::from_str(
            &fs_err::read_to_string(source.join("preprocessor_config.json")).unwrap(),
        )
        .unwrap();
        for (field, value, expected) in [
            ("do_rescale", json!(false), "`do_rescale` false"),
            ("resample", json!(0), "`resample` 0"),
            ("size", json!({"height": 100000, "width": 4}), "size.height"),
            (
                "image_processor_type",
                json!("BeitImageProcessor"),
                "BeitImageProcessor",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            for file in ["config.json", "model.safetensors"] {
                fs_err::copy(source.join(file), dir.path().join(file)).unwrap();
            }
            let mut changed = processor.clone();
            changed[field] = value.clone();
            fs_err::write(
                dir.path().join("preprocessor_config.json"),
                changed.to_string(),
            )
            .unwrap();
            let error = error(dir.path(), json!({}));
            assert!(error.contains(expected), "{field}={value}: {error}");
        }
    }

    /// Config fields FiftyOne's class reads are reproduced or refused by
    /// name; `apply` has no labels.
    #[test]
    fn dinov3_config_fields_are_read_or_refused_by_name() {
        let repo = folder().join("dinov3");
        for (config, expected) in [
            (
                json!({"embeddings_output_key": "hidden_states"}),
                "set `hidden_state_position`",
            ),
            (
                json!({"embeddings_output_key": "attentions"}),
                "`embeddings_output_key` `attentions`",
            ),
            (
                json!({"embeddings_output_key": "last_hidden_state", "embeddings_aggregation": "no_agg"}),
                "`embeddings_aggregation` `no_agg`",
            ),
            (
                json!({"hidden_state_position": 3}),
                "`hidden_state_position` must be from -3 to 2",
            ),
            (
                json!({"transforms_args": {"use_fast": false}}),
                "`transforms_args.use_fast`",
            ),
            (
                json!({"transformers_processor_kwargs": {"size": 64}}),
                "`transformers_processor_kwargs.size`",
            ),
            (
                json!({"output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor"}),
                "no output processor",
            ),
            (
                json!({"entrypoint_fcn": "transformers.AutoModel.from_pretrained"}),
                "entrypoint_fcn",
            ),
        ] {
            let error = error(&repo, config.clone());
            assert!(error.contains(expected), "{config}: {error}");
        }
        let image = zoo_datasets::decode_image(&folder().join("image_1_32x32.png")).unwrap();
        let mut model = embedder(&repo, json!({}));
        let input = model.preprocessor().preprocess(image.clone()).unwrap();
        let error = model
            .predict_all(std::slice::from_ref(&input))
            .unwrap_err()
            .to_string();
        assert!(error.contains("zoo models embed"), "{error}");
        let embed = |config: Value| {
            let mut model = embedder(&repo, config);
            model
                .embed_all(std::slice::from_ref(&input))
                .unwrap()
                .remove(0)
        };
        // 21 tokens ([CLS], 4 registers, 4x4 patches) x 32 features.
        let pooled = embed(json!({}));
        assert_eq!(pooled.len(), 32);
        // FiftyOne returns the pooler as it is, whatever the aggregation;
        // it is the last hidden state's `[CLS]` token.
        assert_eq!(embed(json!({"embeddings_aggregation": "mean"})), pooled);
        assert_eq!(
            embed(json!({"embeddings_output_key": "last_hidden_state"})),
            pooled
        );
        assert_eq!(
            embed(json!({"embeddings_output_key": "last_hidden_state", "embeddings_aggregation": "max", "channels_last": false}))
                .len(),
            21
        );
        // `hidden_state_position` wins over `embeddings_output_key`; the
        // last hidden state is before the final norm.
        assert_eq!(
            embed(json!({"hidden_state_position": -1, "embeddings_output_key": "pooler_output"})),
            embed(json!({"hidden_state_position": 2}))
        );
        assert_ne!(embed(json!({"hidden_state_position": 2})), pooled);
    }
}
