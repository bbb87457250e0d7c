//! A minimal, bounded unpickler for PyTorch checkpoints.
//!
//! A `.pth`/`.pt` file written by `torch.save` is a zip holding
//! `<name>/data.pkl` (a pickle) and the raw tensor bytes in `<name>/data/<key>`.
//! The pickle builds a (possibly nested) dict of tensors through
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`,
//! where each storage is a persistent id `('storage', torch.FloatStorage,
//! key, location, numel)`. This module understands exactly the opcodes such
//! pickles use and refuses anything else; it never executes code.
//!
//! Pickles are hostile input, so the work is bounded:
//! - values are shared, never deep-copied: a memo entry fetched a million
//!   times is a million reference counts, not a million copies (containers
//!   are copied on write, one level deep, when a shared one is appended to);
//! - [`MAX_ITEMS`] caps the container slots created or copied over the whole
//!   pickle, and [`MAX_DEPTH`] caps how deep containers nest (deeper values
//!   would also overflow the stack when dropped);
//! - `MARK` is kept beside the stack (as CPython does), so no pop reaches
//!   below the innermost mark.

use std::collections::HashMap;
use std::rc::Rc;

/// The most container slots (tuple, list and dict items) one pickle may
/// create or copy. A torchvision state dict uses a few tens of thousands.
pub(crate) const MAX_ITEMS: usize = 1 << 22;

/// The deepest containers may nest. A state dict nests fewer than ten.
pub(crate) const MAX_DEPTH: usize = 100;

/// Why a pickle could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The pickle ends in the middle of an opcode or before `STOP`.
    #[error("the pickle is truncated at byte {position}")]
    Truncated {
        /// Where the missing bytes were expected.
        position: usize,
    },
    /// An opcode zoo does not read (checkpoints never need it).
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {position}")]
    UnsupportedOpcode {
        /// The opcode byte.
        opcode: u8,
        /// Its offset in the pickle.
        position: usize,
    },
    /// The opcodes do not build a checkpoint's values.
    #[error("malformed pickle at byte {position}: {reason}")]
    Malformed {
        /// The offset of the offending opcode.
        position: usize,
        /// What was wrong.
        reason: String,
    },
    /// Containers nest deeper than [`MAX_DEPTH`].
    #[error("the pickle nests containers deeper than {MAX_DEPTH} levels (at byte {position})")]
    TooDeep {
        /// The offset of the opcode that went too deep.
        position: usize,
    },
    /// The pickle builds more than [`MAX_ITEMS`] container items.
    #[error(
        "the pickle builds more than {MAX_ITEMS} container items (at byte {position}); no state dict needs that many"
    )]
    TooLarge {
        /// The offset of the opcode that went over.
        position: usize,
    },
}

/// A tuple's or list's items and how deep they nest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seq {
    pub(crate) items: Vec<Value>,
    depth: usize,
}

/// A dict's items, in insertion order, and how deep they nest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pairs {
    pub(crate) items: Vec<(Value, Value)>,
    depth: usize,
}

/// A value the unpickler builds. Cloning is cheap: payloads are shared.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Pairs>),
    Global(Rc<str>, Rc<str>),
    /// A storage reference.
    Storage(Rc<StorageRef>),
    /// A tensor view of a storage.
    Tensor(Rc<TensorRef>),
    /// Any other object built by calling a global.
    Object(Rc<Object>),
}

/// An object built by calling a global (`REDUCE`, `NEWOBJ`): its global's
/// name and the state `BUILD` gave it (a TorchScript module's attributes);
/// its constructor arguments are not kept.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object {
    pub(crate) name: Rc<str>,
    pub(crate) state: Option<Value>,
    depth: usize,
}

#[cfg(test)]
impl Pairs {
    /// A dict of `items` (for tests that build values by hand).
    pub(crate) fn new(items: Vec<(Value, Value)>) -> Self {
        let inner = items
            .iter()
            .map(|(key, value)| key.depth().max(value.depth()))
            .max()
            .unwrap_or(0);
        Pairs {
            items,
            depth: inner + 1,
        }
    }
}

#[cfg(test)]
impl Object {
    /// An object of class `name` with `state` (for tests that build values
    /// by hand).
    pub(crate) fn new(name: &str, state: Option<Value>) -> Self {
        let depth = state.as_ref().map_or(0, Value::depth) + 1;
        Object {
            name: name.into(),
            state,
            depth,
        }
    }
}

impl Value {
    /// How deep containers nest inside this value (0 for a scalar).
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(seq) | Value::List(seq) => seq.depth,
            Value::Dict(pairs) => pairs.depth,
            Value::Object(object) => object.depth,
            _ => 0,
        }
    }

    /// What kind of value this is, for error messages (never the value
    /// itself: a shared value can stand for an exponentially large tree).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(..) => "a global",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
            Value::Object(_) => "an object",
        }
    }
}

/// A storage as its persistent id names it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    /// The dtype (`Float`, `Half`, `Long`, ...), from `torch.FloatStorage`.
    pub(crate) dtype: String,
    /// The file `data/<key>` in the archive (zip), or the key (legacy).
    pub(crate) key: String,
    /// The element count the persistent id declares, if it does.
    pub(crate) numel: Option<i64>,
}

/// Where a tensor's data lives. The numbers are as the pickle gives them,
/// unchecked: `weights.rs` validates them against the storage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    /// The storage the tensor views.
    pub(crate) storage: Rc<StorageRef>,
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
    fn take(&mut self, count: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .position
            .checked_add(count)
            .filter(|end| *end <= self.data.len())
            .ok_or(PickleError::Truncated {
                position: self.position,
            })?;
        let slice = &self.data[self.position..end];
        self.position = end;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let position = self.position;
        self.take(N)?
            .try_into()
            .map_err(|_| PickleError::Truncated { position })
    }
    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// A length as a `u32`, for `take`.
    fn length32(&mut self) -> Result<usize, PickleError> {
        let position = self.position;
        usize::try_from(self.u32()?).map_err(|_| PickleError::Truncated { position })
    }
    fn line(&mut self) -> Result<String, PickleError> {
        let start = self.position;
        let rest = &self.data[start..];
        let length = rest
            .iter()
            .position(|byte| *byte == b'\n')
            .ok_or(PickleError::Truncated { position: start })?;
        self.position = start + length + 1;
        Ok(String::from_utf8_lossy(&rest[..length]).into_owned())
    }
    fn string(&mut self, length: usize) -> Result<Rc<str>, PickleError> {
        Ok(Rc::from(
            String::from_utf8_lossy(self.take(length)?).as_ref(),
        ))
    }
}

/// The unpickler's state: the value stack, the mark positions and the memo,
/// with the bounds on work and depth.
struct Machine {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// The memo indices holding each object, by the object's address (for
    /// `BUILD`, which must update every reference).
    memoized_objects: HashMap<usize, Vec<u32>>,
    /// Container items created or copied so far.
    items: usize,
    /// The offset of the opcode being run.
    position: usize,
}

impl Machine {
    fn malformed(&self, reason: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            position: self.position,
            reason: reason.into(),
        }
    }

    /// Counts `count` container items against [`MAX_ITEMS`].
    fn spend(&mut self, count: usize) -> Result<(), PickleError> {
        self.items = self
            .items
            .checked_add(count)
            .filter(|items| *items <= MAX_ITEMS)
            .ok_or(PickleError::TooLarge {
                position: self.position,
            })?;
        Ok(())
    }

    /// The depth of a container holding values of depth `inner`.
    fn nest(&self, inner: usize) -> Result<usize, PickleError> {
        let depth = inner + 1;
        if depth > MAX_DEPTH {
            return Err(PickleError::TooDeep {
                position: self.position,
            });
        }
        Ok(depth)
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// Pushes `value`, counting it against [`MAX_ITEMS`] (so a pickle of
    /// a million `None`s is bounded too).
    fn push(&mut self, value: Value) -> Result<(), PickleError> {
        self.spend(1)?;
        self.stack.push(value);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(self.malformed("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&self) -> Result<&Value, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(self.malformed("the stack is empty"));
        }
        self.stack
            .last()
            .ok_or_else(|| self.malformed("the stack is empty"))
    }

    /// The values above the innermost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let start = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no mark to pop to"))?;
        Ok(self.stack.split_off(start))
    }

    fn tuple(&mut self, items: Vec<Value>) -> Result<Value, PickleError> {
        self.spend(items.len())?;
        let depth = self.nest(items.iter().map(Value::depth).max().unwrap_or(0))?;
        Ok(Value::Tuple(Rc::new(Seq { items, depth })))
    }

    fn memoize(&mut self, index: u32) -> Result<(), PickleError> {
        let value = self.top()?.clone();
        self.spend(1)?;
        if let Value::Object(object) = &value {
            self.memoized_objects
                .entry(Rc::as_ptr(object) as usize)
                .or_default()
                .push(index);
        }
        self.memo.insert(index, value);
        Ok(())
    }

    fn recall(&self, index: u32) -> Result<Value, PickleError> {
        self.memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.malformed(format!("memo entry {index} was never stored")))
    }

    /// Appends `values` to the list on top of the stack, copying it first
    /// (one level) if it is shared.
    fn extend_list(&mut self, values: Vec<Value>) -> Result<(), PickleError> {
        let inner = values.iter().map(Value::depth).max().unwrap_or(0);
        let depth = self.nest(inner)?;
        let copied = match self.top()? {
            Value::List(seq) if Rc::strong_count(seq) > 1 => seq.items.len(),
            Value::List(_) => 0,
            other => return Err(self.malformed(format!("APPEND to {}", other.kind()))),
        };
        self.spend(copied + values.len())?;
        if let Some(Value::List(seq)) = self.stack.last_mut() {
            let seq = Rc::make_mut(seq);
            seq.depth = seq.depth.max(depth);
            seq.items.extend(values);
        }
        Ok(())
    }

    /// Adds `pairs` to the dict on top of the stack, copying it first (one
    /// level) if it is shared.
    fn extend_dict(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), PickleError> {
        let inner = pairs
            .iter()
            .map(|(key, value)| key.depth().max(value.depth()))
            .max()
            .unwrap_or(0);
        let depth = self.nest(inner)?;
        let copied = match self.top()? {
            Value::Dict(dict) if Rc::strong_count(dict) > 1 => dict.items.len(),
            Value::Dict(_) => 0,
            other => return Err(self.malformed(format!("SETITEM on {}", other.kind()))),
        };
        self.spend(copied + pairs.len())?;
        if let Some(Value::Dict(dict)) = self.stack.last_mut() {
            let dict = Rc::make_mut(dict);
            dict.depth = dict.depth.max(depth);
            dict.items.extend(pairs);
        }
        Ok(())
    }

    /// `BUILD`: gives the object on top of the stack its state (a
    /// TorchScript module's attributes); the state of anything else (an
    /// `OrderedDict`'s `_metadata`) is dropped.
    ///
    /// Python objects are shared: the memo entries that hold the object
    /// (a module used in several places, like Ultralytics' one `SiLU`) get
    /// the built object too, so that later `GET`s see its state. Values
    /// are immutable here, so the object is copied on write and the memo
    /// entries are pointed at the copy (each counted against
    /// [`MAX_ITEMS`]).
    fn build(&mut self, state: Value) -> Result<(), PickleError> {
        let depth = self.nest(state.depth())?;
        self.top()?;
        self.spend(1)?;
        let Some(Value::Object(object)) = self.stack.last_mut() else {
            return Ok(());
        };
        let before = Rc::as_ptr(object) as usize;
        let inner = Rc::make_mut(object);
        inner.depth = inner.depth.max(depth);
        inner.state = Some(state);
        let built = object.clone();
        let after = Rc::as_ptr(&built) as usize;
        if before == after {
            return Ok(());
        }
        let Some(indices) = self.memoized_objects.remove(&before) else {
            return Ok(());
        };
        self.spend(indices.len())?;
        let mut kept = Vec::with_capacity(indices.len());
        for index in indices {
            if let Some(Value::Object(entry)) = self.memo.get_mut(&index)
                && Rc::as_ptr(entry) as usize == before
            {
                *entry = built.clone();
                kept.push(index);
            }
        }
        self.memoized_objects.entry(after).or_default().extend(kept);
        Ok(())
    }

    /// Applies a global to its arguments (the `REDUCE` opcode), for the
    /// globals PyTorch checkpoints use.
    fn call(&self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(module, name) = &callable else {
            return Err(self.malformed(format!("call of {}", callable.kind())));
        };
        let items: &[Value] = match &args {
            Value::Tuple(seq) => &seq.items,
            _ => &[],
        };
        match (module.as_ref(), name.as_ref()) {
            ("collections", "OrderedDict") => Ok(Value::Dict(Rc::new(Pairs {
                items: Vec::new(),
                depth: 1,
            }))),
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                let [storage, offset, size, stride, ..] = items else {
                    return Err(self.malformed("_rebuild_tensor_v2 with too few arguments"));
                };
                let Value::Storage(storage) = storage else {
                    return Err(self.malformed(format!(
                        "_rebuild_tensor_v2 on {}, not a storage",
                        storage.kind()
                    )));
                };
                let Value::Int(offset) = offset else {
                    return Err(self.malformed("the tensor offset is not an int"));
                };
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage: storage.clone(),
                    offset: *offset,
                    size: self.ints(size, "size")?,
                    stride: self.ints(stride, "stride")?,
                })))
            }
            // nn.Parameter wraps a tensor.
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => items
                .first()
                .cloned()
                .ok_or_else(|| self.malformed("_rebuild_parameter without a tensor")),
            _ => Ok(Value::Object(Rc::new(Object {
                name: Rc::from(format!("{module}.{name}")),
                state: None,
                depth: 1,
            }))),
        }
    }

    fn ints(&self, value: &Value, what: &str) -> Result<Vec<i64>, PickleError> {
        let (Value::Tuple(seq) | Value::List(seq)) = value else {
            return Err(self.malformed(format!(
                "the tensor {what} is {}, not a tuple of ints",
                value.kind()
            )));
        };
        seq.items
            .iter()
            .map(|item| match item {
                Value::Int(int) => Ok(*int),
                other => Err(self.malformed(format!(
                    "the tensor {what} holds {}, not an int",
                    other.kind()
                ))),
            })
            .collect()
    }

    /// `BINPERSID`: `('storage', <global FloatStorage>, key, location,
    /// numel, ...)`.
    fn persistent(&self, id: Value) -> Result<Value, PickleError> {
        let Value::Tuple(seq) = &id else {
            return Err(self.malformed(format!("persistent id is {}", id.kind())));
        };
        match seq.items.as_slice() {
            [
                Value::Str(kind),
                Value::Global(_, storage),
                Value::Str(key),
                rest @ ..,
            ] if kind.as_ref() == "storage" => {
                let numel = match rest {
                    [_, Value::Int(numel), ..] => Some(*numel),
                    _ => None,
                };
                Ok(Value::Storage(Rc::new(StorageRef {
                    dtype: storage.trim_end_matches("Storage").to_owned(),
                    key: key.to_string(),
                    numel,
                })))
            }
            _ => Err(self.malformed("unsupported persistent id (not a storage)")),
        }
    }
}

/// Unpickles `data` into a value; tensors stay references into the archive.
pub(crate) fn unpickle(data: &[u8]) -> Result<Value, PickleError> {
    unpickle_prefix(data).map(|(value, _)| value)
}

/// Unpickles the pickle at the start of `data`; returns it and the bytes it
/// took (the legacy format writes several pickles back to back).
pub(crate) fn unpickle_prefix(data: &[u8]) -> Result<(Value, usize), PickleError> {
    let mut reader = Reader { data, position: 0 };
    let mut machine = Machine {
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        memoized_objects: HashMap::new(),
        items: 0,
        position: 0,
    };
    let m = &mut machine;
    loop {
        m.position = reader.position;
        let opcode = reader.byte()?;
        let value = match opcode {
            // PROTO, FRAME: nothing to build.
            0x80 => reader.byte().map(|_| None)?,
            0x95 => reader.take(8).map(|_| None)?,
            b'.' => {
                let value = m.pop()?;
                return Ok((value, reader.position));
            }
            b'(' => {
                m.marks.push(m.stack.len());
                None
            }
            b'}' => Some(Value::Dict(Rc::new(Pairs {
                items: Vec::new(),
                depth: 1,
            }))),
            b']' => Some(Value::List(Rc::new(Seq {
                items: Vec::new(),
                depth: 1,
            }))),
            b')' => Some(m.tuple(Vec::new())?),
            b'N' => Some(Value::None),
            0x88 => Some(Value::Bool(true)),
            0x89 => Some(Value::Bool(false)),
            b'K' => Some(Value::Int(i64::from(reader.byte()?))),
            b'M' => Some(Value::Int(i64::from(reader.u16()?))),
            b'J' => Some(Value::Int(i64::from(i32::from_le_bytes(reader.array()?)))),
            0x8a => Some(long1(&mut reader)?),
            b'G' => Some(Value::Float(f64::from_be_bytes(reader.array()?))),
            b'X' | b'T' => {
                let length = reader.length32()?;
                Some(Value::Str(reader.string(length)?))
            }
            0x8c | b'U' => {
                let length = usize::from(reader.byte()?);
                Some(Value::Str(reader.string(length)?))
            }
            b'C' => {
                let length = usize::from(reader.byte()?);
                Some(Value::Bytes(Rc::from(reader.take(length)?)))
            }
            b'B' => {
                let length = reader.length32()?;
                Some(Value::Bytes(Rc::from(reader.take(length)?)))
            }
            b'c' => {
                let module = reader.line()?;
                let name = reader.line()?;
                Some(Value::Global(Rc::from(module), Rc::from(name)))
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err(m.malformed("STACK_GLOBAL without two strings"));
                };
                Some(Value::Global(module, name))
            }
            b'q' => m.memoize(u32::from(reader.byte()?)).map(|()| None)?,
            b'r' => m.memoize(reader.u32()?).map(|()| None)?,
            0x94 => {
                let index =
                    u32::try_from(m.memo.len()).map_err(|_| m.malformed("the memo is full"))?;
                m.memoize(index).map(|()| None)?
            }
            b'h' => Some(m.recall(u32::from(reader.byte()?))?),
            b'j' => Some(m.recall(reader.u32()?)?),
            b't' => {
                let items = m.pop_mark()?;
                Some(m.tuple(items)?)
            }
            // TUPLE1, TUPLE2, TUPLE3.
            0x85..=0x87 => {
                let count = usize::from(opcode - 0x84);
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(m.pop()?);
                }
                items.reverse();
                Some(m.tuple(items)?)
            }
            b'Q' => {
                let id = m.pop()?;
                Some(m.persistent(id)?)
            }
            b'R' | 0x81 => {
                // REDUCE: callable(*args); NEWOBJ: cls.__new__(cls, *args).
                let args = m.pop()?;
                let callable = m.pop()?;
                Some(m.call(callable, args)?)
            }
            b'b' => {
                let state = m.pop()?;
                m.build(state).map(|()| None)?
            }
            b's' => {
                let value = m.pop()?;
                let key = m.pop()?;
                m.extend_dict(vec![(key, value)]).map(|()| None)?
            }
            b'u' => {
                let items = m.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(m.malformed("SETITEMS with an odd number of values"));
                }
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut iter = items.into_iter();
                while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
                    pairs.push((key, value));
                }
                m.extend_dict(pairs).map(|()| None)?
            }
            b'a' => {
                let value = m.pop()?;
                m.extend_list(vec![value]).map(|()| None)?
            }
            b'e' => {
                let items = m.pop_mark()?;
                m.extend_list(items).map(|()| None)?
            }
            other => {
                return Err(PickleError::UnsupportedOpcode {
                    opcode: other,
                    position: m.position,
                });
            }
        };
        if let Some(value) = value {
            m.push(value)?;
        }
    }
}

/// `LONG1`: a little-endian two's complement integer of up to 255 bytes.
fn long1(reader: &mut Reader<'_>) -> Result<Value, PickleError> {
    let length = usize::from(reader.byte()?);
    let bytes = reader.take(length)?;
    if length > 8 {
        // Too wide for i64 (the legacy format's magic number): kept as raw
        // little-endian bytes.
        return Ok(Value::Bytes(Rc::from(bytes)));
    }
    let mut value: i64 = 0;
    for (index, byte) in bytes.iter().enumerate() {
        value |= i64::from(*byte) << (8 * index);
    }
    if length > 0 && length < 8 && bytes[length - 1] & 0x80 != 0 {
        value -= 1i64 << (8 * length);
    }
    Ok(Value::Int(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str(value: &str) -> Value {
        Value::Str(Rc::from(value))
    }

    #[test]
    fn reads_a_state_dict_pickle() {
        // Protocol 2: OrderedDict([('w', _rebuild_tensor_v2(storage, 0, (2,), (1,), False, OrderedDict()))])
        let mut pickle = vec![0x80, 2];
        pickle.extend_from_slice(b"ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00w");
        pickle.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K\x02tq\x07QK\x00K\x02\x85K\x01\x85\x89h\x00)Rq\x08tq\tRq\nu}q\x0bb.");
        let value = unpickle(&pickle).unwrap();
        let Value::Dict(dict) = value else {
            panic!("{value:?}")
        };
        assert_eq!(dict.items.len(), 1);
        assert_eq!(dict.items[0].0, str("w"));
        assert_eq!(
            dict.items[0].1,
            Value::Tensor(Rc::new(TensorRef {
                storage: Rc::new(StorageRef {
                    dtype: "Float".into(),
                    key: "0".into(),
                    numel: Some(2),
                }),
                offset: 0,
                size: vec![2],
                stride: vec![1]
            }))
        );
        assert!(
            unpickle(b"\x80\x02cos\nsystem\n(X\x02\x00\x00\x00lstR.")
                .is_ok_and(|value| matches!(value, Value::Object(..)))
        );
        assert!(matches!(
            unpickle(b"\x80\x02\xff"),
            Err(PickleError::UnsupportedOpcode {
                opcode: 0xff,
                position: 2
            })
        ));
    }

    /// An object built after it was memoized (a module shared by several
    /// parents, as Ultralytics' one `SiLU`) has its state wherever it is
    /// fetched from the memo afterwards.
    #[test]
    fn build_reaches_every_reference_to_a_memoized_object() {
        let mut pickle = vec![0x80, 2];
        pickle.extend_from_slice(b"ctorch.nn.modules.activation\nSiLU\nq\x00)\x81q\x01");
        pickle.extend_from_slice(b"}q\x02X\x01\x00\x00\x00aK\x07sbh\x01\x86.");
        let Value::Tuple(pair) = unpickle(&pickle).unwrap() else {
            panic!("not a tuple")
        };
        for item in &pair.items {
            let Value::Object(object) = item else {
                panic!("{item:?}")
            };
            assert_eq!(object.name.as_ref(), "torch.nn.modules.activation.SiLU");
            let Some(Value::Dict(state)) = &object.state else {
                panic!("no state: {object:?}")
            };
            assert_eq!(state.items, vec![(str("a"), Value::Int(7))]);
        }
    }

    /// Each step memoizes `(x, x)` where `x` is the previous step: 2^n
    /// leaves after n steps when memo values are deep-copied.
    fn doubling_pickle(steps: usize) -> Vec<u8> {
        let mut pickle = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..steps {
            pickle.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        pickle.push(b'.');
        pickle
    }

    #[test]
    fn exponential_memo_pickle_is_bounded() {
        let started = std::time::Instant::now();
        // 90 doublings: 2^90 leaves if copied; shared, it is 90 tuples.
        let value = unpickle(&doubling_pickle(90)).unwrap();
        assert_eq!(value.depth(), 91);
        // Past the depth bound: an error naming it, not a crash.
        let err = unpickle(&doubling_pickle(MAX_DEPTH + 5)).unwrap_err();
        assert!(matches!(err, PickleError::TooDeep { .. }), "{err}");
        assert!(err.to_string().contains("deeper than 100"), "{err}");
        // A list filled with itself, re-memoized and refilled: each round
        // appends 200 references; the work bound stops it.
        let mut pickle = b"\x80\x02]q\x00(K\x01q\x01eq\x00".to_vec();
        for _ in 0..50_000 {
            pickle.push(b'(');
            pickle.extend(std::iter::repeat_n(*b"h\x01", 200).flatten());
            pickle.extend_from_slice(b"eq\x00");
        }
        pickle.push(b'.');
        let err = unpickle(&pickle).unwrap_err();
        assert!(matches!(err, PickleError::TooLarge { .. }), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // `)` then a million TUPLE1s: a million nested tuples.
        let mut pickle = vec![0x80, 2, b')'];
        pickle.extend(std::iter::repeat_n(0x85u8, 1_000_000));
        pickle.push(b'.');
        let err = unpickle(&pickle).unwrap_err();
        assert!(matches!(err, PickleError::TooDeep { .. }), "{err}");
        // Lists appended into lists go no deeper.
        let mut pickle = vec![0x80, 2, b']'];
        for _ in 0..1000 {
            pickle.extend_from_slice(b"]");
        }
        pickle.extend(std::iter::repeat_n(b'a', 1000));
        pickle.push(b'.');
        let err = unpickle(&pickle).unwrap_err();
        assert!(matches!(err, PickleError::TooDeep { .. }), "{err}");
    }

    #[test]
    fn pops_never_reach_below_a_mark() {
        // `N ( t` is fine (an empty tuple); `N ( 0x85` must not take the
        // value below the mark.
        assert!(unpickle(b"N(t.").is_ok());
        let err = unpickle(b"N(\x85.").unwrap_err();
        assert!(err.to_string().contains("stack underflow"), "{err}");
        let err = unpickle(b"(.").unwrap_err();
        assert!(err.to_string().contains("stack underflow"), "{err}");
        assert!(matches!(
            unpickle(b"e"),
            Err(PickleError::Malformed { position: 0, .. })
        ));
    }

    #[test]
    fn truncated_and_malformed_pickles_name_the_position() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "truncated at byte 0"),
            (b"\x80", "truncated at byte 1"),
            (b"X\xff\xff\xff\xff", "truncated at byte 5"),
            (b"cos\nsys", "truncated at byte 4"),
            (b"h\x07.", "memo entry 7 was never stored"),
            (b"K\x00K\x01K\x02s.", "SETITEM on an int"),
            (b"K\x01)R.", "call of an int"),
        ];
        for (pickle, expected) in cases {
            let err = unpickle(pickle).unwrap_err().to_string();
            assert!(err.contains(expected), "{pickle:?}: {err}");
        }
    }

    /// One opcode with plausible (and implausible) arguments.
    fn opcode() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let fixed: Vec<&'static [u8]> = vec![
            b"(",
            b")",
            b"]",
            b"}",
            b"N",
            b"t",
            b"\x85",
            b"\x86",
            b"\x87",
            b"a",
            b"e",
            b"s",
            b"u",
            b"R",
            b"\x81",
            b"b",
            b"Q",
            b".",
            b"\x94",
            b"\x93",
            b"\x88",
            b"\x89",
            b"ccollections\nOrderedDict\n",
            b"ctorch._utils\n_rebuild_tensor_v2\n",
            b"ctorch._utils\n_rebuild_parameter\n",
            b"ctorch\nFloatStorage\n",
            b"X\x07\x00\x00\x00storage",
            b"X\x01\x00\x00\x000",
        ];
        prop_oneof![
            4 => proptest::sample::select(fixed).prop_map(<[u8]>::to_vec),
            1 => (0u8..4).prop_map(|index| vec![b'h', index]),
            1 => (0u8..4).prop_map(|index| vec![b'q', index]),
            1 => any::<u32>().prop_map(|index| [&[b'j'][..], &index.to_le_bytes()].concat()),
            1 => any::<u32>().prop_map(|index| [&[b'r'][..], &index.to_le_bytes()].concat()),
            1 => any::<u8>().prop_map(|value| vec![b'K', value]),
            1 => any::<i32>().prop_map(|value| [&[b'J'][..], &value.to_le_bytes()].concat()),
            1 => proptest::collection::vec(any::<u8>(), 0..12)
                .prop_map(|bytes| [&[0x8a, bytes.len() as u8][..], &bytes].concat()),
            1 => (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..6))
                .prop_map(|(length, bytes)| [&[b'X'][..], &length.to_le_bytes(), &bytes].concat()),
            1 => any::<u8>().prop_map(|byte| vec![byte]),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 1000,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Random opcode streams: a value or an error naming a byte offset,
        /// never a panic, a hang or a stack overflow.
        #[test]
        fn random_pickle_opcode_streams_never_panic(
            ops in proptest::collection::vec(opcode(), 0..200),
            prefix in proptest::bool::ANY,
        ) {
            let mut pickle = if prefix { vec![0x80, 2] } else { Vec::new() };
            pickle.extend(ops.concat());
            match unpickle(&pickle) {
                Ok(value) => proptest::prop_assert!(value.depth() <= MAX_DEPTH),
                Err(err) => proptest::prop_assert!(err.to_string().contains("byte"), "{}", err),
            }
        }
    }
}
