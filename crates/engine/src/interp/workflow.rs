//! A run from start to end: the workflow's input (recorded once, with the `started`
//! events), its timeout and output, the final status and event, the `suspended` and
//! `resumed` records of pauses, and what is recorded when a run or a task is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use serde_json::{Value, json};
use store::{Json, Status, StatusChange, Step, StepState, Ticket};

use super::{Ctx, Res, data, eval, task, timers};
use crate::events::Lifecycle;
use crate::run::{Run, Scope, iso, problem_json};
use crate::{Interrupt, Outcome};

/// The step that holds the transformed workflow input; its presence means "started".
const INPUT_KEY: &str = "/input";

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
pub(super) struct Detaching<F> {
    pub(super) flag: Arc<AtomicBool>,
    pub(super) future: std::pin::Pin<Box<F>>,
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
pub(super) struct Unfinished<'a> {
    pub(super) run: &'a Run,
    /// The task's reference; `None` for the workflow itself.
    pub(super) task: Option<&'a str>,
    pub(super) armed: bool,
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
                    vec![(Lifecycle::TaskCancelled.as_str(), event)],
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
            Lifecycle::WorkflowCancelled.as_str(),
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
            Lifecycle::WorkflowSuspended.as_str(),
            "suspendedAt",
        )
    } else {
        (
            Status::Running,
            Lifecycle::WorkflowResumed.as_str(),
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
pub(super) async fn execute(run: Arc<Run>) -> Result<Outcome, String> {
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
                Lifecycle::WorkflowCompleted.as_str(),
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
                Lifecycle::WorkflowFaulted.as_str(),
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

/// The workflow's own data flow around its top-level task list: input (recorded once,
/// with the `started` events), timeout, output.
async fn workflow(run: &Arc<Run>) -> Res<Value> {
    let wf = run.wf.clone();
    let empty = Value::Null;
    let (input, causal) = match run.replayed(INPUT_KEY) {
        Some(StepState::Completed { output, .. }) => (output.clone(), Ticket(0)),
        _ => {
            let raw = run.workflow_var["input"].clone();
            let scope = Scope::default();
            let transformed = match &wf.input {
                Some(input) => {
                    if let Some(schema) = &input.schema {
                        data::check_schema(run, schema, &raw, "the workflow input", "/input")
                            .await?;
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
                    (Lifecycle::WorkflowStarted.as_str(), Json::of(&started)),
                    (
                        Lifecycle::WorkflowValidating.as_str(),
                        Json::of(&json!({"name": run.qualified_name})),
                    ),
                    (
                        Lifecycle::WorkflowValidated.as_str(),
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
    if let Some(attributes) = wf.search_attributes.get("/") {
        let scope = Scope::default();
        let vars = run.vars(&scope, &input, &input, &Value::Null, None);
        let value = super::eval(attributes, &input, &vars, "/")?;
        super::data::search_attributes(run, &value, "/").await?;
    }

    // The spec's data flow: the transformed input is also the initial `$context`.
    let mut ctx = Ctx {
        value: input.clone(),
        changes: 0,
        causal,
        keep_fault_input: false,
        fault_input: None,
        extending: false,
        data: wf.accumulates_data.then(|| {
            serde_json::json!({"workflow": {
                "workflow_execution_id": run.id,
                "workflow_type": wf.document.name,
                "task_queue": wf.document.namespace,
            }})
        }),
    };
    if let Some(data) = &ctx.data {
        run.set_data(data);
    }
    let top = Scope::default();
    let body = task::run_list(run, &wf.do_, "/do".into(), &top, input, &mut ctx);
    let flow = match &wf.timeout {
        Some(timeout) => {
            timers::with_timeout(run, "/timeout", timeout, "/", "The workflow", body).await?
        }
        None => body.await?,
    };
    let output = flow.value();
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
                data::check_schema(run, schema, &output, "the workflow output", "/output").await?;
            }
            run.check_size(&output, "the workflow output", "/output")?;
            Ok(output)
        }
        None => Ok(output),
    }
}
