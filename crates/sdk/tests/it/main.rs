//! A service built with the SDK, on a real loopback server, driven by a real client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

#[derive(serde::Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Debug)]
struct PlanMismatch;

impl std::fmt::Display for PlanMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the plan hash does not match")
    }
}

impl std::error::Error for PlanMismatch {}

/// Log lines, shared with the test.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Running {
    base: String,
    client: reqwest::Client,
    calls: Arc<AtomicUsize>,
    logs: Lines,
}

async fn serve() -> Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let calls = Arc::new(AtomicUsize::new(0));
    let logs = Lines::default();
    let counted = calls.clone();
    let service = sdk::Service::new("calc")
        .action("add", |_ctx, input: Add| async move {
            Ok(json!({"sum": input.a + input.b}))
        })
        .action("slow", move |ctx: sdk::Context, _: Value| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                ctx.add_cpu_seconds(0.25);
                ctx.log(sdk::Severity::Info, "working");
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(json!({"done": true}))
            }
        })
        .action("mismatch", |_ctx, _: Value| async move {
            Err::<Value, _>(anyhow::Error::new(PlanMismatch))
        })
        .action("flaky", |_ctx, _: Value| async move {
            Err::<Value, _>(anyhow::anyhow!("the bucket timed out"))
        })
        .non_retryable(|e| {
            e.downcast_ref::<PlanMismatch>()
                .map(|_| "plan_mismatch".to_string())
        })
        .log_to(logs.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = service.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Running {
        base,
        client: reqwest::Client::new(),
        calls,
        logs,
    }
}

impl Running {
    async fn post(&self, body: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str(&response.text().await.unwrap()).unwrap(),
        )
    }
}

#[tokio::test]
async fn actions_dispatch_through_envelopes_and_errors_split_by_one_classifier() {
    let running = serve().await;
    let add = json!({"action": "add", "a": 2, "b": 3});
    for body in [
        add.clone(),
        json!({"Payload": add}),
        json!({"Input": {"Payload": {"payload": {"input": add}}}}),
        // Envelopes may hold their content as JSON text.
        json!({"Payload": add.to_string()}),
    ] {
        let (status, reply) = running.post(&body.to_string(), None).await;
        assert_eq!((status, reply.clone()), (200, json!({"sum": 5})), "{body}");
    }

    let mut deep = add.clone();
    for _ in 0..5 {
        deep = json!({ "Payload": deep });
    }
    for (body, error, needle) in [
        (deep.to_string(), "malformed_body", "more than 4"),
        ("{not json".to_string(), "malformed_body", "not JSON"),
        (json!({"a": 1}).to_string(), "malformed_body", "`action`"),
        (
            json!({"action": "divide"}).to_string(),
            "unknown_action",
            "divide",
        ),
        (
            json!({"action": "add", "a": "x"}).to_string(),
            "invalid_input",
            "`add`",
        ),
        (
            json!({"action": "mismatch"}).to_string(),
            "plan_mismatch",
            "plan hash",
        ),
    ] {
        let (status, reply) = running.post(&body, None).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(error)),
            "{body}: {reply}"
        );
        assert!(
            reply["message"].as_str().unwrap().contains(needle),
            "{reply}"
        );
    }
    // Anything the classifier does not name is worth retrying.
    let (status, reply) = running
        .post(&json!({"action": "flaky"}).to_string(), None)
        .await;
    assert_eq!((status, reply["error"].as_str()), (500, Some("internal")));

    let health: Value = serde_json::from_str(
        &running
            .client
            .get(format!("{}/healthz", running.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        health["actions"],
        json!(["add", "flaky", "mismatch", "slow"])
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_gets_the_stored_reply_without_the_work() {
    let running = serve().await;
    let slow = json!({"action": "slow"}).to_string();
    // Two at once and one after: the work is done once, and reported once.
    let key = "exec-1:/do/0/render#1";
    let send = || {
        running
            .client
            .post(format!("{}/", running.base))
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(slow.clone())
            .send()
    };
    let (first, second) = tokio::join!(send(), send());
    let third = send().await;
    let mut usage = Vec::new();
    for reply in [first, second, third] {
        let reply = reply.unwrap();
        usage.push(
            reply
                .headers()
                .get(sdk::USAGE_HEADER)
                .map(|v| v.to_str().unwrap().to_string()),
        );
        assert_eq!(reply.status().as_u16(), 200);
        assert_eq!(
            serde_json::from_str::<Value>(&reply.text().await.unwrap()).unwrap(),
            json!({"done": true})
        );
    }
    usage.sort();
    assert_eq!(
        usage,
        [None, None, Some("cpu-seconds=0.250000".to_string())]
    );
    assert_eq!(running.calls.load(Ordering::SeqCst), 1);
    // Another key is other work.
    running.post(&slow, Some("exec-1:/do/0/render#2")).await;
    assert_eq!(running.calls.load(Ordering::SeqCst), 2);

    // A retryable failure is not stored: the next request tries again (and fails again).
    let flaky = json!({"action": "flaky"}).to_string();
    let key = Some("exec-2:/do/1/x");
    assert_eq!(running.post(&flaky, key).await.0, 500);
    assert_eq!(running.post(&flaky, key).await.0, 500);

    // The logs are JSON lines with a severity and the ids from the key.
    let text = String::from_utf8(running.logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let working: Vec<&Value> = lines.iter().filter(|l| l["message"] == "working").collect();
    assert_eq!(working.len(), 2);
    assert_eq!(
        (
            working[0]["severity"].as_str(),
            working[0]["executionId"].as_str(),
            working[0]["task"].as_str(),
            working[0]["service"].as_str()
        ),
        (
            Some("INFO"),
            Some("exec-1"),
            Some("/do/0/render#1"),
            Some("calc")
        )
    );
    assert!(
        lines
            .iter()
            .any(|l| l["severity"] == "ERROR" && l["executionId"] == "exec-2"),
        "{text}"
    );
}
