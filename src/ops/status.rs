//! `runner status` and `/status`: one [`StatusReport`] built from the
//! database (and, inside a running daemon, its live [`RunnerStats`]).
//!
//! Without a daemon the mode is derived from what the database says — the
//! budget left, open breakers and the provider pauses a daemon persisted
//! (`model_pauses`) — which is what a daemon started now would decide; a
//! running daemon passes its own [`ModeView`] instead.

use super::{fit, fmt_ts, human_duration_ms, parse_ts, OpsError};
use crate::llm::gate::BlockReason;
use crate::llm::ModelProfile;
use crate::runner::budget::{self, refusal_text, Budget, BudgetUsage, ClassCalls, PhasePlan};
use crate::runner::build;
use crate::runner::config::{Config, Settings};
use crate::runner::gates::{BlockedModel, Burst, ModeView};
use crate::runner::scheduler::RunnerStats;
use crate::store::ops::{BreakerRow, WorkingRow};
use crate::store::pauses::PauseRow;
use crate::store::{ClassNeed, ModelClass, Need, Phase, Spend, Store, UnitLimits};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use indexmap::IndexMap;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Everything `runner status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub generated_at: String,
    pub db: String,
    pub total: u64,
    /// Papers per status, every status present, in flow order.
    pub counts: IndexMap<String, u64>,
    /// Papers claimable now per phase: ready (not waiting for a retry
    /// delay, not cancelled) and not held by the mode or a blocked model.
    pub claimable: IndexMap<String, u64>,
    /// Papers ready but held per phase (its model is blocked, or the mode
    /// claims only prep); see `mode.blocked` for why and until when.
    pub held: IndexMap<String, u64>,
    pub in_flight: Vec<InFlightPaper>,
    /// Executions parked on a `wait_for` state (no worker, no lease).
    pub waiting: Vec<crate::store::signals::WaitRow>,
    pub budget: BudgetReport,
    pub breakers: Vec<BreakerReport>,
    pub mode: ModeReport,
    pub done_last_hour: u64,
    pub done_last_day: u64,
    pub oldest_pending: Option<PendingReport>,
    /// Settled calls of the current budget day whose cost is unknown.
    pub unknown_cost: UnknownCostReport,
    /// Average costs and what the queue will cost.
    pub forecast: super::forecast::Forecast,
    /// The live view of the daemon serving this report (only from `/status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerStats>,
}

/// Calls of the current budget day with no known cost (their profile has
/// no `price:` and the provider reported none, or no usage came back):
/// spend sums leave them out, so the report says so.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct UnknownCostReport {
    pub calls: u64,
    /// Per model and profile, most calls first.
    pub models: Vec<crate::store::UnknownCostCalls>,
}

impl UnknownCostReport {
    /// The operator's line, e.g. "3 calls today with unknown cost: models
    /// x (profile judge), y — add `price:` to their profiles".
    pub fn text(&self) -> Option<String> {
        if self.calls == 0 {
            return None;
        }
        let mut models: Vec<String> = Vec::new();
        for m in &self.models {
            let name = match &m.profile {
                Some(p) => format!("{} (profile {p})", m.model),
                None => m.model.clone(),
            };
            if !models.contains(&name) {
                models.push(name);
            }
        }
        let calls = if self.calls == 1 { "call" } else { "calls" };
        Some(format!(
            "{} {calls} today with unknown cost: models {} — add `price:` to their profiles",
            self.calls,
            models.join(", ")
        ))
    }
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
    /// The host the owner runs on (the first part of its id): with several
    /// runners on one PostgreSQL database, whose work this is.
    pub host: Option<String>,
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

/// What the current budget day has used, holds and has left, per class
/// and in total, in requests, tokens and money.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BudgetReport {
    pub day_started_at: String,
    pub resets_at: String,
    /// cheap, expensive.
    pub classes: Vec<BudgetClass>,
    pub total: BudgetClass,
}

/// One scope of the budget. `used`, `limit` and `remaining` count requests
/// (as they always have); `tokens` and `usd` the other units.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BudgetClass {
    pub class: String,
    /// Requests of the day's ledger rows (sent, or reserved).
    pub used: u64,
    /// Requests the phases in flight may still send (their holds).
    pub held: u64,
    /// None: unlimited.
    pub limit: Option<u64>,
    /// limit − used − held, never negative.
    pub remaining: Option<u64>,
    pub tokens: UnitReport,
    pub usd: MoneyReport,
}

/// Tokens of one scope.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnitReport {
    /// Reported tokens of settled rows, worst case of reserved ones.
    pub used: u64,
    /// Worst case the phases in flight may still use.
    pub held: u64,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
}

/// Money of one scope (the profiles' price currency, USD by default).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MoneyReport {
    /// Known cost of settled rows, worst case of reserved ones.
    pub used: f64,
    pub held: f64,
    pub limit: Option<f64>,
    pub remaining: Option<f64>,
    /// Rows and holds whose cost has no bound (no price): not in `used`.
    pub unpriced: u64,
}

impl BudgetClass {
    fn new(class: &str, ledger: &Spend, holds: &Spend, limits: &UnitLimits) -> BudgetClass {
        let left =
            |l: Option<u64>, a: u64, b: u64| l.map(|l| l.saturating_sub(a.saturating_add(b)));
        let money = |x: f64| crate::store::round_money(x);
        BudgetClass {
            class: class.into(),
            used: ledger.requests,
            held: holds.requests,
            limit: limits.requests,
            remaining: left(limits.requests, ledger.requests, holds.requests),
            tokens: UnitReport {
                used: ledger.tokens,
                held: holds.tokens,
                limit: limits.tokens,
                remaining: left(limits.tokens, ledger.tokens, holds.tokens),
            },
            usd: MoneyReport {
                used: money(ledger.usd),
                held: money(holds.usd),
                limit: limits.usd,
                remaining: limits
                    .usd
                    .map(|l| money((l - ledger.usd - holds.usd).max(0.0))),
                unpriced: ledger.unpriced.saturating_add(holds.unpriced),
            },
        }
    }

    /// Whether any of its limits is used up.
    pub fn spent(&self) -> bool {
        self.remaining == Some(0)
            || self.tokens.remaining == Some(0)
            || self.usd.remaining.is_some_and(|r| r <= 0.0)
    }
}

/// A model's breaker.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BreakerReport {
    /// The breaker's key: the limiter key `base_url|model`.
    pub key: String,
    /// The model id (the key without its base URL).
    pub model: String,
    pub provider: String,
    /// Effective now: `open` while its open period runs; `half_open` while
    /// a probe is in flight or, the period over, the next call probes;
    /// else `closed`.
    pub state: String,
    /// Whether work needing this model is not claimed now (open, or a
    /// probe in flight).
    pub blocking: bool,
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
    /// Prep and nothing else (`--prep-only`, a prep burst); otherwise a
    /// prep-only runner still wraps analysed papers.
    pub only_prep: bool,
    pub reason: String,
    /// "runner" (a running daemon's own view) or "derived" (from the
    /// database: budget and breakers).
    pub source: String,
    /// Each blocked model: reason (breaker_open, rate_limited, budget,
    /// payment_required), until when, and the phases it holds. A
    /// provider's pause (rate_limited) longer than the claim backlog is
    /// persisted by the daemon that learned it, so the derived view shows
    /// it too; pacing at the configured rate is seen only by `/status`.
    pub blocked: Vec<BlockedModel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PendingReport {
    pub id: String,
    pub arxiv_id: String,
    pub since: String,
    pub age_secs: Option<i64>,
}

/// Build the report. `live`: the stats of the daemon serving `/status`
/// (its mode wins over the derived one). `settings` are resolved once by
/// the caller (the daemon at start-up, `runner status` before it reads):
/// the day start, the prep-burst cron and the thresholds arrive typed, so
/// a report parses no setting.
pub fn status_report(
    store: &Store,
    settings: &Settings,
    live: Option<&RunnerStats>,
    now: DateTime<Utc>,
) -> Result<StatusReport, OpsError> {
    let now_ms = now.timestamp_millis();
    let counts: IndexMap<String, u64> = store
        .status_counts()?
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    let ready = store.claimable_counts()?;
    let in_flight = store
        .working_papers()?
        .into_iter()
        .map(|w| in_flight(w, now))
        .collect();
    let cfg = &settings.config;
    let budget_rules = Budget::new(settings.budget.clone());
    let usage = budget_rules.usage(store, now)?;
    let budget = budget_report(&usage);
    let forecast = super::forecast::forecast(store, &budget_rules, now)?;
    let models = store.unknown_cost_calls(usage.day_started_at, usage.resets_at)?;
    let unknown_cost = UnknownCostReport {
        calls: models.iter().map(|m| m.calls).sum(),
        models,
    };
    let breakers: Vec<BreakerReport> = store
        .breakers()?
        .into_iter()
        .map(|b| breaker_report(b, now_ms))
        .collect();
    let mode = match live.and_then(|s| s.mode.as_ref()) {
        Some(m) => mode_report(m, "runner"),
        None => {
            let needs = expensive_needs(settings, store);
            let burst = settings.scheduler.prep_burst.as_ref().map(Burst::new);
            let pauses = store.model_pauses(now_ms)?;
            // Which phases a paused model holds (read only when one is).
            let model_phases = if pauses.is_empty() {
                None
            } else {
                model_phases(cfg)
            };
            let (claim_backlog_ms, park_after_ms) = pause_thresholds_ms(settings);
            let view = derive_mode(&ModeInputs {
                needs: needs.as_ref(),
                usage: &usage,
                breakers: &breakers,
                burst: burst.as_ref(),
                now,
                pauses: &pauses,
                model_phases: model_phases.as_ref(),
                claim_backlog_ms,
                park_after_ms,
            });
            mode_report(&view, "derived")
        }
    };
    // Claimable now = ready and not held by the mode or a blocked model.
    let mut claimable = IndexMap::new();
    let mut held = IndexMap::new();
    for (p, n) in ready {
        let is_held = (mode.only_prep && p != Phase::Prep)
            || mode.blocked.iter().any(|b| b.phases.contains(&p));
        let (now_n, held_n) = if is_held { (0, n) } else { (n, 0) };
        claimable.insert(p.name().to_string(), now_n);
        held.insert(p.name().to_string(), held_n);
    }
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
        held,
        in_flight,
        waiting: store.waits()?,
        budget,
        breakers,
        mode,
        done_last_hour: done_since(ChronoDuration::hours(1))?,
        done_last_day: done_since(ChronoDuration::days(1))?,
        oldest_pending,
        unknown_cost,
        forecast,
        runner: live.cloned(),
    })
}

fn in_flight(w: WorkingRow, now: DateTime<Utc>) -> InFlightPaper {
    let phase = w
        .status
        .working_phase()
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
        status: w.status.to_string(),
        phase,
        attempt: w.attempt,
        host: w
            .owner_id
            .as_deref()
            .and_then(|o| o.split(':').next())
            .map(str::to_string),
        owner: w.owner_id,
        phase_execution: w.phase_execution,
        state,
        checkpoint_event: w.checkpoint_event,
        children_running: w.children_running,
        started_at: w.phase_started_at,
    }
}

/// The report's view of today's usage (from `runner::budget`, the same
/// figures the claims are admitted with).
pub fn budget_report(u: &BudgetUsage) -> BudgetReport {
    let class =
        |c: ModelClass| BudgetClass::new(c.as_str(), u.ledger.of(c), u.holds.of(c), u.limits.of(c));
    BudgetReport {
        day_started_at: fmt_ts(u.day_started_at),
        resets_at: fmt_ts(u.resets_at),
        classes: vec![class(ModelClass::Cheap), class(ModelClass::Expensive)],
        total: BudgetClass::new(
            "total",
            &u.ledger.total(),
            &u.holds.total(),
            &u.limits.daily,
        ),
    }
}

fn display_model(key: &str) -> &str {
    key.rsplit_once('|').map_or(key, |(_, m)| m)
}

fn breaker_report(b: BreakerRow, now_ms: i64) -> BreakerReport {
    let open_ahead = b.open_until_ms.filter(|u| *u > now_ms);
    let (state, blocking) = match (b.state.as_str(), open_ahead) {
        ("open", Some(_)) => ("open", true),
        ("open", None) => ("half_open", false),
        ("half_open", _) => ("half_open", true),
        _ => ("closed", false),
    };
    BreakerReport {
        open_until: b
            .open_until_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map(fmt_ts),
        open_for_secs: open_ahead.map(|u| (u - now_ms + 999) / 1000),
        model: display_model(&b.model).to_string(),
        key: b.model,
        provider: b.provider,
        state: state.into(),
        blocking,
        stored_state: b.state,
        reason: b.reason,
        open_count: b.open_count,
    }
}

/// What the expensive phase needs: the models it calls (limiter key,
/// provider), its worst-case calls per class, and its worst case in every
/// unit for the paper it would claim next.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseNeeds {
    pub models: Vec<(String, String)>,
    pub calls: ClassCalls,
    pub need: ClassNeed,
}

/// [`PhaseNeeds`] of the expensive phase from its machine file; None when
/// the machines cannot be loaded here (then every breaker counts).
pub fn expensive_needs(settings: &Settings, store: &Store) -> Option<PhaseNeeds> {
    let loaded = expensive_machine(settings)?;
    let bytes = store
        .next_phase_input_bytes(Phase::Expensive)
        .ok()
        .flatten()
        .unwrap_or(0);
    Some(PhaseNeeds {
        models: loaded.models.clone(),
        calls: loaded.calls,
        need: loaded.plan.need(bytes),
    })
}

/// What the expensive machine calls, from its files.
struct ExpensiveMachine {
    models: Vec<(String, String)>,
    calls: ClassCalls,
    plan: PhasePlan,
}

/// How long a loaded expensive machine is reused: loading parses every
/// machine file (tens of ms), and the dashboard's overview and `/status`
/// may ask every few seconds.
const MACHINE_CACHE: std::time::Duration = std::time::Duration::from_secs(30);

/// What a loaded machine was loaded for (its files and the budget
/// settings its worst case is priced with), when, and the result.
type MachineCache = Option<(
    (std::path::PathBuf, crate::runner::config::BudgetSettings),
    std::time::Instant,
    Option<std::sync::Arc<ExpensiveMachine>>,
)>;

fn expensive_machine(settings: &Settings) -> Option<std::sync::Arc<ExpensiveMachine>> {
    static CACHE: std::sync::Mutex<MachineCache> = std::sync::Mutex::new(None);
    let cfg = &settings.config;
    if let Ok(guard) = CACHE.lock() {
        if let Some(((dir, budget), at, loaded)) = guard.as_ref() {
            if *dir == cfg.machines_dir
                && *budget == settings.budget
                && at.elapsed() < MACHINE_CACHE
            {
                return loaded.clone();
            }
        }
    }
    let loaded = load_expensive_machine(settings).map(std::sync::Arc::new);
    if let Ok(mut guard) = CACHE.lock() {
        *guard = Some((
            (cfg.machines_dir.clone(), settings.budget.clone()),
            std::time::Instant::now(),
            loaded.clone(),
        ));
    }
    loaded
}

fn load_expensive_machine(settings: &Settings) -> Option<ExpensiveMachine> {
    let cfg = &settings.config;
    if !build::has_machines(&cfg.machines_dir) {
        return None;
    }
    let actions = build::pipeline_actions(cfg).ok()?;
    let bundle = match build::load_machine(cfg, Phase::Expensive, &actions) {
        Ok(b) => b,
        Err(e) => {
            // Not silent: an invalid profile also stops the runner's start.
            tracing::warn!(error = %e, "cannot load the expensive machine; counting every breaker");
            return None;
        }
    };
    let mut models: Vec<(String, String)> = Vec::new();
    for m in &bundle.machines {
        for a in m.agents.values() {
            if let Ok(p) = ModelProfile::from_config(&a.model) {
                let entry = (p.limiter_key(), p.provider.clone());
                if !models.contains(&entry) {
                    models.push(entry);
                }
            }
        }
    }
    let calls = budget::worst_case_calls(&bundle, |p| settings.budget.class_of(p).to_string());
    // Its input is stored: measured per paper, no floor.
    let plan = PhasePlan::of(&bundle, &settings.budget, 0);
    Some(ExpensiveMachine {
        models,
        calls,
        plan,
    })
}

/// The worst case the derived mode checks when the machines are unknown:
/// one expensive request, costing something. (At `usd: 0.0` it fit a money
/// budget already spent, and status said "normal" while the runner itself
/// would claim no expensive work.)
fn unknown_need() -> ClassNeed {
    ClassNeed::one(
        ModelClass::Expensive,
        Need {
            requests: 1,
            tokens: 1,
            usd: Some(1e-6),
        },
    )
}

/// Every model each phase's machines call: limiter key → phases; None when
/// the machines cannot be loaded here.
pub fn model_phases(cfg: &Config) -> Option<HashMap<String, Vec<Phase>>> {
    if !build::has_machines(&cfg.machines_dir) {
        return None;
    }
    let actions = build::pipeline_actions(cfg).ok()?;
    let mut out: HashMap<String, Vec<Phase>> = HashMap::new();
    for phase in Phase::ALL {
        let bundle = build::load_machine(cfg, phase, &actions).ok()?;
        for m in &bundle.machines {
            for a in m.agents.values() {
                if let Ok(p) = ModelProfile::from_config(&a.model) {
                    let phases = out.entry(p.limiter_key()).or_default();
                    if !phases.contains(&phase) {
                        phases.push(phase);
                    }
                }
            }
        }
    }
    Some(out)
}

/// The claim backlog and the park threshold in ms, the resolved values
/// `runner::build` gives the daemon: a pause longer than the backlog holds
/// claims, one longer than the park threshold changes the mode.
pub fn pause_thresholds_ms(settings: &Settings) -> (i64, i64) {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let t = &settings.scheduler;
    (ms(t.claim_backlog), ms(t.park_after))
}

/// What [`derive_mode`] decides from.
pub struct ModeInputs<'a> {
    /// None: unknown (the machines could not be loaded).
    pub needs: Option<&'a PhaseNeeds>,
    pub usage: &'a BudgetUsage,
    pub breakers: &'a [BreakerReport],
    pub burst: Option<&'a Burst>,
    pub now: DateTime<Utc>,
    /// Provider pauses still running (`model_pauses`).
    pub pauses: &'a [PauseRow],
    /// Limiter key → the phases that call it (None: unknown; a paused
    /// model then holds the expensive phase when it is one of its models).
    pub model_phases: Option<&'a HashMap<String, Vec<Phase>>>,
    /// Pauses up to this long hold nothing (the scheduler's claim backlog).
    pub claim_backlog_ms: i64,
    /// Pauses up to this long hold their phases but not the mode.
    pub park_after_ms: i64,
}

/// What a daemon started now would decide (the rules of
/// `runner::gates::Gates::mode`, read from the database instead of a live
/// runner): prep-only when the expensive phase's models are blocked (open
/// breaker, provider out of credits), when its worst case does not fit the
/// budget left, when a model of it is paused by its provider, or inside a
/// prep-burst window.
pub fn derive_mode(i: &ModeInputs<'_>) -> ModeView {
    let blocked = derived_blocked(i);
    let prep_only = |reason: String| ModeView {
        prep_only: true,
        only_prep: false,
        reason,
        blocked: blocked.clone(),
    };
    let needed = |b: &BreakerReport| {
        i.needs
            .is_none_or(|n| n.models.iter().any(|(key, _)| *key == b.key))
    };
    let provider_needed = |p: &str| {
        i.needs
            .is_none_or(|n| n.models.iter().any(|(_, prov)| prov == p))
    };
    let payment = crate::engine::ErrorKind::PaymentRequired.as_str();
    if let Some(b) = i.breakers.iter().find(|b| {
        b.blocking && b.reason.as_deref() == Some(payment) && provider_needed(&b.provider)
    }) {
        return prep_only(format!(
            "provider {} answered 402 (out of credits)",
            b.provider
        ));
    }
    if let Some(b) = i.breakers.iter().find(|b| b.blocking && needed(b)) {
        let until = b
            .open_until
            .as_deref()
            .and_then(parse_ts)
            .filter(|_| b.state == "open")
            .map(|t| t.format(" until %H:%M:%SZ").to_string())
            .unwrap_or_default();
        return prep_only(format!(
            "breaker open for {} ({}){until}",
            b.model,
            b.reason.as_deref().unwrap_or("errors")
        ));
    }
    let need = i.needs.map_or_else(unknown_need, |n| n.need);
    if let Err(r) = i.usage.check(&need) {
        return prep_only(refusal_text(&r));
    }
    if let Some(b) = blocked.iter().find(|b| {
        b.reason == BlockReason::RateLimited && !b.brief && b.phases.contains(&Phase::Expensive)
    }) {
        return prep_only(format!("expensive paused: {}", b.text()));
    }
    if let Some(until) = i.burst.and_then(|b| b.active_until(i.now)) {
        let cheap = ClassNeed::one(
            ModelClass::Cheap,
            Need {
                requests: 1,
                tokens: 1,
                usd: Some(0.0),
            },
        );
        if i.usage.check(&cheap).is_ok() {
            return ModeView {
                prep_only: true,
                only_prep: true,
                reason: format!("prep burst until {}", until.format("%H:%MZ")),
                blocked,
            };
        }
    }
    ModeView {
        prep_only: false,
        only_prep: false,
        reason: String::new(),
        blocked,
    }
}

/// The blocked models the database shows: breakers that block (open, or
/// a probe out; 402s provider-wide) and, when the expensive phase's worst
/// case does not fit the budget left, its models. Only the expensive
/// phase's models are known here (None: every blocking breaker counts).
fn derived_blocked(i: &ModeInputs<'_>) -> Vec<BlockedModel> {
    let payment = crate::engine::ErrorKind::PaymentRequired.as_str();
    let mut out: Vec<BlockedModel> = Vec::new();
    let entry = |key: &str, reason: BlockReason, until_ms: Option<i64>| BlockedModel {
        model: display_model(key).to_string(),
        key: key.to_string(),
        reason,
        until: until_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        until_ms,
        phases: vec![Phase::Expensive],
        brief: false,
    };
    let expensive_models: Vec<(String, String)> = match i.needs {
        Some(n) => n.models.clone(),
        None => i
            .breakers
            .iter()
            .map(|b| (b.key.clone(), b.provider.clone()))
            .collect(),
    };
    for (key, provider) in &expensive_models {
        let payment_block = i.breakers.iter().find(|b| {
            b.blocking && b.reason.as_deref() == Some(payment) && b.provider == *provider
        });
        let own = i.breakers.iter().find(|b| b.blocking && b.key == *key);
        let until = |b: &BreakerReport| {
            b.open_until
                .as_deref()
                .and_then(parse_ts)
                .filter(|_| b.state == "open")
                .map(|t| t.timestamp_millis())
        };
        if let Some(b) = payment_block {
            out.push(entry(key, BlockReason::PaymentRequired, until(b)));
        } else if let Some(b) = own {
            out.push(entry(key, BlockReason::BreakerOpen, until(b)));
        }
    }
    let need = i.needs.map_or_else(unknown_need, |n| n.need);
    if i.usage.check(&need).is_err() {
        for (key, _) in &expensive_models {
            if !out.iter().any(|b| b.key == *key) {
                out.push(entry(
                    key,
                    BlockReason::Budget,
                    Some(i.usage.resets_at.timestamp_millis()),
                ));
            }
        }
    }
    // Provider pauses beyond the claim backlog, on the phases that call
    // the model (as `Gates::blocked_models` lists them).
    let now_ms = i.now.timestamp_millis();
    for p in i.pauses {
        let left = p.paused_until_ms.saturating_sub(now_ms);
        if left <= i.claim_backlog_ms {
            continue;
        }
        let phases: Vec<Phase> = match i.model_phases {
            Some(map) => map.get(&p.model).cloned().unwrap_or_default(),
            // Machines unknown: every pause counts, as every breaker does.
            None if i.needs.is_none() || expensive_models.iter().any(|(k, _)| *k == p.model) => {
                vec![Phase::Expensive]
            }
            None => Vec::new(),
        };
        if phases.is_empty() {
            continue;
        }
        out.push(BlockedModel {
            phases,
            brief: left <= i.park_after_ms,
            ..entry(&p.model, BlockReason::RateLimited, Some(p.paused_until_ms))
        });
    }
    out
}

fn mode_report(m: &ModeView, source: &str) -> ModeReport {
    ModeReport {
        mode: if m.prep_only { "prep-only" } else { "normal" }.into(),
        prep_only: m.prep_only,
        only_prep: m.only_prep,
        reason: m.reason.clone(),
        source: source.into(),
        blocked: m.blocked.clone(),
    }
}

/// Whole seconds for a person (`0s`, `42s`, `3m 05s`, …).
fn human_secs(s: i64) -> String {
    if s.abs() < 1 {
        "0s".into()
    } else {
        human_duration_ms(s * 1000)
    }
}

/// `$0.4100` below a dollar, `$41.20` above.
fn dollars(x: f64) -> String {
    if x.abs() < 1.0 {
        format!("${x:.4}")
    } else {
        format!("${x:.2}")
    }
}

/// 950, 45.2k, 1.2M, 3.4G.
fn short_count(n: u64) -> String {
    let f = n as f64;
    if n < 10_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", f / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.1}M", f / 1e6)
    } else {
        format!("{:.1}G", f / 1e9)
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
/// Executions parked on `wait_for`: what each waits for, since and until.
fn render_waiting(o: &mut String, r: &StatusReport) {
    if r.waiting.is_empty() {
        return;
    }
    let now = parse_ts(&r.generated_at).map(|t| t.timestamp_millis());
    let _ = writeln!(o, "waiting for a signal: {}", r.waiting.len());
    for w in &r.waiting {
        let since = now.map_or_else(|| "-".into(), |n| human_duration_ms(n - w.since_ms));
        let until = match (w.deadline_ms, now) {
            (Some(d), Some(n)) => format!(", times out in {}", human_duration_ms(d - n)),
            _ => String::new(),
        };
        let pending = if w.pending > 0 {
            format!(", {} pending", w.pending)
        } else {
            String::new()
        };
        let line = format!(
            "  {} waits for '{}' ({since}{until}{pending})",
            w.execution_id, w.signal
        );
        let _ = writeln!(o, "{}", fit(&line, 100));
    }
}

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
    let held: Vec<String> = r
        .held
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    if !held.is_empty() {
        let _ = writeln!(o, "{}", fit(&format!("held: {}", held.join(", ")), 80));
    }
    for b in &r.mode.blocked {
        let _ = writeln!(o, "{}", fit(&format!("blocked: {}", b.text()), 80));
    }
    let _ = writeln!(
        o,
        "done: {} in the last hour, {} in the last day",
        r.done_last_hour, r.done_last_day
    );
    match &r.oldest_pending {
        Some(p) => {
            let age = p
                .age_secs
                .map(|s| format!(" (waiting {})", human_secs(s)))
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
        let mut hosts: std::collections::BTreeMap<&str, usize> = Default::default();
        for f in &r.in_flight {
            *hosts.entry(f.host.as_deref().unwrap_or("-")).or_default() += 1;
        }
        let by_host: Vec<String> = hosts.iter().map(|(h, n)| format!("{h} {n}")).collect();
        let _ = writeln!(
            o,
            "in flight: {} (by host: {})",
            r.in_flight.len(),
            by_host.join(", ")
        );
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
            let age = f.age_secs.map_or_else(|| "-".into(), human_secs);
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
    render_waiting(&mut o, r);
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
                "budget (used + in flight / limit, since {} UTC, resets in {resets})",
                short_time(&b.day_started_at)
            ),
            80
        )
    );
    let _ = writeln!(
        o,
        "  {:<10} {:>17} {:>21} {:>23}",
        "CLASS", "REQUESTS", "TOKENS", "MONEY"
    );
    for c in b.classes.iter().chain(std::iter::once(&b.total)) {
        let line = format!(
            "  {:<10} {:>17} {:>21} {:>23}",
            c.class,
            format!("{}/{}", c.used.saturating_add(c.held), limit(c.limit)),
            format!(
                "{}/{}",
                short_count(c.tokens.used.saturating_add(c.tokens.held)),
                c.tokens.limit.map_or_else(|| "-".into(), short_count)
            ),
            format!(
                "{}/{}",
                dollars(c.usd.used + c.usd.held),
                c.usd.limit.map_or_else(|| "-".into(), dollars)
            ),
        );
        let _ = writeln!(o, "{}", fit(&line, 80));
    }
    let t = &b.total;
    if t.held > 0 {
        let line = format!(
            "  in flight may still spend {} ({} tokens, {} requests)",
            dollars(t.usd.held),
            short_count(t.tokens.held),
            t.held
        );
        let _ = writeln!(o, "{}", fit(&line, 80));
    }
    let f = &r.forecast;
    if let Some(p) = &f.per_done_paper {
        let line = format!(
            "per done paper (last day, {} papers): {}, {} tokens, {:.1} requests",
            f.done_last_day,
            dollars(p.cost),
            short_count(p.tokens.round() as u64),
            p.requests
        );
        let _ = writeln!(o, "{}", fit(&line, 80));
    }
    let _ = writeln!(o, "{}", fit(&format!("forecast: {}", f.text), 80));
    let u = &r.unknown_cost;
    if u.calls > 0 {
        // One model per line, so a long model id cannot push the advice
        // past the 80th column.
        let calls = if u.calls == 1 { "call" } else { "calls" };
        let _ = writeln!(
            o,
            "unknown cost: {} {calls} today; add `price:` to the profiles of:",
            u.calls
        );
        for m in &u.models {
            let profile = m.profile.as_deref().unwrap_or("(default)");
            let n = if m.calls == 1 { "call" } else { "calls" };
            let why = match m.no_usage {
                0 => String::new(),
                k => format!(", {k} with no usage reported"),
            };
            let line = format!("  {profile}: {} ({} {n}{why})", m.model, m.calls);
            let _ = writeln!(o, "{}", fit(&line, 80));
        }
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
                detail.push_str(&format!("for {}", human_secs(s)));
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

    /// The expensive phase calling `http://p/v1|exp` at most `n` times.
    fn needs_of(n: u64) -> PhaseNeeds {
        PhaseNeeds {
            models: vec![("http://p/v1|exp".into(), "openai".into())],
            calls: ClassCalls {
                cheap: 0,
                expensive: n,
            },
            need: ClassNeed::one(
                ModelClass::Expensive,
                Need {
                    requests: n,
                    tokens: 0,
                    usd: Some(0.0),
                },
            ),
        }
    }

    fn row(key: &str, provider: &str, state: &str, reason: &str, until: i64) -> BreakerRow {
        BreakerRow {
            model: key.into(),
            provider: provider.into(),
            state: state.into(),
            reason: Some(reason.into()),
            open_until_ms: Some(until),
            open_count: 1,
            updated_at: String::new(),
        }
    }

    /// A provider pause persisted by a daemon: beyond the park threshold
    /// it makes the derived mode prep-only naming the model, the reason and
    /// the end; between the claim backlog and the park threshold it holds
    /// the phases without changing the mode; within the backlog, nothing.
    #[test]
    fn a_persisted_pause_is_derived_like_the_daemon_sees_it() {
        let now = parse_ts("2026-01-02T10:00:00Z").unwrap();
        let now_ms = now.timestamp_millis();
        let usage = BudgetUsage {
            day_started_at: now,
            resets_at: now + ChronoDuration::days(1),
            ledger: Default::default(),
            holds: Default::default(),
            limits: Default::default(),
        };
        let needs = needs_of(3);
        let mut phases = HashMap::new();
        phases.insert("http://p/v1|exp".to_string(), vec![Phase::Expensive]);
        phases.insert(
            "http://p/v1|cheap".to_string(),
            vec![Phase::Prep, Phase::Wrap],
        );
        let pause = |key: &str, secs: i64| PauseRow {
            model: key.into(),
            provider: "openai".into(),
            paused_until_ms: now_ms + secs * 1000,
            reason: "rate_limited".into(),
        };
        let decide = |pauses: &[PauseRow], model_phases: Option<&HashMap<String, Vec<Phase>>>| {
            derive_mode(&ModeInputs {
                needs: Some(&needs),
                usage: &usage,
                breakers: &[],
                burst: None,
                now,
                pauses,
                model_phases,
                claim_backlog_ms: 2000,
                park_after_ms: 10_000,
            })
        };
        let m = decide(&[pause("http://p/v1|exp", 60)], Some(&phases));
        assert!(m.prep_only && !m.only_prep, "{m:?}");
        assert_eq!(
            m.reason,
            "expensive paused: exp rate_limited until 10:01:00Z (expensive)"
        );
        assert_eq!(m.blocked.len(), 1);
        let b = &m.blocked[0];
        assert_eq!(
            (b.key.as_str(), b.reason, b.until_ms, b.until.as_deref()),
            (
                "http://p/v1|exp",
                BlockReason::RateLimited,
                Some(now_ms + 60_000),
                Some("2026-01-02T10:01:00Z")
            )
        );
        // Machines unknown: the expensive model's pause still counts.
        assert!(decide(&[pause("http://p/v1|exp", 60)], None).prep_only);
        // The cheap model paused: prep and wrap held, the mode unchanged
        // (the expensive phase is not blocked).
        let m = decide(&[pause("http://p/v1|cheap", 60)], Some(&phases));
        assert!(!m.prep_only, "{m:?}");
        assert_eq!(m.blocked[0].phases, vec![Phase::Prep, Phase::Wrap]);
        // 5 s: held but brief (no mode change); 1 s: within the backlog.
        let m = decide(&[pause("http://p/v1|exp", 5)], Some(&phases));
        assert!(!m.prep_only && m.blocked.len() == 1 && m.blocked[0].brief);
        assert!(decide(&[pause("http://p/v1|exp", 1)], Some(&phases))
            .blocked
            .is_empty());
    }

    #[test]
    fn mode_follows_the_expensive_phase_breakers_budget_and_credits() {
        let now = parse_ts("2026-01-02T10:00:00Z").unwrap();
        let now_ms = now.timestamp_millis();
        let usage = |e: u64| {
            let mut u = BudgetUsage {
                day_started_at: now,
                resets_at: now + ChronoDuration::days(1),
                ledger: Default::default(),
                holds: Default::default(),
                limits: Default::default(),
            };
            u.limits.expensive.requests = Some(5);
            u.ledger.expensive.requests = e;
            u
        };
        let needs = needs_of(3);
        let decide = |used: u64, breakers: &[BreakerReport], needs: Option<&PhaseNeeds>| {
            derive_mode(&ModeInputs {
                needs,
                usage: &usage(used),
                breakers,
                burst: None,
                now,
                pauses: &[],
                model_phases: None,
                claim_backlog_ms: 2000,
                park_after_ms: 10_000,
            })
        };
        assert!(!decide(1, &[], Some(&needs)).prep_only);
        // 3 used + a worst case of 3 does not fit in 5.
        let m = decide(3, &[], Some(&needs));
        assert!(m.prep_only && !m.only_prep);
        assert!(
            m.reason
                .starts_with("expensive budget spent for today (resets "),
            "{}",
            m.reason
        );

        let exp_open = breaker_report(
            row(
                "http://p/v1|exp",
                "openai",
                "open",
                "rate_limit",
                now_ms + 60_000,
            ),
            now_ms,
        );
        assert_eq!(
            (exp_open.state.as_str(), exp_open.open_for_secs),
            ("open", Some(60))
        );
        assert_eq!(exp_open.model, "exp");
        let m = decide(0, std::slice::from_ref(&exp_open), Some(&needs));
        assert_eq!(
            m.reason,
            "breaker open for exp (rate_limit) until 10:01:00Z"
        );
        // The blocked model, its reason and its end, for status and /status.
        assert_eq!(m.blocked.len(), 1);
        let b = &m.blocked[0];
        assert_eq!(
            (b.model.as_str(), b.reason, b.until_ms),
            ("exp", BlockReason::BreakerOpen, Some(now_ms + 60_000))
        );
        assert_eq!(b.phases, vec![Phase::Expensive]);
        assert_eq!(b.text(), "exp breaker_open until 10:01:00Z (expensive)");
        // A spent budget blocks the expensive models until the day resets.
        let spent = decide(3, &[], Some(&needs));
        assert_eq!(spent.blocked.len(), 1);
        assert_eq!(spent.blocked[0].reason, BlockReason::Budget);
        // The cheap model's breaker does not stop the expensive phase...
        let cheap_open = breaker_report(
            row(
                "http://p/v1|cheap",
                "openai",
                "open",
                "server_error",
                now_ms + 60_000,
            ),
            now_ms,
        );
        assert!(!decide(0, std::slice::from_ref(&cheap_open), Some(&needs)).prep_only);
        // ...unless what the phase needs is unknown.
        assert!(decide(0, std::slice::from_ref(&cheap_open), None).prep_only);
        // A spent money budget is prep-only even when the machines are
        // unknown; money left is not.
        let money = |used: f64| {
            let mut u = usage(0);
            u.limits.expensive.usd = Some(2.0);
            u.ledger.expensive.usd = used;
            derive_mode(&ModeInputs {
                needs: None,
                usage: &u,
                breakers: &[],
                burst: None,
                now,
                pauses: &[],
                model_phases: None,
                claim_backlog_ms: 2000,
                park_after_ms: 10_000,
            })
        };
        assert!(money(2.0).prep_only, "{}", money(2.0).reason);
        assert!(!money(1.5).prep_only);
        // Out of credits: every model of the provider.
        let broke = breaker_report(
            row(
                "http://p/v1|cheap",
                "openai",
                "open",
                "payment_required",
                now_ms + 60_000,
            ),
            now_ms,
        );
        assert_eq!(
            decide(0, &[broke], Some(&needs)).reason,
            "provider openai answered 402 (out of credits)"
        );
        // Past its open period a breaker is due for a probe: not blocking.
        let due = breaker_report(
            row(
                "http://p/v1|exp",
                "openai",
                "open",
                "rate_limit",
                now_ms - 1,
            ),
            now_ms,
        );
        assert_eq!((due.state.as_str(), due.blocking), ("half_open", false));
        assert!(!decide(0, &[due], Some(&needs)).prep_only);
        // A probe in flight blocks.
        let probing = breaker_report(
            row(
                "http://p/v1|exp",
                "openai",
                "half_open",
                "rate_limit",
                now_ms - 1,
            ),
            now_ms,
        );
        assert!(probing.blocking);
    }

    /// The report reads the resolved settings only: once resolved, the
    /// file model's text can be anything (it is never parsed again) and
    /// the typed day start and prep-burst window decide.
    #[test]
    fn the_report_reads_resolved_settings_and_parses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), &StoreOptions::default()).unwrap();
        let mut cfg = Config {
            machines_dir: dir.path().join("no-machines"),
            ..Config::default()
        };
        cfg.budget.day_start_utc = "6:30".into();
        cfg.scheduler.prep_burst_cron = Some("0 0 9 * * *".into());
        cfg.scheduler.prep_burst_minutes = 60;
        let mut settings = cfg.resolve().unwrap();
        // What a re-parse would trip over.
        settings.config.budget.day_start_utc = "not a time".into();
        settings.config.scheduler.prep_burst_cron = Some("not cron".into());
        let now = parse_ts("2026-01-02T09:10:00Z").unwrap();
        let r = status_report(&store, &settings, None, now).unwrap();
        let at = |t: &str| fmt_ts(parse_ts(t).unwrap());
        assert_eq!(r.budget.day_started_at, at("2026-01-02T06:30:00Z"));
        assert_eq!(r.budget.resets_at, at("2026-01-03T06:30:00Z"));
        assert!(r.mode.only_prep, "{:?}", r.mode);
        assert!(
            r.mode.reason.starts_with("prep burst until 10:00Z"),
            "{:?}",
            r.mode
        );
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
        let r = status_report(&store, &cfg.resolve().unwrap(), None, Utc::now()).unwrap();
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
