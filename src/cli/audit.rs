//! `runner audit`: report quality checks; non-zero exit past thresholds.

use super::exit::{CliResult, Code};
use paper_runner::pipeline::audit::{audit, AuditOptions, GROUNDING_THRESHOLD};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Folder of reports.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Folder of `<safe_id>.txt` paper texts for the numeric grounding check.
    #[arg(long)]
    pub texts: Option<PathBuf>,
    /// Only the N most recent reports.
    #[arg(long)]
    pub latest: Option<usize>,
    /// Minimum share of numbers that must occur in the paper (0 to 1).
    #[arg(long, default_value_t = GROUNDING_THRESHOLD, value_parser = parse_share)]
    pub threshold: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: AuditArgs) -> CliResult {
    let opts = AuditOptions {
        reports: a.reports,
        latest: a.latest,
        texts: a.texts,
        grounding_threshold: a.threshold,
    };
    let summary = match audit(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(Code::Usage.into());
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        for r in &summary.audits {
            let g = r
                .grounding
                .map(|g| {
                    let tables = r
                        .grounded_in_tables
                        .filter(|n| *n > 0)
                        .map(|n| format!(" ({n} from tables)"))
                        .unwrap_or_default();
                    format!(" grounding {:.0}%{tables}", g * 100.0)
                })
                .unwrap_or_default();
            if r.problems.is_empty() {
                println!("ok    {}{g}", r.file);
            } else {
                println!("FAIL  {}{g}", r.file);
                for p in &r.problems {
                    println!("      - {p}");
                }
            }
        }
        println!("{} report(s), {} failing", summary.reports, summary.failing);
    }
    if summary.failing > 0 {
        Err(Code::Failure.into())
    } else {
        Ok(())
    }
}

/// A share from 0 to 1 (`NaN` and infinities refused at parse time).
fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(_) => Err(format!("{s} is out of range: allowed 0 to 1")),
        Err(_) => Err(format!("{s:?} is not a number from 0 to 1")),
    }
}
