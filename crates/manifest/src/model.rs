//! One model entry of a manifest.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::file_name::{FileName, NameError, check_base_name, check_version, escape};
use crate::name::{split_extension, versioned_filename, versioned_name};
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

    /// The licenses outside `allowed` (a licence policy such as
    /// `ZOO_ALLOWED_LICENSES`): each of the model's licenses must be in the
    /// list, matched as [`license_key`] matches them; a model with no
    /// license has none in the list, so it is outside as `(none)`.
    pub fn licenses_outside<'a, S: AsRef<str>>(&'a self, allowed: &[S]) -> Vec<&'a str> {
        let allowed: Vec<String> = allowed.iter().map(|id| license_key(id.as_ref())).collect();
        let mut outside: Vec<&str> = self
            .licenses()
            .filter(|license| !allowed.contains(&license_key(license)))
            .collect();
        if self.licenses().next().is_none() {
            outside.push("(none)");
        }
        outside
    }

    /// The manager, unless it is missing or empty (`{}`).
    pub fn download_manager(&self) -> Option<&Manager> {
        self.manager.as_ref().filter(|manager| !manager.is_empty())
    }

    /// Whether the manager unpacks the downloaded file (`extract_archive`).
    pub fn extracts_archive(&self) -> bool {
        self.download_manager()
            .and_then(|manager| manager.config.get("extract_archive"))
            .is_some_and(|value| value.as_bool() == Some(true))
    }

    /// The names the model occupies in its folder, after checking every
    /// field they are built from (`base_name`, `version`, `base_filename`)
    /// and the names themselves (see [`FileName`]): the only way zoo turns a
    /// model entry into paths.
    pub fn files(&self) -> Result<ModelFiles, UnsafeField> {
        check_base_name(&self.base_name)
            .map_err(|problem| UnsafeField::field("base_name", &self.base_name, problem))?;
        if let Some(version) = self.version.as_deref() {
            check_version(version)
                .map_err(|problem| UnsafeField::field("version", version, problem))?;
        }
        let file = match self.base_filename.as_deref() {
            Some(base_filename) => {
                FileName::new(base_filename).map_err(|problem| {
                    UnsafeField::field("base_filename", base_filename, problem)
                })?;
                let versioned = versioned_filename(base_filename, self.version.as_deref());
                FileName::new(&versioned).map_err(|problem| UnsafeField {
                    field: "base_filename",
                    built_as: Some("the versioned file name"),
                    value: versioned.clone(),
                    problem,
                })?
            }
            None => {
                let name = self.name();
                let last = name.rsplit('/').next().unwrap_or(&name);
                FileName::new(last).map_err(|problem| UnsafeField {
                    field: "base_name",
                    built_as: Some("the file name taken from the end of the versioned name"),
                    value: last.to_owned(),
                    problem,
                })?
            }
        };
        let archive_folder = if self.extracts_archive() {
            let stem = archive_stem(file.as_str());
            let problem = if stem == file.as_str() {
                Err(NameError::NoExtension)
            } else {
                FileName::new(stem)
            };
            Some(problem.map_err(|problem| UnsafeField {
                field: "base_filename",
                built_as: Some("the folder the archive extracts to"),
                value: stem.to_owned(),
                problem,
            })?)
        } else {
            None
        };
        Ok(ModelFiles {
            file,
            archive_folder,
        })
    }
}

/// What a model occupies in its folder (a source's folder, or the zoo dir
/// for built-in and custom-manifest models), from [`ManifestModel::files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The downloaded file: the versioned filename, or without
    /// `base_filename` the last part of the versioned name.
    pub file: FileName,
    /// For a manager with `extract_archive`: the folder the archive unpacks
    /// to (the file's name without its archive extension).
    pub archive_folder: Option<FileName>,
}

impl ModelFiles {
    /// Every name, file first.
    pub fn names(&self) -> impl Iterator<Item = &FileName> {
        std::iter::once(&self.file).chain(self.archive_folder.as_ref())
    }
}

/// A manifest field, or a name built from fields, that cannot become a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} `{}` {problem}", describe_field(field, built_as), escape(value))]
pub struct UnsafeField {
    /// The manifest field at fault (`version`, `base_filename`, `name`, ...).
    pub field: &'static str,
    /// What was built from the field, when the built name is at fault.
    pub built_as: Option<&'static str>,
    /// The unusable text, as written (escaped when displayed).
    pub value: String,
    /// Why it is unusable.
    pub problem: NameError,
}

impl UnsafeField {
    pub(crate) fn field(field: &'static str, value: &str, problem: NameError) -> Self {
        Self {
            field,
            built_as: None,
            value: value.to_owned(),
            problem,
        }
    }
}

fn describe_field(field: &str, built_as: &Option<&str>) -> String {
    match built_as {
        None => format!("`{field}`"),
        Some(built_as) => format!("{built_as} (from `{field}`)"),
    }
}

/// `model.tar.gz` -> `model`: the archive extensions zoo unpacks, else the
/// last extension.
pub(crate) fn archive_stem(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    [".tar.gz", ".tgz", ".tar", ".zip"]
        .iter()
        .find(|extension| lower.ends_with(*extension))
        .map_or_else(
            || split_extension(name).0,
            |extension| &name[..name.len() - extension.len()],
        )
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

/// How a license is compared with a licence policy's entry: ASCII case
/// ignored and runs of spaces read as one hyphen, so FiftyOne's `Apache 2.0`,
/// `BSD 3-Clause` and `CC BY-NC 4.0` are the SPDX ids `Apache-2.0`,
/// `BSD-3-Clause` and `CC-BY-NC-4.0`; a license with no SPDX id (`SAM
/// License`) is matched by its own name the same way (`SAM-License`).
pub fn license_key(license: &str) -> String {
    license
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(value: serde_json::Value) -> ManifestModel {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_licence_policy_takes_fiftyones_names_as_spdx_ids_and_needs_every_license() {
        let allowed = ["Apache-2.0", "bsd-3-clause", "MIT"];
        let outside = |license: Option<&str>| {
            let model = model(serde_json::json!({"base_name": "m", "license": license}));
            model
                .licenses_outside(&allowed)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert!(outside(Some("Apache 2.0")).is_empty());
        assert!(outside(Some("Apache 2.0, BSD 3-Clause")).is_empty());
        assert_eq!(outside(Some("Apache 2.0, AGPL-3.0")), ["AGPL-3.0"]);
        assert_eq!(outside(Some("CC BY-NC 4.0")), ["CC BY-NC 4.0"]);
        assert_eq!(outside(None), ["(none)"]);
        assert_eq!(outside(Some(" , ")), ["(none)"]);
        assert_eq!(license_key("  SAM   License "), "sam-license");
    }

    #[test]
    fn files_are_the_versioned_filename_or_the_end_of_the_name() {
        let cases = [
            (
                serde_json::json!({"base_name": "voxel51/clip-vit-base32-torch", "base_filename": "CLIP-ViT-B-32.pt"}),
                "CLIP-ViT-B-32.pt",
            ),
            (
                serde_json::json!({"base_name": "net", "base_filename": "model.pt", "version": "1.0"}),
                "model-v1.0.pt",
            ),
            (
                serde_json::json!({"base_name": "Qwen/Qwen2.5-VL-3B-Instruct"}),
                "Qwen2.5-VL-3B-Instruct",
            ),
            (
                serde_json::json!({"base_name": "acme/net", "version": "2"}),
                "net@2",
            ),
        ];
        for (value, expected) in cases {
            let files = model(value).files().unwrap();
            assert_eq!(files.file.as_str(), expected);
            assert_eq!(files.archive_folder, None);
        }
    }

    #[test]
    fn archive_folders_strip_the_archive_extension() {
        for (filename, folder) in [
            ("model.tar.gz", "model"),
            ("model.tgz", "model"),
            ("model.ZIP", "model"),
            ("model-v2.tar", "model-v2"),
            ("weights.bin", "weights"),
        ] {
            let files = model(serde_json::json!({
                "base_name": "m",
                "base_filename": filename,
                "manager": {"config": {"url": "http://x", "extract_archive": true}},
            }))
            .files()
            .unwrap();
            assert_eq!(
                files.archive_folder.as_ref().map(FileName::as_str),
                Some(folder),
                "{filename}"
            );
        }
    }

    #[test]
    fn every_field_that_becomes_a_path_is_checked() {
        let cases = [
            (
                serde_json::json!({"base_name": "m", "base_filename": "m.pt", "version": "/../../x"}),
                "version",
                None,
            ),
            (
                serde_json::json!({"base_name": "m", "version": "1/.."}),
                "version",
                None,
            ),
            (serde_json::json!({"base_name": ".."}), "base_name", None),
            (serde_json::json!({"base_name": "x/.."}), "base_name", None),
            (
                serde_json::json!({"base_name": "slash/"}),
                "base_name",
                None,
            ),
            (
                serde_json::json!({"base_name": "m", "base_filename": "manifest.json"}),
                "base_filename",
                None,
            ),
            (
                serde_json::json!({"base_name": "m", "base_filename": "sub/m.pt"}),
                "base_filename",
                None,
            ),
            (
                serde_json::json!({"base_name": "acme/.tmp"}),
                "base_name",
                Some("the file name taken from the end of the versioned name"),
            ),
            (
                serde_json::json!({"base_name": "m", "base_filename": "__init__.py.zip",
                    "manager": {"config": {"url": "u", "extract_archive": true}}}),
                "base_filename",
                Some("the folder the archive extracts to"),
            ),
            (
                serde_json::json!({"base_name": "m", "base_filename": "weights",
                    "manager": {"config": {"url": "u", "extract_archive": true}}}),
                "base_filename",
                Some("the folder the archive extracts to"),
            ),
        ];
        for (value, field, built_as) in cases {
            let text = value.to_string();
            let err = model(value).files().unwrap_err();
            assert_eq!(err.field, field, "{text}");
            assert_eq!(err.built_as, built_as, "{text}");
            assert!(err.to_string().contains(field), "{text}: {err}");
        }
    }
}
