//! Registering, listing and deleting sources; the merged model list.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use zoo_fs::{LockMode, LockedFile};
use zoo_manifest::{Manifest, Origin, Zoo, ZooModel};
use zoo_sources::{ExtractLimits, GitHub, Progress, SourceId, TransferOptions, fetch_source};

use crate::error::RegistryError;
use crate::index::{Index, InstalledManifest, RegisteredSource, overlaps};

const MANIFEST_FILE: &str = "manifest.json";
const LOCK_FILE: &str = ".registry.lock";
const STAGING_DIR: &str = ".tmp";

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
    /// The Python interpreter for `__init__.py` hooks.
    pub python: String,
    /// Retries and backoff for every download (sources and models); the
    /// digest and size come from each model's manager.
    pub transfer: TransferOptions,
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
            python: "python3".to_owned(),
            transfer: TransferOptions::default(),
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

    /// The registered source `identifier` names: by normalised URL, by the
    /// identifier as registered, or by an installed manifest's name.
    pub fn find_source(&self, identifier: &str) -> Result<RegisteredSource, RegistryError> {
        let index = Index::read(self.root())?;
        find_in(&index, identifier)
            .cloned()
            .ok_or_else(|| not_registered(&index, identifier))
    }

    fn lock(&self) -> Result<LockedFile, RegistryError> {
        fs_err::create_dir_all(self.root())?;
        Ok(LockedFile::acquire(
            &self.root().join(LOCK_FILE),
            LockMode::Exclusive,
        )?)
    }

    pub(crate) fn staging(&self, prefix: &str) -> Result<tempfile::TempDir, RegistryError> {
        let dir = self.root().join(STAGING_DIR);
        fs_err::create_dir_all(&dir)?;
        Ok(tempfile::Builder::new().prefix(prefix).tempdir_in(&dir)?)
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
            let components =
                manifest
                    .install_components()
                    .map_err(|reason| RegistryError::UnsafeName {
                        source_url: url.clone(),
                        manifest: relative.clone(),
                        reason,
                    })?;
            let dir = components.join("/");
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
            let target = self.root().join(&installed.dir);
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
        let mut doomed: Vec<String> = Vec::new();
        if let Some(old) = index.by_url(&url) {
            doomed.extend(old.manifests.iter().map(|manifest| manifest.dir.clone()));
        }
        for other in &replaced {
            if let Some(old) = index.by_url(other) {
                doomed.extend(old.manifests.iter().map(|manifest| manifest.dir.clone()));
            }
        }
        doomed.extend(installs.iter().map(|(_, installed)| installed.dir.clone()));
        for (position, dir) in doomed.iter().enumerate() {
            let path = self.root().join(dir);
            if path.exists() {
                fs_err::rename(&path, trash.path().join(position.to_string()))?;
                self.prune_empty_parents(&path);
            }
        }
        index
            .sources
            .retain(|entry| entry.url != url && !replaced.contains(&entry.url));

        for (folder, installed) in &installs {
            zoo_fs::persist_dir(folder, &self.root().join(&installed.dir))?;
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

    /// Deletes a registered source: its folders (downloaded models included)
    /// and its index entry. Returns what was deleted.
    pub fn delete_source(&self, identifier: &str) -> Result<RegisteredSource, RegistryError> {
        let _lock = self.lock()?;
        let mut index = Index::read(self.root())?;
        let Some(source) = find_in(&index, identifier).cloned() else {
            return Err(not_registered(&index, identifier));
        };
        index.sources.retain(|entry| entry.url != source.url);
        // The index goes first: a crash afterwards leaves only unreferenced
        // folders, never an entry pointing at half a source.
        index.write(self.root())?;
        let trash = self.staging("trash-")?;
        for (position, manifest) in source.manifests.iter().enumerate() {
            let path = self.root().join(&manifest.dir);
            if path.exists() {
                fs_err::rename(&path, trash.path().join(position.to_string()))?;
                self.prune_empty_parents(&path);
            }
        }
        Ok(source)
    }

    /// Marks a registered source as trusted: its hooks may run.
    pub fn trust_source(
        &self,
        identifier: &str,
        trusted: bool,
    ) -> Result<RegisteredSource, RegistryError> {
        let _lock = self.lock()?;
        let mut index = Index::read(self.root())?;
        let url = find_in(&index, identifier).map(|source| source.url.clone());
        let Some(entry) =
            url.and_then(|url| index.sources.iter_mut().find(|source| source.url == url))
        else {
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
                let path = self.root().join(&installed.dir).join(MANIFEST_FILE);
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

fn find_in<'a>(index: &'a Index, identifier: &str) -> Option<&'a RegisteredSource> {
    let identifier = identifier.trim();
    let normalized = identifier
        .parse::<SourceId>()
        .ok()
        .map(|source| source.normalized());
    index.sources.iter().find(|source| {
        Some(&source.url) == normalized.as_ref()
            || source.identifier == identifier
            || source
                .manifests
                .iter()
                .any(|manifest| manifest.name == identifier)
    })
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
