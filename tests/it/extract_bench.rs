//! `runner bench extract DIR --reference-dir TXT_DIR --json`: the numbers
//! it reports on a folder with one committed fixture and its reference
//! text. (What the numbers are on real papers is in docs/pdf-extraction.md;
//! no timing is asserted here.)

use crate::support;

#[test]
fn bench_extract_reports_cpu_rss_and_recall() {
    let dir = tempfile::tempdir().unwrap();
    let pdfs = dir.path().join("pdfs");
    let refs = dir.path().join("refs");
    std::fs::create_dir_all(&pdfs).unwrap();
    std::fs::create_dir_all(&refs).unwrap();
    let papers = support::fixture("papers");
    std::fs::copy(papers.join("reportlab-2col.pdf"), pdfs.join("rl.pdf")).unwrap();
    std::fs::copy(
        papers.join("expected/reportlab-2col.txt"),
        refs.join("rl.txt"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["bench", "extract", "--reps", "1", "--json", "--pdftotext"])
        .arg(dir.path().join("no-pdftotext-here"))
        .arg("--reference-dir")
        .arg(&refs)
        .arg(&pdfs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pdfs"], 1);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["pages"], 2);
    let f = &v["files"][0];
    assert_eq!(f["file"], "rl.pdf");
    assert!(f["cpu_ms"].as_f64().unwrap() > 0.0, "{f}");
    assert!(f["worker_cpu_ms"].as_f64().unwrap() > 0.0, "{f}");
    assert!(f["worker_peak_rss_bytes"].as_u64().unwrap() > 0, "{f}");
    assert!(f["pdftotext_cpu_ms"].is_null(), "no pdftotext at that path");
    assert!(f["recall"].as_f64().unwrap() >= 0.98, "{f}");
    assert!(f["clean_recall"].as_f64().unwrap() >= 0.95, "{f}");
    assert_eq!(f["stats"]["tables"], 1);
    assert_eq!(f["stats"]["footnotes"], 1);
    assert!(v["recall_min"].as_f64().unwrap() >= 0.98);

    // A folder without PDFs is a usage error.
    let empty = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["bench", "extract"])
        .arg(&refs)
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(2));
}
