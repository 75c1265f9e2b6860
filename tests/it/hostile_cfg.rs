//! Hostile operator input against the real `runner` binary and real files:
//! config values and files, numeric CLI flags, `prune --backup`, `--db`,
//! `--pdf`, `add --file`, terminal escapes in `show`/`status`, a zombie
//! lease owner and self-referential blobs. Every case asserts the exact
//! error and exit code, that nothing was written or pruned when refused,
//! and that no command hangs (each runs under a deadline) or panics.

use paper_runner::engine::{Event, Snapshot, Totals};
use paper_runner::spec::model::Bundle;
use paper_runner::store::{
    owner_id, owner_is_dead, prepare, ClaimRequest, NewPaper, PaperStatus, Phase, RetryPolicy,
    Store, StoreError, StoreOptions,
};
use serde_json::{json, Map, Value};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// No command in this file may take longer than this.
const DEADLINE: Duration = Duration::from_secs(60);

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The binary with a clean environment, run in `dir` (so no stray
/// ./config.toml or RUNNER_* variable changes the outcome).
fn runner(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.current_dir(dir).env_remove("RUST_LOG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RUNNER_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `cmd` to completion within [`DEADLINE`]; a command still running
/// then is killed and the test fails (it would have hung).
fn run(mut cmd: Command) -> Out {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts");
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runner {cmd:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Out {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    };
    assert_ne!(out.code, Some(101), "panicked: {}", out.stderr);
    assert!(out.code.is_some(), "killed by a signal: {}", out.stderr);
    out
}

fn runner_args(dir: &Path, args: &[&str]) -> Out {
    let mut c = runner(dir);
    c.args(args);
    run(c)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(s(path)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A database with one done execution (five checkpoints, a large text in a
/// blob) that `prune --keep-done 0` would remove, and one queued paper.
fn prunable_db(path: &Path) {
    let store = Store::open(path, &StoreOptions::default()).unwrap();
    let hash = store
        .put_config(&Bundle::single_state("m", "s"), None)
        .unwrap();
    store
        .create_execution("done1", &hash, "m", 0, &Map::new())
        .unwrap();
    let text = "text ".repeat(10_000);
    for step in 0..5u64 {
        let mut ctx = Map::new();
        ctx.insert("paper".into(), json!(text));
        ctx.insert("step".into(), json!(step));
        let event = if step == 4 {
            Event::MachineEnd
        } else {
            Event::StateExit
        };
        let snap = Snapshot {
            execution_id: "done1".into(),
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
            totals: Totals::default(),
        };
        store
            .save_checkpoint(&prepare(&snap, &Default::default()), None)
            .unwrap();
    }
    store
        .add_paper(&NewPaper {
            arxiv_id: "2401.00001".into(),
            source: "test".into(),
            ..NewPaper::default()
        })
        .unwrap();
}

// ---------------------------------------------------------------- prune

#[test]
fn prune_keep_done_inf_is_refused_at_parse_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    prunable_db(&db);
    for bad in ["inf", "NaN", "-1", "1e300"] {
        let flag = format!("--keep-done={bad}");
        let o = runner_args(dir.path(), &["prune", "--db", s(&db), &flag]);
        assert_eq!(o.code, Some(2), "{bad}: {}", o.stderr);
        assert!(
            o.stderr.contains("--keep-done")
                && o.stderr.contains("out of range: allowed 0 to 36500 days"),
            "{bad}: {}",
            o.stderr
        );
    }
    let o = runner_args(
        dir.path(),
        &["prune", "--db", s(&db), "--keep-failed", "inf"],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM checkpoints"),
        5,
        "nothing pruned"
    );
}

#[test]
fn prune_backup_to_an_existing_file_prunes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    prunable_db(&db);
    let existing = dir.path().join("backup.db");
    std::fs::write(&existing, b"precious").unwrap();
    let o = runner_args(
        dir.path(),
        &[
            "prune",
            "--db",
            s(&db),
            "--keep-done",
            "0",
            "--backup",
            s(&existing),
        ],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "backup target {} already exists; choose a new path",
            existing.display()
        )) && o.stderr.contains("nothing was pruned"),
        "{}",
        o.stderr
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM checkpoints"), 5);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM blobs"), 1);
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");

    // A backup into a folder that does not exist: refused first as well.
    let nowhere = dir.path().join("no/such/dir/b.db");
    let o = runner_args(
        dir.path(),
        &[
            "prune",
            "--db",
            s(&db),
            "--keep-done",
            "0",
            "--backup",
            s(&nowhere),
        ],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM checkpoints"), 5);

    // A fresh target: pruned, then backed up, and no temporary file left.
    let fresh = dir.path().join("fresh.db");
    let o = runner_args(
        dir.path(),
        &[
            "prune",
            "--db",
            s(&db),
            "--keep-done",
            "0",
            "--backup",
            s(&fresh),
        ],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("removed 5 checkpoints"), "{}", o.stdout);
    assert!(o.stdout.contains("backup written to"), "{}", o.stdout);
    assert_eq!(count(&fresh, "SELECT COUNT(*) FROM checkpoints"), 0);
    assert_eq!(count(&fresh, "SELECT COUNT(*) FROM executions"), 1);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn prune_uses_the_configured_database() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let db = state.join("configured.db");
    prunable_db(&db);
    std::fs::write(
        dir.path().join("config.toml"),
        "db = \"state/configured.db\"\n",
    )
    .unwrap();
    // ./config.toml in the working directory.
    let o = runner_args(dir.path(), &["prune", "--keep-done", "0"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("removed 5 checkpoints"), "{}", o.stdout);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM checkpoints"), 0);
    assert!(!dir.path().join("paper-runner.db").exists());

    // --config and $RUNNER_CONFIG name it too (from another directory).
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let o = runner_args(elsewhere.path(), &["prune", "--config", s(&cfg)]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let mut c = runner(elsewhere.path());
    c.args(["prune"]).env("RUNNER_CONFIG", &cfg);
    let o = run(c);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    // Without a config, the default database is looked for and not created.
    let o = runner_args(elsewhere.path(), &["prune"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("database data/runner.db does not exist"),
        "{}",
        o.stderr
    );
    assert!(!elsewhere.path().join("data").exists());
}

// ---------------------------------------------------------------- config

/// A bad setting is a usage/configuration error: exit 2, like every other
/// command's (it was 1 at scheduler start-up).
#[test]
fn lease_ttl_out_of_range_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let expected =
        "scheduler.lease_ttl_secs: 9300000000000000 is out of range: allowed 5 to 86400 seconds";
    // From the file.
    std::fs::write(
        dir.path().join("config.toml"),
        "db = \"r.db\"\n[scheduler]\nlease_ttl_secs = 9300000000000000\n",
    )
    .unwrap();
    let o = runner_args(dir.path(), &[]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(o.stderr.contains(expected), "{}", o.stderr);
    // From the environment and from the flag.
    std::fs::write(dir.path().join("config.toml"), "db = \"r.db\"\n").unwrap();
    let mut c = runner(dir.path());
    c.env("RUNNER_LEASE_TTL_SECS", "9300000000000000");
    let o = run(c);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(o.stderr.contains(expected), "{}", o.stderr);
    let o = runner_args(dir.path(), &["--lease-ttl", "9300000000000000"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(o.stderr.contains(expected), "{}", o.stderr);
    let o = runner_args(dir.path(), &["--poll-interval", "inf", "--lease-ttl", "1"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("scheduler.lease_ttl_secs: 1 is out of range")
            && o.stderr
                .contains("scheduler.poll_interval_secs: inf is out of range"),
        "{}",
        o.stderr
    );
    assert!(!dir.path().join("r.db").exists(), "nothing was written");
}

#[test]
fn machine_run_lease_ttl_flag_is_range_checked() {
    let dir = tempfile::tempdir().unwrap();
    let o = runner_args(
        dir.path(),
        &["machine", "run", "m.yml", "--lease-ttl", "99999999999999"],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(o.stderr.contains("--lease-ttl"), "{}", o.stderr);
}

#[test]
fn config_from_dev_zero_or_a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = runner_args(dir.path(), &["--config", "/dev/zero", "status"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains(
            "config file /dev/zero: cannot read: not a regular file (a character device)"
        ),
        "{}",
        o.stderr
    );
    let fifo = dir.path().join("config.fifo");
    mkfifo(&fifo);
    let o = runner_args(dir.path(), &["--config", s(&fifo), "status"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("not a regular file (a FIFO)"),
        "{}",
        o.stderr
    );
    // Bigger than the cap.
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    let o = runner_args(dir.path(), &["--config", s(&big), "status"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "config file {}: larger than the 1048576-byte limit",
            big.display()
        )),
        "{}",
        o.stderr
    );
}

#[test]
fn a_one_digit_day_start_works_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    prunable_db(&db);
    std::fs::write(
        dir.path().join("config.toml"),
        "db = \"r.db\"\n[budget]\ndaily = 10\nday_start_utc = \"7:00\"\n",
    )
    .unwrap();
    let o = runner_args(dir.path(), &["status"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("07:00 UTC"), "{}", o.stdout);
    std::fs::write(
        dir.path().join("config.toml"),
        "db = \"r.db\"\n[budget]\nday_start_utc = \"7:0\"\n",
    )
    .unwrap();
    let o = runner_args(dir.path(), &["--resume-only"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains(
            "budget.day_start_utc: \"7:0\" is not a time HH:MM or H:MM in UTC (00:00 to 23:59)"
        ),
        "{}",
        o.stderr
    );
}

// ---------------------------------------------------------------- add

#[test]
fn add_file_from_dev_zero_or_a_fifo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let o = runner_args(
        dir.path(),
        &["add", "--offline", "--db", s(&db), "--file", "/dev/zero"],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("--file /dev/zero: not a regular file (a character device)"),
        "{}",
        o.stderr
    );
    let fifo = dir.path().join("ids.fifo");
    mkfifo(&fifo);
    let o = runner_args(
        dir.path(),
        &["add", "--offline", "--db", s(&db), "--file", s(&fifo)],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("not a regular file (a FIFO)"),
        "{}",
        o.stderr
    );
    let big = dir.path().join("ids.txt");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len((16 << 20) + 1).unwrap();
    let o = runner_args(
        dir.path(),
        &["add", "--offline", "--db", s(&db), "--file", s(&big)],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("larger than the 16777216-byte limit"),
        "{}",
        o.stderr
    );
    assert!(!db.exists(), "nothing was written");
}

#[test]
fn add_pdf_must_be_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let fifo = dir.path().join("paper.pdf");
    mkfifo(&fifo);
    let o = runner_args(
        dir.path(),
        &[
            "add",
            "2401.00001",
            "--offline",
            "--db",
            s(&db),
            "--pdf",
            s(&fifo),
        ],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "--pdf {} is a FIFO, not a regular file",
            fifo.display()
        )),
        "{}",
        o.stderr
    );
    let o = runner_args(
        dir.path(),
        &[
            "add",
            "2401.00001",
            "--offline",
            "--db",
            s(&db),
            "--pdf",
            s(dir.path()),
        ],
    );
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("is a directory, not a regular file"),
        "{}",
        o.stderr
    );
    assert!(!db.exists(), "nothing was queued");
}

#[test]
fn add_api_interval_is_range_checked() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["inf", "1e20", "-1", "NaN"] {
        let flag = format!("--api-interval={bad}");
        let o = runner_args(dir.path(), &["add", "2401.00001", &flag]);
        assert_eq!(o.code, Some(2), "{bad}: {}", o.stderr);
        assert!(
            o.stderr.contains("out of range: allowed 0 to 3600 seconds"),
            "{bad}: {}",
            o.stderr
        );
    }
}

// ---------------------------------------------------------------- --db

#[test]
fn dev_null_as_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["status", "--db", "/dev/null"],
        vec!["add", "2401.00001", "--offline", "--db", "/dev/null"],
        vec!["--db", "/dev/null", "--resume-only"],
        vec!["prune", "--db", "/dev/null"],
    ] {
        let o = runner_args(dir.path(), &args);
        assert_eq!(o.code, Some(1), "{args:?}: {}", o.stderr);
        assert!(
            o.stderr.contains(
                "database /dev/null: cannot open: /dev/null is a character device, not a database file"
            ),
            "{args:?}: {}",
            o.stderr
        );
    }
    assert!(!Path::new("/dev/null-journal").exists());
    assert!(!Path::new("/dev/null-wal").exists());
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert_eq!(meta.len(), 0);
}

// ---------------------------------------------------------------- escapes

#[test]
fn show_status_and_add_escape_terminal_controls() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let title = "Evil \u{1b}]0;owned\u{7}\u{1b}[2J title\u{9b}31m\u{202e}";
    let o = runner_args(
        dir.path(),
        &[
            "add",
            "2401.00001",
            "--offline",
            "--db",
            s(&db),
            "--title",
            title,
        ],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stdout.contains('\u{1b}'), "{:?}", o.stdout);
    assert!(
        o.stdout.contains("Evil \\x1b]0;owned\\x07"),
        "{:?}",
        o.stdout
    );

    let o = runner_args(dir.path(), &["show", "2401.00001", "--db", s(&db)]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        !o.stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{:?}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("Evil \\x1b]0;owned\\x07\\x1b[2J title\\x9b31m\\u{202e}"),
        "{:?}",
        o.stdout
    );
    // JSON stays JSON: the title round-trips exactly.
    let o = runner_args(
        dir.path(),
        &["show", "2401.00001", "--db", s(&db), "--json"],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["paper"]["title"], json!(title));

    // status prints the database path: give it one with an escape in it.
    let evil_db = dir.path().join("x\u{1b}[31m.db");
    prunable_db(&evil_db);
    let o = runner_args(dir.path(), &["status", "--db", s(&evil_db)]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stdout.contains('\u{1b}'), "{:?}", o.stdout);
    assert!(o.stdout.contains("x\\x1b[31m.db"), "{:?}", o.stdout);
}

// ---------------------------------------------------------------- store

/// A claim held by `owner` on a fresh queue row.
fn claimed_by(store: &Store, arxiv: &str, owner: &str) {
    store
        .add_paper(&NewPaper {
            arxiv_id: arxiv.into(),
            source: "test".into(),
            ..NewPaper::default()
        })
        .unwrap();
    let c = store
        .claim(&ClaimRequest {
            owner,
            ttl: Duration::from_secs(3600),
            phases: &[Phase::Prep],
            resumable_only: false,
        })
        .unwrap()
        .unwrap();
    assert_eq!(c.arxiv_id, arxiv);
}

/// `host:pid:random` for another process of this host.
fn owner_for(pid: u32) -> String {
    let me = owner_id();
    let host = me.split(':').next().unwrap();
    format!("{host}:{pid}:0badc0de")
}

#[cfg(target_os = "linux")]
#[test]
fn a_zombie_owner_loses_its_claim_and_a_live_one_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), &StoreOptions::default()).unwrap();
    let mut live = Command::new("sleep").arg("60").spawn().unwrap();
    // Exits at once; never waited for, so it stays a zombie whose
    // /proc entry exists and which kill(pid, 0) still finds.
    let zombie = Command::new("true").spawn().unwrap();
    let stat = PathBuf::from(format!("/proc/{}/stat", zombie.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&stat).unwrap();
        let state = text.rsplit_once(')').unwrap().1.trim_start().chars().next();
        if state == Some('Z') {
            break;
        }
        assert!(Instant::now() < deadline, "child never became a zombie");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signal 0 only checks that the pid exists.
    assert_eq!(unsafe { libc::kill(zombie.id() as i32, 0) }, 0);

    claimed_by(&store, "2401.00001", &owner_for(live.id()));
    claimed_by(&store, "2401.00002", &owner_for(zombie.id()));
    let policy = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_secs(1),
        max: Duration::from_secs(10),
    };
    let reaped = store.reap(&policy, owner_is_dead).unwrap();
    let ids: Vec<&str> = reaped.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["paper:2401.00002"], "only the zombie's claim");
    let row = store.paper("2401.00002").unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.owner_id), ("pending", None));
    let row = store.paper("2401.00001").unwrap().unwrap();
    assert_eq!(row.status, PaperStatus::Prepping);
    live.kill().unwrap();
    live.wait().unwrap();
    drop(zombie);
}

#[test]
fn a_self_referential_blob_is_a_store_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    prunable_db(&db);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let hash: String = conn
            .query_row("SELECT hash FROM blobs", [], |r| r.get(0))
            .unwrap();
        let evil = serde_json::to_vec(&json!({ "$blob": hash })).unwrap();
        conn.execute("UPDATE blobs SET data = ?1", [evil]).unwrap();
    }
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let err = store.latest("done1").unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("corrupt data: blob references nest deeper than 512 levels"),
        "{msg}"
    );
    assert!(msg.contains("done1"), "{msg}");
}
