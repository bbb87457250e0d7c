//! Where predictions are stored (FiftyOne's label-field rules).

use std::collections::BTreeMap;

use crate::label::Label;
use crate::model::Prediction;

/// The fields a prediction is stored under: a single label under
/// `label_field`; a map's entries under `<label_field>_<key>`, or under the
/// name `rename` gives the key.
pub fn label_fields(
    label_field: &str,
    prediction: Prediction,
    rename: &BTreeMap<String, String>,
) -> Vec<(String, Option<Label>)> {
    match prediction {
        Prediction::Label(label) => vec![(label_field.to_owned(), label)],
        Prediction::Map(labels) => labels
            .into_iter()
            .map(|(key, label)| {
                let field = rename
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| format!("{label_field}_{key}"));
                (field, label)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_labels_and_maps() {
        let label = Label::Classification {
            label: "a".into(),
            confidence: None,
            logits: None,
        };
        let fields = label_fields(
            "pred",
            Prediction::Label(Some(label.clone())),
            &BTreeMap::new(),
        );
        assert_eq!(fields, vec![("pred".to_owned(), Some(label.clone()))]);
        let map = Prediction::Map(BTreeMap::from([
            ("boxes".to_owned(), Some(label.clone())),
            ("masks".to_owned(), None),
        ]));
        let rename = BTreeMap::from([("masks".to_owned(), "segmentation".to_owned())]);
        let names: Vec<String> = label_fields("pred", map, &rename)
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(names, vec!["pred_boxes", "segmentation"]);
    }
}
