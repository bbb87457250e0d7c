//! NumPy `.npy` (format 1.0) writing and reading, and FiftyOne's array
//! serialisation: the `.npy` bytes, zlib-compressed, in base64.

use std::io::{Read, Write};

use base64::Engine;
use serde_json::{Value, json};

/// NumPy's `GROWTH_AXIS_MAX_DIGITS`: `np.save` leaves this much room in the
/// header (less the digits of the first dimension) so the array can grow.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// The most bytes one decompressed array may have (256 MiB: an 8192 x 8192
/// `int32` mask), so a small hostile blob cannot inflate without bound.
/// [`array_from_json`] inflates no more than the `.npy` header declares,
/// and refuses a header that declares more than this.
pub const MAX_ARRAY_BYTES: u64 = 256 << 20;

/// The longest `.npy` header read (NumPy's own are under 4 KiB).
const MAX_HEADER_BYTES: usize = 64 << 10;

/// Why an array could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The value is none of the accepted forms.
    #[error(
        "expected `{{\"$binary\": {{\"base64\": ..., \"subType\": \"00\"}}}}` or a base64 string, found {found}"
    )]
    NotBinary {
        /// What was found, shortened.
        found: String,
    },
    /// The base64 text is malformed.
    #[error("the array's base64 is malformed")]
    Base64(#[source] base64::DecodeError),
    /// The bytes are not zlib data.
    #[error("the array is not zlib-compressed `.npy` bytes")]
    Zlib(#[source] std::io::Error),
    /// The decompressed array is larger than its cap, or than its header
    /// declares.
    #[error("the array inflates to {size} bytes or more, over the limit of {limit} bytes")]
    TooBig {
        /// How many bytes it declared or inflated to (at least).
        size: u64,
        /// The cap: the smaller of the caller's limit and the size its header
        /// declares.
        limit: u64,
    },
    /// The `.npy` header is malformed.
    #[error("malformed `.npy` data: {0}")]
    Header(String),
}

/// An array read from `.npy` bytes: its dtype (`|u1`, `<f4`, ...), shape
/// and raw C-order data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyArray {
    /// NumPy's `descr`, e.g. `<f4`.
    pub dtype: String,
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The values, in C order, as stored.
    pub data: Vec<u8>,
}

impl NpyArray {
    /// The values as `f32`, for dtypes `<f4` and `<f8` (narrowed), `|u1`,
    /// `|b1`; `None` for any other dtype.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match self.dtype.as_str() {
            "<f4" => Some(
                self.data
                    .chunks_exact(4)
                    .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                    .collect(),
            ),
            "<f8" => Some(
                self.data
                    .chunks_exact(8)
                    .map(|bytes| {
                        let mut array = [0; 8];
                        array.copy_from_slice(bytes);
                        f64::from_le_bytes(array) as f32
                    })
                    .collect(),
            ),
            "|u1" | "|b1" => Some(self.data.iter().map(|value| f32::from(*value)).collect()),
            _ => None,
        }
    }
}

/// The `.npy` bytes of a C-order array of `dtype` (e.g. `|u1`, `<f4`) and
/// `shape`, with `data` already in that layout: the same bytes as NumPy's
/// `np.save` (header padded for growth and to 64 bytes).
pub fn npy_bytes(dtype: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_text = match shape {
        [single] => format!("({single},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape_text}, }}");
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        header.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a
    // multiple of 64 with at least one space, as NumPy's `_wrap_header`.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(64 - unpadded % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The `.npy` bytes of little-endian `f32` values of `shape`.
pub fn npy_f32_bytes(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    npy_bytes("<f4", shape, &data)
}

/// Reads `.npy` bytes (format 1.x, 2.x or 3.x, C order).
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    let bad = |what: &str| NpyError::Header(what.to_owned());
    let (dtype, shape, data_start, expected) = npy_layout(bytes)?;
    let data = &bytes[data_start..];
    if data.len() != expected {
        return Err(bad(&format!(
            "{} data bytes for shape {shape:?} of `{dtype}` ({expected} expected)",
            data.len()
        )));
    }
    Ok(NpyArray {
        dtype,
        shape,
        data: data.to_vec(),
    })
}

/// The header of `.npy` bytes (which must hold at least the whole header):
/// dtype, shape, where the data starts and how many data bytes it declares.
fn npy_layout(bytes: &[u8]) -> Result<(String, Vec<usize>, usize, usize), NpyError> {
    let bad = |what: &str| NpyError::Header(what.to_owned());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no `\\x93NUMPY` magic"));
    }
    let (header_start, header_len) = match bytes[6] {
        1 => (
            10_usize,
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
        ),
        2 | 3 if bytes.len() >= 12 => (
            12,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        _ => return Err(bad("unknown format version")),
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| bad("header runs past the end"))?;
    let header = std::str::from_utf8(&bytes[header_start..data_start])
        .map_err(|_| bad("header is not text"))?;
    let quoted = |key: &str| -> Result<String, NpyError> {
        let rest = header
            .split_once(&format!("'{key}':"))
            .ok_or_else(|| bad(&format!("no `{key}`")))?
            .1
            .trim_start();
        let rest = rest
            .strip_prefix('\'')
            .ok_or_else(|| bad(&format!("`{key}` is not a string")))?;
        Ok(rest
            .split_once('\'')
            .ok_or_else(|| bad(&format!("`{key}` is not closed")))?
            .0
            .to_owned())
    };
    let dtype = quoted("descr")?;
    if header.contains("'fortran_order': True") {
        return Err(bad("fortran order is not supported"));
    }
    let shape_text = header
        .split_once("'shape':")
        .and_then(|(_, rest)| rest.split_once('('))
        .and_then(|(_, rest)| rest.split_once(')'))
        .ok_or_else(|| bad("no `shape`"))?
        .0;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<usize>().map_err(|_| bad("a bad dimension")))
        .collect::<Result<Vec<_>, _>>()?;
    let item = match dtype.as_bytes().last() {
        Some(digit @ b'1'..=b'8') => usize::from(digit - b'0'),
        _ => return Err(bad(&format!("unsupported dtype `{dtype}`"))),
    };
    let expected = shape
        .iter()
        .try_fold(item, |total, dim| total.checked_mul(*dim))
        .ok_or_else(|| bad("the shape overflows"))?;
    Ok((dtype, shape, data_start, expected))
}

/// FiftyOne's `serialize_numpy_array`: `.npy` bytes, zlib-compressed, as
/// extended JSON `{"$binary": {"base64": ..., "subType": "00"}}`.
pub fn array_to_json(dtype: &str, shape: &[usize], data: &[u8]) -> Value {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let compressed = encoder
        .write_all(&npy_bytes(dtype, shape, data))
        .and_then(|()| encoder.finish())
        .unwrap_or_default();
    json!({"$binary": {
        "base64": base64::engine::general_purpose::STANDARD.encode(compressed),
        "subType": "00",
    }})
}

/// Reads an array as FiftyOne stores one: `{"$binary": {"base64": ...,
/// "subType": ...}}`, the legacy `{"$binary": "...", "$type": "00"}`, or a
/// bare base64 string, each of zlib-compressed `.npy` bytes.
pub fn array_from_json(value: &Value) -> Result<NpyArray, NpyError> {
    array_from_json_within(value, MAX_ARRAY_BYTES)
}

/// [`array_from_json`] with at most `max_bytes` of `.npy` bytes: the header
/// is inflated first, an array whose header declares more is refused
/// before its data is inflated, and inflating stops one byte past what the
/// header declares, so a zlib bomb costs no more memory than its declared
/// size.
pub fn array_from_json_within(value: &Value, max_bytes: u64) -> Result<NpyArray, NpyError> {
    let text = match value {
        Value::String(text) => Some(text.as_str()),
        Value::Object(object) => match object.get("$binary") {
            Some(Value::Object(binary)) => binary.get("base64").and_then(Value::as_str),
            Some(Value::String(text)) => Some(text.as_str()),
            _ => None,
        },
        _ => None,
    };
    let Some(text) = text else {
        let text = value.to_string();
        let mut found: String = text.chars().take(60).collect();
        if found.len() < text.len() {
            found.push_str("...");
        }
        return Err(NpyError::NotBinary { found });
    };
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(NpyError::Base64)?;
    let mut decoder = flate2::read::ZlibDecoder::new(compressed.as_slice());
    let mut bytes = Vec::new();
    let mut inflate = |bytes: &mut Vec<u8>, len: u64| {
        (&mut decoder)
            .take(len)
            .read_to_end(bytes)
            .map_err(NpyError::Zlib)
    };
    // Magic, version and the header's length: 12 bytes at most.
    inflate(&mut bytes, 12)?;
    let header_end = match bytes.get(6) {
        Some(1) if bytes.len() >= 10 => 10 + usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
        Some(2 | 3) if bytes.len() >= 12 => {
            12 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
        }
        _ => return parse_npy(&bytes),
    };
    if header_end > MAX_HEADER_BYTES {
        return Err(NpyError::Header(format!(
            "a header of {header_end} bytes (at most {MAX_HEADER_BYTES})"
        )));
    }
    let rest = (header_end - bytes.len().min(header_end)) as u64;
    inflate(&mut bytes, rest)?;
    if bytes.len() < header_end {
        return parse_npy(&bytes);
    }
    let (_, _, data_start, expected) = npy_layout(&bytes)?;
    let declared = (data_start as u64).saturating_add(expected as u64);
    if declared > max_bytes {
        return Err(NpyError::TooBig {
            size: declared,
            limit: max_bytes,
        });
    }
    // One byte past the declared size tells a longer stream from a whole one.
    let rest = declared + 1 - bytes.len() as u64;
    inflate(&mut bytes, rest)?;
    if bytes.len() as u64 > declared {
        return Err(NpyError::TooBig {
            size: bytes.len() as u64,
            limit: declared,
        });
    }
    parse_npy(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_byte_for_byte_numpys() {
        // `np.save` of NumPy 2.4 (the FiftyOne 1.22.1 test venv), headers
        // copied from its output.
        let cases: [(&str, &[usize], &str); 3] = [
            (
                "|b1",
                &[1, 2],
                "{'descr': '|b1', 'fortran_order': False, 'shape': (1, 2), }",
            ),
            (
                "<f4",
                &[3],
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
            ),
            (
                "<f8",
                &[],
                "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
            ),
        ];
        for (dtype, shape, dict) in cases {
            let bytes = npy_bytes(dtype, shape, &[]);
            assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00v\x00", "{dtype}");
            let header = std::str::from_utf8(&bytes[10..]).unwrap();
            assert_eq!(header.len(), 118);
            assert!(header.starts_with(dict), "{header}");
            assert!(header.ends_with('\n'));
            assert_eq!(header.trim_end(), dict);
        }
        let vector = npy_f32_bytes(&[2], &[1.0, 2.0]);
        assert!(String::from_utf8_lossy(&vector).contains("'shape': (2,)"));
    }

    #[test]
    fn arrays_round_trip_through_base64_zlib() {
        let value = array_to_json("|u1", &[2, 3], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(value["$binary"]["subType"], "00");
        let array = array_from_json(&value).unwrap();
        assert_eq!(array.shape, vec![2, 3]);
        assert_eq!(array.dtype, "|u1");
        assert_eq!(array.data, vec![0, 1, 2, 3, 4, 5]);
        let bare = value["$binary"]["base64"].clone();
        assert_eq!(array_from_json(&bare).unwrap(), array);
        let legacy = json!({"$binary": bare, "$type": "00"});
        assert_eq!(array_from_json(&legacy).unwrap(), array);
    }

    #[test]
    fn a_zlib_bomb_inflates_no_further_than_its_header_declares() {
        // An honest header for 4 floats, then 64 MiB of zeros: refused after
        // 4 floats and one byte.
        let mut npy = npy_f32_bytes(&[4], &[0.0; 4]);
        npy.resize(npy.len() + (64 << 20), 0);
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&npy).unwrap();
        let compressed = encoder.finish().unwrap();
        let value = json!(base64::engine::general_purpose::STANDARD.encode(&compressed));
        assert!(matches!(
            array_from_json(&value),
            Err(NpyError::TooBig { limit, .. }) if limit == 128 + 16
        ));
        // A header that declares more than the cap is refused before its data.
        let big = array_to_json("<f4", &[1 << 20], &vec![0; 4 << 20]);
        assert!(matches!(
            array_from_json_within(&big, 1 << 20),
            Err(NpyError::TooBig { size, limit: 1_048_576 }) if size > 4 << 20
        ));
        assert_eq!(
            array_from_json_within(&big, 8 << 20).unwrap().shape,
            vec![1 << 20]
        );
    }

    #[test]
    fn hostile_arrays_are_errors_not_panics() {
        for value in [
            json!(3),
            json!("not base64!"),
            json!("aGVsbG8="),
            json!({"$binary": {"base64": 5}}),
        ] {
            assert!(array_from_json(&value).is_err(), "{value}");
        }
        for bytes in [
            &b"\x93NUMPY\x01\x00\xff\xff{"[..],
            b"\x93NUMPY\x09\x00\x00\x00",
            b"short",
        ] {
            assert!(parse_npy(bytes).is_err());
        }
        let mut truncated = npy_bytes("<f4", &[4], &[0; 16]);
        truncated.pop();
        assert!(parse_npy(&truncated).is_err());
        let huge = npy_bytes("<f8", &[usize::MAX / 2, 4], &[]);
        assert!(parse_npy(&huge).is_err());
    }
}
