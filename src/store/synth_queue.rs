//! A large synthetic queue for `runner bench dashboard` and the dashboard's
//! browser tests (feature `tooling`): papers, their phase events and LLM
//! ledger rows written straight into a fresh SQLite file, shaped like a
//! busy runner's history (see `bench::dashboard`). Here because every SQL
//! statement lives in the store.

use super::{Store, StoreOptions};
use rusqlite::params;
use std::path::Path;

fn ts(ms: i64) -> String {
    super::timestamp_text(ms.saturating_mul(1000))
}

const WORDS: [&str; 48] = [
    "sparse",
    "attention",
    "graph",
    "neural",
    "networks",
    "diffusion",
    "models",
    "protein",
    "folding",
    "retrieval",
    "augmented",
    "generation",
    "offline",
    "reinforcement",
    "learning",
    "bayesian",
    "inference",
    "causal",
    "discovery",
    "language",
    "vision",
    "transformers",
    "contrastive",
    "pretraining",
    "federated",
    "optimization",
    "robust",
    "adversarial",
    "quantum",
    "circuits",
    "molecular",
    "dynamics",
    "kernel",
    "methods",
    "scaling",
    "laws",
    "efficient",
    "finetuning",
    "low-rank",
    "adaptation",
    "planning",
    "world",
    "agents",
    "benchmark",
    "evaluation",
    "long-context",
    "memory",
    "compression",
];
/// Papers in a working status (three hosts of a dozen workers).
const MAX_IN_FLIGHT: usize = 36;
/// One generated timeline event: at, phase, kind, from, to, error kind,
/// message, duration.
type PhaseEvent<'a> = (
    String,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<String>,
    Option<i64>,
);
const KINDS: [&str; 4] = ["timeout", "bad_pdf", "invalid_output", "rate_limited"];
const MODELS: [(&str, f64, i64); 3] = [
    ("openai/gpt-4o-mini", 0.0004, 900),
    ("anthropic/claude-sonnet", 0.006, 4_000),
    ("google/gemini-flash", 0.0003, 700),
];

/// Fill a fresh SQLite database at `path` with `papers` papers and about
/// `calls` ledger rows ending at `now_ms`. Deterministic for a given size.
pub fn generate(path: &Path, papers: usize, calls: usize, now_ms: i64) -> Result<(), String> {
    // The schema: opening the store migrates the file.
    drop(Store::open(path, &StoreOptions::default()).map_err(|e| e.to_string())?);
    let mut conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
        .map_err(|e| e.to_string())?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let mut rng = fastrand::Rng::with_seed(17);
    let day = 86_400_000i64;
    let span = 30 * day;
    let calls_per_paper = calls.div_ceil(papers.max(1)).max(1);
    let mut calls_left = calls;
    let mut in_flight = 0usize;
    {
        let mut paper = tx
            .prepare(
                "INSERT INTO executions (id, arxiv_id, title, source, status, priority,
                    attempts_prep, attempts_expensive, attempts_wrap, last_error_kind,
                    last_error_message, owner_id, lease_until, report_path, created_at,
                    updated_at, phase_started_at, done_at)
                 VALUES (?1, ?2, ?3, 'bench', ?4, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?12, ?13, ?14, ?15)",
            )
            .map_err(|e| e.to_string())?;
        let mut event = tx
            .prepare(
                "INSERT INTO execution_events (execution_id, at, phase, kind, from_status,
                    to_status, attempt, owner_id, error_kind, message, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, 'bench:1:0', ?7, ?8, ?9)",
            )
            .map_err(|e| e.to_string())?;
        let mut call = tx
            .prepare(
                "INSERT INTO llm_calls (execution_id, machine, state, step, attempt, agent,
                    provider, model, profile, request_hash, status, http_status, error_kind,
                    prompt_tokens, completion_tokens, total_tokens, cost, latency_ms,
                    reserved_at, settled_at, cost_source, currency)
                 VALUES (?1, ?2, ?3, ?4, 1, 'agent', 'openrouter', ?5, ?15, 'h', ?6, ?7, ?8,
                    ?9, ?10, ?11, ?12, ?13, ?14, ?14, 'provider', 'USD')",
            )
            .map_err(|e| e.to_string())?;
        for i in 0..papers {
            // Older papers first; the last days are busier (a square-root
            // spread puts more papers near `now`).
            let f = ((i as f64 + 0.5) / papers as f64).sqrt();
            let created = now_ms - span + (f * span as f64) as i64 - rng.i64(0..600_000);
            let arxiv = format!(
                "{:02}{:02}.{:05}",
                24 + i / 1_200_000,
                1 + (i / 100_000) % 12,
                i % 100_000
            );
            let id = format!("paper:{arxiv}");
            let title: Vec<&str> = (0..rng.usize(5..11))
                .map(|_| WORDS[rng.usize(0..WORDS.len())])
                .collect();
            let mut title = title.join(" ");
            if let Some(c) = title.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            let roll = rng.u32(0..1000);
            let recent = now_ms - created < day;
            let (status, phases_done) = match roll {
                _ if recent && roll < 300 => ("pending", 0),
                _ if recent && roll < 330 => ("prepping", 0),
                _ if recent && roll < 360 => ("analyzing", 1),
                _ if recent && roll < 380 => ("wrapping", 2),
                0..=49 => ("failed", rng.usize(0..3)),
                50..=69 => ("pending", 0),
                70..=79 => ("prepped", 1),
                80..=84 => ("analyzed", 2),
                _ => ("done", 3),
            };
            // A busy fleet has tens of phases in flight, not hundreds.
            let (status, phases_done) = if matches!(status, "prepping" | "analyzing" | "wrapping") {
                if in_flight < MAX_IN_FLIGHT {
                    in_flight += 1;
                    (status, phases_done)
                } else {
                    ("pending", 0)
                }
            } else {
                (status, phases_done)
            };
            let working = matches!(status, "prepping" | "analyzing" | "wrapping");
            let (kind, message) = if status == "failed" {
                let k = KINDS[rng.usize(0..KINDS.len())];
                (
                    Some(k),
                    Some(format!(
                        "{k}: the {} phase gave up after 3 attempts",
                        ["prep", "expensive", "wrap"][phases_done.min(2)]
                    )),
                )
            } else {
                (None, None)
            };
            let phase_ms = [40_000i64, 180_000, 60_000];
            let mut t = created + rng.i64(1_000..3_600_000);
            let mut done_at = None;
            let mut events: Vec<PhaseEvent<'_>> = Vec::new();
            for (p, (name, from, to)) in [
                ("prep", "pending", "prepped"),
                ("expensive", "prepped", "analyzed"),
                ("wrap", "analyzed", "done"),
            ]
            .iter()
            .enumerate()
            {
                if p >= phases_done && !(status == "failed" && p == phases_done) {
                    break;
                }
                let took = phase_ms[p] + rng.i64(0..phase_ms[p]);
                events.push((ts(t), name, "claimed", from, to, None, None, None));
                t += took;
                let (ev, err) = if p == phases_done {
                    ("failed", kind)
                } else {
                    ("finished", None)
                };
                events.push((
                    ts(t.min(now_ms)),
                    name,
                    ev,
                    from,
                    to,
                    err,
                    message.clone(),
                    Some(took),
                ));
                if p == 2 && ev == "finished" {
                    done_at = Some(ts(t.min(now_ms)));
                }
            }
            let updated = t.min(now_ms);
            paper
                .execute(params![
                    id,
                    arxiv,
                    title,
                    status,
                    (phases_done >= 1 || status == "failed") as i64,
                    (phases_done >= 2) as i64,
                    (phases_done >= 3) as i64,
                    kind,
                    message,
                    working.then_some("bench:1:0"),
                    working.then_some(now_ms + 600_000),
                    ts(created),
                    ts(updated),
                    working.then(|| ts(updated)),
                    done_at,
                ])
                .map_err(|e| e.to_string())?;
            for (at, name, ev, from, to, err, msg, took) in events {
                event
                    .execute(params![id, at, name, ev, from, to, err, msg, took])
                    .map_err(|e| e.to_string())?;
            }
            // This paper's calls, spread over its working life.
            let n = calls_per_paper.min(calls_left);
            calls_left -= n;
            for c in 0..n {
                let (model, price, mean) = MODELS[if c % 4 == 1 {
                    1
                } else if c % 4 == 3 {
                    2
                } else {
                    0
                }];
                let at = (created + rng.i64(0..(updated - created).max(1) + 1)).min(now_ms);
                let r = rng.u32(0..100);
                let (st, http, ek) = match r {
                    0..=1 => ("error", 429, Some("rate_limited")),
                    2..=4 => ("error", 500 + rng.i64(0..4), Some("server_error")),
                    _ => ("ok", 200, None),
                };
                let latency = if st == "ok" {
                    // Log-normal-ish: mostly near the mean, a long tail.
                    let u = rng.f64().max(1e-9);
                    ((mean as f64) * (0.4 + 1.6 * u) * if rng.u32(0..50) == 0 { 8.0 } else { 1.0 })
                        as i64
                } else {
                    rng.i64(50..2_000)
                };
                let prompt = rng.i64(1_500..9_000);
                let completion = if st == "ok" { rng.i64(100..1_500) } else { 0 };
                call.execute(params![
                    format!("{id}/{}/1", ["prep", "expensive", "wrap"][c % 3]),
                    ["prep", "expensive", "wrap"][c % 3],
                    ["key_outcome", "analyse", "write", "judge"][c % 4],
                    (c % 7) as i64,
                    model,
                    st,
                    http,
                    ek,
                    prompt,
                    completion,
                    prompt + completion,
                    (price * (prompt + completion) as f64 / 1000.0),
                    latency,
                    ts(at),
                    if price > 0.001 { "expensive" } else { "cheap" },
                ])
                .map_err(|e| e.to_string())?;
            }
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    conn.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(|e| e.to_string())?;
    Ok(())
}
