//! Several `skein server` replicas on one PostgreSQL database (a throwaway cluster from
//! the system's binaries): they share the executions, take over those of a replica
//! killed with SIGKILL within the lease, show every execution's events on every
//! replica, and ride out a restart of the database.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::postgres::TempCluster;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::crash::{Seen, server};
use crate::server::{answers_within, call, free_port, healthy};

/// A replica: `skein server` on `database`, its log in `dir/NAME.log`.
struct Replica {
    base: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Replica {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn replica(dir: &Path, name: &str, database: &str, lease: &str) -> Replica {
    replica_with(dir, name, database, lease, &[])
}

fn replica_with(dir: &Path, name: &str, database: &str, lease: &str, extra: &[&str]) -> Replica {
    let port = free_port();
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
            database,
            "--lease",
            lease,
            "--renew-every",
            "0.5",
            "--node-name",
            name,
            "--pool-size",
            "8",
        ])
        .args(extra)
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Replica {
        base: format!("http://127.0.0.1:{port}"),
        child,
        log: log_path,
    }
}

/// What a replica test stands on: a throwaway cluster with a database, a directory for
/// the replicas' logs, and a client.
struct Ground {
    cluster: TempCluster,
    database: String,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

/// The ground for `test`, or `None` where it is skipped (no PostgreSQL here).
async fn ground(test: &str) -> Option<Ground> {
    let cluster = TempCluster::for_test(test)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let database = cluster.database("skein").unwrap();
    Some(Ground {
        cluster,
        database,
        dir: tempfile::tempdir().unwrap(),
        client: reqwest::Client::new(),
    })
}

/// Replicas named `names` (with `extra` arguments), once each answers.
async fn up(ground: &Ground, names: &[&str], lease: &str, extra: &[&str]) -> Vec<Replica> {
    let replicas: Vec<Replica> = names
        .iter()
        .map(|name| replica_with(ground.dir.path(), name, &ground.database, lease, extra))
        .collect();
    // A replica on a busy machine may take a while: its pool, its migrations.
    for r in &replicas {
        let up = answers_within(&ground.client, &r.base, Duration::from_secs(60)).await;
        assert!(
            up,
            "the replica at {} did not come up:\n{}",
            r.base,
            r.log()
        );
    }
    replicas
}

fn replica_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// A workflow that calls the endpoint once, naps, then fans out over four calls, two
/// at a time; its output is the four paths.
fn fan_workflow(base: &str) -> String {
    format!(
        "document: {{dsl: '1.0.3', namespace: test, name: fan, version: '1.0.0'}}
do:
  - first:
      call: http
      with: {{ method: get, endpoint: '${{ \"{base}/item/\\(.id)/first\" }}' }}
      output: {{ as: '$input' }}
  - nap:
      wait: {{ milliseconds: 1200 }}
  - fan:
      for: {{ in: '[range(4)]', concurrency: 2 }}
      do:
        - hit:
            call: http
            with: {{ method: get, endpoint: '${{ \"{base}/item/\\($input.id)/\\($item)\" }}' }}
            output: {{ as: .path }}
"
    )
}

/// Starts an execution of `workflow` for each id, on the replicas in turn.
async fn start_all(client: &reqwest::Client, replicas: &[Replica], workflow: &str, ids: &[String]) {
    for (n, id) in ids.iter().enumerate() {
        let replica = &replicas[n % replicas.len()];
        let (status, body) = call(
            client,
            format!("{}/v1/executions", replica.base),
            Some(json!({"workflow": workflow, "id": id, "input": {"id": id}})),
        )
        .await;
        assert_eq!(status, 201, "{body}\n{}", replica.log());
    }
}

/// Waits, through `replica`, for each execution to end, and checks that it completed
/// with its four paths.
async fn all_completed(client: &reqwest::Client, replica: &Replica, ids: &[String], dir: &Path) {
    for id in ids {
        let (status, body) = call(
            client,
            format!("{}/v1/executions/{id}?wait=60s", replica.base),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let logs: String = ["ra", "rb", "rc"]
            .iter()
            .map(|n| replica_log(dir, n))
            .collect();
        assert_eq!(body["status"], "completed", "{id}: {body}\n{logs}");
        let paths: Vec<String> = (0..4).map(|i| format!("/item/{id}/{i}")).collect();
        assert_eq!(body["output"], json!(paths), "{id}");
    }
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `skein exec events ID --follow --json` against `base`, collecting the sequence
/// numbers and types of the events it prints, until the stream ends.
fn follow(base: &str, id: &str) -> tokio::task::JoinHandle<(Vec<u64>, Vec<String>, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["exec", "events", id, "--follow", "--json"])
        .env("SKEIN_SERVER", base)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::spawn(async move {
        let mut stderr = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
            text
        });
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut seqs, mut types) = (Vec::new(), Vec::new());
        while let Some(line) = lines.next_line().await.unwrap() {
            let event: Value = serde_json::from_str(&line).unwrap();
            seqs.push(event["sequence"].as_u64().unwrap());
            types.push(event["type"].as_str().unwrap().to_string());
        }
        let status = child.wait().await.unwrap();
        (seqs, types, format!("{status}: {}", stderr.await.unwrap()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_work_and_take_over_from_a_killed_one() {
    let Some(ground) = ground("three_replicas").await else {
        return;
    };
    let Ground { dir, client, .. } = &ground;
    let (endpoint, log) = server(Duration::from_millis(200)).await;
    // Three seconds, renewed every half second: a replica starved of CPU by a busy CI
    // machine still renews in time.
    let lease = Duration::from_secs(3);
    let mut replicas = up(&ground, &["ra", "rb", "rc"], "3", &[]).await;

    let workflow = fan_workflow(&endpoint);
    let ids: Vec<String> = (0..200).map(|n| format!("x{n}")).collect();
    start_all(client, &replicas, &workflow, &ids).await;
    // Subscribers on replica A to an execution started on B (the one killed below) and
    // to one started on C.
    let followers = [
        ("x1", follow(&replicas[0].base, "x1")),
        ("x2", follow(&replicas[0].base, "x2")),
    ];

    // Killed in the middle: every execution started and some of the fan-out done.
    until("the fan-outs to start", Duration::from_secs(60), || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|s| !s.path.ends_with("first"))
            .count()
            >= 150
    })
    .await;
    replicas[1].child.kill().await.unwrap();
    let killed = Instant::now();
    let calls_at_kill = log.lock().unwrap().len();
    assert!(
        calls_at_kill < 200 + 800,
        "the work was over before the kill"
    );

    all_completed(client, &replicas[0], &ids, dir.path()).await;

    // Each call ran once, but for those in flight at the kill (answered too shortly
    // before it for their completion to be committed, or not at all), which ran again
    // with the same key.
    let log = log.lock().unwrap().clone();
    let mut by_path: HashMap<&str, Vec<&Seen>> = HashMap::new();
    for seen in &log {
        by_path.entry(&seen.path).or_default().push(seen);
    }
    assert_eq!(by_path.len(), 200 * 5, "every call was made");
    let mut repeated = 0;
    for (path, seen) in &by_path {
        if seen.len() == 1 {
            continue;
        }
        repeated += 1;
        assert_eq!(seen.len(), 2, "{path} ran {} times", seen.len());
        assert_eq!(seen[0].key, seen[1].key, "{path}: the same Idempotency-Key");
        let first = seen[0];
        let in_flight = first.at < killed
            && first
                .answered
                .is_none_or(|t| t + Duration::from_millis(500) > killed);
        assert!(
            in_flight,
            "{path} had completed before the kill, yet ran again"
        );
    }
    eprintln!("{repeated} calls in flight at the kill ran again");

    // The killed replica's executions were taken over within the lease of its death
    // (plus one renewal period for the claim).
    let logs: String = ["ra", "rc"]
        .iter()
        .map(|n| replica_log(dir.path(), n))
        .collect();
    let takeovers: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("over from rb"))
        .collect();
    assert!(!takeovers.is_empty(), "no takeover in the logs:\n{logs}");
    for line in &takeovers {
        let overdue: u64 = line
            .rsplit_once('(')
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no delay in `{line}`"));
        assert!(overdue <= lease.as_millis() as u64, "{line}");
    }
    let resumed_after = log
        .iter()
        .filter(|s| s.at > killed)
        .map(|s| s.at - killed)
        .min()
        .expect("calls after the kill");
    assert!(
        resumed_after < lease + Duration::from_secs(3),
        "{resumed_after:?}"
    );

    // The subscribers on A saw each event once, in order, across the kill.
    for (id, follower) in followers {
        let (seqs, types, stderr) = tokio::time::timeout(Duration::from_secs(30), follower)
            .await
            .expect("the stream ends with the execution")
            .unwrap();
        let total = crate::grpc::event_types(client, &replicas[2].base, id)
            .await
            .len();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "{id}: {stderr}"
        );
        assert_eq!(
            types.last().map(String::as_str),
            Some("io.serverlessworkflow.workflow.completed.v1"),
            "{id}"
        );
    }

    let metrics = client
        .get(format!("{}/metrics", replicas[0].base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("skein_lease_takeovers_total"), "{metrics}");
    assert!(metrics.contains("skein_lease_claim_seconds"), "{metrics}");
    for r in &mut replicas {
        let _ = r.child.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_wait_out_a_restart_of_the_database() {
    let Some(ground) = ground("database_restart").await else {
        return;
    };
    let Ground {
        cluster,
        dir,
        client,
        ..
    } = &ground;
    let (endpoint, log) = server(Duration::from_millis(100)).await;
    let replicas = up(&ground, &["ra", "rb"], "2", &[]).await;
    let workflow = fan_workflow(&endpoint);
    let ids: Vec<String> = (0..20).map(|n| format!("y{n}")).collect();
    start_all(client, &replicas, &workflow, &ids).await;
    until("the first calls", Duration::from_secs(30), || {
        log.lock().unwrap().len() >= 20
    })
    .await;

    cluster.stop().unwrap();
    let stopped = Instant::now();
    let health = client
        .get(format!("{}/healthz", replicas[0].base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        503,
        "/healthz fails while the database is away"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls_while_down = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.at > stopped + Duration::from_secs(1))
        .count();
    cluster.restart().unwrap();
    healthy(client, &replicas[0].base).await;

    all_completed(client, &replicas[1], &ids, dir.path()).await;
    // A call in flight when the database went away may run again (its completion could
    // not be committed); none that was answered well before runs again.
    let log = log.lock().unwrap().clone();
    let mut by_path: HashMap<&str, Vec<&Seen>> = HashMap::new();
    for seen in &log {
        by_path.entry(&seen.path).or_default().push(seen);
    }
    assert_eq!(by_path.len(), 20 * 5, "every call was made");
    for (path, seen) in &by_path {
        if seen.len() > 1 {
            assert_eq!(seen.len(), 2, "{path} ran {} times", seen.len());
            // Unanswered: abandoned mid-call (a server that cannot renew its leases
            // lets its runs go, for another server may take them over).
            let in_flight = seen[0]
                .answered
                .is_none_or(|t| t + Duration::from_millis(500) > stopped);
            assert!(
                in_flight,
                "{path} was answered well before the database went away, yet ran again"
            );
        }
    }
    eprintln!("{calls_while_down} calls started while the database was away");
}

/// Requests sent to one replica reach the execution another runs: an event completes
/// its `listen`, and pause, resume and cancel take effect there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_any_replica_reach_the_execution() {
    let Some(ground) = ground("requests_to_any_replica").await else {
        return;
    };
    let Ground { client, .. } = &ground;

    let replicas = up(&ground, &["ra", "rb"], "5", &[]).await;
    let (a, b) = (&replicas[0].base, &replicas[1].base);
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: steer, version: '1.0.0'}
do:
  - hold:
      listen:
        to:
          one: {with: {type: go}}
  - nap:
      wait: {seconds: 3}
  - after:
      set: {done: true}
";
    for id in ["s1", "s2"] {
        let (status, body) = call(
            client,
            format!("{a}/v1/executions"),
            Some(json!({"workflow": workflow, "id": id})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let status_on = async |base: &str, id: &str| {
        call(client, format!("{base}/v1/executions/{id}"), None)
            .await
            .1["status"]
            .clone()
    };

    // The event for s1 goes to B; A runs s1, whose `listen` takes it.
    let (status, body) = call(
        client,
        format!("{b}/v1/executions/s1/events"),
        Some(json!({"specversion": "1.0", "id": "go-1", "source": "test", "type": "go"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (_, body) = call(client, format!("{b}/v1/executions/s1?wait=30s"), None).await;
    assert_eq!(body["status"], "completed", "{body}\n{}", replicas[0].log());

    // s2 waits for its event on A; B pauses it, resumes it, and cancels it.
    let steer = async |verb: &str| {
        call(
            client,
            format!("{b}/v1/executions/s2/{verb}"),
            Some(json!({})),
        )
        .await
    };
    let (status, body) = steer("pause").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("suspended")),
        "{body}"
    );
    assert_eq!(status_on(a, "s2").await, "suspended");
    let (status, body) = steer("resume").await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["status"], "suspended", "{body}");
    let (status, body) = steer("cancel").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    assert_eq!(status_on(a, "s2").await, "cancelled");
    // It ran on A all along: B took none of it over.
    assert!(
        !replicas[1].log().contains("took execution"),
        "{}",
        replicas[1].log()
    );
}

/// A replica killed and started again under its name takes its executions back at
/// once, without waiting for its leases to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_under_its_name_resumes_its_executions_at_once() {
    let Some(ground) = ground("restarted_replica").await else {
        return;
    };
    let Ground {
        database,
        dir,
        client,
        ..
    } = &ground;
    let (endpoint, log) = server(Duration::from_millis(50)).await;
    // Leases of a minute: a takeover by expiry would fail the wait below.
    let mut first = up(&ground, &["ra"], "60", &[]).await.remove(0);
    let ids: Vec<String> = (0..5).map(|n| format!("r{n}")).collect();
    start_all(
        client,
        std::slice::from_ref(&first),
        &fan_workflow(&endpoint),
        &ids,
    )
    .await;
    until("the first calls", Duration::from_secs(30), || {
        log.lock().unwrap().len() >= 5
    })
    .await;
    first.child.kill().await.unwrap();
    let again = replica(dir.path(), "ra", database, "60");
    healthy(client, &again.base).await;
    let restarted = Instant::now();
    all_completed(client, &again, &ids, dir.path()).await;
    assert!(
        restarted.elapsed() < Duration::from_secs(20),
        "resumed after {:?}, as if waiting for the leases",
        restarted.elapsed()
    );
}

/// Replicas with progress callbacks take turns: one reports for all (each report
/// once), and when it is killed another takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_take_turns_reporting_progress() {
    use crate::grpc::{event_types, report_type, reports, start_sink};
    let Some(ground) = ground("replicas_take_turns").await else {
        return;
    };
    let Ground { dir, client, .. } = &ground;
    let sink_port = free_port();
    let sink_file = dir.path().join("reports.jsonl");
    let _sink = start_sink(sink_port, &sink_file);
    let endpoint = format!("127.0.0.1:{sink_port}");
    let callbacks = [
        "--callback-endpoint",
        &endpoint,
        "--callback-plaintext",
        "--callback-api-key",
        "sink-key",
        "--callback-max-backoff",
        "1",
    ];
    let mut replicas = up(&ground, &["ra", "rb"], "2", &callbacks).await;
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: turns, version: '1.0.0'}
do:
  - nap:
      wait: {milliseconds: 300}
  - done:
      set: {done: true}
";
    // Every report of `ids` arrives, once each, in order.
    let all_reported = async |ids: &[String], base: &str| {
        let mut expected = HashMap::new();
        for id in ids {
            let (_, body) = call(client, format!("{base}/v1/executions/{id}?wait=30s"), None).await;
            assert_eq!(body["status"], "completed", "{body}");
            let types: Vec<&str> = event_types(client, base, id)
                .await
                .iter()
                .filter_map(|t| report_type(t))
                .collect();
            expected.insert(id.clone(), types);
        }
        let of = |id: &str| -> Vec<Value> {
            reports(&sink_file)
                .into_iter()
                .filter(|r| r["executionId"] == id)
                .collect()
        };
        let want: usize = expected.values().map(Vec::len).sum();
        until("the reports", Duration::from_secs(30), || {
            ids.iter().map(|id| of(id).len()).sum::<usize>() >= want
        })
        .await;
        // Anything doubled would show now.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for id in ids {
            let got = of(id);
            let types: Vec<&str> = got
                .iter()
                .map(|r| r["eventType"].as_str().unwrap())
                .collect();
            assert_eq!(types, expected[id], "{id}");
            let seqs: Vec<i64> = got
                .iter()
                .map(|r| r["sequence"].as_i64().unwrap())
                .collect();
            assert_eq!(seqs, (1..=got.len() as i64).collect::<Vec<_>>(), "{id}");
        }
    };

    let first: Vec<String> = (0..6).map(|n| format!("t{n}")).collect();
    start_all(client, &replicas, workflow, &first).await;
    all_reported(&first, &replicas[0].base).await;

    // The reporting replica dies; the other takes its turn once the lease lapses.
    let reporter = replicas
        .iter()
        .position(|r| r.log().contains("reports now"))
        .expect("one replica reports");
    assert!(
        !replicas[1 - reporter].log().contains("reports now"),
        "both report"
    );
    replicas[reporter].child.kill().await.unwrap();
    let survivor = &replicas[1 - reporter];
    let second: Vec<String> = (0..3).map(|n| format!("u{n}")).collect();
    start_all(client, std::slice::from_ref(survivor), workflow, &second).await;
    all_reported(&second, &survivor.base).await;
    assert!(survivor.log().contains("reports now"), "{}", survivor.log());
}

/// A Cloud Workflows document on PostgreSQL replicas, through Google's API: deployed on
/// one replica, started on the other, its callback answered at the replica that does
/// not run it, and its result read back in Google's form from the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_workflows_run_on_replicas_through_googles_api() {
    let Some(ground) = ground("cloud_workflows_on_replicas").await else {
        return;
    };
    let Ground { client, .. } = &ground;
    let replicas = up(&ground, &["ga", "gb"], "5", &[]).await;
    let (a, b) = (&replicas[0].base, &replicas[1].base);
    let source = r#"main:
  params: [args]
  steps:
    - make:
        call: events.create_callback_endpoint
        result: cb
    - announce:
        call: sys.log
        args:
          text: ${"awaiting " + cb.url}
    - wait:
        call: events.await_callback
        args:
          callback: ${cb}
          timeout: 60
        result: got
    - done:
        return:
          decision: ${got.http_request.body.decision}
          who: ${args.who}
          project: ${sys.get_env("GOOGLE_CLOUD_PROJECT_ID")}
          location: ${sys.get_env("GOOGLE_CLOUD_LOCATION")}
"#;
    let parent = "v1/projects/demo/locations/europe-west1";
    let (status, op) = call(
        client,
        format!("{a}/{parent}/workflows?workflowId=approve"),
        Some(json!({"sourceContents": source})),
    )
    .await;
    assert_eq!((status, &op["done"]), (200, &json!(true)), "{op}");
    let (status, started) = call(
        client,
        format!("{b}/{parent}/workflows/approve/executions"),
        Some(json!({"argument": "{\"who\": \"ada\"}"})),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let name = started["name"].as_str().unwrap().to_string();
    let id = name.rsplit('/').next().unwrap().to_string();

    // The callback's URL, from the execution's log, which every replica shows.
    let url = format!(
        "http{}",
        crate::server::logged(client, a, &id, "awaiting http").await
    );
    // Answered at the replica that did not make it.
    let (maker, other) = if url.starts_with(a.as_str()) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(url.starts_with(maker.as_str()), "{url}");
    let answer_at = url.replacen(maker.as_str(), other, 1);
    let (status, answer) = call(client, answer_at, Some(json!({"decision": "yes"}))).await;
    assert_eq!(status, 200, "{answer}");

    let mut done = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        done = call(client, format!("{a}/v1/{name}"), None).await.1;
        if done["state"] != "ACTIVE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let result: Value = serde_json::from_str(done["result"].as_str().unwrap()).unwrap();
    assert_eq!(
        result,
        json!({"decision": "yes", "who": "ada", "project": "demo", "location": "europe-west1"})
    );
}

/// A schedule runs on one replica at a time; its holder SIGKILLed, another replica takes
/// the schedules over once the lease lapses and catches up the slots it missed, and no
/// slot starts twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_move_to_another_replica_when_their_holder_is_killed() {
    let Some(ground) = ground("schedules_move_to_another_replica").await else {
        return;
    };
    let Ground { dir, client, .. } = &ground;
    let mut replicas = up(&ground, &["sa", "sb"], "2", &[]).await;
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: beat, version: '1.0.0'}
do:
  - at:
      set: {id: '${ $workflow.id }'}
";
    let (status, body) = call(
        client,
        format!("{}/v1/schedules", replicas[1].base),
        Some(json!({"id": "beat", "workflow": workflow, "every": "1s", "catchup": "all", "overlap": "allow"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let runs =
        |name: &str| replica_log(dir.path(), name).contains(&format!("{name} runs the schedules"));
    until(
        "a replica to run the schedules",
        Duration::from_secs(20),
        || runs("sa") || runs("sb"),
    )
    .await;
    let (holder, other, other_name) = if runs("sa") {
        (0, 1, "sb")
    } else {
        (1, 0, "sa")
    };
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    replicas[holder].child.kill().await.unwrap();
    until(
        "the other replica to take the schedules over",
        Duration::from_secs(20),
        || runs(other_name),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let base = replicas[other].base.clone();
    let (status, body) = call(
        client,
        format!("{base}/v1/schedules/beat/pause"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let slots = crate::schedules::slots(client, &base, "beat").await;
    assert!(slots.len() >= 5, "{slots:?}");
    let expected: Vec<i64> = (slots[0]..=*slots.last().unwrap()).collect();
    assert_eq!(slots, expected, "a slot was lost or doubled");
    for s in &slots {
        let at = jiff::Timestamp::from_second(*s).unwrap();
        let id = format!("beat-{}", at.strftime("%Y%m%dT%H%M%SZ"));
        let (_, done) = call(client, format!("{base}/v1/executions/{id}?wait=30s"), None).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
}

/// A query reaches the execution on whichever replica it is asked: the one that does not
/// run it passes it to the one that does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_is_answered_on_any_replica() {
    let Some(ground) = ground("a_query_is_answered_on_any_replica").await else {
        return;
    };
    let Ground { client, .. } = &ground;
    let replicas = up(&ground, &["qa", "qb"], "2", &[]).await;
    let workflow = "document: {dsl: 1.0.0, taskQueue: q, workflowType: asked, version: 0.0.1}
do:
  - state:
      listen:
        to:
          one:
            with:
              id: progress
              type: query
              data:
                step: ${ $data.step }
  - start:
      set:
        step: 1
  - nap:
      wait:
        seconds: 30
";
    let (status, body) = call(
        client,
        format!("{}/v1/executions", replicas[0].base),
        Some(json!({"workflow": workflow, "id": "asked"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for r in &replicas {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = call(
                client,
                format!("{}/v1/executions/asked/queries/progress", r.base),
                None,
            )
            .await;
            if status == 200 && body["result"] == json!({"step": 1}) {
                break;
            }
            assert!(Instant::now() < deadline, "{}: {status} {body}", r.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (_, body) = call(
        client,
        format!("{}/v1/executions/asked/queries/nope", replicas[1].base),
        None,
    )
    .await;
    assert_eq!(body["error"], "unknown_query", "{body}");
}

/// SIGTERM while the database is away: the replica still stops within its grace period
/// (it used to wait for the database for good), leaving what it could not commit to be
/// resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stops_on_sigterm_while_the_database_is_down() {
    let Some(ground) = ground("sigterm_database_down").await else {
        return;
    };
    let mut replicas = up(&ground, &["rt"], "2", &["--shutdown-grace", "2"]).await;
    ground.cluster.stop().unwrap();
    let replica = &mut replicas[0];
    let pid = nix::unistd::Pid::from_raw(replica.child.id().unwrap() as i32);
    let sent = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), replica.child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "still running 15 s after SIGTERM with the database away:\n{}",
                replica.log()
            )
        })
        .unwrap();
    let took = sent.elapsed();
    ground.cluster.restart().unwrap();
    assert!(status.success(), "{status:?}\n{}", replica.log());
    assert!(
        replica
            .log()
            .contains("did not take the last writes in time")
            || replica.log().contains("did not stop within"),
        "{}",
        replica.log()
    );
    eprintln!("stopped {took:?} after SIGTERM");
}
