//! The `zoo` command's [`zoo::Observer`]: indicatif bars on stderr when it
//! is a terminal (silent otherwise), notes as escaped paragraphs.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use zoo_sources::Progress;

/// What a bar counts.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// Bytes of a download.
    Bytes,
    /// Samples of a run.
    Samples,
}

/// Draws a bar on stderr when it is a terminal; silent otherwise.
pub(crate) struct Bar {
    enabled: bool,
    unit: Unit,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bar {
    /// A bar for downloads.
    pub(crate) fn new(quiet: bool) -> Self {
        Self::counting(quiet, Unit::Bytes)
    }

    fn counting(quiet: bool, unit: Unit) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
            unit,
            bar: Mutex::new(None),
        }
    }
}

impl Progress for Bar {
    fn start(&self, label: &str, total: Option<u64>) {
        if !self.enabled {
            return;
        }
        let bar = match (self.unit, total) {
            (Unit::Bytes, Some(total)) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            (Unit::Bytes, None) => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
            (Unit::Samples, total) => ProgressBar::new(total.unwrap_or(0)).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
        };
        let message = match self.unit {
            Unit::Bytes => format!(
                "downloading {}",
                crate::terminal::escape(label.rsplit('/').next().unwrap_or(label))
            ),
            Unit::Samples => crate::terminal::escape(label).into_owned(),
        };
        bar.set_message(message);
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, amount: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(amount);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}

/// Download and sample bars, and notes on stderr.
pub(crate) struct Terminal {
    downloads: Bar,
    samples: Bar,
}

impl Terminal {
    /// Bars unless `quiet` (or stderr is not a terminal).
    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            downloads: Bar::counting(quiet, Unit::Bytes),
            samples: Bar::counting(quiet, Unit::Samples),
        }
    }
}

impl zoo::Observer for Terminal {
    fn downloads(&self) -> &dyn Progress {
        &self.downloads
    }

    fn samples(&self) -> &dyn Progress {
        &self.samples
    }

    fn note(&self, message: &str) {
        crate::terminal::write_paragraph(message);
    }
}
