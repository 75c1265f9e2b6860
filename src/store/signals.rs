//! Signals for `wait_for` states (migration 0011): sending one, taking it
//! from a waiting state, the waits of parked executions, and
//! [`SqliteSignals`], the engine's [`Signals`] seam over the store.
//!
//! A signal is taken for a step (`taken_step`), so a state re-run at the
//! same step after a crash gets the same signal again; a signal sent
//! before the runner restarts is in the table and waits for its state.

use super::checkpointer::to_exec_error;
use super::db::Store;
use super::error::StoreError;
use crate::engine::{ExecError, Signals, Wait};
use async_trait::async_trait;
use rusqlite::params;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Largest signal data accepted (bytes of JSON).
pub const MAX_SIGNAL_BYTES: usize = 1024 * 1024;

/// An execution parked on a `wait_for` state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitRow {
    pub execution_id: String,
    /// The signal it waits for.
    pub signal: String,
    pub since_ms: i64,
    pub deadline_ms: Option<i64>,
    /// Signals of that name sent and not yet taken.
    pub pending: i64,
}

/// A signal as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalRow {
    pub id: i64,
    pub execution_id: String,
    pub name: String,
    pub data: Value,
    pub sent_at: String,
    pub taken_step: Option<i64>,
}

/// What sending a signal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sent {
    pub id: i64,
    /// Whether the execution was waiting for this signal.
    pub was_waiting: bool,
    /// Paper rows made claimable again at once (their phase waits).
    pub woke_papers: usize,
}

fn step_i64(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

impl Store {
    /// Send signal `name` with `data` to `execution_id`, which must exist.
    /// A paper whose phase execution (or a child of it) is parked waiting
    /// becomes claimable now, in the same transaction.
    pub fn send_signal(
        &self,
        execution_id: &str,
        name: &str,
        data: &Value,
    ) -> Result<Sent, StoreError> {
        let text = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
        if text.len() > MAX_SIGNAL_BYTES {
            return Err(StoreError::NotFound(format!(
                "signal data is {} bytes, over the limit of {MAX_SIGNAL_BYTES}",
                text.len()
            )));
        }
        if name.is_empty() {
            return Err(StoreError::NotFound("a signal needs a name".into()));
        }
        let now_ms = self.now_ms();
        self.write("sending signal", |tx| {
            let known: Option<String> = tx
                .one(
                    "SELECT execution_id FROM machine_executions WHERE execution_id = ?1",
                    params![execution_id],
                    |r| r.get("execution_id"))
                .map_err(|e| self.err("sending signal", e))?;
            if known.is_none() {
                return Err(StoreError::NotFound(format!(
                    "no machine execution {execution_id}"
                )));
            }
            let id: i64 = tx
                .row(
                    "INSERT INTO signals(execution_id, name, data, sent_at, taken_step)
                     VALUES (?1, ?2, ?3, ?4, NULL) RETURNING id",
                    params![execution_id, name, text, self.now_text()],
                    |r| r.get("id"),
                )
                .map_err(|e| self.err("sending signal", e))?;
            let was_waiting: Option<String> = tx
                .one(
                    "SELECT execution_id FROM signal_waits WHERE execution_id = ?1 AND name = ?2",
                    params![execution_id, name],
                    |r| r.get("execution_id"))
                .map_err(|e| self.err("sending signal", e))?;
            let woke = tx.exec(
                    "UPDATE executions SET not_before = ?2
                     WHERE not_before > ?2 AND phase_execution IS NOT NULL
                       AND (phase_execution = ?1
                            OR substr(?1, 1, length(phase_execution) + 1) = phase_execution || '/')",
                    params![execution_id, now_ms])
                .map_err(|e| self.err("sending signal", e))?;
            Ok(Sent {
                id,
                was_waiting: was_waiting.is_some(),
                woke_papers: woke,
            })
        })
    }

    /// The data of signal `name` taken by `execution_id` at `step`: the one
    /// taken at that step before, else the oldest pending (now taken).
    pub fn take_signal(
        &self,
        execution_id: &str,
        name: &str,
        step: u64,
    ) -> Result<Option<Value>, StoreError> {
        let step = step_i64(step);
        self.write("taking signal", |tx| {
            let again: Option<String> = tx
                .one(
                    "SELECT data FROM signals WHERE execution_id = ?1 AND name = ?2 AND taken_step = ?3
                     ORDER BY id LIMIT 1",
                    params![execution_id, name, step],
                    |r| r.get("data"))
                .map_err(|e| self.err("taking signal", e))?;
            let data = match again {
                Some(d) => Some(d),
                None => {
                    let next: Option<(i64, String)> = tx
                        .one(
                            "SELECT id, data FROM signals
                             WHERE execution_id = ?1 AND name = ?2 AND taken_step IS NULL
                             ORDER BY id LIMIT 1",
                            params![execution_id, name],
                            |r| Ok((r.get("id")?, r.get("data")?)))
                        .map_err(|e| self.err("taking signal", e))?;
                    match next {
                        Some((id, d)) => {
                            tx.exec(
                                "UPDATE signals SET taken_step = ?2 WHERE id = ?1",
                                params![id, step])
                            .map_err(|e| self.err("taking signal", e))?;
                            Some(d)
                        }
                        None => None,
                    }
                }
            };
            Ok(data.map(|d| serde_json::from_str(&d).unwrap_or(Value::Null)))
        })
    }

    /// Record that `execution_id` waits for `name` at `step` (the first
    /// record of a (name, step) sets the start and the deadline).
    pub fn wait_for_signal(
        &self,
        execution_id: &str,
        name: &str,
        step: u64,
        timeout: Option<Duration>,
    ) -> Result<Wait, StoreError> {
        let now = self.now_ms();
        let fresh = crate::engine::signals::wait_from(now, timeout);
        let step = step_i64(step);
        self.write("recording wait", |tx| {
            tx.exec(
                "INSERT INTO signal_waits(execution_id, name, step, since_ms, deadline_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(execution_id) DO UPDATE SET
                    name = excluded.name, step = excluded.step,
                    since_ms = excluded.since_ms, deadline_ms = excluded.deadline_ms
                 WHERE signal_waits.step <> excluded.step OR signal_waits.name <> excluded.name",
                params![execution_id, name, step, fresh.since_ms, fresh.deadline_ms],
            )
            .map_err(|e| self.err("recording wait", e))?;
            tx.row(
                "SELECT since_ms, deadline_ms FROM signal_waits WHERE execution_id = ?1",
                params![execution_id],
                |r| {
                    Ok(Wait {
                        since_ms: r.get("since_ms")?,
                        deadline_ms: r.get("deadline_ms")?,
                        now_ms: now,
                    })
                },
            )
            .map_err(|e| self.err("recording wait", e))
        })
    }

    /// The wait of `execution_id` is over.
    pub fn end_wait(&self, execution_id: &str) -> Result<(), StoreError> {
        self.write("ending wait", |tx| {
            tx.exec(
                "DELETE FROM signal_waits WHERE execution_id = ?1",
                params![execution_id],
            )
            .map_err(|e| self.err("ending wait", e))?;
            Ok(())
        })
    }

    /// Every parked execution, oldest wait first.
    pub fn waits(&self) -> Result<Vec<WaitRow>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(
                "SELECT w.execution_id, w.name, w.since_ms, w.deadline_ms,
                        (SELECT COUNT(*) FROM signals s
                          WHERE s.execution_id = w.execution_id AND s.name = w.name
                            AND s.taken_step IS NULL) AS pending
                 FROM signal_waits w ORDER BY w.since_ms, w.execution_id",
                params![],
                |r| {
                    Ok(WaitRow {
                        execution_id: r.get("execution_id")?,
                        signal: r.get("name")?,
                        since_ms: r.get("since_ms")?,
                        deadline_ms: r.get("deadline_ms")?,
                        pending: r.get("pending")?,
                    })
                },
            )
            .map_err(|e| self.err("reading waits", e))?;
        Ok(rows)
    }

    /// The waits of `execution_id` and its children (ids below it).
    pub fn waits_under(&self, execution_id: &str) -> Result<Vec<WaitRow>, StoreError> {
        let prefix = format!("{execution_id}/");
        Ok(self
            .waits()?
            .into_iter()
            .filter(|w| w.execution_id == execution_id || w.execution_id.starts_with(&prefix))
            .collect())
    }

    /// Signals sent to `execution_id`, oldest first (at most `limit`).
    pub fn signals_of(&self, execution_id: &str, limit: i64) -> Result<Vec<SignalRow>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(
                "SELECT id, execution_id, name, data, sent_at, taken_step FROM signals
                 WHERE execution_id = ?1 ORDER BY id LIMIT ?2",
                params![execution_id, limit],
                |r| {
                    let data: String = r.get("data")?;
                    Ok(SignalRow {
                        id: r.get("id")?,
                        execution_id: r.get("execution_id")?,
                        name: r.get("name")?,
                        data: serde_json::from_str(&data).unwrap_or(Value::Null),
                        sent_at: r.get("sent_at")?,
                        taken_step: r.get("taken_step")?,
                    })
                },
            )
            .map_err(|e| self.err("reading signals", e))?;
        Ok(rows)
    }
}

/// The engine's [`Signals`] over the store.
pub struct SqliteSignals {
    store: Store,
}

impl SqliteSignals {
    pub fn new(store: Store) -> SqliteSignals {
        SqliteSignals { store }
    }
}

#[async_trait]
impl Signals for SqliteSignals {
    async fn take(
        &self,
        execution_id: &str,
        name: &str,
        step: u64,
    ) -> Result<Option<Value>, ExecError> {
        let (id, name) = (execution_id.to_string(), name.to_string());
        self.store
            .run(move |s| s.take_signal(&id, &name, step))
            .await
            .map_err(to_exec_error)
    }

    async fn wait(
        &self,
        execution_id: &str,
        name: &str,
        step: u64,
        timeout: Option<Duration>,
    ) -> Result<Wait, ExecError> {
        let (id, name) = (execution_id.to_string(), name.to_string());
        self.store
            .run(move |s| s.wait_for_signal(&id, &name, step, timeout))
            .await
            .map_err(to_exec_error)
    }

    async fn done(&self, execution_id: &str) -> Result<(), ExecError> {
        let id = execution_id.to_string();
        self.store
            .run(move |s| s.end_wait(&id))
            .await
            .map_err(to_exec_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ManualClock, StoreOptions};
    use serde_json::json;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, Store, ManualClock) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(1_000_000);
        let opts = StoreOptions {
            clock: Arc::new(clock.clone()),
            ..StoreOptions::default()
        };
        let store = Store::open(&crate::store::pg::test_db(dir.path(), "s.db"), &opts).unwrap();
        (dir, store, clock)
    }

    #[test]
    fn signals_are_taken_once_per_step_in_order_and_waits_keep_their_deadline() {
        let (_d, s, clock) = store();
        s.create_execution("e1", "cfg", "m", 0, &serde_json::Map::new())
            .unwrap();
        assert!(s.send_signal("nope", "go", &json!(1)).is_err());
        assert_eq!(s.take_signal("e1", "go", 3).unwrap(), None);
        let w = s
            .wait_for_signal("e1", "go", 3, Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!((w.since_ms, w.deadline_ms), (1_000_000, Some(1_010_000)));
        clock.advance(Duration::from_secs(5));
        let w = s
            .wait_for_signal("e1", "go", 3, Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(
            w.deadline_ms,
            Some(1_010_000),
            "a re-run keeps the deadline"
        );
        assert_eq!(w.now_ms, 1_005_000);
        assert_eq!(s.waits().unwrap()[0].signal, "go");

        let sent = s.send_signal("e1", "go", &json!({"n": 1})).unwrap();
        assert!(sent.was_waiting);
        s.send_signal("e1", "go", &json!({"n": 2})).unwrap();
        assert_eq!(s.waits().unwrap()[0].pending, 2);
        assert_eq!(s.take_signal("e1", "go", 3).unwrap(), Some(json!({"n": 1})));
        // The same step again (a crash before the exit): the same signal.
        assert_eq!(s.take_signal("e1", "go", 3).unwrap(), Some(json!({"n": 1})));
        assert_eq!(s.take_signal("e1", "go", 4).unwrap(), Some(json!({"n": 2})));
        assert_eq!(s.take_signal("e1", "go", 5).unwrap(), None);
        s.end_wait("e1").unwrap();
        assert!(s.waits().unwrap().is_empty());
        assert_eq!(s.signals_of("e1", 10).unwrap().len(), 2);
    }
}
