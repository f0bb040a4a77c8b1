//! What goes over the wire between a worker and its client (`runtime::Workers`): the
//! request that starts a task, and the events of its log, streamed as SSE with the
//! kind as the event name and these types as the data. Both sides use these types, so
//! neither builds or picks apart JSON by hand.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /run`: a command with arguments (or a prompt for the agent command), its
/// environment and stdin, and how to run it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    /// A client-chosen id: the same id again finds the same task instead of a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A program (found on `PATH`), run without a shell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Added to what the worker gives every task (a few of its own variables, its
    /// `--env` and secrets); nothing else of the worker's environment reaches a task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// At most the worker's limit, which is also the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Text for the agent command, instead of a `command`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Run in a pseudo-terminal (for programs that want one); stdout and stderr then
    /// come as one stream.
    #[serde(default)]
    pub pty: bool,
    /// Accepted for compatibility; tasks run in arrival order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

/// The kinds of a task's log events, which are the SSE event names.
pub mod kind {
    /// A piece of output: [`Output`](super::Output).
    pub const OUTPUT: &str = "output";
    /// The output went over the worker's limit: [`Truncated`](super::Truncated).
    pub const TRUNCATED: &str = "truncated";
    /// The task's process group was stopped (SIGSTOP); no data.
    pub const PAUSED: &str = "paused";
    /// The task's process group was continued (SIGCONT); no data.
    pub const RESUMED: &str = "resumed";
    /// How the task ended, always the last event: [`Exit`](super::Exit).
    pub const EXIT: &str = "exit";
}

/// A piece of a task's output, cut at a line end where it could be.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Output {
    /// `stdout` or `stderr` (a task in a pseudo-terminal has only `stdout`).
    pub stream: String,
    /// With the worker's secrets masked as `***`.
    pub text: String,
}

/// The output went over the worker's limit; the rest is not kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Truncated {
    pub limit_bytes: usize,
    pub message: String,
}

/// How a task ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    pub status: Ending,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub usage: Usage,
}

/// Why a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Ending {
    /// Its process exited by itself (with any code, or by a signal it got elsewhere).
    Exited,
    /// Cancelled by a request.
    Cancelled,
    /// Over its time limit.
    TimedOut,
    /// Killed because the worker shut down before it ended: the client runs it again
    /// elsewhere.
    Killed,
    /// Its process could not be started.
    FailedToStart,
}

/// What a task's processes used, for cost accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub cpu_seconds: f64,
    /// The group's resident memory integrated over time.
    pub memory_gib_seconds: f64,
    pub peak_rss_bytes: u64,
}
