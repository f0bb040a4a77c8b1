//! Schedules on the shared database: their specs and states as JSON, read by whichever
//! server holds the scheduler's lease.

use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{NOW_MS, PostgresStore};
use crate::{Error, Result, StoredSchedule};

const SCHEDULE: &str =
    "project, id, spec::text AS spec, state::text AS state, created_at, updated_at";

fn schedule_of(row: &PgRow) -> Result<StoredSchedule> {
    let json = |column: &str| -> Result<Value> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| Error::Corrupt(e.to_string()))
    };
    Ok(StoredSchedule {
        project: row.try_get("project")?,
        id: row.try_get("id")?,
        spec: json("spec")?,
        state: json("state")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) async fn create(
    store: &PostgresStore,
    project: &str,
    id: &str,
    spec: Value,
    state: Value,
) -> Result<bool> {
    let sql = format!(
        "INSERT INTO schedules (project, id, spec, state, created_at, updated_at)
         VALUES ($1, $2, $3::jsonb, $4::jsonb, {NOW_MS}, {NOW_MS}) ON CONFLICT DO NOTHING"
    );
    let (sql, pool) = (&sql, &store.pool);
    let (spec, state) = (spec.to_string(), state.to_string());
    let (spec, state) = (&spec, &state);
    store
        .read(move || async move {
            let done = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(project)
                .bind(id)
                .bind(spec)
                .bind(state)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}

pub(super) async fn update(
    store: &PostgresStore,
    project: &str,
    id: &str,
    spec: Option<Value>,
    state: Option<Value>,
) -> Result<bool> {
    let sql = format!(
        "UPDATE schedules SET spec = COALESCE($3::jsonb, spec), state = COALESCE($4::jsonb, state),
           updated_at = {NOW_MS}
         WHERE project = $1 AND id = $2"
    );
    let (sql, pool) = (&sql, &store.pool);
    let (spec, state) = (spec.map(|s| s.to_string()), state.map(|s| s.to_string()));
    let (spec, state) = (&spec, &state);
    store
        .read(move || async move {
            let done = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(project)
                .bind(id)
                .bind(spec.as_deref())
                .bind(state.as_deref())
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}

pub(super) async fn one(
    store: &PostgresStore,
    project: &str,
    id: &str,
) -> Result<Option<StoredSchedule>> {
    let sql = format!("SELECT {SCHEDULE} FROM schedules WHERE project = $1 AND id = $2");
    let (sql, pool) = (&sql, &store.pool);
    store
        .read(move || async move {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(project)
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(schedule_of)
                .transpose()
        })
        .await
}

pub(super) async fn all(
    store: &PostgresStore,
    project: Option<&str>,
) -> Result<Vec<StoredSchedule>> {
    let sql = format!(
        "SELECT {SCHEDULE} FROM schedules WHERE $1::text IS NULL OR project = $1
         ORDER BY project, id"
    );
    let (sql, pool) = (&sql, &store.pool);
    store
        .read(move || async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(project)
                .fetch_all(pool)
                .await?;
            rows.iter().map(schedule_of).collect()
        })
        .await
}

pub(super) async fn delete(store: &PostgresStore, project: &str, id: &str) -> Result<bool> {
    let pool = &store.pool;
    store
        .read(move || async move {
            let done = sqlx::query("DELETE FROM schedules WHERE project = $1 AND id = $2")
                .bind(project)
                .bind(id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}
