//! The PostgreSQL store: a shared throwaway cluster (a fresh database per test) for the
//! suite, and what only a store shared by several processes must do: migrate at once,
//! split claims, fence writes of a lost execution, number the log across processes,
//! announce commits across processes, and ride out a restart of the database.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use store::postgres::{Options, PostgresStore};
use store::{Batch, Claim, Event, Json, Status, StatusChange, Store};
use testkit::postgres::TempCluster;

use crate::suite::new_execution;

static CLUSTER: OnceLock<Option<TempCluster>> = OnceLock::new();

fn cluster(test: &str) -> Option<&'static TempCluster> {
    CLUSTER.get_or_init(|| TempCluster::for_test(test)).as_ref()
}

/// A fresh database on the shared cluster.
async fn database(test: &str) -> Option<String> {
    let cluster = cluster(test)?;
    Some(cluster.database(test).unwrap())
}

async fn connect(url: &str) -> PostgresStore {
    PostgresStore::connect(Options::new(url), Duration::from_secs(30))
        .await
        .unwrap()
}

/// A store on a fresh database, or `None` where the test is skipped.
pub(crate) async fn store(test: &str) -> Option<PostgresStore> {
    Some(connect(&database(test).await?).await)
}

fn events(execution: &str, seqs: std::ops::RangeInclusive<u64>) -> Batch {
    Batch {
        execution: execution.into(),
        events: seqs
            .map(|seq| Event {
                seq,
                time: seq as i64,
                type_: "x".into(),
                data: Json::of(&json!({"seq": seq})),
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn several_processes_migrate_one_database_at_once() {
    let Some(url) = database("migrate_at_once").await else {
        return;
    };
    let stores = futures::future::join_all((0..4).map(|_| connect(&url))).await;
    stores[0].create(new_execution("e1")).await.unwrap();
    assert!(stores[3].execution("e1").await.unwrap().is_some());
}

#[tokio::test]
async fn concurrent_claims_split_the_executions() {
    let Some(url) = database("claims_split").await else {
        return;
    };
    let (a, b) = (connect(&url).await, connect(&url).await);
    for i in 0..200 {
        a.create(new_execution(&format!("e{i:03}"))).await.unwrap();
    }
    async fn claim(store: &PostgresStore, owner: &str) -> Vec<String> {
        let mut mine = Vec::new();
        loop {
            let got = store.claim(owner, 60_000, Claim::Any(7)).await.unwrap();
            if got.is_empty() {
                return mine;
            }
            mine.extend(got.into_iter().map(|l| l.id));
        }
    }
    let (mine_a, mine_b) = tokio::join!(claim(&a, "a"), claim(&b, "b"));
    let mut all: Vec<String> = mine_a.iter().chain(&mine_b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "each execution claimed exactly once");
    assert_eq!(mine_a.len() + mine_b.len(), 200);
}

/// Once another process holds an execution, this process's batches for it (and for its
/// children) are dropped; batches of executions it holds, or nobody holds, land.
#[tokio::test]
async fn writes_to_an_execution_held_elsewhere_are_dropped() {
    let Some(url) = database("fencing").await else {
        return;
    };
    let mut options = Options::new(&url);
    options.node = "a".into();
    let a = PostgresStore::connect(options, Duration::from_secs(30))
        .await
        .unwrap();
    for id in ["held", "mine", "free", "held/do/0/child"] {
        a.create(new_execution(id)).await.unwrap();
    }
    a.claim("b", 60_000, Claim::One("held".into()))
        .await
        .unwrap();
    a.claim("a", 60_000, Claim::One("mine".into()))
        .await
        .unwrap();
    for id in ["held", "mine", "free", "held/do/0/child"] {
        a.commit(events(id, 1..=2));
    }
    let ticket = a.commit(Batch {
        status: Some(StatusChange {
            status: Status::Completed,
            output: Some(json!(1)),
            error: None,
            at: 5,
        }),
        ..events("held", 3..=3)
    });
    a.durable(ticket).await.unwrap();
    for (id, expected) in [
        ("held", 0),
        ("held/do/0/child", 0),
        ("mine", 2),
        ("free", 2),
    ] {
        assert_eq!(a.events(id, 0, 10).await.unwrap().len(), expected, "{id}");
    }
    assert_eq!(
        a.execution("held").await.unwrap().unwrap().status,
        Status::Pending
    );
}

/// Two processes appending at once: the log of all executions has each event once, at
/// strictly increasing positions, with each execution's events in order; and each
/// process hears of the other's commits.
#[tokio::test]
async fn the_log_is_numbered_in_commit_order_across_processes() {
    let Some(url) = database("log_across").await else {
        return;
    };
    let (a, b) = (connect(&url).await, connect(&url).await);
    let mut heard_by_b = b.subscribe();
    a.create(new_execution("a")).await.unwrap();
    b.create(new_execution("b")).await.unwrap();
    async fn append(store: &PostgresStore, id: &str) {
        let mut last = store::Ticket(0);
        for seq in 1..=300 {
            last = store.commit(events(id, seq..=seq));
            if seq % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        store.durable(last).await.unwrap();
    }
    tokio::join!(append(&a, "a"), append(&b, "b"));
    let log = a
        .log(store::LogQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .events;
    assert_eq!(log.len(), 600);
    assert!(log.windows(2).all(|w| w[0].pos < w[1].pos));
    for id in ["a", "b"] {
        let seqs: Vec<u64> = log
            .iter()
            .filter(|l| l.execution == id)
            .map(|l| l.event.seq)
            .collect();
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>(), "{id}");
    }
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let notice = heard_by_b.recv().await.unwrap();
            if &*notice.execution == "a" && notice.last_seq == 300 {
                return notice;
            }
        }
    })
    .await
    .expect("b hears of a's last commit");
    assert!(
        heard.events.is_empty(),
        "events from elsewhere are read from the journal"
    );
}

/// The database stops (as in a crash) with writes queued: they wait, and land once it
/// is back, each once.
#[tokio::test]
async fn writes_wait_out_a_restart_of_the_database() {
    let Some(cluster) = TempCluster::for_test("restart") else {
        return;
    };
    let url = cluster.database("restart").unwrap();
    let store = connect(&url).await;
    store.create(new_execution("e1")).await.unwrap();
    store
        .durable(store.commit(events("e1", 1..=5)))
        .await
        .unwrap();

    cluster.stop().unwrap();
    let ticket = store.commit(events("e1", 6..=10));
    let waiting = tokio::time::timeout(Duration::from_millis(1500), store.durable(ticket)).await;
    assert!(
        waiting.is_err(),
        "nothing can be durable while the database is down"
    );
    assert!(store.execution("e1").await.unwrap_err().is_unavailable());
    cluster.restart().unwrap();
    tokio::time::timeout(Duration::from_secs(60), store.durable(ticket))
        .await
        .expect("the writes land once the database is back")
        .unwrap();
    let seqs: Vec<u64> = store
        .events("e1", 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    let delivered = store.deliver("e1", json!({"type": "t"})).await.unwrap();
    assert_eq!(delivered, 1);
}

/// Requests recorded while the store's listener is disconnected are not announced one by
/// one; after it reconnects it says so, and whoever runs executions reads theirs again.
#[tokio::test]
async fn a_reconnected_listener_says_requests_may_have_been_missed() {
    let Some(cluster) = TempCluster::for_test("requests_missed") else {
        return;
    };
    let url = cluster.database("requests_missed").unwrap();
    let store = connect(&url).await;
    let mut requests = store.requests();
    cluster.stop().unwrap();
    cluster.restart().unwrap();
    let unknown = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match requests.recv().await {
                Ok(store::Requested::Unknown) => return true,
                Ok(store::Requested::For(_)) => continue,
                Err(_) => return false,
            }
        }
    })
    .await
    .expect("the reconnected listener announces that requests may have been missed");
    assert!(unknown);
    // Requests recorded after that are announced one by one again.
    store.create(new_execution("e1")).await.unwrap();
    assert!(store.request("e1", store::Request::Cancel).await.unwrap());
    let next = tokio::time::timeout(Duration::from_secs(10), requests.recv())
        .await
        .expect("the request is announced")
        .unwrap();
    assert_eq!(next, store::Requested::For("e1".into()));
}
