//! Fenced claims: taking a phase of a paper, renewing the claim, and the
//! check every later write of the claim makes. Why its own module: this is
//! where "two processes never both work on one paper" is kept — a claim is
//! one `UPDATE … RETURNING` in a `BEGIN IMMEDIATE` transaction, and every
//! write of a claim re-checks owner, token and working status in the same
//! transaction ([`Store::check_claim`]).

use super::{attempts_of, working_phase_of, Claim, ClaimRequest, Ev};
use crate::store::db::Store;
use crate::store::error::StoreError;
use crate::store::leases::{lease_deadline_ms, ttl_ms, MAX_LEASE_TTL};
use crate::store::phase::{PaperStatus, Phase};
use crate::store::sql::{lock_row, Db, Dialect, Row};
use rusqlite::params;
use std::sync::OnceLock;
use std::time::Duration;

/// A claim's column updates: working status, one more attempt of that
/// phase, the claim itself (owner ?1, lease until ?2 — computed in Rust by
/// `lease_deadline_ms`, which cannot wrap — and a new fencing token) and
/// timestamps (?3). The status flow is generated from [`Phase`], so no
/// status is spelled here.
fn claim_set() -> String {
    let flow: String = Phase::ALL
        .iter()
        .map(|p| format!(" WHEN '{}' THEN '{}'", p.from_status(), p.working_status()))
        .collect();
    let attempts: Vec<String> = Phase::ALL
        .iter()
        .map(|p| {
            let col = p.attempts_column();
            format!(
                "{col} = {col} + CASE WHEN status = '{}' THEN 1 ELSE 0 END",
                p.from_status()
            )
        })
        .collect();
    format!(
        "status = CASE status{flow} END,
    {},
    owner_id = ?1, lease_until = ?2, fencing_token = fencing_token + 1,
    updated_at = ?3, phase_started_at = ?3",
        attempts.join(",\n    ")
    )
}

/// The search for the next claimable row of one status (?1) due by ?2:
/// resumable rows (a phase execution to resume) or fresh ones. Each is the
/// head of an index (`executions_resumable` / `executions_ready`), not a
/// sort of the queue. On PostgreSQL the row found is locked and rows other
/// hosts are claiming right now are skipped (`FOR UPDATE SKIP LOCKED`), so
/// claimers never wait on each other nor take the same row.
fn search_sql(dialect: Dialect, resumable: bool) -> &'static str {
    match (dialect, resumable) {
        (Dialect::Sqlite, true) => {
            "SELECT id FROM executions INDEXED BY executions_resumable
             WHERE status = ?1 AND phase_execution IS NOT NULL AND not_before <= ?2 AND cancel_requested = 0
             ORDER BY priority DESC, created_at, id LIMIT 1"
        }
        (Dialect::Sqlite, false) => {
            "SELECT id FROM executions INDEXED BY executions_ready
             WHERE status = ?1 AND phase_execution IS NULL AND not_before <= ?2 AND cancel_requested = 0
             ORDER BY priority DESC, created_at, id LIMIT 1"
        }
        (Dialect::Postgres, true) => {
            "SELECT id FROM executions
             WHERE status = ?1 AND phase_execution IS NOT NULL AND not_before <= ?2 AND cancel_requested = 0
             ORDER BY priority DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        }
        (Dialect::Postgres, false) => {
            "SELECT id FROM executions
             WHERE status = ?1 AND phase_execution IS NULL AND not_before <= ?2 AND cancel_requested = 0
             ORDER BY priority DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        }
    }
}

/// What a claim returns, read by [`row_to_claim`].
const CLAIM_RETURNING: &str = "id, arxiv_id, status, fencing_token, attempts_prep, attempts_expensive, attempts_wrap, phase_execution, title, abstract, pdf_path";

/// The claim of one row found by the queue search (?4 id, ?5 its status).
fn claim_row_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "UPDATE executions SET {} WHERE id = ?4 AND status = ?5 RETURNING {CLAIM_RETURNING}",
            claim_set()
        )
    })
}

/// The claim of one named paper (?4 queue id or arXiv id) in any stable
/// status a phase starts from.
fn claim_named_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "UPDATE executions SET {}
             WHERE (id = ?4 OR arxiv_id = ?4 OR id = 'paper:' || ?4)
               AND status IN ({}) AND cancel_requested = 0
             RETURNING {CLAIM_RETURNING}",
            claim_set(),
            PaperStatus::sql_list(Phase::ALL.map(Phase::from_status))
        )
    })
}

fn row_to_claim(r: &Row<'_, '_>, owner: &str, ttl_ms: i64) -> rusqlite::Result<Claim> {
    let (_, phase) = working_phase_of(r, "status")?;
    Ok(Claim {
        id: r.get("id")?,
        arxiv_id: r.get("arxiv_id")?,
        phase,
        owner: owner.to_string(),
        token: r.get("fencing_token")?,
        attempt: attempts_of(r, phase)?,
        phase_execution: r.get("phase_execution")?,
        title: r.get("title")?,
        abstract_text: r.get("abstract")?,
        pdf_path: r.get("pdf_path")?,
        ttl_ms,
    })
}

impl Store {
    /// Claim the next claimable phase: resumable work first (a phase that
    /// left a machine execution to resume), then `phases` in order, then
    /// priority (high first), then age. Claimable means due by the store's
    /// clock (`not_before <= now`) and not cancelled.
    pub fn claim(&self, req: &ClaimRequest<'_>) -> Result<Option<Claim>, StoreError> {
        if req.phases.is_empty() {
            return Ok(None);
        }
        self.write_locked("claiming work", |tx| {
            match self.claim_search(tx, req, req.phases)? {
                Some((id, status)) => self.claim_take(tx, req, &id, status),
                None => Ok(None),
            }
        })
    }

    /// The row [`Store::claim`] would take among `phases` (its id and
    /// stable status), inside `tx`; nothing is written (on PostgreSQL the
    /// row found is locked, and rows other hosts are claiming are skipped).
    pub(in crate::store) fn claim_search(
        &self,
        tx: &Db<'_>,
        req: &ClaimRequest<'_>,
        phases: &[Phase],
    ) -> Result<Option<(String, PaperStatus)>, StoreError> {
        let e = |err| self.err("claiming work", err);
        let now = self.now_ms();
        // Resumable work of any listed phase first, then fresh work;
        // each in phase order. Every lookup is the head of an index
        // (executions_resumable / executions_ready), not a sort of the
        // queue.
        for resumable in [true, false] {
            if !resumable && req.resumable_only {
                break;
            }
            let sql = search_sql(tx.dialect(), resumable);
            for p in phases {
                let status = p.from_status();
                let id: Option<String> = tx
                    .one(sql, params![status, now], |r| r.get("id"))
                    .map_err(e)?;
                if let Some(id) = id {
                    return Ok(Some((id, status)));
                }
            }
        }
        Ok(None)
    }

    /// Take the claim of row `id` (found in `status` by
    /// [`Store::claim_search`]) inside `tx`, with its `claimed` event.
    pub(in crate::store) fn claim_take(
        &self,
        tx: &Db<'_>,
        req: &ClaimRequest<'_>,
        id: &str,
        status: PaperStatus,
    ) -> Result<Option<Claim>, StoreError> {
        let owner = req.owner.to_string();
        let ttl_ms = ttl_ms(req.ttl);
        let until = lease_deadline_ms(self.now_ms(), req.ttl);
        let row = tx
            .one(
                claim_row_sql(),
                params![owner, until, self.now_text(), id, status],
                |r| row_to_claim(r, &owner, ttl_ms),
            )
            .map_err(|e| self.err("claiming work", e))?;
        self.claimed_event(tx, row.as_ref(), None)?;
        Ok(row)
    }

    /// Claim the next phase of one named paper (queue id or arXiv id), for
    /// `runner resume ID`: the same fenced `UPDATE … RETURNING` as
    /// [`Store::claim`], but `not_before` is ignored (an operator asked for
    /// this paper now). None when the paper is not in a stable, claimable
    /// status or was cancelled.
    pub fn claim_paper(
        &self,
        id_or_arxiv: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Claim>, StoreError> {
        let ttl_ms = ttl_ms(ttl);
        let key = id_or_arxiv.trim().to_string();
        self.write_locked("claiming paper", |tx| {
            let until = lease_deadline_ms(self.now_ms(), ttl);
            let row = tx
                .one(
                    claim_named_sql(),
                    params![owner, until, self.now_text(), key],
                    |r| row_to_claim(r, owner, ttl_ms),
                )
                .map_err(|e| self.err("claiming paper", e))?;
            self.claimed_event(tx, row.as_ref(), Some("runner resume"))?;
            Ok(row)
        })
    }

    fn claimed_event(
        &self,
        tx: &Db<'_>,
        claim: Option<&Claim>,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let Some(c) = claim else { return Ok(()) };
        self.event(
            tx,
            &c.id,
            Ev {
                phase: Some(c.phase),
                kind: "claimed",
                from: Some(c.phase.from_status()),
                to: Some(c.phase.working_status()),
                attempt: Some(c.attempt),
                machine_execution: c.phase_execution.as_deref(),
                owner: Some(&c.owner),
                message,
                ..Ev::default()
            },
        )
    }

    /// Check that `claim` still holds its row (same owner and token, working
    /// status) inside `tx`.
    pub(super) fn check_claim(&self, tx: &Db<'_>, c: &Claim) -> Result<(), StoreError> {
        let row: Option<(Option<String>, i64, PaperStatus)> = tx
            .one(
                &lock_row(
                    tx,
                    "SELECT owner_id, fencing_token, status FROM executions WHERE id = ?1",
                ),
                params![&c.id],
                |r| {
                    Ok((
                        r.get("owner_id")?,
                        r.get("fencing_token")?,
                        r.get("status")?,
                    ))
                },
            )
            .map_err(|e| self.err("checking claim", e))?;
        match row {
            Some((Some(o), t, s))
                if o == c.owner && t == c.token && s == c.phase.working_status() =>
            {
                Ok(())
            }
            Some((owner, _, status)) => Err(StoreError::LeaseLost {
                id: c.id.clone(),
                owner: match owner {
                    Some(o) if o != c.owner => o,
                    _ => format!("nobody (status is now {status})"),
                },
            }),
            None => Err(StoreError::NotFound(format!("paper {} is gone", c.id))),
        }
    }

    /// Extend a claim by its TTL from the store's "now"; fails with
    /// `LeaseLost` when it was taken.
    pub fn renew_claim(&self, c: &Claim) -> Result<(), StoreError> {
        self.write_locked("renewing claim", |tx| {
            self.check_claim(tx, c)?;
            tx.exec(
                "UPDATE executions SET lease_until = ?2 WHERE id = ?1",
                params![
                    c.id,
                    self.now_ms()
                        .saturating_add(c.ttl_ms.clamp(0, ttl_ms(MAX_LEASE_TTL)))
                ],
            )
            .map_err(|e| self.err("renewing claim", e))?;
            Ok(())
        })
    }

    /// Record the machine execution driving the claimed phase (so a reaped
    /// claim resumes it instead of starting over).
    pub fn set_phase_execution(&self, c: &Claim, execution: &str) -> Result<(), StoreError> {
        self.write_locked("recording phase execution", |tx| {
            self.check_claim(tx, c)?;
            tx.exec(
                "UPDATE executions SET phase_execution = ?2 WHERE id = ?1",
                params![c.id, execution],
            )
            .map_err(|e| self.err("recording phase execution", e))?;
            Ok(())
        })
    }

    /// True when an operator asked to cancel this paper.
    pub fn cancel_requested(&self, id: &str) -> Result<bool, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.one(
            "SELECT cancel_requested FROM executions WHERE id = ?1",
            params![id],
            |r| r.get::<i64>("cancel_requested"),
        )
        .map(|v| v.unwrap_or(0) != 0)
        .map_err(|e| self.err("reading paper", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated claim SQL is what the hand-written one was.
    #[test]
    fn the_claim_flow_is_generated_from_the_phases() {
        let set = claim_set();
        assert!(set.starts_with(
            "status = CASE status WHEN 'pending' THEN 'prepping' WHEN 'prepped' THEN 'analyzing' WHEN 'analyzed' THEN 'wrapping' END,"
        ), "{set}");
        assert!(set.contains(
            "attempts_expensive = attempts_expensive + CASE WHEN status = 'prepped' THEN 1 ELSE 0 END"
        ));
        assert!(claim_named_sql().contains("status IN ('pending', 'prepped', 'analyzed')"));
    }
}
