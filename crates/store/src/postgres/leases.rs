//! Who runs what: taking, renewing and giving up the leases of executions and the named
//! leases, measured by the database's clock; and steering requests, recorded on the
//! execution and announced to whoever holds it.

use sqlx::{AssertSqlSafe, Row};

use super::{FINAL, NOW_MS, PostgresStore, REQUESTS_CHANNEL, lease_of};
use crate::{Claim, Lease, Millis, Request, Result};

pub(super) async fn claim(
    store: &PostgresStore,
    owner: &str,
    lease_ms: Millis,
    which: Claim,
) -> Result<Vec<Lease>> {
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
    let (sql, pool) = (&sql, &store.pool);
    store
        .read(move || async move {
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

pub(super) async fn renew(
    store: &PostgresStore,
    owner: &str,
    lease_ms: Millis,
) -> Result<Vec<Lease>> {
    let sql = format!(
        // Locked in id order, as the writer locks them: no deadlock between the two.
        "UPDATE executions SET lease_until = {NOW_MS} + $2
         WHERE id IN (SELECT id FROM executions WHERE owner = $1 AND status NOT IN {FINAL}
                      ORDER BY id FOR UPDATE)
         RETURNING id, project, status, requested"
    );
    let (sql, pool) = (&sql, &store.pool);
    store
        .read(move || async move {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(owner)
                .bind(lease_ms)
                .fetch_all(pool)
                .await?;
            rows.iter().map(lease_of).collect()
        })
        .await
}

pub(super) async fn release(store: &PostgresStore, owner: &str) -> Result<()> {
    let pool = &store.pool;
    store
        .read(move || async move {
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

pub(super) async fn hold(
    store: &PostgresStore,
    name: &str,
    owner: &str,
    lease_ms: Millis,
) -> Result<bool> {
    let sql = format!(
        "INSERT INTO leases (name, owner, lease_until) VALUES ($1, $2, {NOW_MS} + $3)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
            lease_until = excluded.lease_until
         WHERE leases.owner = excluded.owner OR leases.lease_until < {NOW_MS}
         RETURNING owner"
    );
    let (sql, pool) = (&sql, &store.pool);
    store
        .read(move || async move {
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

pub(super) async fn request(store: &PostgresStore, id: &str, request: Request) -> Result<bool> {
    let sql = format!(
        "WITH u AS (UPDATE executions SET requested = $2
                    WHERE id = $1 AND status NOT IN {FINAL} RETURNING id)
         SELECT pg_notify('{REQUESTS_CHANNEL}', id) FROM u"
    );
    let (sql, pool) = (&sql, &store.pool);
    store
        .read(move || async move {
            let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id)
                .bind(request.as_str())
                .fetch_all(pool)
                .await?;
            Ok(!rows.is_empty())
        })
        .await
}
