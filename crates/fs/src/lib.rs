//! Filesystem helpers shared by the zoo crates.
//!
//! Everything that writes where another process may look goes through here:
//!
//! - [`write_atomic`] writes a file beside its target, syncs it and renames it
//!   into place, so readers see the old file or the new one, never half of one;
//! - [`persist_dir`] renames a fully prepared directory into place and syncs the
//!   parent, for installs that are whole folders;
//! - [`LockedFile`] is an advisory lock on a `.lock` file with a bounded wait and
//!   an error that names the lock and the knob that sets the wait;
//! - [`StagingDir`] is a temporary folder that holds a lock while its owner
//!   lives, so [`remove_stale_staging`] removes only dead processes' leftovers;
//! - [`read_untrusted`] and [`open_untrusted`] read files zoo did not write:
//!   regular files only (never a FIFO or a device), within a byte cap;
//! - [`ensure_inside`] checks that a path is strictly inside a folder once the
//!   symbolic links on the way are resolved.
//!
//! This crate does no network I/O and knows nothing of manifests or models.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let target = dir.path().join("manifest.json");
//! zoo_fs::write_atomic(&target, b"{}").unwrap();
//! assert_eq!(fs_err::read(&target).unwrap(), b"{}");
//! ```

mod atomic;
mod contain;
mod lock;
mod staging;
mod untrusted;

pub use atomic::{AtomicFile, persist_dir, sync_dir, write_atomic};
pub use contain::{ContainmentError, ensure_inside};
pub use lock::{
    DEFAULT_LOCK_TIMEOUT, LOCK_TIMEOUT_ENV, LockError, LockMode, LockedFile, MAX_LOCK_TIMEOUT,
    lock_timeout_from_env, parse_lock_timeout,
};
pub use staging::{OWNER_LOCK, StagingDir, remove_stale_staging};
pub use untrusted::{
    UntrustedError, file_kind, open_untrusted, read_untrusted, read_untrusted_prefix,
};
