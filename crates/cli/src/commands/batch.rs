//! `skein exec start FILE --batch inputs.jsonl`: one execution per input line, started a
//! few at a time, each with an id derived from the batch so that a repeat is harmless.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::exec::Client;

pub(crate) struct Batch {
    pub(crate) workflow: String,
    pub(crate) inputs: PathBuf,
    /// The ids' prefix; derived from the content when not given.
    pub(crate) id: Option<String>,
    pub(crate) labels: Map<String, Value>,
    pub(crate) max_concurrent: usize,
    pub(crate) dry_run: bool,
    pub(crate) json: bool,
}

/// How one start went.
struct Started {
    line: usize,
    id: String,
    /// `created`, `existing`, `would start`, or `failed: …`.
    outcome: String,
}

pub(crate) async fn start(client: &Client, batch: Batch) -> Result<ExitCode> {
    if batch.max_concurrent == 0 {
        bail!("--max-concurrent must be at least 1");
    }
    let text = std::fs::read_to_string(&batch.inputs)
        .with_context(|| format!("cannot read {}", batch.inputs.display()))?;
    // Every line is read before anything starts: a broken file starts nothing.
    let mut inputs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let input: Value = serde_json::from_str(line).with_context(|| {
            format!("{}:{}: the line is not JSON", batch.inputs.display(), i + 1)
        })?;
        inputs.push((i + 1, input));
    }
    if inputs.is_empty() {
        bail!("{} holds no inputs", batch.inputs.display());
    }
    let prefix = batch.id.clone().unwrap_or_else(|| {
        let mut content = batch.workflow.as_bytes().to_vec();
        content.push(0);
        content.extend_from_slice(text.as_bytes());
        let hex = &objects::sha256_hex(&content)[..12];
        format!("batch-{hex}")
    });
    let results: Vec<Started> = futures::stream::iter(inputs)
        .map(|(line, input)| {
            let id = format!("{prefix}-{line}");
            let body = json!({
                "workflow": batch.workflow,
                "input": input,
                "id": id,
                "labels": batch.labels,
            });
            async move {
                let outcome = if batch.dry_run {
                    "would start".to_string()
                } else {
                    start_one(client, &body).await
                };
                Started { line, id, outcome }
            }
        })
        .buffered(batch.max_concurrent)
        .collect()
        .await;
    let failed = results
        .iter()
        .filter(|r| r.outcome.starts_with("failed"))
        .count();
    if batch.json {
        for r in &results {
            println!(
                "{}",
                json!({"line": r.line, "id": r.id, "outcome": r.outcome})
            );
        }
    } else {
        println!("{:>6}  {:<40} OUTCOME", "LINE", "ID");
        for r in &results {
            println!("{:>6}  {:<40} {}", r.line, r.id, r.outcome);
        }
        let created = results.iter().filter(|r| r.outcome == "created").count();
        eprintln!(
            "{} input{}: {created} started, {} already there, {failed} failed{}",
            results.len(),
            if results.len() == 1 { "" } else { "s" },
            results.iter().filter(|r| r.outcome == "existing").count(),
            if batch.dry_run { " (dry run)" } else { "" },
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn start_one(client: &Client, body: &Value) -> String {
    let request = client
        .request(reqwest::Method::POST, "/v1/executions")
        .header("content-type", "application/json")
        .body(body.to_string());
    match request.send().await {
        Ok(r) if r.status().as_u16() == 201 => "created".into(),
        Ok(r) if r.status().as_u16() == 200 => "existing".into(),
        Ok(r) => {
            let status = r.status();
            let bytes = r.bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            format!(
                "failed: {} ({status})",
                body["message"].as_str().unwrap_or("no message")
            )
        }
        Err(e) => format!("failed: cannot reach the server: {e}"),
    }
}
