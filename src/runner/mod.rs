//! The runner: the paper queue, the scheduler that claims and drives phases
//! under fenced claims, the reaper, budget, circuit breakers and modes.

pub mod config;
pub mod phase;
pub mod systemd;

pub use config::{Config, ConfigError, Loaded};
pub use phase::{Phase, STATUSES};
pub use systemd::Notifier;
