//! Loading machine files and everything they reference (agents, prompts,
//! profiles, child machines) into a [`Bundle`].
//!
//! Loading never stops at the first problem: it records every problem it can
//! find as a [`Diagnostic`] so `runner machine check` can print them all.
//! Every relative path resolves against the file that contains it — the
//! Python reference resolves an agent's `./prompts/x.yml` against the machine
//! instead, which breaks agents kept in their own folder.

use super::diag::Diagnostics;
use super::limits::{MAX_FILE_BYTES, MAX_NESTING};
use super::model::{
    AgentDef, Bundle, FallbackProfile, MachineDef, PromptDef, StateDef, STATE_KEYS,
};
use super::profile::Catalog;
use super::validate;
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The spec version this runner implements (the Python SDK's 4.2.1).
pub const CURRENT_SPEC_VERSION: &str = "4.2.1";

/// Default `settings.max_steps`.
pub const DEFAULT_MAX_STEPS: u64 = 1000;

/// Checks one resolved model config (a profile's `model` map) the way the
/// host's LLM client will read it; `Err` carries the reason. The runtime
/// itself knows no client, so the host supplies this (see
/// [`LoadOptions::model_check`]).
pub type ModelCheck = fn(&serde_json::Map<String, serde_json::Value>) -> Result<(), String>;

/// Options that affect loading.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--profiles PATH`: use this catalog instead of discovering `profiles.yml`.
    pub profiles: Option<PathBuf>,
    /// Names of the actions the runtime provides (for validation).
    pub actions: Vec<String>,
    /// The host client's check of every agent's resolved model config, so
    /// a profile the client would refuse is a load error, not a failure
    /// when a paper first reaches that agent. `None` skips the check.
    pub model_check: Option<ModelCheck>,
    /// Names in the host's hooks registry, or `None` when none was given:
    /// then a custom action a machine's hooks would implement is a warning
    /// (the run fails only if it reaches that state), not an error.
    pub hooks: Option<Vec<String>>,
}

/// The outcome of loading: a bundle when nothing fatal happened, and all problems.
pub struct Loaded {
    pub bundle: Option<Bundle>,
    pub diagnostics: Diagnostics,
}

/// Load and validate the machine at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Loaded {
    let mut loader = Loader {
        opts,
        diags: Diagnostics::default(),
        machines: Vec::new(),
        by_path: HashMap::new(),
        catalogs: HashMap::new(),
        forced_catalog: None,
    };
    if let Some(p) = &opts.profiles {
        let label = p.display().to_string();
        loader.forced_catalog = loader.load_catalog(p, &label);
        if loader.forced_catalog.is_none() && !loader.diags.has_errors() {
            loader
                .diags
                .error(&label, None, "profile catalog could not be loaded");
        }
    }
    let label = path.display().to_string();
    let root = loader.load_machine_file(path, &label);
    if let Some(root) = root {
        validate::validate_bundle(&loader.machines, root, &mut loader.diags);
        if let Some(check) = opts.model_check {
            validate::check_profiles(
                &loader.machines,
                opts.profiles.as_deref(),
                check,
                &mut loader.diags,
            );
        }
    }
    let bundle = match root {
        Some(root) if !loader.diags.has_errors() => Some(Bundle {
            root,
            machines: loader.machines,
        }),
        _ => None,
    };
    Loaded {
        bundle,
        diagnostics: loader.diags,
    }
}

/// Parse YAML or JSON text into a JSON value, reporting syntax errors with
/// line and column.
///
/// Hardened for files from outside: a flow nesting deeper than
/// [`MAX_NESTING`] is refused before the YAML parser sees it (its cost grows
/// with the square of the depth), and a key repeated in one mapping is an
/// error instead of silently replacing the earlier value (serde_yaml and
/// serde_json both keep the last one when building a `Value`).
pub fn parse_document(
    text: &str,
    path: &Path,
    label: &str,
    diags: &mut Diagnostics,
) -> Option<Value> {
    let is_json = path.extension().and_then(|e| e.to_str()) == Some("json");
    let kind = if is_json { "JSON" } else { "YAML" };
    match parse_value(text, is_json) {
        Ok(v) => Some(v),
        Err(ParseError { message, location }) => {
            diags.syntax(label, location, format!("{kind} syntax error: {message}"));
            None
        }
    }
}

/// A document that did not parse: message without location, and the
/// 1-based (line, column) when the parser knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub location: Option<(usize, usize)>,
}

/// Parse YAML (or JSON when `json`) into a JSON value with the same
/// hardening as [`parse_document`]: bounded flow nesting, no duplicate keys.
/// For any caller that reads YAML/JSON given by a user (input files).
pub fn parse_value(text: &str, json: bool) -> Result<Value, ParseError> {
    if let Some(location) = too_deep(text, MAX_NESTING) {
        return Err(ParseError {
            message: format!("nesting deeper than {MAX_NESTING} levels"),
            location: Some(location),
        });
    }
    if json {
        return serde_json::from_str::<StrictValue>(text)
            .map(|v| v.0)
            .map_err(|e| ParseError {
                message: strip_location(&e.to_string()),
                location: Some((e.line(), e.column())),
            });
    }
    serde_yaml::from_str::<StrictValue>(text)
        .map(|v| v.0)
        .map_err(|e| ParseError {
            message: strip_location(&e.to_string()),
            location: e.location().map(|l| (l.line(), l.column())),
        })
}

/// Where the bracket nesting of `text` first exceeds `limit`, if it does.
/// Counts every `[`/`{` against every `]`/`}`, quoted or not: this can only
/// over-estimate the real flow nesting (brackets in strings add to it), so
/// a document that passes cannot be deeper than `limit`, and a real file
/// would need `limit` unclosed brackets in its text to be refused.
fn too_deep(text: &str, limit: usize) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut col) = (0usize, 1usize, 0usize);
    for c in text.chars() {
        col += 1;
        match c {
            '[' | '{' => {
                depth += 1;
                if depth > limit {
                    return Some((line, col));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '\n' => {
                line += 1;
                col = 0;
            }
            _ => {}
        }
    }
    None
}

/// A JSON value deserialised from YAML or JSON that refuses duplicate keys.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML/JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::from(i),
            Err(_) => Value::from(v as f64),
        })
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(match u64::try_from(v) {
            Ok(u) => Value::from(u),
            Err(_) => Value::from(v as f64),
        })
    }
    /// Non-finite floats (`.inf`, `.nan`) become null, as with `Value`.
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d).map(|v: StrictValue| v.0)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key '{key}' (a later value would silently replace the earlier one)"
                )));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Read a machine, agent, prompt or profile file: a regular file (a FIFO
/// would block the loader, a device could be endless) of at most
/// [`MAX_FILE_BYTES`], in UTF-8.
pub fn read_file_capped(path: &Path) -> Result<String, String> {
    use crate::fsx::{read_text_capped, CappedReadError};
    read_text_capped(path, MAX_FILE_BYTES).map_err(|e| match e {
        CappedReadError::TooLarge { .. } => too_large(MAX_FILE_BYTES),
        CappedReadError::NotRegular { kind } => {
            format!("cannot read file: not a regular file ({kind})")
        }
        CappedReadError::NotUtf8 => "file is not UTF-8".to_string(),
        CappedReadError::Io(e) => format!("cannot read file: {e}"),
    })
}

fn too_large(limit: u64) -> String {
    format!("file is too large (machine, agent, prompt, profile and input files may have at most {limit} bytes)")
}

/// serde_yaml appends " at line X column Y" to messages; we print the
/// location in front instead.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

struct Loader<'o> {
    opts: &'o LoadOptions,
    diags: Diagnostics,
    machines: Vec<MachineDef>,
    by_path: HashMap<PathBuf, usize>,
    catalogs: HashMap<PathBuf, Option<Arc<Catalog>>>,
    forced_catalog: Option<Arc<Catalog>>,
}

/// A document read from disk.
struct Doc {
    value: Value,
    dir: PathBuf,
    label: String,
}

impl Loader<'_> {
    fn read_doc(&mut self, path: &Path, label: &str) -> Option<Doc> {
        let text = match read_file_capped(path) {
            Ok(t) => t,
            Err(e) => {
                self.diags.error(label, None, e);
                return None;
            }
        };
        let value = parse_document(&text, path, label, &mut self.diags)?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Some(Doc {
            value,
            dir,
            label: label.to_string(),
        })
    }

    fn load_machine_file(&mut self, path: &Path, label: &str) -> Option<usize> {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(&idx) = self.by_path.get(&key) {
            return Some(idx);
        }
        let doc = self.read_doc(path, label)?;
        let idx = self.reserve(label);
        self.by_path.insert(key, idx);
        self.fill_machine(idx, &doc.value, &doc.dir, &doc.label)
            .map(|_| idx)
    }

    fn reserve(&mut self, label: &str) -> usize {
        self.machines.push(MachineDef {
            name: String::new(),
            file: label.to_string(),
            dir: String::new(),
            spec_version: None,
            context: Map::new(),
            agents: IndexMap::new(),
            machines: IndexMap::new(),
            states: IndexMap::new(),
            initial: String::new(),
            max_steps: DEFAULT_MAX_STEPS,
            persistence: Value::Null,
            lifecycle_hooks: Value::Null,
            metadata: Value::Null,
        });
        self.machines.len() - 1
    }

    /// Read the envelope and data of a machine into slot `idx`.
    fn fill_machine(&mut self, idx: usize, doc: &Value, dir: &Path, label: &str) -> Option<()> {
        let data = self.envelope(doc, "flatmachine", label)?;
        let spec_version = doc.get("spec_version").and_then(version_string);
        self.check_version(spec_version.as_deref(), label);

        let name = data
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("unnamed-machine")
            .to_string();
        let context = self
            .object_field(data, "context", label)
            .unwrap_or_default();
        let settings = self
            .object_field(data, "settings", label)
            .unwrap_or_default();
        let max_steps = match settings.get("max_steps") {
            None | Some(Value::Null) => DEFAULT_MAX_STEPS,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => n,
                _ => {
                    self.diags
                        .error(label, None, "settings.max_steps must be a positive integer");
                    DEFAULT_MAX_STEPS
                }
            },
        };
        if let Some(engine) = data.get("expression_engine").and_then(Value::as_str) {
            if engine != "simple" {
                self.diags.error(
                    label,
                    None,
                    format!("expression_engine '{engine}' is not supported (use 'simple')"),
                );
            }
        }

        let states = self.parse_states(data, label);
        let catalog = self.catalog_for(dir);
        let agent_results = self.load_agents(data, dir, label, catalog.as_ref());
        let machine_results = self.load_children(data, dir, label);

        let agents = self.report_refs(&states, label, agent_results, "agent", |s| {
            s.agent.iter().cloned().collect()
        });
        let machines = self.report_refs(&states, label, machine_results, "machine", |s| {
            s.machine
                .iter()
                .flat_map(|m| m.items())
                .map(|i| i.name().to_string())
                .collect()
        });

        let mut def = MachineDef {
            name,
            file: label.to_string(),
            dir: dir.display().to_string(),
            spec_version,
            context,
            agents,
            machines,
            states,
            initial: String::new(),
            max_steps,
            persistence: data.get("persistence").cloned().unwrap_or(Value::Null),
            lifecycle_hooks: data.get("lifecycle_hooks").cloned().unwrap_or(Value::Null),
            metadata: doc.get("metadata").cloned().unwrap_or(Value::Null),
        };
        let mut declared = std::collections::HashSet::new();
        for section in ["agents", "machines"] {
            if let Some(m) = data.get(section).and_then(Value::as_object) {
                declared.extend(m.keys().map(|k| format!("{section}.{k}")));
            }
        }
        let scope = validate::Scope {
            actions: &self.opts.actions,
            hooks: self.opts.hooks.as_deref(),
            declared,
        };
        validate::validate_machine(&mut def, &scope, &mut self.diags);
        self.machines[idx] = def;
        Some(())
    }

    /// Check `spec` and return `data`.
    fn envelope<'v>(
        &mut self,
        doc: &'v Value,
        spec: &str,
        label: &str,
    ) -> Option<&'v Map<String, Value>> {
        let Some(obj) = doc.as_object() else {
            self.diags.error(
                label,
                None,
                format!("expected a mapping with `spec: {spec}` and `data:`"),
            );
            return None;
        };
        match obj.get("spec").and_then(Value::as_str) {
            Some(s) if s == spec => {}
            Some(other) => {
                self.diags
                    .error(label, None, format!("spec is '{other}', expected '{spec}'"));
                return None;
            }
            None => {
                self.diags
                    .error(label, None, format!("missing `spec: {spec}`"));
                return None;
            }
        }
        match obj.get("data").and_then(Value::as_object) {
            Some(d) => Some(d),
            None => {
                self.diags.error(label, None, "missing `data:` mapping");
                None
            }
        }
    }

    /// The Python SDK loads a file of any spec version and only logs a
    /// warning when it differs from its own; a missing version silently
    /// means "current". This runner reads every file under 4.x rules, so an
    /// older file loads with one warning, and a file that really uses a
    /// pre-4 shape fails on that shape with the change to make (see
    /// `validate`). Only a version from a newer major (whose rules this
    /// runner cannot know) or one that is not a version at all is an error.
    fn check_version(&mut self, v: Option<&str>, label: &str) {
        let Some(v) = v else { return };
        match v.split('.').next().and_then(|m| m.trim().parse::<u64>().ok()) {
            Some(4) => {}
            Some(major) if major < 4 => self.diags.warn(
                label,
                None,
                format!(
                    "spec_version {v} predates 4.x; the file is read under 4.x rules (set spec_version: \"{CURRENT_SPEC_VERSION}\" once it runs as intended)"
                ),
            ),
            _ => self.diags.error(
                label,
                None,
                format!("spec_version {v} is not supported (major version must be 4, or older)"),
            ),
        }
    }

    fn object_field(
        &mut self,
        data: &Map<String, Value>,
        key: &str,
        label: &str,
    ) -> Option<Map<String, Value>> {
        match data.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => {
                self.diags
                    .error(label, None, format!("`{key}` must be a mapping"));
                None
            }
        }
    }

    fn parse_states(
        &mut self,
        data: &Map<String, Value>,
        label: &str,
    ) -> IndexMap<String, StateDef> {
        let mut states = IndexMap::new();
        let Some(raw) = data.get("states") else {
            self.diags.error(label, None, "no `states:` defined");
            return states;
        };
        let Some(raw) = raw.as_object() else {
            self.diags.error(
                label,
                None,
                "`states` must be a mapping of state name to definition",
            );
            return states;
        };
        for (name, v) in raw {
            let mut v = if v.is_null() {
                Value::Object(Map::new())
            } else {
                v.clone()
            };
            if let Value::Object(m) = &mut v {
                let unknown: Vec<String> = m
                    .keys()
                    .filter(|k| !STATE_KEYS.contains(&k.as_str()))
                    .cloned()
                    .collect();
                for k in unknown {
                    self.diags
                        .warn(label, Some(name), format!("unknown key '{k}' is ignored"));
                    m.remove(&k);
                }
            }
            match serde_json::from_value::<StateDef>(v) {
                Ok(s) => {
                    states.insert(name.clone(), s);
                }
                Err(e) => {
                    self.diags
                        .error(label, Some(name), format!("invalid state definition: {e}"));
                    states.insert(name.clone(), StateDef::default());
                }
            }
        }
        states
    }

    /// Emit problems of referenced agents/machines at the states using them,
    /// and keep the ones that loaded.
    fn report_refs<T>(
        &mut self,
        states: &IndexMap<String, StateDef>,
        label: &str,
        results: IndexMap<String, Result<T, String>>,
        what: &str,
        uses: impl Fn(&StateDef) -> Vec<String>,
    ) -> IndexMap<String, T> {
        let mut ok = IndexMap::new();
        for (name, r) in results {
            match r {
                Ok(v) => {
                    ok.insert(name, v);
                }
                Err(msg) => {
                    let user = states.iter().find(|(_, s)| uses(s).contains(&name));
                    let state = user.map(|(n, _)| n.as_str());
                    self.diags
                        .error(label, state, format!("{what} '{name}': {msg}"));
                }
            }
        }
        ok
    }

    fn load_children(
        &mut self,
        data: &Map<String, Value>,
        dir: &Path,
        label: &str,
    ) -> IndexMap<String, Result<usize, String>> {
        let mut out = IndexMap::new();
        let Some(refs) = data.get("machines").and_then(Value::as_object) else {
            return out;
        };
        for (name, r) in refs {
            let res = match r {
                Value::String(rel) => {
                    let path = dir.join(rel);
                    if !path.is_file() {
                        Err(format!(
                            "file {rel} not found (looked for {})",
                            path.display()
                        ))
                    } else {
                        self.load_machine_file(&path, &path.display().to_string())
                            .ok_or_else(|| format!("{} has errors", path.display()))
                    }
                }
                Value::Object(_) => {
                    let child_label = format!("{label}#machines.{name}");
                    let idx = self.reserve(&child_label);
                    self.fill_machine(idx, r, dir, &child_label)
                        .map(|_| idx)
                        .ok_or_else(|| "inline machine has errors".to_string())
                }
                _ => Err("must be a path or an inline `spec: flatmachine` mapping".into()),
            };
            out.insert(name.clone(), res);
        }
        out
    }

    fn load_agents(
        &mut self,
        data: &Map<String, Value>,
        dir: &Path,
        label: &str,
        catalog: Option<&Arc<Catalog>>,
    ) -> IndexMap<String, Result<AgentDef, String>> {
        let mut out = IndexMap::new();
        let Some(refs) = data.get("agents").and_then(Value::as_object) else {
            return out;
        };
        for (name, r) in refs {
            out.insert(name.clone(), self.load_agent(name, r, dir, label, catalog));
        }
        out
    }

    fn load_agent(
        &mut self,
        name: &str,
        r: &Value,
        dir: &Path,
        label: &str,
        catalog: Option<&Arc<Catalog>>,
    ) -> Result<AgentDef, String> {
        match r {
            Value::String(rel) => {
                let path = dir.join(rel);
                if !path.is_file() {
                    return Err(format!(
                        "agent file {rel} not found (looked for {})",
                        path.display()
                    ));
                }
                let plabel = path.display().to_string();
                let mut sub = Diagnostics::default();
                let text = read_file_capped(&path).map_err(|e| format!("{plabel}: {e}"))?;
                let doc = parse_document(&text, &path, &plabel, &mut sub);
                let Some(doc) = doc else {
                    self.diags.items.extend(sub.items);
                    return Err(format!("{plabel} does not parse"));
                };
                let adir = path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.to_path_buf());
                // An agent's profiles.yml is found from its own folder first.
                let own = self.catalog_for(&adir);
                let cat = own.as_ref().or(catalog);
                // Name the agent's own file: the error is reported at the
                // machine, which may hold many agents from many files.
                self.agent_from_doc(name, &doc, &adir, &plabel, cat)
                    .map_err(|e| format!("{e} (in {plabel})"))
            }
            Value::Object(obj) if obj.contains_key("spec") => {
                self.agent_from_doc(name, r, dir, label, catalog)
            }
            Value::Object(obj) if obj.contains_key("type") => {
                let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
                if kind != "flatagent" {
                    return Err(format!(
                        "agent type '{kind}' is not supported (only flatagent)"
                    ));
                }
                let base = match obj.get("ref").and_then(Value::as_str) {
                    Some(rel) => {
                        let mut def = self.load_agent(
                            name,
                            &Value::String(rel.to_string()),
                            dir,
                            label,
                            catalog,
                        )?;
                        if let Some(cfg) = obj.get("config").and_then(Value::as_object) {
                            for (k, v) in cfg {
                                def.model.insert(k.clone(), v.clone());
                            }
                        }
                        return Ok(def);
                    }
                    None => obj.get("config").cloned().unwrap_or(Value::Null),
                };
                self.agent_from_doc(name, &base, dir, label, catalog)
            }
            _ => Err(
                "must be a path to a flatagent file or an inline `spec: flatagent` mapping".into(),
            ),
        }
    }

    fn agent_from_doc(
        &mut self,
        name: &str,
        doc: &Value,
        dir: &Path,
        label: &str,
        catalog: Option<&Arc<Catalog>>,
    ) -> Result<AgentDef, String> {
        let obj = doc
            .as_object()
            .ok_or("agent definition must be a mapping")?;
        match obj.get("spec").and_then(Value::as_str) {
            Some("flatagent") => {}
            Some(other) => return Err(format!("spec is '{other}', expected 'flatagent'")),
            None => return Err("missing `spec: flatagent`".into()),
        }
        let data = obj
            .get("data")
            .and_then(Value::as_object)
            .ok_or("missing `data:` mapping")?;
        let mut prompt = match data.get("prompt") {
            Some(p) => self.load_prompt(p, dir)?,
            None => prompt_from_data(data).map_err(|e| format!("{e} (agent has no `prompt`)"))?,
        };
        // The SDK declares tools on the agent (`data.tools`).
        if prompt.tools.is_none() {
            prompt.tools = tools_from(data.get("tools"))?;
        }
        if let Err(e) = check_prompt(&prompt) {
            return Err(format!("prompt: {e}"));
        }
        let (profile_name, model) = self.resolve_model(data, catalog)?;
        check_model_numbers(&model).map_err(|e| format!("model: {e}"))?;
        let fallback = match model.get("fallback") {
            None | Some(Value::Null) => None,
            Some(Value::String(f)) => {
                let cat = catalog.ok_or_else(|| {
                    format!("fallback profile '{f}' needs a profiles.yml, and none was found")
                })?;
                let fb = cat.resolve(Some(f)).map_err(|e| format!("fallback: {e}"))?;
                check_model_numbers(&fb).map_err(|e| format!("fallback profile '{f}': {e}"))?;
                Some(FallbackProfile {
                    name: f.clone(),
                    model: fb,
                })
            }
            Some(_) => return Err("`fallback` must be a profile name".into()),
        };
        Ok(AgentDef {
            fallback,
            name: data
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string(),
            file: label.to_string(),
            prompt,
            profile_name,
            model,
            metadata: obj.get("metadata").cloned().unwrap_or(Value::Null),
        })
    }

    fn load_prompt(&mut self, p: &Value, dir: &Path) -> Result<PromptDef, String> {
        match p {
            Value::String(rel) => {
                let path = dir.join(rel);
                if !path.is_file() {
                    return Err(format!(
                        "prompt file {rel} not found (looked for {})",
                        path.display()
                    ));
                }
                let plabel = path.display().to_string();
                let text = read_file_capped(&path).map_err(|e| format!("{plabel}: {e}"))?;
                let mut sub = Diagnostics::default();
                let Some(doc) = parse_document(&text, &path, &plabel, &mut sub) else {
                    self.diags.items.extend(sub.items);
                    return Err(format!("{plabel} does not parse"));
                };
                prompt_from_value(&doc).map_err(|e| format!("{plabel}: {e}"))
            }
            Value::Object(_) => prompt_from_value(p),
            _ => Err("`prompt` must be a path or a mapping".into()),
        }
    }

    /// The agent's model config, resolved the way the Python SDK reads an
    /// agent file: `profile: NAME` and `model: NAME` (a string) both name a
    /// profile of the catalog — `model: fast` is the `fast` profile, never
    /// the literal model id `fast` — and `model: {profile: NAME, ...}` names
    /// one and overrides some of its fields. Deliberate differences from the
    /// SDK: a name the catalog does not define is an error instead of a
    /// warning and the default profile, and the default's fields do not leak
    /// into a named profile (see [`Catalog::resolve`]).
    fn resolve_model(
        &mut self,
        data: &Map<String, Value>,
        catalog: Option<&Arc<Catalog>>,
    ) -> Result<(Option<String>, Map<String, Value>), String> {
        let mut inline = Map::new();
        let mut wanted: Option<String> = None;
        let mut local_catalog: Option<Arc<Catalog>> = None;
        match data.get("profile") {
            None | Some(Value::Null) => {}
            Some(Value::String(n)) => wanted = Some(n.clone()),
            Some(v @ Value::Object(_)) => {
                let cat = Catalog::from_value(v, "inline profile")
                    .map_err(|e| format!("profile: {e}"))?;
                local_catalog = Some(Arc::new(cat));
            }
            Some(_) => {
                return Err("`profile` must be a profile name or an inline flatprofile".into())
            }
        }
        let mut named_by_model: Option<String> = None;
        match data.get("model") {
            None | Some(Value::Null) => {}
            Some(Value::String(m)) => named_by_model = Some(m.clone()),
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    if k == "profile" {
                        named_by_model = v.as_str().map(str::to_string);
                    } else if !v.is_null() {
                        // A null field overrides nothing, as in the SDK.
                        inline.insert(k.clone(), v.clone());
                    }
                }
            }
            Some(_) => return Err("`model` must be a profile name or a mapping".into()),
        }
        if let Some(m) = named_by_model {
            match &wanted {
                Some(p) if *p != m => {
                    return Err(format!(
                        "`profile: {p}` and `model: {m}` both name a profile; keep one"
                    ))
                }
                _ => wanted = Some(m),
            }
        }
        let cat = local_catalog.as_ref().or(catalog);
        let model = match (cat, &wanted) {
            (Some(cat), _) => cat.resolve_with(wanted.as_deref(), &inline)?,
            (None, Some(n)) => {
                return Err(format!(
                    "profile '{n}' requested but no profiles.yml was found beside the agent or in any parent folder (use --profiles PATH; for a literal model id write `model: {{provider: PROVIDER, name: {n}}}`)"
                ))
            }
            (None, None) => inline,
        };
        Ok((wanted, model))
    }

    /// The profile catalog for files in `dir`: `--profiles` if given, else
    /// the nearest `profiles.yml` walking up from `dir`.
    fn catalog_for(&mut self, dir: &Path) -> Option<Arc<Catalog>> {
        if let Some(c) = &self.forced_catalog {
            return Some(c.clone());
        }
        let start = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut cur: Option<&Path> = Some(start.as_path());
        while let Some(d) = cur {
            for name in ["profiles.yml", "profiles.yaml"] {
                let p = d.join(name);
                if p.is_file() {
                    if let Some(c) = self.catalogs.get(&p) {
                        return c.clone();
                    }
                    let label = p.display().to_string();
                    let c = self.load_catalog(&p, &label);
                    self.catalogs.insert(p, c.clone());
                    return c;
                }
            }
            cur = d.parent();
        }
        None
    }

    fn load_catalog(&mut self, path: &Path, label: &str) -> Option<Arc<Catalog>> {
        let doc = self.read_doc(path, label)?;
        match Catalog::from_value(&doc.value, label) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                self.diags.error(label, None, e);
                None
            }
        }
    }
}

fn version_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A prompt from a `spec: prompt` document or an inline mapping.
fn prompt_from_value(v: &Value) -> Result<PromptDef, String> {
    let obj = v.as_object().ok_or("prompt must be a mapping")?;
    let data = match obj.get("spec").and_then(Value::as_str) {
        Some("prompt") => obj
            .get("data")
            .and_then(Value::as_object)
            .ok_or("prompt has no `data:` mapping")?,
        Some(other) => return Err(format!("spec is '{other}', expected 'prompt'")),
        None => obj,
    };
    prompt_from_data(data)
}

fn prompt_from_data(data: &Map<String, Value>) -> Result<PromptDef, String> {
    let text = |k: &str| -> Result<Option<String>, String> {
        match data.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    };
    let user = text("user")?.ok_or("prompt has no `user` template")?;
    let output = match data.get("output") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err("`output` must be a mapping of field name to schema".into()),
    };
    Ok(PromptDef {
        system: text("system")?,
        user,
        instruction_suffix: text("instruction_suffix")?,
        output,
        tools: tools_from(data.get("tools"))?,
    })
}

/// A `tools:` list in the OpenAI function format (the shorthand
/// `{name, description, parameters}` is wrapped into it).
fn tools_from(v: Option<&Value>) -> Result<Option<Vec<Value>>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("`tools` must be a list of tool definitions".into()),
    };
    let mut out = Vec::new();
    for t in items {
        let f = match (t.get("function"), t.get("name")) {
            (Some(f), _) => f.clone(),
            (None, Some(_)) => t.clone(),
            _ => {
                return Err(format!(
                    "a tool needs `function: {{name, ...}}` or `name`: {t}"
                ))
            }
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            return Err(format!("a tool has no name: {t}"));
        }
        if out
            .iter()
            .any(|o: &Value| o["function"]["name"].as_str() == Some(name))
        {
            return Err(format!("tool '{name}' is declared twice"));
        }
        out.push(serde_json::json!({"type": "function", "function": f}));
    }
    Ok(Some(out))
}

/// Range-check the numbers of a resolved model config that become a
/// `Duration` or a count at call time.
fn check_model_numbers(model: &Map<String, Value>) -> Result<(), String> {
    match model.get("timeout") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            super::limits::check_secs("`timeout`", n.as_f64().unwrap_or(f64::NAN))?;
        }
        Some(other) => {
            return Err(format!(
                "`timeout` must be a number of seconds, got {other}"
            ))
        }
    }
    match model.get("max_tokens") {
        None | Some(Value::Null) => {}
        Some(v)
            if v.as_u64()
                .is_some_and(|n| n > 0 && n <= u64::from(u32::MAX)) => {}
        Some(other) => {
            return Err(format!(
                "`max_tokens` must be a whole number from 1 to {}, got {other}",
                u32::MAX
            ))
        }
    }
    Ok(())
}

fn check_prompt(p: &PromptDef) -> Result<(), String> {
    use crate::expr::Templates;
    for (what, t) in [
        ("system", p.system.as_deref()),
        ("user", Some(p.user.as_str())),
        ("instruction_suffix", p.instruction_suffix.as_deref()),
    ] {
        if let Some(t) = t {
            Templates::check_text(t).map_err(|e| format!("{what}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod hardening_tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn parse(text: &str, name: &str) -> (Option<Value>, Vec<String>) {
        let mut d = Diagnostics::default();
        let v = parse_document(text, Path::new(name), name, &mut d);
        (v, d.items.iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn deep_brackets_fail_fast_with_location() {
        for text in ["[".repeat(200_000), "{a: ".repeat(50_000)] {
            let t = Instant::now();
            let (v, errs) = parse(&text, "deep.yml");
            assert!(v.is_none());
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(
                errs[0].starts_with("deep.yml:1:")
                    && errs[0].contains(": YAML syntax error: nesting deeper than 64 levels"),
                "{errs:?}"
            );
        }
        let (v, errs) = parse(&"[".repeat(200_000), "deep.json");
        assert!(v.is_none());
        assert!(
            errs[0].contains("JSON syntax error: nesting deeper"),
            "{errs:?}"
        );
    }

    #[test]
    fn moderate_nesting_and_balanced_brackets_in_text_are_fine() {
        let nested = format!("x: {}1{}", "[".repeat(60), "]".repeat(60));
        assert!(parse(&nested, "ok.yml").0.is_some());
        // Thousands of balanced brackets in a template are text, not depth.
        let prompt = format!("user: |\n  {}\n", "{{ input.x }} [a] ".repeat(5_000));
        assert!(parse(&prompt, "p.yml").0.is_some());
    }

    #[test]
    fn duplicate_keys_are_errors_at_every_level() {
        let cases = [
            ("a: 1\na: 2\n", "duplicate key 'a'"),
            (
                "data:\n  context:\n    x: 1\n    x: 2\n",
                "duplicate key 'x'",
            ),
            (
                "data:\n  states:\n    s: {type: initial}\n    s: {type: final}\n",
                "duplicate key 's'",
            ),
            ("l: [{k: 1, k: 2}]\n", "duplicate key 'k'"),
        ];
        for (text, want) in cases {
            let (v, errs) = parse(text, "dup.yml");
            assert!(v.is_none(), "{text}");
            assert!(
                errs.iter()
                    .any(|e| e.starts_with("dup.yml:") && e.contains(want)),
                "{text}: {errs:?}"
            );
        }
        let (v, errs) = parse(r#"{"a": {"b": 1, "b": 2}}"#, "dup.json");
        assert!(v.is_none());
        assert!(errs[0].contains("duplicate key 'b'"), "{errs:?}");
    }

    #[test]
    fn values_keep_their_types() {
        let (v, _) = parse(
            "a: 1\nb: -2\nc: 1.5\nd: .inf\ne: null\nf: [x, true]\ng: 99999999999999999999999\n1: k\n",
            "t.yml",
        );
        let v = v.unwrap();
        assert_eq!(v["a"], serde_json::json!(1));
        assert_eq!(v["b"], serde_json::json!(-2));
        assert_eq!(v["c"], serde_json::json!(1.5));
        assert_eq!(v["d"], Value::Null);
        assert_eq!(v["e"], Value::Null);
        assert_eq!(v["f"], serde_json::json!(["x", true]));
        assert!(v["g"].is_number());
        assert_eq!(v["1"], serde_json::json!("k"));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let t = Instant::now();
        let (v, errs) = parse(&text, "bomb.yml");
        assert!(v.is_none(), "an alias bomb must not expand");
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(errs[0].contains("YAML syntax error"), "{errs:?}");
    }

    #[test]
    fn reads_are_capped_and_need_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yml");
        std::fs::write(&big, vec![b'#'; (MAX_FILE_BYTES + 1) as usize]).unwrap();
        let e = read_file_capped(&big).unwrap_err();
        assert!(e.contains("file is too large"), "{e}");
        let e = read_file_capped(dir.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo.yml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_file_capped(&fifo).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let e = read_file_capped(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, [0xff, 0xfe]).unwrap();
        assert!(read_file_capped(&bad).unwrap_err().contains("not UTF-8"));
    }
}
