//! LLM layer: OpenAI-compatible client, error taxonomy, rate limiter,
//! spend ledger, and a mock provider for tests and the demo.

pub mod client;
pub mod errors;
pub mod gate;
pub mod ledger;
pub mod limiter;
pub mod mock;
pub mod profile;

pub use client::HttpAgent;
pub use gate::{CallGate, CallOutcome, CallPermit};
pub use ledger::Ledger;
pub use limiter::RateLimiter;
pub use profile::{ModelProfile, Rate};
