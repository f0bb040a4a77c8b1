//! The queries of the store, each tried again a few times while the database does not
//! answer (`PostgresStore::read`).

use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};

use super::{EXECUTION_COLUMNS, PostgresStore, event_of, execution_of, parse_status};
use crate::{
    Error, Event, Execution, Journal, ListQuery, LogPage, LogQuery, Logged, Millis, Result, Status,
    Step, StepState,
};

pub(super) async fn execution(store: &PostgresStore, id: &str) -> Result<Option<Execution>> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
    let (sql, pool) = (&sql, &store.pool);
    store
        .read(move || async move {
            let row = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(execution_of).transpose()
        })
        .await
}

pub(super) async fn unfinished(store: &PostgresStore) -> Result<Vec<String>> {
    let pool = &store.pool;
    store
        .read(move || async move {
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

pub(super) async fn list(store: &PostgresStore, query: ListQuery) -> Result<Vec<Execution>> {
    let (pool, query) = (&store.pool, &query);
    store
        .read(move || async move {
            // Only the conditions that apply, so that the planner sees a plain filter and
            // order it can walk `executions_by_project` for, rather than `$1 IS NULL OR …`
            // for every filter.
            let mut sql = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE TRUE"
            ));
            if let Some(status) = query.status {
                sql.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some(name) = &query.name {
                sql.push(" AND name = ").push_bind(name);
            }
            if let Some((at, id)) = &query.before {
                sql.push(" AND (created_at, id) < (")
                    .push_bind(*at)
                    .push(", ")
                    .push_bind(id)
                    .push(")");
            }
            if !query.children {
                sql.push(" AND strpos(id, '/') = 0");
            }
            if let Some((label, value)) = &query.label {
                sql.push(" AND (labels::jsonb ->> ")
                    .push_bind(label)
                    .push(") = ")
                    .push_bind(value);
            }
            if let Some(project) = &query.project {
                sql.push(" AND project = ").push_bind(project);
            }
            if let Some(from) = query.created_from {
                sql.push(" AND created_at >= ").push_bind(from);
            }
            if let Some(until) = query.created_until {
                sql.push(" AND created_at < ").push_bind(until);
            }
            sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(query.limit.min(i64::MAX as usize) as i64);
            // Not kept prepared: a cached statement gets a generic plan after five uses,
            // which cannot see the filters' values and again sorts the table.
            let rows = sql.build().persistent(false).fetch_all(pool).await?;
            rows.iter().map(execution_of).collect()
        })
        .await
}

pub(super) async fn journal(store: &PostgresStore, id: &str) -> Result<Journal> {
    let pool = &store.pool;
    store
        .read(move || async move {
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

pub(super) async fn events(
    store: &PostgresStore,
    id: &str,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<Event>> {
    let pool = &store.pool;
    store
        .read(move || async move {
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

pub(super) async fn log(store: &PostgresStore, query: LogQuery) -> Result<LogPage> {
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
    let (sql, pool, query) = (&sql, &store.pool, &query);
    store
        .read(move || async move {
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

pub(super) async fn pos_before(store: &PostgresStore, time: Millis) -> Result<u64> {
    let pool = &store.pool;
    store
        .read(move || async move {
            let pos: Option<i64> =
                sqlx::query_scalar("SELECT MAX(pos) FROM events WHERE time < $1")
                    .bind(time)
                    .fetch_one(pool)
                    .await?;
            Ok(pos.unwrap_or(0) as u64)
        })
        .await
}

pub(super) async fn event_counts(store: &PostgresStore, id: &str) -> Result<Vec<(String, u64)>> {
    let pool = &store.pool;
    store
        .read(move || async move {
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

pub(super) async fn events_of_type(
    store: &PostgresStore,
    id: &str,
    type_: &str,
) -> Result<Vec<Event>> {
    let pool = &store.pool;
    store
        .read(move || async move {
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

pub(super) async fn seq_before(store: &PostgresStore, id: &str, time: Millis) -> Result<u64> {
    let pool = &store.pool;
    store
        .read(move || async move {
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

pub(super) async fn count_by_status(store: &PostgresStore) -> Result<Vec<(Status, u64)>> {
    let pool = &store.pool;
    store
        .read(move || async move {
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

pub(super) async fn holders(store: &PostgresStore) -> Result<crate::Holders> {
    let pool = &store.pool;
    store
        .read(move || async move {
            let owners: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT owner, COUNT(*), MIN(lease_until) FROM executions
                 WHERE owner IS NOT NULL GROUP BY owner ORDER BY owner",
            )
            .fetch_all(pool)
            .await?;
            let named: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT name, owner, lease_until FROM leases ORDER BY name")
                    .fetch_all(pool)
                    .await?;
            Ok(crate::Holders {
                owners: (owners.into_iter())
                    .map(|(owner, n, until)| (owner, n as u64, until))
                    .collect(),
                named,
            })
        })
        .await
}

pub(super) async fn inbox(
    store: &PostgresStore,
    id: &str,
    after: u64,
) -> Result<Vec<(u64, Value)>> {
    let pool = &store.pool;
    store
        .read(move || async move {
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

pub(super) async fn cursor(store: &PostgresStore, name: &str) -> Result<Option<Value>> {
    let pool = &store.pool;
    store
        .read(move || async move {
            let text: Option<String> =
                sqlx::query_scalar("SELECT value FROM cursors WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?;
            text.as_deref().map(crate::parse).transpose()
        })
        .await
}
