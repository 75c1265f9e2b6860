//! One model's breaker: its states, what an outcome signals, and the
//! view `status` and metrics show. Pure data and rules — no locking, no
//! store, no time source (callers pass `now`).

use crate::engine::ErrorKind;
use crate::llm::gate::{BlockReason, CallOutcome};
use serde::Serialize;
use std::collections::VecDeque;

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
    pub(super) fn closed() -> BreakerView {
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
pub(super) struct Entry {
    pub(super) provider: String,
    pub(super) state: BreakerState,
    pub(super) reason: Option<String>,
    pub(super) open_until: Option<i64>,
    pub(super) open_count: u32,
    /// Id of the outstanding probe while half-open.
    pub(super) probe: Option<u64>,
    pub(super) rate_limits: VecDeque<i64>,
    pub(super) errors: VecDeque<i64>,
}

impl Entry {
    pub(super) fn closed(provider: &str) -> Entry {
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

    pub(super) fn is_payment_blocked(&self) -> bool {
        self.state != BreakerState::Closed
            && self.reason.as_deref() == Some(ErrorKind::PaymentRequired.as_str())
    }

    /// Open and not yet due for a probe, or probing.
    pub(super) fn blocks(&self, now: i64) -> bool {
        match self.state {
            BreakerState::Closed => false,
            BreakerState::HalfOpen => true,
            BreakerState::Open => self.open_until.is_some_and(|u| now < u),
        }
    }

    pub(super) fn close(&mut self) {
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
pub(super) enum Signal {
    /// The provider answered: nothing wrong with its capacity.
    Healthy,
    RateLimit,
    /// Server error or timeout.
    Error,
    Payment,
}

pub(super) fn signal(outcome: &CallOutcome) -> (Signal, Option<ErrorKind>, Option<f64>) {
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
pub(super) enum Source {
    /// A call admitted while closed.
    Ordinary,
    /// The half-open probe with this id.
    Probe(u64),
    /// [`Breakers::record`]: admission unknown, so while half-open the
    /// outcome is taken as the probe's.
    Unknown,
}

/// What an open (or probing) breaker tells a caller that will not wait.
pub(super) fn block_reason(e: &Entry) -> BlockReason {
    if e.is_payment_blocked() {
        BlockReason::PaymentRequired
    } else {
        BlockReason::BreakerOpen
    }
}

pub(super) fn push_within(q: &mut VecDeque<i64>, now: i64, window_ms: i64) {
    q.push_back(now);
    while q.front().is_some_and(|t| now - *t >= window_ms) {
        q.pop_front();
    }
}

pub(super) fn reached(count: usize, threshold: u32) -> bool {
    threshold > 0 && count >= threshold as usize
}
