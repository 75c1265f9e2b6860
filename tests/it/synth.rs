//! The synthetic papers of `testkit::synth` (what `runner bench pipeline`
//! runs) go through the runner's real extraction and cleaning intact.

use paper_runner::pipeline::{clean, pdf};
use testkit::synth::{paper, pdf_bytes};

#[test]
fn extraction_and_cleaning_read_the_generated_text() {
    let p = paper(11);
    let got = pdf::extract_bytes(&pdf_bytes(&p).unwrap()).unwrap();
    assert_eq!(got.pages.len(), p.pages);
    let joined = got.pages.join("\n");
    assert!(joined.contains("Introduction"), "{joined}");
    let first_sentence = p.abstract_text.split(". ").next().unwrap();
    let c = clean::clean_pages(
        &got.pages,
        &clean::CleanOptions {
            token_budget: 24_000,
        },
    );
    assert!(
        c.paper_text.contains(first_sentence),
        "abstract not found in clean text:\n{}",
        &c.paper_text[..c.paper_text.len().min(2000)]
    );
    assert_eq!(c.reference_count, p.references);
    // Running headers and page numbers are gone; the body is kept.
    assert!(c.paper_text.len() > p.text_len() / 2);
}
