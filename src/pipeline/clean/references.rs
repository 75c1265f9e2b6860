//! Counting entries in the references region: numbered (`[12]`, `12.`)
//! chains or author–year entries, whichever the list uses.
//!
//! A count only, so it is a separate concern from finding the region.

use super::{re, YEAR};
use regex::Regex;
use std::collections::HashSet;
use std::sync::LazyLock;

pub(super) static BRACKET_ENTRY: LazyLock<Regex> = LazyLock::new(|| re(r"^\[(\d{1,4})\]"));

pub(super) static DOTTED_ENTRY: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d{1,3})\.\s+\S"));

pub(super) static AUTHOR_START: LazyLock<Regex> = LazyLock::new(|| {
    // NAME: a capitalised name; INIT: initials; PART: name particles.
    let name = r"\p{Lu}[\p{L}'’\-]+";
    let init = r"\p{Lu}\.(?:\s?-?\p{Lu}\.)*";
    let part = r"(?:(?:van|von|de|der|den|da|di|du|la|le|del|della|dos|das|al|el|bin)\s+)*";
    re(&format!(
        r"^{part}(?:(?:{name}|{init})\s+){{0,3}}{name}(?:,\s*(?:{init}|{part}{name}|and\b|&)|\s+(?:and|&)\s+\p{{Lu}}|\.\s+\(?(?:1[89]|20)\d{{2}}|\s+et\s+al\b|\s+\p{{Lu}}{{1,3}}(?:,|\.|\s*\())"
    ))
});

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

#[cfg(test)]
mod tests {
    use super::super::tests::{clean, lines};
    use super::*;

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
}
