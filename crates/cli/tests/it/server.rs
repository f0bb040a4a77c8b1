//! `skein server` as a real process: killed with SIGKILL while executions run, it
//! resumes them all at its next start; on SIGTERM it exits cleanly and promptly.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A loopback port nobody listens on right now, for a server a test starts.
pub(crate) fn free_port() -> u16 {
    testkit::free_port()
}

/// `skein server` on loopback port `port` with its journal in `data`, its gRPC API on
/// `grpc_port` (or a port of its own choosing); output discarded, killed when dropped.
pub(crate) fn serve(port: u16, grpc_port: Option<u16>, data: &std::path::Path) -> Child {
    let grpc = match grpc_port {
        Some(p) => format!("127.0.0.1:{p}"),
        None => "127.0.0.1:0".into(),
    };
    Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--grpc-listen", &grpc])
        .arg("--data-dir")
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// A client of the gRPC API of a server on loopback port `port`, without TLS.
pub(crate) async fn runner(
    port: u16,
) -> api::grpc::pb::runner_client::RunnerClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    api::grpc::pb::runner_client::RunnerClient::new(channel)
}

/// `skein run --json` in `dir` (with a gRPC port of its own), for a test to add the
/// file and arguments to.
pub(crate) fn skein_run(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skein"));
    command
        .current_dir(dir)
        .args(["run", "--json"])
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0");
    command
}

/// The outcome a `skein run --json` printed; one that printed none fails the test with
/// what it said on stderr.
pub(crate) async fn outcome(command: &mut Command) -> Value {
    let out = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{e}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// `skein ARGS` to run in the background: output discarded, killed when dropped.
pub(crate) fn background(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skein"));
    command
        .args(args)
        // Servers pick their own gRPC port, so that tests side by side do not clash.
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

pub(crate) async fn healthy(client: &reqwest::Client, base: &str) {
    assert!(
        answers_within(client, base, Duration::from_secs(20)).await,
        "the server did not come up"
    );
}

/// Whether the server at `base` answers `/healthz` within `limit`.
pub(crate) async fn answers_within(client: &reqwest::Client, base: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The event log of execution `id` so far, as the SSE text the server sends.
pub(crate) async fn event_log(client: &reqwest::Client, base: &str, id: &str) -> String {
    client
        .get(format!("{base}/v1/executions/{id}/events?follow=false"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// What follows `marker` in the event log of execution `id` (up to the end of its JSON
/// string), once the execution has logged it: such as a URL a workflow announced.
pub(crate) async fn logged(client: &reqwest::Client, base: &str, id: &str, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = event_log(client, base, id).await;
        if let Some(at) = log.find(marker) {
            return log[at + marker.len()..]
                .chars()
                .take_while(|c| !matches!(c, '"' | '\\'))
                .collect();
        }
        assert!(Instant::now() < deadline, "no `{marker}` in:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn call(
    client: &reqwest::Client,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let request = match body {
        Some(body) => client
            .post(url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap()),
        None => client.get(url),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_every_running_execution() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // reqwest is built without a default TLS provider; skein's runtime installs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: nap, version: '1.0.0'}
do:
  - nap:
      wait: { milliseconds: 1500 }
  - result:
      set: '${ { n: (.n * 10) } }'
";

    let mut server = serve(port, None, std::path::Path::new(data));
    healthy(&client, &base).await;
    for n in 0..20 {
        let (status, body) = call(
            &client,
            format!("{base}/v1/executions"),
            Some(json!({"workflow": workflow, "input": {"n": n}, "id": format!("e{n}")})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    server.kill().await.unwrap();

    let mut server = serve(port, None, std::path::Path::new(data));
    healthy(&client, &base).await;
    for n in 0..20 {
        let (status, body) =
            call(&client, format!("{base}/v1/executions/e{n}?wait=20s"), None).await;
        assert_eq!(status, 200);
        assert_eq!(
            (body["status"].as_str(), body["output"].clone()),
            (Some("completed"), json!({"n": n * 10})),
            "e{n}: {body}"
        );
    }

    // SIGTERM: a clean, prompt exit.
    let pid = nix::unistd::Pid::from_raw(server.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), server.wait())
        .await
        .expect("the server exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_client_gets_every_event_once_across_a_killed_server() {
    use tokio::io::AsyncBufReadExt;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // Six events an iteration, some 1,500 in all, over a few seconds.
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: ticks, version: '1.0.0'}
do:
  - ticks:
      for: { in: '${ [range(250)] }' }
      do:
        - nap: { wait: { milliseconds: 8 } }
        - tick: { set: '${ { n: $item } }' }
";
    let mut server = serve(port, None, std::path::Path::new(data));
    healthy(&client, &base).await;
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "id": "ticks"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let mut follower = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["exec", "events", "ticks", "--follow", "--json"])
        .env("SKEIN_SERVER", &base)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    let mut sequences = Vec::new();
    let mut read = async |sequences: &mut Vec<u64>, until: usize| {
        while sequences.len() < until {
            let Some(line) = lines.next_line().await.unwrap() else {
                break;
            };
            let event: Value = serde_json::from_str(&line).unwrap();
            sequences.push(event["sequence"].as_u64().unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read(&mut sequences, 300))
        .await
        .expect("the first 300 events");

    // Killed mid-stream, and started again: the execution resumes, the client reconnects
    // with its last id.
    server.kill().await.unwrap();
    let _server = serve(port, None, std::path::Path::new(data));
    healthy(&client, &base).await;
    tokio::time::timeout(Duration::from_secs(60), read(&mut sequences, usize::MAX))
        .await
        .expect("the stream ends with the execution");
    let status = follower.wait().await.unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut follower.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("resuming after event"), "{stderr}");

    let (_, execution) = call(
        &client,
        format!("{base}/v1/executions/ticks?wait=10s"),
        None,
    )
    .await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["output"], json!({"n": 249}));
    // Every event exactly once, in order, up to the last one the journal holds.
    let (_, events) = exec(&base, &["events", "ticks", "--json"])
        .await
        .1
        .lines()
        .fold((0, 0u64), |(n, _), line| {
            let event: Value = serde_json::from_str(line).unwrap();
            (n + 1, event["sequence"].as_u64().unwrap())
        });
    assert!(events > 1_000, "{events}");
    assert_eq!(sequences, (1..=events).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_server_refuses_a_public_address_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args([
            "server",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}

/// Runs `skein exec` against `base` and returns its exit code, stdout and stderr.
pub(crate) async fn exec(base: &str, args: &[&str]) -> (i32, String, String) {
    remote(base, "exec", args).await
}

/// Runs `skein COMMAND` (a client of the server, such as `exec` or `workflows`) against
/// `base` and returns its exit code, stdout and stderr.
pub(crate) async fn remote(base: &str, command: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .arg(command)
        .args(args)
        .env("SKEIN_SERVER", base)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skein_exec_drives_a_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = serve(port, None, dir.path());
    healthy(&reqwest::Client::new(), &base).await;
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/hello.yaml");

    let (code, out, err) = exec(
        &base,
        &[
            "start",
            hello,
            "--id",
            "x1",
            "--input",
            r#"{"name": "Ada"}"#,
            "--wait",
            "--label",
            "team=docs",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let started: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (started["status"].as_str(), started["output"].as_str()),
        (Some("completed"), Some("Hello, Ada!"))
    );

    let (code, out, _) = exec(&base, &["list", "--label", "team:docs"]).await;
    assert_eq!(code, 0);
    assert!(out.lines().nth(1).unwrap().starts_with("x1 "), "{out}");

    let (code, out, _) = exec(&base, &["events", "x1"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("workflow.started"), "{out}");
    assert!(
        lines.last().unwrap().contains("workflow.completed"),
        "{out}"
    );

    let (code, _, err) = exec(&base, &["get", "nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no execution `nope`"), "{err}");
    let (code, _, err) = exec(&base, &["events", "nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no execution `nope`"), "{err}");
    let (code, _, err) = exec(&base, &["cancel", "x1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("already completed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_gives_tokens_and_secrets() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mounted = dir.path().join("mounted-secret");
    std::fs::write(&mounted, "from-a-file\n").unwrap();
    // sha256("s3cret")
    let config = dir.path().join("skein.yaml");
    std::fs::write(
        &config,
        format!(
            "tokens:\n  - project: alpha\n    role: run\n    sha256: 1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0\n\
             secrets:\n  - name: fromFile\n    file: {}\n    project: alpha\n  - name: fromEnv\n    env: SKEIN_TEST_SECRET\n",
            mounted.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("data");
    let _server = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .env("SKEIN_TEST_SECRET", "from-the-environment")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    healthy(&reqwest::Client::new(), &base).await;

    let (code, _, err) = exec(&base, &["list"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Bearer"), "{err}");
    let (code, out, err) = exec(&base, &["--token", "s3cret", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID"), "{out}");

    // Both secrets reach the execution (its output is exactly them, hence masked) and
    // their lengths prove which text each one was.
    let flow = dir.path().join("secrets.yaml");
    std::fs::write(
        &flow,
        "document: {dsl: '1.0.3', namespace: test, name: secrets, version: '1.0.0'}
use:
  secrets: [ fromFile, fromEnv ]
do:
  - read:
      set:
        file: ${ $secrets.fromFile }
        env: ${ $secrets.fromEnv }
        lengths: ${ [$secrets.fromFile, $secrets.fromEnv] | map(length) }
",
    )
    .unwrap();
    let (code, out, err) = exec(
        &base,
        &[
            "--token",
            "s3cret",
            "--json",
            "start",
            flow.to_str().unwrap(),
            "--wait",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let started: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        started["output"],
        json!({"file": "***", "env": "***", "lengths": [11, 20]}),
        "{out}"
    );

    // A broken configuration is refused at start, naming the entry.
    std::fs::write(
        &config,
        "tokens:\n  - project: alpha\n    role: boss\n    sha256: 00\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", "127.0.0.1:0"])
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tokens[0]") && stderr.contains("boss"),
        "{stderr}"
    );
    std::fs::write(
        &config,
        "secrets:\n  - name: gone\n    file: /nonexistent/secret\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", "127.0.0.1:0"])
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("secrets[0]") && stderr.contains("/nonexistent/secret"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_starts_one_execution_per_line_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = serve(port, None, dir.path());
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let flow = dir.path().join("double.yaml");
    std::fs::write(
        &flow,
        "document: {dsl: '1.0.3', namespace: test, name: double, version: '1.0.0'}\ndo:\n  - d:\n      set: '${ { n: (.n * 2) } }'\n",
    )
    .unwrap();
    let inputs = dir.path().join("inputs.jsonl");
    std::fs::write(&inputs, "{\"n\": 1}\n\n{\"n\": 2}\n{\"n\": 3}\n").unwrap();
    let batch = |extra: &'static [&'static str]| {
        let (flow, inputs, base) = (flow.clone(), inputs.clone(), base.clone());
        async move {
            let mut args = vec![
                "--json".to_string(),
                "start".into(),
                flow.to_str().unwrap().into(),
                "--batch".into(),
                inputs.to_str().unwrap().into(),
                "--id".into(),
                "b".into(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            exec(&base, &args).await
        }
    };
    let (code, out, _) = batch(&["--dry-run"]).await;
    assert_eq!(code, 0);
    assert!(out.lines().all(|l| l.contains("would start")), "{out}");
    let (_, list) = call(&client, format!("{base}/v1/executions"), None).await;
    assert_eq!(
        list["executions"].as_array().map(Vec::len),
        Some(0),
        "a dry run started something"
    );

    let (code, out, err) = batch(&["--max-concurrent", "2"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| (
                l["line"].as_u64().unwrap(),
                l["id"].as_str().unwrap().to_string(),
                l["outcome"].as_str().unwrap().to_string()
            ))
            .collect::<Vec<_>>(),
        [
            (1, "b-1".to_string(), "created".to_string()),
            (3, "b-3".into(), "created".into()),
            (4, "b-4".into(), "created".into())
        ]
    );
    let (_, done) = call(&client, format!("{base}/v1/executions/b-4?wait=10s"), None).await;
    assert_eq!(done["output"], json!({"n": 6}));
    // Again: nothing new.
    let (code, out, _) = batch(&[]).await;
    assert_eq!(code, 0);
    assert!(out.lines().all(|l| l.contains("existing")), "{out}");

    // A broken line starts nothing and says where.
    std::fs::write(&inputs, "{\"n\": 5}\nnot json\n").unwrap();
    let (code, _, err) = exec(
        &base,
        &[
            "start",
            flow.to_str().unwrap(),
            "--batch",
            inputs.to_str().unwrap(),
            "--id",
            "c",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("inputs.jsonl:2"), "{err}");
    let (status, _) = call(&client, format!("{base}/v1/executions/c-1"), None).await;
    assert_eq!(status, 404);
}

/// `--tls-cert`/`--tls-key` serve the REST API over TLS; `skein exec --ca` trusts its
/// certificate; plain HTTP to the port and clients that do not trust it get nowhere;
/// with `--tls-client-ca`, a client without a certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, private) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&private, key.signing_key.serialize_pem()).unwrap();
    let start = |extra: &[&str]| {
        let port = free_port();
        let mut command = background(&["server", "--listen", &format!("127.0.0.1:{port}")]);
        command
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&private)
            .arg("--data-dir")
            .arg(dir.path().join(format!("data-{port}")))
            .args(extra);
        (port, command.spawn().unwrap())
    };
    let (port, _server) = start(&[]);
    let base = format!("https://localhost:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(key.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    healthy(&trusting, &base).await;
    let workflow = dir.path().join("hello.yaml");
    std::fs::write(
        &workflow,
        "document: {dsl: '1.0.3', namespace: test, name: tls, version: '1.0.0'}\ndo:\n  - a:\n      set: {secure: true}\n",
    )
    .unwrap();
    let ca = cert.to_str().unwrap();
    let (code, out, err) = exec(
        &base,
        &[
            "--ca",
            ca,
            "start",
            workflow.to_str().unwrap(),
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["output"],
        json!({"secure": true})
    );
    // Without the CA, the certificate is not trusted.
    let (code, _, err) = exec(&base, &["list"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the server"), "{err}");
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // Client certificates required: a client with none is refused.
    let (port, mut strict_server) = start(&["--tls-client-ca", ca]);
    let strict = format!("https://localhost:{port}");
    assert!(
        !answers_within(&trusting, &strict, Duration::from_secs(3)).await,
        "a client without a certificate was served"
    );
    // Refused by the handshake, not absent: the server runs and takes connections.
    assert!(
        strict_server.try_wait().unwrap().is_none(),
        "the server stopped"
    );
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the server listens");
}

/// The names platforms and seed 003's runner set: PORT (Cloud Run) and GRPC_PORT give
/// the addresses (every interface, so tokens are required), STIGMER_SERVICE_ENDPOINT and
/// STIGMER_SERVICE_USE_TLS=false the callback endpoint without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_takes_its_addresses_and_callbacks_from_platform_and_seed_variables() {
    use tokio::io::AsyncBufReadExt;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (port, grpc_port) = (free_port(), free_port());
    let sha = ring::digest::digest(&ring::digest::SHA256, b"t0ken");
    let hex: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let start = |tokens: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_skein"));
        command
            .args(["server", "--grpc-plaintext"])
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("SKEIN_GRPC_LISTEN")
            .env_remove("SKEIN_LISTEN")
            .env("PORT", port.to_string())
            .env("GRPC_PORT", grpc_port.to_string())
            .env("STIGMER_SERVICE_ENDPOINT", "127.0.0.1:1")
            .env("STIGMER_SERVICE_USE_TLS", "false")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(tokens) = tokens {
            command.env("SKEIN_TOKENS", tokens);
        }
        command.spawn().unwrap()
    };
    // Without tokens every interface is refused, and the message says how to fix it.
    let refused = start(None).wait_with_output().await.unwrap();
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("refusing to listen on 0.0.0.0"), "{text}");

    let mut server = start(Some(&format!("default:admin:{hex}")));
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("listening on") {
                return line;
            }
        }
        panic!("the server ended without listening")
    })
    .await
    .unwrap();
    assert!(line.contains(&format!("0.0.0.0:{port}")), "{line}");
    assert!(line.contains(&format!("0.0.0.0:{grpc_port}")), "{line}");
    assert!(line.contains("progress reported to 127.0.0.1:1"), "{line}");
    let client = reqwest::Client::new();
    healthy(&client, &format!("http://127.0.0.1:{port}")).await;
    tokio::net::TcpStream::connect(("127.0.0.1", grpc_port))
        .await
        .expect("gRPC listens on GRPC_PORT");
}
