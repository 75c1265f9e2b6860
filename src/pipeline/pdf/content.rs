//! Content streams to glyphs: a lexer and the subset of the PDF graphics
//! interpreter that places text (text state and matrices, `q`/`Q`/`cm`,
//! Form XObjects) and the straight rules tables are drawn with.
//!
//! Each shown character code becomes a [`Glyph`] with its origin, baseline
//! direction, advance and size in the page's default user space (y up).
//! Nothing is decided about words or lines here: that is `layout`'s job.

use super::font::{deref, number, Font, FontCache};
use super::{stream_data, PdfError};
use lopdf::{Dictionary, Document, Object, ObjectId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;

/// Most glyphs kept per page: past this the page's further text is
/// dropped (a page of a real paper has ~5,000). Bounds memory on a page
/// that draws the same Form XObject without end; its wall time is the
/// worker's limit.
const MAX_GLYPHS: usize = 1 << 21;
/// Most rules kept per page.
const MAX_RULES: usize = 20_000;
/// Deepest `q` nesting honoured (deeper saves are ignored).
const MAX_SAVES: usize = 256;
/// Deepest Form XObject nesting followed.
const MAX_FORM_DEPTH: usize = 100;
/// Longest array operand read (a `TJ` of a whole paragraph is ~1,000).
const MAX_ARRAY: usize = 1 << 16;

/// A 2-D affine matrix `[a b c d e f]` (PDF's row-vector convention).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Matrix([f64; 6]);

impl Matrix {
    pub(super) const IDENTITY: Matrix = Matrix([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    /// `self × other`: first `self`, then `other`.
    fn then(&self, o: &Matrix) -> Matrix {
        let [a, b, c, d, e, f] = self.0;
        let [oa, ob, oc, od, oe, of] = o.0;
        Matrix([
            a * oa + b * oc,
            a * ob + b * od,
            c * oa + d * oc,
            c * ob + d * od,
            e * oa + f * oc + oe,
            e * ob + f * od + of,
        ])
    }

    /// `translate(tx, ty) × self`.
    fn translated(&self, tx: f64, ty: f64) -> Matrix {
        let [a, b, c, d, e, f] = self.0;
        Matrix([a, b, c, d, tx * a + ty * c + e, tx * b + ty * d + f])
    }

    fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let [a, b, c, d, e, f] = self.0;
        (x * a + y * c + e, x * b + y * d + f)
    }

    fn finite(&self) -> bool {
        self.0.iter().all(|v| v.is_finite())
    }
}

/// One shown character code.
#[derive(Debug, Clone, Copy)]
pub(super) struct Glyph {
    /// Origin (user space, y up).
    pub(super) x: f32,
    pub(super) y: f32,
    /// Unit vector along the baseline.
    pub(super) ux: f32,
    pub(super) uy: f32,
    /// Advance along the baseline.
    pub(super) adv: f32,
    /// Font size as drawn (user-space units).
    pub(super) size: f32,
    /// Text: `PageContent::text[start..start + len]`; empty for spaces.
    pub(super) start: u32,
    pub(super) len: u16,
    /// A space character (no text kept).
    pub(super) space: bool,
    pub(super) bold: bool,
}

/// An axis-aligned rule (a thin filled rectangle or a stroked straight
/// line), user space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rule {
    pub(super) x0: f32,
    pub(super) y0: f32,
    pub(super) x1: f32,
    pub(super) y1: f32,
}

/// What a page draws that matters for text.
#[derive(Debug, Default)]
pub(super) struct PageContent {
    pub(super) glyphs: Vec<Glyph>,
    pub(super) text: String,
    pub(super) rules: Vec<Rule>,
    /// Glyphs dropped past [`MAX_GLYPHS`].
    pub(super) dropped: usize,
    /// Strings shown with no font selected (nothing to decode them with).
    pub(super) fontless: usize,
}

impl PageContent {
    pub(super) fn glyph_text(&self, g: &Glyph) -> &str {
        let s = g.start as usize;
        self.text.get(s..s + usize::from(g.len)).unwrap_or("")
    }
}

/// Per-document state shared by its pages: fonts and decoded forms.
#[derive(Default)]
pub(super) struct DocCache {
    pub(super) fonts: FontCache,
    forms: HashMap<ObjectId, Rc<Vec<u8>>>,
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Tok<'a> {
    Num(f64),
    Name(&'a [u8]),
    Str(Cow<'a, [u8]>),
    ArrayStart,
    ArrayEnd,
    DictStart,
    DictEnd,
    Op(&'a [u8]),
}

pub(super) struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_white(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | b'\x0C' | b'\0')
}

fn is_delim(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Lexer<'a> {
        Lexer { s, i: 0 }
    }

    fn skip_white(&mut self) {
        let s = self.s;
        while self.i < s.len() {
            let b = s[self.i];
            if is_white(b) {
                self.i += 1;
            } else if b == b'%' {
                while self.i < s.len() && s[self.i] != b'\n' && s[self.i] != b'\r' {
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    fn word(&mut self) -> &'a [u8] {
        let s = self.s;
        let start = self.i;
        while self.i < s.len() && !is_white(s[self.i]) && !is_delim(s[self.i]) {
            self.i += 1;
        }
        &s[start..self.i]
    }

    fn next(&mut self) -> Option<Tok<'a>> {
        self.skip_white();
        let s = self.s;
        let b = *s.get(self.i)?;
        Some(match b {
            b'/' => {
                self.i += 1;
                Tok::Name(self.word())
            }
            b'(' => Tok::Str(self.literal()),
            b'<' if s.get(self.i + 1) == Some(&b'<') => {
                self.i += 2;
                Tok::DictStart
            }
            b'<' => Tok::Str(Cow::Owned(self.hex())),
            b'>' => {
                self.i += if s.get(self.i + 1) == Some(&b'>') {
                    2
                } else {
                    1
                };
                Tok::DictEnd
            }
            b'[' => {
                self.i += 1;
                Tok::ArrayStart
            }
            b']' => {
                self.i += 1;
                Tok::ArrayEnd
            }
            b'{' | b'}' | b')' => {
                self.i += 1;
                Tok::Op(&s[self.i - 1..self.i])
            }
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                let w = self.word();
                match parse_number(w) {
                    Some(n) => Tok::Num(n),
                    None => Tok::Op(w),
                }
            }
            _ => {
                let w = self.word();
                if w.is_empty() {
                    // A lone delimiter we do not use.
                    self.i += 1;
                    return self.next();
                }
                Tok::Op(w)
            }
        })
    }

    /// A literal string, escapes decoded; borrowed when it has none.
    fn literal(&mut self) -> Cow<'a, [u8]> {
        let s = self.s;
        self.i += 1;
        let start = self.i;
        let mut depth = 1usize;
        let mut plain = true;
        let mut j = self.i;
        while j < s.len() {
            match s[j] {
                b'\\' => {
                    plain = false;
                    j += 2;
                    continue;
                }
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b'\r' => plain = false,
                _ => {}
            }
            j += 1;
        }
        let end = j.min(s.len());
        self.i = (end + 1).min(s.len());
        let raw = &s[start..end];
        if plain {
            return Cow::Borrowed(raw);
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut k = 0;
        while k < raw.len() {
            let b = raw[k];
            if b == b'\r' {
                // An end of line in a string is a newline, whatever it is.
                out.push(b'\n');
                if raw.get(k + 1) == Some(&b'\n') {
                    k += 1;
                }
                k += 1;
                continue;
            }
            if b != b'\\' {
                out.push(b);
                k += 1;
                continue;
            }
            k += 1;
            let Some(&e) = raw.get(k) else { break };
            match e {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'0'..=b'7' => {
                    let mut v: u32 = 0;
                    let mut n = 0;
                    while n < 3 {
                        match raw.get(k) {
                            Some(&d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                k += 1;
                                n += 1;
                            }
                            _ => break,
                        }
                    }
                    out.push((v & 0xFF) as u8);
                    continue;
                }
                b'\r' => {
                    if raw.get(k + 1) == Some(&b'\n') {
                        k += 1;
                    }
                }
                b'\n' => {}
                other => out.push(other),
            }
            k += 1;
        }
        Cow::Owned(out)
    }

    fn hex(&mut self) -> Vec<u8> {
        self.i += 1;
        hex_string(self.s, &mut self.i)
    }

    /// After `BI`: skips the image dictionary and data up to `EI`.
    fn skip_inline_image(&mut self) {
        let s = self.s;
        // The dictionary runs to `ID` and one white-space byte.
        while let Some(t) = self.next() {
            if let Tok::Op(b"ID") = t {
                break;
            }
        }
        self.i += 1;
        // The data ends at `EI` between white space (or the stream's end).
        while self.i + 1 < s.len() {
            if s[self.i] == b'E'
                && s[self.i + 1] == b'I'
                && self.i > 0
                && is_white(s[self.i - 1])
                && s.get(self.i + 2)
                    .is_none_or(|&b| is_white(b) || is_delim(b))
            {
                self.i += 2;
                return;
            }
            self.i += 1;
        }
        self.i = s.len();
    }
}

/// The bytes of a hex string whose `<` is before `*i`, up to its `>`
/// (after which `*i` is left); non-hex bytes are skipped, an odd last
/// digit is padded with 0 (as the spec says). Shared with the CMap scanner.
pub(super) fn hex_string(s: &[u8], i: &mut usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut hi: Option<u8> = None;
    while let Some(&c) = s.get(*i) {
        *i += 1;
        let v = match c {
            b'>' => break,
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => continue,
        };
        match hi.take() {
            Some(h) => out.push(h << 4 | v),
            None => hi = Some(v),
        }
    }
    if let Some(h) = hi {
        out.push(h << 4);
    }
    out
}

fn parse_number(w: &[u8]) -> Option<f64> {
    // Integers are the common case and parse without the float machinery.
    let (neg, digits) = match w.first() {
        Some(b'-') => (true, &w[1..]),
        Some(b'+') => (false, &w[1..]),
        _ => (false, w),
    };
    if !digits.is_empty() && digits.len() < 16 && digits.iter().all(u8::is_ascii_digit) {
        let v = digits
            .iter()
            .fold(0i64, |a, &d| a * 10 + i64::from(d - b'0'));
        return Some(if neg { -v } else { v } as f64);
    }
    let text = std::str::from_utf8(w).ok()?;
    // PDF allows "-.5", "5.", and writers emit "--5" and "5.-3"; take what
    // parses, as other readers do.
    text.parse::<f64>()
        .ok()
        .or_else(|| text.trim_start_matches('-').parse::<f64>().ok().map(|v| -v))
        .filter(|v| v.is_finite())
}

// ---------------------------------------------------------------------------
// Interpreter
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Operand<'a> {
    Num(f64),
    Name(&'a [u8]),
    Str(Cow<'a, [u8]>),
    Array(Vec<Operand<'a>>),
    Other,
}

impl Operand<'_> {
    fn num(&self) -> Option<f64> {
        match self {
            Operand::Num(n) => Some(*n),
            _ => None,
        }
    }
}

#[derive(Clone)]
struct TextState {
    font: Option<Rc<Font>>,
    size: f64,
    char_spacing: f64,
    word_spacing: f64,
    hscale: f64,
    leading: f64,
    rise: f64,
}

#[derive(Clone)]
struct GState {
    ctm: Matrix,
    text: TextState,
}

struct Path {
    /// Points of straight segments (user space).
    segments: Vec<(f64, f64, f64, f64)>,
    rects: Vec<(f64, f64, f64, f64)>,
    current: (f64, f64),
    start: (f64, f64),
}

struct Interp<'d, 'c> {
    doc: &'d Document,
    cache: &'c mut DocCache,
    out: PageContent,
    gs: GState,
    stack: Vec<GState>,
    tm: Matrix,
    tlm: Matrix,
    path: Path,
    max_stream_bytes: u64,
}

/// Interprets a page's content streams.
pub(super) fn run_page(
    doc: &Document,
    cache: &mut DocCache,
    content: &[u8],
    resources: Option<&Dictionary>,
    max_stream_bytes: u64,
) -> Result<PageContent, PdfError> {
    let mut it = Interp {
        doc,
        cache,
        out: PageContent::default(),
        gs: GState {
            ctm: Matrix::IDENTITY,
            text: TextState {
                font: None,
                size: 0.0,
                char_spacing: 0.0,
                word_spacing: 0.0,
                hscale: 1.0,
                leading: 0.0,
                rise: 0.0,
            },
        },
        stack: Vec::new(),
        tm: Matrix::IDENTITY,
        tlm: Matrix::IDENTITY,
        path: Path {
            segments: Vec::new(),
            rects: Vec::new(),
            current: (0.0, 0.0),
            start: (0.0, 0.0),
        },
        max_stream_bytes,
    };
    it.run(content, resources, 0)?;
    Ok(it.out)
}

impl Interp<'_, '_> {
    fn run(
        &mut self,
        content: &[u8],
        resources: Option<&Dictionary>,
        depth: usize,
    ) -> Result<(), PdfError> {
        let mut lx = Lexer::new(content);
        let mut ops: Vec<Operand> = Vec::with_capacity(8);
        // Arrays being built (TJ operands; nesting is rare).
        let mut arrays: Vec<Vec<Operand>> = Vec::new();
        let mut dict_depth = 0usize;
        while let Some(tok) = lx.next() {
            let operand = match tok {
                Tok::Num(n) => Operand::Num(n),
                Tok::Name(n) => Operand::Name(n),
                Tok::Str(s) => Operand::Str(s),
                Tok::ArrayStart => {
                    if arrays.len() < 8 {
                        arrays.push(Vec::new());
                    }
                    continue;
                }
                Tok::ArrayEnd => match arrays.pop() {
                    Some(a) => Operand::Array(a),
                    None => continue,
                },
                Tok::DictStart => {
                    dict_depth += 1;
                    continue;
                }
                Tok::DictEnd => {
                    dict_depth = dict_depth.saturating_sub(1);
                    if dict_depth == 0 {
                        ops.push(Operand::Other);
                    }
                    continue;
                }
                Tok::Op(op) => {
                    if dict_depth > 0 {
                        continue;
                    }
                    if !arrays.is_empty() {
                        // `true`, `false`, `null` inside an array.
                        if let Some(a) = arrays.last_mut() {
                            if a.len() < MAX_ARRAY {
                                a.push(Operand::Other);
                            }
                        }
                        continue;
                    }
                    if op == b"BI" {
                        lx.skip_inline_image();
                    } else {
                        self.op(op, &ops, resources, depth)?;
                    }
                    ops.clear();
                    continue;
                }
            };
            if dict_depth > 0 {
                continue;
            }
            match arrays.last_mut() {
                Some(a) => {
                    if a.len() < MAX_ARRAY {
                        a.push(operand);
                    }
                }
                None => {
                    if ops.len() < 16 {
                        ops.push(operand);
                    }
                }
            }
        }
        Ok(())
    }

    fn nums<const N: usize>(ops: &[Operand]) -> Option<[f64; N]> {
        if ops.len() < N {
            return None;
        }
        let tail = &ops[ops.len() - N..];
        let mut out = [0.0; N];
        for (o, v) in out.iter_mut().zip(tail) {
            *o = v.num()?;
        }
        Some(out)
    }

    fn op(
        &mut self,
        op: &[u8],
        ops: &[Operand],
        resources: Option<&Dictionary>,
        depth: usize,
    ) -> Result<(), PdfError> {
        match op {
            b"q" if self.stack.len() < MAX_SAVES => self.stack.push(self.gs.clone()),
            b"Q" => {
                if let Some(gs) = self.stack.pop() {
                    self.gs = gs;
                }
            }
            b"cm" => {
                if let Some(m) = Self::nums::<6>(ops) {
                    let m = Matrix(m).then(&self.gs.ctm);
                    if m.finite() {
                        self.gs.ctm = m;
                    }
                }
            }
            b"BT" => {
                self.tm = Matrix::IDENTITY;
                self.tlm = Matrix::IDENTITY;
            }
            b"ET" => {}
            b"Tf" => {
                if let (Some(Operand::Name(name)), Some(size)) =
                    (ops.first(), ops.get(1).and_then(Operand::num))
                {
                    self.gs.text.size = size;
                    let entry = resources
                        .and_then(|r| r.get(b"Font").ok())
                        .map(|f| deref(self.doc, f))
                        .and_then(|f| f.as_dict().ok())
                        .and_then(|f| f.get(name).ok());
                    self.gs.text.font = entry.map(|e| self.cache.fonts.get(self.doc, e));
                }
            }
            b"Tc" => {
                if let Some([v]) = Self::nums::<1>(ops) {
                    self.gs.text.char_spacing = v;
                }
            }
            b"Tw" => {
                if let Some([v]) = Self::nums::<1>(ops) {
                    self.gs.text.word_spacing = v;
                }
            }
            b"Tz" => {
                if let Some([v]) = Self::nums::<1>(ops) {
                    self.gs.text.hscale = v / 100.0;
                }
            }
            b"TL" => {
                if let Some([v]) = Self::nums::<1>(ops) {
                    self.gs.text.leading = v;
                }
            }
            b"Ts" => {
                if let Some([v]) = Self::nums::<1>(ops) {
                    self.gs.text.rise = v;
                }
            }
            b"Td" => {
                if let Some([x, y]) = Self::nums::<2>(ops) {
                    self.move_line(x, y);
                }
            }
            b"TD" => {
                if let Some([x, y]) = Self::nums::<2>(ops) {
                    self.gs.text.leading = -y;
                    self.move_line(x, y);
                }
            }
            b"Tm" => {
                if let Some(m) = Self::nums::<6>(ops) {
                    let m = Matrix(m);
                    if m.finite() {
                        self.tm = m;
                        self.tlm = m;
                    }
                }
            }
            b"T*" => self.next_line(),
            b"Tj" => {
                if let Some(Operand::Str(s)) = ops.last() {
                    self.show(s);
                }
            }
            b"'" => {
                self.next_line();
                if let Some(Operand::Str(s)) = ops.last() {
                    self.show(s);
                }
            }
            b"\"" => {
                if let (Some(aw), Some(ac), Some(Operand::Str(s))) = (
                    ops.first().and_then(Operand::num),
                    ops.get(1).and_then(Operand::num),
                    ops.get(2),
                ) {
                    self.gs.text.word_spacing = aw;
                    self.gs.text.char_spacing = ac;
                    self.next_line();
                    self.show(s);
                }
            }
            b"TJ" => {
                if let Some(Operand::Array(items)) = ops.last() {
                    for item in items {
                        match item {
                            Operand::Str(s) => self.show(s),
                            Operand::Num(n) => {
                                let t = &self.gs.text;
                                let tx = -n / 1000.0 * t.size * t.hscale;
                                self.tm = self.tm.translated(tx, 0.0);
                            }
                            _ => {}
                        }
                    }
                }
            }
            b"Do" => {
                if let Some(Operand::Name(name)) = ops.last() {
                    self.form(name, resources, depth)?;
                }
            }
            b"m" => {
                if let Some([x, y]) = Self::nums::<2>(ops) {
                    let p = self.gs.ctm.apply(x, y);
                    self.path.current = p;
                    self.path.start = p;
                }
            }
            b"l" => {
                if let Some([x, y]) = Self::nums::<2>(ops) {
                    let p = self.gs.ctm.apply(x, y);
                    let (x0, y0) = self.path.current;
                    if self.path.segments.len() < MAX_RULES {
                        self.path.segments.push((x0, y0, p.0, p.1));
                    }
                    self.path.current = p;
                }
            }
            b"h" => {
                let (x0, y0) = self.path.current;
                let (x1, y1) = self.path.start;
                if self.path.segments.len() < MAX_RULES {
                    self.path.segments.push((x0, y0, x1, y1));
                }
                self.path.current = self.path.start;
            }
            b"c" | b"v" | b"y" => {
                if let Some([x, y]) = Self::nums::<2>(ops) {
                    // A curve is no rule; keep only where the pen ends.
                    self.path.current = self.gs.ctm.apply(x, y);
                    self.path.segments.push((f64::NAN, 0.0, 0.0, 0.0));
                }
            }
            b"re" => {
                if let Some([x, y, w, h]) = Self::nums::<4>(ops) {
                    let (ax, ay) = self.gs.ctm.apply(x, y);
                    let (bx, by) = self.gs.ctm.apply(x + w, y + h);
                    if self.path.rects.len() < MAX_RULES {
                        self.path.rects.push((ax, ay, bx, by));
                    }
                    self.path.current = (ax, ay);
                    self.path.start = (ax, ay);
                }
            }
            b"S" | b"s" => self.paint(true),
            b"f" | b"F" | b"f*" | b"B" | b"B*" | b"b" | b"b*" => self.paint(false),
            b"n" => self.clear_path(),
            _ => {}
        }
        Ok(())
    }

    fn clear_path(&mut self) {
        self.path.segments.clear();
        self.path.rects.clear();
    }

    /// Keeps the painted path's axis-aligned thin parts as rules.
    fn paint(&mut self, stroke: bool) {
        const THIN: f64 = 2.5;
        const LONG: f64 = 8.0;
        let add = |x0: f64, y0: f64, x1: f64, y1: f64, rules: &mut Vec<Rule>| {
            let (w, h) = ((x1 - x0).abs(), (y1 - y0).abs());
            if rules.len() < MAX_RULES
                && [x0, y0, x1, y1].iter().all(|v| v.is_finite())
                && ((h <= THIN && w >= LONG) || (w <= THIN && h >= LONG))
            {
                rules.push(Rule {
                    x0: x0.min(x1) as f32,
                    y0: y0.min(y1) as f32,
                    x1: x0.max(x1) as f32,
                    y1: y0.max(y1) as f32,
                });
            }
        };
        for &(x0, y0, x1, y1) in &self.path.rects {
            add(x0, y0, x1, y1, &mut self.out.rules);
        }
        if stroke {
            // Only paths made of straight segments alone: a curve (NaN
            // marker) makes the whole path a drawing.
            if self.path.segments.iter().all(|s| !s.0.is_nan()) {
                for &(x0, y0, x1, y1) in &self.path.segments {
                    add(x0, y0, x1, y1, &mut self.out.rules);
                }
            }
        }
        self.clear_path();
    }

    fn move_line(&mut self, x: f64, y: f64) {
        self.tlm = self.tlm.translated(x, y);
        self.tm = self.tlm;
    }

    fn next_line(&mut self) {
        let l = self.gs.text.leading;
        self.move_line(0.0, -l);
    }

    fn show(&mut self, bytes: &[u8]) {
        let Some(font) = self.gs.text.font.clone() else {
            self.out.fontless += 1;
            return;
        };
        let t = self.gs.text.clone();
        let ctm = self.gs.ctm;
        let size_rise = Matrix([t.size * t.hscale, 0.0, 0.0, t.size, 0.0, t.rise]);
        let out = &mut self.out;
        let mut tm = self.tm;
        font.decode(bytes, |code| {
            let trm = size_rise.then(&tm).then(&ctm);
            let [a, b, c, d, e, f] = trm.0;
            let scale = a.hypot(b);
            if scale.is_finite() && scale > 1e-9 && e.is_finite() && f.is_finite() {
                let det = (a * d - b * c).abs();
                let size = (det / t.hscale.abs().max(1e-6)).sqrt() * font.height_scale;
                let space = code.text.chars().all(char::is_whitespace);
                if out.glyphs.len() < MAX_GLYPHS {
                    let start = out.text.len();
                    if !space {
                        out.text.push_str(code.text);
                    }
                    let len = (out.text.len() - start).min(usize::from(u16::MAX));
                    if space && code.text.is_empty() && !code.word_space {
                        // An unmapped code: its advance still moves the pen.
                    } else {
                        out.glyphs.push(Glyph {
                            x: e as f32,
                            y: f as f32,
                            ux: (a / scale) as f32,
                            uy: (b / scale) as f32,
                            adv: (code.width * scale) as f32,
                            size: size as f32,
                            start: start as u32,
                            len: len as u16,
                            space,
                            bold: font.bold,
                        });
                    }
                } else {
                    out.dropped += 1;
                }
            }
            let mut tx = code.width * t.size + t.char_spacing;
            if code.word_space {
                tx += t.word_spacing;
            }
            tm = tm.translated(tx * t.hscale, 0.0);
        });
        self.tm = tm;
    }

    fn form(
        &mut self,
        name: &[u8],
        resources: Option<&Dictionary>,
        depth: usize,
    ) -> Result<(), PdfError> {
        if depth >= MAX_FORM_DEPTH {
            return Ok(());
        }
        let doc = self.doc;
        let Some(entry) = resources
            .and_then(|r| r.get(b"XObject").ok())
            .map(|x| deref(doc, x))
            .and_then(|x| x.as_dict().ok())
            .and_then(|x| x.get(name).ok())
        else {
            return Ok(());
        };
        let Object::Stream(stream) = deref(doc, entry) else {
            return Ok(());
        };
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form".as_slice()) {
            return Ok(());
        }
        let data = match entry {
            Object::Reference(id) => match self.cache.forms.get(id) {
                Some(d) => d.clone(),
                None => {
                    let d = Rc::new(stream_data(stream, self.max_stream_bytes)?.into_owned());
                    self.cache.forms.insert(*id, d.clone());
                    d
                }
            },
            _ => Rc::new(stream_data(stream, self.max_stream_bytes)?.into_owned()),
        };
        let matrix = match stream.dict.get(b"Matrix").map(|m| deref(doc, m)) {
            Ok(Object::Array(a)) if a.len() == 6 => {
                let v: Vec<f64> = a.iter().filter_map(|o| number(deref(doc, o))).collect();
                match v.as_slice() {
                    [a, b, c, d, e, f] => Matrix([*a, *b, *c, *d, *e, *f]),
                    _ => Matrix::IDENTITY,
                }
            }
            _ => Matrix::IDENTITY,
        };
        let own = stream
            .dict
            .get(b"Resources")
            .map(|r| deref(doc, r))
            .and_then(Object::as_dict)
            .ok();
        let saved = self.gs.clone();
        let (tm, tlm) = (self.tm, self.tlm);
        let m = matrix.then(&self.gs.ctm);
        if m.finite() {
            self.gs.ctm = m;
        }
        let result = self.run(&data, own.or(resources), depth + 1);
        self.gs = saved;
        self.tm = tm;
        self.tlm = tlm;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &[u8]) -> Vec<String> {
        let mut lx = Lexer::new(s);
        let mut out = Vec::new();
        while let Some(t) = lx.next() {
            out.push(match t {
                Tok::Num(n) => format!("{n}"),
                Tok::Name(n) => format!("/{}", String::from_utf8_lossy(n)),
                Tok::Str(s) => format!("({})", String::from_utf8_lossy(&s)),
                Tok::ArrayStart => "[".into(),
                Tok::ArrayEnd => "]".into(),
                Tok::DictStart => "<<".into(),
                Tok::DictEnd => ">>".into(),
                Tok::Op(o) => String::from_utf8_lossy(o).into_owned(),
            });
        }
        out
    }

    #[test]
    fn lexer_reads_operands_and_operators() {
        assert_eq!(
            toks(b"BT /F1 9.96 Tf 1 0 0 1 72 -.5 Tm [(W)80(e\\051 \\(x\\)) -333 <48 65>] TJ ET % c\nq"),
            [
                "BT", "/F1", "9.96", "Tf", "1", "0", "0", "1", "72", "-0.5", "Tm", "[", "(W)",
                "80", "(e) (x))", "-333", "(He)", "]", "TJ", "ET", "q"
            ]
        );
        assert_eq!(toks(b"(a\\101\\\nb)"), ["(aAb)"]);
        assert_eq!(toks(b"<</MCID 3>> BDC"), ["<<", "/MCID", "3", ">>", "BDC"]);
    }

    #[test]
    fn inline_images_are_skipped() {
        let mut lx = Lexer::new(b"BI /W 2 /H 2 /BPC 8 ID \x00EI\xffQ EI Tj");
        assert!(matches!(lx.next(), Some(Tok::Op(b"BI"))));
        lx.skip_inline_image();
        assert!(matches!(lx.next(), Some(Tok::Op(b"Tj"))));
    }

    #[test]
    fn numbers_parse_like_other_readers() {
        assert_eq!(parse_number(b"12"), Some(12.0));
        assert_eq!(parse_number(b"-3.5"), Some(-3.5));
        assert_eq!(parse_number(b".5"), Some(0.5));
        assert_eq!(parse_number(b"--5"), Some(-5.0));
        assert_eq!(parse_number(b"abc"), None);
    }

    #[test]
    fn matrices_compose_in_pdf_order() {
        let scale = Matrix([2.0, 0.0, 0.0, 2.0, 0.0, 0.0]);
        let shift = Matrix([1.0, 0.0, 0.0, 1.0, 10.0, 20.0]);
        // First scale, then shift.
        assert_eq!(scale.then(&shift).apply(1.0, 1.0), (12.0, 22.0));
        assert_eq!(
            Matrix::IDENTITY.translated(5.0, 0.0).apply(0.0, 0.0),
            (5.0, 0.0)
        );
    }
}
