//! Bundles: one archive holding what a set of models needs, to install on a
//! machine with no network (`zoo bundle create`, `zoo bundle install`).
//!
//! A bundle is a tar compressed with zstd, the same bytes for the same
//! inputs (entries sorted, owners, modes and times fixed):
//!
//! ```text
//! zoo.lock            the lock of its models (`lock.rs`)
//! sources.json        the registered sources they come from (never trusted)
//! files/<path>        each source file and model file, at its path in the zoo dir
//! ```
//!
//! Installing reads the bundle as a stranger's file: unpacked within the
//! extraction limits into the zoo dir's staging folder, then every file is
//! checked against the lock (sha256 and size; a file the lock does not name
//! is refused) before anything moves into place, and each model is checked
//! in place again as `--locked` checks it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zoo_registry::{FileDigest, RegisteredSource};
use zoo_sources::ArchiveKind;

use crate::Zoo;
use crate::error::{Error, ErrorKind, Result, bail};
use crate::lock::{LOCK_FILE, Lock, Locked};
use crate::verify::VerifyReport;

/// The bundle's index of sources.
const SOURCES_FILE: &str = "sources.json";
/// The folder holding the zoo dir's files.
const FILES_DIR: &str = "files";
/// The folder holding the hosted models' wheels (`--with-python`).
const WHEELS_DIR: &str = "wheels";
/// The largest `sources.json` read.
const MAX_SOURCES_BYTES: u64 = 16 << 20;
/// zoo's record of where a Hugging Face repo's files came from, carried with
/// the repo's folder (not part of its digest).
const HUB_RECORD: &str = ".zoo-hf.json";

/// What `bundle_create` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    /// The bundle.
    pub path: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The models in it.
    pub models: Vec<String>,
    /// The sources in it.
    pub sources: Vec<String>,
    /// How many files of the zoo dir it carries.
    pub files: usize,
}

/// What `bundle_install` did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The bundle.
    pub path: PathBuf,
    /// Sources registered from it (untrusted).
    pub sources_installed: Vec<String>,
    /// Models installed from it.
    pub models_installed: Vec<String>,
    /// Models that were there already (checked against the lock all the same).
    pub models_present: Vec<String>,
    /// Where its lock was written.
    pub lockfile: PathBuf,
    /// The golden-output checks run after installing (see
    /// [`Zoo::bundle_install`]).
    pub verified: Vec<VerifyReport>,
    /// Models with golden outputs that were not run, and why.
    pub not_verified: Vec<NotVerified>,
    /// The Python packages installed from the bundle's wheels into
    /// `ZOO_PYTHON` (`name==version`).
    pub python_installed: Vec<String>,
}

/// A model [`Zoo::bundle_install`] did not verify.
#[derive(Debug, Clone, Serialize)]
pub struct NotVerified {
    /// The model.
    pub model: String,
    /// Why, and what to do.
    pub reason: String,
}

fn bundle_error(bundle: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Lock,
        format!(
            "bundle `{}` is refused: {what}; nothing was installed",
            bundle.display()
        ),
    )
}

impl Zoo<'_> {
    /// Writes a bundle of `names` (each downloaded first if it is not) to
    /// `out`.
    /// With `with_python`, the wheels of the packages its hosted models
    /// pin (`pip download` by `ZOO_PYTHON`, binary wheels only, their
    /// dependencies included) go in too, each in the bundle's lock.
    pub fn bundle_create(
        &self,
        out: &Path,
        names: &[String],
        with_python: bool,
    ) -> Result<BundleReport> {
        if names.is_empty() {
            bail!(
                Lock,
                "name the models to bundle (`zoo bundle create OUT MODEL...`)"
            );
        }
        let registry = self.registry();
        // Golden outputs in the user's lock come along for the models whose
        // files and config are still what it pins.
        let lockfile = &self.config().lockfile;
        let existing = if lockfile.exists() {
            Some(Lock::read(lockfile)?)
        } else {
            None
        };
        let mut lock = self.lock(names, existing, None)?;
        let named: Vec<String> = names
            .iter()
            .map(|name| Ok(self.registry().model(name)?.name()))
            .collect::<Result<_>>()?;
        lock.models.retain(|model| named.contains(&model.name));
        lock.sources
            .retain(|source| lock.models.iter().any(|model| model.source == source.url));
        let root = registry.root().to_path_buf();
        let mut entries: Vec<(String, PathBuf)> = Vec::new();
        let mut records: Vec<RegisteredSource> = Vec::new();
        for source in &lock.sources {
            let mut record = registry.find_source(&source.url)?;
            record.trusted = false;
            record.registered_at = 0;
            records.push(record);
            for file in &source.files {
                entries.push((format!("{FILES_DIR}/{}", file.path), root.join(&file.path)));
            }
        }
        for model in &lock.models {
            if model.files.is_empty() {
                continue;
            }
            let place = root.join(&model.path);
            if place.is_dir() {
                for file in &model.files {
                    entries.push((
                        format!("{FILES_DIR}/{}/{}", model.path, file.path),
                        place.join(&file.path),
                    ));
                }
                if place.join(HUB_RECORD).is_file() {
                    entries.push((
                        format!("{FILES_DIR}/{}/{HUB_RECORD}", model.path),
                        place.join(HUB_RECORD),
                    ));
                }
            } else {
                entries.push((format!("{FILES_DIR}/{}", model.path), place));
            }
        }
        entries.sort();
        entries.dedup_by(|a, b| a.0 == b.0);
        let staging = registry.staging_dir("bundle-")?;
        if with_python {
            let wheels = staging.path().join(WHEELS_DIR);
            self.download_wheels(&lock, &wheels)?;
            for (name, path) in plain_files(&wheels)? {
                let digest = zoo_registry::FileDigest {
                    size: fs_err::metadata(&path)?.len(),
                    sha256: zoo_sources::sha256_file(&path)?,
                    path: name.clone(),
                };
                lock.wheels.push(digest);
                entries.push((format!("{WHEELS_DIR}/{name}"), path));
            }
        }
        let files = entries.len();
        let lock_path = staging.path().join(LOCK_FILE);
        lock.write(&lock_path)?;
        let sources_path = staging.path().join(SOURCES_FILE);
        let text = serde_json::to_vec_pretty(&records).map_err(|err| {
            Error::new(
                ErrorKind::Lock,
                format!("cannot write {SOURCES_FILE}: {err}"),
            )
        })?;
        zoo_fs::write_atomic(&sources_path, &text)?;
        entries.push((LOCK_FILE.to_owned(), lock_path));
        entries.push((SOURCES_FILE.to_owned(), sources_path));
        zoo_sources::write_tar_zst(out, &entries).map_err(|err| {
            Error::new(
                ErrorKind::Lock,
                format!("writing bundle `{}` failed: {err}", out.display()),
            )
        })?;
        let sha256 = zoo_sources::sha256_file(out)?;
        Ok(BundleReport {
            path: out.to_path_buf(),
            sha256,
            bytes: fs_err::metadata(out)?.len(),
            models: lock.models.iter().map(|model| model.name.clone()).collect(),
            sources: lock
                .sources
                .iter()
                .map(|source| source.url.clone())
                .collect(),
            files,
        })
    }

    /// Installs bundle `bundle`: checks every file against its lock, then
    /// registers its sources (untrusted) and moves its models into place,
    /// checks each model in place as `--locked` does, and adds the lock's
    /// entries to this zoo's lock file. Works offline.
    ///
    /// With `verify`, each model the lock has golden outputs for then runs on
    /// the probe set ([`Zoo::verify`]); the reports are in
    /// [`InstallReport::verified`], and a failed one leaves the files
    /// installed (their digests matched) for the caller to act on.
    pub fn bundle_install(&self, bundle: &Path, verify: bool) -> Result<InstallReport> {
        let registry = self.registry();
        let staging = registry.staging_dir("bundle-install-")?;
        let unpacked = staging.path().join("unpacked");
        zoo_sources::extract(
            bundle,
            ArchiveKind::TarZst,
            &unpacked,
            &registry.config().extract_limits,
        )
        .map_err(|err| bundle_error(bundle, err))?;
        let lock =
            Lock::read(&unpacked.join(LOCK_FILE)).map_err(|err| bundle_error(bundle, err))?;
        let records: Vec<RegisteredSource> = {
            let bytes = zoo_fs::read_untrusted(&unpacked.join(SOURCES_FILE), MAX_SOURCES_BYTES)
                .map_err(|err| bundle_error(bundle, err))?;
            serde_json::from_slice(&bytes)
                .map_err(|err| bundle_error(bundle, format!("its {SOURCES_FILE}: {err}")))?
        };
        let files = unpacked.join(FILES_DIR);
        check_files(bundle, &lock, &files)?;
        let wheels = unpacked.join(WHEELS_DIR);
        check_wheels(bundle, &lock, &wheels)?;
        for source in &lock.sources {
            let found = records
                .iter()
                .any(|record| record.url == source.url && record.commit == source.commit);
            if !found {
                return Err(bundle_error(
                    bundle,
                    format!(
                        "its lock names source `{}`, which its {SOURCES_FILE} lacks",
                        source.url
                    ),
                ));
            }
        }

        let mut report = InstallReport {
            path: bundle.to_path_buf(),
            sources_installed: Vec::new(),
            models_installed: Vec::new(),
            models_present: Vec::new(),
            lockfile: self.config().lockfile.clone(),
            verified: Vec::new(),
            not_verified: Vec::new(),
            python_installed: Vec::new(),
        };
        // What this zoo dir had before: a source's models move in with it.
        let present_before: Vec<bool> = lock
            .models
            .iter()
            .map(|pinned| {
                registry
                    .model(&pinned.name)
                    .ok()
                    .and_then(|model| registry.downloaded_path(&model))
                    .is_some()
            })
            .collect();
        for record in records
            .iter()
            .filter(|record| lock.sources.iter().any(|source| source.url == record.url))
        {
            if registry.install_bundled_source(record, &files)? {
                report.sources_installed.push(record.url.clone());
            }
        }
        if !lock.wheels.is_empty() {
            report.python_installed = self.install_wheels(&lock, &wheels)?;
        }
        let locked = Locked {
            lock: lock.clone(),
            path: bundle.join(LOCK_FILE),
        };
        for (pinned, present_before) in lock.models.iter().zip(present_before) {
            let model = registry.model(&pinned.name)?;
            let place = registry.model_evidence_path(&model)?;
            if !pinned.path.is_empty() && place != pinned.path {
                return Err(bundle_error(
                    bundle,
                    format!(
                        "it puts model `{}` at `{}`, and this zoo keeps it at `{place}`",
                        pinned.name, pinned.path
                    ),
                ));
            }
            let staged = files.join(&pinned.path);
            if !pinned.files.is_empty() && fs_err::symlink_metadata(&staged).is_ok() {
                registry.install_bundled_model(&model, &staged)?;
            }
            let installed = registry.downloaded_path(&model).is_some() && !present_before;
            if installed {
                report.models_installed.push(pinned.name.clone());
            } else {
                report.models_present.push(pinned.name.clone());
            }
            let downloaded =
                registry.download(&pinned.name, None, false, self.observer().downloads())?;
            self.check_locked(&locked, &downloaded)?;
        }
        let lockfile = &self.config().lockfile;
        let mut merged = if lockfile.exists() {
            Lock::read(lockfile)?
        } else {
            Lock {
                version: lock.version,
                sources: Vec::new(),
                models: Vec::new(),
                wheels: Vec::new(),
            }
        };
        for model in &lock.models {
            let source = lock
                .sources
                .iter()
                .find(|source| source.url == model.source)
                .cloned();
            merged.put(model.clone(), source);
        }
        merged.write(lockfile)?;
        if verify {
            for model in lock.models.iter().filter(|model| model.golden.is_some()) {
                // A bundled source is untrusted: its Python (a hosted model,
                // a load hook) never runs on its own say-so.
                let untrusted = lock
                    .sources
                    .iter()
                    .find(|source| source.url == model.source)
                    .map(|source| registry.find_source(&source.url))
                    .transpose()?
                    .filter(|registered| !registered.trusted && model.runs != "native");
                if let Some(registered) = untrusted {
                    report.not_verified.push(NotVerified {
                        model: model.name.clone(),
                        reason: format!(
                            "it runs Python from source `{}`, which is not trusted: `zoo models trust-source {}`, then `zoo models verify {}`",
                            registered.url, registered.url, model.name
                        ),
                    });
                    continue;
                }
                report
                    .verified
                    .push(self.verify(&model.name, &locked, None)?);
            }
        }
        Ok(report)
    }
}

/// Every file under `files` is one the lock names, with the size and sha256
/// it states, and every file the lock names is there; zoo's own Hub records
/// inside a model's folder are the one exception.
fn check_files(bundle: &Path, lock: &Lock, files: &Path) -> Result<()> {
    let mut expected: BTreeMap<String, &FileDigest> = BTreeMap::new();
    for source in &lock.sources {
        for file in &source.files {
            expected.insert(file.path.clone(), file);
        }
    }
    let mut folders: Vec<&str> = Vec::new();
    for model in &lock.models {
        if model.files.is_empty() {
            continue;
        }
        if is_folder(model) {
            folders.push(&model.path);
            for file in &model.files {
                expected.insert(format!("{}/{}", model.path, file.path), file);
            }
        } else {
            expected.insert(model.path.clone(), &model.files[0]);
        }
    }
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    if files.is_dir() {
        let mut stack = vec![files.to_path_buf()];
        while let Some(folder) = stack.pop() {
            for entry in fs_err::read_dir(&folder)? {
                let entry = entry?;
                let path = entry.path();
                let kind = entry.file_type()?;
                let relative = path
                    .strip_prefix(files)
                    .unwrap_or(&path)
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() {
                    found.push((relative, path));
                } else {
                    return Err(bundle_error(
                        bundle,
                        format!("`{relative}` is not a regular file"),
                    ));
                }
            }
        }
    }
    let mut seen = 0;
    for (relative, path) in &found {
        let Some(pinned) = expected.get(relative) else {
            let hub_record = relative
                .rsplit_once('/')
                .is_some_and(|(folder, name)| name == HUB_RECORD && folders.contains(&folder));
            if hub_record {
                continue;
            }
            return Err(bundle_error(
                bundle,
                format!("it holds `{relative}`, which its lock does not name"),
            ));
        };
        check_digest(bundle, &format!("file `{relative}`"), path, pinned)?;
        seen += 1;
    }
    if seen != expected.len() {
        let present: Vec<&str> = found
            .iter()
            .map(|(relative, _)| relative.as_str())
            .collect();
        let missing = expected
            .keys()
            .find(|path| !present.contains(&path.as_str()))
            .cloned()
            .unwrap_or_default();
        return Err(bundle_error(
            bundle,
            format!("it lacks `{missing}`, which its lock names"),
        ));
    }
    Ok(())
}

/// Whether a locked model's files are a folder (a Hub repo, an archive's
/// folder) rather than one file: a one-file model's only file is named like
/// its path's last part.
fn is_folder(model: &crate::LockedModel) -> bool {
    model.files.len() != 1
        || model
            .path
            .rsplit('/')
            .next()
            .is_none_or(|last| last != model.files[0].path)
}

/// The packages `lock`'s hosted models pin, checked: pip must read none
/// as an option.
fn python_pins(lock: &Lock) -> Result<Vec<String>> {
    let pins: std::collections::BTreeSet<String> = lock
        .models
        .iter()
        .flat_map(|model| model.python.iter().cloned())
        .collect();
    if let Some(pin) = pins
        .iter()
        .find(|pin| pin.starts_with('-') || !pin.contains("=="))
    {
        bail!(
            Lock,
            "the lock pins the Python package `{pin}`, which is not `name==version`; refusing to hand it to pip"
        );
    }
    Ok(pins.into_iter().collect())
}

impl Zoo<'_> {
    /// `pip download`s the wheels of every package `lock`'s hosted models
    /// pin, with their dependencies, into `dir` (pip's own configuration
    /// and `PIP_*` variables choose the index).
    fn download_wheels(&self, lock: &Lock, dir: &Path) -> Result<()> {
        let pins = python_pins(lock)?;
        if pins.is_empty() {
            bail!(
                Lock,
                "no model in the bundle runs in the Python host, so `--with-python` has no packages to bundle"
            );
        }
        let mut args: Vec<std::ffi::OsString> = ["download", "--only-binary=:all:", "--dest"]
            .map(Into::into)
            .to_vec();
        args.push(dir.into());
        self.pip(&args, &pins).map_err(|status| {
            Error::new(
                ErrorKind::Lock,
                format!(
                    "`pip download {}` {status}: every pinned package needs a wheel on pip's index (`PIP_INDEX_URL`, `PIP_FIND_LINKS`)",
                    pins.join(" ")
                ),
            )
        })
    }

    /// Installs the pinned packages from the bundle's wheels only
    /// (`pip install --no-index --find-links`), into `ZOO_PYTHON`; returns
    /// the pins.
    fn install_wheels(&self, lock: &Lock, dir: &Path) -> Result<Vec<String>> {
        let pins = python_pins(lock)?;
        let mut args: Vec<std::ffi::OsString> = ["install", "--no-index", "--find-links"]
            .map(Into::into)
            .to_vec();
        args.push(dir.into());
        self.pip(&args, &pins).map_err(|status| {
            Error::new(
                ErrorKind::Lock,
                format!(
                    "installing the bundle's wheels (`pip install --no-index` of {}) {status}",
                    pins.join(" ")
                ),
            )
        })?;
        Ok(pins)
    }

    /// Runs `ZOO_PYTHON -m pip ARGS PINS` without zoo's secrets; the error
    /// says how it failed (`exited with ...`, or that it could not start).
    fn pip(&self, args: &[std::ffi::OsString], pins: &[String]) -> std::result::Result<(), String> {
        let python = &self.config().python;
        let mut pip = std::process::Command::new(python);
        pip.args(["-m", "pip"])
            .args(args)
            .args(pins)
            .stdout(std::process::Stdio::null());
        zoo_process::scrub_secrets(&mut pip);
        match pip.status() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("in `{python}` exited with {status}")),
            Err(err) => Err(format!(
                "could not start `{python}` ({err}); set `ZOO_PYTHON` to a Python with pip"
            )),
        }
    }
}

/// The plain files directly in `dir`, sorted by name (none when it does
/// not exist); anything else is an error.
fn plain_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() {
            bail!(
                Lock,
                "`{name}` in `{}` is not a regular file",
                dir.display()
            );
        }
        found.push((name, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// The bundle's wheels are exactly the ones its lock names, each a plain
/// file name pip cannot read as an option, with the size and sha256 the
/// lock states.
fn check_wheels(bundle: &Path, lock: &Lock, dir: &Path) -> Result<()> {
    let found = plain_files(dir).map_err(|err| bundle_error(bundle, err))?;
    for (name, path) in &found {
        let Some(pinned) = lock.wheels.iter().find(|wheel| &wheel.path == name) else {
            return Err(bundle_error(
                bundle,
                format!("`{WHEELS_DIR}/{name}` is not in its lock"),
            ));
        };
        check_digest(bundle, &format!("`{WHEELS_DIR}/{name}`"), path, pinned)?;
    }
    for wheel in &lock.wheels {
        if wheel.path.starts_with('-') || wheel.path.contains(['/', '\\']) {
            return Err(bundle_error(
                bundle,
                format!(
                    "its lock names the wheel `{}`, which is not a plain file name",
                    wheel.path
                ),
            ));
        }
        if !found.iter().any(|(name, _)| name == &wheel.path) {
            return Err(bundle_error(
                bundle,
                format!("`{WHEELS_DIR}/{}` is missing", wheel.path),
            ));
        }
    }
    Ok(())
}

/// `path` (named `what` in the error) has the size and sha256 `pinned`
/// states, every byte read.
fn check_digest(bundle: &Path, what: &str, path: &Path, pinned: &FileDigest) -> Result<()> {
    let size = fs_err::metadata(path)?.len();
    let sha256 = zoo_sources::sha256_file(path)?;
    if size != pinned.size || sha256 != pinned.sha256 {
        return Err(bundle_error(
            bundle,
            format!(
                "{what} has sha256 {sha256} ({size} bytes), its lock has {} ({} bytes)",
                pinned.sha256, pinned.size
            ),
        ));
    }
    Ok(())
}
