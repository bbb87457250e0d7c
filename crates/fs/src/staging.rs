//! Staging folders that say whether their owner is alive.
//!
//! A [`StagingDir`] is a temporary folder holding an exclusive lock on
//! `.owner.lock` inside it for as long as it lives. The operating system
//! drops the lock when the owning process dies, however it dies (a `kill -9`
//! included), so [`remove_stale_staging`] can tell a dead process's
//! leftovers from a live one's work without trusting process ids.
//!
//! The lock file is locked before it gets its name (it is created under a
//! temporary name, locked, then renamed), so a visible `.owner.lock` that can
//! be locked always belongs to a dead owner.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::lock::{LockMode, LockedFile};

/// The lock file inside every [`StagingDir`].
pub const OWNER_LOCK: &str = ".owner.lock";

/// A temporary folder, removed on drop, whose owner lock tells other
/// processes it is in use.
#[derive(Debug)]
pub struct StagingDir {
    // Dropped first: the folder goes while the lock is still held.
    dir: tempfile::TempDir,
    _owner: LockedFile,
}

impl StagingDir {
    /// Creates `<parent>/<prefix><random>/` (and `parent` if needed), owned
    /// by this process until dropped.
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<Self> {
        fs_err::create_dir_all(parent)?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "failed to create a staging folder in `{}`: {err}",
                        parent.display()
                    ),
                )
            })?;
        let owner = LockedFile::create_locked(&dir.path().join(OWNER_LOCK))?;
        Ok(Self { dir, _owner: owner })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes the folders in `parent` left by processes that are gone: those
/// whose [`OWNER_LOCK`] can be locked, and those without one (made by an
/// older zoo, or not yet locked by a process starting right now) once they
/// are older than `grace`. Live folders are never touched. Returns what was
/// removed; a missing `parent` is nothing to do.
pub fn remove_stale_staging(parent: &Path, grace: Duration) -> io::Result<Vec<PathBuf>> {
    let entries = match fs_err::read_dir(parent) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let stale = match LockedFile::try_existing(&path.join(OWNER_LOCK), LockMode::Exclusive) {
            // Locked by us: the owner is gone. The lock is held while the
            // folder is removed.
            Ok(Some(lock)) => Some(lock),
            // A live owner.
            Ok(None) => continue,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let modified = entry.metadata()?.modified()?;
                let age = SystemTime::now()
                    .duration_since(modified)
                    .unwrap_or_default();
                if age < grace {
                    continue;
                }
                None
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot check a staging folder");
                continue;
            }
        };
        match fs_err::remove_dir_all(&path) {
            Ok(()) => {
                tracing::debug!(path = %path.display(), "removed stale staging folder");
                removed.push(path);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        drop(stale);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_staging_is_kept_and_dead_or_legacy_staging_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join(".tmp");
        let live = StagingDir::new_in(&parent, "register-").unwrap();
        fs_err::write(live.path().join("data"), b"x").unwrap();
        assert!(live.path().join(OWNER_LOCK).is_file());

        // A dead owner: its lock file exists and nobody holds it.
        let dead = parent.join("register-dead");
        fs_err::create_dir_all(&dead).unwrap();
        fs_err::write(dead.join(OWNER_LOCK), b"").unwrap();
        fs_err::write(dead.join("big"), vec![0u8; 1000]).unwrap();
        // Made by an older zoo: no lock file at all.
        let legacy = parent.join("extract-legacy");
        fs_err::create_dir_all(&legacy).unwrap();

        let removed = remove_stale_staging(&parent, Duration::from_secs(3600)).unwrap();
        assert_eq!(removed, vec![dead.clone()]);
        assert!(live.path().join("data").is_file());
        assert!(legacy.is_dir(), "younger than the grace period");

        let removed = remove_stale_staging(&parent, Duration::ZERO).unwrap();
        assert_eq!(removed, vec![legacy]);
        assert!(live.path().join("data").is_file());

        let path = live.path().to_owned();
        drop(live);
        assert!(!path.exists());
        assert!(
            remove_stale_staging(&dir.path().join("missing"), Duration::ZERO)
                .unwrap()
                .is_empty()
        );
    }
}
