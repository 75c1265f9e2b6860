//! The layering ARCHITECTURE.md draws, checked against the source: a
//! module may import only the layers below it, SQL and connections stay in
//! `store/`, nothing but `main` ends the process, and control flow never
//! reads our own error text. These rules used to be kept by habit; this
//! test keeps them by build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
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

/// The file's text without its `#[cfg(test)]` module (tests may reach
/// anywhere) and without comment lines.
fn product_text(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap();
    if p.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n == "tests.rs" || n.ends_with("_tests.rs") || n == "testutil.rs"
    }) {
        return String::new();
    }
    let body = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    body.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module of `src/` a file belongs to (`store`, `runner`, …).
fn layer_of(p: &Path) -> String {
    let rel = p.strip_prefix(root().join("src")).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Which `src/` layers each layer may import (besides the runtime crate's
/// modules `engine`, `spec`, `expr`, `fsx`, which every layer may use).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("store", &[][..]),
        ("llm", &["store"][..]),
        ("pipeline", &["llm", "store"][..]),
        ("durable", &["store"][..]),
        (
            "runner",
            &["durable", "pipeline", "llm", "store", "tooling"][..],
        ),
        ("ops", &["runner", "pipeline", "llm", "store"][..]),
        (
            "tooling",
            &["runner", "pipeline", "durable", "llm", "store"][..],
        ),
        (
            "bench",
            &["ops", "runner", "pipeline", "durable", "llm", "store"][..],
        ),
    ])
}

/// The first path segment of every item in `use crate::{a, b::c, …}`
/// groups (`a`, `b`), so grouped imports are checked too.
fn grouped_crate_imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::{") {
        rest = &rest[i + "crate::{".len()..];
        let mut depth = 1;
        let mut end = rest.len();
        for (j, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let group = &rest[..end];
        // Top-level items only: split on commas outside nested braces.
        let mut depth = 0;
        let mut start = 0;
        for (j, c) in group.char_indices().chain([(group.len(), ',')]) {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    let item = group[start..j].trim();
                    let head = item.split("::").next().unwrap_or("").trim();
                    if !head.is_empty() {
                        out.push(head.to_string());
                    }
                    start = j + 1;
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn grouped_imports_are_seen() {
    let text = "use crate::{runner::config, store::{Store, PaperStatus}, llm};";
    assert_eq!(grouped_crate_imports(text), ["runner", "store", "llm"]);
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let allowed = allowed();
    let mut bad = Vec::new();
    for f in rust_files(&root().join("src")) {
        let layer = layer_of(&f);
        let Some(ok) = allowed.get(layer.as_str()) else {
            continue; // cli, main.rs, lib.rs: the top
        };
        let text = product_text(&f);
        for name in allowed.keys() {
            if *name == layer || ok.contains(name) {
                continue;
            }
            let grouped = grouped_crate_imports(&text);
            let direct = [format!("crate::{name}::"), format!("crate::{name};")]
                .iter()
                .any(|pat| text.contains(pat.as_str()));
            if direct || grouped.iter().any(|g| g == name) {
                bad.push(format!("{} imports {name}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}

#[test]
fn the_runtime_crate_names_no_host_layer_or_host_dependency() {
    let dir = root().join("crates/flatmachines");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dev-dependencies]").next().unwrap();
    for dep in ["rusqlite", "r2d2", "reqwest", "axum", "hyper"] {
        assert!(!deps.contains(dep), "flatmachines depends on {dep}");
    }
    for f in rust_files(&dir.join("src")) {
        let text = product_text(&f);
        for host in [
            "paper_runner",
            "crate::store",
            "crate::llm",
            "crate::runner",
        ] {
            assert!(!text.contains(host), "{} names {host}", f.display());
        }
    }
}

#[test]
fn sql_and_connections_live_only_in_the_store() {
    let sql = [
        "SELECT ",
        "INSERT INTO",
        "UPDATE executions",
        "DELETE FROM",
        "rusqlite::",
        "r2d2",
        ".conn()",
    ];
    let mut bad = Vec::new();
    for f in rust_files(&root().join("src")) {
        if layer_of(&f) == "store" {
            continue;
        }
        let text = product_text(&f);
        for s in sql {
            if text.contains(s) {
                bad.push(format!("{}: {s}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "SQL outside store/:\n{}", bad.join("\n"));
}

#[test]
fn only_main_ends_the_process() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("crates/flatmachines/src")));
    for f in files {
        if f.ends_with("src/main.rs") {
            continue;
        }
        let text = product_text(&f);
        assert!(
            !text.contains("process::exit("),
            "{} calls process::exit",
            f.display()
        );
    }
}

#[test]
fn control_flow_never_reads_our_own_error_text() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("crates/flatmachines/src")));
    let patterns = [
        "message.contains(",
        ".to_string().contains(",
        "msg.contains(",
        "stderr.contains(",
    ];
    for f in files {
        let text = product_text(&f);
        for p in patterns {
            assert!(!text.contains(p), "{}: {p}", f.display());
        }
    }
}
