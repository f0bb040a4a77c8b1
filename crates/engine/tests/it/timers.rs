//! Timers on the manual clock: retry backoff, `wait`, attempt limits and `listen`
//! timeouts, traced with exact times (no wall-clock waits).

use expect_test::expect;
use serde_json::json;

use crate::trace::{Case, Reply};

#[tokio::test]
async fn a_retry_backs_off_exponentially_by_the_hour_then_succeeds() {
    Case::new(
        "do:
  - guarded:
      try:
        - get:
            call: http
            with: { method: get, endpoint: 'https://api.test/flaky' }
      catch:
        errors:
          with: { type: https://serverlessworkflow.io/dsl/errors/types/communication }
        when: ${ $error.status >= 500 }
        retry:
          delay: { hours: 1 }
          backoff: { exponential: {} }
          limit: { attempt: { count: 5 } }
",
    )
    .replies([
        Reply::Json(503, json!("busy")),
        Reply::Json(503, json!("busy")),
        Reply::Json(200, json!({"ok": 3})),
    ])
    .check(expect![[r#"
        calls:
          +0ms GET https://api.test/flaky [exec-1:/do/0/guarded/try/0/get] -> 503
          +1h GET https://api.test/flaky [exec-1:/do/0/guarded/try#2/0/get] -> 503
          +3h GET https://api.test/flaky [exec-1:/do/0/guarded/try#3/0/get] -> 200
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/guarded
          +0ms task.started /do/0/guarded
          +0ms task.created /do/0/guarded/try/0/get
          +0ms task.started /do/0/guarded/try/0/get
          +0ms task.faulted /do/0/guarded/try/0/get error="communication"
          +1h task.retried /do/0/guarded attempt=2
          +1h task.created /do/0/guarded/try/0/get
          +1h task.started /do/0/guarded/try/0/get
          +1h task.faulted /do/0/guarded/try/0/get error="communication"
          +3h task.retried /do/0/guarded attempt=3
          +3h task.created /do/0/guarded/try/0/get
          +3h task.started /do/0/guarded/try/0/get
          +3h task.completed /do/0/guarded/try/0/get output={"ok":3}
          +3h task.completed /do/0/guarded output={"ok":3}
          +3h workflow.completed output={"ok":3}
        journal:
          /do/0/guarded completed {"ok":3}
          /do/0/guarded/retry#1 timer +1h
          /do/0/guarded/retry#2 timer +3h
          /do/0/guarded/try#2/0/get faulted communication
          /do/0/guarded/try#3/0/get completed {"ok":3}
          /do/0/guarded/try/0/get faulted communication
          /input completed {}
        outcome: completed {"ok":3}
    "#]])
    .await;
}

#[tokio::test]
async fn a_wait_of_a_day_fires_a_day_later() {
    Case::new(
        "do:
  - before:
      set: { at: '${ $workflow.startedAt.epoch.milliseconds }' }
  - pause:
      wait: { days: 1 }
  - after:
      set: { done: true }
",
    )
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/before
          +0ms task.started /do/0/before
          +0ms task.completed /do/0/before output={"at":1767225600000}
          +0ms task.created /do/1/pause
          +0ms task.started /do/1/pause
          +1d task.completed /do/1/pause output={"at":1767225600000}
          +1d task.created /do/2/after
          +1d task.started /do/2/after
          +1d task.completed /do/2/after output={"done":true}
          +1d workflow.completed output={"done":true}
        journal:
          /do/0/before completed {"at":1767225600000}
          /do/1/pause completed {"at":1767225600000}
          /do/1/pause/wait timer +1d
          /do/2/after completed {"done":true}
          /input completed {}
        outcome: completed {"done":true}
    "#]])
    .await;
}

#[tokio::test]
async fn an_attempt_past_its_time_limit_times_out_and_is_retried() {
    Case::new(
        "do:
  - guarded:
      try:
        - get:
            call: http
            with: { method: get, endpoint: 'https://api.test/slow' }
      catch:
        errors:
          with: { type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout }
        retry:
          delay: { seconds: 10 }
          limit: { attempt: { count: 2, duration: { minutes: 1 } } }
",
    )
    .replies((0..3).map(|_| Reply::Late(3_600_000, Box::new(Reply::Json(200, json!("late"))))))
    .check(expect![[r#"
        calls:
          +0ms GET https://api.test/slow [exec-1:/do/0/guarded/try/0/get] -> 200 after 3600000ms
          +70s GET https://api.test/slow [exec-1:/do/0/guarded/try#2/0/get] -> 200 after 3600000ms
          +140s GET https://api.test/slow [exec-1:/do/0/guarded/try#3/0/get] -> 200 after 3600000ms
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/guarded
          +0ms task.started /do/0/guarded
          +0ms task.created /do/0/guarded/try/0/get
          +0ms task.started /do/0/guarded/try/0/get
          +1m task.cancelled /do/0/guarded/try/0/get
          +70s task.retried /do/0/guarded attempt=2
          +70s task.created /do/0/guarded/try/0/get
          +70s task.started /do/0/guarded/try/0/get
          +130s task.cancelled /do/0/guarded/try/0/get
          +140s task.retried /do/0/guarded attempt=3
          +140s task.created /do/0/guarded/try/0/get
          +140s task.started /do/0/guarded/try/0/get
          +200s task.cancelled /do/0/guarded/try/0/get
          +200s task.faulted /do/0/guarded error="timeout"
          +200s workflow.faulted error="timeout"
        journal:
          /do/0/guarded faulted timeout
          /do/0/guarded/retry#1 timer +70s
          /do/0/guarded/retry#2 timer +140s
          /do/0/guarded/try#2/timeout timer +130s
          /do/0/guarded/try#3/timeout timer +200s
          /do/0/guarded/try/timeout timer +1m
          /input completed {}
        outcome: faulted timeout 408 at /do/0/guarded (The attempt did not finish within 60000 ms)
    "#]])
    .await;
}

// A listener reads its inbox every 250 ms of the clock, and each read is a settle
// round of the harness: ten minutes are 2,400 of them.
#[tokio::test]
async fn a_listen_that_hears_nothing_times_out() {
    Case::new(
        "do:
  - hear:
      listen:
        to:
          one:
            with: { type: com.example.never }
      timeout:
        after: { minutes: 10 }
",
    )
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/hear
          +0ms task.started /do/0/hear
          +10m task.faulted /do/0/hear error="timeout"
          +10m workflow.faulted error="timeout"
        journal:
          /do/0/hear faulted timeout
          /do/0/hear/timeout timer +10m
          /input completed {}
        outcome: faulted timeout 408 at /do/0/hear (Task `hear` did not finish within 600000 ms)
    "#]])
    .await;
}
