//! `runner bench …`.

use clap::{Args, Subcommand};
use paper_runner::bench::checkpoint;
use paper_runner::store::Synchronous;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Checkpoint write throughput, latency and DB growth per transition.
    Checkpoint(CheckpointArgs),
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// Database to write to (default: a fresh temporary file).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Transitions per scenario.
    #[arg(long, default_value_t = 20_000)]
    pub transitions: usize,
    /// Fsync every commit (synchronous=FULL).
    #[arg(long)]
    pub sync_full: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BenchCmd) -> ExitCode {
    match cmd {
        BenchCmd::Checkpoint(a) => bench_checkpoint(a),
    }
}

fn bench_checkpoint(a: CheckpointArgs) -> ExitCode {
    let tmp = std::env::temp_dir().join(format!("paper-runner-bench-{}", std::process::id()));
    let db = a.db.clone().unwrap_or_else(|| tmp.join("bench.db"));
    let rt = match super::machine::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let sync = if a.sync_full {
        Synchronous::Full
    } else {
        Synchronous::Normal
    };
    let mut results = Vec::new();
    for kib in [0usize, 100] {
        match rt.block_on(checkpoint::run(&db, a.transitions, kib, sync)) {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if a.db.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
    } else {
        println!(
            "{:<36} {:>12} {:>10} {:>10} {:>14}",
            "scenario", "transitions/s", "p50 µs", "p99 µs", "DB B/transition"
        );
        for r in &results {
            println!(
                "{:<36} {:>12.0} {:>10.1} {:>10.1} {:>14.0}",
                r.scenario, r.transitions_per_sec, r.p50_us, r.p99_us, r.db_bytes_per_transition
            );
        }
    }
    ExitCode::SUCCESS
}
