//! Provider-requested pauses of models (a 429's Retry-After, or a
//! success saying nothing remains): remembered here, shared with other
//! processes through `model_pauses` (see the module docs of `breaker`).

use super::{lock, Breakers, Pause, MAX_RETRY_AFTER_SECS, PAUSE_REFRESH_MS, PAUSE_WRITE_STEP_MS};
use crate::store::{Store, StoreError};

impl Breakers {
    /// Merge the pauses `model_pauses` holds into memory (a pause is only
    /// ever lengthened). Throttled: reads the table at most once a second;
    /// a failed read is logged and memory kept. The read runs through
    /// `Store::run`, off the async workers.
    pub async fn refresh_pauses(&self) {
        let Some(store) = self.inner.store.clone() else {
            return;
        };
        let now = self.now();
        {
            let mut at = lock(&self.inner.pauses_read_at);
            if at.is_some_and(|t| now.saturating_sub(t) < PAUSE_REFRESH_MS && now >= t) {
                return;
            }
            *at = Some(now);
        }
        let me = self.clone();
        match store.run(move |s| me.read_pauses(s)).await {
            Ok(true) => self.inner.changed.notify_waiters(),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read model pauses; using what this runner knows")
            }
        }
    }

    /// Read the active pauses from the table; whether any moved later.
    pub(super) fn read_pauses(&self, store: &Store) -> Result<bool, StoreError> {
        let now = self.now();
        let rows = store.model_pauses(now)?;
        *lock(&self.inner.pauses_read_at) = Some(now);
        let mut moved = false;
        let mut map = lock(&self.inner.pauses);
        for r in rows {
            let p = map.entry(r.model.clone()).or_insert_with(|| Pause {
                provider: r.provider.clone(),
                until: i64::MIN,
                stored: i64::MIN,
            });
            if r.paused_until_ms > p.until {
                p.until = r.paused_until_ms;
                moved = true;
                tracing::debug!(model = %r.model, until_ms = r.paused_until_ms, "model paused by its provider (from the database)");
            }
            p.stored = p.stored.max(r.paused_until_ms);
        }
        drop(map);
        Ok(self.adopt_open_breakers(store)? || moved)
    }

    /// Adopt breakers another process opened (the `breakers` rows every
    /// runner on the database writes): an open row whose deadline is later
    /// than what this runner knows opens the breaker here too, so a storm
    /// seen by one host stops expensive claims on all. Closing is never
    /// adopted: each runner closes its own breaker by its own probe once
    /// the deadline passes. Whether anything changed.
    fn adopt_open_breakers(&self, store: &Store) -> Result<bool, StoreError> {
        let now = self.now();
        let rows = store.breakers()?;
        let mut changed = false;
        let mut entries = lock(&self.inner.entries);
        for row in rows {
            let Some(until) = row.open_until_ms.filter(|u| *u > now) else {
                continue;
            };
            if row.state != "open" && row.state != "half_open" {
                continue;
            }
            let e = entries
                .entry(row.model.clone())
                .or_insert_with(|| super::state::Entry::closed(&row.provider));
            let known = match e.state {
                super::state::BreakerState::Open => e.open_until.unwrap_or(i64::MIN),
                super::state::BreakerState::HalfOpen => continue, // our probe is out
                super::state::BreakerState::Closed => i64::MIN,
            };
            if until > known {
                e.state = super::state::BreakerState::Open;
                e.reason = row.reason.clone();
                e.open_until = Some(until);
                e.open_count = e.open_count.max(row.open_count);
                changed = true;
                tracing::info!(model = %row.model, until_ms = until, "breaker opened by another runner on this database");
            }
        }
        Ok(changed)
    }

    /// The provider asked for no calls to `key` for `secs`: remember it and,
    /// when longer than the threshold, persist it (see the module docs).
    pub(super) fn note_pause(&self, key: &str, provider: &str, secs: f64) {
        if !(secs.is_finite() && secs > 0.0) {
            return;
        }
        let now = self.now();
        // Capped as the limiter caps it.
        let ms = (secs.min(MAX_RETRY_AFTER_SECS) * 1000.0).ceil() as i64;
        let until = now.saturating_add(ms);
        let write = {
            let mut map = lock(&self.inner.pauses);
            let p = map.entry(key.to_string()).or_insert_with(|| Pause {
                provider: provider.to_string(),
                until: i64::MIN,
                stored: i64::MIN,
            });
            if until > p.until {
                p.until = until;
            }
            if p.provider.is_empty() {
                p.provider = provider.to_string();
            }
            ms > self.pause_threshold_ms && p.until.saturating_sub(p.stored) > PAUSE_WRITE_STEP_MS
        };
        if write && self.inner.store.is_some() {
            lock(&self.inner.dirty_pauses).insert(key.to_string());
        }
    }

    /// End (unix ms) of the provider's pause of `model_key`, if one runs now.
    pub fn paused_until(&self, model_key: &str) -> Option<i64> {
        let now = self.now();
        lock(&self.inner.pauses)
            .get(model_key)
            .map(|p| p.until)
            .filter(|u| *u > now)
    }

    /// Every model paused now by its provider: (key, provider, end ms).
    pub fn pauses(&self) -> Vec<(String, String, i64)> {
        let now = self.now();
        let mut v: Vec<_> = lock(&self.inner.pauses)
            .iter()
            .filter(|(_, p)| p.until > now)
            .map(|(k, p)| (k.clone(), p.provider.clone(), p.until))
            .collect();
        v.sort();
        v
    }
}
