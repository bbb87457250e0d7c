//! Installing what a bundle (`zoo bundle install`) carries: registered
//! sources and downloaded models, from files already unpacked into the zoo
//! dir's staging folder and checked against the bundle's lock by the caller.
//! Each is moved into place under the zoo dir's locks, never over something
//! already there.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use zoo_fs::StagingDir;
use zoo_manifest::ZooModel;
use zoo_sources::SourceId;

use crate::error::RegistryError;
use crate::index::{Index, RegisteredSource, overlaps};
use crate::registry::Registry;

impl Registry {
    /// A fresh staging folder under the zoo dir (so that what is staged
    /// there moves into place by renaming), removed when dropped.
    pub fn staging_dir(&self, prefix: &str) -> Result<StagingDir, RegistryError> {
        self.staging(prefix)
    }

    /// Registers the source `record` (from a bundle's index) with the
    /// folders staged under `staged` (laid out as in the zoo dir), not
    /// trusted: its hooks run only after `zoo models trust-source`. Returns
    /// `false`, moving nothing, when a source of that URL is registered
    /// already; a folder owned by another source, or an unregistered one,
    /// in the way is an error naming it.
    pub fn install_bundled_source(
        &self,
        record: &RegisteredSource,
        staged: &Path,
    ) -> Result<bool, RegistryError> {
        let source: SourceId = record.url.parse()?;
        if source.normalized() != record.url {
            return Err(RegistryError::UnsafeName {
                source_url: record.url.clone(),
                manifest: "(bundle index)".to_owned(),
                reason: format!("`{}` is not a normalised source URL", record.url),
            });
        }
        for (position, manifest) in record.manifests.iter().enumerate() {
            // Checked names only: each folder is a plain path in the zoo dir.
            self.installed_dir(&record.url, &manifest.dir)?;
            if record.manifests[..position]
                .iter()
                .any(|other| overlaps(&other.dir, &manifest.dir))
            {
                return Err(RegistryError::UnsafeName {
                    source_url: record.url.clone(),
                    manifest: manifest.dir.clone(),
                    reason: "two of its manifests install into the same folder".to_owned(),
                });
            }
        }
        let _lock = self.lock()?;
        let mut index = Index::read(self.root())?;
        if index.by_url(&record.url).is_some() {
            return Ok(false);
        }
        for manifest in &record.manifests {
            if let Some(owner) = index.owner_of_dir(&manifest.dir) {
                return Err(RegistryError::NameTaken {
                    name: manifest.name.clone(),
                    owner: owner.url.clone(),
                });
            }
            let target = self.installed_dir(&record.url, &manifest.dir)?;
            if fs_err::symlink_metadata(&target).is_ok() {
                return Err(RegistryError::NameTaken {
                    name: manifest.name.clone(),
                    owner: format!("the unregistered folder `{}`", target.display()),
                });
            }
            let from = staged.join(&manifest.dir);
            if !fs_err::symlink_metadata(&from).is_ok_and(|metadata| metadata.is_dir()) {
                return Err(RegistryError::Io(std::io::Error::other(format!(
                    "the bundle has no folder `{}` for source `{}`",
                    manifest.dir, record.url
                ))));
            }
        }
        for manifest in &record.manifests {
            let target = self.installed_dir(&record.url, &manifest.dir)?;
            if let Some(parent) = target.parent() {
                fs_err::create_dir_all(parent)?;
            }
            zoo_fs::persist_dir(&staged.join(&manifest.dir), &target)?;
        }
        index.sources.push(RegisteredSource {
            identifier: record.identifier.clone(),
            url: record.url.clone(),
            commit: record.commit.clone(),
            trusted: false,
            registered_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs()),
            manifests: record.manifests.clone(),
        });
        index.write(self.root())?;
        Ok(true)
    }

    /// Where `model`'s downloaded files are (its file, or the folder an
    /// archive or a Hub repo becomes), relative to the zoo dir,
    /// `/`-separated.
    pub fn model_evidence_path(&self, model: &ZooModel) -> Result<String, RegistryError> {
        let paths = self.model_paths(model)?;
        let evidence = paths.evidence();
        let relative = evidence.strip_prefix(self.root()).unwrap_or(evidence);
        Ok(relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"))
    }

    /// Moves `model`'s staged files (`staged`: its file or folder) into
    /// place, unless it is downloaded already (then `false`, nothing moved).
    pub fn install_bundled_model(
        &self,
        model: &ZooModel,
        staged: &Path,
    ) -> Result<bool, RegistryError> {
        self.check_license(model)?;
        let paths = self.model_paths(model)?;
        if self.downloaded(model, &paths)?.is_some() {
            return Ok(false);
        }
        let _lock = self.model_lock(&paths)?;
        if self.downloaded(model, &paths)?.is_some() {
            return Ok(false);
        }
        self.check_paths(model, &paths, "install the model from a bundle")?;
        let target = paths.evidence().to_path_buf();
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let metadata = fs_err::symlink_metadata(staged)?;
        if metadata.is_dir() {
            zoo_fs::persist_dir(staged, &target)?;
        } else if metadata.is_file() {
            fs_err::rename(staged, &target)?;
            if let Some(parent) = target.parent() {
                zoo_fs::sync_dir(parent)?;
            }
        } else {
            return Err(RegistryError::Io(std::io::Error::other(format!(
                "the bundle's `{}` for model `{}` is not a file or folder",
                staged.display(),
                model.name()
            ))));
        }
        Ok(true)
    }
}
