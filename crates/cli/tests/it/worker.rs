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
