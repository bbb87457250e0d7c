//! The files of a Hugging Face model repo, as `save_pretrained` writes them
//! and zoo downloads them into one folder: `config.json`,
//! `preprocessor_config.json`, and the weights: `model.safetensors`, its
//! shards listed in `model.safetensors.index.json`, or `pytorch_model.bin`
//! (and its index), read by zoo's own safetensors reader and unpickler.
//!
//! Every file is hostile input: JSON files are read under a byte cap and
//! only when they are regular files, shard names must be plain file names in
//! the folder, and every tensor is checked by `checkpoint/weights.rs`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use tch::{Kind, Tensor};

use super::HfError;
use crate::checkpoint::weights::read_named_tensors;

/// The largest JSON file zoo reads from a repo (a config with 22k labels
/// is about 1 MB; a shard index about 100 kB).
const MAX_JSON_BYTES: u64 = 16 << 20;

/// The most shards an index may list.
const MAX_SHARDS: usize = 4096;

/// Reads and parses `dir/name` as `T`, within [`MAX_JSON_BYTES`]; a field of
/// the wrong type is an error naming the file and the field.
pub(crate) fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<T, HfError> {
    let path = dir.join(name);
    let text = read_small(&path)?;
    let mut deserializer = serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| HfError::Config {
        path: path.clone(),
        message: format!("`{}`: {}", err.path(), err.inner()),
    })
}

/// Whether `dir/name` is a regular file (links followed).
pub(crate) fn has_file(dir: &Path, name: &str) -> bool {
    fs_err::metadata(dir.join(name)).is_ok_and(|meta| meta.is_file())
}

/// The bytes of a small regular file, at most [`MAX_JSON_BYTES`].
fn read_small(path: &Path) -> Result<Vec<u8>, HfError> {
    read_bounded(path, MAX_JSON_BYTES)
}

/// The bytes of the regular file `dir/name`, at most `limit`.
pub(crate) fn read_file(dir: &Path, name: &str, limit: u64) -> Result<Vec<u8>, HfError> {
    read_bounded(&dir.join(name), limit)
}

/// The bytes of a regular file, at most `limit`.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, HfError> {
    let failed = |message: String| HfError::Read {
        path: path.to_owned(),
        message,
    };
    let meta = fs_err::metadata(path).map_err(|err| failed(err.to_string()))?;
    if !meta.is_file() {
        return Err(failed("not a regular file".to_owned()));
    }
    if meta.len() > limit {
        return Err(failed(format!(
            "{} bytes, beyond the {limit} zoo reads",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    fs_err::File::open(path)
        .and_then(|file| file.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|err| failed(err.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(failed(format!("beyond the {limit} bytes zoo reads")));
    }
    Ok(bytes)
}

/// A shard index (`*.index.json`): which file holds each tensor.
#[derive(Debug, serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The weight files of the repo in `dir`, in the order transformers
/// prefers them: `model.safetensors`, its index, `pytorch_model.bin`, its
/// index.
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, HfError> {
    for (single, index) in [
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ] {
        if has_file(dir, single) {
            return Ok(vec![dir.join(single)]);
        }
        if has_file(dir, index) {
            let path = dir.join(index);
            let parsed: ShardIndex = read_json(dir, index)?;
            let mut shards: Vec<&String> = parsed.weight_map.values().collect();
            shards.sort();
            shards.dedup();
            if shards.is_empty() || shards.len() > MAX_SHARDS {
                return Err(HfError::Config {
                    path,
                    message: format!(
                        "`weight_map` lists {} shards; it must list 1 to {MAX_SHARDS}",
                        shards.len()
                    ),
                });
            }
            return shards
                .into_iter()
                .map(|shard| {
                    if !is_plain_file_name(shard) {
                        return Err(HfError::Config {
                            path: path.clone(),
                            message: format!(
                                "shard `{shard}` is not a plain file name in the repo's folder"
                            ),
                        });
                    }
                    if !has_file(dir, shard) {
                        return Err(HfError::Read {
                            path: dir.join(shard),
                            message: format!("the shard `{index}` lists is missing"),
                        });
                    }
                    Ok(dir.join(shard))
                })
                .collect();
        }
    }
    Err(HfError::Read {
        path: dir.to_owned(),
        message: "no weights: the folder has none of `model.safetensors`, `model.safetensors.index.json`, `pytorch_model.bin`, `pytorch_model.bin.index.json`".to_owned(),
    })
}

/// One path component that stays in its folder.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

/// Every tensor of the repo's weights, by name, as `f32` (transformers
/// loads the checkpoints zoo builds in `float32`); a name in two shards is
/// an error.
pub(crate) fn read_weights(dir: &Path) -> Result<Weights, HfError> {
    let files = weight_files(dir)?;
    let mut tensors = HashMap::new();
    for file in &files {
        for (name, tensor) in read_named_tensors(file)? {
            let tensor = if tensor.kind() == Kind::Float {
                tensor
            } else {
                tensor.f_to_kind(Kind::Float).map_err(|err| HfError::Read {
                    path: file.clone(),
                    message: format!("tensor `{name}`: {err}"),
                })?
            };
            if tensors.insert(name.clone(), tensor).is_some() {
                return Err(HfError::Read {
                    path: file.clone(),
                    message: format!("tensor `{name}` is in more than one shard"),
                });
            }
        }
    }
    Ok(Weights {
        dir: dir.to_owned(),
        tensors,
    })
}

/// A repo's tensors, taken one by one by a network's builder; what is left
/// at the end is an error naming it.
pub(crate) struct Weights {
    dir: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// Tensor `name`, which must have `shape`.
    pub(crate) fn take(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, HfError> {
        let tensor = self.tensors.remove(name).ok_or_else(|| HfError::Mismatch {
            dir: self.dir.clone(),
            message: format!("tensor `{name}` is missing"),
        })?;
        if tensor.size() != shape {
            return Err(HfError::Mismatch {
                dir: self.dir.clone(),
                message: format!(
                    "tensor `{name}` has shape {:?}; the config makes it {shape:?}",
                    tensor.size()
                ),
            });
        }
        Ok(tensor)
    }

    /// The rows of tensor `name` (its first size), if it is there.
    pub(crate) fn rows(&self, name: &str) -> Option<i64> {
        self.tensors
            .get(name)
            .and_then(|tensor| tensor.size().first().copied())
    }

    /// Checks that every tensor was taken.
    pub(crate) fn finish(self) -> Result<(), HfError> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let shown: Vec<String> = names
            .iter()
            .take(5)
            .map(|name| format!("`{name}`"))
            .collect();
        Err(HfError::Mismatch {
            dir: self.dir,
            message: format!(
                "{} tensor(s) the architecture does not have: {}{}",
                names.len(),
                shown.join(", "),
                if names.len() > 5 { ", ..." } else { "" }
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_must_stay_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        for (shard, expected) in [
            ("../outside.safetensors", "not a plain file name"),
            ("/etc/passwd", "not a plain file name"),
            ("sub/dir.safetensors", "not a plain file name"),
            (".hidden", "not a plain file name"),
            ("absent.safetensors", "missing"),
        ] {
            let index = serde_json::json!({"weight_map": {"a.weight": shard}});
            fs_err::write(
                dir.path().join("model.safetensors.index.json"),
                index.to_string(),
            )
            .unwrap();
            let error = weight_files(dir.path()).unwrap_err().to_string();
            assert!(error.contains(expected), "{shard}: {error}");
        }
    }

    #[test]
    fn a_folder_without_weights_and_a_huge_or_odd_json_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let error = weight_files(dir.path()).unwrap_err().to_string();
        assert!(error.contains("no weights"), "{error}");
        fs_err::create_dir(dir.path().join("config.json")).unwrap();
        let error = read_json::<serde_json::Value>(dir.path(), "config.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a regular file"), "{error}");
        let big = vec![b' '; MAX_JSON_BYTES as usize + 1];
        fs_err::write(dir.path().join("preprocessor_config.json"), big).unwrap();
        let error = read_json::<serde_json::Value>(dir.path(), "preprocessor_config.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("beyond"), "{error}");
    }
}
