//! Subworkflows run inside an expression: a call such as `${double_it(3)}`, and a
//! subworkflow named as a retry predicate. Expressions are evaluated in one go, so such
//! a subworkflow must be pure: it assigns, switches, loops (one iteration at a time),
//! returns, raises, calls other such subworkflows and logs (`sys.log`, which is not
//! recorded here). The front-end checks that when it lowers the document; this runs
//! the lowered tasks of those subworkflows directly, under the budget of the
//! expression that called them.

use std::sync::{OnceLock, Weak};

use expr::{Template, Vars};
use indexmap::IndexMap;
use program::{ErrorRef, FlowDirective, Task, TaskKind, TaskList};
use serde_json::{Map, Value};

use crate::compute::RETURN;
use crate::value::{Raised, type_error};

/// A subworkflow's parameters, in order, with their defaults.
pub(crate) type Params = Vec<(String, Option<Value>)>;

/// The subworkflows expressions may call, with their parameters.
#[derive(Debug, Default)]
pub(crate) struct Library {
    pub(crate) functions: IndexMap<String, (Params, TaskList)>,
}

/// How deep subworkflows called from expressions may nest.
const MAX_DEPTH: usize = 64;

/// A handle on the library of the program an expression belongs to; the program's
/// input step owns it, so the handle is weak and the two do not keep each other alive.
pub(crate) type LibraryRef = Weak<OnceLock<Library>>;

/// Calls the subworkflow `name` with positional `args`.
pub(crate) fn call(
    library: &LibraryRef,
    name: &str,
    args: Vec<Value>,
    vars: &Vars<'_>,
) -> Result<Value, Raised> {
    let library = library
        .upgrade()
        .ok_or_else(|| Raised::tagged("SystemError", "the workflow's subworkflows are gone"))?;
    let library = library.get().ok_or_else(|| {
        Raised::tagged("SystemError", "the workflow's subworkflows are not ready")
    })?;
    let depth = DEPTH.with(|d| d.get());
    if depth >= MAX_DEPTH {
        return Err(Raised::tagged(
            "RecursionError",
            format!("subworkflows called from expressions nest deeper than {MAX_DEPTH} levels"),
        ));
    }
    DEPTH.with(|d| d.set(depth + 1));
    let result = Runner { library, vars }.call(name, args);
    DEPTH.with(|d| d.set(depth));
    result
}

thread_local! {
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

struct Runner<'l> {
    library: &'l Library,
    /// The calling expression's variables: `$workflow` and the budget.
    vars: &'l Vars<'l>,
}

/// Where a list of tasks ended.
enum Flow {
    Done(Value),
    End(Value),
    Break(Value),
    Next(Value),
}

impl Runner<'_> {
    fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, Raised> {
        let Some((params, body)) = self.library.functions.get(name) else {
            return Err(Raised::tagged(
                "KeyError",
                format!("no subworkflow `{name}` can be called here"),
            ));
        };
        if args.len() > params.len() {
            return Err(type_error(format!(
                "{name} takes at most {} arguments, not {}",
                params.len(),
                args.len()
            )));
        }
        let mut variables = Map::new();
        let mut args = args.into_iter();
        for (param, default) in params {
            let value = match (args.next(), default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.clone(),
                (None, None) => {
                    return Err(type_error(format!(
                        "{name}: missing the argument `{param}`"
                    )));
                }
            };
            variables.insert(param.clone(), value);
        }
        let output = match self.list(body, Value::Object(variables), &[])? {
            Flow::Done(v) | Flow::End(v) | Flow::Break(v) | Flow::Next(v) => v,
        };
        Ok(match output {
            Value::Object(mut map) if map.len() == 1 && map.contains_key(RETURN) => {
                map.remove(RETURN).unwrap_or(Value::Null)
            }
            _ => Value::Null,
        })
    }

    fn vars<'a>(&'a self, input: &'a Value, locals: &'a [(String, Value)]) -> Vars<'a> {
        let mut vars = Vars::new();
        vars.set_budget(*self.vars.budget());
        vars.set("input", input);
        if let Some(workflow) = self.vars.get("workflow") {
            vars.set("workflow", workflow);
        }
        for (name, value) in locals {
            vars.set(name, value);
        }
        vars
    }

    fn eval(
        &self,
        template: &Template,
        input: &Value,
        locals: &[(String, Value)],
    ) -> Result<Value, Raised> {
        template
            .eval(input, &self.vars(input, locals))
            .map_err(raised)
    }

    fn list(
        &self,
        list: &TaskList,
        mut input: Value,
        locals: &[(String, Value)],
    ) -> Result<Flow, Raised> {
        let mut i = 0;
        while let Some(named) = list.tasks.get(i) {
            crate::eval::charge_steps(1)?;
            let (output, then) = self.task(&named.task, input, locals)?;
            input = output;
            match then {
                FlowDirective::Continue => i += 1,
                FlowDirective::Exit => break,
                FlowDirective::End => return Ok(Flow::End(input)),
                FlowDirective::Break => return Ok(Flow::Break(input)),
                FlowDirective::NextIteration => return Ok(Flow::Next(input)),
                FlowDirective::Goto(name) => {
                    i = list
                        .position(&name)
                        .expect("targets are checked when lowering");
                }
            }
        }
        Ok(Flow::Done(input))
    }

    fn task(
        &self,
        task: &Task,
        input: Value,
        locals: &[(String, Value)],
    ) -> Result<(Value, FlowDirective), Raised> {
        let flow = |flow: Flow, then: &FlowDirective| match flow {
            Flow::Done(v) => (v, then.clone()),
            Flow::End(v) => (v, FlowDirective::End),
            Flow::Break(v) => (v, FlowDirective::Break),
            Flow::Next(v) => (v, FlowDirective::NextIteration),
        };
        let (raw, then) = match &task.kind {
            TaskKind::Set(template) => (self.eval(template, &input, locals)?, task.then.clone()),
            TaskKind::Do(list) => flow(self.list(list, input.clone(), locals)?, &task.then),
            TaskKind::Switch(switch) => {
                let vars = self.vars(&input, locals);
                let mut then = task.then.clone();
                for case in &switch.cases {
                    let taken = match &case.when {
                        Some(when) => when.eval_bool(&input, &vars).map_err(raised)?,
                        None => true,
                    };
                    if taken {
                        then = case.then.clone();
                        break;
                    }
                }
                (input.clone(), then)
            }
            TaskKind::For(f) => {
                let items = match f
                    .in_
                    .eval(&input, &self.vars(&input, locals))
                    .map_err(raised)?
                {
                    Value::Array(items) => items,
                    other => {
                        return Err(type_error(format!(
                            "a loop walks a list, not {}",
                            crate::value::type_name(&other)
                        )));
                    }
                };
                let mut current = input.clone();
                for (i, item) in items.into_iter().enumerate() {
                    let mut inner = locals.to_vec();
                    inner.push((f.each.clone(), item));
                    inner.push((f.at.clone(), Value::from(i)));
                    match self.list(&f.do_, current, &inner)? {
                        Flow::Done(v) | Flow::Next(v) => current = v,
                        Flow::Break(v) => {
                            current = v;
                            break;
                        }
                        Flow::End(v) => return Ok((v, FlowDirective::End)),
                    }
                }
                (current, task.then.clone())
            }
            TaskKind::Raise(raise) => {
                let ErrorRef::Inline(def) = &raise.error else {
                    return Err(Raised::tagged("SystemError", "a raise of a named error"));
                };
                let value = match &def.data {
                    Some(data) => self.eval(data, &input, locals)?,
                    None => Value::Null,
                };
                return Err(Raised(value));
            }
            // `sys.log`: not recorded from inside an expression.
            TaskKind::Emit(_) => (input.clone(), task.then.clone()),
            TaskKind::Call(call) => match call.as_ref() {
                program::Call::Function(function) => {
                    let Some(with) = &function.with else {
                        return Err(Raised::tagged("SystemError", "a call without arguments"));
                    };
                    let variables = self.eval(with, &input, locals)?;
                    let Some((_, body)) = self.library.functions.get(&function.name) else {
                        return Err(Raised::tagged(
                            "KeyError",
                            format!("no subworkflow `{}` can be called here", function.name),
                        ));
                    };
                    let output = match self.list(body, variables, &[])? {
                        Flow::Done(v) | Flow::End(v) | Flow::Break(v) | Flow::Next(v) => v,
                    };
                    (output, task.then.clone())
                }
                _ => {
                    return Err(Raised::tagged(
                        "SystemError",
                        "a call that waits, inside an expression",
                    ));
                }
            },
            _ => {
                return Err(Raised::tagged(
                    "SystemError",
                    "a step that waits, inside an expression",
                ));
            }
        };
        let output = match task.output.as_ref().and_then(|o| o.as_.as_ref()) {
            Some(as_) => {
                let mut vars = self.vars(&raw, locals);
                vars.set("input", &input);
                as_.eval(&raw, &vars).map_err(raised)?
            }
            None => raw,
        };
        Ok((output, then))
    }
}

/// A nested evaluation's error, back as the Cloud Workflows error it carries.
fn raised(error: expr::EvalError) -> Raised {
    match error.data {
        Some(data) => Raised(*data),
        None => Raised::tagged("SystemError", error.message),
    }
}
