//! Checks on label JSON that comes from files zoo did not write (an
//! imported FiftyOne folder, a part file of a sharded run), before it is
//! stored: all of a dataset or part is checked before anything is written.

use std::path::Path;

use serde_json::Value;
use zoo_model_core::Label;

use crate::paths::resolve_named;

/// The label keys that name a media file (FiftyOne's media fields of
/// `Segmentation`, `Heatmap` and `Detection`).
pub(crate) const MEDIA_KEYS: [&str; 2] = ["mask_path", "map_path"];

/// How deep label JSON may nest (FiftyOne's labels nest three levels; the
/// JSON parser stops at 128).
const MAX_DEPTH: usize = 32;

/// Checks an imported label (an object with a `_cls`, or `null`) and makes
/// its media paths absolute: each `mask_path`/`map_path`, at any depth, must
/// be a path inside `root` ([`resolve_named`]) unless `allow_outside`.
pub(crate) fn check_imported_label(
    value: &mut Value,
    root: &Path,
    allow_outside: bool,
) -> Result<(), String> {
    match value {
        Value::Null => return Ok(()),
        Value::Object(object) => {
            if !object.get("_cls").is_some_and(Value::is_string) {
                return Err("the label has no `_cls` naming its class".to_owned());
            }
        }
        _ => return Err("a label is a JSON object or `null`".to_owned()),
    }
    media_paths(value, root, allow_outside, 0)
}

fn media_paths(value: &mut Value, root: &Path, allow: bool, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("the label nests deeper than {MAX_DEPTH} levels"));
    }
    match value {
        Value::Object(object) => {
            for key in MEDIA_KEYS {
                match object.get_mut(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(path)) => {
                        let resolved = resolve_named(root, path, allow)
                            .map_err(|problem| format!("its `{key}`: {problem}"))?;
                        let Some(text) = resolved.to_str() else {
                            return Err(format!("its `{key}` leads to a path that is not UTF-8"));
                        };
                        *path = text.to_owned();
                    }
                    Some(_) => return Err(format!("its `{key}` is not a string")),
                }
            }
            for nested in object.values_mut() {
                if nested.is_array() || nested.is_object() {
                    media_paths(nested, root, allow, depth + 1)?;
                }
            }
        }
        Value::Array(values) => {
            for nested in values {
                media_paths(nested, root, allow, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks a label read from a part file: zoo wrote it with `Label::to_json`,
/// so it must read back as a [`Label`] (arrays inflated within
/// `zoo_model_core::MAX_ARRAY_BYTES`) and name no file (`mask_path`,
/// `map_path`): a part comes from another machine, whose paths mean
/// nothing here.
pub(crate) fn check_part_label(value: &Value) -> Result<(), String> {
    if let Some(key) = media_key(value, 0) {
        return Err(format!(
            "the label names a file (`{key}`); results of a sharded run carry their masks inline"
        ));
    }
    Label::from_json(value)
        .map(drop)
        .map_err(|error| format!("not a label zoo writes: {error}"))
}

/// The first media key anywhere in `value`.
fn media_key(value: &Value, depth: usize) -> Option<&'static str> {
    if depth > MAX_DEPTH {
        return Some("(nested too deep)");
    }
    match value {
        Value::Object(object) => MEDIA_KEYS
            .into_iter()
            .find(|key| object.contains_key(*key))
            .or_else(|| {
                object
                    .values()
                    .find_map(|nested| media_key(nested, depth + 1))
            }),
        Value::Array(values) => values
            .iter()
            .find_map(|nested| media_key(nested, depth + 1)),
        _ => None,
    }
}
