//! `runner machine run|check`.

use super::exit::{CliResult, Code};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use paper_runner::engine::shell::ShellConfig;
use paper_runner::engine::{
    hooks, ActionRegistry, Agent, Engine, HookRegistry, NoCheckpoints, NoLlm, PythonConfig,
};
use paper_runner::llm::{HttpAgent, Ledger};
use paper_runner::spec::{self, LoadOptions};
use paper_runner::store::Store;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand, Debug)]
pub enum MachineCmd {
    /// Run a machine and print its final output as one JSON object.
    Run(RunArgs),
    /// Continue persisted executions from their latest checkpoint.
    Resume(ResumeArgs),
    /// Validate machine files; exit 2 if any has an error.
    Check(CheckArgs),
}

/// Persistence options shared by `run --db` and `resume`.
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// SQLite database for checkpoints (enables durable execution).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Lease time-to-live in seconds (renewed every TTL/3; 1 to 86400).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease_ttl: u64,
    /// Fsync every commit (survives power loss; slower).
    #[arg(long)]
    pub sync_full: bool,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// Execution ids to resume.
    pub ids: Vec<String>,
    /// Resume every unfinished execution in the database.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Use the machine files as they are now (if they still contain the
    /// current state) instead of the stored config.
    #[arg(long)]
    pub reload_config: bool,
    /// Profile catalog for --reload-config.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// A handler for a hook the machines name: NAME=cmd:PATH or
    /// NAME=python:FILE:Class (repeatable), as given to `run`.
    #[arg(long = "hooks", value_name = "NAME=HANDLER")]
    pub hooks: Vec<String>,
    /// The Python interpreter for python: hooks (default python3).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The machine file (YAML or JSON).
    pub file: PathBuf,
    /// Input as a JSON object.
    #[arg(long, conflicts_with = "input_file")]
    pub input: Option<String>,
    /// Read the input JSON object (or YAML mapping) from a file.
    #[arg(long)]
    pub input_file: Option<PathBuf>,
    /// Profile catalog to use instead of the nearest profiles.yml.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Execution id (default: a new UUID). With --db, an existing id is resumed.
    #[arg(long)]
    pub execution_id: Option<String>,
    /// A handler for a hook the machine names: NAME=cmd:PATH or
    /// NAME=python:FILE:Class (repeatable).
    #[arg(long = "hooks", value_name = "NAME=HANDLER")]
    pub hooks: Vec<String>,
    /// The Python interpreter for python: hooks (default python3).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Machine files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Profile catalog to use instead of the nearest profiles.yml.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// A handler for a hook the machines name: NAME=cmd:PATH or
    /// NAME=python:FILE:Class (repeatable). With any, custom actions are
    /// checked against these hooks; without, an action only hooks could
    /// implement is a warning.
    #[arg(long = "hooks", value_name = "NAME=HANDLER")]
    pub hooks: Vec<String>,
    /// The Python interpreter for python: hooks (default python3).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

pub fn run(cmd: MachineCmd) -> CliResult {
    match cmd {
        MachineCmd::Check(a) => check(a),
        MachineCmd::Run(a) => run_machine(a),
        MachineCmd::Resume(a) => super::durable::resume(a),
    }
}

/// The built-in actions plus the paper pipeline's (default pipeline
/// settings: PDFs under `data/pdfs/`, reports under `reports/`).
pub fn actions() -> ActionRegistry {
    let mut r = ActionRegistry::with_builtins();
    if let Err(e) = paper_runner::pipeline::actions::register(
        &mut r,
        paper_runner::pipeline::actions::PipelineConfig::default(),
    ) {
        eprintln!("warning: pipeline actions unavailable: {}", e.message);
    }
    r
}

/// [`actions`] with the hooks registry `--hooks` describes (none when no
/// `--hooks` is given), Python hooks run by `python` (default `python3`).
/// Relative handler paths resolve against the working directory; an
/// unusable handler is a usage error.
pub fn actions_with_hooks(
    bindings: &[String],
    python: Option<&Path>,
) -> anyhow::Result<ActionRegistry> {
    let mut r = actions();
    if bindings.is_empty() {
        return Ok(r);
    }
    let base = std::env::current_dir().context("cannot read the working directory")?;
    let mut specs = Vec::new();
    for b in bindings {
        specs.push(hooks::parse_binding(b, &base).map_err(|e| anyhow::anyhow!("--hooks: {e}"))?);
    }
    let mut py = PythonConfig::default();
    if let Some(p) = python {
        py.interpreter = p.to_path_buf();
    }
    let registry = HookRegistry::build(&specs, &ShellConfig::default(), &py)
        .map_err(|e| anyhow::anyhow!("--hooks: {e}"))?;
    r.set_hooks(registry);
    Ok(r)
}

fn load_options(profiles: Option<PathBuf>, actions: &ActionRegistry) -> LoadOptions {
    LoadOptions {
        profiles,
        actions: actions.names(),
        model_check: Some(paper_runner::llm::ModelProfile::check_config),
        hooks: actions.hook_names(),
    }
}

fn check(a: CheckArgs) -> CliResult {
    let registry = match actions_with_hooks(&a.hooks, a.python.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Err(Code::Usage.into());
        }
    };
    let opts = load_options(a.profiles, &registry);
    let mut failed = false;
    for file in &a.files {
        let loaded = spec::load(file, &opts);
        for d in &loaded.diagnostics.items {
            println!("{d}");
        }
        failed |= loaded.diagnostics.has_errors();
    }
    if failed {
        Err(Code::Usage.into())
    } else {
        Ok(())
    }
}

/// Load a machine for running; problems are printed to stderr.
pub fn load_bundle(file: &Path, opts: &LoadOptions) -> Option<Arc<spec::Bundle>> {
    let loaded = spec::load(file, opts);
    for d in &loaded.diagnostics.items {
        if d.severity == spec::Severity::Error {
            eprintln!("{d}");
        } else {
            tracing::warn!("{d}");
        }
    }
    loaded.bundle.map(Arc::new)
}

pub fn read_input(input: Option<&str>, file: Option<&Path>) -> anyhow::Result<Map<String, Value>> {
    let v: Value = match (input, file) {
        (Some(s), _) => serde_json::from_str(s).context("--input is not valid JSON")?,
        (None, Some(p)) => {
            // Same hardening as machine files: a regular file of bounded
            // size, bounded nesting, no duplicate keys.
            let text = paper_runner::spec::load::read_file_capped(p)
                .map_err(|e| anyhow::anyhow!("input file {}: {e}", p.display()))?;
            paper_runner::spec::load::parse_value(&text, false).map_err(|e| {
                let at = e
                    .location
                    .map(|(l, c)| format!(":{l}:{c}"))
                    .unwrap_or_default();
                anyhow::anyhow!(
                    "input file {}{at} is not valid JSON/YAML: {}",
                    p.display(),
                    e.message
                )
            })?
        }
        (None, None) => Value::Object(Map::new()),
    };
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => bail!("input must be a JSON object"),
    }
}

/// Threads for blocking work (SQLite, file writes). Why bounded: writes
/// are serialised on one connection, so with tokio's default of 512, a
/// thousand papers in flight parked hundreds of threads on the writer
/// mutex, and their wake-ups cost more CPU than the writes; queued
/// blocking tasks wait in tokio's queue instead.
const BLOCKING_THREADS: usize = 32;

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_machine(a: RunArgs) -> CliResult {
    let input = match read_input(a.input.as_deref(), a.input_file.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Err(Code::Usage.into());
        }
    };
    let registry = match actions_with_hooks(&a.hooks, a.python.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Err(Code::Usage.into());
        }
    };
    let opts = load_options(a.profiles, &registry);
    let Some(bundle) = load_bundle(&a.file, &opts) else {
        return Err(Code::Usage.into());
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Err(Code::Failure.into());
        }
    };
    let id = a
        .execution_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if a.db.db.is_some() {
        return super::durable::run_persisted(&rt, &a.db, &a.file, bundle, registry, &id, input);
    }
    let engine = Engine::new(bundle, llm_agent(None), registry, Arc::new(NoCheckpoints));
    let result = rt.block_on(engine.run(&id, input));
    print_outcome(result)
}

/// The process's LLM agent: the real OpenAI-compatible client, with the
/// spend ledger when there is a database. Built once per process so every
/// execution shares one connection pool and one rate limiter.
pub fn llm_agent(store: Option<&Store>) -> Arc<dyn Agent> {
    static AGENT: std::sync::OnceLock<Arc<dyn Agent>> = std::sync::OnceLock::new();
    AGENT
        .get_or_init(|| match HttpAgent::new(store.cloned().map(Ledger::new)) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                eprintln!("warning: {}; agent states will fail", e.message);
                Arc::new(NoLlm)
            }
        })
        .clone()
}

/// stdout: the output JSON (exit 0); stderr: `error: KIND: message` (exit 1).
/// An execution parked on a `wait_for` state prints the SDK's
/// `{"_waiting": true, "_channel": NAME}` (exit 0).
pub fn print_outcome(result: Result<Value, paper_runner::engine::ExecError>) -> CliResult {
    if let Err(e) = &result {
        if let Some((signal, deadline_ms)) = e.waiting() {
            let mut v = serde_json::json!({"_waiting": true, "_channel": signal});
            if let Some(d) = deadline_ms {
                v["_deadline_ms"] = d.into();
            }
            println!("{v}");
            return Ok(());
        }
    }
    match result {
        Ok(v) => {
            println!(
                "{}",
                serde_json::to_string(&v).unwrap_or_else(|_| "{}".into())
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {}: {}", e.kind, e.message);
            Err(Code::Failure.into())
        }
    }
}
