//! The Python hook bridge: `--hooks NAME=python:FILE:Class` runs the user's
//! SDK-style hooks class (`MachineHooks` subclass) in one long-lived Python
//! process per binding.
//!
//! The bridge program (`hook_bridge.py`, embedded in the binary and passed
//! with `python -c`) imports the class, answers a `ready` line, then serves
//! one request per stdin line and one reply per stdout line, matched by id.
//! Requests run concurrently in the bridge's event loop (`async def` hooks
//! are awaited), so executions do not wait on each other's hooks.
//!
//! Bounds, as for command hooks:
//! * every call has the state's `timeout` (default
//!   [`DEFAULT_SHELL_TIMEOUT`](super::shell::DEFAULT_SHELL_TIMEOUT)); a call
//!   past it is cancelled in the bridge, and a bridge that does not answer a
//!   ping within [`PING_WAIT`] then (a hook blocking its event loop) is
//!   killed;
//! * a reply is at most `python.max_output_bytes`; the bridge refuses a
//!   larger one itself (`output_too_large`), and a reply line past the cap
//!   by more than the envelope kills the bridge;
//! * start-up (the import of the user's module) is bounded by
//!   `python.startup_timeout_secs`;
//! * stderr (the hooks' logging and prints) is forwarded to the log line by
//!   line at `warn` level, a line longer than [`STDERR_LINE_CAP`] bytes
//!   dropped.
//!
//! A hook exception is an `action_error` whose message is
//! `"{ExceptionType}: {message}"` (its traceback goes to the log). A bridge
//! that dies fails the calls in flight with `action_error` and is started
//! again at the next call. The process runs in its own process group with
//! the runner's environment and working directory; it ends when the runner
//! drops it or closes its stdin.

use super::error::{ErrorKind, ExecError};
use super::hooks::{Hook, HookCall, HookReply};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// The bridge program, run with `python -c`.
pub const BRIDGE_SOURCE: &str = include_str!("hook_bridge.py");

/// How long a bridge has to answer a ping after a call timed out.
pub const PING_WAIT: Duration = Duration::from_secs(5);

/// Longest stderr line forwarded to the log (the rest is cut).
pub const STDERR_LINE_CAP: usize = 8 * 1024;

/// Room for the reply envelope beyond `max_output_bytes`.
const ENVELOPE: u64 = 64 * 1024;

/// Default cap on one reply (contexts carry paper text).
pub const DEFAULT_PY_MAX_OUTPUT: u64 = 64 * 1024 * 1024;
/// Smallest and largest accepted `python.max_output_bytes`.
pub const MIN_PY_OUTPUT: u64 = 1024;
pub const MAX_PY_OUTPUT: u64 = 1024 * 1024 * 1024;
/// Largest accepted `python.startup_timeout_secs`.
pub const MAX_PY_STARTUP_SECS: u64 = 3600;

/// The Python bridge's settings (`[python]` in the runner's config,
/// `--python` on `runner machine`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PythonConfig {
    /// The interpreter: a path, or a name looked up in `PATH`.
    pub interpreter: PathBuf,
    /// Largest reply (the changed context) a hook call may send back.
    pub max_output_bytes: u64,
    /// How long importing the hooks module may take.
    pub startup_timeout_secs: u64,
}

impl Default for PythonConfig {
    fn default() -> Self {
        PythonConfig {
            interpreter: PathBuf::from("python3"),
            max_output_bytes: DEFAULT_PY_MAX_OUTPUT,
            startup_timeout_secs: 60,
        }
    }
}

impl PythonConfig {
    /// Out-of-range values, as (dotted key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(MIN_PY_OUTPUT..=MAX_PY_OUTPUT).contains(&self.max_output_bytes) {
            out.push((
                "python.max_output_bytes",
                format!(
                    "{} is out of range: must be between {MIN_PY_OUTPUT} and {MAX_PY_OUTPUT}",
                    self.max_output_bytes
                ),
            ));
        }
        if !(1..=MAX_PY_STARTUP_SECS).contains(&self.startup_timeout_secs) {
            out.push((
                "python.startup_timeout_secs",
                format!(
                    "{} is out of range: must be 1 ..= {MAX_PY_STARTUP_SECS} seconds",
                    self.startup_timeout_secs
                ),
            ));
        }
        if self.interpreter.as_os_str().is_empty() {
            out.push(("python.interpreter", "is empty".to_string()));
        }
        out
    }
}

/// A `python:FILE:Class` handler.
pub struct PythonHook {
    name: String,
    file: PathBuf,
    class: String,
    config: PythonConfig,
    proc: tokio::sync::Mutex<Option<Arc<BridgeProc>>>,
    /// Bridges started so far (restarts included), for tests and logs.
    starts: AtomicU64,
}

impl PythonHook {
    pub fn new(name: &str, file: PathBuf, class: String, config: PythonConfig) -> PythonHook {
        PythonHook {
            name: name.to_string(),
            file,
            class,
            config,
            proc: tokio::sync::Mutex::new(None),
            starts: AtomicU64::new(0),
        }
    }

    /// How many bridge processes this hook started.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::SeqCst)
    }

    /// The process id of the running bridge, if any.
    pub async fn pid(&self) -> Option<u32> {
        let g = self.proc.lock().await;
        g.as_ref().filter(|p| p.alive()).and_then(|p| p.pid)
    }

    fn err(&self, kind: ErrorKind, msg: impl std::fmt::Display) -> ExecError {
        ExecError::new(kind, format!("python hook '{}': {msg}", self.name))
    }

    /// The running bridge, started (again) if there is none or it died.
    async fn running(&self) -> Result<Arc<BridgeProc>, ExecError> {
        let mut g = self.proc.lock().await;
        if let Some(p) = g.as_ref().filter(|p| p.alive()) {
            return Ok(p.clone());
        }
        if g.take().is_some() {
            tracing::warn!(hook = %self.name, "python hook bridge exited; starting it again");
        }
        let p = Arc::new(self.start().await?);
        self.starts.fetch_add(1, Ordering::SeqCst);
        *g = Some(p.clone());
        Ok(p)
    }

    async fn start(&self) -> Result<BridgeProc, ExecError> {
        let cap = self.config.max_output_bytes;
        let mut cmd = tokio::process::Command::new(&self.config.interpreter);
        cmd.arg("-u")
            .arg("-c")
            .arg(BRIDGE_SOURCE)
            .arg(&self.file)
            .arg(&self.class)
            .arg(cap.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            let kind = if e.raw_os_error() == Some(libc::EAGAIN) {
                ErrorKind::ResourceExhausted
            } else {
                super::error::io_error_kind(&e)
            };
            self.err(
                kind,
                format!(
                    "cannot start the interpreter {:?}: {e} (set it with --python or `interpreter` under [python])",
                    self.config.interpreter
                ),
            )
        })?;
        let pid = child.id();
        let pgid = pid.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(self.err(ErrorKind::ActionError, "the bridge's pipes are missing"));
        };
        let mut tasks = JoinSet::new();
        let hook = self.name.clone();
        tasks.spawn(forward_stderr(hook.clone(), stderr));
        let mut out = BufReader::new(stdout);
        let line_cap = cap.saturating_add(ENVELOPE);
        let startup = Duration::from_secs(self.config.startup_timeout_secs);
        let mut buf = Vec::new();
        let guard = KillGroup(pgid);
        let first = tokio::time::timeout(startup, read_line_capped(&mut out, line_cap, &mut buf))
            .await
            .map_err(|_| {
                self.err(
                    ErrorKind::ActionError,
                    format!(
                        "loading {}:{} took longer than {}s (python.startup_timeout_secs)",
                        self.file.display(),
                        self.class,
                        startup.as_secs()
                    ),
                )
            })?
            .map_err(|e| self.err(ErrorKind::ActionError, format!("reading the bridge: {e}")))?;
        if first != LineRead::Line {
            let status = tokio::time::timeout(PING_WAIT, child.wait()).await;
            return Err(self.err(
                ErrorKind::ActionError,
                format!(
                    "the bridge exited before it was ready ({}); see the log for its stderr",
                    match status {
                        Ok(Ok(s)) => s.to_string(),
                        _ => "no exit status".to_string(),
                    }
                ),
            ));
        }
        let ready: Value = serde_json::from_slice(&buf).unwrap_or(Value::Null);
        if ready.get("ready") != Some(&Value::Bool(true)) {
            let e = ready.get("error").cloned().unwrap_or(Value::Null);
            if let Some(tb) = e.get("traceback").and_then(Value::as_str) {
                tracing::warn!(hook = %self.name, traceback = tb, "python hooks failed to load");
            }
            return Err(self.err(
                ErrorKind::ActionError,
                format!(
                    "cannot load {}:{}: {}",
                    self.file.display(),
                    self.class,
                    describe_py_error(&e)
                ),
            ));
        }
        if ready.get("stand_in") == Some(&Value::Bool(true)) {
            tracing::info!(hook = %self.name, "flatmachines SDK not installed; the bridge provides its hook base classes");
        }
        std::mem::forget(guard);
        let alive = Arc::new(AtomicBool::new(true));
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tasks.spawn(write_requests(stdin, rx, alive.clone()));
        tasks.spawn(read_replies(
            hook.clone(),
            out,
            line_cap,
            pending.clone(),
            alive.clone(),
            pgid,
        ));
        let watch_alive = alive.clone();
        tasks.spawn(async move {
            // Owns the child: dropping this task (the JoinSet) kills it.
            let status = child.wait().await;
            watch_alive.store(false, Ordering::SeqCst);
            tracing::warn!(hook = %hook, status = ?status.ok(), "python hook bridge exited");
        });
        Ok(BridgeProc {
            tx,
            pending,
            next: AtomicU64::new(1),
            alive,
            pid,
            pgid,
            _tasks: tasks,
        })
    }

    fn request(&self, id: u64, call: &HookCall<'_>, tool: Option<&Value>) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("op".into(), json!("call"));
        m.insert("id".into(), json!(id));
        // A tool request without a call asks for the provider's definitions.
        let event = match (call.event, tool) {
            (super::hooks::HookEvent::Tool, None) => "tool_definitions",
            (e, _) => e.as_str(),
        };
        m.insert("event".into(), json!(event));
        m.insert("state".into(), json!(call.state));
        if let Some(a) = call.action {
            m.insert("action".into(), json!(a));
        }
        m.insert("context".into(), Value::Object(call.context.clone()));
        if let Some(o) = call.output {
            m.insert("output".into(), o.clone());
        }
        if let Some(e) = call.error {
            m.insert(
                "error".into(),
                json!({"kind": e.kind.as_str(), "message": e.message}),
            );
        }
        if let Some(a) = call.args {
            m.insert("args".into(), Value::Object(a.clone()));
        }
        if let Some(t) = tool {
            m.insert("tool".into(), t.clone());
        }
        let mut line = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Send one request and wait for its reply within `timeout`.
    async fn exchange(
        &self,
        call: &HookCall<'_>,
        tool: Option<&Value>,
    ) -> Result<Map<String, Value>, ExecError> {
        let proc = self.running().await?;
        let id = proc.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        lock(&proc.pending).insert(id, tx);
        let mut waiting = Waiting {
            proc: &proc,
            id,
            done: false,
        };
        if proc.tx.send(self.request(id, call, tool)).is_err() {
            waiting.done = true;
            lock(&proc.pending).remove(&id);
            return Err(self.err(ErrorKind::ActionError, "the bridge is not running"));
        }
        let reply = match tokio::time::timeout(call.timeout, rx).await {
            Ok(Ok(v)) => {
                waiting.done = true;
                v
            }
            Ok(Err(_)) => {
                waiting.done = true;
                return Err(self.err(
                    ErrorKind::ActionError,
                    "the bridge exited during the call (it is started again at the next call); see the log",
                ));
            }
            Err(_) => {
                drop(waiting); // cancels the call in the bridge
                if !proc.ping().await {
                    tracing::warn!(hook = %self.name, "python hook bridge does not answer after a timed-out call; killing it");
                    proc.kill();
                }
                return Err(self.err(
                    ErrorKind::ActionError,
                    format!(
                        "{} timed out after {:.1}s",
                        describe_call(call),
                        call.timeout.as_secs_f64()
                    ),
                ));
            }
        };
        let Value::Object(reply) = reply else {
            return Err(self.err(
                ErrorKind::ActionError,
                "the bridge sent a reply that is not an object",
            ));
        };
        if reply.get("ok") == Some(&Value::Bool(true)) {
            return Ok(reply);
        }
        let e = reply.get("error").cloned().unwrap_or(Value::Null);
        if let Some(tb) = e.get("traceback").and_then(Value::as_str) {
            tracing::warn!(hook = %self.name, traceback = tb, "python hook raised");
        }
        let kind = match e.get("kind").and_then(Value::as_str) {
            Some("output_too_large") => ErrorKind::OutputTooLarge,
            _ => ErrorKind::ActionError,
        };
        Err(ExecError::new(kind, describe_py_error(&e)))
    }

    /// Run a tool of the hooks' tool provider (`get_tool_provider(state)`):
    /// `(content, is_error)`.
    pub async fn run_tool(
        &self,
        call: &HookCall<'_>,
        name: &str,
        id: &str,
        arguments: &Value,
    ) -> Result<(String, bool), ExecError> {
        let tool = json!({"name": name, "id": id, "arguments": arguments});
        let r = self.exchange(call, Some(&tool)).await?;
        let t = r.get("tool_result").cloned().unwrap_or(Value::Null);
        Ok((
            t.get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            t.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        ))
    }
}

fn describe_call(call: &HookCall<'_>) -> String {
    match call.action {
        Some(a) => format!("action '{a}'"),
        None => format!("{} in state '{}'", call.event, call.state),
    }
}

/// `"ValueError: message"` from a bridge error object.
fn describe_py_error(e: &Value) -> String {
    let ty = e.get("type").and_then(Value::as_str).unwrap_or("Error");
    let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
    if msg.is_empty() {
        ty.to_string()
    } else {
        format!("{ty}: {msg}")
    }
}

#[async_trait]
impl Hook for PythonHook {
    async fn call(&self, call: &HookCall<'_>) -> Result<HookReply, ExecError> {
        let r = self.exchange(call, None).await?;
        let set = match r.get("set") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let unset = match r.get("unset") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Ok(HookReply {
            set,
            unset,
            output: r.get("output").cloned(),
            next_state: r
                .get("next_state")
                .and_then(Value::as_str)
                .map(str::to_string),
            replace_output: true,
        })
    }

    async fn tool(
        &self,
        call: &HookCall<'_>,
        name: &str,
        id: &str,
        arguments: &Value,
    ) -> Result<(String, bool), ExecError> {
        self.run_tool(call, name, id, arguments).await
    }

    async fn tool_definitions(&self, call: &HookCall<'_>) -> Result<Vec<Value>, ExecError> {
        let r = self.exchange(call, None).await?;
        Ok(match r.get("tool_definitions") {
            Some(Value::Array(defs)) => defs
                .iter()
                .filter(|d| d.get("function").and_then(|f| f.get("name")).is_some())
                .cloned()
                .collect(),
            _ => Vec::new(),
        })
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// One running bridge process.
struct BridgeProc {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next: AtomicU64,
    alive: Arc<AtomicBool>,
    pid: Option<u32>,
    pgid: i32,
    /// stderr forwarder, writer, reader and the child's waiter: dropping
    /// the set aborts them and the waiter's drop kills the child.
    _tasks: JoinSet<()>,
}

impl BridgeProc {
    fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && !self.tx.is_closed()
    }

    fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        kill_group(self.pgid);
    }

    /// Whether the bridge answers a ping within [`PING_WAIT`].
    async fn ping(&self) -> bool {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let mut line = serde_json::to_vec(&json!({"op": "ping", "id": id})).unwrap_or_default();
        line.push(b'\n');
        if self.tx.send(line).is_err() {
            lock(&self.pending).remove(&id);
            return false;
        }
        let ok = matches!(tokio::time::timeout(PING_WAIT, rx).await, Ok(Ok(_)));
        lock(&self.pending).remove(&id);
        ok
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        kill_group(self.pgid);
    }
}

fn kill_group(pgid: i32) {
    // pgid 0 or 1 would signal our own group or every process.
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Kills a bridge that failed to start.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// A call in flight: forgotten (and cancelled in the bridge) when its
/// caller stops waiting without a reply.
struct Waiting<'a> {
    proc: &'a BridgeProc,
    id: u64,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        lock(&self.proc.pending).remove(&self.id);
        let mut line =
            serde_json::to_vec(&json!({"op": "cancel", "id": self.id})).unwrap_or_default();
        line.push(b'\n');
        let _ = self.proc.tx.send(line);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Read one `\n`-terminated line into `buf` (without the newline), never
/// holding more than `cap` bytes. A longer line is consumed and reported
/// as [`LineRead::TooLong`].
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    cap: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<LineRead> {
    buf.clear();
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if too_long {
                LineRead::TooLong
            } else if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (take, end) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len().saturating_add(take) > cap {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        let used = if end { take + 1 } else { take };
        r.consume(used);
        if end {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

async fn forward_stderr(hook: String, stderr: tokio::process::ChildStderr) {
    let mut r = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        match read_line_capped(&mut r, STDERR_LINE_CAP as u64, &mut buf).await {
            Ok(LineRead::Line) => {
                let line = String::from_utf8_lossy(&buf);
                // Shown by default: Python itself only writes warnings,
                // errors and what the hooks print there on purpose.
                tracing::warn!(hook = %hook, "python: {}", line.trim_end());
            }
            Ok(LineRead::TooLong) => {
                tracing::warn!(hook = %hook, "python: (a stderr line over {STDERR_LINE_CAP} bytes was dropped)");
            }
            Ok(LineRead::Eof) | Err(_) => return,
        }
    }
}

async fn write_requests(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    alive: Arc<AtomicBool>,
) {
    while let Some(line) = rx.recv().await {
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
    alive.store(false, Ordering::SeqCst);
}

async fn read_replies(
    hook: String,
    mut out: BufReader<tokio::process::ChildStdout>,
    cap: u64,
    pending: Pending,
    alive: Arc<AtomicBool>,
    pgid: i32,
) {
    let mut buf = Vec::new();
    loop {
        match read_line_capped(&mut out, cap, &mut buf).await {
            Ok(LineRead::Line) => {
                let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
                    tracing::warn!(hook = %hook, "python hook bridge wrote a line that is not JSON");
                    continue;
                };
                let Some(id) = v.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                let waiter = lock(&pending).remove(&id);
                if let Some(w) = waiter {
                    let _ = w.send(v);
                }
            }
            Ok(LineRead::TooLong) => {
                tracing::error!(hook = %hook, cap, "python hook bridge wrote a reply over its cap; killing it");
                kill_group(pgid);
                break;
            }
            Ok(LineRead::Eof) | Err(_) => break,
        }
    }
    alive.store(false, Ordering::SeqCst);
    // The calls in flight get a closed channel: "the bridge exited".
    lock(&pending).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_under_a_cap() {
        let data: &[u8] = b"abc\n0123456789\nxy";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_capped(&mut r, 5, &mut buf).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"abc");
        assert_eq!(
            read_line_capped(&mut r, 5, &mut buf).await.unwrap(),
            LineRead::TooLong
        );
        assert!(buf.is_empty());
        assert_eq!(
            read_line_capped(&mut r, 5, &mut buf).await.unwrap(),
            LineRead::Line
        );
        assert_eq!(buf, b"xy");
        assert_eq!(
            read_line_capped(&mut r, 5, &mut buf).await.unwrap(),
            LineRead::Eof
        );
    }

    #[test]
    fn config_ranges() {
        assert!(PythonConfig::default().problems().is_empty());
        let c = PythonConfig {
            max_output_bytes: 1,
            startup_timeout_secs: 0,
            interpreter: PathBuf::new(),
        };
        assert_eq!(c.problems().len(), 3);
    }
}
