//! Mock OpenAI-compatible provider for tests and the demo.
//!
//! The product's real client talks to this over loopback HTTP, so everything
//! a real provider can surprise us with (rate limits in the several header
//! conventions found in the wild, 5xx, moderation blocks, context overflow,
//! slow or broken answers) can be scripted per model and replayed exactly.
//! Answers derive from a SHA-256 of the request, so equal requests get equal
//! answers, which lets resume tests compare runs.
//!
//! Conventions clients can rely on:
//! - A model's request number counts every chat request for that model id
//!   (1-based), including refused ones; the first matching fault wins.
//! - Scripted HTTP-error faults are decided before the rpm limiter and take
//!   no limiter slot; 200-level faults (`delay`, `malformed`, `empty`,
//!   `error_in_200`) are accepted requests and do take one.
//! - Limiter 429s are immediate (no latency), carry `Retry-After` in whole
//!   seconds (>= 1) and `X-RateLimit-Limit/Remaining/Reset`, Reset in epoch
//!   milliseconds; accepted requests of rpm-limited models carry the same trio.
//! - Stats count a request when its status is decided, before any sleep.
//! - Hostile answers (`endless`, `huge`, `echo`, `echo_key`, raw `headers`
//!   such as `retry-after: "1e20"`) exist to prove the client survives a
//!   broken or malicious provider: bounded memory, capped waits, no key in
//!   any stored or printed byte.
//! - Tokens are counted from text size, as real tokenizers roughly do:
//!   [`tokens_of`] = characters / 4 rounded up; a prompt is every message's
//!   tokens plus [`MESSAGE_OVERHEAD_TOKENS`] per message, a reply its
//!   content's tokens. A request's `max_tokens` caps the reply: a longer
//!   answer is cut to `max_tokens` × 4 characters with `finish_reason:
//!   "length"`, and never bills more than `max_tokens`.
//! - A model with `tpm` counts tokens (prompt tokens when accepted, reply
//!   tokens when answered) over a sliding minute: a request whose prompt
//!   would take the minute past `tpm` gets an immediate 429 (Retry-After
//!   in whole seconds, `x-ratelimit-remaining-tokens: 0`) and takes neither
//!   an rpm slot nor tokens. With `token_headers` answers carry
//!   `x-ratelimit-limit-tokens`, `-remaining-tokens` and `-reset-tokens`
//!   (OpenAI's duration form, e.g. `1500ms`: when the oldest tokens leave).
//! - `usage.cost` is prompt tokens × `prompt_cost_per_mtok` + reply tokens
//!   × `completion_cost_per_mtok`, / 1e6; each side defaults to
//!   `cost_per_mtok` (default 1.0). The model's script may set `omit_cost`
//!   (tokens only) or `omit_usage` (no usage at all). `GET /stats` sums
//!   the tokens and cost it billed, so tests compare a ledger with the
//!   provider's own count.
//! - JSON mode wins over verdict mode, which wins over markdown. The enum
//!   "prefer PASS" rule looks at the whole prompt, schema included, so an
//!   upper-case enum containing PASS yields PASS unless `verdict` overrides.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Length of the sliding window of the requests-per-minute limiter.
const RPM_WINDOW: Duration = Duration::from_secs(60);
/// Marker after which a prompt carries the JSON schema of the wanted answer.
const SCHEMA_MARKER: &str = "JSON schema:";
/// Prompts can carry whole papers; axum's 2 MB default is too small.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Scripted behaviour: latency, per-model limits and faults.
/// `Default` is a fast, well-behaved provider with no limits.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MockScript {
    /// Mean latency in milliseconds for models that do not set their own.
    pub latency_ms: u64,
    /// Latency varies uniformly by ± this many milliseconds.
    pub jitter_ms: u64,
    /// Per-model behaviour by exact model id; `"*"` covers unlisted models.
    pub models: BTreeMap<String, ModelScript>,
}

/// Behaviour of one model id.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelScript {
    /// Accepted requests per sliding minute; more get 429.
    pub rpm: Option<u32>,
    /// Tokens (prompt + reply, see [`tokens_of`]) per sliding minute; a request whose
    /// prompt would exceed it gets 429.
    pub tpm: Option<u64>,
    /// Send OpenAI's `x-ratelimit-*-tokens` headers with answers (models
    /// with `tpm` only).
    pub token_headers: bool,
    pub latency_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    /// Reply to verdict prompts (and preferred enum value), e.g. `REPAIR`.
    pub verdict: Option<String>,
    /// Wrap JSON answers in ```json fences to exercise fence stripping.
    pub fence_json: bool,
    /// Faults by this model's 1-based request number; first match wins.
    pub faults: Vec<Fault>,
    /// `usage.cost` of an answer = total tokens × this / 1e6 (the price
    /// per million tokens, OpenRouter style). Default 1.0: a millionth of
    /// a dollar per token.
    pub cost_per_mtok: Option<f64>,
    /// Price of prompt tokens per million (default `cost_per_mtok`).
    pub prompt_cost_per_mtok: Option<f64>,
    /// Price of reply tokens per million (default `cost_per_mtok`).
    pub completion_cost_per_mtok: Option<f64>,
    /// Answer without `usage.cost`, as providers that report tokens only
    /// do (the client then prices the call from the profile, if it can).
    pub omit_cost: bool,
    /// Answer without any `usage` (the call's tokens and cost are unknown).
    pub omit_usage: bool,
}

/// What a fault does: an HTTP error (`status`, the default) or a 200 oddity.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    #[default]
    Status,
    /// Sleep `delay_ms`, then answer normally (client timeouts).
    Delay,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with an empty message content.
    Empty,
    /// 200 whose body is an error object (OpenRouter style).
    #[serde(rename = "error_in_200")]
    ErrorIn200,
    /// 200 whose chunked body never ends (a runaway provider).
    Endless,
    /// 200 with a valid completion whose content is `size_bytes` long,
    /// streamed (chunked, or with Content-Length if `announce_length`).
    Huge,
    /// 200 with a valid completion whose content echoes the bearer token.
    Echo,
}

/// One scripted fault; exactly one of `at` / `every` selects requests.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    pub at: Option<u64>,
    pub every: Option<u64>,
    pub kind: FaultKind,
    pub status: Option<u16>,
    /// Retry-After in seconds, or as an HTTP date with `retry_after_date`.
    pub retry_after: Option<u64>,
    pub retry_after_date: bool,
    /// X-RateLimit-Reset = now in epoch milliseconds + this.
    pub reset_epoch_ms: Option<u64>,
    /// X-RateLimit-Reset = now in epoch seconds + this.
    pub reset_epoch_s: Option<u64>,
    /// Error message (or a whole JSON error object) of a `status` fault.
    pub body: Option<String>,
    pub delay_ms: u64,
    /// Code and message inside the `error_in_200` error object.
    pub code: Option<u16>,
    pub message: Option<String>,
    /// Extra response headers, verbatim (e.g. `retry-after: "1e20"`,
    /// `x-ratelimit-reset: "1e300"`, an HTTP date in year 9999): values no
    /// sane provider sends, which the client must survive.
    pub headers: BTreeMap<String, String>,
    /// Put the request's bearer token into the answer: in the error message
    /// (`status`, `error_in_200`) or the non-JSON body (`malformed`).
    pub echo_key: bool,
    /// Filler characters before an echoed token, to move it across the
    /// client's excerpt boundary.
    pub echo_pad: usize,
    /// Content length of a `huge` answer, bytes.
    pub size_bytes: Option<u64>,
    /// Send a `huge` answer with its Content-Length instead of chunked.
    pub announce_length: bool,
    /// A `status` fault whose (chunked) error body never ends.
    pub endless_body: bool,
}

impl Fault {
    /// Whether this fault applies to the model's `n`-th request.
    fn matches(&self, n: u64) -> bool {
        self.at == Some(n) || self.every.is_some_and(|e| e > 0 && n % e == 0)
    }
}

impl MockScript {
    /// Loads a YAML or JSON script (YAML parses the JSON we need).
    pub fn from_file(path: &Path) -> Result<MockScript, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read mock script {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("invalid mock script {}: {e}", path.display()))
    }

    /// Parses and validates script text; an empty text is the default.
    pub fn parse(text: &str) -> Result<MockScript, String> {
        if text.trim().is_empty() {
            return Ok(MockScript::default());
        }
        let script: MockScript = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        script.validate()?;
        Ok(script)
    }

    /// Rejects scripts that would silently do nothing or the wrong thing.
    fn validate(&self) -> Result<(), String> {
        for (id, m) in &self.models {
            if m.tpm == Some(0) {
                return Err(format!("model {id}: tpm must be at least 1"));
            }
            if m.rpm == Some(0) {
                return Err(format!("model {id}: rpm must be at least 1"));
            }
            if [
                m.cost_per_mtok,
                m.prompt_cost_per_mtok,
                m.completion_cost_per_mtok,
            ]
            .iter()
            .any(|c| c.is_some_and(|c| !c.is_finite() || c < 0.0))
            {
                return Err(format!(
                    "model {id}: cost_per_mtok must be a number of at least 0"
                ));
            }
            for (i, f) in m.faults.iter().enumerate() {
                let err = |msg: &str| Err(format!("model {id}: fault {}: {msg}", i + 1));
                match (f.at, f.every) {
                    (Some(0), None) | (None, Some(0)) => return err("at/every must be >= 1"),
                    (Some(_), None) | (None, Some(_)) => {}
                    _ => return err("needs exactly one of `at` or `every`"),
                }
                let ok_status = f.status.is_some_and(|s| (400..=599).contains(&s));
                if f.kind == FaultKind::Status && !ok_status {
                    return err("a status fault needs `status` between 400 and 599");
                }
                if f.kind == FaultKind::Huge && f.size_bytes.is_none() {
                    return err("a huge fault needs `size_bytes`");
                }
                for (name, value) in &f.headers {
                    if HeaderName::from_bytes(name.as_bytes()).is_err()
                        || HeaderValue::from_str(value).is_err()
                    {
                        return err(&format!("header {name}: {value:?} is not a valid header"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The script of a model id, falling back to the `"*"` entry.
    fn model(&self, id: &str) -> Option<&ModelScript> {
        self.models.get(id).or_else(|| self.models.get("*"))
    }
}

/// Request counters, as served by `GET /stats`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct MockStats {
    pub requests: u64,
    pub by_model: BTreeMap<String, u64>,
    pub by_status: BTreeMap<String, u64>,
    pub with_auth: u64,
    /// What answers reported in `usage` (the provider's own bill): totals
    /// and per model. Answers without usage are not in it.
    pub billed: Billed,
    pub billed_by_model: BTreeMap<String, Billed>,
}

/// Tokens and cost the mock reported in answers' `usage`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Billed {
    pub answers: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Sum of the `usage.cost` figures sent (0 for answers without one).
    pub cost: f64,
}

impl Billed {
    fn add(&mut self, prompt: u64, completion: u64, cost: Option<f64>) {
        self.answers += 1;
        self.prompt_tokens += prompt;
        self.completion_tokens += completion;
        self.cost += cost.unwrap_or(0.0);
    }
}

/// Tokens of a text: characters / 4, rounded up (tokenizers average about
/// four characters of English per token).
pub fn tokens_of(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Tokens a chat template adds per message (role markers, separators).
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 4;

/// Per-model request number and accepted-request timestamps.
#[derive(Default)]
struct ModelState {
    count: u64,
    window: VecDeque<Instant>,
    /// (when, tokens) charged in the last minute (models with `tpm`).
    tokens: VecDeque<(Instant, u64)>,
}

impl ModelState {
    /// Tokens charged in the minute before `now`, forgetting older ones.
    fn tokens_used(&mut self, now: Instant) -> u64 {
        while self
            .tokens
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= RPM_WINDOW)
        {
            self.tokens.pop_front();
        }
        self.tokens.iter().map(|(_, n)| n).sum()
    }

    /// How long until the oldest charged tokens leave the window.
    fn tokens_free_in(&self, now: Instant) -> Duration {
        self.tokens.front().map_or(Duration::ZERO, |(t, _)| {
            (*t + RPM_WINDOW).saturating_duration_since(now)
        })
    }
}

#[derive(Default)]
struct Inner {
    stats: MockStats,
    models: HashMap<String, ModelState>,
}

/// State shared by all handlers.
struct Shared {
    script: MockScript,
    inner: Mutex<Inner>,
}

/// What to do with a chat request, decided atomically with the counting.
#[derive(Debug, PartialEq)]
enum Decision {
    /// The rpm limiter refused it; a slot frees in `wait`.
    Limited { limit: u32, wait: Duration },
    /// The tpm limiter refused it; tokens free in `wait`.
    TokenLimited { limit: u64, wait: Duration },
    /// A scripted HTTP error.
    Fail(Fault),
    /// Answer (maybe with a 200-level fault); `limit` = (rpm, remaining, reset in).
    Accept {
        fault: Option<Fault>,
        limit: Option<(u32, u32, Duration)>,
    },
}

impl Inner {
    /// Counts the request for its model and applies faults, then the limiter.
    /// Scripted errors come first so they stay tied to request numbers; they
    /// take no limiter slot since they are not accepted.
    fn decide(&mut self, script: &MockScript, model: &str, now: Instant) -> Decision {
        let ms = script.model(model);
        let st = self.models.entry(model.to_string()).or_default();
        st.count += 1;
        let n = st.count;
        let fault = ms.and_then(|m| m.faults.iter().find(|f| f.matches(n)).cloned());
        if let Some(f) = fault.as_ref().filter(|f| f.kind == FaultKind::Status) {
            return Decision::Fail(f.clone());
        }
        let Some(rpm) = ms.and_then(|m| m.rpm) else {
            return Decision::Accept { fault, limit: None };
        };
        while st
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RPM_WINDOW)
        {
            st.window.pop_front();
        }
        let frees_in = |w: &VecDeque<Instant>| {
            w.front().map_or(Duration::ZERO, |t| {
                (*t + RPM_WINDOW).saturating_duration_since(now)
            })
        };
        if st.window.len() >= rpm as usize {
            return Decision::Limited {
                limit: rpm,
                wait: frees_in(&st.window),
            };
        }
        st.window.push_back(now);
        let remaining = rpm.saturating_sub(st.window.len() as u32);
        Decision::Accept {
            fault,
            limit: Some((rpm, remaining, frees_in(&st.window))),
        }
    }

    fn record(&mut self, model: &str, status: u16, auth: bool) {
        let s = &mut self.stats;
        s.requests += 1;
        *s.by_model.entry(model.to_string()).or_default() += 1;
        *s.by_status.entry(status.to_string()).or_default() += 1;
        s.with_auth += u64::from(auth);
    }
}

impl Shared {
    /// A poisoned lock only means a handler panicked; the counters are fine.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides and counts under one lock, so stats match responses exactly
    /// (counted before any sleep, so clients that time out are counted too).
    fn decide(&self, model: &str, now: Instant, auth: bool, prompt_tokens: u64) -> Decision {
        let mut inner = self.lock();
        let mut d = inner.decide(&self.script, model, now);
        if let (Decision::Accept { limit, .. }, Some(tpm)) =
            (&d, self.script.model(model).and_then(|m| m.tpm))
        {
            let rpm_slot = limit.is_some();
            let st = inner.models.entry(model.to_string()).or_default();
            let used = st.tokens_used(now);
            if used.saturating_add(prompt_tokens) > tpm {
                if rpm_slot {
                    // A refused request takes no rpm slot.
                    st.window.pop_back();
                }
                d = Decision::TokenLimited {
                    limit: tpm,
                    wait: st.tokens_free_in(now),
                };
            } else {
                st.tokens.push_back((now, prompt_tokens));
            }
        }
        let status = match &d {
            Decision::Limited { .. } | Decision::TokenLimited { .. } => 429,
            Decision::Fail(f) => f.status.unwrap_or(500),
            Decision::Accept { .. } => 200,
        };
        inner.record(model, status, auth);
        d
    }

    /// Charge a reply's tokens to a `tpm` model; returns its token window
    /// (limit, remaining, oldest tokens leave in) for the headers.
    fn charge(&self, model: &str, tokens: u64) -> Option<(u64, u64, Duration)> {
        let tpm = self.script.model(model).and_then(|m| m.tpm)?;
        let mut inner = self.lock();
        let st = inner.models.entry(model.to_string()).or_default();
        let now = Instant::now();
        st.tokens.push_back((now, tokens));
        let used = st.tokens_used(now);
        Some((tpm, tpm.saturating_sub(used), st.tokens_free_in(now)))
    }

    /// Mean ± jitter, the jitter drawn from the request seed.
    fn latency(&self, model: &str, seed: u64) -> Duration {
        let m = self.script.model(model);
        let mean = m
            .and_then(|m| m.latency_ms)
            .unwrap_or(self.script.latency_ms);
        let jitter = m.and_then(|m| m.jitter_ms).unwrap_or(self.script.jitter_ms);
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15);
        let ms = mean
            .saturating_add(rng.u64(0..=jitter.saturating_mul(2)))
            .saturating_sub(jitter);
        Duration::from_millis(ms)
    }
}

/// A running mock server; dropping it aborts the server task.
pub struct MockServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Binds `addr` (e.g. "127.0.0.1:0"), spawns the server and returns.
    pub async fn start(addr: &str, script: MockScript) -> std::io::Result<MockServer> {
        script
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script,
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .route("/stats", get(stats))
            .route("/healthz", get(|| async { "ok" }))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("mock-llm server stopped: {e}");
            }
        });
        Ok(MockServer {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The OpenAI base URL for clients, e.g. "http://127.0.0.1:PORT/v1".
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The same counters as `GET /stats`.
    pub fn stats(&self) -> MockStats {
        self.shared.lock().stats.clone()
    }

    /// Stops gracefully; requests still sleeping after 2 s are cut off.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<MockStats> {
    Json(shared.lock().stats.clone())
}

/// The parts of an OpenAI chat request the mock looks at.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    response_format: Option<Value>,
    /// Tools offered (a tool loop): see [`tool_turn`].
    tools: Vec<Value>,
    max_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatMessage {
    role: String,
    content: Value,
}

/// Text of a message content: a string, or the `text` of content parts.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
            texts.join("\n")
        }
        _ => String::new(),
    }
}

fn parse_request(body: &[u8]) -> Result<ChatRequest, String> {
    let req: ChatRequest =
        serde_json::from_slice(body).map_err(|e| format!("request body is not valid: {e}"))?;
    if req.model.is_empty() || req.messages.is_empty() {
        return Err("`model` and non-empty `messages` are required".into());
    }
    Ok(req)
}

fn has_bearer(headers: &HeaderMap) -> bool {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    value
        .and_then(|v| v.get(..7))
        .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = has_bearer(&headers);
    let token = bearer_token(&headers);
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(msg) => {
            // Unreadable requests are still traffic, so they are counted.
            shared.lock().record("(invalid)", 400, auth);
            return error_response(400, error_json(400, &msg), HeaderMap::new());
        }
    };
    let prompt = Prompt::new(&req);
    let decision = shared.decide(&req.model, Instant::now(), auth, prompt.tokens);
    let latency = shared.latency(&req.model, prompt.seed);
    let (fault, limit) = match decision {
        Decision::Limited { limit, wait } => return limited_response(&req.model, limit, wait),
        Decision::TokenLimited { limit, wait } => {
            return token_limited_response(&req.model, limit, wait)
        }
        Decision::Fail(f) => {
            tokio::time::sleep(latency).await;
            return fault_response(&f, &token);
        }
        Decision::Accept { fault, limit } => (fault, limit),
    };
    let delay = Duration::from_millis(fault.as_ref().map_or(0, |f| f.delay_ms));
    tokio::time::sleep(latency + delay).await;
    let extra = fault
        .as_ref()
        .map(|f| f.headers.clone())
        .unwrap_or_default();
    let ms = shared.script.model(&req.model);
    let mut charged = None;
    let mut resp = match fault {
        Some(f) if f.kind == FaultKind::Malformed => {
            let broken = match f.echo_key {
                true => format!("upstream rejected {}: not json", echo(&f, &token)),
                false => {
                    r#"{"id": "mock-broken", "object": "chat.completion", "choices": ["#.into()
                }
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                broken,
            )
                .into_response()
        }
        Some(f) if f.kind == FaultKind::ErrorIn200 => {
            let code = f.code.unwrap_or(500);
            let mut message = f
                .message
                .clone()
                .unwrap_or_else(|| error_type(code).1.to_string());
            if f.echo_key {
                message = format!("{} {message}", echo(&f, &token));
            }
            Json(json!({"error": {"code": code, "message": message}})).into_response()
        }
        Some(f) if f.kind == FaultKind::Empty => {
            shared.completion(&req, &prompt, String::new(), ms)
        }
        Some(f) if f.kind == FaultKind::Echo => {
            let content = format!("Your key is {}.", echo(&f, &token));
            charged = shared.charge(&req.model, capped(&req, &content).1);
            shared.completion(&req, &prompt, content, ms)
        }
        Some(f) if f.kind == FaultKind::Endless => streamed(None, false),
        Some(f) if f.kind == FaultKind::Huge => streamed(f.size_bytes, f.announce_length),
        _ => match tool_turn(&req) {
            Some(Turn::Call(name)) => {
                charged = shared.charge(&req.model, 1);
                tool_call_completion(&req, &prompt, &name)
            }
            Some(Turn::Answer(content)) => {
                charged = shared.charge(&req.model, capped(&req, &content).1);
                shared.completion(&req, &prompt, content, ms)
            }
            None => {
                let content = answer(&req, &prompt, ms);
                charged = shared.charge(&req.model, capped(&req, &content).1);
                shared.completion(&req, &prompt, content, ms)
            }
        },
    };
    put_raw(resp.headers_mut(), &extra);
    if let Some((rpm, remaining, reset)) = limit {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(rpm));
        h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from(now_ms() + reset.as_millis() as u64),
        );
    }
    if let Some((tpm, remaining, reset)) = charged.filter(|_| ms.is_some_and(|m| m.token_headers)) {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit-tokens", HeaderValue::from(tpm));
        h.insert("x-ratelimit-remaining-tokens", HeaderValue::from(remaining));
        put(
            h,
            "x-ratelimit-reset-tokens",
            format!("{}ms", reset.as_millis()),
        );
    }
    resp
}

/// The bearer token of a request, if any (only to echo it back).
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case("bearer ")
        .then(|| token.to_string())
}

/// The echoed token of an `echo_key` fault, after `echo_pad` filler.
fn echo(f: &Fault, token: &Option<String>) -> String {
    format!(
        "{}{}",
        "x".repeat(f.echo_pad.min(1 << 20)),
        token.as_deref().unwrap_or("(no token)")
    )
}

/// Headers of a fault, verbatim (checked when the script was validated).
fn put_raw(headers: &mut HeaderMap, extra: &BTreeMap<String, String>) {
    for (name, value) in extra {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
}

/// A 200 completion streamed in 64 KiB chunks, generated on the fly so the
/// mock itself stays small: `content_len` bytes of content, or without end.
fn streamed(content_len: Option<u64>, announce: bool) -> Response {
    const HEAD: &str = r#"{"id": "mock-huge", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ""#;
    const TAIL: &str =
        r#""}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}"#;
    let total = content_len.map(|n| HEAD.len() as u64 + n + TAIL.len() as u64);
    let body = Streamed {
        head: Some(Bytes::from_static(HEAD.as_bytes())),
        filler: Bytes::from(vec![b'a'; 64 * 1024]),
        left: content_len,
        tail: Some(Bytes::from_static(TAIL.as_bytes())),
        exact: total.filter(|_| announce),
    };
    let mut resp = Response::new(axum::body::Body::new(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The body of [`streamed`]: head, filler chunks, tail.
struct Streamed {
    head: Option<Bytes>,
    filler: Bytes,
    /// Filler bytes still to send; None = endless.
    left: Option<u64>,
    tail: Option<Bytes>,
    /// Announced length (Content-Length) if any; chunked otherwise.
    exact: Option<u64>,
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let data = if let Some(h) = this.head.take() {
            Some(h)
        } else {
            match this.left {
                None => Some(this.filler.clone()),
                Some(0) => this.tail.take(),
                Some(n) => {
                    let len = n.min(this.filler.len() as u64);
                    this.left = Some(n - len);
                    Some(this.filler.slice(..len as usize))
                }
            }
        };
        std::task::Poll::Ready(data.map(|d| Ok(hyper::body::Frame::data(d))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.exact {
            Some(n) => hyper::body::SizeHint::with_exact(n),
            None => hyper::body::SizeHint::default(),
        }
    }
}

/// What a tool-loop request gets.
enum Turn {
    /// Call this tool.
    Call(String),
    /// Answer with this text.
    Answer(String),
}

/// Tool loops, deterministically: a request that offers tools and has no
/// tool result since its last user message calls the first tool offered
/// (arguments `{"query": <the user message's first word>}`); once tool
/// results came back, the answer quotes them (`From the tools: a; b`).
fn tool_turn(req: &ChatRequest) -> Option<Turn> {
    let last_user = req.messages.iter().rposition(|m| m.role == "user")?;
    let results: Vec<String> = req.messages[last_user..]
        .iter()
        .filter(|m| m.role == "tool")
        .map(|m| content_text(&m.content))
        .collect();
    if !results.is_empty() {
        return Some(Turn::Answer(format!(
            "From the tools: {}",
            results.join("; ")
        )));
    }
    let first = req.tools.first()?;
    let name = first.get("function")?.get("name")?.as_str()?;
    Some(Turn::Call(name.to_string()))
}

/// A completion asking for one call of tool `name`.
fn tool_call_completion(req: &ChatRequest, prompt: &Prompt, name: &str) -> Response {
    let word = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| content_text(&m.content))
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let args = json!({"query": word}).to_string();
    Json(json!({
        "id": format!("mock-{:016x}", prompt.seed),
        "object": "chat.completion",
        "created": now_ms() / 1000,
        "model": req.model,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": format!("call_{:08x}", prompt.seed as u32), "type": "function",
                            "function": {"name": name, "arguments": args}}]}}],
        "usage": {"prompt_tokens": prompt.tokens, "completion_tokens": 1, "total_tokens": prompt.tokens + 1},
    }))
    .into_response()
}

/// A reply cut to the request's `max_tokens` ([`tokens_of`] × 4
/// characters): (content, its tokens, whether it was cut).
fn capped(req: &ChatRequest, content: &str) -> (String, u64, bool) {
    let tokens = tokens_of(content);
    match req.max_tokens {
        Some(max) if tokens > max => {
            let keep = usize::try_from(max.saturating_mul(4)).unwrap_or(usize::MAX);
            let cut: String = content.chars().take(keep).collect();
            let n = tokens_of(&cut);
            (cut, n, true)
        }
        _ => (content.to_string(), tokens, false),
    }
}

impl Shared {
    /// The OpenAI chat.completion envelope. `usage` follows the model's
    /// script (prices, `omit_cost`, `omit_usage`) and is added to the
    /// stats' bill.
    fn completion(
        &self,
        req: &ChatRequest,
        prompt: &Prompt,
        content: String,
        script: Option<&ModelScript>,
    ) -> Response {
        let (content, completion, cut) = capped(req, &content);
        let total = prompt.tokens + completion;
        let finish = if cut { "length" } else { "stop" };
        let mut body = json!({
            "id": format!("mock-{:016x}{:08x}", prompt.seed, fastrand::u32(..)),
            "object": "chat.completion",
            "created": now_ms() / 1000,
            "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        });
        if !script.is_some_and(|m| m.omit_usage) {
            let mut usage = json!({"prompt_tokens": prompt.tokens, "completion_tokens": completion,
                                   "total_tokens": total});
            let mut cost = None;
            if !script.is_some_and(|m| m.omit_cost) {
                let flat = script.and_then(|m| m.cost_per_mtok).unwrap_or(1.0);
                let p = script.and_then(|m| m.prompt_cost_per_mtok).unwrap_or(flat);
                let c = script
                    .and_then(|m| m.completion_cost_per_mtok)
                    .unwrap_or(flat);
                let figure = (prompt.tokens as f64 * p + completion as f64 * c) / 1_000_000.0;
                usage["cost"] = json!(figure);
                cost = Some(figure);
            }
            body["usage"] = usage;
            let mut inner = self.lock();
            inner.stats.billed.add(prompt.tokens, completion, cost);
            inner
                .stats
                .billed_by_model
                .entry(req.model.clone())
                .or_default()
                .add(prompt.tokens, completion, cost);
        }
        Json(body).into_response()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// IMF-fixdate (RFC 9110) of an epoch second, as Retry-After dates use.
fn http_date(epoch_s: u64) -> Option<String> {
    let dt = chrono::DateTime::from_timestamp(i64::try_from(epoch_s).ok()?, 0)?;
    Some(dt.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

/// OpenAI's error `type` and a default message for a status, so clients
/// can classify by either.
fn error_type(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request_error", "Bad request"),
        401 => ("authentication_error", "Invalid API key"),
        402 => ("insufficient_quota", "Insufficient credits"),
        403 => ("permission_error", "Forbidden"),
        404 => ("not_found_error", "The model does not exist"),
        408 => ("timeout_error", "Request timed out"),
        429 => ("rate_limit_error", "Rate limit exceeded"),
        451 => ("moderation_error", "Input flagged by moderation"),
        500..=599 => ("server_error", "The server had an error"),
        _ => ("api_error", "Request failed"),
    }
}

fn error_json(status: u16, message: &str) -> Value {
    json!({"error": {"message": message, "type": error_type(status).0, "code": status}})
}

fn error_response(status: u16, body: Value, headers: HeaderMap) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, headers, Json(body)).into_response()
}

fn put(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// The limiter's 429: Retry-After in whole seconds (at least 1) and the
/// X-RateLimit-* trio, with Reset in epoch milliseconds.
fn limited_response(model: &str, limit: u32, wait: Duration) -> Response {
    let mut h = HeaderMap::new();
    put(
        &mut h,
        "retry-after",
        wait.as_millis().div_ceil(1000).max(1),
    );
    put(&mut h, "x-ratelimit-limit", limit);
    put(&mut h, "x-ratelimit-remaining", 0);
    put(
        &mut h,
        "x-ratelimit-reset",
        now_ms() + wait.as_millis() as u64,
    );
    let msg = format!("Rate limit reached for {model}: {limit} requests per minute");
    error_response(429, error_json(429, &msg), h)
}

/// The tpm limiter's 429: Retry-After in whole seconds (at least 1) and
/// OpenAI's token headers.
fn token_limited_response(model: &str, limit: u64, wait: Duration) -> Response {
    let mut h = HeaderMap::new();
    put(
        &mut h,
        "retry-after",
        wait.as_millis().div_ceil(1000).max(1),
    );
    put(&mut h, "x-ratelimit-limit-tokens", limit);
    put(&mut h, "x-ratelimit-remaining-tokens", 0);
    put(
        &mut h,
        "x-ratelimit-reset-tokens",
        format!("{}ms", wait.as_millis()),
    );
    let msg = format!("Rate limit reached for {model}: {limit} tokens per minute");
    error_response(429, error_json(429, &msg), h)
}

/// A scripted HTTP error with exactly the scripted headers.
fn fault_response(f: &Fault, token: &Option<String>) -> Response {
    let status = f.status.unwrap_or(500);
    let mut h = HeaderMap::new();
    match f.retry_after {
        // Round up so the date is never earlier than `secs` from now.
        Some(secs) if f.retry_after_date => {
            if let Some(date) = http_date(
                now_ms()
                    .saturating_add(secs.saturating_mul(1000))
                    .div_ceil(1000),
            ) {
                put(&mut h, "retry-after", date);
            }
        }
        Some(secs) => put(&mut h, "retry-after", secs),
        None => {}
    }
    if let Some(ms) = f.reset_epoch_ms {
        put(&mut h, "x-ratelimit-reset", now_ms().saturating_add(ms));
    }
    if let Some(s) = f.reset_epoch_s {
        put(
            &mut h,
            "x-ratelimit-reset",
            (now_ms() / 1000).saturating_add(s),
        );
    }
    put_raw(&mut h, &f.headers);
    if f.endless_body {
        let mut resp = streamed(None, false);
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        resp.headers_mut().extend(h);
        return resp;
    }
    let body = match &f.body {
        Some(b) => match serde_json::from_str::<Value>(b) {
            Ok(v @ Value::Object(_)) => v,
            _ => error_json(status, b),
        },
        None if f.echo_key => error_json(
            status,
            &format!("{} {}", echo(f, token), error_type(status).1),
        ),
        None => error_json(status, error_type(status).1),
    };
    error_response(status, body, h)
}

/// What the answer generator needs from a request.
struct Prompt {
    /// First 8 bytes of sha256(model, contents): all randomness derives from it.
    seed: u64,
    /// All message contents, for marker and verdict detection.
    all: String,
    /// User messages (all messages if none), minus any schema: topic words.
    user: String,
    /// Prompt tokens: every message's [`tokens_of`] plus
    /// [`MESSAGE_OVERHEAD_TOKENS`] each.
    tokens: u64,
}

impl Prompt {
    fn new(req: &ChatRequest) -> Prompt {
        let texts: Vec<(&str, String)> = req
            .messages
            .iter()
            .map(|m| (m.role.as_str(), content_text(&m.content)))
            .collect();
        let mut hasher = Sha256::new();
        hasher.update(req.model.as_bytes());
        for (_, t) in &texts {
            hasher.update([0u8]);
            hasher.update(t.as_bytes());
        }
        let seed = hasher
            .finalize()
            .iter()
            .take(8)
            .fold(0u64, |acc, b| acc << 8 | u64::from(*b));
        let join = |user_only: bool| {
            let parts = texts.iter().filter(|(r, _)| !user_only || *r == "user");
            parts
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let all = join(false);
        let user = Some(join(true))
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| all.clone());
        let user = match marker_schema(&user) {
            Some((_, start, end)) => format!("{}\n{}", &user[..start], &user[end..]),
            None => user,
        };
        let tokens = texts
            .iter()
            .map(|(_, t)| tokens_of(t) + MESSAGE_OVERHEAD_TOKENS)
            .sum();
        Prompt {
            seed,
            all,
            user,
            tokens,
        }
    }
}

/// The first JSON object after a `JSON schema:` marker, with the byte span
/// of marker plus object (so topic words exclude the schema's keywords).
fn marker_schema(text: &str) -> Option<(Value, usize, usize)> {
    for (idx, _) in text.match_indices(SCHEMA_MARKER) {
        let after = idx + SCHEMA_MARKER.len();
        let rest = &text[after..];
        // Tolerate a ```json fence between the marker and the object.
        let skip = match rest.trim_start().starts_with('{') {
            true => 0,
            false => rest.find('{').filter(|&i| i <= 16).unwrap_or(0),
        };
        let mut stream = serde_json::Deserializer::from_str(&rest[skip..]).into_iter::<Value>();
        if let Some(Ok(v @ Value::Object(_))) = stream.next() {
            return Some((v, idx, after + skip + stream.byte_offset()));
        }
    }
    None
}

/// JSON mode: `Some(schema)` if the answer must be JSON, by marker or
/// `response_format`; the inner `None` means "any JSON object".
fn json_mode(req: &ChatRequest, all: &str) -> Option<Option<Value>> {
    if let Some((schema, _, _)) = marker_schema(all) {
        return Some(Some(schema));
    }
    let rf = req.response_format.as_ref()?;
    match rf["type"].as_str() {
        Some("json_schema") => Some(rf.pointer("/json_schema/schema").cloned()),
        Some("json_object") => Some(None),
        _ => None,
    }
}

/// The answer text: JSON, a verdict, or a markdown section.
fn answer(req: &ChatRequest, prompt: &Prompt, model: Option<&ModelScript>) -> String {
    let verdict = model.and_then(|m| m.verdict.as_deref());
    let mut g = Gen::new(prompt, verdict);
    if let Some(schema) = json_mode(req, &prompt.all) {
        let value = g.object(schema.as_ref().unwrap_or(&Value::Null));
        let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
        return match model.is_some_and(|m| m.fence_json) {
            true => format!("```json\n{text}\n```"),
            false => text,
        };
    }
    if prompt.all.contains("PASS") && prompt.all.contains("FAIL") {
        return verdict.unwrap_or("PASS").to_string();
    }
    g.markdown()
}

/// Words that make poor topic words: function words and instruction verbs.
const STOPWORDS: &[&str] = &[
    "about",
    "above",
    "across",
    "also",
    "analyse",
    "analyze",
    "answer",
    "based",
    "been",
    "being",
    "below",
    "could",
    "describe",
    "does",
    "each",
    "excerpt",
    "explain",
    "extract",
    "following",
    "from",
    "given",
    "have",
    "identify",
    "into",
    "introduce",
    "json",
    "list",
    "must",
    "only",
    "over",
    "paper",
    "please",
    "provide",
    "return",
    "review",
    "schema",
    "section",
    "should",
    "such",
    "summarise",
    "summarize",
    "text",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "under",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "will",
    "with",
    "would",
    "write",
    "your",
];

/// Distinct lower-case content words of `text`, in order of appearance.
fn keywords(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for tok in text.split(|c: char| !(c.is_alphanumeric() || c == '-')) {
        let t = tok.trim_matches('-').to_lowercase();
        let short = t.chars().count() < 4 || t.chars().all(|c| c.is_ascii_digit());
        if !short && !STOPWORDS.contains(&t.as_str()) && seen.insert(t.clone()) {
            out.push(t);
        }
    }
    if out.is_empty() {
        out = ["method", "evidence", "results", "approach"]
            .map(String::from)
            .to_vec();
    }
    out
}

/// Whether `word` occurs as a whole word in `text`.
fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|t| t == word)
}

const VERBS: &[&str] = &[
    "reduces",
    "improves",
    "stabilises",
    "clarifies",
    "extends",
    "constrains",
];
const GERUNDS: &[&str] = &[
    "combining",
    "reweighting",
    "aligning",
    "regularising",
    "comparing",
];

/// Deterministic text generator seeded from the request.
struct Gen<'a> {
    rng: fastrand::Rng,
    kw: Vec<String>,
    prompt: &'a Prompt,
    verdict: Option<&'a str>,
}

impl<'a> Gen<'a> {
    fn new(prompt: &'a Prompt, verdict: Option<&'a str>) -> Gen<'a> {
        let rng = fastrand::Rng::with_seed(prompt.seed);
        Gen {
            rng,
            kw: keywords(&prompt.user),
            prompt,
            verdict,
        }
    }

    fn kw(&mut self) -> String {
        self.kw[self.rng.usize(..self.kw.len())].clone()
    }

    fn pick(&mut self, list: &[&str]) -> String {
        list[self.rng.usize(..list.len())].to_string()
    }

    /// A JSON object following a JSON-schema (`properties`) or the
    /// FlatAgents shorthand (`{field: {type, description, enum}}`).
    fn object(&mut self, schema: &Value) -> Value {
        let empty = Map::new();
        let obj = schema.as_object().unwrap_or(&empty);
        let fields = obj
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(obj);
        let mut out = Map::new();
        for (name, spec) in fields.iter().filter(|(_, spec)| spec.is_object()) {
            out.insert(name.clone(), self.value(name, spec));
        }
        if out.is_empty() {
            out.insert("answer".into(), json!(self.field_text("answer", "")));
        }
        Value::Object(out)
    }

    /// One field's value by its (JSON-schema or shorthand) type.
    fn value(&mut self, name: &str, spec: &Value) -> Value {
        if let Some(v) = spec["enum"].as_array().and_then(|c| self.pick_enum(c)) {
            return v;
        }
        let ty = match &spec["type"] {
            Value::String(s) => s.as_str(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or(""),
            _ => "",
        };
        match ty {
            "integer" | "int" => json!(self.rng.u64(1..=10)),
            "number" | "float" => json!(f64::from(self.rng.u32(0..100)) / 100.0),
            "boolean" | "bool" => Value::Bool(true),
            "array" | "list" => {
                let items = &spec["items"];
                let typed = items["type"]
                    .as_str()
                    .is_some_and(|t| t != "string" && t != "str");
                let one = |g: &mut Self| match typed {
                    true => g.value(name, items),
                    false => json!(format!("{} {}", g.kw(), g.kw())),
                };
                Value::Array((0..3).map(|_| one(self)).collect())
            }
            "object" | "json" | "dict" if spec["properties"].is_object() => self.object(spec),
            "object" | "json" | "dict" => {
                json!({"note": format!("{} relates to {}", self.kw(), self.kw())})
            }
            _ => json!(self.field_text(name, spec["description"].as_str().unwrap_or(""))),
        }
    }

    /// The script's verdict if allowed; PASS when the prompt (schema
    /// included) names upper-case enum values, i.e. a review verdict;
    /// otherwise the first value.
    fn pick_enum(&self, choices: &[Value]) -> Option<Value> {
        let names: Vec<&str> = choices.iter().filter_map(Value::as_str).collect();
        if let Some(v) = self.verdict.filter(|v| names.contains(v)) {
            return Some(json!(v));
        }
        let upper = |c: &str| c.chars().any(char::is_alphabetic) && c.to_uppercase() == c;
        let named = names
            .iter()
            .any(|c| upper(c) && has_word(&self.prompt.all, c));
        if named && names.contains(&"PASS") {
            return Some(json!("PASS"));
        }
        choices.first().cloned()
    }

    /// 1-3 plausible sentences about a field, from prompt words and the
    /// field's name and description.
    fn field_text(&mut self, name: &str, desc: &str) -> String {
        let label = name.replace(['_', '-'], " ");
        let topic = match desc.is_empty() {
            true => label.clone(),
            false => keywords(desc).swap_remove(0), // never empty: it has a fallback
        };
        let (k1, k2, k3) = (self.kw(), self.kw(), self.kw());
        let (verb, ger) = (self.pick(VERBS), self.pick(GERUNDS));
        let all = [
            format!("The method {verb} {k1} by {ger} {k2} and {k3}."),
            format!("Regarding the {label}, the text links {k2} to {topic}."),
            format!("This matters because {k3} shapes how {k1} is evaluated."),
        ];
        all[..self.rng.usize(1..=3)].join(" ")
    }

    /// A verbatim phrase of 3-6 words from one line of the user prompt,
    /// so evidence checks can find it in the source.
    fn anchor(&mut self) -> Option<String> {
        let lines: Vec<&str> = (self.prompt.user.lines())
            .filter(|l| l.split_whitespace().count() >= 3 && !l.contains('"'))
            .collect();
        let line = *lines.get(self.rng.usize(..lines.len().max(1)))?;
        let spans: Vec<(usize, usize)> = (line.split_whitespace())
            .map(|t| (t.as_ptr() as usize - line.as_ptr() as usize, t.len()))
            .collect();
        let n = spans.len().min(self.rng.usize(3..=6));
        let first = self.rng.usize(..=spans.len() - n);
        let (start, (last, len)) = (spans[first].0, spans[first + n - 1]);
        let phrase = line[start..last + len].trim_matches(|c: char| !c.is_alphanumeric());
        (!phrase.is_empty()).then(|| phrase.to_string())
    }

    /// The sections the prompt asks for (its `## Heading` lines), each with
    /// two paragraphs; without such lines, one section titled from the
    /// prompt's first words. Paragraphs carry a quoted evidence anchor and an
    /// "Assumption:" sentence, the shape the pipeline's section checks expect.
    fn markdown(&mut self) -> String {
        // The instruction comes last ("Write exactly these sections: ## A
        // ## B"); headings quoted earlier (paper text, drafts) are not asked for.
        let lines: Vec<&str> = self.prompt.user.lines().collect();
        let asks = |l: &str| {
            let l = l.to_ascii_lowercase();
            !l.trim_start().starts_with("## ") && (l.contains("heading") || l.contains("sections"))
        };
        let from = lines
            .iter()
            .rposition(|l| asks(l))
            .filter(|i| lines[i + 1..].iter().any(|l| l.trim().starts_with("## ")))
            .map_or(0, |i| i + 1);
        let requested: Vec<String> = (lines[from..].iter())
            .filter_map(|l| l.trim().strip_prefix("## "))
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        if !requested.is_empty() {
            let mut seen = BTreeSet::new();
            let parts: Vec<String> = requested
                .into_iter()
                .filter(|h| seen.insert(h.clone()))
                .map(|h| self.section(&h))
                .collect();
            return parts.join("\n");
        }
        let user = &self.prompt.user;
        let first_line = user.lines().find(|l| l.chars().any(char::is_alphanumeric));
        let mut words: Vec<&str> = (first_line.unwrap_or("").split_whitespace())
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty())
            .take(6)
            .collect();
        while words.len() > 1 && words.last().is_some_and(|w| w.len() <= 3) {
            words.pop();
        }
        let joined = words.join(" ");
        let mut chars = joined.chars();
        let heading: String = match chars.next() {
            Some(c) => c.to_uppercase().chain(chars).collect(),
            None => "Analysis".to_string(),
        };
        self.section(&heading)
    }

    /// `## heading` and two paragraphs of 3-4 sentences.
    fn section(&mut self, heading: &str) -> String {
        let quote = self
            .anchor()
            .unwrap_or_else(|| format!("{} {}", self.kw(), self.kw()));
        let (k1, k2, k3, k4, k5) = (self.kw(), self.kw(), self.kw(), self.kw(), self.kw());
        let (v1, v2, ger) = (self.pick(VERBS), self.pick(VERBS), self.pick(GERUNDS));
        let mut p1 = vec![
            format!("This section examines {k1} and {k2} in the context of {k3}."),
            format!("The source states \"{quote}\", which anchors the discussion of {k1}."),
            format!("The method {v1} {k2} by {ger} {k3} with {k4}."),
            format!("Taken together, {k4} appears central to the contribution."),
        ];
        let mut p2 = vec![
            format!("Assumption: {k2} behaves consistently across the settings described."),
            format!("Under this reading, {k3} {v2} {k5}, within the stated scope."),
            format!("A remaining limitation is that {k1} may depend on {k5}."),
            format!("Further work should test {k4} directly."),
        ];
        p1.truncate(self.rng.usize(3..=4));
        p2.truncate(self.rng.usize(3..=4));
        format!("## {heading}\n\n{}\n\n{}\n", p1.join(" "), p2.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(model: &str, user: &str) -> ChatRequest {
        let body = json!({"model": model, "messages": [{"role": "user", "content": user}]});
        parse_request(body.to_string().as_bytes()).expect("valid request")
    }

    fn script(yaml: &str) -> MockScript {
        MockScript::parse(yaml).expect("valid script")
    }

    #[test]
    fn limiter_is_an_exact_sliding_window() {
        let s = script("models:\n  m:\n    rpm: 2\n");
        let mut inner = Inner::default();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert!(matches!(
            inner.decide(&s, "m", at(0)),
            Decision::Accept {
                limit: Some((2, 1, _)),
                ..
            }
        ));
        assert!(matches!(
            inner.decide(&s, "m", at(10)),
            Decision::Accept {
                limit: Some((2, 0, _)),
                ..
            }
        ));
        // Full until the first acceptance is 60 s old; refusals take no slot.
        let d = inner.decide(&s, "m", at(30));
        assert_eq!(
            d,
            Decision::Limited {
                limit: 2,
                wait: Duration::from_secs(30)
            }
        );
        assert!(matches!(
            inner.decide(&s, "m", at(59)),
            Decision::Limited { .. }
        ));
        assert!(matches!(
            inner.decide(&s, "m", at(60)),
            Decision::Accept { .. }
        ));
        let d = inner.decide(&s, "m", at(61));
        assert_eq!(
            d,
            Decision::Limited {
                limit: 2,
                wait: Duration::from_secs(9)
            }
        );
        // Other models have their own window (and none without rpm).
        assert!(matches!(
            inner.decide(&s, "x", at(61)),
            Decision::Accept { limit: None, .. }
        ));
    }

    #[test]
    fn tpm_refuses_a_prompt_past_the_minute_and_takes_no_slot() {
        let s = script("models:\n  m: {rpm: 5, tpm: 100}\n");
        let shared = Shared {
            script: s,
            inner: Mutex::new(Inner::default()),
        };
        let now = Instant::now();
        assert!(matches!(
            shared.decide("m", now, false, 60),
            Decision::Accept { .. }
        ));
        // 60 prompt + 30 reply = 90 used: 20 more does not fit.
        assert_eq!(shared.charge("m", 30).map(|c| (c.0, c.1)), Some((100, 10)));
        assert!(matches!(
            shared.decide("m", now, false, 20),
            Decision::TokenLimited { limit: 100, .. }
        ));
        // The refusal took no rpm slot; a small prompt still fits.
        assert!(matches!(
            shared.decide("m", now, false, 10),
            Decision::Accept {
                limit: Some((5, 3, _)),
                ..
            }
        ));
        assert_eq!(shared.lock().stats.by_status.get("429"), Some(&1));
    }

    #[test]
    fn faults_follow_per_model_request_numbers_first_match_wins() {
        let s = script("models:\n  \"*\":\n    faults:\n      - {at: 2, status: 503}\n      - {every: 2, kind: empty}\n");
        let mut inner = Inner::default();
        let now = Instant::now();
        let kinds: Vec<Decision> = (0..4).map(|_| inner.decide(&s, "a", now)).collect();
        assert!(matches!(kinds[0], Decision::Accept { fault: None, .. }));
        assert!(matches!(&kinds[1], Decision::Fail(f) if f.status == Some(503)));
        assert!(
            matches!(&kinds[3], Decision::Accept { fault: Some(f), .. } if f.kind == FaultKind::Empty)
        );
        assert!(matches!(
            inner.decide(&s, "b", now),
            Decision::Accept { fault: None, .. }
        ));
    }

    #[test]
    fn scripts_are_validated() {
        assert!(MockScript::parse("").is_ok());
        assert!(MockScript::parse("models: {m: {rpm: 0}}").is_err());
        assert!(MockScript::parse("models: {m: {cost_per_mtok: -1}}").is_err());
        assert!(MockScript::parse("models: {m: {cost_per_mtok: .nan}}").is_err());
        let costs = script("models: {m: {cost_per_mtok: 2.5, omit_cost: true, omit_usage: true}}");
        assert_eq!(costs.models["m"].cost_per_mtok, Some(2.5));
        assert!(costs.models["m"].omit_cost && costs.models["m"].omit_usage);
        assert!(
            MockScript::parse("models: {m: {faults: [{at: 1, every: 2, status: 500}]}}").is_err()
        );
        assert!(MockScript::parse("models: {m: {faults: [{at: 1, status: 200}]}}").is_err());
        assert!(MockScript::parse("models: {m: {faults: [{at: 1, kind: bogus}]}}").is_err());
        assert!(MockScript::parse("models: {m: {faults: [{at: 1, kind: huge}]}}").is_err());
        assert!(MockScript::parse(
            "models: {m: {faults: [{at: 1, kind: delay, headers: {\"bad name\": x}}]}}"
        )
        .is_err());
        let hostile = script(
            "models: {m: {faults: [{every: 1, status: 429, headers: {retry-after: \"1e20\"}, echo_key: true, echo_pad: 3}]}}",
        );
        assert_eq!(hostile.models["m"].faults[0].headers["retry-after"], "1e20");
        let ok = script("models: {m: {faults: [{at: 1, kind: error_in_200, code: 429}]}}");
        assert_eq!(ok.models["m"].faults[0].kind, FaultKind::ErrorIn200);
    }

    #[test]
    fn schema_marker_is_found_with_its_span_even_fenced() {
        let text = "Intro words.\nJSON schema:\n```json\n{\"a\": {\"type\": \"int\"}}\n```\nTail.";
        let (v, start, end) = marker_schema(text).expect("schema");
        assert_eq!(v, json!({"a": {"type": "int"}}));
        assert_eq!(
            &text[start..end],
            "JSON schema:\n```json\n{\"a\": {\"type\": \"int\"}}"
        );
        assert!(marker_schema("JSON schema: none here").is_none());
    }

    #[test]
    fn answers_are_deterministic_and_shaped() {
        let r = req(
            "m",
            "Explain the results.\nThe ablation shows that dropout improves calibration.",
        );
        let p = Prompt::new(&r);
        let md = answer(&r, &p, None);
        assert_eq!(md, answer(&r, &Prompt::new(&r), None));
        assert!(md.starts_with("## Explain the results\n\n"), "{md}");
        let quote = md.split('"').nth(1).expect("anchor");
        assert!(p.user.contains(quote));
        assert!(md.contains("Assumption: "));
        assert_ne!(
            answer(
                &req("other", &p.all),
                &Prompt::new(&req("other", &p.all)),
                None
            ),
            md
        );
    }

    #[test]
    fn verdicts_and_enums() {
        let r = req("m", "Grade it: PASS or FAIL.");
        let strict = ModelScript {
            verdict: Some("REPAIR".into()),
            ..Default::default()
        };
        assert_eq!(answer(&r, &Prompt::new(&r), None), "PASS");
        assert_eq!(answer(&r, &Prompt::new(&r), Some(&strict)), "REPAIR");
        let r = req(
            "m",
            "Check.\nJSON schema: {\"v\": {\"type\": \"str\", \"enum\": [\"FAIL\", \"PASS\"]}}",
        );
        let v: Value = serde_json::from_str(&answer(&r, &Prompt::new(&r), None)).unwrap();
        assert_eq!(v, json!({"v": "PASS"}));
    }

    #[test]
    fn keywords_skip_stopwords_and_schema_text() {
        let r = req(
            "m",
            "Summarise sparse attention.\nJSON schema: {\"description\": {\"type\": \"str\"}}",
        );
        assert_eq!(keywords(&Prompt::new(&r).user), ["sparse", "attention"]);
        assert_eq!(keywords("a an the").len(), 4, "falls back to generic words");
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        assert_eq!(
            http_date(784_111_777).as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
    }
}
