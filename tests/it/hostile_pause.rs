//! Issue 12, case A.2 ("say why nothing moves"), across processes: a
//! provider's Retry-After pause learned by one daemon's rate limiter is
//! persisted (`model_pauses`), so
//!
//! - `runner status --json`, run as its own process on the same database,
//!   reports prep-only with the paused model, the reason `rate_limited` and
//!   when the pause ends, and counts the held phases as held, not
//!   claimable;
//! - a second daemon started on the same database sends the paused model
//!   nothing before the pause ends (counted at the mock provider), while it
//!   goes on prepping, and its one info line names the pause.
//!
//! Real binary, real SQLite file, the mock provider over loopback.

use serde_json::Value;
use std::process::Child;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::*;
/// The provider's Retry-After on the first expensive request.
const PAUSE_SECS: i64 = 60;

impl Site {
    fn expensive_requests(&self) -> u64 {
        self.mock
            .stats()
            .by_model
            .get("mock/expensive")
            .copied()
            .unwrap_or(0)
    }

    fn status_json(&self) -> Value {
        let out = self.run(&["status", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// SIGTERM, wait, and return the log; the daemon must exit 0.
fn stop(child: Child, log: JoinHandle<String>) -> String {
    let pid = child.id().to_string();
    let mut child = child;
    crate::support::signal(&pid, "-TERM");
    let status = child.wait().unwrap();
    let text = log.join().unwrap();
    assert!(status.success(), "exit {status:?}: {text}");
    text
}

/// The expensive entry of `mode.blocked`, checked: rate_limited, ending
/// at the pause's end (within the test's own slack), holding `expensive`.
fn assert_blocked_by_the_pause(status: &Value, pause_end: (i64, i64)) -> i64 {
    let mode = &status["mode"];
    let blocked = mode["blocked"].as_array().unwrap();
    let b = blocked
        .iter()
        .find(|b| b["model"] == "mock/expensive")
        .unwrap_or_else(|| panic!("no blocked entry for mock/expensive: {mode:#}"));
    assert_eq!(b["reason"], "rate_limited", "{mode:#}");
    assert!(b["key"].as_str().unwrap().ends_with("|mock/expensive"));
    let until = b["until_ms"].as_i64().unwrap();
    assert!(
        until >= pause_end.0 && until <= pause_end.1,
        "pause end {until} not within {pause_end:?}"
    );
    assert!(b["until"].as_str().unwrap().ends_with('Z'));
    assert!(b["phases"]
        .as_array()
        .unwrap()
        .contains(&Value::from("expensive")));
    until
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_pause_is_seen_by_status_and_honoured_by_a_second_daemon() {
    let site = Site::with_config(
        &format!(
            "latency_ms: 20\nmodels:\n  mock/expensive:\n    faults: [{{at: 1, status: 429, retry_after: {PAUSE_SECS}}}]\n"
        ),
        "[scheduler]\nworkers = 2\npoll_interval_secs = 0.2\n",
    )
    .await;
    // Three papers prepped beforehand, so the first daemon goes straight
    // to the expensive phase.
    site.add_papers(0, 3);
    let out = tokio::task::block_in_place(|| site.run(&["--prep-only"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'prepped'"),
        3
    );
    assert_eq!(site.expensive_requests(), 0);

    // Daemon 1 meets the 429 with Retry-After: 60 and persists the pause.
    let before_429 = now_ms();
    let (d1, log1) = site.daemon();
    tokio::task::block_in_place(|| {
        site.wait_for("the pause persisted", Duration::from_secs(60), |s| {
            s.scalar("SELECT COUNT(*) FROM model_pauses WHERE model LIKE '%|mock/expensive'") == 1
        });
        // ... and the parked phase given back (it is held, not in flight).
        site.wait_for("the phase parked", Duration::from_secs(30), |s| {
            s.scalar("SELECT COUNT(*) FROM executions WHERE owner_id IS NOT NULL") == 0
        });
    });
    let after_429 = now_ms();
    let pause_end = (
        before_429 + PAUSE_SECS * 1000,
        after_429 + PAUSE_SECS * 1000,
    );
    let stored: i64 =
        site.scalar("SELECT paused_until FROM model_pauses WHERE model LIKE '%|mock/expensive'");
    assert!(stored >= pause_end.0 && stored <= pause_end.1, "{stored}");
    // The 429 and whatever its siblings had already sent; one 429 only.
    let sent_by_first = site.expensive_requests();
    assert!(sent_by_first >= 1);
    assert_eq!(site.mock.stats().by_status.get("429").copied(), Some(1));

    // `runner status` as its own process: prep-only, the paused model,
    // why and until when; nothing expensive claimable, the three held.
    let status = tokio::task::block_in_place(|| site.status_json());
    let mode = &status["mode"];
    assert_eq!(mode["source"], "derived", "{mode:#}");
    assert_eq!(mode["mode"], "prep-only", "{mode:#}");
    assert_eq!(mode["prep_only"], true);
    assert_eq!(mode["only_prep"], false, "wrap still runs");
    assert!(
        mode["reason"]
            .as_str()
            .unwrap()
            .starts_with("expensive paused: mock/expensive rate_limited until "),
        "{mode:#}"
    );
    let until = assert_blocked_by_the_pause(&status, pause_end);
    assert_eq!(until, stored);
    assert_eq!(status["claimable"]["expensive"], 0, "{status:#}");
    assert_eq!(status["held"]["expensive"], 3, "{status:#}");
    // The human rendering says the same.
    let human = tokio::task::block_in_place(|| site.run(&["status"]));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("mode: prep-only (expensive paused"), "{text}");
    assert!(
        text.contains("blocked: mock/expensive rate_limited until"),
        "{text}"
    );

    let log1 = tokio::task::block_in_place(|| stop(d1, log1));
    assert!(
        log1.contains("models blocked") && log1.contains("mock/expensive rate_limited until"),
        "{log1}"
    );

    // Daemon 2 on the same database, with fresh papers to prep: it preps
    // them, and sends the paused model nothing before the pause ends.
    site.add_papers(3, 2);
    let (d2, log2) = site.daemon();
    tokio::task::block_in_place(|| {
        site.wait_for(
            "the fresh papers prepped by the second daemon",
            Duration::from_secs(45),
            // (or a request to the paused model: the failure, reported below)
            |s| {
                s.scalar(
                    "SELECT COUNT(*) FROM executions WHERE arxiv_id > '2501.00003' AND status = 'prepped'",
                ) == 2
                    || s.expensive_requests() > sent_by_first
            },
        );
    });
    // Whatever it claimed, it has finished (every claim given back) and
    // it had at least one claim pass with expensive work ready.
    tokio::task::block_in_place(|| {
        site.wait_for("the second daemon idle", Duration::from_secs(30), |s| {
            s.scalar("SELECT COUNT(*) FROM executions WHERE owner_id IS NOT NULL") == 0
                || s.expensive_requests() > sent_by_first
        })
    });
    assert!(
        now_ms() < stored,
        "the test ran past the pause; it proves nothing (slow machine?)"
    );
    assert_eq!(
        site.expensive_requests(),
        sent_by_first,
        "the second daemon called the paused model"
    );
    // While it runs, `status` still agrees.
    let status = tokio::task::block_in_place(|| site.status_json());
    assert_blocked_by_the_pause(&status, pause_end);
    assert_eq!(status["claimable"]["expensive"], 0, "{status:#}");
    assert_eq!(status["held"]["expensive"], 5, "{status:#}");

    let log2 = tokio::task::block_in_place(|| stop(d2, log2));
    // Its one info line names the pause it learned from the database.
    assert!(
        log2.contains("models blocked") && log2.contains("mock/expensive rate_limited until"),
        "{log2}"
    );
    assert!(!log2.contains("sending one probe"), "{log2}");
    assert_eq!(site.expensive_requests(), sent_by_first);
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM llm_calls WHERE status = 'reserved'"),
        0
    );
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE last_error_kind IS NOT NULL"),
        0,
        "parked, never failed"
    );
}
