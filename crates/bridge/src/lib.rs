//! `skein bridge`: follows skein's event stream (`GET /v1/events`), forwards every event
//! that carries a tool call to a consumer's `POST /sessions/stream`, and posts the
//! consumer's result back to the execution as a CloudEvent, where a `listen` task takes
//! it.
//!
//! Delivery is at least once and in log order, one tool call at a time. The replay
//! cursor (a position in skein's log) is saved in the working directory as soon as the
//! consumer has acknowledged an event, together with the result still to post back, so
//! a restarted bridge neither loses a result nor sends an acknowledged event again.
//! Between the consumer's answer and that save there is a window of a few
//! microseconds; an event caught in it is sent again with the same `Idempotency-Key`.
//!
//! **API boundary:** this crate speaks HTTP to skein and to the consumer; it knows
//! nothing of skein's internals beyond the REST API's wire format.

pub mod auth;
pub mod cursor;
pub mod workdir;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;

use auth::Credentials;
use cursor::{Callback, CursorFile, Saved};
pub use workdir::Context;

/// How often the cursor is saved while only events without tool calls go by.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Everything the bridge runs with.
pub struct Config {
    /// skein's base URL (`WORKFLOWS_BASE_URL`).
    pub workflows_base_url: Url,
    /// The audience of ID tokens for skein (`WORKFLOWS_AUDIENCE`).
    pub workflows_audience: String,
    /// The consumer's base URL (`CONSUMER_BASE_URL`).
    pub consumer_base_url: Url,
    /// The audience of ID tokens for the consumer.
    pub consumer_audience: String,
    pub workflows_credentials: Credentials,
    pub consumer_credentials: Credentials,
    pub context: Context,
    /// Where to start when no cursor is saved: after this log position (`SINCE_ID`)...
    pub since_id: Option<u64>,
    /// ...or at this time (`SINCE_TIME`, RFC 3339); neither: from the bridge's start.
    pub since_time: Option<jiff::Timestamp>,
    /// The longest silence on the stream (not even a heartbeat) before reconnecting.
    pub heartbeat: Duration,
    /// The first wait before reconnecting or redelivering, doubled on each failure.
    pub reconnect_backoff: Duration,
    pub max_backoff: Duration,
    pub work_root: PathBuf,
    pub work_prefix_template: String,
    /// The CloudEvent type of the results posted back.
    pub result_type: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Workdir(#[from] workdir::Error),
    #[error("cannot read the saved cursor: {0}")]
    Cursor(std::io::Error),
}

/// What a bridge has done so far, read live by `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct Counters {
    delivered: AtomicU64,
    results: AtomicU64,
    failures: AtomicU64,
    /// The position of the last event passed (0 before the first).
    position: AtomicU64,
    /// Whether the event stream is open now.
    connected: AtomicBool,
}

impl Counters {
    pub fn stats(&self) -> Stats {
        Stats {
            delivered: self.delivered.load(Ordering::Relaxed),
            results: self.results.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text format.
    pub fn prometheus(&self) -> String {
        use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
        let mut registry = prometheus_client::registry::Registry::default();
        let stats = self.stats();
        let counters = [
            (
                "skein_bridge_tool_calls_delivered",
                "Tool calls the consumer acknowledged",
                stats.delivered,
            ),
            (
                "skein_bridge_results_posted",
                "Results posted back to executions",
                stats.results,
            ),
            (
                "skein_bridge_failures",
                "Failed attempts, each retried",
                stats.failures,
            ),
        ];
        for (name, help, value) in counters {
            let counter = Counter::<u64>::default();
            counter.inc_by(value);
            registry.register(name, help, counter);
        }
        let gauges = [
            (
                "skein_bridge_position",
                "The position of the last event passed",
                self.position() as i64,
            ),
            (
                "skein_bridge_connected",
                "1 while the event stream is open",
                i64::from(self.connected()),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = Gauge::<i64>::default();
            gauge.set(value);
            registry.register(name, help, gauge);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// What a bridge did, reported when it stops.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Tool calls the consumer acknowledged.
    pub delivered: u64,
    /// Results posted back to skein.
    pub results: u64,
    /// Failed attempts (each retried).
    pub failures: u64,
}

pub struct Bridge {
    config: Config,
    http: reqwest::Client,
    cursor: CursorFile,
    saved: Saved,
    /// The position to resume after; `None` before the first event when there was no
    /// cursor and no `SINCE_ID`.
    after: Option<u64>,
    /// Where to start without a position.
    since_time: jiff::Timestamp,
    dirty: bool,
    saved_at: Instant,
    stats: Arc<Counters>,
}

/// Why a stream stopped.
enum Stop {
    Shutdown,
    Failed(String),
}

/// The bridge was told to stop.
struct Shutdown;

impl Bridge {
    /// Resolves and prepares the working directory (refusing values that would escape
    /// it), and reads the saved cursor. Without a usable work root it goes on without
    /// persistence, and says so.
    pub fn new(config: Config, http: reqwest::Client) -> Result<Bridge, Error> {
        let dir = workdir::resolve(
            &config.work_root,
            &config.work_prefix_template,
            &config.context,
        )?;
        let dir = match workdir::prepare(&config.work_root, &dir)? {
            Ok(dir) => Some(dir),
            Err(why) => {
                tracing::warn!(
                    "running without persistence ({why}): a restart starts \
                     again from SINCE_ID, SINCE_TIME or the present"
                );
                None
            }
        };
        let cursor = CursorFile::new(dir);
        let loaded = cursor.load().map_err(Error::Cursor)?;
        let after = match &loaded {
            Some(saved) => Some(saved.after),
            None => config.since_id,
        };
        if let (Some(saved), Some(path)) = (&loaded, cursor.path()) {
            tracing::info!(
                "resuming after event {} (cursor {})",
                saved.after,
                path.display()
            );
        }
        Ok(Bridge {
            since_time: config.since_time.unwrap_or_else(jiff::Timestamp::now),
            config,
            http,
            cursor,
            saved: loaded.unwrap_or_default(),
            after,
            dirty: false,
            saved_at: Instant::now(),
            stats: Arc::default(),
        })
    }

    /// The live counters, for `/metrics`.
    pub fn counters(&self) -> Arc<Counters> {
        self.stats.clone()
    }

    /// The directory the cursor is saved in, if any.
    pub fn cursor_path(&self) -> Option<&std::path::Path> {
        self.cursor.path()
    }

    /// Bridges until `shutdown`, reconnecting whenever the stream breaks.
    pub async fn run(mut self, shutdown: CancellationToken) -> Stats {
        if let Some(callback) = self.saved.pending.clone() {
            // Acknowledged before a crash, not yet posted back.
            if self.post_result(&callback, &shutdown).await.is_err() {
                return self.stats.stats();
            }
            self.saved.pending = None;
            self.save();
        }
        let mut backoff = self.config.reconnect_backoff;
        loop {
            let before = self.after;
            match self.follow(&shutdown).await {
                Stop::Shutdown => break,
                Stop::Failed(why) => {
                    self.stats.connected.store(false, Ordering::Relaxed);
                    Counters::count(&self.stats.failures);
                    if self.after != before {
                        backoff = self.config.reconnect_backoff;
                    }
                    tracing::warn!(
                        "the event stream stopped ({why}); reconnecting in {} ms",
                        backoff.as_millis()
                    );
                }
            }
            if self.pause(backoff, &shutdown).await {
                break;
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
        if self.dirty {
            self.save();
        }
        self.stats.connected.store(false, Ordering::Relaxed);
        self.stats.stats()
    }

    /// Sleeps for about `backoff` (with jitter); true if shut down meanwhile.
    async fn pause(&self, backoff: Duration, shutdown: &CancellationToken) -> bool {
        let half = backoff / 2;
        let delay = half + half.mul_f64(fastrand::f64());
        tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(delay) => false,
        }
    }

    /// One connection to the event stream, followed until it breaks.
    async fn follow(&mut self, shutdown: &CancellationToken) -> Stop {
        let mut url = match self.config.workflows_base_url.join("v1/events") {
            Ok(url) => url,
            Err(e) => return Stop::Failed(e.to_string()),
        };
        match self.after {
            Some(after) => url
                .query_pairs_mut()
                .append_pair("since_id", &after.to_string()),
            None => url
                .query_pairs_mut()
                .append_pair("since_time", &self.since_time.to_string()),
        };
        let mut request = self.http.get(url).header("accept", "text/event-stream");
        match self
            .config
            .workflows_credentials
            .token(&self.config.workflows_audience)
            .await
        {
            Ok(Some(token)) => request = request.bearer_auth(token),
            Ok(None) => {}
            Err(e) => return Stop::Failed(e.to_string()),
        }
        // A server that accepts the connection and then says nothing is as good as gone.
        let response = tokio::select! {
            _ = shutdown.cancelled() => return Stop::Shutdown,
            response = tokio::time::timeout(self.config.heartbeat, request.send()) => response,
        };
        let response = match response {
            Err(_) => {
                return Stop::Failed(format!(
                    "no answer within {} ms (EVENTS_HEARTBEAT_MS)",
                    self.config.heartbeat.as_millis()
                ));
            }
            Ok(Ok(r)) if r.status().is_success() => r,
            Ok(Ok(r)) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                return Stop::Failed(format!("skein answered {status}: {}", body.trim()));
            }
            Ok(Err(e)) => return Stop::Failed(format!("cannot reach skein: {e}")),
        };
        self.stats.connected.store(true, Ordering::Relaxed);
        // Every chunk, heartbeats included, must come within the heartbeat timeout.
        let heartbeat = self.config.heartbeat;
        let chunks = futures::stream::unfold(response.bytes_stream(), move |mut body| async move {
            match tokio::time::timeout(heartbeat, body.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(|e| e.to_string()), body)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(format!(
                        "nothing, not even a heartbeat, for {} ms (EVENTS_HEARTBEAT_MS)",
                        heartbeat.as_millis()
                    )),
                    body,
                )),
            }
        });
        let mut events = Box::pin(eventsource_stream::EventStream::new(chunks));
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Stop::Shutdown,
                next = events.next() => next,
                // Quiet for a while after events without tool calls: save how far.
                _ = tokio::time::sleep(SAVE_EVERY), if self.dirty => {
                    self.save();
                    continue;
                }
            };
            let event = match next {
                None => return Stop::Failed("skein closed the stream".into()),
                Some(Err(e)) => return Stop::Failed(e.to_string()),
                Some(Ok(event)) => event,
            };
            let Ok(pos) = event.id.parse::<u64>() else {
                continue;
            };
            if self.after.is_some_and(|after| pos <= after) {
                continue;
            }
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if let Some(call) = ToolCall::of(&data) {
                if self.forward(pos, &call, shutdown).await {
                    return Stop::Shutdown;
                }
            } else {
                self.after = Some(pos);
                self.stats.position.store(pos, Ordering::Relaxed);
                self.saved.after = pos;
                self.dirty = true;
                if self.saved_at.elapsed() >= SAVE_EVERY {
                    self.save();
                }
            }
        }
    }

    /// Delivers one tool call to the consumer (again and again until it accepts), saves
    /// the cursor past it, then posts the result back. True if shut down meanwhile.
    async fn forward(&mut self, pos: u64, call: &ToolCall, shutdown: &CancellationToken) -> bool {
        let mut backoff = self.config.reconnect_backoff;
        let result = loop {
            match self.deliver(call).await {
                Ok(result) => break result,
                Err(why) => {
                    Counters::count(&self.stats.failures);
                    tracing::warn!(
                        "the consumer did not take tool call {} ({why}); \
                         sending it again in {} ms",
                        call.key,
                        backoff.as_millis()
                    );
                }
            }
            if self.pause(backoff, shutdown).await {
                return true;
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        };
        Counters::count(&self.stats.delivered);
        let pending = result.map(|result| Callback {
            execution: call.execution.clone(),
            event: json!({
                "specversion": "1.0",
                "id": format!("{}/result", call.key),
                "source": "skein-bridge",
                "type": self.config.result_type,
                "subject": call.call_id,
                "datacontenttype": "application/json",
                "data": {"tool_call_id": call.call_id, "result": result},
            }),
        });
        self.after = Some(pos);
        self.stats.position.store(pos, Ordering::Relaxed);
        self.saved = Saved {
            after: pos,
            pending: pending.clone(),
        };
        self.save();
        tracing::info!(
            "delivered tool call {} of {} (event {pos})",
            call.key,
            call.execution
        );
        if let Some(callback) = pending {
            if self.post_result(&callback, shutdown).await.is_err() {
                return true;
            }
            self.saved.pending = None;
            self.save();
        }
        false
    }

    /// One attempt to deliver `call`: the consumer's result, if it gave one.
    async fn deliver(&self, call: &ToolCall) -> Result<Option<Value>, String> {
        let url = self
            .config
            .consumer_base_url
            .join("sessions/stream")
            .map_err(|e| e.to_string())?;
        let context = &self.config.context;
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("idempotency-key", &call.key)
            .header("x-user-id", &context.user_id)
            .header("x-project-id", &context.project_id)
            .body(serde_json::to_vec(&call.body).expect("JSON serializes"));
        if let Some(workspace) = &context.workspace_id {
            request = request.header("x-workspace-id", workspace);
        }
        if let Some(session) = &context.session_id {
            request = request.header("x-session-id", session);
        }
        if let Some(token) = self
            .config
            .consumer_credentials
            .token(&self.config.consumer_audience)
            .await
            .map_err(|e| e.to_string())?
        {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok(answer.get("result").cloned())
    }

    /// Posts a result to its execution, retrying until skein takes it (or says the
    /// execution is gone or over, which is logged: nobody waits for it any more).
    async fn post_result(
        &mut self,
        callback: &Callback,
        shutdown: &CancellationToken,
    ) -> Result<(), Shutdown> {
        let mut backoff = self.config.reconnect_backoff;
        loop {
            match self.post_once(callback).await {
                Ok(true) => {
                    Counters::count(&self.stats.results);
                    return Ok(());
                }
                Ok(false) => return Ok(()),
                Err(why) => {
                    Counters::count(&self.stats.failures);
                    tracing::warn!(
                        "cannot post the result to execution {} ({why}); \
                         trying again in {} ms",
                        callback.execution,
                        backoff.as_millis()
                    );
                }
            }
            if self.pause(backoff, shutdown).await {
                return Err(Shutdown);
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    async fn post_once(&self, callback: &Callback) -> Result<bool, String> {
        let mut url = self
            .config
            .workflows_base_url
            .join("v1/executions/")
            .map_err(|e| e.to_string())?;
        url.path_segments_mut()
            .map_err(|()| "the base URL cannot have paths".to_string())?
            .pop_if_empty()
            .push(&callback.execution)
            .push("events");
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&callback.event).expect("JSON serializes"));
        if let Some(token) = self
            .config
            .workflows_credentials
            .token(&self.config.workflows_audience)
            .await
            .map_err(|e| e.to_string())?
        {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(true),
            404 | 409 => {
                let body = response.text().await.unwrap_or_default();
                tracing::warn!(
                    "dropped the result for execution {}: {}",
                    callback.execution,
                    body.trim()
                );
                Ok(false)
            }
            _ => Err(format!(
                "{status}: {}",
                response.text().await.unwrap_or_default().trim()
            )),
        }
    }

    /// Saves the cursor; a failure is logged and the bridge goes on (it may then
    /// deliver again after a restart, with the same idempotency keys).
    fn save(&mut self) {
        match self.cursor.save(&self.saved) {
            Ok(()) => {
                self.dirty = false;
                self.saved_at = Instant::now();
            }
            Err(e) => tracing::warn!("cannot save the cursor: {e}"),
        }
    }
}

/// A tool call found in an event of skein's stream.
#[derive(Debug)]
struct ToolCall {
    execution: String,
    /// The idempotency key: the emitted CloudEvent's id.
    key: String,
    /// The tool call's own id, if it has one (else the key): the result's subject.
    call_id: String,
    /// What the consumer gets: the emitted CloudEvent, with the execution's id as the
    /// `skeinexecution` extension attribute.
    body: Value,
}

impl ToolCall {
    /// The tool call of an event of skein's stream (a CloudEvent whose data is the
    /// emitted CloudEvent), if its data has a `tool_call`.
    fn of(event: &Value) -> Option<ToolCall> {
        let emitted = event.get("data")?;
        let tool_call = emitted
            .get("data")
            .and_then(|d| d.get("tool_call"))
            .or_else(|| emitted.get("tool_call"))?;
        let execution = event.get("subject")?.as_str()?.to_string();
        let key = emitted
            .get("id")
            .and_then(Value::as_str)
            .or_else(|| event.get("id").and_then(Value::as_str))?
            .to_string();
        let call_id = match tool_call.get("id") {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => key.clone(),
        };
        let mut body = emitted.clone();
        if let Some(map) = body.as_object_mut() {
            map.insert("skeinexecution".into(), Value::String(execution.clone()));
        }
        Some(ToolCall {
            execution,
            key,
            call_id,
            body,
        })
    }
}
