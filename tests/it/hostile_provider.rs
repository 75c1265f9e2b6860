//! A broken or malicious provider, over real loopback HTTP with a real
//! SQLite spend ledger: absurd wait headers, endless and huge bodies, and a
//! provider that echoes the API key in every kind of answer. None of it may
//! panic, hang, grow memory past the caps, leave a ledger row `reserved`, or
//! put a byte of the key anywhere.

use crate::support;
use paper_runner::engine::{Agent, AgentRequest, ErrorKind};
use paper_runner::llm::{HttpAgent, Ledger};
use paper_runner::spec::model::{AgentDef, PromptDef};
use paper_runner::store::Store;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::mock::{MockScript, MockServer};

/// A realistic key (OpenRouter shape), only in this binary's environment.
const KEY: &str = "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";
const KEY_ENV: &str = "PAPER_RUNNER_HOSTILE_KEY";

fn set_key() {
    std::env::set_var(KEY_ENV, KEY);
}

/// True when no run of 10 key characters occurs in `bytes`.
fn key_free(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    (0..=KEY.len() - 10).all(|i| !text.contains(&KEY[i..i + 10]))
}

fn model(base_url: &str, name: &str, extra: Value) -> Map<String, Value> {
    let mut m = support::obj(json!({
        "provider": "mock", "name": name, "base_url": base_url, "api_key_env": KEY_ENV,
        "timeout": 30
    }));
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    m
}

fn request(base_url: &str, name: &str, extra: Value, state: &str) -> AgentRequest {
    let agent = AgentDef {
        name: "a".into(),
        file: "inline".into(),
        prompt: PromptDef {
            system: None,
            user: "Summarise attention".into(),
            instruction_suffix: None,
            tools: None,
            output: None,
        },
        profile_name: Some("p".into()),
        model: model(base_url, name, extra),
        fallback: None,
        metadata: Value::Null,
    };
    AgentRequest {
        execution_id: "e".into(),
        state: state.into(),
        agent_name: "a".into(),
        agent: Arc::new(agent),
        input: Map::new(),
        system: "You are a helpful assistant.".into(),
        user: format!("Summarise the paper ({state})."),
        machine: "m".into(),
        step: 1,
        sample: 0,
        attempt: 1,
        call_key: "k".into(),
        tools: None,
    }
}

async fn server(yaml: &str) -> MockServer {
    MockServer::start("127.0.0.1:0", MockScript::parse(yaml).expect("script"))
        .await
        .expect("start")
}

fn store(dir: &Path) -> Store {
    Store::open(&dir.join("ledger.db"), &Default::default()).expect("store")
}

/// (status, error_kind, http_status, response is NULL) of every ledger row.
fn ledger_rows(db: &Path) -> Vec<(String, Option<String>, Option<i64>, bool)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT status, error_kind, http_status, response IS NULL FROM llm_calls ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Peak resident memory of this test process, MiB (Linux; None elsewhere).
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::test]
async fn an_endless_body_ends_at_the_cap_and_its_ledger_row_is_settled() {
    set_key();
    let srv = server("models:\n  runaway: {faults: [{every: 1, kind: endless}]}\n").await;
    let dir = tempfile::tempdir().unwrap();
    let agent = HttpAgent::new(Some(Ledger::new(store(dir.path())))).unwrap();
    let started = Instant::now();
    // The default cap (8 MiB): an endless body must stop there, quickly.
    let e = agent
        .call(request(&srv.base_url(), "runaway", json!({}), "s"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResponseTooLarge, "{}", e.message);
    assert!(e.message.contains("model runaway"), "{}", e.message);
    assert!(e.message.contains("8388608-byte cap"), "{}", e.message);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // A configured smaller cap is honoured.
    let e = agent
        .call(request(
            &srv.base_url(),
            "runaway",
            json!({"max_response_bytes": 65536}),
            "t",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResponseTooLarge);
    assert!(e.message.contains("65536-byte cap"), "{}", e.message);
    let rows = ledger_rows(&dir.path().join("ledger.db"));
    let want = (
        "error".to_string(),
        Some("response_too_large".to_string()),
        Some(200),
        true,
    );
    assert_eq!(rows, vec![want.clone(), want], "settled, nothing stored");
    // Before the cap this process grew by gigabytes within seconds; now the
    // whole test binary (all its tests) stays far below that.
    if let Some(peak) = peak_rss_mib() {
        assert!(peak < 512, "peak RSS {peak} MiB");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn an_endless_error_body_is_read_only_up_to_its_excerpt_cap() {
    set_key();
    let srv = server(
        "models:\n  m: {faults: [{every: 1, status: 503, endless_body: true, headers: {retry-after: \"1e20\"}}]}\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let agent = HttpAgent::new(Some(Ledger::new(store(dir.path())))).unwrap();
    let started = Instant::now();
    let e = agent
        .call(request(&srv.base_url(), "m", json!({}), "s"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ServerError, "{}", e.message);
    assert!(
        e.message.starts_with("HTTP 503 from mock model m"),
        "{}",
        e.message
    );
    assert!(e.message.len() < 1024, "an excerpt, not the body");
    assert_eq!(e.retry_after, Some(3600.0));
    assert!(started.elapsed() < Duration::from_secs(10));
    let rows = ledger_rows(&dir.path().join("ledger.db"));
    assert_eq!(
        rows,
        vec![("error".into(), Some("server_error".into()), Some(503), true)]
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_100_mb_valid_answer_is_refused_whether_announced_or_chunked() {
    set_key();
    let srv = server(
        r#"
models:
  chunked: {faults: [{every: 1, kind: huge, size_bytes: 100000000}]}
  announced: {faults: [{every: 1, kind: huge, size_bytes: 100000000, announce_length: true}]}
  fits: {faults: [{every: 1, kind: huge, size_bytes: 100000}]}
"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let agent = HttpAgent::new(Some(Ledger::new(store(dir.path())))).unwrap();
    let url = srv.base_url();
    for m in ["chunked", "announced"] {
        let e = agent
            .call(request(&url, m, json!({}), m))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResponseTooLarge, "{m}: {}", e.message);
        assert!(e.message.contains(&format!("model {m}")), "{}", e.message);
    }
    // Under the cap, the same kind of answer is accepted whole.
    let ok = agent
        .call(request(&url, "fits", json!({}), "fits"))
        .await
        .unwrap();
    assert_eq!(ok.content.map(|c| c.len()), Some(100_000));
    let rows = ledger_rows(&dir.path().join("ledger.db"));
    assert_eq!(rows.len(), 3);
    assert!(rows[..2]
        .iter()
        .all(|r| r.0 == "error" && r.1.as_deref() == Some("response_too_large") && r.3));
    assert_eq!(rows[2].0, "ok");
    // The ledger holds the accepted answer, not 100 MB.
    let size = std::fs::metadata(dir.path().join("ledger.db"))
        .unwrap()
        .len()
        + std::fs::metadata(dir.path().join("ledger.db-wal")).map_or(0, |m| m.len());
    assert!(size < 4 * 1024 * 1024, "ledger is {size} bytes");
    srv.shutdown().await;
}

#[tokio::test]
async fn absurd_wait_headers_are_capped_and_never_panic() {
    set_key();
    let srv = server(
        r#"
models:
  ra20: {faults: [{every: 1, status: 429, headers: {retry-after: "1e20"}}]}
  reset300: {faults: [{every: 1, status: 429, headers: {x-ratelimit-reset: "1e300"}}]}
  year9999: {faults: [{every: 1, status: 503, headers: {retry-after: "Fri, 31 Dec 9999 23:59:59 GMT"}}]}
  ra1e8: {faults: [{every: 1, status: 429, headers: {retry-after: "100000000"}}]}
  nan: {faults: [{every: 1, status: 429, headers: {retry-after: "NaN", x-ratelimit-reset: "-5"}}]}
  goinf: {faults: [{every: 1, status: 429, headers: {x-ratelimit-reset-requests: "99999999999999999999999999h"}}]}
  own: {faults: [{every: 1, status: 429, headers: {retry-after: "1e20"}}]}
  drained: {faults: [{every: 1, kind: delay, headers: {x-ratelimit-remaining: "0", x-ratelimit-reset: "1e300"}}]}
"#,
    )
    .await;
    let url = srv.base_url();
    let agent = HttpAgent::new(None).unwrap();
    for (m, want) in [
        ("ra20", Some(3600.0)),
        ("reset300", Some(3600.0)),
        ("year9999", Some(3600.0)),
        ("ra1e8", Some(3600.0)),
        ("nan", None),
        ("goinf", Some(3600.0)),
    ] {
        let e = agent
            .call(request(&url, m, json!({}), m))
            .await
            .unwrap_err();
        assert_eq!(e.retry_after, want, "{m}: {}", e.message);
        // The limiter was paused for at most the cap (1 s when absent).
        let backlog = agent.limiter().backlog(&format!("{url}|{m}"));
        assert!(backlog <= Duration::from_secs(3600), "{m}: {backlog:?}");
    }
    // A profile's own cap wins. (A model paused for an hour above would
    // hold this call in the limiter for that hour: another model id.)
    let e = agent
        .call(request(&url, "own", json!({"max_retry_after": 7}), "own"))
        .await
        .unwrap_err();
    assert_eq!(e.retry_after, Some(7.0));
    // A 200 saying no requests remain until 1e300 pauses at most the cap.
    let ok = agent.call(request(&url, "drained", json!({}), "d")).await;
    assert!(ok.is_ok(), "{ok:?}");
    let backlog = agent.limiter().backlog(&format!("{url}|drained"));
    assert!(
        backlog > Duration::from_secs(3500) && backlog <= Duration::from_secs(3600),
        "{backlog:?}"
    );
    srv.shutdown().await;
}

/// The runner binary end to end: a 429 with `Retry-After: 1e20` used to
/// panic `machine run` (exit 101) in the retry delay. Now the wait is capped
/// by the profile (0.2 s here), the retry goes out and the run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_run_survives_retry_after_1e20_and_waits_only_the_cap() {
    let srv = server(
        "models:\n  m: {faults: [{at: 1, status: 429, headers: {retry-after: \"1e20\", x-ratelimit-reset: \"1e300\"}}]}\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let machine = dir.path().join("m.yml");
    std::fs::write(
        &machine,
        format!(
            r#"spec: flatmachine
spec_version: "4.2.1"
data:
  name: hostile-wait
  agents:
    writer:
      spec: flatagent
      data:
        prompt: {{user: "Write about attention."}}
        model: {{provider: mock, name: m, base_url: "{}", api_key_env: {KEY_ENV}, max_retry_after: 0.2}}
  states:
    start:
      type: initial
      agent: writer
      execution: {{type: retry, backoffs: [0.05, 0.05], jitter: 0}}
      output_to_context:
        text: output.content
      transitions: [{{to: done}}]
    done:
      type: final
      output:
        text: context.text
"#,
            srv.base_url()
        ),
    )
    .unwrap();
    let (m, db) = (machine.clone(), dir.path().join("r.db"));
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["machine", "run"])
            .arg(&m)
            .arg("--db")
            .arg(&db)
            .args(["--input", "{}"])
            .env(KEY_ENV, KEY)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(srv.stats().requests, 2, "one 429, one retry");
    assert!(key_free(&out.stderr) && key_free(&out.stdout));
    let rows = ledger_rows(&dir.path().join("r.db"));
    assert_eq!(rows[0].1.as_deref(), Some("rate_limit"));
    let conn = rusqlite::Connection::open(dir.path().join("r.db")).unwrap();
    let ra: Option<f64> = conn
        .query_row(
            "SELECT retry_after FROM llm_calls ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ra, Some(0.2), "the ledger records the capped wait");
    srv.shutdown().await;
}

/// Every byte the runner wrote under `dir` (the database, its WAL and
/// journal files), and each error message, is free of the key.
fn assert_dir_key_free(dir: &Path) {
    for f in std::fs::read_dir(dir).unwrap() {
        let path = f.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(key_free(&bytes), "{} holds key bytes", path.display());
        }
    }
}

#[tokio::test]
async fn a_provider_echoing_the_key_leaves_no_trace_of_it() {
    set_key();
    // Each kind of answer echoes the key; the pads move it across the
    // 300-character excerpt boundary (the JSON envelope before the message
    // is 22 characters), so every cut position inside the key is tried.
    let mut yaml = String::from("models:\n");
    let pads: Vec<usize> = (180..=300).step_by(3).collect();
    for (i, pad) in pads.iter().enumerate() {
        let n = i + 1;
        yaml.push_str(&format!(
            "  s401-{n}: {{faults: [{{every: 1, status: 401, echo_key: true, echo_pad: {pad}}}]}}\n  s500-{n}: {{faults: [{{every: 1, status: 500, echo_key: true, echo_pad: {pad}}}]}}\n  bad-{n}: {{faults: [{{every: 1, kind: malformed, echo_key: true, echo_pad: {pad}}}]}}\n  e200-{n}: {{faults: [{{every: 1, kind: error_in_200, code: 502, echo_key: true, echo_pad: {pad}}}]}}\n"
        ));
    }
    yaml.push_str("  echo: {faults: [{every: 1, kind: echo, echo_pad: 5}]}\n");
    let srv = server(&yaml).await;
    let url = srv.base_url();
    let dir = tempfile::tempdir().unwrap();
    let agent = HttpAgent::new(Some(Ledger::new(store(dir.path())))).unwrap();
    let mut calls = 0;
    for n in 1..=pads.len() {
        for (m, kind) in [
            (format!("s401-{n}"), ErrorKind::AuthError),
            (format!("s500-{n}"), ErrorKind::ServerError),
            (format!("bad-{n}"), ErrorKind::ServerError),
            (format!("e200-{n}"), ErrorKind::ServerError),
        ] {
            let e = agent
                .call(request(&url, &m, json!({}), &m))
                .await
                .unwrap_err();
            calls += 1;
            assert_eq!(e.kind, kind, "{m}: {}", e.message);
            assert!(key_free(e.message.as_bytes()), "{m}: {}", e.message);
            assert!(
                key_free(e.to_string().as_bytes()),
                "{m}: Display of the error"
            );
        }
    }
    // A 200 whose content echoes the key: the answer is kept, the key not.
    let ok = agent
        .call(request(&url, "echo", json!({}), "echo"))
        .await
        .unwrap();
    calls += 1;
    let content = ok.content.unwrap_or_default();
    assert!(content.contains("***"), "{content}");
    assert!(key_free(content.as_bytes()), "{content}");
    assert_eq!(srv.stats().with_auth, calls, "the key was sent every time");
    let rows = ledger_rows(&dir.path().join("ledger.db"));
    assert_eq!(rows.len() as u64, calls);
    assert!(rows.iter().all(|r| r.0 != "reserved"));
    // Raw bytes of the database and its WAL, before any checkpoint.
    assert_dir_key_free(dir.path());
    srv.shutdown().await;
}

/// The same through the binary: stderr (debug logs and the final error
/// line) and every file of the database stay key-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_binary_prints_and_stores_no_key_bytes() {
    for (fault, kind) in [
        (
            "{at: 1, kind: malformed, echo_key: true, echo_pad: 270}",
            "server_error",
        ),
        (
            "{at: 1, status: 403, echo_key: true, echo_pad: 250}",
            "auth_error",
        ),
    ] {
        let srv = server(&format!("models:\n  m: {{faults: [{fault}]}}\n")).await;
        let dir = tempfile::tempdir().unwrap();
        let machine = dir.path().join("m.yml");
        std::fs::write(
            &machine,
            format!(
                r#"spec: flatmachine
spec_version: "4.2.1"
data:
  name: echo
  agents:
    writer:
      spec: flatagent
      data:
        prompt: {{user: "Write."}}
        model: {{provider: mock, name: m, base_url: "{}", api_key_env: {KEY_ENV}}}
  states:
    start:
      type: initial
      agent: writer
      transitions: [{{to: done}}]
    done:
      type: final
"#,
                srv.base_url()
            ),
        )
        .unwrap();
        let (m, db) = (machine.clone(), dir.path().join("r.db"));
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_runner"))
                .args(["machine", "run"])
                .arg(&m)
                .arg("--db")
                .arg(&db)
                .args(["--input", "{}"])
                .env(KEY_ENV, KEY)
                .env("RUST_LOG", "debug")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(kind), "{stderr}");
        assert!(key_free(&out.stderr), "{stderr}");
        assert!(key_free(&out.stdout));
        assert_dir_key_free(dir.path());
        srv.shutdown().await;
    }
}
