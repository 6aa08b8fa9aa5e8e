//! Tidy checks over the repository's own sources, run as ordinary tests (like rust-analyzer's
//! `xtask/src/tidy.rs`), so that CI enforces the structure ARCHITECTURE.md describes:
//!
//! - no two modules of a crate import each other, directly or through a loop;
//! - no source file is longer than [`MAX_LINES`] outside its `#[cfg(test)] mod tests`.
//!
//! The import graph is read from the text: a module `a` depends on `b` when code in `a` names
//! `crate::b`, or `crate::X` where the crate root re-exports `X` from `b`, or (in the crate
//! root) `b::`. Comments and unit-test modules do not count; `pub use` and `mod` lines in the
//! crate root are its table of contents, not dependencies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a non-test source file may be.
const MAX_LINES: usize = 600;

/// The source directories of every crate in the repository (the root workspace's, the desktop
/// shell's and the fuzz targets'), and of every binary that has modules of its own.
fn crate_sources() -> Vec<PathBuf> {
    let root = repo_root();
    let mut dirs = Vec::new();
    for parent in ["crates", "."] {
        let Ok(entries) = std::fs::read_dir(root.join(parent)) else {
            continue;
        };
        for e in entries.flatten() {
            let src = e.path().join("src");
            if e.path().join("Cargo.toml").is_file() && src.is_dir() {
                // A binary with modules of its own (`src/bin/<name>/main.rs`) is a crate too.
                if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
                    for b in bins.flatten() {
                        if b.path().join("main.rs").is_file() {
                            dirs.push(b.path());
                        }
                    }
                }
                dirs.push(src);
            }
        }
    }
    dirs.sort();
    assert!(
        dirs.len() >= 7,
        "found only these crates, the walk is wrong: {dirs:?}"
    );
    dirs
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The part of a file that is not its unit-test module (by convention, the file's end).
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]") {
        let start = at + i;
        let rest = text[start + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests") {
            return &text[..start];
        }
        at = start + 1;
    }
    text
}

/// Drops line comments (doc comments included), which name paths without depending on them.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers right after each `prefix` in `text`: `crate::{a, b::c}` yields `a` and `b`.
fn names_after(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find(prefix) {
        let start = at + i;
        let before = text[..start].chars().last();
        at = start + prefix.len();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &text[at..];
        if let Some(group) = rest.strip_prefix('{') {
            // One level of braces: the first segment of each item.
            let mut depth = 0;
            let mut item_start = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        item_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && item_start {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                        continue;
                    }
                    if !name.is_empty() {
                        out.push(std::mem::take(&mut name));
                        item_start = false;
                    }
                }
            }
            if !name.is_empty() {
                out.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// One crate's module graph: each top-level module and the modules it depends on.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let root_file = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .find(|p| p.is_file())
        .unwrap();
    let root_name = "(crate root)".to_owned();
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in rust_files(src) {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if first == "bin" || f == root_file || (rel.to_string_lossy() == "main.rs") {
            // Binaries are crates of their own; the root is handled below.
            continue;
        }
        let module = first.trim_end_matches(".rs").to_owned();
        files.entry(module).or_default().push(f);
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let root_text = without_comments(without_tests(&std::fs::read_to_string(&root_file).unwrap()));
    // What the root defines or re-exports, by name: `crate::X` then depends on its owner.
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for line in root_text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub use ") {
            let Some((module, items)) = rest.split_once("::") else {
                continue;
            };
            if !modules.contains(module) {
                continue;
            }
            let items = items.trim_end_matches(';');
            let items = items.trim_start_matches('{').trim_end_matches('}');
            for item in items.split(',') {
                let name = item.rsplit("::").next().unwrap_or("").trim();
                let name = name.rsplit(" as ").next().unwrap_or(name).trim();
                if !name.is_empty() {
                    owner.insert(name.to_owned(), module.to_owned());
                }
            }
        } else {
            for kw in [
                "pub fn ",
                "pub(crate) fn ",
                "fn ",
                "pub struct ",
                "pub(crate) struct ",
                "struct ",
                "pub enum ",
                "enum ",
                "pub const ",
                "pub(crate) const ",
                "const ",
                "pub static ",
                "static ",
                "pub type ",
                "type ",
                "pub trait ",
                "trait ",
                "pub async fn ",
                "pub(crate) async fn ",
                "async fn ",
            ] {
                if let Some(rest) = t.strip_prefix(kw) {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    owner.entry(name).or_insert_with(|| root_name.clone());
                }
            }
        }
    }
    let resolve = |name: &str| -> Option<String> {
        if modules.contains(name) {
            Some(name.to_owned())
        } else {
            owner.get(name).cloned()
        }
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, paths) in &files {
        let deps = graph.entry(module.clone()).or_default();
        for p in paths {
            let text = without_comments(without_tests(&std::fs::read_to_string(p).unwrap()));
            let mut names = names_after(&text, "crate::");
            // In a top-level module file, `super::` is the crate root.
            if p.parent() == Some(src) {
                names.extend(names_after(&text, "super::"));
            }
            for n in names {
                if let Some(target) = resolve(&n) {
                    if target != *module {
                        deps.insert(target);
                    }
                }
            }
        }
    }
    // The root's own code (not its table of contents) depends on the modules it names.
    let code: String = root_text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("pub use ")
                || t.starts_with("mod ")
                || t.starts_with("pub mod ")
                || t.starts_with("pub(crate) mod "))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let root_deps = graph.entry(root_name.clone()).or_default();
    for m in &modules {
        if mentions_module(&code, m) {
            root_deps.insert(m.clone());
        }
    }
    graph
}

/// Whether `code` names `module::` as a path start (not as the tail of another name).
fn mentions_module(code: &str, module: &str) -> bool {
    let needle = format!("{module}::");
    let mut at = 0;
    while let Some(i) = code[at..].find(&needle) {
        let start = at + i;
        let before = code[..start].chars().last();
        let ok = match before {
            None => true,
            Some(c) => {
                !(c.is_alphanumeric() || c == '_' || c == ':') || code[..start].ends_with("crate::")
            }
        };
        if ok {
            return true;
        }
        at = start + needle.len();
    }
    false
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            let graph = self.graph;
            for w in graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let mut problems = Vec::new();
    for src in crate_sources() {
        let graph = module_graph(&src);
        for component in cycles(&graph) {
            let edges: Vec<String> = component
                .iter()
                .map(|m| {
                    let inside: Vec<&str> = graph[m]
                        .iter()
                        .filter(|d| component.contains(d))
                        .map(String::as_str)
                        .collect();
                    format!("{m} -> {}", inside.join(", "))
                })
                .collect();
            problems.push(format!(
                "{}: {}",
                src.strip_prefix(repo_root()).unwrap().display(),
                edges.join("; ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "modules that import each other (directly or in a loop):\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_source_file_is_longer_than_the_limit_outside_its_tests() {
    let mut long = Vec::new();
    for src in crate_sources() {
        for f in rust_files(&src) {
            let text = std::fs::read_to_string(&f).unwrap();
            let lines = without_tests(&text).lines().count();
            if lines > MAX_LINES {
                long.push(format!(
                    "{}: {lines} lines",
                    f.strip_prefix(repo_root()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by what they own):\n{}",
        long.join("\n")
    );
}

/// The checker itself: a loop through the root and one through a re-export are both found,
/// and a module that only uses another is not a loop.
#[test]
fn the_import_checker_finds_loops_through_the_root_and_through_re_exports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let write = |name: &str, text: &str| std::fs::write(src.join(name), text).unwrap();
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod c;\nmod d;\npub use c::Thing;\n\npub fn emit() { a::go(); }\n",
    );
    // a -> root (emit) and root -> a: a loop through the root.
    write("a.rs", "pub fn go() { crate::emit(); }\n");
    // b -> c through the re-export, c -> b directly: a loop.
    write("b.rs", "use crate::Thing;\npub fn f() {}\n");
    write(
        "c.rs",
        "use crate::{b::f, d};\npub struct Thing;\n// crate::a is only a comment\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    );
    // d uses nothing.
    write("d.rs", "pub fn g() {}\n");
    let graph = module_graph(&src);
    let mut found = cycles(&graph);
    found.sort();
    assert_eq!(
        found,
        vec![
            vec!["(crate root)".to_owned(), "a".to_owned()],
            vec!["b".to_owned(), "c".to_owned()],
        ],
        "{graph:?}"
    );
    assert_eq!(
        graph["c"],
        BTreeSet::from(["b".to_owned(), "d".to_owned()]),
        "comments and unit tests are not dependencies"
    );
}
