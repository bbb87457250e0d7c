//! A small zip reader for `torch.save` checkpoints, driven by the central
//! directory alone.
//!
//! `torch.save` (PyTorch's `PyTorchStreamWriter`, miniz underneath) writes
//! every layout this reads: records under a prefix folder (`archive/`,
//! or the file's stem since torch 2.x), local headers padded with an `FB`
//! extra field so each record's data starts on a 64-byte boundary, bit 3
//! set (sizes zero in the local header, a data descriptor after the data),
//! and a zip64 end record even for small files. Sizes and offsets are taken
//! from the central directory (zip64 extra fields where a 32-bit field
//! says `0xFFFFFFFF`); a local header only says where its data starts.
//! Entries are stored or deflated; anything else (encryption, other
//! methods, multi-disk archives) is an error naming the entry.
//!
//! The file is hostile: every offset and size is checked against the file's
//! length before it is used, the central directory and its entry count are
//! bounded, and each entry's CRC-32 is checked.

use std::io::{Read, Seek, SeekFrom};

/// The most entries a checkpoint's central directory may list (a
/// torchvision state dict has a few hundred).
const MAX_ENTRIES: u64 = 1 << 20;

/// The largest central directory read (a few hundred entries take tens of
/// KiB).
const MAX_DIRECTORY_BYTES: u64 = 256 << 20;

/// The end-of-central-directory record may be followed by a comment of up
/// to this many bytes.
const MAX_COMMENT: u64 = 0xFFFF;

const END_SIGNATURE: [u8; 4] = *b"PK\x05\x06";
const END64_SIGNATURE: [u8; 4] = *b"PK\x06\x06";
const LOCATOR64_SIGNATURE: [u8; 4] = *b"PK\x06\x07";
const CENTRAL_SIGNATURE: [u8; 4] = *b"PK\x01\x02";
const LOCAL_SIGNATURE: [u8; 4] = *b"PK\x03\x04";

/// Why a zip checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ZipError {
    /// Reading the file failed.
    #[error("cannot read the zip")]
    Io(#[source] std::io::Error),
    /// The archive's structure is invalid.
    #[error("invalid zip: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
    /// One entry cannot be read.
    #[error("zip entry `{name}`: {reason}")]
    Entry {
        /// The entry's name.
        name: String,
        /// What was wrong.
        reason: String,
    },
}

fn invalid(reason: impl Into<String>) -> ZipError {
    ZipError::Invalid {
        reason: reason.into(),
    }
}

/// One entry of the central directory.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    method: u16,
    flags: u16,
    crc32: u32,
    compressed: u64,
    uncompressed: u64,
    local_header: u64,
}

/// A zip archive's entries, read from its central directory.
#[derive(Debug)]
pub(crate) struct ZipArchive<R> {
    reader: R,
    length: u64,
    entries: Vec<Entry>,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    bytes
        .get(at..at + 2)
        .and_then(|slice| slice.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|slice| slice.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|slice| slice.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

impl<R: Read + Seek> ZipArchive<R> {
    /// Reads the central directory of the zip in `reader`.
    pub(crate) fn new(mut reader: R) -> Result<Self, ZipError> {
        let length = reader.seek(SeekFrom::End(0)).map_err(ZipError::Io)?;
        // The end record (22 bytes) and its comment are in the last 64 KiB.
        let tail_length = length.min(22 + MAX_COMMENT);
        let tail_start = length - tail_length;
        let tail = read_at(&mut reader, tail_start, tail_length)?;
        let end = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&at| {
                tail[at..at + 4] == END_SIGNATURE
                    && at as u64 + 22 + u64::from(u16_at(&tail, at + 20)) <= tail.len() as u64
            })
            .ok_or_else(|| invalid("no end-of-central-directory record"))?;
        let end_offset = tail_start + end as u64;
        let record = &tail[end..end + 22];
        let mut count = u64::from(u16_at(record, 10));
        let mut size = u64::from(u32_at(record, 12));
        let mut offset = u64::from(u32_at(record, 16));
        let disk = u16_at(record, 4);
        let mut directory_end = end_offset;
        // A zip64 locator right before the end record points at the zip64
        // end record, whose numbers replace the 32-bit ones.
        if end_offset >= 20 {
            let locator = read_at(&mut reader, end_offset - 20, 20)?;
            if locator[..4] == LOCATOR64_SIGNATURE {
                let record64_offset = u64_at(&locator, 8);
                if record64_offset
                    .checked_add(56)
                    .is_none_or(|end| end > end_offset - 20)
                {
                    return Err(invalid(format!(
                        "the zip64 end record offset {record64_offset} is outside the file"
                    )));
                }
                let record64 = read_at(&mut reader, record64_offset, 56)?;
                if record64[..4] != END64_SIGNATURE {
                    return Err(invalid(format!(
                        "no zip64 end record at offset {record64_offset}"
                    )));
                }
                count = u64_at(&record64, 32);
                size = u64_at(&record64, 40);
                offset = u64_at(&record64, 48);
                directory_end = record64_offset;
            }
        }
        if disk != 0 && disk != 0xFFFF {
            return Err(invalid("multi-disk archives are not supported"));
        }
        if count > MAX_ENTRIES {
            return Err(invalid(format!("{count} entries (at most {MAX_ENTRIES})")));
        }
        if size > MAX_DIRECTORY_BYTES {
            return Err(invalid(format!(
                "a central directory of {size} bytes (at most {MAX_DIRECTORY_BYTES})"
            )));
        }
        // Bytes before the archive (a prefixed file) shift every offset:
        // the directory ends where the end records begin.
        let shift = directory_end
            .checked_sub(size)
            .and_then(|start| start.checked_sub(offset))
            .ok_or_else(|| {
                invalid(format!(
                    "the central directory ({size} bytes at offset {offset}) overlaps the end record"
                ))
            })?;
        let directory = read_at(&mut reader, offset + shift, size)?;
        let mut entries = Vec::with_capacity(count.min(4096) as usize);
        let mut at = 0usize;
        for index in 0..count {
            let header = directory
                .get(at..at + 46)
                .ok_or_else(|| invalid(format!("central directory entry {index} is truncated")))?;
            if header[..4] != CENTRAL_SIGNATURE {
                return Err(invalid(format!(
                    "central directory entry {index} has no signature (at offset {})",
                    offset + shift + at as u64
                )));
            }
            let name_length = usize::from(u16_at(header, 28));
            let extra_length = usize::from(u16_at(header, 30));
            let comment_length = usize::from(u16_at(header, 32));
            let name_bytes = directory
                .get(at + 46..at + 46 + name_length)
                .ok_or_else(|| invalid(format!("central directory entry {index} is truncated")))?;
            let extra = directory
                .get(at + 46 + name_length..at + 46 + name_length + extra_length)
                .ok_or_else(|| invalid(format!("central directory entry {index} is truncated")))?;
            let mut entry = Entry {
                name: String::from_utf8_lossy(name_bytes).into_owned(),
                flags: u16_at(header, 8),
                method: u16_at(header, 10),
                crc32: u32_at(header, 16),
                compressed: u64::from(u32_at(header, 20)),
                uncompressed: u64::from(u32_at(header, 24)),
                local_header: u64::from(u32_at(header, 42)),
            };
            apply_zip64_extra(&mut entry, extra);
            entry.local_header = entry.local_header.checked_add(shift).ok_or_else(|| {
                invalid(format!("entry `{}` has an overflowing offset", entry.name))
            })?;
            entries.push(entry);
            at += 46 + name_length + extra_length + comment_length;
        }
        Ok(Self {
            reader,
            length,
            entries,
        })
    }

    /// The entries' names, in directory order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| entry.name.as_str())
    }

    /// The uncompressed size of entry `name`, if there is one.
    pub(crate) fn size(&self, name: &str) -> Option<u64> {
        self.find(name).map(|entry| entry.uncompressed)
    }

    fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Up to `limit` bytes of entry `name` (its whole content when it is
    /// smaller), after checking its CRC-32 when the whole entry was read.
    /// `None` when there is no such entry.
    pub(crate) fn read(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, ZipError> {
        let Some(entry) = self.find(name).cloned() else {
            return Ok(None);
        };
        let fail = |reason: String| ZipError::Entry {
            name: entry.name.clone(),
            reason,
        };
        if entry.flags & 1 != 0 {
            return Err(fail("it is encrypted".to_owned()));
        }
        let header = read_at(&mut self.reader, entry.local_header, 30)
            .map_err(|_| fail(format!("no local header at offset {}", entry.local_header)))?;
        if header[..4] != LOCAL_SIGNATURE {
            return Err(fail(format!(
                "no local header signature at offset {}",
                entry.local_header
            )));
        }
        let data_start = entry.local_header
            + 30
            + u64::from(u16_at(&header, 26))
            + u64::from(u16_at(&header, 28));
        if data_start
            .checked_add(entry.compressed)
            .is_none_or(|end| end > self.length)
        {
            return Err(fail(format!(
                "its {} bytes at offset {data_start} reach past the end of the file ({} bytes)",
                entry.compressed, self.length
            )));
        }
        let wanted = limit.min(entry.uncompressed);
        self.reader
            .seek(SeekFrom::Start(data_start))
            .map_err(ZipError::Io)?;
        let raw = (&mut self.reader).take(entry.compressed);
        let mut bytes = Vec::new();
        match entry.method {
            0 => {
                if entry.compressed != entry.uncompressed {
                    return Err(fail(format!(
                        "stored with {} bytes but declares {} uncompressed",
                        entry.compressed, entry.uncompressed
                    )));
                }
                raw.take(wanted)
                    .read_to_end(&mut bytes)
                    .map_err(ZipError::Io)?;
            }
            8 => {
                flate2::read::DeflateDecoder::new(raw)
                    .take(wanted)
                    .read_to_end(&mut bytes)
                    .map_err(|err| fail(format!("invalid deflate data: {err}")))?;
            }
            other => return Err(fail(format!("compression method {other} is not supported"))),
        }
        if (bytes.len() as u64) < wanted {
            return Err(fail(format!(
                "holds {} bytes, its directory entry declares {}",
                bytes.len(),
                entry.uncompressed
            )));
        }
        if wanted == entry.uncompressed {
            let crc = crc32fast::hash(&bytes);
            if crc != entry.crc32 {
                return Err(fail(format!(
                    "CRC-32 {crc:08x} does not match the directory's {:08x}",
                    entry.crc32
                )));
            }
        }
        Ok(Some(bytes))
    }
}

/// Replaces the 32-bit sizes and offset that say `0xFFFFFFFF` with the
/// zip64 extra field's values (in the order the format lists them).
fn apply_zip64_extra(entry: &mut Entry, extra: &[u8]) {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let id = u16_at(extra, at);
        let length = usize::from(u16_at(extra, at + 2));
        let body = extra.get(at + 4..at + 4 + length).unwrap_or_default();
        if id == 1 {
            let mut position = 0;
            let mut next = |value: &mut u64| {
                if *value == 0xFFFF_FFFF && position + 8 <= body.len() {
                    *value = u64_at(body, position);
                    position += 8;
                }
            };
            next(&mut entry.uncompressed);
            next(&mut entry.compressed);
            next(&mut entry.local_header);
        }
        at += 4 + length;
    }
}

/// `length` bytes at `offset`, all of them or an error.
fn read_at<R: Read + Seek>(reader: &mut R, offset: u64, length: u64) -> Result<Vec<u8>, ZipError> {
    reader.seek(SeekFrom::Start(offset)).map_err(ZipError::Io)?;
    let mut bytes = Vec::new();
    reader
        .take(length)
        .read_to_end(&mut bytes)
        .map_err(ZipError::Io)?;
    if (bytes.len() as u64) < length {
        return Err(invalid(format!(
            "{length} bytes wanted at offset {offset}, the file ends after {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}
