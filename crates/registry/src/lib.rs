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

mod bundle;
mod digest;
mod error;
mod hooks;
mod hub;
mod index;
mod load;
mod models;
mod named_weights;
mod registry;

pub use digest::{FileDigest, WeightsDigest};
pub use error::RegistryError;
pub use hub::OtherRepo;
pub use index::{InstalledManifest, RegisteredSource};
pub use load::{LoadPath, LoadPlan, NATIVE_TYPES, PythonLoad, check_native, config_load_path};
pub use models::Downloaded;
pub use named_weights::{FIELD as NAMED_WEIGHTS_FIELD, NamedWeights, named_weights};
pub use registry::{DEFAULT_HOOK_TIMEOUT, RegisterOutcome, Registry, RegistryConfig, ZooView};

/// FiftyOne 1.22.1's built-in manifests as zoo ships them (file name, text),
/// in the order their models are listed: every entry of FiftyOne's
/// `manifest-torch.json`, `manifest-tf.json` and `manifest-hosted.json`,
/// field for field, the natively built ones with zoo's extension fields
/// (`zoo_named_weights`, `zoo_hub_weights`); see `builtin/README.md`.
pub const BUILTIN_MANIFESTS: [(&str, &str); 3] = [
    (
        "builtin/manifest-torch.json",
        include_str!("../builtin/manifest-torch.json"),
    ),
    (
        "builtin/manifest-tf.json",
        include_str!("../builtin/manifest-tf.json"),
    ),
    (
        "builtin/manifest-hosted.json",
        include_str!("../builtin/manifest-hosted.json"),
    ),
];

/// The built-in catalogue: FiftyOne's whole zoo (336 models), merged from
/// [`BUILTIN_MANIFESTS`]. The 68 entries zoo builds natively (FiftyOne's 39
/// torchvision models, 8 DINOv2, CLIP ViT-B/32, YOLOv8 n/s/m/l/x detection
/// and the transformers ViT, ConvNeXt, EfficientNet and generic
/// classifiers) run in zoo's backend;
/// the others run through FiftyOne's own class in the model host
/// ([`Registry::load_path`] says which).
pub fn builtin_manifest() -> zoo_manifest::Manifest {
    let mut manifest = zoo_manifest::Manifest::default();
    for (label, text) in BUILTIN_MANIFESTS {
        // Checked by a test; a broken built-in manifest is a build defect.
        if let Ok(part) = zoo_manifest::Manifest::from_slice(text.as_bytes(), label) {
            manifest.models.extend(part.models);
        }
    }
    manifest
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_builtin_manifest_parses_with_fiftyones_names() {
        let mut counts = Vec::new();
        let mut all = Vec::new();
        for (label, text) in super::BUILTIN_MANIFESTS {
            let manifest = zoo_manifest::Manifest::from_slice(text.as_bytes(), label).unwrap();
            counts.push(manifest.models.len());
            all.extend(manifest.models);
        }
        // FiftyOne 1.22.1's torch, TensorFlow and hosted manifests.
        assert_eq!(counts, [283, 50, 3]);
        for name in [
            "googlenet-imagenet-torch",
            "wide-resnet101-2-imagenet-torch",
            "deeplabv3-resnet50-coco-torch",
            "keypoint-rcnn-resnet50-fpn-coco-torch",
            "dinov2-vitg14-reg-torch",
            "clip-vit-base32-torch",
            "yolov8n-coco-torch",
            "ssd-mobilenet-v1-coco-tf",
        ] {
            assert!(all.iter().any(|model| model.base_name == name), "{name}");
        }
        let resnet18 = all
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
        assert_eq!(super::builtin_manifest().models, all);
    }
}
