//! Tasks: lists of named tasks, what every task shares, and each kind but `call`.

use std::num::NonZeroU32;

use expr::STANDARD_VARS;
use indexmap::IndexMap;

use super::workflow::{
    error_ref, export, external_resource, input, output, retry_ref, single_entry, timeout_ref,
};
use super::{At, Cx, Goto, Obj, Ptr};
use crate::yaml::Kind;
use program::{
    Catch, Concurrency, ConsumptionStrategy, Container, ContainerLifetime, Correlation, Duration,
    Emit, ErrorFilter, EventFilter, ExtensionUse, FlowDirective, For, Fork, Listen, ListenRead,
    Moment, NamedTask, Process, ProcessReturn, PullPolicy, Raise, Run, Script, ScriptSource, Shell,
    SubflowRef, SubscriptionIterator, Switch, SwitchCase, Task, TaskKind, TaskList, Try, Until,
};

/// The keys that give a task its kind.
const KINDS: [&str; 12] = [
    "call", "do", "emit", "for", "fork", "listen", "raise", "run", "set", "switch", "try", "wait",
];

pub(crate) fn task_list(cx: &mut Cx, at: &At) -> Option<TaskList> {
    crate::yaml::deep(|| task_list_inner(cx, at))
}

fn task_list_inner(cx: &mut Cx, at: &At) -> Option<TaskList> {
    let Some(items) = at.items() else {
        cx.expected(at, "a list of tasks (`- name: definition`)");
        return None;
    };
    let items: Vec<At> = items.collect();
    cx.gotos.push(Vec::new());
    let mut tasks = Vec::with_capacity(items.len());
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in &items {
        let Some((name, value)) = single_entry(cx, item, "task") else {
            ok = false;
            continue;
        };
        if let Some(first) = names.iter().position(|n| *n == name) {
            cx.error(
                value.anchor(),
                &value.ptr,
                format!(
                    "duplicate task name `{name}` in this list (the first is at {})",
                    at.ptr.index(first).key(&name).as_str()
                ),
            );
            ok = false;
        }
        names.push(name.clone());
        match task(cx, &value, &name) {
            Some(task) => tasks.push(NamedTask {
                name,
                reference: value.ptr.as_str().to_string(),
                task,
            }),
            None => ok = false,
        }
    }
    cx.check_gotos(&names);
    if items.is_empty() {
        cx.error(
            at.node.range.clone(),
            &at.ptr,
            format!("{} has no tasks", at.label()),
        );
        return None;
    }
    ok.then_some(TaskList { tasks })
}

impl Cx<'_> {
    /// Closes the innermost list frame: every `then` recorded in it must name one of `names`.
    pub(super) fn check_gotos(&mut self, names: &[String]) {
        let gotos = self.gotos.pop().unwrap_or_default();
        for Goto { name, range, ptr } in gotos {
            if names.contains(&name) {
                continue;
            }
            let message = format!("`then: {name}` does not name a task in this list");
            let help = match expr::closest(&name, names.iter().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => "a flow directive is `continue`, `exit`, `end`, or the name of a task in the same list".into(),
            };
            self.error_help(range, &ptr, message, help);
        }
    }

    fn flow_directive(&mut self, at: &At) -> Option<FlowDirective> {
        let s = self.string(at)?;
        Some(match s.as_str() {
            "continue" => FlowDirective::Continue,
            "exit" => FlowDirective::Exit,
            "end" => FlowDirective::End,
            _ => {
                if let Some(frame) = self.gotos.last_mut() {
                    frame.push(Goto {
                        name: s.clone(),
                        range: at.node.range.clone(),
                        ptr: at.ptr.clone(),
                    });
                }
                FlowDirective::Goto(s)
            }
        })
    }

    /// A variable name chosen by the author (`for.each`, `catch.as`, …).
    fn var_name(&mut self, at: &At) -> Option<String> {
        let s = self.string(at)?;
        let valid = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            self.error(
                at.node.range.clone(),
                &at.ptr,
                format!("{} `{s}` is not a variable name: use letters, digits and `_`, not starting with a digit", at.label()),
            );
            return None;
        }
        if STANDARD_VARS.contains(&s.as_str()) {
            self.error(
                at.node.range.clone(),
                &at.ptr,
                format!(
                    "{} `{s}` would hide the runtime argument `${s}`; choose another name",
                    at.label()
                ),
            );
            return None;
        }
        Some(s)
    }
}

pub(super) fn task(cx: &mut Cx, at: &At, name: &str) -> Option<Task> {
    // Whether this task reads `$task`, apart from what its subtasks read.
    let outer = std::mem::replace(&mut cx.reads_task, false);
    let task = task_inner(cx, at, name);
    cx.reads_task = outer;
    task
}

fn task_inner(cx: &mut Cx, at: &At, name: &str) -> Option<Task> {
    if matches!(at.node.kind, Kind::Null) {
        cx.error_help(
            at.anchor(),
            &at.ptr,
            format!("task `{name}` is empty"),
            "give it one of `call`, `do`, `emit`, `for`, `fork`, `listen`, `raise`, `run`, `set`, `switch`, `try`, `wait`, indented under its name",
        );
        return None;
    }
    let mut obj = Obj::new(cx, at)?.named(format!("task `{name}`"));
    let mut kinds = obj.present(&KINDS);
    if kinds.contains(&"for") {
        // A `for` task's body is its `do`.
        kinds.retain(|k| *k != "do");
    }

    let if_ = obj.opt(cx, "if", Cx::expr);
    let input = obj.opt(cx, "input", input);
    let output = obj.opt(cx, "output", output);
    let export = obj.opt(cx, "export", export);
    let timeout = obj.opt(cx, "timeout", timeout_ref);
    let then = obj.opt(cx, "then", Cx::flow_directive);
    let activity = match obj.field("metadata") {
        Some(at) => super::workflow::zigflow_metadata(cx, &at),
        None => None,
    };
    let metadata = obj.opt(cx, "metadata", Cx::json_map);

    let kind = match kinds.as_slice() {
        [kind] => task_kind(cx, &mut obj, kind),
        [] => {
            // Let the kind keywords be candidates for "did you mean" on unknown keys.
            for k in KINDS {
                obj.field(k);
            }
            let misspelled = misspelled_kind(&obj);
            if !misspelled {
                cx.error_help(
                    at.anchor(),
                    &at.ptr,
                    format!("task `{name}` does nothing: it has none of the task kinds"),
                    "give it exactly one of `call`, `do`, `emit`, `for`, `fork`, `listen`, `raise`, `run`, `set`, `switch`, `try`, `wait`",
                );
            }
            None
        }
        [first, second, ..] => {
            let second_at = obj.field(second).expect("present");
            cx.error_help(
                second_at.anchor(),
                &second_at.ptr,
                format!("task `{name}` has two kinds, `{first}` and `{second}`"),
                "a task does exactly one thing; split it into two tasks",
            );
            for k in &kinds {
                obj.field(k);
            }
            None
        }
    };
    obj.finish(cx);
    let timeout = match (&kind, timeout) {
        // A Zigflow listener waits as long as its `metadata.timeout` says.
        (Some(TaskKind::Messages(m)), Some(given)) if m.waits() => {
            super::messages::timeout(cx, at, given).map(Some)
        }
        (_, timeout) => timeout,
    };

    let task = Task {
        reads_task: cx.reads_task,
        if_: if_?,
        input: input?,
        output: output?,
        export: export?,
        timeout: timeout?,
        then: then?.unwrap_or(FlowDirective::Continue),
        metadata: metadata?.unwrap_or_default(),
        kind: kind?,
    };
    if let Some(document) = &cx.activity {
        if super::activity::is_activity(&task.kind) {
            // Zigflow runs it as a Temporal activity: timed and retried.
            return Some(super::activity::wrap(
                document,
                activity.as_ref(),
                task,
                name,
                at.ptr.as_str(),
            ));
        }
        if activity.is_some() {
            cx.warning(
                at.anchor(),
                &at.ptr.key("metadata").key("activityOptions"),
                format!("task `{name}` runs no activity, so its `activityOptions` do nothing"),
                "activity options apply to `call` and `run` tasks (but `run.workflow`)",
            );
        }
    }
    Some(task)
}

/// True if some unknown key of a kindless task is a near miss of a kind keyword:
/// then the unknown-key diagnostic (with its suggestion) says it all.
fn misspelled_kind(obj: &Obj) -> bool {
    let Kind::Map(entries) = &obj.at().node.kind else {
        return false;
    };
    entries.iter().any(|(k, _)| {
        let key = k.as_str().unwrap_or_default();
        !KINDS.contains(&key) && expr::closest(key, KINDS).is_some()
    })
}

fn task_kind(cx: &mut Cx, obj: &mut Obj, kind: &str) -> Option<TaskKind> {
    match kind {
        "call" => super::call::call(cx, obj).map(|c| TaskKind::Call(Box::new(c))),
        "do" => obj.req(cx, "do", task_list).map(TaskKind::Do),
        "emit" => obj.req(cx, "emit", emit).map(TaskKind::Emit),
        "for" => for_(cx, obj).map(TaskKind::For),
        "fork" => obj.req(cx, "fork", fork).map(TaskKind::Fork),
        "listen" if cx.zigflow && super::messages::is_messages(obj) => {
            super::messages::messages(cx, obj).map(|m| TaskKind::Messages(Box::new(m)))
        }
        "listen" => listen(cx, obj).map(|l| TaskKind::Listen(Box::new(l))),
        "raise" => obj.req(cx, "raise", raise).map(TaskKind::Raise),
        "run" => obj.req(cx, "run", run).map(|r| TaskKind::Run(Box::new(r))),
        "set" => obj.req(cx, "set", set).map(TaskKind::Set),
        "switch" => obj.req(cx, "switch", switch).map(TaskKind::Switch),
        "try" => try_(cx, obj).map(|t| TaskKind::Try(Box::new(t))),
        "wait" => obj.req(cx, "wait", wait).map(TaskKind::Wait),
        _ => unreachable!("kind comes from KINDS"),
    }
}

fn emit(cx: &mut Cx, at: &At) -> Option<Emit> {
    let mut obj = Obj::new(cx, at)?;
    let event = obj.req(cx, "event", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let with = obj.req(cx, "with", |cx, at| {
            event_properties(cx, at, &["source", "type"])
        });
        obj.finish(cx);
        with
    });
    obj.finish(cx);
    Some(Emit { event: event? })
}

/// CloudEvent attributes; `required` names those that must be present.
fn event_properties(
    cx: &mut Cx,
    at: &At,
    required: &[&str],
) -> Option<Vec<(String, expr::Template)>> {
    let entries = cx.entries(at)?;
    let mut ok = true;
    for name in required {
        if !entries.iter().any(|(n, _)| n == name) {
            let near = entries
                .iter()
                .find(|(n, _)| expr::closest(n, [*name]).is_some());
            let message = format!("{} is missing the event attribute `{name}`", at.label());
            match near {
                Some((n, a)) => cx.error_help(
                    a.anchor(),
                    &a.ptr,
                    message,
                    format!("`{n}`: did you mean `{name}`?"),
                ),
                None => cx.error(at.anchor(), &at.ptr, message),
            }
            ok = false;
        }
    }
    if entries.is_empty() {
        cx.error(
            at.anchor(),
            &at.ptr,
            format!("{} needs at least one attribute", at.label()),
        );
        return None;
    }
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let decoded = match name.as_str() {
            // The CloudEvents context attributes are strings; `data` and extensions are any value.
            "id" | "type" | "subject" | "datacontenttype" | "source" | "dataschema" | "time" => {
                cx.text(&value)
            }
            _ => cx.template(&value),
        };
        match decoded {
            Some(t) => out.push((name, t)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn for_(cx: &mut Cx, obj: &mut Obj) -> Option<For> {
    let for_at = obj.field("for").expect("kind detected");
    let Some(mut cfg) = Obj::new(cx, &for_at) else {
        // Still claim the body's keys, so they are not also reported as unknown.
        obj.field("while");
        obj.field("do");
        return None;
    };
    let each = cfg.opt(cx, "each", Cx::var_name);
    let in_ = cfg.req(cx, "in", Cx::expr);
    let at = cfg.opt(cx, "at", Cx::var_name);
    let concurrency = cfg.opt(cx, "concurrency", concurrency);
    cfg.finish(cx);

    // Decode the body even when a variable name is bad, so its problems show too.
    let each_name = each.clone().flatten().unwrap_or_else(|| "item".into());
    let at_name = at.clone().flatten().unwrap_or_else(|| "index".into());
    let (while_, do_) = cx.scoped(&[&each_name, &at_name], |cx| {
        let while_ = obj.opt(cx, "while", Cx::expr);
        let do_ = obj.req(cx, "do", task_list);
        (while_, do_)
    });
    Some(For {
        each: each?.unwrap_or(each_name),
        in_: in_?,
        at: at?.unwrap_or(at_name),
        concurrency: concurrency?.unwrap_or(Concurrency::Fixed(NonZeroU32::MIN)),
        while_: while_?,
        do_: do_?,
        isolated: false,
        continue_all: false,
    })
}

/// `for.concurrency`, the dynamic fan-out extension: a positive integer or a `${ }` expression.
fn concurrency(cx: &mut Cx, at: &At) -> Option<Concurrency> {
    cx.extensions.push(ExtensionUse {
        name: "for.concurrency",
        path: at.ptr.as_str().to_string(),
        range: at.anchor(),
    });
    match &at.node.kind {
        Kind::Str(_) => cx.strict_expr(at).map(Concurrency::Expr),
        _ => match cx.uint::<u32>(at).and_then(NonZeroU32::new) {
            Some(n) => Some(Concurrency::Fixed(n)),
            None => {
                if matches!(at.node.kind, Kind::Int(0)) {
                    cx.error(
                        at.node.range.clone(),
                        &at.ptr,
                        "`concurrency` must be at least 1",
                    );
                }
                None
            }
        },
    }
}

fn fork(cx: &mut Cx, at: &At) -> Option<Fork> {
    let mut obj = Obj::new(cx, at)?;
    let branches = obj.req(cx, "branches", task_list);
    let compete = obj.opt(cx, "compete", Cx::boolean);
    obj.finish(cx);
    Some(Fork {
        branches: branches?,
        compete: compete?.unwrap_or(false),
    })
}

fn listen(cx: &mut Cx, obj: &mut Obj) -> Option<Listen> {
    let listen = obj.req(cx, "listen", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let to = obj.req(cx, "to", consumption_strategy);
        let read = obj.opt(cx, "read", |cx, at| {
            cx.one_of(at, &["data", "envelope", "raw"])
        });
        obj.finish(cx);
        let read = match read?.as_deref() {
            Some("envelope") => ListenRead::Envelope,
            Some("raw") => ListenRead::Raw,
            _ => ListenRead::Data,
        };
        Some((to?, read))
    });
    let foreach = obj.opt(cx, "foreach", subscription_iterator);
    let (to, read) = listen?;
    Some(Listen {
        to,
        read,
        foreach: foreach?,
    })
}

pub(super) fn subscription_iterator(cx: &mut Cx, at: &At) -> Option<SubscriptionIterator> {
    let mut obj = Obj::new(cx, at)?;
    let item = obj.opt(cx, "item", Cx::var_name);
    let at_name = obj.opt(cx, "at", Cx::var_name);
    let item = item?.unwrap_or_else(|| "item".into());
    let at_name = at_name?.unwrap_or_else(|| "index".into());
    let (do_, output, export) = cx.scoped(&[&item, &at_name], |cx| {
        (
            obj.opt(cx, "do", task_list),
            obj.opt(cx, "output", output),
            obj.opt(cx, "export", export),
        )
    });
    obj.finish(cx);
    Some(SubscriptionIterator {
        item,
        at: at_name,
        do_: do_?,
        output: output?,
        export: export?,
    })
}

/// Which events to consume: exactly one of `all`, `any` (with `until`) or `one`.
pub(super) fn consumption_strategy(cx: &mut Cx, at: &At) -> Option<ConsumptionStrategy> {
    let mut obj = Obj::new(cx, at)?;
    let present = obj.present(&["all", "any", "one"]);
    let strategy = match present.as_slice() {
        ["all"] => obj
            .req(cx, "all", event_filters)
            .map(ConsumptionStrategy::All),
        ["one"] => obj
            .req(cx, "one", event_filter)
            .map(ConsumptionStrategy::One),
        ["any"] => {
            let filters = obj.req(cx, "any", event_filters);
            let until = obj.opt(cx, "until", |cx, at| match &at.node.kind {
                Kind::Str(_) => cx.expr(at).map(Until::Condition),
                _ => consumption_strategy(cx, at).map(Until::Events),
            });
            filters
                .zip(until)
                .map(|(filters, until)| ConsumptionStrategy::Any {
                    filters,
                    until: until.map(Box::new),
                })
        }
        [_] => unreachable!("the present keys come from the list above"),
        [] => {
            for k in ["all", "any", "one"] {
                obj.field(k);
            }
            cx.error(
                at.anchor(),
                &at.ptr,
                format!("{} needs one of `all`, `any` or `one`", at.label()),
            );
            None
        }
        [_, second, ..] => {
            let second_at = obj.field(second).expect("present");
            cx.error(
                second_at.anchor(),
                &second_at.ptr,
                format!(
                    "{} has more than one of `all`, `any`, `one`; keep one",
                    at.label()
                ),
            );
            for k in &present {
                obj.field(k);
            }
            None
        }
    };
    if obj.has("until") && present != ["any"] {
        let until = obj.field("until").expect("present");
        cx.error(until.anchor(), &until.ptr, "`until` only applies to `any`");
    }
    obj.finish(cx);
    strategy
}

fn event_filters(cx: &mut Cx, at: &At) -> Option<Vec<EventFilter>> {
    let Some(items) = at.items() else {
        cx.expected(at, "a list of event filters");
        return None;
    };
    let items: Vec<At> = items.collect();
    let filters: Vec<Option<EventFilter>> =
        items.iter().map(|item| event_filter(cx, item)).collect();
    filters.into_iter().collect()
}

fn event_filter(cx: &mut Cx, at: &At) -> Option<EventFilter> {
    let mut obj = Obj::new(cx, at)?;
    let with = obj.req(cx, "with", |cx, at| event_properties(cx, at, &[]));
    let correlate = obj.opt(cx, "correlate", |cx, at| {
        let entries = cx.entries(at)?;
        let mut out = IndexMap::new();
        let mut ok = true;
        for (name, value) in entries {
            let decoded = (|| {
                let mut obj = Obj::new(cx, &value)?;
                let from = obj.req(cx, "from", Cx::expr);
                let expect = obj.opt(cx, "expect", Cx::text);
                obj.finish(cx);
                Some(Correlation {
                    from: from?,
                    expect: expect?,
                })
            })();
            match decoded {
                Some(c) => {
                    out.insert(name, c);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    });
    obj.finish(cx);
    Some(EventFilter {
        with: with?,
        correlate: correlate?.unwrap_or_default(),
    })
}

fn raise(cx: &mut Cx, at: &At) -> Option<Raise> {
    let mut obj = Obj::new(cx, at)?;
    let error = obj.req(cx, "error", error_ref);
    obj.finish(cx);
    Some(Raise { error: error? })
}

fn run(cx: &mut Cx, at: &At) -> Option<Run> {
    let mut obj = Obj::new(cx, at)?;
    let await_ = obj.opt(cx, "await", Cx::boolean);
    let return_ = obj.opt(cx, "return", |cx, at| {
        Some(
            match cx
                .one_of(at, &["stdout", "stderr", "code", "all", "none"])?
                .as_str()
            {
                "stderr" => ProcessReturn::Stderr,
                "code" => ProcessReturn::Code,
                "all" => ProcessReturn::All,
                "none" => ProcessReturn::None,
                _ => ProcessReturn::Stdout,
            },
        )
    });
    let present = obj.present(&["container", "script", "shell", "workflow"]);
    let process = match present.as_slice() {
        ["container"] => obj
            .req(cx, "container", container)
            .map(|c| Process::Container(Box::new(c))),
        ["script"] => obj.req(cx, "script", script).map(Process::Script),
        ["shell"] => obj.req(cx, "shell", shell).map(Process::Shell),
        ["workflow"] => obj.req(cx, "workflow", subflow).map(Process::Workflow),
        [_] => unreachable!("the present keys come from the list above"),
        [] => {
            for k in ["container", "script", "shell", "workflow"] {
                obj.field(k);
            }
            cx.error(
                at.anchor(),
                &at.ptr,
                "`run` needs one of `container`, `script`, `shell` or `workflow`",
            );
            None
        }
        [first, second, ..] => {
            let second_at = obj.field(second).expect("present");
            cx.error(
                second_at.anchor(),
                &second_at.ptr,
                format!("`run` has both `{first}` and `{second}`; a run task runs one process"),
            );
            for k in &present {
                obj.field(k);
            }
            None
        }
    };
    obj.finish(cx);
    Some(Run {
        process: process?,
        await_: await_?.unwrap_or(true),
        return_: return_?.unwrap_or_default(),
    })
}

fn texts(cx: &mut Cx, at: &At) -> Option<Vec<expr::Template>> {
    let Some(items) = at.items() else {
        cx.expected(at, "a list of strings");
        return None;
    };
    let items: Vec<At> = items.collect();
    let out: Vec<Option<expr::Template>> = items.iter().map(|i| cx.text(i)).collect();
    out.into_iter().collect()
}

fn mapping_template(cx: &mut Cx, at: &At) -> Option<expr::Template> {
    if !matches!(at.node.kind, Kind::Map(_)) {
        cx.expected(at, "a mapping");
        return None;
    }
    cx.template(at)
}

fn container(cx: &mut Cx, at: &At) -> Option<Container> {
    let mut obj = Obj::new(cx, at)?;
    let image = obj.req(cx, "image", Cx::string);
    let name = obj.opt(cx, "name", Cx::text);
    let command = obj.opt(cx, "command", Cx::text);
    let ports = obj.opt(cx, "ports", |cx, at| mapping_json(cx, at));
    let volumes = obj.opt(cx, "volumes", |cx, at| mapping_json(cx, at));
    let environment = obj.opt(cx, "environment", mapping_template);
    let stdin = obj.opt(cx, "stdin", Cx::text);
    let arguments = obj.opt(cx, "arguments", texts);
    let lifetime = obj.opt(cx, "lifetime", lifetime);
    let pull_policy = obj.opt(cx, "pullPolicy", |cx, at| {
        Some(
            match cx
                .one_of(at, &["ifNotPresent", "always", "never"])?
                .as_str()
            {
                "always" => PullPolicy::Always,
                "never" => PullPolicy::Never,
                _ => PullPolicy::IfNotPresent,
            },
        )
    });
    obj.finish(cx);
    Some(Container {
        image: image?,
        name: name?,
        command: command?,
        ports: ports?,
        volumes: volumes?,
        environment: environment?,
        stdin: stdin?,
        arguments: arguments?.unwrap_or_default(),
        lifetime: lifetime?,
        pull_policy: pull_policy?.unwrap_or_default(),
    })
}

fn mapping_json(cx: &mut Cx, at: &At) -> Option<serde_json::Value> {
    if !matches!(at.node.kind, Kind::Map(_)) {
        cx.expected(at, "a mapping");
        return None;
    }
    Some(cx.json(at))
}

fn lifetime(cx: &mut Cx, at: &At) -> Option<ContainerLifetime> {
    let mut obj = Obj::new(cx, at)?;
    let cleanup = obj.req(cx, "cleanup", |cx, at| {
        cx.one_of(at, &["always", "never", "eventually"])
    });
    let after = obj.opt(cx, "after", Cx::duration);
    let anchor = obj.at().anchor();
    let ptr = obj.at().ptr.clone();
    obj.finish(cx);
    match (cleanup?.as_str(), after?) {
        ("eventually", Some(after)) => Some(ContainerLifetime::Eventually(after)),
        ("eventually", None) => {
            cx.error(
                anchor,
                &ptr,
                "`cleanup: eventually` needs `after`, the delay before the container is deleted",
            );
            None
        }
        (_, Some(_)) => {
            cx.error(
                anchor,
                &ptr,
                "`after` only applies to `cleanup: eventually`",
            );
            None
        }
        ("always", None) => Some(ContainerLifetime::Always),
        _ => Some(ContainerLifetime::Never),
    }
}

fn script(cx: &mut Cx, at: &At) -> Option<Script> {
    let mut obj = Obj::new(cx, at)?;
    let language = obj.req(cx, "language", Cx::string);
    let code = obj.opt(cx, "code", Cx::string);
    let source = obj.opt(cx, "source", external_resource);
    let stdin = obj.opt(cx, "stdin", Cx::text);
    let arguments = obj.opt(cx, "arguments", texts);
    let environment = obj.opt(cx, "environment", mapping_template);
    let anchor = obj.at().anchor();
    let ptr = obj.at().ptr.clone();
    obj.finish(cx);
    let source = match (code?, source?) {
        (Some(code), None) => ScriptSource::Code(code),
        (None, Some(r)) => ScriptSource::External(r),
        (None, None) => {
            cx.error(
                anchor,
                &ptr,
                "a script needs `code` (inline) or `source` (external)",
            );
            return None;
        }
        (Some(_), Some(_)) => {
            cx.error(
                anchor,
                &ptr,
                "a script has either `code` or `source`, not both",
            );
            return None;
        }
    };
    Some(Script {
        language: language?,
        source,
        stdin: stdin?,
        arguments: arguments?.unwrap_or_default(),
        environment: environment?,
    })
}

fn shell(cx: &mut Cx, at: &At) -> Option<Shell> {
    let mut obj = Obj::new(cx, at)?;
    let command = obj.req(cx, "command", Cx::text);
    let stdin = obj.opt(cx, "stdin", Cx::text);
    let arguments = obj.opt(cx, "arguments", texts);
    let environment = obj.opt(cx, "environment", mapping_template);
    obj.finish(cx);
    Some(Shell {
        command: command?,
        stdin: stdin?,
        arguments: arguments?.unwrap_or_default(),
        environment: environment?,
    })
}

fn subflow(cx: &mut Cx, at: &At) -> Option<SubflowRef> {
    let mut obj = Obj::new(cx, at)?;
    if cx.zigflow {
        // Zigflow names the workflow by `type` (its Temporal workflow type), on the same
        // task queue; `namespace` and `version` are accepted and not used.
        let name = match obj.present(&["type", "name"]).as_slice() {
            ["name"] => obj.req(cx, "name", Cx::string),
            _ => obj.req(cx, "type", Cx::string),
        };
        let namespace = obj.opt(cx, "namespace", Cx::string);
        let version = obj.opt(cx, "version", Cx::string);
        let input = obj.opt(cx, "input", mapping_template);
        obj.finish(cx);
        return Some(SubflowRef {
            // The same task queue, as Zigflow looks workflow types up.
            namespace: namespace?
                .or_else(|| cx.task_queue.clone())
                .unwrap_or_default(),
            name: name?,
            version: version?.unwrap_or_default(),
            input: input?,
        });
    }
    let namespace = obj.req(cx, "namespace", Cx::string);
    let name = obj.req(cx, "name", Cx::string);
    let version = obj.req(cx, "version", Cx::string);
    let input = obj.opt(cx, "input", mapping_template);
    obj.finish(cx);
    Some(SubflowRef {
        namespace: namespace?,
        name: name?,
        version: version?,
        input: input?,
    })
}

/// `set`: a mapping (with expressions inside) or one expression.
fn set(cx: &mut Cx, at: &At) -> Option<expr::Template> {
    match &at.node.kind {
        Kind::Map(entries) if entries.is_empty() => {
            cx.error(
                at.node.range.clone(),
                &at.ptr,
                "`set` needs at least one property",
            );
            None
        }
        Kind::Map(_) => cx.template(at),
        Kind::Str(_) => cx.expr(at).map(expr::Template::Expr),
        _ => {
            cx.expected(at, "a mapping or an expression");
            None
        }
    }
}

fn switch(cx: &mut Cx, at: &At) -> Option<Switch> {
    let Some(items) = at.items() else {
        cx.expected(at, "a list of cases (`- name: { when, then }`)");
        return None;
    };
    let items: Vec<At> = items.collect();
    if items.is_empty() {
        cx.error(
            at.node.range.clone(),
            &at.ptr,
            "`switch` needs at least one case",
        );
        return None;
    }
    let mut cases = Vec::with_capacity(items.len());
    let mut ok = true;
    let mut default: Option<Ptr> = None;
    for item in &items {
        let Some((name, value)) = single_entry(cx, item, "switch case") else {
            ok = false;
            continue;
        };
        let decoded = (|| {
            let mut obj = Obj::new(cx, &value)?.named(format!("switch case `{name}`"));
            let when = obj.opt(cx, "when", Cx::expr);
            let then = obj.req(cx, "then", Cx::flow_directive);
            obj.finish(cx);
            Some(SwitchCase {
                name: name.clone(),
                when: when?,
                then: then?,
            })
        })();
        match decoded {
            Some(case) => {
                if case.when.is_none() {
                    if let Some(first) = &default {
                        cx.error(
                            value.anchor(),
                            &value.ptr,
                            format!("case `{name}` is a second default case (no `when`); the first is at {}", first.as_str()),
                        );
                        ok = false;
                    }
                    default = Some(value.ptr.clone());
                }
                cases.push(case);
            }
            None => ok = false,
        }
    }
    ok.then_some(Switch { cases })
}

fn try_(cx: &mut Cx, obj: &mut Obj) -> Option<Try> {
    let try_ = obj.req(cx, "try", task_list);
    let catch = obj.req(cx, "catch", catch);
    Some(Try {
        try_: try_?,
        catch: catch?,
        catch_from_fault: false,
    })
}

fn catch(cx: &mut Cx, at: &At) -> Option<Catch> {
    let mut obj = Obj::new(cx, at)?;
    let errors = obj.opt(cx, "errors", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let with = obj.opt(cx, "with", error_filter);
        obj.finish(cx);
        with
    });
    let as_ = obj.opt(cx, "as", Cx::var_name);
    let name = as_.clone().flatten().unwrap_or_else(|| "error".into());
    let (when, except_when, retry, do_) = cx.scoped(&[&name], |cx| {
        (
            obj.opt(cx, "when", Cx::expr),
            obj.opt(cx, "exceptWhen", Cx::expr),
            obj.opt(cx, "retry", retry_ref),
            obj.opt(cx, "do", task_list),
        )
    });
    obj.finish(cx);
    Some(Catch {
        errors: errors?.flatten(),
        as_: as_?.unwrap_or(name),
        when: when?,
        except_when: except_when?,
        retry: retry?,
        do_: do_?,
    })
}

fn error_filter(cx: &mut Cx, at: &At) -> Option<ErrorFilter> {
    let mut obj = Obj::new(cx, at)?;
    let type_ = obj.opt(cx, "type", Cx::string);
    let status = obj.opt(cx, "status", Cx::uint::<u16>);
    let instance = obj.opt(cx, "instance", Cx::string);
    let title = obj.opt(cx, "title", Cx::string);
    let details = obj.opt(cx, "details", Cx::string);
    obj.finish(cx);
    let filter = ErrorFilter {
        type_: type_?,
        status: status?,
        instance: instance?,
        title: title?,
        details: details?,
    };
    let empty = filter.type_.is_none()
        && filter.status.is_none()
        && filter.instance.is_none()
        && filter.title.is_none()
        && filter.details.is_none();
    if empty {
        cx.error(
            at.anchor(),
            &at.ptr,
            "`with` needs at least one of `type`, `status`, `instance`, `title`, `details`",
        );
        return None;
    }
    Some(filter)
}

/// `wait`: a duration, or (Zigflow's extension) `until` a moment, an RFC 3339 time or
/// an expression that yields one.
fn wait(cx: &mut Cx, at: &At) -> Option<Duration> {
    let until =
        matches!(&at.node.kind, Kind::Map(e) if e.iter().any(|(k, _)| k.as_str() == Some("until")));
    if !until {
        return cx.duration(at);
    }
    let mut obj = Obj::new(cx, at)?;
    let moment = obj.req(cx, "until", |cx, at| {
        cx.extensions.push(ExtensionUse {
            name: "wait.until",
            path: at.ptr.as_str().to_string(),
            range: at.anchor(),
        });
        let text = cx.string(at)?;
        if expr::strict_expression(&text).is_some() {
            return cx.strict_expr(at).map(Moment::Expr);
        }
        match text.parse::<jiff::Timestamp>() {
            Ok(t) => Some(Moment::At(t.as_millisecond())),
            Err(e) => {
                cx.error_help(
                    at.node.range.clone(),
                    &at.ptr,
                    format!("`until` `{text}` is not an RFC 3339 time: {e}"),
                    "write it like `2026-12-31T23:59:59Z`, or as a `${ }` expression",
                );
                None
            }
        }
    });
    obj.finish(cx);
    moment.map(Duration::Until)
}
