//! The lifecycle events an execution records, by name: one vocabulary for the engine
//! that records them and for everyone who reads them (the API's counters and streams,
//! progress callbacks, metrics, the CLI).
//!
//! Events of an `emit` task carry whatever type the workflow gives them, so a stored
//! event's type stays text; [`Lifecycle::parse`] tells whether it is one of these.

/// A lifecycle event. The standard ones are the Serverless Workflow spec's
/// (`io.serverlessworkflow.*`); the others are skein's (`dev.skein.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    WorkflowStarted,
    /// The definition is being validated (a workflow runner's progress report).
    WorkflowValidating,
    WorkflowValidated,
    WorkflowSuspended,
    WorkflowResumed,
    WorkflowCompleted,
    WorkflowFaulted,
    WorkflowCancelled,
    TaskCreated,
    TaskStarted,
    TaskRetried,
    TaskCompleted,
    TaskFaulted,
    TaskCancelled,
    /// How far a fan-out got: total, done, failed, running.
    TaskProgress,
    /// A piece of a process's output, as it came.
    TaskOutput,
    /// What one attempt of a call or process used, for cost.
    TaskUsage,
    /// A signal or update that a listener handled (Zigflow's messages): its name, id,
    /// payload, whether it was accepted and, for an update, the answer.
    TaskMessage,
    /// One result of a streamed call (A2A's `message/stream`), as it came.
    TaskStream,
}

impl Lifecycle {
    pub const ALL: [Lifecycle; 19] = [
        Lifecycle::WorkflowStarted,
        Lifecycle::WorkflowValidating,
        Lifecycle::WorkflowValidated,
        Lifecycle::WorkflowSuspended,
        Lifecycle::WorkflowResumed,
        Lifecycle::WorkflowCompleted,
        Lifecycle::WorkflowFaulted,
        Lifecycle::WorkflowCancelled,
        Lifecycle::TaskCreated,
        Lifecycle::TaskStarted,
        Lifecycle::TaskRetried,
        Lifecycle::TaskCompleted,
        Lifecycle::TaskFaulted,
        Lifecycle::TaskCancelled,
        Lifecycle::TaskProgress,
        Lifecycle::TaskOutput,
        Lifecycle::TaskUsage,
        Lifecycle::TaskMessage,
        Lifecycle::TaskStream,
    ];

    /// The CloudEvent type, as stored and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Lifecycle::WorkflowStarted => "io.serverlessworkflow.workflow.started.v1",
            Lifecycle::WorkflowValidating => "dev.skein.workflow.validating.v1",
            Lifecycle::WorkflowValidated => "dev.skein.workflow.validated.v1",
            Lifecycle::WorkflowSuspended => "io.serverlessworkflow.workflow.suspended.v1",
            Lifecycle::WorkflowResumed => "io.serverlessworkflow.workflow.resumed.v1",
            Lifecycle::WorkflowCompleted => "io.serverlessworkflow.workflow.completed.v1",
            Lifecycle::WorkflowFaulted => "io.serverlessworkflow.workflow.faulted.v1",
            Lifecycle::WorkflowCancelled => "io.serverlessworkflow.workflow.cancelled.v1",
            Lifecycle::TaskCreated => "io.serverlessworkflow.task.created.v1",
            Lifecycle::TaskStarted => "io.serverlessworkflow.task.started.v1",
            Lifecycle::TaskRetried => "io.serverlessworkflow.task.retried.v1",
            Lifecycle::TaskCompleted => "io.serverlessworkflow.task.completed.v1",
            Lifecycle::TaskFaulted => "io.serverlessworkflow.task.faulted.v1",
            Lifecycle::TaskCancelled => "io.serverlessworkflow.task.cancelled.v1",
            Lifecycle::TaskProgress => "dev.skein.task.progress.v1",
            Lifecycle::TaskOutput => "dev.skein.task.output.v1",
            Lifecycle::TaskUsage => "dev.skein.task.usage.v1",
            Lifecycle::TaskMessage => "dev.skein.task.message.v1",
            Lifecycle::TaskStream => "dev.skein.task.stream.v1",
        }
    }

    /// The type without its namespace and version: `task.started`.
    pub fn short(self) -> &'static str {
        let full = self.as_str();
        let rest = full
            .strip_prefix(STANDARD)
            .or_else(|| full.strip_prefix(SKEIN))
            .expect("every type is in one of the two namespaces");
        rest.strip_suffix(".v1").expect("every type is version 1")
    }

    /// Whether the spec defines it (rather than skein).
    pub fn is_standard(self) -> bool {
        self.as_str().starts_with(STANDARD)
    }

    /// The lifecycle event of CloudEvent type `type_`, if it is one.
    pub fn parse(type_: &str) -> Option<Lifecycle> {
        Lifecycle::ALL.into_iter().find(|l| l.as_str() == type_)
    }

    /// Whether it ends an execution.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Lifecycle::WorkflowCompleted
                | Lifecycle::WorkflowFaulted
                | Lifecycle::WorkflowCancelled
        )
    }
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const STANDARD: &str = "io.serverlessworkflow.";
const SKEIN: &str = "dev.skein.";

#[cfg(test)]
mod tests {
    use super::Lifecycle;

    #[test]
    fn every_type_parses_back_and_has_a_short_name() {
        for l in Lifecycle::ALL {
            assert_eq!(Lifecycle::parse(l.as_str()), Some(l));
            assert!(!l.short().contains(".v1"), "{l}");
        }
        assert_eq!(Lifecycle::TaskStarted.short(), "task.started");
        assert_eq!(Lifecycle::TaskUsage.short(), "task.usage");
        assert!(!Lifecycle::TaskUsage.is_standard());
        assert_eq!(Lifecycle::parse("com.example.order.placed"), None);
    }
}
