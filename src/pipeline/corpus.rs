//! Related-work signals from an optional arxiv-crawler corpus database.
//!
//! The analysis prompts benefit from knowing how a paper sits among its
//! neighbours in the crawled corpus (how relevant and how cited they are), but
//! the corpus is an optional, externally owned database: it may be missing,
//! half-initialised or busy. Everything here is therefore read-only and
//! degrades to a status string plus a prompt-ready summary instead of an error,
//! so a pipeline run never fails because of the corpus.

use crate::store::crawler::{CrawlerDb, CrawlerError, NeighbourRow};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// Status when neighbours were searched (possibly finding none).
pub const STATUS_OK: &str = "ok";
/// Status when no usable corpus database was given.
pub const STATUS_DB_UNAVAILABLE: &str = "db_unavailable";
/// Status when title and abstract yield nothing to search for.
pub const STATUS_NO_KEYWORDS: &str = "no_keywords";
/// Status when SQLite failed while searching an otherwise usable corpus.
pub const STATUS_ERROR: &str = "error";

/// Summary used whenever the corpus cannot be consulted, worded for prompts.
pub const UNAVAILABLE_SUMMARY: &str =
    "Corpus database unavailable; proceeding with paper-only analysis.";
const NO_NEIGHBOURS_SUMMARY: &str = "No corpus neighbours found; rely on paper-local evidence.";
const NO_KEYWORDS_SUMMARY: &str =
    "No searchable keywords in title or abstract; rely on paper-local evidence.";

/// Candidate rows the statistics are computed over.
const MAX_CANDIDATES: i64 = 25;
/// Neighbours passed on to prompts; more would crowd out the paper itself.
const MAX_NEIGHBORS: usize = 8;
/// Titles named in the summary sentence.
const SUMMARY_TITLES: usize = 3;
const SNIPPET_CHARS: usize = 320;
const ELLIPSIS: &str = "...";
const TITLE_TERMS: usize = 8;
const ABSTRACT_TERMS: usize = 10;
const MAX_KEYWORDS: usize = 12;
const MIN_KEYWORD_CHARS: usize = 3;

/// English function words plus academic boilerplate that occurs in almost
/// every abstract and would only dilute the full-text ranking.
const STOP_WORDS_TEXT: &str = "
    about above across after again against all almost along also although always among
    amongst and another any approach approaches are around based because been before being
    below best better between both but can cannot could demonstrate demonstrates did
    different does doing done down due during each either enable enables especially etc even
    ever every existing experiments few find first for from further furthermore given had
    has have having here hence her hers him his how however including into introduce its
    itself just large less many may method methods might more moreover most much must near
    new nor not novel now off often once one only other others our ours out over paper per
    present propose proposed proposes provide provides rather recent recently result results
    same several shall she should show shows significantly since some state-of-the-art still
    study such than that the their theirs them themselves then there therefore these they
    this those though three through thus too two under until upon use used uses using
    various very via was way well were what when where whether which while who whom whose
    why will with within without work works would yet you your
";

static STOP_WORDS: LazyLock<HashSet<&str>> =
    LazyLock::new(|| STOP_WORDS_TEXT.split_whitespace().collect());

/// One related paper from the corpus, trimmed for prompt use.
#[derive(Debug, Clone, Serialize)]
pub struct Neighbor {
    pub arxiv_id: String,
    pub title: String,
    /// At most 320 chars, whitespace flattened, `...` when cut.
    pub abstract_snippet: String,
    pub fmr_score: Option<f64>,
    /// Highest count across citation sources (sources overlap, so no sum).
    pub cited_by_count: Option<i64>,
    pub max_h_index: Option<i64>,
}

/// Related-work signals for one paper; always produced, see `status`.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusSignals {
    /// `ok`, `db_unavailable`, `no_keywords` or `error`.
    pub status: String,
    /// The FTS5 MATCH expression that was (or would have been) run.
    pub query: String,
    pub keywords: Vec<String>,
    /// Candidate rows the statistics cover (at most 25).
    pub considered: usize,
    pub avg_neighbor_fmr: Option<f64>,
    pub max_neighbor_fmr: Option<f64>,
    pub avg_neighbor_citations: Option<f64>,
    pub max_neighbor_citations: Option<i64>,
    pub max_neighbor_author_h_index: Option<i64>,
    /// The best-ranked candidates, at most 8.
    pub neighbors: Vec<Neighbor>,
    /// One or two sentences meant to be pasted into prompts.
    pub summary: String,
}

impl CorpusSignals {
    /// Signals without any neighbours, for every non-`ok` outcome.
    fn without_neighbors(
        status: &str,
        query: String,
        keywords: Vec<String>,
        summary: String,
    ) -> Self {
        Self {
            status: status.to_string(),
            query,
            keywords,
            considered: 0,
            avg_neighbor_fmr: None,
            max_neighbor_fmr: None,
            avg_neighbor_citations: None,
            max_neighbor_citations: None,
            max_neighbor_author_h_index: None,
            neighbors: Vec::new(),
            summary,
        }
    }
}

/// Why the corpus could not be used; logged, never surfaced as a failure.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error("no corpus database configured")]
    NotConfigured,
    #[error("corpus database {0} does not exist")]
    Missing(PathBuf),
    #[error("cannot open corpus database: {0}")]
    Open(CrawlerError),
    #[error("corpus database lacks tables: {0}")]
    MissingTables(String),
    /// The host is out of descriptors or memory: not the corpus's fault,
    /// and not a reason to analyse the paper without it.
    #[error("{0}")]
    Exhausted(String),
}

/// Search keywords for a paper: title terms first (they name the topic most
/// precisely), then abstract terms not already taken.
///
/// Terms are lower-cased words (internal hyphens kept) of at least three
/// characters that contain a letter and are not stop-words. Up to 8 title
/// terms and 10 abstract terms are chosen by frequency (ties: first
/// occurrence), deduplicated, at most 12 in total.
pub fn keywords(title: &str, abstract_text: &str) -> Vec<String> {
    let mut chosen = top_terms(title, &[], TITLE_TERMS);
    let from_abstract = top_terms(abstract_text, &chosen, ABSTRACT_TERMS);
    chosen.extend(from_abstract);
    chosen.truncate(MAX_KEYWORDS);
    chosen
}

/// The `limit` most frequent keyword candidates of `text`, skipping `taken`.
fn top_terms(text: &str, taken: &[String], limit: usize) -> Vec<String> {
    // (term, count, first position) so ties keep reading order.
    let mut counts: Vec<(String, usize, usize)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for token in tokens(text).filter(|t| is_keyword(t) && !taken.contains(t)) {
        match index.get(&token) {
            Some(&i) => counts[i].1 += 1,
            None => {
                index.insert(token.clone(), counts.len());
                let position = counts.len();
                counts.push((token, 1, position));
            }
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    counts
        .into_iter()
        .take(limit)
        .map(|(term, _, _)| term)
        .collect()
}

/// Lower-cased words: runs of alphanumerics and hyphens, edge hyphens trimmed.
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .map(|raw| raw.trim_matches('-').to_lowercase())
        .filter(|t| !t.is_empty())
}

/// Long enough, contains a letter (drops numbers like `2024`, `1-2`), and
/// carries topic information.
fn is_keyword(token: &str) -> bool {
    token.chars().count() >= MIN_KEYWORD_CHARS
        && token.chars().any(char::is_alphabetic)
        && !STOP_WORDS.contains(token)
}

/// An FTS5 MATCH expression that ORs the terms.
///
/// Every term becomes a double-quoted string (inner `"` doubled), so FTS5
/// treats it as a phrase of plain tokens: hyphens, colons, asterisks and the
/// words `AND`/`OR`/`NOT`/`NEAR` cannot be read as query syntax. Blank terms
/// are skipped; no terms give an empty string.
pub fn fts_query(keywords: &[String]) -> String {
    keywords
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| format!("\"{}\"", k.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Related-work signals for one paper from the corpus at `db`.
///
/// Never fails: a missing or foreign database yields `db_unavailable`, a paper
/// without usable words `no_keywords`, and an SQLite failure while searching
/// `error` with the message in `summary`. `arxiv_id` may carry a version
/// suffix (`2401.01234v2`); every version of it is excluded from neighbours.
/// Host exhaustion counts as `db_unavailable` here; the pipeline uses
/// [`corpus_lookup`], which reports it instead.
pub fn corpus_signals(
    db: Option<&Path>,
    arxiv_id: &str,
    title: &str,
    abstract_text: &str,
) -> CorpusSignals {
    corpus_lookup(db, arxiv_id, title, abstract_text).unwrap_or_else(|e| {
        let keywords = keywords(title, abstract_text);
        let query = fts_query(&keywords);
        tracing::debug!(reason = %e.message, "corpus signals skipped");
        CorpusSignals::without_neighbors(
            STATUS_DB_UNAVAILABLE,
            query,
            keywords,
            UNAVAILABLE_SUMMARY.to_string(),
        )
    })
}

/// [`corpus_signals`], except that a host out of file descriptors or
/// memory while opening or reading a configured corpus is an error
/// (`resource_exhausted`, retryable) rather than `db_unavailable`: the
/// corpus is there, and a paper analysed without its signals would be
/// finished for good with less information than it should have had. No
/// corpus configured, a missing file or a foreign database still degrade
/// as before.
pub fn corpus_lookup(
    db: Option<&Path>,
    arxiv_id: &str,
    title: &str,
    abstract_text: &str,
) -> Result<CorpusSignals, crate::engine::ExecError> {
    let keywords = keywords(title, abstract_text);
    let query = fts_query(&keywords);
    let exhausted = |msg: String| {
        crate::engine::ExecError::new(crate::engine::ErrorKind::ResourceExhausted, msg)
    };
    let conn = match open_corpus(db) {
        Ok(conn) => conn,
        Err(Unavailable::Exhausted(msg)) => return Err(exhausted(msg)),
        Err(reason) => {
            tracing::debug!(%reason, "corpus signals skipped");
            let summary = UNAVAILABLE_SUMMARY.to_string();
            return Ok(CorpusSignals::without_neighbors(
                STATUS_DB_UNAVAILABLE,
                query,
                keywords,
                summary,
            ));
        }
    };
    if query.is_empty() {
        let summary = NO_KEYWORDS_SUMMARY.to_string();
        return Ok(CorpusSignals::without_neighbors(
            STATUS_NO_KEYWORDS,
            query,
            keywords,
            summary,
        ));
    }
    match conn.neighbours(&query, strip_version(arxiv_id.trim()), MAX_CANDIDATES) {
        Ok(rows) => Ok(signals_from(
            rows.into_iter().map(neighbor).collect(),
            query,
            keywords,
        )),
        Err(CrawlerError::Exhausted(msg)) => Err(exhausted(msg)),
        Err(err) => {
            tracing::warn!(error = %err, "corpus neighbour query failed");
            let summary =
                format!("Corpus query failed ({err}); proceeding with paper-only analysis.");
            Ok(CorpusSignals::without_neighbors(
                STATUS_ERROR,
                query,
                keywords,
                summary,
            ))
        }
    }
}

/// `2401.01234v2` → `2401.01234`, `hep-th/9901001v3` → `hep-th/9901001`;
/// ids without a version suffix are returned unchanged.
fn strip_version(arxiv_id: &str) -> &str {
    let Some(pos) = arxiv_id.rfind('v') else {
        return arxiv_id;
    };
    let (base, suffix) = (&arxiv_id[..pos], &arxiv_id[pos + 1..]);
    let numeric_suffix = !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_digit());
    let base_ends_in_digit = base.chars().last().is_some_and(|c| c.is_ascii_digit());
    if numeric_suffix && base_ends_in_digit {
        base
    } else {
        arxiv_id
    }
}

/// Open the corpus read-only and check it has the crawler schema.
///
/// The store opens it read-only with `query_only`, so we never modify a
/// database another program owns; a busy timeout rides out the crawler's
/// writes.
fn open_corpus(db: Option<&Path>) -> Result<CrawlerDb, Unavailable> {
    let path = db.ok_or(Unavailable::NotConfigured)?;
    let classify = |e: CrawlerError| match e {
        CrawlerError::Missing => Unavailable::Missing(path.to_path_buf()),
        CrawlerError::Exhausted(msg) => Unavailable::Exhausted(msg),
        e => Unavailable::Open(e),
    };
    let conn = CrawlerDb::open(path).map_err(classify)?;
    let missing = conn.missing_neighbour_tables().map_err(classify)?;
    if !missing.is_empty() {
        return Err(Unavailable::MissingTables(missing.join(", ")));
    }
    Ok(conn)
}

/// A neighbour as prompts get it: whitespace flattened, abstract cut.
fn neighbor(row: NeighbourRow) -> Neighbor {
    Neighbor {
        arxiv_id: row.arxiv_id,
        title: flatten_whitespace(&row.title),
        abstract_snippet: snippet(&row.abstract_text),
        fmr_score: row.fmr,
        cited_by_count: row.cites,
        max_h_index: row.max_h_index,
    }
}

/// Stats over every candidate, then keep the top neighbours for prompts.
fn signals_from(candidates: Vec<Neighbor>, query: String, keywords: Vec<String>) -> CorpusSignals {
    let fmr: Vec<f64> = candidates.iter().filter_map(|n| n.fmr_score).collect();
    let cites: Vec<i64> = candidates.iter().filter_map(|n| n.cited_by_count).collect();
    let mut signals = CorpusSignals {
        status: STATUS_OK.to_string(),
        query,
        keywords,
        considered: candidates.len(),
        avg_neighbor_fmr: mean(&fmr),
        max_neighbor_fmr: fmr.iter().copied().reduce(f64::max),
        avg_neighbor_citations: mean(&cites.iter().map(|&c| c as f64).collect::<Vec<_>>()),
        max_neighbor_citations: cites.iter().copied().max(),
        max_neighbor_author_h_index: candidates.iter().filter_map(|n| n.max_h_index).max(),
        neighbors: candidates,
        summary: String::new(),
    };
    signals.neighbors.truncate(MAX_NEIGHBORS);
    signals.summary = summary_text(&signals);
    signals
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// "Found N related papers (keywords: …). Average neighbour FMR …, average
/// citations …. Closest: T1; T2; T3." Parts without data are left out.
fn summary_text(s: &CorpusSignals) -> String {
    if s.considered == 0 {
        return NO_NEIGHBOURS_SUMMARY.to_string();
    }
    let noun = if s.considered == 1 { "paper" } else { "papers" };
    let mut text = format!(
        "Found {} related {noun} (keywords: {}).",
        s.considered,
        s.keywords.join(", ")
    );
    let mut stats = Vec::new();
    if let Some(fmr) = s.avg_neighbor_fmr {
        stats.push(format!("average neighbour FMR {fmr:.2}"));
    }
    if let Some(cites) = s.avg_neighbor_citations {
        stats.push(format!("average citations {cites:.1}"));
    }
    if let Some(h) = s.max_neighbor_author_h_index {
        stats.push(format!("top author h-index {h}"));
    }
    if !stats.is_empty() {
        text.push(' ');
        text.push_str(&capitalize(&stats.join(", ")));
        text.push('.');
    }
    let closest: Vec<&str> = s
        .neighbors
        .iter()
        .take(SUMMARY_TITLES)
        .map(|n| n.title.as_str())
        .collect();
    text.push_str(&format!(" Closest: {}.", closest.join("; ")));
    text
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Single spaces instead of newlines and runs of whitespace (arXiv metadata
/// is hard-wrapped).
fn flatten_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Flattened abstract of at most 320 chars; when cut (at a char boundary, so
/// multi-byte text is safe) it ends in `...` within that budget.
fn snippet(text: &str) -> String {
    let flat = flatten_whitespace(text);
    if flat.chars().count() <= SNIPPET_CHARS {
        return flat;
    }
    let kept: String = flat.chars().take(SNIPPET_CHARS - ELLIPSIS.len()).collect();
    format!("{}{ELLIPSIS}", kept.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keywords_take_title_terms_first_then_abstract() {
        let kws = keywords(
            "Graph Transformers for Molecules",
            "We propose graph transformers. Molecules and proteins; proteins and crystals.",
        );
        assert_eq!(
            kws,
            strings(&["graph", "transformers", "molecules", "proteins", "crystals"])
        );
    }

    #[test]
    fn keywords_drop_stop_words_numbers_and_short_tokens() {
        let kws = keywords(
            "The 2024 study of 3D AI in 1,000 v2 cases",
            "This paper uses 12.5 and 10-20.",
        );
        assert_eq!(kws, strings(&["cases"]));
    }

    #[test]
    fn keywords_rank_by_frequency_and_cap_at_twelve() {
        let title = "alpha beta beta gamma gamma gamma";
        let kws = keywords(title, "");
        assert_eq!(kws, strings(&["gamma", "beta", "alpha"]));
        let many_title = (0..20)
            .map(|i| format!("title{}", char::from(b'a' + i)))
            .collect::<Vec<_>>();
        let many_abs = (0..20)
            .map(|i| format!("abs{}", char::from(b'a' + i)))
            .collect::<Vec<_>>();
        let kws = keywords(&many_title.join(" "), &many_abs.join(" "));
        assert_eq!(kws.len(), 12);
        assert_eq!(kws[..8], many_title[..8]);
        assert_eq!(kws[8..], many_abs[..4]);
    }

    #[test]
    fn keywords_keep_internal_hyphens() {
        let kws = keywords("Self-supervised -learning- of x-rays", "");
        assert_eq!(kws, strings(&["self-supervised", "learning", "x-rays"]));
    }

    #[test]
    fn fts_query_quotes_and_escapes() {
        let q = fts_query(&strings(&["a\"b", "x-y", "NEAR", "", "k:v*"]));
        assert_eq!(q, "\"a\"\"b\" OR \"x-y\" OR \"NEAR\" OR \"k:v*\"");
        assert_eq!(fts_query(&[]), "");
    }

    #[test]
    fn strip_version_only_strips_numeric_suffixes() {
        assert_eq!(strip_version("2401.01234v2"), "2401.01234");
        assert_eq!(strip_version("2401.01234"), "2401.01234");
        assert_eq!(strip_version("hep-th/9901001v3"), "hep-th/9901001");
        assert_eq!(strip_version("2401.01234v"), "2401.01234v");
        assert_eq!(strip_version("solv-int/9901001"), "solv-int/9901001");
    }

    #[test]
    fn snippet_flattens_and_cuts_within_budget() {
        assert_eq!(snippet("line one\nline  two"), "line one line two");
        let long = "é".repeat(400);
        let cut = snippet(&long);
        assert_eq!(cut.chars().count(), SNIPPET_CHARS);
        assert!(cut.ends_with(ELLIPSIS));
        let exact = "x".repeat(SNIPPET_CHARS);
        assert_eq!(snippet(&exact), exact);
    }

    #[test]
    fn no_db_is_unavailable() {
        let s = corpus_signals(None, "2401.00001", "Graph transformers", "");
        assert_eq!(s.status, STATUS_DB_UNAVAILABLE);
        assert_eq!(s.summary, UNAVAILABLE_SUMMARY);
        assert_eq!(s.query, "\"graph\" OR \"transformers\"");
    }
}
