//! `machine run --db` and `machine resume`: executions checkpointed to
//! SQLite, under a fenced lease.

use super::exit::{CliResult, Code};
use super::machine::{print_outcome, runtime, DbArgs, ResumeArgs};
use paper_runner::durable::{Begin, DriveError, Driver};
use paper_runner::engine::{ActionRegistry, ErrorKind};
use paper_runner::spec::{self, Bundle, LoadOptions};
use paper_runner::store::{Store, StoreError, StoreOptions, Synchronous};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn open_store(db: &DbArgs) -> Result<Store, StoreError> {
    let path = db.db.clone().unwrap_or_else(|| "paper-runner.db".into());
    let opts = StoreOptions {
        synchronous: if db.sync_full {
            Synchronous::Full
        } else {
            Synchronous::Normal
        },
        ..StoreOptions::default()
    };
    Store::open(&path, &opts)
}

fn driver(store: Store, bundle: Arc<Bundle>, registry: ActionRegistry, db: &DbArgs) -> Driver {
    let agent = super::machine::llm_agent(Some(&store));
    Driver::new(
        store,
        bundle,
        agent,
        registry,
        Duration::from_secs(db.lease_ttl.max(1)),
    )
}

/// `machine run FILE --db PATH`: a new persisted execution, or a resume
/// when the id already exists.
pub fn run_persisted(
    rt: &tokio::runtime::Runtime,
    db: &DbArgs,
    file: &Path,
    bundle: Arc<Bundle>,
    registry: ActionRegistry,
    id: &str,
    input: Map<String, Value>,
) -> CliResult {
    let store = match open_store(db) {
        Ok(s) => s,
        Err(e) => return fail_invalid(&e.to_string()),
    };
    match store.execution(id) {
        Ok(Some(_)) => {
            eprintln!("note: execution {id} exists; resuming it from its latest checkpoint");
            return rt.block_on(resume_one(&store, id, None, registry, db));
        }
        Ok(None) => {}
        Err(e) => return fail_invalid(&e.to_string()),
    }
    let source = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let created = store
        .put_config(&bundle, Some(&source.to_string_lossy()))
        .and_then(|hash| {
            store.create_execution(id, &hash, &bundle.root().name, bundle.root, &input)
        });
    if let Err(e) = created {
        return fail_invalid(&e.to_string());
    }
    let d = driver(store, bundle, registry, db);
    outcome(rt.block_on(d.drive(id, Begin::Fresh(input))))
}

pub fn resume(a: ResumeArgs) -> CliResult {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail_invalid(&format!("{e:#}")),
    };
    let store = match open_store(&a.db) {
        Ok(s) => s,
        Err(e) => return fail_invalid(&e.to_string()),
    };
    let ids = if a.all {
        match store.unfinished_roots() {
            Ok(ids) => ids,
            Err(e) => return fail_invalid(&e.to_string()),
        }
    } else {
        a.ids.clone()
    };
    if ids.is_empty() && !a.all {
        return fail_invalid("name an execution id to resume, or use --all");
    }
    let registry = match super::machine::actions_with_hooks(&a.hooks, a.python.as_deref()) {
        Ok(r) => r,
        Err(e) => return fail_invalid(&format!("{e:#}")),
    };
    let reload = a.reload_config.then(|| LoadOptions {
        profiles: a.profiles.clone(),
        actions: registry.names(),
        model_check: Some(paper_runner::llm::ModelProfile::check_config),
        hooks: registry.hook_names(),
    });
    if ids.len() == 1 && !a.all {
        return rt.block_on(resume_one(
            &store,
            &ids[0],
            reload.as_ref(),
            registry,
            &a.db,
        ));
    }
    // Several: one JSON line per execution; leased ones are skipped.
    let mut worst: Option<Code> = None;
    for id in &ids {
        let line = rt.block_on(resume_line(
            &store,
            id,
            reload.as_ref(),
            registry.clone(),
            &a.db,
        ));
        match line {
            Ok(v) => {
                if v.get("status").and_then(Value::as_str) == Some("failed") {
                    worst = worst.max(Some(Code::Failure));
                }
                println!("{v}");
            }
            Err(code) => worst = worst.max(Some(code)),
        }
    }
    match worst {
        None | Some(Code::Leased) => Ok(()),
        Some(code) => Err(code.into()),
    }
}

async fn resume_line(
    store: &Store,
    id: &str,
    reload: Option<&LoadOptions>,
    registry: ActionRegistry,
    db: &DbArgs,
) -> Result<Value, Code> {
    let (driver, begin) = match prepare(store, id, reload, registry, db) {
        Ok(x) => x,
        Err(Prepared::Finished(r)) => return Ok(line(id, r)),
        Err(Prepared::Invalid(msg)) => {
            eprintln!("error: {msg}");
            return Err(Code::Usage);
        }
    };
    match driver.drive(id, begin).await {
        Err(DriveError::Leased(e)) => {
            eprintln!("skipped: {e}");
            Err(Code::Leased)
        }
        Err(DriveError::Store(e)) => {
            eprintln!("error: {e}");
            Err(Code::Usage)
        }
        Err(DriveError::Exec(e)) => Ok(line(id, Err(e))),
        Ok(v) => Ok(line(id, Ok(v))),
    }
}

fn line(id: &str, r: Result<Value, paper_runner::engine::ExecError>) -> Value {
    match r {
        Ok(v) => json!({"execution_id": id, "status": "done", "output": v}),
        Err(e) if e.waiting().is_some() => {
            let (signal, deadline) = e.waiting().unwrap_or_default();
            json!({"execution_id": id, "status": "waiting", "signal": signal, "deadline_ms": deadline})
        }
        Err(e) => {
            json!({"execution_id": id, "status": "failed", "error": {"kind": e.kind.as_str(), "message": e.message}})
        }
    }
}

enum Prepared {
    Finished(Result<Value, paper_runner::engine::ExecError>),
    Invalid(String),
}

/// Find the execution, its config and where to start.
fn prepare(
    store: &Store,
    id: &str,
    reload: Option<&LoadOptions>,
    registry: ActionRegistry,
    db: &DbArgs,
) -> Result<(Driver, Begin), Prepared> {
    let inv = |e: StoreError| Prepared::Invalid(e.to_string());
    let row = store.execution(id).map_err(inv)?.ok_or_else(|| {
        Prepared::Invalid(format!("no execution {id} in {}", store.path().display()))
    })?;
    if let Some(parent) = &row.parent_id {
        return Err(Prepared::Invalid(format!(
            "execution {id} is a child of {parent}; resume the root execution {}",
            row.root_id
        )));
    }
    let snapshot = store.latest(id).map_err(inv)?;
    if let Some(s) = &snapshot {
        if s.event.is_terminal() {
            let r = match &s.error {
                Some(e) if s.event == paper_runner::engine::Event::MachineFailed => Err(e.clone()),
                _ => Ok(s.output.clone().unwrap_or_else(|| json!({}))),
            };
            return Err(Prepared::Finished(r));
        }
    }
    let (stored, source) = store.get_config(&row.config_hash).map_err(inv)?;
    let bundle = match reload {
        None => Arc::new(stored),
        Some(opts) => reload_bundle(store, id, source.as_deref(), opts, snapshot.as_ref())?,
    };
    // Where to start is read again once the lease is held (see `Begin`).
    let begin = Begin::Latest;
    Ok((driver(store.clone(), bundle, registry, db), begin))
}

fn reload_bundle(
    store: &Store,
    id: &str,
    source: Option<&str>,
    opts: &LoadOptions,
    snapshot: Option<&paper_runner::engine::Snapshot>,
) -> Result<Arc<Bundle>, Prepared> {
    let source = source.ok_or_else(|| {
        Prepared::Invalid("the stored config has no source file to reload".into())
    })?;
    let loaded = spec::load(Path::new(source), opts);
    let Some(bundle) = loaded.bundle else {
        return Err(Prepared::Invalid(format!(
            "cannot reload {source}:\n{}",
            loaded.diagnostics
        )));
    };
    if let Some(s) = snapshot {
        // Where execution continues: the state in flight, or the next one.
        let state = match s.event {
            paper_runner::engine::Event::StateEnter => s.state.as_deref(),
            _ => s.next_state.as_deref(),
        }
        .unwrap_or_default();
        let m = bundle.machines.get(s.machine_index);
        let ok = m.is_some_and(|m| m.name == s.machine_name && m.states.contains_key(state));
        if !ok {
            return Err(Prepared::Invalid(format!(
                "{source} no longer has state '{state}' of machine '{}' where execution {id} stands; resume without --reload-config",
                s.machine_name
            )));
        }
    }
    let hash = store
        .put_config(&bundle, Some(source))
        .and_then(|h| store.set_config(id, &h).map(|_| h))
        .map_err(|e| Prepared::Invalid(e.to_string()))?;
    tracing::info!(execution_id = id, config = %hash, "resuming with reloaded config");
    Ok(Arc::new(bundle))
}

async fn resume_one(
    store: &Store,
    id: &str,
    reload: Option<&LoadOptions>,
    registry: ActionRegistry,
    db: &DbArgs,
) -> CliResult {
    match prepare(store, id, reload, registry, db) {
        Err(Prepared::Finished(r)) => print_outcome(r),
        Err(Prepared::Invalid(msg)) => fail_invalid(&msg),
        Ok((driver, begin)) => outcome(driver.drive(id, begin).await),
    }
}

fn outcome(r: Result<Value, DriveError>) -> CliResult {
    match r {
        Ok(v) => print_outcome(Ok(v)),
        Err(DriveError::Exec(e)) => {
            if e.kind == ErrorKind::Interrupted && e.waiting().is_none() {
                eprintln!("error: interrupted: {}", e.message);
                return Err(Code::Failure.into());
            }
            print_outcome(Err(e))
        }
        Err(DriveError::Leased(e)) => {
            eprintln!("error: {e}");
            Err(Code::Leased.into())
        }
        Err(DriveError::Store(e)) => fail_invalid(&e.to_string()),
    }
}

fn fail_invalid(msg: &str) -> CliResult {
    eprintln!("error: {msg}");
    Err(Code::Usage.into())
}
