//! FiftyOne's label types and their JSON, as FiftyOne 1.22.1's
//! `Label.to_dict(extended=True)` writes it and `Label.from_dict` reads it.

use serde_json::{Map, Value, json};

use crate::npy::{NpyArray, NpyError, array_from_json, array_to_json};
use crate::object_id::ObjectId;

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
    /// The class name, when it has one (FiftyOne writes `null` when not,
    /// as for ViTPose's keypoints).
    pub label: Option<String>,
    /// `[x, y]` per point, relative.
    pub points: Vec<[f64; 2]>,
    /// One confidence per point.
    pub confidence: Option<Vec<f64>>,
}

/// One polyline set (FiftyOne's `Polyline`): shapes of relative `[x, y]`
/// points, e.g. an oriented box as one closed, filled shape of 4 points.
#[derive(Debug, Clone, PartialEq)]
pub struct Polyline {
    /// The class name, when it has one.
    pub label: Option<String>,
    /// The shapes, each a list of `[x, y]` points in `[0, 1]`.
    pub points: Vec<Vec<[f64; 2]>>,
    /// The score, when the model gives one.
    pub confidence: Option<f64>,
    /// Whether each shape is closed.
    pub closed: bool,
    /// Whether each shape is filled.
    pub filled: bool,
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
    /// FiftyOne's empty `Classification()`: no label, no confidence (what
    /// its classifier stores below `confidence_thresh`).
    EmptyClassification,
    /// Several classes.
    Classifications(Vec<Label>),
    /// Object detections.
    Detections(Vec<Detection>),
    /// Keypoint sets.
    Keypoints(Vec<Keypoint>),
    /// Polylines (oriented boxes, contours).
    Polylines(Vec<Polyline>),
    /// A heatmap (a depth map): a 2-D array as the model gave it
    /// (`|u1`, `<u2`, `<f4` or `<f8`) and the range of its values.
    Heatmap {
        /// The map, `[height, width]`.
        map: NpyArray,
        /// `[min, max]` of the map's values, when the model says.
        range: Option<[f64; 2]>,
    },
    /// A regression value; `value: None` is FiftyOne's empty
    /// `Regression()` (what a threshold leaves).
    Regression {
        /// The value.
        value: Option<f64>,
        /// Its confidence, when the model gives one.
        confidence: Option<f64>,
    },
    /// A semantic mask `(height, width, values)`: `u8`, `u16` or `int64`
    /// class ids.
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
    /// NumPy's `argmax` output, as FiftyOne's `SemanticSegmenterOutputProcessor`
    /// stores it (`<i8`).
    I64(Vec<i64>),
}

/// Why label JSON could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// A key is missing or has the wrong type.
    #[error("label JSON at `{path}`: {problem}")]
    Invalid {
        /// Where in the label (`detections[2].bounding_box`).
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// An array (mask, logits) could not be decoded.
    #[error("label JSON at `{path}`: the array cannot be read")]
    Array {
        /// Where in the label.
        path: String,
        /// Why.
        #[source]
        source: NpyError,
    },
    /// A label type zoo does not model.
    #[error(
        "label type `{0}` is not one zoo reads (Classification, Classifications, Detections, Keypoints, Segmentation, Polylines, Heatmap, Regression)"
    )]
    Unsupported(String),
}

fn invalid(path: &str, problem: impl Into<String>) -> LabelError {
    LabelError::Invalid {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn finite(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// The opening keys every FiftyOne label object has, in FiftyOne's order:
/// `_id`, `_cls`, then `attributes` (detections and keypoints) and `tags`.
fn label_object(class: &str, attributes: bool) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("_id".into(), ObjectId::new().to_json());
    object.insert("_cls".into(), json!(class));
    if attributes {
        object.insert("attributes".into(), json!({}));
    }
    object.insert("tags".into(), json!([]));
    object
}

/// A key that may be absent or `null`.
fn optional<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

fn optional_f64(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<f64>, LabelError> {
    optional(object, key)
        .map(|value| number(value).ok_or_else(|| invalid(&format!("{path}.{key}"), "not a number")))
        .transpose()
}

fn string_or_empty(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<String, LabelError> {
    match optional(object, key) {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(invalid(&format!("{path}.{key}"), "not a string")),
    }
}

/// A number as FiftyOne's `to_dict(extended=True)` writes one (MongoDB
/// extended JSON, relaxed or canonical): a plain JSON number, or
/// `{"$numberDouble": "NaN" | "Infinity" | "-Infinity" | "<decimal>"}`,
/// `{"$numberInt": "<integer>"}`, `{"$numberLong": "<integer>"}`.
fn number(value: &Value) -> Option<f64> {
    if let Some(number) = value.as_f64() {
        return Some(number);
    }
    let object = value.as_object().filter(|object| object.len() == 1)?;
    let (key, text) = object.iter().next()?;
    let text = text.as_str()?;
    match key.as_str() {
        "$numberDouble" => match text {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            // Only digits, sign, point and exponent: Rust would also read
            // `inf` or `nan`, which extended JSON spells only as above.
            _ if text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || b"+-.eE".contains(&byte)) =>
            {
                text.parse().ok()
            }
            _ => None,
        },
        "$numberInt" => text.parse::<i32>().ok().map(f64::from),
        "$numberLong" => text.parse::<i64>().ok().map(|number| number as f64),
        _ => None,
    }
}

/// A number, or `null` / `NaN` as FiftyOne writes a missing value.
fn number_or_nan(value: &Value, path: &str) -> Result<f64, LabelError> {
    match value {
        Value::Null => Ok(f64::NAN),
        other => number(other).ok_or_else(|| invalid(path, "not a number")),
    }
}

/// A 2-D array from an array field.
fn read_array(value: &Value, path: &str) -> Result<crate::npy::NpyArray, LabelError> {
    array_from_json(value).map_err(|source| LabelError::Array {
        path: path.to_owned(),
        source,
    })
}

fn mask_2d(value: &Value, path: &str) -> Result<(usize, usize, crate::npy::NpyArray), LabelError> {
    let array = read_array(value, path)?;
    match array.shape[..] {
        [height, width] => Ok((height, width, array)),
        _ => Err(invalid(
            path,
            format!("a mask has 2 dimensions, not {:?}", array.shape),
        )),
    }
}

impl Detection {
    fn to_json(&self) -> Value {
        let mut object = label_object("Detection", true);
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
        if let Some((height, width, mask)) = &self.mask {
            object.insert(
                "mask".into(),
                array_to_json("|b1", &[*height, *width], mask),
            );
        }
        if let Some(confidence) = self.confidence {
            object.insert("confidence".into(), finite(confidence));
        }
        Value::Object(object)
    }

    fn from_json(object: &Map<String, Value>, path: &str) -> Result<Self, LabelError> {
        let box_path = format!("{path}.bounding_box");
        let bounding_box = match optional(object, "bounding_box") {
            Some(Value::Array(values)) if values.len() == 4 => {
                let mut corners = [0.0; 4];
                for (corner, value) in corners.iter_mut().zip(values) {
                    *corner = number_or_nan(value, &box_path)?;
                }
                corners
            }
            _ => return Err(invalid(&box_path, "not a list of 4 numbers")),
        };
        let mask = match optional(object, "mask") {
            None => None,
            Some(value) => {
                let mask_path = format!("{path}.mask");
                let (height, width, array) = mask_2d(value, &mask_path)?;
                if !matches!(array.dtype.as_str(), "|b1" | "|u1" | "|i1") {
                    return Err(invalid(
                        &mask_path,
                        format!("an instance mask is boolean, not `{}`", array.dtype),
                    ));
                }
                let bits = array
                    .data
                    .iter()
                    .map(|value| u8::from(*value != 0))
                    .collect();
                Some((height, width, bits))
            }
        };
        Ok(Self {
            label: string_or_empty(object, "label", path)?,
            bounding_box,
            confidence: optional_f64(object, "confidence", path)?,
            mask,
        })
    }
}

impl Keypoint {
    fn to_json(&self) -> Value {
        let mut object = label_object("Keypoint", true);
        object.insert("label".into(), json!(self.label));
        object.insert(
            "points".into(),
            Value::Array(
                self.points
                    .iter()
                    .map(|[x, y]| Value::Array(vec![finite(*x), finite(*y)]))
                    .collect(),
            ),
        );
        if let Some(confidence) = &self.confidence {
            object.insert(
                "confidence".into(),
                Value::Array(confidence.iter().map(|value| finite(*value)).collect()),
            );
        }
        Value::Object(object)
    }

    fn from_json(object: &Map<String, Value>, path: &str) -> Result<Self, LabelError> {
        let points_path = format!("{path}.points");
        let points = match optional(object, "points") {
            None => Vec::new(),
            Some(Value::Array(points)) => points
                .iter()
                .map(|point| match point.as_array().map(Vec::as_slice) {
                    Some([x, y]) => Ok([
                        number_or_nan(x, &points_path)?,
                        number_or_nan(y, &points_path)?,
                    ]),
                    _ => Err(invalid(&points_path, "a point is not `[x, y]`")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid(&points_path, "not a list of points")),
        };
        let confidence_path = format!("{path}.confidence");
        let confidence = match optional(object, "confidence") {
            None => None,
            Some(Value::Array(values)) => Some(
                values
                    .iter()
                    .map(|value| number_or_nan(value, &confidence_path))
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(invalid(&confidence_path, "not a list of numbers")),
        };
        let label = match optional(object, "label") {
            None => None,
            Some(_) => Some(string_or_empty(object, "label", path)?),
        };
        Ok(Self {
            label,
            points,
            confidence,
        })
    }
}

impl Polyline {
    fn to_json(&self) -> Value {
        let mut object = label_object("Polyline", true);
        if let Some(label) = &self.label {
            object.insert("label".into(), json!(label));
        }
        object.insert(
            "points".into(),
            Value::Array(
                self.points
                    .iter()
                    .map(|shape| {
                        Value::Array(
                            shape
                                .iter()
                                .map(|[x, y]| Value::Array(vec![finite(*x), finite(*y)]))
                                .collect(),
                        )
                    })
                    .collect(),
            ),
        );
        if let Some(confidence) = self.confidence {
            object.insert("confidence".into(), finite(confidence));
        }
        object.insert("closed".into(), json!(self.closed));
        object.insert("filled".into(), json!(self.filled));
        Value::Object(object)
    }

    fn from_json(object: &Map<String, Value>, path: &str) -> Result<Self, LabelError> {
        let points_path = format!("{path}.points");
        let point = |point: &Value| match point.as_array().map(Vec::as_slice) {
            Some([x, y]) => Ok([
                number_or_nan(x, &points_path)?,
                number_or_nan(y, &points_path)?,
            ]),
            _ => Err(invalid(&points_path, "a point is not `[x, y]`")),
        };
        let points = match optional(object, "points") {
            None => Vec::new(),
            Some(Value::Array(shapes)) => shapes
                .iter()
                .map(|shape| match shape {
                    Value::Array(points) => points.iter().map(point).collect(),
                    _ => Err(invalid(&points_path, "a shape is not a list of points")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid(&points_path, "not a list of shapes")),
        };
        let flag = |key: &str| match optional(object, key) {
            None => Ok(false),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err(invalid(&format!("{path}.{key}"), "not true or false")),
        };
        let label = match optional(object, "label") {
            None => None,
            Some(_) => Some(string_or_empty(object, "label", path)?),
        };
        Ok(Self {
            label,
            points,
            confidence: optional_f64(object, "confidence", path)?,
            closed: flag("closed")?,
            filled: flag("filled")?,
        })
    }
}

/// The dtypes a heatmap's map may have.
const HEATMAP_DTYPES: [&str; 4] = ["|u1", "<u2", "<f4", "<f8"];

/// An item of a container label and where it is (`detections[2]`).
type Item<'a> = (String, &'a Map<String, Value>);

/// The objects of list `key` of a container label.
fn items<'a>(object: &'a Map<String, Value>, key: &str) -> Result<Vec<Item<'a>>, LabelError> {
    match optional(object, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(values)) => values
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let path = format!("{key}[{index}]");
                value
                    .as_object()
                    .map(|item| (path.clone(), item))
                    .ok_or_else(|| invalid(&path, "not an object"))
            })
            .collect(),
        Some(_) => Err(invalid(key, "not a list")),
    }
}

impl Label {
    /// The label as FiftyOne serialises it (`Label.to_dict(extended=True)`):
    /// every label object gets a new `_id` and empty `tags` (detections and
    /// keypoints also empty `attributes`); keys that are `None` in FiftyOne
    /// are left out; masks and logits are zlib-compressed `.npy` in
    /// `{"$binary": ...}`.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Classification {
                label,
                confidence,
                logits,
            } => {
                let mut object = label_object("Classification", false);
                object.insert("label".into(), json!(label));
                if let Some(confidence) = confidence {
                    object.insert("confidence".into(), finite(*confidence));
                }
                if let Some(logits) = logits {
                    let bytes: Vec<u8> = logits
                        .iter()
                        .flat_map(|value| value.to_le_bytes())
                        .collect();
                    object.insert(
                        "logits".into(),
                        array_to_json("<f4", &[logits.len()], &bytes),
                    );
                }
                Value::Object(object)
            }
            Self::EmptyClassification => Value::Object(label_object("Classification", false)),
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
                "keypoints": items.iter().map(Keypoint::to_json).collect::<Vec<_>>(),
            }),
            Self::Polylines(items) => json!({
                "_cls": "Polylines",
                "polylines": items.iter().map(Polyline::to_json).collect::<Vec<_>>(),
            }),
            Self::Heatmap { map, range } => {
                let mut object = label_object("Heatmap", false);
                object.insert(
                    "map".into(),
                    array_to_json(&map.dtype, &map.shape, &map.data),
                );
                object.insert(
                    "range".into(),
                    range.map_or(Value::Null, |[low, high]| {
                        Value::Array(vec![finite(low), finite(high)])
                    }),
                );
                Value::Object(object)
            }
            Self::Regression { value, confidence } => {
                let mut object = label_object("Regression", false);
                if let Some(value) = value {
                    object.insert("value".into(), finite(*value));
                }
                if let Some(confidence) = confidence {
                    object.insert("confidence".into(), finite(*confidence));
                }
                Value::Object(object)
            }
            Self::Segmentation {
                height,
                width,
                mask,
            } => {
                let mut object = label_object("Segmentation", false);
                let array = match mask {
                    SegmentationMask::U8(values) => {
                        array_to_json("|u1", &[*height, *width], values)
                    }
                    SegmentationMask::U16(values) => {
                        let bytes: Vec<u8> = values
                            .iter()
                            .flat_map(|value| value.to_le_bytes())
                            .collect();
                        array_to_json("<u2", &[*height, *width], &bytes)
                    }
                    SegmentationMask::I64(values) => {
                        let bytes: Vec<u8> = values
                            .iter()
                            .flat_map(|value| value.to_le_bytes())
                            .collect();
                        array_to_json("<i8", &[*height, *width], &bytes)
                    }
                };
                object.insert("mask".into(), array);
                Value::Object(object)
            }
        }
    }

    /// Reads label JSON as FiftyOne writes it, and as zoo wrote it before:
    /// arrays as `{"$binary": ...}` or bare base64 of zlib-compressed
    /// `.npy`, logits also as a plain list; `_id`, `tags` and `attributes`
    /// may be absent. A `Classification` without a `label` is
    /// [`Label::EmptyClassification`].
    pub fn from_json(value: &Value) -> Result<Self, LabelError> {
        let object = value
            .as_object()
            .ok_or_else(|| invalid("", "a label is a JSON object"))?;
        let class = object
            .get("_cls")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("_cls", "missing, or not a string"))?;
        match class {
            "Classification" => Self::classification(object, "classification"),
            "Classifications" => Ok(Self::Classifications(
                items(object, "classifications")?
                    .into_iter()
                    .map(|(path, item)| Self::classification(item, &path))
                    .collect::<Result<_, _>>()?,
            )),
            "Detections" => Ok(Self::Detections(
                items(object, "detections")?
                    .into_iter()
                    .map(|(path, item)| Detection::from_json(item, &path))
                    .collect::<Result<_, _>>()?,
            )),
            "Keypoints" => Ok(Self::Keypoints(
                items(object, "keypoints")?
                    .into_iter()
                    .map(|(path, item)| Keypoint::from_json(item, &path))
                    .collect::<Result<_, _>>()?,
            )),
            "Polylines" => Ok(Self::Polylines(
                items(object, "polylines")?
                    .into_iter()
                    .map(|(path, item)| Polyline::from_json(item, &path))
                    .collect::<Result<_, _>>()?,
            )),
            "Heatmap" => {
                let value = optional(object, "map").ok_or_else(|| {
                    invalid("map", "missing (a map in a file, `map_path`, is not read)")
                })?;
                let (_, _, map) = mask_2d(value, "map")?;
                if !HEATMAP_DTYPES.contains(&map.dtype.as_str()) {
                    return Err(invalid(
                        "map",
                        format!(
                            "a heatmap is `{}`, not `{}`",
                            HEATMAP_DTYPES.join("`, `"),
                            map.dtype
                        ),
                    ));
                }
                let range = match optional(object, "range") {
                    None => None,
                    Some(Value::Array(values)) if values.len() == 2 => Some([
                        number_or_nan(&values[0], "range")?,
                        number_or_nan(&values[1], "range")?,
                    ]),
                    Some(_) => return Err(invalid("range", "not `[min, max]`")),
                };
                Ok(Self::Heatmap { map, range })
            }
            "Regression" => Ok(Self::Regression {
                value: optional_f64(object, "value", "regression")?,
                confidence: optional_f64(object, "confidence", "regression")?,
            }),
            "Segmentation" => {
                let value = optional(object, "mask").ok_or_else(|| {
                    invalid(
                        "mask",
                        "missing (a mask in a file, `mask_path`, is not read)",
                    )
                })?;
                let (height, width, array) = mask_2d(value, "mask")?;
                let mask = match array.dtype.as_str() {
                    "|u1" | "|b1" => SegmentationMask::U8(array.data),
                    "<u2" => SegmentationMask::U16(
                        array
                            .data
                            .chunks_exact(2)
                            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                            .collect(),
                    ),
                    "<i8" => SegmentationMask::I64(
                        array
                            .data
                            .chunks_exact(8)
                            .map(|bytes| {
                                let mut word = [0u8; 8];
                                word.copy_from_slice(bytes);
                                i64::from_le_bytes(word)
                            })
                            .collect(),
                    ),
                    other => {
                        return Err(invalid(
                            "mask",
                            format!("a segmentation mask is `|u1`, `<u2` or `<i8`, not `{other}`"),
                        ));
                    }
                };
                Ok(Self::Segmentation {
                    height,
                    width,
                    mask,
                })
            }
            other => Err(LabelError::Unsupported(other.to_owned())),
        }
    }

    fn classification(object: &Map<String, Value>, path: &str) -> Result<Self, LabelError> {
        let Some(label) = optional(object, "label") else {
            return Ok(Self::EmptyClassification);
        };
        let label = label
            .as_str()
            .ok_or_else(|| invalid(&format!("{path}.label"), "not a string"))?
            .to_owned();
        let logits_path = format!("{path}.logits");
        let logits = match optional(object, "logits") {
            None => None,
            Some(Value::Array(values)) => Some(
                values
                    .iter()
                    .map(|value| number_or_nan(value, &logits_path).map(|value| value as f32))
                    .collect::<Result<_, _>>()?,
            ),
            Some(value) => {
                let array = read_array(value, &logits_path)?;
                if array.shape.len() != 1 {
                    return Err(invalid(&logits_path, "logits are a 1-D array"));
                }
                Some(array.to_f32().ok_or_else(|| {
                    invalid(&logits_path, format!("logits of dtype `{}`", array.dtype))
                })?)
            }
        };
        Ok(Self::Classification {
            label,
            confidence: optional_f64(object, "confidence", path)?,
            logits,
        })
    }

    /// The label's confidence, for single-valued labels.
    pub fn confidence(&self) -> Option<f64> {
        match self {
            Self::Classification { confidence, .. } | Self::Regression { confidence, .. } => {
                *confidence
            }
            _ => None,
        }
    }

    /// The label with everything under `threshold` removed, as FiftyOne's
    /// `confidence_thresh` does: a classification below it becomes an
    /// empty classification (FiftyOne's `Classification()`) and a regression
    /// an empty `Regression()`, detections and polylines below it are
    /// dropped; a label without a confidence counts as below
    /// (`fiftyone/core/sample.py` `_apply_confidence_thresh`, 1.22.1).
    pub fn thresholded(self, threshold: f64) -> Self {
        let keep = |confidence: Option<f64>| confidence.is_some_and(|value| value >= threshold);
        match self {
            Self::Classification { confidence, .. } if !keep(confidence) => {
                Self::EmptyClassification
            }
            Self::Classifications(items) => Self::Classifications(
                items
                    .into_iter()
                    .map(|item| item.thresholded(threshold))
                    .filter(|item| *item != Self::EmptyClassification)
                    .collect(),
            ),
            Self::Detections(items) => Self::Detections(
                items
                    .into_iter()
                    .filter(|item| keep(item.confidence))
                    .collect(),
            ),
            Self::Polylines(items) => Self::Polylines(
                items
                    .into_iter()
                    .filter(|item| keep(item.confidence))
                    .collect(),
            ),
            Self::Regression { confidence, .. } if !keep(confidence) => Self::Regression {
                value: None,
                confidence: None,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label's JSON with every `_id` taken out (they are new each time),
    /// after checking each is a 24-hex `$oid`.
    fn without_ids(mut value: Value) -> Value {
        fn strip(value: &mut Value) {
            match value {
                Value::Object(object) => {
                    if let Some(id) = object.shift_remove("_id") {
                        let hex = id["$oid"].as_str().unwrap();
                        assert!(ObjectId::parse(hex).is_some(), "{hex}");
                    }
                    object.values_mut().for_each(strip);
                }
                Value::Array(values) => values.iter_mut().for_each(strip),
                _ => {}
            }
        }
        strip(&mut value);
        value
    }

    #[test]
    fn classification_json_matches_fiftyone() {
        // FiftyOne 1.22.1: Classification(label="cat", confidence=0.75,
        // logits=np.array([0.5, -1.0], dtype=np.float32)).to_dict(extended=True).
        let label = Label::Classification {
            label: "cat".into(),
            confidence: Some(0.75),
            logits: Some(vec![0.5, -1.0]),
        };
        let value = without_ids(label.to_json());
        let logits = array_from_json(&value["logits"]).unwrap();
        assert_eq!(
            (logits.dtype.as_str(), logits.shape.as_slice()),
            ("<f4", &[2][..])
        );
        let mut expected =
            json!({"_cls": "Classification", "tags": [], "label": "cat", "confidence": 0.75});
        expected["logits"] = value["logits"].clone();
        assert_eq!(value, expected);
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["_cls", "tags", "label", "confidence", "logits"]);
        assert_eq!(Label::from_json(&label.to_json()).unwrap(), label);
        // `Classification()`: no label, no confidence, keys that are None
        // left out.
        let empty = Label::EmptyClassification;
        assert_eq!(
            without_ids(empty.to_json()),
            json!({"_cls": "Classification", "tags": []})
        );
        assert_eq!(Label::from_json(&empty.to_json()).unwrap(), empty);
        let none = Label::Classification {
            label: "dog".into(),
            confidence: None,
            logits: None,
        };
        assert_eq!(
            without_ids(none.to_json()),
            json!({"_cls": "Classification", "tags": [], "label": "dog"})
        );
    }

    /// FiftyOne 1.22.1 (pymongo's relaxed extended JSON):
    /// `fo.Keypoints(keypoints=[fo.Keypoint(label="p", points=[[nan, nan],
    /// [0.5, 0.25]], confidence=[nan, inf])]).to_dict(extended=True)` and
    /// `fo.Detection(confidence=float("inf"))`; canonical mode's
    /// `$numberInt`/`$numberLong` read too.
    #[test]
    fn fiftyones_extended_json_numbers_read() {
        let nan = json!({"$numberDouble": "NaN"});
        let keypoints = json!({"_cls": "Keypoints", "keypoints": [{
            "_cls": "Keypoint", "label": "p",
            "points": [[nan, nan], [0.5, {"$numberDouble": "0.25"}]],
            "confidence": [nan, {"$numberDouble": "Infinity"}],
        }]});
        let Label::Keypoints(items) = Label::from_json(&keypoints).unwrap() else {
            panic!("keypoints")
        };
        let [[x, y], [u, v]] = items[0].points[..] else {
            panic!("two points")
        };
        assert!(x.is_nan() && y.is_nan() && u == 0.5 && v == 0.25);
        let confidence = items[0].confidence.clone().unwrap();
        assert!(confidence[0].is_nan() && confidence[1] == f64::INFINITY);
        // Written back as FiftyOne's `to_dict()` would hold them: `null`.
        assert_eq!(
            Label::Keypoints(items).to_json()["keypoints"][0]["points"][0],
            json!([null, null])
        );
        let cases = [
            (
                json!({"$numberDouble": "-Infinity"}),
                Some(f64::NEG_INFINITY),
            ),
            (json!({"$numberDouble": "1e-3"}), Some(1e-3)),
            (json!({"$numberInt": "-7"}), Some(-7.0)),
            (
                json!({"$numberLong": "9007199254740993"}),
                Some(9007199254740992.0),
            ),
            (json!({"$numberDouble": "inf"}), None),
            (json!({"$numberDouble": "nan"}), None),
            (json!({"$numberDouble": 1.5}), None),
            (json!({"$numberInt": "1.5"}), None),
            (json!({"$numberInt": "99999999999"}), None),
            (json!({"$numberDouble": "1", "x": 1}), None),
            (json!({"$oid": "1"}), None),
            (json!("1"), None),
        ];
        for (value, expected) in cases {
            let detection = json!({"_cls": "Detections", "detections": [
                {"_cls": "Detection", "bounding_box": [0, 0, 1, 1], "confidence": value}
            ]});
            match (Label::from_json(&detection), expected) {
                (Ok(Label::Detections(items)), Some(expected)) => {
                    assert_eq!(items[0].confidence, Some(expected), "{value}");
                }
                (Err(err), None) => assert!(
                    err.to_string()
                        .contains("`detections[0].confidence`: not a number"),
                    "{value}: {err}"
                ),
                (other, _) => panic!("{value}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_label_reads_back_from_its_own_json() {
        let labels = [
            Label::Classifications(vec![Label::Classification {
                label: "a".into(),
                confidence: Some(0.5),
                logits: None,
            }]),
            Label::Detections(vec![Detection {
                label: "person".into(),
                bounding_box: [0.1, 0.2, 0.3, 0.4],
                confidence: Some(0.9),
                mask: Some((1, 2, vec![1, 0])),
            }]),
            Label::Keypoints(vec![Keypoint {
                label: Some("person".into()),
                points: vec![[0.5, 0.25]],
                confidence: Some(vec![0.8]),
            }]),
            Label::Segmentation {
                height: 1,
                width: 3,
                mask: SegmentationMask::U8(vec![0, 1, 2]),
            },
            Label::Segmentation {
                height: 2,
                width: 1,
                mask: SegmentationMask::U16(vec![300, 2]),
            },
            Label::Segmentation {
                height: 1,
                width: 2,
                mask: SegmentationMask::I64(vec![20, -3]),
            },
        ];
        for label in labels {
            assert_eq!(Label::from_json(&label.to_json()).unwrap(), label);
        }
    }

    #[test]
    fn detections_and_keypoints_have_fiftyones_keys() {
        let detections = Label::Detections(vec![Detection {
            label: "person".into(),
            bounding_box: [0.1, 0.2, 0.3, 0.4],
            confidence: Some(0.9),
            mask: Some((1, 2, vec![1, 0])),
        }]);
        let value = without_ids(detections.to_json());
        assert_eq!(value["_cls"], "Detections");
        let detection = &value["detections"][0];
        let keys: Vec<&String> = detection.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "_cls",
                "attributes",
                "tags",
                "label",
                "bounding_box",
                "mask",
                "confidence"
            ]
        );
        let mask = array_from_json(&detection["mask"]).unwrap();
        assert_eq!(
            (mask.dtype.as_str(), mask.data.as_slice()),
            ("|b1", &[1, 0][..])
        );

        let keypoints = Label::Keypoints(vec![Keypoint {
            label: Some("person".into()),
            points: vec![[0.5, 0.25]],
            confidence: Some(vec![0.8]),
        }]);
        assert_eq!(
            without_ids(keypoints.to_json()),
            json!({"_cls": "Keypoints", "keypoints": [{"_cls": "Keypoint", "attributes": {}, "tags": [], "label": "person", "points": [[0.5, 0.25]], "confidence": [0.8]}]})
        );
    }

    #[test]
    fn zoos_old_json_still_reads() {
        // Before FiftyOne's form: no `_id`/`tags`, logits as a list, a mask
        // as a bare base64 string, `null` for absent values.
        let bare = array_to_json("|b1", &[1, 1], &[1])["$binary"]["base64"].clone();
        let old = json!({"_cls": "Detections", "detections": [{"_cls": "Detection", "label": "p", "bounding_box": [0, 0, 1, 1], "confidence": null, "mask": bare}]});
        let Label::Detections(found) = Label::from_json(&old).unwrap() else {
            panic!()
        };
        assert_eq!(found[0].mask, Some((1, 1, vec![1])));
        assert_eq!(found[0].confidence, None);
        let listed = json!({"_cls": "Classification", "label": "a", "confidence": 0.5, "logits": [1.0, 2.0]});
        assert!(matches!(
            Label::from_json(&listed).unwrap(),
            Label::Classification { logits: Some(ref values), .. } if values == &[1.0, 2.0]
        ));
    }

    #[test]
    fn bad_label_json_names_the_place() {
        let cases = [
            (json!([]), "a label is a JSON object"),
            (json!({"label": "a"}), "_cls"),
            (json!({"_cls": "GeoLocation"}), "`GeoLocation`"),
            (
                json!({"_cls": "Detections", "detections": [{"_cls": "Detection", "bounding_box": [1, 2]}]}),
                "detections[0].bounding_box",
            ),
            (
                json!({"_cls": "Classification", "label": "a", "logits": "???"}),
                "classification.logits",
            ),
            (json!({"_cls": "Segmentation"}), "mask_path"),
        ];
        for (value, expected) in cases {
            let error = Label::from_json(&value).unwrap_err().to_string();
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn thresholds_filter_like_fiftyone() {
        let low = Label::Classification {
            label: "a".into(),
            confidence: Some(0.2),
            logits: None,
        };
        assert_eq!(low.clone().thresholded(0.5), Label::EmptyClassification);
        assert_eq!(low.clone().thresholded(0.1), low);
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
            Detection {
                label: "no confidence".into(),
                bounding_box: [0.0; 4],
                confidence: None,
                mask: None,
            },
        ]);
        let Label::Detections(kept) = detections.thresholded(0.5) else {
            panic!()
        };
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].label, "a");
        // FiftyOne: `label.confidence is None or label.confidence < thresh`
        // gives `Classification()`.
        let unscored = Label::Classification {
            label: "a".into(),
            confidence: None,
            logits: None,
        };
        assert_eq!(unscored.thresholded(0.5), Label::EmptyClassification);
        assert_eq!(finite(f64::NAN), Value::Null);
    }

    #[test]
    fn polylines_heatmaps_and_regressions_are_fiftyones_json() {
        // FiftyOne 1.22.1: Polylines(polylines=[Polyline(label="car",
        // points=[[(0.1, 0.2), (0.3, 0.4), (0.5, 0.6), (0.1, 0.6)]],
        // closed=True, filled=True, confidence=0.8)]).to_dict(extended=True).
        let polylines = Label::Polylines(vec![Polyline {
            label: Some("car".into()),
            points: vec![vec![[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.1, 0.6]]],
            confidence: Some(0.8),
            closed: true,
            filled: true,
        }]);
        let value = without_ids(polylines.to_json());
        assert_eq!(
            value.to_string(),
            r#"{"_cls":"Polylines","polylines":[{"_cls":"Polyline","attributes":{},"tags":[],"label":"car","points":[[[0.1,0.2],[0.3,0.4],[0.5,0.6],[0.1,0.6]]],"confidence":0.8,"closed":true,"filled":true}]}"#
        );
        assert_eq!(Label::from_json(&polylines.to_json()).unwrap(), polylines);
        // Polyline(points=[[(0.1, 0.2)]]): no label, no confidence.
        let bare = json!({"_cls": "Polylines", "polylines": [{"_cls": "Polyline", "attributes": {}, "tags": [],
            "points": [[[0.1, 0.2]]], "closed": false, "filled": false}]});
        let Label::Polylines(read) = Label::from_json(&bare).unwrap() else {
            panic!()
        };
        assert_eq!((read[0].label.as_deref(), read[0].confidence), (None, None));
        assert_eq!(without_ids(Label::Polylines(read).to_json()), bare);

        // Regression(value=2.5, confidence=0.9) and Regression().
        let regression = Label::Regression {
            value: Some(2.5),
            confidence: Some(0.9),
        };
        assert_eq!(
            without_ids(regression.to_json()).to_string(),
            r#"{"_cls":"Regression","tags":[],"value":2.5,"confidence":0.9}"#
        );
        assert_eq!(Label::from_json(&regression.to_json()).unwrap(), regression);
        let empty = Label::Regression {
            value: None,
            confidence: None,
        };
        assert_eq!(
            without_ids(empty.to_json()).to_string(),
            r#"{"_cls":"Regression","tags":[]}"#
        );
        assert_eq!(regression.clone().thresholded(0.95), empty);
        assert_eq!(regression.clone().thresholded(0.5), regression);

        // Heatmap(map=np.array([[0.5, 1.0], [2.0, 3.0]], dtype=np.float32),
        // range=[0, 3]); FiftyOne writes `"range": null` without a range.
        let data: Vec<u8> = [0.5f32, 1.0, 2.0, 3.0]
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        let heatmap = Label::Heatmap {
            map: NpyArray {
                dtype: "<f4".into(),
                shape: vec![2, 2],
                data,
            },
            range: Some([0.0, 3.0]),
        };
        let value = without_ids(heatmap.to_json());
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["_cls", "tags", "map", "range"]);
        assert_eq!(value["range"], json!([0.0, 3.0]));
        let map = array_from_json(&value["map"]).unwrap();
        assert_eq!(map.to_f32().unwrap(), [0.5, 1.0, 2.0, 3.0]);
        assert_eq!(Label::from_json(&heatmap.to_json()).unwrap(), heatmap);
        let Label::Heatmap { map, .. } = heatmap else {
            panic!()
        };
        let unranged = Label::Heatmap { map, range: None };
        assert_eq!(without_ids(unranged.to_json())["range"], Value::Null);
        // Maps are 2-D and numeric; a map in a file is not read.
        let cube = array_to_json("<f4", &[1, 1, 1], &[0; 4]);
        assert!(Label::from_json(&json!({"_cls": "Heatmap", "map": cube})).is_err());
        let text = array_to_json("<U1", &[1, 1], &[0; 4]);
        assert!(Label::from_json(&json!({"_cls": "Heatmap", "map": text})).is_err());
        assert!(Label::from_json(&json!({"_cls": "Heatmap", "map_path": "/etc/passwd"})).is_err());
    }
}
