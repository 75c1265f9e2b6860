//! Read models for operators (`runner status`, `runner show`, `/metrics`)
//! and the one write they need beyond the queue's: claiming one named
//! paper (`runner resume ID`).
//!
//! Everything here is a plain query over the queue, the checkpoints, the
//! ledger and the breakers; nothing is cached, so a status printed by one
//! process is as fresh as the database file.

use super::db::Store;
use super::error::StoreError;
use super::ledger::CostSource;
use super::phase::{PaperStatus, Phase};
use super::sql::Dialect;
use crate::store::sql::Row;
use rusqlite::params;
use serde::Serialize;
use std::sync::OnceLock;

/// One row of the `breakers` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerRow {
    pub model: String,
    pub provider: String,
    /// As stored: closed, open or half_open.
    pub state: String,
    pub reason: Option<String>,
    pub open_until_ms: Option<i64>,
    pub open_count: u32,
    pub updated_at: String,
}

/// A paper in a working status, with where its phase machine is.
#[derive(Debug, Clone, Serialize)]
pub struct WorkingRow {
    pub id: String,
    pub arxiv_id: String,
    pub status: PaperStatus,
    pub owner_id: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub attempt: u32,
    pub phase_execution: Option<String>,
    pub phase_started_at: Option<String>,
    /// Event of the phase execution's latest checkpoint.
    pub checkpoint_event: Option<String>,
    pub checkpoint_state: Option<String>,
    pub checkpoint_next_state: Option<String>,
    pub checkpoint_at: Option<String>,
    /// Child machine executions of the phase still running.
    pub children_running: u64,
}

/// A machine execution row (a phase's root or one of its children).
#[derive(Debug, Clone, Serialize)]
pub struct MachineExecutionRow {
    pub execution_id: String,
    pub root_id: String,
    pub parent_id: Option<String>,
    pub machine_name: String,
    pub status: String,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The parts of a checkpoint a timeline needs (never the body's context).
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointMark {
    pub execution_id: String,
    pub step: u64,
    pub event: String,
    pub state: Option<String>,
    pub next_state: Option<String>,
    pub created_at: String,
    /// Kind of the error a `state_exit` was routed with (`on_error`), or a
    /// failed machine's error kind.
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
}

/// One ledger row (one request attempt), without the response body.
#[derive(Debug, Clone, Serialize)]
pub struct LlmCallRow {
    pub id: i64,
    pub execution_id: String,
    pub machine: String,
    pub state: String,
    pub step: u64,
    pub attempt: u32,
    pub agent: String,
    pub profile: Option<String>,
    pub provider: String,
    pub model: String,
    pub fallback_from: Option<String>,
    pub status: String,
    pub http_status: Option<u16>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub cost: Option<f64>,
    /// provider, price_table, unknown or none (None while reserved).
    pub cost_source: Option<String>,
    /// Currency of `cost` (None when the cost is unknown).
    pub currency: Option<String>,
    pub latency_ms: Option<u64>,
    pub retry_after: Option<f64>,
    pub reserved_at: String,
    pub settled_at: Option<String>,
}

/// Ledger totals of one model, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LlmModelTotals {
    pub model: String,
    /// Request attempts per ledger status (reserved, ok, error, reused).
    pub by_status: Vec<(String, u64)>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Attempts answered with HTTP 429 or classified `rate_limit`.
    pub rate_limited: u64,
    /// Known spend per currency (settled rows with a cost).
    pub costs: Vec<(String, f64)>,
    /// Settled rows whose cost is `unknown` (never counted as 0).
    pub unknown_cost: u64,
}

/// The oldest paper waiting for prep.
#[derive(Debug, Clone, Serialize)]
pub struct OldestPending {
    pub id: String,
    pub arxiv_id: String,
    pub created_at: String,
}

/// `[lo, hi)` bounds of ids that start with `<paper id>/`: the paper's
/// phase executions and their children. A range (not LIKE) so arXiv ids
/// never act as patterns and the primary-key index is used.
/// Papers in a working status with their phase machine's latest
/// checkpoint; the working statuses come from [`Phase`].
fn working_papers_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT e.id, e.arxiv_id, e.status, e.owner_id, e.lease_until,
                    e.attempts_prep, e.attempts_expensive, e.attempts_wrap,
                    e.phase_execution, e.phase_started_at,
                    c.event AS checkpoint_event, c.state AS checkpoint_state,
                    c.next_state AS checkpoint_next_state, c.created_at AS checkpoint_at,
                    (SELECT COUNT(*) FROM machine_executions k
                      WHERE k.root_id = e.phase_execution AND k.parent_id IS NOT NULL AND k.status = 'running')
                      AS children_running
             FROM executions e
             LEFT JOIN machine_executions m ON m.execution_id = e.phase_execution
             LEFT JOIN checkpoints c ON c.id = m.latest_checkpoint
             WHERE e.status IN ({})
             ORDER BY e.phase_started_at, e.id",
            PaperStatus::sql_list(Phase::ALL.map(Phase::working_status))
        )
    })
}

fn prefix_bounds(paper_id: &str) -> (String, String) {
    // '0' is the character after '/', so every "<id>/…" sorts inside.
    (format!("{paper_id}/"), format!("{paper_id}0"))
}

const LLM_COLUMNS: &str = "id, execution_id, machine, state, step, attempt, agent, profile, provider, model, fallback_from, status, http_status, error_kind, error_message, prompt_tokens, completion_tokens, total_tokens, cost, cost_source, currency, latency_ms, retry_after, reserved_at, settled_at";

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|n| n.max(0) as u64)
}

fn row_to_call(r: &Row<'_, '_>) -> rusqlite::Result<LlmCallRow> {
    Ok(LlmCallRow {
        id: r.get("id")?,
        execution_id: r.get("execution_id")?,
        machine: r.get("machine")?,
        state: r.get("state")?,
        step: r.get::<i64>("step")?.max(0) as u64,
        attempt: r.get("attempt")?,
        agent: r.get("agent")?,
        profile: r.get("profile")?,
        provider: r.get("provider")?,
        model: r.get("model")?,
        fallback_from: r.get("fallback_from")?,
        status: r.get("status")?,
        http_status: r.get("http_status")?,
        error_kind: r.get("error_kind")?,
        error_message: r.get("error_message")?,
        prompt_tokens: opt_u64(r.get("prompt_tokens")?),
        completion_tokens: opt_u64(r.get("completion_tokens")?),
        total_tokens: opt_u64(r.get("total_tokens")?),
        cost: r.get("cost")?,
        cost_source: r.get("cost_source")?,
        currency: r.get("currency")?,
        latency_ms: opt_u64(r.get("latency_ms")?),
        retry_after: r.get("retry_after")?,
        reserved_at: r.get("reserved_at")?,
        settled_at: r.get("settled_at")?,
    })
}

impl Store {
    /// Every breaker row, by model.
    pub fn breakers(&self) -> Result<Vec<BreakerRow>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all("SELECT model, provider, state, reason, open_until, open_count, updated_at FROM breakers ORDER BY model", params![],|r| {
                Ok(BreakerRow {
                    model: r.get("model")?,
                    provider: r.get("provider")?,
                    state: r.get("state")?,
                    reason: r.get("reason")?,
                    open_until_ms: r.get("open_until")?,
                    open_count: r.get("open_count")?,
                    updated_at: r.get("updated_at")?,
                })
            })
            .map_err(|e| self.err("reading breakers", e))?;
        Ok(rows)
    }

    /// Papers in a working status (prepping, analyzing, wrapping) with the
    /// latest checkpoint of their phase execution, oldest phase first.
    pub fn working_papers(&self) -> Result<Vec<WorkingRow>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(working_papers_sql(), params![], |r| {
                let status: PaperStatus = r.get("status")?;
                let attempt = match status.working_phase() {
                    Some(p) => r.get(p.attempts_column())?,
                    None => 0,
                };
                Ok(WorkingRow {
                    id: r.get("id")?,
                    arxiv_id: r.get("arxiv_id")?,
                    status,
                    owner_id: r.get("owner_id")?,
                    lease_until_ms: r.get("lease_until")?,
                    attempt,
                    phase_execution: r.get("phase_execution")?,
                    phase_started_at: r.get("phase_started_at")?,
                    checkpoint_event: r.get("checkpoint_event")?,
                    checkpoint_state: r.get("checkpoint_state")?,
                    checkpoint_next_state: r.get("checkpoint_next_state")?,
                    checkpoint_at: r.get("checkpoint_at")?,
                    children_running: r.get::<i64>("children_running")?.max(0) as u64,
                })
            })
            .map_err(|e| self.err("listing in-flight papers", e))?;
        Ok(rows)
    }

    /// Timeline events of `kind` for `phase` at or after `since` (an RFC 3339
    /// UTC timestamp as written by the store), over all papers.
    pub fn count_events_since(
        &self,
        kind: &str,
        phase: Phase,
        since: &str,
    ) -> Result<u64, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.row(
            "SELECT COUNT(*) AS n FROM execution_events WHERE at >= ?1 AND kind = ?2 AND phase = ?3",
            params![since, kind, phase.name()],
            |r| r.get::<i64>("n"))
        .map(|n| n.max(0) as u64)
        .map_err(|e| self.err("counting events", e))
    }

    /// The pending paper that has waited longest.
    pub fn oldest_pending(&self) -> Result<Option<OldestPending>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.one(
            "SELECT id, arxiv_id, created_at FROM executions WHERE status = ?1 AND cancel_requested = 0
             ORDER BY created_at, id LIMIT 1",
            params![PaperStatus::Pending],
            |r| {
                Ok(OldestPending {
                    id: r.get("id")?,
                    arxiv_id: r.get("arxiv_id")?,
                    created_at: r.get("created_at")?,
                })
            })
        .map_err(|e| self.err("finding the oldest pending paper", e))
    }

    /// Every machine execution of a paper's phases (roots and children),
    /// in creation order.
    pub fn paper_machine_executions(
        &self,
        paper_id: &str,
    ) -> Result<Vec<MachineExecutionRow>, StoreError> {
        let (lo, hi) = prefix_bounds(paper_id);
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all("SELECT execution_id, root_id, parent_id, machine_name, status, error_kind, error_message, created_at, updated_at
                 FROM machine_executions WHERE execution_id >= ?1 AND execution_id < ?2
                 ORDER BY created_at, execution_id", params![lo, hi],|r| {
                Ok(MachineExecutionRow {
                    execution_id: r.get("execution_id")?,
                    root_id: r.get("root_id")?,
                    parent_id: r.get("parent_id")?,
                    machine_name: r.get("machine_name")?,
                    status: r.get("status")?,
                    error_kind: r.get("error_kind")?,
                    error_message: r.get("error_message")?,
                    created_at: r.get("created_at")?,
                    updated_at: r.get("updated_at")?,
                })
            })
            .map_err(|e| self.err("reading machine executions", e))?;
        Ok(rows)
    }

    /// The checkpoints (event, state, time; errors of routed exits and
    /// failed machines) of every machine execution of a paper, in order.
    pub fn paper_checkpoints(&self, paper_id: &str) -> Result<Vec<CheckpointMark>, StoreError> {
        let (lo, hi) = prefix_bounds(paper_id);
        let mut guard = self.conn()?;
        let conn = guard.db();
        // Only exits and failures can carry an error; their bodies are read
        // by the database's JSON functions, so contexts never leave it.
        let (kind, message) = match conn.dialect() {
            Dialect::Sqlite => (
                "json_extract(CAST(body AS TEXT), '$.error.kind')",
                "json_extract(CAST(body AS TEXT), '$.error.message')",
            ),
            Dialect::Postgres => (
                "(CAST(convert_from(body, 'UTF8') AS jsonb) -> 'error' ->> 'kind')",
                "(CAST(convert_from(body, 'UTF8') AS jsonb) -> 'error' ->> 'message')",
            ),
        };
        let sql = format!(
            "SELECT execution_id, step, event, state, next_state, created_at,
                    CASE WHEN event IN ('state_exit', 'machine_failed') THEN {kind} END AS error_kind,
                    CASE WHEN event IN ('state_exit', 'machine_failed') THEN {message} END AS error_message
             FROM checkpoints WHERE execution_id >= ?1 AND execution_id < ?2
             ORDER BY id"
        );
        let rows = conn
            .all(&sql, params![lo, hi], |r| {
                Ok(CheckpointMark {
                    execution_id: r.get("execution_id")?,
                    step: r.get::<i64>("step")?.max(0) as u64,
                    event: r.get("event")?,
                    state: r.get("state")?,
                    next_state: r.get("next_state")?,
                    created_at: r.get("created_at")?,
                    error_kind: r.get("error_kind")?,
                    error_message: r.get("error_message")?,
                })
            })
            .map_err(|e| self.err("reading checkpoints", e))?;
        Ok(rows)
    }

    /// Every ledger row of a paper's machine executions, oldest first.
    pub fn paper_llm_calls(&self, paper_id: &str) -> Result<Vec<LlmCallRow>, StoreError> {
        let (lo, hi) = prefix_bounds(paper_id);
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(&format!(
                "SELECT {LLM_COLUMNS} FROM llm_calls WHERE execution_id >= ?1 AND execution_id < ?2 ORDER BY id"
            ), params![lo, hi],row_to_call)
            .map_err(|e| self.err("reading ledger", e))?;
        Ok(rows)
    }

    /// Ledger totals per model over the whole ledger (the counters of
    /// `/metrics`; they only grow, as ledger rows are never pruned).
    pub fn llm_totals(&self) -> Result<Vec<LlmModelTotals>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        // One pass in the order of `llm_calls_totals`, which holds every
        // column read: an index-only scan instead of reading each ledger
        // row (responses included) twice.
        let rows = conn
            .all(
                "SELECT model, status, cost_source, currency, COUNT(*) AS n,
                        CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt,
                        CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion,
                        CAST(SUM(CASE WHEN http_status = 429 OR error_kind = 'rate_limit' THEN 1 ELSE 0 END) AS BIGINT) AS limited,
                        COALESCE(SUM(cost), 0.0) AS spent
                 FROM llm_calls GROUP BY model, status, cost_source, currency
                 ORDER BY model, status, cost_source, currency",
                params![],
                |r| {
                    Ok((
                        r.get::<String>("model")?,
                        r.get::<String>("status")?,
                        r.get::<Option<String>>("cost_source")?,
                        r.get::<Option<String>>("currency")?,
                        r.get::<i64>("n")?.max(0) as u64,
                        r.get::<i64>("prompt")?.max(0) as u64,
                        r.get::<i64>("completion")?.max(0) as u64,
                        r.get::<Option<i64>>("limited")?.unwrap_or(0).max(0) as u64,
                        r.get::<f64>("spent")?,
                    ))
                },
            )
            .map_err(|e| self.err("reading ledger totals", e))?;
        let mut out: Vec<LlmModelTotals> = Vec::new();
        for (model, status, source, currency, n, prompt, completion, limited, spent) in rows {
            if out.last().is_none_or(|t| t.model != model) {
                out.push(LlmModelTotals {
                    model: model.clone(),
                    ..LlmModelTotals::default()
                });
            }
            let Some(t) = out.last_mut() else { continue };
            match t.by_status.iter_mut().find(|(s, _)| *s == status) {
                Some((_, total)) => *total += n,
                None => t.by_status.push((status, n)),
            }
            t.prompt_tokens += prompt;
            t.completion_tokens += completion;
            t.rate_limited += limited;
            let Some(source) = source else { continue };
            if source == CostSource::Unknown.as_str() {
                t.unknown_cost += n;
                continue;
            }
            let currency = currency.unwrap_or_else(|| "USD".to_string());
            match t.costs.iter_mut().find(|(c, _)| *c == currency) {
                Some((_, total)) => *total += spent,
                None => t.costs.push((currency, spent)),
            }
        }
        for t in &mut out {
            t.costs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(out)
    }

    /// Paper claims held right now by the store's clock (working status,
    /// lease not expired).
    pub fn claims_held(&self) -> Result<u64, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = SQL.get_or_init(|| {
            format!(
                "SELECT COUNT(*) AS n FROM executions WHERE status IN ({})
                 AND owner_id IS NOT NULL AND lease_until > ?1",
                PaperStatus::sql_list(Phase::ALL.map(Phase::working_status))
            )
        });
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.row(sql, params![self.now_ms()], |r| r.get::<i64>("n"))
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err("counting claims", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ManualClock, NewPaper, StoreOptions};
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, Store) {
        let (dir, s, _) = store_at();
        (dir, s)
    }

    fn store_at() -> (tempfile::TempDir, Store, ManualClock) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(1_700_000_000_000);
        let opts = StoreOptions {
            clock: std::sync::Arc::new(clock.clone()),
            ..StoreOptions::default()
        };
        let s = Store::open(&crate::store::pg::test_db(dir.path(), "o.db"), &opts).unwrap();
        (dir, s, clock)
    }

    fn add(s: &Store, id: &str) {
        s.add_paper(&NewPaper {
            arxiv_id: id.into(),
            source: "test".into(),
            ..NewPaper::default()
        })
        .unwrap();
    }

    #[test]
    fn prefix_bounds_cover_children_and_only_this_paper() {
        let (lo, hi) = prefix_bounds("paper:2401.00001");
        let inside = |s: &str| s >= lo.as_str() && s < hi.as_str();
        assert!(inside("paper:2401.00001/prep/1"));
        assert!(inside("paper:2401.00001/expensive/2/analyse@1/mechanism"));
        assert!(!inside("paper:2401.00001"));
        assert!(!inside("paper:2401.000010/prep/1"));
        assert!(!inside("paper:2401.00002/prep/1"));
    }

    #[test]
    fn claim_paper_takes_only_the_named_paper_and_is_fenced() {
        let (_d, s, clock) = store_at();
        add(&s, "a");
        add(&s, "b");
        let c = s
            .claim_paper("b", "me", Duration::from_secs(60))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.arxiv_id.as_str(), c.phase, c.attempt),
            ("b", Phase::Prep, 1)
        );
        // Held: a second claim (any owner) gets nothing.
        assert!(s
            .claim_paper("paper:b", "other", Duration::from_secs(60))
            .unwrap()
            .is_none());
        assert_eq!(s.paper("a").unwrap().unwrap().status, PaperStatus::Pending);
        let working = s.working_papers().unwrap();
        assert_eq!(working.len(), 1);
        assert_eq!(working[0].owner_id.as_deref(), Some("me"));
        assert_eq!(s.claims_held().unwrap(), 1);
        // Held until its TTL has passed by the store's clock.
        clock.advance(Duration::from_secs(60));
        assert_eq!(s.claims_held().unwrap(), 0);
        // Cancelled papers are not claimed.
        s.cancel_papers(&["a".into()]).unwrap();
        assert!(s
            .claim_paper("a", "me", Duration::from_secs(60))
            .unwrap()
            .is_none());
        let events = s.paper_events("paper:b").unwrap();
        assert_eq!(events.last().unwrap().kind, "claimed");
    }

    #[test]
    fn oldest_pending_and_empty_tables() {
        let (_d, s) = store();
        assert!(s.oldest_pending().unwrap().is_none());
        assert!(s.breakers().unwrap().is_empty());
        assert!(s.llm_totals().unwrap().is_empty());
        add(&s, "first");
        add(&s, "second");
        assert_eq!(s.oldest_pending().unwrap().unwrap().arxiv_id, "first");
        assert!(s.paper_llm_calls("paper:first").unwrap().is_empty());
    }
}
