//! `skein bench --api --abuse`: what runaway workflows cost everybody else. W1 (one
//! execution of three HTTP calls at a time) is measured alone, then again while
//! clients keep starting abusive executions beside it (one of each kind at a time, at
//! most ten a second): each of the expressions that once took a server down, and a
//! loop of a million `set` tasks. It reports W1's
//! latency both ways, how long each abuse took to fault and with what, and the
//! process's memory above idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::bench_api::start;

/// The abuses: a name and the task list of a workflow that does it.
const ABUSES: [(&str, &str); 7] = [
    (
        "endless generator",
        "  - a: { set: { n: '${ [limit(1000000000; repeat(1))] | length }' } }\n",
    ),
    (
        "huge range",
        "  - a: { set: { n: '${ [range(0; 100000000)] | length }' } }\n",
    ),
    (
        "deep nesting",
        "  - a: { set: { n: '${ reduce range(1000000) as $i (null; [.]) }' } }\n",
    ),
    (
        "huge string",
        "  - a: { set: { n: '${ \"x\" * 1000000000 | length }' } }\n",
    ),
    (
        "doubling string",
        "  - a: { set: { n: '${ \"x\" | until(length > 1000000000; . + .) | length }' } }\n",
    ),
    (
        "huge object",
        "  - a: { set: { n: '${ reduce range(0; 10000000) as $i ({}; . + {(\"k\\($i)\"): $i}) | length }' } }\n",
    ),
    (
        "million-task loop",
        "  - a:\n      for: { in: '${ [range(1000000)] }' }\n      do:\n        - b: { set: '${ $item }' }\n",
    ),
];

/// The least time between two starts of one abuse.
const PACE: Duration = Duration::from_millis(100);

/// The resident memory of this process, in bytes (Linux; 0 elsewhere).
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// W1 for `seconds` (or `runs` runs, whichever is more): sorted latencies in ms.
async fn w1(
    client: &reqwest::Client,
    api: &str,
    body: &[u8],
    runs: usize,
    seconds: u64,
) -> Result<Vec<f64>> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut latencies = Vec::new();
    while latencies.len() < runs || Instant::now() < until {
        let began = Instant::now();
        start(client, api, body.to_vec()).await?;
        latencies.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// One abusive execution: how long it took to end, its status and what it said.
struct Outcome {
    seconds: f64,
    status: String,
    said: String,
}

async fn abuse_once(client: &reqwest::Client, api: &str, tasks: &str) -> Result<Outcome> {
    let workflow = format!(
        "document: {{dsl: '1.0.3', namespace: bench, name: abuse, version: '1.0.0'}}\ndo:\n{tasks}"
    );
    let began = Instant::now();
    let response = client
        .post(format!("{api}/v1/executions?wait=300s"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(
            &json!({"workflow": workflow, "input": {}}),
        )?)
        .send()
        .await
        .context("the API did not answer")?;
    let status = response.status();
    let execution: Value = serde_json::from_slice(&response.bytes().await?)?;
    if !status.is_success() {
        anyhow::bail!("the abusive execution was not started ({status}): {execution}");
    }
    let said = execution["error"]["detail"]
        .as_str()
        .or(execution["message"].as_str())
        .unwrap_or_default();
    Ok(Outcome {
        seconds: began.elapsed().as_secs_f64(),
        status: execution["status"].as_str().unwrap_or("?").to_string(),
        said: said.split(" (in `").next().unwrap_or(said).to_string(),
    })
}

pub(crate) async fn bench(
    client: &reqwest::Client,
    api: &str,
    body: &[u8],
    runs: usize,
    seconds: u64,
) -> Result<()> {
    // Warm up, then W1 alone.
    w1(client, api, body, 20, 0).await?;
    let idle = resident();
    let alone = w1(client, api, body, runs, seconds).await?;

    // Abuse: one client per kind, each starting its abuse again as soon as it ends.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(resident(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let abusers: Vec<_> = ABUSES
        .iter()
        .map(|(name, tasks)| {
            let (client, api, stop) = (client.clone(), api.to_string(), stop.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    outcomes.push(abuse_once(&client, &api, tasks).await?);
                    // An abuse, not a flood: at most ten starts a second per kind.
                    tokio::time::sleep(PACE.saturating_sub(began.elapsed())).await;
                }
                anyhow::Ok((*name, outcomes))
            })
        })
        .collect();
    // Let every abuse get going before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let abused = w1(client, api, body, runs, seconds).await?;
    stop.store(true, Ordering::Relaxed);
    eprintln!("(waiting for the abusive executions under way to end)");
    let mut results = Vec::new();
    for abuser in abusers {
        results.push(abuser.await??);
    }
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed).max(resident());

    let row = |what: &str, l: &[f64]| {
        println!(
            "W1 {what:<14} {:>6} runs  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.99),
            l[l.len() - 1]
        )
    };
    row("alone", &alone);
    row("beside abuse", &abused);
    println!(
        "memory: {:.0} MB resident when idle, {:.0} MB at most during the abuse (+{:.0} MB)",
        idle as f64 / 1e6,
        peak as f64 / 1e6,
        peak.saturating_sub(idle) as f64 / 1e6
    );
    for (name, outcomes) in results {
        let mut seconds: Vec<f64> = outcomes.iter().map(|o| o.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        if seconds.is_empty() {
            continue;
        }
        let last = outcomes.last();
        println!(
            "{name:<18} {:>3} executions, ended after median {:.2} s (max {:.2} s): {} — {}",
            outcomes.len(),
            percentile(&seconds, 0.5),
            seconds.last().copied().unwrap_or(0.0),
            last.map_or("?", |o| o.status.as_str()),
            last.map_or("", |o| o.said.as_str()),
        );
    }
    Ok(())
}
