//! Advisory file locks with a bounded wait.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::fs::TryLockError;

/// How long a lock is waited for when [`LOCK_TIMEOUT_ENV`] is not set.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// The environment variable (seconds) that bounds the wait for a lock.
pub const LOCK_TIMEOUT_ENV: &str = "ZOO_LOCK_TIMEOUT";

/// Whether a lock is shared by readers or held by one writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once; excludes [`LockMode::Exclusive`].
    Shared,
    /// One holder; excludes every other lock.
    Exclusive,
}

/// Errors from taking a lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock file could not be created or opened.
    #[error("failed to open lock file `{path}`")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// Another process held the lock for longer than the timeout.
    #[error(
        "timed out after {}s waiting for lock `{path}` (another zoo process holds it; set `{LOCK_TIMEOUT_ENV}` to wait longer)",
        timeout.as_secs()
    )]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// How long was waited.
        timeout: Duration,
    },
    /// Locking failed for a reason other than contention.
    #[error("failed to lock `{path}`")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
}

/// A held advisory lock on a file; released on drop.
#[derive(Debug)]
pub struct LockedFile {
    file: std::fs::File,
    path: PathBuf,
}

impl LockedFile {
    /// Takes the lock at `path` (created if missing), waiting at most the
    /// timeout from [`LOCK_TIMEOUT_ENV`] or [`DEFAULT_LOCK_TIMEOUT`].
    pub fn acquire(path: &Path, mode: LockMode) -> Result<Self, LockError> {
        Self::acquire_within(path, mode, timeout_from_env())
    }

    /// Takes the lock at `path`, waiting at most `timeout`.
    pub fn acquire_within(
        path: &Path,
        mode: LockMode,
        timeout: Duration,
    ) -> Result<Self, LockError> {
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).map_err(|source| LockError::Open {
                path: path.to_owned(),
                source,
            })?;
        }
        let file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| LockError::Open {
                path: path.to_owned(),
                source,
            })?
            .into_parts()
            .0;
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let attempt = match mode {
                LockMode::Shared => file.try_lock_shared(),
                LockMode::Exclusive => file.try_lock(),
            };
            match attempt {
                Ok(()) => {
                    return Ok(Self {
                        file,
                        path: path.to_owned(),
                    });
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(source)) => {
                    return Err(LockError::Lock {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
            if start.elapsed() >= timeout {
                return Err(LockError::Timeout {
                    path: path.to_owned(),
                    timeout,
                });
            }
            tracing::debug!(path = %path.display(), "waiting for lock");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Creates the lock file `path` already locked exclusively: it is made
    /// under a temporary name, locked, then renamed to `path`, so nobody can
    /// ever lock `path` while its creator lives.
    pub fn create_locked(path: &Path) -> std::io::Result<Self> {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".lock-")
            .tempfile_in(parent)
            .map_err(|err| annotate(err, parent, "create a lock file in"))?;
        match temp.as_file().try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(annotate(
                    std::io::ErrorKind::WouldBlock.into(),
                    temp.path(),
                    "lock the new file",
                ));
            }
            Err(TryLockError::Error(err)) => {
                return Err(annotate(err, temp.path(), "lock the new file"));
            }
        }
        let file = temp
            .persist(path)
            .map_err(|err| annotate(err.error, path, "rename a lock file onto"))?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// Tries once to lock the existing file `path` (never creating it):
    /// `None` when another holder has it. A missing file is an error of kind
    /// [`std::io::ErrorKind::NotFound`].
    pub fn try_existing(path: &Path, mode: LockMode) -> std::io::Result<Option<Self>> {
        let file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?
            .into_parts()
            .0;
        let attempt = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => Ok(Some(Self {
                file,
                path: path.to_owned(),
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(err)) => Err(annotate(err, path, "lock")),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        if let Err(err) = self.file.unlock() {
            tracing::warn!(path = %self.path.display(), %err, "failed to unlock");
        }
    }
}

fn annotate(err: std::io::Error, path: &Path, action: &str) -> std::io::Error {
    std::io::Error::new(
        err.kind(),
        format!("failed to {action} `{}`: {err}", path.display()),
    )
}

fn timeout_from_env() -> Duration {
    std::env::var(LOCK_TIMEOUT_ENV)
        .ok()
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_LOCK_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_times_out_with_a_useful_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lock");
        let held = LockedFile::acquire(&path, LockMode::Exclusive).unwrap();
        let err = LockedFile::acquire_within(&path, LockMode::Shared, Duration::from_millis(50))
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("a.lock"), "{message}");
        assert!(message.contains(LOCK_TIMEOUT_ENV), "{message}");
        drop(held);
        LockedFile::acquire_within(&path, LockMode::Exclusive, Duration::from_millis(50)).unwrap();
    }

    #[test]
    fn shared_locks_coexist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.lock");
        let _one = LockedFile::acquire(&path, LockMode::Shared).unwrap();
        let _two =
            LockedFile::acquire_within(&path, LockMode::Shared, Duration::from_millis(50)).unwrap();
        assert!(
            LockedFile::acquire_within(&path, LockMode::Exclusive, Duration::from_millis(20))
                .is_err()
        );
    }
}
