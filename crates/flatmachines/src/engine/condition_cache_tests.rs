//! Transition conditions are parsed once per loaded bundle: by validation at
//! load time for a checked bundle, or on first use for one read back from the
//! store. Neither the engine's transition step nor a resumed run parses again.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{ActionRegistry, Engine, MemoryCheckpoints, NoLlm};
use crate::expr::condition::PARSES;
use crate::spec::{load, Bundle, LoadOptions};

/// Loops 25 times through two conditional transitions (50 evaluations).
const LOOP: &str = r#"
spec: flatmachine
spec_version: "4.2.1"
data:
  name: counted
  context:
    i: 0
  states:
    start:
      type: initial
      transitions:
        - to: loop
    loop:
      action: set
      input:
        i: "{{ context.i + 1 }}"
      transitions:
        - condition: "context.i >= 25"
          to: done
        - condition: "context.i < 25"
          to: loop
    done:
      type: final
      output:
        i: context.i
"#;

fn parses() -> usize {
    PARSES.with(|n| n.get())
}

fn load_loop() -> Bundle {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("machine.yml");
    std::fs::write(&path, LOOP).unwrap();
    let opts = LoadOptions {
        actions: ActionRegistry::with_builtins().names(),
        ..LoadOptions::default()
    };
    let loaded = load(&path, &opts);
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    loaded.bundle.unwrap()
}

async fn run(bundle: Bundle) -> Value {
    let engine = Engine::new(
        Arc::new(bundle),
        Arc::new(NoLlm),
        ActionRegistry::with_builtins(),
        Arc::new(MemoryCheckpoints::default()),
    );
    engine.run("e1", Map::new()).await.unwrap()
}

fn all_compiled(bundle: &Bundle) -> bool {
    bundle.machines[0]
        .states
        .values()
        .flat_map(|s| &s.transitions)
        .filter_map(|t| t.condition.as_ref())
        .all(|c| c.is_compiled())
}

#[tokio::test]
async fn validation_parses_each_condition_once_and_the_engine_reuses_it() {
    let before = parses();
    let bundle = load_loop();
    assert_eq!(parses() - before, 2, "one parse per condition, at load");
    assert!(all_compiled(&bundle), "load leaves the parse in the model");

    let before_run = parses();
    assert_eq!(run(bundle).await, json!({"i": 25}));
    assert_eq!(parses(), before_run, "50 evaluations, no parse");
}

#[tokio::test]
async fn a_bundle_read_back_from_storage_parses_on_first_use_only() {
    let stored = serde_json::to_string(&load_loop()).unwrap();
    let bundle: Bundle = serde_json::from_str(&stored).unwrap();
    assert!(!all_compiled(&bundle), "the parse is not serialized");
    assert_eq!(
        serde_json::to_string(&bundle).unwrap(),
        stored,
        "the stored form (and so its hash) is unchanged"
    );

    let before = parses();
    assert_eq!(run(bundle).await, json!({"i": 25}));
    assert_eq!(parses() - before, 2, "each condition parsed on first use");
}
