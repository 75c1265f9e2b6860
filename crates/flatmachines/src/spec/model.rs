//! The serde model of machine, agent, prompt and profile files after
//! loading. Everything is `Serialize + Deserialize` so the resolved bundle can
//! be stored content-addressed and resumed from the stored copy.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The error kinds the runtime routes through `on_error` (issue-defined names).
pub const ERROR_KINDS: &[&str] = &[
    "rate_limit",
    "timeout",
    "server_error",
    "invalid_request",
    "auth_error",
    "payment_required",
    "legal_block",
    "content_filter",
    "context_length",
    "model_not_found",
    "empty_response",
    "action_error",
    "child_failed",
    "template_error",
    "no_transition",
    "max_steps",
    "not_found",
    "pdf_unreadable",
    "pdf_too_large",
    "pdf_timeout",
    "response_too_large",
    "output_too_large",
    "recursion_limit",
    "internal",
    "resource_exhausted",
];

/// Every key a state may have (others are reported and ignored).
pub const STATE_KEYS: &[&str] = &[
    "type",
    "description",
    "action",
    "agent",
    "machine",
    "foreach",
    "as",
    "key",
    "mode",
    "timeout",
    "allow_failures",
    "input",
    "output_to_context",
    "output",
    "execution",
    "on_error",
    "transitions",
    "command",
    "hooks",
    "launch",
    "launch_input",
    "wait_for",
    "tool_loop",
    "session_id",
    "sampling",
    "metadata",
];

/// One state of a machine, as written in YAML.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateDef {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub description: Option<String>,
    pub action: Option<String>,
    pub agent: Option<String>,
    pub machine: Option<MachineTarget>,
    pub foreach: Option<String>,
    #[serde(rename = "as")]
    pub as_name: Option<String>,
    pub key: Option<String>,
    pub mode: Option<String>,
    /// Seconds: bounds `mode: any` and `shell` actions (converted to a
    /// `Duration` when the file is read).
    pub timeout: Option<super::limits::Seconds>,
    /// When true, failed children of a settled fan-out become
    /// `{_error, _error_type}` entries instead of failing the state.
    pub allow_failures: bool,
    pub input: Option<Map<String, Value>>,
    pub output_to_context: Option<Map<String, Value>>,
    pub output: Option<Value>,
    pub execution: Option<ExecutionDef>,
    pub on_error: Option<OnError>,
    pub transitions: Vec<Transition>,
    /// argv for the `shell` action.
    pub command: Option<Command>,
    // Keys of the 4.x format this runner does not implement; kept so the
    // validator can name them instead of failing to parse.
    pub hooks: Option<Value>,
    pub launch: Option<Value>,
    pub launch_input: Option<Value>,
    pub wait_for: Option<Value>,
    pub tool_loop: Option<Value>,
    pub session_id: Option<Value>,
    pub sampling: Option<Value>,
    pub metadata: Option<Value>,
}

impl StateDef {
    pub fn is_initial(&self) -> bool {
        self.kind.as_deref() == Some("initial")
    }
    pub fn is_final(&self) -> bool {
        self.kind.as_deref() == Some("final")
    }
}

/// `machine:` — one child name, or a list run in parallel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MachineTarget {
    One(String),
    Many(Vec<MachineItem>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MachineItem {
    Name(String),
    WithInput {
        name: String,
        #[serde(default)]
        input: Option<Map<String, Value>>,
    },
}

impl MachineItem {
    pub fn name(&self) -> &str {
        match self {
            MachineItem::Name(n) => n,
            MachineItem::WithInput { name, .. } => name,
        }
    }
    pub fn input(&self) -> Option<&Map<String, Value>> {
        match self {
            MachineItem::Name(_) => None,
            MachineItem::WithInput { input, .. } => input.as_ref(),
        }
    }
}

impl MachineTarget {
    pub fn items(&self) -> Vec<MachineItem> {
        match self {
            MachineTarget::One(n) => vec![MachineItem::Name(n.clone())],
            MachineTarget::Many(items) => items.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OnError {
    Target(String),
    ByKind(IndexMap<String, String>),
}

impl OnError {
    /// Every state this `on_error` can route to.
    pub fn targets(&self) -> Vec<&str> {
        match self {
            OnError::Target(t) => vec![t.as_str()],
            OnError::ByKind(m) => m.values().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// The guard as written; serialized as that string. It carries its own
    /// parse (filled by validation at load, or on first use for a bundle
    /// read back from the store), so running a transition never re-parses.
    #[serde(default)]
    pub condition: Option<crate::expr::CachedCondition>,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Argv(Vec<String>),
    Line(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecutionDef {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Seconds before each retry (converted when the file is read).
    pub backoffs: Option<Vec<super::limits::Seconds>>,
    pub jitter: Option<f64>,
    pub n_samples: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A prompt after loading (`spec: prompt` data).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PromptDef {
    pub system: Option<String>,
    pub user: String,
    pub instruction_suffix: Option<String>,
    /// Output schema: field name → `{type, description, ...}`.
    pub output: Option<Map<String, Value>>,
    /// Tools a `tool_loop` state offers the model: OpenAI-style
    /// `{type: function, function: {name, description, parameters}}`
    /// (the agent's or prompt's `tools:`; `{name, description, parameters}`
    /// is accepted and normalised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
}

/// An agent after loading: its prompt and its resolved model profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentDef {
    pub name: String,
    /// The file that defined it (the machine file for inline agents).
    pub file: String,
    pub prompt: PromptDef,
    /// The profile name the agent asked for (None = catalog default).
    pub profile_name: Option<String>,
    /// The resolved model config (provider, name, temperature, ...).
    pub model: Map<String, Value>,
    /// The profile named by the model config's `fallback:`, resolved, used
    /// after `legal_block` or `model_not_found`.
    #[serde(default)]
    pub fallback: Option<FallbackProfile>,
    #[serde(default)]
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FallbackProfile {
    pub name: String,
    pub model: Map<String, Value>,
}

/// One machine after loading, with children referenced by bundle index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineDef {
    pub name: String,
    /// File label used in messages (inline machines: `parent.yml#name`).
    pub file: String,
    /// Directory relative paths (e.g. `shell` working dir) resolve against.
    pub dir: String,
    pub spec_version: Option<String>,
    pub context: Map<String, Value>,
    pub agents: IndexMap<String, AgentDef>,
    pub machines: IndexMap<String, usize>,
    pub states: IndexMap<String, StateDef>,
    pub initial: String,
    pub max_steps: u64,
    #[serde(default)]
    pub persistence: Value,
    #[serde(default)]
    pub lifecycle_hooks: Value,
    #[serde(default)]
    pub metadata: Value,
}

/// A root machine and every machine it can reach.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub root: usize,
    pub machines: Vec<MachineDef>,
}

impl Bundle {
    pub fn root(&self) -> &MachineDef {
        &self.machines[self.root]
    }

    /// A bundle of one machine `name` with a single initial state `state`
    /// (benchmarks and store tests write snapshots against it).
    pub fn single_state(name: &str, state: &str) -> Bundle {
        let mut states = IndexMap::new();
        states.insert(
            state.to_string(),
            StateDef {
                kind: Some("initial".into()),
                ..StateDef::default()
            },
        );
        Bundle {
            root: 0,
            machines: vec![MachineDef {
                name: name.to_string(),
                file: name.to_string(),
                dir: ".".into(),
                spec_version: Some("4.2.1".into()),
                context: Map::new(),
                agents: IndexMap::new(),
                machines: IndexMap::new(),
                states,
                initial: state.to_string(),
                max_steps: 1000,
                persistence: Value::Null,
                lifecycle_hooks: Value::Null,
                metadata: Value::Null,
            }],
        }
    }
}

/// The machine names of a `launch:` value (a name or a list of names).
pub fn launch_names(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                other => Err(format!("`launch` lists machine names, not {other}")),
            })
            .collect(),
        other => Err(format!(
            "`launch` is a machine name or a list of names, not {other}"
        )),
    }
}
