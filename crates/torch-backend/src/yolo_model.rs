//! `FiftyOneYOLOModel`: FiftyOne's `fiftyone.utils.ultralytics.FiftyOneYOLOModel`
//! for YOLOv5u, YOLOv8, YOLOv10, YOLO11 and YOLO26 detection
//! (`yolov5{n,s,m,l,x}-coco-torch`, `yolov8{n,s,m,l,x}-coco-torch`,
//! `yolov10{n,s,m,l,x}-coco-torch`, `yolo11{n,s,m,l,x}-coco-torch`,
//! `yolo26{n,s,m,l,x}-coco-torch`), YOLOv8, YOLO11 and YOLO26 segmentation
//! (`yolov8{n,s,m,l,x}-seg-coco-torch`, `yolo11{n,s,m,l,x}-seg-coco-torch`,
//! `yolo26{n,s,m,l,x}-seg-coco-torch`), YOLO26 classification
//! (`yolo26{n,s,m,l,x}-cls-imagenet-torch`), YOLO26 pose
//! (`yolo26{n,s,m,l,x}-pose-coco-torch`) and YOLOv8 oriented boxes
//! (`yolov8{n,s,m,l,x}-obb-dotav1-torch`), on libtorch (CPU), through the
//! `yolo` family: FiftyOne's letterbox, Ultralytics' network, NMS, box and
//! keypoint scaling and masks, and FiftyOne's `to_detections`,
//! `to_instances`, `to_keypoints`, `obb_to_polylines` or
//! `to_classifications` (as `output_processor_cls` names its processor; any
//! other processor is refused).
//!
//! The weights are the model's file (Ultralytics' release checkpoint). The
//! config's `confidence_thresh` is Ultralytics' `conf` (0.25 when unset)
//! and `filter_classes` keeps only the labels it names, as FiftyOne
//! applies them; `classes` (which re-heads YOLO-World models) and
//! Ultralytics `overrides` are refused rather than ignored.

use std::sync::Arc;

use zoo_model_core::{
    Detection, Image, Input, InputData, Keypoint, Label, Model, ModelError, ModelSpec, Polyline,
    Prediction, Preprocess,
};

use crate::config::TorchImageModelConfig;
use crate::families::yolo::{CONFIDENCE_THRESHOLD, PixelDetection, YoloDetector, letterboxed};
use crate::model::chain;

/// The type names this model answers to.
pub const YOLO_TYPE_NAMES: &[&str] = &[
    "fiftyone.utils.ultralytics.FiftyOneYOLOModel",
    "FiftyOneYOLOModel",
];

fn config_error(message: impl Into<String>) -> ModelError {
    ModelError::config(message.into())
}

/// The letterbox, on decode threads.
#[derive(Debug)]
struct Letterbox {
    size: usize,
}

impl Preprocess for Letterbox {
    fn preprocess(&self, image: Image) -> Result<Input, ModelError> {
        let size = self.size;
        let pixels =
            letterboxed(&image, size).map_err(|err| ModelError::inference(err.to_string()))?;
        Ok(Input {
            shape: [3, size, size],
            data: InputData::Pixels(pixels),
            original_size: (image.width, image.height),
        })
    }
}

/// What FiftyOne's output processor makes of Ultralytics' results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// `UltralyticsDetectionOutputProcessor` (`to_detections`): boxes,
    /// no masks.
    Detections,
    /// `UltralyticsSegmentationOutputProcessor` (`to_instances`): boxes
    /// with masks; no detections at all when the model has no masks.
    Instances,
    /// `UltralyticsOBBOutputProcessor` (`obb_to_polylines`): each rotated
    /// box as a closed, unfilled polyline of its four corners.
    Polylines,
    /// `UltralyticsPoseOutputProcessor` (`to_keypoints`): each box's
    /// keypoints, relative to the image, with their visibilities.
    Keypoints,
    /// `UltralyticsClassificationOutputProcessor` (`to_classifications`):
    /// the most probable class, with every class's probability as its
    /// logits (FiftyOne's `_predict_all` always stores them).
    Classification,
}

impl Output {
    /// The output of `output_processor_cls` (its last dotted part), or a
    /// config error naming a processor zoo's native model does not run.
    fn of(class: Option<&str>) -> Result<Output, ModelError> {
        match class.map(|class| class.rsplit('.').next().unwrap_or_default()) {
            None | Some("" | "UltralyticsDetectionOutputProcessor") => Ok(Output::Detections),
            Some("UltralyticsSegmentationOutputProcessor") => Ok(Output::Instances),
            Some("UltralyticsClassificationOutputProcessor") => Ok(Output::Classification),
            Some("UltralyticsPoseOutputProcessor") => Ok(Output::Keypoints),
            Some("UltralyticsOBBOutputProcessor") => Ok(Output::Polylines),
            Some(other) => Err(ModelError::unsupported(format!(
                "zoo's native FiftyOneYOLOModel does not run output processor `{other}` (it runs UltralyticsDetectionOutputProcessor, UltralyticsSegmentationOutputProcessor, UltralyticsPoseOutputProcessor, UltralyticsOBBOutputProcessor and UltralyticsClassificationOutputProcessor)"
            ))),
        }
    }
}

/// FiftyOne's YOLO model (see the module docs).
#[derive(Debug)]
pub struct TorchYoloModel {
    detector: YoloDetector,
    confidence: f64,
    filter_classes: Option<Vec<String>>,
    output: Output,
    /// The config's (or apply's) `confidence_thresh` as given: a
    /// classification below it is no label (`to_classifications`).
    threshold: Option<f64>,
}

impl TorchYoloModel {
    /// Builds the model a spec describes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ModelError> {
        crate::model::cpu_threads();
        let raw = &spec.config;
        let config = TorchImageModelConfig::from_map(raw)?;
        if let Some(device) = config.device.as_deref()
            && !device.is_empty()
            && device != "cpu"
        {
            tracing::warn!(device, "zoo runs FiftyOneYOLOModel on the CPU");
        }
        for refused in ["classes", "overrides"] {
            if raw.get(refused).is_some_and(|value| !value.is_null()) {
                return Err(config_error(format!(
                    "zoo's native FiftyOneYOLOModel does not take `{refused}`"
                )));
            }
        }
        let output = Output::of(config.output_processor_cls.as_deref())?;
        let model_path = config.model_path(spec.model_path.as_deref())?;
        let detector = YoloDetector::load(&model_path).map_err(|err| config_error(chain(&err)))?;
        if (output == Output::Classification) != detector.classifies() {
            return Err(config_error(format!(
                "`{}` is a {}, but `output_processor_cls` names {}",
                model_path.display(),
                if detector.classifies() {
                    "classifier"
                } else {
                    "detector"
                },
                if output == Output::Classification {
                    "a classification processor"
                } else {
                    "a detection processor"
                }
            )));
        }
        if (output == Output::Polylines) != detector.rotates() {
            return Err(config_error(format!(
                "`{}` {} oriented boxes, but `output_processor_cls` {} the OBB processor",
                model_path.display(),
                if detector.rotates() {
                    "gives"
                } else {
                    "gives no"
                },
                if detector.rotates() {
                    "does not name"
                } else {
                    "names"
                }
            )));
        }
        if output == Output::Keypoints && !detector.poses() {
            return Err(config_error(format!(
                "`{}` has no keypoint head, but `output_processor_cls` names the pose processor",
                model_path.display()
            )));
        }
        if output == Output::Instances && !detector.segments() {
            tracing::warn!(
                path = %model_path.display(),
                "the segmentation output processor on a detector gives no detections, as in FiftyOne"
            );
        }
        let confidence = config
            .confidence_thresh
            .map_or(CONFIDENCE_THRESHOLD, f64::from);
        if !(0.0..=1.0).contains(&confidence) {
            return Err(config_error(format!(
                "`confidence_thresh` must be from 0 to 1, got {confidence}"
            )));
        }
        let filter_classes = config
            .filter_classes
            .map(|classes| classes.into_iter().collect::<Vec<_>>());
        Ok(TorchYoloModel {
            detector,
            confidence,
            filter_classes,
            output,
            threshold: config.confidence_thresh.map(f64::from),
        })
    }
}

impl TorchYoloModel {
    /// FiftyOne's `to_keypoints` of a pose model's detections in an image
    /// of `width` x `height`: per box its class and its keypoints relative
    /// to the image (`keypoints.xyn`) with their visibilities; points whose
    /// visibility is below `confidence_thresh` are NaN; boxes outside
    /// `filter_classes` are left out.
    fn keypoints(&self, found: Vec<PixelDetection>, width: u32, height: u32) -> Prediction {
        let names = self.detector.names();
        let (width, height) = (width as f32, height as f32);
        let sets = found
            .into_iter()
            .filter_map(|detection| {
                let label = names.get(usize::try_from(detection.class).ok()?)?.clone();
                if self
                    .filter_classes
                    .as_ref()
                    .is_some_and(|classes| !classes.contains(&label))
                {
                    return None;
                }
                let keypoints = detection.keypoints?;
                let confidence: Option<Vec<f64>> = keypoints
                    .confidence
                    .map(|values| values.into_iter().map(f64::from).collect());
                let points = keypoints
                    .points
                    .iter()
                    .enumerate()
                    .map(|(index, [x, y])| {
                        let hidden = match (&confidence, self.threshold) {
                            (Some(confidence), Some(threshold)) => confidence[index] < threshold,
                            _ => false,
                        };
                        if hidden {
                            [f64::NAN, f64::NAN]
                        } else {
                            [f64::from(x / width), f64::from(y / height)]
                        }
                    })
                    .collect();
                Some(Keypoint {
                    label: Some(label),
                    points,
                    confidence,
                })
            })
            .collect();
        Prediction::Label(Some(Label::Keypoints(sets)))
    }

    /// FiftyOne's `obb_to_polylines` of an OBB model's detections in an
    /// image of `width` x `height`: each rotated box's corners
    /// (`obb.xyxyxyxyn`) as one closed, unfilled shape, with its class and
    /// score; boxes below `confidence_thresh` or outside `filter_classes`
    /// are left out.
    fn polylines(&self, found: Vec<PixelDetection>, width: u32, height: u32) -> Prediction {
        let names = self.detector.names();
        let (width, height) = (width as f32, height as f32);
        let shapes = found
            .into_iter()
            .filter_map(|detection| {
                let label = names.get(usize::try_from(detection.class).ok()?)?.clone();
                let confidence = f64::from(detection.confidence);
                if self
                    .threshold
                    .is_some_and(|threshold| confidence < threshold)
                    || self
                        .filter_classes
                        .as_ref()
                        .is_some_and(|classes| !classes.contains(&label))
                {
                    return None;
                }
                let [x, y, w, h, angle] = detection.xywhr?;
                let corners = crate::families::yolo::obb::corners(x, y, w, h, angle)
                    .map(|[x, y]| [f64::from(x / width), f64::from(y / height)]);
                Some(Polyline {
                    label: Some(label),
                    points: vec![corners.to_vec()],
                    confidence: Some(confidence),
                    closed: true,
                    filled: false,
                })
            })
            .collect();
        Prediction::Label(Some(Label::Polylines(shapes)))
    }

    /// FiftyOne's `to_classifications` of an image's class
    /// `probabilities`: the top class and its probability, all
    /// probabilities as logits; no label below `confidence_thresh` or
    /// outside `filter_classes`.
    fn classification(&self, probabilities: Vec<f32>) -> Result<Prediction, ModelError> {
        let failed = |err: crate::families::yolo::YoloError| ModelError::inference(chain(&err));
        let (label, score) = self.detector.top1(&probabilities).map_err(failed)?;
        let score = f64::from(score);
        if self.threshold.is_some_and(|threshold| score < threshold)
            || self
                .filter_classes
                .as_ref()
                .is_some_and(|classes| !classes.contains(&label))
        {
            return Ok(Prediction::Label(None));
        }
        Ok(Prediction::Label(Some(Label::Classification {
            label,
            confidence: Some(score),
            logits: Some(probabilities),
        })))
    }
}

impl Model for TorchYoloModel {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        Arc::new(Letterbox {
            size: self.detector.size(),
        })
    }

    /// Every input is the same square.
    fn ragged_batches(&self) -> bool {
        false
    }

    fn set_workers(&mut self, workers: usize) {
        crate::model::share_cpu_threads(workers);
    }

    fn set_confidence_thresh(&mut self, threshold: f64) -> bool {
        self.confidence = threshold;
        self.threshold = Some(threshold);
        true
    }

    /// A classifier's labels carry its class probabilities, as FiftyOne's
    /// always do.
    fn has_logits(&self) -> bool {
        self.output == Output::Classification
    }

    /// The whole batch in one forward (every input is the same
    /// letterboxed square), then each image's NMS, scaling and FiftyOne's
    /// converter.
    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        let failed = |err: crate::families::yolo::YoloError| ModelError::inference(chain(&err));
        let images = inputs
            .iter()
            .map(|input| match &input.data {
                InputData::Pixels(pixels) => Ok((
                    pixels.as_slice(),
                    input.original_size.0,
                    input.original_size.1,
                )),
                InputData::Values(_) => Err(ModelError::inference(
                    "FiftyOneYOLOModel takes letterboxed pixels".to_owned(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.output == Output::Classification {
            let pixels: Vec<&[u8]> = images.iter().map(|(pixels, _, _)| *pixels).collect();
            return self
                .detector
                .classify_letterboxed_batch(&pixels)
                .map_err(failed)?
                .into_iter()
                .map(|probabilities| self.classification(probabilities))
                .collect();
        }
        if self.output == Output::Instances && !self.detector.segments() {
            // FiftyOne's `to_instances` of results without masks.
            return Ok(inputs
                .iter()
                .map(|_| Prediction::Label(Some(Label::Detections(Vec::new()))))
                .collect());
        }
        let found = self
            .detector
            .detect_letterboxed_batch(&images, self.confidence)
            .map_err(failed)?;
        found
            .into_iter()
            .zip(&images)
            .map(|(found, (_, width, height))| self.converted(found, *width, *height))
            .collect()
    }
}

impl TorchYoloModel {
    /// FiftyOne's output processor on one image's detections.
    fn converted(
        &self,
        found: Vec<PixelDetection>,
        width: u32,
        height: u32,
    ) -> Result<Prediction, ModelError> {
        let failed = |err: crate::families::yolo::YoloError| ModelError::inference(chain(&err));
        if self.output == Output::Keypoints {
            return Ok(self.keypoints(found, width, height));
        }
        if self.output == Output::Polylines {
            return Ok(self.polylines(found, width, height));
        }
        let detections = self
            .detector
            .to_fiftyone(found, width, height)
            .map_err(failed)?
            .into_iter()
            .filter(|detection| detection.confidence >= self.confidence)
            .filter(|detection| {
                self.filter_classes
                    .as_ref()
                    .is_none_or(|classes| classes.contains(&detection.label))
            })
            .map(|detection| Detection {
                label: detection.label,
                bounding_box: detection.bounding_box,
                confidence: Some(detection.confidence),
                mask: match self.output {
                    Output::Detections
                    | Output::Classification
                    | Output::Keypoints
                    | Output::Polylines => None,
                    Output::Instances => detection.mask,
                },
            })
            .collect();
        Ok(Prediction::Label(Some(Label::Detections(detections))))
    }
}
