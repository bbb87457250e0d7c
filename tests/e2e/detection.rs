//! Issue 14: torchvision's detectors through the `zoo` binary.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/detection_oracle.json`,
//! written by `cargo xtask detection-oracle`
//! (`xtask/fixtures/detection_oracle.py`): FiftyOne 1.22.1's
//! `foz.load_zoo_model(name).apply_model(dataset, "pred")` with torch 2.13 /
//! torchvision 0.28 and formula weights (plus bias tweaks) in the hosted
//! checkpoint's key layout.

use serde_json::{Value, json};
use zoo_test_support::{StateTensor, TestServer, formula_state_dict, torch_save_zip};

use crate::util::{Sandbox, exported_samples, fixtures};

pub(crate) fn oracle() -> Value {
    serde_json::from_slice(&fs_err::read(fixtures().join("detection_oracle.json")).unwrap())
        .unwrap()
}

/// The oracle's weights for `base_name`, as `torch.save` writes them.
pub(crate) fn seeded_weights(oracle: &Value, base_name: &str) -> Vec<u8> {
    let expected = &oracle["models"][base_name];
    let architecture = expected["architecture"].as_str().unwrap();
    let layout = oracle["layouts"][architecture]["keys"].as_array().unwrap();
    let mut state: Vec<StateTensor> =
        formula_state_dict(layout, expected["gain"].as_f64().unwrap());
    for tweak in expected["tweaks"].as_array().unwrap() {
        let tensor = state
            .iter_mut()
            .find(|tensor| tensor.name == tweak[0].as_str().unwrap())
            .unwrap();
        tensor.values.as_mut().unwrap()[tweak[1].as_u64().unwrap() as usize] +=
            tweak[2].as_f64().unwrap() as f32;
    }
    torch_save_zip("archive", &state)
}

/// One exported detection: label, relative `[x, y, w, h]`, confidence.
pub(crate) type Found = (String, [f64; 4], f64);

/// Every sample's detections in `field`, by file name, from an export.
pub(crate) fn exported_detections(
    sandbox: &Sandbox,
    dataset: &str,
    field: &str,
) -> Vec<(String, Vec<Found>)> {
    exported_samples(sandbox, dataset)
        .into_iter()
        .map(|(file, sample)| {
            assert_eq!(sample[field]["_cls"], "Detections", "{file}");
            let detections = sample[field]["detections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|detection| {
                    assert_eq!(detection["_cls"], "Detection");
                    let coordinates: Vec<f64> = detection["bounding_box"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect();
                    (
                        detection["label"].as_str().unwrap().to_owned(),
                        [
                            coordinates[0],
                            coordinates[1],
                            coordinates[2],
                            coordinates[3],
                        ],
                        detection["confidence"].as_f64().unwrap(),
                    )
                })
                .collect();
            (file, detections)
        })
        .collect()
}

/// Each of FiftyOne's detections matched by one of zoo's with the same
/// label, every coordinate within 1e-4 and the confidence within 1e-4;
/// the index of zoo's match for each of FiftyOne's.
pub(crate) fn assert_matches(file: &str, ours: &[Found], theirs: &Value) -> Vec<usize> {
    let theirs = theirs.as_array().unwrap();
    assert!(!theirs.is_empty(), "{file}: the oracle detects nothing");
    assert_eq!(ours.len(), theirs.len(), "{file}: detection count");
    let mut taken = vec![false; ours.len()];
    let mut matches = Vec::with_capacity(theirs.len());
    for their in theirs {
        let coordinates: Vec<f64> = their["bounding_box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let found = ours
            .iter()
            .enumerate()
            .position(|(j, (label, bounds, score))| {
                !taken[j]
                    && label == their["label"].as_str().unwrap()
                    && bounds
                        .iter()
                        .zip(&coordinates)
                        .all(|(a, b)| (a - b).abs() <= 1e-4)
                    && (score - their["confidence"].as_f64().unwrap()).abs() <= 1e-4
            });
        let Some(j) = found else {
            panic!("{file}: FiftyOne's {their} has no match in zoo's detections");
        };
        taken[j] = true;
        matches.push(j);
    }
    matches
}

/// `zoo models apply faster-rcnn-resnet50-fpn-coco-torch DIR pred` with the
/// built-in entry unchanged (FiftyOne's config: `confidence_thresh` 0.3,
/// COCO labels from `{{eta-resources}}/ms-coco-labels.txt`) gives
/// FiftyOne's detections, exported as FiftyOne's `Detections`; and the same
/// entry in a manifest of its own, whose weights come from a loopback
/// server, downloads them and detects the same.
#[test]
fn faster_rcnn_builtin_applies_like_fiftyone_and_downloads_its_weights() {
    let oracle = oracle();
    let base_name = "faster-rcnn-resnet50-fpn-coco-torch";
    let expected = &oracle["models"][base_name];
    let named_file = expected["named_file"].as_str().unwrap();
    let weights = seeded_weights(&oracle, base_name);
    let server = TestServer::start();
    server.file("/models/faster-rcnn-seeded.pth", weights.clone());

    let mut sandbox = Sandbox::new();
    // The built-in entry, under another name, with a weights URL on the
    // loopback server (the built-in's own URL names the hosted file's
    // sha256, which seeded weights cannot match).
    let builtin: Value = serde_json::from_str(include_str!(
        "../../crates/registry/builtin/manifest-torch.json"
    ))
    .unwrap();
    let mut entry = builtin["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["base_name"] == base_name)
        .unwrap()
        .clone();
    let entry_object = entry.as_object_mut().unwrap();
    entry_object.remove("zoo_named_weights");
    entry_object.insert("base_name".into(), json!("seeded-faster-rcnn"));
    entry_object.insert("base_filename".into(), json!("faster-rcnn-seeded.pth"));
    entry_object.insert(
        "manager".into(),
        json!({"type": "fiftyone.core.models.ModelManager",
               "config": {"url": server.url("/models/faster-rcnn-seeded.pth")}}),
    );
    let manifest = sandbox.dir.path().join("custom-manifest.json");
    fs_err::write(&manifest, json!({"models": [entry]}).to_string()).unwrap();
    sandbox
        .env
        .push(("ZOO_MANIFEST_PATHS".into(), manifest.display().to_string()));

    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in expected["images"].as_object().unwrap().keys() {
        fs_err::copy(fixtures().join("detection").join(file), images.join(file)).unwrap();
    }
    // The built-in: its file where FiftyOne keeps it (torchvision's name).
    fs_err::create_dir_all(sandbox.zoo_dir()).unwrap();
    fs_err::write(sandbox.zoo_dir().join(named_file), &weights).unwrap();
    sandbox.ok(&["datasets", "create", "pictures", images.to_str().unwrap()]);
    sandbox.ok(&["models", "apply", base_name, "pictures", "pred"]);
    let found = exported_detections(&sandbox, "pictures", "pred");
    assert_eq!(found.len(), 3);
    for (file, ours) in &found {
        assert_matches(file, ours, &expected["images"][file.as_str()]);
    }

    // The same entry from a manifest of its own: downloaded from the
    // loopback server, then applied to one picture.
    let one = sandbox.dir.path().join("one");
    fs_err::create_dir_all(&one).unwrap();
    fs_err::copy(images.join("strip.png"), one.join("strip.png")).unwrap();
    sandbox.ok(&["datasets", "create", "one", one.to_str().unwrap()]);
    sandbox.ok(&["models", "apply", "seeded-faster-rcnn", "one", "seeded"]);
    assert_eq!(
        server.requests_to("/models/faster-rcnn-seeded.pth").len(),
        1
    );
    let found = exported_detections(&sandbox, "one", "seeded");
    assert_matches(&found[0].0, &found[0].1, &expected["images"]["strip.png"]);
}

/// `zoo models apply keypoint-rcnn-resnet50-fpn-coco-torch DIR pred` with
/// the built-in entry unchanged (`KeypointDetectorOutputProcessor`,
/// `other,person`, `confidence_thresh` 0.3, the COCO skeleton): the mirror
/// from `ZOO_DOWNLOAD_MIRRORS` is asked for torchvision's file (and the
/// seeded file refused, its sha256 not starting with the name's hash);
/// with the file in the model dir, zoo stores FiftyOne's two labels,
/// `pred_detections` and `pred_keypoints`, as `apply_model` does: each of
/// FiftyOne's detections matched, its keypoints with the same label, the
/// same points hidden (null in the export, NaN in FiftyOne), the others
/// within 1e-4 (relative), confidences within 1e-4.
#[test]
fn keypoint_rcnn_builtin_stores_fiftyones_detections_and_keypoints() {
    let oracle = oracle();
    let base_name = "keypoint-rcnn-resnet50-fpn-coco-torch";
    let expected = &oracle["models"][base_name];
    let named_file = expected["named_file"].as_str().unwrap();
    let weights = seeded_weights(&oracle, base_name);
    let server = TestServer::start();
    server.file(&format!("/mirror/{named_file}"), weights.clone());
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!(
            "https://download.pytorch.org/models/={}",
            server.url("/mirror/")
        ),
    ));
    let err = sandbox.fails(&["models", "download", base_name]).stderr();
    assert!(err.contains("the file name's hash expects"), "{err}");
    assert_eq!(
        server.requests_to(&format!("/mirror/{named_file}")).len(),
        1
    );
    fs_err::create_dir_all(sandbox.zoo_dir()).unwrap();
    fs_err::write(sandbox.zoo_dir().join(named_file), &weights).unwrap();

    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in expected["images"].as_object().unwrap().keys() {
        fs_err::copy(fixtures().join("detection").join(file), images.join(file)).unwrap();
    }
    sandbox.ok(&["datasets", "create", "people", images.to_str().unwrap()]);
    sandbox.ok(&["models", "apply", base_name, "people", "pred"]);
    let detections = exported_detections(&sandbox, "people", "pred_detections");
    let samples = exported_samples(&sandbox, "people");
    assert_eq!(samples.len(), 3);
    let (mut points, mut hidden, mut worst) = (0, 0, 0f64);
    for ((file, ours), (_, sample)) in detections.iter().zip(&samples) {
        let theirs = &expected["images"][file.as_str()];
        let matches = assert_matches(file, ours, theirs);
        let keypoints = &sample["pred_keypoints"];
        assert_eq!(keypoints["_cls"], "Keypoints", "{file}");
        let keypoints = keypoints["keypoints"].as_array().unwrap();
        assert_eq!(keypoints.len(), ours.len(), "{file}");
        for (their, j) in theirs.as_array().unwrap().iter().zip(matches) {
            let mine = &keypoints[j];
            assert_eq!(mine["_cls"], "Keypoint", "{file}");
            assert_eq!(mine["label"], their["keypoint_label"], "{file}");
            let their_points = their["points"].as_array().unwrap();
            let my_points = mine["points"].as_array().unwrap();
            assert_eq!(my_points.len(), their_points.len(), "{file}");
            for (a, b) in my_points.iter().zip(their_points) {
                points += 1;
                if b[0].is_null() {
                    assert_eq!(a, &json!([null, null]), "{file}: FiftyOne hides this point");
                    hidden += 1;
                    continue;
                }
                for axis in 0..2 {
                    let difference = (a[axis].as_f64().unwrap() - b[axis].as_f64().unwrap()).abs();
                    assert!(difference <= 1e-4, "{file}: {a} against FiftyOne's {b}");
                    worst = worst.max(difference);
                }
            }
            let confidences = mine["confidence"].as_array().unwrap();
            let their_confidences = their["keypoint_confidence"].as_array().unwrap();
            assert_eq!(confidences.len(), their_confidences.len(), "{file}");
            for (a, b) in confidences.iter().zip(their_confidences) {
                let difference = (a.as_f64().unwrap() - b.as_f64().unwrap()).abs();
                assert!(difference <= 1e-4, "{file}: confidence {a} against {b}");
            }
        }
    }
    assert!(hidden > 0 && hidden < points, "{hidden} of {points} hidden");
    println!(
        "e2e {base_name}: {points} keypoints, {hidden} hidden, max |relative diff| {worst:.3e}"
    );
}
