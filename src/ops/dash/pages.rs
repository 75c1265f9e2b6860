//! The dashboard's pages: each handler reads the store on the blocking
//! pool (`Store::run`), turns rows into a view model (plain text; the
//! templates escape it) and renders its template. Only the SVG charts and
//! the rendered report are passed as safe markup, and both escape their
//! own text (`svg::esc`, `markdown::render`).

use super::svg::{self, BarGroup, Series, Span};
use super::{error_page, render, Access};
use crate::ops::http::OpsState;
use crate::ops::show::{paper_timeline, PaperTimeline};
use crate::ops::{fit, fmt_ts, human_duration_ms, parse_ts, OpsError};
use crate::store::dash::{Cursor, QueueFilter};
use crate::store::{PaperRow, PaperStatus, Phase, Store};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Duration as ChronoDuration, Timelike, Utc};
use minijinja::Value;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Read as _;

/// Seconds between auto-refreshes of the overview and the queue.
const REFRESH_SECS: u32 = 15;
/// Rows per queue page unless asked otherwise.
const PAGE: usize = 50;
/// LLM calls listed on a paper page (the latest ones).
const MAX_CALLS: usize = 200;
/// Rows of the Gantt chart.
const MAX_SPANS: usize = 240;
/// Ten minutes: the charts' bucket.
const BUCKET_MIN: i64 = 10;
/// Buckets in 24 hours.
const BUCKETS: usize = 144;

/// A query-string value, percent-encoded.
pub fn url_encode(v: &str) -> String {
    serde_urlencoded::to_string([("v", v)])
        .map(|s| s.trim_start_matches("v=").to_string())
        .unwrap_or_default()
}

/// A store timestamp for people: `2026-12-06 11:14:21 UTC`.
pub fn show_time(ts: &str) -> String {
    match parse_ts(ts) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => ts.to_string(),
    }
}

fn show_opt_time(ts: &Option<String>) -> Option<String> {
    ts.as_deref().map(show_time)
}

fn money(v: f64) -> String {
    if v == 0.0 {
        "$0".into()
    } else if v < 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

pub(super) fn paper_href(arxiv_id: &str) -> String {
    // Old-style arXiv ids hold a '/': the route takes the rest of the path.
    format!(
        "/paper/{}",
        arxiv_id
            .split('/')
            .map(url_encode)
            .collect::<Vec<_>>()
            .join("/")
    )
}

/// Run a page's reads on the blocking pool; a store failure is a 500 page.
async fn read<T: Send + 'static>(
    state: &OpsState,
    f: impl FnOnce(&Store) -> Result<T, OpsError> + Send + 'static,
) -> Result<T, OpsError> {
    match state.store.run(move |s| Ok(f(s))).await {
        Ok(r) => r,
        Err(e) => Err(OpsError::Store(e)),
    }
}

fn failed(state: &OpsState, access: &Access, e: OpsError) -> Response {
    match e {
        OpsError::NotFound(m) => error_page(state, access, StatusCode::NOT_FOUND, "Not found", &m),
        e => {
            tracing::error!(error = %e, "dashboard page failed");
            error_page(
                state,
                access,
                StatusCode::INTERNAL_SERVER_ERROR,
                "The database could not be read",
                &e.to_string(),
            )
        }
    }
}

/// The chart window: 144 ten-minute buckets ending with the current one.
struct Window {
    start: DateTime<Utc>,
}

impl Window {
    fn ending(now: DateTime<Utc>) -> Window {
        let floored = now
            - ChronoDuration::minutes(i64::from(now.minute()) % BUCKET_MIN)
            - ChronoDuration::seconds(i64::from(now.second()))
            - ChronoDuration::nanoseconds(i64::from(now.nanosecond()));
        Window {
            start: floored - ChronoDuration::minutes(BUCKET_MIN * (BUCKETS as i64 - 1)),
        }
    }

    fn bucket_time(&self, i: usize) -> DateTime<Utc> {
        self.start + ChronoDuration::minutes(BUCKET_MIN * i as i64)
    }

    /// The store's bucket key (`YYYY-MM-DDTHH:M`) of bucket `i`.
    fn key(&self, i: usize) -> String {
        fmt_ts(self.bucket_time(i)).chars().take(15).collect()
    }

    fn since(&self) -> String {
        fmt_ts(self.start)
    }

    /// `HH:00` under every third hour, else nothing.
    fn labels(&self) -> Vec<String> {
        (0..BUCKETS)
            .map(|i| {
                let t = self.bucket_time(i);
                if t.minute() == 0 && t.hour() % 3 == 0 {
                    t.format("%H:00").to_string()
                } else {
                    String::new()
                }
            })
            .collect()
    }

    /// Values per bucket from (key, value) rows.
    fn spread(&self, rows: impl IntoIterator<Item = (String, f64)>) -> Vec<f64> {
        let index: BTreeMap<String, usize> = (0..BUCKETS).map(|i| (self.key(i), i)).collect();
        let mut out = vec![0.0; BUCKETS];
        for (k, v) in rows {
            if let Some(&i) = index.get(&k) {
                out[i] += v;
            }
        }
        out
    }
}

/// Latest answered calls per model the latency percentiles are read from.
const LATENCY_SAMPLE: usize = 2_000;

/// The value at quantile `q` of `v` (sorted here; nearest rank).
fn quantile(v: &mut [i64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64
}

/// `GET /`: the overview.
pub async fn overview(
    State(state): State<OpsState>,
    Extension(access): Extension<Access>,
) -> Response {
    // The status report and the chart series read separately, on two
    // pooled connections at once.
    let now = Utc::now();
    let w = Window::ending(now);
    let st = state.clone();
    let since = w.since();
    let (report, series) = tokio::join!(
        read(&state, move |_| st.status()),
        read(&state, move |store| {
            let done = store.done_series(&since)?;
            let (calls, models) = store.call_series(&since)?;
            let mut pcts = Vec::new();
            for m in models {
                let mut v = store.latency_sample(&since, &m, LATENCY_SAMPLE)?;
                if !v.is_empty() {
                    let p = [
                        quantile(&mut v, 0.5),
                        quantile(&mut v, 0.9),
                        quantile(&mut v, 0.99),
                    ];
                    pcts.push((m, p, v.len()));
                }
            }
            let kinds = store.failed_kinds()?;
            Ok((done, calls, pcts, kinds))
        })
    );
    let (report, (done, calls, pcts, kinds)) = match (report, series) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), _) | (_, Err(e)) => return failed(&state, &access, e),
    };
    let labels = w.labels();
    let done_v = w.spread(done.into_iter().map(|(k, n)| (k, n as f64)));
    let calls_v = w.spread(calls.iter().map(|b| (b.bucket.clone(), b.calls as f64)));
    let limited_v = w.spread(
        calls
            .iter()
            .map(|b| (b.bucket.clone(), b.rate_limited as f64)),
    );
    let errors_v = w.spread(calls.iter().map(|b| (b.bucket.clone(), b.errors as f64)));
    let done_chart = svg::time_chart(
        "Papers done per 10 minutes, last 24 h (UTC)",
        "papers",
        &labels,
        &[Series {
            name: "done",
            class: "s4",
            values: &done_v,
        }],
    );
    let calls_chart = svg::time_chart(
        "LLM calls, 429s and errors per 10 minutes, last 24 h (UTC)",
        "requests",
        &labels,
        &[
            Series {
                name: "calls",
                class: "s1",
                values: &calls_v,
            },
            Series {
                name: "429",
                class: "s2",
                values: &limited_v,
            },
            Series {
                name: "errors",
                class: "s3",
                values: &errors_v,
            },
        ],
    );
    let groups: Vec<BarGroup<'_>> = pcts
        .iter()
        .map(|(m, p, _)| BarGroup {
            label: m,
            bars: vec![
                ("p50", "s1", p[0]),
                ("p90", "s2", p[1]),
                ("p99", "s3", p[2]),
            ],
        })
        .collect();
    let latency_chart = svg::bar_chart(
        "LLM latency per model: latest answered calls of the last 24 h (≤ 2,000 each), ms",
        " ms",
        &groups,
    );
    let counts: Vec<_> = report
        .counts
        .iter()
        .map(|(s, n)| {
            json!({"status": s, "n": n, "href": format!("/queue?status={}", url_encode(s))})
        })
        .collect();
    let in_flight: Vec<_> = report
        .in_flight
        .iter()
        .map(|p| {
            json!({
                "arxiv_id": p.arxiv_id, "href": paper_href(&p.arxiv_id), "phase": p.phase,
                "attempt": p.attempt, "state": p.state,
                "age": p.age_secs.map(|s| human_duration_ms(s.saturating_mul(1000))),
                "host": p.host,
            })
        })
        .collect();
    let breakers: Vec<_> = report
        .breakers
        .iter()
        .map(|b| {
            json!({
                "model": b.model, "provider": b.provider, "state": b.state, "blocking": b.blocking,
                "open_until": show_opt_time(&b.open_until),
                "open_for": b.open_for_secs.filter(|s| *s > 0).map(|s| format!("{} left", human_duration_ms(s.saturating_mul(1000)))),
                "reason": b.reason, "open_count": b.open_count,
            })
        })
        .collect();
    let share = |used: f64, limit: Option<f64>| {
        limit.map(|l| if l > 0.0 { (used / l).min(1.0) } else { 1.0 })
    };
    let budget_row = |b: &crate::ops::status::BudgetClass| {
        let ts = share(
            b.tokens.used.saturating_add(b.tokens.held) as f64,
            b.tokens.limit.map(|l| l as f64),
        );
        let us = share(b.usd.used + b.usd.held, b.usd.limit);
        let rs = share(
            b.used.saturating_add(b.held) as f64,
            b.limit.map(|l| l as f64),
        );
        json!({
            "class": b.class,
            "requests_used": b.used, "requests_limit": b.limit, "requests_left": b.remaining,
            "tokens_used": b.tokens.used, "tokens_limit": b.tokens.limit,
            "tokens_left": b.tokens.remaining, "tokens_share": ts,
            "usd_used": money(b.usd.used), "usd_limit": b.usd.limit.map(money),
            "usd_left": b.usd.remaining.map(money), "usd_share": us,
            "low": b.spent() || [ts, us, rs].iter().any(|s| s.is_some_and(|s| s >= 0.9)),
        })
    };
    let budget: Vec<_> = report.budget.classes.iter().map(budget_row).collect();
    let budget_total = budget_row(&report.budget.total);
    let blocked: Vec<_> = report
        .mode
        .blocked
        .iter()
        .map(|b| {
            json!({
                "model": b.model,
                "reason": serde_json::to_value(b.reason).ok().and_then(|v| v.as_str().map(str::to_string)),
                "until": show_opt_time(&b.until),
            })
        })
        .collect();
    let failed_kinds: Vec<_> = kinds
        .iter()
        .map(|(k, n)| {
            let kind = k.clone().unwrap_or_default();
            let href = if kind.is_empty() {
                "/queue?status=failed".to_string()
            } else {
                format!("/queue?error_kind={}", url_encode(&kind))
            };
            json!({"kind": if kind.is_empty() { "(no kind)".to_string() } else { kind }, "n": n, "href": href})
        })
        .collect();
    let ctx = json!({
        "page": "overview",
        "refresh": REFRESH_SECS,
        "total": report.total,
        "counts": counts,
        "mode": {"mode": report.mode.mode, "reason": report.mode.reason, "prep_only": report.mode.prep_only, "blocked": blocked},
        "done_hour": report.done_last_hour,
        "done_day": report.done_last_day,
        "forecast": report.forecast.text,
        "in_flight": in_flight,
        "waiting": report.waiting.len(),
        "breakers": breakers,
        "budget": budget,
        "budget_total": budget_total,
        "budget_limited": report.budget.classes.iter().chain([&report.budget.total])
            .any(|b| b.limit.is_some() || b.tokens.limit.is_some() || b.usd.limit.is_some()),
        "budget_resets": show_time(&report.budget.resets_at),
        "failed_kinds": failed_kinds,
        "now": fmt_ts(now),
    });
    let charts = minijinja::context! {
        done => Value::from_safe_string(done_chart),
        calls => Value::from_safe_string(calls_chart),
        latency => Value::from_safe_string(latency_chart),
    };
    render(
        &state,
        &access,
        StatusCode::OK,
        "overview.html",
        minijinja::context! { charts, ..Value::from_serialize(&ctx) },
    )
}

/// `GET /queue` parameters (all optional; unknown values are a 400).
#[derive(Debug, Default, Deserialize)]
pub struct QueueParams {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    error_kind: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    after_t: Option<String>,
    #[serde(default)]
    after_id: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Longest filter value accepted.
const MAX_PARAM: usize = 512;

/// The filter of a queue request; None when it can match nothing.
fn filter_of(p: &QueueParams) -> Result<Option<QueueFilter>, String> {
    for (name, v) in [
        ("status", &p.status),
        ("phase", &p.phase),
        ("error_kind", &p.error_kind),
        ("q", &p.q),
        ("after_t", &p.after_t),
        ("after_id", &p.after_id),
        ("limit", &p.limit),
    ] {
        if v.as_deref().is_some_and(|s| s.len() > MAX_PARAM) {
            return Err(format!("{name} is longer than {MAX_PARAM} bytes"));
        }
    }
    let status = match nonempty(&p.status) {
        Some(s) => Some(s.parse::<PaperStatus>().map_err(|e| e.to_string())?),
        None => None,
    };
    let phase = match nonempty(&p.phase) {
        Some(s) => Some(
            Phase::parse(s)
                .ok_or_else(|| format!("unknown phase {s:?} (expected prep, expensive or wrap)"))?,
        ),
        None => None,
    };
    let mut statuses: Vec<PaperStatus> = match phase {
        Some(ph) => vec![ph.from_status(), ph.working_status()],
        None => Vec::new(),
    };
    if let Some(s) = status {
        if phase.is_some() && !statuses.contains(&s) {
            // A status outside the phase: nothing matches.
            return Ok(None);
        }
        statuses = vec![s];
    }
    let limit = match nonempty(&p.limit) {
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=crate::store::dash::MAX_PAGE).contains(n))
            .ok_or_else(|| {
                format!(
                    "limit must be a number from 1 to {}",
                    crate::store::dash::MAX_PAGE
                )
            })?,
        None => PAGE,
    };
    let after = match (nonempty(&p.after_t), nonempty(&p.after_id)) {
        (Some(t), Some(id)) => Some(Cursor {
            updated_at: t.to_string(),
            id: id.to_string(),
        }),
        (None, None) => None,
        _ => return Err("after_t and after_id go together".into()),
    };
    Ok(Some(QueueFilter {
        statuses,
        error_kind: nonempty(&p.error_kind).map(str::to_string),
        search: nonempty(&p.q).map(str::to_string),
        after,
        limit,
    }))
}

fn attempts(r: &PaperRow) -> String {
    format!(
        "{}·{}·{}",
        r.attempts_prep, r.attempts_expensive, r.attempts_wrap
    )
}

/// `GET /queue`: one page of the queue under the filters.
pub async fn queue(
    State(state): State<OpsState>,
    Extension(access): Extension<Access>,
    Query(p): Query<QueueParams>,
) -> Response {
    let filter = match filter_of(&p) {
        Ok(f) => f,
        Err(m) => return error_page(&state, &access, StatusCode::BAD_REQUEST, "Bad filter", &m),
    };
    let f2 = filter.clone();
    let data = read(&state, move |store| {
        let page = match &f2 {
            Some(f) => store.queue_page(f)?,
            None => crate::store::dash::QueuePage {
                rows: Vec::new(),
                next: None,
            },
        };
        Ok((page, store.failed_kinds()?))
    })
    .await;
    let (page, kinds) = match data {
        Ok(d) => d,
        Err(e) => return failed(&state, &access, e),
    };
    let rows: Vec<_> = page
        .rows
        .iter()
        .map(|r| {
            json!({
                "arxiv_id": r.arxiv_id, "href": paper_href(&r.arxiv_id),
                "title": fit(r.title.as_deref().unwrap_or(""), 140),
                "status": r.status.as_str(), "cancel": r.cancel_requested,
                "attempts": attempts(r),
                "error_kind": r.last_error_kind,
                "error": r.last_error_message.as_deref().map(|m| fit(m, 160)),
                "updated": show_time(&r.updated_at),
            })
        })
        .collect();
    // Links keep the filters and move the cursor.
    let mut keep: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("status", &p.status),
        ("phase", &p.phase),
        ("error_kind", &p.error_kind),
        ("q", &p.q),
        ("limit", &p.limit),
    ] {
        if let Some(v) = nonempty(v) {
            keep.push((k, v.to_string()));
        }
    }
    let href = |extra: &[(&str, String)]| {
        let mut all = keep.clone();
        all.extend(extra.iter().cloned());
        format!(
            "/queue?{}",
            serde_urlencoded::to_string(&all).unwrap_or_default()
        )
    };
    let next_href = page.next.as_ref().map(|c| {
        href(&[
            ("after_t", c.updated_at.clone()),
            ("after_id", c.id.clone()),
        ])
    });
    let paged = filter.as_ref().is_some_and(|f| f.after.is_some());
    let first_href = paged.then(|| href(&[]));
    let kinds: Vec<_> = kinds
        .iter()
        .filter_map(|(k, n)| k.as_ref().map(|k| json!({"kind": k, "n": n})))
        .collect();
    let ctx = json!({
        "page": "queue",
        "refresh": if paged { 0 } else { REFRESH_SECS },
        "statuses": PaperStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "phases": Phase::ALL.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "kinds": kinds,
        "f": {
            "status": nonempty(&p.status), "phase": nonempty(&p.phase),
            "error_kind": nonempty(&p.error_kind), "q": nonempty(&p.q).unwrap_or(""),
        },
        "rows": rows,
        "next_href": next_href,
        "first_href": first_href,
    });
    render(
        &state,
        &access,
        StatusCode::OK,
        "queue.html",
        Value::from_serialize(&ctx),
    )
}

/// What an action redirect may announce (`?done=…`): fixed texts only, so
/// a crafted link cannot put words on the page.
fn flash_text(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "retried" => ("ok", "Put back in the queue: the failed phase runs again."),
        "cancelled" => (
            "ok",
            "Cancel requested: a running phase stops at its next checkpoint.",
        ),
        "requeued" => ("ok", "Re-queued: every phase runs again from the start."),
        "nothing" => (
            "warn",
            "Nothing to do: the paper was not in a state this action changes.",
        ),
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct PaperParams {
    #[serde(default)]
    done: Option<String>,
}

/// A report file, read with a cap.
struct Report {
    path: String,
    text: String,
    cut: bool,
}

fn read_report(path: &str) -> Result<Report, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read the report {path}: {e}"))?;
    let mut buf = Vec::new();
    f.take(super::markdown::MAX_REPORT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the report {path}: {e}"))?;
    let cut = buf.len() > super::markdown::MAX_REPORT_BYTES;
    buf.truncate(super::markdown::MAX_REPORT_BYTES);
    Ok(Report {
        path: path.to_string(),
        text: String::from_utf8_lossy(&buf).into_owned(),
        cut,
    })
}

/// The Gantt rows of a paper: each phase attempt, then the states of its
/// machine executions (children indented under their parent).
fn spans(t: &PaperTimeline) -> Vec<Span<'_>> {
    let ms = |s: &str| parse_ts(s).map(|t| t.timestamp_millis());
    let mut out = Vec::new();
    let mut used = vec![false; t.executions.len()];
    for a in &t.phases {
        let Some(start) = ms(&a.started_at) else {
            continue;
        };
        let label = format!("{} #{}", a.phase, a.attempt.unwrap_or(0));
        let end = a.ended_at.as_deref().and_then(ms);
        out.push(Span {
            label: label.clone(),
            depth: 0,
            start_ms: start,
            end_ms: end,
            class: "phase",
            note: a
                .duration_ms
                .map(human_duration_ms)
                .unwrap_or_else(|| a.outcome.clone()),
            detail: format!(
                "{label}: {}{}",
                a.outcome,
                a.duration_ms
                    .map(|d| format!(", {}", human_duration_ms(d)))
                    .unwrap_or_default()
            ),
        });
        for (i, e) in t.executions.iter().enumerate() {
            if used[i] || e.phase.as_deref() != Some(a.phase.as_str()) || e.attempt != a.attempt {
                continue;
            }
            used[i] = true;
            push_states(&mut out, e, ms);
        }
    }
    for (i, e) in t.executions.iter().enumerate() {
        if !used[i] {
            push_states(&mut out, e, ms);
        }
    }
    out.truncate(MAX_SPANS);
    out
}

fn push_states<'a>(
    out: &mut Vec<Span<'a>>,
    e: &'a crate::ops::show::ExecutionTimeline,
    ms: impl Fn(&str) -> Option<i64>,
) {
    for s in &e.states {
        let Some(start) = s.started_at.as_deref().and_then(&ms) else {
            continue;
        };
        out.push(Span {
            // A child's states carry its machine's name.
            label: if e.depth > 0 {
                format!("{}: {}", e.machine, s.state)
            } else {
                s.state.clone()
            },
            depth: 1 + e.depth,
            start_ms: start,
            end_ms: s.ended_at.as_deref().and_then(&ms),
            class: &s.outcome,
            note: s.duration_ms.map(human_duration_ms).unwrap_or_default(),
            detail: format!(
                "{} / {}: {}{}{}",
                e.machine,
                s.state,
                s.outcome,
                s.duration_ms
                    .map(|d| format!(", {}", human_duration_ms(d)))
                    .unwrap_or_default(),
                s.error_kind
                    .as_deref()
                    .map(|k| format!(" ({k}: {})", s.error_message.as_deref().unwrap_or("")))
                    .unwrap_or_default()
            ),
        });
    }
}

/// `GET /paper/ID`: one paper's timeline, calls, errors and report.
pub async fn paper(
    State(state): State<OpsState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(pp): Query<PaperParams>,
) -> Response {
    if id.len() > MAX_PARAM {
        return error_page(
            &state,
            &access,
            StatusCode::BAD_REQUEST,
            "Bad paper id",
            "the id is too long",
        );
    }
    let lookup = id.clone();
    let data = read(&state, move |store| {
        let t = paper_timeline(store, &lookup)?;
        let report = t.report_path.as_deref().map(read_report);
        Ok((t, report))
    })
    .await;
    let (t, report) = match data {
        Ok(d) => d,
        Err(e) => return failed(&state, &access, e),
    };
    let now_ms = Utc::now().timestamp_millis();
    let spans = spans(&t);
    let gantt = (!spans.is_empty()).then(|| {
        svg::gantt(
            &format!("Phases and states of {}", t.paper.arxiv_id),
            &spans,
            now_ms,
        )
    });
    let p = &t.paper;
    let tot = &t.llm_totals;
    let cost = if tot.costs.len() > 1 {
        tot.costs
            .iter()
            .map(|(c, v)| format!("{v:.4} {c}"))
            .collect::<Vec<_>>()
            .join(" + ")
    } else {
        format!(
            "{:.4} {}",
            tot.cost,
            tot.currency.as_deref().unwrap_or("USD")
        )
    };
    let phases: Vec<_> = t
        .phases
        .iter()
        .map(|a| {
            json!({
                "phase": a.phase, "attempt": a.attempt, "started": show_time(&a.started_at),
                "took": a.duration_ms.map(human_duration_ms), "outcome": a.outcome,
                "error_kind": a.error_kind, "message": a.message.as_deref().map(|m| fit(m, 300)),
            })
        })
        .collect();
    let errors: Vec<_> = t
        .errors
        .iter()
        .map(|e| {
            json!({"at": show_time(&e.at), "source": e.source, "kind": e.kind,
                   "message": e.message.as_deref().map(|m| fit(m, 2000))})
        })
        .collect();
    let skip = t.llm_calls.len().saturating_sub(MAX_CALLS);
    let calls: Vec<_> = t
        .llm_calls
        .iter()
        .skip(skip)
        .map(|c| {
            json!({
                "at": show_time(&c.reserved_at), "state": c.state, "model": c.model,
                "status": c.status, "http": c.http_status,
                "error": c.error_kind.as_deref().map(|k| fit(&format!("{k}: {}", c.error_message.as_deref().unwrap_or("")), 200)),
                "tokens": format!("{} / {}", c.prompt_tokens.map(|v| v.to_string()).unwrap_or_else(|| "—".into()),
                                  c.completion_tokens.map(|v| v.to_string()).unwrap_or_else(|| "—".into())),
                "latency": c.latency_ms.map(|v| human_duration_ms(v.min(i64::MAX as u64) as i64)),
                "cost": crate::ops::show::money(c.cost, c.cost_source.as_deref()),
            })
        })
        .collect();
    let mut actions = Vec::new();
    let at_rest = p.owner_id.is_none() && p.status.working_phase().is_none();
    if p.status == PaperStatus::Failed || p.cancel_requested {
        actions.push(json!({"name": "retry", "label": "Retry", "class": ""}));
    }
    if !matches!(p.status, PaperStatus::Done | PaperStatus::Failed) && !p.cancel_requested {
        actions.push(
            json!({"name": "cancel", "label": "Cancel", "class": "danger",
                            "confirm": format!("Cancel {}?", p.arxiv_id)}),
        );
    }
    if at_rest {
        actions.push(json!({"name": "requeue", "label": "Re-queue from the start", "class": "",
                            "confirm": format!("Run every phase of {} again from the start?", p.arxiv_id)}));
    }
    let (report_html, report_view, report_error, audit) = match report {
        Some(Ok(r)) => {
            let (_, body) = crate::pipeline::report::split_frontmatter(&r.text);
            let html = super::markdown::render(body);
            let audit =
                crate::pipeline::audit::audit_text(std::path::Path::new(&r.path), &r.text, None);
            (
                Some(html),
                Some(json!({"path": r.path, "cut": r.cut, "cap": "2 MiB"})),
                None,
                Some(json!({
                    "problems": audit.problems,
                    "grounding": audit.grounding.map(|g| format!("{:.0}%", g * 100.0)),
                })),
            )
        }
        Some(Err(e)) => (None, None, Some(e), None),
        None => (None, None, None, None),
    };
    let flash = pp.done.as_deref().and_then(flash_text);
    let ctx = json!({
        "page": "paper",
        "p": {
            "id": p.id, "arxiv_id": p.arxiv_id, "title": p.title, "status": p.status.as_str(),
            "cancel": p.cancel_requested, "created": show_time(&p.created_at),
            "updated": show_time(&p.updated_at), "done": show_opt_time(&p.done_at),
            "attempts_prep": p.attempts_prep, "attempts_expensive": p.attempts_expensive,
            "attempts_wrap": p.attempts_wrap, "error_kind": p.last_error_kind,
            "error": p.last_error_message,
        },
        "totals": {"calls": tot.calls, "ok": tot.ok, "errors": tot.errors, "reused": tot.reused,
                   "tokens": tot.total_tokens, "cost": cost},
        "phases": phases,
        "errors": errors,
        "calls": calls,
        "calls_cut": skip > 0,
        "actions": actions,
        "report_error": report_error,
        "audit": audit,
        "flash": flash.map(|f| f.1),
        "flash_kind": flash.map(|f| f.0),
    });
    let mut report_ctx = report_view.map(Value::from_serialize);
    if let (Some(html), Some(view)) = (report_html, report_ctx.take()) {
        report_ctx = Some(minijinja::context! { html => Value::from_safe_string(html), ..view });
    }
    render(
        &state,
        &access,
        StatusCode::OK,
        "paper.html",
        minijinja::context! {
            gantt => gantt.map(Value::from_safe_string),
            report => report_ctx,
            ..Value::from_serialize(&ctx)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_144_ten_minute_buckets_ending_now() {
        let now = parse_ts("2026-12-06T11:14:21.5Z").unwrap();
        let w = Window::ending(now);
        assert_eq!(w.key(BUCKETS - 1), "2026-12-06T11:1");
        assert_eq!(w.key(0), "2026-12-05T11:2");
        assert_eq!(w.since(), "2026-12-05T11:20:00.000000Z");
        let labels = w.labels();
        assert_eq!(labels.iter().filter(|l| !l.is_empty()).count(), 8);
        let v = w.spread([
            ("2026-12-06T11:1".to_string(), 3.0),
            ("1999-01-01T00:0".into(), 9.0),
        ]);
        assert_eq!(v[BUCKETS - 1], 3.0);
        assert_eq!(v.iter().sum::<f64>(), 3.0);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), 50.0);
        assert_eq!(quantile(&mut v, 0.9), 90.0);
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut [7], 0.99), 7.0);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
    }

    #[test]
    fn filters_are_checked() {
        let p = |s: &str| serde_urlencoded::from_str::<QueueParams>(s).unwrap();
        assert!(filter_of(&p("status=bogus"))
            .unwrap_err()
            .contains("unknown paper status"));
        assert!(filter_of(&p("phase=x"))
            .unwrap_err()
            .contains("unknown phase"));
        assert!(filter_of(&p("limit=0")).is_err());
        assert!(filter_of(&p("limit=99999")).is_err());
        assert!(filter_of(&p("after_t=x")).is_err());
        let f = filter_of(&p("phase=expensive")).unwrap().unwrap();
        assert_eq!(
            f.statuses,
            vec![PaperStatus::Prepped, PaperStatus::Analyzing]
        );
        let f = filter_of(&p("phase=prep&status=prepping&q=%20graph%20"))
            .unwrap()
            .unwrap();
        assert_eq!(f.statuses, vec![PaperStatus::Prepping]);
        assert_eq!(f.search.as_deref(), Some("graph"));
        assert!(filter_of(&p("phase=prep&status=done")).unwrap().is_none());
        assert_eq!(paper_href("hep-th/9901001"), "/paper/hep-th/9901001");
        assert_eq!(url_encode("a b&c"), "a+b%26c");
    }
}
