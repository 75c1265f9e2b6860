//! `runner status` and `/status`: one [`StatusReport`] built from the
//! database (and, inside a running daemon, its live [`RunnerStats`]).
//!
//! Without a daemon the mode is derived from what the database says — the
//! budget left and open breakers — which is what a daemon started now would
//! decide; a running daemon passes its own [`ModeView`] instead.

use super::{fit, fmt_ts, human_duration_ms, parse_ts, OpsError};
use crate::runner::config::{BudgetConfig, Config};
use crate::runner::gates::ModeView;
use crate::runner::scheduler::RunnerStats;
use crate::store::ops::{BreakerRow, WorkingRow};
use crate::store::{Phase, Store};
use chrono::{DateTime, Duration as ChronoDuration, NaiveTime, Utc};
use indexmap::IndexMap;
use serde::Serialize;
use std::fmt::Write as _;

/// Everything `runner status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub generated_at: String,
    pub db: String,
    pub total: u64,
    /// Papers per status, every status present, in flow order.
    pub counts: IndexMap<String, u64>,
    /// Papers claimable now per phase (not waiting for a retry delay or
    /// cancelled; budget and breakers not applied).
    pub claimable: IndexMap<String, u64>,
    pub in_flight: Vec<InFlightPaper>,
    pub budget: BudgetReport,
    pub breakers: Vec<BreakerReport>,
    pub mode: ModeReport,
    pub done_last_hour: u64,
    pub done_last_day: u64,
    pub oldest_pending: Option<PendingReport>,
    /// The live view of the daemon serving this report (only from `/status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerStats>,
}

/// A paper whose phase is being worked on.
#[derive(Debug, Clone, Serialize)]
pub struct InFlightPaper {
    pub id: String,
    pub arxiv_id: String,
    pub status: String,
    pub phase: String,
    pub attempt: u32,
    pub owner: Option<String>,
    pub phase_execution: Option<String>,
    /// The phase machine's current state, from its latest checkpoint: the
    /// state entered, or the next state after an exit (None before the
    /// first checkpoint).
    pub state: Option<String>,
    /// The event of that checkpoint (state_enter, state_exit, …).
    pub checkpoint_event: Option<String>,
    pub children_running: u64,
    pub started_at: Option<String>,
    pub age_secs: Option<i64>,
    /// Seconds until the claim expires (negative: expired, the reaper will
    /// roll it back).
    pub lease_expires_in_secs: Option<i64>,
}

/// Requests used and left in the current budget day.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BudgetReport {
    pub day_started_at: String,
    pub resets_at: String,
    /// cheap, expensive.
    pub classes: Vec<BudgetClass>,
    pub total: BudgetClass,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BudgetClass {
    pub class: String,
    pub used: u64,
    /// None: unlimited.
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
}

impl BudgetClass {
    fn new(class: &str, used: u64, limit: Option<u64>) -> BudgetClass {
        BudgetClass {
            class: class.into(),
            used,
            limit,
            remaining: limit.map(|l| l.saturating_sub(used)),
        }
    }

    pub fn spent(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// A model's breaker.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BreakerReport {
    pub model: String,
    pub provider: String,
    /// Effective now: `open` only while `open_until` is ahead; an open
    /// breaker whose period passed is `half_open` (the next call probes).
    pub state: String,
    pub stored_state: String,
    pub reason: Option<String>,
    pub open_until: Option<String>,
    pub open_for_secs: Option<i64>,
    pub open_count: u32,
}

/// Normal or prep-only, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModeReport {
    /// "normal" or "prep-only".
    pub mode: String,
    pub prep_only: bool,
    pub reason: String,
    /// "runner" (a running daemon's own view) or "derived" (from the
    /// database: budget and breakers).
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PendingReport {
    pub id: String,
    pub arxiv_id: String,
    pub since: String,
    pub age_secs: Option<i64>,
}

/// Build the report. `live`: the stats of the daemon serving `/status`
/// (its mode wins over the derived one).
pub fn status_report(
    store: &Store,
    cfg: &Config,
    live: Option<&RunnerStats>,
    now: DateTime<Utc>,
) -> Result<StatusReport, OpsError> {
    let now_ms = now.timestamp_millis();
    let counts: IndexMap<String, u64> = store.status_counts()?.into_iter().collect();
    let claimable = store
        .claimable_counts(now_ms)?
        .into_iter()
        .map(|(p, n)| (p.name().to_string(), n))
        .collect();
    let in_flight = store
        .working_papers()?
        .into_iter()
        .map(|w| in_flight(w, now))
        .collect();
    let budget = budget_report(store, &cfg.budget, now)?;
    let breakers: Vec<BreakerReport> = store
        .breakers()?
        .into_iter()
        .map(|b| breaker_report(b, now_ms))
        .collect();
    let mode = match live.and_then(|s| s.mode.as_ref()) {
        Some(m) => mode_report(m, "runner"),
        None => mode_report(&derive_mode(&budget, &breakers), "derived"),
    };
    let done_since =
        |d: ChronoDuration| store.count_events_since("finished", Phase::Wrap, &fmt_ts(now - d));
    let oldest_pending = store.oldest_pending()?.map(|p| PendingReport {
        age_secs: parse_ts(&p.created_at).map(|t| (now - t).num_seconds()),
        id: p.id,
        arxiv_id: p.arxiv_id,
        since: p.created_at,
    });
    Ok(StatusReport {
        generated_at: fmt_ts(now),
        db: store.path().display().to_string(),
        total: counts.values().sum(),
        counts,
        claimable,
        in_flight,
        budget,
        breakers,
        mode,
        done_last_hour: done_since(ChronoDuration::hours(1))?,
        done_last_day: done_since(ChronoDuration::days(1))?,
        oldest_pending,
        runner: live.cloned(),
    })
}

fn in_flight(w: WorkingRow, now: DateTime<Utc>) -> InFlightPaper {
    let phase = Phase::of_working_status(&w.status)
        .map(|p| p.name().to_string())
        .unwrap_or_default();
    let state = match w.checkpoint_event.as_deref() {
        Some("state_enter") => w.checkpoint_state.clone(),
        Some(_) => w
            .checkpoint_next_state
            .clone()
            .or(w.checkpoint_state.clone()),
        None => None,
    };
    InFlightPaper {
        age_secs: w
            .phase_started_at
            .as_deref()
            .and_then(parse_ts)
            .map(|t| (now - t).num_seconds()),
        lease_expires_in_secs: w
            .lease_until_ms
            .map(|u| (u - now.timestamp_millis()).div_euclid(1000)),
        id: w.id,
        arxiv_id: w.arxiv_id,
        status: w.status,
        phase,
        attempt: w.attempt,
        owner: w.owner_id,
        phase_execution: w.phase_execution,
        state,
        checkpoint_event: w.checkpoint_event,
        children_running: w.children_running,
        started_at: w.phase_started_at,
    }
}

/// The start of the budget day containing `now` (`day_start_utc` "HH:MM").
pub fn budget_day_start(cfg: &BudgetConfig, now: DateTime<Utc>) -> DateTime<Utc> {
    let at = NaiveTime::parse_from_str(cfg.day_start_utc.trim(), "%H:%M").unwrap_or(NaiveTime::MIN);
    let today = now.date_naive().and_time(at).and_utc();
    if today <= now {
        today
    } else {
        today - ChronoDuration::days(1)
    }
}

/// Requests used today per class and what is left.
///
/// Counted here from the ledger (rows sent since the day started, per
/// profile class) until `runner::budget::Budget::usage` lands; this is the
/// one function to switch over then.
pub fn budget_report(
    store: &Store,
    cfg: &BudgetConfig,
    now: DateTime<Utc>,
) -> Result<BudgetReport, OpsError> {
    let start = budget_day_start(cfg, now);
    let mut used: IndexMap<&str, u64> = IndexMap::from([("cheap", 0), ("expensive", 0)]);
    let mut total = 0;
    for (profile, n) in store.requests_since_by_profile(&fmt_ts(start))? {
        let class = match cfg.class_of(profile.as_deref().unwrap_or("")) {
            "expensive" => "expensive",
            _ => "cheap",
        };
        *used.entry(class).or_default() += n;
        total += n;
    }
    Ok(BudgetReport {
        day_started_at: fmt_ts(start),
        resets_at: fmt_ts(start + ChronoDuration::days(1)),
        classes: vec![
            BudgetClass::new("cheap", used["cheap"], cfg.cheap),
            BudgetClass::new("expensive", used["expensive"], cfg.expensive),
        ],
        total: BudgetClass::new("total", total, cfg.daily),
    })
}

fn breaker_report(b: BreakerRow, now_ms: i64) -> BreakerReport {
    let open_ahead = b.open_until_ms.filter(|u| *u > now_ms);
    let state = match (b.state.as_str(), open_ahead) {
        ("open", Some(_)) => "open",
        ("open", None) => "half_open",
        (s, _) => s,
    }
    .to_string();
    BreakerReport {
        open_until: b
            .open_until_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map(fmt_ts),
        open_for_secs: open_ahead.map(|u| (u - now_ms + 999) / 1000),
        model: b.model,
        provider: b.provider,
        state,
        stored_state: b.state,
        reason: b.reason,
        open_count: b.open_count,
    }
}

/// What a daemon started now would decide: the expensive phase needs the
/// expensive budget, the total budget and models whose breakers are closed.
/// (Which models the expensive phase uses is only known to the daemon, so
/// any open breaker counts here.)
pub fn derive_mode(budget: &BudgetReport, breakers: &[BreakerReport]) -> ModeView {
    let mut reasons = Vec::new();
    if budget.total.spent() {
        reasons.push("daily budget spent".to_string());
    }
    if budget
        .classes
        .iter()
        .any(|c| c.class == "expensive" && c.spent())
    {
        reasons.push("expensive budget spent".to_string());
    }
    let open: Vec<String> = breakers
        .iter()
        .filter(|b| b.state == "open")
        .map(|b| match &b.reason {
            Some(r) => format!("{} ({r})", b.model),
            None => b.model.clone(),
        })
        .collect();
    if !open.is_empty() {
        reasons.push(format!("breaker open: {}", open.join(", ")));
    }
    ModeView {
        prep_only: !reasons.is_empty(),
        reason: reasons.join("; "),
    }
}

fn mode_report(m: &ModeView, source: &str) -> ModeReport {
    ModeReport {
        mode: if m.prep_only { "prep-only" } else { "normal" }.into(),
        prep_only: m.prep_only,
        reason: m.reason.clone(),
        source: source.into(),
    }
}

fn limit(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// `YYYY-MM-DD HH:MM` of a stored timestamp (the text itself if it does not parse).
fn short_time(ts: &str) -> String {
    parse_ts(ts).map_or_else(
        || ts.to_string(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// The report for a terminal: every line at most 80 columns.
pub fn render_human(r: &StatusReport) -> String {
    let mut o = String::new();
    let when = parse_ts(&r.generated_at).map_or_else(
        || r.generated_at.clone(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    let _ = writeln!(o, "{}", fit(&format!("{when}  {}", r.db), 80));
    let mode = if r.mode.reason.is_empty() {
        r.mode.mode.clone()
    } else {
        format!("{} ({})", r.mode.mode, r.mode.reason)
    };
    let _ = writeln!(o, "{}", fit(&format!("mode: {mode}"), 80));
    let _ = writeln!(o);
    let _ = writeln!(o, "papers: {}", r.total);
    let cells: Vec<String> = r
        .counts
        .iter()
        .map(|(s, n)| format!("{s:<10}{n:>7}"))
        .collect();
    for row in cells.chunks(4) {
        let _ = writeln!(o, "  {}", row.join("  ").trim_end());
    }
    let claimable: Vec<String> = r
        .claimable
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    let _ = writeln!(o, "claimable now: {}", claimable.join(", "));
    let _ = writeln!(
        o,
        "done: {} in the last hour, {} in the last day",
        r.done_last_hour, r.done_last_day
    );
    match &r.oldest_pending {
        Some(p) => {
            let age = p
                .age_secs
                .map(|s| format!(" (waiting {})", human_duration_ms(s * 1000)))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "{}",
                fit(&format!("oldest pending: {}{age}", p.arxiv_id), 80)
            );
        }
        None => {
            let _ = writeln!(o, "oldest pending: none");
        }
    }
    let _ = writeln!(o);
    if r.in_flight.is_empty() {
        let _ = writeln!(o, "in flight: none");
    } else {
        let _ = writeln!(o, "in flight: {}", r.in_flight.len());
        let _ = writeln!(
            o,
            "  {:<16} {:<9} {:>3} {:<20} {:>7} OWNER",
            "PAPER", "PHASE", "ATT", "STATE", "AGE"
        );
        for f in &r.in_flight {
            let mut state = f.state.clone().unwrap_or_else(|| "-".into());
            if f.children_running > 0 {
                state = format!("{state} +{}", f.children_running);
            }
            let age = f
                .age_secs
                .map_or_else(|| "-".into(), |s| human_duration_ms(s * 1000));
            let mut owner = f.owner.clone().unwrap_or_else(|| "-".into());
            if f.lease_expires_in_secs.is_some_and(|s| s < 0) {
                owner = format!("{owner} (expired)");
            }
            let line = format!(
                "  {:<16} {:<9} {:>3} {:<20} {:>7} {}",
                fit(&f.arxiv_id, 16),
                f.phase,
                f.attempt,
                fit(&state, 20),
                age,
                owner
            );
            let _ = writeln!(o, "{}", fit(&line, 80));
        }
    }
    let _ = writeln!(o);
    let b = &r.budget;
    let resets = parse_ts(&b.resets_at)
        .zip(parse_ts(&r.generated_at))
        .map(|(reset, now)| human_duration_ms((reset - now).num_milliseconds()))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "{}",
        fit(
            &format!(
                "budget (requests since {} UTC, resets in {resets})",
                short_time(&b.day_started_at)
            ),
            80
        )
    );
    let _ = writeln!(
        o,
        "  {:<10} {:>8} {:>8} {:>8}",
        "CLASS", "USED", "LIMIT", "LEFT"
    );
    for c in b.classes.iter().chain(std::iter::once(&b.total)) {
        let _ = writeln!(
            o,
            "  {:<10} {:>8} {:>8} {:>8}",
            c.class,
            c.used,
            limit(c.limit),
            limit(c.remaining)
        );
    }
    let _ = writeln!(o);
    if r.breakers.is_empty() {
        let _ = writeln!(o, "breakers: none recorded (all closed)");
    } else {
        let _ = writeln!(o, "breakers:");
        let _ = writeln!(o, "  {:<36} {:<9} UNTIL / REASON", "MODEL", "STATE");
        for br in &r.breakers {
            let mut detail = String::new();
            if let (Some(s), "open") = (br.open_for_secs, br.state.as_str()) {
                detail.push_str(&format!("for {}", human_duration_ms(s * 1000)));
            }
            if let Some(reason) = &br.reason {
                if !detail.is_empty() {
                    detail.push_str(", ");
                }
                detail.push_str(reason);
            }
            let line = format!("  {:<36} {:<9} {}", fit(&br.model, 36), br.state, detail);
            let _ = writeln!(o, "{}", fit(&line, 80));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewPaper, StoreOptions};

    fn at(s: &str) -> DateTime<Utc> {
        parse_ts(s).unwrap()
    }

    #[test]
    fn budget_day_starts_at_the_configured_time() {
        let cfg = BudgetConfig {
            day_start_utc: "06:30".into(),
            ..BudgetConfig::default()
        };
        assert_eq!(
            fmt_ts(budget_day_start(&cfg, at("2026-01-02T07:00:00Z"))),
            "2026-01-02T06:30:00.000000Z"
        );
        assert_eq!(
            fmt_ts(budget_day_start(&cfg, at("2026-01-02T05:00:00Z"))),
            "2026-01-01T06:30:00.000000Z"
        );
    }

    #[test]
    fn mode_is_derived_from_budget_and_open_breakers() {
        let budget = |exp_left: Option<u64>| BudgetReport {
            day_started_at: String::new(),
            resets_at: String::new(),
            classes: vec![
                BudgetClass::new("cheap", 1, None),
                BudgetClass::new("expensive", 5, exp_left.map(|l| l + 5)),
            ],
            total: BudgetClass::new("total", 6, None),
        };
        assert!(!derive_mode(&budget(None), &[]).prep_only);
        let m = derive_mode(&budget(Some(0)), &[]);
        assert!(m.prep_only);
        assert_eq!(m.reason, "expensive budget spent");
        let open = breaker_report(
            BreakerRow {
                model: "openai/x".into(),
                provider: "openai".into(),
                state: "open".into(),
                reason: Some("rate_limit".into()),
                open_until_ms: Some(2_000),
                open_count: 1,
                updated_at: String::new(),
            },
            1_000,
        );
        assert_eq!((open.state.as_str(), open.open_for_secs), ("open", Some(1)));
        let m = derive_mode(&budget(Some(3)), std::slice::from_ref(&open));
        assert_eq!(m.reason, "breaker open: openai/x (rate_limit)");
        // Past its open period the breaker is half-open: not blocking.
        let later = breaker_report(
            BreakerRow {
                open_until_ms: Some(500),
                ..BreakerRow {
                    model: "m".into(),
                    provider: "p".into(),
                    state: "open".into(),
                    reason: None,
                    open_until_ms: None,
                    open_count: 1,
                    updated_at: String::new(),
                }
            },
            1_000,
        );
        assert_eq!(later.state, "half_open");
        assert!(!derive_mode(&budget(None), &[later]).prep_only);
    }

    #[test]
    fn report_of_a_small_queue_fits_80_columns() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), &StoreOptions::default()).unwrap();
        for id in ["2401.00001", "2401.00002"] {
            store
                .add_paper(&NewPaper {
                    arxiv_id: id.into(),
                    source: "test".into(),
                    ..NewPaper::default()
                })
                .unwrap();
        }
        store
            .claim_paper(
                "2401.00002",
                "a-very-long-owner-name-host:12345:abcdef0123456789",
                std::time::Duration::from_secs(60),
            )
            .unwrap()
            .unwrap();
        let mut cfg = Config::default();
        cfg.budget.expensive = Some(10);
        let r = status_report(&store, &cfg, None, Utc::now()).unwrap();
        assert_eq!(r.total, 2);
        assert_eq!(r.counts["pending"], 1);
        assert_eq!(r.counts["prepping"], 1);
        assert_eq!(r.in_flight.len(), 1);
        assert_eq!(r.in_flight[0].phase, "prep");
        assert_eq!(r.budget.classes[1].remaining, Some(10));
        assert_eq!(r.mode.source, "derived");
        assert_eq!(r.oldest_pending.as_ref().unwrap().arxiv_id, "2401.00001");
        let text = render_human(&r);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
        assert!(text.contains("in flight: 1"), "{text}");
    }
}
