//! Applying models to datasets through the registry (issue: model core,
//! output processors and datasets; torch backend).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zoo_test_support::TestServer;

use crate::util::{Sandbox, manifest_source};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../torch-backend/tests/fixtures")
        .join(name)
}

/// `count` generated pictures (PNG and JPEG, different sizes) plus one
/// corrupt file.
pub(crate) fn pictures(dir: &Path, count: usize) {
    fs_err::create_dir_all(dir.join("sub")).unwrap();
    for index in 0..count {
        let (w, h) = if index % 3 == 0 {
            (320, 240)
        } else {
            (200, 260)
        };
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 + index as u32) as u8, (y * 3) as u8, (x ^ y) as u8])
        });
        let path = if index % 2 == 0 {
            dir.join(format!("p{index:04}.png"))
        } else {
            dir.join(format!("sub/p{index:04}.jpg"))
        };
        image.save(&path).unwrap();
    }
    fs_err::write(dir.join("corrupt.jpg"), b"\xff\xd8\xff garbage").unwrap();
}

/// A source whose model is the TorchScript classifier fixture.
pub(crate) fn classifier_source(server: &TestServer) -> String {
    server.file(
        "/weights/tiny.pt",
        fs_err::read(fixture("script_classifier.pt")).unwrap(),
    );
    let manifest = serde_json::json!({"name": "acme/tiny", "models": [{
        "base_name": "acme/tiny-classifier",
        "base_filename": "tiny.pt",
        "tags": ["classification", "embeddings", "torch"],
        "manager": {"type": "fiftyone.core.models.ModelManager", "config": {"url": server.url("/weights/tiny.pt")}},
        "default_deployment_config_dict": {"type": "fiftyone.utils.torch.TorchImageModel", "config": {
            "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor", "classes": ["red", "green", "blue"], "image_min_dim": 224, "image_max_dim": 2048,
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
            "embeddings_layer": "embed", "device": "cpu"
        }}
    }]});
    manifest_source(server, "/tiny-source.tar.gz", &manifest)
}

fn labelled(sandbox: &Sandbox, dataset: &str, field: &str) -> u64 {
    let info = sandbox.ok(&["datasets", "info", dataset, "--json"]).json();
    info["label_fields"][field].as_u64().unwrap_or(0)
}

#[test]
fn apply_kill_resume_and_every_sample_ends_with_one_label() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 240);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);

    let mut child = sandbox
        .command(&[
            "models",
            "apply",
            "acme/tiny-classifier",
            "pics",
            "pred",
            "--batch-size",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut killed_at = 0;
    loop {
        let done = labelled(&sandbox, "pics", "pred");
        if done >= 10 {
            child.kill().unwrap();
            child.wait().unwrap();
            killed_at = labelled(&sandbox, "pics", "pred");
            break;
        }
        if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        killed_at > 0 && killed_at < 240,
        "the run should be killed midway, had {killed_at} labels"
    );

    let resumed = sandbox
        .ok(&[
            "models",
            "apply",
            "acme/tiny-classifier",
            "pics",
            "pred",
            "--json",
        ])
        .json();
    let processed = resumed["processed"].as_u64().unwrap();
    assert!(
        processed < 241 && processed >= 241 - killed_at,
        "resumed {processed} after {killed_at}"
    );
    assert_eq!(resumed["failed"], 1);
    assert!(
        resumed["failures"][0]["filepath"]
            .as_str()
            .unwrap()
            .ends_with("corrupt.jpg")
    );

    let export = sandbox.dir.path().join("out.jsonl");
    sandbox.ok(&["datasets", "export", "pics", export.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = fs_err::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 241);
    for line in &lines {
        let path = line["filepath"].as_str().unwrap();
        if path.ends_with("corrupt.jpg") {
            assert!(line.get("pred").is_none());
        } else {
            assert_eq!(line["pred"]["_cls"], "Classification", "{path}");
            assert!(["red", "green", "blue"].contains(&line["pred"]["label"].as_str().unwrap()));
        }
    }
    // Nothing left to do; --overwrite redoes everything.
    assert_eq!(
        sandbox
            .ok(&[
                "models",
                "apply",
                "acme/tiny-classifier",
                "pics",
                "pred",
                "--json"
            ])
            .json()["processed"],
        1
    );
    let redo = sandbox
        .ok(&[
            "models",
            "apply",
            "acme/tiny-classifier",
            "pics",
            "pred",
            "--overwrite",
            "--json",
            "-l",
        ])
        .json();
    assert_eq!(redo["processed"], 241);
    sandbox.ok(&["datasets", "export", "pics", export.to_str().unwrap()]);
    let first: serde_json::Value = serde_json::from_str(
        fs_err::read_to_string(&export)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    // Logits as FiftyOne stores them: a float32 `.npy` in `$binary`.
    let logits = zoo_model_core::array_from_json(&first["pred"]["logits"]).unwrap();
    assert_eq!(
        (logits.dtype.as_str(), logits.shape.as_slice()),
        ("<f4", &[3][..])
    );
}

#[test]
fn embed_a_folder_and_export_npy() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 5);
    let summary = sandbox
        .ok(&[
            "models",
            "embed",
            "acme/tiny-classifier",
            pics.to_str().unwrap(),
            "emb",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], 5);
    assert_eq!(summary["dimension"], 4);
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let npy = sandbox.dir.path().join("emb.npy");
    sandbox.ok(&[
        "datasets",
        "export",
        &dataset,
        npy.to_str().unwrap(),
        "--format",
        "npy",
        "--field",
        "emb",
    ]);
    let bytes = fs_err::read(&npy).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'shape': (5, 4)"));
    // With numpy at hand (CI provisions it), numpy itself must load it.
    if let Ok(python) = std::env::var("ZOO_TEST_PYTHON") {
        let output = std::process::Command::new(python)
            .args(["-c", "import sys, numpy; a = numpy.load(sys.argv[1]); print(a.shape, a.dtype, bool(numpy.isfinite(a).all()))"])
            .arg(&npy)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "(5, 4) float32 True"
        );
    }
}

#[test]
fn models_zoo_cannot_run_give_a_clear_error() {
    let server = TestServer::start();
    server.file("/w/m.bin", vec![1u8; 10]);
    let manifest = serde_json::json!({"name": "acme/other", "models": [{
        "base_name": "acme/sam", "base_filename": "m.bin",
        "manager": {"type": "fiftyone.core.models.ModelManager", "config": {"url": server.url("/w/m.bin")}},
        "default_deployment_config_dict": {"type": "fiftyone.utils.sam.SegmentAnythingModel", "config": {}}
    }]});
    let source = manifest_source(&server, "/src.zip", &manifest);
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &source]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 1);
    let err = sandbox
        .fails(&[
            "models",
            "apply",
            "acme/sam",
            pics.to_str().unwrap(),
            "pred",
        ])
        .stderr();
    // Refused before the download, naming FiftyOne's class: a remote
    // source's entry naming a class zoo does not build is not run (built-in
    // and custom-manifest ones run through FiftyOne's class in the host).
    assert!(
        err.contains(
            "of a remote source names FiftyOne's `fiftyone.utils.sam.SegmentAnythingModel`"
        ),
        "{err}"
    );
    assert!(err.contains("ZOO_MANIFEST_PATHS"), "{err}");
    assert!(!sandbox.zoo_dir().join("acme/other/m.bin").exists());
    assert!(server.requests_to("/w/m.bin").is_empty());
    let missing = sandbox
        .fails(&["models", "apply", "acme/sam", "/no/such/dir", "pred"])
        .stderr();
    assert!(missing.contains("neither a dataset"), "{missing}");
}

#[test]
fn a_torchscript_detector_stores_detections() {
    let server = TestServer::start();
    server.file(
        "/weights/det.pt",
        fs_err::read(fixture("script_detector.pt")).unwrap(),
    );
    let manifest = serde_json::json!({"name": "acme/det", "models": [{
        "base_name": "acme/tiny-detector", "base_filename": "det.pt", "tags": ["detection"],
        "manager": {"type": "fiftyone.core.models.ModelManager", "config": {"url": server.url("/weights/det.pt")}},
        "default_deployment_config_dict": {"type": "fiftyone.utils.torch.TorchImageModel", "config": {
            "classes": ["background", "top-left", "bottom-right"], "image_min_dim": 224, "image_max_dim": 2048,
            "output_processor_cls": "fiftyone.utils.torch.DetectorOutputProcessor", "device": "cpu"
        }}
    }]});
    let source = manifest_source(&server, "/det.zip", &manifest);
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &source]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 3);
    let summary = sandbox
        .ok(&[
            "models",
            "apply",
            "acme/tiny-detector",
            pics.to_str().unwrap(),
            "boxes",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], 3);
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let export = sandbox.dir.path().join("out.jsonl");
    sandbox.ok(&["datasets", "export", &dataset, export.to_str().unwrap()]);
    let text = fs_err::read_to_string(&export).unwrap();
    let first: serde_json::Value = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|line| line.get("boxes").is_some())
        .unwrap();
    assert_eq!(first["boxes"]["_cls"], "Detections");
    assert_eq!(first["boxes"]["detections"][0]["_cls"], "Detection");
    assert_eq!(first["boxes"]["detections"][0]["label"], "top-left");
    assert_eq!(
        first["boxes"]["detections"][0]["bounding_box"],
        serde_json::json!([0.0, 0.0, 0.5, 0.5])
    );
    // A threshold above both scores leaves empty detections.
    let strict = sandbox
        .ok(&[
            "models",
            "apply",
            "acme/tiny-detector",
            &dataset,
            "strict",
            "-t",
            "0.99",
            "--json",
        ])
        .json();
    assert_eq!(strict["succeeded"], 3);
}

/// A TorchScript instance segmenter, configured as FiftyOne runs one
/// (`entrypoint_fcn: torch.jit.load`, its file the model's download), stores
/// detections with masks.
#[test]
fn a_torchscript_instance_segmenter_stores_masks() {
    let server = TestServer::start();
    server.file(
        "/weights/seg.pt",
        fs_err::read(fixture("script_segmenter.pt")).unwrap(),
    );
    let manifest = serde_json::json!({"name": "acme/seg", "models": [{
        "base_name": "acme/tiny-segmenter", "base_filename": "seg.pt", "tags": ["segmentation"],
        "manager": {"type": "fiftyone.core.models.ModelManager", "config": {"url": server.url("/weights/seg.pt")}},
        "default_deployment_config_dict": {"type": "fiftyone.utils.torch.TorchImageModel", "config": {
            "entrypoint_fcn": "torch.jit.load",
            "classes": ["background", "top-left", "bottom-right"], "image_min_dim": 224, "image_max_dim": 2048,
            "output_processor_cls": "fiftyone.utils.torch.InstanceSegmenterOutputProcessor", "device": "cpu"
        }}
    }]});
    let source = manifest_source(&server, "/seg.zip", &manifest);
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &source]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 2);
    let summary = sandbox
        .ok(&[
            "models",
            "apply",
            "acme/tiny-segmenter",
            pics.to_str().unwrap(),
            "instances",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], 2, "{summary}");
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let export = sandbox.dir.path().join("out.jsonl");
    sandbox.ok(&["datasets", "export", &dataset, export.to_str().unwrap()]);
    let text = fs_err::read_to_string(&export).unwrap();
    let mut segmented = 0;
    for line in text.lines() {
        let sample: serde_json::Value = serde_json::from_str(line).unwrap();
        // `pictures` adds a corrupt file, which fails alone.
        let Some(detections) = sample["instances"]["detections"].as_array() else {
            continue;
        };
        assert_eq!(detections.len(), 2, "{sample}");
        assert_eq!(detections[0]["label"], "top-left");
        assert!(detections[0]["mask"].is_object(), "{sample}");
        segmented += 1;
    }
    assert_eq!(segmented, 2);
}
