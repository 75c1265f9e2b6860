//! A state's `tool_loop:` settings (see `engine::tool_loop` for the loop).

use serde_json::{Map, Value};
use std::time::Duration;

pub const DEFAULT_MAX_TURNS: u64 = 20;
pub const DEFAULT_MAX_TOOL_CALLS: u64 = 50;
/// Largest accepted `max_turns` / `max_tool_calls`.
pub const MAX_LOOP_COUNT: u64 = 10_000;

/// A state's `tool_loop:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopConfig {
    pub max_turns: u64,
    pub max_tool_calls: u64,
    pub allowed: Vec<String>,
    pub denied: Vec<String>,
    pub tool_timeout: Option<Duration>,
    pub total_timeout: Option<Duration>,
    pub max_cost: Option<f64>,
}

fn secs(v: Option<&Value>, key: &str) -> Result<Option<Duration>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let s = v
                .as_f64()
                .filter(|s| {
                    s.is_finite() && *s >= 0.0 && *s <= crate::spec::limits::MAX_DURATION_SECS
                })
                .ok_or_else(|| {
                    format!("tool_loop.{key} must be seconds from 0 to 86400, got {v}")
                })?;
            Ok(crate::spec::limits::duration_from_secs(s))
        }
    }
}

/// A limit written as text: a number (`"5"`), or a template (as the SDK
/// allows, `"{{ context.budget }}"`), which the engine renders before the
/// loop and validation reads as "not set".
fn numeric(v: &Value) -> Value {
    match v {
        Value::String(t) => match t.trim().parse::<f64>() {
            Ok(n) if t.trim().parse::<u64>().is_ok() => Value::from(n as u64),
            Ok(n) => Value::from(n),
            Err(_) if t.contains("{{") => Value::Null,
            Err(_) => v.clone(),
        },
        other => other.clone(),
    }
}

impl LoopConfig {
    /// `tool_loop: true` or a mapping; `None` for `false`/absent.
    pub fn parse(v: Option<&Value>) -> Result<Option<LoopConfig>, String> {
        let m: Map<String, Value> = match v {
            None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(None),
            Some(Value::Bool(true)) => Map::new(),
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), numeric(v))).collect(),
            Some(other) => return Err(format!("tool_loop must be true or a mapping, not {other}")),
        };
        const KEYS: [&str; 7] = [
            "max_turns",
            "max_tool_calls",
            "allowed_tools",
            "denied_tools",
            "tool_timeout",
            "total_timeout",
            "max_cost",
        ];
        if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!("tool_loop: unknown key '{k}'"));
        }
        let count = |key: &str, default: u64| -> Result<u64, String> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => match v.as_u64() {
                    // 0 is the SDK's "unlimited": bounded here by the default.
                    Some(0) => Ok(default),
                    Some(n) if n <= MAX_LOOP_COUNT => Ok(n),
                    _ => Err(format!(
                        "tool_loop.{key} must be a whole number up to {MAX_LOOP_COUNT}, got {v}"
                    )),
                },
            }
        };
        let names = |key: &str| -> Result<Vec<String>, String> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| format!("tool_loop.{key} lists tool names"))
                    })
                    .collect(),
                Some(_) => Err(format!("tool_loop.{key} must be a list of tool names")),
            }
        };
        let max_cost = match m.get("max_cost") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(c) if c.is_finite() && c >= 0.0 => (c > 0.0).then_some(c),
                _ => {
                    return Err(format!(
                        "tool_loop.max_cost must be a non-negative number, got {v}"
                    ))
                }
            },
        };
        Ok(Some(LoopConfig {
            max_turns: count("max_turns", DEFAULT_MAX_TURNS)?,
            max_tool_calls: count("max_tool_calls", DEFAULT_MAX_TOOL_CALLS)?,
            allowed: names("allowed_tools")?,
            denied: names("denied_tools")?,
            tool_timeout: secs(m.get("tool_timeout"), "tool_timeout")?,
            total_timeout: secs(m.get("total_timeout"), "total_timeout")?,
            max_cost,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loop_settings_parse_with_bounded_defaults() {
        assert_eq!(LoopConfig::parse(None).unwrap(), None);
        assert_eq!(LoopConfig::parse(Some(&json!(false))).unwrap(), None);
        let c = LoopConfig::parse(Some(&json!(true))).unwrap().unwrap();
        assert_eq!((c.max_turns, c.max_tool_calls), (20, 50));
        let c = LoopConfig::parse(Some(&json!({"max_turns": 0, "max_tool_calls": 3,
            "denied_tools": ["rm"], "tool_timeout": 2.5})))
        .unwrap()
        .unwrap();
        assert_eq!((c.max_turns, c.max_tool_calls), (20, 3));
        assert_eq!(c.denied, ["rm"]);
        assert_eq!(c.tool_timeout, Some(Duration::from_millis(2500)));
        // Text: a number, or a template the engine renders first.
        let c = LoopConfig::parse(Some(
            &json!({"max_turns": "5", "max_tool_calls": "{{ context.n }}"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!((c.max_turns, c.max_tool_calls), (5, 50));
        for bad in [
            json!(3),
            json!({"max_turns": -1}),
            json!({"nope": 1}),
            json!({"tool_timeout": 1e9}),
            json!({"allowed_tools": "x"}),
            json!({"max_turns": "many"}),
        ] {
            assert!(LoopConfig::parse(Some(&bad)).is_err(), "{bad}");
        }
    }
}
