//! `runner [--daemon | --resume-only | --prep-only] [--workers N] …`: the
//! scheduler itself — single pass by default, continuous with `--daemon`.

use super::exit::{CliError, CliResult, Code};
use anyhow::Context as _;
use clap::Args;
use paper_runner::runner::build::{build, BuildError, RunOptions};
use paper_runner::runner::config::Settings;
use paper_runner::runner::scheduler::{RunMode, RunSummary};
use paper_runner::runner::Config;
use paper_runner::runner::Notifier;
use std::path::PathBuf;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct RunFlags {
    /// Keep running: poll for work, re-seed, wait out spent budgets.
    #[arg(long, conflicts_with = "resume_only")]
    pub daemon: bool,
    /// Finish in-flight executions, claim nothing new, exit.
    #[arg(long)]
    pub resume_only: bool,
    /// Claim only prep (the end-of-day burst).
    #[arg(long)]
    pub prep_only: bool,
    /// Phases in flight at once.
    #[arg(long)]
    pub workers: Option<usize>,
    /// SQLite database (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Daily request budget over all classes.
    #[arg(long)]
    pub budget: Option<u64>,
    /// Daily request budget of the cheap class.
    #[arg(long)]
    pub budget_cheap: Option<u64>,
    /// Daily request budget of the expensive class.
    #[arg(long)]
    pub budget_expensive: Option<u64>,
    /// Daemon: seconds between looks for work when idle.
    #[arg(long)]
    pub poll_interval: Option<f64>,
    /// Claim and lease TTL in seconds.
    #[arg(long)]
    pub lease_ttl: Option<u64>,
    /// Attempts per phase before a paper fails.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Seconds in-flight work may take to finish after SIGTERM.
    #[arg(long)]
    pub drain_timeout: Option<u64>,
    /// Profile catalog (default: the nearest profiles.yml of the machines).
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Directory holding prep.yml, expensive.yml and wrap.yml.
    #[arg(long)]
    pub machines: Option<PathBuf>,
    /// Queue pending papers from the arxiv-crawler DB (`seed.db` or
    /// `corpus_db`) first; with --daemon, again every `seed.interval_secs`.
    #[arg(long)]
    pub seed: bool,
    /// Serve /metrics, /status and /healthz here (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub listen: Option<String>,
}

/// Load the configuration (file, environment), apply flags, and resolve it
/// into typed settings: the one parse of every setting, at start-up.
pub fn load_config(explicit: Option<&std::path::Path>, f: &RunFlags) -> anyhow::Result<Settings> {
    let mut cfg = super::config_file(explicit)?;
    if let Some(v) = &f.db {
        cfg.db = v.clone();
    }
    if let Some(v) = f.workers {
        cfg.scheduler.workers = v;
    }
    if let Some(v) = f.budget {
        cfg.budget.daily = Some(v);
    }
    if let Some(v) = f.budget_cheap {
        cfg.budget.cheap = Some(v);
    }
    if let Some(v) = f.budget_expensive {
        cfg.budget.expensive = Some(v);
    }
    if let Some(v) = f.poll_interval {
        cfg.scheduler.poll_interval_secs = v;
    }
    if let Some(v) = f.lease_ttl {
        cfg.scheduler.lease_ttl_secs = v;
    }
    if let Some(v) = f.max_attempts {
        cfg.scheduler.max_attempts = v;
    }
    if let Some(v) = f.drain_timeout {
        cfg.scheduler.drain_timeout_secs = v;
    }
    if let Some(v) = &f.profiles {
        cfg.profiles = Some(v.clone());
    }
    if let Some(v) = &f.machines {
        cfg.machines_dir = v.clone();
    }
    if let Some(v) = &f.listen {
        cfg.ops.listen = Some(v.clone());
    }
    Ok(cfg.resolve()?)
}

/// How long a second signal lets the scheduler abort its tasks before the
/// run is dropped regardless (dropping it aborts every task it owns).
pub const KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the ops server and the re-seeder get to stop once the
/// scheduler has returned, before they are aborted.
const SERVICES_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The scheduler command. Exit codes (see [`super::exit`]): 0 done; 1 a
/// task panicked or the store failed (the work is safe at its last
/// checkpoint, but the run did not do what it was asked), or start-up
/// failed for another reason (database, listener, seeding); 2 the
/// configuration or the machines are invalid; 130 a second signal stopped
/// the run at once.
pub fn run(config: Option<PathBuf>, f: RunFlags) -> CliResult {
    let cfg = load_config(config.as_deref(), &f).map_err(|e| CliError::usage(format!("{e:#}")))?;
    let s = run_inner(cfg, f)?;
    let done: u64 = s.finished.values().sum();
    eprintln!(
        "runner: {done} phase(s) finished ({}), {} to retry later, {} failed, {} given back, {} parked",
        fmt_counts(&s),
        s.retry_later,
        s.failed,
        s.released,
        s.parked
    );
    if s.killed {
        return Err(Code::Interrupted.into());
    }
    if s.had_trouble() {
        return Err(CliError::new(
            Code::Failure,
            format!(
                "{} phase task(s) panicked and {} store error(s) occurred; work is kept at its last checkpoint (see the log)",
                s.panicked, s.store_errors
            ),
        ));
    }
    Ok(())
}

/// Start-up failures by cause: invalid machines or settings are usage
/// errors (2); a database that cannot be opened is a failure (1).
fn build_error(e: BuildError) -> CliError {
    let code = match e {
        BuildError::Store(_) => Code::Failure,
        BuildError::Machine { .. } | BuildError::Setup(_) => Code::Usage,
    };
    CliError::new(code, format!("cannot start the runner: {e}"))
}

fn fmt_counts(s: &RunSummary) -> String {
    let mut parts: Vec<String> = ["prep", "expensive", "wrap"]
        .iter()
        .map(|p| format!("{p} {}", s.finished.get(*p).copied().unwrap_or(0)))
        .collect();
    if s.reaped > 0 {
        parts.push(format!("reaped {}", s.reaped));
    }
    parts.join(", ")
}

fn run_inner(cfg: Settings, f: RunFlags) -> Result<RunSummary, CliError> {
    match paper_runner::ops::raise_fd_limit() {
        Ok(b) => tracing::info!(
            limit = b.now,
            raised_from = b.was,
            ops_connections = cfg.ops.listen.map(|_| cfg.ops.max_connections),
            "file descriptor budget"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let mode = if f.daemon {
        RunMode::Daemon
    } else if f.resume_only {
        RunMode::ResumeOnly
    } else {
        RunMode::SinglePass
    };
    let rt = super::machine::runtime()?;
    // Shared with the ops endpoint, which reads the same resolved values.
    let cfg = std::sync::Arc::new(cfg);
    let summary = rt.block_on(async move {
        let built = build(
            &cfg,
            &RunOptions {
                mode,
                prep_only: f.prep_only,
            },
        )
        .map_err(build_error)?;
        let mut scheduler = built.scheduler;
        scheduler.notifier = Notifier::from_env();
        let shutdown = CancellationToken::new();
        let kill = CancellationToken::new();
        // Every task this run starts is owned here: the signal listeners
        // (`signals`), the re-seeder and the ops server (`services`) are
        // stopped and joined below, before the runtime goes; on an early
        // return, dropping the sets aborts them.
        let mut signals = spawn_signal_handler(shutdown.clone(), kill.clone());
        let mut services: JoinSet<()> = JoinSet::new();
        let services_stop = CancellationToken::new();
        if f.seed {
            seed_once(&built.store, &cfg.config).await?;
            if mode == RunMode::Daemon {
                services.spawn(reseed(
                    built.store.clone(),
                    cfg.config.clone(),
                    cfg.seed_interval,
                    services_stop.clone(),
                ));
            }
        }
        // Progress bars for one-shot runs on a terminal (not for the daemon).
        let progress = super::progress::progress_observer(&built.store, mode != RunMode::Daemon);
        if let Some((observer, _)) = &progress {
            scheduler.observer = Some(observer.clone());
        }
        if let Some(addr) = cfg.ops.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (ops.listen)"))?;
            let state = paper_runner::ops::http::OpsState {
                store: built.store.clone(),
                settings: cfg.clone(),
                stats: Some(scheduler.stats.clone()),
                metrics: super::metrics(),
            };
            let stop = services_stop.clone();
            services.spawn(async move {
                if let Err(e) = paper_runner::ops::http::serve(listener, state, stop).await {
                    tracing::error!(error = %e, "the metrics endpoint stopped");
                }
            });
        }
        let summary = run_until_killed(&scheduler, shutdown.clone(), kill.clone()).await;
        // Stop the services and join them; after a second signal, or if
        // one does not stop in time, abort them (and still join).
        services_stop.cancel();
        let joined = tokio::time::timeout(SERVICES_GRACE, async {
            while services.join_next().await.is_some() {}
        })
        .await;
        if summary.killed || joined.is_err() {
            services.shutdown().await;
        }
        signals.shutdown().await;
        if let Some((_, handle)) = progress {
            handle.finish();
        }
        Ok::<_, CliError>(summary)
    })?;
    if summary.killed {
        // Stopped at once: do not wait for blocking work still running
        // (a stuck extraction would keep the process alive).
        rt.shutdown_timeout(std::time::Duration::from_secs(1));
    }
    Ok(summary)
}

/// The scheduler's run, cut short on a second signal: the scheduler aborts
/// its tasks and returns by itself; should it not within [`KILL_GRACE`],
/// its future is dropped, which aborts every task it owns (its `JoinSet`),
/// and the run counts as killed. Either way the process ends through
/// `main` with the table's code, never by an exit from here.
pub async fn run_until_killed(
    scheduler: &paper_runner::runner::scheduler::Scheduler,
    shutdown: CancellationToken,
    kill: CancellationToken,
) -> RunSummary {
    let hard_stop = async {
        kill.cancelled().await;
        tokio::time::sleep(KILL_GRACE).await;
    };
    tokio::select! {
        s = scheduler.run(shutdown, kill.clone()) => s,
        () = hard_stop => {
            tracing::warn!("the scheduler did not stop within {KILL_GRACE:?} of the second signal; its tasks were aborted");
            RunSummary {
                killed: true,
                ..RunSummary::default()
            }
        }
    }
}

async fn seed_once(store: &paper_runner::store::Store, cfg: &Config) -> anyhow::Result<()> {
    let r = paper_runner::runner::ingest::seed_now(store, cfg)
        .await
        .context("seeding from the crawler DB")?;
    eprintln!(
        "seed: {} added, {} already queued ({} considered)",
        r.added, r.already_queued, r.considered
    );
    Ok(())
}

/// Re-seed every `seed.interval_secs` until `stop`; failures are logged
/// (the crawler DB may be briefly locked or replaced) and retried next time.
async fn reseed(
    store: paper_runner::store::Store,
    cfg: Config,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // A seeding in progress is cut short by `stop` too (it is a
        // read of another database and an idempotent insert).
        let seeded = tokio::select! {
            _ = stop.cancelled() => return,
            r = paper_runner::runner::ingest::seed_now(&store, &cfg) => r,
        };
        match seeded {
            Ok(r) if r.added > 0 => {
                tracing::info!(added = r.added, "re-seeded from the crawler DB")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "re-seeding failed; will retry"),
        }
    }
}

/// First SIGTERM, SIGINT, SIGHUP or SIGQUIT: stop claiming and drain
/// (SIGHUP reloads nothing: a changed config needs a restart, and a drain
/// is the safe way to stop). Second: stop at once through the `kill` token
/// (the scheduler aborts its tasks and returns; everything stays resumable
/// from its checkpoints; see [`run_until_killed`]).
///
/// The listeners are the returned set's tasks: they live as long as the
/// caller keeps it and end when it is dropped. They are installed before
/// this returns (a signal sent right after start-up is not lost); must be
/// called inside the runtime.
#[must_use = "the signal listeners stop when the returned set is dropped"]
pub fn spawn_signal_handler(shutdown: CancellationToken, kill: CancellationToken) -> JoinSet<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut tasks = JoinSet::new();
    let mut streams = Vec::new();
    for (kind, name) in [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
    ] {
        match signal(kind) {
            Ok(s) => streams.push((s, name)),
            Err(e) => tracing::warn!(error = %e, "cannot listen for {name}"),
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    for (mut stream, name) in streams {
        let tx = tx.clone();
        tasks.spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(name).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    tasks.spawn(async move {
        let mut seen = 0;
        while let Some(name) = rx.recv().await {
            seen += 1;
            if seen == 1 {
                tracing::warn!(
                    signal = name,
                    "stop requested: finishing in-flight work (signal again to stop at once)"
                );
                shutdown.cancel();
            } else {
                tracing::warn!(
                    signal = name,
                    "stopping at once; in-flight work resumes from its checkpoints"
                );
                shutdown.cancel();
                kill.cancel();
            }
        }
    });
    tasks
}
