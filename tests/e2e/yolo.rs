//! `zoo models apply yolov8n-coco-torch` runs natively (FiftyOne's
//! `FiftyOneYOLOModel` built by zoo, no Python), with the weights from
//! the entry's URL served by a loopback mirror (`ZOO_DOWNLOAD_MIRRORS`),
//! and stores FiftyOne 1.22.1's own detections.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/yolo/yolo_oracle.json`
//! (`cargo xtask yolo-oracle`): FiftyOne's `FiftyOneYOLOModel` with
//! Ultralytics 8.4.190 on the seeded release checkpoint `yolov8t.pt`
//! (YOLOv8 at a tiny width; served here as the entry's `yolov8n.pt`: the
//! same code builds every scale from the checkpoint's yaml). libtorch runs
//! on one thread, as the oracle did (`OMP_NUM_THREADS=1`): oneDNN's
//! convolutions round differently over several threads.

use serde_json::Value;
use zoo_test_support::TestServer;

use crate::util::{Sandbox, exported_samples, fixtures, json_fixture};

#[test]
fn yolov8n_coco_torch_runs_natively_with_fiftyones_detections() {
    let oracle = json_fixture("yolo/yolo_oracle.json");
    let expected = &oracle["yolov8t.pt"]["fiftyone"];
    let server = TestServer::start();
    server.file(
        "/ultralytics/assets/releases/download/v8.3.0/yolov8n.pt",
        fs_err::read(fixtures().join("yolo/yolov8t.pt")).unwrap(),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!("https://github.com/={}", server.url("/")),
    ));
    sandbox.env.push(("OMP_NUM_THREADS".into(), "1".into()));
    let info = sandbox
        .ok(&["models", "info", "yolov8n-coco-torch", "--json"])
        .json();
    assert_eq!(info["runs_in"], "native", "{info}");
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in expected.as_object().unwrap().keys() {
        fs_err::copy(fixtures().join("yolo").join(file), images.join(file)).unwrap();
    }
    sandbox.ok(&["datasets", "create", "yolo", images.to_str().unwrap()]);
    sandbox.ok(&["models", "apply", "yolov8n-coco-torch", "yolo", "pred"]);
    let samples = exported_samples(&sandbox, "yolo");
    assert_eq!(samples.len(), 4);
    let mut total = 0;
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
        }
        total += ours.len();
    }
    assert_eq!(total, 184);
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}
