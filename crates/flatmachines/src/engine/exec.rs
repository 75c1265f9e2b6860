//! The execution loop: one machine execution from start (or a snapshot) to a
//! final state or an unrouted error.
//!
//! Per step: checkpoint `state_enter` → run the state (action, children,
//! agent, final output) → pick the next state (first matching transition,
//! or `on_error` on failure) → checkpoint `state_exit` with that next state.
//! No silent endings: no matching transition and `max_steps` are errors.

use super::action::ActionRegistry;
use super::agent::Agent;
use super::checkpoint::{Checkpointer, Event, Snapshot, Totals};
use super::error::{ErrorKind, ExecError};
use super::signals::{MemorySignals, Signals};
use crate::expr::{Templates, Vars};
use crate::spec::model::OnError;
use crate::spec::{AgentDef, Bundle, MachineDef, StateDef};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tracing::Instrument;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub use crate::spec::limits::{MAX_CHILDREN_PER_ROOT, MAX_FANOUT_PER_STATE, MAX_NESTING_DEPTH};

/// Bounds on child machines, so a recursive or exploding machine fails with
/// `recursion_limit` instead of overflowing the stack or allocating without
/// bound. `check` already rejects machines that can reach themselves; these
/// guard bundles stored before that check existed, data-driven `foreach`
/// fan-out, and deep-but-acyclic chains.
///
/// The stack does not grow with nesting: every child (blocking
/// `machine: x` included) runs on its own task, so a parent only awaits a
/// join handle; `tests/hostile_spec.rs` runs 256 levels on a 2 MiB worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of child machines below a root execution (the root is
    /// level 0; a child at level `max_depth + 1` is refused).
    pub max_depth: usize,
    /// Child executions (at every level, re-attached ones included) one root
    /// execution may start in total.
    pub max_children: usize,
    /// Children one state may start at once (`foreach` items or a
    /// `machine:` list).
    pub max_fanout: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: MAX_NESTING_DEPTH,
            max_children: MAX_CHILDREN_PER_ROOT,
            max_fanout: MAX_FANOUT_PER_STATE,
        }
    }
}

/// Where an execution sits in its root's tree: its nesting level and the
/// root's running count of child executions.
#[derive(Clone)]
pub(crate) struct Lineage {
    pub depth: usize,
    pub children: Arc<AtomicUsize>,
}

impl Lineage {
    /// A root execution: level 0, no children yet.
    pub fn root() -> Lineage {
        Lineage {
            depth: 0,
            children: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// Everything executions of one bundle share (children included).
#[derive(Clone)]
pub(crate) struct Shared {
    pub bundle: Arc<Bundle>,
    pub actions: ActionRegistry,
    pub agent: Arc<dyn Agent>,
    pub checkpoints: Arc<dyn Checkpointer>,
    /// Where `wait_for` states find their signals.
    pub signals: Arc<dyn Signals>,
    /// Agents by (machine index, name), shared so requests don't copy prompts.
    pub agents: HashMap<(usize, String), Arc<AgentDef>>,
    pub limits: Limits,
}

/// How an execution begins.
pub(crate) enum Start {
    Fresh(Map<String, Value>),
    From(Box<Snapshot>),
}

/// The result of an execution plus what it spent.
pub(crate) struct Finished {
    pub result: Result<Value, ExecError>,
    pub totals: Totals,
}

/// Runs machines of one bundle.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    pub fn new(
        bundle: Arc<Bundle>,
        agent: Arc<dyn Agent>,
        actions: ActionRegistry,
        checkpoints: Arc<dyn Checkpointer>,
    ) -> Engine {
        let mut agents = HashMap::new();
        for (i, m) in bundle.machines.iter().enumerate() {
            for (name, a) in &m.agents {
                agents.insert((i, name.clone()), Arc::new(a.clone()));
            }
        }
        Engine {
            shared: Arc::new(Shared {
                bundle,
                actions,
                agent,
                checkpoints,
                signals: Arc::new(MemorySignals::default()),
                agents,
                limits: Limits::default(),
            }),
        }
    }

    /// The same engine with `signals` as the source of `wait_for` signals
    /// (the default keeps them in memory).
    pub fn with_signals(self, signals: Arc<dyn Signals>) -> Engine {
        Engine {
            shared: Arc::new(Shared {
                signals,
                ..(*self.shared).clone()
            }),
        }
    }

    /// The same engine with other child-machine limits (tests lower them;
    /// the defaults are [`Limits::default`]).
    pub fn with_limits(self, limits: Limits) -> Engine {
        Engine {
            shared: Arc::new(Shared {
                limits,
                ..(*self.shared).clone()
            }),
        }
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.shared.bundle
    }

    /// Run the root machine with `input` under `execution_id`.
    pub async fn run(
        &self,
        execution_id: &str,
        input: Map<String, Value>,
    ) -> Result<Value, ExecError> {
        let root = self.shared.bundle.root;
        execute(
            self.shared.clone(),
            root,
            execution_id.to_string(),
            None,
            Lineage::root(),
            Start::Fresh(input),
        )
        .await
        .result
    }

    /// Continue an execution from its latest snapshot. A finished execution
    /// returns its stored output (or error) without running anything.
    pub async fn resume(&self, snapshot: Snapshot) -> Result<Value, ExecError> {
        let m = snapshot.machine_index;
        if m >= self.shared.bundle.machines.len() {
            return Err(ExecError::new(
                ErrorKind::InvalidRequest,
                format!("snapshot refers to machine #{m}, which this bundle does not have"),
            ));
        }
        let id = snapshot.execution_id.clone();
        let parent = snapshot.parent_id.clone();
        execute(
            self.shared.clone(),
            m,
            id,
            parent,
            Lineage::root(),
            Start::From(Box::new(snapshot)),
        )
        .await
        .result
    }
}

/// Run one execution of machine `m` (boxed so children can recurse).
pub(crate) fn execute(
    shared: Arc<Shared>,
    m: usize,
    id: String,
    parent: Option<String>,
    lineage: Lineage,
    start: Start,
) -> BoxFuture<Finished> {
    let name = shared.bundle.machines[m].name.clone();
    // Every log line inside an execution carries its id, machine and (for
    // paper pipelines) the arXiv id, so one paper's lines can be grepped out
    // of a daemon's log; the metrics layer reads `machine` from this span.
    let arxiv_id = match &start {
        Start::Fresh(input) => input.get("arxiv_id"),
        Start::From(snap) => snap.context.get("arxiv_id"),
    }
    .and_then(Value::as_str)
    .map(str::to_string);
    let span = tracing::info_span!(
        "execution",
        execution_id = %id,
        machine = %name,
        arxiv_id = tracing::field::Empty
    );
    if let Some(a) = &arxiv_id {
        span.record("arxiv_id", a.as_str());
    }
    Box::pin(
        async move {
            let mut run = Run {
                shared,
                m,
                id,
                parent,
                lineage,
                ctx: Map::new(),
                step: 0,
                totals: Totals::default(),
                last_rate_limit: None,
                hook_recovery: None,
                started: std::collections::HashSet::new(),
                launched: tokio::task::JoinSet::new(),
            };
            let result = run.drive(start).await;
            Finished {
                result,
                totals: run.totals,
            }
        }
        .instrument(span),
    )
}

/// Where the loop continues.
enum Cursor {
    Run(String),
    Done(Value),
    Failed(ExecError),
}

pub(crate) struct Run {
    pub shared: Arc<Shared>,
    pub m: usize,
    pub id: String,
    pub parent: Option<String>,
    pub lineage: Lineage,
    pub ctx: Map<String, Value>,
    pub step: u64,
    pub totals: Totals,
    /// Rate-limit info of the last agent call (for `context.machine.rate_limit`).
    pub last_rate_limit: Option<Value>,
    /// The recovery state the last `error` hook call returned.
    pub hook_recovery: Option<String>,
    /// Launch intents this run started (`launch.rs`).
    pub started: std::collections::HashSet<String>,
    /// The launched children's tasks: joined before the execution ends,
    /// aborted with it when it is interrupted.
    pub launched: tokio::task::JoinSet<()>,
}

impl Run {
    pub fn def(&self) -> &MachineDef {
        &self.shared.bundle.machines[self.m]
    }

    async fn drive(&mut self, start: Start) -> Result<Value, ExecError> {
        let result = self.drive_states(start).await;
        match &result {
            // Stopped from outside or parked: the launched children stop
            // too (dropping their tasks) and resume with this execution.
            Err(e) if e.kind == ErrorKind::Interrupted => {}
            _ => self.join_launches().await,
        }
        result
    }

    async fn drive_states(&mut self, start: Start) -> Result<Value, ExecError> {
        let mut current = match self.begin(start).await? {
            Cursor::Run(s) => s,
            Cursor::Done(v) => return Ok(v),
            Cursor::Failed(e) => return Err(e),
        };
        // After a routed max_steps error, allow enough steps to reach a final
        // state through the error path, then stop for good.
        let mut limit = self.def().max_steps;
        let mut overflowed = false;
        loop {
            if self.step >= limit {
                let e = ExecError::new(
                    ErrorKind::MaxSteps,
                    format!(
                        "max_steps ({}) reached before a final state (next state '{current}')",
                        self.def().max_steps
                    ),
                );
                let routed = if overflowed {
                    None
                } else {
                    self.route(&current, &e)
                };
                match routed {
                    Some(target) => {
                        overflowed = true;
                        limit = self.step + self.def().states.len() as u64;
                        self.set_last_error(&e);
                        current = target;
                    }
                    None => return self.fail(e).await,
                }
            }
            self.step += 1;
            match self.step_state(&current).await? {
                Cursor::Run(next) => current = next,
                Cursor::Done(out) => return Ok(out),
                Cursor::Failed(e) => return self.fail(e).await,
            }
        }
    }

    /// Set up the context and find the first state to run.
    async fn begin(&mut self, start: Start) -> Result<Cursor, ExecError> {
        match start {
            Start::Fresh(input) => {
                let vars = Vars::from_pairs([("input", Value::Object(input))]);
                self.ctx = Templates::render_map(&self.def().context, &vars)
                    .map_err(|e| super::state::template_err("context", e))?;
                let initial = self.def().initial.clone();
                self.inject_machine(None);
                // Before the start checkpoint, so what the hook changes is
                // in it and a crash before it re-runs the hook.
                if let Err(e) = self.machine_start_hooks(&initial).await {
                    return Ok(Cursor::Failed(e));
                }
                self.checkpoint(Event::MachineStart, None, Some(&initial), None, None)
                    .await?;
                tracing::info!(event = "machine_start", "machine started");
                Ok(Cursor::Run(initial))
            }
            Start::From(snap) => {
                let snap = *snap;
                self.ctx = snap.context;
                self.totals = snap.totals;
                self.step = snap.step;
                // Launches recorded before the crash or stop: start (or
                // re-attach to) those that have not ended.
                self.start_launches();
                tracing::info!(
                    event = "machine_resume",
                    from = snap.event.as_str(),
                    step = snap.step,
                    "resuming"
                );
                Ok(match snap.event {
                    Event::MachineEnd => Cursor::Done(snap.output.unwrap_or_else(|| json!({}))),
                    Event::MachineFailed => Cursor::Failed(snap.error.unwrap_or_else(|| {
                        ExecError::new(ErrorKind::ActionError, "execution failed")
                    })),
                    // Re-run the state in flight with the same step number, so
                    // its children get the same deterministic ids.
                    Event::StateEnter => {
                        self.step = snap.step.saturating_sub(1);
                        Cursor::Run(snap.state.unwrap_or_default())
                    }
                    Event::MachineStart | Event::StateExit => {
                        match (snap.next_state, snap.output) {
                            (Some(n), _) => Cursor::Run(n),
                            // The final state finished; only machine_end is missing.
                            (None, Some(out)) => {
                                self.checkpoint(Event::MachineEnd, None, None, Some(&out), None)
                                    .await?;
                                Cursor::Done(out)
                            }
                            (None, None) => Cursor::Failed(ExecError::new(
                                ErrorKind::NoTransition,
                                "snapshot has no next state",
                            )),
                        }
                    }
                })
            }
        }
    }

    /// Run one state and checkpoint its exit, inside a `state` span (so
    /// every log line of the state, its agent calls and its children names
    /// the state).
    async fn step_state(&mut self, name: &str) -> Result<Cursor, ExecError> {
        let span = tracing::debug_span!("state", state = %name, step = self.step);
        self.step_state_in(name).instrument(span).await
    }

    /// The body of [`Run::step_state`]. Emits `state_enter`, `state_exit`
    /// (with `duration_s` and `outcome`) and `transition` events, which the
    /// ops metrics layer counts.
    async fn step_state_in(&mut self, name: &str) -> Result<Cursor, ExecError> {
        let Some(state) = self.def().states.get(name).cloned() else {
            return Ok(Cursor::Failed(ExecError::new(
                ErrorKind::NoTransition,
                format!("unknown state '{name}'"),
            )));
        };
        let started = std::time::Instant::now();
        let exited = |outcome: &str| {
            tracing::debug!(
                event = "state_exit",
                duration_s = started.elapsed().as_secs_f64(),
                outcome,
                "exit"
            );
        };
        self.inject_machine(Some(name));
        self.checkpoint(Event::StateEnter, Some(name), None, None, None)
            .await?;
        tracing::debug!(event = "state_enter", "enter");
        let outcome = self.run_state_hooked(name, &state).await;
        let mut outcome = outcome.and_then(|out| Ok((self.next_state(name, &state)?, out)));
        // machine_end before the final state's exit checkpoint: a recorded
        // exit means the hook ran, and its output is the one stored.
        if let Ok((None, out)) = &mut outcome {
            if let Err(e) = self.machine_end_hooks(name, out).await {
                outcome = Err(e);
            }
        }
        match outcome {
            Ok((None, out)) => {
                self.checkpoint(Event::StateExit, Some(name), None, Some(&out), None)
                    .await?;
                self.start_launches();
                exited("ok");
                self.checkpoint(Event::MachineEnd, None, None, Some(&out), None)
                    .await?;
                tracing::info!(event = "machine_end", state = name, "machine finished");
                Ok(Cursor::Done(out))
            }
            Ok((Some(next), _)) => {
                self.checkpoint(Event::StateExit, Some(name), Some(&next), None, None)
                    .await?;
                self.start_launches();
                exited("ok");
                tracing::debug!(event = "transition", to = %next, "transition");
                Ok(Cursor::Run(next))
            }
            Err(e) if e.kind == ErrorKind::Interrupted => Err(e),
            Err(e) => {
                tracing::info!(event = "error", kind = %e.kind, error = %e.message, "state failed");
                self.set_last_error(&e);
                let recovery = self.error_hooks(name, &e).await;
                // The machine's `on_error` wins; a hook's answer is used only
                // without one (as in the SDK), and only if the state exists.
                let recovery = recovery.filter(|r| {
                    let known = self.def().states.contains_key(r);
                    if !known {
                        tracing::warn!(target_state = %r, "error hook named an unknown state; ignored");
                    }
                    known
                });
                match self.route(name, &e).or(recovery) {
                    Some(target) => {
                        self.checkpoint(
                            Event::StateExit,
                            Some(name),
                            Some(&target),
                            None,
                            Some(&e),
                        )
                        .await?;
                        self.start_launches();
                        exited("error");
                        tracing::debug!(event = "transition", to = %target, on_error = true, "on_error");
                        Ok(Cursor::Run(target))
                    }
                    None => {
                        exited("failed");
                        Ok(Cursor::Failed(ExecError {
                            message: format!("state '{name}': {}", e.message),
                            ..e
                        }))
                    }
                }
            }
        }
    }

    /// The next state after `name` finished, or None for a final state.
    fn next_state(&self, name: &str, state: &StateDef) -> Result<Option<String>, ExecError> {
        if state.is_final() {
            return Ok(None);
        }
        let vars =
            serde_json::Map::from_iter([("context".to_string(), Value::Object(self.ctx.clone()))]);
        for t in &state.transitions {
            let Some(guard) = t.condition.as_ref().filter(|c| !c.is_blank()) else {
                return Ok(Some(t.to.clone()));
            };
            let src = guard.source();
            // Parsed once per loaded bundle (normally by validation), not here.
            let cond = guard.compiled().map_err(|e| {
                ExecError::new(ErrorKind::TemplateError, format!("condition '{src}': {e}"))
            })?;
            let hit = cond.eval_bool(&vars).map_err(|e| {
                ExecError::new(ErrorKind::TemplateError, format!("condition '{src}': {e}"))
            })?;
            if hit {
                return Ok(Some(t.to.clone()));
            }
        }
        Err(ExecError::new(
            ErrorKind::NoTransition,
            format!("no transition of state '{name}' matched"),
        ))
    }

    /// The `on_error` target for `e` in state `name`, if any.
    fn route(&self, name: &str, e: &ExecError) -> Option<String> {
        if e.kind == ErrorKind::Interrupted {
            return None;
        }
        let state = self.def().states.get(name)?;
        match state.on_error.as_ref()? {
            OnError::Target(t) => Some(t.clone()),
            OnError::ByKind(map) => {
                let python_name = if e.kind.is_retryable() {
                    "RetryableError"
                } else {
                    "RuntimeError"
                };
                [e.kind.as_str(), python_name, "Exception", "default"]
                    .iter()
                    .find_map(|k| map.get(*k).cloned())
            }
        }
    }

    fn set_last_error(&mut self, e: &ExecError) {
        self.ctx
            .insert("last_error".into(), Value::String(e.message.clone()));
        self.ctx.insert(
            "last_error_type".into(),
            Value::String(e.kind.as_str().into()),
        );
    }

    async fn fail(&mut self, e: ExecError) -> Result<Value, ExecError> {
        if e.kind != ErrorKind::Interrupted {
            tracing::info!(event = "machine_failed", kind = %e.kind, error = %e.message, "machine failed");
            self.checkpoint(Event::MachineFailed, None, None, None, Some(&e))
                .await?;
        }
        Err(e)
    }

    /// `context.machine`: runtime metadata templates may read (reference-compatible).
    fn inject_machine(&mut self, state: Option<&str>) {
        let def = self.def();
        let meta = json!({
            "execution_id": self.id,
            "machine_name": def.name,
            "parent_execution_id": self.parent,
            "spec_version": def.spec_version,
            "step": self.step,
            "current_state": state,
            "total_api_calls": self.totals.api_calls,
            "total_cost": self.totals.cost,
            "rate_limit": self.last_rate_limit,
        });
        self.ctx.insert("machine".into(), meta);
    }

    pub(crate) async fn checkpoint(
        &self,
        event: Event,
        state: Option<&str>,
        next: Option<&str>,
        output: Option<&Value>,
        error: Option<&ExecError>,
    ) -> Result<(), ExecError> {
        let snap = Snapshot {
            execution_id: self.id.clone(),
            parent_id: self.parent.clone(),
            machine_index: self.m,
            machine_name: self.def().name.clone(),
            event,
            state: state.map(str::to_string),
            next_state: next.map(str::to_string),
            step: self.step,
            context: self.ctx.clone(),
            output: output.cloned(),
            error: error.cloned(),
            totals: self.totals,
        };
        self.shared.checkpoints.save(&snap).await
    }
}
