//! Retry waits honour the provider's retry_after (tokio paused time).

use crate::support;
use crate::support::ScriptedAgent;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

fn machine() -> Arc<paper_runner::spec::Bundle> {
    support::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/conformance/cases/agent_retry/machine.yml"),
    )
}

#[tokio::test(start_paused = true)]
async fn waits_max_of_backoff_and_retry_after() {
    let agent = Arc::new(ScriptedAgent::new(json!({"flaky": [
        {"error": {"kind": "rate_limit", "retry_after": 30}},
        {"error": {"kind": "server_error"}},
        {"output": {"answer": 1}}
    ]})));
    let engine = support::engine(machine(), agent.clone());
    let start = tokio::time::Instant::now();
    let out = engine.run("r", Default::default()).await.unwrap();
    assert_eq!(out["answer"], 1);
    // backoffs [1, 2, 4], jitter 0: max(1, 30) after the 429, then 2 s.
    assert_eq!(start.elapsed(), std::time::Duration::from_secs(32));
    assert_eq!(agent.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_do_not_wait() {
    let agent = Arc::new(ScriptedAgent::new(json!({"flaky": [
        {"error": {"kind": "payment_required", "retry_after": 30}}
    ]})));
    let engine = support::engine(machine(), agent.clone());
    let start = tokio::time::Instant::now();
    let err = engine.run("r", Default::default()).await.unwrap_err();
    assert_eq!(err.kind.as_str(), "payment_required");
    assert_eq!(start.elapsed(), std::time::Duration::ZERO);
    assert_eq!(agent.calls().len(), 1);
}
