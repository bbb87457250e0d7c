//! Property-based tests over the two parsers of hostile input: source
//! identifiers and archives (issue: seal the trust boundary). Whatever the
//! input, no panic; an identifier is either an error naming the input or
//! well formed; an archive writes nothing outside its destination folder
//! and never creates a link.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use zoo_sources::{ArchiveKind, ExtractLimits, GitHubRef, SourceError, SourceId, extract};
use zoo_test_support::{Archive, dir_snapshot};

// ---------------------------------------------------------------------------
// Identifiers.

/// Pieces that make identifiers interesting: schemes, hosts, separators,
/// path tricks, git ref tricks, whitespace and control characters.
const IDENTIFIER_PIECES: &[&str] = &[
    "https://",
    "http://",
    "HTTPS://",
    "ftp://",
    "file://",
    "://",
    "github.com",
    "www.github.com",
    "GitHub.com",
    "example.com",
    "127.0.0.1:9",
    "/",
    "//",
    ".",
    "..",
    ".git",
    "tree",
    "commit",
    "blob",
    "a",
    "B",
    "user",
    "my.repo",
    "0123abc",
    "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
    "-",
    "_",
    "?",
    "#",
    "%2e",
    ":",
    "@",
    "\\",
    " ",
    "\t",
    "\n",
    "\0",
    "\u{7f}",
    "\u{202e}",
    "é",
    "~",
    "^",
    "[",
    "*",
    ".zip",
    ".tar.gz",
    ".tgz",
];

fn adversarial_identifier() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(IDENTIFIER_PIECES), 0..12)
        .prop_map(|pieces| pieces.concat())
}

/// Identifiers shaped like the real forms, with a hostile part here and
/// there: more likely than free concatenation to get past the first checks.
fn shaped_identifier() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(
        &[
            "",
            "https://github.com/",
            "http://www.github.com/",
            "HTTPS://GITHUB.COM/",
            "https://example.com/",
        ][..],
    );
    let name = prop::sample::select(
        &[
            "a",
            "B-c",
            "x_y",
            "my.repo",
            "r.git",
            "r.git.git",
            ".git",
            ".",
            "..",
            "",
            "é",
            "a b",
        ][..],
    );
    let tail = prop::sample::select(
        &[
            "",
            "/",
            "/tree/main",
            "/tree/release/v2/sub",
            "/tree/x#y",
            "/tree/x?y",
            "/tree/a//b",
            "/tree/./a",
            "/commit/0123abc",
            "/commit/0123ABC",
            "/commit/xyz",
            "/blob/main/x",
            "/main",
            "/feat#1",
            "/v1.0/../x",
            "?tab=readme",
            "#readme",
            ".zip",
            "/a.tar.gz",
        ][..],
    );
    (prefix, name.clone(), name, tail)
        .prop_map(|(prefix, owner, repo, tail)| format!("{prefix}{owner}/{repo}{tail}"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// What "well formed" means for each kind of identifier.
fn assert_well_formed(input: &str, id: &SourceId) -> Result<(), TestCaseError> {
    let normalized = id.normalized();
    prop_assert!(
        !normalized
            .chars()
            .any(|character| character.is_whitespace() || character.is_control()),
        "{input:?} -> {normalized:?}"
    );
    match id {
        SourceId::GitHub {
            owner,
            repo,
            reference,
        } => {
            prop_assert!(valid_name(owner), "{input:?}: owner {owner:?}");
            prop_assert!(valid_name(repo), "{input:?}: repo {repo:?}");
            prop_assert!(normalized.starts_with("https://github.com/"));
            match reference {
                GitHubRef::Default => {}
                GitHubRef::Tree(rest) => prop_assert!(
                    !rest.is_empty()
                        && rest
                            .split('/')
                            .all(|part| !part.is_empty() && part != "." && part != ".."),
                    "{input:?}: ref {rest:?}"
                ),
                GitHubRef::Commit(sha) => prop_assert!(
                    (7..=40).contains(&sha.len())
                        && sha.bytes().all(|byte| byte.is_ascii_hexdigit()),
                    "{input:?}: sha {sha:?}"
                ),
            }
        }
        SourceId::Archive { url, .. } => {
            let lower = url.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"));
            prop_assert!(
                rest.is_some_and(|rest| !rest.starts_with('/') && !rest.is_empty()),
                "{input:?}: url {url:?}"
            );
        }
    }
    // One spelling per source: the canonical URL names the same source.
    let again: SourceId = normalized
        .parse()
        .map_err(|err| TestCaseError::fail(format!("{input:?} -> {normalized:?}: {err}")))?;
    prop_assert_eq!(again.normalized(), normalized, "{:?}", input);
    Ok(())
}

fn check_identifier(input: &str) -> Result<(), TestCaseError> {
    match input.parse::<SourceId>() {
        Ok(id) => assert_well_formed(input, &id),
        Err(SourceError::InvalidIdentifier { input: named, .. }) => {
            prop_assert_eq!(named, input);
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "{input:?}: unexpected error kind {other:?}"
        ))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn identifier_parser_never_panics_on_any_string(input in any::<String>()) {
        check_identifier(&input)?;
    }

    #[test]
    fn identifier_parser_never_panics_on_adversarial_strings(input in adversarial_identifier()) {
        check_identifier(&input)?;
    }

    #[test]
    fn identifier_parser_never_panics_on_shaped_strings(input in shaped_identifier()) {
        check_identifier(&input)?;
    }
}

#[test]
fn identifier_errors_name_the_input() {
    for input in ["", "a/..", "ftp://x/y.zip", "\0/\0", "a/b/tree/../x", "🦀"] {
        let message = input.parse::<SourceId>().unwrap_err().to_string();
        assert!(message.contains(&format!("`{input}`")), "{message}");
    }
}

// ---------------------------------------------------------------------------
// Archives.

/// A marker replaced by the absolute path of the test's root folder, so an
/// absolute entry name that got through would land where the snapshot sees
/// it.
const ROOT: &str = "<ROOT>";

/// Folders between the root and the destination: more than the most `..`
/// a generated name holds, so an escape stays inside the snapshot.
const DEPTH: &[&str] = &["l1", "l2", "l3", "l4", "l5", "l6", "parent"];

const ENTRY_PIECES: &[&str] = &[
    "a",
    "b",
    "dir",
    "manifest.json",
    "..",
    ".",
    "",
    "/",
    ROOT,
    "\\",
    "..\\..",
    "C:",
    "\0",
    "\n",
    "\u{1b}",
    "\u{7f}",
    "é",
    " ",
    "~",
    "-",
    ".hidden",
];

fn entry_name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(ENTRY_PIECES), 1..6),
        prop::sample::select(&["/", "/", "\\", "//"][..]),
    )
        .prop_map(|(pieces, separator)| pieces.join(separator))
}

#[derive(Debug, Clone)]
enum Generated {
    File(String, Vec<u8>, u32),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
}

fn generated_entry() -> impl Strategy<Value = Generated> {
    prop_oneof![
        4 => (
            entry_name(),
            prop::collection::vec(any::<u8>(), 0..64),
            prop::sample::select(&[0o644u32, 0o755, 0o4777, 0o000][..]),
        )
            .prop_map(|(name, contents, mode)| Generated::File(name, contents, mode)),
        1 => entry_name().prop_map(Generated::Dir),
        1 => (entry_name(), entry_name()).prop_map(|(name, target)| Generated::Symlink(name, target)),
        1 => (entry_name(), entry_name()).prop_map(|(name, target)| Generated::Hardlink(name, target)),
    ]
}

/// First bytes that steer the sniffing and the decoders.
const MAGIC: &[&[u8]] = &[
    b"",
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x1f\x8b\x08",
    b"\x28\xb5\x2f\xfd",
];

fn kinds() -> impl Strategy<Value = ArchiveKind> {
    prop::sample::select(
        &[
            ArchiveKind::Zip,
            ArchiveKind::Tar,
            ArchiveKind::TarGz,
            ArchiveKind::TarZst,
        ][..],
    )
}

/// The archive bytes, or `None` when the writer itself refuses the names (a
/// zip with a repeated name, a tar name too long for the old header).
fn build(entries: &[Generated], kind: ArchiveKind, root: &Path) -> Option<Vec<u8>> {
    let fill = |text: &str| text.replace(ROOT, &root.display().to_string());
    let mut archive = Archive::new();
    for entry in entries {
        archive = match entry {
            Generated::File(name, contents, mode) => {
                archive.file_with_mode(&fill(name), contents.clone(), *mode)
            }
            Generated::Dir(name) => archive.dir(&fill(name)),
            Generated::Symlink(name, target) => archive.symlink(&fill(name), &fill(target)),
            // Zip has no hard links: a file stands in.
            Generated::Hardlink(name, target) if kind == ArchiveKind::Zip => {
                archive.file(&fill(name), fill(target))
            }
            Generated::Hardlink(name, target) => archive.hardlink(&fill(name), &fill(target)),
        };
    }
    let fits_tar = archive.entries().iter().all(|entry| {
        let (name, target) = match entry {
            zoo_test_support::Entry::File { name, .. } | zoo_test_support::Entry::Dir { name } => {
                (name, "")
            }
            zoo_test_support::Entry::Symlink { name, target }
            | zoo_test_support::Entry::Hardlink { name, target } => (name, target.as_str()),
        };
        name.len() < 100 && target.len() < 100
    });
    match kind {
        ArchiveKind::Zip => archive.try_to_zip().ok(),
        ArchiveKind::Tar => fits_tar.then(|| archive.to_tar()),
        ArchiveKind::TarGz => fits_tar.then(|| archive.to_tar_gz()),
        ArchiveKind::TarZst => {
            fits_tar.then(|| zstd::encode_all(&archive.to_tar()[..], 3).unwrap())
        }
    }
}

/// A folder tree around the destination, with bystander files that must
/// survive.
struct Scene {
    _dir: tempfile::TempDir,
    root: PathBuf,
    parent: PathBuf,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut parent = root.clone();
        for part in DEPTH {
            parent.push(part);
            fs_err::create_dir_all(&parent).unwrap();
            fs_err::write(parent.join("bystander"), part).unwrap();
        }
        Self {
            _dir: dir,
            root,
            parent,
        }
    }

    fn destination(&self) -> PathBuf {
        self.parent.join("out")
    }

    /// Everything under the root but the destination.
    fn outside(&self) -> Vec<String> {
        let out = self
            .destination()
            .strip_prefix(&self.root)
            .unwrap()
            .display()
            .to_string();
        dir_snapshot(&self.root)
            .into_iter()
            .filter(|line| !line.starts_with(&format!("{out}/")))
            .collect()
    }

    /// Extracts `bytes` as `kind` into the destination and checks what
    /// holds whatever the outcome: nothing outside changed, no link exists,
    /// the limits hold.
    fn extract(
        &self,
        bytes: &[u8],
        kind: ArchiveKind,
        limits: &ExtractLimits,
    ) -> Result<Result<zoo_sources::ExtractStats, SourceError>, TestCaseError> {
        let archive = self.parent.join(format!("archive{}", kind.extension()));
        fs_err::write(&archive, bytes).unwrap();
        let before = self.outside();
        let result = extract(&archive, kind, &self.destination(), limits);
        prop_assert_eq!(&self.outside(), &before, "written outside: {:?}", result);
        let (links, bytes_written) = walk(&self.destination());
        prop_assert_eq!(links, Vec::<PathBuf>::new(), "links created");
        prop_assert!(
            bytes_written <= limits.max_bytes,
            "{} bytes written, limit {}",
            bytes_written,
            limits.max_bytes
        );
        if let Err(err) = &result {
            // Every refusal says which archive.
            let message = err.to_string();
            prop_assert!(
                message.contains("archive") || matches!(err, SourceError::Io(_)),
                "{}",
                message
            );
        }
        fs_err::remove_file(&archive).unwrap();
        Ok(result)
    }
}

/// Links under `dir` (there must be none) and the bytes of its files.
fn walk(dir: &Path) -> (Vec<PathBuf>, u64) {
    let mut links = Vec::new();
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let metadata = fs_err::symlink_metadata(entry.path()).unwrap();
            if metadata.file_type().is_symlink() {
                links.push(entry.path());
            } else if metadata.is_dir() {
                stack.push(entry.path());
            } else {
                bytes += metadata.len();
            }
        }
    }
    (links, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn extraction_of_hostile_entries_stays_inside_the_destination(
        entries in prop::collection::vec(generated_entry(), 0..24),
        kind in kinds(),
        max_entries in 1u64..32,
        max_bytes in 0u64..2048,
    ) {
        let scene = Scene::new();
        let Some(bytes) = build(&entries, kind, &scene.root) else {
            return Ok(());
        };
        let limits = ExtractLimits { max_bytes, max_entries };
        let result = scene.extract(&bytes, kind, &limits)?;
        if result.is_ok() {
            prop_assert!(entries.len() as u64 <= max_entries, "{} entries passed a limit of {}", entries.len(), max_entries);
        }
    }

    #[test]
    fn extraction_of_random_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        magic in prop::sample::select(MAGIC),
        kind in kinds(),
    ) {
        let scene = Scene::new();
        let mut data = magic.to_vec();
        data.extend_from_slice(&bytes);
        // Extracted or refused, both are fine: `Scene::extract` checks what
        // must hold either way.
        let _ = scene.extract(&data, kind, &ExtractLimits { max_bytes: 1 << 20, max_entries: 1000 })?;
    }

    #[test]
    fn extraction_of_damaged_archives_never_panics(
        entries in prop::collection::vec(generated_entry(), 1..8),
        kind in kinds(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let scene = Scene::new();
        let Some(mut bytes) = build(&entries, kind, &scene.root) else {
            return Ok(());
        };
        for (index, value) in damage {
            let position = index.index(bytes.len());
            bytes[position] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        // Extracted or refused, both are fine: `Scene::extract` checks what
        // must hold either way.
        let _ = scene.extract(&bytes, kind, &ExtractLimits { max_bytes: 1 << 20, max_entries: 1000 })?;
    }
}

#[test]
fn huge_entry_counts_stop_at_the_limit() {
    let mut archive = Archive::new();
    for index in 0..20_000 {
        archive = archive.file(&format!("f/{index}"), "");
    }
    let limits = ExtractLimits {
        max_bytes: 1 << 20,
        max_entries: 5_000,
    };
    for (kind, bytes) in [
        (ArchiveKind::Zip, archive.to_zip()),
        (ArchiveKind::TarGz, archive.to_tar_gz()),
    ] {
        let scene = Scene::new();
        let err = scene
            .extract(&bytes, kind, &limits)
            .unwrap()
            .expect_err("over the entry limit");
        assert!(
            err.to_string().contains("more than 5000 entries"),
            "{kind:?}: {err}"
        );
        let files = dir_snapshot(&scene.destination())
            .iter()
            .filter(|line| line.ends_with("bytes)"))
            .count();
        assert!(files <= 5_000, "{kind:?}: {files} files");
    }
}
