//! Values with expressions inside them.
//!
//! Many DSL fields hold data in which any string of the form `${ … }` is a
//! runtime expression: `set`, `with`, an HTTP `body`, event attributes. A
//! [`Template`] is such a value with its expressions compiled; evaluating it
//! builds the final JSON value.

use serde_json::Value;

use crate::{EvalError, Expr, Vars};

/// How strings are read as expressions, from the workflow's `evaluate.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Only `${ … }` strings are expressions (the DSL's default).
    #[default]
    Strict,
    /// Every string is tried as an expression; one that fails to compile or to
    /// evaluate stays the literal string.
    Loose,
}

/// A JSON value whose strings may be compiled expressions.
#[derive(Clone, Debug)]
pub enum Template {
    /// A part without expressions, returned as is.
    Const(Value),
    /// A `${ … }` expression.
    Expr(Expr),
    /// A string tried as an expression in loose mode; falls back to its text.
    Loose(Expr, String),
    Array(Vec<Template>),
    Object(Vec<(String, Template)>),
}

impl Template {
    /// An array template, folded to a constant when no element has an expression.
    pub fn array(items: Vec<Template>) -> Template {
        if items.iter().all(|t| matches!(t, Template::Const(_))) {
            Template::Const(Value::Array(
                items.into_iter().map(Template::into_const).collect(),
            ))
        } else {
            Template::Array(items)
        }
    }

    /// An object template, folded to a constant when no member has an expression.
    pub fn object(members: Vec<(String, Template)>) -> Template {
        if members.iter().all(|(_, t)| matches!(t, Template::Const(_))) {
            Template::Const(Value::Object(
                members
                    .into_iter()
                    .map(|(k, t)| (k, t.into_const()))
                    .collect(),
            ))
        } else {
            Template::Object(members)
        }
    }

    fn into_const(self) -> Value {
        match self {
            Template::Const(v) => v,
            _ => unreachable!("only called on constants"),
        }
    }

    /// The value, when the template holds no expression.
    pub fn as_const(&self) -> Option<&Value> {
        match self {
            Template::Const(v) => Some(v),
            _ => None,
        }
    }

    pub fn eval(&self, input: &Value, vars: &Vars<'_>) -> Result<Value, EvalError> {
        Ok(match self {
            Template::Const(v) => v.clone(),
            Template::Expr(e) => e.eval(input, vars)?,
            Template::Loose(e, text) => e
                .eval(input, vars)
                .unwrap_or_else(|_| Value::String(text.clone())),
            Template::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.eval(input, vars))
                    .collect::<Result<_, _>>()?,
            ),
            Template::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), t.eval(input, vars)?)))
                    .collect::<Result<_, EvalError>>()?,
            ),
        })
    }
}

/// If `s` is a strict runtime expression, `${ … }` with optional blanks around it,
/// returns the jq text inside the braces and its byte offset in `s`.
pub fn strict_expression(s: &str) -> Option<(usize, &str)> {
    let lead = s.len() - s.trim_start().len();
    let t = s.trim();
    let inner = t.strip_prefix("${")?.strip_suffix('}')?;
    (!inner.is_empty()).then_some((lead + 2, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_expression_finds_the_inner_text() {
        assert_eq!(strict_expression("${ .a }"), Some((2, " .a ")));
        assert_eq!(strict_expression("  ${.a}\n"), Some((4, ".a")));
        assert_eq!(strict_expression(".a"), None);
        assert_eq!(strict_expression("${}"), None);
        assert_eq!(strict_expression("x ${ .a }"), None);
    }
}
