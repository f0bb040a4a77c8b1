//! What the engine asks the outside world to do, as data, and the trait that does it.
//!
//! The engine never performs IO itself: it builds an [`HttpRequest`] or a
//! [`ProcessSpec`] and hands it to an [`Effects`] implementation (the `runtime`
//! crate in production, fakes in tests). Time comes through [`Clock`], and new ids and
//! random numbers through [`Entropy`]: with a [`ManualClock`] and [`Seeded`] entropy a
//! test drives timers and gets the same ids and jitter on every run.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

/// An HTTP request, fully resolved: URL expanded, headers and body evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// Upper-case, such as `GET`.
    pub method: String,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Whether to follow redirects (the call's `redirect: true`).
    pub follow_redirects: bool,
    pub timeout: Option<Duration>,
    /// The project of the execution making the call, whose egress policy applies.
    pub project: String,
}

impl HttpRequest {
    /// A GET of `url` with `headers`, following redirects, for a call of `project`.
    pub fn get(url: url::Url, headers: Vec<(String, String)>, project: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url,
            headers,
            body: None,
            follow_redirects: true,
            timeout: None,
            project: project.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why an HTTP request got no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no response within the time limit")]
    Timeout,
    #[error("{0}")]
    Other(String),
    /// The egress policy refused the destination; the message names the rule.
    #[error("{0}")]
    Refused(String),
}

/// A unary gRPC call, fully resolved: the message is JSON, to be encoded by the
/// service's proto.
#[derive(Clone, Debug, PartialEq)]
pub struct GrpcRequest {
    /// Where the service's proto comes from: a `file:` URL (under the runtime's files
    /// root), an `http(s):` URL, or `grpc://HOST:PORT` for that server's reflection.
    pub proto: url::Url,
    /// The service's name, fully qualified (`greeter.Greeter`) or, when that is
    /// unambiguous, not.
    pub service: String,
    pub method: String,
    pub host: String,
    pub port: u16,
    /// Request metadata (an `authorization` header, the idempotency key).
    pub metadata: Vec<(String, String)>,
    pub message: serde_json::Value,
    /// The call's deadline, sent to the server as `grpc-timeout`.
    pub timeout: Option<Duration>,
    /// The project of the execution making the call, whose egress policy applies.
    pub project: String,
}

/// Why a gRPC call has no response message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    /// The server answered with a status other than OK: its code (0 to 16) and message.
    #[error("gRPC status {code}: {message}")]
    Status { code: i32, message: String },
    /// The proto cannot be had or compiled, or has no such service or method, or the
    /// arguments do not fit the request message: the call never left.
    #[error("{0}")]
    Definition(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The egress policy refused the destination; the message names the rule.
    #[error("{0}")]
    Refused(String),
}

/// One request to a Model Context Protocol server, on a session of its own: the
/// effects connect (or start the server), initialize, send it, and close.
#[derive(Clone, Debug, PartialEq)]
pub struct McpRequest {
    pub server: McpServer,
    /// The protocol version offered in `initialize`, such as `2025-06-18`.
    pub protocol_version: String,
    /// The client's name and version, as `initialize` gives them.
    pub client: (String, String),
    /// `tools/list`, `tools/call`, `prompts/list`, `prompts/get`, `resources/list`,
    /// `resources/read` or `resources/templates/list`.
    pub method: String,
    pub params: Option<serde_json::Value>,
    /// How long the whole exchange may take; past it, the request is cancelled.
    pub timeout: Option<Duration>,
    /// The project of the execution making the call, whose egress policy applies.
    pub project: String,
}

/// Where an MCP server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum McpServer {
    /// Streamable HTTP at this URL, with these headers (authentication among them).
    Http {
        url: url::Url,
        headers: Vec<(String, String)>,
    },
    /// A process speaking JSON-RPC on its standard input and output.
    Stdio {
        command: String,
        arguments: Vec<String>,
        environment: Vec<(String, String)>,
    },
}

/// Why an MCP request has no result.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum McpError {
    /// The server answered with a JSON-RPC error.
    #[error("JSON-RPC error {code}: {message}")]
    Rpc {
        code: i32,
        message: String,
        data: Option<serde_json::Value>,
    },
    #[error("no answer within the time limit")]
    Timeout,
    /// The server could not be reached or started, or went away (a stdio server's
    /// exit, with the end of what it wrote to stderr).
    #[error("{0}")]
    Transport(String),
    /// The request cannot be made as written (an unknown method, parameters of the
    /// wrong shape).
    #[error("{0}")]
    Invalid(String),
    /// The egress policy refused the destination; the message names the rule.
    #[error("{0}")]
    Refused(String),
}

/// Where the events of a streamed response go as they come: each server-sent event's
/// data.
pub type EventSink = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Splits a `text/event-stream` body into its events' data (lines of one event joined
/// with newlines), for effects that read the whole body before handing it over.
pub fn sse_data(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in body.lines().chain([""]) {
        if line.is_empty() {
            events.extend(data.take());
        } else if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_string()),
            }
        }
    }
    events
}

/// Where a message goes or comes from: a broker and a channel on it (AsyncAPI's
/// server and channel address), resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// `mqtt`, `amqp`, `ws` (`wss`), `http` (`https`).
    pub protocol: String,
    /// The server: `host:port`, with the server's path for HTTP and WebSocket.
    pub server: url::Url,
    /// The channel's address: an MQTT topic, an AMQP queue or routing key, a path.
    pub address: String,
    /// `user` and `password` for the broker, from the call's authentication.
    pub credentials: Option<(String, String)>,
    /// An `Authorization` header, for HTTP and WebSocket.
    pub authorization: Option<String>,
    /// Names this consumer to the broker across reconnections (an MQTT client id, an
    /// AMQP queue's consumer tag): the execution and step key.
    pub consumer: String,
    /// The project of the execution, whose egress policy applies.
    pub project: String,
}

/// A message to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbound {
    pub payload: serde_json::Value,
    pub headers: Vec<(String, String)>,
    /// Stable across re-runs of the attempt, so a consumer can tell a repeat.
    pub id: String,
}

/// A message a subscription received, not acknowledged yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    /// The payload, as JSON when it is JSON, else as text.
    pub payload: serde_json::Value,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub correlation_id: Option<String>,
    /// The broker's id of the message, when it has one (an AMQP message id).
    pub id: Option<String>,
    /// Whether the broker delivered it before (so it may be one already consumed).
    pub redelivered: bool,
    /// Names the message to [`Subscription::ack`].
    pub token: u64,
}

/// Why a message could not be published or received.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessagingError {
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Broker(String),
    /// The egress policy refused the destination; the message names the rule.
    #[error("{0}")]
    Refused(String),
}

/// Messages as a broker delivers them to one consumer.
#[async_trait]
pub trait Subscription: Send {
    /// The next message; `None` once the broker ended the subscription.
    async fn next(&mut self) -> Result<Option<Inbound>, MessagingError>;

    /// Tells the broker the message `token` is taken care of, so it is not delivered
    /// again.
    async fn ack(&mut self, token: u64) -> Result<(), MessagingError>;

    /// Ends a subscription that has consumed what it wanted, so that the broker keeps
    /// nothing more for it. (A subscription dropped without this, as on a crash, is
    /// picked up again by the next run of the same step.)
    async fn close(&mut self) {}
}

/// A local process to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Stable across re-runs of the same attempt (`{execution}:{task key}`): a worker
    /// given the same key again finds the same task instead of starting another.
    pub key: String,
    /// The program; a shell command runs as `sh -c COMMAND sh ARGS...`.
    pub program: String,
    pub arguments: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    /// Run in a container of this image instead: `arguments`, `environment` and
    /// `stdin` are the container's, and `program` is not used.
    pub container: Option<Box<ContainerSpec>>,
}

/// A container to run (`run.container`), as the effects' container engine takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    pub image: String,
    /// The container's name: the task's, or one made from the execution and step key, so
    /// that a resumed attempt finds the container it started instead of a second one.
    pub name: String,
    /// A shell command run with `sh -c` (the arguments after it), instead of the image's.
    pub command: Option<String>,
    /// Host port (or `address:port`) to container port.
    pub ports: Vec<(String, String)>,
    /// Host path (or volume name) to container path.
    pub volumes: Vec<(String, String)>,
    /// `missing`, `always` or `never`.
    pub pull: String,
    pub cleanup: Cleanup,
    /// Labels put on the container, such as the execution it belongs to.
    pub labels: Vec<(String, String)>,
}

/// When a container that ended is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    Always,
    Never,
    /// So long after it ended.
    Eventually(Duration),
}

/// What a process used, as its worker measured it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub memory_gib_seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessOutput {
    /// The exit code; `None` if a signal ended the process.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// What it used, when that was measured.
    pub usage: Option<Usage>,
}

/// Where a process's output goes as it comes, piece by piece: `(stream, text)`, the
/// stream being `stdout` or `stderr`. The whole output is in the result as well.
pub type OutputSink = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How the engine steers a running process.
#[derive(Clone)]
pub struct ProcessControl {
    /// When it fires, the process (and its group) is killed.
    pub cancel: CancellationToken,
    /// While true, the process (and its group) is stopped, to continue when it falls.
    pub paused: tokio::sync::watch::Receiver<bool>,
    /// Output may be handed here as it comes; an implementation that cannot stream it
    /// need not.
    pub output: OutputSink,
}

/// A token of the server's own Google identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GoogleToken {
    /// An ID token for an audience.
    Id { audience: String },
    /// An access token with scopes.
    Access { scopes: Vec<String> },
}

#[async_trait]
pub trait Effects: Send + Sync {
    async fn http(&self, request: HttpRequest) -> Result<HttpResponse, HttpError>;

    /// Sends `request` and, when the response is a `text/event-stream`, hands each
    /// event's data to `sink` as it arrives (the returned body is then empty); any other
    /// response comes back whole, as from [`Effects::http`]. By default the response is
    /// read whole first.
    async fn http_events(
        &self,
        request: HttpRequest,
        sink: EventSink,
    ) -> Result<HttpResponse, HttpError> {
        let mut response = self.http(request).await?;
        let streamed = response
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"));
        if streamed {
            for data in sse_data(&String::from_utf8_lossy(&response.body)) {
                sink(&data);
            }
            response.body.clear();
        }
        Ok(response)
    }

    /// The text of a definition document (a cataloged function) at `request.url`: an
    /// `http(s):` URL (with the request's headers), a `file:` URL, or
    /// `skein-catalog:PATH` in the runtime's own (default) catalog. Implementations may
    /// keep what they fetched for a while; by default every call fetches.
    async fn definition(&self, request: HttpRequest) -> Result<String, HttpError> {
        if !matches!(request.url.scheme(), "http" | "https") {
            return Err(HttpError::Other(format!(
                "this runtime reads no definitions from {}",
                request.url
            )));
        }
        let url = request.url.clone();
        let response = self.http(request).await?;
        if !(200..300).contains(&response.status) {
            return Err(HttpError::Other(format!(
                "HTTP {} from GET {url}",
                response.status
            )));
        }
        String::from_utf8(response.body)
            .map_err(|_| HttpError::Other(format!("{url} is not UTF-8 text")))
    }

    /// Publishes `message` on `channel`, and returns once the broker has it.
    async fn publish(&self, channel: Channel, message: Outbound) -> Result<(), MessagingError> {
        let _ = message;
        Err(MessagingError::Unsupported(format!(
            "this runtime publishes no `{}` messages",
            channel.protocol
        )))
    }

    /// Subscribes to `channel`: messages are delivered until they are acknowledged.
    async fn subscribe(&self, channel: Channel) -> Result<Box<dyn Subscription>, MessagingError> {
        Err(MessagingError::Unsupported(format!(
            "this runtime subscribes to no `{}` channels",
            channel.protocol
        )))
    }

    /// Makes a unary gRPC call and returns the response message as JSON.
    async fn grpc(&self, request: GrpcRequest) -> Result<serde_json::Value, GrpcError> {
        Err(GrpcError::Definition(format!(
            "this runtime makes no gRPC calls (to {}:{})",
            request.host, request.port
        )))
    }

    /// Makes one request to an MCP server and returns its JSON-RPC result.
    async fn mcp(&self, request: McpRequest) -> Result<serde_json::Value, McpError> {
        Err(McpError::Invalid(format!(
            "this runtime makes no MCP calls (`{}`)",
            request.method
        )))
    }

    /// A token of the server's own Google identity, or why there is none.
    async fn google_token(&self, token: GoogleToken) -> Result<String, String> {
        let _ = token;
        Err("this server has no Google identity to take tokens from".into())
    }

    /// Runs a process to its end, under `control`.
    async fn process(
        &self,
        spec: ProcessSpec,
        control: ProcessControl,
    ) -> std::io::Result<ProcessOutput>;

    /// The text of the workflow `namespace/name` at `version` from the catalog, for
    /// `run.workflow`; `None` if the catalog has no such workflow.
    async fn load_workflow(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
    ) -> std::io::Result<Option<String>> {
        let _ = (namespace, name, version);
        Ok(None)
    }
}

/// Wall-clock time for the engine: deadlines are stored as milliseconds since the epoch.
#[async_trait]
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;

    /// Waits until `deadline` (milliseconds since the epoch) has passed.
    async fn sleep_until(&self, deadline: i64);
}

/// The real clock.
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    async fn sleep_until(&self, deadline: i64) {
        let wait = deadline - self.now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }
}

/// Time that tests move by hand: it stands still until [`ManualClock::set`] moves it,
/// and then wakes the sleepers whose deadlines it passed. It knows who sleeps until
/// when, so a test can jump straight to the next deadline
/// ([`ManualClock::next_deadline`]): an hour of backoff takes microseconds.
pub struct ManualClock {
    state: Mutex<Sleepers>,
    /// Rung (with the time) whenever the time moves or a sleeper comes or goes.
    changed: tokio::sync::watch::Sender<i64>,
}

struct Sleepers {
    now: i64,
    /// How many sleep until each deadline.
    until: BTreeMap<i64, usize>,
}

impl ManualClock {
    /// A clock that reads `start` (milliseconds since the epoch) until it is moved.
    pub fn new(start: i64) -> ManualClock {
        ManualClock {
            state: Mutex::new(Sleepers {
                now: start,
                until: BTreeMap::new(),
            }),
            changed: tokio::sync::watch::channel(start).0,
        }
    }

    /// Sets the time; it never goes back.
    pub fn set(&self, to: i64) {
        let now = {
            let mut state = self.state.lock().expect("clock lock");
            state.now = state.now.max(to);
            state.now
        };
        self.changed.send_replace(now);
    }

    /// The earliest deadline anyone sleeps until, once someone sleeps.
    pub async fn next_deadline(&self) -> i64 {
        let mut changed = self.changed.subscribe();
        loop {
            if let Some((&deadline, _)) = self
                .state
                .lock()
                .expect("clock lock")
                .until
                .first_key_value()
            {
                return deadline;
            }
            if changed.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    fn sleeper(&self, deadline: i64, delta: isize) {
        let mut state = self.state.lock().expect("clock lock");
        let count = state.until.entry(deadline).or_default();
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            state.until.remove(&deadline);
        }
        let now = state.now;
        drop(state);
        self.changed.send_replace(now);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.state.lock().expect("clock lock").now
    }

    async fn sleep_until(&self, deadline: i64) {
        /// Takes the sleeper off the books however the sleep ends (a timeout's body
        /// that finished first drops it).
        struct Asleep<'a>(&'a ManualClock, i64);
        impl Drop for Asleep<'_> {
            fn drop(&mut self) {
                self.0.sleeper(self.1, -1);
            }
        }
        let mut changed = self.changed.subscribe();
        if self.now_ms() >= deadline {
            return;
        }
        self.sleeper(deadline, 1);
        let _asleep = Asleep(self, deadline);
        while self.now_ms() < deadline {
            if changed.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// Where new execution ids and random numbers come from.
pub trait Entropy: Send + Sync {
    /// An id for an execution whose client chose none.
    fn execution_id(&self) -> String;

    /// A number in `from..=to` (`from <= to`), such as a retry's jitter.
    fn between(&self, from: i64, to: i64) -> i64;
}

/// Time-ordered UUIDs (v7) and a random generator seeded by the system.
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn execution_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }

    fn between(&self, from: i64, to: i64) -> i64 {
        fastrand::i64(from..=to)
    }
}

/// The same ids (`exec-1`, `exec-2`, …) and numbers on every run, for tests.
pub struct Seeded {
    next_id: AtomicU64,
    rng: Mutex<fastrand::Rng>,
}

impl Seeded {
    pub fn new(seed: u64) -> Seeded {
        Seeded {
            next_id: AtomicU64::new(1),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
        }
    }
}

impl Entropy for Seeded {
    fn execution_id(&self) -> String {
        format!("exec-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn between(&self, from: i64, to: i64) -> i64 {
        self.rng.lock().expect("rng lock").i64(from..=to)
    }
}
