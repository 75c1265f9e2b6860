//! Queue tests. Time is a [`ManualClock`]: leases expire, the reaper frees
//! work and retries fall due because the test moves the clock, not because
//! it sleeps.

use super::*;
use crate::store::{ManualClock, StoreOptions};
use serde_json::json;
use std::sync::Arc;

const T0: i64 = 1_700_000_000_000;

fn store() -> (tempfile::TempDir, Store, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0);
    let s = Store::open(
        &crate::store::pg::test_db(dir.path(), "q.db"),
        &StoreOptions {
            clock: Arc::new(clock.clone()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    (dir, s, clock)
}

fn add(s: &Store, id: &str, prio: i64) {
    s.add_paper(&NewPaper {
        arxiv_id: id.into(),
        priority: prio,
        source: "test".into(),
        ..NewPaper::default()
    })
    .unwrap();
}

fn req<'a>(owner: &'a str, phases: &'a [Phase]) -> ClaimRequest<'a> {
    ClaimRequest {
        owner,
        ttl: Duration::from_secs(60),
        phases,
        resumable_only: false,
    }
}

const POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 2,
    base: Duration::from_secs(10),
    max: Duration::from_secs(100),
};

#[test]
fn an_absurd_ttl_cannot_wrap_the_claim_into_the_past() {
    // 9.3e15 s once became a negative lease_until, and any other
    // daemon's reaper rolled the live claim back.
    let (_d, s, clock) = store();
    add(&s, "a", 0);
    for ttl in [Duration::from_secs(9_300_000_000_000_000), Duration::MAX] {
        let c = s
            .claim(&ClaimRequest {
                ttl,
                ..req("first:1:0", &[Phase::Prep])
            })
            .unwrap()
            .unwrap();
        assert_eq!(c.ttl_ms, 86_400_000, "cut to MAX_LEASE_TTL");
        let until = s.paper("a").unwrap().unwrap().lease_until_ms.unwrap();
        assert_eq!(until, T0 + 86_400_000, "lease_until {until}");
        // Another daemon's reaper leaves the live claim alone.
        assert!(s.reap(&POLICY, |_| false).unwrap().is_empty());
        s.renew_claim(&c).unwrap();
        assert!(s.paper("a").unwrap().unwrap().lease_until_ms.unwrap() > T0);
        s.release_claim(&c, "test").unwrap();
    }
    // An absurd "now" saturates instead of overflowing.
    clock.set(i64::MAX - 5);
    let c = s
        .claim(&ClaimRequest {
            ttl: Duration::MAX,
            ..req("first:1:0", &[Phase::Prep])
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        s.paper("a").unwrap().unwrap().lease_until_ms,
        Some(i64::MAX)
    );
    s.release_claim(&c, "test").unwrap();
    clock.set(T0);
    let c = s
        .claim_paper("a", "first:1:0", Duration::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(c.ttl_ms, 86_400_000);
}

#[test]
fn retry_delays_saturate() {
    let p = RetryPolicy {
        max_attempts: 3,
        base: Duration::MAX,
        max: Duration::MAX,
    };
    assert_eq!(p.delay_ms(u32::MAX), i64::MAX);
    assert_eq!(p.reap_delay_ms(2), i64::MAX);
    assert_eq!(T0.saturating_add(p.delay_ms(5)), i64::MAX);
}

#[test]
fn adding_twice_is_a_noop() {
    let (_d, s, _) = store();
    add(&s, "2401.00001", 0);
    let again = s
        .add_paper(&NewPaper {
            arxiv_id: "2401.00001".into(),
            ..NewPaper::default()
        })
        .unwrap();
    assert!(matches!(again, AddOutcome::Exists { ref status, .. } if status == "pending"));
    assert_eq!(s.papers(&[]).unwrap().len(), 1);
}

#[test]
fn claims_follow_phase_order_then_priority() {
    let (_d, s, _) = store();
    add(&s, "a", 0);
    add(&s, "b", 5);
    let all = [Phase::Expensive, Phase::Wrap, Phase::Prep];
    let c = s.claim(&req("o", &all)).unwrap().unwrap();
    assert_eq!(
        (c.arxiv_id.as_str(), c.phase, c.attempt),
        ("b", Phase::Prep, 1)
    );
    s.finish_phase(&c, &json!({"paper_text": "x".repeat(10_000)}), None, 1)
        .unwrap();
    // b is now prepped: expensive beats a's prep.
    let c2 = s.claim(&req("o", &all)).unwrap().unwrap();
    assert_eq!((c2.arxiv_id.as_str(), c2.phase), ("b", Phase::Expensive));
    let c3 = s.claim(&req("o", &all)).unwrap().unwrap();
    assert_eq!((c3.arxiv_id.as_str(), c3.phase), ("a", Phase::Prep));
    assert!(s.claim(&req("o", &all)).unwrap().is_none());
    let results = s.phase_results(&c.id).unwrap();
    assert_eq!(
        results["prep"]["paper_text"].as_str().unwrap().len(),
        10_000
    );
}

#[test]
fn a_stale_claim_cannot_write_after_reap_and_reclaim() {
    let (_d, s, clock) = store();
    add(&s, "a", 0);
    let old = s.claim(&req("old", &[Phase::Prep])).unwrap().unwrap();
    // Its claim expires; the reaper rolls it back; someone else claims.
    clock.advance(Duration::from_secs(120));
    let reaped = s.reap(&POLICY, |_| false).unwrap();
    assert_eq!(reaped.len(), 1);
    let new = s.claim(&req("new", &[Phase::Prep])).unwrap().unwrap();
    assert_eq!(new.attempt, 2);
    assert!(new.token > old.token);
    let err = s.finish_phase(&old, &json!({}), None, 1).unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseLost { ref owner, .. } if owner == "new"),
        "{err}"
    );
    s.finish_phase(&new, &json!({}), None, 1).unwrap();
    assert_eq!(s.paper("a").unwrap().unwrap().status, PaperStatus::Prepped);
}

#[test]
fn a_live_claim_is_never_reaped_and_attempts_run_out() {
    let (_d, s, clock) = store();
    add(&s, "a", 0);
    let c = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
    assert!(s.reap(&POLICY, |_| false).unwrap().is_empty());
    let out = s
        .fail_phase(&c, "timeout", "slow", true, &POLICY, 5)
        .unwrap();
    let FailOutcome::RetryLater { not_before_ms } = out else {
        panic!("{out:?}")
    };
    assert_eq!(not_before_ms, T0 + 10_000, "base delay after attempt 1");
    // Not claimable before not_before.
    assert!(s.claim(&req("o", &[Phase::Prep])).unwrap().is_none());
    clock.set(not_before_ms + 1);
    let c2 = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
    assert_eq!(c2.attempt, 2);
    let out = s
        .fail_phase(&c2, "timeout", "slow", true, &POLICY, 5)
        .unwrap();
    assert_eq!(out, FailOutcome::Failed);
    let row = s.paper("a").unwrap().unwrap();
    assert_eq!(row.status, PaperStatus::Failed);
    assert_eq!(row.last_error_kind.as_deref(), Some("timeout"));
    // retry puts it back with fresh attempts.
    let changed = s.retry_papers(&[], None).unwrap();
    assert_eq!(
        changed,
        vec![(row.id.clone(), PaperStatus::Failed, PaperStatus::Pending)]
    );
    assert_eq!(s.paper("a").unwrap().unwrap().attempts_prep, 0);
}

#[test]
fn released_claims_resume_first_without_counting_an_attempt() {
    let (_d, s, _) = store();
    add(&s, "a", 0);
    add(&s, "b", 9);
    let c = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
    assert_eq!(c.arxiv_id, "b");
    s.set_phase_execution(&c, "paper:b/prep/1").unwrap();
    s.release_claim(&c, "draining").unwrap();
    add(&s, "c", 100);
    let again = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
    assert_eq!(again.arxiv_id, "b", "resumable work first");
    assert_eq!(again.attempt, 1);
    assert_eq!(again.phase_execution.as_deref(), Some("paper:b/prep/1"));
}

#[test]
fn cancelled_papers_are_not_claimed() {
    let (_d, s, _) = store();
    add(&s, "a", 0);
    s.cancel_papers(&["a".into()]).unwrap();
    assert!(s.claim(&req("o", &[Phase::Prep])).unwrap().is_none());
    assert!(s.cancel_requested("paper:a").unwrap());
    s.retry_papers(&["a".into()], None).unwrap();
    assert!(s.claim(&req("o", &[Phase::Prep])).unwrap().is_some());
}

/// The reaper frees a claim whose owner stopped renewing exactly when its
/// TTL has passed by the store's clock — not a millisecond before — and
/// the freed work is claimable again at once (first reap: no delay).
#[test]
fn the_reaper_frees_a_dead_claim_after_its_ttl() {
    let (_d, s, clock) = store();
    add(&s, "a", 0);
    let dead = s.claim(&req("dead:1:0", &[Phase::Prep])).unwrap().unwrap();
    clock.advance(Duration::from_secs(59));
    s.renew_claim(&dead).unwrap();
    // Renewed at T0+59 s: live until T0+119 s.
    clock.set(T0 + 119_000);
    assert!(
        s.reap(&POLICY, |_| false).unwrap().is_empty(),
        "at the deadline"
    );
    assert!(s.claim(&req("other", &[Phase::Prep])).unwrap().is_none());
    clock.advance(Duration::from_millis(1));
    let reaped = s.reap(&POLICY, |_| false).unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].owner.as_deref(), Some("dead:1:0"));
    assert_eq!(
        reaped[0].outcome,
        FailOutcome::RetryLater {
            not_before_ms: T0 + 119_001
        }
    );
    assert_eq!(s.paper("a").unwrap().unwrap().status, PaperStatus::Pending);
    let c = s.claim(&req("other", &[Phase::Prep])).unwrap().unwrap();
    assert_eq!((c.owner.as_str(), c.attempt), ("other", 2));
    assert!(matches!(
        s.renew_claim(&dead),
        Err(StoreError::LeaseLost { .. })
    ));
}

/// A failed, retryable phase is claimable only once its backoff has passed
/// by the store's clock; a later failure waits twice as long.
#[test]
fn a_retry_becomes_claimable_only_after_its_backoff() {
    let (_d, s, clock) = store();
    add(&s, "a", 0);
    let policy = RetryPolicy {
        max_attempts: 5,
        ..POLICY
    };
    let c = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
    s.fail_phase(&c, "timeout", "slow", true, &policy, 1)
        .unwrap();
    let ready = |s: &Store| s.claimable_counts().unwrap()[0];
    assert_eq!(ready(&s), (Phase::Prep, 0));
    clock.advance(Duration::from_millis(9_999));
    assert!(s.claim(&req("o", &[Phase::Prep])).unwrap().is_none());
    clock.advance(Duration::from_millis(1));
    assert_eq!(ready(&s), (Phase::Prep, 1));
    let c = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
    assert_eq!(c.attempt, 2);
    let out = s
        .fail_phase(&c, "timeout", "slow", true, &policy, 1)
        .unwrap();
    let due = T0 + 10_000 + 20_000;
    assert_eq!(out, FailOutcome::RetryLater { not_before_ms: due });
    clock.set(due - 1);
    assert!(s.claim(&req("o", &[Phase::Prep])).unwrap().is_none());
    clock.set(due);
    assert_eq!(
        s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap().attempt,
        3
    );
}

/// A status this build does not know (written by a newer runner or by
/// hand) is a store error naming it, not a panic or a silent default.
#[test]
fn an_unknown_status_in_the_database_is_a_clear_error() {
    let (_d, s, _) = store();
    add(&s, "a", 0);
    let mut guard = s.conn().unwrap();
    let db = guard.db();
    let Some(conn) = db.sqlite() else {
        return; // needs SQLite's ignore_check_constraints
    };
    // The CHECK constraint would refuse the value; a newer schema might not.
    conn.execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    conn.execute("UPDATE executions SET status = 'archived'", [])
        .unwrap();
    conn.execute_batch("PRAGMA ignore_check_constraints = OFF")
        .unwrap();
    let err = s.paper("a").unwrap_err();
    assert!(matches!(err, StoreError::Sqlite { .. }), "{err:?}");
    assert!(err.to_string().contains("\"archived\""), "{err}");
    assert!(s.status_counts().is_err());
}

/// A phase parked on `wait_for` gives its claim back without counting the
/// attempt, is not claimable before the wait's deadline, and resumes its
/// own execution after it. (Its SQL once used SQLite's two-argument MAX,
/// which PostgreSQL rejects.)
#[test]
fn a_parked_wait_is_claimable_only_after_its_deadline() {
    let (_d, s, clock) = store();
    add(&s, "a", 0);
    let c = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
    s.set_phase_execution(&c, "paper:a/prep/1").unwrap();
    s.release_waiting(&c, T0 + 5_000, "waiting for approval")
        .unwrap();
    let p = s.paper("a").unwrap().unwrap();
    assert_eq!(p.status, PaperStatus::Pending);
    assert_eq!(p.attempts_prep, 0, "a wait is not an attempt");
    assert!(s.claim(&req("o", &[Phase::Prep])).unwrap().is_none());
    assert!(matches!(
        s.renew_claim(&c),
        Err(StoreError::LeaseLost { .. })
    ));
    clock.set(T0 + 5_000);
    let again = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
    assert_eq!(again.attempt, 1);
    assert_eq!(again.phase_execution.as_deref(), Some("paper:a/prep/1"));
}

/// Re-queue runs a paper again from the start: attempts and results go,
/// the paper is pending; a paper in flight is refused and nothing changes.
#[test]
fn requeue_starts_over_and_refuses_work_in_flight() {
    let (_d, s, _) = store();
    add(&s, "a", 0);
    add(&s, "b", 0);
    let c = s.claim(&req("o", &[Phase::Prep])).unwrap().unwrap();
    let err = s
        .requeue_papers(std::slice::from_ref(&c.arxiv_id))
        .unwrap_err();
    assert!(err.to_string().contains("cancel it first"), "{err}");
    s.finish_phase(&c, &json!({"ok": true}), None, 5).unwrap();
    assert_eq!(
        s.paper(&c.arxiv_id).unwrap().unwrap().status,
        PaperStatus::Prepped
    );
    let out = s.requeue_papers(std::slice::from_ref(&c.arxiv_id)).unwrap();
    assert_eq!(out, vec![(c.id.clone(), PaperStatus::Prepped)]);
    let p = s.paper(&c.arxiv_id).unwrap().unwrap();
    assert_eq!((p.status, p.attempts_prep), (PaperStatus::Pending, 0));
    assert!(s.phase_results(&c.id).unwrap().is_empty());
    assert!(matches!(
        s.requeue_papers(&["nope".into()]),
        Err(StoreError::NotFound(_))
    ));
}
