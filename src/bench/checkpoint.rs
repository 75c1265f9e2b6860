//! `runner bench checkpoint`: checkpointed transitions per second, commit
//! latency percentiles and DB growth per transition, through the same path
//! the engine uses (snapshot encoding, blob extraction, fenced transaction).

use crate::engine::{Checkpointer, Event, Snapshot, Totals};
use crate::spec::model::Bundle;
use crate::store::{owner_id, SqliteCheckpointer, Store, StoreError, StoreOptions, Synchronous};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// One measured scenario.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointResult {
    pub scenario: String,
    pub transitions: usize,
    pub transitions_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub db_bytes_per_transition: f64,
}

/// A context of about 2 KiB of small fields, plus `paper_kib` KiB of text.
pub fn context(paper_kib: usize) -> Map<String, Value> {
    let mut m = Map::new();
    for i in 0..32 {
        m.insert(
            format!("field_{i:02}"),
            json!(format!("value {i} {}", "x".repeat(40))),
        );
    }
    if paper_kib > 0 {
        let words = [
            "attention",
            "gradient",
            "model",
            "layer",
            "token",
            "loss",
            "we",
            "show",
            "that",
        ];
        let mut text = String::with_capacity(paper_kib * 1024);
        let mut i = 0usize;
        while text.len() < paper_kib * 1024 {
            text.push_str(words[(i * 7 + i / 3) % words.len()]);
            text.push(' ');
            i += 1;
        }
        m.insert("paper_text".into(), Value::String(text));
    }
    m
}

/// Run `n` checkpointed transitions against the database at `db`.
pub async fn run(
    db: &Path,
    n: usize,
    paper_kib: usize,
    sync: Synchronous,
) -> Result<CheckpointResult, StoreError> {
    let opts = StoreOptions {
        synchronous: sync,
        ..StoreOptions::default()
    };
    let store = Store::open(db, &opts)?;
    let bundle = Bundle::single_state("bench", "work");
    let hash = store.put_config(&bundle, None)?;
    let id = format!("bench-{}", uuid::Uuid::new_v4());
    store.create_execution(&id, &hash, "bench", 0, &Map::new())?;
    let lease = store.acquire_lease(&id, &owner_id(), Duration::from_secs(300))?;
    let ckpt = SqliteCheckpointer::new(store.clone(), Some(lease.fence.clone()));
    let before = store.size_bytes()?;
    let mut ctx = context(paper_kib);
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        ctx.insert("step".into(), json!(i));
        let snap = Snapshot {
            execution_id: id.clone(),
            parent_id: None,
            machine_index: 0,
            machine_name: "bench".into(),
            event: if i % 2 == 0 {
                Event::StateEnter
            } else {
                Event::StateExit
            },
            state: Some("work".into()),
            next_state: (i % 2 == 1).then(|| "work".to_string()),
            step: (i / 2) as u64,
            context: ctx.clone(),
            output: None,
            error: None,
            totals: Totals::default(),
        };
        let t = Instant::now();
        ckpt.save(&snap)
            .await
            .map_err(|e| StoreError::Invalid(e.message))?;
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    let after = store.size_bytes()?;
    store.release_lease(&lease)?;
    lat.sort();
    let pct = |p: f64| -> f64 {
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).map(|d| d.as_secs_f64() * 1e6).unwrap_or(0.0)
    };
    Ok(CheckpointResult {
        scenario: if paper_kib > 0 {
            format!("2 KiB context + {paper_kib} KiB paper text")
        } else {
            "2 KiB context".to_string()
        },
        transitions: n,
        transitions_per_sec: n as f64 / total.as_secs_f64().max(1e-9),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        db_bytes_per_transition: after.saturating_sub(before) as f64 / n.max(1) as f64,
    })
}
