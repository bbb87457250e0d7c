//! Hooks: code shipped in a source that downloads or loads its models.
//!
//! Two forms, as SPEC section 7 describes: FiftyOne's `__init__.py` with
//! `download_model(model_name, model_path)` and `load_model(model_name,
//! model_path, **kwargs)`, run by `python3` through a small bridge script; or
//! executable files named `download_model` / `load_model`, called with the
//! model name and path. Hooks run in the source folder, without
//! `GITHUB_TOKEN` in their environment, and only for trusted sources (the
//! caller checks).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::error::RegistryError;

/// Which hook to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookKind {
    Download,
    Load,
}

impl HookKind {
    fn function(self) -> &'static str {
        match self {
            Self::Download => "download_model",
            Self::Load => "load_model",
        }
    }
}

/// A hook found in a source folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hook {
    /// `__init__.py` defines the function.
    Python(PathBuf),
    /// An executable file named after the function.
    Executable(PathBuf),
}

const CONFIG_MARKER: &str = "@@zoo-config@@";

const BRIDGE: &str = r#"
import importlib.util, json, os, sys
source_dir, function, model_name, model_path = sys.argv[1:5]
kwargs = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
name = "zoo_source_%d" % (abs(hash(source_dir)),)
spec = importlib.util.spec_from_file_location(
    name, os.path.join(source_dir, "__init__.py"), submodule_search_locations=[source_dir]
)
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
hook = getattr(module, function, None)
if hook is None:
    sys.stderr.write("__init__.py defines no function `%s`\n" % function)
    sys.exit(3)
if function == "download_model":
    hook(model_name, model_path)
else:
    result = hook(model_name, model_path, **kwargs)
    try:
        text = json.dumps(result)
    except TypeError as error:
        sys.stderr.write("load_model returned a %s, which is not JSON: %s\n" % (type(result).__name__, error))
        sys.exit(4)
    sys.stdout.write("\n@@zoo-config@@" + text + "\n")
"#;

/// The hook of `kind` in `source_dir`, if the source ships one.
pub(crate) fn find(source_dir: &Path, kind: HookKind) -> Option<Hook> {
    let init = source_dir.join("__init__.py");
    if let Ok(text) = fs_err::read_to_string(&init)
        && text.contains(&format!("def {}", kind.function()))
    {
        return Some(Hook::Python(init));
    }
    let executable = source_dir.join(kind.function());
    if is_executable(&executable) {
        return Some(Hook::Executable(executable));
    }
    None
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = fs_err::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    metadata.is_file()
}

/// Runs a hook; returns its stdout.
pub(crate) fn run(
    hook: &Hook,
    kind: HookKind,
    python: &str,
    model_name: &str,
    model_path: &Path,
    kwargs: &Value,
) -> Result<String, RegistryError> {
    let (mut command, label) = match hook {
        Hook::Python(init) => {
            let source_dir = init.parent().unwrap_or(Path::new("."));
            let mut command = Command::new(python);
            command
                .arg("-c")
                .arg(BRIDGE)
                .arg(source_dir)
                .arg(kind.function())
                .arg(model_name)
                .arg(model_path);
            if kind == HookKind::Load {
                command.arg(kwargs.to_string());
            }
            (
                command,
                format!("`{}` in `{}`", kind.function(), init.display()),
            )
        }
        Hook::Executable(path) => {
            let mut command = Command::new(path);
            command.arg(model_name).arg(model_path);
            (command, format!("`{}`", path.display()))
        }
    };
    let source_dir = match hook {
        Hook::Python(path) | Hook::Executable(path) => path.parent().unwrap_or(Path::new(".")),
    };
    command.current_dir(source_dir).env_remove("GITHUB_TOKEN");
    tracing::debug!(hook = %label, model = model_name, "running hook");
    let output = command.output().map_err(|err| RegistryError::Hook {
        hook: label.clone(),
        model: model_name.to_owned(),
        message: format!("cannot start it: {err}"),
        stderr: String::new(),
    })?;
    if !output.status.success() {
        return Err(RegistryError::Hook {
            hook: label,
            model: model_name.to_owned(),
            message: format!("it failed ({})", output.status),
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 20),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The deployment config a load hook printed: after the bridge's marker, or
/// the whole output, or its last line.
pub(crate) fn parse_config(stdout: &str, hook: &str, model: &str) -> Result<Value, RegistryError> {
    let candidates = [
        stdout
            .rsplit_once(CONFIG_MARKER)
            .map(|(_, json)| json.trim()),
        Some(stdout.trim()),
        stdout
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .map(str::trim),
    ];
    let value = candidates
        .into_iter()
        .flatten()
        .find_map(|text| serde_json::from_str::<Value>(text).ok())
        .ok_or_else(|| RegistryError::BadLoadConfig {
            hook: hook.to_owned(),
            model: model.to_owned(),
            message: "it printed no JSON".to_owned(),
        })?;
    let valid = value.get("type").is_some_and(Value::is_string)
        && value.get("config").is_none_or(Value::is_object);
    if !valid {
        return Err(RegistryError::BadLoadConfig {
            hook: hook.to_owned(),
            model: model.to_owned(),
            message: format!("it returned `{}`", truncate(&value.to_string(), 200)),
        });
    }
    Ok(value)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(limit).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_configs_are_found_and_checked() {
        let good = "noise\n@@zoo-config@@{\"type\": \"x.Model\", \"config\": {\"a\": 1}}\n";
        assert_eq!(parse_config(good, "h", "m").unwrap()["config"]["a"], 1);
        let plain = "{\"type\": \"x.Model\"}";
        assert_eq!(parse_config(plain, "h", "m").unwrap()["type"], "x.Model");
        let last = "loading...\n{\"type\": \"y\"}\n";
        assert_eq!(parse_config(last, "h", "m").unwrap()["type"], "y");
        for bad in [
            "nothing",
            "[1, 2]",
            "{\"config\": {}}",
            "{\"type\": \"t\", \"config\": 3}",
        ] {
            let err = parse_config(bad, "h", "m").unwrap_err().to_string();
            assert!(err.contains("{\"type\""), "{bad}: {err}");
        }
    }
}
