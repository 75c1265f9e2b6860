//! SQLite persistence: migrations, configs, executions, checkpoints,
//! content-addressed blobs, fenced leases and retention.

pub mod bill;
pub mod blobs;
mod breakers;
mod checkpointer;
mod checkpoints;
mod clock;
pub mod copy;
pub mod crawler;
pub mod dash;
mod db;
mod error;
mod fleet;
mod holds;
mod ingest;
mod leases;
mod ledger;
pub mod migrate;
pub mod ops;
pub mod pauses;
pub mod pg;
pub mod phase;
mod prune;
mod queue;
pub mod signals;
pub mod spend;
pub mod sql;
pub mod stats;
#[cfg(feature = "tooling")]
pub mod synth_queue;

pub use bill::{paper_phase_of, BillRow, ModelSpend, ProfileSpend};
pub use breakers::BreakerRecord;
pub use checkpointer::{crash_now, to_exec_error, SqliteCheckpointer, CRASH_ENV, CRASH_SIGNAL};
pub use checkpoints::{prepare, Base, ExecutionRow, Memo, PreparedSnapshot};
pub use clock::{timestamp_text, Clock, ManualClock, SkewedClock, SystemClock, SKEW_ENV};
pub use db::{is_db_url, Store, StoreOptions, Synchronous};
pub use error::StoreError;
pub use holds::Admission;
pub use ingest::QueuedPaper;
pub use leases::{lease_deadline_ms, ttl_ms, MAX_LEASE_TTL};
pub use leases::{owner_id, owner_is_dead, Fence, Lease, DEFAULT_LEASE_TTL};
pub use ledger::{ledger_time, CallStatus, LlmReservation, LlmSettlement, ProfileCalls};
pub use ledger::{CostSource, UnknownCostCalls};
pub use phase::{PaperStatus, Phase, UnknownStatus, STATUSES};
pub use prune::check_backup_target;
pub use prune::{PrunePolicy, PruneReport};
pub use queue::{
    now_ms, paper_id, AddOutcome, Claim, ClaimRequest, FailOutcome, NewPaper, PaperEvent, PaperRow,
    Reaped, RetryPolicy,
};
pub use spend::{
    round_money, CallWorst, ClassNeed, ClassSpend, ModelClass, Need, PerClass, Refusal, Spend,
    SpendLimits, SpendPolicy, SpendUsage, Unit, UnitLimits, MONEY_DECIMALS,
};
pub use sql::Dialect;
