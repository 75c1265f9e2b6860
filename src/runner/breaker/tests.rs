use super::*;
use crate::engine::ErrorKind;
use crate::llm::gate::{BlockReason, Blocked};
use std::sync::atomic::{AtomicI64, Ordering};

/// A clock reading a shared counter the test moves by hand.
#[derive(Debug)]
struct CounterClock(Arc<AtomicI64>);

impl crate::store::Clock for CounterClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A clock following tokio's (paused) time from `T0`.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl crate::store::Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        T0 + self.0.elapsed().as_millis() as i64
    }
}

const T0: i64 = 1_700_000_000_000;
const KEY: &str = "http://p/v1|m";

/// A clock the test moves by hand.
fn manual() -> (Arc<AtomicI64>, Clock) {
    let t = Arc::new(AtomicI64::new(T0));
    (t.clone(), Arc::new(CounterClock(t)))
}

/// A clock that follows tokio's (paused) time, so `admit`'s sleeps and
/// the breaker's deadlines agree.
fn tokio_clock() -> Clock {
    Arc::new(TokioClock(tokio::time::Instant::now()))
}

fn breakers(clock: Clock) -> Breakers {
    Breakers::new(None, BreakerSettings::default())
        .unwrap()
        .with_clock(clock)
}

fn fail(kind: ErrorKind) -> CallOutcome {
    CallOutcome::failed(kind, None)
}

#[test]
fn opens_at_the_fifth_429_within_the_window() {
    let (t, clock) = manual();
    let b = breakers(clock);
    for i in 0..4 {
        b.record(KEY, "p", fail(ErrorKind::RateLimit));
        t.fetch_add(1000, Ordering::SeqCst);
        assert_eq!(b.state(KEY).state, BreakerState::Closed, "after {}", i + 1);
    }
    assert_eq!(b.state(KEY).recent_429s, 4);
    b.record(KEY, "p", fail(ErrorKind::RateLimit));
    let v = b.state(KEY);
    assert_eq!(v.state, BreakerState::Open);
    assert_eq!(v.reason.as_deref(), Some("rate_limit"));
    assert_eq!(v.open_until_ms, Some(T0 + 4000 + 30_000));
    assert!(b.is_open(KEY));
    t.fetch_add(30_000, Ordering::SeqCst);
    assert!(!b.is_open(KEY), "due for a probe is not open for claims");
}

#[test]
fn rate_limits_spread_beyond_the_window_do_not_open() {
    let (t, clock) = manual();
    let b = breakers(clock);
    for _ in 0..10 {
        b.record(KEY, "p", fail(ErrorKind::RateLimit));
        t.fetch_add(20_000, Ordering::SeqCst);
    }
    // At most 3 of them (0 s, 20 s, 40 s) ever fall within 60 s.
    assert_eq!(b.state(KEY).state, BreakerState::Closed);
    assert_eq!(b.state(KEY).recent_429s, 2);
}

#[test]
fn server_errors_and_timeouts_share_their_own_threshold() {
    let (t, clock) = manual();
    let b = breakers(clock);
    for i in 0..9 {
        let kind = if i % 2 == 0 {
            ErrorKind::ServerError
        } else {
            ErrorKind::Timeout
        };
        b.record(KEY, "p", fail(kind));
        // 429s and neutral failures do not add to the error count.
        b.record(KEY, "p", fail(ErrorKind::InvalidRequest));
        b.record(KEY, "p", fail(ErrorKind::EmptyResponse));
        t.fetch_add(500, Ordering::SeqCst);
    }
    assert_eq!(b.state(KEY).state, BreakerState::Closed);
    assert_eq!(b.state(KEY).recent_errors, 9);
    b.record(KEY, "p", fail(ErrorKind::Timeout));
    let v = b.state(KEY);
    assert_eq!(v.state, BreakerState::Open);
    assert_eq!(v.reason.as_deref(), Some("timeout"));
}

#[test]
fn payment_required_opens_every_model_of_the_provider() {
    let (_t, clock) = manual();
    let b = breakers(clock);
    b.record("a|cheap", "acme", CallOutcome::Ok);
    b.record("a|expensive", "acme", CallOutcome::Ok);
    b.record("o|other", "other", CallOutcome::Ok);
    b.record("a|cheap", "acme", fail(ErrorKind::PaymentRequired));
    for k in ["a|cheap", "a|expensive"] {
        let v = b.state(k);
        assert_eq!(v.state, BreakerState::Open, "{k}");
        assert_eq!(v.reason.as_deref(), Some("payment_required"));
        assert_eq!(v.open_until_ms, Some(T0 + 30_000));
    }
    assert_eq!(b.state("o|other").state, BreakerState::Closed);
    assert_eq!(b.blocked_providers(), vec!["acme".to_string()]);
    // A model of the blocked provider seen for the first time starts open.
    b.record("a|new", "acme", CallOutcome::Ok);
    assert!(b.is_open("a|new"));
    assert!(!b.is_open("never-seen"));
}

#[test]
fn retry_after_is_the_open_period() {
    let (_t, clock) = manual();
    let b = breakers(clock);
    for _ in 0..4 {
        b.record(KEY, "p", fail(ErrorKind::RateLimit));
    }
    b.record(
        KEY,
        "p",
        CallOutcome::failed(ErrorKind::RateLimit, Some(120.0)),
    );
    assert_eq!(b.state(KEY).open_until_ms, Some(T0 + 120_000));
}

#[test]
fn unrelated_failures_never_open() {
    let (_t, clock) = manual();
    let b = breakers(clock);
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::ContextLength,
        ErrorKind::ContentFilter,
        ErrorKind::EmptyResponse,
        ErrorKind::LegalBlock,
    ] {
        for _ in 0..20 {
            b.record(KEY, "p", fail(kind));
        }
    }
    assert_eq!(b.state(KEY).state, BreakerState::Closed);
}

#[tokio::test]
async fn failed_probes_double_the_period_up_to_the_cap() {
    let (t, clock) = manual();
    let b = breakers(clock);
    b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
    let mut periods = vec![b.state(KEY).open_until_ms.unwrap() - t.load(Ordering::SeqCst)];
    for _ in 0..7 {
        t.store(b.state(KEY).open_until_ms.unwrap(), Ordering::SeqCst);
        let probe = b.admit(KEY, "p").await;
        assert!(probe.is_probe());
        assert_eq!(b.state(KEY).state, BreakerState::HalfOpen);
        probe.record(&fail(ErrorKind::ServerError));
        let v = b.state(KEY);
        assert_eq!(v.state, BreakerState::Open);
        assert_eq!(v.reason.as_deref(), Some("server_error"));
        periods.push(v.open_until_ms.unwrap() - t.load(Ordering::SeqCst));
    }
    let secs: Vec<i64> = periods.iter().map(|p| p / 1000).collect();
    assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1800, 1800]);
    // A successful probe closes it and resets the doubling.
    t.store(b.state(KEY).open_until_ms.unwrap(), Ordering::SeqCst);
    b.admit(KEY, "p").await.record(&CallOutcome::Ok);
    let v = b.state(KEY);
    assert_eq!(
        (v.state, v.open_count, v.reason),
        (BreakerState::Closed, 0, None)
    );
    b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
    assert_eq!(
        b.state(KEY).open_until_ms,
        Some(t.load(Ordering::SeqCst) + 30_000)
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_one_probe_among_many_waiters() {
    let b = breakers(tokio_clock());
    for _ in 0..5 {
        b.record(KEY, "p", fail(ErrorKind::RateLimit));
    }
    let start = tokio::time::Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..20 {
        let (b, tx) = (b.clone(), tx.clone());
        tokio::spawn(async move {
            let a = b.admit(KEY, "p").await;
            let _ = tx.send((tokio::time::Instant::now(), a));
        });
    }
    let (at, probe) = rx.recv().await.unwrap();
    assert!(probe.is_probe());
    assert_eq!(at - start, Duration::from_secs(30));
    assert_eq!(b.state(KEY).state, BreakerState::HalfOpen);
    assert!(b.is_open(KEY));
    // However long the probe takes, nobody else is let through.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(rx.try_recv().is_err());
    probe.record(&CallOutcome::Ok);
    for _ in 0..19 {
        let (_, a) = rx.recv().await.unwrap();
        assert!(!a.is_probe());
        a.record(&CallOutcome::Ok);
    }
    assert_eq!(b.state(KEY).state, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn try_admit_reports_a_long_block_instead_of_waiting() {
    let b = breakers(tokio_clock());
    // Closed: admitted at once.
    let a = b.try_admit(KEY, "p", Duration::ZERO).await.unwrap();
    a.record(&CallOutcome::Ok);
    for _ in 0..5 {
        b.record(KEY, "p", fail(ErrorKind::RateLimit));
    }
    // Open for 30 s: a caller allowed 10 s is told so at once, with
    // the end of the period, and nothing changes.
    let start = tokio::time::Instant::now();
    let blocked = b.try_admit(KEY, "p", Duration::from_secs(10)).await;
    assert_eq!(tokio::time::Instant::now(), start, "did not wait");
    let blocked = blocked.err().unwrap();
    assert_eq!(blocked.reason, BlockReason::BreakerOpen);
    assert_eq!(blocked.until_ms, Some(T0 + 30_000));
    assert_eq!(b.state(KEY).state, BreakerState::Open);
    // A caller allowed longer than the period waits and probes.
    let probe = b
        .try_admit(KEY, "p", Duration::from_secs(40))
        .await
        .unwrap();
    assert!(probe.is_probe());
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(30));
    // While the probe is out, others wait for it up to their limit...
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { b.try_admit(KEY, "p", Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished());
    // ... and are let through as soon as it succeeds.
    probe.record(&CallOutcome::Ok);
    let a = waiting.await.unwrap().unwrap();
    assert!(!a.is_probe());
    a.record(&CallOutcome::Ok);
    assert_eq!(b.state(KEY).state, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_probe_outlasting_the_wait_parks_the_others_and_402_says_so() {
    let b = breakers(tokio_clock());
    for _ in 0..5 {
        b.record(KEY, "p", fail(ErrorKind::RateLimit));
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    let probe = b.try_admit(KEY, "p", Duration::ZERO).await.unwrap();
    assert!(probe.is_probe());
    let start = tokio::time::Instant::now();
    let blocked = b
        .try_admit(KEY, "p", Duration::from_secs(2))
        .await
        .err()
        .unwrap();
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(2));
    assert_eq!(
        blocked,
        Blocked {
            reason: BlockReason::BreakerOpen,
            until_ms: None
        }
    );
    drop(probe);
    // Out of credits: the whole provider, reason payment_required.
    let other = "http://p/v1|other";
    b.record(other, "p", fail(ErrorKind::PaymentRequired));
    let blocked = b
        .try_admit("http://p/v1|third", "p", Duration::from_secs(1))
        .await
        .err()
        .unwrap();
    assert_eq!(blocked.reason, BlockReason::PaymentRequired);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_sends_waiters_back_to_wait_for_the_doubled_period() {
    let b = breakers(tokio_clock());
    b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
    let start = tokio::time::Instant::now();
    let probe = b.admit(KEY, "p").await;
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(30));
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let a = b.admit(KEY, "p").await;
            (tokio::time::Instant::now(), a.is_probe())
        })
    };
    tokio::task::yield_now().await;
    probe.record(&fail(ErrorKind::RateLimit));
    let (at, is_probe) = waiter.await.unwrap();
    assert!(is_probe, "the next caller after the doubled period probes");
    assert_eq!(at - start, Duration::from_secs(30 + 60));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_hands_the_probe_on() {
    let b = breakers(tokio_clock());
    b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
    let probe = b.admit(KEY, "p").await;
    assert!(probe.is_probe());
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.admit(KEY, "p").await })
    };
    tokio::task::yield_now().await;
    drop(probe);
    let handed = waiter.await.unwrap();
    assert!(handed.is_probe());
    assert_eq!(b.state(KEY).state, BreakerState::HalfOpen);
    // A caller cancelled while waiting leaves nothing behind.
    let r = tokio::time::timeout(Duration::from_secs(1), b.admit(KEY, "p")).await;
    assert!(r.is_err(), "the handed-on probe is still out");
    drop(handed);
    let start = tokio::time::Instant::now();
    assert!(b.admit(KEY, "p").await.is_probe());
    assert_eq!(tokio::time::Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn reset_lets_waiters_through_at_once() {
    let b = breakers(tokio_clock());
    b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
    let start = tokio::time::Instant::now();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.admit(KEY, "p").await.is_probe() })
    };
    tokio::task::yield_now().await;
    assert!(b.reset(KEY));
    assert!(!waiter.await.unwrap());
    assert_eq!(tokio::time::Instant::now(), start);
    assert!(!b.reset("unknown"));
}

#[tokio::test]
async fn outcomes_of_calls_admitted_before_opening_are_ignored() {
    let (_t, clock) = manual();
    let b = breakers(clock);
    let early = b.admit(KEY, "p").await;
    assert!(!early.is_probe());
    b.record(KEY, "p", fail(ErrorKind::PaymentRequired));
    early.record(&CallOutcome::Ok);
    assert!(b.is_open(KEY));
}

/// A manual clock starting at the wall clock (rows are read against it
/// when the breakers load).
fn manual_from_now() -> (Arc<AtomicI64>, Clock) {
    let t = Arc::new(AtomicI64::new(chrono::Utc::now().timestamp_millis()));
    (t.clone(), Arc::new(CounterClock(t)))
}

fn stored_pause(store: &Store, key: &str, now: i64) -> Option<i64> {
    store
        .model_pauses(now)
        .unwrap()
        .into_iter()
        .find(|r| r.model == key)
        .map(|r| r.paused_until_ms)
}

/// A success that says nothing remains (`X-RateLimit-Remaining: 0`
/// with a reset) is a pause every process must see, but not a breaker
/// signal: it is stored like a 429's Retry-After and opens nothing.
#[tokio::test]
async fn an_exhausted_success_is_persisted_as_a_pause_and_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("b.db"), &Default::default()).unwrap();
    let (t, clock) = manual_from_now();
    let t0 = t.load(Ordering::SeqCst);
    let a = Breakers::new(Some(store.clone()), BreakerSettings::default())
        .unwrap()
        .with_clock(clock)
        .with_pause_threshold(Duration::from_secs(2));
    for _ in 0..10 {
        a.record(KEY, "p", CallOutcome::Exhausted { retry_after: 30.0 });
    }
    a.flush().await;
    assert_eq!(stored_pause(&store, KEY, t0), Some(t0 + 30_000));
    assert!(!a.is_open(KEY));
    // A plain success carries no pause.
    a.record("p|other", "p", CallOutcome::Ok);
    a.flush().await;
    assert_eq!(stored_pause(&store, "p|other", t0), None);
}
#[tokio::test]
async fn a_provider_pause_is_persisted_rarely_and_holds_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let store = Store::open(&path, &Default::default()).unwrap();
    let (t, clock) = manual_from_now();
    let t0 = t.load(Ordering::SeqCst);
    let a = Breakers::new(Some(store.clone()), BreakerSettings::default())
        .unwrap()
        .with_clock(clock.clone())
        .with_pause_threshold(Duration::from_secs(2));
    // A Retry-After within the claim backlog is not written.
    a.record(
        KEY,
        "p",
        CallOutcome::failed(ErrorKind::RateLimit, Some(2.0)),
    );
    a.flush().await;
    assert_eq!(stored_pause(&store, KEY, t0), None);
    assert_eq!(a.paused_until(KEY), Some(t0 + 2000), "but held here");
    // 60 s is.
    a.record(
        KEY,
        "p",
        CallOutcome::failed(ErrorKind::RateLimit, Some(60.0)),
    );
    a.flush().await;
    assert_eq!(stored_pause(&store, KEY, t0), Some(t0 + 60_000));
    // The same pause repeated half a second later moves the end by
    // less than a second: not written again.
    t.fetch_add(500, Ordering::SeqCst);
    a.record(
        KEY,
        "p",
        CallOutcome::failed(ErrorKind::RateLimit, Some(60.0)),
    );
    a.flush().await;
    assert_eq!(stored_pause(&store, KEY, t0), Some(t0 + 60_000));
    assert_eq!(a.paused_until(KEY), Some(t0 + 60_500));
    // Two seconds later it is.
    t.fetch_add(1_500, Ordering::SeqCst);
    a.record(
        KEY,
        "p",
        CallOutcome::failed(ErrorKind::RateLimit, Some(60.0)),
    );
    a.flush().await;
    assert_eq!(stored_pause(&store, KEY, t0), Some(t0 + 62_000));
    // A shorter one does not shorten anything; a provider's absurd wait
    // is capped as the limiter caps it.
    a.record(
        KEY,
        "p",
        CallOutcome::failed(ErrorKind::RateLimit, Some(5.0)),
    );
    assert_eq!(a.paused_until(KEY), Some(t0 + 62_000));
    a.record(
        "u|other",
        "p",
        CallOutcome::failed(ErrorKind::RateLimit, Some(1e30)),
    );
    let now = t.load(Ordering::SeqCst);
    a.flush().await;
    assert_eq!(
        stored_pause(&store, "u|other", now),
        Some(now + (MAX_RETRY_AFTER_SECS as i64) * 1000)
    );
    // The fifth 429 also opened the breaker (for its own 5 s): the
    // pause, longer, is what holds the model.
    assert_eq!(a.state(KEY).state, BreakerState::Open);

    // Another process on the same database knows the pause at once and
    // neither probes nor calls: a caller allowed 10 s parks.
    let b = Breakers::new(
        Some(Store::open(&path, &Default::default()).unwrap()),
        BreakerSettings::default(),
    )
    .unwrap()
    .with_clock(clock.clone());
    assert_eq!(b.paused_until(KEY), Some(t0 + 62_000));
    let blocked = b
        .try_admit(KEY, "p", Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert_eq!(
        blocked,
        Blocked {
            reason: BlockReason::RateLimited,
            until_ms: Some(t0 + 62_000)
        }
    );
    // A pause written after it loaded is seen on the next refresh (at
    // most a second later).
    b.refresh_pauses().await;
    a.record(
        "u|late",
        "p",
        CallOutcome::failed(ErrorKind::RateLimit, Some(30.0)),
    );
    a.flush().await;
    b.refresh_pauses().await;
    assert_eq!(b.paused_until("u|late"), None, "throttled");
    t.fetch_add(1_000, Ordering::SeqCst);
    b.refresh_pauses().await;
    assert_eq!(b.paused_until("u|late"), Some(now + 30_000));
    // Once the pause is over, it means nothing.
    t.store(t0 + 62_000, Ordering::SeqCst);
    assert_eq!(b.paused_until(KEY), None);
    let probe = b
        .try_admit(KEY, "p", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(probe.is_probe(), "the breaker, long due, probes");
    probe.record(&CallOutcome::Ok);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_caller_sits_out_a_pause_it_may_wait_for() {
    let b = breakers(tokio_clock());
    let start = tokio::time::Instant::now();
    b.record(
        KEY,
        "p",
        CallOutcome::failed(ErrorKind::RateLimit, Some(3.0)),
    );
    let a = b
        .try_admit(KEY, "p", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(3));
    a.record(&CallOutcome::Ok);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let store = Store::open(&path, &Default::default()).unwrap();
    let (t, clock) = manual();
    let b = Breakers::new(Some(store.clone()), BreakerSettings::default())
        .unwrap()
        .with_clock(clock.clone());
    b.record("a|1", "acme", CallOutcome::Ok);
    b.record(
        "o|2",
        "other",
        CallOutcome::failed(ErrorKind::PaymentRequired, Some(3600.0)),
    );
    for _ in 0..5 {
        b.record("a|1", "acme", fail(ErrorKind::RateLimit));
    }
    // Second opening of a|1 (doubling count 2) left half-open by a
    // process that dies mid-probe.
    t.store(b.state("a|1").open_until_ms.unwrap(), Ordering::SeqCst);
    b.admit("a|1", "acme")
        .await
        .record(&fail(ErrorKind::ServerError));
    t.store(b.state("a|1").open_until_ms.unwrap(), Ordering::SeqCst);
    let probe = b.admit("a|1", "acme").await;
    assert_eq!(b.state("a|1").state, BreakerState::HalfOpen);
    let before = b.all();
    std::mem::forget(probe);
    b.flush().await;
    drop(b);

    let store2 = Store::open(&path, &Default::default()).unwrap();
    let b2 = Breakers::new(Some(store2), BreakerSettings::default())
        .unwrap()
        .with_clock(clock);
    let after = b2.all();
    assert_eq!(after.len(), 2);
    let a1 = &after[0].1;
    assert_eq!(after[0].0, "a|1");
    assert_eq!(a1.state, BreakerState::Open, "half-open comes back open");
    assert_eq!(a1.open_count, 2);
    assert_eq!(a1.open_until_ms, before[0].1.open_until_ms);
    assert_eq!(a1.reason.as_deref(), Some("server_error"));
    assert!(!b2.is_open("a|1"), "and due for a probe");
    assert_eq!(after[1].1, before[1].1);
    assert!(b2.is_open("o|2"));
    // The next probe after the restart doubles on from the stored count.
    let p = b2.admit("a|1", "acme").await;
    p.record(&fail(ErrorKind::ServerError));
    assert_eq!(
        b2.state("a|1").open_until_ms,
        Some(t.load(Ordering::SeqCst) + 120_000)
    );
    // Closing is persisted too.
    b2.reset("o|2");
    b2.flush().await;
    let b3 = Breakers::new(Some(store), BreakerSettings::default()).unwrap();
    assert_eq!(b3.state("o|2").state, BreakerState::Closed);
}

/// With a store, the breakers take time from the store's clock, and the
/// async paths (admission, completing a permit) have written the table by
/// the time they return: another runner on the database sees each state.
#[tokio::test]
async fn state_changes_are_written_before_the_async_paths_return() {
    use crate::llm::gate::CallGate;
    use crate::store::{ManualClock, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let clock = ManualClock::at(T0);
    let opts = StoreOptions {
        clock: Arc::new(clock.clone()),
        ..Default::default()
    };
    let store = Store::open(&path, &opts).unwrap();
    let b = Breakers::new(Some(store.clone()), BreakerSettings::default()).unwrap();
    let permit = b.before_call(KEY, "p").await;
    permit.complete(&fail(ErrorKind::PaymentRequired)).await;
    let row = |s: &Store| s.breakers().unwrap().into_iter().next().unwrap();
    let r = row(&store);
    assert_eq!(
        (
            r.model.as_str(),
            r.state.as_str(),
            r.open_until_ms,
            r.open_count
        ),
        (KEY, "open", Some(T0 + 30_000), 1)
    );
    assert_eq!(r.reason.as_deref(), Some("payment_required"));

    // Another runner (same clock) loads it open, and due when the clock
    // says so.
    let b2 = Breakers::new(
        Some(Store::open(&path, &opts).unwrap()),
        BreakerSettings::default(),
    )
    .unwrap();
    assert!(b2.is_open(KEY));
    assert_eq!(b2.blocked_providers(), vec!["p".to_string()]);
    clock.advance(Duration::from_secs(30));
    assert!(!b2.is_open(KEY), "due for a probe");
    let probe = b2.before_call(KEY, "p").await;
    assert_eq!(row(&store).state, "half_open");
    probe.complete(&CallOutcome::Ok).await;
    let r = row(&store);
    assert_eq!((r.state.as_str(), r.open_until_ms), ("closed", None));
    // The first runner's later flush has nothing left to write.
    b.flush().await;
    assert_eq!(row(&store).state, "closed");
}

/// A breaker one runner opens stops the other runners on the database at
/// their next refresh (several hosts on PostgreSQL, or two daemons on one
/// SQLite file): they adopt the open state and its deadline, never a
/// shorter one, and close by their own probe afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_by_another_runner_is_adopted_on_refresh() {
    use crate::llm::gate::CallGate;
    use crate::store::{ManualClock, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = crate::store::pg::test_db(dir.path(), "shared.db");
    let clock = ManualClock::at(T0);
    let opts = StoreOptions {
        clock: Arc::new(clock.clone()),
        ..Default::default()
    };
    let store = Store::open(&path, &opts).unwrap();
    let a = Breakers::new(Some(store.clone()), BreakerSettings::default()).unwrap();
    let b = Breakers::new(Some(store.clone()), BreakerSettings::default()).unwrap();
    assert_eq!(b.state(KEY).state, BreakerState::Closed);
    let permit = a.before_call(KEY, "p").await;
    permit.complete(&fail(ErrorKind::PaymentRequired)).await;
    assert_eq!(a.state(KEY).state, BreakerState::Open);
    // Refreshes are throttled to one a second.
    clock.advance(Duration::from_secs(1));
    b.refresh_pauses().await;
    let seen = b.state(KEY);
    assert_eq!(seen.state, BreakerState::Open, "not adopted");
    assert_eq!(seen.open_until_ms, Some(T0 + 30_000));
    assert!(b.try_admit(KEY, "p", Duration::from_secs(1)).await.is_err());
    // Past the deadline the row means nothing more; b probes by itself.
    clock.advance(Duration::from_secs(30));
    let probe = b.try_admit(KEY, "p", Duration::from_secs(1)).await.unwrap();
    assert!(probe.is_probe());
}
