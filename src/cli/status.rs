//! `runner status [--json|--yaml] [--db PATH]`: the queue at a glance —
//! counts, in-flight work, budget, breakers, mode, throughput.

use super::exit::{CliResult, Code};
use clap::Args;
use paper_runner::ops::status::{render_human, status_report};
use paper_runner::ops::text::escape_report;
use paper_runner::runner::Config;
use paper_runner::store::{Store, StoreOptions};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print the report as JSON (the same document as the `/status` endpoint).
    #[arg(long, conflicts_with = "yaml")]
    pub json: bool,
    /// Print the report as YAML.
    #[arg(long)]
    pub yaml: bool,
    /// SQLite database (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

/// A failed operator command: its exit code and what to tell the user.
pub use super::exit::CliError as Failure;

/// The configuration (with `--db` applied) and its existing database.
/// Read-only commands must not create an empty database where the user
/// mistyped a path, so a missing file is an error (exit 2).
pub fn open_existing(config: Option<&Path>, db: Option<&Path>) -> Result<(Config, Store), Failure> {
    let mut cfg =
        super::config_file(config).map_err(|e| Failure::new(Code::Usage, format!("{e:#}")))?;
    if let Some(db) = db {
        cfg.db = db.to_path_buf();
    }
    if paper_runner::store::is_db_url(&cfg.db).is_none() && !cfg.db.exists() {
        return Err(Failure::new(
            Code::Usage,
            format!(
                "database {} does not exist (give --db, or run where data/runner.db is)",
                cfg.db.display()
            ),
        ));
    }
    let store = Store::open(&cfg.db, &StoreOptions::default())
        .map_err(|e| Failure::new(Code::Failure, e))?;
    Ok((cfg, store))
}

pub fn run(config: Option<PathBuf>, a: StatusArgs) -> CliResult {
    let (cfg, store) = open_existing(config.as_deref(), a.db.as_deref())?;
    // Resolved once, like the daemon's: the report reads typed values (the
    // day start, the prep-burst cron) and an invalid setting is a usage
    // error naming its key, as it is for `runner run`.
    let settings = cfg
        .resolve()
        .map_err(|e| Failure::new(Code::Usage, format!("{e:#}")))?;
    let report = match status_report(&store, &settings, None, chrono::Utc::now()) {
        Ok(r) => r,
        Err(e) => return Err(Failure::new(Code::Failure, e)),
    };
    let text = if a.json {
        serde_json::to_string_pretty(&report)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())
    } else if a.yaml {
        serde_yaml::to_string(&report).map_err(|e| e.to_string())
    } else {
        // Model names, states, paths and breaker reasons come from outside:
        // no raw control characters reach the terminal.
        Ok(escape_report(&render_human(&report)))
    };
    match text {
        Ok(t) => {
            print!("{t}");
            Ok(())
        }
        Err(e) => Err(Failure::new(
            Code::Failure,
            format!("cannot print the report: {e}"),
        )),
    }
}
