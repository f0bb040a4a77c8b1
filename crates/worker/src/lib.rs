//! The worker runtime behind `skein worker`: an HTTP service that runs tasks (a command
//! with arguments, environment, stdin and a time limit, or a prompt handed to the
//! configured agent command) each in its own process group, streams their output as
//! SSE with replay, and kills a task's whole group at once when asked.
//!
//! - `GET /hello`, `GET /pty/status`: health and load, for schedulers and probes.
//! - `POST /run`: starts a task (202), or says where the same task already is (200,
//!   by its `id`); at capacity a `429` with `Retry-After`.
//! - `GET /run/{id}`, `GET /run/{id}/events` (SSE; `Last-Event-ID` replays), `POST
//!   /run/{id}/cancel`, `POST /run/{id}/pause` and `/resume` (SIGSTOP and SIGCONT).
//!
//! **API boundary:** knows HTTP and processes; nothing of workflows or the journal.

mod task;
mod usage;
pub mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde_json::{Value, json};

pub use task::Event;
use task::{Spec, Task};
use wire::RunRequest;
pub use wire::{Ending, Usage};

/// Finished tasks kept for `GET /run/{id}` and replay; the oldest go first.
const KEPT_FINISHED: usize = 1000;

/// The environment variables a task gets from the worker's own environment, when set;
/// nothing else of it (such as the worker's token) reaches a task.
const INHERITED_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];

/// How the worker behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// The name `/hello` reports.
    pub id: String,
    /// Tasks at once; one more gets a 429.
    pub concurrency: usize,
    /// The SHA-256 of the bearer token `/run` requests must carry; `None`: no
    /// authentication.
    pub token_sha256: Option<[u8; 32]>,
    /// The command a `prompt` is handed to, as its last argument: a program and its
    /// first arguments.
    pub agent_command: Option<Vec<String>>,
    /// Environment variables given to every task, secrets included.
    pub env: BTreeMap<String, String>,
    /// Whether tasks get the worker's whole environment, rather than only PATH, HOME,
    /// LANG, LC_ALL, TMPDIR and USER: for a worker inside `skein run`, whose tasks are
    /// the user's own.
    pub inherit_env: bool,
    /// Secret values, shown as `***` wherever they appear in a task's output.
    pub secrets: Vec<String>,
    /// A task's time limit when its request gives none, and the most it may ask for.
    pub max_task_time: Duration,
    /// The most output kept per task, in bytes.
    pub max_output_bytes: usize,
    /// How often an idle event stream sends a comment.
    pub heartbeat: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            id: format!("worker-{}", std::process::id()),
            concurrency: 1,
            token_sha256: None,
            agent_command: None,
            env: BTreeMap::new(),
            inherit_env: false,
            secrets: Vec::new(),
            max_task_time: Duration::from_secs(3600),
            max_output_bytes: 8 << 20,
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// The worker: its tasks, and its counters.
pub struct Worker {
    options: Options,
    masks: Arc<Vec<String>>,
    started: Instant,
    state: Mutex<Tasks>,
}

#[derive(Default)]
struct Tasks {
    by_id: HashMap<String, Arc<Task>>,
    /// Finished tasks, oldest first, for eviction.
    finished: VecDeque<String>,
    active: usize,
    executed: u64,
    /// Tasks refused because every slot was taken.
    refused: u64,
    draining: bool,
}

/// How a shutdown went.
#[derive(Debug, PartialEq, Eq)]
pub struct Shutdown {
    /// Tasks that ended by themselves during the grace period.
    pub finished: usize,
    /// Tasks killed when it ran out.
    pub killed: usize,
}

impl Worker {
    pub fn new(options: Options) -> Arc<Worker> {
        let mut masks: Vec<String> = options
            .secrets
            .iter()
            .filter(|s| s.chars().count() >= 4)
            .cloned()
            .collect();
        masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
        masks.dedup();
        Arc::new(Worker {
            options,
            masks: Arc::new(masks),
            started: Instant::now(),
            state: Mutex::default(),
        })
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Tasks running now.
    pub fn active(&self) -> usize {
        self.state.lock().expect("state lock").active
    }

    /// Refuses new tasks, waits up to `grace` for the running ones, then kills the rest.
    pub async fn shutdown(&self, grace: Duration) -> Shutdown {
        let running: Vec<Arc<Task>> = {
            let mut state = self.state.lock().expect("state lock");
            state.draining = true;
            state
                .by_id
                .values()
                .filter(|t| t.ending().is_none())
                .cloned()
                .collect()
        };
        let deadline = tokio::time::Instant::now() + grace;
        let mut report = Shutdown {
            finished: 0,
            killed: 0,
        };
        for task in &running {
            if tokio::time::timeout_at(deadline, task.ended())
                .await
                .is_ok()
            {
                report.finished += 1;
            }
        }
        for task in &running {
            if task.ending().is_none() {
                task.shutdown.cancel();
                task.cancel.cancel();
                report.killed += 1;
            }
        }
        // Until their exits are logged, so that followers see them.
        for task in &running {
            task.ended().await;
        }
        report
    }

    fn task(&self, id: &str) -> Option<Arc<Task>> {
        self.state
            .lock()
            .expect("state lock")
            .by_id
            .get(id)
            .cloned()
    }

    fn finish(&self, id: &str) {
        let mut state = self.state.lock().expect("state lock");
        state.active -= 1;
        state.executed += 1;
        state.finished.push_back(id.to_string());
        while state.finished.len() > KEPT_FINISHED {
            if let Some(old) = state.finished.pop_front() {
                state.by_id.remove(&old);
            }
        }
    }
}

/// Makes `span` a child of the trace `headers` carry (`traceparent`, `tracestate`), if
/// any and if the binary installed a propagator.
fn join_trace(span: &tracing::Span, headers: &HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let carried: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| {
            Some((
                name.to_string(),
                headers.get(name)?.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    if carried.is_empty() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carried));
    let _ = span.set_parent(parent);
}

/// The worker's routes.
pub fn app(worker: Arc<Worker>) -> Router {
    let guarded = Router::new()
        .route("/run", post(run))
        .route("/run/{id}", get(status))
        .route("/run/{id}/events", get(events))
        .route("/run/{id}/cancel", post(cancel))
        .route("/run/{id}/pause", post(pause))
        .route("/run/{id}/resume", post(resume))
        .route_layer(axum::middleware::from_fn_with_state(
            worker.clone(),
            authenticate,
        ));
    Router::new()
        .route("/hello", get(hello))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/pty/status", get(pty_status))
        .merge(guarded)
        .with_state(worker)
}

/// An error response: `{error, message}`.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            error,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(id: &str) -> Refusal {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no task `{id}` on this worker"),
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.error, "message": self.message})),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

async fn authenticate(
    State(worker): State<Arc<Worker>>,
    request: Request,
    next: Next,
) -> Result<Response, Refusal> {
    if let Some(expected) = &worker.options.token_sha256 {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|token| ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes()));
        if given.is_none_or(|g| g.as_ref() != expected) {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this worker needs `Authorization: Bearer <token>` with its token",
            ));
        }
    }
    Ok(next.run(request).await)
}

/// 200 while the worker takes tasks, 503 once it drains (so that a load balancer stops
/// sending it any).
async fn healthz(State(worker): State<Arc<Worker>>) -> (StatusCode, &'static str) {
    match worker.state.lock().expect("state lock").draining {
        false => (StatusCode::OK, "ok\n"),
        true => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
    }
}

/// The worker's figures in the Prometheus text format: open, since they say nothing of
/// the tasks themselves.
async fn metrics(State(worker): State<Arc<Worker>>) -> impl axum::response::IntoResponse {
    use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
    let (active, executed, refused, draining) = {
        let state = worker.state.lock().expect("state lock");
        (state.active, state.executed, state.refused, state.draining)
    };
    let mut registry = prometheus_client::registry::Registry::default();
    for (name, help, value) in [
        (
            "skein_worker_tasks_finished",
            "Tasks that ended, however they ended",
            executed,
        ),
        (
            "skein_worker_tasks_refused",
            "Tasks refused because every slot was taken (429)",
            refused,
        ),
    ] {
        let counter = Counter::<u64>::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    }
    for (name, help, value) in [
        (
            "skein_worker_tasks_running",
            "Tasks running now",
            active as i64,
        ),
        (
            "skein_worker_slots",
            "Tasks this worker runs at once (--concurrency)",
            worker.options.concurrency as i64,
        ),
        (
            "skein_worker_draining",
            "1 once the worker stopped taking tasks",
            i64::from(draining),
        ),
        (
            "skein_worker_uptime_seconds",
            "Seconds since the worker started",
            worker.started.elapsed().as_secs() as i64,
        ),
    ] {
        let gauge = Gauge::<i64>::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

async fn hello(State(worker): State<Arc<Worker>>) -> Json<Value> {
    let state = worker.state.lock().expect("state lock");
    let busy = state.draining || state.active >= worker.options.concurrency;
    Json(json!({
        "status": if busy { "busy" } else { "available" },
        "workerId": worker.options.id,
        "uptime": worker.started.elapsed().as_secs(),
        "activeTasks": state.active,
        "totalTasksExecuted": state.executed,
        "concurrency": worker.options.concurrency,
    }))
}

async fn pty_status(State(worker): State<Arc<Worker>>) -> Json<Value> {
    Json(json!({
        "executorType": "pty",
        "executors": ["process-group", "pty"],
        "streamingType": "sse",
        "activeProcesses": worker.active(),
    }))
}

async fn run(
    State(worker): State<Arc<Worker>>,
    headers: HeaderMap,
    body: Result<Json<RunRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Refusal> {
    let Json(request) = body.map_err(|e| Refusal::bad_request(e.body_text()))?;
    if let Some(id) = &request.id
        && (id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(Refusal::bad_request(
            "`id` must be 1 to 256 visible ASCII characters",
        ));
    }
    let options = &worker.options;
    let (program, args) = match (request.command, request.prompt) {
        (Some(command), None) => (command, request.args),
        (None, Some(prompt)) => {
            let Some(agent) = &options.agent_command else {
                return Err(Refusal::bad_request(
                    "this worker has no agent command (skein worker --agent-command), so it cannot take a `prompt`",
                ));
            };
            if !request.args.is_empty() {
                return Err(Refusal::bad_request(
                    "`args` go with `command`, not `prompt`",
                ));
            }
            let mut args = agent[1..].to_vec();
            args.push(prompt);
            (agent[0].clone(), args)
        }
        (Some(_), Some(_)) => {
            return Err(Refusal::bad_request(
                "give either `command` or `prompt`, not both",
            ));
        }
        (None, None) => {
            return Err(Refusal::bad_request(
                "give a `command` (with `args`) or a `prompt`",
            ));
        }
    };
    if program.is_empty() {
        return Err(Refusal::bad_request("`command` is empty"));
    }
    let timeout = match request.timeout_seconds {
        None => options.max_task_time,
        Some(s) if s.is_finite() && s > 0.0 => {
            Duration::from_secs_f64(s.min(options.max_task_time.as_secs_f64()))
        }
        Some(s) => {
            return Err(Refusal::bad_request(format!(
                "`timeoutSeconds` must be a positive number, not {s}"
            )));
        }
    };
    let mut env: BTreeMap<String, String> = if options.inherit_env {
        std::env::vars().collect()
    } else {
        INHERITED_ENV
            .iter()
            .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
            .collect()
    };
    env.extend(options.env.clone());
    env.extend(request.env);

    let id = request
        .id
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let task = {
        let mut state = worker.state.lock().expect("state lock");
        if let Some(existing) = state.by_id.get(&id) {
            return Ok((StatusCode::OK, Json(existing.state())));
        }
        if state.draining {
            return Err(Refusal {
                retry_after: Some(1),
                ..Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "this worker is shutting down; send the task elsewhere",
                )
            });
        }
        if state.active >= options.concurrency {
            state.refused += 1;
            return Err(Refusal {
                retry_after: Some(1),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "busy",
                    format!(
                        "this worker runs {} task{} at a time (--concurrency), all taken",
                        options.concurrency,
                        if options.concurrency == 1 { "" } else { "s" }
                    ),
                )
            });
        }
        let task = Arc::new(Task::new(id.clone(), worker.masks.clone()));
        state.by_id.insert(id.clone(), task.clone());
        state.active += 1;
        task
    };
    let spec = Spec {
        program,
        args,
        env,
        stdin: request.stdin,
        pty: request.pty,
        timeout,
        max_output_bytes: options.max_output_bytes,
    };
    let runner = worker.clone();
    let running = task.clone();
    // The task's span joins the trace of the request that started it (`traceparent`).
    let span = tracing::info_span!(
        target: "otel",
        "worker task",
        otel.kind = "server",
        task.id = %id,
        task.program = %spec.program,
        worker.id = %options.id,
    );
    join_trace(&span, &headers);
    let work = async move {
        running.run(spec).await;
        runner.finish(&id);
    };
    tokio::spawn(tracing::Instrument::instrument(work, span));
    Ok((StatusCode::ACCEPTED, Json(task.state())))
}

async fn status(
    State(worker): State<Arc<Worker>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refusal> {
    let task = worker.task(&id).ok_or_else(|| Refusal::not_found(&id))?;
    Ok(Json(task.state()))
}

async fn cancel(
    State(worker): State<Arc<Worker>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refusal> {
    let task = worker.task(&id).ok_or_else(|| Refusal::not_found(&id))?;
    task.cancel.cancel();
    // Until the kill is logged, so that the answer says how the task ended.
    task.ended().await;
    Ok(Json(task.state()))
}

/// `POST /run/{id}/pause`: stops the task's processes (SIGSTOP) until a resume. Its time
/// limit keeps running.
async fn pause(
    State(worker): State<Arc<Worker>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refusal> {
    let task = worker.task(&id).ok_or_else(|| Refusal::not_found(&id))?;
    task.pause(true);
    Ok(Json(task.state()))
}

/// `POST /run/{id}/resume`: continues a paused task (SIGCONT).
async fn resume(
    State(worker): State<Arc<Worker>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refusal> {
    let task = worker.task(&id).ok_or_else(|| Refusal::not_found(&id))?;
    task.pause(false);
    Ok(Json(task.state()))
}

async fn events(
    State(worker): State<Arc<Worker>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Refusal> {
    let task = worker.task(&id).ok_or_else(|| Refusal::not_found(&id))?;
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| Refusal::bad_request("`Last-Event-ID` is not an event id"))?,
    };
    let stream = futures::stream::unfold(
        (task, after, Vec::<Event>::new().into_iter(), false),
        |(task, mut after, mut queued, mut ended)| async move {
            loop {
                if let Some(event) = queued.next() {
                    after = event.seq;
                    let sse = SseEvent::default()
                        .id(event.seq.to_string())
                        .event(event.kind)
                        .data(event.data.to_string());
                    return Some((Ok(sse), (task, after, queued, ended)));
                }
                if ended {
                    return None;
                }
                let (events, done) = task.events_after(after);
                if events.is_empty() {
                    if done {
                        return None;
                    }
                    task.changed(after as usize).await;
                    continue;
                }
                ended = done;
                queued = events.into_iter();
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(worker.options.heartbeat)))
}
