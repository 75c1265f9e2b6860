//! flatmachines: a strict, typed FlatMachines 4.x runtime.
//!
//! Machine files are loaded with everything they reference into a
//! [`spec::Bundle`], validated as a whole, and run by the [`engine`]. The
//! host plugs in LLM calls ([`engine::Agent`]), persistence
//! ([`engine::Checkpointer`]) and native actions ([`engine::Action`]); this
//! crate knows nothing of databases, HTTP or any particular pipeline.

pub mod engine;
pub mod expr;
pub mod fsx;
pub mod spec;
