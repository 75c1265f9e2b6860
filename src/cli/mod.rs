//! Command-line interface: one module per command group.

mod add;
mod audit;
#[cfg(feature = "tooling")]
mod bench;
#[cfg(feature = "tooling")]
mod demo;
mod durable;
pub mod exit;
mod extract;
mod machine;
mod migrate_db;
#[cfg(feature = "tooling")]
mod mock_llm;
mod papers;
pub mod progress;
mod prune;
mod run;
mod show;
mod signal;
mod spend;
mod status;
// Without the `tooling` feature the tooling commands parse but refuse.
#[cfg(not(feature = "tooling"))]
mod without_tooling;
#[cfg(feature = "tooling")]
use bench::BenchCmd;
#[cfg(feature = "tooling")]
use demo::DemoArgs;
#[cfg(feature = "tooling")]
use mock_llm::MockLlmArgs;
#[cfg(not(feature = "tooling"))]
use without_tooling::Ignored as BenchCmd;
#[cfg(not(feature = "tooling"))]
use without_tooling::Ignored as DemoArgs;
#[cfg(not(feature = "tooling"))]
use without_tooling::Ignored as MockLlmArgs;

use clap::{Parser, Subcommand};
use exit::{CliError, CliResult, Code};
use paper_runner::ops::metrics::Metrics;
use std::io::IsTerminal as _;
use std::sync::OnceLock;
use tracing_subscriber::filter::{filter_fn, FilterExt as _};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Parser, Debug)]
#[command(
    name = "runner",
    version,
    about = "Durable FlatMachines runner for research-paper pipelines"
)]
pub struct Cli {
    /// Log filter when RUST_LOG is not set (e.g. "info", "paper_runner=debug,flatmachines=debug").
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Log lines as human-readable text or one JSON object per line
    /// (default: the config's ops.log_format, else human).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// No progress bars (they are off anyway when stderr is not a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Config file (default: $RUNNER_CONFIG, else ./config.toml if present).
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,
    /// Without a command: run the scheduler (single pass unless --daemon).
    #[command(flatten)]
    pub run: run::RunFlags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the pipeline on the bundled sample papers with a built-in mock provider.
    Demo(DemoArgs),
    /// Queue papers by arXiv id.
    Add(add::AddArgs),
    /// Run, resume or check FlatMachine files.
    #[command(subcommand)]
    Machine(machine::MachineCmd),
    /// Check written reports for missing sections, placeholders and ungrounded numbers.
    Audit(audit::AuditArgs),
    /// Remove old checkpoints and unreferenced blobs; optionally back up.
    Prune(prune::PruneArgs),
    /// Copy a SQLite runner database into an empty PostgreSQL database.
    MigrateDb(migrate_db::MigrateDbArgs),
    /// Extract and clean the text of one PDF (what the prompts will see).
    Extract(extract::ExtractArgs),
    /// Measure performance.
    #[cfg_attr(feature = "tooling", command(subcommand))]
    Bench(BenchCmd),
    /// Run a mock OpenAI-compatible provider (tests and demo)
    MockLlm(MockLlmArgs),
    /// Show the queue: counts, in-flight work, budget, breakers, mode.
    Status(status::StatusArgs),
    /// Show one paper's timeline: phases, states, LLM calls, errors.
    Show(show::ShowArgs),
    /// The bill from the spend ledger: requests, tokens and cost per day, model, phase or paper.
    Spend(spend::SpendArgs),
    /// Put failed or cancelled papers back in the queue.
    Retry(papers::RetryArgs),
    /// Stop claiming papers; a running phase is given back.
    Cancel(papers::CancelArgs),
    /// Run papers again from the start (done, failed or waiting ones).
    Requeue(papers::RequeueArgs),
    /// Drive one paper's remaining phases now, in the foreground.
    Resume(papers::ResumeArgs),
    /// Send a signal to an execution waiting on a `wait_for` state.
    Signal(signal::SignalArgs),
    /// Internal: one PDF extraction in a worker process (see pipeline::pdf_child).
    #[command(name = "__extract-pdf", hide = true)]
    ExtractPdfWorker(extract::WorkerArgs),
}

pub use paper_runner::runner::config::LogFormat;

/// The log format: the flag, else the config file's `ops.log_format`,
/// else human. Logging starts before the configuration is resolved, so
/// this reads the value through the config's own parser of
/// `ops.log_format`; a bad value logs as human here and is then refused,
/// naming the key, when the command resolves its settings.
pub fn choose_log_format(flag: Option<LogFormat>, config: Option<&std::path::Path>) -> LogFormat {
    if let Some(f) = flag {
        return f;
    }
    config_file(config)
        .ok()
        .and_then(|c| c.ops.log_format.parse::<LogFormat>().ok())
        .unwrap_or_default()
}

/// Writes each formatted log line to stderr, hiding progress bars while
/// it does.
struct LogWriter;

struct LogLine;

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        progress::suspend_bars(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine
    }
}

/// The metrics registry `init_logging` installed.
static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The registry of the metrics layer (for the ops HTTP endpoint). A fresh,
/// unattached one when logging was not initialised.
pub fn metrics() -> Metrics {
    METRICS.get().cloned().unwrap_or_default()
}

/// Logs go to stderr (stdout carries results); quiet unless asked
/// (`warn`; `--log-level` or `RUST_LOG` change it). Also installs the ops
/// metrics layer, which has its own filter and so counts state transitions
/// whatever the log level; its registry is returned (and kept for
/// [`metrics`]).
pub fn init_logging(level: Option<&str>, format: LogFormat) -> Metrics {
    let metrics = METRICS.get_or_init(Metrics::new).clone();
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(level.unwrap_or("warn")),
    };
    // This crate's and the runtime's spans always reach the formatter (they
    // print nothing by themselves), so every line inside an execution names
    // its execution, paper, machine and state even when only warnings pass
    // the filter.
    let context = filter_fn(|m| {
        m.is_span()
            && (m.target().starts_with("paper_runner") || m.target().starts_with("flatmachines"))
    });
    let filter = filter.or(context);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(LogWriter)
        .with_target(false);
    let fmt = match format {
        LogFormat::Human => fmt
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(metrics.layer())
        .try_init();
    metrics
}

/// The runner configuration: the file (explicit, `$RUNNER_CONFIG`, or
/// `./config.toml`), then `RUNNER_*` variables.
pub fn config_file(
    explicit: Option<&std::path::Path>,
) -> anyhow::Result<paper_runner::runner::Config> {
    let loaded = paper_runner::runner::config::load(explicit)?;
    if let Some(src) = &loaded.source {
        tracing::debug!(config = %src.display(), "configuration loaded");
    }
    Ok(loaded.config)
}

pub fn dispatch(cli: Cli) -> CliResult {
    progress::set_disabled(cli.no_progress);
    let Some(command) = cli.command else {
        return run::run(cli.config, cli.run);
    };
    if cli.run != run::RunFlags::default() {
        return Err(CliError::new(
            Code::Usage,
            "scheduler flags (--daemon, --workers, …) apply only without a command; see `runner --help`",
        ));
    }
    match command {
        Command::Machine(cmd) => machine::run(cmd),
        Command::Prune(a) => prune::run(cli.config, a),
        Command::MigrateDb(a) => migrate_db::run(a),
        Command::Add(a) => add::run(cli.config, a),
        #[cfg(feature = "tooling")]
        Command::Demo(a) => demo::run(a),
        #[cfg(not(feature = "tooling"))]
        Command::Demo(_) => without_tooling::refuse("demo"),
        Command::Audit(a) => audit::run(a),
        Command::Extract(a) => extract::run(cli.config, a),
        Command::ExtractPdfWorker(a) => extract::worker(a),
        #[cfg(feature = "tooling")]
        Command::Bench(cmd) => bench::run(cmd),
        #[cfg(feature = "tooling")]
        Command::MockLlm(a) => mock_llm::run(a),
        #[cfg(not(feature = "tooling"))]
        Command::Bench(_) => without_tooling::refuse("bench"),
        #[cfg(not(feature = "tooling"))]
        Command::MockLlm(_) => without_tooling::refuse("mock-llm"),
        Command::Status(a) => status::run(cli.config, a),
        Command::Show(a) => show::run(cli.config, a),
        Command::Spend(a) => spend::run(cli.config, a),
        Command::Retry(a) => papers::retry(cli.config, a),
        Command::Cancel(a) => papers::cancel(cli.config, a),
        Command::Requeue(a) => papers::requeue(cli.config, a),
        Command::Resume(a) => papers::resume(cli.config, a),
        Command::Signal(a) => signal::signal(cli.config, a),
    }
}
