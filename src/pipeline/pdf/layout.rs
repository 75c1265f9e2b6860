//! Glyphs to text: words, lines, columns, tables, captions and footnotes,
//! decided from positions alone.
//!
//! The steps, per page:
//! 1. **Fragments.** Glyphs in content-stream order join the current
//!    fragment while they stay on its baseline and close to its end; a gap
//!    wider than [`SPLIT_GAP`] em (a table cell boundary, a column gutter)
//!    starts a new one. Spaces inside a fragment are decided by the gap
//!    ([`SPACE_GAP`]), as poppler does.
//! 2. **Furniture** (document-wide, see [`Document`]): the top and bottom
//!    rows of each page that repeat on other pages (digits ignored) or are
//!    page numbers are dropped, and so are marginal line numbers.
//! 3. **Columns.** A vertical gutter is looked for in the middle of the
//!    page: an x where almost no fragment crosses while many lie wholly on
//!    each side. Fragments crossing it widely span both columns; they cut
//!    the page into bands, each read left column first, then right.
//! 4. **Tables** hang off a caption ("Table 2: …", "TABLE II"): the rows
//!    below it (or above) in the caption's column, bounded by the table's
//!    horizontal rules when it has them, become cells row by row.
//! 5. **Lines and blocks** inside each column, top to bottom; a larger
//!    vertical gap or a change of type size starts a new block. A block
//!    that starts with "Figure 3:" is a figure caption; small-type lines
//!    at a column's foot that start with a marker are footnotes, moved to
//!    the page's end.

use super::content::{Glyph, PageContent, Rule};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

/// Compiles one of this module's constant patterns (the unit tests match
/// every one, so a failure is a bug here, never a property of the input).
fn re(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).expect("constant regex")
}

/// A gap wider than this share of the font size between two glyphs on one
/// baseline is a word space (poppler uses 0.1 too; TeX's tightest
/// justified space is ~0.2 em, kerns stay under ~0.1 em).
const SPACE_GAP: f32 = 0.1;
/// A gap wider than this many ems ends a fragment: wider than any word
/// space of justified text, narrower than table cell padding and gutters.
const SPLIT_GAP: f32 = 0.8;
/// A glyph whose baseline is off the fragment's by more than this share of
/// the font size starts a new fragment (scripts stay: ~0.3–0.45 em).
const SAME_LINE: f32 = 0.55;

/// A run of glyphs on one baseline, in stream order.
#[derive(Debug, Clone)]
pub(super) struct Frag {
    pub(super) text: String,
    pub(super) x0: f32,
    pub(super) x1: f32,
    /// Baseline height (y up).
    pub(super) base: f32,
    /// Largest font size in the fragment.
    pub(super) size: f32,
    pub(super) bold: bool,
}

impl Frag {
    fn top(&self) -> f32 {
        self.base + 0.8 * self.size
    }

    fn bottom(&self) -> f32 {
        self.base - 0.25 * self.size
    }

    fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    fn mid(&self) -> f32 {
        (self.x0 + self.x1) / 2.0
    }
}

/// A page after step 1, in the frame of its dominant text direction.
#[derive(Debug, Default)]
pub(super) struct PageFrags {
    pub(super) frags: Vec<Frag>,
    /// Text in other directions (a rotated arXiv stamp, axis labels): one
    /// line per fragment.
    pub(super) odd: Vec<String>,
    pub(super) rules: Vec<Rule>,
    /// Body type size of the page (most characters).
    pub(super) body: f32,
}

/// Frame of a baseline direction: coordinates along the baseline and
/// across it (up).
#[derive(Debug, Clone, Copy)]
struct Frame {
    ux: f32,
    uy: f32,
}

impl Frame {
    fn along(&self, x: f32, y: f32) -> f32 {
        x * self.ux + y * self.uy
    }

    fn up(&self, x: f32, y: f32) -> f32 {
        -x * self.uy + y * self.ux
    }

    fn same(&self, g: &Glyph) -> bool {
        g.ux * self.ux + g.uy * self.uy > 0.99
    }
}

/// The four upright directions a page's text runs in.
const DIRECTIONS: [(f32, f32); 4] = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)];

struct Builder<'p> {
    page: &'p PageContent,
    frame: Frame,
    out: Vec<Frag>,
    cur: Option<Frag>,
    /// Where the last glyph's advance ended, along the baseline.
    pen_end: f32,
    pen_size: f32,
    /// A space glyph came since the last visible one.
    space: bool,
    /// Baseline and size of the current word while all its glyphs agree:
    /// tells a lone raised marker ("¹Institute" → "1 Institute").
    word: Option<(f32, f32)>,
}

impl Builder<'_> {
    fn push(&mut self, g: &Glyph) {
        let f = self.frame;
        let along = f.along(g.x, g.y);
        let up = f.up(g.x, g.y);
        let size = g.size.max(0.01);
        if g.space {
            self.space = true;
            if self.cur.is_some() {
                self.pen_end = self.pen_end.max(along + g.adv.max(0.0));
            }
            return;
        }
        let text = self.page.glyph_text(g);
        if let Some(cur) = &mut self.cur {
            let h = size.max(self.pen_size);
            let rise = up - cur.base;
            let gap = along - self.pen_end;
            if rise.abs() <= SAME_LINE * h.max(cur.size) && gap > -0.6 * h && gap < SPLIT_GAP * h {
                let small = size.min(self.pen_size);
                let marker = self.word.is_some_and(|(base, marker_size)| {
                    marker_size < 0.85 * size && (base - up).abs() > 0.2 * size
                });
                let spaced = self.space || gap > SPACE_GAP * small || marker;
                if spaced && !cur.text.ends_with(' ') {
                    cur.text.push(' ');
                }
                if spaced {
                    self.word = Some((up, size));
                } else {
                    self.word = self
                        .word
                        .filter(|&(b, s)| (b - up).abs() < 0.05 * s && (s - size).abs() < 0.05 * s);
                }
                // TeX (OT1, T1 without precomposed glyphs) draws an accent
                // and its letter as two glyphs, one over the other.
                if gap < -0.15 * h && !spaced && compose_accent(&mut cur.text, text) {
                    // Composed in place.
                } else {
                    push_text(&mut cur.text, text);
                }
                cur.x1 = cur.x1.max(along + g.adv.max(0.0));
                if size > cur.size * 1.15 {
                    // A larger glyph after smaller ones: its baseline is the
                    // line's (the smaller ones were scripts).
                    cur.base = up;
                }
                cur.size = cur.size.max(size);
                cur.bold |= g.bold;
                self.pen_end = along + g.adv.max(0.0);
                self.pen_size = size;
                self.space = false;
                return;
            }
        }
        self.finish();
        let mut t = String::with_capacity(32);
        push_text(&mut t, text);
        self.cur = Some(Frag {
            text: t,
            x0: along,
            x1: along + g.adv.max(0.0),
            base: up,
            size,
            bold: g.bold,
        });
        self.word = Some((up, size));
        self.pen_end = along + g.adv.max(0.0);
        self.pen_size = size;
        self.space = false;
    }

    fn finish(&mut self) {
        if let Some(mut f) = self.cur.take() {
            let trimmed = f.text.trim_end().len();
            f.text.truncate(trimmed);
            if !f.text.trim().is_empty() {
                self.out.push(f);
            }
        }
    }
}

/// The combining mark a spacing accent glyph stands for.
fn combining(accent: char) -> Option<char> {
    Some(match accent {
        '\u{B4}' | '\u{2CA}' => '\u{301}',
        '`' | '\u{2CB}' => '\u{300}',
        '^' | '\u{2C6}' => '\u{302}',
        '\u{A8}' => '\u{308}',
        '~' | '\u{2DC}' => '\u{303}',
        '\u{AF}' | '\u{2C9}' => '\u{304}',
        '\u{2D8}' => '\u{306}',
        '\u{2D9}' => '\u{307}',
        '\u{2DA}' => '\u{30A}',
        '\u{B8}' => '\u{327}',
        '\u{2DB}' => '\u{328}',
        '\u{2C7}' => '\u{30C}',
        '\u{2DD}' => '\u{30B}',
        _ => return None,
    })
}

/// Joins an accent and a letter drawn over each other (either first) into
/// one character: `´` + `e` → `é`, `ı` + `^` → `î`. False (nothing done)
/// when `text` and the end of `out` are not such a pair.
fn compose_accent(out: &mut String, text: &str) -> bool {
    use unicode_normalization::UnicodeNormalization;
    let mut chars = text.chars();
    let (Some(new), None) = (chars.next(), chars.next()) else {
        return false;
    };
    let Some(last) = out.chars().next_back() else {
        return false;
    };
    let (letter, mark) = match (combining(last), combining(new)) {
        (Some(m), None) if new.is_alphabetic() => (new, m),
        (None, Some(m)) if last.is_alphabetic() => (last, m),
        _ => return false,
    };
    // Dotless i and j under an accent are plain i and j.
    let letter = match letter {
        '\u{131}' => 'i',
        '\u{237}' => 'j',
        c => c,
    };
    out.pop();
    out.extend([letter, mark].iter().collect::<String>().nfc());
    true
}

fn push_text(out: &mut String, text: &str) {
    // Control codes come from fonts with broken encodings.
    out.extend(text.chars().filter(|c| !c.is_control()));
}

/// Step 1: the page's fragments.
pub(super) fn fragments(page: &PageContent) -> PageFrags {
    // The dominant direction: most glyphs.
    let mut counts = [0usize; 4];
    for g in &page.glyphs {
        for (k, (ux, uy)) in DIRECTIONS.iter().enumerate() {
            if g.ux * ux + g.uy * uy > 0.99 {
                counts[k] += 1;
            }
        }
    }
    let main = (0..4).max_by_key(|&k| (counts[k], 4 - k)).unwrap_or(0);
    let frame = Frame {
        ux: DIRECTIONS[main].0,
        uy: DIRECTIONS[main].1,
    };
    let mut b = Builder {
        page,
        frame,
        out: Vec::with_capacity(page.glyphs.len() / 8 + 1),
        cur: None,
        pen_end: 0.0,
        pen_size: 1.0,
        space: false,
        word: None,
    };
    let mut odd_glyphs: Vec<&Glyph> = Vec::new();
    for g in &page.glyphs {
        if frame.same(g) {
            b.push(g);
        } else {
            odd_glyphs.push(g);
        }
    }
    b.finish();
    let frags = b.out;
    // Other directions: each its own frame, stream order.
    let mut odd = Vec::new();
    let mut i = 0;
    while i < odd_glyphs.len() {
        let g = odd_glyphs[i];
        let frame = Frame { ux: g.ux, uy: g.uy };
        let mut ob = Builder {
            page,
            frame,
            out: Vec::new(),
            cur: None,
            pen_end: 0.0,
            pen_size: 1.0,
            space: false,
            word: None,
        };
        while i < odd_glyphs.len() && frame.same(odd_glyphs[i]) {
            ob.push(odd_glyphs[i]);
            i += 1;
        }
        ob.finish();
        odd.extend(ob.out.into_iter().map(|f| f.text));
    }
    // Rules in the same frame, as (along0, up0, along1, up1).
    let rules = page
        .rules
        .iter()
        .map(|r| {
            let (a0, a1) = (frame.along(r.x0, r.y0), frame.along(r.x1, r.y1));
            let (u0, u1) = (frame.up(r.x0, r.y0), frame.up(r.x1, r.y1));
            Rule {
                x0: a0.min(a1),
                y0: u0.min(u1),
                x1: a0.max(a1),
                y1: u0.max(u1),
            }
        })
        .collect();
    let body = body_size(&frags);
    PageFrags {
        frags,
        odd,
        rules,
        body,
    }
}

/// The type size most characters are set in (rounded to half points).
fn body_size(frags: &[Frag]) -> f32 {
    let mut hist: HashMap<i32, usize> = HashMap::new();
    for f in frags {
        *hist.entry((f.size * 2.0).round() as i32).or_default() += f.text.len();
    }
    hist.into_iter()
        .max_by_key(|&(k, n)| (n, -k))
        .map_or(10.0, |(k, _)| k as f32 / 2.0)
        .max(1.0)
}

// ---------------------------------------------------------------------------
// Rows: fragments of the whole page grouped by baseline
// ---------------------------------------------------------------------------

/// Indices of fragments sharing a baseline, left to right; rows top down.
fn rows_of(frags: &[Frag], idx: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = idx.to_vec();
    order.sort_by(|&a, &b| frags[b].base.total_cmp(&frags[a].base));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut row_base = f32::NAN;
    let mut row_size = 0.0f32;
    for i in order {
        let f = &frags[i];
        let same = !row_base.is_nan()
            && (row_base - f.base).abs()
                <= 0.45 * row_size.min(f.size).max(0.5 * row_size.max(f.size));
        if same {
            if let Some(r) = rows.last_mut() {
                r.push(i);
            }
            row_size = row_size.max(f.size);
        } else {
            rows.push(vec![i]);
            row_base = f.base;
            row_size = f.size;
        }
    }
    for r in &mut rows {
        r.sort_by(|&a, &b| frags[a].x0.total_cmp(&frags[b].x0));
    }
    rows
}

fn row_text(frags: &[Frag], row: &[usize]) -> String {
    let mut s = String::new();
    let mut last: Option<&Frag> = None;
    for &i in row {
        let f = &frags[i];
        if let Some(p) = last {
            if f.x0 - p.x1 > SPACE_GAP * f.size.min(p.size) || !s.ends_with(' ') {
                s.push(' ');
            }
        }
        s.push_str(&f.text);
        last = Some(f);
    }
    s
}

// ---------------------------------------------------------------------------
// Step 2: furniture (document-wide)
// ---------------------------------------------------------------------------

static PAGE_NUMBER: LazyLock<regex::Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:(?:page|p\.)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?|\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?|[-–—]\s*\d{1,4}\s*[-–—]|[ivxlc]{1,6})$",
    )
});

/// A running line's key: lower case, digits as `#`, spaces collapsed.
fn furniture_key(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// Rows at a page's top and bottom edges that may be headers or footers:
/// (fragment indices, key, is page number).
pub(super) struct EdgeRow {
    pub(super) frags: Vec<usize>,
    pub(super) key: String,
    pub(super) page_number: bool,
}

/// Up to two rows at each edge of the page, each set apart from the next
/// row inward by a gap and in type no larger than the body's.
pub(super) fn edge_rows(p: &PageFrags) -> Vec<EdgeRow> {
    let idx: Vec<usize> = (0..p.frags.len()).collect();
    let rows = rows_of(&p.frags, &idx);
    let mut out = Vec::new();
    if rows.len() < 3 {
        return out;
    }
    let gap_after = |a: &[usize], b: &[usize]| {
        let low = a
            .iter()
            .map(|&i| p.frags[i].bottom())
            .fold(f32::MAX, f32::min);
        let high = b.iter().map(|&i| p.frags[i].top()).fold(f32::MIN, f32::max);
        low - high
    };
    let small = |r: &[usize]| r.iter().all(|&i| p.frags[i].size <= p.body * 1.1);
    let mut take = |r: &[usize]| {
        let text = row_text(&p.frags, r);
        out.push(EdgeRow {
            frags: r.to_vec(),
            key: furniture_key(&text),
            page_number: PAGE_NUMBER.is_match(text.trim()),
        });
    };
    let n = rows.len();
    for k in 0..2.min(n - 2) {
        if small(&rows[k]) && gap_after(&rows[k], &rows[k + 1]) > 0.5 * p.body {
            take(&rows[k]);
        } else {
            break;
        }
    }
    for k in 0..2.min(n - 2) {
        let r = &rows[n - 1 - k];
        if small(r) && gap_after(&rows[n - 2 - k], r) > 0.5 * p.body {
            take(r);
        } else {
            break;
        }
    }
    out
}

/// Which edge rows of which pages are furniture: page numbers, and rows
/// whose key is an edge row on at least two other pages (a third of the
/// pages for long documents).
pub(super) fn furniture(edges: &[Vec<EdgeRow>]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for page in edges {
        let mut keys: Vec<&str> = page.iter().map(|r| r.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            *seen.entry(k).or_default() += 1;
        }
    }
    let needed = (edges.len() / 4).max(3).min(edges.len()).max(2);
    edges
        .iter()
        .map(|page| {
            page.iter()
                .filter(|r| {
                    r.page_number
                        || (seen.get(r.key.as_str()).copied().unwrap_or(0) >= needed
                            && r.key.chars().any(char::is_alphanumeric))
                })
                .flat_map(|r| r.frags.iter().copied())
                .collect()
        })
        .collect()
}

/// Marginal line numbers: five or more number-only fragments in one
/// vertical line (same right or left edge), mostly increasing down the
/// page, each the first or last thing on its row.
pub(super) fn line_numbers(p: &PageFrags) -> Vec<usize> {
    let numeric: Vec<usize> = (0..p.frags.len())
        .filter(|&i| {
            let t = p.frags[i].text.trim();
            !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    if numeric.len() < 5 {
        return Vec::new();
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &i in &numeric {
        let f = &p.frags[i];
        match groups.iter_mut().find(|g| {
            let h = &p.frags[g[0]];
            (h.x1 - f.x1).abs() < 2.0 || (h.x0 - f.x0).abs() < 2.0
        }) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    let mut out = Vec::new();
    for mut g in groups {
        if g.len() < 5 {
            continue;
        }
        g.sort_by(|&a, &b| p.frags[b].base.total_cmp(&p.frags[a].base));
        let values: Vec<i64> = g
            .iter()
            .filter_map(|&i| p.frags[i].text.trim().parse().ok())
            .collect();
        let rising = values.windows(2).filter(|w| w[1] > w[0]).count();
        if rising * 10 < values.len().saturating_sub(1) * 8 {
            continue;
        }
        // Each number stands apart from the text of its row.
        let apart = g.iter().all(|&i| {
            let f = &p.frags[i];
            !p.frags.iter().any(|o| {
                !std::ptr::eq(o, f)
                    && (o.base - f.base).abs() < 0.5 * f.size
                    && o.x0 < f.x1 + 0.3 * f.size
                    && o.x1 > f.x0 - 0.3 * f.size
            })
        });
        let span = p.frags[g[0]].base - p.frags[g[g.len() - 1]].base;
        if apart && span > 10.0 * p.body {
            out.extend(g);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Steps 3–5: one page to text
// ---------------------------------------------------------------------------

static TABLE_CAPTION: LazyLock<regex::Regex> = LazyLock::new(|| {
    re(
        r"^(?:Table|TABLE|Tab\.|T\s?ABLE)\s+([0-9]{1,3}|[IVXL]{1,6}|[A-Z]\.?[0-9]{1,2}|S[0-9]{1,2})(?:\s*[:.|—–-]\s*|\s*$)(.*)$",
    )
});

static FIGURE_CAPTION: LazyLock<regex::Regex> = LazyLock::new(|| {
    re(
        r"^(?:Figure|FIGURE|Fig\.|FIG\.|Fig|F\s?IGURE)\s*([0-9]{1,3}|[IVXL]{1,6}|[A-Z]\.?[0-9]{1,2}|S[0-9]{1,2})(?:\s*[:.|—–-]\s*|\s*$)(.*)$",
    )
});

static FOOTNOTE_MARK: LazyLock<regex::Regex> =
    LazyLock::new(|| re(r"^(?:([0-9]{1,2}|[*∗†‡§¶‖#]{1,2})\s*(\S.*)|([a-z])\s+(\p{Lu}.*))$"));

/// What the layout found on a page, for tests and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct PageStats {
    pub(super) columns: usize,
    pub(super) tables: usize,
    pub(super) captions: usize,
    pub(super) footnotes: usize,
}

/// An element placed in reading order.
enum Item {
    /// Line text and its fragment (for block decisions).
    Line(Line),
    /// A rendered table block.
    Table { top: f32, text: String },
}

struct Line {
    text: String,
    base: f32,
    top: f32,
    size: f32,
    x0: f32,
}

impl Item {
    fn top(&self) -> f32 {
        match self {
            Item::Line(l) => l.top,
            Item::Table { top, .. } => *top,
        }
    }
}

/// The gutter between two columns: (left edge, right edge).
fn find_gutter(p: &PageFrags, idx: &[usize]) -> Option<(f32, f32)> {
    if idx.len() < 8 {
        return None;
    }
    let lo = idx.iter().map(|&i| p.frags[i].x0).fold(f32::MAX, f32::min);
    let hi = idx.iter().map(|&i| p.frags[i].x1).fold(f32::MIN, f32::max);
    let width = hi - lo;
    if !(width.is_finite() && width > 20.0 * p.body.min(10.0)) || width > 20_000.0 {
        return None;
    }
    // Lines as wide as most of the page (title, abstract, a full-width
    // float) say nothing about columns: the gutter is looked for among the
    // narrower fragments, and is real only when those hold most of the
    // page's text.
    let narrow: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| p.frags[i].width() <= 0.55 * width)
        .collect();
    let n = width.ceil() as usize + 2;
    let mut cross = vec![0i32; n + 1];
    let mut ends = vec![0i32; n + 1];
    let mut starts = vec![0i32; n + 1];
    for &i in &narrow {
        let f = &p.frags[i];
        let a = ((f.x0 - lo).max(0.0) as usize).min(n - 1);
        let b = ((f.x1 - lo).max(0.0).ceil() as usize).min(n - 1);
        if b > a + 1 {
            cross[a + 1] += 1;
            cross[b] -= 1;
        }
        ends[b] += 1;
        starts[a] += 1;
    }
    for k in 1..=n {
        cross[k] += cross[k - 1];
        ends[k] += ends[k - 1];
    }
    // starts: fragments starting at or after x = total - prefix before x.
    let total = narrow.len() as i32;
    let mut before = vec![0i32; n + 1];
    for k in 1..=n {
        before[k] = before[k - 1] + starts[k - 1];
    }
    let (from, to) = ((0.3 * width) as usize, (0.7 * width) as usize);
    let best = (from..=to.min(n - 1)).map(|x| cross[x]).min()?;
    // The widest run of positions crossed by hardly more fragments than
    // the least-crossed one (a centred title line may cross part of it).
    let allowed = best + 1 + best / 2;
    let mut run: Option<(usize, usize)> = None;
    let mut widest: Option<(usize, usize)> = None;
    for (x, &c) in cross.iter().enumerate().take(to.min(n - 1) + 1).skip(from) {
        if c <= allowed {
            run = Some(run.map_or((x, x), |(s, _)| (s, x)));
        } else {
            run = None;
        }
        if let Some((s, e)) = run {
            if widest.is_none_or(|(ws, we)| e - s > we - ws) {
                widest = Some((s, e));
            }
        }
    }
    let (s, e) = widest?;
    let mid = (s + e) / 2;
    let left = ends[mid];
    let right = total - before[mid + 1];
    let (g0, g1) = (lo + s as f32, lo + e as f32 + 1.0);
    // Fragments crossing the gutter count against it only between the
    // top and the bottom of the columns: a centred title block above them
    // (or a footer below) is no evidence of one column.
    let sided =
        |left_side: bool| {
            narrow.iter().map(|&i| &p.frags[i]).filter(move |f| {
                if left_side {
                    f.x1 <= g1
                } else {
                    f.x0 >= g0
                }
            })
        };
    let top = sided(true)
        .map(|f| f.base)
        .fold(f32::MIN, f32::max)
        .min(sided(false).map(|f| f.base).fold(f32::MIN, f32::max));
    let bottom = sided(true)
        .map(|f| f.base)
        .fold(f32::MAX, f32::min)
        .max(sided(false).map(|f| f.base).fold(f32::MAX, f32::min));
    let crossed = narrow
        .iter()
        .map(|&i| &p.frags[i])
        .filter(|f| f.x0 < g1 - 1.0 && f.x1 > g0 + 1.0 && f.base < top && f.base > bottom)
        .count() as i32;
    let side = left.min(right);
    let chars = |keep: &dyn Fn(&Frag) -> bool| -> usize {
        idx.iter()
            .map(|&i| &p.frags[i])
            .filter(|f| keep(f))
            .map(|f| f.text.len())
            .sum()
    };
    let sided = chars(&|f: &Frag| f.x1 <= g1 || f.x0 >= g0);
    let all = chars(&|_| true);
    if side >= 4 && crossed * 4 <= side && (e - s) as f32 >= 2.0 && sided * 2 >= all {
        Some((lo + s as f32, lo + e as f32 + 1.0))
    } else {
        None
    }
}

/// Renders one page (after furniture removal) as text.
pub(super) fn render_page(p: &PageFrags, drop: &[usize]) -> (String, PageStats) {
    let mut stats = PageStats::default();
    let mut keep = vec![true; p.frags.len()];
    for &i in drop {
        if let Some(k) = keep.get_mut(i) {
            *k = false;
        }
    }
    let idx: Vec<usize> = (0..p.frags.len()).filter(|&i| keep[i]).collect();
    let gutter = find_gutter(p, &idx);
    stats.columns = if gutter.is_some() { 2 } else { 1 };
    // Zone of each fragment: 0 spanning (or single column), 1 left, 2 right.
    let zone_of = |x0: f32, x1: f32| -> u8 {
        match gutter {
            None => 0,
            Some((g0, g1)) => {
                let reach = 1.5 * p.body;
                if x0 < g0 - reach && x1 > g1 + reach {
                    0
                } else if (x0 + x1) / 2.0 < (g0 + g1) / 2.0 {
                    1
                } else {
                    2
                }
            }
        }
    };

    // Tables, anchored on their captions.
    let mut items: Vec<(u8, Item)> = Vec::new();
    let mut used = vec![false; p.frags.len()];
    let rows = rows_of(&p.frags, &idx);
    let mut r = 0;
    while r < rows.len() {
        // A caption starts its line in its column: the first fragment of
        // the row in that column.
        let starts: Vec<usize> = rows[r]
            .iter()
            .copied()
            .filter(|&i| {
                let z = zone_of(p.frags[i].x0, p.frags[i].x1);
                !rows[r].iter().any(|&j| {
                    j != i
                        && zone_of(p.frags[j].x0, p.frags[j].x1) == z
                        && p.frags[j].x1 <= p.frags[i].x0
                })
            })
            .collect();
        for first in starts {
            let caption = TABLE_CAPTION.is_match(p.frags[first].text.trim());
            if !caption || used[first] {
                continue;
            }
            if let Some(t) = table_at(p, &rows, r, first, gutter, &used) {
                for &i in &t.frags {
                    used[i] = true;
                }
                stats.tables += 1;
                let zone = zone_of(t.x0, t.x1);
                items.push((
                    zone,
                    Item::Table {
                        top: t.top,
                        text: t.text,
                    },
                ));
            }
        }
        r += 1;
    }

    // Lines per zone.
    let mut zones: [Vec<usize>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for &i in &idx {
        if !used[i] {
            let f = &p.frags[i];
            zones[usize::from(zone_of(f.x0, f.x1))].push(i);
        }
    }
    for (z, members) in zones.iter().enumerate() {
        for row in rows_of(&p.frags, members) {
            let fr: Vec<&Frag> = row.iter().map(|&i| &p.frags[i]).collect();
            let line = Line {
                text: row_text(&p.frags, &row),
                base: fr[0].base,
                top: fr.iter().map(|f| f.top()).fold(f32::MIN, f32::max),
                size: fr.iter().map(|f| f.size).fold(0.0, f32::max),
                x0: fr[0].x0,
            };
            items.push((z as u8, Item::Line(line)));
        }
    }

    // Bands: spanning items cut the page; inside a band, left then right.
    let mut spanning: Vec<Item> = Vec::new();
    let mut cols: [Vec<Item>; 2] = [Vec::new(), Vec::new()];
    for (z, item) in items {
        match z {
            0 => spanning.push(item),
            1 => cols[0].push(item),
            _ => cols[1].push(item),
        }
    }
    spanning.sort_by(|a, b| b.top().total_cmp(&a.top()));
    for c in &mut cols {
        c.sort_by(|a, b| b.top().total_cmp(&a.top()));
    }
    let mut footnotes: Vec<String> = Vec::new();
    let mut out = String::new();
    let [left, right] = cols;
    let mut col_iters = [left.into_iter().peekable(), right.into_iter().peekable()];
    let mut block: Vec<Item> = Vec::new();
    let mut spans = spanning.into_iter().peekable();
    loop {
        // The next spanning item, and the column items above it.
        let limit = spans.peek().map(|s| s.top());
        for it in col_iters.iter_mut() {
            block.clear();
            while let Some(item) = it.next_if(|i| limit.is_none_or(|l| i.top() > l)) {
                block.push(item);
            }
            emit_zone(&mut block, p.body, &mut out, &mut footnotes, &mut stats);
        }
        match spans.next() {
            Some(item) => {
                // Consecutive spanning items form one zone.
                block.clear();
                block.push(item);
                while let Some(next) = spans.next_if(|s| {
                    let top = s.top();
                    col_iters
                        .iter_mut()
                        .all(|c| c.peek().is_none_or(|i| i.top() < top))
                }) {
                    block.push(next);
                }
                emit_zone(&mut block, p.body, &mut out, &mut footnotes, &mut stats);
            }
            None => {
                if col_iters.iter_mut().all(|c| c.peek().is_none()) {
                    break;
                }
            }
        }
    }
    for f in footnotes {
        push_block(&mut out, &f);
    }
    if !p.odd.is_empty() {
        let odd = p.odd.join("\n");
        out = if out.is_empty() {
            odd
        } else {
            format!("{odd}\n\n{out}")
        };
    }
    (out, stats)
}

fn push_block(out: &mut String, text: &str) {
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(text);
}

/// Writes one zone's items (top to bottom) as blocks; footnotes at its
/// foot go to `footnotes`.
fn emit_zone(
    items: &mut Vec<Item>,
    body: f32,
    out: &mut String,
    footnotes: &mut Vec<String>,
    stats: &mut PageStats,
) {
    if items.is_empty() {
        return;
    }
    // Footnotes: trailing small-type lines below the last body-size line,
    // the first starting with a marker.
    let last_body = items.iter().rposition(|i| match i {
        Item::Line(l) => l.size >= 0.95 * body,
        Item::Table { .. } => true,
    });
    let tail_start = last_body.map_or(0, |k| k + 1);
    let mut notes: Vec<String> = Vec::new();
    if tail_start < items.len() {
        let starts_marked = match &items[tail_start] {
            Item::Line(l) => l.size < 0.92 * body && FOOTNOTE_MARK.is_match(&l.text),
            Item::Table { .. } => false,
        };
        let all_small = items[tail_start..]
            .iter()
            .all(|i| matches!(i, Item::Line(l) if l.size < 0.92 * body));
        if starts_marked && all_small && tail_start > 0 {
            let tail: Vec<Item> = items.drain(tail_start..).collect();
            let mut first_x = f32::NAN;
            for it in tail {
                let Item::Line(l) = it else { continue };
                let marked = FOOTNOTE_MARK.captures(&l.text);
                let new_note = notes.is_empty()
                    || marked.is_some() && (first_x.is_nan() || l.x0 <= first_x + 0.5 * l.size);
                if new_note {
                    if first_x.is_nan() {
                        first_x = l.x0;
                    }
                    notes.push(l.text.clone());
                } else if let Some(n) = notes.last_mut() {
                    join_line(n, &l.text);
                }
            }
        }
    }
    for n in notes {
        let (mark, text) = match FOOTNOTE_MARK.captures(&n) {
            Some(c) => (
                c.get(1)
                    .or_else(|| c.get(3))
                    .map_or("", |m| m.as_str())
                    .to_string(),
                c.get(2)
                    .or_else(|| c.get(4))
                    .map_or("", |m| m.as_str())
                    .to_string(),
            ),
            None => (String::new(), n.clone()),
        };
        stats.footnotes += 1;
        footnotes.push(format!("[FOOTNOTE {mark}: {text}]"));
    }

    // Blocks by vertical gaps and type size.
    let pitches: Vec<f32> = items
        .windows(2)
        .filter_map(|w| match (&w[0], &w[1]) {
            (Item::Line(a), Item::Line(b)) => Some(a.base - b.base),
            _ => None,
        })
        .filter(|d| *d > 0.0)
        .collect();
    let pitch = median(&pitches)
        .unwrap_or(1.2 * body)
        .clamp(0.8 * body, 2.0 * body);
    let mut blocks: Vec<(bool, Vec<String>)> = Vec::new();
    let mut prev: Option<&Line> = None;
    for it in items.iter() {
        match it {
            Item::Table { text, .. } => {
                blocks.push((true, vec![text.clone()]));
                prev = None;
            }
            Item::Line(l) => {
                let new_block = match prev {
                    None => true,
                    Some(p) => {
                        let gap = p.base - l.base;
                        // A wider gap, a move up (a float), or a change
                        // of type size (a caption or heading in another
                        // size) starts a block.
                        gap > 1.45 * pitch
                            || gap < -0.5 * pitch
                            || (l.size - p.size).abs() > 0.08 * p.size.max(l.size)
                    }
                };
                if new_block {
                    blocks.push((false, Vec::new()));
                }
                if let Some(b) = blocks.last_mut() {
                    b.1.push(l.text.clone());
                }
                prev = Some(l);
            }
        }
    }
    for (is_table, lines) in blocks {
        if is_table {
            push_block(out, &lines.concat());
            continue;
        }
        let first = lines.first().map_or("", String::as_str);
        if let Some(c) = FIGURE_CAPTION.captures(first.trim()) {
            let label = c.get(1).map_or("", |m| m.as_str());
            let mut text = c.get(2).map_or("", |m| m.as_str()).to_string();
            for l in &lines[1..] {
                join_line(&mut text, l);
            }
            stats.captions += 1;
            push_block(out, &format!("[FIGURE {label}: {}]", text.trim()));
            continue;
        }
        push_block(out, &lines.join("\n"));
    }
}

/// Joins a continuation line, closing up a word hyphenated at the break.
fn join_line(into: &mut String, next: &str) {
    let next = next.trim();
    if next.is_empty() {
        return;
    }
    let ends_hyphen = into.ends_with('-')
        && into.chars().rev().nth(1).is_some_and(char::is_alphabetic)
        && next.chars().next().is_some_and(char::is_lowercase);
    if ends_hyphen {
        into.pop();
    } else if !into.is_empty() {
        into.push(' ');
    }
    into.push_str(next);
}

fn median(v: &[f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    Some(s[s.len() / 2])
}

/// A table found at a caption.
struct Table {
    frags: Vec<usize>,
    text: String,
    top: f32,
    x0: f32,
    x1: f32,
}

/// The table whose caption starts row `r`, or `None` when no rows of cells
/// follow (or precede) it: then the caption stays ordinary text.
fn table_at(
    p: &PageFrags,
    rows: &[Vec<usize>],
    r: usize,
    first: usize,
    gutter: Option<(f32, f32)>,
    used: &[bool],
) -> Option<Table> {
    let frags = &p.frags;
    let cap = &frags[first];
    let body = p.body;
    // Horizontal extent: the caption's column, or the page.
    let all_x0 = frags.iter().map(|f| f.x0).fold(f32::MAX, f32::min);
    let all_x1 = frags.iter().map(|f| f.x1).fold(f32::MIN, f32::max);
    let cap_x1 = cap.x1;
    let (mut x0, mut x1) = match gutter {
        Some((g0, g1)) if cap_x1 <= g1 + body => (all_x0, g0 + 0.5 * body),
        Some((g0, g1)) if cap.x0 >= g0 - body => (g1 - 0.5 * body, all_x1),
        _ => (all_x0, all_x1),
    };
    let in_range = |i: usize, x0: f32, x1: f32| {
        let f = &frags[i];
        let overlap = f.x1.min(x1) - f.x0.max(x0);
        !used[i] && overlap >= 0.5 * f.width().max(0.1)
    };
    // The caption itself: this row's fragments in range, plus following
    // rows of the same type size without cell gaps.
    let mut caption_rows = vec![r];
    let mut k = r + 1;
    while k < rows.len() {
        let row: Vec<usize> = rows[k]
            .iter()
            .copied()
            .filter(|&i| in_range(i, x0, x1))
            .collect();
        let last = caption_rows[caption_rows.len() - 1];
        let prev_bottom = rows[last]
            .iter()
            .copied()
            .filter(|&i| in_range(i, x0, x1))
            .map(|i| frags[i].bottom())
            .fold(f32::MAX, f32::min);
        // A row of the other column only: look past it.
        let Some(&f0) = row.first() else {
            k += 1;
            continue;
        };
        let gap = prev_bottom - frags[f0].top();
        let rule_between = p.rules.iter().any(|ru| {
            ru.y1 - ru.y0 < 3.0 && ru.y0 < prev_bottom + 1.0 && ru.y1 > frags[f0].top() - 1.0
        });
        // A caption that is only its label ("Table 1", "TABLE II": APA,
        // IEEE) takes its title from the next line even across a wider
        // gap.
        let bare_label = k == r + 1
            && TABLE_CAPTION
                .captures(row_text(frags, &rows[r]).trim())
                .and_then(|c| c.get(2))
                .is_none_or(|m| m.as_str().trim().is_empty());
        let max_gap = if bare_label { 1.6 } else { 0.6 } * cap.size;
        if row.len() == 1
            && (frags[f0].size - cap.size).abs() < 0.2 * cap.size
            && gap < max_gap
            && !rule_between
            && k - r < 4
        {
            caption_rows.push(k);
            k += 1;
        } else {
            break;
        }
    }
    let below = k;
    // Rules under the caption narrow the table to their extent.
    let cap_bottom = rows[below - 1]
        .iter()
        .map(|&i| frags[i].bottom())
        .fold(f32::MAX, f32::min);
    let near_rules: Vec<&Rule> = p
        .rules
        .iter()
        .filter(|ru| {
            ru.y1 - ru.y0 < 3.0
                && ru.x1 - ru.x0 > 4.0 * body
                && ru.y1 < cap_bottom + 1.0
                && ru.x0 < x1
                && ru.x1 > x0
        })
        .collect();
    if let Some(top_rule) = near_rules
        .iter()
        .filter(|ru| ru.y1 > cap_bottom - 4.0 * body)
        .max_by(|a, b| a.y1.total_cmp(&b.y1))
    {
        x0 = x0.max(top_rule.x0 - body);
        x1 = x1.min(top_rule.x1 + body);
    }
    let table_rows = scan_rows(p, rows, below, x0, x1, used, true);
    let (table_rows, caption_top) = if table_rows.is_empty() {
        // The caption may sit below its table.
        let above = scan_rows(p, rows, r, x0, x1, used, false);
        (above, None)
    } else {
        (table_rows, Some(cap.top()))
    };
    if table_rows.is_empty() {
        return None;
    }
    // Caption text: the label from the first row, the title from the
    // rest of it and the rows that continue it.
    let mut label = String::new();
    let mut title = String::new();
    for &cr in &caption_rows {
        let row: Vec<usize> = rows[cr]
            .iter()
            .copied()
            .filter(|&i| in_range(i, x0, x1) || cr == r && i == first)
            .collect();
        let text = row_text(frags, &row);
        if cr == r {
            match TABLE_CAPTION.captures(text.trim()) {
                Some(c) => {
                    label = c.get(1).map_or("", |m| m.as_str()).to_string();
                    title = c.get(2).map_or("", |m| m.as_str()).trim().to_string();
                }
                None => title = text.trim().to_string(),
            }
        } else {
            join_line(&mut title, &text);
        }
    }
    let mut used_frags: Vec<usize> = caption_rows
        .iter()
        .flat_map(|&cr| rows[cr].iter().copied())
        .filter(|&i| in_range(i, x0, x1) || i == first)
        .collect();
    let cells: Vec<Vec<usize>> = table_rows;
    let mut text = String::new();
    let _ = writeln!(text, "[TABLE {label}: {title}]");
    text.push_str(&render_cells(frags, &cells));
    text.push_str("[/TABLE]");
    let top = caption_top.unwrap_or_else(|| {
        cells
            .first()
            .and_then(|row| row.first())
            .map_or(cap.top(), |&i| frags[i].top())
    });
    used_frags.extend(cells.iter().flatten().copied());
    Some(Table {
        frags: used_frags,
        text,
        top,
        x0,
        x1,
    })
}

/// Rows of cells next to a caption: downward from row `from` (or upward
/// from the row before it), within `x0..x1`, until a paragraph-like row, a
/// large gap, another caption or the end of the rules that frame the
/// table.
fn scan_rows(
    p: &PageFrags,
    rows: &[Vec<usize>],
    from: usize,
    x0: f32,
    x1: f32,
    used: &[bool],
    down: bool,
) -> Vec<Vec<usize>> {
    let frags = &p.frags;
    let body = p.body;
    let width = x1 - x0;
    let in_range = |i: usize| {
        let f = &frags[i];
        !used[i] && f.x1.min(x1) - f.x0.max(x0) >= 0.5 * f.width().max(0.1)
    };
    let order: Vec<usize> = if down {
        (from..rows.len()).collect()
    } else {
        (0..from).rev().collect()
    };
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut multi = 0usize;
    let mut last_edge: Option<f32> = None;
    for k in order {
        let row: Vec<usize> = rows[k].iter().copied().filter(|&i| in_range(i)).collect();
        if row.is_empty() {
            continue;
        }
        let top = row.iter().map(|&i| frags[i].top()).fold(f32::MIN, f32::max);
        let bottom = row
            .iter()
            .map(|&i| frags[i].bottom())
            .fold(f32::MAX, f32::min);
        if let Some(edge) = last_edge {
            let gap = if down { edge - top } else { bottom - edge };
            let bridged = p.rules.iter().any(|ru| {
                ru.y1 - ru.y0 < 3.0
                    && ru.x0 < x1
                    && ru.x1 > x0
                    && if down {
                        ru.y0 < edge && ru.y1 > top
                    } else {
                        ru.y1 > edge && ru.y0 < bottom
                    }
            });
            if gap > 2.2 * body && !bridged || gap > 6.0 * body {
                break;
            }
        }
        let text = row_text(frags, &row);
        let words = text.split_whitespace().count();
        let f0 = &frags[row[0]];
        let paragraph =
            row.len() == 1 && f0.width() > 0.7 * width && words >= 8 && f0.size >= 0.95 * body;
        if paragraph
            || TABLE_CAPTION.is_match(text.trim())
            || FIGURE_CAPTION.is_match(text.trim()) && row.len() == 1
        {
            break;
        }
        if row.len() >= 2 {
            multi += 1;
        }
        out.push(row);
        last_edge = Some(if down { bottom } else { top });
    }
    // A table has at least two rows of two or more cells.
    if multi < 2 {
        return Vec::new();
    }
    // Trailing single-fragment rows after the last multi-cell row belong
    // to the table only as notes when they are in small type.
    while let Some(last) = out.last() {
        if last.len() == 1 && frags[last[0]].size >= 0.95 * body {
            out.pop();
        } else {
            break;
        }
    }
    if !down {
        out.reverse();
    }
    out
}

/// Rows of fragments as `cell | cell | …` lines, cells assigned to the
/// columns found from the whitespace of the rows with the most cells.
fn render_cells(frags: &[Frag], rows: &[Vec<usize>]) -> String {
    let widest = rows.iter().map(Vec::len).max().unwrap_or(0);
    // Column boundaries: gaps in the union of the x-ranges of the rows
    // with most cells.
    let mut spans: Vec<(f32, f32)> = rows
        .iter()
        .filter(|r| r.len() + 1 >= widest)
        .flatten()
        .map(|&i| (frags[i].x0, frags[i].x1))
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut cols: Vec<(f32, f32)> = Vec::new();
    for (a, b) in spans {
        match cols.last_mut() {
            Some(c) if a <= c.1 + 1.0 => c.1 = c.1.max(b),
            _ => cols.push((a, b)),
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut cells: Vec<String> = vec![String::new(); cols.len().max(1)];
        for &i in row {
            let f = &frags[i];
            let c = cols
                .iter()
                .position(|&(a, b)| f.mid() >= a - 1.0 && f.mid() <= b + 1.0)
                .or_else(|| cols.iter().position(|&(a, b)| f.x1 > a && f.x0 < b))
                .unwrap_or_else(|| {
                    cols.iter()
                        .enumerate()
                        .min_by(|x, y| {
                            (x.1 .0 - f.mid())
                                .abs()
                                .total_cmp(&(y.1 .0 - f.mid()).abs())
                        })
                        .map_or(0, |(k, _)| k)
                });
            let cell = &mut cells[c.min(cols.len().saturating_sub(1))];
            if !cell.is_empty() {
                cell.push(' ');
            }
            cell.push_str(f.text.trim());
        }
        while cells.last().is_some_and(String::is_empty) && cells.len() > 1 {
            cells.pop();
        }
        if cells.iter().all(String::is_empty) {
            continue;
        }
        out.push_str(&cells.join(" | "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(text: &str, x0: f32, x1: f32, base: f32, size: f32) -> Frag {
        Frag {
            text: text.into(),
            x0,
            x1,
            base,
            size,
            bold: false,
        }
    }

    fn page(frags: Vec<Frag>) -> PageFrags {
        let body = body_size(&frags);
        PageFrags {
            frags,
            body,
            ..Default::default()
        }
    }

    #[test]
    fn patterns_compile_and_match() {
        assert!(TABLE_CAPTION.is_match("Table 2: Results on the test set"));
        assert!(TABLE_CAPTION.is_match("TABLE IV"));
        assert!(TABLE_CAPTION.is_match("Table 1"));
        assert!(!TABLE_CAPTION.is_match("Table 2 lists the scores"));
        assert!(FIGURE_CAPTION.is_match("Fig. 3. Loss curves"));
        assert!(FIGURE_CAPTION.is_match("Figure 12: Ablation"));
        assert!(!FIGURE_CAPTION.is_match("Figure 3 shows that"));
        assert!(FOOTNOTE_MARK.is_match("1 https://example.org"));
        assert!(FOOTNOTE_MARK.is_match("* Corresponding author"));
        assert!(FOOTNOTE_MARK.is_match("∗ Both authors contributed equally."));
        assert!(FOOTNOTE_MARK.is_match("a Also at Example University"));
        assert!(!FOOTNOTE_MARK.is_match("a set of results in small type"));
        assert!(PAGE_NUMBER.is_match("12"));
        assert!(PAGE_NUMBER.is_match("Page 3 of 9"));
        assert!(!PAGE_NUMBER.is_match("3 Results"));
    }

    #[test]
    fn overprinted_accents_compose() {
        let mut s = "f\u{B4}".to_string();
        assert!(compose_accent(&mut s, "e"));
        assert_eq!(s, "fé");
        let mut s = "Lema\u{131}".to_string();
        assert!(compose_accent(&mut s, "\u{2C6}"));
        assert_eq!(s, "Lemaî");
        let mut s = "x".to_string();
        assert!(!compose_accent(&mut s, "y"));
        assert!(!compose_accent(&mut s, "ab"));
    }

    #[test]
    fn two_columns_read_left_then_right() {
        let mut f = Vec::new();
        for k in 0..10 {
            let y = 700.0 - 12.0 * k as f32;
            f.push(frag(
                &format!("left line {k} text goes here"),
                72.0,
                290.0,
                y,
                10.0,
            ));
            f.push(frag(
                &format!("right line {k} text goes here"),
                320.0,
                540.0,
                y,
                10.0,
            ));
        }
        let p = page(f);
        let (text, stats) = render_page(&p, &[]);
        assert_eq!(stats.columns, 2);
        let l9 = text.find("left line 9").unwrap();
        let r0 = text.find("right line 0").unwrap();
        assert!(l9 < r0, "{text}");
    }

    #[test]
    fn a_captioned_table_becomes_rows_of_cells() {
        let mut f = vec![frag(
            "Body text paragraph that is long enough to be a line of prose here.",
            72.0,
            540.0,
            720.0,
            10.0,
        )];
        f.push(frag("Table 1: Scores per model.", 72.0, 250.0, 690.0, 10.0));
        let rows = [
            ["Model", "Acc", "F1"],
            ["Base", "71.2", "0.66"],
            ["Ours", "80.5", "0.74"],
        ];
        for (k, row) in rows.iter().enumerate() {
            let y = 670.0 - 12.0 * k as f32;
            for (c, cell) in row.iter().enumerate() {
                let x = 72.0 + 100.0 * c as f32;
                f.push(frag(cell, x, x + 30.0, y, 10.0));
            }
        }
        f.push(frag(
            "More prose follows the table and it is a long line of words too.",
            72.0,
            540.0,
            600.0,
            10.0,
        ));
        let p = page(f);
        let (text, stats) = render_page(&p, &[]);
        assert_eq!(stats.tables, 1, "{text}");
        assert!(
            text.contains("[TABLE 1: Scores per model.]\nModel | Acc | F1\nBase | 71.2 | 0.66\nOurs | 80.5 | 0.74\n[/TABLE]"),
            "{text}"
        );
        assert!(text.starts_with("Body text"), "{text}");
        assert!(text.ends_with("line of words too."), "{text}");
    }

    #[test]
    fn figure_captions_and_footnotes_are_labelled() {
        let mut f = Vec::new();
        for k in 0..6 {
            f.push(frag(
                &format!("Body line {k} of the main text"),
                72.0,
                400.0,
                700.0 - 12.0 * k as f32,
                10.0,
            ));
        }
        f.push(frag("Figure 2: Loss against", 72.0, 300.0, 600.0, 9.0));
        f.push(frag("training steps.", 72.0, 200.0, 589.0, 9.0));
        f.push(frag(
            "More body text after the figure",
            72.0,
            400.0,
            560.0,
            10.0,
        ));
        f.push(frag("1 Code is at example.org.", 72.0, 300.0, 100.0, 8.0));
        let p = page(f);
        let (text, stats) = render_page(&p, &[]);
        assert!(
            text.contains("[FIGURE 2: Loss against training steps.]"),
            "{text}"
        );
        assert!(
            text.ends_with("[FOOTNOTE 1: Code is at example.org.]"),
            "{text}"
        );
        assert_eq!((stats.captions, stats.footnotes), (1, 1));
    }

    #[test]
    fn furniture_repeats_or_counts_pages() {
        let mk = |n: usize| {
            let mut f = vec![frag(
                "Journal of Examples 12 (2024)",
                72.0,
                300.0,
                760.0,
                8.0,
            )];
            for k in 0..5 {
                f.push(frag(
                    &format!("page {n} body line {k}"),
                    72.0,
                    500.0,
                    700.0 - 12.0 * k as f32,
                    10.0,
                ));
            }
            f.push(frag(&format!("{n}"), 300.0, 306.0, 40.0, 10.0));
            page(f)
        };
        let pages: Vec<PageFrags> = (1..=4).map(mk).collect();
        let edges: Vec<Vec<EdgeRow>> = pages.iter().map(edge_rows).collect();
        let drop = furniture(&edges);
        for (p, d) in pages.iter().zip(&drop) {
            let (text, _) = render_page(p, d);
            assert!(!text.contains("Journal"), "{text}");
            assert!(text.starts_with("page"), "{text}");
            assert!(text.ends_with("line 4"), "{text}");
        }
    }

    #[test]
    fn line_numbers_in_the_margin_are_found() {
        let mut f = Vec::new();
        for k in 0..20 {
            let y = 700.0 - 12.0 * k as f32;
            f.push(frag(&format!("{}", k + 1), 40.0, 50.0, y, 7.0));
            f.push(frag("text of the line", 72.0, 400.0, y, 10.0));
        }
        let p = page(f);
        assert_eq!(line_numbers(&p).len(), 20);
    }
}
