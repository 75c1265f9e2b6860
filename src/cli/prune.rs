//! `runner prune`: retention and compacted backups.
//!
//! The database comes from `--db`, else the configuration (`--config`,
//! `$RUNNER_CONFIG`, `./config.toml`, `RUNNER_DB`) like every other command.
//! A `--backup` target is checked before anything is pruned, so a refused
//! backup leaves the database as it was.

use super::exit::{CliResult, Code};
use super::status::{open_existing, Failure};
use paper_runner::store::{check_backup_target, PrunePolicy};
use std::path::PathBuf;
use std::time::Duration;

/// Longest retention a flag may ask for: 100 years.
const MAX_KEEP_DAYS: f64 = 36_500.0;

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// SQLite database (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Keep checkpoints of done executions for this many days (0 to 36500).
    #[arg(long, default_value_t = 7.0, value_parser = parse_days)]
    pub keep_done: f64,
    /// Keep the last snapshot of failed executions for this many days (0 to 36500).
    #[arg(long, default_value_t = 30.0, value_parser = parse_days)]
    pub keep_failed: f64,
    /// Also write a compacted copy of the database here (VACUUM INTO); the
    /// path must not exist yet.
    #[arg(long)]
    pub backup: Option<PathBuf>,
}

/// A number of days in 0..=36500: `inf`, `NaN` and negative values are
/// refused at parse time (they once panicked in `Duration::from_secs_f64`).
fn parse_days(s: &str) -> Result<f64, String> {
    let d: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of days"))?;
    if d.is_finite() && (0.0..=MAX_KEEP_DAYS).contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "{s} is out of range: allowed 0 to {MAX_KEEP_DAYS} days"
        ))
    }
}

/// Days as a duration; the parser bounds `d`, and a bad value (only
/// possible from code) is kept as "forever" rather than panicking.
fn days(d: f64) -> Duration {
    Duration::try_from_secs_f64(d * 86_400.0).unwrap_or(Duration::MAX)
}

pub fn run(config: Option<PathBuf>, a: PruneArgs) -> CliResult {
    if let Some(dest) = &a.backup {
        if let Err(e) = check_backup_target(dest) {
            return Err(Failure::new(
                Code::Usage,
                format!("{e}; nothing was pruned"),
            ));
        }
    }
    let (_, store) = open_existing(config.as_deref(), a.db.as_deref())?;
    if a.backup.is_some() && store.dialect() == paper_runner::store::Dialect::Postgres {
        return Err(Failure::new(
            Code::Usage,
            "--backup writes a SQLite file; back up PostgreSQL with pg_dump; nothing was pruned",
        ));
    }
    let policy = PrunePolicy {
        keep_done: days(a.keep_done),
        keep_failed: days(a.keep_failed),
    };
    let report = match store.prune(&policy) {
        Ok(r) => r,
        Err(e) => return Err(Failure::new(Code::Failure, e)),
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
            Err(e) => return Err(Failure::new(Code::Failure, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_flags_are_range_checked() {
        assert_eq!(parse_days("7"), Ok(7.0));
        assert_eq!(parse_days("0"), Ok(0.0));
        assert_eq!(parse_days("36500"), Ok(36_500.0));
        for bad in ["inf", "-inf", "NaN", "-1", "36501", "1e300", "seven"] {
            assert!(parse_days(bad).is_err(), "{bad}");
        }
        assert!(parse_days("inf")
            .unwrap_err()
            .contains("allowed 0 to 36500"));
        assert_eq!(days(f64::INFINITY), Duration::MAX);
    }
}
