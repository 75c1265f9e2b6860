//! Several runner processes on one PostgreSQL database: the guarantees of
//! the SQLite runner across hosts that share only the database. Each test
//! gets a fresh schema on the server `RUNNER_TEST_PG` names and prints that
//! it skipped when the variable is not set.

use crate::support::*;
use std::process::Child;
use std::time::Duration;

/// Short leases so a killed runner's claims come back within seconds.
const FAST: &str = "[scheduler]\nlease_ttl_secs = 6\npoll_interval_secs = 0.5\n";

fn kill_hard(mut c: Child) {
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
}

fn wait_ok(c: Child) {
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Three runners; one is killed with SIGKILL while it holds claims. Every
/// paper is done once, no successful call is paid twice, no claim is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runners_one_killed_mid_phase_finish_every_paper_once() {
    let Some(site) = Site::postgres("latency_ms: 40\njitter_ms: 20\n", FAST).await else {
        return;
    };
    let n = 12;
    site.add_papers(0, n);
    let a = site.spawn(&["--workers", "3"]);
    let b = site.spawn(&["--workers", "3"]);
    let victim = site.spawn(&["--workers", "3"]);
    let victim_pid = victim.id();
    tokio::task::block_in_place(|| {
        site.wait_for("the victim holding a claim", Duration::from_secs(60), |s| {
            s.scalar(&format!(
                "SELECT COUNT(*) FROM executions WHERE owner_id LIKE '%:{victim_pid}:%'"
            )) > 0
        })
    });
    kill_hard(victim);
    tokio::task::block_in_place(|| {
        wait_ok(a);
        wait_ok(b);
    });
    // The one-shot runners may have ended before the victim's lease ran
    // out; a last pass takes what is left (as a restarted host would).
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "3"]));
    assert!(out.status.success(), "{}", stderr(&out));
    site.assert_all_done_once(n, true);
    let owners =
        site.scalar("SELECT COUNT(DISTINCT owner_id) FROM execution_events WHERE kind = 'claimed'");
    assert!(owners >= 3, "{owners} runners took part");
    // The timeline reads checkpoint bodies with the database's own JSON
    // functions (once SQLite-only: `runner show` failed on PostgreSQL).
    let shown = tokio::task::block_in_place(|| site.ok(&["show", &crate::support::arxiv(0)]));
    assert!(shown.contains("done"), "{shown}");
}

/// A runner whose database connections are all cut (`pg_terminate_backend`)
/// while it holds claims reconnects and finishes; nothing is done twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_connections_are_cut_recovers_without_doing_work_twice() {
    let Some(site) = Site::postgres("latency_ms: 60\njitter_ms: 20\n", FAST).await else {
        return;
    };
    let n = 6;
    site.add_papers(0, n);
    let child = site.spawn(&["--workers", "3"]);
    let pid = child.id();
    tokio::task::block_in_place(|| {
        site.wait_for("claims held", Duration::from_secs(60), |s| {
            s.scalar("SELECT COUNT(*) FROM executions WHERE owner_id IS NOT NULL") > 0
        })
    });
    let cut = site.scalar(&format!(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'paper-runner/{pid}') AS t"
    ));
    assert!(cut > 0, "no connection of runner {pid} was found to cut");
    // The statements in flight when the connections were cut fail (a
    // one-shot run then exits 1, saying so); the runner carries on with
    // new connections, and nothing it held is lost.
    let first = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
    assert!(
        first.status.success() || first.status.code() == Some(1),
        "{}",
        stderr(&first)
    );
    assert!(
        !stderr(&first).contains("panicked at"),
        "{}",
        stderr(&first)
    );
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "3"]));
    assert!(out.status.success(), "{}", stderr(&out));
    site.assert_all_done_once(n, true);
}

/// Two runners whose clocks are ten minutes apart (either way) share
/// leases correctly: their store clocks follow the server's, so neither
/// takes the other's live claims for expired ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_host_clocks_do_not_break_fencing() {
    let Some(site) = Site::postgres("latency_ms: 30\njitter_ms: 10\n", FAST).await else {
        return;
    };
    let n = 8;
    site.add_papers(0, n);
    let spawn_skewed = |ms: &str| {
        site.cmd(&["--workers", "3"])
            .env(paper_runner::store::SKEW_ENV, ms)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ahead = spawn_skewed("600000");
    let behind = spawn_skewed("-600000");
    tokio::task::block_in_place(|| {
        wait_ok(ahead);
        wait_ok(behind);
    });
    site.assert_all_done_once(n, false);
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM execution_events WHERE kind = 'reaped'"),
        0,
        "a live claim was reaped"
    );
    // Timestamps follow the server's clock, not the skewed hosts'.
    let now_ms = paper_runner::store::now_ms();
    let newest = site.scalar(
        "SELECT CAST(MAX(EXTRACT(EPOCH FROM CAST(at AS timestamptz))) * 1000 AS BIGINT) FROM execution_events",
    );
    assert!(
        (newest - now_ms).abs() < 120_000,
        "the newest event ({newest}) is far from now ({now_ms})"
    );
}

/// `runner migrate-db` copies a SQLite runner (killed mid-run) into
/// PostgreSQL, verifies it, leaves the source as it was, and the work
/// resumes there without paying for a successful call twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_db_moves_a_sqlite_runner_and_work_resumes_on_postgres() {
    let Some(base) = pg_base() else {
        eprintln!("skipped: RUNNER_TEST_PG is not set");
        return;
    };
    let site = Site::with_config("latency_ms: 40\njitter_ms: 20\n", FAST).await;
    let n = 4;
    site.add_papers(0, n);
    let child = site.spawn(&["--workers", "2"]);
    tokio::task::block_in_place(|| {
        site.wait_for("some progress", Duration::from_secs(60), |s| {
            s.scalar("SELECT COUNT(*) FROM execution_events WHERE kind = 'finished'") >= 2
        })
    });
    kill_hard(child);
    let before = std::fs::read(site.db()).unwrap();
    let url = pg_blocking(|| paper_runner::store::pg::fresh_schema_url(&base)).unwrap();
    let db = site.db();
    let out = site.ok(&["migrate-db", "--from", db.to_str().unwrap(), "--to", &url]);
    assert!(out.contains("(verified)"), "{out}");
    assert!(out.contains("llm_calls"), "{out}");
    assert_eq!(
        std::fs::read(site.db()).unwrap(),
        before,
        "the source changed"
    );
    // A second copy into the now non-empty target is refused.
    let again = site.run(&["migrate-db", "--from", db.to_str().unwrap(), "--to", &url]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));

    let sqlite_ok = site.scalar("SELECT COUNT(*) FROM llm_calls WHERE status = 'ok'");
    let mut moved = site;
    moved.pg = Some(url.clone());
    std::fs::write(
        moved.path().join("config.toml"),
        format!("db = \"{url}\"\n{FAST}"),
    )
    .unwrap();
    assert_eq!(
        moved.scalar("SELECT COUNT(*) FROM llm_calls WHERE status = 'ok'"),
        sqlite_ok
    );
    let out = tokio::task::block_in_place(|| moved.run(&["--workers", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    moved.assert_all_done_once(n, true);
}
