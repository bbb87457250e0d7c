//! End-to-end tests: drive the `zoo` binary in throwaway zoo dirs against
//! loopback servers (a fake GitHub, archive and model servers).
#![allow(clippy::unwrap_used)]

mod apply;
mod catalogue;
mod clip;
mod corpus_sources;
mod detection;
mod dinov2;
mod downloads;
mod every_builtin;
mod fiftyone_cli;
mod fiftyone_db;
mod fiftyone_interop;
mod fiftyone_masks;
mod hooks;
mod hosted;
mod hosted_builtins;
mod hosted_prompts;
mod hosted_torch;
mod hostile_models;
mod inception;
mod library;
mod lock;
mod named_weights;
mod scale;
mod security_datasets;
mod security_host;
mod security_import;
mod security_paths;
mod security_transfers;
mod segmenters;
mod snapshots;
mod sources;
mod terminal;
mod tour;
mod transformers;
mod util;
mod yolo;
