//! Fenced leases on execution trees.
//!
//! A process drives an execution only while it holds the lease. Every
//! acquisition increments the fencing token, and every checkpoint write checks
//! — in the same transaction — that the lease still has our owner and token.
//! A process that lost its lease therefore cannot write anything more; it
//! stops that execution and reports who took it over.

use super::checkpoints::now;
use super::db::Store;
use super::error::StoreError;
use rusqlite::{params, OptionalExtension, Transaction};
use std::time::Duration;

/// Default lease time-to-live.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(300);

/// Proof of holding a lease: checked on every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub execution_id: String,
    pub owner: String,
    pub token: i64,
}

/// A held lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub fence: Fence,
    pub ttl: Duration,
}

/// This process's owner id: `host:pid:random`.
pub fn owner_id() -> String {
    format!(
        "{}:{}:{:08x}",
        hostname(),
        std::process::id(),
        fastrand::u32(..)
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// True when `owner` names a process on this host that no longer runs, so
/// its lease can be taken over without waiting out the TTL.
pub fn owner_is_dead(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if host != hostname() || pid == std::process::id() {
        return false;
    }
    let proc_root = std::path::Path::new("/proc");
    // Only trust the check where /proc exists (Linux).
    proc_root.join("self").exists() && !proc_root.join(pid.to_string()).exists()
}

fn epoch_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

impl Fence {
    /// Fail with `LeaseLost` unless the lease row still has our owner and token.
    pub(crate) fn check(&self, tx: &Transaction<'_>, store: &Store) -> Result<(), StoreError> {
        let row: Option<(String, i64)> = tx
            .prepare_cached(
                "SELECT owner_id, fencing_token FROM execution_leases WHERE execution_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&self.execution_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| store.err("checking lease", e))?;
        match row {
            Some((owner, token)) if owner == self.owner && token == self.token => Ok(()),
            Some((owner, _)) => Err(StoreError::LeaseLost {
                id: self.execution_id.clone(),
                owner,
            }),
            None => Err(StoreError::LeaseLost {
                id: self.execution_id.clone(),
                owner: "nobody (lease released)".into(),
            }),
        }
    }
}

impl Store {
    /// Take the lease on `id` for `owner`, or say who holds it.
    pub fn acquire_lease(&self, id: &str, owner: &str, ttl: Duration) -> Result<Lease, StoreError> {
        let ttl_ms = ttl.as_millis() as i64;
        let token = self.write("acquiring lease", |tx| {
            let now_ms = epoch_ms();
            let row: Option<(String, i64, i64)> = tx
                .query_row(
                    "SELECT owner_id, lease_until, fencing_token FROM execution_leases WHERE execution_id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(|e| self.err("reading lease", e))?;
            let token = match row {
                None => 1,
                Some((holder, until, token)) => {
                    let free = holder == owner || until <= now_ms || owner_is_dead(&holder);
                    if !free {
                        return Err(StoreError::Leased {
                            id: id.to_string(),
                            owner: holder,
                            until: ms_to_rfc3339(until),
                        });
                    }
                    if holder != owner && until > now_ms {
                        tracing::info!(execution_id = id, previous = %holder, "taking over the lease of a dead process");
                    }
                    token + 1
                }
            };
            tx.execute(
                "INSERT INTO execution_leases(execution_id, owner_id, lease_until, fencing_token, acquired_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT(execution_id) DO UPDATE SET owner_id = ?2, lease_until = ?3, fencing_token = ?4, acquired_at = ?5, updated_at = ?5",
                params![id, owner, now_ms + ttl_ms, token, now()],
            )
            .map_err(|e| self.err("writing lease", e))?;
            Ok(token)
        })?;
        Ok(Lease {
            fence: Fence {
                execution_id: id.to_string(),
                owner: owner.to_string(),
                token,
            },
            ttl,
        })
    }

    /// Extend a held lease; `LeaseLost` if someone else holds it now.
    pub fn renew_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.write("renewing lease", |tx| {
            lease.fence.check(tx, self)?;
            tx.execute(
                "UPDATE execution_leases SET lease_until = ?2, updated_at = ?3 WHERE execution_id = ?1",
                params![lease.fence.execution_id, epoch_ms() + lease.ttl.as_millis() as i64, now()],
            )
            .map_err(|e| self.err("renewing lease", e))?;
            Ok(())
        })
    }

    /// Give a lease up (only if we still hold it). The row stays, expired,
    /// so the next holder's token is still larger than every earlier one.
    pub fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.write("releasing lease", |tx| {
            tx.execute(
                "UPDATE execution_leases SET lease_until = 0, updated_at = ?4
                 WHERE execution_id = ?1 AND owner_id = ?2 AND fencing_token = ?3",
                params![
                    lease.fence.execution_id,
                    lease.fence.owner,
                    lease.fence.token,
                    now()
                ],
            )
            .map_err(|e| self.err("releasing lease", e))?;
            Ok(())
        })
    }

    /// Give up whatever lease `owner` holds on `execution_id` (a drive that
    /// was stopped from outside, so a restart on any host can resume it at
    /// once). A lease someone else took over is left alone.
    pub fn release_lease_of(&self, execution_id: &str, owner: &str) -> Result<(), StoreError> {
        self.write("releasing lease", |tx| {
            tx.execute(
                "UPDATE execution_leases SET lease_until = 0, updated_at = ?3
                 WHERE execution_id = ?1 AND owner_id = ?2",
                params![execution_id, owner, now()],
            )
            .map_err(|e| self.err("releasing lease", e))?;
            Ok(())
        })
    }
}
