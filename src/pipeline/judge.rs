//! Normalising a judge model's free-text answer: the verdict, and which
//! report sections it wants repaired.
//!
//! Judges wrap verdicts in markdown, prose and other casing; anything that
//! cannot be read is REPAIR, so an unreadable judge never passes a report
//! and never fails one outright.

use super::report::REQUIRED_SECTIONS;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// A judge's decision on a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    /// The default: a verdict we cannot read is worth another look.
    #[default]
    Repair,
    Fail,
}

impl Verdict {
    /// "PASS", "REPAIR" or "FAIL".
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Repair => "REPAIR",
            Verdict::Fail => "FAIL",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = String;

    /// Exactly one verdict word, any case.
    fn from_str(s: &str) -> Result<Verdict, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PASS" => Ok(Verdict::Pass),
            "REPAIR" => Ok(Verdict::Repair),
            "FAIL" => Ok(Verdict::Fail),
            _ => Err(format!("not a verdict: '{s}'")),
        }
    }
}

/// A verdict word between non-letters. Not `\b`: that counts `_` as a
/// letter and would miss markdown italics like `_PASS_`.
static VERDICT_WORD: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: compiling it cannot fail.
    Regex::new(r"(?i)(?:^|[^\p{L}\p{N}])(pass|repair|fail)(?:$|[^\p{L}\p{N}])")
        .expect("constant regex")
});

/// A line that labels a list of sections: "Missing: A, B",
/// "REPAIR: Limitations", "Sections to improve - X".
static LABELLED_LIST: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: compiling it cannot fail.
    Regex::new(
        r"(?i)^(?:missing|weak|incomplete|empty|thin|insufficient|repair|fix|improve|expand|add|targets?|repair\s+targets?|needs?\s+(?:work|repair|improvement|expansion)|(?:sections?\s+)?(?:to|that\s+need\s+to\s+be|needing)\s+(?:repair|fix|improve|expand|add)(?:ed|ing)?)(?:\s+sections?)?\s*[:\-–—]\s*(.+)$",
    )
    .expect("constant regex")
});

/// A line that names one section and then its problem: "Key Results:
/// missing", "The Limitations section is too thin".
static SECTION_STATUS: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: compiling it cannot fail.
    Regex::new(
        r"(?i)^(?:the\s+)?(.{2,60}?)(?:\s+sections?)?\s*(?:[:\-–—]|\s(?:is|are|was|seems|looks))\s*(?:(?:still|too|very|quite|rather|largely|completely|entirely)\s+)?(?:missing|absent|empty|weak|thin|incomplete|short|a\s+placeholder|placeholder|lacking|insufficient|vague|generic|shallow|unsupported)\b",
    )
    .expect("constant regex")
});

/// The verdict: the first PASS, REPAIR or FAIL in the text (any case,
/// as a whole word, also inside markdown such as `**PASS**` or
/// `Verdict: pass`); REPAIR when there is none.
pub fn normalize_judge(text: &str) -> Verdict {
    VERDICT_WORD
        .captures(text)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_default()
}

/// Section names the judge says are missing or weak, in order, without
/// duplicates. Heuristic, line by line after stripping markdown (bullets,
/// `#`, `**`, backticks):
/// - a labelled list, "Missing: Key Results, Limitations" or
///   "REPAIR: Limitations and Next Checks" — the items after the label;
/// - a section and its problem, "- Key Results: missing" or "The
///   Limitations section is too thin" — the section.
///
/// An item must look like a heading (at most six words, starting with a
/// capital) or name a required report section; explanations after " - ",
/// " — " or ": " are dropped; names of required sections are returned in
/// their canonical spelling ("why this works" → "Why This Works
/// (Mechanism)") so they match the report checker's.
pub fn repair_targets(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        for item in line_targets(&strip_markdown(line)) {
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    out
}

/// The targets one (markdown-free) line names.
fn line_targets(line: &str) -> Vec<String> {
    if let Some(c) = LABELLED_LIST.captures(line) {
        return split_items(&c[1]).filter_map(section_name).collect();
    }
    if let Some(c) = SECTION_STATUS.captures(line) {
        return section_name(&c[1]).into_iter().collect();
    }
    Vec::new()
}

/// Drop list bullets, numbering, heading marks, quotes and emphasis.
fn strip_markdown(line: &str) -> String {
    let mut s = line.trim();
    loop {
        let before = s;
        s = s
            .trim_start_matches(['#', '>', '-', '*', '+', '•'])
            .trim_start();
        let digits = s.trim_start_matches(|c: char| c.is_ascii_digit());
        if digits.len() < s.len() && (digits.starts_with(". ") || digits.starts_with(") ")) {
            s = digits[1..].trim_start();
        }
        if s == before {
            break;
        }
    }
    s.replace("**", "").replace("__", "").replace('`', "")
}

/// Items of a list: split at commas, semicolons, "and", "&".
fn split_items(list: &str) -> impl Iterator<Item = &str> {
    list.split([',', ';'])
        .flat_map(|part| part.split(" and "))
        .flat_map(|part| part.split(" & "))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// The section an item names, if it looks like one.
fn section_name(item: &str) -> Option<String> {
    let mut name = item
        .trim()
        .trim_matches(['"', '\'', '*', '_', '“', '”'])
        .trim();
    for sep in [" - ", " — ", " – ", ": ", " because ", " (e.g."] {
        if let Some((head, _)) = name.split_once(sep) {
            name = head.trim();
        }
    }
    name = name.trim_end_matches(['.', ':', '!']).trim();
    name = strip_prefix_ci(name, "the ").unwrap_or(name);
    for suffix in [" sections", " section"] {
        name = strip_suffix_ci(name, suffix).unwrap_or(name);
    }
    if let Some(required) = required_section(name) {
        return Some(required.to_string());
    }
    let plain = name.split('(').next().unwrap_or(name).trim();
    let lower = plain.to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let looks_like_heading = (1..=6).contains(&words.len())
        && plain.chars().count() <= 60
        && plain.chars().next().is_some_and(char::is_uppercase)
        && !NOT_SECTIONS.contains(&lower.as_str())
        && !words.iter().any(|w| PREDICATE_WORDS.contains(w));
    looks_like_heading.then(|| plain.to_string())
}

/// Words a judge puts before a colon that are not sections.
const NOT_SECTIONS: [&str; 20] = [
    "none",
    "n/a",
    "na",
    "nothing",
    "no",
    "overall",
    "verdict",
    "decision",
    "score",
    "rating",
    "status",
    "reason",
    "reasoning",
    "comment",
    "comments",
    "feedback",
    "note",
    "notes",
    "evidence",
    "report",
];

/// Words that make an item a sentence ("Key results have no numbers"),
/// not a section name.
const PREDICATE_WORDS: [&str; 16] = [
    "is", "are", "was", "has", "have", "lacks", "lack", "needs", "need", "no", "not", "should",
    "must", "does", "do", "contains",
];

/// `s` without a leading `prefix`, ignoring ASCII case.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// `s` without a trailing `suffix`, ignoring ASCII case.
fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let tail = s.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix)
        .then(|| s.get(..cut).map(str::trim_end))
        .flatten()
}

/// The required report section `name` refers to: the same words (case,
/// punctuation and a parenthetical ignored), the start of its name ("Why
/// This Works"), or a phrase that starts with its name ("Key Results lack
/// numbers").
fn required_section(name: &str) -> Option<&'static str> {
    let key = section_key(name);
    if key.chars().count() < 4 {
        return None;
    }
    REQUIRED_SECTIONS
        .iter()
        .find(|r| section_key(r) == key)
        .or_else(|| {
            REQUIRED_SECTIONS
                .iter()
                .find(|r| section_key(r).starts_with(&format!("{key} ")))
        })
        .or_else(|| {
            REQUIRED_SECTIONS
                .iter()
                .find(|r| key.starts_with(&format!("{} ", section_key(r))))
        })
        .copied()
}

/// "Why This Works (Mechanism)" → "why this works".
fn section_key(name: &str) -> String {
    let head = name.split('(').next().unwrap_or(name);
    head.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_verdict_word_wins() {
        assert_eq!(normalize_judge("PASS"), Verdict::Pass);
        assert_eq!(
            normalize_judge("**FAIL** — the report is empty"),
            Verdict::Fail
        );
        assert_eq!(normalize_judge("Verdict: pass\nNo issues."), Verdict::Pass);
        assert_eq!(
            normalize_judge("_Repair_ then it could PASS"),
            Verdict::Repair
        );
        assert_eq!(normalize_judge("## Verdict\n\n`FAIL`"), Verdict::Fail);
        assert_eq!(normalize_judge("verdict:REPAIR"), Verdict::Repair);
    }

    #[test]
    fn verdict_words_must_stand_alone() {
        assert_eq!(
            normalize_judge("The report passed review; it failed nothing."),
            Verdict::Repair
        );
        assert_eq!(normalize_judge("compass failure PASSING"), Verdict::Repair);
        assert_eq!(normalize_judge("bypass, then FAIL"), Verdict::Fail);
    }

    #[test]
    fn no_verdict_means_repair() {
        assert_eq!(normalize_judge(""), Verdict::Repair);
        assert_eq!(normalize_judge("Looks fine to me."), Verdict::Repair);
    }

    #[test]
    fn verdicts_display_and_serialise_in_capitals() {
        assert_eq!(Verdict::Pass.to_string(), "PASS");
        assert_eq!(Verdict::Repair.to_string(), "REPAIR");
        assert_eq!(Verdict::Fail.to_string(), "FAIL");
        assert_eq!(serde_json::to_string(&Verdict::Fail).unwrap(), "\"FAIL\"");
        assert_eq!(
            serde_json::from_str::<Verdict>("\"PASS\"").unwrap(),
            Verdict::Pass
        );
        assert_eq!("repair".parse::<Verdict>(), Ok(Verdict::Repair));
        assert!("maybe".parse::<Verdict>().is_err());
    }

    #[test]
    fn labelled_lists_are_split() {
        assert_eq!(
            repair_targets("REPAIR: Limitations, Next Checks"),
            ["Limitations", "Next Checks"]
        );
        assert_eq!(
            repair_targets("Missing sections: key results and why this works"),
            ["Key Results", "Why This Works (Mechanism)"]
        );
        assert_eq!(
            repair_targets("**Sections to improve:** `Open Questions`; Confidence"),
            ["Open Questions", "Confidence"]
        );
    }

    #[test]
    fn bulleted_section_statuses_are_read() {
        let text = "Verdict: REPAIR\n\n- Missing: Key Results\n- Limitations: too thin — no failure cases\n* The Method Summary section is weak.\n1. Confidence - missing\n- Quick Facts: fine";
        assert_eq!(
            repair_targets(text),
            ["Key Results", "Limitations", "Method Summary", "Confidence"]
        );
    }

    #[test]
    fn prose_and_nothing_lists_give_no_targets() {
        assert!(repair_targets("Missing: none").is_empty());
        assert!(repair_targets("REPAIR - the report lacks numbers overall.").is_empty());
        assert!(repair_targets("PASS. Everything is present.").is_empty());
        assert!(repair_targets("").is_empty());
    }

    #[test]
    fn unknown_section_names_are_kept_when_heading_like() {
        assert_eq!(
            repair_targets("Weak: Related Work (too short)"),
            ["Related Work"]
        );
    }

    #[test]
    fn sentences_are_not_sections_unless_they_start_with_one() {
        assert_eq!(
            repair_targets("REPAIR — Key Results have no numbers"),
            ["Key Results"]
        );
        assert!(repair_targets("Fix: Numbers are missing everywhere").is_empty());
        assert!(repair_targets("Overall: weak, but salvageable").is_empty());
        assert!(repair_targets("İİİ: missing").len() <= 1);
    }

    #[test]
    fn targets_are_deduplicated_in_order() {
        let text = "Missing: Limitations\nLimitations: missing\nWeak: Next Checks, Limitations";
        assert_eq!(repair_targets(text), ["Limitations", "Next Checks"]);
    }
}
