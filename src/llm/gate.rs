//! The seam through which something above the LLM layer (the runner's
//! circuit breakers) can hold back and observe every real HTTP attempt.
//!
//! The llm layer owns the trait because the runner sits above it: `llm` must
//! not import `runner`. A gate is consulted only for requests that are really
//! sent — a response reused from the spend ledger costs nothing and tells
//! nothing about the provider's health.

use crate::engine::{ErrorKind, ExecError};
use async_trait::async_trait;

/// What one HTTP attempt came to, as far as a gate cares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CallOutcome {
    /// The provider answered (2xx).
    Ok,
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
pub trait CallPermit: Send {
    fn complete(self: Box<Self>, outcome: &CallOutcome);
}

/// A gate in front of every real HTTP attempt.
#[async_trait]
pub trait CallGate: Send + Sync {
    /// Called before each attempt, after the ledger-reuse check and before
    /// the rate limiter. May wait (e.g. while the model's breaker is open).
    /// `model_key` is [`ModelProfile::limiter_key`](super::ModelProfile::limiter_key).
    async fn before_call(&self, model_key: &str, provider: &str) -> Box<dyn CallPermit>;
}

/// A permit that observes nothing (for gates that only wait).
pub struct NoopPermit;

impl CallPermit for NoopPermit {
    fn complete(self: Box<Self>, _outcome: &CallOutcome) {}
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
