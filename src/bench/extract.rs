//! `runner bench extract DIR`: PDF extraction speed and completeness on a
//! folder of PDFs.
//!
//! For every `*.pdf` in the folder (sorted by name):
//!
//! * **CPU** of the extraction in this process (user + system time of the
//!   calling thread; the extraction is single-threaded), the least of
//!   `reps` runs, per PDF and per page; wall time likewise.
//! * **Worker CPU**: the same file through a real `runner __extract-pdf`
//!   child (what the pipeline runs), process start included — the number
//!   to compare with a `pdftotext` process.
//! * **pdftotext CPU**, when a `pdftotext` binary is on `PATH` (or given):
//!   the same measure of `pdftotext FILE /dev/null`, and our ratio to it.
//! * **Peak RSS** of the extraction worker (`ru_maxrss` of the child).
//! * **Body-word recall** against a reference text, when `--reference-dir`
//!   holds `NAME.txt` for `NAME.pdf` (poppler's plain `pdftotext` output):
//!   the share of the reference's body words (lower-cased NFKC tokens,
//!   counted with repeats) that our text also contains. The reference's
//!   body leaves out page furniture, which the extraction removes on
//!   purpose: lines that are only a number (page and line numbers) and
//!   lines that repeat, digits ignored, on three or more pages (running
//!   headers and footers). Our text is de-hyphenated at line ends first, as
//!   pdftotext's is. `clean_recall` is the same against what the prompts
//!   get (`clean_pages`: body, appendix and the tables and captions kept
//!   from after the references), with the reference cut at its last
//!   references heading.
//!
//! Tooling, not product: only with the `tooling` feature.

use crate::pipeline::clean;
use crate::pipeline::pdf::{self, ExtractStats};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use unicode_normalization::UnicodeNormalization;

/// Largest PDF read (bytes).
const MAX_PDF_BYTES: u64 = 256 << 20;
/// Largest reference text read (bytes).
const MAX_TEXT_BYTES: u64 = 64 << 20;
/// Longest one measured child process may run.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub dir: PathBuf,
    pub reference_dir: Option<PathBuf>,
    /// Runs per file; the least CPU time is kept.
    pub reps: usize,
    /// The `runner` binary for the worker measurement (None: skip it).
    pub runner: Option<PathBuf>,
    /// A `pdftotext` to compare with (None: look on `PATH`).
    pub pdftotext: Option<PathBuf>,
}

/// One PDF's numbers.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FileResult {
    pub file: String,
    pub pages: usize,
    pub bytes: u64,
    /// In-process extraction, least of the runs.
    pub cpu_ms: f64,
    pub cpu_ms_per_page: f64,
    pub wall_ms: f64,
    /// A `runner __extract-pdf` process, start to end.
    pub worker_cpu_ms: Option<f64>,
    pub worker_peak_rss_bytes: Option<u64>,
    pub pdftotext_cpu_ms: Option<f64>,
    /// `worker_cpu_ms / pdftotext_cpu_ms`.
    pub ratio_to_pdftotext: Option<f64>,
    pub recall: Option<f64>,
    pub clean_recall: Option<f64>,
    pub stats: ExtractStats,
    pub error: Option<String>,
}

/// Totals over the folder.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ExtractSummary {
    pub files: Vec<FileResult>,
    pub pdfs: usize,
    pub failed: usize,
    pub pages: usize,
    pub cpu_ms: f64,
    pub cpu_ms_per_page: f64,
    pub cpu_ms_per_pdf: f64,
    pub worker_cpu_ms: Option<f64>,
    pub worker_cpu_ms_per_page: Option<f64>,
    pub pdftotext_cpu_ms: Option<f64>,
    pub pdftotext_cpu_ms_per_page: Option<f64>,
    /// Total worker CPU / total pdftotext CPU over the files both ran on.
    pub ratio_to_pdftotext: Option<f64>,
    pub worker_peak_rss_bytes: Option<u64>,
    pub recall_mean: Option<f64>,
    pub recall_min: Option<f64>,
    pub clean_recall_mean: Option<f64>,
    pub clean_recall_min: Option<f64>,
    pub pdftotext: Option<String>,
}

/// CPU time of the calling thread, to the nanosecond (`getrusage` counts
/// in scheduler ticks, too coarse for a 2 ms extraction).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only
    // writes into it and reports failure through its return value.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return super::sys::thread_cpu();
    }
    Duration::from_secs(ts.tv_sec.max(0) as u64) + Duration::from_nanos(ts.tv_nsec.max(0) as u64)
}

/// Runs the benchmark over `opts.dir`.
pub fn run(opts: &ExtractOptions) -> Result<ExtractSummary, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&opts.dir)
        .map_err(|e| format!("cannot read {}: {e}", opts.dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("pdf"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no .pdf files in {}", opts.dir.display()));
    }
    let pdftotext = opts.pdftotext.clone().or_else(|| find_on_path("pdftotext"));
    let mut out = ExtractSummary {
        pdftotext: pdftotext.as_ref().map(|p| p.display().to_string()),
        ..Default::default()
    };
    for path in &files {
        let r = measure_file(path, opts, pdftotext.as_deref());
        out.files.push(r);
    }
    summarise(&mut out);
    Ok(out)
}

fn summarise(out: &mut ExtractSummary) {
    let ok: Vec<&FileResult> = out.files.iter().filter(|f| f.error.is_none()).collect();
    out.pdfs = out.files.len();
    out.failed = out.files.len() - ok.len();
    out.pages = ok.iter().map(|f| f.pages).sum();
    out.cpu_ms = ok.iter().map(|f| f.cpu_ms).sum();
    let per = |total: f64, n: usize| if n == 0 { 0.0 } else { total / n as f64 };
    out.cpu_ms_per_page = per(out.cpu_ms, out.pages);
    out.cpu_ms_per_pdf = per(out.cpu_ms, ok.len());
    if ok.iter().all(|f| f.worker_cpu_ms.is_some()) && !ok.is_empty() {
        let w: f64 = ok.iter().filter_map(|f| f.worker_cpu_ms).sum();
        out.worker_cpu_ms = Some(w);
        out.worker_cpu_ms_per_page = Some(per(w, out.pages));
    }
    let both: Vec<&&FileResult> = ok
        .iter()
        .filter(|f| f.worker_cpu_ms.is_some() && f.pdftotext_cpu_ms.is_some())
        .collect();
    if !both.is_empty() {
        let w: f64 = both.iter().filter_map(|f| f.worker_cpu_ms).sum();
        let p: f64 = both.iter().filter_map(|f| f.pdftotext_cpu_ms).sum();
        let pages: usize = both.iter().map(|f| f.pages).sum();
        out.pdftotext_cpu_ms = Some(p);
        out.pdftotext_cpu_ms_per_page = Some(per(p, pages));
        out.ratio_to_pdftotext = (p > 0.0).then(|| w / p);
    }
    out.worker_peak_rss_bytes = ok.iter().filter_map(|f| f.worker_peak_rss_bytes).max();
    let stats = |v: Vec<f64>| -> (Option<f64>, Option<f64>) {
        if v.is_empty() {
            return (None, None);
        }
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (Some(mean), v.iter().copied().reduce(f64::min))
    };
    (out.recall_mean, out.recall_min) = stats(ok.iter().filter_map(|f| f.recall).collect());
    (out.clean_recall_mean, out.clean_recall_min) =
        stats(ok.iter().filter_map(|f| f.clean_recall).collect());
}

fn measure_file(path: &Path, opts: &ExtractOptions, pdftotext: Option<&Path>) -> FileResult {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut r = FileResult {
        file: name,
        ..Default::default()
    };
    let bytes = match pdf::read_capped(path, MAX_PDF_BYTES) {
        Ok(b) => b,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    r.bytes = bytes.len() as u64;
    let mut best_cpu = Duration::MAX;
    let mut best_wall = Duration::MAX;
    let mut last = None;
    for _ in 0..opts.reps.max(1) {
        let (c0, w0) = (thread_cpu(), Instant::now());
        let got = pdf::extract_bytes(&bytes);
        best_cpu = best_cpu.min(thread_cpu().saturating_sub(c0));
        best_wall = best_wall.min(w0.elapsed());
        last = Some(got);
    }
    let extracted = match last {
        Some(Ok(x)) => x,
        Some(Err(e)) => {
            r.error = Some(e.to_string());
            return r;
        }
        None => return r,
    };
    r.pages = extracted.pages.len();
    r.cpu_ms = best_cpu.as_secs_f64() * 1e3;
    r.wall_ms = best_wall.as_secs_f64() * 1e3;
    r.cpu_ms_per_page = if r.pages == 0 {
        0.0
    } else {
        r.cpu_ms / r.pages as f64
    };
    r.stats = extracted.stats;
    if let Some(runner) = &opts.runner {
        let args: Vec<String> = vec![
            crate::pipeline::pdf_child::WORKER_SUBCOMMAND.into(),
            "--max-pages".into(),
            "1000000".into(),
            "--max-file-bytes".into(),
            MAX_PDF_BYTES.to_string(),
            "--max-stream-bytes".into(),
            pdf::ExtractLimits::default().max_stream_bytes.to_string(),
            path.display().to_string(),
        ];
        if let Some((cpu, rss)) = child_cpu(runner, &args, opts.reps) {
            r.worker_cpu_ms = Some(cpu);
            r.worker_peak_rss_bytes = rss;
        }
    }
    if let Some(p2t) = pdftotext {
        let args = vec![path.display().to_string(), "/dev/null".into()];
        r.pdftotext_cpu_ms = child_cpu(p2t, &args, opts.reps).map(|(c, _)| c);
    }
    if let (Some(w), Some(p)) = (r.worker_cpu_ms, r.pdftotext_cpu_ms) {
        r.ratio_to_pdftotext = (p > 0.0).then(|| w / p);
    }
    if let Some(dir) = &opts.reference_dir {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let reference = stem
            .map(|s| dir.join(format!("{s}.txt")))
            .and_then(|p| crate::fsx::read_text_capped(&p, MAX_TEXT_BYTES).ok());
        if let Some(reference) = reference {
            let body = reference_body(&reference);
            let text = extracted.pages.join("\n");
            r.recall = Some(recall(&tokens(&body), &tokens(&dehyphenate(&text))));
            let cleaned = clean::clean_pages(&extracted.pages, &clean::CleanOptions::default());
            let ours = format!("{}\n{}", cleaned.paper_text, cleaned.appendix_text);
            let before_refs = cut_at_references(&body);
            r.clean_recall = Some(recall(&tokens(before_refs), &tokens(&ours)));
        }
    }
    r
}

/// Least CPU (ms) of `reps` runs of a child process, and its peak RSS.
fn child_cpu(program: &Path, args: &[String], reps: usize) -> Option<(f64, Option<u64>)> {
    let mut best: Option<f64> = None;
    let mut rss = None;
    for _ in 0..reps.max(1) {
        let before = super::sys::children_cpu();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let started = Instant::now();
        // Polled with a deadline: a hung child is killed, not waited for.
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() < CHILD_DEADLINE => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
        let cpu = super::sys::children_cpu()
            .saturating_sub(before)
            .as_secs_f64()
            * 1e3;
        best = Some(best.map_or(cpu, |b: f64| b.min(cpu)));
        rss = super::sys::children_peak_rss_bytes();
    }
    best.map(|b| (b, rss))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The reference without page furniture: number-only lines and lines
/// that repeat (digits ignored) on three or more pages.
pub fn reference_body(reference: &str) -> String {
    let key = |l: &str| -> String {
        l.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect()
    };
    let pages: Vec<&str> = reference.split('\u{c}').collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for page in &pages {
        let mut keys: Vec<String> = page.lines().map(key).filter(|k| !k.is_empty()).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            *seen.entry(k).or_default() += 1;
        }
    }
    let mut out = String::with_capacity(reference.len());
    for page in pages {
        for line in page.lines() {
            let t = line.trim();
            let numeric = !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit());
            let repeated = seen.get(&key(line)).copied().unwrap_or(0) >= 3;
            if !numeric && !repeated {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The text before its last line that is a references heading.
fn cut_at_references(text: &str) -> &str {
    let mut cut = text.len();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line
            .trim()
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
            .to_lowercase();
        if matches!(
            t.as_str(),
            "references" | "bibliography" | "literature cited" | "references and notes"
        ) {
            cut = at;
        }
        at += line.len();
    }
    &text[..cut]
}

/// Joins words hyphenated at a line end, as pdftotext does.
fn dehyphenate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_end();
        let joins = t.ends_with('-')
            && t.chars().rev().nth(1).is_some_and(char::is_alphabetic)
            && lines
                .peek()
                .and_then(|n| n.trim_start().chars().next())
                .is_some_and(char::is_lowercase);
        if joins {
            out.push_str(&t[..t.len() - 1]);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Lower-cased alphanumeric tokens after NFKC.
pub fn tokens(text: &str) -> Vec<String> {
    let s: String = text.nfkc().collect::<String>().to_lowercase();
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Share of `reference` tokens (a multiset) found in `candidate`.
pub fn recall(reference: &[String], candidate: &[String]) -> f64 {
    let mut have: HashMap<&str, usize> = HashMap::new();
    for t in candidate {
        *have.entry(t.as_str()).or_default() += 1;
    }
    let hits = reference
        .iter()
        .filter(|t| match have.get_mut(t.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count();
    if reference.is_empty() {
        1.0
    } else {
        hits as f64 / reference.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_body_drops_furniture() {
        let words = ["alpha", "beta", "gamma"];
        let page = |n: usize| format!("Journal of Tests {n}\n{} words\n{n}\n", words[n - 1]);
        let reference = (1..=3).map(page).collect::<Vec<_>>().join("\u{c}");
        let body = reference_body(&reference);
        assert!(!body.contains("Journal"), "{body}");
        assert!(body.contains("beta words"));
        assert!(!body.lines().any(|l| l.trim() == "2"));
    }

    #[test]
    fn recall_counts_repeats_and_joins_hyphens() {
        let r = tokens("the cat and the hat");
        assert_eq!(recall(&r, &tokens("the cat and hat")), 0.8);
        assert_eq!(dehyphenate("hyph-\nenated word"), "hyphenated word\n");
        assert_eq!(cut_at_references("a\nReferences\n[1] x\n"), "a\n");
    }
}
