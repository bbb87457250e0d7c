//! Safe extraction of zip, tar and tar.gz archives.
//!
//! Sources are untrusted, so extraction refuses (as an error, leaving the
//! caller to throw the target away) any entry whose name is absolute, holds
//! `..` or control characters, and any link pointing outside the archive.
//! Links inside the archive are skipped, never created. Only the executable
//! bit of a file's mode is kept. Total bytes written and the entry count are
//! capped, counting what is actually written rather than what headers claim.

use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::SourceError;

/// The archive formats zoo opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    /// `.zip`
    Zip,
    /// `.tar`
    Tar,
    /// `.tar.gz` / `.tgz`
    TarGz,
    /// `.tar.zst` / `.tzst` (zoo's bundles)
    TarZst,
}

impl ArchiveKind {
    /// The kind a file name or URL implies (query and fragment ignored).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.split(['?', '#']).next().unwrap_or_default();
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".zip") {
            Some(Self::Zip)
        } else if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if lower.ends_with(".tar.zst") || lower.ends_with(".tzst") {
            Some(Self::TarZst)
        } else if lower.ends_with(".tar") {
            Some(Self::Tar)
        } else {
            None
        }
    }

    /// The kind the first bytes of a file reveal.
    pub fn sniff(path: &Path) -> std::io::Result<Option<Self>> {
        let mut head = [0u8; 512];
        let mut file = fs_err::File::open(path)?;
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..])? {
                0 => break,
                read => filled += read,
            }
        }
        let head = &head[..filled];
        Ok(
            if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
                Some(Self::Zip)
            } else if head.starts_with(&[0x1f, 0x8b]) {
                Some(Self::TarGz)
            } else if head.starts_with(&ZSTD_MAGIC) {
                Some(Self::TarZst)
            } else if head.len() >= 262 && &head[257..262] == b"ustar" {
                Some(Self::Tar)
            } else {
                None
            },
        )
    }

    /// The usual extension, with its dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Zip => ".zip",
            Self::Tar => ".tar",
            Self::TarGz => ".tar.gz",
            Self::TarZst => ".tar.zst",
        }
    }
}

/// Caps on what one archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Total bytes of file contents.
    pub max_bytes: u64,
    /// Number of entries.
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    /// 32 GiB and 500,000 entries: far above any model source, far below a
    /// full disk.
    fn default() -> Self {
        Self {
            max_bytes: 32 << 30,
            max_entries: 500_000,
        }
    }
}

/// What an extraction wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtractStats {
    /// Regular files written.
    pub files: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Links skipped (they point inside the archive).
    pub skipped_links: u64,
}

/// Extracts `archive` (of `kind`) into the directory `dest`, which is created
/// if missing and should be empty. On error, `dest` may hold part of the
/// archive: extract into a temporary directory and discard it on failure.
pub fn extract(
    archive: &Path,
    kind: ArchiveKind,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractStats, SourceError> {
    fs_err::create_dir_all(dest)?;
    let mut writer = Writer {
        archive: archive.display().to_string(),
        dest,
        limits,
        stats: ExtractStats::default(),
        entries: 0,
    };
    match kind {
        ArchiveKind::Zip => extract_zip(archive, &mut writer)?,
        ArchiveKind::Tar => {
            let file = BufReader::new(fs_err::File::open(archive)?);
            extract_tar(file, &mut writer)?;
        }
        ArchiveKind::TarGz => {
            let file = BufReader::new(fs_err::File::open(archive)?);
            extract_tar(flate2::read::GzDecoder::new(file), &mut writer)?;
        }
        ArchiveKind::TarZst => {
            let file = BufReader::new(fs_err::File::open(archive)?);
            // The decoder's window is capped by zstd's default (128 MiB):
            // a frame asking for more is refused, not allocated.
            let decoder = zstd::stream::read::Decoder::with_buffer(file)
                .map_err(|err| writer.corrupt(format!("not zstd: {err}")))?;
            extract_tar(decoder, &mut writer)?;
        }
    }
    Ok(writer.stats)
}

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Writes `entries` (the name in the archive, the file to copy) to `out`
/// as a tar compressed with zstd, the same bytes for the same inputs:
/// entries sorted by name, every header with mode 0644, owner 0/0 and no
/// names, modification time 0; zstd at level 9 on one thread. The archive
/// is written beside `out` and renamed into place once complete. A name
/// must be a relative `/`-separated path (checked by the caller).
pub fn write_tar_zst(
    out: &Path,
    entries: &[(String, std::path::PathBuf)],
) -> Result<(), SourceError> {
    let mut sorted: Vec<&(String, std::path::PathBuf)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let file = zoo_fs::AtomicFile::create(out)?;
    let encoder = zstd::stream::write::Encoder::new(file, 9)?;
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Deterministic);
    for (name, path) in sorted {
        let (mut source, size) = zoo_fs::open_untrusted(path)
            .map_err(|err| SourceError::Io(std::io::Error::other(err.to_string())))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, (&mut source).take(size))?;
    }
    let encoder = builder.into_inner()?;
    let file = encoder.finish()?;
    file.commit()?;
    Ok(())
}

struct Writer<'a> {
    archive: String,
    dest: &'a Path,
    limits: &'a ExtractLimits,
    stats: ExtractStats,
    entries: u64,
}

impl Writer<'_> {
    fn unsafe_entry(&self, entry: &str, reason: impl Into<String>) -> SourceError {
        SourceError::UnsafeEntry {
            archive: self.archive.clone(),
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn corrupt(&self, message: impl std::fmt::Display) -> SourceError {
        SourceError::Corrupt {
            archive: self.archive.clone(),
            message: message.to_string(),
        }
    }

    fn count_entry(&mut self) -> Result<(), SourceError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(SourceError::TooLarge {
                archive: self.archive.clone(),
                reason: format!("more than {} entries", self.limits.max_entries),
            });
        }
        Ok(())
    }

    /// The safe relative path of entry `name`, `None` for the root itself.
    fn enclosed(&self, name: &str) -> Result<Option<PathBuf>, SourceError> {
        let relative = enclosed_name(name).map_err(|reason| self.unsafe_entry(name, reason))?;
        Ok((!relative.as_os_str().is_empty()).then_some(relative))
    }

    fn dir(&mut self, name: &str) -> Result<(), SourceError> {
        if let Some(relative) = self.enclosed(name)? {
            fs_err::create_dir_all(self.dest.join(relative))?;
        }
        Ok(())
    }

    fn link(&mut self, name: &str, target: &str, hard: bool) -> Result<(), SourceError> {
        let Some(relative) = self.enclosed(name)? else {
            return Ok(());
        };
        let inside = if hard {
            enclosed_name(target).is_ok()
        } else {
            link_stays_inside(&relative, target)
        };
        if !inside {
            return Err(self.unsafe_entry(
                name,
                format!("is a link pointing outside the archive (to `{target}`)"),
            ));
        }
        tracing::warn!(archive = %self.archive, entry = name, "skipping link: zoo never creates links from archives");
        self.stats.skipped_links += 1;
        Ok(())
    }

    fn file(
        &mut self,
        name: &str,
        mode: Option<u32>,
        contents: &mut dyn Read,
    ) -> Result<(), SourceError> {
        let Some(relative) = self.enclosed(name)? else {
            return Ok(());
        };
        let path = self.dest.join(&relative);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let mut file = fs_err::File::create(&path)?;
        let remaining = self.limits.max_bytes.saturating_sub(self.stats.bytes);
        let mut limited = contents.take(remaining.saturating_add(1));
        let mut buffer = vec![0u8; 64 * 1024];
        let mut written: u64 = 0;
        loop {
            let read = match limited.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.corrupt(format!("reading `{name}`: {err}"))),
            };
            written += read as u64;
            if written > remaining {
                return Err(SourceError::TooLarge {
                    archive: self.archive.clone(),
                    reason: format!("it unpacks to more than {} bytes", self.limits.max_bytes),
                });
            }
            file.write_all(&buffer[..read])?;
        }
        self.stats.bytes += written;
        self.stats.files += 1;
        #[cfg(unix)]
        if let Some(mode) = mode
            && mode & 0o111 != 0
        {
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        Ok(())
    }
}

fn extract_zip(archive: &Path, writer: &mut Writer<'_>) -> Result<(), SourceError> {
    let file = BufReader::new(fs_err::File::open(archive)?);
    let mut zip = zip::ZipArchive::new(file).map_err(|err| writer.corrupt(err))?;
    for index in 0..zip.len() {
        writer.count_entry()?;
        let mut entry = zip.by_index(index).map_err(|err| writer.corrupt(err))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        if entry.is_symlink() {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(|err| writer.corrupt(format!("reading link `{name}`: {err}")))?;
            writer.link(&name, &target, false)?;
        } else if entry.is_dir() {
            writer.dir(&name)?;
        } else {
            let mode = entry.unix_mode();
            writer.file(&name, mode, &mut entry)?;
        }
    }
    Ok(())
}

fn extract_tar(reader: impl Read, writer: &mut Writer<'_>) -> Result<(), SourceError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|err| writer.corrupt(err))?;
    for entry in entries {
        let mut entry = entry.map_err(|err| writer.corrupt(err))?;
        writer.count_entry()?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => writer.dir(&name)?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mode = entry.header().mode().ok();
                writer.file(&name, mode, &mut entry)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .unwrap_or_default();
                writer.link(&name, &target, kind == tar::EntryType::Link)?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                // Devices, FIFOs and the like have no place in a source.
                writer.enclosed(&name)?;
                tracing::warn!(entry = name, kind = ?other, "skipping special archive entry");
            }
        }
    }
    Ok(())
}

/// The relative path an entry name stands for, or why it is unsafe.
fn enclosed_name(name: &str) -> Result<PathBuf, String> {
    if name.chars().any(char::is_control) {
        return Err("has control characters in its name".to_owned());
    }
    if name.contains('\\') {
        return Err("has a backslash in its name".to_owned());
    }
    if name.starts_with('/') {
        return Err("has an absolute path".to_owned());
    }
    let mut relative = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err("has a `..` component that could escape the target".to_owned());
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("has an absolute path".to_owned());
            }
        }
    }
    Ok(relative)
}

/// Whether a symlink at `link` (relative to the root) pointing at `target`
/// resolves inside the root, judged lexically.
fn link_stays_inside(link: &Path, target: &str) -> bool {
    if target.starts_with('/') || target.contains('\\') || target.is_empty() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for component in Path::new(target).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn tar_zst_archives_are_the_same_bytes_for_the_same_inputs_and_extract_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        let b = dir.path().join("b.txt");
        fs_err::write(&a, vec![7u8; 10_000]).unwrap();
        fs_err::write(&b, b"hello").unwrap();
        let long = format!("{}/b.txt", "deep/".repeat(40));
        let entries = vec![
            (long.clone(), b.clone()),
            ("files/a.bin".to_owned(), a.clone()),
        ];
        let first = dir.path().join("one.tar.zst");
        let second = dir.path().join("two.tar.zst");
        write_tar_zst(&first, &entries).unwrap();
        // Other order, other file times: the same bytes.
        fs_err::File::options()
            .write(true)
            .open(&b)
            .unwrap()
            .file()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(12345))
            .unwrap();
        let reversed: Vec<_> = entries.iter().rev().cloned().collect();
        write_tar_zst(&second, &reversed).unwrap();
        assert_eq!(
            fs_err::read(&first).unwrap(),
            fs_err::read(&second).unwrap()
        );
        assert_eq!(
            ArchiveKind::sniff(&first).unwrap(),
            Some(ArchiveKind::TarZst)
        );
        assert_eq!(
            ArchiveKind::from_name("x.tar.zst"),
            Some(ArchiveKind::TarZst)
        );
        let out = dir.path().join("out");
        extract(&first, ArchiveKind::TarZst, &out, &ExtractLimits::default()).unwrap();
        assert_eq!(
            fs_err::read(out.join("files/a.bin")).unwrap(),
            vec![7u8; 10_000]
        );
        assert_eq!(fs_err::read(out.join(&long)).unwrap(), b"hello");
    }

    use super::*;

    #[test]
    fn kinds_from_names() {
        let cases = [
            ("https://x/a.zip", Some(ArchiveKind::Zip)),
            ("https://x/a.ZIP?dl=1", Some(ArchiveKind::Zip)),
            ("a.tar.gz", Some(ArchiveKind::TarGz)),
            ("a.tgz#frag", Some(ArchiveKind::TarGz)),
            ("a.tar", Some(ArchiveKind::Tar)),
            ("a.gz", None),
            ("https://x/download", None),
        ];
        for (name, kind) in cases {
            assert_eq!(ArchiveKind::from_name(name), kind, "{name}");
        }
    }

    #[test]
    fn entry_names() {
        let ok = [("a/b.txt", "a/b.txt"), ("./a//b", "a/b"), ("./", "")];
        for (name, expected) in ok {
            assert_eq!(
                enclosed_name(name).unwrap(),
                PathBuf::from(expected),
                "{name}"
            );
        }
        for name in [
            "../x",
            "a/../../x",
            "a/../b",
            "/etc/passwd",
            "a\\..\\b",
            "a\nb",
        ] {
            assert!(enclosed_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn link_targets() {
        let cases = [
            ("a/link", "b", true),
            ("a/link", "../b", true),
            ("a/link", "../../b", false),
            ("link", "../b", false),
            ("a/link", "/etc/passwd", false),
            ("a/b/link", "../../c/./d", true),
        ];
        for (link, target, inside) in cases {
            assert_eq!(
                link_stays_inside(Path::new(link), target),
                inside,
                "{link} -> {target}"
            );
        }
    }
}
