//! Checking that a path stays strictly inside a folder, symbolic links
//! included.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a path is not strictly inside the folder it must stay in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainmentError {
    /// Written as it is, the path is not below the folder (it is the folder
    /// itself, lies elsewhere, or has `.`/`..` parts).
    #[error("`{path}` is not strictly inside `{root}`")]
    Outside {
        /// The path.
        path: PathBuf,
        /// The folder it must stay in.
        root: PathBuf,
    },
    /// A symbolic link on the way leads out of the folder (or to the folder
    /// itself).
    #[error(
        "`{path}` is not strictly inside `{root}`: the symbolic link `{link}` leads to `{target}`"
    )]
    Escapes {
        /// The path.
        path: PathBuf,
        /// The folder it must stay in.
        root: PathBuf,
        /// The link.
        link: PathBuf,
        /// Where the link leads, resolved.
        target: PathBuf,
    },
    /// A symbolic link on the way points nowhere (or loops).
    #[error("`{path}` goes through the symbolic link `{link}`, which cannot be resolved")]
    Dangling {
        /// The path.
        path: PathBuf,
        /// The link.
        link: PathBuf,
        /// Why it cannot be resolved.
        #[source]
        source: io::Error,
    },
    /// The file system could not be asked.
    #[error("failed to inspect `{path}`")]
    Io {
        /// What was inspected.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// Checks that `path` is a strict descendant of `root` (never `root` itself)
/// once every symbolic link that exists on the way is resolved, and returns
/// the resolved path.
///
/// `path` must be `root` joined with plain names (no `.`, `..` or absolute
/// parts). `root` may be a link itself (a zoo dir on another disk): what
/// counts is where it resolves to. Parts that do not exist yet are taken as
/// written. A dangling link on the way is an error, since writing through
/// it would create its target wherever it points.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// assert!(zoo_fs::ensure_inside(dir.path(), &dir.path().join("a/b")).is_ok());
/// assert!(zoo_fs::ensure_inside(dir.path(), dir.path()).is_err());
/// assert!(zoo_fs::ensure_inside(dir.path(), &dir.path().join("../x")).is_err());
/// ```
pub fn ensure_inside(root: &Path, path: &Path) -> Result<PathBuf, ContainmentError> {
    let outside = || ContainmentError::Outside {
        path: path.to_owned(),
        root: root.to_owned(),
    };
    let relative = path.strip_prefix(root).map_err(|_| outside())?;
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            _ => return Err(outside()),
        }
    }
    if parts.is_empty() {
        return Err(outside());
    }
    let resolved_root = resolve_existing(root)?;
    let mut current = resolved_root.clone();
    let mut exists = true;
    for part in parts {
        current.push(part);
        if !exists {
            continue;
        }
        match fs_err::symlink_metadata(&current) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                let target = fs_err::canonicalize(&current).map_err(|source| {
                    ContainmentError::Dangling {
                        path: path.to_owned(),
                        link: current.clone(),
                        source,
                    }
                })?;
                if target == resolved_root || !target.starts_with(&resolved_root) {
                    return Err(ContainmentError::Escapes {
                        path: path.to_owned(),
                        root: root.to_owned(),
                        link: current,
                        target,
                    });
                }
                current = target;
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => exists = false,
            Err(source) => {
                return Err(ContainmentError::Io {
                    path: current,
                    source,
                });
            }
        }
    }
    Ok(current)
}

/// `path` with its longest existing ancestor canonicalised and the rest
/// appended as written.
fn resolve_existing(path: &Path) -> Result<PathBuf, ContainmentError> {
    let absolute = std::path::absolute(path).map_err(|source| ContainmentError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match fs_err::canonicalize(existing) {
            Ok(mut resolved) => {
                resolved.extend(rest.iter().rev());
                return Ok(resolved);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        rest.push(name);
                        existing = parent;
                    }
                    // Nothing exists, not even `/`: take the path as written.
                    _ => return Ok(absolute.clone()),
                }
            }
            Err(source) => {
                return Err(ContainmentError::Io {
                    path: existing.to_owned(),
                    source,
                });
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn plain_descendants_pass_and_everything_else_fails() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("zoo");
        fs_err::create_dir_all(root.join("src")).unwrap();
        let resolved = ensure_inside(&root, &root.join("src/new/file")).unwrap();
        assert!(resolved.ends_with("zoo/src/new/file"), "{resolved:?}");
        // A root that does not exist yet is taken as written.
        ensure_inside(&dir.path().join("later"), &dir.path().join("later/x")).unwrap();
        for bad in [
            root.clone(),
            root.join("."),
            root.join("src/.."),
            root.join("../zoo/src"),
            dir.path().join("elsewhere"),
        ] {
            let err = ensure_inside(&root, &bad).unwrap_err();
            assert!(
                matches!(err, ContainmentError::Outside { .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn links_that_lead_out_or_nowhere_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("zoo");
        let outside = dir.path().join("outside");
        fs_err::create_dir_all(root.join("src/inner")).unwrap();
        fs_err::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("src/out")).unwrap();
        symlink(&root, root.join("src/up")).unwrap();
        symlink(dir.path().join("missing"), root.join("src/dangling")).unwrap();
        symlink(root.join("src/inner"), root.join("src/in")).unwrap();

        let err = ensure_inside(&root, &root.join("src/out/model.pt")).unwrap_err();
        assert!(matches!(err, ContainmentError::Escapes { .. }), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = ensure_inside(&root, &root.join("src/up/x")).unwrap_err();
        assert!(matches!(err, ContainmentError::Escapes { .. }), "{err}");
        let err = ensure_inside(&root, &root.join("src/dangling")).unwrap_err();
        assert!(matches!(err, ContainmentError::Dangling { .. }), "{err}");
        // A link that stays inside is followed.
        let resolved = ensure_inside(&root, &root.join("src/in/x")).unwrap();
        assert!(resolved.ends_with("zoo/src/inner/x"), "{resolved:?}");
        // Inside `src`, the link to the zoo dir leads out of `src`.
        let err = ensure_inside(&root.join("src"), &root.join("src/up/src/x")).unwrap_err();
        assert!(matches!(err, ContainmentError::Escapes { .. }), "{err}");
    }

    #[test]
    fn a_linked_root_counts_where_it_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("disk/zoo");
        fs_err::create_dir_all(real.join("src")).unwrap();
        let root = dir.path().join("zoo");
        symlink(&real, &root).unwrap();
        let resolved = ensure_inside(&root, &root.join("src/x")).unwrap();
        assert!(resolved.ends_with("disk/zoo/src/x"), "{resolved:?}");
    }
}
