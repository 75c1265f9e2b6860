//! Budget holds (`budget_holds`): the worst case a claimed phase may still
//! spend, taken in the same transaction as its claim, so every process
//! sharing the database sees it before it admits anything else.
//!
//! Lifetime: a hold belongs to one claim (paper id + fencing token, in that
//! claim's working status). It is drawn down as the phase reserves ledger
//! rows ([`Store::reserve_llm_call`](super::Store::reserve_llm_call)), and
//! counts nothing once its claim has ended — finished, failed, released or
//! reaped — because the paper row then no longer shows that token in that
//! working status (tokens only grow). Ended holds are deleted by the next
//! admission; none of the queue's settling writes has to know about them,
//! and a crash between claim and settle can leave a hold that is ignored,
//! never one that is counted twice.

use super::db::Store;
use super::error::StoreError;
use super::phase::{PaperStatus, Phase};
use super::queue::{Claim, ClaimRequest};
use super::spend::{ClassNeed, ModelClass, Need, Refusal, SpendPolicy};
use crate::store::sql::Db;
use rusqlite::params;

/// One live hold.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HoldRow {
    pub paper_id: String,
    pub token: i64,
    pub class: ModelClass,
    /// What it still reserves.
    pub left: Need,
}

/// What [`Store::claim_within_budget`] did.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// The claim taken, if any.
    pub claim: Option<Claim>,
    /// Phases passed over because the worst case of their next paper did
    /// not fit what is left today, and why.
    pub refused: Vec<(Phase, Refusal)>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count read back (never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// Claim the next claimable phase (as [`Store::claim`] does) only when
    /// its worst case fits the budget, and hold that worst case — one write
    /// transaction that reads today's ledger and every live hold of every
    /// process, checks the limits, takes the claim and inserts the hold, so
    /// two runners cannot both admit the last dollar.
    ///
    /// `need(phase, input_bytes)` is the worst case of one run of `phase`
    /// for a paper whose prompts carry `input_bytes` of its stored input
    /// (see [`Store::next_phase_input_bytes`]): the caller's estimate, see
    /// `runner::budget`. A phase whose next paper does not fit
    /// is passed over (and reported in `refused`), and the search goes on
    /// with the other phases.
    pub fn claim_within_budget(
        &self,
        req: &ClaimRequest<'_>,
        policy: &SpendPolicy,
        need: &dyn Fn(Phase, u64) -> ClassNeed,
    ) -> Result<Admission, StoreError> {
        if req.phases.is_empty() {
            return Ok(Admission::default());
        }
        // Serializable on PostgreSQL: two hosts summing the same ledger
        // and holds cannot both admit the last slot (one is re-run).
        self.write("claiming work", |tx| {
            let mut out = Admission::default();
            self.drop_ended_holds(tx)?;
            let usage = self.spend_usage_on(tx, policy)?;
            let mut phases = req.phases.to_vec();
            while let Some((id, status)) = self.claim_search(tx, req, &phases)? {
                let Some(phase) = status.next_phase() else {
                    return Ok(out);
                };
                let worst = need(phase, self.phase_input_bytes(tx, &id)?);
                if let Err(r) = usage.check(&worst) {
                    out.refused.push((phase, r));
                    phases.retain(|p| *p != phase);
                    continue;
                }
                let claim = self.claim_take(tx, req, &id, status)?;
                if let Some(c) = &claim {
                    self.insert_holds(tx, c, &worst)?;
                }
                out.claim = claim;
                return Ok(out);
            }
            Ok(out)
        })
    }

    /// The stored input size ([`Store::claim_within_budget`]) of the paper
    /// whose `phase` would be claimed next, if any is claimable.
    pub fn next_phase_input_bytes(&self, phase: Phase) -> Result<Option<u64>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let req = ClaimRequest {
            owner: "",
            ttl: std::time::Duration::ZERO,
            phases: &[phase],
            resumable_only: false,
        };
        match self.claim_search(&conn, &req, &[phase])? {
            Some((id, _)) => self.phase_input_bytes(&conn, &id).map(Some),
            None => Ok(None),
        }
    }

    /// The size a phase's prompts are estimated from: the paper row's title,
    /// abstract and earlier results as stored (small values inline) plus
    /// the largest value they hold as a blob — the paper's text, which a
    /// prompt carries once. The other large values (the full text beside
    /// the prompt's trimmed copy, the analyses a later prompt may quote)
    /// are not added: counted in every prompt they made the estimate
    /// several times the real request. A request larger than its claim's
    /// estimate is still bounded: it is checked with its real size when it
    /// is reserved ([`Store::reserve_llm_call`]). Bytes (characters for the
    /// text columns).
    fn phase_input_bytes(&self, tx: &Db<'_>, id: &str) -> Result<u64, StoreError> {
        tx.one(
            "SELECT COALESCE(LENGTH(title), 0) + COALESCE(LENGTH(abstract), 0)
                    + COALESCE(LENGTH(prep_result), 0) + COALESCE(LENGTH(expensive_result), 0)
                    + (SELECT COALESCE(MAX(b.size), 0) FROM execution_blob_refs r
                       JOIN blobs b ON b.hash = r.hash WHERE r.execution_id = executions.id)
                    AS bytes
             FROM executions WHERE id = ?1",
            params![id],
            |r| r.get::<i64>("bytes"),
        )
        .map(|n| count(n.unwrap_or(0)))
        .map_err(|e| self.err("measuring phase input", e))
    }

    fn insert_holds(&self, tx: &Db<'_>, c: &Claim, worst: &ClassNeed) -> Result<(), StoreError> {
        let working: PaperStatus = c.phase.working_status();
        for class in ModelClass::ALL {
            let n = worst.of(class);
            if n.is_zero() {
                continue;
            }
            tx.exec(
                "INSERT INTO budget_holds(paper_id, fencing_token, class, working_status, phase,
                                          owner_id, requests, tokens, cost, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (paper_id, fencing_token, class) DO UPDATE SET
                    requests = excluded.requests, tokens = excluded.tokens, cost = excluded.cost",
                params![
                    c.id,
                    c.token,
                    class.as_str(),
                    working,
                    c.phase.name(),
                    c.owner,
                    to_i64(n.requests),
                    to_i64(n.tokens),
                    n.usd,
                    self.now_text(),
                ],
            )
            .map_err(|e| self.err("holding the budget", e))?;
        }
        Ok(())
    }

    /// Delete the holds whose claim has ended (they already count nothing).
    fn drop_ended_holds(&self, tx: &Db<'_>) -> Result<(), StoreError> {
        tx.exec(
            "DELETE FROM budget_holds WHERE NOT EXISTS (
                SELECT 1 FROM executions e WHERE e.id = budget_holds.paper_id
                  AND e.fencing_token = budget_holds.fencing_token
                  AND e.status = budget_holds.working_status)",
            params![],
        )
        .map_err(|e| self.err("dropping ended budget holds", e))?;
        Ok(())
    }

    /// The live hold of `class` a call of machine execution `execution_id`
    /// draws from: the hold of the claim whose paper id the execution id
    /// starts with (`<paper id>/<phase>/<attempt>…`; an arXiv id may itself
    /// contain `/`, so every prefix ending before a `/` is tried).
    pub(super) fn hold_of_execution(
        &self,
        conn: &Db<'_>,
        execution_id: &str,
        class: ModelClass,
    ) -> Result<Option<HoldRow>, StoreError> {
        let e = |err| self.err("reading budget holds", err);
        const SQL: &str = "SELECT h.paper_id AS paper_id, h.fencing_token AS fencing_token,
                        h.requests AS requests, h.tokens AS tokens, h.cost AS cost
                 FROM budget_holds h JOIN executions e ON e.id = h.paper_id
                 WHERE h.paper_id = ?1 AND h.class = ?2
                   AND e.fencing_token = h.fencing_token AND e.status = h.working_status";
        for (i, _) in execution_id.match_indices('/') {
            let prefix = &execution_id[..i];
            let row = conn
                .one(SQL, params![prefix, class.as_str()], |r| {
                    Ok(HoldRow {
                        paper_id: r.get("paper_id")?,
                        token: r.get("fencing_token")?,
                        class,
                        left: Need {
                            requests: count(r.get("requests")?),
                            tokens: count(r.get("tokens")?),
                            usd: r.get("cost")?,
                        },
                    })
                })
                .map_err(e)?;
            if row.is_some() {
                return Ok(row);
            }
        }
        Ok(None)
    }

    /// Move `call`'s worst case out of hold `h` (never below zero): the
    /// ledger row reserved with it now counts that part itself.
    pub(super) fn draw_hold(
        &self,
        conn: &Db<'_>,
        h: &HoldRow,
        call: &Need,
    ) -> Result<(), StoreError> {
        let left = Need {
            requests: h.left.requests.saturating_sub(call.requests),
            tokens: h.left.tokens.saturating_sub(call.tokens),
            usd: h
                .left
                .usd
                .map(|l| super::spend::round_money((l - call.usd.unwrap_or(l)).max(0.0))),
        };
        conn.exec(
            "UPDATE budget_holds SET requests = ?4, tokens = ?5, cost = ?6
             WHERE paper_id = ?1 AND fencing_token = ?2 AND class = ?3",
            params![
                h.paper_id,
                h.token,
                h.class.as_str(),
                to_i64(left.requests),
                to_i64(left.tokens),
                left.usd,
            ],
        )
        .map_err(|e| self.err("drawing on a budget hold", e))?;
        Ok(())
    }
}
