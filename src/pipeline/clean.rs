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
//! PDF text has no structure, so every step is a heuristic. Each one errs
//! towards keeping text: a missed heading costs a section label, a false one
//! costs a paragraph break, and neither loses words.

use indexmap::IndexMap;
use regex::Regex;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

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

/// A paragraph this long (in words) before the first heading is taken as
/// the abstract when the paper has no "Abstract" heading.
const MIN_ABSTRACT_WORDS: usize = 40;

const SOFT_HYPHEN: char = '\u{AD}';

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

/// Compile one of this file's constant patterns. The unit tests compile
/// every one of them, so a failure here is a bug in this file, never a
/// property of the input.
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant regex")
}

static PAGE_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:(?:page|p\.)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?|\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?|-\s*\d{1,4}\s*-)$",
    )
});
static ARXIV_STAMP: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^arxiv:\s*\d{4}\.\d{4,5}(?:v\d+)?\b.{0,60}$"));
static BOILERPLATE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:preprint|under review|published as|conference|proceedings|workshop|copyright|licensed|journal of|vol\.|issn|doi:|accepted (?:at|to|for|by)|camera[- ]ready|submitted to|arxiv)\b|©",
    )
});
static SPACED_CAPS: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:\p{Lu} ){3,}\p{Lu}$"));
static INLINE_ABSTRACT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?i:abstract)\s*(?:[-—:.]|\s-)\s*(\S.*)$"));
static APPENDIX_HEAD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?i:appendix|appendices|technical\s+appendix|supplementary\s+materials?|supplemental\s+materials?|supplementary\s+information)(?:\s+(?:[A-Z]|\d{1,2})(?:\.\d{1,2})*)?\s*[:.\-—]?\s*(.*)$",
    )
});
static NUMBERED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+(\S.*)$"));
static ROMAN: LazyLock<Regex> = LazyLock::new(|| re(r"^(X{0,3}(?:IX|IV|V?I{0,3}))\.\s+(\S.*)$"));
static LETTERED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([A-Z])((?:\.\d{1,2}){0,3})(\.?)\s+(\S.*)$"));
static INITIAL: LazyLock<Regex> = LazyLock::new(|| re(r"(?:^|\s)\p{Lu}\.(?:\s|$|-)"));
static YEAR: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:1[89]|20)\d{2}[a-z]?\b"));
static REF_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:1[89]|20)\d{2}[a-z]?\b|^\[\d+\]|\bet al\b|\barxiv\b|\bproceedings\b|^in\s|\bpp\.|\bdoi\b|https?:|\bjournal\b|\bconference\b|\bvol\.",
    )
});
static BRACKET_ENTRY: LazyLock<Regex> = LazyLock::new(|| re(r"^\[(\d{1,4})\]"));
static DOTTED_ENTRY: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d{1,3})\.\s+\S"));
static AUTHOR_START: LazyLock<Regex> = LazyLock::new(|| {
    // NAME: a capitalised name; INIT: initials; PART: name particles.
    let name = r"\p{Lu}[\p{L}'’\-]+";
    let init = r"\p{Lu}\.(?:\s?-?\p{Lu}\.)*";
    let part = r"(?:(?:van|von|de|der|den|da|di|du|la|le|del|della|dos|das|al|el|bin)\s+)*";
    re(&format!(
        r"^{part}(?:(?:{name}|{init})\s+){{0,3}}{name}(?:,\s*(?:{init}|{part}{name}|and\b|&)|\s+(?:and|&)\s+\p{{Lu}}|\.\s+\(?(?:1[89]|20)\d{{2}}|\s+et\s+al\b|\s+\p{{Lu}}{{1,3}}(?:,|\.|\s*\())"
    ))
});
static AUTHOR_MARKS: LazyLock<Regex> =
    LazyLock::new(|| re(r"[∗†‡§¶*✉]|@|\p{Ll}\d(?:,\d)*(?:\s|,|$)"));
static AFFILIATION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:university|universit[éày]|universidad|universidade|università|institute|institut|instituto|laboratory|laboratories|lab|labs|observatory|hospital|department|dept|school of|college|inc|ltd|corporation|google|microsoft|deepmind|openai|academy|centre|center)\b",
    )
});

/// Bare heading lines (compared lower-case, trailing `:`/`.` ignored) and
/// their canonical names. Anything else needs a number to be a heading.
const KNOWN_HEADINGS: [(&str, &str); 52] = [
    ("abstract", "abstract"),
    ("introduction", "introduction"),
    ("related work", "related_work"),
    ("related works", "related_work"),
    ("prior work", "related_work"),
    ("literature review", "related_work"),
    ("background", "background"),
    ("preliminaries", "background"),
    ("problem setup", "background"),
    ("problem formulation", "background"),
    ("problem statement", "background"),
    ("method", "method"),
    ("methods", "method"),
    ("methodology", "method"),
    ("approach", "method"),
    ("our approach", "method"),
    ("proposed method", "method"),
    ("materials and methods", "method"),
    ("experiments", "experiments"),
    ("experimental setup", "experiments"),
    ("experimental settings", "experiments"),
    ("evaluation", "experiments"),
    ("results", "results"),
    ("experimental results", "results"),
    ("main results", "results"),
    ("results and discussion", "results"),
    ("discussion", "discussion"),
    ("conclusion", "conclusion"),
    ("conclusions", "conclusion"),
    ("concluding remarks", "conclusion"),
    ("conclusion and future work", "conclusion"),
    ("conclusions and future work", "conclusion"),
    ("limitations", "other:limitations"),
    ("future work", "other:future work"),
    ("broader impact", "other:broader impact"),
    ("broader impacts", "other:broader impacts"),
    ("impact statement", "other:impact statement"),
    ("ethics statement", "other:ethics statement"),
    (
        "reproducibility statement",
        "other:reproducibility statement",
    ),
    ("author contributions", "other:author contributions"),
    ("acknowledgements", "other:acknowledgements"),
    ("acknowledgments", "other:acknowledgments"),
    ("acknowledgement", "other:acknowledgement"),
    ("acknowledgment", "other:acknowledgment"),
    ("references", REFERENCES_KEY),
    ("bibliography", REFERENCES_KEY),
    ("literature cited", REFERENCES_KEY),
    ("references and notes", REFERENCES_KEY),
    ("works cited", REFERENCES_KEY),
    ("checklist", APPENDIX_KEY),
    ("neurips paper checklist", APPENDIX_KEY),
    ("supplementary", APPENDIX_KEY),
];

const REFERENCES_KEY: &str = "references";
const APPENDIX_KEY: &str = "appendix";

/// Words that, ending a line, mean the next line continues the sentence
/// ("see Section\n3 Results ..."), so that line is not a numbered heading.
const CONTINUATION_WORDS: [&str; 30] = [
    "section",
    "sections",
    "sec.",
    "table",
    "tab.",
    "figure",
    "fig.",
    "eq.",
    "eqs.",
    "equation",
    "algorithm",
    "appendix",
    "chapter",
    "theorem",
    "lemma",
    "line",
    "lines",
    "page",
    "pages",
    "step",
    "and",
    "or",
    "of",
    "in",
    "see",
    "the",
    "to",
    "with",
    "from",
    "by",
];

/// Prefixes that are practically always written with a hyphen, so a line
/// break after them is a real hyphen ("self-\nattention").
const HYPHEN_PREFIXES: [&str; 3] = ["self", "cross", "well"];

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

// ---------------------------------------------------------------------------
// Characters and lines

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
fn page_lines(page: &str) -> Vec<String> {
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
fn is_page_number(line: &str) -> bool {
    PAGE_NUMBER.is_match(line)
}

/// The key lines are compared by for header detection: page numbers and
/// dates inside headers differ between pages, so digits are ignored.
fn line_key(line: &str) -> String {
    line.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// Indices of the first and last [`EDGE_LINES`] non-blank lines of a page.
fn edge_indices(page: &[String]) -> HashSet<usize> {
    let filled: Vec<usize> = (0..page.len()).filter(|&i| !page[i].is_empty()).collect();
    let head = filled.iter().take(EDGE_LINES);
    let tail = filled.iter().rev().take(EDGE_LINES);
    head.chain(tail).copied().collect()
}

/// Keys of lines at the edge of at least half the pages (and at least two):
/// running headers and footers.
fn running_lines(pages: &[Vec<String>]) -> HashSet<String> {
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
fn strip_furniture(pages: &[Vec<String>], running: &HashSet<String>) -> Vec<String> {
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

// ---------------------------------------------------------------------------
// Title

/// The title: the first run of up to three title-like lines on page 1,
/// skipping running headers, page numbers and venue boilerplate, and ending
/// at a blank line, an author or affiliation line (see
/// [`looks_like_authors`]), or a heading. When that
/// finds nothing (the running header *is* the title and the next line is
/// the authors) the first non-boilerplate running header on page 1 is used.
fn guess_title(page: &[String], running: &HashSet<String>, vocab: &Vocabulary) -> Option<String> {
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

// ---------------------------------------------------------------------------
// Headings

/// How a heading line was numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    /// A known name on its own ("Abstract", "REFERENCES").
    Bare,
    /// "Appendix", "Appendix B: Proofs", "Supplementary Material".
    AppendixWord,
    /// "3", "2.1", "4.2.1." — depth is the number of components.
    Number(usize),
    /// "III." (Roman numerals need the dot).
    Roman,
    /// "A", "A.", "B.1" — `dotted` when written "A.".
    Letter { depth: usize, dotted: bool },
}

/// A line that is shaped like a heading; whether it is accepted depends on
/// where it is (see [`split_regions`]).
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    label: Label,
    /// The heading without its number, e.g. "Method".
    title: String,
    /// Text after an inline heading ("Abstract—We ...").
    rest: Option<String>,
}

impl Candidate {
    /// Section, references or appendix, from the title.
    fn key(&self) -> String {
        if self.label == Label::AppendixWord {
            return APPENDIX_KEY.to_string();
        }
        canonical_key(&self.title)
    }

    fn is_references(&self) -> bool {
        self.key() == REFERENCES_KEY
    }

    fn is_appendix(&self) -> bool {
        self.key() == APPENDIX_KEY
    }
}

/// Parse a line shaped like a heading (without judging its context).
fn parse_candidate(line: &str) -> Option<Candidate> {
    if let Some(c) = INLINE_ABSTRACT.captures(line) {
        return Some(Candidate {
            label: Label::Bare,
            title: "Abstract".to_string(),
            rest: Some(c[1].to_string()),
        });
    }
    if line.chars().count() >= MAX_HEADING_CHARS {
        return None;
    }
    let bare = strip_heading_punct(line);
    if known_heading(bare).is_some() {
        return Some(candidate(Label::Bare, bare));
    }
    if let Some(c) = APPENDIX_HEAD.captures(line) {
        let title = strip_heading_punct(&c[1]);
        return (title.is_empty() || heading_title_ok(title, false))
            .then(|| candidate(Label::AppendixWord, title));
    }
    if let Some(c) = NUMBERED.captures(line) {
        let depth = c[1].split('.').count();
        let top: u32 = c[1].split('.').next()?.parse().ok()?;
        return (1..=30)
            .contains(&top)
            .then(|| candidate(Label::Number(depth), strip_heading_punct(&c[2])));
    }
    if let Some(c) = ROMAN.captures(line) {
        if !c[1].is_empty() {
            return Some(candidate(Label::Roman, strip_heading_punct(&c[2])));
        }
    }
    let c = LETTERED.captures(line)?;
    let label = Label::Letter {
        depth: 1 + c[2].matches('.').count(),
        dotted: !c[3].is_empty() || !c[2].is_empty(),
    };
    Some(candidate(label, strip_heading_punct(&c[4])))
}

fn candidate(label: Label, title: &str) -> Candidate {
    Candidate {
        label,
        title: title.to_string(),
        rest: None,
    }
}

fn strip_heading_punct(s: &str) -> &str {
    s.trim().trim_end_matches([':', '.']).trim_end()
}

/// The canonical name of a known bare heading.
fn known_heading(text: &str) -> Option<&'static str> {
    let lower = text.to_lowercase();
    KNOWN_HEADINGS
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, key)| *key)
}

/// The canonical section name for a heading title: a known name, else the
/// first keyword rule that matches a short title, else `other:<title>`.
fn canonical_key(title: &str) -> String {
    let t = title
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if let Some(key) = known_heading(&t) {
        return key.to_string();
    }
    if let Some(c) = APPENDIX_HEAD.captures(title.trim()) {
        if c[1].is_empty() || heading_title_ok(&c[1], false) {
            return APPENDIX_KEY.to_string();
        }
    }
    let words: Vec<&str> = t
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.contains(&w);
    let rule = if words.len() > 6 {
        None
    } else if t.contains("introduction") {
        Some("introduction")
    } else if words.first() == Some(&"related") || t.contains("prior work") {
        Some("related_work")
    } else if words.first() == Some(&"background") || t.contains("preliminar") {
        Some("background")
    } else if t.contains("conclu") {
        Some("conclusion")
    } else if has("result") || has("results") {
        Some("results")
    } else if t.contains("experiment") || has("evaluation") || has("empirical") {
        Some("experiments")
    } else if has("discussion") {
        Some("discussion")
    } else if [
        "method",
        "methods",
        "methodology",
        "approach",
        "framework",
        "model",
        "architecture",
        "algorithm",
    ]
    .iter()
    .any(|w| has(w))
    {
        Some("method")
    } else {
        None
    };
    rule.map_or_else(|| format!("other:{t}"), str::to_string)
}

/// Heading titles are short, start with a capital, have no sentence
/// punctuation and are mostly letters. `strict` (lettered headings, which
/// collide with author initials and reference lines) also refuses
/// initials, years, a sentence break inside, and titles ending in a
/// function word.
fn heading_title_ok(title: &str, strict: bool) -> bool {
    let chars = title.chars().count();
    let words: Vec<&str> = title.split_whitespace().collect();
    let non_space = title.chars().filter(|c| !c.is_whitespace()).count();
    let letters = title.chars().filter(|c| c.is_alphabetic()).count();
    let basic = (2..=75).contains(&chars)
        && words.len() <= if strict { 8 } else { 12 }
        && title.chars().next().is_some_and(char::is_uppercase)
        && !title.ends_with(['.', ',', ';'])
        && !title.contains([',', '@', '='])
        && !title.contains("et al")
        && !title.contains("http")
        && !words.iter().enumerate().any(|(i, w)| sentence_word(i, w))
        && letters * 5 >= non_space * 3;
    if !basic || !strict {
        return basic;
    }
    let last = words.last().map(|w| w.to_lowercase()).unwrap_or_default();
    !INITIAL.is_match(title)
        && !YEAR.is_match(title)
        && !title.contains(". ")
        && !["of", "and", "the", "for", "in", "on", "with", "a", "to"].contains(&last.as_str())
}

/// Words that make a numbered line a sentence ("12 We show that it
/// works"), not a heading: lower-case verbs and pronouns (title-case
/// headings capitalise theirs), or "We"/"It"/"This" opening the line.
fn sentence_word(index: usize, word: &str) -> bool {
    const VERBS: [&str; 14] = [
        "we", "is", "are", "was", "were", "that", "which", "it", "has", "have", "can", "will",
        "our", "this",
    ];
    const OPENERS: [&str; 5] = ["We", "It", "This", "These", "There"];
    VERBS.contains(&word) || (index == 0 && OPENERS.contains(&word))
}

/// The line before a numbered heading must not leave a sentence open.
fn continues_sentence(prev: Option<&Item>) -> bool {
    let Some(Item::Text(text)) = prev else {
        return false;
    };
    let last = text.split_whitespace().last().unwrap_or("").to_lowercase();
    text.ends_with(',') || CONTINUATION_WORDS.contains(&last.as_str())
}

/// A Roman-numbered single word must be known or in capitals ("V. Smith"
/// is an author, "V. RESULTS" a heading).
fn roman_title_ok(title: &str) -> bool {
    title.contains(' ')
        || known_heading(title).is_some()
        || title.chars().all(|c| !c.is_lowercase())
}

// ---------------------------------------------------------------------------
// Regions

/// One line after heading detection.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Blank,
    Text(String),
    Heading(Heading),
}

#[derive(Debug, Clone, PartialEq)]
struct Heading {
    /// As printed, e.g. "2.1 Method".
    text: String,
    /// Canonical section name.
    key: String,
    /// Top-level, or a subsection with a canonical name: begins a new
    /// entry in `sections`.
    starts_section: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Body,
    References,
    Appendix,
}

/// The document split by region; references are kept as raw lines for
/// counting.
#[derive(Debug, Default)]
struct Regions {
    body: Vec<Item>,
    references: Vec<String>,
    appendix: Vec<Item>,
}

impl Regions {
    /// The item list for the body or the appendix (references are raw
    /// lines, pushed separately).
    fn items(&mut self, region: Region) -> &mut Vec<Item> {
        match region {
            Region::Appendix => &mut self.appendix,
            _ => &mut self.body,
        }
    }
}

/// One pass over the lines with a small state machine:
/// body → (a references heading) → references → (an appendix heading, any
/// other known bare heading such as "Acknowledgements" or "Checklist", a
/// lettered heading "A Proofs" or a numbered one with a canonical name
/// "6 Additional Experiments", either followed by a line that does not look
/// like a reference) → appendix. An "Appendix" heading in the body starts
/// the appendix directly; a references heading in the appendix switches
/// back to references. Everything after the references is back matter, so
/// it goes to the appendix, never back to the body.
fn split_regions(lines: &[String]) -> Regions {
    let mut out = Regions::default();
    let mut region = Region::Body;
    for (i, line) in lines.iter().enumerate() {
        let next: Vec<&str> = lines[i + 1..]
            .iter()
            .filter(|l| !l.is_empty())
            .take(2)
            .map(String::as_str)
            .collect();
        if region == Region::References {
            match references_exit(line, &next) {
                Some(heading) => {
                    region = Region::Appendix;
                    out.appendix.push(Item::Heading(heading));
                }
                None if !line.is_empty() => out.references.push(line.clone()),
                None => {}
            }
            continue;
        }
        if line.is_empty() {
            out.items(region).push(Item::Blank);
            continue;
        }
        let prev = out.items(region).last().cloned();
        let Some(cand) = accept_heading(line, prev.as_ref(), region) else {
            out.items(region).push(Item::Text(line.clone()));
            continue;
        };
        if cand.is_references() {
            region = Region::References;
            continue;
        }
        if cand.is_appendix() {
            region = Region::Appendix;
        }
        let top = is_top(&cand, region);
        out.items(region)
            .push(Item::Heading(heading(line, &cand, top)));
        if let Some(rest) = cand.rest {
            out.items(region).push(Item::Text(rest));
        }
    }
    out
}

/// Is `line` a heading in the body or appendix?
fn accept_heading(line: &str, prev: Option<&Item>, region: Region) -> Option<Candidate> {
    let cand = parse_candidate(line)?;
    let ok = match cand.label {
        Label::Bare | Label::AppendixWord => true,
        Label::Number(_) => heading_title_ok(&cand.title, false) && !continues_sentence(prev),
        Label::Roman => {
            heading_title_ok(&cand.title, false)
                && roman_title_ok(&cand.title)
                && !continues_sentence(prev)
        }
        // In the body only "A. Setup" (IEEE subsections); in the appendix
        // also "A Proofs".
        Label::Letter { dotted, .. } => {
            heading_title_ok(&cand.title, true) && (dotted || region == Region::Appendix)
        }
    };
    ok.then_some(cand)
}

/// Does a heading begin a new entry in `sections`?
fn is_top(cand: &Candidate, region: Region) -> bool {
    let canonical = !cand.key().starts_with("other:");
    match cand.label {
        Label::Bare | Label::AppendixWord | Label::Roman => true,
        Label::Number(depth) => depth == 1 || canonical,
        Label::Letter { depth, .. } => (region == Region::Appendix && depth == 1) || canonical,
    }
}

fn heading(line: &str, cand: &Candidate, starts_section: bool) -> Heading {
    let text = if cand.rest.is_some() {
        cand.title.clone()
    } else {
        line.to_string()
    };
    Heading {
        text,
        key: cand.key(),
        starts_section,
    }
}

/// The heading that ends the references, if `line` is one (see
/// [`split_regions`]). `next` holds the next two non-blank lines: a reference wraps over
/// several, and its year may be on the second.
fn references_exit(line: &str, next: &[&str]) -> Option<Heading> {
    let cand = parse_candidate(line)?;
    let next_is_ref = next.iter().any(|n| REF_LIKE.is_match(n));
    let exits = match cand.label {
        _ if cand.is_references() => false,
        Label::AppendixWord | Label::Bare => true,
        _ if cand.is_appendix() => true,
        Label::Letter { depth: 1, .. } => {
            heading_title_ok(&cand.title, true) && !next_is_ref && !REF_LIKE.is_match(line)
        }
        Label::Number(1) => {
            !cand.key().starts_with("other:")
                && heading_title_ok(&cand.title, false)
                && !next_is_ref
        }
        _ => false,
    };
    exits.then(|| heading(line, &cand, true))
}

// ---------------------------------------------------------------------------
// Re-flow

/// Words and hyphenated compounds seen inside lines, to decide whether a
/// hyphen at a line end is a real one.
#[derive(Debug, Default)]
struct Vocabulary {
    words: HashSet<String>,
    compounds: HashSet<String>,
}

impl Vocabulary {
    fn from_lines(lines: &[String]) -> Vocabulary {
        let mut v = Vocabulary::default();
        for line in lines {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            // The last token of a line may end in a break hyphen: skip it.
            let inner = tokens.len().saturating_sub(1);
            for token in &tokens[..inner] {
                let word = token
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase();
                if word.contains('-') {
                    v.compounds.insert(word);
                } else if !word.is_empty() {
                    v.words.insert(word);
                }
            }
        }
        v
    }

    /// Keep the hyphen of "prefix-\nnext"? Yes when the prefix is already a
    /// compound ("state-of-the-\nart": TeX never breaks a word inside a
    /// hyphenated compound) or a single letter ("k-\nmeans": TeX leaves at
    /// least two letters before a break); no when the document spells the
    /// joined word elsewhere; yes when it spells the hyphenated compound
    /// elsewhere or the prefix is one of [`HYPHEN_PREFIXES`]; otherwise
    /// no — a hyphen at a line end before a lower-case word is a break.
    fn keep_hyphen(&self, prefix: &str, next: &str) -> bool {
        let p = prefix.to_lowercase();
        let n = next.to_lowercase();
        if p.contains('-') || p.chars().count() == 1 {
            return true;
        }
        if self.words.contains(&format!("{p}{n}")) {
            return false;
        }
        self.compounds.contains(&format!("{p}-{n}")) || HYPHEN_PREFIXES.contains(&p.as_str())
    }
}

/// A line-level item turned into a paragraph-level one.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Heading(Heading),
    Para(String),
}

/// Join lines into paragraphs: a blank line or a heading ends one —
/// except that a blank line inside a sentence is a column or page jump
/// (the extractor leaves one there), not a paragraph break (see
/// [`continues_across_gap`]).
fn reflow(items: &[Item], vocab: &Vocabulary) -> Vec<Block> {
    let mut out = Vec::new();
    let mut para = String::new();
    let mut gap = false;
    for item in items {
        match item {
            Item::Blank => gap = !para.is_empty(),
            Item::Heading(h) => {
                flush(&mut para, &mut out);
                out.push(Block::Heading(h.clone()));
                gap = false;
            }
            Item::Text(t) => {
                if gap && !continues_across_gap(&para, t) {
                    flush(&mut para, &mut out);
                }
                if para.is_empty() {
                    para.push_str(t);
                } else {
                    join_line(&mut para, t, vocab);
                }
                gap = false;
            }
        }
    }
    flush(&mut para, &mut out);
    out
}

/// Does `next` continue `para` across a blank line? Yes when `para` ends
/// in a hyphenated break ("effi-" / soft hyphen) or mid-sentence (a letter
/// or comma) and `next` starts in lower case.
fn continues_across_gap(para: &str, next: &str) -> bool {
    let lower_next = next.chars().next().is_some_and(char::is_lowercase);
    let mut tail = para.chars().rev();
    let open = match (tail.next(), tail.next()) {
        (Some(SOFT_HYPHEN), _) => true,
        (Some('-'), Some(c)) => c.is_alphabetic(),
        (Some(c), _) => c.is_alphabetic() || c == ',',
        (None, _) => false,
    };
    open && lower_next
}

fn flush(para: &mut String, out: &mut Vec<Block>) {
    let text = para.trim().trim_end_matches(SOFT_HYPHEN).to_string();
    if !text.is_empty() {
        out.push(Block::Para(text));
    }
    para.clear();
}

/// Append `next` to a paragraph, joining a hyphenated line break: a soft
/// hyphen always joins; a hard hyphen after a letter joins when the next
/// line starts in lower case and [`Vocabulary::keep_hyphen`] says it is not
/// a real hyphen; before a capital or digit ("GPT-\n4") it is kept.
fn join_line(para: &mut String, next: &str, vocab: &Vocabulary) {
    if para.ends_with(SOFT_HYPHEN) {
        para.pop();
        para.push_str(next);
        return;
    }
    let before_hyphen = para.strip_suffix('-').unwrap_or("");
    let hyphen = !before_hyphen.is_empty()
        && before_hyphen
            .chars()
            .last()
            .is_some_and(char::is_alphabetic);
    if !hyphen {
        para.push(' ');
        para.push_str(next);
        return;
    }
    let prefix = before_hyphen
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("")
        .trim_start_matches(|c: char| !c.is_alphanumeric());
    let next_word: String = next
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '-')
        .collect();
    let lower = next.chars().next().is_some_and(char::is_lowercase);
    if lower && !vocab.keep_hyphen(prefix, next_word.trim_end_matches('-')) {
        para.pop();
    }
    para.push_str(next);
}

fn render_blocks(blocks: &[Block]) -> String {
    blocks
        .iter()
        .map(|b| match b {
            Block::Heading(h) => h.text.as_str(),
            Block::Para(p) => p.as_str(),
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

// ---------------------------------------------------------------------------
// Sections

/// Group body blocks under their canonical section names. Text before the
/// first section heading (title, authors) belongs to no section, except
/// that without an "Abstract" heading its last long paragraph is taken as
/// the abstract. Sections left empty are dropped; a name that recurs
/// appends to its first entry.
fn build_sections(blocks: &[Block]) -> IndexMap<String, String> {
    let mut preamble: Vec<&str> = Vec::new();
    let mut sections: IndexMap<String, Vec<&str>> = IndexMap::new();
    let mut current: Option<String> = None;
    for block in blocks {
        let text = match block {
            Block::Heading(h) if h.starts_section => {
                sections.entry(h.key.clone()).or_default();
                current = Some(h.key.clone());
                continue;
            }
            Block::Heading(h) => h.text.as_str(),
            Block::Para(p) => p.as_str(),
        };
        match current.as_ref().and_then(|k| sections.get_mut(k)) {
            Some(paras) => paras.push(text),
            None => preamble.push(text),
        }
    }
    if !sections.contains_key("abstract") {
        let long = preamble
            .iter()
            .rev()
            .find(|p| p.split_whitespace().count() >= MIN_ABSTRACT_WORDS);
        if let Some(abs) = long {
            sections.shift_insert(0, "abstract".to_string(), vec![abs]);
        }
    }
    sections
        .into_iter()
        .filter(|(_, paras)| !paras.is_empty())
        .map(|(k, paras)| (k, paras.join("\n\n")))
        .collect()
}

// ---------------------------------------------------------------------------
// References

/// Count reference entries. Numbered styles win when present: line-initial
/// markers "[12]" (or else "12.") are followed as a sequence from 1,
/// tolerating up to two missing numbers, so stray numbers (volumes, years)
/// do not count; bracketed markers that do not start at 1 are counted as
/// distinct numbers. Otherwise author-year entries are counted (see
/// `count_author_year`).
pub fn count_references(lines: &[String]) -> usize {
    let bracketed = line_markers(&BRACKET_ENTRY, lines);
    let chain = numbered_chain(&bracketed);
    if chain >= 2 {
        return chain;
    }
    if !bracketed.is_empty() {
        return bracketed.iter().collect::<HashSet<_>>().len();
    }
    let dotted = numbered_chain(&line_markers(&DOTTED_ENTRY, lines));
    if dotted >= 2 {
        return dotted;
    }
    count_author_year(lines)
}

/// The numbers `pattern` captures at the start of lines, in order.
fn line_markers(pattern: &Regex, lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| pattern.captures(l))
        .filter_map(|c| c[1].parse().ok())
        .collect()
}

/// Length of the run 1, 2, 3, ... in `markers` (in order), allowing gaps
/// of up to two numbers; the highest number reached.
fn numbered_chain(markers: &[u32]) -> usize {
    let mut expected = 1u32;
    for &n in markers {
        if n >= expected && n <= expected + 2 {
            expected = n + 1;
        }
    }
    (expected - 1) as usize
}

/// Author-year entries: a line starts an entry when the previous line
/// closed one (ended with a period that is not an initial or abbreviation,
/// or with a URL) and it begins like an author list — "Surname, I.",
/// "First Last, First Last", "First Last and ...", "Surname et al.",
/// "Surname AB," or "Name. 2020" — and not with a publisher. An entry only
/// counts if it contains a year, which also absorbs false starts (a
/// wrapped title line) into the previous entry.
fn count_author_year(lines: &[String]) -> usize {
    let mut entries: Vec<String> = Vec::new();
    let mut prev: Option<&str> = None;
    for line in lines {
        let starts = prev.is_none_or(closes_entry) && starts_author_list(line);
        match entries.last_mut() {
            Some(last) if !starts => {
                last.push(' ');
                last.push_str(line);
            }
            _ => entries.push(line.clone()),
        }
        prev = Some(line);
    }
    let counted: Vec<bool> = entries.iter().map(|e| YEAR.is_match(e)).collect();
    counted.iter().filter(|&&c| c).count()
}

fn starts_author_list(line: &str) -> bool {
    const PUBLISHERS: [&str; 14] = [
        "Springer",
        "Elsevier",
        "Cambridge",
        "Oxford",
        "Curran",
        "IEEE",
        "ACM",
        "PMLR",
        "Morgan",
        "Wiley",
        "Association",
        "OpenReview",
        "MIT",
        "Princeton",
    ];
    let first = line.split([' ', ',']).next().unwrap_or("");
    AUTHOR_START.is_match(line) && !PUBLISHERS.contains(&first)
}

/// Does a references line end an entry?
fn closes_entry(line: &str) -> bool {
    const ABBREVIATIONS: [&str; 14] = [
        "al.", "proc.", "conf.", "vol.", "pp.", "adv.", "int.", "eds.", "ed.", "no.", "trans.",
        "j.", "intl.", "symp.",
    ];
    let last = line.split_whitespace().last().unwrap_or("");
    if last.starts_with("http") || last.starts_with("doi:") || last.starts_with("www.") {
        return true;
    }
    let initial = last.chars().count() <= 4
        && last.chars().any(char::is_uppercase)
        && last
            .chars()
            .all(|c| c.is_uppercase() || c == '.' || c == '-');
    last.ends_with('.') && !initial && !ABBREVIATIONS.contains(&last.to_lowercase().as_str())
}

// ---------------------------------------------------------------------------
// Budgets

/// Cut `text` to at most `max` characters at a paragraph boundary, ending
/// with [`CUT_MARK`]. `max == 0` means no limit.
fn cap_text(text: &str, max: usize) -> String {
    if max == 0 || text.chars().count() <= max {
        return text.to_string();
    }
    let mark = CUT_MARK.chars().count() + 2;
    let mut out = String::new();
    let mut used = 0;
    for para in text.split("\n\n") {
        let cost = para.chars().count() + 2;
        if used + cost + mark > max {
            break;
        }
        out.push_str(para);
        out.push_str("\n\n");
        used += cost;
    }
    if used == 0 {
        out = cut_sentence(text, max.saturating_sub(mark));
        if !out.is_empty() {
            out.push_str("\n\n");
        }
    }
    out.push_str(CUT_MARK);
    out
}

/// The longest prefix of `para` of at most `max` characters that ends a
/// sentence, else ends a word; empty when not even a word fits.
fn cut_sentence(para: &str, max: usize) -> String {
    let prefix: String = para.chars().take(max).collect();
    if prefix.chars().count() == para.chars().count() {
        return prefix;
    }
    if let Some(i) = prefix.rfind(". ") {
        return prefix[..=i].to_string();
    }
    match prefix.rfind(char::is_whitespace) {
        Some(i) => prefix[..i].to_string(),
        None => String::new(),
    }
}

/// Sections a prompt needs most, in priority order.
const PRIORITY: [&str; 5] = [
    "abstract",
    "introduction",
    "method",
    "results",
    "conclusion",
];

/// One section as the prompt sees it.
#[derive(Debug)]
struct Part<'a> {
    /// Canonical section name ("" for the whole body).
    key: &'a str,
    heading: String,
    paras: Vec<&'a str>,
    /// Whole paragraphs kept.
    kept: usize,
    /// A sentence-cut first paragraph, when not even one whole fitted.
    partial: Option<String>,
}

impl Part<'_> {
    fn heading_cost(&self) -> usize {
        self.heading.chars().count() + 2
    }

    fn full_cost(&self) -> usize {
        self.heading_cost()
            + self
                .paras
                .iter()
                .map(|p| p.chars().count() + 2)
                .sum::<usize>()
    }

    fn is_whole(&self) -> bool {
        self.kept == self.paras.len()
    }

    fn is_empty(&self) -> bool {
        self.kept == 0 && self.partial.is_none()
    }

    /// Keep as many leading paragraphs as fit in `allowance` characters,
    /// not ending on a subsection heading; if none fits, the first
    /// paragraph cut at a sentence end (or, when `word_cut`, at a word).
    /// Returns the characters used.
    fn fill(&mut self, allowance: usize, word_cut: bool) -> usize {
        if self.full_cost() <= allowance {
            self.kept = self.paras.len();
            return self.full_cost();
        }
        let mut used = self.heading_cost();
        if used >= allowance {
            return 0;
        }
        for para in &self.paras {
            let cost = para.chars().count() + 2;
            if used + cost > allowance {
                break;
            }
            used += cost;
            self.kept += 1;
        }
        while self.kept > 0 && is_heading_like(self.paras[self.kept - 1]) {
            self.kept -= 1;
            used -= self.paras[self.kept].chars().count() + 2;
        }
        if self.kept > 0 {
            return used;
        }
        let first = self.paras.first().copied().unwrap_or("");
        let cut = cut_sentence(first, allowance.saturating_sub(used + 2));
        if cut.chars().count() < 40 || !(word_cut || cut.ends_with('.')) {
            return 0;
        }
        used += cut.chars().count() + 2;
        self.partial = Some(cut);
        used
    }
}

/// A subsection heading kept inside a section's text: short, no full stop.
fn is_heading_like(para: &str) -> bool {
    para.chars().count() < MAX_HEADING_CHARS && !para.contains(". ") && !para.ends_with('.')
}

/// Trim a cleaned paper to about `token_budget` tokens for a prompt.
///
/// Everything fits → every section in order. Otherwise the priority
/// sections (abstract, introduction, method, results, conclusion) share the
/// budget first by water-filling — smallest first, each up to an equal
/// share of what is left, so one long section cannot starve the others —
/// then the other sections take what remains in document order. Sections
/// are cut at paragraph boundaries (a sentence boundary when not even one
/// paragraph fits, or for a priority section a word boundary) and never
/// end on a subsection heading; every cut or left-out run is marked with
/// [`CUT_MARK`]. The output stays in document order and within
/// `token_budget * 4` characters. Without detected sections the body is
/// trimmed as one.
pub fn trim_for_prompt(c: &Cleaned, token_budget: usize) -> String {
    let budget = token_budget.saturating_mul(CHARS_PER_TOKEN);
    if budget == 0 {
        return String::new();
    }
    let title = c
        .title_guess
        .as_ref()
        .map(|t| format!("Title: {t}"))
        .filter(|t| t.chars().count() + 2 <= budget / 4);
    let mut parts = prompt_parts(c);
    let mark = CUT_MARK.chars().count() + 2;
    let title_cost = title.as_ref().map_or(0, |t| t.chars().count() + 2);
    let full: usize = parts.iter().map(Part::full_cost).sum::<usize>() + title_cost;
    if full <= budget {
        parts.iter_mut().for_each(|p| p.kept = p.paras.len());
    } else {
        let reserve = title_cost + mark * (parts.len() + 1);
        allocate(&mut parts, budget.saturating_sub(reserve));
    }
    let out = render_parts(title.as_deref(), &parts);
    cap_text(&out, budget)
}

fn prompt_parts(c: &Cleaned) -> Vec<Part<'_>> {
    if c.sections.is_empty() {
        return vec![Part::new("", String::new(), &c.paper_text)];
    }
    c.sections
        .iter()
        .map(|(key, text)| Part::new(key, format!("## {}", display_name(key)), text))
        .collect()
}

impl<'a> Part<'a> {
    fn new(key: &'a str, heading: String, text: &'a str) -> Part<'a> {
        Part {
            key,
            heading,
            paras: text
                .split("\n\n")
                .filter(|p| !p.trim().is_empty())
                .collect(),
            kept: 0,
            partial: None,
        }
    }
}

/// Water-fill the priority sections, then the rest in order.
fn allocate(parts: &mut [Part<'_>], budget: usize) {
    let is_priority = |p: &Part<'_>| PRIORITY.contains(&p.key);
    let mut priority: Vec<usize> = (0..parts.len())
        .filter(|&i| is_priority(&parts[i]))
        .collect();
    priority.sort_by_key(|&i| parts[i].full_cost());
    let mut left = budget;
    for (n, &i) in priority.iter().enumerate() {
        let share = left / (priority.len() - n);
        left -= parts[i].fill(share, true);
    }
    for part in parts.iter_mut().filter(|p| !is_priority(p)) {
        left -= part.fill(left, false);
    }
}

fn render_parts(title: Option<&str>, parts: &[Part<'_>]) -> String {
    let mut chunks: Vec<String> = title.map(str::to_string).into_iter().collect();
    let mut marked = false;
    for part in parts.iter().filter(|p| !p.paras.is_empty()) {
        if part.is_empty() {
            if !marked {
                chunks.push(CUT_MARK.to_string());
                marked = true;
            }
            continue;
        }
        if !part.heading.is_empty() {
            chunks.push(part.heading.clone());
        }
        chunks.extend(part.paras[..part.kept].iter().map(|p| p.to_string()));
        if let Some(cut) = &part.partial {
            chunks.push(cut.clone());
        }
        marked = !part.is_whole();
        if marked {
            chunks.push(CUT_MARK.to_string());
        }
    }
    chunks.join("\n\n")
}

/// "related_work" → "Related work", "other:limitations" → "Limitations".
fn display_name(key: &str) -> String {
    let name = key.strip_prefix("other:").unwrap_or(key).replace('_', " ");
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    fn clean(pages: &[&str]) -> Cleaned {
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

    #[test]
    fn hyphenated_line_breaks_join_but_compounds_stay() {
        let c =
            clean(&["An effi-\ncient and state-of-the-\nart method uses GPT-\n4 and k-\nmeans."]);
        assert_eq!(
            c.paper_text,
            "An efficient and state-of-the-art method uses GPT-4 and k-means."
        );
    }

    #[test]
    fn a_compound_seen_elsewhere_keeps_its_hyphen() {
        let c = clean(&["We use pre-training here. Our pre-\ntraining and pro-\ncessing work."]);
        assert_eq!(
            c.paper_text,
            "We use pre-training here. Our pre-training and processing work."
        );
    }

    #[test]
    fn a_hyphen_continues_across_a_page_break() {
        let c = clean(&["It is effi-", "cient."]);
        assert_eq!(c.paper_text, "It is efficient.");
    }

    #[test]
    fn a_blank_line_inside_a_sentence_is_a_column_jump() {
        let c = clean(&["It is effi-\n\ncient and\n\nfast.\n\nNew paragraph.\n\nAnother one,\n\nBut this starts anew."]);
        assert_eq!(
            c.paper_text,
            "It is efficient and fast.\n\nNew paragraph.\n\nAnother one,\n\nBut this starts anew."
        );
    }

    #[test]
    fn lines_reflow_into_paragraphs_and_headings_stand_alone() {
        let c = clean(&["Para one\ncontinues.\n\nPara two.\n1 Introduction\nIntro text\nmore."]);
        assert_eq!(
            c.paper_text,
            "Para one continues.\n\nPara two.\n\n1 Introduction\n\nIntro text more."
        );
    }

    #[test]
    fn heading_styles_are_detected() {
        for (line, key) in [
            ("1 Introduction", "introduction"),
            ("2.1 Method", "method"),
            ("3. Experimental Setup", "experiments"),
            ("III. RESULTS", "results"),
            ("IV. Discussion", "discussion"),
            ("ABSTRACT", "abstract"),
            ("Related Work", "related_work"),
            ("5 Conclusions and Future Work", "conclusion"),
            ("2 Preliminaries", "background"),
            ("4 Scaling Laws", "other:scaling laws"),
        ] {
            let cand = accept_heading(line, None, Region::Body);
            assert_eq!(cand.map(|c| c.key()), Some(key.to_string()), "{line}");
        }
        for line in [
            "3 layers were used in total.",
            "A new method is proposed",
            "V. Shazeer",
            "12 We show that it works",
            "2019. Attention is all you need",
        ] {
            let cand = accept_heading(line, None, Region::Body);
            assert!(cand.is_none_or(|c| c.label == Label::Bare), "{line}");
        }
    }

    #[test]
    fn a_numbered_line_continuing_a_sentence_is_not_a_heading() {
        let prev = Item::Text("as shown in Section".into());
        assert!(accept_heading("3 Results", Some(&prev), Region::Body).is_none());
    }

    #[test]
    fn lettered_headings_need_context() {
        assert!(accept_heading("A Proofs", None, Region::Body).is_none());
        assert!(accept_heading("A. Network Architecture", None, Region::Body).is_some());
        assert!(accept_heading("A Proofs", None, Region::Appendix).is_some());
        assert!(accept_heading("B.1 Extra Results", None, Region::Appendix).is_some());
        assert!(accept_heading("A. Vaswani and N. Shazeer", None, Region::Body).is_none());
    }

    #[test]
    fn sections_map_in_document_order_with_subsections_inline() {
        let c = clean(&["Abstract\nWe do things.\n1 Introduction\nIntro.\n2 Our Model\nModel text.\n2.1 Encoder\nEnc text.\n3 Experiments\nSetup.\n3.2 Main Results\nNumbers.\n4 Limitations\nSome.\n5 Conclusion\nDone."]);
        let keys: Vec<&str> = c.sections.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "abstract",
                "introduction",
                "method",
                "experiments",
                "results",
                "other:limitations",
                "conclusion"
            ]
        );
        assert_eq!(
            c.sections["method"],
            "Model text.\n\n2.1 Encoder\n\nEnc text."
        );
        assert_eq!(c.sections["abstract"], "We do things.");
    }

    #[test]
    fn inline_and_spaced_abstract_headings() {
        let c = clean(&["Abstract—We propose X.\n1 Introduction\nHi."]);
        assert_eq!(c.sections["abstract"], "We propose X.");
        let c = clean(&["A B S T R A C T\nWe propose Y.\n1 Introduction\nHi."]);
        assert_eq!(c.sections["abstract"], "We propose Y.");
    }

    #[test]
    fn a_long_first_paragraph_is_the_abstract_when_unlabelled() {
        let abs = "word ".repeat(50);
        let c = clean(&[&format!("My Title\n\n{abs}\n1 Introduction\nHi.")]);
        assert_eq!(
            c.sections.keys().next().map(String::as_str),
            Some("abstract")
        );
    }

    #[test]
    fn references_are_split_and_bracket_entries_counted() {
        let c = clean(&["1 Introduction\nText [1].\nReferences\n[1] A. Author. Title. 2020.\n[2] B. Author. Another\ntitle. 2021.\n[3]\nC. Author. Third. 2019."]);
        assert_eq!(c.reference_count, 3);
        assert!(!c.paper_text.contains("Author"));
    }

    #[test]
    fn dotted_entries_are_counted_in_sequence() {
        let refs = lines("1. Smith, J. A paper. 2020.\nvolume\n33. Nonsense line\n2. Doe, J. Another. 2019.\n3. Roe, R. Third. 2018.");
        assert_eq!(count_references(&refs), 3);
    }

    #[test]
    fn author_year_entries_are_counted() {
        let refs = lines(
            "Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion\n\
             Jones, Aidan N. Gomez, Łukasz Kaiser, and Illia Polosukhin. 2017.\n\
             Attention is all you need. In Advances in Neural Information\n\
             Processing Systems, pages 5998–6008.\n\
             Brown, T. B., Mann, B., and Ryder, N. (2020). Language models are\n\
             few-shot learners. NeurIPS.\n\
             van den Oord, A., Li, Y., and Vinyals, O. 2018. Representation\n\
             learning with contrastive predictive coding.\n\
             Alex Krizhevsky. 2009. Learning multiple layers of features.\n\
             Springer, Berlin, 2020.\n\
             Kaplan et al. 2020. Scaling laws for neural language models.\n\
             OpenAI. 2023. GPT-4 technical report. https://arxiv.org/abs/2303.08774\n\
             Smith AB, Jones CD (2019) A Vancouver entry. Nature 5:1–2.",
        );
        assert_eq!(count_references(&refs), 7);
    }

    #[test]
    fn appendix_after_references_is_split() {
        let c = clean(&["1 Introduction\nBody.\nReferences\n[1] A. Author. Title. 2020.\n[2] B. Author. Title. 2021.\nA Proofs\nProof of the theorem.\nB. Extra Experiments\nMore."]);
        assert_eq!(c.reference_count, 2);
        assert_eq!(
            c.appendix_text,
            "A Proofs\n\nProof of the theorem.\n\nB. Extra Experiments\n\nMore."
        );
        assert_eq!(c.paper_text, "1 Introduction\n\nBody.");
    }

    #[test]
    fn a_wrapped_reference_title_is_not_an_appendix() {
        let c = clean(&["References\n[1] W. Zhao et al.\nA Survey of Large Language Models\narXiv preprint arXiv:2303.18223, 2023.\n[2] B. Author. Title. 2021."]);
        assert_eq!(c.reference_count, 2);
        assert!(c.appendix_text.is_empty());
    }

    #[test]
    fn appendix_heading_in_the_body_starts_the_appendix() {
        let c =
            clean(&["1 Introduction\nBody.\nAppendix A: Proofs\nProof.\nReferences\n[1] X. 2020."]);
        assert_eq!(c.paper_text, "1 Introduction\n\nBody.");
        assert_eq!(c.appendix_text, "Appendix A: Proofs\n\nProof.");
        assert_eq!(c.reference_count, 1);
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
    fn a_reference_starting_with_an_initial_is_not_an_appendix() {
        let c = clean(&["References\n[1]\nC. Conroy. Modeling the panchromatic spectral\n\nenergy distributions. ARA&A, 51:393,\n2013.\n[2]\nPlanck Collaboration. Planck results. 2020.\nAppendix A: Extra\nMore."]);
        assert_eq!(c.reference_count, 2);
        assert!(c.appendix_text.starts_with("Appendix A: Extra"));
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

    fn sample() -> Cleaned {
        let mut sections = IndexMap::new();
        for (k, n) in [
            ("abstract", 2),
            ("introduction", 8),
            ("related_work", 8),
            ("method", 8),
            ("experiments", 8),
            ("results", 8),
            ("conclusion", 2),
        ] {
            let paras: Vec<String> = (0..n)
                .map(|i| format!("{k} paragraph {i}. {}", "filler text ".repeat(30)))
                .collect();
            sections.insert(k.to_string(), paras.join("\n\n"));
        }
        Cleaned {
            title_guess: Some("T".into()),
            paper_text: String::new(),
            sections,
            reference_count: 0,
            appendix_text: String::new(),
            pages: 1,
        }
    }

    #[test]
    fn trim_keeps_everything_when_it_fits() {
        let c = sample();
        let out = trim_for_prompt(&c, 1_000_000);
        assert!(!out.contains(CUT_MARK));
        assert!(out.contains("related_work paragraph 7"));
    }

    #[test]
    fn trim_prefers_priority_sections_and_stays_in_budget() {
        let c = sample();
        let out = trim_for_prompt(&c, 1500);
        assert!(out.chars().count() <= 6000);
        for k in PRIORITY {
            assert!(out.contains(&format!("{k} paragraph 0")), "{k} missing");
        }
        assert!(out.contains("conclusion paragraph 1"));
        assert!(!out.contains("related_work paragraph 1"));
        assert!(out.contains(CUT_MARK));
        let intro = out.find("## Introduction").unwrap_or(usize::MAX);
        let method = out.find("## Method").unwrap_or(0);
        assert!(intro < method, "document order kept");
    }

    #[test]
    fn trim_cuts_a_giant_paragraph_at_a_sentence() {
        let mut c = sample();
        c.sections = IndexMap::from([("abstract".to_string(), "One sentence here. ".repeat(500))]);
        let out = trim_for_prompt(&c, 200);
        assert!(out.chars().count() <= 800);
        assert!(out.contains("## Abstract\n\nOne sentence here."));
        assert!(out.ends_with(CUT_MARK));
    }

    #[test]
    fn trim_without_sections_uses_the_body() {
        let c = clean(&[&"Plain words here. ".repeat(10)]);
        assert!(c.sections.is_empty());
        let out = trim_for_prompt(&c, 10_000);
        assert!(out.starts_with("Plain words here."));
    }

    #[test]
    fn empty_input_is_empty() {
        let c = clean(&[]);
        assert_eq!(c.pages, 0);
        assert!(c.paper_text.is_empty());
        assert_eq!(trim_for_prompt(&c, 100), "");
    }
}
