//! The expression interface: what the engine needs of an expression, whatever its
//! language. jq ([`crate::jq`]) is the one implementation today; a front-end with a
//! language of its own (Cloud Workflows' expressions) adds another, and every
//! [`Template`](crate::Template), condition and computed duration of the program it
//! lowers to holds its expressions through the same [`Expr`] handle.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::{Budget, EvalError, is_truthy};

/// An expression compiled once, when its workflow is loaded, and evaluated many times.
/// Evaluation is pure: the same input and variables give the same value.
pub trait Expression: Send + Sync {
    /// The text as written (without any `${ }`), for messages.
    fn text(&self) -> &str;

    /// The JSON pointer of the field the expression was written in; empty if unknown.
    fn origin(&self) -> &str;

    /// The value of the expression for `input` (the task's input, `.` in jq) and the
    /// variables in scope, within the budget of `vars` ([`Budget::run`]); past it, an
    /// error that says which limit ([`EvalError::limit`]).
    fn eval(&self, input: &Value, vars: &Vars<'_>) -> Result<Value, EvalError>;

    /// The expression as a condition. By default with jq's notion of truth (`false`
    /// and `null` are false, everything else true); a language that admits only
    /// booleans refuses anything else here.
    fn eval_bool(&self, input: &Value, vars: &Vars<'_>) -> Result<bool, EvalError> {
        self.eval(input, vars).map(|v| is_truthy(&v))
    }
}

/// A compiled expression of any language. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Expr(Arc<dyn Expression>);

impl Expr {
    /// An expression of a language other than jq (whose constructor is
    /// [`Expr::compile_at`]).
    pub fn new(expression: Arc<dyn Expression>) -> Expr {
        Expr(expression)
    }

    /// The text as written (without any `${ }`).
    pub fn text(&self) -> &str {
        self.0.text()
    }

    /// The JSON pointer of the field the expression was written in, if known.
    pub fn origin(&self) -> &str {
        self.0.origin()
    }

    /// Runs the expression on `input`.
    pub fn eval(&self, input: &Value, vars: &Vars<'_>) -> Result<Value, EvalError> {
        self.0.eval(input, vars)
    }

    /// Runs the expression as a condition.
    pub fn eval_bool(&self, input: &Value, vars: &Vars<'_>) -> Result<bool, EvalError> {
        self.0.eval_bool(input, vars)
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.text()).finish()
    }
}

/// Values for the variables of an evaluation, by name without `$`, and the budget it
/// runs under ([`Budget::default`] unless given).
/// A later binding of a name shadows an earlier one, as inner scopes do.
#[derive(Clone, Debug, Default)]
pub struct Vars<'a> {
    entries: Vec<(&'a str, &'a Value)>,
    budget: Budget,
}

impl<'a> Vars<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `name` (without `$`) to `value`, shadowing any earlier binding.
    pub fn set(&mut self, name: &'a str, value: &'a Value) -> &mut Self {
        self.entries.push((name, value));
        self
    }

    /// Like [`Vars::set`], for building in one expression.
    pub fn with(mut self, name: &'a str, value: &'a Value) -> Self {
        self.set(name, value);
        self
    }

    /// Sets the budget every evaluation with these variables runs under.
    pub fn set_budget(&mut self, budget: Budget) -> &mut Self {
        self.budget = budget;
        self
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}
