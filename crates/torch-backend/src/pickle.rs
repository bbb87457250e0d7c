//! A minimal unpickler for PyTorch checkpoints.
//!
//! A `.pth`/`.pt` file written by `torch.save` is a zip holding
//! `<name>/data.pkl` (a pickle) and the raw tensor bytes in `<name>/data/<key>`.
//! The pickle builds a (possibly nested) dict of tensors through
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`,
//! where each storage is a persistent id `('storage', torch.FloatStorage,
//! key, location, numel)`. This module understands exactly the opcodes such
//! pickles use and refuses anything else; it never executes code.

use std::collections::HashMap;

/// A value the unpickler builds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A storage reference: `(dtype name, key)`.
    Storage(String, String),
    /// A tensor view of a storage.
    Tensor(TensorRef),
    /// Any other object built by calling a global; kept opaque.
    Object(String, Box<Value>),
    Mark,
}

/// Where a tensor's data lives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    /// The storage's dtype (`Float`, `Half`, `Long`, ...).
    pub(crate) dtype: String,
    /// The file `data/<key>` in the archive.
    pub(crate) key: String,
    /// Offset in elements.
    pub(crate) offset: i64,
    /// Shape.
    pub(crate) size: Vec<i64>,
    /// Strides in elements.
    pub(crate) stride: Vec<i64>,
}

struct Reader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        let end = self
            .position
            .checked_add(count)
            .filter(|end| *end <= self.data.len());
        let end = end.ok_or_else(|| "truncated pickle".to_owned())?;
        let slice = &self.data[self.position..end];
        self.position = end;
        Ok(slice)
    }
    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| "bad u16")?,
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "bad u32")?,
        ))
    }
    fn line(&mut self) -> Result<String, String> {
        let start = self.position;
        while self.byte()? != b'\n' {}
        Ok(String::from_utf8_lossy(&self.data[start..self.position - 1]).into_owned())
    }
    fn string(&mut self, length: usize) -> Result<String, String> {
        Ok(String::from_utf8_lossy(self.take(length)?).into_owned())
    }
}

fn pop(stack: &mut Vec<Value>) -> Result<Value, String> {
    stack
        .pop()
        .ok_or_else(|| "pickle stack underflow".to_owned())
}

fn pop_mark(stack: &mut Vec<Value>) -> Result<Vec<Value>, String> {
    let position = stack
        .iter()
        .rposition(|value| *value == Value::Mark)
        .ok_or_else(|| "pickle mark missing".to_owned())?;
    let items = stack.split_off(position + 1);
    stack.pop();
    Ok(items)
}

fn as_ints(value: &Value) -> Result<Vec<i64>, String> {
    match value {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|item| match item {
                Value::Int(int) => Ok(*int),
                other => Err(format!("expected an int, found {other:?}")),
            })
            .collect(),
        other => Err(format!("expected a tuple of ints, found {other:?}")),
    }
}

/// Applies a global to its arguments (the `REDUCE` opcode), for the globals
/// PyTorch checkpoints use.
fn call(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = &callable else {
        return Ok(Value::Object("<call>".into(), Box::new(args)));
    };
    let items = match &args {
        Value::Tuple(items) => items.clone(),
        _ => Vec::new(),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            let [storage, offset, size, stride, ..] = items.as_slice() else {
                return Err("_rebuild_tensor_v2 with too few arguments".into());
            };
            let Value::Storage(dtype, key) = storage else {
                return Err(format!("expected a storage, found {storage:?}"));
            };
            let Value::Int(offset) = offset else {
                return Err("tensor offset is not an int".into());
            };
            Ok(Value::Tensor(TensorRef {
                dtype: dtype.clone(),
                key: key.clone(),
                offset: *offset,
                size: as_ints(size)?,
                stride: as_ints(stride)?,
            }))
        }
        // nn.Parameter wraps a tensor.
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => items
            .into_iter()
            .next()
            .ok_or_else(|| "_rebuild_parameter without a tensor".into()),
        _ => Ok(Value::Object(format!("{module}.{name}"), Box::new(args))),
    }
}

/// Unpickles `data` into a value; tensors stay references into the archive.
pub(crate) fn unpickle(data: &[u8]) -> Result<Value, String> {
    unpickle_prefix(data).map(|(value, _)| value)
}

/// Unpickles the pickle at the start of `data`; returns it and the bytes it
/// took (the legacy format writes several pickles back to back).
pub(crate) fn unpickle_prefix(data: &[u8]) -> Result<(Value, usize), String> {
    let mut reader = Reader { data, position: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    loop {
        let opcode = reader.byte()?;
        match opcode {
            0x80 => {
                reader.byte()?;
            } // PROTO
            0x95 => {
                reader.take(8)?;
            } // FRAME
            b'.' => return Ok((pop(&mut stack)?, reader.position)),
            b'(' => stack.push(Value::Mark),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(i64::from(reader.byte()?))),
            b'M' => stack.push(Value::Int(i64::from(reader.u16()?))),
            b'J' => stack.push(Value::Int(i64::from(reader.u32()? as i32))),
            0x8a => {
                // LONG1: little-endian two's complement.
                let length = usize::from(reader.byte()?);
                let bytes = reader.take(length)?;
                if length > 8 {
                    // Too wide for i64 (the legacy format's magic number):
                    // kept as raw little-endian bytes.
                    stack.push(Value::Bytes(bytes.to_vec()));
                    continue;
                }
                let mut value: i64 = 0;
                for (index, byte) in bytes.iter().enumerate() {
                    value |= i64::from(*byte) << (8 * index);
                }
                if length > 0 && length < 8 && bytes[length - 1] & 0x80 != 0 {
                    value -= 1i64 << (8 * length);
                }
                stack.push(Value::Int(value));
            }
            b'G' => {
                let bytes: [u8; 8] = reader.take(8)?.try_into().map_err(|_| "bad float")?;
                stack.push(Value::Float(f64::from_be_bytes(bytes)));
            }
            b'X' => {
                let length = reader.u32()? as usize;
                stack.push(Value::Str(reader.string(length)?));
            }
            0x8c => {
                let length = usize::from(reader.byte()?);
                stack.push(Value::Str(reader.string(length)?));
            }
            b'U' => {
                let length = usize::from(reader.byte()?);
                stack.push(Value::Str(reader.string(length)?));
            }
            b'T' => {
                let length = reader.u32()? as usize;
                stack.push(Value::Str(reader.string(length)?));
            }
            b'C' => {
                let length = usize::from(reader.byte()?);
                stack.push(Value::Bytes(reader.take(length)?.to_vec()));
            }
            b'B' => {
                let length = reader.u32()? as usize;
                stack.push(Value::Bytes(reader.take(length)?.to_vec()));
            }
            b'c' => {
                let module = reader.line()?;
                let name = reader.line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err("STACK_GLOBAL without strings".into());
                };
                stack.push(Value::Global(module, name));
            }
            b'q' => {
                let index = u32::from(reader.byte()?);
                memo.insert(index, stack.last().cloned().ok_or("memo of empty stack")?);
            }
            b'r' => {
                let index = reader.u32()?;
                memo.insert(index, stack.last().cloned().ok_or("memo of empty stack")?);
            }
            0x94 => {
                let index = memo.len() as u32;
                memo.insert(index, stack.last().cloned().ok_or("memo of empty stack")?);
            }
            b'h' => {
                let index = u32::from(reader.byte()?);
                stack.push(memo.get(&index).cloned().ok_or("unknown memo")?);
            }
            b'j' => {
                let index = reader.u32()?;
                stack.push(memo.get(&index).cloned().ok_or("unknown memo")?);
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85 => {
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a]));
            }
            0x86 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b]));
            }
            0x87 => {
                let c = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b, c]));
            }
            b'Q' => {
                // BINPERSID: ('storage', <global FloatStorage>, key, location, numel)
                let id = pop(&mut stack)?;
                let Value::Tuple(items) = id else {
                    return Err("persistent id is not a tuple".into());
                };
                match items.as_slice() {
                    [
                        Value::Str(kind),
                        Value::Global(_, storage),
                        Value::Str(key),
                        ..,
                    ] if kind == "storage" => {
                        let dtype = storage.trim_end_matches("Storage").to_owned();
                        stack.push(Value::Storage(dtype, key.clone()));
                    }
                    other => return Err(format!("unsupported persistent id {other:?}")),
                }
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(call(callable, args)?);
            }
            0x81 => {
                // NEWOBJ: cls.__new__(cls, *args)
                let args = pop(&mut stack)?;
                let class = pop(&mut stack)?;
                stack.push(call(class, args)?);
            }
            b'b' => {
                // BUILD: object state (e.g. OrderedDict._metadata); ignored.
                pop(&mut stack)?;
            }
            b's' => {
                let value = pop(&mut stack)?;
                let key = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::Dict(items)) => items.push((key, value)),
                    _ => return Err("SETITEM on a non-dict".into()),
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                let Some(Value::Dict(dict)) = stack.last_mut() else {
                    return Err("SETITEMS on a non-dict".into());
                };
                let mut iter = items.into_iter();
                while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
                    dict.push((key, value));
                }
            }
            b'a' => {
                let value = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(items)) => items.push(value),
                    _ => return Err("APPEND on a non-list".into()),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(list)) => list.extend(items),
                    _ => return Err("APPENDS on a non-list".into()),
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_state_dict_pickle() {
        // Protocol 2: OrderedDict([('w', _rebuild_tensor_v2(storage, 0, (2,), (1,), False, OrderedDict()))])
        let mut pickle = vec![0x80, 2];
        pickle.extend_from_slice(b"ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00w");
        pickle.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K\x02tq\x07QK\x00K\x02\x85K\x01\x85\x89h\x00)Rq\x08tq\tRq\nu}q\x0bb.");
        let value = unpickle(&pickle).unwrap();
        let Value::Dict(items) = value else {
            panic!("{value:?}")
        };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].0, Value::Str("w".into()));
        assert_eq!(
            items[0].1,
            Value::Tensor(TensorRef {
                dtype: "Float".into(),
                key: "0".into(),
                offset: 0,
                size: vec![2],
                stride: vec![1]
            })
        );
        assert!(
            unpickle(b"\x80\x02cos\nsystem\n(X\x02\x00\x00\x00lstR.")
                .is_ok_and(|value| matches!(value, Value::Object(..)))
        );
        assert!(
            unpickle(b"\x80\x02\xff")
                .unwrap_err()
                .contains("unsupported pickle opcode")
        );
    }
}
