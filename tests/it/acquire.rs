//! `acquire_pdf` against a local HTTP server: cache, retries, 404, checks,
//! and hostile servers (endless or oversized bodies, absurd Retry-After).

use axum::extract::{Path as AxPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use paper_runner::engine::ErrorKind;
use paper_runner::pipeline::acquire::{AcquireConfig, Acquirer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Hits {
    flaky: AtomicUsize,
    total: AtomicUsize,
}

async fn pdf(
    AxPath(id): AxPath<String>,
    State(h): State<Arc<Hits>>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    h.total.fetch_add(1, Ordering::SeqCst);
    let mut headers = HeaderMap::new();
    match id.as_str() {
        "2401.00001" => (StatusCode::OK, headers, b"%PDF-1.4 fake".to_vec()),
        "2401.00002" => (StatusCode::NOT_FOUND, headers, b"missing".to_vec()),
        "2401.00003" => {
            if h.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                headers.insert("retry-after", "0".parse().unwrap());
                (StatusCode::TOO_MANY_REQUESTS, headers, vec![])
            } else {
                (StatusCode::OK, headers, b"%PDF-1.5 after retries".to_vec())
            }
        }
        "2401.00004" => (StatusCode::OK, headers, b"<html>captcha</html>".to_vec()),
        "2401.00005" => (StatusCode::OK, headers, vec![b'%'; 5000]),
        _ => (StatusCode::SERVICE_UNAVAILABLE, headers, vec![]),
    }
}

async fn server() -> (String, Arc<Hits>) {
    let hits = Arc::new(Hits::default());
    let app = Router::new()
        .route("/pdf/{id}", get(pdf))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/pdf"), hits)
}

fn config(base: &str, dir: &std::path::Path) -> AcquireConfig {
    AcquireConfig {
        pdf_base_url: base.to_string(),
        pdf_dir: dir.to_path_buf(),
        max_bytes: 4096,
        min_interval: Duration::from_millis(1),
        backoffs: vec![Duration::from_millis(5); 3],
        timeout: Duration::from_secs(10),
        max_retry_after: Duration::from_secs(300),
    }
}

#[tokio::test]
async fn downloads_once_then_uses_the_cache() {
    let (base, hits) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Acquirer::new(config(&base, dir.path())).unwrap();
    let p = a.acquire("2401.00001", None).await.unwrap();
    assert_eq!(p, dir.path().join("2401.00001.pdf"));
    assert!(std::fs::read(&p).unwrap().starts_with(b"%PDF"));
    let again = a.acquire("2401.00001", None).await.unwrap();
    assert_eq!(again, p);
    assert_eq!(
        hits.total.load(Ordering::SeqCst),
        1,
        "second call served from cache"
    );
}

#[tokio::test]
async fn retries_429_then_succeeds() {
    let (base, hits) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Acquirer::new(config(&base, dir.path())).unwrap();
    a.acquire("2401.00003", None).await.unwrap();
    assert_eq!(hits.total.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn failures_have_the_right_kinds() {
    let (base, hits) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Acquirer::new(config(&base, dir.path())).unwrap();
    let e = a.acquire("2401.00002", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(hits.total.load(Ordering::SeqCst), 1, "404 is not retried");
    let e = a.acquire("2401.00004", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PdfUnreadable);
    let e = a.acquire("2401.00005", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PdfTooLarge, "{}", e.message);
    assert!(e.message.contains("exceeds"), "{}", e.message);
    let before = hits.total.load(Ordering::SeqCst);
    let e = a.acquire("2401.09999", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ServerError);
    assert_eq!(
        hits.total.load(Ordering::SeqCst) - before,
        4,
        "1 try + 3 retries"
    );
    let e = a.acquire("../../etc/passwd", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing half-written"
    );
}

#[tokio::test]
async fn local_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let a = Acquirer::new(config("http://127.0.0.1:9", dir.path())).unwrap();
    let good = dir.path().join("g.pdf");
    std::fs::write(&good, b"%PDF-1.7").unwrap();
    assert_eq!(a.acquire("2401.00001", Some(&good)).await.unwrap(), good);
    let bad = dir.path().join("b.pdf");
    std::fs::write(&bad, b"nope").unwrap();
    assert_eq!(
        a.acquire("2401.00001", Some(&bad)).await.unwrap_err().kind,
        ErrorKind::PdfUnreadable
    );
    let missing = dir.path().join("m.pdf");
    assert_eq!(
        a.acquire("2401.00001", Some(&missing))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

/// A server that misbehaves on purpose, on a raw socket so it can send
/// what no well-behaved framework would: a chunked PDF that never ends, a
/// lying Content-Length, absurd Retry-After values.
async fn hostile_server(hits: Arc<AtomicUsize>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let hits = hits.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                hits.fetch_add(1, Ordering::SeqCst);
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let id = path.rsplit('/').next().unwrap_or("");
                match id {
                    // Endless chunked PDF.
                    "2402.00001" => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/pdf\r\ntransfer-encoding: chunked\r\n\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let first = b"%PDF-1.7\n";
                        let chunk = vec![b'0'; 16 * 1024];
                        let _ = sock
                            .write_all(format!("{:x}\r\n", first.len()).as_bytes())
                            .await;
                        let _ = sock.write_all(first).await;
                        let _ = sock.write_all(b"\r\n").await;
                        loop {
                            let frame = [
                                format!("{:x}\r\n", chunk.len()).into_bytes(),
                                chunk.clone(),
                                b"\r\n".to_vec(),
                            ]
                            .concat();
                            if sock.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Announces a huge Content-Length.
                    "2402.00002" => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/pdf\r\ncontent-length: 99999999999\r\n\r\n%PDF-1.7\n";
                        let _ = sock.write_all(head.as_bytes()).await;
                    }
                    // 429 with absurd waits, then a small PDF.
                    "2402.00003" | "2402.00004" | "2402.00005" => {
                        let ra = match id {
                            "2402.00003" => "1e20",
                            "2402.00004" => "Fri, 31 Dec 9999 23:59:59 GMT",
                            _ => "NaN",
                        };
                        let resp = format!("HTTP/1.1 429 Too Many Requests\r\nretry-after: {ra}\r\nx-ratelimit-reset: 1e300\r\ncontent-length: 0\r\n\r\n");
                        let _ = sock.write_all(resp.as_bytes()).await;
                    }
                    _ => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    format!("http://{addr}/pdf")
}

#[tokio::test]
async fn an_endless_or_oversized_pdf_is_refused_and_nothing_is_left_behind() {
    let hits = Arc::new(AtomicUsize::new(0));
    let base = hostile_server(hits.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&base, dir.path());
    cfg.max_bytes = 256 * 1024;
    let a = Acquirer::new(cfg).unwrap();
    let started = std::time::Instant::now();
    let e = a.acquire("2402.00001", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PdfTooLarge, "{}", e.message);
    assert!(e.message.contains("262144-byte cap"), "{}", e.message);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped at the cap"
    );
    let e = a.acquire("2402.00002", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PdfTooLarge, "{}", e.message);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "pdf_too_large is not retried"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no partial PDF and no temp file left in the cache"
    );
}

/// Real time (the downloads are real loopback HTTP), with a cap small
/// enough to measure: each retry must wait exactly the cap, never the
/// 1e20 s, the year-9999 date or the 1e300 reset the server asks for.
#[tokio::test]
async fn absurd_retry_after_waits_are_capped_and_never_panic() {
    let hits = Arc::new(AtomicUsize::new(0));
    let base = hostile_server(hits.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&base, dir.path());
    let cap = Duration::from_millis(150);
    cfg.max_retry_after = cap;
    cfg.backoffs = vec![Duration::from_millis(1); 2];
    let a = Acquirer::new(cfg).unwrap();
    // 1e20 s; a date in year 9999; NaN (ignored) then X-RateLimit-Reset 1e300.
    for id in ["2402.00003", "2402.00004", "2402.00005"] {
        let start = std::time::Instant::now();
        let e = a.acquire(id, None).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimit, "{id}: {}", e.message);
        let waited = start.elapsed();
        assert!(
            waited >= 2 * cap && waited < Duration::from_secs(5),
            "{id}: two retries waited {waited:?}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 9, "1 try + 2 retries each");
}
