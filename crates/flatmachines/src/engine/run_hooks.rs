//! Where an execution calls the hooks its machine names.
//!
//! Every call happens inside a state's execution (between its `state_enter`
//! and `state_exit` checkpoints) or before the `machine_start` checkpoint,
//! so hook calls are checkpointed like any state: a resumed execution
//! re-runs only the state in flight, and never repeats a hook call whose
//! state exit was recorded.
//!
//! * `action: NAME` that is no native action → the state's `hooks` (else
//!   the machine's `lifecycle_hooks`), event `action`; no handler is an
//!   `action_error` naming the hook and the action.
//! * state `hooks` → `state_enter` before the state's blocks, `state_exit`
//!   after them (only when they succeeded). A failure is the state's error
//!   and goes through its `on_error`.
//! * `lifecycle_hooks` → `machine_start` (before the start checkpoint) and
//!   `machine_end` (before the final state's exit checkpoint; it may change
//!   the output).
//! * `error` when a state fails, to the state's hooks (else the machine's),
//!   before `on_error` routing. A failing `error` hook is logged and does
//!   not replace the state's error; a state name it returns (the SDK's
//!   `on_error` result) is where the execution goes when the state has no
//!   `on_error` of its own.
//!
//! Events other than `action` for a hook without a handler are skipped with
//! a warning: SDK machines often name hooks only for logging.

use super::error::{ErrorKind, ExecError};
use super::exec::Run;
use super::hooks::{HookCall, HookEvent, HookReply};
use super::shell::state_timeout;
use crate::spec::hooks::{parse_hook_refs, HookRef};
use crate::spec::StateDef;
use serde_json::{Map, Value};
use std::path::Path;

/// Where a hook call comes from.
pub(crate) struct Site<'a> {
    pub event: HookEvent,
    pub action: Option<&'a str>,
    pub state_name: &'a str,
    /// The state whose `timeout` bounds the call (machine events: none).
    pub state: Option<&'a StateDef>,
    pub error: Option<&'a ExecError>,
}

fn refs_of(v: &Value, what: &str) -> Result<Vec<HookRef>, ExecError> {
    parse_hook_refs(v).map_err(|e| ExecError::new(ErrorKind::ActionError, format!("{what}: {e}")))
}

impl Run {
    /// The hooks a state names.
    pub(crate) fn state_hooks(&self, state: &StateDef) -> Result<Vec<HookRef>, ExecError> {
        match &state.hooks {
            Some(v) => refs_of(v, "hooks"),
            None => Ok(Vec::new()),
        }
    }

    /// The machine's `lifecycle_hooks`.
    pub(crate) fn lifecycle_hooks(&self) -> Result<Vec<HookRef>, ExecError> {
        refs_of(&self.def().lifecycle_hooks, "lifecycle_hooks")
    }

    /// The hooks a custom action of `state` resolves through: the state's
    /// own, else the machine's.
    pub(crate) fn action_hooks(&self, state: &StateDef) -> Result<Vec<HookRef>, ExecError> {
        let own = self.state_hooks(state)?;
        if own.is_empty() {
            self.lifecycle_hooks()
        } else {
            Ok(own)
        }
    }

    /// Call `refs` in order, each seeing the previous one's changes. Their
    /// objects are merged into the context, or into `output` for
    /// `machine_end`. Returns everything merged (an action's output).
    pub(crate) async fn call_hooks(
        &mut self,
        refs: &[HookRef],
        site: &Site<'_>,
        mut output: Option<&mut Value>,
    ) -> Result<Map<String, Value>, ExecError> {
        let shared = self.shared.clone();
        let dir = Path::new(&shared.bundle.machines[self.m].dir);
        let event = site.event;
        let mut merged = Map::new();
        let mut recovery = None;
        for r in refs {
            let name = r.name.as_str();
            let Some(hook) = shared.actions.hooks().and_then(|h| h.get(name)) else {
                if event == HookEvent::Action {
                    let action = site.action.unwrap_or_default();
                    return Err(ExecError::new(
                        ErrorKind::ActionError,
                        format!(
                            "action '{action}' is implemented by hook '{name}', which has no handler \
                             (give one with `--hooks {name}=cmd:PATH`, or `{name} = \"cmd:PATH\"` under [hooks] in config.toml)"
                        ),
                    ));
                }
                tracing::warn!(hook = name, hook_event = %event, "hook has no handler; event not delivered");
                continue;
            };
            let out_now = output.as_deref().cloned();
            let call = HookCall {
                event,
                action: site.action,
                state: site.state_name,
                context: &self.ctx,
                output: out_now.as_ref(),
                error: site.error,
                args: r.args.as_ref(),
                execution_id: &self.id,
                machine_dir: dir,
                timeout: state_timeout(site.state),
            };
            tracing::debug!(hook = name, hook_event = %event, "calling hook");
            let reply = hook.call(&call).await.map_err(|e| {
                let what = match site.action {
                    Some(a) => format!("hook '{name}' (action '{a}')"),
                    None => format!("hook '{name}' ({event})"),
                };
                ExecError {
                    message: format!("{what}: {}", e.message),
                    ..e
                }
            })?;
            let HookReply {
                set,
                unset,
                output: new_output,
                next_state,
                replace_output,
            } = reply;
            match (event, output.as_deref_mut()) {
                (HookEvent::MachineEnd, Some(out)) if replace_output => {
                    if let Some(v) = new_output {
                        *out = v;
                    }
                    self.apply_patch(&set, &unset);
                }
                (HookEvent::MachineEnd, Some(Value::Object(out))) => {
                    out.extend(set.clone());
                }
                (HookEvent::MachineEnd, _) => {}
                _ => self.apply_patch(&set, &unset),
            }
            if recovery.is_none() {
                recovery = next_state;
            }
            merged.extend(set);
        }
        self.hook_recovery = recovery;
        Ok(merged)
    }

    /// Set and remove context keys as a hook asked.
    fn apply_patch(&mut self, set: &Map<String, Value>, unset: &[String]) {
        for k in unset {
            // `machine` is the runtime's, rebuilt every step.
            if k != "machine" {
                self.ctx.remove(k);
            }
        }
        self.ctx
            .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// The state's blocks between its `state_enter` and `state_exit` hooks.
    pub(crate) async fn run_state_hooked(
        &mut self,
        name: &str,
        state: &StateDef,
    ) -> Result<Value, ExecError> {
        let refs = self.state_hooks(state)?;
        if refs.is_empty() {
            return self.run_state(name, state).await;
        }
        let mut site = Site {
            event: HookEvent::StateEnter,
            action: None,
            state_name: name,
            state: Some(state),
            error: None,
        };
        self.call_hooks(&refs, &site, None).await?;
        let mut out = self.run_state(name, state).await?;
        site.event = HookEvent::StateExit;
        // The handler sees the output; its object changes the context.
        self.call_hooks(&refs, &site, Some(&mut out)).await?;
        Ok(out)
    }

    /// `machine_start`, before the start checkpoint.
    pub(crate) async fn machine_start_hooks(&mut self, initial: &str) -> Result<(), ExecError> {
        let refs = self.lifecycle_hooks()?;
        let site = Site {
            event: HookEvent::MachineStart,
            action: None,
            state_name: initial,
            state: None,
            error: None,
        };
        self.call_hooks(&refs, &site, None).await.map(drop)
    }

    /// `machine_end`: may change the final output.
    pub(crate) async fn machine_end_hooks(
        &mut self,
        last: &str,
        output: &mut Value,
    ) -> Result<(), ExecError> {
        let refs = self.lifecycle_hooks()?;
        let site = Site {
            event: HookEvent::MachineEnd,
            action: None,
            state_name: last,
            state: None,
            error: None,
        };
        self.call_hooks(&refs, &site, Some(output)).await.map(drop)
    }

    /// `error` for a failed state, to the hooks its actions resolve through
    /// (the state's, else the machine's). Returns the state a hook asked to
    /// recover to (the SDK's `on_error` result), if any; a failing `error`
    /// hook is logged and does not replace the state's error.
    pub(crate) async fn error_hooks(&mut self, name: &str, e: &ExecError) -> Option<String> {
        let state = self.def().states.get(name).cloned();
        let refs = match state.as_ref().map(|s| self.action_hooks(s)) {
            Some(Ok(r)) if !r.is_empty() => r,
            _ => return None,
        };
        let site = Site {
            event: HookEvent::Error,
            action: None,
            state_name: name,
            state: state.as_ref(),
            error: Some(e),
        };
        match self.call_hooks(&refs, &site, None).await {
            Ok(_) => self.hook_recovery.take(),
            Err(he) => {
                tracing::warn!(kind = %he.kind, error = %he.message, "error hook failed");
                None
            }
        }
    }
}
