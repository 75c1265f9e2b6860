//! Benchmarks run by `runner bench …`; numbers go to docs/benchmarks.md.
//!
//! Tooling, not product: compiled only with the `tooling` feature (on by
//! default). Nothing in the product modules may import from here; the
//! mock provider and the synthetic papers it drives come from the
//! `testkit` crate.

pub mod checkpoint;
pub mod dashboard;
pub mod extract;
pub mod multi;
pub mod pipeline;
pub mod sys;
