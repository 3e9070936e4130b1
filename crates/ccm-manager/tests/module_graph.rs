//! The manager's module graph (DESIGN.md section 12): dependencies point one way, adapters →
//! services → store. Read from the source: no cycle among the crate's top-level modules, and
//! the service layer names no adapter (HTTP errors, axum, the console, the routes).
// A test: a failed read aborts it with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (`(root)` for `lib.rs`).
fn top_module(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    match first.trim_end_matches(".rs") {
        "lib" | "main" => "(root)".into(),
        m => m.into(),
    }
}

/// Top-level modules named by `crate::x` paths and `crate::{x, ...}` groups.
fn referenced(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = item.trim().split("::").next().unwrap_or("");
                out.insert(name.to_string());
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = top_module(f);
        let refs = referenced(&code(f));
        deps.entry(m.clone()).or_default().extend(refs);
    }
    let known: BTreeSet<String> = deps.keys().cloned().collect();
    deps.into_iter()
        .map(|(m, refs)| {
            let refs = refs
                .into_iter()
                .filter(|r| known.contains(r) && *r != m && r != "(root)")
                .collect();
            (m, refs)
        })
        .filter(|(m, _)| m != "(root)")
        .collect()
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(
    g: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    node: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in g.get(node).into_iter().flatten() {
        if next == start {
            let mut c = path.clone();
            c.push(start.to_string());
            return Some(c);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = cycle_from(g, start, next, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn the_reference_scanner_sees_paths_and_groups() {
    let refs = referenced("use crate::{AppState, service::x};\nlet y = crate::routes::z;");
    assert!(refs.contains("service") && refs.contains("routes") && refs.contains("AppState"));
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    let found = cycle_from(&g, "a", "a", &mut vec!["a".into()], &mut BTreeSet::new());
    assert_eq!(found, Some(vec!["a".into(), "b".into(), "a".into()]));
}

#[test]
fn no_module_cycles() {
    let g = graph();
    assert!(
        g.contains_key("service") && g.contains_key("routes"),
        "{g:?}"
    );
    assert!(g["routes"].contains("service"), "routes call services");
    for start in g.keys() {
        let cycle = cycle_from(
            &g,
            start,
            start,
            &mut vec![start.clone()],
            &mut BTreeSet::new(),
        );
        assert_eq!(cycle, None, "module cycle; the graph: {g:#?}");
    }
}

#[test]
fn services_name_no_adapter() {
    let mut files = Vec::new();
    rust_files(&src().join("service"), &mut files);
    assert!(files.len() > 10, "{files:?}");
    let adapters = [
        "ApiError",
        "ApiResult",
        "axum",
        "maud",
        "crate::error",
        "crate::routes",
        "crate::console",
        "crate::extract",
        "crate::auth",
        "ConsoleError",
        "StatusCode",
    ];
    for f in &files {
        let text = code(f);
        for name in adapters {
            assert!(
                !text.contains(name),
                "{} names the adapter item {name}",
                f.display()
            );
        }
    }
}

/// Whether `text` reads a `store` field (`x.store.…`, `x.store` at a line end, `x.store)`).
fn touches_store(text: &str) -> bool {
    text.match_indices(".store").any(|(i, m)| {
        let next = text[i + m.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[test]
fn adapters_reach_the_store_only_through_services() {
    assert!(touches_store("s.store.get_app(x)"));
    assert!(touches_store("s\n        .store\n        .get_app(x)"));
    assert!(!touches_store("s.stored_value + self.store_options"));
    let mut files = Vec::new();
    for dir in ["routes", "console"] {
        rust_files(&src().join(dir), &mut files);
    }
    for f in [
        "auth.rs",
        "node_auth.rs",
        "extract.rs",
        "ratelimit.rs",
        "metrics.rs",
    ] {
        files.push(src().join(f));
    }
    assert!(files.len() > 20, "{files:?}");
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| touches_store(&code(f)))
        .map(|f| f.strip_prefix(src()).unwrap().display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "adapters that read or write the store instead of calling a service: {offenders:?}"
    );
}
