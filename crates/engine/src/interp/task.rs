//! Task lists and tasks: the walk over a list (with `then` and visit marks), the
//! journal lookup before each task, the DSL's data flow around it (`if`, `input`,
//! `output`, `export`, `timeout`), its lifecycle events and records, and dispatch on
//! its kind to the file that runs it.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use program::{Call, CallTarget, ErrorDef, ErrorRef, FlowDirective, NamedTask, TaskKind, TaskList};
use serde_json::{Value, json};
use store::{Step, StepState};

use super::data::{check_schema, raised, stored_problem};
use super::{
    Ctx, Flow, Res, Stepped, TaskCx, Unfinished, eval, events, fanout, messages, process, retry,
    subflow, timers,
};
use crate::Interrupt;
use crate::events::Lifecycle;
use crate::run::{Run, Scope, date_time, problem_json};

/// Runs the tasks of `list` (keyed under `key`) from the first, following `then`.
pub(super) fn run_list<'a>(
    run: &'a Arc<Run>,
    list: &'a TaskList,
    key: String,
    scope: &'a Scope,
    mut input: Value,
    ctx: &'a mut Ctx,
) -> BoxFuture<'a, Res<Flow>> {
    async move {
        let mut i = 0;
        let mut visits = vec![0u32; list.tasks.len()];
        let boundary = run.boundary.as_deref() == Some(key.as_str());
        if boundary
            && let Some(StepState::Completed { output, .. }) = run.replayed(CHECKPOINT)
            && output["list"] == key.as_str()
        {
            // Continued as new before: on from the checkpoint, the tasks before it done.
            i = output["next"].as_u64().unwrap_or(0) as usize;
            if let Some(saved) = output["visits"].as_array() {
                for (v, n) in visits.iter_mut().zip(saved) {
                    *v = n.as_u64().unwrap_or(0) as u32;
                }
            }
            input = output["input"].clone();
            ctx.set(output["context"].clone());
            messages::register_skipped(
                run,
                &list.tasks[..i.min(list.tasks.len())],
                scope,
                ctx,
                &input,
            );
            if ctx.data.is_some() {
                ctx.data = Some(output["data"].clone());
                run.set_data(&output["data"]);
            }
        }
        while i < list.tasks.len() {
            if run.cancel.is_cancelled() {
                return Err(Interrupt::Cancelled);
            }
            if boundary && run.journal_is_long() {
                checkpoint(run, &key, i, &visits, &input, ctx).await?;
            }
            let nt = &list.tasks[i];
            visits[i] += 1;
            // A task reached again through `then` gets a new key for each visit.
            let task_key = match visits[i] {
                1 => format!("{key}/{i}/{}", nt.name),
                n => format!("{key}/{i}/{}@{n}", nt.name),
            };
            let kept = ctx.keep_fault_input.then(|| input.clone());
            // Zigflow's `$data` as the tasks before this one left it.
            let with_data;
            let scope = match &ctx.data {
                Some(data) => {
                    with_data = scope.with([(Arc::from("data"), data.clone())]);
                    &with_data
                }
                None => scope,
            };
            let stepped = match run_task(run, nt, task_key, scope, input, ctx).await {
                Ok(stepped) => stepped,
                Err(Interrupt::Fault(problem)) => {
                    // Unwinding outward, the outermost list's task is the last kept.
                    if kept.is_some() {
                        ctx.fault_input = kept;
                    }
                    return Err(Interrupt::Fault(problem));
                }
                Err(other) => return Err(other),
            };
            if let Some(data) = &mut ctx.data {
                accumulate(data, nt, &stepped.output);
                run.set_data(data);
            }
            input = stepped.output;
            match stepped.then {
                FlowDirective::Continue => i += 1,
                FlowDirective::Exit => return Ok(Flow::Exit(input)),
                FlowDirective::End => return Ok(Flow::End(input)),
                FlowDirective::Break => return Ok(Flow::Break(input)),
                FlowDirective::NextIteration => return Ok(Flow::NextIteration(input)),
                FlowDirective::Goto(name) => {
                    i = list
                        .position(&name)
                        .expect("`then` targets are checked when the workflow is loaded")
                }
            }
        }
        Ok(Flow::Done(input))
    }
    .boxed()
}

/// The step that holds a continue-as-new checkpoint.
pub(crate) const CHECKPOINT: &str = "/checkpoint";

/// Continues as new before task `next` of the boundary list `key`: records where the
/// workflow stands (the task, the visit counts, its input, `$context`, `$data`, the
/// inbox positions consumed and the updates handled), waits for it to be durable, then
/// forgets the steps of the tasks before it.
async fn checkpoint(
    run: &Arc<Run>,
    key: &str,
    next: usize,
    visits: &[u32],
    input: &Value,
    ctx: &mut Ctx,
) -> Res<()> {
    let state = json!({
        "list": key,
        "next": next,
        "visits": visits,
        "input": input,
        "context": ctx.value,
        "data": ctx.data,
        "consumed": run.consumed_positions(),
        "updates": run.handled_update_ids(),
    });
    let ticket = run.record(
        vec![Step {
            key: CHECKPOINT.into(),
            state: StepState::Completed {
                output: state,
                context: None,
            },
        }],
        vec![],
        None,
    );
    ctx.advance(ticket);
    run.barrier(ticket).await?;
    run.store
        .forget_steps(&run.id, &format!("{key}/"))
        .await
        .map_err(|e| Interrupt::Store(e.to_string()))?;
    run.journal_shrunk_to(1);
    Ok(())
}

/// What a task adds to Zigflow's `$data`: a `set` task's keys, merged in (and those a
/// listener of messages received); a `call` or `run` task's result, under the task's
/// name.
fn accumulate(data: &mut Value, nt: &NamedTask, output: &Value) {
    let Value::Object(data) = data else {
        return;
    };
    match (&nt.task.kind, output) {
        (TaskKind::Set(_) | TaskKind::Messages(_), Value::Object(set)) => {
            for (k, v) in set {
                data.insert(k.clone(), v.clone());
            }
        }
        (TaskKind::Call(_) | TaskKind::Run(_), _) => {
            data.insert(nt.name.clone(), output.clone());
        }
        _ => {}
    }
}

fn directive_json(d: &FlowDirective) -> Value {
    Value::String(match d {
        FlowDirective::Continue => "continue".into(),
        FlowDirective::Exit => "exit".into(),
        FlowDirective::End => "end".into(),
        FlowDirective::Goto(name) => name.clone(),
        FlowDirective::Break => "loop:break".into(),
        FlowDirective::NextIteration => "loop:next".into(),
    })
}

fn directive_from(v: &Value, fallback: &FlowDirective) -> FlowDirective {
    match v.as_str() {
        Some("continue") => FlowDirective::Continue,
        Some("exit") => FlowDirective::Exit,
        Some("end") => FlowDirective::End,
        Some("loop:break") => FlowDirective::Break,
        Some("loop:next") => FlowDirective::NextIteration,
        Some(name) => FlowDirective::Goto(name.to_string()),
        None => fallback.clone(),
    }
}

/// Runs one task at step `key`, or replays its journaled end; records its lifecycle
/// events and its end (output or error, the context if it changed, the flow if it
/// differs from the task's `then`).
pub(super) fn run_task<'a>(
    run: &'a Arc<Run>,
    nt: &'a NamedTask,
    key: String,
    scope: &'a Scope,
    raw_input: Value,
    ctx: &'a mut Ctx,
) -> BoxFuture<'a, Res<Stepped>> {
    async move {
        // Fairness: a long run of pure tasks (a loop of `set`s, a replay) never waits
        // on anything, so it gives the worker thread back whenever tokio's
        // cooperative budget for this poll is spent.
        tokio::task::consume_budget().await;
        run.keep_pace().await?;
        let task = &nt.task;
        match run.replayed(&key) {
            Some(StepState::Completed { output, context }) => {
                if let Some(c) = context {
                    ctx.set(c.clone());
                }
                let then = match run.replayed(&format!("{key}/then")) {
                    Some(StepState::Completed { output, .. }) => directive_from(output, &task.then),
                    _ => task.then.clone(),
                };
                return Ok(Stepped {
                    output: output.clone(),
                    then,
                });
            }
            Some(StepState::Faulted { error, context }) => {
                if let Some(c) = context {
                    ctx.set(c.clone());
                }
                return Err(Interrupt::Fault(stored_problem(error)));
            }
            _ => {}
        }

        // A paused run starts no new task.
        run.gate().await?;
        // `$task`, built only for tasks whose expressions read it.
        let task_var = if task.reads_task {
            json!({
                "name": nt.name,
                "reference": nt.reference,
                "definition": run.wf.definition.pointer(&nt.reference).cloned().unwrap_or(Value::Null),
                "input": raw_input,
                "startedAt": date_time(run.now()),
            })
        } else {
            Value::Null
        };
        // Created and started at once: this engine queues no task before running it.
        run.record(
            vec![],
            vec![
                (
                    Lifecycle::TaskCreated.as_str(),
                    run.task_event(&nt.reference, "createdAt", None),
                ),
                (
                    Lifecycle::TaskStarted.as_str(),
                    run.task_event(&nt.reference, "startedAt", None),
                ),
            ],
            None,
        );
        let mut unfinished = Unfinished {
            run,
            task: Some(&nt.reference),
            armed: true,
        };
        let changes_before = ctx.changes;
        let cx = TaskCx {
            run,
            task: nt,
            key: &key,
            scope,
            task_var: &task_var,
        };
        let result = match run.count_task(&nt.reference) {
            Ok(()) => {
                // Replayed tasks returned above: a span is a task that really runs.
                let span = tracing::info_span!(
                    target: "otel",
                    "task",
                    otel.name = %format!("task {}", nt.name),
                    task.name = %nt.name,
                    task.reference = %nt.reference,
                    task.kind = nt.task.kind.keyword(),
                );
                tracing::Instrument::instrument(extended(cx, raw_input, ctx), span).await
            }
            Err(over) => Err(over),
        };
        // A cancelled task's record is left to the guard, which also covers a drop.
        unfinished.armed = matches!(result, Err(Interrupt::Cancelled));
        match result {
            Ok(stepped) => {
                let context = (ctx.changes != changes_before).then(|| ctx.value.clone());
                let mut steps = vec![Step {
                    key: key.clone(),
                    state: StepState::Completed {
                        output: stepped.output.clone(),
                        context,
                    },
                }];
                if stepped.then != task.then {
                    steps.push(Step {
                        key: format!("{key}/then"),
                        state: StepState::Completed {
                            output: directive_json(&stepped.then),
                            context: None,
                        },
                    });
                }
                let event = run.task_event(
                    &nt.reference,
                    "completedAt",
                    Some(("output", &stepped.output)),
                );
                let ticket = run.record(
                    steps,
                    vec![(Lifecycle::TaskCompleted.as_str(), event)],
                    None,
                );
                ctx.advance(ticket);
                Ok(stepped)
            }
            Err(Interrupt::Fault(problem)) => {
                let context = (ctx.changes != changes_before).then(|| ctx.value.clone());
                let error = problem_json(&problem);
                let event =
                    run.task_event(&nt.reference, "faultedAt", Some(("error", &error)));
                let ticket = run.record(
                    vec![Step {
                        key,
                        state: StepState::Faulted { error, context },
                    }],
                    vec![(Lifecycle::TaskFaulted.as_str(), event)],
                    None,
                );
                ctx.advance(ticket);
                Err(Interrupt::Fault(problem))
            }
            Err(other) => Err(other),
        }
    }
    .boxed()
}

/// A task with the extensions (`use.extensions`) that apply to it, in declaration
/// order: each one's `before` list on the task's input (one that ends with `exit`
/// stands for the task: its output is the task's), the task, then each one's `after`
/// list on the task's output. Their tasks are journaled under the task's key
/// (`{key}/ext/{i}/before`, `…/after`) and are not extended themselves.
async fn extended(cx: TaskCx<'_>, raw_input: Value, ctx: &mut Ctx) -> Res<Stepped> {
    let run = cx.run;
    if ctx.extending || run.wf.use_.extensions.is_empty() {
        return task_body(cx, raw_input, ctx).await;
    }
    let nt = cx.task;
    // `$task` for `when`: the task's definition, its name, reference and input.
    let mut descriptor = match run.wf.definition.pointer(&nt.reference) {
        Some(Value::Object(definition)) => definition.clone(),
        _ => serde_json::Map::new(),
    };
    descriptor.insert("name".into(), json!(nt.name));
    descriptor.insert("reference".into(), json!(nt.reference));
    descriptor.insert("input".into(), raw_input.clone());
    let descriptor = Value::Object(descriptor);
    let keyword = nt.task.kind.keyword();
    let composite = matches!(nt.task.kind, TaskKind::Do(_) | TaskKind::Fork(_));
    let mut applied = Vec::new();
    for (i, (_, extension)) in run.wf.use_.extensions.iter().enumerate() {
        let kind = extension.extend.as_str();
        if !(kind == "all" || kind == keyword || (kind == "composite" && composite)) {
            continue;
        }
        if let Some(when) = &extension.when {
            // A `when` that cannot be read for this task (a type error on a shape its
            // author did not expect, as in the spec's own example) does not apply: one
            // extension sees every kind of task, and must not fail them all. Going over
            // the expression budget still fails the task.
            let vars = run.vars(cx.scope, &ctx.value, &raw_input, &descriptor, None);
            let applies = match when.eval_bool(&raw_input, &vars) {
                Ok(applies) => applies,
                Err(e) if e.limit.is_some() => return Err(e.into_problem(cx.at()).into()),
                Err(_) => false,
            };
            if !applies {
                continue;
            }
        }
        applied.push((i, extension));
    }
    if applied.is_empty() {
        return task_body(cx, raw_input, ctx).await;
    }
    ctx.extending = true;
    let mut exited = None;
    for (i, extension) in &applied {
        if let Some(before) = &extension.before {
            let key = format!("{}/ext/{i}/before", cx.key);
            let flow = run_list(run, before, key, cx.scope, raw_input.clone(), ctx).await;
            match flow {
                Ok(Flow::Exit(output)) => {
                    exited = Some(output);
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    ctx.extending = false;
                    return Err(e);
                }
            }
        }
    }
    let stepped = match exited {
        Some(output) => Stepped {
            output,
            then: nt.task.then.clone(),
        },
        None => {
            ctx.extending = false;
            let stepped = task_body(cx, raw_input, ctx).await?;
            ctx.extending = true;
            stepped
        }
    };
    for (i, extension) in &applied {
        if let Some(after) = &extension.after {
            let key = format!("{}/ext/{i}/after", cx.key);
            if let Err(e) = run_list(run, after, key, cx.scope, stepped.output.clone(), ctx).await {
                ctx.extending = false;
                return Err(e);
            }
        }
    }
    ctx.extending = false;
    Ok(stepped)
}

/// The DSL's data flow around one task: `if`, input, the task itself, output, export.
async fn task_body(cx: TaskCx<'_>, raw_input: Value, ctx: &mut Ctx) -> Res<Stepped> {
    let (run, nt, at) = (cx.run, cx.task, cx.at());
    let task = &nt.task;
    if let Some(cond) = &task.if_ {
        let run_it = cond
            .eval_bool(&raw_input, &cx.vars(&ctx.value, &raw_input))
            .map_err(|e| e.into_problem(at))?;
        if !run_it {
            // A skipped task outputs its raw input.
            return Ok(Stepped {
                output: raw_input,
                then: task.then.clone(),
            });
        }
    }
    // On the task whose metadata carries them (not on the activity a Zigflow task wraps,
    // which shares its reference).
    if task.metadata.contains_key("searchAttributes")
        && let Some(attributes) = run.wf.search_attributes.get(&nt.reference)
    {
        let value = cx.eval(attributes, &raw_input, &ctx.value)?;
        super::data::search_attributes(run, &value, at).await?;
    }
    let input = match &task.input {
        Some(spec) => {
            if let Some(schema) = &spec.schema {
                check_schema(
                    run,
                    schema,
                    &raw_input,
                    &format!("the input of task `{}`", nt.name),
                    at,
                )
                .await?;
            }
            match &spec.from {
                Some(from) => cx.eval(from, &raw_input, &ctx.value)?,
                None => raw_input,
            }
        }
        None => raw_input,
    };

    let body = kind(cx, &input, ctx);
    let (raw_output, then) = match &task.timeout {
        Some(timeout) => {
            timers::with_timeout(
                run,
                &format!("{}/timeout", cx.key),
                timeout,
                at,
                &format!("Task `{}`", nt.name),
                body,
            )
            .await?
        }
        None => body.await?,
    };

    let mut task_var = cx.task_var.clone();
    if task.reads_task {
        task_var["output"] = raw_output.clone();
    }
    let cx = TaskCx {
        task_var: &task_var,
        ..cx
    };
    let output = match task.output.as_ref().and_then(|o| o.as_.as_ref()) {
        Some(as_) => eval(as_, &raw_output, &cx.vars(&ctx.value, &input), at)?,
        None => raw_output,
    };
    if let Some(schema) = task.output.as_ref().and_then(|o| o.schema.as_ref()) {
        check_schema(
            run,
            schema,
            &output,
            &format!("the output of task `{}`", nt.name),
            at,
        )
        .await?;
    }
    run.check_size(&output, &format!("the output of task `{}`", nt.name), at)?;
    if let Some(export) = &task.export
        && let Some(as_) = &export.as_
    {
        let context = eval(
            as_,
            &output,
            &cx.export_vars(&ctx.value, &input, &output),
            at,
        )?;
        if let Some(schema) = &export.schema {
            check_schema(
                run,
                schema,
                &context,
                &format!("the context exported by task `{}`", nt.name),
                at,
            )
            .await?;
        }
        run.check_size(
            &context,
            &format!("the context exported by task `{}`", nt.name),
            at,
        )?;
        ctx.set(context);
    }
    Ok(Stepped { output, then })
}

/// Runs the kind-specific part of a task on its transformed input: its raw output, and
/// where the flow goes next.
fn kind<'a>(
    cx: TaskCx<'a>,
    input: &'a Value,
    ctx: &'a mut Ctx,
) -> BoxFuture<'a, Res<(Value, FlowDirective)>> {
    async move {
        let (run, key, at) = (cx.run, cx.key, cx.at());
        let task = &cx.task.task;
        let then = task.then.clone();
        match &task.kind {
            TaskKind::Set(template) => Ok((cx.eval(template, input, &ctx.value)?, then)),
            TaskKind::Do(list) => Ok(flow_result(
                run_list(run, list, format!("{key}/do"), cx.scope, input.clone(), ctx).await?,
                then,
            )),
            TaskKind::Switch(switch) => {
                let vars = cx.vars(&ctx.value, input);
                let mut default = None;
                for case in &switch.cases {
                    match &case.when {
                        None => default = default.or(Some(&case.then)),
                        Some(when) => {
                            if when
                                .eval_bool(input, &vars)
                                .map_err(|e| e.into_problem(at))?
                            {
                                return Ok((input.clone(), case.then.clone()));
                            }
                        }
                    }
                }
                Ok((input.clone(), default.cloned().unwrap_or(then)))
            }
            TaskKind::Raise(raise) => {
                let def: &ErrorDef = match &raise.error {
                    ErrorRef::Inline(def) => def,
                    ErrorRef::Use(name) => &run.wf.use_.errors[name],
                };
                let vars = cx.vars(&ctx.value, input);
                Err(Interrupt::Fault(raised(def, input, &vars, at)?))
            }
            TaskKind::Wait(duration) => {
                timers::wait(cx, duration, input, ctx).await?;
                Ok((input.clone(), then))
            }
            TaskKind::For(f) => Ok(flow_result(
                fanout::for_loop(cx, f, input, ctx).await?,
                then,
            )),
            TaskKind::Fork(f) => Ok((fanout::fork(cx, f, input, ctx).await?, then)),
            TaskKind::Try(t) => Ok(flow_result(
                retry::try_catch(cx, t, input, ctx).await?,
                then,
            )),
            TaskKind::Emit(emit) => Ok((events::emit(cx, emit, input, ctx)?, then)),
            TaskKind::Call(call) => Ok((self::call(cx, call, input, ctx).await?, then)),
            TaskKind::Run(r) => match &r.process {
                program::Process::Workflow(sub) => {
                    Ok((subflow::run_workflow(cx, sub, r, input, ctx).await?, then))
                }
                program::Process::Container(_)
                | program::Process::Shell(_)
                | program::Process::Script(_) => {
                    Ok((process::run_process(cx, r, input, ctx).await?, then))
                }
            },
            TaskKind::Listen(l) => Ok((events::listen(cx, l, input, ctx).await?, then)),
            TaskKind::Messages(m) => Ok((messages::handle(cx, m, input, ctx).await?, then)),
        }
    }
    .boxed()
}

/// Runs a `call` task: HTTP and OpenAPI calls, or a function of `use.functions` (run as
/// a task of its own under `{key}/call`).
async fn call(cx: TaskCx<'_>, call: &Call, input: &Value, ctx: &mut Ctx) -> Res<Value> {
    // The call's span, a client span: HTTP requests and worker tasks made inside it carry
    // it as their `traceparent`.
    let span = tracing::info_span!(
        target: "otel",
        "call",
        otel.name = %format!("call {}", call.kind_name()),
        otel.kind = "client",
        call.kind = call.kind_name(),
        task.reference = %cx.task.reference,
    );
    tracing::Instrument::instrument(call_inner(cx, call, input, ctx), span).await
}

async fn call_inner(cx: TaskCx<'_>, call: &Call, input: &Value, ctx: &mut Ctx) -> Res<Value> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    match call {
        Call::Http(http) => {
            let vars = cx.vars(&ctx.value, input);
            super::http::call(run, ctx.causal, http, key, at, input, &vars).await
        }
        Call::OpenApi(openapi) => {
            let vars = cx.vars(&ctx.value, input);
            super::http::openapi(run, ctx.causal, openapi, key, at, input, &vars).await
        }
        Call::Grpc(grpc) => {
            let vars = cx.vars(&ctx.value, input);
            let timeout = cx.task.task.timeout.as_ref();
            super::grpc::call(run, ctx.causal, grpc, timeout, key, at, input, &vars).await
        }
        Call::AsyncApi(asyncapi) => super::asyncapi::call(cx, asyncapi, input, ctx).await,
        Call::A2a(a2a) => {
            let vars = cx.vars(&ctx.value, input);
            super::a2a::call(run, ctx.causal, a2a, key, at, input, &vars).await
        }
        Call::Mcp(mcp) => {
            let vars = cx.vars(&ctx.value, input);
            super::mcp::call(run, ctx.causal, mcp, at, input, &vars).await
        }
        Call::Function(function) => {
            let CallTarget::Use(name) = &function.target else {
                return super::catalog::call(cx, function, input, ctx).await;
            };
            let body = &run.wf.use_.functions[name];
            let args = match &function.with {
                Some(with) => cx.eval(with, input, &ctx.value)?,
                None => input.clone(),
            };
            let callee = NamedTask {
                name: name.clone(),
                reference: format!("/use/functions/{name}"),
                task: body.clone(),
            };
            let stepped =
                run_task(run, &callee, format!("{key}/call"), cx.scope, args, ctx).await?;
            Ok(stepped.output)
        }
    }
}

fn flow_result(flow: Flow, then: FlowDirective) -> (Value, FlowDirective) {
    match flow {
        Flow::Done(v) | Flow::Exit(v) => (v, then),
        Flow::End(v) => (v, FlowDirective::End),
        Flow::Break(v) => (v, FlowDirective::Break),
        Flow::NextIteration(v) => (v, FlowDirective::NextIteration),
    }
}
