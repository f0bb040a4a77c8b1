//! Durable timers and what is built on them: `wait`, retry delays, task, attempt and
//! workflow timeouts. A deadline is journaled before the wait, so a resumed execution
//! waits only for what is left; a paused run holds timers that come due.

use expr::{Problem, types};
use program::{Duration, Moment, TimeoutRef};
use serde_json::Value;
use store::{Step, StepState};

use super::{Ctx, Res, TaskCx, data};
use crate::Interrupt;
use crate::run::Run;

/// `wait`: a durable timer for the task's duration.
pub(super) async fn wait(
    cx: TaskCx<'_>,
    duration: &Duration,
    input: &Value,
    ctx: &mut Ctx,
) -> Res<()> {
    let key = format!("{}/wait", cx.key);
    let ms = match duration {
        // The time left until the moment, by the run's clock; `timer` journals the
        // deadline, so a resumed run waits for the same moment.
        // Set before a resume: `timer` keeps the journaled deadline.
        Duration::Until(_) if replayed_timer(cx.run, &key) => 0,
        Duration::Until(moment) => {
            let at = match moment {
                Moment::At(ms) => *ms,
                Moment::Expr(e) => {
                    let vars = cx.vars(&ctx.value, input);
                    let v = e.eval(input, &vars).map_err(|e| e.into_problem(cx.at()))?;
                    let text = v.as_str().unwrap_or_default();
                    let time: jiff::Timestamp = text.parse().map_err(|_| {
                        data::expression_problem(
                            cx.at(),
                            format!("`wait.until` yielded {v}, not an RFC 3339 time"),
                        )
                    })?;
                    time.as_millisecond()
                }
            };
            (at - cx.run.now()).max(0)
        }
        _ => duration_ms(duration, input, &cx.vars(&ctx.value, input), cx.at())?,
    };
    timer(cx.run, ctx, key, ms).await
}

/// Whether the timer at `key` was set before a resume: its deadline stands.
fn replayed_timer(run: &Run, key: &str) -> bool {
    matches!(run.replayed(key), Some(StepState::Timer { .. }))
}

/// A durable timer: its deadline is journaled (and durable) before the wait, so a
/// resumed execution waits only for what is left.
pub(super) async fn timer(run: &Run, ctx: &mut Ctx, key: String, delay_ms: i64) -> Res<()> {
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
pub(super) async fn with_timeout<T>(
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
    let ms = duration_ms(after, &empty, &run.no_vars(), at)?;
    with_deadline(run, key, ms, at, what, body).await
}

/// Runs `body` for at most `ms`, from a deadline journaled under `key`; past it, `body`
/// is dropped (its tasks cancelled) and `what` faults with a timeout error.
pub(super) async fn with_deadline<T>(
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
            data: None,
        })),
    }
}

pub(super) fn duration_ms(d: &Duration, input: &Value, vars: &expr::Vars, at: &str) -> Res<i64> {
    match d {
        Duration::Fixed(d) => Ok(d.as_millis() as i64),
        Duration::Until(_) => Err(data::expression_problem(
            at,
            "`until` gives a moment, which only a `wait` takes".into(),
        )),
        Duration::Expr(e) => {
            let v = e.eval(input, vars).map_err(|e| e.into_problem(at))?;
            let text = v.as_str().unwrap_or_default();
            dsl_duration(text).ok_or_else(|| {
                data::expression_problem(
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
