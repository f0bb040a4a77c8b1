//! The durable interpreter.
//!
//! An execution walks its task tree. Every task has a deterministic key: its
//! position (`/do/1/renderChunks/for/17/do/0/render`), with visit and try-attempt
//! marks. Before running a task, the engine looks its key up in the journal: a
//! completed record is used as is. So a resumed execution re-walks the tree
//! quickly, never runs a finished task again, and continues live from the first
//! key without a record.
//!
//! Records are queued without waiting ([`store::Store::commit`]). The engine waits
//! for durability only before something leaves the process: a call, a process,
//! a timer, the final result. Effects go through [`Effects`], time through [`Clock`].
//!
//! **API boundary:** no IO here; no HTTP client, no SQL, no files.

pub mod effects;
pub mod events;
mod interp;
pub mod limits;
pub use interp::http::USAGE_HEADER;
pub use interp::messages::update_answer;
mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use expr::Problem;
pub use limits::{DEFAULT_MAX_STATE_BYTES, Limits};
use program::Program;
use serde_json::{Value, json};
use store::{Created, NewExecution, Status, Store};
use tokio_util::sync::CancellationToken;

pub use effects::{
    Channel, Cleanup, Clock, ContainerSpec, Effects, Entropy, EventSink, GoogleToken, GrpcError,
    GrpcRequest, HttpError, HttpRequest, HttpResponse, Inbound, ManualClock, McpError, McpRequest,
    McpServer, MessagingError, Outbound, OutputSink, ProcessControl, ProcessOutput, ProcessSpec,
    Seeded, Subscription, SystemClock, SystemEntropy, Usage,
};

/// Why a step stopped before finishing.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// An error in the workflow's terms; `try` can catch it.
    Fault(Problem),
    Cancelled,
    /// The journal could not be written: the run stops, to resume later.
    Store(String),
}

/// A fault of one of the DSL's error types, raised at the task `at`.
pub(crate) fn fault(
    type_: &str,
    status: u16,
    title: &str,
    detail: impl Into<String>,
    at: &str,
) -> Interrupt {
    Interrupt::Fault(Problem {
        type_: type_.into(),
        status,
        title: Some(title.into()),
        detail: Some(detail.into()),
        instance: Some(at.to_string()),
        data: None,
    })
}

impl From<Problem> for Interrupt {
    fn from(p: Problem) -> Self {
        Interrupt::Fault(p)
    }
}

/// Sees every event as it is recorded (before it is durable), for live progress.
pub trait Observer: Send + Sync {
    fn event(&self, execution: &str, event: &store::Event);
}

/// How an execution ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Completed(Value),
    Faulted(Problem),
    Cancelled,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("no execution `{0}`")]
    NotFound(String),
    #[error("the stored definition of execution `{0}` no longer validates: {1}")]
    Definition(String, String),
    #[error("the journal could not be written: {0}")]
    Journal(String),
    #[error("invalid event: {0}")]
    Event(String),
    /// A request that would take an execution past one of its limits.
    #[error("{0}")]
    Limit(String),
}

/// Why a query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The execution does not run in this process (it ended, waits to be resumed, or
    /// runs on another server).
    #[error("the execution does not run in this process")]
    NotRunningHere,
    /// No `listen` task of the execution registered the query (yet).
    #[error("the execution has no query handler `{name}`{}", known_list(.known))]
    Unknown { name: String, known: Vec<String> },
    /// The query's `data` failed to evaluate.
    #[error("{}", .0.detail.as_deref().or(.0.title.as_deref()).unwrap_or("the query failed"))]
    Failed(Box<Problem>),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (it has registered none so far)".into()
    } else {
        format!(
            " (it has {})",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// How a caller steers a run: cancel it, or pause it while the flag is true.
pub struct Control {
    pub cancel: CancellationToken,
    pub paused: tokio::sync::watch::Receiver<bool>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    effects: Arc<dyn Effects>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    frontend: Arc<dyn Frontend>,
    observer: Option<Arc<dyn Observer>>,
    /// The executions running in this process: woken when an event arrives for them,
    /// and asked their queries.
    live: Mutex<HashMap<String, Weak<run::Run>>>,
    limits: Limits,
    /// Limits of particular projects, in place of `limits`.
    project_limits: HashMap<String, Limits>,
    projects: Arc<limits::Projects>,
    /// What every execution's `$runtime.metadata` holds: `env` and `server`.
    shared_metadata: serde_json::Map<String, Value>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, effects: Arc<dyn Effects>, clock: Arc<dyn Clock>) -> Engine {
        Engine {
            store,
            effects,
            clock,
            entropy: Arc::new(SystemEntropy),
            frontend: Arc::new(Dsl::default()),
            observer: None,
            live: Mutex::default(),
            limits: Limits::default(),
            project_limits: HashMap::new(),
            projects: Arc::default(),
            shared_metadata: serde_json::Map::new(),
        }
    }

    /// Variables every workflow is given, as `$runtime.metadata.env` (and to Cloud
    /// Workflows documents through `sys.get_env`).
    pub fn with_env(mut self, env: std::collections::BTreeMap<String, String>) -> Engine {
        self.shared_metadata.insert("env".into(), json!(env));
        self
    }

    /// The URL the server's API is reached at (`$runtime.metadata.server`): where
    /// Cloud Workflows callback endpoints point.
    pub fn with_server_url(mut self, url: &str) -> Engine {
        let url = url.trim_end_matches('/');
        self.shared_metadata.insert("server".into(), json!(url));
        self
    }

    /// Bounds the state of each execution: a task whose output, or whose change to
    /// `$context`, is larger than `bytes` of JSON faults with a `runtime` error (status
    /// 413) naming the limit, and so does a workflow whose output is. Such a value is
    /// never stored.
    pub fn with_max_state_bytes(mut self, bytes: usize) -> Engine {
        self.limits.state_bytes = bytes;
        self
    }

    /// The limits of every execution whose project has none of its own.
    pub fn with_limits(mut self, limits: Limits) -> Engine {
        self.limits = limits;
        self
    }

    /// The limits of the executions of `project`.
    pub fn with_project_limits(mut self, project: &str, limits: Limits) -> Engine {
        self.project_limits.insert(project.to_string(), limits);
        self
    }

    /// The limits executions of `project` run under.
    pub fn limits(&self, project: &str) -> &Limits {
        self.project_limits.get(project).unwrap_or(&self.limits)
    }

    /// Takes new execution ids and random numbers (retry jitter) from `entropy`
    /// instead of the system's.
    pub fn with_entropy(mut self, entropy: Arc<dyn Entropy>) -> Engine {
        self.entropy = entropy;
        self
    }

    /// Reads stored and cataloged definitions with `frontend` instead of the DSL's.
    pub fn with_frontend(mut self, frontend: Arc<dyn Frontend>) -> Engine {
        self.frontend = frontend;
        self
    }

    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Engine {
        self.observer = Some(observer);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Records a new execution of `workflow` (whose text is `source`) and returns its id.
    /// With an `id` that exists already, nothing is created and that id is returned.
    pub async fn create(
        &self,
        source: &str,
        workflow: &Program,
        id: Option<String>,
        input: Value,
    ) -> Result<String, Error> {
        self.create_or_get(
            source,
            workflow,
            id,
            input,
            store::Labels::new(),
            store::DEFAULT_PROJECT,
        )
        .await
        .map(|(id, _)| id)
    }

    /// Like [`Engine::create`], with `labels`, in `project`, and says whether the
    /// execution is new or which one already had that id, so that a caller can tell a
    /// repeated start from a clash.
    pub async fn create_or_get(
        &self,
        source: &str,
        workflow: &Program,
        id: Option<String>,
        input: Value,
        labels: store::Labels,
        project: &str,
    ) -> Result<(String, Created), Error> {
        let id = id.unwrap_or_else(|| self.entropy.execution_id());
        let doc = &workflow.document;
        let created = self
            .store
            .create(NewExecution {
                id: id.clone(),
                namespace: doc.namespace.clone(),
                name: doc.name.clone(),
                version: doc.version.to_string(),
                definition: source.to_string(),
                input,
                labels,
                project: project.to_string(),
                created_at: self.clock.now_ms(),
            })
            .await?;
        Ok((id, created))
    }

    /// Runs execution `id` to its end, resuming from its journal if it ran before.
    /// `secrets` are the values of `$secrets`; they are never stored.
    pub async fn run(
        &self,
        id: &str,
        secrets: Value,
        cancel: CancellationToken,
    ) -> Result<Outcome, Error> {
        let (_, paused) = tokio::sync::watch::channel(false);
        self.run_controlled(id, secrets, Control { cancel, paused })
            .await
    }

    /// Like [`Engine::run`], under `control`: cancelled by its token, and paused while
    /// its flag is true. A paused run starts no new task and fires no timer (tasks
    /// already running finish and are journaled); it records `workflow.suspended` when
    /// the flag rises and `workflow.resumed` when it falls.
    pub async fn run_controlled(
        &self,
        id: &str,
        secrets: Value,
        control: Control,
    ) -> Result<Outcome, Error> {
        let Control { cancel, paused } = control;
        let execution = self
            .store
            .execution(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        if execution.status.is_final() {
            return Ok(stored_outcome(&execution));
        }
        let workflow = (self.frontend.lower(&execution.definition))
            .map_err(|first| Error::Definition(id.to_string(), first))?;
        let journal = self.store.journal(id).await?;
        let run = Arc::new(run::Run::new(run::RunParts {
            wake: Arc::new(tokio::sync::Notify::new()),
            metadata: run::metadata(
                &execution.project,
                &execution.name,
                &execution.labels,
                self.shared_metadata.clone(),
            ),
            id: id.to_string(),
            wf: Arc::new(workflow),
            store: self.store.clone(),
            effects: self.effects.clone(),
            clock: self.clock.clone(),
            entropy: self.entropy.clone(),
            frontend: self.frontend.clone(),
            observer: self.observer.clone(),
            cancel,
            paused,
            suspended: execution.status == store::Status::Suspended,
            project: execution.project.clone(),
            journal,
            raw_input: execution.input.clone(),
            started_at: execution.created_at,
            secrets,
            limits: {
                let limits = self.limits(&execution.project).clone().offloading();
                run::Shared {
                    iterations: Arc::new(tokio::sync::Semaphore::new(limits.execution_iterations)),
                    project_iterations: self
                        .projects
                        .iterations(&execution.project, limits.project_iterations),
                    limits,
                    depth: 0,
                }
            },
            detached: Arc::default(),
        }));
        {
            let mut live = self.live.lock().expect("live lock");
            live.retain(|_, r| r.strong_count() > 0);
            live.insert(id.to_string(), Arc::downgrade(&run));
        }
        // The execution's span: its tasks' and calls' spans sit under it, and a trace
        // exporter (when the binary installs one) sends them. Their target, `otel`, is
        // the one that exporter takes; nothing else records them.
        let span = tracing::info_span!(
            target: "otel",
            "execution",
            otel.name = %format!("execution {}", execution.name),
            execution.id = %id,
            workflow = %execution.name,
            project = %execution.project,
        );
        tracing::Instrument::instrument(interp::execute_detachable(run), span)
            .await
            .map_err(Error::Journal)
    }
}

impl Engine {
    /// Delivers a CloudEvent (structured JSON, with at least a `type`) to an execution's
    /// inbox, where its `listen` tasks find it; returns its inbox position.
    pub async fn deliver(&self, id: &str, event: Value) -> Result<u64, Error> {
        let Some(execution) = self.store.execution(id).await? else {
            return Err(Error::NotFound(id.to_string()));
        };
        let limit = self.limits(&execution.project).inbox_events;
        let full = limit == 0 || !self.store.inbox(id, limit - 1).await?.is_empty();
        if full {
            return Err(Error::Limit(format!(
                "the execution `{id}` has been delivered {limit} events already (setting \
                 `inbox-events`)"
            )));
        }
        if !event.get("type").is_some_and(Value::is_string) {
            return Err(Error::Event(
                "a CloudEvent must be a JSON object with a string `type`".into(),
            ));
        }
        let position = self.store.deliver(id, event).await?;
        if let Some(run) = self.running_here(id) {
            run.wake.notify_waiters();
        }
        Ok(position)
    }

    /// Execution `id`'s run, if it runs in this process.
    fn running_here(&self, id: &str) -> Option<Arc<run::Run>> {
        self.live
            .lock()
            .expect("live lock")
            .get(id)
            .and_then(Weak::upgrade)
    }

    /// Answers query `name` of execution `id` from the state its run holds now (Zigflow's
    /// query handlers, registered as its `listen` tasks run). Nothing is journaled; only
    /// the process that runs the execution can answer.
    pub fn query(&self, id: &str, name: &str) -> Result<Value, QueryError> {
        let run = self.running_here(id).ok_or(QueryError::NotRunningHere)?;
        run.query(name)
    }
}

/// How the engine reads a definition: the text stored with an execution (read again
/// at each run, so a resumed execution runs what it started with) or found in the
/// catalog for `run.workflow`, lowered into the program it runs.
pub trait Frontend: Send + Sync {
    /// The program of `definition`, or what is wrong with it, in one line.
    fn lower(&self, definition: &str) -> Result<Program, String>;
}

/// The engine's default front-end: the Serverless Workflow DSL (`dsl`), or Cloud
/// Workflows (`gcw`) for a document of that shape, read with these options (such as
/// Google's limits for Cloud Workflows documents).
#[derive(Default)]
pub struct Dsl(pub dsl::Options);

impl Frontend for Dsl {
    fn lower(&self, definition: &str) -> Result<Program, String> {
        let parsed = gcw::parse_any(definition, &self.0);
        parsed.workflow.ok_or_else(|| {
            parsed
                .diagnostics
                .first()
                .map(|d| d.message.clone())
                .unwrap_or_default()
        })
    }
}

pub(crate) fn stored_outcome(execution: &store::Execution) -> Outcome {
    match execution.status {
        Status::Completed => Outcome::Completed(execution.output.clone().unwrap_or(Value::Null)),
        Status::Faulted => Outcome::Faulted(
            execution
                .error
                .clone()
                .and_then(|e| serde_json::from_value(e).ok())
                .unwrap_or_else(|| Problem {
                    type_: expr::types::RUNTIME.into(),
                    status: 500,
                    title: Some("The execution faulted".into()),
                    detail: None,
                    instance: None,
                    data: None,
                }),
        ),
        _ => Outcome::Cancelled,
    }
}
