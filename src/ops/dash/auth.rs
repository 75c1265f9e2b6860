//! Who is asking, for the dashboard: sessions and CSRF tokens.
//!
//! The ops endpoint has one secret, the bearer token (`ops.token_env`).
//! A browser cannot send a bearer header, so `POST /login` with the token
//! sets a session cookie: `<expiry>.<HMAC-SHA256(token, "session:" +
//! expiry)>` — HttpOnly, SameSite=Strict, valid 12 hours, nothing stored on
//! the server, invalid as soon as the token changes. Every action form
//! carries a CSRF token, `HMAC(token, "csrf:" + credential)`, bound to the
//! session cookie (or to the bearer for API clients), so a page of another
//! site can neither read nor forge it.
//!
//! Without a token configured (loopback only) the dashboard is read-only:
//! pages render, actions are refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Name of the session cookie.
pub const COOKIE: &str = "paper_runner_session";
/// How long a session lasts.
pub const SESSION_SECS: i64 = 12 * 3600;

/// What the request proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// No token is configured (loopback): may read, may not act.
    ReadOnly,
    /// Sent the bearer token.
    Bearer,
    /// Holds a valid session cookie (its value).
    Session(String),
    /// A token is configured and none was shown (only the login page and
    /// assets are served).
    Anonymous,
}

impl Viewer {
    pub fn can_act(&self) -> bool {
        matches!(self, Viewer::Bearer | Viewer::Session(_))
    }
}

/// The keys derived from the configured token.
#[derive(Clone)]
pub struct Keys {
    token: Vec<u8>,
}

fn mac(key: &[u8], msg: &str) -> String {
    // HMAC takes keys of any length; the error case cannot occur.
    let Ok(mut m) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    m.update(msg.as_bytes());
    let bytes = m.finalize().into_bytes();
    let mut out = String::with_capacity(64);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Equal-time comparison, so response timing does not leak a secret.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Keys {
    pub fn new(token: &str) -> Keys {
        Keys {
            token: token.as_bytes().to_vec(),
        }
    }

    /// Whether `given` is the token.
    pub fn is_token(&self, given: &str) -> bool {
        same(given.trim().as_bytes(), &self.token)
    }

    /// A new session cookie value valid until `now + SESSION_SECS`.
    pub fn new_session(&self, now_unix: i64) -> String {
        let exp = now_unix.saturating_add(SESSION_SECS);
        format!("{exp}.{}", mac(&self.token, &format!("session:{exp}")))
    }

    /// Whether a cookie value is a session this token signed that has not
    /// expired.
    pub fn valid_session(&self, value: &str, now_unix: i64) -> bool {
        let Some((exp, sig)) = value.split_once('.') else {
            return false;
        };
        let Ok(exp_n) = exp.parse::<i64>() else {
            return false;
        };
        // Expired, or further out than any session this code issues.
        if exp_n <= now_unix || exp_n > now_unix.saturating_add(SESSION_SECS + 60) {
            return false;
        }
        same(
            sig.as_bytes(),
            mac(&self.token, &format!("session:{exp}")).as_bytes(),
        )
    }

    /// The CSRF token of a viewer that may act (None otherwise).
    pub fn csrf(&self, viewer: &Viewer) -> Option<String> {
        match viewer {
            Viewer::Bearer => Some(mac(&self.token, "csrf:bearer")),
            Viewer::Session(v) => Some(mac(&self.token, &format!("csrf:{v}"))),
            Viewer::ReadOnly | Viewer::Anonymous => None,
        }
    }
}

/// The session cookie's value in a `Cookie` header.
pub fn session_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(COOKIE)?.strip_prefix('='))
}

/// A `Set-Cookie` value that sets (Some) or clears (None) the session.
pub fn set_cookie(value: Option<&str>) -> String {
    match value {
        Some(v) => {
            format!("{COOKIE}={v}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}")
        }
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_signed_by_the_token_and_expire() {
        let k = Keys::new("s3cret");
        let now = 1_800_000_000;
        let v = k.new_session(now);
        assert!(k.valid_session(&v, now));
        assert!(k.valid_session(&v, now + SESSION_SECS - 1));
        assert!(!k.valid_session(&v, now + SESSION_SECS));
        assert!(!Keys::new("other").valid_session(&v, now));
        // A forged expiry invalidates the signature.
        let (_, sig) = v.split_once('.').unwrap();
        assert!(!k.valid_session(&format!("{}.{sig}", now + 100), now));
        for junk in ["", ".", "x.y", "99999999999999999999.ab", "1.2.3"] {
            assert!(!k.valid_session(junk, now), "{junk}");
        }
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_credential() {
        let k = Keys::new("s3cret");
        let a = k.csrf(&Viewer::Session("1.a".into())).unwrap();
        let b = k.csrf(&Viewer::Session("1.b".into())).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, k.csrf(&Viewer::Bearer).unwrap());
        assert_eq!(k.csrf(&Viewer::ReadOnly), None);
        assert!(!a.contains("s3cret"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(
            session_cookie(&format!("a=1; {COOKIE}=9.ff; b=2")),
            Some("9.ff")
        );
        assert_eq!(session_cookie("a=1"), None);
        assert!(set_cookie(Some("x")).contains("HttpOnly; SameSite=Strict"));
    }
}
