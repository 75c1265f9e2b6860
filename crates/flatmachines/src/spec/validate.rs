//! Graph and reference validation of one loaded machine.
//!
//! The Python reference validates nothing: an unknown `to:` ends the machine
//! silently with `{}`. Here every reference is checked before anything runs,
//! and each problem names the file and the state.

use super::diag::Diagnostics;
use super::hooks::parse_hook_refs;
use super::limits::{check_secs, MAX_BACKOFFS, MAX_SAMPLES};
use super::model::{MachineDef, OnError, StateDef, ERROR_KINDS};
use crate::expr::{CachedCondition, Templates};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};

/// Python exception class names accepted as `on_error` keys for
/// compatibility with files written for the reference.
const PYTHON_ERROR_KEYS: &[&str] = &["RetryableError", "RuntimeError", "Exception", "ValueError"];

/// What the validator needs besides the machine itself.
pub struct Scope<'a> {
    /// Action names the runtime provides.
    pub actions: &'a [String],
    /// Names in the hooks registry; `None` when no registry was given.
    pub hooks: Option<&'a [String]>,
    /// Every agent/machine name the file declares, including ones that failed
    /// to load (those were reported already; they are not "unknown").
    pub declared: HashSet<String>,
}

/// Validate `def`, set `def.initial`, and record problems.
pub fn validate_machine(def: &mut MachineDef, scope: &Scope<'_>, diags: &mut Diagnostics) {
    let file = def.file.clone();
    if def.states.is_empty() {
        diags.error(&file, None, "machine has no states");
        return;
    }
    def.initial = find_initial(def, diags);
    check_context(def, diags);
    for (name, state) in &def.states {
        check_state(def, name, state, scope, diags);
    }
    check_reachability(def, diags);
    check_hooks(def, diags);
    check_event_hooks(&file, None, &def.lifecycle_hooks, scope, diags);
}

fn find_initial(def: &MachineDef, diags: &mut Diagnostics) -> String {
    let initials: Vec<&String> = def
        .states
        .iter()
        .filter(|(_, s)| s.is_initial())
        .map(|(n, _)| n)
        .collect();
    match initials.as_slice() {
        [one] => (*one).clone(),
        [] if def.states.contains_key("start") => {
            diags.warn(
                &def.file,
                Some("start"),
                "no state is marked `type: initial`; using 'start' as the reference does",
            );
            "start".to_string()
        }
        [] => {
            diags.error(
                &def.file,
                None,
                "no initial state (mark exactly one state with `type: initial`)",
            );
            String::new()
        }
        many => {
            let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
            diags.error(
                &def.file,
                None,
                format!(
                    "more than one initial state: {} (exactly one may have `type: initial`)",
                    names.join(", ")
                ),
            );
            names[0].to_string()
        }
    }
}

fn check_context(def: &MachineDef, diags: &mut Diagnostics) {
    for e in Templates::check(&Value::Object(def.context.clone())) {
        diags.error(&def.file, None, format!("context: {e}"));
    }
}

fn check_state(
    def: &MachineDef,
    name: &str,
    s: &StateDef,
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
) {
    let file = def.file.as_str();
    let st = Some(name);
    if let Some(kind) = &s.kind {
        if kind != "initial" && kind != "final" {
            diags.error(
                file,
                st,
                format!("type '{kind}' is not valid (use 'initial' or 'final')"),
            );
        }
    }
    if s.is_final() && !s.transitions.is_empty() {
        diags.error(file, st, "a final state cannot have transitions");
    }
    if !s.is_final() && s.transitions.is_empty() {
        diags.warn(
            file,
            st,
            "not final and has no transitions: finishing it is a no_transition error",
        );
    }
    for (i, t) in s.transitions.iter().enumerate() {
        if !def.states.contains_key(&t.to) {
            diags.error(
                file,
                st,
                format!("transition {} targets unknown state '{}'", i + 1, t.to),
            );
        }
        if let Some(c) = &t.condition {
            check_condition(file, name, c, diags);
        }
    }
    // `timeout: 0` is the SDK's "no timeout" (the default applies).
    if let Some(t) = s.timeout.filter(|t| t.secs() != 0.0) {
        if let Err(e) = check_secs("timeout", t.secs()) {
            diags.error(file, st, e);
        }
    }
    check_on_error(def, name, s, diags);
    check_refs(def, name, s, scope, diags);
    check_execution(file, name, s, diags);
    check_templates(file, name, s, diags);
    check_shell_script(file, name, s, diags);
    check_unsupported(file, name, s, diags);
    if let Some(h) = &s.hooks {
        check_event_hooks(file, Some(name), h, scope, diags);
    }
}

/// With a registry, a named hook it has no handler for gets its events
/// skipped at run time: say so (custom actions are checked separately).
fn check_event_hooks(
    file: &str,
    state: Option<&str>,
    refs: &Value,
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
) {
    let (Some(registry), Ok(refs)) = (scope.hooks, parse_hook_refs(refs)) else {
        return;
    };
    for r in refs {
        if !registry.contains(&r.name) {
            diags.warn(
                file,
                state,
                format!(
                    "hook '{}' has no handler in the hooks registry: its events are not delivered",
                    r.name
                ),
            );
        }
    }
}

/// Parses through the condition's cache, so the engine later evaluates this
/// very parse instead of parsing again on every transition.
fn check_condition(file: &str, state: &str, cond: &CachedCondition, diags: &mut Diagnostics) {
    let src = cond.source();
    match cond.compiled() {
        Err(e) => diags.error(
            file,
            Some(state),
            format!("condition '{src}' does not parse: {e}"),
        ),
        Ok(c) => {
            for root in c.root_names() {
                if root != "context" {
                    diags.error(
                        file,
                        Some(state),
                        format!("condition '{src}' uses unknown name '{root}' (conditions can use: context)"),
                    );
                }
            }
        }
    }
}

fn check_on_error(def: &MachineDef, name: &str, s: &StateDef, diags: &mut Diagnostics) {
    let Some(on_error) = &s.on_error else { return };
    for target in on_error.targets() {
        if !def.states.contains_key(target) {
            diags.error(
                &def.file,
                Some(name),
                format!("on_error targets unknown state '{target}'"),
            );
        }
    }
    if let OnError::ByKind(map) = on_error {
        for key in map.keys() {
            let known = key == "default"
                || ERROR_KINDS.contains(&key.as_str())
                || PYTHON_ERROR_KEYS.contains(&key.as_str());
            if !known {
                diags.error(
                    &def.file,
                    Some(name),
                    format!(
                        "on_error key '{key}' is not an error kind (known: default, {})",
                        ERROR_KINDS.join(", ")
                    ),
                );
            }
        }
    }
}

fn check_refs(
    def: &MachineDef,
    name: &str,
    s: &StateDef,
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
) {
    let actions = scope.actions;
    let file = def.file.as_str();
    let st = Some(name);
    if let Some(a) = &s.agent {
        if !def.agents.contains_key(a) && !scope.declared.contains(&format!("agents.{a}")) {
            match pre4_file_ref(a) {
                Some(key) => diags.error(file, st, pre4_ref_fix("agent", "agents", a, &key)),
                None => diags.error(
                    file,
                    st,
                    format!("unknown agent '{a}'{}", known_list(def.agents.keys())),
                ),
            }
        }
    }
    if let Some(m) = &s.machine {
        for item in m.items() {
            let n = item.name();
            if !def.machines.contains_key(n) && !scope.declared.contains(&format!("machines.{n}")) {
                match pre4_file_ref(n) {
                    Some(key) => {
                        diags.error(file, st, pre4_ref_fix("machine", "machines", n, &key))
                    }
                    None => diags.error(
                        file,
                        st,
                        format!("unknown machine '{n}'{}", known_list(def.machines.keys())),
                    ),
                }
            }
            if let Some(input) = item.input() {
                for e in Templates::check(&Value::Object(input.clone())) {
                    diags.error(file, st, format!("machine '{n}' input: {e}"));
                }
            }
        }
    }
    if s.foreach.is_some() && s.machine.is_none() {
        diags.error(file, st, "`foreach` needs a `machine` to run for each item");
    }
    if let Some(l) = &s.launch {
        match super::model::launch_names(l) {
            Err(e) => diags.error(file, st, e),
            Ok(names) => {
                for n in names {
                    if !def.machines.contains_key(&n)
                        && !scope.declared.contains(&format!("machines.{n}"))
                    {
                        diags.error(
                            file,
                            st,
                            format!(
                                "launch: unknown machine '{n}'{}",
                                known_list(def.machines.keys())
                            ),
                        );
                    }
                }
            }
        }
    }
    match &s.launch_input {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            if s.launch.is_none() {
                diags.error(file, st, "`launch_input` without `launch`");
            }
            for e in Templates::check(&Value::Object(m.clone())) {
                diags.error(file, st, format!("launch_input: {e}"));
            }
        }
        Some(_) => diags.error(file, st, "`launch_input` must be a mapping"),
    }
    if let Some(w) = &s.wait_for {
        if !w.is_string() {
            diags.error(
                file,
                st,
                "`wait_for` is a signal name (a string, may be a template)",
            );
        }
    }
    if let Some(mode) = &s.mode {
        if mode != "settled" && mode != "any" {
            diags.error(
                file,
                st,
                format!("mode '{mode}' is not valid (use 'settled' or 'any')"),
            );
        }
    }
    if let Some(a) = &s.action {
        if !actions.iter().any(|k| k == a) {
            check_hook_action(def, name, s, a, scope, diags);
        }
        if a == "shell" && s.command.is_none() {
            diags.error(file, st, "action 'shell' needs `command: [argv...]`");
        }
    }
}

fn known_list<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = keys.map(String::as_str).collect();
    if names.is_empty() {
        " (none are defined)".to_string()
    } else {
        format!(" (known: {})", names.join(", "))
    }
}

fn check_execution(file: &str, name: &str, s: &StateDef, diags: &mut Diagnostics) {
    let Some(ex) = &s.execution else { return };
    match ex.kind.as_deref() {
        None | Some("default") | Some("retry") | Some("parallel") | Some("mdap_voting") => {}
        Some(other) => diags.error(
            file,
            Some(name),
            format!(
                "execution type '{other}' is not supported (use default, retry, parallel or mdap_voting)"
            ),
        ),
    }
    for key in ["k_margin", "max_candidates", "max_response_tokens"] {
        match ex.extra.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let limit = super::limits::MAX_CANDIDATES;
                let ok = v
                    .as_u64()
                    .is_some_and(|n| n >= 1 && (key == "max_response_tokens" || n <= limit));
                if !ok {
                    diags.error(
                        file,
                        Some(name),
                        format!(
                            "execution.{key} must be a whole number from 1 to {limit}, got {v}"
                        ),
                    );
                }
            }
        }
    }
    if let Some(b) = &ex.backoffs {
        // 0 is allowed here (retry at once); a timeout of 0 is not.
        if let Some(x) = b
            .iter()
            .map(|x| x.secs())
            .find(|x| !x.is_finite() || *x < 0.0 || *x > super::limits::MAX_DURATION_SECS)
        {
            diags.error(
                file,
                Some(name),
                format!(
                    "execution.backoffs must be non-negative seconds, at most {} (24 h), got {x}",
                    super::limits::MAX_DURATION_SECS
                ),
            );
        }
        if b.len() > MAX_BACKOFFS {
            diags.error(
                file,
                Some(name),
                format!(
                    "execution.backoffs has {} entries; at most {MAX_BACKOFFS} retries are allowed",
                    b.len()
                ),
            );
        }
    }
    if let Some(j) = ex.jitter {
        if !(0.0..=1.0).contains(&j) {
            diags.error(file, Some(name), "execution.jitter must be between 0 and 1");
        }
    }
    match ex.n_samples {
        Some(0) => diags.error(file, Some(name), "execution.n_samples must be at least 1"),
        Some(n) if n > MAX_SAMPLES => diags.error(
            file,
            Some(name),
            format!("execution.n_samples is {n}; at most {MAX_SAMPLES} samples are allowed"),
        ),
        _ => {}
    }
}

fn check_templates(file: &str, name: &str, s: &StateDef, diags: &mut Diagnostics) {
    let mut report = |what: &str, v: &Value| {
        for e in Templates::check(v) {
            diags.error(file, Some(name), format!("{what}: {e}"));
        }
    };
    if let Some(i) = &s.input {
        report("input", &Value::Object(i.clone()));
    }
    if let Some(o) = &s.output_to_context {
        report("output_to_context", &Value::Object(o.clone()));
    }
    if let Some(o) = &s.output {
        report("output", o);
    }
    if let Some(f) = &s.foreach {
        report("foreach", &Value::String(f.clone()));
    }
    if let Some(k) = &s.key {
        report("key", &Value::String(k.clone()));
    }
    if let Some(super::model::Command::Argv(argv)) = &s.command {
        report(
            "command",
            &Value::Array(argv.iter().cloned().map(Value::String).collect()),
        );
    }
    if let Some(a) = &s.as_name {
        let ok = a
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && a.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !ok {
            diags.error(file, Some(name), format!("`as: {a}` must be an identifier"));
        }
    }
}

/// POSIX shells whose `-c` argument is a script (as the shell action
/// sees them).
const SHELLS: [&str; 7] = ["sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"];

/// The shell action's script in `command:`, if any: the string form, or
/// the argument after `-c` in a list that starts with a POSIX shell. The
/// same rule as the action's, so `check` refuses exactly what a run would.
fn shell_script(c: &super::model::Command) -> Option<&str> {
    use super::model::Command;
    match c {
        Command::Line(l) => Some(l),
        Command::Argv(argv) => {
            let prog = std::path::Path::new(argv.first()?).file_name()?.to_str()?;
            if !SHELLS.contains(&prog) {
                return None;
            }
            for (i, a) in argv.iter().enumerate().skip(1) {
                let opts = a.strip_prefix('-')?;
                if opts.is_empty()
                    || opts.starts_with('-')
                    || !opts.chars().all(|c| c.is_ascii_alphabetic())
                {
                    return None;
                }
                if opts.contains('c') {
                    return argv.get(i + 1).map(String::as_str);
                }
            }
            None
        }
    }
}

/// Problems the shell action would raise (`template_error`) when it turns
/// a script's `{{ }}` values into variable references: an unclosed `{{` or
/// `{#`, a bad expression, and any `{% %}` block — a block's output would
/// be shell code, which is exactly what the action refuses to build.
/// Scans as the action does: `\{{` escapes are skipped, and text inside
/// `{{ }}` or `{# #}` is not looked at for blocks.
pub fn shell_script_problems(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut quote: Option<char> = None;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("{{") {
            let Some(end) = after.find("}}") else {
                out.push("a `{{` has no closing `}}`".to_string());
                break;
            };
            let inner = &after[..end];
            let inner = inner.strip_prefix('-').unwrap_or(inner);
            let inner = inner.strip_suffix('-').unwrap_or(inner);
            for e in Templates::check(&Value::String(format!("{{{{ {inner} }}}}"))) {
                out.push(e.to_string());
            }
            rest = &after[end + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("{#") {
            let Some(end) = after.find("#}") else {
                out.push("a `{#` comment has no closing `#}`".to_string());
                break;
            };
            rest = &after[end + 2..];
            continue;
        }
        if rest.starts_with("{%") {
            out.push(
                "`{% %}` blocks are not allowed in a shell script (their output would be shell code); \
                 use `{{ expr }}` values, or the list form of `command`"
                    .to_string(),
            );
            break;
        }
        let Some(c) = rest.chars().next() else { break };
        rest = &rest[c.len_utf8()..];
        // Quote state as the action tracks it: `\` escapes only outside
        // single quotes.
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if q == c => quote = None,
            (None | Some('"'), '\\') => {
                // `\{{ x }}` is a literal backslash, then the value.
                let value_next = rest.starts_with("{{") || rest.starts_with("{#");
                if !value_next {
                    if let Some(n) = rest.chars().next() {
                        rest = &rest[n.len_utf8()..];
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn check_shell_script(file: &str, name: &str, s: &StateDef, diags: &mut Diagnostics) {
    let Some(script) = s.command.as_ref().and_then(shell_script) else {
        return;
    };
    for e in shell_script_problems(script) {
        diags.error(file, Some(name), format!("command: {e}"));
    }
}

fn check_unsupported(file: &str, name: &str, s: &StateDef, diags: &mut Diagnostics) {
    match super::tool_loop::LoopConfig::parse(s.tool_loop.as_ref()) {
        Err(e) => diags.error(file, Some(name), e),
        Ok(Some(_)) if s.agent.is_none() => diags.error(
            file,
            Some(name),
            "`tool_loop` needs an `agent` to call the tools",
        ),
        Ok(_) => {}
    }
    if let Some(h) = &s.hooks {
        if let Err(e) = parse_hook_refs(h) {
            diags.error(file, Some(name), format!("hooks: {e}"));
        }
    }
}

/// A custom action (no native action has its name): the hooks the state
/// names (else the machine's `lifecycle_hooks`) implement it at run time.
/// With a registry, each of those hooks must have a handler; without one,
/// the action can only be resolved when the machine runs, so it is a
/// warning, and reaching the state without a handler is an `action_error`.
fn check_hook_action(
    def: &MachineDef,
    name: &str,
    s: &StateDef,
    action: &str,
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
) {
    let file = def.file.as_str();
    let st = Some(name);
    let own = s
        .hooks
        .as_ref()
        .and_then(|h| parse_hook_refs(h).ok())
        .unwrap_or_default();
    let refs = if own.is_empty() {
        parse_hook_refs(&def.lifecycle_hooks).unwrap_or_default()
    } else {
        own
    };
    if refs.is_empty() {
        diags.error(
            file,
            st,
            format!(
                "unknown action '{action}' (known: {}; or name the hooks that implement it with `hooks:`)",
                scope.actions.join(", ")
            ),
        );
        return;
    }
    let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    match scope.hooks {
        Some(registry) => {
            for n in names.iter().filter(|n| !registry.iter().any(|k| k == *n)) {
                let known = if registry.is_empty() {
                    "it is empty".to_string()
                } else {
                    format!("it has: {}", registry.join(", "))
                };
                diags.error(
                    file,
                    st,
                    format!(
                        "action '{action}' needs hook '{n}', which the hooks registry has no handler for ({known})"
                    ),
                );
            }
        }
        None => diags.warn(
            file,
            st,
            format!(
                "action '{action}' is not built in; hook {} must implement it, and no hooks registry was given \
                 (`--hooks {}=cmd:PATH`): a run fails with action_error if it reaches this state",
                names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "),
                names[0]
            ),
        ),
    }
}

fn check_reachability(def: &MachineDef, diags: &mut Diagnostics) {
    if !def.states.contains_key(&def.initial) {
        return;
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue = VecDeque::from([def.initial.as_str()]);
    while let Some(n) = queue.pop_front() {
        if !seen.insert(n) {
            continue;
        }
        let Some(s) = def.states.get(n) else { continue };
        for t in &s.transitions {
            queue.push_back(t.to.as_str());
        }
        if let Some(oe) = &s.on_error {
            queue.extend(oe.targets());
        }
    }
    for name in def.states.keys() {
        if !seen.contains(name.as_str()) {
            diags.warn(&def.file, Some(name), "unreachable from the initial state");
        }
    }
    if !def.states.values().any(StateDef::is_final) {
        diags.warn(
            &def.file,
            None,
            "no final state: the machine can never finish",
        );
    }
}

/// When a state's `agent:`/`machine:` value that names nothing declared
/// looks like a file path (the pre-4 shape `agent: reviewer.yml`, where a
/// state pointed at a file directly), the key to declare it under instead.
fn pre4_file_ref(value: &str) -> Option<String> {
    let is_path = value.contains('/')
        || [".yml", ".yaml", ".json"]
            .iter()
            .any(|ext| value.ends_with(ext));
    if !is_path {
        return None;
    }
    let base = value.rsplit('/').next().unwrap_or(value);
    let stem = base
        .strip_suffix(".yml")
        .or_else(|| base.strip_suffix(".yaml"))
        .or_else(|| base.strip_suffix(".json"))
        .unwrap_or(base);
    Some(if stem.is_empty() { "name" } else { stem }.to_string())
}

/// The error for a pre-4 file reference in a state, with the change to make.
fn pre4_ref_fix(what: &str, section: &str, value: &str, key: &str) -> String {
    let article = if what == "agent" { "an" } else { "a" };
    format!(
        "`{what}: {value}` names a file, a shape from before spec 4: a state names {article} {what} declared under `data.{section}` — add `{section}: {{{key}: {value}}}` to data and write `{what}: {key}`",
    )
}

fn check_hooks(def: &MachineDef, diags: &mut Diagnostics) {
    if let Err(e) = parse_hook_refs(&def.lifecycle_hooks) {
        diags.error(&def.file, None, format!("lifecycle_hooks: {e}"));
    }
}

/// Bundle-wide checks of `machine:` references, run once every machine is
/// loaded: no machine may reach itself (directly, a↔b, or a longer cycle,
/// through lists and `foreach` too), and no chain of nested machines may be
/// deeper than the engine's nesting limit. Recursion has no base case a
/// machine file can express safely: at run time it only ends at the
/// engine's limits, after starting up to a thousand child executions.
pub fn validate_bundle(machines: &[MachineDef], root: usize, diags: &mut Diagnostics) {
    // Edges: machine index → (state name, child index), in file order.
    let edges: Vec<Vec<(&str, usize)>> = machines
        .iter()
        .map(|def| {
            let mut out = Vec::new();
            for (sname, s) in &def.states {
                let mut names: Vec<String> = Vec::new();
                if let Some(target) = &s.machine {
                    names.extend(target.items().iter().map(|i| i.name().to_string()));
                }
                if let Some(l) = &s.launch {
                    names.extend(super::model::launch_names(l).unwrap_or_default());
                }
                for n in &names {
                    if let Some(&child) = def.machines.get(n) {
                        if child < machines.len() {
                            out.push((sname.as_str(), child));
                        }
                    }
                }
            }
            out
        })
        .collect();
    let mut reported: HashSet<Vec<usize>> = HashSet::new();
    for cycle in find_cycles(&edges) {
        // One report per cycle, whichever machine it was found from.
        let mut key: Vec<usize> = cycle.iter().map(|(m, _)| *m).collect();
        key.sort_unstable();
        if !reported.insert(key) {
            continue;
        }
        let path: Vec<String> = cycle
            .iter()
            .map(|(m, st)| format!("{} state '{st}'", machines[*m].file))
            .chain(std::iter::once(machines[cycle[0].0].file.clone()))
            .collect();
        for (m, st) in &cycle {
            diags.error(
                &machines[*m].file,
                Some(st),
                format!(
                    "machine '{}' can reach itself through `machine:` references ({}); recursive machines are not allowed",
                    machines[*m].name,
                    path.join(" → ")
                ),
            );
        }
    }
    if reported.is_empty() && root < machines.len() {
        check_depth(machines, &edges, root, diags);
    }
}

/// Every agent's resolved model config, and its fallback's, must be one
/// the host's client accepts (`check`; paper-runner's is
/// `ModelProfile::check_config`: a name, a base URL, `timeout`,
/// `max_response_bytes`, `max_retry_after` and `rate_limit` in range). Without this a profile with `timeout: 1e20` or
/// `max_response_bytes: 0` passed `check` and start-up and failed only
/// when a paper reached that agent. Each problem is reported once per
/// profile, on the profile catalog it came from (`forced_catalog` is
/// `--profiles`), naming the profile and the first agent that uses it.
pub fn check_profiles(
    machines: &[MachineDef],
    forced_catalog: Option<&std::path::Path>,
    check: super::load::ModelCheck,
    diags: &mut Diagnostics,
) {
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    for m in machines {
        for (key, a) in &m.agents {
            let mut configs = vec![(a.profile_name.as_deref(), &a.model, "")];
            if let Some(fb) = &a.fallback {
                configs.push((Some(fb.name.as_str()), &fb.model, " (its fallback)"));
            }
            for (profile, model, role) in configs {
                let Err(message) = check(model) else {
                    continue;
                };
                let catalog = catalog_file(&a.file, forced_catalog);
                let what = match (profile, &catalog) {
                    (Some(n), _) => format!("profile '{n}'"),
                    (None, Some(_)) => "the default profile".to_string(),
                    (None, None) => "the model config".to_string(),
                };
                let file = catalog.unwrap_or_else(|| a.file.clone());
                if !seen.insert((file.clone(), what.clone(), message.clone())) {
                    continue;
                }
                diags.error(
                    &file,
                    None,
                    format!(
                        "{what}{role} used by agent '{key}' ({}) is invalid: {}",
                        a.file, message
                    ),
                );
            }
        }
    }
}

/// The profile catalog an agent defined in `agent_file` resolves against:
/// `--profiles` if given, else the nearest `profiles.yml`/`profiles.yaml`
/// walking up from the agent's folder (as the loader finds it).
fn catalog_file(agent_file: &str, forced: Option<&std::path::Path>) -> Option<String> {
    if let Some(f) = forced {
        return Some(f.display().to_string());
    }
    // Inline machines are labelled `parent.yml#name`.
    let path = std::path::Path::new(agent_file.split('#').next().unwrap_or(agent_file));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let start = std::fs::canonicalize(dir).ok()?;
    start.ancestors().find_map(|d| {
        ["profiles.yml", "profiles.yaml"]
            .iter()
            .map(|n| d.join(n))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

/// Cycles in the reference graph, each as the (machine, state) hops from
/// the cycle's first machine back to it. Iterative DFS: the graph comes
/// from files, so no recursion over it.
fn find_cycles(edges: &[Vec<(&str, usize)>]) -> Vec<Vec<(usize, String)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let n = edges.len();
    let mut mark = vec![Mark::New; n];
    let mut cycles = Vec::new();
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        // Stack of (node, next edge index); `path` holds the hops taken.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        let mut path: Vec<(usize, String)> = Vec::new();
        mark[start] = Mark::OnPath;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            top.1 += 1;
            if let Some(&(state, child)) = edges[node].get(next) {
                match mark[child] {
                    Mark::New => {
                        path.push((node, state.to_string()));
                        mark[child] = Mark::OnPath;
                        stack.push((child, 0));
                    }
                    Mark::OnPath => {
                        // The cycle: from `child`'s hop on the path to here.
                        let from = path.iter().position(|(m, _)| *m == child);
                        let mut cyc: Vec<(usize, String)> = match from {
                            Some(i) => path[i..].to_vec(),
                            None => Vec::new(),
                        };
                        cyc.push((node, state.to_string()));
                        cycles.push(cyc);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
                path.pop();
            }
        }
    }
    cycles
}

/// With no cycles: the longest chain of nested machines from the root must
/// fit the engine's nesting limit.
fn check_depth(
    machines: &[MachineDef],
    edges: &[Vec<(&str, usize)>],
    root: usize,
    diags: &mut Diagnostics,
) {
    let limit = super::limits::MAX_NESTING_DEPTH;
    // height[m]: levels of children below m (0 = calls no machine).
    // Post-order without recursion; the graph is acyclic here.
    let mut height: Vec<Option<usize>> = vec![None; machines.len()];
    let mut stack = vec![(root, false)];
    while let Some((m, expanded)) = stack.pop() {
        if height[m].is_some() {
            continue;
        }
        if expanded {
            let h = edges[m]
                .iter()
                .map(|(_, c)| height[*c].map_or(0, |h| h + 1))
                .max()
                .unwrap_or(0);
            height[m] = Some(h);
        } else {
            stack.push((m, true));
            for (_, c) in &edges[m] {
                if height[*c].is_none() {
                    stack.push((*c, false));
                }
            }
        }
    }
    let depth = height[root].unwrap_or(0);
    if depth > limit {
        let deepest = edges[root]
            .iter()
            .max_by_key(|(_, c)| height[*c].unwrap_or(0))
            .map(|(s, _)| *s);
        diags.error(
            &machines[root].file,
            deepest,
            format!(
                "child machines nest {depth} levels deep from here; the engine allows at most {limit}"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Command;
    use super::*;

    #[test]
    fn shell_scripts_are_scanned_as_the_action_scans_them() {
        for ok in [
            "echo {{ context.x }}",
            "echo '{{ context.x }}' \"{{ context.y }}\"",
            "echo {# a {% comment %} #} done",
            "echo {{ '{%' }}",
            "echo \\{% literal %}",
            "echo \"\\{% literal %}\"",
            "printf '%s' '{'",
        ] {
            assert!(shell_script_problems(ok).is_empty(), "{ok}");
        }
        for bad in [
            "echo {% if x %}y{% endif %}",
            "echo '{% raw %}'",
            "echo '\\{% x %}'",
            "echo \\\\{% x %}",
        ] {
            let p = shell_script_problems(bad);
            assert!(
                p.len() == 1 && p[0].contains("`{% %}` blocks"),
                "{bad}: {p:?}"
            );
        }
        assert!(shell_script_problems("echo {{ x")[0].contains("no closing `}}`"));
        assert!(shell_script_problems("echo {# x")[0].contains("no closing `#}`"));
        assert!(!shell_script_problems("echo {{ x | | }}").is_empty());
    }

    #[test]
    fn the_script_of_a_list_command_is_the_argument_after_c() {
        let argv = |v: &[&str]| Command::Argv(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(shell_script(&argv(&["sh", "-c", "s"])), Some("s"));
        assert_eq!(
            shell_script(&argv(&["/bin/bash", "-e", "-c", "s", "x"])),
            Some("s")
        );
        assert_eq!(shell_script(&argv(&["sh", "-ec", "s"])), Some("s"));
        assert_eq!(shell_script(&argv(&["sh", "script.sh", "-c"])), None);
        assert_eq!(shell_script(&argv(&["python3", "-c", "s"])), None);
        assert_eq!(shell_script(&argv(&["sh", "-c"])), None);
        assert_eq!(shell_script(&Command::Line("s".into())), Some("s"));
    }

    /// Machine-file durations are checked when the file is loaded: an
    /// out-of-range, negative or NaN `timeout` or backoff is a check error
    /// naming the file and the state; a good one arrives as a `Duration`.
    #[test]
    fn file_durations_are_checked_at_load_naming_file_and_state() {
        use crate::spec::{load, LoadOptions, Severity};
        use std::time::Duration;
        let machine = |timeout: &str, backoff: &str| {
            format!(
                "spec: flatmachine\nspec_version: \"4.2.1\"\ndata:\n  agents:\n    a: {{spec: flatagent, spec_version: \"4.2.1\", data: {{model: {{provider: openai, name: m}}, prompt: {{user: hi}}}}}}\n  machines:\n    child: child.yml\n  states:\n    start: {{type: initial, transitions: [{{to: fan}}]}}\n    fan:\n      machine: [child]\n      mode: any\n      timeout: {timeout}\n      transitions: [{{to: ask}}]\n    ask:\n      agent: a\n      execution: {{type: retry, backoffs: [{backoff}]}}\n      transitions: [{{to: done}}]\n    done: {{type: final}}\n"
            )
        };
        let child = "spec: flatmachine\nspec_version: \"4.2.1\"\ndata:\n  states:\n    start: {type: initial, transitions: [{to: done}]}\n    done: {type: final}\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("child.yml"), child).unwrap();
        let path = dir.path().join("m.yml");
        let errors = |timeout: &str, backoff: &str| -> (Vec<String>, Option<crate::spec::Bundle>) {
            std::fs::write(&path, machine(timeout, backoff)).unwrap();
            let loaded = load(&path, &LoadOptions::default());
            let errs = loaded
                .diagnostics
                .items
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| d.to_string())
                .collect();
            (errs, loaded.bundle)
        };
        let (ok, bundle) = errors("2.5", "0, 1.5");
        assert!(ok.is_empty(), "{ok:?}");
        let bundle = bundle.unwrap();
        let root = bundle.root();
        let fan = &root.states["fan"];
        assert_eq!(
            fan.timeout.and_then(|t| t.positive()),
            Some(Duration::from_millis(2500))
        );
        let backoffs: Vec<Duration> = root.states["ask"]
            .execution
            .as_ref()
            .unwrap()
            .backoffs
            .as_ref()
            .unwrap()
            .iter()
            .map(|b| b.duration())
            .collect();
        assert_eq!(backoffs, [Duration::ZERO, Duration::from_millis(1500)]);

        // (YAML `.nan` / `.inf` read as null — no value — before the model
        // sees them; a NaN `Seconds` is covered in `limits`.)
        // `timeout: 0` is the SDK's "no timeout" (its dfss example uses
        // it on a wait_for state): accepted, and no timeout applies.
        let (errs, _) = errors("0", "1");
        assert!(errs.is_empty(), "{errs:?}");
        for bad in ["-1", "-0.5", "1e20", "86400.5"] {
            let (errs, _) = errors(bad, "1");
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(
                errs[0].contains("m.yml")
                    && errs[0].contains("state 'fan'")
                    && errs[0].contains("timeout must be"),
                "{bad}: {errs:?}"
            );
        }
        for bad in ["-1", "-0.001", "1e20", "86401"] {
            let (errs, _) = errors("5", bad);
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert!(
                errs[0].contains("m.yml")
                    && errs[0].contains("state 'ask'")
                    && errs[0].contains("execution.backoffs must be"),
                "{bad}: {errs:?}"
            );
        }
    }
}
