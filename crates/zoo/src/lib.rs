//! zoo as a library: FiftyOne's `load_zoo_model`, `apply_model` and
//! `compute_embeddings` for Rust programs, the layer the `zoo` command is a
//! thin shell over.
//!
//! - [`Config`]: where models and datasets live and what a run may cost,
//!   from the environment ([`Config::from_env`], the `ZOO_*` variables) or
//!   built in code ([`Config::new`]).
//! - [`Zoo`]: the registry, the datasets and a model runtime together:
//!   [`Zoo::load_model`] (download, requirements, native or in the Python
//!   model host), [`Zoo::apply`], [`Zoo::embed`],
//!   [`LoadedModel::embed_prompts`] and [`Zoo::merge_results`], each
//!   returning a typed report.
//! - [`Runtime`]: the seam to a model runtime. This crate builds and tests
//!   without libtorch; `zoo_torch_backend::TorchRuntime` is the libtorch
//!   one.
//! - [`Observer`]: progress and notes for the person waiting.
//!
//! Applying a built-in model to a folder of images, as `zoo models apply
//! resnet50-imagenet-torch photos predictions` does:
//!
//! ```no_run
//! use zoo::{Config, LoadOptions, RunOptions, LabelOptions, Zoo};
//!
//! fn main() -> Result<(), zoo::Error> {
//!     let runtime = zoo_torch_backend::TorchRuntime;
//!     let zoo = Zoo::new(Config::from_env()?, &runtime);
//!     let mut model = zoo.load_model("resnet50-imagenet-torch", &LoadOptions::default())?;
//!     let run = RunOptions::new("predictions").batch_size(32);
//!     let report = zoo.apply(&mut model, "photos/", &run, &LabelOptions::default())?;
//!     println!(
//!         "{} images at {:.1}/s; top labels {:?}",
//!         report.succeeded,
//!         report.images_per_second(),
//!         report.top_labels
//!     );
//!     Ok(())
//! }
//! # mod zoo_torch_backend { pub struct TorchRuntime; impl zoo::Runtime for TorchRuntime {
//! #   fn system_info(&self) -> zoo::SystemInfo { unimplemented!() }
//! #   fn factory(&self) -> zoo::ModelFactory { unimplemented!() } } }
//! ```
//!
//! The labels are then in the dataset (`zoo datasets export`, or
//! [`zoo_datasets::Datasets`]). `crates/cli/examples/apply_folder.rs` is
//! this program, and a test runs it.

mod bundle;
mod config;
mod error;
mod load;
mod lock;
mod observe;
mod prompt;
mod provenance;
mod report;
pub mod requirements;
mod run;
mod scale;
mod verify;

use zoo_datasets::Datasets;
use zoo_registry::Registry;

pub use bundle::{BundleReport, InstallReport, NotVerified};
pub use config::{Config, datasets_dir, import_options, offline, python, zoo_dir};
pub use error::{Error, ErrorKind, Result};
pub use load::{LoadOptions, LoadedModel, Workers};
pub use lock::{LOCK_FILE, LOCK_VERSION, Lock, Locked, LockedModel, LockedSource};
pub use observe::{Observer, Silent};
pub use prompt::MAX_PROMPT_BYTES;
pub use provenance::{Provenance, config_digest};
pub use report::RunReport;
pub use run::{LabelOptions, RunOptions};
pub use scale::MergeReport;
pub use verify::{DEFAULT_TOLERANCE, Golden, GoldenOutput, PROBES, VerifyReport};
pub use zoo_datasets::Shard;
pub use zoo_manifest::ErrorLevel;
pub use zoo_model_core::{ModelFactory, Runtime, SystemInfo};

/// The application layer: a registry, the datasets and a model runtime,
/// configured once.
pub struct Zoo<'a> {
    config: Config,
    registry: Registry,
    runtime: &'a dyn Runtime,
    observer: &'a dyn Observer,
}

impl std::fmt::Debug for Zoo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zoo")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// No model runtime: every native model type is refused (its builder is
/// missing); models that run in the Python model host, datasets and merges
/// work. What the `zoo` binary uses for commands that run no model.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRuntime;

impl Runtime for NoRuntime {
    fn system_info(&self) -> SystemInfo {
        SystemInfo {
            cuda_available: false,
            cuda_devices: 0,
            cudnn_available: false,
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            mkl: false,
        }
    }

    fn factory(&self) -> ModelFactory {
        ModelFactory::new()
    }
}

impl<'a> Zoo<'a> {
    /// zoo with `config`, building models with `runtime`, reporting
    /// nothing (see [`Zoo::with_observer`]).
    pub fn new(config: Config, runtime: &'a dyn Runtime) -> Self {
        let registry = Registry::new(config.registry.clone());
        Self {
            config,
            registry,
            runtime,
            observer: &Silent,
        }
    }

    /// Reports progress and notes to `observer`.
    pub fn with_observer(mut self, observer: &'a dyn Observer) -> Self {
        self.observer = observer;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The model registry (catalogue, sources, downloads).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The model runtime.
    pub fn runtime(&self) -> &dyn Runtime {
        self.runtime
    }

    /// Where progress and notes go.
    pub fn observer(&self) -> &dyn Observer {
        self.observer
    }

    /// The dataset store (`Config::datasets_dir`), opened.
    pub fn datasets(&self) -> Result<Datasets> {
        Ok(Datasets::open(&self.config.datasets_dir)?)
    }
}
