//! The service behind the API: it runs executions in the background, one task each,
//! and lets requests wait for an execution's end, cancel it, pause it or resume it.
//!
//! With [`Cluster`] options, several servers share one database: each runs the
//! executions it holds the lease of (`crate::cluster`), and a request about an
//! execution another server runs is recorded in the store, which tells that server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::Engine;
use store::{Batch, Execution, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a cancel request waits for the execution to record its cancellation.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

pub struct Service {
    engine: Arc<Engine>,
    options: Options,
    running: Mutex<HashMap<String, Running>>,
    tasks: TaskTracker,
    hub: crate::hub::Hub,
    /// What each project uses of its quotas.
    usage: crate::quota::Usage,
}

/// How the service behaves toward clients.
#[derive(Clone)]
pub struct Options {
    /// How often an idle event stream sends a comment, so that proxies keep it open.
    pub heartbeat: Duration,
    /// What `/metrics` reports. Wire it to the engine (`Engine::with_observer`) and the
    /// store (`Store::observe_commits`) for its counters and commit latencies.
    pub metrics: Arc<crate::Metrics>,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The largest workflow definition, in bytes.
    pub max_definition_bytes: usize,
    /// Google's limits, for Cloud Workflows documents (give the engine's front-end the
    /// same, so that a resumed execution is read as it was started).
    pub cloud_workflows: dsl::CloudWorkflowsLimits,
    /// Read every Serverless Workflow document in Zigflow's dialect (`--dialect
    /// zigflow`; give the engine's front-end the same).
    pub zigflow: bool,
    /// The largest workflow input, in bytes of JSON.
    pub max_input_bytes: usize,
    /// The most event-stream clients at once.
    pub max_subscribers: usize,
    /// The bearer tokens callers must present; none: no authentication, one project.
    pub tokens: Vec<crate::auth::Token>,
    /// The OpenID Connect issuers whose ID tokens are accepted, with the rules that give
    /// them a project and role; `None`: none are.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Serve `/metrics` without authentication (for a scraper that sends no token, such
    /// as Cloud Run's Prometheus sidecar); otherwise it needs the admin role.
    pub open_metrics: bool,
    /// The secrets executions may read, by project.
    pub secrets: Arc<Secrets>,
    /// Sharing the database with other servers; `None`: this server runs everything.
    pub cluster: Option<Cluster>,
    /// What each project may use.
    pub quotas: crate::quota::QuotaTable,
    /// The workers `run` tasks go to, for `GET /v1/server`; `None`: not shown.
    pub workers: Option<Arc<dyn WorkerMetrics>>,
}

/// Where `GET /v1/server` learns the workers' load: each worker's base URL and its
/// `/metrics` text, or why it did not answer within `wait`.
pub trait WorkerMetrics: Send + Sync {
    fn metrics(
        &self,
        wait: Duration,
    ) -> futures::future::BoxFuture<'_, Vec<(String, Result<String, String>)>>;
}

/// How a server shares its database with others.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// This server's name among those sharing the database: the owner of its leases.
    pub node: String,
    /// How long a lease lasts unrenewed: how long the executions of a server that died
    /// wait before another takes them over.
    pub lease: Duration,
    /// How often leases are renewed and free executions looked for.
    pub renew_every: Duration,
    /// The most executions this server runs at once; beyond that, new ones wait for a
    /// server with room.
    pub capacity: usize,
    /// The URL the other servers reach this server's REST API at (`--public-url`): where
    /// they send the queries of the executions it runs.
    pub url: String,
}

impl Cluster {
    pub(crate) fn lease_ms(&self) -> store::Millis {
        self.lease.as_millis().min(i64::MAX as u128) as store::Millis
    }
}

/// Secret values the server hands to executions: some to every project, some to one.
/// An execution sees, as `$secrets`, those its workflow declares in `use.secrets`;
/// events and results show secret text masked.
#[derive(Default)]
pub struct Secrets {
    shared: serde_json::Map<String, serde_json::Value>,
    by_project: HashMap<String, serde_json::Map<String, serde_json::Value>>,
}

impl Secrets {
    /// Adds secret `name`, for `project` only or (`None`) for every project. A
    /// project's own secret wins over a shared one of the same name.
    pub fn insert(&mut self, project: Option<&str>, name: &str, value: serde_json::Value) {
        let map = match project {
            Some(p) => self.by_project.entry(p.to_string()).or_default(),
            None => &mut self.shared,
        };
        map.insert(name.to_string(), value);
    }

    /// The secrets an execution of `project` may be given.
    pub fn for_project(&self, project: &str) -> serde_json::Value {
        let mut all = self.shared.clone();
        if let Some(own) = self.by_project.get(project) {
            all.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        serde_json::Value::Object(all)
    }

    /// How many secrets there are, shared and per project.
    pub fn len(&self) -> usize {
        self.shared.len() + self.by_project.values().map(|m| m.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            heartbeat: Duration::from_secs(15),
            metrics: crate::Metrics::new(),
            max_body_bytes: 8 << 20,
            max_definition_bytes: 1 << 20,
            cloud_workflows: dsl::CloudWorkflowsLimits::default(),
            zigflow: false,
            max_input_bytes: 4 << 20,
            max_subscribers: 10_000,
            tokens: Vec::new(),
            oidc: None,
            open_metrics: false,
            secrets: Arc::default(),
            cluster: None,
            quotas: crate::quota::QuotaTable::default(),
            workers: None,
        }
    }
}

/// An execution running in this process.
struct Running {
    cancel: CancellationToken,
    /// True while it is paused.
    pause: watch::Sender<bool>,
    /// Becomes true when its task ends.
    done: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
    /// When it was launched: a lease renewal asked earlier does not know of it yet.
    pub(crate) since: tokio::time::Instant,
    /// Counts toward its project's `running` quota while it is here.
    _counted: crate::quota::Counted,
}

/// What a cancel, pause or resume request found.
pub enum Steered {
    /// The execution as it stands after the request (also when it already stood so).
    Now(Execution),
    /// It had already ended, in another way than the request asked for.
    Ended(Execution),
    NotFound,
}

/// How long a pause or resume waits for the run to record its new status.
const STEER_WAIT: Duration = Duration::from_secs(5);

impl Service {
    pub fn new(engine: Arc<Engine>) -> Arc<Service> {
        Service::with_options(engine, Options::default())
    }

    pub fn with_options(engine: Arc<Engine>, options: Options) -> Arc<Service> {
        Arc::new(Service {
            engine,
            options,
            running: Mutex::default(),
            tasks: TaskTracker::new(),
            hub: crate::hub::Hub::default(),
            usage: crate::quota::Usage::default(),
        })
    }

    /// Refuses a start of `project` over its `running` or `starts-per-second` quota.
    pub(crate) fn admit_start(&self, project: &str) -> Result<(), crate::ApiError> {
        let quotas = self.options.quotas.of(project);
        let admitted =
            (self.usage.admit(project, quotas)).and_then(|()| self.usage.start(project, quotas));
        admitted.inspect_err(|e| self.options.metrics.refused(project, e))
    }

    /// Counts an event-stream client of `project`, or refuses it over its quota.
    pub(crate) fn admit_stream(
        &self,
        project: &str,
    ) -> Result<crate::quota::Counted, crate::ApiError> {
        let quotas = self.options.quotas.of(project);
        (self.usage.stream(project, quotas))
            .inspect_err(|e| self.options.metrics.refused(project, e))
    }

    pub fn heartbeat(&self) -> Duration {
        self.options.heartbeat
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn metrics(&self) -> &Arc<crate::Metrics> {
        &self.options.metrics
    }

    /// The reader of the log of all executions that `/v1/events` clients share.
    pub(crate) fn log_hub(&self) -> &crate::hub::Hub {
        &self.hub
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }

    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        self.options.cluster.as_ref()
    }

    /// Runs a new execution: here, unless this server shares its database and is full
    /// (then the first server with room claims it).
    pub async fn start(self: &Arc<Self>, id: &str, project: &str) {
        let Some(cluster) = self.cluster() else {
            return self.launch(id, project, false);
        };
        if self.running_count() >= cluster.capacity {
            return;
        }
        let claim = store::Claim::One(id.to_string());
        match self
            .store()
            .claim(&cluster.node, cluster.lease_ms(), claim)
            .await
        {
            Ok(leases) => {
                for lease in leases {
                    self.launch_lease(&lease);
                }
            }
            // The next look for free executions finds it.
            Err(e) => tracing::warn!("execution {id} waits for a server: {e}"),
        }
    }

    /// Runs an execution this server holds the lease of, as its last request says.
    pub(crate) fn launch_lease(self: &Arc<Self>, lease: &store::Lease) {
        self.launch(&lease.id, &lease.project, lease.paused());
        if lease.requested == Some(store::Request::Cancel) {
            self.obey_here(&lease.id, store::Request::Cancel);
        }
    }

    pub(crate) fn running_count(&self) -> usize {
        self.running.lock().expect("running lock").len()
    }

    /// The executions running here, with when each was launched.
    pub(crate) fn running_since(&self) -> Vec<(String, tokio::time::Instant)> {
        let running = self.running.lock().expect("running lock");
        running
            .iter()
            .map(|(id, r)| (id.clone(), r.since))
            .collect()
    }

    /// Stops running `id` here without recording anything (another server runs it
    /// now, or may); true if it ran here.
    pub(crate) fn abandon(&self, id: &str) -> bool {
        let removed = self.running.lock().expect("running lock").remove(id);
        if let Some(running) = &removed {
            running.task.abort();
        }
        removed.is_some()
    }

    /// Applies `request` to `id` if it runs here; false if it does not.
    pub(crate) fn obey_here(&self, id: &str, request: store::Request) -> bool {
        let running = self.running.lock().expect("running lock");
        let Some(r) = running.get(id) else {
            return false;
        };
        match request {
            store::Request::Cancel => r.cancel.cancel(),
            store::Request::Pause => {
                r.pause.send_replace(true);
            }
            store::Request::Resume => {
                r.pause.send_replace(false);
            }
        }
        true
    }

    /// Runs execution `id` of `project` in the background, unless it runs already;
    /// `paused` is how it starts.
    pub fn launch(self: &Arc<Self>, id: &str, project: &str, paused: bool) {
        let mut running = self.running.lock().expect("running lock");
        if running.contains_key(id) {
            return;
        }
        let cancel = CancellationToken::new();
        let (pause, paused) = watch::channel(paused);
        let (done_tx, done) = watch::channel(false);
        let done_rx = done.clone();
        let this = self.clone();
        let owned = id.to_string();
        let control = engine::Control {
            cancel: cancel.clone(),
            paused,
        };
        let secrets = self.options.secrets.for_project(project);
        let task = self.tasks.spawn(async move {
            if let Err(e) = this.engine.run_controlled(&owned, secrets, control).await {
                tracing::warn!("execution {owned} stopped: {e}");
            }
            {
                // Only its own entry: after an abandon, a new run may hold the id.
                let mut running = this.running.lock().expect("running lock");
                if running
                    .get(&owned)
                    .is_some_and(|r| r.done.same_channel(&done_rx))
                {
                    running.remove(&owned);
                }
            }
            let _ = done_tx.send(true);
        });
        running.insert(
            id.to_string(),
            Running {
                cancel,
                pause,
                done,
                task: task.abort_handle(),
                since: tokio::time::Instant::now(),
                _counted: self.usage.running(project, self.options.quotas.of(project)),
            },
        );
    }

    /// Launches every execution that had not ended when the store was last used,
    /// as their last requests say (suspended ones paused); returns how many. With a
    /// shared database, the executions are claimed by the servers instead.
    pub async fn resume_all(self: &Arc<Self>) -> Result<usize, store::Error> {
        if self.cluster().is_some() {
            return Ok(0);
        }
        let ids = self.store().unfinished().await?;
        for id in &ids {
            if let Some(e) = self.store().execution(id).await? {
                self.launch_lease(&store::Lease {
                    id: e.id,
                    project: e.project,
                    status: e.status,
                    requested: e.requested,
                    taken_from: None,
                });
            }
        }
        Ok(ids.len())
    }

    fn done(&self, id: &str) -> Option<watch::Receiver<bool>> {
        let running = self.running.lock().expect("running lock");
        running.get(id).map(|r| r.done.clone())
    }

    /// The execution once it has ended, or as it stands when `wait` has passed. The
    /// wait is woken by the end itself.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Option<Execution>, store::Error> {
        if let Some(mut done) = self.done(id) {
            let _ = tokio::time::timeout(wait, done.wait_for(|d| *d)).await;
            return self.store().execution(id).await;
        }
        // Not running here: perhaps on another server, whose commits are announced.
        self.until(id, wait, |e| e.status.is_final()).await
    }

    /// Execution `id` once `wanted` holds for it, or as it stands after `wait`; read
    /// again at each commit notice that may concern it.
    async fn until(
        &self,
        id: &str,
        wait: Duration,
        wanted: impl Fn(&Execution) -> bool,
    ) -> Result<Option<Execution>, store::Error> {
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before the read, so that no commit falls between the two.
        let mut notices = self.store().subscribe();
        loop {
            let execution = self.store().execution(id).await?;
            match &execution {
                Some(e) if !wanted(e) => {}
                _ => return Ok(execution),
            }
            loop {
                match tokio::time::timeout_at(deadline, notices.recv()).await {
                    Err(_) => return Ok(execution),
                    Ok(Ok(notice)) if !notice.concerns(id) => continue,
                    Ok(_) => break,
                }
            }
        }
    }

    /// Records `request` for `id` (so that whoever runs it, now or later, obeys) and
    /// applies it here if it runs here. With a shared database, an execution nobody
    /// holds is claimed and run here to obey it.
    async fn apply(self: &Arc<Self>, execution: &Execution, request: store::Request) {
        if let Err(e) = self.store().request(&execution.id, request).await {
            tracing::warn!(
                "the {} of {} is not recorded: {e}",
                request.as_str(),
                execution.id
            );
        }
        if self.obey_here(&execution.id, request) {
            return;
        }
        match self.cluster() {
            // Not running, not final: created and not launched yet.
            None => {
                self.launch(
                    &execution.id,
                    &execution.project,
                    request == store::Request::Pause,
                );
                self.obey_here(&execution.id, request);
            }
            Some(cluster) => {
                let claim = store::Claim::One(execution.id.clone());
                if let Ok(leases) = self
                    .store()
                    .claim(&cluster.node, cluster.lease_ms(), claim)
                    .await
                {
                    for lease in leases {
                        self.launch_lease(&lease);
                    }
                }
            }
        }
    }

    /// Steers execution `id`, for REST and gRPC alike:
    /// - `Cancel`: its running tasks are dropped (processes killed) and it ends
    ///   `cancelled`; cancelling a cancelled execution is not an error;
    /// - `Pause` and `Resume`: returns it once the run has recorded its new status;
    ///   asking for the state it is in is not an error.
    pub async fn steer(
        self: &Arc<Self>,
        id: &str,
        request: store::Request,
    ) -> Result<Steered, store::Error> {
        match request {
            store::Request::Cancel => self.cancel(id).await,
            store::Request::Pause | store::Request::Resume => self.set_paused(id, request).await,
        }
    }

    async fn cancel(self: &Arc<Self>, id: &str) -> Result<Steered, store::Error> {
        let Some(execution) = self.store().execution(id).await? else {
            return Ok(Steered::NotFound);
        };
        if execution.status.is_final() {
            return Ok(match execution.status {
                store::Status::Cancelled => Steered::Now(execution),
                _ => Steered::Ended(execution),
            });
        }
        self.apply(&execution, store::Request::Cancel).await;
        let ended = self
            .until(id, CANCEL_GRACE, |e| e.status.is_final())
            .await?;
        Ok(match ended {
            None => Steered::NotFound,
            Some(e) if e.status.is_final() && e.status != store::Status::Cancelled => {
                Steered::Ended(e)
            }
            // Cancelled, or still winding down after the grace period: where it stands.
            Some(e) => Steered::Now(e),
        })
    }

    /// A pause or a resume (`request`).
    async fn set_paused(
        self: &Arc<Self>,
        id: &str,
        request: store::Request,
    ) -> Result<Steered, store::Error> {
        let Some(execution) = self.store().execution(id).await? else {
            return Ok(Steered::NotFound);
        };
        if execution.status.is_final() {
            return Ok(Steered::Ended(execution));
        }
        let pause = request == store::Request::Pause;
        self.apply(&execution, request).await;
        // Woken by the commit of the new status (with its lifecycle event).
        let wanted =
            |e: &Execution| e.status.is_final() || (e.status == store::Status::Suspended) == pause;
        Ok(match self.until(id, STEER_WAIT, wanted).await? {
            None => Steered::NotFound,
            // A resumed run may end before this read: that is the resume's doing. A run
            // that ended before the pause took hold was not paused.
            Some(e) if e.status.is_final() && pause => Steered::Ended(e),
            Some(e) => Steered::Now(e),
        })
    }

    /// Stops for a shutdown: running executions are abandoned, not cancelled (they
    /// resume from their journals at the next start), and everything already queued
    /// is committed.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown_by(tokio::time::Instant::now() + grace).await;
    }

    /// [`Service::shutdown`], done by `deadline` whatever the database does: writes it
    /// has not taken by then are left (the executions resume from what was committed,
    /// at the next start), and so are the leases (they expire).
    pub async fn shutdown_by(&self, deadline: tokio::time::Instant) {
        let running: Vec<tokio::task::AbortHandle> = {
            let running = self.running.lock().expect("running lock");
            running.values().map(|r| r.task.clone()).collect()
        };
        for task in running {
            task.abort();
        }
        self.tasks.close();
        let _ = tokio::time::timeout_at(deadline, self.tasks.wait()).await;
        // An empty batch: once it is durable, so is every batch queued before it.
        let ticket = self.store().commit(Batch::default());
        match tokio::time::timeout_at(deadline, self.store().durable(ticket)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("the last writes may not be on disk: {e}"),
            Err(_) => {
                tracing::warn!(
                    "the journal did not take the last writes in time (is the database away?); \
                     the executions resume from what was committed"
                );
                return;
            }
        }
        // Others take over at once rather than when the leases expire.
        if let Some(cluster) = self.cluster() {
            match tokio::time::timeout_at(deadline, self.store().release(&cluster.node)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("the leases were not released (they expire): {e}"),
                Err(_) => tracing::warn!("the leases were not released in time (they expire)"),
            }
        }
    }
}
