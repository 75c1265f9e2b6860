//! Benchmarks run by `runner bench …`; numbers go to docs/benchmarks.md.

pub mod checkpoint;
pub mod pipeline;
pub mod synth;
pub mod sys;
