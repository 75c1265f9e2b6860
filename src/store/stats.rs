//! Whole-database measurements for the benchmark (`runner bench`): every
//! checkpoint's timing mark, the ledger's totals and the bytes each large
//! column holds. Read-only, and slow on a big database (full scans): not
//! for the daemon's paths.

use super::db::Store;
use super::error::StoreError;
use super::sql::Dialect;
use rusqlite::params;

/// One checkpoint, as the transition-overhead measurement reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTiming {
    pub execution_id: String,
    pub machine: String,
    pub step: i64,
    /// `state_enter`, `state_exit`, `machine_end`, …
    pub event: String,
    pub state: Option<String>,
    /// RFC 3339 text.
    pub created_at: String,
}

/// The large columns whose size the benchmark reports, as `(table, column)`.
const MEASURED_COLUMNS: [(&str, &str); 10] = [
    ("machine_executions", "input"),
    ("machine_executions", "output"),
    ("executions", "prep_result"),
    ("executions", "expensive_result"),
    ("executions", "wrap_result"),
    ("llm_calls", "response"),
    ("llm_calls", "request_hash"),
    ("blobs", "data"),
    ("checkpoints", "body"),
    ("execution_events", "message"),
];

impl Store {
    /// Every checkpoint with its machine name, by execution then order.
    pub fn checkpoint_timings(&self) -> Result<Vec<CheckpointTiming>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(
                "SELECT c.execution_id AS execution_id, m.machine_name AS machine, c.step AS step,
                        c.event AS event, c.state AS state, c.created_at AS created_at
                 FROM checkpoints c JOIN machine_executions m ON m.execution_id = c.execution_id
                 ORDER BY c.execution_id, c.id",
                params![],
                |r| {
                    Ok(CheckpointTiming {
                        execution_id: r.get("execution_id")?,
                        machine: r.get("machine")?,
                        step: r.get("step")?,
                        event: r.get("event")?,
                        state: r.get("state")?,
                        created_at: r.get("created_at")?,
                    })
                },
            )
            .map_err(|e| self.err("reading checkpoints", e))?;
        Ok(rows)
    }

    /// Bytes (`LENGTH(CAST(x AS BLOB))`) each measured column holds, keyed
    /// `table.column`.
    pub fn column_bytes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let mut out = Vec::new();
        for (table, column) in MEASURED_COLUMNS {
            let sql = match conn.dialect() {
                Dialect::Sqlite => format!(
                    "SELECT COALESCE(SUM(LENGTH(CAST({column} AS BLOB))), 0) AS bytes FROM {table}"
                ),
                Dialect::Postgres => format!(
                    "SELECT CAST(COALESCE(SUM(octet_length({column})), 0) AS BIGINT) AS bytes FROM {table}"
                ),
            };
            let n: i64 = conn
                .row(&sql, params![], |r| r.get("bytes"))
                .map_err(|e| self.err("measuring columns", e))?;
            out.push((format!("{table}.{column}"), n.max(0) as u64));
        }
        Ok(out)
    }

    /// Ledger rows, and the bytes of the answers' text as the model
    /// produced it (not the ledger's JSON wrapping) over successful calls.
    pub fn llm_call_volume(&self) -> Result<(u64, u64), StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let sql = match conn.dialect() {
            Dialect::Sqlite => {
                "SELECT (SELECT COUNT(*) FROM llm_calls) AS calls,
                    (SELECT SUM(LENGTH(CAST(json_extract(response, '$.content') AS BLOB)))
                       FROM llm_calls WHERE status = 'ok') AS output_bytes"
            }
            Dialect::Postgres => {
                "SELECT (SELECT COUNT(*) FROM llm_calls) AS calls,
                    (SELECT CAST(SUM(octet_length(CAST(response AS jsonb) ->> 'content')) AS BIGINT)
                       FROM llm_calls WHERE status = 'ok') AS output_bytes"
            }
        };
        conn.row(sql, params![], |r| {
            let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
            Ok((n(r.get("calls")?), n(r.get("output_bytes")?)))
        })
        .map_err(|e| self.err("reading the ledger", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_database_measures_zero() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            &crate::store::pg::test_db(dir.path(), "s.db"),
            &Default::default(),
        )
        .unwrap();
        assert!(s.checkpoint_timings().unwrap().is_empty());
        assert_eq!(s.llm_call_volume().unwrap(), (0, 0));
        let cols = s.column_bytes().unwrap();
        assert_eq!(cols.len(), MEASURED_COLUMNS.len());
        assert!(cols.iter().all(|(_, n)| *n == 0));
        assert_eq!(cols[0].0, "machine_executions.input");
    }
}
