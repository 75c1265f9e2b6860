//! Giving a claim back while its machine waits for a signal (`wait_for`):
//! the row returns to its stable status without counting an attempt and is
//! not claimable before the wait's deadline; `send_signal`
//! (`store::signals`) makes it claimable at once.

use super::{Claim, Ev};
use crate::store::db::Store;
use crate::store::error::StoreError;
use rusqlite::params;

impl Store {
    /// Release `c` until `until_ms` (unix ms; `i64::MAX` for no deadline).
    pub fn release_waiting(&self, c: &Claim, until_ms: i64, why: &str) -> Result<(), StoreError> {
        let col = c.phase.attempts_column();
        self.write("parking for a signal", |tx| {
            self.check_claim(tx, c)?;
            tx.exec(
                &format!(
                    "UPDATE executions SET status = ?2, owner_id = NULL, lease_until = NULL,
                        {col} = MAX({col} - 1, 0), not_before = ?4, updated_at = ?3 WHERE id = ?1"
                ),
                params![c.id, c.phase.from_status(), self.now_text(), until_ms],
            )
            .map_err(|e| self.err("parking for a signal", e))?;
            self.event(
                tx,
                &c.id,
                Ev {
                    phase: Some(c.phase),
                    kind: "waiting",
                    from: Some(c.phase.working_status()),
                    to: Some(c.phase.from_status()),
                    attempt: Some(c.attempt),
                    owner: Some(&c.owner),
                    message: Some(why),
                    ..Ev::default()
                },
            )?;
            Ok(())
        })
    }
}
