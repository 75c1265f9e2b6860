//! The paper queue (`executions`): adding papers, fenced claims, phase
//! results, rollbacks and the timeline (`execution_events`).
//!
//! A claim is one `UPDATE … RETURNING` inside a `BEGIN IMMEDIATE`
//! transaction: it moves the row to its working status and takes the claim
//! (owner, lease_until, a new fencing token) at once, so two processes can
//! never both get the same paper. Every later write for that claim checks
//! owner and token in the same statement; a process whose claim was reaped
//! and re-taken can no longer move the row.

use super::blobs;
use super::checkpoints::now;
use super::db::Store;
use super::error::StoreError;
use super::leases::{lease_deadline_ms, ttl_ms, MAX_LEASE_TTL};
use super::phase::Phase;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::time::Duration;

/// A paper to add to the queue.
#[derive(Debug, Clone, Default)]
pub struct NewPaper {
    pub arxiv_id: String,
    pub title: Option<String>,
    pub abstract_text: Option<String>,
    pub pdf_path: Option<String>,
    pub priority: i64,
    pub source: String,
}

/// What `add_paper` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added {
        id: String,
    },
    /// The paper was already queued; nothing changed.
    Exists {
        id: String,
        status: String,
    },
}

/// The queue id of a paper: `paper:<arxiv id>` (slashes of old-style ids
/// kept; the id is never used as a path).
pub fn paper_id(arxiv_id: &str) -> String {
    format!("paper:{}", arxiv_id.trim())
}

/// What the scheduler asks for.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub owner: &'a str,
    pub ttl: Duration,
    /// Phases that may be claimed, in preference order.
    pub phases: &'a [Phase],
    pub now_ms: i64,
    /// Only rows that left a machine execution to resume (`--resume-only`).
    pub resumable_only: bool,
}

/// A claimed phase of one paper.
#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub id: String,
    pub arxiv_id: String,
    pub phase: Phase,
    pub owner: String,
    pub token: i64,
    /// 1 for the first attempt of this phase.
    pub attempt: u32,
    /// The machine execution of this phase when an earlier attempt left
    /// one to resume (a reaped or drained run).
    pub phase_execution: Option<String>,
    pub title: Option<String>,
    pub abstract_text: Option<String>,
    pub pdf_path: Option<String>,
    pub ttl_ms: i64,
}

/// A paper row as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct PaperRow {
    pub id: String,
    pub arxiv_id: String,
    pub title: Option<String>,
    pub status: String,
    pub priority: i64,
    pub attempts_prep: u32,
    pub attempts_expensive: u32,
    pub attempts_wrap: u32,
    pub not_before_ms: i64,
    pub phase_execution: Option<String>,
    pub report_path: Option<String>,
    pub last_error_kind: Option<String>,
    pub last_error_message: Option<String>,
    pub owner_id: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub cancel_requested: bool,
    pub created_at: String,
    pub updated_at: String,
    pub phase_started_at: Option<String>,
    pub done_at: Option<String>,
}

/// One line of a paper's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct PaperEvent {
    pub at: String,
    pub phase: Option<String>,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub attempt: Option<u32>,
    pub machine_execution: Option<String>,
    pub owner_id: Option<String>,
    pub error_kind: Option<String>,
    pub message: Option<String>,
    pub duration_ms: Option<i64>,
}

/// Where a failed phase went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FailOutcome {
    /// Back to the phase's stable status, claimable again after `not_before_ms`.
    RetryLater {
        not_before_ms: i64,
    },
    Failed,
}

/// A row the reaper rolled back.
#[derive(Debug, Clone, Serialize)]
pub struct Reaped {
    pub id: String,
    pub phase: Phase,
    pub owner: Option<String>,
    pub outcome: FailOutcome,
}

/// How retries are spaced.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`: base × 2^(attempt-1), capped.
    pub fn delay_ms(&self, attempt: u32) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let shift = attempt.saturating_sub(1).min(30);
        ms(self.base)
            .saturating_mul(1i64 << shift)
            .min(ms(self.max))
    }

    /// Delay after a rollback of attempt `attempt` by the reaper: none the
    /// first time (a crashed or killed runner is the usual cause, and a
    /// restart should resume at once), then growing like `delay_ms`, so a
    /// paper that keeps killing its runner backs off.
    pub fn reap_delay_ms(&self, attempt: u32) -> i64 {
        if attempt <= 1 {
            0
        } else {
            self.delay_ms(attempt - 1)
        }
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A claim's column updates: working status, one more attempt of that
/// phase, the claim itself (owner ?1, lease until ?2 — computed in Rust by
/// `lease_deadline_ms`, which cannot wrap — and a new fencing token) and
/// timestamps (?3).
const CLAIM_SET: &str = "status = CASE status WHEN 'pending' THEN 'prepping' WHEN 'prepped' THEN 'analyzing' WHEN 'analyzed' THEN 'wrapping' END,
    attempts_prep = attempts_prep + (status = 'pending'),
    attempts_expensive = attempts_expensive + (status = 'prepped'),
    attempts_wrap = attempts_wrap + (status = 'analyzed'),
    owner_id = ?1, lease_until = ?2, fencing_token = fencing_token + 1,
    updated_at = ?3, phase_started_at = ?3";

/// What a claim returns, read by [`row_to_claim`].
const CLAIM_RETURNING: &str = "id, arxiv_id, status, fencing_token, attempts_prep, attempts_expensive, attempts_wrap, phase_execution, title, abstract, pdf_path";

fn row_to_claim(r: &rusqlite::Row<'_>, owner: &str, ttl_ms: i64) -> rusqlite::Result<Claim> {
    let status: String = r.get(2)?;
    let phase = Phase::of_working_status(&status).unwrap_or(Phase::Prep);
    let attempt: u32 = match phase {
        Phase::Prep => r.get(4)?,
        Phase::Expensive => r.get(5)?,
        Phase::Wrap => r.get(6)?,
    };
    Ok(Claim {
        id: r.get(0)?,
        arxiv_id: r.get(1)?,
        phase,
        owner: owner.to_string(),
        token: r.get(3)?,
        attempt,
        phase_execution: r.get(7)?,
        title: r.get(8)?,
        abstract_text: r.get(9)?,
        pdf_path: r.get(10)?,
        ttl_ms,
    })
}

const PAPER_COLUMNS: &str = "id, arxiv_id, title, status, priority, attempts_prep, attempts_expensive, attempts_wrap, not_before, phase_execution, report_path, last_error_kind, last_error_message, owner_id, lease_until, cancel_requested, created_at, updated_at, phase_started_at, done_at";

fn row_to_paper(r: &rusqlite::Row<'_>) -> rusqlite::Result<PaperRow> {
    Ok(PaperRow {
        id: r.get(0)?,
        arxiv_id: r.get(1)?,
        title: r.get(2)?,
        status: r.get(3)?,
        priority: r.get(4)?,
        attempts_prep: r.get(5)?,
        attempts_expensive: r.get(6)?,
        attempts_wrap: r.get(7)?,
        not_before_ms: r.get(8)?,
        phase_execution: r.get(9)?,
        report_path: r.get(10)?,
        last_error_kind: r.get(11)?,
        last_error_message: r.get(12)?,
        owner_id: r.get(13)?,
        lease_until_ms: r.get(14)?,
        cancel_requested: r.get::<_, i64>(15)? != 0,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
        phase_started_at: r.get(18)?,
        done_at: r.get(19)?,
    })
}

/// id, status, owner, attempts (prep, expensive, wrap), lease_until.
type WorkingRow = (String, String, Option<String>, u32, u32, u32, Option<i64>);

/// Fields of one timeline event.
#[derive(Default)]
struct Ev<'a> {
    phase: Option<Phase>,
    kind: &'a str,
    from: Option<&'a str>,
    to: Option<&'a str>,
    attempt: Option<u32>,
    machine_execution: Option<&'a str>,
    owner: Option<&'a str>,
    error_kind: Option<&'a str>,
    message: Option<&'a str>,
    duration_ms: Option<i64>,
}

impl Store {
    fn event(&self, tx: &Transaction<'_>, id: &str, ev: Ev<'_>) -> Result<(), StoreError> {
        tx.prepare_cached(
            "INSERT INTO execution_events(execution_id, at, phase, kind, from_status, to_status, attempt, machine_execution, owner_id, error_kind, message, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                now(),
                ev.phase.map(Phase::name),
                ev.kind,
                ev.from,
                ev.to,
                ev.attempt,
                ev.machine_execution,
                ev.owner,
                ev.error_kind,
                ev.message,
                ev.duration_ms
            ])
        })
        .map_err(|e| self.err("recording event", e))?;
        Ok(())
    }

    /// Queue a paper; adding it twice is a no-op that says so.
    pub fn add_paper(&self, p: &NewPaper) -> Result<AddOutcome, StoreError> {
        let arxiv = p.arxiv_id.trim();
        if arxiv.is_empty() {
            return Err(StoreError::Invalid("a paper needs an arXiv id".into()));
        }
        let id = paper_id(arxiv);
        self.write("adding paper", |tx| {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT status FROM executions WHERE arxiv_id = ?1",
                    [arxiv],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err("adding paper", e))?;
            if let Some(status) = existing {
                return Ok(AddOutcome::Exists {
                    id: id.clone(),
                    status,
                });
            }
            let t = now();
            tx.execute(
                "INSERT INTO executions(id, arxiv_id, title, abstract, pdf_path, source, priority, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                params![id, arxiv, p.title, p.abstract_text, p.pdf_path, p.source, p.priority, t],
            )
            .map_err(|e| self.err("adding paper", e))?;
            self.event(
                tx,
                &id,
                Ev {
                    kind: "added",
                    to: Some("pending"),
                    message: Some(&p.source),
                    ..Ev::default()
                },
            )?;
            Ok(AddOutcome::Added { id: id.clone() })
        })
    }

    /// Claim the next claimable phase: resumable work first (a phase that
    /// left a machine execution to resume), then `phases` in order, then
    /// priority (high first), then age.
    pub fn claim(&self, req: &ClaimRequest<'_>) -> Result<Option<Claim>, StoreError> {
        if req.phases.is_empty() {
            return Ok(None);
        }
        let owner = req.owner.to_string();
        let ttl_ms = ttl_ms(req.ttl);
        let until = lease_deadline_ms(req.now_ms, req.ttl);
        let claim_sql = format!(
            "UPDATE executions SET {CLAIM_SET} WHERE id = ?4 AND status = ?5 RETURNING {CLAIM_RETURNING}"
        );
        self.write("claiming work", |tx| {
            let e = |err| self.err("claiming work", err);
            // Resumable work of any listed phase first, then fresh work;
            // each in phase order. Every lookup is the head of an index
            // (executions_resumable / executions_ready), not a sort of the
            // queue.
            let mut found = None;
            'search: for resumable in [true, false] {
                if !resumable && req.resumable_only {
                    break;
                }
                let sql = if resumable {
                    "SELECT id FROM executions INDEXED BY executions_resumable
                     WHERE status = ?1 AND phase_execution IS NOT NULL AND not_before <= ?2 AND cancel_requested = 0
                     ORDER BY priority DESC, created_at, id LIMIT 1"
                } else {
                    "SELECT id FROM executions INDEXED BY executions_ready
                     WHERE status = ?1 AND phase_execution IS NULL AND not_before <= ?2 AND cancel_requested = 0
                     ORDER BY priority DESC, created_at, id LIMIT 1"
                };
                let mut st = tx.prepare_cached(sql).map_err(e)?;
                for p in req.phases {
                    let status = p.from_status();
                    let id: Option<String> = st
                        .query_row(params![status, req.now_ms], |r| r.get(0))
                        .optional()
                        .map_err(e)?;
                    if let Some(id) = id {
                        found = Some((id, status));
                        break 'search;
                    }
                }
            }
            let Some((id, status)) = found else {
                return Ok(None);
            };
            let t = now();
            let row = tx
                .prepare_cached(&claim_sql)
                .and_then(|mut st| {
                    st.query_row(params![owner, until, t, id, status], |r| {
                        row_to_claim(r, &owner, ttl_ms)
                    })
                    .optional()
                })
                .map_err(e)?;
            self.claimed_event(tx, row.as_ref(), None)?;
            Ok(row)
        })
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
        let sql = format!(
            "UPDATE executions SET {CLAIM_SET}
             WHERE (id = ?4 OR arxiv_id = ?4 OR id = 'paper:' || ?4)
               AND status IN ('pending', 'prepped', 'analyzed') AND cancel_requested = 0
             RETURNING {CLAIM_RETURNING}"
        );
        self.write("claiming paper", |tx| {
            let row = tx
                .query_row(
                    &sql,
                    params![owner, lease_deadline_ms(now_ms(), ttl), now(), key],
                    |r| row_to_claim(r, owner, ttl_ms),
                )
                .optional()
                .map_err(|e| self.err("claiming paper", e))?;
            self.claimed_event(tx, row.as_ref(), Some("runner resume"))?;
            Ok(row)
        })
    }

    fn claimed_event(
        &self,
        tx: &Transaction<'_>,
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
    fn check_claim(&self, tx: &Transaction<'_>, c: &Claim) -> Result<(), StoreError> {
        let row: Option<(Option<String>, i64, String)> = tx
            .query_row(
                "SELECT owner_id, fencing_token, status FROM executions WHERE id = ?1",
                [&c.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
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

    /// Extend a claim by its TTL; fails with `LeaseLost` when it was taken.
    pub fn renew_claim(&self, c: &Claim) -> Result<(), StoreError> {
        self.write("renewing claim", |tx| {
            self.check_claim(tx, c)?;
            tx.execute(
                "UPDATE executions SET lease_until = ?2 WHERE id = ?1",
                params![
                    c.id,
                    now_ms().saturating_add(c.ttl_ms.clamp(0, ttl_ms(MAX_LEASE_TTL)))
                ],
            )
            .map_err(|e| self.err("renewing claim", e))?;
            Ok(())
        })
    }

    /// Record the machine execution driving the claimed phase (so a reaped
    /// claim resumes it instead of starting over).
    pub fn set_phase_execution(&self, c: &Claim, execution: &str) -> Result<(), StoreError> {
        self.write("recording phase execution", |tx| {
            self.check_claim(tx, c)?;
            tx.execute(
                "UPDATE executions SET phase_execution = ?2 WHERE id = ?1",
                params![c.id, execution],
            )
            .map_err(|e| self.err("recording phase execution", e))?;
            Ok(())
        })
    }

    /// True when an operator asked to cancel this paper.
    pub fn cancel_requested(&self, id: &str) -> Result<bool, StoreError> {
        let conn = self.conn()?;
        conn.query_row(
            "SELECT cancel_requested FROM executions WHERE id = ?1",
            [id],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|v| v.unwrap_or(0) != 0)
        .map_err(|e| self.err("reading paper", e))
    }

    /// The phase succeeded: store its result (large values as blobs, stored
    /// once) and move to the next stable status, releasing the claim.
    pub fn finish_phase(
        &self,
        c: &Claim,
        output: &Value,
        report_path: Option<&str>,
        duration_ms: i64,
    ) -> Result<(), StoreError> {
        let encoded = blobs::encode(output);
        let body = serde_json::to_string(&encoded.value)
            .map_err(|e| StoreError::Invalid(format!("cannot encode phase result: {e}")))?;
        let column = match c.phase {
            Phase::Prep => "prep_result",
            Phase::Expensive => "expensive_result",
            Phase::Wrap => "wrap_result",
        };
        self.write("finishing phase", |tx| {
            self.check_claim(tx, c)?;
            {
                let mut put = tx
                    .prepare_cached("INSERT OR IGNORE INTO blobs(hash, size, data) VALUES (?1, ?2, ?3)")
                    .map_err(|e| self.err("storing blobs", e))?;
                let mut reference = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO execution_blob_refs(execution_id, hash) VALUES (?1, ?2)",
                    )
                    .map_err(|e| self.err("storing blobs", e))?;
                for (hash, data) in &encoded.blobs {
                    put.execute(params![hash, data.len() as i64, data])
                        .map_err(|e| self.err("storing blobs", e))?;
                    reference
                        .execute(params![c.id, hash])
                        .map_err(|e| self.err("storing blobs", e))?;
                }
            }
            let t = now();
            let done_at = (c.phase == Phase::Wrap).then(|| t.clone());
            tx.execute(
                &format!(
                    "UPDATE executions SET status = ?2, {column} = ?3, report_path = COALESCE(?4, report_path),
                        owner_id = NULL, lease_until = NULL, phase_execution = NULL, not_before = 0,
                        last_error_kind = NULL, last_error_message = NULL, updated_at = ?5,
                        done_at = COALESCE(?6, done_at)
                     WHERE id = ?1"
                ),
                params![c.id, c.phase.done_status(), body, report_path, t, done_at],
            )
            .map_err(|e| self.err("finishing phase", e))?;
            self.event(
                tx,
                &c.id,
                Ev {
                    phase: Some(c.phase),
                    kind: "finished",
                    from: Some(c.phase.working_status()),
                    to: Some(c.phase.done_status()),
                    attempt: Some(c.attempt),
                    owner: Some(&c.owner),
                    duration_ms: Some(duration_ms),
                    ..Ev::default()
                },
            )?;
            Ok(())
        })
    }

    /// The phase failed. Retryable failures go back to the phase's stable
    /// status (after a growing delay) until `max_attempts`; others fail the
    /// paper. The phase's machine execution is dropped either way: the next
    /// attempt starts the phase afresh.
    pub fn fail_phase(
        &self,
        c: &Claim,
        kind: &str,
        message: &str,
        retryable: bool,
        policy: &RetryPolicy,
        duration_ms: i64,
    ) -> Result<FailOutcome, StoreError> {
        self.write("failing phase", |tx| {
            self.check_claim(tx, c)?;
            let outcome = if retryable && c.attempt < policy.max_attempts {
                FailOutcome::RetryLater {
                    not_before_ms: now_ms().saturating_add(policy.delay_ms(c.attempt)),
                }
            } else {
                FailOutcome::Failed
            };
            let (status, not_before) = match &outcome {
                FailOutcome::RetryLater { not_before_ms } => (c.phase.from_status(), *not_before_ms),
                FailOutcome::Failed => ("failed", 0),
            };
            tx.execute(
                "UPDATE executions SET status = ?2, not_before = ?3, owner_id = NULL, lease_until = NULL,
                    phase_execution = NULL, last_error_kind = ?4, last_error_message = ?5, updated_at = ?6
                 WHERE id = ?1",
                params![c.id, status, not_before, kind, message, now()],
            )
            .map_err(|e| self.err("failing phase", e))?;
            self.event(
                tx,
                &c.id,
                Ev {
                    phase: Some(c.phase),
                    kind: if status == "failed" { "failed" } else { "retry_later" },
                    from: Some(c.phase.working_status()),
                    to: Some(status),
                    attempt: Some(c.attempt),
                    owner: Some(&c.owner),
                    error_kind: Some(kind),
                    message: Some(message),
                    duration_ms: Some(duration_ms),
                    ..Ev::default()
                },
            )?;
            Ok(outcome)
        })
    }

    /// Give a claim back without counting an attempt (drain on shutdown, or
    /// a cancel): the row returns to its stable status at once and keeps its
    /// machine execution, so the next claim resumes from the checkpoint.
    pub fn release_claim(&self, c: &Claim, why: &str) -> Result<(), StoreError> {
        let col = c.phase.attempts_column();
        self.write("releasing claim", |tx| {
            self.check_claim(tx, c)?;
            tx.execute(
                &format!(
                    "UPDATE executions SET status = ?2, owner_id = NULL, lease_until = NULL,
                        {col} = MAX({col} - 1, 0), updated_at = ?3 WHERE id = ?1"
                ),
                params![c.id, c.phase.from_status(), now()],
            )
            .map_err(|e| self.err("releasing claim", e))?;
            self.event(
                tx,
                &c.id,
                Ev {
                    phase: Some(c.phase),
                    kind: "released",
                    from: Some(c.phase.working_status()),
                    to: Some(c.phase.from_status()),
                    attempt: Some(c.attempt),
                    owner: Some(&c.owner),
                    message: Some(why),
                    ..Ev::default()
                },
            )?;
            Ok(())
        })
    }

    /// Roll back every row whose claim expired (its owner died or hung):
    /// to the last stable status with a growing delay, or `failed` after
    /// `max_attempts`. A live claim is never touched.
    /// `is_dead(owner)` lets a claim whose owner process is known to be gone
    /// (same host, pid no longer exists) be reaped before its TTL.
    pub fn reap(
        &self,
        now: i64,
        policy: &RetryPolicy,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<Vec<Reaped>, StoreError> {
        self.write("reaping expired claims", |tx| {
            let working: Vec<WorkingRow> = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT id, status, owner_id, attempts_prep, attempts_expensive, attempts_wrap, lease_until FROM executions
                         WHERE status IN ('prepping', 'analyzing', 'wrapping')",
                    )
                    .map_err(|e| self.err("reaping", e))?;
                let rows = st
                    .query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                    })
                    .map_err(|e| self.err("reaping", e))?;
                rows.collect::<Result<_, _>>()
                    .map_err(|e| self.err("reaping", e))?
            };
            let mut out = Vec::new();
            for (id, status, owner, ap, ae, aw, until) in working {
                let expired = until.is_none_or(|u| u < now);
                if !expired && !owner.as_deref().is_some_and(&is_dead) {
                    continue;
                }
                let Some(phase) = Phase::of_working_status(&status) else {
                    continue;
                };
                let attempt = match phase {
                    Phase::Prep => ap,
                    Phase::Expensive => ae,
                    Phase::Wrap => aw,
                };
                let outcome = if attempt < policy.max_attempts {
                    FailOutcome::RetryLater {
                        not_before_ms: now.saturating_add(policy.reap_delay_ms(attempt)),
                    }
                } else {
                    FailOutcome::Failed
                };
                let message = format!(
                    "claim of {} expired (attempt {attempt} of {})",
                    owner.as_deref().unwrap_or("unknown owner"),
                    policy.max_attempts
                );
                let (to, nb, kind, msg) = match &outcome {
                    FailOutcome::RetryLater { not_before_ms } => {
                        (phase.from_status(), *not_before_ms, None, None)
                    }
                    FailOutcome::Failed => ("failed", 0, Some("lease_expired"), Some(message.as_str())),
                };
                tx.execute(
                    "UPDATE executions SET status = ?2, not_before = ?3, owner_id = NULL, lease_until = NULL,
                        last_error_kind = COALESCE(?4, last_error_kind), last_error_message = COALESCE(?5, last_error_message),
                        updated_at = ?6
                     WHERE id = ?1",
                    params![id, to, nb, kind, msg, super::checkpoints::now()],
                )
                .map_err(|e| self.err("reaping", e))?;
                self.event(
                    tx,
                    &id,
                    Ev {
                        phase: Some(phase),
                        kind: "reaped",
                        from: Some(&status),
                        to: Some(to),
                        attempt: Some(attempt),
                        owner: owner.as_deref(),
                        message: Some(&message),
                        ..Ev::default()
                    },
                )?;
                out.push(Reaped {
                    id,
                    phase,
                    owner,
                    outcome,
                });
            }
            Ok(out)
        })
    }

    /// The decoded results of the phases a paper finished.
    pub fn phase_results(&self, id: &str) -> Result<Map<String, Value>, StoreError> {
        let conn = self.conn()?;
        let row: Option<(Option<String>, Option<String>, Option<String>)> = conn
            .query_row(
                "SELECT prep_result, expensive_result, wrap_result FROM executions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
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
        let conn = self.conn()?;
        conn.query_row(
            &format!("SELECT {PAPER_COLUMNS} FROM executions WHERE id = ?1 OR arxiv_id = ?1 OR id = 'paper:' || ?1"),
            [id_or_arxiv.trim()],
            row_to_paper,
        )
        .optional()
        .map_err(|e| self.err("reading paper", e))
    }

    /// Papers, optionally only those with one of `statuses`.
    pub fn papers(&self, statuses: &[&str]) -> Result<Vec<PaperRow>, StoreError> {
        let conn = self.conn()?;
        let filter = if statuses.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = statuses
                .iter()
                .filter(|s| super::phase::STATUSES.contains(s))
                .map(|s| format!("'{s}'"))
                .collect();
            format!("WHERE status IN ({})", list.join(", "))
        };
        let mut st = conn
            .prepare(&format!(
                "SELECT {PAPER_COLUMNS} FROM executions {filter} ORDER BY created_at, id"
            ))
            .map_err(|e| self.err("listing papers", e))?;
        let rows = st
            .query_map([], row_to_paper)
            .map_err(|e| self.err("listing papers", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.err("listing papers", e))
    }

    /// Count of papers per status (every status present, zeros included).
    pub fn status_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare_cached("SELECT status, COUNT(*) FROM executions GROUP BY status")
            .map_err(|e| self.err("counting papers", e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err("counting papers", e))?;
        let mut map: HashMap<String, u64> = HashMap::new();
        for r in rows {
            let (s, n) = r.map_err(|e| self.err("counting papers", e))?;
            map.insert(s, n as u64);
        }
        Ok(super::phase::STATUSES
            .iter()
            .map(|s| (s.to_string(), map.get(*s).copied().unwrap_or(0)))
            .collect())
    }

    /// Papers claimable now, per phase (ignoring budget and breakers).
    pub fn claimable_counts(&self, now: i64) -> Result<Vec<(Phase, u64)>, StoreError> {
        let conn = self.conn()?;
        let mut out = Vec::new();
        for p in Phase::ALL {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM executions WHERE status = ?1 AND not_before <= ?2 AND cancel_requested = 0",
                    params![p.from_status(), now],
                    |r| r.get(0),
                )
                .map_err(|e| self.err("counting claimable papers", e))?;
            out.push((p, n as u64));
        }
        Ok(out)
    }

    /// The timeline of a paper, oldest first.
    pub fn paper_events(&self, id: &str) -> Result<Vec<PaperEvent>, StoreError> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare_cached(
                "SELECT at, phase, kind, from_status, to_status, attempt, machine_execution, owner_id, error_kind, message, duration_ms
                 FROM execution_events WHERE execution_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err("reading timeline", e))?;
        let rows = st
            .query_map([id], |r| {
                Ok(PaperEvent {
                    at: r.get(0)?,
                    phase: r.get(1)?,
                    kind: r.get(2)?,
                    from_status: r.get(3)?,
                    to_status: r.get(4)?,
                    attempt: r.get(5)?,
                    machine_execution: r.get(6)?,
                    owner_id: r.get(7)?,
                    error_kind: r.get(8)?,
                    message: r.get(9)?,
                    duration_ms: r.get(10)?,
                })
            })
            .map_err(|e| self.err("reading timeline", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.err("reading timeline", e))
    }

    /// Operator: put failed papers (or the given ones) back in the queue at
    /// the stable status before the phase that failed, with that phase's
    /// attempts reset. Returns (id, from, to) per changed paper.
    pub fn retry_papers(
        &self,
        ids: &[String],
        only_phase: Option<Phase>,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        self.write("retrying papers", |tx| {
            let candidates: Vec<(String, String)> = {
                let mut st = tx
                    .prepare("SELECT id, status FROM executions WHERE status = 'failed' OR cancel_requested = 1")
                    .map_err(|e| self.err("retrying papers", e))?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(|e| self.err("retrying papers", e))?;
                rows.collect::<Result<_, _>>()
                    .map_err(|e| self.err("retrying papers", e))?
            };
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
                let to = if status == "failed" {
                    phase.from_status().to_string()
                } else {
                    status.clone()
                };
                tx.execute(
                    &format!(
                        "UPDATE executions SET status = ?2, {col} = 0, not_before = 0, cancel_requested = 0,
                            phase_execution = NULL, updated_at = ?3 WHERE id = ?1"
                    ),
                    params![id, to, now()],
                )
                .map_err(|e| self.err("retrying papers", e))?;
                self.event(
                    tx,
                    &id,
                    Ev {
                        phase: Some(phase),
                        kind: "retried",
                        from: Some(&status),
                        to: Some(&to),
                        ..Ev::default()
                    },
                )?;
                out.push((id, status, to));
            }
            Ok(out)
        })
    }

    /// The phase a failed paper failed in (from its timeline).
    fn failed_phase(&self, tx: &Transaction<'_>, id: &str) -> Result<Phase, StoreError> {
        let phase: Option<String> = tx
            .query_row(
                "SELECT phase FROM execution_events WHERE execution_id = ?1 AND phase IS NOT NULL ORDER BY id DESC LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err("reading timeline", e))?
            .flatten();
        Ok(phase
            .as_deref()
            .and_then(Phase::parse)
            .unwrap_or(Phase::Prep))
    }

    /// Operator: stop claiming these papers; an in-flight phase stops at its
    /// next checkpoint. Returns (id, status) per paper marked.
    pub fn cancel_papers(&self, ids: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        self.write("cancelling papers", |tx| {
            let mut out = Vec::new();
            for x in ids {
                let row: Option<(String, String)> = tx
                    .query_row(
                        "SELECT id, status FROM executions WHERE id = ?1 OR arxiv_id = ?1 OR id = 'paper:' || ?1",
                        [x],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(|e| self.err("cancelling papers", e))?;
                let Some((id, status)) = row else {
                    return Err(StoreError::NotFound(format!("no paper {x} in the queue")));
                };
                tx.execute(
                    "UPDATE executions SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1",
                    params![id, now()],
                )
                .map_err(|e| self.err("cancelling papers", e))?;
                self.event(
                    tx,
                    &id,
                    Ev {
                        kind: "cancelled",
                        from: Some(&status),
                        ..Ev::default()
                    },
                )?;
                out.push((id, status));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("q.db"), &StoreOptions::default()).unwrap();
        (dir, s)
    }

    fn add(s: &Store, id: &str, prio: i64) {
        s.add_paper(&NewPaper {
            arxiv_id: id.into(),
            priority: prio,
            source: "test".into(),
            ..NewPaper::default()
        })
        .unwrap();
    }

    fn req<'a>(owner: &'a str, phases: &'a [Phase]) -> ClaimRequest<'a> {
        ClaimRequest {
            owner,
            ttl: Duration::from_secs(60),
            phases,
            now_ms: now_ms(),
            resumable_only: false,
        }
    }

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 2,
        base: Duration::from_secs(10),
        max: Duration::from_secs(100),
    };

    #[test]
    fn an_absurd_ttl_cannot_wrap_the_claim_into_the_past() {
        // 9.3e15 s once became a negative lease_until, and any other
        // daemon's reaper rolled the live claim back.
        let (_d, s) = store();
        add(&s, "a", 0);
        let now = now_ms();
        for ttl in [Duration::from_secs(9_300_000_000_000_000), Duration::MAX] {
            let c = s
                .claim(&ClaimRequest {
                    ttl,
                    ..req("first:1:0", &[Phase::Prep])
                })
                .unwrap()
                .unwrap();
            assert_eq!(c.ttl_ms, 86_400_000, "cut to MAX_LEASE_TTL");
            let until = s.paper("a").unwrap().unwrap().lease_until_ms.unwrap();
            assert!(
                until > now && until <= now_ms() + 86_400_000,
                "lease_until {until}"
            );
            // Another daemon's reaper leaves the live claim alone.
            assert!(s.reap(now_ms(), &POLICY, |_| false).unwrap().is_empty());
            s.renew_claim(&c).unwrap();
            assert!(s.paper("a").unwrap().unwrap().lease_until_ms.unwrap() > now);
            s.release_claim(&c, "test").unwrap();
        }
        // An absurd "now" saturates instead of overflowing.
        let c = s
            .claim(&ClaimRequest {
                ttl: Duration::MAX,
                now_ms: i64::MAX - 5,
                ..req("first:1:0", &[Phase::Prep])
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            s.paper("a").unwrap().unwrap().lease_until_ms,
            Some(i64::MAX)
        );
        s.release_claim(&c, "test").unwrap();
        let c = s
            .claim_paper("a", "first:1:0", Duration::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(c.ttl_ms, 86_400_000);
    }

    #[test]
    fn retry_delays_saturate() {
        let p = RetryPolicy {
            max_attempts: 3,
            base: Duration::MAX,
            max: Duration::MAX,
        };
        assert_eq!(p.delay_ms(u32::MAX), i64::MAX);
        assert_eq!(p.reap_delay_ms(2), i64::MAX);
        assert_eq!(now_ms().saturating_add(p.delay_ms(5)), i64::MAX);
    }

    #[test]
    fn adding_twice_is_a_noop() {
        let (_d, s) = store();
        add(&s, "2401.00001", 0);
        let again = s
            .add_paper(&NewPaper {
                arxiv_id: "2401.00001".into(),
                ..NewPaper::default()
            })
            .unwrap();
        assert!(matches!(again, AddOutcome::Exists { ref status, .. } if status == "pending"));
        assert_eq!(s.papers(&[]).unwrap().len(), 1);
    }

    #[test]
    fn claims_follow_phase_order_then_priority() {
        let (_d, s) = store();
        add(&s, "a", 0);
        add(&s, "b", 5);
        let all = [Phase::Expensive, Phase::Wrap, Phase::Prep];
        let c = s.claim(&req("o", &all)).unwrap().unwrap();
        assert_eq!(
            (c.arxiv_id.as_str(), c.phase, c.attempt),
            ("b", Phase::Prep, 1)
        );
        s.finish_phase(&c, &json!({"paper_text": "x".repeat(10_000)}), None, 1)
            .unwrap();
        // b is now prepped: expensive beats a's prep.
        let c2 = s.claim(&req("o", &all)).unwrap().unwrap();
        assert_eq!((c2.arxiv_id.as_str(), c2.phase), ("b", Phase::Expensive));
        let c3 = s.claim(&req("o", &all)).unwrap().unwrap();
        assert_eq!((c3.arxiv_id.as_str(), c3.phase), ("a", Phase::Prep));
        assert!(s.claim(&req("o", &all)).unwrap().is_none());
        let results = s.phase_results(&c.id).unwrap();
        assert_eq!(
            results["prep"]["paper_text"].as_str().unwrap().len(),
            10_000
        );
    }

    #[test]
    fn a_stale_claim_cannot_write_after_reap_and_reclaim() {
        let (_d, s) = store();
        add(&s, "a", 0);
        let old = s.claim(&req("old", &[Phase::Prep])).unwrap().unwrap();
        // Its claim expires; the reaper rolls it back; someone else claims.
        let reaped = s.reap(now_ms() + 120_000, &POLICY, |_| false).unwrap();
        assert_eq!(reaped.len(), 1);
        let mut r = req("new", &[Phase::Prep]);
        r.now_ms = now_ms() + 1_000_000;
        let new = s.claim(&r).unwrap().unwrap();
        assert_eq!(new.attempt, 2);
        assert!(new.token > old.token);
        let err = s.finish_phase(&old, &json!({}), None, 1).unwrap_err();
        assert!(
            matches!(err, StoreError::LeaseLost { ref owner, .. } if owner == "new"),
            "{err}"
        );
        s.finish_phase(&new, &json!({}), None, 1).unwrap();
        assert_eq!(s.paper("a").unwrap().unwrap().status, "prepped");
    }

    #[test]
    fn a_live_claim_is_never_reaped_and_attempts_run_out() {
        let (_d, s) = store();
        add(&s, "a", 0);
        let c = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
        assert!(s.reap(now_ms(), &POLICY, |_| false).unwrap().is_empty());
        let out = s
            .fail_phase(&c, "timeout", "slow", true, &POLICY, 5)
            .unwrap();
        let FailOutcome::RetryLater { not_before_ms } = out else {
            panic!("{out:?}")
        };
        assert!(not_before_ms > now_ms());
        // Not claimable before not_before.
        assert!(s.claim(&req("o", &[Phase::Prep])).unwrap().is_none());
        let mut r = req("o", &[Phase::Prep]);
        r.now_ms = not_before_ms + 1;
        let c2 = s.claim(&r).unwrap().unwrap();
        assert_eq!(c2.attempt, 2);
        let out = s
            .fail_phase(&c2, "timeout", "slow", true, &POLICY, 5)
            .unwrap();
        assert_eq!(out, FailOutcome::Failed);
        let row = s.paper("a").unwrap().unwrap();
        assert_eq!(row.status, "failed");
        assert_eq!(row.last_error_kind.as_deref(), Some("timeout"));
        // retry puts it back with fresh attempts.
        let changed = s.retry_papers(&[], None).unwrap();
        assert_eq!(
            changed,
            vec![(row.id.clone(), "failed".into(), "pending".into())]
        );
        assert_eq!(s.paper("a").unwrap().unwrap().attempts_prep, 0);
    }

    #[test]
    fn released_claims_resume_first_without_counting_an_attempt() {
        let (_d, s) = store();
        add(&s, "a", 0);
        add(&s, "b", 9);
        let c = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
        assert_eq!(c.arxiv_id, "b");
        s.set_phase_execution(&c, "paper:b/prep/1").unwrap();
        s.release_claim(&c, "draining").unwrap();
        add(&s, "c", 100);
        let again = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
        assert_eq!(again.arxiv_id, "b", "resumable work first");
        assert_eq!(again.attempt, 1);
        assert_eq!(again.phase_execution.as_deref(), Some("paper:b/prep/1"));
    }

    #[test]
    fn cancelled_papers_are_not_claimed() {
        let (_d, s) = store();
        add(&s, "a", 0);
        s.cancel_papers(&["a".into()]).unwrap();
        assert!(s.claim(&req("o", &[Phase::Prep])).unwrap().is_none());
        assert!(s.cancel_requested("paper:a").unwrap());
        s.retry_papers(&["a".into()], None).unwrap();
        assert!(s.claim(&req("o", &[Phase::Prep])).unwrap().is_some());
    }
}
