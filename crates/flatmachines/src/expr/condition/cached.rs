//! A transition's `condition:` as written in the machine file, plus its parse.
//!
//! Machines are loaded once and then run for many transitions, often from a
//! bundle deserialized out of the store rather than freshly validated. Keeping
//! the parse next to the source text (filled on first use, shared by clones)
//! means validation's parse is the one the engine evaluates, and a stored
//! bundle is parsed at most once per process instead of on every transition.
//! On the wire it is just the source string, so stored bundles and their
//! hashes are unchanged.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Condition, ConditionError};

/// Condition source text with a lazily filled, shared parse.
#[derive(Clone)]
pub struct CachedCondition {
    source: String,
    /// Errors are cached too: a condition that does not parse fails the same
    /// way every time, without re-tokenizing. Behind an `Arc` so clones share
    /// the cell even before it is filled: the engine works on cloned state
    /// definitions, and each clone must not parse for itself.
    compiled: Arc<OnceLock<Result<Condition, ConditionError>>>,
}

impl CachedCondition {
    /// Wrap source text; nothing is parsed until [`CachedCondition::compiled`].
    pub fn new(source: impl Into<String>) -> CachedCondition {
        CachedCondition {
            source: source.into(),
            compiled: Arc::new(OnceLock::new()),
        }
    }

    /// The source text exactly as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True for an empty or whitespace-only condition, which means "always"
    /// (the unconditional, default transition).
    pub fn is_blank(&self) -> bool {
        self.source.trim().is_empty()
    }

    /// The parsed condition: parsed on the first call (normally by the
    /// validator at load time), returned from the cache afterwards.
    pub fn compiled(&self) -> Result<&Condition, ConditionError> {
        match self.compiled.get_or_init(|| Condition::parse(&self.source)) {
            Ok(cond) => Ok(cond),
            Err(e) => Err(e.clone()),
        }
    }

    /// Whether the parse has already happened (for tests and diagnostics).
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}

impl From<String> for CachedCondition {
    fn from(source: String) -> Self {
        CachedCondition::new(source)
    }
}

impl From<&str> for CachedCondition {
    fn from(source: &str) -> Self {
        CachedCondition::new(source)
    }
}

impl fmt::Debug for CachedCondition {
    /// Just the source: the AST would drown machine-definition dumps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

impl Serialize for CachedCondition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for CachedCondition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(CachedCondition::new)
    }
}

#[cfg(test)]
mod tests {
    use super::super::PARSES;
    use super::*;
    use serde_json::{json, Map};

    #[test]
    fn parses_once_and_clones_share_the_parse() {
        let start = PARSES.with(|n| n.get());
        let cached = CachedCondition::new("context.n > 1");
        // Cloned before the first parse, as the engine clones state defs.
        let copy = cached.clone();
        assert!(!cached.is_compiled());
        let first: *const Condition = cached.compiled().unwrap();
        assert!(cached.is_compiled() && copy.is_compiled());
        let second: *const Condition = copy.compiled().unwrap();
        assert!(std::ptr::eq(first, second));
        let vars = Map::from_iter([("context".to_owned(), json!({"n": 2}))]);
        for _ in 0..10 {
            assert!(copy.compiled().unwrap().eval_bool(&vars).unwrap());
        }
        assert_eq!(PARSES.with(|n| n.get()) - start, 1);
    }

    #[test]
    fn parse_errors_are_cached_and_reported_each_time() {
        let start = PARSES.with(|n| n.get());
        let cached = CachedCondition::new("context.n = 1");
        let e1 = cached.compiled().unwrap_err();
        let e2 = cached.compiled().unwrap_err();
        assert_eq!(e1, e2);
        assert!(matches!(e1, ConditionError::Syntax { col: 11, .. }));
        assert_eq!(PARSES.with(|n| n.get()) - start, 1);
    }

    #[test]
    fn serializes_as_its_source_string() {
        let cached: CachedCondition = serde_json::from_value(json!(" context.x ")).unwrap();
        assert_eq!(cached.source(), " context.x ");
        cached.compiled().unwrap();
        assert_eq!(serde_json::to_value(&cached).unwrap(), json!(" context.x "));
        assert!(CachedCondition::new(" \n").is_blank());
        let err = serde_json::from_value::<CachedCondition>(json!(5)).unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
    }
}
