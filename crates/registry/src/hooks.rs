//! Hooks: code shipped in a source that downloads or loads its models.
//!
//! Two forms: FiftyOne's `__init__.py` with
//! `download_model(model_name, model_path)` and `load_model(model_name,
//! model_path, **kwargs)`, run by `python3` through a small bridge script; or
//! executable files named `download_model` / `load_model`, called with the
//! model name and path. Hooks run in the source folder, without
//! `GITHUB_TOKEN` in their environment, and only for trusted sources (the
//! caller checks).
//!
//! A Python hook exists when `__init__.py` has a line starting with
//! `def download_model(` (or `def load_model(`): a top-level function, not a
//! word in a comment or a method. A hook runs at most the configured time
//! (`ZOO_HOOK_TIMEOUT`); then it is killed, with every process it started
//! (it runs in its own process group).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use zoo_process::Tail;

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

/// How many of a hook's last stderr lines an error shows.
const TAIL_LINES: usize = 20;

/// The most a hook may print on stdout (its config); past it the hook
/// fails, and the rest is read and dropped.
const MAX_STDOUT_BYTES: usize = 64 << 20;

const BRIDGE: &str = r#"
import importlib.util, json, os, sys
source_dir, function, model_name, model_path = sys.argv[1:5]
# `load_model`'s keyword arguments come on stdin (any size; a command line
# is capped), then stdin is at its end, as it is for a download hook.
kwargs = json.loads(sys.stdin.read() or "{}") if function == "load_model" else {}
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
        if any(c.__module__ == "fiftyone.core.models" and c.__name__ == "Model" for c in type(result).__mro__):
            sys.stderr.write("load_model returned a FiftyOne model, `%s.%s`, which has no JSON config: zoo runs it in its model host (`zoo models apply`, `zoo models embed`)\n" % (type(result).__module__, type(result).__qualname__))
        else:
            sys.stderr.write("load_model returned a %s, which is not JSON: %s\n" % (type(result).__name__, error))
        sys.exit(4)
    sys.stdout.write("\n@@zoo-config@@" + text + "\n")
"#;

/// The hook of `kind` in `source_dir`, if the source ships one.
pub(crate) fn find(source_dir: &Path, kind: HookKind) -> Option<Hook> {
    let init = source_dir.join("__init__.py");
    if let Ok(text) = fs_err::read_to_string(&init)
        && defines(&text, kind.function())
    {
        return Some(Hook::Python(init));
    }
    let executable = source_dir.join(kind.function());
    if is_executable(&executable) {
        return Some(Hook::Executable(executable));
    }
    None
}

/// Whether Python source `text` defines the top-level function `function`:
/// a line starting with `def`, blanks, the name, optional blanks and `(`.
fn defines(text: &str, function: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("def")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .and_then(|rest| rest.trim_start().strip_prefix(function))
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    })
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

/// Runs a hook for at most `timeout`; returns its stdout.
pub(crate) fn run(
    hook: &Hook,
    kind: HookKind,
    python: &str,
    timeout: Duration,
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
                .arg(model_path)
                // No `__pycache__` written into the source's folder (its
                // files are locked and bundled as they came).
                .env("PYTHONDONTWRITEBYTECODE", "1");
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
    let kwargs = match (hook, kind) {
        (Hook::Python(_), HookKind::Load) => Some(kwargs.to_string()),
        _ => None,
    };
    command
        .current_dir(source_dir)
        .stdin(if kwargs.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so a timeout kills what it started too; no
    // `GITHUB_TOKEN`.
    zoo_process::isolate(&mut command);
    tracing::debug!(hook = %label, model = model_name, ?timeout, "running hook");
    let failure = |message: String, stderr: String| RegistryError::Hook {
        hook: label.clone(),
        model: model_name.to_owned(),
        message,
        stderr,
    };
    let mut child = command
        .spawn()
        .map_err(|err| failure(format!("cannot start it: {err}"), String::new()))?;
    if let (Some(kwargs), Some(mut stdin)) = (kwargs, child.stdin.take()) {
        // On a thread: a hook that never reads cannot block zoo, and a hook
        // that exits first makes the write fail, which its status says.
        std::thread::spawn(move || {
            let _ = stdin.write_all(kwargs.as_bytes());
        });
    }
    let stdout = zoo_process::read_bounded(child.stdout.take(), MAX_STDOUT_BYTES);
    let stderr = Tail::spawn(child.stderr.take(), TAIL_LINES, |_| {});
    // Any limit past a century is no limit (and cannot overflow `Instant`).
    let timeout = timeout.min(Duration::from_secs(100 * 365 * 24 * 3600));
    let deadline = Instant::now() + timeout;
    let status = match zoo_process::wait_until(&mut child, deadline) {
        Ok(Some(status)) => status,
        Ok(None) => {
            zoo_process::kill(&mut child);
            stderr.wait(Duration::from_secs(1));
            return Err(RegistryError::HookTimeout {
                hook: label.clone(),
                model: model_name.to_owned(),
                limit: timeout,
                stderr: stderr.text(),
            });
        }
        Err(err) => {
            zoo_process::kill(&mut child);
            return Err(failure(format!("cannot wait for it: {err}"), String::new()));
        }
    };
    // The hook has exited; what it started may still hold its pipes open:
    // wait for them until the deadline, then stop them. (While any of them
    // lives, the process group exists, so its id cannot name anyone else.)
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100))
    };
    let output = stdout.recv_timeout(left()).ok();
    let errors_done = stderr.wait(left());
    if output.is_none() || !errors_done {
        tracing::warn!(hook = %label, "processes the hook started outlived it; killing them");
        zoo_process::kill_group(&child);
    }
    let (output, truncated) = output.unwrap_or_default();
    if !status.success() {
        return Err(failure(format!("it failed ({status})"), stderr.text()));
    }
    if truncated {
        return Err(failure(
            format!("it printed more than {} MiB", MAX_STDOUT_BYTES >> 20),
            stderr.text(),
        ));
    }
    Ok(String::from_utf8_lossy(&output).into_owned())
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
    fn hooks_are_top_level_defs_not_substrings() {
        let cases = [
            ("def download_model(model_name, model_path):\n", true),
            ("import os\ndef  download_model (a, b):\n", true),
            ("def\tdownload_model(a, b): pass", true),
            ("# def download_model(a, b)\n", false),
            ("x = 'def download_model('\n", false),
            ("class A:\n    def download_model(self, a, b):\n", false),
            ("def download_model_v2(a, b):\n", false),
            ("def download_models(a):\n", false),
            ("undef download_model(a)\n", false),
            ("def load_model(a, b):\n", false),
        ];
        for (text, expected) in cases {
            assert_eq!(defines(text, "download_model"), expected, "{text:?}");
        }
    }

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
