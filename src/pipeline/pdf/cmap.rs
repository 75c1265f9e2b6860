//! CMaps: `/ToUnicode` maps (code → text) and embedded `/Encoding` CMaps of
//! composite fonts (code → CID), with their code-space ranges.
//!
//! A hand-written scanner over the few operators that matter
//! (`begincodespacerange`, `beginbfchar`, `beginbfrange`, `begincidchar`,
//! `begincidrange`); everything else in the PostScript wrapper is skipped.
//! Entry counts and range sizes are capped, so a hostile map costs at most
//! [`MAX_ENTRIES`] insertions.

use std::collections::HashMap;

/// Most mappings one CMap may define (ranges count each code).
pub(super) const MAX_ENTRIES: usize = 1 << 17;

/// A code-space range: codes of `len` bytes between `lo` and `hi`
/// (compared byte by byte, as the spec says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CodeRange {
    pub(super) len: usize,
    pub(super) lo: u32,
    pub(super) hi: u32,
}

/// What a CMap stream defines.
#[derive(Debug, Default)]
pub(super) struct CMap {
    pub(super) ranges: Vec<CodeRange>,
    /// `bfchar` / `bfrange`: code → text.
    pub(super) text: HashMap<u32, String>,
    /// `cidchar` / `cidrange`: code → CID.
    pub(super) cids: HashMap<u32, u32>,
    /// `cidrange`s kept as ranges (lo, hi, first CID): large ranges would
    /// not fit [`MAX_ENTRIES`] as single entries.
    pub(super) cid_ranges: Vec<(u32, u32, u32)>,
}

impl CMap {
    /// The CID of `code` under this (encoding) CMap.
    pub(super) fn cid(&self, code: u32) -> Option<u32> {
        if let Some(&c) = self.cids.get(&code) {
            return Some(c);
        }
        self.cid_ranges
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&code))
            .map(|(lo, _, first)| first.saturating_add(code - lo))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Hex(Vec<u8>),
    Int(i64),
    Word(&'a [u8]),
    ArrayStart,
    ArrayEnd,
    Other,
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_delim(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

impl<'a> Lexer<'a> {
    fn next(&mut self) -> Option<Tok<'a>> {
        let s = self.s;
        loop {
            while self.i < s.len() && s[self.i].is_ascii_whitespace() || s.get(self.i) == Some(&0) {
                self.i += 1;
            }
            if s.get(self.i) == Some(&b'%') {
                while self.i < s.len() && s[self.i] != b'\n' && s[self.i] != b'\r' {
                    self.i += 1;
                }
                continue;
            }
            break;
        }
        let b = *s.get(self.i)?;
        match b {
            b'<' if s.get(self.i + 1) == Some(&b'<') => {
                self.i += 2;
                Some(Tok::Other)
            }
            b'>' if s.get(self.i + 1) == Some(&b'>') => {
                self.i += 2;
                Some(Tok::Other)
            }
            b'<' => {
                self.i += 1;
                let out = super::content::hex_string(s, &mut self.i);
                Some(Tok::Hex(out))
            }
            b'[' => {
                self.i += 1;
                Some(Tok::ArrayStart)
            }
            b']' => {
                self.i += 1;
                Some(Tok::ArrayEnd)
            }
            b'(' => {
                // Literal strings (registry names) are skipped whole.
                let mut depth = 0usize;
                while let Some(&c) = s.get(self.i) {
                    self.i += 1;
                    match c {
                        b'\\' => self.i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                Some(Tok::Other)
            }
            b'{' | b'}' | b')' | b'>' => {
                self.i += 1;
                Some(Tok::Other)
            }
            _ => {
                let start = self.i;
                self.i += 1;
                while self.i < s.len() && !s[self.i].is_ascii_whitespace() && !is_delim(s[self.i]) {
                    self.i += 1;
                }
                let word = &s[start..self.i];
                if word[0] == b'/' {
                    return Some(Tok::Other);
                }
                match std::str::from_utf8(word).ok().and_then(|w| w.parse().ok()) {
                    Some(n) => Some(Tok::Int(n)),
                    None => Some(Tok::Word(word)),
                }
            }
        }
    }
}

fn code_of(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(4)
        .fold(0u32, |acc, &b| acc << 8 | u32::from(b))
}

/// UTF-16BE text of a `bfchar`/`bfrange` destination (unpaired surrogates
/// and controls dropped).
fn utf16_text(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    char::decode_utf16(units)
        .filter_map(Result::ok)
        .filter(|c| !c.is_control() || *c == ' ')
        .collect()
}

/// Parses a CMap stream. Never fails: what cannot be read is skipped.
pub(super) fn parse(data: &[u8]) -> CMap {
    let mut lx = Lexer { s: data, i: 0 };
    let mut out = CMap::default();
    let mut entries = 0usize;
    let mut pending: Vec<Tok> = Vec::new();
    while let Some(tok) = lx.next() {
        let Tok::Word(w) = tok else {
            pending.push(tok);
            if pending.len() > 8 {
                pending.remove(0);
            }
            continue;
        };
        pending.clear();
        match w {
            b"begincodespacerange" => {
                while let Some(Tok::Hex(lo)) = lx.next() {
                    let Some(Tok::Hex(hi)) = lx.next() else { break };
                    if (1..=4).contains(&lo.len()) && lo.len() == hi.len() {
                        out.ranges.push(CodeRange {
                            len: lo.len(),
                            lo: code_of(&lo),
                            hi: code_of(&hi),
                        });
                    }
                }
            }
            b"beginbfchar" => {
                while let Some(Tok::Hex(src)) = lx.next() {
                    match lx.next() {
                        Some(Tok::Hex(dst)) => {
                            if entries < MAX_ENTRIES {
                                entries += 1;
                                out.text.insert(code_of(&src), utf16_text(&dst));
                            }
                        }
                        // A glyph name as destination: rare, skipped.
                        Some(Tok::Other) => {}
                        _ => break,
                    }
                }
            }
            b"beginbfrange" => {
                while let Some(Tok::Hex(lo)) = lx.next() {
                    let Some(Tok::Hex(hi)) = lx.next() else { break };
                    let (lo, hi) = (code_of(&lo), code_of(&hi));
                    match lx.next() {
                        Some(Tok::Hex(dst)) => {
                            // The last byte of the destination counts up.
                            let mut units: Vec<u16> = dst
                                .chunks(2)
                                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                                .collect();
                            for code in lo..=hi.min(lo.saturating_add(0xFFFF)) {
                                if entries >= MAX_ENTRIES {
                                    break;
                                }
                                entries += 1;
                                let text: String = char::decode_utf16(units.iter().copied())
                                    .filter_map(Result::ok)
                                    .filter(|c| !c.is_control())
                                    .collect();
                                out.text.insert(code, text);
                                if let Some(last) = units.last_mut() {
                                    *last = last.wrapping_add(1);
                                }
                            }
                        }
                        Some(Tok::ArrayStart) => {
                            let mut code = lo;
                            while let Some(Tok::Hex(dst)) = lx.next() {
                                if code <= hi && entries < MAX_ENTRIES {
                                    entries += 1;
                                    out.text.insert(code, utf16_text(&dst));
                                }
                                code = code.saturating_add(1);
                            }
                        }
                        _ => break,
                    }
                }
            }
            b"begincidchar" => {
                while let Some(Tok::Hex(src)) = lx.next() {
                    let Some(Tok::Int(cid)) = lx.next() else {
                        break;
                    };
                    if entries < MAX_ENTRIES {
                        entries += 1;
                        out.cids
                            .insert(code_of(&src), u32::try_from(cid).unwrap_or(0));
                    }
                }
            }
            b"begincidrange" => {
                while let Some(Tok::Hex(lo)) = lx.next() {
                    let Some(Tok::Hex(hi)) = lx.next() else { break };
                    let Some(Tok::Int(cid)) = lx.next() else {
                        break;
                    };
                    if entries < MAX_ENTRIES {
                        entries += 1;
                        out.cid_ranges.push((
                            code_of(&lo),
                            code_of(&hi),
                            u32::try_from(cid).unwrap_or(0),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO_UNICODE: &[u8] = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap
/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def
/CMapName /Adobe-Identity-UCS def /CMapType 2 def
1 begincodespacerange <0000> <FFFF> endcodespacerange
3 beginbfchar
<0003> <0020>
<0011> <FB01>
<0024> <D835DC00>
endbfchar
2 beginbfrange
<0041> <0043> <0061>
<0050> <0051> [<03B1> <00660069>]
endbfrange
endcmap CMapName currentdict /CMap defineresource pop end end";

    #[test]
    fn to_unicode_maps_chars_ranges_and_arrays() {
        let m = parse(TO_UNICODE);
        assert_eq!(
            m.ranges,
            vec![CodeRange {
                len: 2,
                lo: 0,
                hi: 0xFFFF
            }]
        );
        assert_eq!(m.text[&0x03], " ");
        assert_eq!(m.text[&0x11], "\u{FB01}");
        assert_eq!(m.text[&0x24], "𝐀", "a surrogate pair");
        assert_eq!(m.text[&0x41], "a");
        assert_eq!(m.text[&0x43], "c");
        assert_eq!(m.text[&0x50], "α");
        assert_eq!(m.text[&0x51], "fi");
    }

    #[test]
    fn cid_ranges_and_garbage() {
        let m = parse(
            b"1 begincidrange <0100> <01FF> 500 endcidrange 1 begincidchar <05> 7 endcidchar",
        );
        assert_eq!(m.cid(0x0100), Some(500));
        assert_eq!(m.cid(0x0105), Some(505));
        assert_eq!(m.cid(0x05), Some(7));
        assert_eq!(m.cid(0x02), None);
        // Garbage and truncation never panic.
        for cut in 0..TO_UNICODE.len() {
            let _ = parse(&TO_UNICODE[..cut]);
        }
        let _ = parse(b"beginbfrange <00> <FFFFFFFF> <0041> endbfrange <<<<((( ]]] %");
    }
}
