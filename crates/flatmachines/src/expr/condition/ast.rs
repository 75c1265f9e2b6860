//! The parsed form of a condition.
//!
//! Shared by the parser (which builds it) and the evaluator (which walks it);
//! it carries no source text beyond names and literals, so an evaluated
//! condition never re-reads or re-tokenizes its source.

use std::iter;

use serde_json::Value;

/// A parsed node. `depth` is the height of the subtree, tracked while parsing
/// so over-deep expressions are rejected before anything recurses over them.
#[derive(Debug, Clone)]
pub(super) struct Expr {
    pub(super) kind: Kind,
    pub(super) depth: usize,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
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
    pub(super) fn children(&self) -> Vec<&Expr> {
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
pub(super) enum UnaryOp {
    Neg,
    Pos,
}

impl UnaryOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Neg => "-",
            UnaryOp::Pos => "+",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
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
    pub(super) fn symbol(self) -> &'static str {
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
