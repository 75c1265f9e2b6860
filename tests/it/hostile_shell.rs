//! The `shell` action against hostile values and commands (issue 12, B.8),
//! through the real `runner machine run` binary.

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const HOSTILE: &str = "'; touch pwned; echo \"$(touch pwned2)\" `touch pwned3` '";

fn machine(dir: &Path, states: &str) {
    let text = format!(
        "spec: flatmachine\nspec_version: \"4.2.1\"\ndata:\n  name: hostile\n  context:\n    v: input.v\n  states:\n{states}"
    );
    std::fs::write(dir.join("m.yml"), text).unwrap();
}

/// `runner machine run m.yml` from `dir`: the machine file by its bare name.
fn run_bare(dir: &Path, input: &Value) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .args(["machine", "run", "m.yml", "--input", &input.to_string()])
        .output()
        .unwrap()
}

/// A value from the context reaches the command intact through the string
/// form and through `sh -c` in the list form, and never runs; a machine
/// given by a bare file name runs its commands in its own folder (`.`), not
/// in the empty path.
#[test]
fn context_values_reach_commands_intact_and_never_run() {
    let dir = tempfile::tempdir().unwrap();
    machine(
        dir.path(),
        r#"    start:
      type: initial
      action: shell
      command: "printf '%s' {{ context.v }} > a.txt; printf '%s' \"{{ context.v }}\" > b.txt; printf '%s' '{{ context.v }}' > c.txt"
      transitions:
        - to: listed
    listed:
      action: shell
      command: ["sh", "-c", "printf '%s' {{ context.v }} > d.txt; echo '{\"here\": true}'"]
      transitions:
        - to: done
    done:
      type: final
      output:
        here: context.here
"#,
    );
    let out = run_bare(dir.path(), &json!({ "v": HOSTILE }));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["here"], json!(true), "{result}");
    for f in ["a.txt", "b.txt", "c.txt", "d.txt"] {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(f)).unwrap(),
            HOSTILE,
            "{f}"
        );
    }
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!dir.path().join(f).exists(), "the value ran: {f} exists");
    }
}

/// Endless output fails the run with `output_too_large`, quickly and
/// without buffering it.
#[test]
fn endless_output_fails_with_output_too_large() {
    let dir = tempfile::tempdir().unwrap();
    machine(
        dir.path(),
        r#"    start:
      type: initial
      action: shell
      command: "yes"
      timeout: 600
      transitions:
        - to: done
    done:
      type: final
"#,
    );
    let started = Instant::now();
    let out = run_bare(dir.path(), &json!({ "v": 1 }));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("output_too_large"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// A `{% %}` block in a script is refused instead of rendered into it:
/// when the machine is loaded (exit 2, naming file and state), before
/// anything runs.
#[test]
fn blocks_in_a_script_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    machine(
        dir.path(),
        r#"    start:
      type: initial
      action: shell
      command: "{% if true %}touch pwned{% endif %}"
      transitions:
        - to: done
    done:
      type: final
"#,
    );
    let out = run_bare(dir.path(), &json!({ "v": 1 }));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("m.yml: state 'start': command: `{% %}` blocks are not allowed"),
        "{err}"
    );
    assert!(!dir.path().join("pwned").exists());
}
