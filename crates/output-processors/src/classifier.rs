//! `ClassifierOutputProcessor`.

use std::collections::BTreeSet;

use ndarray::ArrayView2;
use zoo_model_core::Label;

use crate::class_name;

/// Turns logits into classifications, as FiftyOne 1.22.1's
/// `ClassifierOutputProcessor.__call__` does: the label is the argmax of the
/// logits, the confidence the maximum of `exp(l) / sum(exp(l))` in `f32`;
/// below `confidence_thresh`, or outside `filter_classes`, the image gets an
/// empty `Classification` (no label, no confidence, no logits).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classifier {
    /// Class names by index.
    pub classes: Vec<String>,
    /// Keep the logits on each label.
    pub store_logits: bool,
    /// FiftyOne's `confidence_thresh`: an image whose confidence is below
    /// it gets an empty classification. Compared in `f32`, as NumPy 2
    /// compares an `np.float32` score with a Python float.
    pub confidence_thresh: Option<f32>,
    /// FiftyOne's `filter_classes`: an image whose label is not listed gets
    /// an empty classification.
    pub filter_classes: Option<BTreeSet<String>>,
}

impl Classifier {
    /// One classification per row of `logits` (`[N, M]`).
    pub fn process(&self, logits: ArrayView2<'_, f32>) -> Vec<Label> {
        logits
            .rows()
            .into_iter()
            .map(|row| {
                let row = row.to_vec();
                // FiftyOne: predictions = np.argmax(logits, axis=1).
                let index = argmax(&row);
                // odds = np.exp(logits); odds /= odds.sum(); np.max(odds) (f32).
                let odds: Vec<f32> = row.iter().map(|value| value.exp()).collect();
                let total: f32 = odds.iter().sum();
                let score = odds
                    .iter()
                    .map(|value| value / total)
                    .fold(f32::NEG_INFINITY, nan_max);
                let label = class_name(&self.classes, index);
                let below = self
                    .confidence_thresh
                    .is_some_and(|threshold| score < threshold);
                let filtered = self
                    .filter_classes
                    .as_ref()
                    .is_some_and(|classes| !classes.contains(&label));
                if below || filtered {
                    return Label::EmptyClassification;
                }
                Label::Classification {
                    label,
                    confidence: Some(f64::from(score)),
                    logits: self.store_logits.then_some(row),
                }
            })
            .collect()
    }
}

/// NumPy's `max`: NaN as soon as one value is NaN.
fn nan_max(best: f32, value: f32) -> f32 {
    if best.is_nan() || value.is_nan() {
        f32::NAN
    } else {
        best.max(value)
    }
}

/// NumPy's argmax: the first maximum, or the first NaN if there is one.
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if value.is_nan() {
            return index;
        }
        if *value > values[best] {
            best = index;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn softmax_argmax_and_logits() {
        let processor = Classifier {
            classes: vec!["a".into(), "b".into(), "c".into()],
            store_logits: true,
            ..Classifier::default()
        };
        let labels = processor.process(array![[1.0f32, 2.0, 0.5], [0.0, 0.0, 0.0]].view());
        // exp(2) / (exp(1) + exp(2) + exp(0.5)), computed by hand.
        let expected = (2.0f32.exp()) / (1.0f32.exp() + 2.0f32.exp() + 0.5f32.exp());
        assert_eq!(
            labels[0],
            Label::Classification {
                label: "b".into(),
                confidence: Some(f64::from(expected)),
                logits: Some(vec![1.0, 2.0, 0.5])
            }
        );
        // Ties go to the first maximum.
        let Label::Classification {
            label, confidence, ..
        } = &labels[1]
        else {
            panic!()
        };
        assert_eq!(label, "a");
        assert!((confidence.unwrap() - 1.0 / 3.0).abs() < 1e-7);
    }

    #[test]
    fn edge_cases() {
        let no_classes = Classifier::default();
        let Label::Classification { label, logits, .. } =
            &no_classes.process(array![[0.1f32, 0.9]].view())[0]
        else {
            panic!()
        };
        assert_eq!(label, "1");
        assert_eq!(logits, &None);
        let nan = no_classes.process(array![[0.1f32, f32::NAN, 5.0]].view());
        let Label::Classification {
            label, confidence, ..
        } = &nan[0]
        else {
            panic!()
        };
        // NaN logit: NumPy's argmax of the logits is the first NaN; the sum
        // is NaN, so every odd and their max is NaN.
        assert_eq!(label, "1");
        assert!(confidence.unwrap().is_nan());
        // exp overflows like NumPy's float32: inf / inf = NaN.
        let huge = no_classes.process(array![[100.0f32, 1.0]].view());
        assert!(huge[0].confidence().unwrap().is_nan());
        assert!(
            no_classes
                .process(ndarray::Array2::<f32>::zeros((0, 3)).view())
                .is_empty()
        );
    }

    /// FiftyOne 1.22.1 `ClassifierOutputProcessor`: `np.argmax(logits)`,
    /// not the argmax of the odds; when `exp` overflows every odd is NaN and
    /// the odds' argmax would be 0.
    #[test]
    fn label_is_the_argmax_of_the_logits_when_exp_overflows() {
        let labels = Classifier::default().process(array![[100.0f32, 200.0]].view());
        let Label::Classification {
            label, confidence, ..
        } = &labels[0]
        else {
            panic!()
        };
        assert_eq!(label, "1");
        assert!(confidence.unwrap().is_nan());
    }

    /// FiftyOne 1.22.1: `score < confidence_thresh` or a label outside
    /// `classes` gives `fol.Classification()` (not `None`), without logits.
    #[test]
    fn below_the_threshold_or_filtered_out_is_an_empty_classification() {
        let logits = array![[1.0f32, 2.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]];
        let processor = Classifier {
            classes: vec!["a".into(), "b".into(), "c".into()],
            store_logits: true,
            confidence_thresh: Some(0.5),
            filter_classes: Some(["a".to_owned(), "b".to_owned()].into()),
        };
        let labels = processor.process(logits.view());
        // 0.63 passes; 1/3 is below 0.5; "c" is filtered out.
        assert_eq!(labels[0].confidence().map(|c| c > 0.6), Some(true));
        assert_eq!(labels[1], Label::EmptyClassification);
        assert_eq!(labels[2], Label::EmptyClassification);
        // The comparison is in f32: exactly the score passes.
        let score = labels[0].confidence().unwrap() as f32;
        let exact = Classifier {
            confidence_thresh: Some(score),
            ..Classifier::default()
        };
        assert_ne!(exact.process(logits.view())[0], Label::EmptyClassification);
        // A NaN score is never below a threshold (NumPy: nan < t is False).
        let nan = Classifier {
            confidence_thresh: Some(0.5),
            ..Classifier::default()
        };
        assert_ne!(
            nan.process(array![[100.0f32, 200.0]].view())[0],
            Label::EmptyClassification
        );
    }
}
