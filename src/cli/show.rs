//! `runner show ID|ARXIV_ID [--json]`: one paper's timeline — phases,
//! states with durations, LLM calls, errors, report.

use super::exit::{CliResult, Code};
use super::status::{open_existing, Failure};
use clap::Args;
use paper_runner::ops::show::{paper_timeline, render_human};
use paper_runner::ops::OpsError;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Queue id (paper:2401.00001) or arXiv id (2401.00001).
    pub id: String,
    /// Print the timeline as JSON.
    #[arg(long)]
    pub json: bool,
    /// SQLite database (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

pub fn run(config: Option<PathBuf>, a: ShowArgs) -> CliResult {
    let (_, store) = open_existing(config.as_deref(), a.db.as_deref())?;
    let timeline = match paper_timeline(&store, &a.id) {
        Ok(t) => t,
        Err(e @ OpsError::NotFound(_)) => return Err(Failure::new(Code::Usage, e)),
        Err(e) => return Err(Failure::new(Code::Failure, e)),
    };
    if a.json {
        match serde_json::to_string_pretty(&timeline) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                return Err(Failure::new(
                    Code::Failure,
                    format!("cannot print the timeline: {e}"),
                ))
            }
        }
    } else {
        print!("{}", render_human(&timeline));
    }
    Ok(())
}
