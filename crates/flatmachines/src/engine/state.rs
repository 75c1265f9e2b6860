//! What one state does: `action` → `machine`/`foreach` → `agent` → final
//! `output`, then `output_to_context` with the output of the last of those
//! that ran.

use super::action::ActionArgs;
use super::error::{ErrorKind, ExecError};
use super::exec::Run;
use crate::expr::{TemplateError, Templates, Vars};
use crate::spec::StateDef;
use serde_json::{Map, Value};
use std::path::Path;

/// A template failure as the engine reports it: `output_too_large` when
/// the result was over [`MAX_TEMPLATE_OUTPUT`](crate::expr::template::MAX_TEMPLATE_OUTPUT),
/// `template_error` otherwise (including running out of fuel).
pub(crate) fn template_err(what: &str, e: TemplateError) -> ExecError {
    let kind = if e.is_too_large() {
        ErrorKind::OutputTooLarge
    } else {
        ErrorKind::TemplateError
    };
    ExecError::new(kind, format!("{what}: {e}"))
}

impl Run {
    /// Variables for state templates: `context`, and `input` as an alias of
    /// it (the reference's scoping).
    pub(crate) fn state_vars(&self) -> Vars {
        Vars::from_pairs([
            ("context", Value::Object(self.ctx.clone())),
            ("input", Value::Object(self.ctx.clone())),
        ])
    }

    pub(crate) fn render_input(&self, state: &StateDef) -> Result<Map<String, Value>, ExecError> {
        match &state.input {
            None => Ok(Map::new()),
            Some(i) => {
                Templates::render_map(i, &self.state_vars()).map_err(|e| template_err("input", e))
            }
        }
    }

    /// Execute the blocks of `state` in order; returns the state's output.
    pub(crate) async fn run_state(
        &mut self,
        name: &str,
        state: &StateDef,
    ) -> Result<Value, ExecError> {
        let mut output: Option<Value> = None;
        if state.wait_for.is_some() {
            let data = self.run_wait(state).await?;
            output = Some(super::signals::signal_output(data));
        }
        if let Some(action) = &state.action {
            output = self.run_action(name, action, state).await?.or(output);
        }
        if state.launch.is_some() {
            self.plan_launches(name, state)?;
        }
        if state.machine.is_some() {
            output = Some(self.run_children(name, state).await?);
        }
        if let Some(agent) = &state.agent {
            // Limits may be templates (as in the SDK): rendered first.
            let spec = match &state.tool_loop {
                Some(v @ Value::Object(_)) => Some(
                    Templates::render(v, &self.state_vars())
                        .map_err(|e| template_err("tool_loop", e))?,
                ),
                other => other.clone(),
            };
            let looped = crate::spec::tool_loop::LoopConfig::parse(spec.as_ref())
                .map_err(|e| ExecError::new(ErrorKind::TemplateError, e))?;
            output = Some(match looped {
                Some(cfg) => self.run_tool_loop(name, agent, state, cfg).await?,
                None => self.run_agent(name, agent, state).await?,
            });
        }
        if let Some(map) = &state.output_to_context {
            self.apply_output_to_context(map, output.as_ref())?;
        }
        if state.is_final() {
            if let Some(spec) = &state.output {
                let vars = Vars::from_pairs([("context", Value::Object(self.ctx.clone()))]);
                return Templates::render(spec, &vars).map_err(|e| template_err("output", e));
            }
        }
        Ok(output.unwrap_or_else(|| Value::Object(Map::new())))
    }

    async fn run_action(
        &mut self,
        name: &str,
        action: &str,
        state: &StateDef,
    ) -> Result<Option<Value>, ExecError> {
        // As in the SDK, a state's own hooks implement its action when the
        // host has a handler for one of them, even over a native action of
        // the same name (`extract_text` of an SDK machine is the user's);
        // otherwise a native action runs, and failing that the hooks the
        // state (or machine) names.
        let own = self.state_hooks(state)?;
        let own_handled = self
            .shared
            .actions
            .hooks()
            .is_some_and(|h| own.iter().any(|r| h.get(&r.name).is_some()));
        let native = if own_handled {
            None
        } else {
            self.shared.actions.get(action).cloned()
        };
        let Some(handler) = native else {
            let refs = if own.is_empty() {
                self.action_hooks(state)?
            } else {
                own
            };
            if refs.is_empty() {
                return Err(ExecError::new(
                    ErrorKind::ActionError,
                    format!("unknown action '{action}'"),
                ));
            }
            let site = super::run_hooks::Site {
                event: super::hooks::HookEvent::Action,
                action: Some(action),
                state_name: name,
                state: Some(state),
                error: None,
            };
            tracing::debug!(event = "action", action, "running hook action");
            let merged = self.call_hooks(&refs, &site, None).await?;
            return Ok(Some(Value::Object(merged)));
        };
        let input = self.render_input(state)?;
        let shared = self.shared.clone();
        let def = &shared.bundle.machines[self.m];
        let args = ActionArgs {
            execution_id: &self.id,
            state_name: name,
            state,
            input,
            machine_dir: Path::new(&def.dir),
        };
        tracing::debug!(event = "action", action, "running action");
        handler.run(&mut self.ctx, &args).await
    }

    /// `ctx[k] = render(v)` in order; later keys see earlier assignments,
    /// as in the reference.
    fn apply_output_to_context(
        &mut self,
        map: &Map<String, Value>,
        output: Option<&Value>,
    ) -> Result<(), ExecError> {
        let output = output.cloned().unwrap_or_else(|| Value::Object(Map::new()));
        for (k, v) in map {
            let vars = Vars::from_pairs([
                ("context", Value::Object(self.ctx.clone())),
                ("input", Value::Object(self.ctx.clone())),
                ("output", output.clone()),
            ]);
            let value = Templates::render(v, &vars)
                .map_err(|e| template_err(&format!("output_to_context.{k}"), e))?;
            self.ctx.insert(k.clone(), value);
        }
        Ok(())
    }
}
