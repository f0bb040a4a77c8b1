//! `try`/`catch`: which errors a catch takes, retry policies (backoff, jitter, attempt
//! and duration limits) and the keys of attempts. Attempt `n` of a try runs under
//! `{key}/try#n`, its retry delay is the durable timer `{key}/retry#n`, and the window
//! that `limit.duration` counts is journaled at the first fault.

use std::sync::Arc;

use expr::Problem;
use program::{Backoff, Catch, RetryPolicy, RetryRef, Try};
use serde_json::{Value, json};
use store::{Step, StepState};

use super::timers::{duration_ms, timer, with_deadline};
use super::{Ctx, Flow, Res, TaskCx, task};
use crate::Interrupt;
use crate::events::Lifecycle;
use crate::run::{Run, problem_json};

/// Runs a `try` task: its list, then on a fault its catch, retrying as its policy says.
pub(super) async fn try_catch(cx: TaskCx<'_>, t: &Try, input: &Value, ctx: &mut Ctx) -> Res<Flow> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    let mut first_attempt_at = run.now();
    let attempt_limit = retry_policy(run, &t.catch)
        .and_then(|p| p.limit.attempt_duration.as_ref())
        .map(|d| duration_ms(d, &Value::Null, &run.no_vars(), at))
        .transpose()?;
    let mut attempt: u32 = 1;
    loop {
        let try_key = match attempt {
            1 => format!("{key}/try"),
            n => format!("{key}/try#{n}"),
        };
        let deadline_key = format!("{try_key}/timeout");
        let outer_keep = std::mem::replace(&mut ctx.keep_fault_input, t.catch_from_fault);
        ctx.fault_input = None;
        let body = task::run_list(run, &t.try_, try_key, cx.scope, input.clone(), ctx);
        let result = match attempt_limit {
            Some(ms) => with_deadline(run, &deadline_key, ms, at, "The attempt", body).await,
            None => body.await,
        };
        ctx.keep_fault_input = outer_keep;
        let fault_input = ctx.fault_input.take();
        let problem = match result {
            Err(Interrupt::Fault(problem)) => problem,
            other => return other,
        };
        let catch = &t.catch;
        let error = problem_json(&problem);
        let scope_c = cx
            .scope
            .with([(Arc::from(catch.as_.as_str()), error.clone())]);
        let policy = retry_policy(run, catch);
        // Whether the catch takes the error, and the delay before the next attempt.
        let (caught, delay) = {
            let empty = Value::Null;
            let vars = run.vars(&scope_c, &ctx.value, &error, &empty, None);
            if !catches(catch, &problem, &error, &vars, at)? {
                (false, None)
            } else if let Some(policy) = policy {
                if policy.limit.duration.is_some() && attempt == 1 {
                    first_attempt_at = retry_window(run, key, first_attempt_at);
                }
                let delay = match run.replayed(&format!("{key}/retry#{attempt}")) {
                    // Decided before the resume: the journaled deadline stands, whatever
                    // the clock says now.
                    Some(StepState::Timer { .. }) => Some(0),
                    _ => retry_delay(run, policy, attempt, first_attempt_at, &error, &vars, at)?,
                };
                (true, delay)
            } else {
                (true, None)
            }
        };
        if !caught {
            return Err(Interrupt::Fault(problem));
        }
        if policy.is_some() {
            if let Some(delay) = delay {
                timer(run, ctx, format!("{key}/retry#{attempt}"), delay).await?;
                let event = run.task_event(at, "retriedAt", Some(("attempt", &json!(attempt + 1))));
                run.record(vec![], vec![(Lifecycle::TaskRetried.as_str(), event)], None);
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
                let from = match fault_input {
                    Some(data) if t.catch_from_fault => data,
                    _ => input.clone(),
                };
                // Zigflow's catch body sees the error in `$data` (under `catch.as`), on
                // a copy that does not flow back.
                let outer_data = ctx.data.clone();
                if let Some(Value::Object(data)) = &mut ctx.data {
                    data.insert(catch.as_.clone(), error.clone());
                }
                let flow = task::run_list(run, list, catch_key, &scope_c, from, ctx).await;
                if outer_data.is_some() {
                    ctx.data = outer_data;
                    if let Some(data) = &ctx.data {
                        run.set_data(data);
                    }
                }
                flow
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

pub(super) fn retry_policy<'w>(run: &'w Run, catch: &'w Catch) -> Option<&'w RetryPolicy> {
    match catch.retry.as_ref()? {
        RetryRef::Inline(policy) => Some(policy),
        RetryRef::Use(name) => run.wf.use_.retries.get(name),
    }
}

/// Whether `catch` takes this error: its static filter, then `when` and `exceptWhen`
/// (evaluated on the error, with the error variable in `vars`).
fn catches(
    catch: &Catch,
    problem: &Problem,
    error: &Value,
    vars: &expr::Vars,
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
    conditions_hold(
        catch.when.as_ref(),
        catch.except_when.as_ref(),
        error,
        vars,
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
fn same_error_type(filter: &str, actual: &str) -> bool {
    if filter == actual {
        return true;
    }
    let standard = |t: &str| t.starts_with("https://serverlessworkflow.io/");
    let last = |t: &str| t.rsplit('/').next().map(str::to_string);
    standard(filter) && standard(actual) && last(filter) == last(actual)
}

/// The delay before retry `attempt + 1`, or `None` when the policy allows no more.
/// `vars` hold the error variable; the window opened at `first_attempt_at`.
fn retry_delay(
    run: &Run,
    policy: &RetryPolicy,
    attempt: u32,
    first_attempt_at: i64,
    error: &Value,
    vars: &expr::Vars,
    at: &str,
) -> Res<Option<i64>> {
    if !conditions_hold(
        policy.when.as_ref(),
        policy.except_when.as_ref(),
        error,
        vars,
        at,
    )? {
        return Ok(None);
    }
    // `limit.attempt.count` is the number of retries after the first attempt.
    if policy.limit.attempt_count.is_some_and(|max| attempt > max) {
        return Ok(None);
    }
    let base = match &policy.delay {
        Some(d) => duration_ms(d, error, vars, at)?,
        None => 0,
    };
    let mut delay = match (policy.multiplier, policy.backoff) {
        (Some(m), _) => {
            (base as f64 * m.powi((attempt - 1).min(1000) as i32)).min(i64::MAX as f64) as i64
        }
        (None, Backoff::Constant) => base,
        (None, Backoff::Linear) => base.saturating_mul(attempt as i64),
        (None, Backoff::Exponential) => base.saturating_mul(1i64 << (attempt - 1).min(30)),
    };
    if let Some(max) = &policy.max_delay {
        delay = delay.min(duration_ms(max, error, vars, at)?);
    }
    if let Some(jitter) = &policy.jitter {
        let from = duration_ms(&jitter.from, error, vars, at)?;
        let to = duration_ms(&jitter.to, error, vars, at)?.max(from);
        delay += run.entropy.between(from, to);
    }
    if let Some(limit) = &policy.limit.duration {
        let limit = duration_ms(limit, error, vars, at)?;
        if run.now() + delay - first_attempt_at > limit {
            return Ok(None);
        }
    }
    Ok(Some(delay))
}
