//! Steps 1–2: characters and page furniture.
//!
//! Everything here works on single lines or whole pages before any structure
//! is known: Unicode clean-up, and removing what repeats on every page
//! (running headers and footers, page numbers, the arXiv side stamp).

use super::{marked_lines, re, EDGE_LINES, SOFT_HYPHEN};
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

pub(super) static PAGE_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:(?:page|p\.)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?|\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?|-\s*\d{1,4}\s*-)$",
    )
});

pub(super) static ARXIV_STAMP: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^arxiv:\s*\d{4}\.\d{4,5}(?:v\d+)?\b.{0,60}$"));

pub(super) static SPACED_CAPS: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:\p{Lu} ){3,}\p{Lu}$"));

/// Character-level normalisation of a whole page (see the module docs).
/// Em dashes are kept: they are punctuation, not hyphens. Soft hyphens are
/// kept here so a line ending in one can be joined later.
fn normalise_chars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkc() {
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{00B4}' => {
                out.push('\'')
            }
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{00AB}'
            | '\u{00BB}' => out.push('"'),
            '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2043}' | '\u{2212}' => {
                out.push('-')
            }
            '\u{2015}' => out.push('—'),
            '\t' => out.push(' '),
            '\n' => out.push('\n'),
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A page as normalised, whitespace-collapsed lines (blank lines kept as "").
pub(super) fn page_lines(page: &str) -> Vec<String> {
    normalise_chars(page).split('\n').map(tidy_line).collect()
}

/// Collapse whitespace, drop soft hyphens (keeping a trailing one as the
/// marker of a discretionary line break) and close up letter-spaced
/// headings ("A B S T R A C T").
fn tidy_line(line: &str) -> String {
    let soft_break = line.trim_end().ends_with(SOFT_HYPHEN);
    let mut s = line.split_whitespace().collect::<Vec<_>>().join(" ");
    s.retain(|c| c != SOFT_HYPHEN);
    if SPACED_CAPS.is_match(&s) {
        s.retain(|c| c != ' ');
    }
    if soft_break && !s.is_empty() {
        s.push(SOFT_HYPHEN);
    }
    s
}

/// "3", "Page 3", "3 of 9", "3/9", "- 3 -".
pub(super) fn is_page_number(line: &str) -> bool {
    PAGE_NUMBER.is_match(line)
}

/// The key lines are compared by for header detection: page numbers and
/// dates inside headers differ between pages, so digits are ignored.
pub(super) fn line_key(line: &str) -> String {
    line.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// Indices of the first and last [`EDGE_LINES`] non-blank lines of a page
/// that are not part of a marked block (a table, caption or footnote).
fn edge_indices(page: &[String]) -> HashSet<usize> {
    let marked = marked_lines(page);
    let filled: Vec<usize> = (0..page.len())
        .filter(|&i| !page[i].is_empty() && !marked[i])
        .collect();
    let head = filled.iter().take(EDGE_LINES);
    let tail = filled.iter().rev().take(EDGE_LINES);
    head.chain(tail).copied().collect()
}

/// Keys of lines at the edge of at least half the pages (and at least two):
/// running headers and footers.
pub(super) fn running_lines(pages: &[Vec<String>]) -> HashSet<String> {
    if pages.len() < 2 {
        return HashSet::new();
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for page in pages {
        let keys: HashSet<String> = edge_indices(page)
            .into_iter()
            .filter_map(|i| page.get(i))
            .map(|l| line_key(l))
            .collect();
        for key in keys {
            *seen.entry(key).or_default() += 1;
        }
    }
    let needed = pages.len().div_ceil(2).max(2);
    seen.into_iter()
        .filter(|(_, n)| *n >= needed)
        .map(|(k, _)| k)
        .collect()
}

/// All pages' lines in order, without headers, footers, page numbers and
/// the arXiv stamp. Blank lines at a page's ends are dropped so that a
/// paragraph (or a hyphenated word) continues across the page break.
pub(super) fn strip_furniture(pages: &[Vec<String>], running: &HashSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for page in pages {
        let edges = edge_indices(page);
        let kept: Vec<&String> = page
            .iter()
            .enumerate()
            .filter(|(i, line)| {
                let at_edge = edges.contains(i);
                !(ARXIV_STAMP.is_match(line)
                    || at_edge && (is_page_number(line) || running.contains(&line_key(line))))
            })
            .map(|(_, line)| line)
            .collect();
        let first = kept
            .iter()
            .position(|l| !l.is_empty())
            .unwrap_or(kept.len());
        let last = kept
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(first, |i| i + 1);
        out.extend(kept[first..last.max(first)].iter().map(|l| (*l).clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::clean;
    use super::*;

    #[test]
    fn ligatures_quotes_dashes_and_controls_are_normalised() {
        let s = normalise_chars("e\u{FB03}cient \u{FB01}ne \u{201C}q\u{201D} it\u{2019}s 3\u{2013}5 a\u{2014}b x\u{200B}y\u{0007}\u{00A0}z");
        assert_eq!(s, "efficient fine \"q\" it's 3-5 a—b xy z");
    }

    #[test]
    fn soft_hyphens_vanish_inside_and_join_at_line_end() {
        assert_eq!(tidy_line("ef\u{AD}fi  cient"), "effi cient");
        let c = clean(&["Some effi\u{AD}\ncient text."]);
        assert_eq!(c.paper_text, "Some efficient text.");
    }

    #[test]
    fn page_numbers_are_recognised() {
        for yes in ["3", "Page 3", "page 12 of 20", "3 of 9", "- 3 -", "3/9"] {
            assert!(is_page_number(yes), "{yes}");
        }
        for no in ["3 Results", "Table 3", "2019.", "[3]"] {
            assert!(!is_page_number(no), "{no}");
        }
    }

    #[test]
    fn running_headers_footers_and_page_numbers_are_removed() {
        let page = |n: usize, body: &str| {
            format!("Preprint. Under review.\n\n{body}\n\nA Study of Things\n{n}")
        };
        let c = clean(&[
            &page(1, "First page text."),
            &page(2, "Second page text."),
            &page(3, "Third page text."),
        ]);
        assert_eq!(
            c.paper_text,
            "First page text. Second page text. Third page text."
        );
    }

    #[test]
    fn a_line_on_a_minority_of_pages_is_kept() {
        let c = clean(&["Only here\nalpha.", "beta.\nz", "gamma.\ny", "delta.\nx"]);
        assert!(c.paper_text.starts_with("Only here alpha."));
    }
}
