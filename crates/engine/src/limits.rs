//! What one execution may use, and what all executions of one project may use
//! together: the expression budget, the state size, how many `for` iterations run
//! at once, how deep sub-workflows nest. An engine has default [`Limits`] and may
//! have others per project; `docs/limits.md` lists each with its default, its
//! setting and the fault it gives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use expr::Budget;
use expr::Problem;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Interrupt;

/// The limits of an execution (and of its project, for the shared ones).
#[derive(Clone, Debug)]
pub struct Limits {
    /// The budget of every expression evaluation. Evaluations that outgrow a small
    /// first slice run again off the async runtime's worker threads.
    pub expression: Budget,
    /// The largest task output, `$context` or workflow output, in bytes of JSON.
    pub state_bytes: usize,
    /// The most `for` iterations running at once in one execution (its children
    /// included), whatever each loop's `concurrency` says.
    pub execution_iterations: usize,
    /// The most `for` iterations running at once across all executions of a project
    /// in this process.
    pub project_iterations: usize,
    /// How deeply `run.workflow` may nest: a top-level execution is at depth 0.
    pub subflow_depth: usize,
    /// Tasks one execution may start (each iteration's, each retry's), not counting
    /// those its journal replays.
    pub tasks: u64,
    /// Bytes of task outputs and `$context` one execution may record, in JSON.
    pub journal_bytes: u64,
    /// Events that may be delivered to one execution's inbox, for `listen`.
    pub inbox_events: u64,
}

/// The default bound on a task's output, the `$context` and a workflow's output.
pub const DEFAULT_MAX_STATE_BYTES: usize = 16 << 20;
/// The default of [`Limits::execution_iterations`].
pub const DEFAULT_EXECUTION_ITERATIONS: usize = 10_000;
/// The default of [`Limits::project_iterations`].
pub const DEFAULT_PROJECT_ITERATIONS: usize = 100_000;
/// The default of [`Limits::subflow_depth`].
pub const DEFAULT_SUBFLOW_DEPTH: usize = 32;
/// The default of [`Limits::tasks`].
pub const DEFAULT_TASKS: u64 = 1_000_000;
/// The default of [`Limits::journal_bytes`].
pub const DEFAULT_JOURNAL_BYTES: u64 = 1 << 30;
/// The default of [`Limits::inbox_events`].
pub const DEFAULT_INBOX_EVENTS: u64 = 100_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            expression: Budget::default(),
            state_bytes: DEFAULT_MAX_STATE_BYTES,
            execution_iterations: DEFAULT_EXECUTION_ITERATIONS,
            project_iterations: DEFAULT_PROJECT_ITERATIONS,
            subflow_depth: DEFAULT_SUBFLOW_DEPTH,
            tasks: DEFAULT_TASKS,
            journal_bytes: DEFAULT_JOURNAL_BYTES,
            inbox_events: DEFAULT_INBOX_EVENTS,
        }
    }
}

/// Large evaluations running at once: one fewer than the machine's cores, at least
/// one, so that runaway expressions cannot take every core from the executions
/// beside them. The others wait their turn, in order.
static LARGE: std::sync::LazyLock<Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Semaphore::new(cores.saturating_sub(1).max(1))
});

/// Runs `work` where it may block: off the worker threads of a multi-threaded tokio
/// runtime (`block_in_place`, which hands this worker's other tasks to another
/// thread), once one of the [`LARGE`] turns is free; in place anywhere else.
fn offload(work: &mut dyn FnMut()) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| {
                let _turn = handle.block_on(LARGE.acquire());
                work()
            })
        }
        _ => work(),
    }
}

impl Limits {
    /// These limits with the engine's offload hook on the expression budget.
    pub(crate) fn offloading(mut self) -> Limits {
        self.expression = self.expression.with_offload(offload);
        self
    }
}

/// The permits for `for` iterations of every project running in this process.
#[derive(Default)]
pub(crate) struct Projects {
    iterations: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Projects {
    /// The iteration permits of `project`, made with `size` the first time.
    pub(crate) fn iterations(&self, project: &str, size: usize) -> Arc<Semaphore> {
        let mut map = self
            .iterations
            .lock()
            .expect("the project table is never poisoned");
        map.entry(project.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(size)))
            .clone()
    }
}

/// The permits one running iteration holds: one of its execution's and one of its
/// project's. Dropping them lets another iteration start.
pub(crate) struct IterationPermit {
    _execution: OwnedSemaphorePermit,
    _project: OwnedSemaphorePermit,
}

/// Takes an iteration permit from `execution` and `project` if both have one free,
/// without waiting: a loop that gets none runs on with what it has, so nested
/// loops never wait on each other.
pub(crate) fn try_iteration(
    execution: &Arc<Semaphore>,
    project: &Arc<Semaphore>,
) -> Option<IterationPermit> {
    let execution = execution.clone().try_acquire_owned().ok()?;
    let project = project.clone().try_acquire_owned().ok()?;
    Some(IterationPermit {
        _execution: execution,
        _project: project,
    })
}

/// The fault of a task that would go over a limit (`detail` names its setting).
pub(crate) fn over(at: &str, title: &str, detail: String) -> Interrupt {
    Interrupt::Fault(Problem {
        type_: expr::types::RUNTIME.into(),
        status: 413,
        title: Some(title.into()),
        detail: Some(detail),
        instance: Some(at.to_string()),
        data: None,
    })
}
