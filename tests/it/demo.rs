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

/// `runner demo --serve` prints the dashboard's URL, serves it while the
/// demo runs and afterwards, shows the finished papers there, and stops
/// cleanly on Ctrl-C (SIGINT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serve_keeps_the_dashboard_up_until_ctrl_c() {
    use std::io::BufRead as _;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = runner(tmp.path())
        .args([
            "demo",
            "--dir",
            "site",
            "--no-progress",
            "--latency-ms",
            "5",
            "--serve",
            "--listen",
            "127.0.0.1:0",
            "--token-env",
            "DEMO_DASH_TOKEN",
        ])
        .env("DEMO_DASH_TOKEN", "demo-s3cret")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str, pred: &dyn Fn(&str) -> bool| -> String {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(300))
                .unwrap_or_else(|e| panic!("no {what} line from the demo: {e}"));
            if pred(&line) {
                return line;
            }
        }
    };
    let url_line = next_line("dashboard URL", &|l| l.starts_with("dashboard: http://"));
    let url = url_line
        .trim_start_matches("dashboard: ")
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    assert!(url_line.contains("$DEMO_DASH_TOKEN"), "{url_line}");
    next_line("still serving", &|l| l.contains("dashboard still serving"));
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{url}/queue?status=done"))
        .bearer_auth("demo-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("2601.00101"), "{body}");
    let unauth = http.get(format!("{url}/status")).send().await.unwrap();
    assert_eq!(unauth.status(), 401, "the token guards every page");
    // SAFETY: kill sends a signal to the child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let pid = child.id();
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .unwrap_or_else(|_| panic!("the demo (pid {pid}) did not stop on SIGINT"))
    .unwrap()
    .unwrap();
    assert!(status.success(), "{status:?}");
}
