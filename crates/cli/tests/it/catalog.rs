//! Cataloged functions: a catalog in a local directory (`file:` under `--files`), one
//! served over HTTP with a bearer token (read once, then kept), the runtime's `default`
//! catalog (`--catalog`), a function called by its URL, and the function's
//! `input.schema` checked.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

const GREET: &str = r#"input:
  schema:
    document:
      type: object
      required: [name]
      properties:
        name: {type: string}
set:
  greeting: '${ "Hello, " + .name }'
"#;

const SHOUT: &str = r#"input:
  schema:
    document:
      type: object
      required: [text]
set:
  shouted: '${ .text | ascii_upcase }'
"#;

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

async fn run(dir: &Path, file: &str, args: &[&str]) -> Value {
    crate::server::outcome(crate::server::skein_run(dir).arg(file).args(args)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cataloged_functions_run_from_directories_and_http() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "catalog/functions/greet/1.0.0/function.yaml",
        GREET,
    );
    write(
        dir.path(),
        "builtin/functions/greet/2.0.0/function.yaml",
        &GREET.replace("Hello", "Welcome"),
    );

    // A catalog over HTTP that wants a token and counts its readers.
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let app = axum::Router::new().route(
        "/team/functions/shout/1.0.0/function.yaml",
        axum::routing::get(move |headers: HeaderMap| {
            let counted = counted.clone();
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some("Bearer cat-token")
                {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                counted.fetch_add(1, Ordering::SeqCst);
                SHOUT.into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: catalogs, version: '1.0.0'}}
use:
  catalogs:
    local:
      endpoint: file://catalog
    team:
      endpoint:
        uri: http://{web}/team
        authentication:
          bearer: {{token: cat-token}}
do:
  - local:
      call: greet:1.0.0@local
      with: {{name: Ada}}
      export: {{as: '${{ $context + {{local: .greeting}} }}'}}
  - builtin:
      call: greet:2.0.0@default
      with: {{name: Grace}}
      export: {{as: '${{ $context + {{builtin: .greeting}} }}'}}
  - byUrl:
      call: file://catalog/functions/greet/1.0.0/function.yaml
      with: {{name: Alan}}
      export: {{as: '${{ $context + {{byUrl: .greeting}} }}'}}
  - shoutAll:
      for: {{in: '${{ ["a", "b", "c"] }}', each: word}}
      do:
        - shout:
            call: shout:1.0.0@team
            with: {{text: '${{ $word }}'}}
            export: {{as: '${{ $context + {{shouted: (($context.shouted // []) + [.shouted])}} }}'}}
  - misfit:
      try:
        - badName:
            call: greet:1.0.0@local
            with: {{name: 42}}
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{misfit: .}} }}'}}
  - missing:
      try:
        - noSuch:
            call: nope:9.9.9@local
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{missing: .}} }}'}}
  - all:
      set: '${{ $context }}'
"#
    );
    write(dir.path(), "catalogs.yaml", &workflow);
    let outcome = run(dir.path(), "catalogs.yaml", &["--catalog", "builtin"]).await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    let out = &outcome["output"];
    assert_eq!(out["local"], "Hello, Ada", "{out:#}");
    assert_eq!(out["builtin"], "Welcome, Grace");
    assert_eq!(out["byUrl"], "Hello, Alan");
    assert_eq!(out["shouted"], json!(["A", "B", "C"]));
    // Three calls, one read: the definition is kept.
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    // The function's input.schema checks `with`.
    assert_eq!(
        out["misfit"]["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/validation",
        "{}",
        out["misfit"]
    );
    let missing = &out["missing"];
    assert_eq!(
        missing["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/configuration",
        "{missing}"
    );
    assert!(
        missing["detail"]
            .as_str()
            .unwrap()
            .contains("functions/nope/9.9.9/function.yaml"),
        "{missing}"
    );
}

/// A function's definition is journaled with the call: a call resumed after the
/// catalog changed goes on with the definition it started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_call_keeps_the_definition_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let slow = |word: &str| {
        format!(
            "do:\n  - pause:\n      wait: PT1S\n  - say:\n      set:\n        greeting: '${{ \"{word}, \" + $workflow.input.name }}'\n"
        )
    };
    write(
        dir.path(),
        "catalog/functions/slow/1.0.0/function.yaml",
        &slow("Hello"),
    );
    let workflow = r#"
document: {dsl: '1.0.3', namespace: test, name: resumed, version: '1.0.0'}
use:
  catalogs:
    local:
      endpoint: file://catalog
do:
  - greet:
      call: slow:1.0.0@local
"#;
    write(dir.path(), "resumed.yaml", workflow);
    let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .current_dir(dir.path())
        .args([
            "run",
            "resumed.yaml",
            "--id",
            "r1",
            "--input",
            r#"{"name": "Ada"}"#,
        ])
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Killed while the function waits, its definition journaled.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    first.kill().await.unwrap();
    write(
        dir.path(),
        "catalog/functions/slow/1.0.0/function.yaml",
        &slow("Goodbye"),
    );
    let outcome = run(dir.path(), "resumed.yaml", &["--resume", "r1"]).await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(outcome["output"]["greeting"], "Hello, Ada", "{outcome:#}");

    // A new execution reads the catalog as it is now.
    let outcome = run(
        dir.path(),
        "resumed.yaml",
        &["--input", r#"{"name": "Ada"}"#],
    )
    .await;
    assert_eq!(outcome["output"]["greeting"], "Goodbye, Ada", "{outcome:#}");
}

/// A script's `source` and a schema's `resource` are read from their URLs (with their
/// authentication): the script runs, the schema checks the workflow's input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_schemas_come_from_their_resources() {
    let app = axum::Router::new()
        .route(
            "/scripts/greet.py",
            axum::routing::get(|| async {
                "import os, sys\nprint('hello ' + os.environ['WHO'] + ' from ' + sys.argv[1])\n"
            }),
        )
        .route(
            "/schemas/order.json",
            axum::routing::get(|headers: HeaderMap| async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some("Bearer schema-token")
                {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                axum::Json(json!({
                    "type": "object",
                    "required": ["item"],
                    "properties": {"item": {"type": "string"}},
                }))
                .into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: resources, version: '1.0.0'}}
input:
  schema:
    format: json
    resource:
      endpoint:
        uri: http://{web}/schemas/order.json
        authentication:
          bearer: {{token: schema-token}}
do:
  - greet:
      run:
        script:
          language: python
          source:
            endpoint: http://{web}/scripts/greet.py
          arguments: ['${{ .item }}']
          environment: {{WHO: skein}}
"#
    );
    write(dir.path(), "resources.yaml", &workflow);
    let outcome = run(
        dir.path(),
        "resources.yaml",
        &["--input", r#"{"item": "the order"}"#],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(outcome["output"], "hello skein from the order\n");
    let outcome = run(dir.path(), "resources.yaml", &["--input", r#"{"item": 7}"#]).await;
    assert_eq!(outcome["status"], "faulted", "{outcome:#}");
    assert_eq!(
        outcome["error"]["type"],
        "https://serverlessworkflow.io/spec/1.0.0/errors/validation"
    );
}
