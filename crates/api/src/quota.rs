//! Project quotas: how many executions a project may run at once in this server, how
//! many it may start per second, and how many event-stream clients it may have. Past
//! one, the request gets `429 Too Many Requests` with `Retry-After` (gRPC:
//! `RESOURCE_EXHAUSTED`), counted in `/metrics` by project and quota; other projects
//! are not affected.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use governor::{DefaultDirectRateLimiter, Quota};

use crate::ApiError;

/// A project's quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Executions of the project running (or waiting, or paused) in this server at once.
    pub running: usize,
    /// Executions the project may start per second (with a burst of as many); 0: no limit.
    pub starts_per_second: u32,
    /// Event-stream clients (SSE and gRPC `Watch`) of the project at once.
    pub stream_clients: usize,
}

impl Quotas {
    pub const DEFAULT_RUNNING: usize = 1_000_000;
    pub const DEFAULT_STARTS_PER_SECOND: u32 = 0;
    pub const DEFAULT_STREAM_CLIENTS: usize = 1_000;
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            running: Self::DEFAULT_RUNNING,
            starts_per_second: Self::DEFAULT_STARTS_PER_SECOND,
            stream_clients: Self::DEFAULT_STREAM_CLIENTS,
        }
    }
}

/// The quotas of every project: the server's, and others for some projects.
#[derive(Clone, Debug, Default)]
pub struct QuotaTable {
    pub default: Quotas,
    pub projects: HashMap<String, Quotas>,
}

impl QuotaTable {
    pub fn of(&self, project: &str) -> Quotas {
        self.projects.get(project).copied().unwrap_or(self.default)
    }
}

/// What each project uses now.
#[derive(Default)]
pub(crate) struct Usage {
    projects: Mutex<HashMap<String, Arc<ProjectUsage>>>,
}

struct ProjectUsage {
    starts: Option<DefaultDirectRateLimiter>,
    streams: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

impl Usage {
    fn project(&self, project: &str, quotas: Quotas) -> Arc<ProjectUsage> {
        let mut projects = self
            .projects
            .lock()
            .expect("the quota table is never poisoned");
        projects
            .entry(project.to_string())
            .or_insert_with(|| {
                Arc::new(ProjectUsage {
                    starts: NonZeroU32::new(quotas.starts_per_second)
                        .map(|rate| governor::RateLimiter::direct(Quota::per_second(rate))),
                    streams: Arc::default(),
                    running: Arc::default(),
                })
            })
            .clone()
    }

    /// Takes one start of `project`'s rate, or says when to try again.
    pub(crate) fn start(&self, project: &str, quotas: Quotas) -> Result<(), ApiError> {
        let usage = self.project(project, quotas);
        let Some(limiter) = &usage.starts else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            exhausted(
                "starts",
                format!(
                    "project `{project}` may start {} executions per second (quota \
                     `starts-per-second`)",
                    quotas.starts_per_second
                ),
                wait,
            )
        })
    }

    /// Refuses a new execution of `project` if it has its most running already.
    pub(crate) fn admit(&self, project: &str, quotas: Quotas) -> Result<(), ApiError> {
        let usage = self.project(project, quotas);
        if usage.running.load(Ordering::SeqCst) < quotas.running {
            return Ok(());
        }
        Err(exhausted(
            "running",
            format!(
                "project `{project}` has {} executions running already (quota `running`)",
                quotas.running
            ),
            Duration::from_secs(1),
        ))
    }

    /// Counts a running execution of `project` while the guard lives.
    pub(crate) fn running(&self, project: &str, quotas: Quotas) -> Counted {
        let usage = self.project(project, quotas);
        usage.running.fetch_add(1, Ordering::SeqCst);
        Counted(usage.running.clone())
    }

    /// Counts an event-stream client of `project` while the guard lives.
    pub(crate) fn stream(&self, project: &str, quotas: Quotas) -> Result<Counted, ApiError> {
        let usage = self.project(project, quotas);
        let before = usage.streams.fetch_add(1, Ordering::SeqCst);
        let guard = Counted(usage.streams.clone());
        if before >= quotas.stream_clients {
            return Err(exhausted(
                "stream-clients",
                format!(
                    "project `{project}` has {} event-stream clients already (quota \
                     `stream-clients`)",
                    quotas.stream_clients
                ),
                Duration::from_secs(1),
            ));
        }
        Ok(guard)
    }
}

/// One running execution or event-stream client of a project, uncounted when dropped.
pub(crate) struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The refusal of a request over quota `quota`: 429, retry after `wait`.
pub(crate) fn exhausted(quota: &'static str, message: String, wait: Duration) -> ApiError {
    let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message);
    error.retry_after = Some(wait.as_secs().max(1));
    error.quota = Some(quota);
    error
}
