//! Operator commands on queued papers: `runner retry`, `runner cancel`,
//! `runner resume`. Each prints what it changed, one line per paper
//! (`paper:x failed → prepped`), or a JSON document with `--json`.

use super::exit::{CliResult, Code};
use super::status::{open_existing, Failure};
use clap::Args;
use paper_runner::runner::build::{build, RunOptions};
use paper_runner::runner::scheduler::RunMode;
use paper_runner::runner::single::{run_paper, SingleError};
use paper_runner::runner::task::{TaskOutcome, TaskReport};
use paper_runner::store::{PaperStatus, Phase, StoreError};
use serde_json::{json, Value};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug)]
pub struct RetryArgs {
    /// Papers to put back (queue ids or arXiv ids); they must be failed or cancelled.
    #[arg(required_unless_present = "failed", conflicts_with = "failed")]
    pub ids: Vec<String>,
    /// Every failed paper (cancelled ones are retried by naming them).
    #[arg(long)]
    pub failed: bool,
    /// Only papers that failed in this phase (prep, expensive, wrap).
    #[arg(long, value_parser = parse_phase)]
    pub phase: Option<Phase>,
    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
    /// SQLite database (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Papers to cancel (queue ids or arXiv ids).
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
    /// SQLite database (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RequeueArgs {
    /// Papers to run again from the start (queue ids or arXiv ids).
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
    /// SQLite database or PostgreSQL URL (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The paper (queue id or arXiv id).
    pub id: String,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    /// SQLite database (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Directory holding prep.yml, expensive.yml and wrap.yml.
    #[arg(long)]
    pub machines: Option<PathBuf>,
    /// Profile catalog (default: the nearest profiles.yml of the machines).
    #[arg(long)]
    pub profiles: Option<PathBuf>,
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    Phase::parse(s).ok_or_else(|| format!("unknown phase {s:?} (prep, expensive, wrap)"))
}

fn print_json(v: &Value) -> Result<(), Failure> {
    serde_json::to_string_pretty(v)
        .map(|s| println!("{s}"))
        .map_err(|e| Failure::new(Code::Failure, format!("cannot print JSON: {e}")))
}

pub fn retry(config: Option<PathBuf>, a: RetryArgs) -> CliResult {
    let (_, store) = open_existing(config.as_deref(), a.db.as_deref())?;
    // Name unknown ids and papers with nothing to retry, instead of
    // silently doing nothing for them.
    let mut skipped = Vec::new();
    let mut ids = Vec::new();
    for id in &a.ids {
        let Some(row) = store
            .paper(id)
            .map_err(|e| Failure::new(Code::Failure, e))?
        else {
            return Err(Failure::new(
                Code::Usage,
                format!("no paper {id} in the queue"),
            ));
        };
        if row.status == PaperStatus::Failed || row.cancel_requested {
            ids.push(row.id);
        } else {
            skipped.push((row.id, row.status));
        }
    }
    if a.failed {
        // Only failed papers: the store's "all" would also lift cancels.
        ids = store
            .papers(&[PaperStatus::Failed])
            .map_err(|e| Failure::new(Code::Failure, e))?
            .into_iter()
            .map(|p| p.id)
            .collect();
    }
    let changed = if !ids.is_empty() {
        store
            .retry_papers(&ids, a.phase)
            .map_err(|e| Failure::new(Code::Failure, e))?
    } else {
        Vec::new()
    };
    if a.json {
        print_json(&json!({
            "changed": changed.iter().map(|(id, from, to)| json!({
                "id": id,
                "from": from,
                "to": to,
                "cancel_lifted": *from != PaperStatus::Failed,
            })).collect::<Vec<_>>(),
            "skipped": skipped.iter().map(|(id, status)| json!({"id": id, "status": status, "why": "not failed or cancelled"})).collect::<Vec<_>>(),
        }))?;
    } else {
        for (id, from, to) in &changed {
            // Anything but a failed paper was retried because it was
            // cancelled: its status stays, the cancel is lifted.
            if *from == PaperStatus::Failed {
                println!("{id} {from} → {to}");
            } else {
                println!("{id} {from} (cancelled) → {to}");
            }
        }
        for (id, status) in &skipped {
            println!("{id} is {status}: not failed or cancelled, nothing to retry");
        }
        if changed.is_empty() && skipped.is_empty() {
            println!("nothing to retry");
        }
    }
    Ok(())
}

pub fn cancel(config: Option<PathBuf>, a: CancelArgs) -> CliResult {
    let (_, store) = open_existing(config.as_deref(), a.db.as_deref())?;
    let marked = match store.cancel_papers(&a.ids) {
        Ok(m) => m,
        Err(e @ StoreError::NotFound(_)) => return Err(Failure::new(Code::Usage, e)),
        Err(e) => return Err(Failure::new(Code::Failure, e)),
    };
    if a.json {
        print_json(&json!({
            "cancelled": marked.iter().map(|(id, status)| json!({
                "id": id,
                "status": status,
                "cancel_requested": true,
                "in_flight": status.working_phase().is_some(),
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for (id, status) in &marked {
            let note = if status.working_phase().is_some() {
                "the running phase stops at its next check and is given back"
            } else {
                "not claimed again until retried"
            };
            println!("{id} {status} → cancelled ({note})");
        }
    }
    Ok(())
}

/// `runner requeue`: every phase again from the start (the dashboard's
/// Re-queue). Refused, changing nothing, while a runner works on a paper.
pub fn requeue(config: Option<PathBuf>, a: RequeueArgs) -> CliResult {
    let (_, store) = open_existing(config.as_deref(), a.db.as_deref())?;
    let moved = match store.requeue_papers(&a.ids) {
        Ok(m) => m,
        Err(e @ (StoreError::NotFound(_) | StoreError::Invalid(_))) => {
            return Err(Failure::new(Code::Usage, e))
        }
        Err(e) => return Err(Failure::new(Code::Failure, e)),
    };
    if a.json {
        print_json(&json!({
            "requeued": moved.iter().map(|(id, from)| json!({"id": id, "from": from, "status": "pending"}))
                .collect::<Vec<_>>(),
        }))?;
    } else {
        for (id, from) in &moved {
            println!("{id} {from} → pending (every phase runs again)");
        }
    }
    Ok(())
}

fn outcome_text(o: &TaskOutcome) -> String {
    match o {
        TaskOutcome::Finished => "finished".into(),
        TaskOutcome::RetryLater { kind } => format!("failed ({kind}), will retry later"),
        TaskOutcome::Failed { kind } => format!("failed ({kind})"),
        TaskOutcome::Released { why } => format!("given back ({why})"),
        TaskOutcome::Parked { model, reason, .. } => {
            format!("parked ({model} {reason}), resumes when it is usable")
        }
        TaskOutcome::Lost => "claim lost to another process".into(),
    }
}

fn outcome_json(r: &TaskReport) -> Value {
    let (outcome, detail) = match &r.outcome {
        TaskOutcome::Finished => ("finished", None),
        TaskOutcome::RetryLater { kind } => ("retry_later", Some(kind.clone())),
        TaskOutcome::Failed { kind } => ("failed", Some(kind.clone())),
        TaskOutcome::Released { why } => ("released", Some(why.clone())),
        TaskOutcome::Parked { reason, .. } => ("parked", Some(reason.clone())),
        TaskOutcome::Lost => ("lost", None),
    };
    json!({
        "phase": r.phase.name(),
        "outcome": outcome,
        "detail": detail,
        "duration_ms": r.duration.as_millis() as u64,
    })
}

pub fn resume(config: Option<PathBuf>, a: ResumeArgs) -> CliResult {
    // Check the paper first: an unknown id should not need machines.
    let (_, store) = open_existing(config.as_deref(), a.db.as_deref())?;
    if store
        .paper(&a.id)
        .map_err(|e| Failure::new(Code::Failure, e))?
        .is_none()
    {
        return Err(Failure::new(
            Code::Usage,
            format!("no paper {} in the queue", a.id),
        ));
    }
    drop(store);
    let flags = super::run::RunFlags {
        db: a.db.clone(),
        machines: a.machines.clone(),
        profiles: a.profiles.clone(),
        ..Default::default()
    };
    let cfg = super::run::load_config(config.as_deref(), &flags)
        .map_err(|e| Failure::new(Code::Usage, format!("{e:#}")))?;
    let rt =
        super::machine::runtime().map_err(|e| Failure::new(Code::Failure, format!("{e:#}")))?;
    let json_out = a.json;
    let id = a.id.clone();
    let result = rt.block_on(async move {
        let built = build(
            &cfg,
            &RunOptions {
                mode: RunMode::SinglePass,
                prep_only: false,
            },
        )
        .map_err(|e| Failure::new(Code::Failure, format!("cannot start the runner: {e}")))?;
        let stop = CancellationToken::new();
        let kill = CancellationToken::new();
        // First signal: give the phase back; second: stop at once (the
        // phase resumes from its checkpoint), exit 130.
        let _signals = super::run::spawn_signal_handler(stop.clone(), kill.clone());
        let run = run_paper(&built.scheduler, &id, stop, |r| {
            if !json_out {
                println!(
                    "{} {} {} ({})",
                    r.id,
                    r.phase,
                    outcome_text(&r.outcome),
                    paper_runner::ops::human_duration_ms(r.duration.as_millis() as i64)
                );
            }
        });
        let result = tokio::select! {
            r = run => r,
            () = kill.cancelled() => return Err(Code::Interrupted.into()),
        };
        result.map_err(|e| match e {
            SingleError::NotFound(_) => Failure::new(Code::Usage, e),
            other => Failure::new(Code::Failure, other),
        })
    })?;
    let done = result.paper.status == PaperStatus::Done;
    if json_out {
        print_json(&json!({
            "id": result.paper.id,
            "status": result.paper.status,
            "report_path": result.paper.report_path,
            "phases": result.phases.iter().map(outcome_json).collect::<Vec<_>>(),
        }))?;
    } else if done {
        let report = result
            .paper
            .report_path
            .as_deref()
            .map(|p| format!("; report {p}"))
            .unwrap_or_default();
        println!("{} is done{report}", result.paper.id);
    } else {
        println!(
            "{} is {} (see `runner show {}`)",
            result.paper.id, result.paper.status, result.paper.arxiv_id
        );
    }
    if done {
        Ok(())
    } else {
        Err(Code::Failure.into())
    }
}
