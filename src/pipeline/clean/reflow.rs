//! Step 4: re-flow lines into paragraphs and repair hyphenated line breaks.
//!
//! The [`Vocabulary`] of hyphenated words seen elsewhere in the paper decides
//! whether `self-\nattention` keeps its hyphen or `effi-\ncient` is joined.

use super::regions::{Heading, Item};
use super::SOFT_HYPHEN;
use std::collections::HashSet;

/// Prefixes that are practically always written with a hyphen, so a line
/// break after them is a real hyphen ("self-\nattention").
const HYPHEN_PREFIXES: [&str; 3] = ["self", "cross", "well"];

/// Words and hyphenated compounds seen inside lines, to decide whether a
/// hyphen at a line end is a real one.
#[derive(Debug, Default)]
pub(super) struct Vocabulary {
    pub(super) words: HashSet<String>,
    pub(super) compounds: HashSet<String>,
}

impl Vocabulary {
    pub(super) fn from_lines(lines: &[String]) -> Vocabulary {
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
pub(super) enum Block {
    Heading(Heading),
    Para(String),
    /// A marked block (table, caption, footnote), as written.
    Verbatim(String),
}

/// Join lines into paragraphs: a blank line or a heading ends one —
/// except that a blank line inside a sentence is a column or page jump
/// (the extractor leaves one there), not a paragraph break (see
/// [`continues_across_gap`]).
pub(super) fn reflow(items: &[Item], vocab: &Vocabulary) -> Vec<Block> {
    let mut out = Vec::new();
    let mut para = String::new();
    let mut gap = false;
    // Marked blocks met inside a paragraph wait for its end.
    let mut pending: Vec<String> = Vec::new();
    for item in items {
        match item {
            Item::Blank => gap = !para.is_empty(),
            Item::Verbatim(v) => {
                if para.is_empty() {
                    out.push(Block::Verbatim(v.clone()));
                } else {
                    pending.push(v.clone());
                }
            }
            Item::Heading(h) => {
                flush(&mut para, &mut out);
                out.extend(pending.drain(..).map(Block::Verbatim));
                out.push(Block::Heading(h.clone()));
                gap = false;
            }
            Item::Text(t) => {
                if gap && !continues_across_gap(&para, t) {
                    flush(&mut para, &mut out);
                    out.extend(pending.drain(..).map(Block::Verbatim));
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
    out.extend(pending.drain(..).map(Block::Verbatim));
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
pub(super) fn join_line(para: &mut String, next: &str, vocab: &Vocabulary) {
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

pub(super) fn render_blocks(blocks: &[Block]) -> String {
    blocks
        .iter()
        .map(|b| match b {
            Block::Heading(h) => h.text.as_str(),
            Block::Para(p) | Block::Verbatim(p) => p.as_str(),
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::super::tests::clean;

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
}
