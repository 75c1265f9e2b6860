//! Cleaning the per-page text a PDF extractor produced into prompt-ready
//! paper text.
//!
//! The steps, in order:
//! 1. characters: NFKC (ligatures `ﬁ` → `fi`, non-breaking spaces → spaces),
//!    curly quotes → straight, hyphen-like dashes → `-`, control and
//!    zero-width characters dropped, runs of spaces collapsed;
//! 2. page furniture: running headers/footers (a line that, with digits
//!    ignored, sits among the first or last [`EDGE_LINES`] lines of at least
//!    half the pages) and lone page numbers at a page's edge are removed, as
//!    is the arXiv side stamp;
//! 3. regions: a pass over the lines finds headings and splits the text into
//!    body, references and appendix;
//! 4. re-flow: lines become paragraphs (a blank line ends one, a heading
//!    stands alone) and hyphenated line breaks are joined;
//! 5. sections: the body's headings are mapped to canonical names.
//!
//! Blocks the extractor marked — tables (`[TABLE n: caption]` … `[/TABLE]`),
//! figure captions (`[FIGURE n: …]`) and footnotes (`[FOOTNOTE m: …]`) —
//! pass through every step verbatim: they are never page furniture or
//! headings, never re-flowed, and do not interrupt a paragraph that runs
//! past them (a footnote at a page's foot). Those found among the
//! references (APA manuscripts put tables and figures after them) are kept
//! with the body: their numbers are the paper's results.
//!
//! PDF text has no structure, so every step is a heuristic. Each one errs
//! towards keeping text: a missed heading costs a section label, a false one
//! costs a paragraph break, and neither loses words.
//!
//! # Layout
//!
//! One file per step, each with its tests: [`pages`] (steps 1–2: characters
//! and page furniture), [`title`] (the title guess from page 1), [`headings`]
//! (what counts as a heading and its canonical name), [`regions`] (step 3:
//! body / references / appendix), [`reflow`] (step 4: paragraphs and
//! hyphenation repair), [`sections`] (step 5), [`references`] (counting
//! entries) and [`prompt`] (fitting a cleaned paper into a token budget).
//! This file holds the public types and [`clean_pages`], which runs the steps
//! in order; the public API is unchanged by the split.

mod headings;
mod pages;
mod prompt;
mod references;
mod reflow;
mod regions;
mod sections;
mod title;

pub use prompt::trim_for_prompt;
pub use references::count_references;

use indexmap::IndexMap;
use pages::{page_lines, running_lines, strip_furniture};
use prompt::cap_text;
use reflow::{reflow, render_blocks, Vocabulary};
use regex::Regex;
use regions::split_regions;
use sections::build_sections;
use serde::Serialize;
use std::sync::LazyLock;
use title::guess_title;

/// Approximate characters per token, for budgets given in tokens.
pub const CHARS_PER_TOKEN: usize = 4;

/// Marks text left out by [`trim_for_prompt`] and the appendix cap.
pub const CUT_MARK: &str = "[…]";

/// Lines at each end of a page searched for headers, footers and page
/// numbers: enough for a header, an author line and a page number, few
/// enough that body text is rarely looked at.
pub const EDGE_LINES: usize = 3;

/// Headings are short; a longer line is body text whatever it starts with.
const MAX_HEADING_CHARS: usize = 80;

/// Invisible unless a line breaks there; handled by line tidying, the title
/// guess and re-flow alike.
const SOFT_HYPHEN: char = '\u{AD}';

/// First line of a table block the extractor writes (`[TABLE 2: caption]`);
/// the block's rows follow, one per line, cells separated by ` | `, up to
/// [`TABLE_END`].
pub const TABLE_START: &str = "[TABLE";
/// Last line of a table block.
pub const TABLE_END: &str = "[/TABLE]";
/// A figure caption line (`[FIGURE 3: caption]`).
pub const FIGURE_MARK: &str = "[FIGURE";
/// A footnote line (`[FOOTNOTE 1: text]`), at the end of its page.
pub const FOOTNOTE_MARK: &str = "[FOOTNOTE";

/// Is `line` one the extractor marked (a table line, caption or footnote)?
/// Such lines are kept verbatim: never furniture, never headings, never
/// re-flowed.
fn is_marked(line: &str) -> bool {
    line.starts_with(TABLE_START)
        || line.starts_with(TABLE_END)
        || line.starts_with(FIGURE_MARK)
        || line.starts_with(FOOTNOTE_MARK)
}

/// For each line, is it part of a marked block (a whole table, or a
/// caption or footnote line)?
fn marked_lines(lines: &[String]) -> Vec<bool> {
    let mut out = Vec::with_capacity(lines.len());
    let mut in_table = false;
    for line in lines {
        if line.starts_with(TABLE_START) {
            in_table = true;
        }
        out.push(in_table || is_marked(line));
        if line.starts_with(TABLE_END) {
            in_table = false;
        }
    }
    out
}

/// Knobs for [`clean_pages`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanOptions {
    /// Approximate tokens (chars / 4) the prompts can take. `clean_pages`
    /// never cuts the body (that is [`trim_for_prompt`]'s job) but caps
    /// `appendix_text` to this, because the appendix is carried in every
    /// checkpoint only as supporting material and can run to dozens of
    /// pages. 0 means no cap.
    pub token_budget: usize,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions {
            token_budget: 24_000,
        }
    }
}

/// A cleaned paper.
#[derive(Debug, Clone, Serialize)]
pub struct Cleaned {
    /// The first lines of page 1 that look like a title (best effort).
    pub title_guess: Option<String>,
    /// The body: paragraphs and headings separated by blank lines, without
    /// page furniture, references or appendix.
    pub paper_text: String,
    /// Canonical section name → text (without its heading), in document
    /// order: `abstract`, `introduction`, `related_work`, `background`,
    /// `method`, `experiments`, `results`, `discussion`, `conclusion`, or
    /// `other:<heading in lower case>`. Subsections with names of their own
    /// stay inside their section (their heading kept as a paragraph).
    pub sections: IndexMap<String, String>,
    /// Entries in the references section (see [`count_references`]).
    pub reference_count: usize,
    /// Appendix and other back matter after the references, capped to the
    /// token budget.
    pub appendix_text: String,
    /// Pages in the input.
    pub pages: usize,
}

/// Compile one of this module's constant patterns (each step file keeps its
/// own). The unit tests compile every one of them, so a failure here is a
/// bug in this module, never a property of the input.
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant regex")
}

/// A publication year; shared by heading checks (a year makes a line look
/// like a reference) and author–year reference counting.
static YEAR: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:1[89]|20)\d{2}[a-z]?\b"));

/// Clean a PDF's per-page text (see the module docs for the steps).
pub fn clean_pages(pages: &[String], opts: &CleanOptions) -> Cleaned {
    let normalised: Vec<Vec<String>> = pages.iter().map(|p| page_lines(p)).collect();
    let running = running_lines(&normalised);
    let lines = strip_furniture(&normalised, &running);
    let vocab = Vocabulary::from_lines(&lines);
    let title_guess = normalised
        .first()
        .and_then(|page| guess_title(page, &running, &vocab));
    let regions = split_regions(&lines);
    let body = reflow(&regions.body, &vocab);
    let appendix = render_blocks(&reflow(&regions.appendix, &vocab));
    let cap = opts.token_budget.saturating_mul(CHARS_PER_TOKEN);
    Cleaned {
        title_guess,
        paper_text: render_blocks(&body),
        sections: build_sections(&body),
        reference_count: count_references(&regions.references),
        appendix_text: cap_text(&appendix, cap),
        pages: pages.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::headings::{APPENDIX_HEAD, INITIAL, INLINE_ABSTRACT, LETTERED, NUMBERED, ROMAN};
    use super::pages::{ARXIV_STAMP, PAGE_NUMBER, SPACED_CAPS};
    use super::prompt::trim_for_prompt;
    use super::references::{AUTHOR_START, BRACKET_ENTRY, DOTTED_ENTRY};
    use super::regions::REF_LIKE;
    use super::title::{AFFILIATION, AUTHOR_MARKS, BOILERPLATE};
    use super::*;

    pub(super) fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    pub(super) fn clean(pages: &[&str]) -> Cleaned {
        let pages: Vec<String> = pages.iter().map(|p| p.to_string()).collect();
        clean_pages(&pages, &CleanOptions::default())
    }

    #[test]
    fn constant_patterns_compile() {
        for pattern in [
            &PAGE_NUMBER,
            &ARXIV_STAMP,
            &BOILERPLATE,
            &SPACED_CAPS,
            &INLINE_ABSTRACT,
            &APPENDIX_HEAD,
            &NUMBERED,
            &ROMAN,
            &LETTERED,
            &INITIAL,
            &YEAR,
            &REF_LIKE,
            &BRACKET_ENTRY,
            &DOTTED_ENTRY,
            &AUTHOR_START,
            &AUTHOR_MARKS,
            &AFFILIATION,
        ] {
            assert!(!pattern.as_str().is_empty());
        }
    }

    #[test]
    fn appendix_text_is_capped_to_the_budget() {
        let para = "word ".repeat(100);
        let long = format!(
            "References\n[1] X. 2020.\nAppendix\n{}",
            [para.as_str(); 10].join("\n\n")
        );
        let c = clean_pages(&[long], &CleanOptions { token_budget: 300 });
        assert!(c.appendix_text.chars().count() <= 1200);
        assert!(c.appendix_text.ends_with(CUT_MARK));
    }

    #[test]
    fn marked_blocks_pass_through_verbatim() {
        let c = clean(&[
            "1 Introduction\nWe measure things and the model is\n\n[FOOTNOTE 1: Code at example.org.]",
            "trained for long.\n\n[TABLE 1: Scores.]\nModel | Acc\n2 | 71.2\n[/TABLE]\n\n[FIGURE 2: Loss curves.]\n\n2 Results\nIt works.",
        ]);
        assert_eq!(
            c.paper_text,
            "1 Introduction\n\nWe measure things and the model is trained for long.\n\n[FOOTNOTE 1: Code at example.org.]\n\n[TABLE 1: Scores.]\nModel | Acc\n2 | 71.2\n[/TABLE]\n\n[FIGURE 2: Loss curves.]\n\n2 Results\n\nIt works."
        );
        // The table row "2 | 71.2" is no heading and no page number.
        assert!(c.sections["introduction"].contains("Model | Acc\n2 | 71.2"));
    }

    #[test]
    fn tables_after_the_references_stay_with_the_body() {
        let c = clean(&[
            "1 Introduction\nBody.\nReferences\n[1] A. Author. Title. 2020.",
            "[TABLE 1: Descriptive statistics.]\nScale | M | SD\nAnxiety | 3.1 | 0.4\n[/TABLE]",
        ]);
        assert_eq!(c.reference_count, 1);
        assert!(
            c.paper_text.ends_with("Anxiety | 3.1 | 0.4\n[/TABLE]"),
            "{}",
            c.paper_text
        );
    }

    #[test]
    fn a_table_at_every_page_foot_is_not_furniture() {
        let page = |n: usize| format!("Text of page {n}.\n\n[TABLE {n}: T.]\na | {n}\n[/TABLE]");
        let pages: Vec<String> = (1..=4).map(page).collect();
        let refs: Vec<&str> = pages.iter().map(String::as_str).collect();
        let c = clean(&refs);
        assert_eq!(
            c.paper_text.matches("[/TABLE]").count(),
            4,
            "{}",
            c.paper_text
        );
    }

    #[test]
    fn empty_input_is_empty() {
        let c = clean(&[]);
        assert_eq!(c.pages, 0);
        assert!(c.paper_text.is_empty());
        assert_eq!(trim_for_prompt(&c, 100), "");
    }
}
