//! Schedules on a real `skein server`: `every: 1s` across a SIGKILL and restart of the
//! server (no slot started twice; the missed ones caught up or skipped as the
//! catch-up policy says), driven through `skein exec schedules`, and a workflow whose
//! document has a `schedule`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{call, exec, free_port, healthy};

/// The slot times (seconds since the epoch) of the executions schedule `id` started.
pub(crate) async fn slots(client: &reqwest::Client, base: &str, id: &str) -> Vec<i64> {
    let (status, list) = call(
        client,
        format!("{base}/v1/executions?label=skein.dev/schedule:{id}&limit=1000"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let mut seconds: Vec<i64> = list["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["id"].as_str().unwrap();
            let stamp = name.strip_prefix(&format!("{id}-")).unwrap();
            let at: jiff::civil::DateTime =
                jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp).unwrap();
            at.to_zoned(jiff::tz::TimeZone::UTC)
                .unwrap()
                .timestamp()
                .as_second()
        })
        .collect();
    seconds.sort_unstable();
    seconds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_across_a_killed_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let start = || crate::server::serve(port, None, dir.path());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut server = start();
    healthy(&client, &base).await;
    let workflow = dir.path().join("tick.yaml");
    std::fs::write(
        &workflow,
        "document: {dsl: '1.0.3', namespace: test, name: tick, version: '1.0.0'}\ndo:\n  - at:\n      set: {id: '${ $workflow.id }'}\n",
    )
    .unwrap();
    for (id, catchup) in [("all", "all"), ("skip", "skip")] {
        let (code, out, err) = exec(
            &base,
            &[
                "schedules",
                "create",
                id,
                workflow.to_str().unwrap(),
                "--every",
                "1s",
                "--catchup",
                catchup,
                // A run cut by the kill is resumed after the restart: let the caught-up
                // slots start beside it.
                "--overlap",
                "allow",
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("every 1s"), "{out}");
    }
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    server.kill().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let _server = start();
    healthy(&client, &base).await;
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    for id in ["all", "skip"] {
        let (code, _, err) = exec(&base, &["schedules", "pause", id]).await;
        assert_eq!(code, 0, "{err}");
    }
    // A start in flight at the pause has landed by now.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let all = slots(&client, &base, "all").await;
    let skip = slots(&client, &base, "skip").await;
    // Catch-up `all`: every second from the first slot to the last, each once.
    assert!(all.len() >= 8, "{all:?}");
    let expected: Vec<i64> = (all[0]..=*all.last().unwrap()).collect();
    assert_eq!(all, expected, "a slot was lost or doubled");
    // Catch-up `skip`: the slots of the downtime are missing, but the one on time.
    let missing: BTreeSet<i64> = (skip[0]..=*skip.last().unwrap())
        .filter(|s| !skip.contains(s))
        .collect();
    assert!(missing.len() >= 2, "skip caught up: {skip:?}");
    let (_, schedule) = call(&client, format!("{base}/v1/schedules/skip"), None).await;
    assert!(schedule["skipped"].as_u64().unwrap() >= 2, "{schedule}");
    assert_eq!(schedule["paused"], json!(true));

    // Every execution ran to its end.
    let (_, list) = call(
        &client,
        format!("{base}/v1/executions?label=skein.dev/schedule:all&limit=1000"),
        None,
    )
    .await;
    for e in list["executions"].as_array().unwrap() {
        let (_, done) = call(
            &client,
            format!(
                "{base}/v1/executions/{}?wait=10s",
                e["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
        assert_eq!(done["status"], "completed", "{done}");
    }
}

/// A deployed workflow whose document has a `schedule` is started by it; bad schedules
/// are refused with what is wrong; deleting the workflow deletes its schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_schedule_and_the_api_s_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (port, grpc_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let _server = crate::server::serve(port, Some(grpc_port), dir.path());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let doc = "document: {dsl: '1.0.3', namespace: test, name: nightly, version: '1.0.0'}\nschedule:\n  every: {seconds: 1}\ndo:\n  - a:\n      set: {ok: true}\n";
    let (status, body) = call(
        &client,
        format!("{base}/v1/workflows"),
        Some(json!({"name": "nightly", "workflow": doc})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut started = Vec::new();
    for _ in 0..40 {
        started = slots(&client, &base, "nightly").await;
        if started.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.len() >= 2, "{started:?}");
    let (_, schedule) = call(&client, format!("{base}/v1/schedules/nightly"), None).await;
    assert_eq!(
        (&schedule["workflowRef"], &schedule["source"]),
        (&json!("nightly"), &json!("workflow:nightly")),
        "{schedule}"
    );
    assert_eq!(schedule["upcoming"].as_array().unwrap().len(), 5);

    let response = client
        .delete(format!("{base}/v1/workflows/nightly"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let (status, _) = call(&client, format!("{base}/v1/schedules/nightly"), None).await;
    assert_eq!(status, 404);

    // Zigflow's schedule metadata: the schedule's id and the input of each start.
    let zigflow = "document:\n  dsl: 1.0.0\n  taskQueue: q\n  workflowType: zbeat\n  version: 0.0.1\n  metadata:\n    scheduleId: zigflow_beat\n    scheduleInput:\n      - who: cron\nschedule:\n  every: {hours: 1}\ndo:\n  - a:\n      set:\n        who: ${ .who }\n";
    let (status, body) = call(
        &client,
        format!("{base}/v1/workflows"),
        Some(json!({"name": "zbeat", "workflow": zigflow})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, schedule) = call(&client, format!("{base}/v1/schedules/zigflow_beat"), None).await;
    assert_eq!(status, 200, "{schedule}");
    assert_eq!(
        (
            &schedule["workflowRef"],
            &schedule["input"],
            &schedule["every"]
        ),
        (
            &json!("zbeat"),
            &json!({"who": "cron"}),
            &json!("3600000ms")
        ),
        "{schedule}"
    );
    client
        .delete(format!("{base}/v1/workflows/zbeat"))
        .send()
        .await
        .unwrap();
    let (status, _) = call(&client, format!("{base}/v1/schedules/zigflow_beat"), None).await;
    assert_eq!(status, 404);

    for (body, expected) in [
        (
            json!({"id": "x", "workflowRef": "nightly", "every": "1s"}),
            "there is no workflow `nightly`",
        ),
        (
            json!({"id": "x", "workflow": doc, "cron": "61 * * * *"}),
            "is not a cron expression",
        ),
        (
            json!({"id": "x", "workflow": doc, "cron": "0 9 * * 1", "timezone": "Mars/Base"}),
            "unknown time zone `Mars/Base`",
        ),
        (
            json!({"id": "x", "workflow": doc, "every": "10ms"}),
            "shorter than one second",
        ),
        (
            json!({"id": "x", "workflow": doc, "every": "1s", "after": "1s"}),
            "only one of `every`, `cron` and `after`",
        ),
        (
            json!({"id": "x", "workflow": doc}),
            "needs one of `every`, `cron`, `after` or `on`",
        ),
        (
            json!({"id": "x y", "workflow": doc, "every": "1s"}),
            "is not a valid schedule id",
        ),
        (
            json!({"id": "x", "workflow": "do: []", "every": "1s"}),
            "invalid",
        ),
        (
            json!({"id": "x", "workflow": doc, "every": "1s", "overlap": "queue"}),
            "overlap",
        ),
    ] {
        let (status, answer): (u16, Value) =
            call(&client, format!("{base}/v1/schedules"), Some(body.clone())).await;
        let message =
            answer["message"].as_str().unwrap_or_default().to_string() + &answer.to_string();
        assert!(
            (400..500).contains(&status) && message.contains(expected),
            "{body}: {status} {answer}"
        );
    }

    // The same over gRPC.
    use api::grpc::pb;
    let mut runner = crate::server::runner(grpc_port).await;
    let created = runner
        .create_schedule(pb::CreateScheduleRequest {
            spec: Some(pb::ScheduleSpec {
                id: "weekdays".into(),
                workflow_yaml: doc.into(),
                cron: "0 9 * * 1-5".into(),
                timezone: "Europe/Paris".into(),
                catchup: "one".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);
    let schedule = created.schedule.unwrap();
    assert_eq!(schedule.upcoming.len(), 5);
    // 09:00 in Paris is 08:00 UTC in winter, 07:00 in summer.
    assert!(
        schedule
            .upcoming
            .iter()
            .all(|t| t.contains("T08:00:00") || t.contains("T07:00:00")),
        "{:?}",
        schedule.upcoming
    );
    let paused = runner
        .pause_schedule(pb::ScheduleRef {
            id: "weekdays".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(paused.spec.unwrap().paused && paused.upcoming.is_empty());
    let listed = runner
        .list_schedules(pb::ListSchedulesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.schedules.len(), 1);
    runner
        .delete_schedule(pb::ScheduleRef {
            id: "weekdays".into(),
        })
        .await
        .unwrap();
    let gone = runner
        .get_schedule(pb::ScheduleRef {
            id: "weekdays".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);

    // Schedules that start on events posted to /v1/events.
    let events_doc = dir.path().join("on.yaml");
    std::fs::write(
        &events_doc,
        "document: {dsl: '1.0.3', namespace: test, name: on-events, version: '1.0.0'}\ndo:\n  - count:\n      set: {events: '${ length }', first: '${ .[0].type }'}\n",
    )
    .unwrap();
    let (code, out, err) = exec(
        &base,
        &[
            "schedules",
            "create",
            "orders",
            events_doc.to_str().unwrap(),
            "--on",
            r#"{"any": [{"with": {"type": "order.placed"}}, {"with": {"type": "order\\..*", "source": "shop"}}]}"#,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = exec(
        &base,
        &[
            "schedules",
            "create",
            "pair",
            events_doc.to_str().unwrap(),
            "--on",
            r#"{"all": [{"with": {"type": "left"}}, {"with": {"type": "right"}}]}"#,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let publish = |event: Value| {
        let path = dir.path().join("event.json");
        std::fs::write(&path, event.to_string()).unwrap();
        let base = base.clone();
        async move {
            let (code, out, err) =
                exec(&base, &["publish", path.to_str().unwrap(), "--json"]).await;
            assert_eq!(code, 0, "{err}");
            serde_json::from_str::<Value>(&out).unwrap()["started"].clone()
        }
    };
    let placed =
        json!({"specversion": "1.0", "id": "o-1", "source": "web", "type": "order.placed"});
    assert_eq!(publish(placed.clone()).await, json!(["orders-event-o-1"]));
    // The same event again is the same execution.
    assert_eq!(publish(placed.clone()).await, json!(["orders-event-o-1"]));
    let elsewhere =
        json!({"specversion": "1.0", "id": "o-2", "source": "web", "type": "order.paid"});
    assert_eq!(publish(elsewhere).await, json!([]));
    assert_eq!(
        publish(json!({"id": "l-1", "source": "x", "type": "left"})).await,
        json!([])
    );
    assert_eq!(
        publish(json!({"id": "r-1", "source": "x", "type": "right"})).await,
        json!(["pair-event-r-1"])
    );
    let (_, done) = call(
        &client,
        format!("{base}/v1/executions/orders-event-o-1?wait=10s"),
        None,
    )
    .await;
    assert_eq!(
        done["output"],
        json!({"events": 1, "first": "order.placed"}),
        "{done}"
    );
    assert_eq!(done["labels"]["skein.dev/schedule"], "orders");
    let (_, done) = call(
        &client,
        format!("{base}/v1/executions/pair-event-r-1?wait=10s"),
        None,
    )
    .await;
    assert_eq!(
        done["output"],
        json!({"events": 2, "first": "left"}),
        "{done}"
    );

    // A document's `schedule.on`.
    let on_doc = "document: {dsl: '1.0.3', namespace: test, name: on-doc, version: '1.0.0'}\nschedule:\n  on:\n    one:\n      with: {type: invoice.due}\ndo:\n  - a:\n      set: {id: '${ .[0].id }'}\n";
    let (status, body) = call(
        &client,
        format!("{base}/v1/workflows"),
        Some(json!({"name": "invoices", "workflow": on_doc})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        publish(json!({"id": "i-9", "source": "billing", "type": "invoice.due"})).await,
        json!(["invoices-event-i-9"])
    );
    let (_, done) = call(
        &client,
        format!("{base}/v1/executions/invoices-event-i-9?wait=10s"),
        None,
    )
    .await;
    assert_eq!(done["output"], json!({"id": "i-9"}), "{done}");
}
