//! One claimed phase of one paper: build its input, run or resume its
//! machine execution durably, keep the claim alive, and settle the row.

use super::phase::Phase;
use crate::durable::{Begin, DriveError, Driver};
use crate::engine::{ActionRegistry, Agent, ErrorKind, ExecError};
use crate::spec::Bundle;
use crate::store::{Claim, FailOutcome, RetryPolicy, Store, StoreError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A phase's machine, as loaded from the machine files at start-up.
#[derive(Clone)]
pub struct PhaseMachine {
    pub phase: Phase,
    pub bundle: Arc<Bundle>,
    /// Content hash of `bundle` in `configs`.
    pub config_hash: String,
    pub source: String,
}

/// What a finished task reports to the scheduler.
#[derive(Debug, Clone)]
pub struct TaskReport {
    pub id: String,
    pub arxiv_id: String,
    pub phase: Phase,
    pub outcome: TaskOutcome,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// Moved to the next stable status.
    Finished,
    /// Failed; back in the queue for a later attempt.
    RetryLater { kind: String },
    /// Failed for good.
    Failed { kind: String },
    /// Given back without counting (shutdown, cancel, someone else's lease).
    Released { why: String },
    /// Given back without counting because a model it calls is blocked
    /// (`reason`: breaker_open, rate_limited, payment_required, budget);
    /// its machine execution stays at its last checkpoint and is resumed
    /// first once the model is usable again.
    Parked {
        model: String,
        reason: String,
        until_ms: Option<i64>,
    },
    /// The claim was lost to another process; nothing was written.
    Lost,
}

/// Everything a task needs; shared by all tasks of a runner.
pub struct TaskEnv {
    pub store: Store,
    pub agent: Arc<dyn Agent>,
    pub actions: ActionRegistry,
    pub owner: String,
    pub lease_ttl: Duration,
    pub retry: RetryPolicy,
    /// Stored configs by hash (resumed executions run the config they began with).
    pub configs: Mutex<HashMap<String, Arc<Bundle>>>,
    /// Model ids the phases use, for the report's frontmatter.
    pub models: Vec<String>,
    /// `scheduler.phase_timeout_secs`: a phase running longer is stopped
    /// and failed (retryably) as a `timeout`.
    pub phase_timeout: Duration,
    /// Panics and store errors met by tasks (a one-shot run exits non-zero).
    pub trouble: Trouble,
}

/// Counters of what a one-shot run must not report as success.
#[derive(Debug, Default)]
pub struct Trouble {
    pub panics: std::sync::atomic::AtomicU64,
    pub store_errors: std::sync::atomic::AtomicU64,
}

impl Trouble {
    fn store_error(&self) {
        self.store_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// (panics, store errors) so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.panics.load(Relaxed), self.store_errors.load(Relaxed))
    }
}

/// Kinds that say nothing about the paper: the phase is tried again later.
fn retryable(e: &ExecError) -> bool {
    use ErrorKind::*;
    let transient = |k: ErrorKind| {
        matches!(
            k,
            RateLimit
                | Timeout
                | ServerError
                | EmptyResponse
                | PaymentRequired
                | AuthError
                | Internal
                | ResourceExhausted
                | Interrupted
        )
    };
    if transient(e.kind) {
        return true;
    }
    if e.kind == ChildFailed {
        // Retry only when every failed child failed for a transient reason,
        // decided by the typed causes (stored with the error in its
        // checkpoint). A `child_failed` without causes is a structural
        // failure (no or an unknown child machine) — or an error stored
        // before causes existed, whose reason is unknown: both fail the
        // paper rather than pay for attempts that may fail the same way
        // (`runner retry` puts it back).
        return !e.causes.is_empty() && e.causes.iter().all(|k| transient(*k));
    }
    false
}

/// The input of a phase's machine, from the paper row and earlier results.
fn phase_input(env: &TaskEnv, claim: &Claim) -> Result<Map<String, Value>, StoreError> {
    let mut input = Map::new();
    input.insert("paper_id".into(), json!(claim.id));
    input.insert("arxiv_id".into(), json!(claim.arxiv_id));
    match claim.phase {
        Phase::Prep => {
            input.insert("title".into(), json!(claim.title));
            input.insert("abstract".into(), json!(claim.abstract_text));
            input.insert("pdf_path".into(), json!(claim.pdf_path));
        }
        Phase::Expensive | Phase::Wrap => {
            let results = env.store.phase_results(&claim.id)?;
            let take = |name: &str, input: &mut Map<String, Value>| -> Result<(), StoreError> {
                match results.get(name) {
                    Some(Value::Object(m)) => {
                        for (k, v) in m {
                            input.insert(k.clone(), v.clone());
                        }
                        Ok(())
                    }
                    _ => Err(StoreError::Invalid(format!(
                        "paper {} has no {name} result to continue from",
                        claim.id
                    ))),
                }
            };
            take("prep", &mut input)?;
            if claim.phase == Phase::Wrap {
                take("expensive", &mut input)?;
                input.insert("models".into(), json!(env.models));
            }
            // The prep result's own copies win over the row's, except ids.
            input.insert("paper_id".into(), json!(claim.id));
            input.insert("arxiv_id".into(), json!(claim.arxiv_id));
        }
    }
    Ok(input)
}

/// Run one claimed phase to its end and settle the paper row. A panic
/// anywhere in the phase's own task is caught here: the phase is failed as
/// a retryable `internal` error and its claim settled at once (not held
/// until the lease expires).
pub async fn run_claim(
    env: Arc<TaskEnv>,
    machine: PhaseMachine,
    claim: Claim,
    stop: tokio_util::sync::CancellationToken,
) -> TaskReport {
    let span = tracing::info_span!("phase", paper = %claim.arxiv_id, phase = %claim.phase, attempt = claim.attempt);
    let started = Instant::now();
    let drive = {
        let (env, claim) = (env.clone(), claim.clone());
        async move { drive_claim(&env, &machine, &claim, stop).await }
    };
    let outcome = match CatchUnwind(Box::pin(drive.instrument(span.clone()))).await {
        Ok(o) => o,
        Err(panic) => {
            let what = panic_text(panic.as_ref());
            env.trouble
                .panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async {
                tracing::error!(paper = %claim.arxiv_id, "phase task panicked: {what}");
                // The drive was unwound mid-state: its machine lease goes back.
                if let Some(exec_id) = current_execution(&env, &claim).await {
                    let owner = env.owner.clone();
                    let _ = env
                        .store
                        .run(move |s| s.release_lease_of(&exec_id, &owner))
                        .await;
                }
                let e = ExecError::new(
                    ErrorKind::Internal,
                    format!("phase {} panicked: {what}", claim.phase),
                );
                fail(&env, &claim, &e, started.elapsed().as_millis() as i64).await
            }
            .instrument(span)
            .await
        }
    };
    TaskReport {
        id: claim.id.clone(),
        arxiv_id: claim.arxiv_id.clone(),
        phase: claim.phase,
        outcome,
        duration: started.elapsed(),
    }
}

/// A boxed future whose panics come back as `Err` (the `futures` crate's
/// `catch_unwind`, without the dependency).
struct CatchUnwind<T>(Pin<Box<dyn Future<Output = T> + Send>>);

impl<T> Future for CatchUnwind<T> {
    type Output = Result<T, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".into())
}

/// The phase's machine execution as the row names it now (None before one
/// was created or when the row cannot be read).
async fn current_execution(env: &Arc<TaskEnv>, claim: &Claim) -> Option<String> {
    let id = claim.id.clone();
    env.store
        .run(move |s| s.paper(&id))
        .await
        .ok()
        .flatten()
        .and_then(|row| row.phase_execution)
}

/// Why a drive is stopped from outside, as [`keep_claim`] and the phase
/// deadline report it. These never reach the engine: `drive_claim` drops
/// the drive future (its children's `JoinSet`s and its lease renewer go
/// with it), gives the machine lease back, and settles the claim by the
/// variant — an operator's cancel ([`Stop::Cancelled`], from the
/// `cancel_requested` flag `runner cancel` sets) releases the claim as
/// "cancelled by operator", and the flag keeps the paper from being
/// claimed again until `runner retry`.
enum Stop {
    /// The claim was taken over by this owner: write nothing.
    Lost(String),
    /// `runner cancel` flagged the paper.
    Cancelled,
    /// The runner is stopping (drain timeout passed).
    Shutdown,
    /// `phase_timeout` passed.
    Deadline,
}

async fn drive_claim(
    env: &Arc<TaskEnv>,
    machine: &PhaseMachine,
    claim: &Claim,
    stop: tokio_util::sync::CancellationToken,
) -> TaskOutcome {
    let started = Instant::now();
    let elapsed_ms = || started.elapsed().as_millis() as i64;
    // Which machine execution: the one an earlier attempt left, or a new one.
    let prepared = match phase_execution_id(env, claim).await {
        Ok(exec_id) => prepare(env, machine, claim, &exec_id)
            .await
            .map(|p| (exec_id, p)),
        Err(e) => Err(e),
    };
    let (exec_id, prepared) = match prepared {
        Ok((id, p)) => (id, Ok(p)),
        Err(e) => (String::new(), Err(e)),
    };
    let (bundle, begin) = match prepared {
        Ok(x) => x,
        Err(e) => return settle_store_error(env, claim, e, elapsed_ms()).await,
    };
    let mut driver = Driver::new(
        env.store.clone(),
        bundle,
        env.agent.clone(),
        env.actions.clone(),
        env.lease_ttl,
    );
    driver.owner = env.owner.clone();
    let keeper = keep_claim(env.store.clone(), claim.clone(), stop.clone());
    let deadline = tokio::time::sleep(env.phase_timeout);
    // Dropping the drive (any branch but the first) drops the engine's
    // futures: its children's JoinSets abort them, and the lease renewer
    // (owned by the drive) stops.
    let result = tokio::select! {
        r = driver.drive(&exec_id, begin) => Ok(r),
        s = keeper => Err(s),
        _ = deadline => Err(Stop::Deadline),
    };
    match result {
        Err(Stop::Lost(who)) => {
            tracing::warn!(paper = %claim.arxiv_id, "claim lost to {who}; stopped without writing");
            TaskOutcome::Lost
        }
        Err(stop @ (Stop::Cancelled | Stop::Shutdown | Stop::Deadline)) => {
            // The drive was dropped mid-state: give its machine lease back too.
            let (id, owner) = (exec_id.clone(), env.owner.clone());
            if let Err(e) = env
                .store
                .run(move |s| s.release_lease_of(&id, &owner))
                .await
            {
                tracing::warn!(error = %e, "cannot release the machine lease; it expires on its own");
            }
            let why = match stop {
                Stop::Cancelled => "cancelled by operator",
                Stop::Deadline => {
                    let state = current_state(env, &exec_id).await;
                    let e = ExecError::new(
                        ErrorKind::Timeout,
                        format!(
                            "phase {} passed its deadline of {}s in state '{}'",
                            claim.phase,
                            env.phase_timeout.as_secs(),
                            state.as_deref().unwrap_or("(not started)")
                        ),
                    );
                    return fail(env, claim, &e, elapsed_ms()).await;
                }
                _ => "runner shutting down",
            };
            release(env, claim, why).await
        }
        Ok(Ok(output)) => finish(env, claim, output, elapsed_ms()).await,
        Ok(Err(DriveError::Leased(e))) => {
            tracing::warn!(paper = %claim.arxiv_id, "machine execution {exec_id} is busy: {e}");
            release(env, claim, &e.to_string()).await
        }
        Ok(Err(DriveError::Store(e))) => settle_store_error(env, claim, e, elapsed_ms()).await,
        Ok(Err(e)) if e.park().is_some() => park(env, claim, &e).await,
        Ok(Err(DriveError::Exec(e))) if e.waiting().is_some() => wait(env, claim, &e).await,
        Ok(Err(DriveError::Exec(e))) if e.kind == ErrorKind::Interrupted => match e.stop() {
            Some(crate::engine::Stop::LeaseLost { owner }) => {
                tracing::warn!(paper = %claim.arxiv_id, "machine lease lost to {owner}; stopped without writing");
                TaskOutcome::Lost
            }
            Some(crate::engine::Stop::Shutdown) => release(env, claim, &e.message).await,
            _ => {
                // A failed checkpoint or ledger write (`Stop::Host`): the
                // store is in trouble (disk full, I/O error); the work is
                // safe at its last checkpoint.
                env.trouble.store_error();
                release(env, claim, &e.message).await
            }
        },
        Ok(Err(DriveError::Exec(e))) => fail(env, claim, &e, elapsed_ms()).await,
    }
}

/// The state execution `exec_id` is in, from its latest checkpoint: the
/// state entered, or the next one after an exit.
async fn current_state(env: &Arc<TaskEnv>, exec_id: &str) -> Option<String> {
    let id = exec_id.to_string();
    let snap = env.store.run(move |s| s.latest(&id)).await.ok().flatten()?;
    match snap.event {
        crate::engine::Event::StateEnter => snap.state,
        _ => snap.next_state.or(snap.state),
    }
}

/// A model of the phase is blocked: give the claim back without counting
/// an attempt; the machine execution stays at its last checkpoint.
async fn park(env: &Arc<TaskEnv>, claim: &Claim, e: &DriveError) -> TaskOutcome {
    let Some(p) = e.park() else {
        return release(env, claim, &e.to_string()).await;
    };
    let until = p
        .until_ms
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .map(|t| t.format(" until %H:%M:%SZ").to_string())
        .unwrap_or_default();
    let model = p
        .model
        .rsplit_once('|')
        .map_or(p.model.as_str(), |(_, m)| m);
    let why = format!("parked: model {model} is {}{until}", p.reason);
    tracing::info!(paper = %claim.arxiv_id, phase = %claim.phase, model = %p.model, reason = %p.reason, until_ms = p.until_ms, "phase parked: worker slot given back");
    match release(env, claim, &why).await {
        TaskOutcome::Released { .. } => TaskOutcome::Parked {
            model: p.model.clone(),
            reason: p.reason.clone(),
            until_ms: p.until_ms,
        },
        other => other,
    }
}

/// The machine waits for a signal (`wait_for`): give the claim back without
/// counting an attempt; the row is claimable again when the signal comes
/// (`runner signal`) or at the wait's deadline.
async fn wait(env: &Arc<TaskEnv>, claim: &Claim, e: &ExecError) -> TaskOutcome {
    let Some((signal, deadline)) = e.waiting() else {
        return release(env, claim, &e.message).await;
    };
    let why = format!("waiting for signal '{signal}'");
    tracing::info!(paper = %claim.arxiv_id, phase = %claim.phase, signal, deadline_ms = deadline, "phase waits for a signal: worker slot given back");
    let until = deadline.unwrap_or(i64::MAX);
    let c = claim.clone();
    let w = why.clone();
    match env
        .store
        .run(move |s| s.release_waiting(&c, until, &w))
        .await
    {
        Ok(()) => TaskOutcome::Released { why },
        Err(StoreError::LeaseLost { .. }) => TaskOutcome::Lost,
        Err(err) => {
            tracing::warn!(paper = %claim.arxiv_id, "parking for a signal failed: {err}");
            env.trouble.store_error();
            release(env, claim, &why).await
        }
    }
}

/// The machine execution to drive: the one an earlier attempt left to
/// resume, else `<paper>/<phase>/<attempt>` — unless that one already ended
/// (the paper was put back by `runner retry`, which resets the attempt
/// count): then a fresh `<attempt>-r<token>`, so the retry really runs
/// instead of replaying the stored failure.
async fn phase_execution_id(env: &Arc<TaskEnv>, claim: &Claim) -> Result<String, StoreError> {
    if let Some(id) = &claim.phase_execution {
        return Ok(id.clone());
    }
    let id = format!("{}/{}/{}", claim.id, claim.phase, claim.attempt);
    let probe = id.clone();
    let existing = env.store.run(move |s| s.execution(&probe)).await?;
    Ok(match existing {
        Some(row) if row.status != "running" => format!("{id}-r{}", claim.token),
        _ => id,
    })
}

/// Create the machine execution if needed; pick the config to run.
async fn prepare(
    env: &Arc<TaskEnv>,
    machine: &PhaseMachine,
    claim: &Claim,
    exec_id: &str,
) -> Result<(Arc<Bundle>, Begin), StoreError> {
    let e2 = env.clone();
    let c2 = claim.clone();
    let m2 = machine.clone();
    let id = exec_id.to_string();
    // Every read and write here (including the config cache miss and the
    // phase results read by `phase_input`) runs in the one blocking task.
    env.store
        .run(move |store| {
            let existing = store.execution(&id)?;
            match existing {
                Some(row) => {
                    let bundle = stored_bundle(&e2, &row.config_hash, &m2)?;
                    if c2.phase_execution.is_none() {
                        store.set_phase_execution(&c2, &id)?;
                    }
                    Ok((bundle, Begin::Latest))
                }
                None => {
                    let input = phase_input(&e2, &c2)?;
                    store.create_execution(
                        &id,
                        &m2.config_hash,
                        &m2.bundle.root().name,
                        m2.bundle.root,
                        &input,
                    )?;
                    store.set_phase_execution(&c2, &id)?;
                    Ok((m2.bundle.clone(), Begin::Fresh(input)))
                }
            }
        })
        .await
}

fn stored_bundle(
    env: &TaskEnv,
    hash: &str,
    current: &PhaseMachine,
) -> Result<Arc<Bundle>, StoreError> {
    if hash == current.config_hash {
        return Ok(current.bundle.clone());
    }
    if let Ok(cache) = env.configs.lock() {
        if let Some(b) = cache.get(hash) {
            return Ok(b.clone());
        }
    }
    let (bundle, _) = env.store.get_config(hash)?;
    let bundle = Arc::new(bundle);
    if let Ok(mut cache) = env.configs.lock() {
        cache.insert(hash.to_string(), bundle.clone());
    }
    Ok(bundle)
}

/// Renew the claim every TTL/3 and watch for cancel and shutdown; returns
/// only when the task must stop.
async fn keep_claim(store: Store, claim: Claim, stop: tokio_util::sync::CancellationToken) -> Stop {
    let ttl = Duration::from_millis(claim.ttl_ms.max(300) as u64);
    let renew_every = ttl / 3;
    // Cancels are looked at more often than renewals, but not per state.
    let tick = renew_every.min(Duration::from_secs(2));
    let mut since_renew = Duration::ZERO;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Stop::Shutdown,
            _ = tokio::time::sleep(tick) => {}
        }
        since_renew += tick;
        let c = claim.clone();
        let renew = since_renew >= renew_every;
        if renew {
            since_renew = Duration::ZERO;
        }
        let checked = store
            .run(move |s| {
                if renew {
                    s.renew_claim(&c)?;
                }
                s.cancel_requested(&c.id)
            })
            .await;
        match checked {
            Ok(true) => return Stop::Cancelled,
            Ok(false) => {}
            Err(StoreError::LeaseLost { owner, .. }) => return Stop::Lost(owner),
            Err(e) => tracing::warn!(error = %e, "claim renewal failed; retrying"),
        }
    }
}

async fn finish(env: &Arc<TaskEnv>, claim: &Claim, output: Value, ms: i64) -> TaskOutcome {
    let report = if claim.phase == Phase::Wrap {
        match output.get("report_path").and_then(Value::as_str) {
            Some(p) if std::path::Path::new(p).is_file() => Some(p.to_string()),
            other => {
                let e = ExecError::new(
                    ErrorKind::ActionError,
                    format!(
                        "wrap finished without a report file ({})",
                        other.unwrap_or("no report_path")
                    ),
                );
                return fail(env, claim, &e, ms).await;
            }
        }
    } else {
        None
    };
    let c = claim.clone();
    match env
        .store
        .run(move |s| s.finish_phase(&c, &output, report.as_deref(), ms))
        .await
    {
        Ok(()) => {
            tracing::info!(paper = %claim.arxiv_id, phase = %claim.phase, ms, "phase finished");
            TaskOutcome::Finished
        }
        Err(StoreError::LeaseLost { owner, .. }) => {
            tracing::warn!(paper = %claim.arxiv_id, "claim lost to {owner} before the result was saved");
            TaskOutcome::Lost
        }
        Err(e) => {
            env.trouble.store_error();
            tracing::error!(paper = %claim.arxiv_id, error = %e, "cannot save phase result; the claim will expire and the phase resume");
            TaskOutcome::Released { why: e.to_string() }
        }
    }
}

async fn fail(env: &Arc<TaskEnv>, claim: &Claim, e: &ExecError, ms: i64) -> TaskOutcome {
    let again = retryable(e);
    let (c, policy) = (claim.clone(), env.retry);
    let (kind, message) = (e.kind.as_str().to_string(), e.message.clone());
    let (k2, m2) = (kind.clone(), message.clone());
    match env
        .store
        .run(move |s| s.fail_phase(&c, &k2, &m2, again, &policy, ms))
        .await
    {
        Ok(FailOutcome::RetryLater { not_before_ms }) => {
            tracing::warn!(paper = %claim.arxiv_id, phase = %claim.phase, kind = %kind, retry_at_ms = not_before_ms, "phase failed; will retry: {message}");
            TaskOutcome::RetryLater { kind }
        }
        Ok(FailOutcome::Failed) => {
            tracing::error!(paper = %claim.arxiv_id, phase = %claim.phase, kind = %kind, "paper failed: {message}");
            TaskOutcome::Failed { kind }
        }
        Err(StoreError::LeaseLost { .. }) => TaskOutcome::Lost,
        Err(e) => {
            env.trouble.store_error();
            tracing::error!(paper = %claim.arxiv_id, error = %e, "cannot record the failure; the claim will expire");
            TaskOutcome::Released { why: e.to_string() }
        }
    }
}

async fn release(env: &Arc<TaskEnv>, claim: &Claim, why: &str) -> TaskOutcome {
    let (c, w) = (claim.clone(), why.to_string());
    match env.store.run(move |s| s.release_claim(&c, &w)).await {
        Ok(()) => TaskOutcome::Released { why: why.into() },
        Err(StoreError::LeaseLost { .. }) => TaskOutcome::Lost,
        Err(e) => {
            env.trouble.store_error();
            tracing::warn!(paper = %claim.arxiv_id, error = %e, "cannot release claim; it will expire");
            TaskOutcome::Released { why: why.into() }
        }
    }
}

/// A store problem while setting up or running: invalid input data fails
/// the phase (it would fail again); anything else gives the claim back.
async fn settle_store_error(
    env: &Arc<TaskEnv>,
    claim: &Claim,
    e: StoreError,
    ms: i64,
) -> TaskOutcome {
    match store_settlement(e) {
        StoreSettlement::Lost => TaskOutcome::Lost,
        StoreSettlement::Fail { err, trouble } => {
            if trouble {
                env.trouble.store_error();
            }
            fail(env, claim, &err, ms).await
        }
        StoreSettlement::Release(other) => {
            env.trouble.store_error();
            tracing::error!(paper = %claim.arxiv_id, error = %other, "store error");
            release(env, claim, &other.to_string()).await
        }
    }
}

/// What a store error means for the claimed phase.
#[derive(Debug)]
enum StoreSettlement {
    /// Someone else holds the claim now: write nothing.
    Lost,
    /// Record a failure of this phase (retryable or not by its kind).
    Fail { err: ExecError, trouble: bool },
    /// The store is in trouble; the work is safe at its checkpoint.
    Release(StoreError),
}

/// Decided by the error's type, never by its text: invalid data fails the
/// phase (it would fail again); a panicked store task is a bug, retried
/// under the attempt rules as `internal`; anything else gives the claim back.
fn store_settlement(e: StoreError) -> StoreSettlement {
    match e {
        StoreError::LeaseLost { .. } => StoreSettlement::Lost,
        StoreError::Invalid(msg) | StoreError::NotFound(msg) => StoreSettlement::Fail {
            err: ExecError::new(ErrorKind::ActionError, msg),
            trouble: false,
        },
        e @ StoreError::TaskFailed(_) => StoreSettlement::Fail {
            err: ExecError::new(ErrorKind::Internal, e.to_string()),
            trouble: true,
        },
        other => StoreSettlement::Release(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retry decision for a failed child reads the typed causes, down
    /// through nested children, not the message text.
    #[test]
    fn child_failures_are_judged_by_their_typed_causes() {
        let leaf = |k| ExecError::new(k, "x");
        let timeout = leaf(ErrorKind::Timeout);
        let inner = ExecError::child_failed("child machine 'a' failed", [&timeout]);
        assert_eq!(inner.causes, vec![ErrorKind::Timeout]);
        // A message that names a permanent kind does not decide: the cause does.
        let outer = ExecError::child_failed(
            "child machine 'b' failed: invalid_request: quoted by a paper",
            [&inner],
        );
        assert_eq!(outer.root_causes(), vec![ErrorKind::Timeout]);
        assert!(retryable(&outer));
        let bad = leaf(ErrorKind::InvalidRequest);
        let mixed = ExecError::child_failed("2 failed", [&timeout, &bad]);
        assert_eq!(
            mixed.causes,
            vec![ErrorKind::Timeout, ErrorKind::InvalidRequest]
        );
        assert!(!retryable(&mixed));
        // Round trip through a checkpoint keeps the causes.
        let back: ExecError =
            serde_json::from_str(&serde_json::to_string(&mixed).unwrap()).unwrap();
        assert_eq!(back, mixed);
    }

    #[tokio::test]
    async fn a_panicked_store_task_is_a_retryable_internal_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db"), &Default::default()).unwrap();
        let e = store
            .run(|_| -> Result<(), StoreError> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::TaskFailed(_)), "{e:?}");
        match store_settlement(e) {
            StoreSettlement::Fail { err, trouble } => {
                assert_eq!(err.kind, ErrorKind::Internal);
                assert!(retryable(&err));
                assert!(trouble);
            }
            other => panic!("{other:?}"),
        }
        match store_settlement(StoreError::Invalid("bad row".into())) {
            StoreSettlement::Fail { err, trouble } => {
                assert_eq!(err.kind, ErrorKind::ActionError);
                assert!(!retryable(&err));
                assert!(!trouble);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn child_failures_retry_only_when_every_cause_is_transient() {
        let e = |k, m: &str| ExecError::new(k, m);
        assert!(retryable(&e(ErrorKind::RateLimit, "429")));
        assert!(!retryable(&e(ErrorKind::InvalidRequest, "400")));
        let empty = e(ErrorKind::EmptyResponse, "no text");
        assert!(retryable(&ExecError::child_failed(
            "1 child machine(s) failed: 'mechanism'",
            [&empty]
        )));
        let (slow, bad) = (
            e(ErrorKind::Timeout, "slow"),
            e(ErrorKind::InvalidRequest, "bad"),
        );
        assert!(!retryable(&ExecError::child_failed(
            "2 child machine(s) failed",
            [&slow, &bad]
        )));
        assert!(!retryable(&e(
            ErrorKind::ChildFailed,
            "unknown machine 'x'"
        )));
        // Without typed causes (a row stored before they existed) the
        // message does not decide, whatever kinds it names: the paper fails.
        assert!(!retryable(&e(
            ErrorKind::ChildFailed,
            "1 child machine(s) failed: 'mechanism' (empty_response: no text)"
        )));
        assert!(!retryable(&e(ErrorKind::PdfUnreadable, "broken")));
    }
}
