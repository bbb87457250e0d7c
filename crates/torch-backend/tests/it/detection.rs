//! torchvision's detectors natively (issue 14), against FiftyOne itself.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/detection_oracle.json`,
//! written by `cargo xtask detection-oracle`
//! (`xtask/fixtures/detection_oracle.py`, torch 2.13, torchvision 0.28,
//! FiftyOne 1.22.1): the hosted COCO checkpoints' key layouts, and
//! `foz.load_zoo_model(name).apply_model(dataset, "pred")` detections on
//! PNG pictures of three sizes, with formula weights (zoo_test_support's
//! `formula`, plus the listed bias tweaks) in the file torchvision's named
//! weights point at, in the hosted layout.

use std::path::Path;

use serde_json::{Value, json};
use tch::Tensor;
use zoo_model_core::{Detection, Image, Keypoint, Label, Model, ModelSpec, Prediction};
use zoo_test_support::{formula_state_dict, torch_save_zip};
use zoo_torch_backend::{TorchImageModel, load_state_dict};

use crate::fixtures;

fn oracle() -> Value {
    serde_json::from_slice(&fs_err::read(fixtures().join("detection_oracle.json")).unwrap())
        .unwrap()
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
        .unwrap_or_else(|| panic!("`{base_name}` is not a built-in"));
    let mut config = entry["default_deployment_config_dict"]["config"].clone();
    config["device"] = json!("cpu");
    config
}

/// The hosted layout's keys as zero tensors.
fn zero_tensors(keys: &[Value]) -> Vec<(String, Tensor)> {
    keys.iter()
        .map(|entry| {
            let shape: Vec<i64> = entry[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|size| size.as_i64().unwrap())
                .collect();
            let name = entry[0].as_str().unwrap().to_owned();
            (name, Tensor::zeros(shape.as_slice(), tch::kind::FLOAT_CPU))
        })
        .collect()
}

/// The hosted COCO checkpoints use the FPN's, RPN head's, mask head's and
/// RetinaNet towers' names from before torchvision 0.13
/// (`backbone.fpn.inner_blocks.0.weight`, `rpn.head.conv.weight`,
/// `roi_heads.mask_head.mask_fcn1.weight`,
/// `head.classification_head.conv.6.weight`; Keypoint R-CNN's keypoint
/// head keeps its `nn.Sequential` names): zoo renames them as
/// torchvision's `_load_from_state_dict` does; nothing is missing, extra
/// or misshapen.
#[test]
fn detectors_load_their_hosted_checkpoint_key_layout() {
    let oracle = oracle();
    let layouts = oracle["layouts"].as_object().unwrap();
    assert!(!layouts.is_empty());
    for (architecture, layout) in layouts {
        let tensors = zero_tensors(layout["keys"].as_array().unwrap());
        assert!(
            tensors
                .iter()
                .any(|(name, _)| name == "backbone.fpn.inner_blocks.0.weight")
        );
        let has = |key: &str| tensors.iter().any(|(name, _)| name == key);
        if architecture.starts_with("retinanet") {
            assert!(has("head.classification_head.conv.6.weight"));
            assert!(has("head.regression_head.conv.0.weight"));
            assert!(has("backbone.fpn.extra_blocks.p7.weight"));
        } else {
            assert!(has("rpn.head.conv.weight"));
        }
        if architecture.starts_with("keypointrcnn") {
            // `KeypointRCNNHeads` is a plain `nn.Sequential`: its names
            // were never renamed.
            assert!(has("roi_heads.keypoint_head.14.weight"));
            assert!(has("roi_heads.keypoint_predictor.kps_score_lowres.weight"));
        }
        let args = json!({"weights": layout["weights"]});
        load_state_dict(architecture, Some(&args), tensors, Path::new("hosted.pth"))
            .unwrap_or_else(|err| panic!("{architecture}: {err}"));
        // A tensor missing from the file is an error naming it.
        let mut short = zero_tensors(layout["keys"].as_array().unwrap());
        let dropped = "backbone.body.layer4.2.conv3.weight";
        short.retain(|(name, _)| name != dropped);
        let err = load_state_dict(architecture, Some(&args), short, Path::new("hosted.pth"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(dropped), "{err}");
    }
}

fn decode(file: &str) -> Image {
    zoo_datasets::decode_image(&fixtures().join("detection").join(file)).unwrap()
}

/// The intersection over union of two relative `[x, y, w, h]` boxes (for
/// two boxes of no area: 1 if they coincide, else 0).
fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let h = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 {
        inter / union
    } else {
        // Degenerate boxes (clipped to an edge, zero area): equal or not.
        let close = a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6);
        if close { 1.0 } else { 0.0 }
    }
}

/// A mask from the oracle: rows x columns and `np.packbits` hex.
fn oracle_mask(detection: &Value) -> (usize, usize, Vec<u8>) {
    let shape = detection["mask_shape"].as_array().unwrap();
    let (rows, columns) = (
        shape[0].as_u64().unwrap() as usize,
        shape[1].as_u64().unwrap() as usize,
    );
    let hex = detection["mask_bits"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|at| u8::from_str_radix(&hex[2 * at..2 * at + 2], 16).unwrap())
        .collect();
    let bits = (0..rows * columns)
        .map(|index| (bytes[index / 8] >> (7 - index % 8)) & 1)
        .collect();
    (rows, columns, bits)
}

/// FiftyOne's crop window `[round(y1), round(y2)) x [round(x1), round(x2))`
/// of a relative box in an image of `(width, height)`, and for each edge
/// whether it lies within 1e-3 pixels of a rounding boundary (`.5`), where
/// the 1e-5-pixel noise between two implementations may round it either way.
fn crop_window(relative: &[f64; 4], (width, height): (f64, f64)) -> ([i64; 4], [bool; 4]) {
    let [x, y, w, h] = *relative;
    let edges = [y * height, (y + h) * height, x * width, (x + w) * width];
    (
        edges.map(|edge| edge.round_ties_even() as i64),
        edges.map(|edge| (edge.fract() - 0.5).abs() < 1e-3),
    )
}

/// A cropped mask (rows, columns, bits) and its crop window with the
/// edges on a rounding boundary ([`crop_window`]).
type CroppedMask<'a> = (&'a (usize, usize, Vec<u8>), ([i64; 4], [bool; 4]));

/// The IoU of two cropped masks over the pixels both crop windows cover;
/// their windows may differ only at edges on a rounding boundary.
fn mask_iou(ours: CroppedMask<'_>, theirs: CroppedMask<'_>, what: &str) -> f64 {
    let ((rows, columns, bits), (window, _)) = ours;
    let ((their_rows, their_columns, their_bits), (their_window, boundary)) = theirs;
    for edge in 0..4 {
        assert!(
            window[edge] == their_window[edge] || boundary[edge],
            "{what}: crop window {window:?} against FiftyOne's {their_window:?}"
        );
    }
    let [top, bottom, left, right] = window;
    let [their_top, _, their_left, _] = their_window;
    let (mut both, mut either) = (0usize, 0usize);
    for row in top.max(their_top)..bottom.min(their_window[1]) {
        for column in left.max(their_left)..right.min(their_window[3]) {
            let (r, c) = ((row - top) as usize, (column - left) as usize);
            let (tr, tc) = ((row - their_top) as usize, (column - their_left) as usize);
            if r >= *rows || c >= *columns || tr >= *their_rows || tc >= *their_columns {
                continue;
            }
            let ours = bits[r * columns + c] == 1;
            let theirs = their_bits[tr * their_columns + tc] == 1;
            both += usize::from(ours && theirs);
            either += usize::from(ours || theirs);
        }
    }
    if either == 0 {
        1.0
    } else {
        both as f64 / either as f64
    }
}

/// The worst keypoint differences over a run: the largest relative
/// coordinate difference, the same in the input's pixels, the largest
/// confidence difference, and how many points were compared (hidden ones
/// included).
#[derive(Default)]
struct KeypointDiffs {
    relative: f64,
    pixels: f64,
    confidence: f64,
    points: usize,
    hidden: usize,
}

/// Checks zoo's keypoints `ours` against FiftyOne's `their` detection (its
/// `keypoint_label`, `points` with null for NaN, `keypoint_confidence`):
/// the same label, the same points hidden, the others within 1e-4 of the
/// relative coordinates, confidences within 1e-4.
fn assert_keypoints(
    ours: &Keypoint,
    their: &Value,
    size: (f64, f64),
    what: &str,
    diffs: &mut KeypointDiffs,
) {
    assert_eq!(
        ours.label.as_deref(),
        Some(their["keypoint_label"].as_str().unwrap()),
        "{what}"
    );
    let points = their["points"].as_array().unwrap();
    assert_eq!(ours.points.len(), points.len(), "{what}: keypoint count");
    for (p, (mine, theirs)) in ours.points.iter().zip(points).enumerate() {
        diffs.points += 1;
        let theirs = theirs.as_array().unwrap();
        if theirs[0].is_null() {
            assert!(
                mine[0].is_nan() && mine[1].is_nan(),
                "{what} point {p}: {mine:?}, FiftyOne's is hidden"
            );
            diffs.hidden += 1;
            continue;
        }
        let theirs = [theirs[0].as_f64().unwrap(), theirs[1].as_f64().unwrap()];
        let relative = (mine[0] - theirs[0]).abs().max((mine[1] - theirs[1]).abs());
        assert!(
            relative <= 1e-4,
            "{what} point {p}: {mine:?} against FiftyOne's {theirs:?}"
        );
        diffs.relative = diffs.relative.max(relative);
        diffs.pixels = diffs.pixels.max(
            ((mine[0] - theirs[0]) * size.0)
                .abs()
                .max(((mine[1] - theirs[1]) * size.1).abs()),
        );
    }
    let confidences = their["keypoint_confidence"].as_array().unwrap();
    let mine = ours.confidence.as_ref().unwrap();
    assert_eq!(mine.len(), confidences.len(), "{what}");
    for (p, (mine, theirs)) in mine.iter().zip(confidences).enumerate() {
        let difference = (mine - theirs.as_f64().unwrap()).abs();
        assert!(
            difference <= 1e-4,
            "{what} point {p}: confidence {mine} against {theirs}"
        );
        diffs.confidence = diffs.confidence.max(difference);
    }
}

/// Runs built-in `base_name` as its unchanged config says on the oracle's
/// pictures with the oracle's weights and checks zoo's detections against
/// FiftyOne's: each of FiftyOne's matched by one of zoo's with the same
/// label, IoU >= 0.999, relative coordinates within 1e-4 and confidence
/// within 1e-4, in the same order except between neighbours whose scores
/// differ by less than that; masks (where FiftyOne gives them) with IoU >=
/// 0.999 over the pixels both crops cover, the crops' windows equal but
/// for edges within 1e-3 pixels of a rounding boundary.
fn assert_parity_with_fiftyone(base_name: &str) {
    let oracle = oracle();
    let expected = &oracle["models"][base_name];
    let architecture = expected["architecture"].as_str().unwrap();
    let layout = oracle["layouts"][architecture]["keys"].as_array().unwrap();
    let mut state = formula_state_dict(layout, expected["gain"].as_f64().unwrap());
    for tweak in expected["tweaks"].as_array().unwrap() {
        let tensor = state
            .iter_mut()
            .find(|tensor| tensor.name == tweak[0].as_str().unwrap())
            .unwrap();
        let values = tensor.values.as_mut().unwrap();
        values[tweak[1].as_u64().unwrap() as usize] += tweak[2].as_f64().unwrap() as f32;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(expected["named_file"].as_str().unwrap());
    fs_err::write(&path, torch_save_zip("archive", &state)).unwrap();
    let spec = ModelSpec {
        kind: "fiftyone.zoo.models.torch.TorchvisionImageModel".into(),
        config: builtin_config(base_name).as_object().unwrap().clone(),
        model_path: Some(path.clone()),
    };
    let mut model = TorchImageModel::from_spec(&spec).unwrap();
    // The config's skeleton, as FiftyOne's `TorchImageModel.skeleton`.
    match (model.skeleton(), spec.config.get("skeleton")) {
        (Some(ours), Some(theirs)) => {
            assert_eq!(json!(ours.labels), theirs["labels"]);
            assert_eq!(json!(ours.edges), theirs["edges"]);
        }
        (None, None) => {}
        (ours, theirs) => panic!("skeleton {ours:?} from {theirs:?}"),
    }
    let mut total = 0;
    let (mut worst_box, mut worst_score, mut worst_mask) = (0f64, 0f64, 1f64);
    let mut reordered = 0;
    let mut keypoint_diffs = KeypointDiffs::default();
    for (file, theirs) in expected["images"].as_object().unwrap() {
        let input = model.preprocessor().preprocess(decode(file)).unwrap();
        // A keypoint detector's two labels (`<field>_detections`,
        // `<field>_keypoints`), or one label of detections.
        let (ours, our_keypoints) = match model.predict(&input).unwrap() {
            Prediction::Label(Some(Label::Detections(ours))) => (ours, None),
            Prediction::Map(mut map) => {
                assert_eq!(map.len(), 2, "{file}: {:?}", map.keys());
                let Some(Some(Label::Detections(ours))) = map.remove("detections") else {
                    panic!("{file}: no detections");
                };
                let Some(Some(Label::Keypoints(keypoints))) = map.remove("keypoints") else {
                    panic!("{file}: no keypoints");
                };
                assert_eq!(keypoints.len(), ours.len(), "{file}");
                (ours, Some(keypoints))
            }
            other => panic!("{file}: {other:?}"),
        };
        let theirs = theirs.as_array().unwrap();
        assert!(!theirs.is_empty(), "{file}: the oracle detects nothing");
        assert_eq!(ours.len(), theirs.len(), "{file}: detection count");
        let mut taken = vec![false; ours.len()];
        for (k, their) in theirs.iter().enumerate() {
            let their_box: Vec<f64> = their["bounding_box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let their_box = [their_box[0], their_box[1], their_box[2], their_box[3]];
            let their_score = their["confidence"].as_f64().unwrap();
            // The first of zoo's detections not yet matched with the same
            // label, IoU >= 0.999 and the confidence within 1e-4.
            let found = ours.iter().enumerate().position(|(j, mine)| {
                !taken[j]
                    && mine.label == their["label"].as_str().unwrap()
                    && iou(&mine.bounding_box, &their_box) >= 0.999
                    && (mine.confidence.unwrap() - their_score).abs() <= 1e-4
            });
            let Some(j) = found else {
                panic!("{file}: FiftyOne's #{k} {their} has no match in zoo's detections");
            };
            taken[j] = true;
            let Detection {
                bounding_box,
                confidence,
                mask,
                ..
            } = &ours[j];
            let box_difference = bounding_box
                .iter()
                .zip(&their_box)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                box_difference <= 1e-4,
                "{file} #{k}: {bounding_box:?} against {their_box:?}"
            );
            worst_box = worst_box.max(box_difference);
            worst_score = worst_score.max((confidence.unwrap() - their_score).abs());
            // Same order, but for neighbours whose scores differ by less
            // than the numeric noise allowed (1e-4).
            let at_our_position = theirs[j]["confidence"].as_f64().unwrap();
            assert!(
                (at_our_position - their_score).abs() <= 1e-4,
                "{file}: FiftyOne's #{k} is zoo's #{j}, whose FiftyOne score differs by more than 1e-4"
            );
            if j != k {
                reordered += 1;
            }
            if their.get("mask_bits").is_some() {
                let their_mask = oracle_mask(their);
                let our_mask = mask
                    .clone()
                    .unwrap_or_else(|| panic!("{file} #{k}: no mask"));
                let size = (input.shape[2] as f64, input.shape[1] as f64);
                let mask_iou = mask_iou(
                    (&our_mask, crop_window(bounding_box, size)),
                    (&their_mask, crop_window(&their_box, size)),
                    &format!("{file} #{k}"),
                );
                worst_mask = worst_mask.min(mask_iou);
                assert!(mask_iou >= 0.999, "{file} #{k}: mask IoU {mask_iou}");
            } else {
                assert!(mask.is_none(), "{file} #{k}: a mask FiftyOne does not give");
            }
            match (&our_keypoints, their.get("points")) {
                (Some(keypoints), Some(_)) => assert_keypoints(
                    &keypoints[j],
                    their,
                    (input.shape[2] as f64, input.shape[1] as f64),
                    &format!("{file} #{k}"),
                    &mut keypoint_diffs,
                ),
                (None, None) => {}
                _ => panic!("{file} #{k}: keypoints on one side only"),
            }
        }
        total += theirs.len();
    }
    println!(
        "parity {base_name}: {total} detections, max |box diff| {worst_box:.3e}, max |confidence diff| {worst_score:.3e}, {reordered} at another position (scores within 1e-4), min mask IoU {worst_mask}"
    );
    if keypoint_diffs.points > 0 {
        println!(
            "parity {base_name}: {} keypoints ({} hidden as in FiftyOne), max |relative diff| {:.3e} ({:.3e} px), max |keypoint confidence diff| {:.3e}",
            keypoint_diffs.points,
            keypoint_diffs.hidden,
            keypoint_diffs.relative,
            keypoint_diffs.pixels,
            keypoint_diffs.confidence
        );
    }
}

/// `fasterrcnn_resnet50_fpn` as FiftyOne's built-in
/// `faster-rcnn-resnet50-fpn-coco-torch` runs it (config unchanged:
/// `confidence_thresh` 0.3, COCO labels) on PNG pictures of 300x200,
/// 180x260 and 640x96 (torchvision resizes them to 800 short sides, the
/// last capped by the 1333 long side): FiftyOne's detections (see
/// [`assert_parity_with_fiftyone`]).
#[test]
fn faster_rcnn_detections_match_fiftyone_apply_model() {
    assert_parity_with_fiftyone("faster-rcnn-resnet50-fpn-coco-torch");
}

/// `maskrcnn_resnet50_fpn` as FiftyOne's built-in
/// `mask-rcnn-resnet50-fpn-coco-torch` runs it
/// (`InstanceSegmenterOutputProcessor`, `mask_thresh` 0.5): FiftyOne's
/// detections and masks (pasted by `paste_masks_in_image`, cropped to the
/// boxes by FiftyOne) on the same pictures.
#[test]
fn mask_rcnn_detections_and_masks_match_fiftyone_apply_model() {
    assert_parity_with_fiftyone("mask-rcnn-resnet50-fpn-coco-torch");
}

/// `keypointrcnn_resnet50_fpn` as FiftyOne's built-in
/// `keypoint-rcnn-resnet50-fpn-coco-torch` runs it (config unchanged:
/// `KeypointDetectorOutputProcessor`, `other,person`, `confidence_thresh`
/// 0.3, the COCO skeleton; weights with the person logit and two keypoint
/// biases moved, so that some points fall below 0.3): FiftyOne's
/// `pred_detections` and `pred_keypoints` on the same pictures, keypoints
/// within 1e-4 of the relative coordinates, the same points hidden (NaN),
/// keypoint confidences within 1e-4.
#[test]
fn keypoint_rcnn_detections_and_keypoints_match_fiftyone_apply_model() {
    assert_parity_with_fiftyone("keypoint-rcnn-resnet50-fpn-coco-torch");
}

/// `retinanet_resnet50_fpn` as FiftyOne's built-in
/// `retinanet-resnet50-fpn-coco-torch` runs it (`confidence_thresh` 0.3;
/// P3..P7 with `LastLevelP6P7`, 9 anchors per cell, per-level top 1000):
/// FiftyOne's detections on the same pictures.
#[test]
fn retinanet_detections_match_fiftyone_apply_model() {
    assert_parity_with_fiftyone("retinanet-resnet50-fpn-coco-torch");
}
