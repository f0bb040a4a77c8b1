//! Data-driven engine tests on a manual clock: a workflow and a script of what its
//! calls return go in; the calls made, the events recorded, the journal and the outcome
//! come out as one text, compared with an `expect!` snapshot (`UPDATE_EXPECT=1`
//! rewrites them). Time moves only when the run waits for it: the harness jumps to the
//! next deadline once the run has settled (no store call in flight, its writes durable,
//! and nothing new recorded across a settle round), so an hour of backoff or a day of
//! `wait` costs microseconds, and every time in the trace is exact.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use engine::{
    Clock, Effects, Engine, Frontend, HttpError, HttpRequest, HttpResponse, ManualClock, Observer,
    Outcome, ProcessOutput, ProcessSpec, Seeded,
};
use expect_test::Expect;
use serde_json::{Value, json};
use store::sqlite::SqliteStore;
use store::{Durability, Store};
use tokio_util::sync::CancellationToken;

use crate::watched::Watched;

/// 2026-01-01T00:00:00Z, where every run on the manual clock starts.
pub(crate) const START: i64 = 1_767_225_600_000;

/// What one call gets, in the order calls are made.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// A response with this status and JSON body.
    Json(u16, Value),
    /// This reply, after this many milliseconds of the manual clock.
    Late(i64, Box<Reply>),
    /// No connection: the server refused it.
    Refused,
}

/// Replies by request, for calls whose order the script cannot know.
type Responder = dyn Fn(&HttpRequest) -> Reply + Send + Sync;

/// The script's effects: calls answered in order, each noted with the time it was made.
struct Scripted {
    clock: Arc<ManualClock>,
    replies: Mutex<std::collections::VecDeque<Reply>>,
    /// Answers every call when set, instead of `replies`.
    respond: Option<Box<Responder>>,
    calls: Mutex<Vec<String>>,
    /// Workflow texts by name, for `run.workflow`.
    catalog: Vec<(String, String)>,
}

#[async_trait]
impl Effects for Scripted {
    async fn load_workflow(
        &self,
        _namespace: &str,
        name: &str,
        _version: &str,
    ) -> std::io::Result<Option<String>> {
        Ok(self
            .catalog
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, text)| text.clone()))
    }

    async fn http(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let key = request
            .headers
            .iter()
            .find(|(k, _)| k == "idempotency-key")
            .map_or("", |(_, v)| v.as_str());
        let mut reply = match &self.respond {
            Some(respond) => Some(respond(&request)),
            None => self.replies.lock().unwrap().pop_front(),
        };
        self.calls.lock().unwrap().push(format!(
            "{} {} {} [{key}] -> {}",
            offset(self.clock.now_ms()),
            request.method,
            request.url,
            answer(reply.as_ref())
        ));
        if let Some(Reply::Late(ms, late)) = reply {
            // Asleep on the clock, the call lets time move.
            self.clock.sleep_until(self.clock.now_ms() + ms).await;
            reply = Some(*late);
        }
        match reply {
            Some(Reply::Json(status, body)) => Ok(HttpResponse {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: serde_json::to_vec(&body).unwrap(),
            }),
            Some(Reply::Refused) => Err(HttpError::Connect("connection refused".into())),
            Some(Reply::Late(..)) => unreachable!("taken apart above"),
            None => panic!("a call the script does not answer: {}", request.url),
        }
    }

    async fn process(
        &self,
        spec: ProcessSpec,
        _control: engine::ProcessControl,
    ) -> std::io::Result<ProcessOutput> {
        panic!("a process the script does not answer: {}", spec.program)
    }
}

fn answer(reply: Option<&Reply>) -> String {
    match reply {
        Some(Reply::Json(status, _)) => status.to_string(),
        Some(Reply::Late(ms, reply)) => format!("{} after {ms}ms", answer(Some(reply))),
        Some(Reply::Refused) => "refused".into(),
        None => "not in the script".into(),
    }
}

/// Every event as it is recorded, in order, of every execution the engine runs.
#[derive(Default)]
pub(crate) struct Recorder {
    /// Each with the execution it belongs to.
    events: Mutex<Vec<(String, store::Event)>>,
    /// Woken on each event, for tests that wait for one.
    recorded: tokio::sync::Notify,
}

impl Recorder {
    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Waits until an event satisfies `until`, however long that takes on the clock.
    pub(crate) async fn wait_for(&self, execution: &str, until: impl Fn(&store::Event) -> bool) {
        loop {
            let recorded = self.recorded.notified();
            let seen =
                (self.events.lock().unwrap().iter()).any(|(id, e)| id == execution && until(e));
            if seen {
                return;
            }
            recorded.await;
        }
    }
}

impl Observer for Recorder {
    fn event(&self, execution: &str, event: &store::Event) {
        let recorded = (execution.to_string(), event.clone());
        self.events.lock().unwrap().push(recorded);
        self.recorded.notify_waiters();
    }
}

/// Polls `work` to its end, moving the manual clock to the next deadline each time
/// everything has settled with someone asleep on it.
pub(crate) async fn drive<T>(
    work: impl Future<Output = T>,
    clock: &ManualClock,
    store: &Watched,
    recorder: &Recorder,
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            done = &mut work => return done,
            deadline = settled(clock, store, recorder) => clock.set(deadline),
        }
    }
}

/// Polls `work` until everything has settled with someone asleep on the clock, and
/// says when the next sleeper wakes; the clock does not move. Panics if `work` ends
/// first: the caller expected it to wait.
pub(crate) async fn until_settled<T: std::fmt::Debug>(
    work: &mut std::pin::Pin<&mut impl Future<Output = T>>,
    clock: &ManualClock,
    store: &Watched,
    recorder: &Recorder,
) -> i64 {
    tokio::select! {
        biased;
        done = work => panic!("expected a wait, but the run ended: {done:?}"),
        deadline = settled(clock, store, recorder) => deadline,
    }
}

/// The units of times in a trace, largest first.
const UNITS: [(i64, &str); 4] = [
    (86_400_000, "d"),
    (3_600_000, "h"),
    (60_000, "m"),
    (1000, "s"),
];

/// Milliseconds since [`START`] of an instant as [`offset`] writes it.
fn instant_ms(offset: &str) -> i64 {
    let digits = offset.trim_start_matches('+');
    let end = (digits.find(|c: char| !c.is_ascii_digit())).unwrap_or(digits.len());
    let (number, unit) = digits.split_at(end);
    let n: i64 = number.parse().unwrap_or(0);
    n * UNITS
        .iter()
        .find(|(_, u)| *u == unit)
        .map_or(1, |(ms, _)| *ms)
}

/// Time since [`START`], in the largest unit that divides it.
fn offset(ms: i64) -> String {
    let d = ms - START;
    let unit = UNITS.into_iter().find(|(n, _)| d != 0 && d % n == 0);
    match unit {
        Some((n, u)) => format!("+{}{u}", d / n),
        None => format!("+{d}ms"),
    }
}

/// A traced run: the workflow (a task list under `do:`, or a whole document, read by
/// the DSL front-end unless told otherwise), its input (`{}` unless told otherwise) and
/// the replies its calls get.
pub(crate) struct Case<'a> {
    workflow: &'a str,
    input: Value,
    replies: Vec<Reply>,
    respond: Option<Box<Responder>>,
    frontend: Option<Arc<dyn Frontend>>,
    unordered: bool,
    /// Events in the execution's inbox before it runs.
    delivered: Vec<Value>,
    limits: Option<engine::Limits>,
    catalog: Vec<(String, String)>,
}

impl<'a> Case<'a> {
    pub(crate) fn new(workflow: &'a str) -> Case<'a> {
        Case {
            workflow,
            input: json!({}),
            replies: Vec::new(),
            respond: None,
            frontend: None,
            unordered: false,
            delivered: Vec::new(),
            limits: None,
            catalog: Vec::new(),
        }
    }

    /// Runs under `limits` instead of the defaults.
    pub(crate) fn limits(mut self, limits: engine::Limits) -> Case<'a> {
        self.limits = Some(limits);
        self
    }

    /// Puts `text` in the catalog as the workflow `name`, for `run.workflow`.
    pub(crate) fn catalog(mut self, name: &str, text: &str) -> Case<'a> {
        self.catalog.push((name.to_string(), text.to_string()));
        self
    }

    /// Delivers `events` (CloudEvents) to the execution before it runs, for `listen`.
    pub(crate) fn deliver(mut self, events: impl IntoIterator<Item = Value>) -> Case<'a> {
        self.delivered = events.into_iter().collect();
        self
    }

    /// Lists the calls and events of one instant in sorted order rather than as they
    /// came: for concurrent work, whose order within an instant is not defined.
    pub(crate) fn unordered(mut self) -> Case<'a> {
        self.unordered = true;
        self
    }

    /// Answers each call with `respond(request)`, whatever the order of the calls.
    pub(crate) fn respond(
        mut self,
        respond: impl Fn(&HttpRequest) -> Reply + Send + Sync + 'static,
    ) -> Case<'a> {
        self.respond = Some(Box::new(respond));
        self
    }

    pub(crate) fn input(mut self, input: Value) -> Case<'a> {
        self.input = input;
        self
    }

    /// Reads the workflow, as it is, with `frontend`.
    pub(crate) fn frontend(mut self, frontend: Arc<dyn Frontend>) -> Case<'a> {
        self.frontend = Some(frontend);
        self
    }

    pub(crate) fn replies(mut self, replies: impl IntoIterator<Item = Reply>) -> Case<'a> {
        self.replies = replies.into_iter().collect();
        self
    }

    /// Runs the case and compares its trace with `expect`.
    pub(crate) async fn check(self, expect: Expect) {
        expect.assert_eq(&self.trace().await);
    }

    async fn trace(self) -> String {
        let is_dsl = self.frontend.is_none();
        let frontend = self
            .frontend
            .unwrap_or_else(|| Arc::new(engine::Dsl::default()));
        let source = if !is_dsl || self.workflow.trim_start().starts_with("document:") {
            self.workflow.to_string()
        } else {
            format!(
                "document: {{dsl: '1.0.3', namespace: test, name: traced, version: '1.0.0'}}\n{}",
                self.workflow
            )
        };
        let workflow =
            (frontend.lower(&source)).unwrap_or_else(|e| panic!("invalid test workflow: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("skein.db"), Durability::Full).unwrap();
        let store = Arc::new(Watched::new(Arc::new(sqlite)));
        let clock = Arc::new(ManualClock::new(START));
        let effects = Arc::new(Scripted {
            clock: clock.clone(),
            replies: Mutex::new(self.replies.into()),
            respond: self.respond,
            calls: Mutex::default(),
            catalog: self.catalog,
        });
        let recorder = Arc::new(Recorder::default());
        let engine = Engine::new(store.clone(), effects.clone(), clock.clone())
            .with_frontend(frontend)
            .with_entropy(Arc::new(Seeded::new(7)))
            .with_observer(recorder.clone())
            .with_limits(self.limits.unwrap_or_default());
        let id = engine
            .create(&source, &workflow, None, self.input)
            .await
            .unwrap();
        for event in self.delivered {
            engine.deliver(&id, event).await.unwrap();
        }
        let run = engine.run(&id, json!({}), CancellationToken::new());
        let outcome = drive(run, &clock, &store, &recorder).await.unwrap();

        let mut calls = effects.calls.lock().unwrap().clone();
        let mut events: Vec<String> = (recorder.events.lock().unwrap().iter())
            .map(|(_, e)| event_line(e))
            .collect();
        if self.unordered {
            // Each line starts with its instant; a stable sort by instant, then text.
            let instant = |line: &String| line.split(' ').next().unwrap_or_default().to_string();
            for lines in [&mut calls, &mut events] {
                lines.sort_by_cached_key(|line| (instant_ms(&instant(line)), line.clone()));
            }
        }
        let mut out = String::new();
        out += "calls:\n";
        for call in calls {
            out += &format!("  {call}\n");
        }
        out += "events:\n";
        for event in events {
            out += &format!("  {event}\n");
        }
        out += "journal:\n";
        let mut steps = store.journal(&id).await.unwrap().steps;
        steps.sort_by(|a, b| a.key.cmp(&b.key));
        for step in steps {
            out += &format!("  {} {}\n", step.key, step_line(&step.state));
        }
        out += &format!("outcome: {}\n", outcome_line(&outcome));
        out
    }
}

/// The next deadline, once the run has settled with someone asleep: no store call is in
/// flight (a run that waits for a read or a commit is busy, not asleep), and a further
/// round of yields, which lets every spawned task run, recorded nothing and woke
/// nobody. (The script's calls answer at once, or sleep on the clock.)
async fn settled(clock: &ManualClock, store: &Watched, recorder: &Recorder) -> i64 {
    loop {
        let deadline = clock.next_deadline().await;
        store.idle().await;
        let before = recorder.len();
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        let quiet = recorder.len() == before && store.is_idle();
        if quiet && clock.next_deadline().await == deadline {
            return deadline;
        }
    }
}

/// `+1h task.retried /do/0/flaky attempt=2`: when, what, where, and what it says.
fn event_line(e: &store::Event) -> String {
    let data = e.data.value();
    let short = engine::events::Lifecycle::parse(&e.type_).map_or(e.type_.as_str(), |l| l.short());
    let mut line = format!("{} {short}", offset(e.time));
    if let Some(task) = data["task"].as_str() {
        line += &format!(" {task}");
    }
    for field in ["attempt", "output", "error"] {
        if let Some(v) = data.get(field) {
            let v = match field {
                "error" => json!(v["type"].as_str().unwrap_or_default().rsplit('/').next()),
                _ => v.clone(),
            };
            line += &format!(" {field}={v}");
        }
    }
    line
}

fn step_line(state: &store::StepState) -> String {
    match state {
        store::StepState::Completed { output, context } => match context {
            Some(c) => format!("completed {output} context={c}"),
            None => format!("completed {output}"),
        },
        store::StepState::Faulted { error, .. } => {
            format!(
                "faulted {}",
                error["type"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
            )
        }
        store::StepState::Timer { deadline } => format!("timer {}", offset(*deadline)),
        other => format!("{other:?}"),
    }
}

fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Completed(v) => format!("completed {v}"),
        Outcome::Faulted(p) => format!(
            "faulted {} {} at {} ({})",
            p.type_.rsplit('/').next().unwrap_or_default(),
            p.status,
            p.instance.as_deref().unwrap_or("?"),
            p.detail.as_deref().unwrap_or_default()
        ),
        Outcome::Cancelled => "cancelled".into(),
    }
}
