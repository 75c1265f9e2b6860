//! Template rendering with minijinja, with the typing rules of our format:
//!
//! * a string that is exactly a bare path (`context.x.y`, `input.x`,
//!   `output.x`) is looked up and keeps its native JSON type (missing → null);
//! * a string that is a single `{{ expr }}` evaluates the expression and keeps
//!   its type (the Python reference stringifies here, which turns `8` into
//!   `"8"` and `false` into the truthy `"False"`);
//! * anything else renders to a string, printing lists and maps as Python's
//!   `json.dumps` would and booleans/null as `True`/`False`/`None`, as the
//!   reference's machine runtime does.
//!
//! Agent prompts are different ([`Templates::render_prompt`]): the reference
//! renders them with a plain Jinja2 environment, which prints every value
//! with Python's `str()` (`[1, 'a']`, `{'k': 'v'}`), normalises line endings
//! and drops one trailing newline of every prompt, templated or not.
//!
//! Undefined variables are errors (minijinja's semi-strict mode): a typo in a
//! template must not silently become an empty string in a paid prompt.
//! `default(...)`, `is defined` and `{% if x %}` still work on undefined values.

use super::{pyjson, pyrepr};
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value as MjValue};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};

/// Instructions one template render (or one `{{ expr }}` evaluation) may
/// execute. Why: a loop in a machine file (or over a huge list from a
/// paper) must end; real prompts use a few thousand.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// Largest result of one template, in bytes: rendered text, or a typed
/// value as JSON. Prompts carry a paper's whole text, so the cap sits above
/// any text a model's context window could take (4 MiB ≈ 1M tokens).
pub const MAX_TEMPLATE_OUTPUT: usize = 4 * 1024 * 1024;

/// A template that failed to parse or to render.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?} does not parse: {message}")]
    Syntax { template: String, message: String },
    #[error("template {template:?}: {message}")]
    Render { template: String, message: String },
    /// The result would be larger than [`MAX_TEMPLATE_OUTPUT`].
    #[error("template {template:?}: output is larger than {limit} bytes")]
    TooLarge { template: String, limit: usize },
}

impl TemplateError {
    /// True when the template's result was over its size cap (the engine
    /// reports `output_too_large` rather than `template_error`).
    pub fn is_too_large(&self) -> bool {
        matches!(self, TemplateError::TooLarge { .. })
    }
}

/// An `io::Write` that keeps at most `limit` bytes and fails past it, so a
/// render stops as soon as its output is too large instead of after
/// building all of it.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl CappedWriter {
    fn new(limit: usize) -> CappedWriter {
        CappedWriter {
            buf: Vec::new(),
            limit,
            overflowed: false,
        }
    }
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("template output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A minijinja value as JSON, serialised through a [`CappedWriter`]: a lazy
/// sequence such as `[1] * 1000000000` is cut off at the cap instead of
/// being materialised. `Err(None)` = over the cap.
fn bounded_json(value: &MjValue, limit: usize) -> Result<Value, Option<String>> {
    let mut w = CappedWriter::new(limit);
    match serde_json::to_writer(&mut w, value) {
        Ok(()) => serde_json::from_slice(&w.buf).map_err(|e| Some(e.to_string())),
        Err(_) if w.overflowed => Err(None),
        Err(e) => Err(Some(e.to_string())),
    }
}

/// How a string in a machine file is interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape<'a> {
    /// No template markers: the string itself.
    Literal,
    /// `context.a.b` style path: root name and keys.
    BarePath(&'a str, Vec<&'a str>),
    /// Exactly one `{{ expr }}`: the inner expression source.
    Expression(&'a str),
    /// General Jinja text.
    Text,
}

/// Roots that make a bare string a path (the reference's rule).
const PATH_ROOTS: [&str; 3] = ["context", "input", "output"];

/// Decide how `s` is interpreted (see module docs).
pub fn shape(s: &str) -> Shape<'_> {
    shape_with(s, &[])
}

/// [`shape`], with extra bare-path roots (e.g. a `foreach` item variable).
pub fn shape_with<'a>(s: &'a str, extra_roots: &[String]) -> Shape<'a> {
    let has_markers = s.contains("{{") || s.contains("{%") || s.contains("{#");
    if !has_markers {
        return match bare_path(s, extra_roots) {
            Some((root, keys)) => Shape::BarePath(root, keys),
            None => Shape::Literal,
        };
    }
    let t = s.trim();
    if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        let inner = inner.strip_prefix('-').unwrap_or(inner);
        let inner = inner.strip_suffix('-').unwrap_or(inner);
        let nested = inner.contains("{{")
            || inner.contains("}}")
            || inner.contains("{%")
            || inner.contains("%}")
            || inner.contains("{#");
        if !nested && !inner.trim().is_empty() {
            return Shape::Expression(inner.trim());
        }
    }
    Shape::Text
}

fn bare_path<'a>(s: &'a str, extra_roots: &[String]) -> Option<(&'a str, Vec<&'a str>)> {
    let mut parts = s.split('.');
    let root = parts.next()?;
    if !PATH_ROOTS.contains(&root) && !extra_roots.iter().any(|r| r == root) {
        return None;
    }
    let keys: Vec<&str> = parts.collect();
    keys.iter()
        .all(|k| is_identifier(k))
        .then_some((root, keys))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Look up `root.keys...` in `vars`; any missing step yields null.
pub fn lookup_path(vars: &Map<String, Value>, root: &str, keys: &[&str]) -> Value {
    let mut cur = match vars.get(root) {
        Some(v) => v,
        None => return Value::Null,
    };
    for k in keys {
        match cur.get(k) {
            Some(v) => cur = v,
            None => return Value::Null,
        }
    }
    cur.clone()
}

/// Variables for rendering: the JSON map (for bare paths) and, built on first
/// use, its minijinja form, so one batch of templates converts the context once.
pub struct Vars {
    map: Map<String, Value>,
    mj: OnceLock<MjValue>,
    extra_roots: Vec<String>,
}

impl Vars {
    pub fn new(map: Map<String, Value>) -> Vars {
        Vars {
            map,
            mj: OnceLock::new(),
            extra_roots: Vec::new(),
        }
    }

    /// Also treat `name.x.y` as a bare path (for `foreach` item variables,
    /// which the reference only reaches through `{{ }}`).
    pub fn with_path_root(mut self, name: &str) -> Vars {
        self.extra_roots.push(name.to_string());
        self
    }

    /// Convenience: build from `(name, value)` pairs.
    pub fn from_pairs<const N: usize>(pairs: [(&str, Value); N]) -> Vars {
        Vars::new(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn json(&self) -> &Map<String, Value> {
        &self.map
    }

    /// Variables for an agent prompt: `input` (the state's rendered
    /// `input:`) and `model` (see [`prompt_model`]).
    ///
    /// `input_spec` is the state's `input:` as written. Where one of its
    /// values is a single `{{ expr }}` that gave a list or a map, the
    /// reference had already turned it into JSON text before the prompt saw
    /// it; such values keep their type here (loops, `length` and keys work)
    /// but print as that JSON text, so the prompt reads as it does there.
    pub fn for_prompt(
        input_spec: Option<&Map<String, Value>>,
        input: Map<String, Value>,
        model: Map<String, Value>,
    ) -> Vars {
        let mj_input = match input_spec {
            Some(spec) => marked_map(spec, &input),
            None => MjValue::from_serialize(&input),
        };
        let mj = MjValue::from_iter([
            ("input", mj_input),
            ("model", MjValue::from_serialize(&model)),
        ]);
        let mut map = Map::new();
        map.insert("input".into(), Value::Object(input));
        map.insert("model".into(), Value::Object(model));
        Vars {
            map,
            mj: OnceLock::from(mj),
            extra_roots: Vec::new(),
        }
    }

    fn mj(&self) -> MjValue {
        self.mj
            .get_or_init(|| MjValue::from_serialize(&self.map))
            .clone()
    }
}

/// The process-wide template environment (filters, formatter, strictness).
pub struct Templates;

impl Templates {
    fn env() -> &'static Environment<'static> {
        static ENV: OnceLock<Environment<'static>> = OnceLock::new();
        ENV.get_or_init(|| build_env(Flavor::Machine))
    }

    fn prompt_env() -> &'static Environment<'static> {
        static ENV: OnceLock<Environment<'static>> = OnceLock::new();
        ENV.get_or_init(|| build_env(Flavor::Prompt))
    }

    /// Render agent prompt text as the reference's agent runtime does (a
    /// plain Jinja2 environment): values print with Python's `str()`
    /// (`[1, 'a']`, `{'k': 'v'}`, `None`, `True`, `1.0`), `\r\n` and `\r`
    /// become `\n`, and one trailing newline is dropped, also from text with
    /// no template syntax at all. Undefined variables stay errors.
    pub fn render_prompt(s: &str, vars: &Vars) -> Result<String, TemplateError> {
        let normalized = normalize_newlines(s);
        let src = normalized.as_ref();
        if !has_markers(src) {
            return Ok(src.strip_suffix('\n').unwrap_or(src).to_string());
        }
        render_with(Self::prompt_env(), src, vars)
    }

    /// Render a value: strings per [`shape`], maps and lists recursively,
    /// everything else unchanged.
    pub fn render(value: &Value, vars: &Vars) -> Result<Value, TemplateError> {
        match value {
            Value::String(s) => Self::render_str(s, vars),
            Value::Array(items) => items
                .iter()
                .map(|v| Self::render(v, vars))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => Self::render_map(map, vars).map(Value::Object),
            other => Ok(other.clone()),
        }
    }

    /// Render every value of a map (keys are kept as written).
    pub fn render_map(
        map: &Map<String, Value>,
        vars: &Vars,
    ) -> Result<Map<String, Value>, TemplateError> {
        let mut out = Map::with_capacity(map.len());
        for (k, v) in map {
            out.insert(k.clone(), Self::render(v, vars)?);
        }
        Ok(out)
    }

    /// Render one string per [`shape`].
    pub fn render_str(s: &str, vars: &Vars) -> Result<Value, TemplateError> {
        match shape_with(s, &vars.extra_roots) {
            Shape::Literal => Ok(Value::String(s.to_string())),
            Shape::BarePath(root, keys) => Ok(lookup_path(vars.json(), root, &keys)),
            Shape::Expression(expr) => Self::eval_expression(s, expr, vars),
            Shape::Text => Self::render_text(s, vars).map(Value::String),
        }
    }

    /// Render `s` as Jinja text, always producing a string (used for prompts).
    pub fn render_text(s: &str, vars: &Vars) -> Result<String, TemplateError> {
        if !has_markers(s) {
            return Ok(s.to_string());
        }
        render_with(Self::env(), s, vars)
    }

    fn eval_expression(src: &str, expr: &str, vars: &Vars) -> Result<Value, TemplateError> {
        let env = Self::env();
        let compiled = env.compile_expression(expr).map_err(|e| syntax(src, &e))?;
        let v = compiled.eval(vars.mj()).map_err(|e| render_err(src, &e))?;
        if v.is_undefined() {
            return Err(TemplateError::Render {
                template: excerpt(src),
                message: format!("'{expr}' is undefined"),
            });
        }
        bounded_json(&v, MAX_TEMPLATE_OUTPUT).map_err(|e| match e {
            None => too_large(src),
            Some(e) => TemplateError::Render {
                template: excerpt(src),
                message: format!("result is not JSON-representable: {e}"),
            },
        })
    }

    /// Check that a string parses (without rendering it).
    pub fn check_str(s: &str) -> Result<(), TemplateError> {
        let env = Self::env();
        match shape(s) {
            Shape::Literal | Shape::BarePath(..) => Ok(()),
            Shape::Expression(expr) => env
                .compile_expression(expr)
                .map(|_| ())
                .map_err(|e| syntax(s, &e)),
            Shape::Text => env
                .template_from_str(s)
                .map(|_| ())
                .map_err(|e| syntax(s, &e)),
        }
    }

    /// Check a string as prompt text (always Jinja, never a typed path).
    pub fn check_text(s: &str) -> Result<(), TemplateError> {
        Self::env()
            .template_from_str(s)
            .map(|_| ())
            .map_err(|e| syntax(s, &e))
    }

    /// Check every string inside a value; returns all problems.
    pub fn check(value: &Value) -> Vec<TemplateError> {
        let mut errs = Vec::new();
        check_into(value, &mut errs);
        errs
    }
}

fn has_markers(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// Jinja2 turns every `\r\n` and `\r` of a template's source into `\n`.
fn normalize_newlines(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\r') {
        std::borrow::Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn render_with(env: &Environment<'static>, s: &str, vars: &Vars) -> Result<String, TemplateError> {
    let tmpl = env.template_from_str(s).map_err(|e| syntax(s, &e))?;
    let mut out = CappedWriter::new(MAX_TEMPLATE_OUTPUT);
    match tmpl.render_captured_to(vars.mj(), &mut out) {
        Ok(_) => {}
        Err(e) if out.overflowed || is_oversize(&e) => return Err(too_large(s)),
        Err(e) => return Err(render_err(s, &e)),
    }
    String::from_utf8(out.buf).map_err(|e| TemplateError::Render {
        template: excerpt(s),
        message: format!("output is not UTF-8: {e}"),
    })
}

/// What the reference's prompt templates see as `model`: the resolved model
/// config, with `name` as the model id it calls (`provider/name` unless the
/// name already holds `provider/` or `provider:`) and the sampling keys
/// always present (`None` when unset), in the reference's key order.
pub fn prompt_model(config: &Map<String, Value>) -> Map<String, Value> {
    let mut m = config.clone();
    let provider = config.get("provider").and_then(Value::as_str);
    let name = config.get("name").and_then(Value::as_str);
    if let (Some(p), Some(n)) = (provider, name) {
        if !p.is_empty()
            && !n.is_empty()
            && !n.contains(&format!("{p}/"))
            && !n.contains(&format!("{p}:"))
        {
            m.insert("name".into(), Value::String(format!("{p}/{n}")));
        }
    }
    if !m.contains_key("name") {
        m.insert("name".into(), Value::Null);
    }
    for key in [
        "temperature",
        "max_tokens",
        "top_p",
        "top_k",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "base_url",
    ] {
        if !m.contains_key(key) {
            m.insert(key.into(), Value::Null);
        }
    }
    m
}

/// A list or map that prints as JSON text in a prompt (see
/// [`Vars::for_prompt`]) but otherwise behaves as the value it holds.
#[derive(Debug)]
struct JsonPrinted {
    inner: MjValue,
    json: Value,
}

impl Object for JsonPrinted {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.json {
            Value::Object(_) => ObjectRepr::Map,
            _ => ObjectRepr::Seq,
        }
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        self.inner.get_item(key).ok().filter(|v| !v.is_undefined())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match &self.json {
            Value::Object(map) => {
                Enumerator::Values(map.keys().map(|k| MjValue::from(k.as_str())).collect())
            }
            Value::Array(items) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }
}

/// `value` for a prompt, with the lists and maps that came from a single
/// `{{ expr }}` in `spec` wrapped in [`JsonPrinted`].
fn marked(spec: &Value, value: &Value) -> MjValue {
    match (spec, value) {
        (Value::String(s), Value::Array(_) | Value::Object(_))
            if matches!(shape(s), Shape::Expression(_)) =>
        {
            MjValue::from_object(JsonPrinted {
                inner: MjValue::from_serialize(value),
                json: value.clone(),
            })
        }
        (Value::Object(spec), Value::Object(map)) => marked_map(spec, map),
        (Value::Array(specs), Value::Array(items)) if specs.len() == items.len() => specs
            .iter()
            .zip(items)
            .map(|(s, v)| marked(s, v))
            .collect::<Vec<_>>()
            .into(),
        _ => MjValue::from_serialize(value),
    }
}

fn marked_map(spec: &Map<String, Value>, map: &Map<String, Value>) -> MjValue {
    MjValue::from_iter(map.iter().map(|(k, v)| {
        let v = match spec.get(k) {
            Some(s) => marked(s, v),
            None => MjValue::from_serialize(v),
        };
        (k.clone(), v)
    }))
}

fn check_into(value: &Value, errs: &mut Vec<TemplateError>) {
    match value {
        Value::String(s) => {
            if let Err(e) = Templates::check_str(s) {
                errs.push(e);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| check_into(v, errs)),
        Value::Object(map) => map.values().for_each(|v| check_into(v, errs)),
        _ => {}
    }
}

/// Shorten a template for an error message.
fn excerpt(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.kind().to_string();
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (line {line})"));
    }
    msg
}

/// The source [`to_json`] attaches to its error for a value over the cap,
/// so the render can tell it apart by type.
#[derive(Debug, thiserror::Error)]
#[error("value is larger than {MAX_TEMPLATE_OUTPUT} bytes as JSON")]
struct Oversize;

/// Whether `e` is (or wraps) the error [`to_json`] raises for a value over
/// the cap.
fn is_oversize(e: &minijinja::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<Oversize>() {
            return true;
        }
        cause = c.source();
    }
    false
}

fn too_large(src: &str) -> TemplateError {
    TemplateError::TooLarge {
        template: excerpt(src),
        limit: MAX_TEMPLATE_OUTPUT,
    }
}

fn syntax(src: &str, e: &minijinja::Error) -> TemplateError {
    TemplateError::Syntax {
        template: excerpt(src),
        message: describe(e),
    }
}

fn render_err(src: &str, e: &minijinja::Error) -> TemplateError {
    let message = match e.kind() {
        ErrorKind::UndefinedError => format!("{} (an undefined variable or key)", describe(e)),
        ErrorKind::OutOfFuel => format!(
            "{} (more than {TEMPLATE_FUEL} steps: an endless or very long loop?)",
            describe(e)
        ),
        _ => describe(e),
    };
    TemplateError::Render {
        template: excerpt(src),
        message,
    }
}

/// Which of the reference's two Jinja environments a template follows.
#[derive(Clone, Copy)]
enum Flavor {
    /// The machine runtime's: lists and maps print as `json.dumps`.
    Machine,
    /// The agent runtime's plain environment: values print with `str()`,
    /// and `tojson` sorts keys (Jinja2's default policy).
    Prompt,
}

fn build_env(flavor: Flavor) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("fromjson", fromjson);
    env.add_filter("truncate", truncate);
    match flavor {
        Flavor::Machine => {
            env.set_formatter(format_value);
            env.add_filter("tojson", tojson);
        }
        Flavor::Prompt => {
            env.set_formatter(format_prompt_value);
            env.add_filter("tojson", tojson_sorted);
            env.add_filter("join", py_join);
            env.add_filter("string", |v: &MjValue| py_str(v));
        }
    }
    env
}

/// Print values as Jinja2 does by default: with Python's `str()`.
fn format_prompt_value(
    out: &mut minijinja::Output,
    _state: &minijinja::State,
    value: &MjValue,
) -> Result<(), minijinja::Error> {
    let text = py_str(value)?;
    out.write_str(&text)
        .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "could not write output"))
}

/// Python's `str()` of a template value.
fn py_str(value: &MjValue) -> Result<String, minijinja::Error> {
    use minijinja::value::ValueKind;
    if let Some(j) = value.downcast_object_ref::<JsonPrinted>() {
        return Ok(pyjson::dumps(&j.json, None));
    }
    Ok(match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_string(),
        ValueKind::None => "None".to_string(),
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => pyrepr::float_repr(f),
            Err(_) => value.to_string(),
        },
        // Through JSON, as in `format_value`: a lazy sequence is cut off at
        // the size cap instead of being walked to its end.
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => pyrepr::repr(&to_json(value)?),
        _ => value.to_string(),
    })
}

/// Jinja2's `join(d='', attribute=None)`: items printed with `str()`.
fn py_join(value: &MjValue, d: Option<String>, kwargs: Kwargs) -> Result<String, minijinja::Error> {
    let sep = match d {
        Some(d) => d,
        None => kwargs.get::<Option<String>>("d")?.unwrap_or_default(),
    };
    let attribute = kwargs.get::<Option<String>>("attribute")?;
    kwargs.assert_all_used()?;
    if value.is_undefined() || value.is_none() {
        return Ok(String::new());
    }
    if let Some(s) = value.as_str() {
        return Ok(s.chars().map(String::from).collect::<Vec<_>>().join(&sep));
    }
    let mut out = String::new();
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        let item = match &attribute {
            Some(a) => a
                .split('.')
                .try_fold(item, |v, part| match part.parse::<i64>() {
                    Ok(i) => v.get_item(&MjValue::from(i)),
                    Err(_) => v.get_attr(part),
                })?,
            None => item,
        };
        out.push_str(&py_str(&item)?);
        if out.len() > MAX_TEMPLATE_OUTPUT {
            return Err(
                minijinja::Error::new(ErrorKind::WriteFailure, Oversize.to_string())
                    .with_source(Oversize),
            );
        }
    }
    Ok(out)
}

/// Print values the way the Python reference's finalize does.
fn format_value(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &MjValue,
) -> Result<(), minijinja::Error> {
    use minijinja::value::ValueKind;
    let text = match value.kind() {
        ValueKind::Bool => Some(if value.is_true() { "True" } else { "False" }.to_string()),
        ValueKind::None => Some("None".to_string()),
        // Iterables too: minijinja's own printing of a lazy sequence
        // (`[1] * 1000000000`) walks every item even after the output
        // writer has refused more; the JSON conversion stops at the cap.
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            Some(pyjson::dumps(&to_json(value)?, None))
        }
        _ => None,
    };
    match text {
        Some(t) => out
            .write_str(&t)
            .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "could not write output")),
        None => minijinja::escape_formatter(out, state, value),
    }
}

fn to_json(value: &MjValue) -> Result<Value, minijinja::Error> {
    bounded_json(value, MAX_TEMPLATE_OUTPUT).map_err(|e| match e {
        // The render's own writer would refuse it anyway: say why.
        None => minijinja::Error::new(ErrorKind::WriteFailure, Oversize.to_string())
            .with_source(Oversize),
        Some(e) => minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("value is not JSON-representable: {e}"),
        ),
    })
}

/// Jinja2's `tojson`: Python-style JSON with HTML-sensitive characters escaped.
fn tojson(value: &MjValue, indent: Option<usize>) -> Result<MjValue, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(
            ErrorKind::UndefinedError,
            "tojson of an undefined value",
        ));
    }
    let s = pyjson::dumps(&to_json(value)?, indent)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\'', "\\u0027");
    Ok(MjValue::from_safe_string(s))
}

/// Jinja2's default `tojson`, as the reference's prompts get it: keys
/// sorted (`json.dumps_kwargs = {"sort_keys": True}`), HTML-sensitive
/// characters escaped.
fn tojson_sorted(value: &MjValue, indent: Option<usize>) -> Result<MjValue, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(
            ErrorKind::UndefinedError,
            "tojson of an undefined value",
        ));
    }
    let s = pyjson::dumps(&sort_keys(to_json(value)?), indent)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\'', "\\u0027");
    Ok(MjValue::from_safe_string(s))
}

fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Parse a JSON string into a value (the reference's extra filter).
fn fromjson(s: &str) -> Result<MjValue, minijinja::Error> {
    let v: Value = serde_json::from_str(s).map_err(|e| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("fromjson: {e}"))
    })?;
    Ok(MjValue::from_serialize(&v))
}

/// Jinja2's `truncate(length=255, killwords=False, end='...', leeway=5)`;
/// each argument may also be given by keyword.
fn truncate(
    s: &str,
    length: Option<usize>,
    killwords: Option<bool>,
    end: Option<String>,
    kwargs: Kwargs,
) -> Result<String, minijinja::Error> {
    let length = match length {
        Some(l) => l,
        None => kwargs.get::<Option<usize>>("length")?.unwrap_or(255),
    };
    let killwords = match killwords {
        Some(k) => k,
        None => kwargs.get::<Option<bool>>("killwords")?.unwrap_or(false),
    };
    let end = match end {
        Some(e) => e,
        None => kwargs
            .get::<Option<String>>("end")?
            .unwrap_or_else(|| "...".into()),
    };
    // minijinja functions take at most five arguments: leeway is keyword-only.
    let leeway = kwargs.get::<Option<usize>>("leeway")?.unwrap_or(5);
    kwargs.assert_all_used()?;
    Ok(truncate_text(s, length, killwords, &end, leeway))
}

fn truncate_text(s: &str, length: usize, killwords: bool, end: &str, leeway: usize) -> String {
    let count = s.chars().count();
    if count <= length + leeway {
        return s.to_string();
    }
    let keep = length.saturating_sub(end.chars().count());
    let head: String = s.chars().take(keep).collect();
    if killwords {
        return head + end;
    }
    let cut = match head.rfind(' ') {
        Some(i) => &head[..i],
        None => head.as_str(),
    };
    format!("{cut}{end}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        let v = json!({
            "context": {"score": 8, "ok": false, "items": [1, 2, 3], "name": "Ada",
                         "nested": {"k": "v"}, "blob": "{\"a\": 1}", "nothing": null},
            "input": {"x": 1},
            "output": {"text": "hello world"}
        });
        match v {
            Value::Object(m) => Vars::new(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(
            shape("context.a.b"),
            Shape::BarePath("context", vec!["a", "b"])
        );
        assert_eq!(shape("context"), Shape::BarePath("context", vec![]));
        assert_eq!(shape("foo.bar"), Shape::Literal);
        assert_eq!(shape("context.a-b"), Shape::Literal);
        assert_eq!(shape("{{ context.a }}"), Shape::Expression("context.a"));
        assert_eq!(
            shape(" {{- context.a -}}\n"),
            Shape::Expression("context.a")
        );
        assert_eq!(shape("{{ a }} and {{ b }}"), Shape::Text);
        assert_eq!(shape("x {{ a }}"), Shape::Text);
    }

    #[test]
    fn bare_paths_keep_types_and_missing_is_null() {
        let v = vars();
        assert_eq!(Templates::render_str("context.score", &v), Ok(json!(8)));
        assert_eq!(
            Templates::render_str("context.items", &v),
            Ok(json!([1, 2, 3]))
        );
        assert_eq!(
            Templates::render_str("context.missing.x", &v),
            Ok(Value::Null)
        );
    }

    #[test]
    fn single_expressions_are_typed() {
        let v = vars();
        assert_eq!(
            Templates::render_str("{{ context.score }}", &v),
            Ok(json!(8))
        );
        assert_eq!(
            Templates::render_str("{{ context.ok }}", &v),
            Ok(json!(false))
        );
        assert_eq!(
            Templates::render_str("{{ context.score + 1 }}", &v),
            Ok(json!(9))
        );
        assert_eq!(
            Templates::render_str("{{ context.items }}", &v),
            Ok(json!([1, 2, 3]))
        );
        assert_eq!(
            Templates::render_str("{{ context.nothing }}", &v),
            Ok(Value::Null)
        );
        assert_eq!(
            Templates::render_str("{{ context.blob | fromjson }}", &v),
            Ok(json!({"a": 1}))
        );
        assert_eq!(
            Templates::render_str("{{ context.items | length }}", &v),
            Ok(json!(3))
        );
    }

    #[test]
    fn text_prints_like_python() {
        let v = vars();
        let r = Templates::render_str("s={{ context.score }} ok={{ context.ok }} n={{ context.nothing }} l={{ context.items }} m={{ context.nested }}", &v);
        assert_eq!(
            r,
            Ok(json!("s=8 ok=False n=None l=[1, 2, 3] m={\"k\": \"v\"}"))
        );
    }

    #[test]
    fn filters() {
        let v = vars();
        let t = |s: &str| Templates::render_text(s, &v);
        assert_eq!(
            t("{{ context.nested | tojson }}").as_deref(),
            Ok("{\"k\": \"v\"}")
        );
        assert_eq!(
            t("{{ '<a>' | tojson }}").as_deref(),
            Ok("\"\\u003ca\\u003e\"")
        );
        assert_eq!(
            t("{{ context.missing | default('d') }}").as_deref(),
            Ok("d")
        );
        assert_eq!(t("{{ context.items | join(',') }}").as_deref(), Ok("1,2,3"));
        assert_eq!(
            t("{{ context.name | lower }}{{ context.name | upper }}").as_deref(),
            Ok("adaADA")
        );
        assert_eq!(t("{{ '  x ' | trim }}").as_deref(), Ok("x"));
        assert_eq!(
            t("{{ output.text | replace('world', 'there') }}").as_deref(),
            Ok("hello there")
        );
        assert_eq!(
            t("{{ context.items | first }}{{ context.items | last }}").as_deref(),
            Ok("13")
        );
        assert_eq!(
            t("{{ 'hello brave new world' | truncate(12, leeway=0) }}").as_deref(),
            Ok("hello...")
        );
        assert_eq!(
            t("{{ 'hello brave new world' | truncate(12, true, leeway=0) }}").as_deref(),
            Ok("hello bra...")
        );
        assert_eq!(t("{{ 'short' | truncate(12) }}").as_deref(), Ok("short"));
        assert_eq!(
            t("{% if context.missing %}y{% else %}n{% endif %}").as_deref(),
            Ok("n")
        );
    }

    #[test]
    fn undefined_is_an_error() {
        let v = vars();
        assert!(matches!(
            Templates::render_str("{{ context.missing }}", &v),
            Err(TemplateError::Render { .. })
        ));
        assert!(matches!(
            Templates::render_str("x {{ nope }}", &v),
            Err(TemplateError::Render { .. })
        ));
        assert!(Templates::render_str("{{ context.missing.deeper }}", &v).is_err());
    }

    #[test]
    fn syntax_errors_are_reported_by_check() {
        assert!(Templates::check_str("{{ context.x ").is_err());
        assert!(matches!(
            Templates::check_str("{{ context.x + }}"),
            Err(TemplateError::Syntax { .. })
        ));
        assert!(matches!(
            Templates::check_str("a {% if x %} b"),
            Err(TemplateError::Syntax { .. })
        ));
        assert!(Templates::check(&json!({"a": ["{{ ok }}", "{{ bad( }}"]})).len() == 1);
    }

    #[test]
    fn render_recurses() {
        let v = vars();
        let r = Templates::render(
            &json!({"a": ["context.score", {"b": "{{ input.x }}"}], "c": 1}),
            &v,
        );
        assert_eq!(r, Ok(json!({"a": [8, {"b": 1}], "c": 1})));
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, Instant};

    fn vars() -> Vars {
        Vars::from_pairs([("context", json!({"s": "abc", "n": 3}))])
    }

    #[test]
    fn endless_loops_run_out_of_fuel() {
        let loops = [
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
            "{% for x in [1] * 1000000000 %}{% endfor %}",
        ];
        for t in loops {
            let started = Instant::now();
            let e = Templates::render_text(t, &vars()).unwrap_err();
            assert!(!e.is_too_large(), "{e}");
            assert!(matches!(e, TemplateError::Render { .. }), "{e}");
            assert!(started.elapsed() < Duration::from_secs(10), "{t}");
        }
        let e = Templates::render_text(loops[0], &vars()).unwrap_err();
        assert!(e.to_string().contains("fuel"), "{e}");
    }

    #[test]
    fn huge_output_is_refused() {
        let cases = [
            // A loop writing 1 KiB a time.
            "{% for i in range(100000) %}{{ 'x' * 1024 }}{% endfor %}",
            // One giant value printed as text.
            "big: {{ 'x' * 50000000 }}",
            // A lazy sequence printed as JSON text.
            "{{ [1, 2, 3] * 1000000000 }} tail",
            "{{ ([1, 2, 3] * 1000000000) | tojson }} tail",
        ];
        for t in cases {
            let e = Templates::render_text(t, &vars()).unwrap_err();
            assert!(e.is_too_large(), "{t}: {e}");
        }
        // Typed single expressions: the JSON value is capped as well.
        for t in ["{{ [1, 2] * 1000000000 }}", "{{ 'y' * 50000000 }}"] {
            let e = Templates::render_str(t, &vars()).unwrap_err();
            assert!(e.is_too_large(), "{t}: {e}");
        }
    }

    #[test]
    fn ordinary_templates_still_render() {
        let v = vars();
        assert_eq!(
            Templates::render_text("{% for i in range(3) %}{{ context.s }}{% endfor %}", &v)
                .unwrap(),
            "abcabcabc"
        );
        let big = "x".repeat(MAX_TEMPLATE_OUTPUT - 10);
        let v = Vars::from_pairs([("context", json!({ "t": big }))]);
        assert_eq!(
            Templates::render_text("{{ context.t }}", &v).unwrap().len(),
            MAX_TEMPLATE_OUTPUT - 10
        );
        assert_eq!(
            Templates::render_str("{{ [1, 2] * 2 }}", &vars()).unwrap(),
            json!([1, 2, 1, 2])
        );
    }
}

#[cfg(test)]
mod prompt_tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn vars() -> Vars {
        Vars::for_prompt(
            None,
            obj(
                json!({"l": [1, "a", null, true, 2.0], "m": {"k": "v", "b": [1.5]},
                       "f": 0.5, "big": 1e16, "yes": false, "s": "it's"}),
            ),
            prompt_model(&obj(json!({"provider": "openai", "name": "gpt-4o"}))),
        )
    }

    fn p(s: &str) -> String {
        Templates::render_prompt(s, &vars()).unwrap()
    }

    #[test]
    fn values_print_like_python_str() {
        assert_eq!(p("{{ input.l }}"), "[1, 'a', None, True, 2.0]");
        assert_eq!(p("{{ input.m }}"), "{'k': 'v', 'b': [1.5]}");
        assert_eq!(
            p("{{ input.f }} {{ input.big }} {{ input.yes }}"),
            "0.5 1e+16 False"
        );
        assert_eq!(p("{{ input.s }} {{ [input.s] }}"), "it's [\"it's\"]");
        assert_eq!(p("{{ input.l | join('-') }}"), "1-a-None-True-2.0");
        assert_eq!(p("{{ input.l | string }}"), "[1, 'a', None, True, 2.0]");
        assert_eq!(p("{{ 'abc' | join('.') }}"), "a.b.c");
        assert_eq!(p("{{ 4 / 2 }} {{ 7 // 2 }}"), "2.0 3");
        // Jinja2's default tojson sorts keys.
        assert_eq!(p("{{ input.m | tojson }}"), "{\"b\": [1.5], \"k\": \"v\"}");
    }

    #[test]
    fn one_trailing_newline_is_dropped_and_line_ends_normalised() {
        assert_eq!(p("plain\n"), "plain");
        assert_eq!(p("plain\n\n"), "plain\n");
        assert_eq!(p("plain"), "plain");
        assert_eq!(p("{{ input.s }}\n"), "it's");
        assert_eq!(p("a\r\nb\rc\r\n"), "a\nb\nc");
        assert_eq!(p("{{ input.s }}\r\n\r\n"), "it's\n");
        // Machine-level text keeps literals as written.
        assert_eq!(
            Templates::render_str("plain\n", &vars()),
            Ok(json!("plain\n"))
        );
    }

    #[test]
    fn model_shows_the_called_id_and_every_sampling_key() {
        assert_eq!(p("{{ model.name }}"), "openai/gpt-4o");
        assert_eq!(p("{{ model.temperature }} {{ model.seed }}"), "None None");
        let m = |name: &str| {
            prompt_model(&obj(json!({"provider": "openrouter", "name": name})))["name"].clone()
        };
        assert_eq!(m("meta/llama"), json!("openrouter/meta/llama"));
        assert_eq!(m("openrouter/meta/llama"), json!("openrouter/meta/llama"));
        assert_eq!(m("x-openrouter:llama"), json!("x-openrouter:llama"));
        let keys: Vec<String> = prompt_model(&obj(json!({"provider": "p", "temperature": 0.1})))
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "provider",
                "temperature",
                "name",
                "max_tokens",
                "top_p",
                "top_k",
                "frequency_penalty",
                "presence_penalty",
                "seed",
                "base_url"
            ]
        );
    }

    #[test]
    fn expression_inputs_print_as_the_json_text_the_sdk_made_of_them() {
        let spec = obj(json!({"a": "{{ context.l }}", "b": "context.l",
                              "n": {"m": "{{ context.m }}"}}));
        let input = obj(json!({"a": [1, "x"], "b": [1, "x"], "n": {"m": {"k": [true]}}}));
        let v = Vars::for_prompt(Some(&spec), input, Map::new());
        let r = |s: &str| Templates::render_prompt(s, &v).unwrap();
        assert_eq!(r("{{ input.a }} | {{ input.b }}"), "[1, \"x\"] | [1, 'x']");
        assert_eq!(r("{{ input.n.m }}"), "{\"k\": [true]}");
        // They still behave as the list or map they hold.
        assert_eq!(
            r("{{ input.a | length }} {% for x in input.a %}<{{ x }}>{% endfor %} {{ input.a[1] }}"),
            "2 <1><x> x"
        );
        assert_eq!(
            r("{% for k in input.n.m %}{{ k }}={{ input.n.m[k] }}{% endfor %} {{ input.n.m.k }}"),
            "k=[True] [True]"
        );
    }

    #[test]
    fn undefined_stays_an_error_in_prompts() {
        assert!(Templates::render_prompt("{{ input.nope }}", &vars()).is_err());
        assert_eq!(p("{{ input.nope | default('d') }}"), "d");
    }

    #[test]
    fn maps_keep_their_order_in_machine_templates_too() {
        let v = Vars::from_pairs([("context", json!({"m": {"z": 1, "a": 2}}))]);
        assert_eq!(
            Templates::render_str("m={{ context.m }}", &v),
            Ok(json!("m={\"z\": 1, \"a\": 2}"))
        );
        let typed = Templates::render_str("{{ context.m }}", &v).unwrap();
        let keys: Vec<&String> = typed.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["z", "a"]);
    }
}
