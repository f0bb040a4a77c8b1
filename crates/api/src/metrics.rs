//! `GET /metrics`: the server's figures in the Prometheus (OpenMetrics) text format.
//!
//! Counters of lifecycle events come from the engine's [`engine::Observer`] hook, commit
//! latency from the store's commit observer; executions by state are counted in the
//! store at scrape time, so they are right after a restart too.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use engine::events::Lifecycle;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::{ApiError, ApiResult, Service};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabel {
    project: String,
    quota: String,
}

pub struct Metrics {
    registry: Registry,
    executions: Family<StatusLabel, Gauge>,
    /// Lifecycle events recorded, by kind (`task.started`, `task.retried`, …).
    lifecycle: Family<EventLabel, Counter>,
    subscribers: Gauge,
    /// Requests refused for a project's quota, by project and quota.
    quota_refusals: Family<QuotaLabel, Counter>,
    commit_seconds: Histogram,
    /// Progress reports the callback service accepted.
    pub(crate) callbacks_sent: Counter,
    /// Failed attempts to deliver a progress report (each retried).
    pub(crate) callbacks_failed: Counter,
    /// Progress reports given up on: still failing past `--callback-max-age`.
    pub(crate) callbacks_dropped: Counter,
    /// Executions taken over from a server whose lease expired.
    pub(crate) lease_takeovers: Counter,
    /// Executions this server was running when another took them over.
    pub(crate) leases_lost: Counter,
    /// Time of one claim of free executions in the database.
    pub(crate) lease_claim_seconds: Histogram,
    /// From the expiry of a dead server's lease to its takeover.
    pub(crate) takeover_delay_seconds: Histogram,
    /// Schedules that are not paused, as this server's scheduler last counted them.
    schedules: Gauge,
    /// Executions started by schedules.
    schedule_starts: Counter,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("skein");
        let executions = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "executions",
            "Executions in the store, by status",
            executions.clone(),
        );
        let lifecycle = Family::<EventLabel, Counter>::default();
        registry.register(
            "lifecycle_events",
            "Workflow and task lifecycle events recorded since the server started, by kind \
             (task.started, task.completed, task.faulted, task.retried, …)",
            lifecycle.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "event_stream_subscribers",
            "Clients connected to an event stream",
            subscribers.clone(),
        );
        let quota_refusals = Family::<QuotaLabel, Counter>::default();
        registry.register(
            "quota_refusals",
            "Requests refused (429, RESOURCE_EXHAUSTED) for a project's quota, by project and \
             quota (running, starts, stream-clients)",
            quota_refusals.clone(),
        );
        // 100 µs to about 3 s.
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "store_commit_seconds",
            "Time of one group commit of the journal, from the start of its transaction to \
             the end of the commit",
            commit_seconds.clone(),
        );
        let callbacks_sent = Counter::default();
        registry.register(
            "callback_reports_sent",
            "Progress reports the callback service accepted",
            callbacks_sent.clone(),
        );
        let callbacks_failed = Counter::default();
        registry.register(
            "callback_attempts_failed",
            "Attempts to deliver a progress report that failed (and were retried)",
            callbacks_failed.clone(),
        );
        let callbacks_dropped = Counter::default();
        registry.register(
            "callback_reports_dropped",
            "Progress reports given up on after failing for longer than --callback-max-age",
            callbacks_dropped.clone(),
        );
        let lease_takeovers = Counter::default();
        registry.register(
            "lease_takeovers",
            "Executions this server took over from a server whose lease had expired",
            lease_takeovers.clone(),
        );
        let leases_lost = Counter::default();
        registry.register(
            "leases_lost",
            "Executions this server stopped running because another server took them over \
             (its leases were not renewed in time)",
            leases_lost.clone(),
        );
        let lease_claim_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "lease_claim_seconds",
            "Time of one claim of free executions in the database",
            lease_claim_seconds.clone(),
        );
        // 10 ms to about 5 min.
        let takeover_delay_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register(
            "lease_takeover_delay_seconds",
            "Time from the expiry of a lease to its takeover by this server",
            takeover_delay_seconds.clone(),
        );
        let schedules = Gauge::default();
        registry.register(
            "schedules_active",
            "Schedules that are not paused (counted by the server that runs the schedules)",
            schedules.clone(),
        );
        let schedule_starts = Counter::default();
        registry.register(
            "schedule_starts",
            "Executions this server started for schedules",
            schedule_starts.clone(),
        );
        Arc::new(Metrics {
            registry,
            schedules,
            schedule_starts,
            lease_takeovers,
            leases_lost,
            lease_claim_seconds,
            takeover_delay_seconds,
            executions,
            lifecycle,
            subscribers,
            quota_refusals,
            commit_seconds,
            callbacks_sent,
            callbacks_failed,
            callbacks_dropped,
        })
    }

    pub(crate) fn schedule_started(&self) {
        self.schedule_starts.inc();
    }

    pub(crate) fn set_schedules(&self, active: i64) {
        self.schedules.set(active);
    }

    /// Feeds the commit latency histogram; give it to [`store::Store::observe_commits`].
    pub fn commit_observer(self: &Arc<Self>) -> store::CommitObserver {
        let histogram = self.commit_seconds.clone();
        Arc::new(move |took: Duration, _commands: usize| {
            histogram.observe(took.as_secs_f64());
        })
    }

    /// Counts a request refused for a project's quota.
    pub(crate) fn refused(&self, project: &str, error: &ApiError) {
        if let Some(quota) = error.quota {
            self.quota_refusals
                .get_or_create(&QuotaLabel {
                    project: project.to_string(),
                    quota: quota.to_string(),
                })
                .inc();
        }
    }

    /// Counts an event stream's client while the guard lives; `None` if `max` are
    /// connected already.
    pub(crate) fn subscriber(self: &Arc<Self>, max: usize) -> Option<SubscriberGuard> {
        let before = self.subscribers.inc();
        let guard = SubscriberGuard(self.subscribers.clone());
        // Over the limit: the guard's drop takes the count back.
        (usize::try_from(before).unwrap_or(0) < max).then_some(guard)
    }
}

impl engine::Observer for Metrics {
    fn event(&self, execution: &str, event: &store::Event) {
        // What Cloud Workflows' `sys.log` logs goes to the server's log too.
        if event.type_ == gcw::LOG_EVENT {
            let value = event.data.value();
            let line = gcw::log_line(&value);
            // At the level of its severity, so that JSON logs carry it to Cloud Logging.
            match value["data"]["severity"].as_str().unwrap_or("DEFAULT") {
                "DEBUG" => tracing::debug!("execution {execution}: {line}"),
                "WARNING" => tracing::warn!("execution {execution}: {line}"),
                "ERROR" | "CRITICAL" | "ALERT" | "EMERGENCY" => {
                    tracing::error!("execution {execution}: {line}")
                }
                _ => tracing::info!("execution {execution}: {line}"),
            }
            return;
        }
        // The spec's lifecycle events, by short name: `io.serverlessworkflow.task.started.v1`
        // counts as `task.started`. Emitted events are not counted: their types are the
        // workflow's, and unbounded.
        let kind = Lifecycle::parse(&event.type_)
            .filter(|l| l.is_standard())
            .map(Lifecycle::short);
        if let Some(kind) = kind {
            self.lifecycle
                .get_or_create(&EventLabel {
                    event: kind.to_string(),
                })
                .inc();
        }
    }
}

pub(crate) struct SubscriberGuard(Gauge);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "server", responses((status = 200, description = "Prometheus (OpenMetrics) text", content_type = "application/openmetrics-text"), (status = 403, description = "Needs the admin role", body = crate::wire::Error)))]
pub(crate) async fn metrics(
    State(service): State<Arc<Service>>,
    caller: Result<crate::auth::Caller, ApiError>,
) -> ApiResult<impl IntoResponse> {
    // Counts across all projects: for operators, unless the server opens them.
    if !service.options().open_metrics {
        caller?.require(crate::auth::Role::Admin)?;
    }
    let metrics = service.metrics();
    let counts = service.store().count_by_status().await?;
    for status in [
        store::Status::Pending,
        store::Status::Running,
        store::Status::Waiting,
        store::Status::Suspended,
        store::Status::Completed,
        store::Status::Faulted,
        store::Status::Cancelled,
    ] {
        let n = counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        metrics
            .executions
            .get_or_create(&StatusLabel {
                status: status.as_str().to_string(),
            })
            .set(n as i64);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry)
        .map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}
