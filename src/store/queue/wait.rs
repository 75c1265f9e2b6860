//! Giving a claim back while its machine waits for a signal (`wait_for`):
//! the row returns to its stable status without counting an attempt and is
//! not claimable before the wait's deadline; `send_signal`
//! (`store::signals`) makes it claimable at once.

use super::Claim;
use crate::store::db::Store;
use crate::store::error::StoreError;

impl Store {
    /// Release `c` until `until_ms` (unix ms; `i64::MAX` for no deadline).
    pub fn release_waiting(&self, c: &Claim, until_ms: i64, why: &str) -> Result<(), StoreError> {
        self.give_back(c, Some(until_ms), "waiting", why)
    }
}
