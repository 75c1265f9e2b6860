//! Mapping provider answers to the error taxonomy the runtime routes on,
//! and making every number and every text a provider sends safe to use.
//!
//! Messages carry the HTTP status, provider, model and an excerpt of the
//! body — passed through [`scrub`], which removes the API key (whole or cut
//! at the excerpt boundary) if a provider ever echoes it.
//!
//! Waits the provider asks for (`Retry-After`, `X-RateLimit-Reset*`) are
//! parsed defensively: anything that is not a finite, non-negative number
//! of seconds (NaN, `inf`, negative, garbage) counts as absent, and every
//! value is capped by an absolute maximum, so `Retry-After: 1e20` can
//! neither panic a `Duration` conversion nor park a model for centuries.

use crate::engine::{ErrorKind, ExecError};
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::time::SystemTime;

/// How much of a response body goes into an error message.
const EXCERPT: usize = 300;

/// The absolute cap on any wait a provider or download server asks for,
/// when the profile (or `[download]`) sets none: one hour. Longer requests
/// are honoured for one hour; the breaker and the limiter take it from there.
pub const DEFAULT_MAX_RETRY_AFTER_SECS: f64 = 3600.0;

/// No wait from outside is ever longer than a day, whatever cap is passed
/// (a cap from an unvalidated source must not make a `Duration` overflow).
pub const ABSOLUTE_MAX_WAIT_SECS: f64 = 86_400.0;

/// Runs of this many key characters or more are removed wherever they
/// appear in a message: a key cut by a truncation, a line break or a
/// provider's own excerpt still leaks its characters otherwise.
const FRAGMENT_MIN: usize = 8;
/// At the very start and end of a text (where an excerpt boundary may have
/// cut the key), shorter fragments down to this length are removed too.
const EDGE_MIN: usize = 4;
/// Keys shorter than this are too short to scrub meaningfully (a 3-char
/// "key" would shred ordinary text) and are left alone.
const KEY_MIN: usize = 4;

/// Who was called, for messages.
pub struct Target<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// The key, only to scrub it from messages.
    pub key: Option<&'a str>,
    /// Cap on waits read from this provider's headers, seconds.
    pub max_retry_after: f64,
}

/// Classify a non-2xx answer.
pub fn from_status(status: u16, headers: &HeaderMap, body: &str, t: &Target<'_>) -> ExecError {
    let lower = body.to_ascii_lowercase();
    let kind = kind_for_status(status, &lower);
    let mut e = ExecError::new(kind, message(Some(status), body, t));
    if matches!(kind, ErrorKind::RateLimit | ErrorKind::ServerError) {
        e.retry_after = retry_after_capped(headers, t.max_retry_after);
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
    // Only codes that are HTTP statuses count; anything else (negative,
    // 70000, 4.29e2) is classified by its text like a missing code.
    let status = code
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..=599).contains(s));
    let text = format!(
        "{} {}",
        code.and_then(Value::as_str).unwrap_or(""),
        err.get("message").and_then(Value::as_str).unwrap_or("")
    )
    .to_ascii_lowercase();
    let kind = match status {
        Some(s) => kind_for_status(s, &text),
        None if text.contains("rate") && text.contains("limit") => ErrorKind::RateLimit,
        None if is_context_length(&text) => ErrorKind::ContextLength,
        None if is_content_filter(&text) => ErrorKind::ContentFilter,
        None => ErrorKind::ServerError,
    };
    ExecError::new(kind, message(Some(200), body, t))
}

/// Classify a transport failure (no HTTP answer, or the body broke off).
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
    // reqwest's messages include the URL (which may carry a key in a query
    // string) but never headers; scrubbed all the same.
    ExecError::new(
        kind,
        scrub(
            &format!("{} model {}: {what}: {e}", t.provider, t.model),
            t.key,
        ),
    )
}

/// A 2xx body over the profile's `max_response_bytes`: refused whole, so a
/// runaway or hostile provider cannot exhaust memory or bloat the ledger.
pub fn too_large(cap: u64, seen: u64, t: &Target<'_>) -> ExecError {
    ExecError::new(
        ErrorKind::ResponseTooLarge,
        format!(
            "{} model {}: response body of at least {seen} bytes exceeds the {cap}-byte cap \
             (profile key max_response_bytes); refused",
            t.provider, t.model
        ),
    )
}

fn message(status: Option<u16>, body: &str, t: &Target<'_>) -> String {
    let status = status.map(|s| format!("HTTP {s} ")).unwrap_or_default();
    scrub(
        &format!(
            "{status}from {} model {}: {}",
            t.provider,
            t.model,
            excerpt(body, EXCERPT, t.key)
        ),
        t.key,
    )
}

/// Remove whole occurrences of the key only: for a complete body that was
/// never cut (a 2xx answer), where removing short fragments could alter
/// legitimate content.
pub fn scrub_whole(text: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if k.len() >= KEY_MIN && text.contains(k) => text.replace(k, "***"),
        _ => text.to_string(),
    }
}

/// At most `max` characters of `text`, key-free: the whole text is scrubbed
/// *before* it is cut (so a key straddling the cut is seen whole), and the
/// cut text again (so a fragment left at its edge goes too). "…" marks a cut.
pub fn excerpt(text: &str, max: usize, key: Option<&str>) -> String {
    let clean = scrub(text.trim(), key);
    let mut chars = clean.chars();
    let cut: String = chars.by_ref().take(max).collect();
    let more = if chars.next().is_some() { "…" } else { "" };
    format!("{}{more}", scrub(&cut, key))
}

/// Remove the key from any text that might be shown, logged or stored.
///
/// Removes (replacing each removed run with `***`): every whole occurrence;
/// every run of at least [`FRAGMENT_MIN`] characters that also occurs in the
/// key (a key cut anywhere, e.g. by a provider's own truncation); and at the
/// text's start and end, runs of at least [`EDGE_MIN`] characters that are a
/// suffix / prefix of the key (a key cut by an excerpt boundary). Keys under
/// [`KEY_MIN`] characters are ignored; non-ASCII keys are removed whole only.
pub fn scrub(text: &str, key: Option<&str>) -> String {
    let Some(k) = key.filter(|k| k.len() >= KEY_MIN) else {
        return text.to_string();
    };
    if !k.is_ascii() {
        return text.replace(k, "***");
    }
    let (t, kb) = (text.as_bytes(), k.as_bytes());
    let mut marked = vec![false; t.len()];
    let mut any = false;
    let mut mark = |from: usize, to: usize, marked: &mut Vec<bool>| {
        marked[from..to].iter_mut().for_each(|m| *m = true);
        any = true;
    };
    // Every window of FRAGMENT_MIN key bytes; overlapping windows together
    // cover any longer run, the whole key included.
    let w = FRAGMENT_MIN.min(kb.len());
    for j in 0..=kb.len() - w {
        let frag = &k[j..j + w];
        let mut from = 0;
        while let Some(i) = text.get(from..).and_then(|rest| rest.find(frag)) {
            mark(from + i, from + i + w, &mut marked);
            from += i + 1;
        }
    }
    // Fragments cut at either edge of the text.
    for len in (EDGE_MIN..kb.len().min(t.len() + 1)).rev() {
        if t[..len] == kb[kb.len() - len..] {
            mark(0, len, &mut marked);
            break;
        }
    }
    for len in (EDGE_MIN..kb.len().min(t.len() + 1)).rev() {
        if t[t.len() - len..] == kb[..len] {
            mark(t.len() - len, t.len(), &mut marked);
            break;
        }
    }
    if !any {
        return text.to_string();
    }
    // Marked bytes are ASCII (they equal key bytes), so every run boundary
    // is a char boundary and the rebuilt text is valid UTF-8.
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < t.len() {
        if marked[i] {
            out.push_str("***");
            while i < t.len() && marked[i] {
                i += 1;
            }
        } else {
            let start = i;
            while i < t.len() && !marked[i] {
                i += 1;
            }
            out.push_str(&text[start..i]);
        }
    }
    out
}

/// A wait in seconds made safe to sleep on: finite, non-negative and at
/// most `cap` (itself at most [`ABSOLUTE_MAX_WAIT_SECS`]). NaN, infinities
/// and negative values are not waits (None). A `cap` that is itself
/// unusable (NaN, negative) falls back to the default cap.
pub fn clamp_wait(secs: f64, cap: f64) -> Option<f64> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let cap = if cap.is_finite() && cap >= 0.0 {
        cap.min(ABSOLUTE_MAX_WAIT_SECS)
    } else if cap == f64::INFINITY {
        ABSOLUTE_MAX_WAIT_SECS
    } else {
        DEFAULT_MAX_RETRY_AFTER_SECS
    };
    Some(secs.min(cap))
}

/// Seconds to wait, from `Retry-After` (seconds or HTTP date) or
/// `X-RateLimit-Reset` (epoch seconds, epoch milliseconds, or a delay),
/// capped at [`DEFAULT_MAX_RETRY_AFTER_SECS`].
pub fn retry_after(headers: &HeaderMap) -> Option<f64> {
    retry_after_capped(headers, DEFAULT_MAX_RETRY_AFTER_SECS)
}

/// [`retry_after`] with an explicit cap: the result is always within
/// `[0, cap]`; unusable header values count as absent (the next header is
/// tried).
pub fn retry_after_capped(headers: &HeaderMap, cap: f64) -> Option<f64> {
    let now = SystemTime::now();
    if let Some(s) = header(headers, "retry-after").and_then(|v| parse_retry_after(v, now, cap)) {
        return Some(s);
    }
    let now_ms = epoch_ms(now);
    [
        "x-ratelimit-reset",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    ]
    .iter()
    .find_map(|name| header(headers, name).and_then(|v| parse_reset(v.trim(), now_ms, cap)))
}

fn epoch_ms(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(_) => 0.0,
    }
}

/// One `Retry-After` value: delta-seconds (decimals tolerated) or an
/// HTTP-date (IMF-fixdate, RFC 850 or asctime via `httpdate`; other RFC 2822
/// forms via chrono). A date in the past means "now" (0).
pub fn parse_retry_after(v: &str, now: SystemTime, cap: f64) -> Option<f64> {
    let v = v.trim();
    if let Ok(n) = v.parse::<f64>() {
        return clamp_wait(n, cap);
    }
    if let Ok(at) = httpdate::parse_http_date(v) {
        let secs = at.duration_since(now).map_or(0.0, |d| d.as_secs_f64());
        return clamp_wait(secs, cap);
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc2822(v) {
        let secs = (at.timestamp_millis() as f64 - epoch_ms(now)) / 1000.0;
        return clamp_wait(secs.max(0.0), cap);
    }
    None
}

/// `X-RateLimit-Reset` forms: epoch ms (> 1e12), epoch s (> 1e9), a
/// number of seconds, or a duration like `1s`, `6m0s`, `250ms`. The result
/// is within `[0, cap]`; a reset in the past is 0.
pub fn parse_reset(v: &str, now_ms: f64, cap: f64) -> Option<f64> {
    if let Ok(n) = v.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        let secs = if n > 1e12 {
            (n - now_ms) / 1000.0
        } else if n > 1e9 {
            n - now_ms / 1000.0
        } else {
            n
        };
        return clamp_wait(secs.max(0.0), cap);
    }
    parse_go_duration(v).and_then(|s| clamp_wait(s, cap))
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

/// A header count (`X-RateLimit-Limit/Remaining`): a finite number >= 0.
fn count(v: &str) -> Option<f64> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

/// `X-RateLimit-Remaining` as a number, when present and sane.
pub fn remaining(headers: &HeaderMap) -> Option<f64> {
    ["x-ratelimit-remaining", "x-ratelimit-remaining-requests"]
        .iter()
        .find_map(|n| header(headers, n).and_then(count))
}

/// The provider's token window from a 2xx: `x-ratelimit-remaining-tokens`
/// and `x-ratelimit-reset-tokens` (OpenAI's `6m0s`/`1s`/`20ms`, seconds, or
/// an epoch), the reset capped at `cap` seconds. None unless both are
/// present and sane: a remaining count without a reset says nothing about
/// when the tokens come back.
pub fn token_window(headers: &HeaderMap, cap: f64) -> Option<(u64, f64)> {
    let remaining = header(headers, "x-ratelimit-remaining-tokens").and_then(count)?;
    let reset = header(headers, "x-ratelimit-reset-tokens")
        .and_then(|v| parse_reset(v.trim(), epoch_ms(SystemTime::now()), cap))?;
    Some((remaining.min(u64::MAX as f64) as u64, reset))
}

/// Rate-limit windows the provider reported (`X-RateLimit-*` headers, with
/// OpenAI's `-requests`/`-tokens` variants), for `context.machine.rate_limit`.
/// `resets_in` is capped at `cap` seconds like every other provider wait.
pub fn windows(headers: &HeaderMap, cap: f64) -> Vec<Value> {
    let now_ms = epoch_ms(SystemTime::now());
    let mut out = Vec::new();
    for (name, suffix) in [
        ("requests", ""),
        ("requests", "-requests"),
        ("tokens", "-tokens"),
    ] {
        let get = |k: &str| header(headers, &format!("x-ratelimit-{k}{suffix}")).map(str::trim);
        let limit = get("limit").and_then(count);
        let remaining = get("remaining").and_then(count);
        if limit.is_none() && remaining.is_none() {
            continue;
        }
        let resets_in = get("reset").and_then(|v| parse_reset(v, now_ms, cap));
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
            max_retry_after: DEFAULT_MAX_RETRY_AFTER_SECS,
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

    #[test]
    fn absurd_waits_are_capped_and_garbage_is_absent() {
        let cap = DEFAULT_MAX_RETRY_AFTER_SECS;
        for v in [
            "1e20",
            "1e300",
            "100000000",
            "179769313486231570000000000000",
        ] {
            assert_eq!(retry_after(&h(&[("retry-after", v)])), Some(cap), "{v}");
        }
        for v in ["NaN", "inf", "-inf", "infinity", "-5", "soon", "", "1e400"] {
            assert_eq!(retry_after(&h(&[("retry-after", v)])), None, "{v}");
        }
        assert_eq!(
            retry_after(&h(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")])),
            Some(cap)
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")])),
            Some(0.0),
            "a date in the past means now"
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "Sunday, 06-Nov-94 08:49:37 GMT")])),
            Some(0.0),
            "RFC 850 dates parse"
        );
        for v in ["1e300", "1e20", "99999999999999999999999h", "9999999999999"] {
            assert_eq!(
                retry_after(&h(&[("x-ratelimit-reset", v)])),
                Some(cap),
                "{v}"
            );
        }
        for v in ["NaN", "-1", "-1s", "1e400", "5x", "1.2.3s", "s"] {
            assert_eq!(retry_after(&h(&[("x-ratelimit-reset", v)])), None, "{v}");
        }
        // Garbage Retry-After falls through to the reset header.
        assert_eq!(
            retry_after(&h(&[("retry-after", "NaN"), ("x-ratelimit-reset", "12")])),
            Some(12.0)
        );
        // A configured cap wins, and the 429 error carries the capped value.
        assert_eq!(
            retry_after_capped(&h(&[("retry-after", "1e8")]), 60.0),
            Some(60.0)
        );
        let mut t = t();
        t.max_retry_after = 90.0;
        let e = from_status(429, &h(&[("retry-after", "1e20")]), "", &t);
        assert_eq!(e.retry_after, Some(90.0));
        assert_eq!(
            token_window(
                &h(&[
                    ("x-ratelimit-remaining-tokens", "0"),
                    ("x-ratelimit-reset-tokens", "6m0s")
                ]),
                60.0
            ),
            Some((0, 60.0)),
            "the reset is capped"
        );
        assert_eq!(
            token_window(
                &h(&[
                    ("x-ratelimit-remaining-tokens", "1500"),
                    ("x-ratelimit-reset-tokens", "20ms")
                ]),
                60.0
            ),
            Some((1500, 0.02))
        );
        assert_eq!(
            token_window(&h(&[("x-ratelimit-remaining-tokens", "0")]), 60.0),
            None
        );
        assert_eq!(remaining(&h(&[("x-ratelimit-remaining", "NaN")])), None);
        assert_eq!(remaining(&h(&[("x-ratelimit-remaining", "-3")])), None);
        assert_eq!(remaining(&h(&[("x-ratelimit-remaining", "0")])), Some(0.0));
        let w = windows(
            &h(&[
                ("x-ratelimit-limit", "inf"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1e300"),
            ]),
            10.0,
        );
        assert_eq!(w[0]["limit"], Value::Null);
        assert_eq!(w[0]["resets_in"], serde_json::json!(10.0));
    }

    const KEY: &str = "sk-or-v1-0123456789abcdefFEDCBA9876543210";

    /// No run of `n` key characters survives in `text`.
    fn no_fragment(text: &str, n: usize) -> bool {
        (0..=KEY.len() - n).all(|i| !text.contains(&KEY[i..i + n]))
    }

    #[test]
    fn the_key_is_scrubbed_whole_cut_and_at_excerpt_edges() {
        let k = Some(KEY);
        assert_eq!(scrub(&format!("a {KEY} b {KEY}"), k), "a *** b ***");
        // Cut in the middle by someone else's truncation.
        let cut = &KEY[..20];
        assert_eq!(scrub(&format!("echo: {cut}… more"), k), "echo: ***… more");
        // Edges: short fragments at the very start or end.
        assert_eq!(scrub(&format!("x {}", &KEY[..5]), k), "x ***");
        assert_eq!(scrub(&format!("{} y", &KEY[KEY.len() - 5..]), k), "*** y");
        // Ordinary text is left alone.
        assert_eq!(scrub("sk- is a prefix", k), "sk- is a prefix");
        assert_eq!(scrub("plain", None), "plain");
        assert_eq!(scrub(KEY, Some("abc")), KEY, "too short a key");
        // The excerpt boundary falls at every position inside the key.
        for pad in 0..=EXCERPT {
            let body = format!("{}{KEY}{}", "p".repeat(pad), "q".repeat(50));
            let t = Target {
                provider: "p",
                model: "m",
                key: k,
                max_retry_after: 1.0,
            };
            let m = from_status(500, &HeaderMap::new(), &body, &t).message;
            assert!(no_fragment(&m, FRAGMENT_MIN), "pad {pad}: {m}");
            let tail: String = m.chars().rev().skip(1).take(EDGE_MIN).collect();
            let tail: String = tail.chars().rev().collect();
            assert!(
                !KEY.starts_with(&tail) || tail.contains('*'),
                "pad {pad}: {m}"
            );
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;
        use reqwest::header::{HeaderName, HeaderValue};

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        /// Header values as a hostile provider might send them: numbers of
        /// every magnitude and sign, dates, durations and plain garbage.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<f64>().prop_map(|f| f.to_string()),
                any::<f64>().prop_map(|f| format!("{f:e}")),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                (0u32..10_000, 0u32..100).prop_map(|(a, b)| format!("{a}h{b}m{a}s{b}ms")),
                (1i64..=9999, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| {
                    format!(
                        "Fri, {d:02} {} {y:04} 23:59:59 GMT",
                        [
                            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                            "Nov", "Dec"
                        ][(m - 1) as usize]
                    )
                }),
                "[ -~]{0,40}",
                prop::collection::vec(any::<u8>(), 0..40)
                    .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ]
        }

        const NAMES: [&str; 8] = [
            "retry-after",
            "x-ratelimit-reset",
            "x-ratelimit-reset-requests",
            "x-ratelimit-reset-tokens",
            "x-ratelimit-remaining",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-limit",
            "x-ratelimit-limit-tokens",
        ];

        fn headers(pairs: &[(usize, String)]) -> HeaderMap {
            let mut m = HeaderMap::new();
            for (i, v) in pairs {
                // Values a header cannot carry never reach the client.
                if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                    m.insert(HeaderName::from_static(NAMES[i % NAMES.len()]), v);
                }
            }
            m
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn header_waits_are_always_within_the_cap(
                pairs in prop::collection::vec((0usize..8, value()), 0..6),
                cap in prop_oneof![Just(DEFAULT_MAX_RETRY_AFTER_SECS), 0.0f64..1e6, any::<f64>()],
            ) {
                let h = headers(&pairs);
                let bound = clamp_wait(f64::MAX, cap).unwrap_or(0.0);
                if let Some(w) = retry_after_capped(&h, cap) {
                    prop_assert!(w.is_finite() && (0.0..=bound).contains(&w), "{w} for {pairs:?}");
                    prop_assert!(std::time::Duration::try_from_secs_f64(w).is_ok());
                }
                if let Some(r) = remaining(&h) {
                    prop_assert!(r.is_finite() && r >= 0.0);
                }
                for w in windows(&h, cap) {
                    if let Some(s) = w["resets_in"].as_f64() {
                        prop_assert!((0.0..=bound).contains(&s), "{s}");
                    }
                }
            }

            #[test]
            fn single_values_parse_within_the_cap(v in value(), cap in 0.0f64..1e5) {
                let now = SystemTime::now();
                for w in [
                    parse_retry_after(&v, now, cap),
                    parse_reset(&v, epoch_ms(now), cap),
                ]
                .into_iter()
                .flatten()
                {
                    prop_assert!((0.0..=cap).contains(&w), "{w} from {v:?}");
                }
            }

            #[test]
            fn scrubbed_text_never_holds_a_key_fragment(
                pre in "[ -~]{0,80}",
                post in "[ -~]{0,80}",
                cut_from in 0usize..40,
                cut_len in 0usize..60,
                max in 1usize..400,
            ) {
                let key = "sk-or-v1-0123456789abcdefFEDCBA9876543210";
                // Whole key, and a piece of it, somewhere in the text.
                let piece = &key[cut_from.min(key.len())..(cut_from + cut_len).min(key.len())];
                let text = format!("{pre}{key}{post}{piece}{pre}");
                for out in [scrub(&text, Some(key)), excerpt(&text, max, Some(key))] {
                    for i in 0..=key.len() - FRAGMENT_MIN {
                        prop_assert!(!out.contains(&key[i..i + FRAGMENT_MIN]), "{out}");
                    }
                }
            }
        }
    }
}
