//! The allowed range (inclusive) of every numeric option. [`Config::validate`]
//! refuses a value outside, naming the key, the value and the range.
//!
//! Why bounds and not just "positive": every deadline the runner derives
//! from these (now + lease TTL, base × 2^attempt, window × 1000, …) must stay
//! far from integer overflow. An unbounded `lease_ttl_secs = 9.3e15` once
//! wrapped `lease_until` negative, and a second daemon reaped the first
//! one's live claims. The maxima are generous for real use and small enough
//! that any product or sum of them with "now" fits an `i64` of milliseconds.

use std::ops::RangeInclusive;

/// Claim/lease TTL: 5 s (renewals every TTL/3 need some slack) to 24 h.
pub const LEASE_TTL_SECS: RangeInclusive<u64> = 5..=86_400;
pub const WORKERS: RangeInclusive<usize> = 1..=4096;
/// A per-phase cap (0 = that phase is never claimed).
pub const PHASE_CAP: RangeInclusive<usize> = 0..=4096;
pub const PREPPED_LOW_WATERMARK: RangeInclusive<usize> = 0..=10_000_000;
pub const MAX_ATTEMPTS: RangeInclusive<u32> = 1..=100;
/// Retry delays: up to 7 days.
pub const RETRY_SECS: RangeInclusive<u64> = 0..=604_800;
pub const POLL_INTERVAL_SECS: RangeInclusive<f64> = 0.01..=3_600.0;
pub const CLAIM_BACKLOG_SECS: RangeInclusive<f64> = 0.0..=86_400.0;
pub const DRAIN_TIMEOUT_SECS: RangeInclusive<u64> = 0..=86_400;
/// Deadline of one phase: 1 s to 7 days.
pub const PHASE_TIMEOUT_SECS: RangeInclusive<u64> = 1..=604_800;
/// Longest a call waits for its model before its phase parks.
pub const PARK_AFTER_SECS: RangeInclusive<f64> = 0.0..=86_400.0;
/// Prep-burst window: 1 minute to 1 day.
pub const PREP_BURST_MINUTES: RangeInclusive<u64> = 1..=1_440;
/// Daily request budgets (0 = nothing of that class today).
pub const BUDGET: RangeInclusive<u64> = 0..=1_000_000_000;
/// Daily money budgets (0 = nothing of that class today): up to a billion.
pub const BUDGET_USD: RangeInclusive<f64> = 0.0..=1_000_000_000.0;
/// Daily token budgets: up to a quadrillion tokens.
pub const BUDGET_TOKENS: RangeInclusive<u64> = 0..=1_000_000_000_000_000;
pub const PROMPT_TOKEN_BUDGET: RangeInclusive<usize> = 1..=10_000_000;
pub const BREAKER_THRESHOLD: RangeInclusive<u32> = 1..=100_000;
/// Breaker window and open periods: 1 s to 7 days.
pub const BREAKER_SECS: RangeInclusive<u64> = 1..=604_800;
pub const SEED_INTERVAL_SECS: RangeInclusive<u64> = 1..=604_800;
pub const SEED_LIMIT: RangeInclusive<usize> = 0..=10_000_000;
/// Connections the ops HTTP endpoint holds open at once.
pub const OPS_MAX_CONNECTIONS: RangeInclusive<u32> = 1..=4096;
/// The ops endpoint's header, idle and request timeouts.
pub const OPS_TIMEOUT_SECS: RangeInclusive<u64> = 1..=3600;
