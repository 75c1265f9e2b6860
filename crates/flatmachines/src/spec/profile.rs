//! `spec: flatprofile` catalogs: named model configurations with a default
//! and an optional override.
//!
//! Resolution differs from the Python reference on purpose: a named profile
//! is used as written (plus `override`); fields of the default profile do not
//! leak into it, and an unknown name is an error instead of a silent fallback
//! to the default model.

use indexmap::IndexMap;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct Catalog {
    pub label: String,
    pub profiles: IndexMap<String, Map<String, Value>>,
    pub default: Option<String>,
    pub override_: Option<String>,
}

impl Catalog {
    /// Read a catalog from a parsed `spec: flatprofile` document.
    pub fn from_value(v: &Value, label: &str) -> Result<Catalog, String> {
        let obj = v.as_object().ok_or("profile catalog must be a mapping")?;
        match obj.get("spec").and_then(Value::as_str) {
            Some("flatprofile") | Some("flatprofiles") => {}
            Some(other) => return Err(format!("spec is '{other}', expected 'flatprofile'")),
            None => return Err("missing `spec: flatprofile`".into()),
        }
        let data = obj
            .get("data")
            .and_then(Value::as_object)
            .ok_or("missing `data:` mapping")?;
        let raw = data
            .get("model_profiles")
            .and_then(Value::as_object)
            .ok_or("missing `model_profiles:` mapping")?;
        let mut profiles = IndexMap::new();
        for (name, p) in raw {
            profiles.insert(name.clone(), unwrap_profile(name, p)?);
        }
        let name_field = |k: &str| -> Result<Option<String>, String> {
            match data.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(n)) if profiles.contains_key(n) => Ok(Some(n.clone())),
                Some(Value::String(n)) => Err(format!(
                    "`{k}: {n}` names no profile (known: {})",
                    names(&profiles)
                )),
                Some(_) => Err(format!("`{k}` must be a profile name")),
            }
        };
        let mut default = name_field("default")?;
        let override_ = name_field("override")?;
        if default.is_none() && profiles.len() == 1 {
            default = profiles.keys().next().cloned();
        }
        Ok(Catalog {
            label: label.to_string(),
            profiles,
            default,
            override_,
        })
    }

    /// The model config for `name` (or the default), with `override` applied.
    pub fn resolve(&self, name: Option<&str>) -> Result<Map<String, Value>, String> {
        self.resolve_with(name, &Map::new())
    }

    /// The model config for `name` (or the default), then the agent's
    /// `inline` fields, then `override` — the SDK's order, so an `override`
    /// profile trumps everything an agent file says.
    pub fn resolve_with(
        &self,
        name: Option<&str>,
        inline: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let chosen = match name {
            Some(n) => n,
            None => self
                .default
                .as_deref()
                .ok_or_else(|| format!("no profile named and {} has no `default`", self.label))?,
        };
        let mut model = self.profiles.get(chosen).cloned().ok_or_else(|| {
            format!(
                "unknown profile '{chosen}' (known in {}: {})",
                self.label,
                names(&self.profiles)
            )
        })?;
        for (k, v) in inline {
            model.insert(k.clone(), v.clone());
        }
        if let Some(o) = &self.override_ {
            if let Some(over) = self.profiles.get(o) {
                for (k, v) in over {
                    model.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(model)
    }
}

fn names(p: &IndexMap<String, Map<String, Value>>) -> String {
    p.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// A profile is a ModelConfig, or `{type: llm, model: ModelConfig}`.
fn unwrap_profile(name: &str, p: &Value) -> Result<Map<String, Value>, String> {
    let obj = p
        .as_object()
        .ok_or_else(|| format!("profile '{name}' must be a mapping"))?;
    match obj.get("type").and_then(Value::as_str) {
        None => Ok(obj.clone()),
        Some("llm") => obj
            .get("model")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| format!("profile '{name}' of type llm has no `model` mapping")),
        Some(other) => Err(format!(
            "profile '{name}' has type '{other}', which this runner does not support (only llm model configs)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cat() -> Catalog {
        let v = json!({"spec": "flatprofile", "spec_version": "4.2.1", "data": {
            "model_profiles": {
                "cheap": {"provider": "openrouter", "name": "a", "temperature": 0.2},
                "expensive": {"type": "llm", "model": {"provider": "openrouter", "name": "b"}},
                "pin": {"seed": 7}
            },
            "default": "cheap", "override": "pin"}});
        Catalog::from_value(&v, "profiles.yml").unwrap()
    }

    #[test]
    fn resolves_named_default_and_override() {
        let c = cat();
        let e = c.resolve(Some("expensive")).unwrap();
        assert_eq!(e.get("name"), Some(&json!("b")));
        assert_eq!(e.get("temperature"), None, "default must not leak");
        assert_eq!(e.get("seed"), Some(&json!(7)));
        assert_eq!(c.resolve(None).unwrap().get("name"), Some(&json!("a")));
    }

    #[test]
    fn unknown_names_are_errors() {
        let c = cat();
        let err = c.resolve(Some("nope")).unwrap_err();
        assert!(err.contains("unknown profile 'nope'"), "{err}");
        let bad =
            json!({"spec": "flatprofile", "data": {"model_profiles": {"a": {}}, "default": "zz"}});
        assert!(Catalog::from_value(&bad, "p").is_err());
    }
}
