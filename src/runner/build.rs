//! Assemble a runner from its configuration: open the store, load and
//! validate the three phase machines, store their configs, build the LLM
//! agent (one connection pool, one limiter, the spend ledger) and the
//! pipeline's actions.

use super::breaker::Breakers;
use super::budget::{Budget, PhasePlan};
use super::config::{Config, Settings};
use super::gates::{Burst, Gates, PhaseModel};
use super::phase::Phase;
use super::scheduler::{RunMode, RunnerStats, Scheduler, SchedulerSettings};
use super::task::{PhaseMachine, TaskEnv};
use crate::engine::{ActionRegistry, Agent};
use crate::llm::{HttpAgent, Ledger, ModelProfile};
use crate::pipeline::acquire::{self, AcquireConfig};
use crate::pipeline::actions::{register, PipelineConfig};
use crate::spec::{self, Bundle, LoadOptions};
use crate::store::{owner_id, RetryPolicy, Store, StoreError, StoreOptions, Synchronous};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("machine {file} is invalid:\n{problems}")]
    Machine { file: String, problems: String },
    #[error("{0}")]
    Setup(String),
}

/// The action registry the phase machines run with.
pub fn pipeline_actions(cfg: &Config) -> Result<ActionRegistry, BuildError> {
    let mut r = ActionRegistry::with_builtins();
    r.register(
        "shell",
        std::sync::Arc::new(crate::engine::shell::Shell::new(cfg.shell.clone())),
    );
    let mut acquire = AcquireConfig {
        pdf_base_url: cfg.pdf_base_url.clone(),
        pdf_dir: cfg.pdf_dir.clone(),
        ..AcquireConfig::default()
    };
    cfg.download.apply(&mut acquire);
    let pc = PipelineConfig {
        acquire,
        reports_dir: cfg.reports_dir.clone(),
        corpus_db: cfg.corpus_db.clone(),
        prompt_token_budget: cfg.prompt_token_budget,
        terminology: cfg.terminology.clone(),
        pdf: cfg.pdf.clone(),
    };
    register(&mut r, pc).map_err(|e| BuildError::Setup(e.message))?;
    if let Some(hooks) = cfg
        .hook_registry()
        .map_err(|e| BuildError::Setup(e.to_string()))?
    {
        r.set_hooks(hooks);
    }
    Ok(r)
}

pub fn open_store(cfg: &Config) -> Result<Store, StoreError> {
    let file_dir = match crate::store::is_db_url(&cfg.db) {
        Some(_) => None,
        None => cfg.db.parent().filter(|d| !d.as_os_str().is_empty()),
    };
    if let Some(dir) = file_dir {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: cfg.db.clone(),
            message: format!("cannot create {}: {e}", dir.display()),
            source: Some(Box::new(e)),
        })?;
    }
    Store::open(
        &cfg.db,
        &StoreOptions {
            synchronous: if cfg.sync_full {
                Synchronous::Full
            } else {
                Synchronous::Normal
            },
            // A test hook (see `store::SKEW_ENV`); the real clock otherwise.
            clock: match crate::store::SkewedClock::from_env() {
                Some(c) => std::sync::Arc::new(c),
                None => std::sync::Arc::new(crate::store::SystemClock),
            },
            ..StoreOptions::default()
        },
    )
}

/// Load one phase machine; every problem is reported with its file.
pub fn load_machine(
    cfg: &Config,
    phase: Phase,
    actions: &ActionRegistry,
) -> Result<Bundle, BuildError> {
    let file = cfg.machines_dir.join(phase.machine_file());
    let loaded = spec::load(
        &file,
        &LoadOptions {
            profiles: cfg.profiles.clone(),
            actions: actions.names(),
            model_check: Some(crate::llm::ModelProfile::check_config),
            hooks: actions.hook_names(),
        },
    );
    let problems: Vec<String> = loaded
        .diagnostics
        .items
        .iter()
        .filter(|d| d.severity == spec::Severity::Error)
        .map(|d| d.to_string())
        .collect();
    match loaded.bundle {
        Some(b) if problems.is_empty() => Ok(b),
        _ => Err(BuildError::Machine {
            file: file.display().to_string(),
            problems: if problems.is_empty() {
                "cannot be loaded".into()
            } else {
                problems.join("\n")
            },
        }),
    }
}

/// Limiter keys (provider/model) of every agent in a bundle, children included.
pub fn bundle_models(bundle: &Bundle) -> Vec<String> {
    let mut out = BTreeSet::new();
    for m in &bundle.machines {
        for a in m.agents.values() {
            if let Ok(p) = ModelProfile::from_config(&a.model) {
                out.insert(p.limiter_key());
            }
        }
    }
    out.into_iter().collect()
}

/// The models (limiter key and provider) every agent of a bundle calls:
/// what the breakers gate.
fn bundle_phase_models(bundle: &Bundle) -> Vec<PhaseModel> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for m in &bundle.machines {
        for a in m.agents.values() {
            if let Ok(p) = ModelProfile::from_config(&a.model) {
                if seen.insert(p.limiter_key()) {
                    out.push(PhaseModel {
                        key: p.limiter_key(),
                        provider: p.provider.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Model ids (as sent to the provider) of every agent in a bundle.
fn bundle_model_ids(bundle: &Bundle) -> Vec<String> {
    let mut out = BTreeSet::new();
    for m in &bundle.machines {
        for a in m.agents.values() {
            if let Ok(p) = ModelProfile::from_config(&a.model) {
                out.insert(p.model.clone());
            }
        }
    }
    out.into_iter().collect()
}

/// Remove the download temp files a crashed runner left in the PDF cache
/// (bounded: see [`acquire::sweep_stale_downloads`]). Done once per start,
/// before any download of this process can have begun.
fn sweep_downloads(pdf_dir: &Path) {
    let s = acquire::sweep_stale_downloads(
        pdf_dir,
        acquire::STALE_DOWNLOAD_AGE,
        acquire::SWEEP_MAX_ENTRIES,
    );
    if s.removed > 0 || s.truncated {
        tracing::info!(
            dir = %pdf_dir.display(),
            removed = s.removed,
            kept = s.kept,
            scanned = s.scanned,
            truncated = s.truncated,
            "stale PDF download temp files removed"
        );
    }
}

/// Characters of paper text per token of `prompt_token_budget` (the
/// cleaning's own ratio): the floor of a prompt's input in a phase plan.
const PROMPT_BYTES_PER_TOKEN: u64 = crate::pipeline::clean::CHARS_PER_TOKEN as u64;

/// The least input every prompt of a phase plan is taken to carry: the
/// paper text a prompt may hold (`prompt_token_budget`).
pub fn prompt_floor_bytes(cfg: &Config) -> u64 {
    (cfg.prompt_token_budget as u64).saturating_mul(PROMPT_BYTES_PER_TOKEN)
}

/// Say once at start-up when a money budget covers calls whose profile has
/// no price: such phases are never admitted (their cost has no bound).
fn warn_unpriced(phase: Phase, plan: &PhasePlan, budget: &Budget) {
    let limits = &budget.policy().limits;
    for class in plan.unpriced_classes() {
        if limits.money_limits(class) {
            tracing::warn!(%phase, %class, "a money budget covers {class} calls whose profile has no `price:`; the {phase} phase is not claimed until the profile has one");
        }
    }
}

/// Options that come from flags rather than the config file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: RunMode,
    pub prep_only: bool,
}

/// A ready-to-run scheduler and the store it uses.
pub struct Built {
    pub scheduler: Scheduler,
    pub store: Store,
    pub machines: HashMap<Phase, PhaseMachine>,
}

/// Builds the runner from resolved settings ([`Config::resolve`]): every
/// duration, the day start, the cron schedule and the model classes arrive
/// typed and checked, so nothing here parses or clamps a setting.
pub fn build(settings: &Settings, opts: &RunOptions) -> Result<Built, BuildError> {
    let cfg = &settings.config;
    let store = open_store(cfg)?;
    let actions = pipeline_actions(cfg)?;
    sweep_downloads(&cfg.pdf_dir);
    let mut machines = HashMap::new();
    let mut models = BTreeSet::new();
    for phase in Phase::ALL {
        let bundle = load_machine(cfg, phase, &actions)?;
        let source = cfg.machines_dir.join(phase.machine_file());
        let source = std::fs::canonicalize(&source).unwrap_or(source);
        let hash = store.put_config(&bundle, Some(&source.to_string_lossy()))?;
        models.extend(bundle_model_ids(&bundle));
        machines.insert(
            phase,
            PhaseMachine {
                phase,
                bundle: Arc::new(bundle),
                config_hash: hash,
                source: source.display().to_string(),
            },
        );
    }
    let breakers = Breakers::new(Some(store.clone()), settings.breaker.clone())?;
    let b = &settings.budget;
    let budget = Some(Budget::new(b.clone())).filter(Budget::limited);
    let mut phase_models = HashMap::new();
    let mut phase_plans = HashMap::new();
    // Every prompt may carry the paper text a prompt holds at most.
    let floor = prompt_floor_bytes(cfg);
    for (phase, m) in &machines {
        phase_models.insert(*phase, bundle_phase_models(&m.bundle));
        // Prep's text does not exist when it is claimed: its prompts are
        // taken to carry the most a prompt may hold. Later phases' inputs
        // are stored and measured per paper.
        let floor = if *phase == Phase::Prep { floor } else { 0 };
        let plan = PhasePlan::of(&m.bundle, b, floor);
        if let Some(budget) = &budget {
            warn_unpriced(*phase, &plan, budget);
        }
        phase_plans.insert(*phase, plan);
    }
    let t = &settings.scheduler;
    let burst = t.prep_burst.as_ref().map(Burst::new);
    // Calls whose model is blocked longer than `park_after` park their
    // phase (the worker slot goes to prep) instead of waiting.
    let (claim_backlog, park_after) = (t.claim_backlog, t.park_after);
    // Provider pauses that hold claims are persisted for other processes.
    let breakers = breakers.with_pause_threshold(claim_backlog);
    let ledger = Ledger::new(store.clone()).with_policy(b.policy());
    let http = HttpAgent::new(Some(ledger))
        .map_err(|e| BuildError::Setup(e.message))?
        .with_gate(Arc::new(breakers.clone()))
        .with_parking(park_after);
    let gates = Gates::new(
        Some(breakers),
        budget,
        Some(store.clone()),
        phase_models,
        phase_plans,
        burst,
    )
    .with_limiter(http.limiter().clone(), claim_backlog)
    .with_park_after(park_after);
    let agent: Arc<dyn Agent> = Arc::new(http);
    let s = &cfg.scheduler;
    let env = Arc::new(TaskEnv {
        store: store.clone(),
        agent,
        actions,
        owner: owner_id(),
        lease_ttl: t.lease_ttl,
        retry: RetryPolicy {
            max_attempts: s.max_attempts,
            base: t.retry_base,
            max: t.retry_max,
        },
        configs: Mutex::new(HashMap::new()),
        models: models.into_iter().collect(),
        phase_timeout: t.phase_timeout,
        trouble: Default::default(),
    });
    let settings = SchedulerSettings {
        mode: opts.mode,
        prep_only: opts.prep_only,
        workers: s.workers,
        phase_caps: s.phase_caps.iter().map(|(k, v)| (*k, *v)).collect(),
        phase_order: s.phase_order.clone(),
        prepped_low_watermark: s.prepped_low_watermark,
        poll_interval: t.poll_interval,
        drain_timeout: t.drain_timeout,
        reap_interval: Duration::from_secs((t.lease_ttl.as_secs() / 3).clamp(1, 60)),
    };
    let scheduler = Scheduler {
        env,
        machines: machines.clone(),
        settings,
        gates,
        stats: Arc::new(Mutex::new(RunnerStats::default())),
        observer: None,
        notifier: super::systemd::Notifier::disabled(),
    };
    Ok(Built {
        scheduler,
        store,
        machines,
    })
}

/// True when `path` looks like a runner directory's machines folder.
pub fn has_machines(dir: &Path) -> bool {
    Phase::ALL
        .iter()
        .all(|p| dir.join(p.machine_file()).is_file())
}
