//! Resume semantics in process: resuming from any snapshot gives the
//! uninterrupted output; a state whose exit was checkpointed never runs
//! again; finished children are re-attached, not re-run.

use crate::support::ScriptedAgent;
use async_trait::async_trait;
use paper_runner::engine::{
    Action, ActionArgs, ActionRegistry, Checkpointer, Engine, Event, ExecError, MemoryCheckpoints,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Adds `input.add` to `context.total` and counts runs per (execution, state).
#[derive(Default)]
struct Count {
    runs: Mutex<HashMap<(String, String), u32>>,
}

#[async_trait]
impl Action for Count {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        *self
            .runs
            .lock()
            .unwrap()
            .entry((args.execution_id.to_string(), args.state_name.to_string()))
            .or_default() += 1;
        let add = args.input.get("add").and_then(Value::as_i64).unwrap_or(0);
        let total = ctx.get("total").and_then(Value::as_i64).unwrap_or(0) + add;
        ctx.insert("total".into(), json!(total));
        Ok(None)
    }
}

fn engine(count: Arc<Count>, ckpt: Arc<dyn Checkpointer>) -> Engine {
    let mut actions = ActionRegistry::with_builtins();
    actions.register("count", count);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resume/parent.yml");
    let opts = paper_runner::spec::LoadOptions {
        profiles: None,
        actions: actions.names(),
        model_check: Some(paper_runner::llm::ModelProfile::check_config),
        hooks: None,
    };
    let bundle = Arc::new(
        paper_runner::spec::load(&path, &opts)
            .bundle
            .expect("fixture loads"),
    );
    Engine::new(bundle, Arc::new(ScriptedAgent::default()), actions, ckpt)
}

#[tokio::test]
async fn resuming_from_every_snapshot_matches_an_uninterrupted_run() {
    let full = Arc::new(MemoryCheckpoints::default());
    let reference = engine(Arc::new(Count::default()), full.clone())
        .run("p", Map::new())
        .await
        .unwrap();
    assert_eq!(reference["total"], json!(1011));
    assert_eq!(
        reference["kids"],
        json!({"child": {"total": 1}, "child#1": {"total": 2}})
    );
    let all = full.all();
    let root_snaps: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].execution_id == "p")
        .collect();
    assert!(root_snaps.len() > 15);

    for &cut in &root_snaps {
        // Everything up to and including snapshot `cut` survived the crash.
        let kept = MemoryCheckpoints::default();
        for s in &all[..=cut] {
            kept.save(s).await.unwrap();
        }
        let exited: Vec<(String, String)> = all[..=cut]
            .iter()
            .filter(|s| s.event == Event::StateExit)
            .map(|s| (s.execution_id.clone(), s.state.clone().unwrap()))
            .collect();
        let count = Arc::new(Count::default());
        let resumed = engine(count.clone(), Arc::new(kept))
            .resume(all[cut].clone())
            .await
            .unwrap();
        assert_eq!(
            resumed, reference,
            "resume from snapshot {cut} ({:?})",
            all[cut].event
        );
        let runs = count.runs.lock().unwrap();
        for (key, n) in runs.iter() {
            // `c` loops: it legitimately runs several times at different steps.
            if key.1 != "c" {
                assert_eq!(*n, 1, "{key:?} ran {n} times after resume from {cut}");
                assert!(
                    !exited.contains(key),
                    "{key:?} exited before the crash but ran again"
                );
            }
        }
        // Children that finished before the cut were re-attached, not re-run.
        for child in ["p/kids@3/child", "p/kids@3/child#1"] {
            let finished = all[..=cut]
                .iter()
                .any(|s| s.execution_id == child && s.event == Event::MachineEnd);
            if finished {
                assert!(
                    !runs.contains_key(&(child.to_string(), "x".to_string())),
                    "{child} re-ran"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_finished_execution_returns_its_stored_output() {
    let full = Arc::new(MemoryCheckpoints::default());
    let out = engine(Arc::new(Count::default()), full.clone())
        .run("p", Map::new())
        .await
        .unwrap();
    let end = full
        .all()
        .into_iter()
        .rev()
        .find(|s| s.execution_id == "p")
        .unwrap();
    assert_eq!(end.event, Event::MachineEnd);
    let count = Arc::new(Count::default());
    let again = engine(count.clone(), Arc::new(MemoryCheckpoints::default()))
        .resume(end)
        .await
        .unwrap();
    assert_eq!(again, out);
    assert!(count.runs.lock().unwrap().is_empty());
}
