//! Output processors: raw model outputs to labels (classifier, detector,
//! instance and semantic segmenters, keypoints).
//!
//! This crate is laid out but not yet filled: see the project's issue on
//! model core, output processors and datasets.
