//! A fake of the Hugging Face Hub's HTTP API as `huggingface_hub` (and zoo)
//! use it, on two loopback servers.
//!
//! On [`FakeHub::hub`] (the endpoint, `HF_ENDPOINT`):
//!
//! - `GET /api/models/{owner}/{name}/revision/{revision}[?blobs=true]`: the
//!   commit (`sha`) and the files (`siblings`: `rfilename`, and with
//!   `blobs=true` also `blobId`, `size` and, for LFS files, `lfs` with
//!   `sha256`, `size`, `pointerSize`), the revision a branch, a tag or the
//!   commit itself, percent-encoded as one path segment;
//! - `GET /api/models/{owner}/{name}/tree/{revision}[/{folder}][?recursive=true]`:
//!   the files (`oid`, `size`, `lfs`) and folders, as `snapshot_download`
//!   lists a repo;
//! - `GET /{owner}/{name}/resolve/{revision}/{path}`: a small file in the
//!   answer (`200`, `ETag` the git blob id, `X-Repo-Commit`, ranges
//!   honoured); an LFS file by `302` to the CDN host, with `X-Linked-Etag`
//!   (its sha256, quoted), `X-Linked-Size` and `X-Repo-Commit`, as the real
//!   Hub answers.
//!
//! On [`FakeHub::cdn`]: `GET /repos/{sha256}`, the LFS file's bytes, ranges
//! honoured; [`FakeHub::tamper`] makes it serve other bytes.
//!
//! A private repo answers `401` without the token, or with another one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::github::fake_sha;
use crate::server::{Request, Response, TestServer, file_response};

/// A repo on the fake Hub: its files at one commit.
#[derive(Debug, Clone)]
pub struct HubRepo {
    id: String,
    commit: String,
    branches: Vec<String>,
    private: bool,
    /// Path to (bytes, stored in LFS).
    files: BTreeMap<String, (Vec<u8>, bool)>,
}

impl HubRepo {
    /// A public repo `owner/name` whose `main` points at a commit made from
    /// `seed`, with no files yet.
    pub fn new(id: &str, seed: &str) -> Self {
        Self {
            id: id.to_owned(),
            commit: fake_sha(&format!("hub:{id}:{seed}")),
            branches: vec!["main".to_owned()],
            private: false,
            files: BTreeMap::new(),
        }
    }

    /// The Hub's tree listing of `folder` (`""`: the root), as
    /// `GET /api/models/{id}/tree/{revision}` answers: files with `oid`
    /// (the git blob id), `size` and, in LFS, `lfs` (`oid` the sha256);
    /// folders as `directory` entries; with `recursive`, everything below.
    fn tree(&self, folder: &str, recursive: bool) -> serde_json::Value {
        let prefix = if folder.is_empty() {
            String::new()
        } else {
            format!("{}/", folder.trim_end_matches('/'))
        };
        let mut folders = std::collections::BTreeSet::new();
        let mut entries = Vec::new();
        for (path, (bytes, lfs)) in &self.files {
            let Some(rest) = path.strip_prefix(&prefix) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            for depth in 1..parts.len() {
                if recursive || depth == 1 {
                    folders.insert(format!("{prefix}{}", parts[..depth].join("/")));
                }
            }
            if parts.len() > 1 && !recursive {
                continue;
            }
            let mut entry = json!({
                "type": "file",
                "oid": fake_sha(&format!("blob:{}", sha256_hex(bytes))),
                "size": bytes.len(),
                "path": path,
            });
            if *lfs {
                entry["lfs"] =
                    json!({"oid": sha256_hex(bytes), "size": bytes.len(), "pointerSize": 134});
            }
            entries.push(entry);
        }
        let mut listing: Vec<serde_json::Value> = folders
            .into_iter()
            .map(|path| json!({"type": "directory", "oid": fake_sha(&format!("tree:{path}")), "size": 0, "path": path}))
            .collect();
        listing.extend(entries);
        serde_json::Value::Array(listing)
    }

    /// A file kept in git (small: config, tokenizer).
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.to_owned(), (bytes.into(), false));
        self
    }

    /// A file kept in LFS (weights), served from the CDN host.
    pub fn lfs_file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.to_owned(), (bytes.into(), true));
        self
    }

    /// The commit every branch points at, instead of one made from the seed
    /// (a manifest that pins a `revision`).
    pub fn at_commit(mut self, sha: &str) -> Self {
        self.commit = sha.to_owned();
        self
    }

    /// Another branch pointing at the same commit.
    pub fn branch(mut self, name: &str) -> Self {
        self.branches.push(name.to_owned());
        self
    }

    /// Only the token ([`FakeHub::set_token`]) may read it.
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// The commit every branch points at.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    fn resolves(&self, revision: &str) -> bool {
        revision == self.commit || self.branches.iter().any(|branch| branch == revision)
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A `safetensors` file holding `tensors` (name, shape, `f32` values), in
/// the format's layout: an 8-byte little-endian header length, the JSON
/// header (offsets into the data, `__metadata__`), padded with spaces to a
/// multiple of 8, then the little-endian data.
pub fn safetensors_bytes(tensors: &[(&str, &[usize], &[f32])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for value in *values {
            data.extend_from_slice(&value.to_le_bytes());
        }
        header.insert(
            (*name).to_owned(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut text = serde_json::Value::Object(header).to_string().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(data);
    out
}

#[derive(Debug, Default)]
struct HubState {
    repos: BTreeMap<String, HubRepo>,
    token: Option<String>,
    /// sha256 to the bytes the CDN serves instead.
    tampered: BTreeMap<String, Vec<u8>>,
    /// The next LFS answer of the CDN is cut after this many bytes.
    cut_next: Option<usize>,
}

/// The Hub's endpoint and its CDN on two loopback servers.
#[derive(Debug)]
pub struct FakeHub {
    /// The endpoint (`HF_ENDPOINT`).
    pub hub: TestServer,
    /// The host LFS redirects lead to.
    pub cdn: TestServer,
    state: Arc<Mutex<HubState>>,
}

fn lock(state: &Mutex<HubState>) -> MutexGuard<'_, HubState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeHub {
    /// Starts both hosts with no repos.
    pub fn start() -> Self {
        let hub = TestServer::start();
        let cdn = TestServer::start();
        let state = Arc::new(Mutex::new(HubState::default()));
        let cdn_base = cdn.base_url();
        let hub_state = Arc::clone(&state);
        hub.fallback(move |request| hub_answer(&lock(&hub_state), request, &cdn_base));
        let cdn_state = Arc::clone(&state);
        cdn.fallback(move |request| cdn_answer(&mut lock(&cdn_state), request));
        Self { hub, cdn, state }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        self.hub.base_url()
    }

    /// Adds (or replaces) a repo.
    pub fn add_repo(&self, repo: HubRepo) {
        lock(&self.state).repos.insert(repo.id.clone(), repo);
    }

    /// The token private repos require (`Authorization: Bearer <token>`).
    pub fn set_token(&self, token: Option<&str>) {
        lock(&self.state).token = token.map(str::to_owned);
    }

    /// Cuts the CDN's next full answer for an LFS file after `after` body
    /// bytes (the connection drops, as when a download is interrupted).
    pub fn cut_next_download(&self, after: usize) {
        lock(&self.state).cut_next = Some(after);
    }

    /// Makes the CDN serve `bytes` for the LFS file whose content hashes to
    /// `sha256` (the Hub keeps stating the true sha256).
    pub fn tamper(&self, sha256: &str, bytes: impl Into<Vec<u8>>) {
        lock(&self.state)
            .tampered
            .insert(sha256.to_owned(), bytes.into());
    }
}

fn hub_error(status: u16, code: &str, message: &str) -> Response {
    Response::json(status, &json!({ "error": message })).header("X-Error-Code", code)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%' && index + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[index + 1..index + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = escaped {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The repo a request may read, or the error the Hub gives.
fn readable<'a>(state: &'a HubState, id: &str, request: &Request) -> Result<&'a HubRepo, Response> {
    let not_found = || {
        hub_error(
            401,
            "RepoNotFound",
            "Repository Not Found for url. Please make sure you specified the correct `repo_id` and `repo_type`. If you are trying to access a private or gated repo, make sure you are authenticated.",
        )
    };
    let repo = state.repos.get(id).ok_or_else(not_found)?;
    if repo.private {
        let wanted = state.token.as_ref().map(|token| format!("Bearer {token}"));
        if wanted.is_none() || request.header("authorization") != wanted.as_deref() {
            return Err(not_found());
        }
    }
    Ok(repo)
}

fn hub_answer(state: &HubState, request: &Request, cdn_base: &str) -> Response {
    let path = request.path.trim_start_matches('/');
    if let Some(rest) = path.strip_prefix("api/models/") {
        // `{owner}/{name}/revision/{revision}`, or
        // `{owner}/{name}/tree/{revision}[/{folder}]` (what
        // `huggingface_hub`'s `snapshot_download` lists).
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        let (owner, name, route, revision, folder) = match parts.as_slice() {
            [owner, name, route @ ("revision" | "tree"), revision] => {
                (*owner, *name, *route, *revision, "")
            }
            [owner, name, "tree", revision, folder] => (*owner, *name, "tree", *revision, *folder),
            _ => return hub_error(404, "EntryNotFound", "no such API route"),
        };
        let id = format!("{owner}/{name}");
        let repo = match readable(state, &id, request) {
            Ok(repo) => repo,
            Err(response) => return response,
        };
        let revision = percent_decode(revision);
        if !repo.resolves(&revision) {
            return hub_error(
                404,
                "RevisionNotFound",
                &format!("Invalid rev id: {revision}"),
            );
        }
        if route == "tree" {
            return Response::json(
                200,
                &repo.tree(
                    &percent_decode(folder),
                    request.query_param("recursive") == Some("true"),
                ),
            );
        }
        let blobs = request.query_param("blobs") == Some("true");
        let siblings: Vec<serde_json::Value> = repo
            .files
            .iter()
            .map(|(path, (bytes, lfs))| {
                if !blobs {
                    return json!({ "rfilename": path });
                }
                let mut sibling = json!({
                    "rfilename": path,
                    "blobId": fake_sha(&format!("blob:{}", sha256_hex(bytes))),
                    "size": bytes.len(),
                });
                if *lfs {
                    sibling["lfs"] = json!({
                        "sha256": sha256_hex(bytes),
                        "size": bytes.len(),
                        "pointerSize": 134,
                    });
                }
                sibling
            })
            .collect();
        return Response::json(
            200,
            &json!({
                "_id": fake_sha(&id)[..24],
                "id": id,
                "modelId": id,
                "sha": repo.commit,
                "private": repo.private,
                "gated": false,
                "siblings": siblings,
            }),
        );
    }
    // `{owner}/{name}/resolve/{revision}/{path}`.
    let parts: Vec<&str> = path.splitn(5, '/').collect();
    let [owner, name, "resolve", revision, file] = parts.as_slice() else {
        return hub_error(404, "EntryNotFound", "no such route");
    };
    let id = format!("{owner}/{name}");
    let repo = match readable(state, &id, request) {
        Ok(repo) => repo,
        Err(response) => return response,
    };
    let revision = percent_decode(revision);
    if !repo.resolves(&revision) {
        return hub_error(
            404,
            "RevisionNotFound",
            &format!("Invalid rev id: {revision}"),
        );
    }
    let file = percent_decode(file);
    let Some((bytes, lfs)) = repo.files.get(&file) else {
        return hub_error(404, "EntryNotFound", &format!("{file} does not exist"));
    };
    let blob = fake_sha(&format!("blob:{}", sha256_hex(bytes)));
    if *lfs {
        let sha256 = sha256_hex(bytes);
        return Response::redirect(302, &format!("{cdn_base}/repos/{sha256}?signature=x"))
            .header("X-Repo-Commit", &repo.commit)
            .header("X-Linked-Etag", &format!("\"{sha256}\""))
            .header("X-Linked-Size", &bytes.len().to_string())
            .header("ETag", &format!("\"{blob}\""));
    }
    file_response(request, bytes)
        .header("X-Repo-Commit", &repo.commit)
        .header("ETag", &format!("\"{blob}\""))
}

fn cdn_answer(state: &mut HubState, request: &Request) -> Response {
    let Some(sha256) = request.path.strip_prefix("/repos/") else {
        return Response::status(404);
    };
    let bytes = state.tampered.get(sha256).cloned().or_else(|| {
        state
            .repos
            .values()
            .flat_map(|repo| repo.files.values())
            .find(|(bytes, lfs)| *lfs && sha256_hex(bytes) == sha256)
            .map(|(bytes, _)| bytes.clone())
    });
    let Some(bytes) = bytes else {
        return Response::status(404);
    };
    let response = file_response(request, &bytes);
    match state.cut_next.take() {
        Some(after) if request.header("range").is_none() => response.truncate_after(after),
        cut => {
            state.cut_next = cut;
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_takes_escapes_and_leaves_the_rest() {
        assert_eq!(percent_decode("refs%2Fpr%2F1"), "refs/pr/1");
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("main"), "main");
    }

    #[test]
    fn safetensors_headers_are_aligned() {
        let bytes = safetensors_bytes(&[("w", &[2], &[1.0, 2.0])]);
        let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert!(length.is_multiple_of(8));
        assert_eq!(bytes.len(), 8 + length + 8);
    }
}
