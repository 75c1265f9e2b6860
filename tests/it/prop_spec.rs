//! Property tests for the file/expression layer (issue 12, item 11):
//! machine loading and validation of mutated real files, YAML/JSON parsing
//! of arbitrary text, conditions and templates over arbitrary input. The
//! property is always the same: an answer or an error, never a panic, and
//! quickly.

use crate::support;
use paper_runner::expr::template::MAX_TEMPLATE_OUTPUT;
use paper_runner::expr::{Condition, Templates, Vars};
use paper_runner::spec::load::parse_value;
use paper_runner::spec::{self, LoadOptions};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Every YAML file of the repo's machines and the conformance suite.
fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack = vec![root.join("machines"), root.join("tests/conformance")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Copy a directory tree (so a mutated file still finds its neighbours).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A mutation of a text: (kind, position fraction, length, fragment).
#[derive(Debug, Clone)]
struct Mutation {
    kind: u8,
    at: f64,
    len: usize,
    fragment: String,
}

const FRAGMENTS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "  ",
    "#",
    "'",
    "\"",
    "&a",
    "*a",
    "!!str ",
    "|\n",
    ">-\n",
    "machine: self",
    "machines: {self: ",
    "timeout: 1e20",
    "timeout: -1",
    "timeout: .nan",
    "n_samples: 4000000000",
    "backoffs: [1e300]",
    "{{",
    "}}",
    "{%",
    "%}",
    "{% for i in range(100000) %}",
    "{% endfor %}",
    "context.",
    "type: initial",
    "type: final",
    "to: ",
    "condition: ",
    "foreach: ",
    "on_error: ",
    "~",
    "\\",
    "\u{feff}",
    "\u{0}",
    "é",
    "999999999999999999999999",
    "-.inf",
    "null",
    "true",
    "[[[[[[[[",
    "{a: {a: {a: ",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        0u8..6,
        0.0f64..1.0,
        0usize..200,
        prop::sample::select(FRAGMENTS),
    )
        .prop_map(|(kind, at, len, f)| Mutation {
            kind,
            at,
            len,
            fragment: f.to_string(),
        })
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for m in muts {
        let at = ((s.len() as f64) * m.at) as usize;
        let end = (at + m.len).min(s.len());
        match m.kind {
            0 => {
                s.drain(at..end);
            }
            1 | 2 => {
                let f: Vec<char> = m.fragment.chars().collect();
                s.splice(at..at, f);
            }
            3 => {
                // Duplicate a span (duplicate keys, repeated states).
                let span: Vec<char> = s[at..end].to_vec();
                s.splice(end..end, span);
            }
            4 => s.truncate(at),
            _ => {
                let f: Vec<char> = m.fragment.chars().collect();
                s.splice(at..end, f);
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn mutated_machine_files_load_or_fail_cleanly() {
    let files = corpus();
    assert!(files.len() > 20, "corpus: {}", files.len());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&root.join("machines"), &tmp.path().join("machines"));
    copy_tree(
        &root.join("tests/conformance"),
        &tmp.path().join("tests/conformance"),
    );
    let opts = LoadOptions {
        profiles: None,
        actions: support::actions().names(),
        model_check: Some(paper_runner::llm::ModelProfile::check_config),
        hooks: None,
    };
    let strategy = (0..files.len(), prop::collection::vec(mutation(), 1..6));
    proptest!(config(160), |((i, muts) in strategy)| {
        let rel = files[i].strip_prefix(root).unwrap();
        let target = tmp.path().join(rel);
        let original = std::fs::read_to_string(&files[i]).unwrap();
        std::fs::write(&target, apply(&original, &muts)).unwrap();
        let started = Instant::now();
        let loaded = spec::load(&target, &opts);
        std::fs::write(&target, &original).unwrap();
        prop_assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // Errors always name a file; a bundle exists only without errors.
        for d in loaded.diagnostics.errors() {
            prop_assert!(!d.file.is_empty());
        }
        prop_assert_eq!(loaded.bundle.is_some(), !loaded.diagnostics.has_errors());
    });
}

const YAML_ALPHABET: &[&str] = &[
    "[", "]", "{", "}", ":", " ", "\n", "-", ",", "#", "'", "\"", "&x", "*x", "!", "|", ">", "?",
    "a", "b", "1", "1e20", ".inf", "%", "@", "`", "\t", "\\", "---", "...", "\u{85}",
];

#[test]
fn arbitrary_yaml_and_json_parse_or_fail() {
    let strategy = prop::collection::vec(prop::sample::select(YAML_ALPHABET), 0..400);
    proptest!(config(400), |(parts in strategy)| {
        let text: String = parts.concat();
        let started = Instant::now();
        let _ = parse_value(&text, false);
        let _ = parse_value(&text, true);
        prop_assert!(started.elapsed() < Duration::from_secs(2));
    });
}

const CONDITION_TOKENS: &[&str] = &[
    "context",
    ".",
    "a",
    "b",
    "x",
    "[",
    "]",
    "(",
    ")",
    "0",
    "1",
    "-1",
    "1e308",
    "2.5",
    "9223372036854775808",
    "'s'",
    "\"t\"",
    " and ",
    " or ",
    "not ",
    " == ",
    " != ",
    " < ",
    " >= ",
    " in ",
    " not in ",
    " is ",
    " + ",
    " - ",
    " * ",
    " / ",
    " // ",
    " % ",
    "True",
    "None",
    "false",
    ",",
    "'",
    "\\",
    "len",
    " ",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (prop::sample::select(&["a", "b", "x", "s"][..]), inner),
                0..5
            )
            .prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

#[test]
fn conditions_parse_or_fail_and_never_panic_on_any_context() {
    let strategy = (
        prop::collection::vec(prop::sample::select(CONDITION_TOKENS), 0..40),
        json_value(),
    );
    proptest!(config(500), |((parts, ctx) in strategy)| {
        let src: String = parts.concat();
        if let Ok(c) = Condition::parse(&src) {
            let mut vars = Map::new();
            vars.insert("context".into(), ctx);
            let _ = c.eval(&vars);
            let _ = c.eval_bool(&vars);
        }
    });
}

#[test]
fn deep_and_long_conditions_fail_cleanly() {
    for src in [
        "(".repeat(100_000),
        format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000)),
        "not ".repeat(100_000) + "1",
        "-".repeat(100_000) + "1",
        "[".repeat(100_000),
        format!("context{}", ".a".repeat(100_000)),
        format!("context{}", "[0]".repeat(100_000)),
    ] {
        let started = Instant::now();
        let r = Condition::parse(&src);
        assert!(r.is_err() || src.starts_with("context"), "{}", &src[..20]);
        if let Ok(c) = r {
            let mut vars = Map::new();
            vars.insert("context".into(), json!({"a": 1}));
            let _ = c.eval(&vars);
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

const TEMPLATE_TOKENS: &[&str] = &[
    "{{ ",
    " }}",
    "{% ",
    " %}",
    "{# ",
    " #}",
    "for i in range(100000)",
    "for j in range(99999)",
    "endfor",
    "if ",
    "else",
    "endif",
    "set x = ",
    "macro f(n)",
    "endmacro",
    "f(n)",
    "context.s",
    "context.l",
    "context.n",
    "input",
    "'x'",
    " * ",
    " ~ ",
    " + ",
    "1000000",
    "100000000",
    "[1, 2]",
    " | ",
    "length",
    "join(',')",
    "tojson",
    "list",
    "upper",
    "truncate(3)",
    "(",
    ")",
    ",",
    "loop.index",
    "i",
    "x",
    "text ",
    "\n",
    "}",
    "{",
];

#[test]
fn templates_render_or_fail_within_bounds() {
    let strategy = prop::collection::vec(prop::sample::select(TEMPLATE_TOKENS), 0..30);
    let vars = || Vars::from_pairs([("context", json!({"s": "abc", "l": [1, 2, 3], "n": 7}))]);
    proptest!(config(400), |(parts in strategy)| {
        let src: String = parts.concat();
        let started = Instant::now();
        let v = vars();
        if let Ok(out) = Templates::render_text(&src, &v) {
            prop_assert!(out.len() <= MAX_TEMPLATE_OUTPUT);
        }
        if let Ok(Value::String(s)) = Templates::render_str(&src, &v) {
            prop_assert!(s.len() <= MAX_TEMPLATE_OUTPUT);
        }
        let _ = Templates::check_str(&src);
        prop_assert!(started.elapsed() < Duration::from_secs(10), "{src}: {:?}", started.elapsed());
    });
}
