//! Dashboard read models on a real store (SQLite, or PostgreSQL under
//! `PAPER_RUNNER_TEST_BACKEND=postgres`). Time is a [`ManualClock`], so
//! every row has its own `updated_at` and pages have a defined order.

use super::*;
use crate::store::{ClaimRequest, ManualClock, NewPaper, Phase, RetryPolicy, StoreOptions};
use std::sync::Arc;
use std::time::Duration;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn store() -> (tempfile::TempDir, Store, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0);
    let s = Store::open(
        &crate::store::pg::test_db(dir.path(), "dash.db"),
        &StoreOptions {
            clock: Arc::new(clock.clone()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    (dir, s, clock)
}

fn add(s: &Store, clock: &ManualClock, id: &str, title: &str) {
    clock.advance(Duration::from_millis(10));
    s.add_paper(&NewPaper {
        arxiv_id: id.into(),
        title: Some(title.into()),
        source: "test".into(),
        ..NewPaper::default()
    })
    .unwrap();
}

/// Claim the next prep phase and fail it for good with `kind`.
fn fail_next(s: &Store, clock: &ManualClock, kind: &str) -> String {
    clock.advance(Duration::from_millis(10));
    let c = s
        .claim(&ClaimRequest {
            owner: "o",
            ttl: Duration::from_secs(60),
            phases: &[Phase::Prep],
            resumable_only: false,
        })
        .unwrap()
        .unwrap();
    let policy = RetryPolicy {
        max_attempts: 1,
        base: Duration::from_secs(1),
        max: Duration::from_secs(1),
    };
    s.fail_phase(&c, kind, "it broke", false, &policy, 1)
        .unwrap();
    c.arxiv_id
}

fn all_pages(s: &Store, mut f: QueueFilter) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let page = s.queue_page(&f).unwrap();
        assert!(page.rows.len() <= f.limit);
        seen.extend(page.rows.iter().map(|r| r.arxiv_id.clone()));
        match page.next {
            Some(c) => f.after = Some(c),
            None => return seen,
        }
    }
}

#[test]
fn keyset_pages_cover_the_queue_once_newest_first() {
    let (_d, s, clock) = store();
    for i in 0..23 {
        add(
            &s,
            &clock,
            &format!("2501.{i:05}"),
            &format!("Paper number {i}"),
        );
    }
    let seen = all_pages(
        &s,
        QueueFilter {
            limit: 5,
            ..QueueFilter::default()
        },
    );
    let want: Vec<String> = (0..23).rev().map(|i| format!("2501.{i:05}")).collect();
    assert_eq!(seen, want);
    // A page size that divides the queue ends without an empty page.
    let page = s
        .queue_page(&QueueFilter {
            limit: 23,
            ..QueueFilter::default()
        })
        .unwrap();
    assert_eq!((page.rows.len(), page.next), (23, None));
}

#[test]
fn several_statuses_merge_into_one_order_and_error_kinds_filter_failures() {
    let (_d, s, clock) = store();
    for i in 0..9 {
        add(&s, &clock, &format!("2502.{i:05}"), "A title");
    }
    // Claims take the oldest first: 00000..00002 fail (two kinds), the
    // rest stay pending.
    let f1 = fail_next(&s, &clock, "timeout");
    let f2 = fail_next(&s, &clock, "bad_pdf");
    let f3 = fail_next(&s, &clock, "timeout");
    let both = all_pages(
        &s,
        QueueFilter {
            statuses: vec![PaperStatus::Failed, PaperStatus::Pending],
            limit: 2,
            ..QueueFilter::default()
        },
    );
    assert_eq!(both.len(), 9);
    assert_eq!(&both[..3], &[f3.clone(), f2.clone(), f1.clone()]);
    let timeouts = all_pages(
        &s,
        QueueFilter {
            error_kind: Some("timeout".into()),
            limit: 1,
            ..QueueFilter::default()
        },
    );
    assert_eq!(timeouts, vec![f3, f1]);
    let kinds = s.failed_kinds().unwrap();
    assert_eq!(
        kinds,
        vec![(Some("timeout".into()), 2), (Some("bad_pdf".into()), 1)]
    );
}

#[test]
fn search_matches_title_word_prefixes_or_an_exact_id_and_ignores_syntax() {
    let (_d, s, clock) = store();
    add(
        &s,
        &clock,
        "2503.00001",
        "Sparse Transformers for Protein Folding",
    );
    add(&s, &clock, "2503.00002", "Dense retrieval, revisited");
    add(&s, &clock, "2503.00003", "Protein language models");
    let find = |q: &str| {
        let mut v = all_pages(
            &s,
            QueueFilter {
                search: Some(q.into()),
                limit: 10,
                ..QueueFilter::default()
            },
        );
        v.sort();
        v
    };
    assert_eq!(find("protein"), vec!["2503.00001", "2503.00003"]);
    assert_eq!(find("Prot fold"), vec!["2503.00001"]);
    assert_eq!(find("2503.00002"), vec!["2503.00002"]);
    assert!(find("nothing-like-it").is_empty());
    // Query-language characters are separators, never syntax.
    for q in [
        "\"",
        "*",
        "prot\" OR \"dense",
        "a:* | b",
        "'; DROP TABLE executions; --",
        "NEAR(x y)",
    ] {
        let _ = find(q);
    }
    assert_eq!(find("\"dense\"*"), vec!["2503.00002"]);
    // A title changed later is found by its new words.
    s.run_sync_test_title("paper:2503.00002", "Graph neural networks");
    assert_eq!(find("graph"), vec!["2503.00002"]);
    assert!(find("dense").is_empty());
}

#[test]
fn series_bucket_by_ten_minutes() {
    let (_d, s, _clock) = store();
    let rows = [
        (
            "2026-01-01T10:01:00.000000Z",
            "ok",
            Some(200),
            Some(120),
            "m1",
        ),
        (
            "2026-01-01T10:09:59.000000Z",
            "error",
            Some(429),
            None,
            "m1",
        ),
        (
            "2026-01-01T10:10:00.000000Z",
            "error",
            Some(500),
            None,
            "m2",
        ),
        (
            "2026-01-01T10:15:00.000000Z",
            "ok",
            Some(200),
            Some(9_000),
            "m2",
        ),
        (
            "2026-01-01T10:16:00.000000Z",
            "ok",
            Some(200),
            Some(90_000),
            "m2",
        ),
        (
            "2025-12-31T10:16:00.000000Z",
            "ok",
            Some(200),
            Some(50),
            "m2",
        ),
    ];
    for (at, status, http, latency, model) in rows {
        s.insert_test_call(at, status, http, latency, model);
    }
    let (calls, models) = s.call_series("2026-01-01T00:00:00.000000Z").unwrap();
    assert_eq!(
        calls,
        vec![
            CallBucket {
                bucket: "2026-01-01T10:0".into(),
                calls: 2,
                rate_limited: 1,
                errors: 0
            },
            CallBucket {
                bucket: "2026-01-01T10:1".into(),
                calls: 3,
                rate_limited: 0,
                errors: 1
            },
        ]
    );
    assert_eq!(models, vec!["m1".to_string(), "m2".to_string()]);
    // Newest first, answered calls of the model only, within the window.
    let since = "2026-01-01T00:00:00.000000Z";
    assert_eq!(
        s.latency_sample(since, "m2", 10).unwrap(),
        vec![90_000, 9_000]
    );
    assert_eq!(s.latency_sample(since, "m2", 1).unwrap(), vec![90_000]);
    assert_eq!(s.latency_sample(since, "m1", 10).unwrap(), vec![120]);
}

/// On SQLite the queue pages walk an index in order: no table scan and no
/// sort step, whatever the filter.
#[test]
fn queue_pages_walk_an_index_without_sorting() {
    let (_d, s, _) = store();
    let mut guard = s.conn().unwrap();
    let conn = guard.db();
    let Some(c) = conn.sqlite() else {
        return; // PostgreSQL plans its own
    };
    for (sql, want) in [
        (
            format!("SELECT {PAPER_COLUMNS} FROM executions WHERE (updated_at < 'x' OR (updated_at = 'x' AND id < 'y')) ORDER BY updated_at DESC, id DESC LIMIT 51"),
            "executions_recent",
        ),
        (
            format!("SELECT {PAPER_COLUMNS} FROM executions WHERE status = 'done' ORDER BY updated_at DESC, id DESC LIMIT 51"),
            "executions_status_recent",
        ),
        (
            format!("SELECT {PAPER_COLUMNS} FROM executions WHERE status = 'failed' AND last_error_kind = 'x' ORDER BY updated_at DESC, id DESC LIMIT 51"),
            "executions_failed_kind",
        ),
    ] {
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>("detail"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains(want)), "{sql}: {plan:?}");
        assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{sql}: {plan:?}");
    }
}

/// The forecast's batched spend look-up agrees with one look-up per
/// prefix, across statement chunks, for prefixes with and without calls,
/// and never counts a sibling whose id merely starts the same way.
#[test]
fn spend_under_each_matches_spend_under_across_chunks() {
    let (_d, s, _) = store();
    let mut prefixes = Vec::new();
    for i in 0..230 {
        let paper = format!("paper:2504.{i:05}");
        if i % 3 != 0 {
            for (n, profile) in [(1, "cheap"), (2, "cheap"), (3, "expensive")] {
                s.insert_spend_row(
                    &format!("{paper}/prep/1/step{n}"),
                    profile,
                    0.5 * n as f64,
                    100 * n,
                );
            }
        }
        // A sibling paper id that extends this one: not under its prefix.
        s.insert_spend_row(&format!("{paper}1/prep/1"), "cheap", 9.0, 9);
        prefixes.push(format!("{paper}/prep"));
    }
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let batched = s.spend_under_each(&refs).unwrap();
    assert_eq!(batched.len(), prefixes.len());
    for (p, got) in prefixes.iter().zip(&batched) {
        let mut want = s.spend_under(p).unwrap();
        want.sort_by(|a, b| a.profile.cmp(&b.profile));
        assert_eq!(got, &want, "{p}");
    }
    assert!(batched[0].is_empty());
    assert_eq!(batched[1].len(), 2);
    assert_eq!(batched[1][0].requests, 2);
    assert_eq!(batched[1][1].tokens, 300);
}

impl Store {
    fn insert_spend_row(&self, execution_id: &str, profile: &str, cost: f64, tokens: i64) {
        self.write("test spend row", |tx| {
            tx.exec(
                "INSERT INTO llm_calls (execution_id, machine, state, step, attempt, agent, provider,
                     model, profile, request_hash, status, total_tokens, cost, cost_source, reserved_at)
                 VALUES (?1, 'm', 's', 1, 1, 'a', 'p', 'model', ?2, 'h', 'ok', ?3, ?4, 'provider',
                     '2026-01-01T00:00:00.000000Z')",
                params![execution_id, profile, tokens, cost],
            )
            .map_err(|e| self.err("test", e))?;
            Ok(())
        })
        .unwrap();
    }

    fn insert_test_call(
        &self,
        at: &str,
        status: &str,
        http: Option<i64>,
        latency: Option<i64>,
        model: &str,
    ) {
        self.write("test call", |tx| {
            tx.exec(
                "INSERT INTO llm_calls (execution_id, machine, state, step, attempt, agent, provider,
                     model, request_hash, status, http_status, latency_ms, reserved_at)
                 VALUES ('paper:x/prep/1', 'm', 's', 1, 1, 'a', 'p', ?1, 'h', ?2, ?3, ?4, ?5)",
                params![model, status, http, latency, at],
            )
            .map_err(|e| self.err("test", e))?;
            Ok(())
        })
        .unwrap();
    }

    fn run_sync_test_title(&self, id: &str, title: &str) {
        self.write("test title", |tx| {
            tx.exec(
                "UPDATE executions SET title = ?2 WHERE id = ?1",
                params![id, title],
            )
            .map_err(|e| self.err("test", e))?;
            Ok(())
        })
        .unwrap();
    }
}
