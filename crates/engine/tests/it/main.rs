//! The engine against a real SQLite journal and scripted effects. The traced cases
//! (`flow`, `timers`, `program`: a workflow and its replies in, a snapshot of calls,
//! events, journal and outcome out) cover data flow, control flow, retries, timers and
//! listeners whose events wait in the inbox;
//! the tests here check what a snapshot of one run cannot show: interruptions and
//! resumes, cancellation, races, children, listeners fed while they wait, secrets and
//! limits (the crash test with a real process lives in the cli crate). Every run is on
//! the manual clock: time moves only when all that runs is asleep on it.

mod flow;
mod limits;
mod program;
mod timers;
mod trace;
mod watched;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use engine::{
    Clock, Effects, Engine, HttpError, HttpRequest, HttpResponse, ManualClock, Outcome,
    ProcessOutput, ProcessSpec,
};
use serde_json::{Value, json};
use store::Durability;
use store::sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

use engine::events::Lifecycle;

use crate::trace::Recorder;
use crate::watched::Watched;

type Responder = dyn Fn(&HttpRequest, usize) -> Result<HttpResponse, HttpError> + Send + Sync;

/// Effects that record every request and answer with a script.
struct Fake {
    requests: Mutex<Vec<HttpRequest>>,
    respond: Box<Responder>,
    /// How long each request takes on the manual clock, in milliseconds.
    latency: Option<(Arc<ManualClock>, i64)>,
    /// Workflows for `run.workflow`, by `namespace/name/version`.
    catalog: std::collections::HashMap<String, String>,
}

impl Fake {
    fn new(
        respond: impl Fn(&HttpRequest, usize) -> Result<HttpResponse, HttpError> + Send + Sync + 'static,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            requests: Mutex::new(Vec::new()),
            respond: Box::new(respond),
            latency: None,
            catalog: Default::default(),
        })
    }

    fn with_workflow(mut self: Arc<Self>, reference: &str, source: &str) -> Arc<Self> {
        Arc::get_mut(&mut self)
            .expect("not shared yet")
            .catalog
            .insert(reference.into(), source.into());
        self
    }

    fn slow(mut self: Arc<Self>, setup: &Setup, ms: i64) -> Arc<Self> {
        Arc::get_mut(&mut self).expect("not shared yet").latency = Some((setup.clock.clone(), ms));
        self
    }

    fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// The `Idempotency-Key` header of each request.
fn idempotency_keys(requests: &[HttpRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let (_, key) = r
                .headers
                .iter()
                .find(|(k, _)| k == "idempotency-key")
                .expect("every call carries an idempotency key");
            key.clone()
        })
        .collect()
}

fn json_response(status: u16, body: Value) -> Result<HttpResponse, HttpError> {
    Ok(HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&body).unwrap(),
    })
}

#[async_trait]
impl Effects for Fake {
    async fn http(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let n = {
            let mut requests = self.requests.lock().unwrap();
            requests.push(request.clone());
            requests.len()
        };
        if let Some((clock, ms)) = &self.latency {
            clock.sleep_until(clock.now_ms() + ms).await;
        }
        (self.respond)(&request, n)
    }

    async fn process(
        &self,
        spec: ProcessSpec,
        _control: engine::ProcessControl,
    ) -> std::io::Result<ProcessOutput> {
        Ok(ProcessOutput {
            code: Some(0),
            stdout: spec.arguments.join(" ").into_bytes(),
            ..ProcessOutput::default()
        })
    }

    async fn load_workflow(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
    ) -> std::io::Result<Option<String>> {
        Ok(self
            .catalog
            .get(&format!("{namespace}/{name}/{version}"))
            .cloned())
    }
}

/// One journal file, one manual clock and one event recorder, shared by every engine a
/// test opens on them (a second engine is a restart).
struct Setup {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<ManualClock>,
    recorder: Arc<Recorder>,
    /// The store of the engine opened last.
    store: Mutex<Option<Arc<Watched>>>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skein.db");
        Setup {
            _dir: dir,
            path,
            clock: Arc::new(ManualClock::new(trace::START)),
            recorder: Arc::default(),
            store: Mutex::default(),
        }
    }

    fn engine(&self, effects: Arc<Fake>) -> Engine {
        let sqlite = SqliteStore::open(&self.path, Durability::Full).unwrap();
        let store = Arc::new(Watched::new(Arc::new(sqlite)));
        *self.store.lock().unwrap() = Some(store.clone());
        Engine::new(store, effects, self.clock.clone()).with_observer(self.recorder.clone())
    }

    /// Polls `work` (a run, or anything waiting on runs) to its end on the manual clock.
    async fn drive<T>(&self, work: impl Future<Output = T>) -> T {
        let store = self.store();
        trace::drive(work, &self.clock, &store, &self.recorder).await
    }

    fn store(&self) -> Arc<Watched> {
        let store = self.store.lock().unwrap();
        store.clone().expect("an engine was opened")
    }

    /// Polls `work` until everything waits on the clock; says when the next sleeper wakes.
    async fn until_settled<T: std::fmt::Debug>(
        &self,
        work: &mut std::pin::Pin<&mut impl Future<Output = T>>,
    ) -> i64 {
        let store = self.store();
        trace::until_settled(work, &self.clock, &store, &self.recorder).await
    }

    /// Runs execution `id` to its end.
    async fn run(&self, engine: &Engine, id: &str) -> Outcome {
        let run = engine.run(id, json!({}), CancellationToken::new());
        self.drive(run).await.unwrap()
    }

    /// Creates an execution of `source` and runs it to its end.
    async fn run_with(
        &self,
        engine: &Engine,
        source: &str,
        input: Value,
        secrets: Value,
    ) -> (String, Outcome) {
        let parsed = dsl::parse(source, &dsl::Options::default());
        let workflow = parsed
            .workflow
            .unwrap_or_else(|| panic!("invalid test workflow: {:#?}", parsed.diagnostics));
        let id = engine.create(source, &workflow, None, input).await.unwrap();
        let run = engine.run(&id, secrets, CancellationToken::new());
        let outcome = self.drive(run).await.unwrap();
        (id, outcome)
    }
}

async fn run(source: &str, input: Value) -> Outcome {
    let setup = Setup::new();
    let engine = setup.engine(Fake::new(|_, _| json_response(200, json!({}))));
    setup.run_with(&engine, source, input, json!({})).await.1
}

fn doc(tasks: &str) -> String {
    format!(
        "document: {{dsl: '1.0.3', namespace: test, name: flow, version: '1.0.0'}}\ndo:\n{tasks}"
    )
}

fn completed(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Completed(v) => v,
        other => panic!("expected completion, got {other:?}"),
    }
}

fn faulted(outcome: Outcome) -> expr::Problem {
    match outcome {
        Outcome::Faulted(p) => p,
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fault_in_one_iteration_faults_the_fan_out() {
    let source = doc("  - fan:
      for: { in: '[range(8)]', concurrency: 4 }
      do:
        - call:
            call: http
            with: { method: get, endpoint: '${ \"https://api.test/\\($item)\" }' }
");
    let setup = Setup::new();
    let fake = Fake::new(|req, _| {
        if req.url.as_str().ends_with("/5") {
            json_response(500, json!({"boom": 5}))
        } else {
            json_response(200, json!(1))
        }
    });
    let engine = setup.engine(fake);
    let problem = faulted(
        setup
            .run_with(&engine, &source, json!({}), json!({}))
            .await
            .1,
    );
    assert_eq!(problem.status, 500);
    assert_eq!(problem.type_, expr::types::COMMUNICATION);
    assert_eq!(problem.instance.as_deref(), Some("/do/0/fan/do/0/call"));
}

#[tokio::test]
async fn fork_branches_run_concurrently_or_compete() {
    let all = doc("  - both:
      fork:
        branches:
          - a: { set: { from: a } }
          - b: { set: { from: b } }
");
    assert_eq!(
        completed(run(&all, json!({})).await),
        json!([{"from": "a"}, {"from": "b"}])
    );
    let compete = all.replace("fork:\n", "fork:\n        compete: true\n");
    let out = completed(run(&compete, json!({})).await);
    assert!(
        out == json!({"from": "a"}) || out == json!({"from": "b"}),
        "{out}"
    );
}

#[tokio::test]
async fn a_backoff_decided_before_a_resume_stands_after_it() {
    let source = doc("  - guarded:
      try:
        - get:
            call: http
            with: { method: get, endpoint: 'https://api.test/flaky' }
      catch:
        retry:
          delay: { milliseconds: 300 }
          limit: { duration: { milliseconds: 400 } }
");
    let setup = Setup::new();
    let fake = Fake::new(|_, n| {
        if n == 1 {
            json_response(503, json!("busy"))
        } else {
            json_response(200, json!({"ok": n}))
        }
    });
    let parsed = dsl::parse(&source, &dsl::Options::default())
        .workflow
        .unwrap();
    let id = {
        let engine = setup.engine(fake.clone());
        let id = engine
            .create(&source, &parsed, None, json!({}))
            .await
            .unwrap();
        // Interrupt the run during its backoff: it is dropped, as in a crash.
        let run = engine.run(&id, json!({}), CancellationToken::new());
        tokio::pin!(run);
        let wakes = setup.until_settled(&mut run).await;
        assert_eq!(wakes, trace::START + 300, "asleep in the backoff");
        id.clone()
    };
    // Resume when the retry window, counted from the first attempt, has closed: the
    // retry was decided within it, so it still happens.
    setup.clock.set(trace::START + 500);
    let engine = setup.engine(fake.clone());
    assert_eq!(completed(setup.run(&engine, &id).await), json!({"ok": 2}));
    assert_eq!(
        setup.clock.now_ms(),
        trace::START + 500,
        "the backoff had passed: no new wait"
    );
    let window = engine
        .store()
        .journal(&id)
        .await
        .unwrap()
        .steps
        .into_iter()
        .find(|s| s.key == "/do/0/guarded/retry-window");
    assert!(window.is_some(), "the window's start is journaled");
}

#[tokio::test]
async fn secrets_authenticate_calls_and_a_missing_one_is_an_authorization_error() {
    let source = "document: {dsl: '1.0.3', namespace: test, name: flow, version: '1.0.0'}
use:
  secrets: [ creds ]
do:
  - get:
      call: http
      with:
        method: get
        endpoint:
          uri: https://api.test/private
          authentication:
            basic:
              use: creds
";
    let setup = Setup::new();
    let fake = Fake::new(|_, _| json_response(200, json!("ok")));
    let engine = setup.engine(fake.clone());
    let (_, outcome) = setup
        .run_with(
            &engine,
            source,
            json!({}),
            json!({"creds": {"username": "ada", "password": "pw"}}),
        )
        .await;
    assert_eq!(completed(outcome), json!("ok"));
    let auth = fake.requests()[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap()
        .1
        .clone();
    assert_eq!(auth, "Basic YWRhOnB3");
    let p = faulted(
        setup
            .run_with(&engine, source, json!({}), json!({}))
            .await
            .1,
    );
    assert_eq!(
        (p.type_.as_str(), p.status),
        (expr::types::AUTHORIZATION, 403)
    );
    assert!(p.detail.unwrap().contains("`creds`"));
}

#[tokio::test]
async fn a_workflow_reads_only_declared_secrets_and_records_none() {
    let source = "document: {dsl: '1.0.3', namespace: test, name: flow, version: '1.0.0'}
use:
  secrets: [ token ]
do:
  - call:
      call: http
      with:
        method: get
        endpoint:
          uri: https://api.test/private
          authentication:
            bearer:
              use: token
  - copy:
      set:
        seen: ${ \"got \\($secrets.token)!\" }
        other: ${ $secrets.other }
";
    let setup = Setup::new();
    let fake = Fake::new(|_, _| json_response(200, json!("ok")));
    let engine = setup.engine(fake.clone());
    let (id, outcome) = setup
        .run_with(
            &engine,
            source,
            json!({}),
            json!({"token": {"token": "tok-123-secret"}, "other": "undeclared-value"}),
        )
        .await;
    // The workflow itself sees the secret it declared, and not the other one.
    assert_eq!(
        completed(outcome),
        json!({"seen": "got {\"token\":\"tok-123-secret\"}!", "other": null})
    );
    let auth = &fake.requests()[0].headers;
    assert!(auth.contains(&("authorization".into(), "Bearer tok-123-secret".into())));
    // What is recorded for others to read shows a mask instead.
    let events = engine.store().events(&id, 0, 10_000).await.unwrap();
    let texts: Vec<&str> = events.iter().map(|e| e.data.text()).collect();
    assert!(
        texts.iter().all(|t| !t.contains("tok-123-secret")),
        "{texts:#?}"
    );
    assert!(texts.iter().any(|t| t.contains("***")), "{texts:#?}");
    let stored = engine.store().execution(&id).await.unwrap().unwrap();
    let output = stored.output.unwrap();
    assert_eq!(output["seen"], json!("got {\"token\":\"***\"}!"));
}

#[tokio::test]
async fn state_over_the_limit_faults_the_task_and_is_never_stored() {
    let setup = Setup::new();
    let engine = setup
        .engine(Fake::new(|_, _| json_response(200, json!({}))))
        .with_max_state_bytes(1_000);
    // A small output passes; a large one faults the task that made it, naming the limit.
    let source = doc("  - small:
      set: '${ [range(10)] }'
  - big:
      set: '${ [range(1000)] }'
");
    let (id, outcome) = setup.run_with(&engine, &source, json!({}), json!({})).await;
    let p = faulted(outcome);
    assert_eq!(
        (p.type_.as_str(), p.status, p.instance.as_deref()),
        (expr::types::RUNTIME, 413, Some("/do/1/big"))
    );
    let detail = p.detail.unwrap();
    assert!(
        detail.contains("the output of task `big` is 3891 bytes") && detail.contains("1000 bytes"),
        "{detail}"
    );
    let events = engine.store().events(&id, 0, 10_000).await.unwrap();
    assert!(events.iter().all(|e| !e.data.text().contains("999")));

    // The same for a `$context` that grows past it, caught like any other error.
    let source = doc("  - grow:
      for: { in: '${ [range(100)] }' }
      do:
        - add:
            set: '${ $item }'
            export:
              as: '${ $context + { (. | tostring): \"some padding text\" } }'
  - never:
      set: { x: 1 }
");
    let p = faulted(
        setup
            .run_with(&engine, &source, json!({}), json!({}))
            .await
            .1,
    );
    assert_eq!(p.status, 413);
    assert!(
        p.detail
            .unwrap()
            .contains("the context exported by task `add`"),
    );
    assert_eq!(p.instance.as_deref(), Some("/do/0/grow/do/0/add"));
}

#[tokio::test]
async fn deliveries_past_the_inbox_limit_are_refused_and_keep_what_was_delivered() {
    let setup = Setup::new();
    let engine = setup
        .engine(Fake::new(|_, _| json_response(200, json!({}))))
        .with_limits(engine::Limits {
            inbox_events: 2,
            ..engine::Limits::default()
        });
    let source = doc(
        "  - hear:\n      listen:\n        to:\n          one:\n            with: {type: never}\n",
    );
    let workflow = dsl::parse(&source, &dsl::Options::default())
        .workflow
        .unwrap();
    let id = engine
        .create(&source, &workflow, None, json!({}))
        .await
        .unwrap();
    for n in 1..=2 {
        let position = engine
            .deliver(&id, json!({"type": "other", "n": n}))
            .await
            .unwrap();
        assert_eq!(position, n);
    }
    let refused = engine
        .deliver(&id, json!({"type": "other", "n": 3}))
        .await
        .unwrap_err();
    assert!(matches!(refused, engine::Error::Limit(_)), "{refused}");
    assert!(refused.to_string().contains("`inbox-events`"), "{refused}");
    assert_eq!(engine.store().inbox(&id, 0).await.unwrap().len(), 2);
}

#[tokio::test]
async fn cancellation_ends_the_execution_and_is_recorded() {
    let source = doc("  - nap:
      wait: PT10S
");
    let setup = Setup::new();
    let engine = setup.engine(Fake::new(|_, _| json_response(200, json!({}))));
    let parsed = dsl::parse(&source, &dsl::Options::default())
        .workflow
        .unwrap();
    let id = engine
        .create(&source, &parsed, Some("c1".into()), json!({}))
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let run = engine.run(&id, json!({}), cancel.clone());
    tokio::pin!(run);
    // Cancelled while it waits.
    setup.until_settled(&mut run).await;
    cancel.cancel();
    assert_eq!(run.await.unwrap(), Outcome::Cancelled);
    let stored = engine.store().execution("c1").await.unwrap().unwrap();
    assert_eq!(stored.status, store::Status::Cancelled);
    let types = event_types(&engine, "c1").await;
    assert_eq!(
        types[types.len() - 2..],
        [
            "io.serverlessworkflow.task.cancelled.v1",
            "io.serverlessworkflow.workflow.cancelled.v1"
        ]
    );
}

#[tokio::test]
async fn tasks_and_children_that_lose_a_race_are_recorded_as_cancelled() {
    let child = "document: {dsl: '1.0.3', namespace: lib, name: slow, version: '1.0.0'}
do:
  - nap:
      wait: PT10S
";
    let source = doc("  - race:
      fork:
        compete: true
        branches:
          - quick:
              do:
                - pause: { wait: { milliseconds: 200 } }
                - done: { set: { winner: quick } }
          - sleepy:
              wait: PT10S
          - delegate:
              run:
                workflow: { namespace: lib, name: slow, version: '1.0.0' }
");
    let setup = Setup::new();
    let engine = setup.engine(
        Fake::new(|_, _| json_response(200, json!({}))).with_workflow("lib/slow/1.0.0", child),
    );
    let (id, outcome) = setup.run_with(&engine, &source, json!({}), json!({})).await;
    assert_eq!(completed(outcome), json!({"winner": "quick"}));
    assert_eq!(
        setup.clock.now_ms(),
        trace::START + 200,
        "the losers were not awaited"
    );
    let events = engine.store().events(&id, 0, 10_000).await.unwrap();
    let cancelled: Vec<String> = events
        .iter()
        .filter(|e| e.type_ == "io.serverlessworkflow.task.cancelled.v1")
        .map(|e| e.data.value()["task"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        cancelled.len(),
        2,
        "the two losing branches, whatever their order: {cancelled:?}"
    );
    for task in [
        "/do/0/race/fork/branches/1/sleepy",
        "/do/0/race/fork/branches/2/delegate",
    ] {
        assert!(
            cancelled.iter().any(|c| c == task),
            "{task} in {cancelled:?}"
        );
    }
    // The child execution does not stay `running` for ever: it was cancelled, and so was its task.
    let child_id = format!("{id}/do/0/race/fork/branches/2/delegate");
    let child = engine
        .store()
        .execution(&child_id)
        .await
        .unwrap()
        .expect("a child execution");
    assert_eq!(child.status, store::Status::Cancelled);
    let types = event_types(&engine, &child_id).await;
    assert_eq!(
        types[types.len() - 2..],
        [
            "io.serverlessworkflow.task.cancelled.v1",
            "io.serverlessworkflow.workflow.cancelled.v1"
        ]
    );
}

async fn event_types(engine: &Engine, id: &str) -> Vec<String> {
    engine
        .store()
        .events(id, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.type_)
        .collect()
}

#[tokio::test]
async fn an_interrupted_execution_resumes_without_repeating_finished_calls() {
    let source = doc("  - first:
      call: http
      with: { method: post, endpoint: 'https://api.test/first' }
  - second:
      call: http
      with: { method: post, endpoint: 'https://api.test/second' }
  - third:
      call: http
      with: { method: post, endpoint: 'https://api.test/third' }
");
    let setup = Setup::new();
    let fake =
        Fake::new(|req, _| json_response(200, json!(req.url.as_str().rsplit('/').next().unwrap())))
            .slow(&setup, 150);
    let parsed = dsl::parse(&source, &dsl::Options::default())
        .workflow
        .unwrap();
    let id = {
        let engine = setup.engine(fake.clone());
        let id = engine
            .create(&source, &parsed, Some("r1".into()), json!({}))
            .await
            .unwrap();
        // Interrupt the run while `second` is in flight: its future is dropped, as in a crash.
        let run = engine.run(&id, json!({}), CancellationToken::new());
        tokio::pin!(run);
        loop {
            let wakes = setup.until_settled(&mut run).await;
            if fake.requests().len() == 2 {
                break;
            }
            setup.clock.set(wakes);
        }
        id.clone()
    };
    let engine = setup.engine(fake.clone());
    assert_eq!(completed(setup.run(&engine, &id).await), json!("third"));
    assert_eq!(
        event_types(&engine, &id)
            .await
            .iter()
            .filter(|t| t.contains("cancelled"))
            .count(),
        0,
        "an abandoned run is not a cancelled one"
    );
    let urls: Vec<String> = fake.requests().iter().map(|r| r.url.to_string()).collect();
    assert_eq!(
        urls,
        [
            "https://api.test/first",
            "https://api.test/second",
            "https://api.test/second",
            "https://api.test/third"
        ],
        "`first` completed before the interruption and is not called again; `second` was in flight and is"
    );
    let second_keys = idempotency_keys(&fake.requests()[1..3]);
    assert_eq!(
        second_keys[0], second_keys[1],
        "a re-run of the same attempt carries the same idempotency key"
    );
    // A finished execution runs no more.
    assert_eq!(completed(setup.run(&engine, &id).await), json!("third"));
    assert_eq!(fake.requests().len(), 4);
}

#[tokio::test]
async fn events_have_a_strictly_increasing_sequence() {
    let source = doc("  - fan:
      for: { in: '[range(20)]', concurrency: 8 }
      do:
        - s: { set: '${ $item }' }
  - done: { set: { ok: true } }
");
    let setup = Setup::new();
    let engine = setup.engine(Fake::new(|_, _| json_response(200, json!({}))));
    let (id, outcome) = setup.run_with(&engine, &source, json!({}), json!({})).await;
    completed(outcome);
    let events = engine.store().events(&id, 0, 10_000).await.unwrap();
    assert!(
        events.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "contiguous and increasing"
    );
    assert_eq!(
        events.first().unwrap().type_,
        "io.serverlessworkflow.workflow.started.v1"
    );
    assert_eq!(
        events.last().unwrap().type_,
        "io.serverlessworkflow.workflow.completed.v1"
    );
    let progress = events
        .iter()
        .filter(|e| e.type_ == "dev.skein.task.progress.v1")
        .count();
    assert_eq!(progress, 20, "one progress event per finished iteration");
}

#[tokio::test]
async fn emitted_events_get_ids_a_rerun_repeats_and_the_start_reports_validation() {
    let source = doc("  - ask:
      for: { in: '[range(2)]' }
      do:
        - say:
            emit:
              event:
                with: { type: dev.test.said, source: test, data: '${ {n: $item} }' }
");
    let setup = Setup::new();
    let engine = setup.engine(Fake::new(|_, _| json_response(200, json!({}))));
    let (id, outcome) = setup.run_with(&engine, &source, json!({}), json!({})).await;
    completed(outcome);
    let events = engine.store().events(&id, 0, 10_000).await.unwrap();
    let ids: Vec<Value> = events
        .iter()
        .filter(|e| e.type_ == "dev.test.said")
        .map(|e| e.data.value()["id"].clone())
        .collect();
    // Made from the execution and the step's key, which a re-run after a crash shares.
    assert_eq!(
        ids,
        vec![
            json!(format!("{id}:/do/0/ask/for/0/do/0/say")),
            json!(format!("{id}:/do/0/ask/for/1/do/0/say")),
        ]
    );
    let first: Vec<&str> = events.iter().take(3).map(|e| e.type_.as_str()).collect();
    assert_eq!(
        first,
        [
            "io.serverlessworkflow.workflow.started.v1",
            "dev.skein.workflow.validating.v1",
            "dev.skein.workflow.validated.v1",
        ]
    );
}

#[tokio::test]
async fn listen_consumes_delivered_events_once_each() {
    let source = doc("  - first:
      listen:
        to:
          one:
            with: { type: com.example.ready, data: '${ .ok == true }' }
  - both:
      listen:
        to:
          all:
            - with: { type: com.example.a }
            - with: { type: 'com\\.example\\.b.*' }
        read: envelope
  - many:
      listen:
        to:
          any: []
          until: '( . | length ) >= 2'
      foreach:
        item: e
        output:
          as: '.n'
  - done:
      set:
        first: ${ $context.never }
");
    let setup = Setup::new();
    let engine = Arc::new(setup.engine(Fake::new(|_, _| json_response(200, json!({})))));
    let parsed = dsl::parse(&source, &dsl::Options::default())
        .workflow
        .unwrap();
    let id = engine
        .create(&source, &parsed, Some("l1".into()), json!({}))
        .await
        .unwrap();
    // Delivered before anything listens: still waiting in the inbox.
    engine
        .deliver(
            "l1",
            json!({"type": "com.example.ready", "data": {"ok": false}}),
        )
        .await
        .unwrap();
    engine
        .deliver(
            "l1",
            json!({"type": "com.example.ready", "data": {"ok": true}}),
        )
        .await
        .unwrap();
    let run = engine.run(&id, json!({}), CancellationToken::new());
    tokio::pin!(run);
    // Delivered while `both` listens, then while `many` does; each listener sees its
    // events at its next poll.
    let poll = setup.until_settled(&mut run).await;
    engine
        .deliver(
            "l1",
            json!({"type": "com.example.bravo", "id": "b1", "data": 2}),
        )
        .await
        .unwrap();
    engine
        .deliver(
            "l1",
            json!({"type": "com.example.a", "id": "a1", "data": 1}),
        )
        .await
        .unwrap();
    setup.clock.set(poll);
    let poll = setup.until_settled(&mut run).await;
    for n in [10, 20, 30] {
        engine
            .deliver("l1", json!({"type": "com.example.tick", "data": {"n": n}}))
            .await
            .unwrap();
    }
    setup.clock.set(poll);
    let outcome = setup.drive(run).await.unwrap();
    assert_eq!(completed(outcome), json!({"first": null}));
    let journal = engine.store().journal("l1").await.unwrap();
    let output_of = |key: &str| match journal
        .steps
        .iter()
        .find(|s| s.key == key)
        .map(|s| &s.state)
    {
        Some(store::StepState::Completed { output, .. }) => output.clone(),
        other => panic!("{key}: {other:?}"),
    };
    // `one` skipped the event whose data did not match.
    assert_eq!(output_of("/do/0/first"), json!([{"ok": true}]));
    let both = output_of("/do/1/both");
    assert_eq!(both.as_array().unwrap().len(), 2);
    assert_eq!(both[0]["id"], "b1", "envelopes, in consumption order");
    // The unmatched `ok: false` event and the ticks went to `any`, which stopped at two.
    assert_eq!(output_of("/do/2/many"), json!([null, 10]));
    // An unknown execution and a malformed event are refused.
    assert!(engine.deliver("nope", json!({"type": "x"})).await.is_err());
    assert!(engine.deliver("l1", json!({"data": 1})).await.is_err());
}

#[tokio::test]
async fn oauth2_client_credentials_fetch_a_token_once_and_use_it() {
    let source = "document: {dsl: '1.0.3', namespace: test, name: flow, version: '1.0.0'}
use:
  authentications:
    api:
      oauth2:
        authority: https://auth.test/realm
        grant: client_credentials
        client:
          id: skein
          secret: s3cret
        scopes: [ read, write ]
do:
  - one:
      call: http
      with:
        method: get
        endpoint: { uri: 'https://api.test/one', authentication: { use: api } }
  - two:
      call: http
      with:
        method: get
        endpoint: { uri: 'https://api.test/two', authentication: { use: api } }
";
    let setup = Setup::new();
    let fake = Fake::new(|req, _| {
        if req.url.as_str() == "https://auth.test/realm/oauth2/token" {
            json_response(
                200,
                json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}),
            )
        } else {
            json_response(200, json!(req.url.as_str()))
        }
    });
    let engine = setup.engine(fake.clone());
    completed(
        setup
            .run_with(&engine, source, json!({}), json!({}))
            .await
            .1,
    );
    let requests = fake.requests();
    let urls: Vec<&str> = requests.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://auth.test/realm/oauth2/token",
            "https://api.test/one",
            "https://api.test/two"
        ],
        "one token, reused"
    );
    let form = String::from_utf8(requests[0].body.clone().unwrap()).unwrap();
    assert_eq!(
        form,
        "grant_type=client_credentials&scope=read+write&client_id=skein&client_secret=s3cret"
    );
    for r in &requests[1..] {
        assert!(
            r.headers
                .contains(&("authorization".to_string(), "Bearer tok-1".to_string())),
            "{:?}",
            r.headers
        );
    }

    let refusing = Fake::new(|req, _| {
        if req.url.as_str().ends_with("/oauth2/token") {
            json_response(400, json!({"error": "invalid_client"}))
        } else {
            json_response(200, json!(1))
        }
    });
    let refusing_setup = Setup::new();
    let engine = refusing_setup.engine(refusing);
    let p = faulted(
        setup
            .run_with(&engine, source, json!({}), json!({}))
            .await
            .1,
    );
    assert_eq!(
        (p.type_.as_str(), p.status, p.instance.as_deref()),
        (expr::types::AUTHENTICATION, 401, Some("/do/0/one"))
    );
}

#[tokio::test]
async fn oauth2_settings_can_come_from_a_secret_taken_literally() {
    let source = "document: {dsl: '1.0.3', namespace: test, name: flow, version: '1.0.0'}
use:
  secrets: [ creds ]
  authentications:
    api:
      oauth2:
        use: creds
do:
  - one:
      call: http
      with:
        method: get
        endpoint: { uri: 'https://api.test/one', authentication: { use: api } }
";
    let fake = Fake::new(|req, _| {
        if req.url.as_str() == "https://auth.test/realm/oauth2/token" {
            json_response(200, json!({"access_token": "tok-s", "expires_in": 60}))
        } else {
            json_response(200, json!(1))
        }
    });
    let setup = Setup::new();
    let engine = setup.engine(fake.clone());
    // A secret's values are data: `${ 1 }` is not evaluated.
    let creds = json!({
        "authority": "https://auth.test/realm",
        "grant": "client_credentials",
        "client": {"id": "skein", "secret": "${ 1 }", "authentication": "client_secret_basic"},
        "scopes": ["read"],
    });
    completed(
        setup
            .run_with(&engine, source, json!({}), json!({"creds": creds}))
            .await
            .1,
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let header = |r: &HttpRequest, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("skein:${ 1 }");
    assert_eq!(
        header(&requests[0], "authorization"),
        Some(format!("Basic {basic}"))
    );
    assert_eq!(
        String::from_utf8(requests[0].body.clone().unwrap()).unwrap(),
        "grant_type=client_credentials&scope=read"
    );
    assert_eq!(
        header(&requests[1], "authorization").as_deref(),
        Some("Bearer tok-s")
    );

    // A secret without an authority is refused before anything is sent, naming the task.
    let setup = Setup::new();
    let quiet = Fake::new(|_, _| json_response(200, json!(1)));
    let engine = setup.engine(quiet.clone());
    let p = faulted(
        setup
            .run_with(
                &engine,
                source,
                json!({}),
                json!({"creds": {"grant": "client_credentials"}}),
            )
            .await
            .1,
    );
    assert_eq!(
        (p.status, p.title.as_deref(), p.instance.as_deref()),
        (403, Some("Incomplete secret"), Some("/do/0/one"))
    );
    assert!(p.detail.unwrap().contains("`authority`"));
    assert!(quiet.requests().is_empty());
}

#[tokio::test]
async fn run_workflow_runs_a_cataloged_child_execution() {
    let child = "document: {dsl: '1.0.3', namespace: lib, name: double, version: '1.0.0'}
do:
  - twice:
      set: '${ { doubled: (.n * 2) } }'
";
    let parent = doc("  - sub:
      run:
        workflow:
          namespace: lib
          name: double
          version: '1.0.0'
          input:
            n: ${ .value }
");
    let setup = Setup::new();
    let engine = setup.engine(
        Fake::new(|_, _| json_response(200, json!({}))).with_workflow("lib/double/1.0.0", child),
    );
    let (id, outcome) = setup
        .run_with(&engine, &parent, json!({"value": 21}), json!({}))
        .await;
    assert_eq!(completed(outcome), json!({"doubled": 42}));
    // The child is an execution of its own, with its own journal, named after its parent's step.
    let child = engine
        .store()
        .execution(&format!("{id}/do/0/sub"))
        .await
        .unwrap()
        .expect("a child execution");
    assert_eq!(
        (child.name.as_str(), child.status),
        ("double", store::Status::Completed)
    );
    assert_eq!(child.input, json!({"n": 21}));
}

#[tokio::test]
async fn a_child_that_already_ended_keeps_its_outcome() {
    let child = "document: {dsl: '1.0.3', namespace: lib, name: double, version: '1.0.0'}
do:
  - twice:
      set: '${ { doubled: (.n * 2) } }'
";
    let parent = doc("  - sub:
      run:
        workflow: { namespace: lib, name: double, version: '1.0.0', input: { n: 21 } }
");
    let setup = Setup::new();
    let engine = setup.engine(
        Fake::new(|_, _| json_response(200, json!({}))).with_workflow("lib/double/1.0.0", child),
    );
    // As if the parent stopped after its child ended but before its own task was recorded.
    let child_workflow = dsl::parse(child, &dsl::Options::default())
        .workflow
        .unwrap();
    let child_id = engine
        .create(
            child,
            &child_workflow,
            Some("p1/do/0/sub".into()),
            json!({"n": 5}),
        )
        .await
        .unwrap();
    engine
        .run(&child_id, json!({}), CancellationToken::new())
        .await
        .unwrap();
    let parent_workflow = dsl::parse(&parent, &dsl::Options::default())
        .workflow
        .unwrap();
    engine
        .create(&parent, &parent_workflow, Some("p1".into()), json!({}))
        .await
        .unwrap();
    let outcome = engine
        .run("p1", json!({}), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        completed(outcome),
        json!({"doubled": 10}),
        "the child's own outcome"
    );
    let ends = event_types(&engine, &child_id)
        .await
        .into_iter()
        .filter(|t| t == "io.serverlessworkflow.workflow.completed.v1")
        .count();
    assert_eq!(ends, 1, "the child's end is recorded once");
}

#[tokio::test]
async fn a_child_that_started_resumes_from_its_stored_definition() {
    let stored = "document: {dsl: '1.0.3', namespace: lib, name: pick, version: '1.0.0'}
do:
  - which:
      set: { definition: stored }
";
    let changed = stored.replace("definition: stored", "definition: changed");
    let parent = doc("  - sub:
      run:
        workflow: { namespace: lib, name: pick, version: '1.0.0' }
");
    let setup = Setup::new();
    let engine = setup.engine(
        Fake::new(|_, _| json_response(200, json!({}))).with_workflow("lib/pick/1.0.0", &changed),
    );
    // As if the parent stopped after creating its child, and the catalog changed since.
    let child_workflow = dsl::parse(stored, &dsl::Options::default())
        .workflow
        .unwrap();
    engine
        .create(
            stored,
            &child_workflow,
            Some("p2/do/0/sub".into()),
            json!({}),
        )
        .await
        .unwrap();
    let parent_workflow = dsl::parse(&parent, &dsl::Options::default())
        .workflow
        .unwrap();
    engine
        .create(&parent, &parent_workflow, Some("p2".into()), json!({}))
        .await
        .unwrap();
    let outcome = engine
        .run("p2", json!({}), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(completed(outcome), json!({"definition": "stored"}));
}

#[tokio::test]
async fn a_subflow_not_awaited_starts_and_the_parent_moves_on() {
    let child = "document: {dsl: '1.0.3', namespace: lib, name: slow, version: '1.0.0'}
do:
  - nap: { wait: { milliseconds: 200 } }
  - done: { set: { finished: true } }
";
    let parent = doc("  - start:
      run:
        workflow: { namespace: lib, name: slow, version: '1.0.0' }
        await: false
  - next:
      set: '${ . + { parentDone: true } }'
");
    let setup = Setup::new();
    let engine = setup.engine(
        Fake::new(|_, _| json_response(200, json!({}))).with_workflow("lib/slow/1.0.0", child),
    );
    let (id, outcome) = setup
        .run_with(&engine, &parent, json!({"n": 1}), json!({}))
        .await;
    assert_eq!(completed(outcome), json!({"n": 1, "parentDone": true}));
    assert_eq!(
        setup.clock.now_ms(),
        trace::START,
        "the parent did not wait for the child"
    );
    let child_id = format!("{id}/do/0/start");
    let child_ended = setup.recorder.wait_for(&child_id, |e| {
        e.type_ == Lifecycle::WorkflowCompleted.as_str()
    });
    setup.drive(child_ended).await;
    // Recorded as it was queued: durable once a later batch is.
    let later = engine.store().commit(store::Batch::default());
    engine.store().durable(later).await.unwrap();
    let child = engine.store().execution(&child_id).await.unwrap().unwrap();
    assert_eq!(
        (child.status, child.output),
        (store::Status::Completed, Some(json!({"finished": true})))
    );
    assert_eq!(setup.clock.now_ms(), trace::START + 200);
}
