//! The phases and status flow live with the queue they describe
//! (`store::phase`); re-exported here for the runner's modules.

pub use crate::store::phase::{Phase, STATUSES};
