//! Command-line interface: one module per command group.

mod audit;
mod bench;
mod durable;
mod extract;
mod machine;
mod mock_llm;
mod prune;

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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

pub fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Machine(cmd) => machine::run(cmd),
        Command::Prune(a) => prune::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Bench(cmd) => bench::run(cmd),
        Command::MockLlm(a) => mock_llm::run(a),
    }
}
