//! Command-line interface: one module per command group.

mod add;
mod audit;
mod bench;
mod demo;
mod durable;
mod extract;
mod machine;
mod mock_llm;
mod prune;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "runner",
    version,
    about = "Durable FlatMachines runner for research-paper pipelines"
)]
pub struct Cli {
    /// Log filter when RUST_LOG is not set (e.g. "info", "paper_runner=debug").
    #[arg(long, global = true)]
    pub log_level: Option<String>,
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
    Demo(demo::DemoArgs),
    /// Queue papers by arXiv id.
    Add(add::AddArgs),
    /// Run, resume or check FlatMachine files.
    #[command(subcommand)]
    Machine(machine::MachineCmd),
    /// Check written reports for missing sections, placeholders and ungrounded numbers.
    Audit(audit::AuditArgs),
    /// Remove old checkpoints and unreferenced blobs; optionally back up.
    Prune(prune::PruneArgs),
    /// Extract and clean the text of one PDF (what the prompts will see).
    Extract(extract::ExtractArgs),
    /// Measure performance.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Run a mock OpenAI-compatible provider (tests and demo)
    MockLlm(mock_llm::MockLlmArgs),
}

/// Logs go to stderr (stdout carries results); quiet unless asked.
pub fn init_logging(level: Option<&str>) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(level.unwrap_or("warn")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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

pub fn dispatch(cli: Cli) -> ExitCode {
    let Some(command) = cli.command else {
        return run::run(cli.config, cli.run);
    };
    if cli.run != run::RunFlags::default() {
        eprintln!("error: scheduler flags (--daemon, --workers, …) apply only without a command; see `runner --help`");
        return ExitCode::from(2);
    }
    match command {
        Command::Machine(cmd) => machine::run(cmd),
        Command::Prune(a) => prune::run(a),
        Command::Add(a) => add::run(cli.config, a),
        Command::Demo(a) => demo::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Bench(cmd) => bench::run(cmd),
        Command::MockLlm(a) => mock_llm::run(a),
    }
}
