//! The local zoo registry: the zoo dir, the sources registered in it, and
//! the merged list of models they offer.
//!
//! The zoo dir (chosen by the caller; the CLI reads `ZOO_MODEL_ZOO_DIR`):
//!
//! ```text
//! <zoo dir>/
//! ├── sources-v1.json        registered sources: identifier, normalised URL,
//! │                          commit, trust, and the folders each installed
//! ├── .registry.lock         held exclusively while sources change
//! ├── .locks/                one lock per model: one download at a time
//! ├── <builtin model files>  built-in and custom-manifest models
//! ├── .tmp/                  staging: fetches, extractions, hook outputs and
//! │   └── register-XXXX/     overwrites happen here, then are renamed into
//! │       └── .owner.lock    place (same filesystem); each folder holds a
//! │                          lock while its process lives, and folders of
//! │                          dead processes are removed under the registry
//! │                          lock
//! └── voxel51/openai-clip/   one installed source (named by its manifest):
//!     ├── manifest.json      `url` rewritten to the registered identifier
//!     ├── ...                the source's files
//!     ├── model-v2.pt        a downloaded model (versioned filename)
//!     └── .model.pt.partial  a download in progress or interrupted
//! ```
//!
//! Every change is staged in `.tmp/` and renamed into place under the lock,
//! so a crash or a concurrent process never sees half a source. Reading
//! (listing models) takes no lock: it reads the index and one manifest per
//! installed source, and walks no folders.
//!
//! Paths: every name from a manifest becomes a path only through
//! [`zoo_manifest::ManifestModel::files`] and
//! [`zoo_manifest::Manifest::install_dir`] (checked when a manifest is read),
//! and right before each write, delete, extraction or hook call the path is
//! checked to be strictly inside its source's folder (or the zoo dir for
//! built-in and custom-manifest models, where it also must not be a source's
//! folder), with symbolic links resolved ([`zoo_fs::ensure_inside`]).
//!
//! This crate reads no environment variables; [`RegistryConfig`] carries
//! everything.

mod error;
mod hooks;
mod index;
mod load;
mod models;
mod named_weights;
mod registry;

pub use error::RegistryError;
pub use index::{InstalledManifest, RegisteredSource};
pub use load::{LoadPath, LoadPlan, PythonLoad};
pub use models::Downloaded;
pub use named_weights::{FIELD as NAMED_WEIGHTS_FIELD, NamedWeights, named_weights};
pub use registry::{DEFAULT_HOOK_TIMEOUT, RegisterOutcome, Registry, RegistryConfig, ZooView};

/// The built-in manifest: FiftyOne's torchvision classifiers, semantic
/// segmenters and detectors that zoo runs natively, then its PyTorch Hub
/// models zoo builds natively (DINOv2, and FiftyOne's CLIP ViT-B/32:
/// `builtin/manifest-hub.json`; see `builtin/README.md`).
pub fn builtin_manifest() -> zoo_manifest::Manifest {
    const TEXT: &str = include_str!("../builtin/manifest-torch.json");
    const HUB: &str = include_str!("../builtin/manifest-hub.json");
    // Checked by a test; a broken built-in manifest is a build defect.
    let mut manifest =
        zoo_manifest::Manifest::from_slice(TEXT.as_bytes(), "builtin/manifest-torch.json")
            .unwrap_or_default();
    if let Ok(hub) = zoo_manifest::Manifest::from_slice(HUB.as_bytes(), "builtin/manifest-hub.json")
    {
        manifest.models.extend(hub.models);
    }
    manifest
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_builtin_manifest_parses_with_fiftyones_names() {
        const TEXT: &str = include_str!("../builtin/manifest-torch.json");
        let manifest =
            zoo_manifest::Manifest::from_slice(TEXT.as_bytes(), "manifest-torch.json").unwrap();
        // 22 classifiers, then 9 more, the 4 semantic segmenters and 4
        // detectors (Keypoint R-CNN the last).
        assert_eq!(manifest.models.len(), 39);
        for name in [
            "googlenet-imagenet-torch",
            "wide-resnet101-2-imagenet-torch",
            "deeplabv3-resnet50-coco-torch",
            "fcn-resnet101-coco-torch",
            "faster-rcnn-resnet50-fpn-coco-torch",
            "keypoint-rcnn-resnet50-fpn-coco-torch",
        ] {
            assert!(
                manifest.models.iter().any(|model| model.base_name == name),
                "{name}"
            );
        }
        let resnet18 = manifest
            .models
            .iter()
            .find(|model| model.base_name == "resnet18-imagenet-torch")
            .unwrap();
        assert_eq!(
            resnet18.base_filename.as_deref(),
            Some("resnet18-5c106cde.pth")
        );
        assert_eq!(
            resnet18.download_manager().unwrap().config["url"],
            "https://download.pytorch.org/models/resnet18-5c106cde.pth"
        );
        const HUB: &str = include_str!("../builtin/manifest-hub.json");
        let hub = zoo_manifest::Manifest::from_slice(HUB.as_bytes(), "manifest-hub.json").unwrap();
        assert_eq!(hub.models.len(), 9);
        let mut both = manifest.clone();
        both.models.extend(hub.models);
        assert_eq!(super::builtin_manifest(), both);
    }
}
