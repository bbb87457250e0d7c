//! Output processors: raw model outputs (ndarray) to labels, as FiftyOne's
//! `fiftyone.utils.torch.*OutputProcessor` classes do.
//!
//! - [`Classifier`]: logits `[N, M]` -> argmax label, confidence = the
//!   softmax maximum computed as FiftyOne does (`exp(l) / sum(exp(l))` in
//!   `f32`, no max subtraction), logits kept when asked.
//! - [`Detector`]: boxes `[K, 4]` (absolute `x1, y1, x2, y2`), labels `[K]`,
//!   scores `[K]` -> detections with relative `[x, y, w, h]`.
//! - [`InstanceSegmenter`]: a detector plus masks `[K, 1, H, W]`, each
//!   cropped to its box and binarised at `mask_thresh`.
//! - [`KeypointDetector`]: a detector plus keypoints `[K, P, 3]`.
//! - [`SemanticSegmenter`]: scores `[N, C, H, W]` -> argmax masks.
//!
//! [`ProcessorKind::from_fiftyone_class`] says which of them a config's
//! `output_processor_cls` names.
//!
//! No tensor library appears here: backends convert their outputs to
//! ndarray at the edge.

mod classifier;
mod detector;
mod kind;
mod segmenter;

pub use classifier::Classifier;
pub use detector::{Detector, DetectorOutput, InstanceSegmenter, KeypointDetector};
pub use kind::ProcessorKind;
pub use segmenter::SemanticSegmenter;

/// The name of class `index`: from `classes`, or the index itself when the
/// list is empty or too short.
pub(crate) fn class_name(classes: &[String], index: usize) -> String {
    classes
        .get(index)
        .cloned()
        .unwrap_or_else(|| index.to_string())
}
