//! Ending a claim: the phase finished, failed, or is given back. Why its
//! own module: these are the only writes that move a claimed row out of
//! its working status, each checks the claim first (a stale claim cannot
//! settle a row someone else holds now), and each releases the claim in the
//! same statement.

use super::{Claim, Ev, FailOutcome, RetryPolicy};
use crate::store::blobs;
use crate::store::db::Store;
use crate::store::error::StoreError;
use crate::store::phase::{PaperStatus, Phase};
use rusqlite::params;
use serde_json::Value;

impl Store {
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
        self.write_locked("finishing phase", |tx| {
            self.check_claim(tx, c)?;
            for (hash, data) in &encoded.blobs {
                tx.exec(
                    "INSERT INTO blobs(hash, size, data) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![hash, data.len() as i64, data],
                )
                .map_err(|e| self.err("storing blobs", e))?;
                tx.exec(
                    "INSERT INTO execution_blob_refs(execution_id, hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![c.id, hash],
                )
                .map_err(|e| self.err("storing blobs", e))?;
            }
            let t = self.now_text();
            let done_at = (c.phase == Phase::Wrap).then(|| t.clone());
            tx.exec(
                &format!(
                    "UPDATE executions SET status = ?2, {column} = ?3, report_path = COALESCE(?4, report_path),
                        owner_id = NULL, lease_until = NULL, phase_execution = NULL, not_before = 0,
                        last_error_kind = NULL, last_error_message = NULL, updated_at = ?5,
                        done_at = COALESCE(?6, done_at)
                     WHERE id = ?1"
                ),
                params![c.id, c.phase.done_status(), body, report_path, t, done_at])
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
            self.notify_work(tx)?;
            Ok(())
        })
    }

    /// The phase failed. Retryable failures go back to the phase's stable
    /// status (due again after a growing delay, from the store's clock)
    /// until `max_attempts`; others fail the paper. The phase's machine
    /// execution is dropped either way: the next attempt starts the phase
    /// afresh.
    pub fn fail_phase(
        &self,
        c: &Claim,
        kind: &str,
        message: &str,
        retryable: bool,
        policy: &RetryPolicy,
        duration_ms: i64,
    ) -> Result<FailOutcome, StoreError> {
        self.write_locked("failing phase", |tx| {
            self.check_claim(tx, c)?;
            let outcome = if retryable && c.attempt < policy.max_attempts {
                FailOutcome::RetryLater {
                    not_before_ms: self.now_ms().saturating_add(policy.delay_ms(c.attempt)),
                }
            } else {
                FailOutcome::Failed
            };
            let (status, not_before, event) = match &outcome {
                FailOutcome::RetryLater { not_before_ms } => {
                    (c.phase.from_status(), *not_before_ms, "retry_later")
                }
                FailOutcome::Failed => (PaperStatus::Failed, 0, "failed"),
            };
            tx.exec(
                "UPDATE executions SET status = ?2, not_before = ?3, owner_id = NULL, lease_until = NULL,
                    phase_execution = NULL, last_error_kind = ?4, last_error_message = ?5, updated_at = ?6
                 WHERE id = ?1",
                params![c.id, status, not_before, kind, message, self.now_text()])
            .map_err(|e| self.err("failing phase", e))?;
            self.event(
                tx,
                &c.id,
                Ev {
                    phase: Some(c.phase),
                    kind: event,
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
        self.give_back(c, None, "released", why)
    }

    /// End claim `c` without counting its attempt: back to its stable
    /// status, keeping its machine execution; `not_before` (unix ms) when
    /// it must not be claimed again before then (a `wait_for` deadline).
    /// One timeline event of `kind`.
    pub(super) fn give_back(
        &self,
        c: &Claim,
        not_before: Option<i64>,
        kind: &str,
        why: &str,
    ) -> Result<(), StoreError> {
        let col = c.phase.attempts_column();
        let what = format!("giving back claim ({kind})");
        self.write_locked(&what, |tx| {
            self.check_claim(tx, c)?;
            tx.exec(
                &format!(
                    "UPDATE executions SET status = ?2, owner_id = NULL, lease_until = NULL,
                        {col} = CASE WHEN {col} > 0 THEN {col} - 1 ELSE 0 END,
                        not_before = COALESCE(?4, not_before), updated_at = ?3 WHERE id = ?1"
                ),
                params![c.id, c.phase.from_status(), self.now_text(), not_before],
            )
            .map_err(|e| self.err(&what, e))?;
            self.event(
                tx,
                &c.id,
                Ev {
                    phase: Some(c.phase),
                    kind,
                    from: Some(c.phase.working_status()),
                    to: Some(c.phase.from_status()),
                    attempt: Some(c.attempt),
                    owner: Some(&c.owner),
                    message: Some(why),
                    ..Ev::default()
                },
            )?;
            self.notify_work(tx)?;
            Ok(())
        })
    }
}
