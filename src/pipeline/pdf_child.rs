//! PDF extraction in a worker process, under limits.
//!
//! A PDF is input from outside, and the parser is a large crate that was
//! not written for hostile files: a 578-byte page-tree cycle spun forever,
//! a 2 MB decompression bomb took the process to 7 GB and aborted it, and a
//! 10k-page file took a minute. In the daemon any of these held a worker
//! slot and its lease for good, blocked the drain, or killed every other
//! paper in flight. So the runner never parses a PDF itself: each
//! extraction is the same `runner` binary started with the hidden
//! subcommand [`WORKER_SUBCOMMAND`], which extracts one file and writes the
//! pages to stdout. The parent
//!
//! * checks the file size before starting anything (`pdf.max_file_mb`);
//! * starts the worker with no stdin, an empty environment (no API keys),
//!   `/` as working directory, its own process group, `RLIMIT_AS` at
//!   `pdf.max_memory_mb`, `RLIMIT_CPU` as a backstop and no core dumps;
//! * reads its reply with a cap (`pdf.max_text_mb`) and its stderr with a
//!   small one (draining the rest, so the worker never blocks on a pipe);
//! * kills the whole process group at `pdf.timeout_secs` of wall time, or
//!   when the extraction future is dropped (a cancelled or shut-down phase),
//!   and reaps it, so no zombie and no blocked thread is left behind;
//! * maps what happened to an error kind: a limit broken is `pdf_too_large`
//!   (size, pages, decoded stream, text, memory) or `pdf_timeout` (wall or
//!   CPU time), both permanent; a worker that cannot start for lack of
//!   processes or descriptors is `resource_exhausted`, a worker that is not
//!   a runner at all is `internal` (both retryable).
//!
//! Inside the worker the page limit is enforced before any page is
//! extracted and every stream is inflated with a cap (see `pdf`).

use super::pdf::{self, ExtractLimits, ExtractedPdf, PdfError};
use serde::{Deserialize, Serialize};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The hidden `runner` subcommand that runs one extraction.
pub const WORKER_SUBCOMMAND: &str = "__extract-pdf";

/// Environment variable naming the worker binary, for embedders and test
/// harnesses whose own executable is not `runner`.
pub const WORKER_ENV: &str = "RUNNER_PDF_WORKER";

/// First line of every worker reply: a program that is not a runner worker
/// (a wrong `RUNNER_PDF_WORKER`, a test harness) cannot be mistaken for one.
const MAGIC: &[u8] = b"paper-runner-pdf-worker/1\n";

/// Worker stderr kept for the error message and the log; the rest is read
/// and dropped.
const STDERR_CAP: usize = 16 << 10;

/// How long to wait for a killed worker to be reaped before leaving it to
/// tokio's orphan reaper (a process in uninterruptible sleep).
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Exit status of a worker whose memory ran out (an allocation failed under
/// its `RLIMIT_AS`, `pdf.max_memory_mb`): set by [`WorkerAlloc`], read by
/// the parent as a typed signal (it never reads the worker's stderr text).
/// Distinct from the worker's other statuses: 0 (a reply was written), 1
/// (the reply could not be written), 2 (bad arguments), 101 (a panic).
pub const OUT_OF_MEMORY_EXIT: i32 = 75;

/// Set once this process is an extraction worker ([`run_worker`]).
static IS_WORKER: AtomicBool = AtomicBool::new(false);

/// The `runner` binary's global allocator: the system allocator, except
/// that in an extraction worker a failed allocation ends the process with
/// [`OUT_OF_MEMORY_EXIT`] instead of the generic abort, so the parent can
/// tell "the PDF needed more memory than allowed" (`pdf_too_large`) from
/// a crash of the extractor (`pdf_unreadable`) by exit status alone.
/// Outside a worker it behaves exactly like [`std::alloc::System`].
pub struct WorkerAlloc;

impl WorkerAlloc {
    #[cold]
    fn failed() {
        if IS_WORKER.load(Ordering::Relaxed) {
            const MSG: &[u8] = b"pdf worker: memory allocation failed (pdf.max_memory_mb)\n";
            // SAFETY: write(2) and _exit(2) are async-signal-safe system
            // calls that allocate nothing; the buffer is a static. No
            // destructor or unwinding may run inside the allocator, so the
            // worker ends with _exit (its reply was not written; the parent
            // reads the status).
            unsafe {
                libc::write(2, MSG.as_ptr().cast(), MSG.len());
                libc::_exit(OUT_OF_MEMORY_EXIT);
            }
        }
    }
}

// SAFETY: every method forwards to `System` with the same arguments and
// returns its result; `failed` only ever ends the process.
unsafe impl GlobalAlloc for WorkerAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if p.is_null() {
            Self::failed();
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if p.is_null() {
            Self::failed();
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            Self::failed();
        }
        p
    }
}

/// The CPU-time backstop allows this many seconds of CPU per second of
/// wall time. The extraction runs on one thread, so it is generous: only a
/// runaway the wall-time limit somehow missed meets it.
const CPU_PER_WALL: u64 = 4;

/// The `[pdf]` section of the configuration: limits on one extraction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PdfConfig {
    /// Wall-time limit of one extraction, seconds.
    pub timeout_secs: u64,
    /// Address-space limit (`RLIMIT_AS`) of the worker process, MiB.
    pub max_memory_mb: u64,
    /// More pages than this fails the paper before extraction starts.
    pub max_pages: usize,
    /// Larger PDF files fail the paper without being opened, MiB.
    pub max_file_mb: u64,
    /// Extracted text over this size fails the paper, MiB.
    pub max_text_mb: u64,
}

impl Default for PdfConfig {
    fn default() -> Self {
        PdfConfig {
            timeout_secs: 60,
            max_memory_mb: 1024,
            max_pages: 2000,
            max_file_mb: 100,
            max_text_mb: 64,
        }
    }
}

impl PdfConfig {
    /// Out-of-range values as (dotted key, message). The bounds keep every
    /// derived byte count and deadline far from overflow, and the memory
    /// floor leaves room for the worker's own code and threads.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut range = |key: &'static str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                out.push((key, format!("must be between {lo} and {hi} (got {v})")));
            }
        };
        range("pdf.timeout_secs", self.timeout_secs, 1, 86_400);
        range("pdf.max_memory_mb", self.max_memory_mb, 128, 1 << 20);
        range("pdf.max_pages", self.max_pages as u64, 1, 1_000_000);
        range("pdf.max_file_mb", self.max_file_mb, 1, 1 << 16);
        range("pdf.max_text_mb", self.max_text_mb, 1, 1 << 14);
        out
    }

    fn max_file_bytes(&self) -> u64 {
        self.max_file_mb.saturating_mul(1 << 20)
    }

    fn max_text_bytes(&self) -> u64 {
        self.max_text_mb.saturating_mul(1 << 20)
    }

    fn max_memory_bytes(&self) -> u64 {
        self.max_memory_mb.saturating_mul(1 << 20)
    }

    /// The cap on one inflated page content stream: a quarter of the
    /// memory limit, so a bomb is named as such instead of meeting the
    /// memory limit halfway through.
    pub fn max_stream_bytes(&self) -> u64 {
        (self.max_memory_bytes() / 4).min(ExtractLimits::default().max_stream_bytes)
    }
}

/// The worker's reply on stdout, after [`MAGIC`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok { pages: Vec<String>, ms: u64 },
    Err { kind: String, message: String },
}

fn reply_of(result: Result<ExtractedPdf, PdfError>) -> Reply {
    match result {
        Ok(x) => Reply::Ok {
            pages: x.pages,
            ms: x.ms,
        },
        Err(e) => {
            let kind = match &e {
                PdfError::Encrypted(_) => "encrypted",
                PdfError::Unreadable(_) => "unreadable",
                PdfError::Io { .. } => "io",
                PdfError::TooLarge(_) => "too_large",
                PdfError::Timeout(_) => "timeout",
                PdfError::Worker(_) => "worker",
                PdfError::Exhausted(_) => "exhausted",
            };
            let message = match e {
                PdfError::Encrypted(m)
                | PdfError::Unreadable(m)
                | PdfError::TooLarge(m)
                | PdfError::Timeout(m)
                | PdfError::Worker(m)
                | PdfError::Exhausted(m) => m,
                PdfError::Io { message, .. } => message,
            };
            Reply::Err {
                kind: kind.into(),
                message,
            }
        }
    }
}

fn error_of(kind: &str, message: String, path: &Path) -> PdfError {
    match kind {
        "encrypted" => PdfError::Encrypted(message),
        "unreadable" => PdfError::Unreadable(message),
        "io" => PdfError::Io {
            path: path.display().to_string(),
            message,
        },
        "too_large" => PdfError::TooLarge(message),
        "timeout" => PdfError::Timeout(message),
        "exhausted" => PdfError::Exhausted(message),
        _ => PdfError::Worker(message),
    }
}

/// The worker side: extracts `path` under the given limits and writes the
/// reply to `out`. Returns the process exit code (0 whenever a reply was
/// written, whatever it says).
pub fn run_worker(
    path: &Path,
    max_file_bytes: u64,
    limits: &ExtractLimits,
    out: &mut dyn std::io::Write,
) -> u8 {
    IS_WORKER.store(true, Ordering::Relaxed);
    let result =
        pdf::read_capped(path, max_file_bytes).and_then(|b| pdf::extract_bytes_limited(&b, limits));
    let body = match serde_json::to_vec(&reply_of(result)) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cannot encode the reply: {e}");
            return 1;
        }
    };
    match out
        .write_all(MAGIC)
        .and_then(|()| out.write_all(&body))
        .and_then(|()| out.flush())
    {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cannot write the reply: {e}");
            1
        }
    }
}

/// Runs extractions in worker processes under a [`PdfConfig`].
#[derive(Debug, Clone)]
pub struct PdfWorker {
    cfg: PdfConfig,
    /// None: found at each extraction ([`worker_program`]).
    program: Option<PathBuf>,
}

/// The binary to run as worker: `$RUNNER_PDF_WORKER` when set, else this
/// executable; inside cargo's test harness (an executable in
/// `target/<profile>/deps/`, which has no worker subcommand) the `runner`
/// binary cargo built next to it.
pub fn worker_program() -> Result<PathBuf, PdfError> {
    if let Some(p) = std::env::var_os(WORKER_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()
        .map_err(|e| PdfError::Worker(format!("cannot find the runner executable: {e}")))?;
    if let Some(dir) = exe.parent().filter(|d| d.ends_with("deps")) {
        if let Some(sibling) = dir.parent().map(|p| p.join("runner")) {
            if sibling.is_file() {
                return Ok(sibling);
            }
        }
    }
    Ok(exe)
}

impl PdfWorker {
    pub fn new(cfg: PdfConfig) -> PdfWorker {
        PdfWorker { cfg, program: None }
    }

    /// A worker run from an explicit binary (tests, embedders).
    pub fn with_program(cfg: PdfConfig, program: PathBuf) -> PdfWorker {
        PdfWorker {
            cfg,
            program: Some(program),
        }
    }

    pub fn config(&self) -> &PdfConfig {
        &self.cfg
    }

    /// Extracts `path` in a worker process under the configured limits.
    /// Cancel-safe: dropping the future kills the worker's process group.
    pub async fn extract(&self, path: &Path) -> Result<ExtractedPdf, PdfError> {
        let cfg = &self.cfg;
        let io = |e: std::io::Error| pdf::io_error(path, &e);
        // Cheap checks first: nothing is started for a file that is not
        // there, not a regular file (a FIFO would block the worker until
        // its deadline) or too big.
        let meta = tokio::fs::metadata(path).await.map_err(io)?;
        if !meta.is_file() {
            return Err(PdfError::Io {
                path: path.display().to_string(),
                message: "not a regular file".into(),
            });
        }
        if meta.len() > cfg.max_file_bytes() {
            return Err(PdfError::TooLarge(format!(
                "{}: {} bytes, over the limit of {} MiB (pdf.max_file_mb)",
                path.display(),
                meta.len(),
                cfg.max_file_mb
            )));
        }
        // The worker runs in `/`, so it gets an absolute path.
        let absolute = tokio::fs::canonicalize(path).await.map_err(io)?;
        let program = match &self.program {
            Some(p) => p.clone(),
            None => worker_program()?,
        };
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(["--log-format", "human", "--log-level", "warn"])
            .arg(WORKER_SUBCOMMAND)
            .arg("--max-pages")
            .arg(cfg.max_pages.to_string())
            .arg("--max-file-bytes")
            .arg(cfg.max_file_bytes().to_string())
            .arg("--max-stream-bytes")
            .arg(cfg.max_stream_bytes().to_string())
            .arg("--")
            .arg(&absolute)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let memory = cfg.max_memory_bytes();
        let cpu = cfg
            .timeout_secs
            .saturating_mul(CPU_PER_WALL)
            .saturating_add(5);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes getrlimit/setrlimit system calls (async-signal-safe), with
        // no allocation and no locks.
        unsafe {
            cmd.pre_exec(move || {
                limit(libc::RLIMIT_AS as _, memory, memory)?;
                limit(libc::RLIMIT_CPU as _, cpu, cpu.saturating_add(5))?;
                limit(libc::RLIMIT_CORE as _, 0, 0)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN) => {
                PdfError::Exhausted(format!("cannot start {}: {e}", program.display()))
            }
            _ => PdfError::Worker(format!("cannot start {}: {e}", program.display())),
        })?;
        let Some(pid) = child.id() else {
            return Err(PdfError::Worker(
                "the worker exited before it started".into(),
            ));
        };
        let mut group = GroupKill(Some(pid));
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            return Err(PdfError::Worker("the worker has no pipes".into()));
        };
        let out_cap = cfg
            .max_text_bytes()
            .saturating_add(MAGIC.len() as u64 + 4096);
        let work = async {
            let (out, err) = tokio::join!(
                async {
                    let r = read_capped(&mut stdout, out_cap, false).await;
                    if !matches!(r, Ok((_, false))) {
                        // Over the cap (or unreadable): stop the worker
                        // now rather than at its deadline.
                        kill_group(pid);
                    }
                    r
                },
                read_capped(&mut stderr, STDERR_CAP as u64, true),
            );
            let status = child.wait().await;
            (out, err, status)
        };
        let outcome = tokio::time::timeout(Duration::from_secs(cfg.timeout_secs), work).await;
        let (out, err, status) = match outcome {
            Ok(done) => done,
            Err(_) => {
                kill_group(pid);
                if let Ok(Ok(_)) = tokio::time::timeout(REAP_GRACE, child.wait()).await {
                    group.0 = None;
                }
                return Err(PdfError::Timeout(format!(
                    "{}: extraction ran past {} s (pdf.timeout_secs); the worker was killed",
                    path.display(),
                    cfg.timeout_secs
                )));
            }
        };
        let status =
            status.map_err(|e| PdfError::Worker(format!("waiting for the worker: {e}")))?;
        // Reaped: the process group id may be reused from now on.
        group.0 = None;
        let stderr_text = match &err {
            Ok((bytes, _)) => String::from_utf8_lossy(bytes).into_owned(),
            Err(_) => String::new(),
        };
        let (stdout_bytes, over) =
            out.map_err(|e| PdfError::Worker(format!("reading the worker's reply: {e}")))?;
        if over {
            return Err(PdfError::TooLarge(format!(
                "{}: extracted text over {} MiB (pdf.max_text_mb)",
                path.display(),
                cfg.max_text_mb
            )));
        }
        interpret(path, cfg, &program, status, &stdout_bytes, &stderr_text)
    }
}

/// What the worker's exit and reply mean.
fn interpret(
    path: &Path,
    cfg: &PdfConfig,
    program: &Path,
    status: ExitStatus,
    stdout: &[u8],
    stderr: &str,
) -> Result<ExtractedPdf, PdfError> {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(body) = stdout.strip_prefix(MAGIC) {
        if let Ok(reply) = serde_json::from_slice::<Reply>(body) {
            for line in stderr.lines().filter(|l| !l.trim().is_empty()).take(20) {
                tracing::warn!(pdf = %path.display(), "{line}");
            }
            return match reply {
                Reply::Ok { pages, ms } => Ok(ExtractedPdf {
                    pages,
                    ms,
                    stats: Default::default(),
                }),
                Reply::Err { kind, message } => Err(error_of(&kind, message, path)),
            };
        }
    }
    let tail = excerpt(stderr);
    let memory_error = || {
        PdfError::TooLarge(format!(
            "{}: extraction needed more than {} MiB of memory (pdf.max_memory_mb)",
            path.display(),
            cfg.max_memory_mb
        ))
    };
    if status.code() == Some(OUT_OF_MEMORY_EXIT) {
        return Err(memory_error());
    }
    match status.signal() {
        Some(libc::SIGXCPU) => {
            return Err(PdfError::Timeout(format!(
                "{}: extraction used its CPU-time limit ({} s of CPU per s of pdf.timeout_secs)",
                path.display(),
                CPU_PER_WALL
            )))
        }
        // Not our kill (we return before looking at the status then): the
        // kernel's OOM killer or a cgroup limit.
        Some(libc::SIGKILL) => return Err(memory_error()),
        Some(sig) => {
            return Err(PdfError::Unreadable(format!(
                "the extractor crashed on this file (signal {sig}): {tail}"
            )))
        }
        None => {}
    }
    if status.code() == Some(101) {
        return Err(PdfError::Unreadable(format!(
            "the extractor panicked on this file: {tail}"
        )));
    }
    Err(PdfError::Worker(format!(
        "{} is not a working PDF worker ({status}, no reply; set {WORKER_ENV}): {tail}",
        program.display()
    )))
}

/// The last line or two of the worker's stderr, for an error message.
fn excerpt(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(2)..].join(" | ");
    let mut cut: String = tail.chars().take(400).collect();
    if cut.len() < tail.len() {
        cut.push('…');
    }
    cut
}

/// Reads at most `cap` bytes into memory and says whether there was more.
/// With `drain` the rest is read and dropped so the writer never blocks on
/// the pipe (stderr); without it reading stops at once (the reply pipe,
/// whose overflow makes the caller kill the worker).
async fn read_capped<R: AsyncRead + Unpin>(
    r: &mut R,
    cap: u64,
    drain: bool,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    (&mut *r).take(cap).read_to_end(&mut kept).await?;
    let mut over = false;
    let mut sink = [0u8; 8192];
    loop {
        let n = r.read(&mut sink).await?;
        if n == 0 {
            break;
        }
        over = true;
        if !drain {
            break;
        }
    }
    Ok((kept, over))
}

/// Sets one resource limit, never above the inherited hard limit (raising
/// it would fail and the worker would not start at all).
fn limit(resource: libc::c_int, soft: u64, hard: u64) -> std::io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a stack value.
    unsafe {
        if libc::getrlimit(resource as _, &mut current) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let max = current.rlim_max;
        let wanted = libc::rlimit {
            rlim_cur: soft.min(hard).min(max),
            rlim_max: hard.min(max),
        };
        if libc::setrlimit(resource as _, &wanted) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 0 {
            // SAFETY: a signal to the worker's own process group (its pid,
            // as it was started with process_group(0)), before it is reaped.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

/// Kills the worker's process group when dropped while armed: the future
/// was cancelled, or returned early. Disarmed once the worker is reaped.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            kill_group(pgid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(PdfConfig::default().problems().is_empty());
        let bad = PdfConfig {
            timeout_secs: 0,
            max_memory_mb: 1,
            max_pages: 0,
            max_file_mb: u64::MAX,
            max_text_mb: 0,
        };
        let keys: Vec<_> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "pdf.timeout_secs",
                "pdf.max_memory_mb",
                "pdf.max_pages",
                "pdf.max_file_mb",
                "pdf.max_text_mb"
            ]
        );
    }

    #[test]
    fn replies_round_trip() {
        let mut out = Vec::new();
        let code = run_worker(
            Path::new("/definitely/not/here.pdf"),
            1 << 20,
            &ExtractLimits::default(),
            &mut out,
        );
        assert_eq!(code, 0);
        let body = out.strip_prefix(MAGIC).expect("magic first");
        let reply: Reply = serde_json::from_slice(body).unwrap();
        let Reply::Err { kind, message } = reply else {
            panic!("an error reply")
        };
        assert_eq!(kind, "io");
        assert!(message.contains("No such file"), "{message}");
    }

    #[tokio::test]
    async fn a_program_that_is_not_a_worker_is_an_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let pdf = dir.path().join("x.pdf");
        std::fs::write(&pdf, b"%PDF-1.4\n").unwrap();
        let w = PdfWorker::with_program(PdfConfig::default(), PathBuf::from("/bin/true"));
        let e = w.extract(&pdf).await.unwrap_err();
        assert!(matches!(e, PdfError::Worker(_)), "{e}");
        assert_eq!(e.kind(), crate::engine::ErrorKind::Internal);
    }
}
