//! `skein exec progress` and `skein exec cost`: what an execution has done so far, and
//! what it cost, from the server's progress counters and the execution's event log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use engine::events::Lifecycle;
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use serde_json::{Value, json};

use super::exec::Client;

/// Follows an execution's progress, a line per change, until it ends.
pub(crate) async fn progress(client: &Client, id: &str, json: bool) -> Result<ExitCode> {
    let path = format!("/v1/executions/{}", super::exec::encode(id));
    let mut last = None;
    loop {
        let execution = client
            .json(client.request(reqwest::Method::GET, &path))
            .await?;
        let status = execution["status"].as_str().unwrap_or_default().to_string();
        let line = if json {
            json!({"status": status, "progress": execution["progress"]}).to_string()
        } else {
            progress_line(&execution)
        };
        if last.as_ref() != Some(&line) {
            println!("{line}");
            last = Some(line);
        }
        if matches!(status.as_str(), "completed" | "faulted" | "cancelled") {
            return Ok(if status == "completed" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn progress_line(execution: &Value) -> String {
    let tasks = &execution["progress"]["tasks"];
    let n = |k: &str| tasks[k].as_u64().unwrap_or(0);
    let mut line = format!(
        "{:<9} tasks {} done, {} running, {} faulted, {} retries",
        execution["status"].as_str().unwrap_or_default(),
        n("completed"),
        n("running"),
        n("faulted"),
        n("retries"),
    );
    for f in execution["progress"]["fanOuts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        line.push_str(&format!(
            "; {} {}/{}",
            f["task"].as_str().unwrap_or_default(),
            f["done"].as_u64().unwrap_or(0),
            f["total"].as_u64().unwrap_or(0)
        ));
    }
    line
}

/// Prices for `skein exec cost`, per unit, in dollars.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct Rates {
    #[serde(default = "Rates::vcpu_second")]
    pub(crate) vcpu_second: f64,
    #[serde(default = "Rates::gib_second")]
    pub(crate) gib_second: f64,
    #[serde(default = "Rates::request")]
    pub(crate) request: f64,
    #[serde(default = "Rates::step")]
    pub(crate) step: f64,
}

/// Cloud Run's and Cloud Workflows' list prices.
impl Rates {
    fn vcpu_second() -> f64 {
        0.000024
    }
    fn gib_second() -> f64 {
        0.0000025
    }
    fn request() -> f64 {
        0.0000004
    }
    fn step() -> f64 {
        0.00001
    }

    pub(crate) fn load(path: Option<&PathBuf>) -> Result<Rates> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the rate card {}", path.display()))?,
            None => "{}".into(),
        };
        serde_saphyr::from_str(&text)
            .context("the rate card is not YAML with vcpu_second, gib_second, request and step")
    }
}

/// What an execution used, from its events: the CPU and memory measured for every
/// metered attempt (each `run` task attempt, and each call to a service that reports its
/// use, such as one built on the SDK), failed and retried ones included; one request per
/// metered attempt; one step per task attempt.
#[derive(Debug, Default)]
pub(crate) struct Costing {
    pub(crate) cpu_seconds: f64,
    pub(crate) memory_gib_seconds: f64,
    pub(crate) attempts: u64,
    pub(crate) failed: u64,
    pub(crate) steps: u64,
}

impl Costing {
    /// Tallies `(type, data)` events.
    pub(crate) fn of<'a>(events: impl Iterator<Item = (&'a str, &'a Value)>) -> Costing {
        let mut c = Costing::default();
        for (type_, data) in events {
            match Lifecycle::parse(type_) {
                Some(Lifecycle::TaskUsage) => {
                    c.cpu_seconds += data["cpuSeconds"].as_f64().unwrap_or(0.0);
                    c.memory_gib_seconds += data["memoryGibSeconds"].as_f64().unwrap_or(0.0);
                    c.attempts += 1;
                    // An exit code of 0, or an HTTP status of 2xx, is a success.
                    let code = data["code"].as_i64();
                    c.failed += u64::from(!matches!(code, Some(0) | Some(200..=299)));
                }
                Some(Lifecycle::TaskStarted) => c.steps += 1,
                _ => {}
            }
        }
        c
    }

    /// `(item, quantity, rate)`, in the order they are printed.
    pub(crate) fn items(&self, rates: &Rates) -> [(&'static str, f64, f64); 4] {
        [
            ("vCPU-seconds", self.cpu_seconds, rates.vcpu_second),
            ("GiB-seconds", self.memory_gib_seconds, rates.gib_second),
            ("requests", self.attempts as f64, rates.request),
            ("steps", self.steps as f64, rates.step),
        ]
    }

    pub(crate) fn total(&self, rates: &Rates) -> f64 {
        self.items(rates).iter().map(|(_, q, r)| q * r).sum()
    }
}

/// Prices an execution from its event log (see [`Costing`]).
pub(crate) async fn cost(client: &Client, id: &str, rates: Rates, json: bool) -> Result<ExitCode> {
    let path = format!(
        "/v1/executions/{}/events?follow=false",
        super::exec::encode(id)
    );
    let response = client
        .request(reqwest::Method::GET, &path)
        .send()
        .await
        .with_context(|| "cannot reach the server")?;
    if !response.status().is_success() {
        let status = response.status();
        return Err(super::exec::refusal(status, &response.bytes().await?));
    }
    let mut frames = response.bytes_stream().eventsource();
    let mut events = Vec::new();
    while let Some(frame) = frames.next().await {
        let frame = frame.context("the event stream broke")?;
        if frame.data.is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(&frame.data).context("an event is not JSON")?;
        let type_ = event["type"].as_str().unwrap_or_default().to_string();
        events.push((type_, event["data"].clone()));
    }
    let costing = Costing::of(events.iter().map(|(t, d)| (t.as_str(), d)));
    let items = costing.items(&rates);
    let total = costing.total(&rates);
    if json {
        let lines: Vec<Value> = items
            .iter()
            .map(|(item, quantity, rate)| {
                json!({"item": item, "quantity": quantity, "rate": rate, "cost": quantity * rate})
            })
            .collect();
        println!(
            "{}",
            json!({"items": lines, "total": total, "attempts": costing.attempts, "failedAttempts": costing.failed})
        );
    } else {
        println!(
            "{:<14} {:>14} {:>12} {:>14}",
            "ITEM", "QUANTITY", "RATE", "COST"
        );
        for (item, quantity, rate) in items {
            println!(
                "{item:<14} {quantity:>14.3} {:>12} {:>14}",
                format!("${rate}"),
                format!("${:.7}", quantity * rate)
            );
        }
        println!(
            "{:<14} {:>14} {:>12} {:>14}",
            "total",
            "",
            "",
            format!("${total:.7}")
        );
        eprintln!(
            "({} metered attempt{}, {} of them failed, all counted)",
            costing.attempts,
            if costing.attempts == 1 { "" } else { "s" },
            costing.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}
