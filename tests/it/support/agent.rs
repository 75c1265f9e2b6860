//! A scripted agent and helpers to load and run machines in-process.

use async_trait::async_trait;
use paper_runner::engine::{
    ActionRegistry, Agent, AgentRequest, AgentResult, Checkpointer, Engine, ErrorKind, ExecError,
    NoCheckpoints, Usage,
};
use paper_runner::spec::{self, LoadOptions};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Answers agent calls from a script: agent name → list of responses, used
/// in order (the last one repeats). A response is one of
/// `{output: {...}}`, `{content: "..."}`, `{error: {kind, message, retry_after}}`
/// or `{echo: true}` (returns the rendered prompts and model as output).
#[derive(Default)]
pub struct ScriptedAgent {
    script: Map<String, Value>,
    cursor: Mutex<HashMap<String, usize>>,
    pub calls: Mutex<Vec<AgentRequest>>,
}

impl ScriptedAgent {
    pub fn new(script: Value) -> ScriptedAgent {
        ScriptedAgent {
            script: script.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        }
    }

    pub fn calls(&self) -> Vec<AgentRequest> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Agent for ScriptedAgent {
    async fn call(&self, req: AgentRequest) -> Result<AgentResult, ExecError> {
        self.calls.lock().unwrap().push(req.clone());
        let list = self
            .script
            .get(&req.agent_name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let idx = {
            let mut c = self.cursor.lock().unwrap();
            let i = c.entry(req.agent_name.clone()).or_insert(0);
            let cur = *i;
            *i += 1;
            cur
        };
        let Some(resp) = list.get(idx).or(list.last()).cloned() else {
            return Err(ExecError::new(
                ErrorKind::InvalidRequest,
                format!("no scripted response for agent '{}'", req.agent_name),
            ));
        };
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
        };
        if let Some(err) = resp.get("error") {
            let kind = err
                .get("kind")
                .and_then(Value::as_str)
                .and_then(ErrorKind::parse)
                .unwrap_or(ErrorKind::ServerError);
            let mut e = ExecError::new(
                kind,
                err.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("scripted error"),
            );
            e.retry_after = err.get("retry_after").and_then(Value::as_f64);
            return Err(e);
        }
        if resp.get("echo").is_some() {
            let mut out = Map::new();
            out.insert("system".into(), json!(req.system));
            out.insert("user".into(), json!(req.user));
            out.insert("model".into(), Value::Object(req.agent.model.clone()));
            out.insert("input".into(), Value::Object(req.input.clone()));
            return Ok(AgentResult {
                output: Some(out),
                usage,
                ..Default::default()
            });
        }
        Ok(AgentResult {
            output: resp.get("output").and_then(Value::as_object).cloned(),
            content: resp
                .get("content")
                .and_then(Value::as_str)
                .map(str::to_string),
            usage,
            cost: resp.get("cost").and_then(Value::as_f64),
            finish_reason: Some("stop".into()),
            rate_limit: None,
            tool_calls: Vec::new(),
        })
    }
}

pub fn actions() -> ActionRegistry {
    ActionRegistry::with_builtins()
}

/// Load a machine, panicking with every diagnostic if it has errors.
pub fn load(path: &Path) -> Arc<spec::Bundle> {
    let opts = LoadOptions {
        profiles: None,
        actions: actions().names(),
        model_check: Some(paper_runner::llm::ModelProfile::check_config),
        hooks: None,
    };
    let loaded = spec::load(path, &opts);
    match loaded.bundle {
        Some(b) => Arc::new(b),
        None => panic!("{} failed to load:\n{}", path.display(), loaded.diagnostics),
    }
}

pub fn engine(bundle: Arc<spec::Bundle>, agent: Arc<dyn Agent>) -> Engine {
    Engine::new(bundle, agent, actions(), Arc::new(NoCheckpoints))
}

pub fn engine_with(
    bundle: Arc<spec::Bundle>,
    agent: Arc<dyn Agent>,
    checkpoints: Arc<dyn Checkpointer>,
) -> Engine {
    Engine::new(bundle, agent, actions(), checkpoints)
}

pub fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}
