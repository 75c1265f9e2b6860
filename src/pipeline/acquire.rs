//! `acquire_pdf`: a paper's PDF from a local file, the cache, or arXiv.
//!
//! Downloads are polite: one request per host every `min_interval` (arXiv
//! asks for one every 3 s), retries only on 408/429/5xx/transport errors and
//! honours `Retry-After` up to `max_retry_after`; 404 is permanent
//! (`not_found`). A download is streamed to a temp file in the cache folder
//! with a byte cap (over it: `pdf_too_large`, temp file removed), checked
//! (`%PDF` magic) and renamed into place, so neither a crash nor a hostile
//! server ever leaves a half-written PDF in the cache or a body in memory.

use crate::engine::{ErrorKind, ExecError};
use crate::llm::{Rate, RateLimiter};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The runner config's `[download]` section: limits on PDF downloads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadConfig {
    /// Larger PDFs are refused (`pdf_too_large`), bytes.
    pub max_pdf_bytes: u64,
    /// Longest wait honoured from a server's `Retry-After`, seconds.
    pub max_retry_after_secs: u64,
    /// Whole-request deadline of one download attempt, seconds.
    pub timeout_secs: u64,
}

/// Upper bounds of the `[download]` keys: larger values are typos, and
/// bounded values keep every deadline representable.
const MAX_PDF_BYTES_LIMIT: u64 = 4 * 1024 * 1024 * 1024;
const MAX_WAIT_LIMIT_SECS: u64 = 86_400;

impl Default for DownloadConfig {
    fn default() -> Self {
        let d = AcquireConfig::default();
        DownloadConfig {
            max_pdf_bytes: d.max_bytes,
            max_retry_after_secs: d.max_retry_after.as_secs(),
            timeout_secs: d.timeout.as_secs(),
        }
    }
}

impl DownloadConfig {
    /// (key, problem) for every out-of-range value; empty when usable.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=MAX_PDF_BYTES_LIMIT).contains(&self.max_pdf_bytes) {
            out.push((
                "download.max_pdf_bytes",
                format!(
                    "must be from 1 to {MAX_PDF_BYTES_LIMIT} (got {})",
                    self.max_pdf_bytes
                ),
            ));
        }
        if self.max_retry_after_secs > MAX_WAIT_LIMIT_SECS {
            out.push((
                "download.max_retry_after_secs",
                format!(
                    "must be at most {MAX_WAIT_LIMIT_SECS} (got {})",
                    self.max_retry_after_secs
                ),
            ));
        }
        if !(1..=MAX_WAIT_LIMIT_SECS).contains(&self.timeout_secs) {
            out.push((
                "download.timeout_secs",
                format!(
                    "must be from 1 to {MAX_WAIT_LIMIT_SECS} (got {})",
                    self.timeout_secs
                ),
            ));
        }
        out
    }

    /// Apply these limits to an acquire config (values clamped again, so an
    /// unvalidated config cannot make a deadline overflow).
    pub fn apply(&self, c: &mut AcquireConfig) {
        c.max_bytes = self.max_pdf_bytes.clamp(1, MAX_PDF_BYTES_LIMIT);
        c.max_retry_after = Duration::from_secs(self.max_retry_after_secs.min(MAX_WAIT_LIMIT_SECS));
        c.timeout = Duration::from_secs(self.timeout_secs.clamp(1, MAX_WAIT_LIMIT_SECS));
    }
}

/// Where and how PDFs are fetched.
#[derive(Debug, Clone)]
pub struct AcquireConfig {
    /// `{pdf_base_url}/{arxiv_id}` is fetched.
    pub pdf_base_url: String,
    /// Cache folder: `<pdf_dir>/<safe_id>.pdf`.
    pub pdf_dir: PathBuf,
    /// Larger downloads are refused.
    pub max_bytes: u64,
    /// Minimum spacing of requests to one host.
    pub min_interval: Duration,
    /// Waits between attempts (retryable failures only).
    pub backoffs: Vec<Duration>,
    /// Whole-request deadline of one attempt (body included).
    pub timeout: Duration,
    /// Cap on a server's `Retry-After` (longer requests wait this long).
    pub max_retry_after: Duration,
}

impl Default for AcquireConfig {
    fn default() -> Self {
        AcquireConfig {
            pdf_base_url: "https://export.arxiv.org/pdf".into(),
            pdf_dir: PathBuf::from("data/pdfs"),
            max_bytes: 50 * 1024 * 1024,
            min_interval: Duration::from_secs(3),
            backoffs: [2, 8, 25].into_iter().map(Duration::from_secs).collect(),
            timeout: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

static NEW_STYLE: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: compiling it cannot fail.
    Regex::new(r"^\d{4}\.\d{4,5}(v\d+)?$").expect("constant regex")
});
static OLD_STYLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z][a-z\-]*(\.[A-Z]{2})?/\d{7}(v\d+)?$").expect("constant regex")
});

/// Validate an arXiv id (`2401.01234v2`, `hep-th/9901001`) and return the
/// file-name-safe form (`/` → `_`). Anything else — including `..` or
/// absolute paths — is refused, so an id can never escape the cache folder.
pub fn safe_id(arxiv_id: &str) -> Result<String, ExecError> {
    let id = arxiv_id.trim();
    if NEW_STYLE.is_match(id) || OLD_STYLE.is_match(id) {
        Ok(id.replace('/', "_"))
    } else {
        Err(ExecError::new(
            ErrorKind::InvalidRequest,
            format!(
                "'{arxiv_id}' is not an arXiv id (expected e.g. 2401.01234v2 or hep-th/9901001)"
            ),
        ))
    }
}

/// The `arxiv_id` without a version suffix.
pub fn base_id(arxiv_id: &str) -> &str {
    match arxiv_id.rfind('v') {
        Some(i)
            if i > 0
                && arxiv_id[i + 1..].chars().all(|c| c.is_ascii_digit())
                && i + 1 < arxiv_id.len() =>
        {
            &arxiv_id[..i]
        }
        _ => arxiv_id,
    }
}

/// Fetches PDFs; share one per process (one connection pool, one host pacer).
pub struct Acquirer {
    http: reqwest::Client,
    pacer: Arc<RateLimiter>,
    pub config: AcquireConfig,
}

fn err(kind: ErrorKind, msg: String) -> ExecError {
    ExecError::new(kind, msg)
}

impl Acquirer {
    pub fn new(config: AcquireConfig) -> Result<Acquirer, ExecError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "paper-runner/",
                env!("CARGO_PKG_VERSION"),
                " (research paper analysis; polite: 1 request / 3 s)"
            ))
            .timeout(config.timeout)
            .build()
            .map_err(|e| {
                err(
                    ErrorKind::ActionError,
                    format!("cannot build HTTP client: {e}"),
                )
            })?;
        Ok(Acquirer {
            http,
            pacer: Arc::new(RateLimiter::new()),
            config,
        })
    }

    /// The PDF for `arxiv_id`: `local` if given, else the cache, else a download.
    pub async fn acquire(
        &self,
        arxiv_id: &str,
        local: Option<&Path>,
    ) -> Result<PathBuf, ExecError> {
        if let Some(p) = local {
            return check_local(p);
        }
        let safe = safe_id(arxiv_id)?;
        let target = self.config.pdf_dir.join(format!("{safe}.pdf"));
        if cached_pdf(&target)? {
            return Ok(target);
        }
        let url = format!(
            "{}/{}",
            self.config.pdf_base_url.trim_end_matches('/'),
            arxiv_id.trim()
        );
        self.download(&url, &target).await?;
        Ok(target)
    }

    async fn download(&self, url: &str, target: &Path) -> Result<(), ExecError> {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let rate = Rate {
            count: 1,
            per: self.config.min_interval.max(Duration::from_millis(1)),
        };
        let mut attempt = 0usize;
        loop {
            self.pacer.acquire(&host, Some(rate)).await;
            let outcome = self.fetch_once(url, target).await;
            let (e, retry_after) = match outcome {
                Ok(()) => return Ok(()),
                Err(x) => x,
            };
            let Some(backoff) = self.config.backoffs.get(attempt).copied() else {
                return Err(e);
            };
            if !e.kind.is_retryable() {
                return Err(e);
            }
            let wait = retry_wait(retry_after, backoff, self.config.max_retry_after);
            tracing::info!(url, attempt = attempt + 1, wait_s = wait.as_secs_f64(), error = %e.message, "retrying PDF download");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One GET, streamed into `target` via a temp file. Errors come with
    /// the server's Retry-After (capped), if any.
    async fn fetch_once(&self, url: &str, target: &Path) -> Result<(), (ExecError, Option<f64>)> {
        let resp = self.http.get(url).send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::ServerError
            };
            (err(kind, format!("GET {url} failed: {e}")), None)
        })?;
        let status = resp.status().as_u16();
        let retry_after = crate::llm::errors::retry_after_capped(
            resp.headers(),
            self.config.max_retry_after.as_secs_f64(),
        );
        match status {
            200 => {}
            404 | 410 => {
                return Err((
                    err(
                        ErrorKind::NotFound,
                        format!("GET {url}: HTTP {status}: no such paper"),
                    ),
                    None,
                ))
            }
            408 => {
                return Err((
                    err(ErrorKind::Timeout, format!("GET {url}: HTTP 408")),
                    retry_after,
                ))
            }
            429 => {
                return Err((
                    err(ErrorKind::RateLimit, format!("GET {url}: HTTP 429")),
                    retry_after,
                ))
            }
            500..=599 => {
                return Err((
                    err(ErrorKind::ServerError, format!("GET {url}: HTTP {status}")),
                    retry_after,
                ))
            }
            _ => {
                return Err((
                    err(ErrorKind::ActionError, format!("GET {url}: HTTP {status}")),
                    None,
                ))
            }
        }
        if let Some(len) = resp.content_length() {
            // Announced too large: refuse before reading a byte.
            if len > self.config.max_bytes {
                return Err((self.too_large(url, len), None));
            }
        }
        let tmp = temp_path(target);
        let result = self.stream_to(resp, url, &tmp, target).await;
        if result.is_err() {
            // Best effort: the temp file may not exist yet.
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map_err(|e| (e, None))
    }

    /// Write the body to `tmp` chunk by chunk under the byte cap and the
    /// attempt's deadline, check the `%PDF` magic, fsync and rename to
    /// `target`. The caller removes `tmp` on error.
    async fn stream_to(
        &self,
        mut resp: reqwest::Response,
        url: &str,
        tmp: &Path,
        target: &Path,
    ) -> Result<(), ExecError> {
        let dir = target.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            err(
                ErrorKind::ActionError,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let io = |e: std::io::Error| {
            err(
                ErrorKind::ActionError,
                format!("cannot write {}: {e}", tmp.display()),
            )
        };
        let mut file = tokio::fs::File::create(tmp).await.map_err(io)?;
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut head: Vec<u8> = Vec::with_capacity(4);
        let mut written: u64 = 0;
        loop {
            let chunk = match tokio::time::timeout_at(deadline, resp.chunk()).await {
                Err(_) => {
                    return Err(err(
                        ErrorKind::Timeout,
                        format!(
                            "GET {url}: body not complete after {:?}",
                            self.config.timeout
                        ),
                    ))
                }
                Ok(Err(e)) => {
                    let kind = if e.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::ServerError
                    };
                    return Err(err(kind, format!("GET {url}: reading body failed: {e}")));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            written = written.saturating_add(chunk.len() as u64);
            if written > self.config.max_bytes {
                return Err(self.too_large(url, written));
            }
            if head.len() < 4 {
                let need = 4 - head.len();
                head.extend_from_slice(&chunk[..need.min(chunk.len())]);
                if head.len() == 4 && head != b"%PDF" {
                    return Err(not_a_pdf(url, &chunk));
                }
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        if head != b"%PDF" {
            return Err(not_a_pdf(url, &head));
        }
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(tmp, target).await.map_err(|e| {
            err(
                ErrorKind::ActionError,
                format!("cannot write {}: {e}", target.display()),
            )
        })
    }

    fn too_large(&self, url: &str, len: u64) -> ExecError {
        err(
            ErrorKind::PdfTooLarge,
            format!(
                "GET {url}: at least {len} bytes exceeds the {}-byte cap (download.max_pdf_bytes)",
                self.config.max_bytes
            ),
        )
    }
}

/// A body that does not start with `%PDF` (an HTML captcha page, an error).
fn not_a_pdf(url: &str, start: &[u8]) -> ExecError {
    let head: String = String::from_utf8_lossy(&start[..start.len().min(80)]).into();
    err(
        ErrorKind::PdfUnreadable,
        format!("GET {url} did not return a PDF (starts with {head:?})"),
    )
}

/// A temp file next to `target` (same file system, so the rename is
/// atomic), unique per process and attempt so concurrent downloads of the
/// same paper cannot interleave their bytes.
fn temp_path(target: &Path) -> PathBuf {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file");
    dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ))
}

/// The wait before the next attempt: the backoff, or the server's
/// Retry-After if longer, but never beyond `cap` (nor the backoff).
pub fn retry_wait(retry_after: Option<f64>, backoff: Duration, cap: Duration) -> Duration {
    let asked = retry_after
        .and_then(|s| crate::llm::errors::clamp_wait(s, cap.as_secs_f64()))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::ZERO);
    asked.min(cap).max(backoff)
}

/// What opening a PDF path found.
enum Probe {
    /// A regular file starting with `%PDF`.
    Pdf,
    /// Nothing at the path.
    Absent,
    /// A regular file that is not (or not yet wholly) a PDF.
    NotPdf,
    /// Anything else: not a regular file, unreadable, or the host is out of
    /// descriptors or memory (`resource_exhausted`, retryable).
    Failed(ExecError),
}

/// Open `p` without ever blocking and look at its first bytes.
///
/// Why non-blocking and `fstat`: a path checked at `runner add` can be
/// replaced later by a FIFO (an open for reading then blocks until a writer
/// appears — a worker held forever) or a directory. `O_NONBLOCK` makes the
/// open return at once whatever the path is, and the type is checked on the
/// descriptor itself, so no swap between check and read can slip through.
/// Host exhaustion (`EMFILE`, `ENOMEM`, …) is told apart from a bad file so
/// a busy host never fails a paper permanently.
fn probe(p: &Path, what: &str) -> Probe {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: &std::io::Error, doing: &str| {
        let kind = match crate::engine::error::io_error_kind(e) {
            ErrorKind::ResourceExhausted => ErrorKind::ResourceExhausted,
            _ => ErrorKind::PdfUnreadable,
        };
        Probe::Failed(err(
            kind,
            format!("cannot {doing} {what} {}: {e}", p.display()),
        ))
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(p);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Probe::Absent,
        Err(e) => return failed(&e, "open"),
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            let is = if m.is_dir() {
                "a directory"
            } else {
                "not a regular file (a FIFO, socket or device)"
            };
            return Probe::Failed(err(
                ErrorKind::PdfUnreadable,
                format!(
                    "{what} {} is {is}; a PDF must be a regular file",
                    p.display()
                ),
            ));
        }
        Err(e) => return failed(&e, "inspect"),
    }
    let mut head = [0u8; 4];
    match std::io::Read::read_exact(&mut file, &mut head) {
        Ok(()) if &head == b"%PDF" => Probe::Pdf,
        Ok(()) => Probe::NotPdf,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Probe::NotPdf,
        Err(e) => failed(&e, "read"),
    }
}

/// A paper's own PDF (`runner add --pdf`): it must exist, be a regular
/// file and start with `%PDF`.
fn check_local(p: &Path) -> Result<PathBuf, ExecError> {
    match probe(p, "local PDF") {
        Probe::Pdf => Ok(p.to_path_buf()),
        Probe::Absent => Err(err(
            ErrorKind::NotFound,
            format!("local PDF {} does not exist", p.display()),
        )),
        Probe::NotPdf => Err(err(
            ErrorKind::PdfUnreadable,
            format!("{} is not a PDF", p.display()),
        )),
        Probe::Failed(e) => Err(e),
    }
}

/// Whether the cache holds the PDF: `Ok(false)` only when there is nothing
/// (or a file that is not a PDF, which a download replaces). A cache entry
/// that cannot be opened is an error, not "absent": on a host out of
/// descriptors it is `resource_exhausted` (retried later) rather than a
/// needless re-download, and a directory or FIFO in its place is a
/// permanent `pdf_unreadable` naming the path.
fn cached_pdf(p: &Path) -> Result<bool, ExecError> {
    match probe(p, "cached PDF") {
        Probe::Pdf => Ok(true),
        Probe::Absent | Probe::NotPdf => Ok(false),
        Probe::Failed(e) => Err(e),
    }
}

/// Download temp files older than this are left over from a crash.
pub const STALE_DOWNLOAD_AGE: Duration = Duration::from_secs(3600);
/// Entries of the PDF folder looked at per sweep: a folder of a million
/// cached PDFs must not delay start-up.
pub const SWEEP_MAX_ENTRIES: usize = 100_000;

/// What [`sweep_stale_downloads`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Directory entries looked at.
    pub scanned: usize,
    /// Stale download temp files removed.
    pub removed: usize,
    /// Temp files left alone (their download may still be running).
    pub kept: usize,
    /// True when the entry cap stopped the scan early.
    pub truncated: bool,
}

/// The pid in a download temp file name (`.NAME.pdf.PID.HEX16.tmp`, see
/// [`temp_path`]); None for any other name.
fn download_temp_pid(name: &str) -> Option<i32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let rand = parts.next()?;
    let pid = parts.next()?;
    let target = parts.next()?;
    let hex = rand.len() == 16 && rand.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = !pid.is_empty() && pid.len() <= 10 && pid.bytes().all(|b| b.is_ascii_digit());
    if !hex || !digits || target.len() <= ".pdf".len() || !target.ends_with(".pdf") {
        return None;
    }
    pid.parse::<i32>().ok().filter(|p| *p > 0)
}

/// Whether a process with this pid exists (a zombie counts: its download
/// is over, and the age rule removes its file).
fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Remove download temp files a crash left in `dir`: those of a process
/// that no longer exists, and any older than `max_age` (a live pid may be
/// a reused one). At most `max_entries` entries are looked at. Other files
/// are never touched. A missing folder is an empty sweep.
pub fn sweep_stale_downloads(dir: &Path, max_age: Duration, max_entries: usize) -> Sweep {
    let mut sweep = Sweep::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return sweep;
    };
    let now = std::time::SystemTime::now();
    for entry in entries {
        if sweep.scanned >= max_entries {
            sweep.truncated = true;
            break;
        }
        sweep.scanned += 1;
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(download_temp_pid) else {
            continue;
        };
        // Not followed: only a regular file of that name is ours.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if old || !pid_alive(pid) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => sweep.removed += 1,
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a stale download");
                    sweep.kept += 1;
                }
            }
        } else {
            sweep.kept += 1;
        }
    }
    sweep
}

/// Write via a temp file in the same folder and rename over the target.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), ExecError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| {
        err(
            crate::engine::error::io_error_kind(&e),
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(
            crate::engine::error::io_error_kind(&e),
            format!("cannot write {}: {e}", target.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_and_made_safe() {
        assert_eq!(safe_id("2401.01234v2").unwrap(), "2401.01234v2");
        assert_eq!(safe_id("2401.0123").unwrap(), "2401.0123");
        assert_eq!(safe_id("hep-th/9901001").unwrap(), "hep-th_9901001");
        assert_eq!(safe_id("math.GT/0309136v1").unwrap(), "math.GT_0309136v1");
        for bad in [
            "../etc/passwd",
            "/abs/2401.01234",
            "2401.01234/../../x",
            "",
            "hep-th/99",
            "2401.01234v2.pdf",
        ] {
            assert!(safe_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_are_stripped() {
        assert_eq!(base_id("2401.01234v2"), "2401.01234");
        assert_eq!(base_id("2401.01234"), "2401.01234");
        assert_eq!(base_id("hep-th/9901001v3"), "hep-th/9901001");
    }

    #[test]
    fn retry_waits_are_capped() {
        let s = Duration::from_secs;
        assert_eq!(retry_wait(Some(1e20), s(2), s(300)), s(300));
        assert_eq!(retry_wait(Some(f64::NAN), s(2), s(300)), s(2));
        assert_eq!(retry_wait(Some(-5.0), s(2), s(300)), s(2));
        assert_eq!(retry_wait(Some(10.0), s(2), s(300)), s(10));
        assert_eq!(retry_wait(None, s(8), s(300)), s(8));
        assert_eq!(retry_wait(Some(1e8), s(2), s(0)), s(2));
    }

    #[test]
    fn download_limits_are_range_checked() {
        assert!(DownloadConfig::default().problems().is_empty());
        let bad = DownloadConfig {
            max_pdf_bytes: 0,
            max_retry_after_secs: u64::MAX,
            timeout_secs: 0,
        };
        let keys: Vec<_> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "download.max_pdf_bytes",
                "download.max_retry_after_secs",
                "download.timeout_secs"
            ]
        );
        let mut c = AcquireConfig::default();
        bad.apply(&mut c);
        assert_eq!(c.max_bytes, 1);
        assert_eq!(c.max_retry_after, Duration::from_secs(86_400));
    }

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn local_pdfs_that_are_not_regular_files_fail_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p.pdf");
        mkfifo(&fifo);
        // Before: File::open on a FIFO blocked until a writer appeared.
        let e = check_local(&fifo).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PdfUnreadable);
        assert!(e.message.contains("not a regular file"), "{}", e.message);
        let e = check_local(dir.path()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PdfUnreadable);
        assert!(e.message.contains("is a directory"), "{}", e.message);
        // The cache treats them the same way: an error, not "absent".
        assert_eq!(
            cached_pdf(&fifo).unwrap_err().kind,
            ErrorKind::PdfUnreadable
        );
        let missing = dir.path().join("none.pdf");
        assert_eq!(check_local(&missing).unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(cached_pdf(&missing), Ok(false));
        let short = dir.path().join("short.pdf");
        std::fs::write(&short, b"%P").unwrap();
        assert_eq!(cached_pdf(&short), Ok(false));
        assert_eq!(
            check_local(&short).unwrap_err().kind,
            ErrorKind::PdfUnreadable
        );
        let ok = dir.path().join("ok.pdf");
        std::fs::write(&ok, b"%PDF-1.4").unwrap();
        assert_eq!(cached_pdf(&ok), Ok(true));
        assert_eq!(check_local(&ok).unwrap(), ok);
    }

    #[test]
    fn download_temp_names_are_recognised_exactly() {
        let t = temp_path(Path::new("/c/2401.01234v2.pdf"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert_eq!(download_temp_pid(name), Some(std::process::id() as i32));
        assert_eq!(
            download_temp_pid(".hep-th_9901001.pdf.77.00000000deadbeef.tmp"),
            Some(77)
        );
        for other in [
            "2401.01234.pdf",
            ".2401.01234.pdf.77.tmp",
            ".2401.01234.pdf.77.deadbeef.tmp",
            ".2401.01234.pdf.x7.00000000deadbeef.tmp",
            ".notes.txt.77.00000000deadbeef.tmp",
            "..pdf.77.00000000deadbeef.tmp",
            ".a.pdf.0.00000000deadbeef.tmp",
            ".a.pdf.99999999999.00000000deadbeef.tmp",
        ] {
            assert_eq!(download_temp_pid(other), None, "{other}");
        }
    }

    #[test]
    fn stale_download_temp_files_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A pid that cannot exist (above the kernel's pid_max of 2^22).
        let dead = ".2401.00001.pdf.2147483000.00000000deadbeef.tmp";
        let mine_fresh = temp_path(&d.join("2401.00002.pdf"));
        let others = ["2401.00003.pdf", ".2401.00004.pdf.1.tmp", "notes.tmp"];
        std::fs::write(d.join(dead), b"%PDF-partial").unwrap();
        std::fs::write(&mine_fresh, b"%PDF-partial").unwrap();
        for o in others {
            std::fs::write(d.join(o), b"x").unwrap();
        }
        // A directory with a temp-file name is not ours to remove.
        std::fs::create_dir(d.join(".2401.00005.pdf.2147483000.00000000deadbeef.tmp")).unwrap();
        let s = sweep_stale_downloads(d, STALE_DOWNLOAD_AGE, 1000);
        assert_eq!((s.removed, s.kept, s.truncated), (1, 1, false), "{s:?}");
        assert!(!d.join(dead).exists());
        assert!(mine_fresh.exists(), "a live download's temp file is kept");
        for o in others {
            assert!(d.join(o).exists(), "{o}");
        }
        // Past the age limit even a live pid's file goes.
        let s = sweep_stale_downloads(d, Duration::ZERO, 1000);
        assert_eq!(s.removed, 1, "{s:?}");
        assert!(!mine_fresh.exists());
        // The scan is bounded.
        for i in 0..5 {
            std::fs::write(d.join(format!("f{i}.pdf")), b"x").unwrap();
        }
        let s = sweep_stale_downloads(d, Duration::ZERO, 3);
        assert_eq!((s.scanned, s.truncated), (3, true));
        assert_eq!(
            sweep_stale_downloads(&d.join("missing"), Duration::ZERO, 3),
            Sweep::default()
        );
    }

    #[test]
    fn atomic_writes_replace() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("a/b.pdf");
        write_atomic(&t, b"%PDF-1").unwrap();
        write_atomic(&t, b"%PDF-2").unwrap();
        assert_eq!(std::fs::read(&t).unwrap(), b"%PDF-2");
        assert_eq!(std::fs::read_dir(t.parent().unwrap()).unwrap().count(), 1);
    }
}
