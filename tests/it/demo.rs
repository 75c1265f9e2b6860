//! `runner demo` end to end: a fresh directory, the bundled sample papers,
//! the built-in mock provider; every paper done with a report that passes
//! `runner audit`, and the directory usable as a runner directory after.

use std::process::Command;

fn runner(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("RUNNER_CONFIG");
    c
}

#[test]
fn demo_runs_the_sample_papers_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out = runner(tmp.path())
        .args([
            "demo",
            "--dir",
            "site",
            "--no-progress",
            "--latency-ms",
            "5",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("papers: done 4"), "{stdout}");
    assert!(stdout.contains("audit: 4 report(s), 0 failing"), "{stdout}");
    let site = tmp.path().join("site");
    for f in [
        "config.toml",
        "machines/prep.yml",
        "machines/profiles.yml",
        "data/runner.db",
    ] {
        assert!(site.join(f).is_file(), "{f} missing");
    }
    let reports: Vec<_> = std::fs::read_dir(site.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 4);
    for r in &reports {
        assert!(
            stdout.contains(&r.display().to_string()),
            "{} not listed",
            r.display()
        );
        let text = std::fs::read_to_string(r).unwrap();
        assert!(text.starts_with("---\n"));
        assert!(text.contains("## Executive Summary"));
    }
    // The directory is a runner directory: audit works inside it without flags.
    let audit = runner(&site).args(["audit", "--json"]).output().unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(v["reports"], 4);
    assert_eq!(v["failing"], 0);
    // A second demo in the same directory adds nothing and redoes nothing.
    let again = runner(tmp.path())
        .args([
            "demo",
            "--dir",
            "site",
            "--no-progress",
            "--latency-ms",
            "5",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(stdout.contains("0 LLM calls"), "{stdout}");
    assert_eq!(std::fs::read_dir(site.join("reports")).unwrap().count(), 4);
}
