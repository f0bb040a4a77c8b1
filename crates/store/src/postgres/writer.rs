//! The writer task: folds queued commands into one transaction (group commit) and
//! applies a group's batches with one call of `skein_apply`, fenced by the leases;
//! tries a group again while the database is away, and never applies one twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Postgres};
use tokio::sync::{mpsc, oneshot};

use super::{EXECUTION_COLUMNS, MAX_PAYLOAD, MAX_RETRY_DELAY, execution_of, is_transient, json};
use crate::front::{LINGER, MAX_GROUP, Newest, Publisher};
use crate::{Batch, Created, Error, Millis, NewExecution, Result, StepState};

pub(super) enum Command {
    Batch(Batch),
    Create(NewExecution, oneshot::Sender<Result<Created>>),
    Deliver(String, Value, oneshot::Sender<Result<u64>>),
    SetCursors(Vec<(String, Value)>, oneshot::Sender<Result<()>>),
    /// Someone waits for the batches folded in: commit now.
    Flush,
}

/// What the writer task owns.
pub(super) struct Writer {
    pub(super) pool: PgPool,
    pub(super) node: Arc<str>,
    pub(super) publisher: Publisher,
    /// Top-level executions whose batches were dropped because another process holds
    /// them now (each logged once).
    pub(super) lost: HashSet<String>,
}

/// What a group's transaction produced, kept until its commit is known.
#[derive(Default)]
struct Outcome {
    /// The results of the commands that wait for one, in queue order.
    answers: Vec<Answer>,
    /// Per execution, the last sequence number committed and the events.
    newest: Newest,
    /// Top-level executions whose batches were dropped.
    lost: Vec<String>,
}

enum Answer {
    Created(Result<Created>),
    Delivered(Result<u64>),
    Cursors,
}

pub(super) async fn write_loop(
    mut group: i64,
    mut w: Writer,
    mut rx: mpsc::UnboundedReceiver<(u64, Command)>,
) {
    while let Some(first) = rx.recv().await {
        let opened = Instant::now();
        let waits = |c: &Command| !matches!(c, Command::Batch(_) | Command::Flush);
        let mut answered = waits(&first.1);
        let mut commands = vec![first];
        while commands.len() < MAX_GROUP {
            let next = match rx.try_recv() {
                Ok(command) => Some(command),
                Err(_) if answered || !w.publisher.may_linger() => None,
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
                let folded = commands.len();
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
                        tracing::warn!(
                            "execution {root} is run by another process now; this one's late writes to it were dropped"
                        );
                    }
                }
                w.publisher.committed(last, opened, folded, outcome.newest);
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
                // Only a failure other than the database's absence ends up here.
                w.publisher.failed(message);
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
                    tracing::info!("the database answers again; the journal writes go on");
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
        tracing::warn!(
            "the database does not answer ({e}); executions wait, and the journal writes are retried"
        );
        *told = true;
    }
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(MAX_RETRY_DELAY);
}

pub(super) async fn last_group(pool: &PgPool, node: &str) -> Result<i64, sqlx::Error> {
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
    let columns = Columns::of(commands, w.publisher.listening(), &mut outcome);
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
            self.newest.retain(|id| !lost.iter().any(|l| l == root(id)));
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
            outcome.newest.note(batch, listening);
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
fn notice_payload(node: &str, newest: &Newest) -> String {
    let list: Vec<(&str, u64)> = newest.last_seqs().collect();
    let full = serde_json::json!({"n": node, "e": list}).to_string();
    if full.len() <= MAX_PAYLOAD {
        full
    } else {
        serde_json::json!({"n": node}).to_string()
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
