//! `DetectorOutputProcessor`, `InstanceSegmenterOutputProcessor`,
//! `KeypointDetectorOutputProcessor`.

use std::collections::BTreeSet;

use ndarray::{ArrayView1, ArrayView2, ArrayView3, ArrayView4};
use zoo_model_core::{Detection, Keypoint, Label};

use crate::class_name;

/// One image's raw detector output (torchvision style).
#[derive(Debug, Clone)]
pub struct DetectorOutput<'a> {
    /// `[K, 4]` absolute `x1, y1, x2, y2`.
    pub boxes: ArrayView2<'a, f32>,
    /// `[K]` class indices.
    pub labels: ArrayView1<'a, i64>,
    /// `[K]` scores.
    pub scores: ArrayView1<'a, f32>,
    /// The image `(width, height)` the boxes refer to.
    pub image_size: (u32, u32),
}

/// Boxes, labels and scores to detections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detector {
    /// Class names by index.
    pub classes: Vec<String>,
    /// Drop detections scoring below this (a NaN score is never below it,
    /// as in NumPy).
    pub confidence_thresh: Option<f32>,
    /// FiftyOne's `filter_classes`: drop detections whose label is not
    /// listed.
    pub filter_classes: Option<BTreeSet<String>>,
}

impl Detector {
    /// The kept detections' indices and their labels, as FiftyOne 1.22.1's
    /// `DetectorOutputProcessor._parse_output`: `score < confidence_thresh`
    /// drops a detection (so a NaN score stays), a label outside
    /// `filter_classes` drops it, and the box is made relative in `f32`
    /// (`np.float32` coordinates divided by an `int` size stay `float32`).
    fn detections(&self, output: &DetectorOutput<'_>) -> Vec<(usize, Detection)> {
        let (width, height) = (output.image_size.0 as f32, output.image_size.1 as f32);
        let count = output
            .boxes
            .nrows()
            .min(output.labels.len())
            .min(output.scores.len());
        (0..count)
            .filter_map(|k| {
                let score = output.scores[k];
                if self
                    .confidence_thresh
                    .is_some_and(|threshold| score < threshold)
                {
                    return None;
                }
                let label = usize::try_from(output.labels[k]).map_or_else(
                    |_| output.labels[k].to_string(),
                    |index| class_name(&self.classes, index),
                );
                if self
                    .filter_classes
                    .as_ref()
                    .is_some_and(|classes| !classes.contains(&label))
                {
                    return None;
                }
                let [x1, y1, x2, y2] = [0, 1, 2, 3].map(|i| output.boxes[[k, i]]);
                let bounding_box = [
                    x1 / width,
                    y1 / height,
                    (x2 - x1) / width,
                    (y2 - y1) / height,
                ]
                .map(f64::from);
                Some((
                    k,
                    Detection {
                        label,
                        bounding_box,
                        confidence: Some(f64::from(score)),
                        mask: None,
                    },
                ))
            })
            .collect()
    }

    /// The detections of one image.
    pub fn process(&self, output: &DetectorOutput<'_>) -> Label {
        Label::Detections(
            self.detections(output)
                .into_iter()
                .map(|(_, detection)| detection)
                .collect(),
        )
    }
}

/// A detector whose detections carry instance masks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceSegmenter {
    /// The box part.
    pub detector: Detector,
    /// Mask values above this are foreground (FiftyOne's default 0.5).
    pub mask_thresh: f32,
}

/// Python's slice bounds `[start:stop]` on a sequence of `len`: negative
/// indices count from the end, both are clamped to `0..=len`.
fn slice_bounds(start: i64, stop: i64, len: usize) -> (usize, usize) {
    let len = len as i64;
    let normal = |index: i64| {
        let index = if index < 0 { index + len } else { index };
        index.clamp(0, len) as usize
    };
    let (start, stop) = (normal(start), normal(stop));
    (start, stop.max(start))
}

/// NumPy's `int(round(value))` on a `float32` (half to even); NaN and
/// infinities, which NumPy cannot make an `int` of, give `None`.
fn round_index(value: f32) -> Option<i64> {
    value.is_finite().then(|| value.round_ties_even() as i64)
}

impl InstanceSegmenter {
    /// Detections with masks `[K, 1, H, W]` (image-sized) cropped to boxes.
    pub fn process(&self, output: &DetectorOutput<'_>, masks: ArrayView4<'_, f32>) -> Label {
        let (height, width) = (masks.shape()[2], masks.shape()[3]);
        self.process_with(output, (height, width), |k, row, column| {
            masks[[k, 0, row, column]]
        })
    }

    /// Detections with masks given as a function: `mask(k, row, column)`
    /// is detection `k`'s (image-sized, `height` x `width`) mask value at
    /// that pixel, so a backend need not materialise whole-image masks.
    /// As FiftyOne 1.22.1's `InstanceSegmenterOutputProcessor`: each mask is
    /// cropped to `[int(round(y1)):int(round(y2)), int(round(x1)):int(round(x2))]`
    /// of the absolute `float32` box (NumPy's rounding, half to even, and
    /// Python's slicing) and binarised with `mask > mask_thresh`.
    pub fn process_with(
        &self,
        output: &DetectorOutput<'_>,
        (height, width): (usize, usize),
        mask: impl Fn(usize, usize, usize) -> f32,
    ) -> Label {
        let detections = self
            .detector
            .detections(output)
            .into_iter()
            .map(|(k, mut detection)| {
                let [x1, y1, x2, y2] = [0, 1, 2, 3].map(|i| output.boxes[[k, i]]);
                let bounds = [y1, y2, x1, x2].map(round_index);
                let (rows, columns) = match bounds {
                    [Some(y1), Some(y2), Some(x1), Some(x2)] => {
                        (slice_bounds(y1, y2, height), slice_bounds(x1, x2, width))
                    }
                    _ => ((0, 0), (0, 0)),
                };
                let (crop_h, crop_w) = (rows.1 - rows.0, columns.1 - columns.0);
                let mut bits = Vec::with_capacity(crop_h * crop_w);
                for row in rows.0..rows.1 {
                    for column in columns.0..columns.1 {
                        bits.push(u8::from(mask(k, row, column) > self.mask_thresh));
                    }
                }
                detection.mask = Some((crop_h, crop_w, bits));
                detection
            })
            .collect();
        Label::Detections(detections)
    }
}

/// A detector whose detections come with keypoints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeypointDetector {
    /// The box part.
    pub detector: Detector,
}

impl KeypointDetector {
    /// Detections and keypoints `[K, P, 3]` (`x, y, visibility`) with raw
    /// per-point scores `[K, P]` (torchvision's `keypoints_scores`
    /// logits), as `(Detections, Keypoints)`, as FiftyOne 1.22.1's
    /// `KeypointDetectorOutputProcessor`: a point's confidence is the
    /// `float32` sigmoid of its score; a point whose confidence is below a
    /// (non-zero) `confidence_thresh`, or whose visibility is 0, is
    /// `(NaN, NaN)`; others are relative, divided in `float32`.
    pub fn process(
        &self,
        output: &DetectorOutput<'_>,
        keypoints: ArrayView3<'_, f32>,
        keypoint_scores: Option<ArrayView2<'_, f32>>,
    ) -> (Label, Label) {
        let (width, height) = (output.image_size.0 as f32, output.image_size.1 as f32);
        let threshold = self
            .detector
            .confidence_thresh
            .filter(|threshold| *threshold != 0.0);
        let kept = self.detector.detections(output);
        let points = kept
            .iter()
            .map(|(k, detection)| {
                let count = keypoints.shape()[1];
                let confidence: Option<Vec<f32>> = keypoint_scores.map(|scores| {
                    (0..scores.shape()[1])
                        .map(|p| 1.0 / (1.0 + (-scores[[*k, p]]).exp()))
                        .collect()
                });
                Keypoint {
                    label: Some(detection.label.clone()),
                    points: (0..count)
                        .map(|p| {
                            let score = confidence.as_ref().and_then(|c| c.get(p).copied());
                            let low = threshold
                                .zip(score)
                                .is_some_and(|(threshold, score)| score < threshold);
                            if low || keypoints[[*k, p, 2]] == 0.0 {
                                [f64::NAN, f64::NAN]
                            } else {
                                [
                                    f64::from(keypoints[[*k, p, 0]] / width),
                                    f64::from(keypoints[[*k, p, 1]] / height),
                                ]
                            }
                        })
                        .collect(),
                    confidence: confidence
                        .map(|values| values.into_iter().map(f64::from).collect()),
                }
            })
            .collect();
        (
            Label::Detections(kept.into_iter().map(|(_, detection)| detection).collect()),
            Label::Keypoints(points),
        )
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array4, array};

    use super::*;

    fn output<'a>(
        boxes: &'a ndarray::Array2<f32>,
        labels: &'a ndarray::Array1<i64>,
        scores: &'a ndarray::Array1<f32>,
    ) -> DetectorOutput<'a> {
        DetectorOutput {
            boxes: boxes.view(),
            labels: labels.view(),
            scores: scores.view(),
            image_size: (200, 100),
        }
    }

    #[test]
    fn boxes_become_relative_and_thresholds_filter() {
        let boxes = array![
            [20.0f32, 10.0, 120.0, 60.0],
            [0.0, 0.0, 10.0, 10.0],
            [-20.0, 90.0, 220.0, 130.0]
        ];
        let labels = array![1i64, 0, 7];
        let scores = array![0.9f32, 0.2, f32::NAN];
        let processor = Detector {
            classes: vec!["bg".into(), "person".into()],
            confidence_thresh: Some(0.5),
            ..Detector::default()
        };
        let Label::Detections(found) = processor.process(&output(&boxes, &labels, &scores)) else {
            panic!()
        };
        // FiftyOne: `score < confidence_thresh` is False for NaN, so a NaN
        // score is kept.
        assert_eq!(found.len(), 2, "the low score is dropped, the NaN one kept");
        assert_eq!(found[0].label, "person");
        let relative = |value: f32| f64::from(value);
        assert_eq!(
            found[0].bounding_box,
            [relative(0.1), relative(0.1), relative(0.5), relative(0.5)]
        );
        // Without a threshold: all kept; boxes outside the image stay as
        // FiftyOne computes them (no clamping); unknown classes by index.
        let open = Detector {
            classes: vec!["bg".into(), "person".into()],
            ..Detector::default()
        };
        let Label::Detections(all) = open.process(&output(&boxes, &labels, &scores)) else {
            panic!()
        };
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].label, "7");
        assert_eq!(all[2].bounding_box, [-0.1f32, 0.9, 1.2, 0.4].map(f64::from));
    }

    /// FiftyOne 1.22.1 `DetectorOutputProcessor`: a label outside
    /// `filter_classes` is dropped.
    #[test]
    fn filter_classes_drops_other_labels() {
        let boxes = array![[20.0f32, 10.0, 120.0, 60.0], [0.0, 0.0, 10.0, 10.0]];
        let labels = array![1i64, 0];
        let scores = array![0.9f32, 0.8];
        let processor = Detector {
            classes: vec!["bg".into(), "person".into()],
            filter_classes: Some(["person".to_owned()].into()),
            ..Detector::default()
        };
        let Label::Detections(found) = processor.process(&output(&boxes, &labels, &scores)) else {
            panic!()
        };
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].label, "person");
    }

    #[test]
    fn no_detections_is_an_empty_label() {
        let boxes = ndarray::Array2::<f32>::zeros((0, 4));
        let labels = ndarray::Array1::<i64>::zeros(0);
        let scores = ndarray::Array1::<f32>::zeros(0);
        assert_eq!(
            Detector::default().process(&output(&boxes, &labels, &scores)),
            Label::Detections(vec![])
        );
    }

    /// FiftyOne's masks are image-sized: a 8x4 image's box [2, 1, 6, 3]
    /// crops rows 1..3 and columns 2..6, binarised with `> mask_thresh`.
    #[test]
    fn instance_masks_are_cropped_and_binarised() {
        let boxes = array![[2.0f32, 1.0, 6.0, 3.0]];
        let labels = array![0i64];
        let scores = array![1.0f32];
        let mut masks = Array4::<f32>::zeros((1, 1, 4, 8));
        masks[[0, 0, 1, 2]] = 0.9;
        masks[[0, 0, 2, 5]] = 0.6;
        masks[[0, 0, 2, 4]] = 0.5;
        let processor = InstanceSegmenter {
            detector: Detector::default(),
            mask_thresh: 0.5,
        };
        let output = DetectorOutput {
            boxes: boxes.view(),
            labels: labels.view(),
            scores: scores.view(),
            image_size: (8, 4),
        };
        let Label::Detections(found) = processor.process(&output, masks.view()) else {
            panic!()
        };
        let (h, w, bits) = found[0].mask.clone().unwrap();
        assert_eq!((h, w), (2, 4));
        assert_eq!(bits, vec![1, 0, 0, 0, 0, 0, 0, 1]);
    }

    /// FiftyOne 1.22.1 crops with `int(round(v))` of the absolute
    /// `float32` coordinates: NumPy rounds half to even (2.5 -> 2, 3.5 ->
    /// 4), and Python's slice clamps at the mask's edge.
    #[test]
    fn instance_masks_crop_at_numpys_rounding_of_absolute_coordinates() {
        let boxes = array![[2.5f32, 1.5, 5.5, 9.0]];
        let labels = array![0i64];
        let scores = array![1.0f32];
        let mut masks = Array4::<f32>::zeros((1, 1, 4, 8));
        masks[[0, 0, 2, 2]] = 0.9;
        masks[[0, 0, 3, 5]] = 0.9;
        let processor = InstanceSegmenter {
            detector: Detector::default(),
            mask_thresh: 0.5,
        };
        let output = DetectorOutput {
            boxes: boxes.view(),
            labels: labels.view(),
            scores: scores.view(),
            image_size: (8, 4),
        };
        let Label::Detections(found) = processor.process(&output, masks.view()) else {
            panic!()
        };
        // Rows round(1.5) = 2 .. min(9, 4) = 4, columns round(2.5) = 2 ..
        // round(5.5) = 6.
        let (h, w, bits) = found[0].mask.clone().unwrap();
        assert_eq!((h, w), (2, 4));
        assert_eq!(bits, vec![1, 0, 0, 0, 0, 0, 0, 1]);
    }

    /// FiftyOne 1.22.1's `KeypointDetectorOutputProcessor`: scores go
    /// through a sigmoid, an invisible point (`v == 0`) or one whose
    /// confidence is below `confidence_thresh` is `(NaN, NaN)`.
    #[test]
    fn keypoints_are_relative_with_sigmoid_scores_and_nan_for_hidden_points() {
        let boxes = array![[0.0f32, 0.0, 100.0, 50.0]];
        let labels = array![1i64];
        let scores = array![0.8f32];
        let keypoints = array![[[100.0f32, 50.0, 1.0], [10.0, 10.0, 0.0], [20.0, 5.0, 1.0]]];
        let point_scores = array![[2.0f32, 3.0, -2.0]];
        let processor = KeypointDetector {
            detector: Detector {
                classes: vec!["other".into(), "person".into()],
                confidence_thresh: Some(0.3),
                ..Detector::default()
            },
        };
        let (detections, points) = processor.process(
            &output(&boxes, &labels, &scores),
            keypoints.view(),
            Some(point_scores.view()),
        );
        let Label::Keypoints(points) = points else {
            panic!()
        };
        assert_eq!(points[0].label.as_deref(), Some("person"));
        assert_eq!(points[0].points[0], [0.5, 0.5]);
        // Invisible, then below the threshold (sigmoid(-2) = 0.119).
        assert!(points[0].points[1].iter().all(|v| v.is_nan()));
        assert!(points[0].points[2].iter().all(|v| v.is_nan()));
        let confidence = points[0].confidence.as_ref().unwrap();
        let sigmoid = |x: f32| f64::from(1.0 / (1.0 + (-x).exp()));
        assert_eq!(confidence, &vec![sigmoid(2.0), sigmoid(3.0), sigmoid(-2.0)]);
        assert!(matches!(detections, Label::Detections(ref found) if found.len() == 1));
    }
}
