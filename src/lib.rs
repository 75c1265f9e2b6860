//! paper-runner: durable, resumable FlatMachines state machines for
//! research-paper analysis pipelines. See ARCHITECTURE.md for the map.

/// Benchmarks (`runner bench`): tooling, only with the `tooling` feature.
#[cfg(feature = "tooling")]
pub mod bench;
pub mod durable;
pub mod llm;
pub mod ops;
pub mod pipeline;
pub mod runner;
pub mod store;

// The FlatMachines runtime lives in its own crate; re-exported under the
// module names the rest of the runner uses.
pub use flatmachines::{engine, expr, fsx, spec};
