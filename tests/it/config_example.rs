//! `config.example.toml` is the operator's reference: it must load, mean
//! exactly the built-in defaults, and mention every option and every
//! environment override, so the file cannot drift from the code.

use paper_runner::runner::config::{self, Config};
use std::path::{Path, PathBuf};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("config.example.toml is readable")
}

#[test]
fn example_loads_as_the_defaults() {
    let path = example_path();
    let loaded = config::load_with(Some(&path), &|_| None, Path::new("no-such-file"))
        .expect("the example loads");
    assert_eq!(loaded.source.as_deref(), Some(path.as_path()));

    // Paths the file sets are resolved against its directory.
    let dir = path.parent().expect("the example has a directory");
    let mut expected = Config::default();
    for p in [
        &mut expected.db,
        &mut expected.machines_dir,
        &mut expected.pdf_dir,
        &mut expected.reports_dir,
    ] {
        *p = dir.join(&*p);
    }
    assert_eq!(loaded.config, expected);
    loaded.config.validate().expect("the defaults are valid");
}

/// The example's text under `[section]` (the top level for `None`), up to
/// the next section header, commented-out lines included.
fn section<'a>(text: &'a str, name: Option<&str>) -> &'a str {
    let start = match name {
        None => 0,
        Some(n) => {
            let header = format!("\n[{n}]\n");
            text.find(&header)
                .unwrap_or_else(|| panic!("config.example.toml has no [{n}] section"))
                + header.len()
        }
    };
    let rest = &text[start..];
    match rest.find("\n[") {
        Some(end) => &rest[..end],
        None => rest,
    }
}

fn documents(section_text: &str, key: &str) -> bool {
    section_text.lines().any(|line| {
        let line = line.trim_start_matches('#').trim_start();
        line.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })
}

#[test]
fn example_documents_every_option() {
    let text = example_text();
    let defaults = serde_json::to_value(Config::default()).expect("serialisable");
    let top = defaults.as_object().expect("an object");
    for (key, value) in top {
        match value.as_object() {
            Some(fields) => {
                let body = section(&text, Some(key));
                for field in fields.keys() {
                    assert!(
                        documents(body, field),
                        "config.example.toml does not document {key}.{field}"
                    );
                }
            }
            None => assert!(
                documents(section(&text, None), key),
                "config.example.toml does not document {key}"
            ),
        }
    }
}

#[test]
fn example_mentions_every_environment_override() {
    let text = example_text();
    for (var, key) in config::env_overrides() {
        assert!(
            text.contains(var),
            "config.example.toml does not mention {var} ({key})"
        );
    }
    assert!(text.contains("OPENROUTER_API_KEY"));
}
