//! paper-runner: durable, resumable FlatMachines state machines for
//! research-paper analysis pipelines. See ARCHITECTURE.md for the map.

pub mod bench;
pub mod durable;
pub mod engine;
pub mod expr;
pub mod fsx;
pub mod llm;
pub mod ops;
pub mod pipeline;
pub mod runner;
pub mod spec;
pub mod store;
