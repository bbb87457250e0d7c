//! `SemanticSegmenterOutputProcessor`, as FiftyOne 1.22.1 runs it.

use std::cmp::Ordering;

use ndarray::ArrayView4;
use zoo_model_core::{Label, SegmentationMask};

/// Class scores to argmax masks, with FiftyOne's options.
///
/// FiftyOne's processor takes `output["out"]` (`[N, C, H, W]`), applies a
/// softmax over classes unless `has_softmax_out` (the backend does that,
/// so its numbers are libtorch's as in FiftyOne), takes NumPy's `argmax`
/// over classes (the first maximum; its `int64` mask is what FiftyOne
/// stores, `<i8`), adds 1 with `no_background_cls`, and with a (truthy)
/// `confidence_thresh` sets to 0 every pixel whose largest score is below
/// it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SemanticSegmenter {
    /// FiftyOne's `no_background_cls`: class ids are shifted by 1.
    pub no_background_cls: bool,
    /// Pixels whose largest score is below this are 0 (FiftyOne ignores
    /// a threshold of 0, as Python's `if confidence_thresh:` does).
    pub confidence_thresh: Option<f32>,
}

impl SemanticSegmenter {
    /// One mask per image of `scores` (`[N, C, H, W]`, probabilities or
    /// logits): `int64` class ids, row-major.
    pub fn process(&self, scores: ArrayView4<'_, f32>) -> Vec<Label> {
        let [count, classes, height, width] = [0, 1, 2, 3].map(|axis| scores.shape()[axis]);
        let threshold = self.confidence_thresh.filter(|value| *value != 0.0);
        let shift = i64::from(self.no_background_cls);
        (0..count)
            .map(|n| {
                let mut ids = Vec::with_capacity(height * width);
                for y in 0..height {
                    for x in 0..width {
                        // NumPy's argmax: the first maximum, a NaN wins.
                        let mut best = 0;
                        let mut top = scores[[n, 0, y, x]];
                        for c in 1..classes {
                            let value = scores[[n, c, y, x]];
                            if !top.is_nan() && (value > top || value.is_nan()) {
                                best = c;
                                top = value;
                            }
                        }
                        let mut id = best as i64 + shift;
                        // `probs.max(axis=1) >= thresh` is false for NaN.
                        if let Some(threshold) = threshold
                            && !matches!(
                                top.partial_cmp(&threshold),
                                Some(Ordering::Greater | Ordering::Equal)
                            )
                        {
                            id = 0;
                        }
                        ids.push(id);
                    }
                }
                Label::Segmentation {
                    height,
                    width,
                    mask: SegmentationMask::I64(ids),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array4;

    use super::*;

    fn mask(label: &Label) -> Vec<i64> {
        match label {
            Label::Segmentation {
                mask: SegmentationMask::I64(ids),
                ..
            } => ids.clone(),
            other => panic!("not an int64 mask: {other:?}"),
        }
    }

    #[test]
    fn argmax_per_pixel_as_int64_like_numpy() {
        let mut scores = Array4::<f32>::zeros((1, 3, 1, 3));
        scores[[0, 2, 0, 0]] = 1.0;
        scores[[0, 1, 0, 1]] = 0.5;
        // A tie: NumPy takes the first maximum.
        scores[[0, 1, 0, 2]] = 0.0;
        let labels = SemanticSegmenter::default().process(scores.view());
        assert_eq!(
            labels[0],
            Label::Segmentation {
                height: 1,
                width: 3,
                mask: SegmentationMask::I64(vec![2, 1, 0])
            }
        );
        let mut many = Array4::<f32>::zeros((1, 300, 1, 1));
        many[[0, 299, 0, 0]] = 1.0;
        assert_eq!(
            mask(&SemanticSegmenter::default().process(many.view())[0]),
            vec![299]
        );
    }

    #[test]
    fn no_background_cls_shifts_and_confidence_thresh_zeroes_like_fiftyone() {
        let mut scores = Array4::<f32>::zeros((1, 2, 1, 3));
        scores[[0, 0, 0, 0]] = 0.9;
        scores[[0, 1, 0, 1]] = 0.4;
        scores[[0, 1, 0, 2]] = 0.6;
        let shifted = SemanticSegmenter {
            no_background_cls: true,
            confidence_thresh: None,
        };
        assert_eq!(mask(&shifted.process(scores.view())[0]), vec![1, 2, 2]);
        let thresholded = SemanticSegmenter {
            no_background_cls: true,
            confidence_thresh: Some(0.5),
        };
        assert_eq!(mask(&thresholded.process(scores.view())[0]), vec![1, 0, 2]);
        // FiftyOne's `if confidence_thresh:` skips a threshold of 0.
        let zero = SemanticSegmenter {
            no_background_cls: false,
            confidence_thresh: Some(0.0),
        };
        scores[[0, 0, 0, 1]] = -1.0;
        scores[[0, 1, 0, 1]] = -0.5;
        assert_eq!(mask(&zero.process(scores.view())[0]), vec![0, 1, 1]);
    }
}
