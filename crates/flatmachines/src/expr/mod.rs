//! Pure expression layer: Jinja templates (via minijinja) and transition
//! conditions (a small Python-like grammar). Nothing here does I/O, so the
//! validator can check every template and condition before anything runs.

pub mod condition;
pub mod pyjson;
pub mod pyrepr;
pub mod template;

pub use condition::{CachedCondition, Condition, ConditionError};
pub use template::{TemplateError, Templates, Vars};
