//! The action-handler SDK: a worker service for skein workflows is one HTTP service whose
//! `POST /` carries an `action` and its input, dispatched to a typed handler.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! #[derive(serde::Deserialize)]
//! struct Add { a: i64, b: i64 }
//!
//! let service = sdk::Service::new("calculator")
//!     .action("add", |_ctx, input: Add| async move { Ok(input.a + input.b) })
//!     // The one place that says which errors are not worth retrying.
//!     .non_retryable(|e| e.downcast_ref::<std::num::ParseIntError>().map(|_| "bad_number".into()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, service.router()).await?;
//! # Ok(()) }
//! ```
//!
//! - The request body may come wrapped in `Payload` or `Input` envelopes (as Cloud
//!   Workflows and Step Functions wrap them), up to four deep.
//! - A handler's error is classified once, by the service's `non_retryable` function: a
//!   non-retryable one answers `400 {error, message}`, so a workflow's retry policy
//!   leaves it alone; anything else answers `500 {error: "internal", message}`. A body
//!   that is not JSON, an unknown action and an input its handler cannot read are `400`
//!   too: retrying them cannot help.
//! - Each request logs JSON lines with Cloud Logging's `severity`, and the execution and
//!   task ids from its `Idempotency-Key` (`{execution}:{task}`, as skein sends it).
//! - A request repeating the `Idempotency-Key` of one that succeeded or failed for good
//!   gets the stored reply, and the work is not done again; one that arrives while the
//!   first is running waits for its reply.
//! - Each computed reply reports the CPU time its handler declared
//!   (`Context::add_cpu_seconds`) in a `skein-usage` header, so that cost counts every
//!   attempt, failed ones too.
//! - `GET /healthz` answers with the service's name and actions.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The reply header that reports what a request used, as skein reads it:
/// `cpu-seconds=0.41`. Every reply the service computes carries it; a stored reply sent
/// again for a repeated idempotency key does not, as no work was done.
pub const USAGE_HEADER: &str = "skein-usage";

/// How deep `Payload`/`Input` envelopes may nest.
pub const MAX_ENVELOPE_DEPTH: usize = 4;

/// Replies kept for repeated idempotency keys; the oldest go first.
const KEPT_REPLIES: usize = 10_000;

/// Where a request stands, as its handler sees it.
#[derive(Clone, Debug)]
pub struct Context {
    pub action: String,
    /// From the `Idempotency-Key` header (`{execution}:{task}`), when there is one.
    pub execution_id: Option<String>,
    pub task: Option<String>,
    pub idempotency_key: Option<String>,
    log: Log,
    /// CPU seconds the handler reports for this request.
    cpu_seconds: Arc<Mutex<f64>>,
}

impl Context {
    /// Adds CPU time this request used (for example around a blocking computation);
    /// the reply reports the total to skein in its `skein-usage` header, which cost
    /// counts for every attempt, failed ones too.
    pub fn add_cpu_seconds(&self, seconds: f64) {
        if seconds.is_finite() && seconds > 0.0 {
            *self.cpu_seconds.lock().expect("usage lock") += seconds;
        }
    }

    /// Writes one structured log line for this request.
    pub fn log(&self, severity: Severity, message: &str) {
        self.log.write(severity, message, self);
    }
}

/// Cloud Logging's severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Debug,
    Info,
    Warning,
    Error,
}

/// Where log lines go: standard output unless the service says otherwise.
#[derive(Clone)]
struct Log {
    service: Arc<str>,
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Log")
    }
}

impl Log {
    fn write(&self, severity: Severity, message: &str, ctx: &Context) {
        let line = json!({
            "severity": severity,
            "message": message,
            "time": jiff::Timestamp::now().to_string(),
            "service": &*self.service,
            "action": ctx.action,
            "executionId": ctx.execution_id,
            "task": ctx.task,
        });
        let mut sink = self.sink.lock().expect("log lock");
        let _ = writeln!(sink, "{line}");
        let _ = sink.flush();
    }
}

type Reply = (StatusCode, Value);

/// What a handler came to, before the service classifies a failure.
enum Outcome {
    Output(Value),
    /// The input did not fit the handler's type.
    BadInput(String),
    Failed(anyhow::Error),
}

type BoxedHandler =
    Arc<dyn Fn(Context, Value) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;
type Classifier = Arc<dyn Fn(&anyhow::Error) -> Option<String> + Send + Sync>;

/// A worker service: its actions and how it classifies their errors.
pub struct Service {
    name: Arc<str>,
    handlers: HashMap<String, BoxedHandler>,
    classify: Classifier,
    log: Log,
}

impl Service {
    pub fn new(name: &str) -> Service {
        Service {
            name: Arc::from(name),
            handlers: HashMap::new(),
            classify: Arc::new(|_| None),
            log: Log {
                service: Arc::from(name),
                sink: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            },
        }
    }

    /// Adds action `name`: its input is read from the request (the whole object, envelopes
    /// removed) into `I`, and its output is the reply's JSON body.
    pub fn action<I, O, F, Fut>(mut self, name: &str, handler: F) -> Service
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(Context, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<O>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let boxed: BoxedHandler = Arc::new(move |ctx: Context, input: Value| {
            let handler = handler.clone();
            Box::pin(async move {
                let input: I = match serde_json::from_value(input) {
                    Ok(input) => input,
                    Err(e) => return Outcome::BadInput(e.to_string()),
                };
                match handler(ctx, input).await {
                    Ok(output) => match serde_json::to_value(output) {
                        Ok(v) => Outcome::Output(v),
                        Err(e) => {
                            Outcome::Failed(anyhow::anyhow!("the output does not serialize: {e}"))
                        }
                    },
                    Err(e) => Outcome::Failed(e),
                }
            })
        });
        self.handlers.insert(name.to_string(), boxed);
        self
    }

    /// The one place that says which handler errors are not worth retrying: `Some(code)`
    /// makes a `400 {error: code, message}`; `None` (the default for every error) a
    /// `500`.
    pub fn non_retryable(
        mut self,
        classify: impl Fn(&anyhow::Error) -> Option<String> + Send + Sync + 'static,
    ) -> Service {
        self.classify = Arc::new(classify);
        self
    }

    /// Sends log lines to `sink` instead of standard output.
    pub fn log_to(mut self, sink: impl Write + Send + 'static) -> Service {
        self.log.sink = Arc::new(Mutex::new(Box::new(sink)));
        self
    }

    pub fn router(self) -> Router {
        let state = Arc::new(Shared {
            service: self,
            replies: Mutex::default(),
        });
        Router::new()
            .route("/", post(dispatch))
            .route("/healthz", get(healthz))
            .with_state(state)
    }
}

struct Shared {
    service: Service,
    replies: Mutex<Replies>,
}

/// Replies by idempotency key: finished ones, and a channel for those still running.
#[derive(Default)]
struct Replies {
    by_key: HashMap<String, watch::Receiver<Option<Reply>>>,
    order: VecDeque<String>,
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let mut actions: Vec<&String> = shared.service.handlers.keys().collect();
    actions.sort();
    Json(json!({"status": "ok", "service": &*shared.service.name, "actions": actions}))
}

/// Takes off `Payload`/`Input` envelopes, at most [`MAX_ENVELOPE_DEPTH`] of them.
fn unwrap(mut body: Value) -> Result<Value, String> {
    for _ in 0..=MAX_ENVELOPE_DEPTH {
        let Value::Object(map) = &body else {
            return Err("the body is not a JSON object".into());
        };
        if map.contains_key("action") {
            return Ok(body);
        }
        let inner = ["Payload", "Input", "payload", "input"]
            .iter()
            .find_map(|k| map.get(*k))
            .cloned();
        body = match inner {
            // An envelope may hold its content as JSON text.
            Some(Value::String(text)) => serde_json::from_str(&text)
                .map_err(|e| format!("an envelope holds text that is not JSON: {e}"))?,
            Some(inner) => inner,
            None => return Err("the body has no `action`".into()),
        };
    }
    Err(format!(
        "the body is wrapped in more than {MAX_ENVELOPE_DEPTH} `Payload`/`Input` envelopes"
    ))
}

fn refuse(error: &str, message: String) -> Reply {
    (
        StatusCode::BAD_REQUEST,
        json!({"error": error, "message": message}),
    )
}

async fn dispatch(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let metered = |(status, body): Reply, cpu: f64| {
        let mut response = (status, Json(body)).into_response();
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("cpu-seconds={cpu:.6}")) {
            response.headers_mut().insert(USAGE_HEADER, value);
        }
        response
    };
    let Some(key) = key else {
        let (reply, cpu) = handle(&shared, None, &body).await;
        return metered(reply, cpu);
    };
    // The first request with a key does the work; the others wait for its reply.
    let (first, mut reply) = {
        let mut replies = shared.replies.lock().expect("replies lock");
        match replies.by_key.get(&key) {
            Some(rx) => (None, rx.clone()),
            None => {
                let (tx, rx) = watch::channel(None);
                replies.by_key.insert(key.clone(), rx.clone());
                replies.order.push_back(key.clone());
                while replies.order.len() > KEPT_REPLIES {
                    if let Some(old) = replies.order.pop_front() {
                        replies.by_key.remove(&old);
                    }
                }
                (Some(tx), rx)
            }
        }
    };
    match first {
        Some(tx) => {
            let (reply, cpu) = handle(&shared, Some(&key), &body).await;
            if reply.0.is_server_error() {
                // Worth retrying: the next request with this key does the work again.
                shared
                    .replies
                    .lock()
                    .expect("replies lock")
                    .by_key
                    .remove(&key);
            }
            let _ = tx.send(Some(reply.clone()));
            metered(reply, cpu)
        }
        // A stored reply: no work done, so no usage reported.
        None => {
            let (status, body) = match reply.wait_for(Option::is_some).await {
                Ok(r) => r.clone().expect("waited for"),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal", "message": "the first request with this key was dropped"}),
                ),
            };
            (status, Json(body)).into_response()
        }
    }
}

/// Handles one request; the reply, and the CPU seconds its handler reported.
async fn handle(shared: &Shared, key: Option<&str>, body: &[u8]) -> (Reply, f64) {
    let cpu = Arc::new(Mutex::new(0.0));
    let reply = handle_metered(shared, key, body, cpu.clone()).await;
    let seconds = *cpu.lock().expect("usage lock");
    (reply, seconds)
}

async fn handle_metered(
    shared: &Shared,
    key: Option<&str>,
    body: &[u8],
    cpu_seconds: Arc<Mutex<f64>>,
) -> Reply {
    let service = &shared.service;
    let (execution_id, task) = match key.and_then(|k| k.split_once(':')) {
        Some((e, t)) => (Some(e.to_string()), Some(t.to_string())),
        None => (None, None),
    };
    let mut ctx = Context {
        action: String::new(),
        execution_id,
        task,
        idempotency_key: key.map(String::from),
        log: service.log.clone(),
        cpu_seconds,
    };
    let body: Value = match serde_json::from_slice(body) {
        Ok(body) => body,
        Err(e) => {
            ctx.log(
                Severity::Warning,
                &format!("refused: the body is not JSON: {e}"),
            );
            return refuse("malformed_body", format!("the body is not JSON: {e}"));
        }
    };
    let input = match unwrap(body) {
        Ok(input) => input,
        Err(message) => {
            ctx.log(Severity::Warning, &format!("refused: {message}"));
            return refuse("malformed_body", message);
        }
    };
    let Some(action) = input["action"].as_str().map(String::from) else {
        return refuse("malformed_body", "`action` is not a string".into());
    };
    ctx.action = action.clone();
    let Some(handler) = service.handlers.get(&action) else {
        let mut known: Vec<&String> = service.handlers.keys().collect();
        known.sort();
        ctx.log(Severity::Warning, "refused: unknown action");
        return refuse(
            "unknown_action",
            format!("no action `{action}` here; this service has {known:?}"),
        );
    };
    ctx.log(Severity::Info, "started");
    match handler(ctx.clone(), input).await {
        Outcome::Output(output) => {
            ctx.log(Severity::Info, "finished");
            (StatusCode::OK, output)
        }
        Outcome::BadInput(e) => {
            ctx.log(
                Severity::Warning,
                &format!("refused: the input does not fit: {e}"),
            );
            refuse(
                "invalid_input",
                format!("the input of `{action}` does not fit: {e}"),
            )
        }
        Outcome::Failed(e) => {
            let message = format!("{e:#}");
            match (service.classify)(&e) {
                Some(code) => {
                    ctx.log(
                        Severity::Warning,
                        &format!("failed for good ({code}): {message}"),
                    );
                    (
                        StatusCode::BAD_REQUEST,
                        json!({"error": code, "message": message}),
                    )
                }
                None => {
                    ctx.log(
                        Severity::Error,
                        &format!("failed, worth retrying: {message}"),
                    );
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": "internal", "message": message}),
                    )
                }
            }
        }
    }
}
