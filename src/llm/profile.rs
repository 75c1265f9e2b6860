//! Model profiles as the HTTP client needs them, read from an agent's
//! resolved model config (`spec: flatprofile` fields).

use crate::engine::{ErrorKind, ExecError};
use serde_json::{Map, Value};
use std::time::Duration;

/// Default request timeout when a profile sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest request timeout a profile may set (one day): larger values are a
/// typo, and a `Duration` from e.g. `1e20` seconds would not even exist.
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// Default cap on a 2xx response body. Chat answers are kilobytes; 8 MiB is
/// generous and still keeps a runaway (endless chunked) body from eating
/// memory or landing whole in the spend ledger.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;
/// Bounds of `max_response_bytes`.
pub const RESPONSE_BYTES_RANGE: (u64, u64) = (1024, 1024 * 1024 * 1024);
/// Largest `max_retry_after` a profile may set, seconds (the limiter never
/// pauses a model longer than a day either).
pub const MAX_RETRY_AFTER_LIMIT_SECS: f64 = 86_400.0;

/// Bounds of a profile's `tpm` (tokens per minute). Below 1 nothing could
/// ever be sent; above a trillion is a typo (no provider grants that).
pub const TPM_RANGE: (u64, u64) = (1, 1_000_000_000_000);

/// A request rate: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// Parse `"200/m"`, `"3/s"`, `"1000/h"`, `"1000/d"` (also `min`, `sec`,
    /// `hour`, `day`, `minute`).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let (n, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("rate_limit '{s}' must look like \"200/m\""))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("rate_limit '{s}': '{n}' is not a whole number"))?;
        if count == 0 {
            return Err(format!("rate_limit '{s}' must allow at least one request"));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86400),
            other => {
                return Err(format!(
                    "rate_limit '{s}': unknown unit '{other}' (use s, m, h or d)"
                ))
            }
        };
        Ok(Rate { count, per })
    }

    /// The spacing between requests at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

/// Everything needed to call one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelProfile {
    pub provider: String,
    /// The model id as sent (a leading `provider/` removed, as LiteLLM does).
    pub model: String,
    pub base_url: String,
    /// Environment variable holding the API key (None: no key, e.g. Ollama).
    pub api_key_env: Option<String>,
    pub timeout: Duration,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub headers: Vec<(String, String)>,
    pub rate_limit: Option<Rate>,
    /// Tokens per minute (`tpm:`): the limiter books each call's estimated
    /// tokens against it (see [`super::limiter::TokenDemand`]).
    pub tpm: Option<u64>,
    /// A 2xx body longer than this is refused (`response_too_large`).
    pub max_response_bytes: u64,
    /// Cap on any wait read from the provider's headers, seconds.
    pub max_retry_after: f64,
    /// Prices per million tokens (`price:`); None: the cost of a call is
    /// what the provider reports, or unknown.
    pub price: Option<super::price::Price>,
}

/// (default base URL, default key variable) per provider.
fn provider_defaults(provider: &str) -> (Option<&'static str>, Option<&'static str>) {
    match provider {
        "openrouter" => (
            Some("https://openrouter.ai/api/v1"),
            Some("OPENROUTER_API_KEY"),
        ),
        "openai" => (Some("https://api.openai.com/v1"), Some("OPENAI_API_KEY")),
        "nano-gpt" | "nanogpt" => (Some("https://nano-gpt.com/api/v1"), Some("NANOGPT_API_KEY")),
        "groq" => (Some("https://api.groq.com/openai/v1"), Some("GROQ_API_KEY")),
        "together" => (
            Some("https://api.together.xyz/v1"),
            Some("TOGETHER_API_KEY"),
        ),
        "deepseek" => (
            Some("https://api.deepseek.com/v1"),
            Some("DEEPSEEK_API_KEY"),
        ),
        "mistral" => (Some("https://api.mistral.ai/v1"), Some("MISTRAL_API_KEY")),
        "ollama" => (Some("http://127.0.0.1:11434/v1"), None),
        "vllm" => (Some("http://127.0.0.1:8000/v1"), None),
        "llamacpp" | "llama.cpp" | "llama-cpp" => (Some("http://127.0.0.1:8080/v1"), None),
        "lmstudio" => (Some("http://127.0.0.1:1234/v1"), None),
        _ => (None, None),
    }
}

fn bad(msg: String) -> ExecError {
    ExecError::new(ErrorKind::InvalidRequest, msg)
}

impl ModelProfile {
    /// Read a resolved model config. Errors name the offending field.
    /// The machine loader's [`ModelCheck`](crate::spec::ModelCheck): a model
    /// config this client would refuse is a load error.
    pub fn check_config(cfg: &Map<String, Value>) -> Result<(), String> {
        ModelProfile::from_config(cfg)
            .map(|_| ())
            .map_err(|e| e.message)
    }

    pub fn from_config(cfg: &Map<String, Value>) -> Result<ModelProfile, ExecError> {
        let text = |k: &str| cfg.get(k).and_then(Value::as_str).map(str::to_string);
        let num = |k: &str| cfg.get(k).and_then(Value::as_f64);
        let name = text("name").ok_or_else(|| bad("model profile has no `name`".into()))?;
        let provider = text("provider")
            .or_else(|| name.split_once('/').map(|(p, _)| p.to_string()))
            .unwrap_or_else(|| "openai".into());
        let prefix = format!("{provider}/");
        let model = name.strip_prefix(&prefix).unwrap_or(&name).to_string();
        let (default_url, default_key) = provider_defaults(&provider);
        let base_url = text("base_url")
            .or_else(|| default_url.map(str::to_string))
            .ok_or_else(|| {
                bad(format!(
                    "model profile for '{name}' needs a `base_url` (provider '{provider}' has no default)"
                ))
            })?
            .trim_end_matches('/')
            .to_string();
        let api_key_env = match cfg.get("api_key_env") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Null) | Some(Value::Bool(false)) => None,
            _ => default_key.map(str::to_string),
        };
        let timeout = match cfg.get("timeout") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT,
            Some(v) => v
                .as_f64()
                .filter(|t| *t > 0.0 && *t <= MAX_TIMEOUT_SECS)
                .and_then(|t| Duration::try_from_secs_f64(t).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "model profile for '{name}': `timeout` must be a number of seconds \
                         above 0 and at most {MAX_TIMEOUT_SECS} (got {v})"
                    ))
                })?,
        };
        let max_response_bytes = match cfg.get("max_response_bytes") {
            None | Some(Value::Null) => DEFAULT_MAX_RESPONSE_BYTES,
            Some(v) => v
                .as_u64()
                .filter(|n| (RESPONSE_BYTES_RANGE.0..=RESPONSE_BYTES_RANGE.1).contains(n))
                .ok_or_else(|| {
                    bad(format!(
                        "model profile for '{name}': `max_response_bytes` must be a whole number \
                         of bytes from {} to {} (got {v})",
                        RESPONSE_BYTES_RANGE.0, RESPONSE_BYTES_RANGE.1
                    ))
                })?,
        };
        let max_retry_after = match cfg.get("max_retry_after") {
            None | Some(Value::Null) => super::errors::DEFAULT_MAX_RETRY_AFTER_SECS,
            Some(v) => v
                .as_f64()
                .filter(|s| *s >= 0.0 && *s <= MAX_RETRY_AFTER_LIMIT_SECS)
                .ok_or_else(|| {
                    bad(format!(
                        "model profile for '{name}': `max_retry_after` must be a number of \
                         seconds from 0 to {MAX_RETRY_AFTER_LIMIT_SECS} (got {v})"
                    ))
                })?,
        };
        let headers = match cfg.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(h)) => h
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            Some(_) => return Err(bad("`headers` must be a mapping".into())),
        };
        let rate_limit = match cfg.get("rate_limit") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Rate::parse(s).map_err(bad)?),
            Some(Value::Number(n)) => Some(Rate::parse(&format!("{n}/m")).map_err(bad)?),
            Some(_) => return Err(bad("`rate_limit` must look like \"200/m\"".into())),
        };
        let tpm = match cfg.get("tpm") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| {
                        // 2e5 and 200000.0 are whole numbers too.
                        v.as_f64()
                            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= TPM_RANGE.1 as f64)
                            .map(|f| f as u64)
                    })
                    .filter(|n| (TPM_RANGE.0..=TPM_RANGE.1).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "model profile for '{name}': `tpm` must be a whole number of tokens \
                             per minute from {} to {} (got {v})",
                            TPM_RANGE.0, TPM_RANGE.1
                        ))
                    })?,
            ),
        };
        let price = super::price::Price::from_config(&name, cfg.get("price")).map_err(bad)?;
        Ok(ModelProfile {
            provider,
            model,
            base_url,
            api_key_env,
            timeout,
            max_tokens: cfg.get("max_tokens").and_then(Value::as_u64),
            temperature: num("temperature"),
            top_p: num("top_p"),
            seed: cfg.get("seed").and_then(Value::as_i64),
            headers,
            rate_limit,
            tpm,
            max_response_bytes,
            max_retry_after,
            price,
        })
    }

    /// The key the limiter and breaker use for this model.
    pub fn limiter_key(&self) -> String {
        format!("{}|{}", self.base_url, self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn strips_provider_prefix_and_fills_defaults() {
        let p = ModelProfile::from_config(&cfg(json!({
            "provider": "openrouter", "name": "openrouter/meta-llama/llama-3-8b", "temperature": 0.2,
            "headers": {"X-Title": "paper-runner"}, "rate_limit": "20/m"
        })))
        .unwrap();
        assert_eq!(p.model, "meta-llama/llama-3-8b");
        assert_eq!(p.base_url, "https://openrouter.ai/api/v1");
        assert_eq!(p.api_key_env.as_deref(), Some("OPENROUTER_API_KEY"));
        assert_eq!(
            p.headers,
            vec![("X-Title".to_string(), "paper-runner".to_string())]
        );
        assert_eq!(p.rate_limit.unwrap().interval(), Duration::from_secs(3));
        let q = ModelProfile::from_config(&cfg(
            json!({"provider": "openrouter", "name": "anthropic/claude"}),
        ))
        .unwrap();
        assert_eq!(q.model, "anthropic/claude");
    }

    #[test]
    fn local_providers_need_no_key_and_unknown_ones_need_a_url() {
        let p = ModelProfile::from_config(&cfg(json!({"provider": "ollama", "name": "llama3"})))
            .unwrap();
        assert_eq!(p.api_key_env, None);
        let err =
            ModelProfile::from_config(&cfg(json!({"provider": "acme", "name": "x"}))).unwrap_err();
        assert!(err.message.contains("base_url"));
        let ok = ModelProfile::from_config(&cfg(json!({"provider": "acme", "name": "x", "base_url": "http://h/v1/", "api_key_env": "ACME_KEY"}))).unwrap();
        assert_eq!(ok.base_url, "http://h/v1");
        assert_eq!(ok.api_key_env.as_deref(), Some("ACME_KEY"));
    }

    #[test]
    fn out_of_range_numbers_are_errors_naming_the_field() {
        let base = json!({"provider": "ollama", "name": "x"});
        let with = |k: &str, v: Value| {
            let mut c = cfg(base.clone());
            c.insert(k.into(), v);
            ModelProfile::from_config(&c)
        };
        for (k, v) in [
            ("timeout", json!(1e20)),
            ("timeout", json!(0)),
            ("timeout", json!(-3)),
            ("timeout", json!("30s")),
            ("max_response_bytes", json!(10)),
            ("max_response_bytes", json!(1e12)),
            ("max_response_bytes", json!(-1)),
            ("max_retry_after", json!(1e20)),
            ("max_retry_after", json!(-1)),
            ("tpm", json!(0)),
            ("tpm", json!(-5)),
            ("tpm", json!(1.5)),
            ("tpm", json!(1e20)),
            ("tpm", json!("200k")),
        ] {
            let e = with(k, v.clone()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRequest);
            assert!(e.message.contains(k), "{k}={v}: {}", e.message);
        }
        let p = with("timeout", json!(600)).unwrap();
        assert_eq!(p.timeout, Duration::from_secs(600));
        assert_eq!(p.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert_eq!(p.max_retry_after, 3600.0);
        assert_eq!(
            with("max_response_bytes", json!(4096))
                .unwrap()
                .max_response_bytes,
            4096
        );
        assert_eq!(
            with("max_retry_after", json!(60)).unwrap().max_retry_after,
            60.0
        );
        assert_eq!(with("tpm", json!(200000)).unwrap().tpm, Some(200_000));
        assert_eq!(with("tpm", json!(2e5)).unwrap().tpm, Some(200_000));
        assert_eq!(with("tpm", Value::Null).unwrap().tpm, None);
        // Both limits at once.
        let mut both = cfg(base.clone());
        both.insert("tpm".into(), json!(1000));
        both.insert("rate_limit".into(), json!("60/m"));
        let p = ModelProfile::from_config(&both).unwrap();
        assert_eq!(
            (p.tpm, p.rate_limit.map(|r| r.count)),
            (Some(1000), Some(60))
        );
        assert!(ModelProfile::check_config(&both).is_ok());
    }

    #[test]
    fn prices_are_read_and_bad_ones_fail_the_check() {
        let base = json!({"provider": "ollama", "name": "x"});
        assert_eq!(
            ModelProfile::from_config(&cfg(base.clone())).unwrap().price,
            None
        );
        let mut c = cfg(base);
        c.insert(
            "price".into(),
            json!({"input_per_mtok": 3.0, "output_per_mtok": 15.0}),
        );
        let p = ModelProfile::from_config(&c).unwrap().price.unwrap();
        assert_eq!((p.input_per_mtok, p.output_per_mtok), (3.0, 15.0));
        assert_eq!(p.currency, "USD");
        c.insert(
            "price".into(),
            json!({"input_per_mtok": -3.0, "output_per_mtok": 15.0}),
        );
        let e = ModelProfile::check_config(&c).unwrap_err();
        assert!(e.contains("price.input_per_mtok"), "{e}");
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("3/s").unwrap().interval(),
            Duration::from_millis(333) + Duration::from_nanos(333_333)
        );
        assert!(Rate::parse("0/m").is_err());
        assert!(Rate::parse("5/fortnight").is_err());
        assert!(Rate::parse("many").is_err());
    }
}
