//! `call: a2a` against a stand-in agent written here (axum on loopback): the agent card,
//! `message/send` (with the defaults the spec asks for), `message/stream` journaled event
//! by event while the stream is still open, `tasks/get`, `tasks/cancel`, a JSON-RPC
//! error, and the card's bearer token on every request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::server::{call, free_port, healthy, serve};

const TOKEN: &str = "agent-s3cret";

#[derive(Default)]
struct Agent {
    base: String,
    /// Every JSON-RPC request received.
    requests: Mutex<Vec<Value>>,
    /// Holds a stream open after its first events until the test saw them.
    release: Notify,
}

fn task(id: &str, state: &str, text: &str) -> Value {
    json!({
        "kind": "task", "id": id, "contextId": "ctx-1",
        "status": {"state": state},
        "artifacts": [{"artifactId": "a-1", "parts": [{"kind": "text", "text": text}]}],
    })
}

async fn card(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(json!({
        "name": "report agent", "version": "1.0.0", "protocolVersion": "0.3.0",
        "url": format!("{}/a2a", agent.base), "preferredTransport": "JSONRPC",
        "capabilities": {"streaming": true},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": [],
    }))
    .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn rpc(
    State(agent): State<Arc<Agent>>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    agent.requests.lock().unwrap().push(request.clone());
    let id = request["id"].clone();
    let reply = |result: Value| axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    match request["method"].as_str().unwrap_or("") {
        "message/send" => {
            let text = request["params"]["message"]["parts"][0]["text"]
                .as_str()
                .unwrap_or("");
            reply(task("t-1", "completed", &format!("report for: {text}"))).into_response()
        }
        "tasks/get" => {
            let id = request["params"]["id"].as_str().unwrap_or("");
            reply(task(id, "completed", "the stored report")).into_response()
        }
        "tasks/cancel" => axum::Json(json!({
            "jsonrpc": "2.0", "id": id,
            "error": {"code": -32002, "message": "Task cannot be canceled", "data": {"state": "completed"}},
        }))
        .into_response(),
        "message/stream" => {
            let id = id.clone();
            let agent = agent.clone();
            let events = async_stream(agent, id);
            (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(events),
            )
                .into_response()
        }
        _ => axum::Json(json!({
            "jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"},
        }))
        .into_response(),
    }
}

/// Two events, then (once the test saw them journaled) two more and the end.
fn async_stream(
    agent: Arc<Agent>,
    id: Value,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    let event = move |result: Value| {
        Ok(format!(
            "data: {}\n\n",
            json!({"jsonrpc": "2.0", "id": id, "result": result})
        ))
    };
    let first = vec![
        event(task("t-2", "submitted", "")),
        event(
            json!({"kind": "status-update", "taskId": "t-2", "contextId": "ctx-1", "status": {"state": "working"}, "final": false}),
        ),
    ];
    let rest = vec![
        event(
            json!({"kind": "artifact-update", "taskId": "t-2", "contextId": "ctx-1", "artifact": {"artifactId": "a-2", "parts": [{"kind": "text", "text": "streamed report"}]}}),
        ),
        event(
            json!({"kind": "status-update", "taskId": "t-2", "contextId": "ctx-1", "status": {"state": "completed"}, "final": true}),
        ),
    ];
    let released = futures::stream::once(async move {
        agent.release.notified().await;
        futures::stream::iter(rest)
    });
    use futures::StreamExt as _;
    futures::stream::iter(first).chain(released.flatten())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_calls_reach_a_stand_in_agent() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = Arc::new(Agent {
        base: format!("http://{}", listener.local_addr().unwrap()),
        ..Agent::default()
    });
    let app = axum::Router::new()
        .route("/.well-known/agent-card.json", axum::routing::get(card))
        .route("/a2a", axum::routing::post(rpc))
        .with_state(agent.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(port, None, &dir.path().join("data"));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let card = format!(
        "{{endpoint: {{uri: '{}/.well-known/agent-card.json', authentication: {{bearer: {{token: {TOKEN}}}}}}}}}",
        agent.base
    );
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: a2a, version: '1.0.0'}}
do:
  - send:
      call: a2a
      with:
        method: message/send
        agentCard: {card}
        parameters:
          message:
            parts:
              - kind: text
                text: '${{ "Generate the " + .quarter + " sales report." }}'
      export: {{as: '${{ $context + {{sent: .}} }}'}}
  - stream:
      call: a2a
      with:
        method: message/stream
        agentCard: {card}
        parameters:
          message:
            parts: [{{kind: text, text: stream it}}]
      export: {{as: '${{ $context + {{streamed: .}} }}'}}
  - get:
      call: a2a
      with:
        method: tasks/get
        server: {{uri: '{base}/a2a', authentication: {{bearer: {{token: {TOKEN}}}}}}}
        parameters: {{id: '${{ $context.sent.id }}'}}
      export: {{as: '${{ $context + {{got: .status.state}} }}'}}
  - cancel:
      try:
        - cancelIt:
            call: a2a
            with:
              method: tasks/cancel
              server: {{uri: '{base}/a2a', authentication: {{bearer: {{token: {TOKEN}}}}}}}
              parameters: {{id: t-1}}
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{cancel: .}} }}'}}
  - anonymous:
      try:
        - noToken:
            call: a2a
            with:
              method: tasks/get
              server: '{base}/a2a'
              parameters: {{id: t-1}}
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{anonymous: .}} }}'}}
  - all:
      set: '${{ $context }}'
"#,
        base = agent.base
    );
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "input": {"quarter": "Q1"}, "id": "a2a-1"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The stream's first events are journaled while the agent still holds it open.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = crate::server::event_log(&client, &base, "a2a-1").await;
        let streamed = log.matches("dev.skein.task.stream.v1").count();
        if streamed >= 2 {
            assert!(log.contains("\"working\""), "{log}");
            assert!(!log.contains("streamed report"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "no streamed events in:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.release.notify_one();

    let (_, done) = call(
        &client,
        format!("{base}/v1/executions/a2a-1?wait=30s"),
        None,
    )
    .await;
    assert_eq!(done["status"], "completed", "{done:#}");
    let out = &done["output"];
    // message/send: the result (a task, its artifacts within) is the output.
    assert_eq!(out["sent"]["id"], "t-1", "{out:#}");
    assert_eq!(
        out["sent"]["artifacts"][0]["parts"][0]["text"],
        "report for: Generate the Q1 sales report."
    );
    // message/stream: every result, in order.
    let kinds: Vec<&str> = out["streamed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["task", "status-update", "artifact-update", "status-update"]
    );
    assert_eq!(out["got"], "completed");
    // A JSON-RPC error is a runtime error carrying the error object.
    let cancel = &out["cancel"];
    assert_eq!(
        cancel["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/runtime",
        "{cancel}"
    );
    assert_eq!(cancel["data"]["code"], -32002);
    assert_eq!(cancel["detail"], "Task cannot be canceled");
    // Without the token, the agent's 401 is a runtime error with that status.
    assert_eq!(out["anonymous"]["status"], 401, "{}", out["anonymous"]);
    assert_eq!(
        out["anonymous"]["type"],
        "https://serverlessworkflow.io/spec/1.0.0/errors/runtime"
    );

    // The spec's defaults: a message id (a UUID) and the user role.
    let requests = agent.requests.lock().unwrap().clone();
    let sent = requests
        .iter()
        .find(|r| r["method"] == "message/send")
        .unwrap();
    let message = &sent["params"]["message"];
    assert_eq!(message["role"], "user", "{sent}");
    assert_eq!(message["kind"], "message");
    assert!(
        uuid::Uuid::parse_str(message["messageId"].as_str().unwrap()).is_ok(),
        "{sent}"
    );
    assert_eq!(sent["jsonrpc"], "2.0");
    assert!(sent["id"].as_str().unwrap().starts_with("a2a-1:"), "{sent}");
}
