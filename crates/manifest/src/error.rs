//! Manifest errors.

use std::path::PathBuf;

use crate::model::UnsafeField;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("failed to read manifest `{path}`")]
    Read {
        /// The manifest file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any manifest zoo reads.
    #[error(
        "manifest `{path}` is larger than {limit} bytes; a manifest lists models, it does not hold them"
    )]
    TooLarge {
        /// The manifest file.
        path: PathBuf,
        /// The limit ([`crate::MAX_MANIFEST_BYTES`]).
        limit: u64,
    },
    /// The file is not valid JSON, or a field has the wrong shape.
    #[error("invalid manifest `{path}` at `{json_path}`: {message}")]
    Parse {
        /// The manifest file (or a label for in-memory bytes).
        path: PathBuf,
        /// Where in the document, e.g. `models[3].tags` (`.` for the top).
        json_path: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A model is unusable as written (an empty `base_name`, a name that
    /// escapes its folder, ...).
    #[error("invalid manifest `{path}` at `{json_path}`: {message}")]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// Where in the document.
        json_path: String,
        /// What was wrong.
        message: String,
    },
    /// A field would become a path that leaves its folder or collides with
    /// zoo's own files (see [`crate::FileName`]).
    #[error(
        "invalid manifest `{path}` at `{json_path}`: {field}; names from a manifest must stay inside its folder and clear of zoo's own files: fix the manifest (or ask its author to)"
    )]
    UnsafePath {
        /// The manifest file.
        path: PathBuf,
        /// Where in the document, e.g. `models[2].version`.
        json_path: String,
        /// The field, its value and the problem.
        field: Box<UnsafeField>,
    },
}
