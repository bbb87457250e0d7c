//! The one error type of the application layer: a kind, what failed, and
//! the library error underneath.

use std::error::Error as StdError;
use std::fmt;

use crate::report::RunReport;

/// What kind of thing went wrong, for callers that react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An environment variable or option has a value zoo cannot use.
    Config,
    /// The registry: no such model, a download, a source or its hook.
    Registry,
    /// A dataset: not found, unreadable, or changed during the run.
    Dataset,
    /// Building or running the model (natively or in the model host).
    Model,
    /// The model's Python requirements are not met.
    Requirements,
    /// Object storage or shard results.
    Storage,
    /// Every sample of a run failed, so nothing was stored.
    EverySampleFailed,
    /// A lock (`zoo.lock`) could not be read or written, or a `--locked`
    /// run found something that differs from it.
    Lock,
}

/// An error of the application layer. Its `Display` says what failed; its
/// [`source`](StdError::source) chain says why (print it as
/// `anyhow`'s `{:#}` does: `what failed: why: ...`).
pub struct Error {
    kind: ErrorKind,
    /// What failed, when this level adds words; `None` shows the source.
    context: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    /// The report of a run in which every sample failed.
    report: Option<Box<RunReport>>,
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            context: Some(message.into()),
            source: None,
            report: None,
        }
    }

    /// A run in which every sample failed, with its report.
    pub(crate) fn every_sample_failed(message: String, report: RunReport) -> Self {
        Self {
            kind: ErrorKind::EverySampleFailed,
            context: Some(message),
            source: None,
            report: Some(Box::new(report)),
        }
    }

    /// The report of a run in which every sample failed (kind
    /// [`ErrorKind::EverySampleFailed`]), found anywhere in the chain.
    pub fn run_report(&self) -> Option<&RunReport> {
        if let Some(report) = &self.report {
            return Some(report);
        }
        self.source
            .as_deref()?
            .downcast_ref::<Error>()?
            .run_report()
    }

    /// `source` as an error of `kind`, shown as the source itself.
    pub fn from_source(kind: ErrorKind, source: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            kind,
            context: None,
            source: Some(Box::new(source)),
            report: None,
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether every sample of a run failed (nothing was stored).
    pub fn is_every_sample_failed(&self) -> bool {
        self.kind == ErrorKind::EverySampleFailed
    }

    /// The first error of type `E` in this error's chain.
    pub fn find<E: StdError + 'static>(&self) -> Option<&E> {
        let source = self.source.as_deref()?;
        if let Some(found) = source.downcast_ref::<E>() {
            return Some(found);
        }
        if let Some(inner) = source.downcast_ref::<Error>() {
            return inner.find();
        }
        let mut cause = source.source();
        while let Some(error) = cause {
            if let Some(found) = error.downcast_ref::<E>() {
                return Some(found);
            }
            cause = error.source();
        }
        None
    }

    /// This error wrapped in `message`, keeping its kind.
    pub fn context(self, message: impl Into<String>) -> Self {
        Self {
            kind: self.kind,
            context: Some(message.into()),
            source: Some(Box::new(self)),
            report: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.context, &self.source) {
            (Some(context), _) => f.write_str(context),
            (None, Some(source)) => fmt::Display::fmt(source, f),
            (None, None) => f.write_str("unknown error"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {self}", self.kind)?;
        let mut cause = StdError::source(self);
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let source = self.source.as_deref()?;
        if self.context.is_some() {
            Some(source)
        } else {
            // Shown as the source itself: the chain goes on below it.
            source.source()
        }
    }
}

macro_rules! from_library {
    ($($error:ty => $kind:ident),* $(,)?) => {
        $(impl From<$error> for Error {
            fn from(error: $error) -> Self {
                Self::from_source(ErrorKind::$kind, error)
            }
        })*
    };
}

from_library! {
    zoo_registry::RegistryError => Registry,
    zoo_datasets::DatasetError => Dataset,
    zoo_datasets::ResultsError => Storage,
    zoo_storage::StorageError => Storage,
    zoo_model_core::ModelError => Model,
    zoo_model_core::ApplyError => Model,
    zoo_model_core::FieldNameError => Config,
    zoo_python_host::HostError => Model,
    zoo_fs::LockError => Config,
    zoo_datasets::ShardError => Config,
    zoo_fiftyone_db::FiftyOneError => Dataset,
    zoo_sources::SourceError => Lock,
    std::io::Error => Lock,
}

/// An error and its sources on one line (`what: why: ...`).
pub(crate) fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what failed to an error, keeping (or setting) its kind.
pub(crate) trait Context<T> {
    /// Wraps the error in `message()`.
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|error| error.into().context(message()))
    }
}

/// Returns an error of `kind` with a formatted message.
macro_rules! bail {
    ($kind:ident, $($message:tt)+) => {
        return Err($crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($message)+)))
    };
}
pub(crate) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(error: &dyn StdError) -> Vec<String> {
        let mut out = vec![error.to_string()];
        let mut cause = error.source();
        while let Some(error) = cause {
            out.push(error.to_string());
            cause = error.source();
        }
        out
    }

    #[test]
    fn a_wrapped_library_error_shows_once_in_the_chain() {
        let io = std::io::Error::other("disk on fire");
        let inner = Error::from_source(ErrorKind::Dataset, io);
        assert_eq!(chain(&inner), ["disk on fire"]);
        let outer = inner
            .context("loading `x` failed")
            .context("applying failed");
        assert_eq!(
            chain(&outer),
            ["applying failed", "loading `x` failed", "disk on fire"]
        );
        assert_eq!(outer.kind(), ErrorKind::Dataset);
    }
}
