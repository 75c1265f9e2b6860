//! Named native actions. The engine ships `set`, `log` and `shell`; the
//! pipeline registers paper actions (`acquire_pdf`, ...) by name.

use super::error::{ErrorKind, ExecError};
use super::hooks::HookRegistry;
use super::shell::Shell;
use crate::spec::StateDef;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What an action gets besides the context.
pub struct ActionArgs<'a> {
    pub execution_id: &'a str,
    pub state_name: &'a str,
    pub state: &'a StateDef,
    /// The state's `input`, rendered with `{context, input: context}`.
    pub input: Map<String, Value>,
    /// The folder of the machine file (working directory for `shell`).
    pub machine_dir: &'a Path,
}

/// A native action. It may change the context and may return an output
/// that `output_to_context` can read as `output.*`.
#[async_trait]
pub trait Action: Send + Sync {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError>;
}

/// Actions by name, and the hooks registry custom actions resolve through.
#[derive(Clone, Default)]
pub struct ActionRegistry {
    actions: BTreeMap<String, Arc<dyn Action>>,
    /// `None` when the host was given no hooks registry: `check` then
    /// warns about custom actions instead of refusing them.
    hooks: Option<HookRegistry>,
}

impl ActionRegistry {
    /// A registry with the built-in actions every author can use.
    pub fn with_builtins() -> ActionRegistry {
        let mut r = ActionRegistry::default();
        r.register("set", Arc::new(SetAction));
        r.register("log", Arc::new(LogAction));
        r.register("shell", Arc::new(Shell::default()));
        r.register("fail", Arc::new(FailAction));
        r
    }

    pub fn register(&mut self, name: &str, action: Arc<dyn Action>) {
        self.actions.insert(name.to_string(), action);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Action>> {
        self.actions.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.actions.keys().cloned().collect()
    }

    /// Use `hooks` for the hooks machines name (`--hooks`, `[hooks]`).
    pub fn set_hooks(&mut self, hooks: HookRegistry) {
        self.hooks = Some(hooks);
    }

    /// The hooks registry, if one was given.
    pub fn hooks(&self) -> Option<&HookRegistry> {
        self.hooks.as_ref()
    }

    /// Names in the hooks registry, or `None` without one (for
    /// [`LoadOptions::hooks`](crate::spec::LoadOptions)).
    pub fn hook_names(&self) -> Option<Vec<String>> {
        self.hooks.as_ref().map(HookRegistry::names)
    }
}

/// `set`: assign every rendered `input:` value into the context.
struct SetAction;

#[async_trait]
impl Action for SetAction {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        for (k, v) in &args.input {
            ctx.insert(k.clone(), v.clone());
        }
        Ok(Some(Value::Object(args.input.clone())))
    }
}

/// `fail`: stop the state with `input.message` as an error of kind
/// `input.kind` (default `action_error`), for explicit failure states.
struct FailAction;

#[async_trait]
impl Action for FailAction {
    async fn run(
        &self,
        _ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let message = match args.input.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => format!("state '{}' failed", args.state_name),
        };
        let kind = match args.input.get("kind").and_then(Value::as_str) {
            None => ErrorKind::ActionError,
            Some(k) => ErrorKind::parse(k).ok_or_else(|| {
                ExecError::new(
                    ErrorKind::ActionError,
                    format!("fail: unknown error kind '{k}'"),
                )
            })?,
        };
        Err(ExecError::new(kind, message))
    }
}

/// `log`: write the rendered `input.message` (or the whole input) to the log
/// at `input.level` (default info).
struct LogAction;

#[async_trait]
impl Action for LogAction {
    async fn run(
        &self,
        _ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let message = match args.input.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => Value::Object(args.input.clone()).to_string(),
        };
        let level = args
            .input
            .get("level")
            .and_then(Value::as_str)
            .unwrap_or("info");
        let (id, state) = (args.execution_id, args.state_name);
        match level {
            "error" => tracing::error!(execution_id = id, state, "{message}"),
            "warn" | "warning" => tracing::warn!(execution_id = id, state, "{message}"),
            "debug" => tracing::debug!(execution_id = id, state, "{message}"),
            "info" => tracing::info!(execution_id = id, state, "{message}"),
            other => {
                return Err(ExecError::new(
                    ErrorKind::ActionError,
                    format!("log level '{other}' is not one of error, warn, info, debug"),
                ))
            }
        }
        Ok(None)
    }
}
