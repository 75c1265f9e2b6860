//! Tokenizer for the condition grammar.
//!
//! Kept apart from the parser because it works on characters, not tokens: it
//! owns string escapes, number literals and the "did you mean" hints for
//! characters from other languages (`&&`, `=`, `%`), and it reports errors as
//! a final token so the parser can decide which problem comes first.

use super::{syntax_error, ConditionError, Result};

#[derive(Debug, Clone)]
pub(super) enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Name(String),
    Kw(Kw),
    Sym(Sym),
    Eof,
    /// A lexical error; always the last token.
    Error(ConditionError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kw {
    And,
    Or,
    Not,
    In,
    True,
    False,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sym {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    /// Never valid; tokenized only so the parser can explain why.
    Comma,
}

/// A token plus where it came from; `text` is the raw source spelling, used
/// in error messages and for keywords used as attribute names.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) col: usize,
    pub(super) text: String,
}

impl Token {
    pub(super) fn describe(&self) -> String {
        match self.tok {
            Tok::Eof => "end of input".to_owned(),
            _ => format!("'{}'", self.text),
        }
    }

    /// The error to report when the parser cannot use this token: the
    /// lexical error if it is one, a hint for commas, else `message`.
    pub(super) fn unexpected(&self, message: String) -> ConditionError {
        match &self.tok {
            Tok::Error(err) => err.clone(),
            Tok::Sym(Sym::Comma) => syntax_error(
                self.col,
                "unexpected ',' (tuples, lists and function arguments are not supported)",
            ),
            _ => syntax_error(self.col, message),
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn keyword(word: &str) -> Option<Kw> {
    Some(match word {
        "and" => Kw::And,
        "or" => Kw::Or,
        "not" => Kw::Not,
        "in" => Kw::In,
        "true" | "True" => Kw::True,
        "false" | "False" => Kw::False,
        "null" | "None" => Kw::Null,
        _ => return None,
    })
}

/// Hand-written tokenizer over chars (not bytes) so error columns match what
/// a user counts in an editor even with non-ASCII string contents.
pub(super) struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    /// Tokenize the whole source. A lexical error does not abort: it becomes
    /// a final [`Tok::Error`] token, so the parser reports whichever problem
    /// comes first in the source (as Python's lazy tokenizer does), e.g.
    /// `len(x) % 2` complains about the call, not the `%`.
    pub(super) fn tokenize(src: &str) -> Vec<Token> {
        let mut lexer = Lexer {
            chars: src.chars().collect(),
            pos: 0,
        };
        let mut tokens = Vec::new();
        loop {
            lexer.skip_whitespace();
            let start = lexer.pos;
            let Some(c) = lexer.peek() else {
                tokens.push(Token {
                    tok: Tok::Eof,
                    col: start + 1,
                    text: String::new(),
                });
                return tokens;
            };
            let (tok, failed) = match lexer.token(c) {
                Ok(tok) => (tok, false),
                Err(err) => (Tok::Error(err), true),
            };
            tokens.push(Token {
                tok,
                col: start + 1,
                text: lexer.chars[start..lexer.pos].iter().collect(),
            });
            if failed {
                return tokens;
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// 1-based column of the current position.
    fn col(&self) -> usize {
        self.pos + 1
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat_while(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
    }

    fn token(&mut self, c: char) -> Result<Tok> {
        if c.is_ascii_digit() {
            self.number()
        } else if c == '\'' || c == '"' {
            self.string(c)
        } else if is_ident_start(c) {
            Ok(self.word())
        } else {
            self.symbol(c)
        }
    }

    fn word(&mut self) -> Tok {
        let start = self.pos;
        self.eat_while(is_ident_char);
        let word: String = self.chars[start..self.pos].iter().collect();
        match keyword(&word) {
            Some(kw) => Tok::Kw(kw),
            None => Tok::Name(word),
        }
    }

    /// Numbers never include a sign (that is unary minus), and `.` only
    /// belongs to the number when a digit follows, like `2.5`.
    fn number(&mut self) -> Result<Tok> {
        let start = self.pos;
        let col = self.col();
        self.eat_while(|c| c.is_ascii_digit());
        let mut is_float = false;
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            self.eat_while(|c| c.is_ascii_digit());
            is_float = true;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
            if self.peek_at(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1 + sign;
                self.eat_while(|c| c.is_ascii_digit());
                is_float = true;
            }
        }
        if self.peek().is_some_and(is_ident_char) {
            return Err(syntax_error(col, "invalid number literal"));
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        if is_float {
            float_literal(&text, col)
        } else {
            int_literal(&text, col)
        }
    }

    fn string(&mut self, quote: char) -> Result<Tok> {
        let col = self.col();
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.bump() {
                Some(c) if c == quote => return Ok(Tok::Str(out)),
                Some('\\') => self.escape(&mut out)?,
                // Python does not allow raw newlines in single-quoted strings;
                // accepting them would hide a missing closing quote.
                None | Some('\n' | '\r') => {
                    return Err(syntax_error(col, "unterminated string"));
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// Decode one escape after a backslash. Unknown escapes such as `\d` are
    /// kept verbatim, as Python does, so copied Python strings mean the same.
    fn escape(&mut self, out: &mut String) -> Result<()> {
        let col = self.col() - 1;
        // At end of input leave the error to `string`, which knows where the
        // string started.
        let Some(c) = self.peek() else {
            return Ok(());
        };
        self.pos += 1;
        let decoded = match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'v' => '\x0b',
            '\\' | '\'' | '"' => c,
            '\n' => return Ok(()),
            '0'..='7' => self.octal_escape(c),
            'x' => self.hex_escape(2, col)?,
            'u' => self.hex_escape(4, col)?,
            'U' => self.hex_escape(8, col)?,
            other => {
                out.push('\\');
                other
            }
        };
        out.push(decoded);
        Ok(())
    }

    fn octal_escape(&mut self, first: char) -> char {
        let mut value = first.to_digit(8).unwrap_or(0);
        for _ in 0..2 {
            match self.peek().and_then(|c| c.to_digit(8)) {
                Some(digit) => {
                    value = value * 8 + digit;
                    self.pos += 1;
                }
                None => break,
            }
        }
        // At most 0o777, always a valid scalar value.
        char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn hex_escape(&mut self, digits: usize, col: usize) -> Result<char> {
        let mut value: u32 = 0;
        for _ in 0..digits {
            let digit = self.peek().and_then(|c| c.to_digit(16)).ok_or_else(|| {
                syntax_error(col, format!("invalid escape: expected {digits} hex digits"))
            })?;
            value = value * 16 + digit;
            self.pos += 1;
        }
        char::from_u32(value)
            .ok_or_else(|| syntax_error(col, format!("invalid unicode escape (U+{value:04X})")))
    }

    fn symbol(&mut self, c: char) -> Result<Tok> {
        let col = self.col();
        let next = self.peek_at(1);
        let (sym, len) = match (c, next) {
            ('=', Some('=')) => (Sym::EqEq, 2),
            ('!', Some('=')) => (Sym::NotEq, 2),
            ('<', Some('=')) => (Sym::Le, 2),
            ('>', Some('=')) => (Sym::Ge, 2),
            ('<', _) => (Sym::Lt, 1),
            ('>', _) => (Sym::Gt, 1),
            ('(', _) => (Sym::LParen, 1),
            (')', _) => (Sym::RParen, 1),
            ('[', _) => (Sym::LBracket, 1),
            (']', _) => (Sym::RBracket, 1),
            ('.', _) => (Sym::Dot, 1),
            ('+', _) => (Sym::Plus, 1),
            ('-', _) => (Sym::Minus, 1),
            ('*', Some('*')) => return Err(syntax_error(col, "operator '**' is not supported")),
            ('*', _) => (Sym::Star, 1),
            ('/', Some('/')) => {
                return Err(syntax_error(
                    col,
                    "operator '//' is not supported ('/' is true division)",
                ))
            }
            ('/', _) => (Sym::Slash, 1),
            (',', _) => (Sym::Comma, 1),
            _ => return Err(syntax_error(col, unexpected_char_message(c))),
        };
        self.pos += len;
        Ok(Tok::Sym(sym))
    }
}

/// Messages for characters that start no token, with hints for the common
/// habits of people coming from other languages.
fn unexpected_char_message(c: char) -> String {
    match c {
        '=' => "use '==' for comparison".to_owned(),
        '!' => "use 'not' for negation".to_owned(),
        '&' => "use 'and' instead of '&' or '&&'".to_owned(),
        '|' => "use 'or' instead of '|' or '||'".to_owned(),
        '%' => "operator '%' is not supported".to_owned(),
        '{' => "dict literals are not supported".to_owned(),
        _ => format!("unexpected character '{c}'"),
    }
}

fn int_literal(text: &str, col: usize) -> Result<Tok> {
    // Python rejects `007` so that nobody mistakes it for octal; so do we.
    if text.len() > 1 && text.starts_with('0') && text.chars().any(|c| c != '0') {
        return Err(syntax_error(
            col,
            "leading zeros in integer literals are not permitted",
        ));
    }
    text.parse::<i64>()
        .map(Tok::Int)
        .map_err(|_| syntax_error(col, "integer literal is too large"))
}

fn float_literal(text: &str, col: usize) -> Result<Tok> {
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Tok::Float(f)),
        _ => Err(syntax_error(col, "number literal is out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use serde_json::json;

    #[test]
    fn literals() {
        assert_eq!(ev("3"), json!(3));
        assert_eq!(ev("2.5"), json!(2.5));
        assert_eq!(ev("1e3"), json!(1000.0));
        assert_eq!(ev("1.5E-1"), json!(0.15));
        assert_eq!(ev("2e+2"), json!(200.0));
        assert_eq!(ev("0"), json!(0));
        assert_eq!(ev("'single'"), json!("single"));
        assert_eq!(ev("\"double\""), json!("double"));
        for (src, expected) in [
            ("true", json!(true)),
            ("True", json!(true)),
            ("false", json!(false)),
            ("False", json!(false)),
            ("null", Value::Null),
            ("None", Value::Null),
        ] {
            assert_eq!(ev(src), expected, "{src}");
        }
    }

    #[test]
    fn string_escapes() {
        assert_eq!(ev(r#""a\nb\tc""#), json!("a\nb\tc"));
        assert_eq!(ev(r#"'it\'s'"#), json!("it's"));
        assert_eq!(ev(r#""say \"hi\"""#), json!("say \"hi\""));
        assert_eq!(ev(r#"'back\\slash'"#), json!("back\\slash"));
        assert_eq!(ev(r#"'\u00e9\x41\U0001F600'"#), json!("éA😀"));
        assert_eq!(ev(r#"'\r\0\101'"#), json!("\r\0A"));
        assert_eq!(
            ev(r#"'\d+'"#),
            json!("\\d+"),
            "unknown escapes kept verbatim"
        );
        assert_eq!(ev("'quotes \" inside'"), json!("quotes \" inside"));
        assert_eq!(ev("\"é\" + 'ü'"), json!("éü"));
    }

    #[test]
    fn whitespace_and_newlines_are_insignificant() {
        assert_eq!(
            ev("context.score >= 8\n  and\tcontext.round < 4\n"),
            json!(true)
        );
    }
}
