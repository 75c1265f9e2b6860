//! The reaper: rolls back claims whose owner died or hung. Why its own
//! module: it is the one writer that moves rows it does not hold, so its
//! rule must stay narrow — only a claim whose lease expired by the store's
//! clock, or whose owner process is known to be gone, is touched; a live
//! claim never is.

use super::{attempts_of, working_phase_of, Ev, FailOutcome, Reaped, RetryPolicy};
use crate::store::db::Store;
use crate::store::error::StoreError;
use crate::store::phase::{PaperStatus, Phase};
use rusqlite::params;
use std::sync::OnceLock;

/// A claimed row as the reaper sees it.
struct WorkingRow {
    id: String,
    status: PaperStatus,
    phase: Phase,
    owner: Option<String>,
    attempt: u32,
    lease_until: Option<i64>,
}

/// Every row in a working status (generated from the phases).
fn working_rows_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT id, status, owner_id, attempts_prep, attempts_expensive, attempts_wrap, lease_until
             FROM executions WHERE status IN ({})",
            PaperStatus::sql_list(Phase::ALL.map(Phase::working_status))
        )
    })
}

impl Store {
    /// Roll back every row whose claim expired (its owner died or hung) by
    /// the store's clock: to the last stable status with a growing delay,
    /// or `failed` after `max_attempts`. A live claim is never touched.
    /// `is_dead(owner)` lets a claim whose owner process is known to be gone
    /// (same host, pid no longer exists) be reaped before its TTL.
    pub fn reap(
        &self,
        policy: &RetryPolicy,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<Vec<Reaped>, StoreError> {
        self.write("reaping expired claims", |tx| {
            let now = self.now_ms();
            let working: Vec<WorkingRow> = tx
            .all(working_rows_sql(), params![],|r| {
                        let (status, phase) = working_phase_of(r, "status")?;
                        Ok(WorkingRow {
                            id: r.get("id")?,
                            status,
                            phase,
                            owner: r.get("owner_id")?,
                            attempt: attempts_of(r, phase)?,
                            lease_until: r.get("lease_until")?,
                        })
                    })
            .map_err(|e| self.err("reaping", e))?;
            let mut out = Vec::new();
            for w in working {
                let expired = w.lease_until.is_none_or(|u| u < now);
                if !expired && !w.owner.as_deref().is_some_and(&is_dead) {
                    continue;
                }
                let (phase, attempt) = (w.phase, w.attempt);
                let outcome = if attempt < policy.max_attempts {
                    FailOutcome::RetryLater {
                        not_before_ms: now.saturating_add(policy.reap_delay_ms(attempt)),
                    }
                } else {
                    FailOutcome::Failed
                };
                let message = format!(
                    "claim of {} expired (attempt {attempt} of {})",
                    w.owner.as_deref().unwrap_or("unknown owner"),
                    policy.max_attempts
                );
                let (to, nb, kind, msg) = match &outcome {
                    FailOutcome::RetryLater { not_before_ms } => {
                        (phase.from_status(), *not_before_ms, None, None)
                    }
                    FailOutcome::Failed => (
                        PaperStatus::Failed,
                        0,
                        Some("lease_expired"),
                        Some(message.as_str()),
                    ),
                };
                tx.exec(
                    "UPDATE executions SET status = ?2, not_before = ?3, owner_id = NULL, lease_until = NULL,
                        last_error_kind = COALESCE(?4, last_error_kind), last_error_message = COALESCE(?5, last_error_message),
                        updated_at = ?6
                     WHERE id = ?1",
                    params![w.id, to, nb, kind, msg, self.now_text()])
                .map_err(|e| self.err("reaping", e))?;
                self.event(
                    tx,
                    &w.id,
                    Ev {
                        phase: Some(phase),
                        kind: "reaped",
                        from: Some(w.status),
                        to: Some(to),
                        attempt: Some(attempt),
                        owner: w.owner.as_deref(),
                        message: Some(&message),
                        ..Ev::default()
                    },
                )?;
                out.push(Reaped {
                    id: w.id,
                    phase,
                    owner: w.owner,
                    outcome,
                });
            }
            self.notify_work(tx)?;
            Ok(out)
        })
    }
}
