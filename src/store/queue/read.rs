//! Read models of the queue: one paper, lists, counts, claimable work, a
//! paper's phase results and timeline. Why its own module: nothing here
//! writes, so these run on pooled read connections and never take the
//! writer; rows are read by column name, statuses through [`PaperStatus`].

use super::{PaperEvent, PaperRow};
use crate::store::blobs;
use crate::store::db::Store;
use crate::store::error::StoreError;
use crate::store::phase::{PaperStatus, Phase};
use crate::store::sql::Row;
use rusqlite::params;
use serde_json::{Map, Value};
use std::collections::HashMap;

pub(in crate::store) const PAPER_COLUMNS: &str = "id, arxiv_id, title, status, priority, attempts_prep, attempts_expensive, attempts_wrap, not_before, phase_execution, report_path, last_error_kind, last_error_message, owner_id, lease_until, cancel_requested, created_at, updated_at, phase_started_at, done_at";

pub(in crate::store) fn row_to_paper(r: &Row<'_, '_>) -> rusqlite::Result<PaperRow> {
    Ok(PaperRow {
        id: r.get("id")?,
        arxiv_id: r.get("arxiv_id")?,
        title: r.get("title")?,
        status: r.get("status")?,
        priority: r.get("priority")?,
        attempts_prep: r.get("attempts_prep")?,
        attempts_expensive: r.get("attempts_expensive")?,
        attempts_wrap: r.get("attempts_wrap")?,
        not_before_ms: r.get("not_before")?,
        phase_execution: r.get("phase_execution")?,
        report_path: r.get("report_path")?,
        last_error_kind: r.get("last_error_kind")?,
        last_error_message: r.get("last_error_message")?,
        owner_id: r.get("owner_id")?,
        lease_until_ms: r.get("lease_until")?,
        cancel_requested: r.get::<i64>("cancel_requested")? != 0,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        phase_started_at: r.get("phase_started_at")?,
        done_at: r.get("done_at")?,
    })
}

impl Store {
    /// The decoded results of the phases a paper finished.
    pub fn phase_results(&self, id: &str) -> Result<Map<String, Value>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let row: Option<(Option<String>, Option<String>, Option<String>)> = conn
            .one(
                "SELECT prep_result, expensive_result, wrap_result FROM executions WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get("prep_result")?,
                        r.get("expensive_result")?,
                        r.get("wrap_result")?,
                    ))
                },
            )
            .map_err(|e| self.err("reading phase results", e))?;
        let Some((prep, expensive, wrap)) = row else {
            return Err(StoreError::NotFound(format!("paper {id} is not queued")));
        };
        let blob_map = self.referenced_blobs(&conn, "execution_blob_refs", id)?;
        let mut out = Map::new();
        for (name, body) in [("prep", prep), ("expensive", expensive), ("wrap", wrap)] {
            let Some(body) = body else { continue };
            let v: Value = serde_json::from_str(&body).map_err(|e| {
                StoreError::Invalid(format!("{name} result of {id} does not decode: {e}"))
            })?;
            let v = blobs::decode(v, &blob_map)
                .map_err(|e| StoreError::Invalid(format!("{name} result of {id}: {e}")))?;
            out.insert(name.into(), v);
        }
        Ok(out)
    }

    /// One paper by queue id or arXiv id.
    pub fn paper(&self, id_or_arxiv: &str) -> Result<Option<PaperRow>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.one(
            &format!("SELECT {PAPER_COLUMNS} FROM executions WHERE id = ?1 OR arxiv_id = ?1 OR id = 'paper:' || ?1"),
            params![id_or_arxiv.trim()],
            row_to_paper)
        .map_err(|e| self.err("reading paper", e))
    }

    /// Papers, optionally only those with one of `statuses`.
    pub fn papers(&self, statuses: &[PaperStatus]) -> Result<Vec<PaperRow>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let filter = if statuses.is_empty() {
            String::new()
        } else {
            format!(
                "WHERE status IN ({})",
                PaperStatus::sql_list(statuses.iter().copied())
            )
        };
        let rows = conn
            .all(
                &format!("SELECT {PAPER_COLUMNS} FROM executions {filter} ORDER BY created_at, id"),
                params![],
                row_to_paper,
            )
            .map_err(|e| self.err("listing papers", e))?;
        Ok(rows)
    }

    /// Count of papers per status (every status present, zeros included,
    /// in flow order).
    pub fn status_counts(&self) -> Result<Vec<(PaperStatus, u64)>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(
                "SELECT status, COUNT(*) AS n FROM executions GROUP BY status",
                params![],
                |r| Ok((r.get::<PaperStatus>("status")?, r.get::<i64>("n")?)),
            )
            .map_err(|e| self.err("counting papers", e))?;
        let mut map: HashMap<PaperStatus, u64> = HashMap::new();
        for (s, n) in rows {
            map.insert(s, n as u64);
        }
        Ok(PaperStatus::ALL
            .into_iter()
            .map(|s| (s, map.get(&s).copied().unwrap_or(0)))
            .collect())
    }

    /// Papers claimable now by the store's clock, per phase (ignoring
    /// budget and breakers).
    pub fn claimable_counts(&self) -> Result<Vec<(Phase, u64)>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let now = self.now_ms();
        let mut out = Vec::new();
        for p in Phase::ALL {
            let n: i64 = conn
                .row(
                    "SELECT COUNT(*) AS n FROM executions WHERE status = ?1 AND not_before <= ?2 AND cancel_requested = 0",
                    params![p.from_status(), now],
                    |r| r.get("n"))
                .map_err(|e| self.err("counting claimable papers", e))?;
            out.push((p, n as u64));
        }
        Ok(out)
    }

    /// The timeline of a paper, oldest first.
    pub fn paper_events(&self, id: &str) -> Result<Vec<PaperEvent>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all("SELECT at, phase, kind, from_status, to_status, attempt, machine_execution, owner_id, error_kind, message, duration_ms
                 FROM execution_events WHERE execution_id = ?1 ORDER BY id", params![id],|r| {
                Ok(PaperEvent {
                    at: r.get("at")?,
                    phase: r.get("phase")?,
                    kind: r.get("kind")?,
                    from_status: r.get("from_status")?,
                    to_status: r.get("to_status")?,
                    attempt: r.get("attempt")?,
                    machine_execution: r.get("machine_execution")?,
                    owner_id: r.get("owner_id")?,
                    error_kind: r.get("error_kind")?,
                    message: r.get("message")?,
                    duration_ms: r.get("duration_ms")?,
                })
            })
            .map_err(|e| self.err("reading timeline", e))?;
        Ok(rows)
    }
}
