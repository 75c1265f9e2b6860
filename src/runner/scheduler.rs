//! The scheduler: continuous fill of a global semaphore with claimed phases.
//!
//! There are no batches: whenever a slot is free and something is
//! claimable, it is claimed at once. What may be claimed is decided per
//! claim from the mode (prep-only, resume-only), the per-phase caps, the
//! breakers of the models a phase needs and the budget left — so the runner
//! keeps building the prep buffer when the expensive model is unavailable.

use super::budget::refusal_text;
use super::gates::{Gates, ModeView};
use super::phase::Phase;
use super::systemd::Notifier;
use super::task::{run_claim, PhaseMachine, TaskEnv, TaskOutcome, TaskReport};
use crate::llm::gate::BlockReason;
use crate::store::{now_ms, Claim, ClaimRequest, PaperStatus, Reaped, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How the runner decides when to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Run until nothing is claimable, then exit.
    SinglePass,
    /// Keep polling until told to stop.
    Daemon,
    /// Finish in-flight (resumable) executions, claim nothing new, exit.
    ResumeOnly,
}

/// Scheduler settings (from `Config.scheduler` and flags).
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub mode: RunMode,
    pub prep_only: bool,
    pub workers: usize,
    pub phase_caps: HashMap<Phase, usize>,
    pub phase_order: Vec<Phase>,
    pub prepped_low_watermark: Option<usize>,
    pub poll_interval: Duration,
    pub drain_timeout: Duration,
    /// How often the reaper looks for expired claims.
    pub reap_interval: Duration,
}

/// Live view of the runner, for status, metrics and the systemd STATUS.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunnerStats {
    pub in_flight: Vec<InFlight>,
    pub finished: HashMap<String, u64>,
    pub retried: HashMap<String, u64>,
    pub failed: HashMap<String, u64>,
    pub released: u64,
    /// Phases that gave their slot back because a model they call is blocked.
    pub parked: u64,
    pub lost: u64,
    pub reaped: u64,
    pub mode: Option<ModeView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InFlight {
    pub id: String,
    pub arxiv_id: String,
    pub phase: Phase,
    pub attempt: u32,
    pub started_ms: i64,
}

/// Called after every task with the current stats (progress bars, metrics).
pub type Observer = Arc<dyn Fn(&TaskReport, &RunnerStats) + Send + Sync>;

pub struct Scheduler {
    pub env: Arc<TaskEnv>,
    pub machines: HashMap<Phase, PhaseMachine>,
    pub settings: SchedulerSettings,
    pub gates: Gates,
    pub stats: Arc<Mutex<RunnerStats>>,
    pub observer: Option<Observer>,
    /// systemd notifications (a no-op outside systemd).
    pub notifier: Notifier,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub finished: HashMap<String, u64>,
    pub failed: u64,
    pub retry_later: u64,
    pub released: u64,
    /// Phases parked because a model they call is blocked (not failures).
    pub parked: u64,
    pub reaped: u64,
    /// Phase tasks that panicked (each failed as `internal` and settled).
    pub panicked: u64,
    /// Store or I/O errors met while claiming, checkpointing or settling
    /// (a full disk, a broken database): the work is safe at its last
    /// checkpoint, but a single pass reports it with a non-zero exit.
    pub store_errors: u64,
    /// True when the drain timeout passed with work still in flight.
    pub drain_timed_out: bool,
    /// True when a second signal stopped the drain at once.
    pub killed: bool,
}

impl RunSummary {
    /// Whether a one-shot run should exit non-zero: a task panicked or the
    /// store failed (the process could not do what it was asked, although
    /// nothing committed was lost).
    pub fn had_trouble(&self) -> bool {
        self.panicked > 0 || self.store_errors > 0
    }
}

impl Scheduler {
    /// Run until the mode says stop, or `shutdown` is cancelled (then drain:
    /// in-flight work gets `drain_timeout` to finish; what is left is given
    /// back so a restart resumes it at once). `kill` cancels the drain.
    pub async fn run(&self, shutdown: CancellationToken, kill: CancellationToken) -> RunSummary {
        let mut summary = RunSummary::default();
        let trouble_before = self.env.trouble.counts();
        let mut tasks: JoinSet<TaskReport> = JoinSet::new();
        // The claim of every task, so a task that dies without a report
        // (aborted, or a panic that escaped its own guard) is given back
        // at once instead of holding its claim until the lease expires.
        let mut claims: HashMap<tokio::task::Id, Claim> = HashMap::new();
        let mut running: HashMap<Phase, usize> = HashMap::new();
        let task_stop = CancellationToken::new();
        let mut last_reap: Option<Instant> = None;
        let mut last_mode: Option<ModeView> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if last_reap.is_none_or(|t| t.elapsed() >= self.settings.reap_interval) {
                let first = last_reap.is_none();
                last_reap = Some(Instant::now());
                for r in self.reap(&mut summary).await {
                    summary.reaped += 1;
                    tracing::warn!(paper = %r.id, phase = %r.phase, owner = ?r.owner, outcome = ?r.outcome, "reaped an expired claim");
                }
                if first {
                    // DB open, migrations applied, first reaper pass done.
                    self.notifier.ready();
                }
            }
            // The watchdog is fed from this loop, so a stuck loop is noticed.
            self.notifier.watchdog();
            let mode = self.gates.mode(self.settings.prep_only).await;
            let changed = last_mode.as_ref().map(ModeView::signature) != Some(mode.signature());
            if changed {
                if mode.prep_only {
                    tracing::warn!(reason = %mode.reason, "prep-only mode");
                } else if last_mode.is_some() {
                    tracing::warn!("normal mode: every phase may be claimed again");
                }
                // The one line that says why something does not move.
                if mode.blocked.is_empty() {
                    if last_mode.is_some() {
                        tracing::info!("no model blocked");
                    }
                } else {
                    tracing::info!(blocked = %mode.blocked_text(), "models blocked; their phases are not claimed");
                }
            }
            if let Ok(mut s) = self.stats.lock() {
                s.mode = Some(mode.clone());
            }
            last_mode = Some(mode.clone());
            // Fill every free slot.
            let mut claimed_any = false;
            // Set when a phase waits only for its model's limiter backlog
            // to shrink: look again then (and do not end a single pass).
            let mut backlog_wait: Option<Duration> = None;
            while tasks.len() < self.settings.workers.max(1) {
                let (phases, wait) = self.claimable_phases(&mode, &running).await;
                backlog_wait = wait;
                let resumable_only = self.settings.mode == RunMode::ResumeOnly;
                if phases.is_empty() {
                    break;
                }
                let claim = self.claim(&phases, resumable_only, &mut summary).await;
                let Some(claim) = claim else { break };
                let Some(machine) = self.machines.get(&claim.phase).cloned() else {
                    // Not claimable by construction; never hold such a claim.
                    tracing::error!(paper = %claim.arxiv_id, phase = %claim.phase, "claimed a phase with no machine loaded; giving it back");
                    self.release_now(&claim, "no machine loaded for this phase")
                        .await;
                    break;
                };
                claimed_any = true;
                *running.entry(claim.phase).or_default() += 1;
                if let Ok(mut s) = self.stats.lock() {
                    s.in_flight.push(InFlight {
                        id: claim.id.clone(),
                        arxiv_id: claim.arxiv_id.clone(),
                        phase: claim.phase,
                        attempt: claim.attempt,
                        started_ms: now_ms(),
                    });
                }
                let handle = tasks.spawn(run_claim(
                    self.env.clone(),
                    machine,
                    claim.clone(),
                    task_stop.clone(),
                ));
                claims.insert(handle.id(), claim);
            }
            // Phases held only until a breaker's open period or a limiter
            // pause ends: look again then, and do not end a single pass
            // while ready work waits for them.
            let blocked_wait = self.blocked_wait(&mode).await;
            if tasks.is_empty()
                && !claimed_any
                && backlog_wait.is_none()
                && blocked_wait.is_none()
                && self.settings.mode != RunMode::Daemon
            {
                break;
            }
            if self.notifier.is_enabled() {
                self.notifier
                    .status(&self.status_line(&mode, tasks.len()).await);
            }
            // Wait for a slot to free up, the next poll, or shutdown.
            let mut poll = self.settings.poll_interval;
            if let Some(w) = self.notifier.watchdog_interval() {
                poll = poll.min(w);
            }
            let mut wait = if tasks.is_empty() {
                poll
            } else {
                poll.max(Duration::from_millis(200))
            };
            for b in [backlog_wait, blocked_wait].into_iter().flatten() {
                wait = wait.min(b.max(Duration::from_millis(20)));
            }
            let idle_wait = tokio::time::sleep(wait);
            // Work added or freed (here, or on PostgreSQL by any host)
            // ends an idle wait at once instead of at the next poll.
            let wake = self.env.store.wake();
            let woken = wake.notified();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = woken, if tasks.len() < self.settings.workers.max(1) => {}
                done = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    if let Some(done) = done {
                        self.record(done, &mut claims, &mut running, &mut summary).await;
                    }
                }
                _ = idle_wait => {}
            }
        }
        // Drain.
        self.notifier.stopping();
        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                timeout_s = self.settings.drain_timeout.as_secs(),
                "draining in-flight work"
            );
            let deadline = tokio::time::sleep(self.settings.drain_timeout);
            tokio::pin!(deadline);
            let mut stopping = false;
            while !tasks.is_empty() {
                tokio::select! {
                    done = tasks.join_next_with_id() => {
                        if let Some(done) = done {
                            self.record(done, &mut claims, &mut running, &mut summary).await;
                        }
                    }
                    _ = &mut deadline, if !stopping => {
                        summary.drain_timed_out = true;
                        stopping = true;
                        // Ask tasks to give their claims back (they stop
                        // driving and release at once).
                        task_stop.cancel();
                    }
                    _ = kill.cancelled() => {
                        // Second signal: stop at once. Everything stays
                        // resumable from its checkpoints; the claims left
                        // are rolled back by the reaper (dead owner).
                        summary.killed = true;
                        tasks.abort_all();
                        break;
                    }
                }
            }
        }
        // Breaker changes made from synchronous code in the last moments
        // (an outcome recorded by a task that just ended) are written by a
        // task the breakers own; the caller drops the runtime soon after
        // this returns, which would abort that write. Wait for it here, so
        // a restart sees every breaker this run opened.
        if let Some(breakers) = &self.gates.breakers {
            breakers.flush().await;
        }
        let (panics, store_errors) = self.env.trouble.counts();
        summary.panicked += panics.saturating_sub(trouble_before.0);
        summary.store_errors += store_errors.saturating_sub(trouble_before.1);
        summary
    }

    /// How long until a model holding ready work may be usable again
    /// (breaker open period, limiter pause), if any phase with ready work
    /// is held only by such a temporary block. None: nothing to wait for
    /// (budget and 402 blocks last until the day resets or credits return).
    async fn blocked_wait(&self, mode: &ModeView) -> Option<Duration> {
        let now = now_ms();
        let mut wait: Option<Duration> = None;
        let mut phases: Vec<Phase> = Vec::new();
        for b in &mode.blocked {
            let w = match (b.reason, b.until_ms) {
                (BlockReason::BreakerOpen | BlockReason::RateLimited, Some(u)) => {
                    Duration::from_millis(u64::try_from(u.saturating_sub(now)).unwrap_or(0))
                }
                // A probe in flight: its outcome comes within a call.
                (BlockReason::BreakerOpen, None) => Duration::from_secs(1),
                _ => continue,
            };
            wait = Some(wait.map_or(w, |x: Duration| x.min(w)));
            phases.extend(b.phases.iter().copied());
        }
        let wait = wait?;
        if self.settings.mode == RunMode::Daemon {
            return Some(wait);
        }
        // A one-shot run waits only when there is held work to run.
        let ready = self
            .env
            .store
            .run(|s| s.claimable_counts())
            .await
            .unwrap_or_default();
        let resumable_only = self.settings.mode == RunMode::ResumeOnly;
        let held = ready
            .iter()
            .any(|(p, n)| *n > 0 && phases.contains(p) && self.machines.contains_key(p));
        // Resume-only runs wait only for work they could resume; the count
        // above does not tell resumable from fresh, so they do not wait.
        (held && !resumable_only).then_some(wait)
    }

    /// Give a claim back at once (a task that died, a phase with no machine).
    async fn release_now(&self, claim: &Claim, why: &str) {
        let (c, w) = (claim.clone(), why.to_string());
        if let Err(e) = self.env.store.run(move |s| s.release_claim(&c, &w)).await {
            tracing::warn!(paper = %claim.arxiv_id, error = %e, "cannot give the claim back; it will expire")
        }
    }

    /// One line for the systemd STATUS: counts, mode, in flight.
    async fn status_line(&self, mode: &ModeView, in_flight: usize) -> String {
        let counts = self
            .env
            .store
            .run(|s| s.status_counts())
            .await
            .unwrap_or_default();
        let counts: Vec<String> = counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        let mut line = if mode.prep_only {
            format!("prep-only ({})", mode.reason)
        } else {
            "normal".to_string()
        };
        if !mode.blocked.is_empty() {
            line.push_str(&format!("; blocked: {}", mode.blocked_text()));
        }
        format!("{line}; in flight {in_flight}; {}", counts.join(", "))
    }

    async fn record(
        &self,
        done: Result<(tokio::task::Id, TaskReport), tokio::task::JoinError>,
        claims: &mut HashMap<tokio::task::Id, Claim>,
        running: &mut HashMap<Phase, usize>,
        summary: &mut RunSummary,
    ) {
        let report = match done {
            Ok((id, r)) => {
                claims.remove(&id);
                r
            }
            Err(e) => {
                // Only possible for an aborted task or a panic outside the
                // task's own guard: give the claim back now.
                let claim = claims.remove(&e.id());
                if e.is_panic() {
                    summary.panicked += 1;
                }
                tracing::error!(error = %e, "a phase task panicked or was aborted; giving its claim back");
                if let Some(c) = claim {
                    self.release_now(&c, "phase task died").await;
                    if let Some(n) = running.get_mut(&c.phase) {
                        *n = n.saturating_sub(1);
                    }
                    if let Ok(mut s) = self.stats.lock() {
                        s.in_flight.retain(|f| f.id != c.id);
                    }
                }
                return;
            }
        };
        if let Some(n) = running.get_mut(&report.phase) {
            *n = n.saturating_sub(1);
        }
        let phase = report.phase.name().to_string();
        let snapshot = {
            let Ok(mut s) = self.stats.lock() else { return };
            s.in_flight.retain(|f| f.id != report.id);
            match &report.outcome {
                TaskOutcome::Finished => {
                    *summary.finished.entry(phase.clone()).or_default() += 1;
                    *s.finished.entry(phase).or_default() += 1;
                }
                TaskOutcome::RetryLater { .. } => {
                    summary.retry_later += 1;
                    *s.retried.entry(phase).or_default() += 1;
                }
                TaskOutcome::Failed { .. } => {
                    summary.failed += 1;
                    *s.failed.entry(phase).or_default() += 1;
                }
                TaskOutcome::Released { .. } => {
                    summary.released += 1;
                    s.released += 1;
                }
                TaskOutcome::Parked { .. } => {
                    summary.parked += 1;
                    s.parked += 1;
                }
                TaskOutcome::Lost => s.lost += 1,
            }
            s.clone()
        };
        if let Some(obs) = &self.observer {
            obs(&report, &snapshot);
        }
    }

    /// The phases that may be claimed now, in preference order, and, when
    /// some phase is held back only because its model is booked ahead, how
    /// long until the earliest of them may be claimed.
    async fn claimable_phases(
        &self,
        mode: &ModeView,
        running: &HashMap<Phase, usize>,
    ) -> (Vec<Phase>, Option<Duration>) {
        let mut order = self.settings.phase_order.clone();
        for p in Phase::ALL {
            if !order.contains(&p) {
                order.push(p);
            }
        }
        if let Some(mark) = self.settings.prepped_low_watermark {
            let prepped = self
                .env
                .store
                .run(|s| s.status_counts())
                .await
                .ok()
                .and_then(|c| {
                    c.into_iter()
                        .find(|(s, _)| *s == PaperStatus::Prepped)
                        .map(|(_, n)| n)
                })
                .unwrap_or(0);
            if (prepped as usize) < mark {
                order.retain(|p| *p != Phase::Prep);
                order.insert(0, Phase::Prep);
            }
        }
        let mut out = Vec::new();
        let mut wait = None;
        for p in order {
            if mode.only_prep && p != Phase::Prep {
                continue;
            }
            // A phase with no machine loaded is never claimed (its claim
            // could only be held until it expired).
            if !self.machines.contains_key(&p) {
                continue;
            }
            if let Some(cap) = self.settings.phase_caps.get(&p) {
                if running.get(&p).copied().unwrap_or(0) >= *cap {
                    continue;
                }
            }
            if !self.gates.phase_allowed(p).await {
                continue;
            }
            if let Some(w) = self.gates.booked_ahead(p) {
                wait = Some(wait.map_or(w, |x: Duration| x.min(w)));
                continue;
            }
            out.push(p);
        }
        (out, wait)
    }

    /// Claim the next phase; under a budget, only one whose worst case fits
    /// beside everything committed (checked and held in the claim's own
    /// transaction, so runners sharing the database never over-commit).
    async fn claim(
        &self,
        phases: &[Phase],
        resumable_only: bool,
        summary: &mut RunSummary,
    ) -> Option<Claim> {
        let owner = self.env.owner.clone();
        let ttl = self.env.lease_ttl;
        let phases = phases.to_vec();
        let admission = self.gates.admission();
        let r = self
            .env
            .store
            .run(move |s| {
                let req = ClaimRequest {
                    owner: &owner,
                    ttl,
                    phases: &phases,
                    resumable_only,
                };
                match &admission {
                    None => s.claim(&req),
                    Some((policy, plans)) => {
                        let need = |phase: Phase, bytes: u64| {
                            plans.get(&phase).map(|p| p.need(bytes)).unwrap_or_default()
                        };
                        let a = s.claim_within_budget(&req, policy, &need)?;
                        for (phase, refusal) in &a.refused {
                            tracing::debug!(%phase, why = %refusal_text(refusal), "not claiming");
                        }
                        Ok(a.claim)
                    }
                }
            })
            .await;
        match r {
            Ok(c) => c,
            Err(e @ StoreError::TaskFailed(_)) => {
                tracing::error!(error = %e, "claim task failed");
                None
            }
            Err(e) => {
                summary.store_errors += 1;
                tracing::error!(error = %e, "claim failed");
                None
            }
        }
    }

    async fn reap(&self, summary: &mut RunSummary) -> Vec<Reaped> {
        let policy = self.env.retry;
        let r = self
            .env
            .store
            .run(move |s| s.reap(&policy, crate::store::owner_is_dead))
            .await;
        match r {
            Ok(v) => {
                if let Ok(mut s) = self.stats.lock() {
                    s.reaped += v.len() as u64;
                }
                v
            }
            Err(e @ StoreError::TaskFailed(_)) => {
                tracing::error!(error = %e, "reaper task failed");
                Vec::new()
            }
            Err(e) => {
                summary.store_errors += 1;
                tracing::error!(error = %e, "reaper failed");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ActionRegistry, ErrorKind};
    use crate::llm::HttpAgent;
    use crate::runner::breaker::{Breakers, CallOutcome};
    use crate::runner::config::BreakerSettings;
    use crate::store::{owner_id, RetryPolicy, Store, StoreOptions};

    /// A scheduler with no machines whose gates hold `breakers`.
    fn scheduler(store: &Store, breakers: &Breakers) -> Scheduler {
        let env = Arc::new(TaskEnv {
            store: store.clone(),
            agent: Arc::new(HttpAgent::new(None).unwrap()),
            actions: ActionRegistry::with_builtins(),
            owner: owner_id(),
            lease_ttl: Duration::from_secs(60),
            retry: RetryPolicy {
                max_attempts: 3,
                base: Duration::from_secs(60),
                max: Duration::from_secs(3600),
            },
            configs: Mutex::new(HashMap::new()),
            models: Vec::new(),
            phase_timeout: Duration::from_secs(60),
            trouble: Default::default(),
        });
        Scheduler {
            env,
            machines: HashMap::new(),
            settings: SchedulerSettings {
                mode: RunMode::Daemon,
                prep_only: false,
                workers: 1,
                phase_caps: HashMap::new(),
                phase_order: Phase::ALL.to_vec(),
                prepped_low_watermark: None,
                poll_interval: Duration::from_secs(1),
                drain_timeout: Duration::from_secs(1),
                reap_interval: Duration::from_secs(1),
            },
            gates: Gates::new(
                Some(breakers.clone()),
                None,
                Some(store.clone()),
                HashMap::new(),
                HashMap::new(),
                None,
            ),
            stats: Arc::new(Mutex::new(RunnerStats::default())),
            observer: None,
            notifier: Notifier::disabled(),
        }
    }

    /// A breaker opened from synchronous code just before shutdown is in
    /// the table when `run` returns. The runtime is single-threaded, so
    /// the breakers' own writer task cannot run before the scheduler
    /// yields: only the flush on the shutdown path can have written it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_breaker_opened_just_before_shutdown_is_written_before_run_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let breakers = Breakers::new(Some(store.clone()), BreakerSettings::default()).unwrap();
        let s = scheduler(&store, &breakers);
        breakers.record(
            "http://p/v1|big",
            "p",
            CallOutcome::Failed {
                kind: ErrorKind::PaymentRequired,
                retry_after: None,
            },
        );
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        s.run(shutdown, CancellationToken::new()).await;
        let other = Store::open(&path, &StoreOptions::default()).unwrap();
        let rows = other.breakers().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].model, "http://p/v1|big");
        assert_eq!(rows[0].state, "open");
        assert_eq!(rows[0].reason.as_deref(), Some("payment_required"));
    }
}
