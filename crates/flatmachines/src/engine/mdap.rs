//! `execution: {type: mdap_voting, k_margin, max_candidates}`: sample the
//! agent up to `max_candidates` times, one call after another, and vote —
//! the SDK's first-to-k / ahead-by-k rule (MAKER).
//!
//! Per sample, as in the SDK:
//! * the candidate is the fields the agent's `metadata.parsing` patterns
//!   capture from the text (`{field: {pattern, type: str|int|json}}`; a
//!   pattern that does not match, or a value that does not convert, is a
//!   `format_error` red flag), else the structured output, else
//!   `{content}`; an empty answer is a red flag;
//! * with `max_response_tokens` (execution or `metadata.mdap`), an answer
//!   longer than that many tokens (characters / 4) is a red flag;
//! * a failed call is skipped (a call stopped from outside stops the state);
//! * votes count identical candidates (compared as sorted-key JSON); the
//!   first candidate with `k_margin` votes, or `k_margin` votes ahead of
//!   the runner-up, wins at once;
//! * after `max_candidates` samples the candidate with most votes wins (the
//!   first to reach that count on a tie); no valid candidate gives `{}`.
//!
//! `metadata.mdap.{k_margin,max_candidates,max_response_tokens}` override
//! the execution's values, as in the SDK. Each sample is its own ledger
//! call (`sample` index in its call key), reused on resume.
//! `metadata.validation` (a JSON schema in the SDK) is not applied.

use super::agent::{AgentRequest, AgentResult};
use super::error::{ErrorKind, ExecError};
use super::exec::Run;
use crate::spec::model::ExecutionDef;
use serde_json::{Map, Value};

/// The SDK's defaults.
pub const DEFAULT_K_MARGIN: u64 = 3;
pub const DEFAULT_MAX_CANDIDATES: u64 = 10;
/// Most samples one state may take.
pub use crate::spec::limits::MAX_CANDIDATES as MAX_CANDIDATES_LIMIT;

struct Pattern {
    field: String,
    re: regex::Regex,
    kind: String,
}

struct Voting {
    k_margin: u64,
    max_candidates: u64,
    max_response_tokens: Option<u64>,
    patterns: Vec<Pattern>,
}

fn num(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64).filter(|n| *n > 0)
}

impl Voting {
    fn new(exec: &ExecutionDef, metadata: &Value) -> Result<Voting, ExecError> {
        let mdap = metadata.get("mdap");
        let pick = |key: &str, default: Option<u64>| {
            num(mdap.and_then(|m| m.get(key)))
                .or_else(|| num(exec.extra.get(key)))
                .or(default)
        };
        let k_margin = pick("k_margin", Some(DEFAULT_K_MARGIN)).unwrap_or(DEFAULT_K_MARGIN);
        let max_candidates = pick("max_candidates", Some(DEFAULT_MAX_CANDIDATES))
            .unwrap_or(DEFAULT_MAX_CANDIDATES)
            .min(MAX_CANDIDATES_LIMIT);
        let max_response_tokens = pick("max_response_tokens", None);
        let mut patterns = Vec::new();
        if let Some(Value::Object(parsing)) = metadata.get("parsing") {
            for (field, cfg) in parsing {
                let Some(p) = cfg.get("pattern").and_then(Value::as_str) else {
                    continue;
                };
                // Python's re.DOTALL: `.` matches newlines too.
                let re = regex::RegexBuilder::new(p)
                    .dot_matches_new_line(true)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        ExecError::new(
                            ErrorKind::TemplateError,
                            format!("metadata.parsing.{field}.pattern: {e}"),
                        )
                    })?;
                let kind = cfg
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("str")
                    .to_string();
                patterns.push(Pattern {
                    field: field.clone(),
                    re,
                    kind,
                });
            }
        }
        Ok(Voting {
            k_margin,
            max_candidates,
            max_response_tokens,
            patterns,
        })
    }

    fn parse(&self, content: &str) -> Option<Map<String, Value>> {
        let mut out = Map::new();
        for p in &self.patterns {
            let caps = p.re.captures(content)?;
            let text = caps.get(1)?.as_str();
            let v = match p.kind.as_str() {
                "json" => serde_json::from_str(text).ok()?,
                "int" => Value::from(text.trim().parse::<i64>().ok()?),
                _ => Value::String(text.to_string()),
            };
            out.insert(p.field.clone(), v);
        }
        Some(out)
    }

    /// The candidate of one answer, or None for a red flag.
    fn candidate(&self, r: &AgentResult) -> Option<Map<String, Value>> {
        let content = r.content.clone().unwrap_or_default();
        let (cand, measured) = if !self.patterns.is_empty() {
            if content.is_empty() {
                return None;
            }
            (self.parse(&content)?, content)
        } else if let Some(o) = &r.output {
            let m = if content.is_empty() {
                sorted_json(&Value::Object(o.clone()))
            } else {
                content
            };
            (o.clone(), m)
        } else if !content.is_empty() {
            let mut m = Map::new();
            m.insert("content".into(), Value::String(content.clone()));
            (m, content)
        } else {
            return None;
        };
        if let Some(max) = self.max_response_tokens {
            if (measured.chars().count() / 4) as u64 > max {
                return None;
            }
        }
        Some(cand)
    }
}

/// JSON with object keys sorted (Python's `json.dumps(sort_keys=True)`
/// identity for votes).
fn sorted_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

impl Run {
    pub(crate) async fn call_mdap(
        &mut self,
        base: AgentRequest,
        exec: &ExecutionDef,
    ) -> Result<Value, ExecError> {
        let voting = Voting::new(exec, &base.agent.metadata)?;
        // (key, votes, candidate) in order of first appearance.
        let mut tally: Vec<(String, u64, Map<String, Value>)> = Vec::new();
        let mut red_flags = 0u64;
        for sample in 0..voting.max_candidates {
            let mut req = base.clone();
            req.sample = u32::try_from(sample).unwrap_or(u32::MAX);
            let r = match self
                .call_once(req, u32::try_from(sample).unwrap_or(u32::MAX))
                .await
            {
                Ok(r) => r,
                Err(e) if e.kind == ErrorKind::Interrupted => return Err(e),
                Err(e) => {
                    tracing::warn!(sample, kind = %e.kind, error = %e.message, "mdap sample failed");
                    continue;
                }
            };
            let Some(cand) = voting.candidate(&r) else {
                red_flags += 1;
                continue;
            };
            let key = sorted_json(&Value::Object(cand.clone()));
            let votes = match tally.iter_mut().find(|(k, _, _)| *k == key) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.1
                }
                None => {
                    tally.push((key.clone(), 1, cand));
                    1
                }
            };
            let winner = if votes >= voting.k_margin {
                Some(key)
            } else {
                lead(&tally, voting.k_margin)
            };
            if let Some(w) = winner {
                tracing::debug!(samples = sample + 1, red_flags, "mdap vote decided");
                return Ok(take(&tally, &w));
            }
        }
        // Majority fallback: most votes, the earliest on a tie.
        let mut best: Option<&(String, u64, Map<String, Value>)> = None;
        for t in &tally {
            if best.is_none_or(|b| t.1 > b.1) {
                best = Some(t);
            }
        }
        Ok(best
            .map(|b| Value::Object(b.2.clone()))
            .unwrap_or_else(|| Value::Object(Map::new())))
    }
}

/// The leader's key when it is `k` votes ahead of the runner-up.
fn lead(tally: &[(String, u64, Map<String, Value>)], k: u64) -> Option<String> {
    if tally.len() < 2 {
        return None;
    }
    let mut sorted: Vec<&(String, u64, Map<String, Value>)> = tally.iter().collect();
    // Stable: on equal votes the earlier candidate stays first.
    sorted.sort_by_key(|t| std::cmp::Reverse(t.1));
    (sorted[0].1.saturating_sub(sorted[1].1) >= k).then(|| sorted[0].0.clone())
}

fn take(tally: &[(String, u64, Map<String, Value>)], key: &str) -> Value {
    tally
        .iter()
        .find(|(k, _, _)| k == key)
        .map(|t| Value::Object(t.2.clone()))
        .unwrap_or_else(|| Value::Object(Map::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exec(k: u64, n: u64) -> ExecutionDef {
        let mut e = ExecutionDef::default();
        e.extra.insert("k_margin".into(), json!(k));
        e.extra.insert("max_candidates".into(), json!(n));
        e
    }

    #[test]
    fn parsing_patterns_pick_fields_and_red_flag_misses() {
        let meta = json!({"parsing": {
            "move": {"pattern": "move\\s*=\\s*(\\[[^\\]]*\\])", "type": "json"},
            "n": {"pattern": "n=(\\d+)", "type": "int"}
        }, "mdap": {"k_margin": 2}});
        let v = Voting::new(&exec(5, 10), &meta).unwrap();
        assert_eq!(v.k_margin, 2, "metadata.mdap overrides the execution");
        let r = |c: &str| AgentResult {
            content: Some(c.into()),
            ..AgentResult::default()
        };
        assert_eq!(
            v.candidate(&r("so move = [1, 0, 2]\nand n=4")),
            Some(
                json!({"move": [1, 0, 2], "n": 4})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
        assert_eq!(v.candidate(&r("move = [1, 0, 2] only")), None);
        assert_eq!(v.candidate(&r("")), None);
    }

    #[test]
    fn ahead_by_k_decides_and_ties_keep_the_first() {
        let c = |s: &str| json!({"content": s}).as_object().unwrap().clone();
        let t = vec![("a".to_string(), 3, c("a")), ("b".to_string(), 1, c("b"))];
        assert_eq!(lead(&t, 2), Some("a".into()));
        assert_eq!(lead(&t, 3), None);
        assert_eq!(
            sorted_json(&json!({"b": 1, "a": {"d": 1, "c": 2}})),
            r#"{"a":{"c":2,"d":1},"b":1}"#
        );
    }
}
