//! `runner add ID... | --file ids.txt [--title T] [--abstract A] [--pdf PATH]`:
//! queue papers. Adding a paper twice is a no-op that says so.

use clap::Args;
use paper_runner::runner::build::open_store;
use paper_runner::store::{AddOutcome, NewPaper};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct AddArgs {
    /// arXiv ids (new style 2401.01234v2 or old style hep-th/9901001).
    pub ids: Vec<String>,
    /// Read ids from a file (one per line; `#` comments).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Title (offline use; otherwise taken from the PDF).
    #[arg(long)]
    pub title: Option<String>,
    /// Abstract (offline use).
    #[arg(long = "abstract")]
    pub abstract_text: Option<String>,
    /// A local PDF for this paper (no download).
    #[arg(long)]
    pub pdf: Option<PathBuf>,
    /// Higher is claimed first.
    #[arg(long, default_value_t = 0)]
    pub priority: i64,
    /// SQLite database (default from config).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

pub fn run(config: Option<PathBuf>, a: AddArgs) -> ExitCode {
    let mut cfg = match super::config_file(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(db) = a.db {
        cfg.db = db;
    }
    let mut ids = a.ids.clone();
    if let Some(f) = &a.file {
        match std::fs::read_to_string(f) {
            Ok(text) => ids.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                    .filter(|l| !l.is_empty()),
            ),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", f.display());
                return ExitCode::from(2);
            }
        }
    }
    if ids.is_empty() {
        eprintln!("error: name at least one arXiv id (or --file ids.txt)");
        return ExitCode::from(2);
    }
    if (a.title.is_some() || a.abstract_text.is_some() || a.pdf.is_some()) && ids.len() > 1 {
        eprintln!("error: --title/--abstract/--pdf describe one paper; give one id");
        return ExitCode::from(2);
    }
    let pdf = match &a.pdf {
        Some(p) => match std::fs::canonicalize(p) {
            Ok(p) => Some(p.display().to_string()),
            Err(e) => {
                eprintln!("error: --pdf {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let store = match open_store(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for id in ids {
        if let Err(e) = paper_runner::pipeline::acquire::safe_id(&id) {
            eprintln!("error: {id}: {}", e.message);
            return ExitCode::from(2);
        }
        let p = NewPaper {
            arxiv_id: id.clone(),
            title: a.title.clone(),
            abstract_text: a.abstract_text.clone(),
            pdf_path: pdf.clone(),
            priority: a.priority,
            source: "cli".into(),
        };
        match store.add_paper(&p) {
            Ok(AddOutcome::Added { id: qid }) => println!("added {id} ({qid})"),
            Ok(AddOutcome::Exists { status, .. }) => {
                println!("exists {id} (already queued, status {status}; nothing changed)")
            }
            Err(e) => {
                eprintln!("error: {id}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
