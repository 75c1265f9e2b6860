//! Operator writes: `runner retry` puts failed or cancelled papers back,
//! `runner cancel` marks papers to stop. Why its own module: these act on
//! rows by operator choice, not by claim, so they never touch a claimed
//! row's fence — a cancel is a flag the claim holder reads at its next
//! check, and a retry only moves papers that are failed or cancelled.

use super::{paper_id, Ev};
use crate::store::db::Store;
use crate::store::error::StoreError;
use crate::store::phase::{PaperStatus, Phase};
use crate::store::sql::Db;
use rusqlite::params;

impl Store {
    /// Operator: put failed papers (or the given ones) back in the queue at
    /// the stable status before the phase that failed, with that phase's
    /// attempts reset. Returns (id, from, to) per changed paper.
    pub fn retry_papers(
        &self,
        ids: &[String],
        only_phase: Option<Phase>,
    ) -> Result<Vec<(String, PaperStatus, PaperStatus)>, StoreError> {
        self.write("retrying papers", |tx| {
            let candidates: Vec<(String, PaperStatus)> = tx
            .all("SELECT id, status FROM executions WHERE status = ?1 OR cancel_requested = 1", params![PaperStatus::Failed],|r| {
                        Ok((r.get("id")?, r.get("status")?))
                    })
            .map_err(|e| self.err("retrying papers", e))?;
            let mut out = Vec::new();
            for (id, status) in candidates {
                if !ids.is_empty() && !ids.iter().any(|x| *x == id || paper_id(x) == id) {
                    continue;
                }
                let phase = self.failed_phase(tx, &id)?;
                if only_phase.is_some_and(|p| p != phase) {
                    continue;
                }
                let col = phase.attempts_column();
                let to = if status == PaperStatus::Failed {
                    phase.from_status()
                } else {
                    status
                };
                tx.exec(
                    &format!(
                        "UPDATE executions SET status = ?2, {col} = 0, not_before = 0, cancel_requested = 0,
                            phase_execution = NULL, updated_at = ?3 WHERE id = ?1"
                    ),
                    params![id, to, self.now_text()])
                .map_err(|e| self.err("retrying papers", e))?;
                self.event(
                    tx,
                    &id,
                    Ev {
                        phase: Some(phase),
                        kind: "retried",
                        from: Some(status),
                        to: Some(to),
                        ..Ev::default()
                    },
                )?;
                out.push((id, status, to));
            }
            self.notify_work(tx)?;
            Ok(out)
        })
    }

    /// The phase a failed paper failed in (from its timeline).
    fn failed_phase(&self, tx: &Db<'_>, id: &str) -> Result<Phase, StoreError> {
        let phase: Option<String> = tx
            .one(
                "SELECT phase FROM execution_events WHERE execution_id = ?1 AND phase IS NOT NULL ORDER BY id DESC LIMIT 1",
                params![id],
                |r| r.get("phase"))
            .map_err(|e| self.err("reading timeline", e))?
            .flatten();
        Ok(phase
            .as_deref()
            .and_then(Phase::parse)
            .unwrap_or(Phase::Prep))
    }

    /// Operator: stop claiming these papers; an in-flight phase stops at its
    /// next checkpoint. Returns (id, status) per paper marked.
    pub fn cancel_papers(&self, ids: &[String]) -> Result<Vec<(String, PaperStatus)>, StoreError> {
        self.write("cancelling papers", |tx| {
            let mut out = Vec::new();
            for x in ids {
                let row: Option<(String, PaperStatus)> = tx
                    .one(
                        "SELECT id, status FROM executions WHERE id = ?1 OR arxiv_id = ?1 OR id = 'paper:' || ?1",
                        params![x],
                        |r| Ok((r.get("id")?, r.get("status")?)))
                    .map_err(|e| self.err("cancelling papers", e))?;
                let Some((id, status)) = row else {
                    return Err(StoreError::NotFound(format!("no paper {x} in the queue")));
                };
                tx.exec(
                    "UPDATE executions SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1",
                    params![id, self.now_text()])
                .map_err(|e| self.err("cancelling papers", e))?;
                self.event(
                    tx,
                    &id,
                    Ev {
                        kind: "cancelled",
                        from: Some(status),
                        ..Ev::default()
                    },
                )?;
                out.push((id, status));
            }
            Ok(out)
        })
    }

    /// Operator: run papers again from the start. A paper at rest (pending,
    /// prepped, analyzed, done or failed, cancelled or not) goes back to
    /// pending with every phase's attempts and results cleared; a paper a
    /// runner is working on is refused (cancel it first), and the whole
    /// request changes nothing. Returns (id, status before) per paper.
    pub fn requeue_papers(&self, ids: &[String]) -> Result<Vec<(String, PaperStatus)>, StoreError> {
        self.write("re-queueing papers", |tx| {
            let mut out = Vec::new();
            for x in ids {
                let row: Option<(String, PaperStatus, Option<String>)> = tx
                    .one(
                        "SELECT id, status, owner_id FROM executions
                         WHERE id = ?1 OR arxiv_id = ?1 OR id = 'paper:' || ?1",
                        params![x],
                        |r| Ok((r.get("id")?, r.get("status")?, r.get("owner_id")?)),
                    )
                    .map_err(|e| self.err("re-queueing papers", e))?;
                let Some((id, status, owner)) = row else {
                    return Err(StoreError::NotFound(format!("no paper {x} in the queue")));
                };
                if owner.is_some() || status.working_phase().is_some() {
                    return Err(StoreError::Invalid(format!(
                        "paper {x} is {} on a runner now: cancel it first, then re-queue it",
                        status.as_str()
                    )));
                }
                tx.exec(
                    "UPDATE executions SET status = ?2, attempts_prep = 0, attempts_expensive = 0,
                        attempts_wrap = 0, not_before = 0, cancel_requested = 0, phase_execution = NULL,
                        prep_result = NULL, expensive_result = NULL, wrap_result = NULL,
                        last_error_kind = NULL, last_error_message = NULL, done_at = NULL,
                        phase_started_at = NULL, updated_at = ?3
                     WHERE id = ?1",
                    params![id, PaperStatus::Pending, self.now_text()],
                )
                .map_err(|e| self.err("re-queueing papers", e))?;
                tx.exec(
                    "DELETE FROM execution_blob_refs WHERE execution_id = ?1",
                    params![id],
                )
                .map_err(|e| self.err("re-queueing papers", e))?;
                self.event(
                    tx,
                    &id,
                    Ev {
                        kind: "requeued",
                        from: Some(status),
                        to: Some(PaperStatus::Pending),
                        ..Ev::default()
                    },
                )?;
                out.push((id, status));
            }
            self.notify_work(tx)?;
            Ok(out)
        })
    }
}
