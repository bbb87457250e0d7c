//! `SemanticSegmenterOutputProcessor`.

use ndarray::ArrayView4;
use zoo_model_core::{Label, SegmentationMask};

/// Class scores to argmax masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SemanticSegmenter;

impl SemanticSegmenter {
    /// One mask per image of `scores` (`[N, C, H, W]`): `u8` class ids for up
    /// to 256 classes, else `u16`.
    pub fn process(&self, scores: ArrayView4<'_, f32>) -> Vec<Label> {
        let [count, classes, height, width] = [0, 1, 2, 3].map(|axis| scores.shape()[axis]);
        (0..count)
            .map(|n| {
                let mut ids = Vec::with_capacity(height * width);
                for y in 0..height {
                    for x in 0..width {
                        let mut best = 0;
                        for c in 1..classes {
                            let value = scores[[n, c, y, x]];
                            if value > scores[[n, best, y, x]]
                                || value.is_nan() && !scores[[n, best, y, x]].is_nan()
                            {
                                best = c;
                            }
                        }
                        ids.push(best);
                    }
                }
                let mask = if classes <= 256 {
                    SegmentationMask::U8(ids.into_iter().map(|id| id as u8).collect())
                } else {
                    SegmentationMask::U16(ids.into_iter().map(|id| id as u16).collect())
                };
                Label::Segmentation {
                    height,
                    width,
                    mask,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array4;

    use super::*;

    #[test]
    fn argmax_per_pixel() {
        let mut scores = Array4::<f32>::zeros((1, 3, 1, 2));
        scores[[0, 2, 0, 0]] = 1.0;
        scores[[0, 1, 0, 1]] = 0.5;
        let labels = SemanticSegmenter.process(scores.view());
        assert_eq!(
            labels[0],
            Label::Segmentation {
                height: 1,
                width: 2,
                mask: SegmentationMask::U8(vec![2, 1])
            }
        );
        let many = Array4::<f32>::zeros((1, 300, 1, 1));
        assert!(matches!(
            SemanticSegmenter.process(many.view())[0],
            Label::Segmentation {
                mask: SegmentationMask::U16(_),
                ..
            }
        ));
    }
}
