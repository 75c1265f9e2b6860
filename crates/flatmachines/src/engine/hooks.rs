//! The hooks registry: handlers for the hooks a machine names (`hooks:` on
//! a state, `lifecycle_hooks:` on the machine), so SDK machines whose custom
//! `action:` names are implemented by the user's hooks run without Rust.
//!
//! A registry maps a hook name to a handler, written `NAME=KIND:…`
//! (`--hooks v2-hooks=cmd:./hooks/run.sh`, or `v2-hooks = "cmd:…"` under
//! `[hooks]` in the runner's config). Kinds:
//!
//! * `cmd:PATH` — a [`CommandHook`]: the program is started once per event
//!   and follows the `shell` action's conventions (see [`super::shell`]):
//!   the event as JSON on stdin, a JSON object (or nothing) on stdout, its
//!   own process group, the state's `timeout` (default
//!   [`DEFAULT_SHELL_TIMEOUT`](super::shell::DEFAULT_SHELL_TIMEOUT)), the
//!   `shell.max_output_bytes` cap, and a non-zero exit as an `action_error`.
//! * `python:PATH:Class` — a [`PythonHook`](super::python_hook::PythonHook):
//!   the user's SDK-style hooks class served by one long-lived Python
//!   process (see [`super::python_hook`]).
//!
//! # The event a handler receives
//!
//! ```json
//! {"event": "action", "action": "fetch", "state": "s", "context": {...},
//!  "execution_id": "...", "args": {...}?, "output": ...?, "error": {...}?}
//! ```
//!
//! `event` is one of `action`, `state_enter`, `state_exit`, `machine_start`,
//! `machine_end`, `error`, `tool`. The object the handler prints is merged
//! into the context (keys it leaves out keep their values; print nothing to
//! change nothing) — except for `machine_end`, where it is merged into the
//! final output, as the SDK's `on_machine_end` returns the result, and for
//! `tool` (a `tool_loop` tool call, `"tool": {name, id, arguments}` in the
//! event), where it is the tool's result `{"content", "is_error"}`.

use super::error::{ErrorKind, ExecError};
use super::python_hook::{PythonConfig, PythonHook};
use super::shell::{run_process, stdout_object, Process, ShellConfig};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a hook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    Action,
    StateEnter,
    StateExit,
    MachineStart,
    MachineEnd,
    Error,
    /// A `tool_loop` tool call.
    Tool,
    /// The tool calls a `tool_loop` model turn asked for (SDK
    /// `on_tool_calls`), in `output`.
    ToolCalls,
    /// One tool's result (SDK `on_tool_result`), in `output`.
    ToolResult,
}

impl HookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Action => "action",
            HookEvent::StateEnter => "state_enter",
            HookEvent::StateExit => "state_exit",
            HookEvent::MachineStart => "machine_start",
            HookEvent::MachineEnd => "machine_end",
            HookEvent::Error => "error",
            HookEvent::Tool => "tool",
            HookEvent::ToolCalls => "tool_calls",
            HookEvent::ToolResult => "tool_result",
        }
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call of a hook.
pub struct HookCall<'a> {
    pub event: HookEvent,
    /// The action name, for [`HookEvent::Action`].
    pub action: Option<&'a str>,
    /// The state the event belongs to (for machine events: the initial
    /// state at start, the final state at the end).
    pub state: &'a str,
    pub context: &'a Map<String, Value>,
    /// The state's output (`state_exit`) or the final output (`machine_end`).
    pub output: Option<&'a Value>,
    /// The failure, for [`HookEvent::Error`].
    pub error: Option<&'a ExecError>,
    /// The `args` of a `{name, args}` hook reference.
    pub args: Option<&'a Map<String, Value>>,
    pub execution_id: &'a str,
    /// The machine file's folder: the handler's working directory.
    pub machine_dir: &'a Path,
    pub timeout: Duration,
}

impl HookCall<'_> {
    /// The JSON a handler receives.
    pub fn payload(&self) -> Value {
        let mut m = Map::new();
        m.insert("event".into(), json!(self.event.as_str()));
        if let Some(a) = self.action {
            m.insert("action".into(), json!(a));
        }
        m.insert("state".into(), json!(self.state));
        m.insert("context".into(), Value::Object(self.context.clone()));
        if let Some(o) = self.output {
            m.insert("output".into(), o.clone());
        }
        if let Some(e) = self.error {
            m.insert(
                "error".into(),
                json!({"kind": e.kind.as_str(), "message": e.message}),
            );
        }
        if let Some(a) = self.args {
            m.insert("args".into(), Value::Object(a.clone()));
        }
        m.insert("execution_id".into(), json!(self.execution_id));
        Value::Object(m)
    }
}

/// What a hook call changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookReply {
    /// Keys to set in the context (for `machine_end` of a command hook:
    /// in the output).
    pub set: Map<String, Value>,
    /// Keys to remove from the context.
    pub unset: Vec<String>,
    /// The new final output (`machine_end`), when `replace_output`.
    pub output: Option<Value>,
    /// `error`: the state to recover to (the SDK's `on_error` result).
    pub next_state: Option<String>,
    /// `output` replaces the final output (the SDK's `on_machine_end`)
    /// instead of `set` being merged into it.
    pub replace_output: bool,
}

impl From<Map<String, Value>> for HookReply {
    fn from(set: Map<String, Value>) -> HookReply {
        HookReply {
            set,
            ..HookReply::default()
        }
    }
}

/// A hook handler (see the module docs for what a reply changes).
#[async_trait]
pub trait Hook: Send + Sync {
    async fn call(&self, call: &HookCall<'_>) -> Result<HookReply, ExecError>;

    /// Run tool `name` of a `tool_loop` state: `(content, is_error)`.
    async fn tool(
        &self,
        call: &HookCall<'_>,
        name: &str,
        id: &str,
        arguments: &Value,
    ) -> Result<(String, bool), ExecError> {
        let _ = (call, id, arguments);
        Err(ExecError::new(
            ErrorKind::ActionError,
            format!("this hook handler cannot run tools (tool '{name}')"),
        ))
    }

    /// Tool definitions the handler provides for a `tool_loop` state (in
    /// addition to the agent's); none by default.
    async fn tool_definitions(&self, call: &HookCall<'_>) -> Result<Vec<Value>, ExecError> {
        let _ = call;
        Ok(Vec::new())
    }
}

/// How a hook name is implemented, as written after `NAME=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerSpec {
    /// `cmd:PATH` (the path made absolute against the writer's base).
    Command(PathBuf),
    /// `python:PATH:Class`: a class served by the Python bridge.
    Python { path: PathBuf, class: String },
}

impl HandlerSpec {
    /// Parse `cmd:PATH` or `python:PATH:Class`; relative paths resolve
    /// against `base` (the working directory for `--hooks`, the config
    /// file's folder for `[hooks]`).
    pub fn parse(s: &str, base: &Path) -> Result<HandlerSpec, HookSpecError> {
        let syntax = |why: &str| {
            HookSpecError::Syntax(format!(
                "handler {s:?}: {why} (expected cmd:PATH or python:PATH:Class)"
            ))
        };
        let abs = |p: &str| {
            let p = Path::new(p);
            if p.is_relative() {
                base.join(p)
            } else {
                p.to_path_buf()
            }
        };
        if let Some(path) = s.strip_prefix("cmd:") {
            if path.trim().is_empty() {
                return Err(syntax("the command path is empty"));
            }
            return Ok(HandlerSpec::Command(abs(path)));
        }
        if let Some(rest) = s.strip_prefix("python:") {
            let (path, class) = rest
                .rsplit_once(':')
                .filter(|(p, c)| !p.is_empty() && !c.is_empty())
                .ok_or_else(|| syntax("a python handler names a file and a class"))?;
            return Ok(HandlerSpec::Python {
                path: abs(path),
                class: class.to_string(),
            });
        }
        Err(syntax("unknown handler kind"))
    }
}

impl fmt::Display for HandlerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerSpec::Command(p) => write!(f, "cmd:{}", p.display()),
            HandlerSpec::Python { path, class } => {
                write!(f, "python:{}:{class}", path.display())
            }
        }
    }
}

/// Split `NAME=HANDLER` (the `--hooks` form) and parse the handler.
pub fn parse_binding(s: &str, base: &Path) -> Result<(String, HandlerSpec), HookSpecError> {
    let (name, handler) = s
        .split_once('=')
        .filter(|(n, _)| !n.trim().is_empty())
        .ok_or_else(|| {
            HookSpecError::Syntax(format!(
                "{s:?} is not NAME=HANDLER (e.g. v2-hooks=cmd:./hooks/run.sh)"
            ))
        })?;
    Ok((name.trim().to_string(), HandlerSpec::parse(handler, base)?))
}

/// A handler spec that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookSpecError {
    #[error("{0}")]
    Syntax(String),
    #[error("hook '{name}': {kind} handlers are not supported yet (use a cmd: handler)")]
    Unsupported { name: String, kind: &'static str },
    #[error("hook '{0}' is given more than one handler")]
    Duplicate(String),
}

/// Hook handlers by name.
#[derive(Clone, Default)]
pub struct HookRegistry {
    hooks: BTreeMap<String, Arc<dyn Hook>>,
}

impl HookRegistry {
    /// A registry of the given handlers; command hooks read at most
    /// `shell.max_output_bytes` of output; Python hooks run under `python`.
    /// No process starts here: a bridge starts at its first call.
    pub fn build(
        specs: &[(String, HandlerSpec)],
        shell: &ShellConfig,
        python: &PythonConfig,
    ) -> Result<HookRegistry, HookSpecError> {
        let mut r = HookRegistry::default();
        for (name, spec) in specs {
            if r.hooks.contains_key(name) {
                return Err(HookSpecError::Duplicate(name.clone()));
            }
            let hook: Arc<dyn Hook> = match spec {
                HandlerSpec::Command(path) => Arc::new(CommandHook {
                    program: path.clone(),
                    max_output_bytes: shell.max_output_bytes,
                }),
                HandlerSpec::Python { path, class } => Arc::new(PythonHook::new(
                    name,
                    path.clone(),
                    class.clone(),
                    python.clone(),
                )),
            };
            r.hooks.insert(name.clone(), hook);
        }
        Ok(r)
    }

    pub fn register(&mut self, name: &str, hook: Arc<dyn Hook>) {
        self.hooks.insert(name.to_string(), hook);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Hook>> {
        self.hooks.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.hooks.keys().cloned().collect()
    }
}

/// A `cmd:` handler: one process per event.
pub struct CommandHook {
    program: PathBuf,
    max_output_bytes: u64,
}

impl CommandHook {
    async fn exchange(
        &self,
        call: &HookCall<'_>,
        payload: Value,
    ) -> Result<Map<String, Value>, ExecError> {
        let name = self.program.display().to_string();
        let stdin = serde_json::to_vec(&payload).map_err(|e| {
            ExecError::new(
                ErrorKind::ActionError,
                format!("cannot serialise the hook event: {e}"),
            )
        })?;
        let argv = [name.clone()];
        let process = Process {
            argv: &argv,
            env: &[],
            dir: call.machine_dir,
            execution_id: call.execution_id,
            state_name: call.state,
        };
        let out = run_process(&process, stdin, call.timeout, self.max_output_bytes).await?;
        stdout_object(&name, &out)
    }
}

#[async_trait]
impl Hook for CommandHook {
    async fn call(&self, call: &HookCall<'_>) -> Result<HookReply, ExecError> {
        self.exchange(call, call.payload())
            .await
            .map(HookReply::from)
    }

    async fn tool(
        &self,
        call: &HookCall<'_>,
        name: &str,
        id: &str,
        arguments: &Value,
    ) -> Result<(String, bool), ExecError> {
        let mut payload = call.payload();
        if let Value::Object(m) = &mut payload {
            m.insert("event".into(), json!("tool"));
            m.insert(
                "tool".into(),
                json!({"name": name, "id": id, "arguments": arguments}),
            );
        }
        let out = self.exchange(call, payload).await?;
        let content = match out.get("content") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(v) => v.to_string(),
        };
        let is_error = out
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((content, is_error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    async fn call_with(
        program: PathBuf,
        dir: &Path,
        cap: u64,
        timeout: Duration,
    ) -> Result<Map<String, Value>, ExecError> {
        let hook = CommandHook {
            program,
            max_output_bytes: cap,
        };
        let ctx = json!({"n": 1}).as_object().cloned().unwrap();
        let call = HookCall {
            event: HookEvent::Action,
            action: Some("go"),
            state: "s",
            context: &ctx,
            output: None,
            error: None,
            args: None,
            execution_id: "e1",
            machine_dir: dir,
            timeout,
        };
        hook.call(&call).await.map(|r| r.set)
    }

    /// The shell action's bounds apply: the payload on stdin, the working
    /// directory, a timeout, an output cap, a non-zero exit, non-JSON output.
    #[tokio::test]
    async fn command_hooks_share_the_shell_actions_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let long = Duration::from_secs(30);
        // Every script is written before any runs: a write descriptor
        // inherited by a process forked meanwhile would make exec fail
        // with ETXTBSY.
        let echo = script(
            d,
            "echo.sh",
            "#!/bin/sh\ncat > seen.json\necho \"{\\\"state\\\": \\\"$FLATMACHINE_STATE\\\"}\"\n",
        );
        let slow = script(d, "slow.sh", "#!/bin/sh\nsleep 100\n");
        let noisy = script(d, "noisy.sh", "#!/bin/sh\nyes\n");
        let failing = script(d, "fail.sh", "#!/bin/sh\necho nope >&2\nexit 4\n");
        let list = script(d, "list.sh", "#!/bin/sh\necho '[1]'\n");
        let quiet = script(d, "quiet.sh", "#!/bin/sh\ntrue\n");

        let out = call_with(echo, d, 4096, long).await.unwrap();
        assert_eq!(out["state"], json!("s"));
        let seen: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("seen.json")).unwrap()).unwrap();
        assert_eq!(seen["event"], json!("action"));
        assert_eq!(seen["action"], json!("go"));
        assert_eq!(seen["context"]["n"], json!(1));
        assert_eq!(seen["execution_id"], json!("e1"));

        let e = call_with(slow, d, 4096, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ActionError);
        assert!(e.message.contains("timed out"), "{e}");

        let e = call_with(noisy, d, 4096, long).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutputTooLarge, "{e}");

        let e = call_with(failing, d, 4096, long).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ActionError);
        assert!(
            e.message.contains("exit code 4") && e.message.contains("nope"),
            "{e}"
        );

        let e = call_with(list, d, 4096, long).await.unwrap_err();
        assert!(e.message.contains("not an object"), "{e}");

        // Printing nothing changes nothing.
        assert!(call_with(quiet, d, 4096, long).await.unwrap().is_empty());
    }

    #[test]
    fn handler_specs_parse() {
        let base = Path::new("/cfg");
        assert_eq!(
            parse_binding("h=cmd:./run.sh", base).unwrap(),
            ("h".into(), HandlerSpec::Command("/cfg/./run.sh".into()))
        );
        assert_eq!(
            HandlerSpec::parse("cmd:/abs/x", base).unwrap(),
            HandlerSpec::Command("/abs/x".into())
        );
        let py = HandlerSpec::parse("python:hooks.py:V2Hooks", base).unwrap();
        assert_eq!(
            py,
            HandlerSpec::Python {
                path: "/cfg/hooks.py".into(),
                class: "V2Hooks".into()
            }
        );
        let r = HookRegistry::build(
            &[("v2".into(), py)],
            &ShellConfig::default(),
            &PythonConfig::default(),
        )
        .unwrap();
        assert_eq!(r.names(), ["v2"]);
        for bad in ["h", "=cmd:x", "h=cmd:", "h=exec:x", "h=python:x.py"] {
            assert!(parse_binding(bad, base).is_err(), "{bad}");
        }
        let dup = [
            ("h".to_string(), HandlerSpec::Command("/a".into())),
            ("h".to_string(), HandlerSpec::Command("/b".into())),
        ];
        assert!(matches!(
            HookRegistry::build(&dup, &ShellConfig::default(), &PythonConfig::default()),
            Err(HookSpecError::Duplicate(_))
        ));
    }
}
