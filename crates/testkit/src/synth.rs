//! Deterministic synthetic papers for `runner bench pipeline`.
//!
//! The benchmark needs many PDFs that exercise the same extraction and
//! cleaning path as real papers (a title block, an abstract, numbered
//! sections, numbers the reports must ground, running headers and page
//! numbers the cleaner must drop, a reference list it must count) without
//! a network or checked-in fixtures. Papers are generated from a seed, so
//! the same `--papers N` run always processes the same text and results
//! stay comparable between commits.
//!
//! PDFs are written with `lopdf` (the runner's PDF parser), using the standard Helvetica fonts
//! so no font program has to be embedded.

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Object, Stream};

/// Page geometry (US Letter, 1 inch margins) and type sizes, in points.
const PAGE_W: i64 = 612;
const PAGE_H: i64 = 792;
const MARGIN: i64 = 72;
const BODY_SIZE: i64 = 10;
const LEADING: i64 = 12;
/// Characters per body line; Helvetica 10 pt averages ~5 pt per glyph, so
/// 90 characters fit in the 468 pt text width.
const LINE_CHARS: usize = 90;
/// Lines per page between the running header and the page number.
const LINES_PER_PAGE: usize = ((PAGE_H - 2 * MARGIN) / LEADING) as usize - 2;

/// Why a synthetic paper could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot encode PDF content: {0}")]
    Encode(String),
    #[error("cannot write PDF {path}: {message}")]
    Io { path: String, message: String },
}

/// One generated paper: what was laid out, and its metadata for the queue.
#[derive(Debug, Clone)]
pub struct SynthPaper {
    pub arxiv_id: String,
    pub title: String,
    pub abstract_text: String,
    /// Body lines per page (headings included), before headers/footers.
    pub pages: Vec<Vec<Line>>,
    /// Number of entries in the reference list.
    pub references: usize,
}

/// A laid-out line: body text, a section heading, or a blank gap.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Text(String),
    Heading(String),
    Blank,
}

impl SynthPaper {
    /// Characters of body text (a rough size of what extraction yields).
    pub fn text_len(&self) -> usize {
        self.pages
            .iter()
            .flatten()
            .map(|l| match l {
                Line::Text(s) | Line::Heading(s) => s.len() + 1,
                Line::Blank => 1,
            })
            .sum()
    }
}

const FIELDS: &[&str] = &[
    "graph neural networks",
    "offline reinforcement learning",
    "sparse attention",
    "protein structure prediction",
    "speech recognition",
    "federated optimisation",
    "neural rendering",
    "time-series forecasting",
    "code generation",
    "robotic grasping",
    "climate downscaling",
    "recommender systems",
];
const ADJECTIVES: &[&str] = &[
    "adaptive",
    "curvature-gated",
    "return-anchored",
    "hierarchical",
    "contrastive",
    "low-rank",
    "uncertainty-aware",
    "sparse",
    "calibrated",
    "multi-scale",
    "retrieval-augmented",
    "equivariant",
];
const NOUNS: &[&str] = &[
    "message passing",
    "value bootstrapping",
    "token routing",
    "mixture of experts",
    "state-space layers",
    "distillation",
    "positional encoding",
    "replay buffers",
    "diffusion priors",
    "gradient compression",
    "memory banks",
    "curriculum schedules",
];
const DATASETS: &[&str] = &[
    "OGB-Arxiv",
    "D4RL AntMaze",
    "LongBench",
    "CASP15",
    "LibriSpeech",
    "FEMNIST",
    "NeRF-Synthetic",
    "ETTh1",
    "HumanEval",
    "GraspNet",
    "ERA5",
    "MovieLens-20M",
];
const METRICS: &[&str] = &[
    "accuracy",
    "normalised score",
    "F1",
    "word error rate",
    "PSNR",
    "mean absolute error",
    "pass@1",
    "success rate",
    "NDCG@10",
    "RMSE",
];
const VERBS: &[&str] = &[
    "improves",
    "reduces",
    "stabilises",
    "accelerates",
    "regularises",
    "simplifies",
];
const FILLER: &[&str] = &[
    "the model",
    "the training signal",
    "each layer",
    "the baseline",
    "our estimator",
    "the validation split",
    "the learning rate",
    "the batch",
    "the objective",
    "the encoder",
    "the decoder",
    "every update",
];
const SURNAMES: &[&str] = &[
    "Castellanos",
    "Ibekwe",
    "Lund",
    "Perrault",
    "Nakamura",
    "Okafor",
    "Silva",
    "Novak",
    "Haddad",
    "Kowalski",
    "Mensah",
    "Varga",
    "Zhou",
    "Andersen",
];
const VENUES: &[&str] = &[
    "NeurIPS", "ICML", "ICLR", "AAAI", "CVPR", "ACL", "KDD", "JMLR",
];

fn pick<'a>(rng: &mut fastrand::Rng, list: &[&'a str]) -> &'a str {
    list[rng.usize(..list.len())]
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A number with one decimal, in a plausible range for scores.
fn score(rng: &mut fastrand::Rng) -> String {
    format!("{:.1}", 20.0 + rng.f64() * 75.0)
}

fn sentence(rng: &mut fastrand::Rng, ctx: &Topic, refs: usize) -> String {
    let cite = |rng: &mut fastrand::Rng| format!("[{}]", 1 + rng.usize(..refs.max(1)));
    match rng.usize(..8) {
        0 => format!(
            "On {} the {} {} reaches a {} of {} against {} for the strongest baseline {}.",
            pick(rng, DATASETS),
            ctx.adjective,
            ctx.noun,
            pick(rng, METRICS),
            score(rng),
            score(rng),
            cite(rng)
        ),
        1 => format!(
            "{} {} {} by {}% when {} is trained for {} steps.",
            capitalise(pick(rng, FILLER)),
            pick(rng, VERBS),
            pick(rng, FILLER),
            rng.u32(2..60),
            pick(rng, FILLER),
            rng.u32(1..500) * 1000
        ),
        2 => format!(
            "Prior work on {} relies on {} {}, which does not scale beyond {} examples {}.",
            ctx.field,
            pick(rng, ADJECTIVES),
            pick(rng, NOUNS),
            rng.u32(10..900) * 1000,
            cite(rng)
        ),
        3 => format!(
            "We use a learning rate of {:.4}, a batch size of {} and {} random seeds.",
            rng.f64() * 0.01,
            [32, 64, 128, 256, 512][rng.usize(..5)],
            rng.u32(3..11)
        ),
        4 => format!(
            "The {} term keeps {} close to {}, so {} {} without extra tuning.",
            pick(rng, ADJECTIVES),
            pick(rng, FILLER),
            pick(rng, FILLER),
            pick(rng, FILLER),
            pick(rng, VERBS)
        ),
        5 => format!(
            "Table {} lists the {} per split; the mean over {} tasks is {} with a standard error of {:.2}.",
            rng.u32(1..5),
            pick(rng, METRICS),
            rng.u32(4..20),
            score(rng),
            rng.f64() * 2.0
        ),
        6 => format!(
            "Unlike {} {}, our {} needs {} fewer parameters and runs in {:.1} hours on one GPU.",
            pick(rng, ADJECTIVES),
            pick(rng, NOUNS),
            ctx.noun,
            format_args!("{}%", rng.u32(5..80)),
            1.0 + rng.f64() * 40.0
        ),
        _ => format!(
            "This matters for {} because {} {} only when {} is {}.",
            ctx.field,
            pick(rng, FILLER),
            pick(rng, VERBS),
            pick(rng, FILLER),
            pick(rng, ADJECTIVES)
        ),
    }
}

struct Topic {
    field: &'static str,
    adjective: &'static str,
    noun: &'static str,
}

/// Word-wrap a paragraph into lines of at most `LINE_CHARS` characters.
fn wrap(text: &str, out: &mut Vec<Line>) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > LINE_CHARS {
            out.push(Line::Text(std::mem::take(&mut line)));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push(Line::Text(line));
    }
}

fn paragraph(rng: &mut fastrand::Rng, topic: &Topic, refs: usize, sentences: usize) -> String {
    (0..sentences)
        .map(|_| sentence(rng, topic, refs))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The paper for `seed`: 5–9 pages of text, 8–30 references. The same seed
/// always gives the same paper.
pub fn paper(seed: u64) -> SynthPaper {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed);
    let topic = Topic {
        field: pick(&mut rng, FIELDS),
        adjective: pick(&mut rng, ADJECTIVES),
        noun: pick(&mut rng, NOUNS),
    };
    let title = format!(
        "{} {} for {}: Evidence from {} Benchmarks",
        capitalise(topic.adjective),
        capitalise(topic.noun),
        capitalise(topic.field),
        rng.u32(3..13)
    );
    let refs = rng.usize(8..=30);
    let target_pages = rng.usize(5..=9);
    let abstract_text = paragraph(&mut rng, &topic, refs, 5);
    let mut lines = Vec::new();
    lines.push(Line::Heading(title.clone()));
    lines.push(Line::Blank);
    let authors: Vec<String> = (0..rng.usize(2..=5))
        .map(|i| {
            format!(
                "{}. {}",
                (b'A' + ((seed as usize + i * 7) % 26) as u8) as char,
                pick(&mut rng, SURNAMES)
            )
        })
        .collect();
    lines.push(Line::Text(authors.join(", ")));
    lines.push(Line::Text(format!(
        "Department of Computer Science, Institute {}",
        rng.u32(1..99)
    )));
    lines.push(Line::Blank);
    lines.push(Line::Heading("Abstract".into()));
    wrap(&abstract_text, &mut lines);
    lines.push(Line::Blank);
    let sections = [
        "Introduction",
        "Related Work",
        "Method",
        "Experiments",
        "Results",
        "Limitations",
        "Conclusion",
    ];
    // Size the sections so the body fills about `target_pages` pages,
    // leaving room for the references.
    let body_lines = (target_pages * LINES_PER_PAGE).saturating_sub(refs + 12);
    let per_section = body_lines / sections.len();
    for (i, name) in sections.iter().enumerate() {
        lines.push(Line::Heading(format!("{}. {name}", i + 1)));
        let start = lines.len();
        while lines.len() - start < per_section.saturating_sub(2) {
            let sentences = rng.usize(3..7);
            let p = paragraph(&mut rng, &topic, refs, sentences);
            wrap(&p, &mut lines);
            lines.push(Line::Blank);
        }
    }
    lines.push(Line::Heading("References".into()));
    for n in 1..=refs {
        let r = format!(
            "[{n}] {}. {} and {}. {} {} with {}. In {}, {}.",
            (b'A' + (n % 26) as u8) as char,
            pick(&mut rng, SURNAMES),
            pick(&mut rng, SURNAMES),
            capitalise(pick(&mut rng, ADJECTIVES)),
            pick(&mut rng, NOUNS),
            pick(&mut rng, FIELDS),
            pick(&mut rng, VENUES),
            2010 + rng.u32(0..15)
        );
        wrap(&r, &mut lines);
    }
    let pages = lines
        .chunks(LINES_PER_PAGE)
        .map(|c| c.to_vec())
        .collect::<Vec<_>>();
    SynthPaper {
        arxiv_id: format!("9{:03}.{:05}", seed / 100_000 % 1000, seed % 100_000),
        title,
        abstract_text,
        pages,
        references: refs,
    }
}

fn op(name: &str, operands: Vec<Object>) -> Operation {
    Operation::new(name, operands)
}

fn font_dict(base: &str) -> Dictionary {
    let mut d = Dictionary::new();
    d.set("Type", Object::Name(b"Font".to_vec()));
    d.set("Subtype", Object::Name(b"Type1".to_vec()));
    d.set("BaseFont", Object::Name(base.as_bytes().to_vec()));
    d.set("Encoding", Object::Name(b"WinAnsiEncoding".to_vec()));
    d
}

/// Content stream of one page: running header, the lines, page number.
fn page_content(paper: &SynthPaper, index: usize) -> Content {
    let mut ops = vec![op("BT", vec![])];
    let mut y = PAGE_H - MARGIN + LEADING;
    let show = |ops: &mut Vec<Operation>, font: &str, size: i64, y: i64, text: &str| {
        ops.push(op(
            "Tf",
            vec![
                Object::Name(font.as_bytes().to_vec()),
                Object::Integer(size),
            ],
        ));
        // Absolute positioning per line: Tm resets the text matrix.
        ops.push(op(
            "Tm",
            vec![
                1.into(),
                0.into(),
                0.into(),
                1.into(),
                Object::Integer(MARGIN),
                Object::Integer(y),
            ],
        ));
        ops.push(op("Tj", vec![Object::string_literal(text.as_bytes())]));
    };
    let short: String = paper.title.chars().take(60).collect();
    show(&mut ops, "F1", 8, y, &short);
    y -= 2 * LEADING;
    if let Some(lines) = paper.pages.get(index) {
        for line in lines {
            match line {
                Line::Text(t) => show(&mut ops, "F1", BODY_SIZE, y, t),
                Line::Heading(t) => show(&mut ops, "F2", BODY_SIZE + 1, y, t),
                Line::Blank => {}
            }
            y -= LEADING;
        }
    }
    show(&mut ops, "F1", 8, MARGIN / 2, &format!("{}", index + 1));
    ops.push(op("ET", vec![]));
    Content { operations: ops }
}

/// The paper as PDF bytes.
pub fn pdf_bytes(paper: &SynthPaper) -> Result<Vec<u8>, SynthError> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let regular = doc.add_object(font_dict("Helvetica"));
    let bold = doc.add_object(font_dict("Helvetica-Bold"));
    let mut fonts = Dictionary::new();
    fonts.set("F1", Object::Reference(regular));
    fonts.set("F2", Object::Reference(bold));
    let mut resources = Dictionary::new();
    resources.set("Font", Object::Dictionary(fonts));
    let resources_id = doc.add_object(resources);
    let mut kids = Vec::with_capacity(paper.pages.len());
    for i in 0..paper.pages.len() {
        let content = page_content(paper, i)
            .encode()
            .map_err(|e| SynthError::Encode(e.to_string()))?;
        let content_id = doc.add_object(Stream::new(Dictionary::new(), content));
        let mut page = Dictionary::new();
        page.set("Type", Object::Name(b"Page".to_vec()));
        page.set("Parent", Object::Reference(pages_id));
        page.set("Contents", Object::Reference(content_id));
        page.set("Resources", Object::Reference(resources_id));
        page.set(
            "MediaBox",
            Object::Array(vec![
                0.into(),
                0.into(),
                Object::Integer(PAGE_W),
                Object::Integer(PAGE_H),
            ]),
        );
        kids.push(Object::Reference(doc.add_object(page)));
    }
    let mut pages = Dictionary::new();
    pages.set("Type", Object::Name(b"Pages".to_vec()));
    pages.set("Count", Object::Integer(kids.len() as i64));
    pages.set("Kids", Object::Array(kids));
    doc.objects.insert(pages_id, Object::Dictionary(pages));
    let mut catalog = Dictionary::new();
    catalog.set("Type", Object::Name(b"Catalog".to_vec()));
    catalog.set("Pages", Object::Reference(pages_id));
    let catalog_id = doc.add_object(catalog);
    doc.trailer.set("Root", Object::Reference(catalog_id));
    let mut out = Vec::new();
    doc.save_to(&mut out)
        .map_err(|e| SynthError::Encode(e.to_string()))?;
    Ok(out)
}

/// Write the paper for `seed` to `path`; returns the paper.
pub fn write_pdf(seed: u64, path: &std::path::Path) -> Result<SynthPaper, SynthError> {
    let p = paper(seed);
    let bytes = pdf_bytes(&p)?;
    std::fs::write(path, bytes).map_err(|e| SynthError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    //! That the runner's extraction and cleaning read these PDFs is checked
    //! by the integration tests (tests/it/synth.rs), which see both crates.
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_pdf() {
        let a = pdf_bytes(&paper(7)).unwrap();
        let b = pdf_bytes(&paper(7)).unwrap();
        assert_eq!(a, b);
        assert_ne!(paper(7).title, paper(8).title);
    }

    #[test]
    fn papers_vary_in_length_and_have_every_part() {
        let lens: Vec<usize> = (0..8).map(|s| paper(s).pages.len()).collect();
        assert!(lens.iter().all(|n| (5..=10).contains(n)), "{lens:?}");
        assert!(lens.iter().any(|n| *n != lens[0]), "{lens:?}");
        let p = paper(3);
        let headings: Vec<&str> = p
            .pages
            .iter()
            .flatten()
            .filter_map(|l| match l {
                Line::Heading(h) => Some(h.as_str()),
                _ => None,
            })
            .collect();
        for h in ["Abstract", "1. Introduction", "7. Conclusion", "References"] {
            assert!(headings.contains(&h), "{h} missing from {headings:?}");
        }
    }
}
