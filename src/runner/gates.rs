//! What may be claimed right now: the mode (prep-only and why) and, per
//! phase, whether the models it needs and the budget allow a claim.
//!
//! A phase is claimable only when none of its models has an open breaker,
//! none of their providers answered 402, and its worst case (requests,
//! tokens and money, for the paper it would claim next) fits in the budget
//! left today beside the worst case of everything already in flight — in
//! every process sharing the database (their holds are in the store). The
//! check here decides the mode and what to try; the claim itself re-checks
//! in its own transaction (`Store::claim_within_budget`). When the expensive phase is blocked for any of these reasons
//! (or a prep-burst window is on), the runner is in prep-only mode and says
//! why.
//!
//! A provider's pause of a model (a 429's Retry-After) holds its phases
//! from the rate limiter of this process and, through the breakers, from
//! the `model_pauses` table — so a second daemon on the same database holds
//! them too, and `runner status` derives the same mode.

use super::breaker::Breakers;
use super::budget::{refusal_text, Budget, BudgetUsage, PhasePlan};
use super::config::PrepBurst;
use super::phase::Phase;
use crate::llm::gate::BlockReason;
use crate::llm::RateLimiter;
use crate::store::{ClassNeed, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The current mode, as shown in status and the systemd STATUS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeView {
    pub prep_only: bool,
    /// Claim prep and nothing else (`--prep-only`, a prep burst). Otherwise
    /// prep-only means only that the expensive phase is blocked: wrap, which
    /// uses the cheap model, still finishes analysed papers.
    pub only_prep: bool,
    /// Why prep-only ("--prep-only", "breaker open: …", "expensive budget spent", …); empty when normal.
    pub reason: String,
    /// Every model whose phases are not claimed now, why, and until when.
    pub blocked: Vec<BlockedModel>,
}

impl ModeView {
    /// What a change worth one log line is: mode and the blocked models
    /// with their reasons (not their deadlines, which move with every
    /// Retry-After).
    pub fn signature(&self) -> (bool, bool, Vec<(String, BlockReason)>) {
        let mut b: Vec<_> = self
            .blocked
            .iter()
            .filter(|m| !m.brief)
            .map(|m| (m.key.clone(), m.reason))
            .collect();
        b.sort();
        (self.prep_only, self.only_prep, b)
    }

    /// One line naming each blocked model, its reason and its end:
    /// `claude-sonnet-4 rate_limited until 12:01:07Z (expensive)`.
    pub fn blocked_text(&self) -> String {
        self.blocked
            .iter()
            .filter(|m| !m.brief)
            .map(BlockedModel::text)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A model whose phases are held back, as `status` and the log show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedModel {
    /// The model id (the limiter key without its base URL).
    pub model: String,
    /// The limiter key `base_url|model`.
    pub key: String,
    /// breaker_open, rate_limited, budget or payment_required.
    pub reason: BlockReason,
    /// When it ends (RFC 3339, UTC); None while unknown (a probe in flight).
    pub until: Option<String>,
    pub until_ms: Option<i64>,
    /// The phases that call it (and so are not claimed).
    pub phases: Vec<Phase>,
    /// A pacing hold shorter than the park threshold (the limiter has the
    /// model booked a few seconds ahead at its configured rate): its
    /// phases wait for the next claim, but it changes neither the mode nor
    /// the "models blocked" log line, which would otherwise flap at every
    /// saturated second.
    #[serde(skip)]
    pub brief: bool,
}

impl BlockedModel {
    pub fn text(&self) -> String {
        let until = self
            .until_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map(|t| t.format(" until %H:%M:%SZ").to_string())
            .unwrap_or_else(|| " (probe in flight)".into());
        let until = if self.reason == BlockReason::BreakerOpen || self.until_ms.is_some() {
            until
        } else {
            String::new()
        };
        let phases: Vec<&str> = self.phases.iter().map(|p| p.name()).collect();
        format!(
            "{} {}{until} ({})",
            self.model,
            self.reason,
            phases.join(", ")
        )
    }
}

/// A model a phase calls: (limiter key, provider).
#[derive(Debug, Clone)]
pub struct PhaseModel {
    pub key: String,
    pub provider: String,
}

/// An automatic prep-only window started by a cron schedule.
pub struct Burst {
    pub schedule: cron::Schedule,
    pub window: Duration,
}

impl Burst {
    /// The window of the resolved `scheduler.prep_burst_cron` (parsed once,
    /// by [`Config::resolve`](super::config::Config::resolve)).
    pub fn new(p: &PrepBurst) -> Burst {
        Burst {
            schedule: p.schedule.clone(),
            window: p.window,
        }
    }

    /// The end of the window `now` is in, if any.
    pub fn active_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let window = chrono::Duration::from_std(self.window).ok()?;
        let start = self.schedule.after(&(now - window)).next()?;
        (start <= now).then_some(start + window)
    }
}

/// Claim gates of one runner.
#[derive(Default)]
pub struct Gates {
    pub breakers: Option<Breakers>,
    pub budget: Option<Budget>,
    pub store: Option<Store>,
    pub phase_models: HashMap<Phase, Vec<PhaseModel>>,
    /// The worst case of each phase (see [`PhasePlan`]).
    pub phase_plans: Arc<HashMap<Phase, PhasePlan>>,
    pub burst: Option<Burst>,
    /// The agents' rate limiter and how far ahead a model may be booked
    /// before its phases stop being claimed (see [`Gates::with_limiter`]).
    pub limiter: Option<(Arc<RateLimiter>, Duration)>,
    /// Holds longer than this are "long" (see [`BlockedModel::brief`]):
    /// the agent's park threshold.
    pub park_after: Duration,
}

impl Gates {
    pub fn new(
        breakers: Option<Breakers>,
        budget: Option<Budget>,
        store: Option<Store>,
        phase_models: HashMap<Phase, Vec<PhaseModel>>,
        phase_plans: HashMap<Phase, PhasePlan>,
        burst: Option<Burst>,
    ) -> Gates {
        Gates {
            breakers,
            budget,
            store,
            phase_models,
            phase_plans: Arc::new(phase_plans),
            burst,
            limiter: None,
            park_after: Duration::ZERO,
        }
    }

    /// Do not claim a phase while a model it calls is booked more than
    /// `max_backlog` ahead in `limiter`. Why: at the provider's limit, a
    /// phase claimed for a saturated model only holds a worker slot while
    /// its calls queue, and with every slot taken by phases of one model the
    /// other model's limit goes unused (measured: cheap calls stopping for
    /// 20 s at 1000 in flight while expensive phases filled the slots).
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>, max_backlog: Duration) -> Gates {
        self.limiter = Some((limiter, max_backlog));
        self
    }

    /// Holds of a model shorter than `d` do not change the mode (see
    /// [`BlockedModel::brief`]); use the agent's park threshold.
    pub fn with_park_after(mut self, d: Duration) -> Gates {
        self.park_after = d;
        self
    }

    /// How far ahead a model may be booked (or paused) before its phases
    /// stop being claimed.
    fn max_backlog(&self) -> Duration {
        self.limiter
            .as_ref()
            .map_or(Duration::ZERO, |(_, max)| *max)
    }

    /// How long until `key` is free: its limiter backlog, or the rest of a
    /// provider pause the breakers know (from this process or from the
    /// database, written by another), whichever is longer.
    fn model_backlog(&self, key: &str, now_ms: i64) -> Duration {
        let limiter = self
            .limiter
            .as_ref()
            .map_or(Duration::ZERO, |(l, _)| l.backlog(key));
        let paused = self
            .breakers
            .as_ref()
            .and_then(|b| b.paused_until(key))
            .map_or(Duration::ZERO, |u| {
                Duration::from_millis(u64::try_from(u.saturating_sub(now_ms)).unwrap_or(0))
            });
        limiter.max(paused)
    }

    /// When a model of `phase` is booked (or paused by its provider) more
    /// than the allowed backlog ahead: how long until it no longer is.
    /// None: claim away.
    pub fn booked_ahead(&self, phase: Phase) -> Option<Duration> {
        if self.limiter.is_none() && self.breakers.is_none() {
            return None;
        }
        let max = self.max_backlog();
        let now_ms = Utc::now().timestamp_millis();
        let (model, backlog) = self
            .phase_models
            .get(&phase)
            .into_iter()
            .flatten()
            .map(|m| (display_model(&m.key), self.model_backlog(&m.key, now_ms)))
            .max_by_key(|(_, backlog)| *backlog)?;
        if backlog <= max {
            return None;
        }
        tracing::debug!(%phase, model, backlog_ms = backlog.as_millis() as u64, "not claiming: model booked ahead");
        Some(backlog - max)
    }

    /// Today's usage, read from the ledger and the holds of every process
    /// (never cached: a claim decided on a stale count could overspend);
    /// None without a budget.
    pub async fn usage(&self) -> Option<BudgetUsage> {
        let budget = self.budget.clone().filter(Budget::limited)?;
        let store = self.store.clone()?;
        let now = DateTime::<Utc>::from_timestamp_millis(store.now_ms()).unwrap_or_default();
        let u = store.run(move |s| budget.usage(s, now)).await;
        match u {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the budget; claiming nothing that needs it");
                None
            }
        }
    }

    /// The worst case of `phase` for the paper it would claim next (the
    /// plan's floor when none is claimable).
    async fn phase_need(&self, phase: Phase) -> ClassNeed {
        let Some(plan) = self.phase_plans.get(&phase) else {
            return ClassNeed::default();
        };
        let bytes = match &self.store {
            Some(store) => store
                .run(move |s| s.next_phase_input_bytes(phase))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot measure the next paper's input; using the plan's floor");
                    None
                })
                .unwrap_or(0),
            None => 0,
        };
        plan.need(bytes)
    }

    /// The claim-time admission: the budget's store policy and the phase
    /// plans, when any limit is set.
    pub fn admission(&self) -> Option<(crate::store::SpendPolicy, Arc<HashMap<Phase, PhasePlan>>)> {
        let b = self.budget.as_ref().filter(|b| b.limited())?;
        Some((b.policy().clone(), self.phase_plans.clone()))
    }

    /// Why the models of `phase` cannot be used now, if they cannot.
    fn model_block(&self, phase: Phase) -> Option<String> {
        let breakers = self.breakers.as_ref()?;
        let blocked = breakers.blocked_providers();
        for m in self.phase_models.get(&phase).into_iter().flatten() {
            if blocked.contains(&m.provider) {
                return Some(format!(
                    "provider {} answered 402 (out of credits)",
                    m.provider
                ));
            }
            if breakers.is_open(&m.key) {
                let v = breakers.state(&m.key);
                let until = v
                    .open_until_ms
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .map(|t| t.format(" until %H:%M:%SZ").to_string())
                    .unwrap_or_default();
                return Some(format!(
                    "breaker open for {} ({}){until}",
                    display_model(&m.key),
                    v.reason.unwrap_or_else(|| "errors".into())
                ));
            }
        }
        None
    }

    /// Why the budget does not allow `phase`: its worst case for the next
    /// paper does not fit beside what is committed (the ledger and every
    /// process's holds, so everything in flight is included).
    async fn budget_block(&self, usage: Option<&BudgetUsage>, phase: Phase) -> Option<String> {
        self.budget.as_ref().filter(|b| b.limited())?;
        let Some(usage) = usage else {
            return Some("budget unreadable".into());
        };
        let need = self.phase_need(phase).await;
        usage.check(&need).err().map(|r| refusal_text(&r))
    }

    /// Every model whose phases cannot be claimed now, and why: provider
    /// out of credits, breaker open (or probing), limiter booked beyond the
    /// claim backlog (a Retry-After pause or pacing), or the budget of the
    /// phase's class spent (given what is in flight).
    pub async fn blocked_models(&self) -> Vec<BlockedModel> {
        let mut out: Vec<BlockedModel> = Vec::new();
        let now_ms = Utc::now().timestamp_millis();
        let long_ms = i64::try_from(self.park_after.as_millis()).unwrap_or(i64::MAX / 2);
        let mut add = |key: &str, reason: BlockReason, until_ms: Option<i64>, phase: Phase| {
            let brief = reason == BlockReason::RateLimited
                && until_ms.is_some_and(|u| u.saturating_sub(now_ms) <= long_ms);
            if let Some(b) = out.iter_mut().find(|b| b.key == key && b.reason == reason) {
                if !b.phases.contains(&phase) {
                    b.phases.push(phase);
                }
                return;
            }
            out.push(BlockedModel {
                model: display_model(key).to_string(),
                key: key.to_string(),
                reason,
                until: until_ms
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                until_ms,
                phases: vec![phase],
                brief,
            });
        };
        let usage = self.usage().await;
        if let Some(b) = &self.breakers {
            // Pauses other processes wrote (throttled to one read a second).
            b.refresh_pauses().await;
        }
        for phase in Phase::ALL {
            let models = self.phase_models.get(&phase).cloned().unwrap_or_default();
            if let Some(breakers) = &self.breakers {
                let blocked = breakers.blocked_providers();
                for m in &models {
                    if blocked.contains(&m.provider) {
                        let until = breakers
                            .all()
                            .into_iter()
                            .filter(|(_, v)| {
                                v.provider.as_deref() == Some(m.provider.as_str())
                                    && v.reason.as_deref()
                                        == Some(crate::engine::ErrorKind::PaymentRequired.as_str())
                            })
                            .filter_map(|(_, v)| v.open_until_ms)
                            .max();
                        add(&m.key, BlockReason::PaymentRequired, until, phase);
                    } else if breakers.is_open(&m.key) {
                        let v = breakers.state(&m.key);
                        let until = v
                            .open_until_ms
                            .filter(|_| v.state == super::breaker::BreakerState::Open);
                        add(&m.key, BlockReason::BreakerOpen, until, phase);
                    }
                }
            }
            if self.limiter.is_some() || self.breakers.is_some() {
                let max = self.max_backlog();
                for m in &models {
                    let backlog = self.model_backlog(&m.key, now_ms);
                    if backlog > max {
                        let ms = i64::try_from(backlog.as_millis()).unwrap_or(i64::MAX / 2);
                        add(
                            &m.key,
                            BlockReason::RateLimited,
                            Some(now_ms.saturating_add(ms)),
                            phase,
                        );
                    }
                }
            }
            if self.budget_block(usage.as_ref(), phase).await.is_some() {
                let until = usage.as_ref().map(|u| u.resets_at.timestamp_millis());
                for m in &models {
                    add(&m.key, BlockReason::Budget, until, phase);
                }
            }
        }
        out
    }

    /// The mode: prep-only when asked, or when the expensive phase cannot be
    /// claimed (breaker, 402, budget, its model paused by the rate limiter
    /// beyond the claim backlog), or inside a prep-burst window. `blocked`
    /// lists every held model whatever the mode.
    pub async fn mode(&self, prep_only_flag: bool) -> ModeView {
        let blocked = self.blocked_models().await;
        let prep_only = |reason: String, blocked: Vec<BlockedModel>| ModeView {
            prep_only: true,
            only_prep: false,
            reason,
            blocked,
        };
        if prep_only_flag {
            return ModeView {
                prep_only: true,
                only_prep: true,
                reason: "--prep-only".into(),
                blocked,
            };
        }
        if let Some(why) = self.model_block(Phase::Expensive) {
            return prep_only(why, blocked);
        }
        let usage = self.usage().await;
        if let Some(why) = self.budget_block(usage.as_ref(), Phase::Expensive).await {
            return prep_only(why, blocked);
        }
        if let Some(b) = blocked.iter().find(|b| {
            b.reason == BlockReason::RateLimited && !b.brief && b.phases.contains(&Phase::Expensive)
        }) {
            let why = format!("expensive paused: {}", b.text());
            return prep_only(why, blocked);
        }
        if let Some(b) = &self.burst {
            if let Some(until) = b.active_until(Utc::now()) {
                let prep_fits = self
                    .budget_block(usage.as_ref(), Phase::Prep)
                    .await
                    .is_none();
                if prep_fits {
                    return ModeView {
                        prep_only: true,
                        only_prep: true,
                        reason: format!("prep burst until {}", until.format("%H:%MZ")),
                        blocked,
                    };
                }
            }
        }
        ModeView {
            prep_only: false,
            only_prep: false,
            reason: String::new(),
            blocked,
        }
    }

    /// Whether `phase` may be claimed now.
    pub async fn phase_allowed(&self, phase: Phase) -> bool {
        if let Some(why) = self.model_block(phase) {
            tracing::debug!(%phase, %why, "not claiming");
            return false;
        }
        if self.budget.as_ref().is_some_and(Budget::limited) {
            let usage = self.usage().await;
            if let Some(why) = self.budget_block(usage.as_ref(), phase).await {
                tracing::debug!(%phase, %why, "not claiming");
                return false;
            }
        }
        true
    }
}

/// `base_url|model` → `model` for messages.
fn display_model(key: &str) -> &str {
    key.rsplit_once('|').map_or(key, |(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn burst_window_follows_the_cron_schedule() {
        let mut cfg = crate::runner::config::Config::default();
        cfg.scheduler.prep_burst_cron = Some("0 0 23 * * *".into());
        cfg.scheduler.prep_burst_minutes = 60;
        let settings = cfg.resolve().unwrap();
        let b = Burst::new(settings.scheduler.prep_burst.as_ref().unwrap());
        let at = |h, m| Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap();
        assert_eq!(b.active_until(at(22, 59)), None);
        assert_eq!(
            b.active_until(at(23, 0)),
            Some(at(23, 0) + chrono::Duration::minutes(60))
        );
        assert!(b.active_until(at(23, 30)).is_some());
        assert!(crate::runner::config::parse_cron("not cron").is_err());
    }

    /// Gates where expensive calls `u|big` and wrap `u|small`, with a
    /// claim backlog of 2 s.
    fn two_model_gates(limiter: &Arc<RateLimiter>) -> Gates {
        let model = |key: &str| PhaseModel {
            key: key.into(),
            provider: "p".into(),
        };
        let mut phase_models = HashMap::new();
        phase_models.insert(Phase::Expensive, vec![model("u|big")]);
        phase_models.insert(Phase::Wrap, vec![model("u|small")]);
        Gates {
            phase_models,
            ..Gates::default()
        }
        .with_limiter(limiter.clone(), Duration::from_secs(2))
    }

    #[tokio::test(start_paused = true)]
    async fn a_phase_whose_model_is_booked_ahead_waits_for_the_backlog() {
        let limiter = Arc::new(RateLimiter::new());
        let g = two_model_gates(&limiter);
        assert_eq!(g.booked_ahead(Phase::Expensive), None);
        // 60/m: each call books a second; the first two fit the burst.
        let rate = crate::llm::Rate::parse("60/m").ok();
        for _ in 0..2 {
            limiter.acquire("u|big", rate).await;
        }
        // Four more queue at once (each books its slot before sleeping).
        let queued: Vec<_> = (0..4)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move { l.acquire("u|big", rate).await })
            })
            .collect();
        for _ in 0..2 {
            tokio::task::yield_now().await;
        }
        while limiter.backlog("u|big") < Duration::from_secs(5) {
            tokio::task::yield_now().await;
        }
        // Booked 5 s ahead with 2 s allowed: claimable again in 3 s.
        assert_eq!(
            g.booked_ahead(Phase::Expensive),
            Some(Duration::from_secs(3))
        );
        assert_eq!(g.booked_ahead(Phase::Wrap), None, "another model");
        assert_eq!(g.booked_ahead(Phase::Prep), None, "no model known");
        for q in queued {
            q.await.unwrap();
        }
        // Once the queue has drained, claimable again.
        assert_eq!(g.booked_ahead(Phase::Expensive), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_expensive_model_means_prep_only_with_reason_and_end() {
        let limiter = Arc::new(RateLimiter::new());
        let g = two_model_gates(&limiter).with_park_after(Duration::from_secs(10));
        let normal = g.mode(false).await;
        assert!(!normal.prep_only);
        assert!(normal.blocked.is_empty());
        // A provider's Retry-After of 60 s on the expensive model.
        let _ = limiter.acquire("u|big", None).await;
        limiter.pause("u|big", 60.0).await;
        let m = g.mode(false).await;
        assert!(m.prep_only && !m.only_prep, "{m:?}");
        assert!(
            m.reason
                .starts_with("expensive paused: big rate_limited until "),
            "{m:?}"
        );
        assert_eq!(m.blocked.len(), 1);
        let b = &m.blocked[0];
        assert_eq!(
            (b.model.as_str(), b.reason),
            ("big", BlockReason::RateLimited)
        );
        assert_eq!(b.phases, vec![Phase::Expensive]);
        assert!(!b.brief);
        assert!(b.until.is_some() && b.until_ms.is_some());
        // The log line changes only when the set changes, not as the
        // deadline moves.
        tokio::time::advance(Duration::from_secs(5)).await;
        let later = g.mode(false).await;
        assert_eq!(later.signature(), m.signature());
        assert!(later.blocked_text().contains("big rate_limited until"));
        // Past the pause: normal again.
        tokio::time::advance(Duration::from_secs(60)).await;
        let after = g.mode(false).await;
        assert!(!after.prep_only);
        assert_ne!(after.signature(), m.signature());
    }

    /// A pause learned by another process (its breakers wrote it to the
    /// database) holds this runner's expensive phase: prep-only with the
    /// model, the reason and the end, and no claim until it is over.
    #[tokio::test]
    async fn a_pause_persisted_by_another_process_holds_the_phase_here() {
        use crate::runner::breaker::CallOutcome;
        use crate::runner::config::BreakerSettings;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let other = Breakers::new(
            Some(Store::open(&path, &Default::default()).unwrap()),
            BreakerSettings::default(),
        )
        .unwrap()
        .with_pause_threshold(Duration::from_secs(2));
        let before = Utc::now().timestamp_millis();
        other.record(
            "u|big",
            "p",
            CallOutcome::failed(crate::engine::ErrorKind::RateLimit, Some(60.0)),
        );
        // A synchronous record is written by the breakers' own task.
        other.flush().await;
        let store = Store::open(&path, &Default::default()).unwrap();
        let here = Breakers::new(Some(store.clone()), BreakerSettings::default()).unwrap();
        let model = |key: &str| PhaseModel {
            key: key.into(),
            provider: "p".into(),
        };
        let mut phase_models = HashMap::new();
        phase_models.insert(Phase::Expensive, vec![model("u|big")]);
        phase_models.insert(Phase::Wrap, vec![model("u|small")]);
        let g = Gates {
            breakers: Some(here),
            store: Some(store),
            phase_models,
            ..Gates::default()
        }
        .with_limiter(Arc::new(RateLimiter::new()), Duration::from_secs(2))
        .with_park_after(Duration::from_secs(10));
        let m = g.mode(false).await;
        assert!(m.prep_only && !m.only_prep, "{m:?}");
        assert!(
            m.reason
                .starts_with("expensive paused: big rate_limited until "),
            "{m:?}"
        );
        assert_eq!(m.blocked.len(), 1, "{m:?}");
        let b = &m.blocked[0];
        assert_eq!(
            (b.key.as_str(), b.reason),
            ("u|big", BlockReason::RateLimited)
        );
        assert_eq!(b.phases, vec![Phase::Expensive]);
        let until = b.until_ms.unwrap();
        assert!(until >= before + 60_000 && until <= Utc::now().timestamp_millis() + 60_000);
        // Not claimed: the scheduler looks again when the pause is within
        // the claim backlog (58 s from now, give or take the test's time).
        let w = g.booked_ahead(Phase::Expensive).unwrap();
        assert!(
            w > Duration::from_secs(50) && w <= Duration::from_secs(58),
            "{w:?}"
        );
        assert_eq!(g.booked_ahead(Phase::Wrap), None);
    }

    #[tokio::test]
    async fn no_gates_allow_everything() {
        let g = Gates::default();
        assert!(!g.mode(false).await.prep_only);
        assert!(g.mode(true).await.prep_only);
        assert!(g.phase_allowed(Phase::Expensive).await);
    }
}
