//! `call: grpc` against real gRPC servers: one written with Python's grpcio (protos from
//! a file and from its reflection; metadata, deadlines, status codes as DSL errors and
//! retries), and skein's own gRPC API over TLS with a bearer token. Also `skein
//! validate` compiling a call's proto.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::grpc::grpc_python;
use crate::server::{free_port, healthy};

const GREETER: &str = r#"syntax = "proto3";
package demo.greeter;

service Greeter {
  rpc Greet(GreetRequest) returns (GreetReply);
  rpc Flaky(FlakyRequest) returns (FlakyReply);
  rpc Slow(SlowRequest) returns (FlakyReply);
}

message GreetRequest {
  string name = 1;
  int32 excitement = 2;
  repeated string tags = 3;
}
message Nested { int32 level = 1; }
message GreetReply {
  string message = 1;
  string authorization = 2;
  string idempotency_key = 3;
  int64 deadline_ms = 4;
  repeated string tags = 5;
  Nested nested = 6;
}
message FlakyRequest {
  string key = 1;
  int32 failures = 2;
  string code = 3;
}
message FlakyReply { int32 attempts = 1; }
message SlowRequest { int32 ms = 1; }
"#;

/// The Python service of `grpc_service.py` on `port`, its proto and stubs in `dir`;
/// returns once it listens.
pub(crate) async fn python_service(python: &Path, port: u16, dir: &Path) -> Child {
    std::fs::write(dir.join("greeter.proto"), GREETER).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/grpc_service.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    assert!(
        matches!(ready, Ok(Ok(Some(ref line))) if line == "ready"),
        "the Python gRPC service did not start: {ready:?}"
    );
    child
}

/// `skein run FILE --json` with `args`, in `dir`; the outcome as JSON.
async fn run_in(dir: &Path, file: &str, args: &[&str], env: &[(&str, &Path)]) -> Value {
    let mut command = crate::server::skein_run(dir);
    command.arg(file).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    crate::server::outcome(&mut command).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_reach_a_python_grpcio_service() {
    let Some(python) = grpc_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _service = python_service(&python, port, dir.path()).await;
    // The proto served over HTTP as well, for a call that fetches it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/protos/greeter.proto",
        axum::routing::get(|| async { GREETER }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: grpc-calls, version: '1.0.0'}}
use:
  authentications:
    token:
      bearer: {{token: t0k3n}}
do:
  - greet:
      call: grpc
      with:
        proto: {{endpoint: file://greeter.proto}}
        service: {{name: demo.greeter.Greeter, host: 127.0.0.1, port: {port}, authentication: {{use: token}}}}
        method: Greet
        arguments: {{name: '${{ .name }}', excitement: 2, tags: [a, b]}}
      timeout: {{after: PT30S}}
      export: {{as: '${{ $context + {{greet: .}} }}'}}
  - reflected:
      call: grpc
      with:
        proto: {{endpoint: 'grpc://127.0.0.1:{port}'}}
        service: {{name: Greeter, host: 127.0.0.1, port: {port}}}
        method: Greet
        arguments: {{name: reflection}}
      export: {{as: '${{ $context + {{reflected: .}} }}'}}
  - fetched:
      call: grpc
      with:
        proto: {{endpoint: 'http://127.0.0.1:{web}/protos/greeter.proto'}}
        service: {{name: demo.greeter.Greeter, host: 127.0.0.1, port: {port}}}
        method: Greet
        arguments: {{name: fetched}}
      export: {{as: '${{ $context + {{fetched: .message}} }}'}}
  - flaky:
      try:
        - flakyCall:
            call: grpc
            with:
              proto: {{endpoint: file://greeter.proto}}
              service: {{name: Greeter, host: 127.0.0.1, port: {port}}}
              method: Flaky
              arguments: {{key: unavailable, failures: 2, code: UNAVAILABLE}}
      catch:
        errors:
          with: {{type: https://serverlessworkflow.io/spec/1.0.0/errors/communication, status: 503}}
        retry:
          delay: {{milliseconds: 10}}
          limit: {{attempt: {{count: 5}}}}
      export: {{as: '${{ $context + {{flaky: .}} }}'}}
  - denied:
      try:
        - deniedCall:
            call: grpc
            with:
              proto: {{endpoint: file://greeter.proto}}
              service: {{name: Greeter, host: 127.0.0.1, port: {port}}}
              method: Flaky
              arguments: {{key: denied, failures: 1, code: PERMISSION_DENIED}}
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{denied: .}} }}'}}
  - slow:
      try:
        - slowCall:
            call: grpc
            with:
              proto: {{endpoint: file://greeter.proto}}
              service: {{name: Greeter, host: 127.0.0.1, port: {port}}}
              method: Slow
              arguments: {{ms: 5000}}
            timeout: {{after: PT0.3S}}
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{slow: .}} }}'}}
  - misfit:
      try:
        - misfitCall:
            call: grpc
            with:
              proto: {{endpoint: file://greeter.proto}}
              service: {{name: Greeter, host: 127.0.0.1, port: {port}}}
              method: Greet
              arguments: {{nickname: x}}
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{misfit: .}} }}'}}
  - all:
      set: '${{ $context }}'
"#
    );
    std::fs::write(dir.path().join("calls.yaml"), workflow).unwrap();
    let outcome = run_in(
        dir.path(),
        "calls.yaml",
        &["--input", r#"{"name": "Ada"}"#],
        &[],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    let out = &outcome["output"];

    // The arguments became the request message, the response the output, by the
    // proto3 JSON mapping (every field, int64 as a string).
    let greet = &out["greet"];
    assert_eq!(greet["message"], "Hello, Ada!!", "{greet}");
    assert_eq!(greet["tags"], json!(["a", "b"]));
    assert_eq!(greet["nested"], json!({"level": 2}));
    assert_eq!(greet["authorization"], "Bearer t0k3n");
    let key = greet["idempotencyKey"].as_str().unwrap();
    assert!(key.ends_with(":/do/0/greet"), "{key}");
    let deadline: i64 = greet["deadlineMs"].as_str().unwrap().parse().unwrap();
    assert!(
        (1..=30_000).contains(&deadline),
        "the task's timeout is the call's deadline: {deadline} ms left"
    );
    // A call with no timeout sends no deadline; the proto came from reflection.
    assert_eq!(out["reflected"]["message"], "Hello, reflection");
    assert_eq!(out["reflected"]["deadlineMs"], "-1");

    assert_eq!(out["fetched"], "Hello, fetched");

    // UNAVAILABLE is a communication error (503), retried: the third attempt answers.
    assert_eq!(out["flaky"], json!({"attempts": 3}));
    // PERMISSION_DENIED is an authorization error, with the gRPC status in its data.
    let denied = &out["denied"];
    assert_eq!(
        denied["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/authorization",
        "{denied}"
    );
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["data"]["status"], "PERMISSION_DENIED");
    assert_eq!(denied["detail"], "attempt 1 of denied fails");
    assert_eq!(denied["instance"], "/do/4/denied/try/0/deniedCall");
    // A call past its task's timeout is a timeout error.
    assert_eq!(
        out["slow"]["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/timeout",
        "{}",
        out["slow"]
    );
    // Arguments that do not fit the request message never leave.
    let misfit = &out["misfit"];
    assert_eq!(
        misfit["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/configuration",
        "{misfit}"
    );
    assert!(
        misfit["detail"].as_str().unwrap().contains("nickname"),
        "{misfit}"
    );
}

/// `skein validate` compiles a local proto and finds the call's service and method in
/// it; a method that is not there is an error at the call's `proto`, with its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_compiles_a_calls_proto() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greeter.proto"), GREETER).unwrap();
    let workflow = |method: &str| {
        format!(
            "document: {{dsl: '1.0.3', namespace: test, name: v, version: '1.0.0'}}\ndo:\n  - greet:\n      call: grpc\n      with:\n        proto:\n          endpoint: file://greeter.proto\n        service: {{name: demo.greeter.Greeter, host: localhost, port: 50051}}\n        method: {method}\n"
        )
    };
    std::fs::write(dir.path().join("good.yaml"), workflow("Greet")).unwrap();
    std::fs::write(dir.path().join("bad.yaml"), workflow("Wave")).unwrap();
    let validate = |file: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
            .current_dir(dir.path())
            .args(["validate", file])
            .output()
            .unwrap()
    };
    let good = validate("good.yaml");
    assert!(good.status.success(), "{good:?}");
    let bad = validate("bad.yaml");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(!bad.status.success(), "{text}");
    assert!(
        text.contains("bad.yaml:9:") && text.contains("no method `Wave`") && text.contains("Greet"),
        "{text}"
    );
}

/// A workflow starts an execution on another skein server through its gRPC API (over
/// TLS, with a bearer token, the proto from the repository's file), then reads it back
/// with the proto from the server's reflection until it completed; without the token
/// the server's UNAUTHENTICATED is an authentication error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_reach_skeins_own_api_over_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, private) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&private, key.signing_key.serialize_pem()).unwrap();
    std::fs::copy(
        crate::repo().join("proto/skein/v1/runner.proto"),
        dir.path().join("runner.proto"),
    )
    .unwrap();
    let token = "grpc-call-token";
    let (port, grpc_port) = (free_port(), free_port());
    let _server = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc_port}")])
        .arg("--grpc-tls-cert")
        .arg(&cert)
        .arg("--grpc-tls-key")
        .arg(&private)
        .arg("--data-dir")
        .arg(dir.path().join("server"))
        .env(
            "SKEIN_TOKENS",
            format!(
                "remote:run:{}",
                api::auth::hash(token)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    healthy(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}")).await;

    let child = "document: {dsl: '1.0.3', namespace: test, name: child, version: '1.0.0'}\ndo:\n  - double:\n      set: {doubled: '${ .n * 2 }'}\n";
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: remote, version: '1.0.0'}}
use:
  authentications:
    remote:
      bearer: {{token: {token}}}
do:
  - start:
      call: grpc
      with:
        proto: {{endpoint: file://runner.proto}}
        service: {{name: skein.v1.Runner, host: localhost, port: {grpc_port}, authentication: {{use: remote}}}}
        method: ExecuteAsync
        arguments:
          executionId: from-a-workflow
          workflowYaml: {child:?}
          input: {{n: 21}}
      export: {{as: '${{ $context + {{created: .created}} }}'}}
  - read:
      try:
        - get:
            call: grpc
            with:
              proto: {{endpoint: 'grpc://localhost:{grpc_port}'}}
              service: {{name: skein.v1.Runner, host: localhost, port: {grpc_port}, authentication: {{use: remote}}}}
              method: Get
              arguments: {{executionId: from-a-workflow}}
        - done:
            switch:
              - yes:
                  when: '${{ .status == "completed" }}'
                  then: exit
              - no:
                  then: continue
        - notYet:
            raise:
              error: {{type: https://example.com/not-yet, status: 425}}
      catch:
        errors:
          with: {{type: https://example.com/not-yet}}
        retry:
          delay: {{milliseconds: 50}}
          limit: {{attempt: {{count: 100}}}}
      export: {{as: '${{ $context + {{read: .}} }}'}}
  - anonymous:
      try:
        - anonymousCall:
            call: grpc
            with:
              proto: {{endpoint: file://runner.proto}}
              service: {{name: skein.v1.Runner, host: localhost, port: {grpc_port}}}
              method: Get
              arguments: {{executionId: from-a-workflow}}
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{anonymous: .}} }}'}}
  - all:
      set: '${{ $context }}'
"#
    );
    std::fs::write(dir.path().join("remote.yaml"), workflow).unwrap();
    let tls = format!("localhost:{grpc_port}");
    let outcome = run_in(
        dir.path(),
        "remote.yaml",
        &["--grpc-call-tls", &tls],
        &[("SSL_CERT_FILE", &cert)],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    let out = &outcome["output"];
    assert_eq!(out["created"], true, "{out:#}");
    let read = &out["read"];
    assert_eq!(read["id"], "from-a-workflow", "{read}");
    assert_eq!(read["output"], json!({"doubled": 42}), "{read}");
    assert_eq!(
        out["anonymous"]["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/authentication",
        "{}",
        out["anonymous"]
    );
    assert_eq!(out["anonymous"]["status"], 401);

    // Without the server's certificate trusted, the call does not get through.
    let outcome = run_in(dir.path(), "remote.yaml", &["--grpc-call-tls", &tls], &[]).await;
    assert_eq!(outcome["status"], "faulted", "{outcome:#}");
}
