//! The `shell` action: the extension point for authors who don't write Rust.
//!
//! It runs `command:` in the machine file's folder with the runner's
//! environment, writes the context as JSON to stdin, and merges the JSON
//! object printed on stdout into the context. A non-zero exit, a timeout or
//! output that is not a JSON object is an `action_error` carrying the tail of
//! stderr.
//!
//! # Template values are data, never shell code
//!
//! `command:` comes in two forms:
//!
//! * a list, `[prog, arg, ...]`: each item is rendered as a template and
//!   passed as one argument, with no shell in between;
//! * a string, `command: "grep -c {{ context.word }} notes.txt"`: a script
//!   for `sh -c`.
//!
//! Rendering a template into script text would let a value such as
//! `'; rm -rf ~; echo '` (a paper title, a model's answer) run as code. So in
//! a script — the string form, and the script after `-c` of a list whose
//! program is a POSIX shell (`sh`, `bash`, `dash`, ...) — the literal parts
//! stay shell text, and each `{{ expr }}` is rendered into an environment
//! variable `FLATMACHINE_ARG_<n>` (n = 1, 2, ... in order of appearance) and
//! replaced by a reference to it, quoted for where it stands: `"${V}"`
//! outside quotes, `${V}` inside double quotes, `'"${V}"'` inside single
//! quotes. The shell expands a variable into exactly one word and never
//! parses the value, so `echo '{{ x }}'`, `echo "{{ x }}"` and `echo {{ x }}`
//! all print the value verbatim, whatever it contains. `{# comments #}` are
//! dropped; `{% %}` blocks are refused (a `template_error`): they would need
//! the text around them rendered as shell code — use the list form, or do
//! the logic in the script. The value is still data in the script's hands:
//! a script that `eval`s it, or uses it in bash arithmetic, runs it.
//!
//! # Bounds
//!
//! * The command runs in a process group of its own. At the timeout (the
//!   state's `timeout`, default [`DEFAULT_SHELL_TIMEOUT`]), when its output
//!   passes the cap, when the action is cancelled (lease lost, shutdown) and
//!   when the command itself exits, the whole group is killed with SIGKILL,
//!   so nothing it started in the background (`cmd &`) outlives the action.
//!   A process that leaves the group on purpose (`setsid`) escapes this.
//! * stdout and stderr are each read up to `shell.max_output_bytes`
//!   ([`ShellConfig`], default 1 MiB); more fails the action with
//!   `output_too_large` at once, instead of buffering without bound.
//! * stdin is the context JSON, written concurrently with reading the
//!   output, so a command that does not read it cannot deadlock the action.
//! * The host running out of file descriptors, processes or memory while
//!   starting the command is `resource_exhausted` (retried by the runner),
//!   not a failure of the paper.
//!
//! The working directory is the machine file's folder; a machine loaded by a
//! bare file name (`machine run m.yml`) runs in `.`.

use super::action::{Action, ActionArgs};
use super::error::{io_error_kind, ErrorKind, ExecError};
use crate::expr::{Templates, Vars};
use crate::spec::model::Command;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Default bound on a shell command's run time.
pub const DEFAULT_SHELL_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest run time a state's `timeout` may ask for (a week): far beyond any
/// sensible command, and small enough that deadline arithmetic never
/// overflows.
pub const MAX_SHELL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default cap on each of stdout and stderr.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// Smallest and largest accepted `shell.max_output_bytes`.
pub const MIN_OUTPUT_CAP: u64 = 1024;
pub const MAX_OUTPUT_CAP: u64 = 1024 * 1024 * 1024;

/// Prefix of the environment variables that carry rendered template values
/// into a script.
pub const ARG_VAR_PREFIX: &str = "FLATMACHINE_ARG_";

/// How much of stderr an error message carries.
const STDERR_TAIL: usize = 2000;

/// How long to wait for a killed command to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// Limits of the `shell` action (`[shell]` in the runner's config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShellConfig {
    /// Bytes read from each of stdout and stderr before the command is
    /// killed and the action fails with `output_too_large`.
    pub max_output_bytes: u64,
}

impl Default for ShellConfig {
    fn default() -> Self {
        ShellConfig {
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

impl ShellConfig {
    /// Problems as (key, message), empty when usable.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(MIN_OUTPUT_CAP..=MAX_OUTPUT_CAP).contains(&self.max_output_bytes) {
            out.push((
                "shell.max_output_bytes",
                format!(
                    "{} is out of range: must be between {MIN_OUTPUT_CAP} and {MAX_OUTPUT_CAP}",
                    self.max_output_bytes
                ),
            ));
        }
        out
    }
}

/// The `shell` action with its limits.
#[derive(Debug, Clone, Default)]
pub struct Shell {
    config: ShellConfig,
}

impl Shell {
    pub fn new(config: ShellConfig) -> Shell {
        Shell { config }
    }
}

#[async_trait]
impl Action for Shell {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let cmd = prepare(ctx, args)?;
        let timeout = state_timeout(Some(args.state));
        let stdin = serde_json::to_vec(&Value::Object(ctx.clone()))
            .map_err(|e| action_err(format!("cannot serialise context: {e}")))?;
        let cap = self.config.max_output_bytes;
        let process = Process {
            argv: &cmd.argv,
            env: &cmd.env,
            dir: args.machine_dir,
            execution_id: args.execution_id,
            state_name: args.state_name,
        };
        let out = run_process(&process, stdin, timeout, cap).await?;
        let obj = stdout_object(&cmd.argv[0], &out)?;
        for (k, v) in &obj {
            ctx.insert(k.clone(), v.clone());
        }
        Ok(Some(Value::Object(obj)))
    }
}

/// The timeout a state's `timeout` asks for, bounded, or the default.
pub(crate) fn state_timeout(state: Option<&crate::spec::StateDef>) -> Duration {
    state
        .and_then(|s| s.timeout)
        .and_then(|t| t.positive())
        .map(|t| t.min(MAX_SHELL_TIMEOUT))
        .unwrap_or(DEFAULT_SHELL_TIMEOUT)
}

/// A command's stdout read as the JSON object it must print: empty output
/// is an empty object (nothing changes); anything else that is not an object
/// is an `action_error` carrying the tail of stderr.
pub(crate) fn stdout_object(name: &str, out: &Output) -> Result<Map<String, Value>, ExecError> {
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(other) => Err(action_err(format!(
            "command {name:?} printed JSON that is not an object ({}); stderr: {}",
            type_name(&other),
            tail(&out.stderr)
        ))),
        Err(e) => Err(action_err(format!(
            "command {name:?} printed output that is not JSON ({e}); stderr: {}",
            tail(&out.stderr)
        ))),
    }
}

/// A command ready to start: its argv and the template values its script
/// refers to.
#[derive(Debug, Clone, PartialEq)]
struct Prepared {
    argv: Vec<String>,
    env: Vec<(String, String)>,
}

fn prepare(ctx: &Map<String, Value>, args: &ActionArgs<'_>) -> Result<Prepared, ExecError> {
    let vars = Vars::from_pairs([
        ("context", Value::Object(ctx.clone())),
        ("input", Value::Object(ctx.clone())),
    ]);
    prepare_command(args.state.command.as_ref(), &vars)
}

fn prepare_command(command: Option<&Command>, vars: &Vars) -> Result<Prepared, ExecError> {
    let mut env = Vec::new();
    let argv = match command {
        Some(Command::Argv(v)) if !v.is_empty() => {
            let script = script_index(v);
            let mut argv = Vec::with_capacity(v.len());
            for (i, a) in v.iter().enumerate() {
                if Some(i) == script {
                    argv.push(quote_script(a, vars, &mut env)?);
                } else {
                    argv.push(render_arg(a, vars)?);
                }
            }
            argv
        }
        Some(Command::Line(l)) if !l.trim().is_empty() => {
            vec!["sh".into(), "-c".into(), quote_script(l, vars, &mut env)?]
        }
        _ => {
            return Err(action_err(
                "`command` must be a non-empty list of arguments or a script",
            ))
        }
    };
    Ok(Prepared { argv, env })
}

/// One list item: rendered as a template into one argument.
fn render_arg(a: &str, vars: &Vars) -> Result<String, ExecError> {
    let v = Templates::render_str(a, vars).map_err(template_err)?;
    Ok(match v {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

/// POSIX shells whose `-c` argument is a script.
const SHELLS: [&str; 7] = ["sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"];

/// The index of the script in `[shell, -opts..., -c, script, ...]`, when the
/// program is a POSIX shell and a `-c` option (alone or in a cluster such as
/// `-ec`) comes before any operand.
fn script_index(argv: &[String]) -> Option<usize> {
    let prog = Path::new(argv.first()?).file_name()?.to_str()?;
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
            return (i + 1 < argv.len()).then_some(i + 1);
        }
    }
    None
}

#[derive(Clone, Copy, PartialEq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Turn a templated script into shell text that refers to its values through
/// environment variables (see the module docs), appending the values to
/// `env`.
fn quote_script(
    src: &str,
    vars: &Vars,
    env: &mut Vec<(String, String)>,
) -> Result<String, ExecError> {
    let mut out = String::with_capacity(src.len());
    let mut q = Quote::None;
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("{{") {
            let end = after
                .find("}}")
                .ok_or_else(|| script_err(src, "a `{{` has no closing `}}`".to_string()))?;
            let mut inner = &after[..end];
            rest = &after[end + 2..];
            if let Some(i) = inner.strip_prefix('-') {
                inner = i;
                let kept = out.trim_end().len();
                out.truncate(kept);
            }
            if let Some(i) = inner.strip_suffix('-') {
                inner = i;
                rest = rest.trim_start();
            }
            let value = Templates::render_text(&format!("{{{{ {inner} }}}}"), vars)
                .map_err(template_err)?;
            let name = format!("{ARG_VAR_PREFIX}{}", env.len() + 1);
            match q {
                Quote::None => out.push_str(&format!("\"${{{name}}}\"")),
                Quote::Double => out.push_str(&format!("${{{name}}}")),
                Quote::Single => out.push_str(&format!("'\"${{{name}}}\"'")),
            }
            env.push((name, value));
            continue;
        }
        if let Some(after) = rest.strip_prefix("{#") {
            let end = after
                .find("#}")
                .ok_or_else(|| script_err(src, "a `{#` comment has no closing `#}`".to_string()))?;
            rest = &after[end + 2..];
            continue;
        }
        if rest.starts_with("{%") {
            return Err(script_err(
                src,
                "`{% %}` blocks are not allowed in a shell script (their output would be shell code); \
                 use `{{ expr }}` values, or the list form of `command`"
                    .to_string(),
            ));
        }
        let Some(c) = rest.chars().next() else {
            break;
        };
        rest = &rest[c.len_utf8()..];
        match (q, c) {
            (Quote::None, '\'') => q = Quote::Single,
            (Quote::None, '"') => q = Quote::Double,
            (Quote::Single, '\'') | (Quote::Double, '"') => q = Quote::None,
            (Quote::None | Quote::Double, '\\') => {
                out.push('\\');
                if rest.starts_with('{') && (rest.starts_with("{{") || rest.starts_with("{#")) {
                    // `\{{ x }}`: a literal backslash, then the value.
                    out.push('\\');
                } else if let Some(n) = rest.chars().next() {
                    out.push(n);
                    rest = &rest[n.len_utf8()..];
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    Ok(out)
}

/// Kills the command's process group when the command ends, fails or is
/// abandoned (the action's future dropped on cancel).
struct Group {
    pgid: i32,
    live: AtomicBool,
}

impl Group {
    fn kill(&self) {
        // pgid 0 or 1 would signal our own group or every process.
        if self.pgid > 1 && self.live.swap(false, Ordering::SeqCst) {
            // SAFETY: kill(2) with a negative pid signals a process group;
            // it has no memory-safety preconditions.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a finished command left.
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One process to start: shared by the `shell` action and command hooks
/// (`hooks.rs`), so both get the same bounds (own process group, timeout,
/// output cap, stdin written concurrently, `resource_exhausted` on host
/// exhaustion) from one implementation.
pub(crate) struct Process<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    /// Working directory; empty means `.`.
    pub dir: &'a Path,
    pub execution_id: &'a str,
    /// `FLATMACHINE_STATE` (empty for machine-level hook events).
    pub state_name: &'a str,
}

enum Failure {
    TooLarge(&'static str),
    Io(std::io::Error),
}

async fn read_capped<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    cap: u64,
    which: &'static str,
) -> Result<Vec<u8>, Failure> {
    let Some(pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut buf = Vec::new();
    pipe.take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .await
        .map_err(Failure::Io)?;
    if buf.len() as u64 > cap {
        return Err(Failure::TooLarge(which));
    }
    Ok(buf)
}

/// Run `cmd` to completion within `timeout`, reading at most `cap` bytes of
/// each of stdout and stderr; a non-zero exit is an `action_error`.
pub(crate) async fn run_process(
    cmd: &Process<'_>,
    stdin: Vec<u8>,
    timeout: Duration,
    cap: u64,
) -> Result<Output, ExecError> {
    let argv = cmd.argv;
    let Some(name) = argv.first() else {
        return Err(action_err("empty command"));
    };
    let dir = if cmd.dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        cmd.dir
    };
    if let Some((var, _)) = cmd.env.iter().find(|(_, v)| v.contains('\0')) {
        return Err(action_err(format!(
            "command {name:?}: the value of {var} contains a NUL byte, which no process can receive"
        )));
    }
    let mut command = tokio::process::Command::new(name);
    command
        .args(&argv[1..])
        .current_dir(dir)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .env("FLATMACHINE_EXECUTION_ID", cmd.execution_id)
        .env("FLATMACHINE_STATE", cmd.state_name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| spawn_err(name, dir, &e))?;
    let group = Group {
        pgid: child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0),
        live: AtomicBool::new(true),
    };
    let (pin, pout, perr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let write = async move {
        if let Some(mut pipe) = pin {
            // A command that doesn't read stdin closes the pipe early; fine.
            let _ = pipe.write_all(&stdin).await;
        }
        Ok::<(), Failure>(())
    };
    let wait = async {
        let status = child.wait().await.map_err(Failure::Io);
        // The command is done: whatever it left running goes with it, which
        // also closes the pipes those processes hold.
        group.kill();
        status
    };
    let work = async {
        tokio::try_join!(
            write,
            read_capped(pout, cap, "stdout"),
            read_capped(perr, cap, "stderr"),
            wait
        )
    };
    let result = tokio::time::timeout(timeout, work).await;
    let (stdout, stderr, status) = match result {
        Ok(Ok(((), out, err, status))) => (out, err, status),
        Ok(Err(f)) => {
            group.kill();
            reap(&mut child).await;
            return Err(match f {
                Failure::TooLarge(which) => ExecError::new(
                    ErrorKind::OutputTooLarge,
                    format!(
                        "command {name:?} wrote more than {cap} bytes to {which} (shell.max_output_bytes); it was killed"
                    ),
                ),
                Failure::Io(e) => ExecError::new(
                    io_error_kind(&e),
                    format!("command {name:?} failed: {e}"),
                ),
            });
        }
        Err(_) => {
            group.kill();
            reap(&mut child).await;
            return Err(action_err(format!(
                "command {name:?} timed out after {:.1}s; its process group was killed",
                timeout.as_secs_f64()
            )));
        }
    };
    if !status.success() {
        let code = status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "killed by a signal".to_string());
        return Err(action_err(format!(
            "command {name:?} failed with {code}; stderr: {}",
            tail(&stderr)
        )));
    }
    Ok(Output { stdout, stderr })
}

/// Collect a killed command's exit status, so it does not linger as a zombie.
async fn reap(child: &mut tokio::process::Child) {
    let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
}

fn spawn_err(name: &str, dir: &Path, e: &std::io::Error) -> ExecError {
    let kind = match e.raw_os_error() {
        // fork/exec: out of processes (RLIMIT_NPROC) or memory.
        Some(libc::EAGAIN) => ErrorKind::ResourceExhausted,
        Some(libc::E2BIG) => {
            return action_err(format!(
            "cannot start command {name:?} in {}: its arguments and template values are too large \
                 for a command line ({e}); let the command read the context from stdin instead",
            dir.display()
        ))
        }
        _ => io_error_kind(e),
    };
    ExecError::new(
        kind,
        format!("cannot start command {name:?} in {}: {e}", dir.display()),
    )
}

fn action_err(msg: impl Into<String>) -> ExecError {
    ExecError::new(ErrorKind::ActionError, msg)
}

fn template_err(e: crate::expr::TemplateError) -> ExecError {
    ExecError::new(ErrorKind::TemplateError, format!("command: {e}"))
}

fn script_err(src: &str, msg: String) -> ExecError {
    let shown: String = src.chars().take(80).collect();
    ExecError::new(
        ErrorKind::TemplateError,
        format!("command {shown:?}: {msg}"),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::StateDef;
    use serde_json::json;
    use std::time::Instant;

    fn state(command: Command, timeout: Option<f64>) -> StateDef {
        StateDef {
            action: Some("shell".into()),
            command: Some(command),
            timeout: timeout.map(crate::spec::limits::Seconds::new),
            ..StateDef::default()
        }
    }

    fn line(s: &str) -> Command {
        Command::Line(s.to_string())
    }

    fn argv(items: &[&str]) -> Command {
        Command::Argv(items.iter().map(|s| s.to_string()).collect())
    }

    async fn run_in(
        dir: &Path,
        st: &StateDef,
        ctx: Value,
        cap: u64,
    ) -> Result<Map<String, Value>, ExecError> {
        let mut ctx = ctx.as_object().cloned().unwrap_or_default();
        let args = ActionArgs {
            execution_id: "exec-1",
            state_name: "s",
            state: st,
            input: Map::new(),
            machine_dir: dir,
        };
        Shell::new(ShellConfig {
            max_output_bytes: cap,
        })
        .run(&mut ctx, &args)
        .await?;
        Ok(ctx)
    }

    /// Processes of group `pgid` that are still running (zombies excluded:
    /// they hold nothing and wait only for their parent or init to reap them).
    fn live_members(pgid: i32) -> Vec<i32> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...: comm may contain spaces.
            let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
                continue;
            };
            let fields: Vec<&str> = after.split_whitespace().collect();
            if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
                out.push(pid);
            }
        }
        out
    }

    /// Poll (a real process group forces it) until the group is gone.
    async fn assert_group_gone(pgid: i32) {
        assert!(pgid > 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // SAFETY: signal 0 only checks for existence.
            let gone = unsafe { libc::kill(-pgid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if gone || live_members(pgid).is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes of group {pgid} still alive: {:?}",
                live_members(pgid)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    const HOSTILE: &str = "'; touch pwned; echo \"$(touch pwned2)\" `touch pwned3` '";

    #[tokio::test]
    async fn template_values_reach_scripts_verbatim_and_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = json!({"v": HOSTILE, "n": 41});
        for (i, script) in [
            // Outside quotes, in single quotes, in double quotes, glued to text.
            r#"printf '%s' {{ context.v }} > out"#,
            r#"printf '%s' '{{ context.v }}' > out"#,
            r#"printf '%s' "{{ context.v }}" > out"#,
            r#"printf '%s' x{{ context.v }}y > out; sed -i 's/^x//; s/y$//' out"#,
        ]
        .into_iter()
        .enumerate()
        {
            let st = state(line(script), None);
            run_in(dir.path(), &st, ctx.clone(), DEFAULT_MAX_OUTPUT_BYTES)
                .await
                .unwrap_or_else(|e| panic!("script {i}: {e}"));
            let got = std::fs::read_to_string(dir.path().join("out")).unwrap();
            assert_eq!(got, HOSTILE, "script {i}: {script}");
            for f in ["pwned", "pwned2", "pwned3"] {
                assert!(!dir.path().join(f).exists(), "script {i} ran {f}");
            }
        }
        // The argv form with `sh -c` gets the same treatment.
        let st = state(
            argv(&["sh", "-ec", "printf '%s' \"{{ context.v }}\" > out"]),
            None,
        );
        run_in(dir.path(), &st, ctx.clone(), DEFAULT_MAX_OUTPUT_BYTES)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            HOSTILE
        );
        assert!(!dir.path().join("pwned").exists());
        // Numbers render as before and still work in arithmetic.
        let st = state(line(r#"echo "{\"m\": $(( {{ context.n }} + 1 ))}""#), None);
        let out = run_in(dir.path(), &st, ctx, DEFAULT_MAX_OUTPUT_BYTES)
            .await
            .unwrap();
        assert_eq!(out["m"], json!(42));
    }

    #[test]
    fn scripts_refer_to_values_through_quoted_variables() {
        let vars = Vars::from_pairs([("context", json!({"a": "A", "b": [1, 2]}))]);
        let p = prepare_command(
            Some(&line(
                r#"x {{ context.a }} '{{context.a}}' "{{ context.b }}" {# gone #}\{{ context.a }}"#,
            )),
            &vars,
        )
        .unwrap();
        assert_eq!(
            p.argv,
            vec![
                "sh".to_string(),
                "-c".into(),
                r#"x "${FLATMACHINE_ARG_1}" ''"${FLATMACHINE_ARG_2}"'' "${FLATMACHINE_ARG_3}" \\"${FLATMACHINE_ARG_4}""#.into()
            ]
        );
        assert_eq!(p.env[0], ("FLATMACHINE_ARG_1".into(), "A".into()));
        assert_eq!(p.env[2].1, "[1, 2]");
        // A list item is one argument, rendered as before; only the script
        // of a shell's -c is rewritten.
        let p = prepare_command(
            Some(&argv(&[
                "python3",
                "-c",
                "print('{{ context.a }}')",
                "{{ context.a }}",
            ])),
            &vars,
        )
        .unwrap();
        assert_eq!(p.argv[2], "print('A')");
        assert_eq!(p.argv[3], "A");
        assert!(p.env.is_empty());
        assert_eq!(
            script_index(&["/bin/bash".into(), "-c".into(), "x".into()]),
            Some(2)
        );
        assert_eq!(
            script_index(&["sh".into(), "./run.sh".into(), "-c".into()]),
            None
        );
        assert_eq!(script_index(&["sh".into(), "-c".into()]), None);
        // Blocks are refused; unclosed markers are template errors.
        for bad in [
            "{% if true %}rm{% endif %}",
            "echo {{ context.a",
            "echo {# x",
        ] {
            let e = prepare_command(Some(&line(bad)), &vars).unwrap_err();
            assert_eq!(e.kind, ErrorKind::TemplateError, "{bad}");
        }
        let e = prepare_command(Some(&line("echo {{ context.missing }}")), &vars).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TemplateError);
        let e = prepare_command(Some(&line("  ")), &vars).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ActionError);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(line("echo $$ > pid; sleep 1000 & sleep 1000"), Some(0.5));
        let started = Instant::now();
        let e = run_in(dir.path(), &st, json!({}), DEFAULT_MAX_OUTPUT_BYTES)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ActionError);
        assert!(e.message.contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(8));
        let pgid: i32 = std::fs::read_to_string(dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_group_gone(pgid).await;
    }

    #[tokio::test]
    async fn background_processes_end_with_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(
            line(r#"echo $$ > pid; sleep 1000 & echo '{"ok": true}'"#),
            Some(60.0),
        );
        let started = Instant::now();
        let out = run_in(dir.path(), &st, json!({}), DEFAULT_MAX_OUTPUT_BYTES)
            .await
            .unwrap();
        assert_eq!(out["ok"], json!(true));
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "waited for the background sleep"
        );
        let pgid: i32 = std::fs::read_to_string(dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_group_gone(pgid).await;
    }

    #[tokio::test]
    async fn a_cancelled_action_leaves_no_process_behind() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(line("echo $$ > pid; sleep 1000 & sleep 1000"), None);
        let pid_file = dir.path().join("pid");
        let mut run = Box::pin(run_in(dir.path(), &st, json!({}), DEFAULT_MAX_OUTPUT_BYTES));
        // Drive the action until the script has started, then drop it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&pid_file).map_or(true, |s| !s.ends_with('\n')) {
            assert!(Instant::now() < deadline, "the script never started");
            let _ = tokio::time::timeout(Duration::from_millis(20), run.as_mut()).await;
        }
        drop(run);
        let pgid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_group_gone(pgid).await;
    }

    #[tokio::test]
    async fn endless_output_fails_fast_with_output_too_large() {
        let dir = tempfile::tempdir().unwrap();
        for (script, which) in [("yes", "stdout"), ("yes >&2", "stderr")] {
            let st = state(line(&format!("echo $$ > pid; {script}")), Some(60.0));
            let started = Instant::now();
            let e = run_in(dir.path(), &st, json!({}), 64 * 1024)
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::OutputTooLarge, "{e}");
            assert!(e.message.contains(which), "{e}");
            assert!(started.elapsed() < Duration::from_secs(10));
            let pgid: i32 = std::fs::read_to_string(dir.path().join("pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert_group_gone(pgid).await;
        }
        // Exactly at the cap is fine.
        let st = state(line("head -c 1024 /dev/zero | tr '\\0' ' '"), None);
        run_in(dir.path(), &st, json!({}), 1024).await.unwrap();
    }

    #[tokio::test]
    async fn a_command_that_ignores_a_large_stdin_does_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(4 * 1024 * 1024);
        let st = state(line(r#"echo '{"done": 1}'; sleep 0.2"#), Some(30.0));
        let out = run_in(
            dir.path(),
            &st,
            json!({"big": big}),
            DEFAULT_MAX_OUTPUT_BYTES,
        )
        .await
        .unwrap();
        assert_eq!(out["done"], json!(1));
    }

    #[tokio::test]
    async fn an_empty_machine_dir_means_the_current_directory() {
        let st = state(
            argv(&["sh", "-c", "echo \"{\\\"pwd\\\": \\\"$(pwd)\\\"}\""]),
            None,
        );
        let out = run_in(Path::new(""), &st, json!({}), DEFAULT_MAX_OUTPUT_BYTES)
            .await
            .unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            std::fs::canonicalize(out["pwd"].as_str().unwrap()).unwrap(),
            std::fs::canonicalize(cwd).unwrap()
        );
    }

    #[test]
    fn host_exhaustion_at_start_is_retryable() {
        let e = spawn_err(
            "x",
            Path::new("."),
            &std::io::Error::from_raw_os_error(libc::EMFILE),
        );
        assert_eq!(e.kind, ErrorKind::ResourceExhausted);
        let e = spawn_err(
            "x",
            Path::new("."),
            &std::io::Error::from_raw_os_error(libc::EAGAIN),
        );
        assert_eq!(e.kind, ErrorKind::ResourceExhausted);
        let e = spawn_err(
            "x",
            Path::new("."),
            &std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(e.kind, ErrorKind::ActionError);
        let e = spawn_err(
            "x",
            Path::new("."),
            &std::io::Error::from_raw_os_error(libc::E2BIG),
        );
        assert!(e.message.contains("stdin"), "{e}");
        let mut c = ShellConfig::default();
        assert!(c.problems().is_empty());
        c.max_output_bytes = 0;
        assert_eq!(c.problems()[0].0, "shell.max_output_bytes");
    }
}
