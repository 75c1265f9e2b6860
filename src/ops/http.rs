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

use super::metrics::{Metrics, MetricsSnapshot};
use super::status::{status_report, StatusReport};
use super::OpsError;
use crate::runner::config::Config;
use crate::runner::scheduler::RunnerStats;
use crate::store::{now_ms, Store};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// What the endpoint serves from.
#[derive(Clone)]
pub struct OpsState {
    pub store: Store,
    pub config: Arc<Config>,
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
            &self.config,
            self.live().as_ref(),
            chrono::Utc::now(),
        )
    }
}

/// Who may call: `None` = anyone (loopback without a token).
#[derive(Clone)]
struct Access {
    token: Option<Arc<str>>,
    /// Not loopback and no token: refuse everything.
    closed: bool,
}

/// Serve until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: OpsState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let token = state
        .config
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
            token_env = ?state.config.ops.token_env,
            "ops endpoint is not on loopback and has no bearer token: every request gets 401"
        );
    }
    let access = Access {
        token: token.map(Arc::from),
        closed,
    };
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/status", get(status_handler))
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn_with_state(access, require_token))
        .with_state(state);
    tracing::info!(%addr, "ops endpoint listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Equal-time comparison, so response timing does not leak the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(access: &Access, headers: &HeaderMap) -> bool {
    if access.closed {
        return false;
    }
    let Some(token) = &access.token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given.trim().as_bytes(), token.as_bytes()))
}

async fn require_token(State(access): State<Access>, req: Request, next: Next) -> Response {
    if authorized(&access, req.headers()) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response()
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn status_handler(State(state): State<OpsState>) -> Response {
    match tokio::task::spawn_blocking(move || state.status()).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn metrics_handler(State(state): State<OpsState>) -> Response {
    match tokio::task::spawn_blocking(move || render_metrics(&state)).await {
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
    let now = chrono::Utc::now();
    let mut x = Exposition { out: String::new() };

    x.family(
        "paper_runner_executions",
        "gauge",
        "Papers in the queue per status.",
    );
    for (status, n) in store.status_counts()? {
        x.sample("paper_runner_executions", &[("status", &status)], n as f64);
    }
    x.family(
        "paper_runner_claimable",
        "gauge",
        "Papers claimable now per phase (retry delays and cancels applied, budget and breakers not).",
    );
    for (phase, n) in store.claimable_counts(now.timestamp_millis())? {
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
    x.sample(
        "paper_runner_leases_held",
        &[],
        store.claims_held(now_ms())? as f64,
    );

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
        let open = Access {
            token: Some(Arc::from("s3cret")),
            closed: false,
        };
        let mut h = HeaderMap::new();
        assert!(!authorized(&open, &h));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorized(&open, &h));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&open, &h));
        let closed = Access {
            token: None,
            closed: true,
        };
        assert!(!authorized(&closed, &h));
        let anyone = Access {
            token: None,
            closed: false,
        };
        assert!(authorized(&anyone, &HeaderMap::new()));
    }
}
