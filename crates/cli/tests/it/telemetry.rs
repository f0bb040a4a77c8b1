//! Logs and traces as an operator sees them: `--log-format json` writes one object per line
//! with Cloud Logging's fields, `--log-level` filters, and with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! set a server and a worker send OpenTelemetry spans over OTLP/HTTP (protobuf) to a
//! receiver written here: execution → task → call, one trace, the HTTP call carrying the
//! call's `traceparent`, the worker's span a child of the task that sent it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::server::{call, free_port, healthy};

/// A received span: service, name, ids (hex) and parent.
#[derive(Clone, Debug)]
struct Span {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP trace receiver: every span of every export.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(
                |State(spans): State<Arc<Mutex<Vec<Span>>>>, body: Bytes| async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
                    let mut spans = spans.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = (resource.resource.iter())
                            .flat_map(|r| r.attributes.iter())
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref())
                            .map(|v| format!("{:?}", v.value))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                spans.push(Span {
                                    service: service.clone(),
                                    name: span.name,
                                    trace: hex(&span.trace_id),
                                    id: hex(&span.span_id),
                                    parent: hex(&span.parent_span_id),
                                });
                            }
                        }
                    }
                    ""
                },
            ),
        )
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, spans)
}

/// A service the workflow calls: the `traceparent` of each request.
async fn downstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/hello",
            get(
                |State(seen): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap| async move {
                    let parent = (headers.get("traceparent").and_then(|v| v.to_str().ok()))
                        .unwrap_or_default()
                        .to_string();
                    seen.lock().unwrap().push(parent);
                    axum::Json(json!({"hello": "world"}))
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn skein(args: &[&str], otlp: &str, service: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skein"));
    command
        .args(args)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_SERVICE_NAME", service)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("GOOGLE_CLOUD_PROJECT", "demo")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env("SKEIN_WORKER_TOKEN", "wt")
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_its_worker_send_one_trace_per_execution() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (otlp, spans) = receiver().await;
    let (service, seen) = downstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, worker_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let worker_url = format!("http://127.0.0.1:{worker_port}");
    let _worker = skein(
        &["worker", "--listen", &format!("127.0.0.1:{worker_port}")],
        &otlp,
        "skein-worker",
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let log = dir.path().join("server.log");
    let mut server = skein(
        &["server", "--listen", &format!("127.0.0.1:{port}")],
        &otlp,
        "skein-server",
    )
    .arg("--data-dir")
    .arg(dir.path().join("data"))
    .args([
        "--worker",
        &worker_url,
        "--log-format",
        "json",
        "--log-level",
        "debug",
    ])
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let client = reqwest::Client::new();
    healthy(&client, &base).await;

    let workflow = format!(
        "document: {{dsl: '1.0.3', namespace: test, name: traced, version: '1.0.0'}}
do:
  - greet:
      call: http
      with:
        method: get
        endpoint: {service}/hello
  - work:
      run: {{ shell: {{ command: 'echo from-the-worker' }} }}
"
    );
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions?wait=30s"),
        Some(json!({"workflow": workflow, "id": "traced-1"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    // A Cloud Workflows `sys.log` inside an execution: its log line names the trace.
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions?wait=30s"),
        Some(json!({"workflow": "- say:\n    call: sys.log\n    args:\n      text: inside\n      severity: WARNING\n"})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("completed")),
        "{body}"
    );

    // The spans arrive in batches; wait for the worker's and both executions'.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let got = spans.lock().unwrap().clone();
        let executions = (got.iter())
            .filter(|s| s.name.starts_with("execution"))
            .count();
        if got.iter().any(|s| s.name == "worker task") && executions >= 2 {
            break got;
        }
        assert!(Instant::now() < deadline, "spans so far: {got:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_name: HashMap<&str, &Span> = spans.iter().map(|s| (s.name.as_str(), s)).collect();
    let find = |name: &str| -> &Span {
        by_name
            .get(name)
            .unwrap_or_else(|| panic!("no span `{name}` in {spans:#?}"))
    };
    let execution = find("execution traced");
    let greet = find("task greet");
    let call_span = find("call http");
    let work = find("task work");
    let worker = find("worker task");
    for span in [greet, call_span, work, worker] {
        assert_eq!(
            span.trace, execution.trace,
            "{span:?} is in the execution's trace"
        );
    }
    assert_eq!(greet.parent, execution.id);
    assert_eq!(work.parent, execution.id);
    assert_eq!(call_span.parent, greet.id);
    assert_eq!(
        worker.parent, work.id,
        "the worker joined the trace of the task that sent it"
    );
    assert!(execution.service.contains("skein-server"), "{execution:?}");
    assert!(worker.service.contains("skein-worker"), "{worker:?}");
    // The HTTP call carried the call span's context: 00-TRACE-SPAN-01.
    let carried = seen.lock().unwrap().clone();
    assert_eq!(
        carried,
        vec![format!("00-{}-{}-01", execution.trace, call_span.id)],
        "{spans:#?}"
    );

    // The log: one JSON object per line, with Cloud Logging's fields.
    server.kill().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = (text.lines())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let listening = (lines.iter())
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("listening on"))
        })
        .unwrap_or_else(|| panic!("no listening line in {text}"));
    assert_eq!(listening["severity"], "INFO");
    assert!(listening["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let logged = (lines.iter())
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("[WARNING] inside"))
        })
        .unwrap_or_else(|| panic!("no sys.log line in {text}"));
    assert_eq!(logged["severity"], "WARNING");
    let trace = logged["logging.googleapis.com/trace"]
        .as_str()
        .unwrap_or_default();
    let id = trace
        .strip_prefix("projects/demo/traces/")
        .unwrap_or_else(|| panic!("{logged}"));
    assert!(
        spans
            .iter()
            .any(|s| s.trace == id && s.name.starts_with("execution")),
        "the log line's trace {id} is an execution's: {spans:#?}"
    );
}

#[test]
fn log_settings_that_cannot_work_are_refused_with_the_reason() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args([
            "validate",
            "--log-level",
            "info,api=shouting",
            "nothing.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--log-level") && stderr.contains("not a log filter"),
        "{stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["validate", "--log-format", "xml", "nothing.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
