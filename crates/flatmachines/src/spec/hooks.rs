//! Hook references: how a machine names the hooks that implement its custom
//! actions and receive its events (`hooks:` on a state, `lifecycle_hooks:`
//! on the machine).
//!
//! The SDK accepts a name, `{name, args}`, or a list of those (a list chains
//! its hooks in order). The names are resolved at run time against the
//! host's hooks registry (`--hooks NAME=cmd:PATH`, `[hooks]` in the runner's
//! config), so a machine file never says *how* a hook is implemented.

use serde_json::{Map, Value};

/// One hook a machine names.
#[derive(Debug, Clone, PartialEq)]
pub struct HookRef {
    pub name: String,
    /// The `args` of `{name, args}`: passed to the handler with every event.
    pub args: Option<Map<String, Value>>,
}

/// The hooks a `hooks:`/`lifecycle_hooks:` value names, in call order.
/// `null` (the key absent) names none. `Err` says what shape is expected.
pub fn parse_hook_refs(v: &Value) -> Result<Vec<HookRef>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(parse_one).collect(),
        one => Ok(vec![parse_one(one)?]),
    }
}

fn parse_one(v: &Value) -> Result<HookRef, String> {
    const SHAPE: &str = "a hooks reference is a name, {name, args}, or a list of those";
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(HookRef {
            name: s.clone(),
            args: None,
        }),
        Value::Object(m) => {
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| format!("{SHAPE}: `name` is missing or not a string"))?;
            if let Some(k) = m.keys().find(|k| *k != "name" && *k != "args") {
                return Err(format!("{SHAPE}: unknown key `{k}`"));
            }
            let args = match m.get("args") {
                None | Some(Value::Null) => None,
                Some(Value::Object(a)) => Some(a.clone()),
                Some(_) => return Err(format!("{SHAPE}: `args` must be a mapping")),
            };
            Ok(HookRef {
                name: name.to_string(),
                args,
            })
        }
        other => Err(format!("{SHAPE}, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_objects_and_lists_parse_in_order() {
        assert!(parse_hook_refs(&Value::Null).unwrap().is_empty());
        let r = parse_hook_refs(&json!("v2-hooks")).unwrap();
        assert_eq!(r[0].name, "v2-hooks");
        let r = parse_hook_refs(&json!(["a", {"name": "b", "args": {"x": 1}}])).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].name, "b");
        assert_eq!(r[1].args.as_ref().unwrap()["x"], json!(1));
        for bad in [
            json!(3),
            json!({"args": {}}),
            json!({"name": "a", "x": 1}),
            json!(""),
        ] {
            assert!(parse_hook_refs(&bad).is_err(), "{bad}");
        }
    }
}
