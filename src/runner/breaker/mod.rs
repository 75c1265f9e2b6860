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
//! Writes never run on an async worker. A state change marks its model
//! dirty; the async paths — [`Breakers::admit`] and completing a call's
//! permit ([`CallPermit::complete`]) — then await the write through
//! `Store::run` before they return, so the table is in step with memory
//! when the call goes on. Changes made from synchronous code
//! ([`Breakers::record`], [`Admission::record`], dropping a probe,
//! [`Breakers::reset`]) are written by a blocking task the breakers own
//! (or at once when no tokio runtime is running); [`Breakers::flush`]
//! waits for everything changed so far to be written. Each write stores
//! the state current when it runs, under one lock, so the last write
//! always leaves the latest state. A failed write is logged; the breaker
//! still protects the provider.
//!
//! Time comes from the store's injected clock when the breakers have a
//! store (so breaker and pause deadlines agree with the store's), else from
//! the wall clock; [`Breakers::with_clock`] overrides both.
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

//!
//! Files: `state` (one model's breaker: states, signals, views), `record`
//! (outcomes drive the state machine; operator views and reset),
//! `admission` (waiting, the half-open probe, the [`CallGate`]), `pauses`
//! (provider pauses shared through `model_pauses`), `persist` (loading
//! and writing the `breakers` table through the store).

mod admission;
mod pauses;
mod persist;
mod record;
mod state;
#[cfg(test)]
mod tests;

pub use admission::Admission;
pub use state::{BreakerState, BreakerView};

use super::config::BreakerSettings;
use crate::store::{Store, StoreError};
use state::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use crate::llm::gate::CallOutcome;
#[cfg(doc)]
use crate::llm::gate::{CallGate, CallPermit};

/// Where the breakers take "now" (unix ms): the store's clock trait, so a
/// test's [`ManualClock`](crate::store::ManualClock) drives both.
pub type Clock = Arc<dyn crate::store::Clock>;

/// Longest honoured Retry-After (a provider asking for more is probed daily).
const MAX_RETRY_AFTER_SECS: f64 = 86_400.0;

/// A pause is written again only when its end moves by more than this
/// (a stream of 429s each saying "60 s" must not write on every one).
const PAUSE_WRITE_STEP_MS: i64 = 1_000;

/// `model_pauses` is read at most this often by [`Breakers::refresh_pauses`].
const PAUSE_REFRESH_MS: i64 = 1_000;

struct Inner {
    cfg: BreakerSettings,
    store: Option<Store>,
    entries: Mutex<HashMap<String, Entry>>,
    /// Woken on every state change (waiters in `admit` re-check).
    changed: tokio::sync::Notify,
    /// Orders table writes; each write stores the state current when it
    /// took this lock, so the last write always leaves the latest state.
    persist_lock: Mutex<()>,
    /// Models whose breaker changed since the last write.
    dirty: Mutex<BTreeSet<String>>,
    /// Models whose pause should be written (see `note_pause`).
    dirty_pauses: Mutex<BTreeSet<String>>,
    /// Blocking writes started from synchronous code: owned here, so they
    /// end with the breakers ([`Breakers::flush`] waits for their work).
    writers: Mutex<tokio::task::JoinSet<()>>,
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
    Arc::new(crate::store::SystemClock)
}

impl Breakers {
    /// Breakers persisted in `store` (None: in memory only), with the state
    /// the table holds loaded. `cfg` is the resolved `[breaker]` section
    /// ([`Settings::breaker`](super::config::Settings::breaker)), so the
    /// thresholds and periods arrive checked and typed.
    pub fn new(store: Option<Store>, cfg: BreakerSettings) -> Result<Breakers, StoreError> {
        let clock = store.as_ref().map_or_else(system_clock, Store::clock);
        let b = Breakers {
            inner: Arc::new(Inner {
                cfg,
                store,
                entries: Mutex::new(HashMap::new()),
                changed: tokio::sync::Notify::new(),
                persist_lock: Mutex::new(()),
                dirty: Mutex::new(BTreeSet::new()),
                dirty_pauses: Mutex::new(BTreeSet::new()),
                writers: Mutex::new(tokio::task::JoinSet::new()),
                next_probe: std::sync::atomic::AtomicU64::new(1),
                pauses: Mutex::new(HashMap::new()),
                pauses_read_at: Mutex::new(None),
            }),
            clock,
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

    /// Use `clock` instead of the store's (or the wall) clock. Call before cloning: clones
    /// made earlier keep the clock they had.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}
