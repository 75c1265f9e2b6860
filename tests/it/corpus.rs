//! `corpus_signals` against a synthetic arxiv-crawler database: ranking,
//! self/version exclusion, citation de-duplication, stats, FTS quoting and
//! the graceful `db_unavailable` / `error` paths.

use paper_runner::pipeline::corpus::{
    corpus_signals, fts_query, keywords, CorpusSignals, Neighbor, STATUS_DB_UNAVAILABLE,
    STATUS_ERROR, STATUS_OK, UNAVAILABLE_SUMMARY,
};
use rusqlite::{params, Connection};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

const SCHEMA: &str = "
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
CREATE VIRTUAL TABLE papers_fts USING fts5(
    title, abstract, content='papers', content_rowid='id'
);
CREATE TABLE paper_relevance (
    paper_id INTEGER PRIMARY KEY REFERENCES papers(id),
    fmr_score REAL,
    scored_at TEXT
);
CREATE TABLE paper_citations (
    paper_id INTEGER NOT NULL REFERENCES papers(id),
    source TEXT NOT NULL,
    cited_by_count INTEGER,
    PRIMARY KEY (paper_id, source)
);
CREATE TABLE authors (
    openalex_id TEXT PRIMARY KEY,
    display_name TEXT,
    h_index INTEGER
);
CREATE TABLE paper_authors (
    paper_id INTEGER NOT NULL REFERENCES papers(id),
    author_openalex_id TEXT NOT NULL REFERENCES authors(openalex_id),
    PRIMARY KEY (paper_id, author_openalex_id)
);
CREATE TABLE paper_queue (
    paper_id INTEGER PRIMARY KEY REFERENCES papers(id),
    status TEXT,
    priority INTEGER,
    enqueued_at TEXT
);
";

/// Authors and their h-index (`A_NULL` has none on record).
const AUTHORS: [(&str, Option<i64>); 6] = [
    ("A_SMALL", Some(12)),
    ("A_MID", Some(30)),
    ("A_BIG", Some(45)),
    ("A_HUGE", Some(99)),
    ("A_GRAPH", Some(20)),
    ("A_NULL", None),
];

const SELF_ID: &str = "2401.00001";
const SELF_TITLE: &str = "Zeolite catalysts for hydrocracking";
const SELF_ABSTRACT: &str = "Porous zeolite catalysts improve hydrocracking yields.";

/// One row of `papers` plus its relevance, citations and authors.
struct Paper {
    arxiv_id: String,
    version: i64,
    title: String,
    abstract_text: String,
    fmr: Option<f64>,
    citations: Vec<(&'static str, i64)>,
    authors: Vec<&'static str>,
}

fn paper(arxiv_id: &str, version: i64, title: &str, abstract_text: &str) -> Paper {
    Paper {
        arxiv_id: arxiv_id.to_string(),
        version,
        title: title.to_string(),
        abstract_text: abstract_text.to_string(),
        fmr: None,
        citations: Vec::new(),
        authors: Vec::new(),
    }
}

impl Paper {
    fn fmr(mut self, score: f64) -> Self {
        self.fmr = Some(score);
        self
    }
    fn cites(mut self, source: &'static str, count: i64) -> Self {
        self.citations.push((source, count));
        self
    }
    fn author(mut self, id: &'static str) -> Self {
        self.authors.push(id);
        self
    }
}

/// The zeolite cluster: small, so its stats can be checked exactly.
fn zeolite_papers() -> Vec<Paper> {
    vec![
        // The query paper itself, two versions: both must be excluded.
        paper(SELF_ID, 1, SELF_TITLE, SELF_ABSTRACT).fmr(0.99),
        paper(SELF_ID, 2, SELF_TITLE, SELF_ABSTRACT).fmr(0.99),
        // Superseded draft that would rank first if old versions leaked.
        paper(
            "2402.00010",
            1,
            "Zeolite zeolite catalysts hydrocracking porous draft",
            SELF_ABSTRACT,
        )
        .fmr(0.1),
        paper(
            "2402.00010",
            2,
            "Zeolite hydrocracking catalysts with porous frameworks",
            "Porous zeolite catalysts improve hydrocracking yields in refineries.",
        )
        .fmr(0.9)
        .cites("openalex", 40)
        .cites("semantic_scholar", 55)
        .author("A_MID")
        .author("A_SMALL"),
        paper(
            "2402.00011",
            1,
            "Porous zeolite membranes",
            "Membranes for gas separation.",
        )
        .fmr(0.5)
        .cites("openalex", 10)
        .author("A_BIG")
        .author("A_NULL"),
        // Identical text, so bm25 ties and FMR decides: 00013 before 00012.
        paper(
            "2402.00012",
            1,
            "Hydrocracking kinetics",
            "Kinetic models of hydrocracking.",
        )
        .fmr(0.3),
        paper(
            "2402.00013",
            1,
            "Hydrocracking kinetics",
            "Kinetic models of hydrocracking.",
        )
        .fmr(0.7),
        // Identical text and FMR, so citations decide: 00015 before 00014.
        paper(
            "2402.00014",
            1,
            "Catalysts for hydrocracking",
            "A comparison of catalysts.",
        )
        .fmr(0.4)
        .cites("openalex", 5),
        paper(
            "2402.00015",
            1,
            "Catalysts for hydrocracking",
            "A comparison of catalysts.",
        )
        .fmr(0.4)
        .cites("openalex", 3)
        .cites("semantic_scholar", 20)
        .cites("crossref", 7),
        // A weak match with no relevance, citations or authors at all.
        paper(
            "2402.00016",
            1,
            "Petrochemistry at scale",
            "Refinery economics, pipelines, storage, shipping and a brief note on zeolite.",
        ),
        // Only the old version matches; the latest does not, so it is out.
        paper(
            "2402.00017",
            1,
            "Zeolite hydrocracking catalysts porous yields",
            SELF_ABSTRACT,
        )
        .fmr(0.95),
        paper("2402.00017", 2, "Ballet choreography", "Dance notation.").fmr(0.05),
    ]
}

/// The graphormer cluster: 28 distinct papers, more than the 25 considered,
/// whose latest versions tie on bm25 so relevance alone picks the 25.
fn graph_papers() -> Vec<Paper> {
    let mut papers = Vec::new();
    for n in 0..28_i64 {
        let id = format!("2403.{n:05}");
        let title = format!("Graphormer variant {n} for molecular graphs");
        let abs = format!("Graphormer attention layer {n}.");
        if n % 9 == 0 {
            let draft = "Graphormer graphormer graphormer molecular graphs draft";
            papers.push(paper(&id, 1, draft, "Graphormer graphormer attention."));
        }
        let version = if n % 9 == 0 { 2 } else { 1 };
        papers.push(
            paper(&id, version, &title, &abs)
                .fmr(n as f64 / 28.0)
                .cites("openalex", n)
                .cites("semantic_scholar", n * 2)
                .author("A_GRAPH"),
        );
    }
    papers
}

/// Unrelated papers; A_HUGE must never leak into neighbour stats.
fn other_papers() -> Vec<Paper> {
    vec![
        paper(
            "2404.00001",
            1,
            "Medieval poetry",
            "Meter in Old English verse.",
        )
        .fmr(0.2)
        .cites("openalex", 500)
        .author("A_HUGE"),
        paper("2404.00002", 1, "Ballet history", "Court dance in France.").author("A_HUGE"),
        paper("2404.00003", 1, "Glacier dynamics", "Ice flow models.").fmr(0.6),
    ]
}

fn all_papers() -> Vec<Paper> {
    let mut papers = zeolite_papers();
    papers.extend(graph_papers());
    papers.extend(other_papers());
    papers
}

fn insert_paper(conn: &Connection, p: &Paper) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO papers (arxiv_id, version, title, abstract, authors, categories, published_at)
         VALUES (?1, ?2, ?3, ?4, 'Someone', 'cs.LG', '2024-01-01')",
        params![p.arxiv_id, p.version, p.title, p.abstract_text],
    )?;
    let id = conn.last_insert_rowid();
    if let Some(score) = p.fmr {
        conn.execute(
            "INSERT INTO paper_relevance (paper_id, fmr_score) VALUES (?1, ?2)",
            params![id, score],
        )?;
    }
    for (source, count) in &p.citations {
        conn.execute(
            "INSERT INTO paper_citations (paper_id, source, cited_by_count) VALUES (?1, ?2, ?3)",
            params![id, source, count],
        )?;
    }
    for author in &p.authors {
        conn.execute(
            "INSERT INTO paper_authors (paper_id, author_openalex_id) VALUES (?1, ?2)",
            params![id, author],
        )?;
    }
    conn.execute(
        "INSERT INTO paper_queue (paper_id, status, priority, enqueued_at)
         VALUES (?1, 'done', 1, '2024-01-01')",
        params![id],
    )?;
    Ok(())
}

/// A corpus with the crawler schema and every synthetic paper, FTS rebuilt.
fn build_corpus(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("corpus.sqlite");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    for (id, h) in AUTHORS {
        conn.execute(
            "INSERT INTO authors (openalex_id, display_name, h_index) VALUES (?1, ?1, ?2)",
            params![id, h],
        )
        .unwrap();
    }
    for p in all_papers() {
        insert_paper(&conn, &p).unwrap();
    }
    conn.execute("INSERT INTO papers_fts(papers_fts) VALUES ('rebuild')", [])
        .unwrap();
    path
}

fn zeolite_signals(db: &Path) -> CorpusSignals {
    corpus_signals(Some(db), "2401.00001v2", SELF_TITLE, SELF_ABSTRACT)
}

fn ids(neighbors: &[Neighbor]) -> Vec<&str> {
    neighbors.iter().map(|n| n.arxiv_id.as_str()).collect()
}

fn position(neighbors: &[Neighbor], id: &str) -> usize {
    neighbors
        .iter()
        .position(|n| n.arxiv_id == id)
        .unwrap_or_else(|| panic!("{id} missing from {:?}", ids(neighbors)))
}

fn assert_close(actual: Option<f64>, expected: f64) {
    let value = actual.unwrap_or_else(|| panic!("expected {expected}, got None"));
    assert!(
        (value - expected).abs() < 1e-9,
        "expected {expected}, got {value}"
    );
}

#[test]
fn neighbours_are_ranked_by_text_then_relevance_then_citations() {
    let dir = TempDir::new().unwrap();
    let db = build_corpus(&dir);
    let s = zeolite_signals(&db);
    assert_eq!(s.status, STATUS_OK, "{}", s.summary);
    let order = ids(&s.neighbors);
    assert_eq!(order[0], "2402.00010", "best text match first: {order:?}");
    assert_eq!(
        position(&s.neighbors, "2402.00013") + 1,
        position(&s.neighbors, "2402.00012"),
        "equal text: higher FMR first: {order:?}"
    );
    assert_eq!(
        position(&s.neighbors, "2402.00015") + 1,
        position(&s.neighbors, "2402.00014"),
        "equal text and FMR: more citations first: {order:?}"
    );
    assert_eq!(
        order.last(),
        Some(&"2402.00016"),
        "passing mention last: {order:?}"
    );
}

#[test]
fn self_and_superseded_versions_are_excluded() {
    let dir = TempDir::new().unwrap();
    let db = build_corpus(&dir);
    let s = zeolite_signals(&db);
    let order = ids(&s.neighbors);
    assert!(!order.contains(&SELF_ID), "self leaked: {order:?}");
    assert!(
        !order.contains(&"2402.00017"),
        "only an old version matches: {order:?}"
    );
    let first = &s.neighbors[0];
    assert_eq!(
        first.title,
        "Zeolite hydrocracking catalysts with porous frameworks"
    );
    assert!(s.neighbors.iter().all(|n| !n.title.contains("draft")));

    // Also without a version suffix on the query id.
    let plain = corpus_signals(Some(&db), SELF_ID, SELF_TITLE, SELF_ABSTRACT);
    assert!(!ids(&plain.neighbors).contains(&SELF_ID));
}

#[test]
fn multiple_citation_sources_do_not_duplicate_rows() {
    let dir = TempDir::new().unwrap();
    let db = build_corpus(&dir);
    let s = zeolite_signals(&db);
    let order = ids(&s.neighbors);
    let unique: HashSet<&str> = order.iter().copied().collect();
    assert_eq!(unique.len(), order.len(), "duplicates: {order:?}");
    assert_eq!(s.considered, 7, "{order:?}");
    let cited = |id: &str| s.neighbors[position(&s.neighbors, id)].cited_by_count;
    assert_eq!(cited("2402.00010"), Some(55), "max across sources");
    assert_eq!(cited("2402.00015"), Some(20), "max across three sources");
    assert_eq!(cited("2402.00016"), None);
}

#[test]
fn stats_cover_all_considered_rows() {
    let dir = TempDir::new().unwrap();
    let db = build_corpus(&dir);
    let s = zeolite_signals(&db);
    // FMR: 0.9, 0.5, 0.3, 0.7, 0.4, 0.4 (00016 has none).
    assert_close(s.avg_neighbor_fmr, 3.2 / 6.0);
    assert_close(s.max_neighbor_fmr, 0.9);
    // Citations (max per paper): 55, 10, 5, 20; the rest have none.
    assert_close(s.avg_neighbor_citations, 90.0 / 4.0);
    assert_eq!(s.max_neighbor_citations, Some(55));
    // A_BIG on 00011; A_HUGE only writes unrelated papers.
    assert_eq!(s.max_neighbor_author_h_index, Some(45));
    let first = &s.neighbors[0];
    assert_eq!(first.max_h_index, Some(30));
    assert_close(first.fmr_score, 0.9);
    let last = &s.neighbors[s.neighbors.len() - 1];
    assert_eq!((last.fmr_score, last.max_h_index), (None, None));
    assert!(
        s.summary
            .starts_with("Found 7 related papers (keywords: zeolite, catalysts"),
        "{}",
        s.summary
    );
    assert!(
        s.summary.contains("Average neighbour FMR 0.53"),
        "{}",
        s.summary
    );
    assert!(
        s.summary.contains("average citations 22.5"),
        "{}",
        s.summary
    );
    assert!(
        s.summary
            .contains("Closest: Zeolite hydrocracking catalysts with porous frameworks; "),
        "{}",
        s.summary
    );
}

#[test]
fn large_clusters_are_capped_at_25_considered_and_8_neighbours() {
    let dir = TempDir::new().unwrap();
    let db = build_corpus(&dir);
    let s = corpus_signals(
        Some(&db),
        "2405.00001",
        "Graphormer pretraining",
        "Graphormer attention for molecular graphs.",
    );
    assert_eq!(s.status, STATUS_OK, "{}", s.summary);
    assert_eq!(s.considered, 25);
    assert_eq!(s.neighbors.len(), 8);
    let order = ids(&s.neighbors);
    let unique: HashSet<&str> = order.iter().copied().collect();
    assert_eq!(unique.len(), 8, "{order:?}");
    assert!(order.iter().all(|id| id.starts_with("2403.")), "{order:?}");
    assert!(s.neighbors.iter().all(|n| !n.title.contains("draft")));
    assert_eq!(s.max_neighbor_author_h_index, Some(20));
    // All latest versions tie on text; the three lowest-FMR ones
    // (n = 0, 1, 2) fall past the cut.
    let kept: Vec<i64> = (0..28).filter(|n| *n > 2).collect();
    let fmr_sum: i64 = kept.iter().sum();
    assert_close(s.avg_neighbor_fmr, fmr_sum as f64 / 28.0 / 25.0);
    assert_close(s.avg_neighbor_citations, 2.0 * fmr_sum as f64 / 25.0);
    assert_eq!(s.max_neighbor_citations, Some(54));
    assert!(
        s.summary.starts_with("Found 25 related papers"),
        "{}",
        s.summary
    );
}

#[test]
fn query_syntax_in_terms_is_neutralised() {
    let dir = TempDir::new().unwrap();
    let db = build_corpus(&dir);
    let tricky: Vec<String> = [
        "self-supervised",
        "say \"zeolite\"",
        "key:value",
        "graph*",
        "NEAR",
        "AND",
        "OR",
        "NOT",
        "***",
        "(zeolite",
        "^start",
        "zeolite",
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    let query = fts_query(&tricky);
    let conn = Connection::open(&db).unwrap();
    let hits: i64 = conn
        .query_row(
            "SELECT count(*) FROM papers_fts WHERE papers_fts MATCH ?1",
            [&query],
            |row| row.get(0),
        )
        .unwrap_or_else(|e| panic!("query {query:?} failed: {e}"));
    assert!(hits > 0, "{query}");

    let s = corpus_signals(
        Some(&db),
        "2405.00002",
        "Zeolite: NEAR AND OR \"hydro-cracking\" catalysts*",
        "NOT (porous) zeolite^ NEAR/3 AND-OR \"quoted\" key:value col:zeolite",
    );
    assert_eq!(s.status, STATUS_OK, "{}", s.summary);
    assert!(s.considered > 0, "{}", s.summary);
}

#[test]
fn missing_database_is_unavailable_and_not_created() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("absent.sqlite");
    let s = corpus_signals(Some(&db), SELF_ID, SELF_TITLE, SELF_ABSTRACT);
    assert_eq!(s.status, STATUS_DB_UNAVAILABLE);
    assert_eq!(s.summary, UNAVAILABLE_SUMMARY);
    assert!(s.neighbors.is_empty());
    assert!(!db.exists(), "read-only open must not create the file");
}

#[test]
fn database_without_corpus_tables_is_unavailable() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("other.sqlite");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE papers (id INTEGER PRIMARY KEY, title TEXT);")
        .unwrap();
    drop(conn);
    let s = corpus_signals(Some(&db), SELF_ID, SELF_TITLE, SELF_ABSTRACT);
    assert_eq!(s.status, STATUS_DB_UNAVAILABLE);
    assert_eq!(s.summary, UNAVAILABLE_SUMMARY);

    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(
        &garbage,
        b"this is not an sqlite database at all, just text",
    )
    .unwrap();
    let s = corpus_signals(Some(&garbage), SELF_ID, SELF_TITLE, SELF_ABSTRACT);
    assert_eq!(s.status, STATUS_DB_UNAVAILABLE);
}

#[test]
fn sqlite_failure_during_query_is_reported_as_error() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("broken.sqlite");
    let conn = Connection::open(&db).unwrap();
    // Right table names, but paper_relevance lacks fmr_score.
    let broken = SCHEMA.replace("fmr_score REAL,", "");
    conn.execute_batch(&broken).unwrap();
    drop(conn);
    let s = corpus_signals(Some(&db), SELF_ID, SELF_TITLE, SELF_ABSTRACT);
    assert_eq!(s.status, STATUS_ERROR);
    assert!(s.summary.contains("fmr_score"), "{}", s.summary);
    assert!(s.neighbors.is_empty());
}

#[test]
fn no_matches_give_an_ok_empty_result() {
    let dir = TempDir::new().unwrap();
    let db = build_corpus(&dir);
    let s = corpus_signals(Some(&db), "2405.00003", "Quasicrystal tilings", "");
    assert_eq!(s.status, STATUS_OK);
    assert_eq!(s.considered, 0);
    assert_eq!(s.avg_neighbor_fmr, None);
    assert_eq!(
        s.summary,
        "No corpus neighbours found; rely on paper-local evidence."
    );
}

#[test]
fn keywords_exclude_stop_words_and_numbers() {
    let kws = keywords(
        "The 2024 Benchmark: 100 Tasks for 3D Scene-Graph Reasoning",
        "In this paper we propose a novel approach. We show results on 12 datasets \
         with 1,000,000 samples and 95.5% accuracy, improving scene-graph reasoning.",
    );
    assert_eq!(kws[..4], ["benchmark", "tasks", "scene-graph", "reasoning"]);
    for stop in [
        "the", "for", "this", "paper", "propose", "novel", "approach", "show",
    ] {
        assert!(!kws.iter().any(|k| k == stop), "{stop} in {kws:?}");
    }
    assert!(
        kws.iter().all(|k| k.chars().any(char::is_alphabetic)),
        "{kws:?}"
    );
    assert!(kws.iter().all(|k| k.chars().count() >= 3), "{kws:?}");
    let unique: HashSet<&String> = kws.iter().collect();
    assert_eq!(unique.len(), kws.len(), "{kws:?}");
    assert!(keywords("The 2024 of", "12 and 3.5").is_empty());
}

#[test]
fn paper_without_keywords_is_reported() {
    let dir = TempDir::new().unwrap();
    let db = build_corpus(&dir);
    let s = corpus_signals(Some(&db), SELF_ID, "On the", "2024 12 3.5");
    assert_eq!(s.status, "no_keywords");
    assert!(s.query.is_empty());
}
