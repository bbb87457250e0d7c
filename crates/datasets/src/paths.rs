//! Paths named by a dataset zoo did not write: a FiftyOne folder's
//! `filepath`s and the `mask_path`/`map_path` of its labels.
//!
//! One rule for them all ([`resolve_named`]): a relative path is taken from
//! the folder the dataset came from (never the current directory), may not
//! climb out of it with `..`, and may not leave it through a symbolic link;
//! an absolute path is accepted when it lies inside that folder. Any other
//! path (FiftyOne's own datasets name the user's media by absolute paths)
//! is refused, naming it, unless the user passed
//! [`ImportOptions::allow_outside_paths`]; such a dataset is marked, and
//! only then may its export copy files from outside its folder.

use std::path::{Component, Path, PathBuf};

/// The largest `samples.json` an import reads by default (1 GiB; the
/// `samples/*.json` files of a folder together, too; the CLI's
/// `ZOO_MAX_IMPORT_BYTES` sets [`ImportOptions::max_samples_bytes`]).
pub const MAX_SAMPLES_BYTES: u64 = 1 << 30;

/// How an import treats the paths a dataset names, and how much it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Accept `filepath`s, `mask_path`s and `map_path`s outside the
    /// imported folder (absolute ones, or links that lead out), as
    /// FiftyOne's datasets of the user's own media name them. Off by
    /// default: an imported folder names only files inside it.
    pub allow_outside_paths: bool,
    /// The largest `samples.json` read (the `samples/*.json` files
    /// together, too); [`MAX_SAMPLES_BYTES`] by default.
    pub max_samples_bytes: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            allow_outside_paths: false,
            max_samples_bytes: MAX_SAMPLES_BYTES,
        }
    }
}

impl ImportOptions {
    /// The default options with `allow_outside_paths` set as given.
    pub fn allow_outside_paths(allow: bool) -> Self {
        Self {
            allow_outside_paths: allow,
            ..Self::default()
        }
    }

    /// These options with another cap on `samples.json`.
    pub fn with_max_samples_bytes(self, bytes: u64) -> Self {
        Self {
            max_samples_bytes: bytes,
            ..self
        }
    }
}

/// The flag's name, for messages.
pub(crate) const ALLOW_OUTSIDE_FLAG: &str = "--allow-outside-paths";

/// Resolves `text`, a path named by the dataset in `root` (canonical), to
/// the path zoo stores: `root` joined with a relative path, or an absolute
/// path as written. `Err` says why it is refused, naming the path.
pub(crate) fn resolve_named(
    root: &Path,
    text: &str,
    allow_outside: bool,
) -> Result<PathBuf, String> {
    let shown = text.escape_debug().to_string();
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    if text.contains('\0') {
        return Err(format!("`{shown}` holds a NUL byte"));
    }
    let path = Path::new(text);
    let relative = if path.is_absolute() {
        match path.strip_prefix(root) {
            Ok(relative) => relative,
            Err(_) => return outside(path, root, allow_outside, &shown),
        }
    } else {
        path
    };
    let mut joined = root.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Normal(part) => joined.push(part),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "`{shown}` climbs out of the folder with `..`: a dataset names only files inside its folder"
                ));
            }
        }
    }
    if joined == root {
        return Err(format!("`{shown}` names the folder itself, not a file"));
    }
    match zoo_fs::ensure_inside(root, &joined) {
        Ok(_) => Ok(joined),
        Err(_) if allow_outside => Ok(joined),
        Err(error) => Err(format!(
            "{error}; a dataset names only files inside its folder (pass `{ALLOW_OUTSIDE_FLAG}` to import one whose files live elsewhere)"
        )),
    }
}

/// An absolute path outside `root`: kept as written (without `.` or `..`
/// parts) when the user allowed it, else refused.
fn outside(path: &Path, root: &Path, allow: bool, shown: &str) -> Result<PathBuf, String> {
    if !allow {
        return Err(format!(
            "`{shown}` is outside the imported folder `{}`: zoo reads only files inside it; pass `{ALLOW_OUTSIDE_FLAG}` if the dataset names your own media elsewhere (its export then copies them)",
            root.display()
        ));
    }
    if path
        .components()
        .any(|component| matches!(component, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("`{shown}` has `.` or `..` parts"));
    }
    Ok(path.to_path_buf())
}

/// Whether `path`, a file an export is about to copy, lies inside `root`
/// once links are resolved.
pub(crate) fn is_inside(root: &Path, path: &Path) -> bool {
    zoo_fs::ensure_inside(root, path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_paths_stay_in_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(dir.path()).unwrap();
        fs_err::create_dir_all(root.join("data")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc", root.join("data/etc")).unwrap();
        let inside = root.join("data/a.png");
        let cases: &[(&str, bool, Option<PathBuf>)] = &[
            ("data/a.png", false, Some(inside.clone())),
            ("./data/a.png", false, Some(inside.clone())),
            (inside.to_str().unwrap(), false, Some(inside.clone())),
            ("../../../../etc/passwd", false, None),
            ("../../../../etc/passwd", true, None),
            ("/etc/passwd", false, None),
            ("/etc/passwd", true, Some(PathBuf::from("/etc/passwd"))),
            ("/etc/../etc/passwd", true, None),
            ("", false, None),
            (".", false, None),
            ("a\0b", false, None),
        ];
        for (text, allow, expected) in cases {
            assert_eq!(
                resolve_named(&root, text, *allow).ok(),
                *expected,
                "{text:?} {allow}"
            );
        }
        #[cfg(unix)]
        {
            let error = resolve_named(&root, "data/etc/passwd", false).unwrap_err();
            assert!(error.contains("symbolic link"), "{error}");
            assert!(resolve_named(&root, "data/etc/passwd", true).is_ok());
        }
    }
}
