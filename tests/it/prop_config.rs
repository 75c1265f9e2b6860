//! Property tests over config loading and validation: whatever the file or
//! the environment says, loading and validating never panic, and a config
//! that validates yields no overflow in any deadline derived from it (lease
//! and claim deadlines, retry delays, breaker windows, timers) and a
//! budget day start the budget accepts.

use paper_runner::runner::budget::Budget;
use paper_runner::runner::config::{self, Config};
use paper_runner::store::{
    lease_deadline_ms, now_ms, ClaimRequest, ManualClock, NewPaper, Phase, RetryPolicy, Store,
    StoreOptions,
};
use proptest::prelude::*;
use proptest::test_runner::Config as PropConfig;
use std::path::Path;
use std::time::{Duration, Instant};

fn cases(n: u32) -> PropConfig {
    PropConfig {
        cases: n,
        failure_persistence: None,
        ..PropConfig::default()
    }
}

/// Every numeric key: (section, key).
const NUMERIC_KEYS: &[(&str, &str)] = &[
    ("", "prompt_token_budget"),
    ("scheduler", "workers"),
    ("scheduler", "prepped_low_watermark"),
    ("scheduler", "lease_ttl_secs"),
    ("scheduler", "max_attempts"),
    ("scheduler", "retry_base_secs"),
    ("scheduler", "retry_max_secs"),
    ("scheduler", "poll_interval_secs"),
    ("scheduler", "claim_backlog_secs"),
    ("scheduler", "drain_timeout_secs"),
    ("scheduler", "prep_burst_minutes"),
    ("budget", "daily"),
    ("budget", "cheap"),
    ("budget", "expensive"),
    ("budget", "daily_usd"),
    ("budget", "cheap_usd"),
    ("budget", "expensive_usd"),
    ("budget", "daily_tokens"),
    ("budget", "cheap_tokens"),
    ("budget", "expensive_tokens"),
    ("breaker", "rate_limit_threshold"),
    ("breaker", "error_threshold"),
    ("breaker", "window_secs"),
    ("breaker", "open_base_secs"),
    ("breaker", "open_max_secs"),
    ("seed", "limit"),
    ("seed", "interval_secs"),
];

/// A TOML value as text: integers over the whole range and near the
/// limits, floats including inf/nan and huge exponents, and wrong types.
fn toml_value() -> impl Strategy<Value = String> {
    // Weighted towards plausible values, so that a good share of the
    // generated configs validates and the overflow checks run on them.
    prop_oneof![
        1 => any::<i64>().prop_map(|v| v.to_string()),
        24 => (1i64..1_000).prop_map(|v| v.to_string()),
        2 => (0i64..200_000).prop_map(|v| v.to_string()),
        2 => prop::sample::select(vec![
            0i64,
            1,
            4,
            5,
            3600,
            86_400,
            86_401,
            604_800,
            604_801,
            9_300_000_000_000_000,
            i64::MAX,
        ])
        .prop_map(|v| v.to_string()),
        1 => any::<f64>().prop_map(toml_float),
        2 => (0.0f64..100_000.0).prop_map(toml_float),
        1 => prop::sample::select(vec!["inf", "-inf", "nan", "1e300", "9.3e15", "-0.0", "0.001"])
            .prop_map(str::to_string),
        1 => "[a-z0-9 ]{0,8}".prop_map(|s| format!("{s:?}")),
        1 => Just("true".to_string()),
        1 => Just("[1, 2]".to_string()),
    ]
}

fn toml_float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:e}")
    }
}

/// A config file setting some numeric keys (and maybe the day start and
/// phase caps) to arbitrary values.
fn config_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((0..NUMERIC_KEYS.len(), toml_value()), 0..6),
        prop::option::of(prop_oneof!["[0-2]?[0-9]:[0-5][0-9]", "[0-9: +a-z]{0,6}"]),
        prop::option::of(prop_oneof![4 => 0u64..4_000, 1 => any::<u64>()]),
    )
        .prop_map(|(entries, day_start, cap)| {
            let mut by_section: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
            for (i, value) in entries {
                let (section, key) = NUMERIC_KEYS[i];
                let lines = by_section.entry(section).or_default();
                // Keys are set at most once (TOML refuses duplicates, which
                // is tested by the raw-text property).
                if !lines.iter().any(|l| l.starts_with(&format!("{key} ="))) {
                    lines.push(format!("{key} = {value}"));
                }
            }
            if let Some(d) = day_start {
                by_section
                    .entry("budget")
                    .or_default()
                    .push(format!("day_start_utc = {d:?}"));
            }
            let mut text = by_section.remove("").unwrap_or_default().join("\n");
            text.push('\n');
            for (section, lines) in by_section {
                text.push_str(&format!("[{section}]\n{}\n", lines.join("\n")));
            }
            if let Some(c) = cap {
                text.push_str(&format!(
                    "[scheduler.phase_caps]\nprep = {}\n",
                    c % (1 << 62)
                ));
            }
            text
        })
}

/// Loads `text` as a config file, then validates; never panics.
fn load_text(text: &str) -> Option<Config> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let loaded = config::load_with(Some(&path), &|_| None, Path::new("absent")).ok()?;
    loaded.config.validate().ok()?;
    Some(loaded.config)
}

/// Everything the runner derives from a validated config, computed with
/// checked arithmetic: none of it may overflow.
fn assert_no_overflow(c: &Config) {
    let s = &c.scheduler;
    let now = now_ms();
    let ttl = Duration::from_secs(s.lease_ttl_secs);
    let exact = now
        .checked_add(i64::try_from(ttl.as_millis()).unwrap())
        .expect("now + TTL fits");
    assert_eq!(lease_deadline_ms(now, ttl), exact, "no clamping needed");
    assert!(exact > now);
    let retry = RetryPolicy {
        max_attempts: s.max_attempts,
        base: Duration::from_secs(s.retry_base_secs),
        max: Duration::from_secs(s.retry_max_secs),
    };
    for attempt in [1, s.max_attempts, u32::MAX] {
        let d = retry.delay_ms(attempt);
        assert!(d >= 0 && now.checked_add(d).is_some());
    }
    Duration::try_from_secs_f64(s.poll_interval_secs).expect("poll interval");
    Duration::try_from_secs_f64(s.claim_backlog_secs).expect("claim backlog");
    let later = Instant::now();
    assert!(later
        .checked_add(Duration::from_secs(s.drain_timeout_secs))
        .is_some());
    assert!(chrono::TimeDelta::try_minutes(s.prep_burst_minutes as i64).is_some());
    let b = &c.breaker;
    for secs in [b.window_secs, b.open_base_secs, b.open_max_secs] {
        let ms = (secs as i64).checked_mul(1000).expect("secs × 1000");
        assert!(now.checked_add(ms).is_some());
    }
    // Consecutive openings double the open period up to the maximum.
    let mut open = b.open_base_secs;
    for _ in 0..64 {
        open = open.saturating_mul(2).min(b.open_max_secs);
    }
    assert!(open <= b.open_max_secs);
    assert!(Instant::now()
        .checked_add(Duration::from_secs(c.seed.interval_secs))
        .is_some());
    // One day-start parser: what validates, the budget accepts.
    let settings = c
        .resolve()
        .expect("a config that validates resolves (one day-start parser)");
    let budget = Budget::new(settings.budget);
    let (start, next) = budget.day_bounds(chrono::Utc::now());
    assert_eq!(next - start, chrono::TimeDelta::days(1));
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary numeric values for every key: no panic, and whatever
    /// validates is overflow-free.
    #[test]
    fn numeric_values_never_panic_and_validated_ones_never_overflow(text in config_text()) {
        if let Some(c) = load_text(&text) {
            assert_no_overflow(&c);
        }
    }

    /// Arbitrary TOML-ish text (brackets, quotes, dots, numbers, newlines,
    /// duplicate keys): loading and validating never panic.
    #[test]
    fn arbitrary_text_never_panics(
        text in "[a-z_\\[\\]\"'.=0-9 \\n#{},+-]{0,300}"
    ) {
        if let Some(c) = load_text(&text) {
            assert_no_overflow(&c);
        }
    }

    /// Arbitrary bytes (not even UTF-8): a clear error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(l) = config::load_with(Some(&path), &|_| None, Path::new("absent")) {
            if l.config.validate().is_ok() {
                assert_no_overflow(&l.config);
            }
        }
    }

    /// Arbitrary values in the RUNNER_* variables.
    #[test]
    fn environment_values_never_panic(
        picks in prop::collection::vec((0usize..64, "[ -~]{0,24}"), 0..6),
    ) {
        let vars: Vec<&str> = config::env_overrides().map(|(v, _)| v).collect();
        let env: std::collections::HashMap<String, String> = picks
            .into_iter()
            .map(|(i, v)| (vars[i % vars.len()].to_string(), v))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let lookup = |k: &str| env.get(k).cloned();
        if let Ok(l) = config::load_with(None, &lookup, &dir.path().join("config.toml")) {
            if l.config.validate().is_ok() {
                assert_no_overflow(&l.config);
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(12))]

    /// With a real store: a claim taken with any TTL that validates lands
    /// in the future, and another process's reaper leaves it alone.
    #[test]
    fn a_validated_lease_ttl_gives_a_live_claim(ttl in prop_oneof![
        Just(5u64), Just(86_400u64), 5u64..=86_400, any::<u64>()
    ]) {
        let mut c = Config::default();
        c.scheduler.lease_ttl_secs = ttl;
        let valid = c.validate().is_ok();
        prop_assert_eq!(valid, (5..=86_400).contains(&ttl));
        let dir = tempfile::tempdir().unwrap();
        // The store's clock stands still: "now" is exactly `before`.
        let before = 1_700_000_000_000;
        let opts = StoreOptions {
            clock: std::sync::Arc::new(ManualClock::at(before)),
            ..StoreOptions::default()
        };
        let store = Store::open(&dir.path().join("q.db"), &opts).unwrap();
        store.add_paper(&NewPaper {
            arxiv_id: "2401.00001".into(),
            source: "test".into(),
            ..NewPaper::default()
        }).unwrap();
        // Even a TTL validation refused must not wrap inside the store.
        let claim = store.claim(&ClaimRequest {
            owner: "other-host:1:00000000",
            ttl: Duration::from_secs(ttl),
            phases: &[Phase::Prep],
            resumable_only: false,
        }).unwrap().unwrap();
        let until = store.paper("2401.00001").unwrap().unwrap().lease_until_ms.unwrap();
        prop_assert!(until > before);
        if valid {
            prop_assert_eq!(until, before + (ttl as i64) * 1000);
        }
        let policy = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(1),
        };
        prop_assert!(store.reap(&policy, |_| false).unwrap().is_empty());
        store.renew_claim(&claim).unwrap();
    }
}
