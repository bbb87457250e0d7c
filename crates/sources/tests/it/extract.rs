use std::path::Path;

use zoo_sources::{ArchiveKind, ExtractLimits, SourceError, extract};
use zoo_test_support::Archive;

/// Every kind, zoo's bundles (`.tar.zst`) included: each hostile archive
/// below is tried in each.
const KINDS: [ArchiveKind; 4] = [
    ArchiveKind::Zip,
    ArchiveKind::Tar,
    ArchiveKind::TarGz,
    ArchiveKind::TarZst,
];

fn bytes(archive: &Archive, kind: ArchiveKind) -> Vec<u8> {
    match kind {
        ArchiveKind::Zip => archive.to_zip(),
        ArchiveKind::Tar => archive.to_tar(),
        ArchiveKind::TarGz => archive.to_tar_gz(),
        ArchiveKind::TarZst => zstd::encode_all(&archive.to_tar()[..], 3).unwrap(),
    }
}

fn run(
    archive: &Archive,
    kind: ArchiveKind,
    limits: &ExtractLimits,
) -> (
    tempfile::TempDir,
    Result<zoo_sources::ExtractStats, SourceError>,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("a{}", kind.extension()));
    fs_err::write(&file, bytes(archive, kind)).unwrap();
    let result = extract(&file, kind, &dir.path().join("out"), limits);
    (dir, result)
}

fn tree(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
                names.push(format!("{relative}/"));
            } else {
                names.push(relative);
            }
        }
    }
    names.sort();
    names
}

#[test]
fn extracts_files_dirs_and_exec_bits_in_every_format() {
    let archive = Archive::new()
        .dir("top/")
        .file("top/manifest.json", "{}")
        .file_with_mode("top/bin/run", "#!/bin/sh\n", 0o755)
        .symlink("top/alias", "manifest.json");
    for kind in KINDS {
        let (dir, result) = run(&archive, kind, &ExtractLimits::default());
        let stats = result.unwrap();
        assert_eq!(stats.files, 2, "{kind:?}");
        assert_eq!(stats.skipped_links, 1, "{kind:?}");
        let out = dir.path().join("out");
        assert_eq!(
            tree(&out),
            vec!["top/", "top/bin/", "top/bin/run", "top/manifest.json"],
            "{kind:?}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs_err::metadata(out.join("top/bin/run"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111, "{kind:?}");
        }
    }
}

#[test]
fn hostile_entries_are_refused_in_every_format() {
    let cases = [
        (Archive::new().file("../evil.txt", "x"), "`..`"),
        (Archive::new().file("ok/../../evil.txt", "x"), "`..`"),
        (Archive::new().file("/tmp/evil.txt", "x"), "absolute"),
        (
            Archive::new().symlink("link", "/etc/passwd"),
            "pointing outside",
        ),
        (
            Archive::new().symlink("a/link", "../../outside"),
            "pointing outside",
        ),
    ];
    for (archive, needle) in &cases {
        for kind in KINDS {
            let (dir, result) = run(archive, kind, &ExtractLimits::default());
            let message = result.unwrap_err().to_string();
            assert!(message.contains(needle), "{kind:?}: {message}");
            assert!(message.contains("refusing archive"), "{message}");
            assert!(!dir.path().join("evil.txt").exists());
        }
    }
    let hardlink = Archive::new()
        .file("a", "x")
        .hardlink("b", "../../etc/passwd");
    for kind in [ArchiveKind::Tar, ArchiveKind::TarGz] {
        let (_dir, result) = run(&hardlink, kind, &ExtractLimits::default());
        assert!(result.unwrap_err().to_string().contains("pointing outside"));
    }
}

#[test]
fn bombs_hit_the_limits() {
    // 64 MiB of zeros compresses to a few kilobytes.
    let bomb = Archive::new().file("zeros", vec![0u8; 64 << 20]);
    let limits = ExtractLimits {
        max_bytes: 1 << 20,
        max_entries: 100,
    };
    for kind in [ArchiveKind::Zip, ArchiveKind::TarGz] {
        let (_dir, result) = run(&bomb, kind, &limits);
        let message = result.unwrap_err().to_string();
        assert!(message.contains("more than 1048576 bytes"), "{message}");
    }
    let mut many = Archive::new();
    for index in 0..20 {
        many = many.file(&format!("f{index}"), "x");
    }
    let limits = ExtractLimits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let (_dir, result) = run(&many, ArchiveKind::Zip, &limits);
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("more than 10 entries")
    );
}

#[test]
fn corrupt_archives_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.zip");
    fs_err::write(&file, b"PK\x03\x04 definitely not a zip").unwrap();
    for kind in KINDS {
        let err = extract(
            &file,
            kind,
            &dir.path().join("out"),
            &ExtractLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SourceError::Corrupt { .. } | SourceError::UnsafeEntry { .. }
            ),
            "{kind:?}: {err}"
        );
    }
    fs_err::write(&file, b"plain text").unwrap();
    assert_eq!(ArchiveKind::sniff(&file).unwrap(), None);
}
