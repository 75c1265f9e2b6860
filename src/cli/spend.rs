//! `runner spend [--since DATE] [--by day|model|phase|paper] [--json|--csv]`:
//! the bill, from the spend ledger.

use super::exit::{CliResult, Code};
use super::status::{open_existing, Failure};
use clap::Args;
use paper_runner::ops::bill::{bill, parse_since, render_csv, render_human, BillBy};
use paper_runner::ops::text::escape_report;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SpendArgs {
    /// First day counted: YYYY-MM-DD (UTC) or an RFC 3339 time (default:
    /// the whole ledger).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Group by day (UTC), model, phase or paper.
    #[arg(long, value_enum, default_value_t = BillBy::Day)]
    pub by: BillBy,
    /// Print the bill as JSON (groups and a total).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print the bill as CSV (a header and one line per group).
    #[arg(long)]
    pub csv: bool,
    /// SQLite database (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

pub fn run(config: Option<PathBuf>, a: SpendArgs) -> CliResult {
    let (_, store) = open_existing(config.as_deref(), a.db.as_deref())?;
    let b = bill(&store, a.since, a.by).map_err(|e| Failure::new(Code::Failure, e))?;
    let text = if a.json {
        serde_json::to_string_pretty(&b)
            .map(|s| s + "\n")
            .map_err(|e| Failure::new(Code::Failure, format!("cannot print the bill: {e}")))?
    } else if a.csv {
        // Fields are quoted, not escaped: CSV keeps the ledger's text.
        render_csv(&b)
    } else {
        // Model names come from outside: no raw control characters reach
        // the terminal.
        escape_report(&render_human(&b))
    };
    print!("{text}");
    Ok(())
}
