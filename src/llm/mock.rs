//! Mock OpenAI-compatible provider for tests and the demo.
//!
//! The product's real client talks to this over loopback HTTP, so everything
//! a real provider can surprise us with (rate limits in the several header
//! conventions found in the wild, 5xx, moderation blocks, context overflow,
//! slow or broken answers) can be scripted per model and replayed exactly.
//! Answers derive from a SHA-256 of the request, so equal requests get equal
//! answers, which lets resume tests compare runs.

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
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Scripted behaviour of the mock: latency, per-model limits and faults.
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
    pub latency_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    /// Reply to verdict prompts (and preferred enum value), e.g. `REPAIR`.
    pub verdict: Option<String>,
    /// Wrap JSON answers in ```json fences to exercise fence stripping.
    pub fence_json: bool,
    /// Faults by this model's 1-based request number; first match wins.
    pub faults: Vec<Fault>,
}

/// What a fault does; `status` (an HTTP error) unless said otherwise.
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
}

/// One scripted fault. Exactly one of `at` / `every` selects the requests.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    pub at: Option<u64>,
    pub every: Option<u64>,
    pub kind: FaultKind,
    pub status: Option<u16>,
    /// Retry-After in seconds (or as an HTTP date with `retry_after_date`).
    pub retry_after: Option<u64>,
    pub retry_after_date: bool,
    /// X-RateLimit-Reset = now in epoch milliseconds + this.
    pub reset_epoch_ms: Option<u64>,
    /// X-RateLimit-Reset = now in epoch seconds + this.
    pub reset_epoch_s: Option<u64>,
    /// Error message (or a whole JSON error body) for `status` faults.
    pub body: Option<String>,
    pub delay_ms: u64,
    /// `error_in_200`: the code and message inside the error object.
    pub code: Option<u16>,
    pub message: Option<String>,
}

impl Fault {
    /// Whether this fault applies to the model's `n`-th request.
    fn matches(&self, n: u64) -> bool {
        self.at == Some(n) || self.every.is_some_and(|e| e > 0 && n % e == 0)
    }
}

impl MockScript {
    /// Loads a YAML or JSON script (YAML is a superset of the JSON we need).
    pub fn from_file(path: &Path) -> Result<MockScript, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read mock script {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("invalid mock script {}: {e}", path.display()))
    }

    /// Parses and validates script text; an empty text is the default script.
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
            if m.rpm == Some(0) {
                return Err(format!("model {id}: rpm must be at least 1"));
            }
            for (i, f) in m.faults.iter().enumerate() {
                let at = |msg: &str| format!("model {id}: fault {}: {msg}", i + 1);
                match (f.at, f.every) {
                    (Some(0), None) | (None, Some(0)) => return Err(at("at/every must be >= 1")),
                    (Some(_), None) | (None, Some(_)) => {}
                    _ => return Err(at("needs exactly one of `at` or `every`")),
                }
                let bad_status = !f.status.is_some_and(|s| (400..=599).contains(&s));
                if f.kind == FaultKind::Status && bad_status {
                    return Err(at("a status fault needs `status` between 400 and 599"));
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
pub struct MockStats {
    pub requests: u64,
    pub by_model: BTreeMap<String, u64>,
    pub by_status: BTreeMap<String, u64>,
    pub with_auth: u64,
}

/// Per-model request number and limiter window.
#[derive(Default)]
struct ModelState {
    count: u64,
    window: VecDeque<Instant>,
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
    seq: AtomicU64,
}

/// What to do with a chat request, decided atomically with the counting.
#[derive(Debug, PartialEq)]
enum Decision {
    /// The rpm limiter refused it; `wait` until the oldest slot frees.
    Limited { limit: u32, wait: Duration },
    /// A scripted HTTP error.
    Fail(Fault),
    /// Answer (possibly with a 200-level fault); `limit` is (rpm, remaining, reset in).
    Accept {
        fault: Option<Fault>,
        limit: Option<(u32, u32, Duration)>,
    },
}

impl Inner {
    /// Counts the request for its model and applies faults, then the limiter.
    /// Scripted errors come first so they stay tied to request numbers, and
    /// they do not take a limiter slot since they are not accepted.
    fn decide(&mut self, script: &MockScript, model: &str, now: Instant) -> Decision {
        let ms = script.model(model);
        let st = self.models.entry(model.to_string()).or_default();
        st.count += 1;
        let n = st.count;
        let fault = ms.and_then(|m| m.faults.iter().find(|f| f.matches(n)).cloned());
        if let Some(f) = &fault {
            if f.kind == FaultKind::Status {
                return Decision::Fail(f.clone());
            }
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
            w.front()
                .map(|t| (*t + RPM_WINDOW).saturating_duration_since(now))
                .unwrap_or_default()
        };
        if st.window.len() >= rpm as usize {
            let wait = frees_in(&st.window);
            return Decision::Limited { limit: rpm, wait };
        }
        st.window.push_back(now);
        let remaining = rpm.saturating_sub(st.window.len() as u32);
        let limit = Some((rpm, remaining, frees_in(&st.window)));
        Decision::Accept { fault, limit }
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

    /// Decides and counts under one lock, so stats match responses exactly.
    fn decide(&self, model: &str, now: Instant, auth: bool) -> Decision {
        let mut inner = self.lock();
        let d = inner.decide(&self.script, model, now);
        let status = match &d {
            Decision::Limited { .. } => 429,
            Decision::Fail(f) => f.status.unwrap_or(500),
            Decision::Accept { .. } => 200,
        };
        inner.record(model, status, auth);
        d
    }

    /// Mean ± jitter, with the jitter drawn from the request seed.
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
            seq: AtomicU64::new(0),
        });
        let app = router(shared.clone());
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

    /// The OpenAI base URL clients should use, e.g. "http://127.0.0.1:PORT/v1".
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

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<MockStats> {
    Json(shared.lock().stats.clone())
}

/// The parts of an OpenAI chat request the mock looks at.
#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default)]
    response_format: Option<Value>,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: Value,
}

/// Text of a message content: a string, or the `text` of content parts.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn has_bearer(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7))
        .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = has_bearer(&headers);
    let req = match serde_json::from_slice::<ChatRequest>(&body) {
        Ok(r) if !r.model.is_empty() && !r.messages.is_empty() => r,
        Ok(_) => {
            return invalid(
                &shared,
                auth,
                "`model` and non-empty `messages` are required",
            )
        }
        Err(e) => {
            return invalid(
                &shared,
                auth,
                &format!("request body is not valid JSON: {e}"),
            )
        }
    };
    let prompt = Prompt::new(&req);
    let decision = shared.decide(&req.model, Instant::now(), auth);
    let latency = shared.latency(&req.model, prompt.seed);
    match decision {
        Decision::Limited { limit, wait } => limited_response(&req.model, limit, wait),
        Decision::Fail(f) => {
            tokio::time::sleep(latency).await;
            fault_response(&f)
        }
        Decision::Accept { fault, limit } => {
            let delay = fault.as_ref().map_or(0, |f| f.delay_ms);
            tokio::time::sleep(latency + Duration::from_millis(delay)).await;
            let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
            let model = shared.script.model(&req.model);
            let mut resp = answer_response(&req, &prompt, model, fault.as_ref(), seq);
            if let Some((rpm, remaining, reset)) = limit {
                let h = resp.headers_mut();
                h.insert("x-ratelimit-limit", HeaderValue::from(rpm));
                h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
                h.insert("x-ratelimit-reset", HeaderValue::from(reset_ms(reset)));
            }
            resp
        }
    }
}

/// A 400 for requests we cannot read; still counted, as real traffic.
fn invalid(shared: &Shared, auth: bool, msg: &str) -> Response {
    shared.lock().record("(invalid)", 400, auth);
    error_response(400, error_json(400, msg), HeaderMap::new())
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Epoch milliseconds `d` from now, the X-RateLimit-Reset convention we emit.
fn reset_ms(d: Duration) -> u64 {
    now_ms() + d.as_millis() as u64
}

/// IMF-fixdate (RFC 9110) of an epoch second, as Retry-After dates use.
fn http_date(epoch_s: u64) -> Option<String> {
    let dt = chrono::DateTime::from_timestamp(i64::try_from(epoch_s).ok()?, 0)?;
    Some(dt.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

/// OpenAI's error `type` for a status, so clients can classify by either.
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
    let (kind, _) = error_type(status);
    json!({"error": {"message": message, "type": kind, "code": status}})
}

fn error_response(status: u16, body: Value, headers: HeaderMap) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, headers, Json(body)).into_response()
}

fn put(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// The limiter's 429: Retry-After in whole seconds (at least 1) and the
/// X-RateLimit-* trio, Reset in epoch milliseconds.
fn limited_response(model: &str, limit: u32, wait: Duration) -> Response {
    let secs = wait.as_millis().div_ceil(1000).max(1);
    let mut h = HeaderMap::new();
    put(&mut h, "retry-after", secs.to_string());
    put(&mut h, "x-ratelimit-limit", limit.to_string());
    put(&mut h, "x-ratelimit-remaining", "0".into());
    put(&mut h, "x-ratelimit-reset", reset_ms(wait).to_string());
    let msg = format!("Rate limit reached for {model}: {limit} requests per minute");
    error_response(429, error_json(429, &msg), h)
}

/// A scripted HTTP error with exactly the scripted headers.
fn fault_response(f: &Fault) -> Response {
    let status = f.status.unwrap_or(500);
    let mut h = HeaderMap::new();
    if let Some(secs) = f.retry_after {
        let value = if f.retry_after_date {
            // Round up so the date is never earlier than `secs` from now.
            http_date((now_ms() + secs * 1000).div_ceil(1000))
        } else {
            Some(secs.to_string())
        };
        if let Some(v) = value {
            put(&mut h, "retry-after", v);
        }
    }
    if let Some(ms) = f.reset_epoch_ms {
        put(&mut h, "x-ratelimit-reset", (now_ms() + ms).to_string());
    }
    if let Some(s) = f.reset_epoch_s {
        put(
            &mut h,
            "x-ratelimit-reset",
            (now_ms() / 1000 + s).to_string(),
        );
    }
    let body = match &f.body {
        Some(b) => match serde_json::from_str::<Value>(b) {
            Ok(v @ Value::Object(_)) => v,
            _ => error_json(status, b),
        },
        None => error_json(status, error_type(status).1),
    };
    error_response(status, body, h)
}

/// A 200 answer, or one of the 200-level faults.
fn answer_response(
    req: &ChatRequest,
    prompt: &Prompt,
    model: Option<&ModelScript>,
    fault: Option<&Fault>,
    seq: u64,
) -> Response {
    let kind = fault.map(|f| f.kind);
    let content = match kind {
        Some(FaultKind::Malformed) => {
            let broken =
                "{\"id\": \"mock-broken\", \"object\": \"chat.completion\", \"choices\": [";
            let ct = [(header::CONTENT_TYPE, "application/json")];
            return (StatusCode::OK, ct, broken).into_response();
        }
        Some(FaultKind::ErrorIn200) => {
            let code = fault.and_then(|f| f.code).unwrap_or(500);
            let message = fault.and_then(|f| f.message.clone());
            let message = message.unwrap_or_else(|| error_type(code).1.to_string());
            let body = json!({"error": {"code": code, "message": message}});
            return (StatusCode::OK, Json(body)).into_response();
        }
        Some(FaultKind::Empty) => String::new(),
        _ => answer(req, prompt, model),
    };
    let completion = content.split_whitespace().count() as u64;
    let total = prompt.words + completion;
    let created = now_ms() / 1000;
    let body = json!({
        "id": format!("mock-{:016x}{seq:08x}", prompt.seed),
        "object": "chat.completion",
        "created": created,
        "model": req.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt.words,
            "completion_tokens": completion,
            "total_tokens": total,
            "cost": total as f64 * 0.000001
        }
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// What the answer generator needs from a request.
struct Prompt {
    /// First 8 bytes of sha256(model, contents): all randomness derives from it.
    seed: u64,
    /// All message contents, for marker and verdict detection.
    all: String,
    /// User messages (all messages if there are none), minus any schema.
    user: String,
    /// Whitespace word count of all messages (the mock's "tokens").
    words: u64,
}

impl Prompt {
    fn new(req: &ChatRequest) -> Prompt {
        let mut hasher = Sha256::new();
        hasher.update(req.model.as_bytes());
        let texts: Vec<(String, String)> = req
            .messages
            .iter()
            .map(|m| (m.role.clone(), content_text(&m.content)))
            .collect();
        for (_, t) in &texts {
            hasher.update([0u8]);
            hasher.update(t.as_bytes());
        }
        let digest = hasher.finalize();
        let seed = digest
            .iter()
            .take(8)
            .fold(0u64, |acc, b| acc << 8 | u64::from(*b));
        let all = texts
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let users: Vec<&str> = texts
            .iter()
            .filter(|(r, _)| r == "user")
            .map(|(_, t)| t.as_str())
            .collect();
        let user = if users.is_empty() {
            all.clone()
        } else {
            users.join("\n")
        };
        let user = match marker_schema(&user) {
            Some((_, start, end)) => format!("{}\n{}", &user[..start], &user[end..]),
            None => user,
        };
        let words = all.split_whitespace().count() as u64;
        Prompt {
            seed,
            all,
            user,
            words,
        }
    }
}

/// The first JSON object after a `JSON schema:` marker, with the byte span
/// of marker plus object (so prompt words exclude the schema's keywords).
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
    match rf.get("type").and_then(Value::as_str) {
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
        let value = match schema {
            Some(s) => g.object(&s),
            None => json!({"answer": g.field_text("answer", "")}),
        };
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

/// Words that make poor topic words in generated text.
const STOPWORDS: &[&str] = &[
    "about", "above", "also", "answer", "based", "been", "being", "below", "could", "does", "each",
    "from", "given", "have", "into", "json", "must", "only", "please", "return", "schema",
    "should", "such", "than", "that", "their", "them", "then", "there", "these", "they", "this",
    "those", "were", "what", "when", "where", "which", "will", "with", "would", "write", "your",
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
        out = ["method", "evidence", "results", "approach", "analysis"]
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

/// Deterministic text generator seeded from the request.
struct Gen<'a> {
    rng: fastrand::Rng,
    kw: Vec<String>,
    prompt: &'a Prompt,
    verdict: Option<&'a str>,
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

impl<'a> Gen<'a> {
    fn new(prompt: &'a Prompt, verdict: Option<&'a str>) -> Gen<'a> {
        Gen {
            rng: fastrand::Rng::with_seed(prompt.seed),
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
        let Some(obj) = schema.as_object() else {
            return json!({"answer": self.field_text("answer", "")});
        };
        let fields: &Map<String, Value> = match obj.get("properties").and_then(Value::as_object) {
            Some(props) => props,
            None => obj,
        };
        let out: Map<String, Value> = fields
            .iter()
            .filter(|(_, spec)| spec.is_object())
            .map(|(name, spec)| (name.clone(), self.value(name, spec)))
            .collect();
        match out.is_empty() {
            true => json!({"answer": self.field_text("answer", "")}),
            false => Value::Object(out),
        }
    }

    /// One field's value by its (JSON-schema or shorthand) type.
    fn value(&mut self, name: &str, spec: &Value) -> Value {
        if let Some(choices) = spec.get("enum").and_then(Value::as_array) {
            if let Some(v) = self.pick_enum(choices) {
                return v;
            }
        }
        let ty = match spec.get("type") {
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("string"),
            _ => "string",
        };
        let desc = spec
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        match ty {
            "integer" | "int" => json!(self.rng.u64(1..=10)),
            "number" | "float" => json!(f64::from(self.rng.u32(0..100)) / 100.0),
            "boolean" | "bool" => Value::Bool(true),
            "array" | "list" => {
                let items = spec
                    .get("items")
                    .filter(|i| i.get("type").is_some_and(|t| t != "string" && t != "str"));
                let one = |g: &mut Self| match items {
                    Some(i) => g.value(name, i),
                    None => Value::String(format!("{} {}", g.kw(), g.kw())),
                };
                Value::Array((0..3).map(|_| one(self)).collect())
            }
            "object" | "json" | "dict" if spec.get("properties").is_some() => self.object(spec),
            "object" | "json" | "dict" => {
                json!({"note": format!("{} relates to {}", self.kw(), self.kw())})
            }
            _ => Value::String(self.field_text(name, desc)),
        }
    }

    /// The script's verdict if allowed; PASS when the prompt names upper-case
    /// enum values (a review step); otherwise the first value.
    fn pick_enum(&self, choices: &[Value]) -> Option<Value> {
        let names: Vec<&str> = choices.iter().filter_map(Value::as_str).collect();
        if let Some(v) = self.verdict.filter(|v| names.contains(v)) {
            return Some(json!(v));
        }
        let upper = |c: &str| c.chars().any(char::is_alphabetic) && c.to_uppercase() == c;
        let prompt = &self.prompt.all;
        let named = names.iter().any(|c| upper(c) && has_word(prompt, c));
        if named && names.contains(&"PASS") {
            return Some(json!("PASS"));
        }
        choices.first().cloned()
    }

    /// 1-3 plausible sentences about a field, from prompt words and the
    /// field's name and description.
    fn field_text(&mut self, name: &str, desc: &str) -> String {
        let label = name.replace(['_', '-'], " ");
        let topic = keywords(desc)
            .into_iter()
            .next()
            .filter(|_| !desc.is_empty())
            .unwrap_or(label.clone());
        let (k1, k2, k3) = (self.kw(), self.kw(), self.kw());
        let (verb, ger) = (self.pick(VERBS), self.pick(GERUNDS));
        let all = [
            format!("The method {verb} {k1} by {ger} {k2} and {k3}."),
            format!("Regarding the {label}, the text links {k2} to {topic}."),
            format!("This matters because {k3} shapes how {k1} is evaluated."),
        ];
        let n = self.rng.usize(1..=3);
        all[..n].join(" ")
    }

    /// A verbatim phrase of 3-6 words from one line of the user prompt.
    fn anchor(&mut self) -> Option<String> {
        let text = &self.prompt.user;
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.split_whitespace().count() >= 3 && !l.contains('"'))
            .collect();
        if lines.is_empty() {
            return None;
        }
        let line = lines[self.rng.usize(..lines.len())];
        let spans: Vec<(usize, usize)> = line
            .split_whitespace()
            .map(|t| {
                let start = t.as_ptr() as usize - line.as_ptr() as usize;
                (start, start + t.len())
            })
            .collect();
        let n = spans.len().min(self.rng.usize(3..=6));
        let first = self.rng.usize(..=spans.len() - n);
        let phrase = &line[spans[first].0..spans[first + n - 1].1];
        let phrase = phrase.trim_matches(|c: char| !c.is_alphanumeric());
        (!phrase.is_empty()).then(|| phrase.to_string())
    }

    /// `## Heading` from the prompt's first words, then two paragraphs of 3-4
    /// sentences, with a quoted evidence anchor and an "Assumption:" line.
    fn markdown(&mut self) -> String {
        let words: Vec<&str> = self
            .prompt
            .user
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty())
            .take(6)
            .collect();
        let mut heading = if words.is_empty() {
            "Analysis".to_string()
        } else {
            words.join(" ")
        };
        if let Some(c) = heading.get(..1) {
            heading = c.to_uppercase() + &heading[1..];
        }
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
            format!("Under this reading, {k3} {v2} {k5}, although the evidence is limited to the stated scope."),
            format!("A remaining limitation is that {k1} may depend on {k5}."),
            format!("Further work should test {k4} directly."),
        ];
        p1.truncate(self.rng.usize(3..=4));
        p2.truncate(self.rng.usize(3..=4));
        format!("## {heading}\n\n{}\n\n{}\n", p1.join(" "), p2.join(" "))
    }
}
