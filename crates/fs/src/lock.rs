//! Advisory file locks with a bounded wait.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::fs::TryLockError;

/// How long a lock is waited for when [`LOCK_TIMEOUT_ENV`] is not set.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// The environment variable (seconds) that bounds the wait for a lock.
pub const LOCK_TIMEOUT_ENV: &str = "ZOO_LOCK_TIMEOUT";

/// The longest wait [`LOCK_TIMEOUT_ENV`] may ask for: one week. Longer values
/// are refused rather than rounded (a `Duration` overflows at about 5.8e11
/// years, and a typo such as `1e20` is not a wish to wait forever).
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// [`LOCK_TIMEOUT_ENV`] holds something that is not a wait.
    #[error(
        "`{LOCK_TIMEOUT_ENV}` must be a number of seconds from 0 to {} (one week), got `{value}`; unset it for the default of {}s",
        MAX_LOCK_TIMEOUT.as_secs(),
        DEFAULT_LOCK_TIMEOUT.as_secs()
    )]
    BadTimeout {
        /// The value as set.
        value: String,
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
    /// A bad [`LOCK_TIMEOUT_ENV`] is an error, not the default.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<Self, LockError> {
        Self::acquire_within(path, mode, lock_timeout_from_env()?)
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

/// The wait [`LOCK_TIMEOUT_ENV`] sets, [`DEFAULT_LOCK_TIMEOUT`] when it is
/// unset or empty, or an error naming the bad value.
pub fn lock_timeout_from_env() -> Result<Duration, LockError> {
    match std::env::var_os(LOCK_TIMEOUT_ENV) {
        None => Ok(DEFAULT_LOCK_TIMEOUT),
        Some(value) => parse_lock_timeout(&value.to_string_lossy()),
    }
}

/// Parses a lock wait in seconds (`30`, `0.5`); empty means the default.
pub fn parse_lock_timeout(value: &str) -> Result<Duration, LockError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(DEFAULT_LOCK_TIMEOUT);
    }
    trimmed
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .filter(|timeout| *timeout <= MAX_LOCK_TIMEOUT)
        .ok_or_else(|| LockError::BadTimeout {
            value: value.to_owned(),
        })
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
    fn lock_timeouts_parse_or_name_the_bad_value() {
        let good = [
            ("30", Duration::from_secs(30)),
            (" 0.5 ", Duration::from_millis(500)),
            ("0", Duration::ZERO),
            ("", DEFAULT_LOCK_TIMEOUT),
            ("604800", MAX_LOCK_TIMEOUT),
        ];
        for (value, expected) in good {
            assert_eq!(parse_lock_timeout(value).unwrap(), expected, "{value:?}");
        }
        // `1e20` used to panic in `Duration::from_secs_f64`; `-1` and `abc`
        // were silently replaced by 300 s.
        for value in ["1e20", "-1", "abc", "NaN", "inf", "604801", "1e400"] {
            let message = parse_lock_timeout(value).unwrap_err().to_string();
            assert!(message.contains(LOCK_TIMEOUT_ENV), "{message}");
            assert!(message.contains(&format!("`{value}`")), "{message}");
        }
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
