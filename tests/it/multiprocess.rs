//! Several `runner machine resume --all` processes on one database: every
//! unfinished execution completes exactly once, none is driven twice, and
//! nobody sees "database is locked".

use paper_runner::store::{Store, StoreOptions};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const CRASH_ENV: &str = "PAPER_RUNNER_CRASH_AFTER";
const EXECUTIONS: usize = 50;
const RESUMERS: usize = 4;
const STATES: [&str; 3] = ["first", "second", "third"];

fn runner() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.env_remove("RUST_LOG").env_remove(CRASH_ENV);
    c
}

fn machine() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/durable/marks.yml")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn id(i: usize) -> String {
    format!("e{i:02}")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn concurrent_resume_all_completes_each_execution_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("runs.db");
    let log = dir.path().join("marks.log");

    // 50 executions, each stopped right after its machine_start checkpoint:
    // unfinished, with a lease held by a process that no longer exists.
    for i in 0..EXECUTIONS {
        let out = runner()
            .args(["machine", "run"])
            .arg(machine())
            .args(["--db", s(&db), "--execution-id", &id(i), "--input"])
            .arg(json!({"log": s(&log), "n": i}).to_string())
            .env(CRASH_ENV, "1")
            .output()
            .expect("runner starts");
        assert_eq!(
            out.status.signal(),
            Some(paper_runner::store::CRASH_SIGNAL),
            "{}: stderr: {}",
            id(i),
            text(&out.stderr)
        );
    }
    {
        let c = Connection::open(&db).expect("open db");
        assert_eq!(
            count(
                &c,
                "SELECT COUNT(*) FROM machine_executions WHERE parent_id IS NULL AND status = 'running'"
            ),
            EXECUTIONS as i64
        );
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM checkpoints"),
            EXECUTIONS as i64
        );
    }
    assert!(!log.exists(), "no state ran before the crash");

    let started = Instant::now();
    let children: Vec<_> = (0..RESUMERS)
        .map(|_| {
            runner()
                .args(["machine", "resume", "--all", "--db", s(&db)])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("runner starts")
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait for resumer"))
        .collect();
    let took = started.elapsed();

    let mut reported: BTreeMap<String, usize> = BTreeMap::new();
    let mut skipped = 0;
    for (p, out) in outputs.iter().enumerate() {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "resumer {p}: stderr: {err}");
        assert!(
            !err.contains("database is locked"),
            "resumer {p}: stderr: {err}"
        );
        for l in err.lines() {
            assert!(
                l.starts_with("skipped: execution "),
                "resumer {p}: unexpected stderr line: {l}"
            );
            skipped += 1;
        }
        for l in text(&out.stdout).lines() {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("resumer {p}: not JSON ({e}): {l}"));
            let eid = v["execution_id"]
                .as_str()
                .expect("execution_id")
                .to_string();
            let n: usize = eid[1..].parse().expect("id number");
            assert_eq!(v["status"], "done", "resumer {p}: {l}");
            assert_eq!(v["output"], json!({"n": n, "marks": 3}), "resumer {p}: {l}");
            *reported.entry(eid).or_default() += 1;
        }
    }
    // Every execution is reported done by at least one process (one that
    // drove it, or one that found it already finished).
    let all: Vec<String> = (0..EXECUTIONS).map(id).collect();
    assert_eq!(
        reported.keys().cloned().collect::<Vec<_>>(),
        all,
        "executions reported done"
    );

    // Side effects: every (execution, state) exactly once, so each execution
    // completed exactly once and no state was driven by two processes.
    let log_text = std::fs::read_to_string(&log).expect("log written");
    let mut marks: BTreeMap<(String, String), usize> = BTreeMap::new();
    for l in log_text.lines() {
        let parts: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(parts.len(), 2, "malformed log line {l:?}");
        *marks
            .entry((parts[0].to_string(), parts[1].to_string()))
            .or_default() += 1;
    }
    let doubled: Vec<_> = marks.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "states run more than once (an execution was driven twice): {doubled:?}"
    );
    for e in &all {
        for st in STATES {
            assert_eq!(
                marks.get(&(e.clone(), st.to_string())),
                Some(&1),
                "{e} {st} ran once"
            );
        }
    }
    assert_eq!(marks.len(), EXECUTIONS * STATES.len(), "no other marks");

    let store = Store::open(&db, &StoreOptions::default()).expect("store opens");
    assert_eq!(store.integrity_check().expect("integrity check"), "ok");
    drop(store);
    let c = Connection::open(&db).expect("open db");
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM machine_executions WHERE parent_id IS NULL AND status = 'done'"
        ),
        EXECUTIONS as i64
    );
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM machine_executions"),
        EXECUTIONS as i64
    );
    // Each execution's checkpoints tell the same story once: machine_start,
    // enter/exit of three states and the final one, machine_end.
    let mut stmt = c
        .prepare(
            "SELECT execution_id, COUNT(*), SUM(event = 'machine_end'), SUM(event = 'state_enter')
             FROM checkpoints GROUP BY execution_id ORDER BY execution_id",
        )
        .expect("prepare");
    let rows: Vec<(String, i64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), EXECUTIONS);
    for (eid, total, ends, enters) in rows {
        assert_eq!(
            (total, ends, enters),
            (10, 1, 4),
            "{eid}: checkpoints (all, machine_end, state_enter)"
        );
    }
    eprintln!(
        "multiprocess: {RESUMERS} resumers finished {EXECUTIONS} executions in {took:?}; \
         {skipped} skips, {} done lines",
        reported.values().sum::<usize>()
    );
}
