//! Transition conditions for FlatMachines state machines.
//!
//! FlatMachines configs guard transitions with small Python-style expressions
//! such as `context.score >= 8 and not context.failed`. The reference
//! implementation evaluates them with Python's `ast` module; this module is a
//! self-contained, dependency-free re-implementation of that language so the
//! runner can validate conditions when a machine is loaded (syntax errors carry
//! a column) and evaluate them against JSON state without a Python runtime.
//!
//! # Grammar (lowest to highest precedence)
//!
//! | level          | syntax                                                      |
//! |----------------|-------------------------------------------------------------|
//! | or             | `a or b`                                                    |
//! | and            | `a and b`                                                   |
//! | not            | `not a`                                                     |
//! | comparison     | `== != < <= > >= in`, `not in`; chainable like `a < b < c`  |
//! | additive       | `a + b`, `a - b`                                            |
//! | multiplicative | `a * b`, `a / b` (always true division)                     |
//! | unary          | `-a`, `+a`                                                  |
//! | postfix        | `a.name`, `a[expr]`                                         |
//! | atom           | numbers, strings, `true false null True False None`, names, `( expr )` |
//!
//! Everything else Python has (calls, list/dict literals, `is`, `%`, `//`,
//! `**`, ternaries, ...) is a syntax error with a hint, so a config written
//! against a richer evaluator fails at load time rather than mid-run.
//!
//! # Deliberate differences from Python
//!
//! * Booleans are not numbers: `true == 1` is false and `true + 1` is an error.
//!   JSON keeps the two types apart, and a condition that mixes them is almost
//!   always a bug in the machine config, so we refuse to guess.
//! * `and` / `or` always produce a bool rather than one of their operands; a
//!   condition only ever needs a truth value and a bool is easier to log.
//! * `a.b` on `null` yields `null`, so `context.x.y.z` is `null` when any part
//!   is missing instead of raising. Subscripting `null` is still an error.
//! * Integer arithmetic that leaves the range JSON numbers can hold as integers
//!   (`i64`/`u64`) falls back to a float instead of growing a big integer.
//! * Keywords may be used as attribute names (`context.in`), since JSON keys
//!   are arbitrary strings and the position after `.` is unambiguous.
//! * Whitespace, including newlines, is insignificant anywhere, because YAML
//!   block scalars routinely fold long conditions over several lines.
//! * `in` with a non-string needle and a dict haystack is an error (Python
//!   answers `False`): JSON keys are always strings, so it can never be true
//!   and most likely is a mistake.
//!
//! Runtime type errors (e.g. `None > 1`) are errors rather than `false`, as in
//! Python: a guard that silently never fires is harder to debug than a failed
//! transition with a message. Use `and` short-circuiting to guard optional
//! values: `context.x and context.x.n > 1`.
//!
//! # Layout
//!
//! One file per stage, so each can be read (and tested) on its own:
//! [`lexer`] turns source into tokens with character columns, [`parser`]
//! builds the [`ast`] with the nesting limit enforced, [`eval`] walks the tree
//! against JSON variables, and [`ops`] holds the Python-flavoured meaning of
//! each operator on JSON values. This file is the public face: the error type,
//! [`Condition`], and [`CachedCondition`] (source text plus its parse, so a
//! machine's conditions are parsed once, not on every transition).

mod ast;
mod cached;
mod eval;
mod lexer;
mod ops;
mod parser;
#[cfg(test)]
mod testutil;

pub use cached::CachedCondition;

use std::borrow::Cow;

use serde_json::{Map, Value};

use ast::{Expr, Kind};
use eval::eval_expr;
use lexer::Lexer;
use ops::truthy;
use parser::Parser;

#[cfg(test)]
thread_local! {
    /// How many times [`Condition::parse`] ran on this thread. Lets tests
    /// prove that a machine's conditions are parsed once, not per transition
    /// (`#[tokio::test]` runs the whole engine on the test's own thread).
    pub(crate) static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Why a condition could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    /// The source is not a valid expression. `col` is the 1-based character
    /// (not byte) column in the whole source; newlines count as one character.
    #[error("syntax error at column {col}: {message}")]
    Syntax { col: usize, message: String },
    /// Evaluation failed, e.g. comparing incompatible types or an unknown name.
    #[error("{0}")]
    Eval(String),
}

type Result<T> = std::result::Result<T, ConditionError>;

fn syntax_error(col: usize, message: impl Into<String>) -> ConditionError {
    ConditionError::Syntax {
        col,
        message: message.into(),
    }
}

fn eval_error(message: impl Into<String>) -> ConditionError {
    ConditionError::Eval(message.into())
}

/// A parsed transition condition. Parsing once up front lets a config
/// validator report syntax errors before the machine runs, and lets the
/// runner evaluate the same condition many times cheaply.
#[derive(Debug, Clone)]
pub struct Condition {
    source: String,
    expr: Expr,
}

impl Condition {
    /// Parse. An empty or whitespace-only source is valid and always
    /// evaluates to true, because a transition without a condition is the
    /// unconditional (default) transition.
    pub fn parse(src: &str) -> std::result::Result<Condition, ConditionError> {
        #[cfg(test)]
        PARSES.with(|n| n.set(n.get() + 1));
        let expr = if src.trim().is_empty() {
            Expr {
                kind: Kind::Literal(Value::Bool(true)),
                depth: 1,
            }
        } else {
            Parser::new(Lexer::tokenize(src)).parse_all()?
        };
        Ok(Condition {
            source: src.to_owned(),
            expr,
        })
    }

    /// The source text exactly as given to [`Condition::parse`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate to a JSON value. `vars` maps root names (e.g. "context") to
    /// values.
    pub fn eval(&self, vars: &Map<String, Value>) -> std::result::Result<Value, ConditionError> {
        eval_expr(&self.expr, vars).map(Cow::into_owned)
    }

    /// Evaluate and apply Python truthiness (null/false/0/0.0/""/[]/{} are
    /// false).
    pub fn eval_bool(
        &self,
        vars: &Map<String, Value>,
    ) -> std::result::Result<bool, ConditionError> {
        eval_expr(&self.expr, vars).map(|v| truthy(&v))
    }

    /// Root variable names the expression references (deduplicated, in
    /// first-seen order), so a validator can reject names other than
    /// `context`. Attribute names (`x` in `context.x`) are not roots.
    pub fn root_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        collect_names(&self.expr, &mut names);
        names
    }
}

fn collect_names(expr: &Expr, out: &mut Vec<String>) {
    if let Kind::Name(name) = &expr.kind {
        if !out.contains(name) {
            out.push(name.clone());
        }
        return;
    }
    for child in expr.kind.children() {
        collect_names(child, out);
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use serde_json::json;

    #[test]
    fn empty_condition_is_true() {
        for src in ["", "   ", "\n\t "] {
            let cond = Condition::parse(src).unwrap();
            assert_eq!(cond.source(), src);
            assert_eq!(cond.eval(&Map::new()).unwrap(), json!(true));
            assert!(cond.eval_bool(&Map::new()).unwrap());
            assert!(cond.root_names().is_empty());
        }
    }

    #[test]
    fn source_is_preserved() {
        let cond = Condition::parse(" context.score >= 8 ").unwrap();
        assert_eq!(cond.source(), " context.score >= 8 ");
        let cloned = cond.clone();
        assert_eq!(cloned.source(), cond.source());
    }

    #[test]
    fn root_names_in_first_seen_order() {
        let cond =
            Condition::parse("context.a and input.b or context.c[other.d] == output and not input")
                .unwrap();
        assert_eq!(cond.root_names(), ["context", "input", "other", "output"]);
        let literal = Condition::parse("true and None != 'context' and 1 < 2").unwrap();
        assert!(literal.root_names().is_empty());
        let attrs = Condition::parse("context.input.output").unwrap();
        assert_eq!(attrs.root_names(), ["context"]);
        let chain = Condition::parse("-x < y.z < x + w").unwrap();
        assert_eq!(chain.root_names(), ["x", "y", "w"]);
    }

    #[test]
    fn eval_does_not_mutate_or_require_owned_input() {
        let v = sample();
        let before = v.clone();
        let cond = Condition::parse("context.nested.list[0] + 1 == 11").unwrap();
        assert_eq!(cond.eval(&v).unwrap(), json!(true));
        assert_eq!(v, before);
    }
}
