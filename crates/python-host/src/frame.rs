//! The wire format between zoo and its Python worker: a frame is two
//! little-endian `u64` (the JSON header's length, the payload's length),
//! the JSON header, then the payload (raw pixels or `float32` values).

use std::io::{self, Read, Write};

use serde_json::Value;

/// The largest header accepted (labels with masks can be big).
const MAX_HEADER: u64 = 1 << 30;
/// The largest payload accepted.
const MAX_PAYLOAD: u64 = 1 << 34;

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    /// The JSON header.
    pub(crate) header: Value,
    /// The binary payload (may be empty).
    pub(crate) payload: Vec<u8>,
    /// Seconds spent reading and parsing it once its lengths arrived (the
    /// boundary's cost on the reading side, not the wait for the sender).
    pub(crate) read_seconds: f64,
}

/// Writes a frame whose payload is the concatenation of `payload`, without
/// copying it.
pub(crate) fn write_frame(
    writer: &mut impl Write,
    header: &Value,
    payload: &[&[u8]],
) -> io::Result<()> {
    let text = header.to_string();
    let length: usize = payload.iter().map(|part| part.len()).sum();
    let mut head = Vec::with_capacity(16 + text.len());
    head.extend_from_slice(&(text.len() as u64).to_le_bytes());
    head.extend_from_slice(&(length as u64).to_le_bytes());
    head.extend_from_slice(text.as_bytes());
    writer.write_all(&head)?;
    for part in payload {
        writer.write_all(part)?;
    }
    writer.flush()
}

/// Reads one frame; `None` at a clean end of input (between frames).
pub(crate) fn read_frame(reader: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut lengths = [0u8; 16];
    let mut filled = 0;
    while filled < lengths.len() {
        match reader.read(&mut lengths[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(count) => filled += count,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    let started = std::time::Instant::now();
    let (header_length, payload_length) = lengths.split_at(8);
    let header_length = u64::from_le_bytes(header_length.try_into().unwrap_or_default());
    let payload_length = u64::from_le_bytes(payload_length.try_into().unwrap_or_default());
    if header_length > MAX_HEADER || payload_length > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {header_length} + {payload_length} bytes is over the limits"),
        ));
    }
    let header = read_exactly(reader, header_length)?;
    let header = serde_json::from_slice(&header)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
    let payload = read_exactly(reader, payload_length)?;
    Ok(Some(Frame {
        header,
        payload,
        read_seconds: started.elapsed().as_secs_f64(),
    }))
}

/// Reads `length` bytes, growing the buffer as they arrive (a false length
/// costs no allocation up front).
fn read_exactly(reader: &mut impl Read, length: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(length.min(64 << 20) as usize);
    reader.take(length).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != length {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let mut bytes = Vec::new();
        let header = serde_json::json!({"op": "predict", "shapes": [[2, 3]]});
        write_frame(&mut bytes, &header, &[&[1, 2, 3], &[4; 15]]).unwrap();
        write_frame(&mut bytes, &Value::Null, &[]).unwrap();
        let mut reader = bytes.as_slice();
        let first = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(first.header, header);
        assert_eq!(first.payload.len(), 18);
        assert_eq!(
            read_frame(&mut reader).unwrap().unwrap().header,
            Value::Null
        );
        assert!(read_frame(&mut reader).unwrap().is_none());

        let truncated = &bytes[..bytes.len() - 25];
        let mut reader = truncated;
        assert!(read_frame(&mut reader).is_err());

        let mut huge = Vec::new();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        huge.extend_from_slice(&0u64.to_le_bytes());
        let error = read_frame(&mut huge.as_slice()).unwrap_err();
        assert!(error.to_string().contains("over the limits"), "{error}");
    }
}
