//! The `runner machine` command line: exit codes, stdout/stderr contract.

use crate::support::repo;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("runner starts")
}

fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/conformance").join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn check_exits_2_and_names_file_and_state() {
    let f = fixture("broken/unknown_target.yml");
    let out = runner(&["machine", "check", s(&f)]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}: state 'start': transition 2 targets unknown state 'nowhere'",
            f.display()
        )),
        "{stdout}"
    );
}

#[test]
fn check_reports_yaml_syntax_with_line_and_column() {
    let f = fixture("broken/yaml_syntax.yml");
    let out = runner(&["machine", "check", s(&f)]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{}:7:1: ", f.display())),
        "{stdout}"
    );
}

#[test]
fn check_passes_valid_files_and_prints_warnings() {
    let ok = fixture("cases/children/machine.yml");
    let warn = fixture("valid/unreachable.yml");
    let out = runner(&["machine", "check", s(&ok), s(&warn)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("state 'orphan': warning: unreachable"),
        "{stdout}"
    );
}

#[test]
fn check_of_many_files_fails_if_any_fails() {
    let ok = fixture("cases/children/machine.yml");
    let bad = fixture("broken/no_initial.yml");
    let out = runner(&["machine", "check", s(&ok), s(&bad)]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_prints_output_json_on_stdout() {
    let f = fixture("cases/children/machine.yml");
    let out = runner(&[
        "machine",
        "run",
        s(&f),
        "--input",
        r#"{"n": 2, "items": [{"name": "x", "v": 3}]}"#,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["single"]["doubled"], 4);
    assert_eq!(v["keyed"]["x"]["squared"], 9);
    assert_eq!(v["listed"][0]["squared"], 25);
}

#[test]
fn run_reads_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.yml");
    std::fs::write(&input, "x: 7\n").unwrap();
    let f = fixture("cases/json_machine/machine.json");
    let out = runner(&["machine", "run", s(&f), "--input-file", s(&input)]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"x":70}"#);
}

#[test]
fn failed_run_exits_1_with_kind_on_stderr() {
    let f = fixture("cases/no_transition/machine.yml");
    let out = runner(&["machine", "run", s(&f), "--input", r#"{"x": 5}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: no_transition: "), "{stderr}");
}

#[test]
fn invalid_machine_or_input_exits_2() {
    let bad = fixture("broken/unknown_action.yml");
    let out = runner(&["machine", "run", s(&bad)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown action 'frobnicate'"));
    let ok = fixture("cases/json_machine/machine.json");
    let out = runner(&["machine", "run", s(&ok), "--input", "[1]"]);
    assert_eq!(out.status.code(), Some(2));
    let out = runner(&["machine", "run", s(&ok), "--input", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = runner(&["machine", "check", "/nonexistent/m.yml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/nonexistent/m.yml: cannot read file"));
}

/// `--input-file` is read like a machine file: a regular file of bounded
/// size, no duplicate keys. `/dev/zero` used to be read until memory ran out.
#[test]
fn input_file_is_bounded_and_strict() {
    let machine = fixture("valid/unreachable.yml");
    let out = runner(&["machine", "run", s(&machine), "--input-file", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a regular file"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let dup = dir.path().join("input.yml");
    std::fs::write(&dup, "x: 1\nx: 2\n").unwrap();
    let out = runner(&["machine", "run", s(&machine), "--input-file", s(&dup)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("duplicate key 'x'"), "{stderr}");
}

/// The exit-code table (`cli::exit`) through the real binary, for every
/// row that is cheap to reach: 0 success, 1 failed work, 2 usage or
/// configuration error. (3, a leased execution, is in `durable_cli`; 130,
/// a second signal, in `hostile_sched`.)
#[test]
fn exit_code_table() {
    // 0: success, and --help / --version.
    let ok = fixture("cases/json_machine/machine.json");
    let out = runner(&["machine", "run", s(&ok), "--input", r#"{"x": 3}"#]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(runner(&["--version"]).status.code(), Some(0));
    assert_eq!(runner(&["--help"]).status.code(), Some(0));
    // 1: the work failed.
    let failing = fixture("cases/no_transition/machine.yml");
    let out = runner(&["machine", "run", s(&failing), "--input", r#"{"x": 5}"#]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // 2: a bad flag, a missing argument, scheduler flags with a command.
    let out = runner(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    assert_eq!(runner(&["machine", "run"]).status.code(), Some(2));
    let out = runner(&["--workers", "2", "status"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: scheduler flags"));
    // 2: a bad configuration refuses the scheduler's start-up (it was 1),
    // before anything is written.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "db = \"r.db\"\n[scheduler]\nworkers = \"four\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("RUNNER_CONFIG")
        .arg("--resume-only")
        .output()
        .expect("runner starts");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("scheduler.workers"),
        "{stderr}"
    );
    assert!(!dir.path().join("r.db").exists(), "nothing was written");
}
