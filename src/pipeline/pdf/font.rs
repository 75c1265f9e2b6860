//! Fonts: what each character code of a shown string means (its Unicode
//! text) and how far it moves the pen (its width).
//!
//! A font is built once per document (the [`FontCache`] keys it by object)
//! and reused on every page. pdf-extract rebuilt every font on every page,
//! re-inflating and re-parsing its embedded program and `/ToUnicode` map
//! with a parser-combinator library; that was 95 % of its CPU time on real
//! papers (callgrind; see `docs/pdf-extraction.md`).
//!
//! The text of a code comes from, in order: the `/ToUnicode` map; the glyph
//! name the font's encoding gives the code (`/Differences`, the
//! `/BaseEncoding`, else the font program's built-in encoding: Type 1
//! cleartext or CFF) through the Adobe Glyph List; for TrueType fonts
//! without names, WinAnsi. Widths come from `/Widths` (`/W` for composite
//! fonts), else the standard-14 metrics, else half an em.

use super::cmap::{self, CMap, CodeRange};
use super::names::{self, Encoding};
use super::{contained, stream_data};
use lopdf::{Dictionary, Document, Object, ObjectId};
use std::collections::HashMap;
use std::rc::Rc;

/// Width (1/1000 em) assumed for a code the font gives no width for.
const DEFAULT_WIDTH: f32 = 500.0;

/// Biggest embedded font program or CMap read (decoded), bytes. Larger
/// ones are treated as absent (their text falls back to the encoding).
const MAX_FONT_BYTES: u64 = 16 << 20;

/// One decoded character code of a shown string.
#[derive(Debug, Clone, Copy)]
pub(super) struct Code<'f> {
    /// Unicode text ("" when the font does not say).
    pub(super) text: &'f str,
    /// Advance in text-space units per unit of font size.
    pub(super) width: f64,
    /// A one-byte code 32: word spacing (`Tw`) applies to it.
    pub(super) word_space: bool,
}

#[derive(Debug)]
enum Kind {
    Simple {
        text: Vec<Box<str>>,
        widths: Vec<f32>,
    },
    Composite(Box<Composite>),
}

#[derive(Debug)]
struct Composite {
    ranges: Vec<CodeRange>,
    /// `None`: Identity (CID = code).
    encoding: Option<CMap>,
    to_unicode: HashMap<u32, String>,
    widths: HashMap<u32, f32>,
    default_width: f32,
}

/// A font, ready to decode strings.
#[derive(Debug)]
pub(super) struct Font {
    kind: Kind,
    /// Glyph-space width units → text space (1/1000, or the Type 3 font
    /// matrix).
    width_scale: f64,
    /// Glyph height relative to the font size (Type 3 fonts scale their
    /// glyph space; 1 for the others).
    pub(super) height_scale: f64,
    /// The font's name says bold (for headings; informational).
    pub(super) bold: bool,
}

impl Font {
    /// Decodes `bytes` into codes, calling `f` for each.
    pub(super) fn decode(&self, bytes: &[u8], mut f: impl FnMut(Code<'_>)) {
        match &self.kind {
            Kind::Simple { text, widths } => {
                for &b in bytes {
                    let i = usize::from(b);
                    f(Code {
                        text: &text[i],
                        width: f64::from(widths[i]) * self.width_scale,
                        word_space: b == 32,
                    });
                }
            }
            Kind::Composite(c) => {
                let Composite {
                    ranges,
                    encoding,
                    to_unicode,
                    widths,
                    default_width,
                } = c.as_ref();
                let mut i = 0;
                while i < bytes.len() {
                    let (code, len) = next_code(ranges, &bytes[i..]);
                    i += len;
                    let cid = match encoding {
                        Some(m) => m.cid(code).unwrap_or(code),
                        None => code,
                    };
                    let w = widths.get(&cid).copied().unwrap_or(*default_width);
                    f(Code {
                        text: to_unicode.get(&code).map_or("", String::as_str),
                        width: f64::from(w) * self.width_scale,
                        word_space: len == 1 && code == 32,
                    });
                }
            }
        }
    }

    /// A stand-in for a font that cannot be read at all: its codes show
    /// as nothing, with average widths (so positions stay about right).
    fn empty() -> Font {
        Font {
            kind: Kind::Simple {
                text: vec![Box::from(""); 256],
                widths: vec![DEFAULT_WIDTH; 256],
            },
            width_scale: 0.001,
            height_scale: 1.0,
            bold: false,
        }
    }
}

/// The next code of a composite-font string: the shortest code-space range
/// that matches, else two bytes (Identity-H).
fn next_code(ranges: &[CodeRange], bytes: &[u8]) -> (u32, usize) {
    for len in 1..=4usize.min(bytes.len()) {
        let code = bytes[..len]
            .iter()
            .fold(0u32, |a, &b| a << 8 | u32::from(b));
        if ranges
            .iter()
            .any(|r| r.len == len && (r.lo..=r.hi).contains(&code))
        {
            return (code, len);
        }
    }
    let len = 2.min(bytes.len()).max(1);
    let code = bytes[..len]
        .iter()
        .fold(0u32, |a, &b| a << 8 | u32::from(b));
    (code, len)
}

/// Fonts of one document, built on first use.
#[derive(Default)]
pub(super) struct FontCache {
    by_id: HashMap<ObjectId, Rc<Font>>,
    /// Fonts given as direct dictionaries, by the dictionary's address in
    /// the (immutable, document-long) object tree: a stream that selects
    /// one on every line must not rebuild it every time.
    by_address: HashMap<usize, Rc<Font>>,
}

impl FontCache {
    /// The font a resource dictionary's `/Font` entry names.
    pub(super) fn get(&mut self, doc: &Document, entry: &Object) -> Rc<Font> {
        let id = match entry {
            Object::Reference(id) => Some(*id),
            _ => None,
        };
        if let Some(font) = id.and_then(|id| self.by_id.get(&id)) {
            return font.clone();
        }
        let dict = match deref(doc, entry) {
            Object::Dictionary(d) => Some(d),
            _ => None,
        };
        let address = dict.map(|d| d as *const Dictionary as usize);
        if let Some(font) = address.and_then(|a| self.by_address.get(&a)) {
            return font.clone();
        }
        // Font programs come from outside and some parsers below are not
        // ours: a panic costs this font its text, not the page.
        let font = dict
            .and_then(|d| contained(|| build(doc, d)).ok())
            .unwrap_or_else(Font::empty);
        let font = Rc::new(font);
        match (id, address) {
            (Some(id), _) => {
                self.by_id.insert(id, font.clone());
            }
            (None, Some(a)) => {
                self.by_address.insert(a, font.clone());
            }
            (None, None) => {}
        }
        font
    }
}

pub(super) fn deref<'a>(doc: &'a Document, obj: &'a Object) -> &'a Object {
    let mut obj = obj;
    for _ in 0..8 {
        match obj {
            Object::Reference(id) => match doc.get_object(*id) {
                Ok(o) => obj = o,
                Err(_) => return &Object::Null,
            },
            _ => return obj,
        }
    }
    &Object::Null
}

fn get<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    dict.get(key)
        .ok()
        .map(|o| deref(doc, o))
        .filter(|o| !matches!(o, Object::Null))
}

fn name<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a [u8]> {
    match get(doc, dict, key) {
        Some(Object::Name(n)) => Some(n),
        _ => None,
    }
}

pub(super) fn number(o: &Object) -> Option<f64> {
    match o {
        Object::Integer(i) => Some(*i as f64),
        Object::Real(r) => Some(f64::from(*r)),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

fn build(doc: &Document, dict: &Dictionary) -> Font {
    let subtype = name(doc, dict, b"Subtype").unwrap_or(b"Type1");
    let base = name(doc, dict, b"BaseFont")
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default();
    let bold = {
        let lower = base.to_ascii_lowercase();
        lower.contains("bold") || lower.contains("black") || lower.contains("-bx")
    };
    let to_unicode = get(doc, dict, b"ToUnicode")
        .and_then(|o| o.as_stream().ok())
        .and_then(|s| stream_data(s, MAX_FONT_BYTES).ok())
        .map(|data| cmap::parse(&data));
    let mut font = if subtype == b"Type0" {
        composite(doc, dict, to_unicode)
    } else {
        simple(doc, dict, subtype, &base, to_unicode)
    };
    font.bold = bold;
    font
}

fn composite(doc: &Document, dict: &Dictionary, to_unicode: Option<CMap>) -> Font {
    let descendant = match get(doc, dict, b"DescendantFonts") {
        Some(Object::Array(a)) => a.first().map(|o| deref(doc, o)),
        _ => None,
    };
    let descendant = match descendant {
        Some(Object::Dictionary(d)) => Some(d),
        _ => None,
    };
    // The encoding CMap: Identity-H/V by name, or an embedded stream.
    let (encoding, mut ranges) = match get(doc, dict, b"Encoding") {
        Some(Object::Stream(s)) => {
            let m = stream_data(s, MAX_FONT_BYTES)
                .map(|d| cmap::parse(&d))
                .unwrap_or_default();
            let ranges = m.ranges.clone();
            (Some(m), ranges)
        }
        _ => (None, Vec::new()),
    };
    let to_unicode = to_unicode.unwrap_or_default();
    if ranges.is_empty() {
        ranges = to_unicode.ranges.clone();
    }
    if ranges.is_empty() {
        ranges.push(CodeRange {
            len: 2,
            lo: 0,
            hi: 0xFFFF,
        });
    }
    let mut widths = HashMap::new();
    let mut default_width = 1000.0;
    if let Some(d) = descendant {
        if let Some(dw) = get(doc, d, b"DW").and_then(number) {
            default_width = dw as f32;
        }
        if let Some(Object::Array(w)) = get(doc, d, b"W") {
            parse_cid_widths(doc, w, &mut widths);
        }
    }
    Font {
        kind: Kind::Composite(Box::new(Composite {
            ranges,
            encoding,
            to_unicode: to_unicode.text,
            widths,
            default_width,
        })),
        width_scale: 0.001,
        height_scale: 1.0,
        bold: false,
    }
}

/// `/W`: `c [w1 w2 …]` and `c_first c_last w` entries.
fn parse_cid_widths(doc: &Document, w: &[Object], out: &mut HashMap<u32, f32>) {
    let mut i = 0;
    while i < w.len() && out.len() < cmap::MAX_ENTRIES {
        let Some(first) = number(deref(doc, &w[i])) else {
            break;
        };
        let first = first.clamp(0.0, f64::from(u32::MAX)) as u32;
        match w.get(i + 1).map(|o| deref(doc, o)) {
            Some(Object::Array(list)) => {
                for (k, o) in list.iter().enumerate() {
                    if let Some(v) = number(deref(doc, o)) {
                        out.insert(first.saturating_add(k as u32), v as f32);
                    }
                }
                i += 2;
            }
            Some(o) => {
                let last = number(o).unwrap_or(0.0).clamp(0.0, f64::from(u32::MAX)) as u32;
                let v = w.get(i + 2).map(|o| deref(doc, o)).and_then(number);
                if let Some(v) = v {
                    let last = last.min(first.saturating_add(0xFFFF));
                    for c in first..=last {
                        out.insert(c, v as f32);
                    }
                }
                i += 3;
            }
            None => break,
        }
    }
}

fn simple(
    doc: &Document,
    dict: &Dictionary,
    subtype: &[u8],
    base: &str,
    to_unicode: Option<CMap>,
) -> Font {
    let descriptor = match get(doc, dict, b"FontDescriptor") {
        Some(Object::Dictionary(d)) => Some(d),
        _ => None,
    };
    let flags = descriptor
        .and_then(|d| get(doc, d, b"Flags"))
        .and_then(number)
        .unwrap_or(0.0) as i64;
    let symbolic = flags & 4 != 0;
    let type3 = subtype == b"Type3";
    let truetype = subtype == b"TrueType";

    // Glyph names per code: the base encoding, then /Differences.
    let builtin = descriptor.and_then(|d| builtin_encoding(doc, d));
    let (base_name, differences) = match get(doc, dict, b"Encoding") {
        Some(Object::Name(n)) => (Some(n.as_slice()), None),
        Some(Object::Dictionary(e)) => (
            name(doc, e, b"BaseEncoding"),
            match get(doc, e, b"Differences") {
                Some(Object::Array(a)) => Some(a),
                _ => None,
            },
        ),
        _ => (None, None),
    };
    let mut glyphs: Vec<Option<String>> = vec![None; 256];
    let base_encoding: Option<Encoding> = base_name.and_then(names::encoding_named);
    if let Some(enc) = base_encoding {
        for (c, n) in enc.iter().enumerate() {
            if !n.is_empty() {
                glyphs[c] = Some((*n).to_string());
            }
        }
    } else if let Some(b) = builtin {
        glyphs = b;
    } else if let Some(enc) = names::symbolic_builtin(base) {
        for (c, n) in enc.iter().enumerate() {
            if !n.is_empty() {
                glyphs[c] = Some((*n).to_string());
            }
        }
    } else if !type3 {
        let enc = if truetype {
            names::win_ansi()
        } else {
            names::standard()
        };
        if !(symbolic && truetype) {
            for (c, n) in enc.iter().enumerate() {
                if !n.is_empty() {
                    glyphs[c] = Some((*n).to_string());
                }
            }
        }
    }
    if let Some(diffs) = differences {
        let mut code: i64 = 0;
        for o in diffs {
            match deref(doc, o) {
                Object::Integer(i) => code = *i,
                Object::Name(n) => {
                    if (0..256).contains(&code) {
                        glyphs[code as usize] = Some(String::from_utf8_lossy(n).into_owned());
                    }
                    code += 1;
                }
                _ => {}
            }
        }
    }

    // Text per code.
    let map = to_unicode.map(|m| m.text).unwrap_or_default();
    let mut text: Vec<Box<str>> = Vec::with_capacity(256);
    for (c, glyph) in glyphs.iter().enumerate() {
        let t = map
            .get(&(c as u32))
            .cloned()
            .or_else(|| glyph.as_deref().and_then(names::glyph_text))
            .or_else(|| {
                // A TrueType font without names: its codes are WinAnsi.
                (truetype && glyph.is_none())
                    .then(|| names::win_ansi()[c])
                    .and_then(names::glyph_text)
            })
            .unwrap_or_default();
        text.push(t.into_boxed_str());
    }

    // Widths per code.
    let mut widths = vec![f32::NAN; 256];
    let first = get(doc, dict, b"FirstChar").and_then(number).unwrap_or(0.0);
    if let Some(Object::Array(list)) = get(doc, dict, b"Widths") {
        for (k, o) in list.iter().enumerate() {
            let c = first + k as f64;
            if (0.0..256.0).contains(&c) {
                if let Some(w) = number(deref(doc, o)) {
                    widths[c as usize] = w as f32;
                }
            }
        }
    }
    let missing = descriptor
        .and_then(|d| get(doc, d, b"MissingWidth"))
        .and_then(number)
        .map(|w| w as f32);
    let core = names::core_widths(base);
    for (c, w) in widths.iter_mut().enumerate() {
        if w.is_nan() {
            *w = core
                .zip(glyphs[c].as_deref())
                .and_then(|(table, g)| names::width_of(table, g))
                .map(f32::from)
                .or(missing)
                .unwrap_or(DEFAULT_WIDTH);
        }
    }

    // Type 3 glyph space.
    let (width_scale, height_scale) = if type3 {
        let m: Vec<f64> = match get(doc, dict, b"FontMatrix") {
            Some(Object::Array(a)) => a.iter().filter_map(|o| number(deref(doc, o))).collect(),
            _ => Vec::new(),
        };
        match m.as_slice() {
            [a, _, _, d, ..] if a.abs() > 1e-9 => (*a, (d.abs() * 1000.0).clamp(0.01, 100.0)),
            _ => (0.001, 1.0),
        }
    } else {
        (0.001, 1.0)
    };
    Font {
        kind: Kind::Simple { text, widths },
        width_scale,
        height_scale,
        bold: false,
    }
}

/// Glyph names per code from an embedded font program's own encoding:
/// the cleartext part of a Type 1 program (`dup 65 /A put`) or a CFF
/// (`/FontFile3` of subtype `Type1C`). `None` when there is no program or
/// it uses the standard encoding.
fn builtin_encoding(doc: &Document, descriptor: &Dictionary) -> Option<Vec<Option<String>>> {
    if let Some(Object::Stream(s)) = get(doc, descriptor, b"FontFile") {
        let data = stream_data(s, MAX_FONT_BYTES).ok()?;
        // The encoding is in the cleartext part, before `eexec`.
        let clear = s
            .dict
            .get(b"Length1")
            .ok()
            .and_then(number)
            .map_or(data.len(), |n| (n.max(0.0) as usize).min(data.len()));
        let clear = find(&data[..clear], b"eexec").map_or(&data[..clear], |at| &data[..at]);
        return type1_encoding(clear);
    }
    if let Some(Object::Stream(s)) = get(doc, descriptor, b"FontFile3") {
        if name(doc, &s.dict, b"Subtype") == Some(b"Type1C".as_slice()) {
            let data = stream_data(s, MAX_FONT_BYTES).ok()?;
            return cff_encoding(&data);
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `dup <code> /<name> put` entries of a Type 1 font's `/Encoding` array.
fn type1_encoding(clear: &[u8]) -> Option<Vec<Option<String>>> {
    let at = find(clear, b"/Encoding")?;
    let rest = &clear[at + 9..];
    if rest
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(16)
        .copied()
        .collect::<Vec<u8>>()
        .starts_with(b"StandardEncoding")
    {
        return None;
    }
    let mut out: Vec<Option<String>> = vec![None; 256];
    let mut found = false;
    let words: Vec<&[u8]> = rest
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .take(256 * 4 + 64)
        .collect();
    let mut i = 0;
    while i + 3 < words.len() {
        if words[i] == b"readonly" || words[i] == b"def" && found {
            break;
        }
        if words[i] == b"dup" && words[i + 3] == b"put" {
            let code = std::str::from_utf8(words[i + 1])
                .ok()
                .and_then(|c| c.parse::<usize>().ok());
            if let (Some(code), Some(name)) = (code, words[i + 2].strip_prefix(b"/")) {
                if code < 256 {
                    out[code] = Some(String::from_utf8_lossy(name).into_owned());
                    found = true;
                }
            }
            i += 4;
        } else {
            i += 1;
        }
    }
    found.then_some(out)
}

/// Code → glyph name of a bare CFF font program.
fn cff_encoding(data: &[u8]) -> Option<Vec<Option<String>>> {
    let table = cff_parser::Table::parse(data)?;
    let mut out: Vec<Option<String>> = vec![None; 256];
    let mut found = false;
    for code in 0..=255u8 {
        if let Some(name) = table
            .glyph_index(code)
            .filter(|g| g.0 != 0)
            .and_then(|g| table.glyph_name(g))
        {
            out[usize::from(code)] = Some(name.to_string());
            found = true;
        }
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type1_cleartext_encoding() {
        let clear = b"/FontName /CMMI10 def /Encoding 256 array\n0 1 255 {1 index exch /.notdef put} for\ndup 11 /alpha put\ndup 65 /A put\nreadonly def\ncurrentdict end currentfile eexec";
        let enc = type1_encoding(clear).unwrap();
        assert_eq!(enc[11].as_deref(), Some("alpha"));
        assert_eq!(enc[65].as_deref(), Some("A"));
        assert!(enc[66].is_none());
        assert!(type1_encoding(b"/Encoding StandardEncoding def").is_none());
        assert!(type1_encoding(b"no encoding here").is_none());
    }

    #[test]
    fn fonts_are_built_once_per_document() {
        let mut doc = Document::with_version("1.5");
        let mut dict = Dictionary::new();
        dict.set("Type", Object::Name(b"Font".to_vec()));
        dict.set("Subtype", Object::Name(b"Type1".to_vec()));
        dict.set("BaseFont", Object::Name(b"Helvetica".to_vec()));
        let id = doc.add_object(Object::Dictionary(dict.clone()));
        let direct = Object::Dictionary(dict);
        let mut cache = FontCache::default();
        let by_ref = Object::Reference(id);
        assert!(Rc::ptr_eq(
            &cache.get(&doc, &by_ref),
            &cache.get(&doc, &by_ref)
        ));
        // A direct dictionary (not an indirect object) is cached by address.
        assert!(Rc::ptr_eq(
            &cache.get(&doc, &direct),
            &cache.get(&doc, &direct)
        ));
        let mut text = String::new();
        cache
            .get(&doc, &direct)
            .decode(b"Hi", |c| text.push_str(c.text));
        assert_eq!(text, "Hi");
    }

    #[test]
    fn composite_codes_follow_the_code_space() {
        let ranges = vec![
            CodeRange {
                len: 1,
                lo: 0,
                hi: 0x7F,
            },
            CodeRange {
                len: 2,
                lo: 0x8000,
                hi: 0xFFFF,
            },
        ];
        assert_eq!(next_code(&ranges, &[0x41, 0x42]), (0x41, 1));
        assert_eq!(next_code(&ranges, &[0x81, 0x42]), (0x8142, 2));
        assert_eq!(next_code(&[], &[0x01]), (0x01, 1));
    }
}
