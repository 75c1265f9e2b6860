//! Deterministic synthetic papers for `runner bench pipeline` and the
//! extraction tests.
//!
//! The benchmark needs many PDFs that exercise the same extraction and
//! cleaning path as real papers without a network or checked-in fixtures;
//! the tests need papers whose every word is known. A paper is generated
//! from a seed (the same seed always gives the same bytes) and has what
//! real two-column papers have:
//!
//! * a title block and abstract across the page, then **two columns**;
//! * numbered sections, numbers the reports must ground, a reference list
//!   the cleaner must count;
//! * **tables** (caption above, booktabs-style rules, three columns of
//!   cells), **figures** (a frame with a caption below) and
//!   **footnotes** (small type at the foot of the left column, under a
//!   short rule);
//! * a running header and page numbers, which the extraction must drop.
//!
//! Every page's text is written to the content stream **row by row across
//! both columns** (sorted by height, then left to right), as some
//! producers do: reading order has to come from the geometry, not from the
//! stream. [`SynthPaper::expected_text`] is the text in reading order and
//! [`SynthPaper::table_cells`] every cell, for the tests.
//!
//! PDFs are written with `lopdf` (the runner's PDF parser), using the
//! standard Helvetica fonts so no font program has to be embedded.

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Object, Stream};

/// Page geometry (US Letter) and type sizes, in points.
const PAGE_W: f64 = 612.0;
const PAGE_H: f64 = 792.0;
const LEFT: f64 = 54.0;
const TEXT_W: f64 = 504.0;
const TOP: f64 = 738.0;
const BOTTOM: f64 = 60.0;
const GUTTER: f64 = 24.0;
const COL_W: f64 = (TEXT_W - GUTTER) / 2.0;
const BODY_SIZE: f64 = 9.0;
const LEADING: f64 = 11.0;
const NOTE_SIZE: f64 = 7.0;
/// Characters per line: Helvetica averages ~0.5 em per glyph (digits
/// 0.556), so 46 characters of 9 pt fit a 240 pt column.
const COL_CHARS: usize = 46;
const WIDE_CHARS: usize = 96;

/// Why a synthetic paper could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot encode PDF content: {0}")]
    Encode(String),
    #[error("cannot write PDF {path}: {message}")]
    Io { path: String, message: String },
}

/// A table: its number, caption and rows of cells (the first is the
/// header).
#[derive(Debug, Clone, PartialEq)]
pub struct SynthTable {
    pub number: usize,
    pub caption: String,
    pub rows: Vec<Vec<String>>,
}

/// A unit of the body, in reading order.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(String),
    Para(String),
    Table(SynthTable),
    /// A figure: number and caption.
    Figure(usize, String),
    /// A footnote: marker and text (set at the foot of a page's left
    /// column).
    Footnote(String, String),
}

/// One generated paper: what was laid out, and its metadata for the queue.
#[derive(Debug, Clone)]
pub struct SynthPaper {
    pub arxiv_id: String,
    pub title: String,
    pub authors: String,
    pub affiliation: String,
    pub abstract_text: String,
    /// Sections, tables, figures, footnotes and the references, in order.
    pub blocks: Vec<Block>,
    /// Number of entries in the reference list.
    pub references: usize,
    /// Pages once laid out.
    pub pages: usize,
    /// The short title of the running header.
    pub running_head: String,
    layout: Vec<PageDraw>,
}

impl SynthPaper {
    /// Characters of text (a rough size of what extraction yields).
    pub fn text_len(&self) -> usize {
        self.expected_text().len()
    }

    /// The paper's text in reading order, without running headers and
    /// page numbers; tables as their caption and cells.
    pub fn expected_text(&self) -> String {
        let mut out = vec![
            self.title.clone(),
            self.authors.clone(),
            self.affiliation.clone(),
            "Abstract".to_string(),
            self.abstract_text.clone(),
        ];
        for b in &self.blocks {
            match b {
                Block::Heading(t) | Block::Para(t) => out.push(t.clone()),
                Block::Table(t) => {
                    out.push(format!("Table {}: {}", t.number, t.caption));
                    out.extend(t.rows.iter().map(|r| r.join(" ")));
                }
                Block::Figure(n, c) => out.push(format!("Figure {n}: {c}")),
                Block::Footnote(m, t) => out.push(format!("{m} {t}")),
            }
        }
        out.join("\n")
    }

    pub fn tables(&self) -> Vec<&SynthTable> {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Table(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// Every table cell's text.
    pub fn table_cells(&self) -> Vec<&str> {
        self.tables()
            .into_iter()
            .flat_map(|t| t.rows.iter().flatten().map(String::as_str))
            .collect()
    }

    /// Body paragraphs (for reading-order checks).
    pub fn paragraphs(&self) -> Vec<&str> {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Para(p) => Some(p.as_str()),
                _ => None,
            })
            .collect()
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

fn paragraph(rng: &mut fastrand::Rng, topic: &Topic, refs: usize, sentences: usize) -> String {
    (0..sentences)
        .map(|_| sentence(rng, topic, refs))
        .collect::<Vec<_>>()
        .join(" ")
}

const CAPTIONS: &[&str] = &[
    "Scores on the held-out split, mean over seeds",
    "Ablation of the main components",
    "Cost of training and inference per run",
    "Results per dataset against the baselines",
];
const FIGURE_CAPTIONS: &[&str] = &[
    "Validation loss against training steps for every variant",
    "Overview of the method and its data flow",
    "Sensitivity of the score to the learning rate",
];
const NOTES: &[&str] = &[
    "Code and data are released with the camera-ready version",
    "All runs use the same hardware and software stack",
    "Numbers for the baselines are taken from their papers",
];

fn table(rng: &mut fastrand::Rng, number: usize) -> SynthTable {
    let metric = pick(rng, &["Acc", "F1", "Score", "Error", "Loss"]);
    let mut rows = vec![vec![
        "Method".to_string(),
        metric.to_string(),
        "Time".to_string(),
    ]];
    let mut names: Vec<&str> = vec!["Baseline", "Ours"];
    names.extend(
        ["Ours-small", "No-gate", "Linear", "Ensemble"]
            .iter()
            .take(rng.usize(1..=4)),
    );
    for name in names {
        rows.push(vec![
            name.to_string(),
            score(rng),
            format!("{}.{}h", rng.u32(1..40), rng.u32(0..10)),
        ]);
    }
    SynthTable {
        number,
        caption: format!("{}.", pick(rng, CAPTIONS)),
        rows,
    }
}

/// The paper for `seed`: 4–8 pages, 8–30 references, 1–3 tables, 1–2
/// figures and 1–2 footnotes. The same seed always gives the same paper.
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
    let abstract_text = paragraph(&mut rng, &topic, refs, 5);
    let authors: Vec<String> = (0..rng.usize(2..=5))
        .map(|i| {
            format!(
                "{}. {}",
                (b'A' + ((seed as usize + i * 7) % 26) as u8) as char,
                pick(&mut rng, SURNAMES)
            )
        })
        .collect();
    let affiliation = format!(
        "Department of Computer Science, Institute {}",
        rng.u32(1..99)
    );
    let sections = [
        "Introduction",
        "Related Work",
        "Method",
        "Experiments",
        "Results",
        "Limitations",
        "Conclusion",
    ];
    let target_paras = rng.usize(14..=30);
    let tables = rng.usize(1..=3);
    let figures = rng.usize(1..=2);
    let notes = rng.usize(1..=2);
    let mut blocks = Vec::new();
    let (mut t, mut f, mut n) = (0, 0, 0);
    for (i, name) in sections.iter().enumerate() {
        blocks.push(Block::Heading(format!("{}. {name}", i + 1)));
        for k in 0..(target_paras / sections.len()).max(1) {
            let sentences = rng.usize(3..7);
            blocks.push(Block::Para(paragraph(&mut rng, &topic, refs, sentences)));
            if k == 0 && n < notes && (i == 0 || i == 3) {
                n += 1;
                blocks.push(Block::Footnote(
                    n.to_string(),
                    format!("{}.", NOTES[(n - 1) % NOTES.len()]),
                ));
            }
        }
        if ((3..=4).contains(&i) || (i == 2 && tables == 3)) && t < tables {
            t += 1;
            blocks.push(Block::Table(table(&mut rng, t)));
        }
        if (i == 2 || i == 4) && f < figures {
            f += 1;
            blocks.push(Block::Figure(
                f,
                format!("{}.", pick(&mut rng, FIGURE_CAPTIONS)),
            ));
        }
    }
    blocks.push(Block::Heading("References".into()));
    for k in 1..=refs {
        blocks.push(Block::Para(format!(
            "[{k}] {}. {} and {}. {} {} with {}. In {}, {}.",
            (b'A' + (k % 26) as u8) as char,
            pick(&mut rng, SURNAMES),
            pick(&mut rng, SURNAMES),
            capitalise(pick(&mut rng, ADJECTIVES)),
            pick(&mut rng, NOUNS),
            pick(&mut rng, FIELDS),
            pick(&mut rng, VENUES),
            2010 + rng.u32(0..15)
        )));
    }
    let mut p = SynthPaper {
        arxiv_id: format!("9{:03}.{:05}", seed / 100_000 % 1000, seed % 100_000),
        running_head: title
            .chars()
            .take(48)
            .collect::<String>()
            .trim_end()
            .to_string(),
        title,
        authors: authors.join(", "),
        affiliation,
        abstract_text,
        blocks,
        references: refs,
        pages: 0,
        layout: Vec::new(),
    };
    p.layout = lay_out(&p);
    p.pages = p.layout.len();
    p
}

// ---------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Face {
    Regular,
    Bold,
}

#[derive(Debug, Clone)]
struct TextDraw {
    x: f64,
    y: f64,
    size: f64,
    face: Face,
    text: String,
}

#[derive(Debug, Clone, Default)]
struct PageDraw {
    texts: Vec<TextDraw>,
    /// Filled thin rectangles (rules): x, y, w, h.
    rules: Vec<(f64, f64, f64, f64)>,
    /// Stroked frames (figures): x, y, w, h.
    frames: Vec<(f64, f64, f64, f64)>,
}

/// Word-wrap `text` into lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push(line);
    }
    out
}

/// Where the next line goes: page, column, height.
struct Cursor {
    pages: Vec<PageDraw>,
    col: usize,
    y: f64,
    /// Top of the columns on the current page.
    top: f64,
    /// Bottom of the left column on the current page (raised above its
    /// footnotes).
    left_bottom: f64,
}

impl Cursor {
    fn x(&self) -> f64 {
        LEFT + self.col as f64 * (COL_W + GUTTER)
    }

    fn bottom(&self) -> f64 {
        if self.col == 0 {
            self.left_bottom
        } else {
            BOTTOM
        }
    }

    fn page(&mut self) -> &mut PageDraw {
        if self.pages.is_empty() {
            self.pages.push(PageDraw::default());
        }
        let n = self.pages.len() - 1;
        &mut self.pages[n]
    }

    /// Room for `h` points in this column, else the next column or page.
    fn need(&mut self, h: f64) {
        if self.y - h >= self.bottom() {
            return;
        }
        if self.col == 0 {
            self.col = 1;
        } else {
            self.col = 0;
            self.pages.push(PageDraw::default());
            self.top = TOP;
            self.left_bottom = BOTTOM;
        }
        self.y = self.top;
    }

    fn text(&mut self, dx: f64, size: f64, face: Face, text: &str) {
        let (x, y) = (self.x() + dx, self.y);
        self.page().texts.push(TextDraw {
            x,
            y,
            size,
            face,
            text: text.to_string(),
        });
    }
}

fn lay_out(p: &SynthPaper) -> Vec<PageDraw> {
    let mut c = Cursor {
        pages: vec![PageDraw::default()],
        col: 0,
        y: TOP,
        top: TOP,
        left_bottom: BOTTOM,
    };
    // Page 1: title block and abstract across the page.
    let mut y = TOP - 10.0;
    let wide = |c: &mut Cursor, size: f64, face: Face, text: &str, y: f64| {
        c.page().texts.push(TextDraw {
            x: LEFT,
            y,
            size,
            face,
            text: text.to_string(),
        });
    };
    for line in wrap(&p.title, 60) {
        wide(&mut c, 15.0, Face::Bold, &line, y);
        y -= 19.0;
    }
    y -= 4.0;
    wide(&mut c, 10.0, Face::Regular, &p.authors, y);
    y -= 13.0;
    wide(&mut c, BODY_SIZE, Face::Regular, &p.affiliation, y);
    y -= 22.0;
    wide(&mut c, 10.0, Face::Bold, "Abstract", y);
    y -= 14.0;
    for line in wrap(&p.abstract_text, WIDE_CHARS) {
        wide(&mut c, BODY_SIZE, Face::Regular, &line, y);
        y -= LEADING;
    }
    c.top = y - 18.0;
    c.y = c.top;
    // Footnotes go to the foot of the left column of the page where they
    // are met; they are set when the page is known.
    let mut notes: Vec<(usize, String, String)> = Vec::new();
    for b in &p.blocks {
        match b {
            Block::Heading(h) => {
                c.need(3.0 * LEADING);
                c.y -= 6.0;
                c.text(0.0, 10.0, Face::Bold, h);
                c.y -= LEADING + 3.0;
            }
            Block::Para(text) => {
                for line in wrap(text, COL_CHARS) {
                    c.need(LEADING);
                    c.text(0.0, BODY_SIZE, Face::Regular, &line);
                    c.y -= LEADING;
                }
                c.y -= 5.0;
            }
            Block::Table(t) => {
                let caption = wrap(&format!("Table {}: {}", t.number, t.caption), COL_CHARS);
                let h = (caption.len() + t.rows.len()) as f64 * LEADING + 30.0;
                c.need(h);
                c.y -= 4.0;
                for line in &caption {
                    c.text(0.0, BODY_SIZE, Face::Regular, line);
                    c.y -= LEADING;
                }
                let x = c.x();
                let rule = |c: &mut Cursor, y: f64| c.page().rules.push((x, y, COL_W - 20.0, 0.6));
                let y = c.y + 2.0;
                rule(&mut c, y);
                c.y -= LEADING - 2.0;
                for (k, row) in t.rows.iter().enumerate() {
                    for (j, cell) in row.iter().enumerate() {
                        let face = if k == 0 { Face::Bold } else { Face::Regular };
                        c.text([0.0, 95.0, 160.0][j.min(2)], BODY_SIZE, face, cell);
                    }
                    if k == 0 {
                        let y = c.y - 3.5;
                        rule(&mut c, y);
                    }
                    c.y -= LEADING;
                }
                let y = c.y + 6.0;
                rule(&mut c, y);
                c.y -= 12.0;
            }
            Block::Figure(n, caption) => {
                let lines = wrap(&format!("Figure {n}: {caption}"), COL_CHARS);
                c.need(80.0 + lines.len() as f64 * LEADING + 10.0);
                let (x, y) = (c.x(), c.y);
                c.page().frames.push((x, y - 70.0, COL_W - 20.0, 68.0));
                c.y -= 82.0;
                for line in &lines {
                    c.text(0.0, BODY_SIZE, Face::Regular, line);
                    c.y -= LEADING;
                }
                c.y -= 8.0;
            }
            Block::Footnote(m, t) => {
                let page = c.pages.len() - 1;
                notes.push((page, m.clone(), t.clone()));
                // Raise this page's left column above the footnote.
                let lines = wrap(&format!("{m} {t}"), 60).len() as f64;
                c.left_bottom += lines * 9.0 + 8.0;
                if c.col == 0 && c.y < c.left_bottom {
                    c.need(c.y);
                }
            }
        }
    }
    for (page, mark, text) in notes {
        let Some(pd) = c.pages.get_mut(page) else {
            continue;
        };
        let lines = wrap(&text, 60);
        let mut y = BOTTOM + (lines.len() as f64 - 1.0) * 9.0;
        // Other notes on this page sit above: stack upwards.
        let taken = pd.texts.iter().filter(|t| t.size == NOTE_SIZE).count() as f64;
        y += taken * 9.0 + if taken > 0.0 { 8.0 } else { 0.0 };
        pd.rules.push((LEFT, y + 10.0, 60.0, 0.4));
        for (k, line) in lines.iter().enumerate() {
            let (dx, t) = if k == 0 {
                // The marker, raised and small, then the text.
                pd.texts.push(TextDraw {
                    x: LEFT,
                    y: y + 2.5,
                    size: 5.0,
                    face: Face::Regular,
                    text: mark.clone(),
                });
                (6.0, line.as_str())
            } else {
                (6.0, line.as_str())
            };
            pd.texts.push(TextDraw {
                x: LEFT + dx,
                y,
                size: NOTE_SIZE,
                face: Face::Regular,
                text: t.to_string(),
            });
            y -= 9.0;
        }
    }
    // Running header and page number on every page.
    let n = c.pages.len();
    for (i, pd) in c.pages.iter_mut().enumerate() {
        let _ = n;
        pd.texts.push(TextDraw {
            x: LEFT,
            y: PAGE_H - 40.0,
            size: 7.0,
            face: Face::Regular,
            text: p.running_head.clone(),
        });
        pd.texts.push(TextDraw {
            x: LEFT + TEXT_W - 40.0,
            y: PAGE_H - 40.0,
            size: 7.0,
            face: Face::Regular,
            text: "Preprint".into(),
        });
        pd.texts.push(TextDraw {
            x: PAGE_W / 2.0,
            y: 30.0,
            size: BODY_SIZE,
            face: Face::Regular,
            text: format!("{}", i + 1),
        });
    }
    c.pages
}

// ---------------------------------------------------------------------------
// PDF
// ---------------------------------------------------------------------------

fn op(name: &str, operands: Vec<Object>) -> Operation {
    Operation::new(name, operands)
}

fn real(v: f64) -> Object {
    Object::Real(v as f32)
}

fn font_dict(base: &str) -> Dictionary {
    let mut d = Dictionary::new();
    d.set("Type", Object::Name(b"Font".to_vec()));
    d.set("Subtype", Object::Name(b"Type1".to_vec()));
    d.set("BaseFont", Object::Name(base.as_bytes().to_vec()));
    d.set("Encoding", Object::Name(b"WinAnsiEncoding".to_vec()));
    d
}

/// One page's content stream: text row by row across the columns (highest
/// first, then left to right), then the rules and frames.
fn page_content(page: &PageDraw) -> Content {
    let mut texts: Vec<&TextDraw> = page.texts.iter().collect();
    texts.sort_by(|a, b| b.y.total_cmp(&a.y).then(a.x.total_cmp(&b.x)));
    let mut ops = vec![op("BT", vec![])];
    for t in texts {
        let font = match t.face {
            Face::Regular => "F1",
            Face::Bold => "F2",
        };
        ops.push(op(
            "Tf",
            vec![Object::Name(font.as_bytes().to_vec()), real(t.size)],
        ));
        ops.push(op(
            "Tm",
            vec![1.into(), 0.into(), 0.into(), 1.into(), real(t.x), real(t.y)],
        ));
        ops.push(op("Tj", vec![Object::string_literal(t.text.as_bytes())]));
    }
    ops.push(op("ET", vec![]));
    for &(x, y, w, h) in &page.rules {
        ops.push(op("re", vec![real(x), real(y), real(w), real(h)]));
        ops.push(op("f", vec![]));
    }
    for &(x, y, w, h) in &page.frames {
        ops.push(op("re", vec![real(x), real(y), real(w), real(h)]));
        ops.push(op("S", vec![]));
    }
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
    let mut kids = Vec::with_capacity(paper.layout.len());
    for page in &paper.layout {
        let content = page_content(page)
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
            Object::Array(vec![0.into(), 0.into(), real(PAGE_W), real(PAGE_H)]),
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
        let lens: Vec<usize> = (0..8).map(|s| paper(s).pages).collect();
        assert!(lens.iter().all(|n| (2..=10).contains(n)), "{lens:?}");
        assert!(lens.iter().any(|n| *n != lens[0]), "{lens:?}");
        for seed in 0..8 {
            let p = paper(seed);
            let headings: Vec<&str> = p
                .blocks
                .iter()
                .filter_map(|b| match b {
                    Block::Heading(h) => Some(h.as_str()),
                    _ => None,
                })
                .collect();
            for h in ["1. Introduction", "7. Conclusion", "References"] {
                assert!(headings.contains(&h), "{h} missing from {headings:?}");
            }
            assert!(!p.tables().is_empty());
            assert!(p.blocks.iter().any(|b| matches!(b, Block::Figure(..))));
            assert!(p.blocks.iter().any(|b| matches!(b, Block::Footnote(..))));
            assert!(p.table_cells().len() >= 9);
        }
    }

    #[test]
    fn every_line_stays_on_its_page_and_inside_its_column() {
        for seed in 0..8 {
            let p = paper(seed);
            for page in &p.layout {
                for t in &page.texts {
                    assert!(t.y > 20.0 && t.y < PAGE_H - 20.0, "{seed}: {t:?}");
                    assert!(t.x >= LEFT - 0.1 && t.x < LEFT + TEXT_W, "{seed}: {t:?}");
                }
            }
        }
    }
}
