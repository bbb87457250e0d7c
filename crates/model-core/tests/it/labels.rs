//! Property tests over label JSON, as a hosted model sends it (its
//! `Label.to_dict(extended=True)`, a stranger's bytes): whatever the JSON,
//! `Label::from_json` returns a clean error naming where it is wrong, or a
//! label that writes JSON it reads back.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use zoo_model_core::Label;

/// Keys and strings that label JSON is made of, extended JSON's included.
const WORDS: &[&str] = &[
    "_cls",
    "_id",
    "label",
    "confidence",
    "logits",
    "bounding_box",
    "mask",
    "points",
    "detections",
    "keypoints",
    "classifications",
    "tags",
    "attributes",
    "Classification",
    "Classifications",
    "Detection",
    "Detections",
    "Keypoint",
    "Keypoints",
    "Segmentation",
    "Polylines",
    "$numberDouble",
    "$numberInt",
    "$numberLong",
    "$binary",
    "$oid",
    "base64",
    "subType",
    "NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "1e400",
    "-0",
    "12",
    "9223372036854775808",
    "eJwLZGAAAA==",
    "",
    "\u{0}",
    "é",
];

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(WORDS).prop_map(str::to_owned)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|n| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)),
        (0.0..1.0f64).prop_map(|n| json!(n)),
        word().prop_map(Value::String),
        (word(), word()).prop_map(|(key, text)| json!({ key: text })),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Valid labels of each kind, as FiftyOne writes them (extended numbers
/// included), to be mutated.
fn valid_labels() -> Vec<Value> {
    let nan = json!({"$numberDouble": "NaN"});
    vec![
        json!({"_cls": "Classification", "label": "cat", "confidence": 0.5}),
        json!({"_cls": "Classifications", "classifications": [
            {"_cls": "Classification", "label": "a", "confidence": {"$numberDouble": "Infinity"}}
        ]}),
        json!({"_cls": "Detections", "detections": [
            {"_cls": "Detection", "label": "d", "bounding_box": [0.1, 0.2, 0.3, 0.4], "confidence": 0.9}
        ]}),
        json!({"_cls": "Keypoints", "keypoints": [
            {"_cls": "Keypoint", "label": "p", "points": [[nan, nan], [0.5, 0.5]], "confidence": [nan, 1.0]}
        ]}),
    ]
}

/// Replaces the value at a path picked by `choice` with `replacement`.
fn mutate(value: &mut Value, choice: usize, replacement: Value) {
    let children = match value {
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        _ => 0,
    };
    if children == 0 || choice.is_multiple_of(3) {
        *value = replacement;
        return;
    }
    let index = (choice / 3) % children;
    let child = match value {
        Value::Array(items) => items.get_mut(index),
        Value::Object(map) => map.values_mut().nth(index),
        _ => None,
    };
    if let Some(child) = child {
        mutate(child, choice / 7, replacement);
    }
}

fn check(value: &Value) -> Result<(), TestCaseError> {
    match Label::from_json(value) {
        Ok(label) => {
            let written = label.to_json();
            prop_assert!(
                Label::from_json(&written).is_ok(),
                "{value} read as {label:?}, whose own JSON {written} does not read"
            );
        }
        Err(err) => {
            let message = err.to_string();
            prop_assert!(
                message.starts_with("label JSON at `") || message.starts_with("label type `"),
                "{value}: {message}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_json_is_a_clean_error_or_a_label(value in any_json()) {
        check(&value)?;
    }

    #[test]
    fn mutated_fiftyone_labels_are_a_clean_error_or_a_label(
        which in 0..4usize,
        choice in any::<usize>(),
        replacement in any_json(),
    ) {
        let mut value = valid_labels()[which].clone();
        mutate(&mut value, choice, replacement);
        check(&value)?;
    }
}
