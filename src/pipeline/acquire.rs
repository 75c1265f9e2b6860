//! `acquire_pdf`: a paper's PDF from a local file, the cache, or arXiv.
//!
//! Downloads are polite: one request per host every `min_interval` (arXiv
//! asks for one every 3 s), retries only on 408/429/5xx/transport errors and
//! honours `Retry-After`; 404 is permanent (`not_found`). A download is
//! checked (`%PDF` magic, size cap) and written atomically (temp file +
//! rename), so a crash never leaves a half-written PDF in the cache.

use crate::engine::{ErrorKind, ExecError};
use crate::llm::{Rate, RateLimiter};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

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
    pub timeout: Duration,
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
        if is_cached_pdf(&target) {
            return Ok(target);
        }
        let url = format!(
            "{}/{}",
            self.config.pdf_base_url.trim_end_matches('/'),
            arxiv_id.trim()
        );
        let bytes = self.download(&url).await?;
        write_atomic(&target, &bytes)?;
        Ok(target)
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, ExecError> {
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
            let outcome = self.fetch_once(url).await;
            let (e, retry_after) = match outcome {
                Ok(bytes) => return Ok(bytes),
                Err(x) => x,
            };
            let Some(backoff) = self.config.backoffs.get(attempt).copied() else {
                return Err(e);
            };
            if !e.kind.is_retryable() {
                return Err(e);
            }
            let wait = retry_after
                .map(Duration::from_secs_f64)
                .unwrap_or(backoff)
                .max(backoff);
            tracing::info!(url, attempt = attempt + 1, wait_s = wait.as_secs_f64(), error = %e.message, "retrying PDF download");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One GET. Errors come with the server's Retry-After, if any.
    async fn fetch_once(&self, url: &str) -> Result<Vec<u8>, (ExecError, Option<f64>)> {
        let resp = self.http.get(url).send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::ServerError
            };
            (err(kind, format!("GET {url} failed: {e}")), None)
        })?;
        let status = resp.status().as_u16();
        let retry_after = crate::llm::errors::retry_after(resp.headers());
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
            if len > self.config.max_bytes {
                return Err((self.too_large(url, len), None));
            }
        }
        let bytes = self.read_capped(resp, url).await?;
        if !bytes.starts_with(b"%PDF") {
            let head: String = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into();
            return Err((
                err(
                    ErrorKind::PdfUnreadable,
                    format!("GET {url} did not return a PDF (starts with {head:?})"),
                ),
                None,
            ));
        }
        Ok(bytes)
    }

    async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        url: &str,
    ) -> Result<Vec<u8>, (ExecError, Option<f64>)> {
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    bytes.extend_from_slice(&c);
                    if bytes.len() as u64 > self.config.max_bytes {
                        return Err((self.too_large(url, bytes.len() as u64), None));
                    }
                }
                Ok(None) => return Ok(bytes),
                Err(e) => {
                    let kind = if e.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::ServerError
                    };
                    return Err((
                        err(kind, format!("GET {url}: reading body failed: {e}")),
                        None,
                    ));
                }
            }
        }
    }

    fn too_large(&self, url: &str, len: u64) -> ExecError {
        err(
            ErrorKind::ActionError,
            format!(
                "GET {url}: {len} bytes exceeds the {} byte cap",
                self.config.max_bytes
            ),
        )
    }
}

fn check_local(p: &Path) -> Result<PathBuf, ExecError> {
    let mut head = [0u8; 4];
    let ok = std::fs::File::open(p).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
    match ok {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(err(
            ErrorKind::NotFound,
            format!("local PDF {} does not exist", p.display()),
        )),
        Err(e) => Err(err(
            ErrorKind::PdfUnreadable,
            format!("cannot read {}: {e}", p.display()),
        )),
        Ok(()) if &head == b"%PDF" => Ok(p.to_path_buf()),
        Ok(()) => Err(err(
            ErrorKind::PdfUnreadable,
            format!("{} is not a PDF", p.display()),
        )),
    }
}

fn is_cached_pdf(p: &Path) -> bool {
    check_local(p).is_ok()
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
    fn atomic_writes_replace() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("a/b.pdf");
        write_atomic(&t, b"%PDF-1").unwrap();
        write_atomic(&t, b"%PDF-2").unwrap();
        assert_eq!(std::fs::read(&t).unwrap(), b"%PDF-2");
        assert_eq!(std::fs::read_dir(t.parent().unwrap()).unwrap().count(), 1);
    }
}
