//! Sources for the model host's tests: one whose `__init__.py` returns
//! FiftyOne models written with numpy only (see `hosted_source.py` for the
//! models and the `load_model` kwargs they take), and one whose models need
//! torch and torchvision (`hosted_torch_source.py`: a `TorchImageModel` and
//! other `TorchModelMixin`s with seeded weights).

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
    "threads",
    "prompts",
    "shapes",
    "prompted",
    "needs-prompts",
];

/// The torch source's `__init__.py` (needs torch and torchvision).
pub const HOSTED_TORCH_SOURCE: &str = include_str!("hosted_torch_source.py");

/// The names (after `zoo-test/`) of the models the torch source defines.
pub const HOSTED_TORCH_MODELS: &[&str] = &["resnet18", "resnet18-pil", "tiny", "torch-threads"];

/// The torch source's `manifest.json` (source `zoo-test/hosted-torch`).
pub fn hosted_torch_manifest() -> Value {
    manifest(
        "zoo-test/hosted-torch",
        HOSTED_TORCH_MODELS,
        &["torch", "torchvision", "fiftyone"],
    )
}

/// The source's `manifest.json`: every model downloads through the
/// source's `download_model` and loads through its `load_model`.
pub fn hosted_manifest() -> Value {
    manifest("zoo-test/hosted", HOSTED_MODELS, &["numpy", "fiftyone"])
}

/// A manifest whose models download through the source's `download_model`
/// and load through its `load_model`.
fn manifest(source: &str, names: &[&str], packages: &[&str]) -> Value {
    let models: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({
                "base_name": format!("zoo-test/{name}"),
                "base_filename": format!("{name}.txt"),
                "description": "a model for the model host's tests",
                "tags": ["classification", "embeddings"],
                "requirements": {"packages": packages},
            })
        })
        .collect();
    json!({"name": source, "models": models})
}
