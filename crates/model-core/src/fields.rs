//! Where predictions are stored (FiftyOne's label-field rules).

use std::collections::BTreeMap;

use crate::label::Label;
use crate::model::Prediction;

/// The fields every FiftyOne 1.22 sample has (`DatasetSampleDocument`):
/// a label or embeddings field of one of these names would overwrite the
/// sample itself in an export. The private ones also start with `_`.
pub const RESERVED_FIELDS: &[&str] = &[
    "id",
    "filepath",
    "tags",
    "metadata",
    "created_at",
    "last_modified_at",
    "_id",
    "_media_type",
    "_rand",
    "_dataset_id",
];

/// Why a name cannot be a label or embeddings field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldNameError {
    /// The name is empty.
    #[error("a field name cannot be empty: give one such as `predictions`")]
    Empty,
    /// The name is one of the sample's own fields.
    #[error(
        "`{0}` is a field every FiftyOne sample has ({sample_fields}): pick another name, such as `predictions`",
        sample_fields = public_fields()
    )]
    Reserved(String),
    /// The name starts with `_`.
    #[error(
        "`{0}` starts with `_`, which FiftyOne keeps for private fields: pick a name without it"
    )]
    Private(String),
    /// The name holds a character FiftyOne (or MongoDB) gives a meaning.
    #[error(
        "`{}` contains {}, which zoo does not allow in a field name (`.` separates embedded fields and `$` starts operators in FiftyOne; `/` and `\\` would make a field's media folder a path): pick a name without it",
        .name.escape_debug(),
        describe(*.character)
    )]
    Character {
        /// The name.
        name: String,
        /// The first character not allowed.
        character: char,
    },
}

/// The reserved fields a user sees (the private ones start with `_`).
fn public_fields() -> String {
    RESERVED_FIELDS
        .iter()
        .filter(|name| !name.starts_with('_'))
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(character: char) -> String {
    if character.is_control() {
        format!("the control character `{}`", character.escape_unicode())
    } else {
        format!("`{character}`")
    }
}

/// Checks that `name` can hold labels or embeddings, with FiftyOne's rules
/// (`fiftyone.core.fields.validate_field_name`: not empty, no `_` prefix,
/// no `$`) plus zoo's for flat fields: not one of the sample's own fields
/// ([`RESERVED_FIELDS`]), no `.` (an embedded path in FiftyOne), no `/`
/// or `\` (an export names a folder `fields/<field>` after it, which must
/// stay one plain name) and no control character.
pub fn validate_field_name(name: &str) -> Result<(), FieldNameError> {
    if name.is_empty() {
        return Err(FieldNameError::Empty);
    }
    if let Some(character) = name
        .chars()
        .find(|&character| matches!(character, '.' | '$' | '/' | '\\') || character.is_control())
    {
        return Err(FieldNameError::Character {
            name: name.to_owned(),
            character,
        });
    }
    if RESERVED_FIELDS.contains(&name) && !name.starts_with('_') {
        return Err(FieldNameError::Reserved(name.to_owned()));
    }
    if name.starts_with('_') {
        return Err(FieldNameError::Private(name.to_owned()));
    }
    Ok(())
}

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
    fn field_names_follow_fiftyone_rules() {
        let cases: &[(&str, Option<&str>)] = &[
            ("predictions", None),
            ("pred", None),
            ("pred_boxes", None),
            ("Filepath", None),
            ("résultats", None),
            ("", Some("cannot be empty")),
            ("filepath", Some("every FiftyOne sample has")),
            ("id", Some("every FiftyOne sample has")),
            ("tags", Some("every FiftyOne sample has")),
            ("metadata", Some("every FiftyOne sample has")),
            ("created_at", Some("every FiftyOne sample has")),
            ("last_modified_at", Some("every FiftyOne sample has")),
            ("_id", Some("starts with `_`")),
            ("_media_type", Some("starts with `_`")),
            ("_rand", Some("starts with `_`")),
            ("_dataset_id", Some("starts with `_`")),
            ("_mine", Some("starts with `_`")),
            ("a.b", Some("contains `.`")),
            ("$where", Some("contains `$`")),
            ("/tmp/x", Some("contains `/`")),
            ("a/b", Some("contains `/`")),
            ("a\\b", Some("contains `\\`")),
            ("pred\nx", Some("control character `\\u{a}`")),
            ("pred\u{7f}", Some("control character")),
        ];
        for (name, expected) in cases {
            match (validate_field_name(name), expected) {
                (Ok(()), None) => {}
                (Err(err), Some(expected)) => {
                    assert!(err.to_string().contains(expected), "{name:?}: {err}");
                }
                (result, expected) => panic!("{name:?}: {result:?}, expected {expected:?}"),
            }
        }
    }

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
