//! `wait_for`: a state that parks its execution until a named signal for
//! it arrives (`runner signal EXECUTION_ID NAME`, or the ops endpoint).
//!
//! The host keeps signals and waits durably behind the [`Signals`] seam.
//! A state with `wait_for: NAME` (a template) runs first thing:
//!
//! 1. [`Signals::take`] the oldest signal `NAME` sent to this execution. A
//!    signal is taken *for a step*: the same state re-run at the same step
//!    (a resume from its `state_enter` checkpoint) gets the same signal
//!    again, so a crash between taking it and the state's exit loses
//!    nothing. Its data is the state's output (`output_to_context` sees a
//!    value that is not an object as `output.value`, as in the SDK).
//! 2. Without one, [`Signals::wait`] records the wait (its start and the
//!    deadline from the state's `timeout`, kept across re-runs) and the
//!    execution stops with [`Stop::Waiting`]: `interrupted`, never routed
//!    through `on_error`, no failure checkpoint. The latest checkpoint is
//!    the state's `state_enter`, so resuming runs the state again.
//! 3. Run again past the deadline with still no signal, the state fails
//!    with `timeout`, which goes through `on_error` like any failure.

use super::error::{ErrorKind, ExecError, Stop};
use super::exec::Run;
use super::state::template_err;
use crate::expr::Templates;
use crate::spec::StateDef;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// A wait as the host recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// When the wait began (unix ms, host clock).
    pub since_ms: i64,
    /// When it times out (unix ms), if the state has a `timeout`.
    pub deadline_ms: Option<i64>,
    /// The host's "now" (unix ms), to compare with the deadline.
    pub now_ms: i64,
}

/// Durable signals and waits.
#[async_trait]
pub trait Signals: Send + Sync {
    /// The signal `name` taken by `execution_id` at `step`: the one taken
    /// at that step before, else the oldest not yet taken. Its data.
    async fn take(
        &self,
        execution_id: &str,
        name: &str,
        step: u64,
    ) -> Result<Option<Value>, ExecError>;

    /// Record that `execution_id` waits for `name` at `step`. The first
    /// call for a (name, step) sets the start and deadline; later calls
    /// return them unchanged.
    async fn wait(
        &self,
        execution_id: &str,
        name: &str,
        step: u64,
        timeout: Option<Duration>,
    ) -> Result<Wait, ExecError>;

    /// The wait of `execution_id` is over (signal taken or timed out).
    async fn done(&self, execution_id: &str) -> Result<(), ExecError>;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Signals kept in memory: `machine run` without `--db` (a signal can
/// then only come from inside the process) and tests.
#[derive(Default)]
pub struct MemorySignals {
    inner: Mutex<MemoryInner>,
}

/// Signals of one (execution, name), in order: (data, step taken at).
type Queue = Vec<(Value, Option<u64>)>;

#[derive(Default)]
struct MemoryInner {
    queued: HashMap<(String, String), Queue>,
    waits: HashMap<String, (String, u64, Wait)>,
}

impl MemorySignals {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Send `name` with `data` to `execution_id`.
    pub fn send(&self, execution_id: &str, name: &str, data: Value) {
        let mut g = self.lock();
        g.queued
            .entry((execution_id.to_string(), name.to_string()))
            .or_default()
            .push((data, None));
    }

    /// Executions waiting, with the signal name each waits for.
    pub fn waiting(&self) -> Vec<(String, String)> {
        let g = self.lock();
        let mut v: Vec<_> = g
            .waits
            .iter()
            .map(|(id, (name, _, _))| (id.clone(), name.clone()))
            .collect();
        v.sort();
        v
    }
}

#[async_trait]
impl Signals for MemorySignals {
    async fn take(
        &self,
        execution_id: &str,
        name: &str,
        step: u64,
    ) -> Result<Option<Value>, ExecError> {
        let mut g = self.lock();
        let Some(q) = g
            .queued
            .get_mut(&(execution_id.to_string(), name.to_string()))
        else {
            return Ok(None);
        };
        if let Some((v, _)) = q.iter().find(|(_, s)| *s == Some(step)) {
            return Ok(Some(v.clone()));
        }
        match q.iter_mut().find(|(_, s)| s.is_none()) {
            Some((v, s)) => {
                *s = Some(step);
                Ok(Some(v.clone()))
            }
            None => Ok(None),
        }
    }

    async fn wait(
        &self,
        execution_id: &str,
        name: &str,
        step: u64,
        timeout: Option<Duration>,
    ) -> Result<Wait, ExecError> {
        let mut g = self.lock();
        let now = now_ms();
        let entry = g
            .waits
            .entry(execution_id.to_string())
            .or_insert_with(|| (name.to_string(), step, wait_from(now, timeout)));
        if entry.0 != name || entry.1 != step {
            *entry = (name.to_string(), step, wait_from(now, timeout));
        }
        Ok(Wait {
            now_ms: now,
            ..entry.2.clone()
        })
    }

    async fn done(&self, execution_id: &str) -> Result<(), ExecError> {
        let mut g = self.lock();
        g.waits.remove(execution_id);
        Ok(())
    }
}

/// A wait beginning at `now` with an optional timeout (saturating).
pub fn wait_from(now: i64, timeout: Option<Duration>) -> Wait {
    Wait {
        since_ms: now,
        deadline_ms: timeout
            .map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))),
        now_ms: now,
    }
}

impl Run {
    /// The `wait_for` part of a state: `Ok(data)` when a signal is there,
    /// else the execution stops (or, past the deadline, fails with
    /// `timeout`).
    pub(crate) async fn run_wait(&mut self, state: &StateDef) -> Result<Value, ExecError> {
        let Some(spec) = &state.wait_for else {
            return Ok(Value::Null);
        };
        let name = match Templates::render(spec, &self.state_vars())
            .map_err(|e| template_err("wait_for", e))?
        {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(ExecError::new(
                    ErrorKind::TemplateError,
                    format!("wait_for: the signal name must be a string, not {other}"),
                ))
            }
        };
        if name.is_empty() {
            return Err(ExecError::new(
                ErrorKind::TemplateError,
                "wait_for: the signal name is empty",
            ));
        }
        let signals = self.shared.signals.clone();
        if let Some(data) = signals.take(&self.id, &name, self.step).await? {
            signals.done(&self.id).await?;
            tracing::info!(event = "signal", signal = %name, "signal received");
            return Ok(data);
        }
        let timeout = state.timeout.and_then(|t| t.positive());
        let wait = signals.wait(&self.id, &name, self.step, timeout).await?;
        if let Some(deadline) = wait.deadline_ms {
            if wait.now_ms >= deadline {
                signals.done(&self.id).await?;
                let secs = (deadline - wait.since_ms) as f64 / 1000.0;
                return Err(ExecError::new(
                    ErrorKind::Timeout,
                    format!("no signal '{name}' arrived within {secs:.0}s"),
                ));
            }
        }
        tracing::info!(event = "waiting", signal = %name, deadline_ms = wait.deadline_ms, "waiting for a signal");
        Err(ExecError::stopped(
            Stop::Waiting {
                signal: name.clone(),
                deadline_ms: wait.deadline_ms,
            },
            format!("waiting for signal '{name}'"),
        ))
    }
}

/// What `output_to_context` sees of a signal's data.
pub(crate) fn signal_output(data: Value) -> Value {
    match data {
        Value::Object(_) => data,
        other => json!({ "value": other }),
    }
}
