//! The operator surface: `runner status` / `runner show` reports (serde
//! types, so the CLI and `/status` print the same thing), the in-process
//! metrics layer, and the HTTP endpoint (`/metrics`, `/status`, `/healthz`).

pub mod bill;
pub mod dash;
pub mod forecast;
pub mod http;
pub mod metrics;
pub mod show;
pub mod status;
pub mod text;

use crate::store::StoreError;
use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// No such paper (the CLI exits 2).
    #[error("{0}")]
    NotFound(String),
}

/// The process's file-descriptor budget after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// Soft limit before.
    pub was: u64,
    /// Soft limit now.
    pub now: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (at most 2^20), so the
/// runner's own work (SQLite, PDFs, provider connections, shell commands)
/// has every descriptor the host allows; many systems start processes with
/// a soft limit of 1024 and a hard one far above it. Errors leave the limit
/// as it was.
pub fn raise_fd_limit() -> std::io::Result<FdBudget> {
    const CEILING: u64 = 1 << 20;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let was: u64 = lim.rlim_cur;
    let hard: u64 = lim.rlim_max;
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        CEILING
    } else {
        hard.min(CEILING)
    };
    if was >= target {
        return Ok(FdBudget {
            was,
            now: was,
            hard,
        });
    }
    let new = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FdBudget {
        was,
        now: target,
        hard,
    })
}

/// A store timestamp (RFC 3339) as UTC; None when it does not parse.
pub(crate) fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A timestamp in the store's format (comparable as text with stored ones).
pub(crate) fn fmt_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Milliseconds from `a` to `b` (None when either does not parse).
pub(crate) fn ms_between(a: &str, b: &str) -> Option<i64> {
    Some((parse_ts(b)? - parse_ts(a)?).num_milliseconds())
}

/// A short human duration: `850ms`, `42s`, `3m 05s`, `2h 03m`, `4d 07h`.
pub fn human_duration_ms(ms: i64) -> String {
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let s = ms / 1000;
    let text = if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600)
    };
    if neg {
        format!("-{text}")
    } else {
        text
    }
}

/// Cut `s` to at most `width` characters, marking the cut with `…`.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit() {
        let b = raise_fd_limit().unwrap();
        assert!(b.now >= b.was);
        assert!(b.now <= b.hard || b.hard == libc::RLIM_INFINITY);
        // Idempotent: a second call finds nothing to raise.
        let again = raise_fd_limit().unwrap();
        assert_eq!(again.was, b.now);
        assert_eq!(again.now, b.now);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration_ms(850), "850ms");
        assert_eq!(human_duration_ms(42_000), "42s");
        assert_eq!(human_duration_ms(185_000), "3m 05s");
        assert_eq!(human_duration_ms(7_380_000), "2h 03m");
        assert_eq!(human_duration_ms(-5_000), "-5s");
        assert_eq!(human_duration_ms(3 * 86_400_000 + 3_600_000), "3d 01h");
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdefg", 6), "abcde…");
        assert_eq!(fit("abc", 0), "");
    }

    #[test]
    fn store_timestamps_round_trip() {
        let t = parse_ts("2026-12-01T20:19:17.902146Z").unwrap();
        assert_eq!(fmt_ts(t), "2026-12-01T20:19:17.902146Z");
        assert_eq!(
            ms_between("2026-12-01T20:19:17.000000Z", "2026-12-01T20:19:18.500000Z"),
            Some(1500)
        );
        assert!(parse_ts("yesterday").is_none());
    }
}
