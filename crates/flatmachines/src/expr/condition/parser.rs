//! Recursive-descent parser from tokens to the [`super::ast`] tree.
//!
//! This is where the depth limit lives: both the parser's own recursion and
//! the height of the tree it builds are bounded, so nothing downstream can
//! overflow a small worker stack.

use serde_json::Value;

use super::ast::{ArithOp, CmpOp, Expr, Kind, UnaryOp};
use super::lexer::{Kw, Sym, Tok, Token};
use super::ops::float_value;
use super::{syntax_error, ConditionError, Result};

/// Maximum nesting of the parsed expression. Parsing and evaluation are
/// recursive and may run on threads with small stacks (tokio workers default
/// to 2 MiB), so a hostile or generated condition must not be able to
/// overflow the stack.
/// `and`/`or` and comparison chains are flattened, so long lists of clauses
/// do not count against this limit.
const MAX_DEPTH: usize = 100;

/// Recursive-descent parser, one method per precedence level.
pub(super) struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Current recursion depth of the parser itself (parentheses, subscripts,
    /// prefix operators), bounded for the same reason as [`MAX_DEPTH`].
    nesting: usize,
    /// Returned by `peek` past the end, so no indexing can panic.
    eof: Token,
}

impl Parser {
    pub(super) fn new(tokens: Vec<Token>) -> Parser {
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

    pub(super) fn parse_all(&mut self) -> Result<Expr> {
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

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::MAX_DEPTH;
    use serde_json::json;

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
}
