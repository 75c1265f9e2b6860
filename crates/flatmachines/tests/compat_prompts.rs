//! Golden prompts: every machine under `tests/fixtures/prompts/` runs with
//! its `input.json` against a recording agent, and each call's rendered
//! system and user prompt must equal, byte for byte, the files under its
//! `expected/` directory (`NN-STATE.system.txt`, `NN-STATE.user.txt`, in
//! call order). The expected text is what the Python FlatMachines SDK sends
//! for the same machine, so a prompt moved from the SDK reads the same here.

use async_trait::async_trait;
use flatmachines::engine::{
    ActionRegistry, Agent, AgentRequest, AgentResult, Engine, ExecError, NoCheckpoints,
};
use flatmachines::spec::{self, LoadOptions};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Records every request and answers with a fixed output.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<AgentRequest>>,
}

#[async_trait]
impl Agent for Recorder {
    async fn call(&self, req: AgentRequest) -> Result<AgentResult, ExecError> {
        self.calls.lock().unwrap().push(req);
        Ok(AgentResult {
            output: json!({"ok": true}).as_object().cloned(),
            ..Default::default()
        })
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prompts")
}

/// Runs one fixture; returns its mismatches (empty = all prompts match).
fn check_case(dir: &Path) -> Vec<String> {
    let opts = LoadOptions {
        profiles: None,
        actions: ActionRegistry::with_builtins().names(),
        model_check: None,
        hooks: None,
    };
    let loaded = spec::load(&dir.join("machine.yml"), &opts);
    let Some(bundle) = loaded.bundle else {
        return vec![format!("does not load:\n{}", loaded.diagnostics)];
    };
    let input: Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("input.json")).unwrap()).unwrap();
    let agent = Arc::new(Recorder::default());
    let engine = Engine::new(
        Arc::new(bundle),
        agent.clone(),
        ActionRegistry::with_builtins(),
        Arc::new(NoCheckpoints),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Err(e) = rt.block_on(engine.run("golden", input)) {
        return vec![format!("run failed: {e}")];
    }

    let mut expected: Vec<PathBuf> = std::fs::read_dir(dir.join("expected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    expected.sort();
    let mut got = Vec::new();
    for (i, call) in agent.calls.lock().unwrap().iter().enumerate() {
        for (part, text) in [("system", &call.system), ("user", &call.user)] {
            got.push((
                format!("{:02}-{}.{part}.txt", i + 1, call.state),
                text.clone(),
            ));
        }
    }
    got.sort();
    let names: Vec<String> = expected
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let got_names: Vec<&String> = got.iter().map(|(n, _)| n).collect();
    if names.iter().collect::<Vec<_>>() != got_names {
        return vec![format!("calls {got_names:?}, expected files {names:?}")];
    }
    let mut problems = Vec::new();
    for ((name, text), path) in got.iter().zip(&expected) {
        let want = std::fs::read_to_string(path).unwrap();
        if *text != want {
            problems.push(format!(
                "{name}:\n--- expected\n{want:?}\n--- got\n{text:?}"
            ));
        }
    }
    problems
}

#[test]
fn prompts_render_as_the_python_sdk_renders_them() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("machine.yml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3, "fixtures missing: {dirs:?}");
    let mut failures = Vec::new();
    for dir in &dirs {
        for p in check_case(dir) {
            failures.push(format!(
                "{}: {p}",
                dir.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
