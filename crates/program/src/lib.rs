//! The program the engine runs: what a workflow means once a front-end has read it.
//!
//! A front-end checks a document's syntax, compiles its expressions and lowers it into
//! these types; the engine walks them and knows no syntax. Today the one front-end is
//! `dsl` (Serverless Workflow 1.0.x), whose decoder builds a [`Program`] directly from
//! the positioned YAML tree, so the program's vocabulary is the DSL's: twelve task
//! kinds, the same flow directives and data-flow steps, and names and JSON pointers as
//! the DSL reference has them. A front-end for another syntax maps its constructs onto
//! the same nodes (ARCHITECTURE.md has the table for Cloud Workflows).
//!
//! The shape, from the top:
//! - [`Program`]: the document's identity, the workflow's own input and output steps and
//!   timeout, the [`Use`] tables that tasks refer to by name, and the top [`TaskList`].
//! - [`NamedTask`]: a name, the task's `reference` (a JSON pointer into the source, the
//!   `instance` of the errors it raises) and the [`Task`].
//! - [`Task`]: the data-flow steps around one [`TaskKind`] (`if_`, then `input`, the
//!   kind, `output`, `export`), its timeout, and its flow directive (`then`).
//! - Every computed value is an [`expr::Expr`] or an [`expr::Template`]: expressions sit
//!   behind the [`expr::Expression`] interface, so a program's expressions may be of any
//!   language its front-end compiled them in.
//!
//! A value of these types exists only for a document its front-end accepted: every
//! reference into the [`Use`] tables resolves, and every `then` target exists.

mod auth;
mod call;
mod task;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use expr::{Expr, Mode, Template};
use indexmap::IndexMap;
use serde_json::Value;

pub use auth::{
    AuthPolicy, AuthRef, BasicAuth, ClientAuthentication, GoogleAuth, OAuth2, OAuth2Client,
    OAuth2Endpoints, OAuth2Token, Secretable,
};
pub use call::{
    A2aCall, AsyncApiCall, AsyncApiConsume, AsyncApiMessage, AsyncApiServer, AsyncApiSubscription,
    Call, CallTarget, FunctionCall, GrpcCall, GrpcService, HttpCall, HttpOutput, McpCall,
    McpClient, McpTransport, OpenApiCall,
};
pub use task::{
    Catch, Concurrency, ConsumptionStrategy, Container, ContainerLifetime, Correlation, Emit,
    ErrorFilter, EventFilter, For, Fork, Listen, ListenRead, MessageHandler, MessageKind, Messages,
    NamedTask, Process, ProcessReturn, PullPolicy, Raise, Run, Script, ScriptSource, Shell,
    SubflowRef, SubscriptionIterator, Switch, SwitchCase, Task, TaskKind, TaskList, Try, Until,
};

/// A whole workflow, as the engine runs it.
#[derive(Clone, Debug)]
pub struct Program {
    pub document: Document,
    pub input: Option<Input>,
    pub use_: Use,
    pub do_: TaskList,
    pub timeout: Option<TimeoutRef>,
    pub output: Option<Output>,
    pub schedule: Option<Schedule>,
    pub evaluate: Evaluate,
    /// The document as parsed JSON: what `$workflow.definition` reads.
    pub definition: Value,
    /// Every place the document uses a skein extension (for `validate --strict`).
    pub extensions: Vec<ExtensionUse>,
    /// A bound on the tasks one execution starts that the front-end sets (Google's
    /// steps for Cloud Workflows), below the engine's own when it is lower.
    pub task_limit: Option<TaskLimit>,
    /// Zigflow's `$data`: an object that accumulates as the workflow runs (a `set`
    /// task's keys merged in, a `call` or `run` task's result under its name), which
    /// every expression reads as `$data`.
    pub accumulates_data: bool,
    /// Zigflow's continue-as-new: once the journal holds more than this many steps, the
    /// workflow records a checkpoint before its next top-level task (its input,
    /// `$context`, `$data`, the events it consumed) and forgets the steps before it, so
    /// that a workflow that runs for ever keeps a bounded journal under one id.
    pub continue_after: Option<u64>,
    /// Zigflow's `searchAttributes` by the reference of the task they sit on (`/` for
    /// the document's): labels the execution takes when the task starts.
    pub search_attributes: IndexMap<String, Template>,
}

/// A front-end's bound on the tasks of one execution, and the setting that raises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskLimit {
    pub tasks: u64,
    pub setting: &'static str,
}

/// Where a workflow uses something beyond the DSL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionUse {
    /// The extension, such as `for.concurrency`.
    pub name: &'static str,
    /// JSON pointer of the use.
    pub path: String,
    /// Byte range in the source.
    pub range: std::ops::Range<usize>,
}

#[derive(Clone, Debug)]
pub struct Document {
    /// The DSL version, 1.0.0 to 1.0.3.
    pub dsl: semver::Version,
    pub namespace: String,
    pub name: String,
    pub version: semver::Version,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub tags: IndexMap<String, Value>,
    pub metadata: IndexMap<String, Value>,
}

/// Reusable components, referenced by name from the rest of the document.
#[derive(Clone, Debug, Default)]
pub struct Use {
    pub authentications: IndexMap<String, AuthPolicy>,
    pub errors: IndexMap<String, ErrorDef>,
    /// In declaration order; each has a name.
    pub extensions: Vec<(String, Extension)>,
    pub functions: IndexMap<String, Task>,
    pub retries: IndexMap<String, RetryPolicy>,
    pub secrets: Vec<String>,
    pub timeouts: IndexMap<String, Timeout>,
    pub catalogs: IndexMap<String, Catalog>,
}

/// How runtime expressions are read (`evaluate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evaluate {
    pub mode: Mode,
}

/// `input`: validation, then transformation of raw input.
#[derive(Clone, Debug)]
pub struct Input {
    pub schema: Option<Schema>,
    pub from: Option<Template>,
}

/// `output`: transformation, then validation of output.
#[derive(Clone, Debug)]
pub struct Output {
    pub schema: Option<Schema>,
    pub as_: Option<Template>,
}

/// `export`: what the task's output makes of `$context`.
#[derive(Clone, Debug)]
pub struct Export {
    pub schema: Option<Schema>,
    pub as_: Option<Template>,
}

#[derive(Clone, Debug)]
pub struct Schema {
    /// `json`, optionally with a version: `json:2020-12`.
    pub format: String,
    pub source: SchemaSource,
    /// An inline document, compiled once when the workflow is read.
    pub compiled: Option<Arc<jsonschema::Validator>>,
}

#[derive(Clone, Debug)]
pub enum SchemaSource {
    Inline(Value),
    Resource(ExternalResource),
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub every: Option<Duration>,
    pub cron: Option<String>,
    pub after: Option<Duration>,
    pub on: Option<ConsumptionStrategy>,
}

/// A length of time: fixed when written, or computed by an expression that yields an ISO 8601 string.
#[derive(Clone, Debug)]
pub enum Duration {
    Fixed(StdDuration),
    Expr(Expr),
    /// Until a moment (Zigflow's `wait.until`; only a `wait` takes it): no time at all
    /// once it has passed.
    Until(Moment),
}

/// A moment in time, written or computed.
#[derive(Clone, Debug)]
pub enum Moment {
    /// Milliseconds since the Unix epoch.
    At(i64),
    /// An expression that yields an RFC 3339 time.
    Expr(Expr),
}

#[derive(Clone, Debug)]
pub struct Timeout {
    pub after: Duration,
}

/// A timeout given inline or by the name of one in `use.timeouts`.
#[derive(Clone, Debug)]
pub enum TimeoutRef {
    Use(String),
    Inline(Timeout),
}

/// Where execution goes after a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowDirective {
    /// The next task in the list (the default).
    Continue,
    /// Leave the current list, as if its last task had run.
    Exit,
    /// End the workflow gracefully.
    End,
    /// The task with this name, in the same list.
    Goto(String),
    /// Leave the innermost `for` loop, with this task's output as the loop's.
    Break,
    /// End this iteration of the innermost `for` loop; the next one begins.
    NextIteration,
}

/// A resource the workflow reads, such as an OpenAPI document.
#[derive(Clone, Debug)]
pub struct ExternalResource {
    pub name: Option<String>,
    pub endpoint: Endpoint,
}

/// Where to send a request: a URI (template) or an expression, and how to authenticate.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub uri: Uri,
    pub authentication: Option<AuthRef>,
}

#[derive(Clone, Debug)]
pub enum Uri {
    /// A literal URI, possibly with `{property}` placeholders.
    Template(expr::UriTemplate),
    /// A `${ … }` expression that yields the URI.
    Expr(Expr),
}

#[derive(Clone, Debug)]
pub struct Catalog {
    pub endpoint: Endpoint,
}

/// An extension from `use.extensions`: tasks run before and after tasks of a kind.
#[derive(Clone, Debug)]
pub struct Extension {
    /// `call`, `composite`, `emit`, `for`, `listen`, `raise`, `run`, `set`, `switch`, `try`, `wait` or `all`.
    pub extend: String,
    pub when: Option<Expr>,
    pub before: Option<TaskList>,
    pub after: Option<TaskList>,
}

/// An error definition, as raised by `raise` or declared in `use.errors`.
#[derive(Clone, Debug)]
pub struct ErrorDef {
    /// A URI, or an expression that yields one.
    pub type_: Template,
    pub status: u16,
    pub instance: Option<Template>,
    pub title: Option<Template>,
    pub detail: Option<Template>,
    /// What else the error carries (the problem's `data`): what a Cloud Workflows
    /// `raise` raised. The DSL has no syntax for it.
    pub data: Option<Template>,
}

/// An error given inline or by the name of one in `use.errors`.
#[derive(Clone, Debug)]
pub enum ErrorRef {
    Use(String),
    Inline(Box<ErrorDef>),
}

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub when: Option<Expr>,
    pub except_when: Option<Expr>,
    pub delay: Option<Duration>,
    pub backoff: Backoff,
    /// A growth factor of the delay per attempt (`delay × multiplier^(attempt − 1)`),
    /// in place of `backoff`: Cloud Workflows' backoff. The DSL has no syntax for it.
    pub multiplier: Option<f64>,
    /// The longest delay the growth may reach.
    pub max_delay: Option<Duration>,
    pub limit: RetryLimit,
    pub jitter: Option<Jitter>,
}

/// How the delay grows between attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backoff {
    /// The same delay each time (also when no backoff is given).
    #[default]
    Constant,
    /// The delay times the attempt number.
    Linear,
    /// The delay doubled at each attempt.
    Exponential,
}

#[derive(Clone, Debug, Default)]
pub struct RetryLimit {
    /// Most retries after the first attempt.
    pub attempt_count: Option<u32>,
    /// Longest time one attempt may take.
    pub attempt_duration: Option<Duration>,
    /// Longest time all attempts together may take.
    pub duration: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct Jitter {
    pub from: Duration,
    pub to: Duration,
}

/// A retry policy given inline or by the name of one in `use.retries`.
#[derive(Clone, Debug)]
pub enum RetryRef {
    Use(String),
    Inline(RetryPolicy),
}
