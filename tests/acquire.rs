//! `acquire_pdf` against a local HTTP server: cache, retries, 404, checks.

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
