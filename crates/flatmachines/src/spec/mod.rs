//! The FlatMachines 4.x file formats: loading, the resolved model, and
//! validation. Pure apart from reading the files it is asked to load.

pub mod diag;
pub mod hooks;
pub mod limits;
pub mod load;
pub mod model;
pub mod profile;
pub mod tool_loop;
pub mod validate;

#[cfg(test)]
mod compat_tests;

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use load::{load, LoadOptions, Loaded, ModelCheck};
pub use model::{AgentDef, Bundle, MachineDef, PromptDef, StateDef};
