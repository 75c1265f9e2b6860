//! Step 5: map the body's headings to canonical section names, including the
//! unlabelled-abstract fallback.

use super::reflow::Block;
use indexmap::IndexMap;

/// A paragraph this long (in words) before the first heading is taken as
/// the abstract when the paper has no "Abstract" heading.
const MIN_ABSTRACT_WORDS: usize = 40;

/// Group body blocks under their canonical section names. Text before the
/// first section heading (title, authors) belongs to no section, except
/// that without an "Abstract" heading its last long paragraph is taken as
/// the abstract. Sections left empty are dropped; a name that recurs
/// appends to its first entry.
pub(super) fn build_sections(blocks: &[Block]) -> IndexMap<String, String> {
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
            Block::Para(p) | Block::Verbatim(p) => p.as_str(),
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

#[cfg(test)]
mod tests {
    use super::super::tests::clean;

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
}
