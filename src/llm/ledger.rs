//! The spend ledger (`llm_calls`): every request attempt is reserved before
//! it is sent and settled after, so a crash can never under-count spend, and
//! a resumed state that sends the same request reuses the settled response
//! instead of paying for it again. API keys are never stored.

use crate::engine::{AgentResult, ExecError};
use crate::store::{now, Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// What is known before a request is sent.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub execution_id: String,
    pub machine: String,
    pub state: String,
    pub step: u64,
    pub sample: u32,
    pub attempt: u32,
    pub agent: String,
    pub profile: Option<String>,
    pub provider: String,
    pub model: String,
    pub request_hash: String,
    pub fallback_from: Option<String>,
}

/// What is known after.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    pub result: Result<AgentResult, ExecError>,
}

#[derive(Clone)]
pub struct Ledger {
    store: Store,
}

impl Ledger {
    pub fn new(store: Store) -> Ledger {
        Ledger { store }
    }

    /// A settled successful response for the same request of the same state
    /// run (execution, state, step, request hash), if one exists.
    pub fn reusable(&self, r: &Reservation) -> Result<Option<AgentResult>, StoreError> {
        let store = &self.store;
        let conn = store.pool.get().map_err(|e| StoreError::Pool {
            path: store.path.clone(),
            message: e.to_string(),
        })?;
        let row: Option<String> = conn
            .query_row(
                "SELECT response FROM llm_calls
                 WHERE execution_id = ?1 AND state = ?2 AND step = ?3 AND request_hash = ?4 AND status = 'ok'
                 ORDER BY id DESC LIMIT 1",
                params![r.execution_id, r.state, r.step as i64, r.request_hash],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| store.err("reading ledger", e))?;
        Ok(row.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Record that a stored response was reused (no request was sent).
    pub fn record_reuse(&self, r: &Reservation) -> Result<(), StoreError> {
        let id = self.insert(r, "reused")?;
        self.store.write("settling reuse", |tx| {
            tx.execute(
                "UPDATE llm_calls SET settled_at = ?2 WHERE id = ?1",
                params![id, now()],
            )
            .map_err(|e| self.store.err("settling reuse", e))?;
            Ok(())
        })
    }

    /// Reserve a row before sending; returns its id.
    pub fn reserve(&self, r: &Reservation) -> Result<i64, StoreError> {
        self.insert(r, "reserved")
    }

    fn insert(&self, r: &Reservation, status: &str) -> Result<i64, StoreError> {
        self.store.write("reserving ledger row", |tx| {
            tx.execute(
                "INSERT INTO llm_calls(execution_id, machine, state, step, sample, attempt, agent, profile, provider, model,
                                       request_hash, fallback_from, status, reserved_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    r.execution_id,
                    r.machine,
                    r.state,
                    r.step as i64,
                    r.sample,
                    r.attempt,
                    r.agent,
                    r.profile,
                    r.provider,
                    r.model,
                    r.request_hash,
                    r.fallback_from,
                    status,
                    now()
                ],
            )
            .map_err(|e| self.store.err("reserving ledger row", e))?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Settle a reserved row with the outcome.
    pub fn settle(&self, id: i64, s: &Settlement) -> Result<(), StoreError> {
        let (status, kind, message, retry_after, usage, cost, response) = match &s.result {
            Ok(r) => (
                "ok",
                None,
                None,
                None,
                Some(r.usage.clone()),
                r.cost,
                serde_json::to_string(r).ok(),
            ),
            Err(e) => (
                "error",
                Some(e.kind.as_str()),
                Some(e.message.clone()),
                e.retry_after,
                None,
                None,
                None,
            ),
        };
        self.store.write("settling ledger row", |tx| {
            tx.execute(
                "UPDATE llm_calls SET status = ?2, http_status = ?3, error_kind = ?4, error_message = ?5,
                        prompt_tokens = ?6, completion_tokens = ?7, total_tokens = ?8, cost = ?9,
                        latency_ms = ?10, retry_after = ?11, response = ?12, settled_at = ?13
                 WHERE id = ?1",
                params![
                    id,
                    status,
                    s.http_status,
                    kind,
                    message,
                    usage.as_ref().map(|u| u.prompt_tokens as i64),
                    usage.as_ref().map(|u| u.completion_tokens as i64),
                    usage.as_ref().map(|u| u.total_tokens as i64),
                    cost,
                    s.latency_ms as i64,
                    retry_after,
                    response,
                    now()
                ],
            )
            .map_err(|e| self.store.err("settling ledger row", e))?;
            Ok(())
        })?;
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
