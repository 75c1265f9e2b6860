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
//! result is appended. The state's hooks get the SDK's `on_tool_calls`
//! (event `tool_calls`, the calls in `output`) after each model turn that
//! asks for tools, and `on_tool_result` (event `tool_result`) after each
//! tool; their context changes apply, and `_abort_tool_loop`,
//! `_skip_tools` and `_steering_messages` work as in the SDK. After every
//! tool result the progress (the conversation and counters, in the context
//! under [`PROGRESS_KEY`]) is checkpointed as the state's `state_enter`, so
//! a resumed execution continues the loop where it was — the rest of a
//! batch of calls included — instead of running its tools again.
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

/// The calls of the last assistant message that have no tool result yet
/// (after a resume in the middle of a batch of calls).
fn pending_calls(messages: &[Value]) -> Vec<super::agent::ToolCall> {
    let Some(at) = messages
        .iter()
        .rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
    else {
        return Vec::new();
    };
    let answered: Vec<&str> = messages[at + 1..]
        .iter()
        .filter_map(|m| m.get("tool_call_id").and_then(Value::as_str))
        .collect();
    let Some(calls) = messages[at].get("tool_calls").and_then(Value::as_array) else {
        return Vec::new();
    };
    calls
        .iter()
        .filter_map(|c| {
            let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
            if answered.contains(&id) {
                return None;
            }
            let f = c.get("function")?;
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => {
                    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
                }
                Some(v) => v.clone(),
                None => json!({}),
            };
            Some(super::agent::ToolCall {
                id: id.to_string(),
                name: f.get("name").and_then(Value::as_str)?.to_string(),
                arguments,
            })
        })
        .collect()
}

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
        let base = self.base_request(name, agent_name, state)?;
        let (agent, user) = (base.agent.clone(), base.user.clone());
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
        let mut usage = Value::Null;
        let stop = loop {
            let pending = pending_calls(&p.messages);
            if pending.is_empty() {
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
                // The SDK's on_tool_calls: may abort the loop or skip calls.
                let calls: Vec<Value> = r.tool_calls.iter().map(|c| json!(c)).collect();
                self.tool_hook(name, state, HookEvent::ToolCalls, Value::Array(calls))
                    .await?;
                if self.abort_requested() {
                    break Some("aborted");
                }
                continue;
            }
            let skip: Vec<String> = match self.ctx.remove("_skip_tools") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            };
            let mut aborted = false;
            for c in &pending {
                let (content, is_error) = if skip.contains(&c.id) || skip.contains(&c.name) {
                    (format!("Tool '{}' was skipped by policy.", c.name), false)
                } else {
                    self.run_tool(name, state, &refs, &cfg, c).await?
                };
                p.messages
                    .push(json!({"role": "tool", "tool_call_id": c.id, "content": content}));
                p.calls += 1;
                let result = json!({"tool_call_id": c.id, "name": c.name,
                    "arguments": c.arguments, "content": content, "is_error": is_error});
                self.tool_hook(name, state, HookEvent::ToolResult, result)
                    .await?;
                // The result (and what on_tool_result changed) is durable
                // before the next call: a resumed run continues from here
                // without running the tool again.
                self.ctx
                    .insert(PROGRESS_KEY.into(), p.to_value(name, self.step));
                self.checkpoint(Event::StateEnter, Some(name), None, None, None)
                    .await?;
                if self.abort_requested() {
                    aborted = true;
                    break;
                }
            }
            if aborted {
                break Some("aborted");
            }
            // The SDK's steering: messages a hook asks to add.
            if let Some(Value::Array(extra)) = self.ctx.remove("_steering_messages") {
                p.messages.extend(extra);
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

    /// `on_tool_calls` / `on_tool_result` of the state's own hooks (as in
    /// the SDK); what they return changes the context.
    async fn tool_hook(
        &mut self,
        name: &str,
        state: &StateDef,
        event: HookEvent,
        payload: Value,
    ) -> Result<(), ExecError> {
        let refs = self.state_hooks(state)?;
        if refs.is_empty() {
            return Ok(());
        }
        let site = super::run_hooks::Site {
            event,
            action: None,
            state_name: name,
            state: Some(state),
            error: None,
        };
        let mut payload = payload;
        self.call_hooks(&refs, &site, Some(&mut payload))
            .await
            .map(drop)
    }

    /// Whether a hook set `_abort_tool_loop` (taken out of the context).
    fn abort_requested(&mut self) -> bool {
        matches!(self.ctx.remove("_abort_tool_loop"), Some(Value::Bool(true)))
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
    ) -> Result<(String, bool), ExecError> {
        let tool = c.name.as_str();
        if cfg.denied.iter().any(|d| d == tool)
            || (!cfg.allowed.is_empty() && !cfg.allowed.iter().any(|a| a == tool))
        {
            return Ok((format!("Tool '{tool}' is not allowed."), true));
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
            Ok(r) => Ok(r),
            Err(e) if e.kind == ErrorKind::Interrupted => Err(e),
            Err(e) => Ok((format!("Error executing '{tool}': {}", e.message), true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resume in the middle of a batch runs only the calls without a
    /// result; a conversation whose last turn was answered has none.
    #[test]
    fn pending_calls_are_those_without_results() {
        let call = |id: &str| {
            json!({"id": id, "type": "function",
                   "function": {"name": "lookup", "arguments": "{\"query\": \"x\"}"}})
        };
        let mut m = vec![
            json!({"role": "user", "content": "q"}),
            json!({"role": "assistant", "content": "", "tool_calls": [call("a"), call("b")]}),
            json!({"role": "tool", "tool_call_id": "a", "content": "done"}),
        ];
        let p = pending_calls(&m);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].id, "b");
        assert_eq!(p[0].arguments, json!({"query": "x"}));
        m.push(json!({"role": "tool", "tool_call_id": "b", "content": "done"}));
        assert!(pending_calls(&m).is_empty());
        m.push(json!({"role": "assistant", "content": "answer"}));
        assert!(pending_calls(&m).is_empty());
    }
}
