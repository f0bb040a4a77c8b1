//! `skein bench --api`: the server's figures through its REST API, measured here and
//! now. W1 start-to-result latency, W2 throughput under concurrent clients, W3 a wide
//! fan-out, each through `POST /v1/executions?wait=…` on a real loopback server; E1 the
//! latency of events to many SSE subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use engine::events::Lifecycle;
use engine::{Engine, SystemClock};
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use serde_json::{Value, json};

/// How the API benchmark runs.
pub(crate) struct Plan {
    pub(crate) runs: usize,
    pub(crate) clients: usize,
    pub(crate) seconds: u64,
    pub(crate) calls: usize,
    pub(crate) subscribers: usize,
    pub(crate) fast: bool,
    /// W1 alone and beside abusive executions, instead of the workloads.
    pub(crate) abuse: bool,
    /// The workloads written in Cloud Workflows syntax.
    pub(crate) cloud_workflows: bool,
}

pub(crate) async fn bench(plan: Plan, noop: &str) -> Result<()> {
    if plan.runs == 0 || plan.clients == 0 || plan.seconds == 0 || plan.calls == 0 {
        bail!("--runs, --clients, --seconds and --calls must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let (store, _) = super::open_journal(dir.path(), plan.fast)?;
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(runtime::Runtime::new()),
        Arc::new(SystemClock),
    ));
    let service = api::Service::new(engine);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    let app = api::app(service.clone());
    tokio::spawn(async move {
        let _ = axum::serve(super::no_delay(listener), app).await;
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    let three = if plan.cloud_workflows {
        three_calls_cloud_workflows(noop)
    } else {
        three_calls(noop)
    };
    let start_body = serde_json::to_vec(&json!({"workflow": three, "input": {}}))?;
    if plan.abuse {
        return super::bench_abuse::bench(&client, &api, &start_body, plan.runs, plan.seconds)
            .await;
    }

    // W1: one at a time, after 20 warm-ups.
    let mut latencies = Vec::with_capacity(plan.runs);
    for i in 0..plan.runs + 20 {
        let began = Instant::now();
        start(&client, &api, start_body.clone()).await?;
        if i >= 20 {
            latencies.push(began.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "W1 sequential latency over {} runs (3 calls each): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        plan.runs,
        pct(0.50),
        pct(0.90),
        pct(0.99)
    );

    // W2: closed-loop clients for a while.
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(plan.seconds);
    let workers: Vec<_> = (0..plan.clients)
        .map(|_| {
            let (client, api, body, done) = (
                client.clone(),
                api.clone(),
                start_body.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < until {
                    start(&client, &api, body.clone()).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let began = Instant::now();
    for worker in workers {
        worker.await??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64();
    println!(
        "W2 throughput, {} clients for {} s: {:.0} completed executions/s",
        plan.clients, plan.seconds, rate
    );

    // W3: one workflow fanning out to every call at once.
    let wide = if plan.cloud_workflows {
        format!(
            "- fan:
    parallel:
      concurrency_limit: {calls}
      for:
        value: i
        range: [0, {last}]
        steps:
          - call:
              call: http.get
              args:
                url: '${{\"{noop}/w/\" + string(i)}}'
",
            calls = plan.calls,
            last = plan.calls - 1
        )
    } else {
        format!(
            "document: {{dsl: '1.0.3', namespace: bench, name: wide, version: '1.0.0'}}
do:
  - fan:
      for: {{ in: '[range({calls})]', concurrency: {calls} }}
      do:
        - call: {{ call: http, with: {{ method: get, endpoint: '${{ \"{noop}/w/\\($item)\" }}' }} }}
",
            calls = plan.calls
        )
    };
    let body = serde_json::to_vec(&json!({"workflow": wide, "input": {}}))?;
    let began = Instant::now();
    start(&client, &api, body).await?;
    println!(
        "W3 fan-out of {} calls at concurrency {}: {:.3} s",
        plan.calls,
        plan.calls,
        began.elapsed().as_secs_f64()
    );
    event_latency(&client, &api, plan.subscribers, Streams::OfExecution).await?;
    event_latency(&client, &api, plan.subscribers, Streams::OfAll).await?;
    let executions = store.count_by_status().await?;
    eprintln!("(executions by status at the end: {executions:?})");
    Ok(())
}

/// Which event streams E1 subscribes to.
#[derive(Clone, Copy, PartialEq)]
enum Streams {
    /// `/v1/executions/{id}/events`.
    OfExecution,
    /// `/v1/events?execution={id}`: the log of all executions, filtered by each client.
    OfAll,
}

/// E1: `subscribers` clients stream the events of one execution of 20 timed steps;
/// each event's latency is from its time in the journal (when the engine recorded it)
/// to its arrival at the client. The execution first waits while the clients connect;
/// only events recorded after all are connected count.
async fn event_latency(
    client: &reqwest::Client,
    api: &str,
    subscribers: usize,
    streams: Streams,
) -> Result<()> {
    let (id, url, label) = match streams {
        Streams::OfExecution => (
            "latency",
            format!("{api}/v1/executions/latency/events"),
            "/v1/executions/{id}/events",
        ),
        Streams::OfAll => (
            "latency-all",
            format!("{api}/v1/events?execution=latency-all"),
            "/v1/events?execution={id}",
        ),
    };
    let steps = "document: {dsl: '1.0.3', namespace: bench, name: ticks, version: '1.0.0'}
do:
  - connecting: { wait: { seconds: 3 } }
  - ticks:
      for: { in: '[range(20)]' }
      do:
        - nap: { wait: { milliseconds: 20 } }
        - tick: { set: { at: '${ $item }' } }
";
    let body = serde_json::to_vec(&json!({"workflow": steps, "input": {}, "id": id}))?;
    let response = client
        .post(format!("{api}/v1/executions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("the E1 execution did not start: {}", response.status());
    }
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let connecting = Instant::now();
    let mut clients = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let response = client
            .get(&url)
            .send()
            .await
            .context("a subscriber could not connect")?;
        let latencies = latencies.clone();
        clients.push(tokio::spawn(async move {
            let mut frames = response.bytes_stream().eventsource();
            while let Some(frame) = frames.next().await {
                let frame = frame?;
                let arrived = jiff::Timestamp::now().as_millisecond();
                if frame.data.is_empty() {
                    continue;
                }
                let event: Value = serde_json::from_str(&frame.data)?;
                let at: jiff::Timestamp = event["time"].as_str().unwrap_or_default().parse()?;
                if event["data"]["task"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("/do/1/ticks"))
                {
                    latencies
                        .lock()
                        .expect("latencies lock")
                        .push((arrived - at.as_millisecond()) as f64);
                }
                if event["type"] == Lifecycle::WorkflowCompleted.as_str() {
                    return anyhow::Ok(());
                }
            }
            anyhow::Ok(())
        }));
    }
    let connect_time = connecting.elapsed();
    for subscriber in clients {
        subscriber.await??;
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies lock"));
    if latencies.is_empty() {
        bail!("no subscriber received an event");
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "E1 event latency, {subscribers} subscribers of {label}, {} deliveries: p50 {:.0} ms, p99 {:.0} ms (record to arrival, 1 ms resolution)",
        latencies.len(),
        pct(0.50),
        pct(0.99)
    );
    if connect_time > Duration::from_millis(2500) {
        eprintln!(
            "(E1: connecting the subscribers took {connect_time:?} of the 3 s wait; the figures may include replays)"
        );
    }
    Ok(())
}

/// W1's and W2's workflow: three sequential calls to the no-op server at `noop`.
pub(crate) fn three_calls(noop: &str) -> String {
    format!(
        "document: {{dsl: '1.0.3', namespace: bench, name: three, version: '1.0.0'}}
do:
  - one: {{ call: http, with: {{ method: get, endpoint: '{noop}/1' }} }}
  - two: {{ call: http, with: {{ method: get, endpoint: '{noop}/2' }} }}
  - three: {{ call: http, with: {{ method: get, endpoint: '{noop}/3' }} }}
"
    )
}

/// W1's and W2's workflow in Cloud Workflows syntax.
fn three_calls_cloud_workflows(noop: &str) -> String {
    format!(
        "- one:
    call: http.get
    args: {{url: '{noop}/1'}}
- two:
    call: http.get
    args: {{url: '{noop}/2'}}
- three:
    call: http.get
    args: {{url: '{noop}/3'}}
"
    )
}

/// Starts an execution and waits for its end; fails unless it completed.
pub(crate) async fn start(client: &reqwest::Client, api: &str, body: Vec<u8>) -> Result<()> {
    let response = client
        .post(format!("{api}/v1/executions?wait=60s"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .context("the API did not answer")?;
    let status = response.status();
    let execution: Value = serde_json::from_slice(&response.bytes().await?)?;
    if !status.is_success() || execution["status"] != "completed" {
        bail!("the benchmark execution did not complete ({status}): {execution}");
    }
    Ok(())
}
