//! Ingest: arXiv metadata from a fake Atom API on loopback (versions,
//! "Error" entries, retries, pacing, outages), `runner add` through the real
//! binary, and seeding from a synthetic arxiv-crawler database.

use crate::support::{stderr, stdout};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use paper_runner::runner::ingest::{
    fetch_metadata, fetch_metadata_with, seed_from_crawler, seed_now, FetchOptions, IngestError,
};
use paper_runner::runner::Config;
use paper_runner::store::{Store, StoreOptions};
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

// ---------------------------------------------------------------- fake API

/// One request the fake API saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    ids: Vec<String>,
    max_results: Option<usize>,
}

#[derive(Default)]
struct Api {
    seen: Mutex<Vec<Seen>>,
    flaky: AtomicUsize,
}

impl Api {
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// What the fake arXiv knows: base id → (latest version, title, summary).
fn known(base: &str) -> Option<(u32, &'static str, &'static str)> {
    match base {
        "2401.00001" => Some((
            2,
            "Zeolite &amp; catalysts\n      for   hydrocracking",
            "\n  Porous zeolites\n  improve yields.\n",
        )),
        "2401.00002" => Some((3, "Graph transformers", "Attention on graphs.")),
        "2401.00003" => Some((1, "Third paper", "Three.")),
        "2401.00004" => Some((1, "Fourth paper", "Four.")),
        "2401.00005" => Some((1, "Fifth paper", "Five.")),
        "hep-th/9901001" => Some((1, "Strings &#x26; branes", "Old style.")),
        _ => None,
    }
}

fn split_version(id: &str) -> (&str, Option<u32>) {
    match id.rfind('v') {
        Some(i) if i > 0 && id[i + 1..].parse::<u32>().is_ok() => {
            (&id[..i], id[i + 1..].parse().ok())
        }
        _ => (id, None),
    }
}

fn entry(id: &str) -> String {
    if id == "2401.00404" {
        // arXiv's answer to an id it cannot use.
        return "<entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_2401.00404</id>\
                <title>Error</title><summary>incorrect id format for 2401.00404</summary>\
                <updated>2024-01-01T00:00:00-05:00</updated></entry>"
            .into();
    }
    let (base, version) = split_version(id);
    let Some((latest, title, summary)) = known(base) else {
        return String::new();
    };
    let v = version.unwrap_or(latest);
    format!(
        "<entry>\n  <id>http://arxiv.org/abs/{base}v{v}</id>\n  <updated>2024-02-01T00:00:00Z</updated>\n  \
         <published>2024-01-0{v}T18:00:00Z</published>\n  <title>{title}</title>\n  \
         <summary>{summary}</summary>\n  <author>\n    <name>Ada  Lovelace</name>\n  </author>\n  \
         <author><name>Alan Turing</name></author>\n  \
         <arxiv:primary_category xmlns:arxiv=\"http://arxiv.org/schemas/atom\" term=\"cs.LG\" scheme=\"http://arxiv.org/schemas/atom\"/>\n  \
         <category term=\"cs.LG\" scheme=\"http://arxiv.org/schemas/atom\"/>\n</entry>\n"
    )
}

fn feed(ids: &[String]) -> String {
    let entries: String = ids.iter().map(|i| entry(i)).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <link href=\"http://arxiv.org/api/query?id_list={}\" rel=\"self\" type=\"application/atom+xml\"/>\n\
         <title type=\"html\">ArXiv Query</title>\n<id>http://arxiv.org/api/x</id>\n{entries}</feed>\n",
        ids.join(",")
    )
}

/// `/api/query` answers; `/flaky/query` fails its first request with 503
/// (Retry-After: 0); `/half/query` answers once, then 503s; `/down/query`
/// always 503s and `/limited/query` always 429s (Retry-After: 0).
async fn query(uri: Uri, State(api): State<Arc<Api>>) -> (StatusCode, HeaderMap, String) {
    let raw = uri.query().unwrap_or("");
    let mut ids = Vec::new();
    let mut max_results = None;
    for pair in raw.split('&') {
        match pair.split_once('=') {
            Some(("id_list", v)) => ids = v.split(',').map(str::to_string).collect(),
            Some(("max_results", v)) => max_results = v.parse().ok(),
            _ => {}
        }
    }
    let path = uri.path().to_string();
    let n = {
        let mut seen = api.seen.lock().unwrap();
        seen.push(Seen {
            path: path.clone(),
            ids: ids.clone(),
            max_results,
        });
        seen.len()
    };
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "0".parse().unwrap());
    let fail = match path.as_str() {
        "/flaky/query" => api.flaky.fetch_add(1, Ordering::SeqCst) == 0,
        "/half/query" => n > 1,
        "/down/query" => true,
        "/limited/query" => {
            return (StatusCode::TOO_MANY_REQUESTS, headers, String::new());
        }
        _ => false,
    };
    if fail {
        return (StatusCode::SERVICE_UNAVAILABLE, headers, "down".into());
    }
    (StatusCode::OK, HeaderMap::new(), feed(&ids))
}

/// The fake API on 127.0.0.1:0: its base URL (`http://addr`) and its log.
async fn api_server() -> (String, Arc<Api>) {
    let api = Arc::new(Api::default());
    let app = Router::new()
        .route("/{kind}/query", get(query))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), api)
}

fn fast() -> FetchOptions {
    FetchOptions {
        min_interval: Duration::ZERO,
        backoffs: vec![Duration::ZERO],
        ..FetchOptions::default()
    }
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn client() -> reqwest::Client {
    paper_runner::runner::ingest::http_client(Duration::from_secs(10)).unwrap()
}

// ------------------------------------------------------- metadata (library)

#[tokio::test]
async fn versions_map_back_to_the_requested_ids() {
    let (base, api) = api_server().await;
    let ids = strings(&[
        "2401.00001",
        "2401.00002v1",
        "hep-th/9901001",
        "2401.00404",
        "2401.00777",
    ]);
    let f = fetch_metadata_with(&client(), &format!("{base}/api/query"), &ids, &fast()).await;
    assert!(f.error.is_none(), "{:?}", f.error);
    let a = &f.found["2401.00001"];
    assert_eq!(a.arxiv_id, "2401.00001v2", "latest version when none asked");
    assert_eq!(a.title, "Zeolite & catalysts for hydrocracking");
    assert_eq!(a.abstract_text, "Porous zeolites improve yields.");
    assert_eq!(a.authors, ["Ada Lovelace", "Alan Turing"]);
    assert_eq!(a.published.as_deref(), Some("2024-01-02T18:00:00Z"));
    assert_eq!(a.primary_category.as_deref(), Some("cs.LG"));
    assert_eq!(
        f.found["2401.00002v1"].arxiv_id, "2401.00002v1",
        "the version asked for"
    );
    assert_eq!(f.found["hep-th/9901001"].title, "Strings & branes");
    assert_eq!(f.found.len(), 3);
    assert_eq!(
        f.not_found,
        ["2401.00404", "2401.00777"],
        "Error entry = not found"
    );
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].ids, ids, "literal comma-separated id_list");
    assert_eq!(reqs[0].max_results, Some(5));
}

#[tokio::test]
async fn the_plain_signature_uses_one_request_for_few_ids() {
    let (base, api) = api_server().await;
    let ids = strings(&["2401.00001", "2401.00777"]);
    let found = fetch_metadata(&client(), &format!("{base}/api/query"), &ids)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found["2401.00001"].arxiv_id, "2401.00001v2");
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test]
async fn ids_are_sent_in_chunks_spaced_by_the_interval() {
    let (base, api) = api_server().await;
    let ids = strings(&[
        "2401.00001",
        "2401.00002",
        "2401.00003",
        "2401.00004",
        "2401.00005",
    ]);
    let opts = FetchOptions {
        chunk_size: 2,
        min_interval: Duration::from_millis(150),
        ..fast()
    };
    let start = Instant::now();
    let f = fetch_metadata_with(&client(), &format!("{base}/api/query"), &ids, &opts).await;
    let elapsed = start.elapsed();
    assert!(f.error.is_none(), "{:?}", f.error);
    assert_eq!(f.found.len(), 5);
    let reqs = api.requests();
    let chunks: Vec<(usize, Option<usize>)> =
        reqs.iter().map(|r| (r.ids.len(), r.max_results)).collect();
    assert_eq!(chunks, [(2, Some(2)), (2, Some(2)), (1, Some(1))]);
    assert!(
        elapsed >= Duration::from_millis(300),
        "3 requests need 2 intervals: {elapsed:?}"
    );
}

#[tokio::test]
async fn chunks_are_capped_at_fifty_ids() {
    let (base, api) = api_server().await;
    let ids: Vec<String> = (0..120).map(|n| format!("2405.{n:05}")).collect();
    let opts = FetchOptions {
        chunk_size: 500,
        ..fast()
    };
    let f = fetch_metadata_with(&client(), &format!("{base}/api/query"), &ids, &opts).await;
    assert!(f.error.is_none(), "{:?}", f.error);
    assert_eq!(f.not_found.len(), 120);
    let sizes: Vec<usize> = api.requests().iter().map(|r| r.ids.len()).collect();
    assert_eq!(sizes, [50, 50, 20]);
}

#[tokio::test]
async fn a_503_is_retried_honouring_retry_after() {
    let (base, api) = api_server().await;
    let ids = strings(&["2401.00001"]);
    // Backoffs of a minute: only Retry-After: 0 lets this finish quickly.
    let opts = FetchOptions {
        backoffs: vec![Duration::from_secs(60)],
        ..fast()
    };
    let start = Instant::now();
    let f = fetch_metadata_with(&client(), &format!("{base}/flaky/query"), &ids, &opts).await;
    assert!(f.error.is_none(), "{:?}", f.error);
    assert_eq!(
        f.found["2401.00001"].title,
        "Zeolite & catalysts for hydrocracking"
    );
    let paths: Vec<String> = api.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/flaky/query", "/flaky/query"]);
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn persistent_429s_give_up_after_the_attempts() {
    let (base, api) = api_server().await;
    let opts = FetchOptions {
        attempts: 3,
        ..fast()
    };
    let url = format!("{base}/limited/query");
    let f = fetch_metadata_with(&client(), &url, &strings(&["2401.00001"]), &opts).await;
    match f.error {
        Some(IngestError::Http {
            status: 429,
            url: u,
        }) => assert!(u.starts_with(&url), "{u}"),
        other => panic!("{other:?}"),
    }
    assert!(f.found.is_empty());
    assert_eq!(api.requests().len(), 3);
}

#[tokio::test]
async fn transport_errors_are_retried_then_reported() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/api/query");
    let f = fetch_metadata_with(&client(), &url, &strings(&["2401.00001"]), &fast()).await;
    match f.error {
        Some(e @ IngestError::Transport { .. }) => assert!(e.to_string().contains(&url), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_failing_chunk_keeps_what_earlier_chunks_found() {
    let (base, api) = api_server().await;
    let ids = strings(&["2401.00001", "2401.00002", "2401.00003", "2401.00004"]);
    let opts = FetchOptions {
        chunk_size: 2,
        attempts: 2,
        ..fast()
    };
    let f = fetch_metadata_with(&client(), &format!("{base}/half/query"), &ids, &opts).await;
    assert!(
        matches!(f.error, Some(IngestError::Http { status: 503, .. })),
        "{:?}",
        f.error
    );
    let mut found: Vec<&String> = f.found.keys().collect();
    found.sort();
    assert_eq!(found, ["2401.00001", "2401.00002"]);
    assert!(f.not_found.is_empty());
    assert_eq!(
        api.requests().len(),
        3,
        "1 ok + 2 attempts of the second chunk"
    );
}

#[tokio::test]
async fn invalid_ids_never_reach_the_url() {
    let (base, api) = api_server().await;
    let ids = strings(&["2401.00001", "../etc/passwd"]);
    let f = fetch_metadata_with(&client(), &format!("{base}/api/query"), &ids, &fast()).await;
    match f.error {
        Some(e @ IngestError::InvalidId(_)) => assert!(e.to_string().contains("../etc/passwd")),
        other => panic!("{other:?}"),
    }
    assert!(api.requests().is_empty());
}

// ------------------------------------------------------------ crawler DB

const CRAWLER_SCHEMA: &str = "
CREATE TABLE papers (
    id INTEGER PRIMARY KEY,
    arxiv_id TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    title TEXT,
    abstract TEXT,
    authors TEXT,
    categories TEXT,
    published_at TEXT,
    UNIQUE(arxiv_id, version)
);
CREATE TABLE paper_queue (
    id INTEGER PRIMARY KEY,
    paper_id INTEGER UNIQUE REFERENCES papers(id),
    status TEXT,
    priority INTEGER,
    enqueued_at TEXT
);
";

/// (arxiv id, version, title, queue row: (status, priority, enqueued_at)).
type Row = (
    &'static str,
    i64,
    &'static str,
    Option<(&'static str, f64, &'static str)>,
);

const CRAWLER_ROWS: [Row; 11] = [
    (
        "2402.00001",
        1,
        "Paper A draft",
        Some(("backlog", 5.0, "2024-01-01")),
    ),
    (
        "2402.00001",
        2,
        "Paper A final",
        Some(("pending", 5.0, "2024-01-03")),
    ),
    (
        "2402.00002",
        1,
        "Paper B",
        Some(("pending", 5.0, "2024-01-02")),
    ),
    (
        "2402.00003",
        1,
        "Paper C",
        Some(("done", 10.0, "2024-01-01")),
    ),
    (
        "2402.00004",
        1,
        "Paper D draft",
        Some(("pending", 1.0, "2024-01-01")),
    ),
    (
        "2402.00004",
        2,
        "Paper D final",
        Some(("pending", 1.0, "2024-01-05")),
    ),
    (
        "2402.00005",
        1,
        "Paper E",
        Some(("pending", 0.0, "2023-12-01")),
    ),
    (
        "2402.00006",
        1,
        "Paper F",
        Some(("pending", 9.0, "2024-02-01")),
    ),
    (
        "2402.00007",
        1,
        "  Paper   G\n   wrapped ",
        Some(("pending", 1.0, "2024-01-04")),
    ),
    // A REAL priority, as older tools wrote: ranks as 2.5, stored as 2.
    (
        "2402.00008",
        1,
        "Paper H",
        Some(("pending", 2.5, "2024-01-01")),
    ),
    // In papers but never queued.
    ("2402.00009", 1, "Paper I", None),
];

/// Seeding order: priority desc, then oldest pending row; latest versions.
const SEED_ORDER: [(&str, &str, i64); 7] = [
    ("2402.00006v1", "Paper F", 9),
    ("2402.00002v1", "Paper B", 5),
    ("2402.00001v2", "Paper A final", 5),
    ("2402.00008v1", "Paper H", 2),
    ("2402.00004v2", "Paper D final", 1),
    ("2402.00007v1", "Paper G wrapped", 1),
    ("2402.00005v1", "Paper E", 0),
];

fn build_crawler(dir: &Path) -> PathBuf {
    let path = dir.join("crawler.sqlite");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(CRAWLER_SCHEMA).unwrap();
    for (arxiv, version, title, queue) in CRAWLER_ROWS {
        conn.execute(
            "INSERT INTO papers (arxiv_id, version, title, abstract, authors, categories, published_at)
             VALUES (?1, ?2, ?3, ?4, 'Someone', '[\"cs.LG\"]', '2024-01-01')",
            params![arxiv, version, title, format!("Abstract of {title}.")],
        )
        .unwrap();
        let id = conn.last_insert_rowid();
        if let Some((status, priority, at)) = queue {
            let priority: rusqlite::types::Value = if priority.fract() == 0.0 {
                (priority as i64).into()
            } else {
                priority.into()
            };
            conn.execute(
                "INSERT INTO paper_queue (paper_id, status, priority, enqueued_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, status, priority, at],
            )
            .unwrap();
        }
    }
    path
}

fn open_store(db: &Path) -> Store {
    Store::open(db, &StoreOptions::default()).unwrap()
}

/// (arxiv_id, title, abstract, source, priority, updated_at) in queue order of adding.
type QueueRow = (String, Option<String>, Option<String>, String, i64, String);

fn queue_rows(db: &Path) -> Vec<QueueRow> {
    let conn = Connection::open(db).unwrap();
    let mut st = conn
        .prepare(
            "SELECT arxiv_id, title, abstract, source, priority, updated_at FROM executions ORDER BY created_at, rowid",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn seeding_takes_pending_latest_versions_by_priority_then_age() {
    let dir = TempDir::new().unwrap();
    let crawler = build_crawler(dir.path());
    let before = std::fs::read(&crawler).unwrap();
    let db = dir.path().join("q.db");
    let store = open_store(&db);

    let r = seed_from_crawler(&store, &crawler, Some(3)).unwrap();
    assert_eq!((r.added, r.already_queued, r.considered), (3, 0, 3));
    let got: Vec<&str> = r.papers.iter().map(|p| p.arxiv_id.as_str()).collect();
    assert_eq!(got, ["2402.00006v1", "2402.00002v1", "2402.00001v2"]);

    let r = seed_from_crawler(&store, &crawler, None).unwrap();
    assert_eq!((r.added, r.already_queued, r.considered), (4, 3, 7));

    let rows = queue_rows(&db);
    let got: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_deref().unwrap_or(""), r.4))
        .collect();
    assert_eq!(got, SEED_ORDER);
    assert!(rows.iter().all(|r| r.3 == "seed"));
    assert_eq!(rows[2].2.as_deref(), Some("Abstract of Paper A final."));

    let again = seed_from_crawler(&store, &crawler, None).unwrap();
    assert_eq!(
        (again.added, again.already_queued, again.considered),
        (0, 7, 7)
    );
    assert_eq!(queue_rows(&db), rows, "seeding twice changes nothing");
    assert_eq!(
        std::fs::read(&crawler).unwrap(),
        before,
        "crawler DB only read"
    );
}

#[test]
fn seeding_skips_papers_queued_in_another_version() {
    let dir = TempDir::new().unwrap();
    let crawler = build_crawler(dir.path());
    let db = dir.path().join("q.db");
    let store = open_store(&db);
    store
        .add_paper(&paper_runner::store::NewPaper {
            arxiv_id: "2402.00006".into(),
            source: "cli".into(),
            ..Default::default()
        })
        .unwrap();
    let r = seed_from_crawler(&store, &crawler, Some(1)).unwrap();
    assert_eq!((r.added, r.already_queued, r.considered), (1, 1, 2));
    assert_eq!(r.papers[0].arxiv_id, "2402.00002v1");
}

#[test]
fn unusable_crawler_databases_are_named_errors() {
    let dir = TempDir::new().unwrap();
    let store = open_store(&dir.path().join("q.db"));

    let missing = dir.path().join("absent.sqlite");
    let e = seed_from_crawler(&store, &missing, None).unwrap_err();
    assert!(matches!(e, IngestError::CrawlerDb { .. }), "{e:?}");
    assert!(e.to_string().contains("absent.sqlite"), "{e}");
    assert!(!missing.exists(), "read-only open must not create the file");

    let other = dir.path().join("other.sqlite");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE papers (id INTEGER PRIMARY KEY, title TEXT);")
        .unwrap();
    let e = seed_from_crawler(&store, &other, None).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("other.sqlite") && msg.contains("paper_queue"),
        "{msg}"
    );

    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(
        &garbage,
        b"this is not an sqlite database at all, just some text",
    )
    .unwrap();
    let e = seed_from_crawler(&store, &garbage, None).unwrap_err();
    assert!(e.to_string().contains("garbage.sqlite"), "{e}");
}

#[tokio::test]
async fn seed_now_reads_the_configured_crawler_db() {
    let dir = TempDir::new().unwrap();
    let crawler = build_crawler(dir.path());
    let store = open_store(&dir.path().join("q.db"));
    let mut cfg = Config::default();
    assert!(matches!(
        seed_now(&store, &cfg).await,
        Err(IngestError::NoCrawlerDb)
    ));
    cfg.corpus_db = Some(crawler.clone());
    cfg.seed.limit = Some(2);
    assert_eq!(seed_now(&store, &cfg).await.unwrap().added, 2);
    cfg.seed.db = Some(dir.path().join("absent.sqlite"));
    let e = seed_now(&store, &cfg).await.unwrap_err();
    assert!(e.to_string().contains("absent.sqlite"), "seed.db wins: {e}");
}

// --------------------------------------------------------- `runner add`

/// A temp work dir with a config.toml naming the DB and API (used once
/// config loading lands; until then `--db` and `RUNNER_ARXIV_API_URL`).
struct Env {
    dir: TempDir,
    db: PathBuf,
    config: PathBuf,
}

fn env(api: &str) -> Env {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("runner.db");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "db = {:?}\narxiv_api_url = {api:?}\n",
            db.display().to_string()
        ),
    )
    .unwrap();
    Env { dir, db, config }
}

async fn runner(e: &Env, api: &str, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    // `--config` after the subcommand: before it, clap reads it as a flag
    // of the bare run mode (`args_conflicts_with_subcommands`).
    c.arg("add")
        .arg("--config")
        .arg(&e.config)
        .arg("--db")
        .arg(&e.db)
        .args(["--api-interval", "0"])
        .args(args)
        .current_dir(e.dir.path())
        .env("RUNNER_ARXIV_API_URL", api)
        .env_remove("RUNNER_CONFIG")
        .env_remove("RUST_LOG");
    tokio::task::spawn_blocking(move || c.output().expect("runner starts"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_fetches_titles_and_adding_twice_changes_nothing() {
    let (base, api) = api_server().await;
    let url = format!("{base}/api/query");
    let e = env(&url);
    let out = runner(&e, &url, &["2401.00001", "2401.00002v1", "hep-th/9901001"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("added 2401.00001 (Zeolite & catalysts for hydrocracking)\n"),
        "{text}"
    );
    assert!(
        text.contains("added 2401.00002v1 (Graph transformers)\n"),
        "{text}"
    );
    assert!(
        text.contains("added hep-th/9901001 (Strings & branes)\n"),
        "{text}"
    );
    assert!(text.ends_with("3 added, 0 already queued\n"), "{text}");
    assert_eq!(api.requests().len(), 1);

    let rows = queue_rows(&e.db);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0].1.as_deref(),
        Some("Zeolite & catalysts for hydrocracking")
    );
    assert_eq!(
        rows[0].2.as_deref(),
        Some("Porous zeolites improve yields.")
    );
    assert_eq!(rows[0].3, "cli");

    let again = runner(&e, &url, &["2401.00001", "2401.00002v1", "hep-th/9901001"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let text = stdout(&again);
    assert!(
        text.contains("exists 2401.00001 (already queued, status pending; nothing changed)\n"),
        "{text}"
    );
    assert!(text.ends_with("0 added, 3 already queued\n"), "{text}");
    assert_eq!(
        queue_rows(&e.db),
        rows,
        "row count and updated_at unchanged"
    );
    assert_eq!(api.requests().len(), 1, "no lookup for queued papers");

    // Another version of a queued paper is the same paper.
    let v = runner(&e, &url, &["2401.00001v2"]).await;
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    assert!(
        stdout(&v).contains(
            "exists 2401.00001v2 (already queued as 2401.00001, status pending; nothing changed)"
        ),
        "{}",
        stdout(&v)
    );
    assert_eq!(queue_rows(&e.db), rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_outage_still_adds_the_papers() {
    let (base, api) = api_server().await;
    let url = format!("{base}/down/query");
    let e = env(&url);
    let ids = strings(&["2401.00001", "2401.00002"]);
    std::fs::write(
        e.dir.path().join("ids.txt"),
        "# to read\n2401.00001\n\n2401.00002  # second\n",
    )
    .unwrap();
    let out = runner(&e, &url, &["--file", "ids.txt"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: arXiv metadata unavailable for 2 paper(s)"),
        "{err}"
    );
    assert!(err.contains("HTTP 503"), "{err}");
    let text = stdout(&out);
    assert!(text.contains("added 2401.00001 (no title yet)\n"), "{text}");
    assert!(text.ends_with("2 added, 0 already queued\n"), "{text}");
    let rows = queue_rows(&e.db);
    let got: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    assert_eq!(got, ids.iter().collect::<Vec<_>>());
    assert!(rows.iter().all(|r| r.1.is_none() && r.2.is_none()));
    assert_eq!(
        api.requests().len(),
        4,
        "the default attempts, then give up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_added_with_a_warning() {
    let (base, _api) = api_server().await;
    let url = format!("{base}/api/query");
    let e = env(&url);
    let out = runner(&e, &url, &["2401.00404", "2401.00001"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: arXiv returned no metadata for 2401.00404"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("added 2401.00404 (no title yet)"));
    assert_eq!(queue_rows(&e.db).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_id_exits_2_naming_it_and_adds_nothing() {
    let (base, api) = api_server().await;
    let url = format!("{base}/api/query");
    let e = env(&url);
    let out = runner(&e, &url, &["2401.00001", "../etc/passwd"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("'../etc/passwd' is not an arXiv id"),
        "{}",
        stderr(&out)
    );
    assert!(!e.db.exists() || queue_rows(&e.db).is_empty());
    assert!(api.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_flags_skip_the_lookup() {
    let (base, api) = api_server().await;
    let url = format!("{base}/api/query");
    let e = env(&url);
    let out = runner(
        &e,
        &url,
        &["2401.00001", "--title", "My  own title", "--priority", "4"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("added 2401.00001 (My  own title)"),
        "{}",
        stdout(&out)
    );
    let out = runner(&e, &url, &["--offline", "2401.00002"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(api.requests().is_empty());
    let rows = queue_rows(&e.db);
    assert_eq!(
        (rows[0].1.as_deref(), rows[0].4),
        (Some("My  own title"), 4)
    );
    assert_eq!(rows[1].1, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_through_the_binary_respects_the_limit_and_is_idempotent() {
    let (base, api) = api_server().await;
    let url = format!("{base}/api/query");
    let e = env(&url);
    let crawler = build_crawler(e.dir.path());
    let crawler_arg = crawler.to_str().unwrap();

    let out = runner(
        &e,
        &url,
        &[
            "--seed-only",
            "--seed-limit",
            "3",
            "--crawler-db",
            crawler_arg,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let added: Vec<&str> = text.lines().filter(|l| l.starts_with("added ")).collect();
    assert_eq!(
        added,
        [
            "added 2402.00006v1 (Paper F)",
            "added 2402.00002v1 (Paper B)",
            "added 2402.00001v2 (Paper A final)"
        ]
    );
    assert!(
        text.contains(": 3 added, 0 already queued, 3 considered"),
        "{text}"
    );

    let out = runner(&e, &url, &["--seed-only", "--crawler-db", crawler_arg]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(": 4 added, 3 already queued, 7 considered"),
        "{}",
        stdout(&out)
    );
    let rows = queue_rows(&e.db);
    let got: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_deref().unwrap_or(""), r.4))
        .collect();
    assert_eq!(got, SEED_ORDER);

    // --seed then the ids: the seeded version counts as the same paper.
    let out = runner(
        &e,
        &url,
        &[
            "--seed",
            "--crawler-db",
            crawler_arg,
            "2402.00005",
            "2401.00001",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(": 0 added, 7 already queued, 7 considered"),
        "{text}"
    );
    assert!(
        text.contains(
            "exists 2402.00005 (already queued as 2402.00005v1, status pending; nothing changed)"
        ),
        "{text}"
    );
    assert!(
        text.contains("added 2401.00001 (Zeolite & catalysts for hydrocracking)"),
        "{text}"
    );
    assert_eq!(queue_rows(&e.db).len(), 8);
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].ids,
        ["2401.00001"],
        "only the new paper is looked up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_input_errors_exit_2() {
    let (base, _api) = api_server().await;
    let url = format!("{base}/api/query");
    let e = env(&url);
    let out = runner(&e, &url, &["--seed-only"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no crawler database configured"),
        "{}",
        stderr(&out)
    );

    let out = runner(&e, &url, &["--seed-only", "--crawler-db", "nope.sqlite"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.sqlite"), "{}", stderr(&out));

    let out = runner(
        &e,
        &url,
        &["--seed-only", "--crawler-db", "x.sqlite", "2401.00001"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let out = runner(&e, &url, &["--seed-limit", "3", "2401.00001"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--seed-limit needs --seed"),
        "{}",
        stderr(&out)
    );
}
