//! Bounds on what machine, agent, prompt and profile files may ask for.
//!
//! Every number in these files that becomes a `Duration` or a count is
//! range-checked when the file is loaded (so `runner machine check` names the
//! file and state), and the run-time conversions go through
//! [`duration_from_secs`], which cannot panic: `Duration::from_secs_f64(1e20)`
//! aborts a phase task, and a value can reach the engine without passing the
//! loader (a bundle stored by an older version, a provider's `retry_after`).

use std::time::Duration;

/// Largest duration (seconds) a file may set: state `timeout`, model
/// `timeout`, each `execution.backoffs` entry. 24 hours: longer than any
/// sensible call or command, short enough that a deadline computed from it
/// cannot overflow.
pub const MAX_DURATION_SECS: f64 = 86_400.0;

/// Most `execution.n_samples` of a `parallel` agent state (each is a
/// concurrent paid call).
pub const MAX_SAMPLES: u32 = 100;

/// Most entries in `execution.backoffs` (each is one more paid attempt).
pub const MAX_BACKOFFS: usize = 100;

/// Largest machine, agent, prompt or profile file read (bytes). Real files
/// are a few KiB; the cap stops a mistaken path (a log, `/dev/zero`) from
/// being read into memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Deepest bracket (`[`/`{`) nesting a YAML/JSON file may have. The YAML
/// parser's cost grows with the square of the flow nesting (200 KB of `[`
/// took 20 s), so deeper files are refused before parsing; real files nest
/// fewer than 10 levels. (Block nesting costs linear time and stops at
/// serde_yaml's own limit of 128 levels.)
pub const MAX_NESTING: usize = 64;

/// Deepest nesting of child machines below a root execution (the engine's
/// default limit, and what `check` allows for a chain of `machine:` refs).
pub const MAX_NESTING_DEPTH: usize = 16;

/// Child executions one root execution may start in total (engine default).
pub const MAX_CHILDREN_PER_ROOT: usize = 1000;

/// Children one state may start at once: `foreach` items or a `machine:`
/// list (engine default).
pub const MAX_FANOUT_PER_STATE: usize = 500;

/// Seconds → `Duration` for a value from a file or a provider: `None` for
/// NaN, negative or zero (callers use their default), capped at
/// [`MAX_DURATION_SECS`]. Never panics.
pub fn duration_from_secs(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs.min(MAX_DURATION_SECS)).ok()
}

/// Why `secs` is not an acceptable duration in a file, if it is not.
pub fn check_secs(what: &str, secs: f64) -> Result<(), String> {
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_DURATION_SECS {
        return Err(format!(
            "{what} must be a number of seconds above 0 and at most {MAX_DURATION_SECS} (24 h), got {secs}"
        ));
    }
    Ok(())
}

/// A number of seconds from a machine file (state `timeout`,
/// `execution.backoffs`), converted to a `Duration` once, when the file is
/// deserialised, so the engine never converts a float at run time.
///
/// It keeps the number as written too: it serialises back to exactly that
/// number (stored bundles and their config hashes stay as they were), and
/// the validator reports an out-of-range value as written, naming file and
/// state. The conversion itself cannot panic: NaN and negatives become
/// zero, anything above [`MAX_DURATION_SECS`] is capped there; a checked
/// bundle never holds such a value, but one stored by an older version may.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds {
    raw: f64,
    duration: Duration,
}

impl Seconds {
    pub fn new(raw: f64) -> Seconds {
        let duration = if raw.is_nan() || raw <= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(raw.min(MAX_DURATION_SECS)).unwrap_or(Duration::ZERO)
        };
        Seconds { raw, duration }
    }

    /// The number as written in the file.
    pub fn secs(self) -> f64 {
        self.raw
    }

    /// The converted value (zero for NaN or a negative; capped at 24 h).
    pub fn duration(self) -> Duration {
        self.duration
    }

    /// The duration when the file asked for more than zero seconds: a
    /// timeout of 0 (or NaN, or negative) means "no timeout given", as
    /// [`duration_from_secs`] has it.
    pub fn positive(self) -> Option<Duration> {
        (self.raw > 0.0).then_some(self.duration)
    }
}

impl From<f64> for Seconds {
    fn from(raw: f64) -> Seconds {
        Seconds::new(raw)
    }
}

impl serde::Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        f64::deserialize(d).map(Seconds::new)
    }
}

/// Most samples an `mdap_voting` state may take (`max_candidates`, `k_margin`).
pub const MAX_CANDIDATES: u64 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_never_panics_and_is_capped() {
        for x in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            1e-300,
            1e20,
            1e300,
            f64::MAX,
        ] {
            let d = duration_from_secs(x);
            if let Some(d) = d {
                assert!(d <= Duration::from_secs(86_400), "{x} -> {d:?}");
            }
        }
        assert_eq!(duration_from_secs(1e20), Some(Duration::from_secs(86_400)));
        assert_eq!(
            duration_from_secs(f64::INFINITY),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(duration_from_secs(2.5), Some(Duration::from_millis(2500)));
        assert_eq!(duration_from_secs(-3.0), None);
        assert_eq!(duration_from_secs(f64::NAN), None);
    }

    #[test]
    fn seconds_convert_once_and_keep_the_number() {
        let s = Seconds::new(2.5);
        assert_eq!((s.secs(), s.duration()), (2.5, Duration::from_millis(2500)));
        assert_eq!(s.positive(), Some(Duration::from_millis(2500)));
        assert_eq!(Seconds::new(0.0).positive(), None);
        assert_eq!(Seconds::new(0.0).duration(), Duration::ZERO);
        for bad in [f64::NAN, -1.0, f64::NEG_INFINITY] {
            assert_eq!(Seconds::new(bad).duration(), Duration::ZERO, "{bad}");
            assert_eq!(Seconds::new(bad).positive(), None, "{bad}");
        }
        for big in [1e20, f64::INFINITY, f64::MAX] {
            assert_eq!(Seconds::new(big).duration(), Duration::from_secs(86_400));
        }
        // Serialises to the number as written (config hashes stay put).
        let json = serde_json::to_string(&Seconds::new(0.1)).unwrap();
        assert_eq!(json, "0.1");
        let back: Seconds = serde_json::from_str("30").unwrap();
        assert_eq!(back.duration(), Duration::from_secs(30));
    }

    #[test]
    fn range_check() {
        assert!(check_secs("timeout", 30.0).is_ok());
        assert!(check_secs("timeout", 86_400.0).is_ok());
        for bad in [0.0, -1.0, 1e20, f64::NAN, f64::INFINITY, 86_400.5] {
            let e = check_secs("timeout", bad).unwrap_err();
            assert!(e.contains("timeout must be"), "{e}");
        }
    }
}
