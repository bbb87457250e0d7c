//! Model files: where they live, downloading, finding, deleting, and the
//! deployment config a model is built from.
//!
//! A model's path is its versioned filename in its source's folder (built-in
//! and custom-manifest models: in the zoo dir). It counts as downloaded when
//! that file exists or, for a model whose manager extracts an archive, when
//! the folder named after the archive (extension stripped) exists.
//!
//! Names come from [`ManifestModel::files`](zoo_manifest::ManifestModel::files)
//! only, and every write, delete, extraction and hook call is preceded by
//! [`Registry::check_paths`]: each path must be strictly inside the model's
//! folder, and a source's folder strictly inside the zoo dir, with symbolic
//! links resolved.

use std::path::{Path, PathBuf};

use serde_json::Value;
use zoo_fs::{LockMode, LockedFile};
use zoo_manifest::{
    DeploymentConfig, FileName, ModelFiles, Origin, RelativePath, UnsafeField, ZooModel,
};
use zoo_sources::{
    ArchiveKind, Progress, TransferOptions, extract, fetch_file, fetch_google_drive, partial_path,
};

use crate::error::RegistryError;
use crate::hooks::{self, HookKind};
use crate::index::Index;
use crate::named_weights::named_weights;
use crate::registry::{RegisterOutcome, Registry};

pub(crate) const LOCKS_DIR: &str = ".locks";

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

/// Where a model's files go, built from checked names.
#[derive(Debug, Clone)]
pub(crate) struct ModelPaths {
    /// The folder: the source's folder, the zoo dir, or a staging folder.
    pub(crate) dir: PathBuf,
    /// The downloaded file.
    pub(crate) file: PathBuf,
    /// The folder an archive unpacks to.
    archive_folder: Option<PathBuf>,
}

impl ModelPaths {
    fn new(dir: PathBuf, files: &ModelFiles) -> Self {
        Self {
            file: dir.join(&files.file),
            archive_folder: files.archive_folder.as_ref().map(|name| dir.join(name)),
            dir,
        }
    }

    /// Every path zoo writes or deletes for the model: the file, its partial
    /// download, the archive folder.
    pub(crate) fn all(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.file.clone(), partial_path(&self.file)];
        paths.extend(self.archive_folder.clone());
        paths
    }

    /// The path that shows the model is downloaded.
    pub(crate) fn evidence(&self) -> &Path {
        self.archive_folder.as_deref().unwrap_or(&self.file)
    }
}

impl Registry {
    /// The model's path: its versioned filename (or, without one, the last
    /// part of its versioned name) in its source's folder, or in the zoo dir
    /// for built-in and custom-manifest models. An error when the manifest's
    /// names cannot be paths.
    pub fn model_path(&self, model: &ZooModel) -> Result<PathBuf, RegistryError> {
        Ok(self.model_paths(model)?.file)
    }

    /// The path that shows the model is downloaded, if it is (and is safely
    /// inside its folder; an unsafe path is logged and counts as absent).
    pub fn downloaded_path(&self, model: &ZooModel) -> Option<PathBuf> {
        let checked = self
            .model_paths(model)
            .and_then(|paths| self.downloaded(model, &paths));
        match checked {
            Ok(path) => path,
            Err(err) => {
                tracing::warn!("{err}");
                None
            }
        }
    }

    /// The model's paths from its checked names (no file system access).
    pub(crate) fn model_paths(&self, model: &ZooModel) -> Result<ModelPaths, RegistryError> {
        let files = model_files(model)?;
        match &model.origin {
            Origin::Source { url, dir } => {
                let relative =
                    RelativePath::new(dir).map_err(|problem| RegistryError::UnsafeIndexDir {
                        source_url: url.clone(),
                        dir: dir.clone(),
                        problem,
                    })?;
                Ok(ModelPaths::new(relative.join_to(self.root()), &files))
            }
            Origin::Builtin | Origin::Custom(_) => {
                Ok(ModelPaths::new(self.root().to_path_buf(), &files))
            }
        }
    }

    /// Checks, right before zoo writes, deletes, extracts or runs a hook,
    /// that the folder is strictly inside the zoo dir (unless it is the zoo
    /// dir) and every path strictly inside the folder, links resolved.
    pub(crate) fn check_paths(
        &self,
        model: &ZooModel,
        paths: &ModelPaths,
        action: &str,
    ) -> Result<(), RegistryError> {
        let escapes = |source| RegistryError::Escapes {
            action: action.to_owned(),
            model: model.name(),
            source: Box::new(source),
        };
        // The names came from `FileName`s; checked again here, at the last
        // moment, so no other way of building paths can slip past.
        for path in [Some(&paths.file), paths.archive_folder.as_ref()]
            .into_iter()
            .flatten()
        {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            FileName::new(&name).map_err(|problem| RegistryError::UnsafeModel {
                model: model.name(),
                field: Box::new(UnsafeField {
                    field: "base_filename",
                    built_as: Some("the model's file name"),
                    value: name.into_owned(),
                    problem,
                }),
            })?;
        }
        if paths.dir == self.root() {
            self.check_not_a_source_folder(model, paths)?;
        } else {
            zoo_fs::ensure_inside(self.root(), &paths.dir).map_err(escapes)?;
        }
        for path in paths.all() {
            zoo_fs::ensure_inside(&paths.dir, &path).map_err(escapes)?;
        }
        Ok(())
    }

    /// In the zoo dir, a model's file or archive folder must not be a
    /// source's top folder: deleting the model would delete the source.
    fn check_not_a_source_folder(
        &self,
        model: &ZooModel,
        paths: &ModelPaths,
    ) -> Result<(), RegistryError> {
        let index = Index::read(self.root())?;
        for path in [Some(&paths.file), paths.archive_folder.as_ref()]
            .into_iter()
            .flatten()
        {
            let name = path.file_name().map(|name| name.to_string_lossy());
            let owner = index.sources.iter().find(|source| {
                source
                    .manifests
                    .iter()
                    .any(|manifest| manifest.dir.split('/').next() == name.as_deref())
            });
            if let Some(owner) = owner {
                return Err(RegistryError::CollidesWithSource {
                    model: model.name(),
                    path: path.clone(),
                    source_url: owner.url.clone(),
                });
            }
        }
        Ok(())
    }

    /// The downloaded model's path, if it is downloaded; an error when what
    /// is there leaves the model's folder.
    pub(crate) fn downloaded(
        &self,
        model: &ZooModel,
        paths: &ModelPaths,
    ) -> Result<Option<PathBuf>, RegistryError> {
        let evidence = paths.evidence();
        let present = if paths.archive_folder.is_some() {
            evidence.is_dir()
        } else {
            evidence.exists()
        };
        if !present {
            return Ok(None);
        }
        self.check_paths(model, paths, "use the downloaded files")?;
        Ok(Some(evidence.to_owned()))
    }

    pub(crate) fn model_lock(&self, paths: &ModelPaths) -> Result<LockedFile, RegistryError> {
        let relative = paths.file.strip_prefix(self.root()).unwrap_or(&paths.file);
        let mut key: String = relative
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
        // A lock file's name must fit in one name; long keys keep a prefix
        // and a hash of the whole.
        if key.len() > 200 {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut hasher);
            let cut = (0..=150)
                .rev()
                .find(|end| key.is_char_boundary(*end))
                .unwrap_or(0);
            key = format!("{}-{:016x}", &key[..cut], hasher.finish());
        }
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
        let downloaded = self.fetch(&model, overwrite, progress)?;
        self.fetch_clip_tokenizer(&model, &downloaded.path, progress)?;
        Ok(downloaded)
    }

    /// FiftyOne's `TorchCLIPModelConfig.download_tokenizer_if_necessary`:
    /// a `TorchCLIPModel` config's `tokenizer_base_url` is downloaded as
    /// `tokenizer_base_filename` (one plain file name) beside the model's
    /// file (for a built-in, the zoo dir, where FiftyOne keeps it), unless
    /// it is there already.
    fn fetch_clip_tokenizer(
        &self,
        model: &ZooModel,
        model_path: &std::path::Path,
        progress: &dyn Progress,
    ) -> Result<(), RegistryError> {
        let Some(deployment) = &model.model.default_deployment_config_dict else {
            return Ok(());
        };
        let is_clip = deployment
            .kind
            .as_deref()
            .is_some_and(|kind| kind.rsplit('.').next() == Some("TorchCLIPModel"));
        let text = |key: &str| deployment.config.get(key).and_then(Value::as_str);
        let (Some(name), Some(url)) = (text("tokenizer_base_filename"), text("tokenizer_base_url"))
        else {
            return Ok(());
        };
        if !is_clip {
            return Ok(());
        }
        let file = FileName::new(name).map_err(|problem| RegistryError::UnsafeModel {
            model: model.name(),
            field: Box::new(UnsafeField {
                field: "default_deployment_config_dict.config.tokenizer_base_filename",
                built_as: None,
                value: name.to_owned(),
                problem,
            }),
        })?;
        let Some(dir) = model_path.parent() else {
            return Ok(());
        };
        let path = dir.join(file.as_str());
        if path.is_file() {
            return Ok(());
        }
        // Under the model's lock, as the model itself: processes asking at
        // once fetch it once; then the containment check right before the
        // write (the folder is the model's, re-checked by `check_paths`).
        let paths = self.model_paths(model)?;
        let _lock = self.model_lock(&paths)?;
        if path.is_file() {
            return Ok(());
        }
        self.check_paths(model, &paths, "download the tokenizer")?;
        zoo_fs::ensure_inside(&paths.dir, &path).map_err(|source| RegistryError::Escapes {
            action: "download the tokenizer".to_owned(),
            model: model.name(),
            source: Box::new(source),
        })?;
        if self.config().offline {
            return Err(RegistryError::Offline {
                what: format!("downloading the tokenizer of model `{}`", model.name()),
            });
        }
        let http = zoo_sources::HttpClient::new();
        let url = self.mirrored(url);
        fetch_file(&http, &url, &path, &self.config().transfer, progress)?;
        Ok(())
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

    /// Downloads `model` (see [`Registry::download_model`]). With
    /// `overwrite`, the new copy is fetched into staging and replaces the
    /// old one only once complete: a failed or offline overwrite leaves the
    /// old model as it was.
    fn fetch(
        &self,
        model: &ZooModel,
        overwrite: bool,
        progress: &dyn Progress,
    ) -> Result<Downloaded, RegistryError> {
        let name = model.name();
        self.check_license(model)?;
        let paths = self.model_paths(model)?;
        if !overwrite && let Some(path) = self.downloaded(model, &paths)? {
            return Ok(Downloaded {
                model: model.clone(),
                path,
                fetched: false,
            });
        }
        // An entry of FiftyOne's class with nothing to download (no manager,
        // no Hugging Face repo, no source hook: Ultralytics, RF-DETR,
        // PaddleOCR ... fetch their own weights when loaded, as in
        // FiftyOne's `load_zoo_model`): nothing is fetched, and the path is
        // where FiftyOne would look.
        if !matches!(model.origin, Origin::Source { .. })
            && model.model.default_deployment_config_dict.is_some()
            && manager_plan(model, &self.config().transfer)?.is_none()
            && self.hub_download(model, &paths).is_none()
        {
            return Ok(Downloaded {
                model: model.clone(),
                path: paths.file,
                fetched: false,
            });
        }
        self.clean_up_if_idle();
        let _lock = self.model_lock(&paths)?;
        if !overwrite && let Some(path) = self.downloaded(model, &paths)? {
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
        self.check_paths(model, &paths, "download the model")?;
        let plan = manager_plan(model, &self.config().transfer)?;
        if overwrite {
            let staging = self.staging("overwrite-")?;
            let files = model_files(model)?;
            let fresh = ModelPaths::new(staging.path().to_path_buf(), &files);
            self.produce(model, &fresh, plan.as_ref(), progress)?;
            self.replace_files(model, &paths, &fresh)?;
        } else {
            self.produce(model, &paths, plan.as_ref(), progress)?;
        }
        let path = self
            .downloaded(model, &paths)?
            .ok_or_else(|| RegistryError::Hook {
                hook: "download".to_owned(),
                model: name.clone(),
                message: format!("nothing was created at `{}`", paths.file.display()),
                stderr: String::new(),
            })?;
        Ok(Downloaded {
            model: model.clone(),
            path,
            fetched: true,
        })
    }

    /// Refuses `model` when a licence policy is set and one of its licenses
    /// is outside it.
    pub fn check_license(&self, model: &ZooModel) -> Result<(), RegistryError> {
        let Some(allowed) = &self.config().allowed_licenses else {
            return Ok(());
        };
        let outside = model.model.licenses_outside(allowed);
        if outside.is_empty() {
            return Ok(());
        }
        Err(RegistryError::LicenseNotAllowed {
            model: model.name(),
            outside: outside
                .iter()
                .map(|license| format!("`{license}`"))
                .collect::<Vec<_>>()
                .join(" and "),
            allowed: allowed.join(","),
        })
    }

    /// Downloads the model's files to `paths`, by its manager or its hook.
    fn produce(
        &self,
        model: &ZooModel,
        paths: &ModelPaths,
        plan: Option<&ManagerPlan>,
        progress: &dyn Progress,
    ) -> Result<(), RegistryError> {
        match plan {
            Some(plan) => self.download_with_manager(model, paths, plan, progress),
            None => match self.hub_download(model, paths) {
                Some(hub) => self.download_from_hub(model, paths, &hub, progress),
                None => self.download_with_hook(model, paths),
            },
        }
    }

    /// Moves the freshly downloaded files in `fresh` onto the model's paths,
    /// after moving what the old download left (file, partial download,
    /// extracted folder) out of the way.
    fn replace_files(
        &self,
        model: &ZooModel,
        paths: &ModelPaths,
        fresh: &ModelPaths,
    ) -> Result<(), RegistryError> {
        self.check_paths(model, paths, "replace the model's files")?;
        let trash = self.staging("trash-")?;
        for (position, old) in paths.all().iter().enumerate() {
            if fs_err::symlink_metadata(old).is_ok() {
                fs_err::rename(old, trash.path().join(position.to_string()))?;
            }
        }
        let mut moves = vec![(&fresh.file, &paths.file)];
        if let (Some(from), Some(to)) = (&fresh.archive_folder, &paths.archive_folder) {
            moves.push((from, to));
        }
        for (from, to) in moves {
            if fs_err::symlink_metadata(from).is_ok() {
                fs_err::rename(from, to)?;
            }
        }
        zoo_fs::sync_dir(&paths.dir)?;
        Ok(())
    }

    fn download_with_manager(
        &self,
        model: &ZooModel,
        paths: &ModelPaths,
        plan: &ManagerPlan,
        progress: &dyn Progress,
    ) -> Result<(), RegistryError> {
        let path = &paths.file;
        let http = zoo_sources::HttpClient::new();
        // An archive already here was downloaded before its extraction was
        // interrupted: extract it again rather than fetching it again.
        if !(plan.extract_archive && path.is_file()) {
            self.check_paths(model, paths, "download the model file")?;
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
        if let (true, Some(folder)) = (plan.extract_archive, &paths.archive_folder) {
            let staging = self.staging("extract-")?;
            let unpacked = staging.path().join("unpacked");
            if let Err(source) = unpack(path, &unpacked, &self.config().extract_limits) {
                // A broken archive kept here would be extracted again, and
                // fail again, on every later attempt: remove it.
                self.check_paths(model, paths, "remove the broken archive")?;
                remove_path(path)?;
                return Err(RegistryError::Extract {
                    model: model.name(),
                    archive: path.clone(),
                    source: Box::new(source),
                });
            }
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
            self.check_paths(model, paths, "install the extracted archive")?;
            zoo_fs::persist_dir(&inner, folder)?;
            if plan.delete_archive {
                fs_err::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// Runs the source's download hook on a path in a staging folder, then
    /// moves what it made onto the model's path.
    fn download_with_hook(
        &self,
        model: &ZooModel,
        paths: &ModelPaths,
    ) -> Result<(), RegistryError> {
        let source_dir = self.trusted_source_dir(model)?;
        let Some(hook) = hooks::find(&source_dir, HookKind::Download) else {
            return Err(RegistryError::NoMethod {
                model: model.name(),
                hook: "download_model".to_owned(),
                action: "downloaded".to_owned(),
            });
        };
        let staging = self.staging("hook-")?;
        let output = staging
            .path()
            .join(paths.file.file_name().unwrap_or_default());
        self.check_paths(model, paths, "run the download hook")?;
        hooks::run(
            &hook,
            HookKind::Download,
            &self.config().python,
            self.config().hook_timeout,
            &model.name(),
            &output,
            &Value::Null,
        )?;
        if fs_err::symlink_metadata(&output).is_ok() {
            self.check_paths(model, paths, "install what the download hook made")?;
            fs_err::rename(&output, &paths.file)?;
            zoo_fs::sync_dir(&paths.dir)?;
        }
        Ok(())
    }

    /// The folder of the model's source, if the source is trusted to run code.
    pub(crate) fn trusted_source_dir(&self, model: &ZooModel) -> Result<PathBuf, RegistryError> {
        let Origin::Source { url, .. } = &model.origin else {
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
        let paths = self.model_paths(model)?;
        self.check_paths(model, &paths, "run a hook")?;
        Ok(paths.dir)
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
        let paths = self.model_paths(&model)?;
        self.downloaded(&model, &paths)?
            .ok_or_else(|| RegistryError::NotDownloaded { name: model.name() })
    }

    /// Deletes a downloaded model's files (file, extracted folder, archive,
    /// partial download) and nothing else; returns the model's path.
    pub fn delete_model(&self, name: &str) -> Result<PathBuf, RegistryError> {
        let model = self.model(name)?;
        let paths = self.model_paths(&model)?;
        // Checked before taking the lock (a refused model leaves no trace)
        // and again right before deleting.
        self.check_paths(&model, &paths, "delete the model's files")?;
        let _lock = self.model_lock(&paths)?;
        let present = paths
            .all()
            .iter()
            .any(|path| fs_err::symlink_metadata(path).is_ok());
        if !present {
            return Err(RegistryError::NotDownloaded { name: model.name() });
        }
        self.check_paths(&model, &paths, "delete the model's files")?;
        for path in paths.all() {
            remove_path(&path)?;
        }
        Ok(paths.file)
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
                let paths = self.model_paths(model)?;
                self.check_paths(model, &paths, "run the load hook")?;
                let stdout = hooks::run(
                    &hook,
                    HookKind::Load,
                    &self.config().python,
                    self.config().hook_timeout,
                    &model.name(),
                    &paths.file,
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
        // A downloaded Hugging Face repo is handed to the model as its local
        // folder, as FiftyOne's classes take `name_or_path` (a repo id or a
        // folder); the recorded commit is what was fetched.
        if let Some(snapshot) = self.hub_snapshot(model)
            && let Some(path) = self.downloaded_path(model)
        {
            config.config.insert(
                "name_or_path".to_owned(),
                Value::String(path.to_string_lossy().into_owned()),
            );
            config
                .config
                .insert("revision".to_owned(), Value::String(snapshot.commit));
        }
        for (key, value) in overrides {
            config.config.insert(key.clone(), value.clone());
        }
        Ok(config)
    }

    pub(crate) fn mirrored(&self, url: &str) -> String {
        for (prefix, replacement) in &self.config().mirrors {
            if let Some(rest) = url.strip_prefix(prefix.as_str()) {
                tracing::debug!(%url, mirror = %replacement, "using mirror");
                return format!("{replacement}{rest}");
            }
        }
        url.to_owned()
    }
}

/// The model's files from its checked names; a built-in model with named
/// weights downloads torchvision's file under torchvision's name instead of
/// `base_filename` (see `named_weights.rs`).
fn model_files(model: &ZooModel) -> Result<ModelFiles, RegistryError> {
    let mut files = model
        .model
        .files()
        .map_err(|field| RegistryError::UnsafeModel {
            model: model.name(),
            field: Box::new(field),
        })?;
    if let Some(named) = named_weights(model)? {
        files.file = named.filename;
    }
    Ok(files)
}

fn manager_plan(
    model: &ZooModel,
    transfer: &TransferOptions,
) -> Result<Option<ManagerPlan>, RegistryError> {
    if let Some(named) = named_weights(model)? {
        tracing::debug!(
            model = %model.name(),
            weights = %named.resolved,
            url = %named.url,
            "running torchvision's named weights, not the manifest's url"
        );
        return Ok(Some(ManagerPlan {
            url: Some(named.url),
            google_drive_id: None,
            extract_archive: false,
            delete_archive: false,
            options: TransferOptions {
                sha256_prefix: named.sha256_prefix,
                ..transfer.clone()
            },
        }));
    }
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

/// Unpacks the archive at `path` (its kind from its name, else its first
/// bytes) into `dest`.
fn unpack(
    path: &Path,
    dest: &Path,
    limits: &zoo_sources::ExtractLimits,
) -> Result<(), zoo_sources::SourceError> {
    let kind = match ArchiveKind::from_name(&path.to_string_lossy()) {
        Some(kind) => kind,
        None => {
            ArchiveKind::sniff(path)?.ok_or_else(|| zoo_sources::SourceError::UnknownArchive {
                origin: path.display().to_string(),
            })?
        }
    };
    extract(path, kind, dest, limits)?;
    Ok(())
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
