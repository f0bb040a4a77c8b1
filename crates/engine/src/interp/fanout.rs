//! `for` and `fork`: iterations and branches, each on a copy of the path's `$context`
//! (joined in order when they end) under keys of its own (`{key}/for/{i}/do`,
//! `{key}/fork/branches/{i}/{name}`). The fan-out extension's bound lives here: with
//! `for.concurrency` above 1, at most that many iterations run at once, the output is
//! theirs in index order, and a fault of one drops (cancels) the others.

use std::sync::Arc;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use program::{Concurrency, For, Fork};
use serde_json::{Value, json};
use store::Json;

use super::data::{expression_problem, kind_of};
use super::{Ctx, Flow, Res, TaskCx, task};
use crate::events::Lifecycle;
use crate::run::problem_json;
use crate::{Interrupt, limits};
use expr::Problem;

/// Runs a `for` task: one iteration after another, or with `for.concurrency` above 1,
/// at most that many at once.
pub(super) async fn for_loop(cx: TaskCx<'_>, f: &For, input: &Value, ctx: &mut Ctx) -> Res<Flow> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    let items = {
        let vars = cx.vars(&ctx.value, input);
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
            let vars = cx.vars(&ctx.value, input);
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
        cx.scope.with([
            (Arc::from(f.each.as_str()), item.clone()),
            (Arc::from(f.at.as_str()), json!(i)),
        ])
    };

    if limit == 1 && !f.isolated {
        // The DSL's loop: each iteration's input is the previous iteration's output.
        let mut current = input.clone();
        for (i, item) in items.iter().enumerate() {
            let scope_i = bindings(i, item);
            if let Some(w) = &f.while_ {
                let vars = cx.within(&scope_i).vars(&ctx.value, &current);
                if !w
                    .eval_bool(&current, &vars)
                    .map_err(|e| e.into_problem(at))?
                {
                    break;
                }
            }
            match task::run_list(
                run,
                &f.do_,
                format!("{key}/for/{i}/do"),
                &scope_i,
                current,
                ctx,
            )
            .await?
            {
                Flow::Done(v) | Flow::Exit(v) | Flow::NextIteration(v) => current = v,
                Flow::End(v) => return Ok(Flow::End(v)),
                Flow::Break(v) => {
                    current = v;
                    break;
                }
            }
        }
        return Ok(Flow::Done(current));
    }

    // The fan-out extension: at most `limit` iterations at once, outputs in index order.
    // Beyond its first, each running iteration also holds a permit of its execution and
    // of its project; when either has none free, the loop waits for one of its own
    // iterations to end. It never waits for a permit, so nested loops cannot deadlock.
    let total = items.len();
    let mut outputs: Vec<Option<Value>> = vec![None; total];
    let mut contexts: Vec<Option<Ctx>> = (0..total).map(|_| None).collect();
    // With `continue_all`, the failures so far, by index.
    let mut failures: Vec<(usize, Problem)> = Vec::new();
    let mut running = FuturesUnordered::new();
    let (mut next, mut done, mut stopped, mut reported) = (0usize, 0usize, false, 0usize);
    loop {
        while !stopped && running.len() < limit && next < total {
            let permit = if running.is_empty() {
                None
            } else {
                match limits::try_iteration(&run.limits.iterations, &run.limits.project_iterations)
                {
                    Some(permit) => Some(permit),
                    None => break,
                }
            };
            let i = next;
            let scope_i = bindings(i, &items[i]);
            if let Some(w) = &f.while_ {
                let vars = cx.within(&scope_i).vars(&ctx.value, input);
                if !w.eval_bool(input, &vars).map_err(|e| e.into_problem(at))? {
                    stopped = true;
                    break;
                }
            }
            let mut branch = ctx.branch();
            let list_key = format!("{key}/for/{i}/do");
            running.push(async move {
                let result =
                    task::run_list(run, &f.do_, list_key, &scope_i, input.clone(), &mut branch)
                        .await;
                drop(permit);
                (i, result, branch)
            });
            next += 1;
        }
        let Some((i, result, branch)) = running.next().await else {
            break;
        };
        // A fault ends the loop: returning drops (cancels) the iterations still running;
        // unless the loop continues with the others.
        let value = match result {
            Err(Interrupt::Fault(problem)) if f.continue_all => {
                failures.push((i, problem));
                Value::Null
            }
            other => other?.value(),
        };
        outputs[i] = Some(value);
        contexts[i] = Some(branch);
        done += 1;
        // At most one progress event per percent done, and always the last one.
        let percent = done * 100 / total;
        if percent > reported || done == total {
            reported = percent;
            let progress = json!({
                "workflow": run.qualified_name, "task": at,
                "total": total, "done": done, "failed": failures.len(), "running": running.len(),
            });
            run.record(
                vec![],
                vec![(Lifecycle::TaskProgress.as_str(), Json::of(&progress))],
                None,
            );
        }
    }
    ctx.join(contexts.into_iter().flatten());
    if !failures.is_empty() {
        failures.sort_by_key(|(i, _)| *i);
        let errors: Vec<Value> = failures
            .iter()
            .map(|(i, p)| json!({"index": i, "error": problem_json(p)}))
            .collect();
        return Err(Interrupt::Fault(Problem {
            type_: expr::types::RUNTIME.into(),
            status: 500,
            title: Some(format!("{} of {total} iterations failed", failures.len())),
            detail: failures[0].1.title.clone().or(failures[0].1.detail.clone()),
            instance: Some(at.to_string()),
            data: Some(Box::new(json!({ "errors": errors }))),
        }));
    }
    Ok(Flow::Done(Value::Array(
        outputs.into_iter().flatten().collect(),
    )))
}

/// Runs a `fork` task: every branch at once; with `compete`, the first to finish wins.
pub(super) async fn fork(cx: TaskCx<'_>, f: &Fork, input: &Value, ctx: &mut Ctx) -> Res<Value> {
    let (run, key, scope) = (cx.run, cx.key, cx.scope);
    let branches = f.branches.tasks.iter().enumerate().map(|(i, nt)| {
        let mut branch = ctx.branch();
        let branch_key = format!("{key}/fork/branches/{i}/{}", nt.name);
        async move {
            let stepped =
                task::run_task(run, nt, branch_key, scope, input.clone(), &mut branch).await?;
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
