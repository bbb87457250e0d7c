//! The built-in resnet18 entry under another name, with untrained weights
//! served from a loopback server: what the quickstart runs offline and what
//! `bench_apply` runs always.
//!
//! The built-in entry runs torchvision's named weights, checked against the
//! sha256 prefix in their file name, which untrained weights cannot match:
//! a manifest of our own (`ZOO_MANIFEST_PATHS`) holds the built-in resnet18
//! entry under [`UNTRAINED`], downloading from the loopback server through
//! the same registry path.

use std::path::{Path, PathBuf};

use zoo_test_support::TestServer;

/// The name of the built-in resnet18 entry with untrained weights.
pub(crate) const UNTRAINED: &str = "resnet18-untrained-torch";

/// Writes seeded, untrained resnet18 weights into `work` (once), serves them
/// from `server`, and writes a manifest holding the built-in resnet18 entry
/// renamed [`UNTRAINED`] that downloads them. Returns the manifest's path,
/// for `ZOO_MANIFEST_PATHS`.
pub(crate) fn untrained_resnet18_manifest(work: &Path, server: &TestServer) -> PathBuf {
    let weights = work.join("untrained-resnet18.safetensors");
    if !weights.exists() {
        zoo_torch_backend::write_untrained_weights(
            "torchvision.models.resnet.resnet18",
            &weights,
            0,
        )
        .unwrap();
    }
    server.file(
        "/models/untrained-resnet18.pth",
        fs_err::read(&weights).unwrap(),
    );
    let builtin: serde_json::Value = serde_json::from_str(include_str!(
        "../../../registry/builtin/manifest-torch.json"
    ))
    .unwrap();
    let mut entry = builtin["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["base_name"] == "resnet18-imagenet-torch")
        .unwrap()
        .clone();
    let object = entry.as_object_mut().unwrap();
    object.remove("zoo_named_weights");
    object.insert("base_name".into(), UNTRAINED.into());
    object.insert("base_filename".into(), "untrained-resnet18.pth".into());
    entry["manager"]["config"]["url"] = server.url("/models/untrained-resnet18.pth").into();
    let manifest = work.join("untrained-manifest.json");
    fs_err::write(
        &manifest,
        serde_json::to_vec_pretty(&serde_json::json!({ "models": [entry] })).unwrap(),
    )
    .unwrap();
    manifest
}
