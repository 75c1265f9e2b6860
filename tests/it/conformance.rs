//! Conformance suite: every case under `tests/conformance/cases/` is a
//! machine plus `case.yml` (input, scripted agent responses, expected output
//! or error); every file under `tests/conformance/broken/` declares the
//! problems `machine check` must report (`# expect: ...` lines).

use crate::support;
use crate::support::ScriptedAgent;
use paper_runner::spec::{self, LoadOptions};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

fn machine_file(dir: &Path) -> PathBuf {
    let yml = dir.join("machine.yml");
    if yml.exists() {
        yml
    } else {
        dir.join("machine.json")
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let case: Value = serde_yaml::from_str(
        &std::fs::read_to_string(dir.join("case.yml")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let input: Map<String, Value> = case
        .get("input")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let agent = Arc::new(ScriptedAgent::new(
        case.get("script").cloned().unwrap_or(Value::Null),
    ));
    let bundle = support::load(&machine_file(dir));
    let engine = support::engine(bundle, agent.clone());
    let paused = case.get("paused_time").and_then(Value::as_bool) == Some(true);
    let mut rt = tokio::runtime::Builder::new_current_thread();
    rt.enable_all();
    if paused {
        rt.start_paused(true);
    }
    let rt = rt.build().map_err(|e| e.to_string())?;
    let result = rt.block_on(engine.run("case", input));
    match (case.get("output"), case.get("error"), result) {
        (Some(want), _, Ok(got)) if *want == got => {}
        (Some(want), _, got) => return Err(format!("expected output {want}, got {got:?}")),
        (None, Some(err), Err(e)) => {
            let kind = err.get("kind").and_then(Value::as_str).unwrap_or("");
            if e.kind.as_str() != kind {
                return Err(format!("expected error kind {kind}, got {e}"));
            }
            if let Some(c) = err.get("contains").and_then(Value::as_str) {
                if !e.message.contains(c) {
                    return Err(format!("error message {:?} lacks {c:?}", e.message));
                }
            }
        }
        (None, Some(err), Ok(v)) => return Err(format!("expected error {err}, got output {v}")),
        (None, None, _) => return Err("case.yml has neither output nor error".into()),
    }
    if let Some(n) = case.get("calls").and_then(Value::as_u64) {
        let got = agent.calls().len() as u64;
        if got != n {
            return Err(format!("expected {n} agent calls, got {got}"));
        }
    }
    Ok(())
}

#[test]
fn every_case_produces_its_expected_result() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 20,
        "expected the full suite, found {}",
        dirs.len()
    );
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| run_case(d).err().map(|e| format!("{}: {e}", d.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

fn broken_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root().join("broken")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "profiles.yml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn expectations(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: ").map(str::to_string))
        .collect()
}

#[test]
fn every_broken_file_is_rejected_with_file_and_state_named() {
    let opts = LoadOptions {
        profiles: None,
        actions: support::actions().names(),
        model_check: Some(paper_runner::llm::ModelProfile::check_config),
        hooks: None,
    };
    let files = broken_files();
    assert!(files.len() >= 18, "found {}", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let loaded = spec::load(f, &opts);
        let lines: Vec<String> = loaded.diagnostics.errors().map(|d| d.to_string()).collect();
        if loaded.bundle.is_some() || lines.is_empty() {
            failures.push(format!("{}: accepted", f.display()));
            continue;
        }
        let label = f.display().to_string();
        for want in expectations(f) {
            if !lines
                .iter()
                .any(|l| l.starts_with(&label) && l.contains(&want))
            {
                failures.push(format!(
                    "{}: no error line contains {want:?}; got:\n  {}",
                    f.display(),
                    lines.join("\n  ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_files_with_warnings_pass_check() {
    let opts = LoadOptions {
        profiles: None,
        actions: support::actions().names(),
        model_check: Some(paper_runner::llm::ModelProfile::check_config),
        hooks: None,
    };
    let f = root().join("valid/unreachable.yml");
    let loaded = spec::load(&f, &opts);
    assert!(loaded.bundle.is_some(), "{}", loaded.diagnostics);
    let warnings: Vec<String> = loaded
        .diagnostics
        .warnings()
        .map(|d| d.to_string())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("state 'orphan': warning: unreachable")),
        "{warnings:?}"
    );
}

/// A file written for an older spec that reads fine under 4.x rules passes
/// `check` with one warning naming the file and its version (the Python SDK
/// also loads it and only warns).
#[test]
fn older_spec_versions_pass_check_with_one_warning() {
    let opts = LoadOptions {
        profiles: None,
        actions: support::actions().names(),
        model_check: Some(paper_runner::llm::ModelProfile::check_config),
        hooks: None,
    };
    let f = root().join("valid/old_version.yml");
    let loaded = spec::load(&f, &opts);
    assert!(loaded.bundle.is_some(), "{}", loaded.diagnostics);
    let warnings: Vec<String> = loaded
        .diagnostics
        .warnings()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        warnings,
        vec![format!(
            "{}: warning: spec_version 3.0.0 predates 4.x; the file is read under 4.x rules (set spec_version: \"4.2.1\" once it runs as intended)",
            f.display()
        )]
    );
}
