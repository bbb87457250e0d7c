//! Registering, listing and deleting sources; the merged model list.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zoo_fs::{LockMode, LockedFile, StagingDir};
use zoo_manifest::{Manifest, Origin, RelativePath, Zoo, ZooModel};
use zoo_sources::{ExtractLimits, GitHub, Progress, SourceId, TransferOptions, fetch_source};

use crate::error::RegistryError;
use crate::index::{Index, InstalledManifest, RegisteredSource, overlaps};

const MANIFEST_FILE: &str = "manifest.json";
const LOCK_FILE: &str = ".registry.lock";
const STAGING_DIR: &str = ".tmp";

/// Staging folders without an owner lock (made by an older zoo) are removed
/// once this old.
const LEGACY_STAGING_GRACE: Duration = Duration::from_secs(3600);

/// How long a hook may run when the config does not say.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(3600);

/// Everything the registry needs to know; nothing is read from the
/// environment.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The zoo dir.
    pub root: PathBuf,
    /// GitHub's API base URL.
    pub github_api_url: String,
    /// The token for GitHub's API (`GITHUB_TOKEN`).
    pub github_token: Option<String>,
    /// Never touch the network.
    pub offline: bool,
    /// The built-in manifest, merged first.
    pub builtin: Option<Manifest>,
    /// Extra manifest files, merged after the built-in one.
    pub extra_manifests: Vec<PathBuf>,
    /// Caps for unpacking sources and model archives.
    pub extract_limits: ExtractLimits,
    /// Download URL prefixes to replace: `(prefix, replacement)`, first match
    /// wins (a mirror of download.pytorch.org, or a loopback server in tests).
    pub mirrors: Vec<(String, String)>,
    /// Google Drive's base URL.
    pub google_drive_url: String,
    /// The Hugging Face Hub's endpoint (`HF_ENDPOINT`, default
    /// [`zoo_sources::DEFAULT_HF_ENDPOINT`]), for models whose weights are a
    /// Hub repo.
    pub hf_endpoint: String,
    /// The Hugging Face token (`HF_TOKEN`), sent to the Hub's host only.
    pub hf_token: Option<String>,
    /// The Python interpreter for `__init__.py` hooks.
    pub python: String,
    /// Retries and backoff for every download (sources and models); the
    /// digest and size come from each model's manager.
    pub transfer: TransferOptions,
    /// How long a hook may run before it is killed (`ZOO_HOOK_TIMEOUT`).
    pub hook_timeout: Duration,
    /// A licence policy (`ZOO_ALLOWED_LICENSES`): when set, a model is
    /// downloaded or loaded only if each of its manifest's licenses is one
    /// of these (SPDX ids, matched as [`zoo_manifest::license_key`] does).
    pub allowed_licenses: Option<Vec<String>>,
}

impl RegistryConfig {
    /// A config for the zoo dir `root` with GitHub's public API, online, and
    /// no built-in or extra manifests.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            github_api_url: zoo_sources::DEFAULT_API_URL.to_owned(),
            github_token: None,
            offline: false,
            builtin: None,
            extra_manifests: Vec::new(),
            extract_limits: ExtractLimits::default(),
            mirrors: Vec::new(),
            google_drive_url: "https://drive.google.com".to_owned(),
            hf_endpoint: zoo_sources::DEFAULT_HF_ENDPOINT.to_owned(),
            hf_token: None,
            python: "python3".to_owned(),
            transfer: TransferOptions::default(),
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            allowed_licenses: None,
        }
    }
}

/// What [`Registry::register_source`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The source was fetched and installed.
    Registered {
        /// The new index entry.
        source: RegisteredSource,
        /// Manifests found but skipped (no `name`), with why.
        skipped: Vec<String>,
    },
    /// The source was registered already; nothing changed.
    AlreadyRegistered(RegisteredSource),
}

/// The models on offer, merged, and what went wrong reading them.
#[derive(Debug, Clone)]
pub struct ZooView {
    /// Built-in, extra and source manifests merged in that order.
    pub zoo: Zoo,
    /// Manifests that could not be read (skipped, never fatal).
    pub problems: Vec<String>,
}

/// The registry in a zoo dir.
#[derive(Debug, Clone)]
pub struct Registry {
    config: RegistryConfig,
    github: GitHub,
}

impl Registry {
    /// A registry over `config.root` (created on first write).
    pub fn new(config: RegistryConfig) -> Self {
        let github = GitHub::new(&config.github_api_url, config.github_token.clone());
        Self { config, github }
    }

    /// The zoo dir.
    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// The config this registry was made with.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The registered sources, in registration order.
    pub fn sources(&self) -> Result<Vec<RegisteredSource>, RegistryError> {
        Ok(Index::read(self.root())?.sources)
    }

    /// The one registered source `identifier` names: by normalised URL or
    /// the identifier as registered, else by an installed manifest's name
    /// when exactly one source has it and the text does not also identify
    /// another (unregistered) source; several candidates are an
    /// [`RegistryError::AmbiguousSource`] listing them.
    pub fn find_source(&self, identifier: &str) -> Result<RegisteredSource, RegistryError> {
        let index = Index::read(self.root())?;
        resolve_source(&index, identifier).cloned()
    }

    /// Takes the registry lock, then removes what dead processes left in
    /// `.tmp/` (and stray atomic-write temporaries beside the index).
    pub(crate) fn lock(&self) -> Result<LockedFile, RegistryError> {
        fs_err::create_dir_all(self.root())?;
        let lock = LockedFile::acquire(&self.root().join(LOCK_FILE), LockMode::Exclusive)?;
        self.remove_stale();
        Ok(lock)
    }

    /// Takes the registry lock if nobody holds it, to clean up; never waits.
    pub(crate) fn clean_up_if_idle(&self) {
        if fs_err::create_dir_all(self.root()).is_err() {
            return;
        }
        if let Ok(_lock) = LockedFile::acquire_within(
            &self.root().join(LOCK_FILE),
            LockMode::Exclusive,
            Duration::ZERO,
        ) {
            self.remove_stale();
        }
    }

    /// Removes dead processes' staging folders (see [`StagingDir`]) and
    /// `.tmp-*` files in the zoo dir (the index's atomic writes, which only
    /// happen under the lock the caller holds). Failures are logged: cleaning
    /// up never fails an operation.
    fn remove_stale(&self) {
        let staging = self.root().join(STAGING_DIR);
        match zoo_fs::remove_stale_staging(&staging, LEGACY_STAGING_GRACE) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(
                    count = removed.len(),
                    "removed staging folders of dead zoo processes"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "cannot clean `{}`", staging.display()),
        }
        let Ok(entries) = fs_err::read_dir(self.root()) else {
            return;
        };
        for entry in entries.flatten() {
            let is_temporary = entry.file_name().to_string_lossy().starts_with(".tmp-")
                && entry.file_type().is_ok_and(|kind| kind.is_file());
            if is_temporary && let Err(err) = fs_err::remove_file(entry.path()) {
                tracing::warn!(%err, "cannot remove a stale temporary file");
            }
        }
    }

    /// A fresh staging folder in `.tmp/`, owned by this process until dropped.
    pub(crate) fn staging(&self, prefix: &str) -> Result<StagingDir, RegistryError> {
        Ok(StagingDir::new_in(&self.root().join(STAGING_DIR), prefix)?)
    }

    /// `<zoo dir>/<dir>` for a folder recorded in the index, checked: plain
    /// names only, and strictly inside the zoo dir once links are resolved.
    pub(crate) fn installed_dir(
        &self,
        source_url: &str,
        dir: &str,
    ) -> Result<PathBuf, RegistryError> {
        let relative = RelativePath::new(dir).map_err(|problem| RegistryError::UnsafeIndexDir {
            source_url: source_url.to_owned(),
            dir: dir.to_owned(),
            problem,
        })?;
        let path = relative.join_to(self.root());
        zoo_fs::ensure_inside(self.root(), &path).map_err(|source| RegistryError::Escapes {
            action: format!("change the folder `{dir}`"),
            model: source_url.to_owned(),
            source: Box::new(source),
        })?;
        Ok(path)
    }

    /// Fetches the source `identifier`, finds its manifests and installs
    /// each under the zoo dir by its `name`. Registering a registered source
    /// is a no-op unless `overwrite`; a name owned by another source is an
    /// error unless `overwrite`. On error the zoo dir is left as it was.
    pub fn register_source(
        &self,
        identifier: &str,
        overwrite: bool,
        trust: bool,
        progress: &dyn Progress,
    ) -> Result<RegisterOutcome, RegistryError> {
        let source: SourceId = identifier.parse()?;
        let url = source.normalized();
        let identifier = identifier.trim();
        if !overwrite && let Some(existing) = Index::read(self.root())?.by_url(&url) {
            return Ok(RegisterOutcome::AlreadyRegistered(existing.clone()));
        }
        if self.config.offline {
            return Err(RegistryError::Offline {
                what: format!("registering `{identifier}`"),
            });
        }

        let staging = self.staging("register-")?;
        let fetched = fetch_source(
            &source,
            &self.github,
            staging.path(),
            &self.config.extract_limits,
            &self.config.transfer,
            progress,
        )?;
        let (found, skipped) = discover(&fetched.root, &url)?;
        if found.is_empty() {
            return Err(RegistryError::NoManifest {
                source_url: url,
                skipped,
            });
        }
        let mut installs = Vec::new();
        for (folder, mut manifest, relative) in found {
            let dir = manifest
                .install_dir()
                .map_err(|field| RegistryError::UnsafeName {
                    source_url: url.clone(),
                    manifest: relative.clone(),
                    reason: field.to_string(),
                })?
                .to_string();
            if installs
                .iter()
                .any(|(_, installed): &(PathBuf, InstalledManifest)| overlaps(&installed.dir, &dir))
            {
                return Err(RegistryError::UnsafeName {
                    source_url: url.clone(),
                    manifest: relative,
                    reason: format!(
                        "another manifest of this source already installs into `{dir}`"
                    ),
                });
            }
            manifest.url = Some(identifier.to_owned());
            zoo_fs::write_atomic(
                &folder.join(MANIFEST_FILE),
                manifest.to_json_pretty().as_bytes(),
            )?;
            let name = manifest.name.clone().unwrap_or_default();
            installs.push((folder, InstalledManifest { name, dir }));
        }

        let _lock = self.lock()?;
        let mut index = Index::read(self.root())?;
        let mut replaced: Vec<String> = Vec::new();
        for (_, installed) in &installs {
            if let Some(owner) = index.owner_of_dir(&installed.dir)
                && owner.url != url
            {
                if !overwrite {
                    return Err(RegistryError::NameTaken {
                        name: installed.name.clone(),
                        owner: owner.url.clone(),
                    });
                }
                replaced.push(owner.url.clone());
            }
            let target = self.installed_dir(&url, &installed.dir)?;
            if target.exists() && index.owner_of_dir(&installed.dir).is_none() && !overwrite {
                return Err(RegistryError::NameTaken {
                    name: installed.name.clone(),
                    owner: format!("the unregistered folder `{}`", target.display()),
                });
            }
        }
        // Remove what is replaced: this source's old folders, sources whose
        // names are taken over (overwrite only), stray folders in the way.
        let trash = self.staging("trash-")?;
        let mut doomed: Vec<(String, String)> = Vec::new();
        for owner in std::iter::once(&url).chain(&replaced) {
            if let Some(old) = index.by_url(owner) {
                doomed.extend(
                    old.manifests
                        .iter()
                        .map(|manifest| (old.url.clone(), manifest.dir.clone())),
                );
            }
        }
        doomed.extend(
            installs
                .iter()
                .map(|(_, installed)| (url.clone(), installed.dir.clone())),
        );
        // Every folder is checked before anything moves.
        let doomed: Vec<PathBuf> = doomed
            .iter()
            .map(|(owner, dir)| self.installed_dir(owner, dir))
            .collect::<Result<_, _>>()?;
        for (position, path) in doomed.iter().enumerate() {
            if fs_err::symlink_metadata(path).is_ok() {
                fs_err::rename(path, trash.path().join(position.to_string()))?;
                self.prune_empty_parents(path);
            }
        }
        index
            .sources
            .retain(|entry| entry.url != url && !replaced.contains(&entry.url));

        for (folder, installed) in &installs {
            let target = self.installed_dir(&url, &installed.dir)?;
            zoo_fs::persist_dir(folder, &target)?;
        }
        let entry = RegisteredSource {
            identifier: identifier.to_owned(),
            url,
            commit: fetched.commit,
            trusted: trust,
            registered_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs()),
            manifests: installs
                .into_iter()
                .map(|(_, installed)| installed)
                .collect(),
        };
        index.sources.push(entry.clone());
        index.write(self.root())?;
        Ok(RegisterOutcome::Registered {
            source: entry,
            skipped,
        })
    }

    /// Deletes the one registered source `identifier` names (see
    /// [`Registry::find_source`]): its folders (downloaded models included)
    /// and its index entry. Returns what was deleted.
    pub fn delete_source(&self, identifier: &str) -> Result<RegisteredSource, RegistryError> {
        let _lock = self.lock()?;
        let mut index = Index::read(self.root())?;
        let source = resolve_source(&index, identifier)?.clone();
        // Every folder is checked before anything changes.
        let folders: Vec<PathBuf> = source
            .manifests
            .iter()
            .map(|manifest| self.installed_dir(&source.url, &manifest.dir))
            .collect::<Result<_, _>>()?;
        index.sources.retain(|entry| entry.url != source.url);
        // The index goes first: a crash afterwards leaves only unreferenced
        // folders, never an entry pointing at half a source.
        index.write(self.root())?;
        let trash = self.staging("trash-")?;
        for (position, path) in folders.iter().enumerate() {
            if fs_err::symlink_metadata(path).is_ok() {
                fs_err::rename(path, trash.path().join(position.to_string()))?;
                self.prune_empty_parents(path);
            }
        }
        Ok(source)
    }

    /// Marks the one registered source `identifier` names (see
    /// [`Registry::find_source`]) as trusted or not: a trusted source's
    /// hooks may run. Returns the updated entry, whose `identifier` says
    /// which source it was.
    pub fn trust_source(
        &self,
        identifier: &str,
        trusted: bool,
    ) -> Result<RegisteredSource, RegistryError> {
        let _lock = self.lock()?;
        let mut index = Index::read(self.root())?;
        let url = resolve_source(&index, identifier)?.url.clone();
        let Some(entry) = index.sources.iter_mut().find(|source| source.url == url) else {
            return Err(not_registered(&index, identifier));
        };
        entry.trusted = trusted;
        let updated = entry.clone();
        index.write(self.root())?;
        Ok(updated)
    }

    /// Every model on offer: the built-in manifest, the extra manifests, then
    /// each registered source's, merged with FiftyOne's conflict rules. An
    /// unreadable manifest is reported in [`ZooView::problems`] and skipped.
    pub fn zoo(&self) -> Result<ZooView, RegistryError> {
        let mut zoo = Zoo::new();
        let mut problems = Vec::new();
        if let Some(builtin) = &self.config.builtin {
            zoo.merge(Origin::Builtin, builtin.clone());
        }
        for path in &self.config.extra_manifests {
            match Manifest::read(path) {
                Ok(manifest) => zoo.merge(Origin::Custom(path.clone()), manifest),
                Err(err) => problems.push(format!("skipping manifest: {err}")),
            }
        }
        for source in Index::read(self.root())?.sources {
            for installed in &source.manifests {
                let path = match RelativePath::new(&installed.dir) {
                    Ok(dir) => dir.join_to(self.root()).join(MANIFEST_FILE),
                    Err(problem) => {
                        problems.push(format!(
                            "skipping manifest of `{}`: {}",
                            source.url,
                            RegistryError::UnsafeIndexDir {
                                source_url: source.url.clone(),
                                dir: installed.dir.clone(),
                                problem,
                            }
                        ));
                        continue;
                    }
                };
                match Manifest::read(&path) {
                    Ok(manifest) => zoo.merge(
                        Origin::Source {
                            url: source.url.clone(),
                            dir: installed.dir.clone(),
                        },
                        manifest,
                    ),
                    Err(err) => {
                        problems.push(format!("skipping manifest of `{}`: {err}", source.url))
                    }
                }
            }
        }
        for problem in &problems {
            tracing::warn!("{problem}");
        }
        Ok(ZooView { zoo, problems })
    }

    /// The model called `name` (`base_name` for the latest version, or
    /// `name@version`).
    pub fn model(&self, name: &str) -> Result<ZooModel, RegistryError> {
        let view = self.zoo()?;
        view.zoo
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::ModelNotFound {
                name: name.to_owned(),
                suggestions: view.zoo.suggestions(name),
            })
    }

    /// Removes `path`'s parents while they are empty, stopping at the root.
    fn prune_empty_parents(&self, path: &Path) {
        let mut current = path.parent();
        while let Some(dir) = current {
            if dir == self.root() || !dir.starts_with(self.root()) {
                break;
            }
            // Fails (and stops) when the folder is not empty.
            if fs_err::remove_dir(dir).is_err() {
                break;
            }
            current = dir.parent();
        }
    }
}

fn not_registered(index: &Index, identifier: &str) -> RegistryError {
    RegistryError::NotRegistered {
        identifier: identifier.to_owned(),
        registered: index
            .sources
            .iter()
            .map(|source| source.url.clone())
            .collect(),
    }
}

/// The one source `identifier` names. Identity first: the normalised URL
/// or the identifier as registered. A manifest `name` selects a source only
/// when no other source claims it: exactly one source has a manifest of
/// that name, and the text, read as an identifier, does not name a
/// different source (an archive source calling itself `acme/models` must
/// not answer to `trust-source acme/models`, which means the GitHub repo).
fn resolve_source<'a>(
    index: &'a Index,
    identifier: &str,
) -> Result<&'a RegisteredSource, RegistryError> {
    let identifier = identifier.trim();
    let normalized = identifier
        .parse::<SourceId>()
        .ok()
        .map(|source| source.normalized());
    let ambiguous = |candidates: Vec<String>| RegistryError::AmbiguousSource {
        identifier: identifier.to_owned(),
        candidates,
    };
    let by_identity: Vec<&RegisteredSource> = index
        .sources
        .iter()
        .filter(|source| {
            Some(&source.url) == normalized.as_ref() || source.identifier == identifier
        })
        .collect();
    match by_identity.as_slice() {
        [one] => return Ok(one),
        [] => {}
        many => {
            return Err(ambiguous(
                many.iter()
                    .map(|source| source.identifier.clone())
                    .collect(),
            ));
        }
    }
    let by_name: Vec<&RegisteredSource> = index
        .sources
        .iter()
        .filter(|source| {
            source
                .manifests
                .iter()
                .any(|manifest| manifest.name == identifier)
        })
        .collect();
    match by_name.as_slice() {
        [] => Err(not_registered(index, identifier)),
        [one] => match normalized {
            Some(url) if url != one.url => Err(ambiguous(vec![
                one.identifier.clone(),
                format!("{url} (not registered)"),
            ])),
            _ => Ok(one),
        },
        many => Err(ambiguous(
            many.iter()
                .map(|source| source.identifier.clone())
                .collect(),
        )),
    }
}

/// A manifest found in a fetched tree: its folder, the parsed manifest, and
/// its path relative to the tree (for messages).
type Found = (PathBuf, Manifest, String);

/// Finds every `manifest.json` under `root`: hidden folders are skipped, and
/// the search stops descending at a folder that holds one. Manifests without
/// a `name` are skipped (returned as messages); unparsable ones are errors.
fn discover(root: &Path, url: &str) -> Result<(Vec<Found>, Vec<String>), RegistryError> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let manifest_path = dir.join(MANIFEST_FILE);
        if manifest_path.is_file() {
            let relative = manifest_path.strip_prefix(root).map_or_else(
                |_| MANIFEST_FILE.to_owned(),
                |path| path.display().to_string(),
            );
            let label = format!("{url}/{relative}");
            let manifest = Manifest::from_slice(&fs_err::read(&manifest_path)?, &label)?;
            if manifest.name.is_none() {
                let message = format!("`{relative}` has no `name`");
                tracing::warn!(source = url, "skipping manifest: {message}");
                skipped.push(message);
            } else {
                found.push((dir, manifest, relative));
            }
            continue;
        }
        let mut children: Vec<PathBuf> = Vec::new();
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.file_type()?.is_dir() {
                children.push(entry.path());
            }
        }
        // Sorted, and reversed for the stack: discovery order is stable.
        children.sort();
        stack.extend(children.into_iter().rev());
    }
    Ok((found, skipped))
}
