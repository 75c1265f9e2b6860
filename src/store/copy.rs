//! `runner migrate-db`: copy a SQLite runner's whole state into an empty
//! PostgreSQL database (or any empty store), verify it, and leave the
//! source untouched.
//!
//! Why a row copy and not a dump: the two schemas differ in types (BLOB /
//! BYTEA, INTEGER / BIGINT, identity columns), and every value goes through
//! the same parameter encoding the store uses, so what arrives is exactly
//! what the PostgreSQL backend would have written itself. The copy is one
//! transaction on the target: a failure leaves it empty, as it was.

use super::db::Store;
use super::error::StoreError;
use super::migrate;
use super::sql::{Db, Dialect};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// Tables in an order that satisfies their foreign keys.
pub const TABLES: &[&str] = &[
    "configs",
    "blobs",
    "machine_executions",
    "checkpoints",
    "blob_refs",
    "execution_leases",
    "llm_calls",
    "executions",
    "execution_blob_refs",
    "execution_events",
    "breakers",
    "machine_value_refs",
    "model_pauses",
    "signals",
    "signal_waits",
    "budget_holds",
];

/// Tables whose `id` the target generates (identity columns), so its
/// sequence must continue after the copied ids.
const IDENTITY_TABLES: &[&str] = &["checkpoints", "llm_calls", "execution_events", "signals"];

/// Rows copied per table (source and target agree: checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(String, u64)>,
}

/// Copy the SQLite database at `from` into `to`, which must be empty.
pub fn copy_sqlite_into(from: &Path, to: &Store) -> Result<CopyReport, StoreError> {
    let err = |what: &str, e: rusqlite::Error| StoreError::sqlite(from, what, e);
    if !from.is_file() {
        return Err(StoreError::Open {
            path: from.to_path_buf(),
            message: "no such database file".into(),
            source: None,
        });
    }
    // Read-only: the source is never changed (not even migrated).
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| err("opening the source", e))?;
    let version: i64 = src
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| err("reading the source's schema version", e))?;
    if version != migrate::latest_version() {
        return Err(StoreError::Invalid(format!(
            "{} has schema version {version}, this runner's is {}: run this runner once on it \
             (e.g. `runner status --db {}`) so it is upgraded, then migrate it",
            from.display(),
            migrate::latest_version(),
            from.display()
        )));
    }
    let existing = to.count_rows()?;
    if let Some((table, n)) = existing.iter().find(|(_, n)| *n > 0) {
        return Err(StoreError::Invalid(format!(
            "the target {} is not empty ({table} has {n} rows): migrate-db only fills an empty database",
            to.path().display()
        )));
    }
    let mut want = Vec::new();
    to.write("copying the database", |tx| {
        want.clear();
        for table in TABLES {
            let n = copy_table(&src, from, tx, to, table)?;
            want.push((table.to_string(), n));
        }
        if tx.dialect() == Dialect::Postgres {
            for table in IDENTITY_TABLES {
                tx.exec(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                                       COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                    ),
                    rusqlite::params![],
                )
                .map_err(|e| to.err("moving id sequences", e))?;
            }
        }
        Ok(())
    })?;
    let got = to.count_rows()?;
    if got != want {
        return Err(StoreError::Invalid(format!(
            "copy verification failed: source rows {want:?}, target rows {got:?}"
        )));
    }
    Ok(CopyReport { tables: want })
}

/// Copy one table's rows; the number copied.
fn copy_table(
    src: &Connection,
    from: &Path,
    tx: &Db<'_>,
    to: &Store,
    table: &str,
) -> Result<u64, StoreError> {
    let err = |what: &str, e: rusqlite::Error| StoreError::sqlite(from, what, e);
    let mut st = src
        .prepare(&format!("SELECT * FROM {table}"))
        .map_err(|e| err("reading the source", e))?;
    let columns: Vec<String> = st.column_names().iter().map(|c| c.to_string()).collect();
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT INTO {table}({}) VALUES ({})",
        columns.join(", "),
        placeholders.join(", ")
    );
    let mut rows = st.query([]).map_err(|e| err("reading the source", e))?;
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(|e| err("reading the source", e))? {
        let values: Vec<Value> = (0..columns.len())
            .map(|i| row.get::<_, Value>(i))
            .collect::<Result<_, _>>()
            .map_err(|e| err("reading the source", e))?;
        let args: Vec<&dyn rusqlite::ToSql> =
            values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        tx.exec(&insert, args.as_slice())
            .map_err(|e| to.err(&format!("copying {table}"), e))?;
        n += 1;
    }
    Ok(n)
}

impl Store {
    /// Rows per table of [`TABLES`].
    pub fn count_rows(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|db| {
            TABLES
                .iter()
                .map(|t| {
                    let n: i64 = db
                        .row(
                            &format!("SELECT COUNT(*) AS n FROM {t}"),
                            rusqlite::params![],
                            |r| r.get("n"),
                        )
                        .map_err(|e| self.err("counting rows", e))?;
                    Ok((t.to_string(), n.max(0) as u64))
                })
                .collect()
        })
    }
}
