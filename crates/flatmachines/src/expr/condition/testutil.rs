//! Helpers shared by the tests of every condition stage: they all go through
//! the public [`Condition`] API, so each stage is tested as users see it.

use serde_json::json;
pub(super) use serde_json::{Map, Value};

pub(super) use super::{Condition, ConditionError};

pub(super) fn vars(context: Value) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("context".to_owned(), context);
    map
}

pub(super) fn sample() -> Map<String, Value> {
    vars(json!({
        "score": 9,
        "round": 2,
        "ratio": 0.5,
        "name": "paper",
        "tags": ["a", "b", 3],
        "empty": [],
        "nested": {"inner": {"value": 42}, "list": [10, 20, 30]},
        "flag": true,
        "nothing": null,
        "big": u64::MAX,
        "in": "keyword key",
    }))
}

pub(super) fn eval_with(src: &str, vars: &Map<String, Value>) -> Value {
    Condition::parse(src)
        .unwrap_or_else(|e| panic!("parse {src:?}: {e}"))
        .eval(vars)
        .unwrap_or_else(|e| panic!("eval {src:?}: {e}"))
}

pub(super) fn ev(src: &str) -> Value {
    eval_with(src, &sample())
}

pub(super) fn eval_err(src: &str) -> String {
    let cond = Condition::parse(src).unwrap_or_else(|e| panic!("parse {src:?}: {e}"));
    match cond.eval(&sample()) {
        Err(ConditionError::Eval(msg)) => msg,
        other => panic!("expected eval error for {src:?}, got {other:?}"),
    }
}

pub(super) fn syntax(src: &str) -> (usize, String) {
    match Condition::parse(src) {
        Err(ConditionError::Syntax { col, message }) => (col, message),
        other => panic!("expected syntax error for {src:?}, got {other:?}"),
    }
}
