//! Integration tests of the registry against a fake GitHub and archive
//! server on loopback.
#![allow(clippy::unwrap_used)]

mod sources;

use std::path::Path;

use zoo_registry::{Registry, RegistryConfig};
use zoo_test_support::FakeGitHub;

pub(crate) fn registry(root: &Path, github: &FakeGitHub) -> Registry {
    let mut config = RegistryConfig::new(root);
    config.github_api_url = github.api_url();
    Registry::new(config)
}

/// Every file and folder under `root`, except the empty staging folder and
/// the lock file, which do not change what is registered.
pub(crate) fn snapshot(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    if !root.exists() {
        return names;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let relative = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            if relative == ".registry.lock" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
                if relative == ".tmp" {
                    continue;
                }
                names.push(format!("{relative}/"));
            } else {
                let bytes = fs_err::read(entry.path()).unwrap();
                names.push(format!("{relative} ({} bytes)", bytes.len()));
            }
        }
    }
    names.sort();
    names
}
