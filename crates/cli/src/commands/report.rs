//! `skein exec progress` and `skein exec cost`: what an execution has done so far, and
//! what it cost, from the server's progress counters and the execution's event log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
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

/// Prices an execution from its event log: the CPU and memory its workers measured for
/// every attempt of every `run` task (failed and retried ones included), one request per
/// attempt, and one step per task attempt.
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
    let text = response.text().await?;
    let (mut cpu, mut memory, mut attempts, mut failed, mut steps) = (0.0, 0.0, 0u64, 0u64, 0u64);
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let event: Value = serde_json::from_str(data).context("an event is not JSON")?;
        match event["type"].as_str().unwrap_or_default() {
            "dev.skein.task.usage.v1" => {
                let d = &event["data"];
                cpu += d["cpuSeconds"].as_f64().unwrap_or(0.0);
                memory += d["memoryGibSeconds"].as_f64().unwrap_or(0.0);
                attempts += 1;
                failed += u64::from(d["code"].as_i64() != Some(0));
            }
            "io.serverlessworkflow.task.started.v1" => steps += 1,
            _ => {}
        }
    }
    let items = [
        ("vCPU-seconds", cpu, rates.vcpu_second),
        ("GiB-seconds", memory, rates.gib_second),
        ("requests", attempts as f64, rates.request),
        ("steps", steps as f64, rates.step),
    ];
    let total: f64 = items.iter().map(|(_, q, r)| q * r).sum();
    if json {
        let lines: Vec<Value> = items
            .iter()
            .map(|(item, quantity, rate)| {
                json!({"item": item, "quantity": quantity, "rate": rate, "cost": quantity * rate})
            })
            .collect();
        println!(
            "{}",
            json!({"items": lines, "total": total, "attempts": attempts, "failedAttempts": failed})
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
            "({attempts} run attempt{}, {failed} of them failed, all counted)",
            if attempts == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
