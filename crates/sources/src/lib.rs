//! Where zoo sources come from, and getting them safely onto disk.
//!
//! - [`SourceId`]: the four kinds of source identifiers (GitHub URLs with or
//!   without `tree/<ref>[/<path>]` or `commit/<sha>`, `user/repo[/ref]`, and
//!   archive URLs), normalised so two spellings of one source are equal.
//! - [`GitHub`]: the REST API calls zoo makes (default branch, commit lookup,
//!   zipball), with `GITHUB_TOKEN` sent to the API host only and helpful
//!   errors for 401/403/404 and rate limits.
//! - [`fetch_file`]: the one download routine, for sources and models alike
//!   (only `http(s)` URLs; resume checked against `Content-Range`; bodies cut
//!   off at their `Content-Length` or declared size; connect and idle-read
//!   timeouts; bounded retries; verify; atomic rename), and
//!   [`fetch_google_drive`].
//! - [`extract`]: zip, tar and tar.gz extraction that refuses entries escaping
//!   the target (`..`, absolute names, links pointing out) and caps total
//!   size and entry count.
//! - [`fetch_source`]: all of the above: a source's tree in a directory.
//! - [`HubClient`]: a Hugging Face Hub repo's files at one commit, through
//!   the Hub's HTTP API (`HF_TOKEN` sent to the Hub's host only, every LFS
//!   file checked against the sha256 the Hub states).
//!
//! This crate reads no environment variables: callers pass the API URLs, the
//! tokens and the timeout ([`TransferOptions::timeout`]). It writes only
//! inside the directories it is given.
//!
//! ```
//! use zoo_sources::SourceId;
//! let a: SourceId = "voxel51/openai-clip".parse().unwrap();
//! let b: SourceId = "https://github.com/voxel51/openai-clip.git/".parse().unwrap();
//! assert_eq!(a.normalized(), b.normalized());
//! ```

mod archive;
mod error;
mod fetch;
mod github;
mod hf;
mod http;
mod identifier;
mod patience;
mod progress;
mod transfer;

pub use archive::{ArchiveKind, ExtractLimits, ExtractStats, extract, write_tar_zst};
pub use error::SourceError;
pub use fetch::{FetchedSource, fetch_source};
pub use github::{DEFAULT_API_URL, GitHub};
pub use hf::{
    DEFAULT_HF_ENDPOINT, HubClient, HubError, RepoFile, SNAPSHOT_RECORD, Snapshot, check_repo_id,
};
pub use http::{DEFAULT_TIMEOUT, HttpClient};
pub use identifier::{GitHubRef, SourceId};
pub use progress::{NoProgress, Progress};
pub use transfer::{
    DEFAULT_MAX_DOWNLOAD_BYTES, PATIENCE_TIMEOUTS, TransferOptions, fetch_file, fetch_google_drive,
    partial_path, sha256_file,
};
