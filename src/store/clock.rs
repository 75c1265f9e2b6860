//! The store's notion of "now", injected so that time-dependent queries
//! (lease expiry, the reaper, breaker and pause windows, the budget day)
//! can be driven by tests instead of by sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of wall-clock time in Unix milliseconds.
///
/// Every store query that compares times takes its `now` from the store's
/// clock (`Store::now_ms`), never from `SystemTime` directly.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;

    /// "Now" in Unix microseconds, for the text timestamps the store
    /// writes (`updated_at`, timeline `at`, …): the real clock keeps
    /// microseconds so rows written within one millisecond still sort in
    /// write order; a test clock may stay at millisecond steps.
    fn now_us(&self) -> i64 {
        self.now_ms().saturating_mul(1000)
    }

    /// True for a clock tests move by hand: the PostgreSQL backend then
    /// uses it as it is instead of correcting it to the server's clock.
    fn is_manual(&self) -> bool {
        false
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    fn now_us(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }
}

/// The system clock off by a fixed amount: a host whose clock is wrong.
/// Only built from [`SKEW_ENV`], so tests can run processes whose clocks
/// disagree and check that the PostgreSQL backend, which corrects every
/// host to the server's clock, keeps fencing and the reaper right.
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock {
    pub skew_ms: i64,
}

/// Test hook: a process started with this variable (milliseconds, at most
/// a day either way) runs on a [`SkewedClock`].
pub const SKEW_ENV: &str = "PAPER_RUNNER_TEST_CLOCK_SKEW_MS";

impl SkewedClock {
    /// The clock [`SKEW_ENV`] asks for, if it is set to a valid value.
    pub fn from_env() -> Option<SkewedClock> {
        let v = std::env::var(SKEW_ENV).ok()?;
        let skew_ms = v.trim().parse::<i64>().ok()?;
        (skew_ms.abs() <= 86_400_000).then_some(SkewedClock { skew_ms })
    }
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms().saturating_add(self.skew_ms)
    }

    fn now_us(&self) -> i64 {
        SystemClock
            .now_us()
            .saturating_add(self.skew_ms.saturating_mul(1000))
    }
}

/// A Unix time in microseconds as the store's text timestamp: RFC 3339,
/// UTC, fixed width (`2024-05-01T12:00:00.000000Z`), so text order is time
/// order. Out-of-range values clamp to the representable range.
pub fn timestamp_text(us: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(us).unwrap_or(if us < 0 {
        chrono::DateTime::<chrono::Utc>::MIN_UTC
    } else {
        chrono::DateTime::<chrono::Utc>::MAX_UTC
    });
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A clock that only moves when told to (tests, benchmarks). Cloning
/// shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `ms` (Unix milliseconds).
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }

    /// A clock standing at the current real time.
    pub fn starting_now() -> ManualClock {
        ManualClock::at(SystemClock.now_ms())
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, d: std::time::Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn is_manual(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at(1_000);
        let shared = c.clone();
        assert_eq!(c.now_ms(), 1_000);
        c.advance(std::time::Duration::from_secs(2));
        assert_eq!(shared.now_ms(), 3_000);
        shared.set(5);
        assert_eq!(c.now_ms(), 5);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
        assert!(SystemClock.now_us() / 1000 >= 1_577_836_800_000);
    }

    #[test]
    fn timestamps_are_fixed_width_rfc3339() {
        assert_eq!(
            timestamp_text(ManualClock::at(1_700_000_000_123).now_us()),
            "2023-11-14T22:13:20.123000Z"
        );
        assert_eq!(timestamp_text(0), "1970-01-01T00:00:00.000000Z");
    }
}
