//! What the lowered program computes at each Cloud Workflows step, behind the
//! engine's expression interface: the values written in the document (with
//! `${ }` expressions anywhere inside them), and the data flow of variables.
//!
//! The variables of a subworkflow travel as the tasks' data: a step's input is the
//! map of variables before it, its output the map after it. So `assign` is a `set`
//! whose value is the new map; a call binds its `result` in the task's `output.as`
//! (which sees the call's raw output and the variables in `$input`); a `for` loop
//! keeps, in its `output.as`, only the variables that existed before it. `return`
//! outputs `{"__return": value}` and ends its list: the caller (or the workflow's
//! `output.as`) unwraps it, and a subworkflow that ends without `return` gives null.

use std::sync::{Arc, OnceLock};

use expr::{EvalError, Expr, Expression, Vars};
use serde_json::{Map, Value, json};

use crate::connectors::{Base, Body, Poll};
use crate::errors::Predicate;
use crate::eval::{Cx, charge_bytes};
use crate::interp::{Library, LibraryRef};
use crate::parse::{Ast, Node};
use crate::value::{self, Raised, type_name};

/// The key of the value a `return` gives.
pub(crate) const RETURN: &str = "__return";

/// The name the engine binds the index of a parallel step's branch to.
pub(crate) const BRANCH: &str = "\0branch";

/// The name the engine binds a caught error to (as a problem), for the `except` to
/// turn into its variable.
pub(crate) const ERROR: &str = "__error";

/// A value as written in the document: constant parts, and `${ }` expressions.
#[derive(Clone, Debug)]
pub(crate) enum Tmpl {
    Const(Value),
    Expr(Node),
    List(Vec<Tmpl>),
    Map(Vec<(String, Tmpl)>),
}

impl Tmpl {
    pub(crate) fn eval(&self, cx: &Cx<'_>) -> Result<Value, Raised> {
        match self {
            Tmpl::Const(v) => Ok(v.clone()),
            Tmpl::Expr(node) => cx.eval(node),
            Tmpl::List(items) => items
                .iter()
                .map(|i| i.eval(cx))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Tmpl::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    map.insert(k.clone(), v.eval(cx)?);
                }
                Ok(Value::Object(map))
            }
        }
    }
}

/// Where an assignment writes: a variable, then fields and indexes into it.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) variable: String,
    pub(crate) path: Vec<Access>,
}

#[derive(Clone, Debug)]
pub(crate) enum Access {
    Field(String),
    Index(Node),
}

impl Target {
    /// The target written as an expression (`a.b[0]`), if it is one.
    pub(crate) fn of(node: &Node) -> Option<Target> {
        match &node.kind {
            Ast::Var(name) => Some(Target {
                variable: name.clone(),
                path: Vec::new(),
            }),
            Ast::Field(base, name) => {
                let mut t = Target::of(base)?;
                t.path.push(Access::Field(name.clone()));
                Some(t)
            }
            Ast::Index(base, index) => {
                let mut t = Target::of(base)?;
                t.path.push(Access::Index((**index).clone()));
                Some(t)
            }
            _ => None,
        }
    }

    /// The keys along the path, evaluated (an index may be an expression).
    fn keys(&self, cx: &Cx<'_>) -> Result<Vec<Value>, Raised> {
        self.path
            .iter()
            .map(|access| match access {
                Access::Field(name) => Ok(Value::String(name.clone())),
                Access::Index(node) => cx.eval(node),
            })
            .collect()
    }
}

/// Writes `value` at `keys` under `slot`. Maps along the path are made when missing; a
/// list index must exist.
fn write_at(slot: &mut Value, keys: &[Value], value: Value) -> Result<(), Raised> {
    let Some((key, rest)) = keys.split_first() else {
        *slot = value;
        return Ok(());
    };
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    let next = match (slot, key) {
        (Value::Object(map), Value::String(k)) => map.entry(k.clone()).or_insert(Value::Null),
        (Value::Array(items), Value::Number(n)) if !n.is_f64() => {
            let len = items.len();
            let i = n.as_i64().unwrap_or(-1);
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| {
                    Raised::tagged(
                        "IndexError",
                        format!("list index {i} out of range (the list has {len} elements)"),
                    )
                })?
        }
        (slot, key) => {
            return Err(value::type_error(format!(
                "cannot assign into {} with a {} key",
                type_name(slot),
                type_name(key)
            )));
        }
    };
    write_at(next, rest, value)
}

/// One computation of the lowered program.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// A value as written: a URL, a body, the list a loop walks.
    Value(Tmpl),
    /// The integers from one to the other, both included (`for.range`).
    Range(Tmpl, Tmpl),
    /// Seconds as an ISO 8601 duration, for a durable timer (`sys.sleep`).
    Seconds(Tmpl),
    /// The time until an RFC 3339 instant, as an ISO 8601 duration (`sys.sleep_until`;
    /// none if it has passed). The engine journals the deadline, so a resumed wait
    /// keeps it.
    Until(Tmpl),
    /// A condition, which must be a boolean.
    Condition(Node),
    /// `assign`: the variables with each assignment made, in order.
    Assign(Vec<(Target, Tmpl)>),
    /// `return`: the value, wrapped for the caller to unwrap.
    Return(Tmpl),
    /// The variables a subworkflow starts with: its arguments and the defaults of its
    /// parameters.
    Arguments {
        given: Vec<(String, Tmpl)>,
        defaults: Vec<(String, Value)>,
    },
    /// After a call (`output.as`): the variables (`$input`) with `result` bound to
    /// what the call gave.
    Bind {
        result: Option<String>,
        from: Outcome,
    },
    /// After a loop (`output.as`): the variables after its last iteration, only
    /// those that existed before it.
    Restrict,
    /// The workflow's input (`input.from`): `main`'s parameter bound to the runtime
    /// arguments. It also owns the program's library of subworkflows that expressions
    /// call (which hold it weakly), so that the library lives as long as the program.
    Main {
        param: Option<String>,
        _library: Arc<OnceLock<Library>>,
    },
    /// The message of what a `raise` raises, for the error's detail.
    RaisedMessage(Tmpl),
    /// A retry predicate of the standard library, on the caught error (the input, as
    /// a problem).
    Predicate(Predicate),
    /// A subworkflow as a retry predicate, called with the caught error (the input,
    /// as a problem); it must return a boolean.
    SubPredicate(LibraryRef, String),
    /// The first thing an `except` does: the variables with `as` bound to the caught
    /// error, as a Cloud Workflows error.
    BindError(String),
    /// A connector's URL: its base, its path with the arguments that fill it, and the
    /// other arguments (but the body) as query parameters.
    ConnectorUrl {
        connector: &'static crate::connectors::Connector,
        base: Base,
        args: Vec<(String, Tmpl)>,
    },
    /// `executions.run`'s body: `{"argument": …}`, its argument as JSON text.
    ExecutionArgument(Option<Tmpl>),
    /// A step of waiting for the long-running work a connector started.
    Operation(OpStep),
    /// A `call` of a function of the standard library: the variables with `result`
    /// bound to what it returned, from its arguments in order.
    Library {
        function: &'static str,
        args: Vec<Tmpl>,
        result: Option<String>,
    },
    /// `events.create_callback_endpoint`: the variables with `result` bound to
    /// `{url}`, a new callback endpoint of this execution on the server's API.
    CallbackEndpoint { result: Option<String> },
    /// Whether an event's subject (the input) is the id of the callback (evaluated
    /// on the variables) that `events.await_callback` waits for.
    IsCallback(Tmpl),
    /// Whether this iteration of a parallel step's loop runs the branch of this index.
    Branch(usize),
    /// After a parallel step (`output.as`): the variables before it (`$input`), with
    /// the shared ones joined from every branch's (the input, a list).
    Join(Vec<String>),
    /// The input, unchanged (a step that only jumps).
    Same,
    /// The workflow's output: what `return` gave, or null.
    Unwrap,
}

/// What a call's raw output is, for [`Kind::Bind`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    /// A subworkflow's: `{"__return": v}` or its variables (no `return`: null).
    Subworkflow,
    /// An HTTP call's full response: `{body, code, headers}`.
    Http,
    /// A connector's: the response body, or what the connector makes of it.
    Connector(crate::connectors::Reply),
    /// `events.await_callback`'s: the one callback request received.
    Callback,
    /// Nothing to bind.
    Nothing,
}

/// The variable a connector keeps the work it waits for in while it polls, and how
/// many times it has polled; both are gone when the step ends.
const OPERATION: &str = "__operation";
const POLLS: &str = "__polls";

/// The steps of a connector's wait for long-running work: start, then check, wait and
/// poll until it has ended, then finish.
#[derive(Clone, Debug)]
pub(crate) enum OpStep {
    /// After the call that starts it (`output.as`): the variables with the response's
    /// body kept as the operation.
    Started,
    /// Whether the operation has ended (a switch's condition).
    Ended(Poll),
    /// How long to wait before the next poll, in ISO 8601: `initial` seconds, times
    /// `multiplier` for each poll so far, at most `max`.
    Delay {
        initial: f64,
        multiplier: f64,
        max: f64,
    },
    /// Where to poll.
    PollUrl(Poll, Base),
    /// After a poll (`output.as`): the operation as it is now, one poll more.
    Polled,
    /// The variables with `result` bound to what the work gave, or its failure raised
    /// as `OperationError`.
    Finish { poll: Poll, result: Option<String> },
}

pub(crate) struct Compute {
    kind: Kind,
    text: String,
    origin: String,
    locals: Vec<String>,
    /// For a computation that makes a subworkflow's variables: the most bytes (as JSON)
    /// they may take (Google's 512 KiB by default), past which `ResourceLimitError`.
    variables_bytes: Option<usize>,
}

impl Compute {
    pub(crate) fn expr(
        kind: Kind,
        text: impl Into<String>,
        origin: &str,
        locals: &[String],
    ) -> Expr {
        Expr::new(Arc::new(Compute {
            kind,
            text: text.into(),
            origin: origin.to_string(),
            locals: locals.to_vec(),
            variables_bytes: None,
        }))
    }

    /// A computation that makes a subworkflow's variables, held to `limit` bytes.
    pub(crate) fn variables(
        kind: Kind,
        text: impl Into<String>,
        origin: &str,
        locals: &[String],
        limit: usize,
    ) -> Expr {
        Expr::new(Arc::new(Compute {
            kind,
            text: text.into(),
            origin: origin.to_string(),
            locals: locals.to_vec(),
            variables_bytes: Some(limit),
        }))
    }

    /// Refuses variables larger than the limit.
    fn check_size(&self, variables: &Value) -> Result<(), Raised> {
        let Some(limit) = self.variables_bytes else {
            return Ok(());
        };
        let size = serde_json::to_vec(variables).map_or(0, |v| v.len());
        if size <= limit {
            return Ok(());
        }
        Err(Raised::tagged(
            "ResourceLimitError",
            format!(
                "the variables take {size} bytes, more than the limit of {limit} \
                 (setting `cloud-workflows-variables-bytes`)"
            ),
        ))
    }

    /// The evaluation error a Cloud Workflows error becomes: `Tag: message`.
    fn error(&self, raised: &Raised) -> EvalError {
        EvalError {
            message: match raised.tag() {
                Some(tag) => format!("{tag}: {}", raised.message()),
                None => raised.message(),
            },
            expression: self.text.clone(),
            origin: self.origin.clone(),
            limit: None,
            data: Some(Box::new(raised.0.clone())),
        }
    }

    fn run(&self, input: &Value, vars: &Vars<'_>) -> Result<Value, Raised> {
        let cx = |variables| Cx {
            variables,
            vars,
            locals: &self.locals,
        };
        let variables_before = || vars.get("input").unwrap_or(&Value::Null);
        match &self.kind {
            Kind::Value(t) => t.eval(&cx(input)),
            Kind::Range(from, to) => {
                let cx = cx(input);
                let (from, to) = (from.eval(&cx)?, to.eval(&cx)?);
                let (Some(value::Num::Int(a)), Some(value::Num::Int(b))) =
                    (value::Num::of(&from), value::Num::of(&to))
                else {
                    return Err(value::type_error(format!(
                        "a range is two integers, not {} and {}",
                        type_name(&from),
                        type_name(&to)
                    )));
                };
                let count = usize::try_from(b.saturating_sub(a).saturating_add(1)).unwrap_or(0);
                charge_bytes(16usize.saturating_mul(count))?;
                Ok(Value::Array((a..=b).map(Value::from).collect()))
            }
            Kind::Seconds(t) => {
                let seconds = t.eval(&cx(input))?;
                match value::Num::of(&seconds) {
                    Some(n) if n.as_f64() >= 0.0 => {
                        Ok(json!(format!("PT{}S", format_seconds(n.as_f64()))))
                    }
                    _ => Err(value::value_error(format!(
                        "sys.sleep: seconds must be a number of zero or more, not {seconds}"
                    ))),
                }
            }
            Kind::Until(t) => {
                let time = t.eval(&cx(input))?;
                let Some(text) = time.as_str() else {
                    return Err(value::type_error(format!(
                        "sys.sleep_until: the time is an RFC 3339 string, not {}",
                        type_name(&time)
                    )));
                };
                let until: jiff::Timestamp = text.parse().map_err(|e| {
                    value::value_error(format!(
                        "sys.sleep_until: {text:?} is not an RFC 3339 time: {e}"
                    ))
                })?;
                let left = until
                    .duration_since(jiff::Timestamp::now())
                    .as_secs_f64()
                    .max(0.0);
                Ok(json!(format!("PT{}S", format_seconds(left))))
            }
            Kind::Condition(node) => cx(input).eval(node),
            Kind::Assign(assignments) => {
                let mut variables = match input {
                    Value::Object(_) => input.clone(),
                    _ => Value::Object(Map::new()),
                };
                for (target, value) in assignments {
                    // Each assignment sees the ones before it.
                    let (v, keys) = {
                        let cx = Cx {
                            variables: &variables,
                            vars,
                            locals: &self.locals,
                        };
                        (value.eval(&cx)?, target.keys(&cx)?)
                    };
                    let Value::Object(map) = &mut variables else {
                        unreachable!("the variables are a map")
                    };
                    let slot = map.entry(target.variable.clone()).or_insert(Value::Null);
                    write_at(slot, &keys, v)?;
                }
                Ok(variables)
            }
            Kind::Return(t) => Ok(json!({ RETURN: t.eval(&cx(input))? })),
            Kind::Arguments { given, defaults } => {
                let cx = cx(input);
                let mut variables = Map::new();
                for (name, value) in given {
                    variables.insert(name.clone(), value.eval(&cx)?);
                }
                for (name, value) in defaults {
                    variables
                        .entry(name.clone())
                        .or_insert_with(|| value.clone());
                }
                Ok(Value::Object(variables))
            }
            Kind::Bind { result, from } => {
                let mut variables = match variables_before() {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                };
                if let Some(result) = result {
                    let value = match from {
                        Outcome::Subworkflow => returned(input),
                        Outcome::Http => json!({
                            "body": input.get("content").cloned().unwrap_or(Value::Null),
                            "code": input.get("statusCode").cloned().unwrap_or(Value::Null),
                            "headers": input.get("headers").cloned().unwrap_or(json!({})),
                        }),
                        Outcome::Connector(made) => connector_result(made, input)?,
                        Outcome::Callback => input.get(0).cloned().unwrap_or(Value::Null),
                        Outcome::Nothing => Value::Null,
                    };
                    variables.insert(result.clone(), value);
                }
                Ok(Value::Object(variables))
            }
            Kind::Restrict => {
                let before = variables_before();
                let (Value::Object(before), Value::Object(after)) = (before, input) else {
                    return Ok(before.clone());
                };
                Ok(Value::Object(
                    before
                        .iter()
                        .map(|(k, v)| (k.clone(), after.get(k).unwrap_or(v).clone()))
                        .collect(),
                ))
            }
            Kind::Main { param, .. } => Ok(match param {
                Some(name) => json!({ name.clone(): input }),
                None => json!({}),
            }),
            Kind::RaisedMessage(t) => Ok(Value::String(Raised(t.eval(&cx(input))?).message())),
            Kind::Predicate(predicate) => Ok(Value::Bool(
                predicate.holds(&crate::errors::from_problem(input)),
            )),
            Kind::SubPredicate(library, name) => {
                let error = crate::errors::from_problem(input);
                match crate::interp::call(library, name, vec![error], vars)? {
                    Value::Bool(b) => Ok(Value::Bool(b)),
                    other => Err(value::type_error(format!(
                        "the retry predicate `{name}` returned {}, not a boolean",
                        type_name(&other)
                    ))),
                }
            }
            Kind::BindError(name) => {
                let mut variables = match input {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                };
                let problem = vars.get(ERROR).unwrap_or(&Value::Null);
                variables.insert(name.clone(), crate::errors::from_problem(problem));
                Ok(Value::Object(variables))
            }
            Kind::ConnectorUrl {
                connector,
                base,
                args,
            } => {
                let cx = cx(input);
                let mut values = Vec::with_capacity(args.len());
                for (name, t) in args {
                    values.push((name.as_str(), t.eval(&cx)?));
                }
                let base = base_url(base, &cx, connector.name)?;
                connector_url(connector, &base, &values, &cx).map(Value::String)
            }
            Kind::ExecutionArgument(argument) => Ok(match argument {
                Some(t) => json!({ "argument": t.eval(&cx(input))?.to_string() }),
                None => json!({}),
            }),
            Kind::Operation(step) => operation(step, input, variables_before(), &cx(input)),
            Kind::Library {
                function,
                args,
                result,
            } => {
                let cx = cx(input);
                let values = args
                    .iter()
                    .map(|t| t.eval(&cx))
                    .collect::<Result<Vec<_>, _>>()?;
                let returned = crate::stdlib::call(function, values, &cx)?;
                Ok(with_result(input, result, returned))
            }
            Kind::CallbackEndpoint { result } => {
                let url = callback_url(&cx(input))?;
                Ok(with_result(input, result, json!({ "url": url })))
            }
            Kind::IsCallback(callback) => {
                let callback = callback.eval(&cx(variables_before()))?;
                let Some(url) = callback.get("url").and_then(Value::as_str) else {
                    return Err(value::type_error(format!(
                        "events.await_callback: `callback` is what \
                         events.create_callback_endpoint returned, a map with `url`, not {}",
                        type_name(&callback)
                    )));
                };
                let id = url.rsplit('/').next().unwrap_or_default();
                Ok(Value::Bool(input.as_str() == Some(id)))
            }
            Kind::Branch(i) => Ok(Value::Bool(
                vars.get(BRANCH).and_then(Value::as_u64) == Some(*i as u64),
            )),
            Kind::Join(shared) => {
                let before = variables_before();
                let mut variables = match before {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                };
                let branches = input.as_array().map(Vec::as_slice).unwrap_or_default();
                for name in shared {
                    let original = before.get(name).unwrap_or(&Value::Null);
                    let mut joined = original.clone();
                    for branch in branches {
                        if let Some(value) = branch.get(name) {
                            join(&mut joined, original, value)?;
                        }
                    }
                    variables.insert(name.clone(), joined);
                }
                Ok(Value::Object(variables))
            }
            Kind::Same => Ok(input.clone()),
            Kind::Unwrap => Ok(returned(input)),
        }
    }
}

/// Joins into `joined` what one branch made of a shared variable that was `original`
/// before the parallel step. Branches run on copies, so their changes are joined when
/// all have ended: keys of a map one by one, items appended to a list in branch order,
/// a number by the sum of the branches' changes (a counter), anything else by the last
/// branch (in order) that changed it.
fn join(joined: &mut Value, original: &Value, branch: &Value) -> Result<(), Raised> {
    charge_bytes(16)?;
    if value::equal(original, branch) {
        return Ok(());
    }
    match (joined, original, branch) {
        (Value::Object(j), Value::Object(o), Value::Object(b)) => {
            for (k, v) in b {
                match (j.get_mut(k), o.get(k)) {
                    (Some(jv), Some(ov)) => join(jv, ov, v)?,
                    _ => {
                        j.insert(k.clone(), v.clone());
                    }
                }
            }
            // Keys the branch removed.
            for k in o.keys() {
                if !b.contains_key(k) {
                    j.shift_remove(k);
                }
            }
        }
        (Value::Array(j), Value::Array(o), Value::Array(b))
            if b.len() >= o.len() && o.iter().zip(b).all(|(x, y)| value::equal(x, y)) =>
        {
            j.extend(b[o.len()..].iter().cloned());
        }
        (j @ Value::Number(_), Value::Number(_), Value::Number(_)) => {
            let change = value::binary(crate::parse::Op::Sub, branch, original)?;
            *j = value::binary(crate::parse::Op::Add, j, &change)?;
        }
        (j, _, _) => *j = branch.clone(),
    }
    Ok(())
}

/// The variables (`variables`, a map) with `result`, if the step names one, bound to
/// `value`.
fn with_result(variables: &Value, result: &Option<String>, value: Value) -> Value {
    let mut variables = match variables {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    if let Some(result) = result {
        variables.insert(result.clone(), value);
    }
    Value::Object(variables)
}

/// The URL of a service's base.
fn base_url(base: &Base, cx: &Cx<'_>, connector: &str) -> Result<String, Raised> {
    match base {
        Base::Url(url) => Ok(url.clone()),
        Base::Server => cx
            .runtime_metadata("server")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                Raised::tagged(
                    "SystemError",
                    format!(
                        "{connector}: Workflow Executions are this skein server's, and this \
                         execution runs without one (`skein run`); \
                         SKEIN_GOOGLEAPIS_WORKFLOWEXECUTIONS_ENDPOINT names another"
                    ),
                )
            }),
    }
}

/// One step of waiting for a connector's long-running work; `input` is the step's
/// input (the variables, or a call's response), `variables` the variables before it.
fn operation(
    step: &OpStep,
    input: &Value,
    variables: &Value,
    cx: &Cx<'_>,
) -> Result<Value, Raised> {
    let mut vars = match variables {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let op = |vars: &Map<String, Value>| vars.get(OPERATION).cloned().unwrap_or(Value::Null);
    let polls = vars.get(POLLS).and_then(Value::as_u64).unwrap_or(0);
    match step {
        OpStep::Started | OpStep::Polled => {
            let body = input.get("content").cloned().unwrap_or(Value::Null);
            vars.insert(OPERATION.into(), body);
            let polls = if matches!(step, OpStep::Started) {
                0
            } else {
                polls + 1
            };
            vars.insert(POLLS.into(), json!(polls));
            Ok(Value::Object(vars))
        }
        OpStep::Ended(poll) => {
            // The switch's condition reads the step's input, the variables.
            let Value::Object(now) = input else {
                return Ok(Value::Bool(true));
            };
            let op = op(now);
            Ok(Value::Bool(match poll {
                Poll::Operation { .. } => op["done"] == Value::Bool(true),
                Poll::Execution => matches!(
                    op["state"].as_str(),
                    Some("SUCCEEDED" | "FAILED" | "CANCELLED")
                ),
                Poll::BigQueryJob => op["status"]["state"] == "DONE",
            }))
        }
        OpStep::Delay {
            initial,
            multiplier,
            max,
        } => {
            let polls = match input {
                Value::Object(now) => now.get(POLLS).and_then(Value::as_u64).unwrap_or(0),
                _ => 0,
            };
            let delay = (initial * multiplier.powi(polls.min(1000) as i32)).min(*max);
            Ok(json!(format!("PT{}S", format_seconds(delay))))
        }
        OpStep::PollUrl(poll, base) => {
            let Value::Object(now) = input else {
                return Err(value::value_error(
                    "a connector lost the operation it polls",
                ));
            };
            let op = op(now);
            let base = base_url(base, cx, "a connector")?;
            let name = op["name"].as_str().unwrap_or_default();
            match poll {
                Poll::Operation { version } => Ok(json!(format!("{base}/{version}/{name}"))),
                Poll::Execution => Ok(json!(format!("{base}/v1/{name}"))),
                Poll::BigQueryJob => {
                    let job = &op["jobReference"];
                    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                    let mut url = format!(
                        "{base}/bigquery/v2/projects/{}/jobs/{}",
                        text(&job["projectId"]),
                        text(&job["jobId"])
                    );
                    if let Some(location) = job["location"].as_str() {
                        url = format!("{url}?location={location}");
                    }
                    Ok(json!(url))
                }
            }
        }
        OpStep::Finish { poll, result } => {
            let mut now = match input {
                Value::Object(map) => map.clone(),
                _ => vars,
            };
            let op = now.remove(OPERATION).unwrap_or(Value::Null);
            now.remove(POLLS);
            let failed = |message: String| {
                Raised(json!({
                    "message": message,
                    "tags": ["OperationError"],
                    "operation": op,
                }))
            };
            let value = match poll {
                Poll::Operation { .. } => {
                    if let Some(error) = op.get("error") {
                        let message = error["message"].as_str().unwrap_or("the operation failed");
                        return Err(failed(format!("operation {}: {message}", op["name"])));
                    }
                    op.get("response").cloned().unwrap_or_else(|| op.clone())
                }
                Poll::Execution => match op["state"].as_str() {
                    Some("SUCCEEDED") => match op["result"].as_str() {
                        Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                        None => Value::Null,
                    },
                    state => {
                        let payload = op["error"]["payload"].as_str().unwrap_or_default();
                        return Err(failed(format!(
                            "the execution {} ended {}: {payload}",
                            op["name"],
                            state.unwrap_or("without a state")
                        )));
                    }
                },
                Poll::BigQueryJob => {
                    if let Some(error) = op["status"].get("errorResult") {
                        let message = error["message"].as_str().unwrap_or("the job failed");
                        return Err(failed(format!("BigQuery job: {message}")));
                    }
                    op.clone()
                }
            };
            if let Some(result) = result {
                now.insert(result.clone(), value);
            }
            Ok(Value::Object(now))
        }
    }
}

/// The URL a connector's call goes to. A path argument left out takes its default:
/// `version` the latest, `project_id` and `location` those of the execution.
fn connector_url(
    connector: &crate::connectors::Connector,
    base: &str,
    args: &[(&str, Value)],
    cx: &Cx<'_>,
) -> Result<String, Raised> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let arg = |name: &str| args.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
    let mut path = connector.path.to_string();
    for name in connector.path_args() {
        let value = match (arg(name), name) {
            (Some(v), _) => text(v),
            // Secret Manager's accessString reads the latest version by default.
            (None, "version") => "latest".to_string(),
            (None, "project_id") => env_text(cx, "GOOGLE_CLOUD_PROJECT_ID"),
            (None, "location") => env_text(cx, "GOOGLE_CLOUD_LOCATION"),
            (None, _) => {
                return Err(Raised::tagged(
                    "KeyError",
                    format!("{}: the argument `{name}` is missing", connector.name),
                ));
            }
        };
        let raw = format!("{{+{name}}}");
        if path.contains(&raw) {
            path = path.replace(&raw, &value);
        } else {
            let encoded = utf8_percent_encode(&value, NON_ALPHANUMERIC).to_string();
            path = path.replace(&format!("{{{name}}}"), &encoded);
        }
    }
    let in_path = connector.path_args();
    let mut query: Vec<(String, String)> = connector
        .fixed_query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (name, value) in args {
        let in_body = match connector.body {
            Body::Arg(arg) => arg == *name,
            Body::ExecutionArgument => *name == "argument",
            Body::None => false,
        };
        if !in_path.contains(name) && !in_body && *name != "connector_params" {
            query.push((name.to_string(), text(value)));
        }
    }
    let mut url = format!("{base}{path}");
    if !query.is_empty() {
        let pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
            .collect();
        url = format!("{url}?{}", pairs.join("&"));
    }
    Ok(url)
}

/// A new callback endpoint of the running execution:
/// `{server}/v1/projects/{p}/locations/{l}/workflows/{w}/executions/{e}/callbacks/{id}`,
/// Google's path on the server's API, where `skein server` receives it.
fn callback_url(cx: &Cx<'_>) -> Result<String, Raised> {
    let server = cx
        .runtime_metadata("server")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Raised::tagged(
                "SystemError",
                "events.create_callback_endpoint: callbacks are received by `skein server`, \
                 and this execution runs without one (`skein run`)",
            )
        })?;
    let env = |name: &str| env_text(cx, name);
    let execution = cx
        .workflow()
        .and_then(|w| w.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(format!(
        "{server}/v1/projects/{}/locations/{}/workflows/{}/executions/{execution}/callbacks/{}",
        env("GOOGLE_CLOUD_PROJECT_ID"),
        env("GOOGLE_CLOUD_LOCATION"),
        env("GOOGLE_CLOUD_WORKFLOW_ID"),
        uuid::Uuid::new_v4()
    ))
}

fn env_text(cx: &Cx<'_>, name: &str) -> String {
    crate::stdlib::get_env(cx, name)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A connector's result from the call's full response.
fn connector_result(made: &crate::connectors::Reply, response: &Value) -> Result<Value, Raised> {
    let body = response.get("content").cloned().unwrap_or(Value::Null);
    match made {
        crate::connectors::Reply::Body => Ok(body),
        crate::connectors::Reply::SecretText => {
            use base64::Engine as _;
            let data = body["payload"]["data"].as_str().unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| {
                    value::value_error(format!("the secret's payload is not base64: {e}"))
                })?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| value::value_error("the secret's payload is not UTF-8 text"))
        }
    }
}

/// What a list of steps gave back: the value of its `return`, or null.
fn returned(output: &Value) -> Value {
    match output {
        Value::Object(map) if map.len() == 1 && map.contains_key(RETURN) => map[RETURN].clone(),
        _ => Value::Null,
    }
}

fn format_seconds(seconds: f64) -> String {
    let millis = (seconds * 1000.0).round() as u64;
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{}.{:03}", millis / 1000, millis % 1000)
    }
}

impl Expression for Compute {
    fn text(&self) -> &str {
        &self.text
    }

    fn origin(&self) -> &str {
        &self.origin
    }

    fn eval(&self, input: &Value, vars: &Vars<'_>) -> Result<Value, EvalError> {
        match vars.budget().run(|| {
            self.run(input, vars)
                .and_then(|v| self.check_size(&v).map(|()| v))
        }) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(raised)) => Err(self.error(&raised)),
            Err(exceeded) => Err(self
                .error(&Raised::tagged("ResourceLimitError", exceeded.to_string()))
                .over(exceeded)),
        }
    }

    fn eval_bool(&self, input: &Value, vars: &Vars<'_>) -> Result<bool, EvalError> {
        match self.eval(input, vars)? {
            Value::Bool(b) => Ok(b),
            other => Err(self.error(&value::type_error(format!(
                "a condition must be a boolean, not {}",
                type_name(&other)
            )))),
        }
    }
}
