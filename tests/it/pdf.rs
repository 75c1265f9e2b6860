//! `pipeline::pdf`: text extraction from the committed fixture papers in
//! `tests/fixtures/papers/` (made by `scripts/make-test-papers.sh`; no PDF
//! tool is needed to run these tests).
//!
//! The reference text is poppler's plain `pdftotext` output, committed next
//! to the PDFs. Reading order is checked with the sentence tags the
//! generator puts in every sentence ("(a17)"): their numbers follow the
//! true reading order, which is stricter than comparing with pdftotext
//! (whose own block ordering puts some column-2 paragraphs first).

use crate::support;
use paper_runner::pipeline::pdf::{extract_bytes, extract_file, ExtractedPdf, PdfError};
use regex::Regex;
use std::collections::HashMap;
use std::path::PathBuf;
use unicode_normalization::UnicodeNormalization;

fn fixture(name: &str) -> PathBuf {
    support::fixture("papers").join(name)
}

fn expected(name: &str) -> String {
    let path = fixture(&format!("expected/{name}.txt"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The reference without page furniture, which the extraction removes on
/// purpose: number-only lines (page numbers) and lines that repeat, digits
/// ignored, on three or more pages (running headers).
fn body(reference: &str) -> String {
    let key = |l: &str| -> String {
        l.trim()
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect()
    };
    let pages: Vec<&str> = reference.split('\u{c}').collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for page in &pages {
        let mut keys: Vec<String> = page.lines().map(key).filter(|k| !k.is_empty()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            *seen.entry(k).or_default() += 1;
        }
    }
    pages
        .iter()
        .map(|page| {
            page.lines()
                .filter(|l| {
                    let t = l.trim();
                    let numeric = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
                    !numeric && seen.get(&key(l)).copied().unwrap_or(0) < 3
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\u{c}")
}

fn extract(name: &str) -> ExtractedPdf {
    extract_file(&fixture(&format!("{name}.pdf"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Lowercased alphanumeric tokens after NFKC (so a U+FB01 ligature and
/// "fi" compare equal), optionally joining words hyphenated at a line end
/// as pdftotext does.
fn tokens(text: &str, dehyphenate: bool) -> Vec<String> {
    let mut s: String = text.nfkc().collect::<String>().to_lowercase();
    if dehyphenate {
        let re = Regex::new(r"(\p{Alphabetic})-[ \t]*\n[ \t]*(\p{Alphabetic})").unwrap();
        s = re.replace_all(&s, "$1$2").into_owned();
    }
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Share of the reference's tokens (as a multiset) found in `candidate`.
fn recall(reference: &[String], candidate: &[String]) -> f64 {
    let mut have: HashMap<&str, usize> = HashMap::new();
    for t in candidate {
        *have.entry(t.as_str()).or_default() += 1;
    }
    let hits = reference
        .iter()
        .filter(|t| match have.get_mut(t.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count();
    hits as f64 / reference.len().max(1) as f64
}

/// Sentence tag numbers in the order they appear.
fn tags(text: &str) -> Vec<u32> {
    let re = Regex::new(r"\([a-d](\d+)\)").unwrap();
    re.captures_iter(text)
        .filter_map(|c| c[1].parse().ok())
        .collect()
}

/// Papers with tagged sentences: (name, pages, two columns?).
const PAPERS: [(&str, usize, bool); 5] = [
    ("paper-a", 4, true),
    ("paper-b", 5, true),
    ("paper-c", 4, true),
    ("paper-c-gs", 4, true),
    ("onecol", 2, false),
];

#[test]
fn page_counts_match_the_reference() {
    for (name, pages, _) in PAPERS {
        let got = extract(name);
        // pdftotext ends every page with a form feed.
        let reference_pages = expected(name).matches('\u{c}').count();
        assert_eq!(reference_pages, pages, "{name}: fixture and table disagree");
        assert_eq!(got.pages.len(), pages, "{name}");
        assert!(
            got.pages.iter().all(|p| !p.trim().is_empty()),
            "{name}: an empty page"
        );
    }
}

#[test]
fn recall_against_pdftotext() {
    for (name, _, _) in PAPERS {
        let reference = tokens(&body(&expected(name)), false);
        let text = extract(name).pages.join("\n");
        // pdftotext joins words hyphenated at a line end; we leave that to
        // the clean-text module, so the raw score loses those words
        // (measured 0.962–0.978) and the de-hyphenated one must be ~1.
        // Running headers and page numbers are left out of both.
        let raw = recall(&reference, &tokens(&text, false));
        let joined = recall(&reference, &tokens(&text, true));
        assert!(raw >= 0.95, "{name}: raw recall {raw:.3}");
        assert!(joined >= 0.99, "{name}: de-hyphenated recall {joined:.3}");
    }
}

#[test]
fn page_boundaries_match_the_reference() {
    for (name, _, _) in PAPERS {
        let reference = body(&expected(name));
        let got = extract(name);
        for (i, (want, have)) in reference.split('\u{c}').zip(&got.pages).enumerate() {
            let r = recall(&tokens(want, false), &tokens(have, true));
            assert!(r >= 0.97, "{name} page {}: recall {r:.3}", i + 1);
        }
    }
}

#[test]
fn reading_order_follows_columns() {
    for (name, _, _) in PAPERS {
        let text = extract(name).pages.join("\n");
        let seen = tags(&text);
        let max = seen.iter().copied().max().unwrap_or(0);
        assert!(max > 50, "{name}: only {max} tagged sentences found");
        // Every sentence once, in order: column 1 before column 2 on every
        // page, pages in order.
        let want: Vec<u32> = (1..=max).collect();
        assert_eq!(seen, want, "{name}: sentences out of order or missing");
    }
}

#[test]
fn column_two_starts_after_column_one_ends() {
    // The explicit two-column case. Page 1 of paper-a: the left column runs
    // from "1. Introduction" to sentence a15; the right column starts,
    // higher up the page, with the end of a15 and sentence a16. pdftotext
    // puts the right column's first paragraph (a16–a19) *before* "1.
    // Introduction" because it starts higher; we must not.
    let page = &extract("paper-a").pages[0];
    let at = |s: &str| page.find(s).unwrap_or_else(|| panic!("{s} not on page 1"));
    assert!(at("1. Introduction") < at("(a4)"));
    assert!(at("(a15)") < at("(a16)"), "right column before left");
    assert!(at("(a4)") < at("(a19)"));
    let reference = expected("paper-a");
    let r = |s: &str| reference.find(s).unwrap_or(usize::MAX);
    assert!(
        r("(a16)") < r("1. Introduction"),
        "fixture changed: pdftotext order is no longer wrong here"
    );
    // One line of output per printed line (page 1: 78).
    assert!(page.lines().count() > 60, "{} lines", page.lines().count());
}

#[test]
fn structure_survives_extraction() {
    for (name, _, _) in PAPERS {
        let got = extract(name);
        let text = got.pages.join("\n");
        for heading in [
            "ABSTRACT",
            "Introduction",
            "Method",
            "Results",
            "Conclusion",
            "References",
            "Appendix A",
        ] {
            assert!(text.contains(heading), "{name}: no {heading}");
        }
        // References [1]..[n] in order, before the appendix.
        let refs_at = text.find("References").unwrap_or(0);
        let appendix_at = text.rfind("Appendix A").unwrap_or(0);
        assert!(refs_at < appendix_at, "{name}: appendix before references");
        let refs = &text[refs_at..appendix_at];
        let n = if name == "onecol" { 4 } else { 12 };
        let mut at = 0;
        for k in 1..=n {
            let marker = format!("[{k}]");
            let pos = refs[at..]
                .find(&marker)
                .unwrap_or_else(|| panic!("{name}: {marker} missing or out of order"));
            at += pos + marker.len();
        }
        // Running headers and page numbers are removed from every page.
        for (i, page) in got.pages.iter().enumerate() {
            let lines: Vec<&str> = page.lines().map(str::trim).collect();
            assert!(
                !lines.contains(&(i + 1).to_string().as_str()),
                "{name} page {}: page number left in",
                i + 1
            );
            if name != "onecol" {
                assert!(
                    !lines.iter().any(|l| l
                        .starts_with("Efficient Affine Flow Matching Lindqvist")
                        || l.ends_with("Lindqvist, Okafor and Marsh")),
                    "{name} page {}: running header left in",
                    i + 1
                );
            }
        }
    }
}

#[test]
fn ligature_words_come_out_whole() {
    let text = extract("paper-a").pages.join("\n");
    let words = tokens(&text, true);
    for w in [
        "efficient",
        "affine",
        "official",
        "flow",
        "coefficient",
        "sufficient",
        "flexible",
    ] {
        assert!(words.iter().any(|t| t == w), "{w} missing");
    }
    // The Ghostscript version draws fi/fl as ligature glyphs; whatever code
    // point comes out, NFKC must give the plain letters.
    let gs = tokens(&extract("paper-c-gs").pages.join("\n"), true);
    for w in ["conflict", "workflows", "offline", "scientific"] {
        assert!(gs.iter().any(|t| t == w), "paper-c-gs: {w} missing");
    }
}

#[test]
fn hyphenated_line_ends_are_kept_for_the_clean_module() {
    // groff hyphenates the narrow columns; the raw text keeps "word-" at
    // the end of a line (de-hyphenation is the clean-text module's job).
    let text = extract("paper-b").pages.join("\n");
    let broken = text.lines().filter(|l| l.trim_end().ends_with('-')).count();
    assert!(broken >= 10, "only {broken} lines end with a hyphen");
}

#[test]
fn ghostscript_quote_operator_text_is_not_lost() {
    // ps2pdf writes most lines with the ' operator, which pdf-extract
    // ignores; these sentences start on such lines.
    let text = extract("paper-c-gs").pages.join("\n");
    assert!(text.contains("(c17)"), "text drawn with ' is missing");
}

#[test]
fn pages_keep_their_order_when_extracted_in_parallel() {
    // The two papers in one file (furniture is decided across the whole
    // document): page for page the same as the two halves alone.
    let combined = extract("combined");
    let mut separate = extract("paper-a").pages;
    separate.extend(extract("paper-b").pages);
    assert_eq!(combined.pages.len(), 9);
    assert_eq!(combined.pages, separate);
}

#[test]
fn truncated_pdf_is_unreadable() {
    match extract_file(&fixture("truncated.pdf")) {
        Err(PdfError::Unreadable(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Unreadable, got {other:?}"),
    }
}

#[test]
fn garbage_named_pdf_is_unreadable() {
    match extract_file(&fixture("garbage.pdf")) {
        Err(PdfError::Unreadable(msg)) => assert!(msg.contains("%PDF"), "{msg}"),
        other => panic!("expected Unreadable, got {other:?}"),
    }
    let valid = std::fs::read(fixture("paper-a.pdf")).unwrap();
    // Right header, wrong body.
    let mut fake = b"%PDF-1.7\n".to_vec();
    fake.extend(std::iter::repeat_n(b'x', 5000));
    assert!(matches!(extract_bytes(&fake), Err(PdfError::Unreadable(_))));
    assert!(matches!(extract_bytes(&[]), Err(PdfError::Unreadable(_))));
    // Junk before the header is tolerated, as by other readers.
    let mut prefixed = b"JUNK\n".to_vec();
    prefixed.extend_from_slice(&valid);
    assert_eq!(
        extract_bytes(&prefixed).map(|x| x.pages.len()).ok(),
        Some(4)
    );
}

#[test]
fn encrypted_pdf_needs_a_password() {
    match extract_file(&fixture("encrypted.pdf")) {
        Err(PdfError::Encrypted(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Encrypted, got {other:?}"),
    }
}

#[test]
fn owner_password_only_pdf_is_read() {
    let got = extract("owner-password");
    assert_eq!(got.pages.len(), 4);
    let r = recall(
        &tokens(&body(&expected("paper-a")), false),
        &tokens(&got.pages.join("\n"), true),
    );
    assert!(r >= 0.99, "recall {r:.3}");
}

#[test]
fn parser_panic_on_one_page_leaves_that_page_empty() {
    // Text shown before a font is set (pdf-extract panicked on it) shows
    // nothing; the other page's text survives.
    let got = extract("broken-page");
    assert_eq!(got.pages.len(), 2);
    assert_eq!(got.pages[0], "");
    assert_eq!(got.pages[1], "Second page text survives");
}

#[test]
fn text_without_a_font_on_every_page_is_unreadable() {
    // Nothing to decode it with (pdf-extract panicked here): every page
    // failed, so the document is unreadable.
    match extract_file(&fixture("broken-only.pdf")) {
        Err(PdfError::Unreadable(msg)) => assert!(msg.contains("without a font"), "{msg}"),
        other => panic!("expected Unreadable, got {other:?}"),
    }
}

#[test]
fn page_without_media_box_is_read() {
    // Mandatory but sometimes missing; pdf-extract would panic on it.
    let got = extract("no-media-box");
    assert_eq!(got.pages, vec!["A page without a media box".to_string()]);
}

#[test]
fn missing_file_is_an_io_error() {
    match extract_file(&fixture("no-such-paper.pdf")) {
        Err(PdfError::Io { path, message }) => {
            assert!(path.ends_with("no-such-paper.pdf"));
            assert!(!message.is_empty());
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn every_prefix_of_a_paper_fails_cleanly() {
    // Truncation at any point (interrupted downloads) must give an error or
    // text, never a panic. 40 cut points across the file.
    let bytes = std::fs::read(fixture("paper-b.pdf")).unwrap();
    for k in 1..40 {
        let cut = bytes.len() * k / 40;
        let _ = extract_bytes(&bytes[..cut]);
    }
}

#[test]
fn reports_elapsed_time() {
    // Only that it is filled in plausibly: speed is not asserted.
    let got = extract("paper-a");
    assert!(got.ms < 60_000);
}
