//! Crash recovery with real processes: `skein run` is killed with SIGKILL at
//! several points of a workflow that calls a local HTTP server, then resumed,
//! and the server's request log shows that no completed call ran twice.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, Uri};
use serde_json::{Value, json};
use tokio::process::Command;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) key: String,
    pub(crate) at: Instant,
    /// When the answer was sent; never for a request the client gave up on.
    pub(crate) answered: Option<Instant>,
}

pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

/// A server that logs every request, holds it for `hold`, then answers `{"path": …}`.
pub(crate) async fn server(hold: Duration) -> (String, Log) {
    let log: Log = Arc::default();
    let app_log = log.clone();
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let log = app_log.clone();
        async move {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let index = {
                let mut log = log.lock().unwrap();
                log.push(Seen {
                    path: uri.path().to_string(),
                    key,
                    at: Instant::now(),
                    answered: None,
                });
                log.len() - 1
            };
            tokio::time::sleep(hold).await;
            log.lock().unwrap()[index].answered = Some(Instant::now());
            axum::Json(json!({"path": uri.path()}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, log)
}

fn count(log: &Log, path: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == path)
        .count()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn skein(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skein"));
    cmd.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_resume_without_repeating_completed_calls() {
    let (base, log) = server(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let flow = dir.path().join("flow.yaml");
    std::fs::write(
        &flow,
        format!(
            "document: {{dsl: '1.0.3', namespace: test, name: crash, version: '1.0.0'}}
do:
  - one:
      call: http
      with: {{ method: post, endpoint: '{base}/step/1' }}
      output: {{ as: .path }}
      export: {{ as: '$context + {{ seen: (($context.seen // []) + [.]) }}' }}
  - two:
      call: http
      with: {{ method: post, endpoint: '{base}/step/2' }}
      output: {{ as: .path }}
      export: {{ as: '$context + {{ seen: (($context.seen // []) + [.]) }}' }}
  - pause:
      wait: {{ milliseconds: 1500 }}
  - three:
      call: http
      with: {{ method: post, endpoint: '{base}/step/3' }}
      output: {{ as: .path }}
      export: {{ as: '$context + {{ seen: (($context.seen // []) + [.]) }}' }}
  - fan:
      for: {{ in: '[range(6)]', concurrency: 3 }}
      do:
        - hit:
            call: http
            with: {{ method: post, endpoint: '${{ \"{base}/fan/\\($item)\" }}' }}
            output: {{ as: .path }}
      export: {{ as: '$context + {{ seen: (($context.seen // []) + [.]) }}' }}
  - four:
      call: http
      with: {{ method: post, endpoint: '{base}/step/4' }}
      output: {{ as: .path }}
      export: {{ as: '$context + {{ seen: (($context.seen // []) + [.]) }}' }}
output:
  as: $context.seen
"
        ),
    )
    .unwrap();
    let flow = flow.to_str().unwrap();

    // 1. Killed while `two` is in flight.
    let mut child = skein(&["run", flow, "--id", "crash", "--data-dir", data])
        .spawn()
        .unwrap();
    until("the second call", || count(&log, "/step/2") == 1).await;
    child.kill().await.unwrap();

    // 2. Resumed, then killed in the middle of the 1.5 s wait.
    let mut child = skein(&["run", "--resume", "crash", "--data-dir", data])
        .spawn()
        .unwrap();
    until("the retried second call to finish", || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == "/step/2")
            .nth(1)
            .is_some_and(|s| s.at.elapsed() > Duration::from_millis(800))
    })
    .await;
    assert_eq!(count(&log, "/step/3"), 0, "still waiting");
    child.kill().await.unwrap();

    // The deadline passes while nothing runs; a resumed timer must not start over.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resumed_at = Instant::now();
    let mut child = skein(&["run", "--resume", "crash", "--data-dir", data])
        .spawn()
        .unwrap();
    until("the third call", || count(&log, "/step/3") == 1).await;
    let waited = resumed_at.elapsed();
    assert!(
        waited < Duration::from_millis(1000),
        "the timer kept its deadline (took {waited:?} after resuming)"
    );

    // 3. Killed during the fan-out, once iterations 3 to 5 are in flight (the server
    // holds them) and the journal holds 0 to 2 as completed. A completed record is
    // committed within the writer's linger (5 ms) unless something waits for it sooner,
    // so the journal, not the request log, says when they count as completed.
    until("the last fan-out calls", || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.starts_with("/fan/"))
            .count()
            >= 6
    })
    .await;
    let journal = rusqlite::Connection::open(std::path::Path::new(data).join("skein.db")).unwrap();
    until("iterations 0 to 2 in the journal", || {
        journal
            .query_row(
                "SELECT COUNT(*) FROM steps WHERE execution_id = 'crash' \
                 AND state = 'completed' AND key LIKE '%/fan/for/%/do/0/hit'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            >= 3
    })
    .await;
    child.kill().await.unwrap();

    // 4. Resumed to the end.
    let out = skein(&["run", "--resume", "crash", "--data-dir", data, "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        outcome["output"],
        json!([
            "/step/1",
            "/step/2",
            "/step/3",
            ["/fan/0", "/fan/1", "/fan/2", "/fan/3", "/fan/4", "/fan/5"],
            "/step/4"
        ])
    );

    // The request log: completed calls ran once; the call in flight at the kill ran twice, same key.
    assert_eq!(count(&log, "/step/1"), 1);
    assert_eq!(count(&log, "/step/2"), 2);
    let keys: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/step/2")
        .map(|s| s.key.clone())
        .collect();
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[0], "crash:/do/1/two");
    assert_eq!(count(&log, "/step/3"), 1);
    assert_eq!(count(&log, "/step/4"), 1);
    for i in 0..6 {
        let n = count(&log, &format!("/fan/{i}"));
        assert!((1..=2).contains(&n), "/fan/{i} ran {n} times");
    }
    // Fan-out iterations finished before the kill are not repeated.
    for i in 0..3 {
        assert_eq!(count(&log, &format!("/fan/{i}")), 1, "/fan/{i}");
    }
}

/// A server that answers 503 to the first `failures` requests, then 200.
async fn flaky_server(failures: usize) -> (String, Log) {
    let log: Log = Arc::default();
    let app_log = log.clone();
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let log = app_log.clone();
        async move {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let n = {
                let mut log = log.lock().unwrap();
                log.push(Seen {
                    path: uri.path().to_string(),
                    key,
                    at: Instant::now(),
                    answered: Some(Instant::now()),
                });
                log.len()
            };
            if n <= failures {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"busy": n})),
                )
            } else {
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({"attempt": n})),
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_retry_backoff_resumes_the_backoff() {
    let (base, log) = flaky_server(2).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let flow = dir.path().join("retry.yaml");
    std::fs::write(
        &flow,
        format!(
            "document: {{dsl: '1.0.3', namespace: test, name: backoff, version: '1.0.0'}}
do:
  - fetch:
      try:
        - get:
            call: http
            with: {{ method: get, endpoint: '{base}/flaky' }}
      catch:
        errors:
          with: {{ status: 503 }}
        retry:
          delay: {{ milliseconds: 1200 }}
          backoff: {{ constant: {{}} }}
          limit: {{ attempt: {{ count: 5 }} }}
"
        ),
    )
    .unwrap();
    let flow = flow.to_str().unwrap();

    // Killed during the first backoff (after the first 503).
    let mut child = skein(&["run", flow, "--id", "backoff", "--data-dir", data])
        .spawn()
        .unwrap();
    until("the first attempt", || log.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    child.kill().await.unwrap();
    let first_at = log.lock().unwrap()[0].at;

    // Resumed after the deadline passed: the second attempt comes at once, not 1.2 s later.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resumed_at = Instant::now();
    let out = skein(&["run", "--resume", "backoff", "--data-dir", data, "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["output"], json!({"attempt": 3}));

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "one request per attempt: {seen:?}");
    let second = seen[1].at;
    assert!(
        second - first_at >= Duration::from_millis(1200),
        "the backoff was honoured"
    );
    assert!(
        second - resumed_at < Duration::from_millis(900),
        "the resumed backoff kept its deadline ({:?})",
        second - resumed_at
    );
    let keys: Vec<&str> = seen.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "backoff:/do/0/fetch/try/0/get",
            "backoff:/do/0/fetch/try#2/0/get",
            "backoff:/do/0/fetch/try#3/0/get"
        ]
    );
}
