//! The sha256 of a downloaded model's files, for provenance and locks:
//! one file's digest, or for a folder (a Hugging Face repo, an extracted
//! archive) every regular file's, in path order. Digests are kept in
//! `<zoo dir>/.digests-v1.json` by path, size and modification time, so a
//! multi-gigabyte model is hashed once, not on every run.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::RegistryError;
use crate::registry::Registry;

/// The cache of file digests in the zoo dir.
const CACHE_FILE: &str = ".digests-v1.json";
/// The largest cache file read (a hand-edited one bigger than this is
/// ignored and rewritten).
const MAX_CACHE_BYTES: u64 = 64 << 20;
/// The most files one model folder may hold for a digest.
const MAX_FILES: usize = 100_000;

/// One file of a model, with its size and sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Its path: relative to the model's folder, or the file's own name
    /// for a one-file model; `/`-separated.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lowercase hex.
    pub sha256: String,
}

/// The digest of a model's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsDigest {
    /// Each regular file, in path order.
    pub files: Vec<FileDigest>,
    /// For one file, its sha256; for a folder, the sha256 of the listing
    /// `sha256sum` prints for its files (`<sha256>  <path>\n` per file, in
    /// path order).
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    /// By absolute path.
    files: BTreeMap<PathBuf, Cached>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    size: u64,
    modified_ns: u128,
    sha256: String,
}

impl Registry {
    /// The digest of the model files at `path` (a file, or a folder whose
    /// regular files are all hashed; links and other special files in it
    /// are refused, naming them).
    pub fn weights_digest(&self, path: &Path) -> Result<WeightsDigest, RegistryError> {
        self.digest(path, true)
    }

    /// [`Registry::weights_digest`] with every byte read now, the cache
    /// not trusted (a file corrupted in place, or changed with its size and
    /// time kept, is seen): what `--locked` and verification use.
    pub fn weights_digest_fresh(&self, path: &Path) -> Result<WeightsDigest, RegistryError> {
        self.digest(path, false)
    }

    fn digest(&self, path: &Path, trust_cache: bool) -> Result<WeightsDigest, RegistryError> {
        let cache_path = self.root().join(CACHE_FILE);
        let mut cache: Cache = zoo_fs::read_untrusted(&cache_path, MAX_CACHE_BYTES)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let mut changed = false;
        let listing = model_files(path)?;
        let mut files = Vec::with_capacity(listing.len());
        for (relative, absolute) in listing {
            let (sha256, size) = cached_sha256(&mut cache, &absolute, trust_cache, &mut changed)?;
            files.push(FileDigest {
                path: relative,
                size,
                sha256,
            });
        }
        if changed && self.root().is_dir() {
            // A cache is only a cache: a failed write costs a rehash later.
            if let Ok(bytes) = serde_json::to_vec(&cache)
                && let Err(err) = zoo_fs::write_atomic(&cache_path, &bytes)
            {
                tracing::warn!("cannot write `{}`: {err}", cache_path.display());
            }
        }
        let sha256 = if path.is_dir() {
            let listing: String = files
                .iter()
                .map(|file| format!("{}  {}\n", file.sha256, file.path))
                .collect();
            hex(&Sha256::digest(listing.as_bytes()))
        } else {
            files
                .first()
                .map(|file| file.sha256.clone())
                .unwrap_or_default()
        };
        Ok(WeightsDigest { files, sha256 })
    }
}

impl Registry {
    /// Every file of a registered source's tree as installed in the zoo dir
    /// (each manifest's folder, paths relative to the zoo dir), in path
    /// order, every byte read now: what the source brought, not its models' downloads (their
    /// files, partial downloads and archive folders are left out).
    pub fn source_digest(
        &self,
        source: &crate::RegisteredSource,
    ) -> Result<Vec<FileDigest>, RegistryError> {
        let mut downloads: Vec<PathBuf> = Vec::new();
        for model in self.zoo()?.zoo.models() {
            if matches!(&model.origin, zoo_manifest::Origin::Source { url, .. } if *url == source.url)
                && let Ok(paths) = self.model_paths(model)
            {
                downloads.extend(paths.all());
            }
        }
        // Every byte is read now, so the cache is neither read nor written.
        let mut cache = Cache::default();
        let mut changed = false;
        let mut files = Vec::new();
        for manifest in &source.manifests {
            let relative = zoo_manifest::RelativePath::new(&manifest.dir).map_err(|problem| {
                RegistryError::UnsafeIndexDir {
                    source_url: source.url.clone(),
                    dir: manifest.dir.clone(),
                    problem,
                }
            })?;
            let dir = relative.join_to(self.root());
            let skip = |path: &Path| {
                downloads.iter().any(|download| path.starts_with(download))
                    || path
                        .file_name()
                        .is_some_and(|name| name.to_string_lossy().ends_with(".partial"))
            };
            for (name, absolute) in walk(&dir, &skip)? {
                let (sha256, size) = cached_sha256(&mut cache, &absolute, false, &mut changed)?;
                files.push(FileDigest {
                    path: format!("{}/{name}", manifest.dir.trim_end_matches('/')),
                    size,
                    sha256,
                });
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        Ok(files)
    }
}

/// The regular files of a model at `path`, as (relative name, path), in
/// name order.
fn model_files(path: &Path) -> Result<Vec<(String, PathBuf)>, RegistryError> {
    let metadata = fs_err::symlink_metadata(path)?;
    if metadata.is_file() {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(name, path.to_path_buf())]);
    }
    if !metadata.is_dir() {
        return Err(special_file(path));
    }
    walk(path, &|_| false)
}

/// The regular files under folder `path` but those `skip` names (and zoo's
/// own `.zoo-*` records), as (relative name, path), in name order; a link
/// or special file is an error naming it.
fn walk(
    path: &Path,
    skip: &dyn Fn(&Path) -> bool,
) -> Result<Vec<(String, PathBuf)>, RegistryError> {
    let mut found = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs_err::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let child = entry.path();
            if skip(&child) {
                continue;
            }
            if kind.is_dir() {
                stack.push(child);
            } else if entry.file_name().to_string_lossy().starts_with(".zoo-") {
                // zoo's own records (`.zoo-hf.json`: where the files came
                // from) are not the weights.
                continue;
            } else if kind.is_file() {
                let relative = child
                    .strip_prefix(path)
                    .unwrap_or(&child)
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                found.push((relative, child));
                if found.len() > MAX_FILES {
                    return Err(RegistryError::Io(std::io::Error::other(format!(
                        "`{}` holds more than {MAX_FILES} files; a model folder that big is not hashed",
                        path.display()
                    ))));
                }
            } else {
                return Err(special_file(&child));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn special_file(path: &Path) -> RegistryError {
    RegistryError::Io(std::io::Error::other(format!(
        "`{}` is a link or special file, not a regular file or folder; a model's files must be regular files: download the model again (`zoo models download NAME --overwrite`)",
        path.display()
    )))
}

/// The sha256 and size of `path`, from the cache when its size and
/// modification time are unchanged.
fn cached_sha256(
    cache: &mut Cache,
    path: &Path,
    trust_cache: bool,
    changed: &mut bool,
) -> Result<(String, u64), RegistryError> {
    let (mut file, size) = zoo_fs::open_untrusted(path)
        .map_err(|err| RegistryError::Io(std::io::Error::other(err.to_string())))?;
    let modified_ns = file
        .metadata()?
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    if trust_cache
        && let Some(cached) = cache.files.get(path)
        && cached.size == size
        && cached.modified_ns == modified_ns
        && modified_ns != 0
    {
        return Ok((cached.sha256.clone(), size));
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => break,
            read => hasher.update(&buffer[..read]),
        }
    }
    let sha256 = hex(&hasher.finalize());
    cache.files.insert(
        path.to_path_buf(),
        Cached {
            size,
            modified_ns,
            sha256: sha256.clone(),
        },
    );
    *changed = true;
    Ok((sha256, size))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryConfig;

    fn sha256(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    #[test]
    fn a_file_and_a_folder_hash_as_sha256sum_lists_them_and_a_change_is_seen() {
        let root = tempfile::tempdir().unwrap();
        let registry = Registry::new(RegistryConfig::new(root.path()));
        let file = root.path().join("model.pt");
        fs_err::write(&file, b"weights").unwrap();
        let digest = registry.weights_digest(&file).unwrap();
        assert_eq!(digest.sha256, sha256(b"weights"));
        assert_eq!(digest.files[0].path, "model.pt");
        assert_eq!(digest.files[0].size, 7);

        let repo = root.path().join("repo");
        fs_err::create_dir_all(repo.join("sub")).unwrap();
        fs_err::write(repo.join("config.json"), b"{}").unwrap();
        fs_err::write(repo.join("sub/model.safetensors"), b"tensors").unwrap();
        let digest = registry.weights_digest(&repo).unwrap();
        let listing = format!(
            "{}  config.json\n{}  sub/model.safetensors\n",
            sha256(b"{}"),
            sha256(b"tensors")
        );
        assert_eq!(digest.sha256, sha256(listing.as_bytes()));
        assert!(root.path().join(CACHE_FILE).is_file());

        // A changed file (another size) is hashed again, not read from the cache.
        fs_err::write(&file, b"other weights").unwrap();
        assert_eq!(
            registry.weights_digest(&file).unwrap().sha256,
            sha256(b"other weights")
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_and_fifos_in_a_model_folder_are_refused_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let registry = Registry::new(RegistryConfig::new(root.path()));
        let repo = root.path().join("repo");
        fs_err::create_dir_all(&repo).unwrap();
        std::os::unix::fs::symlink("/dev/zero", repo.join("model.bin")).unwrap();
        let err = registry.weights_digest(&repo).unwrap_err().to_string();
        assert!(err.contains("model.bin"), "{err}");
        fs_err::remove_file(repo.join("model.bin")).unwrap();
        let fifo = repo.join("pipe.bin");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = registry.weights_digest(&repo).unwrap_err().to_string();
        assert!(err.contains("pipe.bin"), "{err}");
    }
}
