//! Validation and resolution: the file model ([`Config`]) becomes the typed
//! [`Settings`], or every problem found is reported at once, each naming its
//! dotted key. This is the only place a setting's text or number is turned
//! into the value the runner uses, so what validates is exactly what runs.

use super::file::{ConfigError, Problem};
use super::limits;
use super::model::Config;
use super::settings::{
    checked_secs_f64, parse_cron, parse_day_start, parse_listen, BreakerSettings, BudgetSettings,
    LogFormat, OpsSettings, PrepBurst, SchedulerTimes, Settings,
};
use std::fmt;
use std::time::Duration;

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

/// The shortest idle poll the daemon uses: `poll_interval_secs` validates
/// down to 0.01 s, but polling the store faster than every 50 ms only
/// burns CPU, so smaller values poll at this pace (as they always have).
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(50);

impl Config {
    /// The hooks registry `[hooks]` describes, or `None` when the table is
    /// empty (then `check` only warns about custom actions). Paths were made
    /// relative to the config file when it was read.
    pub fn hook_registry(
        &self,
    ) -> Result<Option<crate::engine::HookRegistry>, crate::engine::HookSpecError> {
        use crate::engine::{HandlerSpec, HookRegistry, HookSpecError};
        if self.hooks.is_empty() {
            return Ok(None);
        }
        let mut specs = Vec::new();
        for (name, v) in &self.hooks {
            let spec = HandlerSpec::parse(v, std::path::Path::new(""))
                .map_err(|e| HookSpecError::Syntax(format!("hooks.{name}: {e}")))?;
            specs.push((name.clone(), spec));
        }
        HookRegistry::build(&specs, &self.shell, &self.python).map(Some)
    }

    /// Checks every value that the types alone do not constrain and reports
    /// all problems at once: [`resolve`](Self::resolve) without keeping the
    /// result (`runner extract`, tests and tools that only need the verdict).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resolve().map(drop)
    }

    /// Checks every value and turns it into the typed [`Settings`], or
    /// reports all problems at once, each naming its dotted key. Call it
    /// after the command-line flags are applied, once, at start-up: the rest
    /// of the runner uses the typed values instead of re-parsing or
    /// re-checking (a positive poll interval, a parsed cron, a day start).
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
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
        let cron = match &s.prep_burst_cron {
            Some(expr) => match parse_cron(expr) {
                Ok(schedule) => Some((expr.clone(), schedule)),
                Err(message) => {
                    check(false, "scheduler.prep_burst_cron", message);
                    None
                }
            },
            None => None,
        };

        let b = &self.budget;
        let day_start = parse_day_start(&b.day_start_utc).unwrap_or_else(|message| {
            check(false, "budget.day_start_utc", message);
            chrono::NaiveTime::MIN
        });
        let mut classes = std::collections::BTreeMap::new();
        for (profile, class) in &b.classes {
            match class.parse() {
                Ok(c) => {
                    classes.insert(profile.clone(), c);
                }
                Err(message) => check(false, &format!("budget.classes.{profile}"), message),
            }
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
        let log_format = o.log_format.parse().unwrap_or_else(|message| {
            check(false, "ops.log_format", message);
            LogFormat::default()
        });
        let mut listen_addr = None;
        if let Some(listen) = &o.listen {
            match parse_listen(listen) {
                Err(message) => check(false, "ops.listen", message),
                Ok(addr) => {
                    check(
                        addr.ip().is_loopback() || o.token_env.is_some(),
                        "ops.token_env",
                        format!(
                            "must name the environment variable holding a bearer token when ops.listen ({listen}) is not a loopback address"
                        ),
                    );
                    listen_addr = Some(addr);
                }
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
            limits::OPS_MAX_CONNECTIONS.contains(&o.max_connections),
            "ops.max_connections",
            format!("{} is out of range: must be 1 ..= 4096", o.max_connections),
        );
        for (key, value) in [
            ("ops.header_timeout_secs", o.header_timeout_secs),
            ("ops.idle_timeout_secs", o.idle_timeout_secs),
            ("ops.request_timeout_secs", o.request_timeout_secs),
        ] {
            check(
                limits::OPS_TIMEOUT_SECS.contains(&value),
                key,
                format!("{value} is out of range: must be 1 ..= 3600 seconds"),
            );
        }

        for (key, message) in self.shell.problems() {
            check(false, key, message);
        }

        for (key, message) in self.python.problems() {
            check(false, key, message);
        }

        for (key, message) in self.download.problems() {
            check(false, key, message);
        }

        if let Err(e) = self.hook_registry() {
            let key = match &e {
                crate::engine::HookSpecError::Unsupported { name, .. }
                | crate::engine::HookSpecError::Duplicate(name) => format!("hooks.{name}"),
                crate::engine::HookSpecError::Syntax(_) => "hooks".to_string(),
            };
            check(false, &key, e.to_string());
        }

        if !problems.is_empty() {
            return Err(ConfigError::Invalid { problems });
        }
        // Every value below passed its range check above; the conversions
        // are still the checked ones, so nothing here can panic.
        let secs = Duration::from_secs;
        let fsecs = |v: f64| checked_secs_f64(v).unwrap_or_default();
        let claim_backlog = fsecs(s.claim_backlog_secs);
        Ok(Settings {
            scheduler: SchedulerTimes {
                lease_ttl: secs(s.lease_ttl_secs),
                retry_base: secs(s.retry_base_secs),
                retry_max: secs(s.retry_max_secs),
                poll_interval: fsecs(s.poll_interval_secs).max(MIN_POLL_INTERVAL),
                claim_backlog,
                park_after: fsecs(s.park_after_secs).max(claim_backlog),
                drain_timeout: secs(s.drain_timeout_secs),
                phase_timeout: secs(s.phase_timeout_secs),
                prep_burst: cron.map(|(expr, schedule)| PrepBurst {
                    expr,
                    schedule,
                    window: secs(s.prep_burst_minutes.saturating_mul(60)),
                }),
            },
            budget: BudgetSettings {
                daily: b.daily,
                cheap: b.cheap,
                expensive: b.expensive,
                daily_usd: b.daily_usd,
                cheap_usd: b.cheap_usd,
                expensive_usd: b.expensive_usd,
                daily_tokens: b.daily_tokens,
                cheap_tokens: b.cheap_tokens,
                expensive_tokens: b.expensive_tokens,
                day_start,
                classes,
            },
            breaker: BreakerSettings {
                rate_limit_threshold: br.rate_limit_threshold,
                error_threshold: br.error_threshold,
                window: secs(br.window_secs),
                open_base: secs(br.open_base_secs),
                open_max: secs(br.open_max_secs),
            },
            ops: OpsSettings {
                listen: listen_addr,
                token_env: o.token_env.clone(),
                log_format,
                max_connections: o.max_connections as usize,
                header_timeout: secs(o.header_timeout_secs),
                idle_timeout: secs(o.idle_timeout_secs),
                request_timeout: secs(o.request_timeout_secs),
            },
            seed_interval: secs(self.seed.interval_secs),
            config: self.clone(),
        })
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
        for (key, value) in [
            ("budget.daily_usd", b.daily_usd),
            ("budget.cheap_usd", b.cheap_usd),
            ("budget.expensive_usd", b.expensive_usd),
        ] {
            if let Some(v) = value {
                report(key, out_of_range(v, &l::BUDGET_USD, ""));
            }
        }
        for (key, value) in [
            ("budget.daily_tokens", b.daily_tokens),
            ("budget.cheap_tokens", b.cheap_tokens),
            ("budget.expensive_tokens", b.expensive_tokens),
        ] {
            if let Some(v) = value {
                report(key, out_of_range(v, &l::BUDGET_TOKENS, " tokens"));
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
