//! Step 3: one pass over the lines that finds headings and splits the text
//! into body, references and appendix.
//!
//! The region decides how strict heading detection is (a reference entry
//! often looks like a numbered heading), so the splitting and the acceptance
//! rules live together here.

use super::headings::{
    continues_sentence, heading_title_ok, parse_candidate, roman_title_ok, Candidate, Label,
};
use super::{is_marked, re, TABLE_END, TABLE_START};
use regex::Regex;
use std::sync::LazyLock;

pub(super) static REF_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:1[89]|20)\d{2}[a-z]?\b|^\[\d+\]|\bet al\b|\barxiv\b|\bproceedings\b|^in\s|\bpp\.|\bdoi\b|https?:|\bjournal\b|\bconference\b|\bvol\.",
    )
});

/// One line after heading detection.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item {
    Blank,
    Text(String),
    Heading(Heading),
    /// A marked block (table, caption, footnote), kept as written.
    Verbatim(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Heading {
    /// As printed, e.g. "2.1 Method".
    pub(super) text: String,
    /// Canonical section name.
    pub(super) key: String,
    /// Top-level, or a subsection with a canonical name: begins a new
    /// entry in `sections`.
    pub(super) starts_section: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Region {
    Body,
    References,
    Appendix,
}

/// The document split by region; references are kept as raw lines for
/// counting.
#[derive(Debug, Default)]
pub(super) struct Regions {
    pub(super) body: Vec<Item>,
    pub(super) references: Vec<String>,
    pub(super) appendix: Vec<Item>,
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
pub(super) fn split_regions(lines: &[String]) -> Regions {
    let mut out = Regions::default();
    let mut region = Region::Body;
    let mut table: Option<Vec<&str>> = None;
    for (i, line) in lines.iter().enumerate() {
        // Marked blocks go through whole; among the references they
        // belong to the body (tables after the references in APA style).
        let verbatim_region = if region == Region::References {
            Region::Body
        } else {
            region
        };
        if line.starts_with(TABLE_START) && table.is_none() {
            table = Some(vec![line.as_str()]);
            if !line.starts_with(TABLE_END) {
                continue;
            }
        }
        if let Some(rows) = &mut table {
            if !line.starts_with(TABLE_START) {
                rows.push(line.as_str());
            }
            if line.starts_with(TABLE_END) || i + 1 == lines.len() {
                let block = rows.join("\n");
                table = None;
                out.items(verbatim_region).push(Item::Verbatim(block));
            }
            continue;
        }
        if is_marked(line) {
            out.items(verbatim_region)
                .push(Item::Verbatim(line.clone()));
            continue;
        }
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
pub(super) fn accept_heading(line: &str, prev: Option<&Item>, region: Region) -> Option<Candidate> {
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

pub(super) fn heading(line: &str, cand: &Candidate, starts_section: bool) -> Heading {
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

#[cfg(test)]
mod tests {
    use super::super::tests::clean;

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
    fn a_reference_starting_with_an_initial_is_not_an_appendix() {
        let c = clean(&["References\n[1]\nC. Conroy. Modeling the panchromatic spectral\n\nenergy distributions. ARA&A, 51:393,\n2013.\n[2]\nPlanck Collaboration. Planck results. 2020.\nAppendix A: Extra\nMore."]);
        assert_eq!(c.reference_count, 2);
        assert!(c.appendix_text.starts_with("Appendix A: Extra"));
    }
}
