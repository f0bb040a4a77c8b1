//! The shared store: PostgreSQL, for several skein processes on one database.
//!
//! Writes of the journal go through one writer task per process, which folds queued
//! batches into one transaction (group commit), as the SQLite store does. What changes
//! with several processes:
//!
//! - **The log of all executions is numbered in commit order across processes.** A
//!   transaction with events takes its positions from the one row of `log_head`
//!   (`UPDATE … RETURNING`) just before it commits, so the row's lock orders the
//!   transactions that append events, and a reader that sees position `n` sees every
//!   position before it.
//! - **Leases fence the writes.** A batch is applied only if its execution (or, for a
//!   child, its top-level execution) has no owner or is owned by this process; the
//!   rows are share-locked for the transaction, so a takeover (`FOR UPDATE SKIP
//!   LOCKED`) cannot slip in between the check and the commit. The batches of an
//!   execution this process lost are dropped and logged: its new owner re-runs what was
//!   in flight.
//! - **Notices cross processes.** Each commit with events sends `NOTIFY skein_events`
//!   listing the executions and their last sequence numbers; a listener task turns the
//!   notices of other processes into [`Committed`] notices (without events: a subscriber
//!   reads them from the journal). When the listener's connection drops, notices may
//!   have been lost, so it announces [`Committed::unknown`].
//! - **A lost connection is retried, and nothing is applied twice.** A group that
//!   fails for want of the database is retried with backoff until the database is back
//!   (meanwhile [`Store::durable`] waits: executions stall). Each group records its
//!   number in `writers` in the same transaction, so when a commit's outcome is unknown
//!   (the connection dropped during `COMMIT`) the retry first looks there.

//!
//! The driver by concern: `writer` (the group commit), `listener` (other processes'
//! notices), `reads` (queries, tried again while the database is away) and `leases`
//! (who runs what, and steering requests). Its migrations are the `.sql` files in
//! `migrations/postgres/`.

mod leases;
mod listener;
mod reads;
mod schedules;
mod workflows;
mod writer;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::front::Front;
use crate::{
    Batch, Claim, CommitObserver, Committed, Created, Deployed, Error, Event, Execution, Journal,
    Json, Labels, Lease, ListQuery, LogPage, LogQuery, Millis, NewExecution, Request, Requested,
    Result, Status, Store, StoredSchedule, Ticket,
};
use writer::{Command, Writer};

/// Longest wait between two attempts of a group while the database is away.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How many times a read is tried when the database does not answer.
const READ_ATTEMPTS: u32 = 3;

/// The largest `NOTIFY` payload sent; PostgreSQL takes up to 8000 bytes.
const MAX_PAYLOAD: usize = 7000;

const EVENTS_CHANNEL: &str = "skein_events";
const REQUESTS_CHANNEL: &str = "skein_requests";

/// The migrations, in order, from `migrations/postgres/` (sqlx checksums their text:
/// an applied one is never edited, a change is a new file). Several processes may run
/// them at once at start: sqlx takes an advisory lock, and refuses a database migrated
/// by a newer skein.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "journal",
        include_str!("../../migrations/postgres/0001_journal.sql"),
    ),
    (
        2,
        "apply a group in one statement",
        // A group of batches in one round trip: the writer's commit latency is most of an
        // execution's, so its statements run inside the database.
        include_str!("../../migrations/postgres/0002_apply_a_group_in_one_statement.sql"),
    ),
    (
        3,
        "named leases",
        include_str!("../../migrations/postgres/0003_named_leases.sql"),
    ),
    (
        4,
        "named workflows",
        include_str!("../../migrations/postgres/0004_workflows.sql"),
    ),
    (
        5,
        "schedules",
        include_str!("../../migrations/postgres/0005_schedules.sql"),
    ),
    (
        6,
        "executions by project",
        include_str!("../../migrations/postgres/0006_executions_by_project.sql"),
    ),
];

/// The database's clock in milliseconds: leases are measured by it, so that processes
/// with skewed clocks agree.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// How to reach the database and behave on it.
#[derive(Clone, Debug)]
pub struct Options {
    /// `postgres://user:password@host:port/database?…`
    pub url: String,
    /// Connections kept open to the database (the writer, the listener and reads).
    pub pool_size: u32,
    /// This process's name among those sharing the database: the owner of its leases.
    /// No two processes running at once may share it; a process started again under
    /// the name of one that stopped takes that one's leases over at once.
    pub node: String,
    /// Longest wait for a free connection (or for the database) before a read fails.
    pub acquire_timeout: Duration,
}

impl Options {
    pub fn new(url: &str) -> Options {
        Options {
            url: url.to_string(),
            pool_size: 16,
            node: format!("node-{}", uuid::Uuid::new_v4().simple()),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

pub struct PostgresStore {
    pool: PgPool,
    front: Front<mpsc::UnboundedSender<(u64, Command)>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PostgresStore {
    /// Refreshes the planner's statistics of the executions table, as autovacuum does in
    /// the background: for a benchmark right after a bulk load, whose plans would
    /// otherwise be made for a table the planner believes nearly empty.
    pub async fn analyze(&self) -> Result<()> {
        sqlx::query("ANALYZE executions")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Connects (trying again for `patience` while the database does not answer),
    /// applies the migrations, and starts the writer and the listener.
    pub async fn connect(options: Options, patience: Duration) -> Result<PostgresStore> {
        let pool_options = PgPoolOptions::new()
            .max_connections(options.pool_size.max(3))
            .acquire_timeout(options.acquire_timeout);
        let deadline = Instant::now() + patience;
        let mut delay = Duration::from_millis(100);
        let pool = loop {
            match pool_options.clone().connect(&options.url).await {
                Ok(pool) => break pool,
                Err(e) if is_transient(&e) && Instant::now() + delay < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                Err(e) => return Err(e.into()),
            }
        };
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                sqlx::migrate::Migration::new(
                    *version,
                    (*name).into(),
                    sqlx::migrate::MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(*sql),
                    false,
                )
            })
            .collect();
        sqlx::migrate::Migrator::with_migrations(migrations)
            .run(&pool)
            .await?;

        let node: Arc<str> = Arc::from(options.node.as_str());
        let (tx, rx) = mpsc::unbounded_channel();
        let (front, publisher) = Front::new(tx);
        // Group numbers go on from where a process of the same name left them, so that a
        // group is never taken for an earlier one that was committed.
        let group = writer::last_group(&pool, &node).await?;
        let writer = tokio::spawn(writer::write_loop(
            group,
            Writer {
                pool: pool.clone(),
                node: node.clone(),
                publisher,
                lost: HashSet::new(),
            },
            rx,
        ));
        let (listening, ready) = oneshot::channel();
        let listener = tokio::spawn(listener::listen_loop(
            pool.clone(),
            node.clone(),
            front.notices().clone(),
            front.requests().clone(),
            listening,
        ));
        // Notices sent before the listener listens would be lost to this process.
        let _ = tokio::time::timeout(options.acquire_timeout, ready).await;
        Ok(PostgresStore {
            pool,
            front,
            tasks: vec![writer.abort_handle(), listener.abort_handle()],
        })
    }

    /// Queues `command` for the writer and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.front.send(command(tx));
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.front.stopped()),
        }
    }

    /// Runs a read, trying it again a few times while the database does not answer.
    async fn read<T, F, Fut>(&self, read: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match read().await {
                Err(e) if e.is_unavailable() && attempt < READ_ATTEMPTS => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// True for errors that say the database could not be reached or asked to try again
/// (connection lost, shutting down, starting up, deadlock, serialization failure), as
/// opposed to errors in the work itself.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("57P")
                || matches!(&*code, "40001" | "40P01" | "53300" | "55P03")
        }),
        _ => false,
    }
}

fn json(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value always serializes")
}

const EXECUTION_COLUMNS: &str = "id, namespace, name, version, definition, input, status, output, error, created_at, updated_at, labels, project, requested";

fn execution_of(row: &sqlx::postgres::PgRow) -> Result<Execution> {
    let status: String = row.try_get("status")?;
    let output: Option<String> = row.try_get("output")?;
    let error: Option<String> = row.try_get("error")?;
    let requested: Option<String> = row.try_get("requested")?;
    Ok(Execution {
        id: row.try_get("id")?,
        namespace: row.try_get("namespace")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        definition: row.try_get("definition")?,
        input: crate::parse(row.try_get("input")?)?,
        labels: crate::parse(row.try_get("labels")?)?,
        project: row.try_get("project")?,
        status: parse_status(&status)?,
        output: output.as_deref().map(crate::parse).transpose()?,
        error: error.as_deref().map(crate::parse).transpose()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        requested: requested.as_deref().and_then(Request::parse),
    })
}

fn parse_status(status: &str) -> Result<Status> {
    Status::parse(status).ok_or_else(|| Error::Corrupt(format!("unknown status `{status}`")))
}

fn lease_of(row: &sqlx::postgres::PgRow) -> Result<Lease> {
    let status: String = row.try_get("status")?;
    let requested: Option<String> = row.try_get("requested")?;
    Ok(Lease {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        status: parse_status(&status)?,
        requested: requested.as_deref().and_then(Request::parse),
        taken_from: None,
    })
}

fn event_of(row: &sqlx::postgres::PgRow, type_: Option<&str>) -> Result<Event> {
    let seq: i64 = row.try_get("seq")?;
    Ok(Event {
        seq: seq as u64,
        time: row.try_get("time")?,
        type_: match type_ {
            Some(t) => t.to_string(),
            None => row.try_get("type")?,
        },
        data: Json::from_text(row.try_get("data")?)?,
    })
}

const FINAL: &str = "('completed', 'faulted', 'cancelled')";

#[async_trait]
impl Store for PostgresStore {
    async fn create(&self, new: NewExecution) -> Result<Created> {
        self.ask(|tx| Command::Create(new, tx)).await
    }

    async fn execution(&self, id: &str) -> Result<Option<Execution>> {
        reads::execution(self, id).await
    }

    async fn unfinished(&self) -> Result<Vec<String>> {
        reads::unfinished(self).await
    }

    async fn holders(&self) -> Result<crate::Holders> {
        reads::holders(self).await
    }

    async fn list(&self, query: ListQuery) -> Result<Vec<Execution>> {
        reads::list(self, query).await
    }

    async fn journal(&self, id: &str) -> Result<Journal> {
        reads::journal(self, id).await
    }

    async fn events(&self, id: &str, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        reads::events(self, id, after_seq, limit).await
    }

    async fn log(&self, query: LogQuery) -> Result<LogPage> {
        reads::log(self, query).await
    }

    async fn pos_before(&self, time: Millis) -> Result<u64> {
        reads::pos_before(self, time).await
    }

    async fn event_counts(&self, id: &str) -> Result<Vec<(String, u64)>> {
        reads::event_counts(self, id).await
    }

    async fn events_of_type(&self, id: &str, type_: &str) -> Result<Vec<Event>> {
        reads::events_of_type(self, id, type_).await
    }

    async fn seq_before(&self, id: &str, time: Millis) -> Result<u64> {
        reads::seq_before(self, id, time).await
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>> {
        reads::count_by_status(self).await
    }

    fn observe_commits(&self, observer: CommitObserver) {
        self.front.observe(observer);
    }

    fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.front.notices().subscribe()
    }

    fn commit(&self, batch: Batch) -> Ticket {
        self.front.send(Command::Batch(batch))
    }

    async fn durable(&self, ticket: Ticket) -> Result<()> {
        self.front.durable(ticket, || Command::Flush).await
    }

    async fn deliver(&self, id: &str, event: Value) -> Result<u64> {
        let id = id.to_string();
        self.ask(|tx| Command::Deliver(id, event, tx)).await
    }

    async fn inbox(&self, id: &str, after: u64) -> Result<Vec<(u64, Value)>> {
        reads::inbox(self, id, after).await
    }

    async fn cursor(&self, name: &str) -> Result<Option<Value>> {
        reads::cursor(self, name).await
    }

    async fn set_cursors(&self, cursors: Vec<(String, Value)>) -> Result<()> {
        self.ask(|tx| Command::SetCursors(cursors, tx)).await
    }

    async fn claim(&self, owner: &str, lease_ms: Millis, which: Claim) -> Result<Vec<Lease>> {
        leases::claim(self, owner, lease_ms, which).await
    }

    async fn renew(&self, owner: &str, lease_ms: Millis) -> Result<Vec<Lease>> {
        leases::renew(self, owner, lease_ms).await
    }

    async fn release(&self, owner: &str) -> Result<()> {
        leases::release(self, owner).await
    }

    async fn hold(&self, name: &str, owner: &str, lease_ms: Millis) -> Result<bool> {
        leases::hold(self, name, owner, lease_ms).await
    }

    async fn request(&self, id: &str, request: Request) -> Result<bool> {
        leases::request(self, id, request).await
    }

    fn requests(&self) -> broadcast::Receiver<Requested> {
        self.front.requests().subscribe()
    }

    async fn deploy(
        &self,
        project: &str,
        name: &str,
        definition: &str,
    ) -> Result<(Deployed, bool)> {
        workflows::deploy(self, project, name, definition).await
    }

    async fn deployed(
        &self,
        project: &str,
        name: &str,
        revision: Option<u64>,
    ) -> Result<Option<Deployed>> {
        workflows::deployed(self, project, name, revision).await
    }

    async fn deployments(&self, project: &str, name: Option<&str>) -> Result<Vec<Deployed>> {
        workflows::deployments(self, project, name).await
    }

    async fn undeploy(&self, project: &str, name: &str) -> Result<bool> {
        workflows::undeploy(self, project, name).await
    }

    async fn holder(&self, id: &str) -> Result<Option<String>> {
        let sql = format!("SELECT owner FROM executions WHERE id = $1 AND lease_until > {NOW_MS}");
        let (sql, pool) = (&sql, &self.pool);
        self.read(move || async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(match row {
                Some(row) => row.try_get::<Option<String>, _>("owner")?,
                None => None,
            })
        })
        .await
    }

    async fn update_labels(&self, id: &str, set: Labels, unset: Vec<String>) -> Result<()> {
        let pool = &self.pool;
        let set = serde_json::to_string(&set).map_err(|e| Error::Corrupt(e.to_string()))?;
        let (set, unset) = (&set, &unset);
        self.read(move || async move {
            sqlx::query(
                "UPDATE executions SET labels = ((labels::jsonb - $3::text[]) || $2::jsonb)::text
                 WHERE id = $1",
            )
            .bind(id)
            .bind(set)
            .bind(unset)
            .execute(pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn forget_steps(&self, id: &str, prefix: &str) -> Result<u64> {
        let pool = &self.pool;
        self.read(move || async move {
            let done =
                sqlx::query("DELETE FROM steps WHERE execution_id = $1 AND starts_with(key, $2)")
                    .bind(id)
                    .bind(prefix)
                    .execute(pool)
                    .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn create_schedule(
        &self,
        project: &str,
        id: &str,
        spec: Value,
        state: Value,
    ) -> Result<bool> {
        schedules::create(self, project, id, spec, state).await
    }

    async fn update_schedule(
        &self,
        project: &str,
        id: &str,
        spec: Option<Value>,
        state: Option<Value>,
    ) -> Result<bool> {
        schedules::update(self, project, id, spec, state).await
    }

    async fn schedule(&self, project: &str, id: &str) -> Result<Option<StoredSchedule>> {
        schedules::one(self, project, id).await
    }

    async fn schedules(&self, project: Option<&str>) -> Result<Vec<StoredSchedule>> {
        schedules::all(self, project).await
    }

    async fn delete_schedule(&self, project: &str, id: &str) -> Result<bool> {
        schedules::delete(self, project, id).await
    }
}
