//! From the positioned YAML tree of a Cloud Workflows document to the engine's
//! program, reporting every problem with its position.
//!
//! Each step becomes a task of the same name (a `switch` condition with inline steps
//! adds a task for them after the switch); `main` becomes the workflow's task list
//! and each subworkflow a function of `use.functions`. What each task computes is a
//! [`crate::compute::Kind`].

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use dsl::yaml::{Kind as Yk, Node as Yn};
use dsl::{Diagnostic, Severity};
use expr::{Expr, Template};
use indexmap::IndexMap;
use program::{
    AuthPolicy, AuthRef, Backoff, Call, CallTarget, Catch, Concurrency, ConsumptionStrategy,
    Document, Duration, Emit, Endpoint, ErrorDef, ErrorRef, Evaluate, EventFilter, FlowDirective,
    For, FunctionCall, GoogleAuth, HttpCall, HttpOutput, Input, Listen, ListenRead, NamedTask,
    Output, Program, Raise, RetryLimit, RetryPolicy, RetryRef, Switch, SwitchCase, Task, TaskKind,
    TaskList, Timeout, TimeoutRef, Try, Uri, Use,
};
use serde_json::Value;

use crate::compute::{BRANCH, Compute, ERROR, Kind, OpStep, Outcome, RETURN, Target, Tmpl};
use crate::connectors;
use crate::errors::Predicate;
use crate::interp::{Library, Params};
use crate::parse::{Ast, Node, parse};
use crate::stdlib;

/// Calls that `call` steps make and expressions cannot.
const HTTP: &[&str] = &[
    "http.get",
    "http.post",
    "http.put",
    "http.patch",
    "http.delete",
    "http.request",
];

/// The kinds of a step, as keys.
const STEP_KEYS: &[&str] = &[
    "assign", "call", "switch", "for", "parallel", "try", "raise", "return", "steps", "next",
];

struct Sub {
    params: Params,
}

/// What is in scope where a step is written.
#[derive(Clone, Default)]
struct Scope {
    /// Loop variables, read from the engine's scope.
    locals: Vec<String>,
    in_loop: bool,
    /// Every variable the subworkflow assigns anywhere, its parameters included.
    known: BTreeSet<String>,
    /// The subworkflow's steps and parameters, to tell which variables a parallel
    /// step's branches see from outside.
    sub: Option<Rc<(Yn, BTreeSet<String>)>>,
    /// Inside a parallel step: the variables of the scope around it, and those of them
    /// the branches may assign.
    parallel: Option<Rc<Parallel>>,
}

struct Parallel {
    outside: BTreeSet<String>,
    shared: Vec<String>,
}

impl Scope {
    /// Refuses an assignment, inside a parallel step, to a variable of the scope
    /// around it that the step does not share.
    fn writable(&self, variable: &str) -> Result<(), String> {
        match &self.parallel {
            Some(p) if p.outside.contains(variable) && !p.shared.iter().any(|s| s == variable) => {
                Err(format!(
                    "`{variable}` belongs to the scope around this parallel step; list it in the step's `shared` to assign it here"
                ))
            }
            _ => Ok(()),
        }
    }
}

pub(crate) struct Lowerer<'s> {
    source: &'s str,
    pub(crate) diagnostics: Vec<Diagnostic>,
    subs: IndexMap<String, Sub>,
    /// The subworkflows expressions call, filled when the document is lowered.
    library: Arc<OnceLock<Library>>,
    /// Where expressions call subworkflows, checked for purity at the end.
    in_expressions: Vec<(String, std::ops::Range<usize>, String)>,
    limits: dsl::CloudWorkflowsLimits,
}

impl<'s> Lowerer<'s> {
    pub(crate) fn new(source: &'s str, limits: dsl::CloudWorkflowsLimits) -> Self {
        Lowerer {
            source,
            diagnostics: Vec::new(),
            subs: IndexMap::new(),
            library: Arc::default(),
            in_expressions: Vec::new(),
            limits,
        }
    }

    fn error(&mut self, range: std::ops::Range<usize>, path: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            range,
            path: path.to_string(),
            help: None,
        });
    }

    fn error_help(
        &mut self,
        range: std::ops::Range<usize>,
        path: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.error(range, path, message);
        if let Some(d) = self.diagnostics.last_mut() {
            d.help = help;
        }
    }

    /// The whole document.
    pub(crate) fn document(&mut self, root: &Yn) -> Option<Program> {
        // A top-level list of steps is `main` without parameters.
        let mut blocks: Vec<(String, &Yn, std::ops::Range<usize>)> = Vec::new();
        match &root.kind {
            Yk::Seq(_) => blocks.push(("main".into(), root, root.range.clone())),
            Yk::Map(entries) => {
                for (k, v) in entries {
                    let name = k.as_str().unwrap_or_default().to_string();
                    if blocks.iter().any(|(n, _, _)| *n == name) {
                        self.error(
                            k.range.clone(),
                            &format!("/{name}"),
                            format!("the subworkflow `{name}` is defined twice"),
                        );
                        continue;
                    }
                    blocks.push((name, v, k.range.clone()));
                }
                if !blocks.iter().any(|(n, _, _)| n == "main") {
                    self.error(
                        0..0,
                        "",
                        "a Cloud Workflows document needs a `main` block (or is a list of steps)",
                    );
                }
            }
            _ => {
                self.error(root.range.clone(), "", format!("a Cloud Workflows document is a mapping of `main` and subworkflows, or a list of steps, not {}", root.describe()));
                return None;
            }
        }
        // Parameters first, so that calls are checked wherever they come.
        let mut bodies = Vec::new();
        for (name, node, key_range) in &blocks {
            let path = format!("/{name}");
            let (params, steps) = if matches!(node.kind, Yk::Seq(_)) {
                (Vec::new(), Some(*node))
            } else {
                self.sub_header(node, &path)
            };
            if *name == "main" && params.len() > 1 {
                self.error(
                    key_range.clone(),
                    &path,
                    "`main` takes at most one parameter: the runtime arguments",
                );
            }
            if steps.is_none() {
                self.error(
                    key_range.clone(),
                    &path,
                    format!("the subworkflow `{name}` has no `steps`"),
                );
            }
            self.subs.insert(name.clone(), Sub { params });
            bodies.push((name.clone(), steps, path));
        }
        let mut main = None;
        let mut functions = IndexMap::new();
        for (name, steps, path) in bodies {
            let Some(steps) = steps else { continue };
            let mut scope = Scope::default();
            for (p, _) in &self.subs[&name].params {
                scope.known.insert(p.clone());
            }
            collect_assigned(steps, &mut scope.known, &|_| true);
            let params = self.subs[&name]
                .params
                .iter()
                .map(|(p, _)| p.clone())
                .collect();
            scope.sub = Some(Rc::new((steps.clone(), params)));
            let list = self.steps(steps, &format!("{path}/steps"), &scope);
            if name == "main" {
                main = Some(list);
            } else {
                functions.insert(
                    name.clone(),
                    task(TaskKind::Do(list), FlowDirective::Continue),
                );
            }
        }
        self.fill_library(&functions);
        if self.diagnostics.iter().any(Diagnostic::is_error) {
            return None;
        }
        let main_param = self
            .subs
            .get("main")
            .and_then(|s| s.params.first())
            .map(|(p, _)| p.clone());
        Some(Program {
            document: Document {
                dsl: semver::Version::new(1, 0, 3),
                namespace: "cloud-workflows".into(),
                name: "workflow".into(),
                version: semver::Version::new(0, 0, 1),
                title: None,
                summary: None,
                tags: IndexMap::new(),
                metadata: IndexMap::new(),
            },
            input: Some(Input {
                schema: None,
                from: Some(Template::Expr(Compute::expr(
                    Kind::Main {
                        param: main_param,
                        _library: self.library.clone(),
                    },
                    "the runtime arguments",
                    "/main/params",
                    &[],
                ))),
            }),
            use_: Use {
                functions,
                ..Use::default()
            },
            do_: main.unwrap_or_default(),
            timeout: None,
            output: Some(Output {
                schema: None,
                as_: Some(Template::Expr(Compute::expr(
                    Kind::Unwrap,
                    "the value `main` returns",
                    "/main",
                    &[],
                ))),
            }),
            schedule: None,
            evaluate: Evaluate::default(),
            definition: root.to_json(),
            extensions: Vec::new(),
            task_limit: Some(program::TaskLimit {
                tasks: self.limits.steps,
                setting: "cloud-workflows-steps",
            }),
            accumulates_data: false,
            continue_after: None,
            search_attributes: Default::default(),
        })
    }

    /// Puts the subworkflows that expressions call in the library, after checking that
    /// each can run inside an expression: nothing in it waits or has effects (beyond
    /// `sys.log`), and what it calls can run there too.
    fn fill_library(&mut self, functions: &IndexMap<String, Task>) {
        // What each subworkflow calls, and whether its own tasks may run in an expression.
        let facts: Vec<(&str, bool, Vec<String>)> = functions
            .iter()
            .map(|(name, body)| {
                let mut calls = Vec::new();
                let ok = runs_inline(body, &mut calls);
                (name.as_str(), ok, calls)
            })
            .collect();
        // Pure when its tasks are and everything it calls is (itself included, for
        // recursion): from all whose tasks are, drop callers of others until none goes.
        let mut pure: BTreeSet<&str> = facts
            .iter()
            .filter(|(_, ok, _)| *ok)
            .map(|(name, _, _)| *name)
            .collect();
        loop {
            let impure: Vec<&str> = facts
                .iter()
                .filter(|(name, _, calls)| {
                    pure.contains(name) && !calls.iter().all(|c| pure.contains(c.as_str()))
                })
                .map(|(name, _, _)| *name)
                .collect();
            if impure.is_empty() {
                break;
            }
            for name in impure {
                pure.remove(name);
            }
        }
        for (name, range, path) in std::mem::take(&mut self.in_expressions) {
            if !pure.contains(name.as_str()) {
                self.error(
                    range,
                    &path,
                    format!(
                        "the subworkflow `{name}` cannot be called in an expression: it (or what it calls) \
                         makes calls, sleeps, waits or runs steps in parallel; call it from a `call` step"
                    ),
                );
            }
        }
        let library = Library {
            functions: functions
                .iter()
                .filter(|(name, _)| pure.contains(name.as_str()))
                .filter_map(|(name, body)| {
                    let TaskKind::Do(list) = &body.kind else {
                        return None;
                    };
                    Some((name.clone(), (self.subs[name].params.clone(), list.clone())))
                })
                .collect(),
        };
        self.library
            .set(library)
            .expect("the library is filled once, when the document is lowered");
    }

    /// A subworkflow's `params` and `steps`.
    fn sub_header<'n>(&mut self, node: &'n Yn, path: &str) -> (Params, Option<&'n Yn>) {
        let Yk::Map(entries) = &node.kind else {
            self.error(
                node.range.clone(),
                path,
                format!(
                    "a subworkflow is a mapping with `params` and `steps`, not {}",
                    node.describe()
                ),
            );
            return (Vec::new(), None);
        };
        let (mut params, mut steps) = (Vec::new(), None);
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "steps" => steps = Some(v),
                "params" => {
                    match &v.kind {
                        Yk::Seq(items) => {
                            for item in items {
                                match &item.kind {
                                Yk::Str(name) => params.push((name.clone(), None)),
                                Yk::Map(e) if e.len() == 1 => {
                                    params.push((e[0].0.as_str().unwrap_or_default().to_string(), Some(e[0].1.to_json())));
                                }
                                _ => self.error(item.range.clone(), &format!("{path}/params"), "a parameter is a name, or a mapping of a name to its default"),
                            }
                            }
                        }
                        _ => self.error(
                            v.range.clone(),
                            &format!("{path}/params"),
                            "`params` is a list, such as [a, b: 2]",
                        ),
                    }
                }
                other => self.unknown_key(k, other, &["params", "steps"], path),
            }
        }
        (params, steps)
    }

    fn unknown_key(&mut self, key: &Yn, name: &str, known: &[&str], path: &str) {
        let help =
            expr::closest(name, known.iter().copied()).map(|c| format!("did you mean `{c}`?"));
        self.error_help(
            key.range.clone(),
            path,
            format!("unknown key `{name}`"),
            help,
        );
    }

    /// A list of steps.
    fn steps(&mut self, node: &Yn, path: &str, scope: &Scope) -> TaskList {
        let Yk::Seq(items) = &node.kind else {
            self.error(
                node.range.clone(),
                path,
                format!("`steps` is a list of steps, not {}", node.describe()),
            );
            return TaskList::default();
        };
        let mut tasks: Vec<NamedTask> = Vec::new();
        let mut names: Vec<(String, std::ops::Range<usize>)> = Vec::new();
        let mut jumps: Vec<(String, std::ops::Range<usize>, String)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}/{i}");
            let entry = match &item.kind {
                Yk::Map(entries) if entries.len() == 1 => &entries[0],
                _ => {
                    self.error(item.range.clone(), &at, "a step is a mapping of its name to what it does, such as `- init: {assign: [...]}`");
                    continue;
                }
            };
            let name = entry.0.as_str().unwrap_or_default().to_string();
            if names.iter().any(|(n, _)| *n == name) {
                self.error(
                    entry.0.range.clone(),
                    &at,
                    format!("two steps of this list are called `{name}`"),
                );
            }
            names.push((name.clone(), entry.0.range.clone()));
            let at = format!("{at}/{name}");
            let before = tasks.len();
            self.step(&name, &entry.1, &at, scope, &mut tasks, &mut jumps);
            // Inline blocks of a switch go on to the step after it.
            let after = items.get(i + 1).and_then(|n| match &n.kind {
                Yk::Map(e) if e.len() == 1 => e[0].0.as_str().map(str::to_string),
                _ => None,
            });
            for t in &mut tasks[before..] {
                if t.task.then == FlowDirective::Goto(AFTER.into()) {
                    t.task.then = after
                        .clone()
                        .map_or(FlowDirective::Exit, FlowDirective::Goto);
                }
                if let TaskKind::Switch(s) = &mut t.task.kind {
                    for case in &mut s.cases {
                        if case.then == FlowDirective::Goto(AFTER.into()) {
                            case.then = after
                                .clone()
                                .map_or(FlowDirective::Exit, FlowDirective::Goto);
                        }
                    }
                }
            }
        }
        for (target, range, at) in jumps {
            if !names.iter().any(|(n, _)| *n == target) {
                let help = expr::closest(&target, names.iter().map(|(n, _)| n.as_str()))
                    .map(|c| format!("did you mean `{c}`?"));
                self.error_help(
                    range,
                    &at,
                    format!("`next` names the step `{target}`, which is not in this list of steps"),
                    help,
                );
            }
        }
        TaskList { tasks }
    }

    /// One step: its task (and those of a switch's inline blocks) pushed onto `tasks`.
    fn step(
        &mut self,
        name: &str,
        body: &Yn,
        at: &str,
        scope: &Scope,
        tasks: &mut Vec<NamedTask>,
        jumps: &mut Vec<(String, std::ops::Range<usize>, String)>,
    ) {
        let Yk::Map(entries) = &body.kind else {
            self.error(
                body.range.clone(),
                at,
                format!(
                    "a step is a mapping such as `assign: [...]`, not {}",
                    body.describe()
                ),
            );
            return;
        };
        let get = |key: &str| field(entries, key);
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !STEP_KEYS.contains(&key) && !matches!(key, "args" | "result" | "retry" | "except") {
                self.unknown_key(k, key, STEP_KEYS, at);
            }
        }
        let kinds: Vec<&str> = STEP_KEYS
            .iter()
            .copied()
            .filter(|k| *k != "next" && get(k).is_some())
            .collect();
        if kinds.len() > 1 {
            self.error(
                body.range.clone(),
                at,
                format!(
                    "a step does one thing, but this one has {}",
                    kinds
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            );
            return;
        }
        for (k, _) in entries {
            let owner = match k.as_str() {
                Some("args" | "result") => "call",
                Some("retry" | "except") => "try",
                _ => continue,
            };
            if kinds.first() != Some(&owner) {
                let key = k.as_str().unwrap_or_default();
                self.error(
                    k.range.clone(),
                    at,
                    format!("`{key}` belongs to a `{owner}` step"),
                );
            }
        }
        let then = match get("next") {
            Some(next) => self.next(next, at, scope, jumps),
            None => FlowDirective::Continue,
        };
        let locals = &scope.locals;
        let mut blocks = Vec::new();
        let (kind, then, output) = match kinds.first().copied() {
            None if get("next").is_some() => (self.set(Kind::Same, "next", at, locals), then, None),
            None => {
                self.error(body.range.clone(), at, "this step does nothing: it needs one of `assign`, `call`, `switch`, `for`, `parallel`, `try`, `raise`, `return`, `steps` or `next`");
                return;
            }
            Some("assign") => (
                self.assign(get("assign").expect("present"), at, scope),
                then,
                None,
            ),
            Some("return") if scope.parallel.is_some() => {
                self.error(
                    body.range.clone(),
                    at,
                    "a branch of a parallel step cannot `return`; assign a shared variable instead",
                );
                return;
            }
            Some("return") => {
                let value = self.tmpl(
                    get("return").expect("present"),
                    &format!("{at}/return"),
                    scope,
                );
                let kind = TaskKind::Set(Template::Expr(Compute::expr(
                    Kind::Return(value),
                    "return",
                    &format!("{at}/return"),
                    locals,
                )));
                (kind, FlowDirective::End, None)
            }
            Some("raise") => {
                let value = self.tmpl(
                    get("raise").expect("present"),
                    &format!("{at}/raise"),
                    scope,
                );
                (raise(value, at, locals), then, None)
            }
            Some("steps") => (
                TaskKind::Do(self.steps(
                    get("steps").expect("present"),
                    &format!("{at}/steps"),
                    scope,
                )),
                then,
                None,
            ),
            Some("call") => match self.call(entries, at, scope) {
                Some((kind, output)) => (kind, then, output),
                None => return,
            },
            Some("for") => {
                let (kind, output) = self.for_loop(
                    get("for").expect("present"),
                    &format!("{at}/for"),
                    scope,
                    None,
                );
                (kind, then, Some(output))
            }
            Some("parallel") => match self.parallel(get("parallel").expect("present"), at, scope) {
                Some((kind, output)) => (kind, then, Some(output)),
                None => return,
            },
            Some("try") => match self.try_step(name, entries, at, scope) {
                Some(kind) => (kind, then, None),
                None => return,
            },
            Some("switch") => {
                let kind;
                (kind, blocks) = self.switch(
                    name,
                    get("switch").expect("present"),
                    at,
                    scope,
                    jumps,
                    &then,
                );
                // The switch's own `next` is where no condition matched goes: in its
                // default case. A switch always takes a case, so its own `then` is moot.
                (kind, FlowDirective::Continue, None)
            }
            Some(other) => {
                self.error(
                    body.range.clone(),
                    at,
                    format!(
                        "`{other}` steps are not supported yet by skein's Cloud Workflows front-end"
                    ),
                );
                return;
            }
        };
        let mut t = task(kind, then);
        t.output = output.map(|as_| Output {
            schema: None,
            as_: Some(Template::Expr(as_)),
        });
        t.timeout = call_timeout(entries).map(|after| {
            TimeoutRef::Inline(Timeout {
                after: Duration::Fixed(after),
            })
        });
        tasks.push(NamedTask {
            name: name.to_string(),
            reference: at.to_string(),
            task: t,
        });
        // A switch's inline blocks come after it.
        tasks.extend(blocks);
    }

    fn set(&self, kind: Kind, text: &str, at: &str, locals: &[String]) -> TaskKind {
        TaskKind::Set(Template::Expr(Compute::expr(kind, text, at, locals)))
    }

    fn next(
        &mut self,
        node: &Yn,
        at: &str,
        scope: &Scope,
        jumps: &mut Vec<(String, std::ops::Range<usize>, String)>,
    ) -> FlowDirective {
        let Some(target) = node.as_str() else {
            self.error(
                node.range.clone(),
                &format!("{at}/next"),
                "`next` is the name of a step, `end`, `break` or `continue`",
            );
            return FlowDirective::Continue;
        };
        match target {
            "end" if scope.parallel.is_some() => {
                self.error(
                    node.range.clone(),
                    &format!("{at}/next"),
                    "a branch of a parallel step cannot end the workflow",
                );
                FlowDirective::Continue
            }
            "end" => FlowDirective::End,
            "break" | "continue" if !scope.in_loop => {
                self.error(
                    node.range.clone(),
                    &format!("{at}/next"),
                    format!("`next: {target}` is only allowed inside a `for` loop"),
                );
                FlowDirective::Continue
            }
            "break" => FlowDirective::Break,
            "continue" => FlowDirective::NextIteration,
            name => {
                jumps.push((name.to_string(), node.range.clone(), format!("{at}/next")));
                FlowDirective::Goto(name.to_string())
            }
        }
    }

    fn assign(&mut self, node: &Yn, at: &str, scope: &Scope) -> TaskKind {
        let path = format!("{at}/assign");
        let Yk::Seq(items) = &node.kind else {
            self.error(
                node.range.clone(),
                &path,
                "`assign` is a list of `- name: value`",
            );
            return TaskKind::Do(TaskList::default());
        };
        let mut assignments = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Yk::Map(e) = &item.kind else {
                self.error(
                    item.range.clone(),
                    &format!("{path}/{i}"),
                    "each assignment is `- name: value`",
                );
                continue;
            };
            for (k, v) in e {
                let text = k.as_str().unwrap_or_default();
                let target = match parse(text).ok().as_ref().and_then(Target::of) {
                    Some(t) => t,
                    None => {
                        self.error(k.range.clone(), &format!("{path}/{i}"), format!("`{text}` is not something to assign to: a name, then fields and indexes (`a.b[\"c\"][0]`)"));
                        continue;
                    }
                };
                if let Err(message) = scope.writable(&target.variable) {
                    self.error(k.range.clone(), &format!("{path}/{i}"), message);
                }
                if scope.locals.contains(&target.variable) {
                    self.error(
                        k.range.clone(),
                        &format!("{path}/{i}"),
                        format!(
                            "`{}` is a loop variable and cannot be assigned",
                            target.variable
                        ),
                    );
                }
                if target.variable == RETURN {
                    self.error(
                        k.range.clone(),
                        &format!("{path}/{i}"),
                        format!("`{RETURN}` is reserved"),
                    );
                }
                let mut target = target;
                for access in &mut target.path {
                    if let crate::compute::Access::Index(node) = access {
                        self.check(node, k.range.start, &format!("{path}/{i}"), scope);
                    }
                }
                let value = self.tmpl(v, &format!("{path}/{i}/{text}"), scope);
                assignments.push((target, value));
            }
        }
        let assign = Compute::variables(
            Kind::Assign(assignments),
            "assign",
            &path,
            &scope.locals,
            self.limits.variables_bytes,
        );
        TaskKind::Set(Template::Expr(assign))
    }

    /// A `call` step: its task, and what binds its result.
    fn call(
        &mut self,
        entries: &[(Yn, Yn)],
        at: &str,
        scope: &Scope,
    ) -> Option<(TaskKind, Option<Expr>)> {
        let get = |key: &str| field(entries, key);
        let call = get("call").expect("a call step");
        let Some(function) = call.as_str() else {
            self.error(
                call.range.clone(),
                &format!("{at}/call"),
                "`call` names a subworkflow or a function",
            );
            return None;
        };
        let result = match get("result") {
            Some(r) => match r.as_str() {
                Some(name) => {
                    if let Err(message) = scope.writable(name) {
                        self.error(r.range.clone(), &format!("{at}/result"), message);
                    }
                    Some(name.to_string())
                }
                None => {
                    self.error(
                        r.range.clone(),
                        &format!("{at}/result"),
                        "`result` is the name of a variable",
                    );
                    None
                }
            },
            None => None,
        };
        let args: Vec<(String, &Yn, &Yn)> = match get("args") {
            Some(a) => match &a.kind {
                Yk::Map(e) => e
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), k, v))
                    .collect(),
                _ => {
                    self.error(
                        a.range.clone(),
                        &format!("{at}/args"),
                        "`args` is a mapping of argument names to values",
                    );
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let args_at = format!("{at}/args");
        let mut given = Vec::new();
        for (name, _, v) in &args {
            given.push((
                name.clone(),
                self.tmpl(v, &format!("{args_at}/{name}"), scope),
            ));
        }
        let limit = self.limits.variables_bytes;
        let bind = |from| {
            Compute::variables(
                Kind::Bind {
                    result: result.clone(),
                    from,
                },
                "result",
                &format!("{at}/result"),
                &scope.locals,
                limit,
            )
        };
        if let Some(sub) = self.subs.get(function) {
            let params = sub.params.clone();
            for (name, key, _) in &args {
                if !params.iter().any(|(p, _)| p == name) {
                    let help = expr::closest(name, params.iter().map(|(p, _)| p.as_str()))
                        .map(|c| format!("did you mean `{c}`?"));
                    self.error_help(
                        key.range.clone(),
                        &args_at,
                        format!("the subworkflow `{function}` has no parameter `{name}`"),
                        help,
                    );
                }
            }
            for (p, default) in &params {
                if default.is_none() && !args.iter().any(|(n, _, _)| n == p) {
                    self.error(
                        call.range.clone(),
                        &format!("{at}/call"),
                        format!("the call of `{function}` is missing its argument `{p}`"),
                    );
                }
            }
            let defaults = params
                .into_iter()
                .filter_map(|(p, d)| Some((p, d?)))
                .collect();
            let with = Template::Expr(Compute::variables(
                Kind::Arguments { given, defaults },
                "args",
                &args_at,
                &scope.locals,
                limit,
            ));
            let kind = TaskKind::Call(Box::new(Call::Function(FunctionCall {
                name: function.to_string(),
                target: CallTarget::Use(function.to_string()),
                with: Some(with),
            })));
            return Some((kind, Some(bind(Outcome::Subworkflow))));
        }
        let arg = |name: &str| {
            given
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
        };
        let value = |t: Tmpl, what: &str| {
            Template::Expr(Compute::expr(
                Kind::Value(t),
                what,
                &format!("{args_at}/{what}"),
                &scope.locals,
            ))
        };
        let allowed = |list: &[&str], me: &mut Self| {
            for (name, key, _) in &args {
                if !list.contains(&name.as_str()) {
                    let help = expr::closest(name, list.iter().copied())
                        .map(|c| format!("did you mean `{c}`?"));
                    me.error_help(
                        key.range.clone(),
                        &args_at,
                        format!("`{function}` has no argument `{name}`"),
                        help,
                    );
                }
            }
        };
        if HTTP.contains(&function) {
            allowed(
                &[
                    "url",
                    "method",
                    "headers",
                    "body",
                    "query",
                    "timeout",
                    "auth",
                    "private_service_name",
                ],
                self,
            );
            let Some(url) = arg("url") else {
                self.error(
                    call.range.clone(),
                    &format!("{at}/call"),
                    format!("`{function}` needs the argument `url`"),
                );
                return None;
            };
            let method = match function.strip_prefix("http.").unwrap_or("get") {
                "request" => match args
                    .iter()
                    .find(|(name, _, _)| name == "method")
                    .and_then(|(_, _, v)| v.as_str())
                {
                    Some(m) => m.to_uppercase(),
                    None => {
                        self.error(
                            call.range.clone(),
                            &format!("{at}/call"),
                            "`http.request` needs the argument `method`, a string",
                        );
                        return None;
                    }
                },
                m => m.to_uppercase(),
            };
            let authentication = match args.iter().find(|(name, _, _)| name == "auth") {
                Some((_, _, node)) => {
                    let google = self.auth(node, &format!("{args_at}/auth"), scope)?;
                    Some(AuthRef::Inline(Box::new(AuthPolicy::Google(google))))
                }
                None => None,
            };
            let kind = TaskKind::Call(Box::new(Call::Http(HttpCall {
                method,
                endpoint: Endpoint {
                    uri: Uri::Expr(Compute::expr(
                        Kind::Value(url),
                        "url",
                        &format!("{args_at}/url"),
                        &scope.locals,
                    )),
                    authentication,
                },
                headers: arg("headers").map(|t| value(t, "headers")),
                body: arg("body").map(|t| value(t, "body")),
                query: arg("query").map(|t| value(t, "query")),
                output: HttpOutput::Response,
                redirect: false,
            })));
            return Some((kind, Some(bind(Outcome::Http))));
        }
        match function {
            "sys.log" => {
                allowed(&["text", "json", "data", "severity", "timeout"], self);
                let mut data = Vec::new();
                for name in ["severity", "text", "json", "data"] {
                    if let Some(t) = arg(name) {
                        data.push((name.to_string(), t));
                    }
                }
                let kind = TaskKind::Emit(Emit {
                    event: vec![
                        (
                            "source".into(),
                            Template::Const(Value::String("sys.log".into())),
                        ),
                        (
                            "type".into(),
                            Template::Const(Value::String(crate::LOG_EVENT.into())),
                        ),
                        ("data".into(), value(Tmpl::Map(data), "log")),
                    ],
                });
                Some((kind, Some(bind(Outcome::Nothing))))
            }
            "sys.sleep_until" => {
                allowed(&["time"], self);
                let Some(time) = arg("time") else {
                    self.error(
                        call.range.clone(),
                        &format!("{at}/call"),
                        "`sys.sleep_until` needs the argument `time`",
                    );
                    return None;
                };
                let kind = TaskKind::Wait(Duration::Expr(Compute::expr(
                    Kind::Until(time),
                    "time",
                    &format!("{args_at}/time"),
                    &scope.locals,
                )));
                Some((kind, Some(bind(Outcome::Nothing))))
            }
            "sys.sleep" => {
                allowed(&["seconds"], self);
                let Some(seconds) = arg("seconds") else {
                    self.error(
                        call.range.clone(),
                        &format!("{at}/call"),
                        "`sys.sleep` needs the argument `seconds`",
                    );
                    return None;
                };
                let kind = TaskKind::Wait(Duration::Expr(Compute::expr(
                    Kind::Seconds(seconds),
                    "seconds",
                    &format!("{args_at}/seconds"),
                    &scope.locals,
                )));
                Some((kind, Some(bind(Outcome::Nothing))))
            }
            "events.create_callback_endpoint" => {
                allowed(&["http_callback_method"], self);
                if let Some((_, _, node)) =
                    args.iter().find(|(n, _, _)| n == "http_callback_method")
                    && !node.as_str().is_some_and(|m| CALLBACK_METHODS.contains(&m))
                {
                    self.error(
                        node.range.clone(),
                        &format!("{args_at}/http_callback_method"),
                        format!(
                            "`http_callback_method` is one of {}",
                            CALLBACK_METHODS.join(", ")
                        ),
                    );
                }
                let compute = Compute::variables(
                    Kind::CallbackEndpoint {
                        result: result.clone(),
                    },
                    function,
                    &format!("{at}/call"),
                    &scope.locals,
                    limit,
                );
                Some((TaskKind::Set(Template::Expr(compute)), None))
            }
            "events.await_callback" => {
                allowed(&["callback", "timeout"], self);
                let Some(callback) = arg("callback") else {
                    self.error(
                        call.range.clone(),
                        &format!("{at}/call"),
                        "`events.await_callback` needs the argument `callback`, what `events.create_callback_endpoint` returned",
                    );
                    return None;
                };
                let filter = EventFilter {
                    with: vec![
                        (
                            "type".into(),
                            Template::Const(Value::String(crate::CALLBACK_EVENT.into())),
                        ),
                        (
                            "subject".into(),
                            Template::Expr(Compute::expr(
                                Kind::IsCallback(callback),
                                "callback",
                                &format!("{args_at}/callback"),
                                &scope.locals,
                            )),
                        ),
                    ],
                    correlate: IndexMap::new(),
                };
                let kind = TaskKind::Listen(Box::new(Listen {
                    to: ConsumptionStrategy::One(filter),
                    read: ListenRead::Data,
                    foreach: None,
                }));
                Some((kind, Some(bind(Outcome::Callback))))
            }
            _ if function.starts_with("googleapis.") => {
                let Some(connector) = connectors::connector(function) else {
                    // Any connector parses; one skein does not run faults when it is
                    // reached, and validation says so now.
                    self.diagnostics.push(Diagnostic {
                        severity: Severity::Warning,
                        message: format!(
                            "the connector `{function}` is not available in skein: this step will fail when it runs"
                        ),
                        range: call.range.clone(),
                        path: format!("{at}/call"),
                        help: expr::closest(function, connectors::CONNECTORS.iter().map(|c| c.name))
                            .map(|c| format!("skein runs `{c}`, among others (docs/cloud-workflows.md)")),
                    });
                    let message = Tmpl::Const(Value::String(format!(
                        "the connector `{function}` is not available in skein"
                    )));
                    let value = Tmpl::Map(vec![
                        ("message".into(), message),
                        (
                            "tags".into(),
                            Tmpl::Const(serde_json::json!(["SystemError"])),
                        ),
                    ]);
                    return Some((raise(value, at, &scope.locals), None));
                };
                for required in connector.required {
                    if !args.iter().any(|(n, _, _)| n == required) {
                        self.error(
                            call.range.clone(),
                            &format!("{at}/call"),
                            format!("`{function}` needs the argument `{required}`"),
                        );
                    }
                }
                let params = args
                    .iter()
                    .find(|(n, _, _)| n == "connector_params")
                    .map(|(_, _, node)| {
                        self.connector_params(node, &format!("{args_at}/connector_params"))
                    })
                    .unwrap_or_default();
                let (base, emulator) = connector.service.base();
                let url = Compute::expr(
                    Kind::ConnectorUrl {
                        connector,
                        base: base.clone(),
                        args: given.clone(),
                    },
                    function,
                    &args_at,
                    &scope.locals,
                );
                let body = match connector.body {
                    connectors::Body::Arg(name) => arg(name).map(|t| value(t, "body")),
                    connectors::Body::ExecutionArgument => Some(Template::Expr(Compute::expr(
                        Kind::ExecutionArgument(arg("argument")),
                        "argument",
                        &format!("{args_at}/argument"),
                        &scope.locals,
                    ))),
                    connectors::Body::None => None,
                };
                let authentication = (!emulator).then(|| {
                    AuthRef::Inline(Box::new(AuthPolicy::Google(GoogleAuth::OAuth2 {
                        scopes: Vec::new(),
                    })))
                });
                let http = |method: &str, uri: Expr, body: Option<Template>| {
                    TaskKind::Call(Box::new(Call::Http(HttpCall {
                        method: method.to_string(),
                        endpoint: Endpoint {
                            uri: Uri::Expr(uri),
                            authentication: authentication.clone(),
                        },
                        headers: None,
                        body,
                        query: None,
                        output: HttpOutput::Response,
                        redirect: false,
                    })))
                };
                let start = http(connector.method, url, body);
                let Some(poll) = connector.poll.filter(|_| !params.skip_polling) else {
                    return Some((start, Some(bind(Outcome::Connector(connector.result)))));
                };
                // Start, then check, wait and poll until the work has ended, then finish.
                let op = |step: OpStep, what: &str| {
                    Compute::expr(
                        Kind::Operation(step),
                        what,
                        &format!("{at}/call"),
                        &scope.locals,
                    )
                };
                let named = |name: &str, mut t: Task, output: Option<Expr>| {
                    t.output = output.map(|as_| Output {
                        schema: None,
                        as_: Some(Template::Expr(as_)),
                    });
                    NamedTask {
                        name: name.to_string(),
                        reference: format!("{at}/call"),
                        task: t,
                    }
                };
                let tasks = vec![
                    named(
                        "start",
                        task(start, FlowDirective::Continue),
                        Some(op(OpStep::Started, "start")),
                    ),
                    named(
                        "check",
                        task(
                            TaskKind::Switch(Switch {
                                cases: vec![
                                    SwitchCase {
                                        name: "ended".into(),
                                        when: Some(op(OpStep::Ended(poll), "ended")),
                                        then: FlowDirective::Goto("finish".into()),
                                    },
                                    SwitchCase {
                                        name: "running".into(),
                                        when: None,
                                        then: FlowDirective::Continue,
                                    },
                                ],
                            }),
                            FlowDirective::Continue,
                        ),
                        None,
                    ),
                    named(
                        "wait",
                        task(
                            TaskKind::Wait(Duration::Expr(op(
                                OpStep::Delay {
                                    initial: params.initial_delay,
                                    multiplier: params.multiplier,
                                    max: params.max_delay,
                                },
                                "polling_policy",
                            ))),
                            FlowDirective::Continue,
                        ),
                        None,
                    ),
                    named(
                        "poll",
                        task(
                            http("GET", op(OpStep::PollUrl(poll, base), "poll"), None),
                            FlowDirective::Goto("check".into()),
                        ),
                        Some(op(OpStep::Polled, "poll")),
                    ),
                    named(
                        "finish",
                        task(
                            TaskKind::Set(Template::Expr(op(
                                OpStep::Finish {
                                    poll,
                                    result: result.clone(),
                                },
                                "result",
                            ))),
                            FlowDirective::Continue,
                        ),
                        None,
                    ),
                ];
                Some((TaskKind::Do(TaskList { tasks }), None))
            }
            _ if let Some(library) = stdlib::function(function) => {
                allowed(library.params, self);
                // The arguments in order; an optional one may be left out only if
                // every one after it is too.
                let mut ordered = Vec::new();
                for (i, param) in library.params.iter().enumerate() {
                    match arg(param) {
                        Some(t) if ordered.len() == i => ordered.push(t),
                        Some(_) => {
                            let missing = library.params[ordered.len()];
                            self.error(
                                call.range.clone(),
                                &format!("{at}/args"),
                                format!("`{function}` is given `{param}` but not `{missing}`, which comes before it"),
                            );
                            return None;
                        }
                        None if i < library.min => {
                            self.error(
                                call.range.clone(),
                                &format!("{at}/call"),
                                format!("`{function}` needs the argument `{param}`"),
                            );
                            return None;
                        }
                        None => {}
                    }
                }
                let compute = Compute::variables(
                    Kind::Library {
                        function: library.name,
                        args: ordered,
                        result: result.clone(),
                    },
                    function,
                    &format!("{at}/call"),
                    &scope.locals,
                    limit,
                );
                Some((TaskKind::Set(Template::Expr(compute)), None))
            }
            _ => {
                let message = if function.starts_with("events.") {
                    format!(
                        "`{function}` is not a function of the `events` module: it has `create_callback_endpoint` and `await_callback`"
                    )
                } else {
                    format!(
                        "`{function}` is neither a subworkflow of this document nor a function of the standard library"
                    )
                };
                let names = self
                    .subs
                    .keys()
                    .map(String::as_str)
                    .chain(HTTP.iter().copied())
                    .chain(["sys.log", "sys.sleep", "sys.sleep_until"])
                    .chain(["events.create_callback_endpoint", "events.await_callback"])
                    .chain(stdlib::FUNCTIONS.iter().map(|f| f.name));
                let help = expr::closest(function, names).map(|c| format!("did you mean `{c}`?"));
                self.error_help(call.range.clone(), &format!("{at}/call"), message, help);
                None
            }
        }
    }

    /// A connector call's `connector_params`: `timeout` (read by the step's timeout),
    /// `skip_polling` and `polling_policy`, each a literal.
    fn connector_params(&mut self, node: &Yn, path: &str) -> ConnectorParams {
        let mut params = ConnectorParams::default();
        let Yk::Map(entries) = &node.kind else {
            self.error(
                node.range.clone(),
                path,
                "`connector_params` is a mapping (`timeout`, `polling_policy`, `skip_polling`)",
            );
            return params;
        };
        let number = |node: &Yn| match node.kind {
            Yk::Int(i) => Some(i as f64),
            Yk::Float(f) => Some(f),
            _ => None,
        };
        for (key, value) in entries {
            let name = key.as_str().unwrap_or_default();
            let at = format!("{path}/{name}");
            match name {
                "timeout" => {
                    if !number(value).is_some_and(|n| n > 0.0) {
                        self.error(value.range.clone(), &at, "`timeout` is a positive number of seconds");
                    }
                }
                "skip_polling" => match value.kind {
                    Yk::Bool(b) => params.skip_polling = b,
                    _ => self.error(value.range.clone(), &at, "`skip_polling` is true or false"),
                },
                "polling_policy" => {
                    let Yk::Map(policy) = &value.kind else {
                        self.error(
                            value.range.clone(),
                            &at,
                            "`polling_policy` is a mapping of `initial_delay`, `multiplier` and `max_delay`",
                        );
                        continue;
                    };
                    for (k, v) in policy {
                        let field = k.as_str().unwrap_or_default();
                        let slot = match field {
                            "initial_delay" => &mut params.initial_delay,
                            "multiplier" => &mut params.multiplier,
                            "max_delay" => &mut params.max_delay,
                            other => {
                                self.error(
                                    k.range.clone(),
                                    &at,
                                    format!("`polling_policy` has no `{other}`: it has `initial_delay`, `multiplier` and `max_delay`"),
                                );
                                continue;
                            }
                        };
                        match number(v) {
                            Some(n) if n > 0.0 => *slot = n,
                            _ => self.error(
                                v.range.clone(),
                                &format!("{at}/{field}"),
                                format!("`{field}` is a positive number"),
                            ),
                        }
                    }
                }
                // Accepted and left to Google's defaults.
                "scopes" | "url" => {}
                other => self.error(
                    key.range.clone(),
                    path,
                    format!("`connector_params` has no `{other}`: it has `timeout`, `polling_policy` and `skip_polling`"),
                ),
            }
        }
        params
    }

    /// A `for` loop at `path`; with `fan`, the iterations of a parallel step.
    fn for_loop(
        &mut self,
        node: &Yn,
        path: &str,
        scope: &Scope,
        fan: Option<Fan>,
    ) -> (TaskKind, Expr) {
        let path = path.to_string();
        let restrict = match &fan {
            None => Compute::expr(Kind::Restrict, "for", &path, &scope.locals),
            Some(fan) => fan.join.clone(),
        };
        let Yk::Map(entries) = &node.kind else {
            self.error(
                node.range.clone(),
                &path,
                "`for` is a mapping with `value`, `in` or `range`, and `steps`",
            );
            return (TaskKind::Do(TaskList::default()), restrict);
        };
        let get = |key: &str| field(entries, key);
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !["value", "index", "in", "range", "steps"].contains(&key) {
                self.unknown_key(k, key, &["value", "index", "in", "range", "steps"], &path);
            }
        }
        let name = |me: &mut Self, key: &str| -> Option<String> {
            let n = get(key)?;
            match n.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    me.error(
                        n.range.clone(),
                        &format!("{path}/{key}"),
                        format!("`{key}` is the name of a variable"),
                    );
                    None
                }
            }
        };
        let value_name = name(self, "value");
        let index_name = name(self, "index");
        if value_name.is_none() && index_name.is_none() {
            self.error(
                node.range.clone(),
                &path,
                "a `for` loop needs `value` (or `index`): the name of its variable",
            );
        }
        let in_ = match (get("in"), get("range")) {
            (Some(list), None) => Kind::Value(self.tmpl(list, &format!("{path}/in"), scope)),
            (None, Some(range)) => match &range.kind {
                Yk::Seq(bounds) if bounds.len() == 2 => Kind::Range(
                    self.tmpl(&bounds[0], &format!("{path}/range/0"), scope),
                    self.tmpl(&bounds[1], &format!("{path}/range/1"), scope),
                ),
                _ => {
                    self.error(
                        range.range.clone(),
                        &format!("{path}/range"),
                        "`range` is a list of two integers, both included: [1, 9]",
                    );
                    Kind::Same
                }
            },
            _ => {
                self.error(
                    node.range.clone(),
                    &path,
                    "a `for` loop needs exactly one of `in` and `range`",
                );
                Kind::Same
            }
        };
        let mut inner = match &fan {
            None => scope.clone(),
            Some(fan) => fan.scope.clone(),
        };
        inner.in_loop = fan.is_none();
        let each = value_name.clone().unwrap_or_else(|| "__value".into());
        let at_name = index_name.clone().unwrap_or_else(|| "__index".into());
        inner.locals.extend([each.clone(), at_name.clone()]);
        inner.known.extend([each.clone(), at_name.clone()]);
        let steps = match get("steps") {
            Some(steps) => self.steps(steps, &format!("{path}/steps"), &inner),
            None => {
                self.error(node.range.clone(), &path, "a `for` loop needs `steps`");
                TaskList::default()
            }
        };
        let kind = TaskKind::For(For {
            each,
            in_: Compute::expr(in_, "for", &path, &scope.locals),
            at: at_name,
            concurrency: match &fan {
                None => Concurrency::Fixed(std::num::NonZeroU32::MIN),
                Some(fan) => fan.concurrency.clone(),
            },
            while_: None,
            do_: steps,
            isolated: fan.is_some(),
            continue_all: fan.is_some(),
        });
        (kind, restrict)
    }

    /// A `parallel` step: `branches` or a `for`, as a loop whose iterations start from
    /// the same variables, at most `concurrency_limit` at once, every one run to its
    /// end; then the `shared` variables are joined.
    fn parallel(&mut self, node: &Yn, at: &str, scope: &Scope) -> Option<(TaskKind, Expr)> {
        let path = format!("{at}/parallel");
        let Yk::Map(entries) = &node.kind else {
            self.error(
                node.range.clone(),
                &path,
                "`parallel` is a mapping with `branches` or `for`",
            );
            return None;
        };
        let keys = [
            "branches",
            "for",
            "shared",
            "concurrency_limit",
            "exception_policy",
        ];
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !keys.contains(&key) {
                self.unknown_key(k, key, &keys, &path);
            }
        }
        if let Some(policy) = field(entries, "exception_policy")
            && policy.as_str() != Some("continueAll")
        {
            self.error(
                policy.range.clone(),
                &format!("{path}/exception_policy"),
                "`continueAll` is the only exception policy",
            );
        }
        // The variables of the scope around the step: its parameters and whatever the
        // subworkflow assigns outside this step; and those assigned before it.
        let (mut outside, mut before) = (BTreeSet::new(), BTreeSet::new());
        if let Some(sub) = &scope.sub {
            collect_assigned(&sub.0, &mut outside, &|r| *r != node.range);
            collect_assigned(&sub.0, &mut before, &|r| r.start < node.range.start);
            outside.extend(sub.1.iter().cloned());
            before.extend(sub.1.iter().cloned());
        }
        if let Some(p) = &scope.parallel {
            outside.extend(p.outside.iter().cloned());
            before.extend(p.outside.iter().cloned());
        }
        let mut shared = Vec::new();
        if let Some(list) = field(entries, "shared") {
            let Yk::Seq(items) = &list.kind else {
                self.error(
                    list.range.clone(),
                    &format!("{path}/shared"),
                    "`shared` is a list of variable names",
                );
                return None;
            };
            for item in items {
                match item.as_str() {
                    Some(name) if before.contains(name) => shared.push(name.to_string()),
                    Some(name) => self.error(
                        item.range.clone(),
                        &format!("{path}/shared"),
                        format!(
                            "the shared variable `{name}` must be assigned before the parallel step"
                        ),
                    ),
                    None => self.error(
                        item.range.clone(),
                        &format!("{path}/shared"),
                        "`shared` is a list of variable names",
                    ),
                }
            }
        }
        let concurrency = match field(entries, "concurrency_limit") {
            // Google's: at most so many at once, the others wait their turn.
            None => Concurrency::Fixed(self.limits.concurrency),
            Some(n) => match &n.kind {
                Yk::Int(i) => match u32::try_from(*i).ok().and_then(std::num::NonZeroU32::new) {
                    Some(n) => Concurrency::Fixed(n),
                    None => {
                        self.error(
                            n.range.clone(),
                            &format!("{path}/concurrency_limit"),
                            "`concurrency_limit` is a positive integer",
                        );
                        return None;
                    }
                },
                _ => Concurrency::Expr(Compute::expr(
                    Kind::Value(self.tmpl(n, &format!("{path}/concurrency_limit"), scope)),
                    "concurrency_limit",
                    &format!("{path}/concurrency_limit"),
                    &scope.locals,
                )),
            },
        };
        let mut inner = scope.clone();
        inner.parallel = Some(Rc::new(Parallel {
            outside,
            shared: shared.clone(),
        }));
        let join = Compute::expr(Kind::Join(shared), "shared", &path, &scope.locals);
        let fan = Fan {
            concurrency,
            scope: inner,
            join,
        };
        match (field(entries, "branches"), field(entries, "for")) {
            (Some(branches), None) => self.branches(branches, &path, fan),
            (None, Some(for_)) => {
                Some(self.for_loop(for_, &format!("{path}/for"), scope, Some(fan)))
            }
            _ => {
                self.error(
                    node.range.clone(),
                    &path,
                    "a parallel step has exactly one of `branches` and `for`",
                );
                None
            }
        }
    }

    /// A parallel step's `branches`: a loop over their indexes whose body jumps to
    /// the branch of its index.
    fn branches(&mut self, node: &Yn, path: &str, fan: Fan) -> Option<(TaskKind, Expr)> {
        let at = format!("{path}/branches");
        let Yk::Seq(items) = &node.kind else {
            self.error(
                node.range.clone(),
                &at,
                "`branches` is a list of `- name: {steps: [...]}`",
            );
            return None;
        };
        let mut cases = Vec::new();
        let mut tasks = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let (name, body) = match &item.kind {
                Yk::Map(e) if e.len() == 1 => {
                    (e[0].0.as_str().unwrap_or_default().to_string(), &e[0].1)
                }
                _ => {
                    self.error(
                        item.range.clone(),
                        &format!("{at}/{i}"),
                        "a branch is `- name: {steps: [...]}`",
                    );
                    continue;
                }
            };
            let branch_at = format!("{at}/{i}/{name}");
            let steps = match &body.kind {
                Yk::Map(e) if e.len() == 1 && e[0].0.as_str() == Some("steps") => {
                    self.steps(&e[0].1, &format!("{branch_at}/steps"), &fan.scope)
                }
                _ => {
                    self.error(
                        body.range.clone(),
                        &branch_at,
                        "a branch is a mapping with `steps`",
                    );
                    continue;
                }
            };
            if tasks.iter().any(|t: &NamedTask| t.name == name) {
                self.error(
                    item.range.clone(),
                    &branch_at,
                    format!("two branches are called `{name}`"),
                );
            }
            cases.push(SwitchCase {
                name: name.clone(),
                when: Some(Compute::expr(
                    Kind::Branch(i),
                    name.clone(),
                    &branch_at,
                    &[],
                )),
                then: FlowDirective::Goto(name.clone()),
            });
            tasks.push(NamedTask {
                name,
                reference: branch_at,
                task: task(TaskKind::Do(steps), FlowDirective::Exit),
            });
        }
        if tasks.len() < 2 {
            self.error(
                node.range.clone(),
                &at,
                "a parallel step needs at least two branches",
            );
            return None;
        }
        let count = tasks.len();
        tasks.insert(
            0,
            NamedTask {
                name: "\0branch".into(),
                reference: at.clone(),
                task: task(TaskKind::Switch(Switch { cases }), FlowDirective::Continue),
            },
        );
        let kind = TaskKind::For(For {
            each: BRANCH.into(),
            in_: Compute::expr(
                Kind::Value(Tmpl::Const(Value::Array(
                    (0..count).map(Value::from).collect(),
                ))),
                "branches",
                &at,
                &[],
            ),
            at: "\0at".into(),
            concurrency: fan.concurrency,
            while_: None,
            do_: TaskList { tasks },
            isolated: true,
            continue_all: true,
        });
        Some((kind, fan.join))
    }

    fn switch(
        &mut self,
        name: &str,
        node: &Yn,
        at: &str,
        scope: &Scope,
        jumps: &mut Vec<(String, std::ops::Range<usize>, String)>,
        own_next: &FlowDirective,
    ) -> (TaskKind, Vec<NamedTask>) {
        let path = format!("{at}/switch");
        let Yk::Seq(items) = &node.kind else {
            self.error(
                node.range.clone(),
                &path,
                "`switch` is a list of conditions",
            );
            return (TaskKind::Do(TaskList::default()), Vec::new());
        };
        let (mut cases, mut blocks) = (Vec::new(), Vec::new());
        for (i, item) in items.iter().enumerate() {
            let at_i = format!("{path}/{i}");
            let Yk::Map(entries) = &item.kind else {
                self.error(
                    item.range.clone(),
                    &at_i,
                    "a switch case is a mapping with `condition`",
                );
                continue;
            };
            let get = |key: &str| field(entries, key);
            let known = [
                "condition",
                "next",
                "steps",
                "assign",
                "return",
                "raise",
                "call",
                "args",
                "result",
            ];
            for (k, _) in entries {
                let key = k.as_str().unwrap_or_default();
                if !known.contains(&key) {
                    self.unknown_key(k, key, &known, &at_i);
                }
            }
            let Some(condition) = get("condition") else {
                self.error(
                    item.range.clone(),
                    &at_i,
                    "a switch case needs a `condition`",
                );
                continue;
            };
            let when = match self.tmpl(condition, &format!("{at_i}/condition"), scope) {
                Tmpl::Expr(node) => Compute::expr(
                    Kind::Condition(node),
                    text_of(condition),
                    &format!("{at_i}/condition"),
                    &scope.locals,
                ),
                Tmpl::Const(Value::Bool(b)) => Compute::expr(
                    Kind::Value(Tmpl::Const(Value::Bool(b))),
                    b.to_string(),
                    &format!("{at_i}/condition"),
                    &scope.locals,
                ),
                _ => {
                    self.error(
                        condition.range.clone(),
                        &format!("{at_i}/condition"),
                        "a condition is an expression, `${...}`, or a boolean",
                    );
                    continue;
                }
            };
            let inline: Vec<&(Yn, Yn)> = entries
                .iter()
                .filter(|(k, _)| {
                    matches!(
                        k.as_str(),
                        Some("steps" | "assign" | "return" | "raise" | "call")
                    )
                })
                .collect();
            let next = get("next").map(|n| self.next(n, &at_i, scope, jumps));
            let then = if inline.is_empty() {
                match next {
                    Some(next) => next,
                    None => {
                        self.error(item.range.clone(), &at_i, "a switch case needs `next`, or steps to run (`steps`, `assign`, `return`, `raise`)");
                        continue;
                    }
                }
            } else {
                // The inline part runs as a task of its own after the switch, then goes on.
                let block = format!("{name}.condition{i}");
                let body = Yn {
                    kind: Yk::Map(
                        entries
                            .iter()
                            .filter(|(k, _)| k.as_str() != Some("condition"))
                            .cloned()
                            .collect(),
                    ),
                    range: item.range.clone(),
                };
                let mut sub = Vec::new();
                let mut block_jumps = Vec::new();
                self.step(&block, &body, &at_i, scope, &mut sub, &mut block_jumps);
                jumps.extend(block_jumps);
                for mut t in sub {
                    if t.task.then == FlowDirective::Continue {
                        t.task.then = FlowDirective::Goto(AFTER.into());
                    }
                    blocks.push(t);
                }
                FlowDirective::Goto(block)
            };
            cases.push(SwitchCase {
                name: format!("condition{i}"),
                when: Some(when),
                then,
            });
        }
        cases.push(SwitchCase {
            name: "default".into(),
            when: None,
            then: match own_next {
                FlowDirective::Continue => FlowDirective::Goto(AFTER.into()),
                other => other.clone(),
            },
        });
        (TaskKind::Switch(Switch { cases }), blocks)
    }

    /// An HTTP call's `auth`: `{type: OIDC, audience}` or `{type: OAuth2, scopes}`, a
    /// token of the server's own Google identity.
    fn auth(&mut self, node: &Yn, path: &str, scope: &Scope) -> Option<GoogleAuth> {
        let Yk::Map(entries) = &node.kind else {
            self.error(
                node.range.clone(),
                path,
                "`auth` is a mapping such as `{type: OIDC}`",
            );
            return None;
        };
        let keys = ["type", "audience", "scopes", "scope"];
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !keys.contains(&key) {
                self.unknown_key(k, key, &keys, path);
            }
        }
        match field(entries, "type").and_then(Yn::as_str) {
            Some("OIDC") => {
                let audience = field(entries, "audience").map(|a| {
                    let t = self.tmpl(a, &format!("{path}/audience"), scope);
                    Template::Expr(Compute::expr(
                        Kind::Value(t),
                        "audience",
                        &format!("{path}/audience"),
                        &scope.locals,
                    ))
                });
                Some(GoogleAuth::Oidc { audience })
            }
            Some("OAuth2") => {
                let scopes = match field(entries, "scopes")
                    .or(field(entries, "scope"))
                    .map(|s| &s.kind)
                {
                    None => Vec::new(),
                    Some(Yk::Str(s)) => s
                        .split([' ', ','])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    Some(Yk::Seq(items)) => items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect(),
                    Some(_) => {
                        self.error(
                            node.range.clone(),
                            &format!("{path}/scopes"),
                            "`scopes` is a list of scope URLs, or one string",
                        );
                        return None;
                    }
                };
                Some(GoogleAuth::OAuth2 { scopes })
            }
            _ => {
                self.error(
                    node.range.clone(),
                    &format!("{path}/type"),
                    "`auth.type` is `OIDC` or `OAuth2`",
                );
                None
            }
        }
    }

    /// A `try` step with its `retry` and `except`.
    fn try_step(
        &mut self,
        name: &str,
        entries: &[(Yn, Yn)],
        at: &str,
        scope: &Scope,
    ) -> Option<TaskKind> {
        let body = field(entries, "try").expect("a try step");
        let try_at = format!("{at}/try");
        let try_ = match &body.kind {
            Yk::Map(e) if e.len() == 1 && e[0].0.as_str() == Some("steps") => {
                self.steps(&e[0].1, &format!("{try_at}/steps"), scope)
            }
            // One step's body, run as a list of that one step.
            Yk::Map(_) => {
                let key = Yn {
                    kind: Yk::Str(name.to_string()),
                    range: body.range.clone(),
                };
                let list = Yn {
                    range: body.range.clone(),
                    kind: Yk::Seq(vec![Yn {
                        range: body.range.clone(),
                        kind: Yk::Map(vec![(key, body.clone())]),
                    }]),
                };
                self.steps(&list, &try_at, scope)
            }
            _ => {
                self.error(
                    body.range.clone(),
                    &try_at,
                    "`try` is a step's body, or `steps:` with a list of steps",
                );
                return None;
            }
        };
        let (retry_node, except_node) = (field(entries, "retry"), field(entries, "except"));
        if retry_node.is_none() && except_node.is_none() {
            self.error(
                body.range.clone(),
                &try_at,
                "a `try` needs `retry`, `except` or both",
            );
            return None;
        }
        let retry = match retry_node {
            Some(r) => Some(self.retry(r, at)?),
            None => None,
        };
        let except = match except_node {
            Some(e) => Some(self.except(name, e, at, scope)?),
            None => None,
        };
        Some(TaskKind::Try(Box::new(Try {
            try_,
            catch: Catch {
                errors: None,
                as_: ERROR.into(),
                when: None,
                except_when: None,
                retry: retry.map(RetryRef::Inline),
                do_: except,
            },
            catch_from_fault: true,
        })))
    }

    /// A `retry`: one of the library's policies (`${http.default_retry}`), or a
    /// predicate, `max_retries` and a `backoff`.
    fn retry(&mut self, node: &Yn, at: &str) -> Option<RetryPolicy> {
        let path = format!("{at}/retry");
        let (predicate, max_retries, backoff) = match &node.kind {
            Yk::Str(_) => match named(node) {
                Some("http.default_retry") => {
                    (Kind::Predicate(Predicate::Default), 5, DEFAULT_BACKOFF)
                }
                Some("http.default_retry_non_idempotent") => (
                    Kind::Predicate(Predicate::NonIdempotent),
                    5,
                    DEFAULT_BACKOFF,
                ),
                other => {
                    let help = other
                        .and_then(|n| {
                            expr::closest(
                                n,
                                ["http.default_retry", "http.default_retry_non_idempotent"],
                            )
                        })
                        .map(|c| format!("did you mean `${{{c}}}`?"));
                    self.error_help(
                        node.range.clone(),
                        &path,
                        "`retry` is `${http.default_retry}`, `${http.default_retry_non_idempotent}`, \
                         or a mapping with `predicate`, `max_retries` and `backoff`",
                        help,
                    );
                    return None;
                }
            },
            Yk::Map(entries) => {
                let keys = ["predicate", "max_retries", "backoff"];
                for (k, _) in entries {
                    let key = k.as_str().unwrap_or_default();
                    if !keys.contains(&key) {
                        self.unknown_key(k, key, &keys, &path);
                    }
                }
                let predicate = self.predicate(field(entries, "predicate"), node, &path)?;
                let max_retries = match field(entries, "max_retries").map(|n| &n.kind) {
                    Some(Yk::Int(n)) if *n >= 0 => u32::try_from(*n).unwrap_or(u32::MAX),
                    _ => {
                        self.error(
                            node.range.clone(),
                            &format!("{path}/max_retries"),
                            "a retry policy needs `max_retries`, an integer of zero or more",
                        );
                        return None;
                    }
                };
                let backoff = match field(entries, "backoff") {
                    None => DEFAULT_BACKOFF,
                    Some(b) if named(b) == Some("retry.default_backoff") => DEFAULT_BACKOFF,
                    Some(b) => self.backoff(b, &format!("{path}/backoff"))?,
                };
                (predicate, max_retries, backoff)
            }
            _ => {
                self.error(
                    node.range.clone(),
                    &path,
                    "`retry` is a policy such as `${http.default_retry}`, or a mapping",
                );
                return None;
            }
        };
        let seconds = |s: f64| Duration::Fixed(std::time::Duration::from_secs_f64(s));
        Some(RetryPolicy {
            when: Some(Compute::expr(
                predicate,
                "predicate",
                &format!("{path}/predicate"),
                &[],
            )),
            except_when: None,
            delay: Some(seconds(backoff.0)),
            backoff: Backoff::Constant,
            multiplier: Some(backoff.2),
            max_delay: Some(seconds(backoff.1)),
            limit: RetryLimit {
                attempt_count: Some(max_retries),
                ..RetryLimit::default()
            },
            jitter: None,
        })
    }

    /// A retry policy's `predicate`: one of the library's.
    /// A retry policy's `predicate`: one of the library's, or a subworkflow of one
    /// parameter that runs as an expression would (see `interp`).
    fn predicate(&mut self, node: Option<&Yn>, policy: &Yn, path: &str) -> Option<Kind> {
        let Some(node) = node else {
            self.error(
                policy.range.clone(),
                path,
                "a retry policy needs a `predicate`",
            );
            return None;
        };
        let at = format!("{path}/predicate");
        let Some(name) = named(node) else {
            self.error(
                node.range.clone(),
                &at,
                "`predicate` names a predicate, as `${http.default_retry_predicate}`",
            );
            return None;
        };
        if let Some(predicate) = Predicate::named(name) {
            return Some(Kind::Predicate(predicate));
        }
        let Some(sub) = self.subs.get(name) else {
            let names = [
                "http.default_retry_predicate",
                "http.default_retry_predicate_non_idempotent",
                "retry.always",
                "retry.never",
            ];
            let help = expr::closest(
                name,
                names
                    .into_iter()
                    .chain(self.subs.keys().map(String::as_str)),
            )
            .map(|c| format!("did you mean `${{{c}}}`?"));
            self.error_help(
                node.range.clone(),
                &at,
                format!("`{name}` is neither a retry predicate of the library nor a subworkflow"),
                help,
            );
            return None;
        };
        let required = sub.params.iter().filter(|(_, d)| d.is_none()).count();
        if required > 1 || sub.params.is_empty() {
            self.error(
                node.range.clone(),
                &at,
                format!("the predicate `{name}` must take one parameter, the error"),
            );
            return None;
        }
        self.in_expressions
            .push((name.to_string(), node.range.clone(), at));
        Some(Kind::SubPredicate(
            Arc::downgrade(&self.library),
            name.to_string(),
        ))
    }

    /// A `backoff`: `initial_delay`, `max_delay` and `multiplier`, each a positive
    /// number; one not given is `retry.default_backoff`'s.
    fn backoff(&mut self, node: &Yn, path: &str) -> Option<(f64, f64, f64)> {
        let Yk::Map(entries) = &node.kind else {
            self.error(
                node.range.clone(),
                path,
                "`backoff` is a mapping with `initial_delay`, `max_delay` and `multiplier`",
            );
            return None;
        };
        let keys = ["initial_delay", "max_delay", "multiplier"];
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !keys.contains(&key) {
                self.unknown_key(k, key, &keys, path);
            }
        }
        let mut values = [DEFAULT_BACKOFF.0, DEFAULT_BACKOFF.1, DEFAULT_BACKOFF.2];
        for (key, value) in keys.iter().zip(&mut values) {
            let Some(node) = field(entries, key) else {
                continue;
            };
            match node.kind {
                Yk::Int(n) if n > 0 => *value = n as f64,
                Yk::Float(f) if f > 0.0 && f.is_finite() => *value = f,
                _ => {
                    self.error(
                        node.range.clone(),
                        &format!("{path}/{key}"),
                        format!("`{key}` is a positive number"),
                    );
                    return None;
                }
            }
        }
        Some((values[0], values[1], values[2]))
    }

    /// An `except`: the error bound to its `as` variable, then its steps.
    fn except(&mut self, name: &str, node: &Yn, at: &str, scope: &Scope) -> Option<TaskList> {
        let path = format!("{at}/except");
        let Yk::Map(entries) = &node.kind else {
            self.error(
                node.range.clone(),
                &path,
                "`except` is a mapping with `as` and `steps`",
            );
            return None;
        };
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !["as", "steps"].contains(&key) {
                self.unknown_key(k, key, &["as", "steps"], &path);
            }
        }
        let Some(steps) = field(entries, "steps") else {
            self.error(node.range.clone(), &path, "`except` needs `steps`");
            return None;
        };
        let mut list = self.steps(steps, &format!("{path}/steps"), scope);
        if let Some(as_) = field(entries, "as") {
            let Some(variable) = as_.as_str() else {
                self.error(
                    as_.range.clone(),
                    &format!("{path}/as"),
                    "`as` is the name of a variable",
                );
                return None;
            };
            let bind = Compute::expr(
                Kind::BindError(variable.to_string()),
                "as",
                &format!("{path}/as"),
                &scope.locals,
            );
            list.tasks.insert(
                0,
                NamedTask {
                    name: format!("{name}.except"),
                    reference: format!("{path}/as"),
                    task: task(TaskKind::Set(Template::Expr(bind)), FlowDirective::Continue),
                },
            );
        }
        Some(list)
    }

    /// A value as written, with `${ }` expressions compiled.
    fn tmpl(&mut self, node: &Yn, path: &str, scope: &Scope) -> Tmpl {
        match &node.kind {
            Yk::Str(s) => match s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                Some(inner) => {
                    let offset = self.source[node.range.clone()]
                        .find("${")
                        .map_or(node.range.start, |p| node.range.start + p + 2);
                    match parse(inner) {
                        Ok(mut ast) => {
                            self.check(&mut ast, offset, path, scope);
                            Tmpl::Expr(ast)
                        }
                        Err(e) => {
                            self.error(
                                (offset + e.range.start)
                                    ..(offset + e.range.end.max(e.range.start + 1)),
                                path,
                                format!("in this expression: {}", e.message),
                            );
                            Tmpl::Const(Value::Null)
                        }
                    }
                }
                None => Tmpl::Const(node.to_json()),
            },
            Yk::Seq(items) => Tmpl::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| self.tmpl(n, &format!("{path}/{i}"), scope))
                    .collect(),
            ),
            Yk::Map(entries) => Tmpl::Map(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = k.as_str().unwrap_or_default().to_string();
                        let t = self.tmpl(v, &format!("{path}/{key}"), scope);
                        (key, t)
                    })
                    .collect(),
            ),
            _ => Tmpl::Const(node.to_json()),
        }
    }

    /// Checks the names and calls of an expression whose text starts at `offset`; a
    /// call of a subworkflow becomes a call into the program's library.
    fn check(&mut self, node: &mut Node, offset: usize, path: &str, scope: &Scope) {
        let range = (offset + node.range.start)..(offset + node.range.end);
        if let Ast::Call(name, args) = &mut node.kind
            && stdlib::function(name).is_none()
            && let Some(sub) = self.subs.get(name.as_str())
        {
            let required = sub.params.iter().filter(|(_, d)| d.is_none()).count();
            if args.len() < required || args.len() > sub.params.len() {
                let takes = if required == sub.params.len() {
                    required.to_string()
                } else {
                    format!("{required} to {}", sub.params.len())
                };
                self.error(
                    range.clone(),
                    path,
                    format!(
                        "the subworkflow `{name}` takes {takes} arguments, not {}",
                        args.len()
                    ),
                );
            }
            self.in_expressions
                .push((name.clone(), range.clone(), path.to_string()));
            let library = Arc::downgrade(&self.library);
            node.kind = Ast::Sub(library, std::mem::take(name), std::mem::take(args));
        }
        match &mut node.kind {
            Ast::Var(name) => {
                if !scope.known.contains(name) && !scope.locals.contains(name) {
                    let help = expr::closest(name, scope.known.iter().map(String::as_str))
                        .map(|c| format!("did you mean `{c}`?"));
                    self.error_help(
                        range,
                        path,
                        format!("the variable `{name}` is never assigned in this subworkflow"),
                        help,
                    );
                }
            }
            Ast::Call(name, args) => {
                match stdlib::function(name) {
                    Some(f) if args.len() < f.min || args.len() > f.max => {
                        self.error(
                            range,
                            path,
                            format!(
                                "`{name}` takes {} arguments, not {}",
                                stdlib::arity(f),
                                args.len()
                            ),
                        );
                    }
                    Some(_) => {}
                    None if HTTP.contains(&name.as_str())
                        || name.starts_with("sys.")
                        || name.starts_with("events.") =>
                    {
                        self.error(range, path, format!("`{name}` waits or has effects, so it cannot be called in an expression; use a `call` step"));
                    }
                    None => {
                        let names = stdlib::FUNCTIONS
                            .iter()
                            .map(|f| f.name)
                            .chain(self.subs.keys().map(String::as_str));
                        let help =
                            expr::closest(name, names).map(|c| format!("did you mean `{c}`?"));
                        self.error_help(range, path, format!("unknown function `{name}`"), help);
                    }
                }
                for a in args {
                    self.check(a, offset, path, scope);
                }
            }
            Ast::Sub(_, _, args) => {
                for a in args {
                    self.check(a, offset, path, scope);
                }
            }
            Ast::Field(base, _) | Ast::Not(base) | Ast::Neg(base) => {
                self.check(base, offset, path, scope)
            }
            Ast::Index(a, b) | Ast::Bin(_, a, b) | Ast::And(a, b) | Ast::Or(a, b) => {
                self.check(a, offset, path, scope);
                self.check(b, offset, path, scope);
            }
            Ast::List(items) => items
                .iter_mut()
                .for_each(|i| self.check(i, offset, path, scope)),
            Ast::Map(entries) => {
                for (k, v) in entries {
                    self.check(k, offset, path, scope);
                    self.check(v, offset, path, scope);
                }
            }
            Ast::Lit(_) => {}
        }
    }
}

/// Whether `task` can run inside an expression (see `interp`), gathering the
/// subworkflows it calls.
fn runs_inline(task: &Task, calls: &mut Vec<String>) -> bool {
    let list =
        |l: &TaskList, calls: &mut Vec<String>| l.tasks.iter().all(|t| runs_inline(&t.task, calls));
    match &task.kind {
        TaskKind::Set(_) | TaskKind::Switch(_) | TaskKind::Emit(_) => true,
        TaskKind::Raise(r) => matches!(r.error, ErrorRef::Inline(_)),
        TaskKind::Do(l) => list(l, calls),
        TaskKind::For(f) => !f.isolated && list(&f.do_, calls),
        TaskKind::Call(call) => match call.as_ref() {
            Call::Function(f) => {
                calls.push(f.name.clone());
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// The value of `key` in a mapping's entries.
fn field<'n>(entries: &'n [(Yn, Yn)], key: &str) -> Option<&'n Yn> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// What `connector_params` says about waiting for long-running work (Google's
/// defaults: polls after 1 s, then 1.25 times longer each time, at most 60 s apart).
struct ConnectorParams {
    skip_polling: bool,
    initial_delay: f64,
    multiplier: f64,
    max_delay: f64,
}

impl Default for ConnectorParams {
    fn default() -> Self {
        ConnectorParams {
            skip_polling: false,
            initial_delay: 1.0,
            multiplier: 1.25,
            max_delay: 60.0,
        }
    }
}

/// How a parallel step runs its iterations: at most so many at once, the scope its
/// branches see, and what joins their variables.
struct Fan {
    concurrency: Concurrency,
    scope: Scope,
    join: Expr,
}

/// `retry.default_backoff`: initial delay and longest delay in seconds, and the
/// multiplier.
const DEFAULT_BACKOFF: (f64, f64, f64) = (1.0, 60.0, 1.25);

/// A placeholder target: the step after the one being lowered, fixed once it is known.
const AFTER: &str = "\0after";

fn task(kind: TaskKind, then: FlowDirective) -> Task {
    Task {
        if_: None,
        input: None,
        output: None,
        export: None,
        timeout: None,
        then,
        metadata: IndexMap::new(),
        kind,
        reads_task: false,
    }
}

/// A `raise`: the value raised is the problem's `data` (what an `except` sees); its
/// message is the detail.
fn raise(value: Tmpl, at: &str, locals: &[String]) -> TaskKind {
    let at = format!("{at}/raise");
    let detail = Template::Expr(Compute::expr(
        Kind::RaisedMessage(value.clone()),
        "raise",
        &at,
        locals,
    ));
    let data = Template::Expr(Compute::expr(Kind::Value(value), "raise", &at, locals));
    TaskKind::Raise(Raise {
        error: ErrorRef::Inline(Box::new(ErrorDef {
            type_: Template::Const(Value::String(crate::RAISED.into())),
            status: 500,
            instance: None,
            title: Some(Template::Const(Value::String(
                "Raised by the workflow".into(),
            ))),
            detail: Some(detail),
            data: Some(data),
        })),
    })
}

/// The HTTP methods a callback endpoint may take.
const CALLBACK_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

/// How long `events.await_callback` waits by default (Google's 12 hours).
const CALLBACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(43_200);

/// The timeout a call's `timeout` argument gives (`events.await_callback`'s default
/// without one).
fn call_timeout(entries: &[(Yn, Yn)]) -> Option<std::time::Duration> {
    let function = field(entries, "call")
        .and_then(Yn::as_str)
        .unwrap_or_default();
    let args = field(entries, "args");
    if function.starts_with("googleapis.") {
        let given = args
            .and_then(|a| map_field(a, "connector_params"))
            .and_then(|p| seconds(p, "timeout"));
        let polls = connectors::connector(function).is_some_and(|c| c.poll.is_some());
        return given.or(polls.then_some(CONNECTOR_TIMEOUT));
    }
    let given = args.and_then(|a| seconds(a, "timeout"));
    let awaits = function == "events.await_callback";
    given.or(awaits.then_some(CALLBACK_TIMEOUT))
}

/// How long a connector waits for long-running work by default (Google's 30 minutes).
const CONNECTOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1800);

fn map_field<'n>(node: &'n Yn, key: &str) -> Option<&'n Yn> {
    match &node.kind {
        Yk::Map(entries) => field(entries, key),
        _ => None,
    }
}

/// The positive number of seconds `key` of the mapping `node` gives, if a literal.
fn seconds(node: &Yn, key: &str) -> Option<std::time::Duration> {
    let t = map_field(node, key)?;
    let seconds = match t.kind {
        Yk::Int(i) => i as f64,
        Yk::Float(f) => f,
        _ => return None,
    };
    (seconds > 0.0).then(|| std::time::Duration::from_secs_f64(seconds))
}

fn text_of(node: &Yn) -> String {
    node.as_str()
        .unwrap_or_default()
        .trim_start_matches("${")
        .trim_end_matches('}')
        .to_string()
}

/// Every variable a list of steps assigns (its roots), a `for`'s and an `except`'s
/// names and every call's `result`, at any depth: the names expressions may read.
fn collect_assigned(
    node: &Yn,
    into: &mut BTreeSet<String>,
    keep: &dyn Fn(&std::ops::Range<usize>) -> bool,
) {
    if !keep(&node.range) {
        return;
    }
    dsl::yaml::deep(|| match &node.kind {
        Yk::Map(entries) => {
            for (k, v) in entries {
                match k.as_str() {
                    Some("assign") => {
                        if let Yk::Seq(items) = &v.kind {
                            for item in items {
                                if let Yk::Map(e) = &item.kind {
                                    for (target, _) in e {
                                        if let Some(t) = target
                                            .as_str()
                                            .and_then(|t| parse(t).ok())
                                            .as_ref()
                                            .and_then(Target::of)
                                        {
                                            into.insert(t.variable);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    // Names only where they name variables: a call's `result`, a
                    // loop's `value` and `index`, an `except`'s `as`.
                    Some(key @ ("result" | "value" | "index" | "as")) => {
                        let has = |sibling| field(entries, sibling).is_some();
                        let names_variable = match key {
                            "result" => has("call"),
                            "as" => has("steps") && !has("value"),
                            _ => has("steps") && (has("in") || has("range")),
                        };
                        if let (true, Some(name)) = (names_variable, v.as_str()) {
                            into.insert(name.to_string());
                        }
                    }
                    _ => {}
                }
                collect_assigned(v, into, keep);
            }
        }
        Yk::Seq(items) => items.iter().for_each(|i| collect_assigned(i, into, keep)),
        _ => {}
    });
}

/// The name in a `${name}` value, such as a predicate's or a policy's.
fn named(node: &Yn) -> Option<&str> {
    node.as_str()?
        .strip_prefix("${")?
        .strip_suffix('}')
        .map(str::trim)
}
