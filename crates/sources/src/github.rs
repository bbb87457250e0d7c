//! The GitHub REST API calls zoo makes.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::error::SourceError;
use crate::http::{DEFAULT_TIMEOUT, HttpClient, transport_error};
use crate::progress::Progress;
use crate::transfer::{TransferOptions, fetch_file, fetch_with_first};

/// GitHub's public API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

const TOKEN_HINT: &str = "if the repository is private, set `GITHUB_TOKEN` to a token with access to it (a token also lifts GitHub's rate limits)";

/// A GitHub API client. The token goes to the API host only: redirects
/// (zipball downloads lead to another host) are followed by hand, without it.
#[derive(Debug, Clone)]
pub struct GitHub {
    api_url: String,
    token: Option<String>,
    http: HttpClient,
    timeout: Duration,
}

impl GitHub {
    /// A client for the API at `api_url` (e.g. [`DEFAULT_API_URL`]), sending
    /// `token` when given.
    pub fn new(api_url: &str, token: Option<String>) -> Self {
        Self {
            api_url: api_url.trim_end_matches('/').to_owned(),
            token: token.filter(|token| !token.trim().is_empty()),
            http: HttpClient::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with `timeout` for connecting and for each read of an
    /// API answer (default [`crate::DEFAULT_TIMEOUT`]); downloads take
    /// theirs from [`TransferOptions::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The HTTP client (for downloads that are not API calls).
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    fn call(&self, path: &str) -> Result<(String, ureq::http::Response<ureq::Body>), SourceError> {
        let url = format!("{}{path}", self.api_url);
        let authorization = self.token.as_ref().map(|token| format!("Bearer {token}"));
        let mut headers = vec![
            ("Accept", "application/vnd.github+json"),
            ("X-GitHub-Api-Version", "2022-11-28"),
        ];
        if let Some(authorization) = authorization.as_deref() {
            headers.push(("Authorization", authorization));
        }
        let response = self.http.get(&url, &headers, false, self.timeout)?;
        Ok((url, response))
    }

    fn json(&self, path: &str, what: &str) -> Result<Option<Value>, SourceError> {
        let (url, response) = self.call(path)?;
        let status = response.status().as_u16();
        if status == 404 || status == 422 {
            let body = read_json(response);
            // A 404 on the repo itself is an error; on a ref it is an answer.
            if status == 404 && what == "repository" {
                return Err(self.not_found(&url, what, &body));
            }
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(self.api_error(&url, response));
        }
        let mut body = response.into_body();
        let text = body
            .read_to_string()
            .map_err(|err| transport_error(&url, &err, self.timeout))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| SourceError::Transport {
                url,
                message: format!(
                    "the answer is not JSON ({err}); is `ZOO_GITHUB_API_URL` a GitHub API?"
                ),
            })
    }

    fn not_found(&self, url: &str, what: &str, body: &Value) -> SourceError {
        let _ = body;
        SourceError::NotFound {
            what: format!("GitHub {what} at `{url}`"),
            hint: Some(if self.token.is_some() {
                "check the name, and that `GITHUB_TOKEN` has access to it".to_owned()
            } else {
                format!("check the name; {TOKEN_HINT}")
            }),
        }
    }

    fn api_error(&self, url: &str, response: ureq::http::Response<ureq::Body>) -> SourceError {
        let status = response.status().as_u16();
        let exhausted = response
            .headers()
            .get("x-ratelimit-remaining")
            .and_then(|value| value.to_str().ok())
            == Some("0");
        let body = read_json(response);
        let message = body["message"].as_str().map(str::to_owned);
        if status == 401 {
            return SourceError::BadCredentials {
                url: url.to_owned(),
            };
        }
        if status == 429 || (status == 403 && exhausted) {
            return SourceError::RateLimited {
                url: url.to_owned(),
                hint: if self.token.is_some() {
                    "wait for the limit to reset and try again".to_owned()
                } else {
                    "set `GITHUB_TOKEN` to raise the limit, or wait and try again".to_owned()
                },
            };
        }
        SourceError::Status {
            url: url.to_owned(),
            status,
            detail: message,
            hint: Some(match status {
                403 | 404 if self.token.is_none() => TOKEN_HINT.to_owned(),
                403 | 404 => "check that `GITHUB_TOKEN` has access to the repository".to_owned(),
                500..=599 => "GitHub failed; try again later".to_owned(),
                _ => "check the source identifier".to_owned(),
            }),
        }
    }

    /// The repo's default branch.
    pub fn default_branch(&self, owner: &str, repo: &str) -> Result<String, SourceError> {
        let info = self
            .json(&format!("/repos/{owner}/{repo}"), "repository")?
            .unwrap_or_default();
        info["default_branch"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SourceError::Transport {
                url: format!("{}/repos/{owner}/{repo}", self.api_url),
                message: "the answer has no `default_branch`".to_owned(),
            })
    }

    /// The full sha `reference` (branch, tag or sha) points at, or `None`
    /// when it names nothing.
    pub fn commit_sha(
        &self,
        owner: &str,
        repo: &str,
        reference: &str,
    ) -> Result<Option<String>, SourceError> {
        let answer = self.json(
            &format!("/repos/{owner}/{repo}/commits/{reference}"),
            "commit",
        )?;
        let Some(sha) = answer.and_then(|commit| commit["sha"].as_str().map(str::to_owned)) else {
            return Ok(None);
        };
        // The sha is recorded, printed and used in URLs: only a real one.
        if !is_commit_sha(&sha) {
            return Err(SourceError::Transport {
                url: format!("{}/repos/{owner}/{repo}/commits/{reference}", self.api_url),
                message: format!(
                    "the answer's `sha` is not 40 or 64 hexadecimal digits (got {} characters)",
                    sha.chars().count()
                ),
            });
        }
        Ok(Some(sha))
    }

    /// Downloads the zipball of `reference` to `dest` (with
    /// [`crate::fetch_file`]'s resume and retries). The API answers with a
    /// redirect to another host, which is fetched without the token.
    pub fn download_zipball(
        &self,
        owner: &str,
        repo: &str,
        reference: &str,
        dest: &Path,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<u64, SourceError> {
        let (url, response) = self.call(&format!("/repos/{owner}/{repo}/zipball/{reference}"))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get("location")
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| SourceError::Transport {
                    url: url.clone(),
                    message: format!("HTTP {status} without a `Location` header"),
                })?
                .to_owned();
            tracing::debug!(%location, "zipball redirect (followed without the token)");
            return fetch_file(&self.http, &location, dest, options, progress);
        }
        if status == 404 {
            return Err(self.not_found(&url, "zipball", &Value::Null));
        }
        if !(200..300).contains(&status) {
            return Err(self.api_error(&url, response));
        }
        // A server that answers with the archive itself (no redirect).
        fetch_with_first(&self.http, &url, dest, options, progress, Some(response))
    }
}

fn read_json(response: ureq::http::Response<ureq::Body>) -> Value {
    response
        .into_body()
        .read_to_string()
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Whether `text` is a full git object id (SHA-1 or SHA-256, hexadecimal).
fn is_commit_sha(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}
