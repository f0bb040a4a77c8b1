//! The limits of executions as options (`--expression-steps`, …, shared by `skein run`
//! and `skein server`), the quotas of projects (`--project-running`, …), and both as a
//! project's `limits:` and `quotas:` in the server's configuration file, where each key
//! is the option's name (without `project-` for quotas) and overrides it there.

use std::time::Duration;

use api::quota::Quotas;
use engine::Limits;
use engine::limits::{
    DEFAULT_EXECUTION_ITERATIONS, DEFAULT_INBOX_EVENTS, DEFAULT_JOURNAL_BYTES,
    DEFAULT_MAX_STATE_BYTES, DEFAULT_PROJECT_ITERATIONS, DEFAULT_SUBFLOW_DEPTH, DEFAULT_TASKS,
};
use expr::Budget;

/// What one execution may use. Past a limit the task faults with a `runtime` error
/// that names the limit; docs/limits.md lists them all.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Limits of each execution")]
pub(crate) struct LimitArgs {
    /// The largest task output, `$context` or workflow output of an execution, in bytes
    /// of JSON; a task over it faults (a `runtime` error, status 413, naming this limit).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_STATE_BYTES)]
    max_state_bytes: usize,

    /// Evaluation steps one expression may take (values produced, elements iterated,
    /// rounds of `repeat`/`recurse`/`while`/`until`).
    #[arg(long, value_name = "N", default_value_t = Budget::DEFAULT_STEPS)]
    expression_steps: u64,

    /// Bytes of values one expression may build.
    #[arg(long, value_name = "BYTES", default_value_t = Budget::DEFAULT_BYTES)]
    expression_bytes: u64,

    /// Milliseconds one expression may run.
    #[arg(long, value_name = "MS", default_value_t = Budget::DEFAULT_TIME.as_millis() as u64)]
    expression_time: u64,

    /// `for` iterations one execution (with its sub-workflows) runs at once, beyond
    /// the first of each loop, whatever `for.concurrency` says.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_EXECUTION_ITERATIONS)]
    execution_iterations: usize,

    /// `for` iterations all executions of one project run at once in this process,
    /// beyond the first of each loop.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PROJECT_ITERATIONS)]
    project_iterations: usize,

    /// How deeply `run.workflow` may nest sub-workflows.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SUBFLOW_DEPTH)]
    subflow_depth: usize,

    /// Tasks one execution may start (every iteration and retry counts).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TASKS)]
    execution_tasks: u64,

    /// Bytes of task outputs and `$context` one execution may record, in JSON.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_JOURNAL_BYTES)]
    execution_journal_bytes: u64,

    /// Events that may be delivered to one execution (`POST …/events`); past it, 429.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_INBOX_EVENTS)]
    inbox_events: u64,

    /// Cloud Workflows documents: branches or iterations of a `parallel` step running at
    /// once when it gives no `concurrency_limit` (Google's limit).
    #[arg(long, value_name = "N", default_value_t = dsl::CloudWorkflowsLimits::DEFAULT_CONCURRENCY)]
    cloud_workflows_concurrency: u32,

    /// Cloud Workflows documents: the most bytes (as JSON) a subworkflow's variables may
    /// take; past it, the step raises `ResourceLimitError` (Google's 512 KiB).
    #[arg(long, value_name = "BYTES", default_value_t = dsl::CloudWorkflowsLimits::DEFAULT_VARIABLES_BYTES)]
    cloud_workflows_variables_bytes: usize,

    /// Cloud Workflows documents: the steps one execution may take, counted as the tasks
    /// it starts; past it, `ResourceLimitError` (Google's 100,000). --execution-tasks
    /// bounds them too.
    #[arg(long, value_name = "N", default_value_t = dsl::CloudWorkflowsLimits::DEFAULT_STEPS)]
    cloud_workflows_steps: u64,

    /// How Serverless Workflow documents are read: `auto` (Zigflow's dialect when the
    /// document names a `taskQueue` or `workflowType`) or `zigflow` (always, also for
    /// older Zigflow files that use `namespace` and `name`). A resumed execution is read
    /// again as the process says: give the same to `--resume` and to every server.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) dialect: Dialect,
}

/// How Serverless Workflow documents are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Dialect {
    Auto,
    Zigflow,
}

impl LimitArgs {
    /// The front-ends' options: Google's limits for Cloud Workflows documents.
    pub(crate) fn frontend(&self) -> anyhow::Result<dsl::Options> {
        let concurrency = std::num::NonZeroU32::new(self.cloud_workflows_concurrency)
            .ok_or_else(|| anyhow::anyhow!("--cloud-workflows-concurrency must be at least 1"))?;
        Ok(dsl::Options {
            cloud_workflows: dsl::CloudWorkflowsLimits {
                concurrency,
                variables_bytes: self.cloud_workflows_variables_bytes,
                steps: self.cloud_workflows_steps,
            },
            zigflow: self.dialect == Dialect::Zigflow,
            ..dsl::Options::default()
        })
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            expression: Budget {
                steps: self.expression_steps,
                bytes: self.expression_bytes,
                time: Duration::from_millis(self.expression_time),
                offload: None,
            },
            state_bytes: self.max_state_bytes,
            execution_iterations: self.execution_iterations,
            project_iterations: self.project_iterations,
            subflow_depth: self.subflow_depth,
            tasks: self.execution_tasks,
            journal_bytes: self.execution_journal_bytes,
            inbox_events: self.inbox_events,
        }
    }
}

/// A project's `limits:` in the configuration file: any of the options above, by
/// the same name, in place of the server's.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct LimitOverrides {
    max_state_bytes: Option<usize>,
    expression_steps: Option<u64>,
    expression_bytes: Option<u64>,
    expression_time: Option<u64>,
    execution_iterations: Option<usize>,
    project_iterations: Option<usize>,
    subflow_depth: Option<usize>,
    execution_tasks: Option<u64>,
    execution_journal_bytes: Option<u64>,
    inbox_events: Option<u64>,
}

impl LimitOverrides {
    /// `base` with these overrides.
    pub(crate) fn apply(&self, base: &Limits) -> Limits {
        let mut limits = base.clone();
        let e = &mut limits.expression;
        e.steps = self.expression_steps.unwrap_or(e.steps);
        e.bytes = self.expression_bytes.unwrap_or(e.bytes);
        e.time = self.expression_time.map_or(e.time, Duration::from_millis);
        limits.state_bytes = self.max_state_bytes.unwrap_or(limits.state_bytes);
        limits.execution_iterations = self
            .execution_iterations
            .unwrap_or(limits.execution_iterations);
        limits.project_iterations = self.project_iterations.unwrap_or(limits.project_iterations);
        limits.subflow_depth = self.subflow_depth.unwrap_or(limits.subflow_depth);
        limits.tasks = self.execution_tasks.unwrap_or(limits.tasks);
        limits.journal_bytes = (self.execution_journal_bytes).unwrap_or(limits.journal_bytes);
        limits.inbox_events = self.inbox_events.unwrap_or(limits.inbox_events);
        limits
    }
}

/// What each project may use of a server; past one, `429` with `Retry-After` (gRPC:
/// `RESOURCE_EXHAUSTED`).
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Quotas of each project")]
pub(crate) struct QuotaArgs {
    /// Executions of one project running (or waiting, or paused) on this server at once.
    #[arg(long, value_name = "N", default_value_t = Quotas::DEFAULT_RUNNING)]
    project_running: usize,

    /// Executions one project may start per second, with a burst of as many; 0: no limit.
    #[arg(long, value_name = "N", default_value_t = Quotas::DEFAULT_STARTS_PER_SECOND)]
    project_starts_per_second: u32,

    /// Event-stream clients (SSE and gRPC Watch) of one project at once.
    #[arg(long, value_name = "N", default_value_t = Quotas::DEFAULT_STREAM_CLIENTS)]
    project_stream_clients: usize,
}

impl QuotaArgs {
    pub(crate) fn quotas(&self) -> Quotas {
        Quotas {
            running: self.project_running,
            starts_per_second: self.project_starts_per_second,
            stream_clients: self.project_stream_clients,
        }
    }
}

/// A project's `quotas:` in the configuration file, in place of the server's.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct QuotaOverrides {
    running: Option<usize>,
    starts_per_second: Option<u32>,
    stream_clients: Option<usize>,
}

impl QuotaOverrides {
    pub(crate) fn apply(&self, base: Quotas) -> Quotas {
        Quotas {
            running: self.running.unwrap_or(base.running),
            starts_per_second: self.starts_per_second.unwrap_or(base.starts_per_second),
            stream_clients: self.stream_clients.unwrap_or(base.stream_clients),
        }
    }
}
