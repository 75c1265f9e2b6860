//! The paper queue (`executions`): one paper per row, moving through the
//! statuses of [`PaperStatus`] one phase at a time, with its timeline in
//! `execution_events`.
//!
//! Split by job, because each job has its own invariant:
//! - [`add`]: queueing a paper (idempotent per arXiv id);
//! - [`claim`]: fenced claims — taking, renewing and checking them;
//! - [`settle`]: ending a claim (finished, failed, given back);
//! - [`reaper`]: rolling back claims whose owner died or hung;
//! - [`read`]: read models (rows, counts, results, timelines);
//! - [`operator`]: `runner retry` / `runner cancel`.
//!
//! A claim is one `UPDATE … RETURNING` inside a `BEGIN IMMEDIATE`
//! transaction: it moves the row to its working status and takes the claim
//! (owner, lease_until, a new fencing token) at once, so two processes can
//! never both get the same paper. Every later write for that claim checks
//! owner and token in the same statement; a process whose claim was reaped
//! and re-taken can no longer move the row.
//!
//! Every time comparison (claimability, lease expiry, retry delays) takes
//! "now" from the store's injected clock ([`Store::now_ms`]).

mod add;
mod claim;
mod operator;
pub(in crate::store) mod read;
mod reaper;
mod settle;
#[cfg(test)]
mod tests;
mod wait;

use super::db::Store;
use super::error::StoreError;
use super::phase::{PaperStatus, Phase};
use crate::store::sql::{Db, Row};
use rusqlite::params;
use serde::Serialize;
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
    /// The paper was already queued; nothing changed. `status` is the
    /// queued row's status as text (also filled by look-ups outside the
    /// queue module, e.g. of another version of the paper).
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

/// What the scheduler asks for. "Now" (for `not_before`, and the lease
/// deadline) is the store's clock, not the caller's.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub owner: &'a str,
    pub ttl: Duration,
    /// Phases that may be claimed, in preference order.
    pub phases: &'a [Phase],
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
    pub status: PaperStatus,
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

/// The wall clock in Unix milliseconds, for callers outside the store
/// (logs, in-memory stats). Store queries never use it: they take "now"
/// from the injected clock ([`Store::now_ms`]).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The attempt count of the phase a row's attempt columns belong to, read
/// by column name.
fn attempts_of(r: &Row<'_, '_>, phase: Phase) -> rusqlite::Result<u32> {
    r.get(phase.attempts_column())
}

/// A status column that must be a working status (the row is claimed):
/// its phase, or a conversion error naming the status.
fn working_phase_of(r: &Row<'_, '_>, column: &str) -> rusqlite::Result<(PaperStatus, Phase)> {
    let status: PaperStatus = r.get(column)?;
    match status.working_phase() {
        Some(p) => Ok((status, p)),
        None => Err(rusqlite::Error::FromSqlConversionFailure(
            r.column_index(column)?,
            rusqlite::types::Type::Text,
            format!("paper status {status} is not a working status").into(),
        )),
    }
}

/// Fields of one timeline event.
#[derive(Default)]
struct Ev<'a> {
    phase: Option<Phase>,
    kind: &'a str,
    from: Option<PaperStatus>,
    to: Option<PaperStatus>,
    attempt: Option<u32>,
    machine_execution: Option<&'a str>,
    owner: Option<&'a str>,
    error_kind: Option<&'a str>,
    message: Option<&'a str>,
    duration_ms: Option<i64>,
}

impl Store {
    /// Append one line to a paper's timeline, inside the write that made
    /// the change (so the timeline never disagrees with the row).
    fn event(&self, tx: &Db<'_>, id: &str, ev: Ev<'_>) -> Result<(), StoreError> {
        tx.exec(
            "INSERT INTO execution_events(execution_id, at, phase, kind, from_status, to_status, attempt, machine_execution, owner_id, error_kind, message, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                id,
                self.now_text(),
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
            ],
        )
        .map_err(|e| self.err("recording event", e))?;
        Ok(())
    }
}
