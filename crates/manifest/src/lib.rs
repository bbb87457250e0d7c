//! FiftyOne's model zoo `manifest.json` format, in Rust.
//!
//! - [`Manifest`] and [`ManifestModel`]: serde types for every field FiftyOne
//!   defines; unknown fields are kept and written back unchanged, and `null`
//!   reads as absent.
//! - [`versioned_name`], [`versioned_filename`], [`LooseVersion`]: how
//!   FiftyOne names versions and orders them.
//! - [`Zoo`]: several manifests merged with FiftyOne's conflict rules (a
//!   clashing model is skipped with a [`MergeWarning`], never fatal), with
//!   lookup by `name` or `name@version` and tag/source/license [`Filter`]s.
//! - [`Requirements`] with FiftyOne's error levels.
//! - [`FileName`], [`RelativePath`] and [`ManifestModel::files`]: the one
//!   place where manifest text becomes file and folder names; every manifest
//!   read checks them ([`ManifestError::UnsafePath`]).
//!
//! This crate reads only the files it is handed; it never touches the network
//! or the environment.
//!
//! ```
//! use zoo_manifest::{Manifest, Origin, Zoo};
//! let manifest = Manifest::from_slice(
//!     br#"{"name": "me/zoo", "models": [
//!         {"base_name": "net", "version": "1.0"},
//!         {"base_name": "net", "version": "1.10"}
//!     ]}"#,
//!     "manifest.json",
//! ).unwrap();
//! let mut zoo = Zoo::new();
//! zoo.merge(Origin::Builtin, manifest);
//! assert_eq!(zoo.get("net").unwrap().model.version.as_deref(), Some("1.10"));
//! assert_eq!(zoo.get("net@1.0").unwrap().name(), "net@1.0");
//! ```

mod error;
mod file_name;
mod manifest;
mod model;
mod name;
mod requirements;
mod version;
mod zoo;

pub use error::ManifestError;
pub use file_name::{
    FileName, MAX_NAME_BYTES, NameError, RelativePath, check_base_name, check_version, escape,
};
pub use manifest::{MAX_MANIFEST_BYTES, Manifest};
pub use model::{DeploymentConfig, Manager, ManifestModel, ModelFiles, UnsafeField, license_key};
pub use name::{split_extension, versioned_filename, versioned_name};
pub use requirements::{ErrorLevel, Requirements, RequirementsCheck, Support};
pub use version::LooseVersion;
pub use zoo::{Filter, MergeWarning, Origin, Zoo, ZooModel};
