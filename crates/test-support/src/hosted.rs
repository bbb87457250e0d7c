//! A source for the model host's tests: its `__init__.py` returns FiftyOne
//! models written with numpy only (see `hosted_source.py` for the models
//! and the `load_model` kwargs they take).

use serde_json::{Value, json};

/// The source's `__init__.py`.
pub const HOSTED_SOURCE: &str = include_str!("hosted_source.py");

/// The names (after `zoo-test/`) of the models the source defines.
pub const HOSTED_MODELS: &[&str] = &[
    "colour",
    "boxes",
    "echo",
    "environment",
    "bad-output",
    "not-a-model",
    "needs-missing",
    "raises",
    "config",
];

/// The source's `manifest.json`: every model downloads through the
/// source's `download_model` and loads through its `load_model`.
pub fn hosted_manifest() -> Value {
    let models: Vec<Value> = HOSTED_MODELS
        .iter()
        .map(|name| {
            json!({
                "base_name": format!("zoo-test/{name}"),
                "base_filename": format!("{name}.txt"),
                "description": "a numpy model for the model host's tests",
                "tags": ["classification", "embeddings", "numpy"],
                "requirements": {"packages": ["numpy", "fiftyone"]},
            })
        })
        .collect();
    json!({"name": "zoo-test/hosted", "models": models})
}
