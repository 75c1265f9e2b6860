//! paper-runner: durable, resumable FlatMachines state machines for
//! research-paper analysis pipelines. See ARCHITECTURE.md for the map.

pub mod engine;
pub mod expr;
pub mod spec;
