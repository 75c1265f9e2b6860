//! Regression for the wrong-model bug (issue #14, item 1): in an agent file
//! `model: NAME` names a profile of `profiles.yml`, as the Python SDK reads
//! it. The runner used to send the literal id `NAME` to the default
//! profile's endpoint. End to end: `runner machine run` against two mock
//! providers on loopback, one per profile, each recording the model ids it
//! was sent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use testkit::mock::{MockScript, MockServer};

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn by_model(m: &MockServer) -> BTreeMap<String, u64> {
    m.stats().by_model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_name_in_an_agent_calls_that_profiles_model_at_its_endpoint() {
    let fast = MockServer::start("127.0.0.1:0", MockScript::default())
        .await
        .unwrap();
    let slow = MockServer::start("127.0.0.1:0", MockScript::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // `slow` is the default: the bug sent `fast` (the literal) to its endpoint.
    write(
        d,
        "profiles.yml",
        &format!(
            "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n    fast: {{provider: openai, name: fast-model-id, base_url: \"{}\", api_key_env: MOCK_KEY, timeout: 30}}\n    slow: {{provider: openai, name: slow-model-id, base_url: \"{}\", api_key_env: MOCK_KEY, timeout: 30}}\n  default: slow\n",
            fast.base_url(),
            slow.base_url()
        ),
    );
    // The 4.x shape with `model: fast`, and the legacy shape (`model:`
    // beside `user:`, as written for SDK 2.x) naming `slow`.
    write(
        d,
        "agents/quick.yml",
        "spec: flatagent\nspec_version: \"4.2.1\"\ndata:\n  prompt: {user: \"Say hi to {{ input.who }}\"}\n  model: fast\n",
    );
    write(
        d,
        "agents/careful.yml",
        "spec: flatagent\nspec_version: \"2.0.0\"\ndata:\n  model: slow\n  system: You are careful.\n  user: \"Check {{ input.who }}\"\n",
    );
    write(
        d,
        "machine.yml",
        "spec: flatmachine\nspec_version: \"4.2.1\"\ndata:\n  agents:\n    quick: ./agents/quick.yml\n    careful: ./agents/careful.yml\n  states:\n    start:\n      type: initial\n      agent: quick\n      input: {who: world}\n      transitions: [{to: check}]\n    check:\n      agent: careful\n      input: {who: world}\n      transitions: [{to: done}]\n    done:\n      type: final\n      output: {ok: true}\n",
    );

    let check = run(d, &["machine", "check", "machine.yml"]).await;
    assert!(check.status.success(), "{}", text(&check));

    let out = run(d, &["machine", "run", "machine.yml"]).await;
    assert!(out.status.success(), "{}", text(&out));

    assert_eq!(
        by_model(&fast),
        BTreeMap::from([("fast-model-id".to_string(), 1)]),
        "`model: fast` must reach the fast profile's model at its endpoint"
    );
    assert_eq!(
        by_model(&slow),
        BTreeMap::from([("slow-model-id".to_string(), 1)]),
        "the default endpoint must see only the agent that names `slow`"
    );
    fast.shutdown().await;
    slow.shutdown().await;
}

/// A profile name the catalog does not define is a `check` error (exit 2)
/// naming the machine file, the state, the agent and the agent's file —
/// not a silent fall back to the default model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_profile_name_fails_check_naming_file_and_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "profiles.yml",
        "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n    fast: {provider: openai, name: f, base_url: \"http://127.0.0.1:9/v1\"}\n  default: fast\n",
    );
    write(
        d,
        "agents/quick.yml",
        "spec: flatagent\nspec_version: \"4.2.1\"\ndata:\n  prompt: {user: hi}\n  model: fastest\n",
    );
    write(
        d,
        "machine.yml",
        "spec: flatmachine\nspec_version: \"4.2.1\"\ndata:\n  agents:\n    quick: ./agents/quick.yml\n  states:\n    start: {type: initial, agent: quick, transitions: [{to: done}]}\n    done: {type: final}\n",
    );
    let out = run(d, &["machine", "check", "machine.yml"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("machine.yml: state 'start': agent 'quick': unknown profile 'fastest'")
            && t.contains("agents/quick.yml"),
        "{t}"
    );
}

async fn run(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.current_dir(dir)
        .env("MOCK_KEY", "test-key-not-secret")
        .env_remove("RUST_LOG")
        .env_remove("RUNNER_CONFIG")
        .args(args);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
