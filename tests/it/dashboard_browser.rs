//! The dashboard in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, the `fantoccini` client) against a runner's
//! database served on loopback. Logs in, clicks from the overview to a
//! paper and its report, retries a failed paper and sees its status
//! change, cancels one through the confirmation dialog (so the page's
//! script runs under the CSP), checks the charts, that hostile titles and
//! error messages never run, and saves a screenshot of each page under
//! `target/test-artifacts/dashboard/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them); `RUNNER_TEST_CHROMIUM` / `RUNNER_TEST_CHROMEDRIVER` point at
//! other binaries. Without them each test prints that it skipped and why.

use super::dashboard::{hostile_site, serve_site};
use crate::support::arxiv;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one browser wait may take.
const WAIT: Duration = Duration::from_secs(30);

fn binary(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    p.is_file().then_some(p)
}

/// chromedriver, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start chromedriver and a headless Chromium session, or say why not.
async fn browser(test: &str) -> Option<(Driver, Client)> {
    let (Some(driver), Some(chromium)) = (
        binary("RUNNER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"),
        binary("RUNNER_TEST_CHROMIUM", "/usr/bin/chromium"),
    ) else {
        eprintln!(
            "{test}: skipped: no chromedriver or chromium (install Debian's chromium and \
             chromium-driver, or set RUNNER_TEST_CHROMEDRIVER and RUNNER_TEST_CHROMIUM)"
        );
        return None;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
    let d = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // chromedriver is ready when its /status answers (it is another
    // process: poll it, with a deadline).
    let started = Instant::now();
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{}/status", d.url)).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            started.elapsed() < WAIT,
            "chromedriver did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1600",
                     "--no-first-run", "--disable-extensions"],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .unwrap_or_else(|e| panic!("no Chromium session: {e}"));
    Some((d, client))
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("test-artifacts/dashboard"))
        .unwrap_or_else(|| PathBuf::from("target/test-artifacts/dashboard"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let path = artifacts().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// No script from page content ran: no dialog is open.
async fn no_alert(c: &Client, where_: &str) {
    if let Ok(text) = c.get_alert_text().await {
        panic!("{where_}: a dialog opened ({text:?}): injected script ran");
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_logs_in_clicks_through_to_a_report_and_retries_a_failed_paper() {
    let Some((_driver, c)) = browser("browser_logs_in_clicks_through…").await else {
        return;
    };
    let site = hostile_site().await;
    let var = "PAPER_RUNNER_DASH_BROWSER_TOKEN";
    std::env::set_var(var, "browser-s3cret");
    let (base, stop, handle) = serve_site(&site, Some(var)).await;

    // Not logged in: the login form; the token logs in.
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/login"));
    shot(&c, "login").await;
    c.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys("browser-s3cret")
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("section.charts"))
        .await
        .unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/");
    let charts = c.find_all(Locator::Css("svg.chart")).await.unwrap();
    assert!(charts.len() >= 3, "{} charts", charts.len());
    assert!(
        !c.find_all(Locator::Css("svg.chart polyline"))
            .await
            .unwrap()
            .is_empty(),
        "the time charts draw lines"
    );
    no_alert(&c, "overview").await;
    shot(&c, "overview").await;

    // Overview → the done papers → one paper → its report.
    c.find(Locator::LinkText("done"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(&c, "table.queue").await;
    assert_eq!(c.current_url().await.unwrap().query(), Some("status=done"));
    no_alert(&c, "queue").await;
    shot(&c, "queue-done").await;
    c.find(Locator::LinkText(&arxiv(1)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let report = text_of(&c, "article.report").await;
    assert!(report.contains("Executive Summary"), "{report}");
    let title = text_of(&c, "p.title").await;
    assert!(
        title.contains("<script>"),
        "the hostile title shows as text: {title}"
    );
    assert!(!c
        .find_all(Locator::Css("svg.gantt rect.span"))
        .await
        .unwrap()
        .is_empty());
    no_alert(&c, "paper with a hostile title").await;
    shot(&c, "paper-report").await;

    // The failed paper: its error shows as text; Retry puts it back.
    c.goto(&format!("{base}/queue?status=failed"))
        .await
        .unwrap();
    c.find(Locator::LinkText(&arxiv(0)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let h1 = text_of(&c, "h1").await;
    assert!(h1.contains("failed"), "{h1}");
    let errors = text_of(&c, "dl.facts").await;
    assert!(errors.contains("alert('from-error')"), "{errors}");
    no_alert(&c, "failed paper").await;
    shot(&c, "paper-failed").await;
    c.find(Locator::Id("action-retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = text_of(&c, "p.flash").await;
    assert!(flash.contains("Put back in the queue"), "{flash}");
    let h1 = text_of(&c, "h1").await;
    assert!(h1.contains("pending"), "{h1}");
    assert_eq!(site.statuses()[&arxiv(0)], "pending");
    shot(&c, "paper-retried").await;

    // Cancel asks first (the page's script, allowed by the CSP).
    c.find(Locator::Id("action-cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let asked = c.get_alert_text().await.unwrap();
    assert!(asked.contains(&arxiv(0)), "{asked}");
    c.accept_alert().await.unwrap();
    let flash = text_of(&c, "p.flash").await;
    assert!(flash.contains("Cancel requested"), "{flash}");
    assert_eq!(
        site.scalar(&format!(
            "SELECT cancel_requested FROM executions WHERE arxiv_id = '{}'",
            arxiv(0)
        )),
        1
    );
    c.close().await.unwrap();
    stop.cancel();
    handle.await.unwrap();
}

/// Needs the bench's generator (the `tooling` feature, on by default).
#[cfg(feature = "tooling")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shows_a_large_queue_with_charts_and_pages() {
    let Some((_driver, c)) = browser("browser_shows_a_large_queue…").await else {
        return;
    };
    // A generated history: 5,000 papers and 50,000 ledger rows.
    let site = crate::support::Site::new("").await;
    let db = site.db();
    let _ = std::fs::remove_file(&db);
    let now = chrono::Utc::now().timestamp_millis();
    paper_runner::store::synth_queue::generate(&db, 5_000, 50_000, now).unwrap();
    let (base, stop, handle) = serve_site(&site, None).await;

    c.goto(&format!("{base}/")).await.unwrap();
    text_of(&c, "section.charts").await;
    let lines = c
        .find_all(Locator::Css("svg.chart polyline"))
        .await
        .unwrap();
    assert_eq!(lines.len(), 4, "done, calls, 429s, errors");
    let bars = c
        .find_all(Locator::Css("svg.chart rect.fill"))
        .await
        .unwrap();
    assert!(
        bars.len() >= 9,
        "p50/p90/p99 of three models: {}",
        bars.len()
    );
    let papers = text_of(&c, "table.counts").await;
    assert!(papers.contains("done"), "{papers}");
    shot(&c, "overview-large").await;

    c.goto(&format!("{base}/queue")).await.unwrap();
    let first = text_of(&c, "table.queue").await;
    c.find(Locator::Css("a[rel=next]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let second = text_of(&c, "table.queue").await;
    assert_ne!(first, second, "the next page lists other papers");
    c.goto(&format!("{base}/queue?q=protein&status=failed"))
        .await
        .unwrap();
    text_of(&c, "form.filters").await;
    shot(&c, "queue-large-search").await;
    c.goto(&format!("{base}/queue?status=failed"))
        .await
        .unwrap();
    let failed = text_of(&c, "table.queue").await;
    assert!(failed.contains("failed"), "{failed}");
    shot(&c, "queue-large-failed").await;
    c.find(Locator::Css("table.queue td a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(&c, "svg.gantt").await;
    shot(&c, "paper-large").await;
    c.close().await.unwrap();
    stop.cancel();
    handle.await.unwrap();
}
