//! `zoo models apply yolov8n-coco-torch` (and `yolo11n-coco-torch`,
//! `yolov5n-coco-torch`, `yolo26n-coco-torch`, `yolov10n-coco-torch`,
//! `yolov8n-seg-coco-torch`, `yolo26n-cls-imagenet-torch`,
//! `yolo26n-pose-coco-torch`, `yolov8n-obb-dotav1-torch`,
//! `yolo11n-seg-coco-torch`, `yolo26n-seg-coco-torch`) runs natively (FiftyOne's `FiftyOneYOLOModel`
//! built by zoo, no Python), with the weights from the entry's URL served
//! by a loopback mirror (`ZOO_DOWNLOAD_MIRRORS`), and stores FiftyOne
//! 1.22.1's own labels (detections, instance masks, classifications,
//! keypoints, polylines).
//!
//! Oracle: `crates/torch-backend/tests/fixtures/yolo/yolo_oracle.json`
//! (`cargo xtask yolo-oracle`): FiftyOne's `FiftyOneYOLOModel` with
//! Ultralytics 8.4.190 on seeded release checkpoints (`yolov8t.pt`, ...:
//! each generation at a tiny width; served here as the entry's
//! `yolov8n.pt`, ...: the same code builds every scale from the
//! checkpoint's yaml). libtorch runs
//! on one thread, as the oracle did (`OMP_NUM_THREADS=1`): oneDNN's
//! convolutions round differently over several threads.

use serde_json::Value;
use zoo_test_support::TestServer;

use crate::util::{Sandbox, exported_samples, fixtures, json_fixture};

#[test]
fn yolov8n_coco_torch_runs_natively_with_fiftyones_detections() {
    runs_natively("yolov8n-coco-torch", "v8.3.0/yolov8n.pt", "yolov8t.pt", 184);
}

/// YOLO11 (`yolo11t.pt` served as the entry's `yolo11n.pt`).
#[test]
fn yolo11n_coco_torch_runs_natively_with_fiftyones_detections() {
    runs_natively("yolo11n-coco-torch", "v8.3.0/yolo11n.pt", "yolo11t.pt", 286);
}

/// YOLOv8 on Open Images V7 is YOLOv8 detection with the checkpoint's
/// class names (`yolov8t.pt` served as the entry's `yolov8n-oiv7.pt`).
#[test]
fn yolov8n_oiv7_torch_runs_natively_with_fiftyones_detections() {
    runs_natively(
        "yolov8n-oiv7-torch",
        "v8.2.0/yolov8n-oiv7.pt",
        "yolov8t.pt",
        184,
    );
}

/// YOLOv9c (`yolov9tc.pt` served as the entry's `yolov9c.pt`).
#[test]
fn yolov9c_coco_torch_runs_natively_with_fiftyones_detections() {
    runs_natively(
        "yolov9c-coco-torch",
        "v8.1.0/yolov9c.pt",
        "yolov9tc.pt",
        225,
    );
}

/// YOLOv5u (`yolov5tu.pt` served as the entry's `yolov5nu.pt`).
#[test]
fn yolov5n_coco_torch_runs_natively_with_fiftyones_detections() {
    runs_natively(
        "yolov5n-coco-torch",
        "v8.3.0/yolov5nu.pt",
        "yolov5tu.pt",
        184,
    );
}

/// YOLO26 (`yolo26t.pt` served as the entry's `yolo26n.pt`).
#[test]
fn yolo26n_coco_torch_runs_natively_with_fiftyones_detections() {
    runs_natively("yolo26n-coco-torch", "v8.4.0/yolo26n.pt", "yolo26t.pt", 303);
}

/// YOLOv10 (`yolov10t.pt` served as the entry's `yolov10n.pt`).
#[test]
fn yolov10n_coco_torch_runs_natively_with_fiftyones_detections() {
    runs_natively(
        "yolov10n-coco-torch",
        "v8.2.0/yolov10n.pt",
        "yolov10t.pt",
        296,
    );
}

/// YOLOv8 segmentation (`yolov8t-seg.pt` served as the entry's
/// `yolov8n-seg.pt`): detections with FiftyOne's instance masks.
#[test]
fn yolov8n_seg_coco_torch_runs_natively_with_fiftyones_instances() {
    runs_natively(
        "yolov8n-seg-coco-torch",
        "v8.1.0/yolov8n-seg.pt",
        "yolov8t-seg.pt",
        111,
    );
}

/// YOLO26 segmentation (`yolo26t-seg.pt` served as `yolo26n-seg.pt`).
#[test]
fn yolo26n_seg_coco_torch_runs_natively_with_fiftyones_instances() {
    runs_natively(
        "yolo26n-seg-coco-torch",
        "v8.4.0/yolo26n-seg.pt",
        "yolo26t-seg.pt",
        52,
    );
}

/// YOLO11 segmentation (`yolo11t-seg.pt` served as `yolo11n-seg.pt`).
#[test]
fn yolo11n_seg_coco_torch_runs_natively_with_fiftyones_instances() {
    runs_natively(
        "yolo11n-seg-coco-torch",
        "v8.3.0/yolo11n-seg.pt",
        "yolo11t-seg.pt",
        83,
    );
}

/// Applies the built-in `entry` to the oracle's pictures with the seeded
/// `fixture` served as its release file `release` (`TAG/FILE`), and compares with
/// FiftyOne's detections (`total` of them).
fn runs_natively(entry: &str, release: &str, fixture: &str, total_expected: usize) {
    let oracle = json_fixture("yolo/yolo_oracle.json");
    let expected = &oracle[fixture]["fiftyone"];
    let server = TestServer::start();
    server.file(
        &format!("/ultralytics/assets/releases/download/{release}"),
        fs_err::read(fixtures().join("yolo").join(fixture)).unwrap(),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!("https://github.com/={}", server.url("/")),
    ));
    sandbox.env.push(("OMP_NUM_THREADS".into(), "1".into()));
    let info = sandbox.ok(&["models", "info", entry, "--json"]).json();
    assert_eq!(info["runs_in"], "native", "{info}");
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in expected.as_object().unwrap().keys() {
        fs_err::copy(fixtures().join("yolo").join(file), images.join(file)).unwrap();
    }
    sandbox.ok(&["datasets", "create", "yolo", images.to_str().unwrap()]);
    // One image per forward, as the oracle's `apply_model` ran: a batched
    // forward rounds differently (oneDNN picks kernels by batch size; the
    // torch backend's `a_batch_gives_the_labels_of_one_picture_at_a_time`
    // bounds that difference).
    sandbox.ok(&["models", "apply", entry, "yolo", "pred", "-b", "1"]);
    let samples = exported_samples(&sandbox, "yolo");
    assert_eq!(samples.len(), 4);
    let mut total = 0;
    let mut masks = 0;
    for (file, sample) in samples {
        let ours = sample["pred"]["detections"].as_array().unwrap();
        let theirs = expected[file.as_str()].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        for (ours, theirs) in ours.iter().zip(theirs) {
            assert_eq!(ours["label"], theirs["label"], "{file}");
            let close = |key: &str, a: &Value, b: &Value| {
                let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                assert!((a - b).abs() <= 1e-4, "{file} {key}: {a} vs {b}");
            };
            close("confidence", &ours["confidence"], &theirs["confidence"]);
            for index in 0..4 {
                close(
                    "bounding_box",
                    &ours["bounding_box"][index],
                    &theirs["bounding_box"][index],
                );
            }
            if let Some(hex) = theirs.get("mask").and_then(Value::as_str) {
                let shape: Vec<usize> =
                    serde_json::from_value(theirs["mask_shape"].clone()).unwrap();
                let mask = zoo_model_core::array_from_json(&ours["mask"]).unwrap();
                assert_eq!(mask.shape, shape, "{file}");
                // The oracle's mask is `np.packbits` of the boolean mask.
                let mut packed = vec![0u8; mask.data.len().div_ceil(8)];
                for (index, value) in mask.data.iter().enumerate() {
                    packed[index / 8] |= u8::from(*value != 0) << (7 - index % 8);
                }
                let ours: String = packed.iter().map(|byte| format!("{byte:02x}")).collect();
                assert_eq!(ours, hex, "{file}: mask");
                masks += 1;
            }
        }
        total += ours.len();
    }
    assert_eq!(total, total_expected);
    if entry.contains("-seg-") {
        assert_eq!(masks, total, "every instance has FiftyOne's mask");
    }
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}

/// YOLO26 classification (`yolo26t-cls.pt` served as the entry's
/// `yolo26n-cls.pt`): FiftyOne's top class, its probability and every
/// class's probability as the logits.
#[test]
fn yolo26n_cls_imagenet_torch_runs_natively_with_fiftyones_classifications() {
    let oracle = json_fixture("yolo/yolo_oracle.json");
    let expected = &oracle["yolo26t-cls.pt"]["fiftyone"];
    let server = TestServer::start();
    server.file(
        "/ultralytics/assets/releases/download/v8.4.0/yolo26n-cls.pt",
        fs_err::read(fixtures().join("yolo/yolo26t-cls.pt")).unwrap(),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!("https://github.com/={}", server.url("/")),
    ));
    sandbox.env.push(("OMP_NUM_THREADS".into(), "1".into()));
    let entry = "yolo26n-cls-imagenet-torch";
    let info = sandbox.ok(&["models", "info", entry, "--json"]).json();
    assert_eq!(info["runs_in"], "native", "{info}");
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in expected.as_object().unwrap().keys() {
        fs_err::copy(fixtures().join("yolo").join(file), images.join(file)).unwrap();
    }
    sandbox.ok(&["datasets", "create", "yolo", images.to_str().unwrap()]);
    // One image per forward, as the oracle's `apply_model` ran: a batched
    // forward rounds differently (oneDNN picks kernels by batch size; the
    // torch backend's `a_batch_gives_the_labels_of_one_picture_at_a_time`
    // bounds that difference).
    sandbox.ok(&["models", "apply", entry, "yolo", "pred", "-b", "1"]);
    let samples = exported_samples(&sandbox, "yolo");
    assert_eq!(samples.len(), 4);
    for (file, sample) in samples {
        let (ours, theirs) = (&sample["pred"], &expected[file.as_str()]);
        assert_eq!(ours["label"], theirs["label"], "{file}");
        let confidence = ours["confidence"].as_f64().unwrap();
        assert!(
            (confidence - theirs["confidence"].as_f64().unwrap()).abs() <= 1e-4,
            "{file}"
        );
        let logits = zoo_model_core::array_from_json(&ours["logits"])
            .unwrap()
            .to_f32()
            .unwrap();
        let expected: Vec<f64> = serde_json::from_value(theirs["logits"].clone()).unwrap();
        assert_eq!(logits.len(), expected.len(), "{file}");
        for (a, b) in logits.iter().zip(&expected) {
            assert!((f64::from(*a) - b).abs() <= 1e-4, "{file}: {a} vs {b}");
        }
    }
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}

/// YOLO26 pose (`yolo26t-pose.pt` served as the entry's
/// `yolo26n-pose.pt`): FiftyOne's keypoints, relative to the image, with
/// their visibilities.
#[test]
fn yolo26n_pose_coco_torch_runs_natively_with_fiftyones_keypoints() {
    let oracle = json_fixture("yolo/yolo_oracle.json");
    let expected = &oracle["yolo26t-pose.pt"]["fiftyone"];
    let server = TestServer::start();
    server.file(
        "/ultralytics/assets/releases/download/v8.4.0/yolo26n-pose.pt",
        fs_err::read(fixtures().join("yolo/yolo26t-pose.pt")).unwrap(),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!("https://github.com/={}", server.url("/")),
    ));
    sandbox.env.push(("OMP_NUM_THREADS".into(), "1".into()));
    let entry = "yolo26n-pose-coco-torch";
    let info = sandbox.ok(&["models", "info", entry, "--json"]).json();
    assert_eq!(info["runs_in"], "native", "{info}");
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in expected.as_object().unwrap().keys() {
        fs_err::copy(fixtures().join("yolo").join(file), images.join(file)).unwrap();
    }
    sandbox.ok(&["datasets", "create", "yolo", images.to_str().unwrap()]);
    // One image per forward, as the oracle's `apply_model` ran: a batched
    // forward rounds differently (oneDNN picks kernels by batch size; the
    // torch backend's `a_batch_gives_the_labels_of_one_picture_at_a_time`
    // bounds that difference).
    sandbox.ok(&["models", "apply", entry, "yolo", "pred", "-b", "1"]);
    let samples = exported_samples(&sandbox, "yolo");
    assert_eq!(samples.len(), 4);
    let mut total = 0;
    for (file, sample) in samples {
        let ours = sample["pred"]["keypoints"].as_array().unwrap();
        let theirs = expected[file.as_str()].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        for (ours, theirs) in ours.iter().zip(theirs) {
            assert_eq!(ours["label"], theirs["label"], "{file}");
            let points: Vec<[f64; 2]> = serde_json::from_value(ours["points"].clone()).unwrap();
            let expected: Vec<[f64; 2]> = serde_json::from_value(theirs["points"].clone()).unwrap();
            assert_eq!(points.len(), expected.len(), "{file}");
            for (a, b) in points.iter().zip(&expected) {
                assert!(
                    (a[0] - b[0]).abs() <= 1e-3 && (a[1] - b[1]).abs() <= 1e-3,
                    "{file}: {a:?} vs {b:?}"
                );
            }
            let confidence: Vec<f64> = serde_json::from_value(ours["confidence"].clone()).unwrap();
            let expected: Vec<f64> = serde_json::from_value(theirs["confidence"].clone()).unwrap();
            for (a, b) in confidence.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-4, "{file}: {a} vs {b}");
            }
        }
        total += ours.len();
    }
    assert_eq!(total, 73);
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}

/// YOLOv8 oriented boxes (`yolov8t-obb.pt` served as the entry's
/// `yolov8n-obb.pt`): FiftyOne's polylines of the boxes' corners.
#[test]
fn yolov8n_obb_dotav1_torch_runs_natively_with_fiftyones_polylines() {
    let oracle = json_fixture("yolo/yolo_oracle.json");
    let expected = &oracle["yolov8t-obb.pt"]["fiftyone"];
    let server = TestServer::start();
    server.file(
        "/ultralytics/assets/releases/download/v8.1.0/yolov8n-obb.pt",
        fs_err::read(fixtures().join("yolo/yolov8t-obb.pt")).unwrap(),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!("https://github.com/={}", server.url("/")),
    ));
    sandbox.env.push(("OMP_NUM_THREADS".into(), "1".into()));
    let entry = "yolov8n-obb-dotav1-torch";
    let info = sandbox.ok(&["models", "info", entry, "--json"]).json();
    assert_eq!(info["runs_in"], "native", "{info}");
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in expected.as_object().unwrap().keys() {
        fs_err::copy(fixtures().join("yolo").join(file), images.join(file)).unwrap();
    }
    sandbox.ok(&["datasets", "create", "yolo", images.to_str().unwrap()]);
    // One image per forward, as the oracle's `apply_model` ran: a batched
    // forward rounds differently (oneDNN picks kernels by batch size; the
    // torch backend's `a_batch_gives_the_labels_of_one_picture_at_a_time`
    // bounds that difference).
    sandbox.ok(&["models", "apply", entry, "yolo", "pred", "-b", "1"]);
    let samples = exported_samples(&sandbox, "yolo");
    assert_eq!(samples.len(), 4);
    let mut total = 0;
    for (file, sample) in samples {
        let ours = sample["pred"]["polylines"].as_array().unwrap();
        let theirs = expected[file.as_str()].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        for (ours, theirs) in ours.iter().zip(theirs) {
            assert_eq!(ours["label"], theirs["label"], "{file}");
            assert_eq!(ours["closed"], true, "{file}");
            assert_eq!(ours["filled"], false, "{file}");
            let points: Vec<Vec<[f64; 2]>> =
                serde_json::from_value(ours["points"].clone()).unwrap();
            let expected: Vec<Vec<[f64; 2]>> =
                serde_json::from_value(theirs["points"].clone()).unwrap();
            assert_eq!(points.len(), expected.len(), "{file}");
            for (a, b) in points.iter().flatten().zip(expected.iter().flatten()) {
                assert!(
                    (a[0] - b[0]).abs() <= 1e-4 && (a[1] - b[1]).abs() <= 1e-4,
                    "{file}: {a:?} vs {b:?}"
                );
            }
            let (a, b) = (
                ours["confidence"].as_f64().unwrap(),
                theirs["confidence"].as_f64().unwrap(),
            );
            assert!((a - b).abs() <= 1e-4, "{file}: {a} vs {b}");
        }
        total += ours.len();
    }
    assert_eq!(total, 317);
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}
