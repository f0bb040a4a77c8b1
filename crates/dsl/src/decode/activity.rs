//! Zigflow's activity options: every `call` and `run` (but `run.workflow`) of a Zigflow
//! document is a Temporal activity, each attempt bounded by a start-to-close timeout
//! and retried by a retry policy. Options come from Zigflow's defaults (5 minutes, or
//! the document's `timeout.after`; 5 attempts, 1 s doubling to at most 1 minute), then
//! the document's `metadata.activityOptions`, then the task's. skein runs such a task
//! as a `try` of the task alone with that retry policy, each attempt limited to the
//! start-to-close timeout and all of them to the schedule-to-close timeout.

use std::time::Duration as StdDuration;

use expr::Expr;
use program::{
    Backoff, Catch, Duration, NamedTask, Process, RetryLimit, RetryPolicy, RetryRef, Task,
    TaskKind, TaskList, Try,
};

use super::{At, Cx, Obj};

/// Zigflow's defaults, which its documents rely on.
const START_TO_CLOSE: StdDuration = StdDuration::from_secs(300);
const INITIAL_INTERVAL: StdDuration = StdDuration::from_secs(1);
const BACKOFF_COEFFICIENT: f64 = 2.0;
const MAXIMUM_INTERVAL: StdDuration = StdDuration::from_secs(60);
const MAXIMUM_ATTEMPTS: u32 = 5;

/// Options as written at one level; unset fields come from the level above.
#[derive(Clone, Debug, Default)]
pub(crate) struct ActivityOptions {
    start_to_close: Option<StdDuration>,
    schedule_to_close: Option<StdDuration>,
    initial_interval: Option<StdDuration>,
    backoff_coefficient: Option<f64>,
    maximum_interval: Option<StdDuration>,
    /// Temporal's `maximumAttempts`: 0 for no limit.
    maximum_attempts: Option<u32>,
    non_retryable: Option<Vec<String>>,
}

impl ActivityOptions {
    /// `self`, with what `over` sets in place.
    fn merged(&self, over: &ActivityOptions) -> ActivityOptions {
        ActivityOptions {
            start_to_close: over.start_to_close.or(self.start_to_close),
            schedule_to_close: over.schedule_to_close.or(self.schedule_to_close),
            initial_interval: over.initial_interval.or(self.initial_interval),
            backoff_coefficient: over.backoff_coefficient.or(self.backoff_coefficient),
            maximum_interval: over.maximum_interval.or(self.maximum_interval),
            maximum_attempts: over.maximum_attempts.or(self.maximum_attempts),
            non_retryable: over
                .non_retryable
                .clone()
                .or_else(|| self.non_retryable.clone()),
        }
    }
}

/// Temporal options that mean nothing here, and why.
const NOT_APPLIED: &[(&str, &str)] = &[
    (
        "heartbeatTimeout",
        "skein's workers report liveness on their own; a heartbeat timeout is not applied",
    ),
    (
        "scheduleToStartTimeout",
        "skein has no task queue for an activity to wait in, so this is not applied",
    ),
    (
        "disableEagerExecution",
        "skein runs activities itself, so eager execution does not apply",
    ),
    (
        "summary",
        "the task's name is what skein's events show; a summary is not applied",
    ),
    ("priority", "activity priority and fairness are not applied"),
];

/// Reads `metadata.activityOptions` (document or task): what it sets.
pub(crate) fn options(cx: &mut Cx, at: &At) -> Option<ActivityOptions> {
    let mut obj = Obj::new(cx, at)?;
    for (key, why) in NOT_APPLIED {
        if let Some(field) = obj.field(key) {
            cx.warning(
                field.anchor(),
                &field.ptr,
                format!("`activityOptions.{key}` is accepted, but not applied"),
                *why,
            );
        }
    }
    let start_to_close = obj.opt(cx, "startToCloseTimeout", fixed);
    let schedule_to_close = obj.opt(cx, "scheduleToCloseTimeout", fixed);
    let retry = obj.opt(cx, "retryPolicy", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let initial = obj.opt(cx, "initialInterval", fixed);
        let coefficient = obj.opt(cx, "backoffCoefficient", coefficient);
        let maximum = obj.opt(cx, "maximumInterval", fixed);
        let attempts = obj.opt(cx, "maximumAttempts", Cx::uint::<u32>);
        let non_retryable = obj.opt(cx, "nonRetryableErrorTypes", Cx::string_list);
        obj.finish(cx);
        Some((initial?, coefficient?, maximum?, attempts?, non_retryable?))
    });
    obj.finish(cx);
    let (initial_interval, backoff_coefficient, maximum_interval, maximum_attempts, non_retryable) =
        retry?.unwrap_or_default();
    Some(ActivityOptions {
        start_to_close: start_to_close?,
        schedule_to_close: schedule_to_close?,
        initial_interval,
        backoff_coefficient,
        maximum_interval,
        maximum_attempts,
        non_retryable,
    })
}

/// A duration written as a number of units or ISO 8601, not computed.
fn fixed(cx: &mut Cx, at: &At) -> Option<StdDuration> {
    match cx.duration(at)? {
        Duration::Fixed(d) => Some(d),
        _ => {
            cx.error(
                at.anchor(),
                &at.ptr,
                format!(
                    "{} must be written out, not computed by an expression",
                    at.label()
                ),
            );
            None
        }
    }
}

fn coefficient(cx: &mut Cx, at: &At) -> Option<f64> {
    let value = cx.json(at);
    match value.as_f64() {
        Some(c) if c >= 1.0 && c.is_finite() => Some(c),
        _ => {
            cx.error(
                at.node.range.clone(),
                &at.ptr,
                format!("`backoffCoefficient` must be a number of 1 or more, not {value}"),
            );
            None
        }
    }
}

/// Whether a task runs a Temporal activity in Zigflow: a `call`, or a `run` of a
/// process (a `run.workflow` is a child workflow).
pub(crate) fn is_activity(kind: &TaskKind) -> bool {
    match kind {
        TaskKind::Call(_) => true,
        TaskKind::Run(run) => !matches!(run.process, Process::Workflow(_)),
        _ => false,
    }
}

/// The options of the document: Zigflow's defaults, the document's `timeout.after` as
/// the start-to-close timeout, then its `metadata.activityOptions`.
pub(crate) fn document_options(
    timeout: Option<StdDuration>,
    written: Option<ActivityOptions>,
) -> ActivityOptions {
    let defaults = ActivityOptions {
        start_to_close: Some(timeout.unwrap_or(START_TO_CLOSE)),
        schedule_to_close: None,
        initial_interval: Some(INITIAL_INTERVAL),
        backoff_coefficient: Some(BACKOFF_COEFFICIENT),
        maximum_interval: Some(MAXIMUM_INTERVAL),
        maximum_attempts: Some(MAXIMUM_ATTEMPTS),
        non_retryable: None,
    };
    match written {
        Some(written) => defaults.merged(&written),
        None => defaults,
    }
}

/// Runs `task` as an activity with `options` over the document's: a `try` of the task
/// alone that retries it as the policy says. The outer task keeps what applies to the
/// whole (`if`, `input`, `output`, `export`, `then`, `timeout`); the inner one runs the
/// activity, under the same name and reference.
pub(crate) fn wrap(
    document: &ActivityOptions,
    task_options: Option<&ActivityOptions>,
    task: Task,
    name: &str,
    reference: &str,
) -> Task {
    let o = match task_options {
        Some(t) => document.merged(t),
        None => document.clone(),
    };
    let attempts = o.maximum_attempts.unwrap_or(MAXIMUM_ATTEMPTS);
    let except_when = o
        .non_retryable
        .as_ref()
        .filter(|types| !types.is_empty())
        .map(|types| {
            let list = serde_json::to_string(types).expect("strings serialize");
            // A type matches the whole error type or its last segment
            // (`communication` for the DSL's `…/errors/communication`).
            let text = format!(
                ".type as $t | {list} | any(. as $n | $t == $n or ($t | endswith(\"/\" + $n)))"
            );
            Expr::compile(&text, &[]).expect("the non-retryable filter compiles")
        });
    let policy = RetryPolicy {
        when: None,
        except_when: None,
        delay: Some(Duration::Fixed(
            o.initial_interval.unwrap_or(INITIAL_INTERVAL),
        )),
        backoff: Backoff::Constant,
        multiplier: Some(o.backoff_coefficient.unwrap_or(BACKOFF_COEFFICIENT)),
        max_delay: Some(Duration::Fixed(
            o.maximum_interval.unwrap_or(MAXIMUM_INTERVAL),
        )),
        limit: RetryLimit {
            attempt_count: (attempts > 0).then(|| attempts - 1),
            attempt_duration: o.start_to_close.map(Duration::Fixed),
            duration: o.schedule_to_close.map(Duration::Fixed),
        },
        jitter: None,
    };
    let inner = Task {
        if_: None,
        input: None,
        output: None,
        export: None,
        timeout: None,
        then: program::FlowDirective::Continue,
        metadata: Default::default(),
        kind: task.kind,
        reads_task: task.reads_task,
    };
    Task {
        kind: TaskKind::Try(Box::new(Try {
            try_: TaskList {
                tasks: vec![NamedTask {
                    name: name.to_string(),
                    reference: reference.to_string(),
                    task: inner,
                }],
            },
            catch: Catch {
                errors: None,
                as_: "error".into(),
                when: None,
                except_when,
                retry: Some(RetryRef::Inline(policy)),
                do_: None,
            },
            catch_from_fault: false,
        })),
        ..task
    }
}
