//! Reading checkpoints: `torch.save` zips (`zip_archive.rs`), the bounded
//! unpickler (`pickle.rs`), pickled module trees (`modules.rs`:
//! Ultralytics' release checkpoints), legacy and safetensors files and loading into a
//! variable store (`weights.rs`), and torchvision's loader renames
//! (`renames.rs`).
//!
//! **Architecture Invariant:** knows no family: which renames a network's
//! checkpoint needs is a row of the family table (`families`).

pub(crate) mod modules;
pub(crate) mod pickle;
pub(crate) mod renames;
pub(crate) mod weights;
pub(crate) mod zip_archive;
