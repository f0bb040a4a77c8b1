//! jq, the DSL's expression language, through the jaq crates: the one
//! [`Expression`] implementation today.
//!
//! Every expression is compiled once, when its workflow is loaded, with the
//! names of every variable it may read declared up front: the eight runtime
//! arguments of the DSL plus the loop and catch variables in scope at its
//! position. An undefined variable or filter is therefore a load-time error
//! with a position, never a surprise at run time.

use std::sync::{Arc, LazyLock};

use jaq_core::load::{Arena, File, Loader, parse};
use jaq_core::{Ctx, Exn, Native, Vars as JaqVars, box_iter::box_once, data::JustLut};
use serde_json::Value;

use crate::interpolation::Interpolation;
use crate::metered::{self, Metered};
use crate::value::{from_val, to_val};
use crate::{CompileError, EvalError, Expr, Expression, Vars, guard};

type Data = JustLut<Metered>;
type Filter = jaq_core::Filter<Data>;

/// The runtime-expression arguments every expression may read (without the `$`).
pub const STANDARD_VARS: [&str; 9] = [
    "input",
    "output",
    "context",
    "secrets",
    "task",
    "workflow",
    "runtime",
    "authorization",
    "env",
];

/// A compiled jq expression.
struct Jq {
    text: Box<str>,
    /// Where the expression sits in its document (a JSON pointer), for error messages.
    origin: Box<str>,
    filter: Filter,
    /// Global variable names in the order the filter expects their values, without `$`.
    globals: Box<[Box<str>]>,
    /// Whether the text mentions each global; unmentioned ones are passed as `null`
    /// so that evaluation does not convert values nobody reads.
    used: Box<[bool]>,
    /// Set when the text is a string with simple interpolations, evaluated without jq.
    interpolation: Option<Interpolation>,
}

impl Expr {
    /// Compiles jq `text`. `locals` are the names (without `$`) of the loop and
    /// catch variables in scope, beside the [`STANDARD_VARS`].
    pub fn compile(text: &str, locals: &[&str]) -> Result<Expr, CompileError> {
        Self::compile_at(text, locals, "")
    }

    /// Like [`Expr::compile`], remembering `origin` (the JSON pointer of the field the
    /// expression was written in) so that evaluation errors can say where it is.
    pub fn compile_at(text: &str, locals: &[&str], origin: &str) -> Result<Expr, CompileError> {
        guard::check(text)?;

        let mut globals: Vec<&str> = Vec::with_capacity(STANDARD_VARS.len() + locals.len());
        for name in STANDARD_VARS.iter().chain(locals) {
            globals.retain(|g| g != name);
            globals.push(name);
        }
        let dollar_names: Vec<String> = globals.iter().map(|n| format!("${n}")).collect();

        // First with only the prelude definitions the text calls: a compiled filter
        // carries every definition it was compiled with, and the whole standard
        // library costs about 110 KB per expression. If that misses a definition
        // (syntax that desugars to a call), the full prelude decides.
        let filter = match needed_prelude(text) {
            Some(defs) => build(text, defs, &globals, &dollar_names)
                .or_else(|_| build(text, prelude(), &globals, &dollar_names))?,
            None => build(text, prelude(), &globals, &dollar_names)?,
        };

        let used = globals
            .iter()
            .map(|name| mentions_var(text, name))
            .collect();
        Ok(Expr::new(Arc::new(Jq {
            text: text.into(),
            origin: origin.into(),
            filter,
            globals: globals.iter().map(|n| Box::<str>::from(*n)).collect(),
            used,
            interpolation: Interpolation::recognise(text),
        })))
    }
}

impl Jq {
    fn error(&self, message: String) -> EvalError {
        EvalError {
            message,
            expression: self.text.to_string(),
            origin: self.origin.to_string(),
            limit: None,
            data: None,
        }
    }
}

impl Expression for Jq {
    fn text(&self) -> &str {
        &self.text
    }

    fn origin(&self) -> &str {
        &self.origin
    }

    /// No output is `null`; more than one output is an error. Runs under the budget
    /// of `vars`.
    fn eval(&self, input: &Value, vars: &Vars<'_>) -> Result<Value, EvalError> {
        if let Some(interpolation) = &self.interpolation
            && let Some(text) = interpolation.eval(input, vars)
        {
            return Ok(Value::String(text));
        }
        vars.budget()
            .run(|| self.run(input, vars))
            .unwrap_or_else(|exceeded| Err(self.error(exceeded.to_string()).over(exceeded)))
    }
}

impl Jq {
    fn run(&self, input: &Value, vars: &Vars<'_>) -> Result<Value, EvalError> {
        let values = self
            .globals
            .iter()
            .zip(&self.used)
            .map(|(name, used)| match vars.get(name) {
                Some(value) if *used => to_val(value),
                _ => Metered::default(),
            });
        let ctx = Ctx::<Data>::new(&self.filter.lut, JaqVars::new(values));
        let mut outputs = self.filter.id.run((ctx, to_val(input)));
        let first = match outputs.next() {
            None => return Ok(Value::Null),
            Some(result) => result.map_err(|exn| self.error(exception(exn)))?,
        };
        match outputs.next() {
            None => {}
            Some(Err(exn)) => return Err(self.error(exception(exn))),
            Some(Ok(_)) => {
                return Err(self.error(
                    "the expression produced more than one value; collect them with `[ … ]` \
                     or keep one with `first(…)`"
                        .into(),
                ));
            }
        }
        from_val(&first.val).map_err(|message| self.error(message))
    }
}

/// Loads and compiles `text` with the given prelude definitions.
fn build(
    text: &str,
    prelude: impl IntoIterator<Item = parse::Def<&'static str>>,
    globals: &[&str],
    dollar_names: &[String],
) -> Result<Filter, CompileError> {
    let loader = Loader::new(prelude);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: text,
                path: (),
            },
        )
        .map_err(|errors| load_error(text, errors))?;
    jaq_core::Compiler::<_, Data>::default()
        .with_funs(natives())
        .with_global_vars(dollar_names.iter().map(String::as_str))
        .compile(modules)
        .map_err(|errors| undefined_error(text, globals, errors))
}

/// The prelude parsed once, with the names each definition calls.
struct Prelude {
    defs: Vec<parse::Def<&'static str>>,
    calls: Vec<Vec<String>>,
}

static PRELUDE: LazyLock<Prelude> = LazyLock::new(|| {
    let defs: Vec<_> = prelude().collect();
    let calls = defs
        .iter()
        .map(|d| called_names(&format!("{:?}", d.body)))
        .collect();
    Prelude { defs, calls }
});

/// The prelude definitions `text` calls, directly or through other definitions;
/// `None` if the text does not parse (the full compile then reports why).
fn needed_prelude(text: &str) -> Option<Vec<parse::Def<&'static str>>> {
    let term = jaq_core::load::parse(text, |p| p.term())?;
    let prelude = &*PRELUDE;
    let mut included = vec![false; prelude.defs.len()];
    let mut queue = called_names(&format!("{term:?}"));
    while let Some(name) = queue.pop() {
        for (i, def) in prelude.defs.iter().enumerate() {
            if def.name == name && !included[i] {
                included[i] = true;
                queue.extend(prelude.calls[i].iter().cloned());
            }
        }
    }
    Some(
        prelude
            .defs
            .iter()
            .zip(included)
            .filter(|(_, included)| *included)
            .map(|(def, _)| def.clone())
            .collect(),
    )
}

/// The filters a parsed term calls, read from its debug form: `Call("name", …)`
/// and the `@format` of format strings. Reading too many only costs memory.
fn called_names(debug: &str) -> Vec<String> {
    let mut names = Vec::new();
    for marker in ["Call(\"", "Str(Some(\""] {
        for (at, _) in debug.match_indices(marker) {
            let rest = &debug[at + marker.len()..];
            if let Some(end) = rest.find('"') {
                names.push(rest[..end].to_string());
            }
        }
    }
    names
}

/// True if `text` contains `$name` not followed by another identifier character.
fn mentions_var(text: &str, name: &str) -> bool {
    let needle = format!("${name}");
    text.match_indices(&needle).any(|(at, _)| {
        !text[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The message of an error an expression raised: a string as it is, anything else
/// (`error({…})`) as JSON.
fn exception(exn: Exn<Metered>) -> String {
    match exn.get_err() {
        Ok(error) => match error.into_val().val {
            jaq_json::Val::TStr(text) => String::from_utf8_lossy(&text).into_owned(),
            other => other.to_string(),
        },
        Err(_) => "the expression stopped without a value".into(),
    }
}

/// jaq's prelude, with its recursive generators replaced by ones that count their
/// rounds against the budget.
fn prelude() -> impl Iterator<Item = parse::Def<&'static str>> {
    let fueled: Vec<_> = jaq_core::load::parse(metered::FUELED_DEFS, |p| p.defs())
        .expect("the fueled definitions parse");
    // In place of the originals: a definition sees only those before it.
    jaq_core::defs()
        .map(move |def| {
            fueled
                .iter()
                .find(|f| f.name == def.name && f.args.len() == def.args.len())
                .cloned()
                .unwrap_or(def)
        })
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
}

type Fun = (&'static str, Box<[jaq_core::Bind]>, Native<Data>);

/// The native filters of jaq, minus what a workflow must not reach: `env` would
/// expose the engine's environment (and its secrets), `halt` would exit the engine,
/// and `debug`/`stderr` would write workflow data to the engine's own output.
fn natives() -> impl Iterator<Item = Fun> {
    jaq_core::funs::<Data>()
        .chain(jaq_std::funs())
        .chain(metered::natives())
        .map(|(name, args, native)| {
            let native = match name {
                "env" => Native::new(|_| {
                    box_once(Ok(Metered::new(jaq_json::Val::obj(Default::default()), 1)))
                }),
                "halt" => Native::new(|_| {
                    box_once(Err(Exn::from(jaq_core::Error::str(
                        "`halt` is not available in workflow expressions",
                    ))))
                }),
                "debug_empty" | "stderr_empty" => Native::new(|_| Box::new(core::iter::empty())),
                _ => native,
            };
            (name, args, native)
        })
}

/// Names of every filter an expression can call, for "did you mean" suggestions.
static FILTER_NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names: Vec<&'static str> = prelude()
        .map(|def| def.name)
        .chain(natives().map(|(name, ..)| name))
        .filter(|name| !name.starts_with('_') && !name.ends_with("_empty"))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
});

fn load_error(text: &str, errors: jaq_core::load::Errors<&str, ()>) -> CompileError {
    use jaq_core::load::Error;
    let mut found = Vec::new();
    for (_file, error) in errors {
        match error {
            Error::Lex(errs) => {
                found.extend(errs.into_iter().map(|(expect, at)| (expect.as_str(), at)))
            }
            Error::Parse(errs) => {
                found.extend(errs.into_iter().map(|(expect, at)| (expect.as_str(), at)))
            }
            Error::Io(errs) => {
                if let Some((at, message)) = errs.into_iter().next() {
                    return CompileError {
                        message,
                        range: jaq_core::load::span(text, at),
                        help: None,
                    };
                }
            }
        }
    }
    let Some((expected, at)) = found.into_iter().next() else {
        return CompileError {
            message: "the expression does not parse".into(),
            range: 0..text.len(),
            help: None,
        };
    };
    let range = jaq_core::load::span(text, at);
    // jaq hands over the rest of the input; show only its first token.
    let token: String = at
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .take(20)
        .collect();
    let message = match (expected, token.is_empty()) {
        (_, true) => {
            format!("invalid expression: expected {expected}, found the end of the expression")
        }
        ("nothing" | "token", false) => format!("invalid expression: unexpected `{token}`"),
        (_, false) => format!("invalid expression: expected {expected}, found `{token}`"),
    };
    CompileError {
        message,
        range: range.start..range.start + token.len(),
        help: None,
    }
}

fn undefined_error(
    text: &str,
    globals: &[&str],
    errors: jaq_core::compile::Errors<&str, ()>,
) -> CompileError {
    let Some((at, undefined)) = errors.into_iter().flat_map(|(_file, errs)| errs).next() else {
        return CompileError {
            message: "the expression does not compile".into(),
            range: 0..text.len(),
            help: None,
        };
    };
    let range = jaq_core::load::span(text, at);
    let (message, help) = match undefined {
        jaq_core::compile::Undefined::Var => {
            let name = at.trim_start_matches('$');
            let candidates = globals.iter().copied();
            (
                format!("undefined variable `{at}`"),
                closest(name, candidates)
                    .map(|c| format!("did you mean `${c}`?"))
                    .or_else(|| {
                        Some(format!(
                            "the variables here are {}",
                            globals
                                .iter()
                                .map(|g| format!("${g}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }),
            )
        }
        jaq_core::compile::Undefined::Filter(arity) => (
            format!("undefined function `{at}/{arity}`"),
            closest(at, FILTER_NAMES.iter().copied()).map(|c| format!("did you mean `{c}`?")),
        ),
        other => (format!("undefined {} `{at}`", other.as_str()), None),
    };
    CompileError {
        message,
        range,
        help,
    }
}

/// The candidate closest to `name`, if close enough to be a plausible typo.
pub(crate) fn closest<'c>(
    name: &str,
    candidates: impl Iterator<Item = &'c str>,
) -> Option<&'c str> {
    candidates
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
