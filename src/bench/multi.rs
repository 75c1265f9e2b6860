//! `runner bench pipeline --processes N [--db URL]`: the same synthetic
//! papers and mock provider as the in-process pipeline bench, run by N
//! separate `runner` processes sharing one database (PostgreSQL, or one
//! SQLite file) — what several hosts do.
//!
//! Measured from the database: papers/min is N papers over the time from
//! the first claim to the last wrap's end (whole run: the processes start
//! and drain together), compared with the provider's limit bound; claims
//! per process show that every process took part. Each runner paces its
//! own calls at its share of the provider's per-model limit (limit / N, as
//! the deployment docs advise), so the mock's 429 count says whether N
//! pacers together stay within the one limit.

use super::pipeline::{
    bounds, generate, mock_script, profiles, BenchError, MockChild, PipelineOptions,
};
use crate::store::{NewPaper, Store, StoreOptions};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// The result of a multi-process run.
#[derive(Debug, Clone, Serialize)]
pub struct MultiResult {
    pub backend: String,
    pub processes: usize,
    pub workers_per_process: usize,
    pub papers: usize,
    pub done: u64,
    pub seconds: f64,
    pub papers_per_min: f64,
    pub limit_bound_papers_per_min: f64,
    pub ratio_to_limit: f64,
    pub provider_requests: u64,
    pub provider_429s: u64,
    /// Claims made by each process (its owner id), over the run.
    pub claims_per_process: Vec<(String, i64)>,
    /// Phases finished more than once (must be 0).
    pub duplicate_finishes: i64,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// Run the pipeline with `processes` runner processes on `db` (an empty
/// database: a `postgres://` URL, or a SQLite path; default a SQLite file
/// in the bench directory).
pub async fn run(
    opts: &PipelineOptions,
    db: Option<&Path>,
    processes: usize,
) -> Result<MultiResult, BenchError> {
    if !(1..=64).contains(&processes) {
        return Err(BenchError::Invalid("--processes must be 1 to 64".into()));
    }
    let dir = opts.dir.clone();
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let db = db.map_or_else(|| dir.join("data/runner.db"), Path::to_path_buf);
    let n = opts.papers;
    let dir2 = dir.clone();
    let generated = tokio::task::spawn_blocking(move || generate(&dir2, n))
        .await
        .map_err(|e| BenchError::Invalid(format!("generator task failed: {e}")))??;

    let script = dir.join("mock.yml");
    std::fs::write(&script, mock_script(opts)).map_err(io("cannot write the mock script"))?;
    let mock = MockChild::start(&opts.mock_exe, &script).await?;
    let result = measured(opts, &dir, &db, processes, &generated.papers, &mock).await;
    mock.stop().await;
    result
}

async fn measured(
    opts: &PipelineOptions,
    dir: &Path,
    db: &Path,
    processes: usize,
    papers: &[super::pipeline::QueuedPaper],
    mock: &MockChild,
) -> Result<MultiResult, BenchError> {
    let machines = dir.join("machines");
    crate::runner::embedded::write_machines(&machines).map_err(io("cannot write the machines"))?;
    // Each host paces its own calls: its share of the provider's limit
    // (what the deployment docs tell operators to configure).
    let mut share = opts.clone();
    share.rpm_cheap = (opts.rpm_cheap / processes as u32).max(1);
    share.rpm_expensive = (opts.rpm_expensive / processes as u32).max(1);
    std::fs::write(
        machines.join("profiles.yml"),
        profiles(&mock.base_url, &share),
    )
    .map_err(io("cannot write the profiles"))?;
    let config = dir.join("config.toml");
    let db_text = db.display().to_string();
    std::fs::write(
        &config,
        format!(
            "db = {db_text:?}\nmachines_dir = \"machines\"\npdf_dir = \"data/pdfs\"\n\
             reports_dir = \"reports\"\nterminology = \"machines/terminology.yml\"\n\
             [scheduler]\npoll_interval_secs = 0.2\n"
        ),
    )
    .map_err(io("cannot write the config"))?;

    let (db2, queued) = (
        db.to_path_buf(),
        papers
            .iter()
            .map(|p| NewPaper {
                arxiv_id: p.arxiv_id.clone(),
                title: Some(p.title.clone()),
                abstract_text: Some(p.abstract_text.clone()),
                pdf_path: Some(p.path.display().to_string()),
                source: "bench".into(),
                ..NewPaper::default()
            })
            .collect::<Vec<_>>(),
    );
    let store = tokio::task::spawn_blocking(move || {
        let s = Store::open(&db2, &StoreOptions::default())?;
        if s.count_rows()?.iter().any(|(_, n)| *n > 0) {
            return Err(BenchError::Invalid(format!(
                "{} is not empty: give an empty database",
                s.path().display()
            )));
        }
        for p in &queued {
            s.add_paper(p)?;
        }
        Ok::<_, BenchError>(s)
    })
    .await
    .map_err(|e| BenchError::Invalid(format!("queueing task failed: {e}")))??;

    let started = Instant::now();
    let mut children = Vec::with_capacity(processes);
    for _ in 0..processes {
        let child = tokio::process::Command::new(&opts.mock_exe)
            .arg("--config")
            .arg(&config)
            .arg("--workers")
            .arg(opts.workers.to_string())
            .current_dir(dir)
            .env_remove("RUNNER_DB")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(io("cannot start a runner process"))?;
        children.push(child);
    }
    // Every run has a deadline: ten times the limit-bound duration, at
    // least ten minutes.
    let (limit, _) = bounds(opts);
    let expected = Duration::try_from_secs_f64((opts.papers as f64 / limit.max(0.01)) * 60.0)
        .unwrap_or(Duration::from_secs(86_400))
        .min(Duration::from_secs(86_400));
    let deadline = (expected * 10).max(Duration::from_secs(600));
    for mut c in children {
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, c.wait()).await {
            Ok(status) => {
                status.map_err(io("waiting for a runner process"))?;
            }
            Err(_) => {
                let _ = c.start_kill();
                return Err(BenchError::Invalid(format!(
                    "the runner processes did not finish within {} s",
                    deadline.as_secs()
                )));
            }
        }
    }
    let stats = mock.stats().await?;
    let s = store.clone();
    let (done, window, claims, dups) = tokio::task::spawn_blocking(move || {
        let counts = s.status_counts()?;
        let done = counts
            .iter()
            .find(|(st, _)| *st == crate::store::PaperStatus::Done)
            .map_or(0, |(_, n)| *n);
        Ok::<_, BenchError>((
            done,
            s.run_window()?,
            s.claims_by_owner()?,
            s.duplicate_finishes()?,
        ))
    })
    .await
    .map_err(|e| BenchError::Invalid(format!("reading results failed: {e}")))??;
    let seconds = window.unwrap_or_else(|| started.elapsed().as_secs_f64());
    let ppm = if seconds > 0.0 {
        done as f64 * 60.0 / seconds
    } else {
        0.0
    };
    Ok(MultiResult {
        backend: format!("{:?}", store.dialect()).to_lowercase(),
        processes,
        workers_per_process: opts.workers,
        papers: opts.papers,
        done,
        seconds,
        papers_per_min: ppm,
        limit_bound_papers_per_min: limit,
        ratio_to_limit: ppm / limit,
        provider_requests: stats.requests,
        provider_429s: stats.by_status.get("429").copied().unwrap_or(0),
        claims_per_process: claims,
        duplicate_finishes: dups,
    })
}
