//! Provider-requested pauses per model (`model_pauses`): a 429's
//! Retry-After learned by one runner's rate limiter, persisted so that
//! `runner status` (its own process) and a second daemon on the same
//! database hold the model's phases too instead of calling the provider.
//!
//! Rules kept here, whatever the writer: a pause is only ever moved later
//! (a smaller value written by another host does not shorten it), and a
//! row whose end has passed is ignored by readers (and replaced by the
//! next write).

use super::db::Store;
use super::error::StoreError;
use rusqlite::params;
use serde::Serialize;

/// One active pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PauseRow {
    /// The limiter key `base_url|model`.
    pub model: String,
    pub provider: String,
    /// End of the pause, unix ms.
    pub paused_until_ms: i64,
    /// Why (`rate_limited`).
    pub reason: String,
}

impl Store {
    /// Record that `model` is paused until `until_ms` (unix ms). An existing
    /// pause that ends later is kept; an expired one (before `now_ms`) is
    /// replaced. Returns the end now stored.
    ///
    /// `now_ms` stays an argument (unlike the queue's and leases' "now"):
    /// the breakers keep their own clock for their windows and pass it
    /// here; in the daemon that clock is the store's.
    pub fn save_model_pause(
        &self,
        model: &str,
        provider: &str,
        until_ms: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        self.write_locked("saving model pause", |tx| {
            tx.exec(
                "INSERT INTO model_pauses(model, provider, paused_until, reason, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(model) DO UPDATE SET
                    provider = excluded.provider,
                    reason = CASE WHEN excluded.paused_until > model_pauses.paused_until
                                   OR model_pauses.paused_until <= ?6
                                  THEN excluded.reason ELSE model_pauses.reason END,
                    paused_until = CASE WHEN model_pauses.paused_until <= ?6
                                        THEN excluded.paused_until
                                        WHEN excluded.paused_until > model_pauses.paused_until
                                        THEN excluded.paused_until
                                        ELSE model_pauses.paused_until END,
                    updated_at = excluded.updated_at",
                params![model, provider, until_ms, reason, self.now_text(), now_ms],
            )
            .map_err(|e| self.err("saving model pause", e))?;
            tx.row(
                "SELECT paused_until FROM model_pauses WHERE model = ?1",
                params![model],
                |r| r.get("paused_until"),
            )
            .map_err(|e| self.err("saving model pause", e))
        })
    }

    /// Pauses still running at `now_ms`, by model key.
    pub fn model_pauses(&self, now_ms: i64) -> Result<Vec<PauseRow>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(
                "SELECT model, provider, paused_until, reason FROM model_pauses
                 WHERE paused_until > ?1 ORDER BY model",
                params![now_ms],
                |r| {
                    Ok(PauseRow {
                        model: r.get("model")?,
                        provider: r.get("provider")?,
                        paused_until_ms: r.get("paused_until")?,
                        reason: r.get("reason")?,
                    })
                },
            )
            .map_err(|e| self.err("reading model pauses", e))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            &crate::store::pg::test_db(dir.path(), "p.db"),
            &Default::default(),
        )
        .unwrap();
        (dir, s)
    }

    #[test]
    fn a_pause_is_never_shortened_by_a_smaller_value() {
        let (_d, s) = store();
        let k = "http://p/v1|big";
        assert_eq!(
            s.save_model_pause(k, "p", T0 + 60_000, "rate_limited", T0)
                .unwrap(),
            T0 + 60_000
        );
        // Another host learned a shorter pause later: the longer one stays.
        assert_eq!(
            s.save_model_pause(k, "p", T0 + 10_000, "rate_limited", T0 + 1_000)
                .unwrap(),
            T0 + 60_000
        );
        // A longer one moves it.
        assert_eq!(
            s.save_model_pause(k, "p", T0 + 90_000, "rate_limited", T0 + 2_000)
                .unwrap(),
            T0 + 90_000
        );
        let rows = s.model_pauses(T0 + 3_000).unwrap();
        assert_eq!(
            rows,
            vec![PauseRow {
                model: k.into(),
                provider: "p".into(),
                paused_until_ms: T0 + 90_000,
                reason: "rate_limited".into(),
            }]
        );
    }

    #[test]
    fn expired_pauses_are_ignored_and_replaced() {
        let (_d, s) = store();
        s.save_model_pause("u|a", "p", T0 + 5_000, "rate_limited", T0)
            .unwrap();
        s.save_model_pause("u|b", "p", T0 + 50_000, "rate_limited", T0)
            .unwrap();
        // At T0 + 5 s the first has ended (the end is exclusive).
        let live: Vec<String> = s
            .model_pauses(T0 + 5_000)
            .unwrap()
            .into_iter()
            .map(|r| r.model)
            .collect();
        assert_eq!(live, ["u|b"]);
        assert!(s.model_pauses(T0 + 50_000).unwrap().is_empty());
        // A new, shorter pause after the old one ended is taken as is.
        assert_eq!(
            s.save_model_pause("u|a", "p", T0 + 8_000, "rate_limited", T0 + 6_000)
                .unwrap(),
            T0 + 8_000
        );
        assert_eq!(s.model_pauses(T0 + 7_000).unwrap().len(), 2);
    }
}
