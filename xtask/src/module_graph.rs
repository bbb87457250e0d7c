//! The module graph of a crate's source folder, for the tidy rule that
//! sibling modules never import each other in a circle.
//!
//! The rule: within each module, its child modules (files and folders)
//! form a graph, with an edge `a -> b` when code anywhere under `a`
//! names `b` or anything under it through a `crate::` path (in a `use`, an
//! expression or a type, grouped `use crate::{..}` included) or through a
//! `super::` path written at the start of a line (a file's own top-level
//! `use super::..`; indented `super::` paths sit in inline modules such as
//! `mod tests` and name the file's own items). That graph must be acyclic.
//! A module naming its own ancestors' items, or its own children, adds no
//! edge: `families/resnet.rs` may use `crate::families::Family` defined in
//! `families/mod.rs`, and `lib.rs` may name every module. Comments are
//! skipped; test code counts like any other code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;

/// A module path inside one crate (`["detection", "boxes"]`), empty for the
/// crate root.
type ModulePath = Vec<String>;

/// An edge between two sibling modules and where it was first seen.
#[derive(Debug, Clone)]
struct Edge {
    to: String,
    at: String,
}

/// A circle of sibling modules.
#[derive(Debug)]
pub(crate) struct Circle {
    /// The circle as `a -> b (file:line), b -> a (file:line)`, named by
    /// the crate's source folder and the modules' parent.
    pub(crate) message: String,
}

/// Every circle among sibling modules of the crate whose root file
/// (`lib.rs`/`main.rs`) sits in `src`, each as `a -> b -> a` with the line
/// that makes each step.
pub(crate) fn cycles(src: &Path) -> Result<Vec<Circle>> {
    let files = module_files(src)?;
    let modules: BTreeSet<ModulePath> = files.iter().map(|(module, _)| module.clone()).collect();
    // Parent module -> (child -> edges to its siblings).
    let mut graphs: BTreeMap<ModulePath, BTreeMap<String, Vec<Edge>>> = BTreeMap::new();
    for (module, path) in &files {
        let text = fs_err::read_to_string(path)?;
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for target in referenced_paths(code, module) {
                let Some(target) = longest_module(&modules, &target) else {
                    continue;
                };
                let common = module
                    .iter()
                    .zip(&target)
                    .take_while(|(a, b)| a == b)
                    .count();
                // An ancestor's items or one's own children: no edge.
                if common == module.len() || common == target.len() {
                    continue;
                }
                let parent = module[..common].to_vec();
                let from = module[common].clone();
                let to = target[common].clone();
                let at = format!(
                    "{}:{}",
                    path.strip_prefix(src).unwrap_or(path).display(),
                    number + 1
                );
                let edges = graphs.entry(parent).or_default().entry(from).or_default();
                if !edges.iter().any(|edge| edge.to == to) {
                    edges.push(Edge { to, at });
                }
            }
        }
    }
    let mut found = Vec::new();
    for (parent, graph) in &graphs {
        for cycle in circles(graph) {
            let prefix = if parent.is_empty() {
                "crate".to_owned()
            } else {
                format!("crate::{}", parent.join("::"))
            };
            let (members, cycle) = cycle;
            let steps: Vec<String> = cycle
                .iter()
                .map(|(from, edge)| format!("{from} -> {} ({})", edge.to, edge.at))
                .collect();
            found.push(Circle {
                message: format!(
                    "{}: modules of `{prefix}` import each other in a circle: {}; the circle's modules: {members}",
                    src.display(),
                    steps.join(", ")
                ),
            });
        }
    }
    Ok(found)
}

/// The crate's source files with their module paths: `lib.rs`/`main.rs`
/// are the root, `a.rs` and `a/mod.rs` are `a`, `a/b.rs` is `a::b`;
/// `src/bin` (other crates) is left out.
fn module_files(src: &Path) -> Result<Vec<(ModulePath, PathBuf)>> {
    let mut files = Vec::new();
    let mut stack = vec![(src.to_owned(), ModulePath::new())];
    while let Some((dir, module)) = stack.pop() {
        for entry in fs_err::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if path.is_dir() {
                if !(module.is_empty() && name == "bin") {
                    let mut child = module.clone();
                    child.push(name.to_owned());
                    stack.push((path, child));
                }
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            let is_root = matches!(stem, "mod")
                || (module.is_empty() && stem == "lib")
                || (module.is_empty() && stem == "main");
            let mut file_module = module.clone();
            if !is_root {
                file_module.push(stem.to_owned());
            }
            files.push((file_module, path));
        }
    }
    files.sort();
    Ok(files)
}

/// The longest prefix of `path` that is a module of the crate.
fn longest_module(modules: &BTreeSet<ModulePath>, path: &[String]) -> Option<ModulePath> {
    (1..=path.len())
        .rev()
        .map(|length| path[..length].to_vec())
        .find(|prefix| modules.contains(prefix))
}

/// The paths a line of code names through `crate::` (anywhere) or
/// `super::` (at the line's start), as module paths from the crate root;
/// `module` is the module the line's file is.
fn referenced_paths(code: &str, module: &[String]) -> Vec<ModulePath> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at + "crate::".len()..];
        rest = tail;
        // `$crate::` (macros) and `zoo_crate::` are other paths.
        if before.is_some_and(|c| c == '$' || c == '_' || c.is_alphanumeric()) {
            continue;
        }
        paths.extend(use_tree(tail));
    }
    let trimmed = code
        .trim_start_matches("pub(crate) ")
        .trim_start_matches("pub ");
    if let Some(tail) = trimmed.strip_prefix("use super::") {
        let mut base = module.to_vec();
        base.pop();
        let mut tail = tail;
        while let Some(next) = tail.strip_prefix("super::") {
            base.pop();
            tail = next;
        }
        for path in use_tree(tail) {
            let mut full = base.clone();
            full.extend(path);
            paths.push(full);
        }
    }
    paths
}

/// The paths a use tree starting at `text` names (`a::b::C`, `{a, b::c}`),
/// each up to its last identifier.
fn use_tree(text: &str) -> Vec<ModulePath> {
    let mut paths = Vec::new();
    parse_tree(text, &mut Vec::new(), &mut paths);
    paths
}

/// Parses one use tree at the start of `text` under `prefix`; returns how
/// many bytes it took.
fn parse_tree(text: &str, prefix: &mut ModulePath, paths: &mut Vec<ModulePath>) -> usize {
    let mut at = 0;
    let depth = prefix.len();
    loop {
        let rest = &text[at..];
        if let Some(group) = rest.strip_prefix('{') {
            at += 1;
            let mut inner = group;
            loop {
                let taken = parse_tree(inner.trim_start(), prefix, paths);
                let skipped = inner.len() - inner.trim_start().len();
                at += skipped + taken;
                inner = &text[at..];
                let trimmed = inner.trim_start();
                at += inner.len() - trimmed.len();
                if let Some(after) = trimmed.strip_prefix(',') {
                    at += 1;
                    inner = after;
                    continue;
                }
                if trimmed.starts_with('}') {
                    at += 1;
                }
                break;
            }
            prefix.truncate(depth);
            return at;
        }
        let identifier: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if identifier.is_empty() {
            if prefix.len() > depth {
                paths.push(prefix.clone());
            }
            prefix.truncate(depth);
            return at;
        }
        at += identifier.len();
        if identifier == "self" {
            // `a::{self, B}` names `a` itself.
            if !prefix.is_empty() {
                paths.push(prefix.clone());
            }
            prefix.truncate(depth);
            return at;
        }
        prefix.push(identifier);
        match text[at..].strip_prefix("::") {
            Some(_) => at += 2,
            None => {
                if prefix.len() > depth {
                    paths.push(prefix.clone());
                }
                prefix.truncate(depth);
                return at;
            }
        }
    }
}

/// The circles of a graph of sibling modules: one per strongly connected
/// component of more than one module, as the steps of one cycle through it.
fn circles(graph: &BTreeMap<String, Vec<Edge>>) -> Vec<(String, Vec<(String, Edge)>)> {
    let nodes: BTreeSet<&str> = graph
        .iter()
        .flat_map(|(from, edges)| {
            std::iter::once(from.as_str()).chain(edges.iter().map(|edge| edge.to.as_str()))
        })
        .collect();
    let reaches = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(current) = stack.pop() {
            for edge in graph.get(&current).into_iter().flatten() {
                if seen.insert(edge.to.clone()) {
                    stack.push(edge.to.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&str, BTreeSet<String>> =
        nodes.iter().map(|node| (*node, reaches(node))).collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut found = Vec::new();
    for node in &nodes {
        if done.contains(node) || !reach[node].contains(*node) {
            continue;
        }
        let component: BTreeSet<&str> = nodes
            .iter()
            .copied()
            .filter(|other| reach[node].contains(*other) && reach[other].contains(*node))
            .collect();
        done.extend(component.iter().copied());
        // Breadth-first from `node` back to itself inside the component.
        let mut previous: BTreeMap<String, (String, Edge)> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([node.to_string()]);
        'search: while let Some(current) = queue.pop_front() {
            for edge in graph.get(&current).into_iter().flatten() {
                if !component.contains(edge.to.as_str()) || previous.contains_key(&edge.to) {
                    continue;
                }
                previous.insert(edge.to.clone(), (current.clone(), edge.clone()));
                if edge.to == *node {
                    break 'search;
                }
                queue.push_back(edge.to.clone());
            }
        }
        let mut steps = Vec::new();
        let mut current = node.to_string();
        while let Some((from, edge)) = previous.get(&current) {
            steps.push((from.clone(), edge.clone()));
            current = from.clone();
            if current == *node {
                break;
            }
        }
        steps.reverse();
        let members: Vec<&str> = component.iter().copied().collect();
        found.push((members.join(", "), steps));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = root.join(path);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, text).unwrap();
        }
    }

    #[test]
    fn use_trees_name_their_paths() {
        let cases: &[(&str, &[&str])] = &[
            ("arch::Network;", &["arch::Network"]),
            ("{config, output};", &["config", "output"]),
            ("{a::{b, c::D}, e};", &["a::b", "a::c::D", "e"]),
            ("layers::linear(root, 1)", &["layers::linear"]),
            ("arch::{self, Network};", &["arch", "arch::Network"]),
        ];
        for (text, expected) in cases {
            let got: Vec<String> = use_tree(text).iter().map(|path| path.join("::")).collect();
            assert_eq!(got, *expected, "{text}");
        }
    }

    #[test]
    fn a_circle_of_sibling_modules_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "lib.rs",
                    "mod a;\nmod b;\nmod c;\nmod d;\npub struct Root;\n",
                ),
                ("a.rs", "use crate::b::B;\n// crate::d is a comment\n"),
                ("b.rs", "pub struct B;\nfn f() { crate::c::g() }\n"),
                ("c.rs", "use crate::{a, Root};\npub fn g() {}\n"),
                ("d.rs", "use crate::a;\n"),
            ],
        );
        let found = cycles(dir.path()).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.ends_with("the circle's modules: a, b, c"),
            "{found:?}"
        );
        assert!(
            found[0]
                .message
                .contains("a -> b (a.rs:1), b -> c (b.rs:2), c -> a (c.rs:1)"),
            "{found:?}"
        );
    }

    #[test]
    fn parents_children_and_folders_follow_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("lib.rs", "mod net;\nmod families;\n"),
                ("net.rs", "pub struct Network;\n"),
                (
                    "families/mod.rs",
                    "mod resnet;\nmod vgg;\npub struct Family;\nuse resnet::build;\n",
                ),
                (
                    "families/resnet.rs",
                    "use super::Family;\nuse crate::net::Network;\nuse crate::families::vgg::x;\n\
                     mod tests {\n    use super::*;\n}\n",
                ),
                (
                    "families/vgg.rs",
                    "use crate::families::Family;\npub fn x() {}\n",
                ),
            ],
        );
        assert!(cycles(dir.path()).unwrap().is_empty());
        // A `super::` sibling import closes a circle inside the folder.
        write(dir.path(), &[("families/vgg.rs", "use super::resnet;\n")]);
        let found = cycles(dir.path()).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("crate::families"), "{found:?}");
        assert!(found[0].message.contains("resnet -> vgg"), "{found:?}");
    }
}
