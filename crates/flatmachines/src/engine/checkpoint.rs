//! Checkpoint events and the seam to durable storage.
//!
//! The engine calls [`Checkpointer::save`] at machine start, state enter,
//! state exit and machine end. A `state_exit` snapshot records the *next*
//! state too, so a resume from it never re-runs the state that finished; a
//! `state_enter` snapshot is the only case where a state runs again.

use super::error::ExecError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    MachineStart,
    StateEnter,
    StateExit,
    MachineEnd,
    /// The execution ended with an unrouted error.
    MachineFailed,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::MachineStart => "machine_start",
            Event::StateEnter => "state_enter",
            Event::StateExit => "state_exit",
            Event::MachineEnd => "machine_end",
            Event::MachineFailed => "machine_failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Event::MachineEnd | Event::MachineFailed)
    }
}

/// API calls and cost spent by an execution (children included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub api_calls: u64,
    pub cost: f64,
}

impl Totals {
    pub fn add(&mut self, other: Totals) {
        self.api_calls += other.api_calls;
        self.cost += other.cost;
    }
}

/// Everything needed to continue an execution from this point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub execution_id: String,
    pub parent_id: Option<String>,
    /// Index of the machine in its bundle.
    pub machine_index: usize,
    pub machine_name: String,
    pub event: Event,
    /// The state entered or exited (None at machine start/end).
    pub state: Option<String>,
    /// Where execution continues after this point (start: the initial state;
    /// exit: the transition's or `on_error`'s target).
    pub next_state: Option<String>,
    pub step: u64,
    pub context: Map<String, Value>,
    /// Final output (state exit of a final state, machine end).
    pub output: Option<Value>,
    /// The error of a routed state exit, or of a failed machine.
    pub error: Option<ExecError>,
    pub totals: Totals,
}

/// Where snapshots go. A failed save stops the execution: continuing without
/// a durable record (or after losing the lease) could pay for work twice.
#[async_trait]
pub trait Checkpointer: Send + Sync {
    async fn save(&self, snap: &Snapshot) -> Result<(), ExecError>;

    /// The latest snapshot of an execution, used to re-attach a child that
    /// already finished (deterministic ids) or to resume one.
    async fn latest(&self, execution_id: &str) -> Result<Option<Snapshot>, ExecError>;
}

/// Keeps nothing: `machine run` without `--db`.
pub struct NoCheckpoints;

#[async_trait]
impl Checkpointer for NoCheckpoints {
    async fn save(&self, _snap: &Snapshot) -> Result<(), ExecError> {
        Ok(())
    }

    async fn latest(&self, _execution_id: &str) -> Result<Option<Snapshot>, ExecError> {
        Ok(None)
    }
}

/// Keeps every snapshot in memory (tests, and inspecting a run).
#[derive(Default)]
pub struct MemoryCheckpoints {
    pub snapshots: std::sync::Mutex<Vec<Snapshot>>,
}

impl MemoryCheckpoints {
    /// All snapshots saved so far, in order.
    pub fn all(&self) -> Vec<Snapshot> {
        match self.snapshots.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

#[async_trait]
impl Checkpointer for MemoryCheckpoints {
    async fn save(&self, snap: &Snapshot) -> Result<(), ExecError> {
        match self.snapshots.lock() {
            Ok(mut g) => g.push(snap.clone()),
            Err(p) => p.into_inner().push(snap.clone()),
        }
        Ok(())
    }

    async fn latest(&self, execution_id: &str) -> Result<Option<Snapshot>, ExecError> {
        Ok(self
            .all()
            .into_iter()
            .rev()
            .find(|s| s.execution_id == execution_id))
    }
}
