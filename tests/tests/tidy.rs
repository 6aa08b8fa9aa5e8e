//! Tidy checks over the repository's own sources, run as ordinary tests (like rust-analyzer's
//! `xtask/src/tidy.rs`), so that CI enforces the structure ARCHITECTURE.md describes:
//!
//! - no two modules of a crate import each other, directly or through a loop, and neither do
//!   two submodules of a module directory (`store/a.rs` and `store/b.rs`);
//! - no source file is longer than [`MAX_LINES`] outside its `#[cfg(test)] mod tests`;
//! - in the gateway, SQL and `rusqlite` appear only in its store (`crates/gateway/src/store/`).
//!
//! The import graph is read from the text: a module `a` depends on `b` when code in `a` names
//! `crate::b`, or `crate::X` where the crate root re-exports `X` from `b`, or (in the crate
//! root) `b::`. Comments and unit-test modules do not count; `pub use` and `mod` lines in the
//! crate root are its table of contents, not dependencies. A module directory's own file
//! (`store/mod.rs` or `store.rs`) is the root of its submodules' graph in the same way, and
//! they name each other as `crate::store::b` or, from a file directly in the directory, as
//! `super::b`.
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

/// A directory whose files are modules: a crate's `src` or a module directory inside it.
struct ModuleDir {
    /// The directory.
    dir: PathBuf,
    /// The file of the module the directory belongs to (`lib.rs`, `store/mod.rs`, `store.rs`).
    root_file: PathBuf,
    /// How code anywhere in the crate names the directory's modules: `crate::`, `crate::store::`.
    prefix: String,
    /// The root's name in the graph: `(crate root)`, `(store root)`.
    root_name: String,
}

/// A crate's own module directory.
fn crate_dir(src: &Path) -> ModuleDir {
    let root_file = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .find(|p| p.is_file())
        .unwrap();
    ModuleDir {
        dir: src.to_path_buf(),
        root_file,
        prefix: "crate::".to_owned(),
        root_name: "(crate root)".to_owned(),
    }
}

/// The module directories inside `parent` (`src/store/` with `src/store/mod.rs` or
/// `src/store.rs`), and theirs, recursively. A crate's `src/bin` holds crates, not modules.
fn nested_dirs(parent: &ModuleDir) -> Vec<ModuleDir> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&parent.dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for d in entries {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        if parent.prefix == "crate::" && name == "bin" {
            continue;
        }
        let root_file = [d.join("mod.rs"), parent.dir.join(format!("{name}.rs"))]
            .into_iter()
            .find(|p| p.is_file());
        let Some(root_file) = root_file else {
            continue;
        };
        let m = ModuleDir {
            dir: d,
            root_file,
            prefix: format!("{}{name}::", parent.prefix),
            root_name: format!("({name} root)"),
        };
        out.extend(nested_dirs(&m));
        out.push(m);
    }
    out
}

/// One crate's module graph: each top-level module and the modules it depends on.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    graph_of(&crate_dir(src))
}

/// The graph of the modules in a module directory: each module and those it depends on, with
/// the directory's own module as its root.
fn graph_of(at: &ModuleDir) -> BTreeMap<String, BTreeSet<String>> {
    let src = at.dir.as_path();
    let root_file = &at.root_file;
    let root_name = at.root_name.clone();
    let top = at.prefix == "crate::";
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in rust_files(src) {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if (top && (first == "bin" || rel.to_string_lossy() == "main.rs")) || f == *root_file {
            // Binaries are crates of their own; the root is handled below.
            continue;
        }
        let module = first.trim_end_matches(".rs").to_owned();
        files.entry(module).or_default().push(f);
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let root_text = without_comments(without_tests(&std::fs::read_to_string(root_file).unwrap()));
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
            let mut names = names_after(&text, &at.prefix);
            // In a file directly in the directory, `super::` is the directory's root.
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
        if mentions_module(&code, m, &at.prefix) {
            root_deps.insert(m.clone());
        }
    }
    graph
}

/// Whether `code` names `module::` as a path start (not as the tail of another name), alone or
/// after `prefix` (`crate::`) or `self::`.
fn mentions_module(code: &str, module: &str, prefix: &str) -> bool {
    let needle = format!("{module}::");
    let mut at = 0;
    while let Some(i) = code[at..].find(&needle) {
        let start = at + i;
        let before = code[..start].chars().last();
        let ok = match before {
            None => true,
            Some(c) => {
                !(c.is_alphanumeric() || c == '_' || c == ':')
                    || code[..start].ends_with(prefix)
                    || code[..start].ends_with("self::")
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
        let top = crate_dir(&src);
        let mut dirs = nested_dirs(&top);
        dirs.push(top);
        for at in dirs {
            problems.extend(loops_in(&at));
        }
    }
    assert!(
        problems.is_empty(),
        "modules that import each other (directly or in a loop):\n{}",
        problems.join("\n")
    );
}

/// The import loops among the modules of one module directory, one line each.
fn loops_in(at: &ModuleDir) -> Vec<String> {
    let graph = graph_of(at);
    cycles(&graph)
        .into_iter()
        .map(|component| {
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
            format!(
                "{}: {}",
                at.dir
                    .strip_prefix(repo_root())
                    .unwrap_or(&at.dir)
                    .display(),
                edges.join("; ")
            )
        })
        .collect()
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

/// Words that only the store may write: the SQLite crate, its parameter macro, and string
/// literals that begin with a statement, its keyword in upper or lower case (`"SELECT …"`,
/// `"select …"`; a sentence such as `"Create a request"` is not a statement).
const STORE_ONLY: [&str; 2] = ["rusqlite", "params!"];
const SQL_STATEMENTS: [&str; 8] = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "PRAGMA", "WITH", "REPLACE",
];

/// Where the files under `src` outside `src/store/` use the store's words (see [`STORE_ONLY`]
/// and [`SQL_STATEMENTS`]), one `file:line: what` each. Comments do not count; unit tests do.
fn sql_outside_store(src: &Path) -> Vec<String> {
    let store = src.join("store");
    let mut found = Vec::new();
    for f in rust_files(src) {
        if f.starts_with(&store) || f == src.join("store.rs") {
            continue;
        }
        let text = without_comments(&std::fs::read_to_string(&f).unwrap());
        let shown = f
            .strip_prefix(repo_root())
            .unwrap_or(&f)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            for word in STORE_ONLY {
                if line.contains(word) {
                    found.push(format!("{shown}:{}: `{word}`", n + 1));
                }
            }
        }
        // A string literal (plain or raw) whose text starts with a statement, after any
        // whitespace: `"SELECT …"`, `r#"\nCREATE TABLE …"`, `"with q AS …"`.
        for (i, _) in text.match_indices('"') {
            let rest = text[i + 1..].trim_start();
            for kw in SQL_STATEMENTS {
                let starts = rest
                    .strip_prefix(kw)
                    .or_else(|| rest.strip_prefix(kw.to_lowercase().as_str()))
                    .and_then(|r| r.chars().next())
                    .is_some_and(char::is_whitespace);
                if starts {
                    let line = text[..i].matches('\n').count() + 1;
                    found.push(format!("{shown}:{line}: a `{kw}` statement"));
                }
            }
        }
    }
    found
}

/// The gateway's storage seam: SQL and `rusqlite` are written only in `store/`; every other
/// module goes through the store's typed transaction.
#[test]
fn gateway_sql_and_rusqlite_stay_in_the_store() {
    let src = repo_root().join("crates/gateway/src");
    assert!(src.join("store").is_dir(), "the gateway's store moved");
    let found = sql_outside_store(&src);
    assert!(
        found.is_empty(),
        "SQL or rusqlite outside crates/gateway/src/store/ (put the statement in the store \
         module that owns the table and call it through `Tx`):\n{}",
        found.join("\n")
    );
}

/// The guard itself: statements and `rusqlite` outside `store/` are found, in plain and raw
/// strings, in upper and lower case, in code and in unit tests; the store's own files,
/// comments and sentences that begin with a keyword's word are not.
#[test]
fn the_store_guard_finds_sql_outside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("store")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(src.join(name), text).unwrap();
    write(
        "store/mod.rs",
        "use rusqlite::params;\nconst Q: &str = \"SELECT 1\";\n",
    );
    write(
        "a.rs",
        "use rusqlite::Connection;\n// \"SELECT in a comment\" and rusqlite\nfn f() {\n    let q = \"SELECT x FROM t\";\n}\n",
    );
    write(
        "b.rs",
        "const S: &str = r#\"\n  CREATE TABLE t(x);\"#;\nconst GET: &str = \"DELETE\";\n#[cfg(test)]\nmod tests {\n    fn t() { params![1]; }\n}\n",
    );
    write(
        "c.rs",
        "const A: &str = \"select x from t\";\nconst B: &str = \"WITH q AS (SELECT 1) SELECT * FROM q\";\nconst C: &str = \"\n    replace into t values (1)\";\nconst D: &str = \"Create an approval request\";\nconst E: &str = \"with\";\n",
    );
    let mut found = sql_outside_store(&src);
    found.sort();
    let names: Vec<String> = found
        .iter()
        .map(|f| {
            Path::new(f)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "a.rs:1: `rusqlite`",
            "a.rs:4: a `SELECT` statement",
            "b.rs:1: a `CREATE` statement",
            "b.rs:6: `params!`",
            "c.rs:1: a `SELECT` statement",
            "c.rs:2: a `WITH` statement",
            "c.rs:3: a `REPLACE` statement",
        ],
        "{found:?}"
    );
}

/// The checker on module directories: submodules of `store/` that import each other, directly
/// or through a re-export of the directory's root, or with the root itself, are a loop; a
/// top-level module using the store is not.
#[test]
fn the_import_checker_finds_loops_inside_a_module_directory() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("store/sqlite")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(src.join(name), text).unwrap();
    write("lib.rs", "pub mod domain;\npub mod hub;\npub mod store;\n");
    write("domain.rs", "use crate::store::Thing;\n");
    write("hub.rs", "pub struct Pushed;\n");
    write(
        "store/mod.rs",
        "mod a;\nmod b;\nmod c;\nmod sqlite;\npub use a::Thing;\n\npub fn open() { c::go(); sqlite::e(); }\n",
    );
    // a -> b directly, b -> a through the root's re-export: a loop.
    write("store/a.rs", "use super::b::f;\npub struct Thing;\n");
    write("store/b.rs", "use crate::store::Thing;\npub fn f() {}\n");
    // c -> the store's root (open), the root -> c: a loop through the root.
    write("store/c.rs", "pub fn go() { super::open(); }\n");
    // sqlite and its own submodule: no loop, and `super::` there is sqlite, not the store.
    write(
        "store/sqlite.rs",
        "mod schema;\npub fn e() { schema::m(); }\n",
    );
    write(
        "store/sqlite/schema.rs",
        "use crate::hub::Pushed;\npub fn m() { super::e(); }\n",
    );
    let top = crate_dir(&src);
    assert!(cycles(&graph_of(&top)).is_empty(), "{:?}", graph_of(&top));
    let nested = nested_dirs(&top);
    let names: Vec<&str> = nested.iter().map(|d| d.prefix.as_str()).collect();
    assert_eq!(names, ["crate::store::sqlite::", "crate::store::"]);
    let store = graph_of(&nested[1]);
    let mut found = cycles(&store);
    found.sort();
    assert_eq!(
        found,
        vec![
            vec!["(store root)".to_owned(), "c".to_owned()],
            vec!["a".to_owned(), "b".to_owned()],
        ],
        "{store:?}"
    );
    assert_eq!(
        store["sqlite"],
        BTreeSet::new(),
        "a submodule's own `super::` is not the store's root"
    );
    let sqlite = graph_of(&nested[0]);
    assert_eq!(
        cycles(&sqlite),
        vec![vec!["(sqlite root)".to_owned(), "schema".to_owned()]],
        "{sqlite:?}"
    );
    assert_eq!(loops_in(&nested[1]).len(), 2);
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
