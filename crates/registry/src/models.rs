//! Model files: where they live, downloading, finding, deleting, and the
//! deployment config a model is built from.
//!
//! A model's path is its versioned filename in its source's folder (built-in
//! and custom-manifest models: in the zoo dir). It counts as downloaded when
//! that file exists or, for a model whose manager extracts an archive, when
//! the folder named after the archive (extension stripped) exists.

use std::path::{Path, PathBuf};

use serde_json::Value;
use zoo_fs::{LockMode, LockedFile};
use zoo_manifest::{DeploymentConfig, Origin, ZooModel, split_extension};
use zoo_sources::{
    ArchiveKind, Progress, TransferOptions, extract, fetch_file, fetch_google_drive, partial_path,
};

use crate::error::RegistryError;
use crate::hooks::{self, HookKind};
use crate::registry::{RegisterOutcome, Registry};

const LOCKS_DIR: &str = ".locks";

/// The result of [`Registry::download_model`].
#[derive(Debug, Clone, PartialEq)]
pub struct Downloaded {
    /// The model.
    pub model: ZooModel,
    /// Where it is.
    pub path: PathBuf,
    /// Whether this call fetched it (false: it was there already).
    pub fetched: bool,
}

impl Downloaded {
    /// The model's (versioned) name.
    pub fn name(&self) -> String {
        self.model.name()
    }
}

/// How a model's manager says to download it.
struct ManagerPlan {
    url: Option<String>,
    google_drive_id: Option<String>,
    extract_archive: bool,
    delete_archive: bool,
    options: TransferOptions,
}

impl Registry {
    /// The folder a model's files go to.
    pub fn model_dir(&self, model: &ZooModel) -> PathBuf {
        match &model.origin {
            Origin::Source { dir, .. } => self.root().join(dir),
            Origin::Builtin | Origin::Custom(_) => self.root().to_path_buf(),
        }
    }

    /// The model's path: its versioned filename (or, without one, the last
    /// part of its versioned name) in [`Registry::model_dir`].
    pub fn model_path(&self, model: &ZooModel) -> PathBuf {
        let filename = model.model.filename().unwrap_or_else(|| {
            let name = model.name();
            name.rsplit('/').next().unwrap_or(&name).to_owned()
        });
        self.model_dir(model).join(filename)
    }

    /// The path that shows the model is downloaded, if it is.
    pub fn downloaded_path(&self, model: &ZooModel) -> Option<PathBuf> {
        let path = self.model_path(model);
        if extracts_archive(model) {
            let folder = archive_folder(&path);
            return folder.is_dir().then_some(folder);
        }
        path.exists().then_some(path)
    }

    fn model_lock(&self, model: &ZooModel) -> Result<LockedFile, RegistryError> {
        let path = self.model_path(model);
        let relative = path.strip_prefix(self.root()).unwrap_or(&path);
        let key: String = relative
            .to_string_lossy()
            .chars()
            .map(|character| {
                if character == '/' || character == '\\' {
                    '~'
                } else {
                    character
                }
            })
            .collect();
        let lock = self.root().join(LOCKS_DIR).join(format!("{key}.lock"));
        Ok(LockedFile::acquire(&lock, LockMode::Exclusive)?)
    }

    /// Downloads the model `name` unless it is downloaded already (or
    /// `overwrite`). Several processes asking at once cause one transfer: the
    /// others wait on the model's lock and find it done.
    pub fn download_model(
        &self,
        name: &str,
        overwrite: bool,
        progress: &dyn Progress,
    ) -> Result<Downloaded, RegistryError> {
        let model = self.model(name)?;
        self.fetch(&model, overwrite, progress)
    }

    /// Downloads a model named by `name_or_url`: an `http(s)` URL is a
    /// source (registered on the way) offering `model_name` or a single
    /// model; anything else is a model name, and then `model_name` must be
    /// absent.
    pub fn download(
        &self,
        name_or_url: &str,
        model_name: Option<&str>,
        overwrite: bool,
        progress: &dyn Progress,
    ) -> Result<Downloaded, RegistryError> {
        let lower = name_or_url.trim().to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return self.download_from_source(name_or_url, model_name, overwrite, progress);
        }
        if model_name.is_some() {
            return Err(RegistryError::ModelNameWithoutSource {
                name: name_or_url.to_owned(),
            });
        }
        self.download_model(name_or_url, overwrite, progress)
    }

    fn fetch(
        &self,
        model: &ZooModel,
        overwrite: bool,
        progress: &dyn Progress,
    ) -> Result<Downloaded, RegistryError> {
        let name = model.name();
        if !overwrite && let Some(path) = self.downloaded_path(model) {
            return Ok(Downloaded {
                model: model.clone(),
                path,
                fetched: false,
            });
        }
        let _lock = self.model_lock(model)?;
        if overwrite {
            self.remove_model_files(model)?;
        } else if let Some(path) = self.downloaded_path(model) {
            tracing::debug!(model = name, "downloaded by another process meanwhile");
            return Ok(Downloaded {
                model: model.clone(),
                path,
                fetched: false,
            });
        }
        if self.config().offline {
            return Err(RegistryError::Offline {
                what: format!("downloading model `{name}`"),
            });
        }
        let path = self.model_path(model);
        match manager_plan(model, &self.config().transfer)? {
            Some(plan) => self.download_with_manager(model, &path, &plan, progress)?,
            None => self.download_with_hook(model, &path)?,
        }
        let path = self
            .downloaded_path(model)
            .ok_or_else(|| RegistryError::Hook {
                hook: "download".to_owned(),
                model: name.clone(),
                message: format!("nothing was created at `{}`", path.display()),
                stderr: String::new(),
            })?;
        Ok(Downloaded {
            model: model.clone(),
            path,
            fetched: true,
        })
    }

    fn download_with_manager(
        &self,
        model: &ZooModel,
        path: &Path,
        plan: &ManagerPlan,
        progress: &dyn Progress,
    ) -> Result<(), RegistryError> {
        let http = zoo_sources::HttpClient::new();
        if !(plan.extract_archive && path.is_file()) {
            match (&plan.url, &plan.google_drive_id) {
                (Some(url), _) => {
                    let url = self.mirrored(url);
                    fetch_file(&http, &url, path, &plan.options, progress)?;
                }
                (None, Some(id)) => {
                    let base = self.config().google_drive_url.clone();
                    fetch_google_drive(&http, &base, id, path, &plan.options, progress)?;
                }
                (None, None) => unreachable_plan(model)?,
            }
        }
        if plan.extract_archive {
            let filename = path.to_string_lossy();
            let kind = match ArchiveKind::from_name(&filename) {
                Some(kind) => kind,
                None => ArchiveKind::sniff(path)?.ok_or_else(|| {
                    zoo_sources::SourceError::UnknownArchive {
                        origin: path.display().to_string(),
                    }
                })?,
            };
            let staging = self.staging("extract-")?;
            let unpacked = staging.path().join("unpacked");
            extract(path, kind, &unpacked, &self.config().extract_limits)?;
            let folder = archive_folder(path);
            let stem = folder
                .file_name()
                .map(|name| name.to_os_string())
                .unwrap_or_default();
            // An archive holding one folder of its own name is that folder.
            let mut entries = fs_err::read_dir(&unpacked)?;
            let inner = match (entries.next(), entries.next()) {
                (Some(Ok(entry)), None)
                    if entry.file_name() == stem && entry.file_type()?.is_dir() =>
                {
                    entry.path()
                }
                _ => unpacked.clone(),
            };
            zoo_fs::persist_dir(&inner, &folder)?;
            if plan.delete_archive {
                fs_err::remove_file(path)?;
            }
        }
        Ok(())
    }

    fn download_with_hook(&self, model: &ZooModel, path: &Path) -> Result<(), RegistryError> {
        let source_dir = self.trusted_source_dir(model)?;
        let Some(hook) = hooks::find(&source_dir, HookKind::Download) else {
            return Err(RegistryError::NoMethod {
                model: model.name(),
                hook: "download_model".to_owned(),
                action: "downloaded".to_owned(),
            });
        };
        // The hook writes beside the target; the result is renamed into place
        // only once the hook succeeded.
        let staging = partial_path(path);
        remove_path(&staging)?;
        let result = hooks::run(
            &hook,
            HookKind::Download,
            &self.config().python,
            &model.name(),
            &staging,
            &Value::Null,
        );
        if let Err(err) = result {
            remove_path(&staging)?;
            return Err(err);
        }
        if staging.exists() {
            fs_err::rename(&staging, path)?;
            zoo_fs::sync_dir(&source_dir)?;
        }
        Ok(())
    }

    /// The folder of the model's source, if the source is trusted to run code.
    fn trusted_source_dir(&self, model: &ZooModel) -> Result<PathBuf, RegistryError> {
        let Origin::Source { url, dir } = &model.origin else {
            return Err(RegistryError::NoMethod {
                model: model.name(),
                hook: "download_model".to_owned(),
                action: "downloaded".to_owned(),
            });
        };
        let trusted = self
            .sources()?
            .iter()
            .any(|source| &source.url == url && source.trusted);
        if !trusted {
            return Err(RegistryError::NotTrusted {
                source_url: url.clone(),
                model: model.name(),
            });
        }
        Ok(self.root().join(dir))
    }

    /// Registers the source at `url` (a no-op when registered) and downloads
    /// `model_name` from it, or its only model.
    pub fn download_from_source(
        &self,
        url: &str,
        model_name: Option<&str>,
        overwrite: bool,
        progress: &dyn Progress,
    ) -> Result<Downloaded, RegistryError> {
        let source = match self.register_source(url, false, false, progress)? {
            RegisterOutcome::Registered { source, .. }
            | RegisterOutcome::AlreadyRegistered(source) => source,
        };
        let view = self.zoo()?;
        let offered: Vec<&ZooModel> = view
            .zoo
            .models()
            .iter()
            .filter(
                |model| matches!(&model.origin, Origin::Source { url, .. } if *url == source.url),
            )
            .collect();
        let model = match model_name {
            Some(name) => offered
                .iter()
                .find(|model| model.name() == name || model.model.base_name == name)
                .copied()
                .cloned()
                .or_else(|| view.zoo.get(name).cloned())
                .ok_or_else(|| RegistryError::ModelNotFound {
                    name: name.to_owned(),
                    suggestions: offered.iter().map(|model| model.name()).collect(),
                })?,
            None => match offered.as_slice() {
                [only] => (*only).clone(),
                _ => {
                    return Err(RegistryError::AmbiguousModel {
                        source_url: source.url,
                        models: offered.iter().map(|model| model.name()).collect(),
                    });
                }
            },
        };
        self.fetch(&model, overwrite, progress)
    }

    /// The downloaded model's path, or an error saying how to download it.
    pub fn find_model(&self, name: &str) -> Result<PathBuf, RegistryError> {
        let model = self.model(name)?;
        self.downloaded_path(&model)
            .ok_or_else(|| RegistryError::NotDownloaded { name: model.name() })
    }

    /// Deletes a downloaded model's files (file, extracted folder, archive,
    /// partial download) and nothing else; returns the model's path.
    pub fn delete_model(&self, name: &str) -> Result<PathBuf, RegistryError> {
        let model = self.model(name)?;
        let path = self.model_path(&model);
        let _lock = self.model_lock(&model)?;
        if self.downloaded_path(&model).is_none() && !path.exists() && !partial_path(&path).exists()
        {
            return Err(RegistryError::NotDownloaded { name: model.name() });
        }
        self.remove_model_files(&model)?;
        Ok(path)
    }

    fn remove_model_files(&self, model: &ZooModel) -> Result<(), RegistryError> {
        let path = self.model_path(model);
        remove_path(&partial_path(&path))?;
        remove_path(&path)?;
        if extracts_archive(model) {
            remove_path(&archive_folder(&path))?;
        }
        Ok(())
    }

    /// The deployment config the model is built from: its
    /// `default_deployment_config_dict`, or what its source's load hook
    /// returns (trusted sources only). `overrides` replace config values.
    pub fn deployment_config(
        &self,
        name: &str,
        overrides: &serde_json::Map<String, Value>,
    ) -> Result<(ZooModel, DeploymentConfig), RegistryError> {
        let model = self.model(name)?;
        let config = self.deployment_config_of(&model, overrides)?;
        Ok((model, config))
    }

    /// [`Registry::deployment_config`] for a model already resolved.
    pub fn deployment_config_of(
        &self,
        model: &ZooModel,
        overrides: &serde_json::Map<String, Value>,
    ) -> Result<DeploymentConfig, RegistryError> {
        let mut config = match &model.model.default_deployment_config_dict {
            Some(config) => config.clone(),
            None => {
                let source_dir = self.trusted_source_dir(model)?;
                let hook = hooks::find(&source_dir, HookKind::Load).ok_or_else(|| {
                    RegistryError::NoMethod {
                        model: model.name(),
                        hook: "load_model".to_owned(),
                        action: "loaded".to_owned(),
                    }
                })?;
                let path = self.model_path(model);
                let stdout = hooks::run(
                    &hook,
                    HookKind::Load,
                    &self.config().python,
                    &model.name(),
                    &path,
                    &Value::Object(overrides.clone()),
                )?;
                let value = hooks::parse_config(&stdout, "load_model", &model.name())?;
                serde_json::from_value(value).map_err(|err| RegistryError::BadLoadConfig {
                    hook: "load_model".to_owned(),
                    model: model.name(),
                    message: err.to_string(),
                })?
            }
        };
        for (key, value) in overrides {
            config.config.insert(key.clone(), value.clone());
        }
        Ok(config)
    }

    fn mirrored(&self, url: &str) -> String {
        for (prefix, replacement) in &self.config().mirrors {
            if let Some(rest) = url.strip_prefix(prefix.as_str()) {
                tracing::debug!(%url, mirror = %replacement, "using mirror");
                return format!("{replacement}{rest}");
            }
        }
        url.to_owned()
    }
}

/// Whether the model's manager unpacks an archive.
fn extracts_archive(model: &ZooModel) -> bool {
    model
        .model
        .download_manager()
        .and_then(|manager| manager.config.get("extract_archive"))
        .is_some_and(|value| value.as_bool() == Some(true))
}

fn manager_plan(
    model: &ZooModel,
    transfer: &TransferOptions,
) -> Result<Option<ManagerPlan>, RegistryError> {
    let Some(manager) = model.model.download_manager() else {
        return Ok(None);
    };
    let config = &manager.config;
    let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
    let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
    let plan = ManagerPlan {
        url: text("url"),
        google_drive_id: text("google_drive_id"),
        extract_archive: flag("extract_archive"),
        delete_archive: flag("delete_archive"),
        options: TransferOptions {
            sha256: text("sha256"),
            size: config.get("size_bytes").and_then(Value::as_u64),
            ..transfer.clone()
        },
    };
    if plan.url.is_none() && plan.google_drive_id.is_none() {
        return Err(RegistryError::BadManager {
            model: model.name(),
            message: "its config has neither `url` nor `google_drive_id`".to_owned(),
        });
    }
    Ok(Some(plan))
}

fn unreachable_plan(model: &ZooModel) -> Result<(), RegistryError> {
    Err(RegistryError::BadManager {
        model: model.name(),
        message: "its config has neither `url` nor `google_drive_id`".to_owned(),
    })
}

/// `dir/model.tar.gz` -> `dir/model`.
fn archive_folder(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let stem = [".tar.gz", ".tgz", ".tar", ".zip"]
        .iter()
        .find(|extension| lower.ends_with(*extension))
        .map_or_else(
            || split_extension(&name).0.to_owned(),
            |extension| name[..name.len() - extension.len()].to_owned(),
        );
    path.with_file_name(stem)
}

fn remove_path(path: &Path) -> Result<(), RegistryError> {
    match fs_err::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs_err::remove_dir_all(path)?,
        Ok(_) => fs_err::remove_file(path)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_folders() {
        for (archive, folder) in [
            ("d/model.tar.gz", "d/model"),
            ("d/model.tgz", "d/model"),
            ("d/model.zip", "d/model"),
            ("d/model-v2.tar", "d/model-v2"),
            ("d/weights.bin", "d/weights"),
        ] {
            assert_eq!(
                archive_folder(Path::new(archive)),
                PathBuf::from(folder),
                "{archive}"
            );
        }
    }
}
