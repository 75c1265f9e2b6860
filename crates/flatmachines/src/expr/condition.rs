//! Transition conditions for FlatMachines state machines.
//!
//! FlatMachines configs guard transitions with small Python-style expressions
//! such as `context.score >= 8 and not context.failed`. The reference
//! implementation evaluates them with Python's `ast` module; this module is a
//! self-contained, dependency-free re-implementation of that language so the
//! runner can validate conditions when a machine is loaded (syntax errors carry
//! a column) and evaluate them against JSON state without a Python runtime.
//!
//! # Grammar (lowest to highest precedence)
//!
//! | level          | syntax                                                      |
//! |----------------|-------------------------------------------------------------|
//! | or             | `a or b`                                                    |
//! | and            | `a and b`                                                   |
//! | not            | `not a`                                                     |
//! | comparison     | `== != < <= > >= in`, `not in`; chainable like `a < b < c`  |
//! | additive       | `a + b`, `a - b`                                            |
//! | multiplicative | `a * b`, `a / b` (always true division)                     |
//! | unary          | `-a`, `+a`                                                  |
//! | postfix        | `a.name`, `a[expr]`                                         |
//! | atom           | numbers, strings, `true false null True False None`, names, `( expr )` |
//!
//! Everything else Python has (calls, list/dict literals, `is`, `%`, `//`,
//! `**`, ternaries, ...) is a syntax error with a hint, so a config written
//! against a richer evaluator fails at load time rather than mid-run.
//!
//! # Deliberate differences from Python
//!
//! * Booleans are not numbers: `true == 1` is false and `true + 1` is an error.
//!   JSON keeps the two types apart, and a condition that mixes them is almost
//!   always a bug in the machine config, so we refuse to guess.
//! * `and` / `or` always produce a bool rather than one of their operands; a
//!   condition only ever needs a truth value and a bool is easier to log.
//! * `a.b` on `null` yields `null`, so `context.x.y.z` is `null` when any part
//!   is missing instead of raising. Subscripting `null` is still an error.
//! * Integer arithmetic that leaves the range JSON numbers can hold as integers
//!   (`i64`/`u64`) falls back to a float instead of growing a big integer.
//! * Keywords may be used as attribute names (`context.in`), since JSON keys
//!   are arbitrary strings and the position after `.` is unambiguous.
//! * Whitespace, including newlines, is insignificant anywhere, because YAML
//!   block scalars routinely fold long conditions over several lines.
//! * `in` with a non-string needle and a dict haystack is an error (Python
//!   answers `False`): JSON keys are always strings, so it can never be true
//!   and most likely is a mistake.
//!
//! Runtime type errors (e.g. `None > 1`) are errors rather than `false`, as in
//! Python: a guard that silently never fires is harder to debug than a failed
//! transition with a message. Use `and` short-circuiting to guard optional
//! values: `context.x and context.x.n > 1`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::iter;

use serde_json::{Map, Number, Value};

/// Maximum nesting of the parsed expression. Parsing and evaluation are
/// recursive and may run on threads with small stacks (tokio workers default
/// to 2 MiB), so a hostile or generated condition must not be able to
/// overflow the stack.
/// `and`/`or` and comparison chains are flattened, so long lists of clauses
/// do not count against this limit.
const MAX_DEPTH: usize = 100;

/// Upper bound on the size (in bytes or JSON nodes) produced by `*`
/// repetition, so `"x" * 10000000000` fails cleanly instead of exhausting memory.
const MAX_REPEAT_SIZE: usize = 1_000_000;

/// Shared `null` so attribute/key lookups can return a borrowed value for
/// missing keys without allocating.
static NULL: Value = Value::Null;

/// Why a condition could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    /// The source is not a valid expression. `col` is the 1-based character
    /// (not byte) column in the whole source; newlines count as one character.
    #[error("syntax error at column {col}: {message}")]
    Syntax { col: usize, message: String },
    /// Evaluation failed, e.g. comparing incompatible types or an unknown name.
    #[error("{0}")]
    Eval(String),
}

type Result<T> = std::result::Result<T, ConditionError>;

fn syntax_error(col: usize, message: impl Into<String>) -> ConditionError {
    ConditionError::Syntax {
        col,
        message: message.into(),
    }
}

fn eval_error(message: impl Into<String>) -> ConditionError {
    ConditionError::Eval(message.into())
}

/// A parsed transition condition. Parsing once up front lets a config
/// validator report syntax errors before the machine runs, and lets the
/// runner evaluate the same condition many times cheaply.
#[derive(Debug, Clone)]
pub struct Condition {
    source: String,
    expr: Expr,
}

impl Condition {
    /// Parse. An empty or whitespace-only source is valid and always
    /// evaluates to true, because a transition without a condition is the
    /// unconditional (default) transition.
    pub fn parse(src: &str) -> std::result::Result<Condition, ConditionError> {
        let expr = if src.trim().is_empty() {
            Expr {
                kind: Kind::Literal(Value::Bool(true)),
                depth: 1,
            }
        } else {
            Parser::new(Lexer::tokenize(src)).parse_all()?
        };
        Ok(Condition {
            source: src.to_owned(),
            expr,
        })
    }

    /// The source text exactly as given to [`Condition::parse`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate to a JSON value. `vars` maps root names (e.g. "context") to
    /// values.
    pub fn eval(&self, vars: &Map<String, Value>) -> std::result::Result<Value, ConditionError> {
        eval_expr(&self.expr, vars).map(Cow::into_owned)
    }

    /// Evaluate and apply Python truthiness (null/false/0/0.0/""/[]/{} are
    /// false).
    pub fn eval_bool(
        &self,
        vars: &Map<String, Value>,
    ) -> std::result::Result<bool, ConditionError> {
        eval_expr(&self.expr, vars).map(|v| truthy(&v))
    }

    /// Root variable names the expression references (deduplicated, in
    /// first-seen order), so a validator can reject names other than
    /// `context`. Attribute names (`x` in `context.x`) are not roots.
    pub fn root_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        collect_names(&self.expr, &mut names);
        names
    }
}

fn collect_names(expr: &Expr, out: &mut Vec<String>) {
    if let Kind::Name(name) = &expr.kind {
        if !out.contains(name) {
            out.push(name.clone());
        }
        return;
    }
    for child in expr.kind.children() {
        collect_names(child, out);
    }
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Tok {
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
enum Kw {
    And,
    Or,
    Not,
    In,
    True,
    False,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
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
struct Token {
    tok: Tok,
    col: usize,
    text: String,
}

impl Token {
    fn describe(&self) -> String {
        match self.tok {
            Tok::Eof => "end of input".to_owned(),
            _ => format!("'{}'", self.text),
        }
    }

    /// The error to report when the parser cannot use this token: the
    /// lexical error if it is one, a hint for commas, else `message`.
    fn unexpected(&self, message: String) -> ConditionError {
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
struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    /// Tokenize the whole source. A lexical error does not abort: it becomes
    /// a final [`Tok::Error`] token, so the parser reports whichever problem
    /// comes first in the source (as Python's lazy tokenizer does), e.g.
    /// `len(x) % 2` complains about the call, not the `%`.
    fn tokenize(src: &str) -> Vec<Token> {
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

// ---------------------------------------------------------------------------
// AST and parser
// ---------------------------------------------------------------------------

/// A parsed node. `depth` is the height of the subtree, tracked while parsing
/// so over-deep expressions are rejected before anything recurses over them.
#[derive(Debug, Clone)]
struct Expr {
    kind: Kind,
    depth: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    Literal(Value),
    Name(String),
    Attr(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Unary(UnaryOp, Box<Expr>),
    Not(Box<Expr>),
    /// Flattened like Python's `BoolOp`, so long clause lists stay shallow.
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// `first op1 e1 op2 e2 ...`, Python's chained comparison.
    Compare(Box<Expr>, Vec<(CmpOp, Expr)>),
}

impl Kind {
    /// Direct sub-expressions in evaluation (left-to-right) order.
    fn children(&self) -> Vec<&Expr> {
        match self {
            Kind::Literal(_) | Kind::Name(_) => Vec::new(),
            Kind::Attr(target, _) | Kind::Unary(_, target) | Kind::Not(target) => {
                vec![target.as_ref()]
            }
            Kind::Index(a, b) | Kind::Arith(_, a, b) => vec![a.as_ref(), b.as_ref()],
            Kind::And(items) | Kind::Or(items) => items.iter().collect(),
            Kind::Compare(first, rest) => iter::once(first.as_ref())
                .chain(rest.iter().map(|(_, e)| e))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnaryOp {
    Neg,
    Pos,
}

impl UnaryOp {
    fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Neg => "-",
            UnaryOp::Pos => "+",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::In => "in",
            CmpOp::NotIn => "not in",
        }
    }
}

/// Recursive-descent parser, one method per precedence level.
struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Current recursion depth of the parser itself (parentheses, subscripts,
    /// prefix operators), bounded for the same reason as [`MAX_DEPTH`].
    nesting: usize,
    /// Returned by `peek` past the end, so no indexing can panic.
    eof: Token,
}

impl Parser {
    fn new(tokens: Vec<Token>) -> Parser {
        let eof_col = tokens.last().map_or(1, |t| t.col);
        Parser {
            tokens,
            pos: 0,
            nesting: 0,
            eof: Token {
                tok: Tok::Eof,
                col: eof_col,
                text: String::new(),
            },
        }
    }

    fn parse_all(&mut self) -> Result<Expr> {
        let expr = self.parse_or()?;
        let next = self.peek();
        match next.tok {
            Tok::Eof => Ok(expr),
            _ => Err(next.unexpected(format!("unexpected token {}", next.describe()))),
        }
    }

    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&self.eof)
    }

    fn peek_next(&self) -> &Token {
        self.tokens.get(self.pos + 1).unwrap_or(&self.eof)
    }

    fn advance(&mut self) {
        self.pos += 1;
    }

    fn at_kw(&self, kw: Kw) -> bool {
        matches!(self.peek().tok, Tok::Kw(k) if k == kw)
    }

    fn at_sym(&self, sym: Sym) -> bool {
        matches!(self.peek().tok, Tok::Sym(s) if s == sym)
    }

    /// Build a node, enforcing [`MAX_DEPTH`] on the resulting tree.
    fn build(&self, kind: Kind, col: usize) -> Result<Expr> {
        let depth = 1 + kind.children().iter().map(|c| c.depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(too_deep(col));
        }
        Ok(Expr { kind, depth })
    }

    /// Run a recursive parse step with the recursion depth bounded.
    fn nested<T>(&mut self, step: impl FnOnce(&mut Parser) -> Result<T>) -> Result<T> {
        if self.nesting >= MAX_DEPTH {
            return Err(too_deep(self.peek().col));
        }
        self.nesting += 1;
        let result = step(self);
        self.nesting -= 1;
        result
    }

    fn expect(&mut self, sym: Sym, what: &str) -> Result<()> {
        if self.at_sym(sym) {
            self.advance();
            return Ok(());
        }
        let next = self.peek();
        Err(next.unexpected(format!("expected {what}, found {}", next.describe())))
    }

    fn parse_or(&mut self) -> Result<Expr> {
        let col = self.peek().col;
        let mut items = vec![self.parse_and()?];
        while self.at_kw(Kw::Or) {
            self.advance();
            items.push(self.parse_and()?);
        }
        self.bool_chain(items, col, Kind::Or)
    }

    fn parse_and(&mut self) -> Result<Expr> {
        let col = self.peek().col;
        let mut items = vec![self.parse_not()?];
        while self.at_kw(Kw::And) {
            self.advance();
            items.push(self.parse_not()?);
        }
        self.bool_chain(items, col, Kind::And)
    }

    fn bool_chain(
        &self,
        mut items: Vec<Expr>,
        col: usize,
        make: fn(Vec<Expr>) -> Kind,
    ) -> Result<Expr> {
        if items.len() == 1 {
            if let Some(only) = items.pop() {
                return Ok(only);
            }
        }
        self.build(make(items), col)
    }

    fn parse_not(&mut self) -> Result<Expr> {
        if !self.at_kw(Kw::Not) {
            return self.parse_comparison();
        }
        let col = self.peek().col;
        self.advance();
        let operand = self.nested(Parser::parse_not)?;
        self.build(Kind::Not(Box::new(operand)), col)
    }

    fn parse_comparison(&mut self) -> Result<Expr> {
        let col = self.peek().col;
        let first = self.parse_additive()?;
        let mut rest = Vec::new();
        while let Some(op) = self.comparison_op()? {
            rest.push((op, self.parse_additive()?));
        }
        if rest.is_empty() {
            return Ok(first);
        }
        self.build(Kind::Compare(Box::new(first), rest), col)
    }

    /// Consume a comparison operator if one is next.
    fn comparison_op(&mut self) -> Result<Option<CmpOp>> {
        let op = match &self.peek().tok {
            Tok::Sym(Sym::EqEq) => CmpOp::Eq,
            Tok::Sym(Sym::NotEq) => CmpOp::Ne,
            Tok::Sym(Sym::Lt) => CmpOp::Lt,
            Tok::Sym(Sym::Le) => CmpOp::Le,
            Tok::Sym(Sym::Gt) => CmpOp::Gt,
            Tok::Sym(Sym::Ge) => CmpOp::Ge,
            Tok::Kw(Kw::In) => CmpOp::In,
            Tok::Kw(Kw::Not) => return self.not_in().map(Some),
            Tok::Name(name) if name == "is" => {
                return Err(syntax_error(
                    self.peek().col,
                    "'is' is not supported; use '==' or '!='",
                ));
            }
            _ => return Ok(None),
        };
        self.advance();
        Ok(Some(op))
    }

    /// After an operand, `not` can only start `not in`.
    fn not_in(&mut self) -> Result<CmpOp> {
        let next = self.peek_next();
        if !matches!(next.tok, Tok::Kw(Kw::In)) {
            return Err(next.unexpected(format!(
                "expected 'in' after 'not', found {}",
                next.describe()
            )));
        }
        self.advance();
        self.advance();
        Ok(CmpOp::NotIn)
    }

    fn parse_additive(&mut self) -> Result<Expr> {
        let mut lhs = self.parse_multiplicative()?;
        loop {
            let op = match self.peek().tok {
                Tok::Sym(Sym::Plus) => ArithOp::Add,
                Tok::Sym(Sym::Minus) => ArithOp::Sub,
                _ => return Ok(lhs),
            };
            let col = self.peek().col;
            self.advance();
            let rhs = self.parse_multiplicative()?;
            lhs = self.build(Kind::Arith(op, Box::new(lhs), Box::new(rhs)), col)?;
        }
    }

    fn parse_multiplicative(&mut self) -> Result<Expr> {
        let mut lhs = self.parse_unary()?;
        loop {
            let op = match self.peek().tok {
                Tok::Sym(Sym::Star) => ArithOp::Mul,
                Tok::Sym(Sym::Slash) => ArithOp::Div,
                _ => return Ok(lhs),
            };
            let col = self.peek().col;
            self.advance();
            let rhs = self.parse_unary()?;
            lhs = self.build(Kind::Arith(op, Box::new(lhs), Box::new(rhs)), col)?;
        }
    }

    fn parse_unary(&mut self) -> Result<Expr> {
        let op = match self.peek().tok {
            Tok::Sym(Sym::Minus) => UnaryOp::Neg,
            Tok::Sym(Sym::Plus) => UnaryOp::Pos,
            _ => return self.parse_postfix(),
        };
        let col = self.peek().col;
        self.advance();
        let operand = self.nested(Parser::parse_unary)?;
        self.build(Kind::Unary(op, Box::new(operand)), col)
    }

    fn parse_postfix(&mut self) -> Result<Expr> {
        let mut expr = self.parse_atom()?;
        loop {
            let col = self.peek().col;
            expr = match self.peek().tok {
                Tok::Sym(Sym::Dot) => {
                    self.advance();
                    let name = self.attribute_name()?;
                    self.build(Kind::Attr(Box::new(expr), name), col)?
                }
                Tok::Sym(Sym::LBracket) => {
                    self.advance();
                    let index = self.nested(Parser::parse_or)?;
                    self.expect(Sym::RBracket, &format!("']' to close '[' at column {col}"))?;
                    self.build(Kind::Index(Box::new(expr), Box::new(index)), col)?
                }
                Tok::Sym(Sym::LParen) => {
                    return Err(syntax_error(col, "function calls are not supported"));
                }
                _ => return Ok(expr),
            };
        }
    }

    fn attribute_name(&mut self) -> Result<String> {
        let next = self.peek();
        let name = match &next.tok {
            Tok::Name(name) => name.clone(),
            Tok::Kw(_) => next.text.clone(),
            Tok::Int(_) => {
                return Err(next.unexpected(format!(
                    "expected attribute name after '.', found {} (use [{}] to index a list)",
                    next.describe(),
                    next.text
                )));
            }
            _ => {
                return Err(next.unexpected(format!(
                    "expected attribute name after '.', found {}",
                    next.describe()
                )));
            }
        };
        self.advance();
        Ok(name)
    }

    fn parse_atom(&mut self) -> Result<Expr> {
        let token = self.peek().clone();
        let kind = match token.tok {
            Tok::Int(i) => Kind::Literal(Value::from(i)),
            Tok::Float(f) => Kind::Literal(
                float_value(f)
                    .map_err(|_| syntax_error(token.col, "number literal is out of range"))?,
            ),
            Tok::Str(s) => Kind::Literal(Value::String(s)),
            Tok::Kw(Kw::True) => Kind::Literal(Value::Bool(true)),
            Tok::Kw(Kw::False) => Kind::Literal(Value::Bool(false)),
            Tok::Kw(Kw::Null) => Kind::Literal(Value::Null),
            Tok::Name(name) => Kind::Name(name),
            Tok::Sym(Sym::LParen) => return self.parse_group(token.col),
            _ => return Err(atom_error(&token)),
        };
        self.advance();
        self.build(kind, token.col)
    }

    fn parse_group(&mut self, col: usize) -> Result<Expr> {
        self.advance();
        let inner = self.nested(Parser::parse_or)?;
        self.expect(Sym::RParen, &format!("')' to close '(' at column {col}"))?;
        Ok(inner)
    }
}

fn atom_error(token: &Token) -> ConditionError {
    let message = match token.tok {
        Tok::Sym(Sym::LBracket) => "list literals are not supported".to_owned(),
        Tok::Kw(Kw::Not) => format!(
            "expected expression, found {} (put 'not ...' in parentheses here)",
            token.describe()
        ),
        _ => format!("expected expression, found {}", token.describe()),
    };
    token.unexpected(message)
}

fn too_deep(col: usize) -> ConditionError {
    syntax_error(
        col,
        format!("expression is nested too deeply (limit is {MAX_DEPTH} levels)"),
    )
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// Evaluate a node. Results are `Cow` so that reading `context.a.b` borrows
/// from `vars` instead of deep-cloning what may be a large context object.
fn eval_expr<'a>(expr: &'a Expr, vars: &'a Map<String, Value>) -> Result<Cow<'a, Value>> {
    match &expr.kind {
        Kind::Literal(value) => Ok(Cow::Borrowed(value)),
        Kind::Name(name) => lookup_name(name, vars).map(Cow::Borrowed),
        Kind::Attr(target, name) => attribute(eval_expr(target, vars)?, name),
        Kind::Index(target, key) => {
            let target = eval_expr(target, vars)?;
            let key = eval_expr(key, vars)?;
            index(target, &key)
        }
        Kind::Unary(op, operand) => unary(*op, &*eval_expr(operand, vars)?).map(Cow::Owned),
        Kind::Not(operand) => Ok(bool_value(!truthy(&*eval_expr(operand, vars)?))),
        Kind::And(items) => eval_and(items, vars).map(bool_value),
        Kind::Or(items) => eval_or(items, vars).map(bool_value),
        Kind::Arith(op, lhs, rhs) => {
            let lhs = eval_expr(lhs, vars)?;
            let rhs = eval_expr(rhs, vars)?;
            arith(*op, &lhs, &rhs).map(Cow::Owned)
        }
        Kind::Compare(first, rest) => eval_chain(first, rest, vars).map(bool_value),
    }
}

fn bool_value<'a>(b: bool) -> Cow<'a, Value> {
    Cow::Owned(Value::Bool(b))
}

fn lookup_name<'a>(name: &str, vars: &'a Map<String, Value>) -> Result<&'a Value> {
    vars.get(name).ok_or_else(|| {
        if vars.is_empty() {
            return eval_error(format!(
                "unknown name '{name}' (no names are available to conditions)"
            ));
        }
        let available: Vec<&str> = vars.keys().map(String::as_str).collect();
        eval_error(format!(
            "unknown name '{name}' (conditions can use: {})",
            available.join(", ")
        ))
    })
}

/// Short-circuits: later clauses are not evaluated once the result is known,
/// which is what makes guards like `context.x and context.x.y > 1` safe.
fn eval_and(items: &[Expr], vars: &Map<String, Value>) -> Result<bool> {
    for item in items {
        if !truthy(&*eval_expr(item, vars)?) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn eval_or(items: &[Expr], vars: &Map<String, Value>) -> Result<bool> {
    for item in items {
        if truthy(&*eval_expr(item, vars)?) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Python chained comparison: each middle operand is evaluated once, and
/// evaluation stops at the first false link.
fn eval_chain<'a>(
    first: &'a Expr,
    rest: &'a [(CmpOp, Expr)],
    vars: &'a Map<String, Value>,
) -> Result<bool> {
    let mut left = eval_expr(first, vars)?;
    for (op, rhs) in rest {
        let right = eval_expr(rhs, vars)?;
        if !compare(*op, &left, &right)? {
            return Ok(false);
        }
        left = right;
    }
    Ok(true)
}

/// Python truthiness over JSON.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// Python-style type names, because condition authors think in Python terms.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn attribute<'a>(target: Cow<'a, Value>, name: &str) -> Result<Cow<'a, Value>> {
    match target {
        Cow::Borrowed(value) => attribute_ref(value, name),
        Cow::Owned(value) => attribute_ref(&value, name).map(|v| Cow::Owned(v.into_owned())),
    }
}

/// `null.x` is `null` so that optional nested context can be probed with a
/// plain path instead of a chain of guards.
fn attribute_ref<'a>(value: &'a Value, name: &str) -> Result<Cow<'a, Value>> {
    match value {
        Value::Object(map) => Ok(Cow::Borrowed(map.get(name).unwrap_or(&NULL))),
        Value::Null => Ok(Cow::Borrowed(&NULL)),
        other => Err(eval_error(format!(
            "cannot read attribute '{name}' of {} value",
            type_name(other)
        ))),
    }
}

fn index<'a>(target: Cow<'a, Value>, key: &Value) -> Result<Cow<'a, Value>> {
    match target {
        Cow::Borrowed(value) => index_ref(value, key),
        Cow::Owned(value) => index_ref(&value, key).map(|v| Cow::Owned(v.into_owned())),
    }
}

fn index_ref<'a>(value: &'a Value, key: &Value) -> Result<Cow<'a, Value>> {
    match (value, key) {
        (Value::Object(map), Value::String(k)) => Ok(Cow::Borrowed(map.get(k).unwrap_or(&NULL))),
        (Value::Array(items), Value::Number(_)) => {
            let i = resolve_index(key, items.len(), "list")?;
            items
                .get(i)
                .map(Cow::Borrowed)
                .ok_or_else(|| eval_error("list index out of range"))
        }
        (Value::String(s), Value::Number(_)) => {
            let i = resolve_index(key, s.chars().count(), "string")?;
            s.chars()
                .nth(i)
                .map(|c| Cow::Owned(Value::String(c.to_string())))
                .ok_or_else(|| eval_error("string index out of range"))
        }
        _ => Err(eval_error(format!(
            "cannot index {} with {}",
            type_name(value),
            type_name(key)
        ))),
    }
}

/// Turn a JSON number into a position, with Python's negative indexing.
fn resolve_index(key: &Value, len: usize, what: &str) -> Result<usize> {
    let out_of_range = || eval_error(format!("{what} index {key} out of range (length {len})"));
    if key.is_f64() {
        return Err(eval_error(format!(
            "{what} indices must be integers, not float"
        )));
    }
    // A u64 too large for i64 is certainly out of range.
    let raw = key.as_i64().ok_or_else(out_of_range)?;
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let resolved = if raw < 0 { raw + len_i } else { raw };
    if !(0..len_i).contains(&resolved) {
        return Err(out_of_range());
    }
    usize::try_from(resolved).map_err(|_| out_of_range())
}

// --- numbers ---------------------------------------------------------------

/// A JSON number widened so that every `i64` and `u64` is exact: integer
/// arithmetic and comparisons never lose precision inside the JSON range.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn from_value(value: &Value) -> Option<Num> {
        let Value::Number(n) = value else {
            return None;
        };
        if let Some(i) = n.as_i64() {
            Some(Num::Int(i128::from(i)))
        } else if let Some(u) = n.as_u64() {
            Some(Num::Int(i128::from(u)))
        } else {
            n.as_f64().map(Num::Float)
        }
    }

    fn to_f64(self) -> f64 {
        match self {
            // Precision loss is inherent in mixed int/float arithmetic.
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Back to JSON. Integers outside `i64`/`u64` become floats (JSON
    /// consumers rarely handle bigger integers), and non-finite floats are an
    /// error because JSON cannot represent them.
    fn into_value(self) -> Result<Value> {
        match self {
            Num::Int(i) => {
                if let Ok(small) = i64::try_from(i) {
                    Ok(Value::from(small))
                } else if let Ok(big) = u64::try_from(i) {
                    Ok(Value::from(big))
                } else {
                    float_value(i as f64).map_err(|_| non_finite())
                }
            }
            Num::Float(f) => float_value(f).map_err(|_| non_finite()),
        }
    }
}

fn float_value(f: f64) -> Result<Value> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(non_finite)
}

fn non_finite() -> ConditionError {
    eval_error("numeric result is not finite (JSON cannot represent infinity or NaN)")
}

/// Exact numeric ordering, including int vs float (Python compares these
/// exactly too, so `2**53 + 1 > 2.0**53` holds).
fn num_cmp(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
    }
}

fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // 2^127 exactly; every i128 lies in [-2^127, 2^127).
    const LIMIT: f64 = i128::MAX as f64;
    if f >= LIMIT {
        return Ordering::Less;
    }
    if f < -LIMIT {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // Exact: `whole` is integral and within i128 range.
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal),
        unequal => unequal,
    }
}

fn int_op(op: ArithOp, x: i128, y: i128) -> Option<i128> {
    match op {
        ArithOp::Add => x.checked_add(y),
        ArithOp::Sub => x.checked_sub(y),
        ArithOp::Mul => x.checked_mul(y),
        ArithOp::Div => None,
    }
}

/// Numeric `+ - * /`. Division is always true division (like Python 3), so
/// `10 / 4` is `2.5` and `10 / 5` is the float `2.0`.
fn apply_num(op: ArithOp, a: Num, b: Num) -> Result<Num> {
    let (x, y) = (a.to_f64(), b.to_f64());
    if op == ArithOp::Div {
        if y == 0.0 {
            return Err(eval_error("division by zero"));
        }
        return Ok(Num::Float(x / y));
    }
    if let (Num::Int(i), Num::Int(j)) = (a, b) {
        if let Some(result) = int_op(op, i, j) {
            return Ok(Num::Int(result));
        }
    }
    Ok(Num::Float(match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        _ => x * y,
    }))
}

fn operand_error(op: &str, lhs: &Value, rhs: &Value) -> ConditionError {
    eval_error(format!(
        "unsupported operand types for '{op}': {} and {}",
        type_name(lhs),
        type_name(rhs)
    ))
}

fn numeric(op: ArithOp, lhs: &Value, rhs: &Value) -> Result<Value> {
    match (Num::from_value(lhs), Num::from_value(rhs)) {
        (Some(a), Some(b)) => apply_num(op, a, b)?.into_value(),
        _ => Err(operand_error(op.symbol(), lhs, rhs)),
    }
}

fn arith(op: ArithOp, lhs: &Value, rhs: &Value) -> Result<Value> {
    match op {
        ArithOp::Add => add(lhs, rhs),
        ArithOp::Mul => multiply(lhs, rhs),
        ArithOp::Sub | ArithOp::Div => numeric(op, lhs, rhs),
    }
}

fn add(lhs: &Value, rhs: &Value) -> Result<Value> {
    match (lhs, rhs) {
        (Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
        (Value::Array(a), Value::Array(b)) => {
            Ok(Value::Array(a.iter().chain(b).cloned().collect()))
        }
        _ => numeric(ArithOp::Add, lhs, rhs),
    }
}

/// `*` also repeats strings and lists by an integer, as in Python.
fn multiply(lhs: &Value, rhs: &Value) -> Result<Value> {
    match (lhs, rhs) {
        (Value::String(s), count @ Value::Number(_))
        | (count @ Value::Number(_), Value::String(s)) => {
            let n = repeat_count(count, s.len(), lhs, rhs)?;
            Ok(Value::String(s.repeat(n)))
        }
        (Value::Array(items), count @ Value::Number(_))
        | (count @ Value::Number(_), Value::Array(items)) => {
            // At least 1 so that even repeating `[]` cannot loop unboundedly.
            let unit = items.iter().map(json_size).sum::<usize>().max(1);
            let n = repeat_count(count, unit, lhs, rhs)?;
            let mut out = Vec::with_capacity(items.len() * n);
            for _ in 0..n {
                out.extend_from_slice(items);
            }
            Ok(Value::Array(out))
        }
        _ => numeric(ArithOp::Mul, lhs, rhs),
    }
}

/// Validate a repetition count; negative counts give an empty result as in
/// Python, and results beyond [`MAX_REPEAT_SIZE`] are refused.
fn repeat_count(count: &Value, unit_size: usize, lhs: &Value, rhs: &Value) -> Result<usize> {
    if count.is_f64() {
        return Err(operand_error("*", lhs, rhs));
    }
    let too_large = || eval_error("repetition result is too large");
    let n = match count.as_i64() {
        Some(n) if n <= 0 => return Ok(0),
        Some(n) => usize::try_from(n).map_err(|_| too_large())?,
        None => return Err(too_large()),
    };
    match unit_size.checked_mul(n) {
        Some(total) if total <= MAX_REPEAT_SIZE => Ok(n),
        _ => Err(too_large()),
    }
}

/// Rough memory weight of a value (nodes plus string bytes), used to bound
/// list repetition, since repeating a list deep-clones its elements.
fn json_size(value: &Value) -> usize {
    match value {
        Value::String(s) => 1 + s.len(),
        Value::Array(items) => 1 + items.iter().map(json_size).sum::<usize>(),
        Value::Object(map) => {
            1 + map
                .iter()
                .map(|(k, v)| k.len() + json_size(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

fn unary(op: UnaryOp, value: &Value) -> Result<Value> {
    let Some(n) = Num::from_value(value) else {
        return Err(eval_error(format!(
            "cannot apply unary '{}' to {}",
            op.symbol(),
            type_name(value)
        )));
    };
    let result = match (op, n) {
        (UnaryOp::Pos, n) => n,
        (UnaryOp::Neg, Num::Int(i)) => i.checked_neg().map_or(Num::Float(-(i as f64)), Num::Int),
        (UnaryOp::Neg, Num::Float(f)) => Num::Float(-f),
    };
    result.into_value()
}

// --- comparisons -----------------------------------------------------------

fn compare(op: CmpOp, lhs: &Value, rhs: &Value) -> Result<bool> {
    let ordering = match op {
        CmpOp::Eq => return Ok(json_eq(lhs, rhs)),
        CmpOp::Ne => return Ok(!json_eq(lhs, rhs)),
        CmpOp::In => return contains(lhs, rhs, op),
        CmpOp::NotIn => return contains(lhs, rhs, op).map(|found| !found),
        _ => order(lhs, rhs, op)?,
    };
    Ok(match op {
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        _ => ordering != Ordering::Less,
    })
}

/// Deep JSON equality where numbers compare by value (`1 == 1.0`), object key
/// order is irrelevant, and values of different types are simply unequal.
/// Unlike Python, `true == 1` is false: JSON bools are not numbers.
fn json_eq(lhs: &Value, rhs: &Value) -> bool {
    match (lhs, rhs) {
        (Value::Number(_), Value::Number(_)) => {
            match (Num::from_value(lhs), Num::from_value(rhs)) {
                (Some(a), Some(b)) => num_cmp(a, b) == Ordering::Equal,
                _ => false,
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|other| json_eq(v, other)))
        }
        _ => lhs == rhs,
    }
}

/// Ordering for `< <= > >=`: numbers, strings (by code point, which is what
/// byte-wise UTF-8 comparison gives) and lists (lexicographic, like Python).
/// Everything else is an error rather than an arbitrary answer.
fn order(lhs: &Value, rhs: &Value, op: CmpOp) -> Result<Ordering> {
    match (lhs, rhs) {
        (Value::String(a), Value::String(b)) => Ok(a.cmp(b)),
        (Value::Array(a), Value::Array(b)) => order_lists(a, b, op),
        _ => match (Num::from_value(lhs), Num::from_value(rhs)) {
            (Some(a), Some(b)) => Ok(num_cmp(a, b)),
            _ => Err(eval_error(format!(
                "cannot compare {} with {} using '{}'",
                type_name(lhs),
                type_name(rhs),
                op.symbol()
            ))),
        },
    }
}

/// Python list ordering: the first unequal pair decides, else the length.
fn order_lists(a: &[Value], b: &[Value], op: CmpOp) -> Result<Ordering> {
    match a.iter().zip(b).find(|(x, y)| !json_eq(x, y)) {
        Some((x, y)) => order(x, y, op),
        None => Ok(a.len().cmp(&b.len())),
    }
}

/// `needle in haystack`: substring, list element, or dict key.
fn contains(needle: &Value, haystack: &Value, op: CmpOp) -> Result<bool> {
    match (needle, haystack) {
        (Value::String(n), Value::String(h)) => Ok(h.contains(n.as_str())),
        (_, Value::Array(items)) => Ok(items.iter().any(|item| json_eq(needle, item))),
        (Value::String(key), Value::Object(map)) => Ok(map.contains_key(key)),
        _ => Err(operand_error(op.symbol(), needle, haystack)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(context: Value) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("context".to_owned(), context);
        map
    }

    fn sample() -> Map<String, Value> {
        vars(json!({
            "score": 9,
            "round": 2,
            "ratio": 0.5,
            "name": "paper",
            "tags": ["a", "b", 3],
            "empty": [],
            "nested": {"inner": {"value": 42}, "list": [10, 20, 30]},
            "flag": true,
            "nothing": null,
            "big": u64::MAX,
            "in": "keyword key",
        }))
    }

    fn eval_with(src: &str, vars: &Map<String, Value>) -> Value {
        Condition::parse(src)
            .unwrap_or_else(|e| panic!("parse {src:?}: {e}"))
            .eval(vars)
            .unwrap_or_else(|e| panic!("eval {src:?}: {e}"))
    }

    fn ev(src: &str) -> Value {
        eval_with(src, &sample())
    }

    fn eval_err(src: &str) -> String {
        let cond = Condition::parse(src).unwrap_or_else(|e| panic!("parse {src:?}: {e}"));
        match cond.eval(&sample()) {
            Err(ConditionError::Eval(msg)) => msg,
            other => panic!("expected eval error for {src:?}, got {other:?}"),
        }
    }

    fn syntax(src: &str) -> (usize, String) {
        match Condition::parse(src) {
            Err(ConditionError::Syntax { col, message }) => (col, message),
            other => panic!("expected syntax error for {src:?}, got {other:?}"),
        }
    }

    #[test]
    fn empty_condition_is_true() {
        for src in ["", "   ", "\n\t "] {
            let cond = Condition::parse(src).unwrap();
            assert_eq!(cond.source(), src);
            assert_eq!(cond.eval(&Map::new()).unwrap(), json!(true));
            assert!(cond.eval_bool(&Map::new()).unwrap());
            assert!(cond.root_names().is_empty());
        }
    }

    #[test]
    fn source_is_preserved() {
        let cond = Condition::parse(" context.score >= 8 ").unwrap();
        assert_eq!(cond.source(), " context.score >= 8 ");
        let cloned = cond.clone();
        assert_eq!(cloned.source(), cond.source());
    }

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
    fn attribute_access() {
        assert_eq!(ev("context.score"), json!(9));
        assert_eq!(ev("context.nested.inner.value"), json!(42));
        assert_eq!(ev("context.missing"), Value::Null);
        assert_eq!(ev("context.missing.x.y.z"), Value::Null);
        assert_eq!(ev("context.nothing.x"), Value::Null);
        assert_eq!(ev("context.nested.missing.value"), Value::Null);
        assert_eq!(ev("context.in"), json!("keyword key"));
        assert_eq!(ev("context . score"), json!(9));
        assert_eq!(
            eval_err("context.score.x"),
            "cannot read attribute 'x' of int value"
        );
        assert_eq!(
            eval_err("context.name.upper"),
            "cannot read attribute 'upper' of str value"
        );
    }

    #[test]
    fn subscripts() {
        assert_eq!(ev("context['score']"), json!(9));
        assert_eq!(ev("context[\"nested\"]['inner'].value"), json!(42));
        assert_eq!(ev("context['missing']"), Value::Null);
        assert_eq!(ev("context.nested.list[0]"), json!(10));
        assert_eq!(ev("context.nested.list[-1]"), json!(30));
        assert_eq!(ev("context.nested.list[-3]"), json!(10));
        assert_eq!(ev("context.nested.list[1 + 1]"), json!(30));
        assert_eq!(ev("context.name[0]"), json!("p"));
        assert_eq!(ev("context.name[-1]"), json!("r"));
        assert_eq!(ev("'héllo'[1]"), json!("é"));
        assert_eq!(ev("(context.tags + context.empty)[2]"), json!(3));
    }

    #[test]
    fn subscript_errors() {
        assert_eq!(
            eval_err("context.nested.list[3]"),
            "list index 3 out of range (length 3)"
        );
        assert_eq!(
            eval_err("context.nested.list[-4]"),
            "list index -4 out of range (length 3)"
        );
        assert_eq!(
            eval_err("context.nested.list[1.0]"),
            "list indices must be integers, not float"
        );
        assert_eq!(
            eval_err("context.nested.list['a']"),
            "cannot index list with str"
        );
        assert_eq!(eval_err("context[0]"), "cannot index dict with int");
        assert_eq!(
            eval_err("context.missing['a']"),
            "cannot index None with str"
        );
        assert_eq!(eval_err("context.score[0]"), "cannot index int with int");
        assert_eq!(
            eval_err("context.name[5]"),
            "string index 5 out of range (length 5)"
        );
        assert_eq!(
            eval_err("context.nested.list[context.flag]"),
            "cannot index list with bool"
        );
        assert_eq!(
            eval_err("context.nested.list[context.big]"),
            format!("list index {} out of range (length 3)", u64::MAX)
        );
    }

    #[test]
    fn unknown_root_name() {
        assert_eq!(
            eval_err("foo.bar == 1"),
            "unknown name 'foo' (conditions can use: context)"
        );
        let mut two = sample();
        two.insert("input".to_owned(), json!({}));
        let cond = Condition::parse("output").unwrap();
        assert_eq!(
            cond.eval(&two),
            Err(ConditionError::Eval(
                "unknown name 'output' (conditions can use: context, input)".to_owned()
            ))
        );
        assert_eq!(
            cond.eval(&Map::new()).unwrap_err().to_string(),
            "unknown name 'output' (no names are available to conditions)"
        );
    }

    #[test]
    fn boolean_operators_return_bools() {
        assert_eq!(ev("context.score and context.name"), json!(true));
        assert_eq!(ev("context.score and context.empty"), json!(false));
        assert_eq!(ev("context.empty or context.nothing"), json!(false));
        assert_eq!(ev("context.empty or 'x'"), json!(true));
        assert_eq!(ev("not context.flag"), json!(false));
        assert_eq!(ev("not context.nothing"), json!(true));
        assert_eq!(ev("not not 5"), json!(true));
        assert_eq!(ev("true and true and false"), json!(false));
        assert_eq!(ev("false or false or 1"), json!(true));
    }

    #[test]
    fn short_circuit() {
        // `context.missing.x > 1` alone would be `None > int`, an error.
        assert_eq!(
            eval_err("context.missing.x > 1"),
            "cannot compare None with int using '>'"
        );
        assert_eq!(
            ev("context.missing and context.missing.x > 1"),
            json!(false)
        );
        assert_eq!(
            ev("not context.missing or context.missing.x > 1"),
            json!(true)
        );
        assert_eq!(ev("true or undefined_name"), json!(true));
        assert_eq!(ev("false and undefined_name"), json!(false));
        assert_eq!(ev("false and 1 / 0"), json!(false));
        assert!(eval_err("true and undefined_name").starts_with("unknown name"));
        // Chains stop at the first false link.
        assert_eq!(ev("1 > 2 < undefined_name"), json!(false));
    }

    #[test]
    fn equality() {
        for (src, expected) in [
            ("1 == 1.0", true),
            ("1 != 1.0", false),
            ("1 == '1'", false),
            ("1 != '1'", true),
            ("null == null", true),
            ("None == context.missing", true),
            ("null == 0", false),
            ("null == false", false),
            ("true == 1", false),
            ("false == 0", false),
            ("true == True", true),
            ("'a' == 'a'", true),
            ("'a' == 'A'", false),
            ("context.tags == context.tags", true),
            ("context.score == 9", true),
            ("context.ratio == 0.5", true),
            ("context.big == context.big", true),
            ("context.big == 9223372036854775807", false),
        ] {
            assert_eq!(ev(src), json!(expected), "{src}");
        }
    }

    #[test]
    fn deep_equality() {
        let v = vars(json!({
            "a": {"x": 1, "y": [1, 2.0, {"z": null}]},
            "b": {"y": [1.0, 2, {"z": null}], "x": 1.0},
            "c": {"x": 1, "y": [1, 2, {"z": false}]},
            "d": [1, 2],
            "e": [1, 2, 3],
            "f": [true],
            "g": [1],
        }));
        assert_eq!(eval_with("context.a == context.b", &v), json!(true));
        assert_eq!(eval_with("context.a == context.c", &v), json!(false));
        assert_eq!(eval_with("context.d == context.e", &v), json!(false));
        assert_eq!(eval_with("context.f == context.g", &v), json!(false));
        assert_eq!(eval_with("context.a != context.c", &v), json!(true));
    }

    #[test]
    fn ordering_numbers_and_strings() {
        for (src, expected) in [
            ("1 < 2", true),
            ("2 < 1", false),
            ("2 <= 2", true),
            ("3 <= 2", false),
            ("3 > 2", true),
            ("2 > 2", false),
            ("2 >= 2", true),
            ("1 >= 2", false),
            ("1 < 1.5", true),
            ("2.5 > 2", true),
            ("2.0 >= 2", true),
            ("-1 < -0.5", true),
            ("context.score >= 8", true),
            ("context.big > 9223372036854775807", true),
            ("'apple' < 'banana'", true),
            ("'b' > 'abc'", true),
            ("'' < 'a'", true),
            ("'Z' < 'a'", true),
            ("'é' > 'z'", true),
            ("'a' <= 'a'", true),
        ] {
            assert_eq!(ev(src), json!(expected), "{src}");
        }
    }

    #[test]
    fn int_float_comparison_is_exact() {
        // 2^53 + 1 is not representable as f64; a naive cast would say equal.
        let v = vars(json!({"i": 9_007_199_254_740_993_i64, "f": 9_007_199_254_740_992.0}));
        assert_eq!(eval_with("context.i > context.f", &v), json!(true));
        assert_eq!(eval_with("context.i == context.f", &v), json!(false));
        assert_eq!(eval_with("context.f < context.i", &v), json!(true));
        assert_eq!(eval_with("1e300 > context.i", &v), json!(true));
        assert_eq!(eval_with("-1e300 < context.i", &v), json!(true));
        assert_eq!(eval_with("-2.5 < -2", &v), json!(true));
        assert_eq!(eval_with("-2 > -2.5", &v), json!(true));
    }

    #[test]
    fn ordering_lists() {
        let v = vars(json!({
            "a": [1, 2, 3],
            "b": [1, 2, 4],
            "c": [1, 2],
            "d": [1, "x"],
            "e": [null, 1],
            "f": [null, 2],
            "g": [1.0, 2, 3],
            "h": [1, 2, "x"],
        }));
        for (src, expected) in [
            ("context.a < context.b", true),
            ("context.b > context.a", true),
            ("context.c < context.a", true),
            ("context.a <= context.g", true),
            ("context.a < context.g", false),
            ("context.e < context.f", true),
            ("context.c < context.h", true),
        ] {
            assert_eq!(eval_with(src, &v), json!(expected), "{src}");
        }
        // The first unequal pair decides, and `2 < "x"` is a type error.
        let cond = Condition::parse("context.c < context.d").unwrap();
        assert_eq!(
            cond.eval(&v).unwrap_err().to_string(),
            "cannot compare int with str using '<'"
        );
    }

    #[test]
    fn ordering_type_errors() {
        assert_eq!(
            eval_err("'a' >= 1"),
            "cannot compare str with int using '>='"
        );
        assert_eq!(eval_err("1 < 'a'"), "cannot compare int with str using '<'");
        assert_eq!(
            eval_err("null > 1"),
            "cannot compare None with int using '>'"
        );
        assert_eq!(
            eval_err("1.5 <= null"),
            "cannot compare float with None using '<='"
        );
        assert_eq!(
            eval_err("true < 2"),
            "cannot compare bool with int using '<'"
        );
        assert_eq!(
            eval_err("true < false"),
            "cannot compare bool with bool using '<'"
        );
        assert_eq!(
            eval_err("context.nested < context.nested"),
            "cannot compare dict with dict using '<'"
        );
        assert_eq!(
            eval_err("context.tags > 'x'"),
            "cannot compare list with str using '>'"
        );
    }

    #[test]
    fn comparison_chains() {
        for (src, expected) in [
            ("1 < 2 < 3", true),
            ("1 < 3 < 2", false),
            ("3 > 2 > 1", true),
            ("1 < 2 > 0", true),
            ("1 == 1 == 1.0", true),
            ("1 == 1 != 2", true),
            ("0 <= context.ratio <= 1", true),
            ("0 <= context.score <= 5", false),
            ("'a' in 'abc' in 'xabcx'", true),
            ("1 < 2 < 3 < 4 < 5", true),
            ("1 < 2 < 3 < 5 < 4", false),
        ] {
            assert_eq!(ev(src), json!(expected), "{src}");
        }
        // Python semantics: the chain is not `(1 < 3) < 2`, which would
        // compare a bool with an int.
        assert_eq!(
            eval_err("(1 < 3) < 2"),
            "cannot compare bool with int using '<'"
        );
    }

    #[test]
    fn membership() {
        for (src, expected) in [
            ("'pap' in context.name", true),
            ("'xyz' in context.name", false),
            ("'' in context.name", true),
            ("'xyz' not in context.name", true),
            ("'a' in context.tags", true),
            ("3 in context.tags", true),
            ("3.0 in context.tags", true),
            ("'3' in context.tags", false),
            ("'c' not in context.tags", true),
            ("null in context.tags", false),
            ("1 in context.empty", false),
            ("'inner' in context.nested", true),
            ("'value' in context.nested", false),
            ("'value' not in context.nested", true),
            ("'score' in context", true),
            ("context.nested.inner in context.tags", false),
        ] {
            assert_eq!(ev(src), json!(expected), "{src}");
        }
    }

    #[test]
    fn membership_errors() {
        assert_eq!(
            eval_err("1 in 'abc'"),
            "unsupported operand types for 'in': int and str"
        );
        assert_eq!(
            eval_err("'a' in context.missing"),
            "unsupported operand types for 'in': str and None"
        );
        assert_eq!(
            eval_err("1 not in context.nested"),
            "unsupported operand types for 'not in': int and dict"
        );
        assert_eq!(
            eval_err("'a' in 5"),
            "unsupported operand types for 'in': str and int"
        );
    }

    #[test]
    fn addition() {
        assert_eq!(ev("1 + 2"), json!(3));
        assert_eq!(ev("1 + 2.5"), json!(3.5));
        assert_eq!(ev("1.5 + 1.5"), json!(3.0));
        assert_eq!(ev("context.round + 1"), json!(3));
        assert_eq!(ev("'ab' + 'cd'"), json!("abcd"));
        assert_eq!(
            ev("context.tags + context.nested.list"),
            json!(["a", "b", 3, 10, 20, 30])
        );
        assert_eq!(ev("context.empty + context.empty"), json!([]));
        // Past i64 but within u64 stays an exact integer...
        assert_eq!(
            ev("9223372036854775807 + 1"),
            json!(9_223_372_036_854_775_808_u64)
        );
        // ...and past u64 becomes a float.
        assert_eq!(ev("context.big + 1"), json!(18_446_744_073_709_551_616.0));
        assert_eq!(
            ev("-9223372036854775807 - 10"),
            json!(-9_223_372_036_854_775_817.0)
        );
    }

    #[test]
    fn addition_errors() {
        assert_eq!(
            eval_err("'a' + 1"),
            "unsupported operand types for '+': str and int"
        );
        assert_eq!(
            eval_err("1 + 'a'"),
            "unsupported operand types for '+': int and str"
        );
        assert_eq!(
            eval_err("true + 1"),
            "unsupported operand types for '+': bool and int"
        );
        assert_eq!(
            eval_err("null + 1"),
            "unsupported operand types for '+': None and int"
        );
        assert_eq!(
            eval_err("context.tags + 'x'"),
            "unsupported operand types for '+': list and str"
        );
        assert_eq!(
            eval_err("context.nested + context.nested"),
            "unsupported operand types for '+': dict and dict"
        );
    }

    #[test]
    fn subtraction_and_multiplication() {
        assert_eq!(ev("5 - 7"), json!(-2));
        assert_eq!(ev("5 - 0.5"), json!(4.5));
        assert_eq!(ev("2 - 3 - 4"), json!(-5));
        assert_eq!(ev("6 * 7"), json!(42));
        assert_eq!(ev("2 * 0.25"), json!(0.5));
        assert_eq!(
            ev("context.big * context.big"),
            json!(3.402_823_669_209_385e38)
        );
        assert_eq!(ev("'ab' * 3"), json!("ababab"));
        assert_eq!(ev("3 * 'ab'"), json!("ababab"));
        assert_eq!(ev("'ab' * 0"), json!(""));
        assert_eq!(ev("'ab' * -2"), json!(""));
        assert_eq!(
            ev("context.nested.list * 2"),
            json!([10, 20, 30, 10, 20, 30])
        );
        assert_eq!(
            ev("2 * context.nested.list"),
            json!([10, 20, 30, 10, 20, 30])
        );
        assert_eq!(ev("context.nested.list * -1"), json!([]));
        assert_eq!(
            eval_err("'a' - 'a'"),
            "unsupported operand types for '-': str and str"
        );
        assert_eq!(
            eval_err("'a' * 'a'"),
            "unsupported operand types for '*': str and str"
        );
        assert_eq!(
            eval_err("'a' * 1.5"),
            "unsupported operand types for '*': str and float"
        );
        assert_eq!(
            eval_err("'a' * true"),
            "unsupported operand types for '*': str and bool"
        );
        assert_eq!(
            eval_err("context.tags * context.tags"),
            "unsupported operand types for '*': list and list"
        );
        assert_eq!(
            eval_err("'a' * 10000000000"),
            "repetition result is too large"
        );
        assert_eq!(
            eval_err("'a' * context.big"),
            "repetition result is too large"
        );
        assert_eq!(
            eval_err("context.nested.list * 1000000"),
            "repetition result is too large"
        );
        assert_eq!(
            eval_err("context.empty * 10000000"),
            "repetition result is too large"
        );
        assert_eq!(ev("'' * 10000000000"), json!(""));
    }

    #[test]
    fn division() {
        assert_eq!(ev("10 / 4"), json!(2.5));
        assert_eq!(ev("10 / 5"), json!(2.0));
        assert!(ev("10 / 5").is_f64());
        assert_eq!(ev("1 / 3 * 3"), json!(1.0));
        assert_eq!(ev("8 / 4 / 2"), json!(1.0));
        assert_eq!(ev("-7 / 2"), json!(-3.5));
        assert_eq!(eval_err("1 / 0"), "division by zero");
        assert_eq!(eval_err("1 / 0.0"), "division by zero");
        assert_eq!(eval_err("1.5 / -0.0"), "division by zero");
        assert_eq!(
            eval_err("'a' / 2"),
            "unsupported operand types for '/': str and int"
        );
        assert_eq!(
            eval_err("1e308 / 1e-308"),
            "numeric result is not finite (JSON cannot represent infinity or NaN)"
        );
    }

    #[test]
    fn non_finite_results_are_errors() {
        assert_eq!(
            eval_err("1e308 * 10"),
            "numeric result is not finite (JSON cannot represent infinity or NaN)"
        );
        assert_eq!(
            eval_err("-1e308 - 1e308"),
            "numeric result is not finite (JSON cannot represent infinity or NaN)"
        );
    }

    #[test]
    fn unary_operators() {
        assert_eq!(ev("-3"), json!(-3));
        assert_eq!(ev("+3"), json!(3));
        assert_eq!(ev("-2.5"), json!(-2.5));
        assert_eq!(ev("- -3"), json!(3));
        assert_eq!(ev("-(-3)"), json!(3));
        assert_eq!(ev("+-+2"), json!(-2));
        assert_eq!(ev("-context.score"), json!(-9));
        assert_eq!(ev("-context.big"), json!(-18_446_744_073_709_551_615.0));
        assert_eq!(eval_err("-'a'"), "cannot apply unary '-' to str");
        assert_eq!(eval_err("+null"), "cannot apply unary '+' to None");
        assert_eq!(eval_err("-true"), "cannot apply unary '-' to bool");
    }

    #[test]
    fn precedence() {
        for (src, expected) in [
            ("1 + 2 * 3", json!(7)),
            ("(1 + 2) * 3", json!(9)),
            ("2 * 3 + 1", json!(7)),
            ("10 - 2 * 3", json!(4)),
            ("-2 * 3", json!(-6)),
            ("-2 + 3", json!(1)),
            ("2 * -3", json!(-6)),
            ("1 + 1 == 2", json!(true)),
            ("2 == 1 + 1", json!(true)),
            ("not 1 == 2", json!(true)),
            ("not true and false", json!(false)),
            ("not (true and false)", json!(true)),
            ("true or false and false", json!(true)),
            ("(true or false) and false", json!(false)),
            ("false and false or true", json!(true)),
            ("not 'a' in 'abc'", json!(false)),
            ("-context.nested.list[0]", json!(-10)),
            ("context.score - 1 >= 8 and context.round < 4", json!(true)),
            ("1 + 2 < 2 * 2", json!(true)),
            ("'x' + 'y' in 'axyb'", json!(true)),
        ] {
            assert_eq!(ev(src), expected, "{src}");
        }
    }

    #[test]
    fn truthiness() {
        let v = vars(json!({
            "t": [true, 1, -1, 0.1, "x", [0], {"a": null}],
            "f": [false, null, 0, 0.0, -0.0, "", [], {}],
        }));
        for i in 0..7 {
            let cond = Condition::parse(&format!("context.t[{i}]")).unwrap();
            assert!(cond.eval_bool(&v).unwrap(), "t[{i}]");
        }
        for i in 0..8 {
            let cond = Condition::parse(&format!("context.f[{i}]")).unwrap();
            assert!(!cond.eval_bool(&v).unwrap(), "f[{i}]");
        }
        let missing = Condition::parse("context.nope").unwrap();
        assert!(!missing.eval_bool(&v).unwrap());
        let err = Condition::parse("ghost").unwrap();
        assert!(err.eval_bool(&v).is_err());
    }

    #[test]
    fn whitespace_and_newlines_are_insignificant() {
        assert_eq!(
            ev("context.score >= 8\n  and\tcontext.round < 4\n"),
            json!(true)
        );
    }

    #[test]
    fn root_names_in_first_seen_order() {
        let cond =
            Condition::parse("context.a and input.b or context.c[other.d] == output and not input")
                .unwrap();
        assert_eq!(cond.root_names(), ["context", "input", "other", "output"]);
        let literal = Condition::parse("true and None != 'context' and 1 < 2").unwrap();
        assert!(literal.root_names().is_empty());
        let attrs = Condition::parse("context.input.output").unwrap();
        assert_eq!(attrs.root_names(), ["context"]);
        let chain = Condition::parse("-x < y.z < x + w").unwrap();
        assert_eq!(chain.root_names(), ["x", "y", "w"]);
    }

    #[test]
    fn syntax_error_columns() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "context.x ==",
                13,
                "expected expression, found end of input",
            ),
            ("1 + 2)", 6, "unexpected token ')'"),
            (
                "(1 + 2",
                7,
                "expected ')' to close '(' at column 1, found end of input",
            ),
            (
                "context.x[1",
                12,
                "expected ']' to close '[' at column 10, found end of input",
            ),
            ("'abc", 1, "unterminated string"),
            ("x == \"abc", 6, "unterminated string"),
            ("'ab\ncd'", 1, "unterminated string"),
            ("len(x)", 4, "function calls are not supported"),
            (
                "context.items.count(1)",
                20,
                "function calls are not supported",
            ),
            ("context.x = 1", 11, "use '==' for comparison"),
            ("a b", 3, "unexpected token 'b'"),
            ("1 +* 2", 4, "expected expression, found '*'"),
            ("a and", 6, "expected expression, found end of input"),
            ("or a", 1, "expected expression, found 'or'"),
            ("a not b", 7, "expected 'in' after 'not', found 'b'"),
            ("a is None", 3, "'is' is not supported; use '==' or '!='"),
            ("x in [1, 2]", 6, "list literals are not supported"),
            (
                "context.",
                9,
                "expected attribute name after '.', found end of input",
            ),
            (
                "context.list.0",
                14,
                "expected attribute name after '.', found '0' (use [0] to index a list)",
            ),
            ("3abc", 1, "invalid number literal"),
            ("1e", 1, "invalid number literal"),
            (
                "007",
                1,
                "leading zeros in integer literals are not permitted",
            ),
            ("!a", 1, "use 'not' for negation"),
            ("a && b", 3, "use 'and' instead of '&' or '&&'"),
            ("a || b", 3, "use 'or' instead of '|' or '||'"),
            ("a % 2", 3, "operator '%' is not supported"),
            ("a ** 2", 3, "operator '**' is not supported"),
            (
                "a // 2",
                3,
                "operator '//' is not supported ('/' is true division)",
            ),
            ("a == {}", 6, "dict literals are not supported"),
            (
                "(1, 2)",
                3,
                "unexpected ',' (tuples, lists and function arguments are not supported)",
            ),
            ("a ; b", 3, "unexpected character ';'"),
            ("f(1, 2)", 2, "function calls are not supported"),
            ("len(x) % 2", 4, "function calls are not supported"),
            ("(a) ( % 2", 5, "function calls are not supported"),
            ("a % 2 == (", 3, "operator '%' is not supported"),
            (
                "a and b,",
                8,
                "unexpected ',' (tuples, lists and function arguments are not supported)",
            ),
            ("x in [", 6, "list literals are not supported"),
            (
                "a == not b",
                6,
                "expected expression, found 'not' (put 'not ...' in parentheses here)",
            ),
            ("()", 2, "expected expression, found ')'"),
            ("x[]", 3, "expected expression, found ']'"),
            ("'\\u12'", 2, "invalid escape: expected 4 hex digits"),
            ("'\\ud800'", 2, "invalid unicode escape (U+D800)"),
            ("'\\xZZ'", 2, "invalid escape: expected 2 hex digits"),
            ("99999999999999999999", 1, "integer literal is too large"),
            ("1e999", 1, "number literal is out of range"),
            ("\"éé\" + ü", 8, "unexpected character 'ü'"),
            ("a\n  == =", 8, "use '==' for comparison"),
        ];
        for &(src, col, message) in cases {
            assert_eq!(syntax(src), (col, message.to_owned()), "{src:?}");
        }
    }

    #[test]
    fn syntax_error_display() {
        let err = Condition::parse("a = 1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "syntax error at column 3: use '==' for comparison"
        );
        assert_eq!(
            err,
            ConditionError::Syntax {
                col: 3,
                message: "use '==' for comparison".to_owned()
            }
        );
    }

    #[test]
    fn nesting_limits() {
        let deep_parens = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(syntax(&deep_parens).1.contains("nested too deeply"));
        let deep_not = format!("{}true", "not ".repeat(5000));
        assert!(syntax(&deep_not).1.contains("nested too deeply"));
        let deep_neg = format!("{}1", "-".repeat(5000));
        assert!(syntax(&deep_neg).1.contains("nested too deeply"));
        let long_sum = vec!["1"; 5000].join(" + ");
        assert!(syntax(&long_sum).1.contains("nested too deeply"));
        let long_path = format!("context{}", ".a".repeat(5000));
        assert!(syntax(&long_path).1.contains("nested too deeply"));

        // Right at the limit still parses and evaluates on a test thread's
        // small stack.
        let at_limit = format!("{}1", "-".repeat(MAX_DEPTH - 1));
        assert_eq!(ev(&at_limit), json!(-1));
        let sum_at_limit = vec!["1"; MAX_DEPTH].join(" + ");
        assert_eq!(ev(&sum_at_limit), json!(MAX_DEPTH));
        let one_over = format!("{}1", "-".repeat(MAX_DEPTH));
        assert!(syntax(&one_over).1.contains("nested too deeply"));

        // Reasonable sizes work, and flattened clause lists are not limited.
        let ok_parens = format!("{}1{}", "(".repeat(50), ")".repeat(50));
        assert_eq!(ev(&ok_parens), json!(1));
        let ok_sum = vec!["1"; 50].join(" + ");
        assert_eq!(ev(&ok_sum), json!(50));
        let many_clauses = vec!["context.score > 1"; 2000].join(" and ");
        assert_eq!(ev(&many_clauses), json!(true));
        let long_chain = (0..2000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" < ");
        assert_eq!(ev(&long_chain), json!(true));
    }

    #[test]
    fn eval_does_not_mutate_or_require_owned_input() {
        let v = sample();
        let before = v.clone();
        let cond = Condition::parse("context.nested.list[0] + 1 == 11").unwrap();
        assert_eq!(cond.eval(&v).unwrap(), json!(true));
        assert_eq!(v, before);
    }

    #[test]
    fn owned_intermediate_values_support_postfix() {
        let v = vars(json!({"a": [{"k": 1}], "b": [{"k": 2}]}));
        assert_eq!(eval_with("(context.a + context.b)[1].k", &v), json!(2));
        assert_eq!(eval_with("(context.a + context.b)[0]['k']", &v), json!(1));
        assert_eq!(eval_with("('ab' + 'c')[2]", &v), json!("c"));
        let cond = Condition::parse("(1 + 2).x").unwrap();
        assert_eq!(
            cond.eval(&v).unwrap_err(),
            ConditionError::Eval("cannot read attribute 'x' of int value".to_owned())
        );
    }
}
