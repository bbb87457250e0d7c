//! Integration tests of the registry against a fake GitHub and archive
//! server on loopback.
#![allow(clippy::unwrap_used)]

mod catalogue;
mod class_defaults;
mod hf;
mod hub_weights;
mod named_weights;
mod paths;
mod policy;
mod sources;

use std::path::Path;

use zoo_registry::{Registry, RegistryConfig};
use zoo_test_support::FakeGitHub;

pub(crate) fn registry(root: &Path, github: &FakeGitHub) -> Registry {
    let mut config = RegistryConfig::new(root);
    config.github_api_url = github.api_url();
    Registry::new(config)
}

pub(crate) use zoo_test_support::dir_snapshot as snapshot;
