//! Mapping provider answers to the error taxonomy the runtime routes on.
//!
//! Messages carry the HTTP status, provider, model and an excerpt of the
//! body — with the API key scrubbed if a provider ever echoes it.

use crate::engine::{ErrorKind, ExecError};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// How much of a response body goes into an error message.
const EXCERPT: usize = 300;

/// Who was called, for messages.
pub struct Target<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// The key, only to scrub it from messages.
    pub key: Option<&'a str>,
}

/// Classify a non-2xx answer.
pub fn from_status(status: u16, headers: &HeaderMap, body: &str, t: &Target<'_>) -> ExecError {
    let lower = body.to_ascii_lowercase();
    let kind = kind_for_status(status, &lower);
    let mut e = ExecError::new(kind, message(Some(status), body, t));
    if matches!(kind, ErrorKind::RateLimit | ErrorKind::ServerError) {
        e.retry_after = retry_after(headers);
    }
    e
}

fn kind_for_status(status: u16, lower_body: &str) -> ErrorKind {
    match status {
        429 => ErrorKind::RateLimit,
        402 => ErrorKind::PaymentRequired,
        401 => ErrorKind::AuthError,
        403 if is_content_filter(lower_body) => ErrorKind::ContentFilter,
        403 => ErrorKind::AuthError,
        400 | 413 if is_context_length(lower_body) => ErrorKind::ContextLength,
        400 if is_content_filter(lower_body) => ErrorKind::ContentFilter,
        400 | 413 | 422 => ErrorKind::InvalidRequest,
        404 => ErrorKind::ModelNotFound,
        451 => ErrorKind::LegalBlock,
        408 | 504 => ErrorKind::Timeout,
        500..=599 => ErrorKind::ServerError,
        _ => ErrorKind::ServerError,
    }
}

fn is_context_length(b: &str) -> bool {
    [
        "context length",
        "context_length",
        "maximum context",
        "too many tokens",
        "context window",
        "prompt is too long",
    ]
    .iter()
    .any(|p| b.contains(p))
}

fn is_content_filter(b: &str) -> bool {
    ["content_filter", "content filter", "moderation", "flagged"]
        .iter()
        .any(|p| b.contains(p))
}

/// Classify an `{"error": {...}}` object found inside a 200 response
/// (OpenRouter reports upstream failures this way).
pub fn from_error_object(err: &Value, body: &str, t: &Target<'_>) -> ExecError {
    let code = err.get("code");
    let status = code.and_then(|c| {
        c.as_u64()
            .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
    });
    let text = format!(
        "{} {}",
        code.and_then(Value::as_str).unwrap_or(""),
        err.get("message").and_then(Value::as_str).unwrap_or("")
    )
    .to_ascii_lowercase();
    let kind = match status {
        Some(s) => kind_for_status(s as u16, &text),
        None if text.contains("rate") && text.contains("limit") => ErrorKind::RateLimit,
        None if is_context_length(&text) => ErrorKind::ContextLength,
        None if is_content_filter(&text) => ErrorKind::ContentFilter,
        None => ErrorKind::ServerError,
    };
    ExecError::new(kind, message(Some(200), body, t))
}

/// Classify a transport failure (no HTTP answer).
pub fn from_transport(e: &reqwest::Error, t: &Target<'_>) -> ExecError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::ServerError
    };
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // reqwest's messages include the URL but never headers, so no key.
    ExecError::new(
        kind,
        scrub(
            &format!("{} model {}: {what}: {e}", t.provider, t.model),
            t.key,
        ),
    )
}

fn message(status: Option<u16>, body: &str, t: &Target<'_>) -> String {
    let excerpt: String = body.trim().chars().take(EXCERPT).collect();
    let more = if body.trim().chars().count() > EXCERPT {
        "…"
    } else {
        ""
    };
    let status = status.map(|s| format!("HTTP {s} ")).unwrap_or_default();
    scrub(
        &format!(
            "{status}from {} model {}: {excerpt}{more}",
            t.provider, t.model
        ),
        t.key,
    )
}

/// Remove the key from any text that might be shown or stored.
pub fn scrub(text: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if k.len() >= 4 && text.contains(k) => text.replace(k, "***"),
        _ => text.to_string(),
    }
}

/// Seconds to wait, from `Retry-After` (seconds or HTTP date) or
/// `X-RateLimit-Reset` (epoch seconds, epoch milliseconds, or a delay).
pub fn retry_after(headers: &HeaderMap) -> Option<f64> {
    let now_ms = chrono::Utc::now().timestamp_millis() as f64;
    if let Some(v) = header(headers, "retry-after") {
        if let Ok(secs) = v.trim().parse::<f64>() {
            return Some(secs.max(0.0));
        }
        if let Ok(t) = chrono::DateTime::parse_from_rfc2822(v.trim()) {
            return Some(((t.timestamp_millis() as f64 - now_ms) / 1000.0).max(0.0));
        }
    }
    for name in ["x-ratelimit-reset", "x-ratelimit-reset-requests"] {
        if let Some(v) = header(headers, name) {
            if let Some(s) = parse_reset(v.trim(), now_ms) {
                return Some(s);
            }
        }
    }
    None
}

/// `X-RateLimit-Reset` forms: epoch ms (> 1e12), epoch s (> 1e9), a
/// number of seconds, or a duration like `1s`, `6m0s`, `250ms`.
pub fn parse_reset(v: &str, now_ms: f64) -> Option<f64> {
    if let Ok(n) = v.parse::<f64>() {
        return Some(if n > 1e12 {
            ((n - now_ms) / 1000.0).max(0.0)
        } else if n > 1e9 {
            (n - now_ms / 1000.0).max(0.0)
        } else {
            n.max(0.0)
        });
    }
    parse_go_duration(v)
}

fn parse_go_duration(v: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `X-RateLimit-Remaining` as a number, when present.
pub fn remaining(headers: &HeaderMap) -> Option<f64> {
    ["x-ratelimit-remaining", "x-ratelimit-remaining-requests"]
        .iter()
        .find_map(|n| header(headers, n).and_then(|v| v.trim().parse().ok()))
}

/// Rate-limit windows the provider reported (`X-RateLimit-*` headers, with
/// OpenAI's `-requests`/`-tokens` variants), for `context.machine.rate_limit`.
pub fn windows(headers: &HeaderMap) -> Vec<Value> {
    let now_ms = chrono::Utc::now().timestamp_millis() as f64;
    let mut out = Vec::new();
    for (name, suffix) in [
        ("requests", ""),
        ("requests", "-requests"),
        ("tokens", "-tokens"),
    ] {
        let get = |k: &str| header(headers, &format!("x-ratelimit-{k}{suffix}")).map(str::trim);
        let limit = get("limit").and_then(|v| v.parse::<f64>().ok());
        let remaining = get("remaining").and_then(|v| v.parse::<f64>().ok());
        if limit.is_none() && remaining.is_none() {
            continue;
        }
        let resets_in = get("reset").and_then(|v| parse_reset(v, now_ms));
        out.push(serde_json::json!({
            "name": name,
            "limit": limit,
            "remaining": remaining,
            "resets_in": resets_in,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn t() -> Target<'static> {
        Target {
            provider: "openrouter",
            model: "m",
            key: Some("sk-secret-123"),
        }
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn statuses_map_to_kinds() {
        let cases = [
            (429, "", ErrorKind::RateLimit),
            (402, "", ErrorKind::PaymentRequired),
            (401, "", ErrorKind::AuthError),
            (403, "", ErrorKind::AuthError),
            (400, "bad", ErrorKind::InvalidRequest),
            (
                400,
                "This model's maximum context length is 8192 tokens",
                ErrorKind::ContextLength,
            ),
            (404, "", ErrorKind::ModelNotFound),
            (451, "", ErrorKind::LegalBlock),
            (500, "", ErrorKind::ServerError),
            (502, "", ErrorKind::ServerError),
            (503, "", ErrorKind::ServerError),
            (504, "", ErrorKind::Timeout),
        ];
        for (status, body, kind) in cases {
            assert_eq!(
                from_status(status, &HeaderMap::new(), body, &t()).kind,
                kind,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after(&h(&[("retry-after", "7")])), Some(7.0));
        let date = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = retry_after(&h(&[("retry-after", &date)])).unwrap();
        assert!((28.0..=31.0).contains(&d), "{d}");
        let ms = (chrono::Utc::now().timestamp_millis() + 5000).to_string();
        let d = retry_after(&h(&[("x-ratelimit-reset", &ms)])).unwrap();
        assert!((3.5..=5.5).contains(&d), "{d}");
        let s = (chrono::Utc::now().timestamp() + 10).to_string();
        let d = retry_after(&h(&[("x-ratelimit-reset", &s)])).unwrap();
        assert!((8.5..=10.5).contains(&d), "{d}");
        assert_eq!(
            retry_after(&h(&[("x-ratelimit-reset-requests", "6m0s")])),
            Some(360.0)
        );
        assert_eq!(
            retry_after(&h(&[("x-ratelimit-reset-requests", "250ms")])),
            Some(0.25)
        );
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn messages_carry_context_but_never_the_key() {
        let e = from_status(401, &HeaderMap::new(), "invalid key sk-secret-123", &t());
        assert!(e.message.contains("HTTP 401 from openrouter model m"));
        assert!(!e.message.contains("sk-secret-123"));
    }

    #[test]
    fn errors_inside_200_bodies_are_classified() {
        let err = serde_json::json!({"code": 429, "message": "Rate limit exceeded"});
        assert_eq!(
            from_error_object(&err, "{}", &t()).kind,
            ErrorKind::RateLimit
        );
        let err = serde_json::json!({"code": "context_length_exceeded", "message": "too long"});
        assert_eq!(
            from_error_object(&err, "{}", &t()).kind,
            ErrorKind::ContextLength
        );
        let err = serde_json::json!({"code": 502, "message": "upstream"});
        assert_eq!(
            from_error_object(&err, "{}", &t()).kind,
            ErrorKind::ServerError
        );
    }
}
