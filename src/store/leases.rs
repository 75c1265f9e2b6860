//! Fenced leases on execution trees.
//!
//! A process drives an execution only while it holds the lease. Every
//! acquisition increments the fencing token, and every checkpoint write checks
//! — in the same transaction — that the lease still has our owner and token.
//! A process that lost its lease therefore cannot write anything more; it
//! stops that execution and reports who took it over.

use super::db::Store;
use super::error::StoreError;
use super::sql::{lock_row, Db};
use rusqlite::params;
use std::time::Duration;

/// Default lease time-to-live.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(300);

/// Longest lease or claim the store grants: 24 h, the top of the config's
/// `scheduler.lease_ttl_secs` range. A longer TTL that got past validation
/// is cut to this, so a deadline can never wrap (an unchecked
/// `ttl.as_millis() as i64` once turned 9.3e15 s into a negative
/// `lease_until`, and another daemon reaped the live claims).
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(86_400);

/// A TTL in milliseconds, cut to [`MAX_LEASE_TTL`].
pub fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.min(MAX_LEASE_TTL).as_millis()).unwrap_or(i64::MAX)
}

/// The deadline of a lease taken at `now_ms` (epoch milliseconds) for
/// `ttl`: the TTL cut to [`MAX_LEASE_TTL`] and the sum saturating, so even
/// an absurd `now_ms` or TTL gives a deadline in the future, never a wrapped
/// one in the past.
pub fn lease_deadline_ms(now_ms: i64, ttl: Duration) -> i64 {
    now_ms.saturating_add(ttl_ms(ttl))
}

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
///
/// A zombie (exited, not yet reaped by its parent) or a process being torn
/// down still has a `/proc/<pid>` entry, and `kill(pid, 0)` succeeds on it,
/// yet it will never renew a lease again: its state in `/proc/<pid>/stat`
/// (`Z` or `X`) counts it as dead.
pub fn owner_is_dead(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == 0 || host != hostname() || pid == std::process::id() {
        return false;
    }
    let proc_root = std::path::Path::new("/proc");
    // Only trust the check where /proc exists (Linux).
    if !proc_root.join("self").exists() {
        return false;
    }
    match std::fs::read(proc_root.join(pid.to_string()).join("stat")) {
        Ok(stat) => matches!(proc_state(&stat), Some(b'Z' | b'X' | b'x')),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        // Unreadable for another reason (permissions, races): alive unless
        // the directory itself is gone.
        Err(_) => !proc_root.join(pid.to_string()).exists(),
    }
}

/// The state letter of a `/proc/<pid>/stat` line: `pid (comm) S …`. The
/// command name may itself contain spaces and parentheses, so the state is
/// the first field after the *last* `)`.
fn proc_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 1..)?
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

impl Fence {
    /// Fail with `LeaseLost` unless the lease row still has our owner and token.
    pub(crate) fn check(&self, tx: &Db<'_>, store: &Store) -> Result<(), StoreError> {
        let row: Option<(String, i64)> = tx
            .one(
                &lock_row(
                    tx,
                    "SELECT owner_id, fencing_token FROM execution_leases WHERE execution_id = ?1",
                ),
                params![self.execution_id],
                |r| Ok((r.get("owner_id")?, r.get("fencing_token")?)),
            )
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
    /// Take the lease on `id` for `owner`, or say who holds it. A lease is
    /// free when it is ours, expired by the store's clock, or held by a
    /// process known to be dead.
    pub fn acquire_lease(&self, id: &str, owner: &str, ttl: Duration) -> Result<Lease, StoreError> {
        let ttl = ttl.min(MAX_LEASE_TTL);
        let token = self.write("acquiring lease", |tx| {
            let now_ms = self.now_ms();
            let row: Option<(String, i64, i64)> = tx
                .one(
                    "SELECT owner_id, lease_until, fencing_token FROM execution_leases WHERE execution_id = ?1",
                    params![id],
                    |r| Ok((r.get("owner_id")?, r.get("lease_until")?, r.get("fencing_token")?)),
                )
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
            tx.exec(
                "INSERT INTO execution_leases(execution_id, owner_id, lease_until, fencing_token, acquired_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT(execution_id) DO UPDATE SET owner_id = ?2, lease_until = ?3, fencing_token = ?4, acquired_at = ?5, updated_at = ?5",
                params![id, owner, lease_deadline_ms(now_ms, ttl), token, self.now_text()],
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

    /// Extend a held lease by its TTL from the store's "now"; `LeaseLost`
    /// if someone else holds it now.
    pub fn renew_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.write_locked("renewing lease", |tx| {
            lease.fence.check(tx, self)?;
            tx.exec(
                "UPDATE execution_leases SET lease_until = ?2, updated_at = ?3 WHERE execution_id = ?1",
                params![
                    lease.fence.execution_id,
                    lease_deadline_ms(self.now_ms(), lease.ttl),
                    self.now_text()
                ],
            )
            .map_err(|e| self.err("renewing lease", e))?;
            Ok(())
        })
    }

    /// Give a lease up (only if we still hold it). The row stays, expired,
    /// so the next holder's token is still larger than every earlier one.
    pub fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.write_locked("releasing lease", |tx| {
            tx.exec(
                "UPDATE execution_leases SET lease_until = 0, updated_at = ?4
                 WHERE execution_id = ?1 AND owner_id = ?2 AND fencing_token = ?3",
                params![
                    lease.fence.execution_id,
                    lease.fence.owner,
                    lease.fence.token,
                    self.now_text()
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
        self.write_locked("releasing lease", |tx| {
            tx.exec(
                "UPDATE execution_leases SET lease_until = 0, updated_at = ?3
                 WHERE execution_id = ?1 AND owner_id = ?2",
                params![execution_id, owner, self.now_text()],
            )
            .map_err(|e| self.err("releasing lease", e))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_never_wrap() {
        assert_eq!(lease_deadline_ms(1_000, Duration::from_secs(5)), 6_000);
        assert_eq!(
            lease_deadline_ms(1_000, Duration::MAX),
            1_000 + 86_400_000,
            "cut to MAX_LEASE_TTL"
        );
        assert_eq!(lease_deadline_ms(i64::MAX - 1, Duration::MAX), i64::MAX);
        assert_eq!(
            ttl_ms(Duration::from_secs(9_300_000_000_000_000)),
            86_400_000
        );
    }

    #[test]
    fn proc_state_is_read_after_the_last_parenthesis() {
        assert_eq!(proc_state(b"42 (sleep) S 1 2 3"), Some(b'S'));
        assert_eq!(proc_state(b"42 (a) Z (b)) Z 1"), Some(b'Z'));
        assert_eq!(proc_state(b"42 (we ird) R 1"), Some(b'R'));
        assert_eq!(proc_state(b"garbage"), None);
        assert_eq!(proc_state(b"1 (x)"), None);
    }

    #[test]
    fn owners_of_other_hosts_and_malformed_owners_are_alive() {
        assert!(!owner_is_dead("some-other-host:1:00000000"));
        assert!(!owner_is_dead("nonsense"));
        assert!(!owner_is_dead(&format!("{}:notapid:0", hostname())));
        assert!(!owner_is_dead(&format!("{}:0:0", hostname())));
        assert!(!owner_is_dead(&owner_id()), "this process");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_zombie_owner_is_dead_and_a_running_one_is_not() {
        let owner = |pid: u32| format!("{}:{pid}:0000abcd", hostname());
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(!owner_is_dead(&owner(sleeper.id())), "running");
        // `true` exits at once; not waited for, it stays a zombie.
        let zombie = std::process::Command::new("true").spawn().unwrap();
        let stat = format!("/proc/{}/stat", zombie.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read(&stat).ok().and_then(|s| proc_state(&s)) != Some(b'Z') {
            assert!(std::time::Instant::now() < deadline, "no zombie");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            std::path::Path::new(&stat).exists(),
            "/proc entry still there"
        );
        assert!(owner_is_dead(&owner(zombie.id())), "zombie counts as dead");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        drop(zombie);
    }
}
