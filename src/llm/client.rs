//! The OpenAI-compatible HTTP agent: the product path for every LLM call.
//!
//! One shared reqwest client (connection pool) for all models. Per call:
//! check the ledger for a reusable settled response (resume after a crash),
//! pass the optional [`CallGate`] (circuit breakers), wait for the model's
//! rate-limiter slot, reserve a ledger row, send, report the outcome to the
//! gate, settle, and classify failures into the runtime's error kinds. `legal_block` and
//! `model_not_found` switch the call to the profile's `fallback`.

use super::errors::{self, Target};
use super::estimate;
use super::gate::{BlockReason, CallGate, CallOutcome, CallPermit};
use super::ledger::{Ledger, Reservation, Settlement};
use super::limiter::{self, ProviderTokens, RateLimiter, Slot, SlotOutcome, TokenDemand};
use super::price::{self, CallCost, TokenUsage};
use super::profile::ModelProfile;
use crate::engine::{Agent, AgentRequest, AgentResult, ErrorKind, ExecError, Parked, Usage};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

/// Marker the prompt carries before the output schema (also what the mock
/// provider looks for to answer with the right fields).
pub const SCHEMA_MARKER: &str = "JSON schema:";

pub struct HttpAgent {
    http: reqwest::Client,
    limiter: Arc<RateLimiter>,
    ledger: Option<Ledger>,
    gate: Option<Arc<dyn CallGate>>,
    /// See [`HttpAgent::with_parking`].
    park_after: Option<std::time::Duration>,
}

impl HttpAgent {
    pub fn new(ledger: Option<Ledger>) -> Result<HttpAgent, ExecError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("paper-runner/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build()
            .map_err(|e| {
                ExecError::new(
                    ErrorKind::InvalidRequest,
                    format!("cannot build HTTP client: {e}"),
                )
            })?;
        Ok(HttpAgent {
            http,
            limiter: Arc::new(RateLimiter::new()),
            ledger,
            gate: None,
            park_after: None,
        })
    }

    /// Put `gate` in front of every real HTTP attempt (not ledger reuse).
    /// Without one, calls go straight to the limiter.
    pub fn with_gate(mut self, gate: Arc<dyn CallGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    async fn call_profile(
        &self,
        req: &AgentRequest,
        cfg: &Map<String, Value>,
        profile_name: Option<&str>,
        fallback_from: Option<&str>,
    ) -> Result<AgentResult, ExecError> {
        let p = ModelProfile::from_config(cfg)?;
        let body = request_body(req, &p);
        let reservation = Reservation {
            execution_id: req.execution_id.clone(),
            machine: req.machine.clone(),
            state: req.state.clone(),
            step: req.step,
            sample: req.sample,
            attempt: req.attempt,
            agent: req.agent_name.clone(),
            profile: profile_name.map(str::to_string),
            provider: p.provider.clone(),
            model: p.model.clone(),
            request_hash: request_hash(&p, &body, req.sample),
            fallback_from: fallback_from.map(str::to_string),
        };
        if let Some(ledger) = &self.ledger {
            if let Some(prev) = ledger.reusable(&reservation).await? {
                tracing::info!(state = %req.state, model = %p.model, "reusing the settled response of an earlier run (no request sent)");
                ledger.record_reuse(&reservation).await?;
                return Ok(prev);
            }
        }
        let key = match &p.api_key_env {
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| {
                        ExecError::new(
                            ErrorKind::AuthError,
                            format!(
                                "API key environment variable {var} is not set (provider {})",
                                p.provider
                            ),
                        )
                    })?,
            ),
            None => None,
        };
        // Gate and limiter (or park); see `wait_turn`. The token estimate
        // is taken from the request as sent (a conservative bound).
        let body_len = body.to_string().len();
        let demand = TokenDemand {
            tpm: p.tpm,
            estimate: limiter::estimate_tokens(body_len, p.max_tokens),
            output_cap: p.max_tokens.unwrap_or(limiter::UNKNOWN_OUTPUT_TOKENS),
        };
        let (permit, slot) = self.wait_turn(&p, demand).await?;
        let worst = estimate::request_worst(body_len as u64, p.max_tokens, p.price.as_ref());
        let row = match &self.ledger {
            Some(l) => match l.reserve(&reservation, worst).await? {
                Ok(id) => Some(id),
                Err(refusal) => {
                    // Nothing was reserved or sent: the phase parks until
                    // the budget day resets (the permit and the slot are
                    // given back as abandoned).
                    tracing::info!(model = %p.model, %refusal, "request does not fit the budget");
                    return Err(parked(&p, BlockReason::Budget, Some(refusal.resets_at_ms)));
                }
            },
            None => None,
        };
        let started = Instant::now();
        let mut notes = Notes::default();
        let (status, mut result) = self.send(&p, &body, key.as_deref(), req, &mut notes).await;
        let cost = match &mut result {
            Ok(r) => {
                let cost = CallCost::answered(p.price.as_ref(), notes.usage, r.cost);
                price::log_difference(&p.limiter_key(), p.price.as_ref(), notes.usage, &cost);
                // The machine's running totals see the same figure as the ledger.
                r.cost = cost.cost;
                cost
            }
            Err(_) => CallCost::failed(status),
        };
        if let Some(permit) = permit {
            let outcome = match (&result, notes.exhausted) {
                (Ok(_), Some(retry_after)) => CallOutcome::Exhausted { retry_after },
                _ => CallOutcome::of(&result),
            };
            permit.complete(&outcome).await;
        }
        // Correct the token booking to what the answer says it used (a
        // failed call keeps its estimate: the provider may have counted it).
        let used = match &result {
            Ok(r) => notes
                .usage
                .map(|u| u.prompt.saturating_add(u.completion))
                .or(Some(r.usage.total_tokens).filter(|n| *n > 0)),
            Err(_) => None,
        };
        let output = match &result {
            Ok(_) => notes.usage.map(|u| u.completion),
            Err(_) => None,
        };
        slot.settle_tokens(used, output, notes.tokens);
        slot.finish(SlotOutcome::of(&result));
        if let (Some(l), Some(id)) = (&self.ledger, row) {
            let s = Settlement {
                http_status: status,
                latency_ms: started.elapsed().as_millis() as u64,
                result: result.clone(),
                usage: notes.usage,
                cost,
            };
            l.settle(id, &s).await?;
        }
        if let Err(e) = &result {
            if e.kind == ErrorKind::RateLimit {
                self.limiter
                    .pause(&p.limiter_key(), e.retry_after.unwrap_or(1.0))
                    .await;
                // A pause longer than the park threshold: park now rather
                // than let the machine's retry sleep it out in the worker
                // slot (a Retry-After of 60 s held the phase for 60 s; its
                // next attempt would only have parked anyway).
                if let (Some(max), Some(wait)) = (self.park_after, e.retry_after) {
                    if wait.is_finite() && wait > max.as_secs_f64() {
                        let ms = (wait.min(86_400.0) * 1000.0).ceil() as i64;
                        let until = chrono::Utc::now().timestamp_millis().saturating_add(ms);
                        return Err(parked(&p, BlockReason::RateLimited, Some(until)));
                    }
                }
            }
        }
        result
    }

    /// Park instead of waiting: a call whose model is blocked for longer
    /// than `max_wait` (breaker open, limiter paused or booked further
    /// ahead, provider out of credits) returns an `interrupted` error with
    /// a [`Parked`](crate::engine::Parked) marker at once — before a ledger
    /// row is reserved, so nothing is sent or recorded — and the runner
    /// gives the phase's worker slot back. Without it calls wait (`machine
    /// run`, tests).
    pub fn with_parking(mut self, max_wait: std::time::Duration) -> Self {
        self.park_after = Some(max_wait);
        self
    }

    /// The gate, then the limiter (a call held back by an open breaker must
    /// not hold a limiter slot meanwhile). If anything after returns early,
    /// the permit is dropped uncompleted, which tells the gate the attempt
    /// was abandoned.
    async fn wait_turn(
        &self,
        p: &ModelProfile,
        demand: TokenDemand,
    ) -> Result<(Option<Box<dyn CallPermit>>, Slot), ExecError> {
        let key = p.limiter_key();
        let permit = match (&self.gate, self.park_after) {
            (Some(g), Some(max)) => match g.try_before_call(&key, &p.provider, max).await {
                Ok(permit) => Some(permit),
                Err(b) => return Err(parked(p, b.reason, b.until_ms)),
            },
            (Some(g), None) => Some(g.before_call(&key, &p.provider).await),
            (None, _) => None,
        };
        let slot = match self
            .limiter
            .try_acquire_tokens(&key, p.rate_limit, Some(demand), self.park_after)
            .await
        {
            Ok(slot) => slot,
            Err(wait) => {
                let until = chrono::Utc::now()
                    .timestamp_millis()
                    .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2));
                return Err(parked(p, BlockReason::RateLimited, Some(until)));
            }
        };
        Ok((permit, slot))
    }

    /// Send one request; returns the HTTP status (if any) and the outcome.
    /// Every error message leaving here has been through [`errors::scrub`].
    async fn send(
        &self,
        p: &ModelProfile,
        body: &Value,
        key: Option<&str>,
        req: &AgentRequest,
        notes: &mut Notes,
    ) -> (Option<u16>, Result<AgentResult, ExecError>) {
        let target = Target {
            provider: &p.provider,
            model: &p.model,
            key,
            max_retry_after: p.max_retry_after,
        };
        let (status, mut result) = self.exchange(p, body, &target, req, notes).await;
        if let Err(e) = &mut result {
            e.message = errors::scrub(&e.message, key);
        }
        (status, result)
    }

    async fn exchange(
        &self,
        p: &ModelProfile,
        body: &Value,
        target: &Target<'_>,
        req: &AgentRequest,
        notes: &mut Notes,
    ) -> (Option<u16>, Result<AgentResult, ExecError>) {
        // One deadline for the whole exchange, body included: reqwest's
        // request timeout covers it too, this makes it explicit for the
        // chunk loop below.
        let deadline = tokio::time::Instant::now() + p.timeout;
        let mut rb = self
            .http
            .post(format!("{}/chat/completions", p.base_url))
            .timeout(p.timeout)
            .json(body);
        if let Some(k) = target.key {
            rb = rb.bearer_auth(k);
        }
        for (name, value) in &p.headers {
            rb = rb.header(name.as_str(), value.as_str());
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return (None, Err(errors::from_transport(&e, target))),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let ok = (200..300).contains(&status);
        // Error bodies only feed a 300-character excerpt and a few keyword
        // checks: read a bounded prefix and drop the rest.
        let cap = if ok {
            p.max_response_bytes
        } else {
            ERROR_BODY_CAP
        };
        if ok && resp.content_length().is_some_and(|n| n > cap) {
            let n = resp.content_length().unwrap_or(cap);
            return (Some(status), Err(errors::too_large(cap, n, target)));
        }
        let text = match read_capped(resp, cap, deadline).await {
            Ok(Capped::Whole(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Capped::Over(bytes)) if !ok => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Capped::Over(bytes)) => {
                return (
                    Some(status),
                    Err(errors::too_large(cap, bytes.len() as u64, target)),
                )
            }
            Err(BodyError::Transport(e)) => {
                return (Some(status), Err(errors::from_transport(&e, target)))
            }
            Err(BodyError::Deadline) => {
                return (
                    Some(status),
                    Err(ExecError::new(
                        ErrorKind::Timeout,
                        format!(
                            "{} model {}: timed out after {:?} reading the response body",
                            target.provider, target.model, p.timeout
                        ),
                    )),
                )
            }
        };
        if !ok {
            return (
                Some(status),
                Err(errors::from_status(status, &headers, &text, target)),
            );
        }
        if errors::remaining(&headers) == Some(0.0) {
            if let Some(wait) = errors::retry_after_capped(&headers, p.max_retry_after) {
                self.limiter.pause(&p.limiter_key(), wait).await;
                notes.exhausted = Some(wait);
            }
        }
        notes.tokens =
            errors::token_window(&headers, p.max_retry_after).map(|(remaining, reset_in)| {
                ProviderTokens {
                    remaining,
                    reset_in,
                }
            });
        let result = parse_response(&text, &headers, target, req).map(|(r, usage)| {
            notes.usage = usage;
            r
        });
        (Some(status), result)
    }
}

/// What an exchange learned besides its result.
#[derive(Debug, Default)]
struct Notes {
    /// Set when a 2xx said no requests remain: the wait it asked for.
    exhausted: Option<f64>,
    /// The tokens a successful answer's `usage` reported (None: no usage).
    usage: Option<TokenUsage>,
    /// The provider's token window from a 2xx's headers, if it sent one.
    tokens: Option<ProviderTokens>,
}

/// The prompt and completion tokens of an answer's `usage`, when it has
/// both as whole numbers; None when the provider reported no usage (then
/// the ledger row's tokens and cost are unknown, not zero).
fn reported_usage(usage: Option<&Value>) -> Option<TokenUsage> {
    let u = usage?;
    Some(TokenUsage {
        prompt: u.get("prompt_tokens")?.as_u64()?,
        completion: u.get("completion_tokens")?.as_u64()?,
    })
}

/// How much of a non-2xx body is read (for the excerpt and classification).
const ERROR_BODY_CAP: u64 = 64 * 1024;

/// A body read up to a cap.
enum Capped {
    /// The whole body, within the cap.
    Whole(Vec<u8>),
    /// The body went past the cap; what was read (at most cap + one chunk).
    Over(Vec<u8>),
}

enum BodyError {
    Transport(reqwest::Error),
    Deadline,
}

/// Read a response body chunk by chunk, stopping as soon as it exceeds
/// `cap` bytes or `deadline` passes, so an endless chunked body costs at
/// most `cap` plus one chunk of memory and ends at the cap, not at EOF.
async fn read_capped(
    mut resp: reqwest::Response,
    cap: u64,
    deadline: tokio::time::Instant,
) -> Result<Capped, BodyError> {
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .map_err(|_| BodyError::Deadline)?
            .map_err(BodyError::Transport)?;
        let Some(chunk) = chunk else {
            return Ok(Capped::Whole(bytes));
        };
        let room = usize::try_from(cap.saturating_sub(bytes.len() as u64)).unwrap_or(usize::MAX);
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            // One byte past the cap marks "over" without keeping the chunk.
            bytes.push(chunk[room]);
            return Ok(Capped::Over(bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
}

#[async_trait]
impl Agent for HttpAgent {
    async fn call(&self, req: AgentRequest) -> Result<AgentResult, ExecError> {
        let agent = req.agent.clone();
        let first = self
            .call_profile(&req, &agent.model, agent.profile_name.as_deref(), None)
            .await;
        match (&first, &agent.fallback) {
            (Err(e), Some(fb))
                if matches!(e.kind, ErrorKind::LegalBlock | ErrorKind::ModelNotFound) =>
            {
                tracing::warn!(state = %req.state, kind = %e.kind, fallback = %fb.name, "switching to the fallback profile");
                let from = agent.profile_name.as_deref().unwrap_or("default");
                self.call_profile(&req, &fb.model, Some(&fb.name), Some(from))
                    .await
            }
            _ => first,
        }
    }
}

/// The error that parks a call to `p`'s model.
fn parked(p: &ModelProfile, reason: BlockReason, until_ms: Option<i64>) -> ExecError {
    let until = until_ms
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .map(|t| t.format(" until %H:%M:%SZ").to_string())
        .unwrap_or_default();
    tracing::info!(model = %p.model, reason = reason.as_str(), until_ms, "model blocked: parking the call");
    ExecError::parked(
        Parked {
            model: p.limiter_key(),
            reason: reason.as_str().to_string(),
            until_ms,
        },
        format!("parked: model {} is {reason}{until}", p.model),
    )
}

impl SlotOutcome {
    fn of(r: &Result<AgentResult, ExecError>) -> SlotOutcome {
        match r {
            Ok(res) => SlotOutcome::Answered {
                remaining: requests_remaining(res),
            },
            Err(e) if e.kind == ErrorKind::RateLimit => SlotOutcome::RateLimited,
            Err(_) => SlotOutcome::Other,
        }
    }
}

/// The provider's remaining request count from an answer's rate-limit
/// windows (`X-RateLimit-Remaining[-Requests]`), if it sent one.
fn requests_remaining(res: &AgentResult) -> Option<f64> {
    res.rate_limit
        .as_ref()?
        .get("windows")?
        .as_array()?
        .iter()
        .filter(|w| w.get("name").and_then(Value::as_str) == Some("requests"))
        .filter_map(|w| w.get("remaining").and_then(Value::as_f64))
        .reduce(f64::min)
}

/// The chat completion request body.
pub fn request_body(req: &AgentRequest, p: &ModelProfile) -> Value {
    let schema = req.agent.prompt.output.as_ref().map(json_schema);
    let system = match &schema {
        Some(s) => format!(
            "{}\n\nRespond with only a JSON object, no prose. {SCHEMA_MARKER}\n{}",
            req.system, s
        ),
        None => req.system.clone(),
    };
    let mut body = Map::new();
    body.insert("model".into(), json!(p.model));
    match req.tools.as_deref() {
        // A tool_loop turn: the conversation so far, and the tools offered.
        Some(turn) => {
            let mut messages = vec![json!({"role": "system", "content": system})];
            messages.extend(turn.messages.iter().cloned());
            body.insert("messages".into(), Value::Array(messages));
            if !turn.tools.is_empty() {
                body.insert("tools".into(), Value::Array(turn.tools.clone()));
            }
        }
        None => {
            body.insert(
                "messages".into(),
                json!([{"role": "system", "content": system}, {"role": "user", "content": req.user}]),
            );
        }
    }
    if schema.is_some() && req.tools.is_none() {
        body.insert("response_format".into(), json!({"type": "json_object"}));
    }
    if let Some(v) = p.max_tokens {
        body.insert("max_tokens".into(), json!(v));
    }
    if let Some(v) = p.temperature {
        body.insert("temperature".into(), json!(v));
    }
    if let Some(v) = p.top_p {
        body.insert("top_p".into(), json!(v));
    }
    if let Some(v) = p.seed {
        body.insert("seed".into(), json!(v));
    }
    Value::Object(body)
}

/// A prompt's `output` map (FlatAgents field types) as JSON Schema.
pub fn json_schema(output: &Map<String, Value>) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for (name, spec) in output {
        let ty = spec.get("type").and_then(Value::as_str).unwrap_or("str");
        let mut p = Map::new();
        let t = match ty {
            "str" | "string" => "string",
            "int" | "integer" => "integer",
            "float" | "number" => "number",
            "bool" | "boolean" => "boolean",
            "list" | "array" => "array",
            _ => "object",
        };
        p.insert("type".into(), json!(t));
        for k in ["description", "enum", "items", "properties"] {
            if let Some(v) = spec.get(k) {
                p.insert(k.into(), v.clone());
            }
        }
        if spec.get("required").and_then(Value::as_bool) != Some(false) {
            required.push(json!(name));
        }
        props.insert(name.clone(), Value::Object(p));
    }
    json!({"type": "object", "properties": props, "required": required})
}

fn request_hash(p: &ModelProfile, body: &Value, sample: u32) -> String {
    let mut h = Sha256::new();
    h.update(p.base_url.as_bytes());
    h.update(body.to_string().as_bytes());
    h.update(sample.to_le_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse a 200 response into an AgentResult (or an error kind), with the
/// tokens its `usage` reported (None: no usage).
fn parse_response(
    text: &str,
    headers: &reqwest::header::HeaderMap,
    t: &Target<'_>,
    req: &AgentRequest,
) -> Result<(AgentResult, Option<TokenUsage>), ExecError> {
    // A complete body: a key echoed in it goes before anything is parsed,
    // so it can reach neither the ledger's stored response nor a message.
    let text = &errors::scrub_whole(text, t.key);
    let v: Value = serde_json::from_str(text).map_err(|e| {
        let mut err = errors::from_status(502, headers, text, t);
        err.kind = ErrorKind::ServerError;
        err.message = format!("undecodable 200 response ({e}): {}", err.message);
        err
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(errors::from_error_object(err, text, t));
    }
    let choice = v.get("choices").and_then(|c| c.get(0));
    let content = choice
        .and_then(|c| c.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let finish_reason = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let tool_calls = choice
        .and_then(|c| c.get("message"))
        .map(tool_calls_of)
        .unwrap_or_default();
    if content.trim().is_empty() && tool_calls.is_empty() {
        return Err(ExecError::new(
            ErrorKind::EmptyResponse,
            format!(
                "{} model {} returned empty content (finish_reason {:?})",
                t.provider, t.model, finish_reason
            ),
        ));
    }
    let usage = v.get("usage");
    let n = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cost = usage.and_then(|u| u.get("cost")).and_then(Value::as_f64);
    let output = match &req.agent.prompt.output {
        None => None,
        // A turn that calls tools has no answer to parse yet.
        Some(_) if req.tools.is_some() => None,
        Some(_) => Some(parse_json_object(&content).ok_or_else(|| {
            let excerpt = errors::excerpt(&content, 200, t.key);
            ExecError::new(
                ErrorKind::EmptyResponse,
                format!(
                    "{} model {} did not return a JSON object: {excerpt}",
                    t.provider, t.model
                ),
            )
        })?),
    };
    let reported = reported_usage(usage);
    let result = AgentResult {
        output,
        content: Some(content),
        usage: Usage {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
            total_tokens: n("total_tokens"),
        },
        cost,
        finish_reason,
        rate_limit: Some(json!({
            "limited": false,
            "retry_after": null,
            "windows": errors::windows(headers, t.max_retry_after),
        })),
        tool_calls,
    };
    Ok((result, reported))
}

/// The `tool_calls` of an OpenAI-style assistant message (arguments parsed
/// from their JSON text when they parse, kept as text otherwise).
fn tool_calls_of(message: &Value) -> Vec<crate::engine::ToolCall> {
    let Some(calls) = message.get("tool_calls").and_then(Value::as_array) else {
        return Vec::new();
    };
    calls
        .iter()
        .filter_map(|c| {
            let f = c.get("function")?;
            let name = f.get("name").and_then(Value::as_str)?.to_string();
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => {
                    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
                }
                Some(v) => v.clone(),
                None => Value::Object(Map::new()),
            };
            Some(crate::engine::ToolCall {
                id: c
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name,
                arguments,
            })
        })
        .collect()
}

/// Parse a JSON object from model text, tolerating code fences and prose
/// around it.
pub fn parse_json_object(content: &str) -> Option<Map<String, Value>> {
    let t = content.trim();
    let unfenced = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```JSON"))
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.trim_end().strip_suffix("```"))
        .unwrap_or(t)
        .trim();
    if let Ok(Value::Object(m)) = serde_json::from_str(unfenced) {
        return Some(m);
    }
    let start = unfenced.find('{')?;
    let end = unfenced.rfind('}')?;
    match serde_json::from_str(unfenced.get(start..=end)?) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_are_found_in_fenced_or_chatty_text() {
        assert!(parse_json_object("```json\n{\"a\": 1}\n```").is_some());
        assert!(parse_json_object("Sure! {\"a\": {\"b\": 2}} Hope that helps").is_some());
        assert!(parse_json_object("no json here").is_none());
        assert!(parse_json_object("[1, 2]").is_none());
    }

    #[test]
    fn schema_uses_json_schema_types() {
        let out: Map<String, Value> = serde_json::from_value(json!({
            "summary": {"type": "str", "description": "d"},
            "score": {"type": "int", "required": false},
            "verdict": {"type": "str", "enum": ["PASS", "FAIL"]}
        }))
        .unwrap();
        let s = json_schema(&out);
        assert_eq!(s["properties"]["score"]["type"], "integer");
        assert_eq!(s["properties"]["verdict"]["enum"][0], "PASS");
        assert_eq!(s["required"], json!(["summary", "verdict"]));
    }

    mod props {
        use super::super::*;
        use crate::spec::model::{AgentDef, PromptDef};
        use proptest::prelude::*;
        use reqwest::header::HeaderMap;

        const KEY: &str = "sk-or-v1-0123456789abcdefFEDCBA9876543210";

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        fn req(structured: bool) -> AgentRequest {
            let output = structured.then(|| {
                let mut m = Map::new();
                m.insert("summary".into(), json!({"type": "str"}));
                m
            });
            AgentRequest {
                execution_id: "e".into(),
                state: "s".into(),
                agent_name: "a".into(),
                agent: std::sync::Arc::new(AgentDef {
                    name: "a".into(),
                    file: "inline".into(),
                    prompt: PromptDef {
                        system: None,
                        user: "u".into(),
                        instruction_suffix: None,
                        tools: None,
                        output,
                    },
                    profile_name: None,
                    model: Map::new(),
                    fallback: None,
                    metadata: Value::Null,
                }),
                input: Map::new(),
                system: String::new(),
                user: String::new(),
                machine: "m".into(),
                step: 1,
                sample: 0,
                attempt: 1,
                call_key: "k".into(),
                tools: None,
            }
        }

        /// Arbitrary JSON, the key sprinkled into some strings.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<u64>().prop_map(|n| json!(n)),
                any::<f64>().prop_map(|f| json!(f)),
                "[ -~]{0,30}".prop_map(Value::String),
                Just(json!(format!("echo {KEY} echo"))),
                Just(json!("{\"summary\": \"fenced\"}")),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("choices".to_string()),
                            Just("message".to_string()),
                            Just("content".to_string()),
                            Just("usage".to_string()),
                            Just("error".to_string()),
                            Just("code".to_string()),
                            Just("finish_reason".to_string()),
                            "[a-z_]{1,8}",
                        ],
                        inner,
                        0..5,
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// 200 bodies: raw bytes, arbitrary JSON, and envelope-shaped JSON
        /// with arbitrary parts.
        fn body() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300)
                    .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                json_value().prop_map(|v| v.to_string()),
                (json_value(), json_value(), json_value()).prop_map(|(content, usage, fin)| {
                    json!({"choices": [{"message": {"content": content}, "finish_reason": fin}], "usage": usage}).to_string()
                }),
                (json_value(), json_value()).prop_map(|(code, message)| {
                    json!({"error": {"code": code, "message": message}}).to_string()
                }),
                "[ -~]{0,100}".prop_map(|s| format!("{s}{KEY}{s}")),
            ]
        }

        #[test]
        fn usage_is_reported_only_when_the_answer_has_it() {
            let t = Target {
                provider: "p",
                model: "m",
                key: None,
                max_retry_after: 60.0,
            };
            let parse = |usage: Value| {
                let mut body = json!({"choices": [{"message": {"content": "hi"}}]});
                if !usage.is_null() {
                    body["usage"] = usage;
                }
                parse_response(&body.to_string(), &HeaderMap::new(), &t, &req(false))
                    .unwrap()
                    .1
            };
            assert_eq!(
                parse(json!({"prompt_tokens": 7, "completion_tokens": 0, "cost": 0.1})),
                Some(TokenUsage {
                    prompt: 7,
                    completion: 0
                })
            );
            assert_eq!(parse(Value::Null), None);
            assert_eq!(parse(json!({"total_tokens": 7})), None);
            assert_eq!(
                parse(json!({"prompt_tokens": -1, "completion_tokens": 1})),
                None
            );
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn any_200_body_is_an_answer_or_a_typed_error(
                text in body(),
                structured in any::<bool>(),
                cut in 0usize..40,
            ) {
                let t = Target {
                    provider: "p",
                    model: "m",
                    key: Some(KEY),
                    max_retry_after: 60.0,
                };
                let key_free = |s: &str| (0..=KEY.len() - 10).all(|i| !s.contains(&KEY[i..i + 10]));
                // Also with the body cut short, as a broken stream would leave it.
                let short: String = text.chars().take(cut * 8).collect();
                for body in [&text, &short] {
                    match parse_response(body, &HeaderMap::new(), &t, &req(structured)) {
                        Ok((r, _)) => {
                            let content = r.content.clone().unwrap_or_default();
                            prop_assert!(!content.trim().is_empty());
                            prop_assert!(!content.contains(KEY), "{content}");
                            prop_assert_eq!(r.output.is_some(), structured);
                            prop_assert!(serde_json::to_string(&r).is_ok());
                        }
                        Err(e) => {
                            prop_assert!(!e.message.is_empty());
                            prop_assert!(key_free(&e.message), "{}", e.message);
                            prop_assert!(e.retry_after.is_none_or(|w| (0.0..=60.0).contains(&w)));
                        }
                    }
                }
            }
        }
    }
}
