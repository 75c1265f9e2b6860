//! The resolved settings: every option the runner acts on, as the type it
//! is used as (`Duration`, `NaiveTime`, `cron::Schedule`, `SocketAddr`,
//! enums), built once by [`Config::resolve`](super::Config::resolve).
//!
//! Why a second type next to the file model: a setting kept as text gets
//! parsed again wherever it is used, and two parsers of one setting drift
//! apart (`budget.day_start_utc = "7:00"` once passed validation and then
//! stopped the daemon). Here the parse happens in one place, at start-up,
//! and the rest of the runner reads typed values that cannot be malformed.
//! The small parsers below are the only ones for their settings; the
//! resolver uses them, and so does anything that must read a setting before
//! the configuration is resolved (the log format, before logging starts).

use super::model::Config;
use chrono::NaiveTime;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A configuration that passed every check, with its values typed.
///
/// `config` is the file model it was resolved from, kept for the values
/// that are used as they are (paths, URLs, counts, phase lists, the `pdf`,
/// `shell` and `download` sections with their own checked limits) and for
/// `runner status`. The timing, day start, cron, listen address, log
/// format, class, budget-limit and breaker values of `config` are not read
/// after resolution: the typed fields below are the truth, and the runner
/// (scheduler, budget, breakers, the ops endpoint and its `/status`, and
/// `runner status`) builds from them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub scheduler: SchedulerTimes,
    pub budget: BudgetSettings,
    pub breaker: BreakerSettings,
    pub ops: OpsSettings,
    /// Daemon with `--seed`: re-seed every this long (`seed.interval_secs`).
    pub seed_interval: Duration,
}

/// The scheduler's durations (`[scheduler]`), each within its range in
/// [`limits`](super::limits).
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerTimes {
    pub lease_ttl: Duration,
    pub retry_base: Duration,
    /// Never below `retry_base` (validated).
    pub retry_max: Duration,
    /// At least 50 ms, whatever smaller value validated.
    pub poll_interval: Duration,
    pub claim_backlog: Duration,
    /// `park_after_secs`, never less than `claim_backlog`, so a phase the
    /// gates let through is not parked at once.
    pub park_after: Duration,
    pub drain_timeout: Duration,
    pub phase_timeout: Duration,
    /// The automatic prep-only window, when `prep_burst_cron` is set.
    pub prep_burst: Option<PrepBurst>,
}

/// `scheduler.prep_burst_cron` parsed, with its window length.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepBurst {
    /// The expression as written (for logs and `status`).
    pub expr: String,
    pub schedule: cron::Schedule,
    /// `prep_burst_minutes`.
    pub window: Duration,
}

/// `[budget]` typed: the limits stay counts, the day start is a time and
/// the classes an enum. `Default` is what `[budget]`'s defaults resolve to
/// (no limits, the day starting at 00:00 UTC, no explicit classes).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BudgetSettings {
    pub daily: Option<u64>,
    pub cheap: Option<u64>,
    pub expensive: Option<u64>,
    pub daily_usd: Option<f64>,
    pub cheap_usd: Option<f64>,
    pub expensive_usd: Option<f64>,
    pub daily_tokens: Option<u64>,
    pub cheap_tokens: Option<u64>,
    pub expensive_tokens: Option<u64>,
    /// Start of the budget day, UTC.
    pub day_start: NaiveTime,
    /// Profiles with an explicit class.
    pub classes: BTreeMap<String, ModelClass>,
}

impl BudgetSettings {
    /// The class of a profile: its entry in `budget.classes`, else
    /// expensive when the name contains "expensive", else cheap.
    pub fn class_of(&self, profile: &str) -> ModelClass {
        crate::store::spend::class_of(&self.classes, Some(profile))
    }

    /// The limits, day start and classes the store counts and admits
    /// spend with.
    pub fn policy(&self) -> crate::store::SpendPolicy {
        use crate::store::{SpendLimits, UnitLimits};
        crate::store::SpendPolicy {
            limits: SpendLimits {
                daily: UnitLimits {
                    requests: self.daily,
                    tokens: self.daily_tokens,
                    usd: self.daily_usd,
                },
                cheap: UnitLimits {
                    requests: self.cheap,
                    tokens: self.cheap_tokens,
                    usd: self.cheap_usd,
                },
                expensive: UnitLimits {
                    requests: self.expensive,
                    tokens: self.expensive_tokens,
                    usd: self.expensive_usd,
                },
            },
            day_start: self.day_start,
            classes: self.classes.clone(),
        }
    }
}

/// `[breaker]` typed: the thresholds stay counts, the periods are
/// durations.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// 429s within `window` that open a model's breaker (0: never).
    pub rate_limit_threshold: u32,
    /// Server errors / timeouts within `window` that open it (0: never).
    pub error_threshold: u32,
    /// The sliding window the thresholds count in.
    pub window: Duration,
    /// First open period (doubles on each consecutive opening).
    pub open_base: Duration,
    /// Longest open period; never below `open_base` (validated).
    pub open_max: Duration,
}

impl Default for BreakerSettings {
    /// What `[breaker]`'s defaults resolve to (a test holds the two
    /// together): 5 429s or 10 errors in 60 s; open 30 s doubling to 30 min.
    fn default() -> Self {
        BreakerSettings {
            rate_limit_threshold: 5,
            error_threshold: 10,
            window: Duration::from_secs(60),
            open_base: Duration::from_secs(30),
            open_max: Duration::from_secs(1800),
        }
    }
}

/// `[ops]` typed.
#[derive(Debug, Clone, PartialEq)]
pub struct OpsSettings {
    pub listen: Option<SocketAddr>,
    pub token_env: Option<String>,
    pub log_format: LogFormat,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
}

/// How log lines are written (`ops.log_format`, or `--log-format`: the
/// same type serves both, so the flag and the file cannot disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    /// The one parser of `ops.log_format`: exactly "human" or "json".
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "{s:?} is not a log format: expected \"human\" or \"json\""
            )),
        }
    }
}

/// A budget class of model profiles (`budget.classes` values). It lives
/// with the store, which counts spend per class.
pub use crate::store::ModelClass;

/// The one parser of `budget.day_start_utc` (the resolver and the budget
/// both use it, so a value that validates is a value the budget accepts):
/// "HH:MM" or "H:MM" in UTC, 00:00 to 23:59 → (hour, minute). "7:00" is
/// 07:00; seconds, a sign, spaces inside or non-ASCII digits are refused.
pub fn parse_hh_mm(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.trim().split_once(':')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// [`parse_hh_mm`] as a time of day.
pub fn parse_day_start(s: &str) -> Result<NaiveTime, String> {
    parse_hh_mm(s)
        .and_then(|(h, m)| NaiveTime::from_hms_opt(h, m, 0))
        .ok_or_else(|| format!("{s:?} is not a time HH:MM or H:MM in UTC (00:00 to 23:59)"))
}

/// The one parser of `ops.listen`: an `IP:PORT` socket address.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not a socket address IP:PORT, e.g. \"127.0.0.1:9464\""))
}

/// The one parser of `scheduler.prep_burst_cron`, with a one-line error.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    cron::Schedule::from_str(expr).map_err(|e| {
        let hint = if expr.split_whitespace().count() == 5 {
            " (the first field is seconds: for 23:00 daily write \"0 0 23 * * *\")"
        } else {
            ""
        };
        format!(
            "{expr:?} is not a cron expression{}{hint}",
            cron_detail(expr, &e.to_string())
        )
    })
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

/// Seconds (a float setting) → a `Duration`, checked: `None` for NaN, an
/// infinity, a negative or a value too large for a `Duration`. The ranges
/// in [`limits`](super::limits) are far inside what this accepts.
pub fn checked_secs_f64(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}
