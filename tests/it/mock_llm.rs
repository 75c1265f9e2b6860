//! The mock OpenAI-compatible provider, exercised over loopback HTTP the way
//! the product's client and the demo use it.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::mock::{tokens_of, MockScript, MockServer, MockStats, MESSAGE_OVERHEAD_TOKENS};

async fn start(yaml: &str) -> MockServer {
    let script = MockScript::parse(yaml).expect("script");
    MockServer::start("127.0.0.1:0", script)
        .await
        .expect("start")
}

fn request(model: &str, prompt: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a careful reviewer of research papers."},
            {"role": "user", "content": prompt}
        ],
        "temperature": 0.2,
        "max_tokens": 500
    })
}

/// POSTs a chat request; returns status, headers and the raw body text.
async fn post(server: &MockServer, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
    let url = format!("{}/chat/completions", server.base_url());
    let resp = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

/// POSTs and returns the assistant message content of a 200 answer.
async fn content(server: &MockServer, body: &Value) -> String {
    let (status, _, text) = post(server, body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json body");
    v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

const PAPER: &str = "Summarise the paper.\nWe propose sparse attention routing that reduces memory by 40% on long documents.\nExperiments cover three summarisation benchmarks.";

#[tokio::test]
async fn equal_requests_get_equal_answers_and_a_full_envelope() {
    let server = start("").await;
    let a = content(&server, &request("m1", PAPER)).await;
    let b = content(&server, &request("m1", PAPER)).await;
    assert_eq!(a, b);
    let other_prompt = content(&server, &request("m1", "Describe the datasets used.")).await;
    assert_ne!(a, other_prompt);

    let (_, _, text) = post(&server, &request("m1", PAPER)).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("mock-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "m1");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let u = &v["usage"];
    // Tokens from text size: characters / 4 per message, plus 4 each.
    let prompt_tokens = tokens_of("You are a careful reviewer of research papers.")
        + tokens_of(PAPER)
        + 2 * MESSAGE_OVERHEAD_TOKENS;
    assert_eq!(u["prompt_tokens"].as_u64().unwrap(), prompt_tokens);
    let completion = tokens_of(&a);
    assert_eq!(u["completion_tokens"].as_u64().unwrap(), completion);
    let total = u["total_tokens"].as_u64().unwrap();
    assert_eq!(total, prompt_tokens + completion);
    assert!((u["cost"].as_f64().unwrap() - total as f64 * 1e-6).abs() < 1e-12);
    // The mock's own bill has it (and the three calls before it).
    let billed = server.stats().billed;
    assert_eq!(billed.answers, 4);
    assert!(billed.prompt_tokens >= prompt_tokens);
    server.shutdown().await;
}

#[tokio::test]
async fn markdown_section_has_heading_two_paragraphs_anchor_and_assumption() {
    let server = start("").await;
    let md = content(&server, &request("m1", PAPER)).await;
    assert!(md.starts_with("## Summarise the paper"), "{md}");
    let paragraphs: Vec<&str> = md.trim().split("\n\n").collect();
    assert_eq!(paragraphs.len(), 3, "{md}");
    for p in &paragraphs[1..] {
        let sentences = p.matches(". ").count() + 1;
        assert!((3..=4).contains(&sentences), "{p}");
    }
    let quoted = md.split('"').nth(1).expect("a quoted evidence anchor");
    assert!(quoted.split_whitespace().count() >= 2, "{quoted}");
    assert!(PAPER.contains(quoted), "anchor {quoted:?} is not verbatim");
    assert!(md.contains("Assumption: "), "{md}");
    server.shutdown().await;
}

#[tokio::test]
async fn json_schema_marker_gives_typed_object() {
    let server = start("").await;
    let prompt = format!(
        "{PAPER}\n\nJSON schema:\n{}\nReturn only JSON.",
        json!({"type": "object", "properties": {
            "summary": {"type": "string", "description": "what the method does"},
            "score": {"type": "integer"},
            "confidence": {"type": "number"},
            "novel": {"type": "boolean"},
            "claims": {"type": "array", "items": {"type": "string"}},
            "details": {"type": "object"},
            "decision": {"type": "string", "enum": ["accept", "reject"]}
        }})
    );
    let text = content(&server, &request("m1", &prompt)).await;
    let v: Value = serde_json::from_str(&text).expect("bare JSON object");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "summary",
            "score",
            "confidence",
            "novel",
            "claims",
            "details",
            "decision"
        ]
    );
    let summary = v["summary"].as_str().unwrap();
    assert!(summary.ends_with('.') && summary.len() > 20, "{summary}");
    assert!(
        !summary.contains("properties"),
        "schema words leaked: {summary}"
    );
    assert!((1..=10).contains(&v["score"].as_u64().unwrap()));
    let c = v["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&c));
    assert_eq!(v["novel"], true);
    assert_eq!(v["claims"].as_array().unwrap().len(), 3);
    assert!(v["claims"][0].is_string());
    assert!(v["details"]["note"].is_string());
    assert_eq!(v["decision"], "accept");
    server.shutdown().await;
}

#[tokio::test]
async fn flatagents_shorthand_schema_and_pass_preference() {
    let server = start("models:\n  strict:\n    verdict: REPAIR\n").await;
    let schema = json!({
        "verdict": {"type": "str", "enum": ["REPAIR", "PASS", "FAIL"], "description": "review outcome"},
        "issues": {"type": "list"},
        "count": {"type": "int"},
        "ratio": {"type": "float"},
        "ok": {"type": "bool"},
        "extra": {"type": "json"}
    });
    let prompt = format!("Review the section. Answer PASS, REPAIR or FAIL.\nJSON schema: {schema}");
    let text = content(&server, &request("m1", &prompt)).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["verdict"], "PASS");
    assert_eq!(v["issues"].as_array().unwrap().len(), 3);
    assert!(v["count"].is_u64());
    assert!(v["ratio"].is_f64());
    assert_eq!(v["ok"], true);
    assert!(v["extra"].is_object());

    // A script verdict in the enum wins (drives repair loops in the demo).
    let v: Value =
        serde_json::from_str(&content(&server, &request("strict", &prompt)).await).unwrap();
    assert_eq!(v["verdict"], "REPAIR");

    // Lower-case enums are not verdicts: the first value is used.
    let plain = format!(
        "Classify the section.\nJSON schema: {}",
        json!({"kind": {"type": "str", "enum": ["method", "pass", "other"]}})
    );
    let v: Value = serde_json::from_str(&content(&server, &request("m1", &plain)).await).unwrap();
    assert_eq!(v["kind"], "method");
    server.shutdown().await;
}

#[tokio::test]
async fn response_format_and_fenced_json() {
    let server = start("models:\n  fenced:\n    fence_json: true\n").await;
    let mut body = request("m1", PAPER);
    body["response_format"] = json!({"type": "json_object"});
    let v: Value = serde_json::from_str(&content(&server, &body).await).unwrap();
    assert!(v["answer"].is_string());

    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}}}});
    let v: Value = serde_json::from_str(&content(&server, &body).await).unwrap();
    assert!(v["title"].is_string());

    body["model"] = json!("fenced");
    let text = content(&server, &body).await;
    let inner = text
        .strip_prefix("```json\n")
        .and_then(|t| t.strip_suffix("\n```"))
        .expect("fenced");
    assert!(serde_json::from_str::<Value>(inner).unwrap()["title"].is_string());
    server.shutdown().await;
}

#[tokio::test]
async fn verdict_defaults_to_pass_and_is_scriptable_per_model() {
    let server = start("models:\n  strict:\n    verdict: REPAIR\n").await;
    let prompt = "Check the draft. Reply with exactly PASS, REPAIR or FAIL.";
    assert_eq!(content(&server, &request("m1", prompt)).await, "PASS");
    assert_eq!(content(&server, &request("strict", prompt)).await, "REPAIR");
    server.shutdown().await;
}

const FAULTS: &str = r#"
models:
  faulty:
    faults:
      - {at: 1, status: 429, retry_after: 2}
      - {at: 2, status: 429, retry_after_date: true, retry_after: 3}
      - {at: 3, status: 429, reset_epoch_ms: 1500}
      - {at: 4, status: 429, reset_epoch_s: 2}
      - {at: 5, status: 503, retry_after: 1}
      - {at: 6, status: 500}
      - {at: 7, status: 451}
      - {at: 8, status: 402}
      - {at: 9, status: 401}
      - {at: 10, status: 404}
      - {at: 11, status: 400, body: "This model's maximum context length is 8192 tokens"}
      - {at: 12, kind: delay, delay_ms: 300}
      - {at: 13, kind: malformed}
      - {at: 14, kind: empty}
      - {at: 15, kind: error_in_200, code: 429, message: "Rate limit exceeded upstream"}
      - {every: 20, status: 500}
"#;

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn every_fault_kind_returns_its_scripted_response() {
    let server = start(FAULTS).await;
    let body = request("faulty", PAPER);
    let error =
        |text: &str| -> Value { serde_json::from_str::<Value>(text).unwrap()["error"].clone() };

    let (s, h, t) = post(&server, &body).await;
    assert_eq!((s, header(&h, "retry-after")), (429, Some("2")));
    assert_eq!(error(&t)["code"], 429);
    assert!(error(&t)["type"].is_string() && error(&t)["message"].is_string());

    let (s, h, _) = post(&server, &body).await;
    assert_eq!(s, 429);
    let date = header(&h, "retry-after").unwrap();
    assert!(date.ends_with(" GMT") && date.contains(", "), "{date}");
    assert!(date.parse::<u64>().is_err());

    let before = now_ms();
    let (s, h, _) = post(&server, &body).await;
    assert_eq!(s, 429);
    assert!(h.get("retry-after").is_none());
    let reset: u64 = header(&h, "x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(
        reset >= before + 1500 && reset <= now_ms() + 1500,
        "{reset}"
    );

    let before_s = now_ms() / 1000;
    let (s, h, _) = post(&server, &body).await;
    assert_eq!(s, 429);
    let reset: u64 = header(&h, "x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(
        (before_s + 2..=now_ms() / 1000 + 2).contains(&reset),
        "{reset}"
    );

    let (s, h, _) = post(&server, &body).await;
    assert_eq!((s, header(&h, "retry-after")), (503, Some("1")));
    for expected in [500, 451, 402, 401, 404] {
        let (s, _, t) = post(&server, &body).await;
        assert_eq!(s, expected);
        assert_eq!(error(&t)["code"], expected);
    }
    let (s, _, t) = post(&server, &body).await;
    assert_eq!(s, 400);
    assert_eq!(
        error(&t)["message"],
        "This model's maximum context length is 8192 tokens"
    );
    assert_eq!(error(&t)["type"], "invalid_request_error");

    let started = Instant::now();
    let answer = content(&server, &body).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(answer.starts_with("## "));

    let (s, _, t) = post(&server, &body).await;
    assert_eq!(s, 200);
    assert!(serde_json::from_str::<Value>(&t).is_err(), "{t}");

    assert_eq!(content(&server, &body).await, "");

    let (s, _, t) = post(&server, &body).await;
    assert_eq!(s, 200);
    assert_eq!(
        error(&t),
        json!({"code": 429, "message": "Rate limit exceeded upstream"})
    );

    for _ in 16..20 {
        assert_eq!(post(&server, &body).await.0, 200);
    }
    assert_eq!(post(&server, &body).await.0, 500, "every: 20");

    // Faults are per model: another model is unaffected.
    assert_eq!(post(&server, &request("healthy", PAPER)).await.0, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn delay_fault_trips_client_timeouts() {
    let server =
        start("models:\n  slow:\n    faults: [{at: 1, kind: delay, delay_ms: 2000}]\n").await;
    let err = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .timeout(Duration::from_millis(200))
        .json(&request("slow", PAPER))
        .send()
        .await
        .expect_err("should time out");
    assert!(err.is_timeout());
    assert_eq!(server.stats().by_status.get("200"), Some(&1));
    server.shutdown().await;
}

#[tokio::test]
async fn rpm_limit_is_enforced_with_headers() {
    let server = start("models:\n  \"*\":\n    rpm: 5\n").await;
    let body = request("limited", PAPER);
    for i in 0..5u32 {
        let (s, h, _) = post(&server, &body).await;
        assert_eq!(s, 200);
        assert_eq!(header(&h, "x-ratelimit-limit"), Some("5"));
        assert_eq!(
            header(&h, "x-ratelimit-remaining"),
            Some(&*(4 - i).to_string())
        );
    }
    let before = now_ms();
    let (s, h, t) = post(&server, &body).await;
    assert_eq!(s, 429, "{t}");
    let retry: u64 = header(&h, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(header(&h, "x-ratelimit-limit"), Some("5"));
    assert_eq!(header(&h, "x-ratelimit-remaining"), Some("0"));
    let reset: u64 = header(&h, "x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset > before && reset <= now_ms() + 60_000);
    // The window is per model id.
    assert_eq!(post(&server, &request("other", PAPER)).await.0, 200);
    let stats = server.stats();
    assert_eq!(stats.by_status.get("429"), Some(&1));
    assert_eq!(stats.by_model.get("limited"), Some(&6));
    server.shutdown().await;
}

#[tokio::test]
async fn stats_count_requests_models_statuses_and_auth() {
    let server = start("models:\n  bad:\n    faults: [{every: 1, status: 500}]\n").await;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", server.base_url());
    client
        .post(&url)
        .bearer_auth("sk-test")
        .json(&request("a", PAPER))
        .send()
        .await
        .unwrap();
    post(&server, &request("a", PAPER)).await;
    post(&server, &request("bad", PAPER)).await;
    // The un-prefixed route is served too.
    let root = format!("http://{}/chat/completions", server.addr);
    let resp = client
        .post(root)
        .json(&request("b", PAPER))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let got = server.stats();
    assert_eq!(got.billed.answers, 3, "the three answers billed");
    assert_eq!(got.billed_by_model["a"].answers, 2);
    let expected = MockStats {
        requests: 4,
        by_model: [("a".into(), 2), ("b".into(), 1), ("bad".into(), 1)].into(),
        by_status: [("200".into(), 3), ("500".into(), 1)].into(),
        with_auth: 1,
        billed: got.billed.clone(),
        billed_by_model: got.billed_by_model.clone(),
    };
    assert_eq!(got, expected);
    let base = format!("http://{}", server.addr);
    let served: MockStats = client
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, expected);
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    server.shutdown().await;
}

#[test]
fn bad_scripts_are_rejected_with_a_reason() {
    assert!(MockScript::parse("latency_ms: 5\nbogus: 1\n").is_err());
    let no_selector = MockScript::parse("models:\n  m:\n    faults: [{status: 500}]\n");
    assert!(no_selector.unwrap_err().contains("at"));
    let no_status = MockScript::parse("models:\n  m:\n    faults: [{at: 1}]\n");
    assert!(no_status.unwrap_err().contains("status"));
    let json = MockScript::parse(r#"{"latency_ms": 3, "models": {"*": {"rpm": 2}}}"#).unwrap();
    assert_eq!(json.models["*"].rpm, Some(2));
    let missing = MockScript::from_file(std::path::Path::new("/nonexistent/script.yaml"));
    assert!(missing.unwrap_err().contains("/nonexistent/script.yaml"));
}

/// `runner mock-llm` itself: needs a runner built with the `tooling` feature.
#[cfg(feature = "tooling")]
mod cli {
    use super::*;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::Command;

    fn runner() -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.arg("mock-llm").kill_on_drop(true);
        c
    }

    #[tokio::test]
    async fn binary_announces_serves_and_stops() {
        let mut child = runner()
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("announce in time")
            .unwrap()
            .expect("a line");
        let url = line
            .strip_prefix("mock-llm listening on http://")
            .and_then(|u| u.strip_suffix("/v1"))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let health = reqwest::get(format!("http://{url}/healthz")).await.unwrap();
        assert_eq!(health.text().await.unwrap(), "ok");

        // SIGTERM stops it cleanly; fall back to a kill without `kill(1)`.
        let pid = child.id().unwrap().to_string();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        if term.is_ok_and(|s| s.success()) {
            let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .expect("exits on SIGTERM")
                .unwrap();
            assert!(status.success(), "{status}");
        } else {
            child.kill().await.unwrap();
        }
    }

    #[tokio::test]
    async fn busy_port_and_bad_script_exit_2() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let out = runner().args(["--listen", &addr]).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: cannot listen on"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script.yaml");
        std::fs::write(&script, "models:\n  m:\n    rpm: 0\n").unwrap();
        let out = runner()
            .args(["--listen", "127.0.0.1:0", "--script"])
            .arg(&script)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: invalid mock script") && err.contains("rpm"),
            "{err}"
        );
    }
}

/// Realistic usage: a reply longer than `max_tokens` is cut there and
/// reports `finish_reason: "length"`; prices per side apply; the mock's
/// own bill sums what it reported.
#[tokio::test]
async fn max_tokens_caps_the_reply_and_prices_apply_per_side() {
    let server =
        start("models:\n  m: {prompt_cost_per_mtok: 3.0, completion_cost_per_mtok: 15.0}\n").await;
    let mut body = request("m", PAPER);
    body["max_tokens"] = json!(5);
    let (_, _, text) = post(&server, &body).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.chars().count() <= 20, "{content}");
    let u = &v["usage"];
    assert!(u["completion_tokens"].as_u64().unwrap() <= 5);
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    let cost = u["cost"].as_f64().unwrap();
    assert!((cost - (p as f64 * 3.0 + c as f64 * 15.0) / 1e6).abs() < 1e-12);
    let stats = server.stats();
    assert_eq!(stats.billed.prompt_tokens, p);
    assert_eq!(stats.billed.completion_tokens, c);
    assert!((stats.billed_by_model["m"].cost - cost).abs() < 1e-12);
    server.shutdown().await;
}
