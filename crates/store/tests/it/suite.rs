//! Behaviour every store must have, written against `&dyn Store`.

use serde_json::json;
use store::{
    Batch, Created, Event, Json, NewExecution, Status, StatusChange, Step, StepState, Store,
};

pub(crate) fn new_execution(id: &str) -> NewExecution {
    NewExecution {
        id: id.into(),
        namespace: "test".into(),
        name: "flow".into(),
        version: "1.0.0".into(),
        definition: "document: {}".into(),
        input: json!({"n": 1}),
        labels: [("team".to_string(), "render".to_string())].into(),
        project: store::DEFAULT_PROJECT.into(),
        created_at: 1_000,
    }
}

/// Records `id` as completed (output `1`) and waits until that is durable.
async fn complete(store: &dyn Store, id: &str) {
    let ticket = store.commit(Batch {
        execution: id.into(),
        status: Some(StatusChange {
            status: Status::Completed,
            output: Some(json!(1)),
            error: None,
            at: 2_000,
        }),
        ..Default::default()
    });
    store.durable(ticket).await.unwrap();
}

fn event(seq: u64, type_: &str) -> Event {
    Event {
        seq,
        time: 1_000 + seq as i64,
        type_: type_.into(),
        data: Json::of(&json!({"seq": seq})),
    }
}

/// Creates `id` with one completed step and two events, durably.
pub(crate) async fn seed(store: &dyn Store, id: &str) {
    assert_eq!(store.create(new_execution(id)).await.unwrap(), Created::New);
    let ticket = store.commit(Batch {
        execution: id.into(),
        steps: vec![Step {
            key: "/do/0/a".into(),
            state: StepState::Completed {
                output: json!(1),
                context: None,
            },
        }],
        events: vec![event(1, "started"), event(2, "completed")],
        status: None,
    });
    store.durable(ticket).await.unwrap();
}

pub(crate) async fn create_is_idempotent_by_id(store: &dyn Store) {
    assert_eq!(
        store.create(new_execution("e1")).await.unwrap(),
        Created::New
    );
    let again = store
        .create(NewExecution {
            input: json!("different"),
            ..new_execution("e1")
        })
        .await
        .unwrap();
    let Created::Existing(existing) = again else {
        panic!("expected the existing execution")
    };
    assert_eq!(existing.input, json!({"n": 1}), "the first creation wins");
    assert_eq!(existing.status, Status::Pending);
    assert!(store.execution("nope").await.unwrap().is_none());
}

pub(crate) async fn a_batch_lands_whole_and_in_order(store: &dyn Store) {
    seed(store, "e1").await;
    let ticket = store.commit(Batch {
        execution: "e1".into(),
        steps: vec![],
        events: vec![event(3, "workflow.completed")],
        status: Some(StatusChange {
            status: Status::Completed,
            output: Some(json!({"done": true})),
            error: None,
            at: 5_000,
        }),
    });
    store.durable(ticket).await.unwrap();
    let e = store.execution("e1").await.unwrap().unwrap();
    assert_eq!(e.status, Status::Completed);
    assert_eq!(e.output, Some(json!({"done": true})));
    assert_eq!(e.updated_at, 5_000);
    let events = store.events("e1", 0, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        store.events("e1", 2, 100).await.unwrap(),
        vec![event(3, "workflow.completed")]
    );
    assert_eq!(store.events("e1", 0, 1).await.unwrap().len(), 1);
}

/// Nobody waits for the batch, yet it is committed soon: lingering for company is
/// bounded in time. (A writer that lingered forever would fail here.)
pub(crate) async fn a_batch_nobody_waits_for_is_committed_anyway(store: &dyn Store) {
    seed(store, "e1").await;
    store.commit(Batch {
        execution: "e1".into(),
        steps: vec![],
        events: vec![event(3, "task.started")],
        status: None,
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.events("e1", 2, 10).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch was never committed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// The engine allows results 256 levels deep; the store must read back what it wrote,
/// inside an event's data too (serde_json alone stops at 128).
pub(crate) async fn deep_documents_read_back(store: &dyn Store) {
    store.create(new_execution("e1")).await.unwrap();
    let mut deep = json!(1);
    for _ in 0..258 {
        deep = json!([deep]);
    }
    let ticket = store.commit(Batch {
        execution: "e1".into(),
        steps: vec![Step {
            key: "/do/0/deep".into(),
            state: StepState::Completed {
                output: deep.clone(),
                context: Some(deep.clone()),
            },
        }],
        events: vec![Event {
            seq: 1,
            time: 1,
            type_: "task.completed".into(),
            data: Json::of(&json!({"output": deep})),
        }],
        status: None,
    });
    store.durable(ticket).await.unwrap();
    let journal = store.journal("e1").await.unwrap();
    assert_eq!(
        journal.steps[0].state,
        StepState::Completed {
            output: deep.clone(),
            context: Some(deep.clone()),
        }
    );
    let events = store.events("e1", 0, 10).await.unwrap();
    assert_eq!(events[0].data.value(), json!({"output": deep}));
}

pub(crate) async fn steps_move_from_started_to_done(store: &dyn Store) {
    store.create(new_execution("e1")).await.unwrap();
    let key = "/do/0/call#1".to_string();
    store.commit(Batch {
        execution: "e1".into(),
        steps: vec![Step {
            key: key.clone(),
            state: StepState::Started,
        }],
        ..Default::default()
    });
    store.commit(Batch {
        execution: "e1".into(),
        steps: vec![Step {
            key: "/do/1/wait".into(),
            state: StepState::Timer { deadline: 9_999 },
        }],
        ..Default::default()
    });
    let done = StepState::Faulted {
        error: json!({"status": 503}),
        context: Some(json!({"k": 1})),
    };
    let ticket = store.commit(Batch {
        execution: "e1".into(),
        steps: vec![Step {
            key: key.clone(),
            state: done.clone(),
        }],
        ..Default::default()
    });
    store.durable(ticket).await.unwrap();
    let mut steps = store.journal("e1").await.unwrap().steps;
    steps.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        steps,
        vec![
            Step { key, state: done },
            Step {
                key: "/do/1/wait".into(),
                state: StepState::Timer { deadline: 9_999 }
            }
        ]
    );
}

pub(crate) async fn concurrent_commits_share_transactions_and_all_become_durable(
    store: &dyn Store,
) {
    store.create(new_execution("e1")).await.unwrap();
    let tickets: Vec<_> = (0..2_000u64)
        .map(|i| {
            store.commit(Batch {
                execution: "e1".into(),
                steps: vec![Step {
                    key: format!("/do/{i}/s"),
                    state: StepState::Completed {
                        output: json!(i),
                        context: None,
                    },
                }],
                events: vec![event(i + 1, "task.completed")],
                status: None,
            })
        })
        .collect();
    assert!(
        tickets.windows(2).all(|w| w[0] < w[1]),
        "tickets follow queue order"
    );
    let last = *tickets.last().unwrap();
    store.durable(last).await.unwrap();
    // Every earlier ticket is durable once a later one is.
    store.durable(tickets[0]).await.unwrap();
    let journal = store.journal("e1").await.unwrap();
    assert_eq!(journal.steps.len(), 2_000);
    assert_eq!(journal.last_seq, 2_000);
}

pub(crate) async fn a_broken_batch_stops_the_store_loudly(store: &dyn Store) {
    seed(store, "e1").await;
    // Sequence 2 exists: a second event with it breaks the strictly increasing log.
    let ticket = store.commit(Batch {
        execution: "e1".into(),
        events: vec![event(2, "duplicate")],
        ..Default::default()
    });
    let err = store.durable(ticket).await.unwrap_err();
    assert!(
        err.to_string().contains("UNIQUE") || err.to_string().contains("constraint"),
        "{err}"
    );
    // Nothing of the broken batch landed.
    assert_eq!(store.events("e1", 0, 10).await.unwrap().len(), 2);
}

pub(crate) async fn unfinished_lists_what_is_not_final(store: &dyn Store) {
    // `a/do/0/sub` is a child of `a`: its parent resumes it.
    for id in ["a", "b", "c", "a/do/0/sub"] {
        store.create(new_execution(id)).await.unwrap();
    }
    let ticket = store.commit(Batch {
        execution: "b".into(),
        status: Some(StatusChange {
            status: Status::Faulted,
            output: None,
            error: Some(json!({"status": 500})),
            at: 2_000,
        }),
        ..Default::default()
    });
    store.durable(ticket).await.unwrap();
    assert_eq!(store.unfinished().await.unwrap(), ["a", "c"]);
    assert_eq!(
        store.execution("b").await.unwrap().unwrap().error,
        Some(json!({"status": 500}))
    );
}

pub(crate) async fn list_filters_and_pages_newest_first(store: &dyn Store) {
    for (i, id) in ["a", "b", "c", "d", "c/do/0/sub"].iter().enumerate() {
        let mut new = new_execution(id);
        new.created_at = 1_000 + i as i64;
        if *id == "d" {
            new.name = "other".into();
            new.labels = [("team".to_string(), "audio".to_string())].into();
            new.project = "sound".into();
        }
        store.create(new).await.unwrap();
    }
    complete(store, "b").await;
    let ids = |list: Vec<store::Execution>| list.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let query = |limit| store::ListQuery {
        limit,
        ..Default::default()
    };
    assert_eq!(
        ids(store.list(query(10)).await.unwrap()),
        ["d", "c", "b", "a"]
    );
    let first = store.list(query(2)).await.unwrap();
    let last = first.last().unwrap();
    let before = Some((last.created_at, last.id.clone()));
    assert_eq!(ids(first), ["d", "c"]);
    let next = store::ListQuery { before, ..query(2) };
    assert_eq!(ids(store.list(next).await.unwrap()), ["b", "a"]);
    let pending_flows = store::ListQuery {
        status: Some(Status::Pending),
        name: Some("flow".into()),
        ..query(10)
    };
    assert_eq!(ids(store.list(pending_flows).await.unwrap()), ["c", "a"]);
    let audio = store::ListQuery {
        label: Some(("team".into(), "audio".into())),
        ..query(10)
    };
    let found = store.list(audio).await.unwrap();
    assert_eq!(found[0].labels["team"], "audio");
    assert_eq!(ids(found), ["d"]);
    let sound = store::ListQuery {
        project: Some("sound".into()),
        ..query(10)
    };
    assert_eq!(ids(store.list(sound).await.unwrap()), ["d"]);
    let with_children = store::ListQuery {
        children: true,
        ..query(10)
    };
    assert_eq!(store.list(with_children).await.unwrap().len(), 5);
    // Creation times 1000 to 1003: from is inclusive, until exclusive.
    let window = store::ListQuery {
        created_from: Some(1_001),
        created_until: Some(1_003),
        ..query(10)
    };
    assert_eq!(ids(store.list(window).await.unwrap()), ["c", "b"]);
}

pub(crate) async fn commits_announce_new_events(store: &dyn Store) {
    let mut notices = store.subscribe();
    seed(store, "e1").await;
    let notice = notices.recv().await.unwrap();
    assert_eq!((&*notice.execution, notice.last_seq), ("e1", 2));
    // A batch without events announces nothing; the next one with events does.
    store.commit(Batch {
        execution: "e1".into(),
        steps: vec![Step {
            key: "/do/1/b".into(),
            state: StepState::Started,
        }],
        ..Default::default()
    });
    let ticket = store.commit(Batch {
        execution: "e1".into(),
        events: vec![event(3, "task.started"), event(4, "task.completed")],
        ..Default::default()
    });
    store.durable(ticket).await.unwrap();
    let notice = notices.recv().await.unwrap();
    assert_eq!((&*notice.execution, notice.last_seq), ("e1", 4));
    assert_eq!(store.seq_before("e1", 1_003).await.unwrap(), 2);
    assert_eq!(store.seq_before("e1", 0).await.unwrap(), 0);
}

pub(crate) async fn the_log_of_all_executions_is_in_commit_order(store: &dyn Store) {
    seed(store, "e1").await;
    let mut other = new_execution("e2");
    other.name = "other".into();
    store.create(other).await.unwrap();
    let ticket = store.commit(Batch {
        execution: "e2".into(),
        events: vec![event(1, "started"), event(2, "completed")],
        ..Default::default()
    });
    store.durable(ticket).await.unwrap();
    let ticket = store.commit(Batch {
        execution: "e1".into(),
        events: vec![event(3, "completed")],
        ..Default::default()
    });
    store.durable(ticket).await.unwrap();
    let all = |query: store::LogQuery| async move {
        store
            .log(store::LogQuery {
                limit: 100,
                ..query
            })
            .await
            .unwrap()
            .events
            .into_iter()
            .map(|l| (l.pos, l.execution, l.event.seq))
            .collect::<Vec<_>>()
    };
    let e = |s: &str| s.to_string();
    assert_eq!(
        all(Default::default()).await,
        [
            (1, e("e1"), 1),
            (2, e("e1"), 2),
            (3, e("e2"), 1),
            (4, e("e2"), 2),
            (5, e("e1"), 3)
        ]
    );
    assert_eq!(
        all(store::LogQuery {
            after: 3,
            ..Default::default()
        })
        .await,
        [(4, e("e2"), 2), (5, e("e1"), 3)]
    );
    let by_name = store::LogQuery {
        name: Some("other".into()),
        ..Default::default()
    };
    assert_eq!(all(by_name).await, [(3, e("e2"), 1), (4, e("e2"), 2)]);
    let by_type = store::LogQuery {
        type_: Some("completed".into()),
        ..Default::default()
    };
    assert_eq!(
        all(by_type).await,
        [(2, e("e1"), 2), (4, e("e2"), 2), (5, e("e1"), 3)]
    );
    let by_label = store::LogQuery {
        label: Some(("team".into(), "render".into())),
        ..Default::default()
    };
    assert_eq!(
        all(by_label).await.len(),
        5,
        "both executions have team=render"
    );
    let by_execution = store::LogQuery {
        execution: Some("e2".into()),
        ..Default::default()
    };
    assert_eq!(all(by_execution).await.len(), 2);
    // `event(n)` is at time 1000 + n.
    assert_eq!(store.pos_before(1_002).await.unwrap(), 3);
    assert_eq!(store.pos_before(0).await.unwrap(), 0);
}

pub(crate) async fn the_inbox_keeps_delivery_order(store: &dyn Store) {
    store.create(new_execution("e1")).await.unwrap();
    assert_eq!(store.deliver("e1", json!({"type": "a"})).await.unwrap(), 1);
    assert_eq!(store.deliver("e1", json!({"type": "b"})).await.unwrap(), 2);
    assert_eq!(
        store.inbox("e1", 0).await.unwrap(),
        vec![(1, json!({"type": "a"})), (2, json!({"type": "b"}))]
    );
    assert_eq!(
        store.inbox("e1", 1).await.unwrap(),
        vec![(2, json!({"type": "b"}))]
    );
    assert!(store.inbox("other", 0).await.unwrap().is_empty());
}

pub(crate) async fn named_cursors_are_set_together_and_overwritten(store: &dyn Store) {
    assert_eq!(store.cursor("callbacks").await.unwrap(), None);
    store
        .set_cursors(vec![
            ("callbacks".into(), json!({"pos": 7})),
            ("callbacks/e1".into(), json!({"seq": 3, "sent": 2})),
        ])
        .await
        .unwrap();
    store
        .set_cursors(vec![("callbacks".into(), json!({"pos": 9}))])
        .await
        .unwrap();
    assert_eq!(
        store.cursor("callbacks").await.unwrap(),
        Some(json!({"pos": 9}))
    );
    assert_eq!(
        store.cursor("callbacks/e1").await.unwrap(),
        Some(json!({"seq": 3, "sent": 2}))
    );
}

/// Leases: one owner per execution; children, ended executions and leases still held
/// are not claimable; an expired lease is taken over and says from whom.
pub(crate) async fn leases_go_to_one_owner_and_are_taken_over_when_they_expire(store: &dyn Store) {
    use store::Claim;
    for id in ["e1", "e2", "e1/do/0/child", "done"] {
        store.create(new_execution(id)).await.unwrap();
    }
    complete(store, "done").await;

    let ids = |leases: Vec<store::Lease>| leases.into_iter().map(|l| l.id).collect::<Vec<_>>();
    let a = store.claim("a", 60_000, Claim::Any(10)).await.unwrap();
    assert_eq!(
        a.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        ["e1", "e2"]
    );
    assert!(
        a.iter()
            .all(|l| l.taken_from.is_none() && l.project == "default")
    );
    assert!(ids(store.claim("b", 60_000, Claim::Any(10)).await.unwrap()).is_empty());
    assert!(
        ids(store
            .claim("b", 60_000, Claim::One("e1".into()))
            .await
            .unwrap())
        .is_empty()
    );
    assert_eq!(ids(store.renew("a", 60_000).await.unwrap()), ["e1", "e2"]);

    // A lease of 1 ms lapses at once; another owner takes it, and the first owner's
    // renewal no longer returns it.
    store.create(new_execution("e3")).await.unwrap();
    let short = store.claim("a", 1, Claim::One("e3".into())).await.unwrap();
    assert_eq!(ids(short), ["e3"]);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let taken = store.claim("b", 60_000, Claim::Any(10)).await.unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    let (from, overdue) = taken[0].taken_from.clone().expect("a takeover");
    assert_eq!((taken[0].id.as_str(), from.as_str()), ("e3", "a"));
    assert!(overdue >= 0, "{overdue}");
    assert_eq!(ids(store.renew("a", 60_000).await.unwrap()), ["e1", "e2"]);
    assert_eq!(ids(store.renew("b", 60_000).await.unwrap()), ["e3"]);
    let holders = store.holders().await.unwrap();
    let owners: Vec<_> = (holders.owners.iter())
        .map(|(owner, n, _)| (owner.as_str(), *n))
        .collect();
    assert_eq!(owners, [("a", 2), ("b", 1)]);
    assert!(holders.owners.iter().all(|(_, _, until)| *until > 0));

    // Released leases go at once.
    store.release("a").await.unwrap();
    assert!(store.renew("a", 60_000).await.unwrap().is_empty());
    let taken = store.claim("b", 60_000, Claim::Any(10)).await.unwrap();
    assert_eq!(ids(taken), ["e1", "e2"]);
}

/// A request is kept on the execution (so a later owner obeys it too) and announced.
pub(crate) async fn requests_are_kept_and_announced(store: &dyn Store) {
    let mut requests = store.requests();
    store.create(new_execution("e1")).await.unwrap();
    assert!(store.request("e1", store::Request::Pause).await.unwrap());
    let id = tokio::time::timeout(std::time::Duration::from_secs(10), requests.recv())
        .await
        .expect("the request is announced")
        .unwrap();
    assert_eq!(id, store::Requested::For("e1".into()));
    let e1 = store.execution("e1").await.unwrap().unwrap();
    assert_eq!(e1.requested, Some(store::Request::Pause));
    let lease = &store
        .claim("a", 60_000, store::Claim::Any(1))
        .await
        .unwrap()[0];
    assert!(lease.paused(), "{lease:?}");
    assert!(store.request("e1", store::Request::Resume).await.unwrap());
    assert!(!store.renew("a", 60_000).await.unwrap()[0].paused());
    assert!(!store.request("nope", store::Request::Cancel).await.unwrap());
    seed(store, "e2").await;
    let ticket = store.commit(Batch {
        execution: "e2".into(),
        events: vec![event(3, "workflow.cancelled")],
        status: Some(StatusChange {
            status: Status::Cancelled,
            output: None,
            error: None,
            at: 3_000,
        }),
        ..Default::default()
    });
    store.durable(ticket).await.unwrap();
    assert!(
        !store.request("e2", store::Request::Cancel).await.unwrap(),
        "an ended execution takes no request"
    );
}

/// A named lease has one holder at a time; it passes on when released or expired.
pub(crate) async fn named_leases_have_one_holder_at_a_time(store: &dyn Store) {
    assert!(store.hold("callbacks", "a", 60_000).await.unwrap());
    assert!(!store.hold("callbacks", "b", 60_000).await.unwrap());
    assert!(
        store.hold("callbacks", "a", 60_000).await.unwrap(),
        "renewed"
    );
    assert!(
        store.hold("other", "b", 60_000).await.unwrap(),
        "names are apart"
    );
    store.release("a").await.unwrap();
    assert!(store.hold("callbacks", "b", 60_000).await.unwrap());
    assert!(!store.hold("callbacks", "a", 60_000).await.unwrap());

    let holders = store.holders().await.unwrap();
    let named: Vec<_> = (holders.named.iter())
        .map(|(name, owner, _)| (name.as_str(), owner.as_str()))
        .collect();
    assert_eq!(named, [("callbacks", "b"), ("other", "b")]);

    assert!(store.hold("short", "a", 1).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(store.hold("short", "b", 60_000).await.unwrap(), "expired");
    assert!(!store.hold("short", "a", 60_000).await.unwrap());
}

pub(crate) async fn named_workflows_keep_their_revisions(store: &dyn Store) {
    let (first, new) = store.deploy("p", "render", "v1").await.unwrap();
    assert_eq!(
        (first.revision, new, first.definition.as_str()),
        (1, true, "v1")
    );
    // The same definition again is the same revision.
    let (again, new) = store.deploy("p", "render", "v1").await.unwrap();
    assert_eq!((again.revision, new), (1, false));
    let (second, new) = store.deploy("p", "render", "v2").await.unwrap();
    assert_eq!((second.revision, new), (2, true));
    store.deploy("p", "assemble", "a1").await.unwrap();
    store.deploy("other", "render", "o1").await.unwrap();

    let latest = store.deployed("p", "render", None).await.unwrap().unwrap();
    assert_eq!((latest.revision, latest.definition.as_str()), (2, "v2"));
    let old = store
        .deployed("p", "render", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.definition, "v1");
    assert!(
        store
            .deployed("p", "render", Some(3))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.deployed("q", "render", None).await.unwrap().is_none());

    let names: Vec<(String, u64)> = store
        .deployments("p", None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.name, d.revision))
        .collect();
    assert_eq!(
        names,
        [("assemble".to_string(), 1), ("render".to_string(), 2)]
    );
    let revisions: Vec<u64> = store
        .deployments("p", Some("render"))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.revision)
        .collect();
    assert_eq!(revisions, [2, 1]);

    assert!(store.undeploy("p", "render").await.unwrap());
    assert!(!store.undeploy("p", "render").await.unwrap());
    assert!(store.deployed("p", "render", None).await.unwrap().is_none());
    // Another project's workflow of the same name stays.
    assert!(
        store
            .deployed("other", "render", None)
            .await
            .unwrap()
            .is_some()
    );
    // Deployed again after a delete, the name starts over.
    let (fresh, _) = store.deploy("p", "render", "v3").await.unwrap();
    assert_eq!(fresh.revision, 1);
}

pub(crate) async fn schedules_keep_spec_and_state(store: &dyn Store) {
    let spec = json!({"id": "nightly", "every": "1h"});
    assert!(
        store
            .create_schedule("p", "nightly", spec.clone(), json!({"cursor": 1}))
            .await
            .unwrap()
    );
    // A second create changes nothing.
    assert!(
        !store
            .create_schedule("p", "nightly", json!({"other": true}), json!({}))
            .await
            .unwrap()
    );
    store
        .create_schedule("q", "nightly", json!({"q": 1}), json!({}))
        .await
        .unwrap();
    let one = store.schedule("p", "nightly").await.unwrap().unwrap();
    assert_eq!((one.spec, one.state), (spec.clone(), json!({"cursor": 1})));
    assert!(
        store
            .update_schedule("p", "nightly", None, Some(json!({"cursor": 2})))
            .await
            .unwrap()
    );
    let one = store.schedule("p", "nightly").await.unwrap().unwrap();
    assert_eq!((one.spec, one.state), (spec, json!({"cursor": 2})));
    assert!(
        !store
            .update_schedule("p", "none", None, Some(json!({})))
            .await
            .unwrap()
    );
    assert_eq!(store.schedules(Some("p")).await.unwrap().len(), 1);
    assert_eq!(store.schedules(None).await.unwrap().len(), 2);
    assert!(store.delete_schedule("p", "nightly").await.unwrap());
    assert!(!store.delete_schedule("p", "nightly").await.unwrap());
    assert!(store.schedule("p", "nightly").await.unwrap().is_none());
}

pub(crate) async fn labels_change_as_an_execution_runs(store: &dyn Store) {
    store.create(new_execution("lab")).await.unwrap();
    store
        .update_labels(
            "lab",
            [("stage".to_string(), "two".to_string())].into(),
            vec!["team".into()],
        )
        .await
        .unwrap();
    let labels = store.execution("lab").await.unwrap().unwrap().labels;
    assert_eq!(labels, [("stage".to_string(), "two".to_string())].into());
}

pub(crate) async fn forgotten_steps_leave_the_rest(store: &dyn Store) {
    store.create(new_execution("cp")).await.unwrap();
    let done = |key: &str| Step {
        key: key.into(),
        state: StepState::Completed {
            output: json!(1),
            context: None,
        },
    };
    let ticket = store.commit(Batch {
        execution: "cp".into(),
        steps: vec![
            done("/do/0/a"),
            done("/do/1/b"),
            done("/checkpoint"),
            done("/dox"),
        ],
        ..Default::default()
    });
    store.durable(ticket).await.unwrap();
    assert_eq!(store.forget_steps("cp", "/do/").await.unwrap(), 2);
    let keys: Vec<String> = store
        .journal("cp")
        .await
        .unwrap()
        .steps
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&"/checkpoint".to_string()) && keys.contains(&"/dox".to_string()));
}
