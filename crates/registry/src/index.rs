//! `sources-v1.json`: what is registered.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// The index file's name (versioned: a new layout gets a new name).
pub(crate) const INDEX_FILE: &str = "sources-v1.json";

/// One manifest a source installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledManifest {
    /// The manifest's `name`.
    pub name: String,
    /// Its folder relative to the zoo dir, `/`-separated.
    pub dir: String,
}

/// A registered source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredSource {
    /// The identifier as the user registered it.
    pub identifier: String,
    /// The normalised URL: the source's identity.
    pub url: String,
    /// The commit it was fetched at (GitHub sources).
    #[serde(default)]
    pub commit: Option<String>,
    /// Whether its hooks may run.
    #[serde(default)]
    pub trusted: bool,
    /// When it was registered, seconds since the Unix epoch.
    #[serde(default)]
    pub registered_at: u64,
    /// The manifests it installed.
    pub manifests: Vec<InstalledManifest>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Index {
    pub(crate) sources: Vec<RegisteredSource>,
}

impl Index {
    pub(crate) fn path(root: &Path) -> PathBuf {
        root.join(INDEX_FILE)
    }

    /// Reads the index; a missing file is an empty registry.
    pub(crate) fn read(root: &Path) -> Result<Self, RegistryError> {
        let path = Self::path(root);
        let bytes = match fs_err::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(err.into()),
        };
        serde_json::from_slice(&bytes).map_err(|err| RegistryError::CorruptIndex {
            path,
            message: err.to_string(),
        })
    }

    pub(crate) fn write(&self, root: &Path) -> Result<(), RegistryError> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        zoo_fs::write_atomic(&Self::path(root), &json)?;
        Ok(())
    }

    pub(crate) fn by_url(&self, url: &str) -> Option<&RegisteredSource> {
        self.sources.iter().find(|source| source.url == url)
    }

    /// The source whose installed folder is `dir`, or contains it, or lies
    /// inside it.
    pub(crate) fn owner_of_dir(&self, dir: &str) -> Option<&RegisteredSource> {
        self.sources.iter().find(|source| {
            source
                .manifests
                .iter()
                .any(|manifest| overlaps(&manifest.dir, dir))
        })
    }
}

/// Whether one `/`-separated folder is the other or an ancestor of it.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    let (shorter, longer) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    longer == shorter || longer.starts_with(&format!("{shorter}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_folders() {
        assert!(overlaps("a/b", "a/b"));
        assert!(overlaps("a", "a/b"));
        assert!(overlaps("a/b/c", "a/b"));
        assert!(!overlaps("a/b", "a/bc"));
        assert!(!overlaps("x", "y"));
    }
}
