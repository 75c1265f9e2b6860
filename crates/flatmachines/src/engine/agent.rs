//! The agent seam: the engine renders the prompt and hands a request to an
//! [`Agent`]; the LLM layer implements it over HTTP, tests script it.

use super::error::{ErrorKind, ExecError};
use crate::spec::AgentDef;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The system prompt used when a prompt declares none (the reference's default).
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

/// One agent call, fully rendered.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub execution_id: String,
    pub state: String,
    /// Agent name as declared in the machine.
    pub agent_name: String,
    /// Loaded agent: prompt, output schema and resolved model profile.
    pub agent: Arc<AgentDef>,
    /// The state's rendered `input`.
    pub input: Map<String, Value>,
    pub system: String,
    /// The user prompt with `instruction_suffix` appended.
    pub user: String,
    /// Name of the machine the state belongs to.
    pub machine: String,
    /// The step the state runs at (the same again when a resumed state re-runs).
    pub step: u64,
    /// Sample index for `parallel` execution (0 otherwise).
    pub sample: u32,
    /// 1-based attempt number within the state's execution type.
    pub attempt: u32,
    /// Stable key for this call (execution, step, state, sample, attempt),
    /// so a ledger can recognise a call it already paid for.
    pub call_key: String,
    /// A `tool_loop` turn: the tools offered and the conversation so far.
    pub tools: Option<Arc<ToolTurn>>,
}

/// One turn of a `tool_loop`: what the model may call and what was said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolTurn {
    /// OpenAI-style tool definitions (`{type: function, function: {name,
    /// description, parameters}}`); empty on the final pass that asks for
    /// an answer without tools.
    pub tools: Vec<Value>,
    /// The messages after the system prompt: the first user message, then
    /// assistant messages (with their `tool_calls`) and `tool` results.
    pub messages: Vec<Value>,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model sent them (parsed JSON when they parse).
    pub arguments: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// A successful agent call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentResult {
    /// Parsed structured output (when the prompt declares an `output` schema).
    pub output: Option<Map<String, Value>>,
    /// Raw text content.
    pub content: Option<String>,
    pub usage: Usage,
    pub cost: Option<f64>,
    pub finish_reason: Option<String>,
    /// Rate-limit information of the call (`limited`, `retry_after`,
    /// `windows`), shown to templates as `context.machine.rate_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Value>,
    /// Tools the model asked to call (a `tool_loop` turn).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl AgentResult {
    /// What templates see as `output`: the parsed output, else `{content}`,
    /// else `{}` (the reference's `output_payload`).
    pub fn payload(&self) -> Value {
        if let Some(o) = &self.output {
            return Value::Object(o.clone());
        }
        let mut m = Map::new();
        if let Some(c) = &self.content {
            m.insert("content".into(), Value::String(c.clone()));
        }
        Value::Object(m)
    }
}

/// Something that answers agent calls.
#[async_trait]
pub trait Agent: Send + Sync {
    async fn call(&self, req: AgentRequest) -> Result<AgentResult, ExecError>;
}

/// The agent used when no LLM client is configured: every call fails with a
/// clear message instead of pretending to answer.
pub struct NoLlm;

#[async_trait]
impl Agent for NoLlm {
    async fn call(&self, req: AgentRequest) -> Result<AgentResult, ExecError> {
        Err(ExecError::new(
            ErrorKind::InvalidRequest,
            format!(
                "agent '{}' in state '{}' needs an LLM client, and none is configured in this runner",
                req.agent_name, req.state
            ),
        ))
    }
}
