//! A two-column paper from another producer: reportlab's page layout
//! (`scripts/make-reportlab-paper.py`), with a ruled table, a figure
//! caption, a footnote drawn at the page foot, a running header and page
//! numbers. Its poppler `pdftotext` output is committed next to it, so no
//! PDF tool is needed; [`the_committed_reference_is_current`] checks it
//! against the installed pdftotext when there is one.

use crate::support;
use paper_runner::pipeline::{clean, pdf};
use regex::Regex;
use std::collections::HashMap;
use std::path::PathBuf;
use unicode_normalization::UnicodeNormalization;

fn fixture(name: &str) -> PathBuf {
    support::fixture("papers").join(name)
}

fn reference() -> String {
    std::fs::read_to_string(fixture("expected/reportlab-2col.txt")).unwrap()
}

fn extract() -> pdf::ExtractedPdf {
    pdf::extract_file(&fixture("reportlab-2col.pdf")).unwrap()
}

fn tokens(text: &str) -> Vec<String> {
    let s: String = text.nfkc().collect::<String>().to_lowercase();
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn body_words_match_pdftotext() {
    // The reference less its furniture (header, page numbers), which the
    // extraction drops on purpose.
    let body: String = reference()
        .lines()
        .filter(|l| {
            let t = l.trim();
            !(t.bytes().all(|b| b.is_ascii_digit()) || t == "Working paper")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let got = extract().pages.join("\n");
    let mut have: HashMap<String, usize> = HashMap::new();
    for t in tokens(&got) {
        *have.entry(t).or_default() += 1;
    }
    let want = tokens(&body);
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
    let r = hits as f64 / want.len() as f64;
    assert!(r >= 0.98, "recall {r:.3}");
}

#[test]
fn sentences_come_in_reading_order() {
    let got = extract();
    let text = got.pages.join("\n");
    let tags: Vec<u32> = Regex::new(r"\(s(\d+)\)")
        .unwrap()
        .captures_iter(&text)
        .filter_map(|c| c[1].parse().ok())
        .filter(|n| *n < 900)
        .collect();
    let want: Vec<u32> = (1..=tags.iter().copied().max().unwrap_or(0)).collect();
    assert!(want.len() > 30, "{tags:?}");
    assert_eq!(tags, want);
    assert!(got.stats.two_column_pages >= 1);
}

#[test]
fn the_table_caption_and_footnote_are_marked() {
    let text = extract().pages.join("\n");
    assert!(
        text.contains(
            "[TABLE 1: Accuracy and training time on the test split.]\nMethod | Accuracy | Time (s)\nBaseline | 71.4 | 12.8\nSparse kernel | 78.9 | 9.6\nDense kernel | 77.2 | 31.5\nOurs + prior | 80.3 | 10.1\n[/TABLE]"
        ),
        "{text}"
    );
    assert!(
        text.contains("[FIGURE 1: Accuracy against the number of kernels.]"),
        "{text}"
    );
    assert!(text.contains("[FOOTNOTE 1: Data and code are available from the authors on request.]"));
    assert!(!text.contains("Working paper"), "running header left in");
    let c = clean::clean_pages(&extract().pages, &clean::CleanOptions::default());
    assert!(c.paper_text.contains("Ours + prior | 80.3 | 10.1"));
    assert_eq!(c.reference_count, 6);
}

#[test]
fn the_committed_reference_is_current() {
    let Ok(out) = std::process::Command::new("pdftotext")
        .arg(fixture("reportlab-2col.pdf"))
        .arg("-")
        .output()
    else {
        println!("skipped: pdftotext is not installed (the committed reference is used as is)");
        return;
    };
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), reference());
}

#[test]
fn runner_extract_prints_the_marked_text_and_the_appendix() {
    let run = |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("extract")
            .arg(fixture(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run("reportlab-2col.pdf");
    assert!(text.contains("[TABLE 1: Accuracy and training time on the test split.]"));
    assert!(text.contains("Baseline | 71.4 | 12.8"));
    // paper-a has an appendix after its references: printed after the body.
    let text = run("paper-a.pdf");
    let appendix = text.find("Appendix A").expect("appendix printed");
    assert!(text[..appendix].contains("Conclusion"));
}
