//! How a model is built: from a deployment config (natively), or by the
//! Python `load_model` of its source in the model host.
//!
//! The registry only says which; it never runs the model host itself (the
//! CLI starts `zoo-python-host` with the [`PythonLoad`] it gets here).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use zoo_manifest::{DeploymentConfig, Origin, ZooModel};

use crate::error::RegistryError;
use crate::hooks::{self, Hook, HookKind};
use crate::registry::Registry;

/// How [`Registry::load_plan`] says to build a model.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LoadPlan {
    /// A deployment config, run natively: the manifest's
    /// `default_deployment_config_dict`, or what an executable load hook
    /// printed (overrides applied).
    Config(DeploymentConfig),
    /// The trusted source's `__init__.py` defines `load_model`: run it in
    /// the model host, which serves the `fiftyone.core.models.Model` it
    /// returns (or hands back the JSON config it returns).
    Python(PythonLoad),
}

/// A trusted source's Python `load_model`, its paths checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonLoad {
    /// The source's `__init__.py`.
    pub init: PathBuf,
    /// The model's versioned name (`load_model`'s `model_name`).
    pub model_name: String,
    /// The model's path (`load_model`'s `model_path`).
    pub model_path: PathBuf,
    /// The interpreter ([`RegistryConfig::python`](crate::RegistryConfig)).
    pub python: String,
    /// How long `load_model` and each batch may take
    /// ([`RegistryConfig::hook_timeout`](crate::RegistryConfig)).
    pub timeout: Duration,
}

/// Which way a model is built, as far as can be known without running
/// anything (for `zoo models info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadPath {
    /// The manifest's deployment config: zoo's native backend.
    Native,
    /// The source's Python `load_model`: the model host (or natively, when
    /// it returns a JSON config).
    PythonHost,
    /// An executable `load_model` that prints a config: natively.
    ExecutableHook,
    /// No config and no load hook: zoo cannot build it.
    Unavailable,
}

impl LoadPath {
    /// A short name: `native`, `python host`, `executable hook`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::PythonHost => "python host",
            Self::ExecutableHook => "native (config from an executable load hook)",
            Self::Unavailable => "none",
        }
    }
}

impl Registry {
    /// How to build `model`: its deployment config (an executable load
    /// hook runs here, trusted sources only), or its trusted source's
    /// Python `load_model` for the model host. `overrides` are the
    /// `load_zoo_model(name, **kwargs)` kwargs: they replace config values,
    /// and reach a hook's `load_model` as keyword arguments.
    pub fn load_plan(
        &self,
        model: &ZooModel,
        overrides: &Map<String, Value>,
    ) -> Result<LoadPlan, RegistryError> {
        if model.model.default_deployment_config_dict.is_none() {
            let source_dir = self.trusted_source_dir(model)?;
            if let Some(Hook::Python(init)) = hooks::find(&source_dir, HookKind::Load) {
                let paths = self.model_paths(model)?;
                self.check_paths(model, &paths, "run the load hook")?;
                return Ok(LoadPlan::Python(PythonLoad {
                    init,
                    model_name: model.name(),
                    model_path: paths.file,
                    python: self.config().python.clone(),
                    timeout: self.config().hook_timeout,
                }));
            }
        }
        Ok(LoadPlan::Config(
            self.deployment_config_of(model, overrides)?,
        ))
    }

    /// Which way `model` is built (see [`LoadPath`]); runs nothing.
    pub fn load_path(&self, model: &ZooModel) -> LoadPath {
        if model.model.default_deployment_config_dict.is_some() {
            return LoadPath::Native;
        }
        if !matches!(model.origin, Origin::Source { .. }) {
            return LoadPath::Unavailable;
        }
        let Ok(paths) = self.model_paths(model) else {
            return LoadPath::Unavailable;
        };
        match hooks::find(&paths.dir, HookKind::Load) {
            Some(Hook::Python(_)) => LoadPath::PythonHost,
            Some(Hook::Executable(_)) => LoadPath::ExecutableHook,
            None => LoadPath::Unavailable,
        }
    }

    /// A config that a hosted `load_model` returned, as a deployment
    /// config with `overrides` applied.
    pub fn config_from_hook(
        &self,
        model: &ZooModel,
        value: Value,
        overrides: &Map<String, Value>,
    ) -> Result<DeploymentConfig, RegistryError> {
        let text = value.to_string();
        let value = hooks::parse_config(&text, "load_model", &model.name())?;
        let mut config: DeploymentConfig =
            serde_json::from_value(value).map_err(|err| RegistryError::BadLoadConfig {
                hook: "load_model".to_owned(),
                model: model.name(),
                message: err.to_string(),
            })?;
        for (key, value) in overrides {
            config.config.insert(key.clone(), value.clone());
        }
        Ok(config)
    }
}
