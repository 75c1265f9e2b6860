//! The FlatMachine executor: states, transitions, execution types, child
//! machines, actions, and the seams (`Agent`, `Checkpointer`) through which
//! the LLM and storage layers plug in. It knows nothing about papers.

pub mod action;
pub mod agent;
mod agent_call;
pub mod checkpoint;
mod children;
#[cfg(test)]
mod condition_cache_tests;
pub mod error;
mod exec;
pub mod hooks;
#[cfg(test)]
mod hooks_tests;
pub mod launch;
pub mod mdap;
pub mod python_hook;
mod run_hooks;
pub mod shell;
pub mod signals;
mod state;
pub mod tool_loop;

pub use action::{Action, ActionArgs, ActionRegistry};
pub use agent::{Agent, AgentRequest, AgentResult, NoLlm, ToolCall, ToolTurn, Usage};
pub use agent_call::retry_delay;
pub use checkpoint::{Checkpointer, Event, MemoryCheckpoints, NoCheckpoints, Snapshot, Totals};
pub use error::{ErrorKind, ErrorSource, ExecError, Parked, Stop};
pub use exec::Engine;
pub use exec::{Limits, MAX_CHILDREN_PER_ROOT, MAX_FANOUT_PER_STATE, MAX_NESTING_DEPTH};
pub use hooks::{HandlerSpec, Hook, HookCall, HookEvent, HookRegistry, HookReply, HookSpecError};
pub use python_hook::{PythonConfig, PythonHook};
pub use signals::{MemorySignals, Signals, Wait};
