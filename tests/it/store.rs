//! The SQLite store on real files: migrations, checkpoints with blobs and
//! deltas, fenced leases, prune and backup.

use paper_runner::engine::Checkpointer;
use paper_runner::engine::{Event, Snapshot, Totals};
use paper_runner::spec::model::Bundle;
use paper_runner::store::{
    migrate, prepare, ManualClock, PrunePolicy, SqliteCheckpointer, Store, StoreError, StoreOptions,
};
use serde_json::{json, Map, Value};
use std::time::Duration;

fn bundle() -> Bundle {
    Bundle::single_state("m", "s")
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("t.db"), &StoreOptions::default()).unwrap()
}

/// A store whose time moves only when the test moves it.
fn open_at(dir: &tempfile::TempDir, ms: i64) -> (Store, ManualClock) {
    let clock = ManualClock::at(ms);
    let opts = StoreOptions {
        clock: std::sync::Arc::new(clock.clone()),
        ..StoreOptions::default()
    };
    (Store::open(&dir.path().join("t.db"), &opts).unwrap(), clock)
}

fn new_execution(store: &Store, id: &str) {
    let hash = store.put_config(&bundle(), None).unwrap();
    store
        .create_execution(id, &hash, "m", 0, &Map::new())
        .unwrap();
}

fn snap(id: &str, event: Event, step: u64, ctx: Map<String, Value>) -> Snapshot {
    Snapshot {
        execution_id: id.into(),
        parent_id: None,
        machine_index: 0,
        machine_name: "m".into(),
        event,
        state: Some("s".into()),
        next_state: Some("s".into()),
        step,
        context: ctx,
        output: (event == Event::MachineEnd).then(|| json!({"done": true})),
        error: None,
        totals: Totals {
            api_calls: step,
            cost: 0.5,
        },
    }
}

fn count(store: &Store, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn fresh_database_is_migrated_and_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(
        count(&store, "PRAGMA user_version"),
        migrate::latest_version()
    );
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let mode: String = rusqlite::Connection::open(store.path())
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn older_database_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let old = Store::open_to(&path, &StoreOptions::default(), Some(1)).unwrap();
        assert_eq!(count(&old, "PRAGMA user_version"), 1);
        new_execution(&old, "kept");
    }
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(
        count(&store, "PRAGMA user_version"),
        migrate::latest_version()
    );
    assert!(
        store.execution("kept").unwrap().is_some(),
        "data survives the upgrade"
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM execution_leases"), 0);
}

#[test]
fn ledger_rows_from_before_prices_get_a_cost_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v8.db");
    {
        let old = Store::open_to(&path, &StoreOptions::default(), Some(8)).unwrap();
        let c = rusqlite::Connection::open(old.path()).unwrap();
        for (status, cost) in [
            ("ok", Some(0.002)),
            ("ok", None),
            ("error", None),
            ("reused", None),
            ("reserved", None),
        ] {
            c.execute(
                "INSERT INTO llm_calls(execution_id, machine, state, step, attempt, agent, provider,
                                       model, request_hash, status, cost, reserved_at)
                 VALUES ('e', 'm', 's', 1, 1, 'a', 'p', 'x', 'h', ?1, ?2, '2024-01-01T00:00:00.000000Z')",
                rusqlite::params![status, cost],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    let c = rusqlite::Connection::open(store.path()).unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> = c
        .prepare("SELECT status, cost_source, currency FROM llm_calls ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let row = |s: &str, src: Option<&str>, cur: Option<&str>| {
        (
            s.to_string(),
            src.map(str::to_string),
            cur.map(str::to_string),
        )
    };
    assert_eq!(
        rows,
        vec![
            row("ok", Some("provider"), Some("USD")),
            row("ok", Some("unknown"), None),
            row("error", Some("unknown"), None),
            row("reused", Some("none"), None),
            row("reserved", None, None),
        ]
    );
    // The column only takes the documented values.
    assert!(c
        .execute("UPDATE llm_calls SET cost_source = 'guess'", [])
        .is_err());
}

#[test]
fn newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Store::open(&path, &StoreOptions::default()).err().unwrap();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade paper-runner"));
}

#[test]
fn corrupt_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = Store::open(&path, &StoreOptions::default()).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("bad.db"));
}

#[test]
fn snapshots_round_trip_and_large_text_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    new_execution(&store, "e");
    let paper = "word ".repeat(20_000);
    let mut last = None;
    let mut memo = paper_runner::store::Memo::default();
    for step in 0..30u64 {
        let mut ctx = Map::new();
        ctx.insert("paper".into(), json!(paper));
        ctx.insert("step".into(), json!(step));
        ctx.insert("small".into(), json!({"a": [1, 2, 3], "b": null}));
        if step % 3 == 0 {
            ctx.insert(format!("k{step}"), json!("x"));
        }
        let event = if step == 29 {
            Event::MachineEnd
        } else {
            Event::StateExit
        };
        let s = snap("e", event, step, ctx);
        let p = prepare(&s, &memo);
        let id = store.save_checkpoint(&p, None).unwrap();
        memo.committed(id, p, &s);
        last = Some(s);
    }
    let got = store.latest("e").unwrap().unwrap();
    assert_eq!(Some(got), last);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM blobs"),
        1,
        "paper text stored once"
    );
    assert!(
        count(
            &store,
            "SELECT COUNT(*) FROM checkpoints WHERE base_id IS NOT NULL"
        ) > 20,
        "most are deltas"
    );
    let row = store.execution("e").unwrap().unwrap();
    assert_eq!(row.status, "done");
    assert_eq!(row.output, Some(json!({"done": true})));
}

#[tokio::test]
async fn a_process_that_lost_its_lease_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock) = open_at(&dir, 1_700_000_000_000);
    new_execution(&store, "e");
    let a = store
        .acquire_lease("e", "hostA:1:aa", Duration::from_millis(1))
        .unwrap();
    clock.advance(Duration::from_millis(5)); // A's 1 ms lease expires
    let b = store
        .acquire_lease("e", "hostB:2:bb", Duration::from_secs(60))
        .unwrap();
    assert_eq!(b.fence.token, a.fence.token + 1);
    let ckpt_a = SqliteCheckpointer::new(store.clone(), Some(a.fence.clone()));
    let err = ckpt_a
        .save(&snap("e", Event::StateEnter, 1, Map::new()))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("taken over by hostB:2:bb"),
        "{}",
        err.message
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM checkpoints"),
        0,
        "nothing written"
    );
    let ckpt_b = SqliteCheckpointer::new(store.clone(), Some(b.fence.clone()));
    ckpt_b
        .save(&snap("e", Event::StateEnter, 1, Map::new()))
        .await
        .unwrap();
    // A live holder blocks others, with a message naming it.
    let err = store
        .acquire_lease("e", "hostC:3:cc", Duration::from_secs(60))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("execution e is leased by hostB:2:bb until "),
        "{err}"
    );
    // Renewal by the loser fails; by the holder succeeds.
    assert!(matches!(
        store.renew_lease(&a),
        Err(StoreError::LeaseLost { .. })
    ));
    store.renew_lease(&b).unwrap();
    // Released leases keep their token, so the next holder's is larger.
    store.release_lease(&b).unwrap();
    let c = store
        .acquire_lease("e", "hostC:3:cc", Duration::from_secs(60))
        .unwrap();
    assert_eq!(c.fence.token, b.fence.token + 1);
}

#[test]
fn lease_of_a_dead_local_process_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    new_execution(&store, "e");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let dead = format!("{}:{dead_pid}:ff", host.trim());
    store
        .acquire_lease("e", &dead, Duration::from_secs(3600))
        .unwrap();
    let me = paper_runner::store::owner_id();
    let l = store
        .acquire_lease("e", &me, Duration::from_secs(60))
        .unwrap();
    assert_eq!(l.fence.token, 2);
}

#[test]
fn prune_removes_old_checkpoints_blobs_and_keeps_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let paper = "text ".repeat(10_000);
    for (id, last) in [
        ("done1", Event::MachineEnd),
        ("failed1", Event::MachineFailed),
        ("running1", Event::StateExit),
    ] {
        new_execution(&store, id);
        for step in 0..5 {
            let mut ctx = Map::new();
            ctx.insert("paper".into(), json!(format!("{id} {paper}")));
            ctx.insert("step".into(), json!(step));
            let ev = if step == 4 { last } else { Event::StateExit };
            let mut s = snap(id, ev, step, ctx);
            if ev == Event::MachineFailed {
                s.error = Some(paper_runner::engine::ExecError::new(
                    paper_runner::engine::ErrorKind::ActionError,
                    "boom",
                ));
            }
            store
                .save_checkpoint(&prepare(&s, &Default::default()), None)
                .unwrap();
        }
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM blobs"), 3);
    let report = store
        .prune(&PrunePolicy {
            keep_done: Duration::ZERO,
            keep_failed: Duration::from_secs(86400),
        })
        .unwrap();
    assert_eq!(report.checkpoints_removed, 5 + 4);
    assert_eq!(
        report.blobs_removed, 1,
        "only the done execution's text is unreferenced"
    );
    assert_eq!(store.checkpoint_count(Some("failed1")).unwrap(), 1);
    assert_eq!(store.checkpoint_count(Some("running1")).unwrap(), 5);
    // A pruned done execution still answers with its output.
    let s = store.latest("done1").unwrap().unwrap();
    assert_eq!(s.event, Event::MachineEnd);
    assert_eq!(s.output, Some(json!({"done": true})));
    let f = store.latest("failed1").unwrap().unwrap();
    assert_eq!(f.event, Event::MachineFailed);
    assert!(f.context.contains_key("paper"));
    let backup = dir.path().join("backup.db");
    let n = store.backup(&backup).unwrap();
    assert!(n > 0);
    let copy = Store::open(&backup, &StoreOptions::default()).unwrap();
    assert_eq!(copy.integrity_check().unwrap(), "ok");
    assert!(store.backup(&backup).is_err(), "refuses to overwrite");
}

#[test]
fn concurrent_writers_never_see_database_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    for t in 0..4 {
        new_execution(&store, &format!("e{t}"));
    }
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Each thread opens its own pool, like separate processes would.
                let s = Store::open(&path, &StoreOptions::default()).unwrap();
                for step in 0..200 {
                    let mut ctx = Map::new();
                    ctx.insert("step".into(), json!(step));
                    s.save_checkpoint(
                        &prepare(
                            &snap(&format!("e{t}"), Event::StateExit, step, ctx),
                            &Default::default(),
                        ),
                        None,
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.checkpoint_count(None).unwrap(), 800);
}

#[tokio::test]
async fn a_blob_pruned_under_a_running_execution_is_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    new_execution(&store, "e");
    let ckpt = SqliteCheckpointer::new(store.clone(), None);
    let paper = "text ".repeat(5_000);
    let mut ctx = Map::new();
    ctx.insert("paper".into(), json!(paper));
    ctx.insert("step".into(), json!(0));
    ckpt.save(&snap("e", Event::StateEnter, 0, ctx.clone()))
        .await
        .unwrap();
    // Someone removes the blob behind the writer's back (a foreign tool,
    // or a prune bug): the next snapshot must not reference a missing blob.
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute_batch("DELETE FROM blob_refs; DELETE FROM blobs;")
        .unwrap();
    // Most keys change, so this is a full checkpoint that references the
    // text the writer remembers storing.
    for i in 0..20 {
        ctx.insert(format!("k{i}"), json!(i));
    }
    ckpt.save(&snap("e", Event::StateExit, 1, ctx.clone()))
        .await
        .unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM blobs"), 1);
    let got = store.latest("e").unwrap().unwrap();
    assert_eq!(got.context, ctx);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM pragma_foreign_key_check"),
        0,
        "every reference has its blob"
    );
}

/// Leases expire and are taken over by the store's clock: a live lease
/// blocks others up to and including its deadline, is free one
/// millisecond after it, and a renewal moves the deadline from "now".
#[test]
fn lease_expiry_and_takeover_follow_the_store_clock() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000;
    let (store, clock) = open_at(&dir, t0);
    new_execution(&store, "e");
    let a = store
        .acquire_lease("e", "hostA:1:aa", Duration::from_secs(30))
        .unwrap();
    clock.advance(Duration::from_secs(20));
    store.renew_lease(&a).unwrap(); // now held until t0 + 50 s
    clock.set(t0 + 49_999);
    assert!(matches!(
        store.acquire_lease("e", "hostB:2:bb", Duration::from_secs(30)),
        Err(StoreError::Leased { .. })
    ));
    clock.set(t0 + 50_000);
    let b = store
        .acquire_lease("e", "hostB:2:bb", Duration::from_secs(30))
        .unwrap();
    assert_eq!(b.fence.token, a.fence.token + 1);
    assert!(matches!(
        store.renew_lease(&a),
        Err(StoreError::LeaseLost { ref owner, .. }) if owner == "hostB:2:bb"
    ));
}

/// Retention counts from the store's clock: a done execution keeps its
/// checkpoints until `keep_done` has passed, then loses them.
#[test]
fn prune_retention_follows_the_store_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock) = open_at(&dir, 1_700_000_000_000);
    new_execution(&store, "done1");
    for step in 0..3 {
        let ev = if step == 2 {
            Event::MachineEnd
        } else {
            Event::StateExit
        };
        store
            .save_checkpoint(
                &prepare(&snap("done1", ev, step, Map::new()), &Default::default()),
                None,
            )
            .unwrap();
    }
    let policy = PrunePolicy {
        keep_done: Duration::from_secs(3600),
        keep_failed: Duration::from_secs(86400),
    };
    clock.advance(Duration::from_secs(3599));
    assert_eq!(store.prune(&policy).unwrap().checkpoints_removed, 0);
    clock.advance(Duration::from_secs(2));
    assert_eq!(store.prune(&policy).unwrap().checkpoints_removed, 3);
    assert_eq!(store.checkpoint_count(Some("done1")).unwrap(), 0);
}
