//! `runner resume ID`: drive one named paper through its remaining phases
//! in the foreground, with the scheduler's own task code (same fenced
//! claims, checkpoints, retries and settlement), but without the queue's
//! choice: only this paper is claimed, and its retry delay is not waited
//! for (an operator asked for it now).

use super::phase::Phase;
use super::scheduler::Scheduler;
use super::task::{run_claim, TaskOutcome, TaskReport};
use crate::store::{PaperRow, PaperStatus, StoreError};
use tokio_util::sync::CancellationToken;

/// Why a single-paper run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SingleError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("no paper {0} in the queue")]
    NotFound(String),
    /// The paper is being worked on by someone else (or a claim of ours
    /// that has not expired yet).
    #[error("paper {id} is {status}, claimed by {owner}; wait for it or for the claim to expire")]
    Busy {
        id: String,
        status: String,
        owner: String,
    },
    #[error("paper {id} was cancelled; `runner retry {id}` puts it back first")]
    Cancelled { id: String },
    #[error("paper {id} has failed ({why}); `runner retry {id}` puts it back first")]
    Failed { id: String, why: String },
    #[error("no machine loaded for phase {0}")]
    NoMachine(Phase),
}

/// What [`run_paper`] did.
#[derive(Debug, Clone)]
pub struct SingleRun {
    /// The paper as it is now.
    pub paper: PaperRow,
    /// One report per phase attempted, in order.
    pub phases: Vec<TaskReport>,
}

async fn paper(s: &Scheduler, id: &str) -> Result<PaperRow, SingleError> {
    let key = id.to_string();
    s.env
        .store
        .run(move |st| st.paper(&key))
        .await?
        .ok_or_else(|| SingleError::NotFound(id.to_string()))
}

/// Claim and run the paper's next phase until it is done, a phase does
/// not finish (failed, retry later, released, lost — reported, not an
/// error), or `stop` is cancelled (the running phase is given back and
/// resumes from its checkpoint later). `on_phase` sees each phase's report
/// as it ends.
pub async fn run_paper(
    s: &Scheduler,
    id: &str,
    stop: CancellationToken,
    mut on_phase: impl FnMut(&TaskReport),
) -> Result<SingleRun, SingleError> {
    let mut phases = Vec::new();
    loop {
        let row = paper(s, id).await?;
        if row.status == PaperStatus::Done || stop.is_cancelled() {
            return Ok(SingleRun { paper: row, phases });
        }
        if row.cancel_requested {
            return Err(SingleError::Cancelled { id: row.id });
        }
        if row.status == PaperStatus::Failed {
            return Err(SingleError::Failed {
                why: row
                    .last_error_kind
                    .clone()
                    .unwrap_or_else(|| "no error recorded".into()),
                id: row.id,
            });
        }
        let (key, owner, ttl) = (row.id.clone(), s.env.owner.clone(), s.env.lease_ttl);
        let claim = s
            .env
            .store
            .run(move |st| st.claim_paper(&key, &owner, ttl))
            .await?;
        let Some(claim) = claim else {
            // Not in a stable status: someone holds it — or it changed
            // under us (finished, cancelled), which the next round sees.
            let now = paper(s, id).await?;
            if now.status.working_phase().is_some() {
                return Err(SingleError::Busy {
                    owner: now.owner_id.clone().unwrap_or_else(|| "nobody".into()),
                    id: now.id,
                    status: now.status.to_string(),
                });
            }
            continue;
        };
        let Some(machine) = s.machines.get(&claim.phase).cloned() else {
            // Give the claim back at once rather than hold it until it
            // expires (nothing could ever run it here).
            let c = claim.clone();
            let released = s
                .env
                .store
                .run(move |st| st.release_claim(&c, "no machine loaded for this phase"))
                .await;
            if released.is_err() {
                tracing::warn!(paper = %claim.arxiv_id, "cannot give the claim back; it will expire");
            }
            return Err(SingleError::NoMachine(claim.phase));
        };
        let report = run_claim(s.env.clone(), machine, claim, stop.clone()).await;
        on_phase(&report);
        let finished = report.outcome == TaskOutcome::Finished;
        phases.push(report);
        if !finished {
            let row = paper(s, id).await?;
            return Ok(SingleRun { paper: row, phases });
        }
    }
}
