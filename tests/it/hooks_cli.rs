//! Hooks implemented by commands (issue 14, item 4), through the real
//! `runner machine run|check` binary: an SDK-style machine whose custom
//! action, state hooks and lifecycle hooks are served by a shell script.

use crate::support::{runner_in as runner, stderr, stdout};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const MACHINE: &str = r#"spec: flatmachine
spec_version: "4.2.1"
data:
  name: sdk-style
  lifecycle_hooks: h
  context:
    name: "{{ input.name }}"
  states:
    start:
      type: initial
      hooks: h
      action: greet
      transitions:
        - to: done
    done:
      type: final
      output:
        greeting: "{{ context.greeting }}"
        name: "{{ context.name }}"
        started: "{{ context.started }}"
"#;

/// Appends every event it receives to events.jsonl (in the machine's
/// folder, its working directory) and answers the ones it knows.
const HOOK: &str = r#"#!/bin/sh
input=$(cat)
printf '%s\n' "$input" >> events.jsonl
case "$input" in
  *'"event":"action"'*)
    case "$input" in
      *'"action":"greet"'*) printf '{"greeting": "hello"}' ;;
      *) echo "no such action" >&2; exit 3 ;;
    esac ;;
  *'"event":"machine_start"'*) printf '{"started": true}' ;;
  *'"event":"machine_end"'*) printf '{"ended": true}' ;;
esac
"#;

const FAILING: &str = "#!/bin/sh\ncat > /dev/null\necho boom >&2\nexit 1\n";

fn script(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yml"), MACHINE).unwrap();
    script(dir.path(), "hook.sh", HOOK);
    script(dir.path(), "fail.sh", FAILING);
    dir
}

fn run(dir: &Path, hooks: &[&str]) -> Output {
    let mut args = vec!["machine", "run", "m.yml", "--input", r#"{"name": "ada"}"#];
    for h in hooks {
        args.extend(["--hooks", h]);
    }
    runner(dir, &args)
}

#[test]
fn a_command_handler_serves_actions_state_and_lifecycle_hooks() {
    let dir = setup();
    let out = run(dir.path(), &["h=cmd:./hook.sh"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    // The action and machine_start changed the context; machine_end the output.
    assert_eq!(
        result,
        json!({"greeting": "hello", "name": "ada", "started": true, "ended": true})
    );
    let log = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<String> = events
        .iter()
        .map(|e| match e.get("action") {
            Some(a) => format!(
                "{}:{}@{}",
                e["event"].as_str().unwrap(),
                a.as_str().unwrap(),
                e["state"].as_str().unwrap()
            ),
            None => format!(
                "{}@{}",
                e["event"].as_str().unwrap(),
                e["state"].as_str().unwrap()
            ),
        })
        .collect();
    assert_eq!(
        seen,
        [
            "machine_start@start",
            "state_enter@start",
            "action:greet@start",
            "state_exit@start",
            "machine_end@done",
        ]
    );
    // Each event carries the context as it was then.
    assert_eq!(events[2]["context"]["name"], json!("ada"));
    assert_eq!(events[2]["context"]["started"], json!(true));
    assert_eq!(events[3]["context"]["greeting"], json!("hello"));
    assert_eq!(events[4]["output"]["greeting"], json!("hello"));
}

#[test]
fn a_failing_or_missing_handler_is_an_action_error() {
    let dir = setup();
    let out = run(dir.path(), &["h=cmd:./fail.sh"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("action_error"), "{err}");
    assert!(err.contains("hook 'h'") && err.contains("boom"), "{err}");
    // No registry: the run fails when it reaches the custom action.
    let out = run(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("action_error"), "{err}");
    assert!(
        err.contains("action 'greet' is implemented by hook 'h', which has no handler"),
        "{err}"
    );
}

#[test]
fn check_warns_without_a_registry_and_errors_with_one_lacking_the_hook() {
    let dir = setup();
    let out = runner(dir.path(), &["machine", "check", "m.yml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("action 'greet'") && text.contains("'h'"),
        "{text}"
    );
    let out = runner(
        dir.path(),
        &["machine", "check", "m.yml", "--hooks", "h=cmd:./hook.sh"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(!stdout(&out).contains("action 'greet'"), "{}", stdout(&out));
    let out = runner(
        dir.path(),
        &[
            "machine",
            "check",
            "m.yml",
            "--hooks",
            "other=cmd:./hook.sh",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("action 'greet' needs hook 'h'"),
        "{}",
        stdout(&out)
    );
    // Python handlers are accepted (the bridge starts at the first call);
    // bad specs are usage errors.
    let out = runner(
        dir.path(),
        &[
            "machine",
            "check",
            "m.yml",
            "--hooks",
            "h=python:hooks.py:V2Hooks",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for bad in ["h=exec:./hook.sh", "h", "h=python:hooks.py"] {
        let out = runner(dir.path(), &["machine", "check", "m.yml", "--hooks", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("--hooks"), "{bad}: {}", stderr(&out));
    }
}

/// Hook calls are checkpointed with their state: a run killed right after
/// the exit of `start` was recorded (the crash hook, after the third
/// checkpoint) resumes without calling the hooks of `start` again.
#[test]
fn a_resumed_execution_does_not_repeat_hook_calls_of_exited_states() {
    use std::os::unix::process::ExitStatusExt;
    let dir = setup();
    let crashed = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("PAPER_RUNNER_CRASH_AFTER", "3")
        .args([
            "machine",
            "run",
            "m.yml",
            "--db",
            "r.db",
            "--execution-id",
            "h1",
            "--input",
            r#"{"name": "ada"}"#,
            "--hooks",
            "h=cmd:./hook.sh",
        ])
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.signal(),
        Some(paper_runner::store::CRASH_SIGNAL),
        "{}",
        stderr(&crashed)
    );
    let out = runner(
        dir.path(),
        &[
            "machine",
            "resume",
            "h1",
            "--db",
            "r.db",
            "--hooks",
            "h=cmd:./hook.sh",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        result,
        json!({"greeting": "hello", "name": "ada", "started": true, "ended": true})
    );
    let log = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    let events: Vec<String> = log
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["event"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        events,
        [
            "machine_start",
            "state_enter",
            "action",
            "state_exit",
            "machine_end"
        ]
    );
}
