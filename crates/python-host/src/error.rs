//! Why the model host failed.

use std::path::PathBuf;
use std::time::Duration;

/// A failure of the model host, naming the model and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The interpreter could not be started.
    #[error(
        "cannot start the Python interpreter `{python}` for model `{model}`; set `ZOO_PYTHON` to a Python 3 with `fiftyone` installed"
    )]
    NoPython {
        /// The interpreter (`ZOO_PYTHON`).
        python: String,
        /// The model.
        model: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// The interpreter exists but could not be started (out of memory or
    /// processes, an argument list too long, ...).
    #[error("cannot start the model host of `{model}` with `{python}`")]
    Spawn {
        /// The interpreter (`ZOO_PYTHON`).
        python: String,
        /// The model.
        model: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// A module the source or FiftyOne needs is not importable.
    #[error(
        "`{python}` cannot import `{module}`, which model `{model}` needs ({stage}): install it into that interpreter's environment (`zoo models requirements {model} --install` installs the manifest's requirements, `zoo models apply -i` too; FiftyOne itself: `{python} -m pip install fiftyone`){traceback}"
    )]
    MissingModule {
        /// The interpreter.
        python: String,
        /// The model.
        model: String,
        /// The missing module.
        module: String,
        /// What was running (`load_model`, `import fiftyone`).
        stage: String,
        /// The traceback's last lines, as `:\n...`, or empty.
        traceback: String,
    },
    /// `load_model` raised, or returned something zoo cannot run.
    #[error("`load_model` of `{init}` failed for model `{model}`: {message}{traceback}")]
    Load {
        /// The source's `__init__.py`.
        init: PathBuf,
        /// The model.
        model: String,
        /// The Python exception (`Type: message`), or what was wrong.
        message: String,
        /// The traceback's last lines, as `:\n...`, or empty.
        traceback: String,
    },
    /// The worker exited (crashed, was killed, ran out of memory).
    #[error("the model host of `{model}` died ({status}){stderr}")]
    Died {
        /// The model.
        model: String,
        /// Its exit status.
        status: String,
        /// Its stderr's last lines, as `:\n...`, or empty.
        stderr: String,
    },
    /// The worker did not answer in time; it was killed with its process
    /// group.
    #[error(
        "the model host of `{model}` did not answer within {limit:?} ({stage}), so it was killed (`ZOO_HOOK_TIMEOUT` sets the limit){stderr}"
    )]
    Timeout {
        /// The model.
        model: String,
        /// What it was doing.
        stage: String,
        /// The limit.
        limit: Duration,
        /// Its stderr's last lines, as `:\n...`, or empty.
        stderr: String,
    },
    /// The worker answered something that breaks the protocol.
    #[error("the model host of `{model}` answered out of protocol: {message}")]
    Protocol {
        /// The model.
        model: String,
        /// What was wrong.
        message: String,
    },
    /// Talking to the worker failed.
    #[error("cannot talk to the model host of `{model}`")]
    Pipe {
        /// The model.
        model: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
