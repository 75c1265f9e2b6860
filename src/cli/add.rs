//! `runner add ID... | --file ids.txt [--title T] [--abstract A] [--pdf PATH]`
//! and `--seed` / `--seed-only [--seed-limit N]`: queue papers.
//!
//! Titles and abstracts come from the arXiv Atom API (`arxiv_api_url`; for
//! now also `$RUNNER_ARXIV_API_URL`, read here until config-file loading
//! applies `RUNNER_*` variables itself). A lookup failure never stops the
//! add: the paper is queued without them and prep takes the title from the
//! PDF. Adding a paper twice (in any version) is a no-op that says so.
//!
//! Exit codes: 0 ok, 2 bad input (an invalid id is named), 1 store error.

use super::exit::{CliError, CliResult, Code};
use anyhow::Context;
use clap::Args;
use paper_runner::ops::text::escape_control;
use paper_runner::pipeline::acquire::safe_id;
use paper_runner::runner::build::open_store;
use paper_runner::runner::config::{file_kind, read_text_capped};
use paper_runner::runner::ingest::{
    self, add_paper_once, fetch_metadata_with, queued_version, FetchOptions, IngestError, PaperMeta,
};
use paper_runner::runner::Config;
use paper_runner::store::{paper_id, AddOutcome, NewPaper, Store};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// The API URL override until `Config::load` reads `RUNNER_*` itself.
const API_URL_ENV: &str = "RUNNER_ARXIV_API_URL";
/// Titles are cut to this many characters in the `added` lines.
const TITLE_CHARS: usize = 70;
/// Largest `--file` of ids read: 16 MiB (hundreds of thousands of ids).
const MAX_ID_FILE_BYTES: u64 = 16 << 20;
/// Longest `--api-interval`: one hour.
const MAX_API_INTERVAL_SECS: f64 = 3_600.0;

#[derive(Args, Debug)]
pub struct AddArgs {
    /// arXiv ids (new style 2401.01234v2 or old style hep-th/9901001).
    pub ids: Vec<String>,
    /// Read ids from a file (one per line; `#` comments).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Title (offline use; skips the arXiv lookup).
    #[arg(long)]
    pub title: Option<String>,
    /// Abstract (offline use; skips the arXiv lookup).
    #[arg(long = "abstract")]
    pub abstract_text: Option<String>,
    /// A local PDF for this paper (no download).
    #[arg(long)]
    pub pdf: Option<PathBuf>,
    /// Higher is claimed first (ids given here; seeded papers keep the crawler's).
    #[arg(long, default_value_t = 0)]
    pub priority: i64,
    /// SQLite database (default from config).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Do not look up titles and abstracts on arXiv.
    #[arg(long)]
    pub offline: bool,
    /// Seconds between arXiv API requests (arXiv asks for at least 3; 0 to 3600).
    #[arg(long, default_value_t = 3.0, value_name = "SECS", value_parser = parse_api_interval)]
    pub api_interval: f64,
    /// First add the crawler DB's pending papers, then the ids given.
    #[arg(long, conflicts_with = "seed_only")]
    pub seed: bool,
    /// Only add the crawler DB's pending papers.
    #[arg(long)]
    pub seed_only: bool,
    /// Most papers one seeding adds (default: config seed.limit, else all).
    #[arg(long, value_name = "N")]
    pub seed_limit: Option<usize>,
    /// arxiv-crawler database to seed from (default: config seed.db, else corpus_db).
    #[arg(long, value_name = "PATH")]
    pub crawler_db: Option<PathBuf>,
}

/// A failure and its exit code.
type Fail = CliError;

fn bad_input(err: anyhow::Error) -> Fail {
    CliError::new(Code::Usage, format!("{err:#}"))
}

fn store_failure(err: anyhow::Error) -> Fail {
    CliError::new(Code::Failure, format!("{err:#}"))
}

pub fn run(config: Option<PathBuf>, a: AddArgs) -> CliResult {
    add(config, a)
}

fn add(config: Option<PathBuf>, a: AddArgs) -> Result<(), Fail> {
    let mut cfg = super::config_file(config.as_deref()).map_err(bad_input)?;
    if let Some(db) = &a.db {
        cfg.db = db.clone();
    }
    if let Some(url) = std::env::var(API_URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        cfg.arxiv_api_url = url.trim().to_string();
    }
    let ids = collect_ids(&a)?;
    let pdf = local_pdf(&a)?;
    let seeding = a.seed || a.seed_only;
    let crawler = if seeding {
        let db = a
            .crawler_db
            .clone()
            .or_else(|| ingest::crawler_db(&cfg).map(PathBuf::from));
        Some(db.ok_or_else(|| bad_input(IngestError::NoCrawlerDb.into()))?)
    } else {
        None
    };
    let api_interval = Duration::try_from_secs_f64(a.api_interval)
        .ok()
        .filter(|d| d.as_secs_f64() <= MAX_API_INTERVAL_SECS)
        .ok_or_else(|| {
            bad_input(anyhow::anyhow!(
                "--api-interval must be a number of seconds from 0 to {MAX_API_INTERVAL_SECS}"
            ))
        })?;

    let store = open_store(&cfg).map_err(|e| store_failure(e.into()))?;
    if let Some(db) = &crawler {
        seed(&store, db, a.seed_limit.or(cfg.seed.limit))?;
    }
    if a.seed_only {
        return Ok(());
    }

    // Already-queued papers need no lookup: adding them changes nothing.
    let mut existing = HashMap::new();
    for id in &ids {
        if let Some(row) = queued_version(&store, id).map_err(|e| store_failure(e.into()))? {
            existing.insert(id.clone(), row);
        }
    }
    let new: Vec<String> = ids
        .iter()
        .filter(|id| !existing.contains_key(*id))
        .cloned()
        .collect();
    let lookup = !(a.offline || a.title.is_some() || a.abstract_text.is_some() || new.is_empty());
    let meta = if lookup {
        lookup_metadata(&cfg, &new, api_interval)
    } else {
        HashMap::new()
    };

    let (mut added, mut exists) = (0usize, 0usize);
    for id in &ids {
        let m = meta.get(id);
        let p = NewPaper {
            arxiv_id: id.clone(),
            title: a.title.clone().or_else(|| m.map(|m| m.title.clone())),
            abstract_text: a
                .abstract_text
                .clone()
                .or_else(|| m.map(|m| m.abstract_text.clone()))
                .filter(|t| !t.is_empty()),
            pdf_path: pdf.clone(),
            priority: a.priority,
            source: "cli".into(),
        };
        let outcome = match existing.get(id) {
            Some((qid, status)) => AddOutcome::Exists {
                id: qid.clone(),
                status: status.clone(),
            },
            None => add_paper_once(&store, &p)
                .with_context(|| format!("adding {id}"))
                .map_err(store_failure)?,
        };
        match outcome {
            AddOutcome::Added { .. } => {
                added += 1;
                println!("added {id} ({})", describe(p.title.as_deref()));
            }
            AddOutcome::Exists { id: qid, status } => {
                exists += 1;
                let queued_as = if qid == paper_id(id) {
                    String::new()
                } else {
                    format!(" as {}", qid.trim_start_matches("paper:"))
                };
                println!(
                    "exists {id} (already queued{queued_as}, status {status}; nothing changed)"
                );
            }
        }
    }
    println!("{added} added, {exists} already queued");
    Ok(())
}

/// Ids from the arguments and `--file`, each validated (the first bad one
/// is named), duplicates dropped, in order.
fn collect_ids(a: &AddArgs) -> Result<Vec<String>, Fail> {
    let mut ids: Vec<String> = a.ids.iter().map(|s| s.trim().to_string()).collect();
    if let Some(f) = &a.file {
        // Bounded: `--file /dev/zero` (or a FIFO, or a huge file) is
        // refused instead of read until memory runs out.
        let text = read_text_capped(f, MAX_ID_FILE_BYTES)
            .map_err(|e| bad_input(anyhow::anyhow!("--file {}: {e}", f.display())))?;
        ids.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty()),
        );
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    if a.seed_only && !ids.is_empty() {
        return Err(bad_input(anyhow::anyhow!(
            "--seed-only adds no ids; use --seed to seed and add {}",
            ids.join(" ")
        )));
    }
    if a.seed_limit.is_some() && !(a.seed || a.seed_only) {
        return Err(bad_input(anyhow::anyhow!(
            "--seed-limit needs --seed or --seed-only"
        )));
    }
    if ids.is_empty() && !(a.seed || a.seed_only) {
        return Err(bad_input(anyhow::anyhow!(
            "name at least one arXiv id (or --file ids.txt, or --seed-only)"
        )));
    }
    if (a.title.is_some() || a.abstract_text.is_some() || a.pdf.is_some()) && ids.len() != 1 {
        return Err(bad_input(anyhow::anyhow!(
            "--title/--abstract/--pdf describe one paper; give one id"
        )));
    }
    for id in &ids {
        safe_id(id).map_err(|e| bad_input(anyhow::anyhow!("{}", e.message)))?;
    }
    Ok(ids)
}

/// The `--pdf` as an absolute path. It must be a regular file: a FIFO
/// would block the worker that opens it, a directory or device is no PDF.
fn local_pdf(a: &AddArgs) -> Result<Option<String>, Fail> {
    let Some(p) = &a.pdf else { return Ok(None) };
    let abs = std::fs::canonicalize(p)
        .with_context(|| format!("--pdf {}", p.display()))
        .map_err(bad_input)?;
    let meta = std::fs::metadata(&abs)
        .with_context(|| format!("--pdf {}", p.display()))
        .map_err(bad_input)?;
    if !meta.is_file() {
        return Err(bad_input(anyhow::anyhow!(
            "--pdf {} is {}, not a regular file",
            p.display(),
            file_kind(&meta)
        )));
    }
    Ok(Some(abs.display().to_string()))
}

/// `--api-interval`: seconds, 0 to 3600 (`inf`, `NaN`, negatives refused).
fn parse_api_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && (0.0..=MAX_API_INTERVAL_SECS).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{s} is out of range: allowed 0 to {MAX_API_INTERVAL_SECS} seconds"
        ))
    }
}

/// Seed from the crawler DB and report; a crawler DB problem is bad input.
fn seed(store: &Store, db: &std::path::Path, limit: Option<usize>) -> Result<(), Fail> {
    let r = ingest::seed_from_crawler(store, db, limit).map_err(|e| match e {
        IngestError::Store(s) => store_failure(s.into()),
        other => bad_input(other.into()),
    })?;
    for p in &r.papers {
        println!("added {} ({})", p.arxiv_id, describe(p.title.as_deref()));
    }
    let invalid = if r.invalid > 0 {
        format!(", {} with invalid ids skipped", r.invalid)
    } else {
        String::new()
    };
    println!(
        "seeded from {}: {} added, {} already queued, {} considered{invalid}",
        db.display(),
        r.added,
        r.already_queued,
        r.considered
    );
    Ok(())
}

/// Metadata of `ids`; on failure a warning, and what was found so far.
fn lookup_metadata(cfg: &Config, ids: &[String], interval: Duration) -> HashMap<String, PaperMeta> {
    let without = "adding without title/abstract (prep takes the title from the PDF)";
    let rt = match super::machine::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warning: arXiv lookup skipped: {e:#}; {without}");
            return HashMap::new();
        }
    };
    let client = match ingest::http_client(Duration::from_secs(30)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: arXiv lookup skipped: {e}; {without}");
            return HashMap::new();
        }
    };
    let opts = FetchOptions {
        min_interval: interval,
        ..FetchOptions::default()
    };
    let fetched = rt.block_on(fetch_metadata_with(&client, &cfg.arxiv_api_url, ids, &opts));
    for id in &fetched.not_found {
        eprintln!("warning: arXiv returned no metadata for {id}; {without}");
    }
    if let Some(e) = &fetched.error {
        let missing = ids
            .iter()
            .filter(|id| !fetched.found.contains_key(*id) && !fetched.not_found.contains(id))
            .count();
        eprintln!("warning: arXiv metadata unavailable for {missing} paper(s): {e}; {without}");
    }
    fetched.found
}

/// `Title…` cut for one line (control characters escaped: titles come
/// from arXiv or the command line), or a note that prep will find it.
fn describe(title: Option<&str>) -> String {
    let title = title.map(escape_control);
    match title.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => "no title yet".into(),
        Some(t) if t.chars().count() > TITLE_CHARS => {
            let cut: String = t.chars().take(TITLE_CHARS).collect();
            format!("{}…", cut.trim_end())
        }
        Some(t) => t.to_string(),
    }
}
