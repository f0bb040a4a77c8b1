//! Zigflow documents run by the real binary: the suite of `crates/dsl/tests/zigflow/`
//! (see `suite`), the dialect's errors with their positions, what `--strict` says of
//! it, and `wait.until` waiting for a moment to come.

use std::time::{Duration, Instant};

use crate::{repo, skein, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_zigflow_document_of_the_suite_gives_its_expected_result() {
    let base = crate::cloud_workflows::stand_in().await;
    crate::suite::every_document_gives_its_result(&repo().join("crates/dsl/tests/zigflow"), &base)
        .await;
}

#[test]
fn the_dialect_is_checked_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "document:\n  dsl: 1.0.0\n  taskQueue: Orders_Queue\n  namespace: orders\n  workflowType: place-order\n  version: 0.0.1\n.anchors: {}\ndo:\n  - later:\n      wait:\n        until: next tuesday\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let mut text = stderr(&out);
    // A document's own workflows cannot call each other in a circle.
    let circle = dir.path().join("circle.yaml");
    std::fs::write(
        &circle,
        "document: {dsl: 1.0.0, taskQueue: q, workflowType: a, version: 0.0.1}\ndo:\n  - a:\n      do:\n        - callB:\n            run:\n              workflow: {type: b}\n  - b:\n      do:\n        - callA:\n            run:\n              workflow: {type: a}\n",
    )
    .unwrap();
    let out = skein(&["validate", circle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    text.push_str(&stderr(&out));
    for expected in [
        "circle.yaml:10:11: error: task `callA` runs the workflow `a`, which is already running it",
        "bad.yaml:3:14: error: the task queue `Orders_Queue` is not a DNS label, which Zigflow requires",
        "bad.yaml:4:3: error: `namespace` and `taskQueue` name the same thing",
        "bad.yaml:11:16: error: `until` `next tuesday` is not an RFC 3339 time",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
    assert!(
        !text.contains(".anchors"),
        "anchor holders are accepted:\n{text}"
    );

    // The DSL without the dialect still refuses a dot key.
    std::fs::write(
        &file,
        "document: {dsl: 1.0.0, namespace: n, name: w, version: 0.0.1}\n.anchors: {}\ndo:\n  - a:\n      set: {x: 1}\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("unknown key `.anchors`"),
        "{}",
        stderr(&out)
    );
}

/// Metadata that means something to Temporal is accepted, and `skein validate` says
/// what skein does not apply, in the document and in tasks.
#[test]
fn temporal_metadata_is_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meta.yaml");
    std::fs::write(
        &file,
        "document:\n  dsl: 1.0.0\n  taskQueue: zigflow\n  workflowType: meta\n  version: 0.0.1\n  metadata:\n    heartbeat: {}\n    display: false\ndo:\n  - a:\n      metadata:\n        activityOptions:\n          startToCloseTimeout:\n            minutes: 1\n      set:\n        x: 1\n  - b:\n      metadata:\n        activityOptions:\n          heartbeatTimeout: PT10S\n      run:\n        shell:\n          command: 'true'\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    for expected in [
        "meta.yaml:7:5: warning: `metadata.heartbeat` is Zigflow's and is accepted, but not applied",
        "meta.yaml:10:5: warning: task `a` runs no activity, so its `activityOptions` do nothing",
        "meta.yaml:20:11: warning: `activityOptions.heartbeatTimeout` is accepted, but not applied",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
    assert!(
        !text.contains("display"),
        "other metadata is free-form:\n{text}"
    );
}

#[test]
fn strict_says_what_is_zigflow_s_own() {
    let file = repo().join("crates/dsl/tests/zigflow/wait_until.yaml");
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = skein(&["validate", "--strict", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for expected in [
        "`taskQueue` and `workflowType` are Zigflow's dialect",
        "`wait.until` is Zigflow's extension",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
}

/// A moment a second and a half ahead is waited for, not skipped.
#[test]
fn wait_until_waits_for_a_moment_to_come() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo().join("crates/dsl/tests/zigflow/wait_until.yaml");
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500);
    let input = format!("{{\"deadline\": \"{deadline}\"}}");
    let started = Instant::now();
    let out = skein(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        &input,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1300),
        "finished after {took:?}, before the moment"
    );
}

/// `--env-allow` lets workflows read the variables it names (or whose prefix it gives)
/// from the process's environment, and no others.
#[test]
fn env_allow_names_what_workflows_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.yaml");
    std::fs::write(
        &file,
        "document: {dsl: 1.0.0, taskQueue: zigflow, workflowType: env, version: 0.0.1}\ndo:\n  - read:\n      set:\n        url: ${ $env.API_URL }\n        ziggy: ${ $env.ZIGGY_MODE }\n        secret: ${ $env.DB_PASSWORD }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["run", file.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--env-allow", "API_URL,ZIGGY_*"])
        .env("API_URL", "http://api.local")
        .env("ZIGGY_MODE", "fast")
        .env("DB_PASSWORD", "hunter2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"url": "http://api.local", "ziggy": "fast", "secret": null})
    );
}

/// Zigflow's signals, queries and updates reach a running execution over REST, gRPC
/// and `skein exec`: `acceptIf` decides which messages complete a listener, queries
/// read `$data` as it stands, and an update accepted before a SIGKILL of the server
/// (delivered, not yet handled) is handled once after the restart, its answer the same
/// each time it is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_queries_and_updates_reach_a_running_workflow() {
    use api::grpc::pb;
    use serde_json::{Value, json};

    use crate::server::{call, exec, free_port, healthy};

    let dir = tempfile::tempdir().unwrap();
    let (port, grpc_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let start = || crate::server::serve(port, Some(grpc_port), dir.path());
    // reqwest is built without a default TLS provider; skein's runtime installs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut server = start();
    healthy(&client, &base).await;
    let doc = std::fs::read_to_string(repo().join("crates/dsl/tests/zigflow/driven/approval.yaml"))
        .unwrap();
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": doc, "id": "z1", "input": {"cooldown": 3}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let execution = format!("{base}/v1/executions/z1");
    let query = || async {
        let (status, body) = call(&client, format!("{execution}/queries/get_state"), None).await;
        (status, body["result"].clone())
    };
    let until_state = |want: Value| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, state) = query().await;
            if status == 200 && state == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "query: {status} {state}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    until_state(json!({"status": "waiting for approval", "approvedBy": null, "temperature": null}))
        .await;
    let (status, body) = call(&client, format!("{execution}/queries/nope"), None).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("(it has `get_state`)"),
        "{body}"
    );

    // A signal that `acceptIf` refuses is taken, and the listener goes on waiting.
    let (status, body) = call(
        &client,
        format!("{execution}/signals/approve"),
        Some(json!({"by": null})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let mut runner = crate::server::runner(grpc_port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = runner
        .query(pb::QueryRequest {
            execution_id: "z1".into(),
            name: "get_state".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        api::grpc::to_json(answer.result.unwrap())["status"],
        "waiting for approval"
    );
    // One with `by` is accepted.
    let (code, out, err) = exec(
        &base,
        &["signal", "z1", "approve", "--data", r#"{"by": "ada"}"#],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    until_state(json!({"status": "approved", "approvedBy": "ada", "temperature": null})).await;
    // Search attributes became labels: the document's at the start, the task's as it ran.
    let (_, found) = call(
        &client,
        format!("{base}/v1/executions?label=Approver:ada"),
        None,
    )
    .await;
    assert_eq!(found["executions"][0]["id"], "z1", "{found}");
    assert_eq!(
        found["executions"][0]["labels"]["Ward"], "cardiology",
        "{found}"
    );
    let (code, out, err) = exec(&base, &["query", "z1", "get_state"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["approvedBy"],
        "ada"
    );

    // During the cooldown no listener takes updates: this one waits in the inbox.
    let update = |key: &'static str, payload: Value, wait: &'static str| {
        let client = client.clone();
        let url = format!("{execution}/updates/temperature?wait={wait}");
        async move {
            let response = client
                .post(url)
                .header("idempotency-key", key)
                .header("content-type", "application/json")
                .body(payload.to_string())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap(),
            )
        }
    };
    let (status, body) = update("t-1", json!(37), "0s").await;
    assert_eq!((status, &body["handled"]), (202, &json!(false)), "{body}");
    server.kill().await.unwrap();
    let _server = start();
    healthy(&client, &base).await;
    // Sent again under its id after the restart: handled once, answered the same.
    let (status, body) = update("t-1", json!(99), "20s").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["accepted"], &body["result"]),
        (&json!(false), &json!({"seen": 37, "feverish": false})),
        "{body}"
    );
    let (status, again) = call(
        &client,
        format!("{execution}/updates/temperature/t-1"),
        None,
    )
    .await;
    assert_eq!(
        (status, &again["result"]),
        (200, &body["result"]),
        "{again}"
    );

    // Over gRPC: accepted, as 39.5 is above 38.
    let mut runner = crate::server::runner(grpc_port).await;
    let answer = runner
        .update(pb::UpdateRequest {
            execution_id: "z1".into(),
            name: "temperature".into(),
            payload: Some(api::grpc::to_value(json!(39.5))),
            update_id: "t-2".into(),
            wait_ms: 20_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.handled && answer.accepted, "{answer:?}");
    assert_eq!(
        api::grpc::to_json(answer.result.unwrap()),
        json!({"seen": 39.5, "feverish": true})
    );
    let (code, out, err) = exec(&base, &["update", "z1", "bpm", "--data", "120"]).await;
    assert_eq!((code, out.trim()), (0, "\"bpm 120\""), "{err}");

    let (status, body) = call(&client, format!("{execution}?wait=20s"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["status"], &body["output"]),
        (
            &json!("completed"),
            &json!({"status": "approved", "approval": {"by": "ada"}, "temperature": 39.5, "bpm": 120})
        ),
        "{body}"
    );
    // Each message journaled once: two signals, three updates (t-1 once).
    let (_, events, _) = exec(&base, &["events", "z1", "--json"]).await;
    let handled: Vec<Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "dev.skein.task.message.v1")
        .map(|e| e["data"]["message"].clone())
        .collect();
    let ids: Vec<(&str, &str)> = handled
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            ("approve", "signal"),
            ("approve", "signal"),
            ("temperature", "update"),
            ("temperature", "update"),
            ("bpm", "update")
        ],
        "{handled:?}"
    );
    assert_eq!(handled.iter().filter(|m| m["id"] == "t-1").count(), 1);

    // Once it has ended: queries and updates say so.
    let (status, body) = call(&client, format!("{execution}/queries/get_state"), None).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = update("t-3", json!(40), "1s").await;
    assert_eq!(status, 409, "{body}");
}

/// `skein validate` says what it made of a Zigflow document: the names, the activities
/// with their retry policies, and the message handlers.
#[test]
fn validate_reports_what_it_mapped() {
    let dir = repo().join("crates/dsl/tests/zigflow");
    let out = skein(&[
        "validate",
        dir.join("driven/approval.yaml").to_str().unwrap(),
        dir.join("activity_options.yaml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    for expected in [
        "Zigflow: taskQueue `clinic` is the namespace, workflowType `approval` the name",
        "Zigflow: 1 signal `approve` handled",
        "Zigflow: 2 updates `temperature`, `bpm` handled",
        "Zigflow: 1 query `get_state` handled",
        "Zigflow: 5 tasks (call, run) run as activities: each attempt within 300s, 3 attempts",
        "Zigflow: 1 task (call, run) run as activities: each attempt within 50ms, 2 attempts",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
    let out = skein(&[
        "validate",
        dir.join("child_workflows.yaml").to_str().unwrap(),
    ]);
    let text = stderr(&out);
    let expected = "Zigflow: the document holds several workflows; it runs `parentWorkflow`";
    assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    // A workflow definition after other tasks that nothing runs is pointed out.
    let scratch = tempfile::tempdir().unwrap();
    let uncalled = scratch.path().join("uncalled.yaml");
    std::fs::write(
        &uncalled,
        std::fs::read_to_string(dir.join("workflow_definitions.yaml"))
            .unwrap()
            .replace("type: greeter", "type: nobody"),
    )
    .unwrap();
    let out = skein(&["validate", uncalled.to_str().unwrap()]);
    let text = stderr(&out);
    let expected = "uncalled.yaml:27:5: warning: task `greeter` is a `do` after other tasks, which Zigflow takes as the definition of a workflow, and nothing runs it";
    assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
}

/// Continue-as-new: a Zigflow loop of fifty rounds whose journal may hold 30 steps
/// checkpoints and forgets as it goes, across a SIGKILL of `skein run` and its resume:
/// it ends with the right count, its calls were not repeated (but for one in flight at
/// the kill), and its journal stayed bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_keeps_the_journal_bounded_across_a_kill() {
    let base = crate::cloud_workflows::stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let file = repo().join("crates/dsl/tests/zigflow/driven/continue_as_new.yaml");
    let data = dir.path().to_str().unwrap();
    let input = serde_json::json!({ "base": base }).to_string();
    let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args([
            "run",
            file.to_str().unwrap(),
            "--data-dir",
            data,
            "--id",
            "loop",
        ])
        .args(["--input", &input])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    first.kill().await.unwrap();
    {
        // Killed mid-loop, after it had continued as new at least once.
        let db = rusqlite::Connection::open(dir.path().join("skein.db")).unwrap();
        let (status, checkpoints): (String, i64) = db
            .query_row(
                "SELECT status, (SELECT COUNT(*) FROM steps WHERE execution_id = 'loop' \
                 AND key = '/checkpoint') FROM executions WHERE id = 'loop'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_ne!(status, "completed");
        assert_eq!(checkpoints, 1);
    }
    let resumed = tokio::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["run", "--resume", "loop", "--data-dir", data])
        .output()
        .await
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let output: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(output["rounds"], 50, "{output}");
    let calls = output["calls"].as_u64().unwrap();
    assert!((50..=51).contains(&calls), "calls repeated: {output}");

    let db = rusqlite::Connection::open(dir.path().join("skein.db")).unwrap();
    let steps: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM steps WHERE execution_id = 'loop'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let checkpoint: String = db
        .query_row(
            "SELECT payload FROM steps WHERE execution_id = 'loop' AND key = '/checkpoint'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Fifty rounds of four tasks make hundreds of steps; the journal kept a few dozen.
    assert!(steps < 60, "{steps} steps kept");
    assert!(checkpoint.contains("\"list\":\"/do\""), "{checkpoint}");
}

/// `--dialect zigflow` reads a document that names itself with `namespace` and `name`,
/// as older Zigflow files do, in Zigflow's dialect; without it, it is the DSL.
#[test]
fn the_dialect_can_be_forced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.yaml");
    std::fs::write(
        &file,
        "document: {dsl: 1.0.0, namespace: zigflow, name: old, version: 0.0.1}\ndo:\n  - first:\n      set: {step: 1}\n  - second:\n      set:\n        got: ${ $input.x }\n        previous: ${ $output.step }\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let run = |dialect: &[&str]| {
        let mut args = vec!["run", file.to_str().unwrap(), "--input", r#"{"x": 5}"#];
        args.extend(["--data-dir", data.to_str().unwrap()]);
        args.extend(dialect);
        let out = skein(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        (
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            stderr(&out),
        )
    };
    let (dsl, _) = run(&[]);
    assert_eq!(dsl, serde_json::json!({"got": null, "previous": null}));
    let (zigflow, said) = run(&["--dialect", "zigflow"]);
    assert_eq!(zigflow, serde_json::json!({"got": 5, "previous": 1}));
    assert!(said.contains("--dialect zigflow)"), "{said}");
    let out = skein(&["validate", "--dialect", "zigflow", file.to_str().unwrap()]);
    assert!(stderr(&out).contains("Zigflow: taskQueue `zigflow` is the namespace"));
}
