//! Cloud Workflows documents run by the real binary: the suite of
//! `crates/gcw/tests/data/` (see `suite`), against a local stand-in HTTP server; errors
//! with their positions; named workflows, callbacks, connectors and Google's client
//! libraries against a real `skein server`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{any, get};
use serde_json::{Value, json};

use crate::{repo, skein, stderr};

/// Requests seen per key, for the flaky endpoint.
type Seen = Arc<Mutex<HashMap<String, u64>>>;

/// A stand-in for the services the documents call:
/// - `/flaky/{key}?fail=N&status=S`: the first N requests of each key get S (with a
///   JSON body), then `{"attempt": n}`;
/// - `/echo`: the method, query and JSON body it was sent;
/// - `/slow/{group}`: answers after 200 ms; `/most/{group}`: the most requests of the
///   group that were in flight at once.
pub(crate) async fn stand_in() -> String {
    let app = Router::new()
        .route(
            "/flaky/{key}",
            get(
                |State(seen): State<Seen>,
                 Path(key): Path<String>,
                 Query(q): Query<HashMap<String, String>>| async move {
                    let attempt = {
                        let mut seen = seen.lock().unwrap();
                        let n = seen.entry(key).or_default();
                        *n += 1;
                        *n
                    };
                    let fail: u64 = q.get("fail").and_then(|f| f.parse().ok()).unwrap_or(0);
                    let status: u16 = q.get("status").and_then(|s| s.parse().ok()).unwrap_or(503);
                    if attempt <= fail {
                        let status = StatusCode::from_u16(status).unwrap();
                        (
                            status,
                            axum::Json(json!({"error": "not yet", "attempt": attempt})),
                        )
                    } else {
                        (StatusCode::OK, axum::Json(json!({"attempt": attempt})))
                    }
                },
            ),
        )
        .route(
            "/echo",
            any(
                |method: axum::http::Method,
                 Query(q): Query<HashMap<String, String>>,
                 body: String| async move {
                    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    axum::Json(json!({"method": method.as_str(), "query": q, "body": body}))
                },
            ),
        )
        .route(
            "/slow/{group}",
            get(
                |State(seen): State<Seen>, Path(group): Path<String>| async move {
                    // Requests in flight per group, and the most there were at once.
                    let (now, most) = (format!("now:{group}"), format!("most:{group}"));
                    {
                        let mut seen = seen.lock().unwrap();
                        let n = *seen.entry(now.clone()).and_modify(|n| *n += 1).or_insert(1);
                        let m = seen.entry(most).or_default();
                        *m = (*m).max(n);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    *seen.lock().unwrap().get_mut(&now).unwrap() -= 1;
                    axum::Json(json!({}))
                },
            ),
        )
        .route(
            "/most/{group}",
            get(
                |State(seen): State<Seen>, Path(group): Path<String>| async move {
                    let most = seen.lock().unwrap().get(&format!("most:{group}")).copied();
                    axum::Json(json!({"most": most.unwrap_or(0)}))
                },
            ),
        )
        .with_state(Seen::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_of_the_suite_gives_its_expected_result() {
    let base = stand_in().await;
    crate::suite::every_document_gives_its_result(&repo().join("crates/gcw/tests/data"), &base)
        .await;
}

#[test]
fn a_broken_document_gets_every_error_with_its_position() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "main:\n  steps:\n    - a:\n        assign:\n          - x: ${y + 1}\n    - b:\n        call: nope\n        next: missing\n    - c:\n        assign:\n          - z: ${len(x, 2) + textx.split(\"a\")}\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for expected in [
        "bad.yaml:5:18: error: the variable `y` is never assigned in this subworkflow",
        "bad.yaml:7:15: error: `nope` is neither a subworkflow",
        "bad.yaml:8:15: error: `next` names the step `missing`",
        "bad.yaml:11:18: error: `len` takes 1 arguments, not 2",
        "bad.yaml:11:30: error: unknown function `textx.split`",
        "did you mean `text.split`?",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
}

#[test]
fn try_and_retry_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "- a:\n    try:\n      assign:\n        - x: 1\n- b:\n    assign:\n      - y: 2\n    result: z\n- c:\n    try:\n      assign:\n        - x: 1\n    retry: ${http.default_retyr}\n- d:\n    try:\n      assign:\n        - x: 1\n    retry:\n      predicate: ${retry.always}\n      max_retries: 2\n      backoff:\n        initial_delay: -1\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for expected in [
        "bad.yaml:3:7: error: a `try` needs `retry`, `except` or both",
        "bad.yaml:8:5: error: `result` belongs to a `call` step",
        "bad.yaml:13:12: error: `retry` is `${http.default_retry}`",
        "did you mean `${http.default_retry}`?",
        "bad.yaml:22:24: error: `initial_delay` is a positive number",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
}

#[test]
fn parallel_scopes_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "- init:\n    assign:\n      - input: 1\n      - out: 0\n- fan:\n    parallel:\n      shared: [out, later]\n      branches:\n        - one:\n            steps:\n              - write:\n                  assign:\n                    - input: 5\n                    - out: 2\n        - two:\n            steps:\n              - leave:\n                  return: 1\n- after:\n    assign:\n      - later: 1\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for expected in [
        "bad.yaml:7:21: error: the shared variable `later` must be assigned before the parallel step",
        "bad.yaml:13:23: error: `input` belongs to the scope around this parallel step",
        "bad.yaml:18:19: error: a branch of a parallel step cannot `return`",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
    assert!(
        !text.contains("`out` belongs"),
        "a shared variable may be assigned:\n{text}"
    );
}

#[test]
fn only_subworkflows_that_do_not_wait_run_inside_expressions() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "main:\n  steps:\n    - a:\n        assign:\n          - x: ${fetch(\"u\")}\n          - y: ${twice(1, 2, 3)}\nfetch:\n  params: [url]\n  steps:\n    - get:\n        call: http.get\n        args:\n          url: ${url}\n        result: r\n    - give:\n        return: ${r.body}\ntwice:\n  params: [n]\n  steps:\n    - give:\n        return: ${n * 2}\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for expected in [
        "bad.yaml:5:18: error: the subworkflow `fetch` cannot be called in an expression",
        "bad.yaml:6:18: error: the subworkflow `twice` takes 1 arguments, not 3",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
}

/// `sys.log` writes its line, with its severity, to the log of the process running the
/// workflow (stderr of `skein run`), besides the event in the execution's stream.
#[test]
fn sys_log_reaches_the_log_with_its_severity() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("log.yaml");
    std::fs::write(
        &file,
        "- a:\n    call: sys.log\n    args:\n      text: rendering chunk 3\n      severity: WARNING\n- b:\n    call: sys.log\n    args:\n      json: {n: 1}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = skein(&[
        "run",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    for expected in [
        "skein: [WARNING] rendering chunk 3",
        "skein: [DEFAULT] {\"n\":1}",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
}

#[test]
fn library_calls_are_checked_by_their_parameters() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "- a:\n    call: text.split\n    args:\n      source: x\n      separatr: \",\"\n- b:\n    call: json.encode\n    args:\n      indent: 2\n- c:\n    call: text.splt\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for expected in [
        "bad.yaml:5:7: error: `text.split` has no argument `separatr`",
        "did you mean `separator`?",
        "bad.yaml:2:11: error: `text.split` needs the argument `separator`",
        "bad.yaml:7:11: error: `json.encode` needs the argument `data`",
        "bad.yaml:11:11: error: `text.splt` is neither a subworkflow",
        "did you mean `text.split`?",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
}

/// Runs `skein workflows` against `base`: exit code, stdout, stderr.
async fn workflows_cli(base: &str, args: &[&str]) -> (i32, String, String) {
    crate::server::remote(base, "workflows", args).await
}

/// A `skein server` on free ports (REST and gRPC) over a journal in `dir`, up: the
/// process (killed when dropped) and the two ports.
async fn server_at(dir: &std::path::Path) -> (tokio::process::Child, u16, u16) {
    let (port, grpc_port) = (crate::server::free_port(), crate::server::free_port());
    (server_on(dir, port, grpc_port).await, port, grpc_port)
}

/// A `skein server` on `dir` at these ports, once it answers.
async fn server_on(dir: &std::path::Path, port: u16, grpc_port: u16) -> tokio::process::Child {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = crate::server::background(&[
        "server",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--grpc-listen",
        &format!("127.0.0.1:{grpc_port}"),
        "--data-dir",
        dir.to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    crate::server::healthy(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}")).await;
    server
}

/// `events.create_callback_endpoint` gives a URL on the server's API and
/// `events.await_callback` waits for a request to it: across a crash of the server
/// (killed while the workflow waits, started again on the same journal), and until
/// its timeout, which raises `TimeoutError`. A callback of an execution that has ended
/// is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_reach_the_workflow_that_awaits_them_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (port, grpc_port) = (crate::server::free_port(), crate::server::free_port());
    let mut server = server_on(&data, port, grpc_port).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let workflow = r#"
main:
  steps:
    - create:
        call: events.create_callback_endpoint
        args:
          http_callback_method: POST
        result: cb
    - announce:
        call: sys.log
        args:
          text: ${"first " + cb.url}
    - wait:
        call: events.await_callback
        args:
          callback: ${cb}
          timeout: 120
        result: got
    - again:
        call: events.create_callback_endpoint
        result: unanswered
    - wait_in_vain:
        try:
          call: events.await_callback
          args:
            callback: ${unanswered}
            timeout: 1
        except:
          as: e
          steps:
            - keep:
                assign:
                  - timed_out: ${e.tags}
    - done:
        return:
          body: ${got.http_request.body}
          method: ${got.http_request.method}
          query: ${got.http_request.query}
          type: ${got.type}
          timed_out: ${timed_out}
          url: ${cb.url}
"#;
    let (_, started) = crate::server::call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "id": "cb-1"})),
    )
    .await;
    assert_eq!(started["id"], "cb-1", "{started}");

    // The callback's URL, from the workflow's log.
    let url = format!(
        "http{}",
        crate::server::logged(&client, &base, "cb-1", "first http").await
    );
    assert!(
        url.starts_with(&format!(
            "{base}/v1/projects/default/locations/local/workflows/workflow/executions/cb-1/callbacks/"
        )),
        "{url}"
    );

    // The server dies while the workflow waits, and comes back on the same journal.
    server.kill().await.unwrap();
    server.wait().await.unwrap();
    let _server = server_on(&data, port, grpc_port).await;

    let (status, answer) = crate::server::call(
        &client,
        format!("{url}?k=1&k=2"),
        Some(json!({"approved": true})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    let (_, done) =
        crate::server::call(&client, format!("{base}/v1/executions/cb-1?wait=60s"), None).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["output"],
        json!({
            "body": {"approved": true},
            "method": "POST",
            "query": {"k": ["1", "2"]},
            "type": "HTTP",
            "timed_out": ["TimeoutError"],
            "url": url,
        })
    );

    let (status, late) = crate::server::call(&client, url, Some(json!({}))).await;
    assert_eq!(status, 404, "a callback of an ended execution: {late}");
}

/// The Workflow Executions connectors reach the server the workflow runs on, so a
/// workflow deployed there runs as a child execution: `executions.run` waits for its
/// result (a failure raises `OperationError`), `create` and `get` start one and look at
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_another_deployed_on_the_same_server() {
    let dir = tempfile::tempdir().unwrap();
    let child = dir.path().join("child.yaml");
    std::fs::write(
        &child,
        "main:\n  params: [args]\n  steps:\n    - check:\n        switch:\n          - condition: ${args.n < 0}\n            raise: negative\n    - give:\n        return: ${args.n * 2}\n",
    )
    .unwrap();
    let (_server, port, _) = server_at(&dir.path().join("data")).await;
    let base = format!("http://127.0.0.1:{port}");
    let (code, _, err) =
        workflows_cli(&base, &["deploy", "doubler", child.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");

    let parent = r#"
main:
  steps:
    - run:
        call: googleapis.workflowexecutions.v1.projects.locations.workflows.executions.run
        args:
          workflow_id: doubler
          argument:
            n: 21
          connector_params:
            polling_policy:
              initial_delay: 0.05
        result: doubled
    - fail:
        try:
          call: googleapis.workflowexecutions.v1.projects.locations.workflows.executions.run
          args:
            workflow_id: doubler
            argument:
              n: -1
            connector_params:
              polling_policy:
                initial_delay: 0.05
        except:
          as: e
          steps:
            - note:
                assign:
                  - failed: ${e.tags}
                  - failed_state: ${e.operation.state}
    - create:
        call: googleapis.workflowexecutions.v1.projects.locations.workflows.executions.create
        args:
          parent: ${"projects/" + sys.get_env("GOOGLE_CLOUD_PROJECT_ID") + "/locations/local/workflows/doubler"}
          body:
            argument: '{"n": 1}'
        result: created
    - look:
        call: googleapis.workflowexecutions.v1.projects.locations.workflows.executions.get
        args:
          name: ${created.name}
        result: looked
    - done:
        return:
          doubled: ${doubled}
          failed: ${failed}
          failed_state: ${failed_state}
          same: ${looked.name == created.name}
"#;
    let client = reqwest::Client::new();
    let (status, started) = crate::server::call(
        &client,
        format!("{base}/v1/executions?wait=60s"),
        Some(json!({"workflow": parent})),
    )
    .await;
    assert!(status < 300, "{started}");
    assert_eq!(started["status"], "completed", "{started}");
    assert_eq!(
        started["output"],
        json!({"doubled": 42, "failed": ["OperationError"], "failed_state": "FAILED", "same": true})
    );
}

/// A Cloud Workflows file deployed by name on a real `skein server`, started by name
/// with `skein exec start --workflow-ref`, listed, shown and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_workflow_is_deployed_started_and_deleted_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("triple.yaml");
    std::fs::write(
        &file,
        "main:\n  params: [args]\n  steps:\n    - give:\n        return: ${args.n * 3}\n",
    )
    .unwrap();
    let (_server, port, _) = server_at(&dir.path().join("data")).await;
    let base = format!("http://127.0.0.1:{port}");
    let file = file.to_str().unwrap();

    let (code, out, err) = workflows_cli(&base, &["deploy", "triple", file]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "triple revision 1 (cloud-workflows)");
    let (code, out, _) = workflows_cli(&base, &["deploy", "triple", file]).await;
    assert_eq!(
        (code, out.trim()),
        (0, "triple revision 1 (cloud-workflows)"),
        "unchanged"
    );

    let (code, out, err) = workflows_cli(&base, &["list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("triple ") && l.contains("cloud-workflows")),
        "{out}"
    );

    let (code, out, err) = crate::server::exec(
        &base,
        &[
            "start",
            "--workflow-ref",
            "triple@1",
            "--input",
            r#"{"n": 7}"#,
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let started: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&started["output"], &started["workflow"]["name"]),
        (&json!(21), &json!("triple"))
    );

    let (code, out, _) = workflows_cli(&base, &["get", "triple"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("${args.n * 3}"), "{out}");
    let (code, _, _) = workflows_cli(&base, &["delete", "triple"]).await;
    assert_eq!(code, 0);
    let (code, _, err) = workflows_cli(&base, &["get", "triple"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("there is no workflow `triple`"), "{err}");
}

/// The Python with Google's `google-cloud-workflows` client library (`.ci/run` makes a
/// virtualenv and names it in SKEIN_GOOGLE_PYTHON); `None`, said aloud, where there is
/// none, unless SKEIN_REQUIRE_GOOGLE_CLIENTS=1 makes that a failure.
fn google_python() -> Option<std::path::PathBuf> {
    let python = std::env::var_os("SKEIN_GOOGLE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let ok = std::process::Command::new(&python)
        .args([
            "-c",
            "import google.cloud.workflows_v1, google.cloud.workflows.executions_v1, grpc",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let message = format!(
        "{} lacks google-cloud-workflows (set SKEIN_GOOGLE_PYTHON to a Python that has \
         it, as .ci/run does)",
        python.display()
    );
    assert!(
        std::env::var("SKEIN_REQUIRE_GOOGLE_CLIENTS").as_deref() != Ok("1"),
        "{message}"
    );
    eprintln!("SKIPPED: Google's Python client test: {message}");
    None
}

/// Google's own Python client library, its workflows client over REST and its
/// executions client over gRPC, deploys, runs, polls, updates and deletes workflows on
/// a real `skein server` (crates/cli/tests/it/google_client.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_python_client_library_drives_skein() {
    let Some(python) = google_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_server, port, grpc_port) = server_at(dir.path()).await;
    let script = repo().join("crates/cli/tests/it/google_client.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(format!("127.0.0.1:{port}"))
        .arg(format!("127.0.0.1:{grpc_port}"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where Google's Node client library (`@google-cloud/workflows`) is installed: a
/// `node_modules` directory (`.ci/run` installs it and names it in SKEIN_GOOGLE_NODE_MODULES);
/// `None`, said aloud, where there is none, unless SKEIN_REQUIRE_GOOGLE_CLIENTS=1.
fn google_node_modules() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("SKEIN_GOOGLE_NODE_MODULES").map(std::path::PathBuf::from);
    if let Some(dir) = dir.filter(|d| d.join("@google-cloud/workflows").is_dir()) {
        return Some(dir);
    }
    let message = "no node_modules with @google-cloud/workflows (set SKEIN_GOOGLE_NODE_MODULES \
                   to one, as .ci/run does)";
    assert!(
        std::env::var("SKEIN_REQUIRE_GOOGLE_CLIENTS").as_deref() != Ok("1"),
        "{message}"
    );
    eprintln!("SKIPPED: Google's Node client test: {message}");
    None
}

/// Google's own Node client library, the one seed 001's SDK uses, over gRPC and over its
/// REST fallback, runs and polls executions on a real `skein server`
/// (crates/cli/tests/it/google_client.js).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_node_client_library_drives_skein() {
    let Some(modules) = google_node_modules() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_server, port, grpc_port) = server_at(dir.path()).await;
    let out = tokio::process::Command::new("node")
        .arg(repo().join("crates/cli/tests/it/google_client.js"))
        .arg(port.to_string())
        .arg(grpc_port.to_string())
        .env("NODE_PATH", modules)
        .output()
        .await
        .expect("runs node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Google's limits are defaults: `--cloud-workflows-variables-bytes` raises the limit on
/// a subworkflow's variables.
#[test]
fn configuration_raises_googles_limits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grow.yaml");
    std::fs::write(
        &file,
        "- start:\n    assign:\n      - big: \"x\"\n- double:\n    for:\n      value: i\n      range: [1, 20]\n      steps:\n        - twice:\n            assign:\n              - big: ${big + big}\n- done:\n    return: ${len(big)}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (file, data) = (file.to_str().unwrap(), data.to_str().unwrap());
    let out = skein(&["run", file, "--data-dir", data]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ResourceLimitError"),
        "{}",
        stderr(&out)
    );
    let out = skein(&[
        "run",
        file,
        "--data-dir",
        data,
        "--cloud-workflows-variables-bytes",
        "4000000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1048576");

    // Steps: an endless loop ends at Google's count, here lowered to 50, or at
    // --execution-tasks when that is lower.
    let endless = dir.path().join("endless.yaml");
    std::fs::write(
        &endless,
        "- init:\n    assign:\n      - i: 0\n- again:\n    assign:\n      - i: ${i + 1}\n    next: again\n",
    )
    .unwrap();
    let endless = endless.to_str().unwrap();
    for (setting, value) in [
        ("--cloud-workflows-steps", "50"),
        ("--execution-tasks", "30"),
    ] {
        let out = skein(&["run", endless, "--data-dir", data, setting, value]);
        assert_eq!(out.status.code(), Some(1));
        let text = stderr(&out);
        let named = format!("more than {value} tasks (setting `{}`)", &setting[2..]);
        assert!(
            text.contains(&named) && text.contains("ResourceLimitError"),
            "{setting}: {text}"
        );
    }
}
