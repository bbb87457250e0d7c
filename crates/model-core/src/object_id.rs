//! MongoDB ObjectIds, as FiftyOne gives every label and sample one.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// A 12-byte ObjectId: 4 bytes of seconds since the epoch, 5 bytes unique
/// to the process, 3 bytes of a counter (BSON's layout, as `bson.ObjectId()`
/// makes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 12]);

/// The process's random 5 bytes and its counter, seeded once.
fn process_state() -> &'static ([u8; 5], AtomicU32) {
    static STATE: OnceLock<([u8; 5], AtomicU32)> = OnceLock::new();
    STATE.get_or_init(|| {
        // `RandomState` is seeded from the operating system's randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let random = hasher.finish().to_le_bytes();
        let mut unique = [0; 5];
        unique.copy_from_slice(&random[..5]);
        let counter = u32::from_le_bytes([random[5], random[6], random[7], 0]);
        (unique, AtomicU32::new(counter))
    })
}

impl ObjectId {
    /// A new, process-unique id stamped with the current time.
    pub fn new() -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()) as u32;
        let (unique, counter) = process_state();
        Self::from_parts(seconds, *unique, counter.fetch_add(1, Ordering::Relaxed))
    }

    /// The id of `timestamp` (seconds), 5 unique bytes and a counter (its
    /// low 24 bits).
    pub fn from_parts(timestamp: u32, unique: [u8; 5], counter: u32) -> Self {
        let mut bytes = [0; 12];
        bytes[..4].copy_from_slice(&timestamp.to_be_bytes());
        bytes[4..9].copy_from_slice(&unique);
        bytes[9..].copy_from_slice(&counter.to_be_bytes()[1..]);
        Self(bytes)
    }

    /// Parses 24 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 24 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0; 12];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// Extended JSON: `{"$oid": "<24 hex>"}`.
    pub fn to_json(&self) -> Value {
        json!({"$oid": self.to_string()})
    }
}

impl Default for ObjectId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_hex_and_parse_back() {
        let first = ObjectId::new();
        let second = ObjectId::new();
        assert_ne!(first, second);
        let text = first.to_string();
        assert_eq!(text.len(), 24);
        assert_eq!(ObjectId::parse(&text), Some(first));
        assert_eq!(first.to_json(), json!({"$oid": text}));
        assert_eq!(
            ObjectId::from_parts(1, [2, 3, 4, 5, 6], 0x0107_0809).to_string(),
            "000000010203040506070809"
        );
        for bad in [
            "",
            "zz0000000000000000000000",
            "0000",
            "é00000000000000000000000",
        ] {
            assert_eq!(ObjectId::parse(bad), None, "{bad}");
        }
    }
}
