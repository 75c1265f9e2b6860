//! `runner bench pipeline`: the whole runner (scheduler, three phase
//! machines, HTTP client with limiter and ledger, SQLite store) on N
//! synthetic papers against the mock provider, measured from the outside.
//!
//! The mock provider runs in a **child process** so the CPU time and RSS
//! read from this process are the runner's alone. The runner's profiles set
//! `rate_limit` to the provider's per-model RPM: the point is to show the
//! limiter paces at the limit (throughput near the limit bound) without
//! discovering it through 429s.
//!
//! Definitions (docs/benchmarks.md repeats them next to the numbers):
//! - **papers/min** is steady state: papers finished between the W-th and
//!   the (N−W)-th wrap completion over the time between them, which leaves
//!   out the ramp-up (pipeline filling) and the drain (fewer than W in
//!   flight). With N < 3W there is no such window and the whole run is used.
//! - **limit bound** = min(rpm_cheap / 4, rpm_expensive / 3) papers/min
//!   (4 cheap calls and 3 expensive calls per paper with a PASS verdict),
//!   and with `--tpm-cheap` / `--tpm-expensive` also the **token bound** =
//!   min(tpm_cheap / cheap tokens per paper, tpm_expensive / expensive
//!   tokens per paper), tokens per paper as the provider counted them (the
//!   mock's own bill / N). `token_bound_ratio` = papers/min over the token
//!   bound; `tokens_per_min_*` are each model's tokens billed between the
//!   W-th and the (N−W)-th wrap completion (the steady window) per minute.
//! - **cost per paper** = the ledger's known cost / N (the mock bills prompt
//!   and reply tokens at the profiles' prices: cheap $0.10/$0.20, expensive
//!   $3/$15 per million).
//!   **latency bound** = W × 60 s / chain, where chain = 5 × mean latency +
//!   jitter / 2 (prep 1 call, expensive 3 parallel calls = the slowest of
//!   three, wrap 3 sequential calls; a worker slot is held for each). The
//!   lower one applies and `ratio` is measured / applicable bound.
//! - **CPU/paper** = user+sys of this process during the run plus that of
//!   the PDF extraction workers it ran and reaped (child processes, as in
//!   the daemon: `pdf_worker_cpu_s`), / N (PDF generation happens before).
//!   The part spent in PDF extraction and cleaning is estimated by running
//!   the product path — `PdfWorker` with the run's `[pdf]` limits, then the
//!   cleaning — on a sample of the generated PDFs one at a time before the
//!   run (process + children CPU time), and subtracted for
//!   `cpu_s_per_paper_excl_extract`.
//! - **RSS per in-flight paper** = (peak RSS during the run − RSS just
//!   before it) / W; the peak is reset before the run. The workers' memory
//!   is apart: `pdf_worker_peak_rss_bytes` is the largest worker's peak.
//! - **DB bytes/paper** = growth of pages in use from just after the
//!   schema and configs were written to the end of the run, / N; again
//!   after `prune` with keep-done 0. The growth ratio compares the pruned
//!   growth with the paper's clean text plus the LLM answers' text.
//! - **transition overhead** per state instance = time from its
//!   `state_enter` checkpoint to the next `state_enter` / `machine_end`
//!   checkpoint of the same execution (so it includes the state's own exit
//!   and the next enter checkpoint write) minus the time spent inside agent
//!   calls for that state (measured by wrapping the runner's `Agent`; it
//!   includes the limiter wait, which is pacing, not overhead). States that
//!   run PDF extraction or cleaning, and states that run child machines
//!   (their children's states are counted instead), are excluded.

use super::sys;
use crate::engine::{Agent, AgentRequest, AgentResult, ExecError};
use crate::pipeline::clean;
use crate::pipeline::pdf_child::{PdfConfig, PdfWorker};
use crate::runner::build::{build, BuildError, RunOptions};
use crate::runner::config::SchedulerConfig;
use crate::runner::embedded::write_machines;
use crate::runner::scheduler::{Observer, RunMode};
use crate::runner::task::TaskOutcome;
use crate::runner::{Config, Phase};
use crate::store::{NewPaper, PaperStatus, PrunePolicy, Store, StoreError};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::mock::MockStats;
use testkit::synth;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

/// Cheap-model calls per paper with a PASS verdict (key outcome,
/// limitations, assemble, judge).
pub const CHEAP_CALLS_PER_PAPER: u32 = 4;
/// Expensive-model calls per paper (the three analysis children).
pub const EXPENSIVE_CALLS_PER_PAPER: u32 = 3;
/// Sequential LLM latencies that hold a worker slot per paper: prep 1,
/// expensive 1 (three in parallel), wrap 3.
const CHAIN_CALLS: u64 = 5;
/// Model ids the bench profiles use (the mock's rpm limits are keyed by them).
const CHEAP_MODEL: &str = "cheap-bench";
const EXPENSIVE_MODEL: &str = "expensive-bench";
/// Actions whose states are left out of the transition overhead.
const EXTRACTION_ACTIONS: [&str; 2] = ["extract_text", "clean_text"];

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0}")]
    Synth(#[from] synth::SynthError),
    #[error("mock provider: {0}")]
    Mock(String),
    #[error("{0}")]
    Invalid(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub papers: usize,
    pub workers: usize,
    /// Mean mock latency per call.
    pub latency_ms: u64,
    /// Latency varies uniformly by ± this.
    pub jitter_ms: u64,
    pub rpm_cheap: u32,
    pub rpm_expensive: u32,
    /// Provider token limits per minute (also the profiles' `tpm`).
    pub tpm_cheap: Option<u64>,
    pub tpm_expensive: Option<u64>,
    /// Working directory (machines, PDFs, database, reports); created.
    pub dir: PathBuf,
    /// The `runner` executable that serves `mock-llm` in a child process.
    pub mock_exe: PathBuf,
    /// PDFs extracted on one thread before the run to estimate the
    /// extraction CPU per paper.
    pub calibration_papers: usize,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// Percentiles of one state's overhead.
#[derive(Debug, Clone, Serialize)]
pub struct StateOverhead {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Everything measured; field meanings are in the module docs.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineResult {
    pub papers: usize,
    pub workers: usize,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub rpm_cheap: u32,
    pub rpm_expensive: u32,
    pub tpm_cheap: Option<u64>,
    pub tpm_expensive: Option<u64>,
    pub done: u64,
    pub failed: u64,
    pub not_done: u64,
    pub wall_s: f64,
    /// Time worker slots held a phase / (W × wall time), whole run.
    pub slot_busy_fraction: f64,
    /// Seconds of phase tasks per paper (what one paper holds slots for).
    pub phase_s_per_paper: f64,
    pub papers_per_min: f64,
    pub papers_per_min_whole_run: f64,
    /// "steady" (W-th to (N−W)-th completion) or "whole_run".
    pub throughput_window: String,
    pub limit_papers_per_min: f64,
    /// None when the latency is zero (no latency bound).
    pub latency_papers_per_min: Option<f64>,
    /// "rate_limit" or "latency".
    pub bound: String,
    pub bound_papers_per_min: f64,
    /// papers_per_min / bound_papers_per_min.
    pub ratio: f64,
    /// Tokens (prompt + reply) per paper per model, as the provider billed.
    pub tokens_per_paper_cheap: f64,
    pub tokens_per_paper_expensive: f64,
    /// The token bound in papers/min (None without a tpm limit).
    pub token_bound_papers_per_min: Option<f64>,
    /// The binding model's tokens/min in the steady window over its tpm.
    pub token_bound_ratio: Option<f64>,
    /// papers_per_min / token_bound_papers_per_min.
    pub papers_vs_token_bound: Option<f64>,
    /// Tokens billed per minute in the steady window, per model.
    pub tokens_per_min_cheap: f64,
    pub tokens_per_min_expensive: f64,
    /// The ledger's known cost / N.
    pub cost_per_paper: f64,
    /// The provider's own bill / N (equal to the above when nothing is lost).
    pub provider_cost_per_paper: f64,
    /// Ledger rows (one per request attempt).
    pub calls: u64,
    pub calls_per_paper: f64,
    /// Chat requests the mock provider saw.
    pub requests: u64,
    /// 429s the mock provider answered.
    pub rate_limited: u64,
    pub rate_limited_fraction: f64,
    pub cpu_s: f64,
    pub cpu_s_per_paper: f64,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// Most threads seen in the runner process during the run (sampled).
    pub max_threads: u64,
    /// CPU of this process alone during the run (scheduler, store, HTTP,
    /// cleaning; the extraction workers' share of parsing is not in it).
    pub runner_cpu_s: f64,
    /// CPU of the PDF extraction worker processes that ran during the run.
    pub pdf_worker_cpu_s: f64,
    pub extract_cpu_s_per_paper: f64,
    pub cpu_s_per_paper_excl_extract: f64,
    /// CPU of the mock provider's process (not part of the runner's).
    pub mock_cpu_s: Option<f64>,
    /// CPU the rest of the host used during the run (other processes and
    /// the kernel on their behalf): non-zero means the numbers are disturbed.
    pub other_cpu_s: Option<f64>,
    pub host_cpus: usize,
    pub baseline_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// False when the kernel refused to reset the peak before the run.
    pub peak_rss_reset: bool,
    /// Largest peak RSS of one PDF extraction worker (calibration included).
    pub pdf_worker_peak_rss_bytes: Option<u64>,
    pub rss_per_inflight_paper: f64,
    pub paper_text_bytes_per_paper: f64,
    pub prompt_text_bytes_per_paper: f64,
    pub llm_output_bytes_per_paper: f64,
    pub db_bytes_per_paper: f64,
    pub db_bytes_per_paper_pruned: f64,
    /// db_bytes_per_paper_pruned / (paper text + LLM output text).
    pub db_growth_ratio_pruned: f64,
    /// Bytes per paper of the largest columns after pruning.
    pub db_columns_per_paper_pruned: BTreeMap<String, f64>,
    pub overhead_states: usize,
    pub overhead_p50_ms: f64,
    pub overhead_p99_ms: f64,
    pub overhead_by_state: BTreeMap<String, StateOverhead>,
    pub pdf_generation_s: f64,
}

/// A state instance: (execution id, state name, step).
type StateKey = (String, String, u64);

/// The runner's agent, timed: every call's start and end per state
/// instance, so overhead can be told apart from time spent in LLM calls.
struct TimedAgent {
    inner: Arc<dyn Agent>,
    spans: Mutex<HashMap<StateKey, Vec<(Instant, Instant)>>>,
}

#[async_trait]
impl Agent for TimedAgent {
    async fn call(&self, req: AgentRequest) -> Result<AgentResult, ExecError> {
        let key = (req.execution_id.clone(), req.state.clone(), req.step);
        let start = Instant::now();
        let r = self.inner.call(req).await;
        let end = Instant::now();
        if let Ok(mut m) = self.spans.lock() {
            m.entry(key).or_default().push((start, end));
        }
        r
    }
}

impl TimedAgent {
    /// Time covered by the calls of each state instance (overlapping calls,
    /// e.g. `parallel` samples, counted once).
    fn busy(&self) -> HashMap<StateKey, Duration> {
        let Ok(m) = self.spans.lock() else {
            return HashMap::new();
        };
        m.iter()
            .map(|(k, spans)| {
                let mut s = spans.clone();
                s.sort();
                let mut total = Duration::ZERO;
                let mut cur: Option<(Instant, Instant)> = None;
                for (a, b) in s {
                    cur = match cur {
                        Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
                        Some((ca, cb)) => {
                            total += cb - ca;
                            Some((a, b))
                        }
                        None => Some((a, b)),
                    };
                }
                if let Some((a, b)) = cur {
                    total += b - a;
                }
                (k.clone(), total)
            })
            .collect()
    }
}

/// The mock provider as a child process.
pub(super) struct MockChild {
    child: tokio::process::Child,
    pub(super) base_url: String,
    stats_url: String,
    /// Kept open so the child never writes to a closed pipe.
    _stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl MockChild {
    pub(super) async fn start(exe: &Path, script: &Path) -> Result<MockChild, BenchError> {
        let mut child = tokio::process::Command::new(exe)
            .arg("mock-llm")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--script")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("cannot start {} mock-llm", exe.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Mock("no stdout pipe".into()))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| BenchError::Mock("did not announce its address within 30 s".into()))?
            .map_err(io("reading the mock provider's address"))?
            .ok_or_else(|| BenchError::Mock("exited before announcing its address".into()))?;
        let base_url = line
            .trim()
            .strip_prefix("mock-llm listening on ")
            .ok_or_else(|| BenchError::Mock(format!("unexpected first line: {line}")))?
            .to_string();
        let stats_url = format!("{}/stats", base_url.trim_end_matches("/v1"));
        Ok(MockChild {
            child,
            base_url,
            stats_url,
            _stdout: lines,
        })
    }

    pub(super) async fn stats(&self) -> Result<MockStats, BenchError> {
        let resp = reqwest::get(&self.stats_url)
            .await
            .map_err(|e| BenchError::Mock(format!("GET {}: {e}", self.stats_url)))?;
        resp.json::<MockStats>()
            .await
            .map_err(|e| BenchError::Mock(format!("GET {}: {e}", self.stats_url)))
    }

    /// User+sys CPU seconds of the child so far (from /proc).
    fn cpu_s(&self) -> Option<f64> {
        let pid = self.child.id()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th fields overall.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some(ticks / sys::clock_ticks()?)
    }

    pub(super) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Prices of the bench models per million tokens (prompt, reply): the
/// mock bills them and the profiles carry them.
const CHEAP_PRICE: (f64, f64) = (0.1, 0.2);
const EXPENSIVE_PRICE: (f64, f64) = (3.0, 15.0);

/// `, tpm: N, token_headers: true` for a token-limited model.
fn tpm_field(tpm: Option<u64>) -> String {
    tpm.map_or(String::new(), |t| {
        format!(", tpm: {t}, token_headers: true")
    })
}

pub(super) fn mock_script(o: &PipelineOptions) -> String {
    format!(
        "# Written by `runner bench pipeline`.\n\
         latency_ms: {}\njitter_ms: {}\nmodels:\n\
         \x20 {CHEAP_MODEL}: {{rpm: {}{}, prompt_cost_per_mtok: {}, completion_cost_per_mtok: {}}}\n\
         \x20 {EXPENSIVE_MODEL}: {{rpm: {}{}, prompt_cost_per_mtok: {}, completion_cost_per_mtok: {}}}\n",
        o.latency_ms,
        o.jitter_ms,
        o.rpm_cheap,
        tpm_field(o.tpm_cheap),
        CHEAP_PRICE.0,
        CHEAP_PRICE.1,
        o.rpm_expensive,
        tpm_field(o.tpm_expensive),
        EXPENSIVE_PRICE.0,
        EXPENSIVE_PRICE.1,
    )
}

/// Profiles on the mock provider, paced at the provider's limits.
pub(super) fn profiles(base_url: &str, o: &PipelineOptions) -> String {
    let tpm = |t: Option<u64>| t.map_or(String::new(), |t| format!(", tpm: {t}"));
    let price = |p: (f64, f64)| {
        format!(
            "price: {{input_per_mtok: {}, output_per_mtok: {}}}",
            p.0, p.1
        )
    };
    format!(
        "# Written by `runner bench pipeline`: both profiles on the mock provider,\n\
         # rate_limit (and tpm) = the provider's limits so the client paces at them.\n\
         spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n\
         \x20   cheap: {{provider: mock, name: mock/{CHEAP_MODEL}, base_url: \"{base_url}\", timeout: 600, max_tokens: 4000, rate_limit: \"{}/m\"{}, {}}}\n\
         \x20   expensive: {{provider: mock, name: mock/{EXPENSIVE_MODEL}, base_url: \"{base_url}\", timeout: 600, max_tokens: 8000, rate_limit: \"{}/m\"{}, {}}}\n\
         \x20 default: cheap\n",
        o.rpm_cheap,
        tpm(o.tpm_cheap),
        price(CHEAP_PRICE),
        o.rpm_expensive,
        tpm(o.tpm_expensive),
        price(EXPENSIVE_PRICE),
    )
}

/// What the queue needs of a generated paper; the laid-out text is
/// dropped as soon as its PDF is written, so it is not counted as runner
/// memory.
pub(super) struct QueuedPaper {
    pub(super) arxiv_id: String,
    pub(super) title: String,
    pub(super) abstract_text: String,
    pub(super) path: PathBuf,
}

pub(super) struct Generated {
    pub(super) papers: Vec<QueuedPaper>,
    seconds: f64,
}

pub(super) fn generate(dir: &Path, n: usize) -> Result<Generated, BenchError> {
    let started = Instant::now();
    let pdfs = dir.join("papers");
    std::fs::create_dir_all(&pdfs).map_err(io(format!("cannot create {}", pdfs.display())))?;
    let mut papers = Vec::with_capacity(n);
    for i in 0..n {
        let path = pdfs.join(format!("paper-{i:06}.pdf"));
        let p = synth::write_pdf(i as u64, &path)?;
        papers.push(QueuedPaper {
            arxiv_id: p.arxiv_id,
            title: p.title,
            abstract_text: p.abstract_text,
            path,
        });
    }
    Ok(Generated {
        papers,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// CPU seconds per paper of what `extract_text` + `clean_text` do, on
/// the sample PDFs, through the product path: a [`PdfWorker`] process per
/// PDF under `limits`, then cleaning here. Measured as this process's CPU
/// plus its reaped children's, one PDF at a time, with nothing else running.
async fn calibrate_extraction(paths: &[PathBuf], budget: usize, limits: &PdfConfig) -> f64 {
    if paths.is_empty() {
        return 0.0;
    }
    let worker = PdfWorker::new(limits.clone());
    let t0 = sys::process_cpu() + sys::children_cpu();
    for p in paths {
        match worker.extract(p).await {
            Ok(x) => {
                let c = clean::clean_pages(
                    &x.pages,
                    &clean::CleanOptions {
                        token_budget: budget,
                    },
                );
                std::hint::black_box(clean::trim_for_prompt(&c, budget));
            }
            Err(e) => {
                tracing::warn!(pdf = %p.display(), error = %e, "calibration extraction failed")
            }
        }
    }
    let t1 = sys::process_cpu() + sys::children_cpu();
    (t1.saturating_sub(t0)).as_secs_f64() / paths.len() as f64
}

/// The value at quantile `p` of `sorted` (nearest rank; 0 when empty).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The bounds on throughput for these options.
pub fn bounds(o: &PipelineOptions) -> (f64, Option<f64>) {
    let limit = (o.rpm_cheap as f64 / CHEAP_CALLS_PER_PAPER as f64)
        .min(o.rpm_expensive as f64 / EXPENSIVE_CALLS_PER_PAPER as f64);
    let chain_ms = CHAIN_CALLS as f64 * o.latency_ms as f64 + o.jitter_ms as f64 / 2.0;
    let latency = (chain_ms > 0.0).then(|| o.workers as f64 * 60_000.0 / chain_ms);
    (limit, latency)
}

/// Steady-state and whole-run papers/min from wrap completion times.
fn throughput(done: &[Instant], start: Instant, w: usize) -> (f64, f64, &'static str) {
    let n = done.len();
    let whole = match done.last() {
        Some(last) if *last > start => n as f64 * 60.0 / (*last - start).as_secs_f64(),
        _ => 0.0,
    };
    if w >= 1 && n >= 3 * w {
        let (a, b) = (done[w - 1], done[n - w - 1]);
        let secs = (b - a).as_secs_f64();
        if secs > 0.0 {
            return ((n - 2 * w) as f64 * 60.0 / secs, whole, "steady");
        }
    }
    (whole, whole, "whole_run")
}

/// The steady window: the W-th to the (N−W)-th wrap completion (None
/// when there is none, N < 3W).
fn steady_window(done: &[Instant], w: usize) -> Option<(Instant, Instant)> {
    let n = done.len();
    (w >= 1 && n >= 3 * w && done[n - w - 1] > done[w - 1]).then(|| (done[w - 1], done[n - w - 1]))
}

/// Tokens `model` was billed for (ledger rows settled) in `window`, per
/// minute; 0 without a window.
async fn tokens_per_min(
    store: &Store,
    model: &str,
    window: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
) -> Result<f64, BenchError> {
    let Some((a, b)) = window else {
        return Ok(0.0);
    };
    let minutes = (b - a).num_milliseconds() as f64 / 60_000.0;
    let m = model.to_string();
    let tokens = store
        .run(move |s| s.tokens_settled_between(&m, a, b))
        .await?;
    Ok(if minutes > 0.0 {
        tokens as f64 / minutes
    } else {
        0.0
    })
}

/// (machine, state) pairs left out of the overhead: extraction/cleaning
/// actions and states that run child machines.
fn excluded_states(built: &crate::runner::build::Built) -> HashSet<(String, String)> {
    let mut out = HashSet::new();
    for pm in built.machines.values() {
        for m in &pm.bundle.machines {
            for (name, s) in &m.states {
                let extraction = s
                    .action
                    .as_deref()
                    .is_some_and(|a| EXTRACTION_ACTIONS.contains(&a));
                if extraction || s.machine.is_some() || s.foreach.is_some() {
                    out.insert((m.name.clone(), name.clone()));
                }
            }
        }
    }
    out
}

fn parse_ts(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

type Overheads = (Vec<f64>, BTreeMap<String, Vec<f64>>);

/// Transition overhead per state instance, in ms (see the module docs).
fn overheads(
    store: &Store,
    excluded: &HashSet<(String, String)>,
    busy: &HashMap<StateKey, Duration>,
) -> Result<Overheads, BenchError> {
    let mut all = Vec::new();
    let mut by_state: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    // The open state_enter of the current execution: (exec, machine, step, state, ts).
    let mut open: Option<(String, String, u64, String, chrono::DateTime<chrono::Utc>)> = None;
    for row in store.checkpoint_timings()? {
        let (exec, machine, step, event, state, ts) = (
            row.execution_id,
            row.machine,
            row.step,
            row.event,
            row.state,
            row.created_at,
        );
        let Some(ts) = parse_ts(&ts) else { continue };
        let closes = matches!(
            event.as_str(),
            "state_enter" | "machine_end" | "machine_failed"
        );
        if closes {
            if let Some((oe, om, os, ost, ots)) = open.take() {
                if oe == exec && !excluded.contains(&(om.clone(), ost.clone())) {
                    let dur = (ts - ots).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                    let agent = busy
                        .get(&(oe, ost.clone(), os))
                        .map(|d| d.as_secs_f64() * 1000.0)
                        .unwrap_or(0.0);
                    let ms = (dur - agent).max(0.0);
                    all.push(ms);
                    by_state.entry(format!("{om}.{ost}")).or_default().push(ms);
                }
            }
        }
        if event == "state_enter" {
            if let Some(s) = state {
                open = Some((exec, machine, step.max(0) as u64, s, ts));
            }
        }
    }
    Ok((all, by_state))
}

/// Run the benchmark. `opts.dir` is created and left in place.
pub async fn run(opts: &PipelineOptions) -> Result<PipelineResult, BenchError> {
    if opts.papers == 0 || opts.workers == 0 {
        return Err(BenchError::Invalid(
            "--papers and --workers must be at least 1".into(),
        ));
    }
    if opts.rpm_cheap == 0 || opts.rpm_expensive == 0 {
        return Err(BenchError::Invalid("rpm limits must be at least 1".into()));
    }
    if [opts.tpm_cheap, opts.tpm_expensive].contains(&Some(0)) {
        return Err(BenchError::Invalid("tpm limits must be at least 1".into()));
    }
    let dir = opts.dir.clone();
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let cfg = Config {
        db: dir.join("data/runner.db"),
        machines_dir: dir.join("machines"),
        pdf_dir: dir.join("data/pdfs"),
        reports_dir: dir.join("reports"),
        terminology: Some(dir.join("machines/terminology.yml")),
        scheduler: SchedulerConfig {
            workers: opts.workers,
            ..SchedulerConfig::default()
        },
        ..Config::default()
    };
    let budget = cfg.prompt_token_budget;

    // 1. Inputs, before anything is measured.
    let n = opts.papers;
    let (dir2, k) = (dir.clone(), opts.calibration_papers.min(n));
    let generated = tokio::task::spawn_blocking(move || generate(&dir2, n))
        .await
        .map_err(|e| BenchError::Invalid(format!("generator task failed: {e}")))??;
    let sample: Vec<PathBuf> = generated
        .papers
        .iter()
        .take(k)
        .map(|p| p.path.clone())
        .collect();
    let extract_cpu = calibrate_extraction(&sample, budget, &cfg.pdf).await;
    if opts.progress {
        eprintln!(
            "bench: {n} synthetic papers in {:.1} s; extraction+cleaning ≈ {:.1} ms CPU/paper",
            generated.seconds,
            extract_cpu * 1000.0
        );
    }

    // 2. The mock provider (child process) and the runner directory.
    let script = dir.join("mock.yml");
    std::fs::write(&script, mock_script(opts)).map_err(io("cannot write the mock script"))?;
    let mock = MockChild::start(&opts.mock_exe, &script).await?;
    let result = measured(opts, &cfg, &generated, extract_cpu, &mock).await;
    mock.stop().await;
    result
}

async fn measured(
    opts: &PipelineOptions,
    cfg: &Config,
    generated: &Generated,
    extract_cpu: f64,
    mock: &MockChild,
) -> Result<PipelineResult, BenchError> {
    let (n, w) = (opts.papers, opts.workers);
    write_machines(&cfg.machines_dir).map_err(io("cannot write the machines"))?;
    std::fs::write(
        cfg.machines_dir.join("profiles.yml"),
        profiles(&mock.base_url, opts),
    )
    .map_err(io("cannot write the profiles"))?;
    for d in [&cfg.pdf_dir, &cfg.reports_dir] {
        std::fs::create_dir_all(d).map_err(io(format!("cannot create {}", d.display())))?;
    }
    let settings = cfg
        .resolve()
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let built = build(
        &settings,
        &RunOptions {
            mode: RunMode::SinglePass,
            prep_only: false,
        },
    )?;
    let store = built.store.clone();
    let excluded = excluded_states(&built);
    let db_before = store.size_bytes()?;
    {
        let (s, papers) = (
            store.clone(),
            generated
                .papers
                .iter()
                .map(|p| NewPaper {
                    arxiv_id: p.arxiv_id.clone(),
                    title: Some(p.title.clone()),
                    abstract_text: Some(p.abstract_text.clone()),
                    pdf_path: Some(p.path.display().to_string()),
                    source: "bench".into(),
                    ..NewPaper::default()
                })
                .collect::<Vec<_>>(),
        );
        tokio::task::spawn_blocking(move || {
            for p in &papers {
                s.add_paper(p)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| BenchError::Invalid(format!("queueing task failed: {e}")))??;
    }

    let mut scheduler = built.scheduler;
    let env = Arc::get_mut(&mut scheduler.env).ok_or_else(|| {
        BenchError::Invalid("the runner's task environment is already shared".into())
    })?;
    let timed = Arc::new(TimedAgent {
        inner: env.agent.clone(),
        spans: Mutex::new(HashMap::new()),
    });
    env.agent = timed.clone();
    let done_at: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let slot_time: Arc<Mutex<(Duration, u64, u64)>> = Arc::new(Mutex::new((Duration::ZERO, 0, 0)));
    let (d2, s2, progress, step) = (
        done_at.clone(),
        slot_time.clone(),
        opts.progress,
        (n / 10).max(1),
    );
    let observer: Observer = Arc::new(move |report, _stats| {
        if let Ok(mut t) = s2.lock() {
            t.0 += report.duration;
            t.1 += 1;
            // Thread count now and then: a growing blocking pool shows here.
            if t.1 % 64 == 1 {
                t.2 = t.2.max(sys::threads().unwrap_or(0));
            }
        }
        if report.phase == Phase::Wrap && report.outcome == TaskOutcome::Finished {
            if let Ok(mut d) = d2.lock() {
                d.push(Instant::now());
                if progress && d.len() % step == 0 {
                    eprintln!("bench: {}/{n} papers done", d.len());
                }
            }
        }
    });
    scheduler.observer = Some(observer);

    // 3. The measured run.
    let peak_rss_reset = sys::reset_peak_rss();
    let rss0 = sys::rss_bytes().unwrap_or(0);
    let usage0 = sys::process_usage();
    let cpu0 = sys::process_cpu();
    let workers_cpu0 = sys::children_cpu();
    let mock_cpu0 = mock.cpu_s();
    let host0 = sys::host_busy_cpu();
    let t0 = Instant::now();
    let wall_t0 = chrono::Utc::now();
    let summary = scheduler
        .run(CancellationToken::new(), CancellationToken::new())
        .await;
    let wall = t0.elapsed();
    // The mock provider is still running, so the children's CPU is the
    // extraction workers' alone.
    let runner_cpu = (sys::process_cpu() - cpu0).as_secs_f64();
    let worker_cpu = (sys::children_cpu().saturating_sub(workers_cpu0)).as_secs_f64();
    let cpu = runner_cpu + worker_cpu;
    let usage1 = sys::process_usage();
    let peak = sys::peak_rss_bytes().unwrap_or(0);
    let mock_cpu = match (mock_cpu0, mock.cpu_s()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let other_cpu = match (host0, sys::host_busy_cpu()) {
        (Some(a), Some(b)) => {
            Some(((b - a).as_secs_f64() - cpu - mock_cpu.unwrap_or(0.0)).max(0.0))
        }
        _ => None,
    };
    drop(scheduler);
    tracing::debug!(?summary, "bench run finished");

    // 4. What the run left behind.
    let stats = mock.stats().await?;
    let busy = timed.busy();
    let s = store.clone();
    let analysis = tokio::task::spawn_blocking(move || analyse(&s, &excluded, &busy))
        .await
        .map_err(|e| BenchError::Invalid(format!("analysis task failed: {e}")))??;

    let (slot_s, max_threads) = slot_time
        .lock()
        .map(|t| (t.0.as_secs_f64(), t.2.max(sys::threads().unwrap_or(0))))
        .unwrap_or((0.0, 0));
    let mut done = done_at.lock().map(|d| d.clone()).unwrap_or_default();
    done.sort();
    let (ppm, ppm_whole, window) = throughput(&done, t0, w);
    let (limit, latency) = bounds(opts);
    let (bound, bound_ppm) = match latency {
        Some(l) if l < limit => ("latency", l),
        _ => ("rate_limit", limit),
    };
    let nf = n as f64;
    let rate_limited = stats.by_status.get("429").copied().unwrap_or(0);
    let billed = |model: &str| {
        stats
            .billed_by_model
            .get(model)
            .cloned()
            .unwrap_or_default()
    };
    let (cheap_bill, exp_bill) = (billed(CHEAP_MODEL), billed(EXPENSIVE_MODEL));
    let tokens_per_paper = |b: &testkit::mock::Billed| {
        (b.prompt_tokens + b.completion_tokens) as f64 / (analysis.done.max(1)) as f64
    };
    let (tok_cheap, tok_exp) = (tokens_per_paper(&cheap_bill), tokens_per_paper(&exp_bill));
    // (papers/min the limit allows, model, its tpm) of the binding model.
    let binding = [
        (opts.tpm_cheap, tok_cheap, CHEAP_MODEL),
        (opts.tpm_expensive, tok_exp, EXPENSIVE_MODEL),
    ]
    .into_iter()
    .filter_map(|(tpm, per_paper, model)| tpm.map(|t| (t as f64 / per_paper.max(1.0), model, t)))
    .reduce(|a, b| if b.0 < a.0 { b } else { a });
    let token_bound = binding.map(|b| b.0);
    let (bound, bound_ppm) = match token_bound {
        Some(t) if t < bound_ppm => ("token_limit", t),
        _ => (bound, bound_ppm),
    };
    let steady = steady_window(&done, w).map(|(a, b)| (wall_t0 + (a - t0), wall_t0 + (b - t0)));
    let (tpm_cheap_seen, tpm_exp_seen) = (
        tokens_per_min(&store, CHEAP_MODEL, steady).await?,
        tokens_per_min(&store, EXPENSIVE_MODEL, steady).await?,
    );
    let cost: f64 = {
        let s = store.clone();
        s.run(|s| s.spend_by_model())
            .await?
            .iter()
            .map(|m| m.cost)
            .sum()
    };
    let reference = analysis.paper_text_bytes + analysis.llm_output_bytes;
    let pruned_growth = analysis.db_after_prune.saturating_sub(db_before) as f64;
    Ok(PipelineResult {
        papers: n,
        workers: w,
        latency_ms: opts.latency_ms,
        jitter_ms: opts.jitter_ms,
        rpm_cheap: opts.rpm_cheap,
        rpm_expensive: opts.rpm_expensive,
        tpm_cheap: opts.tpm_cheap,
        tpm_expensive: opts.tpm_expensive,
        done: analysis.done,
        failed: analysis.failed,
        not_done: (n as u64).saturating_sub(analysis.done + analysis.failed),
        wall_s: wall.as_secs_f64(),
        slot_busy_fraction: slot_s / (w as f64 * wall.as_secs_f64()).max(1e-9),
        phase_s_per_paper: slot_s / nf,
        papers_per_min: ppm,
        papers_per_min_whole_run: ppm_whole,
        throughput_window: window.into(),
        limit_papers_per_min: limit,
        latency_papers_per_min: latency,
        bound: bound.into(),
        bound_papers_per_min: bound_ppm,
        ratio: if bound_ppm > 0.0 {
            ppm / bound_ppm
        } else {
            0.0
        },
        tokens_per_paper_cheap: tok_cheap,
        tokens_per_paper_expensive: tok_exp,
        token_bound_papers_per_min: token_bound,
        token_bound_ratio: binding.map(|(_, model, tpm)| {
            let seen = if model == CHEAP_MODEL {
                tpm_cheap_seen
            } else {
                tpm_exp_seen
            };
            seen / tpm as f64
        }),
        papers_vs_token_bound: token_bound.filter(|t| *t > 0.0).map(|t| ppm / t),
        tokens_per_min_cheap: tpm_cheap_seen,
        tokens_per_min_expensive: tpm_exp_seen,
        cost_per_paper: crate::store::round_money(cost / nf),
        provider_cost_per_paper: crate::store::round_money((cheap_bill.cost + exp_bill.cost) / nf),
        calls: analysis.calls,
        calls_per_paper: analysis.calls as f64 / nf,
        requests: stats.requests,
        rate_limited,
        rate_limited_fraction: rate_limited as f64 / (stats.requests.max(1)) as f64,
        cpu_s: cpu,
        cpu_s_per_paper: cpu / nf,
        cpu_user_s: (usage1.user.saturating_sub(usage0.user)).as_secs_f64(),
        cpu_sys_s: (usage1.system.saturating_sub(usage0.system)).as_secs_f64(),
        voluntary_switches: usage1
            .voluntary_switches
            .saturating_sub(usage0.voluntary_switches),
        involuntary_switches: usage1
            .involuntary_switches
            .saturating_sub(usage0.involuntary_switches),
        max_threads,
        runner_cpu_s: runner_cpu,
        pdf_worker_cpu_s: worker_cpu,
        extract_cpu_s_per_paper: extract_cpu,
        cpu_s_per_paper_excl_extract: (cpu / nf - extract_cpu).max(0.0),
        mock_cpu_s: mock_cpu,
        other_cpu_s: other_cpu,
        host_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        baseline_rss_bytes: rss0,
        peak_rss_bytes: peak,
        peak_rss_reset,
        pdf_worker_peak_rss_bytes: sys::children_peak_rss_bytes(),
        rss_per_inflight_paper: peak.saturating_sub(rss0) as f64 / w as f64,
        paper_text_bytes_per_paper: analysis.paper_text_bytes as f64 / nf,
        prompt_text_bytes_per_paper: analysis.prompt_text_bytes as f64 / nf,
        llm_output_bytes_per_paper: analysis.llm_output_bytes as f64 / nf,
        db_bytes_per_paper: analysis.db_after_run.saturating_sub(db_before) as f64 / nf,
        db_bytes_per_paper_pruned: pruned_growth / nf,
        db_growth_ratio_pruned: if reference > 0 {
            pruned_growth / reference as f64
        } else {
            0.0
        },
        db_columns_per_paper_pruned: analysis
            .columns
            .into_iter()
            .map(|(k, v)| (k, v as f64 / nf))
            .collect(),
        overhead_states: analysis.overhead.len(),
        overhead_p50_ms: percentile(&analysis.overhead, 0.50),
        overhead_p99_ms: percentile(&analysis.overhead, 0.99),
        overhead_by_state: analysis
            .overhead_by_state
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_by(f64::total_cmp);
                let o = StateOverhead {
                    n: v.len(),
                    p50_ms: percentile(&v, 0.50),
                    p99_ms: percentile(&v, 0.99),
                };
                (k, o)
            })
            .collect(),
        pdf_generation_s: generated.seconds,
    })
}

struct Analysis {
    done: u64,
    failed: u64,
    calls: u64,
    paper_text_bytes: u64,
    prompt_text_bytes: u64,
    llm_output_bytes: u64,
    db_after_run: u64,
    db_after_prune: u64,
    columns: BTreeMap<String, u64>,
    overhead: Vec<f64>,
    overhead_by_state: BTreeMap<String, Vec<f64>>,
}

fn text_len(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_str).map_or(0, |s| s.len() as u64)
}

/// Read counts, sizes and timings from the database, then prune it.
fn analyse(
    store: &Store,
    excluded: &HashSet<(String, String)>,
    busy: &HashMap<StateKey, Duration>,
) -> Result<Analysis, BenchError> {
    let counts: HashMap<PaperStatus, u64> = store.status_counts()?.into_iter().collect();
    // Calls, and the answers' text as the model produced it (not the
    // ledger's JSON wrapping of it).
    let (calls, llm_output_bytes) = store.llm_call_volume()?;
    let (mut paper_text_bytes, mut prompt_text_bytes) = (0u64, 0u64);
    for p in store.papers(&[])? {
        let results = store.phase_results(&p.id)?;
        if let Some(prep) = results.get("prep") {
            paper_text_bytes += text_len(prep.get("paper_text"));
            prompt_text_bytes += text_len(prep.get("prompt_text"));
        }
    }
    let (mut overhead, by_state) = overheads(store, excluded, busy)?;
    overhead.sort_by(f64::total_cmp);
    let db_after_run = store.size_bytes()?;
    let report = store.prune(&PrunePolicy {
        keep_done: Duration::ZERO,
        ..PrunePolicy::default()
    })?;
    let mut columns = BTreeMap::new();
    for (name, bytes) in store.column_bytes()? {
        columns.insert(name, bytes);
    }
    Ok(Analysis {
        done: counts.get(&PaperStatus::Done).copied().unwrap_or(0),
        failed: counts.get(&PaperStatus::Failed).copied().unwrap_or(0),
        calls,
        paper_text_bytes,
        prompt_text_bytes,
        llm_output_bytes,
        db_after_run,
        db_after_prune: report.bytes_after,
        columns,
        overhead,
        overhead_by_state: by_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(w: usize, latency: u64, jitter: u64, cheap: u32, exp: u32) -> PipelineOptions {
        PipelineOptions {
            papers: 10,
            workers: w,
            latency_ms: latency,
            jitter_ms: jitter,
            rpm_cheap: cheap,
            rpm_expensive: exp,
            tpm_cheap: None,
            tpm_expensive: None,
            dir: PathBuf::new(),
            mock_exe: PathBuf::new(),
            calibration_papers: 0,
            progress: false,
        }
    }

    #[test]
    fn the_lower_bound_applies() {
        // 6000/4 = 1500, 4500/3 = 1500 papers/min from the limits.
        let (limit, lat) = bounds(&opts(200, 2000, 0, 6000, 4500));
        assert_eq!(limit, 1500.0);
        // 200 slots × 60 s / 10 s per paper.
        assert_eq!(lat, Some(1200.0));
        let (limit, _) = bounds(&opts(10, 0, 0, 400, 3000));
        assert_eq!(limit, 100.0);
        assert_eq!(bounds(&opts(10, 0, 0, 400, 3000)).1, None);
    }

    #[test]
    fn steady_state_leaves_out_ramp_up_and_drain() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Slow start and slow end, steady 1 paper/s in between.
        let mut done = vec![t0 + s(10), t0 + s(20)];
        done.extend((0..6).map(|i| t0 + s(21 + i)));
        done.extend([t0 + s(60), t0 + s(90)]);
        let (steady, whole, window) = throughput(&done, t0, 2);
        assert_eq!(window, "steady");
        // done[1] = 20 s .. done[7] = 26 s: 6 papers in 6 s.
        assert_eq!(steady, 60.0);
        assert_eq!(whole, 10.0 * 60.0 / 90.0);
        let (a, b, w) = throughput(&done[..4], t0, 2);
        assert_eq!((w, a), ("whole_run", b));
    }

    #[test]
    fn overlapping_calls_count_once() {
        let a = TimedAgent {
            inner: Arc::new(crate::engine::NoLlm),
            spans: Mutex::new(HashMap::new()),
        };
        let t = Instant::now();
        let ms = Duration::from_millis;
        let key = ("e".to_string(), "s".to_string(), 1u64);
        a.spans.lock().unwrap().insert(
            key.clone(),
            vec![
                (t, t + ms(10)),
                (t + ms(5), t + ms(20)),
                (t + ms(30), t + ms(40)),
            ],
        );
        assert_eq!(a.busy()[&key], ms(30));
    }
}
