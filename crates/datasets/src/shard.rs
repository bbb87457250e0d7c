//! Deterministic sharding of a dataset's samples.
//!
//! A sample belongs to shard `K` of `N` when
//! `u64::from_be_bytes(SHA-256(key)[0..8]) % N == K`, where `key` is the
//! sample's stable key: its location relative to the dataset's root, with
//! `/` between components, as raw bytes (see [`stable_key`]). SHA-256 is
//! fixed by FIPS 180-4, so every machine, every build and every listing
//! order puts a sample in the same shard; adding samples to other shards
//! moves nothing.

use std::path::{Component, Path};

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
    /// `K` is not below `N`, or `N` is 0.
    #[error("`{text}` is not a shard: the index must be below the count, and the count at least 1")]
    OutOfRange {
        /// The text given.
        text: String,
    },
}

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

    /// Shard `index` of `count`, `None` unless `index < count`.
    pub fn new(index: u64, count: u64) -> Option<Self> {
        (index < count).then_some(Self { index, count })
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
        Self::new(number(index)?, number(count)?).ok_or_else(|| ShardError::OutOfRange {
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
/// elsewhere); `None` when `path` is not under `root`.
pub fn stable_key(root: &Path, path: &Path) -> Option<Vec<u8>> {
    let relative = path.strip_prefix(root).ok()?;
    let mut key = Vec::new();
    for component in relative.components() {
        let Component::Normal(part) = component else {
            return None;
        };
        if !key.is_empty() {
            key.push(b'/');
        }
        key.extend_from_slice(part.as_encoded_bytes());
    }
    (!key.is_empty()).then_some(key)
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
        assert_eq!(stable_key(root, Path::new("/other/a.jpg")), None);
        assert_eq!(stable_key(root, Path::new("/data/pics")), None);
    }
}
