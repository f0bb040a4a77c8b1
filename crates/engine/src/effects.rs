//! What the engine asks the outside world to do, as data, and the trait that does it.
//!
//! The engine never performs IO itself: it builds an [`HttpRequest`] or a
//! [`ProcessSpec`] and hands it to an [`Effects`] implementation (the `runtime`
//! crate in production, fakes in tests). Time comes through [`Clock`], so tests
//! can drive timers.

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

#[async_trait]
pub trait Effects: Send + Sync {
    async fn http(&self, request: HttpRequest) -> Result<HttpResponse, HttpError>;

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
