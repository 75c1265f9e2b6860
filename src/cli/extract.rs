//! `runner extract FILE.pdf [--json]`: the prep phase's text extraction and
//! cleaning on one PDF, for checking what the prompts will see: the clean
//! paper text (tables, captions and footnotes marked), then the appendix
//! when there is one. Extraction
//! runs in a worker process under the config's `[pdf]` limits, exactly as
//! in the pipeline; the worker is this binary's hidden `__extract-pdf`
//! subcommand ([`worker`]).

use super::exit::{CliResult, Code};
use paper_runner::pipeline::clean;
use paper_runner::pipeline::pdf::ExtractLimits;
use paper_runner::pipeline::pdf_child::{self, PdfWorker};
use serde_json::json;
use std::path::PathBuf;

/// Arguments of the hidden worker subcommand (set by `pdf_child`, not by
/// people).
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    pub max_pages: usize,
    #[arg(long)]
    pub max_file_bytes: u64,
    #[arg(long)]
    pub max_stream_bytes: u64,
    pub file: PathBuf,
}

/// The worker process: one extraction, the reply on stdout.
pub fn worker(a: WorkerArgs) -> CliResult {
    let limits = ExtractLimits {
        max_pages: a.max_pages,
        max_stream_bytes: a.max_stream_bytes,
    };
    let mut out = std::io::stdout().lock();
    // The worker protocol's statuses are rows of the table: 0 a reply was
    // written, 1 it could not be (said on stderr).
    match pdf_child::run_worker(&a.file, a.max_file_bytes, &limits, &mut out) {
        0 => Ok(()),
        _ => Err(Code::Failure.into()),
    }
}

#[derive(clap::Args, Debug)]
pub struct ExtractArgs {
    /// The PDF file.
    pub file: PathBuf,
    /// Print JSON (title guess, section sizes, reference count, pages, chars, ms).
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: Option<std::path::PathBuf>, a: ExtractArgs) -> CliResult {
    let started = std::time::Instant::now();
    let cfg = match super::config_file(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Err(Code::Usage.into());
        }
    };
    if let Err(e) = cfg.validate() {
        eprintln!("error: {e}");
        return Err(Code::Usage.into());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Err(Code::Failure.into());
        }
    };
    let worker = PdfWorker::new(cfg.pdf.clone());
    let extracted = match runtime.block_on(worker.extract(&a.file)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {}: {}: {e}", e.kind(), a.file.display());
            return Err(Code::Failure.into());
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
    } else if cleaned.appendix_text.is_empty() {
        println!("{}", cleaned.paper_text);
    } else {
        // The back matter after the references too (it starts with its
        // own heading): everything the pipeline keeps of the paper.
        println!("{}\n\n{}", cleaned.paper_text, cleaned.appendix_text);
    }
    Ok(())
}
