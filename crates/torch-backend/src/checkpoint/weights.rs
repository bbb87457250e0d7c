//! Reading weights: PyTorch `.pth`/`.pt` state dicts (zip and legacy),
//! `.safetensors`, `.ot`, and loading them into a `VarStore` with exact name
//! matching.
//!
//! Weights files are hostile input. Every number a file gives (sizes,
//! strides, offsets, storage lengths, element counts, header lengths) is
//! checked before it is used: negative values, arithmetic that overflows
//! 64 bits and views reaching past their storage are errors naming the file
//! and the tensor, and bytes are handed to libtorch only in slices whose
//! length matches what libtorch will read. Nothing in a weights file is
//! parsed by libtorch itself.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use tch::{Kind, TchError, Tensor, nn::VarStore};

use crate::checkpoint::pickle::{
    Object, PickleError, StorageRef, TensorRef, Value, unpickle, unpickle_prefix,
};
use crate::checkpoint::zip_archive::ZipArchive;

/// The largest `data.pkl` read from a zip checkpoint (a torchvision state
/// dict's is under 100 KiB).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// The largest safetensors header (the same bound as the `safetensors`
/// crate's).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// The most elements a tensor may have beyond its storage's: a view that
/// repeats elements (a zero stride) may not be larger than this, so a tiny
/// file cannot ask for gigabytes.
const MAX_EXPANDED_ELEMENTS: u64 = 1 << 20;

/// The most dimensions a tensor may have (libtorch's own limit is 64).
const MAX_RANK: usize = 64;

/// Why weights could not be read or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The file could not be read or is not a weights file.
    #[error("cannot read weights `{path}`: {message}")]
    Read {
        /// The weights file.
        path: String,
        /// Why.
        message: String,
    },
    /// The checkpoint's pickle could not be read.
    #[error("cannot read weights `{path}`: its pickle `{pickle}` is invalid")]
    Pickle {
        /// The weights file.
        path: String,
        /// The pickle inside it (`archive/data.pkl`, or the legacy
        /// format's n-th pickle).
        pickle: String,
        /// Why.
        #[source]
        source: PickleError,
    },
    /// One tensor of the file is invalid.
    #[error("cannot read weights `{path}`: tensor `{key}` is invalid")]
    Tensor {
        /// The weights file.
        path: String,
        /// The tensor's name in the file.
        key: String,
        /// Why.
        #[source]
        source: TensorError,
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

/// Why one tensor of a weights file is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// A dtype zoo does not read.
    #[error("unsupported dtype `{dtype}`")]
    UnsupportedDtype {
        /// The dtype as the file names it.
        dtype: String,
    },
    /// A negative size, stride or offset.
    #[error("negative {what} `{value}`")]
    Negative {
        /// `size`, `stride`, `offset` or `storage length`.
        what: &'static str,
        /// The value.
        value: i64,
    },
    /// Sizes and strides of different lengths, or too many dimensions.
    #[error("{sizes} sizes and {strides} strides (at most {MAX_RANK} dimensions)")]
    Rank {
        /// How many sizes.
        sizes: usize,
        /// How many strides.
        strides: usize,
    },
    /// An element count, byte count or offset overflows 64 bits.
    #[error("its {what} overflows 64 bits")]
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
    /// The view reaches past the end of its storage.
    #[error(
        "its view reaches element {reach} of storage `{storage}`, which holds {elements} elements"
    )]
    BeyondStorage {
        /// The storage key.
        storage: String,
        /// The furthest element the view touches.
        reach: u64,
        /// The storage's element count.
        elements: u64,
    },
    /// The view repeats its storage's elements into a far larger tensor.
    #[error(
        "it has {numel} elements from a storage of {elements} (views larger than their storage are capped at {MAX_EXPANDED_ELEMENTS} elements)"
    )]
    TooLarge {
        /// The tensor's element count.
        numel: u64,
        /// The storage's element count.
        elements: u64,
    },
    /// The storage's bytes do not match what the file declares.
    #[error("storage `{storage}` holds {actual} bytes, the file declares {declared}")]
    StorageLength {
        /// The storage key.
        storage: String,
        /// Bytes present.
        actual: u64,
        /// Bytes declared.
        declared: u64,
    },
    /// The storage the tensor views is not in the file.
    #[error("its storage `{storage}` is missing")]
    MissingStorage {
        /// The storage key.
        storage: String,
    },
    /// A safetensors entry is malformed.
    #[error("malformed safetensors entry: {reason}")]
    Entry {
        /// What was wrong.
        reason: String,
    },
    /// libtorch refused to build the tensor.
    #[error("libtorch cannot build it")]
    Torch {
        /// libtorch's error.
        #[source]
        source: TchError,
    },
}

impl From<TchError> for TensorError {
    fn from(source: TchError) -> Self {
        TensorError::Torch { source }
    }
}

fn kind_of(dtype: &str) -> Option<(Kind, u64)> {
    Some(match dtype {
        "Float" | "F32" => (Kind::Float, 4),
        "Double" | "F64" => (Kind::Double, 8),
        "Half" | "F16" => (Kind::Half, 2),
        "BFloat16" | "BF16" => (Kind::BFloat16, 2),
        "Long" | "I64" => (Kind::Int64, 8),
        "Int" | "I32" => (Kind::Int, 4),
        "Short" | "I16" => (Kind::Int16, 2),
        "Char" | "I8" => (Kind::Int8, 1),
        "Byte" | "U8" => (Kind::Uint8, 1),
        "Bool" | "BOOL" => (Kind::Bool, 1),
        _ => return None,
    })
}

/// The file being read, for errors.
pub(super) struct Source<'a> {
    pub(super) path: &'a Path,
}

impl Source<'_> {
    fn path(&self) -> String {
        self.path.display().to_string()
    }
    pub(super) fn read(&self, message: impl std::fmt::Display) -> WeightsError {
        WeightsError::Read {
            path: self.path(),
            message: message.to_string(),
        }
    }
    fn pickle(&self, pickle: &str, source: PickleError) -> WeightsError {
        WeightsError::Pickle {
            path: self.path(),
            pickle: pickle.to_owned(),
            source,
        }
    }
    pub(super) fn tensor(&self, key: &str, source: TensorError) -> WeightsError {
        WeightsError::Tensor {
            path: self.path(),
            key: key.to_owned(),
            source,
        }
    }
}

/// Reads every named tensor of a weights file, by format: a zip
/// (`torch.save` since 1.6, and tch's `.ot`, which is a TorchScript zip),
/// the legacy pre-1.6 `torch.save` format, or `.safetensors` (recognised by
/// name or content).
pub fn read_named_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, WeightsError> {
    let mut tensors = Vec::new();
    for_each_named_tensor(path, &mut |name, tensor| tensors.push((name, tensor)))?;
    Ok(tensors)
}

/// As [`read_named_tensors`], handing each tensor to `sink` as soon as it is
/// built. From a zip checkpoint (what `torch.save` writes since 1.6) no
/// more than one storage's bytes are held at a time, and a storage's tensor
/// is dropped once the last tensor viewing it has been handed over: a
/// `sink` that copies each tensor into a model and drops it loads the
/// weights beside the model with one storage's worth of extra memory, not
/// a second copy of every weight. The legacy format and safetensors are
/// read whole first, as before.
pub(crate) fn for_each_named_tensor(
    path: &Path,
    sink: &mut dyn FnMut(String, Tensor),
) -> Result<(), WeightsError> {
    let source = Source { path };
    let mut file = fs_err::File::open(path).map_err(|err| source.read(err))?;
    let mut head = Vec::with_capacity(9);
    (&mut file)
        .take(9)
        .read_to_end(&mut head)
        .map_err(|err| source.read(err))?;
    drop(file);
    let name = path.to_string_lossy().to_ascii_lowercase();
    // safetensors: an 8-byte little-endian header length, then JSON.
    if name.ends_with(".safetensors") || (head.len() == 9 && head[8] == b'{') {
        let data = fs_err::read(path).map_err(|err| source.read(err))?;
        return hand_over(read_safetensors(&source, &data)?, sink);
    }
    if head.starts_with(b"PK\x03\x04") {
        return read_zip(&source, sink);
    }
    // A pickle (protocol 2+) starts with PROTO: the legacy format.
    if head.first() == Some(&0x80) {
        let data = fs_err::read(path).map_err(|err| source.read(err))?;
        return hand_over(read_legacy(&source, &data)?, sink);
    }
    Err(source.read(
        "not a PyTorch checkpoint (zip or legacy), safetensors or .ot file; \
         give the weights file torch.save or safetensors wrote",
    ))
}

/// Hands `tensors` to `sink` one by one.
fn hand_over(
    tensors: Vec<(String, Tensor)>,
    sink: &mut dyn FnMut(String, Tensor),
) -> Result<(), WeightsError> {
    for (name, tensor) in tensors {
        sink(name, tensor);
    }
    Ok(())
}

/// A zip checkpoint: `<prefix>data.pkl` and the storages in
/// `<prefix>data/<key>`; also tch's `.ot` files (TorchScript archives whose
/// `data.pkl` holds a module with the tensors as attributes). Each tensor
/// goes to `sink` as soon as it is built; a storage's bytes are dropped once
/// its tensor is built, and that tensor once its last view is handed over.
fn read_zip(source: &Source<'_>, sink: &mut dyn FnMut(String, Tensor)) -> Result<(), WeightsError> {
    let (mut archive, prefix, value) = open_zip(source)?;
    let dict = state_dict(value).map_err(|message| source.read(message))?;
    zip_tensors(source, &mut archive, &prefix, dict, sink)
}

/// Builds `dict`'s tensors from the zip's storages, handing each to `sink`
/// as soon as it is built; a storage is dropped after its last view.
pub(super) fn zip_tensors<R: Read + std::io::Seek>(
    source: &Source<'_>,
    archive: &mut ZipArchive<R>,
    prefix: &str,
    dict: Vec<(String, TensorRef)>,
    sink: &mut dyn FnMut(String, Tensor),
) -> Result<(), WeightsError> {
    // The position of the last tensor viewing each storage.
    let last_use: HashMap<String, usize> = dict
        .iter()
        .enumerate()
        .map(|(index, (_, reference))| (reference.storage.key.clone(), index))
        .collect();
    let mut storages = Storages::default();
    for (index, (name, reference)) in dict.into_iter().enumerate() {
        let storage = &reference.storage;
        let tensor = storages
            .view(&reference, || read_zip_storage(archive, prefix, storage))
            .map_err(|err| source.tensor(&name, err))?;
        if last_use.get(&storage.key) == Some(&index) {
            storages.forget(&reference);
        }
        sink(name, tensor);
    }
    Ok(())
}

/// A zip checkpoint opened: the archive, the prefix of its records
/// (`archive/`, or the file's stem) and its unpickled `data.pkl`.
pub(super) type OpenedZip = (ZipArchive<std::io::BufReader<fs_err::File>>, String, Value);

/// Opens a zip checkpoint and unpickles its `data.pkl` (bounded by
/// [`MAX_PICKLE_BYTES`]).
pub(super) fn open_zip(source: &Source<'_>) -> Result<OpenedZip, WeightsError> {
    let file = fs_err::File::open(source.path).map_err(|err| source.read(err))?;
    let mut archive = ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|err| source.read(format!("not a readable zip: {}", chain(&err))))?;
    // `torch.save` names records `<prefix>/data.pkl` (the prefix is
    // `archive` or the file's stem); the shortest such name is the
    // checkpoint's own, not one nested in a record.
    let pickle_name = archive
        .names()
        .filter(|name| *name == "data.pkl" || name.ends_with("/data.pkl"))
        .min_by_key(|name| name.len())
        .map(str::to_owned)
        .ok_or_else(|| source.read("no `data.pkl` in the checkpoint"))?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_owned();
    let pickle = archive
        .read(&pickle_name, MAX_PICKLE_BYTES + 1)
        .map_err(|err| source.read(chain(&err)))?
        .ok_or_else(|| source.read(format!("no `{pickle_name}` in the checkpoint")))?;
    if pickle.len() as u64 > MAX_PICKLE_BYTES {
        return Err(source.read(format!(
            "`{pickle_name}` is larger than {MAX_PICKLE_BYTES} bytes"
        )));
    }
    let value = unpickle(&pickle).map_err(|err| source.pickle(&pickle_name, err))?;
    Ok((archive, prefix, value))
}

/// An error and its causes, one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

/// The bytes of one storage: as many as its persistent id declares (the
/// whole entry when it declares none), never more than the entry holds.
pub(super) fn read_zip_storage<R: Read + std::io::Seek>(
    archive: &mut ZipArchive<R>,
    prefix: &str,
    storage: &StorageRef,
) -> Result<Vec<u8>, TensorError> {
    let entry = format!("{prefix}data/{}", storage.key);
    let present = archive
        .size(&entry)
        .ok_or_else(|| TensorError::MissingStorage {
            storage: storage.key.clone(),
        })?;
    let declared = match storage.numel {
        Some(numel) => declared_bytes(storage, numel)?,
        None => present,
    };
    if present < declared {
        return Err(TensorError::StorageLength {
            storage: storage.key.clone(),
            actual: present,
            declared,
        });
    }
    let bytes = archive
        .read(&entry, declared)
        .map_err(|err| TensorError::Entry {
            reason: format!("storage `{}`: {}", storage.key, chain(&err)),
        })?
        .unwrap_or_default();
    if (bytes.len() as u64) < declared {
        return Err(TensorError::StorageLength {
            storage: storage.key.clone(),
            actual: bytes.len() as u64,
            declared,
        });
    }
    Ok(bytes)
}

/// `numel` elements of `storage`'s dtype, in bytes.
fn declared_bytes(storage: &StorageRef, numel: i64) -> Result<u64, TensorError> {
    let (_, width) = kind_of(&storage.dtype).ok_or_else(|| TensorError::UnsupportedDtype {
        dtype: storage.dtype.clone(),
    })?;
    let numel = u64::try_from(numel).map_err(|_| TensorError::Negative {
        what: "storage length",
        value: numel,
    })?;
    numel.checked_mul(width).ok_or(TensorError::Overflow {
        what: "storage byte count",
    })
}

/// The pre-1.6 `torch.save` format, which download.pytorch.org still serves
/// for many torchvision weights: pickles back to back (magic number,
/// protocol, system info, the object, the storage keys), then each storage
/// in key order as a little-endian `u64` element count and its raw bytes.
fn read_legacy(source: &Source<'_>, data: &[u8]) -> Result<Vec<(String, Tensor)>, WeightsError> {
    let mut offset = 0;
    let mut next = |what: &str| -> Result<Value, WeightsError> {
        let rest = data.get(offset..).unwrap_or_default();
        let (value, used) = unpickle_prefix(rest)
            .map_err(|err| source.pickle(&format!("{what} (at byte {offset})"), err))?;
        offset += used;
        Ok(value)
    };
    let magic = next("magic number")?;
    let expected: &[u8] = &[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    if !matches!(&magic, Value::Bytes(bytes) if bytes.as_ref() == expected) {
        return Err(source.read("not a legacy torch.save file (bad magic number)"));
    }
    let _protocol = next("protocol version")?;
    let _system = next("system info")?;
    let object = next("state dict")?;
    let Value::List(keys) = next("storage keys")? else {
        return Err(source.read("legacy checkpoint without a storage key list"));
    };
    let dict = state_dict(object).map_err(|message| source.read(message))?;
    // The tensor that names each storage, for errors and its dtype.
    let users: HashMap<&str, (&str, &StorageRef)> = dict
        .iter()
        .map(|(name, reference)| {
            let storage = reference.storage.as_ref();
            (storage.key.as_str(), (name.as_str(), storage))
        })
        .collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in &keys.items {
        let Value::Str(key) = key else {
            return Err(source.read("storage keys must be strings"));
        };
        let count_bytes: [u8; 8] = data
            .get(offset..)
            .and_then(|rest| rest.get(..8))
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                source.read(format!(
                    "truncated legacy checkpoint: no length for storage `{key}`"
                ))
            })?;
        offset += 8;
        let count = u64::from_le_bytes(count_bytes);
        let Some(&(name, storage)) = users.get(key.as_ref()) else {
            // Its width is unknown, so nothing after it can be found.
            return Err(source.read(format!(
                "storage `{key}` is used by no tensor, so its dtype is unknown"
            )));
        };
        let length = i64::try_from(count)
            .map_err(|_| TensorError::Overflow {
                what: "storage element count",
            })
            .and_then(|count| declared_bytes(storage, count))
            .map_err(|err| source.tensor(name, err))?;
        let bytes = usize::try_from(length)
            .ok()
            .and_then(|length| offset.checked_add(length))
            .and_then(|end| data.get(offset..end))
            .ok_or_else(|| {
                source.tensor(
                    name,
                    TensorError::StorageLength {
                        storage: key.to_string(),
                        actual: (data.len() - offset.min(data.len())) as u64,
                        declared: length,
                    },
                )
            })?;
        offset += bytes.len();
        storages.insert(key.to_string(), bytes);
    }
    let mut tensors = Storages::default();
    dict.into_iter()
        .map(|(name, reference)| {
            let bytes = storages.get(&reference.storage.key).ok_or_else(|| {
                source.tensor(
                    &name,
                    TensorError::MissingStorage {
                        storage: reference.storage.key.clone(),
                    },
                )
            })?;
            let tensor = tensors
                .view(&reference, || Ok::<_, TensorError>(*bytes))
                .map_err(|err| source.tensor(&name, err))?;
            Ok((name, tensor))
        })
        .collect()
}

/// The tensors of a checkpoint: the top-level dict, or its `state_dict` /
/// `model` entry when the checkpoint wraps one; or, for a TorchScript
/// archive (tch's `.ot`), the tensor attributes of its module and
/// submodules, named by their path (tch writes `.` as `|`).
fn state_dict(value: Value) -> Result<Vec<(String, TensorRef)>, String> {
    let dict = match value {
        Value::Dict(dict) => dict,
        Value::Object(object) => {
            let mut tensors = Vec::new();
            let mut budget = MAX_MODULE_ENTRIES;
            module_tensors(&object, "", &mut tensors, &mut budget)?;
            return Ok(tensors);
        }
        other => {
            return Err(format!(
                "the checkpoint is {}, not a dict of tensors",
                other.kind()
            ));
        }
    };
    let wrapped = dict
        .items
        .iter()
        .find_map(|(key, value)| match (key, value) {
            (Value::Str(key), Value::Dict(inner))
                if key.as_ref() == "state_dict" || key.as_ref() == "model" =>
            {
                Some(inner.clone())
            }
            _ => None,
        });
    let dict = wrapped.unwrap_or(dict);
    Ok(dict
        .items
        .iter()
        .filter_map(|(key, value)| match (key, value) {
            (Value::Str(key), Value::Tensor(tensor)) => {
                Some((key.to_string(), tensor.as_ref().clone()))
            }
            _ => None,
        })
        .collect())
}

/// The most attributes visited in a TorchScript archive's modules (shared
/// submodules are visited once per path, so this bounds the walk).
const MAX_MODULE_ENTRIES: usize = 1 << 20;

/// Collects the tensor attributes of `module` and its submodules under
/// `prefix`.
fn module_tensors(
    module: &Object,
    prefix: &str,
    tensors: &mut Vec<(String, TensorRef)>,
    budget: &mut usize,
) -> Result<(), String> {
    let Some(Value::Dict(attributes)) = &module.state else {
        return Err(format!(
            "the checkpoint is a `{}` object without attributes, not a dict of tensors",
            module.name
        ));
    };
    for (key, value) in &attributes.items {
        *budget = budget.checked_sub(1).ok_or_else(|| {
            format!("the checkpoint's modules hold more than {MAX_MODULE_ENTRIES} attributes")
        })?;
        let Value::Str(key) = key else { continue };
        let name = format!("{prefix}{}", key.replace('|', "."));
        match value {
            Value::Tensor(tensor) => tensors.push((name, tensor.as_ref().clone())),
            Value::Object(inner) if inner.state.is_some() => {
                module_tensors(inner, &format!("{name}."), tensors, budget)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Storages as flat tensors, each built once (by key and dtype) however
/// many tensors view it.
#[derive(Default)]
pub(super) struct Storages {
    built: HashMap<(String, String), Tensor>,
}

impl Storages {
    /// Drops `reference`'s storage (the tensors viewing it keep it alive as
    /// long as they need it).
    pub(super) fn forget(&mut self, reference: &TensorRef) {
        self.built.remove(&Self::key(reference));
    }

    /// A storage is built once per key and dtype.
    fn key(reference: &TensorRef) -> (String, String) {
        (
            reference.storage.key.clone(),
            reference.storage.dtype.clone(),
        )
    }

    /// The tensor `reference` describes, from the storage built before or
    /// from the bytes `read` gives (called only when it is not built), after
    /// checking every number against them.
    pub(super) fn view<B: AsRef<[u8]>>(
        &mut self,
        reference: &TensorRef,
        read: impl FnOnce() -> Result<B, TensorError>,
    ) -> Result<Tensor, TensorError> {
        let storage = &reference.storage;
        let (kind, width) =
            kind_of(&storage.dtype).ok_or_else(|| TensorError::UnsupportedDtype {
                dtype: storage.dtype.clone(),
            })?;
        let key = Self::key(reference);
        let flat = match self.built.entry(key) {
            std::collections::hash_map::Entry::Occupied(built) => {
                check_view(reference, built.get().numel() as u64)?;
                built.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                let bytes = read()?;
                let bytes = bytes.as_ref();
                let elements = bytes.len() as u64 / width;
                check_view(reference, elements)?;
                // libtorch reads exactly `elements * width` bytes: hand it
                // that slice.
                let whole = bytes.len() - bytes.len() % width as usize;
                let count = i64::try_from(elements).map_err(|_| TensorError::Overflow {
                    what: "storage element count",
                })?;
                slot.insert(Tensor::f_from_data_size(&bytes[..whole], &[count], kind)?)
            }
        };
        Ok(flat
            .f_as_strided(
                reference.size.as_slice(),
                reference.stride.as_slice(),
                reference.offset,
            )?
            .f_contiguous()?)
    }
}

/// Checks that the view `reference` describes lies inside a storage of
/// `elements` elements: no negative number, no overflow, no element past
/// the end, and not far larger than the storage.
fn check_view(reference: &TensorRef, elements: u64) -> Result<(), TensorError> {
    let (size, stride) = (&reference.size, &reference.stride);
    if size.len() != stride.len() || size.len() > MAX_RANK {
        return Err(TensorError::Rank {
            sizes: size.len(),
            strides: stride.len(),
        });
    }
    let unsigned = |what: &'static str, value: i64| {
        u64::try_from(value).map_err(|_| TensorError::Negative { what, value })
    };
    let offset = unsigned("offset", reference.offset)?;
    let sizes = size
        .iter()
        .map(|value| unsigned("size", *value))
        .collect::<Result<Vec<u64>, _>>()?;
    let strides = stride
        .iter()
        .map(|value| unsigned("stride", *value))
        .collect::<Result<Vec<u64>, _>>()?;
    let numel = sizes
        .iter()
        .try_fold(1u64, |total, size| total.checked_mul(*size))
        .ok_or(TensorError::Overflow {
            what: "element count",
        })?;
    if numel == 0 {
        return Ok(());
    }
    // The furthest element the view touches must exist.
    let reach = sizes
        .iter()
        .zip(&strides)
        .try_fold(offset, |reach, (size, stride)| {
            (size - 1)
                .checked_mul(*stride)
                .and_then(|step| reach.checked_add(step))
        })
        .ok_or(TensorError::Overflow {
            what: "furthest element",
        })?;
    if reach >= elements {
        return Err(TensorError::BeyondStorage {
            storage: reference.storage.key.clone(),
            reach,
            elements,
        });
    }
    if numel > elements.max(MAX_EXPANDED_ELEMENTS) {
        return Err(TensorError::TooLarge { numel, elements });
    }
    Ok(())
}

/// A `.safetensors` file: an 8-byte little-endian header length, a JSON
/// header `{name: {dtype, shape, data_offsets: [start, end]}}` (and an
/// optional `__metadata__`), then the data the offsets point into.
fn read_safetensors(
    source: &Source<'_>,
    data: &[u8],
) -> Result<Vec<(String, Tensor)>, WeightsError> {
    let length_bytes: [u8; 8] = data
        .get(..8)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| source.read("truncated safetensors file (no header length)"))?;
    let header_length = u64::from_le_bytes(length_bytes);
    if header_length > MAX_SAFETENSORS_HEADER {
        return Err(source.read(format!(
            "safetensors header of {header_length} bytes (at most {MAX_SAFETENSORS_HEADER})"
        )));
    }
    let header_end = usize::try_from(header_length)
        .ok()
        .and_then(|length| length.checked_add(8))
        .filter(|end| *end <= data.len())
        .ok_or_else(|| {
            source.read(format!(
                "safetensors header of {header_length} bytes in a file of {}",
                data.len()
            ))
        })?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&data[8..header_end])
            .map_err(|err| source.read(format!("invalid safetensors header: {err}")))?;
    let body = &data[header_end..];
    header
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .map(|(name, entry)| {
            let tensor = safetensors_tensor(entry, body).map_err(|err| source.tensor(name, err))?;
            Ok((name.clone(), tensor))
        })
        .collect()
}

fn safetensors_tensor(entry: &serde_json::Value, body: &[u8]) -> Result<Tensor, TensorError> {
    let malformed = |reason: &str| TensorError::Entry {
        reason: reason.to_owned(),
    };
    let dtype = entry
        .get("dtype")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| malformed("no `dtype` string"))?;
    let (kind, width) = kind_of(dtype).ok_or_else(|| TensorError::UnsupportedDtype {
        dtype: dtype.to_owned(),
    })?;
    let numbers = |field: &str| -> Result<Vec<u64>, TensorError> {
        entry
            .get(field)
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| malformed(&format!("no `{field}` list")))?
            .iter()
            .map(|value| {
                value.as_u64().ok_or_else(|| {
                    malformed(&format!("`{field}` holds `{value}`, not a whole number"))
                })
            })
            .collect()
    };
    let shape = numbers("shape")?;
    if shape.len() > MAX_RANK {
        return Err(TensorError::Rank {
            sizes: shape.len(),
            strides: shape.len(),
        });
    }
    let [start, end] = numbers("data_offsets")?[..] else {
        return Err(malformed("`data_offsets` is not [start, end]"));
    };
    let numel = shape
        .iter()
        .try_fold(1u64, |total, size| total.checked_mul(*size))
        .ok_or(TensorError::Overflow {
            what: "element count",
        })?;
    let declared = numel
        .checked_mul(width)
        .ok_or(TensorError::Overflow { what: "byte count" })?;
    let bytes = usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .filter(|(start, end)| start <= end)
        .and_then(|(start, end)| body.get(start..end))
        .ok_or_else(|| {
            malformed(&format!(
                "`data_offsets` [{start}, {end}] outside the {} data bytes",
                body.len()
            ))
        })?;
    if bytes.len() as u64 != declared {
        return Err(TensorError::StorageLength {
            storage: format!("[{start}, {end}]"),
            actual: bytes.len() as u64,
            declared,
        });
    }
    let shape = shape
        .iter()
        .map(|size| i64::try_from(*size))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|_| TensorError::Overflow { what: "shape" })?;
    Ok(Tensor::f_from_data_size(bytes, &shape, kind)?)
}

/// Copies `tensors` into `store`'s variables. Every variable must be present
/// with its shape, and every tensor must be used, except BatchNorm's
/// `num_batches_tracked` counters (tch keeps none).
pub fn load_into(
    store: &mut VarStore,
    tensors: Vec<(String, Tensor)>,
    path: &Path,
) -> Result<(), WeightsError> {
    let mut loader = Loader::new(store);
    for (name, tensor) in tensors {
        loader.offer(name, tensor);
    }
    loader.finish(path)
}

/// As [`load_into`] for the tensors of the weights file `path`, each
/// renamed by `rename` (`None` leaves it out) and copied into its variable
/// as soon as it is read, so that a zip checkpoint is loaded with one
/// storage's worth of memory beside the model (see
/// [`for_each_named_tensor`]).
pub(crate) fn load_file_into(
    store: &mut VarStore,
    path: &Path,
    rename: &dyn Fn(String) -> Option<String>,
) -> Result<(), WeightsError> {
    let mut loader = Loader::new(store);
    for_each_named_tensor(path, &mut |name, tensor| {
        if let Some(name) = rename(name) {
            loader.offer(name, tensor);
        }
    })?;
    loader.finish(path)
}

/// Copies tensors into a store's variables by exact name, noting what does
/// not fit.
struct Loader {
    /// The variables not loaded yet.
    variables: BTreeMap<String, Tensor>,
    /// Names offered that are no variable.
    extra: Vec<String>,
    misshapen: Vec<String>,
    failed: Vec<String>,
}

impl Loader {
    fn new(store: &VarStore) -> Loader {
        Loader {
            variables: store.variables().into_iter().collect(),
            extra: Vec::new(),
            misshapen: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Copies `tensor` into the variable `name`.
    fn offer(&mut self, name: String, tensor: Tensor) {
        let Some(mut variable) = self.variables.remove(&name) else {
            if !name.ends_with("num_batches_tracked") {
                self.extra.push(name);
            }
            return;
        };
        if tensor.size() != variable.size() {
            self.misshapen.push(format!(
                "`{name}` is {:?} in the file, {:?} in the model",
                tensor.size(),
                variable.size()
            ));
            return;
        }
        let copied = tch::no_grad(|| {
            tensor
                .f_to_kind(variable.kind())
                .and_then(|tensor| variable.f_copy_(&tensor))
        });
        if let Err(err) = copied {
            self.failed
                .push(format!("`{name}` cannot be copied: {err}"));
        }
    }

    /// Ok when every variable was loaded and every tensor used.
    fn finish(self, path: &Path) -> Result<(), WeightsError> {
        let Loader {
            variables,
            mut extra,
            misshapen,
            failed,
        } = self;
        let missing: Vec<String> = variables.into_keys().collect();
        extra.sort();
        extra.dedup();
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("missing {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            problems.push(format!("unexpected {}", extra.join(", ")));
        }
        problems.extend(misshapen);
        problems.extend(failed);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(WeightsError::Mismatch {
                path: path.display().to_string(),
                message: problems.join("; "),
            })
        }
    }
}
