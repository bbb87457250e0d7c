//! One model entry of a manifest.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::name::{versioned_filename, versioned_name};
use crate::requirements::Requirements;

/// A model as a manifest describes it (FiftyOne's `ZooModel` fields).
///
/// Every field but `base_name` is optional; `null` is read as absent; fields
/// zoo does not know are kept in `extra` and written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestModel {
    /// The name without version, e.g. `voxel51/clip-vit-base32-torch`.
    pub base_name: String,
    /// The file the model downloads to, without version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_filename: Option<String>,
    /// Who made the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The model version, compared with [`crate::LooseVersion`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A web page about the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Licenses, comma-separated when several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Where the model comes from (a paper, a repo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What the model does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags such as `classification` or `embeddings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// The download size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// When the model was added, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_added: Option<String>,
    /// What the model needs to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<Requirements>,
    /// How the model file is downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<Manager>,
    /// How the model is built once downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_deployment_config_dict: Option<DeploymentConfig>,
    /// What the model was trained on, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_data: Option<Value>,
    /// Fields zoo does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ManifestModel {
    /// The model's name: `base_name` with `@version` when versioned.
    pub fn name(&self) -> String {
        versioned_name(&self.base_name, self.version.as_deref())
    }

    /// The file name the model downloads to, with `-v<version>` when
    /// versioned; `None` when the manifest gives no `base_filename`.
    pub fn filename(&self) -> Option<String> {
        self.base_filename
            .as_deref()
            .map(|filename| versioned_filename(filename, self.version.as_deref()))
    }

    /// The tags, empty when none.
    pub fn tags(&self) -> &[String] {
        self.tags.as_deref().unwrap_or_default()
    }

    /// The licenses, split on commas and trimmed.
    pub fn licenses(&self) -> impl Iterator<Item = &str> {
        self.license
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|license| !license.is_empty())
    }

    /// The manager, unless it is missing or empty (`{}`).
    pub fn download_manager(&self) -> Option<&Manager> {
        self.manager.as_ref().filter(|manager| !manager.is_empty())
    }
}

/// How a model is downloaded: `{"type": ..., "config": {...}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Manager {
    /// The manager class, e.g. `fiftyone.core.models.ModelManager`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its settings: `url` or `google_drive_id`, `extract_archive`, ...
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// Fields zoo does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Manager {
    /// A manager with no type and no config says nothing (`"manager": {}`).
    pub fn is_empty(&self) -> bool {
        self.kind.is_none() && self.config.is_empty() && self.extra.is_empty()
    }
}

/// How a model is built: `{"type": ..., "config": {...}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeploymentConfig {
    /// The model class, e.g. `fiftyone.utils.torch.TorchImageModel`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The class's settings.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// Fields zoo does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
