//! The REST API against a real server on a loopback port, with a real SQLite journal
//! and real HTTP clients.

mod dashboard;
mod quota;
mod workflows;

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{Engine, SystemClock};
use serde_json::{Value, json};
use store::Durability;
use store::sqlite::SqliteStore;

struct Server {
    base: String,
    service: Arc<api::Service>,
    client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

/// A server over the journal in `dir`.
async fn serve_at(dir: &std::path::Path) -> Server {
    serve_with(dir, api::Options::default()).await
}

async fn serve_with(dir: &std::path::Path, options: api::Options) -> Server {
    let store = Arc::new(SqliteStore::open(&dir.join("skein.db"), Durability::Full).unwrap());
    store::Store::observe_commits(&*store, options.metrics.commit_observer());
    let runtime = runtime::Runtime::new().with_workers(worker().await);
    let engine = Arc::new(
        Engine::new(store, Arc::new(runtime), Arc::new(SystemClock))
            .with_observer(options.metrics.clone()),
    );
    let service = api::Service::with_options(engine, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = api::app(service.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base,
        service,
        client: reqwest::Client::new(),
        _dir: None,
    }
}

/// A worker for `run` tasks, on a loopback port of its own.
async fn worker() -> Arc<runtime::Workers> {
    let worker = worker::Worker::new(worker::Options {
        id: "api-tests".into(),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, worker::app(worker)).await.unwrap() });
    Arc::new(runtime::Workers::new(vec![url], None))
}

async fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_at(dir.path()).await;
    server._dir = Some(dir);
    server
}

impl Server {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
        (status, body)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
}

fn flow(tasks: &str) -> String {
    format!(
        "document: {{dsl: '1.0.3', namespace: test, name: flow, version: '1.0.0'}}\ndo:\n{tasks}"
    )
}

/// A token of `project` with `role` whose secret is `secret`.
fn token(project: &str, role: &str, secret: &str) -> api::auth::Token {
    let hex: String = (api::auth::hash(secret).iter())
        .map(|b| format!("{b:02x}"))
        .collect();
    api::auth::Token::new(project, role, &hex).unwrap()
}

const DOUBLE: &str = "  - double:\n      set: '${ { n: (.n * 2) } }'\n";

#[tokio::test]
async fn start_wait_and_idempotent_restart() {
    let server = serve().await;
    let start = json!({"workflow": flow(DOUBLE), "input": {"n": 21}, "id": "job-1"});
    let (status, body) = server.post("/v1/executions?wait=10s", start.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"], json!({"n": 42}));
    assert_eq!(body["workflow"]["name"], "flow");

    // The same start again: the same execution, 200.
    let (status, again) = server.post("/v1/executions", start.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["createdAt"], body["createdAt"]);

    // The same id with another input or definition: 409, naming what differs.
    let mut other = start.clone();
    other["input"] = json!({"n": 1});
    let (status, body) = server.post("/v1/executions", other).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    assert!(
        body["message"].as_str().unwrap().contains("input"),
        "{body}"
    );

    let (status, body) = server.get("/v1/executions/job-1").await;
    assert_eq!((status, body["output"].clone()), (200, json!({"n": 42})));
    let (status, body) = server.get("/v1/executions/nope").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn bad_requests_say_what_was_wrong() {
    let server = serve().await;
    // An invalid workflow: every problem, with its line and pointer.
    let (status, body) = server
        .post(
            "/v1/executions",
            json!({"workflow": flow("  - a:\n      sett: 1\n")}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_workflow"))
    );
    let first = &body["diagnostics"][0];
    assert_eq!(
        (first["line"].as_u64(), first["path"].as_str()),
        (Some(4), Some("/do/0/a/sett"))
    );

    // A body that is not JSON, an unknown field, a bad id, a bad wait.
    let response = server
        .client
        .post(format!("{}/v1/executions", server.base))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let (status, body) = server
        .post(
            "/v1/executions",
            json!({"workflow": flow(DOUBLE), "inputs": {}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("inputs"),
        "{body}"
    );
    let (status, body) = server
        .post(
            "/v1/executions",
            json!({"workflow": flow(DOUBLE), "id": "a/b"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("`a/b`"),
        "{body}"
    );
    let (status, body) = server.get("/v1/executions/x?wait=soon").await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("wait=soon"),
        "{body}"
    );
    let (status, _) = server.get("/v1/executions/x?wait=1h").await;
    assert_eq!(status, 400);
    let (status, _) = server.get("/v2/nothing").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_delivered_event_completes_a_listen() {
    let server = serve().await;
    let waiting = flow(
        "  - approval:\n      listen:\n        to:\n          one:\n            with: { type: com.example.approved }\n",
    );
    let (status, body) = server
        .post("/v1/executions", json!({"workflow": waiting, "id": "w1"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(!["completed", "faulted"].contains(&body["status"].as_str().unwrap()));

    let (status, body) = server
        .post("/v1/executions/w1/events", json!({"data": 1}))
        .await;
    assert_eq!(status, 400, "an event without a type: {body}");
    let (status, body) = server
        .post(
            "/v1/executions/w1/events",
            json!({"type": "com.example.approved", "data": {"by": "ada"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    let (status, body) = server.get("/v1/executions/w1?wait=10s").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("completed")),
        "{body}"
    );
    assert_eq!(body["output"], json!([{"by": "ada"}]));
    let (status, _) = server
        .post("/v1/executions/w1/events", json!({"type": "late"}))
        .await;
    assert_eq!(status, 409, "a finished execution takes no events");
}

#[tokio::test]
async fn cancel_ends_a_waiting_execution_once() {
    let server = serve().await;
    let slow = flow("  - nap:\n      wait: { seconds: 30 }\n");
    let (status, _) = server
        .post("/v1/executions", json!({"workflow": slow, "id": "c1"}))
        .await;
    assert_eq!(status, 201);
    let started = Instant::now();
    let (status, body) = server.post("/v1/executions/c1/cancel", json!(null)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Again: still cancelled, not an error.
    let (status, body) = server.post("/v1/executions/c1/cancel", json!(null)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));

    // A completed execution cannot be cancelled.
    let (_, done) = server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflow": flow(DOUBLE), "input": {"n": 1}}),
        )
        .await;
    let id = done["id"].as_str().unwrap();
    let (status, body) = server
        .post(&format!("/v1/executions/{id}/cancel"), json!(null))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("completed"));
    let (status, _) = server.post("/v1/executions/none/cancel", json!(null)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn list_filters_and_pages() {
    let server = serve().await;
    for n in 0..5 {
        let (status, _) = server
            .post(
                "/v1/executions?wait=10s",
                json!({"workflow": flow(DOUBLE), "input": {"n": n}, "id": format!("l{n}")}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/v1/executions?status=completed&limit=2".to_string();
    loop {
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for e in page["executions"].as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => {
                path = format!("/v1/executions?status=completed&limit=2&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["l4", "l3", "l2", "l1", "l0"],
        "newest first, each once"
    );
    let (status, body) = server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflow": flow(DOUBLE), "input": {"n": 9}, "labels": {"team": "audio"}}),
        )
        .await;
    assert_eq!(
        (status, body["labels"].clone()),
        (201, json!({"team": "audio"}))
    );
    let (_, audio) = server.get("/v1/executions?label=team:audio").await;
    assert_eq!(audio["executions"].as_array().unwrap().len(), 1);
    assert_eq!(audio["executions"][0]["input"], json!({"n": 9}));
    let (status, _) = server.get("/v1/executions?label=team").await;
    assert_eq!(status, 400);
    let (status, _) = server
        .post(
            "/v1/executions",
            json!({"workflow": flow(DOUBLE), "labels": {"bad name": "x"}}),
        )
        .await;
    assert_eq!(status, 400);
    let (_, none) = server.get("/v1/executions?status=faulted").await;
    assert_eq!(none["executions"], json!([]));
    let (status, _) = server.get("/v1/executions?status=done").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_shutdown_abandons_running_executions_and_the_next_server_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_at(dir.path()).await;
    let napping = flow(
        "  - nap:\n      wait: { milliseconds: 400 }\n  - after:\n      set: { woke: true }\n",
    );
    let (status, _) = server
        .post("/v1/executions", json!({"workflow": napping, "id": "r1"}))
        .await;
    assert_eq!(status, 201);
    server.service.shutdown(Duration::from_secs(5)).await;
    let (_, body) = server.get("/v1/executions/r1").await;
    assert!(
        !["cancelled", "completed"].contains(&body["status"].as_str().unwrap()),
        "abandoned, not ended: {body}"
    );

    let next = serve_at(dir.path()).await;
    assert_eq!(next.service.resume_all().await.unwrap(), 1);
    let (status, body) = next.get("/v1/executions/r1?wait=10s").await;
    assert_eq!(
        (status, body["output"].clone()),
        (200, json!({"woke": true})),
        "{body}"
    );
}

/// A client of one SSE stream that reads frames as they come.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

/// One SSE frame: its `id:`, its `data:` (parsed), and whether it was only a comment.
#[derive(Debug)]
struct Frame {
    id: Option<u64>,
    data: Option<Value>,
    comment: bool,
}

impl Sse {
    async fn open(server: &Server, path: &str, last_event_id: Option<u64>) -> Sse {
        let mut request = server.client.get(format!("{}{path}", server.base));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next frame, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut parsed = Frame {
                    id: None,
                    data: None,
                    comment: false,
                };
                for line in frame.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        parsed.id = Some(id.parse().unwrap());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        parsed.data = Some(serde_json::from_str(data).unwrap());
                    } else if line.starts_with(':') {
                        parsed.comment = true;
                    }
                }
                return Some(parsed);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("the stream stalled")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event, skipping comments.
    /// Heartbeats do not count as progress: a stream that only sends them for 30 s fails
    /// the test rather than hang it.
    async fn event(&mut self) -> Option<(u64, Value)> {
        let next = async {
            loop {
                let frame = self.next().await?;
                if let (Some(id), Some(data)) = (frame.id, frame.data) {
                    return Some((id, data));
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), next)
            .await
            .expect("no event for 30 s")
    }
}

#[tokio::test]
async fn an_event_stream_resumes_after_a_reconnect_exactly_once_in_order() {
    let server = serve().await;
    let busy = flow(
        "  - many:
      for: { in: '[range(340)]' }
      do:
        - step:
            set: '${ { i: $item } }'
  - nap:
      wait: { milliseconds: 300 }
  - last:
      set: { done: true }
",
    );
    let (status, _) = server
        .post("/v1/executions", json!({"workflow": busy, "id": "s1"}))
        .await;
    assert_eq!(status, 201);

    // Read 400 events, then drop the connection.
    let mut seen = Vec::new();
    {
        let mut sse = Sse::open(&server, "/v1/executions/s1/events", None).await;
        while seen.len() < 400 {
            let (id, event) = sse.event().await.expect("the stream ended early");
            assert_eq!(event["specversion"], "1.0");
            assert_eq!(event["subject"], "s1");
            assert_eq!(event["sequence"].as_u64(), Some(id));
            seen.push((id, event["type"].as_str().unwrap().to_string()));
        }
    }
    // Reconnect with the last id: the rest, once each, until the execution ends.
    let mut sse = Sse::open(
        &server,
        "/v1/executions/s1/events",
        Some(seen.last().unwrap().0),
    )
    .await;
    while let Some((id, event)) = sse.event().await {
        seen.push((id, event["type"].as_str().unwrap().to_string()));
    }
    let ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
    let expected: Vec<u64> = (1..=ids.len() as u64).collect();
    assert_eq!(ids, expected, "every event once, in order");
    assert!(ids.len() > 1000, "{} events", ids.len());
    assert_eq!(seen[0].1, "io.serverlessworkflow.workflow.started.v1");
    assert_eq!(
        seen.last().unwrap().1,
        "io.serverlessworkflow.workflow.completed.v1"
    );
    let stored = server
        .service
        .store()
        .events("s1", 0, 100_000)
        .await
        .unwrap();
    assert_eq!(stored.len(), ids.len());

    // `?since_id=` starts after that id; a finished execution's stream ends by itself.
    let mut tail = Sse::open(&server, "/v1/executions/s1/events?since_id=1000", None).await;
    let mut rest = Vec::new();
    while let Some((id, _)) = tail.event().await {
        rest.push(id);
    }
    assert_eq!(rest, (1001..=ids.len() as u64).collect::<Vec<_>>());

    // `?since_time=` starts at the first event at or after that time.
    let last = stored.last().unwrap();
    let at = jiff::Timestamp::from_millisecond(last.time).unwrap();
    let mut by_time = Sse::open(
        &server,
        &format!("/v1/executions/s1/events?since_time={at}"),
        None,
    )
    .await;
    let (first, _) = by_time.event().await.unwrap();
    assert!(first <= last.seq);
    assert!(
        stored
            .iter()
            .filter(|e| e.seq < first)
            .all(|e| e.time < last.time)
    );

    let (status, _) = server.get("/v1/executions/nope/events").await;
    assert_eq!(status, 404);
    let (status, _) = server
        .get("/v1/executions/s1/events?since_time=yesterday")
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_idle_event_stream_sends_heartbeats_and_then_the_live_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        api::Options {
            heartbeat: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await;
    let waiting = flow(
        "  - approval:\n      listen:\n        to:\n          one:\n            with: { type: go }\n",
    );
    server
        .post("/v1/executions", json!({"workflow": waiting, "id": "h1"}))
        .await;
    let mut sse = Sse::open(&server, "/v1/executions/h1/events", None).await;
    // Caught up on the first events, then only heartbeats while the listener waits.
    let mut heartbeats = 0;
    while heartbeats < 2 {
        let frame = sse.next().await.unwrap();
        if frame.comment {
            heartbeats += 1;
        }
    }
    server
        .post("/v1/executions/h1/events", json!({"type": "go"}))
        .await;
    let mut types = Vec::new();
    while let Some((_, event)) = sse.event().await {
        types.push(event["type"].as_str().unwrap().to_string());
    }
    assert_eq!(
        types.last().map(String::as_str),
        Some("io.serverlessworkflow.workflow.completed.v1"),
        "{types:?}"
    );
}

/// A loopback endpoint that counts requests and holds each for `hold`.
async fn counting_endpoint(hold: Duration) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(hold).await;
            axum::Json(json!({"ok": true}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, count)
}

#[tokio::test]
async fn pause_stops_new_iterations_and_resume_finishes_them() {
    use std::sync::atomic::Ordering::SeqCst;
    let server = serve().await;
    let (endpoint, count) = counting_endpoint(Duration::from_millis(100)).await;
    let fan_out = flow(&format!(
        "  - fan:
      for: {{ in: '[range(20)]', concurrency: 2 }}
      do:
        - call:
            call: http
            with: {{ method: get, endpoint: '{endpoint}/item' }}
"
    ));
    server
        .post("/v1/executions", json!({"workflow": fan_out, "id": "p1"}))
        .await;
    while count.load(SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, body) = server.post("/v1/executions/p1/pause", json!(null)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("suspended")),
        "{body}"
    );
    let (_, paused) = server.get("/v1/executions/p1").await;
    let done = paused["progress"]["fanOuts"][0]["done"]
        .as_u64()
        .unwrap_or(0);
    assert!(done < 20, "{paused}");
    // Calls in flight finish; no new one starts while paused.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let at_pause = count.load(SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count.load(SeqCst), at_pause, "a call started while paused");
    assert!(at_pause < 20);
    // Pausing again is not an error.
    let (status, _) = server.post("/v1/executions/p1/pause", json!(null)).await;
    assert_eq!(status, 200);

    let (status, body) = server.post("/v1/executions/p1/resume", json!(null)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("running")),
        "{body}"
    );
    let (_, body) = server.get("/v1/executions/p1?wait=20s").await;
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["output"].as_array().unwrap().len(), 20);
    // Progress: the fan-out task and its 20 calls, and the fan-out's last counters.
    let progress = &body["progress"];
    assert_eq!(
        progress["tasks"],
        json!({"started": 21, "completed": 21, "faulted": 0, "cancelled": 0, "retries": 0, "running": 0})
    );
    assert_eq!(
        progress["fanOuts"],
        json!([{"task": "/do/0/fan", "total": 20, "done": 20, "failed": 0, "running": 0}])
    );
    assert_eq!(count.load(SeqCst), 20, "each call once");
    let types: Vec<String> = server
        .service
        .store()
        .events("p1", 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.type_)
        .filter(|t| t.contains("suspended") || t.contains("resumed"))
        .collect();
    assert_eq!(
        types,
        [
            "io.serverlessworkflow.workflow.suspended.v1",
            "io.serverlessworkflow.workflow.resumed.v1"
        ]
    );
    let (status, _) = server.post("/v1/executions/p1/resume", json!(null)).await;
    assert_eq!(status, 409, "a completed execution cannot be resumed");
}

#[tokio::test]
async fn a_paused_timer_holds_and_a_pause_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_at(dir.path()).await;
    let napping = flow(
        "  - nap:\n      wait: { milliseconds: 200 }\n  - after:\n      set: { woke: true }\n",
    );
    server
        .post("/v1/executions", json!({"workflow": napping, "id": "t1"}))
        .await;
    let (status, body) = server.post("/v1/executions/t1/pause", json!(null)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("suspended")),
        "{body}"
    );
    // The timer comes due while paused, and holds.
    let (_, body) = server.get("/v1/executions/t1?wait=600ms").await;
    assert_eq!(body["status"], "suspended", "{body}");

    // A restart keeps the pause.
    server.service.shutdown(Duration::from_secs(5)).await;
    let next = serve_at(dir.path()).await;
    next.service.resume_all().await.unwrap();
    let (_, body) = next.get("/v1/executions/t1?wait=400ms").await;
    assert_eq!(body["status"], "suspended", "{body}");

    let (status, _) = next.post("/v1/executions/t1/resume", json!(null)).await;
    assert_eq!(status, 200);
    let (_, body) = next.get("/v1/executions/t1?wait=10s").await;
    assert_eq!(
        (body["status"].as_str(), body["output"].clone()),
        (Some("completed"), json!({"woke": true})),
        "{body}"
    );
}

#[tokio::test]
async fn cancel_kills_a_running_shell_process() {
    let server = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let sleeper = flow(&format!(
        "  - sleep:\n      run:\n        shell:\n          command: 'echo $$ > {}; exec sleep 30'\n",
        pid_file.display()
    ));
    server
        .post("/v1/executions", json!({"workflow": sleeper, "id": "k1"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the process did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let proc_dir = format!("/proc/{pid}");
    assert!(std::path::Path::new(&proc_dir).exists());

    let (status, body) = server.post("/v1/executions/k1/cancel", json!(null)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    // Killed, and reaped: gone from /proc.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&proc_dir).exists() {
        assert!(Instant::now() < deadline, "the process outlived the cancel");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn metrics_count_executions_events_subscribers_and_commits() {
    let server = serve().await;
    server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflow": flow(DOUBLE), "input": {"n": 1}}),
        )
        .await;
    let waiting = flow(
        "  - approval:\n      listen:\n        to:\n          one:\n            with: { type: go }\n",
    );
    server
        .post("/v1/executions", json!({"workflow": waiting, "id": "m1"}))
        .await;
    let _subscriber = Sse::open(&server, "/v1/executions/m1/events", None).await;
    let response = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no `{line_start}` in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("skein_executions{status=\"completed\"}"), 1.0);
    assert_eq!(value("skein_executions{status=\"faulted\"}"), 0.0);
    assert_eq!(
        value("skein_lifecycle_events_total{event=\"workflow.completed\"}"),
        1.0
    );
    assert!(value("skein_lifecycle_events_total{event=\"task.started\"}") >= 2.0);
    assert_eq!(value("skein_event_stream_subscribers"), 1.0);
    assert!(value("skein_store_commit_seconds_count") >= 1.0);
}

#[tokio::test]
async fn the_stream_of_all_executions_filters_and_resumes() {
    let server = serve().await;
    let completed = "/v1/events?type=io.serverlessworkflow.workflow.completed.v1";
    let mut sse = Sse::open(&server, completed, None).await;
    for (id, n) in [("g1", 1), ("g2", 2)] {
        let (status, _) = server
            .post(
                "/v1/executions?wait=10s",
                json!({"workflow": flow(DOUBLE), "input": {"n": n}, "id": id}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (first, one) = sse.event().await.unwrap();
    let (second, two) = sse.event().await.unwrap();
    assert!(first < second);
    assert_eq!(
        (one["subject"].as_str(), one["data"]["output"].clone()),
        (Some("g1"), json!({"n": 2}))
    );
    assert_eq!(two["subject"], "g2");
    drop(sse);

    // Resumed after the first: the second, and nothing before it.
    let mut again = Sse::open(&server, completed, Some(first)).await;
    let (id, event) = again.event().await.unwrap();
    assert_eq!((id, event["subject"].as_str()), (second, Some("g2")));

    // Without a cursor: only what is committed from now on.
    let mut tail = Sse::open(&server, "/v1/events", None).await;
    let (status, _) = server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflow": flow(DOUBLE), "input": {"n": 3}, "id": "g3"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, event) = tail.event().await.unwrap();
    assert_eq!(
        (event["subject"].as_str(), event["type"].as_str()),
        (
            Some("g3"),
            Some("io.serverlessworkflow.workflow.started.v1")
        )
    );

    // One execution's events, every type, in order, through the log's positions.
    let mut only = Sse::open(&server, "/v1/events?execution=g2&since_id=0", None).await;
    let (_, event) = only.event().await.unwrap();
    assert_eq!(
        (event["subject"].as_str(), event["type"].as_str()),
        (
            Some("g2"),
            Some("io.serverlessworkflow.workflow.started.v1")
        )
    );
}

#[tokio::test]
async fn limits_refuse_with_413_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        api::Options {
            max_body_bytes: 4096,
            max_definition_bytes: 512,
            max_input_bytes: 64,
            ..Default::default()
        },
    )
    .await;
    let big_flow = flow(&format!(
        "  - a:\n      set: {{ pad: '{}' }}\n",
        "x".repeat(600)
    ));
    let (status, body) = server
        .post("/v1/executions", json!({"workflow": big_flow}))
        .await;
    assert_eq!((status, body["error"].as_str()), (413, Some("too_large")));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--max-definition-bytes"),
        "{body}"
    );

    let input = json!({"pad": "y".repeat(100)});
    let (status, body) = server
        .post(
            "/v1/executions",
            json!({"workflow": flow(DOUBLE), "input": input}),
        )
        .await;
    assert_eq!(status, 413);
    assert!(
        body["message"].as_str().unwrap().contains("the input"),
        "{body}"
    );

    let (status, body) = server
        .post("/v1/executions", json!({"workflow": "z".repeat(5000)}))
        .await;
    assert_eq!(status, 413);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--max-body-bytes"),
        "{body}"
    );
}

/// A request with a bearer token; returns the status and the JSON body (or null).
async fn as_token(
    server: &Server,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .client
        .request(method, format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn tokens_scope_everything_to_their_project() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        api::Options {
            tokens: vec![
                token("alpha", "run", "alpha-secret"),
                token("alpha", "read", "alpha-reader"),
                token("beta", "admin", "beta-secret"),
            ],
            ..Default::default()
        },
    )
    .await;
    let start = |id: &str| json!({"workflow": flow(DOUBLE), "input": {"n": 1}, "id": id});

    // No token, or an unknown one: 401. Health needs none.
    let (status, body) = as_token(&server, None, Method::GET, "/v1/executions", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = as_token(&server, Some("guess"), Method::GET, "/v1/executions", None).await;
    assert_eq!(status, 401);
    let (status, _) = as_token(&server, None, Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);

    let alpha = Some("alpha-secret");
    let beta = Some("beta-secret");
    let (status, _) = as_token(
        &server,
        alpha,
        Method::POST,
        "/v1/executions?wait=10s",
        Some(start("a1")),
    )
    .await;
    assert_eq!(status, 201);

    // Beta sees nothing of alpha's: 404 for its id everywhere, not 403.
    for (method, path) in [
        (Method::GET, "/v1/executions/a1"),
        (Method::GET, "/v1/executions/a1/events"),
        (Method::POST, "/v1/executions/a1/cancel"),
        (Method::POST, "/v1/executions/a1/pause"),
    ] {
        let (status, _) = as_token(&server, beta, method, path, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let (_, list) = as_token(&server, beta, Method::GET, "/v1/executions", None).await;
    assert_eq!(list["executions"], json!([]));
    // Beta's stream of all executions starts with beta's own events.
    let (status, _) = as_token(
        &server,
        beta,
        Method::POST,
        "/v1/executions?wait=10s",
        Some(start("b1")),
    )
    .await;
    assert_eq!(status, 201);
    let response = server
        .client
        .get(format!("{}/v1/events?since_id=0", server.base))
        .bearer_auth("beta-secret")
        .send()
        .await
        .unwrap();
    let mut sse = Sse {
        response,
        buffer: String::new(),
    };
    let (_, first) = sse.event().await.unwrap();
    assert_eq!(first["subject"], "b1");
    // Alpha's id is taken, but beta is not told by whom.
    let (status, body) = as_token(
        &server,
        beta,
        Method::POST,
        "/v1/executions",
        Some(start("a1")),
    )
    .await;
    assert_eq!(status, 409);
    assert!(!body["message"].as_str().unwrap().contains("alpha"));

    // Roles: a reader reads but does not start; metrics need admin.
    let reader = Some("alpha-reader");
    let (status, _) = as_token(&server, reader, Method::GET, "/v1/executions/a1", None).await;
    assert_eq!(status, 200);
    let (status, body) = as_token(
        &server,
        reader,
        Method::POST,
        "/v1/executions",
        Some(start("a2")),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let (status, _) = as_token(&server, alpha, Method::GET, "/metrics", None).await;
    assert_eq!(status, 403);
    let response = server
        .client
        .get(format!("{}/metrics", server.base))
        .bearer_auth("beta-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint() {
    let server = serve().await;
    let (status, doc) = server.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/executions", &["post", "get"][..]),
        ("/v1/executions/{id}", &["get"]),
        ("/v1/executions/{id}/cancel", &["post"]),
        ("/v1/executions/{id}/pause", &["post"]),
        ("/v1/executions/{id}/resume", &["post"]),
        ("/v1/executions/{id}/events", &["get", "post"]),
        ("/v1/events", &["get"]),
        ("/v1/workflows", &["get", "post"]),
        ("/v1/workflows/{name}", &["get", "delete"]),
        ("/v1/executions/{id}/graph", &["get"]),
        ("/v1/validate", &["post"]),
        ("/v1/server", &["get"]),
        ("/v1/whoami", &["get"]),
        ("/healthz", &["get"]),
        ("/metrics", &["get"]),
    ] {
        for method in methods {
            assert!(
                paths[path].get(*method).is_some(),
                "{method} {path} is missing"
            );
        }
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "StartRequest",
        "Execution",
        "ExecutionList",
        "Error",
        "Progress",
        "DeployRequest",
        "Workflow",
        "WorkflowList",
    ] {
        assert!(schemas.get(name).is_some(), "schema {name} is missing");
    }
    // A start names its workflow by `workflow` (a definition) or by `workflowRef`.
    let start = &schemas["StartRequest"];
    assert!(
        start["properties"]["workflow"].is_object()
            && start["properties"]["workflowRef"].is_object(),
        "{start}"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn subscribers_beyond_the_limit_get_429_and_a_freed_place_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        api::Options {
            max_subscribers: 2,
            heartbeat: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await;
    let first = Sse::open(&server, "/v1/events", None).await;
    let _second = Sse::open(&server, "/v1/events", None).await;
    let (status, body) = server.get("/v1/events").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_subscribers"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--max-subscribers")
    );
    drop(first);
    // The server notices the closed connection at its next write (a heartbeat here), so
    // wait for the place instead of a fixed time.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = server
            .client
            .get(format!("{}/v1/events", server.base))
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never reused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An endpoint that answers every request with the `Authorization` header it got.
async fn echo_authorization() -> String {
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        axum::Json(json!({
            "authorization": headers.get("authorization").and_then(|v| v.to_str().ok()),
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn secrets_reach_their_project_s_executions_and_never_their_responses() {
    use reqwest::Method;
    let mut secrets = api::Secrets::default();
    secrets.insert(Some("alpha"), "apiToken", json!("alpha-only-token"));
    secrets.insert(None, "shared", json!("shared-by-all"));
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        api::Options {
            tokens: vec![
                token("alpha", "run", "alpha-key"),
                token("beta", "run", "beta-key"),
            ],
            secrets: Arc::new(secrets),
            ..Default::default()
        },
    )
    .await;
    let echo = echo_authorization().await;
    let workflow = format!(
        "document: {{dsl: '1.0.3', namespace: test, name: secretive, version: '1.0.0'}}
use:
  secrets: [ apiToken ]
do:
  - call:
      call: http
      with:
        method: get
        endpoint:
          uri: {echo}/private
          authentication:
            bearer:
              token: ${{ $secrets.apiToken }}
  - copy:
      set:
        heard: ${{ .authorization }}
        shared: ${{ $secrets.shared }}
"
    );
    let start = json!({"workflow": workflow, "id": "s1"});
    let (status, body) = as_token(
        &server,
        Some("alpha-key"),
        Method::POST,
        "/v1/executions?wait=10s",
        Some(start.clone()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    // The endpoint heard the secret (it echoed it back, so the output held it), and the
    // response shows it masked; the undeclared shared secret was never visible.
    assert_eq!(
        body["output"],
        json!({"heard": "Bearer ***", "shared": null}),
        "{body}"
    );
    let (_, fetched) = as_token(
        &server,
        Some("alpha-key"),
        Method::GET,
        "/v1/executions/s1",
        None,
    )
    .await;
    assert!(
        !fetched.to_string().contains("alpha-only-token"),
        "{fetched}"
    );
    let events = server
        .client
        .get(format!("{}/v1/executions/s1/events", server.base))
        .bearer_auth("alpha-key")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("Bearer ***"), "{events}");
    assert!(!events.contains("alpha-only-token"), "{events}");

    // Project beta has no `apiToken`: its start is refused before anything runs.
    let mut other = start.clone();
    other["id"] = json!("s2");
    let (status, body) = as_token(
        &server,
        Some("beta-key"),
        Method::POST,
        "/v1/executions",
        Some(other),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("`apiToken`") && message.contains("`beta`"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_of_all_executions_each_get_exactly_their_events() {
    let server = serve().await;
    // Connected before anything runs: everything they get comes live.
    let filters = [
        "/v1/events",
        "/v1/events?name=alpha",
        "/v1/events?label=team:red",
        "/v1/events?type=io.serverlessworkflow.task.completed.v1",
        "/v1/events?execution=e3&type=io.serverlessworkflow.workflow.completed.v1",
    ];
    let mut streams = Vec::new();
    for filter in filters {
        for _ in 0..4 {
            streams.push((filter, Sse::open(&server, filter, None).await));
        }
    }
    let starts = (0..8).map(|i| {
        let name = if i % 2 == 0 { "alpha" } else { "beta" };
        let team = if i % 3 == 0 { "red" } else { "blue" };
        let workflow = format!(
            "document: {{dsl: '1.0.3', namespace: test, name: {name}, version: '1.0.0'}}
do:
  - fan:
      for: {{ in: '${{ [range(30)] }}', concurrency: 8 }}
      do:
        - step:
            set: '${{ {{ i: $item }} }}'
"
        );
        let body = json!({"workflow": workflow, "id": format!("e{i}"), "labels": {"team": team}});
        let server = &server;
        async move {
            let (status, body) = server.post("/v1/executions?wait=20s", body).await;
            assert_eq!((status, body["status"].as_str()), (201, Some("completed")));
        }
    });
    futures::future::join_all(starts).await;

    // Each stream got what the journal holds for its filter: the same events, in order.
    let mut drained = Vec::new();
    for (filter, mut sse) in streams {
        let params: std::collections::HashMap<String, String> =
            reqwest::Url::parse(&format!("http://x{filter}"))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
        let expected = server
            .service
            .store()
            .log(store::LogQuery {
                after: 0,
                execution: params.get("execution").cloned(),
                name: params.get("name").cloned(),
                label: params
                    .get("label")
                    .map(|l| l.split_once(':').unwrap())
                    .map(|(k, v)| (k.to_string(), v.to_string())),
                type_: params.get("type").cloned(),
                project: None,
                limit: 100_000,
            })
            .await
            .unwrap()
            .events;
        assert!(!expected.is_empty(), "{filter}");
        for logged in &expected {
            let (id, event) = sse.event().await.unwrap();
            assert_eq!(
                (id, event["subject"].as_str(), event["sequence"].as_u64()),
                (
                    logged.pos,
                    Some(logged.execution.as_str()),
                    Some(logged.event.seq)
                ),
                "{filter}"
            );
        }
        drained.push((filter, sse));
    }
    // And nothing more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (filter, mut sse) in drained {
        let extra = tokio::time::timeout(Duration::from_millis(20), sse.event()).await;
        assert!(extra.is_err(), "{filter}: {extra:?}");
    }
}

/// Progress shows while the execution runs (the seed's adapter reported 0 until the
/// end), per task and per fan-out, and never goes backwards.
#[tokio::test]
async fn progress_grows_while_the_fan_out_runs_and_never_goes_back() {
    let server = serve().await;
    let (endpoint, _count) = counting_endpoint(Duration::from_millis(30)).await;
    let fan_out = flow(&format!(
        "  - fan:
      for: {{ in: '[range(40)]', concurrency: 4 }}
      do:
        - call:
            call: http
            with: {{ method: get, endpoint: '{endpoint}/item' }}
"
    ));
    server
        .post("/v1/executions", json!({"workflow": fan_out, "id": "g1"}))
        .await;
    let mut seen: Vec<(u64, u64)> = Vec::new();
    loop {
        let (_, body) = server.get("/v1/executions/g1").await;
        let done = body["progress"]["fanOuts"][0]["done"].as_u64().unwrap_or(0);
        let completed = body["progress"]["tasks"]["completed"].as_u64().unwrap();
        seen.push((done, completed));
        if body["status"] == "completed" {
            break;
        }
        // Pending until its run takes it up (a first poll can come before that).
        assert!(
            body["status"] == "running" || body["status"] == "pending",
            "{body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        seen.windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
        "progress went back: {seen:?}"
    );
    let mut partial: Vec<u64> = seen
        .iter()
        .map(|s| s.0)
        .filter(|d| (1..40).contains(d))
        .collect();
    partial.dedup();
    assert!(
        partial.len() >= 3,
        "too little progress while running: {seen:?}"
    );
    assert_eq!(seen.last().unwrap(), &(40, 41));
}

/// `open_metrics` serves /metrics to a scraper without a token (such as Cloud Run's
/// Prometheus sidecar); everything else still needs one.
#[tokio::test]
async fn open_metrics_need_no_token_while_the_rest_still_does() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        api::Options {
            tokens: vec![token("alpha", "read", "secret")],
            open_metrics: true,
            ..Default::default()
        },
    )
    .await;
    let (status, _) = as_token(&server, None, Method::GET, "/metrics", None).await;
    assert_eq!(status, 200);
    let (status, _) = as_token(&server, None, Method::GET, "/v1/executions", None).await;
    assert_eq!(status, 401);
}
