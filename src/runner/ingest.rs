//! Ingest: getting papers into the queue.
//!
//! Two sources feed `executions`:
//! - `runner add ID…`, with titles and abstracts looked up in the arXiv
//!   Atom API ([`fetch_metadata`]). The lookup is a convenience, never a
//!   precondition: when arXiv is down the paper is queued without them and
//!   the prep phase takes the title from the PDF.
//! - seeding from an arxiv-crawler database ([`seed_from_crawler`]): its
//!   pending `paper_queue` rows, read-only, latest version, priority then
//!   age.
//!
//! A paper is identified by its arXiv id without version: adding
//! `2401.01234v2` when `2401.01234` (or any other version) is queued is a
//! no-op that says so, so the crawler and the command line can never queue
//! the same paper twice.

use super::config::Config;
use crate::pipeline::acquire::{base_id, safe_id};
use crate::store::crawler::{CrawlerDb, CrawlerError, PendingPaper};
use crate::store::{AddOutcome, NewPaper, Store, StoreError};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// arXiv serves at most this many ids per `id_list` request politely.
pub const MAX_IDS_PER_REQUEST: usize = 50;
/// arXiv's API etiquette: no more than one request every three seconds.
pub const ARXIV_MIN_INTERVAL: Duration = Duration::from_secs(3);

/// Why ingesting failed. Every variant names the URL or file involved.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    InvalidId(String),
    #[error("GET {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("GET {url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("GET {url}: not a readable Atom feed: {message}")]
    Feed { url: String, message: String },
    #[error("cannot build HTTP client: {0}")]
    Client(String),
    #[error("crawler database {path}: {message}")]
    CrawlerDb { path: PathBuf, message: String },
    #[error(
        "no crawler database configured (set seed.db or corpus_db in the config, or pass --crawler-db PATH)"
    )]
    NoCrawlerDb,
    #[error("seeding task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Metadata of one paper as the arXiv API returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperMeta {
    /// The id arXiv returned, with version (`2401.01234v2`).
    pub arxiv_id: String,
    /// Whitespace-normalised.
    pub title: String,
    /// Whitespace-normalised.
    pub abstract_text: String,
    pub authors: Vec<String>,
    /// As given (`2024-01-02T18:00:00Z`).
    pub published: Option<String>,
    pub primary_category: Option<String>,
}

/// How metadata requests are paced and retried.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Ids per request (clamped to 1..=50).
    pub chunk_size: usize,
    /// Minimum spacing between any two requests, retries included
    /// (3 s for export.arxiv.org; tests use 0).
    pub min_interval: Duration,
    /// Requests per chunk before giving up (at least 1).
    pub attempts: u32,
    /// Wait before retry n (the last repeats) when the server sent no
    /// Retry-After.
    pub backoffs: Vec<Duration>,
    /// A longer Retry-After is cut to this, so one header cannot stall
    /// `runner add` for an hour.
    pub max_retry_after: Duration,
    /// Larger responses are refused (50 entries are ~200 KB).
    pub max_bytes: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            chunk_size: MAX_IDS_PER_REQUEST,
            min_interval: ARXIV_MIN_INTERVAL,
            attempts: 4,
            backoffs: [2, 5, 15].into_iter().map(Duration::from_secs).collect(),
            max_retry_after: Duration::from_secs(120),
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What a metadata lookup found, chunk by chunk.
#[derive(Debug, Default)]
pub struct MetadataFetch {
    /// Requested id (as given, trimmed) → metadata.
    pub found: HashMap<String, PaperMeta>,
    /// Ids the API answered for but did not return (or returned as an
    /// "Error" entry).
    pub not_found: Vec<String>,
    /// Set when a chunk failed after its retries; lookups stop there (the
    /// API is down), so ids in neither list were not looked up.
    pub error: Option<IngestError>,
}

/// An HTTP client for the arXiv API: a descriptive User-Agent, as arXiv asks.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, IngestError> {
    reqwest::Client::builder()
        .user_agent(concat!(
            "paper-runner/",
            env!("CARGO_PKG_VERSION"),
            " (research paper analysis; polite: 1 request / 3 s)"
        ))
        .timeout(timeout)
        .build()
        .map_err(|e| IngestError::Client(e.to_string()))
}

/// Metadata of `ids` from the arXiv Atom API at `api_url`, with arXiv's
/// pacing (≤ 50 ids per request, ≥ 3 s apart). Ids the API does not know
/// are simply absent from the map; any failure is an error (use
/// [`fetch_metadata_with`] to keep partial results).
pub async fn fetch_metadata(
    client: &reqwest::Client,
    api_url: &str,
    ids: &[String],
) -> Result<HashMap<String, PaperMeta>, IngestError> {
    let fetched = fetch_metadata_with(client, api_url, ids, &FetchOptions::default()).await;
    match fetched.error {
        Some(e) => Err(e),
        None => Ok(fetched.found),
    }
}

/// [`fetch_metadata`] with explicit pacing and retries, keeping what the
/// chunks before a failure found.
pub async fn fetch_metadata_with(
    client: &reqwest::Client,
    api_url: &str,
    ids: &[String],
    opts: &FetchOptions,
) -> MetadataFetch {
    let mut out = MetadataFetch::default();
    let mut wanted: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for id in ids {
        let id = id.trim();
        // The id goes into the URL unescaped: only validated ids may.
        if let Err(e) = safe_id(id) {
            out.error = Some(IngestError::InvalidId(e.message));
            return out;
        }
        if seen.insert(id.to_string()) {
            wanted.push(id.to_string());
        }
    }
    let mut pacer = Pacer::new(opts.min_interval);
    for chunk in wanted.chunks(opts.chunk_size.clamp(1, MAX_IDS_PER_REQUEST)) {
        let sep = if api_url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{api_url}{sep}id_list={}&max_results={}",
            chunk.join(","),
            chunk.len()
        );
        let entries = match fetch_feed(client, &url, opts, &mut pacer).await {
            Ok(entries) => entries,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        let (by_exact, by_base) = index_entries(entries);
        for id in chunk {
            let hit = by_exact
                .get(id.as_str())
                .or_else(|| by_base.get(base_id(id)));
            match hit {
                Some(meta) => {
                    out.found.insert(id.clone(), meta.clone());
                }
                None => out.not_found.push(id.clone()),
            }
        }
    }
    out
}

/// Returned entries by versioned id and by id without version (the
/// highest version wins), so a request without version matches.
fn index_entries(
    entries: Vec<PaperMeta>,
) -> (HashMap<String, PaperMeta>, HashMap<String, PaperMeta>) {
    let mut by_exact = HashMap::new();
    let mut by_base: HashMap<String, PaperMeta> = HashMap::new();
    for meta in entries {
        let base = base_id(&meta.arxiv_id).to_string();
        let newer = by_base
            .get(&base)
            .is_none_or(|old| version_of(&meta.arxiv_id) > version_of(&old.arxiv_id));
        if newer {
            by_base.insert(base, meta.clone());
        }
        by_exact.insert(meta.arxiv_id.clone(), meta);
    }
    (by_exact, by_base)
}

fn version_of(id: &str) -> u32 {
    id[base_id(id).len()..]
        .trim_start_matches('v')
        .parse()
        .unwrap_or(0)
}

/// Spaces requests at least `interval` apart.
struct Pacer {
    interval: Duration,
    last: Option<tokio::time::Instant>,
}

impl Pacer {
    fn new(interval: Duration) -> Pacer {
        Pacer {
            interval,
            last: None,
        }
    }

    async fn wait(&mut self) {
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + self.interval).await;
        }
        self.last = Some(tokio::time::Instant::now());
    }
}

/// A failed GET: the error, whether another attempt may help, and the
/// server's Retry-After in seconds.
struct Failure {
    error: IngestError,
    retryable: bool,
    retry_after: Option<f64>,
}

/// GET one feed, retrying 408/429/5xx and transport errors.
async fn fetch_feed(
    client: &reqwest::Client,
    url: &str,
    opts: &FetchOptions,
    pacer: &mut Pacer,
) -> Result<Vec<PaperMeta>, IngestError> {
    let attempts = opts.attempts.max(1);
    let mut attempt = 0u32;
    loop {
        pacer.wait().await;
        let f = match get_once(client, url, opts.max_bytes).await {
            Ok(body) => {
                return parse_feed(&body).map_err(|message| IngestError::Feed {
                    url: url.to_string(),
                    message,
                })
            }
            Err(f) => f,
        };
        attempt += 1;
        if !f.retryable || attempt >= attempts {
            return Err(f.error);
        }
        let backoff = opts
            .backoffs
            .get(attempt as usize - 1)
            .or(opts.backoffs.last())
            .copied()
            .unwrap_or(Duration::ZERO);
        // The server's word wins over our guess, within reason.
        let wait = match f.retry_after {
            Some(s) => Duration::try_from_secs_f64(s)
                .unwrap_or(opts.max_retry_after)
                .min(opts.max_retry_after),
            None => backoff,
        };
        tracing::info!(url, attempt, wait_s = wait.as_secs_f64(), error = %f.error, "retrying arXiv metadata request");
        tokio::time::sleep(wait).await;
    }
}

async fn get_once(
    client: &reqwest::Client,
    url: &str,
    max_bytes: usize,
) -> Result<String, Failure> {
    let transport = |e: reqwest::Error| Failure {
        error: IngestError::Transport {
            url: url.to_string(),
            message: e.to_string(),
        },
        retryable: true,
        retry_after: None,
    };
    let mut resp = client.get(url).send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(Failure {
            error: IngestError::Http {
                url: url.to_string(),
                status,
            },
            retryable: status == 408 || status == 429 || (500..=599).contains(&status),
            retry_after: crate::llm::errors::retry_after(resp.headers()),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        body.extend_from_slice(&chunk);
        if body.len() > max_bytes {
            return Err(Failure {
                error: IngestError::Feed {
                    url: url.to_string(),
                    message: format!("response exceeds {max_bytes} bytes"),
                },
                retryable: false,
                retry_after: None,
            });
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Collapse runs of whitespace (arXiv wraps titles and abstracts).
pub fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One `<entry>` being read.
#[derive(Default)]
struct EntryDraft {
    id: String,
    title: String,
    summary: String,
    authors: Vec<String>,
    published: Option<String>,
    primary_category: Option<String>,
}

impl EntryDraft {
    /// The entry as metadata; `None` for arXiv's "Error" entries (its
    /// answer to a malformed id) and anything without an `/abs/` id.
    fn finish(self) -> Option<PaperMeta> {
        let title = normalize_ws(&self.title);
        let (_, id) = self.id.trim().split_once("/abs/")?;
        if title == "Error" || id.is_empty() {
            return None;
        }
        Some(PaperMeta {
            arxiv_id: id.to_string(),
            title,
            abstract_text: normalize_ws(&self.summary),
            authors: self.authors,
            published: self.published,
            primary_category: self.primary_category,
        })
    }
}

fn local_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn term_of(e: &BytesStart<'_>) -> Option<String> {
    let attr = e.try_get_attribute("term").ok().flatten()?;
    attr.normalized_value(quick_xml::XmlVersion::default())
        .ok()
        .map(|v| v.trim().to_string())
}

/// The entries of an arXiv Atom feed. Elements are matched by local name
/// (`arxiv:primary_category`), so namespace prefixes do not matter.
fn parse_feed(xml: &str) -> Result<Vec<PaperMeta>, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut entry: Option<EntryDraft> = None;
    let mut entries = Vec::new();
    let mut text = String::new();
    let mut saw_feed = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) | Event::Empty(e) if stack.is_empty() && local_name(&e) != "feed" => {
                return Err(format!(
                    "root element is <{}>, expected <feed>",
                    local_name(&e)
                ));
            }
            Event::Start(e) => {
                let name = local_name(&e);
                saw_feed = true;
                if stack.len() == 1 && name == "entry" {
                    entry = Some(EntryDraft::default());
                }
                if let Some(d) = entry.as_mut().filter(|_| name == "primary_category") {
                    d.primary_category = term_of(&e);
                }
                stack.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                saw_feed |= stack.is_empty();
                if let Some(d) = entry
                    .as_mut()
                    .filter(|_| local_name(&e) == "primary_category")
                {
                    d.primary_category = term_of(&e);
                }
            }
            Event::Text(t) => {
                text.push_str(&t.xml10_content().map_err(|e| e.to_string())?);
            }
            Event::CData(c) => text.push_str(&c.decode().map_err(|e| e.to_string())?),
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| e.to_string())?;
                match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => text.push(c),
                    None => match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => text.push_str(s),
                        None => {
                            text.push('&');
                            text.push_str(&name);
                            text.push(';');
                        }
                    },
                }
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                let value = std::mem::take(&mut text);
                let parent = stack.last().map(String::as_str);
                match (entry.as_mut(), stack.len(), parent) {
                    (Some(_), 1, _) if name == "entry" => {
                        entries.extend(entry.take().and_then(EntryDraft::finish));
                    }
                    (Some(d), 2, _) => match name.as_str() {
                        "id" => d.id = value,
                        "title" => d.title = value,
                        "summary" => d.summary = value,
                        "published" => d.published = Some(value.trim().to_string()),
                        _ => {}
                    },
                    (Some(d), 3, Some("author")) if name == "name" => {
                        let n = normalize_ws(&value);
                        if !n.is_empty() {
                            d.authors.push(n);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_feed {
        return Err("empty document, expected <feed>".into());
    }
    Ok(entries)
}

/// The queued paper that is `arxiv_id` or another version of it: its
/// queue id and status.
pub fn queued_version(
    store: &Store,
    arxiv_id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let id = arxiv_id.trim();
    Ok(store
        .queued_version(id, base_id(id))?
        .map(|q| (q.id, q.status)))
}

/// Queue a paper unless it, or another version of it, is queued already
/// (then `Exists` names the queued row). Two processes adding different
/// versions at the same instant could still both succeed; the same id
/// cannot (the store's `UNIQUE(arxiv_id)`).
pub fn add_paper_once(store: &Store, p: &NewPaper) -> Result<AddOutcome, StoreError> {
    if let Some((id, status)) = queued_version(store, &p.arxiv_id)? {
        return Ok(AddOutcome::Exists { id, status });
    }
    store.add_paper(p)
}

/// One paper added by seeding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededPaper {
    /// With the crawler's latest version (`2401.01234v2`).
    pub arxiv_id: String,
    pub title: Option<String>,
    pub priority: i64,
}

/// What a seeding did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Papers added.
    pub added: usize,
    /// Candidates skipped because a version of them is already queued.
    pub already_queued: usize,
    /// Candidates looked at (distinct arXiv ids with a pending row, in
    /// order, until the limit was reached).
    pub considered: usize,
    /// Candidates whose crawler id is not a valid arXiv id (skipped).
    pub invalid: usize,
    /// The added papers, in the order they were added.
    pub papers: Vec<SeededPaper>,
}

/// Open the crawler database read-only (never creating it).
fn open_crawler(path: &Path) -> Result<CrawlerDb, IngestError> {
    CrawlerDb::open(path).map_err(|e| IngestError::CrawlerDb {
        path: path.to_path_buf(),
        message: match e {
            CrawlerError::Open(e) => format!("cannot open: {e}"),
            e => e.to_string(),
        },
    })
}

/// Add the crawler's pending papers to our queue, best first, up to
/// `limit` new ones (`source = "seed"`, title, abstract and priority
/// carried over). Papers already queued in any version are skipped, so
/// seeding twice adds nothing. The crawler database is only read.
/// Blocking: async code calls it through `Store::run` ([`seed_now`]).
pub fn seed_from_crawler(
    store: &Store,
    crawler_db: &Path,
    limit: Option<usize>,
) -> Result<SeedReport, IngestError> {
    let fail = |message: String| IngestError::CrawlerDb {
        path: crawler_db.to_path_buf(),
        message,
    };
    let crawler = open_crawler(crawler_db)?;
    let mut queued = queued_bases(store)?;
    let mut report = SeedReport::default();
    let stopped = crawler
        .pending_papers(|row| {
            if limit.is_some_and(|l| report.added >= l) {
                return ControlFlow::Break(Ok(()));
            }
            match seed_one(store, crawler_db, row, &mut queued, &mut report) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(Err(e)),
            }
        })
        .map_err(|e| match e {
            CrawlerError::Read(e) => fail(format!("reading pending papers: {e}")),
            e => fail(e.to_string()),
        })?;
    if let Some(Err(e)) = stopped {
        return Err(e.into());
    }
    Ok(report)
}

/// Seed one pending crawler paper (or count why not).
fn seed_one(
    store: &Store,
    crawler_db: &Path,
    row: PendingPaper,
    queued: &mut HashSet<String>,
    report: &mut SeedReport,
) -> Result<(), StoreError> {
    report.considered += 1;
    let arxiv = row.arxiv_id.trim().to_string();
    let versioned = match row.version {
        Some(v) if base_id(&arxiv) == arxiv => format!("{arxiv}v{v}"),
        _ => arxiv.clone(),
    };
    if safe_id(&versioned).is_err() {
        tracing::warn!(db = %crawler_db.display(), id = %arxiv, "crawler row has an invalid arXiv id; skipped");
        report.invalid += 1;
        return Ok(());
    }
    let base = base_id(&versioned).to_string();
    if queued.contains(&base) {
        report.already_queued += 1;
        return Ok(());
    }
    let clean = |s: Option<String>| s.map(|s| normalize_ws(&s)).filter(|s| !s.is_empty());
    let title = clean(row.title);
    let paper = NewPaper {
        arxiv_id: versioned.clone(),
        title: title.clone(),
        abstract_text: clean(row.abstract_text),
        pdf_path: None,
        priority: row.priority.unwrap_or(0),
        source: "seed".into(),
    };
    match store.add_paper(&paper)? {
        AddOutcome::Added { .. } => {
            report.added += 1;
            report.papers.push(SeededPaper {
                arxiv_id: versioned,
                title,
                priority: paper.priority,
            });
        }
        // Someone else added it since we read the queue.
        AddOutcome::Exists { .. } => report.already_queued += 1,
    }
    queued.insert(base);
    Ok(())
}

/// arXiv ids (without version) of every queued paper.
fn queued_bases(store: &Store) -> Result<HashSet<String>, StoreError> {
    Ok(store
        .queued_arxiv_ids()?
        .iter()
        .map(|id| base_id(id.trim()).to_string())
        .collect())
}

/// The crawler database seeding reads: `seed.db`, else `corpus_db`.
pub fn crawler_db(cfg: &Config) -> Option<&Path> {
    cfg.seed.db.as_deref().or(cfg.corpus_db.as_deref())
}

/// One seeding as configured (`seed.db` or `corpus_db`, `seed.limit`), off
/// the async threads: for the daemon's periodic re-seeding
/// (`--daemon --seed`, every `seed.interval_secs`).
pub async fn seed_now(store: &Store, cfg: &Config) -> Result<SeedReport, IngestError> {
    let db = crawler_db(cfg)
        .ok_or(IngestError::NoCrawlerDb)?
        .to_path_buf();
    let limit = cfg.seed.limit;
    // `Store::run` wants a store error out; the ingest error rides inside.
    store
        .run(move |s| Ok(seed_from_crawler(s, &db, limit)))
        .await
        .map_err(|e| IngestError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">
  <title type="html">ArXiv Query: id_list=2401.01234</title>
  <id>http://arxiv.org/api/abc</id>
  <entry>
    <id>http://arxiv.org/abs/2401.01234v2</id>
    <published>2024-01-02T18:00:00Z</published>
    <title>Zeolites &amp; catalysts:
      a   study</title>
    <summary>  We study
  zeolites &#x3C;here&#62;.
</summary>
    <author><name>Ada  Lovelace</name></author>
    <author><name>Alan Turing</name><arxiv:affiliation>Somewhere</arxiv:affiliation></author>
    <arxiv:primary_category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
    <category term="cs.LG"/>
  </entry>
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_1234</id>
    <title>Error</title>
    <summary>incorrect id format for 1234</summary>
  </entry>
  <entry>
    <id>http://arxiv.org/abs/hep-th/9901001v1</id>
    <title><![CDATA[Old <style>]]></title>
    <summary>Strings.</summary>
  </entry>
</feed>"#;

    #[test]
    fn feeds_parse_into_normalised_metadata() {
        let e = parse_feed(FEED).unwrap();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0],
            PaperMeta {
                arxiv_id: "2401.01234v2".into(),
                title: "Zeolites & catalysts: a study".into(),
                abstract_text: "We study zeolites <here>.".into(),
                authors: vec!["Ada Lovelace".into(), "Alan Turing".into()],
                published: Some("2024-01-02T18:00:00Z".into()),
                primary_category: Some("cs.LG".into()),
            }
        );
        assert_eq!(e[1].arxiv_id, "hep-th/9901001v1");
        assert_eq!(e[1].title, "Old <style>");
    }

    #[test]
    fn non_feeds_are_refused() {
        assert!(parse_feed("<html><body>captcha</body></html>").is_err());
        assert!(parse_feed("").is_err());
        assert!(parse_feed("<feed><entry><title>x</feed>").is_err());
        assert_eq!(parse_feed("<feed/>").unwrap_or_default(), vec![]);
    }

    #[test]
    fn requests_without_version_match_the_latest_returned() {
        let e = parse_feed(FEED).unwrap();
        let (exact, base) = index_entries(e);
        assert!(exact.contains_key("2401.01234v2"));
        assert_eq!(base["2401.01234"].arxiv_id, "2401.01234v2");
        assert_eq!(base["hep-th/9901001"].arxiv_id, "hep-th/9901001v1");
        assert_eq!(version_of("2401.01234v12"), 12);
        assert_eq!(version_of("2401.01234"), 0);
    }
}
