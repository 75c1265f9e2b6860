//! paper-runner: durable, resumable FlatMachines state machines for
//! research-paper analysis pipelines. See ARCHITECTURE.md for the map.

pub mod durable;
pub mod engine;
pub mod store;
pub mod expr;
pub mod spec;
