//! Child machines: `machine: name` (blocking), `machine: [a, b]` (parallel),
//! `foreach` fan-out, with `mode: settled` (all) or `mode: any` (first
//! success).
//!
//! Children get deterministic ids — `parent/state@step/label` — so a resumed
//! parent finds children that already finished and re-attaches to their
//! stored result instead of running (and paying for) them again.

use super::checkpoint::Event;
use super::error::{ErrorKind, ExecError};
use super::exec::{execute, Finished, Lineage, Run, Start};
use super::state::template_err;
use crate::expr::{Templates, Vars};
use crate::spec::StateDef;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use tokio::task::JoinSet;
use tracing::Instrument;

/// One child to run.
struct ChildSpec {
    /// Output key: machine name, item index or rendered key.
    label: String,
    machine: usize,
    input: Map<String, Value>,
}

/// How outputs are assembled.
enum Shape {
    Single,
    ByLabel,
    List,
}

impl Run {
    pub(crate) async fn run_children(
        &mut self,
        name: &str,
        state: &StateDef,
    ) -> Result<Value, ExecError> {
        let (specs, shape) = self.plan_children(state)?;
        let lineage = self.admit(name, specs.len())?;
        let any = state.mode.as_deref() == Some("any");
        if let Shape::Single = shape {
            let Some(spec) = specs.into_iter().next() else {
                return Err(ExecError::new(
                    ErrorKind::ChildFailed,
                    "no child machine named",
                ));
            };
            // On its own task, like fan-out children: polled inline, every
            // nesting level would add its poll frames to this thread's stack
            // (debug builds overflowed a 2 MiB worker at 64 levels). The set
            // aborts the child if this state is dropped, as inline would.
            let mut set = JoinSet::new();
            set.spawn(self.launch(name, spec.machine, &spec.label, spec.input, &lineage));
            let f = match set.join_next().await {
                Some(joined) => joined.map_err(join_err)??,
                None => return Err(ExecError::new(ErrorKind::Internal, "child task vanished")),
            };
            self.totals.add(f.totals);
            return f.result.map_err(|e| child_failed(&spec.label, &e));
        }
        let results = if any {
            self.run_any(
                name,
                specs,
                state.timeout.and_then(|t| t.positive()),
                &lineage,
            )
            .await?
        } else {
            self.run_settled(name, specs, &lineage).await?
        };
        assemble(results, &shape, state.allow_failures || any)
    }

    /// Check `n` new children of state `name` against the engine's
    /// [`Limits`](super::exec::Limits) and book them against the root's
    /// total; returns the lineage the children run under. Nothing is
    /// launched when a limit is hit, so a refused fan-out costs nothing.
    pub(crate) fn admit(&self, name: &str, n: usize) -> Result<Lineage, ExecError> {
        let limits = self.shared.limits;
        let depth = self.lineage.depth + 1;
        if depth > limits.max_depth {
            return Err(ExecError::new(
                ErrorKind::RecursionLimit,
                format!(
                    "machine '{}' state '{name}' would start a child machine at nesting level {depth}, \
                     deeper than the limit of {} (is the machine recursive?)",
                    self.def().name,
                    limits.max_depth
                ),
            ));
        }
        if n > limits.max_fanout {
            return Err(ExecError::new(
                ErrorKind::RecursionLimit,
                format!(
                    "state '{name}' would start {n} child machines at once; the limit per state is {}",
                    limits.max_fanout
                ),
            ));
        }
        let before = self.lineage.children.fetch_add(n, Ordering::SeqCst);
        let total = before.saturating_add(n);
        if total > limits.max_children {
            return Err(ExecError::new(
                ErrorKind::RecursionLimit,
                format!(
                    "state '{name}' would bring this execution tree to {total} child machines; \
                     the limit per root execution is {}",
                    limits.max_children
                ),
            ));
        }
        Ok(Lineage {
            depth,
            children: self.lineage.children.clone(),
        })
    }

    /// Work out which children to run with which input.
    fn plan_children(&self, state: &StateDef) -> Result<(Vec<ChildSpec>, Shape), ExecError> {
        let Some(target) = &state.machine else {
            return Ok((Vec::new(), Shape::List));
        };
        let items = target.items();
        if let Some(expr) = &state.foreach {
            let first = items.first().ok_or_else(|| {
                ExecError::new(ErrorKind::ChildFailed, "`foreach` without a machine")
            })?;
            return self.plan_foreach(state, expr, first.name());
        }
        let vars = self.state_vars();
        let shared_input = self.render_input(state)?;
        let mut specs = Vec::new();
        for item in &items {
            let mut input = shared_input.clone();
            if let Some(own) = item.input() {
                let rendered = Templates::render_map(own, &vars)
                    .map_err(|e| template_err(&format!("machine '{}' input", item.name()), e))?;
                input.extend(rendered);
            }
            let mut label = item.name().to_string();
            if specs.iter().any(|s: &ChildSpec| s.label == label) {
                label = format!("{label}#{}", specs.len());
            }
            specs.push(ChildSpec {
                label,
                machine: self.child_index(item.name())?,
                input,
            });
        }
        let shape = match target {
            crate::spec::model::MachineTarget::One(_) => Shape::Single,
            crate::spec::model::MachineTarget::Many(_) => Shape::ByLabel,
        };
        Ok((specs, shape))
    }

    fn plan_foreach(
        &self,
        state: &StateDef,
        expr: &str,
        machine: &str,
    ) -> Result<(Vec<ChildSpec>, Shape), ExecError> {
        let list = Templates::render_str(expr, &self.state_vars())
            .map_err(|e| template_err("foreach", e))?;
        let Value::Array(items) = list else {
            return Err(ExecError::new(
                ErrorKind::TemplateError,
                format!(
                    "foreach '{expr}' must evaluate to a list, got {}",
                    kind_of(&list)
                ),
            ));
        };
        let as_name = state.as_name.as_deref().unwrap_or("item");
        let idx = self.child_index(machine)?;
        let mut specs = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            // Unlike the reference (which hides it), item templates see the context.
            let vars = Vars::from_pairs([
                (as_name, item),
                ("context", Value::Object(self.ctx.clone())),
                ("input", Value::Object(self.ctx.clone())),
            ])
            .with_path_root(as_name);
            let input = match &state.input {
                Some(i) => Templates::render_map(i, &vars).map_err(|e| template_err("input", e))?,
                None => Map::new(),
            };
            let label = match &state.key {
                Some(k) => {
                    match Templates::render_str(k, &vars).map_err(|e| template_err("key", e))? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    }
                }
                None => i.to_string(),
            };
            if state.key.is_some() && specs.iter().any(|s: &ChildSpec| s.label == label) {
                return Err(ExecError::new(
                    ErrorKind::TemplateError,
                    format!("foreach key '{label}' is produced by more than one item"),
                ));
            }
            specs.push(ChildSpec {
                label,
                machine: idx,
                input,
            });
        }
        let shape = if state.key.is_some() {
            Shape::ByLabel
        } else {
            Shape::List
        };
        Ok((specs, shape))
    }

    fn child_index(&self, name: &str) -> Result<usize, ExecError> {
        self.def().machines.get(name).copied().ok_or_else(|| {
            ExecError::new(ErrorKind::ChildFailed, format!("unknown machine '{name}'"))
        })
    }

    fn child_id(&self, state: &str, label: &str) -> String {
        format!("{}/{}@{}/{}", self.id, state, self.step, label)
    }

    /// Start (or re-attach to) one child and wait for it.
    fn launch(
        &self,
        state: &str,
        machine: usize,
        label: &str,
        input: Map<String, Value>,
        lineage: &Lineage,
    ) -> super::exec::BoxFuture<Result<Finished, ExecError>> {
        let shared = self.shared.clone();
        let lineage = lineage.clone();
        let id = self.child_id(state, label);
        let parent = self.id.clone();
        Box::pin(async move {
            let start = match shared.checkpoints.latest(&id).await? {
                // A child that failed runs again from the start.
                None => Start::Fresh(input),
                Some(s) if s.event == Event::MachineFailed => Start::Fresh(input),
                Some(s) => {
                    tracing::info!(child = %id, event = s.event.as_str(), "re-attaching to child");
                    Start::From(Box::new(s))
                }
            };
            Ok(execute(shared, machine, id, Some(parent), lineage, start).await)
        }
        // Children run on their own tasks: carry the parent's state span
        // over so their log lines keep the paper and parent context.
        .in_current_span())
    }

    async fn run_settled(
        &mut self,
        state: &str,
        specs: Vec<ChildSpec>,
        lineage: &Lineage,
    ) -> Result<Vec<(String, Result<Value, ExecError>)>, ExecError> {
        let mut set = JoinSet::new();
        for (i, s) in specs.into_iter().enumerate() {
            let fut = self.launch(state, s.machine, &s.label, s.input, lineage);
            let label = s.label;
            set.spawn(async move { (i, label, fut.await) });
        }
        let mut done = Vec::new();
        let mut parked: Option<ExecError> = None;
        while let Some(j) = set.join_next().await {
            let (i, label, f) = j.map_err(join_err)?;
            let f = f?;
            self.totals.add(f.totals);
            if let Err(e) = &f.result {
                if e.kind == ErrorKind::Interrupted {
                    let e = ExecError {
                        message: format!("child '{label}' was interrupted: {}", e.message),
                        ..e.clone()
                    };
                    if e.park().is_none() {
                        // Lease lost, cancel or shutdown: stop at once
                        // (dropping the set aborts the siblings; the
                        // finished ones are re-attached on resume).
                        return Err(e);
                    }
                    // A parked child: let the siblings run to their own end
                    // (done, failed or parked too) rather than abort them,
                    // because aborting a sibling whose request is already
                    // sent would pay for that call again on resume.
                    parked.get_or_insert(e);
                    continue;
                }
            }
            // A limit of the whole tree is not one child's failure:
            // `allow_failures` must not turn it into an `_error` entry.
            if let Err(e) = &f.result {
                if e.kind == ErrorKind::RecursionLimit {
                    return Err(child_failed(&label, e));
                }
            }
            done.push((i, label, f.result));
        }
        if let Some(e) = parked {
            // The runner gives the slot back; finished siblings are
            // re-attached on resume.
            return Err(e);
        }
        done.sort_by_key(|(i, _, _)| *i);
        Ok(done.into_iter().map(|(_, l, r)| (l, r)).collect())
    }

    async fn run_any(
        &mut self,
        state: &str,
        specs: Vec<ChildSpec>,
        timeout: Option<std::time::Duration>,
        lineage: &Lineage,
    ) -> Result<Vec<(String, Result<Value, ExecError>)>, ExecError> {
        let total = specs.len();
        let mut set = JoinSet::new();
        for s in specs {
            let fut = self.launch(state, s.machine, &s.label, s.input, lineage);
            let label = s.label;
            set.spawn(async move { (label, fut.await) });
        }
        let wait = async {
            let mut errors = Vec::new();
            while let Some(j) = set.join_next().await {
                let (label, f) = j.map_err(join_err)?;
                let f = f?;
                self.totals.add(f.totals);
                match f.result {
                    Ok(v) => return Ok(Some((label, v))),
                    // An interrupted (e.g. parked) child is not a failed
                    // one: the whole state stops and re-runs on resume.
                    Err(e) if e.kind == ErrorKind::Interrupted => return Err(e),
                    Err(e) if e.kind == ErrorKind::RecursionLimit => {
                        return Err(child_failed(&label, &e))
                    }
                    Err(e) => errors.push((label, e)),
                }
            }
            let detail: Vec<String> = errors.iter().map(|(l, e)| format!("{l}: {e}")).collect();
            Err(ExecError::child_failed(
                format!("all {total} children failed ({})", detail.join("; ")),
                errors.iter().map(|(_, e)| e),
            ))
        };
        let winner = match timeout {
            Some(d) => tokio::time::timeout(d, wait).await.map_err(|_| {
                ExecError::new(
                    ErrorKind::Timeout,
                    format!("no child finished within {}s", d.as_secs_f64()),
                )
            })??,
            None => wait.await?,
        };
        // Dropping the set aborts the children still running.
        Ok(winner.map(|(l, v)| vec![(l, Ok(v))]).unwrap_or_default())
    }
}

/// A child task that panicked is a runner bug (`internal`); one that was
/// cancelled is reported as a failed child.
fn join_err(e: tokio::task::JoinError) -> ExecError {
    let kind = if e.is_panic() {
        ErrorKind::Internal
    } else {
        ErrorKind::ChildFailed
    };
    ExecError::new(kind, format!("child task failed: {e}"))
}

fn child_failed(label: &str, e: &ExecError) -> ExecError {
    if e.kind == ErrorKind::Interrupted {
        return e.clone();
    }
    // Keep the kind up the tree, so the root reports `recursion_limit`.
    if e.kind == ErrorKind::RecursionLimit {
        return ExecError {
            message: format!("child machine '{label}': {}", e.message),
            ..e.clone()
        };
    }
    ExecError::child_failed(format!("child machine '{label}' failed: {e}"), [e])
}

/// Build the state output from child results.
fn assemble(
    results: Vec<(String, Result<Value, ExecError>)>,
    shape: &Shape,
    allow_failures: bool,
) -> Result<Value, ExecError> {
    let mut failures = Vec::new();
    let mut failed = Vec::new();
    let mut entries = Vec::with_capacity(results.len());
    for (label, r) in results {
        let v = match r {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("'{label}' ({e})"));
                let v = json!({"_error": e.message, "_error_type": e.kind.as_str()});
                failed.push(e);
                v
            }
        };
        entries.push((label, v));
    }
    if !failures.is_empty() && !allow_failures {
        return Err(ExecError::child_failed(
            format!(
                "{} child machine(s) failed: {}",
                failures.len(),
                failures.join(", ")
            ),
            &failed,
        ));
    }
    Ok(match shape {
        Shape::List => Value::Array(entries.into_iter().map(|(_, v)| v).collect()),
        Shape::Single | Shape::ByLabel => Value::Object(entries.into_iter().collect()),
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
