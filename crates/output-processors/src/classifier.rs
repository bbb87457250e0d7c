//! `ClassifierOutputProcessor`.

use ndarray::ArrayView2;
use zoo_model_core::Label;

use crate::class_name;

/// Turns logits into classifications.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classifier {
    /// Class names by index.
    pub classes: Vec<String>,
    /// Keep the logits on each label.
    pub store_logits: bool,
}

impl Classifier {
    /// One classification per row of `logits` (`[N, M]`).
    pub fn process(&self, logits: ArrayView2<'_, f32>) -> Vec<Label> {
        logits
            .rows()
            .into_iter()
            .map(|row| {
                // FiftyOne: odds = np.exp(logits); odds /= odds.sum() (f32).
                let odds: Vec<f32> = row.iter().map(|value| value.exp()).collect();
                let total: f32 = odds.iter().sum();
                let odds: Vec<f32> = odds.iter().map(|value| value / total).collect();
                let index = argmax(&odds);
                Label::Classification {
                    label: class_name(&self.classes, index),
                    confidence: odds.get(index).map(|value| f64::from(*value)),
                    logits: self.store_logits.then(|| row.to_vec()),
                }
            })
            .collect()
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
        // NaN logit: the sum is NaN, every odd is NaN, argmax picks the first.
        assert_eq!(label, "0");
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
}
