//! `skein exec schedules`: create, list, read, pause, resume and delete the schedules
//! of a running `skein server` (`/v1/schedules`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::exec::{Client, encode};

// Parsed once per process: the size of `Create` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Create a schedule: it starts a workflow file or a named workflow (--workflow-ref)
    /// at every DURATION, at the times of a cron expression, or DURATION after each run
    /// ends. Each execution's id is the schedule's id and the slot's time, so a slot
    /// never starts twice.
    Create {
        id: String,
        /// The workflow (YAML or JSON), or give --workflow-ref.
        #[arg(
            required_unless_present = "workflow_ref",
            conflicts_with = "workflow_ref"
        )]
        file: Option<PathBuf>,
        /// A named workflow: NAME (its latest revision at each start) or NAME@REVISION.
        #[arg(long, value_name = "NAME[@REVISION]")]
        workflow_ref: Option<String>,
        /// Each execution's input: JSON text, or @FILE.
        #[arg(long, value_name = "JSON|@FILE")]
        input: Option<String>,
        /// A label of each execution: NAME=VALUE. Repeatable.
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
        /// Start at every multiple of this duration (such as 30s, 5m, 1h).
        #[arg(long, value_name = "DURATION", required_unless_present_any = ["cron", "after", "on"])]
        every: Option<String>,
        /// Start at the times of a cron expression: 5 fields (`0 9 * * 1-5`), or 6 with
        /// seconds first.
        #[arg(long, value_name = "EXPR", conflicts_with_all = ["every", "after"])]
        cron: Option<String>,
        /// The cron expression's time zone, such as Europe/Paris (UTC by default).
        #[arg(long, value_name = "ZONE", requires = "cron")]
        timezone: Option<String>,
        /// Start again this long after the previous execution ended.
        #[arg(long, value_name = "DURATION", conflicts_with = "every")]
        after: Option<String>,
        /// Start on events posted with `skein exec publish`: JSON such as
        /// '{"one": {"with": {"type": "order.placed"}}}' (also "any" or "all" with a list).
        #[arg(long, value_name = "JSON", conflicts_with_all = ["every", "cron", "after"])]
        on: Option<String>,
        /// Slots missed while no server ran: skip (only one at most a minute late), one
        /// (the latest), all (up to --catchup-limit).
        #[arg(long, default_value = "skip", value_parser = ["skip", "one", "all"])]
        catchup: String,
        /// With --catchup all: the most missed slots started.
        #[arg(long, value_name = "N")]
        catchup_limit: Option<u32>,
        /// A slot while the previous execution runs: skip, buffer (the latest waits for
        /// it), allow.
        #[arg(long, default_value = "skip", value_parser = ["skip", "buffer", "allow"])]
        overlap: String,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    /// List the schedules.
    List,
    /// Show a schedule: its trigger, policies, counts and next times.
    Get { id: String },
    /// Pause a schedule: it starts nothing until resumed.
    Pause { id: String },
    /// Resume a schedule; slots that passed while it was paused are not caught up.
    Resume { id: String },
    /// Delete a schedule; the executions it started go on.
    Delete { id: String },
}

pub(crate) async fn run(client: &Client, command: Command, json: bool) -> Result<ExitCode> {
    let schedule = match command {
        Command::Create {
            id,
            file,
            workflow_ref,
            input,
            labels,
            every,
            cron,
            timezone,
            after,
            on,
            catchup,
            catchup_limit,
            overlap,
            paused,
        } => {
            let mut label_map = serde_json::Map::new();
            for pair in &labels {
                let Some((name, value)) = pair.split_once('=') else {
                    bail!("--label `{pair}` is not NAME=VALUE");
                };
                label_map.insert(name.into(), Value::String(value.into()));
            }
            let workflow = match &file {
                Some(file) => Some(
                    std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                ),
                None => None,
            };
            let mut body = json!({
                "id": id,
                "labels": label_map,
                "catchup": catchup,
                "overlap": overlap,
                "paused": paused,
            });
            let fields = [
                ("workflow", workflow.map(Value::String)),
                ("workflowRef", workflow_ref.map(Value::String)),
                (
                    "input",
                    input
                        .map(|i| super::run::parse_input(Some(&i)))
                        .transpose()?,
                ),
                ("every", every.map(Value::String)),
                ("cron", cron.map(Value::String)),
                ("timezone", timezone.map(Value::String)),
                ("after", after.map(Value::String)),
                ("catchupLimit", catchup_limit.map(Value::from)),
                (
                    "on",
                    on.map(|text| serde_json::from_str::<Value>(&text))
                        .transpose()
                        .context("--on is not JSON")?,
                ),
            ];
            for (name, value) in fields {
                if let Some(value) = value {
                    body[name] = value;
                }
            }
            let request = client
                .request(reqwest::Method::POST, "/v1/schedules")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body)?);
            client.json(request).await?
        }
        Command::List => {
            let list = client
                .json(client.request(reqwest::Method::GET, "/v1/schedules"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<24} {:<8} {:<26} {:>8} NEXT",
                    "ID", "STATE", "WHEN", "STARTED"
                );
                for s in list["schedules"].as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:<8} {:<26} {:>8} {}",
                        s["id"].as_str().unwrap_or_default(),
                        if s["paused"] == true {
                            "paused"
                        } else {
                            "active"
                        },
                        when(s),
                        s["started"],
                        s["upcoming"][0].as_str().unwrap_or("-"),
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Get { id } => {
            let path = format!("/v1/schedules/{}", encode(&id));
            client
                .json(client.request(reqwest::Method::GET, &path))
                .await?
        }
        Command::Pause { id } => steer(client, &id, "pause").await?,
        Command::Resume { id } => steer(client, &id, "resume").await?,
        Command::Delete { id } => {
            client
                .delete(&format!("/v1/schedules/{}", encode(&id)))
                .await?;
            println!("schedule `{id}` deleted");
            return Ok(ExitCode::SUCCESS);
        }
    };
    show(&schedule, json)?;
    Ok(ExitCode::SUCCESS)
}

async fn steer(client: &Client, id: &str, verb: &str) -> Result<Value> {
    let path = format!("/v1/schedules/{}/{verb}", encode(id));
    client
        .json(client.request(reqwest::Method::POST, &path))
        .await
}

/// The trigger in a few words.
fn when(s: &Value) -> String {
    if let Some(every) = s["every"].as_str() {
        format!("every {every}")
    } else if let Some(cron) = s["cron"].as_str() {
        match s["timezone"].as_str() {
            Some(tz) => format!("cron {cron} {tz}"),
            None => format!("cron {cron}"),
        }
    } else if let Some(after) = s["after"].as_str() {
        format!("{after} after each run")
    } else if s["on"].is_object() {
        format!("on events {}", s["on"])
    } else {
        "-".into()
    }
}

fn show(s: &Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    println!("schedule   {}", s["id"].as_str().unwrap_or_default());
    println!(
        "starts     {}",
        s["workflowRef"].as_str().map_or_else(
            || "an inline workflow".to_string(),
            |r| format!("workflow {r}")
        )
    );
    println!("when       {}", when(s));
    println!(
        "policies   catch-up {}, overlap {}",
        s["catchup"].as_str().unwrap_or_default(),
        s["overlap"].as_str().unwrap_or_default()
    );
    println!(
        "state      {}, {} started, {} skipped",
        if s["paused"] == true {
            "paused"
        } else {
            "active"
        },
        s["started"],
        s["skipped"]
    );
    if let Some(last) = s["lastExecution"].as_str() {
        println!("last       {last}");
    }
    if let Some(error) = s["lastError"].as_str() {
        println!("last error {error}");
    }
    for (i, t) in s["upcoming"].as_array().into_iter().flatten().enumerate() {
        let label = if i == 0 { "next" } else { "" };
        println!("{label:<10} {}", t.as_str().unwrap_or_default());
    }
    Ok(())
}
