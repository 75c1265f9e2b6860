//! Hostile PDFs (issue 12, B.3 and B.4): every extraction runs in a real
//! `runner __extract-pdf` worker process under the `[pdf]` limits, and a
//! PDF that breaks one fails with its exact error kind while the test
//! process (standing in for the daemon) keeps its memory and its threads.
//! Also the in-process repairs (a `/Parent` cycle, a capped inflate), and a
//! property test over mutated real PDFs: no panic, no hang, ever.

// Its own test binary: the memory tests measure this process's peak RSS,
// which tests running alongside in a shared binary would raise.
#[path = "it/support/mod.rs"]
mod support;

use paper_runner::engine::ErrorKind;
use paper_runner::pipeline::pdf::{extract_bytes_limited, ExtractLimits, PdfError};
use paper_runner::pipeline::pdf_child::{PdfConfig, PdfWorker};
use proptest::prelude::*;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// A tiny PDF writer
// ---------------------------------------------------------------------------

/// One indirect object's body (`<< … >>`, or a stream with its bytes).
enum Obj {
    Dict(String),
    Stream(String, Vec<u8>),
}

/// A PDF whose objects are numbered from 1 in the given order (object 1 is
/// the catalog), with a correct cross-reference table.
fn build_pdf(objects: &[Obj]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        writeln!(out, "{} 0 obj", i + 1).unwrap();
        match obj {
            Obj::Dict(d) => writeln!(out, "{d}").unwrap(),
            Obj::Stream(d, bytes) => {
                let d = d.trim_end_matches(">>");
                write!(out, "{d} /Length {} >>\nstream\n", bytes.len()).unwrap();
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\nendstream\n");
            }
        }
        out.extend_from_slice(b"endobj\n");
    }
    let xref = out.len();
    write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).unwrap();
    for o in offsets {
        writeln!(out, "{o:010} 00000 n ").unwrap();
    }
    write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    )
    .unwrap();
    out
}

const FONT: &str = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";

fn text_content(line: &str) -> Vec<u8> {
    format!("BT /F1 12 Tf 72 720 Td ({line}) Tj ET").into_bytes()
}

/// A well-formed PDF with `n` pages of one line each, under one flat
/// `/Pages` node.
fn many_pages(n: usize) -> Vec<u8> {
    // 1 catalog, 2 pages, 3 font, then (page, content) pairs.
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    let mut objects = vec![
        Obj::Dict("<< /Type /Catalog /Pages 2 0 R >>".into()),
        Obj::Dict(format!(
            "<< /Type /Pages /Kids [{}] /Count {n} /Resources << /Font << /F1 3 0 R >> >> /MediaBox [0 0 612 792] >>",
            kids.join(" ")
        )),
        Obj::Dict(FONT.into()),
    ];
    for i in 0..n {
        objects.push(Obj::Dict(format!(
            "<< /Type /Page /Parent 2 0 R /Contents {} 0 R >>",
            5 + 2 * i
        )));
        objects.push(Obj::Stream(
            "<< >>".into(),
            text_content(&format!("Page number {}", i + 1)),
        ));
    }
    build_pdf(&objects)
}

/// The case from the issue: a page without `/Resources` whose `/Parent`
/// chain loops (2 → 4 → 2), so looking up the inherited `/Resources` never
/// ends. The page tree itself (`/Kids`) is fine.
fn parent_cycle() -> Vec<u8> {
    build_pdf(&[
        Obj::Dict("<< /Type /Catalog /Pages 2 0 R >>".into()),
        Obj::Dict("<< /Type /Pages /Kids [3 0 R] /Count 1 /Parent 4 0 R >>".into()),
        Obj::Dict("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R >>".into()),
        Obj::Dict("<< /Type /Pages /Parent 2 0 R >>".into()),
        Obj::Stream("<< >>".into(), text_content("Caught in a loop")),
    ])
}

/// A page whose own `/Parent` is itself, with its resources further up a
/// tree that is otherwise sound: after the cut the text must come out.
fn self_parent_with_text() -> Vec<u8> {
    build_pdf(&[
        Obj::Dict("<< /Type /Catalog /Pages 2 0 R >>".into()),
        Obj::Dict(
            "<< /Type /Pages /Kids [3 0 R] /Count 1 /Resources << /Font << /F1 5 0 R >> >> >>"
                .into(),
        ),
        Obj::Dict(
            "<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
                .into(),
        ),
        Obj::Stream("<< >>".into(), text_content("Self parent")),
        Obj::Dict(FONT.into()),
    ])
}

/// zlib stream of `mib` MiB of zeros (~1 KiB compressed per MiB), made in
/// 1 MiB steps so the test itself never holds the inflated size.
fn zeros_deflated(mib: usize) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        enc.write_all(&chunk).unwrap();
    }
    enc.finish().unwrap()
}

/// A one-page PDF with a stream that inflates to 1 GiB (1 MB on disk).
/// Without `in_object_stream` it is the page's content stream, which the
/// extraction inflates with a cap. With it, it is an object stream
/// (`/Type /ObjStm`), which lopdf inflates while loading the file, before
/// any of our code sees it: then only the worker's memory limit stands
/// between the bomb and the process.
fn flate_bomb(in_object_stream: bool) -> Vec<u8> {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    let data = BOMB.get_or_init(|| zeros_deflated(1024)).clone();
    if in_object_stream {
        return build_pdf(&[
            Obj::Dict("<< /Type /Catalog /Pages 2 0 R >>".into()),
            Obj::Dict("<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into()),
            Obj::Dict(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
                    .into(),
            ),
            Obj::Stream("<< >>".into(), text_content("Under the bomb")),
            Obj::Dict(FONT.into()),
            Obj::Stream(
                "<< /Type /ObjStm /N 1 /First 0 /Filter /FlateDecode >>".into(),
                data,
            ),
        ]);
    }
    build_pdf(&[
        Obj::Dict("<< /Type /Catalog /Pages 2 0 R >>".into()),
        Obj::Dict("<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into()),
        Obj::Dict(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
                .into(),
        ),
        Obj::Stream("<< /Filter /FlateDecode >>".into(), data),
        Obj::Dict(FONT.into()),
    ])
}

/// Form XObjects nested 64 deep, each drawing the next twice: 2^64 draws.
/// Small, valid, and never finishes: only the wall-time limit ends it.
fn exponential_forms() -> Vec<u8> {
    let depth = 64;
    // 1 catalog, 2 pages, 3 page, 4 content, 5 font, 6.. forms.
    let mut objects = vec![
        Obj::Dict("<< /Type /Catalog /Pages 2 0 R >>".into()),
        Obj::Dict("<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into()),
        Obj::Dict(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> /XObject << /X 6 0 R >> >> >>"
                .into(),
        ),
        Obj::Stream("<< >>".into(), b"/X Do".to_vec()),
        Obj::Dict(FONT.into()),
    ];
    for level in 0..depth {
        let id = 6 + level;
        let (body, res) = if level + 1 == depth {
            (text_content("bottom"), "/Font << /F1 5 0 R >>".to_string())
        } else {
            (
                b"/X Do /X Do".to_vec(),
                format!("/XObject << /X {} 0 R >>", id + 1),
            )
        };
        objects.push(Obj::Stream(
            format!(
                "<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << {res} >> >>"
            ),
            body,
        ));
    }
    build_pdf(&objects)
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn runner_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_runner"))
}

fn worker(cfg: PdfConfig) -> PdfWorker {
    PdfWorker::with_program(cfg, runner_bin())
}

fn fixture(name: &str) -> PathBuf {
    support::fixture("papers").join(name)
}

fn write_pdf(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Peak resident memory of this process so far (VmHWM), KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Whether process `pid` still exists as a live (non-zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // Field 3, after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
    }
}

/// Polls `cond` until it holds or `limit` passes (a real child process
/// dies asynchronously; there is no event to wait on).
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Runs an in-process extraction on its own thread with a deadline, so a
/// regression to an endless loop fails the test instead of hanging it.
fn in_process(
    bytes: Vec<u8>,
    limits: ExtractLimits,
    limit: Duration,
) -> Result<Vec<String>, PdfError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(extract_bytes_limited(&bytes, &limits).map(|x| x.pages));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("in-process extraction did not end within {limit:?}"))
}

// ---------------------------------------------------------------------------
// B.3: the /Parent cycle, in process and in the worker
// ---------------------------------------------------------------------------

#[test]
fn parent_cycle_terminates_in_process() {
    let got = in_process(
        parent_cycle(),
        ExtractLimits::default(),
        Duration::from_secs(20),
    );
    // The page has no resources anywhere (so no font): it terminates as
    // an unreadable file instead of spinning.
    let e = got.expect_err("a page without a font has no text");
    assert_eq!(e.kind(), ErrorKind::PdfUnreadable, "{e}");
}

#[test]
fn self_parent_is_cut_and_the_text_survives() {
    let pages = in_process(
        self_parent_with_text(),
        ExtractLimits::default(),
        Duration::from_secs(20),
    )
    .expect("readable after the cut");
    assert_eq!(pages.len(), 1);
    assert!(pages[0].contains("Self parent"), "{pages:?}");
}

/// Past one extraction chunk (64 pages) every page still comes out, in
/// order, as its own page.
#[test]
fn long_documents_keep_page_order() {
    let pages = in_process(
        many_pages(150),
        ExtractLimits::default(),
        Duration::from_secs(60),
    )
    .expect("readable");
    assert_eq!(pages.len(), 150);
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p, &format!("Page number {}", i + 1));
    }
}

#[tokio::test]
async fn parent_cycle_terminates_in_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_pdf(dir.path(), "cycle.pdf", &parent_cycle());
    let started = Instant::now();
    let e = worker(PdfConfig::default())
        .extract(&path)
        .await
        .expect_err("no readable page");
    assert_eq!(e.kind(), ErrorKind::PdfUnreadable, "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ---------------------------------------------------------------------------
// B.3: page limit, and the time per page
// ---------------------------------------------------------------------------

#[tokio::test]
async fn too_many_pages_is_pdf_too_large_before_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_pdf(dir.path(), "long.pdf", &many_pages(60));
    let cfg = PdfConfig {
        max_pages: 50,
        ..PdfConfig::default()
    };
    let e = worker(cfg.clone()).extract(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PdfTooLarge, "{e}");
    assert!(
        e.to_string().contains("more than 50 pages (pdf.max_pages)"),
        "{e}"
    );

    // At the limit it is extracted, every page in order.
    let at_limit = write_pdf(dir.path(), "ok.pdf", &many_pages(50));
    let x = worker(cfg).extract(&at_limit).await.unwrap();
    assert_eq!(x.pages.len(), 50);
    assert!(x.pages[49].contains("Page number 50"), "{:?}", x.pages[49]);
}

// ---------------------------------------------------------------------------
// B.4: decompression bombs, file size, text size
// ---------------------------------------------------------------------------

#[tokio::test]
async fn flate_bomb_is_refused_by_the_capped_inflate() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = flate_bomb(false);
    assert!(bytes.len() < 3 << 20, "the bomb is small on disk");
    let path = write_pdf(dir.path(), "bomb.pdf", &bytes);
    let before = peak_rss_kib();
    let e = worker(PdfConfig::default())
        .extract(&path)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PdfTooLarge, "{e}");
    assert!(e.to_string().contains("inflates past"), "{e}");
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "the parent grew by {grown_mib} MiB");
}

#[tokio::test]
async fn bomb_past_the_inflate_cap_meets_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_pdf(dir.path(), "bomb-objstm.pdf", &flate_bomb(true));
    let before = peak_rss_kib();
    let cfg = PdfConfig {
        max_memory_mb: 384,
        ..PdfConfig::default()
    };
    let e = worker(cfg).extract(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PdfTooLarge, "{e}");
    assert!(
        e.to_string()
            .contains("384 MiB of memory (pdf.max_memory_mb)"),
        "{e}"
    );
    assert!(e.to_string().contains("bomb-objstm.pdf"), "{e}");
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "the parent grew by {grown_mib} MiB");
}

#[tokio::test]
async fn file_over_the_size_limit_is_refused_unopened() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = many_pages(1);
    bytes.resize(2 << 20, b' ');
    let path = write_pdf(dir.path(), "big.pdf", &bytes);
    let cfg = PdfConfig {
        max_file_mb: 1,
        ..PdfConfig::default()
    };
    let e = worker(cfg).extract(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PdfTooLarge, "{e}");
    assert!(e.to_string().contains("pdf.max_file_mb"), "{e}");
}

#[tokio::test]
async fn text_over_the_output_cap_is_pdf_too_large() {
    // ~1.2 MiB of text on 2000 pages against a 1 MiB cap.
    let dir = tempfile::tempdir().unwrap();
    let line = "x".repeat(600);
    let n = 2000;
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    let mut objects = vec![
        Obj::Dict("<< /Type /Catalog /Pages 2 0 R >>".into()),
        Obj::Dict(format!(
            "<< /Type /Pages /Kids [{}] /Count {n} /Resources << /Font << /F1 3 0 R >> >> /MediaBox [0 0 612 792] >>",
            kids.join(" ")
        )),
        Obj::Dict(FONT.into()),
    ];
    for i in 0..n {
        objects.push(Obj::Dict(format!(
            "<< /Type /Page /Parent 2 0 R /Contents {} 0 R >>",
            5 + 2 * i
        )));
        objects.push(Obj::Stream("<< >>".into(), text_content(&line)));
    }
    let path = write_pdf(dir.path(), "wordy.pdf", &build_pdf(&objects));
    let cfg = PdfConfig {
        max_text_mb: 1,
        ..PdfConfig::default()
    };
    let e = worker(cfg).extract(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PdfTooLarge, "{e}");
    assert!(e.to_string().contains("pdf.max_text_mb"), "{e}");
}

// ---------------------------------------------------------------------------
// Wall time: the real worker, a script worker and its grandchild, cancel
// ---------------------------------------------------------------------------

#[tokio::test]
async fn endless_pdf_is_pdf_timeout_and_the_worker_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_pdf(dir.path(), "forms.pdf", &exponential_forms());
    let cfg = PdfConfig {
        timeout_secs: 2,
        ..PdfConfig::default()
    };
    let started = Instant::now();
    let e = worker(cfg).extract(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PdfTimeout, "{e}");
    assert!(e.to_string().contains("forms.pdf"), "{e}");
    assert!(e.to_string().contains("2 s (pdf.timeout_secs)"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// A stand-in worker that records its pid and its child's pid, then hangs.
fn hanging_worker(dir: &Path) -> PathBuf {
    let script = dir.join("hang.sh");
    let body = format!(
        "#!/bin/sh\nsleep 300 &\necho $! > {d}/grandchild\necho $$ > {d}/pid\nwait\n",
        d = dir.display()
    );
    std::fs::write(&script, body).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = write_pdf(dir.path(), "x.pdf", &many_pages(1));
    let w = PdfWorker::with_program(
        PdfConfig {
            timeout_secs: 1,
            ..PdfConfig::default()
        },
        hanging_worker(dir.path()),
    );
    let e = w.extract(&pdf).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PdfTimeout, "{e}");
    let pid = read_pid(&dir.path().join("pid")).expect("the worker ran");
    let grandchild = read_pid(&dir.path().join("grandchild")).expect("it forked");
    // The worker was reaped before extract returned; its own child (same
    // process group) was killed with it.
    assert!(!alive(pid), "worker {pid} still alive");
    assert!(
        eventually(Duration::from_secs(5), || !alive(grandchild)).await,
        "grandchild {grandchild} survived the timeout"
    );
}

#[tokio::test]
async fn dropping_the_extraction_kills_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = write_pdf(dir.path(), "x.pdf", &many_pages(1));
    let w = PdfWorker::with_program(PdfConfig::default(), hanging_worker(dir.path()));
    let pid_file = dir.path().join("pid");
    let grandchild_file = dir.path().join("grandchild");
    {
        let fut = w.extract(&pdf);
        tokio::pin!(fut);
        // Drive the extraction until the worker has started, then drop it
        // (what a cancelled phase or a shutdown does).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::select! {
                r = &mut fut => panic!("the hanging worker returned: {r:?}"),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if read_pid(&pid_file).is_some() || Instant::now() > deadline {
                break;
            }
        }
    }
    let pid = read_pid(&pid_file).expect("the worker ran");
    let grandchild = read_pid(&grandchild_file).expect("it forked");
    assert!(
        eventually(Duration::from_secs(5), || !alive(pid) && !alive(grandchild)).await,
        "worker {pid} or its child {grandchild} survived the drop"
    );
}

// ---------------------------------------------------------------------------
// Ordinary bad files through the worker, and the good ones
// ---------------------------------------------------------------------------

#[tokio::test]
async fn truncated_and_garbage_files_are_pdf_unreadable() {
    for name in ["truncated.pdf", "garbage.pdf", "broken-only.pdf"] {
        let e = worker(PdfConfig::default())
            .extract(&fixture(name))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PdfUnreadable, "{name}: {e}");
    }
    let e = worker(PdfConfig::default())
        .extract(&fixture("encrypted.pdf"))
        .await
        .unwrap_err();
    assert!(matches!(e, PdfError::Encrypted(_)), "{e}");
}

#[tokio::test]
async fn not_a_regular_file_is_refused_without_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let e = worker(PdfConfig::default())
        .extract(dir.path())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PdfUnreadable, "{e}");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = worker(PdfConfig::default())
        .extract(&dir.path().join("missing.pdf"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PdfUnreadable, "{e}");
}

#[tokio::test]
async fn real_papers_come_out_of_the_worker_as_in_process() {
    for name in ["paper-a.pdf", "onecol.pdf", "owner-password.pdf"] {
        let path = fixture(name);
        let direct = paper_runner::pipeline::pdf::extract_file(&path).unwrap();
        let via_worker = worker(PdfConfig::default()).extract(&path).await.unwrap();
        assert_eq!(via_worker.pages, direct.pages, "{name}");
    }
}

#[tokio::test]
async fn hostile_files_do_not_stop_a_good_one_running_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let cycle = write_pdf(dir.path(), "cycle.pdf", &parent_cycle());
    let bomb = write_pdf(dir.path(), "bomb.pdf", &flate_bomb(true));
    let cfg = PdfConfig {
        max_memory_mb: 384,
        ..PdfConfig::default()
    };
    let w = worker(cfg);
    let good = fixture("paper-b.pdf");
    let (a, b, c) = tokio::join!(w.extract(&cycle), w.extract(&bomb), w.extract(&good));
    assert_eq!(a.unwrap_err().kind(), ErrorKind::PdfUnreadable);
    assert_eq!(b.unwrap_err().kind(), ErrorKind::PdfTooLarge);
    assert_eq!(c.unwrap().pages.len(), 5);
}

/// `runner extract` goes through the same worker and limits, from the
/// config file's `[pdf]` section, and names the error kind and the file.
#[test]
fn runner_extract_uses_the_worker_and_the_config_limits() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[pdf]\nmax_pages = 5\ntimeout_secs = 20\n").unwrap();
    let run = |pdf: &Path| {
        std::process::Command::new(runner_bin())
            .arg("--config")
            .arg(&config)
            .arg("extract")
            .arg(pdf)
            .output()
            .unwrap()
    };
    let long = write_pdf(dir.path(), "long.pdf", &many_pages(6));
    let out = run(&long);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: pdf_too_large:"), "{err}");
    assert!(err.contains("long.pdf"), "{err}");
    assert!(err.contains("more than 5 pages (pdf.max_pages)"), "{err}");

    let cycle = write_pdf(dir.path(), "cycle.pdf", &parent_cycle());
    let out = run(&cycle);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: pdf_unreadable:"), "{err}");

    let ok = write_pdf(dir.path(), "ok.pdf", &many_pages(5));
    let out = std::process::Command::new(runner_bin())
        .arg("--config")
        .arg(&config)
        .args(["extract", "--json"])
        .arg(&ok)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pages"], 5, "{report}");

    std::fs::write(&config, "[pdf]\nmax_pages = 0\n").unwrap();
    let out = run(&ok);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pdf.max_pages"), "{err}");
}

/// The `extract_text` action of the pipeline (as the daemon builds it from
/// the config) fails a hostile paper with the exact kind and the file in
/// the message, and fills the context for a good one.
#[tokio::test]
async fn extract_text_action_reports_the_limit_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = paper_runner::runner::Config::default();
    cfg.pdf.max_pages = 5;
    cfg.reports_dir = dir.path().join("reports");
    let registry = paper_runner::runner::build::pipeline_actions(&cfg).unwrap();
    let action = registry.get("extract_text").unwrap();
    let state = paper_runner::spec::StateDef::default();
    let args = paper_runner::engine::ActionArgs {
        execution_id: "x",
        state_name: "extract",
        state: &state,
        input: Default::default(),
        machine_dir: dir.path(),
    };
    let args = &args;
    let run = |pdf: PathBuf| {
        let mut ctx = serde_json::Map::new();
        ctx.insert("pdf_path".into(), pdf.display().to_string().into());
        async move {
            let r = action.run(&mut ctx, args).await;
            (r, ctx)
        }
    };
    let long = write_pdf(dir.path(), "long.pdf", &many_pages(6));
    let (r, _) = run(long).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PdfTooLarge, "{e}");
    assert!(e.message.contains("long.pdf"), "{e}");

    let bomb = write_pdf(dir.path(), "bomb.pdf", &flate_bomb(false));
    let (r, _) = run(bomb).await;
    assert_eq!(r.unwrap_err().kind, ErrorKind::PdfTooLarge);

    let (r, ctx) = run(write_pdf(dir.path(), "ok.pdf", &many_pages(2))).await;
    r.unwrap();
    assert_eq!(ctx["pages"], 2);
}

// ---------------------------------------------------------------------------
// Mutated real PDFs: no panic, no hang
// ---------------------------------------------------------------------------

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        [
            "onecol.pdf",
            "paper-a.pdf",
            "no-media-box.pdf",
            "owner-password.pdf",
        ]
        .iter()
        .map(|n| std::fs::read(fixture(n)).unwrap())
        .collect::<Vec<_>>()
        .into_iter()
        .chain([parent_cycle(), many_pages(3)])
        .collect()
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { at: usize },
    Splice { from: usize, len: usize, to: usize },
    Overwrite { at: usize, text: &'static str },
}

fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in mutations {
        let n = b.len().max(1);
        match *m {
            Mutation::Flip { at, mask } => {
                let i = at % n;
                if let Some(x) = b.get_mut(i) {
                    *x ^= mask;
                }
            }
            Mutation::Truncate { at } => b.truncate(at % n),
            Mutation::Splice { from, len, to } => {
                let from = from % n;
                let end = (from + len).min(b.len());
                let piece = b[from.min(b.len())..end].to_vec();
                let to = to % (b.len() + 1);
                b.splice(to..to, piece);
            }
            Mutation::Overwrite { at, text } => {
                let i = at % n;
                for (k, c) in text.bytes().enumerate() {
                    if let Some(x) = b.get_mut(i + k) {
                        *x = c;
                    }
                }
            }
        }
    }
    b
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..4096, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Splice { from, len, to }),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "/Parent 2 0 R",
                "/Kids [2 0 R]",
                "/Count 999999999",
                "/Length 99999999",
                "/Filter /FlateDecode",
                " 0 R",
                "<<<<<<<<",
                "obj",
                "endstream",
                "/Resources 1 0 R",
            ])
        )
            .prop_map(|(at, text)| Mutation::Overwrite { at, text }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// In process (the code the worker runs): any outcome but a panic or
    /// a hang. `extract_bytes_limited` contains the crate's panics; a
    /// panic escaping it fails the test through the thread's channel.
    #[test]
    fn mutated_pdfs_never_panic_or_hang_in_process(
        seed in 0usize..6,
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let bytes = apply(&seeds()[seed], &mutations);
        let limits = ExtractLimits { max_pages: 50, max_stream_bytes: 16 << 20 };
        match in_process(bytes, limits, Duration::from_secs(30)) {
            Ok(pages) => prop_assert!(pages.len() <= 50),
            Err(e) => prop_assert!(matches!(
                e.kind(),
                ErrorKind::PdfUnreadable | ErrorKind::PdfTooLarge
            ), "{e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Through the worker: a permanent PDF error kind or pages, within the
    /// wall-time limit, whatever the bytes.
    #[test]
    fn mutated_pdfs_end_within_their_limits_in_the_worker(
        seed in 0usize..6,
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = write_pdf(dir.path(), "m.pdf", &apply(&seeds()[seed], &mutations));
        let cfg = PdfConfig { timeout_secs: 10, max_memory_mb: 512, ..PdfConfig::default() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let started = Instant::now();
        let got = rt.block_on(worker(cfg).extract(&path));
        prop_assert!(started.elapsed() < Duration::from_secs(20));
        if let Err(e) = got {
            prop_assert!(matches!(
                e.kind(),
                ErrorKind::PdfUnreadable | ErrorKind::PdfTooLarge | ErrorKind::PdfTimeout
            ), "{e}");
        }
    }
}

/// Extraction time by page count (run by hand: `cargo test --release
/// --test hostile_pdf -- --ignored --nocapture page_count_timing`).
#[test]
#[ignore]
fn page_count_timing() {
    for n in [500, 1000, 2000, 4000, 10000] {
        let bytes = many_pages(n);
        let started = Instant::now();
        let limits = ExtractLimits {
            max_pages: 1_000_000,
            ..ExtractLimits::default()
        };
        let pages = extract_bytes_limited(&bytes, &limits).unwrap().pages;
        assert_eq!(pages.len(), n);
        eprintln!("{n} pages: {:?}", started.elapsed());
    }
}
