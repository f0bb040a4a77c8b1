//! Runtime expressions: the [`Expression`] interface the engine evaluates through, and
//! jq (the Serverless Workflow DSL's language, through the jaq crates) behind it.
//!
//! An [`Expr`] is compiled once, when a workflow is loaded, and evaluated many
//! times against JSON values with the DSL's arguments (`$input`, `$context`,
//! `$secrets`, …) and the loop and catch variables in scope. A [`Template`] is
//! a value with expressions inside it; a [`UriTemplate`] is an endpoint with
//! `{property}` placeholders.
//!
//! **API boundary:** this crate knows jq and JSON, nothing about workflows,
//! files or IO. Evaluation is pure apart from jq's `now`.

pub mod budget;
mod expression;
mod guard;
mod interpolation;
mod jq;
mod metered;
mod problem;
mod template;
mod uri;
mod value;

use std::ops::Range;

pub use budget::{Budget, Exceeded, Limit};
pub use expression::{Expr, Expression, Vars};
pub use guard::{MAX_NESTING, MAX_TOKENS};
pub use jq::STANDARD_VARS;
pub use problem::{Problem, types};
pub use template::{Mode, Template, strict_expression};
pub use uri::{UriTemplate, UriTemplateError};
pub use value::{MAX_DEPTH, is_truthy};

/// An expression that does not compile: what is wrong, and where in its text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub message: String,
    /// Byte range in the expression text.
    pub range: Range<usize>,
    /// A suggestion, such as the variable the author probably meant.
    pub help: Option<String>,
}

/// An expression that failed while running.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (in `{expression}`{})", origin_suffix(origin))]
pub struct EvalError {
    pub message: String,
    /// The jq text that failed.
    pub expression: String,
    /// The JSON pointer of the field the expression was written in; empty if unknown.
    pub origin: String,
    /// Set when the evaluation went over its budget.
    pub limit: Option<Exceeded>,
    /// What the language's own error was, when it has one (a Cloud Workflows error
    /// map); it becomes the problem's `data`.
    pub data: Option<Box<serde_json::Value>>,
}

fn origin_suffix(origin: &str) -> String {
    if origin.is_empty() {
        String::new()
    } else {
        format!(" at {origin}")
    }
}

impl EvalError {
    /// This error, as the evaluation going over `exceeded`.
    pub fn over(self, exceeded: Exceeded) -> EvalError {
        EvalError {
            limit: Some(exceeded),
            ..self
        }
    }

    /// The DSL error this becomes: type `expression`, status 400, raised at `instance`
    /// (the JSON pointer of the task whose expression failed). An evaluation over its
    /// budget is a `runtime` error instead, with 413 for what grew too big.
    pub fn into_problem(self, instance: impl Into<String>) -> Problem {
        if let Some(exceeded) = self.limit {
            return Problem {
                type_: types::RUNTIME.into(),
                status: exceeded.limit.status(),
                title: Some("Expression over its budget".into()),
                detail: Some(self.to_string()),
                instance: Some(instance.into()),
                data: self.data,
            };
        }
        Problem {
            type_: types::EXPRESSION.into(),
            status: 400,
            title: Some("Expression evaluation failed".into()),
            detail: Some(self.to_string()),
            instance: Some(instance.into()),
            data: self.data,
        }
    }
}

/// Suggests the candidate closest to `name`, for "did you mean" hints.
pub fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    jq::closest(name, candidates.into_iter())
}
