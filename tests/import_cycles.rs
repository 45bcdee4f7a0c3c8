//! No import cycles between the modules of either crate in the workspace: the library (`src/`)
//! and the server (`server/src/`).
//!
//! A module is a file. Module `a` depends on module `b` when `a`'s code (its tests excluded)
//! names a path into `b`: `crate::b::…`, `super::…`, `self::…`, or a child module `b` that `a`
//! declares (`mod b;`, then `b::…`). A name the crate root re-exports (`crate::Name`) counts
//! as a path into the module it is re-exported from; the root itself holds only `mod` and
//! `pub use` lines, so paths that stop at the root are not edges. Nor is a path into a
//! module's own ancestor: a child module (`time::canonical`) is its parent's private part and
//! sees the parent's items, as Rust scopes them. Comments and the inline
//! `#[cfg(test)] mod tests` at the bottom of a file are not read: tests may reach anywhere.
//!
//! A rough reader of Rust, not a parser: it needs the house layout (one `use` per statement
//! group, `mod tests` last), which `cargo fmt` keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module's path from its crate's root (`[]`: the root).
type ModPath = Vec<String>;

#[test]
fn the_library_has_no_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert_acyclic(&root, "lib.rs");
}

#[test]
fn the_server_has_no_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("server/src");
    // Only in the workspace: the published library has no server beside it.
    if root.is_dir() {
        assert_acyclic(&root, "lib.rs");
    }
}

#[test]
fn a_cycle_is_found() {
    let mut graph = BTreeMap::new();
    let module = |name: &str| vec![name.to_owned()];
    graph.insert(module("a"), BTreeSet::from([module("b")]));
    graph.insert(module("b"), BTreeSet::from([module("c")]));
    graph.insert(module("c"), BTreeSet::from([module("a")]));
    assert_eq!(cycle(&graph).map(|cycle| cycle.len()), Some(4));
    graph.insert(module("c"), BTreeSet::new());
    assert_eq!(cycle(&graph), None);
}

fn assert_acyclic(src: &Path, root_file: &str) {
    let files = modules(src, root_file);
    assert!(files.len() > 3, "no modules found under {}", src.display());
    let known: BTreeSet<ModPath> = files.keys().cloned().collect();
    let reexports = reexports(&code(&files[&Vec::new()]), &known);
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, file) in &files {
        let code = code(file);
        let mut children = BTreeSet::new();
        for line in code.lines() {
            let line = line.trim_start();
            let line = line.strip_prefix("pub(crate) ").unwrap_or(line);
            let line = line.strip_prefix("pub ").unwrap_or(line);
            if let Some(name) = line.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                children.insert(name.to_owned());
            }
        }
        let targets = graph.entry(module.clone()).or_default();
        for path in paths(&code, &children) {
            let absolute = absolute(module, &path);
            if let Some(target) = resolve(&absolute, &known, &reexports) {
                if !module.starts_with(&target) {
                    targets.insert(target);
                }
            }
        }
    }
    if let Some(cycle) = cycle(&graph) {
        let names: Vec<String> = cycle.iter().map(|module| module.join("::")).collect();
        panic!(
            "an import cycle in {}: {}",
            src.display(),
            names.join(" → ")
        );
    }
}

/// Every module file under `src`, by module path.
fn modules(src: &Path, root_file: &str) -> BTreeMap<ModPath, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().map_or(true, |ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: ModPath = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            if relative.with_extension("rs") == Path::new(root_file) {
                module.clear();
            } else if module.len() == 1 && (module[0] == "lib" || module[0] == "main") {
                continue;
            }
            found.insert(module, path);
        }
    }
    found
}

/// A file's code: no comments, no trailing `#[cfg(test)] mod tests { … }`.
fn code(file: &Path) -> String {
    let text = fs::read_to_string(file).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file's code names that starts at `crate`, `super`, `self` or a child module
/// it declares, with `use` groups (`a::{b, c::d}`) spelled out.
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut at = 0;
    while at < bytes.len() {
        let starts_word = at == 0 || !is_ident(bytes[at - 1]) && bytes[at - 1] != ':';
        if starts_word && is_ident(bytes[at]) {
            let (expanded, end) = path_at(&bytes, at);
            for path in expanded {
                let first = path.first().map(String::as_str);
                let from_here = matches!(first, Some("crate" | "super" | "self"))
                    || first.is_some_and(|first| children.contains(first));
                if from_here && path.len() > 1 {
                    found.push(path);
                }
            }
            at = end.max(at + 1);
        } else {
            at += 1;
        }
    }
    found
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The path starting at `at`, each `{…}` group spelled out; and where it ends.
fn path_at(chars: &[char], mut at: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        let start = at;
        while at < chars.len() && is_ident(chars[at]) {
            at += 1;
        }
        prefix.push(chars[start..at].iter().collect::<String>());
        let rest: String = chars[at..chars.len().min(at + 3)].iter().collect();
        if !rest.starts_with("::") {
            return (vec![prefix], at);
        }
        at += 2;
        if chars.get(at) == Some(&'{') {
            at += 1;
            let mut all = Vec::new();
            loop {
                while at < chars.len() && (chars[at].is_whitespace() || chars[at] == ',') {
                    at += 1;
                }
                match chars.get(at) {
                    Some('}') => return (all, at + 1),
                    Some(c) if is_ident(*c) => {
                        let (inner, end) = path_at(chars, at);
                        for tail in inner {
                            let mut path = prefix.clone();
                            if tail != ["self"] {
                                path.extend(tail);
                            }
                            all.push(path);
                        }
                        at = end;
                        // `as name` and anything else up to the next item of the group.
                        while at < chars.len() && !matches!(chars[at], ',' | '}') {
                            at += 1;
                        }
                    }
                    Some(_) => at += 1,
                    None => return (all, at),
                }
            }
        }
        if chars.get(at).map_or(true, |c| !is_ident(*c)) {
            return (vec![prefix], at);
        }
    }
}

/// `path`, named from `module`, as a path from the crate root.
fn absolute(module: &ModPath, path: &[String]) -> Vec<String> {
    let mut base = module.clone();
    let mut rest = path;
    match path[0].as_str() {
        "crate" => {
            base.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().is_some_and(|part| part == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        // A child module's path.
        _ => {}
    }
    base.extend(rest.iter().cloned());
    base
}

/// The module `path` leads into: its longest prefix that is a module, or for a name the root
/// re-exports, the module it comes from.
fn resolve(
    path: &[String],
    known: &BTreeSet<ModPath>,
    reexports: &BTreeMap<String, ModPath>,
) -> Option<ModPath> {
    let module = (0..=path.len())
        .rev()
        .map(|len| path[..len].to_vec())
        .find(|prefix| known.contains(prefix))?;
    if module.is_empty() {
        return path.first().and_then(|name| reexports.get(name)).cloned();
    }
    Some(module)
}

/// The names the crate root re-exports (`pub use a::{B, C}`), with the module each is from.
fn reexports(root: &str, known: &BTreeSet<ModPath>) -> BTreeMap<String, ModPath> {
    let mut names = BTreeMap::new();
    for statement in root.split(';') {
        let Some(at) = statement.find("pub use ") else {
            continue;
        };
        let chars: Vec<char> = statement[at + "pub use ".len()..].chars().collect();
        for path in path_at(&chars, 0).0 {
            if let (Some(name), Some(module)) = (path.last(), resolve(&path, known, &names)) {
                names.insert(name.clone(), module);
            }
        }
    }
    names
}

/// A cycle in `graph`, as the modules along it with the first repeated at the end.
fn cycle(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        module: &ModPath,
        graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        marks: &mut BTreeMap<ModPath, Mark>,
        stack: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        match marks.get(module) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|open| open == module)?;
                let mut cycle = stack[from..].to_vec();
                cycle.push(module.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(module.clone(), Mark::Open);
        stack.push(module.clone());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(module.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut marks, &mut Vec::new()))
}
