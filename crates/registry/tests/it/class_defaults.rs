//! The Hugging Face repos FiftyOne's transformers classes fetch when an
//! entry's config names none, read from FiftyOne 1.22.1's own source (its
//! `fiftyone/utils/transformers.py`, parsed with Python's `ast`: each
//! config class's `d["name_or_path"] = DEFAULT_...` and that constant's
//! value), against the repo zoo fetches for every such built-in. Needs
//! `ZOO_TEST_FIFTYONE_PYTHON` (FiftyOne installed; no torch needed).

use std::collections::BTreeMap;

use zoo_registry::{Registry, RegistryConfig};

#[allow(clippy::print_stderr)]
fn fiftyone_python() -> Option<String> {
    match std::env::var("ZOO_TEST_FIFTYONE_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var_os("ZOO_CI").is_some() || std::env::var_os("CI").is_some() => {
            panic!("ZOO_TEST_FIFTYONE_PYTHON is not set: this test reads FiftyOne's source")
        }
        _ => {
            eprintln!("SKIPPED: FiftyOne's transformers defaults (set ZOO_TEST_FIFTYONE_PYTHON)");
            None
        }
    }
}

/// `{class: default repo}` for the model classes whose config sets
/// `name_or_path` to a module constant when the config has none.
const DEFAULTS: &str = r#"
import ast, importlib.util, json, os
spec = importlib.util.find_spec("fiftyone")
path = os.path.join(spec.submodule_search_locations[0], "utils", "transformers.py")
tree = ast.parse(open(path).read())
constants = {}
for node in tree.body:
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        for target in node.targets:
            if isinstance(target, ast.Name):
                constants[target.id] = node.value.value
defaults = {}
for node in tree.body:
    if not (isinstance(node, ast.ClassDef) and node.name.endswith("Config")):
        continue
    for inner in ast.walk(node):
        if (isinstance(inner, ast.Assign) and isinstance(inner.value, ast.Name)
                and inner.value.id in constants
                and any(isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
                        and t.slice.value == "name_or_path" for t in inner.targets)):
            defaults["fiftyone.utils.transformers." + node.name[:-len("Config")]] = constants[inner.value.id]
print(json.dumps(defaults))
"#;

#[test]
fn builtins_without_a_repo_fetch_the_one_fiftyones_class_would() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let output = std::process::Command::new(python)
        .args(["-c", DEFAULTS])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let defaults: BTreeMap<String, String> = serde_json::from_slice(&output.stdout).unwrap();
    assert!(defaults.len() >= 8, "{defaults:?}");
    let root = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::new(root.path());
    config.builtin = Some(zoo_registry::builtin_manifest());
    let registry = Registry::new(config);
    let view = registry.zoo().unwrap();
    let mut checked = 0;
    for model in view.zoo.models() {
        let Some(deployment) = &model.model.default_deployment_config_dict else {
            continue;
        };
        let Some(default) = deployment
            .kind
            .as_deref()
            .and_then(|kind| defaults.get(kind))
        else {
            continue;
        };
        let expected = match deployment.config.get("name_or_path") {
            Some(named) => named.as_str().unwrap().to_owned(),
            None => {
                checked += 1;
                default.clone()
            }
        };
        assert_eq!(
            registry.hub_repo(model).map(|(repo, _)| repo),
            Some(expected),
            "{}",
            model.name()
        );
    }
    assert!(
        checked >= 8,
        "entries that rely on their class's default: {checked}"
    );
}
