//! Tree-walking evaluation of a parsed condition against JSON variables.
//!
//! Only the walk lives here (names, attributes, subscripts, short-circuiting
//! `and`/`or`, comparison chains); what each operator means on JSON values is
//! in [`super::ops`].

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::ast::{CmpOp, Expr, Kind};
use super::ops::{arith, compare, truthy, type_name, unary};
use super::{eval_error, Result};

/// Shared `null` so attribute/key lookups can return a borrowed value for
/// missing keys without allocating.
static NULL: Value = Value::Null;

/// Evaluate a node. Results are `Cow` so that reading `context.a.b` borrows
/// from `vars` instead of deep-cloning what may be a large context object.
pub(super) fn eval_expr<'a>(
    expr: &'a Expr,
    vars: &'a Map<String, Value>,
) -> Result<Cow<'a, Value>> {
    match &expr.kind {
        Kind::Literal(value) => Ok(Cow::Borrowed(value)),
        Kind::Name(name) => lookup_name(name, vars).map(Cow::Borrowed),
        Kind::Attr(target, name) => attribute(eval_expr(target, vars)?, name),
        Kind::Index(target, key) => {
            let target = eval_expr(target, vars)?;
            let key = eval_expr(key, vars)?;
            index(target, &key)
        }
        Kind::Unary(op, operand) => unary(*op, &*eval_expr(operand, vars)?).map(Cow::Owned),
        Kind::Not(operand) => Ok(bool_value(!truthy(&*eval_expr(operand, vars)?))),
        Kind::And(items) => eval_and(items, vars).map(bool_value),
        Kind::Or(items) => eval_or(items, vars).map(bool_value),
        Kind::Arith(op, lhs, rhs) => {
            let lhs = eval_expr(lhs, vars)?;
            let rhs = eval_expr(rhs, vars)?;
            arith(*op, &lhs, &rhs).map(Cow::Owned)
        }
        Kind::Compare(first, rest) => eval_chain(first, rest, vars).map(bool_value),
    }
}

fn bool_value<'a>(b: bool) -> Cow<'a, Value> {
    Cow::Owned(Value::Bool(b))
}

fn lookup_name<'a>(name: &str, vars: &'a Map<String, Value>) -> Result<&'a Value> {
    vars.get(name).ok_or_else(|| {
        if vars.is_empty() {
            return eval_error(format!(
                "unknown name '{name}' (no names are available to conditions)"
            ));
        }
        let available: Vec<&str> = vars.keys().map(String::as_str).collect();
        eval_error(format!(
            "unknown name '{name}' (conditions can use: {})",
            available.join(", ")
        ))
    })
}

/// Short-circuits: later clauses are not evaluated once the result is known,
/// which is what makes guards like `context.x and context.x.y > 1` safe.
fn eval_and(items: &[Expr], vars: &Map<String, Value>) -> Result<bool> {
    for item in items {
        if !truthy(&*eval_expr(item, vars)?) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn eval_or(items: &[Expr], vars: &Map<String, Value>) -> Result<bool> {
    for item in items {
        if truthy(&*eval_expr(item, vars)?) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Python chained comparison: each middle operand is evaluated once, and
/// evaluation stops at the first false link.
fn eval_chain<'a>(
    first: &'a Expr,
    rest: &'a [(CmpOp, Expr)],
    vars: &'a Map<String, Value>,
) -> Result<bool> {
    let mut left = eval_expr(first, vars)?;
    for (op, rhs) in rest {
        let right = eval_expr(rhs, vars)?;
        if !compare(*op, &left, &right)? {
            return Ok(false);
        }
        left = right;
    }
    Ok(true)
}

fn attribute<'a>(target: Cow<'a, Value>, name: &str) -> Result<Cow<'a, Value>> {
    match target {
        Cow::Borrowed(value) => attribute_ref(value, name),
        Cow::Owned(value) => attribute_ref(&value, name).map(|v| Cow::Owned(v.into_owned())),
    }
}

/// `null.x` is `null` so that optional nested context can be probed with a
/// plain path instead of a chain of guards.
fn attribute_ref<'a>(value: &'a Value, name: &str) -> Result<Cow<'a, Value>> {
    match value {
        Value::Object(map) => Ok(Cow::Borrowed(map.get(name).unwrap_or(&NULL))),
        Value::Null => Ok(Cow::Borrowed(&NULL)),
        other => Err(eval_error(format!(
            "cannot read attribute '{name}' of {} value",
            type_name(other)
        ))),
    }
}

fn index<'a>(target: Cow<'a, Value>, key: &Value) -> Result<Cow<'a, Value>> {
    match target {
        Cow::Borrowed(value) => index_ref(value, key),
        Cow::Owned(value) => index_ref(&value, key).map(|v| Cow::Owned(v.into_owned())),
    }
}

fn index_ref<'a>(value: &'a Value, key: &Value) -> Result<Cow<'a, Value>> {
    match (value, key) {
        (Value::Object(map), Value::String(k)) => Ok(Cow::Borrowed(map.get(k).unwrap_or(&NULL))),
        (Value::Array(items), Value::Number(_)) => {
            let i = resolve_index(key, items.len(), "list")?;
            items
                .get(i)
                .map(Cow::Borrowed)
                .ok_or_else(|| eval_error("list index out of range"))
        }
        (Value::String(s), Value::Number(_)) => {
            let i = resolve_index(key, s.chars().count(), "string")?;
            s.chars()
                .nth(i)
                .map(|c| Cow::Owned(Value::String(c.to_string())))
                .ok_or_else(|| eval_error("string index out of range"))
        }
        _ => Err(eval_error(format!(
            "cannot index {} with {}",
            type_name(value),
            type_name(key)
        ))),
    }
}

/// Turn a JSON number into a position, with Python's negative indexing.
fn resolve_index(key: &Value, len: usize, what: &str) -> Result<usize> {
    let out_of_range = || eval_error(format!("{what} index {key} out of range (length {len})"));
    if key.is_f64() {
        return Err(eval_error(format!(
            "{what} indices must be integers, not float"
        )));
    }
    // A u64 too large for i64 is certainly out of range.
    let raw = key.as_i64().ok_or_else(out_of_range)?;
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let resolved = if raw < 0 { raw + len_i } else { raw };
    if !(0..len_i).contains(&resolved) {
        return Err(out_of_range());
    }
    usize::try_from(resolved).map_err(|_| out_of_range())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use serde_json::json;

    #[test]
    fn attribute_access() {
        assert_eq!(ev("context.score"), json!(9));
        assert_eq!(ev("context.nested.inner.value"), json!(42));
        assert_eq!(ev("context.missing"), Value::Null);
        assert_eq!(ev("context.missing.x.y.z"), Value::Null);
        assert_eq!(ev("context.nothing.x"), Value::Null);
        assert_eq!(ev("context.nested.missing.value"), Value::Null);
        assert_eq!(ev("context.in"), json!("keyword key"));
        assert_eq!(ev("context . score"), json!(9));
        assert_eq!(
            eval_err("context.score.x"),
            "cannot read attribute 'x' of int value"
        );
        assert_eq!(
            eval_err("context.name.upper"),
            "cannot read attribute 'upper' of str value"
        );
    }

    #[test]
    fn subscripts() {
        assert_eq!(ev("context['score']"), json!(9));
        assert_eq!(ev("context[\"nested\"]['inner'].value"), json!(42));
        assert_eq!(ev("context['missing']"), Value::Null);
        assert_eq!(ev("context.nested.list[0]"), json!(10));
        assert_eq!(ev("context.nested.list[-1]"), json!(30));
        assert_eq!(ev("context.nested.list[-3]"), json!(10));
        assert_eq!(ev("context.nested.list[1 + 1]"), json!(30));
        assert_eq!(ev("context.name[0]"), json!("p"));
        assert_eq!(ev("context.name[-1]"), json!("r"));
        assert_eq!(ev("'héllo'[1]"), json!("é"));
        assert_eq!(ev("(context.tags + context.empty)[2]"), json!(3));
    }

    #[test]
    fn subscript_errors() {
        assert_eq!(
            eval_err("context.nested.list[3]"),
            "list index 3 out of range (length 3)"
        );
        assert_eq!(
            eval_err("context.nested.list[-4]"),
            "list index -4 out of range (length 3)"
        );
        assert_eq!(
            eval_err("context.nested.list[1.0]"),
            "list indices must be integers, not float"
        );
        assert_eq!(
            eval_err("context.nested.list['a']"),
            "cannot index list with str"
        );
        assert_eq!(eval_err("context[0]"), "cannot index dict with int");
        assert_eq!(
            eval_err("context.missing['a']"),
            "cannot index None with str"
        );
        assert_eq!(eval_err("context.score[0]"), "cannot index int with int");
        assert_eq!(
            eval_err("context.name[5]"),
            "string index 5 out of range (length 5)"
        );
        assert_eq!(
            eval_err("context.nested.list[context.flag]"),
            "cannot index list with bool"
        );
        assert_eq!(
            eval_err("context.nested.list[context.big]"),
            format!("list index {} out of range (length 3)", u64::MAX)
        );
    }

    #[test]
    fn unknown_root_name() {
        assert_eq!(
            eval_err("foo.bar == 1"),
            "unknown name 'foo' (conditions can use: context)"
        );
        let mut two = sample();
        two.insert("input".to_owned(), json!({}));
        let cond = Condition::parse("output").unwrap();
        assert_eq!(
            cond.eval(&two),
            Err(ConditionError::Eval(
                "unknown name 'output' (conditions can use: context, input)".to_owned()
            ))
        );
        assert_eq!(
            cond.eval(&Map::new()).unwrap_err().to_string(),
            "unknown name 'output' (no names are available to conditions)"
        );
    }

    #[test]
    fn boolean_operators_return_bools() {
        assert_eq!(ev("context.score and context.name"), json!(true));
        assert_eq!(ev("context.score and context.empty"), json!(false));
        assert_eq!(ev("context.empty or context.nothing"), json!(false));
        assert_eq!(ev("context.empty or 'x'"), json!(true));
        assert_eq!(ev("not context.flag"), json!(false));
        assert_eq!(ev("not context.nothing"), json!(true));
        assert_eq!(ev("not not 5"), json!(true));
        assert_eq!(ev("true and true and false"), json!(false));
        assert_eq!(ev("false or false or 1"), json!(true));
    }

    #[test]
    fn short_circuit() {
        // `context.missing.x > 1` alone would be `None > int`, an error.
        assert_eq!(
            eval_err("context.missing.x > 1"),
            "cannot compare None with int using '>'"
        );
        assert_eq!(
            ev("context.missing and context.missing.x > 1"),
            json!(false)
        );
        assert_eq!(
            ev("not context.missing or context.missing.x > 1"),
            json!(true)
        );
        assert_eq!(ev("true or undefined_name"), json!(true));
        assert_eq!(ev("false and undefined_name"), json!(false));
        assert_eq!(ev("false and 1 / 0"), json!(false));
        assert!(eval_err("true and undefined_name").starts_with("unknown name"));
        // Chains stop at the first false link.
        assert_eq!(ev("1 > 2 < undefined_name"), json!(false));
    }

    #[test]
    fn truthiness() {
        let v = vars(json!({
            "t": [true, 1, -1, 0.1, "x", [0], {"a": null}],
            "f": [false, null, 0, 0.0, -0.0, "", [], {}],
        }));
        for i in 0..7 {
            let cond = Condition::parse(&format!("context.t[{i}]")).unwrap();
            assert!(cond.eval_bool(&v).unwrap(), "t[{i}]");
        }
        for i in 0..8 {
            let cond = Condition::parse(&format!("context.f[{i}]")).unwrap();
            assert!(!cond.eval_bool(&v).unwrap(), "f[{i}]");
        }
        let missing = Condition::parse("context.nope").unwrap();
        assert!(!missing.eval_bool(&v).unwrap());
        let err = Condition::parse("ghost").unwrap();
        assert!(err.eval_bool(&v).is_err());
    }

    #[test]
    fn owned_intermediate_values_support_postfix() {
        let v = vars(json!({"a": [{"k": 1}], "b": [{"k": 2}]}));
        assert_eq!(eval_with("(context.a + context.b)[1].k", &v), json!(2));
        assert_eq!(eval_with("(context.a + context.b)[0]['k']", &v), json!(1));
        assert_eq!(eval_with("('ab' + 'c')[2]", &v), json!("c"));
        let cond = Condition::parse("(1 + 2).x").unwrap();
        assert_eq!(
            cond.eval(&v).unwrap_err(),
            ConditionError::Eval("cannot read attribute 'x' of int value".to_owned())
        );
    }
}
