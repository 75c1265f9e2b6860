//! The OpenAI-compatible client against the mock provider over loopback:
//! error kinds, retry_after, rate limiting, the spend ledger (no call paid
//! twice across a crash), fallback, and key secrecy.

use crate::support;
use paper_runner::engine::{Agent, AgentRequest, ErrorKind};
use paper_runner::llm::HttpAgent;
use paper_runner::spec::model::{AgentDef, FallbackProfile, PromptDef};
use serde_json::{json, Map, Value};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use testkit::mock::{MockScript, MockServer};

fn model(base_url: &str, name: &str) -> Map<String, Value> {
    support::obj(
        json!({"provider": "mock", "name": name, "base_url": base_url, "api_key_env": "PAPER_RUNNER_TEST_KEY"}),
    )
}

fn agent_def(base_url: &str, name: &str, output: Option<Value>) -> AgentDef {
    AgentDef {
        name: "a".into(),
        file: "inline".into(),
        prompt: PromptDef {
            system: None,
            user: "Summarise attention".into(),
            instruction_suffix: None,
            tools: None,
            output: output.and_then(|o| o.as_object().cloned()),
        },
        profile_name: Some("p".into()),
        model: model(base_url, name),
        fallback: None,
        metadata: Value::Null,
    }
}

fn request(agent: AgentDef) -> AgentRequest {
    AgentRequest {
        execution_id: "e".into(),
        state: "s".into(),
        agent_name: "a".into(),
        agent: Arc::new(agent),
        input: Map::new(),
        system: "You are a helpful assistant.".into(),
        user: "Summarise the paper on attention. Answer with PASS or FAIL.".into(),
        machine: "m".into(),
        step: 1,
        sample: 0,
        attempt: 1,
        call_key: "k".into(),
        tools: None,
    }
}

fn set_key() {
    // The same value in every test of this binary (tests share the process env).
    std::env::set_var("PAPER_RUNNER_TEST_KEY", "sk-test-SECRET-0123456789");
}

#[tokio::test]
async fn each_error_kind_is_classified_end_to_end() {
    set_key();
    let script = MockScript::parse(
        r#"
models:
  m429: {faults: [{at: 1, status: 429, retry_after: 7}]}
  m402: {faults: [{at: 1, status: 402}]}
  m401: {faults: [{at: 1, status: 401}]}
  m403: {faults: [{at: 1, status: 403}]}
  m400: {faults: [{at: 1, status: 400}]}
  mctx: {faults: [{at: 1, status: 400, body: "This model's maximum context length is 8192 tokens"}]}
  m404: {faults: [{at: 1, status: 404}]}
  m451: {faults: [{at: 1, status: 451}]}
  m500: {faults: [{at: 1, status: 500}]}
  m503: {faults: [{at: 1, status: 503, retry_after: 3}]}
  mbad: {faults: [{at: 1, kind: malformed}]}
  mempty: {faults: [{at: 1, kind: empty}]}
  min200: {faults: [{at: 1, kind: error_in_200, code: 429, message: "Rate limit exceeded upstream"}]}
  mdate: {faults: [{at: 1, status: 429, retry_after_date: true, retry_after: 20}]}
  mresetms: {faults: [{at: 1, status: 429, reset_epoch_ms: 5000}]}
"#,
    )
    .unwrap();
    let server = MockServer::start("127.0.0.1:0", script).await.unwrap();
    let url = server.base_url();
    let agent = HttpAgent::new(None).unwrap();
    let cases = [
        ("m429", ErrorKind::RateLimit),
        ("m402", ErrorKind::PaymentRequired),
        ("m401", ErrorKind::AuthError),
        ("m403", ErrorKind::AuthError),
        ("m400", ErrorKind::InvalidRequest),
        ("mctx", ErrorKind::ContextLength),
        ("m404", ErrorKind::ModelNotFound),
        ("m451", ErrorKind::LegalBlock),
        ("m500", ErrorKind::ServerError),
        ("m503", ErrorKind::ServerError),
        ("mbad", ErrorKind::ServerError),
        ("mempty", ErrorKind::EmptyResponse),
        ("min200", ErrorKind::RateLimit),
    ];
    for (m, kind) in cases {
        let err = agent
            .call(request(agent_def(&url, m, None)))
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind, "{m}: {}", err.message);
        assert!(
            err.message.contains(&format!("model {m}")),
            "{}",
            err.message
        );
        assert!(!err.message.contains("SECRET"), "{}", err.message);
    }
    let e = agent.call(request(agent_def(&url, "m429", None))).await;
    assert!(e.is_ok(), "only the first request of m429 is faulted");
    let ra = |m: &str| {
        let agent = &agent;
        let url = &url;
        let m = m.to_string();
        async move {
            agent
                .call(request(agent_def(url, &m, None)))
                .await
                .unwrap_err()
                .retry_after
        }
    };
    assert!(ra("mdate")
        .await
        .is_some_and(|s| (17.0..=21.0).contains(&s)));
    assert!(ra("mresetms")
        .await
        .is_some_and(|s| (3.0..=5.5).contains(&s)));
    server.shutdown().await;
}

#[tokio::test]
async fn retry_after_comes_from_the_header_and_timeouts_are_timeout() {
    set_key();
    let script = MockScript::parse(
        "models:\n  slow: {faults: [{at: 1, kind: delay, delay_ms: 3000}]}\n  lim: {faults: [{at: 1, status: 429, retry_after: 7}]}\n",
    )
    .unwrap();
    let server = MockServer::start("127.0.0.1:0", script).await.unwrap();
    let agent = HttpAgent::new(None).unwrap();
    let err = agent
        .call(request(agent_def(&server.base_url(), "lim", None)))
        .await
        .unwrap_err();
    assert_eq!(err.retry_after, Some(7.0));
    let mut def = agent_def(&server.base_url(), "slow", None);
    def.model.insert("timeout".into(), json!(0.3));
    let err = agent.call(request(def)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{}", err.message);
    server.shutdown().await;
}

#[tokio::test]
async fn structured_output_is_parsed_and_usage_recorded() {
    set_key();
    let script = MockScript::parse("models:\n  fenced: {fence_json: true}\n").unwrap();
    let server = MockServer::start("127.0.0.1:0", script).await.unwrap();
    let agent = HttpAgent::new(None).unwrap();
    let out = json!({"summary": {"type": "str"}, "score": {"type": "int"}, "ok": {"type": "bool"}});
    for m in ["plain", "fenced"] {
        let r = agent
            .call(request(agent_def(&server.base_url(), m, Some(out.clone()))))
            .await
            .unwrap();
        let o = r.output.unwrap();
        assert!(o["summary"].is_string(), "{o:?}");
        assert!(o["score"].is_i64(), "{o:?}");
        assert!(o["ok"].is_boolean(), "{o:?}");
        assert!(r.usage.total_tokens > 0);
        assert!(r.cost.is_some());
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    }
    let text = agent
        .call(request(agent_def(&server.base_url(), "plain", None)))
        .await
        .unwrap();
    assert!(text.output.is_none());
    assert_eq!(text.payload()["content"], json!("PASS"));
    assert_eq!(server.stats().with_auth, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn the_limiter_keeps_calls_under_the_provider_limit() {
    set_key();
    // The provider allows 300/min; the profile asks for 240/min: 12 calls
    // from 12 concurrent callers must all succeed with no 429.
    let script = MockScript::parse("models:\n  paced: {rpm: 300}\n").unwrap();
    let server = MockServer::start("127.0.0.1:0", script).await.unwrap();
    let agent = Arc::new(HttpAgent::new(None).unwrap());
    let mut def = agent_def(&server.base_url(), "paced", None);
    def.model.insert("rate_limit".into(), json!("240/m"));
    let mut handles = Vec::new();
    for i in 0..12 {
        let agent = agent.clone();
        let mut req = request(def.clone());
        req.user = format!("question {i}");
        handles.push(tokio::spawn(async move { agent.call(req).await }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let stats = server.stats();
    assert_eq!(stats.requests, 12);
    assert_eq!(stats.by_status.get("429"), None);
    server.shutdown().await;
}

#[tokio::test]
async fn legal_block_switches_to_the_fallback_profile() {
    set_key();
    let script =
        MockScript::parse("models:\n  blocked: {faults: [{every: 1, status: 451}]}\n").unwrap();
    let server = MockServer::start("127.0.0.1:0", script).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store =
        paper_runner::store::Store::open(&dir.path().join("l.db"), &Default::default()).unwrap();
    let agent = HttpAgent::new(Some(paper_runner::llm::Ledger::new(store.clone()))).unwrap();
    let mut def = agent_def(&server.base_url(), "blocked", None);
    def.fallback = Some(FallbackProfile {
        name: "backup".into(),
        model: model(&server.base_url(), "backup-model"),
    });
    let r = agent.call(request(def)).await.unwrap();
    assert!(r.content.is_some());
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let rows: Vec<(String, String, Option<String>, Option<String>)> = conn
        .prepare("SELECT model, status, error_kind, fallback_from FROM llm_calls ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "blocked".into(),
                "error".into(),
                Some("legal_block".into()),
                None
            ),
            ("backup-model".into(), "ok".into(), None, Some("p".into())),
        ]
    );
    server.shutdown().await;
}

fn write_machine(dir: &Path, base_url: &str) -> std::path::PathBuf {
    let m = dir.join("m.yml");
    std::fs::write(
        &m,
        format!(
            r#"spec: flatmachine
spec_version: "4.2.1"
data:
  name: llm-machine
  context:
    topic: input.topic
  agents:
    writer:
      spec: flatagent
      data:
        prompt:
          user: "Write a section about {{{{ input.topic }}}}."
        model: {{provider: mock, name: writer-model, base_url: "{base_url}", api_key_env: PAPER_RUNNER_TEST_KEY}}
  states:
    start:
      type: initial
      agent: writer
      input: {{topic: context.topic}}
      output_to_context:
        section: output.content
      transitions: [{{to: done}}]
    done:
      type: final
      output:
        section: context.section
"#
        ),
    )
    .unwrap();
    m
}

fn runner(args: &[&str], crash: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.args(args)
        .env("PAPER_RUNNER_TEST_KEY", "sk-test-SECRET-0123456789")
        .env("RUST_LOG", "debug");
    match crash {
        Some(v) => c.env("PAPER_RUNNER_CRASH_AFTER", v),
        None => c.env_remove("PAPER_RUNNER_CRASH_AFTER"),
    };
    c.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_response_pays_nothing_extra_on_resume_and_the_key_stays_secret() {
    let server = MockServer::start("127.0.0.1:0", MockScript::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = write_machine(dir.path(), &server.base_url());
    let db = dir.path().join("r.db");
    let (ms, dbs) = (
        m.to_str().unwrap().to_string(),
        db.to_str().unwrap().to_string(),
    );
    let crashed = tokio::task::spawn_blocking({
        let (ms, dbs) = (ms.clone(), dbs.clone());
        move || {
            runner(
                &[
                    "machine",
                    "run",
                    &ms,
                    "--db",
                    &dbs,
                    "--execution-id",
                    "k1",
                    "--input",
                    r#"{"topic": "attention"}"#,
                ],
                Some("llm_settled"),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(
        crashed.status.signal(),
        Some(paper_runner::store::CRASH_SIGNAL),
        "{}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    assert_eq!(server.stats().requests, 1);
    let resumed = tokio::task::spawn_blocking(move || {
        runner(&["machine", "resume", "k1", "--db", &dbs], None)
    })
    .await
    .unwrap();
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        server.stats().requests,
        1,
        "the resumed state reused the settled response"
    );
    let out: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert!(
        out["section"].as_str().is_some_and(|s| s.contains("## ")),
        "{out}"
    );
    assert_eq!(server.stats().with_auth, 1, "the key was sent");
    // The key is nowhere: not in the DB (or its WAL), logs, or errors.
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("SECRET-0123456789"));
    }
    for o in [&crashed, &resumed] {
        assert!(!String::from_utf8_lossy(&o.stderr).contains("SECRET-0123456789"));
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let statuses: Vec<String> = conn
        .prepare("SELECT status FROM llm_calls ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(statuses, vec!["ok", "reused"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_an_auth_error_naming_the_variable() {
    let server = MockServer::start("127.0.0.1:0", MockScript::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = write_machine(dir.path(), &server.base_url());
    let ms = m.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["machine", "run", &ms, "--input", r#"{"topic": "x"}"#])
            .env_remove("PAPER_RUNNER_TEST_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth_error") && stderr.contains("PAPER_RUNNER_TEST_KEY is not set"),
        "{stderr}"
    );
    assert_eq!(server.stats().requests, 0);
    server.shutdown().await;
}
