//! The spend ledger (`llm_calls`): every request attempt is reserved before
//! it is sent and settled after, so a crash can never under-count spend, and
//! a resumed state that sends the same request reuses the settled response
//! instead of paying for it again. API keys are never stored.
//!
//! The rows themselves are the store's (`store::ledger`); this module
//! decides what goes in them and runs every store call through
//! [`Store::run`], off the async workers.

use super::price::{CallCost, TokenUsage};
use crate::engine::{AgentResult, ExecError};
use crate::store::{CallStatus, CallWorst, LlmSettlement, Refusal, SpendPolicy, Store, StoreError};

/// What is known before a request is sent.
pub use crate::store::LlmReservation as Reservation;

/// What is known after.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    pub result: Result<AgentResult, ExecError>,
    /// The tokens the provider reported (None: no `usage` in the answer,
    /// or no answer); a successful row stores them, NULL when missing.
    pub usage: Option<TokenUsage>,
    /// What the attempt cost, and where that figure came from.
    pub cost: CallCost,
}

impl Settlement {
    /// The columns the settled row gets.
    fn row(&self) -> LlmSettlement {
        let mut row = LlmSettlement {
            status: CallStatus::Ok,
            http_status: self.http_status,
            error_kind: None,
            error_message: None,
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            cost: self.cost.cost,
            cost_source: self.cost.source,
            currency: self.cost.currency.clone(),
            latency_ms: self.latency_ms,
            retry_after: None,
            response: None,
        };
        match &self.result {
            Ok(r) => {
                if self.usage.is_some() {
                    row.prompt_tokens = Some(r.usage.prompt_tokens);
                    row.completion_tokens = Some(r.usage.completion_tokens);
                    row.total_tokens = Some(r.usage.total_tokens);
                }
                row.response = serde_json::to_string(r).ok();
            }
            Err(e) => {
                row.status = CallStatus::Error;
                row.error_kind = Some(e.kind.as_str().to_string());
                row.error_message = Some(e.message.clone());
                row.retry_after = e.retry_after;
            }
        }
        row
    }
}

#[derive(Clone)]
pub struct Ledger {
    store: Store,
    /// The daily budget every reservation is checked against (None: no
    /// check; rows still record their worst case).
    policy: Option<SpendPolicy>,
}

/// A ledger store error stops the state: an unrecorded call must not be
/// sent (and an unrecorded answer must not be used).
fn stop(e: StoreError) -> ExecError {
    ExecError::host(format!("spend ledger: {e}"), e)
}

impl Ledger {
    pub fn new(store: Store) -> Ledger {
        Ledger {
            store,
            policy: None,
        }
    }

    /// Check every reservation against `policy`'s limits (see
    /// [`Store::reserve_llm_call`]).
    pub fn with_policy(mut self, policy: SpendPolicy) -> Ledger {
        self.policy = Some(policy).filter(|p| p.limits.any());
        self
    }

    /// A settled successful response for the same request of the same state
    /// run (execution, state, step, request hash), if one exists. A stored
    /// response that no longer parses is not reused (the call is sent).
    pub async fn reusable(&self, r: &Reservation) -> Result<Option<AgentResult>, ExecError> {
        let r = r.clone();
        let json = self
            .store
            .run(move |s| s.reusable_llm_response(&r))
            .await
            .map_err(stop)?;
        Ok(json.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Record that a stored response was reused (no request was sent).
    pub async fn record_reuse(&self, r: &Reservation) -> Result<(), ExecError> {
        let r = r.clone();
        self.store
            .run(move |s| s.insert_llm_call(&r, CallStatus::Reused))
            .await
            .map_err(stop)?;
        Ok(())
    }

    /// Reserve a row before sending, with the request's worst case, in one
    /// transaction with the budget check; returns its id, or why the worst
    /// case does not fit what is left today (nothing was written).
    pub async fn reserve(
        &self,
        r: &Reservation,
        worst: CallWorst,
    ) -> Result<Result<i64, Refusal>, ExecError> {
        let r = r.clone();
        let policy = self.policy.clone();
        self.store
            .run(move |s| s.reserve_llm_call(&r, &worst, policy.as_ref()))
            .await
            .map_err(stop)
    }

    /// Settle a reserved row with the outcome.
    pub async fn settle(&self, id: i64, s: &Settlement) -> Result<(), ExecError> {
        let row = s.row();
        self.store
            .run(move |s| s.settle_llm_call(id, &row))
            .await
            .map_err(stop)?;
        crash_hook_after_settle();
        Ok(())
    }
}

/// Test hook: with `PAPER_RUNNER_CRASH_AFTER=llm_settled` the process crashes
/// ([`crate::store::crash_now`]) right after a call's response is settled in
/// the ledger — after the provider answered, before the state's exit
/// checkpoint — so tests can prove a resume does not pay for the call again.
fn crash_hook_after_settle() {
    if std::env::var(crate::store::CRASH_ENV).as_deref() == Ok("llm_settled") {
        crate::store::crash_now("crashing after a settled LLM call");
    }
}
