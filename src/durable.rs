//! Driving one execution durably: take the fenced lease, run or resume the
//! engine with the SQLite checkpointer, renew the lease every TTL/3, and stop
//! at once if the lease is taken over.

use crate::engine::{ActionRegistry, Agent, Engine, Event, ExecError, Parked, Snapshot};
use crate::spec::Bundle;
use crate::store::{owner_id, to_exec_error, Lease, SqliteCheckpointer, Store, StoreError};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Why a durable run did not produce an output. Each variant is its inner
/// error, source chain included (`transparent`): a store failure under a
/// checkpoint reads, through `source()`, down to the SQLite error.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// Another live process holds the lease.
    #[error(transparent)]
    Leased(StoreError),
    /// The execution ran and failed (or was interrupted).
    #[error(transparent)]
    Exec(ExecError),
    #[error(transparent)]
    Store(StoreError),
}

impl DriveError {
    /// The park, when the drive stopped because a model it calls is
    /// blocked: `Exec` with an `interrupted` error carrying the typed
    /// [`Parked`] marker (not a failure; the state in flight re-runs on
    /// resume).
    pub fn park(&self) -> Option<&Parked> {
        match self {
            DriveError::Exec(e) => e.park(),
            _ => None,
        }
    }
}

/// How to begin. Either way, where to start is decided only after the lease
/// is held: a snapshot read before could be stale (another process may have
/// finished the state in between), and resuming from it would re-run work.
pub enum Begin {
    /// A new execution with this input (or its latest checkpoint, if another
    /// process started it first).
    Fresh(Map<String, Value>),
    /// From the latest checkpoint (from the stored input if there is none).
    Latest,
}

enum Start {
    Fresh(Map<String, Value>),
    Resume(Box<Snapshot>),
}

/// Everything needed to drive executions of one bundle.
pub struct Driver {
    pub store: Store,
    pub bundle: Arc<Bundle>,
    pub agent: Arc<dyn Agent>,
    pub actions: ActionRegistry,
    pub lease_ttl: Duration,
    pub owner: String,
}

impl Driver {
    pub fn new(
        store: Store,
        bundle: Arc<Bundle>,
        agent: Arc<dyn Agent>,
        actions: ActionRegistry,
        lease_ttl: Duration,
    ) -> Driver {
        Driver {
            store,
            bundle,
            agent,
            actions,
            lease_ttl,
            owner: owner_id(),
        }
    }

    /// Run or resume execution `id` while holding its lease.
    pub async fn drive(&self, id: &str, begin: Begin) -> Result<Value, DriveError> {
        let lease = self.acquire(id).await?;
        let latest = match self.latest(id).await {
            Ok(l) => l,
            Err(e) => {
                self.release(id, &lease).await;
                return Err(e);
            }
        };
        if let Some(s) = latest.as_ref().filter(|s| s.event.is_terminal()) {
            self.release(id, &lease).await;
            return match (&s.error, s.event) {
                (Some(e), Event::MachineFailed) => Err(DriveError::Exec(e.clone())),
                _ => Ok(s
                    .output
                    .clone()
                    .unwrap_or_else(|| Value::Object(Map::new()))),
            };
        }
        let begin = match (begin, latest) {
            (_, Some(snap)) => Start::Resume(Box::new(snap)),
            (Begin::Fresh(input), None) => Start::Fresh(input),
            (Begin::Latest, None) => {
                let key = id.to_string();
                let input = self
                    .store
                    .run(move |s| s.execution_input(&key))
                    .await
                    .map_err(DriveError::Store);
                match input {
                    Ok(input) => Start::Fresh(input),
                    Err(e) => {
                        self.release(id, &lease).await;
                        return Err(e);
                    }
                }
            }
        };
        let checkpointer = Arc::new(SqliteCheckpointer::new(
            self.store.clone(),
            Some(lease.fence.clone()),
        ));
        let engine = Engine::new(
            self.bundle.clone(),
            self.agent.clone(),
            self.actions.clone(),
            checkpointer,
        )
        .with_signals(Arc::new(crate::store::signals::SqliteSignals::new(
            self.store.clone(),
        )));
        // The renewer is a future of this drive, not a spawned task: it
        // stops with the drive however the drive ends (finished, failed,
        // or dropped by a cancel, a phase deadline or shutdown), so no
        // renewer outlives its execution and keeps a lease alive.
        let renewer = renew_loop(self.store.clone(), lease.clone());
        let run = async {
            match begin {
                Start::Fresh(input) => engine.run(id, input).await,
                Start::Resume(snap) => engine.resume(*snap).await,
            }
        };
        let result = tokio::select! {
            r = run => r,
            lost = renewer => Err(lost),
        };
        // Only a lost lease leaves the lease alone (someone else holds it);
        // other interruptions (a failing store) still release ours.
        let lost = matches!(&result, Err(e) if e.is_lease_lost());
        if !lost {
            self.release(id, &lease).await;
        } else if let Err(e) = &result {
            tracing::warn!(execution_id = id, error = %e.message, "stopped: lease lost");
        }
        result.map_err(DriveError::Exec)
    }

    async fn latest(&self, id: &str) -> Result<Option<Snapshot>, DriveError> {
        let key = id.to_string();
        self.store
            .run(move |s| s.latest(&key))
            .await
            .map_err(DriveError::Store)
    }

    async fn release(&self, id: &str, lease: &Lease) {
        let l = lease.clone();
        if let Err(e) = self.store.run(move |s| s.release_lease(&l)).await {
            tracing::warn!(execution_id = id, error = %e, "could not release lease");
        }
    }

    async fn acquire(&self, id: &str) -> Result<Lease, DriveError> {
        let (id, owner, ttl) = (id.to_string(), self.owner.clone(), self.lease_ttl);
        self.store
            .run(move |s| s.acquire_lease(&id, &owner, ttl))
            .await
            .map_err(|e| match e {
                StoreError::Leased { .. } => DriveError::Leased(e),
                other => DriveError::Store(other),
            })
    }
}

/// Renew every TTL/3; returns only when the lease is lost: an
/// `interrupted` error naming, typed, who holds it now.
async fn renew_loop(store: Store, lease: Lease) -> ExecError {
    let every = (lease.ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let l = lease.clone();
        match store.run(move |s| s.renew_lease(&l)).await {
            Ok(()) => {}
            Err(e @ StoreError::LeaseLost { .. }) => return to_exec_error(e),
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
        }
    }
}
