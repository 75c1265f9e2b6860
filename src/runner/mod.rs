//! The runner: the paper queue, the scheduler that claims and drives phases
//! under fenced claims, the reaper, budget, circuit breakers and modes.

pub mod breaker;
pub mod budget;
pub mod config;
pub mod phase;

pub use config::Config;
pub use phase::{Phase, STATUSES};
