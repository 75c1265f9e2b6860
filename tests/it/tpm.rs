//! Token-per-minute limits against the mock provider: the client books
//! each call's estimated tokens and corrects them to the answer's usage,
//! so calls at the provider's TPM limit get no 429.

use crate::support;
use paper_runner::engine::{Agent, AgentRequest};
use paper_runner::llm::HttpAgent;
use paper_runner::spec::model::{AgentDef, PromptDef};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use testkit::mock::{MockScript, MockServer};

fn request(base_url: &str, i: usize) -> AgentRequest {
    let model = support::obj(json!({
        "provider": "mock", "name": "tight", "base_url": base_url, "api_key_env": null,
        "tpm": 2000, "max_tokens": 400
    }));
    AgentRequest {
        execution_id: "e".into(),
        state: "s".into(),
        agent_name: "a".into(),
        agent: Arc::new(AgentDef {
            name: "a".into(),
            file: "inline".into(),
            prompt: PromptDef {
                system: None,
                user: "u".into(),
                instruction_suffix: None,
                tools: None,
                output: None,
            },
            profile_name: Some("p".into()),
            model,
            fallback: None,
            metadata: Value::Null,
        }),
        input: Map::new(),
        system: "You are a careful reviewer.".into(),
        user: format!("Review claim {i} of the paper on attention. Answer with PASS or FAIL."),
        machine: "m".into(),
        step: 1,
        sample: 0,
        attempt: 1,
        call_key: format!("k{i}"),
        tools: None,
    }
}

#[tokio::test]
async fn calls_at_the_provider_tpm_get_no_429() {
    // The provider allows 2000 tokens a minute and answers 429 beyond;
    // the profile says the same. Twelve concurrent calls estimate ~460
    // tokens each (5500 in all: more than the minute allows), so the
    // limiter lets about four out at once; each answer corrects its
    // booking to the few dozen tokens really used, which lets the next
    // ones go without waiting for the window.
    let script = MockScript::parse("models:\n  tight: {tpm: 2000}\n").unwrap();
    let server = MockServer::start("127.0.0.1:0", script).await.unwrap();
    let agent = Arc::new(HttpAgent::new(None).unwrap());
    let mut handles = Vec::new();
    for i in 0..12 {
        let agent = agent.clone();
        let req = request(&server.base_url(), i);
        handles.push(tokio::spawn(async move { agent.call(req).await }));
    }
    let mut used = 0;
    for h in handles {
        let r = h.await.unwrap().unwrap();
        used += r.usage.total_tokens;
    }
    let stats = server.stats();
    assert_eq!(stats.requests, 12);
    assert_eq!(stats.by_status.get("429"), None, "{stats:?}");
    assert!(used > 0 && used <= 2000, "{used}");
    server.shutdown().await;
}
