//! Terminal-safe text for human-readable reports.
//!
//! Titles, state names, error messages and paths in `runner show`,
//! `runner status` and `runner add` come from outside (arXiv metadata, PDFs,
//! provider answers, machine files). Printed raw, an ESC sequence in a
//! title can rewrite the operator's terminal (move the cursor, hide lines,
//! set the window title, …), and a bidi override can make text read
//! differently than it is. Every human-readable report goes through
//! [`escape_control`] (one field) or [`escape_report`] (a whole report);
//! JSON and YAML output are escaped by their serializers instead.

use std::fmt::Write as _;

/// `s` with every control character written as a visible escape: C0
/// (including `\n`, `\t`, `\r` and ESC), DEL, C1 (U+0080–U+009F, which some
/// terminals obey like ESC sequences) and the Unicode bidi controls. Plain
/// text, including any non-ASCII letters, is unchanged, and escaping twice
/// changes nothing more (backslashes are left alone).
pub fn escape_control(s: &str) -> String {
    escape(s, false)
}

/// Like [`escape_control`] but keeps `\n` and `\t`: for a whole rendered
/// report whose layout uses them.
pub fn escape_report(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, keep_layout: bool) -> String {
    if !s.chars().any(|c| needs_escape(c, keep_layout)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !needs_escape(c, keep_layout) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    out
}

fn needs_escape(c: char, keep_layout: bool) -> bool {
    if keep_layout && (c == '\n' || c == '\t') {
        return false;
    }
    c.is_control() || is_bidi_control(c)
}

/// Unicode bidirectional formatting characters (LRM/RLM, embeddings,
/// overrides, isolates, ALM).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(
            escape_control("a\u{1b}]0;pwned\u{7}b"),
            "a\\x1b]0;pwned\\x07b"
        );
        assert_eq!(escape_control("x\u{9b}2Jy"), "x\\x9b2Jy");
        assert_eq!(escape_control("l1\nl2\tz\r"), "l1\\nl2\\tz\\r");
        assert_eq!(escape_control("del\u{7f}"), "del\\x7f");
        assert_eq!(escape_control("rtl\u{202e}txt"), "rtl\\u{202e}txt");
        assert_eq!(escape_control("Ünïcödé — ok \\x1b"), "Ünïcödé — ok \\x1b");
    }

    #[test]
    fn reports_keep_their_layout() {
        assert_eq!(escape_report("a\tb\nc\u{1b}[2J"), "a\tb\nc\\x1b[2J");
    }

    #[test]
    fn escaping_is_idempotent() {
        let once = escape_control("t\u{1b}[31mred\u{85}\n");
        assert_eq!(escape_control(&once), once);
        assert!(!once.chars().any(char::is_control));
    }
}
