//! YOLOv8, YOLO11, YOLOv5u, YOLO26, YOLOv10 and YOLOv9c/e detection and
//! YOLOv8, YOLO11, YOLO26 and YOLOv9c/e segmentation parity with Ultralytics 8.4.190 and FiftyOne
//! 1.22.1: the oracle (`tests/fixtures/yolo/yolo_oracle.json`, `cargo xtask
//! yolo-oracle`) ran FiftyOne's own `FiftyOneYOLOModel` and Ultralytics'
//! predictor on seeded checkpoints in Ultralytics' release format
//! (`yolov8t.pt`, `yolo11t.pt`, `yolov5tu.pt`: each generation's yaml at a
//! tiny width, committed) and on seeded full-size `yolov8{n,s,m,l,x}.pt`,
//! `yolo11{n,m}.pt` and `yolov5nu.pt` (in the cache,
//! `<cache>/zoo/yolo-oracle`, checked when present).
//!
//! Each detection must match: same label, relative box within
//! [`BOX_TOLERANCE`], confidence within [`SCORE_TOLERANCE`]. The letterbox
//! follows OpenCV's `INTER_LINEAR` exactly but for some pixels of the
//! first and last rows (off by one grey level there, `letterbox.rs`); the
//! test prints the largest differences it saw. Both sides run on one
//! thread (oneDNN's convolutions round differently over several).

use std::path::{Path, PathBuf};

use serde_json::Value;
use zoo_model_core::Image;
use zoo_torch_backend::YoloDetector;

use crate::fixtures;

/// The largest difference allowed in a relative box coordinate.
const BOX_TOLERANCE: f64 = 1e-4;

/// The largest difference allowed in a confidence.
const SCORE_TOLERANCE: f64 = 1e-4;

/// The largest difference allowed between a batch's numbers and those of
/// one picture at a time.
const BATCH_TOLERANCE: f64 = 1e-3;

/// The smallest mask IoU allowed between a batch's masks and those of one
/// picture at a time (over the part both crops hold: a box one rounding
/// apart may crop a pixel row or column more).
const BATCH_MASK_IOU: f64 = 0.95;

/// The smallest intersection over union allowed between an instance mask
/// and FiftyOne's.
const MASK_IOU: f64 = 0.99;

fn decode(path: &Path) -> Image {
    zoo_datasets::decode_image(path).unwrap()
}

/// The largest differences over one checkpoint's pictures.
#[derive(Debug, Default)]
struct Differences {
    boxes: f64,
    scores: f64,
    pixels: f64,
    detections: usize,
    /// The smallest mask IoU against FiftyOne's (1 when no masks).
    mask_iou: f64,
    /// The masks compared.
    masks: usize,
    /// The largest difference in a mask's pixel count against
    /// Ultralytics' full-size mask.
    mask_area: i64,
}

/// A mask from the oracle: `[height, width]` and the hex of its packed
/// bits (`np.packbits`, most significant bit first).
fn decode_mask(detection: &Value) -> Option<(usize, usize, Vec<u8>)> {
    let shape: [usize; 2] = serde_json::from_value(detection.get("mask_shape")?.clone()).unwrap();
    let hex = detection["mask"].as_str().unwrap();
    let packed: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&hex[index..index + 2], 16).unwrap())
        .collect();
    let count = shape[0] * shape[1];
    let bits = (0..count)
        .map(|index| (packed[index / 8] >> (7 - index % 8)) & 1)
        .collect();
    Some((shape[0], shape[1], bits))
}

/// The intersection over union of two masks of one shape (1 when both are
/// empty).
fn mask_iou(a: &[u8], b: &[u8]) -> f64 {
    let both = a
        .iter()
        .zip(b)
        .filter(|(a, b)| **a != 0 && **b != 0)
        .count();
    let either = a
        .iter()
        .zip(b)
        .filter(|(a, b)| **a != 0 || **b != 0)
        .count();
    if either == 0 {
        1.0
    } else {
        both as f64 / either as f64
    }
}

/// Runs `weights` on every picture of `oracle` (one checkpoint's entry)
/// and checks zoo's detections against FiftyOne's and Ultralytics'.
fn check(weights: &Path, pictures: &Path, oracle: &Value) -> Differences {
    // The oracle ran on one thread: oneDNN's convolutions round
    // differently when split over threads (2e-5 in scores with two).
    tch::set_num_threads(1);
    let detector = YoloDetector::load(weights).unwrap();
    let mut seen = Differences {
        mask_iou: 1.0,
        ..Differences::default()
    };
    let fiftyone = oracle["fiftyone"].as_object().unwrap();
    for (picture, expected) in fiftyone {
        let image = decode(&pictures.join(picture));
        let ours = detector.detect(&image).unwrap();
        let expected = expected.as_array().unwrap();
        assert_eq!(
            ours.len(),
            expected.len(),
            "{picture}: {} detections, FiftyOne has {}",
            ours.len(),
            expected.len()
        );
        for (index, (ours, theirs)) in ours.iter().zip(expected).enumerate() {
            assert_eq!(
                ours.label,
                theirs["label"].as_str().unwrap(),
                "{picture} #{index}"
            );
            let boxed: Vec<f64> = serde_json::from_value(theirs["bounding_box"].clone()).unwrap();
            for (a, b) in ours.bounding_box.iter().zip(&boxed) {
                seen.boxes = seen.boxes.max((a - b).abs());
            }
            let score = theirs["confidence"].as_f64().unwrap();
            seen.scores = seen.scores.max((ours.confidence - score).abs());
            match (decode_mask(theirs), &ours.mask) {
                (None, None) => {}
                (Some((rows, columns, expected)), Some((our_rows, our_columns, bytes))) => {
                    assert_eq!(
                        (*our_rows, *our_columns),
                        (rows, columns),
                        "{picture} #{index}: mask shape"
                    );
                    seen.mask_iou = seen.mask_iou.min(mask_iou(bytes, &expected));
                    seen.masks += 1;
                }
                (theirs, ours) => panic!(
                    "{picture} #{index}: FiftyOne's mask {:?}, ours {:?}",
                    theirs.map(|m| (m.0, m.1)),
                    ours.as_ref().map(|m| (m.0, m.1))
                ),
            }
        }
        // Ultralytics' own pixel boxes.
        let pixels = detector.detect_pixels(&image).unwrap();
        let ultralytics = &oracle["ultralytics"][picture];
        let xyxy: Vec<[f64; 4]> = serde_json::from_value(ultralytics["xyxy"].clone()).unwrap();
        let classes: Vec<i64> = serde_json::from_value(ultralytics["cls"].clone()).unwrap();
        assert_eq!(pixels.len(), xyxy.len(), "{picture}");
        for ((ours, theirs), class) in pixels.iter().zip(&xyxy).zip(&classes) {
            assert_eq!(ours.class, *class, "{picture}");
            for (a, b) in ours.xyxy.iter().zip(theirs) {
                seen.pixels = seen.pixels.max((f64::from(*a) - b).abs());
            }
        }
        if let Some(areas) = ultralytics.get("mask_areas") {
            let areas: Vec<i64> = serde_json::from_value(areas.clone()).unwrap();
            for (ours, area) in pixels.iter().zip(&areas) {
                let mask = ours
                    .mask
                    .as_ref()
                    .expect("a segmenter's detections have masks");
                let count = mask.bytes.iter().filter(|byte| **byte != 0).count() as i64;
                seen.mask_area = seen.mask_area.max((count - area).abs());
            }
        }
        seen.detections += ours.len();
    }
    assert!(
        seen.boxes <= BOX_TOLERANCE && seen.scores <= SCORE_TOLERANCE && seen.mask_iou >= MASK_IOU,
        "{}: {seen:?}",
        weights.display()
    );
    println!("{}: {seen:?}", weights.display());
    seen
}

/// Each generation's tiny seeded detector: YOLOv8 (`C2f`), YOLO11
/// (`C3k2` with `C3k` and bottleneck blocks, `C2PSA` attention, the
/// depthwise class branch), YOLOv5u (`C3`), YOLO26 (`C3k2` attention
/// blocks, SPPF with a shortcut, `reg_max` 1, one-to-one branches unused)
/// YOLOv10 (`SCDown`, `PSA`, `C2fCIB` with `RepVGGDW`, `v10Detect`) and
/// YOLOv9c (`RepNCSPELAN4` with `RepConv`s, `ADown`, `SPPELAN`) and
/// YOLOv9e (its `nn.Identity` input layer and second backbone fed through
/// `CBLinear` and `CBFuse`).
#[test]
fn yolo_detections_match_fiftyone_and_ultralytics() {
    let directory = fixtures().join("yolo");
    let text = fs_err::read_to_string(directory.join("yolo_oracle.json")).unwrap();
    let oracle: Value = serde_json::from_str(&text).unwrap();
    for file in [
        "yolov8t.pt",
        "yolo11t.pt",
        "yolov5tu.pt",
        "yolo26t.pt",
        "yolov10t.pt",
        "yolov9tc.pt",
        "yolov9te.pt",
    ] {
        let seen = check(&directory.join(file), &directory, &oracle[file]);
        assert!(seen.detections > 0, "{file}");
    }
}

/// YOLOv8, YOLO11, YOLO26, YOLOv9c and YOLOv9e segmentation (`Segment`:
/// mask coefficients and `Proto` prototypes; `retina_masks=True` as FiftyOne sets it): each
/// detection as above, and its mask cropped to its box as FiftyOne's
/// `to_instances` crops it with an IoU of at least [`MASK_IOU`].
#[test]
fn yolo_instances_match_fiftyone_and_ultralytics() {
    let directory = fixtures().join("yolo");
    let text = fs_err::read_to_string(directory.join("yolo_oracle.json")).unwrap();
    let oracle: Value = serde_json::from_str(&text).unwrap();
    for file in [
        "yolov8t-seg.pt",
        "yolo11t-seg.pt",
        "yolo26t-seg.pt",
        "yolov9tc-seg.pt",
        "yolov9te-seg.pt",
    ] {
        let seen = check(&directory.join(file), &directory, &oracle[file]);
        assert!(seen.masks > 0, "{file}");
    }
}

/// The seeded full-size `yolov8{n,s,m,l,x}.pt` `cargo xtask yolo-oracle`
/// writes into the cache (6 to 140 MB, not committed): every scale's
/// widths, depths and max channels from the yaml; skipped when absent.
#[test]
fn full_size_checkpoints_match_fiftyone_when_their_oracle_is_cached() {
    let Some(cache) = std::env::var_os("ZOO_YOLO_ORACLE")
        .map(PathBuf::from)
        .or_else(|| dirs_cache().map(|cache| cache.join("zoo/yolo-oracle")))
    else {
        return;
    };
    let Ok(text) = fs_err::read_to_string(cache.join("yolo_oracle.json")) else {
        println!("no cached YOLOv8 oracle under {}: skipped", cache.display());
        return;
    };
    let oracle: Value = serde_json::from_str(&text).unwrap();
    for (file, entry) in oracle.as_object().unwrap() {
        check(&cache.join(file), &fixtures().join("yolo"), entry);
    }
}

/// The user cache directory (`$XDG_CACHE_HOME`, else `~/.cache`).
fn dirs_cache() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
}

/// A checkpoint that is a state dict, or a truncated release checkpoint,
/// is an error naming the file, not a panic.
#[test]
fn yolo_rejects_what_is_not_an_ultralytics_module_tree() {
    let directory = fixtures().join("yolo");
    let temporary = tempfile::tempdir().unwrap();
    let bytes = fs_err::read(directory.join("yolov8t.pt")).unwrap();
    let truncated = temporary.path().join("truncated.pt");
    fs_err::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = YoloDetector::load(&truncated).unwrap_err().to_string();
    assert!(err.contains("truncated.pt"), "{err}");
    let clip = fixtures().join("clip/tiny_clip.pt");
    let err = YoloDetector::load(&clip).unwrap_err().to_string();
    assert!(err.contains("tiny_clip.pt"), "{err}");
}

/// FiftyOne's `FiftyOneYOLOModel` type, built by the model factory from
/// the built-in entry's config with the weights as its model file, gives
/// the oracle's detections through its own preprocessing; the config's
/// `confidence_thresh` and `filter_classes` apply as FiftyOne applies them,
/// and `classes` is refused by name.
#[test]
fn the_fiftyone_yolo_model_type_gives_fiftyones_detections() {
    use zoo_model_core::{Label, ModelFactory, ModelSpec, Prediction};

    tch::set_num_threads(1);
    let directory = fixtures().join("yolo");
    let text = fs_err::read_to_string(directory.join("yolo_oracle.json")).unwrap();
    let oracle: Value = serde_json::from_str(&text).unwrap();
    let expected = &oracle["yolov8t.pt"]["fiftyone"];
    let mut factory = ModelFactory::new();
    zoo_torch_backend::register(&mut factory);
    let config = serde_json::json!({
        "entrypoint_fcn": "ultralytics.YOLO",
        "entrypoint_args": {"model": "yolov8n.pt"},
        "output_processor_cls": "fiftyone.utils.ultralytics.UltralyticsDetectionOutputProcessor",
    });
    let spec = |config: Value| ModelSpec {
        kind: "fiftyone.utils.ultralytics.FiftyOneYOLOModel".into(),
        config: config.as_object().unwrap().clone(),
        model_path: Some(directory.join("yolov8t.pt")),
    };
    let run = |config: Value| -> Vec<(String, Vec<zoo_model_core::Detection>)> {
        let mut model = factory.build(&spec(config)).unwrap();
        let preprocess = model.preprocessor();
        expected
            .as_object()
            .unwrap()
            .keys()
            .map(|file| {
                let input = preprocess
                    .preprocess(decode(&directory.join(file)))
                    .unwrap();
                let prediction = model.predict_all(&[input]).unwrap().remove(0);
                let Prediction::Label(Some(Label::Detections(detections))) = prediction else {
                    panic!("{file}: {prediction:?}");
                };
                (file.clone(), detections)
            })
            .collect()
    };
    for (file, ours) in run(config.clone()) {
        let theirs = expected[file.as_str()].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        for (ours, theirs) in ours.iter().zip(theirs) {
            assert_eq!(ours.label, theirs["label"].as_str().unwrap(), "{file}");
            let boxed: Vec<f64> = serde_json::from_value(theirs["bounding_box"].clone()).unwrap();
            for (a, b) in ours.bounding_box.iter().zip(&boxed) {
                assert!((a - b).abs() <= BOX_TOLERANCE, "{file}: {a} vs {b}");
            }
            let score = theirs["confidence"].as_f64().unwrap();
            assert!(
                (ours.confidence.unwrap() - score).abs() <= SCORE_TOLERANCE,
                "{file}"
            );
        }
    }
    // A higher threshold keeps exactly the oracle's detections above it;
    // `filter_classes` keeps only the named labels.
    let mut strict = config.clone();
    strict["confidence_thresh"] = serde_json::json!(0.6);
    strict["filter_classes"] = serde_json::json!(["cake", "car", "horse"]);
    for (file, ours) in run(strict) {
        let kept: Vec<&Value> = expected[file.as_str()]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["confidence"].as_f64().unwrap() > 0.6)
            .filter(|d| ["cake", "car", "horse"].contains(&d["label"].as_str().unwrap()))
            .collect();
        let labels: Vec<&str> = ours.iter().map(|d| d.label.as_str()).collect();
        let want: Vec<&str> = kept.iter().map(|d| d["label"].as_str().unwrap()).collect();
        assert_eq!(labels, want, "{file}");
    }
    let mut refused = config;
    refused["classes"] = serde_json::json!(["person"]);
    let Err(err) = factory.build(&spec(refused)) else {
        panic!("`classes` was accepted");
    };
    let err = err.to_string();
    assert!(err.contains("`classes`"), "{err}");
}

/// FiftyOne's `FiftyOneYOLOModel` with the segmentation output processor
/// (`yolov8n-seg-coco-torch`'s config) gives the oracle's instances, masks
/// included; the detection processor on the same segmenter gives the same
/// boxes without masks; the segmentation processor on a detector gives no
/// detections (FiftyOne's `to_instances` of results without masks); a
/// processor zoo does not run is refused by name, and so are the pose and
/// OBB processors on a model without keypoints or oriented boxes.
#[test]
fn the_fiftyone_yolo_model_type_gives_fiftyones_instances() {
    use zoo_model_core::{Label, ModelFactory, ModelSpec, Prediction};

    tch::set_num_threads(1);
    let directory = fixtures().join("yolo");
    let text = fs_err::read_to_string(directory.join("yolo_oracle.json")).unwrap();
    let oracle: Value = serde_json::from_str(&text).unwrap();
    let expected = &oracle["yolov8t-seg.pt"]["fiftyone"];
    let mut factory = ModelFactory::new();
    zoo_torch_backend::register(&mut factory);
    let spec = |processor: &str, weights: &str| ModelSpec {
        kind: "fiftyone.utils.ultralytics.FiftyOneYOLOModel".into(),
        config: serde_json::json!({
            "entrypoint_fcn": "ultralytics.YOLO",
            "entrypoint_args": {"model": "yolov8n-seg.pt"},
            "output_processor_cls": format!("fiftyone.utils.ultralytics.{processor}"),
        })
        .as_object()
        .unwrap()
        .clone(),
        model_path: Some(directory.join(weights)),
    };
    let run = |processor: &str, weights: &str, file: &str| -> Vec<zoo_model_core::Detection> {
        let mut model = factory.build(&spec(processor, weights)).unwrap();
        let input = model
            .preprocessor()
            .preprocess(decode(&directory.join(file)))
            .unwrap();
        let prediction = model.predict_all(&[input]).unwrap().remove(0);
        let Prediction::Label(Some(Label::Detections(detections))) = prediction else {
            panic!("{file}: {prediction:?}");
        };
        detections
    };
    let mut masks = 0;
    for (file, theirs) in expected.as_object().unwrap() {
        let theirs = theirs.as_array().unwrap();
        let ours = run(
            "UltralyticsSegmentationOutputProcessor",
            "yolov8t-seg.pt",
            file,
        );
        assert_eq!(ours.len(), theirs.len(), "{file}");
        for (ours, theirs) in ours.iter().zip(theirs) {
            assert_eq!(ours.label, theirs["label"].as_str().unwrap(), "{file}");
            let (rows, columns, bytes) = decode_mask(theirs).unwrap();
            let (our_rows, our_columns, our_bytes) = ours.mask.as_ref().unwrap();
            assert_eq!((*our_rows, *our_columns), (rows, columns), "{file}");
            assert!(mask_iou(our_bytes, &bytes) >= MASK_IOU, "{file}");
            masks += 1;
        }
        let boxes = run(
            "UltralyticsDetectionOutputProcessor",
            "yolov8t-seg.pt",
            file,
        );
        assert_eq!(boxes.len(), theirs.len(), "{file}");
        assert!(boxes.iter().all(|detection| detection.mask.is_none()));
        assert!(run("UltralyticsSegmentationOutputProcessor", "yolov8t.pt", file).is_empty());
    }
    assert!(masks > 0);
    let Err(err) = factory.build(&spec(
        "YOLOEVPSegmentationOutputProcessor",
        "yolov8t-seg.pt",
    )) else {
        panic!("the YOLOE visual prompt processor was accepted");
    };
    let err = err.to_string();
    assert!(
        err.contains("`YOLOEVPSegmentationOutputProcessor`"),
        "{err}"
    );
    // The OBB processor on a model without oriented boxes is refused.
    let Err(err) = factory.build(&spec("UltralyticsOBBOutputProcessor", "yolov8t-seg.pt")) else {
        panic!("the OBB processor was accepted on a segmenter");
    };
    let err = err.to_string();
    assert!(err.contains("oriented boxes"), "{err}");
    // The pose processor on a model without keypoints is refused.
    let Err(err) = factory.build(&spec("UltralyticsPoseOutputProcessor", "yolov8t-seg.pt")) else {
        panic!("the pose processor was accepted on a segmenter");
    };
    let err = err.to_string();
    assert!(err.contains("no keypoint head"), "{err}");
}

/// YOLO26 classification (`Classify` head) with FiftyOne's
/// `UltralyticsClassificationOutputProcessor`: pictures letterboxed to the
/// checkpoint's `train_args.imgsz` (224), the most probable class and its
/// probability, and every probability as the logits (FiftyOne's
/// `_predict_all` always stores them), each within [`SCORE_TOLERANCE`] of
/// FiftyOne's and of Ultralytics' `Results.probs`.
#[test]
fn yolo_classifications_match_fiftyone_and_ultralytics() {
    use zoo_model_core::{Label, ModelFactory, ModelSpec, Prediction};

    tch::set_num_threads(1);
    let directory = fixtures().join("yolo");
    let text = fs_err::read_to_string(directory.join("yolo_oracle.json")).unwrap();
    let oracle: Value = serde_json::from_str(&text).unwrap();
    let oracle = &oracle["yolo26t-cls.pt"];
    let weights = directory.join("yolo26t-cls.pt");
    let detector = YoloDetector::load(&weights).unwrap();
    assert!(detector.classifies());
    assert_eq!(detector.size(), 224);
    let mut factory = ModelFactory::new();
    zoo_torch_backend::register(&mut factory);
    let spec = |processor: &str| ModelSpec {
        kind: "fiftyone.utils.ultralytics.FiftyOneYOLOModel".into(),
        config: serde_json::json!({
            "entrypoint_fcn": "ultralytics.YOLO",
            "entrypoint_args": {"model": "yolo26n-cls.pt"},
            "output_processor_cls": format!("fiftyone.utils.ultralytics.{processor}"),
        })
        .as_object()
        .unwrap()
        .clone(),
        model_path: Some(weights.clone()),
    };
    let mut model = factory
        .build(&spec("UltralyticsClassificationOutputProcessor"))
        .unwrap();
    let mut largest: f64 = 0.0;
    for (file, theirs) in oracle["fiftyone"].as_object().unwrap() {
        let image = decode(&directory.join(file));
        let probabilities = detector
            .classify_letterboxed(&detector.letterboxed(&image).unwrap())
            .unwrap();
        let ultralytics: Vec<f64> =
            serde_json::from_value(oracle["ultralytics"][file]["probs"].clone()).unwrap();
        assert_eq!(probabilities.len(), ultralytics.len(), "{file}");
        for (ours, theirs) in probabilities.iter().zip(&ultralytics) {
            largest = largest.max((f64::from(*ours) - theirs).abs());
        }
        let input = model.preprocessor().preprocess(image).unwrap();
        let prediction = model.predict_all(&[input]).unwrap().remove(0);
        let Prediction::Label(Some(Label::Classification {
            label,
            confidence,
            logits,
        })) = prediction
        else {
            panic!("{file}: {prediction:?}");
        };
        assert_eq!(label, theirs["label"].as_str().unwrap(), "{file}");
        let score = theirs["confidence"].as_f64().unwrap();
        largest = largest.max((confidence.unwrap() - score).abs());
        let expected: Vec<f64> = serde_json::from_value(theirs["logits"].clone()).unwrap();
        for (ours, theirs) in logits.unwrap().iter().zip(&expected) {
            largest = largest.max((f64::from(*ours) - theirs).abs());
        }
    }
    println!("yolo26t-cls.pt: largest difference {largest:e}");
    assert!(largest <= SCORE_TOLERANCE, "{largest}");
    // A detection processor on a classifier is refused, naming both.
    let Err(err) = factory.build(&spec("UltralyticsDetectionOutputProcessor")) else {
        panic!("a detection processor on a classifier was accepted");
    };
    let err = err.to_string();
    assert!(err.contains("classifier"), "{err}");
}

/// The largest difference allowed in a relative keypoint coordinate.
const KEYPOINT_TOLERANCE: f64 = 1e-3;

/// YOLO26 pose (`Pose26` head: keypoints decoded around the anchors,
/// visibilities through the sigmoid; its one-to-one, sigma and flow
/// branches unused) with FiftyOne's `UltralyticsPoseOutputProcessor`:
/// every box's keypoints relative to the image within
/// [`KEYPOINT_TOLERANCE`] of FiftyOne's and their visibilities within
/// [`SCORE_TOLERANCE`], the boxes within [`BOX_TOLERANCE`] of Ultralytics'
/// pixels relative to the image.
#[test]
fn yolo_keypoints_match_fiftyone_and_ultralytics() {
    use zoo_model_core::{Label, ModelFactory, ModelSpec, Prediction};

    tch::set_num_threads(1);
    let directory = fixtures().join("yolo");
    let text = fs_err::read_to_string(directory.join("yolo_oracle.json")).unwrap();
    let oracle: Value = serde_json::from_str(&text).unwrap();
    let oracle = &oracle["yolo26t-pose.pt"];
    let weights = directory.join("yolo26t-pose.pt");
    let detector = YoloDetector::load(&weights).unwrap();
    assert!(detector.poses());
    let mut factory = ModelFactory::new();
    zoo_torch_backend::register(&mut factory);
    let spec = ModelSpec {
        kind: "fiftyone.utils.ultralytics.FiftyOneYOLOModel".into(),
        config: serde_json::json!({
            "entrypoint_fcn": "ultralytics.YOLO",
            "entrypoint_args": {"model": "yolo26n-pose.pt"},
            "output_processor_cls": "fiftyone.utils.ultralytics.UltralyticsPoseOutputProcessor",
        })
        .as_object()
        .unwrap()
        .clone(),
        model_path: Some(weights.clone()),
    };
    let mut model = factory.build(&spec).unwrap();
    let (mut points, mut visibilities, mut pixels, mut sets) = (0.0_f64, 0.0_f64, 0.0_f64, 0);
    for (file, theirs) in oracle["fiftyone"].as_object().unwrap() {
        let image = decode(&directory.join(file));
        let found = detector.detect_pixels(&image).unwrap();
        let xyxy: Vec<[f64; 4]> =
            serde_json::from_value(oracle["ultralytics"][file]["xyxy"].clone()).unwrap();
        assert_eq!(found.len(), xyxy.len(), "{file}");
        for (ours, theirs) in found.iter().zip(&xyxy) {
            for (a, b) in ours.xyxy.iter().zip(theirs) {
                pixels = pixels.max((f64::from(*a) - b).abs());
            }
        }
        let input = model.preprocessor().preprocess(image).unwrap();
        let prediction = model.predict_all(&[input]).unwrap().remove(0);
        let Prediction::Label(Some(Label::Keypoints(ours))) = prediction else {
            panic!("{file}: {prediction:?}");
        };
        let theirs = theirs.as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        for (ours, theirs) in ours.iter().zip(theirs) {
            assert_eq!(ours.label.as_deref(), theirs["label"].as_str(), "{file}");
            let expected: Vec<[f64; 2]> = serde_json::from_value(theirs["points"].clone()).unwrap();
            assert_eq!(ours.points.len(), expected.len(), "{file}");
            for (a, b) in ours.points.iter().zip(&expected) {
                points = points.max((a[0] - b[0]).abs()).max((a[1] - b[1]).abs());
            }
            let expected: Vec<f64> = serde_json::from_value(theirs["confidence"].clone()).unwrap();
            for (a, b) in ours.confidence.as_ref().unwrap().iter().zip(&expected) {
                visibilities = visibilities.max((a - b).abs());
            }
            sets += 1;
        }
    }
    println!(
        "yolo26t-pose.pt: {sets} keypoint sets, largest differences: points {points:e}, visibilities {visibilities:e}, pixel boxes {pixels:e}"
    );
    assert!(sets > 0);
    assert!(points <= KEYPOINT_TOLERANCE, "{points}");
    assert!(visibilities <= SCORE_TOLERANCE, "{visibilities}");
    assert!(pixels <= 1e-3, "{pixels}");
}

/// The largest difference allowed in a relative OBB corner coordinate.
const CORNER_TOLERANCE: f64 = 1e-4;

/// YOLOv8 oriented boxes (`OBB` head: the angle branch, `dist2rbox`;
/// Ultralytics' rotated NMS with `batch_probiou`; `imgsz` 1024 from the
/// checkpoint) with FiftyOne's `UltralyticsOBBOutputProcessor`: each box's
/// corners relative to the image within [`CORNER_TOLERANCE`] of FiftyOne's
/// polylines, its score within [`SCORE_TOLERANCE`], and its `xywhr`
/// within 1e-3 pixels of Ultralytics'.
#[test]
fn yolo_oriented_boxes_match_fiftyone_and_ultralytics() {
    use zoo_model_core::{Label, ModelFactory, ModelSpec, Prediction};

    tch::set_num_threads(1);
    let directory = fixtures().join("yolo");
    let text = fs_err::read_to_string(directory.join("yolo_oracle.json")).unwrap();
    let oracle: Value = serde_json::from_str(&text).unwrap();
    let oracle = &oracle["yolov8t-obb.pt"];
    let weights = directory.join("yolov8t-obb.pt");
    let detector = YoloDetector::load(&weights).unwrap();
    assert!(detector.rotates());
    assert_eq!(detector.size(), 1024);
    let mut factory = ModelFactory::new();
    zoo_torch_backend::register(&mut factory);
    let spec = ModelSpec {
        kind: "fiftyone.utils.ultralytics.FiftyOneYOLOModel".into(),
        config: serde_json::json!({
            "entrypoint_fcn": "ultralytics.YOLO",
            "entrypoint_args": {"model": "yolov8n-obb.pt"},
            "output_processor_cls": "fiftyone.utils.ultralytics.UltralyticsOBBOutputProcessor",
        })
        .as_object()
        .unwrap()
        .clone(),
        model_path: Some(weights.clone()),
    };
    let mut model = factory.build(&spec).unwrap();
    let (mut corners, mut scores, mut pixels, mut shapes) = (0.0_f64, 0.0_f64, 0.0_f64, 0);
    for (file, theirs) in oracle["fiftyone"].as_object().unwrap() {
        let image = decode(&directory.join(file));
        let found = detector.detect_pixels(&image).unwrap();
        let xywhr: Vec<[f64; 5]> =
            serde_json::from_value(oracle["ultralytics"][file]["xywhr"].clone()).unwrap();
        assert_eq!(found.len(), xywhr.len(), "{file}");
        for (ours, theirs) in found.iter().zip(&xywhr) {
            for (a, b) in ours.xywhr.unwrap().iter().zip(theirs) {
                pixels = pixels.max((f64::from(*a) - b).abs());
            }
        }
        let input = model.preprocessor().preprocess(image).unwrap();
        let prediction = model.predict_all(&[input]).unwrap().remove(0);
        let Prediction::Label(Some(Label::Polylines(ours))) = prediction else {
            panic!("{file}: {prediction:?}");
        };
        let theirs = theirs.as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        for (ours, theirs) in ours.iter().zip(theirs) {
            assert_eq!(ours.label.as_deref(), theirs["label"].as_str(), "{file}");
            assert!(ours.closed && !ours.filled, "{file}");
            let expected: Vec<Vec<[f64; 2]>> =
                serde_json::from_value(theirs["points"].clone()).unwrap();
            assert_eq!(ours.points.len(), expected.len(), "{file}");
            for (a, b) in ours.points.iter().flatten().zip(expected.iter().flatten()) {
                corners = corners.max((a[0] - b[0]).abs()).max((a[1] - b[1]).abs());
            }
            let score = theirs["confidence"].as_f64().unwrap();
            scores = scores.max((ours.confidence.unwrap() - score).abs());
            shapes += 1;
        }
    }
    println!(
        "yolov8t-obb.pt: {shapes} oriented boxes, largest differences: corners {corners:e}, scores {scores:e}, xywhr {pixels:e}"
    );
    assert!(shapes > 0);
    assert!(corners <= CORNER_TOLERANCE, "{corners}");
    assert!(scores <= SCORE_TOLERANCE, "{scores}");
    assert!(pixels <= 1e-3, "{pixels}");
}

/// `predict_all` runs a whole batch in one forward: every task's labels on
/// the four pictures in one call are those of one picture per call (which
/// the tests above hold to FiftyOne's): the same labels, numbers within
/// [`BATCH_TOLERANCE`] (boxes, scores, keypoints, corners, logits) and
/// masks with IoU of at least [`MASK_IOU`]. oneDNN picks its convolution
/// kernels by batch size, so the sums round differently: the largest
/// differences are printed (FiftyOne's own `apply_model` batches too;
/// Ultralytics' own `predict` on a batch of four against one picture per
/// call moves relative boxes by up to 3.7e-4 and keypoints by up to 2.4e-4
/// on these checkpoints, BENCHMARKS.md).
#[test]
fn a_batch_gives_the_labels_of_one_picture_at_a_time() {
    use zoo_model_core::{Label, ModelFactory, ModelSpec, Prediction};

    tch::set_num_threads(1);
    let directory = fixtures().join("yolo");
    let mut factory = ModelFactory::new();
    zoo_torch_backend::register(&mut factory);
    let pictures: Vec<PathBuf> = ["96x64", "50x83", "121x121", "200x37"]
        .iter()
        .enumerate()
        .map(|(index, size)| directory.join(format!("image_{index}_{size}.png")))
        .collect();
    // The largest difference in numbers; strings, booleans and nulls
    // equal but for the labels' ids.
    fn close(a: &Value, b: &Value, at: &str) -> f64 {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                (x.as_f64().unwrap() - y.as_f64().unwrap()).abs()
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}");
                x.iter()
                    .zip(y)
                    .enumerate()
                    .map(|(index, (x, y))| close(x, y, &format!("{at}[{index}]")))
                    .fold(0.0, f64::max)
            }
            (Value::Object(x), Value::Object(y)) => {
                assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
                // Every label gets a new `_id`.
                x.iter()
                    .filter(|(key, _)| *key != "_id")
                    .map(|(key, value)| close(value, &y[key], &format!("{at}.{key}")))
                    .fold(0.0, f64::max)
            }
            _ => {
                assert_eq!(a, b, "{at}");
                0.0
            }
        }
    }
    let mut compared = 0;
    for (weights, processor) in [
        ("yolov8t.pt", "UltralyticsDetectionOutputProcessor"),
        ("yolo26t.pt", "UltralyticsDetectionOutputProcessor"),
        ("yolo11t-seg.pt", "UltralyticsSegmentationOutputProcessor"),
        ("yolo26t-cls.pt", "UltralyticsClassificationOutputProcessor"),
        ("yolo26t-pose.pt", "UltralyticsPoseOutputProcessor"),
        ("yolov8t-obb.pt", "UltralyticsOBBOutputProcessor"),
    ] {
        let spec = ModelSpec {
            kind: "fiftyone.utils.ultralytics.FiftyOneYOLOModel".into(),
            config: serde_json::json!({
                "output_processor_cls": format!("fiftyone.utils.ultralytics.{processor}"),
            })
            .as_object()
            .unwrap()
            .clone(),
            model_path: Some(directory.join(weights)),
        };
        let mut model = factory.build(&spec).unwrap();
        let preprocess = model.preprocessor();
        let inputs: Vec<_> = pictures
            .iter()
            .map(|path| preprocess.preprocess(decode(path)).unwrap())
            .collect();
        let batched = model.predict_all(&inputs).unwrap();
        let (mut largest, mut smallest_iou) = (0.0_f64, 1.0_f64);
        assert_eq!(batched.len(), inputs.len(), "{weights}");
        for (index, (input, batched)) in inputs.iter().zip(batched).enumerate() {
            let single = model
                .predict_all(std::slice::from_ref(input))
                .unwrap()
                .remove(0);
            let at = format!("{weights} picture {index}");
            let (Prediction::Label(Some(single)), Prediction::Label(Some(batched))) =
                (single, batched)
            else {
                panic!("{at}: no label");
            };
            match (&single, &batched) {
                (Label::Detections(single), Label::Detections(batched)) => {
                    assert_eq!(single.len(), batched.len(), "{at}");
                    // Two scores a rounding apart may swap places: each
                    // detection against the batch's nearest of its label.
                    let mut taken = vec![false; batched.len()];
                    for a in single {
                        let distance = |b: &zoo_model_core::Detection| {
                            a.bounding_box
                                .iter()
                                .zip(&b.bounding_box)
                                .map(|(x, y)| (x - y).abs())
                                .fold(
                                    (a.confidence.unwrap() - b.confidence.unwrap()).abs(),
                                    f64::max,
                                )
                        };
                        let (index, b) = batched
                            .iter()
                            .enumerate()
                            .filter(|(index, b)| !taken[*index] && b.label == a.label)
                            .min_by(|(_, x), (_, y)| distance(x).total_cmp(&distance(y)))
                            .unwrap_or_else(|| panic!("{at}: no `{}` left", a.label));
                        taken[index] = true;
                        largest = largest.max(distance(b));
                        match (&a.mask, &b.mask) {
                            (Some((rows, columns, x)), Some((other_rows, other_columns, y))) => {
                                // A box edge a rounding from a pixel's
                                // edge crops one pixel more or less.
                                assert!(rows.abs_diff(*other_rows) <= 1, "{at}");
                                assert!(columns.abs_diff(*other_columns) <= 1, "{at}");
                                let (common_rows, common_columns) =
                                    (*rows.min(other_rows), *columns.min(other_columns));
                                let crop = |mask: &[u8], width: usize| -> Vec<u8> {
                                    (0..common_rows)
                                        .flat_map(|row| {
                                            mask[row * width..row * width + common_columns].to_vec()
                                        })
                                        .collect()
                                };
                                let iou = mask_iou(&crop(x, *columns), &crop(y, *other_columns));
                                smallest_iou = smallest_iou.min(iou);
                            }
                            (None, None) => {}
                            _ => panic!("{at}: a mask on one side only"),
                        }
                        compared += 1;
                    }
                }
                (
                    Label::Classification {
                        label,
                        confidence,
                        logits,
                    },
                    Label::Classification {
                        label: other_label,
                        confidence: other_confidence,
                        logits: other_logits,
                    },
                ) => {
                    assert_eq!(label, other_label, "{at}");
                    let (x, y) = (confidence.unwrap(), other_confidence.unwrap());
                    largest = largest.max((x - y).abs());
                    let (x, y) = (logits.as_ref().unwrap(), other_logits.as_ref().unwrap());
                    assert_eq!(x.len(), y.len(), "{at}");
                    for (x, y) in x.iter().zip(y) {
                        largest = largest.max(f64::from((x - y).abs()));
                    }
                    compared += 1;
                }
                _ => {
                    largest = largest.max(close(&single.to_json(), &batched.to_json(), &at));
                    compared += 1;
                }
            }
        }
        println!(
            "{weights}: a batch of 4 against one at a time: largest difference {largest:e}, smallest mask IoU {smallest_iou}"
        );
        assert!(largest <= BATCH_TOLERANCE, "{weights}: {largest}");
        assert!(smallest_iou >= BATCH_MASK_IOU, "{weights}: {smallest_iou}");
    }
    assert!(compared > 20, "{compared}");
}
