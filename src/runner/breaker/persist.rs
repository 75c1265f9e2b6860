//! The breakers' table (`breakers`) and provider pauses (`model_pauses`)
//! through the store: loading at start-up, and writing what changed —
//! awaited off the async workers by the async paths, by an owned blocking
//! task from synchronous code (see the module docs of `breaker`).

use super::state::{BreakerState, Entry};
use super::{lock, Breakers};
use crate::llm::gate::BlockReason;
use crate::store::{BreakerRecord, Store, StoreError};

impl Breakers {
    /// Load every breaker row from the table (done by [`new`](Self::new));
    /// returns how many. A half-open row comes back open (and due: its
    /// deadline has passed). Loaded rows replace the in-memory state of
    /// their models, so call it at start-up, not while calls are in flight.
    /// Blocking (a store read).
    pub fn load(&self) -> Result<usize, StoreError> {
        let Some(store) = &self.inner.store else {
            return Ok(0);
        };
        let mut loaded = Vec::new();
        for row in store.breakers()? {
            let mut e = Entry::closed(&row.provider);
            match BreakerState::parse(&row.state) {
                Some(BreakerState::Open) | Some(BreakerState::HalfOpen) => {
                    e.state = BreakerState::Open;
                    e.reason = row.reason;
                    // An open row without a deadline is due at once.
                    e.open_until = Some(row.open_until_ms.unwrap_or(i64::MIN));
                    e.open_count = row.open_count;
                }
                _ => {}
            }
            loaded.push((row.model, e));
        }
        let n = loaded.len();
        lock(&self.inner.entries).extend(loaded);
        self.read_pauses(store)?;
        self.inner.changed.notify_waiters();
        Ok(n)
    }

    /// Mark the changed entries for writing and wake waiters. The caller
    /// then writes them: [`flush`](Self::flush) from async code,
    /// [`write_later`](Self::write_later) from synchronous code.
    pub(super) fn changed(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        if self.inner.store.is_some() {
            lock(&self.inner.dirty).extend(keys.iter().cloned());
        }
        self.inner.changed.notify_waiters();
    }

    fn has_dirty(&self) -> bool {
        !lock(&self.inner.dirty).is_empty() || !lock(&self.inner.dirty_pauses).is_empty()
    }

    /// Something is unwritten, or a write started from synchronous code
    /// may still be running.
    fn busy(&self) -> bool {
        if self.has_dirty() {
            return true;
        }
        let mut writers = lock(&self.inner.writers);
        while writers.try_join_next().is_some() {}
        !writers.is_empty()
    }

    /// Write everything changed so far, off the async workers (through
    /// `Store::run`); returns once it is in the table. A failed write is
    /// logged, not raised (see [`write_dirty`](Self::write_dirty)).
    pub async fn flush(&self) {
        let Some(store) = self.inner.store.clone() else {
            return;
        };
        if !self.busy() {
            return;
        }
        let me = self.clone();
        let res = store
            .run(move |_| {
                me.write_dirty();
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "circuit breaker state not persisted");
        }
    }

    /// Write what changed from synchronous code: by a task the breakers own
    /// (a [`flush`](Self::flush), through `Store::run`) when a tokio runtime
    /// is running (this may be an async worker), else right here (no async
    /// worker to block).
    pub(super) fn write_later(&self) {
        if self.inner.store.is_none() || !self.has_dirty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let me = self.clone();
                let mut writers = lock(&self.inner.writers);
                // Reap finished writes so the set does not grow.
                while writers.try_join_next().is_some() {}
                writers.spawn_on(async move { me.flush().await }, &rt);
            }
            Err(_) => self.write_dirty(),
        }
    }

    /// Write the current state of every dirty breaker (one transaction)
    /// and every dirty pause. Blocking. Under the persist lock, so writes
    /// are ordered and each stores the state current when it runs: the
    /// last write always leaves the latest state. A failed write is
    /// logged, not raised: the breaker keeps protecting the provider in
    /// memory, only a restart would forget it.
    fn write_dirty(&self) {
        let Some(store) = &self.inner.store else {
            return;
        };
        let _order = lock(&self.inner.persist_lock);
        let keys = std::mem::take(&mut *lock(&self.inner.dirty));
        let rows: Vec<BreakerRecord> = {
            let map = lock(&self.inner.entries);
            keys.iter()
                .filter_map(|k| {
                    map.get(k).map(|e| BreakerRecord {
                        model: k.clone(),
                        provider: e.provider.clone(),
                        state: e.state.as_str(),
                        reason: e.reason.clone(),
                        open_until_ms: e.open_until,
                        open_count: e.open_count,
                    })
                })
                .collect()
        };
        if let Err(e) = store.save_breakers(&rows) {
            tracing::warn!(error = %e, "circuit breaker state not persisted");
        }
        let pauses = std::mem::take(&mut *lock(&self.inner.dirty_pauses));
        for key in pauses {
            self.write_pause(store, &key);
        }
    }

    /// Write the pause of `key` as memory holds it now.
    fn write_pause(&self, store: &Store, key: &str) {
        let (until, provider) = {
            let map = lock(&self.inner.pauses);
            match map.get(key) {
                Some(p) => (p.until, p.provider.clone()),
                None => return,
            }
        };
        let now = self.now();
        match store.save_model_pause(
            key,
            &provider,
            until,
            BlockReason::RateLimited.as_str(),
            now,
        ) {
            Ok(stored) => {
                let mut map = lock(&self.inner.pauses);
                if let Some(p) = map.get_mut(key) {
                    p.stored = p.stored.max(stored);
                    p.until = p.until.max(stored);
                }
            }
            Err(e) => tracing::warn!(model = key, error = %e, "model pause not persisted"),
        }
    }
}
