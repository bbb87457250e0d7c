//! The environment interface: the library reads it ([`zoo::Config::from_env`]);
//! this module builds what commands need from it.

use anyhow::Result;
use zoo::{Config, Observer, Runtime, Zoo};
use zoo_registry::Registry;

pub(crate) use zoo::{datasets_dir, import_options};

/// The application layer as the environment configures it.
pub(crate) fn zoo<'a>(runtime: &'a dyn Runtime, observer: &'a dyn Observer) -> Result<Zoo<'a>> {
    Ok(Zoo::new(Config::from_env()?, runtime).with_observer(observer))
}

/// The registry as the environment configures it.
pub(crate) fn registry() -> Result<Registry> {
    Ok(Registry::new(Config::from_env()?.registry))
}

/// The Python interpreter for hooks and requirement checks.
pub(crate) fn python() -> String {
    zoo::python()
}
