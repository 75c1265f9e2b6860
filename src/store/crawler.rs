//! Read-only access to an external arxiv-crawler database: the papers it
//! queued for us (seeding, `runner::ingest`) and the related-work
//! neighbours of a paper (the corpus signals, `pipeline::corpus`).
//!
//! The database belongs to another program: it is opened read-only with
//! `query_only` (never created, never modified), and waits out the
//! crawler's writes with a busy timeout. Errors carry the SQLite cause
//! untouched; callers add the context their users need, and decide what an
//! unusable crawler database means (seeding fails, the corpus degrades).

use rusqlite::{named_params, Connection, OpenFlags};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The crawler may be writing; wait for its lock rather than failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Tables the neighbour query reads (`paper_queue` is not needed).
const NEIGHBOUR_TABLES: [&str; 6] = [
    "papers",
    "papers_fts",
    "paper_relevance",
    "paper_citations",
    "authors",
    "paper_authors",
];

/// Why the crawler database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CrawlerError {
    /// No regular file at the path.
    #[error("does not exist (or is not a file)")]
    Missing,
    /// The host is out of descriptors or memory: not the database's
    /// fault (see [`host_exhaustion`]).
    #[error("{0}")]
    Exhausted(String),
    /// Opening (or configuring the connection) failed.
    #[error("{0}")]
    Open(#[source] rusqlite::Error),
    /// The seeding query does not prepare: not a crawler database.
    #[error("not a readable arxiv-crawler database (needs papers and paper_queue): {0}")]
    NotCrawler(#[source] rusqlite::Error),
    /// A query failed while reading.
    #[error("{0}")]
    Read(#[source] rusqlite::Error),
}

/// One paper the crawler has pending, with its latest version's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPaper {
    /// As the crawler stores it (normally without version).
    pub arxiv_id: String,
    /// The latest version the crawler has.
    pub version: Option<i64>,
    pub title: Option<String>,
    pub abstract_text: Option<String>,
    /// Its highest pending priority.
    pub priority: Option<i64>,
}

/// A full-text neighbour of a paper, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourRow {
    pub arxiv_id: String,
    pub title: String,
    pub abstract_text: String,
    /// Highest FMR relevance score across sources.
    pub fmr: Option<f64>,
    /// Highest citation count across sources.
    pub cites: Option<i64>,
    /// Highest h-index among its authors.
    pub max_h_index: Option<i64>,
}

/// An open, read-only crawler database.
pub struct CrawlerDb {
    conn: Connection,
    path: PathBuf,
}

impl CrawlerDb {
    /// Open `path` read-only (never creating it). Failures caused by the
    /// host running out of resources are [`CrawlerError::Exhausted`].
    pub fn open(path: &Path) -> Result<CrawlerDb, CrawlerError> {
        if !path.is_file() {
            return Err(CrawlerError::Missing);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let classify = |e| classify_open(path, e);
        let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(classify)?;
        Ok(CrawlerDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tables the neighbour query needs that the schema lacks. Also the
    /// first real read, so a file that is not an SQLite database fails
    /// here (as [`CrawlerError::Open`]).
    pub fn missing_neighbour_tables(&self) -> Result<Vec<&'static str>, CrawlerError> {
        let classify = |e| classify_open(&self.path, e);
        let mut stmt = self
            .conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name")
            .map_err(classify)?;
        let mut missing = Vec::new();
        for table in NEIGHBOUR_TABLES {
            if !stmt
                .exists(named_params! {":name": table})
                .map_err(classify)?
            {
                missing.push(table);
            }
        }
        Ok(missing)
    }

    /// Visit the crawler's pending papers, best first (see `SEED_SQL`),
    /// until `visit` breaks; returns what it broke with.
    pub fn pending_papers<B>(
        &self,
        mut visit: impl FnMut(PendingPaper) -> ControlFlow<B>,
    ) -> Result<Option<B>, CrawlerError> {
        let mut st = self
            .conn
            .prepare(SEED_SQL)
            .map_err(CrawlerError::NotCrawler)?;
        let rows = st
            .query_map([], |r| {
                Ok(PendingPaper {
                    arxiv_id: r.get("arxiv_id")?,
                    version: r.get("version")?,
                    title: r.get("title")?,
                    abstract_text: r.get("abstract")?,
                    priority: r.get("priority")?,
                })
            })
            .map_err(CrawlerError::Read)?;
        for row in rows {
            if let ControlFlow::Break(b) = visit(row.map_err(CrawlerError::Read)?) {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// Up to `limit` papers matching the FTS5 expression `fts_query`,
    /// best first, excluding every version of `own_id` (an id without
    /// version). A host out of resources is [`CrawlerError::Exhausted`].
    pub fn neighbours(
        &self,
        fts_query: &str,
        own_id: &str,
        limit: i64,
    ) -> Result<Vec<NeighbourRow>, CrawlerError> {
        let classify = |e: rusqlite::Error| match host_exhaustion(&self.path, &e) {
            Some(msg) => CrawlerError::Exhausted(msg),
            None => CrawlerError::Read(e),
        };
        let mut stmt = self.conn.prepare(NEIGHBOR_SQL).map_err(classify)?;
        let rows = stmt
            .query_map(
                named_params! {":query": fts_query, ":own_id": own_id, ":limit": limit},
                |row| {
                    Ok(NeighbourRow {
                        arxiv_id: row.get("arxiv_id")?,
                        title: row.get("title")?,
                        abstract_text: row.get("abstract")?,
                        fmr: row.get("fmr")?,
                        cites: row.get("cites")?,
                        max_h_index: row.get("max_h")?,
                    })
                },
            )
            .map_err(classify)?;
        rows.collect::<Result<_, _>>().map_err(classify)
    }
}

fn classify_open(path: &Path, e: rusqlite::Error) -> CrawlerError {
    match host_exhaustion(path, &e) {
        Some(msg) => CrawlerError::Exhausted(msg),
        None => CrawlerError::Open(e),
    }
}

/// A message when `e` is the host running out of memory or descriptors.
///
/// SQLite reports a failed `open(2)` only as `SQLITE_CANTOPEN`, without the
/// errno; so on `CANTOPEN` the file is opened once more here (read-only,
/// non-blocking, closed at once) and that error is classified with
/// [`crate::engine::error::io_error_kind`]. A `CANTOPEN` for any other
/// reason (permissions, a read-only folder for the WAL index) stays an
/// ordinary open failure.
fn host_exhaustion(path: &Path, e: &rusqlite::Error) -> Option<String> {
    use rusqlite::ErrorCode;
    let code = e.sqlite_error_code()?;
    match code {
        ErrorCode::OutOfMemory => Some(format!("corpus database {}: {e}", path.display())),
        ErrorCode::CannotOpen => {
            use std::os::unix::fs::OpenOptionsExt;
            let probe = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path);
            match probe {
                Err(io)
                    if crate::engine::error::io_error_kind(&io)
                        == crate::engine::ErrorKind::ResourceExhausted =>
                {
                    Some(format!(
                        "cannot open corpus database {}: {io} (the host is out of resources; retried later)",
                        path.display()
                    ))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Candidates: arXiv ids with a pending `paper_queue` row, with the title,
/// abstract and version of their latest version in `papers` (the crawler
/// can leave an older version's row pending when a newer one arrives),
/// ordered by their highest pending priority, then their oldest pending
/// row. `CAST` because older tools wrote REAL priorities; ordering uses the
/// raw value so fractional scores still rank.
const SEED_SQL: &str = "
WITH pending AS (
    SELECT p.arxiv_id AS arxiv_id,
           MAX(COALESCE(q.priority, 0)) AS priority,
           MIN(q.enqueued_at) AS enqueued_at
    FROM paper_queue q JOIN papers p ON p.id = q.paper_id
    WHERE q.status = 'pending'
    GROUP BY p.arxiv_id
)
SELECT c.arxiv_id AS arxiv_id, l.version AS version, l.title AS title, l.abstract AS abstract,
       CAST(c.priority AS INTEGER) AS priority
FROM pending c
JOIN papers l ON l.arxiv_id = c.arxiv_id
 AND l.version = (SELECT MAX(version) FROM papers v WHERE v.arxiv_id = c.arxiv_id)
ORDER BY c.priority DESC, c.enqueued_at IS NULL, c.enqueued_at, c.arxiv_id";

/// Neighbour query. Ranking is bm25 (lower is better), then FMR relevance,
/// then citations, then id for determinism.
///
/// Only the latest version of each arxiv_id is eligible (via the crawler's
/// `(arxiv_id, version)` index), and the query paper is excluded by its
/// base id, which covers all its versions. Relevance and citations are
/// per-paper scalar subqueries (MAX across sources: the sources count the
/// same citations, and a join would duplicate rows). The author h-index is
/// only looked up for the 25 rows that survive the LIMIT, which the
/// MATERIALIZED hint keeps from being folded into the ranking scan.
const NEIGHBOR_SQL: &str = "
WITH hits AS (
    SELECT rowid AS id, bm25(papers_fts) AS rank
    FROM papers_fts
    WHERE papers_fts MATCH :query
),
ranked AS MATERIALIZED (
    SELECT p.id AS id,
           CAST(p.arxiv_id AS TEXT) AS arxiv_id,
           COALESCE(CAST(p.title AS TEXT), '') AS title,
           COALESCE(CAST(p.abstract AS TEXT), '') AS abstract,
           h.rank AS rank,
           (SELECT CAST(MAX(r.fmr_score) AS REAL)
              FROM paper_relevance r WHERE r.paper_id = p.id) AS fmr,
           (SELECT CAST(MAX(c.cited_by_count) AS INTEGER)
              FROM paper_citations c WHERE c.paper_id = p.id) AS cites
    FROM hits h
    JOIN papers p ON p.id = h.id
    WHERE p.arxiv_id <> :own_id
      AND NOT EXISTS (
          SELECT 1 FROM papers newer
          WHERE newer.arxiv_id = p.arxiv_id
            AND (COALESCE(newer.version, 0) > COALESCE(p.version, 0)
                 OR (COALESCE(newer.version, 0) = COALESCE(p.version, 0) AND newer.id > p.id))
      )
    ORDER BY rank ASC, fmr DESC NULLS LAST, cites DESC NULLS LAST, id ASC
    LIMIT :limit
)
SELECT k.arxiv_id, k.title, k.abstract, k.fmr, k.cites,
       (SELECT CAST(MAX(a.h_index) AS INTEGER)
          FROM paper_authors pa
          JOIN authors a ON a.openalex_id = pa.author_openalex_id
         WHERE pa.paper_id = k.id) AS max_h
FROM ranked k
ORDER BY k.rank ASC, k.fmr DESC NULLS LAST, k.cites DESC NULLS LAST, k.id ASC";
