//! LLM layer: OpenAI-compatible client, error taxonomy, rate limiter and
//! spend ledger. The mock provider for tests and the demo lives in the
//! `testkit` crate (crates/testkit), outside the product library.

pub mod client;
pub mod errors;
pub mod estimate;
pub mod gate;
pub mod ledger;
pub mod limiter;
pub mod price;
pub mod profile;

pub use client::HttpAgent;
pub use gate::{CallGate, CallOutcome, CallPermit};
pub use ledger::Ledger;
pub use limiter::RateLimiter;
pub use price::{CallCost, Price};
pub use profile::{ModelProfile, Rate};
