//! Samples whose images live in object storage.
//!
//! A dataset made from an object-store URL keeps each sample's URL as its
//! file path (`s3://bucket/prefix/a.jpg`); [`ObjectLoader`] fetches those
//! through a [`RemoteBytes`] the caller provides (the CLI wires
//! `zoo-storage` in) and decodes them exactly as local files, within the
//! same [`ImageLimits`].

use std::path::Path;
use std::sync::Arc;

use zoo_model_core::{Image, ImageLoader, Sample};

use crate::loader::{FileLoader, ImageLimits, decode_bytes_within};

/// Reads the bytes of an object-store URL.
pub trait RemoteBytes: Send + Sync + std::fmt::Debug {
    /// The object's bytes, at most `max_bytes` of them, or why not.
    fn fetch(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, String>;
}

/// Whether a stored sample path is a URL (`scheme://...`) rather than a
/// local path: local paths in a dataset are absolute, so they start with
/// `/` and never look like this.
pub fn is_url(path: &Path) -> bool {
    path.to_str().is_some_and(|text| {
        text.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
        })
    })
}

/// Loads local files like [`FileLoader`], and URLs through a [`RemoteBytes`].
#[derive(Debug, Clone)]
pub struct ObjectLoader {
    files: FileLoader,
    limits: ImageLimits,
    remote: Option<Arc<dyn RemoteBytes>>,
}

impl ObjectLoader {
    /// A loader within `limits`; URLs fail unless `remote` is given.
    pub fn new(limits: ImageLimits, remote: Option<Arc<dyn RemoteBytes>>) -> Self {
        Self {
            files: FileLoader::new(limits),
            limits,
            remote,
        }
    }
}

impl ImageLoader for ObjectLoader {
    fn load(&self, sample: &Sample) -> Result<Image, String> {
        if !is_url(&sample.filepath) {
            return self.files.load(sample);
        }
        let url = sample.filepath.to_string_lossy();
        let remote = self
            .remote
            .as_ref()
            .ok_or_else(|| format!("`{url}` is in object storage, which this run cannot read"))?;
        let bytes = remote
            .fetch(&url, self.limits.max_bytes)
            .map_err(|error| format!("fetching `{url}` failed: {error}"))?;
        decode_bytes_within(&sample.filepath, bytes, &self.limits).map_err(|err| err.to_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_local_paths() {
        for (path, expected) in [
            ("s3://bucket/a.jpg", true),
            ("file:///x/a.jpg", true),
            ("/data/s3://odd/a.jpg", false),
            ("/data/a.jpg", false),
            ("S3://b/a.jpg", false),
            ("://a", false),
        ] {
            assert_eq!(is_url(Path::new(path)), expected, "{path}");
        }
    }
}
