//! `tool_loop`: an agent state in which the model calls tools in a loop.
//!
//! The tools are the agent's (or its prompt's) `tools:`, OpenAI function
//! definitions; they are run by the hooks the state names (else the
//! machine's): a command handler gets the event `tool` with
//! `"tool": {name, id, arguments}` and prints `{"content", "is_error"}`; a
//! Python hooks class serves them through `get_tool_provider(state)`'s
//! `execute_tool(name, id, arguments)`, as in the SDK.
//!
//! Each turn: one model call with the tools and the conversation so far
//! (its own call key, `…/s{turn}/a1`, so the spend ledger records it and a
//! resumed run reuses the settled answer); no tool call in the answer ends
//! the loop; otherwise each call runs (denied or not allowed tools answer
//! "not allowed", a failing tool answers its error to the model) and its
//! result is appended. After every tool result the progress (the
//! conversation and counters, in the context under [`PROGRESS_KEY`]) is
//! checkpointed as the state's `state_enter`, so a resumed execution
//! continues the loop where it was instead of running its tools again.
//!
//! Limits (`tool_loop: {max_turns, max_tool_calls, allowed_tools,
//! denied_tools, tool_timeout, total_timeout, max_cost}`): unlike the
//! Python SDK, where 0 (unlimited) is the default, turns default to
//! [`DEFAULT_MAX_TURNS`] and tool calls to [`DEFAULT_MAX_TOOL_CALLS`] (the
//! SDK's JavaScript defaults), and a tool call is bounded by `tool_timeout`,
//! else the state's `timeout`, else the shell default. A loop stopped by a
//! limit before the model answered gets one more call without tools.
//!
//! Output: `{content, _tool_calls_count, _tool_loop_turns, _tool_loop_cost,
//! _tool_loop_stop}` (`complete`, `max_turns`, `max_tool_calls`, `timeout`,
//! `cost_limit`); the context gets `_tool_calls_count`, `_tool_loop_turns`,
//! `_tool_loop_cost`, `_tool_loop_content`, `_tool_loop_usage`, and
//! `_tool_loop_stop` when a limit stopped the loop, as in the SDK.

use super::agent::{AgentRequest, AgentResult, ToolTurn};
use super::agent_call::render_prompts;
use super::checkpoint::Event;
use super::error::{ErrorKind, ExecError};
use super::exec::Run;
use super::hooks::{HookCall, HookEvent};
use super::shell::state_timeout;
use crate::spec::StateDef;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The context key of a loop in progress.
pub const PROGRESS_KEY: &str = "_tool_loop";
/// The context key of the last finished loop's conversation (with
/// `_tool_loop_chain_state` and `_tool_loop_chain_agent`, as the SDK keeps
/// them).
pub const CHAIN_KEY: &str = "_tool_loop_chain";
pub use crate::spec::tool_loop::{
    LoopConfig, DEFAULT_MAX_TOOL_CALLS, DEFAULT_MAX_TURNS, MAX_LOOP_COUNT,
};

/// A loop's progress, as kept in the context between checkpoints.
struct Progress {
    messages: Vec<Value>,
    turns: u64,
    calls: u64,
    cost: f64,
    content: Option<String>,
}

impl Progress {
    fn to_value(&self, state: &str, step: u64) -> Value {
        json!({
            "state": state, "step": step, "messages": self.messages,
            "turns": self.turns, "calls": self.calls, "cost": self.cost,
            "content": self.content,
        })
    }

    fn from_value(v: &Value, state: &str, step: u64) -> Option<Progress> {
        if v.get("state")?.as_str()? != state || v.get("step")?.as_u64()? != step {
            return None;
        }
        Some(Progress {
            messages: v.get("messages")?.as_array()?.clone(),
            turns: v.get("turns")?.as_u64()?,
            calls: v.get("calls")?.as_u64()?,
            cost: v.get("cost")?.as_f64().unwrap_or(0.0),
            content: v.get("content").and_then(Value::as_str).map(str::to_string),
        })
    }
}

fn assistant_message(r: &AgentResult) -> Value {
    let mut m = json!({"role": "assistant", "content": r.content.clone().unwrap_or_default()});
    if !r.tool_calls.is_empty() {
        m["tool_calls"] = Value::Array(
            r.tool_calls
                .iter()
                .map(|c| {
                    let args = match &c.arguments {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": args}})
                })
                .collect(),
        );
    }
    m
}

/// A hook that runs tools, with the `args` of its reference.
type ToolHandler = (Arc<dyn super::hooks::Hook>, Option<Map<String, Value>>);

/// Text sent to the model when the loop stopped before it answered.
const FINAL_PASS: &str =
    "No more tool calls can be made. Give your final answer now from what the tools returned.";

impl Run {
    pub(crate) async fn run_tool_loop(
        &mut self,
        name: &str,
        agent_name: &str,
        state: &StateDef,
        cfg: LoopConfig,
    ) -> Result<Value, ExecError> {
        let agent = self.agent_def(agent_name)?;
        let input = self.render_input(state)?;
        let (system, user) = render_prompts(agent_name, &agent, state, &input)?;
        let refs = self.action_hooks(state)?;
        let tools = self
            .tool_definitions(
                name,
                state,
                &refs,
                agent.prompt.tools.clone().unwrap_or_default(),
            )
            .await?;
        let started = Instant::now();
        let mut p = self
            .ctx
            .get(PROGRESS_KEY)
            .and_then(|v| Progress::from_value(v, name, self.step))
            .unwrap_or_else(|| {
                // As in the SDK, a state re-entered with the same agent
                // continues its last conversation instead of starting over.
                let chain = match (
                    self.ctx.get(CHAIN_KEY),
                    self.ctx
                        .get("_tool_loop_chain_state")
                        .and_then(Value::as_str),
                    self.ctx
                        .get("_tool_loop_chain_agent")
                        .and_then(Value::as_str),
                ) {
                    (Some(Value::Array(c)), Some(s), Some(a))
                        if s == name && a == agent_name && !c.is_empty() =>
                    {
                        Some(c.clone())
                    }
                    _ => None,
                };
                Progress {
                    messages: chain
                        .unwrap_or_else(|| vec![json!({"role": "user", "content": user})]),
                    turns: 0,
                    calls: 0,
                    cost: 0.0,
                    content: None,
                }
            });
        if p.turns > 0 {
            tracing::info!(
                turns = p.turns,
                tool_calls = p.calls,
                "continuing a tool loop"
            );
        }
        let base = AgentRequest {
            execution_id: self.id.clone(),
            state: name.to_string(),
            agent_name: agent_name.to_string(),
            agent,
            input,
            system,
            user,
            machine: self.def().name.clone(),
            step: self.step,
            sample: 0,
            attempt: 1,
            call_key: String::new(),
            tools: None,
        };
        let mut usage = Value::Null;
        let stop = loop {
            if p.turns >= cfg.max_turns {
                break Some("max_turns");
            }
            if cfg.max_cost.is_some_and(|c| p.cost >= c) {
                break Some("cost_limit");
            }
            if cfg.total_timeout.is_some_and(|t| started.elapsed() >= t) {
                break Some("timeout");
            }
            let r = self.turn(&base, &tools, &p.messages, p.turns).await?;
            usage = json!(r.usage);
            p.turns += 1;
            p.cost += r.cost.unwrap_or(0.0);
            p.messages.push(assistant_message(&r));
            p.content = r.content.clone().filter(|c| !c.is_empty());
            if r.tool_calls.is_empty() {
                break None;
            }
            if p.calls + r.tool_calls.len() as u64 > cfg.max_tool_calls {
                break Some("max_tool_calls");
            }
            for c in &r.tool_calls {
                let content = self.run_tool(name, state, &refs, &cfg, c).await?;
                p.messages
                    .push(json!({"role": "tool", "tool_call_id": c.id, "content": content}));
                p.calls += 1;
                // The result is durable before the next call: a resumed
                // run continues from here without running the tool again.
                self.ctx
                    .insert(PROGRESS_KEY.into(), p.to_value(name, self.step));
                self.checkpoint(Event::StateEnter, Some(name), None, None, None)
                    .await?;
            }
        };
        if stop.is_some() && p.content.is_none() {
            let mut messages = p.messages.clone();
            messages.push(json!({"role": "user", "content": FINAL_PASS}));
            let r = self.turn(&base, &[], &messages, p.turns).await?;
            usage = json!(r.usage);
            p.cost += r.cost.unwrap_or(0.0);
            p.content = r.content.clone().filter(|c| !c.is_empty());
        }
        self.ctx.remove(PROGRESS_KEY);
        self.ctx
            .insert(CHAIN_KEY.into(), Value::Array(p.messages.clone()));
        self.ctx
            .insert("_tool_loop_chain_state".into(), json!(name));
        self.ctx
            .insert("_tool_loop_chain_agent".into(), json!(agent_name));
        // The context gets the loop's counters, as in the SDK;
        // `_tool_loop_stop` only when a limit stopped the loop.
        if let Some(why) = stop {
            self.ctx.insert("_tool_loop_stop".into(), json!(why));
        }
        let out = json!({
            "content": p.content,
            "_tool_calls_count": p.calls,
            "_tool_loop_turns": p.turns,
            "_tool_loop_cost": p.cost,
            "_tool_loop_stop": stop.unwrap_or("complete"),
        });
        for k in ["_tool_calls_count", "_tool_loop_turns", "_tool_loop_cost"] {
            self.ctx.insert(k.into(), out[k].clone());
        }
        self.ctx
            .insert("_tool_loop_content".into(), out["content"].clone());
        self.ctx.insert("_tool_loop_usage".into(), usage);
        Ok(out)
    }

    /// The tools offered: the hooks' tool provider's definitions (a Python
    /// hooks class's `get_tool_provider(state).get_tool_definitions()`)
    /// override the agent's of the same name, as in the SDK.
    async fn tool_definitions(
        &mut self,
        name: &str,
        state: &StateDef,
        refs: &[crate::spec::hooks::HookRef],
        yaml: Vec<Value>,
    ) -> Result<Vec<Value>, ExecError> {
        let Some((hook, args)) = self.tool_handler(refs) else {
            return Ok(yaml);
        };
        let shared = self.shared.clone();
        let call = self.tool_call(&shared, name, args.as_ref(), state_timeout(Some(state)));
        let provided = hook.tool_definitions(&call).await?;
        if provided.is_empty() {
            return Ok(yaml);
        }
        let fname = |d: &Value| {
            d.get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let names: Vec<Option<String>> = provided.iter().map(fname).collect();
        let mut out = provided;
        out.extend(yaml.into_iter().filter(|d| !names.contains(&fname(d))));
        Ok(out)
    }

    /// The first hook of `refs` with a handler, and its `args`.
    fn tool_handler(&self, refs: &[crate::spec::hooks::HookRef]) -> Option<ToolHandler> {
        let hooks = self.shared.actions.hooks()?;
        refs.iter()
            .find_map(|r| hooks.get(&r.name).map(|h| (h.clone(), r.args.clone())))
    }

    /// A `tool` event of state `name` for a hook handler.
    fn tool_call<'a>(
        &'a self,
        shared: &'a super::exec::Shared,
        name: &'a str,
        args: Option<&'a Map<String, Value>>,
        timeout: std::time::Duration,
    ) -> HookCall<'a> {
        HookCall {
            event: HookEvent::Tool,
            action: None,
            state: name,
            context: &self.ctx,
            output: None,
            error: None,
            args,
            execution_id: &self.id,
            machine_dir: Path::new(&shared.bundle.machines[self.m].dir),
            timeout,
        }
    }

    /// One model call of the loop (its own call key per turn).
    async fn turn(
        &mut self,
        base: &AgentRequest,
        tools: &[Value],
        messages: &[Value],
        turn: u64,
    ) -> Result<AgentResult, ExecError> {
        let mut req = base.clone();
        req.tools = Some(Arc::new(ToolTurn {
            tools: tools.to_vec(),
            messages: messages.to_vec(),
        }));
        let sample = u32::try_from(turn).unwrap_or(u32::MAX);
        req.sample = sample;
        self.call_once(req, sample).await
    }

    /// Run one tool call through the state's hooks; the text the model gets.
    async fn run_tool(
        &mut self,
        name: &str,
        state: &StateDef,
        refs: &[crate::spec::hooks::HookRef],
        cfg: &LoopConfig,
        c: &super::agent::ToolCall,
    ) -> Result<String, ExecError> {
        let tool = c.name.as_str();
        if cfg.denied.iter().any(|d| d == tool)
            || (!cfg.allowed.is_empty() && !cfg.allowed.iter().any(|a| a == tool))
        {
            return Ok(format!("Tool '{tool}' is not allowed."));
        }
        let Some((hook, args)) = self.tool_handler(refs) else {
            return Err(ExecError::new(
                ErrorKind::ActionError,
                format!(
                    "tool '{tool}' in state '{name}': no hook handler runs tools here (name hooks on the state and give them a handler with --hooks)"
                ),
            ));
        };
        let shared = self.shared.clone();
        let timeout = cfg
            .tool_timeout
            .unwrap_or_else(|| state_timeout(Some(state)));
        let call = self.tool_call(&shared, name, args.as_ref(), timeout);
        tracing::debug!(event = "tool_call", tool, "running tool");
        match hook.tool(&call, tool, &c.id, &c.arguments).await {
            Ok((content, _is_error)) => Ok(content),
            Err(e) if e.kind == ErrorKind::Interrupted => Err(e),
            Err(e) => Ok(format!("Error executing '{tool}': {}", e.message)),
        }
    }
}
