//! What a run did: the typed summary `apply` and `embed` return.

use std::path::PathBuf;
use std::time::Duration;

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunReport {
    /// The model's name.
    pub model: String,
    /// The dataset it ran on.
    pub dataset: String,
    /// The field its results went to.
    pub field: String,
    /// Samples it was given (what was left to do).
    pub processed: usize,
    /// Samples with a result.
    pub succeeded: usize,
    /// Samples that failed (recorded as failures of the field).
    pub failed: usize,
    /// The whole run.
    pub wall_time: Duration,
    /// Time in the model's forward passes.
    pub model_time: Duration,
    /// Model calls.
    pub forwards: usize,
    /// Whether decoding overlapped the forward passes.
    pub pipelined: bool,
    /// Model copies that ran.
    pub workers: usize,
    /// The five most frequent labels (classifications and detections).
    pub top_labels: Vec<(String, usize)>,
    /// The embeddings' dimension (`embed`); 0 for `apply`.
    pub dimension: usize,
    /// The field's failed samples (file and error); for `embed`, listed
    /// only when every sample failed.
    pub failures: Vec<(PathBuf, String)>,
}

impl RunReport {
    /// Samples per second over the whole run.
    pub fn images_per_second(&self) -> f64 {
        self.processed as f64 / self.wall_time.as_secs_f64().max(1e-9)
    }

    /// Whether every sample failed and the field holds no result at all.
    pub(crate) fn nothing_stored(&self, finished: u64) -> bool {
        self.succeeded == 0 && self.failed > 0 && finished == 0
    }
}
