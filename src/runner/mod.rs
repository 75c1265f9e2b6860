//! The runner: the paper queue, the scheduler that claims and drives phases
//! under fenced claims, the reaper, budget, circuit breakers and modes.

pub mod breaker;
pub mod budget;
pub mod build;
pub mod config;
pub mod embedded;
pub mod gates;
pub mod ingest;
pub mod phase;
pub mod scheduler;
pub mod single;
pub mod systemd;
pub mod task;

pub use config::{Config, ConfigError, Loaded};
pub use phase::{Phase, STATUSES};
pub use systemd::Notifier;
