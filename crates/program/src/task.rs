//! Tasks: the twelve kinds of the DSL and what every task shares.

use expr::{Expr, Template};
use indexmap::IndexMap;
use serde_json::Value;

use super::{
    Call, Duration, ErrorRef, Export, ExternalResource, FlowDirective, Input, Output, RetryRef,
    TimeoutRef,
};

/// A list of named tasks, run in order unless a flow directive says otherwise.
#[derive(Clone, Debug, Default)]
pub struct TaskList {
    pub tasks: Vec<NamedTask>,
}

impl TaskList {
    /// Calls `f` on every task of the list and of the lists inside its tasks, depth
    /// first, in document order.
    pub fn each<'a>(&'a self, f: &mut impl FnMut(&'a NamedTask)) {
        for nt in &self.tasks {
            f(nt);
            match &nt.task.kind {
                TaskKind::Do(list) => list.each(f),
                TaskKind::For(l) => l.do_.each(f),
                TaskKind::Fork(l) => l.branches.each(f),
                TaskKind::Try(t) => {
                    t.try_.each(f);
                    if let Some(list) = &t.catch.do_ {
                        list.each(f);
                    }
                }
                TaskKind::Listen(l) => {
                    if let Some(list) = l.foreach.as_ref().and_then(|e| e.do_.as_ref()) {
                        list.each(f);
                    }
                }
                _ => {}
            }
        }
    }

    /// Position of the task called `name` in this list.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.name == name)
    }
}

#[derive(Clone, Debug)]
pub struct NamedTask {
    pub name: String,
    /// The task's JSON pointer in the document, such as `/do/0/tryGetPet/try/0/getPet`:
    /// the `$task.reference` and the `instance` of the errors it raises.
    pub reference: String,
    pub task: Task,
}

#[derive(Clone, Debug)]
pub struct Task {
    /// Runs the task only when true; a skipped task outputs its raw input.
    pub if_: Option<Expr>,
    pub input: Option<Input>,
    pub output: Option<Output>,
    pub export: Option<Export>,
    pub timeout: Option<TimeoutRef>,
    pub then: FlowDirective,
    pub metadata: IndexMap<String, Value>,
    pub kind: TaskKind,
    /// Whether an expression of this task itself (not of its subtasks) reads `$task`,
    /// so that the engine builds that descriptor only when someone reads it.
    pub reads_task: bool,
}

#[derive(Clone, Debug)]
pub enum TaskKind {
    Call(Box<Call>),
    Do(TaskList),
    Emit(Emit),
    For(For),
    Fork(Fork),
    Listen(Box<Listen>),
    Messages(Box<Messages>),
    Raise(Raise),
    Run(Box<Run>),
    Set(Template),
    Switch(Switch),
    Try(Box<Try>),
    Wait(Duration),
}

impl TaskKind {
    /// The key that names the kind in YAML.
    pub fn keyword(&self) -> &'static str {
        match self {
            TaskKind::Call(_) => "call",
            TaskKind::Do(_) => "do",
            TaskKind::Emit(_) => "emit",
            TaskKind::For(_) => "for",
            TaskKind::Fork(_) => "fork",
            TaskKind::Listen(_) | TaskKind::Messages(_) => "listen",
            TaskKind::Raise(_) => "raise",
            TaskKind::Run(_) => "run",
            TaskKind::Set(_) => "set",
            TaskKind::Switch(_) => "switch",
            TaskKind::Try(_) => "try",
            TaskKind::Wait(_) => "wait",
        }
    }
}

/// `emit`: a CloudEvent built from its attributes.
#[derive(Clone, Debug)]
pub struct Emit {
    /// Attributes in order (`source`, `type`, `data`, extensions, …); values may hold expressions.
    pub event: Vec<(String, Template)>,
}

/// `for`: run `do` for each item of a collection.
#[derive(Clone, Debug)]
pub struct For {
    /// Name of the item variable, `item` by default.
    pub each: String,
    /// The collection to iterate.
    pub in_: Expr,
    /// Name of the index variable, `index` by default.
    pub at: String,
    /// How many iterations may run at once: the skein extension `for.concurrency`.
    /// 1 (the default) is the DSL's sequential loop.
    pub concurrency: Concurrency,
    pub while_: Option<Expr>,
    pub do_: TaskList,
    /// Every iteration starts from the loop's input and the output is the list of
    /// theirs, even one at a time: iterations as parallel branches (Cloud Workflows'
    /// `parallel`). The DSL's loop threads each output into the next input instead.
    pub isolated: bool,
    /// A failed iteration does not stop the others; when all have ended, the loop
    /// faults with every failure in the problem's `data.errors` (Cloud Workflows'
    /// `exception_policy: continueAll`). Otherwise the first failure cancels the rest.
    pub continue_all: bool,
}

#[derive(Clone, Debug)]
pub enum Concurrency {
    Fixed(std::num::NonZeroU32),
    Expr(Expr),
}

/// `fork`: run branches concurrently.
#[derive(Clone, Debug)]
pub struct Fork {
    pub branches: TaskList,
    /// The first branch to finish wins and the others are cancelled.
    pub compete: bool,
}

#[derive(Clone, Debug)]
pub struct Listen {
    pub to: ConsumptionStrategy,
    pub read: ListenRead,
    pub foreach: Option<SubscriptionIterator>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListenRead {
    #[default]
    Data,
    Envelope,
    Raw,
}

/// Zigflow's `listen` to Temporal-style messages: handlers for signals and updates
/// sent to the running execution (through the server's API, into its inbox), and
/// queries answered from its state on demand.
#[derive(Clone, Debug)]
pub struct Messages {
    pub handlers: Vec<MessageHandler>,
    /// `all` and `one`: every signal and update handler must accept a message before
    /// the task ends; `any`: the first accepted message ends it. A listener with a query
    /// handler does not wait at all: it registers its handlers and goes on.
    pub all: bool,
}

impl Messages {
    /// Whether the task waits: it has no query handler.
    pub fn waits(&self) -> bool {
        !self.handlers.iter().any(|h| h.kind == MessageKind::Query)
    }
}

#[derive(Clone, Debug)]
pub struct MessageHandler {
    pub kind: MessageKind,
    /// The signal's, query's or update's name (Zigflow's `with.id`).
    pub name: String,
    /// Whether a received message completes the handler (Zigflow's `acceptIf`), read
    /// with the message's payload already in `$data`; without it, any message does.
    pub accept_if: Option<Template>,
    /// What a query or update answers (Zigflow's `with.data`).
    pub reply: Option<Template>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// Fire and forget; its payload goes into `$data` under the task's name.
    Signal,
    /// Read-only, answered from the state at the time it is asked; never journaled.
    Query,
    /// Handled once and answered; its payload goes into `$data` under its name.
    Update,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Signal => "signal",
            MessageKind::Query => "query",
            MessageKind::Update => "update",
        }
    }

    /// The CloudEvent type that carries a message of this kind into the inbox.
    pub fn event_type(self) -> &'static str {
        match self {
            MessageKind::Signal => "dev.skein.signal.v1",
            MessageKind::Query => "dev.skein.query.v1",
            MessageKind::Update => "dev.skein.update.v1",
        }
    }
}

/// Which events to wait for.
#[derive(Clone, Debug)]
pub enum ConsumptionStrategy {
    All(Vec<EventFilter>),
    Any {
        filters: Vec<EventFilter>,
        until: Option<Box<Until>>,
    },
    One(EventFilter),
}

/// When an `any` listener stops.
#[derive(Clone, Debug)]
pub enum Until {
    Condition(Expr),
    Events(ConsumptionStrategy),
}

#[derive(Clone, Debug)]
pub struct EventFilter {
    /// Attributes the event must match; values may be expressions.
    pub with: Vec<(String, Template)>,
    pub correlate: IndexMap<String, Correlation>,
}

#[derive(Clone, Debug)]
pub struct Correlation {
    pub from: Expr,
    pub expect: Option<Template>,
}

/// What to do with each consumed event or message.
#[derive(Clone, Debug)]
pub struct SubscriptionIterator {
    pub item: String,
    pub at: String,
    pub do_: Option<TaskList>,
    pub output: Option<Output>,
    pub export: Option<Export>,
}

#[derive(Clone, Debug)]
pub struct Raise {
    pub error: ErrorRef,
}

#[derive(Clone, Debug)]
pub struct Run {
    pub process: Process,
    /// Wait for the process to finish (the default).
    pub await_: bool,
    pub return_: ProcessReturn,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProcessReturn {
    #[default]
    Stdout,
    Stderr,
    Code,
    All,
    None,
}

#[derive(Clone, Debug)]
pub enum Process {
    Container(Box<Container>),
    Script(Script),
    Shell(Shell),
    Workflow(SubflowRef),
}

#[derive(Clone, Debug)]
pub struct Container {
    pub image: String,
    pub name: Option<Template>,
    pub command: Option<Template>,
    pub ports: Option<Value>,
    pub volumes: Option<Value>,
    pub environment: Option<Template>,
    pub stdin: Option<Template>,
    pub arguments: Vec<Template>,
    pub lifetime: Option<ContainerLifetime>,
    pub pull_policy: PullPolicy,
}

#[derive(Clone, Debug)]
pub enum ContainerLifetime {
    Always,
    Never,
    Eventually(Duration),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    #[default]
    IfNotPresent,
    Always,
    Never,
}

#[derive(Clone, Debug)]
pub struct Script {
    /// As written: `js`, `javascript`, `python`, ….
    pub language: String,
    pub source: ScriptSource,
    pub stdin: Option<Template>,
    pub arguments: Vec<Template>,
    pub environment: Option<Template>,
}

#[derive(Clone, Debug)]
pub enum ScriptSource {
    Code(String),
    External(ExternalResource),
}

#[derive(Clone, Debug)]
pub struct Shell {
    pub command: Template,
    pub stdin: Option<Template>,
    pub arguments: Vec<Template>,
    pub environment: Option<Template>,
}

/// `run.workflow`: a workflow found by namespace, name and version.
#[derive(Clone, Debug)]
pub struct SubflowRef {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub input: Option<Template>,
}

#[derive(Clone, Debug)]
pub struct Switch {
    pub cases: Vec<SwitchCase>,
}

#[derive(Clone, Debug)]
pub struct SwitchCase {
    pub name: String,
    /// No condition: the default case.
    pub when: Option<Expr>,
    pub then: FlowDirective,
}

#[derive(Clone, Debug)]
pub struct Try {
    pub try_: TaskList,
    pub catch: Catch,
    /// The catch's list starts from the input of the task of `try_` that faulted (the
    /// data as it stood when the error came), not from the try's own input: Cloud
    /// Workflows' `except`, which sees the variables as the `try` left them.
    pub catch_from_fault: bool,
}

#[derive(Clone, Debug)]
pub struct Catch {
    pub errors: Option<ErrorFilter>,
    /// Name of the error variable, `error` by default.
    pub as_: String,
    pub when: Option<Expr>,
    pub except_when: Option<Expr>,
    pub retry: Option<RetryRef>,
    pub do_: Option<TaskList>,
}

/// Static properties a caught error must have.
#[derive(Clone, Debug, Default)]
pub struct ErrorFilter {
    pub type_: Option<String>,
    pub status: Option<u16>,
    pub instance: Option<String>,
    pub title: Option<String>,
    pub details: Option<String>,
}
