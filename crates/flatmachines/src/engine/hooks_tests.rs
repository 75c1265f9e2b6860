//! Hooks a machine names: how custom actions resolve, the order of events,
//! what `check` says with and without a registry, and that a resumed
//! execution does not repeat hook calls of states whose exit was recorded.

use super::checkpoint::{Event, MemoryCheckpoints};
use super::hooks::{Hook, HookCall, HookRegistry};
use super::{ActionRegistry, Engine, ErrorKind, NoLlm};
use crate::spec::{load, Bundle, LoadOptions, Severity};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

/// An SDK-style machine: lifecycle hooks, state hooks, a custom action.
const MACHINE: &str = r#"
spec: flatmachine
spec_version: "4.2.1"
data:
  name: hooked
  lifecycle_hooks: h
  context:
    n: "{{ input.n }}"
  states:
    start:
      type: initial
      hooks: h
      action: bump
      transitions:
        - to: plain
    plain:
      action: set
      input:
        seen: "{{ context.bumped }}"
      transitions:
        - to: done
    done:
      type: final
      hooks: h
      output:
        n: "{{ context.n }}"
        seen: "{{ context.seen }}"
"#;

/// Records `event[:action]@state` and answers like a user's hooks would.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl Hook for Recorder {
    async fn call(&self, c: &HookCall<'_>) -> Result<super::hooks::HookReply, super::ExecError> {
        let tag = match c.action {
            Some(a) => format!("{}:{a}@{}", c.event, c.state),
            None => format!("{}@{}", c.event, c.state),
        };
        self.seen.lock().unwrap().push(tag);
        let mut out = Map::new();
        match (c.event.as_str(), c.action) {
            ("action", Some("bump")) => {
                let n = c.context["n"].as_i64().unwrap_or(0);
                out.insert("bumped".into(), json!(n + 1));
            }
            ("machine_start", _) => {
                out.insert("started".into(), json!(true));
            }
            ("machine_end", _) => {
                out.insert("ended".into(), json!(true));
            }
            _ => {}
        }
        Ok(out.into())
    }
}

fn load_with(text: &str, hooks: Option<Vec<String>>) -> crate::spec::Loaded {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("machine.yml");
    std::fs::write(&path, text).unwrap();
    let opts = LoadOptions {
        actions: ActionRegistry::with_builtins().names(),
        hooks,
        ..LoadOptions::default()
    };
    load(&path, &opts)
}

fn bundle() -> Arc<Bundle> {
    let loaded = load_with(MACHINE, Some(vec!["h".into()]));
    assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
    Arc::new(loaded.bundle.unwrap())
}

fn engine(rec: Option<Arc<Recorder>>, checkpoints: Arc<MemoryCheckpoints>) -> Engine {
    let mut actions = ActionRegistry::with_builtins();
    if let Some(rec) = rec {
        let mut hooks = HookRegistry::default();
        hooks.register("h", rec);
        actions.set_hooks(hooks);
    }
    Engine::new(bundle(), Arc::new(NoLlm), actions, checkpoints)
}

fn input() -> Map<String, Value> {
    json!({"n": 41}).as_object().cloned().unwrap()
}

#[tokio::test]
async fn custom_actions_and_events_reach_the_named_hooks_in_order() {
    let rec = Arc::new(Recorder::default());
    let cps = Arc::new(MemoryCheckpoints::default());
    let out = engine(Some(rec.clone()), cps.clone())
        .run("e1", input())
        .await
        .unwrap();
    // The action's object went into the context; machine_end's into the output.
    assert_eq!(out, json!({"n": 41, "seen": 42, "ended": true}));
    assert_eq!(
        *rec.seen.lock().unwrap(),
        vec![
            "machine_start@start",
            "state_enter@start",
            "action:bump@start",
            "state_exit@start",
            // `plain` names no hooks: no state events; `set` is native.
            "state_enter@done",
            "state_exit@done",
            "machine_end@done",
        ]
    );
    // machine_start's change is in the start checkpoint.
    let start = cps
        .all()
        .into_iter()
        .find(|s| s.event == Event::MachineStart)
        .unwrap();
    assert_eq!(start.context["started"], json!(true));
}

#[tokio::test]
async fn a_custom_action_without_a_handler_fails_naming_hook_and_action() {
    let cps = Arc::new(MemoryCheckpoints::default());
    let e = engine(None, cps).run("e1", input()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ActionError);
    assert!(e.message.contains("action 'bump'"), "{e}");
    assert!(e.message.contains("hook 'h'"), "{e}");
    assert!(e.message.contains("--hooks h=cmd:"), "{e}");
}

#[tokio::test]
async fn a_resumed_execution_repeats_no_hook_call_of_an_exited_state() {
    let rec = Arc::new(Recorder::default());
    let cps = Arc::new(MemoryCheckpoints::default());
    engine(Some(rec), cps.clone())
        .run("e1", input())
        .await
        .unwrap();
    // Resume from the exit of `start` (as after a crash right after it).
    let snap = cps
        .all()
        .into_iter()
        .find(|s| s.event == Event::StateExit && s.state.as_deref() == Some("start"))
        .unwrap();
    let again = Arc::new(Recorder::default());
    let out = engine(Some(again.clone()), Arc::new(MemoryCheckpoints::default()))
        .resume(snap)
        .await
        .unwrap();
    assert_eq!(out["seen"], json!(42));
    assert_eq!(
        *again.seen.lock().unwrap(),
        vec!["state_enter@done", "state_exit@done", "machine_end@done"]
    );
    // From the enter of `start` (in flight), the state's hooks run again.
    let snap = cps
        .all()
        .into_iter()
        .find(|s| s.event == Event::StateEnter && s.state.as_deref() == Some("start"))
        .unwrap();
    let third = Arc::new(Recorder::default());
    engine(Some(third.clone()), Arc::new(MemoryCheckpoints::default()))
        .resume(snap)
        .await
        .unwrap();
    assert_eq!(third.seen.lock().unwrap()[0], "state_enter@start");
}

fn messages(loaded: &crate::spec::Loaded, sev: Severity) -> Vec<String> {
    loaded
        .diagnostics
        .items
        .iter()
        .filter(|d| d.severity == sev)
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn check_warns_without_a_registry_and_errors_with_one_lacking_the_hook() {
    // No registry: a warning naming the action and hook, no error.
    let loaded = load_with(MACHINE, None);
    assert!(loaded.bundle.is_some(), "{}", loaded.diagnostics);
    let warns = messages(&loaded, Severity::Warning);
    assert!(
        warns
            .iter()
            .any(|w| w.contains("action 'bump'") && w.contains("'h'")),
        "{warns:?}"
    );
    // A registry without `h`: an error.
    let loaded = load_with(MACHINE, Some(vec!["other".into()]));
    assert!(loaded.bundle.is_none());
    let errs = messages(&loaded, Severity::Error);
    assert!(
        errs.iter()
            .any(|e| e.contains("action 'bump' needs hook 'h'") && e.contains("other")),
        "{errs:?}"
    );
    // ... and its events would be skipped: a warning for the state and the machine.
    let warns = messages(&loaded, Severity::Warning);
    let skipped = warns
        .iter()
        .filter(|w| w.contains("hook 'h' has no handler"))
        .count();
    assert_eq!(skipped, 3, "{warns:?}");
    // With `h`: clean of hook findings.
    let loaded = load_with(MACHINE, Some(vec!["h".into()]));
    assert!(messages(&loaded, Severity::Error).is_empty());
    assert!(!messages(&loaded, Severity::Warning)
        .iter()
        .any(|w| w.contains("hook")));
    // A custom action with no hooks named anywhere stays an unknown action.
    let bare = MACHINE.replace("  lifecycle_hooks: h\n", "").replacen(
        "      hooks: h\n      action: bump",
        "      action: bump",
        1,
    );
    let loaded = load_with(&bare, None);
    let errs = messages(&loaded, Severity::Error);
    assert!(
        errs.iter().any(|e| e.contains("unknown action 'bump'")),
        "{errs:?}"
    );
    // The machine's lifecycle_hooks implement actions of states without hooks.
    let lifecycle_only = MACHINE.replacen(
        "      hooks: h\n      action: bump",
        "      action: bump",
        1,
    );
    let loaded = load_with(&lifecycle_only, Some(vec![]));
    let errs = messages(&loaded, Severity::Error);
    assert!(
        errs.iter().any(|e| e.contains("needs hook 'h'")),
        "{errs:?}"
    );
    // Malformed references are errors.
    let bad = MACHINE.replace("lifecycle_hooks: h", "lifecycle_hooks: 3");
    let errs = messages(&load_with(&bad, None), Severity::Error);
    assert!(
        errs.iter().any(|e| e.contains("lifecycle_hooks:")),
        "{errs:?}"
    );
}
