//! The engine's `Checkpointer` over the SQLite store, fenced by a lease.

use super::checkpoints::{prepare, Memo, PreparedSnapshot};
use super::db::Store;
use super::error::StoreError;
use super::leases::Fence;
use crate::engine::{Checkpointer, ExecError, Snapshot};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Test hook: `PAPER_RUNNER_CRASH_AFTER=K` kills the process right after the
/// K-th checkpoint commit; `PAPER_RUNNER_CRASH_AFTER=EVENT@SUFFIX` kills it
/// after the first `EVENT` checkpoint of an execution whose id ends with
/// `SUFFIX`. Crash tests use it to stop at every checkpoint
/// deterministically.
pub const CRASH_ENV: &str = "PAPER_RUNNER_CRASH_AFTER";

/// The signal a process stopped by a crash hook dies of: `SIGKILL`, sent
/// to itself, so the hook is a real crash at that exact point (no
/// destructors, no flushing, nothing more written), like `kill -9` — and
/// not an exit: only `main` ends the process with an exit code.
pub const CRASH_SIGNAL: i32 = libc::SIGKILL;

/// Crash the process now (see [`CRASH_SIGNAL`]). Only the crash-test hooks
/// call it, and only when [`CRASH_ENV`] asks for it.
pub fn crash_now(why: &str) -> ! {
    eprintln!("crash hook: {why}");
    // SAFETY: a plain system call sending a signal to this process.
    unsafe {
        libc::kill(libc::getpid(), CRASH_SIGNAL);
    }
    // SIGKILL cannot be caught or ignored; should delivery be delayed,
    // aborting is a crash just the same.
    std::process::abort()
}

pub struct SqliteCheckpointer {
    store: Store,
    fence: Option<Fence>,
    saved: AtomicU64,
    crash: Option<String>,
    /// Per running execution: its delta base and the encoding of its large
    /// values. Taken out while a save runs (saves of one execution are
    /// sequential), put back after it committed.
    memos: Mutex<HashMap<String, Memo>>,
}

impl SqliteCheckpointer {
    pub fn new(store: Store, fence: Option<Fence>) -> SqliteCheckpointer {
        SqliteCheckpointer {
            store,
            fence,
            saved: AtomicU64::new(0),
            crash: std::env::var(CRASH_ENV).ok().filter(|s| !s.is_empty()),
            memos: Mutex::new(HashMap::new()),
        }
    }

    fn memos(&self) -> std::sync::MutexGuard<'_, HashMap<String, Memo>> {
        match self.memos.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Write one prepared snapshot on the blocking pool.
    async fn write(
        &self,
        prepared: PreparedSnapshot,
    ) -> Result<(i64, PreparedSnapshot), StoreError> {
        let fence = self.fence.clone();
        self.store
            .run(move |store| {
                store
                    .save_checkpoint(&prepared, fence.as_ref())
                    .map(|id| (id, prepared))
            })
            .await
    }

    fn crash_hook(&self, n: u64, snap: &Snapshot) {
        let Some(spec) = &self.crash else { return };
        let hit = match spec.split_once('@') {
            Some((event, suffix)) => {
                snap.event.as_str() == event && snap.execution_id.ends_with(suffix)
            }
            None => spec.parse::<u64>().ok() == Some(n),
        };
        if hit {
            crash_now(&format!(
                "crashing after checkpoint {n} ({} of {})",
                snap.event.as_str(),
                snap.execution_id
            ));
        }
    }
}

/// A store failure under a running execution, typed: a lost lease names
/// the new owner ([`crate::engine::Stop::LeaseLost`]); anything else is a
/// host failure ([`crate::engine::Stop::Host`]) that keeps the store error
/// as its source. Either way the execution stops (`interrupted`) and the
/// state in flight re-runs on resume.
pub fn to_exec_error(e: StoreError) -> ExecError {
    match e {
        StoreError::LeaseLost { ref owner, .. } => {
            ExecError::lease_lost(owner.clone(), e.to_string())
        }
        other => ExecError::host(format!("checkpoint failed: {other}"), other),
    }
}

#[async_trait]
impl Checkpointer for SqliteCheckpointer {
    async fn save(&self, snap: &Snapshot) -> Result<(), ExecError> {
        let mut memo = self.memos().remove(&snap.execution_id).unwrap_or_default();
        let (id, prepared) = match self.write(prepare(snap, &memo)).await {
            Err(StoreError::MissingBlob(hash)) => {
                tracing::warn!(%hash, "a blob this execution stored is gone; storing it again");
                memo = Memo::default();
                self.write(prepare(snap, &memo)).await
            }
            other => other,
        }
        .map_err(to_exec_error)?;
        if !snap.event.is_terminal() {
            memo.committed(id, prepared, snap);
            self.memos().insert(snap.execution_id.clone(), memo);
        }
        let n = self.saved.fetch_add(1, Ordering::SeqCst) + 1;
        self.crash_hook(n, snap);
        Ok(())
    }

    async fn latest(&self, execution_id: &str) -> Result<Option<Snapshot>, ExecError> {
        let id = execution_id.to_string();
        self.store
            .run(move |store| store.latest(&id))
            .await
            .map_err(to_exec_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ErrorKind;

    /// A lost lease is recognised by type: a store error whose text merely
    /// looks like one (e.g. a paper titled so) is not a lost lease.
    #[test]
    fn a_lost_lease_is_typed_not_read_from_the_message() {
        let lost = to_exec_error(StoreError::LeaseLost {
            id: "x".into(),
            owner: "host:1:abc".into(),
        });
        assert_eq!(lost.kind, ErrorKind::Interrupted);
        assert!(lost.is_lease_lost());
        assert!(lost.park().is_none());
        let lookalike = to_exec_error(StoreError::Invalid(
            "lease on execution x was taken over by someone".into(),
        ));
        assert_eq!(lookalike.kind, ErrorKind::Interrupted);
        assert!(!lookalike.is_lease_lost());
    }

    /// Any other store failure is a typed host failure that keeps the
    /// store error underneath (the chain reaches the SQLite error).
    #[test]
    fn a_store_failure_is_a_host_stop_with_its_source() {
        use std::error::Error as _;
        let sqlite = StoreError::sqlite(
            std::path::Path::new("/x.db"),
            "saving checkpoint",
            rusqlite::Error::InvalidQuery,
        );
        let e = to_exec_error(sqlite);
        assert_eq!(e.stop(), Some(&crate::engine::Stop::Host));
        let source = e.source().expect("the store error");
        let store = source
            .downcast_ref::<crate::engine::ErrorSource>()
            .and_then(|s| s.get().downcast_ref::<StoreError>());
        assert!(
            matches!(store, Some(StoreError::Sqlite { .. })),
            "{source:?}"
        );
        assert!(source.source().is_some(), "down to the SQLite error");
    }
}
