//! How outcomes drive each model's breaker (closed → open → half-open →
//! closed), the provider-wide 402, and the views and operator reset.

use super::state::{
    push_within, reached, signal, BreakerState, BreakerView, Entry, Signal, Source,
};
use super::{lock, Breakers, CallOutcome, MAX_RETRY_AFTER_SECS};
use crate::engine::ErrorKind;
use std::collections::{HashMap, VecDeque};

impl Breakers {
    /// Record the outcome of a call to `model_key` whose admission is not
    /// known (calls that did not go through [`admit`](Self::admit)). While
    /// half-open it is taken as the probe's outcome.
    /// Synchronous: what it changes is written by a blocking task the
    /// breakers own ([`flush`](Self::flush) waits for it).
    pub fn record(&self, model_key: &str, provider: &str, outcome: CallOutcome) {
        self.record_from(model_key, provider, &outcome, Source::Unknown);
        self.write_later();
    }

    pub(super) fn record_from(
        &self,
        key: &str,
        provider: &str,
        outcome: &CallOutcome,
        source: Source,
    ) {
        let now = self.now();
        let cfg = &self.inner.cfg;
        let window = duration_ms(cfg.window);
        let (sig, kind, retry_after) = signal(outcome);
        // A 429's wait, or a success that said nothing remains: both are
        // pauses the provider asked for.
        let pause =
            matches!(sig, Signal::RateLimit) || matches!(outcome, CallOutcome::Exhausted { .. });
        if let (true, Some(secs)) = (pause, retry_after) {
            self.note_pause(key, provider, secs);
        }
        let mut changed = Vec::new();
        {
            let mut map = lock(&self.inner.entries);
            self.ensure(&mut map, key, provider, now, &mut changed);
            let Some(e) = map.get_mut(key) else { return };
            let mut opened_by_payment = false;
            let is_probe = match (source, e.probe) {
                (Source::Probe(id), Some(p)) => id == p,
                (Source::Unknown, _) => true,
                _ => false,
            };
            match e.state {
                BreakerState::HalfOpen if is_probe => match sig {
                    Signal::Healthy => {
                        e.close();
                        tracing::info!(model = key, "circuit breaker closed: probe succeeded");
                        changed.push(key.to_string());
                    }
                    Signal::RateLimit | Signal::Error | Signal::Payment => {
                        let kind = kind.unwrap_or(ErrorKind::ServerError);
                        self.open(e, key, kind, retry_after, now);
                        opened_by_payment = matches!(sig, Signal::Payment);
                        changed.push(key.to_string());
                    }
                },
                BreakerState::HalfOpen | BreakerState::Open => {}
                BreakerState::Closed => {
                    let trip = match sig {
                        Signal::Healthy => false,
                        Signal::Payment => true,
                        Signal::RateLimit => {
                            push_within(&mut e.rate_limits, now, window);
                            reached(e.rate_limits.len(), cfg.rate_limit_threshold)
                        }
                        Signal::Error => {
                            push_within(&mut e.errors, now, window);
                            reached(e.errors.len(), cfg.error_threshold)
                        }
                    };
                    if trip {
                        let kind = kind.unwrap_or(ErrorKind::ServerError);
                        self.open(e, key, kind, retry_after, now);
                        opened_by_payment = matches!(sig, Signal::Payment);
                        changed.push(key.to_string());
                    }
                }
            }
            if opened_by_payment {
                let (until, count, prov) = (e.open_until, e.open_count, e.provider.clone());
                for (k, other) in map.iter_mut() {
                    if other.provider == prov && other.state == BreakerState::Closed {
                        other.state = BreakerState::Open;
                        other.reason = Some(ErrorKind::PaymentRequired.as_str().into());
                        other.open_until = until;
                        other.open_count = count;
                        tracing::warn!(model = %k, provider = %prov, "circuit breaker opened: provider is out of credits");
                        changed.push(k.clone());
                    }
                }
            }
        }
        self.changed(&changed);
    }

    /// Open `e` after a failure of `kind`.
    fn open(&self, e: &mut Entry, key: &str, kind: ErrorKind, retry_after: Option<f64>, now: i64) {
        e.open_count = e.open_count.saturating_add(1);
        let period = self.open_period_ms(e.open_count, retry_after);
        e.state = BreakerState::Open;
        e.reason = Some(kind.as_str().to_string());
        e.open_until = Some(now.saturating_add(period));
        e.probe = None;
        e.rate_limits.clear();
        e.errors.clear();
        tracing::warn!(
            model = key,
            reason = kind.as_str(),
            open_s = period as f64 / 1000.0,
            openings = e.open_count,
            "circuit breaker opened"
        );
    }

    /// The open period of the `n`-th consecutive opening: the provider's
    /// Retry-After when given, else base × 2^(n-1) capped at the maximum.
    fn open_period_ms(&self, n: u32, retry_after: Option<f64>) -> i64 {
        if let Some(s) = retry_after.filter(|s| s.is_finite() && *s > 0.0) {
            return (s.min(MAX_RETRY_AFTER_SECS) * 1000.0).ceil() as i64;
        }
        let cfg = &self.inner.cfg;
        let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let period = ms(cfg.open_base)
            .saturating_mul(factor)
            .min(ms(cfg.open_max));
        i64::try_from(period).unwrap_or(i64::MAX)
    }

    /// The entry of `key`, created (closed, or open while its provider is
    /// out of credits) when first seen.
    pub(super) fn ensure(
        &self,
        map: &mut HashMap<String, Entry>,
        key: &str,
        provider: &str,
        now: i64,
        changed: &mut Vec<String>,
    ) {
        if let Some(e) = map.get_mut(key) {
            if e.provider.is_empty() && !provider.is_empty() {
                e.provider = provider.to_string();
            }
            return;
        }
        let mut e = Entry::closed(provider);
        let blocker = map
            .values()
            .filter(|o| !provider.is_empty() && o.provider == provider && o.is_payment_blocked())
            .max_by_key(|o| o.open_until.unwrap_or(i64::MIN));
        if let Some(b) = blocker {
            e.state = BreakerState::Open;
            e.reason = b.reason.clone();
            e.open_until = Some(b.open_until.unwrap_or(now));
            e.open_count = b.open_count;
            changed.push(key.to_string());
        }
        map.insert(key.to_string(), e);
    }

    /// The breaker of `model_key` (closed for a model never seen).
    pub fn state(&self, model_key: &str) -> BreakerView {
        let now = self.now();
        let map = lock(&self.inner.entries);
        map.get(model_key)
            .map(|e| self.view(e, now))
            .unwrap_or_else(BreakerView::closed)
    }

    /// Every known breaker, sorted by model key.
    pub fn all(&self) -> Vec<(String, BreakerView)> {
        let now = self.now();
        let map = lock(&self.inner.entries);
        let mut v: Vec<_> = map
            .iter()
            .map(|(k, e)| (k.clone(), self.view(e, now)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn view(&self, e: &Entry, now: i64) -> BreakerView {
        let window = duration_ms(self.inner.cfg.window);
        let recent = |q: &VecDeque<i64>| q.iter().filter(|t| now - **t < window).count() as u32;
        BreakerView {
            state: e.state,
            provider: Some(e.provider.clone()),
            reason: e.reason.clone(),
            open_until_ms: e.open_until,
            open_count: e.open_count,
            recent_429s: recent(&e.rate_limits),
            recent_errors: recent(&e.errors),
        }
    }

    /// Whether work needing `model_key` should not be claimed now: open and
    /// not yet due for a probe, or a probe is in flight. A due breaker is
    /// not "open": claiming such work is how the probe gets sent.
    pub fn is_open(&self, model_key: &str) -> bool {
        let now = self.now();
        lock(&self.inner.entries)
            .get(model_key)
            .is_some_and(|e| e.blocks(now))
    }

    /// Providers out of credits (a 402 breaker of theirs is open and not
    /// due, or probing): claim no work for any of their models, including
    /// models no call has been made to yet.
    pub fn blocked_providers(&self) -> Vec<String> {
        let now = self.now();
        let map = lock(&self.inner.entries);
        let mut v: Vec<String> = map
            .values()
            .filter(|e| e.is_payment_blocked() && e.blocks(now))
            .map(|e| e.provider.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Operator override: close the breaker of `model_key` and forget its
    /// history. Returns whether the model was known. Waiting calls proceed.
    pub fn reset(&self, model_key: &str) -> bool {
        let known = {
            let mut map = lock(&self.inner.entries);
            match map.get_mut(model_key) {
                Some(e) => {
                    e.close();
                    true
                }
                None => false,
            }
        };
        if known {
            tracing::info!(model = model_key, "circuit breaker reset by operator");
            self.changed(&[model_key.to_string()]);
            self.write_later();
        }
        known
    }
}

/// A period in milliseconds, saturating (the resolved periods are at most
/// a day, far inside `i64`).
fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
