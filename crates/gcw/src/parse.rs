//! The syntax tree of a Cloud Workflows expression and its parser, with the documented
//! precedence, from the least binding: `or`; `and`; comparisons (`==`, `!=`, `<`,
//! `<=`, `>`, `>=`, `in`); `+`, `-`; `*`, `/`, `//`, `%`; unary `-`; `not`; then
//! field access, indexing and calls. Every node keeps its byte range in the
//! expression's text.

use std::ops::Range;

use serde_json::Value;

use crate::interp::LibraryRef;
use crate::lex::{LexError, Tok, lex};

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) kind: Ast,
    pub(crate) range: Range<usize>,
}

#[derive(Clone, Debug)]
pub(crate) enum Ast {
    Lit(Value),
    Var(String),
    Field(Box<Node>, String),
    Index(Box<Node>, Box<Node>),
    /// A function of the standard library (`text.split`) or a subworkflow, by name.
    Call(String, Vec<Node>),
    /// A call of a subworkflow, found as such when the document was checked.
    Sub(LibraryRef, String, Vec<Node>),
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Not(Box<Node>),
    Neg(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

impl Op {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::FloorDiv => "//",
            Op::Rem => "%",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
        }
    }
}

/// Deepest nesting of an expression's syntax, so that evaluation cannot overflow.
const MAX_NESTING: usize = 64;

pub(crate) type ParseError = LexError;

/// Parses the text inside `${ }`.
pub(crate) fn parse(text: &str) -> Result<Node, ParseError> {
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Err(ParseError {
            message: "the expression is empty".into(),
            range: 0..text.len(),
        });
    }
    let mut p = Parser {
        tokens,
        at: 0,
        end: text.len(),
        depth: 0,
    };
    let node = p.or()?;
    if let Some((tok, range)) = p.tokens.get(p.at) {
        return Err(ParseError {
            message: format!("unexpected {} after a complete expression", tok.describe()),
            range: range.clone(),
        });
    }
    Ok(node)
}

struct Parser {
    tokens: Vec<(Tok, Range<usize>)>,
    at: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn here(&self) -> Range<usize> {
        self.tokens
            .get(self.at)
            .map_or(self.end..self.end, |(_, r)| r.clone())
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Range<usize>, ParseError> {
        let range = self.here();
        if self.eat(&tok) {
            return Ok(range);
        }
        let found = self
            .peek()
            .map_or("the end of the expression".to_string(), Tok::describe);
        Err(ParseError {
            message: format!("expected {what}, found {found}"),
            range,
        })
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ParseError {
                message: format!("the expression nests deeper than {MAX_NESTING} levels"),
                range: self.here(),
            });
        }
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut left = self.and()?;
        while self.eat(&Tok::Or) {
            let right = self.and()?;
            left = join(left, right, Ast::Or);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let mut left = self.comparison()?;
        while self.eat(&Tok::And) {
            let right = self.comparison()?;
            left = join(left, right, Ast::And);
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Node, ParseError> {
        let mut left = self.additive()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Eq) => Op::Eq,
                Some(Tok::Ne) => Op::Ne,
                Some(Tok::Lt) => Op::Lt,
                Some(Tok::Le) => Op::Le,
                Some(Tok::Gt) => Op::Gt,
                Some(Tok::Ge) => Op::Ge,
                Some(Tok::In) => Op::In,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.additive()?;
            left = join(left, right, |l, r| Ast::Bin(op, l, r));
        }
    }

    fn additive(&mut self) -> Result<Node, ParseError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => Op::Add,
                Some(Tok::Minus) => Op::Sub,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.multiplicative()?;
            left = join(left, right, |l, r| Ast::Bin(op, l, r));
        }
    }

    fn multiplicative(&mut self) -> Result<Node, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Star) => Op::Mul,
                Some(Tok::Slash) => Op::Div,
                Some(Tok::SlashSlash) => Op::FloorDiv,
                Some(Tok::Percent) => Op::Rem,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.unary()?;
            left = join(left, right, |l, r| Ast::Bin(op, l, r));
        }
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        let start = self.here().start;
        if self.eat(&Tok::Minus) {
            let operand = self.nested(Self::unary)?;
            return Ok(Node {
                range: start..operand.range.end,
                kind: Ast::Neg(Box::new(operand)),
            });
        }
        if self.eat(&Tok::Not) {
            let operand = self.nested(Self::unary)?;
            return Ok(Node {
                range: start..operand.range.end,
                kind: Ast::Not(Box::new(operand)),
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Node, ParseError> {
        let mut node = self.primary()?;
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.at += 1;
                    let range = self.here();
                    let Some(Tok::Ident(name)) = self.peek().cloned() else {
                        return Err(ParseError {
                            message: "expected a field name after `.`".into(),
                            range,
                        });
                    };
                    self.at += 1;
                    node = Node {
                        range: node.range.start..range.end,
                        kind: Ast::Field(Box::new(node), name),
                    };
                }
                Some(Tok::LBracket) => {
                    self.at += 1;
                    let index = self.nested(Self::or)?;
                    let close = self.expect(Tok::RBracket, "`]`")?;
                    node = Node {
                        range: node.range.start..close.end,
                        kind: Ast::Index(Box::new(node), Box::new(index)),
                    };
                }
                Some(Tok::LParen) => {
                    let Some(name) = dotted(&node) else {
                        return Err(ParseError {
                            message: "only functions and subworkflows can be called, by name"
                                .into(),
                            range: self.here(),
                        });
                    };
                    self.at += 1;
                    let args = self.items(Tok::RParen, Self::or)?;
                    let close = self.tokens[self.at - 1].1.clone();
                    node = Node {
                        range: node.range.start..close.end,
                        kind: Ast::Call(name, args),
                    };
                }
                _ => return Ok(node),
            }
        }
    }

    /// Items separated by commas up to `close` (a trailing comma allowed).
    fn items<T>(
        &mut self,
        close: Tok,
        mut item: impl FnMut(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut items = Vec::new();
        loop {
            if self.eat(&close) {
                return Ok(items);
            }
            items.push(self.nested(&mut item)?);
            if !self.eat(&Tok::Comma) {
                let what = format!("`,` or {}", close.describe());
                self.expect(close, &what)?;
                return Ok(items);
            }
        }
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        let range = self.here();
        let Some(tok) = self.peek().cloned() else {
            return Err(ParseError {
                message: "the expression ends where a value was expected".into(),
                range,
            });
        };
        self.at += 1;
        let lit = |v: Value| {
            Ok(Node {
                kind: Ast::Lit(v),
                range: range.clone(),
            })
        };
        match tok {
            Tok::Int(i) => lit(Value::from(i)),
            Tok::Double(d) => lit(crate::value::double(d).unwrap_or(Value::Null)),
            Tok::Str(s) => lit(Value::String(s)),
            Tok::True => lit(Value::Bool(true)),
            Tok::False => lit(Value::Bool(false)),
            Tok::Null => lit(Value::Null),
            Tok::Ident(name) => Ok(Node {
                kind: Ast::Var(name),
                range,
            }),
            Tok::LParen => {
                let inner = self.nested(Self::or)?;
                let close = self.expect(Tok::RParen, "`)`")?;
                Ok(Node {
                    kind: inner.kind,
                    range: range.start..close.end,
                })
            }
            Tok::LBracket => {
                let items = self.items(Tok::RBracket, Self::or)?;
                let end = self.tokens[self.at - 1].1.end;
                Ok(Node {
                    kind: Ast::List(items),
                    range: range.start..end,
                })
            }
            Tok::LBrace => {
                let entries = self.items(Tok::RBrace, |p| {
                    let key = p.or()?;
                    p.expect(Tok::Colon, "`:` after a map key")?;
                    let value = p.or()?;
                    Ok((key, value))
                })?;
                let end = self.tokens[self.at - 1].1.end;
                Ok(Node {
                    kind: Ast::Map(entries),
                    range: range.start..end,
                })
            }
            other => Err(ParseError {
                message: format!("expected a value, found {}", other.describe()),
                range,
            }),
        }
    }
}

fn join(left: Node, right: Node, make: impl FnOnce(Box<Node>, Box<Node>) -> Ast) -> Node {
    Node {
        range: left.range.start..right.range.end,
        kind: make(Box::new(left), Box::new(right)),
    }
}

/// `a.b.c` as the name `"a.b.c"`, when the node is only names and fields.
fn dotted(node: &Node) -> Option<String> {
    match &node.kind {
        Ast::Var(name) => Some(name.clone()),
        Ast::Field(base, field) => dotted(base).map(|b| format!("{b}.{field}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree as a Lisp-like string, for compact assertions.
    fn show(node: &Node) -> String {
        match &node.kind {
            Ast::Lit(v) => v.to_string(),
            Ast::Var(n) => n.clone(),
            Ast::Field(b, f) => format!("(. {} {f})", show(b)),
            Ast::Index(b, i) => format!("([] {} {})", show(b), show(i)),
            Ast::Call(n, args) | Ast::Sub(_, n, args) => format!(
                "({n}{})",
                args.iter()
                    .map(|a| format!(" {}", show(a)))
                    .collect::<String>()
            ),
            Ast::List(items) => {
                format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(" "))
            }
            Ast::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}:{}", show(k), show(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Ast::Not(n) => format!("(not {})", show(n)),
            Ast::Neg(n) => format!("(- {})", show(n)),
            Ast::Bin(op, l, r) => format!("({} {} {})", op.symbol(), show(l), show(r)),
            Ast::And(l, r) => format!("(and {} {})", show(l), show(r)),
            Ast::Or(l, r) => format!("(or {} {})", show(l), show(r)),
        }
    }

    fn p(text: &str) -> String {
        show(&parse(text).unwrap())
    }

    #[test]
    fn precedence_is_as_documented() {
        assert_eq!(p("1 + 2 * 3"), "(+ 1 (* 2 3))");
        assert_eq!(p("a or b and c == d"), "(or a (and b (== c d)))");
        assert_eq!(p("not a == b"), "(== (not a) b)");
        assert_eq!(p("-x.y[0]"), "(- ([] (. x y) 0))");
        assert_eq!(p("a - b - c"), "(- (- a b) c)");
        assert_eq!(p("7 // 2 % 3"), "(% (// 7 2) 3)");
        assert_eq!(p("\"k\" in m"), "(in \"k\" m)");
    }

    #[test]
    fn calls_take_dotted_names() {
        assert_eq!(p("text.split(s, \",\")"), "(text.split s \",\")");
        assert_eq!(p("len([1, 2,])"), "(len [1 2])");
        assert_eq!(p("{\"a\": 1, \"b\": [x]}"), "{\"a\":1 \"b\":[x]}");
        assert!(parse("[a](1)").is_err());
    }

    #[test]
    fn errors_point_inside_the_expression() {
        let e = parse("a + * b").unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.range),
            ("expected a value, found `*`", 4..5)
        );
        let e = parse("[1, 2").unwrap_err();
        assert_eq!(e.range, 5..5);
        let e = parse("a b").unwrap_err();
        assert!(
            e.message.contains("after a complete expression"),
            "{}",
            e.message
        );
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("nests deeper"));
    }
}
