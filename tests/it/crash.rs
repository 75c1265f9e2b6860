//! Crash safety of durable executions, with real processes.
//!
//! `runner machine run --db` is stopped at every checkpoint (the
//! `PAPER_RUNNER_CRASH_AFTER` hook) and at pseudo-random moments (SIGKILL),
//! then `runner machine resume` must finish the execution with the same
//! output as an uninterrupted run, never re-run a state whose `state_exit`
//! was checkpointed, re-run at most the one state in flight, and leave a
//! healthy database.

use crate::support::{self, stderr};
use paper_runner::store::{Store, StoreOptions};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::{CommandExt, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CRASH_ENV: &str = "PAPER_RUNNER_CRASH_AFTER";
/// The crash hook kills the runner with this signal (a real crash, not an exit).
const CRASH_SIGNAL: i32 = paper_runner::store::CRASH_SIGNAL;
const ID: &str = "chain-1";

fn fixture(name: &str) -> PathBuf {
    support::fixture("durable").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A runner command with a clean environment for the hooks we use.
fn runner() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.env_remove("RUST_LOG").env_remove(CRASH_ENV);
    c
}

/// The chain's states that run a shell step, in order.
fn chain_states() -> Vec<String> {
    (1..=12).map(|i| format!("s{i:02}")).collect()
}

/// One attempt: a fresh database and a fresh side-effect log.
struct Trial {
    _dir: tempfile::TempDir,
    db: PathBuf,
    log: PathBuf,
}

impl Trial {
    fn new() -> Trial {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("runs.db");
        let log = dir.path().join("effects.log");
        Trial { _dir: dir, db, log }
    }

    fn input(&self) -> String {
        json!({ "log": s(&self.log) }).to_string()
    }

    /// `machine run FILE --db DB --execution-id id --input {log}`.
    fn run_cmd(&self, machine: &str, id: &str) -> Command {
        let mut c = runner();
        c.args(["machine", "run"])
            .arg(fixture(machine))
            .args(["--db", s(&self.db), "--execution-id", id, "--input"])
            .arg(self.input());
        c
    }

    fn resume(&self, id: &str) -> Output {
        runner()
            .args(["machine", "resume", id, "--db", s(&self.db)])
            .output()
            .expect("runner starts")
    }

    /// Log lines split on whitespace (empty if the log was never written).
    fn log_lines(&self) -> Vec<Vec<String>> {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => text
                .lines()
                .map(|l| l.split_whitespace().map(str::to_string).collect())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot read {}: {e}", self.log.display()),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The database as the crashed process left it, or None if it never got
    /// as far as creating the file or its tables.
    fn open_db(&self) -> Option<Connection> {
        if !self.db.exists() {
            return None;
        }
        let c = Connection::open_with_flags(&self.db, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .expect("open db");
        let tables: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('checkpoints', 'machine_executions')",
                [],
                |r| r.get(0),
            )
            .expect("read schema");
        (tables == 2).then_some(c)
    }

    fn checkpoint_count(&self) -> i64 {
        self.open_db().map_or(0, |c| {
            c.query_row("SELECT COUNT(*) FROM checkpoints", [], |r| r.get(0))
                .expect("count checkpoints")
        })
    }

    fn execution_exists(&self, id: &str) -> bool {
        self.open_db().is_some_and(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM machine_executions WHERE execution_id = ?1",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .expect("read executions")
                > 0
        })
    }

    /// States of `id` whose `state_exit` is checkpointed: they must never run again.
    fn exited_states(&self, id: &str) -> BTreeSet<String> {
        let Some(c) = self.open_db() else {
            return BTreeSet::new();
        };
        let mut stmt = c
            .prepare(
                "SELECT state FROM checkpoints WHERE execution_id = ?1 AND event = 'state_exit'",
            )
            .expect("prepare");
        let rows = stmt
            .query_map([id], |r| r.get::<_, String>(0))
            .expect("query exits");
        rows.collect::<Result<_, _>>().expect("read exits")
    }

    fn integrity(&self) -> String {
        Store::open(&self.db, &StoreOptions::default())
            .expect("store opens")
            .integrity_check()
            .expect("integrity check runs")
    }
}

/// The single JSON object a successful run or resume prints.
fn output_json(o: &Output, what: &str) -> Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what}: expected exit 0; stderr: {}",
        stderr(o)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        text.lines().count(),
        1,
        "{what}: one line on stdout: {text}"
    );
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}): {text}"))
}

/// After a recovery of the chain: output, side effects and database.
fn check_chain_recovery(
    what: &str,
    trial: &Trial,
    recovered: &Output,
    exited_before: &BTreeSet<String>,
    reference: &Value,
) {
    assert_eq!(&output_json(recovered, what), reference, "{what}: output");
    let lines = trial.log_lines();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        assert!(
            l.len() == 3 && l[1] == ID,
            "{what}: malformed log line {l:?}\n{}",
            trial.log_text()
        );
        *counts.entry(l[0].clone()).or_default() += 1;
    }
    let states = chain_states();
    for name in counts.keys() {
        assert!(states.contains(name), "{what}: unknown state {name} in log");
    }
    let mut twice = Vec::new();
    for name in &states {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!(
            (1..=2).contains(&n),
            "{what}: state {name} ran {n} times\n{}",
            trial.log_text()
        );
        if exited_before.contains(name) {
            assert_eq!(
                n,
                1,
                "{what}: state {name} ran again although its state_exit was checkpointed\n{}",
                trial.log_text()
            );
        }
        if n == 2 {
            twice.push(name.clone());
        }
    }
    assert!(
        twice.len() <= 1,
        "{what}: more than one state ran twice: {twice:?}\n{}",
        trial.log_text()
    );
    assert_eq!(trial.integrity(), "ok", "{what}: integrity check");
}

/// Output and checkpoint count of an uninterrupted run, and how long it took.
fn reference_run() -> (Value, i64, Duration) {
    let t = Trial::new();
    let started = Instant::now();
    let out = t.run_cmd("chain.yml", ID).output().expect("runner starts");
    let took = started.elapsed();
    let reference = output_json(&out, "uninterrupted run");
    let lines = t.log_lines();
    let names: Vec<&str> = lines.iter().map(|l| l[0].as_str()).collect();
    assert_eq!(
        names,
        chain_states(),
        "uninterrupted run runs every step once"
    );
    assert_eq!(reference["count"], 12);
    (reference, t.checkpoint_count(), took)
}

#[test]
fn crash_after_every_checkpoint_then_resume() {
    let (reference, count, _) = reference_run();
    // machine_start + enter/exit of 12 steps and the final state + machine_end.
    assert_eq!(count, 28, "checkpoints of an uninterrupted run");
    let mut last_exits = 0;
    for k in 1..=count {
        let what = format!("crash after checkpoint {k}/{count}");
        let t = Trial::new();
        let crashed = t
            .run_cmd("chain.yml", ID)
            .env(CRASH_ENV, k.to_string())
            .output()
            .expect("runner starts");
        let code = crashed.status.code();
        if k < count || code != Some(0) {
            assert_eq!(
                crashed.status.signal(),
                Some(CRASH_SIGNAL),
                "{what}: killed by the hook ({:?}); stderr: {}",
                crashed.status,
                stderr(&crashed)
            );
            assert!(stderr(&crashed).contains("crash hook"), "{what}");
        }
        // Every committed checkpoint survives; nothing after the K-th exists.
        assert_eq!(t.checkpoint_count(), k, "{what}: checkpoints on disk");
        let exited = t.exited_states(ID);
        assert!(exited.len() >= last_exits, "{what}: progress is monotone");
        last_exits = exited.len();
        let resumed = t.resume(ID);
        check_chain_recovery(&what, &t, &resumed, &exited, &reference);
        // The hook stops right after a commit, before the next state starts,
        // so no state was in flight: every step ran exactly once.
        assert_eq!(
            t.log_lines().len(),
            12,
            "{what}: each step exactly once\n{}",
            t.log_text()
        );
        // A finished execution resumes to its stored output without running.
        let again = t.resume(ID);
        assert_eq!(
            output_json(&again, &what),
            reference,
            "{what}: resume again"
        );
        assert_eq!(t.log_lines().len(), 12, "{what}: nothing ran again");
    }
    assert_eq!(
        last_exits, 13,
        "the last crash comes after every state exit"
    );
}

/// A deterministic pseudo-random fraction in [0, 1) for trial `i` (splitmix64).
fn fraction(i: u64) -> f64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// SIGKILL the runner, then whatever it started (its shell steps run in its
/// process group), so no orphaned step writes to the log after we read it.
/// The runner is not reaped yet, so its pid still names the group.
fn kill_hard(child: &mut Child) {
    child.kill().expect("SIGKILL the runner");
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

#[test]
fn sigkill_at_random_times_then_resume() {
    let (reference, _, first) = reference_run();
    // The first run pays for cold caches; time a few more, take the median.
    let mut times = vec![first];
    times.extend((0..4).map(|_| reference_run().2));
    times.sort();
    let took = times[times.len() / 2];
    const TRIALS: u64 = 60;
    // Spread the kills over 0..115% of an uninterrupted run (process start
    // included), so a few land after the end.
    let span = took.mul_f64(1.15);
    let (mut before_any, mut mid_run, mut finished, mut rerun) = (0, 0, 0, 0);
    // How many states had exited when the kill landed: 0..=13.
    let mut landed = [0u32; 14];
    for i in 0..TRIALS {
        let t = Trial::new();
        let delay = span.mul_f64(fraction(i));
        let what = format!("trial {i}: SIGKILL after {delay:?}");
        let mut cmd = t.run_cmd("chain.yml", ID);
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().expect("runner starts");
        std::thread::sleep(delay);
        kill_hard(&mut child);
        let status = child.wait().expect("wait for the runner");
        let exited = t.exited_states(ID);
        landed[exited.len()] += 1;
        let ckpts = t.checkpoint_count();
        if status.code() == Some(0) {
            finished += 1;
        } else if ckpts == 0 {
            before_any += 1;
        } else {
            mid_run += 1;
        }
        // Killed before the execution was registered: nothing to resume,
        // so start it again (run with an existing id resumes it).
        let recovered = if t.execution_exists(ID) {
            t.resume(ID)
        } else {
            rerun += 1;
            assert!(t.log_lines().is_empty(), "{what}: no step ran unregistered");
            t.run_cmd("chain.yml", ID).output().expect("runner starts")
        };
        check_chain_recovery(&what, &t, &recovered, &exited, &reference);
    }
    eprintln!(
        "sigkill: {TRIALS} trials over {span:?}: {before_any} before the first checkpoint \
         ({rerun} before the execution row), {mid_run} mid-run, {finished} finished; \
         states exited at the kill: {landed:?}"
    );
}

#[test]
fn crash_between_parallel_children_reattaches_the_finished_one() {
    let t = Trial::new();
    let id = "par-1";
    let fast = format!("{id}/start@1/fast");
    let slow = format!("{id}/start@1/slow");
    let mut cmd = t.run_cmd("parallel.yml", id);
    cmd.env(CRASH_ENV, "machine_end@/fast")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().expect("runner starts");
    let pgid = child.id();
    let crashed = child.wait_with_output().expect("wait for the runner");
    // The slow child's shell step outlives the crashed runner; stop it.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    assert_eq!(
        crashed.status.signal(),
        Some(CRASH_SIGNAL),
        "stderr: {}",
        stderr(&crashed)
    );
    {
        let c = t.open_db().expect("database written");
        let status = |eid: &str| -> Option<String> {
            c.query_row(
                "SELECT status FROM machine_executions WHERE execution_id = ?1",
                [eid],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or_else(|e| panic!("execution {eid}: {e}"))
        };
        // The hook fired on fast's machine_end; slow (sleeping a second) was
        // still in flight, and so was the parent's state running both.
        assert_eq!(status(&fast).as_deref(), Some("done"));
        assert_ne!(status(&slow).as_deref(), Some("done"));
        assert_eq!(status(id).as_deref(), Some("running"));
    }
    let resumed = t.resume(id);
    let expected = json!({
        "fast": {"who": "fast", "ran_as": fast},
        "slow": {"who": "slow", "ran_as": slow},
    });
    assert_eq!(output_json(&resumed, "resume"), expected);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in t.log_lines() {
        assert_eq!(l.len(), 2, "log line {l:?}");
        let expected_id = match l[0].as_str() {
            "fast" => &fast,
            "slow" => &slow,
            other => panic!("unknown log line {other}"),
        };
        assert_eq!(&l[1], expected_id);
        *counts.entry(l[0].clone()).or_default() += 1;
    }
    assert_eq!(
        counts.get("fast"),
        Some(&1),
        "fast ran once\n{}",
        t.log_text()
    );
    let slow_runs = counts.get("slow").copied().unwrap_or(0);
    assert!(
        (1..=2).contains(&slow_runs),
        "slow ran {slow_runs} times\n{}",
        t.log_text()
    );
    eprintln!("parallel: after the crash and resume, slow ran {slow_runs} time(s), fast once");
    // The finished child was re-attached, not started again.
    let c = t.open_db().expect("database");
    let starts: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM checkpoints WHERE execution_id = ?1 AND event = 'machine_start'",
            [&fast],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(starts, 1, "fast child started once");
    assert_eq!(t.integrity(), "ok");
}
