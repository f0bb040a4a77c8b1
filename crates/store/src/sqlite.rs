//! The embedded store: one SQLite file in WAL mode.
//!
//! One writer thread owns the write connection. It folds queued commands into one
//! transaction (group commit) and commits it as soon as anyone waits for one of
//! them: a [`Store::durable`] call, or the reply to a create or a delivery. Batches
//! nobody waits for yet linger in the open transaction for at most [`LINGER`], so
//! a fan-out of thousands of steps costs a few commits rather than one each. It then
//! publishes how far it got; [`Store::durable`] waits on that. Reads use a separate
//! connection, which WAL lets run beside the writer.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

use crate::front::{Front, LINGER, MAX_GROUP, Newest, Publisher};
use crate::{
    Batch, Claim, CommitObserver, Committed, Created, Deployed, Durability, Error, Event,
    Execution, Holders, Journal, Json, Labels, Lease, ListQuery, LogPage, LogQuery, Logged, Millis,
    NewExecution, Request, Requested, Result, Status, Step, StepState, Store, StoredSchedule,
    Ticket,
};

const SCHEMA: &str = "
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
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    project TEXT NOT NULL DEFAULT 'default',
    owner TEXT,
    lease_until INTEGER,
    requested TEXT
);
CREATE INDEX executions_by_status ON executions (status, created_at);
CREATE TABLE steps (
    execution_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT,
    context TEXT,
    deadline INTEGER,
    PRIMARY KEY (execution_id, key)
) WITHOUT ROWID;
CREATE TABLE events (
    pos INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX events_by_execution ON events (execution_id, seq);
CREATE TABLE inbox (
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Schema version 1 to 2: executions get labels and a project (`default` for those
/// already stored), and every event its position in the log of all executions, in commit
/// order. Events already stored are numbered by time.
const MIGRATE_2: &str = "
ALTER TABLE executions ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE executions ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE events ADD COLUMN pos INTEGER;
CREATE TEMP TABLE numbered AS
    SELECT execution_id, seq, ROW_NUMBER() OVER (ORDER BY time, execution_id, seq) AS n FROM events;
CREATE INDEX temp.numbered_key ON numbered (execution_id, seq);
UPDATE events SET pos = numbered.n FROM numbered
    WHERE numbered.execution_id = events.execution_id AND numbered.seq = events.seq;
DROP TABLE temp.numbered;
CREATE UNIQUE INDEX events_by_pos ON events (pos);
";

/// Schema version 2 to 3: named cursors (how far the progress callbacks got).
const MIGRATE_3: &str = "
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Schema version 3 to 4: leases (which process runs an execution) and requests.
const MIGRATE_4: &str = "
ALTER TABLE executions ADD COLUMN owner TEXT;
ALTER TABLE executions ADD COLUMN lease_until INTEGER;
ALTER TABLE executions ADD COLUMN requested TEXT;
";

/// Schema version 4 to 5: named leases (which process reports progress).
const MIGRATE_5: &str = "
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Schema version 5 to 6: events are kept in log order, keyed by their position, with
/// an index by execution. Each event used to be stored in its execution's order with an
/// index by position: two full-width inserts per event where one now appends.
const MIGRATE_6: &str = "
CREATE TABLE events_v6 (
    pos INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
INSERT INTO events_v6 (pos, execution_id, seq, time, type, data)
    SELECT pos, execution_id, seq, time, type, data FROM events ORDER BY pos;
DROP TABLE events;
ALTER TABLE events_v6 RENAME TO events;
CREATE UNIQUE INDEX events_by_execution ON events (execution_id, seq);
";

/// The schema version this build writes.
/// Version 7: named workflows and their revisions.
const MIGRATE_7: &str = "
CREATE TABLE workflows (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project, name, revision)
);
";

/// Version 8: schedules.
const MIGRATE_8: &str = "
CREATE TABLE schedules (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (project, id)
);
";

/// Version 9: executions by creation, newest first, for the list (and the dashboard's
/// first page) to read 50 rows rather than sort them all.
const MIGRATE_9: &str = "
CREATE INDEX executions_by_creation ON executions (created_at, id);
";

const VERSION: i64 = 9;

// Batches are most commands; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Command {
    Batch(Batch),
    /// Work whose caller waits for its result: run in the transaction, answered after
    /// the commit (or told why it failed).
    Job(Job),
    /// Someone waits for the batches folded in: commit now.
    Flush,
}

type Job = Box<dyn FnOnce(&rusqlite::Transaction) -> Answer + Send>;

/// Sends a job's result once its transaction's fate is known: `None` committed, or why
/// it failed.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

pub struct SqliteStore {
    front: Front<mpsc::Sender<(u64, Command)>>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let writer = Connection::open(path)?;
        configure(&writer, durability)?;
        migrate(&writer)?;
        let reader = Connection::open(path)?;
        configure(&reader, durability)?;

        let (tx, rx) = mpsc::channel();
        let (front, publisher) = Front::new(tx);
        std::thread::Builder::new()
            .name("skein-store-writer".into())
            .spawn(move || write_loop(writer, publisher, rx))?;
        Ok(SqliteStore {
            front,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Runs `work` in the writer's next transaction and returns its result once that
    /// transaction is committed.
    async fn job<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |t| {
            let result = work(t);
            Box::new(move |failure: Option<&str>| {
                let _ = tx.send(match failure {
                    None => result,
                    Some(message) => Err(Error::WriterStopped(message.to_string())),
                });
            })
        });
        self.front.send(Command::Job(job));
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.front.stopped()),
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader.lock().expect("reader lock")))
            .await
            .map_err(|e| Error::WriterStopped(e.to_string()))?
    }
}

fn configure(conn: &Connection, durability: Durability) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Process => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let steps = match version {
        0 => format!("{SCHEMA}{MIGRATE_7}{MIGRATE_8}{MIGRATE_9}"),
        1 => {
            format!(
                "{MIGRATE_2}{MIGRATE_3}{MIGRATE_4}{MIGRATE_5}{MIGRATE_6}{MIGRATE_7}{MIGRATE_8}{MIGRATE_9}"
            )
        }
        2 => {
            format!("{MIGRATE_3}{MIGRATE_4}{MIGRATE_5}{MIGRATE_6}{MIGRATE_7}{MIGRATE_8}{MIGRATE_9}")
        }
        3 => format!("{MIGRATE_4}{MIGRATE_5}{MIGRATE_6}{MIGRATE_7}{MIGRATE_8}{MIGRATE_9}"),
        4 => format!("{MIGRATE_5}{MIGRATE_6}{MIGRATE_7}{MIGRATE_8}{MIGRATE_9}"),
        5 => format!("{MIGRATE_6}{MIGRATE_7}{MIGRATE_8}{MIGRATE_9}"),
        6 => format!("{MIGRATE_7}{MIGRATE_8}{MIGRATE_9}"),
        7 => format!("{MIGRATE_8}{MIGRATE_9}"),
        8 => MIGRATE_9.to_string(),
        VERSION => return Ok(()),
        v => {
            return Err(Error::Corrupt(format!(
                "the database has schema version {v}, newer than this skein understands ({VERSION})"
            )));
        }
    };
    conn.execute_batch(&format!(
        "BEGIN; {steps} PRAGMA user_version = {VERSION}; COMMIT;"
    ))?;
    Ok(())
}

/// The writer thread: owns the write connection, folds queued commands into one
/// transaction, and tells `publisher` what it committed.
fn write_loop(mut conn: Connection, mut publisher: Publisher, rx: mpsc::Receiver<(u64, Command)>) {
    // The position of the last event in the log of all executions.
    let mut pos: i64 =
        match conn.query_row("SELECT COALESCE(MAX(pos), 0) FROM events", [], |r| r.get(0)) {
            Ok(pos) => pos,
            Err(e) => {
                publisher.failed(Arc::from(e.to_string()));
                return;
            }
        };
    while let Ok(first) = rx.recv() {
        let opened = Instant::now();
        let mut last = 0;
        let mut replies = Vec::new();
        let listening = publisher.listening();
        let mut newest = Newest::default();
        let result = (|| -> Result<usize> {
            let tx = conn.transaction()?;
            let mut writes = Writes::default();
            let mut next = Some(first);
            let mut folded = 0;
            while let Some((ticket, command)) = next.take() {
                folded += 1;
                match command {
                    Command::Batch(batch) => {
                        apply(&tx, &mut writes, &batch, &mut pos)?;
                        newest.note(&batch, listening);
                    }
                    Command::Job(job) => replies.push(job(&tx)),
                    Command::Flush => {}
                }
                last = last.max(ticket);
                if folded >= MAX_GROUP {
                    break;
                }
                next = match rx.try_recv() {
                    Ok(command) => Some(command),
                    // The queue is empty: commit if anyone waits for what is folded in,
                    // else linger for more.
                    Err(_) if !replies.is_empty() || !publisher.may_linger() => None,
                    Err(_) => opened
                        .checked_add(LINGER)
                        .and_then(|end| end.checked_duration_since(Instant::now()))
                        .and_then(|left| rx.recv_timeout(left).ok()),
                };
            }
            drop(writes);
            tx.commit()?;
            Ok(folded)
        })();
        match result {
            Ok(folded) => {
                for reply in replies {
                    reply(None);
                }
                publisher.committed(last, opened, folded, newest);
            }
            Err(e) => {
                let message: Arc<str> = Arc::from(e.to_string());
                for reply in replies {
                    reply(Some(&message));
                }
                publisher.failed(message);
                break;
            }
        }
    }
}

/// JSON text for a column. Through a byte buffer: `Display` on a `Value` formats
/// through `fmt::Write` a piece at a time, at about twice the cost.
fn json(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value always serializes")
}

/// The statements that write batches, prepared once per transaction (on first use:
/// many groups hold events and no steps) rather than fetched from the cache per batch.
#[derive(Default)]
struct Writes<'t> {
    put_step: Option<rusqlite::CachedStatement<'t>>,
    put_event: Option<rusqlite::CachedStatement<'t>>,
    set_status: Option<rusqlite::CachedStatement<'t>>,
}

fn statement<'s, 't>(
    slot: &'s mut Option<rusqlite::CachedStatement<'t>>,
    tx: &'t rusqlite::Transaction,
    sql: &str,
) -> Result<&'s mut rusqlite::CachedStatement<'t>> {
    if slot.is_none() {
        *slot = Some(tx.prepare_cached(sql)?);
    }
    Ok(slot.as_mut().expect("prepared above"))
}

fn apply<'t>(
    tx: &'t rusqlite::Transaction,
    writes: &mut Writes<'t>,
    batch: &Batch,
    pos: &mut i64,
) -> Result<()> {
    if !batch.steps.is_empty() {
        let put_step = statement(
            &mut writes.put_step,
            tx,
            "INSERT OR REPLACE INTO steps (execution_id, key, state, payload, context, deadline) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for step in &batch.steps {
            let (state, payload, context, deadline) = match &step.state {
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
            put_step.execute(params![
                batch.execution,
                step.key,
                state,
                payload,
                context,
                deadline
            ])?;
        }
    }
    if !batch.events.is_empty() {
        let put_event = statement(
            &mut writes.put_event,
            tx,
            "INSERT INTO events (pos, execution_id, seq, time, type, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for event in &batch.events {
            *pos += 1;
            put_event.execute(params![
                *pos,
                batch.execution,
                event.seq as i64,
                event.time,
                event.type_,
                event.data.text(),
            ])?;
        }
    }
    if let Some(change) = &batch.status {
        statement(
            &mut writes.set_status,
            tx,
            "UPDATE executions SET status = ?2, output = COALESCE(?3, output), error = COALESCE(?4, error), updated_at = ?5 WHERE id = ?1",
        )?
        .execute(params![
            batch.execution,
            change.status.as_str(),
            change.output.as_ref().map(json),
            change.error.as_ref().map(json),
            change.at,
        ])?;
    }
    Ok(())
}

fn create(tx: &rusqlite::Transaction, new: &NewExecution) -> Result<Created> {
    if let Some(existing) = load_execution(tx, &new.id)? {
        return Ok(Created::Existing(Box::new(existing)));
    }
    tx.execute(
        "INSERT INTO executions (id, namespace, name, version, definition, input, status, created_at, updated_at, labels, project)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?8, ?9)",
        params![
            new.id,
            new.namespace,
            new.name,
            new.version,
            new.definition,
            json(&new.input),
            new.created_at,
            serde_json::to_string(&new.labels).expect("labels serialize"),
            new.project
        ],
    )?;
    Ok(Created::New)
}

fn deliver(tx: &rusqlite::Transaction, id: &str, event: &Value) -> Result<u64> {
    let next: i64 = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM inbox WHERE execution_id = ?1",
        params![id],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO inbox (execution_id, seq, event) VALUES (?1, ?2, ?3)",
        params![id, next, json(event)],
    )?;
    Ok(next as u64)
}

fn set_cursors(tx: &rusqlite::Transaction, cursors: &[(String, Value)]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO cursors (name, value) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?;
    for (name, value) in cursors {
        stmt.execute(params![name, json(value)])?;
    }
    Ok(())
}

fn parse_json(text: &str) -> Result<Value> {
    crate::parse(text)
}

const EXECUTION_COLUMNS: &str = "id, namespace, name, version, definition, input, status, output, error, created_at, updated_at, labels, project, requested";

/// The columns of [`EXECUTION_COLUMNS`], as text, before their JSON is parsed.
type ExecutionRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    String,
    String,
    Option<String>,
);

fn execution_row(r: &rusqlite::Row) -> rusqlite::Result<ExecutionRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
    ))
}

fn execution_of(row: ExecutionRow) -> Result<Execution> {
    let (
        id,
        namespace,
        name,
        version,
        definition,
        input,
        status,
        output,
        error,
        created_at,
        updated_at,
        labels,
        project,
        requested,
    ) = row;
    Ok(Execution {
        id,
        namespace,
        name,
        version,
        definition,
        input: parse_json(&input)?,
        labels: crate::parse(&labels)?,
        project,
        status: Status::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("unknown status `{status}`")))?,
        output: output.as_deref().map(parse_json).transpose()?,
        error: error.as_deref().map(parse_json).transpose()?,
        created_at,
        updated_at,
        requested: requested.as_deref().and_then(Request::parse),
    })
}

/// A row of `id, project, status, requested` as a lease (not taken over).
fn lease_row(r: &rusqlite::Row) -> rusqlite::Result<Result<Lease>> {
    let status: String = r.get(2)?;
    let requested: Option<String> = r.get(3)?;
    Ok(Status::parse(&status)
        .ok_or_else(|| Error::Corrupt(format!("unknown status `{status}`")))
        .map(|status| Lease {
            id: r.get_unwrap(0),
            project: r.get_unwrap(1),
            status,
            requested: requested.as_deref().and_then(Request::parse),
            taken_from: None,
        }))
}

/// The local clock, for leases: one process has only its own.
/// The columns of a [`Deployed`], in [`deployed_of`]'s order.
const DEPLOYED: &str = "project, name, revision, definition, created_at";

fn deployed_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Deployed> {
    Ok(Deployed {
        project: row.get(0)?,
        name: row.get(1)?,
        revision: row.get::<_, i64>(2)? as u64,
        definition: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

fn load_execution(conn: &Connection, id: &str) -> Result<Option<Execution>> {
    conn.query_row(
        &format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1"),
        params![id],
        execution_row,
    )
    .optional()?
    .map(execution_of)
    .transpose()
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, new: NewExecution) -> Result<Created> {
        self.job(move |tx| create(tx, &new)).await
    }

    async fn execution(&self, id: &str) -> Result<Option<Execution>> {
        let id = id.to_string();
        self.read(move |conn| load_execution(conn, &id)).await
    }

    async fn unfinished(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id FROM executions WHERE status NOT IN ('completed', 'faulted', 'cancelled') AND instr(id, '/') = 0 ORDER BY created_at, id",
            )?;
            let ids = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(ids)
        })
        .await
    }

    async fn list(&self, query: ListQuery) -> Result<Vec<Execution>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions
                 WHERE (?1 IS NULL OR status = ?1)
                   AND (?2 IS NULL OR name = ?2)
                   AND (created_at, id) < (COALESCE(?3, 9223372036854775807), COALESCE(?4, ''))
                   AND (?5 OR instr(id, '/') = 0)
                   AND (?7 IS NULL OR EXISTS (
                       SELECT 1 FROM json_each(labels) WHERE key = ?7 AND value = ?8))
                   AND (?9 IS NULL OR project = ?9)
                   AND created_at >= COALESCE(?10, -9223372036854775808)
                   AND created_at < COALESCE(?11, 9223372036854775807)
                 ORDER BY created_at DESC, id DESC
                 LIMIT ?6"
            ))?;
            let (before_at, before_id) = query.before.unzip();
            let (label, label_value) = query.label.unzip();
            let rows = stmt.query_map(
                params![
                    query.status.map(Status::as_str),
                    query.name,
                    before_at,
                    before_id,
                    query.children,
                    query.limit.min(i64::MAX as usize) as i64,
                    label,
                    label_value,
                    query.project,
                    query.created_from,
                    query.created_until,
                ],
                execution_row,
            )?;
            rows.map(|row| execution_of(row?)).collect()
        })
        .await
    }

    async fn journal(&self, id: &str) -> Result<Journal> {
        let id = id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, state, payload, context, deadline FROM steps WHERE execution_id = ?1",
            )?;
            let rows = stmt.query_map(params![id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })?;
            let mut steps = Vec::new();
            for row in rows {
                let (key, state, payload, context, deadline) = row?;
                let payload = || {
                    payload
                        .as_deref()
                        .map(parse_json)
                        .transpose()
                        .map(Option::unwrap_or_default)
                };
                let context = context.as_deref().map(parse_json).transpose()?;
                let state = match state.as_str() {
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
                        deadline: deadline.ok_or_else(|| {
                            Error::Corrupt(format!("timer `{key}` has no deadline"))
                        })?,
                    },
                    other => return Err(Error::Corrupt(format!("unknown step state `{other}`"))),
                };
                steps.push(Step { key, state });
            }
            let last_seq: i64 = conn.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE execution_id = ?1",
                params![id],
                |r| r.get(0),
            )?;
            Ok(Journal {
                steps,
                last_seq: last_seq as u64,
            })
        })
        .await
    }

    async fn events(&self, id: &str, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        let id = id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, time, type, data FROM events WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![id, after_seq as i64, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, time, type_, data) = row?;
                out.push(Event { seq: seq as u64, time, type_, data: Json::from_text(&data)? });
            }
            Ok(out)
        })
        .await
    }

    async fn log(&self, query: LogQuery) -> Result<LogPage> {
        self.read(move |conn| {
            // One snapshot for both statements: what the first sees as the end of the log
            // holds for the second.
            let snapshot = conn.unchecked_transaction()?;
            let end: i64 =
                snapshot.query_row("SELECT COALESCE(MAX(pos), 0) FROM events", [], |r| r.get(0))?;
            let (label, label_value) = query.label.clone().unzip();
            // One execution's events are found through its key, not by a walk over the
            // whole log; written without `OR` so that the planner sees it.
            let execution = match query.execution {
                Some(_) => "e.execution_id = ?2",
                None => "?2 IS NULL",
            };
            let mut stmt = snapshot.prepare_cached(&format!(
                "SELECT e.pos, e.execution_id, e.seq, e.time, e.type, e.data
                 FROM events e JOIN executions x ON x.id = e.execution_id
                 WHERE e.pos > ?1 AND e.pos <= ?6
                   AND {execution}
                   AND (?3 IS NULL OR x.name = ?3)
                   AND (?4 IS NULL OR e.type = ?4)
                   AND (?7 IS NULL OR EXISTS (
                       SELECT 1 FROM json_each(x.labels) WHERE key = ?7 AND value = ?8))
                   AND (?9 IS NULL OR x.project = ?9)
                 ORDER BY e.pos LIMIT ?5"
            ))?;
            let rows = stmt.query_map(
                params![
                    query.after as i64,
                    query.execution,
                    query.name,
                    query.type_,
                    query.limit.min(i64::MAX as usize) as i64,
                    end,
                    label,
                    label_value,
                    query.project
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )?;
            let mut events = Vec::new();
            for row in rows {
                let (pos, execution, seq, time, type_, data) = row?;
                events.push(Logged {
                    pos: pos as u64,
                    execution,
                    event: Event {
                        seq: seq as u64,
                        time,
                        type_,
                        data: Json::from_text(&data)?,
                    },
                });
            }
            // A full page stops at its last event; a short one saw the whole log.
            let scanned = match events.last() {
                Some(last) if events.len() >= query.limit => last.pos,
                _ => (end as u64).max(query.after),
            };
            Ok(LogPage { events, scanned })
        })
        .await
    }

    async fn pos_before(&self, time: Millis) -> Result<u64> {
        self.read(move |conn| {
            let pos: Option<i64> = conn.query_row(
                "SELECT MAX(pos) FROM events WHERE time < ?1",
                params![time],
                |r| r.get(0),
            )?;
            Ok(pos.unwrap_or(0) as u64)
        })
        .await
    }

    async fn event_counts(&self, id: &str) -> Result<Vec<(String, u64)>> {
        let id = id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT type, COUNT(*) FROM events WHERE execution_id = ?1 GROUP BY type ORDER BY type",
            )?;
            let rows = stmt.query_map(params![id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn events_of_type(&self, id: &str, type_: &str) -> Result<Vec<Event>> {
        let (id, type_) = (id.to_string(), type_.to_string());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, time, data FROM events WHERE execution_id = ?1 AND type = ?2 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![id, type_], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, time, data) = row?;
                out.push(Event {
                    seq: seq as u64,
                    time,
                    type_: type_.clone(),
                    data: Json::from_text(&data)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn seq_before(&self, id: &str, time: Millis) -> Result<u64> {
        let id = id.to_string();
        self.read(move |conn| {
            let seq: Option<i64> = conn.query_row(
                "SELECT MAX(seq) FROM events WHERE execution_id = ?1 AND time < ?2",
                params![id, time],
                |r| r.get(0),
            )?;
            Ok(seq.unwrap_or(0) as u64)
        })
        .await
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT status, COUNT(*) FROM executions GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (status, n) = row?;
                let status = Status::parse(&status)
                    .ok_or_else(|| Error::Corrupt(format!("unknown status `{status}`")))?;
                out.push((status, n as u64));
            }
            Ok(out)
        })
        .await
    }

    async fn holders(&self) -> Result<Holders> {
        self.read(|conn| {
            let mut holders = Holders::default();
            let mut stmt = conn.prepare_cached(
                "SELECT owner, COUNT(*), MIN(lease_until) FROM executions
                 WHERE owner IS NOT NULL GROUP BY owner ORDER BY owner",
            )?;
            for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?, r.get(2)?)))? {
                let (owner, n, until) = row?;
                holders.owners.push((owner, n as u64, until));
            }
            let mut stmt =
                conn.prepare_cached("SELECT name, owner, lease_until FROM leases ORDER BY name")?;
            for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
                holders.named.push(row?);
            }
            Ok(holders)
        })
        .await
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
        self.job(move |tx| deliver(tx, &id, &event)).await
    }

    async fn cursor(&self, name: &str) -> Result<Option<Value>> {
        let name = name.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT value FROM cursors WHERE name = ?1")?;
            let text: Option<String> = stmt.query_row(params![name], |r| r.get(0)).optional()?;
            text.as_deref().map(parse_json).transpose()
        })
        .await
    }

    async fn set_cursors(&self, cursors: Vec<(String, Value)>) -> Result<()> {
        self.job(move |tx| set_cursors(tx, &cursors)).await
    }

    async fn claim(&self, owner: &str, lease_ms: Millis, which: Claim) -> Result<Vec<Lease>> {
        let owner = owner.to_string();
        self.job(move |tx| {
            let now = now_ms();
            let (one, limit) = match which {
                Claim::One(id) => (Some(id), 1),
                Claim::Any(limit) => (None, limit.min(i64::MAX as usize) as i64),
            };
            let mut stmt = tx.prepare_cached(
                "SELECT id, owner, lease_until FROM executions
                 WHERE status NOT IN ('completed', 'faulted', 'cancelled') AND instr(id, '/') = 0
                   AND (owner IS NULL OR (owner <> ?1 AND lease_until < ?2))
                   AND (?3 IS NULL OR id = ?3)
                 ORDER BY created_at, id LIMIT ?4",
            )?;
            let free = stmt
                .query_map(params![owner, now, one, limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut take = tx.prepare_cached(
                "UPDATE executions SET owner = ?1, lease_until = ?2 WHERE id = ?3
                 RETURNING id, project, status, requested",
            )?;
            let mut leases = Vec::new();
            for (id, previous, until) in free {
                let mut lease = take.query_row(params![owner, now + lease_ms, id], lease_row)??;
                lease.taken_from = previous.map(|p| (p, now - until.unwrap_or(now)));
                leases.push(lease);
            }
            Ok(leases)
        })
        .await
    }

    async fn renew(&self, owner: &str, lease_ms: Millis) -> Result<Vec<Lease>> {
        let owner = owner.to_string();
        self.job(move |tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE executions SET lease_until = ?2
                 WHERE owner = ?1 AND status NOT IN ('completed', 'faulted', 'cancelled')
                 RETURNING id, project, status, requested",
            )?;
            let rows = stmt.query_map(params![owner, now_ms() + lease_ms], lease_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn release(&self, owner: &str) -> Result<()> {
        let owner = owner.to_string();
        self.job(move |tx| {
            tx.execute(
                "UPDATE executions SET owner = NULL, lease_until = NULL WHERE owner = ?1",
                params![owner],
            )?;
            tx.execute("DELETE FROM leases WHERE owner = ?1", params![owner])?;
            Ok(())
        })
        .await
    }

    async fn holder(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT owner FROM executions WHERE id = ?1 AND lease_until > ?2")?
                .query_row(params![id, now_ms()], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten())
        })
        .await
    }

    async fn hold(&self, name: &str, owner: &str, lease_ms: Millis) -> Result<bool> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.job(move |tx| {
            let now = now_ms();
            let held = tx
                .prepare_cached(
                    "INSERT INTO leases (name, owner, lease_until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
                        lease_until = excluded.lease_until
                     WHERE leases.owner = excluded.owner OR leases.lease_until < ?4
                     RETURNING owner",
                )?
                .query_row(params![name, owner, now + lease_ms, now], |_| Ok(()))
                .optional()?;
            Ok(held.is_some())
        })
        .await
    }

    async fn request(&self, id: &str, request: Request) -> Result<bool> {
        let id = id.to_string();
        let requested = self
            .job({
                let id = id.clone();
                move |tx| {
                    let n = tx.execute(
                        "UPDATE executions SET requested = ?2
                         WHERE id = ?1 AND status NOT IN ('completed', 'faulted', 'cancelled')",
                        params![id, request.as_str()],
                    )?;
                    Ok(n > 0)
                }
            })
            .await?;
        if requested {
            // No receiver is not an error.
            let _ = self.front.requests().send(Requested::For(id));
        }
        Ok(requested)
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
        let (project, name, definition) = (
            project.to_string(),
            name.to_string(),
            definition.to_string(),
        );
        self.job(move |tx| {
            let latest = tx
                .prepare_cached(&format!(
                    "SELECT {DEPLOYED} FROM workflows WHERE project = ?1 AND name = ?2
                     ORDER BY revision DESC LIMIT 1"
                ))?
                .query_row(params![project, name], deployed_of)
                .optional()?;
            if let Some(latest) = latest.as_ref().filter(|l| l.definition == definition) {
                return Ok((latest.clone(), false));
            }
            let deployed = Deployed {
                revision: latest.map_or(0, |l| l.revision) + 1,
                project,
                name,
                definition,
                created_at: now_ms(),
            };
            tx.prepare_cached(
                "INSERT INTO workflows (project, name, revision, definition, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                deployed.project,
                deployed.name,
                deployed.revision as i64,
                deployed.definition,
                deployed.created_at
            ])?;
            Ok((deployed, true))
        })
        .await
    }

    async fn deployed(
        &self,
        project: &str,
        name: &str,
        revision: Option<u64>,
    ) -> Result<Option<Deployed>> {
        let (project, name) = (project.to_string(), name.to_string());
        self.read(move |conn| {
            let revision = revision.map(|r| r as i64);
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {DEPLOYED} FROM workflows
                     WHERE project = ?1 AND name = ?2 AND (?3 IS NULL OR revision = ?3)
                     ORDER BY revision DESC LIMIT 1"
                ))?
                .query_row(params![project, name, revision], deployed_of)
                .optional()?)
        })
        .await
    }

    async fn deployments(&self, project: &str, name: Option<&str>) -> Result<Vec<Deployed>> {
        let (project, name) = (project.to_string(), name.map(str::to_string));
        self.read(move |conn| {
            let sql = match name {
                // Every revision of one, newest first.
                Some(_) => format!(
                    "SELECT {DEPLOYED} FROM workflows WHERE project = ?1 AND name = ?2
                     ORDER BY revision DESC"
                ),
                // The latest revision of each, by name.
                None => format!(
                    "SELECT {DEPLOYED} FROM workflows w WHERE project = ?1 AND ?2 IS NULL
                       AND revision = (SELECT MAX(revision) FROM workflows
                                       WHERE project = w.project AND name = w.name)
                     ORDER BY name"
                ),
            };
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(params![project, name], deployed_of)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn undeploy(&self, project: &str, name: &str) -> Result<bool> {
        let (project, name) = (project.to_string(), name.to_string());
        self.job(move |tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM workflows WHERE project = ?1 AND name = ?2")?
                .execute(params![project, name])?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn update_labels(&self, id: &str, set: Labels, unset: Vec<String>) -> Result<()> {
        let id = id.to_string();
        self.job(move |tx| {
            let current: Option<String> = tx
                .prepare_cached("SELECT labels FROM executions WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            let Some(current) = current else {
                return Ok(());
            };
            let mut labels: Labels = serde_json::from_str(&current).unwrap_or_default();
            for name in &unset {
                labels.remove(name);
            }
            labels.extend(set);
            tx.prepare_cached("UPDATE executions SET labels = ?2 WHERE id = ?1")?
                .execute(params![
                    id,
                    serde_json::to_value(&labels)
                        .unwrap_or_default()
                        .to_string()
                ])?;
            Ok(())
        })
        .await
    }

    async fn forget_steps(&self, id: &str, prefix: &str) -> Result<u64> {
        let (id, prefix) = (id.to_string(), prefix.to_string());
        self.job(move |tx| {
            let deleted = tx
                .prepare_cached(
                    "DELETE FROM steps WHERE execution_id = ?1 AND substr(key, 1, ?3) = ?2",
                )?
                .execute(params![id, prefix, prefix.chars().count() as i64])?;
            Ok(deleted as u64)
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
        let (project, id) = (project.to_string(), id.to_string());
        self.job(move |tx| {
            let now = now_ms();
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO schedules (project, id, spec, state, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    project,
                    id,
                    spec.to_string(),
                    state.to_string(),
                    now
                ])?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn update_schedule(
        &self,
        project: &str,
        id: &str,
        spec: Option<Value>,
        state: Option<Value>,
    ) -> Result<bool> {
        let (project, id) = (project.to_string(), id.to_string());
        self.job(move |tx| {
            let updated = tx
                .prepare_cached(
                    "UPDATE schedules SET spec = COALESCE(?3, spec), state = COALESCE(?4, state),
                       updated_at = ?5
                     WHERE project = ?1 AND id = ?2",
                )?
                .execute(params![
                    project,
                    id,
                    spec.map(|s| s.to_string()),
                    state.map(|s| s.to_string()),
                    now_ms()
                ])?;
            Ok(updated > 0)
        })
        .await
    }

    async fn schedule(&self, project: &str, id: &str) -> Result<Option<StoredSchedule>> {
        let (project, id) = (project.to_string(), id.to_string());
        self.read(move |conn| {
            let row = conn
                .prepare_cached(&format!(
                    "SELECT {SCHEDULE} FROM schedules WHERE project = ?1 AND id = ?2"
                ))?
                .query_row(params![project, id], schedule_row)
                .optional()?;
            row.map(stored_schedule).transpose()
        })
        .await
    }

    async fn schedules(&self, project: Option<&str>) -> Result<Vec<StoredSchedule>> {
        let project = project.map(str::to_string);
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {SCHEDULE} FROM schedules WHERE ?1 IS NULL OR project = ?1
                     ORDER BY project, id"
                ))?
                .query_map(params![project], schedule_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(stored_schedule).collect()
        })
        .await
    }

    async fn delete_schedule(&self, project: &str, id: &str) -> Result<bool> {
        let (project, id) = (project.to_string(), id.to_string());
        self.job(move |tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM schedules WHERE project = ?1 AND id = ?2")?
                .execute(params![project, id])?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn inbox(&self, id: &str, after: u64) -> Result<Vec<(u64, Value)>> {
        let id = id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, event FROM inbox WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![id, after as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, event) = row?;
                out.push((seq as u64, parse_json(&event)?));
            }
            Ok(out)
        })
        .await
    }
}

const SCHEDULE: &str = "project, id, spec, state, created_at, updated_at";

type ScheduleRow = (String, String, String, String, i64, i64);

fn schedule_row(r: &rusqlite::Row) -> rusqlite::Result<ScheduleRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn stored_schedule(
    (project, id, spec, state, created_at, updated_at): ScheduleRow,
) -> Result<StoredSchedule> {
    Ok(StoredSchedule {
        project,
        id,
        spec: parse_json(&spec)?,
        state: parse_json(&state)?,
        created_at,
        updated_at,
    })
}
