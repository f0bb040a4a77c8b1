//! The limits of one execution, traced: an expression over its budget is a `runtime`
//! fault a `try` can catch, `run.workflow` cannot nest past its depth, and a loop's
//! iterations wait for the execution's permits.

use engine::Limits;
use expect_test::expect;
use expr::Budget;
use serde_json::json;

use crate::trace::{Case, Reply};

#[tokio::test]
async fn an_expression_over_its_budget_faults_the_task_and_try_catches_it() {
    Case::new(
        r#"do:
  - guarded:
      try:
        - huge:
            set:
              text: ${ "x" * 1000000000 }
      catch:
        errors:
          with:
            type: https://serverlessworkflow.io/spec/1.0.0/errors/runtime
        as: e
        do:
          - report:
              set:
                status: ${ $e.status }
                detail: ${ $e.detail }
  - loop:
      set:
        n: ${ [limit(100000000; repeat(1))] | length }
"#,
    )
    .limits(Limits {
        expression: Budget {
            steps: 100_000,
            bytes: 1 << 20,
            ..Budget::default()
        },
        ..Limits::default()
    })
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/guarded
          +0ms task.started /do/0/guarded
          +0ms task.created /do/0/guarded/try/0/huge
          +0ms task.started /do/0/guarded/try/0/huge
          +0ms task.faulted /do/0/guarded/try/0/huge error="runtime"
          +0ms task.created /do/0/guarded/catch/do/0/report
          +0ms task.started /do/0/guarded/catch/do/0/report
          +0ms task.completed /do/0/guarded/catch/do/0/report output={"status":413,"detail":"the expression built more than its budget of 1048576 bytes of values (setting `expression-bytes`) (in ` \"x\" * 1000000000 ` at /do/0/guarded/try/0/huge/set/text)"}
          +0ms task.completed /do/0/guarded output={"status":413,"detail":"the expression built more than its budget of 1048576 bytes of values (setting `expression-bytes`) (in ` \"x\" * 1000000000 ` at /do/0/guarded/try/0/huge/set/text)"}
          +0ms task.created /do/1/loop
          +0ms task.started /do/1/loop
          +0ms task.faulted /do/1/loop error="runtime"
          +0ms workflow.faulted error="runtime"
        journal:
          /do/0/guarded completed {"status":413,"detail":"the expression built more than its budget of 1048576 bytes of values (setting `expression-bytes`) (in ` \"x\" * 1000000000 ` at /do/0/guarded/try/0/huge/set/text)"}
          /do/0/guarded/catch/do/0/report completed {"status":413,"detail":"the expression built more than its budget of 1048576 bytes of values (setting `expression-bytes`) (in ` \"x\" * 1000000000 ` at /do/0/guarded/try/0/huge/set/text)"}
          /do/0/guarded/try/0/huge faulted runtime
          /do/1/loop faulted runtime
          /input completed {}
        outcome: faulted runtime 400 at /do/1/loop (the expression went over its budget of 100000 evaluation steps (setting `expression-steps`) (in ` [limit(100000000; repeat(1))] | length ` at /do/1/loop/set/n))
    "#]])
    .await;
}

const NESTED: &str = "document: {dsl: '1.0.3', namespace: test, name: nested, version: '1.0.0'}
do:
  - deeper:
      run:
        workflow: {namespace: test, name: nested, version: '1.0.0'}
";

#[tokio::test]
async fn run_workflow_cannot_nest_past_its_depth() {
    Case::new(NESTED)
        .catalog("nested", NESTED)
        .limits(Limits {
            subflow_depth: 2,
            ..Limits::default()
        })
        .check(expect![[r#"
            calls:
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/deeper
              +0ms task.started /do/0/deeper
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/deeper
              +0ms task.started /do/0/deeper
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/deeper
              +0ms task.started /do/0/deeper
              +0ms task.faulted /do/0/deeper error="runtime"
              +0ms workflow.faulted error="runtime"
              +0ms task.faulted /do/0/deeper error="runtime"
              +0ms workflow.faulted error="runtime"
              +0ms task.faulted /do/0/deeper error="runtime"
              +0ms workflow.faulted error="runtime"
            journal:
              /do/0/deeper faulted runtime
              /input completed {}
            outcome: faulted runtime 413 at /do/0/deeper (`run.workflow` would nest deeper than 2 levels (setting `subflow-depth`))
        "#]])
        .await;
}

#[tokio::test]
async fn a_loop_runs_more_than_one_iteration_only_on_the_executions_permits() {
    Case::new(
        "do:
  - fan:
      for: { in: '[range(6)]', concurrency: 6 }
      do:
        - call:
            call: http
            with:
              method: get
              endpoint: https://api.test/item
              query:
                n: ${ $item | tostring }
",
    )
    .respond(|_| Reply::Late(10, Box::new(Reply::Json(200, json!(1)))))
    .unordered()
    .limits(Limits {
        execution_iterations: 2,
        ..Limits::default()
    })
    .check(expect![[r#"
        calls:
          +0ms GET https://api.test/item?n=0 [exec-1:/do/0/fan/for/0/do/0/call] -> 200 after 10ms
          +0ms GET https://api.test/item?n=1 [exec-1:/do/0/fan/for/1/do/0/call] -> 200 after 10ms
          +0ms GET https://api.test/item?n=2 [exec-1:/do/0/fan/for/2/do/0/call] -> 200 after 10ms
          +10ms GET https://api.test/item?n=3 [exec-1:/do/0/fan/for/3/do/0/call] -> 200 after 10ms
          +10ms GET https://api.test/item?n=4 [exec-1:/do/0/fan/for/4/do/0/call] -> 200 after 10ms
          +20ms GET https://api.test/item?n=5 [exec-1:/do/0/fan/for/5/do/0/call] -> 200 after 10ms
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
          +10ms task.completed /do/0/fan/do/0/call output=1
          +10ms task.completed /do/0/fan/do/0/call output=1
          +10ms task.completed /do/0/fan/do/0/call output=1
          +10ms task.created /do/0/fan/do/0/call
          +10ms task.created /do/0/fan/do/0/call
          +10ms task.progress /do/0/fan
          +10ms task.progress /do/0/fan
          +10ms task.progress /do/0/fan
          +10ms task.started /do/0/fan/do/0/call
          +10ms task.started /do/0/fan/do/0/call
          +20ms task.completed /do/0/fan/do/0/call output=1
          +20ms task.completed /do/0/fan/do/0/call output=1
          +20ms task.created /do/0/fan/do/0/call
          +20ms task.progress /do/0/fan
          +20ms task.progress /do/0/fan
          +20ms task.started /do/0/fan/do/0/call
          +30ms task.completed /do/0/fan output=[1,1,1,1,1,1]
          +30ms task.completed /do/0/fan/do/0/call output=1
          +30ms task.progress /do/0/fan
          +30ms workflow.completed output=[1,1,1,1,1,1]
        journal:
          /do/0/fan completed [1,1,1,1,1,1]
          /do/0/fan/for/0/do/0/call completed 1
          /do/0/fan/for/1/do/0/call completed 1
          /do/0/fan/for/2/do/0/call completed 1
          /do/0/fan/for/3/do/0/call completed 1
          /do/0/fan/for/4/do/0/call completed 1
          /do/0/fan/for/5/do/0/call completed 1
          /input completed {}
        outcome: completed [1,1,1,1,1,1]
    "#]])
    .await;
}

const LOOP: &str = "do:
  - spin:
      for: { in: '[range(100000)]' }
      do:
        - step:
            set: '${ $item }'
";

#[tokio::test]
async fn a_long_pure_loop_stops_at_the_executions_task_limit() {
    Case::new(LOOP)
        .limits(Limits {
            tasks: 5,
            ..Limits::default()
        })
        .check(expect![[r#"
            calls:
            events:
              +0ms workflow.started
              +0ms workflow.validating
              +0ms workflow.validated
              +0ms task.created /do/0/spin
              +0ms task.started /do/0/spin
              +0ms task.created /do/0/spin/do/0/step
              +0ms task.started /do/0/spin/do/0/step
              +0ms task.completed /do/0/spin/do/0/step output=0
              +0ms task.created /do/0/spin/do/0/step
              +0ms task.started /do/0/spin/do/0/step
              +0ms task.completed /do/0/spin/do/0/step output=1
              +0ms task.created /do/0/spin/do/0/step
              +0ms task.started /do/0/spin/do/0/step
              +0ms task.completed /do/0/spin/do/0/step output=2
              +0ms task.created /do/0/spin/do/0/step
              +0ms task.started /do/0/spin/do/0/step
              +0ms task.completed /do/0/spin/do/0/step output=3
              +0ms task.created /do/0/spin/do/0/step
              +0ms task.started /do/0/spin/do/0/step
              +0ms task.faulted /do/0/spin/do/0/step error="runtime"
              +0ms task.faulted /do/0/spin error="runtime"
              +0ms workflow.faulted error="runtime"
            journal:
              /do/0/spin faulted runtime
              /do/0/spin/for/0/do/0/step completed 0
              /do/0/spin/for/1/do/0/step completed 1
              /do/0/spin/for/2/do/0/step completed 2
              /do/0/spin/for/3/do/0/step completed 3
              /do/0/spin/for/4/do/0/step faulted runtime
              /input completed {}
            outcome: faulted runtime 413 at /do/0/spin/do/0/step (the execution started more than 5 tasks (setting `execution-tasks`))
        "#]])
        .await;
}

#[tokio::test]
async fn an_execution_stops_recording_at_its_journal_limit() {
    Case::new(
        "do:
  - spin:
      for: { in: '[range(100000)]' }
      do:
        - step:
            set: '${ \"x\" * 10 }'
",
    )
    .limits(Limits {
        journal_bytes: 40,
        ..Limits::default()
    })
    .check(expect![[r#"
        calls:
        events:
          +0ms workflow.started
          +0ms workflow.validating
          +0ms workflow.validated
          +0ms task.created /do/0/spin
          +0ms task.started /do/0/spin
          +0ms task.created /do/0/spin/do/0/step
          +0ms task.started /do/0/spin/do/0/step
          +0ms task.completed /do/0/spin/do/0/step output="xxxxxxxxxx"
          +0ms task.created /do/0/spin/do/0/step
          +0ms task.started /do/0/spin/do/0/step
          +0ms task.completed /do/0/spin/do/0/step output="xxxxxxxxxx"
          +0ms task.created /do/0/spin/do/0/step
          +0ms task.started /do/0/spin/do/0/step
          +0ms task.completed /do/0/spin/do/0/step output="xxxxxxxxxx"
          +0ms task.created /do/0/spin/do/0/step
          +0ms task.started /do/0/spin/do/0/step
          +0ms task.faulted /do/0/spin/do/0/step error="runtime"
          +0ms task.faulted /do/0/spin error="runtime"
          +0ms workflow.faulted error="runtime"
        journal:
          /do/0/spin faulted runtime
          /do/0/spin/for/0/do/0/step completed "xxxxxxxxxx"
          /do/0/spin/for/1/do/0/step completed "xxxxxxxxxx"
          /do/0/spin/for/2/do/0/step completed "xxxxxxxxxx"
          /do/0/spin/for/3/do/0/step faulted runtime
          /input completed {}
        outcome: faulted runtime 413 at /do/0/spin/do/0/step (the execution recorded more than 40 bytes of task outputs and context (setting `execution-journal-bytes`))
    "#]])
    .await;
}
