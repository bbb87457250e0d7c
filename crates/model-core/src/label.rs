//! FiftyOne's label types and their JSON.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::npy::npy_bytes;

/// One detection: a box relative to the image, `[x, y, w, h]` in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The class name.
    pub label: String,
    /// `[top-left x, top-left y, width, height]`, relative.
    pub bounding_box: [f64; 4],
    /// The score, when the model gives one.
    pub confidence: Option<f64>,
    /// A binary instance mask cropped to the box: `(height, width, bytes)`.
    pub mask: Option<(usize, usize, Vec<u8>)>,
}

/// One keypoint set: points relative to the image.
#[derive(Debug, Clone, PartialEq)]
pub struct Keypoint {
    /// The class name.
    pub label: String,
    /// `[x, y]` per point, relative.
    pub points: Vec<[f64; 2]>,
    /// One confidence per point.
    pub confidence: Option<Vec<f64>>,
}

/// A label, as FiftyOne's `fiftyone.core.labels` types.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// One class for the image.
    Classification {
        /// The class name.
        label: String,
        /// The probability of that class.
        confidence: Option<f64>,
        /// The raw logits, when asked to store them.
        logits: Option<Vec<f32>>,
    },
    /// Several classes.
    Classifications(Vec<Label>),
    /// Object detections.
    Detections(Vec<Detection>),
    /// Keypoint sets.
    Keypoints(Vec<Keypoint>),
    /// A semantic mask `(height, width, values)`, `u8` or `u16` class ids.
    Segmentation {
        /// Mask height.
        height: usize,
        /// Mask width.
        width: usize,
        /// Class ids, row-major.
        mask: SegmentationMask,
    },
}

/// A semantic segmentation mask's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentationMask {
    /// Up to 256 classes.
    U8(Vec<u8>),
    /// More classes.
    U16(Vec<u16>),
}

fn base64_npy(dtype: &str, shape: &[usize], data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(npy_bytes(dtype, shape, data))
}

fn finite(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

impl Detection {
    fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("_cls".into(), json!("Detection"));
        object.insert("label".into(), json!(self.label));
        object.insert(
            "bounding_box".into(),
            Value::Array(
                self.bounding_box
                    .iter()
                    .map(|value| finite(*value))
                    .collect(),
            ),
        );
        object.insert(
            "confidence".into(),
            self.confidence.map_or(Value::Null, finite),
        );
        if let Some((height, width, mask)) = &self.mask {
            object.insert(
                "mask".into(),
                json!(base64_npy("|b1", &[*height, *width], mask)),
            );
        }
        Value::Object(object)
    }
}

impl Label {
    /// The label as FiftyOne serialises it.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Classification {
                label,
                confidence,
                logits,
            } => {
                let mut object = Map::new();
                object.insert("_cls".into(), json!("Classification"));
                if self.is_empty_classification() {
                    // FiftyOne's `Classification().to_dict()` has no label
                    // and no confidence.
                    return Value::Object(object);
                }
                object.insert("label".into(), json!(label));
                object.insert("confidence".into(), confidence.map_or(Value::Null, finite));
                if let Some(logits) = logits {
                    object.insert(
                        "logits".into(),
                        Value::Array(
                            logits
                                .iter()
                                .map(|value| finite(f64::from(*value)))
                                .collect(),
                        ),
                    );
                }
                Value::Object(object)
            }
            Self::Classifications(items) => json!({
                "_cls": "Classifications",
                "classifications": items.iter().map(Label::to_json).collect::<Vec<_>>(),
            }),
            Self::Detections(items) => json!({
                "_cls": "Detections",
                "detections": items.iter().map(Detection::to_json).collect::<Vec<_>>(),
            }),
            Self::Keypoints(items) => json!({
                "_cls": "Keypoints",
                "keypoints": items
                    .iter()
                    .map(|keypoint| {
                        let mut object = Map::new();
                        object.insert("_cls".into(), json!("Keypoint"));
                        object.insert("label".into(), json!(keypoint.label));
                        object.insert(
                            "points".into(),
                            Value::Array(
                                keypoint
                                    .points
                                    .iter()
                                    .map(|[x, y]| Value::Array(vec![finite(*x), finite(*y)]))
                                    .collect(),
                            ),
                        );
                        object.insert(
                            "confidence".into(),
                            keypoint.confidence.as_ref().map_or(Value::Null, |values| {
                                Value::Array(values.iter().map(|value| finite(*value)).collect())
                            }),
                        );
                        Value::Object(object)
                    })
                    .collect::<Vec<_>>(),
            }),
            Self::Segmentation {
                height,
                width,
                mask,
            } => {
                let encoded = match mask {
                    SegmentationMask::U8(values) => base64_npy("|u1", &[*height, *width], values),
                    SegmentationMask::U16(values) => {
                        let bytes: Vec<u8> = values
                            .iter()
                            .flat_map(|value| value.to_le_bytes())
                            .collect();
                        base64_npy("<u2", &[*height, *width], &bytes)
                    }
                };
                json!({"_cls": "Segmentation", "mask": encoded})
            }
        }
    }

    /// FiftyOne's empty `Classification()`: no label, no confidence, no
    /// logits (what `ClassifierOutputProcessor` stores below
    /// `confidence_thresh`). zoo keeps it as a classification whose label is
    /// the empty string.
    pub fn empty_classification() -> Self {
        Self::Classification {
            label: String::new(),
            confidence: None,
            logits: None,
        }
    }

    /// Whether this is [`Label::empty_classification`].
    pub fn is_empty_classification(&self) -> bool {
        matches!(self, Self::Classification { label, confidence: None, logits: None } if label.is_empty())
    }

    /// The label's confidence, for single-valued labels.
    pub fn confidence(&self) -> Option<f64> {
        match self {
            Self::Classification { confidence, .. } => *confidence,
            _ => None,
        }
    }

    /// The label with everything under `threshold` removed, as FiftyOne's
    /// `confidence_thresh` does; `None` when nothing is left of a single
    /// classification.
    pub fn thresholded(self, threshold: f64) -> Option<Self> {
        let keep = |confidence: Option<f64>| confidence.is_none_or(|value| value >= threshold);
        match self {
            Self::Classification { ref confidence, .. } => keep(*confidence).then_some(self),
            Self::Classifications(items) => Some(Self::Classifications(
                items
                    .into_iter()
                    .filter_map(|item| item.thresholded(threshold))
                    .collect(),
            )),
            Self::Detections(items) => Some(Self::Detections(
                items
                    .into_iter()
                    .filter(|item| keep(item.confidence))
                    .collect(),
            )),
            Self::Keypoints(items) => Some(Self::Keypoints(items)),
            other @ Self::Segmentation { .. } => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_json_matches_fiftyone() {
        // FiftyOne 1.22: Classification(label="cat", confidence=0.75,
        // logits=np.array([0.5, -1.0], dtype=np.float32)).to_dict(), minus
        // `_id` and `tags`.
        let label = Label::Classification {
            label: "cat".into(),
            confidence: Some(0.75),
            logits: Some(vec![0.5, -1.0]),
        };
        assert_eq!(
            label.to_json(),
            json!({"_cls": "Classification", "label": "cat", "confidence": 0.75, "logits": [0.5, -1.0]})
        );
        let none = Label::Classification {
            label: "dog".into(),
            confidence: None,
            logits: None,
        };
        assert_eq!(
            none.to_json(),
            json!({"_cls": "Classification", "label": "dog", "confidence": null})
        );
    }

    #[test]
    fn an_empty_classification_is_written_as_fiftyone_writes_classification() {
        // FiftyOne 1.22.1: Classification().to_dict() holds `_id`, `_cls`
        // and `tags` only.
        let empty = Label::empty_classification();
        assert!(empty.is_empty_classification());
        assert_eq!(empty.to_json(), json!({"_cls": "Classification"}));
    }

    #[test]
    fn detections_keypoints_and_masks() {
        let detections = Label::Detections(vec![Detection {
            label: "person".into(),
            bounding_box: [0.1, 0.2, 0.3, 0.4],
            confidence: Some(0.9),
            mask: Some((1, 2, vec![1, 0])),
        }]);
        let value = detections.to_json();
        assert_eq!(value["_cls"], "Detections");
        assert_eq!(value["detections"][0]["_cls"], "Detection");
        assert_eq!(
            value["detections"][0]["bounding_box"],
            json!([0.1, 0.2, 0.3, 0.4])
        );
        let mask = base64::engine::general_purpose::STANDARD
            .decode(value["detections"][0]["mask"].as_str().unwrap())
            .unwrap();
        assert!(String::from_utf8_lossy(&mask).contains("'descr': '|b1'"));
        assert_eq!(&mask[mask.len() - 2..], &[1, 0]);

        let keypoints = Label::Keypoints(vec![Keypoint {
            label: "person".into(),
            points: vec![[0.5, 0.25]],
            confidence: Some(vec![0.8]),
        }]);
        assert_eq!(
            keypoints.to_json(),
            json!({"_cls": "Keypoints", "keypoints": [{"_cls": "Keypoint", "label": "person", "points": [[0.5, 0.25]], "confidence": [0.8]}]})
        );
        let segmentation = Label::Segmentation {
            height: 1,
            width: 3,
            mask: SegmentationMask::U8(vec![0, 1, 2]),
        };
        assert_eq!(segmentation.to_json()["_cls"], "Segmentation");
    }

    #[test]
    fn thresholds_filter_like_fiftyone() {
        let low = Label::Classification {
            label: "a".into(),
            confidence: Some(0.2),
            logits: None,
        };
        assert_eq!(low.clone().thresholded(0.5), None);
        assert!(low.thresholded(0.1).is_some());
        let detections = Label::Detections(vec![
            Detection {
                label: "a".into(),
                bounding_box: [0.0; 4],
                confidence: Some(0.9),
                mask: None,
            },
            Detection {
                label: "b".into(),
                bounding_box: [0.0; 4],
                confidence: Some(0.1),
                mask: None,
            },
        ]);
        let Some(Label::Detections(kept)) = detections.thresholded(0.5) else {
            panic!()
        };
        assert_eq!(kept.len(), 1);
        assert_eq!(finite(f64::NAN), Value::Null);
    }
}
