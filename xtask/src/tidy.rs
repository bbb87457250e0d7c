//! Repository rules checked by code: which crate may depend on which, that
//! no crate's modules import each other in a circle (`module_graph.rs`
//! states the rule), that the CLI writes to stderr only through its
//! `terminal` module and to stdout only through its `Printer`, that child
//! processes are isolated and killed only through `zoo-process`, that
//! ARCHITECTURE.md's diagram is the allowed edges, and that no file cites
//! a document outside the repository.
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
    // FiftyOne's database: its samples in, labels out as FiftyOne's BSON
    // (the label schema is the one FiftyOne's dataset folder carries).
    (
        "zoo-fiftyone-db",
        &["zoo-datasets", "zoo-fs", "zoo-model-core"],
    ),
    // The application layer: everything but a model runtime (libtorch
    // comes in through `Runtime`, from the binary that links it).
    (
        "zoo",
        &[
            "zoo-datasets",
            "zoo-fiftyone-db",
            "zoo-fs",
            "zoo-manifest",
            "zoo-model-core",
            "zoo-process",
            "zoo-python-host",
            "zoo-registry",
            "zoo-sources",
            "zoo-storage",
        ],
    ),
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
    // Bundles (`.tar.zst`) are written and unpacked by `zoo-sources` only.
    ("zstd", &["zoo-sources"]),
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
    "zoo-fiftyone-db",
    "zoo-test-support",
    "zoo",
];

/// Returns every rule broken, empty when all hold.
pub(crate) fn check(sh: &Shell) -> Result<Vec<String>> {
    let output = cmd!(sh, "cargo metadata --format-version 1 --locked")
        .quiet()
        .read()?;
    let metadata: Value = serde_json::from_str(&output).context("parsing cargo metadata")?;
    let mut problems = check_metadata(&metadata);
    let root = crate::workspace_root();
    let mut circles = Vec::new();
    for src in source_folders(&metadata) {
        let folder = src
            .strip_prefix(&root)
            .unwrap_or(&src)
            .display()
            .to_string();
        for circle in crate::module_graph::cycles(&src)? {
            circles.push((folder.clone(), circle));
        }
    }
    problems.extend(check_circles(&circles));
    problems.extend(check_terminal_output(
        &crate::workspace_root().join("crates/cli/src"),
    )?);
    problems.extend(check_dependency_diagram(&crate::workspace_root())?);
    problems.extend(check_no_outside_citations(&crate::workspace_root())?);
    problems.extend(check_process_groups(
        &crate::workspace_root().join("crates"),
    )?);
    Ok(problems)
}

/// The markers around ARCHITECTURE.md's dependency diagram, which is
/// [`dependency_diagram`] verbatim.
const DIAGRAM_START: &str = "<!-- tidy: dependency diagram, generated from xtask/src/tidy.rs ALLOWED_EDGES by `cargo xtask tidy --bless` -->";
const DIAGRAM_END: &str = "<!-- tidy: end of dependency diagram -->";

/// The allowed edges as a text diagram: one line per crate, its allowed
/// workspace dependencies after the arrow (`zoo-cli` may depend on all).
pub(crate) fn dependency_diagram() -> String {
    let mut out = String::from("```text\n");
    let width = ALLOWED_EDGES
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    for (name, edges) in ALLOWED_EDGES {
        let targets = if edges.is_empty() {
            "(no zoo crate)".to_owned()
        } else {
            edges.join(", ")
        };
        out.push_str(&format!("{name:<width$} ──► {targets}\n"));
    }
    out.push_str(&format!("{:<width$} ──► any of the above\n", "zoo-cli"));
    out.push_str("```\n");
    out
}

/// The diagram block of `text` (between the markers), if both are there.
fn diagram_block(text: &str) -> Option<(usize, usize)> {
    let start = text.find(DIAGRAM_START)? + DIAGRAM_START.len();
    let end = start + text[start..].find(DIAGRAM_END)?;
    Some((start, end))
}

/// ARCHITECTURE.md's dependency diagram is [`dependency_diagram`].
fn check_dependency_diagram(root: &std::path::Path) -> Result<Vec<String>> {
    let text = fs_err::read_to_string(root.join("ARCHITECTURE.md"))?;
    Ok(match diagram_block(&text) {
        None => vec![format!(
            "ARCHITECTURE.md has no dependency diagram between `{DIAGRAM_START}` and `{DIAGRAM_END}`"
        )],
        Some((start, end)) if text[start..end].trim() != dependency_diagram().trim() => {
            vec!["ARCHITECTURE.md's dependency diagram differs from tidy's allowed edges: run `cargo xtask tidy --bless`".to_owned()]
        }
        Some(_) => Vec::new(),
    })
}

/// Rewrites ARCHITECTURE.md's dependency diagram from the allowed edges.
pub(crate) fn bless(root: &std::path::Path) -> Result<()> {
    let path = root.join("ARCHITECTURE.md");
    let text = fs_err::read_to_string(&path)?;
    let (start, end) = diagram_block(&text).with_context(|| {
        format!("ARCHITECTURE.md has no `{DIAGRAM_START}` ... `{DIAGRAM_END}` block")
    })?;
    let updated = format!(
        "{}\n{}{}",
        &text[..start],
        dependency_diagram(),
        &text[end..]
    );
    fs_err::write(path, updated)?;
    Ok(())
}

/// File kinds the repository documents or configures itself with.
const TEXT_EXTENSIONS: &[&str] = &["rs", "md", "py", "toml", "yaml", "yml", "sh", "sbatch"];

/// Lines citing `SPEC`, a document that is not in this repository: the
/// repository documents its own behaviour.
fn check_no_outside_citations(root: &std::path::Path) -> Result<Vec<String>> {
    let files = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .context("listing the repository's files with git")?;
    let mut problems = Vec::new();
    for name in files.stdout.split(|byte| *byte == 0) {
        let name = String::from_utf8_lossy(name);
        let path = root.join(name.as_ref());
        let wanted = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| TEXT_EXTENSIONS.contains(&extension));
        if !wanted || name.starts_with("xtask/src/tidy.rs") {
            continue;
        }
        let Ok(text) = fs_err::read_to_string(&path) else {
            continue;
        };
        problems.extend(outside_citations(&name, &text));
    }
    Ok(problems)
}

/// The lines of `text` that name `SPEC` as a word.
fn outside_citations(name: &str, text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            line.match_indices("SPEC").any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = line[at + 4..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .map(|(number, _)| {
            format!(
                "{name}:{}: cites SPEC, which is not in this repository; say the behaviour here",
                number + 1
            )
        })
        .collect()
}

/// Every circle found is a problem, named with each step's `file:line`.
fn check_circles(circles: &[(String, crate::module_graph::Circle)]) -> Vec<String> {
    circles
        .iter()
        .map(|(_, circle)| circle.message.clone())
        .collect()
}

/// The folders holding a workspace crate's root file (`lib.rs` or
/// `main.rs`), each once.
fn source_folders(metadata: &Value) -> BTreeSet<std::path::PathBuf> {
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|package| members.contains(package["id"].as_str().unwrap_or_default()))
        .flat_map(|package| package["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["src_path"].as_str())
        .map(std::path::Path::new)
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name == "lib.rs" || name == "main.rs")
        })
        .filter_map(|path| Some(path.parent()?.to_owned()))
        .collect()
}

/// The one file of `crates/cli/src` that may write to stderr: everything
/// else goes through it, so text from manifests reaches the terminal with
/// its control characters escaped (ARCHITECTURE.md, `cli`).
const TERMINAL_FILE: &str = "terminal.rs";

/// The one file of `crates/cli/src` that may write to stdout (its
/// `Printer` escapes every line for people).
const PRINTER_FILE: &str = "output.rs";

/// Every `eprintln!`/`eprint!` in the CLI outside [`TERMINAL_FILE`], and
/// every `println!`/`print!`/`io::stdout(` outside [`PRINTER_FILE`].
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
            if !is_rust {
                continue;
            }
            let is = |file: &str| path.file_name().is_some_and(|name| name == file);
            let text = fs_err::read_to_string(&path)?;
            for (number, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                let stdout = code.contains("io::stdout(")
                    || code.contains("println!(")
                    || code.contains("print!(");
                if stdout && !code.contains("eprint") && !is(PRINTER_FILE) {
                    problems.push(format!(
                        "{}:{}: writes to stdout directly; use `output::Printer` so outside text is escaped",
                        path.display(),
                        number + 1
                    ));
                }
                if is(TERMINAL_FILE) {
                    continue;
                }
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
            // The application layer builds and tests without libtorch: not
            // even its tests may pull the torch backend in.
            if name == "zoo" && matches!(dep, "zoo-torch-backend" | "tch") {
                problems.push(format!(
                    "zoo -> {dep}: the application crate must build and test without libtorch (take a `Runtime`)"
                ));
            }
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
    fn a_citation_of_spec_is_reported_and_names_containing_it_are_not() {
        let text =
            "// see SPEC 12\nlet spec = ModelSpec::default();\n/// (SPEC section 9)\nHOST_SPEC\n";
        let problems = outside_citations("a.rs", text);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("a.rs:1:"), "{problems:?}");
        assert!(problems[1].starts_with("a.rs:3:"), "{problems:?}");
    }

    #[test]
    fn the_diagram_lists_every_crate_with_its_allowed_edges() {
        let diagram = dependency_diagram();
        for (name, edges) in ALLOWED_EDGES {
            let line = diagram
                .lines()
                .find(|line| line.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing"));
            for edge in *edges {
                assert!(line.contains(edge), "{line}");
            }
        }
        let drifted = format!("{DIAGRAM_START}\n```text\nzoo-fs ──► zoo-cli\n```\n{DIAGRAM_END}");
        let (start, end) = diagram_block(&drifted).unwrap();
        assert_ne!(drifted[start..end].trim(), diagram.trim());
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
        fs_err::write(dir.path().join("output.rs"), "std::io::stdout().lock();\n").unwrap();
        fs_err::write(
            dir.path().join("commands/system.rs"),
            "fn g() {\n    // not std::io::stdout() in a comment\n    writeln!(std::io::stdout().lock(), \"x\");\n}\n",
        )
        .unwrap();
        let mut problems = check_terminal_output(dir.path()).unwrap();
        problems.sort();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("models.rs:2"), "{problems:?}");
        assert!(problems[1].contains("system.rs:3"), "{problems:?}");
        assert!(problems[1].contains("stdout directly"), "{problems:?}");
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
