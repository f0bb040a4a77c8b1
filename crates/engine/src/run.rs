//! The state of one running execution: its journal for replay, the writes it
//! queues, its event sequence, and the descriptors expressions read.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use expr::{Problem, Vars};
use program::Program;
use serde_json::{Value, json};
use store::{Batch, Event, Json, StatusChange, Step, StepState, Store, Ticket};
use tokio_util::sync::CancellationToken;

use crate::effects::{Clock, Effects, Entropy};
use crate::events::Lifecycle;
use crate::{Interrupt, Observer};

pub(crate) struct Run {
    /// Schemas of external resources, compiled once per run: by URL.
    pub(crate) schemas: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    pub(crate) id: String,
    pub(crate) wf: Arc<Program>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) effects: Arc<dyn Effects>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) entropy: Arc<dyn Entropy>,
    pub(crate) frontend: Arc<dyn crate::Frontend>,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    pub(crate) cancel: CancellationToken,
    /// True while the run is paused.
    pub(crate) paused: tokio::sync::watch::Receiver<bool>,
    /// Whether the execution was stored as suspended when this run started.
    pub(crate) started_suspended: bool,
    /// The execution's project, which its children share.
    pub(crate) project: String,
    /// What the journal held when this run started: replayed, never run again.
    replay: HashMap<String, StepState>,
    /// The last event sequence number used; locked while a batch is queued, so that
    /// batches are queued (and committed) in sequence order.
    seq: Mutex<u64>,
    /// How far the run's records may run ahead of the journal's writer.
    pace: Mutex<Pace>,
    /// `$workflow`, `$runtime` and `$secrets`.
    pub(crate) workflow_var: Value,
    pub(crate) runtime_var: Value,
    /// The secrets this workflow declares in `use.secrets`, out of those given to it.
    pub(crate) secrets: Value,
    /// Every secret given to the execution, declared or not: what sub-workflows choose
    /// from.
    pub(crate) given_secrets: Value,
    /// What this execution may use, and the permits it shares with its children.
    pub(crate) limits: Shared,
    used: Used,
    /// The text of every secret string, longest first: what [`Run::record`] masks.
    masks: Vec<String>,
    /// The same texts as they appear inside JSON text, to find them there cheaply.
    probes: Vec<String>,
    /// `{name}-{id}.{namespace}`, as lifecycle events name the workflow.
    pub(crate) qualified_name: String,
    /// `{"workflow":"{qualified_name}","task":`, how every task event begins.
    event_head: String,
    /// Rung when an event is delivered to this execution in this process.
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Inbox positions already consumed by a listener.
    consumed: Mutex<HashSet<u64>>,
    /// The ids of the updates already handled: a repeated delivery is not handled again.
    handled_updates: Mutex<HashSet<String>>,
    /// Zigflow's query handlers registered so far, by name.
    queries: Mutex<HashMap<String, QueryHandler>>,
    /// Zigflow's `$data` as the tasks so far left it: what queries read.
    data: Mutex<Value>,
    /// Steps in the journal (replayed, then recorded): what continue-as-new bounds.
    steps: std::sync::atomic::AtomicU64,
    /// The key of the task list whose boundaries may checkpoint (continue-as-new): the
    /// workflow's own list, or for a document of several workflows, its entry's.
    pub(crate) boundary: Option<String>,
    /// OAuth2 access tokens by token endpoint, client and scopes, with their expiry (ms).
    tokens: Mutex<HashMap<String, (String, i64)>>,
    /// Set when the future driving this run's tree is dropped from outside (a process
    /// shutting down): work dropped after that was abandoned, to resume from the
    /// journal, not cancelled. Shared with the children it awaits.
    pub(crate) detached: Arc<AtomicBool>,
}

/// A query handler as its `listen` task registered it: the reply and what its
/// expressions see besides the live `$data`.
#[derive(Clone)]
pub(crate) struct QueryHandler {
    pub(crate) reply: Option<expr::Template>,
    pub(crate) scope: Scope,
    pub(crate) context: Value,
    pub(crate) input: Value,
    pub(crate) task_var: Value,
    /// The registering task's reference, where a failing reply is reported.
    pub(crate) at: String,
}

/// Loop and catch variables in scope at a position, innermost last.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scope {
    pub(crate) locals: Vec<(Arc<str>, Value)>,
}

impl Scope {
    pub(crate) fn with(&self, bindings: impl IntoIterator<Item = (Arc<str>, Value)>) -> Scope {
        let mut locals = self.locals.clone();
        locals.extend(bindings);
        Scope { locals }
    }
}

pub(crate) struct RunParts {
    pub(crate) id: String,
    pub(crate) wf: Arc<Program>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) effects: Arc<dyn Effects>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) entropy: Arc<dyn Entropy>,
    pub(crate) frontend: Arc<dyn crate::Frontend>,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    pub(crate) cancel: CancellationToken,
    pub(crate) paused: tokio::sync::watch::Receiver<bool>,
    pub(crate) suspended: bool,
    pub(crate) project: String,
    pub(crate) journal: store::Journal,
    pub(crate) raw_input: Value,
    pub(crate) started_at: i64,
    pub(crate) secrets: Value,
    pub(crate) limits: Shared,
    pub(crate) wake: Arc<tokio::sync::Notify>,
    pub(crate) detached: Arc<AtomicBool>,
    /// `$runtime.metadata`: see [`metadata`].
    pub(crate) metadata: Value,
}

/// What `$runtime.metadata` holds for an execution: its project, its workflow's name
/// and its labels, beside what the engine gives every execution (`metadata`: `env`, the
/// variables of the server's configuration, which Cloud Workflows documents read with
/// `sys.get_env`; `server`, the URL the server's API is reached at, for callbacks).
pub(crate) fn metadata(
    project: &str,
    workflow: &str,
    labels: &store::Labels,
    mut metadata: serde_json::Map<String, Value>,
) -> Value {
    metadata.insert("project".into(), json!(project));
    metadata.insert("workflow".into(), json!(workflow));
    metadata.insert("labels".into(), json!(labels));
    Value::Object(metadata)
}

impl Run {
    pub(crate) fn new(parts: RunParts) -> Run {
        let doc = &parts.wf.document;
        let workflow_var = json!({
            "id": parts.id,
            "definition": parts.wf.definition,
            "input": parts.raw_input,
            "startedAt": date_time(parts.started_at),
        });
        let runtime_var = json!({
            "name": "skein",
            "version": env!("CARGO_PKG_VERSION"),
            "metadata": parts.metadata,
        });
        let qualified_name = format!("{}-{}.{}", doc.name, parts.id, doc.namespace);
        let consumed = Mutex::new(crate::interp::listen::consumed_in(&parts.journal.steps));
        let handled_updates = Mutex::new(crate::interp::messages::handled_updates(
            &parts.journal.steps,
        ));
        let secrets = declared(&parts.secrets, &parts.wf.use_.secrets);
        let mut masks = Vec::new();
        secret_texts(&secrets, &mut masks);
        masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
        masks.dedup();
        let probes = masks
            .iter()
            .map(|m| {
                let quoted = serde_json::to_string(m).expect("a string serializes");
                quoted[1..quoted.len() - 1].to_string()
            })
            .collect();
        Run {
            schemas: Mutex::default(),
            wake: parts.wake,
            detached: parts.detached,
            consumed,
            handled_updates,
            queries: Mutex::default(),
            data: Mutex::new(Value::Null),
            steps: std::sync::atomic::AtomicU64::new(parts.journal.steps.len() as u64),
            boundary: parts.wf.continue_after.map(|_| {
                let several = parts
                    .wf
                    .extensions
                    .iter()
                    .any(|e| e.name == "zigflow.workflows");
                match parts.wf.do_.tasks.first() {
                    Some(entry) if several => format!("/do/0/{}/do", entry.name),
                    _ => "/do".to_string(),
                }
            }),
            tokens: Mutex::default(),
            replay: parts
                .journal
                .steps
                .into_iter()
                .map(|s| (s.key, s.state))
                .collect(),
            seq: Mutex::new(parts.journal.last_seq),
            pace: Mutex::default(),
            id: parts.id,
            wf: parts.wf,
            store: parts.store,
            effects: parts.effects,
            clock: parts.clock,
            entropy: parts.entropy,
            frontend: parts.frontend,
            observer: parts.observer,
            cancel: parts.cancel,
            paused: parts.paused,
            started_suspended: parts.suspended,
            project: parts.project,
            workflow_var,
            runtime_var,
            secrets,
            given_secrets: parts.secrets,
            limits: parts.limits,
            used: Used::default(),
            masks,
            probes,
            event_head: {
                let mut head = b"{\"workflow\":".to_vec();
                json_string(&mut head, &qualified_name);
                head.extend_from_slice(b",\"task\":");
                String::from_utf8(head).expect("JSON text written from strings")
            },
            qualified_name,
        }
    }

    /// A cached OAuth2 token, if it has not expired.
    pub(crate) fn cached_token(&self, key: &str) -> Option<String> {
        let tokens = self.tokens.lock().expect("tokens lock");
        tokens
            .get(key)
            .filter(|(_, expires)| *expires > self.now())
            .map(|(t, _)| t.clone())
    }

    pub(crate) fn cache_token(&self, key: String, token: String, expires: i64) {
        self.tokens
            .lock()
            .expect("tokens lock")
            .insert(key, (token, expires));
    }

    pub(crate) fn is_consumed(&self, position: u64) -> bool {
        self.consumed
            .lock()
            .expect("consumed lock")
            .contains(&position)
    }

    /// Every inbox position consumed so far, in order: what a checkpoint keeps.
    pub(crate) fn consumed_positions(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self
            .consumed
            .lock()
            .expect("consumed lock")
            .iter()
            .copied()
            .collect();
        all.sort_unstable();
        all
    }

    /// The ids of the updates handled so far: what a checkpoint keeps.
    pub(crate) fn handled_update_ids(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .handled_updates
            .lock()
            .expect("updates lock")
            .iter()
            .cloned()
            .collect();
        all.sort_unstable();
        all
    }

    /// Whether the journal holds more steps than continue-as-new allows.
    pub(crate) fn journal_is_long(&self) -> bool {
        self.wf
            .continue_after
            .is_some_and(|n| self.steps.load(Ordering::Relaxed) > n)
    }

    /// After a checkpoint: the journal holds `n` steps.
    pub(crate) fn journal_shrunk_to(&self, n: u64) {
        self.steps.store(n, Ordering::Relaxed);
    }

    pub(crate) fn consume(&self, position: u64) {
        self.consumed
            .lock()
            .expect("consumed lock")
            .insert(position);
    }

    /// Marks update `id` as handled; false if it was already.
    pub(crate) fn handle_update(&self, id: &str) -> bool {
        self.handled_updates
            .lock()
            .expect("updates lock")
            .insert(id.to_string())
    }

    /// Registers (or replaces) a query handler.
    pub(crate) fn register_query(&self, name: &str, handler: QueryHandler) {
        self.queries
            .lock()
            .expect("queries lock")
            .insert(name.to_string(), handler);
    }

    /// Keeps `$data` as it stands, for queries: only once a query is registered, so
    /// that a run nobody can query copies nothing.
    pub(crate) fn set_data(&self, data: &Value) {
        if self.queries.lock().expect("queries lock").is_empty() {
            return;
        }
        data.clone_into(&mut self.data.lock().expect("data lock"));
    }

    /// Answers query `name` from the state the run holds now.
    pub(crate) fn query(&self, name: &str) -> Result<Value, crate::QueryError> {
        let handler = {
            let queries = self.queries.lock().expect("queries lock");
            match queries.get(name) {
                Some(h) => h.clone(),
                None => {
                    let mut known: Vec<String> = queries.keys().cloned().collect();
                    known.sort();
                    return Err(crate::QueryError::Unknown {
                        name: name.to_string(),
                        known,
                    });
                }
            }
        };
        let Some(reply) = &handler.reply else {
            return Ok(Value::Null);
        };
        let data = self.data.lock().expect("data lock").clone();
        let scope = handler.scope.with([(Arc::from("data"), data)]);
        let vars = self.vars(
            &scope,
            &handler.context,
            &handler.input,
            &handler.task_var,
            None,
        );
        reply
            .eval(&handler.input, &vars)
            .map_err(|e| crate::QueryError::Failed(Box::new(e.into_problem(&handler.at))))
    }

    /// The journal's record for `key`, if the step ran before this run started.
    pub(crate) fn replayed(&self, key: &str) -> Option<&StepState> {
        self.replay.get(key)
    }

    /// Queues steps, lifecycle events and perhaps a status change as one atomic batch.
    /// Secret text in the events and the status change is masked; the steps, which
    /// replay reads back, are stored as they are.
    pub(crate) fn record(
        &self,
        steps: Vec<Step>,
        mut events: Vec<(&str, Json)>,
        mut status: Option<StatusChange>,
    ) -> Ticket {
        if !self.masks.is_empty() {
            for (_, data) in &mut events {
                if self.probes.iter().any(|p| data.text().contains(p.as_str())) {
                    let mut value = data.value();
                    mask(&mut value, &self.masks);
                    *data = Json::of(&value);
                }
            }
            if let Some(change) = &mut status {
                for value in [&mut change.output, &mut change.error]
                    .into_iter()
                    .flatten()
                {
                    mask(value, &self.masks);
                }
            }
        }
        self.steps.fetch_add(steps.len() as u64, Ordering::Relaxed);
        let now = self.clock.now_ms();
        let mut seq = self.seq.lock().expect("seq lock");
        let events: Vec<Event> = events
            .into_iter()
            .map(|(type_, data)| {
                *seq += 1;
                Event {
                    seq: *seq,
                    time: now,
                    type_: type_.to_string(),
                    data,
                }
            })
            .collect();
        if let Some(observer) = &self.observer {
            for event in &events {
                observer.event(&self.id, event);
            }
        }
        let ticket = self.store.commit(Batch {
            execution: self.id.clone(),
            steps,
            events,
            status,
        });
        drop(seq);
        let mut pace = self.pace.lock().expect("pace lock");
        pace.since += 1;
        if pace.since >= PACE {
            pace.since = 0;
            pace.due = pace.mark.replace(ticket);
        }
        ticket
    }

    /// Waits, if the run's records ran more than [`PACE`] batches ahead of the
    /// journal's writer, until the writer caught up with the older half. Records do
    /// not wait for the disk, so without this a loop of pure tasks would queue records
    /// faster than they are written: memory without bound, and a writer that everybody
    /// else's commits wait behind. Usually the writer is there already and this
    /// returns at once.
    pub(crate) async fn keep_pace(&self) -> Result<(), Interrupt> {
        let due = self.pace.lock().expect("pace lock").due.take();
        match due {
            Some(ticket) => self.barrier(ticket).await,
            None => Ok(()),
        }
    }

    /// Records what one attempt of the task at `at` used (`key` is the attempt's
    /// idempotency key, `code` its exit code or HTTP status), failed attempts included:
    /// cost counts them all.
    pub(crate) fn record_usage(&self, at: &str, key: &str, code: Value, usage: crate::Usage) {
        let data = json!({
            "workflow": self.qualified_name, "task": at, "key": key, "code": code,
            "cpuSeconds": usage.cpu_seconds, "memoryGibSeconds": usage.memory_gib_seconds,
        });
        self.record(
            vec![],
            vec![(Lifecycle::TaskUsage.as_str(), Json::of(&data))],
            None,
        );
    }

    /// Returns at once unless the run is paused; then when it is resumed, or with
    /// [`Interrupt::Cancelled`] if it is cancelled first.
    pub(crate) async fn gate(&self) -> Result<(), Interrupt> {
        if !*self.paused.borrow() {
            return Ok(());
        }
        let mut paused = self.paused.clone();
        tokio::select! {
            // A controller that went away cannot resume the run, nor keep it paused.
            _ = paused.wait_for(|p| !*p) => Ok(()),
            _ = self.cancel.cancelled() => Err(Interrupt::Cancelled),
        }
    }

    /// Whether work of this run dropped now was cancelled (by a lost race, a faulted
    /// fan-out, a timeout or a cancellation) rather than abandoned by a shutdown.
    pub(crate) fn dropping_cancels(&self) -> bool {
        self.cancel.is_cancelled() || !self.detached.load(Ordering::Acquire)
    }

    /// Waits until the records an effect depends on (those up to `ticket`, its causal
    /// history) are durable: the barrier before something leaves the process. A re-run
    /// of the effect then sees the same history, so it sends the same request.
    pub(crate) async fn barrier(&self, ticket: Ticket) -> Result<(), Interrupt> {
        self.store
            .durable(ticket)
            .await
            .map_err(|e| Interrupt::Store(e.to_string()))
    }

    /// A lifecycle event about a task, serialized at once: `extra` (an output, an
    /// error) is written from where it lies, not copied into a new document. Written by
    /// hand after a head made once per run: a task makes several of these, and serde's
    /// escaping of every key and name costs more than the rest of the event.
    pub(crate) fn task_event(
        &self,
        reference: &str,
        at_field: &str,
        extra: Option<(&str, &Value)>,
    ) -> Json {
        let mut text = Vec::with_capacity(self.event_head.len() + reference.len() + 64);
        text.extend_from_slice(self.event_head.as_bytes());
        json_string(&mut text, reference);
        text.push(b',');
        plain_json_string(&mut text, at_field);
        text.push(b':');
        ISO.with_borrow_mut(|(ms, iso_text)| {
            let now = self.clock.now_ms();
            if *ms != now || iso_text.is_empty() {
                *ms = now;
                *iso_text = iso(now);
            }
            plain_json_string(&mut text, iso_text);
        });
        if let Some((name, value)) = extra {
            text.push(b',');
            plain_json_string(&mut text, name);
            text.push(b':');
            serde_json::to_writer(&mut text, value).expect("a JSON value serializes");
        }
        text.push(b'}');
        Json::from_written(String::from_utf8(text).expect("JSON text written from strings"))
    }

    /// No variables, only the execution's expression budget: for expressions that read
    /// nothing, such as a duration.
    pub(crate) fn no_vars(&self) -> Vars<'static> {
        let mut vars = Vars::new();
        vars.set_budget(self.limits.limits.expression);
        vars
    }

    /// The variables an expression of a task sees.
    pub(crate) fn vars<'v>(
        &'v self,
        scope: &'v Scope,
        context: &'v Value,
        input: &'v Value,
        task: &'v Value,
        output: Option<&'v Value>,
    ) -> Vars<'v> {
        let mut vars = Vars::new();
        vars.set_budget(self.limits.limits.expression);
        // Zigflow's `$input` is the workflow's input throughout, and its `$output` the
        // previous task's output: the task's input here.
        let zigflow = self.wf.accumulates_data;
        vars.set("context", context)
            .set(
                "input",
                if zigflow {
                    &self.workflow_var["input"]
                } else {
                    input
                },
            )
            .set("task", task)
            .set("secrets", &self.secrets)
            .set("workflow", &self.workflow_var)
            .set("runtime", &self.runtime_var)
            // Only what the server's configuration lets workflows see (`--workflow-env`,
            // `--env-allow`), never the process's own environment.
            .set("env", &self.runtime_var["metadata"]["env"]);
        if let Some(output) = output {
            vars.set("output", output);
        } else if zigflow {
            vars.set("output", input);
        }
        for (name, value) in &scope.locals {
            vars.set(name, value);
        }
        vars
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Counts a task starting at `at`; faults past the execution's `tasks` limit.
    pub(crate) fn count_task(&self, at: &str) -> Result<(), Interrupt> {
        let started = self.used.tasks.fetch_add(1, Ordering::Relaxed) + 1;
        let (limit, setting) = match self.wf.task_limit {
            Some(front) if front.tasks < self.limits.limits.tasks => (front.tasks, front.setting),
            _ => (self.limits.limits.tasks, "execution-tasks"),
        };
        if started <= limit {
            return Ok(());
        }
        Err(crate::limits::over(
            at,
            "Task limit exceeded",
            format!("the execution started more than {limit} tasks (setting `{setting}`)"),
        ))
    }

    /// Faults when `value` (`what`, at `at`) is over the execution's state limit, or
    /// would take its journal past its `journal_bytes` limit.
    pub(crate) fn check_size(&self, value: &Value, what: &str, at: &str) -> Result<(), Interrupt> {
        let size = json_len(value);
        if size <= self.limits.limits.state_bytes {
            let total = self
                .used
                .journal_bytes
                .fetch_add(size as u64, Ordering::Relaxed)
                + size as u64;
            let limit = self.limits.limits.journal_bytes;
            if total <= limit {
                return Ok(());
            }
            return Err(crate::limits::over(
                at,
                "Journal size limit exceeded",
                format!(
                    "the execution recorded more than {limit} bytes of task outputs and context \
                     (setting `execution-journal-bytes`)"
                ),
            ));
        }
        Err(Interrupt::Fault(Problem {
            type_: expr::types::RUNTIME.into(),
            status: 413,
            title: Some("State size limit exceeded".into()),
            detail: Some(format!(
                "{what} is {size} bytes of JSON, over the limit of {} bytes on a task's \
                 output, the context and the workflow's output (--max-state-bytes)",
                self.limits.limits.state_bytes
            )),
            instance: Some(at.to_string()),
            data: None,
        }))
    }
}

/// How many batches a run records between two pacing marks: its records are at most
/// twice this many ahead of the journal's writer when it starts a task.
const PACE: u32 = 64;

#[derive(Default)]
struct Pace {
    /// Batches recorded since the last mark.
    since: u32,
    /// The ticket of the last mark.
    mark: Option<Ticket>,
    /// The ticket of the mark before it, to wait for before the next task.
    due: Option<Ticket>,
}

/// An execution's limits, with the permits it shares with its children.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) limits: crate::Limits,
    /// The execution's `for` iterations running at once, its children's included.
    pub(crate) iterations: Arc<tokio::sync::Semaphore>,
    /// Its project's, in this process.
    pub(crate) project_iterations: Arc<tokio::sync::Semaphore>,
    /// How deep in `run.workflow` this execution runs: 0 for a top-level one.
    pub(crate) depth: usize,
}

/// What one execution has used of its limits, in this run.
#[derive(Default)]
pub(crate) struct Used {
    tasks: std::sync::atomic::AtomicU64,
    journal_bytes: std::sync::atomic::AtomicU64,
}

/// The length of `value` as JSON text, counted without building the text.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("counting never fails");
    count.0
}

/// What replaces secret text in events and results.
pub(crate) const MASK: &str = "***";

/// Secrets shorter than this are not masked: masking every `1` or `ok` in a document
/// would hide more than it protects.
const MASK_MIN_CHARS: usize = 4;

/// The secrets among `given` that `names` declares.
fn declared(given: &Value, names: &[String]) -> Value {
    Value::Object(
        names
            .iter()
            .filter_map(|name| Some((name.clone(), given.get(name)?.clone())))
            .collect(),
    )
}

/// Collects the string leaves of `secrets` long enough to mask.
fn secret_texts(secrets: &Value, out: &mut Vec<String>) {
    match secrets {
        Value::String(s) if s.chars().count() >= MASK_MIN_CHARS => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| secret_texts(v, out)),
        Value::Object(map) => map.values().for_each(|v| secret_texts(v, out)),
        _ => {}
    }
}

/// Replaces every occurrence of the `masks` texts in the strings (keys included) of
/// `value` with [`MASK`].
pub(crate) fn mask(value: &mut Value, masks: &[String]) {
    let masked = |s: &str| {
        masks.iter().any(|m| s.contains(m.as_str())).then(|| {
            masks
                .iter()
                .fold(s.to_string(), |acc, m| acc.replace(m.as_str(), MASK))
        })
    };
    match value {
        Value::String(s) => {
            if let Some(m) = masked(s) {
                *s = m;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mask(v, masks)),
        Value::Object(map) => {
            if map.keys().any(|k| masked(k).is_some()) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (masked(&k).unwrap_or(k), v))
                    .collect();
            }
            map.values_mut().for_each(|v| mask(v, masks));
        }
        _ => {}
    }
}

/// The DSL's date-time descriptor.
pub(crate) fn date_time(ms: i64) -> Value {
    json!({
        "iso8601": iso(ms),
        "epoch": { "seconds": ms.div_euclid(1000), "milliseconds": ms },
    })
}

thread_local! {
    /// The last instant an event was stamped with on this thread, and its text: tasks
    /// running side by side stamp many events within one millisecond.
    static ISO: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// Appends `s`, a field name or timestamp of ours that needs no escaping, as a JSON string.
fn plain_json_string(out: &mut Vec<u8>, s: &str) {
    debug_assert!(
        !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'),
        "{s}"
    );
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Appends `s` as a JSON string; through serde only if it needs escaping.
fn json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        serde_json::to_writer(out, s).expect("a string serializes");
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

pub(crate) fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// A problem as stored JSON.
pub(crate) fn problem_json(p: &Problem) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}
