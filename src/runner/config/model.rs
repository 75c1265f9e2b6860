//! The config file's model: every option, its serde shape and its default.
//!
//! These structs mirror `config.toml` one to one (`deny_unknown_fields`, so a
//! typo is an error naming the key) and keep values as the operator wrote
//! them: seconds as numbers, the day start and cron as text. They are what
//! the file, `RUNNER_*` and flags write into; the typed values the runner
//! uses come from [`Config::resolve`](super::Settings) and are checked once.

use crate::runner::phase::Phase;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Handlers of the hooks machines name (`[hooks]`, `NAME = "cmd:PATH"`;
    /// a relative PATH is relative to the config file). With any, every
    /// custom action a phase machine's hooks implement must have one.
    pub hooks: BTreeMap<String, String>,
    /// The Python hook bridge (`python:` handlers): interpreter and bounds.
    pub python: crate::engine::PythonConfig,
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
    /// Daily money budget over all classes, in the currency of the
    /// profiles' prices (None = unlimited).
    pub daily_usd: Option<f64>,
    /// Daily money budget of the cheap class.
    pub cheap_usd: Option<f64>,
    /// Daily money budget of the expensive class.
    pub expensive_usd: Option<f64>,
    /// Daily token budget (prompt + completion) over all classes.
    pub daily_tokens: Option<u64>,
    /// Daily token budget of the cheap class.
    pub cheap_tokens: Option<u64>,
    /// Daily token budget of the expensive class.
    pub expensive_tokens: Option<u64>,
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
            hooks: BTreeMap::new(),
            python: crate::engine::PythonConfig::default(),
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
            daily_usd: None,
            cheap_usd: None,
            expensive_usd: None,
            daily_tokens: None,
            cheap_tokens: None,
            expensive_tokens: None,
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
