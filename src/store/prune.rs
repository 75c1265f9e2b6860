//! Retention: drop checkpoints of finished executions, then blobs and
//! configs nothing refers to any more; optionally write a compacted copy.
//!
//! Execution rows stay (with status, output or error), so `resume` of a
//! pruned execution still prints its result and a parent still re-attaches
//! to a pruned child — except for papers that are done (their report is on
//! disk) and older than the keep-done window: nothing will run their phases
//! again, so the hand-over data (phase results, machine inputs and outputs,
//! paper text) is dropped too and only the queue row, its timeline, the
//! execution rows' status and the spend ledger remain.

use super::db::Store;
use super::error::StoreError;
use super::phase::PaperStatus;
use rusqlite::params;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PrunePolicy {
    /// Done executions last updated longer ago than this lose all checkpoints.
    pub keep_done: Duration,
    /// Failed executions keep only their last snapshot; after this long,
    /// none.
    pub keep_failed: Duration,
}

impl Default for PrunePolicy {
    fn default() -> Self {
        PrunePolicy {
            keep_done: Duration::from_secs(7 * 86400),
            keep_failed: Duration::from_secs(30 * 86400),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneReport {
    pub checkpoints_removed: u64,
    /// Done papers whose phase hand-over data was dropped.
    pub papers_compacted: u64,
    pub blobs_removed: u64,
    pub configs_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The timestamp `age` before `now_ms` (the store's clock). An age beyond
/// what dates can express means "keep everything" (the earliest date),
/// never "now": an absurd retention must not prune all.
fn cutoff(now_ms: i64, age: Duration) -> String {
    let now = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    let t = chrono::Duration::from_std(age)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Store {
    pub fn prune(&self, policy: &PrunePolicy) -> Result<PruneReport, StoreError> {
        let bytes_before = self.size_bytes()?;
        let now = self.now_ms();
        let done_cut = cutoff(now, policy.keep_done);
        let failed_cut = cutoff(now, policy.keep_failed);
        let checkpoints_removed = self.write("pruning checkpoints", |tx| {
            let e = |err| self.err("pruning checkpoints", err);
            let mut n = tx.exec(
                    "DELETE FROM checkpoints WHERE execution_id IN
                       (SELECT execution_id FROM machine_executions
                        WHERE (status = 'done' AND updated_at < ?1) OR (status = 'failed' AND updated_at < ?2))",
                    params![done_cut, failed_cut])
                .map_err(e)?;
            tx.exec(
                "UPDATE machine_executions SET latest_checkpoint = NULL
                 WHERE (status = 'done' AND updated_at < ?1) OR (status = 'failed' AND updated_at < ?2)",
                params![done_cut, failed_cut])
            .map_err(e)?;
            n += tx.exec(
                    "DELETE FROM checkpoints WHERE execution_id IN
                       (SELECT execution_id FROM machine_executions WHERE status = 'failed')
                     AND id NOT IN (SELECT latest_checkpoint FROM machine_executions
                                    WHERE status = 'failed' AND latest_checkpoint IS NOT NULL)
                     AND id NOT IN (SELECT c.base_id FROM machine_executions m JOIN checkpoints c ON c.id = m.latest_checkpoint
                                    WHERE m.status = 'failed' AND c.base_id IS NOT NULL)",
                    params![])
                .map_err(e)?;
            Ok(n as u64)
        })?;
        let papers_compacted = self.write("compacting done papers", |tx| {
            let e = |err| self.err("compacting done papers", err);
            let ids: Vec<String> = tx
            .all("SELECT id FROM executions WHERE status = ?2 AND done_at < ?1
                         AND (prep_result IS NOT NULL OR expensive_result IS NOT NULL
                              OR EXISTS (SELECT 1 FROM execution_blob_refs r WHERE r.execution_id = executions.id))", params![done_cut, PaperStatus::Done],|r| r.get("id"))
            .map_err(e)?;
            for id in &ids {
                tx.exec(
                    "UPDATE executions SET prep_result = NULL, expensive_result = NULL WHERE id = ?1",
                    params![id])
                .map_err(e)?;
                tx.exec("DELETE FROM execution_blob_refs WHERE execution_id = ?1", params![id])
                    .map_err(e)?;
                // The paper's phase executions and their children: ids
                // start with "<paper id>/".
                let prefix = format!("{}/%", id.replace('%', "\\%").replace('_', "\\_"));
                tx.exec(
                    "DELETE FROM machine_value_refs WHERE execution_id IN
                       (SELECT execution_id FROM machine_executions WHERE root_id LIKE ?1 ESCAPE '\\' AND status != 'running')",
                    params![&prefix])
                .map_err(e)?;
                tx.exec(
                    "UPDATE machine_executions SET input = NULL, output = NULL
                     WHERE root_id LIKE ?1 ESCAPE '\\' AND status != 'running'",
                    params![&prefix])
                .map_err(e)?;
            }
            Ok(ids.len() as u64)
        })?;
        let blobs_removed = self.write("pruning blobs", |tx| {
            tx.exec(
                "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM blob_refs r WHERE r.hash = blobs.hash)
                   AND NOT EXISTS (SELECT 1 FROM execution_blob_refs r WHERE r.hash = blobs.hash)
                   AND NOT EXISTS (SELECT 1 FROM machine_value_refs r WHERE r.hash = blobs.hash)",
                params![])
            .map(|n| n as u64)
            .map_err(|e| self.err("pruning blobs", e))
        })?;
        let configs_removed = self.write("pruning configs", |tx| {
            tx.exec(
                "DELETE FROM configs WHERE hash NOT IN
                   (SELECT config_hash FROM machine_executions
                    WHERE status = 'running' OR latest_checkpoint IS NOT NULL)",
                params![],
            )
            .map(|n| n as u64)
            .map_err(|e| self.err("pruning configs", e))
        })?;
        Ok(PruneReport {
            checkpoints_removed,
            papers_compacted,
            blobs_removed,
            configs_removed,
            bytes_before,
            bytes_after: self.size_bytes()?,
        })
    }

    /// Write a compacted copy of the database to `dest` (`VACUUM INTO`).
    ///
    /// Atomic and never overwriting: the copy is written to a temporary
    /// name beside `dest`, synced, and then linked to `dest`, which fails if
    /// `dest` appeared meanwhile; a failed or interrupted backup leaves no
    /// half-written file under the requested name.
    pub fn backup(&self, dest: &Path) -> Result<u64, StoreError> {
        if self.dialect() == super::sql::Dialect::Postgres {
            return Err(StoreError::Invalid(format!(
                "--backup writes a SQLite file; back up PostgreSQL with pg_dump (e.g. `pg_dump -Fc -f runner.dump {}`)",
                self.path().display()
            )));
        }
        check_backup_target(dest)?;
        let tmp = temp_name(dest);
        let result = self.backup_via(&tmp, dest);
        // The temporary name is gone after a successful link; after any
        // failure, remove what VACUUM INTO may have left.
        let _ = std::fs::remove_file(&tmp);
        result
    }

    fn backup_via(&self, tmp: &Path, dest: &Path) -> Result<u64, StoreError> {
        let failed = |what: &str, e: std::io::Error| {
            StoreError::Invalid(format!(
                "backup {} not written: {what}: {e}",
                dest.display()
            ))
        };
        let mut guard = self.conn()?;
        let conn = guard.db();
        let target = tmp.to_string_lossy().to_string();
        conn.exec("VACUUM INTO ?1", params![target])
            .map_err(|e| self.err("writing backup", e))?;
        // VACUUM may renumber the implicit rowids the title-search index is
        // keyed by: rebuild it in the copy.
        rusqlite::Connection::open(tmp)
            .and_then(|c| {
                c.execute(
                    "INSERT INTO executions_fts(executions_fts) VALUES ('rebuild')",
                    [],
                )
            })
            .map_err(|e| self.err("rebuilding the search index of the backup", e))?;
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| failed("syncing the copy", e))?;
        match std::fs::hard_link(tmp, dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(exists_error(dest));
            }
            // A filesystem without hard links: rename, after one more look.
            Err(_) if !dest.exists() => {
                std::fs::rename(tmp, dest).map_err(|e| failed("renaming the copy", e))?
            }
            Err(_) => return Err(exists_error(dest)),
        }
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        std::fs::metadata(dest)
            .map(|m| m.len())
            .map_err(|e| failed("reading its size", e))
    }
}

/// Whether `dest` can take a backup: it must not exist (a backup never
/// overwrites anything) and its folder must be an existing directory.
/// `runner prune --backup` checks this before pruning, so a refused
/// backup leaves the database untouched.
pub fn check_backup_target(dest: &Path) -> Result<(), StoreError> {
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(exists_error(dest));
    }
    let dir = match dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::Invalid(format!(
            "backup target {}: {} is not a directory",
            dest.display(),
            dir.display()
        ))),
        Err(e) => Err(StoreError::Invalid(format!(
            "backup target {}: folder {}: {e}",
            dest.display(),
            dir.display()
        ))),
    }
}

fn exists_error(dest: &Path) -> StoreError {
    StoreError::Invalid(format!(
        "backup target {} already exists; choose a new path (a backup never overwrites)",
        dest.display()
    ))
}

/// A hidden name beside `dest`, unique to this call.
fn temp_name(dest: &Path) -> std::path::PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    dest.with_file_name(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ))
}
