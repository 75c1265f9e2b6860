//! JSON text exactly as Python's `json.dumps` writes it (`", "` and `": "`
//! separators, non-ASCII escaped). Templates that print lists or maps, and
//! the `tojson` filter, use it so rendered prompts match the Python reference
//! byte for byte.

use serde_json::Value;
use std::fmt::Write;

/// Serialise `v` like Python's `json.dumps(v)`; with `indent`, like
/// `json.dumps(v, indent=n)`.
pub fn dumps(v: &Value, indent: Option<usize>) -> String {
    let mut out = String::new();
    write_value(&mut out, v, indent, 0);
    out
}

fn write_value(out: &mut String, v: &Value, indent: Option<usize>, level: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(out, i, indent, level + 1);
                write_value(out, item, indent, level + 1);
            }
            closing(out, indent, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                separator(out, i, indent, level + 1);
                write_string(out, k);
                out.push_str(": ");
                write_value(out, item, indent, level + 1);
            }
            closing(out, indent, level);
            out.push('}');
        }
    }
}

fn separator(out: &mut String, i: usize, indent: Option<usize>, level: usize) {
    match indent {
        Some(n) => {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
        None => {
            if i > 0 {
                out.push_str(", ");
            }
        }
    }
}

fn closing(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(n) = indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * level));
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        // Python prints floats with a fractional part: 2.0, not 2.
        if f.fract() == 0.0 && f.abs() < 1e16 {
            let _ = write!(out, "{f:.1}");
        } else {
            let _ = write!(out, "{f}");
        }
    } else {
        let _ = write!(out, "{n}");
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_separators() {
        let v = json!({"a": 1, "b": [true, null, 2.0, "x"]});
        assert_eq!(dumps(&v, None), r#"{"a": 1, "b": [true, null, 2.0, "x"]}"#);
    }

    #[test]
    fn escapes_non_ascii_like_ensure_ascii() {
        assert_eq!(dumps(&json!("é😀\n"), None), r#""\u00e9\ud83d\ude00\n""#);
    }

    #[test]
    fn indents_like_python() {
        let v = json!({"a": [1]});
        assert_eq!(dumps(&v, Some(2)), "{\n  \"a\": [\n    1\n  ]\n}");
        assert_eq!(dumps(&json!([]), Some(2)), "[]");
    }
}
