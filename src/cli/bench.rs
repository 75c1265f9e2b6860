//! `runner bench …`.

use super::exit::{CliResult, Code};
use clap::{Args, Subcommand};
use paper_runner::bench::checkpoint;
use paper_runner::bench::pipeline::{self, PipelineOptions, PipelineResult};
use paper_runner::store::Synchronous;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Checkpoint write throughput, latency and DB growth per transition.
    Checkpoint(CheckpointArgs),
    /// N synthetic papers through all three phases against a mock provider
    /// in a child process: throughput against the rate-limit bound, 429s,
    /// CPU, RSS and DB bytes per paper, transition overhead.
    Pipeline(PipelineArgs),
    /// PDF extraction on a folder of PDFs: CPU per PDF and per page (in
    /// process and as a worker process, against pdftotext when installed),
    /// peak RSS, and body-word recall against reference texts.
    Extract(ExtractArgs),
    /// The dashboard on a large generated queue (100,000 papers and
    /// 1,000,000 ledger rows by default): time per page over HTTP.
    Dashboard(DashboardArgs),
}

#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// Papers in the generated queue.
    #[arg(long, default_value_t = 100_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub papers: usize,
    /// LLM ledger rows in the generated queue.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=100_000_000))]
    pub calls: usize,
    /// Timed requests per page (after one warm-up).
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub runs: usize,
    /// Keep the generated database here; an existing file, or a
    /// PostgreSQL URL (filled with `runner migrate-db` from a generated
    /// file), is used as it is.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExtractArgs {
    /// Folder of PDFs (every *.pdf in it).
    pub dir: PathBuf,
    /// Folder of reference texts, NAME.txt for NAME.pdf (`pdftotext NAME.pdf`).
    #[arg(long)]
    pub reference_dir: Option<PathBuf>,
    /// Runs per file; the least CPU time is kept.
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub reps: usize,
    /// pdftotext binary to compare with (default: `pdftotext` on PATH, skipped when absent).
    #[arg(long)]
    pub pdftotext: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PipelineArgs {
    /// Synthetic papers to run (use N >= 3 x workers for a steady-state window).
    #[arg(long, default_value_t = 50, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub papers: usize,
    /// Phases in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub workers: usize,
    /// Mean mock latency per LLM call in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub latency_ms: u64,
    /// Latency varies uniformly by +/- this (default: half the mean).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub jitter_ms: Option<u64>,
    /// Provider limit of the cheap model, requests per minute (also the
    /// runner's rate_limit).
    #[arg(long, default_value_t = 6000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub rpm_cheap: u32,
    /// Provider limit of the expensive model, requests per minute.
    #[arg(long, default_value_t = 4500, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub rpm_expensive: u32,
    /// Provider token limit of the cheap model, tokens per minute (also
    /// the profile's tpm); unset: no token limit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    pub tpm_cheap: Option<u64>,
    /// Provider token limit of the expensive model, tokens per minute.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    pub tpm_expensive: Option<u64>,
    /// Run in (and keep) this directory instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run with this many separate `runner` processes sharing one
    /// database (what several hosts do) instead of in-process.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub processes: Option<usize>,
    /// The shared database for --processes: an empty PostgreSQL database
    /// (`postgres://…`) or SQLite file (default: a file in the bench dir).
    #[arg(long, requires = "processes")]
    pub db: Option<PathBuf>,
    /// PDFs extracted before the run to estimate extraction CPU per paper.
    #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=10_000))]
    pub calibration_papers: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// Database to write to (default: a fresh temporary file).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Transitions per scenario.
    #[arg(long, default_value_t = 20_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    pub transitions: usize,
    /// Fsync every commit (synchronous=FULL).
    #[arg(long)]
    pub sync_full: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BenchCmd) -> CliResult {
    match cmd {
        BenchCmd::Checkpoint(a) => bench_checkpoint(a),
        BenchCmd::Extract(a) => bench_extract(a),
        BenchCmd::Dashboard(a) => bench_dashboard(a),
        BenchCmd::Pipeline(a) => match bench_pipeline(a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                Err(Code::Failure.into())
            }
        },
    }
}

fn bench_pipeline(a: PipelineArgs) -> anyhow::Result<CliResult> {
    use anyhow::Context as _;
    let exe = std::env::current_exe().context("cannot find the runner executable")?;
    let temp = a.dir.is_none();
    let dir = a.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "paper-runner-bench-pipeline-{}",
            std::process::id()
        ))
    });
    let opts = PipelineOptions {
        papers: a.papers,
        workers: a.workers,
        latency_ms: a.latency_ms,
        jitter_ms: a.jitter_ms.unwrap_or(a.latency_ms / 2),
        rpm_cheap: a.rpm_cheap,
        rpm_expensive: a.rpm_expensive,
        tpm_cheap: a.tpm_cheap,
        tpm_expensive: a.tpm_expensive,
        dir: dir.clone(),
        mock_exe: exe,
        calibration_papers: a.calibration_papers,
        progress: !a.json,
    };
    let rt = super::machine::runtime()?;
    if let Some(processes) = a.processes {
        let result = rt.block_on(paper_runner::bench::multi::run(
            &opts,
            a.db.as_deref(),
            processes,
        ));
        if temp {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let r = result?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "{} runner processes × {} workers on {}: {}/{} papers done in {:.1} s",
                r.processes, r.workers_per_process, r.backend, r.done, r.papers, r.seconds
            );
            println!(
                "papers/min {:.1} (limit bound {:.1}, ratio {:.2}); provider requests {}, 429s {}; phases finished twice: {}",
                r.papers_per_min, r.limit_bound_papers_per_min, r.ratio_to_limit, r.provider_requests, r.provider_429s, r.duplicate_finishes
            );
            for (owner, n) in &r.claims_per_process {
                println!("  {owner:<40} {n:>6} claims");
            }
        }
        return Ok(if r.done == r.papers as u64 && r.duplicate_finishes == 0 {
            Ok(())
        } else {
            Err(Code::Failure.into())
        });
    }
    let result = rt.block_on(pipeline::run(&opts));
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let r = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_pipeline(&r);
    }
    Ok(if r.done == r.papers as u64 {
        Ok(())
    } else {
        Err(Code::Failure.into())
    })
}

fn bench_extract(a: ExtractArgs) -> CliResult {
    use paper_runner::bench::extract::{self, ExtractOptions};
    let opts = ExtractOptions {
        dir: a.dir,
        reference_dir: a.reference_dir,
        reps: a.reps,
        runner: std::env::current_exe().ok(),
        pdftotext: a.pdftotext,
    };
    let r = match extract::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(Code::Usage.into());
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        println!(
            "{:<44} {:>5} {:>8} {:>8} {:>9} {:>9} {:>6} {:>7} {:>7} {:>3} {:>3}",
            "file",
            "pages",
            "cpu ms",
            "ms/page",
            "worker ms",
            "p2t ms",
            "ratio",
            "recall",
            "clean",
            "tbl",
            "fn"
        );
        for f in &r.files {
            if let Some(e) = &f.error {
                println!("{:<44} error: {e}", f.file);
                continue;
            }
            println!(
                "{:<44} {:>5} {:>8.1} {:>8.2} {:>9} {:>9} {:>6} {:>7} {:>7} {:>3} {:>3}",
                f.file,
                f.pages,
                f.cpu_ms,
                f.cpu_ms_per_page,
                opt(f.worker_cpu_ms, 1),
                opt(f.pdftotext_cpu_ms, 1),
                opt(f.ratio_to_pdftotext, 2),
                opt(f.recall, 3),
                opt(f.clean_recall, 3),
                f.stats.tables,
                f.stats.footnotes,
            );
        }
        println!(
            "{} PDFs ({} failed), {} pages: {:.1} ms CPU per PDF, {:.2} ms per page in process; worker {} ms/page, pdftotext {} ms/page, ratio {}; worker peak RSS {}",
            r.pdfs,
            r.failed,
            r.pages,
            r.cpu_ms_per_pdf,
            r.cpu_ms_per_page,
            opt(r.worker_cpu_ms_per_page, 2),
            opt(r.pdftotext_cpu_ms_per_page, 2),
            opt(r.ratio_to_pdftotext, 2),
            r.worker_peak_rss_bytes.map_or("-".into(), |b| mib(b as f64)),
        );
        if r.recall_mean.is_some() {
            println!(
                "body-word recall mean {} min {}; clean text mean {} min {}",
                opt(r.recall_mean, 3),
                opt(r.recall_min, 3),
                opt(r.clean_recall_mean, 3),
                opt(r.clean_recall_min, 3)
            );
        }
        if r.pdftotext.is_none() {
            println!("pdftotext not found: skipped the comparison");
        }
    }
    if r.failed > 0 {
        Err(Code::Failure.into())
    } else {
        Ok(())
    }
}

fn mib(b: f64) -> String {
    format!("{:.2} MiB", b / (1024.0 * 1024.0))
}

fn kib(b: f64) -> String {
    format!("{:.1} KiB", b / 1024.0)
}

fn print_pipeline(r: &PipelineResult) {
    let latency_bound = r
        .latency_papers_per_min
        .map_or("none (zero latency)".to_string(), |l| format!("{l:.1}"));
    let rows: Vec<(&str, String)> = vec![
        (
            "run",
            format!(
                "{} papers, W={}, latency {}±{} ms, rpm cheap {} / expensive {}",
                r.papers, r.workers, r.latency_ms, r.jitter_ms, r.rpm_cheap, r.rpm_expensive
            ),
        ),
        (
            "papers done / failed / other",
            format!("{} / {} / {}", r.done, r.failed, r.not_done),
        ),
        ("wall time", format!("{:.1} s", r.wall_s)),
        (
            "slot time per paper / slots busy",
            format!(
                "{:.2} s / {:.1}%",
                r.phase_s_per_paper,
                r.slot_busy_fraction * 100.0
            ),
        ),
        (
            "papers/min",
            format!(
                "{:.1} ({}; whole run {:.1})",
                r.papers_per_min, r.throughput_window, r.papers_per_min_whole_run
            ),
        ),
        (
            "limit bound papers/min",
            format!("{:.1}", r.limit_papers_per_min),
        ),
        ("latency bound papers/min", latency_bound),
        (
            "ratio to the applicable bound",
            format!("{:.3} ({} bound)", r.ratio, r.bound),
        ),
        (
            "tpm cheap / expensive",
            format!(
                "{} / {}",
                r.tpm_cheap.map_or("-".into(), |t| t.to_string()),
                r.tpm_expensive.map_or("-".into(), |t| t.to_string())
            ),
        ),
        (
            "tokens per paper cheap / expensive",
            format!(
                "{:.0} / {:.0}",
                r.tokens_per_paper_cheap, r.tokens_per_paper_expensive
            ),
        ),
        (
            "tokens/min steady cheap / expensive",
            format!(
                "{:.0} / {:.0}",
                r.tokens_per_min_cheap, r.tokens_per_min_expensive
            ),
        ),
        (
            "token bound papers/min (papers ratio)",
            match (r.token_bound_papers_per_min, r.papers_vs_token_bound) {
                (Some(b), Some(x)) => format!("{b:.1} ({x:.3})"),
                _ => "none (no tpm limit)".into(),
            },
        ),
        (
            "token-bound ratio (tokens/min / tpm)",
            r.token_bound_ratio
                .map_or("none (no tpm limit)".into(), |x| format!("{x:.3}")),
        ),
        (
            "cost per paper (provider's bill)",
            format!(
                "${:.6} (${:.6})",
                r.cost_per_paper, r.provider_cost_per_paper
            ),
        ),
        (
            "429s / requests",
            format!(
                "{} / {} ({:.2}%)",
                r.rate_limited,
                r.requests,
                r.rate_limited_fraction * 100.0
            ),
        ),
        (
            "calls per paper (ledger rows / N)",
            format!("{:.2}", r.calls_per_paper),
        ),
        (
            "CPU per paper",
            format!(
                "{:.1} ms (extraction+cleaning ≈ {:.1} ms, rest {:.1} ms)",
                r.cpu_s_per_paper * 1e3,
                r.extract_cpu_s_per_paper * 1e3,
                r.cpu_s_per_paper_excl_extract * 1e3
            ),
        ),
        (
            "CPU runner / PDF workers",
            format!(
                "{:.1} s / {:.1} s (worker peak RSS {})",
                r.runner_cpu_s,
                r.pdf_worker_cpu_s,
                r.pdf_worker_peak_rss_bytes
                    .map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
            ),
        ),
        (
            "CPU user / sys, context switches",
            format!(
                "{:.1} s / {:.1} s, {} voluntary, {} involuntary, up to {} threads",
                r.cpu_user_s,
                r.cpu_sys_s,
                r.voluntary_switches,
                r.involuntary_switches,
                r.max_threads
            ),
        ),
        (
            "CPU of the mock / of other processes",
            format!(
                "{} / {} (host has {} CPUs)",
                r.mock_cpu_s.map_or("?".into(), |c| format!("{c:.1} s")),
                r.other_cpu_s.map_or("?".into(), |c| format!("{c:.1} s")),
                r.host_cpus
            ),
        ),
        (
            "peak RSS (baseline)",
            format!(
                "{} ({})",
                mib(r.peak_rss_bytes as f64),
                mib(r.baseline_rss_bytes as f64)
            ),
        ),
        ("RSS per in-flight paper", kib(r.rss_per_inflight_paper)),
        (
            "paper text / LLM output per paper",
            format!(
                "{} / {}",
                kib(r.paper_text_bytes_per_paper),
                kib(r.llm_output_bytes_per_paper)
            ),
        ),
        (
            "DB bytes per paper (after prune)",
            format!(
                "{} ({}, {:.2}x text+outputs)",
                kib(r.db_bytes_per_paper),
                kib(r.db_bytes_per_paper_pruned),
                r.db_growth_ratio_pruned
            ),
        ),
        (
            "transition overhead p50 / p99",
            format!(
                "{:.2} / {:.2} ms ({} states)",
                r.overhead_p50_ms, r.overhead_p99_ms, r.overhead_states
            ),
        ),
    ];
    for (k, v) in rows {
        println!("{k:<36} {v}");
    }
}

fn bench_checkpoint(a: CheckpointArgs) -> CliResult {
    let tmp = std::env::temp_dir().join(format!("paper-runner-bench-{}", std::process::id()));
    let db = a.db.clone().unwrap_or_else(|| tmp.join("bench.db"));
    let rt = match super::machine::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Err(Code::Failure.into());
        }
    };
    let sync = if a.sync_full {
        Synchronous::Full
    } else {
        Synchronous::Normal
    };
    let mut results = Vec::new();
    for kib in [0usize, 100] {
        match rt.block_on(checkpoint::run(&db, a.transitions, kib, sync)) {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(Code::Failure.into());
            }
        }
    }
    if a.db.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
    } else {
        println!(
            "{:<36} {:>12} {:>10} {:>10} {:>14}",
            "scenario", "transitions/s", "p50 µs", "p99 µs", "DB B/transition"
        );
        for r in &results {
            println!(
                "{:<36} {:>12.0} {:>10.1} {:>10.1} {:>14.0}",
                r.scenario, r.transitions_per_sec, r.p50_us, r.p99_us, r.db_bytes_per_transition
            );
        }
    }
    Ok(())
}

fn bench_dashboard(a: DashboardArgs) -> CliResult {
    use paper_runner::bench::dashboard::{run, DashboardOptions};
    let opts = DashboardOptions {
        papers: a.papers,
        calls: a.calls,
        runs: a.runs,
        db: a.db,
    };
    let rt = super::machine::runtime().map_err(|e| {
        eprintln!("error: {e:#}");
        super::exit::CliError::from(Code::Failure)
    })?;
    let r = match rt.block_on(run(&opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(Code::Failure.into());
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(());
    }
    println!(
        "dashboard on {} papers, {} ledger rows ({:.0} MiB{})",
        r.papers,
        r.ledger_rows,
        r.db_bytes as f64 / 1048576.0,
        r.generate_secs
            .map(|s| format!(", generated in {s:.0} s"))
            .unwrap_or_default()
    );
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>9}",
        "page", "p50 ms", "p95 ms", "max ms", "KiB"
    );
    for p in &r.pages {
        println!(
            "{:<26} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            p.page,
            p.p50_ms,
            p.p95_ms,
            p.max_ms,
            p.bytes as f64 / 1024.0
        );
    }
    Ok(())
}
