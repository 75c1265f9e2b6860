//! Circuit breakers per model, so a provider that is refusing us is left
//! alone instead of being hammered by every queued call and every retry.
//!
//! Key: the model's limiter key ([`ModelProfile::limiter_key`]), so a
//! breaker covers exactly the traffic one limiter bucket paces.
//!
//! States and transitions:
//! - **closed**: calls pass. 429s and server errors/timeouts are remembered
//!   with their time; `rate_limit_threshold` 429s, or `error_threshold`
//!   server errors/timeouts, within the last `window_secs` open it. A 402
//!   (`payment_required`) opens it at once. Other failures (bad requests,
//!   content filters, empty answers, ...) say nothing about the provider's
//!   capacity and are ignored. A threshold of 0 disables that signal.
//! - **open** until `open_until`: `is_open` is true (claims skip work that
//!   needs the model) and [`Breakers::admit`] makes callers wait. The open
//!   period is the provider's Retry-After/reset when the opening failure
//!   carried one, else `open_base_secs × 2^(openings-1)` capped at
//!   `open_max_secs` (30 s, 60 s, … 30 min by default).
//! - **half_open**: once the period is over, exactly one caller is admitted
//!   as the probe; everyone else keeps waiting for its outcome. Success (or
//!   any answer that is not a breaker signal) closes the breaker and resets
//!   the doubling; a breaker signal re-opens it with the next, doubled period.
//!   A probe dropped without an outcome (cancelled call) returns the breaker
//!   to open-and-due, so the next caller becomes the probe.
//!
//! **402 is provider-wide.** Credits belong to an account, not a model, so a
//! 402 opens every model of that provider the breakers know, and a model of
//! that provider seen for the first time while it is blocked starts open
//! with the same deadline. Each model then probes for itself when due.
//! [`Breakers::blocked_providers`] lets a scheduler skip work for models it
//! has not called yet.
//!
//! Every state change is written to the `breakers` table; a restarted runner
//! loads it, so it neither hammers a provider that was refusing it nor
//! forgets the doubling. A breaker that was half-open when the process died
//! comes back open and due (its probe died with the process).
//!
//! Table writes are synchronous, one small `BEGIN IMMEDIATE` transaction per
//! state change: changes are rare (a few per opening), and writing before
//! anyone can observe the next change keeps the table in step with memory.
//! A failed write is logged; the breaker still protects the provider.
//!
//! Outcomes of calls admitted *before* the breaker opened can arrive while it
//! is open or half-open; they are ignored (only the probe decides).
//!
//! **Provider pauses.** A 429 carrying a Retry-After (or reset) also pauses
//! the model, whatever the breaker's state: the rate limiter pauses it in
//! this process, and the breakers remember the end here and, when it is
//! longer than the claim backlog ([`Breakers::with_pause_threshold`]),
//! write it to `model_pauses` (only when the end moves by more than a
//! second; a stored end is never shortened). Why here: the limiter lives in
//! one process's memory, so `runner status` (a separate process) said
//! `mode: normal` and a second daemon on the same database kept calling a
//! provider that had asked for a pause. [`Breakers::refresh_pauses`] reads
//! the table (at most once a second) and admission holds a paused model
//! like an open breaker: a caller allowed to wait less than the pause is
//! told [`BlockReason::RateLimited`] at once (and parks).
//!
//! [`ModelProfile::limiter_key`]: crate::llm::ModelProfile::limiter_key

use super::config::BreakerConfig;
use crate::engine::ErrorKind;
use crate::llm::gate::{BlockReason, Blocked, CallGate, CallPermit};
use crate::store::{now as now_text, Store, StoreError};
use async_trait::async_trait;
use rusqlite::params;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use crate::llm::gate::CallOutcome;

/// Current time in unix milliseconds. Injectable so tests control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Longest honoured Retry-After (a provider asking for more is probed daily).
const MAX_RETRY_AFTER_SECS: f64 = 86_400.0;

/// A pause is written again only when its end moves by more than this
/// (a stream of 429s each saying "60 s" must not write on every one).
const PAUSE_WRITE_STEP_MS: i64 = 1_000;

/// `model_pauses` is read at most this often by [`Breakers::refresh_pauses`].
const PAUSE_REFRESH_MS: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    pub fn parse(s: &str) -> Option<BreakerState> {
        match s {
            "closed" => Some(BreakerState::Closed),
            "open" => Some(BreakerState::Open),
            "half_open" => Some(BreakerState::HalfOpen),
            _ => None,
        }
    }
}

/// A breaker as shown by `status` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerView {
    pub state: BreakerState,
    /// Provider of the model (None for a model never seen).
    pub provider: Option<String>,
    /// Error kind that opened it (`rate_limit`, `server_error`, `timeout`,
    /// `payment_required`); None while closed.
    pub reason: Option<String>,
    /// End of the open period (unix ms); None while closed.
    pub open_until_ms: Option<i64>,
    /// Consecutive openings (the doubling exponent).
    pub open_count: u32,
    /// 429s within the sliding window.
    pub recent_429s: u32,
    /// Server errors and timeouts within the sliding window.
    pub recent_errors: u32,
}

impl BreakerView {
    fn closed() -> BreakerView {
        BreakerView {
            state: BreakerState::Closed,
            provider: None,
            reason: None,
            open_until_ms: None,
            open_count: 0,
            recent_429s: 0,
            recent_errors: 0,
        }
    }
}

#[derive(Debug)]
struct Entry {
    provider: String,
    state: BreakerState,
    reason: Option<String>,
    open_until: Option<i64>,
    open_count: u32,
    /// Id of the outstanding probe while half-open.
    probe: Option<u64>,
    rate_limits: VecDeque<i64>,
    errors: VecDeque<i64>,
}

impl Entry {
    fn closed(provider: &str) -> Entry {
        Entry {
            provider: provider.to_string(),
            state: BreakerState::Closed,
            reason: None,
            open_until: None,
            open_count: 0,
            probe: None,
            rate_limits: VecDeque::new(),
            errors: VecDeque::new(),
        }
    }

    fn is_payment_blocked(&self) -> bool {
        self.state != BreakerState::Closed
            && self.reason.as_deref() == Some(ErrorKind::PaymentRequired.as_str())
    }

    /// Open and not yet due for a probe, or probing.
    fn blocks(&self, now: i64) -> bool {
        match self.state {
            BreakerState::Closed => false,
            BreakerState::HalfOpen => true,
            BreakerState::Open => self.open_until.is_some_and(|u| now < u),
        }
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.reason = None;
        self.open_until = None;
        self.open_count = 0;
        self.probe = None;
        self.rate_limits.clear();
        self.errors.clear();
    }
}

/// What an outcome means to a breaker.
enum Signal {
    /// The provider answered: nothing wrong with its capacity.
    Healthy,
    RateLimit,
    /// Server error or timeout.
    Error,
    Payment,
}

fn signal(outcome: &CallOutcome) -> (Signal, Option<ErrorKind>, Option<f64>) {
    match *outcome {
        CallOutcome::Ok => (Signal::Healthy, None, None),
        CallOutcome::Exhausted { retry_after } => (Signal::Healthy, None, Some(retry_after)),
        CallOutcome::Failed { kind, retry_after } => {
            let s = match kind {
                ErrorKind::RateLimit => Signal::RateLimit,
                ErrorKind::ServerError | ErrorKind::Timeout => Signal::Error,
                ErrorKind::PaymentRequired => Signal::Payment,
                _ => Signal::Healthy,
            };
            (s, Some(kind), retry_after)
        }
    }
}

/// Who reports an outcome.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// A call admitted while closed.
    Ordinary,
    /// The half-open probe with this id.
    Probe(u64),
    /// [`Breakers::record`]: admission unknown, so while half-open the
    /// outcome is taken as the probe's.
    Unknown,
}

struct Inner {
    cfg: BreakerConfig,
    store: Option<Store>,
    entries: Mutex<HashMap<String, Entry>>,
    /// Woken on every state change (waiters in `admit` re-check).
    changed: tokio::sync::Notify,
    /// Orders table writes; each write stores the state current when it
    /// took this lock, so the last write always leaves the latest state.
    persist_lock: Mutex<()>,
    next_probe: std::sync::atomic::AtomicU64,
    /// Provider-requested pauses by model key (see the module docs).
    pauses: Mutex<HashMap<String, Pause>>,
    /// When `model_pauses` was last read (unix ms), for the throttle.
    pauses_read_at: Mutex<Option<i64>>,
}

/// A provider's pause of one model.
#[derive(Debug, Clone)]
struct Pause {
    provider: String,
    /// End, unix ms.
    until: i64,
    /// The end last written to (or read from) the table; `i64::MIN`: none.
    stored: i64,
}

/// The breakers of every model, shared by the process (cheap to clone).
#[derive(Clone)]
pub struct Breakers {
    inner: Arc<Inner>,
    clock: Clock,
    /// Pauses longer than this are written to `model_pauses`.
    pause_threshold_ms: i64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The wall clock in unix milliseconds.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

impl Breakers {
    /// Breakers persisted in `store` (None: in memory only), with the state
    /// the table holds loaded.
    pub fn new(store: Option<Store>, cfg: BreakerConfig) -> Result<Breakers, StoreError> {
        let b = Breakers {
            inner: Arc::new(Inner {
                cfg,
                store,
                entries: Mutex::new(HashMap::new()),
                changed: tokio::sync::Notify::new(),
                persist_lock: Mutex::new(()),
                next_probe: std::sync::atomic::AtomicU64::new(1),
                pauses: Mutex::new(HashMap::new()),
                pauses_read_at: Mutex::new(None),
            }),
            clock: system_clock(),
            pause_threshold_ms: 0,
        };
        b.load()?;
        Ok(b)
    }

    /// Persist only provider pauses longer than `d` (use the scheduler's
    /// claim backlog: shorter ones do not change what is claimed). Call
    /// before cloning, like [`with_clock`](Self::with_clock).
    pub fn with_pause_threshold(mut self, d: Duration) -> Self {
        self.pause_threshold_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Use `clock` instead of the wall clock. Call before cloning: clones
    /// made earlier keep the clock they had.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Load every breaker row from the table (done by [`new`](Self::new));
    /// returns how many. A half-open row comes back open (and due: its
    /// deadline has passed). Loaded rows replace the in-memory state of
    /// their models, so call it at start-up, not while calls are in flight.
    pub fn load(&self) -> Result<usize, StoreError> {
        let Some(store) = &self.inner.store else {
            return Ok(0);
        };
        let conn = store.conn()?;
        let mut stmt = conn
            .prepare("SELECT model, provider, state, reason, open_until, open_count FROM breakers")
            .map_err(|e| store.err("reading breakers", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(|e| store.err("reading breakers", e))?;
        let mut loaded = Vec::new();
        for row in rows {
            let (model, provider, state, reason, open_until, open_count) =
                row.map_err(|e| store.err("reading breakers", e))?;
            let mut e = Entry::closed(&provider);
            match BreakerState::parse(&state) {
                Some(BreakerState::Open) | Some(BreakerState::HalfOpen) => {
                    e.state = BreakerState::Open;
                    e.reason = reason;
                    // An open row without a deadline is due at once.
                    e.open_until = Some(open_until.unwrap_or(i64::MIN));
                    e.open_count = u32::try_from(open_count.max(0)).unwrap_or(u32::MAX);
                }
                _ => {}
            }
            loaded.push((model, e));
        }
        let n = loaded.len();
        lock(&self.inner.entries).extend(loaded);
        drop(stmt);
        drop(conn);
        self.read_pauses(store)?;
        self.inner.changed.notify_waiters();
        Ok(n)
    }

    /// Merge the pauses `model_pauses` holds into memory (a pause is only
    /// ever lengthened). Throttled: reads the table at most once a second;
    /// a failed read is logged and memory kept.
    pub fn refresh_pauses(&self) {
        let Some(store) = &self.inner.store else {
            return;
        };
        let now = self.now();
        {
            let mut at = lock(&self.inner.pauses_read_at);
            if at.is_some_and(|t| now.saturating_sub(t) < PAUSE_REFRESH_MS && now >= t) {
                return;
            }
            *at = Some(now);
        }
        match self.read_pauses(store) {
            Ok(true) => self.inner.changed.notify_waiters(),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read model pauses; using what this runner knows")
            }
        }
    }

    /// Read the active pauses from the table; whether any moved later.
    fn read_pauses(&self, store: &Store) -> Result<bool, StoreError> {
        let now = self.now();
        let rows = store.model_pauses(now)?;
        *lock(&self.inner.pauses_read_at) = Some(now);
        let mut moved = false;
        let mut map = lock(&self.inner.pauses);
        for r in rows {
            let p = map.entry(r.model.clone()).or_insert_with(|| Pause {
                provider: r.provider.clone(),
                until: i64::MIN,
                stored: i64::MIN,
            });
            if r.paused_until_ms > p.until {
                p.until = r.paused_until_ms;
                moved = true;
                tracing::debug!(model = %r.model, until_ms = r.paused_until_ms, "model paused by its provider (from the database)");
            }
            p.stored = p.stored.max(r.paused_until_ms);
        }
        Ok(moved)
    }

    /// The provider asked for no calls to `key` for `secs`: remember it and,
    /// when longer than the threshold, persist it (see the module docs).
    fn note_pause(&self, key: &str, provider: &str, secs: f64) {
        if !(secs.is_finite() && secs > 0.0) {
            return;
        }
        let now = self.now();
        // Capped as the limiter caps it.
        let ms = (secs.min(MAX_RETRY_AFTER_SECS) * 1000.0).ceil() as i64;
        let until = now.saturating_add(ms);
        let write = {
            let mut map = lock(&self.inner.pauses);
            let p = map.entry(key.to_string()).or_insert_with(|| Pause {
                provider: provider.to_string(),
                until: i64::MIN,
                stored: i64::MIN,
            });
            if until > p.until {
                p.until = until;
            }
            if p.provider.is_empty() {
                p.provider = provider.to_string();
            }
            ms > self.pause_threshold_ms && p.until.saturating_sub(p.stored) > PAUSE_WRITE_STEP_MS
        };
        if !write {
            return;
        }
        let Some(store) = &self.inner.store else {
            return;
        };
        let _order = lock(&self.inner.persist_lock);
        let (until, provider) = {
            let map = lock(&self.inner.pauses);
            match map.get(key) {
                Some(p) => (p.until, p.provider.clone()),
                None => return,
            }
        };
        match store.save_model_pause(
            key,
            &provider,
            until,
            BlockReason::RateLimited.as_str(),
            now,
        ) {
            Ok(stored) => {
                let mut map = lock(&self.inner.pauses);
                if let Some(p) = map.get_mut(key) {
                    p.stored = p.stored.max(stored);
                    p.until = p.until.max(stored);
                }
            }
            Err(e) => tracing::warn!(model = key, error = %e, "model pause not persisted"),
        }
    }

    /// End (unix ms) of the provider's pause of `model_key`, if one runs now.
    pub fn paused_until(&self, model_key: &str) -> Option<i64> {
        let now = self.now();
        lock(&self.inner.pauses)
            .get(model_key)
            .map(|p| p.until)
            .filter(|u| *u > now)
    }

    /// Every model paused now by its provider: (key, provider, end ms).
    pub fn pauses(&self) -> Vec<(String, String, i64)> {
        let now = self.now();
        let mut v: Vec<_> = lock(&self.inner.pauses)
            .iter()
            .filter(|(_, p)| p.until > now)
            .map(|(k, p)| (k.clone(), p.provider.clone(), p.until))
            .collect();
        v.sort();
        v
    }

    /// Record the outcome of a call to `model_key` whose admission is not
    /// known (calls that did not go through [`admit`](Self::admit)). While
    /// half-open it is taken as the probe's outcome.
    pub fn record(&self, model_key: &str, provider: &str, outcome: CallOutcome) {
        self.record_from(model_key, provider, &outcome, Source::Unknown);
    }

    fn record_from(&self, key: &str, provider: &str, outcome: &CallOutcome, source: Source) {
        let now = self.now();
        let cfg = &self.inner.cfg;
        let window = (cfg.window_secs as i64).saturating_mul(1000);
        let (sig, kind, retry_after) = signal(outcome);
        // A 429's wait, or a success that said nothing remains: both are
        // pauses the provider asked for.
        let pause =
            matches!(sig, Signal::RateLimit) || matches!(outcome, CallOutcome::Exhausted { .. });
        if let (true, Some(secs)) = (pause, retry_after) {
            self.note_pause(key, provider, secs);
        }
        let mut changed = Vec::new();
        {
            let mut map = lock(&self.inner.entries);
            self.ensure(&mut map, key, provider, now, &mut changed);
            let Some(e) = map.get_mut(key) else { return };
            let mut opened_by_payment = false;
            let is_probe = match (source, e.probe) {
                (Source::Probe(id), Some(p)) => id == p,
                (Source::Unknown, _) => true,
                _ => false,
            };
            match e.state {
                BreakerState::HalfOpen if is_probe => match sig {
                    Signal::Healthy => {
                        e.close();
                        tracing::info!(model = key, "circuit breaker closed: probe succeeded");
                        changed.push(key.to_string());
                    }
                    Signal::RateLimit | Signal::Error | Signal::Payment => {
                        let kind = kind.unwrap_or(ErrorKind::ServerError);
                        self.open(e, key, kind, retry_after, now);
                        opened_by_payment = matches!(sig, Signal::Payment);
                        changed.push(key.to_string());
                    }
                },
                BreakerState::HalfOpen | BreakerState::Open => {}
                BreakerState::Closed => {
                    let trip = match sig {
                        Signal::Healthy => false,
                        Signal::Payment => true,
                        Signal::RateLimit => {
                            push_within(&mut e.rate_limits, now, window);
                            reached(e.rate_limits.len(), cfg.rate_limit_threshold)
                        }
                        Signal::Error => {
                            push_within(&mut e.errors, now, window);
                            reached(e.errors.len(), cfg.error_threshold)
                        }
                    };
                    if trip {
                        let kind = kind.unwrap_or(ErrorKind::ServerError);
                        self.open(e, key, kind, retry_after, now);
                        opened_by_payment = matches!(sig, Signal::Payment);
                        changed.push(key.to_string());
                    }
                }
            }
            if opened_by_payment {
                let (until, count, prov) = (e.open_until, e.open_count, e.provider.clone());
                for (k, other) in map.iter_mut() {
                    if other.provider == prov && other.state == BreakerState::Closed {
                        other.state = BreakerState::Open;
                        other.reason = Some(ErrorKind::PaymentRequired.as_str().into());
                        other.open_until = until;
                        other.open_count = count;
                        tracing::warn!(model = %k, provider = %prov, "circuit breaker opened: provider is out of credits");
                        changed.push(k.clone());
                    }
                }
            }
        }
        self.changed(&changed);
    }

    /// Open `e` after a failure of `kind`.
    fn open(&self, e: &mut Entry, key: &str, kind: ErrorKind, retry_after: Option<f64>, now: i64) {
        e.open_count = e.open_count.saturating_add(1);
        let period = self.open_period_ms(e.open_count, retry_after);
        e.state = BreakerState::Open;
        e.reason = Some(kind.as_str().to_string());
        e.open_until = Some(now.saturating_add(period));
        e.probe = None;
        e.rate_limits.clear();
        e.errors.clear();
        tracing::warn!(
            model = key,
            reason = kind.as_str(),
            open_s = period as f64 / 1000.0,
            openings = e.open_count,
            "circuit breaker opened"
        );
    }

    /// The open period of the `n`-th consecutive opening: the provider's
    /// Retry-After when given, else base × 2^(n-1) capped at the maximum.
    fn open_period_ms(&self, n: u32, retry_after: Option<f64>) -> i64 {
        if let Some(s) = retry_after.filter(|s| s.is_finite() && *s > 0.0) {
            return (s.min(MAX_RETRY_AFTER_SECS) * 1000.0).ceil() as i64;
        }
        let cfg = &self.inner.cfg;
        let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
        let secs = cfg
            .open_base_secs
            .saturating_mul(factor)
            .min(cfg.open_max_secs);
        i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The entry of `key`, created (closed, or open while its provider is
    /// out of credits) when first seen.
    fn ensure(
        &self,
        map: &mut HashMap<String, Entry>,
        key: &str,
        provider: &str,
        now: i64,
        changed: &mut Vec<String>,
    ) {
        if let Some(e) = map.get_mut(key) {
            if e.provider.is_empty() && !provider.is_empty() {
                e.provider = provider.to_string();
            }
            return;
        }
        let mut e = Entry::closed(provider);
        let blocker = map
            .values()
            .filter(|o| !provider.is_empty() && o.provider == provider && o.is_payment_blocked())
            .max_by_key(|o| o.open_until.unwrap_or(i64::MIN));
        if let Some(b) = blocker {
            e.state = BreakerState::Open;
            e.reason = b.reason.clone();
            e.open_until = Some(b.open_until.unwrap_or(now));
            e.open_count = b.open_count;
            changed.push(key.to_string());
        }
        map.insert(key.to_string(), e);
    }

    /// Persist the changed entries and wake waiters.
    fn changed(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        self.persist(keys);
        self.inner.changed.notify_waiters();
    }

    /// Write the current state of `keys` in one transaction. A failed write
    /// is logged, not raised: the breaker keeps protecting the provider in
    /// memory, only a restart would forget it.
    fn persist(&self, keys: &[String]) {
        let Some(store) = &self.inner.store else {
            return;
        };
        let _order = lock(&self.inner.persist_lock);
        let rows: Vec<_> = {
            let map = lock(&self.inner.entries);
            keys.iter()
                .filter_map(|k| {
                    map.get(k).map(|e| {
                        (
                            k.clone(),
                            e.provider.clone(),
                            e.state.as_str(),
                            e.reason.clone(),
                            e.open_until,
                            e.open_count,
                        )
                    })
                })
                .collect()
        };
        let res = store.write("saving breaker state", |tx| {
            let at = now_text();
            for (model, provider, state, reason, until, count) in &rows {
                tx.execute(
                    "INSERT INTO breakers(model, provider, state, reason, open_until, open_count, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(model) DO UPDATE SET provider = excluded.provider, state = excluded.state,
                        reason = excluded.reason, open_until = excluded.open_until,
                        open_count = excluded.open_count, updated_at = excluded.updated_at",
                    params![model, provider, state, reason, until, count, at],
                )
                .map_err(|e| store.err("saving breaker state", e))?;
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::warn!(error = %e, "circuit breaker state not persisted");
        }
    }

    /// The breaker of `model_key` (closed for a model never seen).
    pub fn state(&self, model_key: &str) -> BreakerView {
        let now = self.now();
        let map = lock(&self.inner.entries);
        map.get(model_key)
            .map(|e| self.view(e, now))
            .unwrap_or_else(BreakerView::closed)
    }

    /// Every known breaker, sorted by model key.
    pub fn all(&self) -> Vec<(String, BreakerView)> {
        let now = self.now();
        let map = lock(&self.inner.entries);
        let mut v: Vec<_> = map
            .iter()
            .map(|(k, e)| (k.clone(), self.view(e, now)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn view(&self, e: &Entry, now: i64) -> BreakerView {
        let window = (self.inner.cfg.window_secs as i64).saturating_mul(1000);
        let recent = |q: &VecDeque<i64>| q.iter().filter(|t| now - **t < window).count() as u32;
        BreakerView {
            state: e.state,
            provider: Some(e.provider.clone()),
            reason: e.reason.clone(),
            open_until_ms: e.open_until,
            open_count: e.open_count,
            recent_429s: recent(&e.rate_limits),
            recent_errors: recent(&e.errors),
        }
    }

    /// Whether work needing `model_key` should not be claimed now: open and
    /// not yet due for a probe, or a probe is in flight. A due breaker is
    /// not "open": claiming such work is how the probe gets sent.
    pub fn is_open(&self, model_key: &str) -> bool {
        let now = self.now();
        lock(&self.inner.entries)
            .get(model_key)
            .is_some_and(|e| e.blocks(now))
    }

    /// Providers out of credits (a 402 breaker of theirs is open and not
    /// due, or probing): claim no work for any of their models, including
    /// models no call has been made to yet.
    pub fn blocked_providers(&self) -> Vec<String> {
        let now = self.now();
        let map = lock(&self.inner.entries);
        let mut v: Vec<String> = map
            .values()
            .filter(|e| e.is_payment_blocked() && e.blocks(now))
            .map(|e| e.provider.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Operator override: close the breaker of `model_key` and forget its
    /// history. Returns whether the model was known. Waiting calls proceed.
    pub fn reset(&self, model_key: &str) -> bool {
        let known = {
            let mut map = lock(&self.inner.entries);
            match map.get_mut(model_key) {
                Some(e) => {
                    e.close();
                    true
                }
                None => false,
            }
        };
        if known {
            tracing::info!(model = model_key, "circuit breaker reset by operator");
            self.changed(&[model_key.to_string()]);
        }
        known
    }

    /// Wait until a call to `model_key` may be sent. Returns at once while
    /// closed; while open, sleeps until the period ends (or the state
    /// changes); then exactly one caller becomes the half-open probe and the
    /// others wait for its outcome. Cancellation-safe: nothing is held while
    /// waiting, and a dropped probe admission hands the probe on.
    pub async fn admit(&self, model_key: &str, provider: &str) -> Admission {
        loop {
            if let Ok(a) = self.admit_within(model_key, provider, None).await {
                return a;
            }
        }
    }

    /// Like [`admit`](Self::admit), but wait at most `max_wait` (tokio
    /// time): an open period ending later, or a probe still out when it
    /// runs out, is reported as [`Blocked`] at once so the caller can park
    /// instead of holding a worker slot. A probe in flight is waited for up
    /// to `max_wait` because its outcome usually comes within a call's
    /// latency (and parking the probe's siblings would abort the probe).
    pub async fn try_admit(
        &self,
        model_key: &str,
        provider: &str,
        max_wait: Duration,
    ) -> Result<Admission, Blocked> {
        let deadline = tokio::time::Instant::now() + max_wait;
        self.admit_within(model_key, provider, Some(deadline)).await
    }

    async fn admit_within(
        &self,
        model_key: &str,
        provider: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Admission, Blocked> {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            // Register before looking, so a change between the look and the
            // wait is not missed.
            notified.as_mut().enable();
            let now = self.now();
            // A provider's pause holds the model whatever the breaker's
            // state (checked first: no probe is sent into a pause).
            if let Some(u) = self.paused_until(model_key) {
                let wait = Duration::from_millis(u64::try_from(u - now).unwrap_or(1).max(1));
                if deadline.is_some_and(|d| tokio::time::Instant::now() + wait > d) {
                    return Err(Blocked {
                        reason: BlockReason::RateLimited,
                        until_ms: Some(u),
                    });
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = notified => {}
                }
                continue;
            }
            let mut changed = Vec::new();
            let decision = {
                let mut map = lock(&self.inner.entries);
                self.ensure(&mut map, model_key, provider, now, &mut changed);
                match map.get_mut(model_key) {
                    None => Ok(None),
                    Some(e) => match e.state {
                        BreakerState::Closed => Ok(None),
                        BreakerState::Open if e.open_until.is_none_or(|u| now >= u) => {
                            let id = self
                                .inner
                                .next_probe
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            e.state = BreakerState::HalfOpen;
                            e.probe = Some(id);
                            tracing::info!(
                                model = model_key,
                                "circuit breaker half-open: sending one probe"
                            );
                            changed.push(model_key.to_string());
                            Ok(Some(id))
                        }
                        BreakerState::Open => Err((e.open_until, block_reason(e))),
                        BreakerState::HalfOpen => Err((None, block_reason(e))),
                    },
                }
            };
            self.changed(&changed);
            let (until, reason) = match decision {
                Ok(probe) => {
                    return Ok(Admission {
                        breakers: self.clone(),
                        key: model_key.to_string(),
                        provider: provider.to_string(),
                        probe,
                        done: false,
                    })
                }
                Err(x) => x,
            };
            let blocked = Blocked {
                reason,
                until_ms: until,
            };
            // How long until the open period ends (None: a probe is out).
            let wait = until.map(|u| {
                Duration::from_millis(u64::try_from(u.saturating_sub(now).max(1)).unwrap_or(1))
            });
            match (deadline, wait) {
                (Some(d), Some(w)) if tokio::time::Instant::now() + w > d => return Err(blocked),
                (Some(d), None) if tokio::time::Instant::now() >= d => return Err(blocked),
                _ => {}
            }
            match (wait, deadline) {
                (Some(w), _) => {
                    tokio::select! {
                        _ = tokio::time::sleep(w) => {}
                        _ = notified => {}
                    }
                }
                (None, Some(d)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d) => {}
                        _ = notified => {}
                    }
                }
                (None, None) => notified.await,
            }
        }
    }

    /// A probe admission was dropped without an outcome: open and due again.
    fn abandon_probe(&self, key: &str, id: u64) {
        let changed = {
            let mut map = lock(&self.inner.entries);
            match map.get_mut(key) {
                Some(e) if e.state == BreakerState::HalfOpen && e.probe == Some(id) => {
                    e.state = BreakerState::Open;
                    e.probe = None;
                    tracing::info!(
                        model = key,
                        "circuit breaker probe abandoned; next caller probes"
                    );
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.changed(&[key.to_string()]);
        }
    }
}

/// What an open (or probing) breaker tells a caller that will not wait.
fn block_reason(e: &Entry) -> BlockReason {
    if e.is_payment_blocked() {
        BlockReason::PaymentRequired
    } else {
        BlockReason::BreakerOpen
    }
}

fn push_within(q: &mut VecDeque<i64>, now: i64, window_ms: i64) {
    q.push_back(now);
    while q.front().is_some_and(|t| now - *t >= window_ms) {
        q.pop_front();
    }
}

fn reached(count: usize, threshold: u32) -> bool {
    threshold > 0 && count >= threshold as usize
}

/// Permission to send one call, from [`Breakers::admit`]. Report the call's
/// outcome with [`record`](Self::record); dropping a probe admission
/// without an outcome hands the probe to the next caller.
#[must_use = "record the call's outcome on the admission"]
pub struct Admission {
    breakers: Breakers,
    key: String,
    provider: String,
    probe: Option<u64>,
    done: bool,
}

impl Admission {
    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// Report the outcome of the admitted call.
    pub fn record(mut self, outcome: &CallOutcome) {
        self.done = true;
        let source = self.probe.map_or(Source::Ordinary, Source::Probe);
        self.breakers
            .record_from(&self.key, &self.provider, outcome, source);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let (false, Some(id)) = (self.done, self.probe) {
            self.breakers.abandon_probe(&self.key, id);
        }
    }
}

#[async_trait]
impl CallPermit for Admission {
    async fn complete(self: Box<Self>, outcome: &CallOutcome) {
        (*self).record(outcome);
    }
}

#[async_trait]
impl CallGate for Breakers {
    async fn before_call(&self, model_key: &str, provider: &str) -> Box<dyn CallPermit> {
        Box::new(self.admit(model_key, provider).await)
    }

    async fn try_before_call(
        &self,
        model_key: &str,
        provider: &str,
        max_wait: Duration,
    ) -> Result<Box<dyn CallPermit>, Blocked> {
        let a = self.try_admit(model_key, provider, max_wait).await?;
        Ok(Box::new(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    const T0: i64 = 1_700_000_000_000;
    const KEY: &str = "http://p/v1|m";

    /// A clock the test moves by hand.
    fn manual() -> (Arc<AtomicI64>, Clock) {
        let t = Arc::new(AtomicI64::new(T0));
        let c = t.clone();
        (t, Arc::new(move || c.load(Ordering::SeqCst)))
    }

    /// A clock that follows tokio's (paused) time, so `admit`'s sleeps and
    /// the breaker's deadlines agree.
    fn tokio_clock() -> Clock {
        let start = tokio::time::Instant::now();
        Arc::new(move || T0 + start.elapsed().as_millis() as i64)
    }

    fn breakers(clock: Clock) -> Breakers {
        Breakers::new(None, BreakerConfig::default())
            .unwrap()
            .with_clock(clock)
    }

    fn fail(kind: ErrorKind) -> CallOutcome {
        CallOutcome::failed(kind, None)
    }

    #[test]
    fn opens_at_the_fifth_429_within_the_window() {
        let (t, clock) = manual();
        let b = breakers(clock);
        for i in 0..4 {
            b.record(KEY, "p", fail(ErrorKind::RateLimit));
            t.fetch_add(1000, Ordering::SeqCst);
            assert_eq!(b.state(KEY).state, BreakerState::Closed, "after {}", i + 1);
        }
        assert_eq!(b.state(KEY).recent_429s, 4);
        b.record(KEY, "p", fail(ErrorKind::RateLimit));
        let v = b.state(KEY);
        assert_eq!(v.state, BreakerState::Open);
        assert_eq!(v.reason.as_deref(), Some("rate_limit"));
        assert_eq!(v.open_until_ms, Some(T0 + 4000 + 30_000));
        assert!(b.is_open(KEY));
        t.fetch_add(30_000, Ordering::SeqCst);
        assert!(!b.is_open(KEY), "due for a probe is not open for claims");
    }

    #[test]
    fn rate_limits_spread_beyond_the_window_do_not_open() {
        let (t, clock) = manual();
        let b = breakers(clock);
        for _ in 0..10 {
            b.record(KEY, "p", fail(ErrorKind::RateLimit));
            t.fetch_add(20_000, Ordering::SeqCst);
        }
        // At most 3 of them (0 s, 20 s, 40 s) ever fall within 60 s.
        assert_eq!(b.state(KEY).state, BreakerState::Closed);
        assert_eq!(b.state(KEY).recent_429s, 2);
    }

    #[test]
    fn server_errors_and_timeouts_share_their_own_threshold() {
        let (t, clock) = manual();
        let b = breakers(clock);
        for i in 0..9 {
            let kind = if i % 2 == 0 {
                ErrorKind::ServerError
            } else {
                ErrorKind::Timeout
            };
            b.record(KEY, "p", fail(kind));
            // 429s and neutral failures do not add to the error count.
            b.record(KEY, "p", fail(ErrorKind::InvalidRequest));
            b.record(KEY, "p", fail(ErrorKind::EmptyResponse));
            t.fetch_add(500, Ordering::SeqCst);
        }
        assert_eq!(b.state(KEY).state, BreakerState::Closed);
        assert_eq!(b.state(KEY).recent_errors, 9);
        b.record(KEY, "p", fail(ErrorKind::Timeout));
        let v = b.state(KEY);
        assert_eq!(v.state, BreakerState::Open);
        assert_eq!(v.reason.as_deref(), Some("timeout"));
    }

    #[test]
    fn payment_required_opens_every_model_of_the_provider() {
        let (_t, clock) = manual();
        let b = breakers(clock);
        b.record("a|cheap", "acme", CallOutcome::Ok);
        b.record("a|expensive", "acme", CallOutcome::Ok);
        b.record("o|other", "other", CallOutcome::Ok);
        b.record("a|cheap", "acme", fail(ErrorKind::PaymentRequired));
        for k in ["a|cheap", "a|expensive"] {
            let v = b.state(k);
            assert_eq!(v.state, BreakerState::Open, "{k}");
            assert_eq!(v.reason.as_deref(), Some("payment_required"));
            assert_eq!(v.open_until_ms, Some(T0 + 30_000));
        }
        assert_eq!(b.state("o|other").state, BreakerState::Closed);
        assert_eq!(b.blocked_providers(), vec!["acme".to_string()]);
        // A model of the blocked provider seen for the first time starts open.
        b.record("a|new", "acme", CallOutcome::Ok);
        assert!(b.is_open("a|new"));
        assert!(!b.is_open("never-seen"));
    }

    #[test]
    fn retry_after_is_the_open_period() {
        let (_t, clock) = manual();
        let b = breakers(clock);
        for _ in 0..4 {
            b.record(KEY, "p", fail(ErrorKind::RateLimit));
        }
        b.record(
            KEY,
            "p",
            CallOutcome::failed(ErrorKind::RateLimit, Some(120.0)),
        );
        assert_eq!(b.state(KEY).open_until_ms, Some(T0 + 120_000));
    }

    #[test]
    fn unrelated_failures_never_open() {
        let (_t, clock) = manual();
        let b = breakers(clock);
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::ContextLength,
            ErrorKind::ContentFilter,
            ErrorKind::EmptyResponse,
            ErrorKind::LegalBlock,
        ] {
            for _ in 0..20 {
                b.record(KEY, "p", fail(kind));
            }
        }
        assert_eq!(b.state(KEY).state, BreakerState::Closed);
    }

    #[tokio::test]
    async fn failed_probes_double_the_period_up_to_the_cap() {
        let (t, clock) = manual();
        let b = breakers(clock);
        b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
        let mut periods = vec![b.state(KEY).open_until_ms.unwrap() - t.load(Ordering::SeqCst)];
        for _ in 0..7 {
            t.store(b.state(KEY).open_until_ms.unwrap(), Ordering::SeqCst);
            let probe = b.admit(KEY, "p").await;
            assert!(probe.is_probe());
            assert_eq!(b.state(KEY).state, BreakerState::HalfOpen);
            probe.record(&fail(ErrorKind::ServerError));
            let v = b.state(KEY);
            assert_eq!(v.state, BreakerState::Open);
            assert_eq!(v.reason.as_deref(), Some("server_error"));
            periods.push(v.open_until_ms.unwrap() - t.load(Ordering::SeqCst));
        }
        let secs: Vec<i64> = periods.iter().map(|p| p / 1000).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1800, 1800]);
        // A successful probe closes it and resets the doubling.
        t.store(b.state(KEY).open_until_ms.unwrap(), Ordering::SeqCst);
        b.admit(KEY, "p").await.record(&CallOutcome::Ok);
        let v = b.state(KEY);
        assert_eq!(
            (v.state, v.open_count, v.reason),
            (BreakerState::Closed, 0, None)
        );
        b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
        assert_eq!(
            b.state(KEY).open_until_ms,
            Some(t.load(Ordering::SeqCst) + 30_000)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_exactly_one_probe_among_many_waiters() {
        let b = breakers(tokio_clock());
        for _ in 0..5 {
            b.record(KEY, "p", fail(ErrorKind::RateLimit));
        }
        let start = tokio::time::Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..20 {
            let (b, tx) = (b.clone(), tx.clone());
            tokio::spawn(async move {
                let a = b.admit(KEY, "p").await;
                let _ = tx.send((tokio::time::Instant::now(), a));
            });
        }
        let (at, probe) = rx.recv().await.unwrap();
        assert!(probe.is_probe());
        assert_eq!(at - start, Duration::from_secs(30));
        assert_eq!(b.state(KEY).state, BreakerState::HalfOpen);
        assert!(b.is_open(KEY));
        // However long the probe takes, nobody else is let through.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(rx.try_recv().is_err());
        probe.record(&CallOutcome::Ok);
        for _ in 0..19 {
            let (_, a) = rx.recv().await.unwrap();
            assert!(!a.is_probe());
            a.record(&CallOutcome::Ok);
        }
        assert_eq!(b.state(KEY).state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn try_admit_reports_a_long_block_instead_of_waiting() {
        let b = breakers(tokio_clock());
        // Closed: admitted at once.
        let a = b.try_admit(KEY, "p", Duration::ZERO).await.unwrap();
        a.record(&CallOutcome::Ok);
        for _ in 0..5 {
            b.record(KEY, "p", fail(ErrorKind::RateLimit));
        }
        // Open for 30 s: a caller allowed 10 s is told so at once, with
        // the end of the period, and nothing changes.
        let start = tokio::time::Instant::now();
        let blocked = b.try_admit(KEY, "p", Duration::from_secs(10)).await;
        assert_eq!(tokio::time::Instant::now(), start, "did not wait");
        let blocked = blocked.err().unwrap();
        assert_eq!(blocked.reason, BlockReason::BreakerOpen);
        assert_eq!(blocked.until_ms, Some(T0 + 30_000));
        assert_eq!(b.state(KEY).state, BreakerState::Open);
        // A caller allowed longer than the period waits and probes.
        let probe = b
            .try_admit(KEY, "p", Duration::from_secs(40))
            .await
            .unwrap();
        assert!(probe.is_probe());
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(30));
        // While the probe is out, others wait for it up to their limit...
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move { b.try_admit(KEY, "p", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        // ... and are let through as soon as it succeeds.
        probe.record(&CallOutcome::Ok);
        let a = waiting.await.unwrap().unwrap();
        assert!(!a.is_probe());
        a.record(&CallOutcome::Ok);
        assert_eq!(b.state(KEY).state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_outlasting_the_wait_parks_the_others_and_402_says_so() {
        let b = breakers(tokio_clock());
        for _ in 0..5 {
            b.record(KEY, "p", fail(ErrorKind::RateLimit));
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        let probe = b.try_admit(KEY, "p", Duration::ZERO).await.unwrap();
        assert!(probe.is_probe());
        let start = tokio::time::Instant::now();
        let blocked = b
            .try_admit(KEY, "p", Duration::from_secs(2))
            .await
            .err()
            .unwrap();
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(2));
        assert_eq!(
            blocked,
            Blocked {
                reason: BlockReason::BreakerOpen,
                until_ms: None
            }
        );
        drop(probe);
        // Out of credits: the whole provider, reason payment_required.
        let other = "http://p/v1|other";
        b.record(other, "p", fail(ErrorKind::PaymentRequired));
        let blocked = b
            .try_admit("http://p/v1|third", "p", Duration::from_secs(1))
            .await
            .err()
            .unwrap();
        assert_eq!(blocked.reason, BlockReason::PaymentRequired);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_sends_waiters_back_to_wait_for_the_doubled_period() {
        let b = breakers(tokio_clock());
        b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
        let start = tokio::time::Instant::now();
        let probe = b.admit(KEY, "p").await;
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(30));
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let a = b.admit(KEY, "p").await;
                (tokio::time::Instant::now(), a.is_probe())
            })
        };
        tokio::task::yield_now().await;
        probe.record(&fail(ErrorKind::RateLimit));
        let (at, is_probe) = waiter.await.unwrap();
        assert!(is_probe, "the next caller after the doubled period probes");
        assert_eq!(at - start, Duration::from_secs(30 + 60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_hands_the_probe_on() {
        let b = breakers(tokio_clock());
        b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
        let probe = b.admit(KEY, "p").await;
        assert!(probe.is_probe());
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.admit(KEY, "p").await })
        };
        tokio::task::yield_now().await;
        drop(probe);
        let handed = waiter.await.unwrap();
        assert!(handed.is_probe());
        assert_eq!(b.state(KEY).state, BreakerState::HalfOpen);
        // A caller cancelled while waiting leaves nothing behind.
        let r = tokio::time::timeout(Duration::from_secs(1), b.admit(KEY, "p")).await;
        assert!(r.is_err(), "the handed-on probe is still out");
        drop(handed);
        let start = tokio::time::Instant::now();
        assert!(b.admit(KEY, "p").await.is_probe());
        assert_eq!(tokio::time::Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_lets_waiters_through_at_once() {
        let b = breakers(tokio_clock());
        b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
        let start = tokio::time::Instant::now();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.admit(KEY, "p").await.is_probe() })
        };
        tokio::task::yield_now().await;
        assert!(b.reset(KEY));
        assert!(!waiter.await.unwrap());
        assert_eq!(tokio::time::Instant::now(), start);
        assert!(!b.reset("unknown"));
    }

    #[tokio::test]
    async fn outcomes_of_calls_admitted_before_opening_are_ignored() {
        let (_t, clock) = manual();
        let b = breakers(clock);
        let early = b.admit(KEY, "p").await;
        assert!(!early.is_probe());
        b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
        early.record(&CallOutcome::Ok);
        assert!(b.is_open(KEY));
    }

    /// A manual clock starting at the wall clock (rows are read against it
    /// when the breakers load).
    fn manual_from_now() -> (Arc<AtomicI64>, Clock) {
        let t = Arc::new(AtomicI64::new(chrono::Utc::now().timestamp_millis()));
        let c = t.clone();
        (t, Arc::new(move || c.load(Ordering::SeqCst)))
    }

    fn stored_pause(store: &Store, key: &str, now: i64) -> Option<i64> {
        store
            .model_pauses(now)
            .unwrap()
            .into_iter()
            .find(|r| r.model == key)
            .map(|r| r.paused_until_ms)
    }

    /// A success that says nothing remains (`X-RateLimit-Remaining: 0`
    /// with a reset) is a pause every process must see, but not a breaker
    /// signal: it is stored like a 429's Retry-After and opens nothing.
    #[tokio::test]
    async fn an_exhausted_success_is_persisted_as_a_pause_and_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db"), &Default::default()).unwrap();
        let (t, clock) = manual_from_now();
        let t0 = t.load(Ordering::SeqCst);
        let a = Breakers::new(Some(store.clone()), BreakerConfig::default())
            .unwrap()
            .with_clock(clock)
            .with_pause_threshold(Duration::from_secs(2));
        for _ in 0..10 {
            a.record(KEY, "p", CallOutcome::Exhausted { retry_after: 30.0 });
        }
        assert_eq!(stored_pause(&store, KEY, t0), Some(t0 + 30_000));
        assert!(!a.is_open(KEY));
        // A plain success carries no pause.
        a.record("p|other", "p", CallOutcome::Ok);
        assert_eq!(stored_pause(&store, "p|other", t0), None);
    }
    #[tokio::test]
    async fn a_provider_pause_is_persisted_rarely_and_holds_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let store = Store::open(&path, &Default::default()).unwrap();
        let (t, clock) = manual_from_now();
        let t0 = t.load(Ordering::SeqCst);
        let a = Breakers::new(Some(store.clone()), BreakerConfig::default())
            .unwrap()
            .with_clock(clock.clone())
            .with_pause_threshold(Duration::from_secs(2));
        // A Retry-After within the claim backlog is not written.
        a.record(
            KEY,
            "p",
            CallOutcome::failed(ErrorKind::RateLimit, Some(2.0)),
        );
        assert_eq!(stored_pause(&store, KEY, t0), None);
        assert_eq!(a.paused_until(KEY), Some(t0 + 2000), "but held here");
        // 60 s is.
        a.record(
            KEY,
            "p",
            CallOutcome::failed(ErrorKind::RateLimit, Some(60.0)),
        );
        assert_eq!(stored_pause(&store, KEY, t0), Some(t0 + 60_000));
        // The same pause repeated half a second later moves the end by
        // less than a second: not written again.
        t.fetch_add(500, Ordering::SeqCst);
        a.record(
            KEY,
            "p",
            CallOutcome::failed(ErrorKind::RateLimit, Some(60.0)),
        );
        assert_eq!(stored_pause(&store, KEY, t0), Some(t0 + 60_000));
        assert_eq!(a.paused_until(KEY), Some(t0 + 60_500));
        // Two seconds later it is.
        t.fetch_add(1_500, Ordering::SeqCst);
        a.record(
            KEY,
            "p",
            CallOutcome::failed(ErrorKind::RateLimit, Some(60.0)),
        );
        assert_eq!(stored_pause(&store, KEY, t0), Some(t0 + 62_000));
        // A shorter one does not shorten anything; a provider's absurd wait
        // is capped as the limiter caps it.
        a.record(
            KEY,
            "p",
            CallOutcome::failed(ErrorKind::RateLimit, Some(5.0)),
        );
        assert_eq!(a.paused_until(KEY), Some(t0 + 62_000));
        a.record(
            "u|other",
            "p",
            CallOutcome::failed(ErrorKind::RateLimit, Some(1e30)),
        );
        let now = t.load(Ordering::SeqCst);
        assert_eq!(
            stored_pause(&store, "u|other", now),
            Some(now + (MAX_RETRY_AFTER_SECS as i64) * 1000)
        );
        // The fifth 429 also opened the breaker (for its own 5 s): the
        // pause, longer, is what holds the model.
        assert_eq!(a.state(KEY).state, BreakerState::Open);

        // Another process on the same database knows the pause at once and
        // neither probes nor calls: a caller allowed 10 s parks.
        let b = Breakers::new(
            Some(Store::open(&path, &Default::default()).unwrap()),
            BreakerConfig::default(),
        )
        .unwrap()
        .with_clock(clock.clone());
        assert_eq!(b.paused_until(KEY), Some(t0 + 62_000));
        let blocked = b
            .try_admit(KEY, "p", Duration::from_secs(10))
            .await
            .err()
            .unwrap();
        assert_eq!(
            blocked,
            Blocked {
                reason: BlockReason::RateLimited,
                until_ms: Some(t0 + 62_000)
            }
        );
        // A pause written after it loaded is seen on the next refresh (at
        // most a second later).
        b.refresh_pauses();
        a.record(
            "u|late",
            "p",
            CallOutcome::failed(ErrorKind::RateLimit, Some(30.0)),
        );
        b.refresh_pauses();
        assert_eq!(b.paused_until("u|late"), None, "throttled");
        t.fetch_add(1_000, Ordering::SeqCst);
        b.refresh_pauses();
        assert_eq!(b.paused_until("u|late"), Some(now + 30_000));
        // Once the pause is over, it means nothing.
        t.store(t0 + 62_000, Ordering::SeqCst);
        assert_eq!(b.paused_until(KEY), None);
        let probe = b
            .try_admit(KEY, "p", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(probe.is_probe(), "the breaker, long due, probes");
        probe.record(&CallOutcome::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_caller_sits_out_a_pause_it_may_wait_for() {
        let b = breakers(tokio_clock());
        let start = tokio::time::Instant::now();
        b.record(
            KEY,
            "p",
            CallOutcome::failed(ErrorKind::RateLimit, Some(3.0)),
        );
        let a = b
            .try_admit(KEY, "p", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(3));
        a.record(&CallOutcome::Ok);
    }

    #[tokio::test]
    async fn state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let store = Store::open(&path, &Default::default()).unwrap();
        let (t, clock) = manual();
        let b = Breakers::new(Some(store.clone()), BreakerConfig::default())
            .unwrap()
            .with_clock(clock.clone());
        b.record("a|1", "acme", CallOutcome::Ok);
        b.record(
            "o|2",
            "other",
            CallOutcome::failed(ErrorKind::PaymentRequired, Some(3600.0)),
        );
        for _ in 0..5 {
            b.record("a|1", "acme", fail(ErrorKind::RateLimit));
        }
        // Second opening of a|1 (doubling count 2) left half-open by a
        // process that dies mid-probe.
        t.store(b.state("a|1").open_until_ms.unwrap(), Ordering::SeqCst);
        b.admit("a|1", "acme")
            .await
            .record(&fail(ErrorKind::ServerError));
        t.store(b.state("a|1").open_until_ms.unwrap(), Ordering::SeqCst);
        let probe = b.admit("a|1", "acme").await;
        assert_eq!(b.state("a|1").state, BreakerState::HalfOpen);
        let before = b.all();
        std::mem::forget(probe);
        drop(b);

        let store2 = Store::open(&path, &Default::default()).unwrap();
        let b2 = Breakers::new(Some(store2), BreakerConfig::default())
            .unwrap()
            .with_clock(clock);
        let after = b2.all();
        assert_eq!(after.len(), 2);
        let a1 = &after[0].1;
        assert_eq!(after[0].0, "a|1");
        assert_eq!(a1.state, BreakerState::Open, "half-open comes back open");
        assert_eq!(a1.open_count, 2);
        assert_eq!(a1.open_until_ms, before[0].1.open_until_ms);
        assert_eq!(a1.reason.as_deref(), Some("server_error"));
        assert!(!b2.is_open("a|1"), "and due for a probe");
        assert_eq!(after[1].1, before[1].1);
        assert!(b2.is_open("o|2"));
        // The next probe after the restart doubles on from the stored count.
        let p = b2.admit("a|1", "acme").await;
        p.record(&fail(ErrorKind::ServerError));
        assert_eq!(
            b2.state("a|1").open_until_ms,
            Some(t.load(Ordering::SeqCst) + 120_000)
        );
        // Closing is persisted too.
        b2.reset("o|2");
        let b3 = Breakers::new(Some(store), BreakerConfig::default()).unwrap();
        assert_eq!(b3.state("o|2").state, BreakerState::Closed);
    }
}
