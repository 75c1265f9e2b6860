//! The `RUNNER_*` environment overlay: which variable sets which key, and
//! how its text becomes the file model's value. Applied after the file and
//! before the command-line flags; a bad value is an error naming the
//! variable, its value and the key it sets.

use super::file::ConfigError;
use super::model::Config;
use std::path::PathBuf;
use std::str::FromStr;

/// One `RUNNER_*` variable: the key it sets and how.
struct EnvOverride {
    var: &'static str,
    key: &'static str,
    apply: fn(&mut Config, &str) -> Result<(), String>,
}

/// Builds an [`EnvOverride`] that parses the value with `$parse` and
/// stores it in `$field`.
macro_rules! env_override {
    ($var:literal, $key:literal, |$c:ident| $field:expr, $parse:ident) => {
        EnvOverride {
            var: $var,
            key: $key,
            apply: |$c, v| {
                $field = $parse(v)?;
                Ok(())
            },
        }
    };
}

/// Every environment override, applied in this order after the file. For
/// optional keys an empty value means "unset" (e.g. `RUNNER_BUDGET_DAILY=`
/// lifts a limit the file sets).
const ENV_OVERRIDES: &[EnvOverride] = &[
    env_override!("RUNNER_DB", "db", |c| c.db, env_path),
    env_override!(
        "RUNNER_MACHINES_DIR",
        "machines_dir",
        |c| c.machines_dir,
        env_path
    ),
    env_override!("RUNNER_PROFILES", "profiles", |c| c.profiles, env_opt_path),
    env_override!("RUNNER_PDF_DIR", "pdf_dir", |c| c.pdf_dir, env_path),
    env_override!(
        "RUNNER_REPORTS_DIR",
        "reports_dir",
        |c| c.reports_dir,
        env_path
    ),
    env_override!(
        "RUNNER_TERMINOLOGY",
        "terminology",
        |c| c.terminology,
        env_opt_path
    ),
    env_override!(
        "RUNNER_CORPUS_DB",
        "corpus_db",
        |c| c.corpus_db,
        env_opt_path
    ),
    env_override!(
        "RUNNER_PDF_BASE_URL",
        "pdf_base_url",
        |c| c.pdf_base_url,
        env_text
    ),
    env_override!(
        "RUNNER_ARXIV_API_URL",
        "arxiv_api_url",
        |c| c.arxiv_api_url,
        env_text
    ),
    env_override!("RUNNER_SYNC_FULL", "sync_full", |c| c.sync_full, env_bool),
    env_override!(
        "RUNNER_WORKERS",
        "scheduler.workers",
        |c| c.scheduler.workers,
        env_int
    ),
    env_override!(
        "RUNNER_LEASE_TTL_SECS",
        "scheduler.lease_ttl_secs",
        |c| c.scheduler.lease_ttl_secs,
        env_int
    ),
    env_override!(
        "RUNNER_MAX_ATTEMPTS",
        "scheduler.max_attempts",
        |c| c.scheduler.max_attempts,
        env_int
    ),
    env_override!(
        "RUNNER_POLL_INTERVAL_SECS",
        "scheduler.poll_interval_secs",
        |c| c.scheduler.poll_interval_secs,
        env_float
    ),
    env_override!(
        "RUNNER_CLAIM_BACKLOG_SECS",
        "scheduler.claim_backlog_secs",
        |c| c.scheduler.claim_backlog_secs,
        env_float
    ),
    env_override!(
        "RUNNER_DRAIN_TIMEOUT_SECS",
        "scheduler.drain_timeout_secs",
        |c| c.scheduler.drain_timeout_secs,
        env_int
    ),
    env_override!(
        "RUNNER_PREP_BURST_CRON",
        "scheduler.prep_burst_cron",
        |c| c.scheduler.prep_burst_cron,
        env_opt_text
    ),
    env_override!(
        "RUNNER_BUDGET_DAILY",
        "budget.daily",
        |c| c.budget.daily,
        env_opt_int
    ),
    env_override!(
        "RUNNER_BUDGET_CHEAP",
        "budget.cheap",
        |c| c.budget.cheap,
        env_opt_int
    ),
    env_override!(
        "RUNNER_BUDGET_EXPENSIVE",
        "budget.expensive",
        |c| c.budget.expensive,
        env_opt_int
    ),
    env_override!(
        "RUNNER_BUDGET_DAILY_USD",
        "budget.daily_usd",
        |c| c.budget.daily_usd,
        env_opt_float
    ),
    env_override!(
        "RUNNER_BUDGET_CHEAP_USD",
        "budget.cheap_usd",
        |c| c.budget.cheap_usd,
        env_opt_float
    ),
    env_override!(
        "RUNNER_BUDGET_EXPENSIVE_USD",
        "budget.expensive_usd",
        |c| c.budget.expensive_usd,
        env_opt_float
    ),
    env_override!(
        "RUNNER_BUDGET_DAILY_TOKENS",
        "budget.daily_tokens",
        |c| c.budget.daily_tokens,
        env_opt_int
    ),
    env_override!(
        "RUNNER_BUDGET_CHEAP_TOKENS",
        "budget.cheap_tokens",
        |c| c.budget.cheap_tokens,
        env_opt_int
    ),
    env_override!(
        "RUNNER_BUDGET_EXPENSIVE_TOKENS",
        "budget.expensive_tokens",
        |c| c.budget.expensive_tokens,
        env_opt_int
    ),
    env_override!(
        "RUNNER_LISTEN",
        "ops.listen",
        |c| c.ops.listen,
        env_opt_text
    ),
    env_override!(
        "RUNNER_TOKEN_ENV",
        "ops.token_env",
        |c| c.ops.token_env,
        env_opt_text
    ),
    env_override!(
        "RUNNER_LOG_FORMAT",
        "ops.log_format",
        |c| c.ops.log_format,
        env_text
    ),
];

/// The `RUNNER_*` variables [`load`] reads, each with the key it sets, for
/// documentation and `--help` text.
pub fn env_overrides() -> impl Iterator<Item = (&'static str, &'static str)> {
    ENV_OVERRIDES.iter().map(|o| (o.var, o.key))
}

pub(super) fn apply_env(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for o in ENV_OVERRIDES {
        if let Some(value) = env(o.var) {
            (o.apply)(config, &value).map_err(|message| ConfigError::Env {
                var: o.var,
                key: o.key,
                value,
                message,
            })?;
        }
    }
    Ok(())
}

fn env_text(v: &str) -> Result<String, String> {
    if v.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(v.to_string())
    }
}

fn env_opt_text(v: &str) -> Result<Option<String>, String> {
    Ok((!v.trim().is_empty()).then(|| v.to_string()))
}

fn env_path(v: &str) -> Result<PathBuf, String> {
    env_text(v).map(PathBuf::from)
}

fn env_opt_path(v: &str) -> Result<Option<PathBuf>, String> {
    env_opt_text(v).map(|t| t.map(PathBuf::from))
}

fn env_int<T: FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| "expected a whole number, 0 or more".to_string())
}

fn env_opt_int<T: FromStr>(v: &str) -> Result<Option<T>, String> {
    if v.trim().is_empty() {
        Ok(None)
    } else {
        env_int(v).map(Some)
    }
}

fn env_float(v: &str) -> Result<f64, String> {
    v.trim()
        .parse()
        .map_err(|_| "expected a number, e.g. 2.5".to_string())
}

fn env_opt_float(v: &str) -> Result<Option<f64>, String> {
    if v.trim().is_empty() {
        Ok(None)
    } else {
        env_float(v).map(Some)
    }
}

fn env_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}
