//! Building models from deployment configs by type name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::model::{Model, ModelError};

/// Everything a builder gets: the config and where the weights are.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The `type` the config names.
    pub kind: String,
    /// The config's `config` object (overrides applied).
    pub config: Map<String, Value>,
    /// The downloaded model file, when there is one.
    pub model_path: Option<PathBuf>,
}

/// Builds a model from a spec.
pub type ModelBuilder = fn(&ModelSpec) -> Result<Box<dyn Model>, ModelError>;

/// Model builders by type name. Backends register theirs; this crate has
/// none of its own.
#[derive(Default)]
pub struct ModelFactory {
    builders: BTreeMap<String, ModelBuilder>,
}

impl std::fmt::Debug for ModelFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFactory")
            .field("types", &self.builders.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ModelFactory {
    /// An empty factory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `builder` under each of `names`.
    pub fn register(&mut self, names: &[&str], builder: ModelBuilder) {
        for name in names {
            self.builders.insert((*name).to_owned(), builder);
        }
    }

    /// The registered type names.
    pub fn types(&self) -> Vec<&str> {
        self.builders.keys().map(String::as_str).collect()
    }

    /// Builds the model `spec.kind` names.
    pub fn build(&self, spec: &ModelSpec) -> Result<Box<dyn Model>, ModelError> {
        let builder = self.builders.get(&spec.kind).ok_or_else(|| {
            ModelError::unsupported(format!(
                "zoo cannot run models of type `{}`; it runs: {}",
                spec.kind,
                self.types().join(", ")
            ))
        })?;
        builder(spec)
    }
}
