//! `runner show ID|ARXIV_ID [--json]`: one paper's timeline — phases,
//! states with durations, LLM calls, errors, report.

use super::status::{open_existing, Failure};
use clap::Args;
use paper_runner::ops::show::{paper_timeline, render_human};
use paper_runner::ops::OpsError;
use std::path::PathBuf;
use std::process::ExitCode;

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

pub fn run(config: Option<PathBuf>, a: ShowArgs) -> ExitCode {
    let (_, store) = match open_existing(config.as_deref(), a.db.as_deref()) {
        Ok(x) => x,
        Err(f) => return f.exit(),
    };
    let timeline = match paper_timeline(&store, &a.id) {
        Ok(t) => t,
        Err(e @ OpsError::NotFound(_)) => return Failure::new(2, e).exit(),
        Err(e) => return Failure::new(1, e).exit(),
    };
    if a.json {
        match serde_json::to_string_pretty(&timeline) {
            Ok(s) => println!("{s}"),
            Err(e) => return Failure::new(1, format!("cannot print the timeline: {e}")).exit(),
        }
    } else {
        print!("{}", render_human(&timeline));
    }
    ExitCode::SUCCESS
}
