//! Pickled module trees: checkpoints whose pickle holds `nn.Module` objects
//! rather than a state dict, as Ultralytics' release checkpoints do (a dict
//! whose `model`, or `ema`, is an `ultralytics.nn.tasks.DetectionModel`).
//!
//! `torch.save` pickles a module as `NEWOBJ` of its class and `BUILD` with
//! its `__dict__`: `_modules`, `_parameters` and `_buffers` (ordered
//! dicts), and plain attributes (`yaml`, `names`, `stride`, a batch norm's
//! `eps`, ...). The unpickler never runs code: each module here is its class
//! name, its plain attributes as JSON, and its children; its parameters and
//! buffers become the named tensors a state dict would hold
//! (`model.0.conv.weight`). Only classes under [`MODULE_CLASSES`] are
//! walked; any other object where a module belongs is an error naming its
//! class.
//!
//! The checkpoint is hostile input: the walk is bounded by
//! [`MAX_ENTRIES`] (a module or attribute shared a million times is a
//! million visits, then an error), depth by the unpickler's own bound.

use std::path::Path;

use serde_json::{Map, Number, Value as Json};
use tch::Tensor;

use crate::checkpoint::pickle::{Object, Pairs, TensorRef, Value};
use crate::checkpoint::weights::{Source, WeightsError, open_zip, zip_tensors};

/// The class prefixes whose objects are walked as modules.
pub(crate) const MODULE_CLASSES: &[&str] = &["ultralytics.", "torch.nn."];

/// The most entries (modules, attributes and values inside attributes)
/// visited in one checkpoint. YOLOv8x has about 50 000.
pub(crate) const MAX_ENTRIES: usize = 1 << 20;

/// One module of a pickled tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Module {
    /// Its class, `module.Class` (`ultralytics.nn.modules.conv.Conv`).
    pub(crate) class: String,
    /// Its plain attributes: numbers, strings, lists and dicts as JSON
    /// (dict keys as strings; objects, tensors and bytes as `null`).
    pub(crate) attributes: Map<String, Json>,
    /// Its submodules, in order (`_modules`; `None` entries left out).
    pub(crate) children: Vec<(String, Module)>,
}

impl Module {
    /// The submodule at dotted `path` (`model.9.cv1`), if any; `""` is
    /// this module.
    pub(crate) fn get(&self, path: &str) -> Option<&Module> {
        if path.is_empty() {
            return Some(self);
        }
        path.split('.').try_fold(self, |module, part| {
            module
                .children
                .iter()
                .find(|(name, _)| name == part)
                .map(|(_, child)| child)
        })
    }

    /// The class name's last part (`Conv`).
    pub(crate) fn kind(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }
}

/// A checkpoint's module tree and its tensors.
#[derive(Debug)]
pub(crate) struct ModuleCheckpoint {
    /// The root module (`model`, or `ema` when `model` is `None`).
    pub(crate) root: Module,
    /// Parameters and buffers by their state-dict names, in tree order.
    pub(crate) tensors: Vec<(String, Tensor)>,
    /// Plain tensor attributes (not parameters nor buffers) by dotted
    /// path: the root's `stride`, a Detect head's `stride`.
    pub(crate) attribute_tensors: Vec<(String, Tensor)>,
    /// The checkpoint dict's `train_args` (Ultralytics' training
    /// arguments: `imgsz`, `task`, ...) as JSON; empty when it has none.
    pub(crate) train_args: Map<String, Json>,
}

impl ModuleCheckpoint {
    /// The parameter or buffer `name`.
    #[cfg(test)]
    pub(crate) fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, tensor)| tensor)
    }

    /// The plain tensor attribute at dotted `path`.
    #[cfg(test)]
    pub(crate) fn attribute_tensor(&self, path: &str) -> Option<&Tensor> {
        self.attribute_tensors
            .iter()
            .find(|(key, _)| key == path)
            .map(|(_, tensor)| tensor)
    }
}

/// The walk's state: the tensors found and the entries left.
struct Walk {
    tensors: Vec<(String, TensorRef)>,
    attribute_tensors: Vec<(String, TensorRef)>,
    budget: usize,
}

impl Walk {
    fn spend(&mut self) -> Result<(), String> {
        self.budget = self.budget.checked_sub(1).ok_or_else(|| {
            format!("the checkpoint's modules hold more than {MAX_ENTRIES} entries")
        })?;
        Ok(())
    }

    /// `object` as a module under `prefix` (`""` or `model.0.`).
    fn module(&mut self, object: &Object, prefix: &str) -> Result<Module, String> {
        self.spend()?;
        let class = object.name.to_string();
        if !MODULE_CLASSES
            .iter()
            .any(|allowed| class.starts_with(allowed))
        {
            return Err(format!(
                "`{}` is a `{class}`, not a module zoo reads (only {} classes)",
                prefix.trim_end_matches('.'),
                MODULE_CLASSES.join(", ")
            ));
        }
        let state = match &object.state {
            Some(Value::Dict(state)) => state,
            Some(other) => {
                return Err(format!(
                    "module `{}` (`{class}`) has {} for its state, not a dict",
                    prefix.trim_end_matches('.'),
                    other.kind()
                ));
            }
            None => {
                return Err(format!(
                    "module `{}` (`{class}`) has no state",
                    prefix.trim_end_matches('.')
                ));
            }
        };
        let mut module = Module {
            class,
            attributes: Map::new(),
            children: Vec::new(),
        };
        for (key, value) in &state.items {
            self.spend()?;
            let Value::Str(key) = key else { continue };
            match (key.as_ref(), value) {
                ("_modules", Value::Dict(children)) => {
                    for (name, child) in &children.items {
                        self.spend()?;
                        let Value::Str(name) = name else {
                            return Err(format!(
                                "module `{}` names a submodule with {}",
                                prefix.trim_end_matches('.'),
                                name.kind()
                            ));
                        };
                        match child {
                            Value::None => {}
                            Value::Object(child) => {
                                let child = self.module(child, &format!("{prefix}{name}."))?;
                                module.children.push((name.to_string(), child));
                            }
                            other => {
                                return Err(format!(
                                    "submodule `{prefix}{name}` is {}, not a module",
                                    other.kind()
                                ));
                            }
                        }
                    }
                }
                ("_parameters" | "_buffers", Value::Dict(tensors)) => {
                    self.tensors_of(tensors, prefix)?;
                }
                (name, Value::Tensor(tensor)) => {
                    self.attribute_tensors
                        .push((format!("{prefix}{name}"), tensor.as_ref().clone()));
                }
                (name, value) => {
                    let json = self.json(value)?;
                    module.attributes.insert(name.to_owned(), json);
                }
            }
        }
        Ok(module)
    }

    /// A module's `_parameters` or `_buffers`: tensors (or `None`) by name.
    fn tensors_of(&mut self, tensors: &Pairs, prefix: &str) -> Result<(), String> {
        for (name, tensor) in &tensors.items {
            self.spend()?;
            match (name, tensor) {
                (Value::Str(name), Value::Tensor(tensor)) => self
                    .tensors
                    .push((format!("{prefix}{name}"), tensor.as_ref().clone())),
                (Value::Str(_), Value::None) => {}
                (Value::Str(name), other) => {
                    return Err(format!(
                        "`{prefix}{name}` is {}, not a tensor",
                        other.kind()
                    ));
                }
                (other, _) => {
                    return Err(format!(
                        "module `{}` names a tensor with {}",
                        prefix.trim_end_matches('.'),
                        other.kind()
                    ));
                }
            }
        }
        Ok(())
    }

    /// A plain attribute as JSON. The unpickler bounds the depth.
    fn json(&mut self, value: &Value) -> Result<Json, String> {
        self.spend()?;
        Ok(match value {
            Value::None
            | Value::Bytes(_)
            | Value::Global(..)
            | Value::Storage(_)
            | Value::Tensor(_)
            | Value::Object(_) => Json::Null,
            Value::Bool(value) => Json::Bool(*value),
            Value::Int(value) => Json::Number((*value).into()),
            Value::Float(value) => Number::from_f64(*value).map_or(Json::Null, Json::Number),
            Value::Str(value) => Json::String(value.to_string()),
            Value::Tuple(seq) | Value::List(seq) => Json::Array(
                seq.items
                    .iter()
                    .map(|item| self.json(item))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Dict(pairs) => {
                let mut map = Map::new();
                for (key, value) in &pairs.items {
                    let key = match key {
                        Value::Str(key) => key.to_string(),
                        Value::Int(key) => key.to_string(),
                        Value::Bool(key) => key.to_string(),
                        _ => continue,
                    };
                    let value = self.json(value)?;
                    map.insert(key, value);
                }
                Json::Object(map)
            }
        })
    }
}

/// The root module of a checkpoint's top-level value: a module object
/// itself, or a dict's `model` entry (its `ema` when `model` is `None`).
/// The entry `name` of a top-level dict.
fn dict_entry<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Dict(dict) = value else {
        return None;
    };
    dict.items.iter().find_map(|(key, value)| match key {
        Value::Str(key) if key.as_ref() == name => Some(value),
        _ => None,
    })
}

fn root_object(value: &Value) -> Result<&Object, String> {
    match value {
        Value::Object(object) => Ok(object),
        Value::Dict(_) => {
            let entry = |name: &str| dict_entry(value, name);
            match (entry("model"), entry("ema")) {
                (Some(Value::Object(object)), _) | (_, Some(Value::Object(object))) => Ok(object),
                _ => Err(
                    "the checkpoint holds no pickled module under `model` or `ema` \
                     (a state dict is read as one)"
                        .to_owned(),
                ),
            }
        }
        other => Err(format!(
            "the checkpoint is {}, not a pickled module",
            other.kind()
        )),
    }
}

/// Reads a zip checkpoint (`torch.save` since 1.6) whose pickle holds a
/// module tree: the tree, its parameters and buffers by state-dict name,
/// and its plain tensor attributes.
pub(crate) fn read_module_checkpoint(path: &Path) -> Result<ModuleCheckpoint, WeightsError> {
    let source = Source { path };
    let (mut archive, prefix, value) = open_zip(&source)?;
    let mut walk = Walk {
        tensors: Vec::new(),
        attribute_tensors: Vec::new(),
        budget: MAX_ENTRIES,
    };
    let root = root_object(&value)
        .and_then(|object| walk.module(object, ""))
        .map_err(|message| source.read(message))?;
    let train_args = match dict_entry(&value, "train_args") {
        Some(args @ Value::Dict(_)) => {
            match walk.json(args).map_err(|message| source.read(message))? {
                Json::Object(map) => map,
                _ => Map::new(),
            }
        }
        _ => Map::new(),
    };
    let mut tensors = Vec::with_capacity(walk.tensors.len());
    zip_tensors(
        &source,
        &mut archive,
        &prefix,
        walk.tensors,
        &mut |name, tensor| tensors.push((name, tensor)),
    )?;
    let mut attribute_tensors = Vec::new();
    zip_tensors(
        &source,
        &mut archive,
        &prefix,
        walk.attribute_tensors,
        &mut |name, tensor| attribute_tensors.push((name, tensor)),
    )?;
    Ok(ModuleCheckpoint {
        root,
        tensors,
        attribute_tensors,
        train_args,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/yolo")
            .join(name)
    }

    fn oracle() -> Json {
        let text = fs_err::read_to_string(fixture("yolo_oracle.json")).unwrap();
        let json: Json = serde_json::from_str(&text).unwrap();
        json["yolov8t.pt"]["checkpoint"].clone()
    }

    /// The Ultralytics release checkpoint's tree, tensors and attributes
    /// are what Ultralytics itself reads from it.
    #[test]
    fn reads_an_ultralytics_release_checkpoint() {
        let checkpoint = read_module_checkpoint(&fixture("yolov8t.pt")).unwrap();
        let oracle = oracle();
        assert_eq!(checkpoint.root.class, "ultralytics.nn.tasks.DetectionModel");
        let expected = oracle["tensors"].as_object().unwrap();
        assert_eq!(checkpoint.tensors.len(), expected.len());
        for (name, tensor) in &checkpoint.tensors {
            let shape: Vec<i64> = serde_json::from_value(expected[name].clone()).unwrap();
            assert_eq!(tensor.size(), shape, "{name}");
        }
        let weight = checkpoint.tensor("model.0.conv.weight").unwrap();
        assert_eq!(weight.kind(), tch::Kind::Half);
        assert_eq!(checkpoint.root.attributes["yaml"], oracle["yaml"]);
        assert_eq!(checkpoint.root.attributes["names"], oracle["names"]);
        let stride = checkpoint.attribute_tensor("stride").unwrap();
        let stride: Vec<f64> = Vec::try_from(stride.to_kind(tch::Kind::Double)).unwrap();
        let expected: Vec<f64> = serde_json::from_value(oracle["stride"].clone()).unwrap();
        assert_eq!(stride, expected);
        // Classes, attributes and children of the tree.
        let conv = checkpoint.root.get("model.0").unwrap();
        assert_eq!(conv.kind(), "Conv");
        assert_eq!(
            checkpoint.root.get("model.0.bn").unwrap().attributes["eps"],
            serde_json::json!(0.001)
        );
        assert_eq!(
            checkpoint.root.get("model.9.cv1.act").unwrap().kind(),
            "SiLU"
        );
        assert_eq!(checkpoint.root.get("model.22").unwrap().kind(), "Detect");
        assert!(checkpoint.root.get("model.99").is_none());
    }

    /// A class outside `ultralytics.` and `torch.nn.` where a module
    /// belongs is an error naming it; so are a module without a dict for
    /// its state and a checkpoint with no module.
    #[test]
    fn foreign_classes_and_missing_modules_are_errors_naming_them() {
        let object = |name: &str, state: Option<Value>| Object::new(name, state);
        let dict = |items: Vec<(Value, Value)>| Value::Dict(Pairs::new(items).into());
        let string = |text: &str| Value::Str(text.into());
        let walk = || Walk {
            tensors: Vec::new(),
            attribute_tensors: Vec::new(),
            budget: MAX_ENTRIES,
        };
        let foreign = object(
            "ultralytics.nn.tasks.DetectionModel",
            Some(dict(vec![(
                string("_modules"),
                dict(vec![(
                    string("0"),
                    Value::Object(object("os.system", Some(dict(vec![]))).into()),
                )]),
            )])),
        );
        let err = walk().module(&foreign, "").unwrap_err();
        assert!(err.contains("`0` is a `os.system`"), "{err}");
        let stateless = object("torch.nn.modules.conv.Conv2d", None);
        let err = walk().module(&stateless, "").unwrap_err();
        assert!(err.contains("no state"), "{err}");
        let err = root_object(&dict(vec![(string("model"), Value::None)])).unwrap_err();
        assert!(err.contains("no pickled module"), "{err}");
        // A state dict (a dict of tensors) is no module tree.
        let state_dict = fixture("../clip/tiny_clip.pt");
        if state_dict.exists() {
            assert!(read_module_checkpoint(&state_dict).is_err());
        }
    }

    /// A module shared many times is visited once per reference, up to
    /// the bound: an error, not a hang.
    #[test]
    fn shared_modules_are_bounded() {
        let leaf = Value::Object(
            Object::new(
                "torch.nn.modules.activation.SiLU",
                Some(Value::Dict(Pairs::new(vec![]).into())),
            )
            .into(),
        );
        let mut walk = Walk {
            tensors: Vec::new(),
            attribute_tensors: Vec::new(),
            budget: 100,
        };
        let children: Vec<(Value, Value)> = (0..200)
            .map(|index| (Value::Str(index.to_string().into()), leaf.clone()))
            .collect();
        let root = Object::new(
            "torch.nn.modules.container.Sequential",
            Some(Value::Dict(
                Pairs::new(vec![(
                    Value::Str("_modules".into()),
                    Value::Dict(Pairs::new(children).into()),
                )])
                .into(),
            )),
        );
        let err = walk.module(&root, "").unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
