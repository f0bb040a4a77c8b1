//! `run.workflow`: a workflow from the catalog run as a child execution with a journal
//! of its own. Its id is the parent's id plus the task's key, so a resumed parent finds
//! (and resumes, or reads the outcome of) the same child.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use program::{ProcessReturn, SubflowRef};
use serde_json::Value;
use store::Status;

use super::{Ctx, Detaching, Res, TaskCx, execute};
use crate::run::Run;
use crate::{Interrupt, Outcome};

/// Runs a `run.workflow` task: starts the child once the path's history is durable,
/// and awaits it unless the task says not to.
pub(super) async fn run_workflow(
    cx: TaskCx<'_>,
    sub: &SubflowRef,
    how: &program::Run,
    input: &Value,
    ctx: &Ctx,
) -> Res<Value> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    let child_input = match &sub.input {
        Some(t) => cx.eval(t, input, &ctx.value)?,
        None => input.clone(),
    };
    run.barrier(ctx.causal).await?;
    if !how.await_ {
        // Started, not awaited: the child runs on (and is resumable on its own).
        // Its tree is its own: a shutdown detaches it, the parent's end does not.
        let (run, sub, key, at) = (run.clone(), sub.clone(), key.to_string(), at.to_string());
        let flag = Arc::new(AtomicBool::new(false));
        tokio::spawn(Detaching {
            flag: flag.clone(),
            future: Box::pin(
                async move { subflow(&run, &sub, &key, &at, child_input, flag).await },
            ),
        });
        return Ok(input.clone());
    }
    let output = subflow(run, sub, key, at, child_input, run.detached.clone()).await?;
    Ok(if how.return_ == ProcessReturn::None {
        Value::Null
    } else {
        output
    })
}

/// Runs a workflow from the catalog as a child execution with its own journal. Its
/// id comes from the parent's and the task's key, so a resumed parent resumes it.
async fn subflow(
    run: &Run,
    sub: &SubflowRef,
    key: &str,
    at: &str,
    input: Value,
    detached: Arc<AtomicBool>,
) -> Res<Value> {
    let depth = run.limits.limits.subflow_depth;
    if run.limits.depth >= depth {
        return Err(crate::limits::over(
            at,
            "Sub-workflow depth limit exceeded",
            format!(
                "`run.workflow` would nest deeper than {depth} levels (setting `subflow-depth`)"
            ),
        ));
    }
    let child_id = format!("{}{key}", run.id);
    let store_err = |e: store::Error| Interrupt::Store(e.to_string());
    let reference = format!("{}/{}:{}", sub.namespace, sub.name, sub.version);
    let invalid = |first: String| {
        super::http::configuration(
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
            run.frontend.lower(&existing.definition).map_err(invalid)?,
            existing.input,
        ),
        None => {
            let source = run
                .effects
                .load_workflow(&sub.namespace, &sub.name, &sub.version)
                .await
                .map_err(|e| {
                    super::http::configuration(
                        at,
                        "Unreadable workflow catalog",
                        format!("cannot read `{reference}`: {e}"),
                    )
                })?
                .ok_or_else(|| {
                    super::http::configuration(
                        at,
                        "Unknown workflow",
                        format!("the catalog has no workflow `{reference}`"),
                    )
                })?;
            let workflow = run.frontend.lower(&source).map_err(invalid)?;
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
        entropy: run.entropy.clone(),
        frontend: run.frontend.clone(),
        observer: run.observer.clone(),
        cancel: run.cancel.child_token(),
        paused: run.paused.clone(),
        suspended: false,
        project: run.project.clone(),
        journal,
        raw_input,
        started_at: run.now(),
        secrets: run.given_secrets.clone(),
        limits: crate::run::Shared {
            depth: run.limits.depth + 1,
            ..run.limits.clone()
        },
        wake: Arc::new(tokio::sync::Notify::new()),
        detached,
        metadata: crate::run::metadata(
            &run.project,
            &sub.name,
            &store::Labels::new(),
            // The engine's part of the parent's (its own keys are replaced).
            run.runtime_var["metadata"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
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
