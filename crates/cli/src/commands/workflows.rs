//! `skein workflows`: named workflows on a running `skein server`: deploy a file under a
//! name (a new revision when it changed), list them, show one, delete one. Executions of
//! a named workflow start with `skein exec start --workflow-ref NAME[@REVISION]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use serde_json::{Value, json};

use super::exec::{Remote, encode};

/// Deploy, list, show and delete named workflows on a running `skein server`.
///
/// A deploy of a file whose text differs from the latest revision's makes a new
/// revision; the same text again changes nothing. Both syntaxes (the Serverless
/// Workflow DSL and Google Cloud Workflows) can be deployed.
#[derive(ClapArgs)]
#[command(
    after_help = "Examples:\n  skein workflows deploy render examples/render/render.workflows.yaml\n  skein workflows list\n  skein exec start --workflow-ref render --input '{\"service\": \"http://…\", \"jobId\": \"j1\"}' --wait"
)]
pub(crate) struct Args {
    #[command(flatten)]
    remote: Remote,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy FILE as the workflow NAME.
    Deploy {
        /// 1 to 64 letters, digits, `-` and `_`, starting with a letter.
        name: String,
        /// The definition (YAML or JSON, either syntax).
        file: PathBuf,
    },
    /// The named workflows, with their latest revisions.
    List,
    /// One workflow's definition (the latest revision, or --revision) and its revisions.
    Get {
        name: String,
        #[arg(long, value_name = "N")]
        revision: Option<u64>,
    },
    /// Delete a workflow with all its revisions (its executions are kept).
    Delete { name: String },
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::block_on(async {
        match workflows(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("skein: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}

async fn workflows(args: Args) -> Result<()> {
    let client = args.remote.client()?;
    let json = args.remote.json;
    let show = |value: &Value| {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        }
    };
    match args.command {
        Command::Deploy { name, file } => {
            let workflow = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let request = client
                .request(reqwest::Method::POST, "/v1/workflows")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(
                    &json!({"name": name, "workflow": workflow}),
                )?);
            let deployed = client.json(request).await?;
            show(&deployed);
            if !json {
                println!(
                    "{} revision {} ({})",
                    deployed["name"].as_str().unwrap_or_default(),
                    deployed["revision"],
                    deployed["syntax"].as_str().unwrap_or_default()
                );
            }
        }
        Command::List => {
            let list = client
                .json(client.request(reqwest::Method::GET, "/v1/workflows"))
                .await?;
            show(&list);
            if !json {
                println!(
                    "{:<32} {:>8}  {:<20} DEPLOYED",
                    "NAME", "REVISION", "SYNTAX"
                );
                for w in list["workflows"].as_array().into_iter().flatten() {
                    println!(
                        "{:<32} {:>8}  {:<20} {}",
                        w["name"].as_str().unwrap_or_default(),
                        w["revision"],
                        w["syntax"].as_str().unwrap_or_default(),
                        w["createdAt"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        Command::Get { name, revision } => {
            let path = match revision {
                Some(r) => format!("/v1/workflows/{}?revision={r}", encode(&name)),
                None => format!("/v1/workflows/{}", encode(&name)),
            };
            let workflow = client
                .json(client.request(reqwest::Method::GET, &path))
                .await?;
            show(&workflow);
            if !json {
                eprintln!(
                    "{} revision {} of {} ({}, deployed {})",
                    workflow["name"].as_str().unwrap_or_default(),
                    workflow["revision"],
                    workflow["revisions"].as_array().map_or(1, Vec::len),
                    workflow["syntax"].as_str().unwrap_or_default(),
                    workflow["createdAt"].as_str().unwrap_or_default()
                );
                print!("{}", workflow["workflow"].as_str().unwrap_or_default());
            }
        }
        Command::Delete { name } => {
            client
                .delete(&format!("/v1/workflows/{}", encode(&name)))
                .await?;
            if !json {
                println!("deleted {name}");
            }
        }
    }
    Ok(())
}
