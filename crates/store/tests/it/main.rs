//! The store test suite, run against every implementation: SQLite, and PostgreSQL on a
//! throwaway cluster started from the system's binaries (skipped, saying so, where there
//! are none; failing instead when `SKEIN_REQUIRE_POSTGRES=1`).

mod postgres;
mod suite;

use store::Durability;
use store::sqlite::SqliteStore;

fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("skein.db"), Durability::Full).unwrap();
    (dir, store)
}

macro_rules! for_each_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite_suite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_dir, store) = super::sqlite();
                    super::suite::$name(&store).await;
                }
            )*
        }
        mod postgres_suite {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(store) = super::postgres::store(stringify!($name)).await else {
                        return;
                    };
                    super::suite::$name(&store).await;
                }
            )*
        }
    };
}

for_each_store!(
    create_is_idempotent_by_id,
    a_batch_lands_whole_and_in_order,
    a_batch_nobody_waits_for_is_committed_anyway,
    deep_documents_read_back,
    steps_move_from_started_to_done,
    concurrent_commits_share_transactions_and_all_become_durable,
    a_broken_batch_stops_the_store_loudly,
    unfinished_lists_what_is_not_final,
    list_filters_and_pages_newest_first,
    commits_announce_new_events,
    the_log_of_all_executions_is_in_commit_order,
    the_inbox_keeps_delivery_order,
    named_cursors_are_set_together_and_overwritten,
    leases_go_to_one_owner_and_are_taken_over_when_they_expire,
    requests_are_kept_and_announced,
    named_leases_have_one_holder_at_a_time,
    named_workflows_keep_their_revisions,
    schedules_keep_spec_and_state,
    labels_change_as_an_execution_runs,
    forgotten_steps_leave_the_rest,
);

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skein.db");
    {
        let store = SqliteStore::open(&path, Durability::Full).unwrap();
        suite::seed(&store, "e1").await;
    }
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    let journal = store::Store::journal(&store, "e1").await.unwrap();
    assert_eq!(journal.steps.len(), 1);
    assert_eq!(journal.last_seq, 2);
}

/// A journal of schema version 1 (no labels or projects, events without log positions)
/// gets empty labels, the default project and its events numbered by time when it is
/// opened; new events continue after.
#[tokio::test]
async fn a_version_1_journal_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skein.db");
    {
        let store = SqliteStore::open(&path, Durability::Full).unwrap();
        suite::seed(&store, "e1").await;
    }
    let conn = rusqlite_connection(&path);
    conn.execute_batch(
        "CREATE TABLE events_v1 (execution_id TEXT NOT NULL, seq INTEGER NOT NULL,
             time INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,
             PRIMARY KEY (execution_id, seq)) WITHOUT ROWID;
         INSERT INTO events_v1 SELECT execution_id, seq, time, type, data FROM events;
         DROP TABLE events; ALTER TABLE events_v1 RENAME TO events;
         ALTER TABLE executions DROP COLUMN labels; ALTER TABLE executions DROP COLUMN project;
         DROP TABLE cursors; ALTER TABLE executions DROP COLUMN owner;
         ALTER TABLE executions DROP COLUMN lease_until; ALTER TABLE executions DROP COLUMN requested;
         DROP TABLE leases;
         DROP TABLE workflows; DROP TABLE schedules; DROP INDEX executions_by_creation;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    let log = store::Store::log(
        &store,
        store::LogQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .events;
    assert_eq!(log.iter().map(|l| l.pos).collect::<Vec<_>>(), [1, 2]);
    let e1 = store::Store::execution(&store, "e1")
        .await
        .unwrap()
        .unwrap();
    assert!(e1.labels.is_empty());
    assert_eq!(e1.project, store::DEFAULT_PROJECT);
    // Version 9's index by creation, which the list walks.
    let index: i64 = rusqlite_connection(&path)
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'executions_by_creation'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 1);
    append_third_event(&store, "e1").await;
    let log = store::Store::log(
        &store,
        store::LogQuery {
            after: 2,
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .events;
    assert_eq!((log[0].pos, log[0].event.seq), (3, 3));
}

/// A journal of schema version 5 (events in execution order, with an index by
/// position) keeps every event, its position and its sequence number; new events
/// continue after.
#[tokio::test]
async fn a_version_5_journal_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skein.db");
    {
        let store = SqliteStore::open(&path, Durability::Full).unwrap();
        suite::seed(&store, "e1").await;
        suite::seed(&store, "e2").await;
    }
    let conn = rusqlite_connection(&path);
    conn.execute_batch(
        "CREATE TABLE events_v5 (execution_id TEXT NOT NULL, seq INTEGER NOT NULL,
             time INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, pos INTEGER,
             PRIMARY KEY (execution_id, seq)) WITHOUT ROWID;
         INSERT INTO events_v5 SELECT execution_id, seq, time, type, data, pos FROM events;
         DROP TABLE events; ALTER TABLE events_v5 RENAME TO events;
         CREATE UNIQUE INDEX events_by_pos ON events (pos);
         DROP TABLE workflows; DROP TABLE schedules; DROP INDEX executions_by_creation;
         PRAGMA user_version = 5;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    let log = |after| {
        store::Store::log(
            &store,
            store::LogQuery {
                after,
                limit: 10,
                ..Default::default()
            },
        )
    };
    let before: Vec<_> = log(0)
        .await
        .unwrap()
        .events
        .iter()
        .map(|l| (l.pos, l.execution.clone(), l.event.seq))
        .collect();
    assert_eq!(
        before,
        [
            (1, "e1".to_string(), 1),
            (2, "e1".to_string(), 2),
            (3, "e2".to_string(), 1),
            (4, "e2".to_string(), 2)
        ]
    );
    let e2 = store::Store::events(&store, "e2", 1, 10).await.unwrap();
    assert_eq!(e2.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    append_third_event(&store, "e1").await;
    let after = log(4).await.unwrap().events;
    assert_eq!((after[0].pos, after[0].event.seq), (5, 3));
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skein.db");
    drop(SqliteStore::open(&path, Durability::Full).unwrap());
    let conn = rusqlite_connection(&path);
    conn.pragma_update(None, "user_version", 10).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path, Durability::Full).err().unwrap();
    assert!(err.to_string().contains("schema version 10"), "{err}");
}

/// Appends event 3 of `id` and waits until it is durable.
async fn append_third_event(store: &SqliteStore, id: &str) {
    let ticket = store::Store::commit(
        store,
        store::Batch {
            execution: id.into(),
            events: vec![store::Event {
                seq: 3,
                time: 5,
                type_: "x".into(),
                data: store::Json::of(&serde_json::json!(null)),
            }],
            ..Default::default()
        },
    );
    store::Store::durable(store, ticket).await.unwrap();
}

fn rusqlite_connection(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}
