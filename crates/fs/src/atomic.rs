//! Atomic file and directory installation.

use std::io::{self, Write};
use std::path::Path;

/// Writes `contents` to `path` atomically.
///
/// The bytes go to a temporary file in the same directory, are synced to disk,
/// and the file is renamed over `path`; the parent directory is then synced so
/// the rename itself survives a crash.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let parent = parent_of(path)?;
    fs_err::create_dir_all(parent)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(parent)
        .map_err(|err| annotate(err, parent, "create a temporary file in"))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|err| annotate(err, temp.path(), "write"))?;
    temp.persist(path)
        .map_err(|err| annotate(err.error, path, "rename a temporary file onto"))?;
    sync_dir(parent)
}

/// A file written in pieces and put in place atomically, as
/// [`write_atomic`] does for bytes already in memory: for output too large
/// to hold (an export), written through a buffer to a temporary file beside
/// `path`; [`AtomicFile::commit`] syncs it and renames it onto `path`, and
/// dropping it uncommitted removes the temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    path: std::path::PathBuf,
    writer: io::BufWriter<tempfile::NamedTempFile>,
}

impl AtomicFile {
    /// Starts writing `path` (its folder is created).
    pub fn create(path: &Path) -> io::Result<Self> {
        let parent = parent_of(path)?;
        fs_err::create_dir_all(parent)?;
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)
            .map_err(|err| annotate(err, parent, "create a temporary file in"))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: io::BufWriter::with_capacity(1 << 20, temp),
        })
    }

    /// Syncs what was written and renames it onto the target.
    pub fn commit(self) -> io::Result<()> {
        let path = self.path;
        let temp = self
            .writer
            .into_inner()
            .map_err(|err| annotate(err.into_error(), &path, "write"))?;
        temp.as_file()
            .sync_all()
            .map_err(|err| annotate(err, temp.path(), "sync"))?;
        temp.persist(&path)
            .map_err(|err| annotate(err.error, &path, "rename a temporary file onto"))?;
        sync_dir(parent_of(&path)?)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Renames the prepared directory `from` to `to` and syncs the parent of `to`.
///
/// `from` and `to` must be on the same filesystem (prepare `from` inside the
/// destination root). An existing `to` is an error: callers decide whether to
/// remove it first.
pub fn persist_dir(from: &Path, to: &Path) -> io::Result<()> {
    let parent = parent_of(to)?;
    fs_err::create_dir_all(parent)?;
    fs_err::rename(from, to)?;
    sync_dir(parent)
}

/// Syncs a directory so that entries created or renamed in it are durable.
///
/// On platforms where a directory cannot be opened for syncing this is a no-op.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let handle = fs_err::File::open(dir)?;
        handle
            .sync_all()
            .map_err(|err| annotate(err, dir, "sync"))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => Ok(parent),
        _ => Ok(Path::new(".")),
    }
}

fn annotate(err: io::Error, path: &Path, action: &str) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("failed to {action} `{}`: {err}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("nested/file.txt");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(fs_err::read(&target).unwrap(), b"two");
        let names: Vec<_> = fs_err::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["file.txt"]);
    }

    #[test]
    fn an_atomic_file_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        let mut file = AtomicFile::create(&target).unwrap();
        file.write_all(b"one\n").unwrap();
        assert!(!target.exists());
        file.commit().unwrap();
        assert_eq!(fs_err::read(&target).unwrap(), b"one\n");
        let mut file = AtomicFile::create(&target).unwrap();
        file.write_all(b"two\n").unwrap();
        drop(file);
        assert_eq!(fs_err::read(&target).unwrap(), b"one\n");
        assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn persist_dir_moves_and_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join(".tmp/stage");
        fs_err::create_dir_all(&staged).unwrap();
        fs_err::write(staged.join("a"), b"a").unwrap();
        let target = dir.path().join("out/final");
        persist_dir(&staged, &target).unwrap();
        assert_eq!(fs_err::read(target.join("a")).unwrap(), b"a");
        assert!(!staged.exists());

        fs_err::create_dir_all(&staged).unwrap();
        fs_err::write(staged.join("b"), b"b").unwrap();
        // A non-empty destination directory is never replaced.
        assert!(persist_dir(&staged, &target).is_err());
    }
}
