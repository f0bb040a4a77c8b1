//! From the positioned syntax tree to the typed model, reporting every problem.
//!
//! Each decoder takes the node to read (an [`At`]: the node, the key that led
//! to it and its JSON pointer) and returns `Some(value)` or `None` after
//! reporting why not. Parents decode all their fields before combining them, so
//! one mistake never hides the next: `validate` shows them all at once.

mod activity;
mod auth;
mod call;
mod messages;
mod siblings;
mod task;
mod workflow;

use std::ops::Range;

use expr::{Expr, Mode, Template};
use serde_json::Value;

use crate::diagnostic::{Diagnostic, Severity};
use crate::yaml::{Kind, Node};
use program::{Duration, ExtensionUse};

pub(crate) use workflow::workflow;

/// A JSON pointer into the document, built as the decoder descends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ptr(String);

impl Ptr {
    pub(crate) fn key(&self, key: &str) -> Ptr {
        Ptr(format!(
            "{}/{}",
            self.0,
            key.replace('~', "~0").replace('/', "~1")
        ))
    }

    pub(crate) fn index(&self, i: usize) -> Ptr {
        Ptr(format!("{}/{i}", self.0))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A node being decoded, with the key that led to it and where it sits.
#[derive(Clone)]
pub(crate) struct At<'n> {
    pub(crate) node: &'n Node,
    /// The mapping key whose value `node` is, if any.
    pub(crate) key: Option<&'n Node>,
    pub(crate) ptr: Ptr,
}

impl<'n> At<'n> {
    pub(crate) fn root(node: &'n Node) -> At<'n> {
        At {
            node,
            key: None,
            ptr: Ptr::default(),
        }
    }

    /// The range a problem with this node as a whole points at: its key if it has one.
    pub(crate) fn anchor(&self) -> Range<usize> {
        self.key
            .map_or_else(|| self.node.range.clone(), |k| k.range.clone())
    }

    /// How this node is named in messages, such as `` `dsl` `` or `` `do[2]` ``.
    pub(crate) fn label(&self) -> String {
        let last = self.ptr.0.rsplit('/').next().unwrap_or("");
        if last.is_empty() {
            "the document".into()
        } else if last.bytes().all(|b| b.is_ascii_digit()) {
            let parent = self.ptr.0[..self.ptr.0.len() - last.len() - 1]
                .rsplit('/')
                .next()
                .unwrap_or("");
            format!("`{parent}[{last}]`")
        } else {
            format!("`{}`", last.replace("~1", "/").replace("~0", "~"))
        }
    }

    pub(crate) fn items(&self) -> Option<impl Iterator<Item = At<'n>> + '_> {
        match &self.node.kind {
            Kind::Seq(items) => Some(items.iter().enumerate().map(|(i, node)| At {
                node,
                key: None,
                ptr: self.ptr.index(i),
            })),
            _ => None,
        }
    }
}

/// A `then` that names a task, checked once the whole list is known.
pub(crate) struct Goto {
    name: String,
    range: Range<usize>,
    ptr: Ptr,
}

/// Decoding state: the source, the diagnostics so far and what is in scope.
pub(crate) struct Cx<'s> {
    pub(crate) src: &'s str,
    pub(crate) diagnostics: Vec<Diagnostic>,
    pub(crate) mode: Mode,
    /// Names declared in each `use` section.
    pub(crate) names: UseNames,
    /// Loop and catch variables in scope, innermost last.
    pub(crate) locals: Vec<String>,
    /// `then` targets waiting for their task list to be complete, one frame per list.
    pub(crate) gotos: Vec<Vec<Goto>>,
    pub(crate) extensions: Vec<ExtensionUse>,
    /// Set when an expression of the task being decoded mentions `$task`.
    pub(crate) reads_task: bool,
    /// The document is in Zigflow's dialect.
    pub(crate) zigflow: bool,
    /// Zigflow's activity options as the document sets them (`metadata.activityOptions`
    /// over Zigflow's defaults), for its `call` and `run` tasks.
    pub(crate) activity: Option<activity::ActivityOptions>,
    /// The document's own `metadata.activityOptions`, until the document's are known.
    pub(crate) activity_written: Option<activity::ActivityOptions>,
    /// A Zigflow document's task queue: where `run.workflow` looks a workflow type up.
    pub(crate) task_queue: Option<String>,
    /// Zigflow's `searchAttributes`, by the reference of their task (`/`: the document).
    pub(crate) search_attributes: indexmap::IndexMap<String, expr::Template>,
}

#[derive(Default)]
pub(crate) struct UseNames {
    pub(crate) authentications: Vec<String>,
    pub(crate) catalogs: Vec<String>,
    pub(crate) errors: Vec<String>,
    pub(crate) functions: Vec<String>,
    pub(crate) retries: Vec<String>,
    pub(crate) secrets: Vec<String>,
    pub(crate) timeouts: Vec<String>,
}

impl<'s> Cx<'s> {
    pub(crate) fn new(src: &'s str) -> Cx<'s> {
        Cx {
            src,
            diagnostics: Vec::new(),
            mode: Mode::Strict,
            names: UseNames::default(),
            locals: Vec::new(),
            gotos: Vec::new(),
            extensions: Vec::new(),
            reads_task: false,
            zigflow: false,
            activity: None,
            activity_written: None,
            search_attributes: Default::default(),
            task_queue: None,
        }
    }

    pub(crate) fn warning(
        &mut self,
        range: Range<usize>,
        ptr: &Ptr,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.report(
            Severity::Warning,
            range,
            ptr,
            message.into(),
            Some(help.into()),
        );
    }

    pub(crate) fn error(&mut self, range: Range<usize>, ptr: &Ptr, message: impl Into<String>) {
        self.report(Severity::Error, range, ptr, message.into(), None);
    }

    pub(crate) fn error_help(
        &mut self,
        range: Range<usize>,
        ptr: &Ptr,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.report(
            Severity::Error,
            range,
            ptr,
            message.into(),
            Some(help.into()),
        );
    }

    fn report(
        &mut self,
        severity: Severity,
        range: Range<usize>,
        ptr: &Ptr,
        message: String,
        help: Option<String>,
    ) {
        self.diagnostics.push(Diagnostic {
            severity,
            message,
            range,
            path: ptr.0.clone(),
            help,
        });
    }

    /// Reports that `at` has the wrong type.
    pub(crate) fn expected(&mut self, at: &At, what: &str) {
        let message = format!(
            "{} must be {what}, found {}",
            at.label(),
            at.node.describe()
        );
        self.error(at.node.range.clone(), &at.ptr, message);
    }

    /// Runs `f` with the variables `names` in scope.
    pub(crate) fn scoped<T>(&mut self, names: &[&str], f: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.locals.len();
        self.locals.extend(names.iter().map(|n| n.to_string()));
        let result = f(self);
        self.locals.truncate(before);
        result
    }

    // ---- scalars ----

    pub(crate) fn string(&mut self, at: &At) -> Option<String> {
        match &at.node.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.expected(at, "a string");
                None
            }
        }
    }

    /// A string from a fixed set, reported with the allowed values when it is anything else.
    pub(crate) fn one_of(&mut self, at: &At, allowed: &[&str]) -> Option<String> {
        let s = self.string(at)?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let list = allowed
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!("{} must be one of {list}, found `{s}`", at.label());
        match expr::closest(&s, allowed.iter().copied()) {
            Some(c) => self.error_help(
                at.node.range.clone(),
                &at.ptr,
                message,
                format!("did you mean `{c}`?"),
            ),
            None => self.error(at.node.range.clone(), &at.ptr, message),
        }
        None
    }

    pub(crate) fn boolean(&mut self, at: &At) -> Option<bool> {
        match at.node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.expected(at, "`true` or `false`");
                None
            }
        }
    }

    /// A non-negative integer that fits `T`.
    pub(crate) fn uint<T: TryFrom<u64>>(&mut self, at: &At) -> Option<T> {
        let value = match at.node.kind {
            Kind::Int(i) if i >= 0 => Some(i as u64),
            Kind::UInt(u) => Some(u),
            Kind::Float(f) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => Some(f as u64),
            _ => None,
        };
        match value {
            None if matches!(at.node.kind, Kind::Int(i) if i < 0) => {
                let Kind::Int(i) = at.node.kind else {
                    unreachable!()
                };
                self.error(
                    at.node.range.clone(),
                    &at.ptr,
                    format!("{} must not be negative, found {i}", at.label()),
                );
                None
            }
            None => {
                self.expected(at, "a non-negative integer");
                None
            }
            Some(v) => match T::try_from(v) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.error(
                        at.node.range.clone(),
                        &at.ptr,
                        format!("{} is too large: {v}", at.label()),
                    );
                    None
                }
            },
        }
    }

    pub(crate) fn string_list(&mut self, at: &At) -> Option<Vec<String>> {
        let Some(items) = at.items() else {
            self.expected(at, "a list of strings");
            return None;
        };
        let items: Vec<At> = items.collect();
        let values: Vec<Option<String>> = items.iter().map(|item| self.string(item)).collect();
        values.into_iter().collect()
    }

    /// Any data, as JSON.
    pub(crate) fn json(&mut self, at: &At) -> Value {
        at.node.to_json()
    }

    /// A mapping of names to anything, as JSON.
    pub(crate) fn json_map(&mut self, at: &At) -> Option<indexmap::IndexMap<String, Value>> {
        let entries = self.entries(at)?;
        Some(
            entries
                .into_iter()
                .map(|(name, at)| (name, at.node.to_json()))
                .collect(),
        )
    }

    /// The entries of a name → definition mapping, reporting duplicate names.
    pub(crate) fn entries<'n>(&mut self, at: &At<'n>) -> Option<Vec<(String, At<'n>)>> {
        let Kind::Map(entries) = &at.node.kind else {
            self.expected(at, "a mapping");
            return None;
        };
        let mut out: Vec<(String, At<'n>)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let name = key.as_str().unwrap_or_default().to_string();
            if out.iter().any(|(n, _)| *n == name) {
                self.error(
                    key.range.clone(),
                    &at.ptr.key(&name),
                    format!("duplicate key `{name}` in {}", at.label()),
                );
                continue;
            }
            let ptr = at.ptr.key(&name);
            out.push((
                name,
                At {
                    node: value,
                    key: Some(key),
                    ptr,
                },
            ));
        }
        Some(out)
    }

    // ---- expressions ----

    /// Compiles jq `text`, found at byte `offset` of the string value of `at`.
    fn compile(&mut self, at: &At, value: &str, offset: usize, text: &str) -> Option<Expr> {
        self.reads_task |= text.contains("$task");
        let locals: Vec<&str> = self.locals.iter().map(String::as_str).collect();
        match Expr::compile_at(text, &locals, at.ptr.as_str()) {
            Ok(e) => Some(e),
            Err(err) => {
                let start = self.source_offset(at.node, value, offset + err.range.start);
                let end = self
                    .source_offset(at.node, value, offset + err.range.end)
                    .max(start + 1);
                let mut help = err.help;
                if help.is_none() && value.matches("${").count() > 1 {
                    help = Some(
                        "a string that starts with `${` and ends with `}` is one expression; \
                         to build text from parts, use jq interpolation: ${ \"\\(.a) and \\(.b)\" }"
                            .into(),
                    );
                }
                match help {
                    Some(help) => self.error_help(start..end, &at.ptr, err.message, help),
                    None => self.error(start..end, &at.ptr, err.message),
                }
                None
            }
        }
    }

    /// A field that is always an expression: `${ … }` or bare jq, as in `when: .color == "red"`.
    pub(crate) fn expr(&mut self, at: &At) -> Option<Expr> {
        let value = self.string(at)?;
        let (offset, text) = expr::strict_expression(&value).unwrap_or((0, &value));
        self.compile(at, &value, offset, text)
    }

    /// A string that must be a `${ … }` expression.
    pub(crate) fn strict_expr(&mut self, at: &At) -> Option<Expr> {
        let value = self.string(at)?;
        match expr::strict_expression(&value) {
            Some((offset, text)) => self.compile(at, &value, offset, text),
            None => {
                self.error(
                    at.node.range.clone(),
                    &at.ptr,
                    format!("{} must be a `${{ … }}` expression", at.label()),
                );
                None
            }
        }
    }

    /// Any data, in which strings of the form `${ … }` are expressions.
    pub(crate) fn template(&mut self, at: &At) -> Option<Template> {
        crate::yaml::deep(|| self.template_inner(at))
    }

    fn template_inner(&mut self, at: &At) -> Option<Template> {
        match &at.node.kind {
            Kind::Str(s) => Some(self.string_template(at, s)),
            Kind::Seq(_) => {
                let items: Vec<At> = at.items()?.collect();
                let parts: Vec<Option<Template>> =
                    items.iter().map(|item| self.template(item)).collect();
                Some(Template::array(parts.into_iter().collect::<Option<_>>()?))
            }
            Kind::Map(_) => {
                let entries = self.entries(at)?;
                let parts: Vec<Option<(String, Template)>> = entries
                    .into_iter()
                    .map(|(name, at)| self.template(&at).map(|t| (name, t)))
                    .collect();
                Some(Template::object(parts.into_iter().collect::<Option<_>>()?))
            }
            _ => Some(Template::Const(at.node.to_json())),
        }
    }

    /// A string that is either literal text or an expression (the template form for strings).
    pub(crate) fn text(&mut self, at: &At) -> Option<Template> {
        let s = self.string(at)?;
        Some(self.string_template(at, &s))
    }

    fn string_template(&mut self, at: &At, s: &str) -> Template {
        if let Some((offset, text)) = expr::strict_expression(s) {
            // A failed compile was reported; a placeholder keeps the rest of the document decoding.
            return self
                .compile(at, s, offset, text)
                .map_or(Template::Const(Value::Null), Template::Expr);
        }
        if self.mode == Mode::Loose {
            self.reads_task |= s.contains("$task");
            let locals: Vec<&str> = self.locals.iter().map(String::as_str).collect();
            if let Ok(e) = Expr::compile_at(s, &locals, at.ptr.as_str()) {
                return Template::Loose(e, s.to_string());
            }
        }
        Template::Const(Value::String(s.to_string()))
    }

    /// `input.from`, `output.as`, `export.as`: a string is an expression (bare or `${ }`),
    /// a mapping is a template.
    pub(crate) fn transform(&mut self, at: &At) -> Option<Template> {
        match &at.node.kind {
            Kind::Str(_) => self.expr(at).map(Template::Expr),
            Kind::Map(_) => self.template(at),
            _ => {
                self.expected(at, "an expression or a mapping");
                None
            }
        }
    }

    /// A byte offset in the source for byte `k` of the string value of `node`.
    /// Exact for plain and simply quoted scalars and for block scalars; otherwise
    /// (escapes, folding) the start of the scalar.
    fn source_offset(&self, node: &Node, value: &str, k: usize) -> usize {
        let start = node.range.start;
        let raw = self.src.get(node.range.clone()).unwrap_or("");
        if raw == value {
            return start + k;
        }
        if raw.len() >= 2
            && (raw.starts_with('"') || raw.starts_with('\''))
            && &raw[1..raw.len() - 1] == value
        {
            return start + 1 + k;
        }
        // Multi-line scalars: find each line of the value in the source, in order.
        let target_line = value[..k.min(value.len())].matches('\n').count();
        let line_start = value[..k.min(value.len())].rfind('\n').map_or(0, |i| i + 1);
        let mut pos = start;
        for (i, line) in value.split('\n').enumerate().take(target_line + 1) {
            let Some(found) = self.src.get(pos..).and_then(|rest| rest.find(line)) else {
                break;
            };
            if i == target_line {
                return pos + found + (k - line_start);
            }
            pos += found + line.len();
        }
        start
    }

    // ---- durations ----

    /// A duration whose fields are partly expressions: one jq expression that adds
    /// them up (`fixed` milliseconds, and each expression times its unit's) and yields
    /// the ISO 8601 duration the engine reads, or an error naming a field that is not a
    /// number of zero or more.
    fn computed_duration(
        &mut self,
        at: &At,
        fixed: u64,
        computed: &[(String, u64)],
    ) -> Option<Duration> {
        let mut text = format!("{fixed}");
        for (i, (field, factor)) in computed.iter().enumerate() {
            text = format!(
                "{text} + ((({field})) as $f{i} | if ($f{i} | type) == \"number\" and $f{i} >= 0 \
                 then $f{i} * {factor} else error(\"a duration field yielded \\($f{i} | tojson), \
                 not a number of zero or more\") end)"
            );
        }
        let text = format!(
            "({text}) | floor as $ms | \"PT\\($ms / 1000 | floor).\\(1000 + $ms % 1000 | tostring | .[1:])S\""
        );
        self.compile(at, &text, 0, &text).map(Duration::Expr)
    }

    /// An inline duration (`seconds: 30`), an ISO 8601 string (`PT30S`) or a `${ }` expression.
    pub(crate) fn duration(&mut self, at: &At) -> Option<Duration> {
        match &at.node.kind {
            Kind::Map(_) => {
                let mut obj = Obj::new(self, at)?;
                let units: [(&'static str, u64); 5] = [
                    ("days", 86_400_000),
                    ("hours", 3_600_000),
                    ("minutes", 60_000),
                    ("seconds", 1_000),
                    ("milliseconds", 1),
                ];
                let mut millis: u64 = 0;
                let mut any = false;
                let mut ok = true;
                // Zigflow's extension: a field may be a `${ }` expression that yields a
                // number; its jq text, and the milliseconds of its unit.
                let mut computed: Vec<(String, u64)> = Vec::new();
                for (unit, factor) in units {
                    let read = obj.opt(self, unit, |cx, at| match &at.node.kind {
                        Kind::Str(s) if expr::strict_expression(s).is_some() => {
                            // Compiled alone first, so that an error points into it.
                            cx.strict_expr(at)?;
                            cx.extensions.push(ExtensionUse {
                                name: "duration.expressions",
                                path: at.ptr.as_str().to_string(),
                                range: at.anchor(),
                            });
                            let (_, text) = expr::strict_expression(s)?;
                            Some(Err(text.to_string()))
                        }
                        _ => cx.uint::<u64>(at).map(Ok),
                    });
                    match read {
                        Some(Some(Ok(n))) => {
                            any = true;
                            millis = millis.saturating_add(n.saturating_mul(factor));
                        }
                        Some(Some(Err(text))) => {
                            any = true;
                            computed.push((text, factor));
                        }
                        Some(None) => {}
                        None => ok = false,
                    }
                }
                obj.finish(self);
                if ok && !computed.is_empty() {
                    return self.computed_duration(at, millis, &computed);
                }
                if !any && ok {
                    self.error(
                        at.node.range.clone(),
                        &at.ptr,
                        format!("{} needs at least one of `days`, `hours`, `minutes`, `seconds`, `milliseconds`", at.label()),
                    );
                    return None;
                }
                ok.then(|| Duration::Fixed(std::time::Duration::from_millis(millis)))
            }
            Kind::Str(s) => {
                if expr::strict_expression(s).is_some() {
                    return self.strict_expr(at).map(Duration::Expr);
                }
                match iso8601_duration(s) {
                    Ok(d) => Some(Duration::Fixed(d)),
                    Err(why) => {
                        self.error_help(
                            at.node.range.clone(),
                            &at.ptr,
                            format!("{} is not a valid ISO 8601 duration: {why}", at.label()),
                            "write it like `PT30S`, `PT1H30M` or `P1DT12H`, or as `seconds: 30`",
                        );
                        None
                    }
                }
            }
            _ => {
                self.expected(
                    at,
                    "a duration (`seconds: 30`, `PT30S` or a `${ }` expression)",
                );
                None
            }
        }
    }
}

/// Parses an ISO 8601 duration. Days and weeks are 24 hours and 7 days; years and
/// months have no fixed length and are refused.
pub(crate) fn iso8601_duration(s: &str) -> Result<std::time::Duration, String> {
    static PARSER: jiff::fmt::temporal::SpanParser = jiff::fmt::temporal::SpanParser::new();
    if !s.starts_with('P') || s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!(
            "`{s}` must start with `P` and use upper-case designators"
        ));
    }
    let span = PARSER.parse_span(s).map_err(|e| e.to_string())?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err("years and months have no fixed length; use days (`P30D`) instead".into());
    }
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| e.to_string())?;
    std::time::Duration::try_from(signed).map_err(|_| "durations cannot be negative".to_string())
}

/// Reads the fields of a mapping one by one, then reports every key nobody asked for.
pub(crate) struct Obj<'n> {
    at: At<'n>,
    /// How the mapping is named in messages, such as "task `getPet`".
    label: String,
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
    /// Every key the decoder asked about: the candidates for "did you mean".
    known: Vec<&'static str>,
}

impl<'n> Obj<'n> {
    /// Starts reading `at`, which must be a mapping; duplicate keys are reported here.
    pub(crate) fn new(cx: &mut Cx, at: &At<'n>) -> Option<Obj<'n>> {
        let Kind::Map(entries) = &at.node.kind else {
            cx.expected(at, "a mapping");
            return None;
        };
        let mut used = vec![false; entries.len()];
        for (i, (key, _)) in entries.iter().enumerate() {
            if entries[..i].iter().any(|(k, _)| k.as_str() == key.as_str()) {
                let name = key.as_str().unwrap_or_default();
                cx.error(
                    key.range.clone(),
                    &at.ptr.key(name),
                    format!("duplicate key `{name}` in {}", at.label()),
                );
                used[i] = true;
            }
        }
        Some(Obj {
            at: at.clone(),
            label: at.label(),
            entries,
            used,
            known: Vec::new(),
        })
    }

    /// Names the mapping in messages, as in "task `getPet` is missing `catch`".
    pub(crate) fn named(mut self, label: String) -> Self {
        self.label = label;
        self
    }

    pub(crate) fn at(&self) -> &At<'n> {
        &self.at
    }

    /// Which of `keys` the mapping has, in the order they appear in the source,
    /// so that "more than one" errors point at the later one.
    pub(crate) fn present(&self, keys: &[&'static str]) -> Vec<&'static str> {
        let mut found: Vec<&'static str> = Vec::new();
        for (k, _) in self.entries {
            if let Some(key) = keys.iter().copied().find(|key| k.as_str() == Some(key))
                && !found.contains(&key)
            {
                found.push(key);
            }
        }
        found
    }

    /// Marks the keys `skip` chooses as understood, without decoding them.
    pub(crate) fn ignore(&mut self, skip: impl Fn(&str) -> bool) {
        for (i, (k, _)) in self.entries.iter().enumerate() {
            if k.as_str().is_some_and(&skip) {
                self.used[i] = true;
            }
        }
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.as_str() == Some(key))
    }

    /// The value under `key`, marking the key as understood.
    pub(crate) fn field(&mut self, key: &'static str) -> Option<At<'n>> {
        self.known.push(key);
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.as_str() == Some(key))?;
        self.used[i] = true;
        let (k, v) = &self.entries[i];
        Some(At {
            node: v,
            key: Some(k),
            ptr: self.at.ptr.key(key),
        })
    }

    /// Decodes a required field; a missing one is reported at the mapping's key.
    pub(crate) fn req<'s, T>(
        &mut self,
        cx: &mut Cx<'s>,
        key: &'static str,
        f: impl FnOnce(&mut Cx<'s>, &At<'n>) -> Option<T>,
    ) -> Option<T> {
        match self.field(key) {
            Some(at) => f(cx, &at),
            None => {
                let message = format!("{} is missing `{key}`", self.label);
                cx.error(self.at.anchor(), &self.at.ptr, message);
                None
            }
        }
    }

    /// Decodes an optional field: `Some(None)` when absent, `None` when present but invalid.
    pub(crate) fn opt<'s, T>(
        &mut self,
        cx: &mut Cx<'s>,
        key: &'static str,
        f: impl FnOnce(&mut Cx<'s>, &At<'n>) -> Option<T>,
    ) -> Option<Option<T>> {
        match self.field(key) {
            Some(at) => f(cx, &at).map(Some),
            None => Some(None),
        }
    }

    /// Reports the keys that no decoder asked for, suggesting the closest known one.
    pub(crate) fn finish(self, cx: &mut Cx) {
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let name = key.as_str().unwrap_or_default();
            let message = format!("unknown key `{name}` in {}", self.label);
            let ptr = self.at.ptr.key(name);
            match expr::closest(name, self.known.iter().copied()) {
                Some(c) => cx.error_help(
                    key.range.clone(),
                    &ptr,
                    message,
                    format!("did you mean `{c}`?"),
                ),
                None => {
                    let mut known = self.known.clone();
                    known.sort_unstable();
                    known.dedup();
                    let list = known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    cx.error_help(
                        key.range.clone(),
                        &ptr,
                        message,
                        format!("expected one of {list}"),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations() {
        let secs = |s| iso8601_duration(s).map(|d| d.as_secs_f64());
        assert_eq!(secs("PT30S"), Ok(30.0));
        assert_eq!(secs("PT1H30M"), Ok(5400.0));
        assert_eq!(secs("P1DT12H"), Ok(129_600.0));
        assert_eq!(secs("P1W"), Ok(604_800.0));
        assert_eq!(secs("PT0.5S"), Ok(0.5));
        assert!(iso8601_duration("P1M").unwrap_err().contains("months"));
        assert!(iso8601_duration("30s").is_err());
        assert!(iso8601_duration("pt30s").is_err());
        assert!(iso8601_duration("PT").is_err());
        assert!(iso8601_duration("-PT1S").is_err());
    }

    #[test]
    fn pointers_escape_and_label() {
        let p = Ptr::default().key("do").index(2).key("a/b~c");
        assert_eq!(p.as_str(), "/do/2/a~1b~0c");
        let node = Node {
            kind: Kind::Null,
            range: 0..0,
        };
        let label = |ptr| {
            At {
                node: &node,
                key: None,
                ptr,
            }
            .label()
        };
        assert_eq!(label(p), "`a/b~c`");
        assert_eq!(label(Ptr::default().key("do").index(2)), "`do[2]`");
    }
}
