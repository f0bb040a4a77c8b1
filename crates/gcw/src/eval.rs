//! Evaluation of a Cloud Workflows expression's syntax tree, charging the budget every
//! expression language shares (`compute` runs it behind the engine's expression
//! interface).
//!
//! What an expression reads: the task's input is the map of the subworkflow's
//! variables; names bound by an enclosing `for` (its value and index) come from the
//! engine's scope, by the names the front-end found around the expression.

use expr::{Vars, budget};
use serde_json::{Map, Value};

use crate::parse::{Ast, Node};
use crate::stdlib;
use crate::value::{self, Raised, type_name};

/// Charges `n` evaluation steps to the running evaluation's budget.
pub(crate) fn charge_steps(n: usize) -> Result<(), Raised> {
    budget::charge_steps(n as u64).map_err(over)
}

/// Charges `n` bytes of values built to the running evaluation's budget.
pub(crate) fn charge_bytes(n: usize) -> Result<(), Raised> {
    budget::charge_bytes(n as u64).map_err(over)
}

fn over(limit: expr::Limit) -> Raised {
    Raised::tagged(
        "ResourceLimitError",
        format!("the expression went over its budget ({})", limit.setting()),
    )
}

/// What one evaluation reads.
pub(crate) struct Cx<'a> {
    /// The map of the subworkflow's variables.
    pub(crate) variables: &'a Value,
    pub(crate) vars: &'a Vars<'a>,
    pub(crate) locals: &'a [String],
}

impl Cx<'_> {
    pub(crate) fn eval(&self, node: &Node) -> Result<Value, Raised> {
        charge_steps(1)?;
        match &node.kind {
            Ast::Lit(v) => Ok(v.clone()),
            Ast::Var(name) => self.var(name),
            Ast::Field(base, name) => value::field(&self.eval(base)?, name),
            Ast::Index(base, index) => value::index(&self.eval(base)?, &self.eval(index)?),
            Ast::Call(name, args) => {
                let args = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                stdlib::call(name, args, self)
            }
            Ast::Sub(library, name, args) => {
                let args = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                crate::interp::call(library, name, args, self.vars)
            }
            Ast::List(items) => {
                charge_bytes(16 * items.len())?;
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<_, _>>()
                    .map(Value::Array)
            }
            Ast::Map(entries) => {
                charge_bytes(48 * entries.len())?;
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    let key = match self.eval(k)? {
                        Value::String(s) => s,
                        other => {
                            return Err(value::type_error(format!(
                                "map keys must be strings, not {}",
                                type_name(&other)
                            )));
                        }
                    };
                    map.insert(key, self.eval(v)?);
                }
                Ok(Value::Object(map))
            }
            Ast::Not(operand) => Ok(Value::Bool(!value::boolean(&self.eval(operand)?, "`not`")?)),
            Ast::Neg(operand) => {
                let v = self.eval(operand)?;
                match value::Num::of(&v) {
                    Some(value::Num::Int(i)) => i
                        .checked_neg()
                        .map(Value::from)
                        .ok_or_else(|| value::value_error("integer overflow in -")),
                    Some(value::Num::Double(d)) => value::double_or_error(-d, "the result"),
                    None => Err(value::type_error(format!(
                        "bad operand type for unary -: {}",
                        type_name(&v)
                    ))),
                }
            }
            Ast::Bin(op, l, r) => value::binary(*op, &self.eval(l)?, &self.eval(r)?),
            Ast::And(l, r) => Ok(Value::Bool(
                value::boolean(&self.eval(l)?, "`and`")?
                    && value::boolean(&self.eval(r)?, "`and`")?,
            )),
            Ast::Or(l, r) => Ok(Value::Bool(
                value::boolean(&self.eval(l)?, "`or`")? || value::boolean(&self.eval(r)?, "`or`")?,
            )),
        }
    }

    fn var(&self, name: &str) -> Result<Value, Raised> {
        let found = if self.locals.iter().any(|l| l == name) {
            self.vars.get(name)
        } else {
            self.variables.get(name)
        };
        found
            .cloned()
            .ok_or_else(|| Raised::tagged("KeyError", format!("variable `{name}` is not defined")))
    }

    /// The engine's `$workflow` (id, input, start).
    pub(crate) fn workflow(&self) -> Option<&Value> {
        self.vars.get("workflow")
    }

    /// `key` of the engine's `$runtime.metadata` (project, workflow, labels, `env`,
    /// `server`).
    pub(crate) fn runtime_metadata(&self, key: &str) -> Option<&Value> {
        self.vars.get("runtime")?.get("metadata")?.get(key)
    }
}
