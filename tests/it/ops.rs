//! The operator surface as operators use it: the real `runner` binary on a
//! real SQLite file against the mock provider over loopback (`status`,
//! `show`, `retry`, `cancel`, `resume`, JSON logs), and the ops HTTP
//! endpoint served in-process (`/metrics`, `/status`, `/healthz`, tokens).

use crate::support::{self, arxiv, repo, Site};
use paper_runner::ops::http::{render_metrics, serve, OpsState};
use paper_runner::ops::metrics::Metrics;
use paper_runner::ops::status::status_report;
use paper_runner::runner::scheduler::RunnerStats;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Papers cycle through these three fixture PDFs here.
const PDFS: [&str; 3] = ["paper-a.pdf", "paper-b.pdf", "onecol.pdf"];

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn has_keys(v: &Value, want: &[&str]) {
    let got = keys(v);
    for k in want {
        assert!(got.contains(k), "missing {k} in {got:?}");
    }
}

/// The cheap model refuses its first request with a 400 (not retryable):
/// with one worker that is the first paper's prep, which fails for good.
const FIRST_PREP_FAILS: &str = r#"
models:
  mock/cheap:
    faults:
      - {at: 1, status: 400, body: "the prompt is malformed"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_show_retry_cancel_resume_report_what_they_did() {
    let site = Site::new(FIRST_PREP_FAILS).await;
    site.add_pdfs(&PDFS, 0, 4);
    // The fourth waits, cancelled, through the pass (resumed at the end).
    let c = site.json(&["cancel", &arxiv(3)]);
    assert_eq!(
        c,
        json!({"cancelled": [{"id": format!("paper:{}", arxiv(3)), "status": "pending", "cancel_requested": true, "in_flight": false}]})
    );

    // Before anything ran: everything pending, the oldest named.
    let s = site.json(&["status"]);
    has_keys(
        &s,
        &[
            "generated_at",
            "db",
            "total",
            "counts",
            "claimable",
            "in_flight",
            "budget",
            "breakers",
            "mode",
            "done_last_hour",
            "done_last_day",
            "oldest_pending",
        ],
    );
    assert_eq!(s["total"], 4);
    assert_eq!(s["counts"]["pending"], 4);
    assert_eq!(
        keys(&s["counts"]),
        [
            "pending",
            "prepping",
            "prepped",
            "analyzing",
            "analyzed",
            "wrapping",
            "done",
            "failed"
        ]
    );
    assert_eq!(
        s["claimable"],
        json!({"prep": 3, "expensive": 0, "wrap": 0}),
        "cancelled: not claimable"
    );
    assert_eq!(s["oldest_pending"]["arxiv_id"], arxiv(0));
    assert_eq!(s["oldest_pending"]["id"], format!("paper:{}", arxiv(0)));

    // One single pass with JSON logs at debug: every line inside an
    // execution names the execution, machine and paper.
    let out = site
        .cmd(&["--workers", "1", "--log-format", "json"])
        .env("RUST_LOG", "paper_runner=debug,flatmachines=debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut in_state = 0;
    for line in String::from_utf8(out.stderr).unwrap().lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            // The closing summary line is plain text.
            assert!(line.starts_with("runner:"), "not JSON: {line}");
            continue;
        };
        let spans = v["spans"].as_array().cloned().unwrap_or_default();
        let Some(exec) = spans.iter().rev().find(|s| s["name"] == "execution") else {
            continue;
        };
        has_keys(exec, &["execution_id", "machine"]);
        assert!(
            spans
                .iter()
                .any(|s| s["name"] == "execution" && s["arxiv_id"].is_string()),
            "no arxiv_id in {line}"
        );
        if v["fields"]["event"] == "state_exit" {
            assert_eq!(v["span"]["name"], "state", "{line}");
            assert!(v["span"]["state"].is_string());
            in_state += 1;
        }
    }
    assert!(in_state > 10, "only {in_state} state_exit lines");

    let s = site.json(&["status"]);
    assert_eq!(s["counts"]["done"], 2);
    assert_eq!(s["counts"]["failed"], 1);
    assert_eq!(s["done_last_hour"], 2);
    assert_eq!(s["done_last_day"], 2);
    assert_eq!(s["in_flight"], json!([]));
    assert_eq!(s["counts"]["pending"], 1);
    assert_eq!(
        s["oldest_pending"],
        Value::Null,
        "a cancelled paper is not waiting"
    );
    assert_eq!(s["breakers"], json!([]));
    assert_eq!(
        s["mode"],
        json!({"mode": "normal", "prep_only": false, "only_prep": false, "reason": "", "source": "derived", "blocked": []})
    );
    let b = &s["budget"];
    has_keys(b, &["day_started_at", "resets_at", "classes", "total"]);
    assert_eq!(b["classes"][0]["class"], "cheap");
    assert_eq!(b["classes"][1]["class"], "expensive");
    assert_eq!(b["total"]["limit"], Value::Null);
    let ledger_sent: u64 = {
        let c = rusqlite::Connection::open(site.db()).unwrap();
        c.query_row(
            "SELECT COUNT(*) FROM llm_calls WHERE status != 'reused'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64
    };
    assert_eq!(b["total"]["used"], ledger_sent);
    assert_eq!(
        b["classes"][0]["used"].as_u64().unwrap() + b["classes"][1]["used"].as_u64().unwrap(),
        ledger_sent
    );
    // YAML and the human table say the same.
    let yaml = site.ok(&["status", "--yaml"]);
    assert!(yaml.contains("done_last_hour: 2"), "{yaml}");
    let human = site.ok(&["status"]);
    assert!(human.lines().all(|l| l.chars().count() <= 80), "{human}");
    assert!(human.contains("mode: normal"), "{human}");

    // A finished paper: three phases, each root with its states; children
    // of the expensive phase marked; every LLM call with its numbers.
    let done = site.json(&["show", &arxiv(1)]);
    has_keys(
        &done,
        &[
            "paper",
            "phases",
            "executions",
            "llm_calls",
            "llm_totals",
            "errors",
            "report_path",
            "events",
        ],
    );
    assert_eq!(done["paper"]["status"], "done");
    let phases: Vec<(&str, &str)> = done["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap(), p["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        phases,
        [
            ("prep", "finished"),
            ("expensive", "finished"),
            ("wrap", "finished")
        ]
    );
    let execs = done["executions"].as_array().unwrap();
    let roots: Vec<&str> = execs
        .iter()
        .filter(|e| e["child"] == false)
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    let pid = format!("paper:{}", arxiv(1));
    assert_eq!(
        roots,
        [
            format!("{pid}/prep/1"),
            format!("{pid}/expensive/1"),
            format!("{pid}/wrap/1")
        ]
    );
    let children: Vec<&Value> = execs.iter().filter(|e| e["child"] == true).collect();
    assert!(!children.is_empty());
    for c in &children {
        assert_eq!(c["phase"], "expensive");
        assert_eq!(c["depth"], 1);
        assert_eq!(c["parent_id"], format!("{pid}/expensive/1"));
    }
    let prep = &execs[0];
    let states: Vec<&str> = prep["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"acquire"));
    assert_eq!(states.last(), Some(&"done"));
    for s in prep["states"].as_array().unwrap() {
        has_keys(
            s,
            &[
                "state",
                "step",
                "started_at",
                "duration_ms",
                "outcome",
                "next_state",
            ],
        );
        assert_eq!(s["outcome"], "ok");
        assert!(s["duration_ms"].as_i64().unwrap() >= 0);
    }
    let calls = done["llm_calls"].as_array().unwrap();
    assert!(!calls.is_empty());
    for c in calls {
        has_keys(
            c,
            &[
                "model",
                "status",
                "http_status",
                "total_tokens",
                "latency_ms",
                "retry_after",
                "error_kind",
                "execution_id",
            ],
        );
        assert_eq!(c["status"], "ok");
        assert_eq!(c["http_status"], 200);
        assert!(c["execution_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{pid}/")));
    }
    assert!(calls.iter().any(|c| c["model"] == "mock/expensive"));
    assert_eq!(done["llm_totals"]["calls"], calls.len());
    assert_eq!(done["errors"], json!([]));
    let report = done["report_path"].as_str().unwrap();
    assert!(site.path().join(report).is_file() || Path::new(report).is_file());
    let human = site.ok(&["show", &arxiv(1)]);
    assert!(human.lines().all(|l| l.chars().count() <= 80), "{human}");
    assert!(human.contains("child "), "{human}");

    // The failed paper: the 400 from the ledger and the failed phase.
    let failed = site.json(&["show", &format!("paper:{}", arxiv(0))]);
    assert_eq!(failed["paper"]["status"], "failed");
    let errors = failed["errors"].as_array().unwrap();
    let sources: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap(),
                e["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(sources.contains(&("llm", "invalid_request")), "{sources:?}");
    assert!(
        sources.contains(&("phase", "invalid_request")),
        "{sources:?}"
    );
    let bad_call = &failed["llm_calls"][0];
    assert_eq!(bad_call["status"], "error");
    assert_eq!(bad_call["http_status"], 400);
    assert_eq!(failed["phases"][0]["outcome"], "failed");

    // Unknown ids are a clear error with exit 2.
    let out = site.run(&["show", "2501.99999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no paper 2501.99999"));
    let out = site.run(&["cancel", "2501.99999"]);
    assert_eq!(out.status.code(), Some(2));

    // retry: failed → pending, with the prep attempts reset.
    let r = site.json(&["retry", &arxiv(0)]);
    assert_eq!(
        r,
        json!({
            "changed": [{"id": format!("paper:{}", arxiv(0)), "from": "failed", "to": "pending", "cancel_lifted": false}],
            "skipped": []
        })
    );
    let r = site.json(&["retry", "--failed"]);
    assert_eq!(r["changed"], json!([]));
    // A done paper has nothing to retry: said, not silently skipped.
    let r = site.json(&["retry", &arxiv(1)]);
    assert_eq!(r["skipped"][0]["status"], "done");

    // cancel: marked, not claimable; resume refuses it; retry lifts it.
    let c = site.json(&["cancel", &arxiv(0)]);
    assert_eq!(c["cancelled"][0]["status"], "pending");
    let s = site.json(&["status"]);
    assert_eq!(s["claimable"]["prep"], 0);
    let out = site.run(&["resume", &arxiv(0)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));
    let lifted = site.ok(&["retry", &arxiv(3)]);
    assert_eq!(
        lifted.trim(),
        format!("paper:{} pending (cancelled) → pending", arxiv(3))
    );

    // resume drives that one paper through every phase, now, and leaves
    // the others alone.
    let r = site.json(&["resume", &arxiv(3)]);
    assert_eq!(r["status"], "done");
    let outcomes: Vec<(&str, &str)> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap(), p["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("prep", "finished"),
            ("expensive", "finished"),
            ("wrap", "finished")
        ]
    );
    assert!(r["report_path"].is_string());
    let s = site.json(&["status"]);
    assert_eq!(s["counts"]["done"], 3);
    assert_eq!(s["counts"]["pending"], 1);
    // Resuming a done paper changes nothing.
    let again = site.ok(&["resume", &arxiv(3)]);
    assert!(again.contains("is done"), "{again}");

    // Budget and breakers as a daemon would see them (in-process, with
    // limits no flag of `status` sets).
    let store = site.store();
    let mut cfg = site.config();
    cfg.budget.expensive = Some(1);
    let r = status_report(&store, &cfg.resolve().unwrap(), None, chrono::Utc::now()).unwrap();
    assert_eq!(r.budget.classes[1].remaining, Some(0));
    assert!(r.mode.prep_only);
    assert!(
        r.mode
            .reason
            .starts_with("expensive budget spent for today"),
        "{}",
        r.mode.reason
    );
    // Breakers by the limiter key the client uses: the cheap model's open
    // breaker leaves the expensive phase claimable, the expensive one's not.
    let open = |model: &str, reason: &str| {
        let c = rusqlite::Connection::open(site.db()).unwrap();
        c.execute(
            "INSERT INTO breakers(model, provider, state, reason, open_until, open_count, updated_at)
             VALUES (?1, 'openai', 'open', ?2, ?3, 2, '2026-01-01T00:00:00Z')",
            rusqlite::params![
                format!("{}|{model}", site.mock.base_url()),
                reason,
                chrono::Utc::now().timestamp_millis() + 600_000
            ],
        )
        .unwrap();
    };
    open("mock/cheap", "server_error");
    let s = site.json(&["status"]);
    assert_eq!(s["breakers"][0]["model"], "mock/cheap");
    assert_eq!(s["breakers"][0]["state"], "open");
    assert_eq!(s["mode"]["mode"], "normal");
    open("mock/expensive", "rate_limit");
    let s = site.json(&["status"]);
    let b = &s["breakers"][1];
    has_keys(
        b,
        &[
            "key",
            "model",
            "provider",
            "state",
            "blocking",
            "reason",
            "open_until",
            "open_for_secs",
            "open_count",
        ],
    );
    assert_eq!(b["model"], "mock/expensive");
    assert_eq!(b["state"], "open");
    assert!(b["open_for_secs"].as_i64().unwrap() > 500);
    assert_eq!(s["mode"]["mode"], "prep-only");
    let reason = s["mode"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("breaker open for mock/expensive (rate_limit) until "),
        "{reason}"
    );
}

/// Run the conformance `children` machine in-process under a subscriber
/// with only the metrics layer (on this thread: a current-thread runtime).
fn run_children_machine(metrics: &Metrics) {
    let bundle = support::load(&repo().join("tests/conformance/cases/children/machine.yml"));
    let agent = Arc::new(support::ScriptedAgent::new(json!({})));
    let engine = support::engine(bundle, agent);
    let input =
        support::obj(json!({"n": 3, "items": [{"name": "a", "v": 1}, {"name": "b", "v": 2}]}));
    let metrics = metrics.clone();
    std::thread::spawn(move || {
        tracing::subscriber::with_default(metrics.subscriber(), || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(engine.run("metrics-1", input)).unwrap();
        })
    })
    .join()
    .unwrap();
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn start(state: OpsState) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let handle = tokio::spawn(async move { serve(listener, state, s2).await.unwrap() });
    (base, stop, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_every_family_and_requires_a_configured_token() {
    let site = Site::new("").await;
    site.add_pdfs(&PDFS, 0, 2);
    site.ok(&["--workers", "2"]);

    let metrics = Metrics::new();
    run_children_machine(&metrics);
    let snap = metrics.snapshot();
    // Transitions are counted per (innermost) machine; children included.
    assert!(snap.transitions["children"] >= 3, "{snap:?}");
    assert!(snap.transitions.contains_key("double"), "{snap:?}");
    assert!(snap.state_durations["children"].count >= 4);
    assert!(snap.machine_ends[&("children".to_string(), "done".to_string())] == 1);

    let state = OpsState {
        store: site.store(),
        settings: Arc::new(site.config().resolve().unwrap()),
        stats: Some(Arc::new(Mutex::new(RunnerStats::default()))),
        metrics: metrics.clone(),
    };
    let (base, stop, handle) = start(state.clone()).await;
    let (code, text) = get(&format!("{base}/metrics"), None).await;
    assert_eq!(code, 200);
    for family in [
        "paper_runner_executions",
        "paper_runner_transitions_total",
        "paper_runner_state_duration_seconds",
        "paper_runner_llm_requests_total",
        "paper_runner_llm_tokens_total",
        "paper_runner_llm_rate_limited_total",
        "paper_runner_llm_cost_total",
        "paper_runner_llm_unknown_cost_total",
        "paper_runner_breaker_open",
        "paper_runner_budget_remaining",
        "paper_runner_leases_held",
        "paper_runner_claimable",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no {family} in\n{text}"
        );
    }
    assert!(
        text.contains("paper_runner_executions{status=\"done\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("paper_runner_claimable{phase=\"prep\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("paper_runner_leases_held 0\n"), "{text}");
    assert!(
        text.contains("paper_runner_llm_requests_total{model=\"mock/expensive\",status=\"ok\"} ")
    );
    assert!(text.contains("paper_runner_llm_tokens_total{model=\"mock/cheap\",kind=\"prompt\"} "));
    assert!(text.contains("paper_runner_llm_rate_limited_total{model=\"mock/cheap\"} 0\n"));
    // The mock reports its own cost: known spend, nothing unknown.
    assert!(
        text.contains("paper_runner_llm_cost_total{model=\"mock/cheap\",currency=\"USD\"} "),
        "{text}"
    );
    assert!(text.contains("paper_runner_llm_unknown_cost_total{model=\"mock/cheap\"} 0\n"));
    assert!(text.contains("paper_runner_budget_remaining{class=\"expensive\"} +Inf\n"));
    assert!(text.contains("paper_runner_transitions_total{machine=\"children\"} "));
    assert!(text
        .contains("paper_runner_state_duration_seconds_bucket{machine=\"children\",le=\"+Inf\"} "));
    assert!(text.contains("paper_runner_state_duration_seconds_count{machine=\"children\"} "));
    // Every sample line belongs to a family declared above it.
    let mut declared = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared.insert(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                .unwrap_or(name);
            assert!(declared.contains(family), "undeclared sample {line}");
        }
    }
    assert_eq!(
        render_metrics(&state).unwrap().lines().next(),
        text.lines().next()
    );

    let (code, body) = get(&format!("{base}/status"), None).await;
    assert_eq!(code, 200);
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["counts"]["done"], 2);
    assert!(
        s["runner"].is_object(),
        "a daemon's /status carries its live view"
    );
    assert_eq!(
        get(&format!("{base}/healthz"), None).await,
        (200, "ok\n".into())
    );
    stop.cancel();
    handle.await.unwrap();

    // With a token configured, nothing is served without it.
    let var = "PAPER_RUNNER_OPS_TEST_TOKEN";
    std::env::set_var(var, "s3cret-token");
    let mut cfg = site.config();
    cfg.ops.token_env = Some(var.into());
    let (base, stop, handle) = start(OpsState {
        settings: Arc::new(cfg.resolve().unwrap()),
        stats: None,
        ..state
    })
    .await;
    for path in ["/metrics", "/status", "/healthz"] {
        assert_eq!(get(&format!("{base}{path}"), None).await.0, 401, "{path}");
        assert_eq!(get(&format!("{base}{path}"), Some("wrong")).await.0, 401);
        assert_eq!(
            get(&format!("{base}{path}"), Some("s3cret-token")).await.0,
            200
        );
    }
    let (_, body) = get(&format!("{base}/status"), Some("s3cret-token")).await;
    let s: Value = serde_json::from_str(&body).unwrap();
    assert!(s.get("runner").is_none(), "no live view outside a daemon");
    stop.cancel();
    handle.await.unwrap();
}
