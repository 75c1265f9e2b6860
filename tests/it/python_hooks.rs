//! The Python hook bridge (issue 14, item 4): SDK-style hooks classes served
//! by one long-lived Python process, through the real `runner machine`
//! binary and through `PythonHook` directly.
//!
//! The fixture (`tests/fixtures/compat/python`) is shaped like the
//! research-crawler's V2 hooks: a package under `src/`, a `LoggingHooks`
//! subclass imported `from flatmachines`, `get_logger` `from flatagents`, an
//! async `on_action` router, machines at `spec_version: 4.1.0` that name
//! `v2-hooks` on every state and as `lifecycle_hooks`. The SDK is not
//! installed here: the bridge's stand-in modules make the imports work.
//!
//! These tests need `python3`; without it they print a skip message.

use crate::support::{copy_dir, fixture, runner_in as runner, stderr, stdout};
use paper_runner::engine::{ErrorKind, Hook, HookCall, HookEvent, PythonConfig, PythonHook};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HOOKS: &str = "v2-hooks=python:src/rpa/hooks.py:DemoHooks";

/// Whether `python3` runs; prints why a test is skipped otherwise.
pub fn have_python(test: &str) -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping {test}: python3 is not installed");
    }
    ok
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("compat/python"), dir.path());
    dir
}

fn events(dir: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    log.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            match v.get("action") {
                Some(a) => format!(
                    "action:{}@{}",
                    a.as_str().unwrap(),
                    v["state"].as_str().unwrap()
                ),
                None => format!(
                    "{}@{}",
                    v["event"].as_str().unwrap(),
                    v["state"].as_str().unwrap()
                ),
            }
        })
        .collect()
}

#[test]
fn sdk_style_hooks_run_unchanged_through_the_bridge() {
    if !have_python("sdk_style_hooks_run_unchanged_through_the_bridge") {
        return;
    }
    let dir = setup();
    let d = dir.path();
    let out = runner(
        d,
        &[
            "machine",
            "check",
            "config/demo_machine.yml",
            "--hooks",
            HOOKS,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = runner(
        d,
        &[
            "machine",
            "run",
            "config/demo_machine.yml",
            "--input",
            r#"{"name": "ada"}"#,
            "--hooks",
            HOOKS,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        result,
        json!({
            // The package's relative import worked; the action changed the context.
            "greeting": "HELLO ADA",
            // The state hooks' extract_text, not the runner's native action.
            "paper_text": "text from the user's own extract_text",
            "started": true,
            // on_state_exit's in-place change stays; what it returns is dropped.
            "exits": 3,
            // on_machine_end's return value is the output.
            "actions_seen": 2,
        })
    );
    assert_eq!(
        events(d),
        [
            "machine_start@",
            "state_enter@start",
            "state_exit@start",
            "state_enter@greet",
            "action:greet@greet",
            "state_exit@greet",
            "state_enter@extract",
            "action:extract_text@extract",
            "state_exit@extract",
            "machine_end@",
        ]
    );
    // A print() in a hook reached the log, not the protocol.
    assert!(
        stderr(&out).contains("a print in a hook goes to stderr"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_hook_exception_is_an_action_error_and_on_error_hooks_may_recover() {
    if !have_python("a_hook_exception_is_an_action_error_and_on_error_hooks_may_recover") {
        return;
    }
    let dir = setup();
    let d = dir.path();
    // No on_error in the machine and no recovery from the hook: the run fails.
    let out = runner(
        d,
        &[
            "machine",
            "run",
            "config/failing_machine.yml",
            "--hooks",
            HOOKS,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("action_error"), "{err}");
    assert!(
        err.contains("ValueError: the hook failed on purpose"),
        "{err}"
    );
    // The state's hooks saw the failure, with its kind and message.
    let log = std::fs::read_to_string(d.join("events.jsonl")).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], json!("error"));
    assert_eq!(last["kind"], json!("action_error"));
    assert!(last["message"].as_str().unwrap().contains("ValueError"));

    // on_error returning a state name routes there (the machine has no on_error).
    let out = runner(
        d,
        &[
            "machine",
            "run",
            "config/failing_machine.yml",
            "--input",
            r#"{"recover_to": "recovered"}"#,
            "--hooks",
            HOOKS,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(result["recovered"], json!(true));
    assert!(result["error"]
        .as_str()
        .unwrap()
        .contains("ValueError: the hook failed on purpose"));

    // The machine's own on_error takes the failure through its route.
    let out = runner(
        d,
        &[
            "machine",
            "run",
            "config/demo_machine.yml",
            "--hooks",
            "v2-hooks=python:src/rpa/missing.py:DemoHooks",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hooks file not found"),
        "{}",
        stderr(&out)
    );
}

/// Hook calls are checkpointed with their state: a run killed right after
/// the exit of `one` was recorded resumes without calling its action again.
#[test]
fn a_resumed_execution_does_not_repeat_python_hook_calls_of_exited_states() {
    use std::os::unix::process::ExitStatusExt;
    if !have_python("a_resumed_execution_does_not_repeat_python_hook_calls_of_exited_states") {
        return;
    }
    let dir = setup();
    let d = dir.path();
    // Checkpoints: machine_start, enter start, exit start, enter one, exit one.
    let crashed = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(d)
        .env_remove("RUST_LOG")
        .env("PAPER_RUNNER_CRASH_AFTER", "5")
        .args([
            "machine",
            "run",
            "config/counting_machine.yml",
            "--db",
            "r.db",
            "--execution-id",
            "p1",
            "--hooks",
            HOOKS,
        ])
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.signal(),
        Some(paper_runner::store::CRASH_SIGNAL),
        "{}",
        stderr(&crashed)
    );
    assert_eq!(std::fs::read_to_string(d.join("count.txt")).unwrap(), "x");
    let out = runner(
        d,
        &["machine", "resume", "p1", "--db", "r.db", "--hooks", HOOKS],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(result, json!({"count": 2}));
    assert_eq!(std::fs::read_to_string(d.join("count.txt")).unwrap(), "xx");
}

fn hook(dir: &Path, cap: u64) -> PythonHook {
    PythonHook::new(
        "v2-hooks",
        dir.join("src/rpa/hooks.py"),
        "DemoHooks".into(),
        PythonConfig {
            max_output_bytes: cap,
            ..PythonConfig::default()
        },
    )
}

async fn act(
    h: &PythonHook,
    dir: &Path,
    action: &str,
    ctx: &Map<String, Value>,
    timeout: Duration,
) -> Result<paper_runner::engine::HookReply, paper_runner::engine::ExecError> {
    let call = HookCall {
        event: HookEvent::Action,
        action: Some(action),
        state: "s",
        context: ctx,
        output: None,
        error: None,
        args: None,
        execution_id: "e1",
        machine_dir: dir,
        timeout,
    };
    h.call(&call).await
}

/// The bridge's bounds: a dead bridge is started again, a hook that blocks
/// the event loop past its timeout gets the bridge killed and restarted, an
/// async hook past its timeout is cancelled without a restart, and a reply
/// over the cap is `output_too_large`. Calls run concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_is_bounded_restarted_and_concurrent() {
    if !have_python("the_bridge_is_bounded_restarted_and_concurrent") {
        return;
    }
    let dir = setup();
    let d = dir.path().to_path_buf();
    let long = Duration::from_secs(60);
    let h = hook(&d, 4096);
    // The hook writes its event log where the context says.
    let log = d.join("events.jsonl");
    let ctx: Map<String, Value> = json!({"name": "ada", "keep": 1, "events_file": log})
        .as_object()
        .cloned()
        .unwrap();

    let r = act(&h, &d, "greet", &ctx, long).await.unwrap();
    assert_eq!(r.set["greeting"], json!("HELLO ADA"));
    assert!(!r.set.contains_key("keep"), "only changed keys come back");
    // `{name, args}`: the class is built with the args (once per set).
    let args = json!({"greeting": "hi"});
    let call = HookCall {
        event: HookEvent::Action,
        action: Some("greet"),
        state: "s",
        context: &ctx,
        output: None,
        error: None,
        args: args.as_object(),
        execution_id: "e1",
        machine_dir: &d,
        timeout: long,
    };
    assert_eq!(
        h.call(&call).await.unwrap().set["greeting"],
        json!("HI ADA")
    );
    let r = act(&h, &d, "forget", &ctx, long).await.unwrap();
    assert_eq!(r.unset, ["name"]);
    assert_eq!(h.starts(), 1);
    let first = h.pid().await.unwrap();

    // Concurrency: wait_gate finishes only once open_gate ran beside it;
    // open_gate is sent once the bridge has started wait_gate.
    let (a, b) = tokio::join!(act(&h, &d, "wait_gate", &ctx, long), async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("wait_gate")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "wait_gate never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        act(&h, &d, "open_gate", &ctx, long).await
    });
    assert_eq!(a.unwrap().set["gate"], json!("passed"));
    b.unwrap();

    // An async hook past its timeout is cancelled; the bridge lives on.
    let e = act(&h, &d, "sleep", &ctx, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ActionError);
    assert!(e.message.contains("timed out"), "{e}");
    assert_eq!(h.pid().await, Some(first));

    // A reply over the cap.
    let e = act(&h, &d, "huge", &ctx, long).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutputTooLarge, "{e}");
    assert_eq!(h.starts(), 1);

    // A bridge that dies fails the call in flight and is started again.
    let e = act(&h, &d, "die", &ctx, long).await.unwrap_err();
    assert!(e.message.contains("exited"), "{e}");
    act(&h, &d, "greet", &ctx, long).await.unwrap();
    assert_eq!(h.starts(), 2);

    // A hook blocking the event loop: the bridge does not answer the ping
    // after the timeout, is killed, and the next call gets a new one.
    let e = act(&h, &d, "block", &ctx, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.message.contains("timed out"), "{e}");
    act(&h, &d, "greet", &ctx, long).await.unwrap();
    assert_eq!(h.starts(), 3);
}

/// A class that cannot be loaded, or an interpreter that does not exist,
/// is an `action_error` that says so.
#[tokio::test]
async fn load_failures_are_clear_action_errors() {
    if !have_python("load_failures_are_clear_action_errors") {
        return;
    }
    let dir = setup();
    let d = dir.path();
    let ctx: Map<String, Value> = json!({"events_file": d.join("events.jsonl")})
        .as_object()
        .cloned()
        .unwrap();
    let missing = PythonHook::new(
        "h",
        d.join("src/rpa/hooks.py"),
        "NoSuchClass".into(),
        PythonConfig::default(),
    );
    let e = act(&missing, d, "greet", &ctx, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ActionError);
    assert!(e.message.contains("no class 'NoSuchClass'"), "{e}");
    let no_python = PythonHook::new(
        "h",
        d.join("src/rpa/hooks.py"),
        "DemoHooks".into(),
        PythonConfig {
            interpreter: PathBuf::from("/nonexistent/python"),
            ..PythonConfig::default()
        },
    );
    let e = act(&no_python, d, "greet", &ctx, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(e.message.contains("cannot start the interpreter"), "{e}");
}
