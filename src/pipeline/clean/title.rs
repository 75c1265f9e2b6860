//! The title guess from page 1.
//!
//! Separate from the body steps because it reads page 1 as printed (before
//! furniture is stripped) and must step over author and affiliation lines,
//! which the body never needs to recognise.

use super::pages::{is_page_number, line_key, ARXIV_STAMP};
use super::reflow::{join_line, Vocabulary};
use super::regions::{accept_heading, Region};
use super::{re, EDGE_LINES, SOFT_HYPHEN};
use regex::Regex;
use std::collections::HashSet;
use std::sync::LazyLock;

pub(super) static BOILERPLATE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:preprint|under review|published as|conference|proceedings|workshop|copyright|licensed|journal of|vol\.|issn|doi:|accepted (?:at|to|for|by)|camera[- ]ready|submitted to|arxiv)\b|©",
    )
});

pub(super) static AUTHOR_MARKS: LazyLock<Regex> =
    LazyLock::new(|| re(r"[∗†‡§¶*✉]|@|\p{Ll}\d(?:,\d)*(?:\s|,|$)"));

pub(super) static AFFILIATION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:university|universit[éày]|universidad|universidade|università|institute|institut|instituto|laboratory|laboratories|lab|labs|observatory|hospital|department|dept|school of|college|inc|ltd|corporation|google|microsoft|deepmind|openai|academy|centre|center)\b",
    )
});

/// The title: the first run of up to three title-like lines on page 1,
/// skipping running headers, page numbers and venue boilerplate, and ending
/// at a blank line, an author or affiliation line (see
/// [`looks_like_authors`]), or a heading. When that
/// finds nothing (the running header *is* the title and the next line is
/// the authors) the first non-boilerplate running header on page 1 is used.
pub(super) fn guess_title(
    page: &[String],
    running: &HashSet<String>,
    vocab: &Vocabulary,
) -> Option<String> {
    let furniture = |l: &str| {
        is_page_number(l) || BOILERPLATE.is_match(l) || ARXIV_STAMP.is_match(l) || l.is_empty()
    };
    let mut parts: Vec<&str> = Vec::new();
    for (i, line) in page.iter().enumerate() {
        let skip = furniture(line) || running.contains(&line_key(line));
        if skip {
            if parts.is_empty() {
                continue;
            }
            break;
        }
        let next = page[i + 1..].iter().find(|l| !l.is_empty());
        if accept_heading(line, None, Region::Body).is_some()
            || looks_like_authors(line, next.map(String::as_str))
            || !title_line_ok(line)
            || parts.last().is_some_and(|prev| prev.ends_with('.'))
        {
            break;
        }
        parts.push(line);
        if parts.len() == 3 {
            break;
        }
    }
    if parts.is_empty() {
        parts = page
            .iter()
            .take(EDGE_LINES + 2)
            .filter(|l| running.contains(&line_key(l)) && !furniture(l) && title_line_ok(l))
            .filter(|l| l.split_whitespace().count() >= 2)
            .map(String::as_str)
            .take(1)
            .collect();
    }
    let mut title = String::new();
    for part in parts {
        if title.is_empty() {
            title.push_str(part);
        } else {
            join_line(&mut title, part, vocab);
        }
    }
    let title = title.trim_end_matches(SOFT_HYPHEN).to_string();
    (title.chars().filter(|c| c.is_alphabetic()).count() >= 3).then_some(title)
}

/// Short, mostly letters, not a sentence.
fn title_line_ok(line: &str) -> bool {
    let chars = line.chars().count();
    let letters = line.chars().filter(|c| c.is_alphabetic()).count();
    (3..=150).contains(&chars)
        && letters * 2 >= chars
        && !line.ends_with('.')
        && line.split_whitespace().count() <= 20
}

/// Author lines carry footnote marks, e-mail addresses or affiliation
/// numbers, or are a short list of names followed by an affiliation line.
fn looks_like_authors(line: &str, next: Option<&str>) -> bool {
    if AUTHOR_MARKS.is_match(line) || AFFILIATION.is_match(line) {
        return true;
    }
    let words: Vec<&str> = line
        .split([' ', ','])
        .filter(|w| !w.is_empty() && *w != "and")
        .collect();
    let namey = !words.is_empty()
        && words
            .iter()
            .all(|w| w.chars().next().is_some_and(char::is_uppercase) && !w.ends_with(':'));
    namey && next.is_some_and(|n| AFFILIATION.is_match(n) || n.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::super::tests::clean;

    #[test]
    fn title_is_guessed_from_page_one() {
        let c = clean(&[
            "arXiv:2401.01234v1 [cs.CL] 3 Jan 2024\nPublished as a conference paper at ICLR 2024\nSparse Attention Kernels for\nLong-Context Language Models\nAlice Smith1, Bob Jones2\nAbstract\nWe study.",
        ]);
        assert_eq!(
            c.title_guess.as_deref(),
            Some("Sparse Attention Kernels for Long-Context Language Models")
        );
    }

    #[test]
    fn a_title_broken_with_a_hyphen_is_joined() {
        let c = clean(&["Deep Survey Cata-\nlogue of Things\nAlice Smith1\nAbstract\nText."]);
        assert_eq!(
            c.title_guess.as_deref(),
            Some("Deep Survey Catalogue of Things")
        );
    }

    #[test]
    fn title_falls_back_to_a_running_header() {
        let c = clean(&[
            "Deep Residual Learning\nKaiming He∗ Xiangyu Zhang∗\nAbstract\nText.\n1",
            "Deep Residual Learning\nMore.\n2",
        ]);
        assert_eq!(c.title_guess.as_deref(), Some("Deep Residual Learning"));
    }

    #[test]
    fn no_title_when_page_one_starts_with_the_abstract() {
        let c = clean(&["Abstract\nWe study things."]);
        assert_eq!(c.title_guess, None);
    }
}
