//! Data flow, control flow, errors and listeners, traced: each case is a workflow, its
//! input, what its calls return and the events waiting in its inbox, and the snapshot
//! of the calls, events, journal and outcome.

use expect_test::expect;
use serde_json::json;

use crate::trace::{Case, Reply};

const DATA_FLOW: &str = "input:
  from: '${ { user: .user, seed: 1 } }'
do:
  - pick:
      input:
        from: .user
      set:
        name: ${ .name }
        seeded: ${ $context.seed }
      output:
        as: '. + { picked: true }'
      export:
        as: '$context + { lastName: .name }'
  - useContext:
      set:
        greeting: ${ \"hi \\($context.lastName)\" }
        before: ${ $input.picked }
output:
  as: '{ greeting, before }'
";

#[tokio::test]
async fn data_flows_through_input_output_and_export() {
    Case::new(DATA_FLOW)
        .input(json!({"user": {"name": "Ada"}, "noise": 1}))
        .check(expect![[r#"
            calls:
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/pick
              +0ms task.started /do/0/pick
              +0ms task.completed /do/0/pick output={"name":"Ada","seeded":1,"picked":true}
              +0ms task.created /do/1/useContext
              +0ms task.started /do/1/useContext
              +0ms task.completed /do/1/useContext output={"greeting":"hi Ada","before":true}
              +0ms workflow.completed output={"greeting":"hi Ada","before":true}
            journal:
              /do/0/pick completed {"name":"Ada","seeded":1,"picked":true} context={"user":{"name":"Ada"},"seed":1,"lastName":"Ada"}
              /do/1/useContext completed {"greeting":"hi Ada","before":true}
              /input completed {"user":{"name":"Ada"},"seed":1}
            outcome: completed {"greeting":"hi Ada","before":true}
        "#]])
        .await;
}

const SWITCH: &str = "do:
  - decide:
      switch:
        - big:
            when: .n > 10
            then: big
        - other:
            then: small
  - small:
      set: { size: small }
      then: end
  - big:
      if: .n > 100
      set: { size: huge }
  - after:
      set: '${ . + { after: true } }'
";

#[tokio::test]
async fn a_switch_goes_to_its_case_and_then_end_ends() {
    Case::new(SWITCH)
        .input(json!({"n": 1}))
        .check(expect![[r#"
            calls:
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/decide
              +0ms task.started /do/0/decide
              +0ms task.completed /do/0/decide output={"n":1}
              +0ms task.created /do/1/small
              +0ms task.started /do/1/small
              +0ms task.completed /do/1/small output={"size":"small"}
              +0ms workflow.completed output={"size":"small"}
            journal:
              /do/0/decide completed {"n":1}
              /do/0/decide/then completed "small"
              /do/1/small completed {"size":"small"}
              /input completed {"n":1}
            outcome: completed {"size":"small"}
        "#]])
        .await;
}

#[tokio::test]
async fn a_task_whose_if_is_false_is_skipped_with_its_input_as_output() {
    Case::new(SWITCH)
        .input(json!({"n": 50}))
        .check(expect![[r#"
            calls:
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/decide
              +0ms task.started /do/0/decide
              +0ms task.completed /do/0/decide output={"n":50}
              +0ms task.created /do/2/big
              +0ms task.started /do/2/big
              +0ms task.completed /do/2/big output={"n":50}
              +0ms task.created /do/3/after
              +0ms task.started /do/3/after
              +0ms task.completed /do/3/after output={"n":50,"after":true}
              +0ms workflow.completed output={"n":50,"after":true}
            journal:
              /do/0/decide completed {"n":50}
              /do/0/decide/then completed "big"
              /do/2/big completed {"n":50}
              /do/3/after completed {"n":50,"after":true}
              /input completed {"n":50}
            outcome: completed {"n":50,"after":true}
        "#]])
        .await;
}

#[tokio::test]
async fn a_task_whose_if_holds_runs() {
    Case::new(SWITCH)
        .input(json!({"n": 500}))
        .check(expect![[r#"
            calls:
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/decide
              +0ms task.started /do/0/decide
              +0ms task.completed /do/0/decide output={"n":500}
              +0ms task.created /do/2/big
              +0ms task.started /do/2/big
              +0ms task.completed /do/2/big output={"size":"huge"}
              +0ms task.created /do/3/after
              +0ms task.started /do/3/after
              +0ms task.completed /do/3/after output={"size":"huge","after":true}
              +0ms workflow.completed output={"size":"huge","after":true}
            journal:
              /do/0/decide completed {"n":500}
              /do/0/decide/then completed "big"
              /do/2/big completed {"size":"huge"}
              /do/3/after completed {"size":"huge","after":true}
              /input completed {"n":500}
            outcome: completed {"size":"huge","after":true}
        "#]])
        .await;
}

#[tokio::test]
async fn a_sequential_loop_stops_when_its_while_fails() {
    Case::new(
        "do:
  - sum:
      for: { each: x, in: .xs }
      while: $index < 3
      do:
        - add:
            set: '${ . + { total: ((.total // 0) + $x) } }'
",
    )
    .input(json!({"xs": [1, 2, 3, 4]}))
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/sum
          +0ms task.started /do/0/sum
          +0ms task.created /do/0/sum/do/0/add
          +0ms task.started /do/0/sum/do/0/add
          +0ms task.completed /do/0/sum/do/0/add output={"xs":[1,2,3,4],"total":1}
          +0ms task.created /do/0/sum/do/0/add
          +0ms task.started /do/0/sum/do/0/add
          +0ms task.completed /do/0/sum/do/0/add output={"xs":[1,2,3,4],"total":3}
          +0ms task.created /do/0/sum/do/0/add
          +0ms task.started /do/0/sum/do/0/add
          +0ms task.completed /do/0/sum/do/0/add output={"xs":[1,2,3,4],"total":6}
          +0ms task.completed /do/0/sum output={"xs":[1,2,3,4],"total":6}
          +0ms workflow.completed output={"xs":[1,2,3,4],"total":6}
        journal:
          /do/0/sum completed {"xs":[1,2,3,4],"total":6}
          /do/0/sum/for/0/do/0/add completed {"xs":[1,2,3,4],"total":1}
          /do/0/sum/for/1/do/0/add completed {"xs":[1,2,3,4],"total":3}
          /do/0/sum/for/2/do/0/add completed {"xs":[1,2,3,4],"total":6}
          /input completed {"xs":[1,2,3,4]}
        outcome: completed {"xs":[1,2,3,4],"total":6}
    "#]])
    .await;
}

/// Each call takes 20 ms; with `concurrency: 3`, three start together and the next
/// starts only when one ends, and the outputs come in index order. (Which of three
/// iterations woken at one instant goes first is not defined: `unordered`.)
#[tokio::test]
async fn a_fan_out_runs_at_most_concurrency_iterations_at_once_in_index_order() {
    Case::new(
        "do:
  - fan:
      for: { in: '[range(7)]', concurrency: 3 }
      do:
        - call:
            call: http
            with:
              method: get
              endpoint: https://api.test/square/{item}
              query:
                n: ${ $item | tostring }
",
    )
    .respond(|request| {
        let n: i64 = request
            .url
            .as_str()
            .rsplit('=')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Reply::Late(20, Box::new(Reply::Json(200, json!(n * n))))
    })
    .unordered()
    .check(expect![[r#"
        calls:
          +0ms GET https://api.test/square/?n=0 [exec-1:/do/0/fan/for/0/do/0/call] -> 200 after 20ms
          +0ms GET https://api.test/square/?n=1 [exec-1:/do/0/fan/for/1/do/0/call] -> 200 after 20ms
          +0ms GET https://api.test/square/?n=2 [exec-1:/do/0/fan/for/2/do/0/call] -> 200 after 20ms
          +20ms GET https://api.test/square/?n=3 [exec-1:/do/0/fan/for/3/do/0/call] -> 200 after 20ms
          +20ms GET https://api.test/square/?n=4 [exec-1:/do/0/fan/for/4/do/0/call] -> 200 after 20ms
          +20ms GET https://api.test/square/?n=5 [exec-1:/do/0/fan/for/5/do/0/call] -> 200 after 20ms
          +40ms GET https://api.test/square/?n=6 [exec-1:/do/0/fan/for/6/do/0/call] -> 200 after 20ms
        events:
          +0ms task.created /do/0/fan
          +0ms task.created /do/0/fan/do/0/call
          +0ms task.created /do/0/fan/do/0/call
          +0ms task.created /do/0/fan/do/0/call
          +0ms task.started /do/0/fan
          +0ms task.started /do/0/fan/do/0/call
          +0ms task.started /do/0/fan/do/0/call
          +0ms task.started /do/0/fan/do/0/call
          +0ms workflow.started
          +0ms workflow.validated
          +0ms workflow.validating
          +20ms task.completed /do/0/fan/do/0/call output=0
          +20ms task.completed /do/0/fan/do/0/call output=1
          +20ms task.completed /do/0/fan/do/0/call output=4
          +20ms task.created /do/0/fan/do/0/call
          +20ms task.created /do/0/fan/do/0/call
          +20ms task.created /do/0/fan/do/0/call
          +20ms task.progress /do/0/fan
          +20ms task.progress /do/0/fan
          +20ms task.progress /do/0/fan
          +20ms task.started /do/0/fan/do/0/call
          +20ms task.started /do/0/fan/do/0/call
          +20ms task.started /do/0/fan/do/0/call
          +40ms task.completed /do/0/fan/do/0/call output=16
          +40ms task.completed /do/0/fan/do/0/call output=25
          +40ms task.completed /do/0/fan/do/0/call output=9
          +40ms task.created /do/0/fan/do/0/call
          +40ms task.progress /do/0/fan
          +40ms task.progress /do/0/fan
          +40ms task.progress /do/0/fan
          +40ms task.started /do/0/fan/do/0/call
          +60ms task.completed /do/0/fan output=[0,1,4,9,16,25,36]
          +60ms task.completed /do/0/fan/do/0/call output=36
          +60ms task.progress /do/0/fan
          +60ms workflow.completed output=[0,1,4,9,16,25,36]
        journal:
          /do/0/fan completed [0,1,4,9,16,25,36]
          /do/0/fan/for/0/do/0/call completed 0
          /do/0/fan/for/1/do/0/call completed 1
          /do/0/fan/for/2/do/0/call completed 4
          /do/0/fan/for/3/do/0/call completed 9
          /do/0/fan/for/4/do/0/call completed 16
          /do/0/fan/for/5/do/0/call completed 25
          /do/0/fan/for/6/do/0/call completed 36
          /input completed {}
        outcome: completed [0,1,4,9,16,25,36]
    "#]])
    .await;
}

const CATCH: &str = "do:
  - guarded:
      try:
        - get:
            call: http
            with: { method: get, endpoint: 'https://api.test/pets/{name}' }
      catch:
        errors:
          with: { status: 404 }
        as: err
        do:
          - note:
              set:
                error: ${ $err }
";

#[tokio::test]
async fn a_caught_error_runs_the_catch_block() {
    Case::new(CATCH)
        .input(json!({"name": "missing"}))
        .replies([Reply::Json(404, json!("nope"))])
        .check(expect![[r#"
            calls:
              +0ms GET https://api.test/pets/missing [exec-1:/do/0/guarded/try/0/get] -> 404
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/guarded
              +0ms task.started /do/0/guarded
              +0ms task.created /do/0/guarded/try/0/get
              +0ms task.started /do/0/guarded/try/0/get
              +0ms task.faulted /do/0/guarded/try/0/get error="communication"
              +0ms task.created /do/0/guarded/catch/do/0/note
              +0ms task.started /do/0/guarded/catch/do/0/note
              +0ms task.completed /do/0/guarded/catch/do/0/note output={"error":{"type":"https://serverlessworkflow.io/spec/1.0.0/errors/communication","status":404,"title":"HTTP 404 from GET https://api.test/pets/missing","detail":"\"nope\"","instance":"/do/0/guarded/try/0/get","data":{"status":404,"headers":{"content-type":"application/json"},"body":"nope"}}}
              +0ms task.completed /do/0/guarded output={"error":{"type":"https://serverlessworkflow.io/spec/1.0.0/errors/communication","status":404,"title":"HTTP 404 from GET https://api.test/pets/missing","detail":"\"nope\"","instance":"/do/0/guarded/try/0/get","data":{"status":404,"headers":{"content-type":"application/json"},"body":"nope"}}}
              +0ms workflow.completed output={"error":{"type":"https://serverlessworkflow.io/spec/1.0.0/errors/communication","status":404,"title":"HTTP 404 from GET https://api.test/pets/missing","detail":"\"nope\"","instance":"/do/0/guarded/try/0/get","data":{"status":404,"headers":{"content-type":"application/json"},"body":"nope"}}}
            journal:
              /do/0/guarded completed {"error":{"type":"https://serverlessworkflow.io/spec/1.0.0/errors/communication","status":404,"title":"HTTP 404 from GET https://api.test/pets/missing","detail":"\"nope\"","instance":"/do/0/guarded/try/0/get","data":{"status":404,"headers":{"content-type":"application/json"},"body":"nope"}}}
              /do/0/guarded/catch/do/0/note completed {"error":{"type":"https://serverlessworkflow.io/spec/1.0.0/errors/communication","status":404,"title":"HTTP 404 from GET https://api.test/pets/missing","detail":"\"nope\"","instance":"/do/0/guarded/try/0/get","data":{"status":404,"headers":{"content-type":"application/json"},"body":"nope"}}}
              /do/0/guarded/try/0/get faulted communication
              /input completed {"name":"missing"}
            outcome: completed {"error":{"type":"https://serverlessworkflow.io/spec/1.0.0/errors/communication","status":404,"title":"HTTP 404 from GET https://api.test/pets/missing","detail":"\"nope\"","instance":"/do/0/guarded/try/0/get","data":{"status":404,"headers":{"content-type":"application/json"},"body":"nope"}}}
        "#]])
        .await;
}

#[tokio::test]
async fn an_error_the_catch_does_not_match_faults() {
    Case::new(CATCH)
        .input(json!({"name": "other"}))
        .replies([Reply::Json(503, json!("down"))])
        .check(expect![[r#"
            calls:
              +0ms GET https://api.test/pets/other [exec-1:/do/0/guarded/try/0/get] -> 503
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/guarded
              +0ms task.started /do/0/guarded
              +0ms task.created /do/0/guarded/try/0/get
              +0ms task.started /do/0/guarded/try/0/get
              +0ms task.faulted /do/0/guarded/try/0/get error="communication"
              +0ms task.faulted /do/0/guarded error="communication"
              +0ms workflow.faulted error="communication"
            journal:
              /do/0/guarded faulted communication
              /do/0/guarded/try/0/get faulted communication
              /input completed {"name":"other"}
            outcome: faulted communication 503 at /do/0/guarded/try/0/get ("down")
        "#]])
        .await;
}

#[tokio::test]
async fn exhausted_retries_without_a_handler_fault() {
    Case::new(
        "do:
  - guarded:
      try:
        - get:
            call: http
            with: { method: get, endpoint: 'https://api.test/down' }
      catch:
        retry:
          limit: { attempt: { count: 2 } }
",
    )
    .replies([Reply::Refused, Reply::Refused, Reply::Refused])
    .check(expect![[r#"
        calls:
          +0ms GET https://api.test/down [exec-1:/do/0/guarded/try/0/get] -> refused
          +0ms GET https://api.test/down [exec-1:/do/0/guarded/try#2/0/get] -> refused
          +0ms GET https://api.test/down [exec-1:/do/0/guarded/try#3/0/get] -> refused
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/guarded
          +0ms task.started /do/0/guarded
          +0ms task.created /do/0/guarded/try/0/get
          +0ms task.started /do/0/guarded/try/0/get
          +0ms task.faulted /do/0/guarded/try/0/get error="communication"
          +0ms task.retried /do/0/guarded attempt=2
          +0ms task.created /do/0/guarded/try/0/get
          +0ms task.started /do/0/guarded/try/0/get
          +0ms task.faulted /do/0/guarded/try/0/get error="communication"
          +0ms task.retried /do/0/guarded attempt=3
          +0ms task.created /do/0/guarded/try/0/get
          +0ms task.started /do/0/guarded/try/0/get
          +0ms task.faulted /do/0/guarded/try/0/get error="communication"
          +0ms task.faulted /do/0/guarded error="communication"
          +0ms workflow.faulted error="communication"
        journal:
          /do/0/guarded faulted communication
          /do/0/guarded/retry#1 timer +0ms
          /do/0/guarded/retry#2 timer +0ms
          /do/0/guarded/try#2/0/get faulted communication
          /do/0/guarded/try#3/0/get faulted communication
          /do/0/guarded/try/0/get faulted communication
          /input completed {}
        outcome: faulted communication 503 at /do/0/guarded/try/0/get (cannot connect: connection refused)
    "#]])
    .await;
}

#[tokio::test]
async fn raise_faults_with_its_error_and_the_task_path() {
    Case::new(
        "do:
  - check:
      raise:
        error:
          type: https://example.com/errors/bad
          status: 422
          title: ${ \"bad \\(.n)\" }
",
    )
    .input(json!({"n": 7}))
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/check
          +0ms task.started /do/0/check
          +0ms task.faulted /do/0/check error="bad"
          +0ms workflow.faulted error="bad"
        journal:
          /do/0/check faulted bad
          /input completed {"n":7}
        outcome: faulted bad 422 at /do/0/check ()
    "#]])
    .await;
}

#[tokio::test]
async fn a_task_over_its_timeout_faults() {
    Case::new(
        "do:
  - slow:
      wait: { seconds: 2 }
      timeout:
        after: { milliseconds: 50 }
",
    )
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/slow
          +0ms task.started /do/0/slow
          +50ms task.faulted /do/0/slow error="timeout"
          +50ms workflow.faulted error="timeout"
        journal:
          /do/0/slow faulted timeout
          /do/0/slow/timeout timer +50ms
          /do/0/slow/wait timer +2s
          /input completed {}
        outcome: faulted timeout 408 at /do/0/slow (Task `slow` did not finish within 50 ms)
    "#]])
    .await;
}

#[tokio::test]
async fn an_input_against_its_schema_faults_as_a_validation_error() {
    Case::new(
        "do:
  - typed:
      input:
        schema:
          format: json
          document: { type: object, required: [id] }
      set: { ok: true }
",
    )
    .input(json!({"name": "x"}))
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/typed
          +0ms task.started /do/0/typed
          +0ms task.faulted /do/0/typed error="validation"
          +0ms workflow.faulted error="validation"
        journal:
          /do/0/typed faulted validation
          /input completed {"name":"x"}
        outcome: faulted validation 400 at /do/0/typed ("id" is a required property)
    "#]])
    .await;
}

/// An extension's `before` and `after` lists run around each task it extends, as tasks
/// of their own under the task's key, and are not extended themselves; one whose
/// `before` exits stands for the task.
#[tokio::test]
async fn extensions_run_their_lists_around_the_tasks_they_extend() {
    Case::new(
        "use:
  extensions:
    - skipMarked:
        extend: set
        when: $task.set.skip == true
        before:
          - standIn: { set: { stoodIn: true }, then: exit }
    - logging:
        extend: all
        before:
          - log: { set: { logged: true } }
        after:
          - logAfter: { set: { after: true } }
do:
  - a: { set: { x: 1 } }
  - b: { set: { skip: true } }
",
    )
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/a
          +0ms task.started /do/0/a
          +0ms task.created /use/extensions/1/logging/before/0/log
          +0ms task.started /use/extensions/1/logging/before/0/log
          +0ms task.completed /use/extensions/1/logging/before/0/log output={"logged":true}
          +0ms task.created /use/extensions/1/logging/after/0/logAfter
          +0ms task.started /use/extensions/1/logging/after/0/logAfter
          +0ms task.completed /use/extensions/1/logging/after/0/logAfter output={"after":true}
          +0ms task.completed /do/0/a output={"x":1}
          +0ms task.created /do/1/b
          +0ms task.started /do/1/b
          +0ms task.created /use/extensions/0/skipMarked/before/0/standIn
          +0ms task.started /use/extensions/0/skipMarked/before/0/standIn
          +0ms task.completed /use/extensions/0/skipMarked/before/0/standIn output={"stoodIn":true}
          +0ms task.created /use/extensions/1/logging/after/0/logAfter
          +0ms task.started /use/extensions/1/logging/after/0/logAfter
          +0ms task.completed /use/extensions/1/logging/after/0/logAfter output={"after":true}
          +0ms task.completed /do/1/b output={"stoodIn":true}
          +0ms workflow.completed output={"stoodIn":true}
        journal:
          /do/0/a completed {"x":1}
          /do/0/a/ext/1/after/0/logAfter completed {"after":true}
          /do/0/a/ext/1/before/0/log completed {"logged":true}
          /do/1/b completed {"stoodIn":true}
          /do/1/b/ext/0/before/0/standIn completed {"stoodIn":true}
          /do/1/b/ext/1/after/0/logAfter completed {"after":true}
          /input completed {}
        outcome: completed {"stoodIn":true}
    "#]])
    .await;
}

#[tokio::test]
async fn the_task_descriptor_is_there_for_tasks_that_read_it() {
    Case::new(
        "do:
  - named:
      set:
        me: ${ $task.name }
        at: ${ $task.reference }
        raw: ${ $task.input.n }
      output:
        as: '. + { rawOutputMe: $task.output.me }'
  - plain:
      set: '${ . + { task: $input.me } }'
",
    )
    .input(json!({"n": 3}))
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/named
          +0ms task.started /do/0/named
          +0ms task.completed /do/0/named output={"me":"named","at":"/do/0/named","raw":3,"rawOutputMe":"named"}
          +0ms task.created /do/1/plain
          +0ms task.started /do/1/plain
          +0ms task.completed /do/1/plain output={"me":"named","at":"/do/0/named","raw":3,"rawOutputMe":"named","task":"named"}
          +0ms workflow.completed output={"me":"named","at":"/do/0/named","raw":3,"rawOutputMe":"named","task":"named"}
        journal:
          /do/0/named completed {"me":"named","at":"/do/0/named","raw":3,"rawOutputMe":"named"}
          /do/1/plain completed {"me":"named","at":"/do/0/named","raw":3,"rawOutputMe":"named","task":"named"}
          /input completed {"n":3}
        outcome: completed {"me":"named","at":"/do/0/named","raw":3,"rawOutputMe":"named","task":"named"}
    "#]])
    .await;
}

/// Delivered before anything listens: the events wait in the inbox. `all` pairs a
/// temperature and a humidity of the same room (the other room's stays); `one` takes
/// the order whose number the workflow's input expects.
#[tokio::test]
async fn listen_correlates_events_by_first_value_or_by_expectation() {
    Case::new(
        "do:
  - pair:
      listen:
        to:
          all:
            - with: { type: reading.temperature }
              correlate: { room: { from: .data.room } }
            - with: { type: reading.humidity }
              correlate: { room: { from: .data.room } }
      export:
        as: '{ pair: . }'
  - mine:
      listen:
        to:
          one:
            with: { type: order.paid }
            correlate: { order: { from: .data.order, expect: '${ $workflow.input.order }' } }
  - done:
      set:
        pair: ${ $context.pair }
        mine: ${ . }
",
    )
    .input(json!({"order": 9}))
    .deliver([
        json!({"type": "reading.temperature", "data": {"room": "a", "value": 20}}),
        json!({"type": "reading.humidity", "data": {"room": "b", "value": 50}}),
        json!({"type": "reading.humidity", "data": {"room": "a", "value": 40}}),
        json!({"type": "order.paid", "data": {"order": 7}}),
        json!({"type": "order.paid", "data": {"order": 9}}),
    ])
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/pair
          +0ms task.started /do/0/pair
          +0ms task.completed /do/0/pair output=[{"room":"a","value":20},{"room":"a","value":40}]
          +0ms task.created /do/1/mine
          +0ms task.started /do/1/mine
          +0ms task.completed /do/1/mine output=[{"order":9}]
          +0ms task.created /do/2/done
          +0ms task.started /do/2/done
          +0ms task.completed /do/2/done output={"pair":[{"room":"a","value":20},{"room":"a","value":40}],"mine":[{"order":9}]}
          +0ms workflow.completed output={"pair":[{"room":"a","value":20},{"room":"a","value":40}],"mine":[{"order":9}]}
        journal:
          /do/0/pair completed [{"room":"a","value":20},{"room":"a","value":40}] context={"pair":[{"room":"a","value":20},{"room":"a","value":40}]}
          /do/0/pair/consumed completed [1,3]
          /do/1/mine completed [{"order":9}]
          /do/1/mine/consumed completed [5]
          /do/2/done completed {"pair":[{"room":"a","value":20},{"room":"a","value":40}],"mine":[{"order":9}]}
          /input completed {"order":9}
        outcome: completed {"pair":[{"room":"a","value":20},{"room":"a","value":40}],"mine":[{"order":9}]}
    "#]])
    .await;
}

#[tokio::test]
async fn listen_foreach_exports_into_the_context() {
    Case::new(
        "do:
  - collect:
      listen:
        to:
          any: []
          until: '( . | length ) >= 2'
      foreach:
        item: e
        export:
          as: '$context + { seen: (($context.seen // 0) + 1) }'
  - report:
      set: '${ $context.seen }'
",
    )
    .deliver([
        json!({"type": "a", "data": 1}),
        json!({"type": "b", "data": 2}),
    ])
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/collect
          +0ms task.started /do/0/collect
          +0ms task.completed /do/0/collect output=[1,2]
          +0ms task.created /do/1/report
          +0ms task.started /do/1/report
          +0ms task.completed /do/1/report output=2
          +0ms workflow.completed output=2
        journal:
          /do/0/collect completed [1,2] context={"seen":2}
          /do/0/collect/consumed completed [1,2]
          /do/1/report completed 2
          /input completed {}
        outcome: completed 2
    "#]])
    .await;
}
