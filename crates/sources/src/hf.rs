//! Hugging Face Hub downloads: a model repo's files at one commit.
//!
//! The Hub's HTTP API as `huggingface_hub`'s `snapshot_download` uses it:
//!
//! 1. `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true`
//!    answers the commit the revision points at (`sha`) and the repo's files
//!    (`siblings`: `rfilename`, `size`, and for LFS files `lfs.sha256`);
//! 2. each file comes from `{endpoint}/{repo}/resolve/{sha}/{path}`: small
//!    files in the answer itself, LFS files by a redirect to another host
//!    (the Hub's CDN), the sha256 repeated in `X-Linked-Etag`.
//!
//! The token (`HF_TOKEN`, read by the caller) is sent to the endpoint's own
//! origin only, never to the host a redirect leads to: redirects are
//! followed here, by hand. Every file lands in the folder given, under its
//! repo path (each path checked: no `..`, no absolute or hidden-above-root
//! names, no control characters), through [`fetch_file`] (partial file,
//! `Range` resume, retries, size and sha256 checks, atomic rename); an LFS
//! file whose bytes do not hash to the sha256 the Hub states is refused.
//! The resolved commit and the file list are recorded in
//! [`SNAPSHOT_RECORD`] beside the files.
//!
//! Written on ureq rather than with the `hf-hub` crate: `hf-hub` follows
//! redirects inside its HTTP client with the token attached, checks no
//! sha256, and keeps its own cache layout and locks, while zoo needs the
//! token scoped to the Hub's host, every LFS file verified, and its own zoo
//! dir, locks and resume.
//!
//! The layout of a finished download (the registry renames the folder into
//! place once every file is in):
//!
//! ```text
//! <model folder>/
//! ├── .zoo-hf.json          repo, revision asked, commit, endpoint, files
//! ├── config.json           the repo's files, at their repo paths
//! ├── model.safetensors
//! └── .model.safetensors.partial   (only while a transfer is unfinished)
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SourceError;
use crate::http::{HttpClient, transport_error};
use crate::progress::Progress;
use crate::transfer::{TransferOptions, fetch_file, fetch_with_first};

/// The public Hub.
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";

/// The record of a snapshot, beside its files.
pub const SNAPSHOT_RECORD: &str = ".zoo-hf.json";

/// The most files one repo may list.
const MAX_FILES: usize = 100_000;

/// The most bytes the revision API's answer may have.
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// Files of other frameworks' weights, which no FiftyOne model class
/// loads from a PyTorch repo (TensorFlow, Flax, ONNX, Core ML, OpenVINO,
/// TFLite, Rust): left out, as `snapshot_download`'s callers in FiftyOne's
/// integrations leave them out of what `from_pretrained` reads.
const SKIPPED_SUFFIXES: &[&str] = &[
    ".h5",
    ".msgpack",
    ".onnx",
    ".onnx_data",
    ".tflite",
    ".ot",
    ".mlmodel",
];
const SKIPPED_FOLDERS: &[&str] = &["onnx/", "openvino/", "coreml/", "tf/", "flax/"];

/// Why a Hub download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The repo id is not `name` or `owner/name` in the Hub's characters.
    #[error(
        "`{repo}` is not a Hugging Face repo id: {reason} (expected `owner/name`, letters, digits, `-`, `_`, `.`)"
    )]
    BadRepoId {
        /// The id as given.
        repo: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Hub refused access (401/403).
    #[error("the Hugging Face Hub refused access to `{url}` (HTTP {status}): {hint}")]
    Refused {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
        /// What to do.
        hint: String,
    },
    /// The repo, the revision or a file does not exist (404).
    #[error("`{url}` was not found on the Hugging Face Hub (HTTP 404): {hint}")]
    NotFound {
        /// The URL asked.
        url: String,
        /// What to check.
        hint: String,
    },
    /// The Hub answered something zoo cannot use.
    #[error("the Hugging Face Hub at `{url}` answered {message}; is `HF_ENDPOINT` a Hub?")]
    BadAnswer {
        /// The URL asked.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// A repo file's path cannot be a path under the model's folder.
    #[error("refusing file `{path}` of Hugging Face repo `{repo}`: {reason}")]
    UnsafeFile {
        /// The repo.
        repo: String,
        /// The path as the Hub listed it.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// What the Hub said about a file disagrees with itself (the revision
    /// API against the file's own headers).
    #[error(
        "file `{path}` of Hugging Face repo `{repo}`: the Hub's {what} is `{found}`, but its file list says `{expected}`; the download was stopped (try again; if it persists, the Hub or a proxy in between is serving other bytes)"
    )]
    Inconsistent {
        /// The repo.
        repo: String,
        /// The file.
        path: String,
        /// Which header disagreed.
        what: &'static str,
        /// What the file list said.
        expected: String,
        /// What the header said.
        found: String,
    },
    /// A redirect of an API call led to another host (the token would go
    /// there).
    #[error(
        "`{url}` redirected to `{location}`, on another host; zoo follows API redirects on the Hub's own host only (check `HF_ENDPOINT`)"
    )]
    ForeignRedirect {
        /// The URL asked.
        url: String,
        /// Where it pointed.
        location: String,
    },
    /// A transfer failed (network, size or sha256 check).
    #[error(transparent)]
    Transfer(#[from] SourceError),
    /// Local I/O failed (the error names its path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One file of a repo at a commit, as the revision API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoFile {
    /// The path inside the repo, `/`-separated.
    pub path: String,
    /// Its size in bytes, when the Hub gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For an LFS file: the sha256 of its content, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A repo at one commit: what [`SNAPSHOT_RECORD`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The repo id, `owner/name`.
    pub repo: String,
    /// The revision asked for (a branch, tag or commit).
    pub revision: String,
    /// The commit it resolved to (40 hex digits).
    pub commit: String,
    /// The endpoint the files came from.
    pub endpoint: String,
    /// The files downloaded, in the Hub's order.
    pub files: Vec<RepoFile>,
}

impl Snapshot {
    /// The record in `dir`, if there is a readable one.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = fs_err::read(dir.join(SNAPSHOT_RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// The revision API's answer, as far as zoo reads it.
#[derive(Debug, Deserialize)]
struct RevisionAnswer {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Debug, Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Debug, Deserialize)]
struct Lfs {
    sha256: String,
    #[serde(default)]
    size: Option<u64>,
}

/// A Hugging Face Hub client: the endpoint, the token (sent to the
/// endpoint's origin only) and the HTTP client.
#[derive(Debug, Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    http: HttpClient,
}

impl HubClient {
    /// A client for the Hub at `endpoint` (e.g. [`DEFAULT_HF_ENDPOINT`];
    /// the CLI reads `HF_ENDPOINT`), sending `token` (`HF_TOKEN`) when given.
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        Self {
            endpoint: endpoint.trim().trim_end_matches('/').to_owned(),
            token: token.filter(|token| !token.trim().is_empty()),
            http: HttpClient::new(),
        }
    }

    /// The endpoint, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn token_hint(&self) -> String {
        if self.token.is_some() {
            "the repo is private or gated and `HF_TOKEN` has no access to it: accept its terms on the Hub, or use a token that can read it".to_owned()
        } else {
            "the repo is private or gated: set `HF_TOKEN` to a Hugging Face token with access to it"
                .to_owned()
        }
    }

    /// A GET to the endpoint's origin with the token; redirects within that
    /// origin are followed (with the token), one to another origin is
    /// returned as it is, for the caller to follow without the token.
    fn get_on_hub(
        &self,
        url: &str,
        extra: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<(String, ureq::http::Response<ureq::Body>), HubError> {
        let authorization = self.token.as_ref().map(|token| format!("Bearer {token}"));
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(authorization) = authorization.as_deref() {
            headers.push(("Authorization", authorization));
        }
        let mut current = url.to_owned();
        for _ in 0..10 {
            let response = self.http.get(&current, &headers, false, timeout)?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|value| value.to_str().ok())
                .map(|location| crate::http::resolve_location(&current, location));
            match (matches!(status, 301 | 302 | 303 | 307 | 308), location) {
                (true, Some(next)) if same_origin(&next, &self.endpoint) => {
                    tracing::debug!(from = %current, to = %next, "following a redirect on the Hub");
                    current = next;
                }
                _ => return Ok((current, response)),
            }
        }
        Err(HubError::BadAnswer {
            url: url.to_owned(),
            message: "more than 10 redirects (a redirect loop?)".to_owned(),
        })
    }

    fn error_status(&self, url: &str, status: u16, what: &str) -> HubError {
        match status {
            401 | 403 => HubError::Refused {
                url: url.to_owned(),
                status,
                hint: self.token_hint(),
            },
            404 => HubError::NotFound {
                url: url.to_owned(),
                hint: format!(
                    "check the {what}; {}",
                    if self.token.is_some() {
                        "a private repo also answers 404 to a token without access"
                    } else {
                        "a private repo also answers 404 without `HF_TOKEN`"
                    }
                ),
            },
            _ => HubError::Transfer(SourceError::Status {
                url: url.to_owned(),
                status,
                detail: None,
                hint: crate::http::status_hint(status),
            }),
        }
    }

    /// The commit `revision` of `repo` points at, and its files.
    pub fn revision(
        &self,
        repo: &str,
        revision: &str,
        timeout: Duration,
    ) -> Result<(String, Vec<RepoFile>), HubError> {
        check_repo_id(repo)?;
        let url = format!(
            "{}/api/models/{repo}/revision/{}?blobs=true",
            self.endpoint,
            encode(revision, false)
        );
        let (url, response) = self.get_on_hub(&url, &[("Accept", "application/json")], timeout)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(self.error_status(&url, status, "repo id and the revision"));
        }
        let text = response
            .into_body()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|err| HubError::Transfer(transport_error(&url, &err, timeout)))?;
        let answer: RevisionAnswer =
            serde_json::from_str(&text).map_err(|err| HubError::BadAnswer {
                url: url.clone(),
                message: format!("JSON zoo cannot read ({err})"),
            })?;
        if !is_commit(&answer.sha) {
            return Err(HubError::BadAnswer {
                url,
                message: format!("`{}` as the commit, not 40 hex digits", answer.sha),
            });
        }
        if answer.siblings.len() > MAX_FILES {
            return Err(HubError::BadAnswer {
                url,
                message: format!("{} files, more than {MAX_FILES}", answer.siblings.len()),
            });
        }
        let mut files = Vec::new();
        for sibling in answer.siblings {
            check_file_path(repo, &sibling.rfilename)?;
            let sha256 = match sibling.lfs {
                Some(lfs) => {
                    let sha256 = lfs.sha256.to_ascii_lowercase();
                    if sha256.len() != 64 || !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                        return Err(HubError::BadAnswer {
                            url,
                            message: format!(
                                "`{}` as the sha256 of `{}`",
                                lfs.sha256, sibling.rfilename
                            ),
                        });
                    }
                    if lfs.size.is_some() && sibling.size.is_some() && lfs.size != sibling.size {
                        return Err(HubError::BadAnswer {
                            url,
                            message: format!("two sizes for `{}`", sibling.rfilename),
                        });
                    }
                    Some(sha256)
                }
                None => None,
            };
            files.push(RepoFile {
                path: sibling.rfilename,
                size: sibling.size,
                sha256,
            });
        }
        Ok((answer.sha.to_ascii_lowercase(), files))
    }

    /// Downloads `repo` at `revision` into `dir` (created if needed):
    /// resolves the revision to a commit, fetches every file the Hub lists
    /// (but other frameworks' weights: TensorFlow, Flax, ONNX, Core ML, OpenVINO, TFLite, Rust) that is not in `dir`
    /// already, and writes [`SNAPSHOT_RECORD`]. A `dir` holding another
    /// commit's files is emptied first. `options` gives retries, timeouts
    /// and the byte ceiling; each file's size and sha256 come from the Hub.
    pub fn snapshot(
        &self,
        repo: &str,
        revision: &str,
        dir: &Path,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<Snapshot, HubError> {
        let (commit, files) = self.revision(repo, revision, options.timeout)?;
        let files: Vec<RepoFile> = files
            .into_iter()
            .filter(|file| wanted(&file.path))
            .collect();
        let total: u64 = files.iter().filter_map(|file| file.size).sum();
        if total > options.max_bytes {
            return Err(HubError::BadAnswer {
                url: format!("{}/{repo}", self.endpoint),
                message: format!(
                    "{total} bytes of files, more than the download ceiling of {} (`ZOO_MAX_DOWNLOAD_BYTES`)",
                    options.max_bytes
                ),
            });
        }
        // Files of another commit (an interrupted download of an older
        // revision) must not be mixed with this one's.
        if let Some(previous) = Snapshot::read(dir)
            && previous.commit != commit
        {
            tracing::debug!(repo, old = %previous.commit, new = %commit, "discarding another commit's files");
            fs_err::remove_dir_all(dir)?;
        }
        fs_err::create_dir_all(dir)?;
        let snapshot = Snapshot {
            repo: repo.to_owned(),
            revision: revision.to_owned(),
            commit: commit.clone(),
            endpoint: self.endpoint.clone(),
            files: files.clone(),
        };
        // Written first, so a resumed download knows which commit the
        // files already here belong to.
        write_record(dir, &snapshot)?;
        for file in &files {
            let dest = file_dest(dir, repo, &file.path)?;
            if let (Some(size), Ok(meta)) = (file.size, fs_err::metadata(&dest))
                && meta.is_file()
                && meta.len() == size
            {
                tracing::debug!(file = file.path, "already downloaded");
                continue;
            }
            self.fetch_repo_file(repo, &commit, file, &dest, options, progress)?;
        }
        write_record(dir, &snapshot)?;
        Ok(snapshot)
    }

    /// One file: `resolve` on the Hub with the token; a redirect to another
    /// host (an LFS file on the CDN) is fetched without it.
    fn fetch_repo_file(
        &self,
        repo: &str,
        commit: &str,
        file: &RepoFile,
        dest: &Path,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<(), HubError> {
        let url = format!(
            "{}/{repo}/resolve/{commit}/{}",
            self.endpoint,
            encode(&file.path, true)
        );
        let checked = TransferOptions {
            sha256: file.sha256.clone(),
            size: file.size,
            ..options.clone()
        };
        let (url, response) =
            self.get_on_hub(&url, &[("Accept-Encoding", "identity")], options.timeout)?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(|value| {
                    value
                        .trim()
                        .trim_start_matches("W/")
                        .trim_matches('"')
                        .to_owned()
                })
        };
        if let Some(found) = header("x-repo-commit")
            && !found.eq_ignore_ascii_case(commit)
        {
            return Err(HubError::Inconsistent {
                repo: repo.to_owned(),
                path: file.path.clone(),
                what: "`X-Repo-Commit`",
                expected: commit.to_owned(),
                found,
            });
        }
        if let (Some(expected), Some(found)) = (&file.sha256, header("x-linked-etag"))
            && !found.eq_ignore_ascii_case(expected)
        {
            return Err(HubError::Inconsistent {
                repo: repo.to_owned(),
                path: file.path.clone(),
                what: "`X-Linked-Etag` (the LFS file's sha256)",
                expected: expected.clone(),
                found,
            });
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .map(|location| crate::http::resolve_location(&url, location));
        match (status, location) {
            (301 | 302 | 303 | 307 | 308, Some(location)) => {
                // Another host: no token, and the same checks and resume.
                drop(response);
                tracing::debug!(file = file.path, to = %location, "fetching from the CDN");
                fetch_file(&self.http, &location, dest, &checked, progress)?;
            }
            (200..=299, _) => {
                fetch_with_first(&self.http, &url, dest, &checked, progress, Some(response))?;
            }
            (status, _) => return Err(self.error_status(&url, status, "file")),
        }
        Ok(())
    }
}

/// Whether a repo file is downloaded: everything but other frameworks'
/// weights ([`SKIPPED_SUFFIXES`], [`SKIPPED_FOLDERS`]).
pub(crate) fn wanted(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !(SKIPPED_SUFFIXES
        .iter()
        .any(|suffix| lower.ends_with(suffix))
        || SKIPPED_FOLDERS
            .iter()
            .any(|folder| lower.starts_with(folder) || lower.contains(&format!("/{folder}"))))
}

fn write_record(dir: &Path, snapshot: &Snapshot) -> Result<(), HubError> {
    let text = serde_json::to_vec_pretty(snapshot).unwrap_or_default();
    zoo_fs::write_atomic(&dir.join(SNAPSHOT_RECORD), &text)?;
    Ok(())
}

/// The path of a repo file under `dir`, its parent folders created, after
/// checking it stays strictly inside `dir` (links resolved).
fn file_dest(dir: &Path, repo: &str, path: &str) -> Result<PathBuf, HubError> {
    check_file_path(repo, path)?;
    let dest = path
        .split('/')
        .fold(dir.to_path_buf(), |dest, part| dest.join(part));
    if let Some(parent) = dest.parent() {
        fs_err::create_dir_all(parent)?;
    }
    zoo_fs::ensure_inside(dir, &dest).map_err(|err| HubError::UnsafeFile {
        repo: repo.to_owned(),
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    Ok(dest)
}

/// A repo id: `name` or `owner/name`, each part of letters, digits, `-`,
/// `_` and `.`, not starting or ending with `-`/`.`, no `--`/`..`, at most 96
/// characters (the Hub's rules).
pub fn check_repo_id(repo: &str) -> Result<(), HubError> {
    let bad = |reason: &str| HubError::BadRepoId {
        repo: repo.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 {
        return Err(bad("it has more than one `/`"));
    }
    for part in parts {
        if part.is_empty() {
            return Err(bad("a part is empty"));
        }
        if part.len() > 96 {
            return Err(bad("a part is longer than 96 characters"));
        }
        if !part
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        {
            return Err(bad(
                "it holds a character other than letters, digits, `-`, `_`, `.`",
            ));
        }
        if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
            return Err(bad("a part starts or ends with `-` or `.`"));
        }
        if part.contains("--") || part.contains("..") {
            return Err(bad("it holds `--` or `..`"));
        }
    }
    Ok(())
}

/// A repo file path: `/`-separated parts, none empty, `.` or `..`, no `\`,
/// no control characters, not absolute, and not zoo's own record.
fn check_file_path(repo: &str, path: &str) -> Result<(), HubError> {
    let refuse = |reason: &str| HubError::UnsafeFile {
        repo: repo.to_owned(),
        path: path.escape_debug().to_string(),
        reason: reason.to_owned(),
    };
    if path.is_empty() || path.len() > 1024 {
        return Err(refuse("the path is empty or longer than 1024 bytes"));
    }
    if path.chars().any(char::is_control) || path.contains('\\') {
        return Err(refuse("the path holds a control character or `\\`"));
    }
    if path.starts_with('/') {
        return Err(refuse("the path is absolute"));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(refuse("a part of the path is empty, `.` or `..`"));
        }
        if part.len() > 255 {
            return Err(refuse("a part of the path is longer than 255 bytes"));
        }
        if part.starts_with('.') && part.ends_with(".partial") {
            return Err(refuse("the name is that of zoo's partial downloads"));
        }
    }
    if path == SNAPSHOT_RECORD {
        return Err(refuse("the name is that of zoo's own record"));
    }
    Ok(())
}

fn is_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Percent-encodes `text` for a URL path: unreserved characters kept, and
/// `/` too when `keep_slash` (a file path; a revision such as `refs/pr/1`
/// is one path segment, as `huggingface_hub` quotes it).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether `url` has the same scheme, host and port as `base`.
fn same_origin(url: &str, base: &str) -> bool {
    fn origin(url: &str) -> Option<(String, String)> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let host = authority.rsplit('@').next()?;
        Some((scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
    }
    origin(url).is_some() && origin(url) == origin(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_follow_the_hubs_rules() {
        for repo in [
            "facebook/detr-resnet-50",
            "gpt2",
            "Voxel51/fc-clip",
            "a.b/c_d-1",
        ] {
            assert!(check_repo_id(repo).is_ok(), "{repo}");
        }
        for repo in [
            "", "a//b", "/a", "a/b/c", "../x", "a/..", "a b/c", "a/b?c", "-a/b", "a/b.",
        ] {
            assert!(check_repo_id(repo).is_err(), "{repo}");
        }
    }

    #[test]
    fn file_paths_stay_inside_the_folder() {
        for path in [
            "config.json",
            "sub/model.safetensors",
            ".gitattributes",
            "a/.hidden",
        ] {
            assert!(check_file_path("r", path).is_ok(), "{path}");
        }
        for path in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
            ".zoo-hf.json",
            ".model.safetensors.partial",
        ] {
            assert!(check_file_path("r", path).is_err(), "{path:?}");
        }
    }

    #[test]
    fn other_frameworks_weights_are_left_out() {
        for (path, kept) in [
            ("model.safetensors", true),
            ("pytorch_model.bin", true),
            ("config.json", true),
            ("tf_model.h5", false),
            ("flax_model.msgpack", false),
            ("onnx/model.onnx", false),
            ("model.onnx", false),
            ("rust_model.ot", false),
            ("openvino/x.xml", false),
            ("sub/onnx/y", false),
        ] {
            assert_eq!(wanted(path), kept, "{path}");
        }
    }

    #[test]
    fn revisions_are_one_path_segment_and_files_keep_their_slashes() {
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(encode("main", false), "main");
        assert_eq!(encode("sub dir/a+b.json", true), "sub%20dir/a%2Bb.json");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(same_origin("http://127.0.0.1:8/x", "http://127.0.0.1:8"));
        assert!(!same_origin("http://127.0.0.1:9/x", "http://127.0.0.1:8"));
        assert!(!same_origin(
            "https://cdn.example/x",
            "https://huggingface.co"
        ));
        assert!(!same_origin("not a url", "https://huggingface.co"));
    }
}
