//! Manifest strings as paths: the one place where text from a manifest
//! becomes a file or folder name.
//!
//! Every manifest string is hostile. Before zoo joins one to a folder it goes
//! through [`FileName`] (one name) or [`RelativePath`] (`/`-separated names),
//! which refuse, in every component:
//!
//! - an empty name, `.` and `..`;
//! - `/` where one name is meant, `\`, NUL and every other control character;
//! - more than [`MAX_NAME_BYTES`] bytes (one name on common filesystems);
//! - a leading `.`: zoo's own files are hidden (`.tmp/`, `.locks/`,
//!   `.registry.lock`, partial downloads `.<file>.partial`, atomic-write
//!   temporaries `.tmp-*`), so no manifest name may collide with them;
//! - the names zoo's layout reserves, compared ignoring ASCII case (for
//!   case-insensitive filesystems): `sources-v<N>.json` (the registry index),
//!   `manifest.json`, `__init__.py`, `__pycache__`, and the hook files
//!   `download_model` and `load_model`.
//!
//! Versions and base names are not names on their own (a version is spliced
//! into a file name, a base name's last part may become one), so they get the
//! structural rules only ([`check_version`], [`check_base_name`]); the names
//! built from them are then checked as [`FileName`]s.

use std::fmt;
use std::path::{Path, PathBuf};

/// The longest name, in bytes, that [`FileName`] accepts.
pub const MAX_NAME_BYTES: usize = 255;

/// Names zoo's own layout uses, compared ignoring ASCII case. Hidden names
/// (`.tmp`, `.locks`, `.registry.lock`, `.<file>.partial`) are refused by the
/// leading-dot rule instead.
const RESERVED: [&str; 5] = [
    "manifest.json",
    "__init__.py",
    "__pycache__",
    "download_model",
    "load_model",
];

/// Why a string cannot be used as a name or path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Nothing at all.
    #[error("is empty")]
    Empty,
    /// `.`: the folder itself.
    #[error("is `.`, the folder itself")]
    CurrentDir,
    /// `..`: the parent folder.
    #[error("is `..`, the parent folder")]
    ParentDir,
    /// Starts with `/`.
    #[error("is an absolute path")]
    Absolute,
    /// A `/` where one name is meant.
    #[error("contains `/`, but must be a single name")]
    Separator,
    /// A `\`, a separator on Windows and never in a portable name.
    #[error("contains a backslash")]
    Backslash,
    /// A NUL or other control character.
    #[error("contains the control character `{}`", character.escape_unicode())]
    Control {
        /// The character.
        character: char,
    },
    /// Longer than [`MAX_NAME_BYTES`].
    #[error("is {length} bytes long, more than the {MAX_NAME_BYTES} a file name may have")]
    TooLong {
        /// Its length in bytes.
        length: usize,
    },
    /// Starts with `.`, like zoo's own hidden files.
    #[error("starts with `.`, which zoo keeps for its own hidden files")]
    Hidden,
    /// A name zoo's layout uses.
    #[error("is `{name}`, a name zoo's own layout uses")]
    Reserved {
        /// The reserved name it matched (as zoo spells it).
        name: String,
    },
    /// One `/`-separated part of a path is unusable.
    #[error("has an unsafe part `{}`, which {problem}", escape(part))]
    UnsafePart {
        /// The part, as written.
        part: String,
        /// Why it is unusable.
        problem: Box<NameError>,
    },
    /// An archive name whose extracted folder would be the archive itself.
    #[error("has no extension, so the folder it extracts to would have the same name")]
    NoExtension,
}

/// One file or folder name that stays inside its parent folder and cannot
/// collide with zoo's own files (the rules are in the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(String);

impl FileName {
    /// Checks `text` as one name.
    pub fn new(text: &str) -> Result<Self, NameError> {
        check_structure(text)?;
        if text.contains('/') {
            return Err(NameError::Separator);
        }
        if text.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong { length: text.len() });
        }
        if text.starts_with('.') {
            return Err(NameError::Hidden);
        }
        if let Some(name) = reserved(text) {
            return Err(NameError::Reserved { name });
        }
        Ok(Self(text.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<Path> for FileName {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A relative path of one or more [`FileName`]s, written with `/`: a
/// source's folder under the zoo dir (`voxel51/openai-clip`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelativePath(Vec<FileName>);

impl RelativePath {
    /// Checks `text` as `/`-separated names.
    pub fn new(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.starts_with('/') {
            return Err(NameError::Absolute);
        }
        text.split('/')
            .map(|part| {
                FileName::new(part).map_err(|problem| NameError::UnsafePart {
                    part: part.to_owned(),
                    problem: Box::new(problem),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// The names, outermost first.
    pub fn components(&self) -> &[FileName] {
        &self.0
    }

    /// `base` joined with every name.
    pub fn join_to(&self, base: &Path) -> PathBuf {
        let mut path = base.to_path_buf();
        path.extend(self.0.iter().map(FileName::as_str));
        path
    }
}

impl fmt::Display for RelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for name in &self.0 {
            if !first {
                f.write_str("/")?;
            }
            f.write_str(name.as_str())?;
            first = false;
        }
        Ok(())
    }
}

/// Checks a model `version`: it is spliced into names (`name@1.0`,
/// `model-v1.0.pt`), so it must be a name fragment: no separators, no
/// control characters, not empty, `.` or `..`.
pub fn check_version(text: &str) -> Result<(), NameError> {
    check_structure(text)?;
    if text.contains('/') {
        return Err(NameError::Separator);
    }
    Ok(())
}

/// Checks a model `base_name`: `/`-separated parts (`voxel51/clip`), none of
/// them empty, `.` or `..`, without backslashes or control characters. Its
/// last part becomes a file name only for a model without `base_filename`,
/// and is then checked as a [`FileName`].
pub fn check_base_name(text: &str) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.starts_with('/') {
        return Err(NameError::Absolute);
    }
    for part in text.split('/') {
        check_structure(part).map_err(|problem| NameError::UnsafePart {
            part: part.to_owned(),
            problem: Box::new(problem),
        })?;
    }
    Ok(())
}

/// `text` escaped for an error message: control characters, quotes and
/// backslashes as Rust escapes, cut to 200 characters.
pub fn escape(text: &str) -> String {
    const LIMIT: usize = 200;
    let escaped: String = text.escape_debug().collect();
    if escaped.chars().count() <= LIMIT {
        escaped
    } else {
        format!("{}...", escaped.chars().take(LIMIT).collect::<String>())
    }
}

/// The rules every name and fragment follows.
fn check_structure(text: &str) -> Result<(), NameError> {
    match text {
        "" => return Err(NameError::Empty),
        "." => return Err(NameError::CurrentDir),
        ".." => return Err(NameError::ParentDir),
        _ => {}
    }
    if text.contains('\\') {
        return Err(NameError::Backslash);
    }
    if let Some(character) = text.chars().find(|character| character.is_control()) {
        return Err(NameError::Control { character });
    }
    Ok(())
}

/// The reserved name `text` matches, ignoring ASCII case.
fn reserved(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if let Some(name) = RESERVED.iter().find(|name| **name == lower) {
        return Some((*name).to_owned());
    }
    // `sources-v1.json` and every later version of the index.
    let index_version = lower
        .strip_prefix("sources-v")
        .and_then(|rest| rest.strip_suffix(".json"));
    if index_version
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(text.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_single_plain_unreserved_names() {
        let good = [
            "model.pt",
            "CLIP-ViT-B-32.pt",
            "Qwen2.5-VL-3B-Instruct",
            "model-v1.0.pt",
            "clip@2",
            "a b",
            "Traffic Sign Detection Models",
            "@Burhan-Q",
            "manifest.json.bak",
            "sources-v.json",
            "x..y",
        ];
        for name in good {
            assert_eq!(FileName::new(name).unwrap().as_str(), name);
        }
        let bad = [
            ("", NameError::Empty),
            (".", NameError::CurrentDir),
            ("..", NameError::ParentDir),
            ("a/b", NameError::Separator),
            ("/abs", NameError::Separator),
            ("a\\b", NameError::Backslash),
            ("a\0b", NameError::Control { character: '\0' }),
            ("a\nb", NameError::Control { character: '\n' }),
            (".tmp", NameError::Hidden),
            (".locks", NameError::Hidden),
            (".registry.lock", NameError::Hidden),
            (".model.pt.partial", NameError::Hidden),
            ("...", NameError::Hidden),
            (
                "sources-v1.json",
                NameError::Reserved {
                    name: "sources-v1.json".into(),
                },
            ),
            (
                "Sources-V12.JSON",
                NameError::Reserved {
                    name: "Sources-V12.JSON".into(),
                },
            ),
            (
                "MANIFEST.json",
                NameError::Reserved {
                    name: "manifest.json".into(),
                },
            ),
            (
                "__init__.py",
                NameError::Reserved {
                    name: "__init__.py".into(),
                },
            ),
            (
                "download_model",
                NameError::Reserved {
                    name: "download_model".into(),
                },
            ),
            (
                "load_model",
                NameError::Reserved {
                    name: "load_model".into(),
                },
            ),
        ];
        for (name, expected) in bad {
            assert_eq!(FileName::new(name), Err(expected), "{name:?}");
        }
        assert_eq!(
            FileName::new(&"x".repeat(256)),
            Err(NameError::TooLong { length: 256 })
        );
        assert!(FileName::new(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn relative_paths_check_every_part() {
        let path = RelativePath::new("voxel51/openai-clip").unwrap();
        assert_eq!(path.to_string(), "voxel51/openai-clip");
        assert_eq!(
            path.join_to(Path::new("/zoo")),
            PathBuf::from("/zoo/voxel51/openai-clip")
        );
        for bad in [
            "", "/abs", "a//b", "a/", "../x", "a/../b", "a/.", ".tmp/x", "x/.locks", "a\\b",
        ] {
            assert!(RelativePath::new(bad).is_err(), "{bad:?}");
        }
        let message = RelativePath::new("a/../b").unwrap_err().to_string();
        assert_eq!(
            message,
            "has an unsafe part `..`, which is `..`, the parent folder"
        );
    }

    #[test]
    fn versions_and_base_names_follow_the_structural_rules() {
        for good in ["1.0", "2", "v1.2-rc1", ".1", "1.0 final"] {
            assert!(check_version(good).is_ok(), "{good:?}");
        }
        for bad in ["", ".", "..", "1/..", "/../../x", "a\\b", "1\u{7}"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        for good in [
            "voxel51/clip-vit-base32-torch",
            "Qwen/Qwen2.5-VL",
            "net",
            ".x",
        ] {
            assert!(check_base_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "..", "x/..", "slash/", "/abs", "a//b", "a/./b", "a\\b"] {
            assert!(check_base_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escaped_values_are_printable_and_bounded() {
        assert_eq!(escape("a\nb\0"), "a\\nb\\0");
        assert_eq!(escape(&"y".repeat(500)).chars().count(), 203);
    }
}
