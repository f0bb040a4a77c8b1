//! The worker against a real server on a loopback port, running real processes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Running {
    base: String,
    worker: Arc<worker::Worker>,
    client: reqwest::Client,
}

async fn serve(options: worker::Options) -> Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let worker = worker::Worker::new(options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = worker::app(worker.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Running {
        base,
        worker,
        client: reqwest::Client::new(),
    }
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, response.json().await.unwrap(), headers)
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// The task's events after `after`, to its end: `(seq, kind, data)`.
    async fn events(&self, id: &str, after: Option<u64>) -> Vec<(u64, String, Value)> {
        let mut request = self.client.get(format!("{}/run/{id}/events", self.base));
        if let Some(after) = after {
            request = request.header("last-event-id", after.to_string());
        }
        let text = tokio::time::timeout(Duration::from_secs(20), async {
            request.send().await.unwrap().text().await.unwrap()
        })
        .await
        .expect("the stream ends with the task");
        text.split("\n\n")
            .filter_map(|frame| {
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_string()))
                };
                Some((
                    field("id:")?.parse().unwrap(),
                    field("event:")?,
                    serde_json::from_str(&field("data:")?).unwrap(),
                ))
            })
            .collect()
    }

    async fn start(&self, body: Value) -> String {
        let (status, body, _) = self.post("/run", body).await;
        assert_eq!(status, 202, "{body}");
        body["id"].as_str().unwrap().to_string()
    }
}

fn stdout_of(events: &[(u64, String, Value)], stream: &str) -> String {
    events
        .iter()
        .filter(|(_, kind, data)| kind == "output" && data["stream"] == stream)
        .map(|(_, _, data)| data["text"].as_str().unwrap())
        .collect()
}

fn exit_of(events: &[(u64, String, Value)]) -> Value {
    let (_, kind, data) = events.last().expect("an exit event");
    assert_eq!(kind, "exit");
    data.clone()
}

fn sh(script: &str) -> Value {
    json!({"command": "sh", "args": ["-c", script]})
}

#[tokio::test]
async fn a_task_streams_its_output_and_exit_and_replays_from_an_id() {
    let running = serve(worker::Options::default()).await;
    let hello = running.get("/hello").await;
    assert_eq!(
        (hello["status"].as_str(), hello["activeTasks"].as_u64()),
        (Some("available"), Some(0))
    );
    let pty = running.get("/pty/status").await;
    assert_eq!(pty["streamingType"], "sse");

    let mut body =
        sh("for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; read x; echo got $x; exit 3");
    body["stdin"] = json!("input\n");
    let id = running.start(body).await;
    let events = running.events(&id, None).await;
    assert_eq!(
        stdout_of(&events, "stdout"),
        "line 1\nline 2\nline 3\nline 4\nline 5\ngot input\n"
    );
    assert_eq!(stdout_of(&events, "stderr"), "oops\n");
    let exit = exit_of(&events);
    assert_eq!(
        (exit["status"].as_str(), exit["code"].as_i64()),
        (Some("exited"), Some(3))
    );
    let seqs: Vec<u64> = events.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());

    // A reconnect with the id of the second event gets the rest, and nothing before.
    let rest = running.events(&id, Some(2)).await;
    assert_eq!(rest, events[2..].to_vec());

    let state = running.get(&format!("/run/{id}")).await;
    assert_eq!(
        (state["status"].as_str(), state["exit"]["code"].as_i64()),
        (Some("ended"), Some(3))
    );
    assert_eq!(running.get("/hello").await["totalTasksExecuted"], 1);

    // Bad requests say what was wrong.
    for (body, needle) in [
        (json!({}), "`command`"),
        (json!({"command": "true", "prompt": "hi"}), "not both"),
        (json!({"prompt": "hi"}), "--agent-command"),
        (
            json!({"command": "true", "timeoutSeconds": -1}),
            "timeoutSeconds",
        ),
        (json!({"command": "true", "colour": "red"}), "colour"),
    ] {
        let (status, answer, _) = running.post("/run", body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
    let missing = running
        .client
        .get(format!("{}/run/nope/events", running.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn at_capacity_a_task_gets_429_and_the_same_id_finds_the_running_one() {
    let running = serve(worker::Options::default()).await;
    let mut body = sh("sleep 30");
    body["id"] = json!("long/1");
    let id = running.start(body.clone()).await;
    assert_eq!(id, "long/1");
    assert_eq!(running.get("/hello").await["status"], "busy");

    let (status, answer, headers) = running.post("/run", sh("true")).await;
    assert_eq!((status, answer["error"].as_str()), (429, Some("busy")));
    assert_eq!(headers["retry-after"], "1");
    let (status, again, _) = running.post("/run", body).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("running")));
    // /metrics counts the refusal and the running task, without a token.
    let metrics = (running
        .client
        .get(format!("{}/metrics", running.base))
        .send()
        .await)
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "skein_worker_tasks_running 1",
        "skein_worker_tasks_refused_total 1",
        "skein_worker_slots 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    let health = (running
        .client
        .get(format!("{}/healthz", running.base))
        .send()
        .await)
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // Cancelled, it is gone within a second, its whole process group with it.
    let began = Instant::now();
    let (status, state, _) = running
        .post(&format!("/run/{}/cancel", "long%2F1"), json!({}))
        .await;
    assert_eq!(status, 200, "{state}");
    assert!(began.elapsed() < Duration::from_secs(1));
    assert_eq!(state["exit"]["status"], "cancelled");
    running.start(sh("true")).await;
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group_at_once() {
    let running = serve(worker::Options::default()).await;
    let id = running.start(sh("sleep 30 & echo $!; wait")).await;
    // The background child's pid, once printed.
    let mut response = running
        .client
        .get(format!("{}/run/{id}/events", running.base))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let pid = loop {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no output: {text:?}"))
            .unwrap()
            .expect("more output");
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) {
            let data: Value = serde_json::from_str(data).unwrap();
            break data["text"].as_str().unwrap().trim().parse::<i32>().ok();
        }
    };
    let pid = nix::unistd::Pid::from_raw(pid.expect("the child's pid"));
    // Dead: gone, or a zombie left for init to reap (this container's init may not).
    let alive = |pid: nix::unistd::Pid| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    };
    assert!(alive(pid), "the child runs");
    let began = Instant::now();
    let (status, state, _) = running.post(&format!("/run/{id}/cancel"), json!({})).await;
    assert_eq!(
        (status, state["exit"]["status"].as_str()),
        (200, Some("cancelled"))
    );
    // Killed with the group: gone (reaped by init) within the second.
    while alive(pid) {
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "the child outlived the cancel"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn secrets_are_masked_and_the_worker_s_environment_stays_out() {
    let options = worker::Options {
        env: [("API_KEY".to_string(), "sekret-value-42".to_string())].into(),
        secrets: vec!["sekret-value-42".into()],
        ..Default::default()
    };
    let running = serve(options).await;
    let mut body = sh("echo key=$API_KEY; echo mine=$MINE; env");
    body["env"] = json!({"MINE": "given"});
    let id = running.start(body).await;
    let events = running.events(&id, None).await;
    let out = stdout_of(&events, "stdout");
    assert!(out.starts_with("key=***\nmine=given\n"), "{out}");
    assert!(!out.contains("sekret-value-42"), "{out}");
    // cargo sets CARGO_* for this test process; the task sees none of it.
    assert!(!out.contains("CARGO"), "{out}");
    assert!(out.contains("PATH="), "{out}");
}

#[tokio::test]
async fn a_token_guards_the_tasks_but_not_the_health() {
    let hash = ring::digest::digest(&ring::digest::SHA256, b"worker-token");
    let running = serve(worker::Options {
        token_sha256: Some(hash.as_ref().try_into().unwrap()),
        ..Default::default()
    })
    .await;
    running.get("/hello").await;
    let (status, body, _) = running.post("/run", sh("true")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let response = running
        .client
        .post(format!("{}/run", running.base))
        .bearer_auth("worker-token")
        .json(&sh("true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

#[tokio::test]
async fn limits_time_out_truncate_and_prompts_go_to_the_agent() {
    let running = serve(worker::Options {
        concurrency: 4,
        max_output_bytes: 100,
        agent_command: Some(vec!["echo".into(), "agent:".into()]),
        ..Default::default()
    })
    .await;
    let mut body = sh("sleep 10");
    body["timeoutSeconds"] = json!(0.3);
    let slow = running.start(body).await;
    let chatty = running
        .start(sh("for i in $(seq 100); do echo line $i; done"))
        .await;
    let prompt = running.start(json!({"prompt": "do the thing"})).await;

    let events = running.events(&slow, None).await;
    assert_eq!(exit_of(&events)["status"], "timedOut");
    let events = running.events(&chatty, None).await;
    assert!(events.iter().any(|(_, kind, _)| kind == "truncated"));
    assert!(stdout_of(&events, "stdout").len() <= 100);
    assert_eq!(exit_of(&events)["code"], 0);
    let events = running.events(&prompt, None).await;
    assert_eq!(stdout_of(&events, "stdout"), "agent: do the thing\n");
}

#[tokio::test]
async fn a_shutdown_lets_short_tasks_finish_and_kills_the_rest() {
    let running = serve(worker::Options {
        concurrency: 2,
        ..Default::default()
    })
    .await;
    let short = running.start(sh("sleep 0.2; echo done")).await;
    let long = running.start(sh("sleep 30")).await;
    let report = running.worker.shutdown(Duration::from_millis(800)).await;
    assert_eq!(
        report,
        worker::Shutdown {
            finished: 1,
            killed: 1
        }
    );
    assert_eq!(exit_of(&running.events(&short, None).await)["code"], 0);
    assert_eq!(
        exit_of(&running.events(&long, None).await)["status"],
        "killed"
    );
    let (status, body, _) = running.post("/run", sh("true")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("shutting_down"))
    );
}

#[tokio::test]
async fn a_task_can_run_in_a_pseudo_terminal() {
    let running = serve(worker::Options::default()).await;
    let mut body = sh("test -t 1 && echo is-a-terminal; read x; echo got $x; sleep 30 & wait");
    body["pty"] = json!(true);
    body["stdin"] = json!("hello\n");
    let id = running.start(body).await;
    // Output arrives while the task runs.
    let mut response = running
        .client
        .get(format!("{}/run/{id}/events", running.base))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("got hello") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no output: {seen:?}"))
            .unwrap()
            .expect("more output");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("is-a-terminal"), "{seen:?}");
    // A cancel kills it, terminal and all.
    let (status, state, _) = running.post(&format!("/run/{id}/cancel"), json!({})).await;
    assert_eq!(
        (status, state["exit"]["status"].as_str()),
        (200, Some("cancelled"))
    );
}

#[tokio::test]
async fn a_paused_task_stops_and_a_resumed_one_goes_on() {
    let running = serve(worker::Options::default()).await;
    let id = running
        .start(sh(
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done",
        ))
        .await;
    let count = async |running: &Running| {
        running.get(&format!("/run/{id}")).await["events"]
            .as_u64()
            .unwrap()
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, state, _) = running.post(&format!("/run/{id}/pause"), json!({})).await;
    assert_eq!((status, state["status"].as_str()), (200, Some("paused")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let paused_at = count(&running).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count(&running).await, paused_at, "output while paused");

    let (_, state, _) = running.post(&format!("/run/{id}/resume"), json!({})).await;
    assert_eq!(state["status"], "running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        count(&running).await > paused_at + 3,
        "no output after the resume"
    );
    // Paused and then cancelled: still killed at once.
    running.post(&format!("/run/{id}/pause"), json!({})).await;
    let (_, state, _) = running.post(&format!("/run/{id}/cancel"), json!({})).await;
    assert_eq!(state["exit"]["status"], "cancelled");
    let kinds: Vec<String> = running
        .events(&id, None)
        .await
        .into_iter()
        .map(|(_, kind, _)| kind)
        .filter(|k| k != "output")
        .collect();
    assert_eq!(kinds, ["paused", "resumed", "paused", "exit"]);
}

#[tokio::test]
async fn the_exit_reports_what_the_task_used() {
    let running = serve(worker::Options::default()).await;
    // A fixed amount of work (about 0.3 s of CPU here) in a child of the shell, which the
    // shell reaps.
    let id = running
        .start(sh(
            "sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'; sleep 0.2",
        ))
        .await;
    let exit = exit_of(&running.events(&id, None).await);
    let usage = &exit["usage"];
    let cpu = usage["cpuSeconds"].as_f64().unwrap();
    assert!((0.2..5.0).contains(&cpu), "{exit}");
    assert!(usage["memoryGibSeconds"].as_f64().unwrap() > 0.0, "{exit}");
    assert!(usage["peakRssBytes"].as_u64().unwrap() > 100_000, "{exit}");
    // A sleeping task uses next to no CPU.
    let id = running.start(sh("sleep 0.5")).await;
    let exit = exit_of(&running.events(&id, None).await);
    assert!(
        exit["usage"]["cpuSeconds"].as_f64().unwrap() < 0.1,
        "{exit}"
    );
}
