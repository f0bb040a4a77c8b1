//! Progress callbacks: every execution's progress reported to a remote gRPC service
//! (`skein.v1.ProgressCallback`, `proto/skein/v1/callback.proto`) that skein calls.
//!
//! The outbox is the journal itself: a state change and its events commit in one
//! transaction, and each report is made from one event, so a report cannot be lost
//! between the two. This component reads the log of all executions, turns the events
//! that are progress into reports, and delivers them, one execution at a time in
//! order and different executions side by side. Named cursors in the store say how far
//! it got: per execution the last event reported and the number of reports so far (the
//! reports' `sequence`), and overall a log position before which everything was handled,
//! so that a restarted server resumes where it stood.
//!
//! A failed delivery is retried with exponential backoff and jitter, for as long as the
//! report is younger than `max_age`; then it is dropped, counted and logged. The
//! engine never waits for any of this: a callback service that is down or slow delays
//! only the reports.
//!
//! Servers that share a database take turns ([`Turn`]): the one holding the store's
//! named lease `callbacks` reports for all, and when it stops renewing it another
//! takes over from the saved cursors (resending at most what was in flight).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::events::Lifecycle;
use serde_json::{Value, json};
use store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::Metrics;
use crate::grpc::pb;
use crate::grpc::pb::progress_callback_client::ProgressCallbackClient;

/// The cursor of the whole log: every event before `pos` was handled.
const LOG_CURSOR: &str = "callbacks";

/// Reports read ahead of delivery, at most; the log is read on as they are delivered.
const READ_AHEAD: usize = 10_000;

/// How often the log cursor is saved while reports are being delivered.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Where and how to report.
#[derive(Clone, Debug)]
pub struct Options {
    /// `host:port`, or a URL (`https://host:port`, `http://host:port`).
    pub endpoint: String,
    /// Sent as `authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// TLS for an endpoint given as `host:port` (a URL's scheme decides for itself).
    pub tls: bool,
    /// PEM certificates to trust besides the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// How long a report is retried before it is dropped, from the event's time.
    pub max_age: Duration,
    /// The first retry delay, doubled on each failure up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long one call may take.
    pub timeout: Duration,
    /// With a database shared by several servers: report only while this server holds
    /// the turn.
    pub turn: Option<Turn>,
}

/// Which server reports, among several on one database.
#[derive(Clone, Debug)]
pub struct Turn {
    /// This server's name: the owner of the `callbacks` lease while it reports.
    pub owner: String,
    /// How long the lease lasts unrenewed: how long reports wait after the reporting
    /// server died. It is renewed every third of that.
    pub lease: Duration,
}

impl Options {
    pub fn new(endpoint: impl Into<String>) -> Options {
        Options {
            endpoint: endpoint.into(),
            api_key: None,
            tls: true,
            ca_pem: None,
            max_age: Duration::from_secs(24 * 3600),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            turn: None,
        }
    }

    /// The endpoint as a URL.
    pub fn url(&self) -> String {
        if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else {
            let scheme = if self.tls { "https" } else { "http" };
            format!("{scheme}://{}", self.endpoint)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the callback endpoint `{0}` is not usable: {1}")]
    Endpoint(String, tonic::transport::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The component that delivers progress reports; see the module's documentation.
pub struct Callbacks {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    options: Arc<Options>,
    client: ProgressCallbackClient<Channel>,
    /// The log position to read after.
    start: u64,
}

impl Callbacks {
    /// Prepares delivery: checks the endpoint, and finds where reporting stood. The
    /// first time (no cursor yet) reports begin with the events committed from now on.
    /// Call it before executions start running, so that none of their events is missed.
    pub async fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        options: Options,
    ) -> Result<Callbacks, Error> {
        let url = options.url();
        let endpoint_error = |e| Error::Endpoint(options.endpoint.clone(), e);
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(endpoint_error)?
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(5));
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &options.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            endpoint = endpoint.tls_config(tls).map_err(endpoint_error)?;
        }
        let client = ProgressCallbackClient::new(endpoint.connect_lazy());
        let start = match store.cursor(LOG_CURSOR).await? {
            Some(cursor) => cursor["pos"].as_u64().unwrap_or(0),
            None => {
                let end = store
                    .log(store::LogQuery {
                        limit: 0,
                        ..Default::default()
                    })
                    .await?
                    .scanned;
                store
                    .set_cursors(vec![(LOG_CURSOR.into(), json!({"pos": end}))])
                    .await?;
                end
            }
        };
        Ok(Callbacks {
            store,
            metrics,
            options: Arc::new(options),
            client,
            start,
        })
    }

    /// Delivers reports until `shutdown` (with a [`Turn`], while this server's turn
    /// lasts). Reports in flight then are delivered again at the next start.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), store::Error> {
        let Some(turn) = self.options.turn.clone() else {
            return self.deliver(self.start, shutdown).await;
        };
        let lease_ms = turn.lease.as_millis().min(i64::MAX as u128) as store::Millis;
        let renew = turn.lease / 3;
        loop {
            while !patiently(|| self.store.hold(LOG_CURSOR, &turn.owner, lease_ms)).await? {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(renew) => {}
                }
            }
            tracing::info!("progress callbacks: {} reports now", turn.owner);
            // Another server may have moved the cursor since.
            let start = patiently(|| self.store.cursor(LOG_CURSOR))
                .await?
                .and_then(|c| c["pos"].as_u64())
                .unwrap_or(self.start);
            let stint = shutdown.child_token();
            let keep = async {
                let mut held = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(renew).await;
                    match self.store.hold(LOG_CURSOR, &turn.owner, lease_ms).await {
                        Ok(true) => held = tokio::time::Instant::now(),
                        Ok(false) => return,
                        // Past the lease another server may report already.
                        Err(_) if held.elapsed() >= turn.lease => return,
                        Err(_) => {}
                    }
                }
            };
            tokio::select! {
                delivered = self.deliver(start, stint.clone()) => delivered?,
                () = keep => {
                    // The lanes stop with their token; the next holder resends what
                    // they had in flight.
                    stint.cancel();
                    tracing::info!("progress callbacks: {} no longer reports", turn.owner);
                }
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Delivers reports from log position `start` until `shutdown`.
    async fn deliver(&self, start: u64, shutdown: CancellationToken) -> Result<(), store::Error> {
        let mut notices = self.store.subscribe();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
        let mut lanes: HashMap<String, mpsc::UnboundedSender<Item>> = HashMap::new();
        // Positions of reports queued and not yet delivered or dropped.
        let mut outstanding = BTreeSet::new();
        let mut scanned = start;
        let mut saved = start;
        let mut saved_at = tokio::time::Instant::now();
        loop {
            let mut more = false;
            if outstanding.len() < READ_AHEAD {
                let query = store::LogQuery {
                    after: scanned,
                    limit: crate::stream::PAGE,
                    ..Default::default()
                };
                let page = patiently(|| self.store.log(query.clone())).await?;
                more = page.events.len() == crate::stream::PAGE;
                scanned = page.scanned;
                for logged in page.events {
                    let Some(report) = report_of(&logged.event) else {
                        continue;
                    };
                    let last = report.event_type.starts_with("workflow_")
                        && matches!(report.status, "completed" | "failed" | "cancelled");
                    let lane = lanes
                        .entry(logged.execution.clone())
                        .or_insert_with(|| self.lane(&logged.execution, &done_tx, &shutdown));
                    outstanding.insert(logged.pos);
                    let _ = lane.send(Item {
                        pos: logged.pos,
                        seq: logged.event.seq,
                        time: logged.event.time,
                        report,
                    });
                    // The execution has ended: its lane ends once it has delivered all.
                    if last {
                        lanes.remove(&logged.execution);
                    }
                }
            }
            let safe = outstanding.first().map_or(scanned, |p| p - 1);
            if safe > saved && (outstanding.is_empty() || saved_at.elapsed() >= SAVE_EVERY) {
                patiently(|| {
                    self.store
                        .set_cursors(vec![(LOG_CURSOR.into(), json!({"pos": safe}))])
                })
                .await?;
                saved = safe;
                saved_at = tokio::time::Instant::now();
            }
            if more && outstanding.len() < READ_AHEAD {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                // New commits (or missed notices): read the log again.
                _ = notices.recv() => {}
                Some(pos) = done_rx.recv() => {
                    outstanding.remove(&pos);
                    while let Ok(pos) = done_rx.try_recv() {
                        outstanding.remove(&pos);
                    }
                }
                // Saves the cursor that the last deliveries moved.
                _ = tokio::time::sleep(SAVE_EVERY) => {}
            }
        }
    }

    /// Starts the lane that delivers the reports of `execution`, in order.
    fn lane(
        &self,
        execution: &str,
        done: &mpsc::UnboundedSender<u64>,
        shutdown: &CancellationToken,
    ) -> mpsc::UnboundedSender<Item> {
        let (tx, rx) = mpsc::unbounded_channel();
        let lane = Lane {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            options: self.options.clone(),
            client: self.client.clone(),
            execution: execution.to_string(),
            done: done.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = lane.run(rx).await {
                tracing::warn!("progress callbacks: {e}");
            }
        });
        tx
    }
}

/// One report to deliver: the event it comes from and what it says.
struct Item {
    pos: u64,
    seq: u64,
    time: store::Millis,
    report: Report,
}

struct Lane {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    options: Arc<Options>,
    client: ProgressCallbackClient<Channel>,
    execution: String,
    done: mpsc::UnboundedSender<u64>,
    shutdown: CancellationToken,
}

impl Lane {
    async fn run(self, mut items: mpsc::UnboundedReceiver<Item>) -> Result<(), store::Error> {
        let name = format!("{LOG_CURSOR}/{}", self.execution);
        let cursor = patiently(|| self.store.cursor(&name))
            .await?
            .unwrap_or(Value::Null);
        let mut reported_seq = cursor["seq"].as_u64().unwrap_or(0);
        let mut sent = cursor["sent"].as_i64().unwrap_or(0);
        let (workflow_name, project) =
            match patiently(|| self.store.execution(&self.execution)).await? {
                Some(e) => (
                    crate::grpc::qualified_name(&e.namespace, &e.name, &e.version),
                    e.project,
                ),
                None => (String::new(), String::new()),
            };
        while let Some(item) = items.recv().await {
            // Reported before a restart.
            if item.seq <= reported_seq {
                let _ = self.done.send(item.pos);
                continue;
            }
            let report = pb::ProgressEvent {
                execution_id: self.execution.clone(),
                event_type: item.report.event_type.to_string(),
                workflow_name: workflow_name.clone(),
                status: item.report.status.to_string(),
                message: item.report.message.clone(),
                sequence: sent + 1,
                task: item.report.task.clone(),
                time_ms: item.time,
                project: project.clone(),
            };
            if self.deliver(report, item.time).await.is_none() {
                // Shutting down: the next start delivers it.
                return Ok(());
            }
            sent += 1;
            reported_seq = item.seq;
            let cursor = json!({"seq": reported_seq, "sent": sent});
            patiently(|| self.store.set_cursors(vec![(name.clone(), cursor.clone())])).await?;
            let _ = self.done.send(item.pos);
        }
        Ok(())
    }

    /// Delivers `report`, retrying until it is accepted (`Some(true)`) or too old
    /// (`Some(false)`: dropped); `None` on shutdown.
    async fn deliver(&self, report: pb::ProgressEvent, time: store::Millis) -> Option<bool> {
        let mut backoff = self.options.first_backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut request = tonic::Request::new(report.clone());
            if let Some(key) = &self.options.api_key
                && let Ok(value) = format!("Bearer {key}").parse()
            {
                request.metadata_mut().insert("authorization", value);
            }
            let mut client = self.client.clone();
            let call = client.report_progress(request);
            let outcome = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                outcome = call => outcome,
            };
            let status = match outcome {
                Ok(_) => {
                    self.metrics.callbacks_sent.inc();
                    if attempts > 1 {
                        tracing::info!(
                            "progress callbacks: report {} of {} delivered after {attempts} attempts",
                            report.sequence,
                            report.execution_id
                        );
                    }
                    return Some(true);
                }
                Err(status) => status,
            };
            self.metrics.callbacks_failed.inc();
            let age = Duration::from_millis(now_ms().saturating_sub(time).max(0) as u64);
            if age >= self.options.max_age {
                self.metrics.callbacks_dropped.inc();
                tracing::warn!(
                    "progress callbacks: dropped report {} ({}) of {} after {attempts} \
                     attempts over {} s (--callback-max-age): {}",
                    report.sequence,
                    report.event_type,
                    report.execution_id,
                    age.as_secs(),
                    status.message()
                );
                return Some(false);
            }
            if attempts == 1 {
                tracing::warn!(
                    "progress callbacks: {} is not taking reports ({:?}: {}); retrying",
                    self.options.endpoint,
                    status.code(),
                    status.message()
                );
            }
            // Half the backoff, plus a random part of the other half.
            let half = backoff / 2;
            let delay = half + half.mul_f64(fastrand::f64());
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            backoff = (backoff * 2).min(self.options.max_backoff);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a progress report says.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub event_type: &'static str,
    pub status: &'static str,
    pub message: String,
    /// The task's position, for task reports.
    pub task: String,
}

/// The report an event makes, if it is progress: the workflow's lifecycle, and tasks
/// starting and completing.
pub fn report_of(event: &store::Event) -> Option<Report> {
    let (event_type, status) = match Lifecycle::parse(&event.type_)? {
        Lifecycle::WorkflowStarted => ("workflow_started", "running"),
        Lifecycle::WorkflowValidating => ("workflow_validating", "running"),
        Lifecycle::WorkflowValidated => ("workflow_validated", "running"),
        Lifecycle::TaskStarted => ("task_started", "running"),
        Lifecycle::TaskCompleted => ("task_completed", "completed"),
        Lifecycle::WorkflowCompleted => ("workflow_completed", "completed"),
        Lifecycle::WorkflowFaulted => ("workflow_failed", "failed"),
        Lifecycle::WorkflowCancelled => ("workflow_cancelled", "cancelled"),
        Lifecycle::WorkflowSuspended => ("workflow_paused", "paused"),
        Lifecycle::WorkflowResumed => ("workflow_resumed", "running"),
        _ => return None,
    };
    let data = event.data.value();
    let task = data["task"].as_str().unwrap_or_default().to_string();
    let task_name = task.rsplit('/').next().unwrap_or_default();
    let message = match event_type {
        "workflow_started" => "Workflow execution started".to_string(),
        "workflow_validating" => "Validating the workflow definition".to_string(),
        "workflow_validated" => "The workflow definition is valid".to_string(),
        "task_started" => format!("Task {task_name} started"),
        "task_completed" => format!("Task {task_name} completed"),
        "workflow_completed" => "Workflow execution completed".to_string(),
        "workflow_failed" => {
            let error = &data["error"];
            let why = error["detail"]
                .as_str()
                .or_else(|| error["title"].as_str())
                .unwrap_or("an error");
            format!("Workflow execution failed: {why}")
        }
        "workflow_cancelled" => "Workflow execution cancelled".to_string(),
        "workflow_paused" => "Workflow execution paused".to_string(),
        _ => "Workflow execution resumed".to_string(),
    };
    Some(Report {
        event_type,
        status,
        message,
        task,
    })
}

/// Runs a store operation until it succeeds or fails for another reason than the
/// database's absence: a database that restarts delays the reports, and loses none.
async fn patiently<T, Fut>(mut op: impl FnMut() -> Fut) -> Result<T, store::Error>
where
    Fut: std::future::Future<Output = Result<T, store::Error>>,
{
    loop {
        match op().await {
            Err(e) if e.is_unavailable() => tokio::time::sleep(Duration::from_secs(1)).await,
            result => return result,
        }
    }
}
