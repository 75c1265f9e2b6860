//! Runner configuration: every option with its default, and the typed
//! settings the runner is built from.
//!
//! Sources, later wins: built-in defaults → the config file (`--config PATH`,
//! else `$RUNNER_CONFIG`, else `./config.toml` when present) → `RUNNER_*`
//! environment variables → command-line flags. Relative paths in a file
//! resolve against that file's directory, so a unit file can point at
//! `/etc/paper-runner/config.toml` and the paths inside it mean the same
//! thing whatever the working directory is; built-in defaults and
//! environment values stay relative to the current directory.
//!
//! [`load`] gathers the first three sources into the file model
//! ([`Config`]); the caller applies its flags and then calls
//! [`Config::resolve`], which is the one place that decides whether a value
//! is usable and the one place it is parsed: it returns the typed
//! [`Settings`] (durations, the day start as a time, the cron schedule, the
//! listen address, enums) or every problem at once, each naming its key.
//! Secrets (the provider API key, the HTTP bearer token) never live in the
//! file: the file only names the environment variables that hold them.
//!
//! One job per file:
//! - [`model`]: the file's structs, serde shape and defaults;
//! - [`file`]: finding, reading (capped) and parsing the file, errors with
//!   file:line:column;
//! - [`env`]: the `RUNNER_*` overlay;
//! - [`limits`]: the allowed range of every numeric option;
//! - [`resolve`]: validation and conversion into [`Settings`];
//! - [`settings`]: the typed settings and the one parser of each textual
//!   setting.

mod env;
mod file;
pub mod limits;
mod model;
mod resolve;
mod settings;

pub use env::env_overrides;
pub use file::{
    load, load_with, ConfigError, Loaded, Problem, CONFIG_ENV, DEFAULT_FILE, MAX_CONFIG_BYTES,
};
pub use model::{BreakerConfig, BudgetConfig, Config, OpsConfig, SchedulerConfig, SeedConfig};
pub use settings::{
    checked_secs_f64, parse_cron, parse_day_start, parse_hh_mm, parse_listen, BreakerSettings,
    BudgetSettings, LogFormat, ModelClass, OpsSettings, PrepBurst, SchedulerTimes, Settings,
};

pub use crate::fsx::{file_kind, read_bytes_capped, read_text_capped, CappedReadError};

#[cfg(test)]
mod tests;
