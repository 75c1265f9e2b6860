//! What the operators mean on JSON values: numbers (exact int/float mixing),
//! `+`/`*` on strings and lists, equality, ordering, membership, truthiness.
//!
//! Pure functions of values, independent of the tree, so the Python-compatible
//! corner cases (and the deliberate differences listed in [`super`]) are
//! tested here directly.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::ast::{ArithOp, CmpOp, UnaryOp};
use super::{eval_error, ConditionError, Result};

/// Upper bound on the size (in bytes or JSON nodes) produced by `*`
/// repetition, so `"x" * 10000000000` fails cleanly instead of exhausting memory.
const MAX_REPEAT_SIZE: usize = 1_000_000;

/// Python truthiness over JSON.
pub(super) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// Python-style type names, because condition authors think in Python terms.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

// --- numbers ---------------------------------------------------------------

/// A JSON number widened so that every `i64` and `u64` is exact: integer
/// arithmetic and comparisons never lose precision inside the JSON range.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn from_value(value: &Value) -> Option<Num> {
        let Value::Number(n) = value else {
            return None;
        };
        if let Some(i) = n.as_i64() {
            Some(Num::Int(i128::from(i)))
        } else if let Some(u) = n.as_u64() {
            Some(Num::Int(i128::from(u)))
        } else {
            n.as_f64().map(Num::Float)
        }
    }

    fn to_f64(self) -> f64 {
        match self {
            // Precision loss is inherent in mixed int/float arithmetic.
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Back to JSON. Integers outside `i64`/`u64` become floats (JSON
    /// consumers rarely handle bigger integers), and non-finite floats are an
    /// error because JSON cannot represent them.
    fn into_value(self) -> Result<Value> {
        match self {
            Num::Int(i) => {
                if let Ok(small) = i64::try_from(i) {
                    Ok(Value::from(small))
                } else if let Ok(big) = u64::try_from(i) {
                    Ok(Value::from(big))
                } else {
                    float_value(i as f64).map_err(|_| non_finite())
                }
            }
            Num::Float(f) => float_value(f).map_err(|_| non_finite()),
        }
    }
}

pub(super) fn float_value(f: f64) -> Result<Value> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(non_finite)
}

fn non_finite() -> ConditionError {
    eval_error("numeric result is not finite (JSON cannot represent infinity or NaN)")
}

/// Exact numeric ordering, including int vs float (Python compares these
/// exactly too, so `2**53 + 1 > 2.0**53` holds).
fn num_cmp(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
    }
}

fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // 2^127 exactly; every i128 lies in [-2^127, 2^127).
    const LIMIT: f64 = i128::MAX as f64;
    if f >= LIMIT {
        return Ordering::Less;
    }
    if f < -LIMIT {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // Exact: `whole` is integral and within i128 range.
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal),
        unequal => unequal,
    }
}

fn int_op(op: ArithOp, x: i128, y: i128) -> Option<i128> {
    match op {
        ArithOp::Add => x.checked_add(y),
        ArithOp::Sub => x.checked_sub(y),
        ArithOp::Mul => x.checked_mul(y),
        ArithOp::Div => None,
    }
}

/// Numeric `+ - * /`. Division is always true division (like Python 3), so
/// `10 / 4` is `2.5` and `10 / 5` is the float `2.0`.
fn apply_num(op: ArithOp, a: Num, b: Num) -> Result<Num> {
    let (x, y) = (a.to_f64(), b.to_f64());
    if op == ArithOp::Div {
        if y == 0.0 {
            return Err(eval_error("division by zero"));
        }
        return Ok(Num::Float(x / y));
    }
    if let (Num::Int(i), Num::Int(j)) = (a, b) {
        if let Some(result) = int_op(op, i, j) {
            return Ok(Num::Int(result));
        }
    }
    Ok(Num::Float(match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        _ => x * y,
    }))
}

fn operand_error(op: &str, lhs: &Value, rhs: &Value) -> ConditionError {
    eval_error(format!(
        "unsupported operand types for '{op}': {} and {}",
        type_name(lhs),
        type_name(rhs)
    ))
}

fn numeric(op: ArithOp, lhs: &Value, rhs: &Value) -> Result<Value> {
    match (Num::from_value(lhs), Num::from_value(rhs)) {
        (Some(a), Some(b)) => apply_num(op, a, b)?.into_value(),
        _ => Err(operand_error(op.symbol(), lhs, rhs)),
    }
}

pub(super) fn arith(op: ArithOp, lhs: &Value, rhs: &Value) -> Result<Value> {
    match op {
        ArithOp::Add => add(lhs, rhs),
        ArithOp::Mul => multiply(lhs, rhs),
        ArithOp::Sub | ArithOp::Div => numeric(op, lhs, rhs),
    }
}

fn add(lhs: &Value, rhs: &Value) -> Result<Value> {
    match (lhs, rhs) {
        (Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
        (Value::Array(a), Value::Array(b)) => {
            Ok(Value::Array(a.iter().chain(b).cloned().collect()))
        }
        _ => numeric(ArithOp::Add, lhs, rhs),
    }
}

/// `*` also repeats strings and lists by an integer, as in Python.
fn multiply(lhs: &Value, rhs: &Value) -> Result<Value> {
    match (lhs, rhs) {
        (Value::String(s), count @ Value::Number(_))
        | (count @ Value::Number(_), Value::String(s)) => {
            let n = repeat_count(count, s.len(), lhs, rhs)?;
            Ok(Value::String(s.repeat(n)))
        }
        (Value::Array(items), count @ Value::Number(_))
        | (count @ Value::Number(_), Value::Array(items)) => {
            // At least 1 so that even repeating `[]` cannot loop unboundedly.
            let unit = items.iter().map(json_size).sum::<usize>().max(1);
            let n = repeat_count(count, unit, lhs, rhs)?;
            let mut out = Vec::with_capacity(items.len() * n);
            for _ in 0..n {
                out.extend_from_slice(items);
            }
            Ok(Value::Array(out))
        }
        _ => numeric(ArithOp::Mul, lhs, rhs),
    }
}

/// Validate a repetition count; negative counts give an empty result as in
/// Python, and results beyond [`MAX_REPEAT_SIZE`] are refused.
fn repeat_count(count: &Value, unit_size: usize, lhs: &Value, rhs: &Value) -> Result<usize> {
    if count.is_f64() {
        return Err(operand_error("*", lhs, rhs));
    }
    let too_large = || eval_error("repetition result is too large");
    let n = match count.as_i64() {
        Some(n) if n <= 0 => return Ok(0),
        Some(n) => usize::try_from(n).map_err(|_| too_large())?,
        None => return Err(too_large()),
    };
    match unit_size.checked_mul(n) {
        Some(total) if total <= MAX_REPEAT_SIZE => Ok(n),
        _ => Err(too_large()),
    }
}

/// Rough memory weight of a value (nodes plus string bytes), used to bound
/// list repetition, since repeating a list deep-clones its elements.
fn json_size(value: &Value) -> usize {
    match value {
        Value::String(s) => 1 + s.len(),
        Value::Array(items) => 1 + items.iter().map(json_size).sum::<usize>(),
        Value::Object(map) => {
            1 + map
                .iter()
                .map(|(k, v)| k.len() + json_size(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

pub(super) fn unary(op: UnaryOp, value: &Value) -> Result<Value> {
    let Some(n) = Num::from_value(value) else {
        return Err(eval_error(format!(
            "cannot apply unary '{}' to {}",
            op.symbol(),
            type_name(value)
        )));
    };
    let result = match (op, n) {
        (UnaryOp::Pos, n) => n,
        (UnaryOp::Neg, Num::Int(i)) => i.checked_neg().map_or(Num::Float(-(i as f64)), Num::Int),
        (UnaryOp::Neg, Num::Float(f)) => Num::Float(-f),
    };
    result.into_value()
}

// --- comparisons -----------------------------------------------------------

pub(super) fn compare(op: CmpOp, lhs: &Value, rhs: &Value) -> Result<bool> {
    let ordering = match op {
        CmpOp::Eq => return Ok(json_eq(lhs, rhs)),
        CmpOp::Ne => return Ok(!json_eq(lhs, rhs)),
        CmpOp::In => return contains(lhs, rhs, op),
        CmpOp::NotIn => return contains(lhs, rhs, op).map(|found| !found),
        _ => order(lhs, rhs, op)?,
    };
    Ok(match op {
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        _ => ordering != Ordering::Less,
    })
}

/// Deep JSON equality where numbers compare by value (`1 == 1.0`), object key
/// order is irrelevant, and values of different types are simply unequal.
/// Unlike Python, `true == 1` is false: JSON bools are not numbers.
fn json_eq(lhs: &Value, rhs: &Value) -> bool {
    match (lhs, rhs) {
        (Value::Number(_), Value::Number(_)) => {
            match (Num::from_value(lhs), Num::from_value(rhs)) {
                (Some(a), Some(b)) => num_cmp(a, b) == Ordering::Equal,
                _ => false,
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|other| json_eq(v, other)))
        }
        _ => lhs == rhs,
    }
}

/// Ordering for `< <= > >=`: numbers, strings (by code point, which is what
/// byte-wise UTF-8 comparison gives) and lists (lexicographic, like Python).
/// Everything else is an error rather than an arbitrary answer.
fn order(lhs: &Value, rhs: &Value, op: CmpOp) -> Result<Ordering> {
    match (lhs, rhs) {
        (Value::String(a), Value::String(b)) => Ok(a.cmp(b)),
        (Value::Array(a), Value::Array(b)) => order_lists(a, b, op),
        _ => match (Num::from_value(lhs), Num::from_value(rhs)) {
            (Some(a), Some(b)) => Ok(num_cmp(a, b)),
            _ => Err(eval_error(format!(
                "cannot compare {} with {} using '{}'",
                type_name(lhs),
                type_name(rhs),
                op.symbol()
            ))),
        },
    }
}

/// Python list ordering: the first unequal pair decides, else the length.
fn order_lists(a: &[Value], b: &[Value], op: CmpOp) -> Result<Ordering> {
    match a.iter().zip(b).find(|(x, y)| !json_eq(x, y)) {
        Some((x, y)) => order(x, y, op),
        None => Ok(a.len().cmp(&b.len())),
    }
}

/// `needle in haystack`: substring, list element, or dict key.
fn contains(needle: &Value, haystack: &Value, op: CmpOp) -> Result<bool> {
    match (needle, haystack) {
        (Value::String(n), Value::String(h)) => Ok(h.contains(n.as_str())),
        (_, Value::Array(items)) => Ok(items.iter().any(|item| json_eq(needle, item))),
        (Value::String(key), Value::Object(map)) => Ok(map.contains_key(key)),
        _ => Err(operand_error(op.symbol(), needle, haystack)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use serde_json::json;

    #[test]
    fn equality() {
        for (src, expected) in [
            ("1 == 1.0", true),
            ("1 != 1.0", false),
            ("1 == '1'", false),
            ("1 != '1'", true),
            ("null == null", true),
            ("None == context.missing", true),
            ("null == 0", false),
            ("null == false", false),
            ("true == 1", false),
            ("false == 0", false),
            ("true == True", true),
            ("'a' == 'a'", true),
            ("'a' == 'A'", false),
            ("context.tags == context.tags", true),
            ("context.score == 9", true),
            ("context.ratio == 0.5", true),
            ("context.big == context.big", true),
            ("context.big == 9223372036854775807", false),
        ] {
            assert_eq!(ev(src), json!(expected), "{src}");
        }
    }

    #[test]
    fn deep_equality() {
        let v = vars(json!({
            "a": {"x": 1, "y": [1, 2.0, {"z": null}]},
            "b": {"y": [1.0, 2, {"z": null}], "x": 1.0},
            "c": {"x": 1, "y": [1, 2, {"z": false}]},
            "d": [1, 2],
            "e": [1, 2, 3],
            "f": [true],
            "g": [1],
        }));
        assert_eq!(eval_with("context.a == context.b", &v), json!(true));
        assert_eq!(eval_with("context.a == context.c", &v), json!(false));
        assert_eq!(eval_with("context.d == context.e", &v), json!(false));
        assert_eq!(eval_with("context.f == context.g", &v), json!(false));
        assert_eq!(eval_with("context.a != context.c", &v), json!(true));
    }

    #[test]
    fn ordering_numbers_and_strings() {
        for (src, expected) in [
            ("1 < 2", true),
            ("2 < 1", false),
            ("2 <= 2", true),
            ("3 <= 2", false),
            ("3 > 2", true),
            ("2 > 2", false),
            ("2 >= 2", true),
            ("1 >= 2", false),
            ("1 < 1.5", true),
            ("2.5 > 2", true),
            ("2.0 >= 2", true),
            ("-1 < -0.5", true),
            ("context.score >= 8", true),
            ("context.big > 9223372036854775807", true),
            ("'apple' < 'banana'", true),
            ("'b' > 'abc'", true),
            ("'' < 'a'", true),
            ("'Z' < 'a'", true),
            ("'é' > 'z'", true),
            ("'a' <= 'a'", true),
        ] {
            assert_eq!(ev(src), json!(expected), "{src}");
        }
    }

    #[test]
    fn int_float_comparison_is_exact() {
        // 2^53 + 1 is not representable as f64; a naive cast would say equal.
        let v = vars(json!({"i": 9_007_199_254_740_993_i64, "f": 9_007_199_254_740_992.0}));
        assert_eq!(eval_with("context.i > context.f", &v), json!(true));
        assert_eq!(eval_with("context.i == context.f", &v), json!(false));
        assert_eq!(eval_with("context.f < context.i", &v), json!(true));
        assert_eq!(eval_with("1e300 > context.i", &v), json!(true));
        assert_eq!(eval_with("-1e300 < context.i", &v), json!(true));
        assert_eq!(eval_with("-2.5 < -2", &v), json!(true));
        assert_eq!(eval_with("-2 > -2.5", &v), json!(true));
    }

    #[test]
    fn ordering_lists() {
        let v = vars(json!({
            "a": [1, 2, 3],
            "b": [1, 2, 4],
            "c": [1, 2],
            "d": [1, "x"],
            "e": [null, 1],
            "f": [null, 2],
            "g": [1.0, 2, 3],
            "h": [1, 2, "x"],
        }));
        for (src, expected) in [
            ("context.a < context.b", true),
            ("context.b > context.a", true),
            ("context.c < context.a", true),
            ("context.a <= context.g", true),
            ("context.a < context.g", false),
            ("context.e < context.f", true),
            ("context.c < context.h", true),
        ] {
            assert_eq!(eval_with(src, &v), json!(expected), "{src}");
        }
        // The first unequal pair decides, and `2 < "x"` is a type error.
        let cond = Condition::parse("context.c < context.d").unwrap();
        assert_eq!(
            cond.eval(&v).unwrap_err().to_string(),
            "cannot compare int with str using '<'"
        );
    }

    #[test]
    fn ordering_type_errors() {
        assert_eq!(
            eval_err("'a' >= 1"),
            "cannot compare str with int using '>='"
        );
        assert_eq!(eval_err("1 < 'a'"), "cannot compare int with str using '<'");
        assert_eq!(
            eval_err("null > 1"),
            "cannot compare None with int using '>'"
        );
        assert_eq!(
            eval_err("1.5 <= null"),
            "cannot compare float with None using '<='"
        );
        assert_eq!(
            eval_err("true < 2"),
            "cannot compare bool with int using '<'"
        );
        assert_eq!(
            eval_err("true < false"),
            "cannot compare bool with bool using '<'"
        );
        assert_eq!(
            eval_err("context.nested < context.nested"),
            "cannot compare dict with dict using '<'"
        );
        assert_eq!(
            eval_err("context.tags > 'x'"),
            "cannot compare list with str using '>'"
        );
    }

    #[test]
    fn comparison_chains() {
        for (src, expected) in [
            ("1 < 2 < 3", true),
            ("1 < 3 < 2", false),
            ("3 > 2 > 1", true),
            ("1 < 2 > 0", true),
            ("1 == 1 == 1.0", true),
            ("1 == 1 != 2", true),
            ("0 <= context.ratio <= 1", true),
            ("0 <= context.score <= 5", false),
            ("'a' in 'abc' in 'xabcx'", true),
            ("1 < 2 < 3 < 4 < 5", true),
            ("1 < 2 < 3 < 5 < 4", false),
        ] {
            assert_eq!(ev(src), json!(expected), "{src}");
        }
        // Python semantics: the chain is not `(1 < 3) < 2`, which would
        // compare a bool with an int.
        assert_eq!(
            eval_err("(1 < 3) < 2"),
            "cannot compare bool with int using '<'"
        );
    }

    #[test]
    fn membership() {
        for (src, expected) in [
            ("'pap' in context.name", true),
            ("'xyz' in context.name", false),
            ("'' in context.name", true),
            ("'xyz' not in context.name", true),
            ("'a' in context.tags", true),
            ("3 in context.tags", true),
            ("3.0 in context.tags", true),
            ("'3' in context.tags", false),
            ("'c' not in context.tags", true),
            ("null in context.tags", false),
            ("1 in context.empty", false),
            ("'inner' in context.nested", true),
            ("'value' in context.nested", false),
            ("'value' not in context.nested", true),
            ("'score' in context", true),
            ("context.nested.inner in context.tags", false),
        ] {
            assert_eq!(ev(src), json!(expected), "{src}");
        }
    }

    #[test]
    fn membership_errors() {
        assert_eq!(
            eval_err("1 in 'abc'"),
            "unsupported operand types for 'in': int and str"
        );
        assert_eq!(
            eval_err("'a' in context.missing"),
            "unsupported operand types for 'in': str and None"
        );
        assert_eq!(
            eval_err("1 not in context.nested"),
            "unsupported operand types for 'not in': int and dict"
        );
        assert_eq!(
            eval_err("'a' in 5"),
            "unsupported operand types for 'in': str and int"
        );
    }

    #[test]
    fn addition() {
        assert_eq!(ev("1 + 2"), json!(3));
        assert_eq!(ev("1 + 2.5"), json!(3.5));
        assert_eq!(ev("1.5 + 1.5"), json!(3.0));
        assert_eq!(ev("context.round + 1"), json!(3));
        assert_eq!(ev("'ab' + 'cd'"), json!("abcd"));
        assert_eq!(
            ev("context.tags + context.nested.list"),
            json!(["a", "b", 3, 10, 20, 30])
        );
        assert_eq!(ev("context.empty + context.empty"), json!([]));
        // Past i64 but within u64 stays an exact integer...
        assert_eq!(
            ev("9223372036854775807 + 1"),
            json!(9_223_372_036_854_775_808_u64)
        );
        // ...and past u64 becomes a float.
        assert_eq!(ev("context.big + 1"), json!(18_446_744_073_709_551_616.0));
        assert_eq!(
            ev("-9223372036854775807 - 10"),
            json!(-9_223_372_036_854_775_817.0)
        );
    }

    #[test]
    fn addition_errors() {
        assert_eq!(
            eval_err("'a' + 1"),
            "unsupported operand types for '+': str and int"
        );
        assert_eq!(
            eval_err("1 + 'a'"),
            "unsupported operand types for '+': int and str"
        );
        assert_eq!(
            eval_err("true + 1"),
            "unsupported operand types for '+': bool and int"
        );
        assert_eq!(
            eval_err("null + 1"),
            "unsupported operand types for '+': None and int"
        );
        assert_eq!(
            eval_err("context.tags + 'x'"),
            "unsupported operand types for '+': list and str"
        );
        assert_eq!(
            eval_err("context.nested + context.nested"),
            "unsupported operand types for '+': dict and dict"
        );
    }

    #[test]
    fn subtraction_and_multiplication() {
        assert_eq!(ev("5 - 7"), json!(-2));
        assert_eq!(ev("5 - 0.5"), json!(4.5));
        assert_eq!(ev("2 - 3 - 4"), json!(-5));
        assert_eq!(ev("6 * 7"), json!(42));
        assert_eq!(ev("2 * 0.25"), json!(0.5));
        assert_eq!(
            ev("context.big * context.big"),
            json!(3.402_823_669_209_385e38)
        );
        assert_eq!(ev("'ab' * 3"), json!("ababab"));
        assert_eq!(ev("3 * 'ab'"), json!("ababab"));
        assert_eq!(ev("'ab' * 0"), json!(""));
        assert_eq!(ev("'ab' * -2"), json!(""));
        assert_eq!(
            ev("context.nested.list * 2"),
            json!([10, 20, 30, 10, 20, 30])
        );
        assert_eq!(
            ev("2 * context.nested.list"),
            json!([10, 20, 30, 10, 20, 30])
        );
        assert_eq!(ev("context.nested.list * -1"), json!([]));
        assert_eq!(
            eval_err("'a' - 'a'"),
            "unsupported operand types for '-': str and str"
        );
        assert_eq!(
            eval_err("'a' * 'a'"),
            "unsupported operand types for '*': str and str"
        );
        assert_eq!(
            eval_err("'a' * 1.5"),
            "unsupported operand types for '*': str and float"
        );
        assert_eq!(
            eval_err("'a' * true"),
            "unsupported operand types for '*': str and bool"
        );
        assert_eq!(
            eval_err("context.tags * context.tags"),
            "unsupported operand types for '*': list and list"
        );
        assert_eq!(
            eval_err("'a' * 10000000000"),
            "repetition result is too large"
        );
        assert_eq!(
            eval_err("'a' * context.big"),
            "repetition result is too large"
        );
        assert_eq!(
            eval_err("context.nested.list * 1000000"),
            "repetition result is too large"
        );
        assert_eq!(
            eval_err("context.empty * 10000000"),
            "repetition result is too large"
        );
        assert_eq!(ev("'' * 10000000000"), json!(""));
    }

    #[test]
    fn division() {
        assert_eq!(ev("10 / 4"), json!(2.5));
        assert_eq!(ev("10 / 5"), json!(2.0));
        assert!(ev("10 / 5").is_f64());
        assert_eq!(ev("1 / 3 * 3"), json!(1.0));
        assert_eq!(ev("8 / 4 / 2"), json!(1.0));
        assert_eq!(ev("-7 / 2"), json!(-3.5));
        assert_eq!(eval_err("1 / 0"), "division by zero");
        assert_eq!(eval_err("1 / 0.0"), "division by zero");
        assert_eq!(eval_err("1.5 / -0.0"), "division by zero");
        assert_eq!(
            eval_err("'a' / 2"),
            "unsupported operand types for '/': str and int"
        );
        assert_eq!(
            eval_err("1e308 / 1e-308"),
            "numeric result is not finite (JSON cannot represent infinity or NaN)"
        );
    }

    #[test]
    fn non_finite_results_are_errors() {
        assert_eq!(
            eval_err("1e308 * 10"),
            "numeric result is not finite (JSON cannot represent infinity or NaN)"
        );
        assert_eq!(
            eval_err("-1e308 - 1e308"),
            "numeric result is not finite (JSON cannot represent infinity or NaN)"
        );
    }

    #[test]
    fn unary_operators() {
        assert_eq!(ev("-3"), json!(-3));
        assert_eq!(ev("+3"), json!(3));
        assert_eq!(ev("-2.5"), json!(-2.5));
        assert_eq!(ev("- -3"), json!(3));
        assert_eq!(ev("-(-3)"), json!(3));
        assert_eq!(ev("+-+2"), json!(-2));
        assert_eq!(ev("-context.score"), json!(-9));
        assert_eq!(ev("-context.big"), json!(-18_446_744_073_709_551_615.0));
        assert_eq!(eval_err("-'a'"), "cannot apply unary '-' to str");
        assert_eq!(eval_err("+null"), "cannot apply unary '+' to None");
        assert_eq!(eval_err("-true"), "cannot apply unary '-' to bool");
    }
}
