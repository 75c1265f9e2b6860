//! Benchmarks run by `runner bench …`; numbers go to docs/benchmarks.md.

pub mod checkpoint;
