//! The runner as users run it: real `runner` processes on a real SQLite
//! file, against the mock provider over loopback. Two runners on one DB,
//! kill -9 and restart, SIGTERM drain, reaping, `--resume-only`.

use crate::support::*;
use std::time::Duration;

/// Checks only the daemon tests make.
impl Site {
    /// Every paper done, each phase finished exactly once per paper, one
    /// report per paper, the provider's request count equal to the ledger's
    /// sent rows, and no successful call paid twice.
    pub fn assert_all_done_once(&self, n: usize, killed: bool) {
        let statuses = self.statuses();
        assert_eq!(statuses.len(), n);
        for (id, s) in &statuses {
            assert_eq!(s, "done", "{id} is {s}");
        }
        let dup_finishes = self.scalar(
            "SELECT COUNT(*) FROM (SELECT execution_id, phase FROM execution_events WHERE kind = 'finished' GROUP BY 1, 2 HAVING COUNT(*) > 1) AS t",
        );
        assert_eq!(dup_finishes, 0, "a phase finished twice");
        assert_eq!(
            self.scalar("SELECT COUNT(*) FROM execution_events WHERE kind = 'finished'"),
            3 * n as i64
        );
        assert_eq!(self.reports().len(), n, "{:?}", self.reports());
        let paid_twice = self.scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM llm_calls WHERE status = 'ok' GROUP BY execution_id, state, step, sample, request_hash HAVING COUNT(*) > 1) AS t",
        );
        assert_eq!(paid_twice, 0, "a successful call was paid twice");
        let served = self.mock.stats().requests as i64;
        let settled = self.scalar("SELECT COUNT(*) FROM llm_calls WHERE status IN ('ok', 'error')");
        let sent_or_reserved = self
            .scalar("SELECT COUNT(*) FROM llm_calls WHERE status IN ('ok', 'error', 'reserved')");
        if killed {
            assert!(
                settled <= served && served <= sent_or_reserved,
                "settled {settled} served {served} reserved {sent_or_reserved}"
            );
        } else {
            assert_eq!(served, settled, "provider requests must equal ledger rows");
            assert_eq!(settled, sent_or_reserved);
        }
        assert_eq!(self.store().integrity_check().unwrap(), "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_pass_runs_every_paper_through_three_phases() {
    let site = Site::new("").await;
    site.add_papers(0, 4);
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "4"]));
    assert!(out.status.success(), "{}", stderr(&out));
    site.assert_all_done_once(4, false);
    // 1 prep call + 3 expensive + limitations, assemble, judge = 7 per paper.
    assert_eq!(site.mock.stats().requests, 28);
    // Paper text handed between phases is stored once, as blobs, never
    // copied into execution rows.
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM machine_executions WHERE length(input) > 8192 OR length(output) > 8192"),
        0
    );
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE length(prep_result) > 8192"),
        0
    );
    // A second pass finds nothing to do and pays nothing.
    let again = tokio::task::block_in_place(|| site.run(&["--workers", "4"]));
    assert!(again.status.success());
    assert_eq!(site.mock.stats().requests, 28);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_on_one_db_process_every_paper_exactly_once() {
    let site = Site::new("latency_ms: 20\njitter_ms: 10\n").await;
    let n = 10;
    site.add_papers(0, n);
    let a = site.spawn(&["--workers", "3"]);
    let b = site.spawn(&["--workers", "3"]);
    let (oa, ob) = tokio::task::block_in_place(|| {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    });
    assert!(oa.status.success(), "{}", stderr(&oa));
    assert!(ob.status.success(), "{}", stderr(&ob));
    for o in [&oa, &ob] {
        assert!(!stderr(o).contains("database is locked"), "{}", stderr(o));
    }
    site.assert_all_done_once(n, false);
    // Both took part.
    let owners =
        site.scalar("SELECT COUNT(DISTINCT owner_id) FROM execution_events WHERE kind = 'claimed'");
    assert_eq!(owners, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_then_restart_finishes_everything_without_paying_twice() {
    let site = Site::new("latency_ms: 60\njitter_ms: 30\n").await;
    let n = 6;
    site.add_papers(0, n);
    for round in 0..2 {
        let mut child = site.spawn(&["--workers", "3"]);
        let target = 2 + round * 5;
        tokio::task::block_in_place(|| {
            site.wait_for("some progress", Duration::from_secs(60), |s| {
                s.scalar("SELECT COUNT(*) FROM execution_events WHERE kind = 'finished'") >= target
                    || s.statuses().values().all(|v| v == "done")
            })
        });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "3"]));
    assert!(out.status.success(), "{}", stderr(&out));
    site.assert_all_done_once(n, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_only_finishes_in_flight_work_and_starts_nothing_new() {
    let site = Site::new("latency_ms: 80\n").await;
    site.add_papers(0, 5);
    let mut child = site.spawn(&["--workers", "2", "--prep-only"]);
    tokio::task::block_in_place(|| {
        site.wait_for("two preps in flight", Duration::from_secs(60), |s| {
            s.scalar("SELECT COUNT(*) FROM executions WHERE status = 'prepping' AND phase_execution IS NOT NULL") == 2
        })
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let in_flight = site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'prepping'");
    let pending_before = site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'pending'");
    assert_eq!(in_flight, 2);
    let out = tokio::task::block_in_place(|| site.run(&["--resume-only", "--workers", "4"]));
    assert!(out.status.success(), "{}", stderr(&out));
    // The two in flight were finished; nothing new was started.
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'prepping'"),
        0
    );
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'pending'"),
        pending_before
    );
    assert!(site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'prepped'") >= 2);
    assert_eq!(site.scalar("SELECT COUNT(*) FROM executions WHERE status IN ('analyzing','analyzed','wrapping','done')"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work_and_exits_zero() {
    let site = Site::new("latency_ms: 150\n").await;
    site.add_papers(0, 4);
    let child = site.spawn(&[
        "--daemon",
        "--workers",
        "2",
        "--poll-interval",
        "0.1",
        "--drain-timeout",
        "30",
    ]);
    tokio::task::block_in_place(|| {
        site.wait_for("work in flight", Duration::from_secs(60), |s| {
            s.scalar("SELECT COUNT(*) FROM executions WHERE status IN ('prepping','analyzing','wrapping')") > 0
        })
    });
    let pid = child.id().to_string();
    crate::support::signal(&pid, "-TERM");
    let out = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        stderr(&out)
    );
    // Nothing is left claimed: a restart can pick everything up at once.
    assert_eq!(
        site.scalar(
            "SELECT COUNT(*) FROM executions WHERE status IN ('prepping','analyzing','wrapping')"
        ),
        0
    );
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE owner_id IS NOT NULL"),
        0
    );
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "4"]));
    assert!(out.status.success(), "{}", stderr(&out));
    site.assert_all_done_once(4, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_drain_timeout_gives_claims_back() {
    // Calls take 5 s; the drain allows 1 s: claims are handed back.
    let site = Site::new("latency_ms: 5000\n").await;
    site.add_papers(0, 2);
    let child = site.spawn(&[
        "--daemon",
        "--workers",
        "2",
        "--poll-interval",
        "0.1",
        "--drain-timeout",
        "1",
    ]);
    tokio::task::block_in_place(|| {
        site.wait_for("a call in flight", Duration::from_secs(60), |s| {
            s.mock.stats().requests >= 2
        })
    });
    let pid = child.id().to_string();
    crate::support::signal(&pid, "-TERM");
    let out = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'pending' AND owner_id IS NULL AND phase_execution IS NOT NULL"),
        2,
        "{:?}",
        site.statuses()
    );
    assert_eq!(
        site.scalar("SELECT MAX(attempts_prep) FROM executions"),
        0,
        "a drain is not an attempt"
    );
    // The machine leases were given back too: any host can resume at once.
    let live = format!(
        "SELECT COUNT(*) FROM execution_leases WHERE lease_until > {}",
        paper_runner::store::now_ms()
    );
    assert_eq!(site.scalar(&live), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_claim_of_another_host_is_reaped_and_resumed() {
    let site = Site::new("").await;
    site.add_papers(0, 2);
    {
        // Another host claimed both papers and vanished: its claims expired.
        let c = site.conn();
        c.execute(
            "UPDATE executions SET status = 'prepping', owner_id = 'elsewhere:1:dead', lease_until = 1, attempts_prep = 1, fencing_token = 1",
            [],
        )
        .unwrap();
    }
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    site.assert_all_done_once(2, false);
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM execution_events WHERE kind = 'reaped'"),
        2
    );
    assert_eq!(site.scalar("SELECT MIN(attempts_prep) FROM executions"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_claim_of_another_host_is_never_touched() {
    let site = Site::new("").await;
    site.add_papers(0, 1);
    let far = paper_runner::store::now_ms() + 3_600_000;
    site.conn()
        .execute(
            "UPDATE executions SET status = 'prepping', owner_id = 'elsewhere:1:alive', lease_until = ?1, attempts_prep = 1",
            [far],
        )
        .unwrap();
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        site.statuses().values().next().map(String::as_str),
        Some("prepping")
    );
    assert_eq!(site.mock.stats().requests, 0);
}

/// Shorten the machines' retry backoffs so fault tests run in seconds.
fn fast_backoffs(site: &Site) {
    for rel in [
        "prep.yml",
        "wrap.yml",
        "children/mechanism.yml",
        "children/reproduction.yml",
        "children/open_questions.yml",
    ] {
        let p = site.path().join("machines").join(rel);
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text
            .replace("backoffs: [2, 8, 16, 35]", "backoffs: [0.2, 0.4, 0.8, 1.6]")
            .replace("backoffs: [12, 24]", "backoffs: [0.2, 0.4]");
        std::fs::write(p, text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_expensive_budget_stops_expensive_claims_while_prep_continues() {
    let site = Site::new("").await;
    site.add_papers(0, 5);
    // The expensive phase may cost up to 15 calls (3 children × 5 attempts):
    // 20 allows one phase at a time and stops after the second (6 used).
    let out =
        tokio::task::block_in_place(|| site.run(&["--workers", "4", "--budget-expensive", "20"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let statuses = site.statuses();
    let count = |s: &str| statuses.values().filter(|v| *v == s).count();
    assert_eq!(count("done"), 2, "{statuses:?}");
    assert_eq!(
        count("prepped"),
        3,
        "prep continued for every paper: {statuses:?}"
    );
    assert_eq!(
        site.mock.stats().by_model.get("mock/expensive").copied(),
        Some(6)
    );
    assert!(
        stderr(&out).contains("expensive budget spent"),
        "{}",
        stderr(&out)
    );
    // The budget is per day: a larger one lets the rest through.
    let out =
        tokio::task::block_in_place(|| site.run(&["--workers", "4", "--budget-expensive", "100"]));
    assert!(out.status.success(), "{}", stderr(&out));
    site.assert_all_done_once(5, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_opens_the_expensive_breaker_and_a_probe_closes_it() {
    let faults: Vec<String> = (1..=6)
        .map(|i| format!("{{at: {i}, status: 429, retry_after: 1}}"))
        .collect();
    let site = Site::new(&format!(
        "models:\n  mock/expensive:\n    faults: [{}]\n",
        faults.join(", ")
    ))
    .await;
    fast_backoffs(&site);
    site.add_papers(0, 3);
    let out =
        tokio::task::block_in_place(|| site.run(&["--workers", "3", "--poll-interval", "0.1"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("circuit breaker opened"), "{err}");
    assert!(
        err.contains("prep-only mode") && err.contains("breaker open"),
        "{err}"
    );
    assert!(
        err.contains("normal mode"),
        "the breaker closed again: {err}"
    );
    site.assert_all_done_once(3, false);
    let stats = site.mock.stats();
    assert_eq!(stats.by_status.get("429").copied(), Some(6), "{stats:?}");
    assert_eq!(stats.by_model.get("mock/expensive").copied(), Some(6 + 9));
    let state: String = site
        .conn()
        .query_row(
            "SELECT state FROM breakers WHERE model LIKE '%mock/expensive'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_paper_retried_after_the_fix_really_runs_again() {
    let site = Site::new("").await;
    let pdf = site.path().join("broken.pdf");
    std::fs::copy(repo().join("tests/fixtures/papers/garbage.pdf"), &pdf).unwrap();
    let out = site.run(&[
        "add",
        "2502.00001",
        "--offline",
        "--pdf",
        pdf.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, kind): (String, String) = site
        .conn()
        .query_row("SELECT status, last_error_kind FROM executions", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (status.as_str(), kind.as_str()),
        ("failed", "pdf_unreadable")
    );
    // The operator fixes the PDF and retries: the phase runs afresh.
    std::fs::copy(repo().join("tests/fixtures/papers/paper-a.pdf"), &pdf).unwrap();
    let out = site.run(&["retry", "2502.00001"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    site.assert_all_done_once(1, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_compacts_done_papers_down_to_their_record() {
    let site = Site::new("").await;
    site.add_papers(0, 3);
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "3"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(site.scalar("SELECT COUNT(*) FROM blobs") > 0);
    let db = site.db();
    let out = site.run(&["prune", "--db", db.to_str().unwrap(), "--keep-done", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", stderr(&out));
    assert!(stdout.contains("compacted 3 done paper(s)"), "{stdout}");
    // Paper text and hand-over data are gone; the record stays.
    assert_eq!(site.scalar("SELECT COUNT(*) FROM blobs"), 0);
    assert_eq!(site.scalar("SELECT COUNT(*) FROM executions WHERE prep_result IS NOT NULL OR expensive_result IS NOT NULL"), 0);
    assert_eq!(
        site.scalar(
            "SELECT COUNT(*) FROM executions WHERE status = 'done' AND report_path IS NOT NULL"
        ),
        3
    );
    assert_eq!(site.scalar("SELECT COUNT(*) FROM llm_calls"), 21);
    assert_eq!(site.reports().len(), 3);
    let show = site.run(&["show", "2501.00001", "--db", db.to_str().unwrap(), "--json"]);
    assert!(show.status.success(), "{}", stderr(&show));
    // A second prune has nothing left to compact, and a rerun pays nothing.
    let again = site.run(&["prune", "--db", db.to_str().unwrap(), "--keep-done", "0"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("compacted 0 done paper(s)"));
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "3"]));
    assert!(out.status.success());
    assert_eq!(site.mock.stats().requests, 21);
}
