//! What a long operation tells the person waiting: progress and notes.
//! Drawing them is the caller's business (the `zoo` command draws bars on
//! a terminal and writes notes to stderr).

use zoo_sources::{NoProgress, Progress};

/// Receives the progress and the notes of the application layer's work.
pub trait Observer: Sync {
    /// Byte progress of downloads.
    fn downloads(&self) -> &dyn Progress {
        &NoProgress
    }

    /// Sample progress of `apply` and `embed`: `start(what, Some(samples))`,
    /// `advance(samples)`, `finish()`.
    fn samples(&self) -> &dyn Progress {
        &NoProgress
    }

    /// Something a person should know: a warning, or what is being done
    /// (an install, a shard's summary). Text from manifests and servers is
    /// in it unescaped: escape it before it reaches a terminal.
    fn note(&self, message: &str) {
        tracing::info!("{message}");
    }
}

/// Shows nothing; notes go to `tracing` at level info.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {}
