//! Dispatch of processes to workers (`skein worker`, or one embedded in this process):
//! a task goes to the next worker that has room, its output is followed over SSE
//! (resumed by `Last-Event-ID` when the stream breaks), and a cancel is sent on at once.
//!
//! A worker that is busy (429) or shutting down (503) is passed over; when every one is,
//! the task waits for `Retry-After`. A worker that cannot be reached, or is lost in the
//! middle of a task, is passed over too, and the task starts again on another. The task
//! id is the engine's key for the attempt, so a worker asked again for a task it has
//! (after a restart of the engine, say) follows that task instead of starting it twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use engine::{OutputSink, ProcessControl, ProcessOutput, ProcessSpec};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;
use worker::wire::{self, Ending, RunRequest, kind};

/// How long a task waits for room on some worker before it fails.
const PLACEMENT_PATIENCE: Duration = Duration::from_secs(600);

/// Reconnects to a task's stream before its worker counts as lost.
const RECONNECTS: usize = 3;

/// Where processes run.
pub struct Workers {
    client: reqwest::Client,
    urls: Vec<url::Url>,
    token: Option<String>,
    /// Google ID tokens for each worker's URL, sent in `X-Serverless-Authorization`: for
    /// workers on Cloud Run behind IAM (which checks that header and leaves
    /// `Authorization`, the worker token, to the worker).
    google: Option<crate::google::GoogleTokens>,
    next: AtomicUsize,
}

/// What one attempt on one worker came to.
enum Attempt {
    Done(ProcessOutput),
    /// No room there (429 or 503), with the wait it asked for.
    Busy(Duration),
    /// Unreachable, or lost during the task.
    Lost(String),
}

impl Workers {
    /// Workers at `urls` (base URLs such as `http://10.0.0.5:8081`), reached with the
    /// bearer `token` when given.
    pub fn new(urls: Vec<url::Url>, token: Option<String>) -> Workers {
        // The process-wide TLS provider; a second install is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("skein/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with default TLS settings");
        Workers {
            client,
            urls,
            token,
            google: None,
            next: AtomicUsize::new(0),
        }
    }

    /// Also sends a Google ID token for each worker's URL (from the service-account key
    /// or the metadata server, as `runtime::google` finds them) in
    /// `X-Serverless-Authorization`, as Cloud Run's IAM check reads it.
    pub fn with_google_id_tokens(mut self, tokens: crate::google::GoogleTokens) -> Workers {
        self.google = Some(tokens);
        self
    }

    /// A request to `url` on the worker at `base`: the worker token, the trace, and a
    /// Google ID token for the worker's URL when asked for. That token is taken from the
    /// cache (renewed five minutes before it expires) for every request, so that a
    /// reconnection or a pause an hour into a task still passes Cloud Run's IAM check.
    async fn request(
        &self,
        method: reqwest::Method,
        base: &url::Url,
        url: url::Url,
    ) -> std::io::Result<reqwest::RequestBuilder> {
        let mut request = self.client.request(method, url);
        if let Some(google) = &self.google {
            let audience = base.as_str().trim_end_matches('/').to_string();
            let token = google
                .token(engine::GoogleToken::Id {
                    audience: audience.clone(),
                })
                .await
                .map_err(|e| {
                    std::io::Error::other(format!(
                        "no Google ID token for the worker {audience}: {e}"
                    ))
                })?;
            request = request.header("x-serverless-authorization", format!("Bearer {token}"));
        }
        // The task's span, for the worker to join.
        for (name, value) in crate::trace::headers() {
            request = request.header(name, value);
        }
        Ok(match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    /// Each worker's `/metrics` text (its slots, running and finished tasks), or why it
    /// did not answer within `wait`: for the dashboard's picture of the workers.
    pub async fn metrics(&self, wait: Duration) -> Vec<(String, Result<String, String>)> {
        let asks = self.urls.iter().map(|base| async move {
            let answer = async {
                let url = base.join("metrics").map_err(|e| e.to_string())?;
                let request = (self.request(reqwest::Method::GET, base, url).await)
                    .map_err(|e| e.to_string())?;
                let response = (request.timeout(wait).send().await).map_err(|e| e.to_string())?;
                let status = response.status();
                let text = response.text().await.map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(text)
                } else {
                    Err(format!(
                        "{status}: {}",
                        text.chars().take(200).collect::<String>()
                    ))
                }
            };
            (base.to_string(), answer.await)
        });
        futures::future::join_all(asks).await
    }

    /// Runs `spec` on some worker to its end, or until `cancel`.
    pub(crate) async fn run(
        &self,
        spec: &ProcessSpec,
        control: &ProcessControl,
    ) -> std::io::Result<ProcessOutput> {
        let cancel = &control.cancel;
        if self.urls.is_empty() {
            return Err(std::io::Error::other("no workers are configured"));
        }
        let body = serde_json::to_string(&RunRequest {
            id: Some(spec.key.clone()),
            command: Some(spec.program.clone()),
            args: spec.arguments.clone(),
            env: spec.environment.iter().cloned().collect(),
            stdin: spec
                .stdin
                .as_ref()
                .map(|s| String::from_utf8_lossy(s).into_owned()),
            ..RunRequest::default()
        })
        .map_err(std::io::Error::other)?;
        let began = tokio::time::Instant::now();
        let mut lost = Vec::new();
        loop {
            // One round over the workers, starting at the next in turn.
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let mut wait = None;
            for i in 0..self.urls.len() {
                let base = &self.urls[(start + i) % self.urls.len()];
                match self.attempt(base, &spec.key, &body, control).await? {
                    Attempt::Done(output) => return Ok(output),
                    Attempt::Busy(after) => {
                        wait = Some(wait.map_or(after, |w: Duration| w.min(after)))
                    }
                    Attempt::Lost(why) => lost.push(format!("{base}: {why}")),
                }
                if cancel.is_cancelled() {
                    return Ok(cancelled());
                }
            }
            let Some(wait) = wait else {
                return Err(std::io::Error::other(format!(
                    "no worker could run the task: {}",
                    lost.join("; ")
                )));
            };
            if began.elapsed() > PLACEMENT_PATIENCE {
                return Err(std::io::Error::other(format!(
                    "every worker stayed busy for {PLACEMENT_PATIENCE:?}"
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return Ok(cancelled()),
            }
        }
    }

    /// One attempt on the worker at `base`, cancelled there when `cancel` fires or when
    /// it is dropped unfinished, also while the task is being started.
    async fn attempt(
        &self,
        base: &url::Url,
        id: &str,
        body: &str,
        control: &ProcessControl,
    ) -> std::io::Result<Attempt> {
        let cancel = join(base, &["run", id, "cancel"]);
        let mut stop = Stop {
            request: Some(
                self.request(reqwest::Method::POST, base, cancel.clone())
                    .await?,
            ),
        };
        tokio::select! {
            attempt = self.follow(base, id, body, &control.output) => {
                // A task given up on as lost may still run there: the guard, kept armed,
                // tells the worker to stop it.
                if !matches!(attempt, Ok(Attempt::Lost(_))) {
                    stop.request = None;
                }
                attempt
            }
            never = self.forward_pauses(base, id, control.paused.clone()) => match never {},
            _ = control.cancel.cancelled() => {
                // Sent at once, not left to a heartbeat; the worker kills the group. The
                // guard stays armed meanwhile: the cancel that fired here may also drop
                // this future, and then the guard sends it (with the credentials of the
                // attempt's start; this one takes fresh ones).
                let fresh = self.request(reqwest::Method::POST, base, cancel).await.ok();
                let request = fresh.or_else(|| stop.request.as_ref().and_then(|r| r.try_clone()));
                if let Some(request) = request {
                    send_retrying(request).await;
                }
                stop.request = None;
                Ok(Attempt::Done(cancelled()))
            }
        }
    }

    /// Pauses the task on the worker at `base` while `paused` is true, and resumes it when
    /// it falls; never returns.
    async fn forward_pauses(
        &self,
        base: &url::Url,
        id: &str,
        mut paused: tokio::sync::watch::Receiver<bool>,
    ) -> std::convert::Infallible {
        let mut sent = false;
        loop {
            let pause = *paused.borrow_and_update();
            if pause != sent {
                let verb = if pause { "pause" } else { "resume" };
                let url = join(base, &["run", id, verb]);
                match self.request(reqwest::Method::POST, base, url).await {
                    Ok(request) => send_retrying(request).await,
                    Err(e) => tracing::warn!("cannot {verb} task {id} on {base}: {e}"),
                }
                sent = pause;
            }
            if paused.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Starts the task on the worker at `base` and follows it to its end.
    async fn follow(
        &self,
        base: &url::Url,
        id: &str,
        body: &str,
        sink: &OutputSink,
    ) -> std::io::Result<Attempt> {
        let started = (self
            .request(reqwest::Method::POST, base, join(base, &["run"]))
            .await?)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let response = match started {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Lost(e.to_string())),
        };
        let status = response.status().as_u16();
        match status {
            200 | 202 => {}
            429 | 503 => {
                let after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                return Ok(Attempt::Busy(Duration::from_secs(after.clamp(1, 60))));
            }
            500..=599 => return Ok(Attempt::Lost(format!("answered {status}"))),
            _ => {
                let text = response.text().await.unwrap_or_default();
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(String::from))
                    .unwrap_or(text);
                return Err(std::io::Error::other(format!(
                    "the worker {base} refused the task ({status}): {message}"
                )));
            }
        }
        let events = join(base, &["run", id, "events"]);
        let followed = async {
            let mut output = ProcessOutput::default();
            let mut last: Option<String> = None;
            let mut failures = 0;
            loop {
                let mut request = match self
                    .request(reqwest::Method::GET, base, events.clone())
                    .await
                {
                    Ok(request) => request,
                    Err(e) => return Attempt::Lost(e.to_string()),
                };
                if let Some(last) = &last {
                    request = request.header("last-event-id", last);
                }
                let stream = match request.send().await {
                    Ok(r) if r.status().is_success() => r.bytes_stream().eventsource(),
                    Ok(r) => {
                        // The worker no longer knows the task: it restarted.
                        return Attempt::Lost(format!("the task's events answered {}", r.status()));
                    }
                    Err(e) => {
                        failures += 1;
                        if failures > RECONNECTS {
                            return Attempt::Lost(e.to_string());
                        }
                        tokio::time::sleep(Duration::from_millis(200 << failures)).await;
                        continue;
                    }
                };
                futures::pin_mut!(stream);
                while let Some(event) = stream.next().await {
                    let Ok(event) = event else {
                        break;
                    };
                    last = Some(event.id.clone());
                    failures = 0;
                    match event.event.as_str() {
                        kind::OUTPUT => {
                            let piece = match serde_json::from_str::<wire::Output>(&event.data) {
                                Ok(piece) => piece,
                                Err(e) => {
                                    return Attempt::Lost(format!("a malformed output event: {e}"));
                                }
                            };
                            let stream = if piece.stream == "stderr" {
                                output.stderr.extend_from_slice(piece.text.as_bytes());
                                "stderr"
                            } else {
                                output.stdout.extend_from_slice(piece.text.as_bytes());
                                "stdout"
                            };
                            sink(stream, &piece.text);
                        }
                        kind::EXIT => {
                            let exit = match serde_json::from_str::<wire::Exit>(&event.data) {
                                Ok(exit) => exit,
                                Err(e) => {
                                    return Attempt::Lost(format!("a malformed exit event: {e}"));
                                }
                            };
                            output.code = exit.code;
                            output.usage = Some(engine::Usage {
                                cpu_seconds: exit.usage.cpu_seconds,
                                memory_gib_seconds: exit.usage.memory_gib_seconds,
                            });
                            if exit.status == Ending::Killed {
                                // The worker shut down under the task: run it elsewhere.
                                return Attempt::Lost("it shut down during the task".into());
                            }
                            return Attempt::Done(output);
                        }
                        _ => {}
                    }
                }
                failures += 1;
                if failures > RECONNECTS {
                    return Attempt::Lost("its event stream kept breaking".into());
                }
            }
        };
        Ok(followed.await)
    }
}

/// A task's cancel request, sent on a task of its own if dropped unsent: the attempt
/// was dropped (its branch lost a race, say) before the task ended.
struct Stop {
    request: Option<reqwest::RequestBuilder>,
}

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(request) = self.request.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(send_retrying(request));
        }
    }
}

/// Sends a cancel, pause or resume. A 404 may mean the start is still on its way: it is
/// tried again for a few seconds.
async fn send_retrying(request: reqwest::RequestBuilder) {
    for _ in 0..15 {
        let Some(attempt) = request.try_clone() else {
            return;
        };
        match attempt.send().await {
            Ok(r) if r.status().as_u16() == 404 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => return,
        }
    }
}

fn cancelled() -> ProcessOutput {
    ProcessOutput {
        stderr: b"cancelled".to_vec(),
        ..ProcessOutput::default()
    }
}

/// `base` with `segments` appended, each percent-encoded.
fn join(base: &url::Url, segments: &[&str]) -> url::Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("a worker URL is http(s)")
        .pop_if_empty()
        .extend(segments);
    url
}
