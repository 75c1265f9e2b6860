//! Test tooling for paper-runner, kept out of the product library.
//!
//! - [`mock`]: a scriptable OpenAI-compatible provider served over loopback
//!   HTTP, so the real client can be driven through rate limits, faults and
//!   hostile answers without a network or a key.
//! - [`synth`]: deterministic synthetic paper PDFs for benchmarks.
//!
//! This crate does not depend on paper-runner. The runner links it only
//! when built with its `tooling` feature (on by default) for `runner demo`,
//! `runner bench` and `runner mock-llm`; the integration tests use it as a
//! dev-dependency.

pub mod mock;
pub mod synth;
