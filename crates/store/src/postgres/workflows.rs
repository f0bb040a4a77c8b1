//! Named workflows and their revisions, on the shared database: a deploy takes a
//! transaction-scoped advisory lock on the name, so that two processes deploying the
//! same name at once get consecutive revisions.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{NOW_MS, PostgresStore};
use crate::{Deployed, Result};

const DEPLOYED: &str = "project, name, revision, definition, created_at";

fn deployed_of(row: &PgRow) -> Result<Deployed> {
    Ok(Deployed {
        project: row.try_get("project")?,
        name: row.try_get("name")?,
        revision: row.try_get::<i64, _>("revision")? as u64,
        definition: row.try_get("definition")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) async fn deploy(
    store: &PostgresStore,
    project: &str,
    name: &str,
    definition: &str,
) -> Result<(Deployed, bool)> {
    let latest_sql = format!(
        "SELECT {DEPLOYED} FROM workflows WHERE project = $1 AND name = $2
         ORDER BY revision DESC LIMIT 1"
    );
    let insert_sql = format!(
        "INSERT INTO workflows (project, name, revision, definition, created_at)
         VALUES ($1, $2, $3, $4, {NOW_MS}) RETURNING {DEPLOYED}"
    );
    let (latest_sql, insert_sql, pool) = (&latest_sql, &insert_sql, &store.pool);
    store
        .read(move || async move {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("workflow:{project}/{name}"))
                .execute(&mut *tx)
                .await?;
            let latest = sqlx::query(sqlx::AssertSqlSafe(latest_sql.as_str()))
                .bind(project)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(deployed_of)
                .transpose()?;
            if let Some(latest) = latest.as_ref().filter(|l| l.definition == definition) {
                return Ok((latest.clone(), false));
            }
            let revision = latest.map_or(0, |l| l.revision) + 1;
            let row = sqlx::query(sqlx::AssertSqlSafe(insert_sql.as_str()))
                .bind(project)
                .bind(name)
                .bind(revision as i64)
                .bind(definition)
                .fetch_one(&mut *tx)
                .await?;
            let deployed = deployed_of(&row)?;
            tx.commit().await?;
            Ok((deployed, true))
        })
        .await
}

pub(super) async fn deployed(
    store: &PostgresStore,
    project: &str,
    name: &str,
    revision: Option<u64>,
) -> Result<Option<Deployed>> {
    let sql = format!(
        "SELECT {DEPLOYED} FROM workflows
         WHERE project = $1 AND name = $2 AND ($3::bigint IS NULL OR revision = $3)
         ORDER BY revision DESC LIMIT 1"
    );
    let (sql, pool) = (&sql, &store.pool);
    store
        .read(move || async move {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(project)
                .bind(name)
                .bind(revision.map(|r| r as i64))
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(deployed_of)
                .transpose()
        })
        .await
}

pub(super) async fn deployments(
    store: &PostgresStore,
    project: &str,
    name: Option<&str>,
) -> Result<Vec<Deployed>> {
    let sql = match name {
        Some(_) => format!(
            "SELECT {DEPLOYED} FROM workflows WHERE project = $1 AND name = $2
             ORDER BY revision DESC"
        ),
        None => format!(
            "SELECT DISTINCT ON (name) {DEPLOYED} FROM workflows
             WHERE project = $1 AND $2::text IS NULL
             ORDER BY name, revision DESC"
        ),
    };
    let (sql, pool) = (&sql, &store.pool);
    store
        .read(move || async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(project)
                .bind(name)
                .fetch_all(pool)
                .await?;
            rows.iter().map(deployed_of).collect()
        })
        .await
}

pub(super) async fn undeploy(store: &PostgresStore, project: &str, name: &str) -> Result<bool> {
    let pool = &store.pool;
    store
        .read(move || async move {
            let done = sqlx::query("DELETE FROM workflows WHERE project = $1 AND name = $2")
                .bind(project)
                .bind(name)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}
