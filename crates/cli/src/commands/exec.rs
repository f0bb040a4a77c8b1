//! `skein exec`: the client of `skein server`'s REST API, for people and scripts.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use api::wire;
use clap::{Args as ClapArgs, Subcommand};
use engine::events::Lifecycle;
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use serde_json::Value;

/// Start, watch and steer executions on a running `skein server`.
///
/// Tables for people by default; `--json` prints the API's JSON for scripts.
/// Exit status: 0 success, 1 the server refused or failed the request (or, with
/// `start --wait`, the execution did not complete), 2 usage errors.
#[derive(ClapArgs)]
#[command(
    after_help = "Examples:\n  skein exec start examples/hello.yaml --input '{\"name\": \"Ada\"}' --wait\n  skein exec list --status running\n  skein exec events 0199c3e4-… --follow"
)]
pub(crate) struct Args {
    #[command(flatten)]
    remote: Remote,

    #[command(subcommand)]
    command: Command,
}

/// Which server a client command talks to, and how it prints (`exec`, `workflows`).
#[derive(ClapArgs)]
pub(crate) struct Remote {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "SKEIN_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,

    /// A bearer token for the server, if it asks for one.
    #[arg(long, global = true, env = "SKEIN_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Trust this CA certificate (PEM) for an https:// server, beside the system's.
    #[arg(long, global = true, env = "SKEIN_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl Remote {
    pub(crate) fn client(&self) -> Result<Client> {
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &self.ca {
            let pem =
                std::fs::read(ca).with_context(|| format!("cannot read --ca {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("--ca {} is not a PEM certificate", ca.display()))?;
            http = http.add_root_certificate(cert);
        }
        Ok(Client {
            http: http.build().context("the HTTP client")?,
            base: self.server.clone(),
            token: self.token.clone(),
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start an execution of a workflow file, or of a named workflow (--workflow-ref).
    Start {
        /// The workflow (YAML or JSON).
        #[arg(
            required_unless_present = "workflow_ref",
            conflicts_with = "workflow_ref"
        )]
        file: Option<PathBuf>,
        /// A named workflow deployed on the server (`skein workflows deploy`): NAME for
        /// its latest revision, or NAME@REVISION.
        #[arg(long, value_name = "NAME[@REVISION]", conflicts_with = "batch")]
        workflow_ref: Option<String>,
        /// Give the execution this id; the same start again returns the same execution.
        #[arg(long)]
        id: Option<String>,
        /// The workflow input: JSON text, or @FILE.
        #[arg(long, value_name = "JSON|@FILE")]
        input: Option<String>,
        /// A label: NAME=VALUE. Repeatable.
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
        /// Wait for the end (at most this long, such as 30s; 300s when given bare).
        #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "300s", conflicts_with = "batch")]
        wait: Option<String>,
        /// Start one execution per line of this JSON Lines file, each line an input. Their
        /// ids are ID-LINE (ID from --id, else from the SHA-256 of the workflow and the
        /// file), so starting the same batch again starts nothing twice.
        #[arg(long, value_name = "FILE", conflicts_with = "input")]
        batch: Option<PathBuf>,
        /// With --batch: at most this many starts in flight.
        #[arg(long, value_name = "N", default_value_t = 8, requires = "batch")]
        max_concurrent: usize,
        /// With --batch: print what would be started, and start nothing.
        #[arg(long, requires = "batch")]
        dry_run: bool,
    },
    /// Follow an execution's progress (tasks, each fan-out's done/total) until it ends.
    Progress { id: String },
    /// What an execution cost: its workers' CPU and memory for every attempt (failed and
    /// retried ones too), a request per attempt and a step per task, priced by a rate
    /// card (default: Cloud Run's and Cloud Workflows' list prices).
    Cost {
        id: String,
        /// A YAML rate card: vcpu_second, gib_second, request, step (dollars per unit).
        #[arg(long, value_name = "FILE")]
        rates: Option<PathBuf>,
    },
    /// List executions, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        /// The workflow's name.
        #[arg(long)]
        name: Option<String>,
        /// NAME:VALUE.
        #[arg(long)]
        label: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one execution: status, output or error, progress.
    Get { id: String },
    /// Cancel an execution (its running processes are killed).
    Cancel { id: String },
    /// Pause an execution: no new task starts and timers hold until it is resumed.
    Pause { id: String },
    /// Resume a paused execution.
    Resume { id: String },
    /// Print an execution's events; with --follow, keep printing them as they happen.
    Events {
        id: String,
        /// Keep going until the execution ends, reconnecting after a lost connection.
        #[arg(long)]
        follow: bool,
        /// Start after this event.
        #[arg(long, value_name = "N")]
        since_id: Option<u64>,
    },
    /// Deliver a CloudEvent (structured JSON, from FILE or - for stdin) to an execution.
    SendEvent { id: String, file: PathBuf },
    /// Post a CloudEvent (structured JSON, from FILE or - for stdin) to the schedules that
    /// start on events (`skein exec schedules create --on …`); prints what it started.
    Publish { file: PathBuf },
    /// Schedules: start workflows at every DURATION, by cron, after each run ends, or on
    /// events.
    Schedules {
        #[command(subcommand)]
        command: Box<super::schedules::Command>,
    },
    /// Send a signal to an execution: a message its `listen` task (a Zigflow `signal`
    /// filter of that name) takes when it gets there; nothing is answered.
    Signal {
        id: String,
        name: String,
        /// The signal's payload: JSON text, or @FILE. Null when not given.
        #[arg(long, value_name = "JSON|@FILE")]
        data: Option<String>,
    },
    /// Ask a running execution a query (a Zigflow `query` filter of that name): its
    /// answer, computed now from the execution's state.
    Query { id: String, name: String },
    /// Send an update to an execution and print its answer: the listener (a Zigflow
    /// `update` filter of that name) handles it once and replies. Exits 1 if it was not
    /// handled within --wait; send it again with the same --update-id to keep waiting.
    Update {
        id: String,
        name: String,
        /// The update's payload: JSON text, or @FILE. Null when not given.
        #[arg(long, value_name = "JSON|@FILE")]
        data: Option<String>,
        /// The update's id: sending the same id again is handled once and returns the
        /// same answer. One is chosen when not given.
        #[arg(long, value_name = "ID")]
        update_id: Option<String>,
        /// How long to wait for the answer.
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        wait: String,
    },
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::block_on(async {
        match exec(args).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("skein: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base.trim_end_matches('/')));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends `request` and returns the JSON body of a success, or the server's message.
    pub(crate) async fn json(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        let body = response.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&body).context("the server's answer is not JSON");
        }
        Err(refusal(status, &body))
    }

    /// DELETEs `path`; the server's message when it refuses.
    pub(crate) async fn delete(&self, path: &str) -> Result<()> {
        let response = self
            .request(reqwest::Method::DELETE, path)
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal(status, &response.bytes().await?));
        }
        Ok(())
    }

    async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut request = self.request(reqwest::Method::POST, path);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body)?);
        }
        self.json(request).await
    }
}

/// A CloudEvent as JSON, from `file` or from stdin for `-`.
fn read_event(file: &std::path::Path) -> Result<Value> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    serde_json::from_str(&text).context("the event is not JSON")
}

async fn exec(args: Args) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    match args.command {
        Command::Start {
            file,
            workflow_ref,
            id,
            input,
            labels,
            wait,
            batch,
            max_concurrent,
            dry_run,
        } => {
            let workflow = match &file {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?,
                None => String::new(),
            };
            let mut label_map = serde_json::Map::new();
            for pair in &labels {
                let Some((name, value)) = pair.split_once('=') else {
                    bail!("--label `{pair}` is not NAME=VALUE");
                };
                label_map.insert(name.into(), Value::String(value.into()));
            }
            if let Some(batch) = batch {
                let plan = super::batch::Batch {
                    workflow,
                    inputs: batch,
                    id,
                    labels: label_map,
                    max_concurrent,
                    dry_run,
                    json,
                };
                return super::batch::start(&client, plan).await;
            }
            let mut body = serde_json::json!({
                "input": super::run::parse_input(input.as_deref())?,
                "id": id,
                "labels": label_map,
            });
            match workflow_ref {
                Some(reference) => body["workflowRef"] = Value::String(reference),
                None => body["workflow"] = Value::String(workflow),
            }
            let path = match &wait {
                Some(wait) => format!("/v1/executions?wait={wait}"),
                None => "/v1/executions".to_string(),
            };
            let execution = client.post(&path, Some(&body)).await?;
            show_execution(&execution, json);
            let status = execution["status"].as_str().unwrap_or_default();
            Ok(match (wait.is_some(), status) {
                (false, _) | (true, "completed") => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            })
        }
        Command::List {
            status,
            name,
            label,
            limit,
        } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &limit.to_string());
            for (key, value) in [("status", status), ("name", name), ("label", label)] {
                if let Some(value) = value {
                    query.append_pair(key, &value);
                }
            }
            let path = format!("/v1/executions?{}", query.finish());
            let list = client
                .json(client.request(reqwest::Method::GET, &path))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<38} {:<10} {:<28} CREATED", "ID", "STATUS", "WORKFLOW");
                for e in list["executions"].as_array().into_iter().flatten() {
                    println!(
                        "{:<38} {:<10} {:<28} {}",
                        e["id"].as_str().unwrap_or_default(),
                        e["status"].as_str().unwrap_or_default(),
                        format!(
                            "{}.{}:{}",
                            e["workflow"]["namespace"].as_str().unwrap_or_default(),
                            e["workflow"]["name"].as_str().unwrap_or_default(),
                            e["workflow"]["version"].as_str().unwrap_or_default()
                        ),
                        e["createdAt"].as_str().unwrap_or_default()
                    );
                }
                if let Some(cursor) = list["nextCursor"].as_str() {
                    eprintln!("(more: the next page's cursor is {cursor})");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Progress { id } => super::report::progress(&client, &id, json).await,
        Command::Cost { id, rates } => {
            let rates = super::report::Rates::load(rates.as_ref())?;
            super::report::cost(&client, &id, rates, json).await
        }
        Command::Get { id } => {
            let path = format!("/v1/executions/{}", encode(&id));
            let execution = client
                .json(client.request(reqwest::Method::GET, &path))
                .await?;
            show_execution(&execution, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id } => steer(&client, &id, "cancel", json).await,
        Command::Pause { id } => steer(&client, &id, "pause", json).await,
        Command::Resume { id } => steer(&client, &id, "resume", json).await,
        Command::Events {
            id,
            follow,
            since_id,
        } => events(&client, &id, follow, since_id, json).await,
        Command::SendEvent { id, file } => {
            let event = read_event(&file)?;
            let path = format!("/v1/executions/{}/events", encode(&id));
            let delivered = client.post(&path, Some(&event)).await?;
            if json {
                println!("{delivered}");
            } else {
                println!("delivered at inbox position {}", delivered["position"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish { file } => {
            let event = read_event(&file)?;
            let posted = client.post("/v1/events", Some(&event)).await?;
            if json {
                println!("{posted}");
            } else {
                let started = posted["started"].as_array().cloned().unwrap_or_default();
                if started.is_empty() {
                    println!("no schedule started an execution");
                }
                for id in started {
                    println!("started {}", id.as_str().unwrap_or_default());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedules { command } => super::schedules::run(&client, *command, json).await,
        Command::Signal { id, name, data } => {
            let payload = payload(data.as_deref())?;
            let path = format!("/v1/executions/{}/signals/{}", encode(&id), encode(&name));
            let delivered = client.post(&path, Some(&payload)).await?;
            if json {
                println!("{delivered}");
            } else {
                println!(
                    "signal `{name}` delivered at inbox position {}",
                    delivered["position"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Query { id, name } => {
            let path = format!("/v1/executions/{}/queries/{}", encode(&id), encode(&name));
            let answer = client
                .json(client.request(reqwest::Method::GET, &path))
                .await?;
            if json {
                println!("{answer}");
            } else {
                println!("{}", serde_json::to_string_pretty(&answer["result"])?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Update {
            id,
            name,
            data,
            update_id,
            wait,
        } => {
            let payload = payload(data.as_deref())?;
            let path = format!(
                "/v1/executions/{}/updates/{}?wait={}",
                encode(&id),
                encode(&name),
                encode(&wait)
            );
            let mut request = client
                .request(reqwest::Method::POST, &path)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&payload)?);
            if let Some(update_id) = &update_id {
                request = request.header("idempotency-key", update_id);
            }
            let answer = client.json(request).await?;
            let handled = answer["handled"] == Value::Bool(true);
            if json {
                println!("{answer}");
            } else if handled {
                println!("{}", serde_json::to_string_pretty(&answer["result"])?);
            } else {
                eprintln!(
                    "update `{name}` was delivered but not handled within {wait}; wait again \
                     with: skein exec update {id} {name} --update-id {}",
                    answer["update"].as_str().unwrap_or_default()
                );
            }
            Ok(if handled {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// A message's payload from `--data`: JSON text, or @FILE; null when not given.
fn payload(data: Option<&str>) -> Result<Value> {
    match data {
        None => Ok(Value::Null),
        Some(_) => super::run::parse_input(data)
            .map_err(|e| anyhow::anyhow!("{}", format!("{e:#}").replace("--input", "--data"))),
    }
}

async fn steer(client: &Client, id: &str, verb: &str, json: bool) -> Result<ExitCode> {
    let path = format!("/v1/executions/{}/{verb}", encode(id));
    let execution = client.post(&path, None).await?;
    show_execution(&execution, json);
    Ok(ExitCode::SUCCESS)
}

/// The server's error body as a message: what it said, the status, and each diagnostic.
pub(crate) fn refusal(status: reqwest::StatusCode, body: &[u8]) -> anyhow::Error {
    match serde_json::from_slice::<wire::Error>(body) {
        Ok(error) => {
            let mut message = format!("{} ({status})", error.message);
            for d in &error.diagnostics {
                message.push_str(&format!(
                    "\n  {}:{} {}: {}",
                    d.line, d.column, d.path, d.message
                ));
            }
            anyhow::anyhow!(message)
        }
        Err(_) => anyhow::anyhow!("the server answered {status}"),
    }
}

/// Prints events as they come, reconnecting with the last id after a lost connection
/// when following.
async fn events(
    client: &Client,
    id: &str,
    follow: bool,
    since_id: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let mut last = since_id;
    let mut backoff = Duration::from_millis(200);
    loop {
        let path = format!("/v1/executions/{}/events?follow={follow}", encode(id));
        let mut request = client.request(reqwest::Method::GET, &path);
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                // Not a stream: the server's error, as JSON.
                let status = r.status();
                return Err(refusal(status, &r.bytes().await?));
            }
            Err(e) if follow => {
                eprintln!("skein: lost the server ({e}); reconnecting in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(e) => return Err(e).context("cannot reach the server"),
        };
        match read_stream(response, &mut last, json).await {
            Ok(()) => return Ok(ExitCode::SUCCESS),
            Err(e) if follow => {
                eprintln!("skein: the stream broke ({e:#}); resuming after event {last:?}");
                tokio::time::sleep(backoff).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Prints the events of one SSE response until the server ends it.
async fn read_stream(
    response: reqwest::Response,
    last: &mut Option<u64>,
    json: bool,
) -> Result<()> {
    let mut frames = response.bytes_stream().eventsource();
    while let Some(frame) = frames.next().await {
        let frame = frame.context("the event stream broke")?;
        let (id, data) = (frame.id.parse::<u64>().ok(), frame.data);
        if data.is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(&data).context("an event is not JSON")?;
        let line = if json {
            data.clone()
        } else {
            let type_ = event["type"].as_str().unwrap_or_default();
            // The spec's lifecycle events by their short names; others as they are.
            let short = Lifecycle::parse(type_)
                .filter(|l| l.is_standard())
                .map_or(type_, |l| l.short());
            let task = event["data"]["task"].as_str().unwrap_or_default();
            format!(
                "{:>6}  {}  {:<20} {task}",
                id.map_or_else(String::new, |i| i.to_string()),
                event["time"].as_str().unwrap_or_default(),
                short
            )
        };
        // A reader that went away (`| head`) ends the listing, quietly.
        if writeln!(std::io::stdout().lock(), "{line}").is_err() {
            return Ok(());
        }
        if id.is_some() {
            *last = id;
        }
    }
    Ok(())
}

fn show_execution(execution: &Value, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(execution).unwrap_or_default()
        );
        return;
    }
    let field = |k: &str| execution[k].as_str().unwrap_or_default().to_string();
    println!("id:       {}", field("id"));
    println!(
        "workflow: {}.{}:{}",
        execution["workflow"]["namespace"]
            .as_str()
            .unwrap_or_default(),
        execution["workflow"]["name"].as_str().unwrap_or_default(),
        execution["workflow"]["version"]
            .as_str()
            .unwrap_or_default()
    );
    println!("status:   {}", field("status"));
    println!("created:  {}", field("createdAt"));
    println!("updated:  {}", field("updatedAt"));
    if let Some(tasks) = execution["progress"]["tasks"].as_object() {
        let n = |k: &str| tasks.get(k).and_then(Value::as_u64).unwrap_or(0);
        println!(
            "tasks:    {} completed, {} running, {} faulted, {} cancelled, {} retries",
            n("completed"),
            n("running"),
            n("faulted"),
            n("cancelled"),
            n("retries")
        );
    }
    for fan_out in execution["progress"]["fanOuts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "fan-out:  {} {}/{} done, {} running",
            fan_out["task"].as_str().unwrap_or_default(),
            fan_out["done"],
            fan_out["total"],
            fan_out["running"]
        );
    }
    if let Some(output) = execution.get("output") {
        println!("output:   {output}");
    }
    if let Some(error) = execution.get("error") {
        println!("error:    {error}");
    }
}

/// An id as one path segment.
pub(crate) fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}
