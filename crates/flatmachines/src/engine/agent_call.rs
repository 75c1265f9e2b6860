//! Agent states and their `execution` types: `default` (one call), `retry`
//! (backoffs with jitter, honouring `retry_after`, only for retryable kinds)
//! and `parallel` (`n_samples` concurrent calls → `{results, count}`).

use super::agent::{AgentRequest, AgentResult, DEFAULT_SYSTEM_PROMPT};
use super::error::{ErrorKind, ExecError};
use super::exec::Run;
use super::state::template_err;
use crate::expr::template::prompt_model;
use crate::expr::{Templates, Vars};
use crate::spec::model::{AgentDef, ExecutionDef};
use crate::spec::StateDef;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The reference's default retry backoffs (2, 8, 16, 35 s).
pub const DEFAULT_BACKOFFS: [Duration; 4] = [
    Duration::from_secs(2),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(35),
];
pub const DEFAULT_JITTER: f64 = 0.1;
pub const DEFAULT_SAMPLES: u32 = 3;

impl Run {
    /// The loaded agent `agent_name` of this execution's machine.
    pub(crate) fn agent_def(&self, agent_name: &str) -> Result<Arc<AgentDef>, ExecError> {
        self.shared
            .agents
            .get(&(self.m, agent_name.to_string()))
            .cloned()
            .ok_or_else(|| {
                ExecError::new(
                    ErrorKind::InvalidRequest,
                    format!("unknown agent '{agent_name}'"),
                )
            })
    }

    /// The request of an agent state before its execution type sets the
    /// sample, attempt and call key: prompts rendered from the state's input.
    pub(crate) fn base_request(
        &self,
        name: &str,
        agent_name: &str,
        state: &StateDef,
    ) -> Result<AgentRequest, ExecError> {
        let agent = self.agent_def(agent_name)?;
        let input = self.render_input(state)?;
        let (system, user) = render_prompts(agent_name, &agent, state, &input)?;
        Ok(AgentRequest {
            execution_id: self.id.clone(),
            state: name.to_string(),
            agent_name: agent_name.to_string(),
            agent,
            input,
            system,
            user,
            machine: self.def().name.clone(),
            step: self.step,
            sample: 0,
            attempt: 1,
            call_key: String::new(),
            tools: None,
        })
    }

    pub(crate) async fn run_agent(
        &mut self,
        name: &str,
        agent_name: &str,
        state: &StateDef,
    ) -> Result<Value, ExecError> {
        let base = self.base_request(name, agent_name, state)?;
        let exec = state.execution.clone().unwrap_or_default();
        match exec.kind.as_deref().unwrap_or("default") {
            "retry" => self.call_with_retry(base, &exec).await.map(|r| r.payload()),
            "parallel" => self.call_parallel(base, &exec).await,
            "mdap_voting" => self.call_mdap(base, &exec).await,
            _ => self.call_once(base, 0).await.map(|r| r.payload()),
        }
    }

    fn call_key(&self, state: &str, sample: u32, attempt: u32) -> String {
        format!(
            "{}/{}@{}/s{}/a{}",
            self.id, state, self.step, sample, attempt
        )
    }

    pub(crate) async fn call_once(
        &mut self,
        mut req: AgentRequest,
        sample: u32,
    ) -> Result<AgentResult, ExecError> {
        req.call_key = self.call_key(&req.state, sample, req.attempt);
        tracing::debug!(event = "agent_call", agent = %req.agent_name, attempt = req.attempt, "calling agent");
        let r = self.shared.agent.call(req).await;
        self.count(&r);
        self.note_rate_limit(&r);
        r
    }

    /// Remember the last call's rate-limit information for `context.machine`.
    fn note_rate_limit(&mut self, r: &Result<AgentResult, ExecError>) {
        self.last_rate_limit = match r {
            Ok(res) => res.rate_limit.clone(),
            Err(e) if e.kind == ErrorKind::RateLimit => Some(json!({
                "limited": true,
                "retry_after": e.retry_after,
            })),
            Err(_) => None,
        };
    }

    fn count(&mut self, r: &Result<AgentResult, ExecError>) {
        self.totals.api_calls += 1;
        if let Ok(res) = r {
            self.totals.cost += res.cost.unwrap_or(0.0);
        }
    }

    async fn call_with_retry(
        &mut self,
        base: AgentRequest,
        exec: &ExecutionDef,
    ) -> Result<AgentResult, ExecError> {
        let backoffs: Vec<Duration> = match &exec.backoffs {
            Some(b) => b.iter().map(|s| s.duration()).collect(),
            None => DEFAULT_BACKOFFS.to_vec(),
        };
        let jitter = exec.jitter.unwrap_or(DEFAULT_JITTER).clamp(0.0, 1.0);
        let mut attempt = 1u32;
        loop {
            let mut req = base.clone();
            req.attempt = attempt;
            match self.call_once(req, 0).await {
                Ok(r) => return Ok(r),
                Err(e) if e.kind == ErrorKind::Interrupted => return Err(e),
                Err(e) => {
                    let idx = (attempt - 1) as usize;
                    if !e.kind.is_retryable() || idx >= backoffs.len() {
                        return Err(e);
                    }
                    let delay = retry_delay(backoffs[idx], jitter, e.retry_after);
                    tracing::info!(
                        event = "agent_retry",
                        kind = %e.kind,
                        attempt,
                        delay_s = delay.as_secs_f64(),
                        "retrying agent call"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn call_parallel(
        &mut self,
        base: AgentRequest,
        exec: &ExecutionDef,
    ) -> Result<Value, ExecError> {
        // Bounded here too: a stored bundle may predate the loader's check.
        let n = exec
            .n_samples
            .unwrap_or(DEFAULT_SAMPLES)
            .clamp(1, crate::spec::limits::MAX_SAMPLES);
        let mut set = tokio::task::JoinSet::new();
        for sample in 0..n {
            let mut req = base.clone();
            req.call_key = self.call_key(&req.state, sample, 1);
            req.sample = sample;
            let agent = Arc::clone(&self.shared.agent);
            set.spawn(async move { (sample, agent.call(req).await) }.in_current_span());
        }
        let mut results: Vec<(u32, Result<AgentResult, ExecError>)> = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(pair) => results.push(pair),
                Err(e) => results.push((
                    u32::MAX,
                    Err(ExecError::new(
                        ErrorKind::ServerError,
                        format!("agent task failed: {e}"),
                    )),
                )),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        // A sample stopped from outside (lease lost, parked) stops the
        // state: answering with the samples that did finish would silently
        // change the result. The settled samples are reused on resume.
        if let Some((_, Err(e))) = results
            .iter()
            .find(|(_, r)| matches!(r, Err(e) if e.kind == ErrorKind::Interrupted))
        {
            return Err(e.clone());
        }
        let mut payloads = Vec::new();
        let mut first_err = None;
        for (_, r) in &results {
            self.count(r);
            match r {
                Ok(res) => payloads.push(res.payload()),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e.clone());
                    }
                }
            }
        }
        if payloads.is_empty() {
            let e =
                first_err.unwrap_or_else(|| ExecError::new(ErrorKind::EmptyResponse, "no samples"));
            return Err(ExecError {
                message: format!("all {n} parallel samples failed; first: {}", e.message),
                ..e
            });
        }
        let count = payloads.len();
        let mut out = Map::new();
        out.insert("results".into(), Value::Array(payloads));
        out.insert("count".into(), json!(count));
        Ok(Value::Object(out))
    }
}

/// The system and user prompts of one call, rendered as the reference's
/// agent runtime renders them ([`Templates::render_prompt`]): `input` is the
/// state's rendered `input:`, `model` the resolved model config as
/// [`prompt_model`] shows it, and an `instruction_suffix` that renders to
/// nothing adds nothing (not even the blank line before it).
pub fn render_prompts(
    agent_name: &str,
    agent: &AgentDef,
    state: &StateDef,
    input: &Map<String, Value>,
) -> Result<(String, String), ExecError> {
    let vars = Vars::for_prompt(
        state.input.as_ref(),
        input.clone(),
        prompt_model(&agent.model),
    );
    let p = &agent.prompt;
    let system =
        Templates::render_prompt(p.system.as_deref().unwrap_or(DEFAULT_SYSTEM_PROMPT), &vars)
            .map_err(|e| template_err(&format!("agent '{agent_name}' system prompt"), e))?;
    let mut user = Templates::render_prompt(&p.user, &vars)
        .map_err(|e| template_err(&format!("agent '{agent_name}' user prompt"), e))?;
    if let Some(suffix) = p.instruction_suffix.as_deref().filter(|s| !s.is_empty()) {
        let s = Templates::render_prompt(suffix, &vars)
            .map_err(|e| template_err(&format!("agent '{agent_name}' instruction_suffix"), e))?;
        if !s.is_empty() {
            user = format!("{user}\n\n{s}");
        }
    }
    Ok((system, user))
}

/// `max(backoff ± jitter, retry_after)`, at most
/// [`MAX_DURATION_SECS`](crate::spec::limits::MAX_DURATION_SECS). Never
/// panics: `backoff` was converted (and capped) when its file was read, and
/// `retry_after` comes from a provider header (`1e20` once aborted the task
/// here).
pub fn retry_delay(backoff: Duration, jitter: f64, retry_after: Option<f64>) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let max = crate::spec::limits::MAX_DURATION_SECS;
    let backoff = backoff.as_secs_f64().min(max);
    let spread = backoff * jitter * (fastrand::f64() * 2.0 - 1.0);
    let mut secs = backoff + spread;
    if let Some(ra) = retry_after.filter(|r| !r.is_nan()) {
        secs = secs.max(ra);
    }
    crate::spec::limits::duration_from_secs(secs).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_respects_jitter_and_retry_after() {
        for _ in 0..100 {
            let d = retry_delay(Duration::from_secs(10), 0.1, None).as_secs_f64();
            assert!((9.0..=11.0).contains(&d), "{d}");
        }
        let two = Duration::from_secs(2);
        assert_eq!(retry_delay(two, 0.0, Some(30.0)).as_secs_f64(), 30.0);
        assert_eq!(retry_delay(two, 0.0, None).as_secs_f64(), 2.0);
    }

    #[test]
    fn hostile_numbers_do_not_panic() {
        let cap = Duration::from_secs(86_400);
        let two = Duration::from_secs(2);
        assert_eq!(retry_delay(two, 0.1, Some(1e20)), cap);
        assert_eq!(retry_delay(two, 0.1, Some(f64::INFINITY)), cap);
        let d = retry_delay(Duration::MAX, 0.5, None);
        assert!(d <= cap && d >= cap / 2, "{d:?}");
        assert_eq!(
            retry_delay(Duration::ZERO, f64::NAN, Some(f64::NAN)),
            Duration::ZERO
        );
        assert_eq!(retry_delay(Duration::ZERO, 0.0, Some(-1.0)), Duration::ZERO);
        // A hostile backoff from an old stored bundle is capped when read.
        let stored = crate::spec::limits::Seconds::new(f64::INFINITY).duration();
        assert!(retry_delay(stored, 1.0, None) <= cap);
    }
}
