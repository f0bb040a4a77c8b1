//! `skein worker` as a real process: tasks over HTTP, and a SIGTERM that kills what
//! outlasts the grace period and says so.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_tasks_and_a_sigterm_reports_what_it_killed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = super::server::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args([
            "worker",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--grace",
            "1",
        ])
        .args(["--concurrency", "2", "--secret-env", "WORKER_SECRET"])
        .env("SKEIN_WORKER_TOKEN", "tok")
        .env("WORKER_SECRET", "very-secret-text")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if client.get(format!("{base}/hello")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the worker answers /hello");
    let run = |body: Value| {
        client
            .post(format!("{base}/run"))
            .bearer_auth("tok")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let response = run(json!({"command": "sh", "args": ["-c", "echo $WORKER_SECRET"], "id": "s"}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let events = client
        .get(format!("{base}/run/s/events"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains(r#""text":"***\n""#), "{events}");
    assert!(!events.contains("very-secret-text"), "{events}");

    let response = run(json!({"command": "sleep", "args": ["30"], "id": "long"}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let pid = nix::unistd::Pid::from_raw(worker.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), worker.wait())
        .await
        .expect("the worker exits after its grace period")
        .unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut worker.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("0 tasks finished, 1 killed"), "{stderr}");

    // Without a token it will not listen beyond loopback.
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["worker", "--listen", "0.0.0.0:0"])
        .env_remove("SKEIN_WORKER_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SKEIN_WORKER_TOKEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sends_run_tasks_to_a_worker_and_a_cancel_kills_them_at_once() {
    use super::server::{background, call, free_port, healthy};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let worker_port = free_port();
    let worker_url = format!("http://127.0.0.1:{worker_port}");
    let _worker = background(&["worker", "--listen", &format!("127.0.0.1:{worker_port}")])
        .env("SKEIN_WORKER_TOKEN", "wt")
        .spawn()
        .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = background(&["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--worker", &worker_url])
        .env("SKEIN_WORKER_TOKEN", "wt")
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    healthy(&client, &base).await;

    // Two tasks at once on a worker that takes one: the second waits its turn (429,
    // Retry-After) and both finish, each with its own output.
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: pair, version: '1.0.0'}
do:
  - both:
      fork:
        branches:
          - a:
              run: { shell: { command: 'sleep 0.3; echo from-a' } }
          - b:
              run: { shell: { command: 'sleep 0.3; echo from-b' } }
";
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions?wait=30s"),
        Some(json!({"workflow": workflow})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("completed")),
        "{body}"
    );
    assert_eq!(body["output"], json!(["from-a\n", "from-b\n"]), "{body}");
    // The output is in the execution's event log too, with the task it came from.
    let id = body["id"].as_str().unwrap();
    let events = client
        .get(format!("{base}/v1/executions/{id}/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut outputs: Vec<(String, String)> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|e| e["type"] == "dev.skein.task.output.v1")
        .map(|e| {
            (
                e["data"]["task"].as_str().unwrap().to_string(),
                e["data"]["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    outputs.sort();
    assert_eq!(
        outputs,
        [
            (
                "/do/0/both/fork/branches/0/a".to_string(),
                "from-a\n".to_string()
            ),
            (
                "/do/0/both/fork/branches/1/b".to_string(),
                "from-b\n".to_string()
            )
        ],
        "{events}"
    );
    let hello: Value = serde_json::from_str(
        &client
            .get(format!("{worker_url}/hello"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hello["totalTasksExecuted"], 2, "{hello}");

    // A pause through the API stops the task on the worker; a resume continues it.
    let ticker = "document: {dsl: '1.0.3', namespace: test, name: ticker, version: '1.0.0'}
do:
  - tick:
      run: { shell: { command: 'while true; do echo tick; sleep 0.05; done' } }
";
    let (status, _) = call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": ticker, "id": "ticker"})),
    )
    .await;
    assert_eq!(status, 201);
    let task_state = async || -> Value {
        let response = client
            .get(format!("{worker_url}/run/ticker:%2Fdo%2F0%2Ftick"))
            .bearer_auth("wt")
            .send()
            .await
            .unwrap();
        serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null)
    };
    let began = std::time::Instant::now();
    while task_state().await["status"] != "running" {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "the ticker never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (verb, expected) in [("pause", "paused"), ("resume", "running")] {
        let (status, _) = call(
            &client,
            format!("{base}/v1/executions/ticker/{verb}"),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 200, "{verb}");
        let began = std::time::Instant::now();
        while task_state().await["status"] != expected {
            assert!(
                began.elapsed() < Duration::from_secs(1),
                "{verb} did not reach the worker"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    call(
        &client,
        format!("{base}/v1/executions/ticker/cancel"),
        Some(json!({})),
    )
    .await;

    // A cancel through the API reaches the worker at once: the process dies within a
    // second.
    let pid_file = dir.path().join("pid");
    let workflow = format!(
        "document: {{dsl: '1.0.3', namespace: test, name: long, version: '1.0.0'}}
do:
  - long:
      run: {{ shell: {{ command: 'echo $$ > {}; sleep 30' }} }}
",
        pid_file.display()
    );
    let (status, _) = call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "id": "long"})),
    )
    .await;
    assert_eq!(status, 201);
    let began = std::time::Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            break nix::unistd::Pid::from_raw(pid);
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "the task never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let alive = |pid: nix::unistd::Pid| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    };
    assert!(alive(pid));
    let cancelled_at = std::time::Instant::now();
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions/long/cancel"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    while alive(pid) {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(1),
            "the worker's process outlived the cancel by a second: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_counts_every_attempt_and_progress_follows_to_the_end() {
    use super::server::{background, call, free_port, healthy};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The embedded worker: nothing but the server.
    let _server = background(&["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    // A fixed amount of work (about 0.3 s of CPU here, whatever else runs) per attempt;
    // the first attempt then fails.
    let marker = dir.path().join("marker");
    let workflow = format!(
        "document: {{dsl: '1.0.3', namespace: test, name: costly, version: '1.0.0'}}
do:
  - work:
      try:
        - burn:
            run:
              shell:
                command: >-
                  i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done;
                  if [ -f {m} ]; then echo ok; else touch {m}; exit 3; fi
      catch:
        retry:
          delay: {{ milliseconds: 10 }}
          limit: {{ attempt: {{ count: 2 }} }}
",
        m = marker.display()
    );
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions?wait=30s"),
        Some(json!({"workflow": workflow, "id": "costly"})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("completed")),
        "{body}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["exec", "--json", "cost", "costly"])
        .env("SKEIN_SERVER", &base)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cost: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (cost["attempts"].as_u64(), cost["failedAttempts"].as_u64()),
        (Some(2), Some(1)),
        "{cost}"
    );
    let item = |name: &str| {
        cost["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["item"] == name)
            .unwrap()
            .clone()
    };
    let cpu = item("vCPU-seconds")["quantity"].as_f64().unwrap();
    assert!(
        (0.35..5.0).contains(&cpu),
        "both attempts' CPU is counted: {cost}"
    );
    assert!(
        item("GiB-seconds")["quantity"].as_f64().unwrap() > 0.0,
        "{cost}"
    );
    assert_eq!(item("requests")["quantity"], 2.0);
    assert!(cost["total"].as_f64().unwrap() > 0.0);

    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["exec", "progress", "costly"])
        .env("SKEIN_SERVER", &base)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("completed"),
        "{text}"
    );
    assert!(text.contains("1 retries"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_on_a_killed_worker_runs_again_on_another() {
    use super::server::{background, call, free_port, healthy};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let spawn_worker = |port: u16| {
        background(&["worker", "--listen", &format!("127.0.0.1:{port}")])
            .spawn()
            .unwrap()
    };
    let ports = [free_port(), free_port()];
    let mut workers = [spawn_worker(ports[0]), spawn_worker(ports[1])];
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = background(&["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--worker", &urls.join(",")])
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: once, version: '1.0.0'}
do:
  - work:
      run: { shell: { command: 'sleep 1; echo done' } }
";
    let (status, _) = call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "id": "w"})),
    )
    .await;
    assert_eq!(status, 201);
    // Find the worker running it, and kill that worker outright.
    let began = std::time::Instant::now();
    let busy = loop {
        let mut busy = None;
        for (i, url) in urls.iter().enumerate() {
            if let Ok(r) = client.get(format!("{url}/hello")).send().await {
                let hello: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
                if hello["activeTasks"] == 1 {
                    busy = Some(i);
                }
            }
        }
        if let Some(i) = busy {
            break i;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "no worker took the task"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    workers[busy].kill().await.unwrap();

    // The task runs again on the other worker, and the execution completes.
    let (status, body) = call(&client, format!("{base}/v1/executions/w?wait=30s"), None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("completed")),
        "{body}"
    );
    assert_eq!(body["output"], "done\n");
    let other = &urls[1 - busy];
    let hello: Value = serde_json::from_str(
        &client
            .get(format!("{other}/hello"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hello["totalTasksExecuted"], 1, "{hello}");
}

/// A stand-in for Cloud Run's front end of a private service: it lets a request through
/// to the worker only with a Google ID token for its own URL in
/// `X-Serverless-Authorization` (where Cloud Run's IAM check reads it, leaving
/// `Authorization` to the worker), and streams the worker's answer back.
async fn iam_front(worker: String, expected: String) -> u16 {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::StatusCode;
    use axum::response::Response;
    use futures::TryStreamExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let expected = format!("Bearer {expected}{port}");
    let client = reqwest::Client::new();
    let app = axum::Router::new()
        .fallback(
            move |State((client, worker)): State<(reqwest::Client, String)>, request: Request| {
                let expected = expected.clone();
                async move {
                    let presented = (request.headers().get("x-serverless-authorization"))
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    if presented != expected {
                        return Response::builder()
                            .status(StatusCode::FORBIDDEN)
                            .body(Body::from(format!(
                                "IAM: `{presented}` is not a token for this service"
                            )))
                            .unwrap();
                    }
                    let url = format!("{worker}{}", request.uri());
                    let mut forward = client.request(request.method().clone(), url);
                    for name in ["authorization", "content-type", "last-event-id"] {
                        if let Some(v) = request.headers().get(name) {
                            forward = forward.header(name, v.clone());
                        }
                    }
                    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                        .await
                        .unwrap();
                    let answer = forward.body(body).send().await.unwrap();
                    let mut response = Response::builder().status(answer.status().as_u16());
                    for (k, v) in answer.headers() {
                        response = response.header(k.as_str(), v.as_bytes());
                    }
                    response
                        .body(Body::from_stream(
                            answer.bytes_stream().map_err(std::io::Error::other),
                        ))
                        .unwrap()
                }
            },
        )
        .with_state((client, worker));
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// Workers on Cloud Run kept private by IAM: with --worker-google-id-tokens the server
/// sends a Google ID token for each worker's URL (here from a stand-in metadata server)
/// in X-Serverless-Authorization, beside the worker token; without it the front refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_behind_cloud_run_iam_get_an_id_token_for_their_url() {
    use super::server::{background, call, free_port, healthy};
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The metadata server: an ID token naming its audience.
    let metadata = axum::Router::new().route(
        "/computeMetadata/v1/instance/service-accounts/default/identity",
        axum::routing::get(
            |q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                format!("id-for-{}", q.get("audience").cloned().unwrap_or_default())
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metadata_host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, metadata).await });

    let worker_port = free_port();
    let _worker = background(&["worker", "--listen", &format!("127.0.0.1:{worker_port}")])
        .env("SKEIN_WORKER_TOKEN", "wt")
        .spawn()
        .unwrap();
    let front = iam_front(
        format!("http://127.0.0.1:{worker_port}"),
        "id-for-http://127.0.0.1:".into(),
    )
    .await;
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: private, version: '1.0.0'}
do:
  - hello:
      run: { shell: { command: 'echo behind-iam' } }
";
    let client = reqwest::Client::new();
    for (google, expected) in [(true, "completed"), (false, "faulted")] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut server = background(&["server", "--listen", &format!("127.0.0.1:{port}")]);
        server
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--worker", &format!("http://127.0.0.1:{front}")])
            .env("SKEIN_WORKER_TOKEN", "wt")
            .env("GCE_METADATA_HOST", &metadata_host)
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
        if google {
            server.arg("--worker-google-id-tokens");
        }
        let _server = server.spawn().unwrap();
        healthy(&client, &base).await;
        let (status, body) = call(
            &client,
            format!("{base}/v1/executions?wait=30s"),
            Some(json!({"workflow": workflow})),
        )
        .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (201, Some(expected)),
            "{body}"
        );
        if google {
            assert_eq!(body["output"], "behind-iam\n", "{body}");
        } else {
            assert!(body.to_string().contains("403"), "{body}");
        }
    }
}
