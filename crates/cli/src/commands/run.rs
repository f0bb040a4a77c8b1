//! `skein run FILE`: run a workflow to completion on the embedded store and print its output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use engine::{Engine, Outcome, SystemClock};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// Run a workflow to completion on the embedded store and print its output as JSON.
///
/// Every step is journaled in a SQLite file under the data directory, so an
/// execution interrupted at any point (killed, crashed, Ctrl-C'd machine) can be
/// resumed with `--resume ID`: finished tasks are not run again.
///
/// Exit status: 0 completed (output on stdout), 1 faulted (the error on stderr),
/// 2 invalid workflow or usage error, 130 cancelled with Ctrl-C.
#[derive(ClapArgs)]
#[command(
    after_help = "Examples:\n  skein run examples/hello.yaml --input '{\"name\": \"Ada\"}'\n  skein run flow.yaml --input @input.json --secret apiToken=s3cr3t\n  skein run --resume 0199c3e4-…"
)]
pub(crate) struct Args {
    /// The workflow to run (YAML or JSON).
    #[arg(value_name = "FILE", required_unless_present = "resume")]
    file: Option<PathBuf>,

    /// The workflow input: JSON text, or @FILE to read it from a file.
    #[arg(long, value_name = "JSON|@FILE")]
    input: Option<String>,

    /// A secret for `$secrets` and secret-based authentication: NAME=VALUE, where VALUE
    /// is JSON (such as an object with username and password) or plain text. Repeatable.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,

    /// Where the journal lives.
    #[arg(long, value_name = "DIR", default_value = ".skein")]
    data_dir: PathBuf,

    #[command(flatten)]
    placement: super::PlacementArgs,

    /// Where `run.workflow` finds sub-workflows: DIR/{namespace}/{name}/{version}.yaml (or .json).
    #[arg(long, value_name = "DIR", default_value = "workflows")]
    catalog: PathBuf,

    /// Give the execution this id. Starting an id that exists runs (or shows) that execution.
    #[arg(long, value_name = "ID", conflicts_with = "resume")]
    id: Option<String>,

    /// Resume the unfinished execution ID from the journal (no FILE needed).
    #[arg(long, value_name = "ID")]
    resume: Option<String>,

    /// Commit without waiting for the disk (survives a crash of skein, not of the machine).
    #[arg(long)]
    fast: bool,

    /// Print the outcome as one JSON object: {id, status, output|error}.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    env: super::WorkflowEnvArgs,

    #[command(flatten)]
    resources: super::ResourceArgs,

    #[command(flatten)]
    limits: super::limits::LimitArgs,
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::block_on(run_async(args))
}

async fn run_async(args: Args) -> ExitCode {
    match execute(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skein: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn execute(args: Args) -> Result<ExitCode> {
    let secrets = parse_secrets(&args.secrets)?;
    let (store, db) = super::open_journal(&args.data_dir, args.fast)?;
    let progress = Arc::new(crate::progress::Progress::new());
    let placement = super::workers(&args.placement, true).await?;
    let effects = args.resources.effects(
        runtime::Runtime::new()
            .with_catalog(args.catalog.clone())
            .with_workers(placement.workers.clone()),
    )?;
    let frontend = args.limits.frontend()?;
    let engine = Engine::new(store.clone(), effects, Arc::new(SystemClock))
        .with_observer(progress.clone())
        .with_limits(args.limits.limits())
        .with_frontend(Arc::new(engine::Dsl(frontend.clone())))
        .with_env(args.env.env());

    let id = match (&args.resume, &args.file) {
        (Some(id), _) => {
            if store.execution(id).await?.is_none() {
                bail!("no execution `{id}` in {}", db.display());
            }
            id.clone()
        }
        (None, Some(file)) => {
            let source = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let parsed = gcw::parse_any(&source, &frontend);
            let Some(workflow) = parsed.workflow else {
                eprint!(
                    "{}",
                    dsl::diagnostic::render(
                        &file.display().to_string(),
                        &source,
                        &parsed.diagnostics
                    )
                );
                return Ok(ExitCode::from(2));
            };
            let input = parse_input(args.input.as_deref())?;
            engine
                .create(&source, &workflow, args.id.clone(), input)
                .await?
        }
        (None, None) => bail!("give a workflow FILE, or --resume ID"),
    };
    // A resume must read the document as this run does.
    let dialect = match args.limits.dialect {
        super::limits::Dialect::Zigflow => " --dialect zigflow",
        super::limits::Dialect::Auto => "",
    };
    eprintln!(
        "skein: execution {id} (resume with: skein run --resume {id} --data-dir {}{dialect})",
        args.data_dir.display()
    );

    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("skein: cancelling…");
            on_ctrl_c.cancel();
        }
    });

    let outcome = engine.run(&id, Value::Object(secrets), cancel).await;
    placement.shutdown().await;
    progress.finish();
    let cloud = store
        .execution(&id)
        .await?
        .is_some_and(|e| gcw::Syntax::of_text(&e.definition) == gcw::Syntax::CloudWorkflows);
    Ok(report(&id, outcome?, args.json, cloud))
}

/// Prints the outcome; a failure of a Cloud Workflows document (`cloud`) shows its
/// error as Cloud Workflows does, on the `data:` line.
fn report(id: &str, outcome: Outcome, json: bool, cloud: bool) -> ExitCode {
    let (status, code, body) = match &outcome {
        Outcome::Completed(output) => ("completed", 0, output.clone()),
        Outcome::Faulted(problem) => (
            "faulted",
            1,
            serde_json::to_value(problem).unwrap_or_default(),
        ),
        Outcome::Cancelled => ("cancelled", 130, Value::Null),
    };
    if json {
        let key = if code == 0 { "output" } else { "error" };
        println!(
            "{}",
            serde_json::json!({"id": id, "status": status, key: body})
        );
        return ExitCode::from(code);
    }
    match outcome {
        Outcome::Completed(output) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&output).unwrap_or_default()
            );
        }
        Outcome::Faulted(p) => {
            eprintln!(
                "skein: the workflow faulted at {}",
                p.instance.as_deref().unwrap_or("/")
            );
            eprintln!("  type:     {}", p.type_);
            eprintln!("  status:   {}", p.status);
            if let Some(title) = &p.title {
                eprintln!("  title:    {title}");
            }
            if let Some(detail) = &p.detail {
                eprintln!("  detail:   {detail}");
            }
            eprintln!("  instance: {}", p.instance.as_deref().unwrap_or("/"));
            let data = if cloud {
                Some(gcw::error_value(
                    &serde_json::to_value(p).unwrap_or_default(),
                ))
            } else {
                p.data.as_deref().cloned()
            };
            if let Some(data) = data {
                eprintln!("  data:     {data}");
            }
        }
        Outcome::Cancelled => eprintln!("skein: execution {id} was cancelled"),
    }
    ExitCode::from(code)
}

pub(crate) fn parse_input(input: Option<&str>) -> Result<Value> {
    let Some(input) = input else {
        return Ok(Value::Object(Map::new()));
    };
    let text = match input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the input file {path}"))?,
        None => input.to_string(),
    };
    serde_json::from_str(&text).with_context(|| {
        format!(
            "--input is not valid JSON: {}",
            text.chars().take(80).collect::<String>()
        )
    })
}

/// Secrets given as NAME=VALUE pairs; a VALUE that is JSON (such as an object of
/// credentials) is taken as JSON, anything else as text.
pub(crate) fn parse_secrets(pairs: &[String]) -> Result<Map<String, Value>> {
    let mut secrets = Map::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--secret `{pair}` is not NAME=VALUE");
        };
        secrets.insert(name.to_string(), secret_value(value));
    }
    Ok(secrets)
}

/// A secret's value from its text: JSON if it is JSON, the text itself otherwise.
pub(crate) fn secret_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}
