//! The dashboard over real HTTP on loopback, against a runner's SQLite
//! file after a real pass on the mock provider: login and sessions,
//! CSRF-checked actions that change the queue, escaping of hostile titles
//! and error messages, the Content-Security-Policy, keyset pages, and the
//! read-only mode without a token. (The browser tests in
//! `dashboard_browser.rs` drive the same pages through Chromium.)

use crate::support::{arxiv, Site};
use paper_runner::ops::http::{serve, OpsState};
use paper_runner::ops::metrics::Metrics;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The first cheap request is refused with a body that is markup: with
/// one worker that is the first paper's prep, which fails for good with
/// that text in its error message.
pub const HOSTILE_ERROR: &str = r#"
models:
  mock/cheap:
    faults:
      - {at: 1, status: 400, body: "<script>alert('from-error')</script><img src=x onerror=alert(2)>"}
"#;

/// A title that is markup.
pub const HOSTILE_TITLE: &str =
    "<script>alert('from-title')</script><b onmouseover=alert(3)>Bold</b>";

/// A finished site: 3 papers, the first failed with [`HOSTILE_ERROR`], the
/// second with [`HOSTILE_TITLE`].
pub async fn hostile_site() -> Site {
    let site = Site::new(HOSTILE_ERROR).await;
    site.add_papers(0, 3);
    let _ = site.run(&["--workers", "1"]);
    site.conn()
        .execute(
            "UPDATE executions SET title = ?1 WHERE arxiv_id = ?2",
            rusqlite::params![HOSTILE_TITLE, arxiv(1)],
        )
        .unwrap();
    let st = site.statuses();
    assert_eq!(st[&arxiv(0)], "failed", "{st:?}");
    assert_eq!(st[&arxiv(1)], "done", "{st:?}");
    site
}

/// Serve the site's database with `token_env` (None: no token).
pub async fn serve_site(
    site: &Site,
    token_env: Option<&str>,
) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
    let mut cfg = site.config();
    cfg.ops.token_env = token_env.map(str::to_string);
    let state = OpsState {
        store: site.store(),
        settings: Arc::new(cfg.resolve().unwrap()),
        stats: None,
        metrics: Metrics::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let handle = tokio::spawn(async move { serve(listener, state, s2).await.unwrap() });
    (base, stop, handle)
}

struct Web {
    base: String,
    client: reqwest::Client,
    cookie: Option<String>,
}

struct Page {
    code: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Web {
    fn new(base: &str) -> Web {
        Web {
            base: base.into(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", c),
            None => req,
        };
        let resp = req.send().await.unwrap();
        Page {
            code: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(self.client.post(format!("{}{path}", self.base)).form(form))
            .await
    }
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Nothing a hostile title or error carried is live markup.
fn assert_inert(page: &Page, what: &str) {
    for live in [
        "<script>alert",
        "<img src=x",
        "<b onmouseover",
        "onerror=alert(2)>",
    ] {
        assert!(
            !page.body.contains(live),
            "{what}: live markup {live:?} in\n{}",
            page.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_pages_need_a_login_and_actions_need_the_csrf_token() {
    let site = hostile_site().await;
    let var = "PAPER_RUNNER_DASH_TEST_TOKEN";
    std::env::set_var(var, "dash-s3cret");
    let (base, stop, handle) = serve_site(&site, Some(var)).await;
    let mut web = Web::new(&base);

    // Not logged in: pages go to the login form, machine endpoints 401.
    let p = web.get("/queue?status=failed").await;
    assert_eq!(p.code, 303);
    assert_eq!(p.location(), "/login?next=%2Fqueue%3Fstatus%3Dfailed");
    assert_eq!(web.get("/metrics").await.code, 401);
    assert_eq!(
        web.post("/actions/retry", &[("id", &arxiv(0))]).await.code,
        401
    );
    let login = web.get("/login").await;
    assert_eq!(login.code, 200);
    assert!(login.body.contains("type=\"password\""));
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));

    // A wrong token is refused; the right one sets a strict cookie.
    let wrong = web
        .post("/login", &[("token", "nope"), ("next", "/")])
        .await;
    assert_eq!(wrong.code, 401);
    assert!(wrong.headers.get("set-cookie").is_none());
    let ok = web
        .post(
            "/login",
            &[("token", "dash-s3cret"), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(ok.code, 303);
    assert_eq!(ok.location(), "/", "no redirect off the endpoint");
    let set = ok.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("dash-s3cret"), "the cookie is not the token");
    web.cookie = Some(set.split(';').next().unwrap().to_string());

    // Every page renders; hostile text is escaped everywhere.
    let overview = web.get("/").await;
    assert_eq!(overview.code, 200, "{}", overview.body);
    assert!(overview.body.contains("<svg"), "charts are inline SVG");
    assert!(overview.body.contains("Papers done per 10 minutes"));
    assert!(overview.body.contains("LLM latency per model"));
    assert_inert(&overview, "overview");
    let failed = web.get("/queue?status=failed").await;
    assert_eq!(failed.code, 200);
    assert!(failed.body.contains(&arxiv(0)), "{}", failed.body);
    assert!(!failed.body.contains(&format!(">{}<", arxiv(2))));
    assert_inert(&failed, "queue");
    let all = web.get("/queue").await;
    assert!(
        all.body.contains("&lt;script&gt;alert("),
        "the title shows as text"
    );
    assert_inert(&all, "queue");
    let titled = web.get(&format!("/paper/{}", arxiv(1))).await;
    assert_eq!(titled.code, 200);
    assert!(titled.body.contains("&lt;b onmouseover"));
    assert!(
        titled.body.contains("<article class=\"report\">"),
        "the report renders"
    );
    assert!(titled.body.contains("Audit:"));
    assert_inert(&titled, "paper with a hostile title");
    let bad = web.get(&format!("/paper/{}", arxiv(0))).await;
    assert_eq!(bad.code, 200);
    assert!(
        bad.body.contains("alert(&#x27;from-error&#x27;)")
            || bad.body.contains("alert(&#39;from-error&#39;)"),
        "the error message shows as text:\n{}",
        bad.body
    );
    assert_inert(&bad, "failed paper");
    assert!(bad.body.contains("id=\"action-retry\""));

    // Actions: no CSRF token, a foreign Origin, then the real thing.
    let csrf = csrf_of(&bad.body);
    let no_csrf = web.post("/actions/retry", &[("id", &arxiv(0))]).await;
    assert_eq!(no_csrf.code, 403);
    assert!(no_csrf.body.contains("CSRF"));
    let foreign = web
        .send(
            web.client
                .post(format!("{base}/actions/retry"))
                .header("origin", "http://evil.example")
                .form(&[("id", arxiv(0).as_str()), ("csrf", csrf.as_str())]),
        )
        .await;
    assert_eq!(foreign.code, 403, "{}", foreign.body);
    assert_eq!(
        site.statuses()[&arxiv(0)],
        "failed",
        "refusals change nothing"
    );
    let retried = web
        .post("/actions/retry", &[("id", &arxiv(0)), ("csrf", &csrf)])
        .await;
    assert_eq!(retried.code, 303, "{}", retried.body);
    assert_eq!(
        retried.location(),
        format!("/paper/{}?done=retried", arxiv(0))
    );
    assert_eq!(site.statuses()[&arxiv(0)], "pending");
    let after = web.get(retried.location()).await;
    assert!(after.body.contains("Put back in the queue"));
    // A crafted flash code shows nothing.
    let crafted = web
        .get(&format!("/paper/{}?done=<b>owned</b>", arxiv(0)))
        .await;
    assert!(!crafted.body.contains("owned"));

    // Re-queue a done paper from the start; cancel a pending one.
    let requeued = web
        .post("/actions/requeue", &[("id", &arxiv(2)), ("csrf", &csrf)])
        .await;
    assert_eq!(requeued.code, 303, "{}", requeued.body);
    assert_eq!(site.statuses()[&arxiv(2)], "pending");
    assert_eq!(
        site.scalar(&format!(
            "SELECT attempts_prep + attempts_expensive + attempts_wrap FROM executions WHERE arxiv_id = '{}'",
            arxiv(2)
        )),
        0
    );
    let cancelled = web
        .post("/actions/cancel", &[("id", &arxiv(2)), ("csrf", &csrf)])
        .await;
    assert_eq!(cancelled.code, 303);
    assert_eq!(
        site.scalar(&format!(
            "SELECT cancel_requested FROM executions WHERE arxiv_id = '{}'",
            arxiv(2)
        )),
        1
    );
    let unknown = web
        .post("/actions/explode", &[("id", &arxiv(2)), ("csrf", &csrf)])
        .await;
    assert_eq!(unknown.code, 404);
    let missing = web
        .post("/actions/retry", &[("id", "9999.99999"), ("csrf", &csrf)])
        .await;
    assert!(
        missing.code == 303 || missing.code == 404,
        "{}",
        missing.code
    );

    // A bearer client may act with its own CSRF token.
    let api = Web::new(&base);
    let page = api
        .send(
            api.client
                .get(format!("{base}/paper/{}", arxiv(1)))
                .bearer_auth("dash-s3cret"),
        )
        .await;
    assert_eq!(page.code, 200);
    let bearer_csrf = csrf_of(&page.body);
    assert_ne!(bearer_csrf, csrf, "CSRF tokens are bound to the credential");

    // Logging out clears the cookie.
    let out = web.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.code, 303);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_dashboard_reads_but_never_writes() {
    let site = hostile_site().await;
    let (base, stop, handle) = serve_site(&site, None).await;
    let web = Web::new(&base);
    for path in ["/", "/queue", &format!("/paper/{}", arxiv(0)), "/login"] {
        let p = web.get(path).await;
        assert_eq!(p.code, 200, "{path}: {}", p.body);
        assert!(p.body.contains("read-only"), "{path}");
        assert!(!p.body.contains("name=\"csrf\""), "{path}: no action forms");
        assert_inert(&p, path);
    }
    let refused = web
        .post("/actions/retry", &[("id", &arxiv(0)), ("csrf", "x")])
        .await;
    assert_eq!(refused.code, 403);
    assert!(refused.body.contains("read-only"));
    assert_eq!(site.statuses()[&arxiv(0)], "failed");
    // Bad input is a clear 4xx page, not a 500.
    let bad = web.get("/queue?status=bogus").await;
    assert_eq!(bad.code, 400);
    assert!(bad.body.contains("unknown paper status"));
    assert_eq!(web.get("/queue?limit=0").await.code, 400);
    let long = "x".repeat(5000);
    assert_eq!(web.get(&format!("/queue?q={long}")).await.code, 400);
    let nf = web.get("/paper/0000.00000").await;
    assert_eq!(nf.code, 404);
    assert!(nf.body.contains("no paper 0000.00000"));
    // Search syntax is never an error.
    for q in ["%22", "*", "a%20OR%20b", "NEAR(", "%27%3B--"] {
        assert_eq!(web.get(&format!("/queue?q={q}")).await.code, 200, "{q}");
    }
    // Keyset pages: one row each, following "older" visits every paper.
    let mut seen = Vec::new();
    let mut path = "/queue?limit=1".to_string();
    loop {
        let p = web.get(&path).await;
        assert_eq!(p.code, 200);
        for i in 0..3 {
            if p.body.contains(&format!(">{}</a>", arxiv(i))) {
                seen.push(i);
            }
        }
        let Some(at) = p.body.find("rel=\"next\"") else {
            break;
        };
        let head = &p.body[..at];
        let href = &head[head.rfind("href=\"").unwrap() + 6..];
        let href = href[..href.find('"').unwrap()]
            .replace("&amp;", "&")
            .replace("&#x2f;", "/");
        path = href;
        assert!(seen.len() <= 3, "pages loop");
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2]);
    // The CLI's re-queue does what the dashboard's button does.
    let r = site.json(&["requeue", &arxiv(2)]);
    assert_eq!(r["requeued"][0]["from"], "done", "{r}");
    assert_eq!(site.statuses()[&arxiv(2)], "pending");
    assert_eq!(site.run(&["requeue", "0000.00000"]).status.code(), Some(2));
    stop.cancel();
    handle.await.unwrap();
}

/// The same pages and an action on PostgreSQL (the queue's keyset pages,
/// its full-text title search, the series' text buckets, the timeline's
/// JSON reads all have their own SQL there). Skips without RUNNER_TEST_PG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_serves_a_postgresql_runner() {
    let Some(site) = Site::postgres(HOSTILE_ERROR, "").await else {
        return;
    };
    site.add_papers(0, 3);
    let _ = tokio::task::block_in_place(|| site.run(&["--workers", "1"]));
    let url = site.pg.clone().unwrap();
    crate::support::pg_query(
        &url,
        &format!(
            "UPDATE executions SET title = 'Sparse Protein Folding <script>alert(1)</script>' WHERE arxiv_id = '{}'",
            arxiv(1)
        ),
    );
    let var = "PAPER_RUNNER_DASH_PG_TOKEN";
    std::env::set_var(var, "pg-s3cret");
    let (base, stop, handle) = serve_site(&site, Some(var)).await;
    let api = Web::new(&base);
    let get = |path: String| {
        let api = &api;
        let base = base.clone();
        async move {
            api.send(
                api.client
                    .get(format!("{base}{path}"))
                    .bearer_auth("pg-s3cret"),
            )
            .await
        }
    };
    let overview = get("/".into()).await;
    assert_eq!(overview.code, 200, "{}", overview.body);
    assert!(overview.body.contains("<svg"));
    assert_inert(&overview, "overview");
    let found = get("/queue?q=prot+fold".into()).await;
    assert_eq!(found.code, 200, "{}", found.body);
    assert!(
        found.body.contains(&format!(">{}</a>", arxiv(1))),
        "{}",
        found.body
    );
    assert!(!found.body.contains(&format!(">{}</a>", arxiv(2))));
    assert_inert(&found, "search");
    let failed = get("/queue?status=failed&limit=1".into()).await;
    assert!(
        failed.body.contains(&format!(">{}</a>", arxiv(0))),
        "{}",
        failed.body
    );
    let paper = get(format!("/paper/{}", arxiv(0))).await;
    assert_eq!(paper.code, 200, "{}", paper.body);
    assert!(paper.body.contains("svg class=\"chart gantt\""));
    assert_inert(&paper, "failed paper");
    let csrf = csrf_of(&paper.body);
    let retried = api
        .send(
            api.client
                .post(format!("{base}/actions/retry"))
                .bearer_auth("pg-s3cret")
                .form(&[("id", arxiv(0).as_str()), ("csrf", csrf.as_str())]),
        )
        .await;
    assert_eq!(retried.code, 303, "{}", retried.body);
    assert_eq!(site.statuses()[&arxiv(0)], "pending");
    stop.cancel();
    handle.await.unwrap();
}
