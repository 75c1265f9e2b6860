//! Heading recognition: whether a line is a heading (numbered, Roman,
//! lettered, or a bare known name), and the canonical section key it maps to.
//!
//! Kept apart from [`super::regions`], which decides *where* a heading is
//! accepted; this file only answers "what would this line be as a heading".

use super::regions::Item;
use super::{re, MAX_HEADING_CHARS, YEAR};
use regex::Regex;
use std::sync::LazyLock;

pub(super) static INLINE_ABSTRACT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?i:abstract)\s*(?:[-—:.]|\s-)\s*(\S.*)$"));

pub(super) static APPENDIX_HEAD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?i:appendix|appendices|technical\s+appendix|supplementary\s+materials?|supplemental\s+materials?|supplementary\s+information)(?:\s+(?:[A-Z]|\d{1,2})(?:\.\d{1,2})*)?\s*[:.\-—]?\s*(.*)$",
    )
});

pub(super) static NUMBERED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+(\S.*)$"));

pub(super) static ROMAN: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(X{0,3}(?:IX|IV|V?I{0,3}))\.\s+(\S.*)$"));

pub(super) static LETTERED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([A-Z])((?:\.\d{1,2}){0,3})(\.?)\s+(\S.*)$"));

pub(super) static INITIAL: LazyLock<Regex> = LazyLock::new(|| re(r"(?:^|\s)\p{Lu}\.(?:\s|$|-)"));

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

/// How a heading line was numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Label {
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
pub(super) struct Candidate {
    pub(super) label: Label,
    /// The heading without its number, e.g. "Method".
    pub(super) title: String,
    /// Text after an inline heading ("Abstract—We ...").
    pub(super) rest: Option<String>,
}

impl Candidate {
    /// Section, references or appendix, from the title.
    pub(super) fn key(&self) -> String {
        if self.label == Label::AppendixWord {
            return APPENDIX_KEY.to_string();
        }
        canonical_key(&self.title)
    }

    pub(super) fn is_references(&self) -> bool {
        self.key() == REFERENCES_KEY
    }

    pub(super) fn is_appendix(&self) -> bool {
        self.key() == APPENDIX_KEY
    }
}

/// Parse a line shaped like a heading (without judging its context).
pub(super) fn parse_candidate(line: &str) -> Option<Candidate> {
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
pub(super) fn heading_title_ok(title: &str, strict: bool) -> bool {
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
pub(super) fn continues_sentence(prev: Option<&Item>) -> bool {
    let Some(Item::Text(text)) = prev else {
        return false;
    };
    let last = text.split_whitespace().last().unwrap_or("").to_lowercase();
    text.ends_with(',') || CONTINUATION_WORDS.contains(&last.as_str())
}

/// A Roman-numbered single word must be known or in capitals ("V. Smith"
/// is an author, "V. RESULTS" a heading).
pub(super) fn roman_title_ok(title: &str) -> bool {
    title.contains(' ')
        || known_heading(title).is_some()
        || title.chars().all(|c| !c.is_lowercase())
}

#[cfg(test)]
mod tests {
    use super::super::regions::{accept_heading, Item, Region};
    use super::*;

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
}
