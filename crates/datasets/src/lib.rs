//! Datasets: the samples models run on and the labels they produce, kept in
//! SQLite.
//!
//! This crate is laid out but not yet filled: see the project's issue on
//! model core, output processors and datasets.
