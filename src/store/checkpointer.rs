//! The engine's `Checkpointer` over the SQLite store, fenced by a lease.

use super::checkpoints::{prepare, Base, PreparedSnapshot};
use super::db::Store;
use super::error::StoreError;
use super::leases::Fence;
use crate::engine::{Checkpointer, ErrorKind, ExecError, Snapshot};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Test hook: `PAPER_RUNNER_CRASH_AFTER=K` exits the process right after the
/// K-th checkpoint commit; `PAPER_RUNNER_CRASH_AFTER=EVENT@SUFFIX` exits after
/// the first `EVENT` checkpoint of an execution whose id ends with `SUFFIX`.
/// Crash tests use it to stop at every checkpoint deterministically.
pub const CRASH_ENV: &str = "PAPER_RUNNER_CRASH_AFTER";

/// Exit code of a process stopped by the crash hook.
pub const CRASH_EXIT_CODE: i32 = 86;

pub struct SqliteCheckpointer {
    store: Store,
    fence: Option<Fence>,
    saved: AtomicU64,
    crash: Option<String>,
    /// Last full checkpoint per execution, for delta encoding.
    bases: Mutex<HashMap<String, Base>>,
}

impl SqliteCheckpointer {
    pub fn new(store: Store, fence: Option<Fence>) -> SqliteCheckpointer {
        SqliteCheckpointer {
            store,
            fence,
            saved: AtomicU64::new(0),
            crash: std::env::var(CRASH_ENV).ok().filter(|s| !s.is_empty()),
            bases: Mutex::new(HashMap::new()),
        }
    }

    fn base(&self, execution_id: &str) -> Option<Base> {
        let bases = match self.bases.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        bases.get(execution_id).cloned()
    }

    /// A full checkpoint becomes the base of the next deltas; a terminal one
    /// ends the execution's entry.
    fn remember(&self, id: i64, p: PreparedSnapshot) {
        let mut bases = match self.bases.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = p.execution_id().to_string();
        if p.event().is_terminal() {
            bases.remove(&key);
        } else if let Some(context) = p.full_context {
            bases.insert(key, Base { id, context });
        }
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
            eprintln!(
                "crash hook: exiting after checkpoint {n} ({} of {})",
                snap.event.as_str(),
                snap.execution_id
            );
            std::process::exit(CRASH_EXIT_CODE);
        }
    }
}

pub fn to_exec_error(e: StoreError) -> ExecError {
    match e {
        StoreError::LeaseLost { .. } => ExecError::new(ErrorKind::Interrupted, e.to_string()),
        other => ExecError::new(
            ErrorKind::Interrupted,
            format!("checkpoint failed: {other}"),
        ),
    }
}

#[async_trait]
impl Checkpointer for SqliteCheckpointer {
    async fn save(&self, snap: &Snapshot) -> Result<(), ExecError> {
        let base = self.base(&snap.execution_id);
        let prepared = prepare(snap, base.as_ref());
        let store = self.store.clone();
        let fence = self.fence.clone();
        let (id, prepared) = tokio::task::spawn_blocking(move || {
            store
                .save_checkpoint(&prepared, fence.as_ref())
                .map(|id| (id, prepared))
        })
        .await
        .map_err(|e| {
            ExecError::new(
                ErrorKind::Interrupted,
                format!("checkpoint task failed: {e}"),
            )
        })?
        .map_err(to_exec_error)?;
        self.remember(id, prepared);
        let n = self.saved.fetch_add(1, Ordering::SeqCst) + 1;
        self.crash_hook(n, snap);
        Ok(())
    }

    async fn latest(&self, execution_id: &str) -> Result<Option<Snapshot>, ExecError> {
        let store = self.store.clone();
        let id = execution_id.to_string();
        tokio::task::spawn_blocking(move || store.latest(&id))
            .await
            .map_err(|e| {
                ExecError::new(
                    ErrorKind::Interrupted,
                    format!("checkpoint read failed: {e}"),
                )
            })?
            .map_err(to_exec_error)
    }
}
