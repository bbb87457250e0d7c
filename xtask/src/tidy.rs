//! Repository rules checked by code: which crate may depend on which, that
//! the CLI writes to stderr only through its `terminal` module, and that
//! child processes are isolated and killed only through `zoo-process`.
//!
//! The rules are those of ARCHITECTURE.md; change both together.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value;
use xshell::{Shell, cmd};

/// Workspace crates each crate may depend on (normal dependencies).
const ALLOWED_EDGES: &[(&str, &[&str])] = &[
    ("zoo-fs", &[]),
    ("zoo-process", &[]),
    ("zoo-manifest", &["zoo-fs"]),
    ("zoo-sources", &["zoo-fs"]),
    ("zoo-model-core", &[]),
    (
        "zoo-registry",
        &["zoo-fs", "zoo-manifest", "zoo-process", "zoo-sources"],
    ),
    ("zoo-output-processors", &["zoo-model-core"]),
    (
        "zoo-torch-backend",
        &["zoo-model-core", "zoo-output-processors"],
    ),
    ("zoo-datasets", &["zoo-fs", "zoo-model-core"]),
    ("zoo-python-host", &["zoo-model-core", "zoo-process"]),
    ("zoo-storage", &[]),
    ("zoo-test-support", &[]),
    ("xtask", &["zoo-manifest"]),
];

/// External crates only some workspace crates may use directly.
const RESTRICTED: &[(&str, &[&str])] = &[
    ("tch", &["zoo-torch-backend"]),
    ("clap", &["zoo-cli"]),
    ("indicatif", &["zoo-cli"]),
    ("tracing-subscriber", &["zoo-cli"]),
    ("anyhow", &["zoo-cli", "xtask"]),
    ("ureq", &["zoo-sources"]),
    // A `.pth` checkpoint is a zip; the torch backend reads its own.
    (
        "zip",
        &["zoo-sources", "zoo-test-support", "zoo-torch-backend"],
    ),
    ("tar", &["zoo-sources", "zoo-test-support"]),
    ("rusqlite", &["zoo-datasets"]),
    ("object_store", &["zoo-storage"]),
    // Process groups and signals: one module, `zoo-process`.
    ("rustix", &["zoo-process"]),
];

/// Crates that must build without libtorch anywhere in their dependencies.
const LIBTORCH_FREE: &[&str] = &[
    "zoo-fs",
    "zoo-process",
    "zoo-manifest",
    "zoo-sources",
    "zoo-registry",
    "zoo-model-core",
    "zoo-output-processors",
    "zoo-datasets",
    "zoo-python-host",
    "zoo-storage",
    "zoo-test-support",
];

/// Returns every rule broken, empty when all hold.
pub(crate) fn check(sh: &Shell) -> Result<Vec<String>> {
    let output = cmd!(sh, "cargo metadata --format-version 1 --locked")
        .quiet()
        .read()?;
    let metadata: Value = serde_json::from_str(&output).context("parsing cargo metadata")?;
    let mut problems = check_metadata(&metadata);
    problems.extend(check_terminal_output(
        &crate::workspace_root().join("crates/cli/src"),
    )?);
    problems.extend(check_process_groups(
        &crate::workspace_root().join("crates"),
    )?);
    Ok(problems)
}

/// The one file of `crates/cli/src` that may write to stderr: everything
/// else goes through it, so text from manifests reaches the terminal with
/// its control characters escaped (ARCHITECTURE.md, `cli`).
const TERMINAL_FILE: &str = "terminal.rs";

/// Every `eprintln!`/`eprint!` in the CLI outside [`TERMINAL_FILE`].
fn check_terminal_output(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in fs_err::read_dir(&current)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let is_rust = path.extension().is_some_and(|extension| extension == "rs");
            if !is_rust || path.file_name().is_some_and(|name| name == TERMINAL_FILE) {
                continue;
            }
            let text = fs_err::read_to_string(&path)?;
            for (number, line) in text.lines().enumerate() {
                if line.contains("eprintln!") || line.contains("eprint!") {
                    problems.push(format!(
                        "{}:{}: writes to stderr directly; use `terminal::say!` so outside text is escaped",
                        path.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// The crate that starts and kills process groups: the others call it.
const PROCESS_CRATE: &str = "process";

/// Every process group made or killed outside [`PROCESS_CRATE`]: a child
/// running code zoo did not write goes through `zoo_process::isolate` and
/// `zoo_process::kill`, so none is left without its secrets scrubbed or its
/// group killed.
fn check_process_groups(crates: &std::path::Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = Vec::new();
    for entry in fs_err::read_dir(crates)? {
        let path = entry?.path();
        if path.is_dir() && path.file_name().is_some_and(|name| name != PROCESS_CRATE) {
            stack.push(path.join("src"));
        }
    }
    while let Some(current) = stack.pop() {
        if !current.is_dir() {
            continue;
        }
        for entry in fs_err::read_dir(&current)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let text = fs_err::read_to_string(&path)?;
            for (number, line) in text.lines().enumerate() {
                if line.contains(".process_group(") || line.contains("kill_process_group") {
                    problems.push(format!(
                        "{}:{}: makes or kills a process group itself; use `zoo_process::isolate` and `zoo_process::kill`",
                        path.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    Ok(problems)
}

fn check_metadata(metadata: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let packages: Vec<&Value> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED_EDGES.iter().copied().collect();
    let workspace_names: BTreeSet<&str> = packages
        .iter()
        .filter(|package| members.contains(package["id"].as_str().unwrap_or_default()))
        .filter_map(|package| package["name"].as_str())
        .collect();

    for package in &packages {
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        if !workspace_names.contains(name) {
            continue;
        }
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let dep = dependency["name"].as_str().unwrap_or_default();
            let normal = dependency["kind"].is_null();
            if workspace_names.contains(dep) && normal {
                if dep == "zoo-test-support" {
                    problems.push(format!(
                        "{name} depends on zoo-test-support outside [dev-dependencies]"
                    ));
                } else if let Some(edges) = allowed.get(name)
                    && !edges.contains(&dep)
                {
                    problems.push(format!(
                        "{name} -> {dep} is not an allowed edge (see ARCHITECTURE.md)"
                    ));
                }
            }
            if normal
                && let Some((_, owners)) = RESTRICTED.iter().find(|(krate, _)| *krate == dep)
                && !owners.contains(&name)
            {
                problems.push(format!(
                    "{name} uses {dep}, which only {} may use",
                    owners.join(", ")
                ));
            }
        }
    }

    // Normal-dependency closure from the resolve graph.
    let names_by_id: BTreeMap<&str, &str> = packages
        .iter()
        .filter_map(|package| Some((package["id"].as_str()?, package["name"].as_str()?)))
        .collect();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let id = node["id"].as_str().unwrap_or_default();
        for dep in node["deps"].as_array().into_iter().flatten() {
            let is_normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|kind| kind["kind"].is_null());
            if is_normal && let Some(target) = dep["pkg"].as_str() {
                edges.entry(id).or_default().push(target);
            }
        }
    }
    for package in &packages {
        let (Some(id), Some(name)) = (package["id"].as_str(), package["name"].as_str()) else {
            continue;
        };
        if !LIBTORCH_FREE.contains(&name) {
            continue;
        }
        let mut stack = vec![id];
        let mut seen = BTreeSet::new();
        while let Some(current) = stack.pop() {
            if !seen.insert(current) {
                continue;
            }
            let current_name = names_by_id.get(current).copied().unwrap_or_default();
            if current_name == "torch-sys" || current_name == "tch" {
                problems.push(format!(
                    "{name} must build without libtorch but depends on {current_name}"
                ));
                break;
            }
            stack.extend(edges.get(current).into_iter().flatten().copied());
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_follows_the_dependency_rules() {
        let sh = Shell::new().unwrap();
        sh.change_dir(crate::workspace_root());
        let problems = check(&sh).unwrap();
        assert!(problems.is_empty(), "tidy:\n{}", problems.join("\n"));
    }

    #[test]
    fn a_raw_stderr_write_in_the_cli_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("commands")).unwrap();
        fs_err::write(dir.path().join(TERMINAL_FILE), "eprintln!(\"ok here\");\n").unwrap();
        fs_err::write(
            dir.path().join("commands/models.rs"),
            "fn f() {\n    eprintln!(\"{name}\");\n}\n",
        )
        .unwrap();
        let problems = check_terminal_output(dir.path()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("models.rs:2"), "{problems:?}");
    }

    #[test]
    fn a_process_group_outside_zoo_process_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        for (krate, file) in [("process", "lib.rs"), ("registry", "hooks.rs")] {
            let src = dir.path().join(krate).join("src");
            fs_err::create_dir_all(&src).unwrap();
            fs_err::write(
                src.join(file),
                "fn f(c: &mut Command) {\n    c.process_group(0);\n}\n",
            )
            .unwrap();
        }
        let problems = check_process_groups(dir.path()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("hooks.rs:2"), "{problems:?}");
    }

    #[test]
    fn a_forbidden_edge_is_reported() {
        let metadata = serde_json::json!({
            "workspace_members": ["a", "b"],
            "packages": [
                {"id": "a", "name": "zoo-manifest", "dependencies": [
                    {"name": "zoo-registry", "kind": null},
                    {"name": "clap", "kind": null}
                ]},
                {"id": "b", "name": "zoo-registry", "dependencies": []},
                {"id": "t", "name": "tch", "dependencies": []}
            ],
            "resolve": {"nodes": [
                {"id": "a", "deps": [{"pkg": "t", "dep_kinds": [{"kind": null}]}]}
            ]}
        });
        let problems = check_metadata(&metadata);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("zoo-manifest -> zoo-registry"));
        assert!(problems[1].contains("uses clap"));
        assert!(problems[2].contains("without libtorch"));
    }
}
