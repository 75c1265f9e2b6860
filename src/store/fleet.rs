//! Read models over several runner processes sharing one database (the
//! multi-process bench and its checks): who claimed what, how long the
//! run took by the database's own timestamps, and whether any phase was
//! finished twice.

use super::db::Store;
use super::error::StoreError;
use rusqlite::params;

impl Store {
    /// Claims per owner (process), most first.
    pub fn claims_by_owner(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.all(
            "SELECT owner_id, COUNT(*) AS n FROM execution_events
             WHERE kind = 'claimed' AND owner_id IS NOT NULL
             GROUP BY owner_id ORDER BY n DESC, owner_id",
            params![],
            |r| Ok((r.get("owner_id")?, r.get("n")?)),
        )
        .map_err(|e| self.err("reading claims", e))
    }

    /// Phases finished more than once (0 unless fencing failed).
    pub fn duplicate_finishes(&self) -> Result<i64, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.row(
            "SELECT COUNT(*) AS n FROM (SELECT execution_id, phase FROM execution_events
             WHERE kind = 'finished' GROUP BY execution_id, phase HAVING COUNT(*) > 1) AS d",
            params![],
            |r| r.get("n"),
        )
        .map_err(|e| self.err("reading finishes", e))
    }

    /// Seconds from the first claim to the last phase end, by the store's
    /// timestamps (None before anything finished).
    pub fn run_window(&self) -> Result<Option<f64>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let (first, last): (Option<String>, Option<String>) = conn
            .row(
                "SELECT MIN(CASE WHEN kind = 'claimed' THEN at END) AS first,
                        MAX(CASE WHEN kind = 'finished' THEN at END) AS last
                 FROM execution_events",
                params![],
                |r| Ok((r.get("first")?, r.get("last")?)),
            )
            .map_err(|e| self.err("reading the run window", e))?;
        let parse =
            |s: Option<String>| s.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
        Ok(match (parse(first), parse(last)) {
            (Some(a), Some(b)) if b > a => Some((b - a).as_seconds_f64()),
            _ => None,
        })
    }
}
