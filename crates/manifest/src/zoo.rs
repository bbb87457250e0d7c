//! Several manifests merged into one view, with FiftyOne's conflict rules.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use crate::manifest::Manifest;
use crate::model::ManifestModel;
use crate::version::LooseVersion;

/// Where a model's manifest came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The manifest shipped inside zoo.
    Builtin,
    /// A manifest file named by `ZOO_MANIFEST_PATHS`.
    Custom(PathBuf),
    /// A registered remote source.
    Source {
        /// The source's normalised URL.
        url: String,
        /// The manifest's folder relative to the zoo dir, `/`-separated.
        dir: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin => f.write_str("builtin"),
            Self::Custom(path) => write!(f, "{}", path.display()),
            Self::Source { url, .. } => f.write_str(url),
        }
    }
}

/// A model in a merged [`Zoo`].
#[derive(Debug, Clone, PartialEq)]
pub struct ZooModel {
    /// The manifest entry.
    pub model: ManifestModel,
    /// Where it came from.
    pub origin: Origin,
}

impl ZooModel {
    /// The model's (versioned) name.
    pub fn name(&self) -> String {
        self.model.name()
    }
}

/// A model skipped while merging, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeWarning {
    /// The manifest the skipped model came from.
    pub origin: Origin,
    /// The skipped model's name.
    pub model: String,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for MergeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skipping model `{}` from `{}`: {}",
            self.model, self.origin, self.reason
        )
    }
}

/// Which models to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// A model must carry every one of these tags.
    pub tags: Vec<String>,
    /// A model must come from this source (its normalised URL).
    pub source: Option<String>,
    /// A model must carry at least one of these licenses (case-insensitive).
    pub licenses: Vec<String>,
}

impl Filter {
    /// Whether `model` passes.
    pub fn matches(&self, model: &ZooModel) -> bool {
        let tags = model.model.tags();
        let has_tags = self.tags.iter().all(|tag| tags.contains(tag));
        let from_source = self
            .source
            .as_deref()
            .is_none_or(|source| match &model.origin {
                Origin::Source { url, .. } => url == source,
                other => other.to_string() == source,
            });
        let licensed = self.licenses.is_empty()
            || model.model.licenses().any(|license| {
                self.licenses
                    .iter()
                    .any(|wanted| wanted.trim().eq_ignore_ascii_case(license))
            });
        has_tags && from_source && licensed
    }
}

/// Manifests merged in order: earlier ones win every conflict.
#[derive(Debug, Clone, Default)]
pub struct Zoo {
    models: Vec<ZooModel>,
    names: HashMap<String, usize>,
    filenames: HashSet<String>,
    unversioned: HashSet<String>,
    warnings: Vec<MergeWarning>,
}

impl Zoo {
    /// An empty zoo.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `manifest`'s models, skipping (with a [`MergeWarning`], also
    /// logged) any whose name or filename is taken, or that is versioned
    /// while its base name exists unversioned.
    pub fn merge(&mut self, origin: Origin, manifest: Manifest) {
        for model in manifest.models {
            let name = model.name();
            // The file and, for archives, the folder it unpacks to: two
            // models may not share either.
            let files = model.files();
            // A file is keyed by the folder it lives in, as FiftyOne's
            // `RemoteZooModel` keys a source's files by the source's folder:
            // a source's `CLIP-ViT-B-32.pt` is not the built-in's.
            let folder = match &origin {
                Origin::Source { dir, .. } => format!("{dir}/"),
                Origin::Builtin | Origin::Custom(_) => String::new(),
            };
            let filenames: Vec<String> = match &files {
                Ok(files) if model.base_filename.is_some() => files
                    .names()
                    .map(|name| format!("{folder}{}", name.as_str()))
                    .collect(),
                _ => Vec::new(),
            };
            let reason = if let Err(unsafe_field) = &files {
                Some(format!("its names are unsafe: {unsafe_field}"))
            } else if self.names.contains_key(&name) {
                Some(format!("a model named `{name}` already exists"))
            } else if let Some(filename) = filenames
                .iter()
                .find(|filename| self.filenames.contains(*filename))
            {
                let filename = filename.strip_prefix(&folder).unwrap_or(filename);
                Some(format!("a model with filename `{filename}` already exists"))
            } else if model.version.is_some() && self.unversioned.contains(&model.base_name) {
                Some(format!(
                    "an unversioned model named `{}` already exists",
                    model.base_name
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                let warning = MergeWarning {
                    origin: origin.clone(),
                    model: name,
                    reason,
                };
                tracing::warn!("{warning}");
                self.warnings.push(warning);
                continue;
            }
            if model.version.is_none() {
                self.unversioned.insert(model.base_name.clone());
            }
            self.filenames.extend(filenames);
            self.names.insert(name, self.models.len());
            self.models.push(ZooModel {
                model,
                origin: origin.clone(),
            });
        }
    }

    /// Every model, in merge order.
    pub fn models(&self) -> &[ZooModel] {
        &self.models
    }

    /// The models that pass `filter`.
    pub fn filter<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = &'a ZooModel> + 'a {
        self.models
            .iter()
            .filter(move |model| filter.matches(model))
    }

    /// What merging skipped.
    pub fn warnings(&self) -> &[MergeWarning] {
        &self.warnings
    }

    /// The model called `name`: an exact (versioned) name, or a base name,
    /// which resolves to its latest version.
    pub fn get(&self, name: &str) -> Option<&ZooModel> {
        if let Some(&index) = self.names.get(name) {
            return Some(&self.models[index]);
        }
        self.models
            .iter()
            .filter(|candidate| candidate.model.base_name == name)
            .max_by_key(|candidate| LooseVersion::of_model(candidate.model.version.as_deref()))
    }

    /// Every version of `base_name`, oldest first.
    pub fn versions(&self, base_name: &str) -> Vec<&ZooModel> {
        let mut versions: Vec<&ZooModel> = self
            .models
            .iter()
            .filter(|candidate| candidate.model.base_name == base_name)
            .collect();
        versions
            .sort_by_key(|candidate| LooseVersion::of_model(candidate.model.version.as_deref()));
        versions
    }

    /// Names close to `name`, for "did you mean" hints (same base name, or
    /// one contains the other).
    pub fn suggestions(&self, name: &str) -> Vec<String> {
        let lower = name.to_ascii_lowercase();
        let base = lower.split('@').next().unwrap_or_default().to_owned();
        let mut suggestions: Vec<String> = self
            .models
            .iter()
            .map(ZooModel::name)
            .filter(|candidate| {
                let candidate = candidate.to_ascii_lowercase();
                !base.is_empty() && (candidate.contains(&base) || base.contains(&candidate))
            })
            .collect();
        suggestions.truncate(5);
        suggestions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(models: serde_json::Value) -> Manifest {
        serde_json::from_value(serde_json::json!({ "name": "t", "models": models })).unwrap()
    }

    #[test]
    fn conflicts_are_skipped_with_warnings_and_first_wins() {
        let mut zoo = Zoo::new();
        zoo.merge(
            Origin::Builtin,
            manifest(serde_json::json!([
                {"base_name": "a", "base_filename": "a.pt"},
                {"base_name": "b", "version": "1"}
            ])),
        );
        // A custom manifest's files share the zoo dir with the built-ins'.
        zoo.merge(
            Origin::Custom(PathBuf::from("extra.json")),
            manifest(serde_json::json!([
                {"base_name": "a", "author": "second"},
                {"base_name": "c", "base_filename": "a.pt"},
                {"base_name": "a", "version": "2"},
                {"base_name": "b", "version": "2"},
                {"base_name": "b", "version": "1"}
            ])),
        );
        let names: Vec<String> = zoo.models().iter().map(ZooModel::name).collect();
        assert_eq!(names, vec!["a", "b@1", "b@2"]);
        assert_eq!(zoo.warnings().len(), 4);
        assert!(
            zoo.warnings()[0]
                .to_string()
                .contains("named `a` already exists")
        );
        assert!(zoo.warnings()[1].reason.contains("filename `a.pt`"));
        assert!(
            zoo.warnings()[2]
                .reason
                .contains("unversioned model named `a`")
        );
        assert_eq!(zoo.get("a").unwrap().origin, Origin::Builtin);
    }

    /// FiftyOne's `RemoteZooModel` keeps a source's files in the source's
    /// folder, so a source model whose `base_filename` equals a built-in's
    /// (`voxel51/openai-clip`'s `CLIP-ViT-B-32.pt`) is listed beside it;
    /// two models of one folder still may not share a file.
    #[test]
    fn a_source_file_named_like_a_builtins_is_its_own() {
        let mut zoo = Zoo::new();
        zoo.merge(
            Origin::Builtin,
            manifest(serde_json::json!([
                {"base_name": "clip-vit-base32-torch", "base_filename": "CLIP-ViT-B-32.pt"}
            ])),
        );
        let source = |dir: &str| Origin::Source {
            url: format!("https://github.com/{dir}"),
            dir: dir.into(),
        };
        zoo.merge(
            source("voxel51/openai-clip"),
            manifest(serde_json::json!([
                {"base_name": "voxel51/clip-vit-base32-torch", "base_filename": "CLIP-ViT-B-32.pt"},
                {"base_name": "voxel51/clip-copy", "base_filename": "CLIP-ViT-B-32.pt"}
            ])),
        );
        zoo.merge(
            source("acme/clip"),
            manifest(serde_json::json!([
                {"base_name": "acme/clip", "base_filename": "CLIP-ViT-B-32.pt"}
            ])),
        );
        let names: Vec<String> = zoo.models().iter().map(ZooModel::name).collect();
        assert_eq!(
            names,
            vec![
                "clip-vit-base32-torch",
                "voxel51/clip-vit-base32-torch",
                "acme/clip"
            ]
        );
        assert_eq!(zoo.warnings().len(), 1);
        assert_eq!(zoo.warnings()[0].model, "voxel51/clip-copy");
        assert!(
            zoo.warnings()[0]
                .reason
                .contains("filename `CLIP-ViT-B-32.pt` already exists"),
            "{}",
            zoo.warnings()[0]
        );
    }

    #[test]
    fn latest_and_exact_versions_resolve() {
        let mut zoo = Zoo::new();
        zoo.merge(
            Origin::Builtin,
            manifest(serde_json::json!([
                {"base_name": "m", "version": "1.9"},
                {"base_name": "m", "version": "1.10"},
                {"base_name": "m", "version": "1.2"},
                {"base_name": "x.y", "version": "3"}
            ])),
        );
        assert_eq!(zoo.get("m").unwrap().name(), "m@1.10");
        assert_eq!(zoo.get("m@1.9").unwrap().name(), "m@1.9");
        assert_eq!(zoo.get("x@3.y").unwrap().name(), "x@3.y");
        assert_eq!(zoo.get("x.y").unwrap().name(), "x@3.y");
        assert!(zoo.get("m@7").is_none());
        let versions: Vec<_> = zoo.versions("m").iter().map(|m| m.name()).collect();
        assert_eq!(versions, vec!["m@1.2", "m@1.9", "m@1.10"]);
        assert_eq!(zoo.suggestions("m@7"), vec!["m@1.9", "m@1.10", "m@1.2"]);
    }

    #[test]
    fn filters_by_tag_source_and_license() {
        let mut zoo = Zoo::new();
        zoo.merge(
            Origin::Builtin,
            manifest(serde_json::json!([
                {"base_name": "a", "tags": ["x", "y"], "license": "MIT, Apache-2.0"},
                {"base_name": "b", "tags": ["x"], "license": "GPL"}
            ])),
        );
        zoo.merge(
            Origin::Source {
                url: "https://github.com/u/r".into(),
                dir: "u/r".into(),
            },
            manifest(serde_json::json!([{"base_name": "c", "tags": ["x", "y"]}])),
        );
        let names =
            |filter: Filter| -> Vec<String> { zoo.filter(&filter).map(ZooModel::name).collect() };
        assert_eq!(
            names(Filter {
                tags: vec!["x".into(), "y".into()],
                ..Filter::default()
            }),
            vec!["a", "c"]
        );
        assert_eq!(
            names(Filter {
                licenses: vec!["apache-2.0".into()],
                ..Filter::default()
            }),
            vec!["a"]
        );
        assert_eq!(
            names(Filter {
                source: Some("https://github.com/u/r".into()),
                ..Filter::default()
            }),
            vec!["c"]
        );
    }
}
