//! Data-driven engine tests on a manual clock: a workflow and a script of what its
//! calls return go in; the calls made, the events recorded, the journal and the outcome
//! come out as one text, compared with an `expect!` snapshot (`UPDATE_EXPECT=1`
//! rewrites them). Time moves only when the run waits for it: the harness jumps to the
//! next deadline once the run has settled (its writes durable and nothing new recorded
//! across a settle round), so an hour of backoff or a day of
//! `wait` costs microseconds, and every time in the trace is exact.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use engine::{
    Clock, Effects, Engine, HttpError, HttpRequest, HttpResponse, ManualClock, Observer, Outcome,
    ProcessOutput, ProcessSpec, Seeded,
};
use expect_test::Expect;
use serde_json::{Value, json};
use store::Durability;
use store::sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

/// 2026-01-01T00:00:00Z, where every traced run starts.
const START: i64 = 1_767_225_600_000;

/// What one call gets, in the order calls are made.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// A response with this status and JSON body.
    Json(u16, Value),
    /// This reply, after this many milliseconds of the manual clock.
    Late(i64, Box<Reply>),
}

/// The script's effects: calls answered in order, each noted with the time it was made.
struct Scripted {
    clock: Arc<ManualClock>,
    replies: Mutex<std::collections::VecDeque<Reply>>,
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl Effects for Scripted {
    async fn http(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let key = request
            .headers
            .iter()
            .find(|(k, _)| k == "idempotency-key")
            .map_or("", |(_, v)| v.as_str());
        let mut reply = self.replies.lock().unwrap().pop_front();
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
        None => "not in the script".into(),
    }
}

/// Every event as it is recorded, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<store::Event>>);

impl Observer for Recorder {
    fn event(&self, _execution: &str, event: &store::Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// Time since [`START`], in the largest unit that divides it.
fn offset(ms: i64) -> String {
    let d = ms - START;
    let unit = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ]
    .into_iter()
    .find(|(n, _)| d != 0 && d % n == 0);
    match unit {
        Some((n, u)) => format!("+{}{u}", d / n),
        None => format!("+{d}ms"),
    }
}

/// A traced run: the workflow (a task list under `do:`, or a whole document; its input
/// is `{}`) and the replies its calls get.
pub(crate) struct Case<'a> {
    workflow: &'a str,
    replies: Vec<Reply>,
}

impl<'a> Case<'a> {
    pub(crate) fn new(workflow: &'a str) -> Case<'a> {
        Case {
            workflow,
            replies: Vec::new(),
        }
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
        let source = if self.workflow.trim_start().starts_with("document:") {
            self.workflow.to_string()
        } else {
            format!(
                "document: {{dsl: '1.0.3', namespace: test, name: traced, version: '1.0.0'}}\n{}",
                self.workflow
            )
        };
        let parsed = dsl::parse(&source, &dsl::Options::default());
        let workflow = parsed
            .workflow
            .unwrap_or_else(|| panic!("invalid test workflow: {:#?}", parsed.diagnostics));
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn store::Store> =
            Arc::new(SqliteStore::open(&dir.path().join("skein.db"), Durability::Full).unwrap());
        let clock = Arc::new(ManualClock::new(START));
        let effects = Arc::new(Scripted {
            clock: clock.clone(),
            replies: Mutex::new(self.replies.into()),
            calls: Mutex::default(),
        });
        let recorder = Arc::new(Recorder::default());
        let engine = Engine::new(store.clone(), effects.clone(), clock.clone())
            .with_entropy(Arc::new(Seeded::new(7)))
            .with_observer(recorder.clone());
        let id = engine
            .create(&source, &workflow, None, json!({}))
            .await
            .unwrap();
        let run = engine.run(&id, json!({}), CancellationToken::new());
        tokio::pin!(run);
        let outcome = loop {
            tokio::select! {
                biased;
                outcome = &mut run => break outcome.unwrap(),
                deadline = settled(&clock, &*store, &id, &recorder) => clock.set(deadline),
            }
        };

        let mut out = String::new();
        out += "calls:\n";
        for call in effects.calls.lock().unwrap().iter() {
            out += &format!("  {call}\n");
        }
        out += "events:\n";
        for e in recorder.0.lock().unwrap().iter() {
            out += &format!("  {}\n", event_line(e));
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

/// The next deadline, once the run has settled with someone asleep: everything it
/// recorded is durable, and a further round recorded nothing and woke nobody. (The
/// script's calls answer at once, or sleep on the clock, so none is left in flight.)
async fn settled(
    clock: &ManualClock,
    store: &dyn store::Store,
    id: &str,
    recorder: &Recorder,
) -> i64 {
    loop {
        let deadline = clock.next_deadline().await;
        let before = recorder.0.lock().unwrap().len();
        // An empty batch is committed after everything queued before it.
        let ticket = store.commit(store::Batch {
            execution: id.to_string(),
            steps: vec![],
            events: vec![],
            status: None,
        });
        store.durable(ticket).await.unwrap();
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
        let quiet = recorder.0.lock().unwrap().len() == before;
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
