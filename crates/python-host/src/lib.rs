//! The model host: runs the `fiftyone.core.models.Model` that a trusted
//! source's `load_model(model_name, model_path, **kwargs)` returns, in one
//! long-lived Python worker per model copy, behind zoo's
//! [`Model`](zoo_model_core::Model) trait.
//!
//! The worker script is compiled in and passed to the interpreter with
//! `-c`; nothing is written in the source folder. It runs in the source
//! folder, in its own process group, without `GITHUB_TOKEN`; it watches
//! its parent and kills its own group when zoo is gone (even after a
//! `SIGKILL`). Messages are frames on its stdin/stdout (two little-endian
//! `u64` lengths, a JSON header, a binary payload): the first carries the
//! model's name and `load_model`'s keyword arguments (never the command
//! line, which the kernel caps); pixels and embeddings travel as raw bytes,
//! never as base64 or JSON; the model's own prints go to its stderr, read
//! as bytes to its end in lines of at most 4 KiB (`\r` ends a line too),
//! whose last lines errors quote.
//!
//! What it does not do: decide whether a source may run code (the caller
//! checks trust), read environment variables (the caller passes the
//! interpreter and the timeout), or decode images (the engine does).
//!
//! ```no_run
//! use zoo_python_host::{HostSpec, Loaded, load};
//! let spec = HostSpec {
//!     python: "python3".into(),
//!     init: "/zoo/source/__init__.py".into(),
//!     model_name: "my/model".into(),
//!     model_path: "/zoo/source/model.pt".into(),
//!     kwargs: serde_json::Map::new(),
//!     load_timeout: std::time::Duration::from_secs(3600),
//!     batch_timeout: std::time::Duration::from_secs(3600),
//!     threads: None,
//!     gpu: None,
//! };
//! match load(&spec)? {
//!     Loaded::Config(config) => println!("a config for the native backend: {config}"),
//!     Loaded::Model(model) => println!("hosting `{}`", model.info().class),
//! }
//! # Ok::<(), zoo_python_host::HostError>(())
//! ```

mod error;
mod frame;
mod model;
mod worker;

pub use error::HostError;
pub use model::{HostTiming, HostedInfo, HostedModel, Loaded, load};
pub use worker::HostSpec;
