//! The `shell` action: the extension point for authors who don't write Rust.
//!
//! It runs `command: [argv...]` (each item rendered as a template) in the
//! machine file's folder with the runner's environment, writes the context as
//! JSON to stdin, and merges the JSON object printed on stdout into the
//! context. A non-zero exit, a timeout or output that is not a JSON object is
//! an `action_error` carrying the tail of stderr.

use super::action::{Action, ActionArgs};
use super::error::{ErrorKind, ExecError};
use crate::expr::{Templates, Vars};
use crate::spec::model::Command;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Default bound on a shell command's run time.
pub const DEFAULT_SHELL_TIMEOUT: Duration = Duration::from_secs(300);

/// How much of stderr an error message carries.
const STDERR_TAIL: usize = 2000;

pub struct Shell;

#[async_trait]
impl Action for Shell {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let argv = render_argv(ctx, args)?;
        let timeout = args
            .state
            .timeout
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_SHELL_TIMEOUT);
        let stdin = serde_json::to_vec(&Value::Object(ctx.clone()))
            .map_err(|e| action_err(format!("cannot serialise context: {e}")))?;
        let out = run(&argv, args, stdin, timeout).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Some(Value::Object(Map::new())));
        }
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(Value::Object(obj)) => {
                for (k, v) in &obj {
                    ctx.insert(k.clone(), v.clone());
                }
                Ok(Some(Value::Object(obj)))
            }
            Ok(other) => Err(action_err(format!(
                "command {:?} printed JSON that is not an object ({}); stderr: {}",
                argv[0],
                type_name(&other),
                tail(&out.stderr)
            ))),
            Err(e) => Err(action_err(format!(
                "command {:?} printed output that is not JSON ({e}); stderr: {}",
                argv[0],
                tail(&out.stderr)
            ))),
        }
    }
}

fn render_argv(ctx: &Map<String, Value>, args: &ActionArgs<'_>) -> Result<Vec<String>, ExecError> {
    let raw = match &args.state.command {
        Some(Command::Argv(v)) if !v.is_empty() => v.clone(),
        Some(Command::Line(l)) if !l.trim().is_empty() => {
            vec!["sh".into(), "-c".into(), l.clone()]
        }
        _ => {
            return Err(action_err(
                "`command` must be a non-empty list of arguments",
            ))
        }
    };
    let vars = Vars::from_pairs([
        ("context", Value::Object(ctx.clone())),
        ("input", Value::Object(ctx.clone())),
    ]);
    raw.iter()
        .map(|a| {
            let v = Templates::render_str(a, &vars)
                .map_err(|e| ExecError::new(ErrorKind::TemplateError, format!("command: {e}")))?;
            Ok(match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
        })
        .collect()
}

async fn run(
    argv: &[String],
    args: &ActionArgs<'_>,
    stdin: Vec<u8>,
    timeout: Duration,
) -> Result<std::process::Output, ExecError> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(args.machine_dir)
        .env("FLATMACHINE_EXECUTION_ID", args.execution_id)
        .env("FLATMACHINE_STATE", args.state_name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        action_err(format!(
            "cannot start command {:?} in {}: {e}",
            argv[0],
            args.machine_dir.display()
        ))
    })?;
    if let Some(mut pipe) = child.stdin.take() {
        // A command that doesn't read stdin closes the pipe early; that's fine.
        let _ = pipe.write_all(&stdin).await;
        drop(pipe);
    }
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| action_err(format!("command {:?} failed: {e}", argv[0])))?,
        Err(_) => {
            return Err(action_err(format!(
                "command {:?} timed out after {:.1}s",
                argv[0],
                timeout.as_secs_f64()
            )))
        }
    };
    if !out.status.success() {
        let code = out
            .status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "killed by a signal".to_string());
        return Err(action_err(format!(
            "command {:?} failed with {code}; stderr: {}",
            argv[0],
            tail(&out.stderr)
        )));
    }
    Ok(out)
}

fn action_err(msg: impl Into<String>) -> ExecError {
    ExecError::new(ErrorKind::ActionError, msg)
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    if s.is_empty() {
        return "(empty)".to_string();
    }
    let n = s.chars().count();
    if n <= STDERR_TAIL {
        s.to_string()
    } else {
        let t: String = s.chars().skip(n - STDERR_TAIL).collect();
        format!("…{t}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}
