//! The durable journal: executions, their step records, their event logs, their
//! inboxes and the named cursors of the log's readers, behind the [`Store`] trait.
//!
//! The engine writes through [`Store::commit`], which only queues a [`Batch`]
//! and returns its [`Ticket`]. Queued batches are committed in order, several
//! to a transaction (group commit), and [`Store::durable`] waits until a ticket's
//! batch is on disk. So pure steps never wait, and many concurrent tasks share
//! one fsync. Each batch is atomic: a step record and the events it produces
//! land together or not at all.
//!
//! **API boundary:** this crate knows SQL and JSON values, nothing of the
//! workflow model. One implementation per database: [`sqlite::SqliteStore`] (embedded,
//! one process) and [`postgres::PostgresStore`] (several processes sharing the work).
//!
//! Several processes share one database through leases: a process runs an execution
//! only while it holds its lease ([`Store::claim`], [`Store::renew`]), and requests to
//! steer an execution ([`Store::request`]) reach whichever process holds it.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod front;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use async_trait::async_trait;
use serde_json::Value;
use serde_json::value::RawValue;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[cfg(feature = "sqlite")]
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the store's writer has stopped: {0}")]
    WriterStopped(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when the database could not be reached (as opposed to refusing the work):
    /// trying again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            Error::Postgres(e) => postgres::is_transient(e),
            #[cfg(feature = "sqlite")]
            Error::Database(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

/// Where an execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Running,
    /// Waiting for a timer or an event.
    Waiting,
    /// Paused by a user.
    Suspended,
    Completed,
    Faulted,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Waiting => "waiting",
            Status::Suspended => "suspended",
            Status::Completed => "completed",
            Status::Faulted => "faulted",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "running" => Status::Running,
            "waiting" => Status::Waiting,
            "suspended" => Status::Suspended,
            "completed" => Status::Completed,
            "faulted" => Status::Faulted,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }

    /// True once the execution can change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Faulted | Status::Cancelled
        )
    }
}

/// The project of executions made where there are no projects (no tokens configured).
pub const DEFAULT_PROJECT: &str = "default";

/// Names and values an execution is tagged with, to find it by.
pub type Labels = std::collections::BTreeMap<String, String>;

/// A new execution, as its creator describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewExecution {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub version: String,
    /// The workflow definition, as written.
    pub definition: String,
    pub input: Value,
    pub labels: Labels,
    /// The project it belongs to: who may see and steer it.
    pub project: String,
    pub created_at: Millis,
}

/// An execution as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Execution {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub definition: String,
    pub input: Value,
    pub labels: Labels,
    pub project: String,
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The last cancel, pause or resume asked for, which the process running it obeys.
    pub requested: Option<Request>,
}

/// What a user asked of a running execution, kept until it is obeyed (and after), so
/// that whichever process runs the execution, now or after a takeover, obeys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Cancel,
    Pause,
    Resume,
}

/// What [`Store::requests`] announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    /// A request was recorded for this execution.
    For(String),
    /// Requests may have been recorded without being announced here (the store lost its
    /// connection to other processes' notices for a while): read again those of the
    /// executions you run.
    Unknown,
}

impl Request {
    pub fn as_str(self) -> &'static str {
        match self {
            Request::Cancel => "cancel",
            Request::Pause => "pause",
            Request::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<Request> {
        Some(match s {
            "cancel" => Request::Cancel,
            "pause" => Request::Pause,
            "resume" => Request::Resume,
            _ => return None,
        })
    }
}

/// An execution a process holds the lease of, as [`Store::claim`] and [`Store::renew`]
/// return it: what the process needs to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub id: String,
    pub project: String,
    pub status: Status,
    pub requested: Option<Request>,
    /// When the lease was taken over from another process whose lease had expired: that
    /// process, and how long after the expiry the takeover came.
    pub taken_from: Option<(String, Millis)>,
}

impl Lease {
    /// Whether a run of it starts paused: as last requested, else as it stood.
    pub fn paused(&self) -> bool {
        match self.requested {
            Some(Request::Pause) => true,
            Some(Request::Resume) => false,
            _ => self.status == Status::Suspended,
        }
    }
}

/// Which executions [`Store::claim`] takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// This one, if it is free (new, or its lease expired).
    One(String),
    /// Free ones, oldest first, at most this many.
    Any(usize),
}

/// Which executions [`Store::list`] returns.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub status: Option<Status>,
    /// The workflow's name.
    pub name: Option<String>,
    /// Only executions with this label set to this value.
    pub label: Option<(String, String)>,
    /// Only executions of this project.
    pub project: Option<String>,
    /// Only executions older than this one (its creation time and id): the cursor of
    /// the previous page.
    pub before: Option<(Millis, String)>,
    /// Only executions created at or after this time.
    pub created_from: Option<Millis>,
    /// Only executions created before this time.
    pub created_until: Option<Millis>,
    /// Child executions (of `run: workflow`) too; their ids hold a `/`.
    pub children: bool,
    pub limit: usize,
}

/// What [`Store::holders`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Holders {
    /// Each process holding executions: its name, how many it holds, and when the
    /// first of those leases runs out.
    pub owners: Vec<(String, u64, Millis)>,
    /// Each named lease: its name, its holder, and when it runs out.
    pub named: Vec<(String, String, Millis)>,
}

/// The outcome of [`Store::create`].
#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    New,
    /// An execution with that id already existed; it is returned as it is.
    Existing(Box<Execution>),
}

/// What the journal knows about one step (a task at one position, in one attempt).
#[derive(Clone, Debug, PartialEq)]
pub enum StepState {
    /// Running; an execution that resumes runs it again.
    Started,
    /// Done: replay uses this output (and context, if the step changed it) as is.
    Completed {
        output: Value,
        context: Option<Value>,
    },
    /// Failed with this error (the DSL's error object); replay raises it again.
    Faulted {
        error: Value,
        context: Option<Value>,
    },
    /// Waiting for a timer that fires at `deadline`.
    Timer { deadline: Millis },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The step's position: the task path with iteration, visit and attempt marks.
    pub key: String,
    pub state: StepState,
}

/// An event of an execution's log.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Strictly increasing within the execution, from 1.
    pub seq: u64,
    pub time: Millis,
    /// A CloudEvent type, such as `io.serverlessworkflow.task.completed.v1`.
    pub type_: String,
    pub data: Json,
}

/// A JSON document kept as its text. Events are written once and then only stored and
/// sent on, so they are serialized once, where they are made, and parsed only by a
/// reader that needs their fields.
#[derive(Clone, Debug)]
pub struct Json(Box<str>);

impl Json {
    /// Serializes `value`.
    pub fn of<T: serde::Serialize + ?Sized>(value: &T) -> Json {
        // Serializing to JSON text fails only for maps with non-string keys and for
        // types whose `Serialize` fails by design; none reaches an event.
        Json(
            serde_json::to_string(value)
                .expect("an event serializes to JSON")
                .into_boxed_str(),
        )
    }

    /// Takes text that the caller wrote as JSON piece by piece (a lifecycle event from
    /// a prepared head, say), without parsing it again: on the hot path, checking costs
    /// more than writing. Debug builds, and so every test, check it; a reader checks
    /// what it reads back ([`Json::from_text`]).
    pub fn from_written(text: String) -> Json {
        debug_assert!(
            parse::<serde::de::IgnoredAny>(&text).is_ok(),
            "not JSON: {text}"
        );
        Json(text.into_boxed_str())
    }

    /// Takes JSON text, as stored, checking that it is JSON.
    pub fn from_text(text: &str) -> Result<Json> {
        parse::<serde::de::IgnoredAny>(text)?;
        Ok(Json(text.into()))
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    /// The document as a raw JSON value, to embed in a larger document as it is.
    pub fn raw(&self) -> &RawValue {
        let mut de = serde_json::Deserializer::from_str(&self.0);
        de.disable_recursion_limit();
        // The text was checked when it was made or read.
        <&RawValue as serde::Deserialize>::deserialize(&mut de).unwrap_or(RawValue::NULL)
    }

    /// Parses the document, for a reader that needs its fields.
    pub fn value(&self) -> Value {
        // The text was checked when it was made or read.
        parse(&self.0).unwrap_or(Value::Null)
    }
}

/// Parses JSON the store wrote. serde_json alone stops at 128 levels, but the engine
/// allows results 256 levels deep (and events wrap them once more), so the limit is
/// lifted here. What the store reads back it wrote itself, from bounded values, so the
/// depth stays small enough for any thread's stack.
pub(crate) fn parse<'de, T: serde::Deserialize<'de>>(text: &'de str) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    T::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| Error::Corrupt(format!("stored JSON does not parse: {e}")))
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.text() == other.text()
    }
}

impl From<&Value> for Json {
    fn from(value: &Value) -> Json {
        Json::of(value)
    }
}

/// Which events [`Store::log`] returns.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// Only events after this position.
    pub after: u64,
    pub execution: Option<String>,
    /// The workflow's name.
    pub name: Option<String>,
    /// Only events of executions with this label set to this value.
    pub label: Option<(String, String)>,
    /// Only events of executions of this project.
    pub project: Option<String>,
    /// The event's type, such as `io.serverlessworkflow.task.completed.v1`.
    pub type_: Option<String>,
    pub limit: usize,
}

/// A page of [`Store::log`].
#[derive(Clone, Debug, PartialEq)]
pub struct LogPage {
    pub events: Vec<Logged>,
    /// How far the query looked: the next query with a filter can start here, not at the
    /// last event that matched.
    pub scanned: u64,
}

/// An event in the log of all executions.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged {
    /// Its position in that log: commit order, strictly increasing.
    pub pos: u64,
    pub execution: String,
    pub event: Event,
}

/// See [`Store::observe_commits`].
pub type CommitObserver = std::sync::Arc<dyn Fn(std::time::Duration, usize) + Send + Sync>;

/// New events of one execution, committed.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub execution: std::sync::Arc<str>,
    pub last_seq: u64,
    /// The execution's events in this commit, in order, so that a subscriber that has
    /// read everything before them need not read the journal again. Filled only when
    /// someone subscribes.
    pub events: std::sync::Arc<[Event]>,
}

impl Committed {
    /// A notice that something may have been committed that no notice told of (notices
    /// from another process were lost with a connection): every subscriber reads the
    /// journal.
    pub fn unknown() -> Committed {
        Committed {
            execution: std::sync::Arc::from(""),
            last_seq: u64::MAX,
            events: std::sync::Arc::from([]),
        }
    }

    /// Whether the notice may concern execution `id`.
    pub fn concerns(&self, id: &str) -> bool {
        self.execution.is_empty() || *self.execution == *id
    }
}

/// One atomic change to one execution: step records, events, and perhaps a new status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub execution: String,
    pub steps: Vec<Step>,
    pub events: Vec<Event>,
    pub status: Option<StatusChange>,
}

/// A new status, with the output or error that ends an execution.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub at: Millis,
}

/// Everything recorded for an execution, as the engine needs it to resume.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Journal {
    pub steps: Vec<Step>,
    /// The highest event sequence number recorded, 0 if none.
    pub last_seq: u64,
}

/// The position of a batch in the commit order. Ticket `n` is durable once every
/// batch up to `n` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// A revision of a named workflow: a definition deployed under a name in a project,
/// which executions can be started from (`workflowRef`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub project: String,
    pub name: String,
    /// 1 for the first definition deployed under the name, then one more for each
    /// different one.
    pub revision: u64,
    pub definition: String,
    pub created_at: Millis,
}

/// A schedule as stored: what it starts and when (`spec`, the API's JSON), and how far
/// it got (`state`, the scheduler's).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSchedule {
    pub project: String,
    pub id: String,
    pub spec: Value,
    pub state: Value,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// How hard commits hold on to the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is on disk before it is acknowledged (fsync per group commit).
    #[default]
    Full,
    /// Commits survive a crash of the process, but the last ones may be lost if the
    /// machine loses power. Much faster on slow disks.
    Process,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Creates an execution, or returns the existing one with the same id.
    async fn create(&self, new: NewExecution) -> Result<Created>;

    async fn execution(&self, id: &str) -> Result<Option<Execution>>;

    /// Ids of executions that are not final (to resume after a restart), oldest first.
    /// Child executions (their ids hold a `/`) are left out: their parents resume them.
    async fn unfinished(&self) -> Result<Vec<String>>;

    /// Executions matching `query`, newest first.
    async fn list(&self, query: ListQuery) -> Result<Vec<Execution>>;

    /// The step records and event count of an execution.
    async fn journal(&self, id: &str) -> Result<Journal>;

    /// Events of an execution after `after_seq`, in order, at most `limit`.
    async fn events(&self, id: &str, after_seq: u64, limit: usize) -> Result<Vec<Event>>;

    /// Events of all executions after position `query.after` in the log of all
    /// executions (commit order), filtered, at most `query.limit`.
    async fn log(&self, query: LogQuery) -> Result<LogPage>;

    /// The position of the last event in the log of all executions before `time`
    /// (0 if none): the cursor from which to read the events at or after `time`.
    async fn pos_before(&self, time: Millis) -> Result<u64>;

    /// How many events of each type execution `id` has, for progress counters.
    async fn event_counts(&self, id: &str) -> Result<Vec<(String, u64)>>;

    /// The events of one type of execution `id`, in order.
    async fn events_of_type(&self, id: &str, type_: &str) -> Result<Vec<Event>>;

    /// The sequence number of the last event of `id` before `time` (0 if none): the
    /// cursor from which to read the events at or after `time`.
    async fn seq_before(&self, id: &str, time: Millis) -> Result<u64>;

    /// How many executions are in each status.
    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>>;

    /// Who holds what: the executions each process holds under lease, and the named
    /// leases (schedules, progress reports), for a picture of the replicas.
    async fn holders(&self) -> Result<Holders>;

    /// Calls `observer` after each commit with its duration (from the start of its
    /// transaction to the end of the commit) and the number of commands it held.
    fn observe_commits(&self, observer: CommitObserver);

    /// Tells, after each commit, which executions have new events, up to which
    /// sequence number. A receiver that falls behind misses notices (and learns it
    /// from `RecvError::Lagged`), never events: those it reads from the journal.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Committed>;

    /// Queues a batch for the next group commit and returns its ticket at once.
    fn commit(&self, batch: Batch) -> Ticket;

    /// Waits until the batch of `ticket`, and every batch before it, is durable.
    async fn durable(&self, ticket: Ticket) -> Result<()>;

    /// Appends an event to an execution's inbox (for `listen`); returns its inbox position.
    async fn deliver(&self, id: &str, event: Value) -> Result<u64>;

    /// Inbox events of an execution after position `after`, in order.
    async fn inbox(&self, id: &str, after: u64) -> Result<Vec<(u64, Value)>>;

    /// The value of the named cursor, if it was ever set: how far a reader of the log
    /// (such as the progress callbacks) got.
    async fn cursor(&self, name: &str) -> Result<Option<Value>>;

    /// Sets named cursors, all in one transaction; returns once they are committed.
    async fn set_cursors(&self, cursors: Vec<(String, Value)>) -> Result<()>;

    /// Takes the leases of unfinished top-level executions that nobody holds (new ones,
    /// or those whose holder let its lease expire) for `owner`, for `lease_ms`. Several
    /// processes may claim at once: each execution goes to one of them.
    async fn claim(&self, owner: &str, lease_ms: Millis, which: Claim) -> Result<Vec<Lease>>;

    /// Extends `owner`'s leases of unfinished executions by `lease_ms` from now, and
    /// returns them: everything `owner` may run. One that is missing was taken over.
    async fn renew(&self, owner: &str, lease_ms: Millis) -> Result<Vec<Lease>>;

    /// Gives up `owner`'s leases at once (at a shutdown), named ones too, so that others
    /// take over without waiting for the leases to expire.
    async fn release(&self, owner: &str) -> Result<()>;

    /// Who holds the lease of execution `id` now (unexpired), if anyone: where it runs.
    async fn holder(&self, id: &str) -> Result<Option<String>>;

    /// Takes or keeps the named lease `name` (a job one process does for all, such as
    /// reporting progress) for `owner`, for `lease_ms` from now, unless another owner
    /// holds it unexpired. True if `owner` holds it now.
    async fn hold(&self, name: &str, owner: &str, lease_ms: Millis) -> Result<bool>;

    /// Records a request to cancel, pause or resume `id` and tells the process that
    /// runs it ([`Store::requests`]). False if `id` does not exist or has ended.
    async fn request(&self, id: &str, request: Request) -> Result<bool>;

    /// Announces the executions for which a request was recorded, by any process.
    fn requests(&self) -> tokio::sync::broadcast::Receiver<Requested>;

    /// Deploys `definition` as the workflow `name` of `project`: a new revision, unless
    /// it is the definition of the latest one, which is returned as it is (with false).
    async fn deploy(&self, project: &str, name: &str, definition: &str)
    -> Result<(Deployed, bool)>;

    /// A revision of a named workflow: the latest, or the one given.
    async fn deployed(
        &self,
        project: &str,
        name: &str,
        revision: Option<u64>,
    ) -> Result<Option<Deployed>>;

    /// The latest revision of each named workflow of `project`, by name; with `name`,
    /// every revision of that one, newest first.
    async fn deployments(&self, project: &str, name: Option<&str>) -> Result<Vec<Deployed>>;

    /// Deletes a named workflow with all its revisions; false if there was none.
    /// Executions started from it keep their definitions.
    async fn undeploy(&self, project: &str, name: &str) -> Result<bool>;

    /// Sets and removes labels of execution `id` as it runs (Zigflow's search
    /// attributes); the others stay.
    async fn update_labels(&self, id: &str, set: Labels, unset: Vec<String>) -> Result<()>;

    /// Deletes the steps of execution `id` whose keys start with `prefix`: what a
    /// checkpoint made needless (a workflow continued as new). Returns how many.
    async fn forget_steps(&self, id: &str, prefix: &str) -> Result<u64>;

    /// Creates schedule `id` of `project`; false (and nothing changed) if it exists.
    async fn create_schedule(
        &self,
        project: &str,
        id: &str,
        spec: Value,
        state: Value,
    ) -> Result<bool>;

    /// Replaces what is given of a schedule (its spec, its state); false if there is
    /// none.
    async fn update_schedule(
        &self,
        project: &str,
        id: &str,
        spec: Option<Value>,
        state: Option<Value>,
    ) -> Result<bool>;

    /// One schedule.
    async fn schedule(&self, project: &str, id: &str) -> Result<Option<StoredSchedule>>;

    /// The schedules of `project` (of every project with `None`), by project and id.
    async fn schedules(&self, project: Option<&str>) -> Result<Vec<StoredSchedule>>;

    /// Deletes a schedule; false if there was none. Executions it started go on.
    async fn delete_schedule(&self, project: &str, id: &str) -> Result<bool>;
}
