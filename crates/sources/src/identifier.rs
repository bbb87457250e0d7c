//! Source identifiers.

use std::fmt;
use std::str::FromStr;

use crate::archive::ArchiveKind;
use crate::error::SourceError;

/// Which revision of a GitHub repo, as the identifier spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GitHubRef {
    /// The repo's default branch.
    Default,
    /// `tree/<rest>` (or `user/repo/<rest>`): a branch, tag or sha that may
    /// contain `/`, possibly followed by a sub-folder; split by asking the
    /// API (longest ref first).
    Tree(String),
    /// `commit/<sha>`.
    Commit(String),
}

/// A parsed source identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceId {
    /// A GitHub repository, reached through the REST API.
    GitHub {
        /// The user or organisation.
        owner: String,
        /// The repository name (dots allowed).
        repo: String,
        /// Which revision.
        reference: GitHubRef,
    },
    /// Any other `http(s)://` URL of an archive.
    Archive {
        /// The URL as given (trimmed).
        url: String,
        /// The type inferred from the name, if it tells.
        kind: Option<ArchiveKind>,
    },
}

impl SourceId {
    /// The canonical URL: one spelling per source. GitHub owner and repo are
    /// lower-cased (GitHub treats them case-insensitively).
    pub fn normalized(&self) -> String {
        match self {
            Self::GitHub {
                owner,
                repo,
                reference,
            } => {
                let base = format!(
                    "https://github.com/{}/{}",
                    owner.to_ascii_lowercase(),
                    repo.to_ascii_lowercase()
                );
                match reference {
                    GitHubRef::Default => base,
                    GitHubRef::Tree(rest) => format!("{base}/tree/{rest}"),
                    GitHubRef::Commit(sha) => {
                        format!("{base}/commit/{}", sha.to_ascii_lowercase())
                    }
                }
            }
            Self::Archive { url, .. } => url.clone(),
        }
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized())
    }
}

impl FromStr for SourceId {
    type Err = SourceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let invalid = |reason: String| SourceError::InvalidIdentifier {
            input: input.to_owned(),
            reason,
        };
        if trimmed.is_empty() {
            return Err(invalid("it is empty".to_owned()));
        }
        if trimmed
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
        {
            return Err(invalid(
                "it contains whitespace or control characters".to_owned(),
            ));
        }
        let lower = trimmed.to_ascii_lowercase();
        let github_rest = [
            "https://github.com/",
            "http://github.com/",
            "https://www.github.com/",
            "http://www.github.com/",
        ]
        .iter()
        .find_map(|prefix| lower.starts_with(prefix).then(|| &trimmed[prefix.len()..]));
        if let Some(rest) = github_rest {
            return parse_github_url(rest).map_err(invalid);
        }
        if lower.starts_with("https://") || lower.starts_with("http://") {
            let after_scheme = &trimmed[trimmed.find("://").map_or(0, |index| index + 3)..];
            if after_scheme.split('/').next().is_none_or(str::is_empty) {
                return Err(invalid("the URL has no host".to_owned()));
            }
            return Ok(Self::Archive {
                url: trimmed.to_owned(),
                kind: ArchiveKind::from_name(trimmed),
            });
        }
        if trimmed.contains("://") {
            return Err(invalid(
                "only http(s) URLs are supported (a GitHub repo URL, `user/repo[/ref]`, or an archive URL)".to_owned(),
            ));
        }
        parse_short(trimmed).map_err(invalid)
    }
}

/// `user/repo[/ref]`.
fn parse_short(input: &str) -> Result<SourceId, String> {
    let mut parts = input.splitn(3, '/');
    let owner = parts.next().unwrap_or_default();
    let Some(repo) = parts.next() else {
        return Err(
            "expected `user/repo[/ref]`, a `https://github.com/...` URL, or an archive URL"
                .to_owned(),
        );
    };
    let reference = match parts.next() {
        None | Some("") => GitHubRef::Default,
        Some(reference) => GitHubRef::Tree(check_ref(reference.trim_end_matches('/'))?),
    };
    Ok(SourceId::GitHub {
        owner: check_name("user", owner)?,
        repo: check_repo(repo)?,
        reference,
    })
}

/// What follows `https://github.com/`.
fn parse_github_url(rest: &str) -> Result<SourceId, String> {
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = rest.trim_end_matches('/');
    let mut parts = rest.splitn(4, '/');
    let owner = parts.next().unwrap_or_default();
    let repo = parts
        .next()
        .ok_or("a GitHub URL must name a repository: `https://github.com/<user>/<repo>`")?;
    let reference = match (parts.next(), parts.next()) {
        (None, _) => GitHubRef::Default,
        (Some("tree"), Some(rest)) => GitHubRef::Tree(check_ref(rest)?),
        (Some("commit"), Some(sha)) => {
            if sha.len() < 7 || sha.len() > 40 || !sha.bytes().all(|byte| byte.is_ascii_hexdigit())
            {
                return Err(format!("`{sha}` is not a commit sha (7 to 40 hex digits)"));
            }
            GitHubRef::Commit(sha.to_owned())
        }
        (Some(kind), _) => {
            return Err(format!(
                "unsupported GitHub URL form `.../{kind}/...`: use `.../tree/<ref>[/<path>]` or `.../commit/<sha>`"
            ));
        }
    };
    Ok(SourceId::GitHub {
        owner: check_name("user", owner)?,
        repo: check_repo(repo)?,
        reference,
    })
}

/// A repository name with one `.git` suffix (any case) dropped. GitHub
/// names never end in `.git`, and the canonical URL must parse back to the
/// same name, so a second one is refused.
fn check_repo(repo: &str) -> Result<String, String> {
    let has_suffix = |name: &str| {
        name.len() >= 4
            && name.is_char_boundary(name.len() - 4)
            && name[name.len() - 4..].eq_ignore_ascii_case(".git")
    };
    let name = if has_suffix(repo) {
        &repo[..repo.len() - 4]
    } else {
        repo
    };
    if has_suffix(name) {
        return Err(format!(
            "`{repo}` is not a valid GitHub repository name (it cannot end in `.git`)"
        ));
    }
    check_name("repository", name)
}

fn check_name(what: &str, name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "`{name}` is not a valid GitHub {what} name (letters, digits, `-`, `_`, `.`)"
        ))
    }
}

fn check_ref(reference: &str) -> Result<String, String> {
    let valid = !reference.is_empty()
        && !reference
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        // `?` and `#` would start a URL's query or fragment in the
        // canonical form, so that form would name another ref.
        && !reference.contains(['\\', '~', '^', ':', '?', '#', '*', '[']);
    if valid {
        Ok(reference.to_owned())
    } else {
        Err(format!("`{reference}` is not a valid git ref"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(owner: &str, repo: &str, reference: GitHubRef) -> SourceId {
        SourceId::GitHub {
            owner: owner.into(),
            repo: repo.into(),
            reference,
        }
    }

    #[test]
    fn parses_every_identifier_form() {
        let cases = [
            (
                "https://github.com/voxel51/openai-clip",
                github("voxel51", "openai-clip", GitHubRef::Default),
            ),
            (
                "https://github.com/voxel51/openai-clip/",
                github("voxel51", "openai-clip", GitHubRef::Default),
            ),
            (
                "https://github.com/voxel51/openai-clip.git",
                github("voxel51", "openai-clip", GitHubRef::Default),
            ),
            (
                "http://www.github.com/a/b.c.d",
                github("a", "b.c.d", GitHubRef::Default),
            ),
            (
                "https://github.com/a/b/tree/release/v2",
                github("a", "b", GitHubRef::Tree("release/v2".into())),
            ),
            (
                "https://github.com/a/b/tree/main/sub/dir/",
                github("a", "b", GitHubRef::Tree("main/sub/dir".into())),
            ),
            (
                "https://github.com/a/b/commit/0123abc",
                github("a", "b", GitHubRef::Commit("0123abc".into())),
            ),
            ("a/b", github("a", "b", GitHubRef::Default)),
            ("a/b.git", github("a", "b", GitHubRef::Default)),
            ("a/b.GIT/", github("a", "b", GitHubRef::Default)),
            (
                "a/my.repo/feature/x",
                github("a", "my.repo", GitHubRef::Tree("feature/x".into())),
            ),
            (
                "https://example.com/m.tar.gz",
                SourceId::Archive {
                    url: "https://example.com/m.tar.gz".into(),
                    kind: Some(ArchiveKind::TarGz),
                },
            ),
            (
                "http://127.0.0.1:9/x?dl=1",
                SourceId::Archive {
                    url: "http://127.0.0.1:9/x?dl=1".into(),
                    kind: None,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<SourceId>().unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn rejects_bad_identifiers_with_reasons() {
        let cases = [
            ("", "empty"),
            ("just-a-name", "expected `user/repo"),
            ("a/..", "not a valid GitHub repository"),
            ("a b/c", "whitespace"),
            ("ftp://x/y.zip", "only http(s)"),
            (
                "https://github.com/a/b/blob/main/x",
                "unsupported GitHub URL form",
            ),
            ("https://github.com/a/b/commit/xyz", "not a commit sha"),
            ("https://github.com/a/b/tree/x/../y", "not a valid git ref"),
            ("a/b/feat#1", "not a valid git ref"),
            ("https://github.com/a/b.git.git", "cannot end in `.git`"),
            ("a/b.GIT.git", "cannot end in `.git`"),
            ("https:///x.zip", "no host"),
        ];
        for (input, needle) in cases {
            let message = input.parse::<SourceId>().unwrap_err().to_string();
            assert!(message.contains(needle), "{input}: {message}");
        }
    }

    #[test]
    fn spellings_of_one_source_normalise_equal() {
        let same = [
            "voxel51/openai-clip",
            "https://github.com/voxel51/openai-clip",
            "https://github.com/Voxel51/OpenAI-CLIP.git/",
            "http://www.github.com/voxel51/openai-clip",
        ];
        for input in same {
            assert_eq!(
                input.parse::<SourceId>().unwrap().normalized(),
                "https://github.com/voxel51/openai-clip",
                "{input}"
            );
        }
        assert_eq!(
            "a/b/release/v2".parse::<SourceId>().unwrap().normalized(),
            "https://github.com/a/b/tree/release/v2"
        );
    }
}
