//! `runner prune`: retention and compacted backups.

use paper_runner::store::{PrunePolicy, Store, StoreOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// The SQLite database.
    #[arg(long, default_value = "paper-runner.db")]
    pub db: PathBuf,
    /// Keep checkpoints of done executions for this many days.
    #[arg(long, default_value_t = 7.0)]
    pub keep_done: f64,
    /// Keep the last snapshot of failed executions for this many days.
    #[arg(long, default_value_t = 30.0)]
    pub keep_failed: f64,
    /// Also write a compacted copy of the database here (VACUUM INTO).
    #[arg(long)]
    pub backup: Option<PathBuf>,
}

fn days(d: f64) -> Duration {
    Duration::from_secs_f64((d.max(0.0)) * 86400.0)
}

pub fn run(a: PruneArgs) -> ExitCode {
    if !a.db.exists() {
        eprintln!("error: database {} does not exist", a.db.display());
        return ExitCode::from(2);
    }
    let store = match Store::open(&a.db, &StoreOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let policy = PrunePolicy {
        keep_done: days(a.keep_done),
        keep_failed: days(a.keep_failed),
    };
    let report = match store.prune(&policy) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "removed {} checkpoints, {} blobs, {} configs; compacted {} done paper(s); reclaimed {} bytes ({} → {} bytes in use)",
        report.checkpoints_removed,
        report.blobs_removed,
        report.configs_removed,
        report.papers_compacted,
        report.bytes_before.saturating_sub(report.bytes_after),
        report.bytes_before,
        report.bytes_after
    );
    if let Some(dest) = &a.backup {
        match store.backup(dest) {
            Ok(n) => println!("backup written to {} ({n} bytes)", dest.display()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
