//! `launch` / `launch_input`: start child machines without waiting for them
//! (the SDK's fire-and-forget launch), durably.
//!
//! The state records one *launch intent* per machine in the context under
//! [`LAUNCHES_KEY`] (`{id, machine, input}`, with the deterministic id
//! `parent/state@step/launch:NAME`), so the intent is written by the same
//! checkpoint — the same transaction — as the state's exit. Only after that
//! checkpoint is committed are the children started, on tasks the
//! execution owns. A crash before the exit checkpoint re-runs the state (no
//! intent was recorded, nothing was started); a crash after it finds the
//! intents in the resumed context and starts (or re-attaches to) every
//! child that has not finished: each child runs under its deterministic
//! id, so it is neither lost nor started twice.
//!
//! As in the SDK, an execution does not end before the children it
//! launched have ended (their results and failures are only logged: the
//! parent's output does not depend on them).

use super::error::{ErrorKind, ExecError};
use super::exec::{execute, Lineage, Run, Start};
use super::state::template_err;
use crate::expr::Templates;
use crate::spec::StateDef;
use serde_json::{json, Map, Value};
use tracing::Instrument;

/// The context key holding the launch intents of an execution.
pub const LAUNCHES_KEY: &str = "_launches";

pub use crate::spec::model::launch_names;

impl Run {
    /// Record the launch intents of `state` in the context.
    pub(crate) fn plan_launches(&mut self, name: &str, state: &StateDef) -> Result<(), ExecError> {
        let Some(spec) = &state.launch else {
            return Ok(());
        };
        let names = launch_names(spec).map_err(|e| ExecError::new(ErrorKind::ActionError, e))?;
        let input = match &state.launch_input {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => Templates::render_map(m, &self.state_vars())
                .map_err(|e| template_err("launch_input", e))?,
            Some(other) => {
                return Err(ExecError::new(
                    ErrorKind::TemplateError,
                    format!("launch_input must be a mapping, not {other}"),
                ))
            }
        };
        for n in &names {
            if !self.def().machines.contains_key(n) {
                return Err(ExecError::new(
                    ErrorKind::ChildFailed,
                    format!("unknown machine '{n}'"),
                ));
            }
        }
        // The limits apply to launched children as to any others.
        self.admit(name, names.len())?;
        let mut intents = match self.ctx.remove(LAUNCHES_KEY) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        for (i, n) in names.iter().enumerate() {
            let label = if names[..i].contains(n) {
                format!("launch:{n}#{i}")
            } else {
                format!("launch:{n}")
            };
            let id = format!("{}/{}@{}/{}", self.id, name, self.step, label);
            // A re-run of the state at the same step records nothing twice.
            if intents.iter().any(|x| x.get("id") == Some(&json!(id))) {
                continue;
            }
            intents.push(json!({"id": id, "machine": n, "input": input}));
        }
        self.ctx.insert(LAUNCHES_KEY.into(), Value::Array(intents));
        Ok(())
    }

    /// Start every recorded launch not started yet by this run (after the
    /// checkpoint that holds the intents, or when resuming).
    pub(crate) fn start_launches(&mut self) {
        let Some(Value::Array(intents)) = self.ctx.get(LAUNCHES_KEY) else {
            return;
        };
        let intents = intents.clone();
        for intent in intents {
            let (Some(id), Some(machine)) = (
                intent.get("id").and_then(Value::as_str),
                intent.get("machine").and_then(Value::as_str),
            ) else {
                continue;
            };
            if !self.started.insert(id.to_string()) {
                continue;
            }
            let Some(&m) = self.def().machines.get(machine) else {
                tracing::warn!(
                    child = id,
                    machine,
                    "launched machine is not in this bundle"
                );
                continue;
            };
            let input = match intent.get("input") {
                Some(Value::Object(i)) => i.clone(),
                _ => Map::new(),
            };
            let shared = self.shared.clone();
            let lineage = Lineage {
                depth: self.lineage.depth + 1,
                children: self.lineage.children.clone(),
            };
            let (id, parent) = (id.to_string(), self.id.clone());
            let fut = async move {
                let start = match shared.checkpoints.latest(&id).await {
                    Ok(None) => Start::Fresh(input),
                    Ok(Some(s)) if s.event.is_terminal() => {
                        tracing::debug!(child = %id, "launched child already ended");
                        return;
                    }
                    Ok(Some(s)) => {
                        tracing::info!(child = %id, event = s.event.as_str(), "re-attaching to launched child");
                        Start::From(Box::new(s))
                    }
                    Err(e) => {
                        tracing::warn!(child = %id, error = %e.message, "cannot read launched child");
                        return;
                    }
                };
                tracing::info!(child = %id, "launched child started");
                let f = execute(shared, m, id.clone(), Some(parent), lineage, start).await;
                match f.result {
                    Ok(_) => tracing::info!(child = %id, "launched child finished"),
                    Err(e) => {
                        tracing::warn!(child = %id, kind = %e.kind, error = %e.message, "launched child failed")
                    }
                }
            }
            .in_current_span();
            self.launched.spawn(fut);
        }
    }

    /// Wait for the children this execution launched (the SDK's "peer
    /// equality": an execution ends after its launched children).
    pub(crate) async fn join_launches(&mut self) {
        while let Some(r) = self.launched.join_next().await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "launched child task ended abnormally");
            }
        }
    }
}
