//! Regression guard for `runner bench pipeline`: a fast variant (6 papers,
//! 3 workers, zero latency, generous limits) must finish every paper with
//! exactly 7 calls each and no 429s, and print every documented field.
//! Only counts are checked, never timings.

use serde_json::Value;
use std::process::Command;

const FIELDS: [&str; 11] = [
    "papers_per_min",
    "limit_papers_per_min",
    "ratio",
    "calls",
    "rate_limited",
    "cpu_s_per_paper",
    "peak_rss_bytes",
    "rss_per_inflight_paper",
    "db_bytes_per_paper",
    "overhead_p50_ms",
    "overhead_p99_ms",
];

#[test]
fn fast_pipeline_bench_finishes_every_paper_with_seven_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bench");
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env_remove("RUST_LOG")
        .env_remove("RUNNER_CONFIG")
        .current_dir(tmp.path())
        .args([
            "bench",
            "pipeline",
            "--papers",
            "6",
            "--workers",
            "3",
            "--latency-ms",
            "0",
            "--rpm-cheap",
            "100000",
            "--rpm-expensive",
            "100000",
            "--calibration-papers",
            "2",
            "--json",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    for f in FIELDS {
        assert!(r[f].is_number(), "field {f} missing or not a number: {r}");
    }
    assert_eq!(r["papers"], 6);
    assert_eq!(r["done"], 6, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    // 1 prep + 3 expensive + 3 wrap calls with the mock's PASS verdict.
    assert_eq!(r["calls"], 42, "{r}");
    assert_eq!(r["calls_per_paper"].as_f64(), Some(7.0));
    assert_eq!(r["requests"], 42, "{r}");
    assert_eq!(r["rate_limited"], 0, "{r}");
    // Zero latency: only the rate-limit bound exists (min(100000/4, 100000/3)).
    assert_eq!(r["latency_papers_per_min"], Value::Null);
    assert_eq!(r["bound"], "rate_limit");
    assert_eq!(r["limit_papers_per_min"].as_f64(), Some(25_000.0));
    // With N < 3W the whole run is the measurement window.
    assert_eq!(r["throughput_window"], "whole_run");
    // Every state instance outside extraction and child-machine states is
    // measured (22 per paper with today's machines: prep 4, expensive 1,
    // its 3 children 3 each, wrap 8).
    assert!(r["overhead_states"].as_u64().unwrap() >= 6 * 20, "{r}");
    // The runner directory is left in place with one report per paper.
    let reports = std::fs::read_dir(dir.join("reports")).unwrap().count();
    assert_eq!(reports, 6);
}
