//! Glyph names and the standard encodings: what a simple font's code means
//! when the PDF gives no `/ToUnicode` map (see `font`).
//!
//! The tables are generated (`data.rs`, by `scripts/gen-pdf-tables.py`)
//! from the Adobe Glyph List, the PDF reference's standard encodings and the
//! standard-14 font metrics.

use super::data::{
    CORE_WIDTHS, GLYPH_NAMES, MAC_EXPERT, MAC_ROMAN, PDF_DOC, STANDARD, SYMBOL, WIN_ANSI,
    ZAPF_DINGBATS,
};

/// A base encoding: glyph name per one-byte code ("" for none).
pub(super) type Encoding = &'static [&'static str; 256];

/// The encoding a `/Encoding` or `/BaseEncoding` name stands for.
pub(super) fn encoding_named(name: &[u8]) -> Option<Encoding> {
    Some(match name {
        b"StandardEncoding" => &STANDARD,
        b"WinAnsiEncoding" => &WIN_ANSI,
        b"MacRomanEncoding" => &MAC_ROMAN,
        b"MacExpertEncoding" => &MAC_EXPERT,
        b"PDFDocEncoding" => &PDF_DOC,
        _ => return None,
    })
}

pub(super) fn standard() -> Encoding {
    &STANDARD
}

pub(super) fn win_ansi() -> Encoding {
    &WIN_ANSI
}

/// The built-in encoding of a standard-14 symbol font, by base name.
pub(super) fn symbolic_builtin(base: &str) -> Option<Encoding> {
    let base = strip_subset_tag(base);
    if base.starts_with("Symbol") {
        Some(&SYMBOL)
    } else if base.starts_with("ZapfDingbats") {
        Some(&ZAPF_DINGBATS)
    } else {
        None
    }
}

/// Unicode text of a glyph name: the Adobe Glyph List, then the `uniXXXX`
/// and `uXXXX[XX]` conventions, then the name without a `.suffix`, then a
/// ligature of `_`-joined parts. `None` when the name means nothing
/// (`g123`, `cid45`, a font's private names).
pub(super) fn glyph_text(name: &str) -> Option<String> {
    if let Some(t) = lookup(name) {
        return Some(t.to_string());
    }
    if let Some(t) = by_convention(name) {
        return Some(t);
    }
    let base = name.split('.').next().unwrap_or(name);
    if base != name && !base.is_empty() {
        if let Some(t) = lookup(base) {
            return Some(t.to_string());
        }
        if let Some(t) = by_convention(base) {
            return Some(t);
        }
    }
    if base.contains('_') {
        let parts: Option<Vec<String>> = base
            .split('_')
            .map(|p| lookup(p).map(str::to_string).or_else(|| by_convention(p)))
            .collect();
        return parts.map(|p| p.concat());
    }
    None
}

fn lookup(name: &str) -> Option<&'static str> {
    GLYPH_NAMES
        .binary_search_by(|(k, _)| k.as_bytes().cmp(name.as_bytes()))
        .ok()
        .map(|i| GLYPH_NAMES[i].1)
}

/// `uni0041`, `uni00410042` (groups of four hex digits), `u1F600`.
fn by_convention(name: &str) -> Option<String> {
    let scalar = |hex: &str| {
        u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .filter(|c| !c.is_control())
    };
    if let Some(hex) = name.strip_prefix("uni") {
        if !hex.is_empty() && hex.len() % 4 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut out = String::new();
            for i in (0..hex.len()).step_by(4) {
                out.push(scalar(&hex[i..i + 4])?);
            }
            return Some(out);
        }
    }
    if let Some(hex) = name.strip_prefix('u') {
        if (4..=6).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return scalar(hex).map(String::from);
        }
    }
    None
}

/// A subset font's name without its `ABCDEF+` tag.
pub(super) fn strip_subset_tag(base: &str) -> &str {
    match base.split_once('+') {
        Some((tag, rest)) if tag.len() == 6 && tag.bytes().all(|b| b.is_ascii_uppercase()) => rest,
        _ => base,
    }
}

/// Widths (1/1000 em) of a standard-14 font or a common alias of one
/// (`Arial`, `TimesNewRoman,Bold`, …), by glyph name.
pub(super) fn core_widths(base: &str) -> Option<&'static [(&'static str, u16)]> {
    let name = core_name(strip_subset_tag(base));
    CORE_WIDTHS
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, widths)| *widths)
}

/// The standard-14 name an alias stands for.
fn core_name(base: &str) -> &str {
    let lower = base.to_ascii_lowercase();
    let bold = lower.contains("bold");
    let italic = lower.contains("italic") || lower.contains("oblique");
    let family = if lower.starts_with("courier") {
        "Courier"
    } else if lower.starts_with("helvetica") || lower.starts_with("arial") {
        "Helvetica"
    } else if lower.starts_with("times") {
        "Times"
    } else if lower.starts_with("symbol") {
        return "Symbol";
    } else if lower.starts_with("zapfdingbats") {
        return "ZapfDingbats";
    } else {
        return base;
    };
    match (family, bold, italic) {
        ("Times", false, false) => "Times-Roman",
        ("Times", true, false) => "Times-Bold",
        ("Times", false, true) => "Times-Italic",
        ("Times", true, true) => "Times-BoldItalic",
        ("Helvetica", false, false) => "Helvetica",
        ("Helvetica", true, false) => "Helvetica-Bold",
        ("Helvetica", false, true) => "Helvetica-Oblique",
        ("Helvetica", true, true) => "Helvetica-BoldOblique",
        (_, false, false) => "Courier",
        (_, true, false) => "Courier-Bold",
        (_, false, true) => "Courier-Oblique",
        (_, true, true) => "Courier-BoldOblique",
    }
}

/// One glyph's width in a standard-14 width table.
pub(super) fn width_of(widths: &[(&str, u16)], glyph: &str) -> Option<u16> {
    widths
        .binary_search_by(|(k, _)| k.as_bytes().cmp(glyph.as_bytes()))
        .ok()
        .map(|i| widths[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(GLYPH_NAMES
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
        for (_, widths) in CORE_WIDTHS {
            assert!(widths
                .windows(2)
                .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
        }
    }

    #[test]
    fn glyph_names_resolve() {
        assert_eq!(glyph_text("A").as_deref(), Some("A"));
        assert_eq!(glyph_text("fi").as_deref(), Some("\u{FB01}"));
        assert_eq!(glyph_text("alpha").as_deref(), Some("α"));
        assert_eq!(glyph_text("uni03B2").as_deref(), Some("β"));
        assert_eq!(glyph_text("uni00410042").as_deref(), Some("AB"));
        assert_eq!(glyph_text("u1D400").as_deref(), Some("𝐀"));
        assert_eq!(glyph_text("a.sc").as_deref(), Some("a"));
        assert_eq!(glyph_text("f_f_i").as_deref(), Some("ffi"));
        assert_eq!(glyph_text("g123"), None);
        assert_eq!(glyph_text("uniD800"), None, "a surrogate is no character");
    }

    #[test]
    fn encodings_and_core_widths() {
        assert_eq!(standard()[65], "A");
        assert_eq!(win_ansi()[0x93], "quotedblleft");
        assert_eq!(encoding_named(b"MacRomanEncoding").unwrap()[0x8E], "eacute");
        let helv = core_widths("Helvetica").unwrap();
        assert_eq!(width_of(helv, "space"), Some(278));
        assert_eq!(
            width_of(core_widths("ABCDEF+Arial,Bold").unwrap(), "A"),
            Some(722)
        );
        assert_eq!(
            width_of(core_widths("TimesNewRomanPSMT").unwrap(), "a"),
            Some(444)
        );
        assert!(core_widths("CMR10").is_none());
        assert_eq!(strip_subset_tag("ABCDEF+CMR10"), "CMR10");
    }
}
