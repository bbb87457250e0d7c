//! Progress reporting as events; drawing is the caller's business.

/// Receives progress of long work (downloads, extraction).
pub trait Progress: Sync {
    /// Work called `label` started; `total` bytes when known.
    fn start(&self, label: &str, total: Option<u64>) {
        let _ = (label, total);
    }
    /// `amount` more bytes are done.
    fn advance(&self, amount: u64) {
        let _ = amount;
    }
    /// The work started last is finished.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
