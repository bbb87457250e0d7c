//! Reading weights: PyTorch `.pth`/`.pt` state dicts, `.safetensors`, `.ot`,
//! and loading them into a `VarStore` with exact name matching.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use tch::{Kind, Tensor, nn::VarStore};

use crate::pickle::{TensorRef, Value, unpickle};

/// Why weights could not be read or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The file could not be read or parsed.
    #[error("cannot read weights `{path}`: {message}")]
    Read {
        /// The weights file.
        path: String,
        /// Why.
        message: String,
    },
    /// The file's tensors do not fit the architecture.
    #[error("weights `{path}` do not fit the architecture: {message}")]
    Mismatch {
        /// The weights file.
        path: String,
        /// Which tensors are missing, extra or misshapen.
        message: String,
    },
}

fn kind_of(dtype: &str) -> Option<(Kind, usize)> {
    Some(match dtype {
        "Float" => (Kind::Float, 4),
        "Double" => (Kind::Double, 8),
        "Half" => (Kind::Half, 2),
        "BFloat16" => (Kind::BFloat16, 2),
        "Long" => (Kind::Int64, 8),
        "Int" => (Kind::Int, 4),
        "Short" => (Kind::Int16, 2),
        "Char" => (Kind::Int8, 1),
        "Byte" => (Kind::Uint8, 1),
        "Bool" => (Kind::Bool, 1),
        _ => return None,
    })
}

/// Reads every named tensor of a weights file, by format: a zip (`torch.save`
/// since 1.6), `.safetensors`, or tch's `.ot`.
pub fn read_named_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, WeightsError> {
    let error = |message: String| WeightsError::Read {
        path: path.display().to_string(),
        message,
    };
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".safetensors") {
        return Tensor::read_safetensors(path).map_err(|err| error(err.to_string()));
    }
    if name.ends_with(".ot") {
        return Tensor::load_multi(path).map_err(|err| error(err.to_string()));
    }
    let mut head = [0u8; 9];
    let mut file = fs_err::File::open(path).map_err(|err| error(err.to_string()))?;
    file.read_exact(&mut head)
        .map_err(|err| error(err.to_string()))?;
    // safetensors: an 8-byte little-endian header length, then JSON.
    let header = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
    let size = fs_err::metadata(path)
        .map_err(|err| error(err.to_string()))?
        .len();
    if head[8] == b'{' && header > 1 && header < size {
        return Tensor::read_safetensors(path).map_err(|err| error(err.to_string()));
    }
    if &head[..4] == b"PK\x03\x04" {
        return read_pth(path).map_err(error);
    }
    // A pickle (protocol 2+) starts with PROTO: the legacy format.
    if head[0] == 0x80 {
        return read_legacy(path).map_err(error);
    }
    Err(error(
        "not a PyTorch checkpoint (zip or legacy), safetensors or .ot file".into(),
    ))
}

fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let file = fs_err::File::open(path).map_err(|err| err.to_string())?;
    let mut archive =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|err| err.to_string())?;
    let pickle_name = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|name| name.ends_with("data.pkl"))
        .map(|name| name.into_owned())
        .ok_or("no `data.pkl` in the checkpoint")?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_owned();
    let mut pickle = Vec::new();
    archive
        .by_name(&pickle_name)
        .map_err(|err| err.to_string())?
        .read_to_end(&mut pickle)
        .map_err(|err| err.to_string())?;
    let value = unpickle(&pickle)?;
    let dict = state_dict(value)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::with_capacity(dict.len());
    for (name, reference) in dict {
        if !storages.contains_key(&reference.key) {
            let mut bytes = Vec::new();
            archive
                .by_name(&format!("{prefix}data/{}", reference.key))
                .map_err(|err| format!("storage `{}`: {err}", reference.key))?
                .read_to_end(&mut bytes)
                .map_err(|err| err.to_string())?;
            storages.insert(reference.key.clone(), bytes);
        }
        let bytes = &storages[&reference.key];
        tensors.push((name.clone(), materialise(&name, &reference, bytes)?));
    }
    Ok(tensors)
}

/// The pre-1.6 `torch.save` format, which download.pytorch.org still serves
/// for many torchvision weights: pickles back to back (magic number,
/// protocol, system info, the object, the storage keys), then each storage
/// in key order as a little-endian `u64` element count and its raw bytes.
fn read_legacy(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let data = fs_err::read(path).map_err(|err| err.to_string())?;
    let mut offset = 0;
    let mut next = || -> Result<Value, String> {
        let (value, used) = crate::pickle::unpickle_prefix(&data[offset..])?;
        offset += used;
        Ok(value)
    };
    let magic = next()?;
    let expected: &[u8] = &[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    if magic != Value::Bytes(expected.to_vec()) {
        return Err("not a legacy torch.save file (bad magic number)".into());
    }
    let _protocol = next()?;
    let _system = next()?;
    let object = next()?;
    let Value::List(keys) = next()? else {
        return Err("legacy checkpoint without a storage key list".into());
    };
    let dict = state_dict(object)?;
    let widths: HashMap<String, usize> = dict
        .iter()
        .filter_map(|(_, reference)| {
            kind_of(&reference.dtype).map(|(_, width)| (reference.key.clone(), width))
        })
        .collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err("storage keys must be strings".into());
        };
        let width = *widths
            .get(&key)
            .ok_or_else(|| format!("storage `{key}` has no tensor telling its dtype"))?;
        let count_bytes: [u8; 8] = data
            .get(offset..offset + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or("truncated legacy checkpoint")?;
        let count = u64::from_le_bytes(count_bytes) as usize;
        offset += 8;
        let length = count.checked_mul(width).ok_or("storage too large")?;
        let bytes = data
            .get(offset..offset + length)
            .ok_or("truncated legacy checkpoint")?;
        offset += length;
        storages.insert(key, bytes.to_vec());
    }
    dict.into_iter()
        .map(|(name, reference)| {
            let bytes = storages
                .get(&reference.key)
                .ok_or_else(|| format!("storage `{}` missing", reference.key))?;
            Ok((name.clone(), materialise(&name, &reference, bytes)?))
        })
        .collect()
}

/// The tensors of a checkpoint: the top-level dict, or its `state_dict` /
/// `model` entry when the checkpoint wraps one.
fn state_dict(value: Value) -> Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(items) = value else {
        return Err("the checkpoint is not a dict of tensors".into());
    };
    let wrapped = items.iter().find_map(|(key, value)| match (key, value) {
        (Value::Str(key), Value::Dict(inner)) if key == "state_dict" || key == "model" => {
            Some(inner.clone())
        }
        _ => None,
    });
    let items = wrapped.unwrap_or(items);
    Ok(items
        .into_iter()
        .filter_map(|(key, value)| match (key, value) {
            (Value::Str(key), Value::Tensor(tensor)) => Some((key, tensor)),
            _ => None,
        })
        .collect())
}

fn materialise(name: &str, reference: &TensorRef, bytes: &[u8]) -> Result<Tensor, String> {
    let (kind, width) = kind_of(&reference.dtype).ok_or_else(|| {
        format!(
            "tensor `{name}` has unsupported dtype `{}`",
            reference.dtype
        )
    })?;
    let numel = (bytes.len() / width) as i64;
    // The furthest element the view touches must exist.
    let reach: i64 = reference.offset
        + reference
            .size
            .iter()
            .zip(&reference.stride)
            .map(|(size, stride)| (size - 1).max(0) * stride)
            .sum::<i64>();
    if reference.size.iter().all(|size| *size > 0) && reach >= numel {
        return Err(format!("tensor `{name}` points past its storage"));
    }
    let storage = Tensor::from_data_size(bytes, &[numel], kind);
    Ok(storage
        .as_strided(
            reference.size.as_slice(),
            reference.stride.as_slice(),
            reference.offset,
        )
        .contiguous())
}

/// Copies `tensors` into `store`'s variables. Every variable must be present
/// with its shape, and every tensor must be used, except BatchNorm's
/// `num_batches_tracked` counters (tch keeps none).
pub fn load_into(
    store: &mut VarStore,
    tensors: Vec<(String, Tensor)>,
    path: &Path,
) -> Result<(), WeightsError> {
    let mismatch = |message: String| WeightsError::Mismatch {
        path: path.display().to_string(),
        message,
    };
    let mut by_name: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    let variables = store.variables();
    let mut missing = Vec::new();
    let mut misshapen = Vec::new();
    tch::no_grad(|| {
        for (name, mut variable) in variables {
            match by_name.remove(&name) {
                None => missing.push(name),
                Some(tensor) if tensor.size() != variable.size() => {
                    misshapen.push(format!(
                        "`{name}` is {:?} in the file, {:?} in the model",
                        tensor.size(),
                        variable.size()
                    ));
                }
                Some(tensor) => variable.copy_(&tensor.to_kind(variable.kind())),
            }
        }
    });
    let extra: Vec<String> = by_name
        .into_keys()
        .filter(|name| !name.ends_with("num_batches_tracked"))
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        missing.sort();
        problems.push(format!("missing {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        problems.push(format!("unexpected {}", extra.join(", ")));
    }
    problems.extend(misshapen);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(mismatch(problems.join("; ")))
    }
}
