//! Circuit-breaker state per model (`breakers`): written by the runner's
//! breakers on every state change, read back at start-up (a restarted
//! runner neither hammers a refusing provider nor forgets the doubling) and
//! by `runner status` ([`Store::breakers`] in `store::ops`).
//!
//! The state machine itself lives in `runner::breaker`; this module only
//! stores its rows. `updated_at` comes from the store's injected clock.

use super::db::Store;
use super::error::StoreError;
use super::ledger::ledger_time;
use chrono::{DateTime, Utc};
use rusqlite::named_params;

/// One breaker's persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerRecord {
    /// The limiter key `base_url|model`.
    pub model: String,
    pub provider: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// The error kind that opened it; None while closed.
    pub reason: Option<String>,
    /// End of the open period, unix ms.
    pub open_until_ms: Option<i64>,
    /// Consecutive openings (the doubling exponent).
    pub open_count: u32,
}

impl Store {
    /// Write `rows` (insert or replace by model) in one transaction.
    pub fn save_breakers(&self, rows: &[BreakerRecord]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let at =
            ledger_time(DateTime::<Utc>::from_timestamp_millis(self.now_ms()).unwrap_or_default());
        self.write_locked("saving breaker state", |tx| {
            const SQL: &str = "INSERT INTO breakers(model, provider, state, reason, open_until, open_count, updated_at)
                     VALUES (:model, :provider, :state, :reason, :open_until, :open_count, :updated_at)
                     ON CONFLICT(model) DO UPDATE SET provider = excluded.provider, state = excluded.state,
                        reason = excluded.reason, open_until = excluded.open_until,
                        open_count = excluded.open_count, updated_at = excluded.updated_at";
            for r in rows {
                tx.exec(SQL, named_params! {
                    ":model": r.model,
                    ":provider": r.provider,
                    ":state": r.state,
                    ":reason": r.reason,
                    ":open_until": r.open_until_ms,
                    ":open_count": r.open_count,
                    ":updated_at": at,
                })
                .map_err(|e| self.err("saving breaker state", e))?;
            }
            self.notify_work(tx)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ManualClock, StoreOptions};
    use std::sync::Arc;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn breaker_rows_round_trip_and_are_replaced_by_model() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(T0);
        let opts = StoreOptions {
            clock: Arc::new(clock.clone()),
            ..Default::default()
        };
        let path = crate::store::pg::test_db(dir.path(), "b.db");
        let s = Store::open(&path, &opts).unwrap();
        let open = BreakerRecord {
            model: "u|m".into(),
            provider: "p".into(),
            state: "open",
            reason: Some("rate_limit".into()),
            open_until_ms: Some(T0 + 30_000),
            open_count: 2,
        };
        let closed = BreakerRecord {
            model: "u|a".into(),
            provider: "p".into(),
            state: "closed",
            reason: None,
            open_until_ms: None,
            open_count: 0,
        };
        s.save_breakers(&[open.clone(), closed.clone()]).unwrap();
        // Read back by another connection of another process's store.
        let rows = Store::open(&path, &opts).unwrap().breakers().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].model, "u|a");
        assert_eq!(rows[0].state, "closed");
        assert_eq!(rows[1].model, "u|m");
        assert_eq!(rows[1].state, "open");
        assert_eq!(rows[1].reason.as_deref(), Some("rate_limit"));
        assert_eq!(rows[1].open_until_ms, Some(T0 + 30_000));
        assert_eq!(rows[1].open_count, 2);
        assert_eq!(rows[1].updated_at, "2023-11-14T22:13:20.000000Z");
        // A later state replaces the row (stamped with the clock's time).
        clock.advance(std::time::Duration::from_secs(60));
        let reclosed = BreakerRecord {
            state: "closed",
            reason: None,
            open_until_ms: None,
            open_count: 0,
            ..open
        };
        s.save_breakers(&[reclosed]).unwrap();
        let rows = s.breakers().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].state, "closed");
        assert_eq!(rows[1].open_until_ms, None);
        assert_eq!(rows[1].updated_at, "2023-11-14T22:14:20.000000Z");
        s.save_breakers(&[]).unwrap();
    }
}
