//! `runner bench dashboard`: build a large queue (by default 100,000
//! papers and 1,000,000 ledger rows over 30 days) in a SQLite file, serve
//! the dashboard from it in-process on loopback, and time every page over
//! real HTTP.
//!
//! The generated history is shaped like a busy runner's: most papers
//! done, some failed with a handful of error kinds, a backlog pending, a
//! few in flight; about ten LLM calls per paper on three models with
//! realistic latencies, 2 % 429s and 3 % other errors, denser in the last
//! days. Each paper has its phase events (claimed and finished per phase),
//! so the charts, the queue filters and the paper page all have work.

use super::pipeline::percentile;
use crate::ops::http::{serve, OpsState};
use crate::ops::metrics::Metrics;
use crate::runner::Config;
use crate::store::{Store, StoreOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DashboardOptions {
    pub papers: usize,
    pub calls: usize,
    /// Requests per page (after one warm-up request).
    pub runs: usize,
    /// Keep (or reuse, when it exists) the database here.
    pub db: Option<PathBuf>,
}

/// Timings of one page.
#[derive(Debug, Clone, Serialize)]
pub struct PageTiming {
    pub page: String,
    pub path: String,
    pub bytes: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DashboardResult {
    pub papers: u64,
    pub ledger_rows: u64,
    pub db_bytes: u64,
    pub generate_secs: Option<f64>,
    pub pages: Vec<PageTiming>,
}

/// Generate (unless `opts.db` exists) and time the pages.
pub async fn run(opts: &DashboardOptions) -> Result<DashboardResult, String> {
    let temp = opts.db.is_none();
    let path = opts.db.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "paper-runner-bench-dashboard-{}.db",
            std::process::id()
        ))
    });
    let result = measure(opts, &path).await;
    if temp {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    result
}

async fn measure(opts: &DashboardOptions, path: &Path) -> Result<DashboardResult, String> {
    let path = path.to_path_buf();
    // A PostgreSQL URL is used as it is (fill it with `runner migrate-db`
    // from a generated SQLite file).
    let generate_secs = if path.exists() || crate::store::is_db_url(&path).is_some() {
        None
    } else {
        let started = Instant::now();
        let (p, papers, calls) = (path.clone(), opts.papers, opts.calls);
        let now = chrono::Utc::now().timestamp_millis();
        tokio::task::spawn_blocking(move || {
            crate::store::synth_queue::generate(&p, papers, calls, now)
        })
        .await
        .map_err(|e| e.to_string())??;
        Some(started.elapsed().as_secs_f64())
    };
    let store = Store::open(&path, &StoreOptions::default()).map_err(|e| e.to_string())?;
    let cfg = Config {
        db: path.clone(),
        ..Config::default()
    };
    let settings = cfg.resolve().map_err(|e| e.to_string())?;
    let state = OpsState {
        store: store.clone(),
        settings: Arc::new(settings),
        stats: None,
        metrics: Metrics::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, state, stop.clone()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let fetch = |path: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let started = Instant::now();
            let resp = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .map_err(|e| format!("GET {path}: {e}"))?;
            let code = resp.status();
            let body = resp.text().await.map_err(|e| format!("GET {path}: {e}"))?;
            if !code.is_success() {
                return Err(format!("GET {path}: {code}"));
            }
            Ok::<_, String>((started.elapsed().as_secs_f64() * 1000.0, body))
        }
    };
    // A paper with calls and events, a cursor deep in the queue.
    let probe = store
        .queue_page(&crate::store::dash::QueueFilter {
            statuses: vec![crate::store::PaperStatus::Done],
            limit: 1,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
    let paper = probe
        .rows
        .first()
        .map(|r| r.arxiv_id.clone())
        .unwrap_or_default();
    let deep = store
        .queue_page(&crate::store::dash::QueueFilter {
            limit: crate::store::dash::MAX_PAGE,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?
        .next;
    let deep_path = deep
        .map(|c| {
            format!(
                "/queue?{}",
                serde_urlencoded::to_string([("after_t", c.updated_at), ("after_id", c.id)])
                    .unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "/queue".into());
    let pages: Vec<(&str, String)> = vec![
        ("overview", "/".into()),
        ("queue", "/queue".into()),
        ("queue, page after 500", deep_path),
        ("queue: failed", "/queue?status=failed".into()),
        ("queue: phase expensive", "/queue?phase=expensive".into()),
        ("queue: error kind", "/queue?error_kind=timeout".into()),
        ("queue: title search", "/queue?q=protein+fold".into()),
        ("queue: common word", "/queue?q=learning".into()),
        ("paper", format!("/paper/{paper}")),
        ("/status (JSON)", "/status".into()),
        ("/metrics", "/metrics".into()),
    ];
    let mut out = Vec::new();
    for (name, path) in pages {
        let (_, body) = fetch(path.clone()).await?;
        let mut times = Vec::with_capacity(opts.runs);
        for _ in 0..opts.runs.max(1) {
            times.push(fetch(path.clone()).await?.0);
        }
        times.sort_by(f64::total_cmp);
        out.push(PageTiming {
            page: name.into(),
            path,
            bytes: body.len(),
            p50_ms: percentile(&times, 0.5),
            p95_ms: percentile(&times, 0.95),
            max_ms: times.last().copied().unwrap_or(0.0),
        });
    }
    stop.cancel();
    let _ = server.await;
    let counts = store.count_rows().map_err(|e| e.to_string())?;
    let count = |t: &str| {
        counts
            .iter()
            .find(|(n, _)| n == t)
            .map(|(_, c)| *c)
            .unwrap_or(0)
    };
    Ok(DashboardResult {
        papers: count("executions"),
        ledger_rows: count("llm_calls"),
        db_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        generate_secs,
        pages: out,
    })
}
