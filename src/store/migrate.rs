//! Versioned schema migrations from `migrations/`, tracked in
//! `PRAGMA user_version`. Older databases upgrade in place; a database from a
//! newer runner is refused rather than misread.

use super::error::StoreError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// Migrations in order; the index + 1 is the schema version they produce.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/0001_init.sql")),
    (
        "0002_leases",
        include_str!("../../migrations/0002_leases.sql"),
    ),
    (
        "0003_llm_calls",
        include_str!("../../migrations/0003_llm_calls.sql"),
    ),
    (
        "0004_queue",
        include_str!("../../migrations/0004_queue.sql"),
    ),
    (
        "0005_breakers",
        include_str!("../../migrations/0005_breakers.sql"),
    ),
    (
        "0006_value_refs",
        include_str!("../../migrations/0006_value_refs.sql"),
    ),
    (
        "0007_claim_index",
        include_str!("../../migrations/0007_claim_index.sql"),
    ),
    (
        "0008_model_pauses",
        include_str!("../../migrations/0008_model_pauses.sql"),
    ),
    (
        "0009_call_costs",
        include_str!("../../migrations/0009_call_costs.sql"),
    ),
    (
        "0010_spend",
        include_str!("../../migrations/0010_spend.sql"),
    ),
    (
        "0011_signals",
        include_str!("../../migrations/0011_signals.sql"),
    ),
    (
        "0012_dashboard",
        include_str!("../../migrations/0012_dashboard.sql"),
    ),
];

pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Apply missing migrations up to `target` (all of them by default).
pub fn migrate(conn: &mut Connection, path: &Path, target: Option<i64>) -> Result<i64, StoreError> {
    let target = target.unwrap_or_else(latest_version);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| StoreError::sqlite(path, "starting migration", e))?;
    let current: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::sqlite(path, "reading schema version", e))?;
    if current > latest_version() {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: current,
            supported: latest_version(),
        });
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current || version > target {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| StoreError::sqlite(path, &format!("applying migration {name}"), e))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(|e| StoreError::sqlite(path, "recording schema version", e))?;
        tracing::info!(migration = name, "applied migration");
    }
    tx.commit()
        .map_err(|e| StoreError::sqlite(path, "committing migration", e))?;
    Ok(current.max(target))
}
