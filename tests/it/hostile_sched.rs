//! The scheduler under a hostile provider and hostile phases, with the real
//! `runner` binary (or the scheduler in-process) on a real SQLite file and
//! the mock provider over loopback:
//!
//! - a provider allowing the expensive model 2 requests/min with no runner
//!   limit configured: the expensive phases park (their worker slots go to
//!   prep), every fresh paper is prepped while the model is held, the 429s
//!   stay under the breaker threshold, `/status` says which model is
//!   blocked, why and until when, and nothing is paid twice;
//! - parked phases resume later from their checkpoints and finish;
//! - a phase past `phase_timeout_secs` fails as a retryable `timeout`
//!   naming its state; a panicking phase is failed as `internal` and its
//!   claim is given back at once; a single pass with a panic exits 1.

use async_trait::async_trait;
use paper_runner::engine::{Action, ActionArgs, ExecError};
use paper_runner::runner::build::{build, RunOptions};
use paper_runner::runner::scheduler::RunMode;
use paper_runner::runner::task::TaskEnv;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::support::*;
/// `breaker.rate_limit_threshold` default.
const THRESHOLD: u64 = 5;

impl Site {
    /// No ledger row left `reserved`, every request the provider saw has a
    /// ledger row, and no successful call was paid twice.
    fn assert_ledger_clean(&self) {
        assert_eq!(
            self.scalar("SELECT COUNT(*) FROM llm_calls WHERE status = 'reserved'"),
            0,
            "a ledger row was left reserved"
        );
        assert_eq!(
            self.scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM llm_calls WHERE status = 'ok' GROUP BY execution_id, state, step, sample, request_hash HAVING COUNT(*) > 1)"
            ),
            0,
            "a successful call was paid twice"
        );
        assert_eq!(
            self.scalar("SELECT COUNT(*) FROM llm_calls WHERE status IN ('ok', 'error')") as u64,
            self.mock.stats().requests,
            "every request sent has its settled ledger row"
        );
    }

    fn count_429(&self) -> u64 {
        self.mock.stats().by_status.get("429").copied().unwrap_or(0)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Issue 12, case 1: 8 prepped + 6 fresh papers, 4 workers, the provider
/// allows the expensive model 2 requests/min, no runner limit configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prep_keeps_prepping_while_the_expensive_model_is_rate_limited() {
    let port = free_port();
    let site = Site::with_config(
        "latency_ms: 20\nmodels:\n  mock/expensive: {rpm: 2}\n",
        &format!(
            "[scheduler]\nworkers = 4\npoll_interval_secs = 0.2\n\n[ops]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .await;
    site.add_papers(0, 8);
    let out = tokio::task::block_in_place(|| site.run(&["--prep-only"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'prepped'"),
        8
    );
    site.add_papers(8, 6);
    let fresh_prepped = "SELECT COUNT(*) FROM executions WHERE arxiv_id > '2501.00008' AND status IN ('prepped', 'analyzing', 'analyzed', 'wrapping', 'done')";

    let mut child = site.spawn(&["--log-level", "info", "--daemon"]);
    // Read the log as it comes (a full pipe would stall the daemon).
    let mut pipe = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
        text
    });
    // Behaviour, not speed: the deadline is generous. What matters is
    // that prep goes on while the expensive model is held.
    tokio::task::block_in_place(|| {
        site.wait_for("every fresh paper prepped", Duration::from_secs(120), |s| {
            s.scalar(fresh_prepped) == 6
        })
    });
    // The provider allowed two expensive calls this minute; no expensive
    // phase could have finished, and the model is held, not hammered.
    let expensive_ok = site
        .scalar("SELECT COUNT(*) FROM llm_calls WHERE model = 'mock/expensive' AND status = 'ok'");
    assert!(expensive_ok <= 2, "{expensive_ok} expensive calls answered");
    assert_eq!(
        site.scalar(
            "SELECT COUNT(*) FROM executions WHERE status IN ('analyzed', 'wrapping', 'done')"
        ),
        0
    );

    // /status names the blocked model, the reason and when it ends, and
    // counts only what can be claimed now.
    let status: Value = reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mode = &status["mode"];
    assert_eq!(mode["prep_only"], true, "{status:#}");
    assert!(
        mode["reason"]
            .as_str()
            .unwrap()
            .contains("mock/expensive rate_limited until"),
        "{mode:#}"
    );
    let blocked = mode["blocked"].as_array().unwrap();
    let b = blocked
        .iter()
        .find(|b| b["model"] == "mock/expensive")
        .unwrap_or_else(|| panic!("{mode:#}"));
    assert_eq!(b["reason"], "rate_limited");
    assert!(b["until_ms"].as_i64().unwrap() > chrono::Utc::now().timestamp_millis());
    assert!(b["phases"]
        .as_array()
        .unwrap()
        .contains(&Value::from("expensive")));
    assert_eq!(status["claimable"]["expensive"], 0, "{status:#}");
    assert_eq!(status["held"]["expensive"], 14, "{status:#}");

    // Parked, not failed: no attempt counted, the phase's execution kept
    // for the resume, the claim given back.
    let parked = site.scalar(
        "SELECT COUNT(*) FROM execution_events WHERE kind = 'released' AND message LIKE 'parked: model mock/expensive is rate_limited%'",
    );
    assert!(parked >= 1, "no phase parked");
    assert_eq!(
        site.scalar(
            "SELECT COUNT(*) FROM executions WHERE attempts_expensive > 0 AND status = 'prepped'"
        ),
        0,
        "a park counted an attempt"
    );
    assert!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'prepped' AND phase_execution IS NOT NULL")
            >= 1
    );
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE last_error_kind IS NOT NULL"),
        0
    );

    // Drain and stop.
    let pid = child.id().to_string();
    crate::support::signal(&pid, "-TERM");
    let status = tokio::task::block_in_place(|| child.wait().unwrap());
    let err = log.join().unwrap();
    assert!(status.success(), "exit {status:?}: {err}");
    // One info line says why nothing moves.
    assert!(
        err.contains("models blocked") && err.contains("mock/expensive rate_limited until"),
        "{err}"
    );
    let probes = err.matches("sending one probe").count() as u64;
    assert!(
        site.count_429() <= THRESHOLD + probes,
        "{} 429s with {probes} probe(s)",
        site.count_429()
    );
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE owner_id IS NOT NULL"),
        0
    );
    site.assert_ledger_clean();
}

/// A provider that refuses a few expensive calls with a Retry-After: the
/// phases park, prep continues, and the parked phases resume from their
/// checkpoints and finish — each paper done once, nothing paid twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_expensive_phases_finish_later_without_paying_twice() {
    let site = Site::with_config(
        "latency_ms: 20\nmodels:\n  mock/expensive:\n    faults: [{at: 3, status: 429, retry_after: 3}, {at: 4, status: 429, retry_after: 3}]\n",
        "[scheduler]\nworkers = 4\npoll_interval_secs = 0.1\nclaim_backlog_secs = 0.5\npark_after_secs = 1.0\n",
    )
    .await;
    site.add_papers(0, 6);
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "4"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'done'"),
        6,
        "{err}"
    );
    assert!(
        site.scalar("SELECT COUNT(*) FROM execution_events WHERE kind = 'released' AND message LIKE 'parked:%'")
            >= 1,
        "{err}"
    );
    // Every phase finished on its first attempt: parks count nothing.
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE attempts_expensive <> 1 OR attempts_prep <> 1 OR attempts_wrap <> 1"),
        0
    );
    // Each paper's three expensive calls were answered once; the rest of
    // the provider's expensive requests are the two 429s.
    assert_eq!(
        site.mock.stats().by_model.get("mock/expensive").copied(),
        Some(6 * 3 + 2)
    );
    assert!(site.count_429() <= THRESHOLD);
    assert_eq!(site.reports_count(), 6);
    site.assert_ledger_clean();
}

impl Site {
    fn reports_count(&self) -> usize {
        std::fs::read_dir(self.path().join("reports"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".md"))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// A phase stuck in a state past `phase_timeout_secs` is stopped and failed
/// as a retryable `timeout` naming the state; its claim and machine lease
/// are given back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_past_its_deadline_fails_as_a_retryable_timeout_naming_its_state() {
    let site = Site::with_config(
        "",
        "[scheduler]\nworkers = 1\nphase_timeout_secs = 1\nretry_base_secs = 3600\n",
    )
    .await;
    // The prep machine's first state hangs (a shell action that sleeps).
    let prep = site.path().join("machines/prep.yml");
    let text = std::fs::read_to_string(&prep).unwrap().replace(
        "    acquire:\n      type: initial\n      action: acquire_pdf\n      transitions: [{to: extract}]\n",
        "    acquire:\n      type: initial\n      action: shell\n      command: [sleep, \"30\"]\n      timeout: 60\n      transitions: [{to: extract}]\n",
    );
    assert!(text.contains("command: [sleep"), "prep.yml changed shape");
    std::fs::write(&prep, text).unwrap();
    site.add_papers(0, 1);
    let started = Instant::now();
    let out = tokio::task::block_in_place(|| site.run(&[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the sleep was not stopped"
    );
    let (status, kind, msg, attempts, owner): (String, String, String, i64, Option<String>) = site
        .conn()
        .query_row(
            "SELECT status, last_error_kind, last_error_message, attempts_prep, owner_id FROM executions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(status, "pending", "retryable: back in the queue");
    assert_eq!(kind, "timeout");
    assert!(msg.contains("state 'acquire'"), "{msg}");
    assert_eq!(attempts, 1);
    assert_eq!(owner, None);
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM execution_leases WHERE lease_until > 0"),
        0,
        "the machine lease was given back"
    );
}

/// An action that panics (a bug in the runner).
struct Boom;

#[async_trait]
impl Action for Boom {
    async fn run(
        &self,
        _ctx: &mut Map<String, Value>,
        _args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        panic!("boom in a phase task")
    }
}

/// A panic inside a phase task fails the phase as a retryable `internal`
/// error and gives its claim back at once (not at lease expiry); the single
/// pass reports the trouble.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_phase_is_failed_as_internal_and_its_claim_given_back() {
    let site = Site::with_config("", "[scheduler]\nworkers = 2\nretry_base_secs = 3600\n").await;
    site.add_papers(0, 2);
    let mut scheduler = in_process(&site, |s| {
        s.scheduler.lease_ttl = std::time::Duration::from_secs(3600)
    });
    let env = &scheduler.env;
    let mut actions = env.actions.clone();
    actions.register("acquire_pdf", Arc::new(Boom));
    scheduler.env = Arc::new(TaskEnv {
        store: env.store.clone(),
        agent: env.agent.clone(),
        actions,
        owner: env.owner.clone(),
        lease_ttl: env.lease_ttl,
        retry: env.retry,
        configs: Default::default(),
        models: env.models.clone(),
        phase_timeout: env.phase_timeout,
        trouble: Default::default(),
    });
    let summary = scheduler
        .run(CancellationToken::new(), CancellationToken::new())
        .await;
    assert_eq!(summary.panicked, 2, "{summary:?}");
    assert!(summary.had_trouble());
    assert_eq!(summary.retry_later, 2);
    // Given back at once although the claim's TTL is an hour.
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM executions WHERE status = 'pending' AND owner_id IS NULL AND last_error_kind = 'internal'"),
        2
    );
    let msg: String = site
        .conn()
        .query_row(
            "SELECT last_error_message FROM executions LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(msg.contains("boom in a phase task"), "{msg}");
}

/// Build the scheduler in-process for `site` (paths pinned to the site).
fn in_process(
    site: &Site,
    tweak: impl FnOnce(&mut paper_runner::runner::config::Settings),
) -> paper_runner::runner::scheduler::Scheduler {
    let mut cfg = paper_runner::runner::config::load(Some(&site.path().join("config.toml")))
        .unwrap()
        .config;
    cfg.db = site.path().join("data/runner.db");
    cfg.machines_dir = site.path().join("machines");
    cfg.pdf_dir = site.path().join("pdfs");
    cfg.reports_dir = site.path().join("reports");
    let mut settings = cfg.resolve().unwrap();
    tweak(&mut settings);
    build(
        &settings,
        &RunOptions {
            mode: RunMode::SinglePass,
            prep_only: false,
        },
    )
    .unwrap()
    .scheduler
}

/// A drive stopped from outside (here: the phase deadline) stops its lease
/// renewer with it: the machine lease, given back, stays given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_drive_leaves_no_lease_renewer_running() {
    let site = Site::with_config("", "[scheduler]\nworkers = 1\nretry_base_secs = 3600\n").await;
    let prep = site.path().join("machines/prep.yml");
    let text = std::fs::read_to_string(&prep).unwrap().replace(
        "    acquire:\n      type: initial\n      action: acquire_pdf\n",
        "    acquire:\n      type: initial\n      action: shell\n      command: [sleep, \"30\"]\n      timeout: 60\n",
    );
    std::fs::write(&prep, text).unwrap();
    site.add_papers(0, 1);
    // A 1 s lease is below what a config may set (5 s): set on the
    // resolved settings, to make the renewer's cadence fast.
    let scheduler = in_process(&site, |s| {
        s.scheduler.phase_timeout = std::time::Duration::from_secs(1);
        s.scheduler.lease_ttl = std::time::Duration::from_secs(1);
    });
    let summary = scheduler
        .run(CancellationToken::new(), CancellationToken::new())
        .await;
    assert_eq!(summary.retry_later, 1, "{summary:?}");
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM execution_leases WHERE lease_until > 0"),
        0
    );
    // The renewer ran every 333 ms; had it outlived the drive it would
    // have pushed the lease forward again by now.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        site.scalar("SELECT COUNT(*) FROM execution_leases WHERE lease_until > 0"),
        0,
        "a renewer outlived its drive"
    );
}

/// SIGHUP and SIGQUIT drain like SIGTERM: in-flight work finishes or is
/// given back, nothing stays claimed, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_sigquit_drain_like_sigterm() {
    for signal in ["-HUP", "-QUIT"] {
        let site = Site::with_config("latency_ms: 150\n", "").await;
        site.add_papers(0, 3);
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
        crate::support::signal(&pid, signal);
        let out = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
        let err = stderr(&out);
        assert!(
            out.status.success(),
            "{signal}: exit {:?}: {err}",
            out.status
        );
        assert!(err.contains("stop requested"), "{signal}: {err}");
        assert_eq!(
            site.scalar("SELECT COUNT(*) FROM executions WHERE owner_id IS NOT NULL"),
            0,
            "{signal}"
        );
        site.assert_ledger_clean();
    }
}

/// An action that says it started, then never returns: the phase is held
/// mid-state until something outside stops it.
struct Hang(Arc<tokio::sync::Notify>);

#[async_trait]
impl Action for Hang {
    async fn run(
        &self,
        _ctx: &mut Map<String, Value>,
        _args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// Issue 13: a paper cancelled mid-phase stops its drive, and the drive's
/// lease renewer with it: the machine lease, given back, stays given back
/// for 3 TTLs. Time is tokio's paused clock, advanced a third of a TTL at
/// a time (the renewer's period), so a renewer that outlived its drive
/// would have run nine times; nothing sleeps for real.
#[tokio::test(start_paused = true)]
async fn a_cancelled_phase_leaves_its_machine_lease_released_for_three_ttls() {
    let site = Site::with_config("", "[scheduler]\nworkers = 1\nretry_base_secs = 3600\n").await;
    site.add_papers(0, 1);
    let mut scheduler = in_process(&site, |c| {
        c.scheduler.lease_ttl = std::time::Duration::from_secs(30)
    });
    let entered = Arc::new(tokio::sync::Notify::new());
    let env = &scheduler.env;
    let mut actions = env.actions.clone();
    actions.register("acquire_pdf", Arc::new(Hang(entered.clone())));
    scheduler.env = Arc::new(TaskEnv {
        store: env.store.clone(),
        agent: env.agent.clone(),
        actions,
        owner: env.owner.clone(),
        lease_ttl: env.lease_ttl,
        retry: env.retry,
        configs: Default::default(),
        models: env.models.clone(),
        phase_timeout: env.phase_timeout,
        trouble: Default::default(),
    });
    let (store, ttl) = (scheduler.env.store.clone(), scheduler.env.lease_ttl);
    let held = "SELECT COUNT(*) FROM execution_leases WHERE lease_until > 0";
    let run = tokio::spawn(async move {
        scheduler
            .run(CancellationToken::new(), CancellationToken::new())
            .await
    });
    entered.notified().await;
    assert_eq!(site.scalar(held), 1, "mid-phase, the machine lease is held");
    let cancelled = store.cancel_papers(&["2501.00001".to_string()]).unwrap();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    let summary = run.await.unwrap();
    assert_eq!(summary.released, 1, "{summary:?}");
    assert_eq!(site.scalar(held), 0, "the machine lease was given back");
    for step in 1..=9 {
        tokio::time::sleep(ttl / 3).await;
        assert_eq!(
            site.scalar(held),
            0,
            "a renewer outlived its drive: the lease was renewed {step}/3 of a TTL after the cancel"
        );
    }
}

/// Exit code 130 (the table's "stopped at once"): the first SIGTERM
/// drains, the second stops the daemon at once although a phase is stuck
/// in a 30 s shell step — through the scheduler's owned tasks, and `main`
/// returns the code (nothing calls `process::exit`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once_with_exit_130() {
    let site = Site::with_config("", "").await;
    let prep = site.path().join("machines/prep.yml");
    let text = std::fs::read_to_string(&prep).unwrap().replace(
        "    acquire:\n      type: initial\n      action: acquire_pdf\n",
        "    acquire:\n      type: initial\n      action: shell\n      command: [sleep, \"30\"]\n      timeout: 60\n",
    );
    assert!(text.contains("command: [sleep"), "prep.yml changed shape");
    std::fs::write(&prep, text).unwrap();
    site.add_papers(0, 1);
    let mut child = site
        .cmd(&[
            "--daemon",
            "--poll-interval",
            "0.1",
            "--drain-timeout",
            "60",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The log, line by line as it comes.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_line = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(what) => return,
                Ok(_) => {}
                Err(e) => panic!("no log line with {what:?}: {e}"),
            }
        }
    };
    tokio::task::block_in_place(|| {
        site.wait_for("the phase in flight", Duration::from_secs(60), |s| {
            s.scalar("SELECT COUNT(*) FROM execution_leases WHERE lease_until > 0") > 0
        })
    });
    let pid = child.id().to_string();
    let term = || crate::support::signal(&pid, "-TERM");
    term();
    // The second signal only once the first was seen (two deliveries of
    // one signal before it is read count once).
    tokio::task::block_in_place(|| wait_line("stop requested"));
    let stopping = Instant::now();
    term();
    let status = tokio::task::block_in_place(|| child.wait().unwrap());
    assert!(
        stopping.elapsed() < Duration::from_secs(25),
        "stopped at once, not after the 30 s step"
    );
    assert_eq!(status.code(), Some(130), "{status:?}");
    // The reader ends when every writer of the pipe is gone (a shell step
    // the runner started may hold it a little longer); not waited for.
    drop(reader);
}
