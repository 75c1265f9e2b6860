//! Read models of the dashboard (`src/ops/dash/`): one page of the queue
//! under a filter, the failed papers' error kinds, and the 24-hour series
//! its charts draw. Why its own module: these are the only queries that
//! must stay fast on a queue of a million rows, so each is written against
//! one index of migration 0012 (PostgreSQL 0004) — keyset pages walk
//! `(status?, updated_at, id)` in order and stop after a page; series read
//! the time index and group by a text prefix of the fixed-width timestamps
//! (`YYYY-MM-DDTHH:M` is ten minutes), which both databases do alike.

use super::db::Store;
use super::error::StoreError;
use super::phase::PaperStatus;
use super::queue::read::{row_to_paper, PAPER_COLUMNS};
use super::queue::PaperRow;
use super::sql::Dialect;
use rusqlite::params;
use rusqlite::ToSql;
use serde::Serialize;

/// Most rows one queue page may ask for.
pub const MAX_PAGE: usize = 500;
/// Most words a title search uses (the rest are ignored).
const MAX_SEARCH_WORDS: usize = 8;
/// Longest search word kept (longer ones are cut).
const MAX_WORD_CHARS: usize = 64;

/// Where a queue page starts: after this row in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub updated_at: String,
    pub id: String,
}

/// Which papers a queue page lists.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    /// Any of these statuses; empty for all.
    pub statuses: Vec<PaperStatus>,
    /// Failed papers whose last error is of this kind (implies failed).
    pub error_kind: Option<String>,
    /// Words every listed title contains (word prefixes), or an exact
    /// arXiv / queue id.
    pub search: Option<String>,
    pub after: Option<Cursor>,
    /// Rows per page (1 ..= [`MAX_PAGE`]).
    pub limit: usize,
}

/// One page of the queue, newest change first.
#[derive(Debug, Clone, Serialize)]
pub struct QueuePage {
    pub rows: Vec<PaperRow>,
    /// Where the next page starts; None on the last page.
    pub next: Option<Cursor>,
}

/// Ledger counts of one ten-minute bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallBucket {
    /// `YYYY-MM-DDTHH:M` (UTC): the bucket's first ten minutes.
    pub bucket: String,
    pub calls: u64,
    /// Answered 429.
    pub rate_limited: u64,
    /// Any other failed request.
    pub errors: u64,
}

/// The words of a search, as alphanumeric runs (everything else separates
/// words), so no search text ever reaches a query language unquoted.
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_SEARCH_WORDS)
        .map(|w| {
            w.chars()
                .take(MAX_WORD_CHARS)
                .collect::<String>()
                .to_lowercase()
        })
        .collect()
}

impl Store {
    /// One page of the queue under `f`, newest change first.
    pub fn queue_page(&self, f: &QueueFilter) -> Result<QueuePage, StoreError> {
        let limit = f.limit.clamp(1, MAX_PAGE);
        let mut guard = self.conn()?;
        let conn = guard.db();
        let dialect = conn.dialect();
        let words = f.search.as_deref().map(search_words).unwrap_or_default();
        let raw_search = f.search.as_deref().map(str::trim).unwrap_or("");
        let match_expr = match dialect {
            Dialect::Sqlite => words
                .iter()
                .map(|w| format!("\"{w}\"*"))
                .collect::<Vec<_>>()
                .join(" "),
            Dialect::Postgres => words
                .iter()
                .map(|w| format!("{w}:*"))
                .collect::<Vec<_>>()
                .join(" & "),
        };
        // An error kind means failed papers only.
        let statuses: Vec<Option<PaperStatus>> = if f.error_kind.is_some() {
            vec![Some(PaperStatus::Failed)]
        } else if f.statuses.is_empty() {
            vec![None]
        } else {
            let mut s = f.statuses.clone();
            s.sort_by_key(|x| x.as_str());
            s.dedup();
            s.into_iter().map(Some).collect()
        };
        let fetch = (limit + 1) as i64;
        let mut rows: Vec<PaperRow> = Vec::new();
        // One index walk per status, each stopping after a page; the pages
        // are merged here (a status IN (…) with ORDER BY would sort every
        // matching row instead).
        for status in &statuses {
            let mut clauses: Vec<&str> = Vec::new();
            let mut args: Vec<(&str, &dyn ToSql)> = Vec::new();
            if let Some(s) = status {
                clauses.push("status = :status");
                args.push((":status", s));
            }
            if let Some(k) = &f.error_kind {
                clauses.push("last_error_kind = :kind");
                args.push((":kind", k));
            }
            if !raw_search.is_empty() {
                clauses.push(match (words.is_empty(), dialect) {
                    (true, _) => "(arxiv_id = :raw OR id = :raw)",
                    (false, Dialect::Sqlite) => {
                        "(arxiv_id = :raw OR id = :raw OR rowid IN
                          (SELECT rowid FROM executions_fts WHERE executions_fts MATCH :words))"
                    }
                    (false, Dialect::Postgres) => {
                        "(arxiv_id = :raw OR id = :raw OR
                          to_tsvector('simple', coalesce(title, '')) @@ to_tsquery('simple', :words))"
                    }
                });
                args.push((":raw", &raw_search));
                if !words.is_empty() {
                    args.push((":words", &match_expr));
                }
            }
            if let Some(c) = &f.after {
                clauses.push("(updated_at < :t OR (updated_at = :t AND id < :id))");
                args.push((":t", &c.updated_at));
                args.push((":id", &c.id));
            }
            args.push((":n", &fetch));
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", clauses.join(" AND "))
            };
            let sql = format!(
                "SELECT {PAPER_COLUMNS} FROM executions{filter}
                 ORDER BY updated_at DESC, id DESC LIMIT :n"
            );
            let page = conn
                .all(&sql, &args[..], row_to_paper)
                .map_err(|e| self.err("listing the queue", e))?;
            rows.extend(page);
        }
        rows.sort_by(|a, b| (&b.updated_at, &b.id).cmp(&(&a.updated_at, &a.id)));
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| Cursor {
                updated_at: r.updated_at.clone(),
                id: r.id.clone(),
            })
        } else {
            None
        };
        Ok(QueuePage { rows, next })
    }

    /// Failed papers per last error kind (`None` for failures without one),
    /// most common first.
    pub fn failed_kinds(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let mut out = conn
            .all(
                "SELECT last_error_kind, COUNT(*) AS n FROM executions WHERE status = ?1
                 GROUP BY last_error_kind",
                params![PaperStatus::Failed],
                |r| {
                    Ok((
                        r.get::<Option<String>>("last_error_kind")?,
                        r.get::<i64>("n")?.max(0) as u64,
                    ))
                },
            )
            .map_err(|e| self.err("counting failures", e))?;
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Papers that finished their last phase, per ten minutes since `since`
    /// (a store timestamp); only buckets with any.
    pub fn done_series(&self, since: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.all(
            "SELECT substr(at, 1, 15) AS bucket, COUNT(*) AS n FROM execution_events
             WHERE at >= ?1 AND kind = 'finished' AND phase = 'wrap'
             GROUP BY substr(at, 1, 15) ORDER BY bucket",
            params![since],
            |r| Ok((r.get("bucket")?, r.get::<i64>("n")?.max(0) as u64)),
        )
        .map_err(|e| self.err("reading finished papers per bucket", e))
    }

    /// LLM requests, 429s and other failures per ten minutes since `since`
    /// (only buckets with any), and the models called. One pass over the
    /// time index, which holds every column read.
    pub fn call_series(&self, since: &str) -> Result<(Vec<CallBucket>, Vec<String>), StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(
                "SELECT substr(reserved_at, 1, 15) AS bucket, model, COUNT(*) AS calls,
                        SUM(CASE WHEN http_status = 429 THEN 1 ELSE 0 END) AS limited,
                        SUM(CASE WHEN status = 'error' AND (http_status IS NULL OR http_status <> 429)
                                 THEN 1 ELSE 0 END) AS errors
                 FROM llm_calls WHERE reserved_at >= ?1
                 GROUP BY substr(reserved_at, 1, 15), model",
                params![since],
                |r| {
                    Ok((
                        CallBucket {
                            bucket: r.get("bucket")?,
                            calls: r.get::<i64>("calls")?.max(0) as u64,
                            rate_limited: r.get::<Option<i64>>("limited")?.unwrap_or(0).max(0) as u64,
                            errors: r.get::<Option<i64>>("errors")?.unwrap_or(0).max(0) as u64,
                        },
                        r.get::<String>("model")?,
                    ))
                },
            )
            .map_err(|e| self.err("reading LLM calls per bucket", e))?;
        let mut buckets: std::collections::BTreeMap<String, CallBucket> = Default::default();
        let mut models: Vec<String> = Vec::new();
        for (b, model) in rows {
            let sum = buckets
                .entry(b.bucket.clone())
                .or_insert_with(|| CallBucket {
                    bucket: b.bucket.clone(),
                    ..CallBucket::default()
                });
            sum.calls += b.calls;
            sum.rate_limited += b.rate_limited;
            sum.errors += b.errors;
            if !models.contains(&model) {
                models.push(model);
            }
        }
        models.sort();
        Ok((buckets.into_values().collect(), models))
    }

    /// Latencies (ms) of `model`'s latest answered requests since `since`,
    /// at most `limit`: a sample the percentiles are read from, taken by
    /// walking the time index backwards, so its cost does not grow with a
    /// busy day.
    pub fn latency_sample(
        &self,
        since: &str,
        model: &str,
        limit: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.all(
            "SELECT latency_ms FROM llm_calls
             WHERE reserved_at >= ?1 AND model = ?2 AND status = 'ok' AND latency_ms IS NOT NULL
             ORDER BY reserved_at DESC LIMIT ?3",
            params![since, model, limit.min(1_000_000) as i64],
            |r| r.get::<i64>("latency_ms"),
        )
        .map_err(|e| self.err("reading latencies", e))
    }
}

#[cfg(test)]
mod tests;
