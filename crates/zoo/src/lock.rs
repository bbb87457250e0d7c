//! `zoo.lock`: what a set of models is made of, pinned, so a run can be
//! repeated a year later or on another machine and refuse anything that
//! differs. TOML, one `[[source]]` per registered source a locked model
//! comes from and one `[[model]]` per model:
//!
//! ```toml
//! version = 1
//!
//! [[source]]
//! identifier = "acme/models"
//! url = "https://github.com/acme/models"
//! commit = "0123...cdef"
//! [[source.files]]
//! path = "acme/models/manifest.json"
//! size = 1234
//! sha256 = "..."
//!
//! [[model]]
//! name = "resnet18-imagenet-torch"
//! source = "builtin"
//! runs = "native"
//! config_sha256 = "..."
//! url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
//! [[model.files]]
//! path = "resnet18-imagenet-torch.pth"
//! size = 46830571
//! sha256 = "..."
//! ```
//!
//! A hosted model also pins its Python packages (`python = ["fiftyone==1.22.1",
//! ...]`, the versions installed in `ZOO_PYTHON` when locked), and a Hugging
//! Face one its repo and commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zoo_manifest::{Origin, ZooModel};
use zoo_registry::{Downloaded, FileDigest, LoadPath};

use crate::Zoo;
use crate::error::{Error, ErrorKind, Result, bail};
use crate::provenance::config_digest;
use crate::requirements::packages_of;
use crate::verify::{Golden, VerifyReport};

/// The lock file's name when `ZOO_LOCKFILE` names none (in the current
/// directory).
pub const LOCK_FILE: &str = "zoo.lock";
/// The format this zoo writes and reads.
pub const LOCK_VERSION: u32 = 1;
/// The largest lock file read.
const MAX_LOCK_BYTES: u64 = 64 << 20;

/// A lock: sources and models, each with the digests of its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    /// [`LOCK_VERSION`].
    pub version: u32,
    /// The registered sources the models come from.
    #[serde(default, rename = "source", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<LockedSource>,
    /// The models.
    #[serde(default, rename = "model")]
    pub models: Vec<LockedModel>,
    /// In a bundle made `--with-python`: the wheels it carries for its
    /// hosted models' packages (file name, size, sha256).
    #[serde(default, rename = "wheel", skip_serializing_if = "Vec::is_empty")]
    pub wheels: Vec<FileDigest>,
}

/// A registered source, as locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedSource {
    /// The identifier it was registered with.
    pub identifier: String,
    /// Its normalised URL (what models' `source` names).
    pub url: String,
    /// The commit it was fetched at (GitHub sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Every file of its tree in the zoo dir, its models' downloads aside.
    #[serde(default)]
    pub files: Vec<FileDigest>,
}

/// A model, as locked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedModel {
    /// Its versioned name.
    pub name: String,
    /// `builtin`, a custom manifest's path, or the source's URL.
    pub source: String,
    /// How it runs: `native`, `python host`, ...
    pub runs: String,
    /// The sha256 of its manifest's deployment config (`{"type": ...,
    /// "config": ...}`, keys sorted, compact JSON; `null` without one).
    pub config_sha256: String,
    /// The URL its manager downloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The Hugging Face repo its files come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_repo: Option<String>,
    /// The commit of that repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_commit: Option<String>,
    /// For a hosted model: its Python packages as `name==version`, as
    /// installed in `ZOO_PYTHON` when locked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python: Vec<String>,
    /// Where its files are, relative to the zoo dir (its file, or its
    /// folder), `/`-separated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Its files (none when its library fetches its own).
    #[serde(default)]
    pub files: Vec<FileDigest>,
    /// Its outputs on zoo's probe set (`zoo lock --with-golden`), which
    /// `zoo models verify` compares with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub golden: Option<Golden>,
}

impl Lock {
    /// Reads the lock at `path` (a file the user gives: regular, within a
    /// size cap, of a version this zoo reads).
    pub fn read(path: &Path) -> Result<Self> {
        let context = || format!("reading the lock `{}` failed", path.display());
        let bytes = zoo_fs::read_untrusted(path, MAX_LOCK_BYTES).map_err(|err| {
            Error::new(
                ErrorKind::Lock,
                format!(
                    "{}: {err}; write one with `zoo lock MODEL...`, or name it with `ZOO_LOCKFILE`",
                    context()
                ),
            )
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::new(ErrorKind::Lock, format!("{}: it is not UTF-8", context())))?;
        let lock: Self = toml::from_str(&text).map_err(|err| {
            Error::new(
                ErrorKind::Lock,
                format!("{}: it is not a zoo lock: {err}", context()),
            )
        })?;
        if lock.version != LOCK_VERSION {
            bail!(
                Lock,
                "{}: it is version {}, and this zoo reads version {LOCK_VERSION}; lock again with this zoo (`zoo lock`)",
                context(),
                lock.version
            );
        }
        Ok(lock)
    }

    /// Writes the lock to `path`, whole or not at all.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).map_err(|err| {
            Error::new(
                ErrorKind::Lock,
                format!("cannot write the lock as TOML: {err}"),
            )
        })?;
        let text = format!(
            "# zoo.lock: written by `zoo lock`; `--locked` refuses anything that differs.\n{text}"
        );
        zoo_fs::write_atomic(path, text.as_bytes()).map_err(|err| {
            Error::new(
                ErrorKind::Lock,
                format!("writing the lock `{}` failed: {err}", path.display()),
            )
        })
    }

    /// The model `name` in the lock.
    pub fn model(&self, name: &str) -> Option<&LockedModel> {
        self.models.iter().find(|model| model.name == name)
    }

    /// Adds or replaces `model` (and its source), keeping entries sorted.
    /// Golden outputs already locked stay with a model locked again without
    /// them, as long as nothing else about it changed.
    pub(crate) fn put(&mut self, mut model: LockedModel, source: Option<LockedSource>) {
        if model.golden.is_none()
            && let Some(old) = self.model(&model.name)
            && (LockedModel {
                golden: None,
                ..old.clone()
            }) == model
        {
            model.golden.clone_from(&old.golden);
        }
        self.models.retain(|locked| locked.name != model.name);
        self.models.push(model);
        self.models.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(source) = source {
            self.sources.retain(|locked| locked.url != source.url);
            self.sources.push(source);
            self.sources.sort_by(|a, b| a.url.cmp(&b.url));
        }
    }
}

/// A lock and where it was read from, for `--locked` runs.
#[derive(Debug, Clone)]
pub struct Locked {
    /// The lock.
    pub lock: Lock,
    /// Its path, for messages.
    pub path: PathBuf,
}

impl Locked {
    /// Reads the lock at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        Ok(Self {
            lock: Lock::read(path)?,
            path: path.to_path_buf(),
        })
    }
}

/// The sha256 of a model's manifest deployment config, as locked.
fn manifest_config_digest(model: &ZooModel) -> String {
    let config = model.model.default_deployment_config_dict.as_ref().map_or(
        Value::Null,
        |deployment| json!({"type": deployment.kind, "config": deployment.config}),
    );
    config_digest(&config)
}

impl Zoo<'_> {
    /// Locks `names` (each downloaded first if it is not), or with no names
    /// every downloaded model, into `existing` (entries of other models
    /// kept): their files, sources, configs and, for hosted models, Python
    /// packages. With `golden` (a tolerance), each named model also runs on
    /// zoo's probe set and its outputs are recorded ([`Zoo::golden`]).
    pub fn lock(
        &self,
        names: &[String],
        existing: Option<Lock>,
        golden: Option<f64>,
    ) -> Result<Lock> {
        let registry = self.registry();
        let names: Vec<String> = if names.is_empty() {
            registry
                .zoo()?
                .zoo
                .models()
                .iter()
                .filter(|model| registry.downloaded_path(model).is_some())
                .map(ZooModel::name)
                .collect()
        } else {
            names.to_vec()
        };
        if names.is_empty() {
            bail!(
                Lock,
                "no model is downloaded, so there is nothing to lock: name the models (`zoo lock MODEL...`)"
            );
        }
        let mut lock = existing.unwrap_or(Lock {
            version: LOCK_VERSION,
            sources: Vec::new(),
            models: Vec::new(),
            wheels: Vec::new(),
        });
        for name in &names {
            let downloaded = registry.download(name, None, false, self.observer().downloads())?;
            let (mut model, source) = self.locked_model(&downloaded)?;
            if let Some(tolerance) = golden {
                model.golden = Some(self.golden(&model.name, tolerance)?);
            }
            lock.put(model, source);
        }
        Ok(lock)
    }

    /// The lock entry of a downloaded model, and of its source.
    fn locked_model(&self, downloaded: &Downloaded) -> Result<(LockedModel, Option<LockedSource>)> {
        let registry = self.registry();
        let model = &downloaded.model;
        let files = if fs_err::symlink_metadata(&downloaded.path).is_ok() {
            registry.weights_digest_fresh(&downloaded.path)?.files
        } else {
            Vec::new()
        };
        let snapshot = registry.hub_snapshot(model);
        let path = registry.load_path(model);
        let python = if matches!(
            path,
            LoadPath::FiftyOneClass | LoadPath::FiftyOneTensorFlow | LoadPath::PythonHost
        ) {
            self.python_versions(model)
        } else {
            Vec::new()
        };
        let source = match &model.origin {
            Origin::Source { url, .. } => {
                let registered = registry.find_source(url)?;
                Some(LockedSource {
                    identifier: registered.identifier.clone(),
                    url: registered.url.clone(),
                    commit: registered.commit.clone(),
                    files: registry.source_digest(&registered)?,
                })
            }
            _ => None,
        };
        let url = model
            .model
            .download_manager()
            .and_then(|manager| manager.config.get("url"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok((
            LockedModel {
                name: model.name(),
                source: model.origin.to_string(),
                runs: path.as_str().to_owned(),
                config_sha256: manifest_config_digest(model),
                url,
                hub_repo: snapshot.as_ref().map(|snapshot| snapshot.repo.clone()),
                hub_commit: snapshot.map(|snapshot| snapshot.commit),
                python,
                path: registry.model_evidence_path(model)?,
                files,
                golden: None,
            },
            source,
        ))
    }

    /// `name==version` of the Python packages a hosted model needs
    /// (fiftyone and its manifest's requirements), as `ZOO_PYTHON` has
    /// them; packages it lacks are left out.
    fn python_versions(&self, model: &ZooModel) -> Vec<String> {
        let mut wanted = vec!["fiftyone".to_owned()];
        wanted.extend(packages_of(model));
        let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
        crate::requirements::python_package_versions(&self.config().python, &names)
            .into_iter()
            .map(|(name, version)| format!("{name}=={version}"))
            .collect()
    }

    /// Refuses `downloaded` unless it is what `locked` pins: its source (commit
    /// and files), its manifest config, its Hugging Face commit, each of its
    /// files, and a hosted model's Python packages. The error names the
    /// first difference, with both digests or versions.
    pub fn check_locked(&self, locked: &Locked, downloaded: &Downloaded) -> Result<()> {
        let name = downloaded.name();
        let lock_path = locked.path.display();
        let Some(pinned) = locked.lock.model(&name) else {
            bail!(
                Lock,
                "model `{name}` is not in the lock `{lock_path}`: lock it first (`zoo lock {name}`), or run without `--locked`"
            );
        };
        let (actual, source) = self.locked_model(downloaded)?;
        let refuse = |what: String| -> Result<()> {
            Err(Error::new(
                ErrorKind::Lock,
                format!(
                    "model `{name}` differs from the lock `{lock_path}`: {what}; if the change is intended, lock again (`zoo lock {name}`)"
                ),
            ))
        };
        if !pinned.path.is_empty() && pinned.path != actual.path {
            return refuse(format!(
                "the lock has its files at `{}`, this zoo dir at `{}`",
                pinned.path, actual.path
            ));
        }
        if pinned.source != actual.source {
            return refuse(format!(
                "the lock has it from `{}`, the zoo from `{}`",
                pinned.source, actual.source
            ));
        }
        if let Some(source) = source {
            let Some(pinned_source) = locked.lock.sources.iter().find(|s| s.url == source.url)
            else {
                return refuse(format!("its source `{}` is not in the lock", source.url));
            };
            if pinned_source.commit != source.commit {
                return refuse(format!(
                    "its source `{}` is at commit {}, the lock has {}",
                    source.url,
                    source.commit.as_deref().unwrap_or("(none)"),
                    pinned_source.commit.as_deref().unwrap_or("(none)")
                ));
            }
            if let Some(what) = files_differ(&pinned_source.files, &source.files) {
                return refuse(format!("its source `{}`: {what}", source.url));
            }
        }
        if pinned.config_sha256 != actual.config_sha256 {
            return refuse(format!(
                "its manifest's deployment config has sha256 {}, the lock has {}",
                actual.config_sha256, pinned.config_sha256
            ));
        }
        if pinned.hub_commit != actual.hub_commit {
            return refuse(format!(
                "its Hugging Face repo is at commit {}, the lock has {}",
                actual.hub_commit.as_deref().unwrap_or("(none)"),
                pinned.hub_commit.as_deref().unwrap_or("(none)")
            ));
        }
        if let Some(what) = files_differ(&pinned.files, &actual.files) {
            return refuse(what);
        }
        let installed: BTreeMap<&str, &str> = actual
            .python
            .iter()
            .filter_map(|pin| pin.split_once("=="))
            .collect();
        for pin in &pinned.python {
            let Some((package, version)) = pin.split_once("==") else {
                continue;
            };
            let has = installed.get(package).copied();
            if has != Some(version) {
                return refuse(format!(
                    "Python package `{package}` is {} in `{}` (`ZOO_PYTHON`), the lock has {version}",
                    has.unwrap_or("not installed"),
                    self.config().python
                ));
            }
        }
        Ok(())
    }
}

impl Zoo<'_> {
    /// Runs model `name` on the probe set and compares its outputs with the
    /// golden ones `locked` records ([`Zoo::verify_golden`]), within
    /// `tolerance` (else the lock's). A model the lock has no golden outputs
    /// for is an error saying how to record them.
    pub fn verify(
        &self,
        name: &str,
        locked: &Locked,
        tolerance: Option<f64>,
    ) -> Result<VerifyReport> {
        let model = self.registry().model(name)?.name();
        let Some(golden) = locked.lock.model(&model).and_then(|m| m.golden.as_ref()) else {
            bail!(
                Lock,
                "the lock `{}` has no golden outputs for `{model}`: record them with `zoo lock --with-golden {model}`",
                locked.path.display()
            );
        };
        self.verify_golden(&model, golden, tolerance)
    }
}

/// The first difference between the pinned files and the actual ones:
/// a file missing, added, or with another size or sha256 (both named).
fn files_differ(pinned: &[FileDigest], actual: &[FileDigest]) -> Option<String> {
    let actual_by_path: BTreeMap<&str, &FileDigest> = actual
        .iter()
        .map(|file| (file.path.as_str(), file))
        .collect();
    for file in pinned {
        match actual_by_path.get(file.path.as_str()) {
            None => return Some(format!("file `{}` is missing", file.path)),
            Some(found) if found.sha256 != file.sha256 || found.size != file.size => {
                return Some(format!(
                    "file `{}` has sha256 {} ({} bytes), the lock has {} ({} bytes)",
                    file.path, found.sha256, found.size, file.sha256, file.size
                ));
            }
            Some(_) => {}
        }
    }
    let pinned_paths: Vec<&str> = pinned.iter().map(|file| file.path.as_str()).collect();
    actual
        .iter()
        .find(|file| !pinned_paths.contains(&file.path.as_str()))
        .map(|file| {
            format!(
                "file `{}` (sha256 {}) is not in the lock",
                file.path, file.sha256
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha256: &str) -> FileDigest {
        FileDigest {
            path: path.to_owned(),
            size: 3,
            sha256: sha256.to_owned(),
        }
    }

    #[test]
    fn a_lock_round_trips_through_toml_and_other_versions_are_refused() {
        let lock = Lock {
            version: LOCK_VERSION,
            sources: vec![LockedSource {
                identifier: "acme/models".into(),
                url: "https://github.com/acme/models".into(),
                commit: Some("a".repeat(40)),
                files: vec![file("acme/models/manifest.json", "11")],
            }],
            models: vec![LockedModel {
                name: "m".into(),
                source: "https://github.com/acme/models".into(),
                runs: "python host".into(),
                config_sha256: "22".into(),
                url: None,
                hub_repo: Some("org/repo".into()),
                hub_commit: Some("b".repeat(40)),
                python: vec!["fiftyone==1.22.1".into()],
                path: "m".into(),
                files: vec![file("config.json", "33")],
                golden: Some(Golden {
                    probes: crate::verify::PROBES.into(),
                    tolerance: 1e-4,
                    outputs: vec![crate::verify::GoldenOutput {
                        probe: "probe-0.png".into(),
                        fields: r#"{"golden":{"label":"a'b\"c","confidence":0.25}}"#.into(),
                    }],
                }),
            }],
            wheels: vec![file("pkg-0.1-py3-none-any.whl", "44")],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        lock.write(&path).unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(
            text.contains("[[model]]") && text.contains("[[source.files]]"),
            "{text}"
        );
        assert_eq!(Lock::read(&path).unwrap(), lock);

        fs_err::write(&path, text.replace("version = 1", "version = 7")).unwrap();
        let err = Lock::read(&path).unwrap_err().to_string();
        assert!(err.contains("version 7"), "{err}");
        fs_err::write(&path, "[[model]\nname=").unwrap();
        let err = Lock::read(&path).unwrap_err().to_string();
        assert!(err.contains("not a zoo lock"), "{err}");
    }

    #[test]
    fn file_differences_name_the_file_and_both_digests() {
        let pinned = [file("a", "11"), file("b", "22")];
        assert_eq!(files_differ(&pinned, &pinned), None);
        let changed = [file("a", "11"), file("b", "99")];
        let what = files_differ(&pinned, &changed).unwrap();
        assert!(
            what.contains("`b`") && what.contains("99") && what.contains("22"),
            "{what}"
        );
        assert!(
            files_differ(&pinned, &pinned[..1])
                .unwrap()
                .contains("`b` is missing")
        );
        let extra = [file("a", "11"), file("b", "22"), file("c", "33")];
        assert!(files_differ(&pinned, &extra).unwrap().contains("`c`"));
    }
}
