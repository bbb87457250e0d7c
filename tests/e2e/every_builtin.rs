//! Issue 14: every torchvision model of FiftyOne 1.22.1's
//! `manifest-torch.json` (39 `TorchvisionImageModel` entries) runs as a
//! zoo built-in through the `zoo` binary, its entry unchanged, and stores
//! what FiftyOne's own `foz.load_zoo_model(name).apply_model(...)` stores.
//!
//! Each model's weights are formula weights in the hosted checkpoint's key
//! layout under torchvision's file name. `zoo models download` fetches them
//! from a loopback mirror of `download.pytorch.org` (`ZOO_DOWNLOAD_MIRRORS`)
//! and refuses them, as it must: their sha256 cannot start with the hash
//! torchvision's file name carries. The test then puts the file where
//! FiftyOne keeps it and applies the model.
//!
//! Oracles, from FiftyOne 1.22.1 with torch 2.13 / torchvision 0.28 and the
//! same weights in the file torchvision's named weights point at:
//! - `fiftyone_builtins.json` (`cargo xtask named-weights-oracle`): the 22
//!   classifiers FiftyOne listed first; `apply_model(store_logits=True)` and
//!   `compute_embeddings` on PNG and JPEG pictures for every branch of
//!   FiftyOne's resize chain; vectors summarised.
//! - `fiftyone_named_weights.json` (the same script): the nine newer
//!   classifiers (logits, embeddings summarised) and the four semantic
//!   segmenters at their manifest's `image_dim` 520 (mask digests), on two
//!   pictures.
//! - `detection_oracle.json` (`cargo xtask detection-oracle`): the four
//!   detectors on three pictures.
//!
//! Faster R-CNN and Keypoint R-CNN run in `detection.rs`, DeepLabV3-R50 in
//! `segmenters.rs`; [`the_end_to_end_tests_cover_every_torchvision_builtin`]
//! checks that together they cover all 39.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use zoo_test_support::TestServer;

use crate::detection::{Found, assert_matches, exported_detections};
use crate::inception::assert_matches_summary;
use crate::named_weights::seeded_weights;
use crate::util::{Sandbox, exported_samples, fixtures, json_fixture};

/// Where FiftyOne's manifest and torchvision fetch every one of these files.
const TORCHVISION: &str = "https://download.pytorch.org/models/";

/// The 22 classifiers of `fiftyone_builtins.json`, in three tests that run
/// side by side.
const FIRST_CLASSIFIERS: [&[&str]; 3] = [
    &[
        "alexnet-imagenet-torch",
        "densenet121-imagenet-torch",
        "densenet161-imagenet-torch",
        "densenet169-imagenet-torch",
        "densenet201-imagenet-torch",
        "inception-v3-imagenet-torch",
        "mobilenet-v2-imagenet-torch",
        "squeezenet-imagenet-torch",
        "squeezenet-1.1-imagenet-torch",
    ],
    &[
        "resnet18-imagenet-torch",
        "resnet34-imagenet-torch",
        "resnet50-imagenet-torch",
        "resnet101-imagenet-torch",
        "resnet152-imagenet-torch",
    ],
    &[
        "vgg11-imagenet-torch",
        "vgg11-bn-imagenet-torch",
        "vgg13-imagenet-torch",
        "vgg13-bn-imagenet-torch",
        "vgg16-imagenet-torch",
        "vgg16-bn-imagenet-torch",
        "vgg19-imagenet-torch",
        "vgg19-bn-imagenet-torch",
    ],
];

/// The nine classifiers FiftyOne's manifest has that zoo ran last.
const NEWER_CLASSIFIERS: [&str; 9] = [
    "googlenet-imagenet-torch",
    "mnasnet0.5-imagenet-torch",
    "mnasnet1.0-imagenet-torch",
    "resnext50-32x4d-imagenet-torch",
    "resnext101-32x8d-imagenet-torch",
    "shufflenetv2-0.5x-imagenet-torch",
    "shufflenetv2-1.0x-imagenet-torch",
    "wide-resnet50-2-imagenet-torch",
    "wide-resnet101-2-imagenet-torch",
];

/// The semantic segmenters run here (DeepLabV3-R50: `segmenters.rs`).
const SEGMENTERS: [&str; 3] = [
    "deeplabv3-resnet101-coco-torch",
    "fcn-resnet50-coco-torch",
    "fcn-resnet101-coco-torch",
];

/// The detectors run here (the other two: `detection.rs`).
const DETECTORS: [&str; 2] = [
    "mask-rcnn-resnet50-fpn-coco-torch",
    "retinanet-resnet50-fpn-coco-torch",
];

/// The built-ins other end-to-end tests run against FiftyOne's
/// `apply_model` with their weights fetched through the mirror.
const ELSEWHERE: [(&str, &str); 3] = [
    (
        "faster-rcnn-resnet50-fpn-coco-torch",
        "detection::faster_rcnn_builtin_applies_like_fiftyone_and_downloads_its_weights",
    ),
    (
        "keypoint-rcnn-resnet50-fpn-coco-torch",
        "detection::keypoint_rcnn_builtin_stores_fiftyones_detections_and_keypoints",
    ),
    (
        "deeplabv3-resnet50-coco-torch",
        "segmenters::builtin_deeplabv3_masks_equal_fiftyones_apply_model",
    ),
];

/// Serves `weights` on a loopback mirror of torchvision's host for this
/// sandbox; checks that `zoo models info NAME` runs torchvision's
/// `named_file`, that `zoo models download NAME` asks the mirror for it
/// once and refuses it for its hash, then puts it in the model dir.
fn fetch_through_mirror(sandbox: &mut Sandbox, name: &str, named_file: &str, weights: Vec<u8>) {
    let server = TestServer::start();
    sandbox.env.retain(|(key, _)| key != "ZOO_DOWNLOAD_MIRRORS");
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!("{TORCHVISION}={}", server.url("/mirror/")),
    ));
    let info = sandbox.ok(&["models", "info", name, "--json"]).json();
    assert_eq!(
        info["weights"]["runs"],
        format!("{TORCHVISION}{named_file}").as_str(),
        "{name}"
    );
    let path = format!("/mirror/{named_file}");
    server.file(&path, weights.clone());
    let err = sandbox.fails(&["models", "download", name]).stderr();
    assert!(
        err.contains("the file name's hash expects"),
        "{name}: {err}"
    );
    assert_eq!(server.requests_to(&path).len(), 1, "{name}");
    fs_err::create_dir_all(sandbox.zoo_dir()).unwrap();
    fs_err::write(sandbox.zoo_dir().join(named_file), weights).unwrap();
}

/// A dataset `dataset` of `files` copied from the fixtures' `folder`.
fn dataset_of(sandbox: &Sandbox, dataset: &str, folder: &str, files: &[&String]) {
    let images = sandbox.dir.path().join(dataset);
    fs_err::create_dir_all(&images).unwrap();
    for file in files {
        fs_err::copy(
            fixtures().join(folder).join(file),
            images.join(file.as_str()),
        )
        .unwrap();
    }
    sandbox.ok(&["datasets", "create", dataset, images.to_str().unwrap()]);
}

/// For each of `names`: a sandbox whose dataset `pictures` holds `files`
/// of the fixtures' `folder`; the model's seeded weights (`weights(oracle
/// entry)`) fetched through the mirror ([`fetch_through_mirror`]); then
/// `run(sandbox, name, oracle entry)`; then its file removed again (a VGG's
/// is 550 MB).
fn each_with_mirrored_weights(
    oracle: &Value,
    names: &[&str],
    (folder, files): (&str, &[&String]),
    weights: impl Fn(&str, &Value) -> Vec<u8>,
    mut run: impl FnMut(&Sandbox, &str, &Value),
) {
    let mut sandbox = Sandbox::new();
    dataset_of(&sandbox, "pictures", folder, files);
    for name in names {
        let expected = &oracle["models"][*name];
        let named_file = expected["named_file"].as_str().unwrap();
        fetch_through_mirror(&mut sandbox, name, named_file, weights(name, expected));
        run(&sandbox, name, expected);
        fs_err::remove_file(sandbox.zoo_dir().join(named_file)).unwrap();
    }
}

/// The formula weights of a torchvision oracle entry (its `architecture`
/// and `gain`) in the hosted file's key layout.
fn torchvision_weights(_name: &str, expected: &Value) -> Vec<u8> {
    seeded_weights(
        expected["architecture"].as_str().unwrap(),
        expected["gain"].as_f64().unwrap(),
    )
}

/// The two pictures of `fiftyone_named_weights.json`.
fn named_weights_pictures() -> [String; 2] {
    ["wide.png".to_owned(), "tall.png".to_owned()]
}

/// The values of a FiftyOne array (`$binary` `.npy`) in a label, as f64.
fn array_values(label: &Value, key: &str, what: &str) -> Vec<f64> {
    zoo_model_core::array_from_json(&label[key])
        .unwrap_or_else(|err| panic!("{what}: no {key} in {label}: {err}"))
        .to_f32()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// An embedding as exported (a JSON list).
fn embedding_values(sample: &Value, field: &str, what: &str) -> Vec<f64> {
    sample[field]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no embedding in {sample}"))
        .iter()
        .map(|value| value.as_f64().unwrap())
        .collect()
}

/// Applies (`--store-logits`) and embeds built-in classifier `name` on
/// `dataset`; checks each picture's label, confidence and logits, and the
/// embedding where the oracle has one, with `check(file, logits,
/// embedding, oracle entry)`; returns how many pictures it checked.
fn apply_and_embed(
    sandbox: &Sandbox,
    name: &str,
    dataset: &str,
    images: &serde_json::Map<String, Value>,
    check: impl Fn(&str, &[f64], Option<&[f64]>, &Value),
) -> usize {
    let field = format!("pred_{}", name.replace(['-', '.'], "_"));
    let embedded = images
        .values()
        .any(|entry| entry.get("embedding").is_some());
    sandbox.ok(&[
        "models",
        "apply",
        name,
        dataset,
        &field,
        "--store-logits",
        "--overwrite",
    ]);
    let embeddings = format!("emb_{}", name.replace(['-', '.'], "_"));
    if embedded {
        let summary = sandbox
            .ok(&["models", "embed", name, dataset, &embeddings, "--json"])
            .json();
        assert_eq!(summary["succeeded"], images.len(), "{name}: {summary}");
    }
    let mut seen = 0;
    for (file, sample) in exported_samples(sandbox, dataset) {
        let what = format!("{name} on {file}");
        let theirs = &images[file.as_str()];
        let label = &sample[&field];
        assert_eq!(label["_cls"], "Classification", "{what}");
        assert_eq!(label["label"], theirs["label"], "{what}");
        if theirs["confidence"] == "NaN" {
            // FiftyOne's float32 `exp` overflowed (logits over 88): its
            // confidence is NaN, which zoo's JSON holds as null.
            assert!(label["confidence"].is_null(), "{what}: {label}");
        } else {
            let confidence = label["confidence"].as_f64().unwrap();
            assert!(
                (confidence - theirs["confidence"].as_f64().unwrap()).abs() <= 1e-5,
                "{what}: confidence {confidence} against FiftyOne's {}",
                theirs["confidence"]
            );
        }
        let logits = array_values(label, "logits", &what);
        let embedding = embedded.then(|| embedding_values(&sample, &embeddings, &what));
        check(&file, &logits, embedding.as_deref(), theirs);
        seen += 1;
    }
    seen
}

/// The 22 first classifiers of `names`, each on the eight resize-branch
/// pictures: FiftyOne's labels, confidences within 1e-5, logits and
/// embeddings (first values, sum, L2 norm) within 1e-4.
fn first_classifiers_apply_like_fiftyone(names: &[&str]) {
    let oracle = json_fixture("fiftyone_builtins.json");
    let first = &oracle["models"][names[0]]["branches"];
    let files: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(files.len(), 8);
    each_with_mirrored_weights(
        &oracle,
        names,
        ("fiftyone", &files),
        torchvision_weights,
        |sandbox, name, expected| {
            let branches = expected["branches"].as_object().unwrap();
            let seen = apply_and_embed(
                sandbox,
                name,
                "pictures",
                branches,
                |file, logits, embedding, theirs| {
                    assert_matches_summary(
                        logits,
                        &theirs["logits"],
                        &format!("{name} {file} logits"),
                    );
                    if let Some(embedding) = embedding {
                        assert_matches_summary(
                            embedding,
                            &theirs["embedding"],
                            &format!("{name} {file} embedding"),
                        );
                    }
                },
            );
            assert_eq!(seen, 8, "{name}");
        },
    );
}

/// `alexnet`, the DenseNets, Inception v3, MobileNetV2 and the SqueezeNets
/// through `zoo models apply` and `zoo models embed`, as FiftyOne's
/// `apply_model` and `compute_embeddings` give them.
#[test]
fn first_classifiers_apply_and_embed_like_fiftyone() {
    first_classifiers_apply_like_fiftyone(FIRST_CLASSIFIERS[0]);
}

/// The five ResNets, as above.
#[test]
fn resnets_apply_and_embed_like_fiftyone() {
    first_classifiers_apply_like_fiftyone(FIRST_CLASSIFIERS[1]);
}

/// The eight VGGs (with and without batch norm), as above.
#[test]
fn vggs_apply_and_embed_like_fiftyone() {
    first_classifiers_apply_like_fiftyone(FIRST_CLASSIFIERS[2]);
}

/// GoogLeNet (its auxiliary classifiers in the file), the MNASNets (the
/// hosted files' version-1 stem), the ResNeXts, the ShuffleNetV2s and the
/// Wide ResNets through `zoo models apply` and `zoo models embed` on two
/// pictures: FiftyOne's labels, confidences within 1e-5, every logit within
/// 1e-4, embeddings (first values, sum, L2 norm) within 1e-4.
#[test]
fn newer_classifiers_apply_and_embed_like_fiftyone() {
    let oracle = json_fixture("fiftyone_named_weights.json");
    let pictures = named_weights_pictures();
    each_with_mirrored_weights(
        &oracle,
        &NEWER_CLASSIFIERS,
        ("named_weights", &pictures.iter().collect::<Vec<_>>()),
        torchvision_weights,
        |sandbox, name, expected| {
            let images = expected["images"].as_object().unwrap();
            let seen = apply_and_embed(
                sandbox,
                name,
                "pictures",
                images,
                |file, logits, embedding, theirs| {
                    let theirs_logits: Vec<f64> = theirs["logits"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|value| value.as_f64().unwrap())
                        .collect();
                    assert_eq!(logits.len(), theirs_logits.len(), "{name} {file}");
                    let difference = logits
                        .iter()
                        .zip(&theirs_logits)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max);
                    println!("parity {name} on {file}: max |logit diff| {difference:.3e}");
                    assert!(difference <= 1e-4, "{name} {file}: max |diff| {difference}");
                    let embedding = embedding.unwrap_or_else(|| panic!("{name}: no embedding"));
                    assert_matches_summary(
                        embedding,
                        &theirs["embedding"],
                        &format!("{name} {file} embedding"),
                    );
                },
            );
            assert_eq!(seen, 2, "{name}");
        },
    );
}

/// Where zoo's class at one of FiftyOne's near-tie pixels (`[index,
/// FiftyOne's class, the runner-up]`: the two most probable classes within
/// 1e-5 in FiftyOne's float32 softmax) is the runner-up, writes FiftyOne's
/// class there; returns the number of near-tie pixels and of those
/// rewritten. Any other difference is left for the digest to catch.
fn settle_near_ties(mask: &mut zoo_model_core::NpyArray, ties: &Value) -> (usize, usize) {
    let ties = ties.as_array().unwrap();
    let mut settled = 0;
    for tie in ties {
        let at = tie[0].as_u64().unwrap() as usize * 8;
        let word = &mut mask.data[at..at + 8];
        let ours = i64::from_le_bytes(word.try_into().unwrap());
        if ours == tie[2].as_i64().unwrap() {
            word.copy_from_slice(&tie[1].as_i64().unwrap().to_le_bytes());
            settled += 1;
        }
    }
    (ties.len(), settled)
}

/// The sha256 of a mask's bytes and its class histogram.
pub(crate) fn mask_digest(
    mask: &zoo_model_core::NpyArray,
) -> (String, std::collections::BTreeMap<String, u64>) {
    let mut classes = std::collections::BTreeMap::<String, u64>::new();
    for id in mask.data.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(id);
        *classes
            .entry(i64::from_le_bytes(word).to_string())
            .or_default() += 1;
    }
    let digest = Sha256::digest(&mask.data)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    (digest, classes)
}

/// DeepLabV3-R101, FCN-R50 and FCN-R101 with their entries unchanged
/// (`image_dim` 520, softmax, VOC mask targets): `zoo models apply` stores
/// FiftyOne's `int64` masks (dtype, shape), byte for byte except at pixels
/// where FiftyOne's own two most probable classes are within 1e-5 and zoo
/// picks the other of the two (on the tall picture, 1 of DeepLabV3-R101's
/// 388k pixels and 4 of FCN-R101's).
#[test]
fn segmenters_store_fiftyones_masks() {
    let oracle = json_fixture("fiftyone_named_weights.json");
    let pictures = named_weights_pictures();
    each_with_mirrored_weights(
        &oracle,
        &SEGMENTERS,
        ("named_weights", &pictures.iter().collect::<Vec<_>>()),
        torchvision_weights,
        |sandbox, name, expected| {
            sandbox.ok(&["models", "apply", name, "pictures", "seg", "--overwrite"]);
            let mut seen = 0;
            for (file, sample) in exported_samples(sandbox, "pictures") {
                let theirs = &expected["images"][file.as_str()];
                assert_eq!(sample["seg"]["_cls"], "Segmentation", "{name} {file}");
                let mask = zoo_model_core::array_from_json(&sample["seg"]["mask"]).unwrap();
                assert_eq!(
                    mask.dtype,
                    theirs["mask_dtype"].as_str().unwrap(),
                    "{name} {file}"
                );
                assert_eq!(
                    serde_json::json!(mask.shape),
                    theirs["mask_shape"],
                    "{name} {file}"
                );
                let mut mask = mask;
                let (ties, settled) = settle_near_ties(&mut mask, &theirs["near_ties"]);
                let (digest, classes) = mask_digest(&mask);
                println!(
                    "parity {name} on {file}: classes {classes:?}, {settled} of FiftyOne's {ties} near-tie pixels took the runner-up"
                );
                assert_eq!(
                    serde_json::json!(classes),
                    theirs["mask_classes"],
                    "{name} {file}"
                );
                assert_eq!(
                    digest,
                    theirs["mask_sha256"].as_str().unwrap(),
                    "{name} {file}"
                );
                seen += 1;
            }
            assert_eq!(seen, 2, "{name}");
        },
    );
}

/// A PNG's width and height, from its `IHDR` chunk.
fn png_size(path: &Path) -> (f64, f64) {
    let bytes = fs_err::read(path).unwrap();
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (f64::from(word(16)), f64::from(word(20)))
}

/// A mask placed on an image-sized canvas at the crop FiftyOne's
/// `Detection.to_segmentation` uses: rows `round(y1)..`, columns
/// `round(x1)..`, of a relative box in an image of `size`.
fn paste(
    canvas: &mut [bool],
    (width, height): (f64, f64),
    bounding_box: &[f64; 4],
    (rows, columns): (usize, usize),
    bits: impl Fn(usize) -> bool,
) {
    let top = (bounding_box[1] * height).round_ties_even() as usize;
    let left = (bounding_box[0] * width).round_ties_even() as usize;
    let width = width as usize;
    for row in 0..rows {
        for column in 0..columns {
            let (y, x) = (top + row, left + column);
            if y < height as usize && x < width && bits(row * columns + column) {
                canvas[y * width + x] = true;
            }
        }
    }
}

/// Mask R-CNN (`InstanceSegmenterOutputProcessor`, `mask_thresh` 0.5) and
/// RetinaNet with their entries unchanged: each of FiftyOne's detections
/// matched by one of zoo's (label, box and confidence within 1e-4); Mask
/// R-CNN's masks, placed where their boxes put them, with IoU >= 0.999.
#[test]
fn mask_rcnn_and_retinanet_detect_like_fiftyone() {
    let oracle = crate::detection::oracle();
    let files: Vec<&String> = oracle["models"][DETECTORS[0]]["images"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    each_with_mirrored_weights(
        &oracle,
        &DETECTORS,
        ("detection", &files),
        |name, _| crate::detection::seeded_weights(&oracle, name),
        |sandbox, name, expected| {
            sandbox.ok(&["models", "apply", name, "pictures", "det", "--overwrite"]);
            let detections = exported_detections(sandbox, "pictures", "det");
            let samples = exported_samples(sandbox, "pictures");
            assert_eq!(detections.len(), 3, "{name}");
            let (mut total, mut worst_iou) = (0, 1f64);
            for ((file, ours), (_, sample)) in detections.iter().zip(&samples) {
                let theirs = &expected["images"][file.as_str()];
                let matches = assert_matches(file, ours, theirs);
                total += matches.len();
                let size = png_size(&fixtures().join("detection").join(file));
                let exported = sample["det"]["detections"].as_array().unwrap();
                for (their, j) in theirs.as_array().unwrap().iter().zip(matches) {
                    let Some(shape) = their.get("mask_shape") else {
                        assert!(
                            exported[j].get("mask").is_none_or(Value::is_null),
                            "{name} {file}: a mask FiftyOne does not give"
                        );
                        continue;
                    };
                    let area = (size.0 * size.1) as usize;
                    let (mut mine, mut fiftyone) = (vec![false; area], vec![false; area]);
                    let mask = zoo_model_core::array_from_json(&exported[j]["mask"])
                        .unwrap_or_else(|err| panic!("{name} {file}: no mask: {err}"));
                    let found: &Found = &ours[j];
                    paste(
                        &mut mine,
                        size,
                        &found.1,
                        (mask.shape[0], mask.shape[1]),
                        |at| mask.data[at] != 0,
                    );
                    let hex = their["mask_bits"].as_str().unwrap();
                    let packed: Vec<u8> = (0..hex.len() / 2)
                        .map(|at| u8::from_str_radix(&hex[2 * at..2 * at + 2], 16).unwrap())
                        .collect();
                    let their_box: Vec<f64> = their["bounding_box"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect();
                    let shape = (
                        shape[0].as_u64().unwrap() as usize,
                        shape[1].as_u64().unwrap() as usize,
                    );
                    paste(
                        &mut fiftyone,
                        size,
                        &[their_box[0], their_box[1], their_box[2], their_box[3]],
                        shape,
                        |at| (packed[at / 8] >> (7 - at % 8)) & 1 == 1,
                    );
                    let both = mine
                        .iter()
                        .zip(&fiftyone)
                        .filter(|(a, b)| **a && **b)
                        .count();
                    let either = mine
                        .iter()
                        .zip(&fiftyone)
                        .filter(|(a, b)| **a || **b)
                        .count();
                    let iou = if either == 0 {
                        1.0
                    } else {
                        both as f64 / either as f64
                    };
                    worst_iou = worst_iou.min(iou);
                    assert!(iou >= 0.999, "{name} {file}: mask IoU {iou}");
                }
            }
            println!("e2e {name}: {total} detections match FiftyOne's, min mask IoU {worst_iou}");
        },
    );
}

/// The names the tests above and [`ELSEWHERE`] run are exactly the
/// `TorchvisionImageModel` entries of zoo's built-in torch manifest, which
/// are FiftyOne's 39.
#[test]
fn the_end_to_end_tests_cover_every_torchvision_builtin() {
    let builtin: Value = serde_json::from_str(include_str!(
        "../../crates/registry/builtin/manifest-torch.json"
    ))
    .unwrap();
    let mut torchvision: Vec<&str> = builtin["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|model| {
            model["default_deployment_config_dict"]["type"]
                == "fiftyone.zoo.models.torch.TorchvisionImageModel"
        })
        .map(|model| model["base_name"].as_str().unwrap())
        .collect();
    torchvision.sort_unstable();
    let mut covered: Vec<&str> = FIRST_CLASSIFIERS
        .iter()
        .flat_map(|group| group.iter().copied())
        .chain(NEWER_CLASSIFIERS)
        .chain(SEGMENTERS)
        .chain(DETECTORS)
        .chain(ELSEWHERE.iter().map(|(name, _)| *name))
        .collect();
    covered.sort_unstable();
    assert_eq!(covered.len(), 39);
    assert_eq!(covered, torchvision);
}
