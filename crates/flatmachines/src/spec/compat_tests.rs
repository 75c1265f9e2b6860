//! Loading files written for the Python SDK: how an agent's `model:` picks
//! its profile, and how older `spec_version`s and pre-4 shapes are treated.

use super::{load, LoadOptions, Loaded};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const PROFILES: &str = "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n    fast: {provider: openai, name: fast-model, base_url: \"http://fast.invalid/v1\"}\n    slow: {provider: openai, name: slow-model, base_url: \"http://slow.invalid/v1\", temperature: 0.5}\n    pin: {seed: 7}\n  default: slow\n";

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// A machine with one state calling agent `a`, whose file is `agent`.
fn machine_with_agent(dir: &Path, version: &str, agent: &str) -> PathBuf {
    write(dir, "agents/a.yml", agent);
    write(
        dir,
        "machine.yml",
        &format!(
            "spec: flatmachine\nspec_version: {version}\ndata:\n  agents:\n    a: ./agents/a.yml\n  states:\n    start: {{type: initial, transitions: [{{to: ask}}]}}\n    ask:\n      agent: a\n      transitions: [{{to: done}}]\n    done: {{type: final}}\n"
        ),
    )
}

fn agent(model_line: &str) -> String {
    format!(
        "spec: flatagent\nspec_version: \"4.2.1\"\ndata:\n  prompt: {{user: hi}}\n  {model_line}\n"
    )
}

fn load_ok(path: &Path) -> Loaded {
    let l = load(path, &LoadOptions::default());
    assert!(l.bundle.is_some(), "{}", l.diagnostics);
    l
}

fn errors(l: &Loaded) -> Vec<String> {
    l.diagnostics.errors().map(|d| d.to_string()).collect()
}

fn warnings(l: &Loaded) -> Vec<String> {
    l.diagnostics.warnings().map(|d| d.to_string()).collect()
}

fn model_of(l: &Loaded) -> (Option<String>, serde_json::Map<String, Value>) {
    let b = l.bundle.as_ref().unwrap();
    let a = &b.root().agents["a"];
    (a.profile_name.clone(), a.model.clone())
}

/// `model: fast` names the `fast` profile (the SDK's reading), so the
/// agent gets that profile's model id and endpoint — not the literal id
/// `fast` on the default profile's endpoint.
#[test]
fn a_string_model_names_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "profiles.yml", PROFILES);
    let m = machine_with_agent(dir.path(), "\"4.2.1\"", &agent("model: fast"));
    let (name, model) = model_of(&load_ok(&m));
    assert_eq!(name.as_deref(), Some("fast"));
    assert_eq!(model.get("name"), Some(&json!("fast-model")));
    assert_eq!(
        model.get("base_url"),
        Some(&json!("http://fast.invalid/v1"))
    );
    assert_eq!(model.get("temperature"), None, "the default must not leak");
}

/// The legacy agent shape (`model:` beside `system`/`user`, no `prompt`)
/// resolves the same way, and `model: {profile: NAME, ...}` overrides the
/// named profile's fields.
#[test]
fn legacy_agents_and_profile_mappings_resolve_through_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "profiles.yml", PROFILES);
    let legacy =
        "spec: flatagent\nspec_version: \"2.0.0\"\ndata:\n  model: fast\n  system: s\n  user: hi\n";
    let (name, model) = model_of(&load_ok(&machine_with_agent(
        dir.path(),
        "\"4.2.1\"",
        legacy,
    )));
    assert_eq!(name.as_deref(), Some("fast"));
    assert_eq!(model.get("name"), Some(&json!("fast-model")));

    let m = machine_with_agent(
        dir.path(),
        "\"4.2.1\"",
        &agent("model: {profile: fast, temperature: 0.9, seed: null}"),
    );
    let (name, model) = model_of(&load_ok(&m));
    assert_eq!(name.as_deref(), Some("fast"));
    assert_eq!(model.get("name"), Some(&json!("fast-model")));
    assert_eq!(model.get("temperature"), Some(&json!(0.9)));
    assert!(
        !model.contains_key("seed"),
        "a null field overrides nothing"
    );

    // No `model` and no `profile`: the catalog's default.
    let m = machine_with_agent(dir.path(), "\"4.2.1\"", &agent("# no model"));
    let (name, model) = model_of(&load_ok(&m));
    assert_eq!(name, None);
    assert_eq!(model.get("name"), Some(&json!("slow-model")));
}

/// An `override` profile trumps the agent's inline fields, as in the SDK.
#[test]
fn override_profile_trumps_inline_fields() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "profiles.yml",
        &PROFILES.replace("  default: slow\n", "  default: slow\n  override: pin\n"),
    );
    let m = machine_with_agent(
        dir.path(),
        "\"4.2.1\"",
        &agent("model: {profile: fast, seed: 1}"),
    );
    let (_, model) = model_of(&load_ok(&m));
    assert_eq!(model.get("seed"), Some(&json!(7)));
    assert_eq!(model.get("name"), Some(&json!("fast-model")));
}

/// A name the catalog does not define is a check error naming the machine
/// file, the state, the agent and the agent's own file.
#[test]
fn an_unknown_profile_name_is_an_error_naming_file_and_agent() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "profiles.yml", PROFILES);
    let m = machine_with_agent(dir.path(), "\"4.2.1\"", &agent("model: medium"));
    let l = load(&m, &LoadOptions::default());
    assert!(l.bundle.is_none());
    let errs = errors(&l);
    let label = m.display().to_string();
    assert!(
        errs.iter().any(|e| e.starts_with(&format!(
            "{label}: state 'ask': agent 'a': unknown profile 'medium'"
        )) && e.contains("fast, slow, pin")
            && e.contains("agents/a.yml")),
        "{errs:?}"
    );
}

/// Without any catalog the SDK refuses a profile name too ("not found and
/// no default configured"); the error says how to give a literal model id.
#[test]
fn a_profile_name_without_a_catalog_is_an_error_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let m = machine_with_agent(dir.path(), "\"4.2.1\"", &agent("model: fast"));
    let l = load(&m, &LoadOptions::default());
    assert!(l.bundle.is_none());
    let errs = errors(&l);
    assert!(
        errs.iter().any(
            |e| e.contains("agent 'a': profile 'fast' requested but no profiles.yml")
                && e.contains("model: {provider: PROVIDER, name: fast}")
        ),
        "{errs:?}"
    );
    // A literal model mapping needs no catalog.
    let m = machine_with_agent(
        dir.path(),
        "\"4.2.1\"",
        &agent("model: {provider: openai, name: gpt-x}"),
    );
    let (name, model) = model_of(&load_ok(&m));
    assert_eq!(name, None);
    assert_eq!(model.get("name"), Some(&json!("gpt-x")));
}

#[test]
fn profile_and_model_naming_different_profiles_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "profiles.yml", PROFILES);
    let m = machine_with_agent(
        dir.path(),
        "\"4.2.1\"",
        &agent("profile: slow\n  model: fast"),
    );
    let errs = errors(&load(&m, &LoadOptions::default()));
    assert!(
        errs.iter()
            .any(|e| e.contains("`profile: slow` and `model: fast` both name a profile")),
        "{errs:?}"
    );
    let m = machine_with_agent(
        dir.path(),
        "\"4.2.1\"",
        &agent("profile: fast\n  model: fast"),
    );
    assert_eq!(model_of(&load_ok(&m)).0.as_deref(), Some("fast"));
}

/// A 3.x file that is otherwise valid loads, with exactly one warning that
/// names the file and the version.
#[test]
fn an_older_spec_version_loads_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "profiles.yml", PROFILES);
    for version in ["\"3.0.0\"", "\"2.5.0\"", "\"0.4.0\"", "3.1"] {
        let m = machine_with_agent(dir.path(), version, &agent("model: fast"));
        let l = load_ok(&m);
        let w = warnings(&l);
        let v = version.trim_matches('"');
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(&format!(
                "{}: warning: spec_version {v} predates 4.x",
                m.display()
            )),
            "{w:?}"
        );
        assert_eq!(l.bundle.unwrap().root().spec_version.as_deref(), Some(v));
    }
}

/// No `spec_version` means the current version, silently, as in the SDK.
#[test]
fn a_missing_spec_version_loads_without_a_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(
        dir.path(),
        "m.yml",
        "spec: flatmachine\ndata:\n  states:\n    start: {type: initial, transitions: [{to: done}]}\n    done: {type: final}\n",
    );
    let l = load_ok(&m);
    assert!(l.diagnostics.items.is_empty(), "{:?}", l.diagnostics.items);
}

/// A newer major, or a version that is not one, stays an error.
#[test]
fn newer_or_malformed_spec_versions_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for v in ["\"5.0.0\"", "\"latest\""] {
        let m = write(
            dir.path(),
            "m.yml",
            &format!("spec: flatmachine\nspec_version: {v}\ndata:\n  states:\n    start: {{type: initial, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"),
        );
        let l = load(&m, &LoadOptions::default());
        assert!(l.bundle.is_none(), "{v}");
        let errs = errors(&l);
        assert!(
            errs.iter().any(|e| e.contains("is not supported")),
            "{errs:?}"
        );
    }
}

/// The pre-4 shape `agent: reviewer.yml` (a state pointing at a file) is
/// an error that says what to change, whatever the file's version says;
/// the same for `machine: child.yml`.
#[test]
fn pre4_file_references_in_states_are_errors_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "profiles.yml", PROFILES);
    write(dir.path(), "reviewer.yml", &agent("model: fast"));
    let m = write(
        dir.path(),
        "old.yml",
        "spec: flatmachine\nspec_version: \"2.0.0\"\ndata:\n  states:\n    start:\n      type: initial\n      agent: reviewer.yml\n      transitions: [{to: kids}]\n    kids:\n      machine: [./sub/child.yml]\n      transitions: [{to: done}]\n    done: {type: final}\n",
    );
    let l = load(&m, &LoadOptions::default());
    assert!(l.bundle.is_none());
    let errs = errors(&l);
    let label = m.display().to_string();
    assert!(
        errs.iter().any(|e| e.starts_with(&format!("{label}: state 'start': `agent: reviewer.yml` names a file, a shape from before spec 4"))
            && e.contains("add `agents: {reviewer: reviewer.yml}` to data and write `agent: reviewer`")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with(&format!(
            "{label}: state 'kids': `machine: ./sub/child.yml` names a file"
        )) && e.contains(
            "add `machines: {child: ./sub/child.yml}` to data and write `machine: child`"
        )),
        "{errs:?}"
    );
    // A plain undeclared name keeps the ordinary message.
    let m = write(
        dir.path(),
        "typo.yml",
        "spec: flatmachine\nspec_version: \"4.2.1\"\ndata:\n  states:\n    start: {type: initial, agent: revewer, transitions: [{to: done}]}\n    done: {type: final}\n",
    );
    let errs = errors(&load(&m, &LoadOptions::default()));
    assert!(
        errs.iter().any(|e| e.contains("unknown agent 'revewer'")),
        "{errs:?}"
    );
    assert!(errors(&load(&m, &LoadOptions::default()))
        .iter()
        .all(|e| !e.contains("before spec 4")));
}
