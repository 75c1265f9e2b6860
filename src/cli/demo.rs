//! `runner demo [--dir DIR]`: the whole pipeline on the bundled sample
//! papers, with the built-in mock provider on loopback — no network, no key.
//!
//! DIR is laid out as a normal runner directory (`config.toml`, `machines/`,
//! `data/`, `reports/`), so `runner status`, `runner show` and
//! `runner audit --reports reports` work inside it afterwards.

use super::exit::{CliResult, Code};
use anyhow::{bail, Context as _};
use clap::Args;
use paper_runner::pipeline::audit::{audit, AuditOptions, GROUNDING_THRESHOLD};
use paper_runner::runner::build::{build, RunOptions};
use paper_runner::runner::embedded::{write_machines, EXAMPLE_MANIFEST, EXAMPLE_PDFS};
use paper_runner::runner::scheduler::RunMode;
use paper_runner::runner::Config;
use paper_runner::store::{AddOutcome, NewPaper, PaperStatus};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use testkit::mock::{MockScript, MockServer};
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory to lay out and run in.
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
    /// Phases in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub workers: usize,
    /// Mean mock latency per LLM call in milliseconds.
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub latency_ms: u64,
    /// Serve the dashboard while the demo runs and afterwards, until
    /// Ctrl-C (prints its URL).
    #[arg(long)]
    pub serve: bool,
    /// Where the dashboard listens with --serve (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
    pub listen: std::net::SocketAddr,
    /// With --serve: the environment variable holding a token; the
    /// dashboard then asks for it at login and offers retry, cancel and
    /// re-queue (without one it is read-only).
    #[arg(long, requires = "serve")]
    pub token_env: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    papers: Vec<SamplePaper>,
}

#[derive(Deserialize)]
struct SamplePaper {
    arxiv_id: String,
    title: String,
    pdf: String,
}

const CONFIG_TOML: &str = "\
# Written by `runner demo`. Relative paths resolve against this file's folder.
# See config.example.toml in the repository for every option.
db = \"data/runner.db\"
machines_dir = \"machines\"
pdf_dir = \"data/pdfs\"
reports_dir = \"reports\"
terminology = \"machines/terminology.yml\"
";

/// Profiles for the demo: both classes on the mock provider (no key).
fn demo_profiles(base_url: &str) -> String {
    format!(
        "# Written by `runner demo`: both profiles point at the built-in mock provider.\n\
         # For real use see machines/profiles.yml in the repository (OpenRouter).\n\
         spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n\
         \x20   cheap: {{provider: mock, name: mock/cheap-demo, base_url: \"{base_url}\", timeout: 60, max_tokens: 4000}}\n\
         \x20   expensive: {{provider: mock, name: mock/expensive-demo, base_url: \"{base_url}\", timeout: 120, max_tokens: 8000}}\n\
         \x20 default: cheap\n"
    )
}

pub fn run(a: DemoArgs) -> CliResult {
    match run_inner(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            Err(Code::Failure.into())
        }
    }
}

fn run_inner(a: DemoArgs) -> anyhow::Result<CliResult> {
    let started = Instant::now();
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let dir = std::fs::canonicalize(&a.dir)
        .with_context(|| format!("cannot resolve {}", a.dir.display()))?;
    let manifest: Manifest = serde_yaml::from_str(EXAMPLE_MANIFEST)
        .context("the embedded sample manifest is invalid")?;
    if manifest.papers.is_empty() {
        bail!("no sample papers are bundled");
    }
    let rt = super::machine::runtime()?;
    rt.block_on(async move {
        let script = MockScript {
            latency_ms: a.latency_ms,
            jitter_ms: a.latency_ms / 2,
            ..MockScript::default()
        };
        let mock = MockServer::start("127.0.0.1:0", script)
            .await
            .context("cannot start the mock provider on loopback")?;
        let cfg = lay_out(&dir, &mock.base_url())?;
        eprintln!(
            "demo: {} ({} sample papers, mock provider at {})",
            dir.display(),
            manifest.papers.len(),
            mock.base_url()
        );
        let settings = cfg.resolve().context("the demo configuration is invalid")?;
        let built = build(
            &settings,
            &RunOptions {
                mode: RunMode::SinglePass,
                prep_only: false,
            },
        )
        .context("cannot start the runner")?;
        let store = built.store.clone();
        for p in &manifest.papers {
            let file = p.pdf.trim_start_matches("papers/");
            let pdf = dir.join("examples").join(file);
            let outcome = store.add_paper(&NewPaper {
                arxiv_id: p.arxiv_id.clone(),
                title: Some(p.title.clone()),
                pdf_path: Some(pdf.display().to_string()),
                source: "demo".into(),
                ..NewPaper::default()
            })?;
            if let AddOutcome::Exists { status, .. } = outcome {
                eprintln!("demo: {} already queued ({status})", p.arxiv_id);
            }
        }
        let mut scheduler = built.scheduler;
        scheduler.settings.workers = a.workers.max(1);
        let dashboard = if a.serve {
            let mut settings = settings.clone();
            settings.ops.token_env = a.token_env.clone();
            let listener = match tokio::net::TcpListener::bind(a.listen).await {
                Ok(l) => l,
                // The default port may be taken: any free one will do.
                Err(e) if a.listen.port() == 8080 => {
                    eprintln!("demo: {} is taken ({e}); using a free port", a.listen);
                    tokio::net::TcpListener::bind((a.listen.ip(), 0))
                        .await
                        .context("cannot listen for the dashboard")?
                }
                Err(e) => return Err(e).with_context(|| format!("cannot listen on {}", a.listen)),
            };
            let addr = listener.local_addr()?;
            let state = paper_runner::ops::http::OpsState {
                store: store.clone(),
                settings: std::sync::Arc::new(settings),
                stats: Some(scheduler.stats.clone()),
                metrics: super::metrics(),
            };
            let stop = CancellationToken::new();
            let task = tokio::spawn(paper_runner::ops::http::serve(
                listener,
                state,
                stop.clone(),
            ));
            let access = match &a.token_env {
                Some(var) => format!("log in with the token in ${var}"),
                None => "read-only; --token-env VAR turns on retry, cancel and re-queue".into(),
            };
            println!("dashboard: http://{addr}/ ({access})");
            Some((stop, task))
        } else {
            None
        };
        let progress = super::progress::progress_observer(&store, true);
        if let Some((observer, _)) = &progress {
            scheduler.observer = Some(observer.clone());
        }
        let shutdown = CancellationToken::new();
        let kill = CancellationToken::new();
        let signals = super::run::spawn_signal_handler(shutdown.clone(), kill.clone());
        let summary = super::run::run_until_killed(&scheduler, shutdown, kill).await;
        drop(signals);
        if let Some((_, handle)) = progress {
            handle.finish();
        }
        let served = mock.stats().requests;
        mock.shutdown().await;
        if summary.killed {
            return Ok(Err(Code::Interrupted.into()));
        }
        let counts = store.status_counts()?;
        let papers = store.papers(&[])?;
        println!();
        println!(
            "demo finished in {:.1} s: {} LLM calls to the mock provider",
            started.elapsed().as_secs_f64(),
            served
        );
        let nonzero: Vec<String> = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        println!("papers: {}", nonzero.join(", "));
        if summary.failed > 0 || summary.retry_later > 0 {
            for p in papers.iter().filter(|p| p.status != PaperStatus::Done) {
                println!(
                    "  {} {}: {} {}",
                    p.arxiv_id,
                    p.status,
                    p.last_error_kind.as_deref().unwrap_or(""),
                    p.last_error_message.as_deref().unwrap_or("")
                );
            }
        }
        println!("reports:");
        for p in papers.iter().filter_map(|p| p.report_path.as_ref()) {
            println!("  {p}");
        }
        let audited = audit(&AuditOptions {
            reports: cfg.reports_dir.clone(),
            latest: None,
            texts: None,
            grounding_threshold: GROUNDING_THRESHOLD,
        })
        .map_err(|e| anyhow::anyhow!("audit failed: {e}"))?;
        println!(
            "audit: {} report(s), {} failing",
            audited.reports, audited.failing
        );
        println!();
        println!("next, inside {}:", dir.display());
        println!("  runner status");
        println!("  runner show {}", manifest.papers[0].arxiv_id);
        println!("  runner audit --reports reports");
        let all_done = papers.iter().all(|p| p.status == PaperStatus::Done);
        if let Some((stop, task)) = dashboard {
            println!();
            println!("dashboard still serving; Ctrl-C to stop");
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
        Ok(if all_done && audited.failing == 0 {
            Ok(())
        } else {
            Err(Code::Failure.into())
        })
    })
}

/// Write config.toml, machines/ (profiles on the mock), examples/, and
/// return the config with absolute paths under `dir`.
fn lay_out(dir: &Path, base_url: &str) -> anyhow::Result<Config> {
    let machines = dir.join("machines");
    write_machines(&machines).with_context(|| format!("cannot write {}", machines.display()))?;
    std::fs::write(machines.join("profiles.yml"), demo_profiles(base_url))
        .context("cannot write the demo profiles")?;
    let examples = dir.join("examples");
    std::fs::create_dir_all(&examples)?;
    for (name, bytes) in EXAMPLE_PDFS {
        std::fs::write(examples.join(name), bytes)
            .with_context(|| format!("cannot write {}", examples.join(name).display()))?;
    }
    std::fs::write(dir.join("config.toml"), CONFIG_TOML).context("cannot write config.toml")?;
    for sub in ["data", "reports"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    Ok(Config {
        db: dir.join("data/runner.db"),
        machines_dir: machines.clone(),
        pdf_dir: dir.join("data/pdfs"),
        reports_dir: dir.join("reports"),
        terminology: Some(machines.join("terminology.yml")),
        ..Config::default()
    })
}
