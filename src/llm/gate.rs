//! The seam through which something above the LLM layer (the runner's
//! circuit breakers) can hold back and observe every real HTTP attempt.
//!
//! The llm layer owns the trait because the runner sits above it: `llm` must
//! not import `runner`. A gate is consulted only for requests that are really
//! sent — a response reused from the spend ledger costs nothing and tells
//! nothing about the provider's health.

use crate::engine::{ErrorKind, ExecError};
use async_trait::async_trait;
use serde::Serialize;

/// What one HTTP attempt came to, as far as a gate cares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CallOutcome {
    /// The provider answered (2xx).
    Ok,
    /// The provider answered (2xx) and said no requests remain for
    /// `retry_after` seconds (`X-RateLimit-Remaining: 0` with a reset):
    /// healthy, but a pause every process sharing the model should honour.
    Exhausted { retry_after: f64 },
    /// The attempt failed with this kind; `retry_after` is the provider's
    /// requested wait in seconds (Retry-After / X-RateLimit-Reset), if any.
    Failed {
        kind: ErrorKind,
        retry_after: Option<f64>,
    },
}

impl CallOutcome {
    pub fn failed(kind: ErrorKind, retry_after: Option<f64>) -> CallOutcome {
        CallOutcome::Failed { kind, retry_after }
    }

    /// The outcome of a finished attempt.
    pub fn of<T>(result: &Result<T, ExecError>) -> CallOutcome {
        match result {
            Ok(_) => CallOutcome::Ok,
            Err(e) => CallOutcome::Failed {
                kind: e.kind,
                retry_after: e.retry_after,
            },
        }
    }
}

/// Permission to send one attempt. It must be completed with the attempt's
/// outcome; dropping it without completing means the attempt was abandoned
/// (cancelled, or the ledger refused it), and the gate must not wait for an
/// outcome that will never come.
///
/// Completing is async so that a gate may persist what the outcome changed
/// (the breakers write their table) before the call returns, off the async
/// workers.
#[async_trait]
pub trait CallPermit: Send {
    async fn complete(self: Box<Self>, outcome: &CallOutcome);
}

/// Why a model cannot be called now (shown by `status`, carried by a park).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReason {
    /// Its circuit breaker is open (or its half-open probe is in flight).
    BreakerOpen,
    /// The rate limiter has it booked far ahead (a provider's Retry-After
    /// pause, or pacing at the configured rate).
    RateLimited,
    /// The daily budget of its class is spent.
    Budget,
    /// Its provider answered 402 (out of credits).
    PaymentRequired,
}

impl BlockReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::BreakerOpen => "breaker_open",
            BlockReason::RateLimited => "rate_limited",
            BlockReason::Budget => "budget",
            BlockReason::PaymentRequired => "payment_required",
        }
    }
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call that was not let through because waiting would take too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub reason: BlockReason,
    /// When the model is expected to be usable again (unix ms); None while
    /// it is unknown (a probe in flight).
    pub until_ms: Option<i64>,
}

/// A gate in front of every real HTTP attempt.
#[async_trait]
pub trait CallGate: Send + Sync {
    /// Called before each attempt, after the ledger-reuse check and before
    /// the rate limiter. May wait (e.g. while the model's breaker is open).
    /// `model_key` is [`ModelProfile::limiter_key`](super::ModelProfile::limiter_key).
    async fn before_call(&self, model_key: &str, provider: &str) -> Box<dyn CallPermit>;

    /// Like [`before_call`](Self::before_call), but wait at most
    /// `max_wait`: a model blocked for longer is reported instead, so the
    /// caller can give its worker slot back (park) rather than hold it.
    /// The default waits as long as `before_call` does.
    async fn try_before_call(
        &self,
        model_key: &str,
        provider: &str,
        max_wait: std::time::Duration,
    ) -> Result<Box<dyn CallPermit>, Blocked> {
        let _ = max_wait;
        Ok(self.before_call(model_key, provider).await)
    }
}

/// A permit that observes nothing (for gates that only wait).
pub struct NoopPermit;

#[async_trait]
impl CallPermit for NoopPermit {
    async fn complete(self: Box<Self>, _outcome: &CallOutcome) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_of_a_result_keeps_kind_and_retry_after() {
        let ok: Result<(), ExecError> = Ok(());
        assert_eq!(CallOutcome::of(&ok), CallOutcome::Ok);
        let mut e = ExecError::new(ErrorKind::RateLimit, "429");
        e.retry_after = Some(7.0);
        let err: Result<(), ExecError> = Err(e);
        assert_eq!(
            CallOutcome::of(&err),
            CallOutcome::failed(ErrorKind::RateLimit, Some(7.0))
        );
    }
}
