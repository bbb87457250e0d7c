//! State dicts written the way `torch.save` writes them, without torch.
//!
//! [`torch_save_zip`] reproduces the layout of PyTorch 2.13's
//! `PyTorchStreamWriter` (checked against files it wrote): records under a
//! `<stem>/` prefix (`data.pkl`, `byteorder`, `data/<key>`, `version`,
//! `.data/serialization_id`), every local header with bit 3 set (zero sizes
//! and a data descriptor after the data) and an `FB` extra field padding the
//! data to a 64-byte boundary, and a zip64 end record before the classic
//! one. [`torch_save_legacy`] writes the pre-1.6 format
//! (`_use_new_zipfile_serialization=False`), in which download.pytorch.org
//! still serves many torchvision weights.

/// One float32 tensor of a state dict: its name, shape and values
/// (row-major, `shape`'s product of them).
#[derive(Debug, Clone)]
pub struct StateTensor {
    /// The key in the state dict.
    pub name: String,
    /// The shape (empty for a scalar).
    pub shape: Vec<i64>,
    /// The values; an `i64` counter (`num_batches_tracked`) when `None`.
    pub values: Option<Vec<f32>>,
}

fn long(value: i64) -> Vec<u8> {
    let mut bytes = vec![0x8a, 8];
    bytes.extend(value.to_le_bytes());
    bytes
}

fn text(value: &str) -> Vec<u8> {
    let mut bytes = vec![b'X'];
    bytes.extend((value.len() as u32).to_le_bytes());
    bytes.extend(value.as_bytes());
    bytes
}

/// A state dict entry as the pickle names it: key, shape, and whether it
/// is a float32 tensor (else an `int64` counter).
struct Key<'a> {
    name: &'a str,
    shape: &'a [i64],
    float: bool,
}

/// The protocol-2 pickle of `OrderedDict(name -> _rebuild_tensor_v2(...))`
/// whose storages are keyed `0`, `1`, ... in order.
fn state_dict_pickle(tensors: &[Key<'_>]) -> Vec<u8> {
    let mut pickle = vec![0x80, 2];
    pickle.extend(b"ccollections\nOrderedDict\n)R(");
    for (index, tensor) in tensors.iter().enumerate() {
        let numel: i64 = tensor.shape.iter().product();
        let (storage, numel) = if tensor.float {
            ("FloatStorage", numel)
        } else {
            ("LongStorage", 1)
        };
        pickle.extend(text(tensor.name));
        pickle.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        pickle.extend(text("storage"));
        pickle.extend(format!("ctorch\n{storage}\n").as_bytes());
        pickle.extend(text(&index.to_string()));
        pickle.extend(text("cpu"));
        pickle.extend(long(numel));
        pickle.extend(b"tQ");
        pickle.extend(long(0));
        pickle.push(b'(');
        tensor
            .shape
            .iter()
            .for_each(|size| pickle.extend(long(*size)));
        pickle.extend(b"t(");
        let mut stride = 1i64;
        let mut strides: Vec<i64> = tensor
            .shape
            .iter()
            .rev()
            .map(|size| {
                let this = stride;
                stride *= size;
                this
            })
            .collect();
        strides.reverse();
        strides
            .iter()
            .for_each(|stride| pickle.extend(long(*stride)));
        pickle.extend(b"t\x89ccollections\nOrderedDict\n)RtR");
    }
    pickle.extend(b"u.");
    pickle
}

fn float_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn storage_bytes(tensor: &StateTensor) -> Vec<u8> {
    match &tensor.values {
        Some(values) => float_bytes(values),
        None => 0i64.to_le_bytes().to_vec(),
    }
}

fn keys(tensors: &[StateTensor]) -> Vec<Key<'_>> {
    tensors
        .iter()
        .map(|tensor| Key {
            name: &tensor.name,
            shape: &tensor.shape,
            float: tensor.values.is_some(),
        })
        .collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// `tensors` as `torch.save(state_dict, "<stem>.pth")` writes them.
pub fn torch_save_zip(stem: &str, tensors: &[StateTensor]) -> Vec<u8> {
    write_zip(stem, &keys(tensors), |index| storage_bytes(&tensors[index]))
}

/// As [`torch_save_zip`] for a state dict of float32 tensors given as
/// `(name, shape)` pairs, each one's values made by `values(name, shape)`
/// only when its record is written: no more than one tensor's values are
/// held beside the archive (DINOv2 ViT-g's is 4.5 GB).
pub fn torch_save_zip_lazy(
    stem: &str,
    layout: &[(String, Vec<i64>)],
    mut values: impl FnMut(&str, &[i64]) -> Vec<f32>,
) -> Vec<u8> {
    let keys: Vec<Key<'_>> = layout
        .iter()
        .map(|(name, shape)| Key {
            name,
            shape,
            float: true,
        })
        .collect();
    write_zip(stem, &keys, |index| {
        let (name, shape) = &layout[index];
        float_bytes(&values(name, shape))
    })
}

/// The zip `torch.save` writes for `keys`, storage `i`'s bytes from
/// `storage(i)`, asked for in order.
fn write_zip(stem: &str, keys: &[Key<'_>], mut storage: impl FnMut(usize) -> Vec<u8>) -> Vec<u8> {
    let head: Vec<(String, Vec<u8>)> = vec![
        (format!("{stem}/data.pkl"), state_dict_pickle(keys)),
        (format!("{stem}/byteorder"), b"little".to_vec()),
    ];
    let tail: Vec<(String, Vec<u8>)> = vec![
        (format!("{stem}/version"), b"3\n".to_vec()),
        (
            format!("{stem}/.data/serialization_id"),
            b"1234567890123456789012345678901234567890".to_vec(),
        ),
    ];
    // Every record's data, its name and up to 64 + 64 bytes of headers,
    // padding and descriptor: the archive grows without reallocating.
    let storage_bytes: i64 = keys
        .iter()
        .map(|key| {
            if key.float {
                4 * key.shape.iter().product::<i64>()
            } else {
                8
            }
        })
        .sum();
    let records = head.len() + keys.len() + tail.len();
    let mut out = Vec::with_capacity(
        storage_bytes as usize + records * (128 + stem.len() + 64) + head[0].1.len(),
    );
    let mut central = Vec::new();
    let mut count = 0u64;
    let mut write = |name: &str, data: &[u8]| {
        count += 1;
        let offset = out.len() as u64;
        let crc = crc32(data);
        // The FB field pads the data to a 64-byte boundary.
        let unpadded = offset as usize + 30 + name.len() + 4;
        let padding = (64 - unpadded % 64) % 64;
        out.extend(b"PK\x03\x04");
        out.extend(0u16.to_le_bytes()); // version needed (miniz writes 0)
        out.extend(0x0808u16.to_le_bytes()); // data descriptor, UTF-8
        out.extend(0u16.to_le_bytes()); // stored
        out.extend([0u8; 4]); // time, date
        out.extend([0u8; 12]); // crc and sizes: in the descriptor
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(((padding + 4) as u16).to_le_bytes());
        out.extend(name.as_bytes());
        out.extend(b"FB");
        out.extend((padding as u16).to_le_bytes());
        out.extend(std::iter::repeat_n(b'Z', padding));
        out.extend(data);
        // A zip64 data descriptor, as miniz writes it.
        out.extend(b"PK\x07\x08");
        out.extend(crc.to_le_bytes());
        out.extend((data.len() as u64).to_le_bytes());
        out.extend((data.len() as u64).to_le_bytes());
        central.extend(b"PK\x01\x02");
        out_central_entry(&mut central, name, crc, data.len() as u64, offset);
    };
    for (name, data) in &head {
        write(name, data);
    }
    for index in 0..keys.len() {
        write(&format!("{stem}/data/{index}"), &storage(index));
    }
    for (name, data) in &tail {
        write(name, data);
    }
    let directory_offset = out.len() as u64;
    let directory_size = central.len() as u64;
    out.extend(&central);
    let end64 = out.len() as u64;
    out.extend(b"PK\x06\x06");
    out.extend(44u64.to_le_bytes());
    out.extend(798u16.to_le_bytes());
    out.extend(45u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(count.to_le_bytes());
    out.extend(count.to_le_bytes());
    out.extend(directory_size.to_le_bytes());
    out.extend(directory_offset.to_le_bytes());
    out.extend(b"PK\x06\x07");
    out.extend(0u32.to_le_bytes());
    out.extend(end64.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    out.extend(b"PK\x05\x06");
    out.extend([0u8; 4]);
    out.extend((count.min(0xFFFF) as u16).to_le_bytes());
    out.extend((count.min(0xFFFF) as u16).to_le_bytes());
    out.extend((directory_size.min(0xFFFF_FFFF) as u32).to_le_bytes());
    out.extend((directory_offset.min(0xFFFF_FFFF) as u32).to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

fn out_central_entry(central: &mut Vec<u8>, name: &str, crc: u32, size: u64, offset: u64) {
    let large = offset >= 0xFFFF_FFFF || size >= 0xFFFF_FFFF;
    central.extend(798u16.to_le_bytes()); // made by
    central.extend(if large { 45u16 } else { 20u16 }.to_le_bytes());
    central.extend(0x0808u16.to_le_bytes());
    central.extend(0u16.to_le_bytes());
    central.extend([0u8; 4]);
    central.extend(crc.to_le_bytes());
    let (small_size, small_offset) = if large {
        (0xFFFF_FFFFu32, 0xFFFF_FFFFu32)
    } else {
        (size as u32, offset as u32)
    };
    central.extend(small_size.to_le_bytes());
    central.extend(small_size.to_le_bytes());
    central.extend((name.len() as u16).to_le_bytes());
    central.extend(if large { 28u16 } else { 0u16 }.to_le_bytes());
    central.extend(0u16.to_le_bytes()); // comment
    central.extend(0u16.to_le_bytes()); // disk
    central.extend(0u16.to_le_bytes()); // internal attributes
    central.extend(0u32.to_le_bytes()); // external attributes
    central.extend(small_offset.to_le_bytes());
    central.extend(name.as_bytes());
    if large {
        central.extend(1u16.to_le_bytes());
        central.extend(24u16.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend(offset.to_le_bytes());
    }
}

/// `tensors` as `torch.save(state_dict, f, _use_new_zipfile_serialization=False)`
/// writes them: magic number, protocol, system info, the state dict, the
/// storage keys (pickles back to back), then each storage as a `u64`
/// element count and its bytes.
pub fn torch_save_legacy(tensors: &[StateTensor]) -> Vec<u8> {
    let mut out = Vec::new();
    // LONG1 of the magic number 0x1950a86a20f9469cfc6c.
    out.extend(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.");
    out.extend(b"\x80\x02M\xe9\x03.");
    out.extend(b"\x80\x02}q\x00.");
    out.extend(state_dict_pickle(&keys(tensors)));
    out.extend(b"\x80\x02](");
    for index in 0..tensors.len() {
        out.extend(text(&index.to_string()));
    }
    out.extend(b"e.");
    for tensor in tensors {
        let bytes = storage_bytes(tensor);
        out.extend(
            (bytes.len() as u64 / if tensor.values.is_some() { 4 } else { 8 }).to_le_bytes(),
        );
        out.extend(bytes);
    }
    out
}

/// `n` numbers in `[0, 1)`: splitmix64 of the element index, seeded by the
/// byte sum of `name` (as `xtask/fixtures/fiftyone_named_weights.py`
/// computes them, bit for bit).
fn uniform(name: &str, n: u64) -> impl Iterator<Item = f64> {
    let seed = name.bytes().map(u64::from).sum::<u64>() * 1_000_003;
    (0..n).map(move |k| {
        let mut z = (k.wrapping_add(seed)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The weights `xtask/fixtures/fiftyone_named_weights.py` writes for the
/// tensor `name` of `shape`: uniform noise scaled like He initialisation
/// (variance `gain / fan_in`), BatchNorm statistics near identity.
pub fn formula(name: &str, shape: &[i64], gain: f64) -> Vec<f32> {
    let n: i64 = shape.iter().product();
    let scale = if shape.len() > 1 {
        (3.0 * gain / (n / shape[0]) as f64).sqrt()
    } else {
        1.0
    };
    uniform(name, n as u64)
        .map(|u| {
            let centred = 2.0 * u - 1.0;
            let value = if name.ends_with("running_var") {
                1.0 + 0.5 * u
            } else if name.ends_with("running_mean") {
                0.1 * centred
            } else if shape.len() == 1 && name.ends_with("weight") {
                1.0 + 0.1 * centred
            } else if shape.len() == 1 {
                0.1 * centred
            } else {
                centred * scale
            };
            value as f32
        })
        .collect()
}

/// A state dict with [`formula`] weights for the keys and shapes of
/// `layout` (`[name, shape, dtype]` triples, as
/// `real_layouts.json` lists them); `int64` entries are BatchNorm counters.
pub fn formula_state_dict(layout: &[serde_json::Value], gain: f64) -> Vec<StateTensor> {
    layout
        .iter()
        .filter_map(|entry| {
            let name = entry.get(0)?.as_str()?.to_owned();
            let shape: Vec<i64> = entry
                .get(1)?
                .as_array()?
                .iter()
                .filter_map(serde_json::Value::as_i64)
                .collect();
            let values = match entry.get(2)?.as_str()? {
                "int64" => None,
                _ => Some(formula(&name, &shape, gain)),
            };
            Some(StateTensor {
                name,
                shape,
                values,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lazy writer makes the same bytes as the eager one, asking for
    /// each tensor's values once, in order.
    #[test]
    fn lazy_archive_equals_the_eager_one() {
        let layout: Vec<(String, Vec<i64>)> = vec![
            ("blocks.0.attn.qkv.weight".into(), vec![6, 2]),
            ("norm.bias".into(), vec![2]),
            ("cls_token".into(), vec![1, 1, 2]),
        ];
        let tensors: Vec<StateTensor> = layout
            .iter()
            .map(|(name, shape)| StateTensor {
                name: name.clone(),
                shape: shape.clone(),
                values: Some(formula(name, shape, 2.0)),
            })
            .collect();
        let mut asked = Vec::new();
        let lazy = torch_save_zip_lazy("net", &layout, |name, shape| {
            asked.push(name.to_owned());
            formula(name, shape, 2.0)
        });
        assert_eq!(lazy, torch_save_zip("net", &tensors));
        let names: Vec<String> = layout.iter().map(|(name, _)| name.clone()).collect();
        assert_eq!(asked, names);
    }
}
