//! Deterministic sharding of a dataset's samples.
//!
//! A sample belongs to shard `K` of `N` when
//! `u64::from_be_bytes(SHA-256(key)[0..8]) % N == K`, where `key` is the
//! sample's stable key: its location relative to the dataset's root, with
//! `/` between components, as raw bytes (see [`stable_key`]). SHA-256 is
//! fixed by FIPS 180-4, so every machine, every build and every listing
//! order puts a sample in the same shard; adding samples to other shards
//! moves nothing.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why `--shard` text is not a shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// Not `K/N` with whole numbers.
    #[error(
        "`{text}` is not a shard: write `K/N` with whole numbers, 0 <= K < N (a Kubernetes Indexed Job passes `$(JOB_COMPLETION_INDEX)/N`, a Slurm array `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`)"
    )]
    Syntax {
        /// The text given.
        text: String,
    },
    /// An environment variable reached zoo unexpanded.
    #[error(
        "`{text}` is not a shard: the variable in it was not expanded (Kubernetes expands `$(NAME)` only for variables of the container's `env` or its own, a shell expands `$NAME` only outside single quotes)"
    )]
    Unexpanded {
        /// The text given.
        text: String,
    },
    /// `N` is over [`MAX_SHARDS`].
    #[error(
        "`{text}` is not a shard: zoo splits a dataset into at most {MAX_SHARDS} shards; use fewer, larger shards"
    )]
    TooMany {
        /// The text given.
        text: String,
    },
    /// `K` is not below `N`, or `N` is 0.
    #[error("`{text}` is not a shard: the index must be below the count, and the count at least 1")]
    OutOfRange {
        /// The text given.
        text: String,
    },
}

/// The most shards a dataset is split into (`N` of `--shard K/N`, and of the
/// `shard-K-of-N` folders a merge reads).
pub const MAX_SHARDS: u64 = 100_000;

/// Shard `index` of `count`: the samples whose stable key hashes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    /// `K`, from 0.
    pub index: u64,
    /// `N`, at least 1.
    pub count: u64,
}

impl Shard {
    /// The whole dataset: shard 0 of 1.
    pub const ALL: Self = Self { index: 0, count: 1 };

    /// Shard `index` of `count`, `None` unless `index < count <=`
    /// [`MAX_SHARDS`].
    pub fn new(index: u64, count: u64) -> Option<Self> {
        (index < count && count <= MAX_SHARDS).then_some(Self { index, count })
    }

    /// Parses `K/N` (surrounding blanks allowed).
    pub fn parse(text: &str) -> Result<Self, ShardError> {
        if text.contains('$') {
            return Err(ShardError::Unexpanded {
                text: text.to_owned(),
            });
        }
        let syntax = || ShardError::Syntax {
            text: text.to_owned(),
        };
        let (index, count) = text.trim().split_once('/').ok_or_else(syntax)?;
        let number = |part: &str| {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(syntax());
            }
            part.parse::<u64>().map_err(|_| syntax())
        };
        let (index, count) = (number(index)?, number(count)?);
        if count > MAX_SHARDS {
            return Err(ShardError::TooMany {
                text: text.to_owned(),
            });
        }
        Self::new(index, count).ok_or_else(|| ShardError::OutOfRange {
            text: text.to_owned(),
        })
    }

    /// The shard of `count` that stable key `key` belongs to.
    pub fn index_of(key: &[u8], count: u64) -> u64 {
        let digest = Sha256::digest(key);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % count.max(1)
    }

    /// Whether the sample with stable key `key` is in this shard.
    pub fn contains(&self, key: &[u8]) -> bool {
        Self::index_of(key, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A sample's stable key: `path` relative to `root`, components joined by
/// `/`, as raw bytes (the same on every machine that mounts the images
/// elsewhere). A sample outside `root` (an imported FiftyOne dataset whose
/// `filepath`s are absolute, imported with `--allow-outside-paths`) is keyed
/// by its whole absolute path, which starts with `/`, so it never equals a
/// relative key. `None` when `path` is neither (it has `.` or `..` parts).
pub fn stable_key(root: &Path, path: &Path) -> Option<Vec<u8>> {
    let (relative, mut key) = match path.strip_prefix(root) {
        Ok(relative) => (relative, Vec::new()),
        Err(_) if path.has_root() => (path.strip_prefix("/").ok()?, b"/".to_vec()),
        Err(_) => return None,
    };
    let start = key.len();
    for component in relative.components() {
        let Component::Normal(part) = component else {
            return None;
        };
        if key.len() > start {
            key.push(b'/');
        }
        key.extend_from_slice(part.as_encoded_bytes());
    }
    (key.len() > start).then_some(key)
}

/// The path of the sample stable key `key` names under `root`, the inverse
/// of [`stable_key`]: `None` when the key is not one `stable_key` makes
/// (an empty, `.` or `..` part, or an absolute key for a path inside
/// `root`), so a key from a part file never names a file elsewhere.
pub fn key_path(root: &Path, key: &[u8]) -> Option<PathBuf> {
    let (absolute, relative) = match key.strip_prefix(b"/") {
        Some(rest) => (true, rest),
        None => (false, key),
    };
    let mut path = if absolute {
        PathBuf::from("/")
    } else {
        root.to_path_buf()
    };
    for part in relative.split(|byte| *byte == b'/') {
        if part.is_empty() || part == b"." || part == b".." {
            return None;
        }
        path.push(path_part(part));
    }
    (stable_key(root, &path)? == key).then_some(path)
}

#[cfg(unix)]
fn path_part(bytes: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes)
}

#[cfg(not(unix))]
fn path_part(bytes: &[u8]) -> std::ffi::OsString {
    String::from_utf8_lossy(bytes).into_owned().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_text_is_parsed_strictly() {
        let cases: &[(&str, Option<(u64, u64)>)] = &[
            ("0/1", Some((0, 1))),
            ("3/4", Some((3, 4))),
            (" 2 / 8 ", Some((2, 8))),
            ("4/4", None),
            ("0/0", None),
            ("-1/4", None),
            ("+1/4", None),
            ("1", None),
            ("1/4/5", None),
            ("a/4", None),
            ("$(JOB_COMPLETION_INDEX)/4", None),
            ("/4", None),
            ("99999999999999999999999/4", None),
            ("99999/100000", Some((99_999, 100_000))),
            ("0/100001", None),
            ("0/1000000000000", None),
        ];
        for (text, expected) in cases {
            let parsed = Shard::parse(text)
                .ok()
                .map(|shard| (shard.index, shard.count));
            assert_eq!(parsed, *expected, "{text}");
        }
        assert!(matches!(
            Shard::parse("$(JOB_COMPLETION_INDEX)/4"),
            Err(ShardError::Unexpanded { .. })
        ));
        assert!(matches!(
            Shard::parse("0/1000000000000"),
            Err(ShardError::TooMany { .. })
        ));
        assert_eq!(Shard::new(0, MAX_SHARDS + 1), None);
    }

    #[test]
    fn keys_of_samples_inside_and_outside_the_root_map_back_to_their_paths() {
        let root = Path::new("/data/set");
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("/data/set/a/b.jpg", Some(b"a/b.jpg")),
            ("/media/c.jpg", Some(b"/media/c.jpg")),
            ("/data/set", None),
            ("/data/set/../x.jpg", None),
            ("relative.jpg", None),
        ];
        for (path, key) in cases {
            let found = stable_key(root, Path::new(path));
            assert_eq!(found.as_deref(), *key, "{path}");
            if let Some(key) = key {
                assert_eq!(key_path(root, key).as_deref(), Some(Path::new(path)));
            }
        }
        for key in [
            &b"/data/set/a/b.jpg"[..],
            b"../x.jpg",
            b"a//b.jpg",
            b"a/./b.jpg",
            b"",
            b"/",
        ] {
            assert_eq!(
                key_path(root, key),
                None,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }

    /// The hash is SHA-256 and nothing else: these values are fixed forever
    /// (a change would move samples between shards of a running job).
    #[test]
    fn shard_of_a_key_is_fixed_across_builds_and_machines() {
        // FIPS 180-4's test vector: SHA-256("abc") = ba7816bf 8f01cfea ...
        let first: u64 = 0xba78_16bf_8f01_cfea;
        for count in [1, 2, 3, 4, 7, 200, 1 << 40] {
            assert_eq!(Shard::index_of(b"abc", count), first % count);
        }
        assert_eq!(Shard::index_of(b"abc", 4), 2);
        assert_eq!(Shard::index_of(b"", 1), 0);
    }

    #[test]
    fn every_key_is_in_exactly_one_shard_and_they_are_balanced() {
        let keys: Vec<Vec<u8>> = (0..4000)
            .map(|index| format!("sub/p{index:05}.jpg").into_bytes())
            .collect();
        let count = 4;
        let mut sizes = [0usize; 4];
        for key in &keys {
            let owners: Vec<u64> = (0..count)
                .filter(|index| Shard::new(*index, count).unwrap().contains(key))
                .collect();
            assert_eq!(owners.len(), 1);
            sizes[owners[0] as usize] += 1;
        }
        for size in sizes {
            assert!((850..1150).contains(&size), "{sizes:?}");
        }
    }

    #[test]
    fn stable_key_is_relative_with_slashes() {
        let root = Path::new("/data/pics");
        assert_eq!(
            stable_key(root, Path::new("/data/pics/sub/a.jpg")),
            Some(b"sub/a.jpg".to_vec())
        );
        // Outside the root (an import with `--allow-outside-paths`): the
        // whole path, which no relative key equals.
        assert_eq!(
            stable_key(root, Path::new("/other/a.jpg")),
            Some(b"/other/a.jpg".to_vec())
        );
        assert_eq!(stable_key(root, Path::new("/data/pics")), None);
    }
}
