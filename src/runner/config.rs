//! Runner configuration: every option with its default.
//!
//! Sources, later wins: built-in defaults → the config file (`--config PATH`,
//! else `$RUNNER_CONFIG`, else `./config.toml` when present) → `RUNNER_*`
//! environment variables → command-line flags. Relative paths in a file
//! resolve against that file's directory, so a unit file can point at
//! `/etc/paper-runner/config.toml` and the paths inside it mean the same
//! thing whatever the working directory is; built-in defaults and
//! environment values stay relative to the current directory.
//!
//! [`load`] gathers the first three sources; the caller applies its flags
//! and then calls [`Config::validate`], which is the one place that decides
//! whether a value is usable. Secrets (the provider API key, the HTTP bearer
//! token) never live in the file: the file only names the environment
//! variables that hold them.

use super::phase::Phase;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SQLite database (queue, checkpoints, ledger).
    pub db: PathBuf,
    /// Directory of prep.yml, expensive.yml, wrap.yml.
    pub machines_dir: PathBuf,
    /// Profile catalog; None = the nearest profiles.yml from the machines.
    pub profiles: Option<PathBuf>,
    /// Where acquired PDFs are cached.
    pub pdf_dir: PathBuf,
    /// Where reports are written.
    pub reports_dir: PathBuf,
    /// Terminology file (canonical term → aliases); None = built-in list.
    pub terminology: Option<PathBuf>,
    /// Optional read-only arxiv-crawler corpus DB (also the `--seed` source).
    pub corpus_db: Option<PathBuf>,
    /// PDFs are fetched from `{pdf_base_url}/{arxiv_id}`.
    pub pdf_base_url: String,
    /// arXiv Atom API for metadata of `runner add`.
    pub arxiv_api_url: String,
    /// Approximate tokens of paper text per prompt.
    pub prompt_token_budget: usize,
    /// fsync every commit (`synchronous=FULL`).
    pub sync_full: bool,
    pub scheduler: SchedulerConfig,
    pub budget: BudgetConfig,
    pub breaker: BreakerConfig,
    pub seed: SeedConfig,
    pub ops: OpsConfig,
    /// Limits on one PDF extraction (a worker process per PDF).
    pub pdf: crate::pipeline::pdf_child::PdfConfig,
    /// Limits of the `shell` action.
    pub shell: crate::engine::shell::ShellConfig,
    /// Limits on PDF downloads (`[download]`).
    pub download: crate::pipeline::acquire::DownloadConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Global cap on phases in flight.
    pub workers: usize,
    /// Optional per-phase caps (phase name → max in flight).
    pub phase_caps: BTreeMap<Phase, usize>,
    /// Claim order between phases once in-flight work is resumed.
    pub phase_order: Vec<Phase>,
    /// When set, prep is preferred while fewer than this many papers are prepped.
    pub prepped_low_watermark: Option<usize>,
    /// Claim/lease TTL in seconds (renewed every TTL/3).
    pub lease_ttl_secs: u64,
    /// Attempts per phase before the paper is failed.
    pub max_attempts: u32,
    /// `not_before` after a failed attempt: base × 2^(attempt-1), seconds.
    pub retry_base_secs: u64,
    /// Upper bound of that delay, seconds.
    pub retry_max_secs: u64,
    /// Daemon: how often to look for claimable work when idle, seconds.
    pub poll_interval_secs: f64,
    /// Do not claim a phase while a model it calls is booked more than this
    /// many seconds ahead by the rate limiter (the phase would only wait
    /// in the limiter while holding a worker slot), seconds.
    pub claim_backlog_secs: f64,
    /// SIGTERM: how long in-flight work may take to finish, seconds.
    pub drain_timeout_secs: u64,
    /// Cron expression (UTC, with seconds field as the `cron` crate wants,
    /// e.g. "0 0 23 * * *") that starts an automatic prep-only window.
    pub prep_burst_cron: Option<String>,
    /// Length of that window in minutes.
    pub prep_burst_minutes: u64,
    /// Longest a phase may run (per attempt), seconds: past it the phase is
    /// stopped and failed as a retryable `timeout` naming its state.
    pub phase_timeout_secs: u64,
    /// A call that would wait longer than this for its model (breaker open,
    /// limiter paused or booked ahead) parks its phase — the claim goes
    /// back and the worker slot is freed — instead of waiting, seconds (at
    /// least `claim_backlog_secs` is used).
    pub park_after_secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Daily request budget over all classes (None = unlimited).
    pub daily: Option<u64>,
    /// Daily request budget of the cheap class (None = unlimited).
    pub cheap: Option<u64>,
    /// Daily request budget of the expensive class (None = unlimited).
    pub expensive: Option<u64>,
    /// Start of the budget day, "HH:MM" in UTC.
    pub day_start_utc: String,
    /// Profile name → class ("cheap" | "expensive"). Profiles not listed:
    /// "expensive" when the name contains "expensive", else "cheap".
    pub classes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// 429s within the window that open a model's breaker.
    pub rate_limit_threshold: u32,
    /// Server errors / timeouts within the window that open it.
    pub error_threshold: u32,
    /// Sliding window, seconds.
    pub window_secs: u64,
    /// First open period, seconds (doubles on each consecutive opening).
    pub open_base_secs: u64,
    /// Longest open period, seconds.
    pub open_max_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SeedConfig {
    /// arxiv-crawler DB to seed from (default: `corpus_db`).
    pub db: Option<PathBuf>,
    /// Most papers added per seeding.
    pub limit: Option<usize>,
    /// Daemon with --seed: re-seed every this many seconds.
    pub interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Serve /metrics, /status, /healthz here (e.g. "127.0.0.1:9464").
    pub listen: Option<String>,
    /// Environment variable holding a bearer token required by the HTTP
    /// endpoints (required when `listen` is not a loopback address).
    pub token_env: Option<String>,
    /// "human" or "json".
    pub log_format: String,
    /// Most HTTP connections open at once; at the cap a new connection
    /// closes the one idle longest (or is refused when every one is busy),
    /// so the endpoint never holds more than this many descriptors.
    pub max_connections: u32,
    /// Seconds a connection may take to send a complete request head.
    pub header_timeout_secs: u64,
    /// Seconds a connection may go without moving a byte while no request
    /// of it is being handled (e.g. a client that stops reading).
    pub idle_timeout_secs: u64,
    /// Seconds a request may take to be answered; past it: 503.
    pub request_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: PathBuf::from("data/runner.db"),
            machines_dir: PathBuf::from("machines"),
            profiles: None,
            pdf_dir: PathBuf::from("data/pdfs"),
            reports_dir: PathBuf::from("reports"),
            terminology: None,
            corpus_db: None,
            pdf_base_url: "https://export.arxiv.org/pdf".into(),
            arxiv_api_url: "https://export.arxiv.org/api/query".into(),
            prompt_token_budget: 24_000,
            sync_full: false,
            scheduler: SchedulerConfig::default(),
            budget: BudgetConfig::default(),
            breaker: BreakerConfig::default(),
            seed: SeedConfig::default(),
            ops: OpsConfig::default(),
            pdf: Default::default(),
            shell: crate::engine::shell::ShellConfig::default(),
            download: Default::default(),
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            workers: 4,
            phase_caps: BTreeMap::new(),
            phase_order: vec![Phase::Expensive, Phase::Wrap, Phase::Prep],
            prepped_low_watermark: None,
            lease_ttl_secs: 300,
            max_attempts: 3,
            retry_base_secs: 60,
            retry_max_secs: 3600,
            poll_interval_secs: 10.0,
            claim_backlog_secs: 2.0,
            drain_timeout_secs: 60,
            prep_burst_cron: None,
            prep_burst_minutes: 60,
            phase_timeout_secs: 1800,
            park_after_secs: 10.0,
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            daily: None,
            cheap: None,
            expensive: None,
            day_start_utc: "00:00".into(),
            classes: BTreeMap::new(),
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            rate_limit_threshold: 5,
            error_threshold: 10,
            window_secs: 60,
            open_base_secs: 30,
            open_max_secs: 1800,
        }
    }
}

impl Default for SeedConfig {
    fn default() -> Self {
        SeedConfig {
            db: None,
            limit: None,
            interval_secs: 3600,
        }
    }
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: None,
            token_env: None,
            log_format: "human".into(),
            max_connections: 64,
            header_timeout_secs: 10,
            idle_timeout_secs: 30,
            request_timeout_secs: 30,
        }
    }
}

/// Seconds → a duration of at most a day; NaN and negatives are zero.
fn secs_capped(secs: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(secs.min(86_400.0)).unwrap_or_default()
}

impl SchedulerConfig {
    /// Phases whose model the limiter has booked further ahead than this
    /// are not claimed (validated to 0–86400 s; clamped again so a value
    /// that skipped validation cannot panic).
    pub fn claim_backlog(&self) -> std::time::Duration {
        secs_capped(self.claim_backlog_secs)
    }

    /// Calls whose model is blocked longer than this park their phase
    /// instead of waiting; never less than [`claim_backlog`](Self::claim_backlog),
    /// so a phase the gates let through is not parked at once. The daemon
    /// and `runner status` derive the mode from these two alone.
    pub fn park_after(&self) -> std::time::Duration {
        secs_capped(self.park_after_secs).max(self.claim_backlog())
    }
}

impl BudgetConfig {
    /// The class ("cheap" or "expensive") of a profile name.
    pub fn class_of(&self, profile: &str) -> &str {
        match self.classes.get(profile) {
            Some(c) => c.as_str(),
            None if profile.contains("expensive") => "expensive",
            None => "cheap",
        }
    }

    /// Start of the budget day as (hour, minute) UTC. [`Config::validate`]
    /// rejects a malformed `day_start_utc`, so after validation this is the
    /// configured time; an unvalidated bad value falls back to midnight
    /// rather than panicking.
    pub fn day_start(&self) -> (u32, u32) {
        parse_hh_mm(&self.day_start_utc).unwrap_or((0, 0))
    }
}

impl OpsConfig {
    /// Whether `listen` is a loopback address (127.0.0.0/8 or ::1). Only
    /// loopback listeners may go without a bearer token: anything else is
    /// reachable from other hosts. False when `listen` is unset or malformed.
    pub fn is_loopback_listen(&self) -> bool {
        self.listen
            .as_deref()
            .and_then(|s| s.parse::<SocketAddr>().ok())
            .is_some_and(|a| a.ip().is_loopback())
    }
}

/// The file looked for in the current directory when neither `--config`
/// nor `$RUNNER_CONFIG` names one.
pub const DEFAULT_FILE: &str = "config.toml";

/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "RUNNER_CONFIG";

/// A loaded configuration and the file it came from (`None` = built-in
/// defaults and environment only), so the log and `status` can say which
/// file is in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub source: Option<PathBuf>,
}

/// One unusable value found by [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `scheduler.workers`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded or is not usable. Every variant
/// names what to fix: the file (with line and column when known), the key,
/// or the environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named by `--config` or `$RUNNER_CONFIG` is not there. Unlike
    /// a missing `./config.toml` this is an error: the operator asked for
    /// that file, and running on defaults instead would hide a typo.
    #[error("config file {} (from {origin}) does not exist", .path.display())]
    NotFound { path: PathBuf, origin: &'static str },
    #[error("config file {}: cannot read: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    /// Larger than [`MAX_CONFIG_BYTES`]: not a config file.
    #[error("config file {}: larger than the {limit}-byte limit for config files", .path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    /// Bad TOML, an unknown key or a value of the wrong type. `message`
    /// already names the key.
    #[error("{}{}: {message}", .path.display(), position(.line, .column))]
    Parse {
        path: PathBuf,
        /// Dotted key of the offending entry, when the error is about one.
        key: Option<String>,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("environment variable {var}={value:?} (sets {key}): {message}")]
    Env {
        var: &'static str,
        key: &'static str,
        value: String,
        message: String,
    },
    /// Every problem [`Config::validate`] found, not just the first, so one
    /// edit fixes them all.
    #[error("invalid configuration: {}", join_problems(.problems))]
    Invalid { problems: Vec<Problem> },
}

fn position(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Loads the configuration from the process environment: the file named by
/// `explicit` (`--config`), else `$RUNNER_CONFIG`, else `./config.toml` when
/// it exists, else built-in defaults; then `RUNNER_*` overrides.
///
/// The result is not validated: apply command-line flags first, then call
/// [`Config::validate`].
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    load_with(explicit, &env, Path::new(DEFAULT_FILE))
}

/// [`load`] with the environment and the fallback file passed in, so tests
/// (and embedders) need not touch the process environment or the current
/// directory. `env` returns a variable's value, `None` when unset.
pub fn load_with(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    default_file: &Path,
) -> Result<Loaded, ConfigError> {
    let from_env = env(CONFIG_ENV).filter(|v| !v.is_empty());
    let (path, origin) = match (explicit, from_env) {
        (Some(p), _) => (p.to_path_buf(), Some("--config")),
        (None, Some(p)) => (PathBuf::from(p), Some("$RUNNER_CONFIG")),
        (None, None) => (default_file.to_path_buf(), None),
    };
    let (mut config, source) = match read_file(&path, origin)? {
        Some(text) => (parse_file(&text, &path)?, Some(path)),
        None => (Config::default(), None),
    };
    apply_env(&mut config, env)?;
    Ok(Loaded { config, source })
}

/// The file's text; `None` when the fallback file is simply absent.
///
/// Read with [`read_text_capped`]: a config is a few KiB, so anything
/// larger than [`MAX_CONFIG_BYTES`] (or not a regular file at all, e.g.
/// `--config /dev/zero` or a FIFO) is refused before it can eat memory or
/// block the start.
fn read_file(path: &Path, origin: Option<&'static str>) -> Result<Option<String>, ConfigError> {
    match read_text_capped(path, MAX_CONFIG_BYTES) {
        Ok(text) => Ok(Some(text)),
        Err(CappedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => match origin {
            Some(origin) => Err(ConfigError::NotFound {
                path: path.to_path_buf(),
                origin,
            }),
            None => Ok(None),
        },
        Err(CappedReadError::TooLarge { limit }) => Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            limit,
        }),
        Err(e) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Largest config file read: 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

pub use crate::fsx::{file_kind, read_bytes_capped, read_text_capped, CappedReadError};

/// Parses a config file and resolves the relative paths it sets against
/// its directory.
///
/// The text is parsed twice: once as a plain table, to know which keys the
/// file sets (only those paths are resolved: a default the file does not
/// mention stays relative to the working directory), and once into
/// [`Config`] through `serde_path_to_error`, because toml's own errors name
/// a leaf field (`wrokers`) but not where it sits (`scheduler.wrokers`).
fn parse_file(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| parse_error(path, text, &e, None))?;
    let de = toml::Deserializer::parse(text).map_err(|e| parse_error(path, text, &e, None))?;
    let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        // serde_path_to_error writes `?` for a map key it could not read
        // (`scheduler.phase_caps.?`); the map itself is the useful name.
        let key = e.path().to_string();
        let key = key.strip_suffix(".?").unwrap_or(&key).to_string();
        let key = (!key.is_empty() && key != "." && key != "?").then_some(key);
        parse_error(path, text, e.inner(), key)
    })?;
    resolve_paths(&mut config, &table, path.parent().unwrap_or(Path::new("")));
    Ok(config)
}

fn parse_error(path: &Path, text: &str, e: &toml::de::Error, key: Option<String>) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let (l, c) = line_column(text, span.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    let inner = e.message().trim();
    let message = match &key {
        Some(k) if inner.starts_with("unknown field") => match inner.split_once(", ") {
            Some((_, expected)) => format!("unknown key '{k}' ({expected})"),
            None => format!("unknown key '{k}'"),
        },
        Some(k) => format!("{k}: {inner}"),
        None => inner.to_string(),
    };
    ConfigError::Parse {
        path: path.to_path_buf(),
        key,
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn resolve_paths(config: &mut Config, table: &toml::Table, base: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    // Required paths have defaults: resolve only those the file sets.
    for (key, field) in [
        ("db", &mut config.db),
        ("machines_dir", &mut config.machines_dir),
        ("pdf_dir", &mut config.pdf_dir),
        ("reports_dir", &mut config.reports_dir),
    ] {
        if table.contains_key(key) {
            resolve(field);
        }
    }
    // Optional paths default to None, so Some means the file set them.
    for field in [
        &mut config.profiles,
        &mut config.terminology,
        &mut config.corpus_db,
        &mut config.seed.db,
    ]
    .into_iter()
    .flatten()
    {
        resolve(field);
    }
}

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

fn apply_env(config: &mut Config, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
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

fn env_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// The `cron` crate's error on one line. Its message echoes the expression
/// with a caret under the bad spot on the next line; a config error must be
/// one line, so the caret becomes a character position.
fn cron_detail(expr: &str, message: &str) -> String {
    let mut at = None;
    let mut rest = Vec::new();
    for line in message.lines() {
        let t = line.trim();
        if t == "^" {
            at = line.find('^');
        } else if !t.is_empty() && t != expr.trim() {
            rest.push(t);
        }
    }
    let mut out = String::new();
    if let Some(i) = at {
        out.push_str(&format!(" (at character {})", i + 1));
    }
    if !rest.is_empty() {
        out.push_str(": ");
        out.push_str(&rest.join(" "));
    }
    out
}

/// The one parser of `budget.day_start_utc` (validation and the budget
/// both use it, so a value that validates is a value the budget accepts):
/// "HH:MM" or "H:MM" in UTC, 00:00 to 23:59 → (hour, minute).
pub fn parse_hh_mm(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.trim().split_once(':')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// The allowed range (inclusive) of every numeric option. [`Config::validate`]
/// refuses a value outside, naming the key, the value and the range.
///
/// Why bounds and not just "positive": every deadline the runner derives
/// from these (now + lease TTL, base × 2^attempt, window × 1000, …) must stay
/// far from integer overflow. An unbounded `lease_ttl_secs = 9.3e15` once
/// wrapped `lease_until` negative, and a second daemon reaped the first
/// one's live claims. The maxima are generous for real use and small enough
/// that any product or sum of them with "now" fits an `i64` of milliseconds.
pub mod limits {
    use std::ops::RangeInclusive;

    /// Claim/lease TTL: 5 s (renewals every TTL/3 need some slack) to 24 h.
    pub const LEASE_TTL_SECS: RangeInclusive<u64> = 5..=86_400;
    pub const WORKERS: RangeInclusive<usize> = 1..=4096;
    /// A per-phase cap (0 = that phase is never claimed).
    pub const PHASE_CAP: RangeInclusive<usize> = 0..=4096;
    pub const PREPPED_LOW_WATERMARK: RangeInclusive<usize> = 0..=10_000_000;
    pub const MAX_ATTEMPTS: RangeInclusive<u32> = 1..=100;
    /// Retry delays: up to 7 days.
    pub const RETRY_SECS: RangeInclusive<u64> = 0..=604_800;
    pub const POLL_INTERVAL_SECS: RangeInclusive<f64> = 0.01..=3_600.0;
    pub const CLAIM_BACKLOG_SECS: RangeInclusive<f64> = 0.0..=86_400.0;
    pub const DRAIN_TIMEOUT_SECS: RangeInclusive<u64> = 0..=86_400;
    /// Deadline of one phase: 1 s to 7 days.
    pub const PHASE_TIMEOUT_SECS: RangeInclusive<u64> = 1..=604_800;
    /// Longest a call waits for its model before its phase parks.
    pub const PARK_AFTER_SECS: RangeInclusive<f64> = 0.0..=86_400.0;
    /// Prep-burst window: 1 minute to 1 day.
    pub const PREP_BURST_MINUTES: RangeInclusive<u64> = 1..=1_440;
    /// Daily request budgets (0 = nothing of that class today).
    pub const BUDGET: RangeInclusive<u64> = 0..=1_000_000_000;
    pub const PROMPT_TOKEN_BUDGET: RangeInclusive<usize> = 1..=10_000_000;
    pub const BREAKER_THRESHOLD: RangeInclusive<u32> = 1..=100_000;
    /// Breaker window and open periods: 1 s to 7 days.
    pub const BREAKER_SECS: RangeInclusive<u64> = 1..=604_800;
    pub const SEED_INTERVAL_SECS: RangeInclusive<u64> = 1..=604_800;
    pub const SEED_LIMIT: RangeInclusive<usize> = 0..=10_000_000;
}

/// `None` when `value` is in `range`; else the problem, naming the value
/// and the range (NaN and infinities are never in a range).
fn out_of_range<T: PartialOrd + fmt::Display>(
    value: T,
    range: &std::ops::RangeInclusive<T>,
    unit: &str,
) -> Option<String> {
    (!range.contains(&value)).then(|| {
        format!(
            "{value} is out of range: allowed {} to {}{unit}",
            range.start(),
            range.end()
        )
    })
}

impl Config {
    /// Checks every value that the types alone do not constrain and reports
    /// all problems at once. Call it after the command-line flags are
    /// applied: the rest of the runner relies on these invariants (e.g. a
    /// positive poll interval, a parseable cron) instead of re-checking.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut range = |key: &str, problem: Option<String>| {
            if let Some(message) = problem {
                problems.push(Problem {
                    key: key.to_string(),
                    message,
                });
            }
        };
        self.check_ranges(&mut range);
        let mut check = |ok: bool, key: &str, message: String| {
            if !ok {
                problems.push(Problem {
                    key: key.to_string(),
                    message,
                });
            }
        };

        for (key, message) in self.pdf.problems() {
            check(false, key, message);
        }
        for (key, url) in [
            ("pdf_base_url", &self.pdf_base_url),
            ("arxiv_api_url", &self.arxiv_api_url),
        ] {
            check(
                url.starts_with("http://") || url.starts_with("https://"),
                key,
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }

        let s = &self.scheduler;
        check(
            s.retry_base_secs <= s.retry_max_secs,
            "scheduler.retry_max_secs",
            format!(
                "must not be below scheduler.retry_base_secs ({})",
                s.retry_base_secs
            ),
        );
        for (i, phase) in s.phase_order.iter().enumerate() {
            check(
                !s.phase_order[..i].contains(phase),
                "scheduler.phase_order",
                format!("lists {phase} more than once"),
            );
        }
        if let Some(expr) = &s.prep_burst_cron {
            if let Err(e) = cron::Schedule::try_from(expr.as_str()) {
                let hint = if expr.split_whitespace().count() == 5 {
                    " (the first field is seconds: for 23:00 daily write \"0 0 23 * * *\")"
                } else {
                    ""
                };
                check(
                    false,
                    "scheduler.prep_burst_cron",
                    format!(
                        "{expr:?} is not a cron expression{}{hint}",
                        cron_detail(expr, &e.to_string())
                    ),
                );
            }
        }

        let b = &self.budget;
        check(
            parse_hh_mm(&b.day_start_utc).is_some(),
            "budget.day_start_utc",
            format!(
                "{:?} is not a time HH:MM or H:MM in UTC (00:00 to 23:59)",
                b.day_start_utc
            ),
        );
        for (profile, class) in &b.classes {
            check(
                class == "cheap" || class == "expensive",
                &format!("budget.classes.{profile}"),
                format!("{class:?} is not a class: expected \"cheap\" or \"expensive\""),
            );
        }

        let br = &self.breaker;
        check(
            br.open_base_secs <= br.open_max_secs,
            "breaker.open_max_secs",
            format!(
                "must not be below breaker.open_base_secs ({})",
                br.open_base_secs
            ),
        );

        let o = &self.ops;
        check(
            o.log_format == "human" || o.log_format == "json",
            "ops.log_format",
            format!(
                "{:?} is not a log format: expected \"human\" or \"json\"",
                o.log_format
            ),
        );
        if let Some(listen) = &o.listen {
            match listen.parse::<SocketAddr>() {
                Err(_) => check(
                    false,
                    "ops.listen",
                    format!("{listen:?} is not a socket address IP:PORT, e.g. \"127.0.0.1:9464\""),
                ),
                Ok(addr) => check(
                    addr.ip().is_loopback() || o.token_env.is_some(),
                    "ops.token_env",
                    format!(
                        "must name the environment variable holding a bearer token when ops.listen ({listen}) is not a loopback address"
                    ),
                ),
            }
        }
        if let Some(var) = &o.token_env {
            check(
                !var.trim().is_empty(),
                "ops.token_env",
                "must not be empty".into(),
            );
        }
        check(
            (1..=4096).contains(&o.max_connections),
            "ops.max_connections",
            format!("{} is out of range: must be 1 ..= 4096", o.max_connections),
        );
        for (key, value) in [
            ("ops.header_timeout_secs", o.header_timeout_secs),
            ("ops.idle_timeout_secs", o.idle_timeout_secs),
            ("ops.request_timeout_secs", o.request_timeout_secs),
        ] {
            check(
                (1..=3600).contains(&value),
                key,
                format!("{value} is out of range: must be 1 ..= 3600 seconds"),
            );
        }

        for (key, message) in self.shell.problems() {
            check(false, key, message);
        }

        for (key, message) in self.download.problems() {
            check(false, key, message);
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    /// Every numeric option against its range in [`limits`], in the order
    /// the keys appear in the file. `report(key, problem)` collects.
    fn check_ranges(&self, report: &mut dyn FnMut(&str, Option<String>)) {
        use limits as l;
        const S: &str = " seconds";
        report(
            "prompt_token_budget",
            out_of_range(self.prompt_token_budget, &l::PROMPT_TOKEN_BUDGET, ""),
        );
        let s = &self.scheduler;
        report(
            "scheduler.workers",
            out_of_range(s.workers, &l::WORKERS, ""),
        );
        for (phase, cap) in &s.phase_caps {
            report(
                &format!("scheduler.phase_caps.{phase}"),
                out_of_range(*cap, &l::PHASE_CAP, ""),
            );
        }
        if let Some(w) = s.prepped_low_watermark {
            report(
                "scheduler.prepped_low_watermark",
                out_of_range(w, &l::PREPPED_LOW_WATERMARK, ""),
            );
        }
        report(
            "scheduler.lease_ttl_secs",
            out_of_range(s.lease_ttl_secs, &l::LEASE_TTL_SECS, S),
        );
        report(
            "scheduler.max_attempts",
            out_of_range(s.max_attempts, &l::MAX_ATTEMPTS, ""),
        );
        report(
            "scheduler.retry_base_secs",
            out_of_range(s.retry_base_secs, &l::RETRY_SECS, S),
        );
        report(
            "scheduler.retry_max_secs",
            out_of_range(s.retry_max_secs, &l::RETRY_SECS, S),
        );
        report(
            "scheduler.poll_interval_secs",
            out_of_range(s.poll_interval_secs, &l::POLL_INTERVAL_SECS, S),
        );
        report(
            "scheduler.claim_backlog_secs",
            out_of_range(s.claim_backlog_secs, &l::CLAIM_BACKLOG_SECS, S),
        );
        report(
            "scheduler.drain_timeout_secs",
            out_of_range(s.drain_timeout_secs, &l::DRAIN_TIMEOUT_SECS, S),
        );
        report(
            "scheduler.phase_timeout_secs",
            out_of_range(s.phase_timeout_secs, &l::PHASE_TIMEOUT_SECS, S),
        );
        report(
            "scheduler.park_after_secs",
            out_of_range(s.park_after_secs, &l::PARK_AFTER_SECS, S),
        );
        report(
            "scheduler.prep_burst_minutes",
            out_of_range(s.prep_burst_minutes, &l::PREP_BURST_MINUTES, " minutes"),
        );
        let b = &self.budget;
        for (key, value) in [
            ("budget.daily", b.daily),
            ("budget.cheap", b.cheap),
            ("budget.expensive", b.expensive),
        ] {
            if let Some(v) = value {
                report(key, out_of_range(v, &l::BUDGET, " requests"));
            }
        }
        let br = &self.breaker;
        report(
            "breaker.rate_limit_threshold",
            out_of_range(br.rate_limit_threshold, &l::BREAKER_THRESHOLD, ""),
        );
        report(
            "breaker.error_threshold",
            out_of_range(br.error_threshold, &l::BREAKER_THRESHOLD, ""),
        );
        for (key, value) in [
            ("breaker.window_secs", br.window_secs),
            ("breaker.open_base_secs", br.open_base_secs),
            ("breaker.open_max_secs", br.open_max_secs),
        ] {
            report(key, out_of_range(value, &l::BREAKER_SECS, S));
        }
        if let Some(n) = self.seed.limit {
            report("seed.limit", out_of_range(n, &l::SEED_LIMIT, ""));
        }
        report(
            "seed.interval_secs",
            out_of_range(self.seed.interval_secs, &l::SEED_INTERVAL_SECS, S),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An environment made of the given pairs; nothing else is set.
    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load_file(text: &str) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "config.toml", text);
        load_with(Some(&path), &no_env, &dir.path().join("absent.toml"))
    }

    fn problems(config: &Config) -> Vec<Problem> {
        match config.validate() {
            Ok(()) => Vec::new(),
            Err(ConfigError::Invalid { problems }) => problems,
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    fn problem_keys(config: &Config) -> Vec<String> {
        problems(config).into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn defaults_when_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_with(None, &no_env, &dir.path().join("config.toml")).unwrap();
        assert_eq!(loaded.source, None);
        assert_eq!(loaded.config, Config::default());
        Config::default().validate().unwrap();
    }

    #[test]
    fn fallback_file_is_used_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "config.toml", "[scheduler]\nworkers = 9\n");
        let loaded = load_with(None, &no_env, &path).unwrap();
        assert_eq!(loaded.source.as_deref(), Some(path.as_path()));
        assert_eq!(loaded.config.scheduler.workers, 9);
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = load_with(Some(&missing), &no_env, &dir.path().join("config.toml")).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NotFound {
                origin: "--config",
                ..
            }
        ));
        assert!(err.to_string().contains("nope.toml"), "{err}");

        let env = env_of(&[(CONFIG_ENV, missing.to_str().unwrap())]);
        let err = load_with(None, &env, &dir.path().join("config.toml")).unwrap_err();
        assert!(err.to_string().contains("$RUNNER_CONFIG"), "{err}");
    }

    #[test]
    fn explicit_beats_env_beats_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.toml", "[scheduler]\nworkers = 1\n");
        let b = write(dir.path(), "b.toml", "[scheduler]\nworkers = 2\n");
        let c = write(dir.path(), "config.toml", "[scheduler]\nworkers = 3\n");
        let env = env_of(&[(CONFIG_ENV, b.to_str().unwrap())]);
        let workers = |explicit: Option<&Path>, env: &dyn Fn(&str) -> Option<String>| {
            load_with(explicit, env, &c)
                .unwrap()
                .config
                .scheduler
                .workers
        };
        assert_eq!(workers(Some(&a), &env), 1);
        assert_eq!(workers(None, &env), 2);
        assert_eq!(workers(None, &no_env), 3);
        // An empty RUNNER_CONFIG counts as unset.
        assert_eq!(workers(None, &env_of(&[(CONFIG_ENV, "")])), 3);
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let err = load_file("db = \"x.db\"\n\n[scheduler]\nwrokers = 3\n").unwrap_err();
        let ConfigError::Parse { key, line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(key.as_deref(), Some("scheduler.wrokers"));
        assert_eq!(*line, Some(4));
        let msg = err.to_string();
        assert!(
            msg.contains("config.toml:4:1: unknown key 'scheduler.wrokers'"),
            "{msg}"
        );
        assert!(
            msg.contains("`workers`"),
            "the message lists valid keys: {msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");

        // Dotted and top-level keys are named the same way.
        let msg = load_file("scheduler.wrokers = 3\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown key 'scheduler.wrokers'"), "{msg}");
        let msg = load_file("bogus = 1\n").unwrap_err().to_string();
        assert!(
            msg.contains("config.toml:1:1: unknown key 'bogus'"),
            "{msg}"
        );
    }

    #[test]
    fn mistyped_value_names_key_and_line() {
        let err = load_file("[scheduler]\nworkers = \"four\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("config.toml:2:11: scheduler.workers: invalid type"),
            "{msg}"
        );
        let msg = load_file("[scheduler]\nphase_order = [\"prep\", \"wrpa\"]\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("scheduler.phase_order"), "{msg}");
        assert!(msg.contains("wrpa"), "{msg}");
        let msg = load_file("[scheduler.phase_caps]\nprap = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(": scheduler.phase_caps: unknown variant `prap`"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = load_file("[budget]\ndaily = \n").unwrap_err();
        let ConfigError::Parse { line, key, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, key.as_deref()), (Some(2), None));
        assert!(err.to_string().contains("config.toml:2:"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file_directory() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        let path = write(
            &etc,
            "config.toml",
            "db = \"state/runner.db\"\nmachines_dir = \"/opt/machines\"\n\
             profiles = \"profiles.yml\"\ncorpus_db = \"../corpus.db\"\n\
             [seed]\ndb = \"seed.db\"\n",
        );
        let c = load_with(Some(&path), &no_env, Path::new("absent"))
            .unwrap()
            .config;
        assert_eq!(c.db, etc.join("state/runner.db"));
        assert_eq!(c.machines_dir, PathBuf::from("/opt/machines"));
        assert_eq!(c.profiles, Some(etc.join("profiles.yml")));
        assert_eq!(c.corpus_db, Some(etc.join("../corpus.db")));
        assert_eq!(c.seed.db, Some(etc.join("seed.db")));
        // Not in the file: the default stays relative to the working directory.
        assert_eq!(c.pdf_dir, Config::default().pdf_dir);
        assert_eq!(c.terminology, None);
    }

    #[test]
    fn env_overrides_apply_after_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "config.toml",
            "[scheduler]\nworkers = 2\n[budget]\ndaily = 100\ncheap = 50\n",
        );
        let env = env_of(&[
            ("RUNNER_WORKERS", "7"),
            ("RUNNER_BUDGET_DAILY", ""),
            ("RUNNER_DB", "rel/other.db"),
            ("RUNNER_POLL_INTERVAL_SECS", "0.5"),
            ("RUNNER_PREP_BURST_CRON", "0 0 23 * * *"),
            ("RUNNER_LISTEN", "127.0.0.1:9464"),
            ("RUNNER_LOG_FORMAT", "json"),
            ("RUNNER_SYNC_FULL", "yes"),
        ]);
        let c = load_with(Some(&path), &env, Path::new("absent"))
            .unwrap()
            .config;
        assert_eq!(c.scheduler.workers, 7);
        assert_eq!(c.budget.daily, None, "an empty value unsets");
        assert_eq!(c.budget.cheap, Some(50), "untouched by the environment");
        assert_eq!(
            c.db,
            PathBuf::from("rel/other.db"),
            "env paths are not resolved"
        );
        assert_eq!(c.scheduler.poll_interval_secs, 0.5);
        assert_eq!(c.scheduler.prep_burst_cron.as_deref(), Some("0 0 23 * * *"));
        assert_eq!(c.ops.listen.as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(c.ops.log_format, "json");
        assert!(c.sync_full);
        c.validate().unwrap();
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let load = |pairs: &[(&str, &str)]| {
            load_with(None, &env_of(pairs), &dir.path().join("config.toml")).unwrap_err()
        };
        let err = load(&[("RUNNER_WORKERS", "four")]);
        assert!(matches!(
            err,
            ConfigError::Env {
                var: "RUNNER_WORKERS",
                ..
            }
        ));
        let msg = err.to_string();
        assert!(msg.contains("RUNNER_WORKERS=\"four\""), "{msg}");
        assert!(msg.contains("scheduler.workers"), "{msg}");
        let msg = load(&[("RUNNER_MAX_ATTEMPTS", "-1")]).to_string();
        assert!(msg.contains("RUNNER_MAX_ATTEMPTS"), "{msg}");
        let msg = load(&[("RUNNER_DB", "")]).to_string();
        assert!(msg.contains("RUNNER_DB") && msg.contains("empty"), "{msg}");
    }

    #[test]
    fn every_documented_env_var_exists() {
        let names: Vec<&str> = env_overrides().map(|(var, _)| var).collect();
        for var in [
            "RUNNER_DB",
            "RUNNER_MACHINES_DIR",
            "RUNNER_PROFILES",
            "RUNNER_PDF_DIR",
            "RUNNER_REPORTS_DIR",
            "RUNNER_CORPUS_DB",
            "RUNNER_PDF_BASE_URL",
            "RUNNER_ARXIV_API_URL",
            "RUNNER_WORKERS",
            "RUNNER_LEASE_TTL_SECS",
            "RUNNER_MAX_ATTEMPTS",
            "RUNNER_POLL_INTERVAL_SECS",
            "RUNNER_DRAIN_TIMEOUT_SECS",
            "RUNNER_BUDGET_DAILY",
            "RUNNER_BUDGET_CHEAP",
            "RUNNER_BUDGET_EXPENSIVE",
            "RUNNER_PREP_BURST_CRON",
            "RUNNER_LISTEN",
            "RUNNER_LOG_FORMAT",
        ] {
            assert!(names.contains(&var), "{var} missing");
        }
    }

    #[test]
    fn validation_names_each_bad_key() {
        let mut c = Config::default();
        c.scheduler.workers = 0;
        c.scheduler.lease_ttl_secs = 0;
        c.scheduler.max_attempts = 0;
        c.scheduler.poll_interval_secs = f64::NAN;
        c.scheduler.phase_order = vec![Phase::Prep, Phase::Wrap, Phase::Prep];
        c.budget.day_start_utc = "24:00".into();
        c.budget.classes.insert("judge".into(), "medium".into());
        c.ops.log_format = "xml".into();
        let keys = problem_keys(&c);
        assert_eq!(
            keys,
            [
                "scheduler.workers",
                "scheduler.lease_ttl_secs",
                "scheduler.max_attempts",
                "scheduler.poll_interval_secs",
                "scheduler.phase_order",
                "budget.day_start_utc",
                "budget.classes.judge",
                "ops.log_format",
            ]
        );
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("scheduler.phase_order: lists prep more than once"),
            "{msg}"
        );
        assert!(msg.contains("\"medium\""), "{msg}");
    }

    #[test]
    fn validation_of_cron() {
        let mut c = Config::default();
        c.scheduler.prep_burst_cron = Some("0 0 23 * * *".into());
        c.validate().unwrap();
        c.scheduler.prep_burst_cron = Some("0 23 * * *".into());
        let p = problems(&c);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "scheduler.prep_burst_cron");
        assert!(p[0].message.contains("first field is seconds"), "{}", p[0]);
        assert!(!p[0].message.contains('\n'), "one line: {}", p[0]);
        c.scheduler.prep_burst_cron = Some("0 0 25 * * *".into());
        let p = problems(&c);
        assert_eq!(p[0].key, "scheduler.prep_burst_cron");
        assert!(p[0].message.contains("Hours"), "{}", p[0]);
        assert!(!p[0].message.contains('\n'), "one line: {}", p[0]);
    }

    #[test]
    fn validation_of_listen_and_token() {
        let mut c = Config::default();
        c.ops.listen = Some("127.0.0.1:9464".into());
        c.validate().unwrap();
        assert!(c.ops.is_loopback_listen());
        c.ops.listen = Some("[::1]:9464".into());
        c.validate().unwrap();
        c.ops.listen = Some("0.0.0.0:9464".into());
        assert!(!c.ops.is_loopback_listen());
        assert_eq!(problem_keys(&c), ["ops.token_env"]);
        c.ops.token_env = Some("RUNNER_HTTP_TOKEN".into());
        c.validate().unwrap();
        c.ops.listen = Some("localhost".into());
        assert_eq!(problem_keys(&c), ["ops.listen"]);
    }

    #[test]
    fn day_start_parses_hh_mm() {
        let mut b = BudgetConfig::default();
        assert_eq!(b.day_start(), (0, 0));
        b.day_start_utc = "06:30".into();
        assert_eq!(b.day_start(), (6, 30));
        b.day_start_utc = "7:05".into();
        assert_eq!(b.day_start(), (7, 5));
        for bad in [
            "", "6", "06:3", "06:60", "24:00", "-1:00", "06:30:00", "a:bc",
        ] {
            assert_eq!(parse_hh_mm(bad), None, "{bad:?}");
        }
    }

    /// The derived durations cannot panic even on values that skipped
    /// validation (NaN, infinity, negative).
    #[test]
    fn derived_waits_never_panic() {
        let mut s = SchedulerConfig::default();
        for v in [f64::NAN, f64::INFINITY, -1.0, 1e300] {
            s.claim_backlog_secs = v;
            s.park_after_secs = v;
            assert!(s.claim_backlog() <= std::time::Duration::from_secs(86_400));
            assert!(s.park_after() >= s.claim_backlog());
        }
    }

    #[test]
    fn out_of_range_values_name_key_value_and_range() {
        let mut c = Config::default();
        c.scheduler.lease_ttl_secs = 9_300_000_000_000_000;
        let p = problems(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            p[0].to_string(),
            "scheduler.lease_ttl_secs: 9300000000000000 is out of range: allowed 5 to 86400 seconds"
        );
        c.scheduler.lease_ttl_secs = 4;
        assert_eq!(problem_keys(&c), ["scheduler.lease_ttl_secs"]);
        c.scheduler.lease_ttl_secs = 5;
        c.validate().unwrap();
        c.scheduler.lease_ttl_secs = 86_400;
        c.validate().unwrap();

        let mut c = Config::default();
        c.scheduler.poll_interval_secs = f64::INFINITY;
        c.scheduler.claim_backlog_secs = -1.0;
        c.scheduler.retry_max_secs = u64::MAX;
        c.scheduler.drain_timeout_secs = u64::MAX;
        c.scheduler.prep_burst_minutes = u64::MAX;
        c.scheduler.phase_caps.insert(Phase::Prep, usize::MAX);
        c.budget.daily = Some(u64::MAX);
        c.breaker.open_max_secs = u64::MAX;
        c.breaker.window_secs = 0;
        c.seed.interval_secs = u64::MAX;
        c.prompt_token_budget = 0;
        assert_eq!(
            problem_keys(&c),
            [
                "prompt_token_budget",
                "scheduler.phase_caps.prep",
                "scheduler.retry_max_secs",
                "scheduler.poll_interval_secs",
                "scheduler.claim_backlog_secs",
                "scheduler.drain_timeout_secs",
                "scheduler.prep_burst_minutes",
                "budget.daily",
                "breaker.window_secs",
                "breaker.open_max_secs",
                "seed.interval_secs",
            ]
        );
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains(
                "scheduler.poll_interval_secs: inf is out of range: allowed 0.01 to 3600 seconds"
            ),
            "{msg}"
        );
    }

    #[test]
    fn an_env_lease_ttl_out_of_range_is_refused_by_validate() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_of(&[("RUNNER_LEASE_TTL_SECS", "9300000000000000")]);
        let c = load_with(None, &env, &dir.path().join("config.toml"))
            .unwrap()
            .config;
        assert_eq!(problem_keys(&c), ["scheduler.lease_ttl_secs"]);
    }

    #[test]
    fn the_maxima_keep_every_deadline_in_range() {
        use crate::store::{lease_deadline_ms, RetryPolicy};
        use std::time::Duration;
        let now = chrono::Utc::now().timestamp_millis();
        let ttl = Duration::from_secs(*limits::LEASE_TTL_SECS.end());
        let until = lease_deadline_ms(now, ttl);
        let exact = now.checked_add(i64::try_from(ttl.as_millis()).unwrap());
        assert_eq!(Some(until), exact, "no clamping needed at the maximum");
        assert_eq!(
            crate::store::MAX_LEASE_TTL.as_secs(),
            *limits::LEASE_TTL_SECS.end(),
            "the store's clamp is the config's maximum"
        );
        let retry = RetryPolicy {
            max_attempts: *limits::MAX_ATTEMPTS.end(),
            base: Duration::from_secs(*limits::RETRY_SECS.end()),
            max: Duration::from_secs(*limits::RETRY_SECS.end()),
        };
        let delay = retry.delay_ms(retry.max_attempts);
        assert!(now.checked_add(delay).is_some());
        for secs in [
            *limits::BREAKER_SECS.end(),
            *limits::SEED_INTERVAL_SECS.end(),
            *limits::DRAIN_TIMEOUT_SECS.end(),
        ] {
            assert!(now.checked_add((secs as i64) * 1000).is_some());
        }
        assert!(chrono::TimeDelta::try_minutes(*limits::PREP_BURST_MINUTES.end() as i64).is_some());
        Duration::try_from_secs_f64(*limits::POLL_INTERVAL_SECS.end()).unwrap();
        Duration::try_from_secs_f64(*limits::CLAIM_BACKLOG_SECS.end()).unwrap();
    }

    #[test]
    fn day_start_has_one_parser() {
        // "7:00" validates, and the budget takes it: no daemon stop.
        let mut c = Config::default();
        c.budget.day_start_utc = "7:00".into();
        c.validate().unwrap();
        crate::runner::budget::Budget::new(c.budget.clone()).unwrap();
        for bad in ["7", "7:0", "24:00", "07:60", " : ", "٧:00"] {
            c.budget.day_start_utc = bad.into();
            assert_eq!(problem_keys(&c), ["budget.day_start_utc"], "{bad:?}");
            assert!(crate::runner::budget::Budget::new(c.budget.clone()).is_err());
        }
    }

    #[test]
    fn config_files_are_read_with_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        let mut text = String::from("# padding\n");
        while text.len() as u64 <= MAX_CONFIG_BYTES {
            text.push_str(&"#".repeat(1023));
            text.push('\n');
        }
        std::fs::write(&big, &text).unwrap();
        let err = load_with(Some(&big), &no_env, Path::new("absent")).unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { limit, .. } if limit == MAX_CONFIG_BYTES));
        assert!(err.to_string().contains("big.toml"), "{err}");
        assert!(err.to_string().contains("1048576-byte limit"), "{err}");

        let err = load_with(Some(dir.path()), &no_env, Path::new("absent")).unwrap_err();
        assert!(
            err.to_string().contains("not a regular file (a directory)"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_without_reading_or_blocking() {
        let err =
            load_with(Some(Path::new("/dev/zero")), &no_env, Path::new("absent")).unwrap_err();
        assert!(
            err.to_string()
                .contains("/dev/zero: cannot read: not a regular file (a character device)"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would hang here forever.
        let err = read_text_capped(&fifo, 100).unwrap_err();
        assert!(
            matches!(err, CappedReadError::NotRegular { kind: "a FIFO" }),
            "{err}"
        );
    }

    #[test]
    fn line_column_counts_characters() {
        let text = "a = 1\n[é]\nbé = 2\n";
        let offset = text.find("= 2").unwrap();
        assert_eq!(line_column(text, offset), (3, 4));
        assert_eq!(line_column(text, 0), (1, 1));
    }
}
