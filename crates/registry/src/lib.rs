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
//! ├── .tmp/                  staging: fetches and installs happen here, then
//! │                          are renamed into place (same filesystem)
//! └── voxel51/openai-clip/   one installed source (named by its manifest):
//!     ├── manifest.json      `url` rewritten to the registered identifier
//!     └── ...                the source's files, later its downloaded models
//! ```
//!
//! Every change is staged in `.tmp/` and renamed into place under the lock,
//! so a crash or a concurrent process never sees half a source. Reading
//! (listing models) takes no lock: it reads the index and one manifest per
//! installed source, and walks no folders.
//!
//! This crate reads no environment variables; [`RegistryConfig`] carries
//! everything.

mod error;
mod index;
mod registry;

pub use error::RegistryError;
pub use index::{InstalledManifest, RegisteredSource};
pub use registry::{RegisterOutcome, Registry, RegistryConfig, ZooView};
