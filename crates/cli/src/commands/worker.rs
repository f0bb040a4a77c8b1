//! `skein worker`: the worker runtime as a standalone service, for `run` tasks sent by
//! skein servers (or any HTTP client).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;

/// Run tasks for skein servers: commands, or prompts for an agent command.
///
/// Each task runs in its own process group, with a clean environment (PATH, HOME, LANG,
/// LC_ALL, TMPDIR and USER from the worker's, then --env and the secrets, then the
/// request's own). Its output streams as SSE from GET /run/{id}/events, replayable with
/// Last-Event-ID; POST /run/{id}/cancel kills the whole group at once. At most
/// --concurrency tasks run at a time; one more gets 429 with Retry-After, so the engine
/// tries again or another worker takes it.
///
/// Endpoints: GET /hello ({status, workerId, uptime, activeTasks, totalTasksExecuted}),
/// GET /pty/status, POST /run ({command, args, env, stdin, timeoutSeconds, id} or
/// {prompt}), GET /run/{id}, GET /run/{id}/events, POST /run/{id}/cancel.
///
/// Secrets: --secret-env NAME passes the worker's variable NAME to every task and
/// --secret-file NAME=PATH the contents of a mounted file; their values show as `***` in
/// task output. With SKEIN_WORKER_TOKEN set, /run requests need `Authorization: Bearer`
/// with it; without, the worker listens on loopback only.
///
/// On SIGTERM it stops taking tasks, gives running ones --grace to finish, kills the
/// rest, reports how many of each, and exits.
#[derive(ClapArgs)]
#[command(
    after_help = "Examples:\n  skein worker\n  SKEIN_WORKER_TOKEN=… skein worker --listen 0.0.0.0:8080 --concurrency 2\n  skein worker --agent-command 'claude -p' --secret-env ANTHROPIC_API_KEY\n  curl -s localhost:8081/run -H 'content-type: application/json' -d '{\"command\": \"echo\", \"args\": [\"hi\"]}'"
)]
pub(crate) struct Args {
    /// The address to listen on [default: 0.0.0.0:$PORT when PORT is set, as on Cloud
    /// Run, else 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Tasks at a time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    concurrency: usize,

    /// The name /hello reports [default: worker-PID].
    #[arg(long, value_name = "NAME")]
    id: Option<String>,

    /// The bearer token /run requests must carry.
    #[arg(
        long,
        env = "SKEIN_WORKER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// The command a `prompt` goes to, as its last argument, such as `claude -p` (split
    /// on spaces).
    #[arg(long, value_name = "COMMAND")]
    agent_command: Option<String>,

    /// A variable for every task: NAME=VALUE.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,

    /// A secret for every task from the worker's own environment variable NAME.
    #[arg(long = "secret-env", value_name = "NAME")]
    secret_env: Vec<String>,

    /// A secret for every task, as variable NAME, from a file (such as a mounted secret).
    #[arg(long = "secret-file", value_name = "NAME=PATH")]
    secret_file: Vec<String>,

    /// A task's time limit, in seconds, when its request gives none; also the most a
    /// request may ask for.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    max_task_seconds: u64,

    /// The most output kept and streamed per task, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    max_output_bytes: usize,

    /// How long running tasks get to finish after SIGTERM, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    grace: u64,

    /// How often an idle event stream sends a heartbeat comment, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    heartbeat: u64,
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::run_to_exit(serve(args))
}

fn options(args: &Args) -> Result<worker::Options> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.heartbeat == 0 || args.max_task_seconds == 0 {
        bail!("--heartbeat and --max-task-seconds must be at least 1");
    }
    let mut env = BTreeMap::new();
    let mut secrets = Vec::new();
    for pair in &args.env {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--env `{pair}` is not NAME=VALUE"))?;
        env.insert(name.to_string(), value.to_string());
    }
    for name in &args.secret_env {
        let value = std::env::var(name)
            .with_context(|| format!("--secret-env {name}: the variable is not set"))?;
        env.insert(name.clone(), value.clone());
        secrets.push(value);
    }
    for pair in &args.secret_file {
        let (name, path) = pair
            .split_once('=')
            .with_context(|| format!("--secret-file `{pair}` is not NAME=PATH"))?;
        let value = std::fs::read_to_string(PathBuf::from(path))
            .with_context(|| format!("--secret-file {name}: cannot read {path}"))?;
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        env.insert(name.to_string(), value.clone());
        secrets.push(value);
    }
    let agent_command = match &args.agent_command {
        None => None,
        Some(text) => {
            let words: Vec<String> = text.split_whitespace().map(String::from).collect();
            if words.is_empty() {
                bail!("--agent-command is empty");
            }
            Some(words)
        }
    };
    let defaults = worker::Options::default();
    Ok(worker::Options {
        id: args.id.clone().unwrap_or(defaults.id),
        concurrency: args.concurrency,
        token_sha256: args.token.as_deref().map(|t| api::auth::hash(t.trim())),
        agent_command,
        env,
        inherit_env: false,
        secrets,
        max_task_time: Duration::from_secs(args.max_task_seconds),
        max_output_bytes: args.max_output_bytes,
        heartbeat: Duration::from_secs(args.heartbeat),
    })
}

async fn serve(args: Args) -> Result<()> {
    let options = options(&args)?;
    let listen = match (args.listen, std::env::var("PORT")) {
        (Some(addr), _) => addr,
        (None, Ok(port)) => format!("0.0.0.0:{port}")
            .parse()
            .with_context(|| format!("PORT={port} is not a port number"))?,
        (None, Err(_)) => "127.0.0.1:8081".parse().expect("a valid address"),
    };
    if options.token_sha256.is_none() && !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen}: no token is set (SKEIN_WORKER_TOKEN or --token), \
             so anyone who reaches it could run commands; set one, or listen on a loopback \
             address such as 127.0.0.1:8081"
        );
    }
    let worker = worker::Worker::new(options);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        "skein worker {} listening on http://{} ({} task{} at a time; {})",
        worker.options().id,
        listener.local_addr()?,
        worker.options().concurrency,
        if worker.options().concurrency == 1 {
            ""
        } else {
            "s"
        },
        if worker.options().token_sha256.is_some() {
            "token required"
        } else {
            "no token: loopback only"
        },
    );
    let grace = Duration::from_secs(args.grace);
    let draining = worker.clone();
    // On the signal: stop accepting, and end the tasks (so their event streams end and
    // the server can finish): those that outlast the grace are killed.
    let shutdown = async move {
        super::server::shutdown_signal().await;
        tracing::info!("skein worker: shutting down; running tasks get {grace:?}");
        let report = draining.shutdown(grace).await;
        tracing::info!(
            "skein worker: {} task{} finished, {} killed",
            report.finished,
            if report.finished == 1 { "" } else { "s" },
            report.killed
        );
    };
    axum::serve(super::no_delay(listener), worker::app(worker))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the worker failed")?;
    Ok(())
}
