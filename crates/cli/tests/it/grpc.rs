//! The gRPC API driven by a client that is not skein's (Python grpcio), and progress
//! callbacks received by `skein callback-sink` through outages of the sink and of the
//! server.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::server::{call, free_port, healthy};

/// The Python with grpcio, grpcio-tools, grpcio-reflection and grpcio-health-checking
/// (`.ci/run` makes a virtualenv and names it in SKEIN_GRPC_PYTHON); `None`, said
/// aloud, where there is none, unless SKEIN_REQUIRE_GRPCIO=1 makes that a failure.
pub(crate) fn grpc_python() -> Option<PathBuf> {
    let python = std::env::var_os("SKEIN_GRPC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let ok = std::process::Command::new(&python)
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_reflection, grpc_health",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let message = format!(
        "{} lacks grpcio, grpcio-tools, grpcio-reflection or grpcio-health-checking \
         (set SKEIN_GRPC_PYTHON to a Python that has them, as .ci/run does)",
        python.display()
    );
    assert!(
        std::env::var("SKEIN_REQUIRE_GRPCIO").as_deref() != Ok("1"),
        "{message}"
    );
    eprintln!("SKIPPED: the Python gRPC client test: {message}");
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpc_client_starts_watches_pauses_resumes_and_cancels() {
    let Some(python) = grpc_python() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (port, grpc_port) = (free_port(), free_port());
    let token = "python-client-token";
    let _server = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc_port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env(
            "SKEIN_TOKENS",
            format!("alpha:run:{}", hex(&api::auth::hash(token))),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    healthy(&client, &format!("http://127.0.0.1:{port}")).await;

    let proto = crate::repo().join("proto");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/grpc_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("127.0.0.1:{grpc_port}"))
        .arg(token)
        .arg(&proto)
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    let events: Vec<&str> = summary["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for kind in [
        "io.serverlessworkflow.workflow.started.v1",
        "io.serverlessworkflow.workflow.suspended.v1",
        "io.serverlessworkflow.workflow.resumed.v1",
        "io.serverlessworkflow.workflow.cancelled.v1",
    ] {
        assert!(events.contains(&kind), "{kind} not in {events:?}");
    }
    assert!(
        summary["invalid"].as_str().unwrap().contains("2:"),
        "the invalid workflow's error names its line: {summary}"
    );

    // What the Python client did, seen over REST with the same token.
    let response = client
        .get(format!("http://127.0.0.1:{port}/v1/executions/py-1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(body["input"], json!({"n": 41}), "{body}");
}

/// `skein callback-sink` on `port`, appending to `file`.
pub(crate) fn start_sink(port: u16, file: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["callback-sink", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--output")
        .arg(file)
        .args(["--api-key", "sink-key"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn start_reporting_server(
    port: u16,
    sink_port: u16,
    data: &std::path::Path,
    extra: &[&str],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .arg("--data-dir")
        .arg(data)
        .args(["--callback-endpoint", &format!("127.0.0.1:{sink_port}")])
        .args(["--callback-plaintext", "--callback-api-key", "sink-key"])
        .args(["--callback-max-backoff", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The event types of an execution's log, in order.
pub(crate) async fn event_types(client: &reqwest::Client, base: &str, id: &str) -> Vec<String> {
    let text = crate::server::event_log(client, base, id).await;
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| {
            let event: Value = serde_json::from_str(d.trim()).unwrap();
            event["type"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The report type each event makes, if any (the mapping the server documents).
pub(crate) fn report_type(event: &str) -> Option<&'static str> {
    Some(match event {
        "io.serverlessworkflow.workflow.started.v1" => "workflow_started",
        "dev.skein.workflow.validating.v1" => "workflow_validating",
        "dev.skein.workflow.validated.v1" => "workflow_validated",
        "io.serverlessworkflow.task.started.v1" => "task_started",
        "io.serverlessworkflow.task.completed.v1" => "task_completed",
        "io.serverlessworkflow.workflow.completed.v1" => "workflow_completed",
        "io.serverlessworkflow.workflow.faulted.v1" => "workflow_failed",
        "io.serverlessworkflow.workflow.cancelled.v1" => "workflow_cancelled",
        "io.serverlessworkflow.workflow.suspended.v1" => "workflow_paused",
        "io.serverlessworkflow.workflow.resumed.v1" => "workflow_resumed",
        _ => return None,
    })
}

/// The reports the sink has written so far: whole lines only (the sink may be writing
/// the next one).
pub(crate) fn reports(file: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reports_survive_a_sink_outage_and_a_killed_server_in_order_once_each() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sink_file = dir.path().join("reports.jsonl");
    let (port, sink_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: relay, version: '1.0.0'}
do:
  - before:
      for: {in: '${ [1, 2, 3] }'}
      do:
        - step:
            set: {x: 1}
  - gate:
      listen:
        to:
          one: {with: {type: go}}
  - after:
      set: {done: true}
";

    // The sink is down for the first half: everything up to the `listen`, and a kill.
    let mut server = start_reporting_server(port, sink_port, &data, &[]);
    healthy(&client, &base).await;
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "id": "relay-1"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Five tasks started (`before`, three `step`s, `gate`): the execution waits.
    while event_types(&client, &base, "relay-1")
        .await
        .iter()
        .filter(|t| *t == "io.serverlessworkflow.task.started.v1")
        .count()
        < 5
    {
        assert!(
            Instant::now() < deadline,
            "the execution never reached its listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().await.unwrap();
    let _server = start_reporting_server(port, sink_port, &data, &[]);
    healthy(&client, &base).await;

    // The sink comes up; the execution goes on and ends.
    let _sink = start_sink(sink_port, &sink_file);
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions/relay-1/events"),
        Some(json!({"specversion": "1.0", "id": "go-1", "source": "test", "type": "go"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (_, body) = call(
        &client,
        format!("{base}/v1/executions/relay-1?wait=20s"),
        None,
    )
    .await;
    assert_eq!(body["status"], "completed", "{body}");

    let expected: Vec<&str> = event_types(&client, &base, "relay-1")
        .await
        .iter()
        .filter_map(|t| report_type(t))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = reports(&sink_file);
    while got.len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = reports(&sink_file);
    }
    // Anything late or doubled would show now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    got = reports(&sink_file);
    let types: Vec<&str> = got
        .iter()
        .map(|r| r["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, expected);
    let sequences: Vec<i64> = got
        .iter()
        .map(|r| r["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=expected.len() as i64).collect::<Vec<_>>());
    assert!(got.iter().all(|r| r["executionId"] == "relay-1"
        && r["workflowName"] == "test/relay:1.0.0"
        && r["project"] == "default"));
    assert_eq!(got[3]["task"], "/do/0/before", "{}", got[3]);
    assert_eq!(got.last().unwrap()["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_older_than_the_max_age_are_dropped_and_counted() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (port, sink_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // Nothing ever listens on the sink's port.
    let _server = start_reporting_server(
        port,
        sink_port,
        &dir.path().join("data"),
        &["--callback-max-age", "1"],
    );
    healthy(&client, &base).await;
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: lone, version: '1.0.0'}
do:
  - only:
      set: {x: 1}
";
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions?wait=10s"),
        Some(json!({"workflow": workflow, "id": "lone-1"})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("completed")),
        "{body}"
    );
    let expected = event_types(&client, &base, "lone-1")
        .await
        .iter()
        .filter(|t| report_type(t).is_some())
        .count();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let dropped = text
            .lines()
            .find_map(|l| l.strip_prefix("skein_callback_reports_dropped_total "))
            .map(|n| n.trim().parse::<usize>().unwrap());
        if dropped == Some(expected) {
            assert!(
                text.contains("skein_callback_reports_sent_total 0"),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped {dropped:?} of {expected} reports:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_progress_callbacks_speak_tls_with_a_given_certificate() {
    use api::grpc::pb;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (key.cert.pem(), key.signing_key.serialize_pem());
    let (cert, private) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&private, &key_pem).unwrap();
    let (port, grpc_port, sink_port) = (free_port(), free_port(), free_port());
    let sink_file = dir.path().join("reports.jsonl");
    let _sink = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args([
            "callback-sink",
            "--listen",
            &format!("127.0.0.1:{sink_port}"),
        ])
        .arg("--output")
        .arg(&sink_file)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&private)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // TLS to the callback service is the default; the sink's certificate is trusted
    // through --callback-ca.
    let _server = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc_port}")])
        .arg("--grpc-tls-cert")
        .arg(&cert)
        .arg("--grpc-tls-key")
        .arg(&private)
        .args(["--callback-endpoint", &format!("localhost:{sink_port}")])
        .arg("--callback-ca")
        .arg(&cert)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    healthy(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}")).await;

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{grpc_port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut runner = pb::runner_client::RunnerClient::new(channel);
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: tls, version: '1.0.0'}
do:
  - only:
      set: {secure: true}
";
    let started = runner
        .execute_async(pb::ExecuteRequest {
            execution_id: "tls-1".into(),
            workflow_yaml: workflow.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(started.created);
    let mut watch = runner
        .watch(pb::WatchRequest {
            execution_id: "tls-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut types = Vec::new();
    while let Some(event) = watch.message().await.unwrap() {
        types.push(event.r#type);
    }
    assert_eq!(
        types.last().map(String::as_str),
        Some("io.serverlessworkflow.workflow.completed.v1")
    );
    let done = runner
        .get(pb::ExecutionRef {
            execution_id: "tls-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        done.output.map(api::grpc::to_json),
        Some(json!({"secure": true}))
    );

    // Plaintext to a TLS port gets nowhere.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        let refused = pb::runner_client::RunnerClient::new(plain)
            .get(pb::ExecutionRef {
                execution_id: "tls-1".into(),
            })
            .await;
        assert!(refused.is_err());
    }

    let expected = types.iter().filter(|t| report_type(t).is_some()).count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reports(&sink_file).len() < expected {
        assert!(Instant::now() < deadline, "reports over TLS did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reports(&sink_file).len(), expected);
}

#[tokio::test]
async fn public_grpc_needs_tokens_and_tls_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let hash = hex(&api::auth::hash("t"));
    let tokens = format!("p:run:{hash}");
    for (envs, says) in [
        (vec![], "no tokens are configured"),
        (
            vec![("SKEIN_TOKENS", tokens.as_str())],
            "refusing to serve gRPC without TLS",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_skein"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir", data])
            .args(["--grpc-listen", "0.0.0.0:0"])
            .envs(envs)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}
