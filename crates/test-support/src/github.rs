//! A fake of the parts of GitHub's REST API that zoo talks to.
//!
//! Endpoints on [`FakeGitHub::api`]:
//!
//! - `GET /repos/{owner}/{repo}`: repo info with `default_branch`;
//! - `GET /repos/{owner}/{repo}/zipball[/{ref}]`: `302` to the codeload host;
//! - `GET /repos/{owner}/{repo}/commits/{ref}`: the commit a branch, tag or
//!   sha names (`422` when none, as GitHub answers).
//!
//! On [`FakeGitHub::codeload`]: `GET /{owner}/{repo}/legacy.zip/{ref}`, a zip
//! whose entries sit under `{owner}-{repo}-{sha7}/` like GitHub's.
//!
//! Private repos answer `404` without the token (as GitHub does), a wrong
//! token gets `401 Bad credentials`, and rate limiting answers `403` with
//! `x-ratelimit-remaining: 0`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::json;

use crate::archive::{Archive, Entry};
use crate::server::{Request, Response, TestServer};

/// A deterministic 40-hex-digit id for `seed`, shaped like a git sha.
pub fn fake_sha(seed: &str) -> String {
    let mut out = String::with_capacity(48);
    for round in 0u64..3 {
        // FNV-1a, salted by the round.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ round;
        for byte in seed.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push_str(&format!("{hash:016x}"));
    }
    out.truncate(40);
    out
}

/// A repository to serve: its refs and the tree at each.
#[derive(Debug, Clone)]
pub struct RepoSpec {
    owner: String,
    name: String,
    default_branch: String,
    private: bool,
    /// Ref name (branch or tag, may contain `/`) to commit sha.
    refs: BTreeMap<String, String>,
    /// Commit sha to tree.
    trees: BTreeMap<String, Archive>,
}

impl RepoSpec {
    /// A public repo whose default branch is `main`.
    pub fn new(owner: &str, name: &str) -> Self {
        Self {
            owner: owner.to_owned(),
            name: name.to_owned(),
            default_branch: "main".to_owned(),
            private: false,
            refs: BTreeMap::new(),
            trees: BTreeMap::new(),
        }
    }

    /// Sets the default branch.
    pub fn default_branch(mut self, branch: &str) -> Self {
        self.default_branch = branch.to_owned();
        self
    }

    /// Makes the repo private: only the token opens it.
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// Adds a branch or tag `name` (may contain `/`) holding `tree`; its sha
    /// is [`fake_sha`] of `owner/repo@name`.
    pub fn git_ref(mut self, name: &str, tree: Archive) -> Self {
        let sha = fake_sha(&format!("{}/{}@{name}", self.owner, self.name));
        self.refs.insert(name.to_owned(), sha.clone());
        self.trees.insert(sha, tree);
        self
    }

    /// The sha of ref `name`, if it exists.
    pub fn sha_of(&self, name: &str) -> Option<&str> {
        self.refs.get(name).map(String::as_str)
    }

    fn resolve(&self, reference: &str) -> Option<&str> {
        if let Some(sha) = self.refs.get(reference) {
            return Some(sha);
        }
        if reference.len() >= 7 && reference.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return self
                .trees
                .keys()
                .find(|sha| sha.starts_with(reference))
                .map(String::as_str);
        }
        None
    }
}

#[derive(Debug, Default)]
struct GitHubState {
    repos: BTreeMap<(String, String), RepoSpec>,
    token: Option<String>,
    rate_limited: bool,
}

/// GitHub's API and codeload hosts on two loopback servers.
#[derive(Debug)]
pub struct FakeGitHub {
    /// The API host (`ZOO_GITHUB_API_URL`).
    pub api: TestServer,
    /// The host zipball redirects lead to.
    pub codeload: TestServer,
    state: Arc<Mutex<GitHubState>>,
}

fn lock(state: &Mutex<GitHubState>) -> MutexGuard<'_, GitHubState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeGitHub {
    /// Starts both hosts with no repos.
    pub fn start() -> Self {
        let api = TestServer::start();
        let codeload = TestServer::start();
        let state = Arc::new(Mutex::new(GitHubState::default()));
        let codeload_base = codeload.base_url();
        let api_state = Arc::clone(&state);
        api.fallback(move |request| api_answer(&lock(&api_state), request, &codeload_base));
        let codeload_state = Arc::clone(&state);
        codeload.fallback(move |request| codeload_answer(&lock(&codeload_state), request));
        Self {
            api,
            codeload,
            state,
        }
    }

    /// The API base URL.
    pub fn api_url(&self) -> String {
        self.api.base_url()
    }

    /// Adds (or replaces) a repo.
    pub fn add_repo(&self, repo: RepoSpec) {
        lock(&self.state)
            .repos
            .insert((repo.owner.clone(), repo.name.clone()), repo);
    }

    /// The token private repos require (`Authorization: Bearer <token>` or
    /// `token <token>`); any other token is refused with `401`.
    pub fn set_token(&self, token: Option<&str>) {
        lock(&self.state).token = token.map(str::to_owned);
    }

    /// While set, every API call answers like an exhausted rate limit.
    pub fn set_rate_limited(&self, limited: bool) {
        lock(&self.state).rate_limited = limited;
    }

    /// The sha ref `reference` of `owner/repo` resolves to.
    pub fn sha(&self, owner: &str, repo: &str, reference: &str) -> Option<String> {
        lock(&self.state)
            .repos
            .get(&(owner.to_owned(), repo.to_owned()))
            .and_then(|spec| spec.resolve(reference))
            .map(str::to_owned)
    }
}

fn github_error(status: u16, message: &str) -> Response {
    Response::json(
        status,
        &json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.to_string(),
        }),
    )
}

fn codeload_token(sha: &str) -> String {
    fake_sha(&format!("codeload:{sha}"))[..20].to_owned()
}

fn api_answer(state: &GitHubState, request: &Request, codeload_base: &str) -> Response {
    if state.rate_limited {
        return github_error(
            403,
            "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit.)",
        )
        .header("x-ratelimit-limit", "60")
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", "1700000000");
    }
    let authorized = match request.header("authorization") {
        None => false,
        Some(value) => {
            let presented = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("token "))
                .unwrap_or(value);
            if state.token.as_deref() != Some(presented) {
                return github_error(401, "Bad credentials");
            }
            true
        }
    };
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let ["repos", owner, repo, rest @ ..] = segments.as_slice() else {
        return github_error(404, "Not Found");
    };
    let Some(spec) = state
        .repos
        .get(&((*owner).to_owned(), (*repo).to_owned()))
        .filter(|spec| !spec.private || authorized)
    else {
        return github_error(404, "Not Found");
    };
    match rest {
        [] | [""] => Response::json(
            200,
            &json!({
                "name": spec.name,
                "full_name": format!("{}/{}", spec.owner, spec.name),
                "private": spec.private,
                "default_branch": spec.default_branch,
            }),
        ),
        ["zipball", reference @ ..] => {
            let reference = if reference.is_empty() {
                spec.default_branch.clone()
            } else {
                reference.join("/")
            };
            let Some(sha) = spec.resolve(&reference) else {
                return github_error(404, "Not Found");
            };
            let mut location = format!("{codeload_base}/{owner}/{repo}/legacy.zip/{reference}");
            if spec.private {
                location.push_str(&format!("?token={}", codeload_token(sha)));
            }
            Response::redirect(302, &location)
        }
        ["commits", reference @ ..] if !reference.is_empty() => {
            let reference = reference.join("/");
            match spec.resolve(&reference) {
                Some(sha) => Response::json(
                    200,
                    &json!({"sha": sha, "commit": {"message": format!("commit {sha}")}}),
                ),
                None => github_error(422, &format!("No commit found for SHA: {reference}")),
            }
        }
        _ => github_error(404, "Not Found"),
    }
}

fn codeload_answer(state: &GitHubState, request: &Request) -> Response {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let [owner, repo, "legacy.zip", reference @ ..] = segments.as_slice() else {
        return Response::status(404).body("404: Not Found");
    };
    let reference = reference.join("/");
    let Some(spec) = state.repos.get(&((*owner).to_owned(), (*repo).to_owned())) else {
        return Response::status(404).body("404: Not Found");
    };
    let Some(sha) = spec.resolve(&reference) else {
        return Response::status(404).body("404: Not Found");
    };
    if spec.private && request.query_param("token") != Some(codeload_token(sha).as_str()) {
        return Response::status(404).body("404: Not Found");
    }
    let prefix = format!("{owner}-{repo}-{}", &sha[..7]);
    let mut prefixed = Archive::new().dir(&format!("{prefix}/"));
    for entry in spec.trees[sha].entries() {
        prefixed = match entry {
            Entry::File {
                name,
                contents,
                mode,
            } => prefixed.file_with_mode(&format!("{prefix}/{name}"), contents.clone(), *mode),
            Entry::Dir { name } => prefixed.dir(&format!("{prefix}/{name}")),
            Entry::Symlink { name, target } => {
                prefixed.symlink(&format!("{prefix}/{name}"), target)
            }
            Entry::Hardlink { .. } => prefixed,
        };
    }
    Response::ok(prefixed.to_zip())
        .header("Content-Type", "application/zip")
        .header(
            "Content-Disposition",
            &format!("attachment; filename={prefix}.zip"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_sha_is_stable_hex_of_git_length() {
        let sha = fake_sha("a/b@main");
        assert_eq!(sha.len(), 40);
        assert!(sha.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_eq!(sha, fake_sha("a/b@main"));
        assert_ne!(sha, fake_sha("a/b@dev"));
    }
}
