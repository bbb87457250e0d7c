//! The model interface of zoo: label types, the `Model` traits and the
//! apply/embed engine.
//!
//! This crate is laid out but not yet filled: see the project's issue on
//! model core, output processors and datasets.
