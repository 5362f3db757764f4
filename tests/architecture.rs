//! The house rules of `src/`, checked by reading the source (ARCHITECTURE.md explains them):
//!
//! 1. Every top-level module sits on a floor, and a module imports only from floors below
//!    its own: never sideways into another module of the same floor, never upwards.
//! 2. No import circle between files, inside a folder either.
//! 3. Every folder's `mod.rs` says what it owns and what it may import.
//! 4. The test double of the kernel seam (`Recorder`) is compiled for tests only.
//!
//! An import is every `crate::`, `super::` and `self::` path, every `use` tree, and every
//! path through a child module that the file declares (`channel::pair()` in runtime/mod.rs);
//! comments and unit-test modules are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floors, from the ground up. Keep in step with ARCHITECTURE.md and src/lib.rs.
const FLOORS: &[(&str, u32)] = &[
    ("error", 0),
    ("units", 0),
    ("kernel", 1),
    ("trace", 2),
    ("state", 3),
    ("cgroup", 4),
    ("confine", 5),
    ("rootfs", 5),
    ("network", 5),
    ("image", 6),
    ("stages", 7),
    ("runtime", 8),
    ("build", 9),
    ("oci", 9),
    ("inspect", 10),
    ("cli", 11),
    ("learn", 12),
];

type Module = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file of the library: its module path and its text.
fn module_files() -> BTreeMap<Module, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap().with_extension("");
        let mut m: Module = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if m == ["main"] {
            continue; // the binary: parsing and dispatch, allowed to call anything
        }
        if m.last().is_some_and(|l| l == "mod" || l == "lib") {
            m.pop();
        }
        out.insert(m, std::fs::read_to_string(&f).unwrap());
    }
    out
}

/// The code of a file without comments, string literals and its unit-test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::new();
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if b[i] == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == '\'' && b.get(i + 2) == Some(&'\'') {
            i += 3; // a char literal such as '"'
        } else if b[i] == '\'' && b.get(i + 1) == Some(&'\\') {
            while i < b.len() && !(b[i] == '\'' && i > 0 && b[i - 1] != '\\') {
                i += 1;
            }
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::{d, self}}`) into full paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
    } else if !tree.is_empty() {
        let tree = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(join(prefix, tree));
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}::{b}"),
    }
}

fn child_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let t = line.trim();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
        if let Some(rest) = t.strip_prefix("mod ") {
            if let Some(name) = rest.strip_suffix(';') {
                out.insert(name.trim().to_string());
            }
        }
    }
    out
}

/// Every path this file names that may lead into another module file.
fn paths_named(code: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    // use trees, possibly over several lines
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let boundary = i == 0 || !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let after = &rest[i + 4..];
        let Some(end) = after.find(';') else { break };
        if boundary {
            expand("", &after[..end], &mut out);
        }
        rest = &after[end..];
    }
    // inline paths
    let chars: Vec<char> = code.chars().collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            let mut j = i;
            while j < chars.len() && (is_ident(chars[j]) || chars[j] == ':') {
                j += 1;
            }
            let path: String = chars[i..j].iter().collect();
            let first = path.split("::").next().unwrap_or("");
            if path.contains("::")
                && (["crate", "super", "self"].contains(&first) || children.contains(first))
            {
                out.push(path.trim_end_matches(':').to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The module file a path leads to, from the file `from` (None: outside the crate).
fn resolve(
    from: &Module,
    path: &str,
    children: &BTreeSet<String>,
    known: &BTreeSet<Module>,
) -> Option<Module> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Module;
    let mut k = 0;
    match segs.first() {
        Some(&"crate") => {
            base = vec![];
            k = 1;
        }
        Some(&"self") => {
            base = from.clone();
            k = 1;
        }
        Some(&"super") => {
            base = from.clone();
            while segs.get(k) == Some(&"super") {
                base.pop();
                k += 1;
            }
        }
        Some(first) if children.contains(*first) => base = from.clone(),
        _ => return None,
    }
    let mut best = base.clone();
    for s in &segs[k..] {
        if *s == "self" {
            continue;
        }
        base.push(s.to_string());
        if known.contains(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    Some(best)
}

fn floor_of(m: &Module) -> Option<u32> {
    let top = m.first()?;
    FLOORS.iter().find(|(n, _)| n == top).map(|(_, f)| *f)
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let files = module_files();
    let known: BTreeSet<Module> = files.keys().cloned().collect();
    let mut g = BTreeMap::new();
    for (m, text) in &files {
        let code = code_of(text);
        let children = child_modules(&code);
        let mut deps = BTreeSet::new();
        for p in paths_named(&code, &children) {
            if let Some(to) = resolve(m, &p, &children, &known) {
                if &to != m && !to.is_empty() {
                    deps.insert(to);
                }
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn the_reader_sees_use_trees_and_inline_paths() {
    let code = code_of(
        "use crate::a::{b, c::{d, self}};\nuse super::x as y;\nfn f() { crate::e::f(); chan::g(); \"crate::not::this\"; }\n",
    );
    let children: BTreeSet<String> = ["chan".to_string()].into();
    let paths = paths_named(&code, &children);
    for want in [
        "crate::a::b",
        "crate::a::c::d",
        "crate::a::c::self",
        "super::x",
        "crate::e::f",
        "chan::g",
    ] {
        assert!(
            paths.contains(&want.to_string()),
            "{want} missing from {paths:?}"
        );
    }
    assert!(!paths.iter().any(|p| p.contains("not")), "{paths:?}");
    let known: BTreeSet<Module> = [
        vec!["a".to_string()],
        vec!["a".to_string(), "c".to_string()],
    ]
    .into();
    let from = vec!["z".to_string()];
    assert_eq!(
        resolve(&from, "crate::a::c::d", &children, &known),
        Some(known.last().unwrap().clone())
    );
    assert_eq!(resolve(&from, "std::fs::read", &children, &known), None);
}

#[test]
fn every_module_is_on_a_floor_and_imports_only_from_below() {
    let g = graph();
    let mut problems = Vec::new();
    for (from, deps) in &g {
        if from.is_empty() {
            continue; // lib.rs declares the modules
        }
        let Some(f) = floor_of(from) else {
            problems.push(format!(
                "{} is on no floor: add it to FLOORS and ARCHITECTURE.md",
                name(from)
            ));
            continue;
        };
        for to in deps {
            if to.first() == from.first() {
                continue;
            }
            let t = floor_of(to).unwrap_or(u32::MAX);
            if t >= f {
                problems.push(format!(
                    "{} (floor {f}) imports {} (floor {t}): only lower floors may be imported",
                    name(from),
                    name(to)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_import_circle_between_files() {
    let g = graph();
    // Depth-first search; a grey node met again closes a circle. Every circle found is
    // reported, so one run shows all there is to untie.
    fn visit(
        m: &Module,
        g: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, u8>,
        stack: &mut Vec<Module>,
        circles: &mut Vec<String>,
    ) {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for d in g.get(m).into_iter().flatten() {
            match state.get(d).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|x| x == d).unwrap_or(0);
                    let c: Vec<String> = stack[i..].iter().chain([d]).map(name).collect();
                    circles.push(c.join(" -> "));
                }
                0 => visit(d, g, state, stack, circles),
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut circles = Vec::new();
    for m in g.keys() {
        if state.get(m).copied().unwrap_or(0) == 0 {
            visit(m, &g, &mut state, &mut Vec::new(), &mut circles);
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
    assert!(
        g.len() > 40,
        "the reader found only {} module files",
        g.len()
    );
}

#[test]
fn every_folder_says_what_it_owns_and_may_import() {
    let mut missing = Vec::new();
    for (folder, _) in FLOORS {
        let dir = src().join(folder);
        if !dir.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(dir.join("mod.rs")).unwrap_or_default();
        let doc: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        if doc.len() < 80 || !doc.contains("May import") {
            missing.push(folder.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "these folders' mod.rs lack a doc saying what they own and what they may import: {missing:?}"
    );
}

#[test]
fn the_kernel_test_double_is_for_tests_only() {
    let text = std::fs::read_to_string(src().join("kernel/mod.rs")).unwrap();
    assert!(
        text.contains("#[cfg(test)]\npub mod recorder;"),
        "kernel/mod.rs must declare the recorder under #[cfg(test)]"
    );
    let g = graph();
    let recorder = vec!["kernel".to_string(), "recorder".to_string()];
    let users: Vec<String> = g
        .iter()
        .filter(|(_, d)| d.contains(&recorder))
        .map(|(m, _)| name(m))
        .collect();
    assert!(
        users.is_empty(),
        "non-test code uses the recorder: {users:?}"
    );
}
