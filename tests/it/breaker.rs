//! Circuit breakers in front of the real HTTP client, against the mock
//! provider over loopback: a 429 storm opens the breaker, queued calls wait
//! instead of hitting the provider, one probe closes it after the
//! provider's Retry-After; ledger reuse never passes the gate.

use async_trait::async_trait;
use paper_runner::engine::{Agent, AgentRequest, ErrorKind};
use paper_runner::llm::gate::{CallGate, CallPermit};
use paper_runner::llm::{HttpAgent, Ledger};
use paper_runner::runner::breaker::{BreakerState, Breakers};
use paper_runner::runner::config::BreakerSettings;
use paper_runner::spec::model::{AgentDef, PromptDef};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use testkit::mock::{MockScript, MockServer};
use tokio::sync::Notify;

fn request(base_url: &str, model: &str, state: &str) -> AgentRequest {
    let agent = AgentDef {
        name: "a".into(),
        file: "inline".into(),
        prompt: PromptDef {
            user: "Summarise".into(),
            ..PromptDef::default()
        },
        profile_name: Some("cheap".into()),
        model:
            json!({"provider": "mock", "name": model, "base_url": base_url, "api_key_env": null})
                .as_object()
                .cloned()
                .unwrap(),
        fallback: None,
        metadata: serde_json::Value::Null,
    };
    AgentRequest {
        execution_id: "e".into(),
        state: state.into(),
        agent_name: "a".into(),
        agent: Arc::new(agent),
        input: Default::default(),
        system: "You are a careful reviewer.".into(),
        user: format!("Summarise the paper ({state})."),
        machine: "m".into(),
        step: 1,
        sample: 0,
        attempt: 1,
        call_key: state.into(),
        tools: None,
    }
}

/// Counts callers entering the gate (so the test knows when they are
/// queued) and delegates to the breakers.
struct Counting {
    inner: Breakers,
    entered: AtomicUsize,
    notify: Notify,
}

impl Counting {
    fn new(inner: Breakers) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            entered: AtomicUsize::new(0),
            notify: Notify::new(),
        })
    }

    async fn wait_entered(&self, n: usize) {
        loop {
            let notified = self.notify.notified();
            if self.entered.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl CallGate for Counting {
    async fn before_call(&self, model_key: &str, provider: &str) -> Box<dyn CallPermit> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
        self.inner.before_call(model_key, provider).await
    }
}

#[tokio::test]
async fn a_429_storm_opens_the_breaker_and_queued_calls_wait_for_one_probe() {
    let script = MockScript::parse(
        r#"
models:
  storm:
    faults:
      - {at: 1, status: 429, retry_after: 1}
      - {at: 2, status: 429, retry_after: 1}
      - {at: 3, status: 429, retry_after: 1}
      - {at: 4, status: 429, retry_after: 1}
      - {at: 5, status: 429, retry_after: 1}
"#,
    )
    .unwrap();
    let server = MockServer::start("127.0.0.1:0", script).await.unwrap();
    let url = server.base_url();
    let key = format!("{url}|storm");
    let breakers = Breakers::new(None, BreakerSettings::default()).unwrap();
    let gate = Counting::new(breakers.clone());
    let agent = Arc::new(HttpAgent::new(None).unwrap().with_gate(gate.clone()));

    // The storm: five concurrent calls, all refused.
    let mut storm = Vec::new();
    for i in 0..5 {
        let (agent, url) = (agent.clone(), url.clone());
        storm.push(tokio::spawn(async move {
            agent.call(request(&url, "storm", &format!("s{i}"))).await
        }));
    }
    for h in storm {
        assert_eq!(h.await.unwrap().unwrap_err().kind, ErrorKind::RateLimit);
    }
    let opened = breakers.state(&key);
    assert_eq!(opened.state, BreakerState::Open);
    assert_eq!(opened.reason.as_deref(), Some("rate_limit"));
    let open_until = opened.open_until_ms.unwrap();
    assert!(breakers.is_open(&key));

    // Three more calls queue at the gate; none reaches the provider.
    let mut queued = Vec::new();
    for i in 0..3 {
        let (agent, url) = (agent.clone(), url.clone());
        queued.push(tokio::spawn(async move {
            let r = agent.call(request(&url, "storm", &format!("q{i}"))).await;
            (r, chrono::Utc::now().timestamp_millis())
        }));
    }
    gate.wait_entered(8).await;
    assert_eq!(server.stats().requests, 5);

    // After the provider's Retry-After one probe succeeds and closes the
    // breaker; the others follow.
    for h in queued {
        let (r, done_at) = h.await.unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert!(
            done_at >= open_until,
            "sent {} ms early",
            open_until - done_at
        );
    }
    let stats = server.stats();
    assert_eq!(stats.requests, 8, "one request per queued call, no more");
    assert_eq!(stats.by_status.get("429"), Some(&5));
    assert_eq!(stats.by_status.get("200"), Some(&3));
    let closed = breakers.state(&key);
    assert_eq!(closed.state, BreakerState::Closed);
    assert_eq!(closed.open_count, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn payment_required_blocks_the_provider_and_ledger_reuse_bypasses_the_gate() {
    let script = MockScript::parse("models:\n  broke: {faults: [{at: 1, status: 402}]}\n").unwrap();
    let server = MockServer::start("127.0.0.1:0", script).await.unwrap();
    let url = server.base_url();
    let dir = tempfile::tempdir().unwrap();
    let store =
        paper_runner::store::Store::open(&dir.path().join("l.db"), &Default::default()).unwrap();
    let breakers = Breakers::new(Some(store.clone()), BreakerSettings::default()).unwrap();
    let gate = Counting::new(breakers.clone());
    let agent = HttpAgent::new(Some(Ledger::new(store.clone())))
        .unwrap()
        .with_gate(gate.clone());

    let ok = agent.call(request(&url, "fine", "s")).await;
    assert!(ok.is_ok(), "{ok:?}");
    // The same request of the same state run is reused from the ledger:
    // no request, and no pass through the gate.
    let again = agent.call(request(&url, "fine", "s")).await;
    assert_eq!(again.unwrap().content, ok.unwrap().content);
    assert_eq!(gate.entered.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().requests, 1);

    let err = agent.call(request(&url, "broke", "t")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PaymentRequired);
    // Credits are per account: the other model of the provider is blocked too.
    for m in ["broke", "fine"] {
        assert!(breakers.is_open(&format!("{url}|{m}")), "{m}");
    }
    assert_eq!(breakers.blocked_providers(), vec!["mock".to_string()]);
    // And a restarted runner remembers it.
    let reloaded = Breakers::new(Some(store), BreakerSettings::default()).unwrap();
    assert!(reloaded.is_open(&format!("{url}|fine")));
    server.shutdown().await;
}
