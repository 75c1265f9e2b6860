//! `runner extract FILE.pdf [--json]`: the prep phase's text extraction and
//! cleaning on one PDF, for checking what the prompts will see.

use paper_runner::pipeline::{clean, pdf};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ExtractArgs {
    /// The PDF file.
    pub file: PathBuf,
    /// Print JSON (title guess, section sizes, reference count, pages, chars, ms).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ExtractArgs) -> ExitCode {
    let started = std::time::Instant::now();
    let extracted = match pdf::extract_file(&a.file) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: pdf_unreadable: {}: {e}", a.file.display());
            return ExitCode::FAILURE;
        }
    };
    let cleaned = clean::clean_pages(
        &extracted.pages,
        &clean::CleanOptions {
            token_budget: 24_000,
        },
    );
    let ms = started.elapsed().as_millis() as u64;
    if a.json {
        let sections: serde_json::Map<String, serde_json::Value> = cleaned
            .sections
            .iter()
            .map(|(k, v)| (k.clone(), json!(v.chars().count())))
            .collect();
        let out = json!({
            "title_guess": cleaned.title_guess,
            "sections": sections,
            "reference_count": cleaned.reference_count,
            "pages": extracted.pages.len(),
            "chars": cleaned.paper_text.chars().count(),
            "appendix_chars": cleaned.appendix_text.chars().count(),
            "ms": ms,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!("{}", cleaned.paper_text);
    }
    ExitCode::SUCCESS
}
