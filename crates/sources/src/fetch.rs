//! A source's whole tree, fetched into a directory.

use std::path::{Path, PathBuf};

use crate::archive::{ArchiveKind, ExtractLimits, extract};
use crate::error::SourceError;
use crate::github::GitHub;
use crate::identifier::{GitHubRef, SourceId};
use crate::progress::Progress;
use crate::transfer::{TransferOptions, fetch_file};

/// A fetched source tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSource {
    /// The folder holding the source's files (inside the work directory).
    pub root: PathBuf,
    /// The commit the tree was fetched at (GitHub sources only).
    pub commit: Option<String>,
    /// Bytes downloaded.
    pub downloaded: u64,
}

/// Downloads and extracts `source` inside `work_dir` (an empty directory the
/// caller owns and removes). GitHub refs are resolved to a commit first, so
/// the tree matches the recorded sha.
pub fn fetch_source(
    source: &SourceId,
    github: &GitHub,
    work_dir: &Path,
    limits: &ExtractLimits,
    transfer: &TransferOptions,
    progress: &dyn Progress,
) -> Result<FetchedSource, SourceError> {
    let tree = work_dir.join("tree");
    // The API calls wait as long as the downloads do.
    let github = &github.clone().with_timeout(transfer.timeout);
    match source {
        SourceId::GitHub {
            owner,
            repo,
            reference,
        } => {
            let (sha, subpath) = resolve(github, owner, repo, reference)?;
            let archive = work_dir.join("source.zip");
            let downloaded =
                github.download_zipball(owner, repo, &sha, &archive, transfer, progress)?;
            extract(&archive, ArchiveKind::Zip, &tree, limits)?;
            fs_err::remove_file(&archive)?;
            // GitHub puts everything under one `{owner}-{repo}-{sha7}/` folder.
            let mut root = single_subdir(&tree)?.unwrap_or(tree);
            if let Some(subpath) = subpath {
                root = root.join(&subpath);
                if !root.is_dir() {
                    return Err(SourceError::NotFound {
                        what: format!("folder `{subpath}` in {owner}/{repo} at {sha}"),
                        hint: Some("check the path after the ref in the URL".to_owned()),
                    });
                }
            }
            Ok(FetchedSource {
                root,
                commit: Some(sha),
                downloaded,
            })
        }
        SourceId::Archive { url, kind } => {
            let archive = work_dir.join("source.archive");
            let downloaded = fetch_file(github.http(), url, &archive, transfer, progress)?;
            let kind = match kind {
                Some(kind) => *kind,
                None => {
                    ArchiveKind::sniff(&archive)?.ok_or_else(|| SourceError::UnknownArchive {
                        origin: url.clone(),
                    })?
                }
            };
            extract(&archive, kind, &tree, limits)?;
            fs_err::remove_file(&archive)?;
            Ok(FetchedSource {
                root: tree,
                commit: None,
                downloaded,
            })
        }
    }
}

/// The commit sha and sub-folder an identifier's reference names.
fn resolve(
    github: &GitHub,
    owner: &str,
    repo: &str,
    reference: &GitHubRef,
) -> Result<(String, Option<String>), SourceError> {
    match reference {
        GitHubRef::Default => {
            let branch = github.default_branch(owner, repo)?;
            let sha =
                github
                    .commit_sha(owner, repo, &branch)?
                    .ok_or_else(|| SourceError::NotFound {
                        what: format!("default branch `{branch}` of {owner}/{repo}"),
                        hint: None,
                    })?;
            Ok((sha, None))
        }
        GitHubRef::Commit(sha) => {
            let full =
                github
                    .commit_sha(owner, repo, sha)?
                    .ok_or_else(|| SourceError::NotFound {
                        what: format!("commit `{sha}` in {owner}/{repo}"),
                        hint: Some("check the sha".to_owned()),
                    })?;
            Ok((full, None))
        }
        GitHubRef::Tree(rest) => {
            // Check the repo first so a missing repo is not reported as a
            // missing ref.
            github.default_branch(owner, repo)?;
            let parts: Vec<&str> = rest.split('/').collect();
            for end in (1..=parts.len()).rev() {
                let candidate = parts[..end].join("/");
                if let Some(sha) = github.commit_sha(owner, repo, &candidate)? {
                    let subpath = (end < parts.len()).then(|| parts[end..].join("/"));
                    tracing::debug!(reference = candidate, ?subpath, "resolved tree reference");
                    return Ok((sha, subpath));
                }
            }
            Err(SourceError::NotFound {
                what: format!("branch, tag or commit `{rest}` in {owner}/{repo}"),
                hint: Some("no prefix of it names a ref; check the spelling".to_owned()),
            })
        }
    }
}

/// The only entry of `dir` when it is a directory.
fn single_subdir(dir: &Path) -> Result<Option<PathBuf>, SourceError> {
    let mut entries = fs_err::read_dir(dir)?;
    let (Some(first), None) = (entries.next(), entries.next()) else {
        return Ok(None);
    };
    let first = first?;
    Ok(first.file_type()?.is_dir().then(|| first.path()))
}
