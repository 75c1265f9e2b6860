//! Hostile machine files and bundles (issue 12, B.5/B.10/section 12): each
//! case must end with a named error kind or a `check` error, fast, and never
//! with a panic, a stack overflow (SIGABRT) or unbounded memory.

use crate::support;
use crate::support::{stderr, stdout};
use paper_runner::engine::{
    ActionRegistry, Engine, ErrorKind, Limits, NoCheckpoints, NoLlm, MAX_NESTING_DEPTH,
};
use paper_runner::spec::model::{MachineItem, MachineTarget, Transition};
use paper_runner::spec::{self, Bundle, LoadOptions, StateDef};
use serde_json::{json, Value};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

/// Run `runner ARGS` with a wall-clock deadline; the child is killed past it.
fn runner(args: &[&str], dir: &Path, deadline: Duration) -> Output {
    let mut child = Command::new(RUNNER)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runner starts");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "runner {args:?} still running after {deadline:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Polling a real child process: there is no event to wait on.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exit code, failing the test on death by a signal (SIGABRT = overflow).
fn code(o: &Output) -> i32 {
    match o.status.code() {
        Some(c) => c,
        None => panic!(
            "runner died by signal {:?}; stderr: {}",
            o.status.signal(),
            stderr(o)
        ),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const HEAD: &str = "spec: flatmachine\nspec_version: \"4.2.1\"\n";

// ---------------------------------------------------------------- check --

#[test]
fn recursive_machines_are_rejected_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "self.yml",
        &format!(
            "{HEAD}data:\n  name: selfish\n  machines: {{me: self.yml}}\n  states:\n    start: {{type: initial, transitions: [{{to: again}}]}}\n    again: {{machine: me, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
        ),
    );
    write(
        dir.path(),
        "a.yml",
        &format!(
            "{HEAD}data:\n  name: a\n  machines: {{b: b.yml}}\n  states:\n    start: {{type: initial, transitions: [{{to: go}}]}}\n    go: {{machine: [b], transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
        ),
    );
    write(
        dir.path(),
        "b.yml",
        &format!(
            "{HEAD}data:\n  name: b\n  machines: {{a: a.yml}}\n  states:\n    start: {{type: initial, transitions: [{{to: back}}]}}\n    back: {{foreach: \"{{{{ [1, 2] }}}}\", machine: a, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
        ),
    );
    write(
        dir.path(),
        "fan.yml",
        &format!(
            "{HEAD}data:\n  name: fan\n  machines: {{x: fan.yml}}\n  states:\n    start: {{type: initial, transitions: [{{to: fan}}]}}\n    fan: {{machine: [x, x], transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
        ),
    );
    let t = Duration::from_secs(30);
    let o = runner(&["machine", "check", "self.yml"], dir.path(), t);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("self.yml: state 'again': machine 'selfish' can reach itself"),
        "{}",
        stdout(&o)
    );
    let o = runner(&["machine", "check", "a.yml"], dir.path(), t);
    assert_eq!(code(&o), 2);
    let out = stdout(&o);
    assert!(
        out.contains("a.yml: state 'go': machine 'a' can reach itself"),
        "{out}"
    );
    assert!(
        out.contains("b.yml: state 'back': machine 'b' can reach itself"),
        "{out}"
    );
    assert!(
        out.contains("a.yml state 'go' → b.yml state 'back' → a.yml"),
        "{out}"
    );
    // `run` refuses before anything runs: exit 2, not SIGABRT or 4 GB.
    for f in ["self.yml", "a.yml", "fan.yml"] {
        let o = runner(&["machine", "run", f], dir.path(), t);
        assert_eq!(code(&o), 2, "{f}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("can reach itself"),
            "{f}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn chains_deeper_than_the_nesting_limit_fail_check() {
    let dir = tempfile::tempdir().unwrap();
    let n = MAX_NESTING_DEPTH + 2;
    for i in 0..n {
        let body = if i + 1 < n {
            format!(
                "  machines: {{next: m{}.yml}}\n  states:\n    start: {{type: initial, transitions: [{{to: down}}]}}\n    down: {{machine: next, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n",
                i + 1
            )
        } else {
            "  states:\n    start: {type: initial, transitions: [{to: done}]}\n    done: {type: final}\n"
                .to_string()
        };
        write(
            dir.path(),
            &format!("m{i}.yml"),
            &format!("{HEAD}data:\n  name: m{i}\n{body}"),
        );
    }
    let o = runner(
        &["machine", "check", "m0.yml"],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!(
            "m0.yml: state 'down': child machines nest {} levels deep from here; the engine allows at most {MAX_NESTING_DEPTH}",
            n - 1
        )),
        "{}",
        stdout(&o)
    );
    // Exactly at the limit is fine.
    let o = runner(
        &["machine", "check", "m2.yml"],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn huge_durations_fail_check_instead_of_panicking_at_run() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t.yml",
        &format!(
            "{HEAD}data:\n  states:\n    start: {{type: initial, transitions: [{{to: wait}}]}}\n    wait: {{action: shell, command: [\"true\"], timeout: 1e20, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
        ),
    );
    let o = runner(
        &["machine", "run", "t.yml"],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "t.yml: state 'wait': timeout must be a number of seconds above 0 and at most 86400"
        ),
        "{}",
        stderr(&o)
    );
    // The profile catalog beside a machine is checked as well.
    write(
        dir.path(),
        "profiles.yml",
        "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n    slow: {provider: openai, name: m, timeout: .nan}\n    huge: {provider: openai, name: m, timeout: 1e300}\n  default: huge\n",
    );
    write(
        dir.path(),
        "agent.yml",
        &format!(
            "{HEAD}data:\n  agents:\n    a: {{spec: flatagent, spec_version: \"4.2.1\", data: {{prompt: {{user: hi}}}}}}\n  states:\n    start: {{type: initial, transitions: [{{to: ask}}]}}\n    ask: {{agent: a, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
        ),
    );
    let o = runner(
        &["machine", "check", "agent.yml"],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("state 'ask': agent 'a': model: `timeout` must be a number of seconds"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn deep_yaml_fails_fast_and_duplicate_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "deep.yml", &"[".repeat(200 * 1024));
    write(dir.path(), "deepmap.yml", &"{a: ".repeat(50 * 1024));
    for f in ["deep.yml", "deepmap.yml"] {
        let started = Instant::now();
        let o = runner(
            &["machine", "check", f],
            dir.path(),
            Duration::from_secs(30),
        );
        assert_eq!(code(&o), 2);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{f}: {:?}",
            started.elapsed()
        );
        assert!(
            stdout(&o).contains(&format!("{f}:1:"))
                && stdout(&o).contains("nesting deeper than 64 levels"),
            "{}",
            stdout(&o)
        );
    }
    write(
        dir.path(),
        "dup.yml",
        &format!(
            "{HEAD}data:\n  states:\n    start: {{type: initial, transitions: [{{to: done}}]}}\n    done: {{type: final, output: {{a: 1, a: 2}}}}\n"
        ),
    );
    let o = runner(
        &["machine", "run", "dup.yml"],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("duplicate key 'a'"), "{}", stderr(&o));
    // A duplicate inside an agent file and a prompt file too.
    std::fs::create_dir(dir.path().join("ag")).unwrap();
    write(
        dir.path(),
        "ag/p.yml",
        "spec: prompt\ndata:\n  user: one\n  user: two\n",
    );
    write(
        dir.path(),
        "ag/a.yml",
        "spec: flatagent\nspec_version: \"4.2.1\"\ndata:\n  model: {provider: openai, name: m}\n  prompt: p.yml\n",
    );
    write(
        dir.path(),
        "uses_agent.yml",
        &format!(
            "{HEAD}data:\n  agents: {{a: ag/a.yml}}\n  states:\n    start: {{type: initial, transitions: [{{to: ask}}]}}\n    ask: {{agent: a, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
        ),
    );
    let o = runner(
        &["machine", "check", "uses_agent.yml"],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(code(&o), 2);
    assert!(
        stdout(&o).contains("p.yml:") && stdout(&o).contains("duplicate key 'user'"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn oversized_and_special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = format!("{HEAD}data:\n  states:\n    start: {{type: final}}\n");
    big.push_str(&"# padding\n".repeat(500_000));
    write(dir.path(), "big.yml", &big);
    let o = runner(
        &["machine", "check", "big.yml"],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(code(&o), 2);
    assert!(
        stdout(&o).contains("big.yml: file is too large"),
        "{}",
        stdout(&o)
    );
    let o = runner(
        &["machine", "check", "/dev/zero"],
        dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(code(&o), 2);
    assert!(stdout(&o).contains("not a regular file"), "{}", stdout(&o));
}

// ------------------------------------------------------------------ run --

#[test]
fn endless_template_loop_is_a_template_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "loop.yml",
        &format!(
            "{HEAD}data:\n  states:\n    start: {{type: initial, transitions: [{{to: done}}]}}\n    done:\n      type: final\n      output:\n        text: \"{{% for i in range(100000) %}}{{% for j in range(100000) %}}x{{% endfor %}}{{% endfor %}}\"\n"
        ),
    );
    let o = runner(
        &["machine", "run", "loop.yml"],
        dir.path(),
        Duration::from_secs(60),
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("error: template_error: state 'done': output"),
        "{e}"
    );
    assert!(e.contains("fuel"), "{e}");
}

#[test]
fn huge_template_output_is_output_too_large() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "big.yml",
        &format!(
            "{HEAD}data:\n  context:\n    seed: \"{{{{ 'x' * 1000 }}}}\"\n  states:\n    start:\n      type: initial\n      output_to_context:\n        blob: \"{{% for i in range(10000) %}}{{{{ context.seed }}}}{{% endfor %}}\"\n      transitions: [{{to: done}}]\n    done: {{type: final, output: {{n: \"{{{{ context.blob | length }}}}\"}}}}\n"
        ),
    );
    let o = runner(
        &["machine", "run", "big.yml"],
        dir.path(),
        Duration::from_secs(60),
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("error: output_too_large: state 'start': output_to_context.blob"),
        "{e}"
    );
    assert!(e.contains("output is larger than 4194304 bytes"), "{e}");
}

#[test]
fn foreach_fan_out_over_the_limit_is_a_recursion_limit() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "leaf.yml",
        &format!("{HEAD}data:\n  states:\n    start: {{type: initial, transitions: [{{to: end}}]}}\n    end: {{type: final, output: {{ok: true}}}}\n"),
    );
    write(
        dir.path(),
        "fan.yml",
        &format!(
            "{HEAD}data:\n  context: {{n: input.n}}\n  machines: {{leaf: leaf.yml}}\n  states:\n    start: {{type: initial, transitions: [{{to: fan}}]}}\n    fan:\n      foreach: \"{{{{ range(context.n) | list }}}}\"\n      machine: leaf\n      output_to_context: {{n: \"{{{{ output | length }}}}\"}}\n      transitions: [{{to: done}}]\n    done: {{type: final, output: {{n: context.n}}}}\n"
        ),
    );
    let t = Duration::from_secs(60);
    let o = runner(
        &["machine", "run", "fan.yml", "--input", r#"{"n": 5000}"#],
        dir.path(),
        t,
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("error: recursion_limit: state 'fan': state 'fan' would start 5000 child machines at once; the limit per state is 500"),
        "{}",
        stderr(&o)
    );
    // Under the limit it runs.
    let o = runner(
        &["machine", "run", "fan.yml", "--input", r#"{"n": 20}"#],
        dir.path(),
        t,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        serde_json::from_str::<Value>(stdout(&o).trim()).unwrap(),
        json!({"n": 20})
    );
}

// ------------------------------------------------- unvalidated bundles --

/// A bundle that skipped `check` (as one stored by an older version
/// would): machine 0 calls itself from state `again` with `target`.
fn self_calling_bundle(target: MachineTarget, foreach: Option<&str>) -> Arc<Bundle> {
    let mut b = Bundle::single_state("selfish", "start");
    let m = &mut b.machines[0];
    m.machines.insert("me".into(), 0);
    let start = m.states.get_mut("start").unwrap();
    start.transitions = vec![Transition {
        condition: None,
        to: "again".into(),
    }];
    m.states.insert(
        "again".into(),
        StateDef {
            machine: Some(target),
            foreach: foreach.map(str::to_string),
            transitions: vec![Transition {
                condition: None,
                to: "done".into(),
            }],
            ..StateDef::default()
        },
    );
    m.states.insert(
        "done".into(),
        StateDef {
            kind: Some("final".into()),
            ..StateDef::default()
        },
    );
    // `check` would refuse this bundle; the engine must still end cleanly.
    Arc::new(b)
}

fn engine(bundle: Arc<Bundle>) -> Engine {
    Engine::new(
        bundle,
        Arc::new(NoLlm),
        ActionRegistry::with_builtins(),
        Arc::new(NoCheckpoints),
    )
}

/// Run on a tokio worker thread (2 MiB stack, as in the daemon).
fn run_on_worker(engine: Engine) -> paper_runner::engine::ExecError {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::spawn(async move { engine.run("root", Default::default()).await })
            .await
            .expect("the run task must not panic")
            .expect_err("a recursive machine cannot succeed")
    })
}

#[test]
fn self_recursion_stops_at_the_depth_limit_without_overflowing() {
    let b = self_calling_bundle(MachineTarget::One("me".into()), None);
    let e = run_on_worker(engine(b));
    assert_eq!(e.kind, ErrorKind::RecursionLimit, "{e}");
    assert!(
        e.message.contains(
            "would start a child machine at nesting level 17, deeper than the limit of 16"
        ),
        "{e}"
    );
}

#[test]
fn self_fan_out_stops_at_the_total_children_limit() {
    let b = self_calling_bundle(
        MachineTarget::Many(vec![
            MachineItem::Name("me".into()),
            MachineItem::Name("me".into()),
        ]),
        None,
    );
    let e = run_on_worker(engine(b));
    assert_eq!(e.kind, ErrorKind::RecursionLimit, "{e}");
    assert!(
        e.message.contains("the limit per root execution is 1000"),
        "{e}"
    );
    // The same through `foreach`, with lower limits.
    let b = self_calling_bundle(MachineTarget::One("me".into()), Some("{{ [1, 2, 3] }}"));
    let e = run_on_worker(engine(b).with_limits(Limits {
        max_depth: 50,
        max_children: 40,
        max_fanout: 10,
    }));
    assert_eq!(e.kind, ErrorKind::RecursionLimit, "{e}");
    assert!(
        e.message.contains("the limit per root execution is 40"),
        "{e}"
    );
}

#[test]
fn allow_failures_does_not_hide_a_recursion_limit() {
    let b = self_calling_bundle(MachineTarget::One("me".into()), Some("{{ [1] }}"));
    let mut b = (*b).clone();
    b.machines[0]
        .states
        .get_mut("again")
        .unwrap()
        .allow_failures = true;
    let e = run_on_worker(engine(Arc::new(b)));
    assert_eq!(e.kind, ErrorKind::RecursionLimit, "{e}");
}

#[test]
fn the_repo_machines_still_pass_check() {
    let opts = LoadOptions {
        profiles: None,
        actions: support::actions().names(),
        model_check: Some(paper_runner::llm::ModelProfile::check_config),
        hooks: None,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("machines");
    for f in ["prep.yml", "expensive.yml", "wrap.yml"] {
        let loaded = spec::load(&root.join(f), &opts);
        // Pipeline actions are not in the built-in registry: only the
        // errors this issue added must be absent.
        for d in loaded.diagnostics.errors() {
            let s = d.to_string();
            assert!(
                !s.contains("can reach itself")
                    && !s.contains("must be a number of seconds")
                    && !s.contains("duplicate key")
                    && !s.contains("nesting"),
                "{s}"
            );
        }
    }
}
/// Child machines run on their own tasks, so nesting does not grow the
/// worker's stack: 256 levels (16 × the default) end with the limit, not
/// SIGABRT (inline polling overflowed a 2 MiB debug worker at 64 levels).
#[test]
fn nesting_does_not_consume_the_workers_stack() {
    let b = self_calling_bundle(MachineTarget::One("me".into()), None);
    let e = run_on_worker(engine(b).with_limits(Limits {
        max_depth: 256,
        max_children: 100_000,
        max_fanout: 10,
    }));
    assert_eq!(e.kind, ErrorKind::RecursionLimit, "{e}");
    assert!(e.message.contains("nesting level 257"), "{e}");
}
