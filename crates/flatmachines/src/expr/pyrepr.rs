//! Values printed the way Python's `str()` / `repr()` print them, as Jinja2
//! does when an agent prompt prints a value (`{{ input.items }}` →
//! `[1, 'a']`, `{{ input.flag }}` → `True`). The Python SDK renders agent
//! prompts with a plain `jinja2.Environment()`, which prints every value
//! with `str()`; users who move their prompts here expect the same text, so
//! the model sees byte-identical prompts on both runtimes.
//!
//! Machine-level templates do not use this: they print lists and maps as
//! `json.dumps` does (see [`super::pyjson`]), like the SDK's machine runtime.

use serde_json::Value;
use std::fmt::Write;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Python's `str(v)`: a string is itself, everything else is its `repr`.
pub fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

/// Python's `repr(v)` of the value a JSON document decodes to
/// (`json.loads`): `None`, `True`, `1`, `1.0`, `'s'`, `[...]`, `{...}`.
pub fn repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, v);
    out
}

fn write_repr(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str_repr(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str_repr(out, k);
                out.push_str(": ");
                write_repr(out, item);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    match n.as_f64().filter(|_| n.is_f64()) {
        Some(f) => out.push_str(&float_repr(f)),
        None => {
            let _ = write!(out, "{n}");
        }
    }
}

/// Python's `repr(float)`: the shortest digits that read back as the same
/// float, in fixed notation when the decimal exponent is in `-4..16`
/// (always with a fractional part: `2.0`), else in scientific notation with
/// a signed two-digit-minimum exponent (`1e+16`, `1.5e-07`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Python's
    // repr (both pick the shortest string that reads back exactly).
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    // Python's `decpt`: the value is 0.DIGITS × 10^decpt.
    let decpt = exp + 1;
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.unsigned_abs());
    }
    let n = digits.len() as i32;
    if decpt <= 0 {
        let zeros = "0".repeat(decpt.unsigned_abs() as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if decpt >= n {
        let zeros = "0".repeat((decpt - n) as usize);
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// Python's `repr(str)`: single quotes unless the text holds a `'` and no
/// `"`; backslash, the chosen quote, `\n`, `\r`, `\t` escaped; characters
/// Python does not consider printable as `\xNN`, `\uNNNN` or `\UNNNNNNNN`;
/// every other character (accents, CJK, emoji) as itself.
pub fn str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_str_repr(&mut out, s);
    out
}

fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => {
                let code = c as u32;
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable` for one character: everything except the
/// "Other" and "Separator" categories, the ASCII space excepted.
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars() {
        assert_eq!(repr(&json!(null)), "None");
        assert_eq!(repr(&json!(true)), "True");
        assert_eq!(repr(&json!(false)), "False");
        assert_eq!(repr(&json!(8)), "8");
        assert_eq!(repr(&json!(-3)), "-3");
        assert_eq!(repr(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(repr(&json!(1.0)), "1.0");
        assert_eq!(repr(&json!(-2.5)), "-2.5");
        assert_eq!(str_of(&json!("plain text")), "plain text");
        assert_eq!(repr(&json!("plain text")), "'plain text'");
    }

    #[test]
    fn floats_like_python_repr() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (1e22, "1e+22"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (3.0, "3.0"),
            (12.5, "12.5"),
            (100.0, "100.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f:?}");
        }
    }

    #[test]
    fn quotes_chosen_as_python_does() {
        assert_eq!(str_repr("a\"b"), r#"'a"b'"#);
        assert_eq!(str_repr("a'b"), r#""a'b""#);
        assert_eq!(str_repr("a'\"b"), r#"'a\'"b'"#);
        assert_eq!(str_repr(""), "''");
        assert_eq!(str_repr("back\\slash"), r"'back\\slash'");
    }

    #[test]
    fn escapes_only_what_python_cannot_print() {
        assert_eq!(str_repr("tab\tnl\ncr\r"), r"'tab\tnl\ncr\r'");
        assert_eq!(str_repr("\u{1}\u{7f}"), r"'\x01\x7f'");
        // Unicode text prints as itself.
        assert_eq!(str_repr("é ü 日本 😀"), "'é ü 日本 😀'");
        // Non-printing characters: no-break space (Zs), zero-width space
        // (Cf), line separator (Zl), private use (Co), an unassigned one.
        assert_eq!(str_repr("\u{a0}"), r"'\xa0'");
        assert_eq!(str_repr("\u{200b}"), r"'\u200b'");
        assert_eq!(str_repr("\u{2028}"), r"'\u2028'");
        assert_eq!(str_repr("\u{e000}"), r"'\ue000'");
        assert_eq!(str_repr("\u{10ffff}"), r"'\U0010ffff'");
    }

    #[test]
    fn containers() {
        assert_eq!(repr(&json!([])), "[]");
        assert_eq!(repr(&json!({})), "{}");
        assert_eq!(repr(&json!([1, "a"])), "[1, 'a']");
        assert_eq!(repr(&json!({"k": "v"})), "{'k': 'v'}");
        // Insertion order is kept, as Python dicts keep it.
        assert_eq!(
            repr(&json!({"b": [null, true, 1.0], "a": {"x": [[]], "it's": "é"}})),
            r#"{'b': [None, True, 1.0], 'a': {'x': [[]], "it's": 'é'}}"#
        );
        assert_eq!(
            repr(&json!([[1, [2, [3.5]]], {"q": "say \"hi\""}])),
            r#"[[1, [2, [3.5]]], {'q': 'say "hi"'}]"#
        );
    }
}
