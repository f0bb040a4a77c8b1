//! The interpreter: walks task lists and tasks, replays what the journal holds
//! and runs the rest, applying the DSL's data flow at every task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use dsl::model::{
    Backoff, Catch, Concurrency, Duration, ErrorDef, ErrorRef, FlowDirective, For, Fork, NamedTask,
    Process, ProcessReturn, RetryPolicy, RetryRef, Schema, SchemaSource, TaskKind, TaskList,
    TimeoutRef, Try,
};
use expr::{Problem, Template, types};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Value, json};
use store::{Json, Status, StatusChange, Step, StepState, Ticket};

use crate::run::{Run, Scope, date_time, iso, problem_json};
use crate::{Interrupt, Outcome, ProcessSpec};

type Res<T> = Result<T, Interrupt>;

/// The step that holds the transformed workflow input; its presence means "started".
const INPUT_KEY: &str = "/input";

/// What travels along one path of execution: `$context`, a count of its changes (so
/// a task records the context only when it changed), and the path's causal ticket:
/// the last journal write this path's data depends on.
pub(crate) struct Ctx {
    value: Value,
    changes: u64,
    causal: Ticket,
}

impl Ctx {
    fn set(&mut self, value: Value) {
        self.value = value;
        self.changes += 1;
    }

    fn advance(&mut self, ticket: Ticket) {
        self.causal = self.causal.max(ticket);
    }

    /// A copy for a concurrent branch.
    fn branch(&self) -> Ctx {
        Ctx {
            value: self.value.clone(),
            changes: 0,
            causal: self.causal,
        }
    }

    /// Takes the contexts of finished branches in order: the last that changed wins;
    /// the causal history is all of theirs.
    fn join(&mut self, branches: impl IntoIterator<Item = Ctx>) {
        for b in branches {
            self.advance(b.causal);
            if b.changes > 0 {
                self.set(b.value);
            }
        }
    }
}

/// Where a list ended: at its last task (or an `exit`), or at an `end` for the whole workflow.
enum Flow {
    Done(Value),
    End(Value),
}

/// A finished task: its output and where the flow goes next.
struct Stepped {
    output: Value,
    then: FlowDirective,
}

/// Runs `run` to its end; dropping the returned future abandons the run (to resume
/// from its journal) rather than cancelling it. The entry point for a run's tree.
pub(crate) async fn execute_detachable(run: Arc<Run>) -> Result<Outcome, String> {
    Detaching {
        flag: run.detached.clone(),
        future: Box::pin(execute(run)),
    }
    .await
}

/// A future that marks its run's tree detached when dropped. `Drop::drop` runs
/// before the inner future is dropped, so the tasks dropped with it see the mark.
struct Detaching<F> {
    flag: Arc<AtomicBool>,
    future: std::pin::Pin<Box<F>>,
}

impl<F: Future> Future for Detaching<F> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.future.as_mut().poll(cx)
    }
}

impl<F> Drop for Detaching<F> {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Release);
    }
}

/// Records a cancellation, of a task or of the whole run, if dropped while armed:
/// the future it lives in was dropped, or ended in [`Interrupt::Cancelled`].
struct Unfinished<'a> {
    run: &'a Run,
    /// The task's reference; `None` for the workflow itself.
    task: Option<&'a str>,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.armed || !self.run.dropping_cancels() {
            return;
        }
        match self.task {
            Some(reference) => {
                let event = self.run.task_event(reference, "cancelledAt", None);
                self.run.record(
                    vec![],
                    vec![("io.serverlessworkflow.task.cancelled.v1", event)],
                    None,
                );
            }
            None => {
                let (change, event) = workflow_cancelled(self.run);
                self.run.record(vec![], vec![event], Some(change));
            }
        }
    }
}

fn workflow_cancelled(run: &Run) -> (StatusChange, (&'static str, Json)) {
    let at = run.now();
    (
        StatusChange {
            status: Status::Cancelled,
            output: None,
            error: None,
            at,
        },
        (
            "io.serverlessworkflow.workflow.cancelled.v1",
            Json::of(&json!({"name": run.qualified_name, "cancelledAt": iso(at)})),
        ),
    )
}

/// Records `workflow.suspended` (and the `suspended` status) each time the run's pause
/// flag rises, and `workflow.resumed` (back to `running`) each time it falls. Never
/// returns: it lives as long as the run.
async fn record_pauses(run: &Run) -> std::convert::Infallible {
    let mut paused = run.paused.clone();
    let mut was = run.started_suspended;
    loop {
        let now = *paused.borrow_and_update();
        if now != was {
            was = now;
            record_pause(run, now);
        }
        if paused.changed().await.is_err() {
            // Nobody can pause or resume this run any more.
            return std::future::pending().await;
        }
    }
}

fn record_pause(run: &Run, now: bool) {
    let at = run.now();
    let (status, type_, field) = if now {
        (
            Status::Suspended,
            "io.serverlessworkflow.workflow.suspended.v1",
            "suspendedAt",
        )
    } else {
        (
            Status::Running,
            "io.serverlessworkflow.workflow.resumed.v1",
            "resumedAt",
        )
    };
    run.record(
        vec![],
        vec![(
            type_,
            Json::of(&json!({"name": run.qualified_name, field: iso(at)})),
        )],
        Some(StatusChange {
            status,
            output: None,
            error: None,
            at,
        }),
    );
}

/// Runs `run` to its end and records how it ended. Dropped before that (a child
/// workflow whose parent task was cancelled), it records the run as cancelled.
async fn execute(run: Arc<Run>) -> Result<Outcome, String> {
    let mut unfinished = Unfinished {
        run: &run,
        task: None,
        armed: true,
    };
    let result = tokio::select! {
        r = workflow(&run) => r,
        _ = run.cancel.cancelled() => Err(Interrupt::Cancelled),
        never = record_pauses(&run) => match never {},
    };
    unfinished.armed = false;
    let at = run.now();
    let name = run.qualified_name.clone();
    let (change, outcome, event) = match result {
        Ok(output) => (
            StatusChange {
                status: Status::Completed,
                output: Some(output.clone()),
                error: None,
                at,
            },
            Outcome::Completed(output.clone()),
            (
                "io.serverlessworkflow.workflow.completed.v1",
                Json::of(&json!({"name": name, "completedAt": iso(at), "output": output})),
            ),
        ),
        Err(Interrupt::Fault(problem)) => (
            StatusChange {
                status: Status::Faulted,
                output: None,
                error: Some(problem_json(&problem)),
                at,
            },
            Outcome::Faulted(problem.clone()),
            (
                "io.serverlessworkflow.workflow.faulted.v1",
                Json::of(
                    &json!({"name": name, "faultedAt": iso(at), "error": problem_json(&problem)}),
                ),
            ),
        ),
        Err(Interrupt::Cancelled) => {
            let (change, event) = workflow_cancelled(&run);
            (change, Outcome::Cancelled, event)
        }
        Err(Interrupt::Store(e)) => return Err(e),
    };
    let ticket = run.record(vec![], vec![event], Some(change));
    run.store.durable(ticket).await.map_err(|e| e.to_string())?;
    Ok(outcome)
}

async fn workflow(run: &Arc<Run>) -> Res<Value> {
    let wf = run.wf.clone();
    if let Some((name, _)) = wf.use_.extensions.first() {
        // Running without them would quietly change what the workflow does.
        return Err(not_supported(
            &format!("/use/extensions/0/{name}"),
            "`use.extensions`",
        ));
    }
    let empty = Value::Null;
    let (input, causal) = match run.replayed(INPUT_KEY) {
        Some(StepState::Completed { output, .. }) => (output.clone(), Ticket(0)),
        _ => {
            let raw = run.workflow_var["input"].clone();
            let scope = Scope::default();
            let transformed = match &wf.input {
                Some(input) => {
                    if let Some(schema) = &input.schema {
                        check_schema(schema, &raw, "the workflow input", "/input")?;
                    }
                    match &input.from {
                        Some(from) => eval(
                            from,
                            &raw,
                            &run.vars(&scope, &empty, &raw, &empty, None),
                            "/",
                        )?,
                        None => raw,
                    }
                }
                None => raw,
            };
            let doc = &wf.document;
            let started = json!({
                "name": run.qualified_name,
                "definition": {"name": doc.name, "namespace": doc.namespace, "version": doc.version.to_string()},
                "startedAt": iso(run.now()),
            });
            let ticket = run.record(
                vec![Step {
                    key: INPUT_KEY.into(),
                    state: StepState::Completed {
                        output: transformed.clone(),
                        context: None,
                    },
                }],
                // The definition was validated when the execution was accepted, and
                // parsed again (with its validation) when this run loaded it: reported
                // as two events, as a workflow runner's progress callbacks expect.
                vec![
                    (
                        "io.serverlessworkflow.workflow.started.v1",
                        Json::of(&started),
                    ),
                    (
                        "dev.skein.workflow.validating.v1",
                        Json::of(&json!({"name": run.qualified_name})),
                    ),
                    (
                        "dev.skein.workflow.validated.v1",
                        Json::of(&json!({"name": run.qualified_name, "tasks": wf.do_.tasks.len()})),
                    ),
                ],
                Some(StatusChange {
                    status: Status::Running,
                    output: None,
                    error: None,
                    at: run.now(),
                }),
            );
            (transformed, ticket)
        }
    };

    // The spec's data flow: the transformed input is also the initial `$context`.
    let mut ctx = Ctx {
        value: input.clone(),
        changes: 0,
        causal,
    };
    let top = Scope::default();
    let body = run_list(run, &wf.do_, "/do".into(), &top, input, &mut ctx);
    let flow = match &wf.timeout {
        Some(timeout) => with_timeout(run, "/timeout", timeout, "/", "The workflow", body).await?,
        None => body.await?,
    };
    let output = match flow {
        Flow::Done(v) | Flow::End(v) => v,
    };
    match &wf.output {
        Some(out) => {
            let output = match &out.as_ {
                Some(as_) => eval(
                    as_,
                    &output,
                    &run.vars(&Scope::default(), &ctx.value, &empty, &empty, None),
                    "/",
                )?,
                None => output,
            };
            if let Some(schema) = &out.schema {
                check_schema(schema, &output, "the workflow output", "/output")?;
            }
            run.check_size(&output, "the workflow output", "/output")?;
            Ok(output)
        }
        None => Ok(output),
    }
}

fn run_list<'a>(
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
        while i < list.tasks.len() {
            if run.cancel.is_cancelled() {
                return Err(Interrupt::Cancelled);
            }
            let nt = &list.tasks[i];
            visits[i] += 1;
            // A task reached again through `then` gets a new key for each visit.
            let task_key = match visits[i] {
                1 => format!("{key}/{i}/{}", nt.name),
                n => format!("{key}/{i}/{}@{n}", nt.name),
            };
            let stepped = run_task(run, nt, task_key, scope, input, ctx).await?;
            input = stepped.output;
            match stepped.then {
                FlowDirective::Continue => i += 1,
                FlowDirective::Exit => break,
                FlowDirective::End => return Ok(Flow::End(input)),
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

fn directive_json(d: &FlowDirective) -> Value {
    Value::String(match d {
        FlowDirective::Continue => "continue".into(),
        FlowDirective::Exit => "exit".into(),
        FlowDirective::End => "end".into(),
        FlowDirective::Goto(name) => name.clone(),
    })
}

fn directive_from(v: &Value, fallback: &FlowDirective) -> FlowDirective {
    match v.as_str() {
        Some("continue") => FlowDirective::Continue,
        Some("exit") => FlowDirective::Exit,
        Some("end") => FlowDirective::End,
        Some(name) => FlowDirective::Goto(name.to_string()),
        None => fallback.clone(),
    }
}

fn run_task<'a>(
    run: &'a Arc<Run>,
    nt: &'a NamedTask,
    key: String,
    scope: &'a Scope,
    raw_input: Value,
    ctx: &'a mut Ctx,
) -> BoxFuture<'a, Res<Stepped>> {
    async move {
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
                    "io.serverlessworkflow.task.created.v1",
                    run.task_event(&nt.reference, "createdAt", None),
                ),
                (
                    "io.serverlessworkflow.task.started.v1",
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
        let result = task_body(run, nt, &key, scope, raw_input, ctx, &task_var).await;
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
                    vec![("io.serverlessworkflow.task.completed.v1", event)],
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
                    vec![("io.serverlessworkflow.task.faulted.v1", event)],
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

/// The DSL's data flow around one task: `if`, input, the task itself, output, export.
async fn task_body(
    run: &Arc<Run>,
    nt: &NamedTask,
    key: &str,
    scope: &Scope,
    raw_input: Value,
    ctx: &mut Ctx,
    task_var: &Value,
) -> Res<Stepped> {
    let task = &nt.task;
    let at = nt.reference.as_str();
    if let Some(cond) = &task.if_ {
        let vars = run.vars(scope, &ctx.value, &raw_input, task_var, None);
        let run_it = cond
            .eval_bool(&raw_input, &vars)
            .map_err(|e| e.into_problem(at))?;
        if !run_it {
            // A skipped task outputs its raw input.
            return Ok(Stepped {
                output: raw_input,
                then: task.then.clone(),
            });
        }
    }
    let input = match &task.input {
        Some(spec) => {
            if let Some(schema) = &spec.schema {
                check_schema(
                    schema,
                    &raw_input,
                    &format!("the input of task `{}`", nt.name),
                    at,
                )?;
            }
            match &spec.from {
                Some(from) => eval(
                    from,
                    &raw_input,
                    &run.vars(scope, &ctx.value, &raw_input, task_var, None),
                    at,
                )?,
                None => raw_input,
            }
        }
        None => raw_input,
    };

    let body = kind(run, nt, key, scope, &input, ctx, task_var);
    let (raw_output, then) = match &task.timeout {
        Some(timeout) => {
            with_timeout(
                run,
                &format!("{key}/timeout"),
                timeout,
                at,
                &format!("Task `{}`", nt.name),
                body,
            )
            .await?
        }
        None => body.await?,
    };

    let mut task_var = task_var.clone();
    if task.reads_task {
        task_var["output"] = raw_output.clone();
    }
    let output = match task.output.as_ref().and_then(|o| o.as_.as_ref()) {
        Some(as_) => eval(
            as_,
            &raw_output,
            &run.vars(scope, &ctx.value, &input, &task_var, None),
            at,
        )?,
        None => raw_output,
    };
    if let Some(schema) = task.output.as_ref().and_then(|o| o.schema.as_ref()) {
        check_schema(
            schema,
            &output,
            &format!("the output of task `{}`", nt.name),
            at,
        )?;
    }
    run.check_size(&output, &format!("the output of task `{}`", nt.name), at)?;
    if let Some(export) = &task.export
        && let Some(as_) = &export.as_
    {
        let context = eval(
            as_,
            &output,
            &run.vars(scope, &ctx.value, &input, &task_var, Some(&output)),
            at,
        )?;
        if let Some(schema) = &export.schema {
            check_schema(
                schema,
                &context,
                &format!("the context exported by task `{}`", nt.name),
                at,
            )?;
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

/// Runs the kind-specific part of a task on its transformed input.
fn kind<'a>(
    run: &'a Arc<Run>,
    nt: &'a NamedTask,
    key: &'a str,
    scope: &'a Scope,
    input: &'a Value,
    ctx: &'a mut Ctx,
    task_var: &'a Value,
) -> BoxFuture<'a, Res<(Value, FlowDirective)>> {
    async move {
        let task = &nt.task;
        let at = nt.reference.as_str();
        let then = task.then.clone();
        match &task.kind {
            TaskKind::Set(template) => {
                let vars = run.vars(scope, &ctx.value, input, task_var, None);
                Ok((eval(template, input, &vars, at)?, then))
            }
            TaskKind::Do(list) => Ok(flow_result(
                run_list(run, list, format!("{key}/do"), scope, input.clone(), ctx).await?,
                then,
            )),
            TaskKind::Switch(switch) => {
                let vars = run.vars(scope, &ctx.value, input, task_var, None);
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
                let vars = run.vars(scope, &ctx.value, input, task_var, None);
                Err(Interrupt::Fault(raised(def, input, &vars, at)?))
            }
            TaskKind::Wait(duration) => {
                let vars = run.vars(scope, &ctx.value, input, task_var, None);
                let ms = duration_ms(duration, input, &vars, at)?;
                timer(run, ctx, format!("{key}/wait"), ms).await?;
                Ok((input.clone(), then))
            }
            TaskKind::For(f) => Ok(flow_result(
                for_loop(run, nt, f, key, scope, input, ctx, task_var).await?,
                then,
            )),
            TaskKind::Fork(f) => Ok((fork(run, f, key, scope, input, ctx).await?, then)),
            TaskKind::Try(t) => Ok(flow_result(
                try_catch(run, t, key, scope, input, ctx, at).await?,
                then,
            )),
            TaskKind::Emit(emit) => {
                let vars = run.vars(scope, &ctx.value, input, task_var, None);
                let mut event = serde_json::Map::new();
                for (name, template) in &emit.event {
                    event.insert(name.clone(), eval(template, input, &vars, at)?);
                }
                // The same on a re-run after a crash (the step key holds the iteration
                // and attempt), so that whoever acts on the event once can tell.
                event
                    .entry("id")
                    .or_insert_with(|| Value::String(format!("{}:{key}", run.id)));
                event.insert("specversion".into(), json!("1.0"));
                event
                    .entry("time")
                    .or_insert_with(|| Value::String(iso(run.now())));
                if event.contains_key("data") {
                    event
                        .entry("datacontenttype")
                        .or_insert_with(|| json!("application/json"));
                }
                let event = Value::Object(event);
                let type_ = event["type"].as_str().unwrap_or_default().to_string();
                run.record(vec![], vec![(type_.as_str(), Json::of(&event))], None);
                Ok((event, then))
            }
            TaskKind::Call(call) => match &**call {
                dsl::model::Call::Http(http) => {
                    let vars = run.vars(scope, &ctx.value, input, task_var, None);
                    Ok((
                        crate::http::call(run, ctx.causal, http, key, at, input, &vars).await?,
                        then,
                    ))
                }
                dsl::model::Call::OpenApi(openapi) => {
                    let vars = run.vars(scope, &ctx.value, input, task_var, None);
                    Ok((
                        crate::http::openapi(run, ctx.causal, openapi, key, at, input, &vars)
                            .await?,
                        then,
                    ))
                }
                dsl::model::Call::Function(function) => {
                    let dsl::model::CallTarget::Use(name) = &function.target else {
                        return Err(not_supported(at, "calling cataloged or remote functions"));
                    };
                    let body = &run.wf.use_.functions[name];
                    let args = match &function.with {
                        Some(with) => eval(
                            with,
                            input,
                            &run.vars(scope, &ctx.value, input, task_var, None),
                            at,
                        )?,
                        None => input.clone(),
                    };
                    let callee = NamedTask {
                        name: name.clone(),
                        reference: format!("/use/functions/{name}"),
                        task: body.clone(),
                    };
                    let stepped =
                        run_task(run, &callee, format!("{key}/call"), scope, args, ctx).await?;
                    Ok((stepped.output, then))
                }
                other => Err(not_supported(at, call_name(other))),
            },
            TaskKind::Run(r) => match &r.process {
                Process::Shell(shell) => {
                    let vars = run.vars(scope, &ctx.value, input, task_var, None);
                    let command = text(&shell.command, input, &vars, at)?;
                    let spec = process_spec(
                        (
                            "sh".into(),
                            vec!["-c".to_string(), command, "sh".to_string()],
                        ),
                        (
                            &shell.arguments,
                            shell.environment.as_ref(),
                            shell.stdin.as_ref(),
                        ),
                        input,
                        &vars,
                        at,
                    )?;
                    Ok((
                        process(run, key, ctx.causal, spec, r.return_, r.await_, at, input).await?,
                        then,
                    ))
                }
                Process::Container(_) => Err(not_supported(
                    at,
                    "`run.container` (it needs a container runtime)",
                )),
                Process::Script(script) => {
                    let dsl::model::ScriptSource::Code(code) = &script.source else {
                        return Err(not_supported(at, "scripts from external resources"));
                    };
                    let vars = run.vars(scope, &ctx.value, input, task_var, None);
                    // The code is passed on the command line, so the engine writes no file.
                    let command = match script.language.to_ascii_lowercase().as_str() {
                        "python" | "python3" => {
                            ("python3".to_string(), vec!["-c".to_string(), code.clone()])
                        }
                        "js" | "javascript" | "node" => {
                            let mut args = Vec::new();
                            if code.lines().any(|l| l.trim_start().starts_with("import ")) {
                                args.push("--input-type=module".to_string());
                            }
                            // `skein` stands where a script's path would, so arguments start at argv[2].
                            args.extend(["-e".to_string(), code.clone(), "skein".to_string()]);
                            ("node".to_string(), args)
                        }
                        other => {
                            return Err(not_supported(
                                at,
                                &format!("scripts in `{other}` (only python and js)"),
                            ));
                        }
                    };
                    let spec = process_spec(
                        command,
                        (
                            &script.arguments,
                            script.environment.as_ref(),
                            script.stdin.as_ref(),
                        ),
                        input,
                        &vars,
                        at,
                    )?;
                    Ok((
                        process(run, key, ctx.causal, spec, r.return_, r.await_, at, input).await?,
                        then,
                    ))
                }
                Process::Workflow(sub) => {
                    let vars = run.vars(scope, &ctx.value, input, task_var, None);
                    let child_input = match &sub.input {
                        Some(t) => eval(t, input, &vars, at)?,
                        None => input.clone(),
                    };
                    run.barrier(ctx.causal).await?;
                    if !r.await_ {
                        // Started, not awaited: the child runs on (and is resumable on its own).
                        // Its tree is its own: a shutdown detaches it, the parent's end does not.
                        let (run, sub, key, at) =
                            (run.clone(), sub.clone(), key.to_string(), at.to_string());
                        let flag = Arc::new(AtomicBool::new(false));
                        tokio::spawn(Detaching {
                            flag: flag.clone(),
                            future: Box::pin(async move {
                                subflow(&run, &sub, &key, &at, child_input, flag).await
                            }),
                        });
                        return Ok((input.clone(), then));
                    }
                    let output =
                        subflow(run, sub, key, at, child_input, run.detached.clone()).await?;
                    Ok((
                        if r.return_ == ProcessReturn::None {
                            Value::Null
                        } else {
                            output
                        },
                        then,
                    ))
                }
            },
            TaskKind::Listen(l) => {
                let (events, ticket) = {
                    let vars = run.vars(scope, &ctx.value, input, task_var, None);
                    crate::listen::listen(run, l, key, &vars, at).await?
                };
                if let Some(ticket) = ticket {
                    ctx.advance(ticket);
                }
                let Some(each) = &l.foreach else {
                    return Ok((Value::Array(events), then));
                };
                let mut outputs = Vec::with_capacity(events.len());
                for (i, event) in events.into_iter().enumerate() {
                    let scope_i = scope.with([
                        (Arc::from(each.item.as_str()), event.clone()),
                        (Arc::from(each.at.as_str()), json!(i)),
                    ]);
                    let mut out = match &each.do_ {
                        Some(list) => match run_list(
                            run,
                            list,
                            format!("{key}/foreach/{i}/do"),
                            &scope_i,
                            event,
                            ctx,
                        )
                        .await?
                        {
                            Flow::Done(v) | Flow::End(v) => v,
                        },
                        None => event,
                    };
                    if let Some(as_) = each.output.as_ref().and_then(|o| o.as_.as_ref()) {
                        out = eval(
                            as_,
                            &out,
                            &run.vars(&scope_i, &ctx.value, input, task_var, None),
                            at,
                        )?;
                    }
                    if let Some(as_) = each.export.as_ref().and_then(|e| e.as_.as_ref()) {
                        let context = eval(
                            as_,
                            &out,
                            &run.vars(&scope_i, &ctx.value, input, task_var, Some(&out)),
                            at,
                        )?;
                        ctx.set(context);
                    }
                    outputs.push(out);
                }
                Ok((Value::Array(outputs), then))
            }
        }
    }
    .boxed()
}

/// Runs a workflow from the catalog as a child execution with its own journal. Its
/// id comes from the parent's and the task's key, so a resumed parent resumes it.
async fn subflow(
    run: &Run,
    sub: &dsl::model::SubflowRef,
    key: &str,
    at: &str,
    input: Value,
    detached: Arc<AtomicBool>,
) -> Res<Value> {
    let child_id = format!("{}{key}", run.id);
    let store_err = |e: store::Error| Interrupt::Store(e.to_string());
    let reference = format!("{}/{}:{}", sub.namespace, sub.name, sub.version);
    let invalid = |first: String| {
        crate::http::configuration(
            at,
            "Invalid workflow",
            format!("`{reference}` does not validate: {first}"),
        )
    };
    // A child that ran before resumes from what it stored, as any execution does: the
    // catalog may have changed since. One that completed or faulted keeps its outcome,
    // rather than replay to a second end; a cancelled one runs again, as the parent
    // runs its task again.
    let (workflow, raw_input) = match run.store.execution(&child_id).await.map_err(store_err)? {
        Some(done) if matches!(done.status, Status::Completed | Status::Faulted) => {
            return outcome_result(crate::stored_outcome(&done));
        }
        Some(existing) => (
            crate::parse_definition(&existing.definition).map_err(invalid)?,
            existing.input,
        ),
        None => {
            let source = run
                .effects
                .load_workflow(&sub.namespace, &sub.name, &sub.version)
                .await
                .map_err(|e| {
                    crate::http::configuration(
                        at,
                        "Unreadable workflow catalog",
                        format!("cannot read `{reference}`: {e}"),
                    )
                })?
                .ok_or_else(|| {
                    crate::http::configuration(
                        at,
                        "Unknown workflow",
                        format!("the catalog has no workflow `{reference}`"),
                    )
                })?;
            let workflow = crate::parse_definition(&source).map_err(invalid)?;
            run.store
                .create(store::NewExecution {
                    id: child_id.clone(),
                    namespace: sub.namespace.clone(),
                    name: sub.name.clone(),
                    version: sub.version.clone(),
                    definition: source,
                    input: input.clone(),
                    labels: store::Labels::new(),
                    project: run.project.clone(),
                    created_at: run.now(),
                })
                .await
                .map_err(store_err)?;
            (workflow, input)
        }
    };
    let journal = run.store.journal(&child_id).await.map_err(store_err)?;
    let child = Arc::new(Run::new(crate::run::RunParts {
        id: child_id,
        wf: Arc::new(workflow),
        store: run.store.clone(),
        effects: run.effects.clone(),
        clock: run.clock.clone(),
        observer: run.observer.clone(),
        cancel: run.cancel.child_token(),
        paused: run.paused.clone(),
        suspended: false,
        project: run.project.clone(),
        journal,
        raw_input,
        started_at: run.now(),
        secrets: run.given_secrets.clone(),
        max_state_bytes: run.max_state_bytes,
        wake: Arc::new(tokio::sync::Notify::new()),
        detached,
    }));
    outcome_result(Box::pin(execute(child)).await.map_err(Interrupt::Store)?)
}

/// A child execution's outcome, as its parent task's result.
fn outcome_result(outcome: Outcome) -> Res<Value> {
    match outcome {
        Outcome::Completed(output) => Ok(output),
        Outcome::Faulted(problem) => Err(Interrupt::Fault(problem)),
        Outcome::Cancelled => Err(Interrupt::Cancelled),
    }
}

fn call_name(call: &dsl::model::Call) -> &'static str {
    match call {
        dsl::model::Call::Grpc(_) => "`call: grpc`",
        dsl::model::Call::OpenApi(_) => "`call: openapi`",
        dsl::model::Call::AsyncApi(_) => "`call: asyncapi`",
        dsl::model::Call::A2a(_) => "`call: a2a`",
        dsl::model::Call::Mcp(_) => "`call: mcp`",
        _ => "this call",
    }
}

fn flow_result(flow: Flow, then: FlowDirective) -> (Value, FlowDirective) {
    match flow {
        Flow::Done(v) => (v, then),
        Flow::End(v) => (v, FlowDirective::End),
    }
}

#[allow(clippy::too_many_arguments)]
async fn for_loop(
    run: &Arc<Run>,
    nt: &NamedTask,
    f: &For,
    key: &str,
    scope: &Scope,
    input: &Value,
    ctx: &mut Ctx,
    task_var: &Value,
) -> Res<Flow> {
    let at = nt.reference.as_str();
    let items = {
        let vars = run.vars(scope, &ctx.value, input, task_var, None);
        match f.in_.eval(input, &vars).map_err(|e| e.into_problem(at))? {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            Value::Object(map) => map.into_iter().map(|(_, v)| v).collect(),
            other => {
                return Err(expression_problem(
                    at,
                    format!(
                        "`for.in` must yield a list, but it yielded {}",
                        kind_of(&other)
                    ),
                ));
            }
        }
    };
    let limit = match &f.concurrency {
        Concurrency::Fixed(n) => n.get() as usize,
        Concurrency::Expr(e) => {
            let vars = run.vars(scope, &ctx.value, input, task_var, None);
            match e.eval(input, &vars).map_err(|e| e.into_problem(at))? {
                Value::Number(n) if n.as_u64().is_some_and(|n| n >= 1) => {
                    n.as_u64().unwrap_or(1) as usize
                }
                other => {
                    return Err(expression_problem(
                        at,
                        format!(
                            "`for.concurrency` must yield a positive integer, but it yielded {other}"
                        ),
                    ));
                }
            }
        }
    };
    let bindings = |i: usize, item: &Value| {
        scope.with([
            (Arc::from(f.each.as_str()), item.clone()),
            (Arc::from(f.at.as_str()), json!(i)),
        ])
    };

    if limit == 1 {
        // The DSL's loop: each iteration's input is the previous iteration's output.
        let mut current = input.clone();
        for (i, item) in items.iter().enumerate() {
            let scope_i = bindings(i, item);
            if let Some(w) = &f.while_ {
                let vars = run.vars(&scope_i, &ctx.value, &current, task_var, None);
                if !w
                    .eval_bool(&current, &vars)
                    .map_err(|e| e.into_problem(at))?
                {
                    break;
                }
            }
            match run_list(
                run,
                &f.do_,
                format!("{key}/for/{i}/do"),
                &scope_i,
                current,
                ctx,
            )
            .await?
            {
                Flow::Done(v) => current = v,
                Flow::End(v) => return Ok(Flow::End(v)),
            }
        }
        return Ok(Flow::Done(current));
    }

    // The fan-out extension: at most `limit` iterations at once, outputs in index order.
    let total = items.len();
    let mut outputs: Vec<Option<Value>> = vec![None; total];
    let mut contexts: Vec<Option<Ctx>> = (0..total).map(|_| None).collect();
    let mut running = FuturesUnordered::new();
    let (mut next, mut done, mut stopped, mut reported) = (0usize, 0usize, false, 0usize);
    loop {
        while !stopped && running.len() < limit && next < total {
            let i = next;
            let scope_i = bindings(i, &items[i]);
            if let Some(w) = &f.while_ {
                let vars = run.vars(&scope_i, &ctx.value, input, task_var, None);
                if !w.eval_bool(input, &vars).map_err(|e| e.into_problem(at))? {
                    stopped = true;
                    break;
                }
            }
            let mut branch = ctx.branch();
            let list_key = format!("{key}/for/{i}/do");
            running.push(async move {
                let result =
                    run_list(run, &f.do_, list_key, &scope_i, input.clone(), &mut branch).await;
                (i, result, branch)
            });
            next += 1;
        }
        let Some((i, result, branch)) = running.next().await else {
            break;
        };
        // A fault ends the loop: returning drops (cancels) the iterations still running.
        let value = match result? {
            Flow::Done(v) | Flow::End(v) => v,
        };
        outputs[i] = Some(value);
        contexts[i] = Some(branch);
        done += 1;
        // At most one progress event per percent done, and always the last one.
        let percent = done * 100 / total;
        if percent > reported || done == total {
            reported = percent;
            let progress = json!({
                "workflow": run.qualified_name, "task": nt.reference,
                "total": total, "done": done, "failed": 0, "running": running.len(),
            });
            run.record(
                vec![],
                vec![("dev.skein.task.progress.v1", Json::of(&progress))],
                None,
            );
        }
    }
    ctx.join(contexts.into_iter().flatten());
    Ok(Flow::Done(Value::Array(
        outputs.into_iter().flatten().collect(),
    )))
}

async fn fork(
    run: &Arc<Run>,
    f: &Fork,
    key: &str,
    scope: &Scope,
    input: &Value,
    ctx: &mut Ctx,
) -> Res<Value> {
    let branches = f.branches.tasks.iter().enumerate().map(|(i, nt)| {
        let mut branch = ctx.branch();
        let branch_key = format!("{key}/fork/branches/{i}/{}", nt.name);
        async move {
            let stepped = run_task(run, nt, branch_key, scope, input.clone(), &mut branch).await?;
            Ok::<_, Interrupt>((stepped.output, branch))
        }
        .boxed()
    });
    if f.compete {
        // The first branch to finish wins; dropping the others cancels them.
        let ((output, branch), _rest) = futures::future::select_ok(branches).await?;
        ctx.join([branch]);
        Ok(output)
    } else {
        let results = futures::future::try_join_all(branches).await?;
        let (outputs, contexts): (Vec<Value>, Vec<Ctx>) = results.into_iter().unzip();
        ctx.join(contexts);
        Ok(Value::Array(outputs))
    }
}

async fn try_catch(
    run: &Arc<Run>,
    t: &Try,
    key: &str,
    scope: &Scope,
    input: &Value,
    ctx: &mut Ctx,
    at: &str,
) -> Res<Flow> {
    let mut first_attempt_at = run.now();
    let attempt_limit = retry_policy(run, &t.catch)
        .and_then(|p| p.limit.attempt_duration.as_ref())
        .map(|d| duration_ms(d, &Value::Null, &expr::Vars::new(), at))
        .transpose()?;
    let mut attempt: u32 = 1;
    loop {
        let try_key = match attempt {
            1 => format!("{key}/try"),
            n => format!("{key}/try#{n}"),
        };
        let deadline_key = format!("{try_key}/timeout");
        let body = run_list(run, &t.try_, try_key, scope, input.clone(), ctx);
        let result = match attempt_limit {
            Some(ms) => with_deadline(run, &deadline_key, ms, at, "The attempt", body).await,
            None => body.await,
        };
        let problem = match result {
            Err(Interrupt::Fault(problem)) => problem,
            other => return other,
        };
        let catch = &t.catch;
        let error = problem_json(&problem);
        let scope_c = scope.with([(Arc::from(catch.as_.as_str()), error.clone())]);
        if !catches(run, catch, &problem, &error, &scope_c, &ctx.value, at)? {
            return Err(Interrupt::Fault(problem));
        }
        if let Some(policy) = retry_policy(run, catch) {
            if policy.limit.duration.is_some() && attempt == 1 {
                first_attempt_at = retry_window(run, key, first_attempt_at);
            }
            let timer_key = format!("{key}/retry#{attempt}");
            let delay = match run.replayed(&timer_key) {
                // Decided before the resume: the journaled deadline stands, whatever the
                // clock says now.
                Some(StepState::Timer { .. }) => Some(0),
                _ => retry_delay(
                    run,
                    policy,
                    attempt,
                    first_attempt_at,
                    &error,
                    &scope_c,
                    &ctx.value,
                    at,
                )?,
            };
            if let Some(delay) = delay {
                timer(run, ctx, timer_key, delay).await?;
                let event = run.task_event(at, "retriedAt", Some(("attempt", &json!(attempt + 1))));
                run.record(
                    vec![],
                    vec![("io.serverlessworkflow.task.retried.v1", event)],
                    None,
                );
                attempt += 1;
                continue;
            }
            if catch.do_.is_none() {
                // Retries are spent and nothing handles the error: it stands.
                return Err(Interrupt::Fault(problem));
            }
        }
        return match &catch.do_ {
            Some(list) => {
                let catch_key = match attempt {
                    1 => format!("{key}/catch/do"),
                    n => format!("{key}/catch#{n}/do"),
                };
                run_list(run, list, catch_key, &scope_c, input.clone(), ctx).await
            }
            None => Ok(Flow::Done(input.clone())),
        };
    }
}

/// When the retry window of the try task at `key` opened: journaled at its first fault,
/// so that `limit.duration` counts from the first attempt across a resume.
fn retry_window(run: &Run, key: &str, first_attempt_at: i64) -> i64 {
    let window_key = format!("{key}/retry-window");
    if let Some(StepState::Completed { output, .. }) = run.replayed(&window_key)
        && let Some(at) = output.as_i64()
    {
        return at;
    }
    run.record(
        vec![Step {
            key: window_key,
            state: StepState::Completed {
                output: json!(first_attempt_at),
                context: None,
            },
        }],
        vec![],
        None,
    );
    first_attempt_at
}

fn retry_policy<'w>(run: &'w Run, catch: &'w Catch) -> Option<&'w RetryPolicy> {
    match catch.retry.as_ref()? {
        RetryRef::Inline(policy) => Some(policy),
        RetryRef::Use(name) => run.wf.use_.retries.get(name),
    }
}

/// Whether `catch` takes this error: its static filter, then `when` and `exceptWhen`
/// (evaluated on the error, with the error variable in scope).
fn catches(
    run: &Run,
    catch: &Catch,
    problem: &Problem,
    error: &Value,
    scope: &Scope,
    context: &Value,
    at: &str,
) -> Res<bool> {
    if let Some(filter) = &catch.errors {
        let matched = filter
            .type_
            .as_deref()
            .is_none_or(|t| same_error_type(t, &problem.type_))
            && filter.status.is_none_or(|s| s == problem.status)
            && filter
                .instance
                .as_deref()
                .is_none_or(|i| problem.instance.as_deref() == Some(i))
            && filter
                .title
                .as_deref()
                .is_none_or(|t| problem.title.as_deref() == Some(t))
            && filter
                .details
                .as_deref()
                .is_none_or(|d| problem.detail.as_deref() == Some(d));
        if !matched {
            return Ok(false);
        }
    }
    let empty = Value::Null;
    let vars = run.vars(scope, context, error, &empty, None);
    conditions_hold(
        catch.when.as_ref(),
        catch.except_when.as_ref(),
        error,
        &vars,
        at,
    )
}

/// Whether `when` (if any) holds and `exceptWhen` (if any) does not, on the error.
fn conditions_hold(
    when: Option<&expr::Expr>,
    except_when: Option<&expr::Expr>,
    error: &Value,
    vars: &expr::Vars,
    at: &str,
) -> Res<bool> {
    let holds = |e: &expr::Expr| {
        e.eval_bool(error, vars)
            .map_err(|e| Interrupt::Fault(e.into_problem(at)))
    };
    if let Some(when) = when
        && !holds(when)?
    {
        return Ok(false);
    }
    if let Some(except) = except_when
        && holds(except)?
    {
        return Ok(false);
    }
    Ok(true)
}

/// Error types match exactly, or, for the DSL's standard types, by their last segment:
/// the conformance kit writes `…/dsl/errors/types/communication` for what the
/// reference calls `…/spec/1.0.0/errors/communication`.
pub(crate) fn same_error_type(filter: &str, actual: &str) -> bool {
    if filter == actual {
        return true;
    }
    let standard = |t: &str| t.starts_with("https://serverlessworkflow.io/");
    let last = |t: &str| t.rsplit('/').next().map(str::to_string);
    standard(filter) && standard(actual) && last(filter) == last(actual)
}

/// The delay before retry `attempt + 1`, or `None` when the policy allows no more.
#[allow(clippy::too_many_arguments)]
fn retry_delay(
    run: &Run,
    policy: &RetryPolicy,
    attempt: u32,
    first_attempt_at: i64,
    error: &Value,
    scope: &Scope,
    context: &Value,
    at: &str,
) -> Res<Option<i64>> {
    let empty = Value::Null;
    let vars = run.vars(scope, context, error, &empty, None);
    if !conditions_hold(
        policy.when.as_ref(),
        policy.except_when.as_ref(),
        error,
        &vars,
        at,
    )? {
        return Ok(None);
    }
    // `limit.attempt.count` is the number of retries after the first attempt.
    if policy.limit.attempt_count.is_some_and(|max| attempt > max) {
        return Ok(None);
    }
    let base = match &policy.delay {
        Some(d) => duration_ms(d, error, &vars, at)?,
        None => 0,
    };
    let mut delay = match policy.backoff {
        Backoff::Constant => base,
        Backoff::Linear => base.saturating_mul(attempt as i64),
        Backoff::Exponential => base.saturating_mul(1i64 << (attempt - 1).min(30)),
    };
    if let Some(jitter) = &policy.jitter {
        let from = duration_ms(&jitter.from, error, &vars, at)?;
        let to = duration_ms(&jitter.to, error, &vars, at)?.max(from);
        delay += fastrand::i64(from..=to);
    }
    if let Some(limit) = &policy.limit.duration {
        let limit = duration_ms(limit, error, &vars, at)?;
        if run.now() + delay - first_attempt_at > limit {
            return Ok(None);
        }
    }
    Ok(Some(delay))
}

/// A durable timer: its deadline is journaled (and durable) before the wait, so a
/// resumed execution waits only for what is left.
async fn timer(run: &Run, ctx: &mut Ctx, key: String, delay_ms: i64) -> Res<()> {
    let deadline = match run.replayed(&key) {
        Some(StepState::Timer { deadline }) => *deadline,
        _ => {
            let deadline = run.now() + delay_ms;
            let ticket = run.record(
                vec![Step {
                    key,
                    state: StepState::Timer { deadline },
                }],
                vec![],
                None,
            );
            ctx.advance(ticket);
            run.barrier(ticket).await?;
            deadline
        }
    };
    tokio::select! {
        _ = run.clock.sleep_until(deadline) => {}
        _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
    }
    // A paused run holds its timers: one that came due fires on resume.
    run.gate().await
}

/// Runs `body` with the timeout of a task or of the workflow; the deadline is journaled.
async fn with_timeout<T>(
    run: &Run,
    key: &str,
    timeout: &TimeoutRef,
    at: &str,
    what: &str,
    body: impl std::future::Future<Output = Res<T>>,
) -> Res<T> {
    let after = match timeout {
        TimeoutRef::Inline(t) => &t.after,
        TimeoutRef::Use(name) => &run.wf.use_.timeouts[name].after,
    };
    let empty = Value::Null;
    let ms = duration_ms(after, &empty, &expr::Vars::new(), at)?;
    with_deadline(run, key, ms, at, what, body).await
}

/// Runs `body` for at most `ms`, from a deadline journaled under `key`; past it, `body`
/// is dropped (its tasks cancelled) and `what` faults with a timeout error.
async fn with_deadline<T>(
    run: &Run,
    key: &str,
    ms: i64,
    at: &str,
    what: &str,
    body: impl std::future::Future<Output = Res<T>>,
) -> Res<T> {
    let deadline = match run.replayed(key) {
        Some(StepState::Timer { deadline }) => *deadline,
        _ => {
            let deadline = run.now() + ms;
            run.record(
                vec![Step {
                    key: key.to_string(),
                    state: StepState::Timer { deadline },
                }],
                vec![],
                None,
            );
            deadline
        }
    };
    tokio::select! {
        result = body => result,
        _ = run.clock.sleep_until(deadline) => Err(Interrupt::Fault(Problem {
            type_: types::TIMEOUT.into(),
            status: 408,
            title: Some("Timed out".into()),
            detail: Some(format!("{what} did not finish within {ms} ms")),
            instance: Some(at.to_string()),
        })),
    }
}

#[allow(clippy::too_many_arguments)]
async fn process(
    run: &Arc<Run>,
    key: &str,
    after: Ticket,
    mut spec: ProcessSpec,
    return_: ProcessReturn,
    await_: bool,
    at: &str,
    input: &Value,
) -> Res<Value> {
    run.barrier(after).await?;
    spec.key = format!("{}:{key}", run.id);
    let spec_key = spec.key.clone();
    let cancel = run.cancel.child_token();
    // Output is journaled as it comes, as events that nothing waits for.
    let sink: crate::OutputSink = {
        let (run, task) = (run.clone(), at.to_string());
        Arc::new(move |stream: &str, text: &str| {
            let data = json!({
                "workflow": run.qualified_name, "task": task, "stream": stream, "text": text,
            });
            run.record(
                vec![],
                vec![("dev.skein.task.output.v1", Json::of(&data))],
                None,
            );
        })
    };
    let control = crate::ProcessControl {
        cancel,
        paused: run.paused.clone(),
        output: sink,
    };
    if !await_ {
        let effects = run.effects.clone();
        tokio::spawn(async move {
            let _ = effects.process(spec, control).await;
        });
        return Ok(input.clone());
    }
    let out = run
        .effects
        .process(spec, control)
        .await
        .map_err(|e| Problem {
            type_: types::RUNTIME.into(),
            status: 500,
            title: Some("The process could not start".into()),
            detail: Some(e.to_string()),
            instance: Some(at.to_string()),
        })?;
    // Every attempt's use is recorded, the failed ones too: cost counts them all.
    if let Some(usage) = out.usage {
        run.record_usage(at, &spec_key, json!(out.code), usage);
    }
    if run.cancel.is_cancelled() {
        return Err(Interrupt::Cancelled);
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let failed = out.code != Some(0);
    if failed
        && matches!(
            return_,
            ProcessReturn::Stdout | ProcessReturn::Stderr | ProcessReturn::None
        )
    {
        let how = out.code.map_or_else(
            || "was killed by a signal".to_string(),
            |c| format!("exited with code {c}"),
        );
        let tail: String = stderr
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Interrupt::Fault(Problem {
            type_: types::RUNTIME.into(),
            status: 500,
            title: Some(format!("The process {how}")),
            detail: Some(if tail.is_empty() {
                "no output on stderr".into()
            } else {
                tail
            }),
            instance: Some(at.to_string()),
        }));
    }
    Ok(match return_ {
        ProcessReturn::Stdout => Value::String(stdout),
        ProcessReturn::Stderr => Value::String(stderr),
        ProcessReturn::Code => json!(out.code),
        ProcessReturn::All => json!({"code": out.code, "stdout": stdout, "stderr": stderr}),
        ProcessReturn::None => Value::Null,
    })
}

/// A process to start: `program` and its leading arguments, then the task's own
/// arguments, environment and stdin, evaluated.
fn process_spec(
    (program, mut arguments): (String, Vec<String>),
    (extra, env, stdin): (&[Template], Option<&Template>, Option<&Template>),
    input: &Value,
    vars: &expr::Vars,
    at: &str,
) -> Res<ProcessSpec> {
    for arg in extra {
        arguments.push(text(arg, input, vars, at)?);
    }
    Ok(ProcessSpec {
        key: String::new(),
        program,
        arguments,
        environment: environment(env, input, vars, at)?,
        stdin: stdin
            .map(|s| text(s, input, vars, at).map(String::into_bytes))
            .transpose()?,
    })
}

fn environment(
    env: Option<&Template>,
    input: &Value,
    vars: &expr::Vars,
    at: &str,
) -> Res<Vec<(String, String)>> {
    let Some(env) = env else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = eval(env, input, vars, at)? else {
        return Ok(Vec::new());
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, plain_string(&v)))
        .collect())
}

/// A value as text: strings as they are, anything else as JSON.
pub(crate) fn plain_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn eval(template: &Template, input: &Value, vars: &expr::Vars, at: &str) -> Res<Value> {
    template
        .eval(input, vars)
        .map_err(|e| Interrupt::Fault(e.into_problem(at)))
}

pub(crate) fn text(template: &Template, input: &Value, vars: &expr::Vars, at: &str) -> Res<String> {
    Ok(plain_string(&eval(template, input, vars, at)?))
}

fn duration_ms(d: &Duration, input: &Value, vars: &expr::Vars, at: &str) -> Res<i64> {
    match d {
        Duration::Fixed(d) => Ok(d.as_millis() as i64),
        Duration::Expr(e) => {
            let v = e.eval(input, vars).map_err(|e| e.into_problem(at))?;
            let text = v.as_str().unwrap_or_default();
            dsl_duration(text).ok_or_else(|| {
                expression_problem(
                    at,
                    format!("the duration expression yielded {v}, not an ISO 8601 duration"),
                )
            })
        }
    }
}

fn dsl_duration(text: &str) -> Option<i64> {
    let d: jiff::SignedDuration = text.parse().ok()?;
    (!d.is_negative()).then(|| d.as_millis() as i64)
}

fn raised(def: &ErrorDef, input: &Value, vars: &expr::Vars, at: &str) -> Res<Problem> {
    let opt = |t: &Option<Template>| t.as_ref().map(|t| text(t, input, vars, at)).transpose();
    Ok(Problem {
        type_: text(&def.type_, input, vars, at)?,
        status: def.status,
        title: opt(&def.title)?,
        detail: opt(&def.detail)?,
        instance: Some(opt(&def.instance)?.unwrap_or_else(|| at.to_string())),
    })
}

fn check_schema(schema: &Schema, value: &Value, what: &str, at: &str) -> Res<()> {
    let (SchemaSource::Inline(_), Some(validator)) = (&schema.source, &schema.compiled) else {
        return Err(not_supported(at, "schemas from external resources"));
    };
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(Interrupt::Fault(Problem {
        type_: types::VALIDATION.into(),
        status: 400,
        title: Some(format!("{} does not match its schema", capitalize(what))),
        detail: Some(errors.join("; ")),
        instance: Some(at.to_string()),
    }))
}

fn stored_problem(error: &Value) -> Problem {
    serde_json::from_value(error.clone()).unwrap_or_else(|_| Problem {
        type_: types::RUNTIME.into(),
        status: 500,
        title: Some("A journaled error could not be read".into()),
        detail: Some(error.to_string()),
        instance: None,
    })
}

fn expression_problem(at: &str, detail: String) -> Interrupt {
    crate::fault(
        types::EXPRESSION,
        400,
        "Expression evaluation failed",
        detail,
        at,
    )
}

fn not_supported(at: &str, what: &str) -> Interrupt {
    crate::fault(
        types::RUNTIME,
        501,
        "Not supported yet",
        format!("skein does not run {what} yet"),
        at,
    )
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}
