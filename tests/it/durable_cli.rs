//! `machine run --db`, `machine resume`, leases between processes, `prune`.

use crate::support::fixture;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.env_remove("RUST_LOG")
        .env_remove("PAPER_RUNNER_CRASH_AFTER");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("runner starts")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Wait for a condition the other process signals (a file appearing).
fn wait_for(cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "condition never became true"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `machine run` of `m` as execution `id`, stopped by the crash hook after
/// its third checkpoint (the exit of its first state).
fn run_and_crash(m: &Path, db: &Path, id: &str) {
    let crashed = bin()
        .args([
            "machine",
            "run",
            s(m),
            "--db",
            s(db),
            "--execution-id",
            id,
            "--input",
            r#"{"x": 1}"#,
        ])
        .env("PAPER_RUNNER_CRASH_AFTER", "3")
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.signal(),
        Some(paper_runner::store::CRASH_SIGNAL)
    );
    assert!(crashed.stdout.is_empty());
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[test]
fn run_with_db_persists_and_resume_prints_stored_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let m = fixture("lease/two_steps.yml");
    let out = run(&[
        "machine",
        "run",
        s(&m),
        "--db",
        s(&db),
        "--execution-id",
        "x1",
        "--input",
        r#"{"x": 4}"#,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"z":10}"#);
    // machine_start, 3 × (enter, exit), machine_end
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM checkpoints WHERE execution_id = 'x1'"
        ),
        8
    );
    let again = run(&["machine", "resume", "x1", "--db", s(&db)]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(again.stdout, out.stdout);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM checkpoints"),
        8,
        "nothing re-ran"
    );
    let missing = run(&["machine", "resume", "nope", "--db", s(&db)]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no execution nope"));
}

#[test]
fn crash_then_resume_with_the_crash_hook() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let m = fixture("lease/two_steps.yml");
    run_and_crash(&m, &db, "c1");
    let out = run(&["machine", "resume", "c1", "--db", s(&db)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"z":4}"#);
}

#[test]
fn a_live_lease_makes_a_second_process_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let marker = dir.path().join("started");
    let m = fixture("lease/slow.yml");
    let input = format!(r#"{{"marker": "{}"}}"#, marker.display());
    let mut first = bin()
        .args([
            "machine",
            "run",
            s(&m),
            "--db",
            s(&db),
            "--execution-id",
            "l1",
            "--input",
            &input,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| marker.exists());
    let second = run(&["machine", "resume", "l1", "--db", s(&db)]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(second.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("execution l1 is leased by "), "{stderr}");
    assert!(
        stderr.contains(&format!(":{}:", first.id())),
        "names the owner: {stderr}"
    );
    assert!(stderr.contains(" until 20"), "{stderr}");
}

#[test]
fn a_process_whose_lease_is_taken_over_stops_and_writes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let marker = dir.path().join("started");
    let m = fixture("lease/slow.yml");
    let input = format!(r#"{{"marker": "{}"}}"#, marker.display());
    let first = bin()
        .args([
            "machine",
            "run",
            s(&m),
            "--db",
            s(&db),
            "--execution-id",
            "t1",
            "--lease-ttl",
            "1",
            "--input",
            &input,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(|| marker.exists());
    let before = count(&db, "SELECT COUNT(*) FROM checkpoints");
    // Another owner takes the lease (as a process on another host would after expiry).
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE execution_leases SET owner_id = 'otherhost:1:beef', fencing_token = fencing_token + 1, lease_until = 99999999999999",
            [],
        )
        .unwrap();
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("taken over by otherhost:1:beef"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM checkpoints"),
        before,
        "wrote nothing after losing the lease"
    );
}

#[test]
fn reload_config_uses_current_files_when_the_state_still_exists() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let m = dir.path().join("m.yml");
    std::fs::copy(fixture("lease/two_steps.yml"), &m).unwrap();
    run_and_crash(&m, &db, "rc");
    // Edit the machine: `second` now multiplies by 3.
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("context.y * 2", "context.y * 3");
    std::fs::write(&m, text).unwrap();
    let stored = run(&["machine", "resume", "rc", "--db", s(&db)]);
    assert_eq!(
        String::from_utf8_lossy(&stored.stdout).trim(),
        r#"{"z":4}"#,
        "stored config by default"
    );

    run_and_crash(&m, &db, "rc2");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("context.y * 3", "context.y * 5");
    std::fs::write(&m, &text).unwrap();
    let reloaded = run(&[
        "machine",
        "resume",
        "rc2",
        "--db",
        s(&db),
        "--reload-config",
    ]);
    assert_eq!(
        reloaded.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&reloaded.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&reloaded.stdout).trim(),
        r#"{"z":10}"#
    );

    // A file that no longer has the current state is refused.
    run_and_crash(&m, &db, "rc3");
    std::fs::write(&m, text.replace("second", "renamed")).unwrap();
    let refused = run(&[
        "machine",
        "resume",
        "rc3",
        "--db",
        s(&db),
        "--reload-config",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no longer has state"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn prune_reports_and_backs_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let m = fixture("lease/two_steps.yml");
    for i in 0..3 {
        let out = run(&[
            "machine",
            "run",
            s(&m),
            "--db",
            s(&db),
            "--execution-id",
            &format!("p{i}"),
            "--input",
            r#"{"x": 1}"#,
        ]);
        assert_eq!(out.status.code(), Some(0));
    }
    let backup = dir.path().join("b.db");
    let out = run(&[
        "prune",
        "--db",
        s(&db),
        "--keep-done",
        "0",
        "--backup",
        s(&backup),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("removed 24 checkpoints"), "{stdout}");
    assert!(stdout.contains("reclaimed "), "{stdout}");
    assert!(backup.exists());
    assert_eq!(count(&db, "SELECT COUNT(*) FROM checkpoints"), 0);
    let again = run(&["machine", "resume", "p1", "--db", s(&db)]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), r#"{"z":4}"#);
}

#[test]
fn bad_database_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("garbage.db");
    std::fs::write(&db, vec![7u8; 4096]).unwrap();
    let m = fixture("lease/two_steps.yml");
    let out = run(&[
        "machine",
        "run",
        s(&m),
        "--db",
        s(&db),
        "--input",
        r#"{"x": 1}"#,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("garbage.db is corrupt or not a paper-runner database"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}
