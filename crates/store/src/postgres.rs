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

use std::collections::{HashMap, HashSet};
use std::future::Future;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Postgres, Row};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::progress::Progress;
use crate::{
    Batch, Claim, CommitObserver, Committed, Created, Error, Event, Execution, Journal, Json,
    Lease, ListQuery, LogPage, LogQuery, Logged, Millis, NewExecution, Request, Requested, Result,
    Status, Step, StepState, Store, Ticket,
};

/// Most commands folded into one transaction.
const MAX_GROUP: usize = 4096;

/// Commit notices kept for subscribers that have not read them yet.
const NOTICES: usize = 4096;

/// Longest a batch nobody waits for stays uncommitted (see the SQLite store).
const LINGER: Duration = Duration::from_millis(5);

/// Longest wait between two attempts of a group while the database is away.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How many times a read is tried when the database does not answer.
const READ_ATTEMPTS: u32 = 3;

/// The largest `NOTIFY` payload sent; PostgreSQL takes up to 8000 bytes.
const MAX_PAYLOAD: usize = 7000;

const EVENTS_CHANNEL: &str = "skein_events";
const REQUESTS_CHANNEL: &str = "skein_requests";

/// The migrations, in order. Several processes may run them at once at start: sqlx
/// takes an advisory lock, and refuses a database migrated by a newer skein.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "journal",
        "
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    project TEXT NOT NULL DEFAULT 'default',
    owner TEXT,
    lease_until BIGINT,
    requested TEXT
);
CREATE INDEX executions_by_status ON executions (status, created_at);
CREATE INDEX executions_by_creation ON executions (created_at DESC, id DESC);
CREATE INDEX executions_unfinished ON executions (created_at, id)
    WHERE status NOT IN ('completed', 'faulted', 'cancelled');
CREATE INDEX executions_by_owner ON executions (owner) WHERE owner IS NOT NULL;
CREATE TABLE steps (
    execution_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT,
    context TEXT,
    deadline BIGINT,
    PRIMARY KEY (execution_id, key)
);
CREATE TABLE events (
    execution_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time BIGINT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    pos BIGINT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE UNIQUE INDEX events_by_pos ON events (pos);
CREATE TABLE inbox (
    execution_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE log_head (
    one INT PRIMARY KEY CHECK (one = 1),
    pos BIGINT NOT NULL
);
INSERT INTO log_head VALUES (1, 0);
CREATE TABLE writers (
    node TEXT PRIMARY KEY,
    last_group BIGINT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
",
    ),
    (
        2,
        "apply a group in one statement",
        // A group of batches in one round trip: the writer's commit latency is most of an
        // execution's, so its statements run inside the database.
        "
CREATE FUNCTION skein_apply(
    p_node text, p_group bigint, p_roots text[],
    s_exec text[], s_key text[], s_state text[], s_payload text[], s_context text[],
    s_deadline bigint[],
    x_id text[], x_status text[], x_output text[], x_error text[], x_at bigint[],
    e_exec text[], e_seq bigint[], e_time bigint[], e_type text[], e_data text[],
    p_notice text
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    lost text[];
    n bigint;
    head bigint;
BEGIN
    -- Fencing: executions another process holds keep their rows as they are. The rows
    -- stay share-locked to the commit, so no takeover slips in between.
    SELECT coalesce(array_agg(r.id), '{}') INTO lost FROM (
        SELECT id, owner FROM executions WHERE id = ANY(p_roots) ORDER BY id FOR SHARE
    ) r WHERE r.owner IS NOT NULL AND r.owner <> p_node;

    INSERT INTO steps (execution_id, key, state, payload, context, deadline)
        SELECT u.e, u.k, u.st, u.p, u.c, u.d
        FROM unnest(s_exec, s_key, s_state, s_payload, s_context, s_deadline)
            AS u(e, k, st, p, c, d)
        WHERE split_part(u.e, '/', 1) <> ALL(lost)
    ON CONFLICT (execution_id, key) DO UPDATE SET state = excluded.state,
        payload = excluded.payload, context = excluded.context, deadline = excluded.deadline;

    UPDATE executions x SET status = c.st, output = COALESCE(c.o, x.output),
        error = COALESCE(c.er, x.error), updated_at = c.at
    FROM unnest(x_id, x_status, x_output, x_error, x_at) AS c(id, st, o, er, at)
    WHERE x.id = c.id AND split_part(c.id, '/', 1) <> ALL(lost);

    SELECT count(*) INTO n FROM unnest(e_exec) AS u(e) WHERE split_part(u.e, '/', 1) <> ALL(lost);
    IF n > 0 THEN
        -- Last, so that the row that orders every process's appends is held briefly.
        UPDATE log_head SET pos = pos + n RETURNING pos INTO head;
        INSERT INTO events (execution_id, seq, time, type, data, pos)
            SELECT u.e, u.s, u.t, u.ty, u.d, head - n + row_number() OVER (ORDER BY u.o)
            FROM unnest(e_exec, e_seq, e_time, e_type, e_data) WITH ORDINALITY
                AS u(e, s, t, ty, d, o)
            WHERE split_part(u.e, '/', 1) <> ALL(lost);
        PERFORM pg_notify('skein_events', p_notice);
    END IF;

    INSERT INTO writers (node, last_group) VALUES (p_node, p_group)
    ON CONFLICT (node) DO UPDATE SET last_group = excluded.last_group, seen_at = now();
    RETURN lost;
END
$$;
",
    ),
    (
        3,
        "named leases",
        "
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
",
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

enum Command {
    Batch(Batch),
    Create(NewExecution, oneshot::Sender<Result<Created>>),
    Deliver(String, Value, oneshot::Sender<Result<u64>>),
    SetCursors(Vec<(String, Value)>, oneshot::Sender<Result<()>>),
    /// Someone waits for the batches up to the ticket in `wanted`: commit now.
    Flush,
}

pub struct PostgresStore {
    pool: PgPool,
    /// The queue to the writer, with the number of the last batch queued.
    queue: Mutex<(mpsc::UnboundedSender<(u64, Command)>, u64)>,
    progress: watch::Receiver<Progress>,
    wanted: Arc<AtomicU64>,
    notices: broadcast::Sender<Committed>,
    requests: broadcast::Sender<Requested>,
    observer: Arc<Mutex<Option<CommitObserver>>>,
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
        let (progress_tx, progress) = watch::channel(Progress {
            committed: 0,
            failure: None,
        });
        let wanted = Arc::new(AtomicU64::new(0));
        let (notices, _) = broadcast::channel(NOTICES);
        let (requests, _) = broadcast::channel(NOTICES);
        let observer = Arc::new(Mutex::new(None));
        // Group numbers go on from where a process of the same name left them, so that a
        // group is never taken for an earlier one that was committed.
        let group = last_group(&pool, &node).await?;
        let writer = tokio::spawn(write_loop(
            group,
            Writer {
                pool: pool.clone(),
                node: node.clone(),
                progress: progress_tx,
                wanted: wanted.clone(),
                notices: notices.clone(),
                observer: observer.clone(),
                lost: HashSet::new(),
            },
            rx,
        ));
        let (listening, ready) = oneshot::channel();
        let listener = tokio::spawn(listen_loop(
            pool.clone(),
            node.clone(),
            notices.clone(),
            requests.clone(),
            listening,
        ));
        // Notices sent before the listener listens would be lost to this process.
        let _ = tokio::time::timeout(options.acquire_timeout, ready).await;
        Ok(PostgresStore {
            pool,
            queue: Mutex::new((tx, 0)),
            progress,
            wanted,
            notices,
            requests,
            observer,
            tasks: vec![writer.abort_handle(), listener.abort_handle()],
        })
    }

    fn send(&self, command: Command) -> Ticket {
        let mut queue = self.queue.lock().expect("queue lock");
        queue.1 += 1;
        let ticket = queue.1;
        // If the writer is gone, `durable` reports why.
        let _ = queue.0.send((ticket, command));
        Ticket(ticket)
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(command(tx));
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> Error {
        crate::progress::stopped(&self.progress)
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

/// What the writer task owns.
struct Writer {
    pool: PgPool,
    node: Arc<str>,
    progress: watch::Sender<Progress>,
    wanted: Arc<AtomicU64>,
    notices: broadcast::Sender<Committed>,
    observer: Arc<Mutex<Option<CommitObserver>>>,
    /// Top-level executions whose batches were dropped because another process holds
    /// them now (each logged once).
    lost: HashSet<String>,
}

/// What a group's transaction produced, kept until its commit is known.
#[derive(Default)]
struct Outcome {
    /// The results of the commands that wait for one, in queue order.
    answers: Vec<Answer>,
    /// Per execution, the last sequence number committed and the events.
    newest: HashMap<String, (u64, Vec<Event>)>,
    /// Top-level executions whose batches were dropped.
    lost: Vec<String>,
}

enum Answer {
    Created(Result<Created>),
    Delivered(Result<u64>),
    Cursors,
}

async fn write_loop(
    mut group: i64,
    mut w: Writer,
    mut rx: mpsc::UnboundedReceiver<(u64, Command)>,
) {
    let mut committed = 0;
    while let Some(first) = rx.recv().await {
        let opened = Instant::now();
        let waits = |c: &Command| !matches!(c, Command::Batch(_) | Command::Flush);
        let mut answered = waits(&first.1);
        let mut commands = vec![first];
        while commands.len() < MAX_GROUP {
            let next = match rx.try_recv() {
                Ok(command) => Some(command),
                Err(_) if answered || w.wanted.load(Ordering::Acquire) > committed => None,
                Err(_) => tokio::time::timeout_at((opened + LINGER).into(), rx.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            let Some(command) = next else { break };
            answered |= waits(&command.1);
            commands.push(command);
        }
        group += 1;
        let last = commands.iter().map(|(t, _)| *t).max().unwrap_or(0);
        match commit_group(&mut w, group, &commands).await {
            Ok(outcome) => {
                let observer = w.observer.lock().expect("observer lock").clone();
                if let Some(observe) = observer {
                    observe(opened.elapsed(), commands.len());
                }
                let mut answers = outcome.answers.into_iter();
                for (_, command) in commands {
                    let answer = match &command {
                        Command::Batch(_) | Command::Flush => continue,
                        _ => answers.next(),
                    };
                    match (command, answer) {
                        (Command::Create(_, tx), Some(Answer::Created(r))) => drop(tx.send(r)),
                        (Command::Deliver(_, _, tx), Some(Answer::Delivered(r))) => {
                            drop(tx.send(r))
                        }
                        (Command::SetCursors(_, tx), Some(Answer::Cursors)) => {
                            drop(tx.send(Ok(())))
                        }
                        _ => unreachable!("one answer per command that waits, in order"),
                    }
                }
                for root in outcome.lost {
                    if w.lost.insert(root.clone()) {
                        eprintln!(
                            "skein: execution {root} is run by another process now; this one's late writes to it were dropped"
                        );
                    }
                }
                committed = committed.max(last as u64);
                w.progress.send_modify(|p| p.committed = committed);
                for (execution, (last_seq, events)) in outcome.newest {
                    let _ = w.notices.send(Committed {
                        execution: Arc::from(execution),
                        last_seq,
                        events: events.into(),
                    });
                }
            }
            Err(e) => {
                let message: Arc<str> = Arc::from(e.to_string());
                for (_, command) in commands {
                    let e = || Error::WriterStopped(message.to_string());
                    match command {
                        Command::Create(_, tx) => drop(tx.send(Err(e()))),
                        Command::Deliver(_, _, tx) => drop(tx.send(Err(e()))),
                        Command::SetCursors(_, tx) => drop(tx.send(Err(e()))),
                        Command::Batch(_) | Command::Flush => {}
                    }
                }
                w.progress.send_modify(|p| p.failure = Some(message));
                // As on SQLite: a group that fails for a reason other than the database's
                // absence leaves the journal without batches the engine counts on.
                break;
            }
        }
    }
}

/// Commits one group, trying again while the database is away; never applies it twice.
async fn commit_group(w: &mut Writer, group: i64, commands: &[(u64, Command)]) -> Result<Outcome> {
    let mut delay = Duration::from_millis(50);
    let mut told = false;
    // The outcome of an attempt whose COMMIT was sent but not acknowledged.
    let mut maybe: Option<Outcome> = None;
    loop {
        if let Some(outcome) = maybe.take() {
            match last_group(&w.pool, &w.node).await {
                Ok(last) if last >= group => return Ok(outcome),
                Ok(_) => {}
                Err(e) if is_transient(&e) => {
                    maybe = Some(outcome);
                    wait(&mut delay, &mut told, &e).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        match attempt(w, group, commands).await {
            Ok(outcome) => {
                if told {
                    eprintln!("skein: the database answers again; the journal writes go on");
                }
                return Ok(outcome);
            }
            Err((e, outcome)) if is_transient(&e) => {
                maybe = outcome;
                wait(&mut delay, &mut told, &e).await;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

async fn wait(delay: &mut Duration, told: &mut bool, e: &sqlx::Error) {
    if !*told {
        eprintln!(
            "skein: the database does not answer ({e}); executions wait, and the journal writes are retried"
        );
        *told = true;
    }
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(MAX_RETRY_DELAY);
}

async fn last_group(pool: &PgPool, node: &str) -> Result<i64, sqlx::Error> {
    let last: Option<i64> = sqlx::query_scalar("SELECT last_group FROM writers WHERE node = $1")
        .bind(node)
        .fetch_optional(pool)
        .await?;
    Ok(last.unwrap_or(0))
}

/// The root of an execution id: a child's id is its top-level execution's id plus a
/// path.
fn root(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// One attempt at a group. On failure, the outcome is returned too when the group may
/// have been committed all the same (the failure came with or after the COMMIT).
async fn attempt(
    w: &Writer,
    group: i64,
    commands: &[(u64, Command)],
) -> std::result::Result<Outcome, (sqlx::Error, Option<Outcome>)> {
    let mut outcome = Outcome::default();
    let columns = Columns::of(commands, w.notices.receiver_count() > 0, &mut outcome);
    let payload = notice_payload(&w.node, &outcome.newest);
    let waits = commands
        .iter()
        .any(|(_, c)| !matches!(c, Command::Batch(_) | Command::Flush));
    if !waits {
        // Batches only: one statement, atomic by itself, one round trip.
        let mut conn = w.pool.acquire().await.map_err(|e| (e, None))?;
        return match columns.apply(&mut conn, &w.node, group, &payload).await {
            Ok(lost) => Ok(outcome.without(lost)),
            Err(e) => Err((e, Some(outcome))),
        };
    }
    let mut tx = w.pool.begin().await.map_err(|e| (e, None))?;
    for (_, command) in commands {
        let answer = match command {
            Command::Create(new, _) => Answer::Created(
                in_savepoint(&mut tx, async |tx| create(tx, new).await)
                    .await
                    .map_err(|e| (e, None))?,
            ),
            Command::Deliver(id, event, _) => Answer::Delivered(
                in_savepoint(&mut tx, async |tx| deliver(tx, id, event).await)
                    .await
                    .map_err(|e| (e, None))?,
            ),
            Command::SetCursors(cursors, _) => {
                for (name, value) in cursors {
                    sqlx::query(
                        "INSERT INTO cursors (name, value) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    )
                    .bind(name)
                    .bind(json(value))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| (e, None))?;
                }
                Answer::Cursors
            }
            Command::Batch(_) | Command::Flush => continue,
        };
        outcome.answers.push(answer);
    }
    let lost = columns
        .apply(&mut tx, &w.node, group, &payload)
        .await
        .map_err(|e| (e, None))?;
    let outcome = outcome.without(lost);
    match tx.commit().await {
        Ok(()) => Ok(outcome),
        Err(e) => Err((e, Some(outcome))),
    }
}

impl Outcome {
    /// The outcome once the batches of `lost` executions were dropped: no notices for them.
    fn without(mut self, lost: Vec<String>) -> Outcome {
        if !lost.is_empty() {
            self.newest
                .retain(|id, _| !lost.iter().any(|l| l == root(id)));
        }
        self.lost = lost;
        self
    }
}

/// The batches of a group as the columns `skein_apply` takes: the last record of each
/// step and the last status of each execution win, as they would one after the other.
#[derive(Default)]
struct Columns<'a> {
    roots: Vec<&'a str>,
    step_executions: Vec<&'a str>,
    step_keys: Vec<&'a str>,
    step_states: Vec<&'static str>,
    step_payloads: Vec<Option<String>>,
    step_contexts: Vec<Option<String>>,
    step_deadlines: Vec<Option<i64>>,
    status_ids: Vec<&'a str>,
    statuses: Vec<&'static str>,
    status_outputs: Vec<Option<String>>,
    status_errors: Vec<Option<String>>,
    status_times: Vec<i64>,
    event_executions: Vec<&'a str>,
    event_seqs: Vec<i64>,
    event_times: Vec<i64>,
    event_types: Vec<&'a str>,
    event_data: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    /// The columns of the batches in `commands`; fills `outcome.newest` (with copies of
    /// the events when `listening`).
    fn of(commands: &'a [(u64, Command)], listening: bool, outcome: &mut Outcome) -> Columns<'a> {
        let mut c = Columns::default();
        let mut steps: HashMap<(&str, &str), &StepState> = HashMap::new();
        let mut step_order = Vec::new();
        let mut statuses: HashMap<&str, StatusRow> = HashMap::new();
        let mut status_order = Vec::new();
        for (_, command) in commands {
            let Command::Batch(batch) = command else {
                continue;
            };
            c.roots.push(root(&batch.execution));
            for step in &batch.steps {
                let key = (batch.execution.as_str(), step.key.as_str());
                if steps.insert(key, &step.state).is_none() {
                    step_order.push(key);
                }
            }
            if let Some(change) = &batch.status {
                let row = statuses.entry(&batch.execution).or_insert_with(|| {
                    status_order.push(batch.execution.as_str());
                    StatusRow::default()
                });
                row.status = Some(change.status.as_str());
                row.output = change.output.as_ref().map(json).or(row.output.take());
                row.error = change.error.as_ref().map(json).or(row.error.take());
                row.at = change.at;
            }
            if let Some(last) = batch.events.last() {
                let (seq, copies) = outcome
                    .newest
                    .entry(batch.execution.clone())
                    .or_insert_with(|| (0, Vec::new()));
                *seq = (*seq).max(last.seq);
                if listening {
                    copies.extend(batch.events.iter().cloned());
                }
            }
            for event in &batch.events {
                c.event_executions.push(&batch.execution);
                c.event_seqs.push(event.seq as i64);
                c.event_times.push(event.time);
                c.event_types.push(&event.type_);
                c.event_data.push(event.data.text());
            }
        }
        c.roots.sort_unstable();
        c.roots.dedup();
        for key in step_order {
            let (state, payload, context, deadline) = match steps[&key] {
                StepState::Started => ("started", None, None, None),
                StepState::Completed { output, context } => (
                    "completed",
                    Some(json(output)),
                    context.as_ref().map(json),
                    None,
                ),
                StepState::Faulted { error, context } => (
                    "faulted",
                    Some(json(error)),
                    context.as_ref().map(json),
                    None,
                ),
                StepState::Timer { deadline } => ("timer", None, None, Some(*deadline)),
            };
            c.step_executions.push(key.0);
            c.step_keys.push(key.1);
            c.step_states.push(state);
            c.step_payloads.push(payload);
            c.step_contexts.push(context);
            c.step_deadlines.push(deadline);
        }
        for id in status_order {
            let row = statuses.remove(id).unwrap_or_default();
            c.status_ids.push(id);
            c.statuses.push(row.status.unwrap_or("running"));
            c.status_outputs.push(row.output);
            c.status_errors.push(row.error);
            c.status_times.push(row.at);
        }
        c
    }

    /// Applies the columns with `skein_apply` (fencing, steps, statuses, events with
    /// their log positions, the notice, and the group's number); returns the top-level
    /// executions whose batches were dropped.
    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        node: &str,
        group: i64,
        payload: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT skein_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                $15, $16, $17, $18, $19, $20)",
        )
        .bind(node)
        .bind(group)
        .bind(&self.roots)
        .bind(&self.step_executions)
        .bind(&self.step_keys)
        .bind(&self.step_states)
        .bind(&self.step_payloads)
        .bind(&self.step_contexts)
        .bind(&self.step_deadlines)
        .bind(&self.status_ids)
        .bind(&self.statuses)
        .bind(&self.status_outputs)
        .bind(&self.status_errors)
        .bind(&self.status_times)
        .bind(&self.event_executions)
        .bind(&self.event_seqs)
        .bind(&self.event_times)
        .bind(&self.event_types)
        .bind(&self.event_data)
        .bind(payload)
        .fetch_one(conn)
        .await
    }
}

#[derive(Default)]
struct StatusRow {
    status: Option<&'static str>,
    output: Option<String>,
    error: Option<String>,
    at: Millis,
}

/// Runs `work` inside a savepoint: an error in it (other than the database's absence)
/// is that command's answer, and the rest of the group goes on.
async fn in_savepoint<T>(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    work: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, sqlx::Error>,
) -> Result<Result<T>, sqlx::Error> {
    sqlx::query("SAVEPOINT command").execute(&mut **tx).await?;
    match work(&mut **tx).await {
        Ok(value) => {
            sqlx::query("RELEASE SAVEPOINT command")
                .execute(&mut **tx)
                .await?;
            Ok(Ok(value))
        }
        Err(e) if is_transient(&e) => Err(e),
        Err(e) => {
            sqlx::query("ROLLBACK TO SAVEPOINT command")
                .execute(&mut **tx)
                .await?;
            Ok(Err(e.into()))
        }
    }
}

/// `{"n": node, "e": [[execution, last_seq], …]}`, or without `e` when that would not
/// fit in a notice: every listener then reads the journal.
fn notice_payload(node: &str, newest: &HashMap<String, (u64, Vec<Event>)>) -> String {
    let list: Vec<(&str, u64)> = newest
        .iter()
        .map(|(id, (seq, _))| (id.as_str(), *seq))
        .collect();
    let full = serde_json::json!({"n": node, "e": list}).to_string();
    if full.len() <= MAX_PAYLOAD {
        full
    } else {
        serde_json::json!({"n": node}).to_string()
    }
}

/// Follows the notices of other processes: new events, and requests.
async fn listen_loop(
    pool: PgPool,
    node: Arc<str>,
    notices: broadcast::Sender<Committed>,
    requests: broadcast::Sender<Requested>,
    listening: oneshot::Sender<()>,
) {
    let mut listening = Some(listening);
    let mut delay = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                continue;
            }
        };
        if listener
            .listen_all([EVENTS_CHANNEL, REQUESTS_CHANNEL])
            .await
            .is_err()
        {
            tokio::time::sleep(delay).await;
            continue;
        }
        delay = Duration::from_millis(100);
        match listening.take() {
            Some(listening) => {
                let _ = listening.send(());
            }
            // A reconnection: requests recorded while nobody listened were not announced.
            None => {
                let _ = requests.send(Requested::Unknown);
            }
        }
        // Whatever was committed while nobody listened was not announced.
        let _ = notices.send(Committed::unknown());
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) if notification.channel() == REQUESTS_CHANNEL => {
                    let _ = requests.send(Requested::For(notification.payload().to_string()));
                }
                Ok(Some(notification)) => {
                    for notice in notices_of(&node, notification.payload()) {
                        let _ = notices.send(notice);
                    }
                }
                // The connection dropped (the next call reconnects): notices were lost.
                Ok(None) => {
                    let _ = notices.send(Committed::unknown());
                    let _ = requests.send(Requested::Unknown);
                }
                Err(_) => break,
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// The commit notices in an events notification from another process (none for one
/// from this process: its own commits are announced by its writer, with their events).
fn notices_of(node: &str, payload: &str) -> Vec<Committed> {
    #[derive(serde::Deserialize)]
    struct Payload {
        n: String,
        e: Option<Vec<(String, u64)>>,
    }
    match serde_json::from_str::<Payload>(payload) {
        Ok(p) if p.n == node => Vec::new(),
        Ok(Payload { e: Some(list), .. }) => list
            .into_iter()
            .map(|(execution, last_seq)| Committed {
                execution: Arc::from(execution),
                last_seq,
                events: Arc::from([]),
            })
            .collect(),
        _ => vec![Committed::unknown()],
    }
}

async fn create(conn: &mut sqlx::PgConnection, new: &NewExecution) -> Result<Created, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO executions (id, namespace, name, version, definition, input, status, created_at, updated_at, labels, project)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $8, $9)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&new.id)
    .bind(&new.namespace)
    .bind(&new.name)
    .bind(&new.version)
    .bind(&new.definition)
    .bind(json(&new.input))
    .bind(new.created_at)
    .bind(serde_json::to_string(&new.labels).expect("labels serialize"))
    .bind(&new.project)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Created::New);
    }
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1"
    )))
    .bind(&new.id)
    .fetch_one(&mut *conn)
    .await?;
    execution_of(&row)
        .map(|e| Created::Existing(Box::new(e)))
        .map_err(|e| sqlx::Error::Decode(e.to_string().into()))
}

async fn deliver(
    conn: &mut sqlx::PgConnection,
    id: &str,
    event: &Value,
) -> Result<u64, sqlx::Error> {
    // Deliveries to one execution from several processes take their turns.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO inbox (execution_id, seq, event)
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2 FROM inbox WHERE execution_id = $1
         RETURNING seq",
    )
    .bind(id)
    .bind(json(event))
    .fetch_one(&mut *conn)
    .await?;
    Ok(seq as u64)
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
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
        let (sql, pool) = (&sql, &self.pool);
        self.read(move || async move {
            let row = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(execution_of).transpose()
        })
        .await
    }

    async fn unfinished(&self) -> Result<Vec<String>> {
        let pool = &self.pool;
        self.read(move || async move {
            Ok(sqlx::query_scalar(
                "SELECT id FROM executions
                 WHERE status NOT IN ('completed', 'faulted', 'cancelled') AND strpos(id, '/') = 0
                 ORDER BY created_at, id",
            )
            .fetch_all(pool)
            .await?)
        })
        .await
    }

    async fn list(&self, query: ListQuery) -> Result<Vec<Execution>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::text IS NULL OR name = $2)
               AND ($3::int8 IS NULL OR (created_at, id) < ($3, $4::text))
               AND ($5 OR strpos(id, '/') = 0)
               AND ($7::text IS NULL OR (labels::jsonb ->> $7) = $8)
               AND ($9::text IS NULL OR project = $9)
             ORDER BY created_at DESC, id DESC
             LIMIT $6"
        );
        let (sql, pool, query) = (&sql, &self.pool, &query);
        self.read(move || async move {
            let (before_at, before_id) = query.before.clone().unzip();
            let (label, label_value) = query.label.clone().unzip();
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(query.status.map(Status::as_str))
                .bind(query.name.as_deref())
                .bind(before_at)
                .bind(before_id)
                .bind(query.children)
                .bind(query.limit.min(i64::MAX as usize) as i64)
                .bind(label)
                .bind(label_value)
                .bind(query.project.as_deref())
                .fetch_all(pool)
                .await?;
            rows.iter().map(execution_of).collect()
        })
        .await
    }

    async fn journal(&self, id: &str) -> Result<Journal> {
        let pool = &self.pool;
        self.read(move || async move {
            let rows = sqlx::query(
                "SELECT key, state, payload, context, deadline FROM steps WHERE execution_id = $1",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let mut steps = Vec::with_capacity(rows.len());
            for row in &rows {
                let key: String = row.try_get("key")?;
                let state: &str = row.try_get("state")?;
                let payload = || -> Result<Value> {
                    let text: Option<&str> = row.try_get("payload")?;
                    Ok(text.map(crate::parse).transpose()?.unwrap_or_default())
                };
                let context: Option<&str> = row.try_get("context")?;
                let context = context.map(crate::parse).transpose()?;
                let state = match state {
                    "started" => StepState::Started,
                    "completed" => StepState::Completed {
                        output: payload()?,
                        context,
                    },
                    "faulted" => StepState::Faulted {
                        error: payload()?,
                        context,
                    },
                    "timer" => StepState::Timer {
                        deadline: row.try_get::<Option<i64>, _>("deadline")?.ok_or_else(|| {
                            Error::Corrupt(format!("timer `{key}` has no deadline"))
                        })?,
                    },
                    other => return Err(Error::Corrupt(format!("unknown step state `{other}`"))),
                };
                steps.push(Step { key, state });
            }
            let last_seq: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(seq), 0)::int8 FROM events WHERE execution_id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await?;
            Ok(Journal {
                steps,
                last_seq: last_seq as u64,
            })
        })
        .await
    }

    async fn events(&self, id: &str, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        let pool = &self.pool;
        self.read(move || async move {
            let rows = sqlx::query(
                "SELECT seq, time, type, data FROM events
                 WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(id)
            .bind(after_seq as i64)
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| event_of(r, None)).collect()
        })
        .await
    }

    async fn log(&self, query: LogQuery) -> Result<LogPage> {
        // One execution's events are found through its key: two texts, so that the
        // planner sees which.
        let execution = match query.execution {
            Some(_) => "e.execution_id = $2",
            None => "$2::text IS NULL",
        };
        let sql = format!(
            "SELECT e.pos, e.execution_id, e.seq, e.time, e.type, e.data
             FROM events e JOIN executions x ON x.id = e.execution_id
             WHERE e.pos > $1 AND e.pos <= $6
               AND {execution}
               AND ($3::text IS NULL OR x.name = $3)
               AND ($4::text IS NULL OR e.type = $4)
               AND ($7::text IS NULL OR (x.labels::jsonb ->> $7) = $8)
               AND ($9::text IS NULL OR x.project = $9)
             ORDER BY e.pos LIMIT $5"
        );
        let (sql, pool, query) = (&sql, &self.pool, &query);
        self.read(move || async move {
            // Every position up to the head was committed before the head was read (the
            // head moves in the transaction that appends), so the second statement sees
            // all of them.
            let end: i64 = sqlx::query_scalar("SELECT pos FROM log_head")
                .fetch_one(pool)
                .await?;
            let (label, label_value) = query.label.clone().unzip();
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(query.after as i64)
                .bind(query.execution.as_deref())
                .bind(query.name.as_deref())
                .bind(query.type_.as_deref())
                .bind(query.limit.min(i64::MAX as usize) as i64)
                .bind(end)
                .bind(label)
                .bind(label_value)
                .bind(query.project.as_deref())
                .fetch_all(pool)
                .await?;
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                let pos: i64 = row.try_get("pos")?;
                events.push(Logged {
                    pos: pos as u64,
                    execution: row.try_get("execution_id")?,
                    event: event_of(row, None)?,
                });
            }
            let scanned = match events.last() {
                Some(last) if events.len() >= query.limit => last.pos,
                _ => (end as u64).max(query.after),
            };
            Ok(LogPage { events, scanned })
        })
        .await
    }

    async fn pos_before(&self, time: Millis) -> Result<u64> {
        let pool = &self.pool;
        self.read(move || async move {
            let pos: Option<i64> =
                sqlx::query_scalar("SELECT MAX(pos) FROM events WHERE time < $1")
                    .bind(time)
                    .fetch_one(pool)
                    .await?;
            Ok(pos.unwrap_or(0) as u64)
        })
        .await
    }

    async fn event_counts(&self, id: &str) -> Result<Vec<(String, u64)>> {
        let pool = &self.pool;
        self.read(move || async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT type, COUNT(*) FROM events WHERE execution_id = $1 GROUP BY type ORDER BY type",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(|(t, n)| (t, n as u64)).collect())
        })
        .await
    }

    async fn events_of_type(&self, id: &str, type_: &str) -> Result<Vec<Event>> {
        let pool = &self.pool;
        self.read(move || async move {
            let rows = sqlx::query(
                "SELECT seq, time, data FROM events WHERE execution_id = $1 AND type = $2 ORDER BY seq",
            )
            .bind(id)
            .bind(type_)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| event_of(r, Some(type_))).collect()
        })
        .await
    }

    async fn seq_before(&self, id: &str, time: Millis) -> Result<u64> {
        let pool = &self.pool;
        self.read(move || async move {
            let seq: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(seq) FROM events WHERE execution_id = $1 AND time < $2",
            )
            .bind(id)
            .bind(time)
            .fetch_one(pool)
            .await?;
            Ok(seq.unwrap_or(0) as u64)
        })
        .await
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>> {
        let pool = &self.pool;
        self.read(move || async move {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT status, COUNT(*) FROM executions GROUP BY status")
                    .fetch_all(pool)
                    .await?;
            rows.into_iter()
                .map(|(s, n)| Ok((parse_status(&s)?, n as u64)))
                .collect()
        })
        .await
    }

    fn observe_commits(&self, observer: CommitObserver) {
        *self.observer.lock().expect("observer lock") = Some(observer);
    }

    fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.notices.subscribe()
    }

    fn commit(&self, batch: Batch) -> Ticket {
        self.send(Command::Batch(batch))
    }

    async fn durable(&self, ticket: Ticket) -> Result<()> {
        crate::progress::durable(&self.progress, &self.wanted, ticket, || {
            // Queued under the queue lock, and so after the batch of `ticket`.
            let queue = self.queue.lock().expect("queue lock");
            let _ = queue.0.send((0, Command::Flush));
        })
        .await
    }

    async fn deliver(&self, id: &str, event: Value) -> Result<u64> {
        let id = id.to_string();
        self.ask(|tx| Command::Deliver(id, event, tx)).await
    }

    async fn inbox(&self, id: &str, after: u64) -> Result<Vec<(u64, Value)>> {
        let pool = &self.pool;
        self.read(move || async move {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT seq, event FROM inbox WHERE execution_id = $1 AND seq > $2 ORDER BY seq",
            )
            .bind(id)
            .bind(after as i64)
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|(seq, event)| Ok((seq as u64, crate::parse(&event)?)))
                .collect()
        })
        .await
    }

    async fn cursor(&self, name: &str) -> Result<Option<Value>> {
        let pool = &self.pool;
        self.read(move || async move {
            let text: Option<String> =
                sqlx::query_scalar("SELECT value FROM cursors WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?;
            text.as_deref().map(crate::parse).transpose()
        })
        .await
    }

    async fn set_cursors(&self, cursors: Vec<(String, Value)>) -> Result<()> {
        self.ask(|tx| Command::SetCursors(cursors, tx)).await
    }

    async fn claim(&self, owner: &str, lease_ms: Millis, which: Claim) -> Result<Vec<Lease>> {
        let (one, limit) = match &which {
            Claim::One(id) => (Some(id.as_str()), 1),
            Claim::Any(limit) => (None, (*limit).min(i64::MAX as usize) as i64),
        };
        // Two texts, so that a claim of one execution is planned as a key lookup.
        let which = match one {
            Some(_) => "id = $3",
            None => "$3::text IS NULL",
        };
        let sql = format!(
            "WITH now AS (SELECT {NOW_MS} AS ms),
             free AS (
                SELECT id, owner AS previous, lease_until AS until FROM executions, now
                WHERE status NOT IN {FINAL} AND strpos(id, '/') = 0
                  AND (owner IS NULL OR (owner <> $1 AND lease_until < now.ms))
                  AND {which}
                ORDER BY created_at, id LIMIT $4
                FOR UPDATE OF executions SKIP LOCKED)
             UPDATE executions x SET owner = $1, lease_until = now.ms + $2
             FROM free, now WHERE x.id = free.id
             RETURNING x.id, x.project, x.status, x.requested, free.previous,
                now.ms - free.until AS overdue"
        );
        let (sql, pool) = (&sql, &self.pool);
        self.read(move || async move {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(owner)
                .bind(lease_ms)
                .bind(one)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let mut leases = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut lease = lease_of(row)?;
                let previous: Option<String> = row.try_get("previous")?;
                let overdue: Option<i64> = row.try_get("overdue")?;
                lease.taken_from = previous.map(|p| (p, overdue.unwrap_or(0)));
                leases.push(lease);
            }
            Ok(leases)
        })
        .await
    }

    async fn renew(&self, owner: &str, lease_ms: Millis) -> Result<Vec<Lease>> {
        let sql = format!(
            // Locked in id order, as the writer locks them: no deadlock between the two.
            "UPDATE executions SET lease_until = {NOW_MS} + $2
             WHERE id IN (SELECT id FROM executions WHERE owner = $1 AND status NOT IN {FINAL}
                          ORDER BY id FOR UPDATE)
             RETURNING id, project, status, requested"
        );
        let (sql, pool) = (&sql, &self.pool);
        self.read(move || async move {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(owner)
                .bind(lease_ms)
                .fetch_all(pool)
                .await?;
            rows.iter().map(lease_of).collect()
        })
        .await
    }

    async fn release(&self, owner: &str) -> Result<()> {
        let pool = &self.pool;
        self.read(move || async move {
            sqlx::query(
                "UPDATE executions SET owner = NULL, lease_until = NULL
                 WHERE id IN (SELECT id FROM executions WHERE owner = $1 ORDER BY id FOR UPDATE)",
            )
            .bind(owner)
            .execute(pool)
            .await?;
            sqlx::query("DELETE FROM leases WHERE owner = $1")
                .bind(owner)
                .execute(pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn hold(&self, name: &str, owner: &str, lease_ms: Millis) -> Result<bool> {
        let sql = format!(
            "INSERT INTO leases (name, owner, lease_until) VALUES ($1, $2, {NOW_MS} + $3)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
                lease_until = excluded.lease_until
             WHERE leases.owner = excluded.owner OR leases.lease_until < {NOW_MS}
             RETURNING owner"
        );
        let (sql, pool) = (&sql, &self.pool);
        self.read(move || async move {
            let held = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(name)
                .bind(owner)
                .bind(lease_ms)
                .fetch_optional(pool)
                .await?;
            Ok(held.is_some())
        })
        .await
    }

    async fn request(&self, id: &str, request: Request) -> Result<bool> {
        let sql = format!(
            "WITH u AS (UPDATE executions SET requested = $2
                        WHERE id = $1 AND status NOT IN {FINAL} RETURNING id)
             SELECT pg_notify('{REQUESTS_CHANNEL}', id) FROM u"
        );
        let (sql, pool) = (&sql, &self.pool);
        self.read(move || async move {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id)
                .bind(request.as_str())
                .fetch_all(pool)
                .await?;
            Ok(!rows.is_empty())
        })
        .await
    }

    fn requests(&self) -> broadcast::Receiver<Requested> {
        self.requests.subscribe()
    }
}
