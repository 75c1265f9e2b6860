//! The ops endpoint: Prometheus text at `/metrics`, the `runner status
//! --json` report at `/status`, and `/healthz`.
//!
//! Database-backed series (queue, ledger, breakers, budget, claims) are
//! queried at scrape time, so they are right however many processes share
//! the database; transitions and state durations come from this process's
//! metrics layer. The text exposition format is small and fixed, so it is
//! written here rather than through a client library.
//!
//! Access: when `ops.token_env` names a variable that holds a token, every
//! request needs `Authorization: Bearer <token>`. A listener that is not
//! on loopback always needs one: without a token configured it answers 401
//! to everything (fail closed) rather than publish the queue to the network.
//!
//! Bounds (`[ops]`): the endpoint must never take from the runner's own
//! work, and a client can hold a connection before any auth check, so
//! connections are bounded in number and in time. At most
//! `max_connections` are open; a connection past the cap closes the open
//! connection that has been idle longest (one with no request being
//! handled), or is closed at once when every connection is busy — so a pile
//! of idle or half-sent connections cannot lock `/healthz` out, and the
//! endpoint never holds more than `max_connections` descriptors. A request
//! head must arrive within `header_timeout_secs` (hyper's header-read
//! timer, which also bounds the wait for the next request on a kept-alive
//! connection), a handler must answer within `request_timeout_secs` (503
//! otherwise), and a connection on which no byte moves for
//! `idle_timeout_secs` while none of its requests is being handled (a
//! client that stopped reading) is closed. Failed `accept`s (e.g. the
//! process out of descriptors) are logged and retried after a pause; they
//! never end the endpoint.

use super::dash::auth::Keys;
use super::dash::Gate;
use super::metrics::{Metrics, MetricsSnapshot};
use super::status::{status_report, StatusReport};
use super::OpsError;
use crate::runner::config::{OpsSettings, Settings};
use crate::runner::scheduler::RunnerStats;
use crate::store::Store;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the endpoint serves from.
#[derive(Clone)]
pub struct OpsState {
    pub store: Store,
    /// The daemon's settings, resolved once at start-up: `/status` and the
    /// endpoint's bounds read typed values and never re-parse the file.
    pub settings: Arc<Settings>,
    /// The running scheduler's live view (None outside a daemon).
    pub stats: Option<Arc<Mutex<RunnerStats>>>,
    /// The registry of the metrics layer installed by logging.
    pub metrics: Metrics,
}

impl OpsState {
    fn live(&self) -> Option<RunnerStats> {
        let stats = self.stats.as_ref()?;
        match stats.lock() {
            Ok(s) => Some(s.clone()),
            Err(p) => Some(p.into_inner().clone()),
        }
    }

    /// The `/status` report.
    pub fn status(&self) -> Result<StatusReport, OpsError> {
        status_report(
            &self.store,
            &self.settings,
            self.live().as_ref(),
            chrono::Utc::now(),
        )
    }
}

/// Serve until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: OpsState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let token = state
        .settings
        .ops
        .token_env
        .as_deref()
        .and_then(|var| std::env::var(var).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let closed = token.is_none() && !addr.ip().is_loopback();
    if closed {
        tracing::error!(
            %addr,
            token_env = ?state.settings.ops.token_env,
            "ops endpoint is not on loopback and has no bearer token: every request gets 401"
        );
    }
    let gate = Arc::new(Gate {
        keys: token.as_deref().map(Keys::new),
        closed,
    });
    let limits = Limits::new(&state.settings.ops);
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/status", get(status_handler))
        .route("/healthz", get(healthz))
        .route("/signal", post(signal_handler))
        .merge(super::dash::routes())
        .layer(middleware::from_fn_with_state(gate, super::dash::guard))
        .with_state(state);
    tracing::info!(
        %addr,
        max_connections = limits.max_connections,
        header_timeout_secs = limits.header_timeout.as_secs(),
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        request_timeout_secs = limits.request_timeout.as_secs(),
        "ops endpoint listening"
    );
    serve_bounded(listener, app, limits, shutdown).await;
    Ok(())
}

/// The endpoint's bounds (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
}

impl Limits {
    /// From the resolved `[ops]` settings, whose values
    /// [`Config::resolve`](crate::runner::config::Config::resolve) has
    /// range-checked (1–4096 connections, 1–3600 s timeouts), so no bound
    /// can be zero or disabled.
    pub fn new(o: &OpsSettings) -> Limits {
        Limits {
            max_connections: o.max_connections,
            header_timeout: o.header_timeout,
            idle_timeout: o.idle_timeout,
            request_timeout: o.request_timeout,
        }
    }
}

/// Largest request head (and read buffer) a connection may use.
const MAX_BUF: usize = 64 * 1024;

/// Pause after a failed `accept` (out of descriptors: retrying at once
/// would spin) and how often such failures are logged.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// How long a new connection waits for the slot of the idle connection it
/// displaced.
const EVICT_WAIT: Duration = Duration::from_secs(1);

/// One open connection, as the accept loop sees it.
struct ConnState {
    /// Requests of this connection being handled now.
    busy: AtomicUsize,
    /// Milliseconds after `epoch` of the last byte moved or request ended.
    last_active_ms: AtomicU64,
    epoch: Instant,
    /// Cancelled to close the connection at once (displaced at the cap).
    close: CancellationToken,
}

impl ConnState {
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis().min(u64::MAX as u128) as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// Open connections by id, so the accept loop can displace an idle one.
#[derive(Default)]
struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnState>>> {
        match self.conns.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Close the connection idle longest among those with no request being
    /// handled; false when every connection is busy.
    fn displace_idle(&self) -> bool {
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| c.busy.load(Ordering::SeqCst) == 0 && !c.close.is_cancelled())
            .max_by_key(|c| c.idle_for());
        match victim {
            Some(c) => {
                c.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// The accept loop: a semaphore bounds the connections, each served by
/// hyper with the header timer, and watched for idleness.
async fn serve_bounded(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    let mut last_accept_log: Option<Instant> = None;
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                if last_accept_log.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY) {
                    tracing::warn!(error = %e, "ops endpoint cannot accept a connection; retrying");
                    last_accept_log = Some(Instant::now());
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) if registry.displace_idle() => {
                match tokio::time::timeout(EVICT_WAIT, slots.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => {
                        tracing::debug!("ops endpoint at its connection cap: connection refused");
                        continue;
                    }
                }
            }
            Err(_) => {
                tracing::debug!("ops endpoint at its connection cap, all busy: connection refused");
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(ConnState {
            busy: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            close: CancellationToken::new(),
        });
        registry.lock().insert(id, conn.clone());
        let (app, registry, shutdown) = (app.clone(), registry.clone(), shutdown.clone());
        tasks.spawn(async move {
            serve_connection(stream, app, limits, conn, shutdown).await;
            registry.lock().remove(&id);
            drop(permit);
        });
    }
    drop(listener);
    // Shutdown: every connection finishes its request in flight (hyper's
    // graceful shutdown closes idle ones at once), within the request bound.
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.request_timeout + Duration::from_secs(1), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    conn: Arc<ConnState>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Tracked {
        inner: stream,
        conn: conn.clone(),
    });
    let inner = TowerToHyperService::new(app);
    let state = conn.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let fut = hyper::service::Service::call(&inner, req);
        let state = state.clone();
        async move {
            state.busy.fetch_add(1, Ordering::SeqCst);
            let _busy = Busy(state);
            match tokio::time::timeout(limits.request_timeout, fut).await {
                Ok(Ok(resp)) => Ok::<_, Infallible>(resp),
                Ok(Err(never)) => match never {},
                Err(_) => Ok((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the request took too long to answer\n",
                )
                    .into_response()),
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let tick_every =
        (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    loop {
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "ops connection ended");
                }
                return;
            }
            _ = conn.close.cancelled() => return,
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if conn.busy.load(Ordering::SeqCst) == 0 && conn.idle_for() >= limits.idle_timeout {
                    tracing::debug!("ops connection idle past idle_timeout_secs: closed");
                    return;
                }
            }
        }
    }
}

/// Marks a request of a connection as handled when dropped (answered,
/// timed out or abandoned).
struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's socket that records when bytes last moved.
struct Tracked {
    inner: TcpStream,
    conn: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// `POST /signal` with `{"execution_id", "signal", "data"?}`: what `runner
/// signal` does. A write, so it needs a configured token (`ops.token_env`),
/// even on loopback, where reads need none.
async fn signal_handler(State(state): State<OpsState>, body: axum::body::Bytes) -> Response {
    let has_token = state
        .settings
        .ops
        .token_env
        .as_deref()
        .and_then(|var| std::env::var(var).ok())
        .is_some_and(|t| !t.trim().is_empty());
    if !has_token {
        return (
            StatusCode::FORBIDDEN,
            "POST /signal needs a bearer token: set ops.token_env\n",
        )
            .into_response();
    }
    if body.len() > crate::store::signals::MAX_SIGNAL_BYTES + 4096 {
        return (StatusCode::PAYLOAD_TOO_LARGE, "signal too large\n").into_response();
    }
    let req: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("body is not JSON: {e}\n")).into_response()
        }
    };
    let (Some(id), Some(name)) = (
        req.get("execution_id").and_then(serde_json::Value::as_str),
        req.get("signal").and_then(serde_json::Value::as_str),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "body needs execution_id and signal (strings), and may have data\n",
        )
            .into_response();
    };
    let (id, name) = (id.to_string(), name.to_string());
    let data = req.get("data").cloned().unwrap_or(serde_json::Value::Null);
    match state
        .store
        .run(move |s| s.send_signal(&id, &name, &data))
        .await
    {
        Ok(sent) => Json(sent).into_response(),
        Err(e @ crate::store::StoreError::NotFound(_)) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn status_handler(State(state): State<OpsState>) -> Response {
    // The report reads the database: run it through the store's blocking
    // handle, never on an async worker.
    let store = state.store.clone();
    match store.run(move |_| Ok(state.status())).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn metrics_handler(State(state): State<OpsState>) -> Response {
    let store = state.store.clone();
    match store.run(move |_| Ok(render_metrics(&state))).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Writes metric families in the Prometheus text format.
struct Exposition {
    out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    }
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, pairs: &[(&str, &str)], v: f64) {
        let _ = writeln!(self.out, "{name}{} {}", labels(pairs), number(v));
    }

    fn histograms(&mut self, name: &str, help: &str, label: &str, m: &MetricsSnapshot) {
        self.family(name, "histogram", help);
        for (key, h) in &m.state_durations {
            for (le, n) in h.cumulative() {
                let le = number(le);
                self.sample(
                    &format!("{name}_bucket"),
                    &[(label, key), ("le", &le)],
                    n as f64,
                );
            }
            self.sample(
                &format!("{name}_bucket"),
                &[(label, key), ("le", "+Inf")],
                h.count as f64,
            );
            self.sample(&format!("{name}_sum"), &[(label, key)], h.sum);
            self.sample(&format!("{name}_count"), &[(label, key)], h.count as f64);
        }
    }
}

/// The `/metrics` body.
pub fn render_metrics(state: &OpsState) -> Result<String, OpsError> {
    let store = &state.store;
    let mut x = Exposition { out: String::new() };

    x.family(
        "paper_runner_executions",
        "gauge",
        "Papers in the queue per status.",
    );
    for (status, n) in store.status_counts()? {
        x.sample(
            "paper_runner_executions",
            &[("status", status.as_str())],
            n as f64,
        );
    }
    x.family(
        "paper_runner_claimable",
        "gauge",
        "Papers claimable now per phase (retry delays and cancels applied, budget and breakers not).",
    );
    for (phase, n) in store.claimable_counts()? {
        x.sample(
            "paper_runner_claimable",
            &[("phase", phase.name())],
            n as f64,
        );
    }
    x.family(
        "paper_runner_leases_held",
        "gauge",
        "Paper claims held now (working status, lease not expired), all processes.",
    );
    x.sample("paper_runner_leases_held", &[], store.claims_held()? as f64);

    let totals = store.llm_totals()?;
    x.family(
        "paper_runner_llm_requests_total",
        "counter",
        "LLM request attempts in the ledger per model and status (reserved, ok, error, reused).",
    );
    for t in &totals {
        for (status, n) in &t.by_status {
            x.sample(
                "paper_runner_llm_requests_total",
                &[("model", &t.model), ("status", status)],
                *n as f64,
            );
        }
    }
    x.family(
        "paper_runner_llm_tokens_total",
        "counter",
        "Tokens in the ledger per model and kind (prompt, completion).",
    );
    for t in &totals {
        for (kind, n) in [
            ("prompt", t.prompt_tokens),
            ("completion", t.completion_tokens),
        ] {
            x.sample(
                "paper_runner_llm_tokens_total",
                &[("model", &t.model), ("kind", kind)],
                n as f64,
            );
        }
    }
    x.family(
        "paper_runner_llm_cost_total",
        "counter",
        "Known LLM spend in the ledger per model and currency (provider-reported or from the profile's price).",
    );
    for t in &totals {
        for (currency, spent) in &t.costs {
            x.sample(
                "paper_runner_llm_cost_total",
                &[("model", &t.model), ("currency", currency)],
                *spent,
            );
        }
    }
    x.family(
        "paper_runner_llm_unknown_cost_total",
        "counter",
        "Settled LLM calls whose cost is unknown (no usage or no price), per model.",
    );
    for t in &totals {
        x.sample(
            "paper_runner_llm_unknown_cost_total",
            &[("model", &t.model)],
            t.unknown_cost as f64,
        );
    }
    x.family(
        "paper_runner_llm_rate_limited_total",
        "counter",
        "LLM requests answered 429 (or classified rate_limit) per model.",
    );
    for t in &totals {
        x.sample(
            "paper_runner_llm_rate_limited_total",
            &[("model", &t.model)],
            t.rate_limited as f64,
        );
    }

    let report = state.status()?;
    x.family(
        "paper_runner_breaker_open",
        "gauge",
        "1 while a model's circuit breaker is open (its open period not yet over).",
    );
    for b in &report.breakers {
        x.sample(
            "paper_runner_breaker_open",
            &[("model", &b.model)],
            if b.state == "open" { 1.0 } else { 0.0 },
        );
    }
    let budget = &report.budget;
    let classes: Vec<_> = budget
        .classes
        .iter()
        .chain(std::iter::once(&budget.total))
        .collect();
    x.family(
        "paper_runner_budget_remaining",
        "gauge",
        "Requests left in the current budget day per class (+Inf: unlimited).",
    );
    for c in &classes {
        x.sample(
            "paper_runner_budget_remaining",
            &[("class", &c.class)],
            c.remaining.map_or(f64::INFINITY, |n| n as f64),
        );
    }
    x.family(
        "paper_runner_budget_used",
        "gauge",
        "Requests sent in the current budget day per class.",
    );
    for c in &classes {
        x.sample(
            "paper_runner_budget_used",
            &[("class", &c.class)],
            c.used as f64,
        );
    }
    x.family(
        "paper_runner_budget_spent",
        "gauge",
        "Current budget day per class (cheap, expensive, total) and unit (requests, tokens, usd): ledger rows (reserved ones at their worst case) plus what the work in flight may still spend.",
    );
    for c in &classes {
        for (unit, v) in [
            ("requests", c.used.saturating_add(c.held) as f64),
            ("tokens", c.tokens.used.saturating_add(c.tokens.held) as f64),
            ("usd", c.usd.used + c.usd.held),
        ] {
            x.sample(
                "paper_runner_budget_spent",
                &[("class", &c.class), ("unit", unit)],
                v,
            );
        }
    }
    x.family(
        "paper_runner_budget_left",
        "gauge",
        "What is left of the current budget day per class and unit (+Inf: unlimited).",
    );
    for c in &classes {
        for (unit, v) in [
            ("requests", c.remaining.map(|n| n as f64)),
            ("tokens", c.tokens.remaining.map(|n| n as f64)),
            ("usd", c.usd.remaining),
        ] {
            x.sample(
                "paper_runner_budget_left",
                &[("class", &c.class), ("unit", unit)],
                v.unwrap_or(f64::INFINITY),
            );
        }
    }
    let by_model = store.spend_by_model()?;
    let budget = &state.settings.budget;
    let mut spend: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    let mut tokens: BTreeMap<(String, String, &str), u64> = BTreeMap::new();
    for m in &by_model {
        let class = m
            .profile
            .as_deref()
            .map_or("cheap", |p| budget.class_of(p).as_str())
            .to_string();
        if let Some(cur) = &m.currency {
            *spend
                .entry((m.model.clone(), class.clone(), cur.clone()))
                .or_default() += m.cost;
        }
        for (kind, n) in [
            ("prompt", m.prompt_tokens),
            ("completion", m.completion_tokens),
        ] {
            *tokens
                .entry((m.model.clone(), class.clone(), kind))
                .or_default() += n;
        }
    }
    x.family(
        "paper_runner_spend_total",
        "counter",
        "Known LLM spend in the ledger per model, budget class and currency.",
    );
    for ((model, class, currency), v) in &spend {
        x.sample(
            "paper_runner_spend_total",
            &[("model", model), ("class", class), ("currency", currency)],
            crate::store::round_money(*v),
        );
    }
    x.family(
        "paper_runner_spend_tokens_total",
        "counter",
        "Tokens in the ledger per model, budget class and kind (prompt, completion).",
    );
    for ((model, class, kind), n) in &tokens {
        x.sample(
            "paper_runner_spend_tokens_total",
            &[("model", model), ("class", class), ("kind", kind)],
            *n as f64,
        );
    }
    if let Some(days) = report.forecast.days.filter(|d| d.is_finite()) {
        x.family(
            "paper_runner_forecast_days",
            "gauge",
            "Days of today's budget the queue needs at the average cost per phase.",
        );
        x.sample("paper_runner_forecast_days", &[], days);
    }
    if let Some(s) = &report.forecast.spend {
        x.family(
            "paper_runner_forecast_cost",
            "gauge",
            "What the queue will cost at the average cost per phase.",
        );
        x.sample(
            "paper_runner_forecast_cost",
            &[],
            crate::store::round_money(s.cheap.cost + s.expensive.cost),
        );
    }
    x.family(
        "paper_runner_prep_only",
        "gauge",
        "1 while the runner claims only prep (flag, budget or breakers).",
    );
    x.sample(
        "paper_runner_prep_only",
        &[],
        if report.mode.prep_only { 1.0 } else { 0.0 },
    );

    let m = state.metrics.snapshot();
    x.family(
        "paper_runner_transitions_total",
        "counter",
        "State transitions taken by this process (on_error routes included) per machine.",
    );
    for (machine, n) in &m.transitions {
        x.sample(
            "paper_runner_transitions_total",
            &[("machine", machine)],
            *n as f64,
        );
    }
    x.histograms(
        "paper_runner_state_duration_seconds",
        "Time from a state's enter to its exit checkpoint in this process, per machine.",
        "machine",
        &m,
    );
    x.family(
        "paper_runner_machine_executions_total",
        "counter",
        "Machine executions (children included) that ended in this process, per machine and outcome.",
    );
    for ((machine, outcome), n) in &m.machine_ends {
        x.sample(
            "paper_runner_machine_executions_total",
            &[("machine", machine), ("outcome", outcome)],
            *n as f64,
        );
    }

    if let Some(live) = state.live() {
        x.family(
            "paper_runner_in_flight",
            "gauge",
            "Phases this runner is working on now, per phase.",
        );
        for phase in crate::store::Phase::ALL {
            let n = live.in_flight.iter().filter(|f| f.phase == phase).count();
            x.sample(
                "paper_runner_in_flight",
                &[("phase", phase.name())],
                n as f64,
            );
        }
        x.family(
            "paper_runner_phase_outcomes_total",
            "counter",
            "Phases this runner ended, per phase and outcome (finished, retried, failed).",
        );
        for (outcome, map) in [
            ("finished", &live.finished),
            ("retried", &live.retried),
            ("failed", &live.failed),
        ] {
            let mut pairs: Vec<(&String, &u64)> = map.iter().collect();
            pairs.sort();
            for (phase, n) in pairs {
                x.sample(
                    "paper_runner_phase_outcomes_total",
                    &[("phase", phase), ("outcome", outcome)],
                    *n as f64,
                );
            }
        }
    }
    Ok(x.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_numbers_formatted() {
        assert_eq!(labels(&[]), "");
        assert_eq!(
            labels(&[("model", "a\"b\\c\nd"), ("k", "v")]),
            "{model=\"a\\\"b\\\\c\\nd\",k=\"v\"}"
        );
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
    }

    #[test]
    fn tokens_compare_whole() {
        let k = Keys::new("s3cret");
        assert!(!k.is_token("s3cre"));
        assert!(!k.is_token("s3cret!"));
        assert!(!k.is_token(""));
        assert!(k.is_token("s3cret"));
        assert!(k.is_token(" s3cret\n"));
    }
}
