//! The conformance corpus of SDK features (issue 14, item 8): upstream-style
//! machines written for this project (`tests/fixtures/compat/machines`),
//! run through the real `runner` binary.
//!
//! Every machine in the corpus must pass `runner machine check`; each
//! feature (`wait_for`, `launch`, `tool_loop`, `mdap_voting`, hooks) has a
//! test that runs its machines and checks the outputs.

use crate::support::{fixture, runner_in as runner, stderr, stdout};
use serde_json::{json, Value};
use std::process::{Command, Output};

fn corpus() -> std::path::PathBuf {
    fixture("compat/machines")
}

fn json_out(o: &Output) -> Value {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn machine(name: &str) -> String {
    corpus().join(name).display().to_string()
}

#[test]
fn every_corpus_machine_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.ends_with(".yml") && name != "profiles.yml" && !name.contains(".flatagent.")
        })
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 2);
    let mut args = vec!["machine", "check"];
    args.extend(files.iter().map(String::as_str));
    let out = runner(dir.path(), &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// `wait_for`: the execution parks (the SDK's `{_waiting, _channel}`),
/// `runner status` lists it, the signal is stored by another process and
/// the resumed execution takes it and routes on its data.
#[test]
fn wait_for_parks_until_a_durable_signal_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = machine("wait_for.yml");
    let db = d.join("r.db").display().to_string();
    let out = runner(
        d,
        &[
            "machine",
            "run",
            &m,
            "--db",
            &db,
            "--execution-id",
            "doc1",
            "--input",
            r#"{"doc": "d1"}"#,
        ],
    );
    assert_eq!(
        json_out(&out),
        json!({"_waiting": true, "_channel": "review-d1"})
    );
    // Still waiting on resume without a signal.
    let out = runner(d, &["machine", "resume", "doc1", "--db", &db]);
    assert_eq!(
        json_out(&out),
        json!({"_waiting": true, "_channel": "review-d1"})
    );
    let out = runner(d, &["status", "--json", "--db", &db]);
    let status = json_out(&out);
    assert_eq!(status["waiting"][0]["execution_id"], json!("doc1"));
    assert_eq!(status["waiting"][0]["signal"], json!("review-d1"));
    // A signal to an unknown execution is refused; a wrong name is kept
    // for later and does not wake this wait.
    let out = runner(d, &["signal", "nope", "review-d1", "--db", &db]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = runner(d, &["signal", "doc1", "other", "--db", &db, "--json"]);
    assert_eq!(json_out(&out)["was_waiting"], json!(false));
    let out = runner(
        d,
        &[
            "signal",
            "doc1",
            "review-d1",
            "--data",
            r#"{"decision": "approve"}"#,
            "--db",
            &db,
            "--json",
        ],
    );
    assert_eq!(json_out(&out)["was_waiting"], json!(true));
    let out = runner(d, &["machine", "resume", "doc1", "--db", &db]);
    assert_eq!(json_out(&out), json!({"doc": "d1", "status": "approved"}));
    let out = runner(d, &["status", "--json", "--db", &db]);
    assert_eq!(json_out(&out)["waiting"], json!([]));

    // A signal sent before the state is reached is taken at once; data
    // that is not an object is `output.value`.
    let out = runner(
        d,
        &[
            "machine",
            "run",
            &m,
            "--db",
            &db,
            "--execution-id",
            "doc2",
            "--input",
            r#"{"doc": "d2"}"#,
        ],
    );
    assert_eq!(json_out(&out)["_waiting"], json!(true));
    let out = runner(
        d,
        &[
            "signal",
            "doc2",
            "review-d2",
            "--data",
            r#""needs work""#,
            "--db",
            &db,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = runner(d, &["machine", "resume", "doc2", "--db", &db]);
    assert_eq!(
        json_out(&out),
        json!({"doc": "d2", "status": "rejected", "note": "needs work"})
    );
}

/// A child machine that waits parks its parent too; the signal goes to the
/// child's (deterministic) id, and the resumed parent re-attaches to it.
#[test]
fn a_waiting_child_parks_its_parent_until_the_child_is_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = machine("wait_for_parent.yml");
    let db = d.join("r.db").display().to_string();
    let out = runner(
        d,
        &["machine", "run", &m, "--db", &db, "--execution-id", "pw"],
    );
    assert_eq!(json_out(&out), json!({"_waiting": true, "_channel": "go"}));
    let out = runner(d, &["status", "--json", "--db", &db]);
    assert_eq!(
        json_out(&out)["waiting"][0]["execution_id"],
        json!("pw/start@1/child")
    );
    let out = runner(
        d,
        &[
            "signal",
            "pw/start@1/child",
            "go",
            "--data",
            "7",
            "--db",
            &db,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = runner(d, &["machine", "resume", "pw", "--db", &db]);
    assert_eq!(json_out(&out), json!({"got": 7}));
}

/// A wait past its `timeout` fails the state with `timeout`, which goes
/// through `on_error`.
#[test]
fn a_wait_past_its_timeout_routes_through_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = machine("wait_for_timeout.yml");
    let db = d.join("r.db").display().to_string();
    let out = runner(
        d,
        &["machine", "run", &m, "--db", &db, "--execution-id", "t1"],
    );
    let parked = json_out(&out);
    assert_eq!(parked["_channel"], json!("ping"));
    assert!(parked["_deadline_ms"].as_i64().is_some());
    // The deadline (1 ms) has passed by the time a new process resumes.
    let out = runner(d, &["machine", "resume", "t1", "--db", &db]);
    let done = json_out(&out);
    assert_eq!(done["kind"], json!("timeout"));
    assert!(done["error"].as_str().unwrap().contains("no signal 'ping'"));
}

/// `launch`: the child starts without the parent waiting for its result;
/// its intent is written with the launching state's exit, so a crash right
/// after that exit neither loses the child (the resume starts it) nor
/// duplicates it (a later resume finds it finished).
#[test]
fn launched_children_are_neither_lost_nor_duplicated() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = machine("launch.yml");
    let log = d.join("l.log");
    let input = json!({"msg": "ada", "log": log}).to_string();
    let out = runner(d, &["machine", "run", &m, "--input", &input]);
    assert_eq!(json_out(&out), json!({"launched": true, "msg": "ada"}));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "hello ada\n");
    std::fs::remove_file(&log).unwrap();

    let db = d.join("r.db").display().to_string();
    let input = json!({"msg": "bob", "log": log}).to_string();
    let crashed = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(d)
        .env_remove("RUST_LOG")
        .env("PAPER_RUNNER_CRASH_AFTER", "state_exit@p1")
        .args([
            "machine",
            "run",
            &m,
            "--db",
            &db,
            "--execution-id",
            "p1",
            "--input",
            &input,
        ])
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.signal(),
        Some(paper_runner::store::CRASH_SIGNAL),
        "{}",
        stderr(&crashed)
    );
    assert!(
        !log.exists(),
        "the child starts only after the exit is committed"
    );
    for _ in 0..2 {
        let out = runner(d, &["machine", "resume", "p1", "--db", &db]);
        assert_eq!(json_out(&out), json!({"launched": true, "msg": "bob"}));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "hello bob\n");
    }
}

/// Copy corpus files into a mock site's `machines/` (beside the profiles
/// that point at the mock).
fn into_site(site: &crate::support::Site, files: &[&str]) {
    for f in files {
        std::fs::copy(corpus().join(f), site.path().join("machines").join(f)).unwrap();
    }
}

/// `mdap_voting`: samples one after another until a parsed answer leads by
/// `k_margin` (the mock gives the same verdict every time: 2 calls, each
/// through the spend ledger), and a resumed run reuses the settled calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdap_voting_stops_at_k_margin_and_every_sample_is_in_the_ledger() {
    let site = crate::support::Site::new("").await;
    into_site(&site, &["mdap.yml", "mdap_judge.flatagent.yml"]);
    let out = site.ok(&[
        "machine",
        "run",
        "machines/mdap.yml",
        "--db",
        "data/runner.db",
        "--execution-id",
        "v1",
        "--input",
        r#"{"text": "a short report"}"#,
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v, json!({"verdict": "PASS"}));
    assert_eq!(site.scalar("SELECT COUNT(*) FROM llm_calls"), 2);
    assert_eq!(site.mock.stats().requests, 2);
}

/// `tool_loop`: the model asks for a tool (the mock calls the first tool
/// offered), the state's hooks run it — a Python hooks class's tool
/// provider or a command handler — and the model answers from the result.
/// Both model calls go through the ledger; a run killed right after the
/// tool result was checkpointed resumes without running the tool or the
/// first model call again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_loop_runs_tools_in_hooks_and_resumes_without_repeating_them() {
    use std::os::unix::process::ExitStatusExt;
    let site = crate::support::Site::new("").await;
    into_site(
        &site,
        &[
            "tool_loop.yml",
            "tool_agent.flatagent.yml",
            "tool_hooks.py",
            "tool.sh",
        ],
    );
    let sh = site.path().join("machines/tool.sh");
    std::fs::set_permissions(&sh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let input = r#"{"topic": "attention"}"#;
    // A command handler.
    let out = site.ok(&[
        "machine",
        "run",
        "machines/tool_loop.yml",
        "--input",
        input,
        "--hooks",
        "tools=cmd:machines/tool.sh",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v,
        json!({"answer": "From the tools: sh tool ok", "calls": 1, "stop": "complete",
               "asked": null, "last_tool": null})
    );
    // A turn limit (a template) stops the loop after the tool ran; one more
    // call without tools gets the answer.
    into_site(&site, &["tool_loop_limited.yml"]);
    let out = site.ok(&[
        "machine",
        "run",
        "machines/tool_loop_limited.yml",
        "--input",
        r#"{"topic": "attention", "turns": 1}"#,
        "--hooks",
        "tools=cmd:machines/tool.sh",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["stop"], json!("max_turns"));
    assert_eq!(v["calls"], json!(1));
    assert!(v["answer"].as_str().is_some_and(|a| !a.is_empty()), "{v}");
    if !crate::python_hooks::have_python("tool_loop (python part)") {
        return;
    }
    // The Python bridge, durably, killed after the tool result's checkpoint
    // (start, enter start, exit start, enter research, tool progress).
    let log = site.path().join("tools.log");
    let hooks = "tools=python:machines/tool_hooks.py:ToolHooks";
    let crashed = site
        .cmd(&[
            "machine",
            "run",
            "machines/tool_loop.yml",
            "--input",
            input,
            "--db",
            "data/runner.db",
            "--execution-id",
            "t1",
            "--hooks",
            hooks,
        ])
        .env("TOOL_LOG", &log)
        .env("PAPER_RUNNER_CRASH_AFTER", "5")
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.signal(),
        Some(paper_runner::store::CRASH_SIGNAL),
        "{}",
        stderr(&crashed)
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "lookup\n");
    let requests = site.mock.stats().requests;
    let out = site
        .cmd(&[
            "machine",
            "resume",
            "t1",
            "--db",
            "data/runner.db",
            "--hooks",
            hooks,
        ])
        .env("TOOL_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        v,
        json!({"answer": "From the tools: lookup found attention", "calls": 1, "stop": "complete",
               "asked": ["lookup"], "last_tool": "lookup"})
    );
    // The tool ran once; only the second model call was sent after the crash.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "lookup\n");
    assert_eq!(site.mock.stats().requests, requests + 1);
    assert_eq!(site.scalar("SELECT COUNT(*) FROM llm_calls"), 2);
}

/// `wait_for` in a paper phase: the scheduler gives the claim back (no
/// worker, no lease, no attempt counted) and does not claim the phase
/// again until the signal comes — here through `POST /signal` on the ops
/// endpoint, which needs the configured token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_paper_phase_holds_nothing_until_its_signal_arrives() {
    use paper_runner::ops::http::{serve, OpsState};
    use std::sync::Arc;
    let site = crate::support::Site::new("").await;
    let prep = site.path().join("machines/prep.yml");
    let text = std::fs::read_to_string(&prep).unwrap();
    let gated = text.replacen(
        "    acquire:\n      type: initial\n",
        "    gate:\n      type: initial\n      wait_for: go\n      transitions: [{to: acquire}]\n    acquire:\n",
        1,
    );
    assert_ne!(gated, text, "prep.yml changed shape");
    std::fs::write(&prep, gated).unwrap();
    site.add_papers(0, 1);
    site.ok(&["--workers", "1"]);
    let id = crate::support::arxiv(0);
    let exec = format!("paper:{id}/prep/1");
    let status = site.json(&["status"]);
    assert_eq!(
        status["waiting"][0]["execution_id"],
        json!(exec),
        "{status}"
    );
    assert_eq!(status["waiting"][0]["signal"], json!("go"));
    assert_eq!(site.statuses()[&id], "pending");
    assert_eq!(site.scalar("SELECT attempts_prep FROM executions"), 0);
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE owner_id IS NOT NULL"),
        0
    );
    let now_ms = paper_runner::store::Clock::now_ms(&paper_runner::store::SystemClock);
    assert_eq!(
        site.scalar(&format!(
            "SELECT COUNT(*) FROM execution_leases WHERE lease_until > {now_ms}"
        )),
        0,
        "the machine lease was given back"
    );
    // Nothing to do until the signal: another pass leaves it waiting.
    site.ok(&["--workers", "1"]);
    assert_eq!(site.statuses()[&id], "pending");
    let human = site.ok(&["show", &crate::support::arxiv(0)]);
    assert!(human.contains("waits for signal 'go'"), "{human}");

    // The signal through the ops endpoint: refused without a configured
    // token, accepted with it.
    let state = OpsState {
        store: site.store(),
        settings: Arc::new(site.config().resolve().unwrap()),
        stats: None,
        metrics: paper_runner::ops::metrics::Metrics::new(),
    };
    let body = json!({"execution_id": exec, "signal": "go", "data": {"by": "ops"}});
    let post = |base: String, token: Option<&'static str>| {
        let body = body.clone();
        async move {
            let mut req = reqwest::Client::new()
                .post(format!("{base}/signal"))
                .json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let serve_with = |state: OpsState| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        let s2 = stop.clone();
        let h = tokio::spawn(async move { serve(listener, state, s2).await.unwrap() });
        (base, stop, h)
    };
    let (base, stop, h) = serve_with(state.clone()).await;
    assert_eq!(post(base, None).await.0, 403);
    stop.cancel();
    h.await.unwrap();
    let var = "PAPER_RUNNER_SIGNAL_TEST_TOKEN";
    std::env::set_var(var, "signal-token");
    let mut cfg = site.config();
    cfg.ops.token_env = Some(var.into());
    let (base, stop, h) = serve_with(OpsState {
        settings: Arc::new(cfg.resolve().unwrap()),
        ..state
    })
    .await;
    assert_eq!(post(base.clone(), Some("wrong")).await.0, 401);
    let (code, text) = post(base, Some("signal-token")).await;
    assert_eq!(code, 200, "{text}");
    let sent: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sent["was_waiting"], json!(true));
    assert_eq!(sent["woke_papers"], json!(1));
    stop.cancel();
    h.await.unwrap();

    // The next pass takes the signal and runs the paper to the end.
    site.ok(&["--workers", "1"]);
    assert_eq!(site.statuses()[&id], "done");
    assert_eq!(site.json(&["status"])["waiting"], json!([]));
}
