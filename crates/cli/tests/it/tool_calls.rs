//! `skein bridge` as a real process between a real `skein server` and the example's
//! consumer (`examples/tool-calls/consumer.py`): the round trip, a SIGKILLed bridge,
//! a stalled and a restarted server, ID tokens from a fake metadata server, and
//! working directories that would escape their root.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::server::{call, free_port, healthy};

fn example(file: &str) -> PathBuf {
    crate::repo().join("examples/tool-calls").join(file)
}

fn start_consumer(port: u16, log: &Path, extra: &[&str]) -> Child {
    Command::new("python3")
        .arg(example("consumer.py"))
        .args(["--port", &port.to_string()])
        .arg("--log")
        .arg(log)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn start_server(port: u16, data: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `skein bridge` with the seed's variables; its stderr goes to `log`.
fn start_bridge(port: u16, consumer: u16, work: &Path, log: &Path, envs: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skein"))
        .arg("bridge")
        .env("WORKFLOWS_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("CONSUMER_BASE_URL", format!("http://127.0.0.1:{consumer}"))
        .env("X_USER_ID", "u1")
        .env("X_PROJECT_ID", "p1")
        .env("X_WORKSPACE_ID", "w1")
        .env("SINCE_ID", "0")
        .env("RECONNECT_BACKOFF_MS", "100")
        .env("WORK_ROOT", work)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The consumer's log: one `{key, call, repeat}` per request.
fn consumer_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn start_example(client: &reqwest::Client, base: &str, id: &str, calls: u64) {
    let workflow = std::fs::read_to_string(example("tool-calls.yaml")).unwrap();
    let (status, body) = call(
        client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "id": id, "input": {"calls": calls}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn wait_done(client: &reqwest::Client, base: &str, id: &str, seconds: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let (_, body) = call(client, format!("{base}/v1/executions/{id}?wait=5s"), None).await;
        if body["status"] != "running" || Instant::now() > deadline {
            return body;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bridge_loses_no_tool_call_and_repeats_none_the_consumer_answered() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (port, consumer_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let consumer_file = dir.path().join("consumer.jsonl");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let _server = start_server(port, &dir.path().join("data"), &[], &[]);
    // The 100th tool call's answer is held for 3 s: the bridge is killed meanwhile.
    let _consumer = start_consumer(
        consumer_port,
        &consumer_file,
        &["--hold-at", "100", "--hold-ms", "3000"],
    );
    healthy(&client, &base).await;
    let bridge_log = dir.path().join("bridge.log");
    let mut bridge = start_bridge(port, consumer_port, &work, &bridge_log, &[]);
    start_example(&client, &base, "calls-200", 200).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer_log(&consumer_file).len() < 100 {
        assert!(
            Instant::now() < deadline,
            "the consumer never got 100 tool calls"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bridge.kill().await.unwrap();
    let held = consumer_log(&consumer_file)[99]["key"].clone();
    let cursor = work.join("p1/w1/.skein-bridge-cursor.json");
    assert!(cursor.exists(), "no cursor at {}", cursor.display());
    // The second one serves /healthz and /metrics on $PORT, as on Cloud Run.
    let health_port = free_port().to_string();
    let _bridge = start_bridge(
        port,
        consumer_port,
        &work,
        &dir.path().join("bridge2.log"),
        &[("PORT", &health_port)],
    );

    let body = wait_done(&client, &base, "calls-200", 90).await;
    assert_eq!(body["status"], "completed", "{body}");
    let health = client
        .get(format!("http://127.0.0.1:{health_port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert!(health.text().await.unwrap().contains("event stream open"));
    let metrics = client
        .get(format!("http://127.0.0.1:{health_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let figure = |name: &str| -> u64 {
        let line = (metrics.lines())
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // The calls from the 100th on went through the second bridge.
    assert!(
        figure("skein_bridge_tool_calls_delivered_total") >= 100,
        "{metrics}"
    );
    assert!(
        figure("skein_bridge_results_posted_total") >= 100,
        "{metrics}"
    );
    assert_eq!(figure("skein_bridge_connected"), 1, "{metrics}");
    // Each call adds 1 to its index: 1 + 2 + … + 200.
    assert_eq!(body["output"], json!({"calls": 200, "sum": 20100}));

    let log = consumer_log(&consumer_file);
    let mut first = std::collections::HashMap::new();
    for entry in log.iter().filter(|e| e["repeat"] == false) {
        assert!(
            first
                .insert(entry["call"].as_str().unwrap().to_string(), ())
                .is_none(),
            "call {} ran twice",
            entry["call"]
        );
    }
    assert_eq!(first.len(), 200, "every tool call reached the consumer");
    // Only the call whose answer was held when the bridge died (never acknowledged to
    // it) came again, once, with the same idempotency key.
    let repeats: Vec<&Value> = log.iter().filter(|e| e["repeat"] == true).collect();
    assert!(
        repeats.len() == 1 && repeats[0]["key"] == held,
        "repeated: {repeats:?} (held {held})"
    );
}

/// A fake Google metadata server that hands out one fixed ID token and counts requests.
async fn fake_metadata(token: String) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/computeMetadata/v1/instance/service-accounts/default/identity",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let token = token.clone();
            async move { token }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (host, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_authenticates_with_metadata_id_tokens_and_rides_out_server_trouble() {
    use base64::Engine as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (port, consumer_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("data");
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = jiff::Timestamp::now().as_second() + 3600;
    let token = format!(
        "{}.{}.sig",
        b64(json!({"alg": "RS256"})),
        b64(json!({"exp": exp}))
    );
    let (metadata, hits) = fake_metadata(token.clone()).await;
    let hash: String = api::auth::hash(&token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tokens = format!("p1:run:{hash}");
    let server_env = [("SKEIN_TOKENS", tokens.as_str())];
    let heartbeat = ["--heartbeat", "1"];
    let mut server = start_server(port, &data, &heartbeat, &server_env);
    let consumer_file = dir.path().join("consumer.jsonl");
    // The consumer fails its first two requests: the bridge sends the call again.
    let _consumer = start_consumer(
        consumer_port,
        &consumer_file,
        &["--token", &token, "--fail-first", "2"],
    );
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let bridge_log = dir.path().join("bridge.log");
    let _bridge = start_bridge(
        port,
        consumer_port,
        &work,
        &bridge_log,
        &[
            ("GCE_METADATA_HOST", metadata.as_str()),
            ("EVENTS_HEARTBEAT_MS", "2500"),
        ],
    );
    let authed = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    start_example(&authed, &base, "meta-1", 3).await;
    let body = wait_done(&authed, &base, "meta-1", 30).await;
    assert_eq!(body["output"], json!({"calls": 3, "sum": 6}), "{body}");
    // One token per audience (skein's and the consumer's), then the cache.
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let log = consumer_log(&consumer_file);
    assert_eq!(log[0]["failed"], true);
    assert_eq!(log[1]["failed"], true);
    assert_eq!(
        log[0]["key"], log[2]["key"],
        "the failed call came again: {log:?}"
    );
    assert_eq!(
        (
            &log[2]["user"],
            &log[2]["project"],
            &log[2]["workspace"],
            &log[2]["session"]
        ),
        (&json!("u1"), &json!("p1"), &json!("w1"), &Value::Null),
        "the context headers"
    );

    // A stalled server (no heartbeats) makes the bridge reconnect; a restarted one too.
    let pid = nix::unistd::Pid::from_raw(server.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&bridge_log)
        .unwrap()
        .contains("EVENTS_HEARTBEAT_MS")
    {
        assert!(
            Instant::now() < deadline,
            "the bridge never noticed the silence"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    server.kill().await.unwrap();
    let _server = start_server(port, &data, &heartbeat, &server_env);
    healthy(&client, &base).await;
    start_example(&authed, &base, "meta-2", 4).await;
    let body = wait_done(&authed, &base, "meta-2", 30).await;
    assert_eq!(body["output"], json!({"calls": 4, "sum": 10}), "{body}");
    assert_eq!(consumer_log(&consumer_file).len(), 2 + 7);
}

#[tokio::test]
async fn the_bridge_refuses_missing_settings_and_paths_that_escape_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();
    let bridge = |vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_skein"));
        command
            .arg("bridge")
            .env_remove("WORKFLOWS_BASE_URL")
            .env_remove("CONSUMER_BASE_URL")
            .env_remove("X_USER_ID")
            .env_remove("X_PROJECT_ID")
            .env("WORK_ROOT", &root)
            .envs(vars.iter().copied());
        command.output().unwrap()
    };
    let out = bridge(&[("X_USER_ID", "u1")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WORKFLOWS_BASE_URL, CONSUMER_BASE_URL, X_PROJECT_ID must be set"),
        "{stderr}"
    );
    let base = [
        ("WORKFLOWS_BASE_URL", "http://127.0.0.1:1"),
        ("CONSUMER_BASE_URL", "http://127.0.0.1:2"),
        ("X_USER_ID", "u1"),
    ];
    for (project, says) in [
        ("..", "X_PROJECT_ID (`..`) cannot name a directory"),
        (
            "/etc",
            "X_PROJECT_ID (`/etc`) cannot name a directory: it is an absolute path",
        ),
        ("a/../../x", "it holds a path separator"),
        ("linked", "outside WORK_ROOT"),
    ] {
        let mut vars = base.to_vec();
        vars.push(("X_PROJECT_ID", project));
        let out = bridge(&vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{project}: {stderr}");
        assert!(stderr.contains(says), "{project}: {stderr}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
