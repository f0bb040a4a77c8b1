//! `skein bridge`: the stream bridge for tool calls, configured by the environment
//! variables of the producer it replaces (each also a flag).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bridge::auth::Credentials;
use clap::Args as ClapArgs;
use url::Url;

/// Forward tool calls from skein's event stream to a consumer, and their results back.
///
/// Follows GET /v1/events on WORKFLOWS_BASE_URL. Every event whose data has a
/// `tool_call` (an `emit`ted CloudEvent) is POSTed to CONSUMER_BASE_URL/sessions/stream,
/// with X-User-Id, X-Project-Id, X-Workspace-Id, X-Session-Id and an Idempotency-Key
/// (the emitted event's id). When the consumer answers 2xx with `{"result": …}`, the
/// result goes back to the execution as a CloudEvent of type --result-type whose
/// subject is the tool call's id, for a `listen` task to take. A consumer that fails
/// gets the same event again, with backoff; nothing is skipped.
///
/// The replay cursor is kept in WORK_ROOT/WORK_PREFIX_TEMPLATE (placeholders {userId},
/// {projectId}, {workspaceId}, {sessionId}; unset optional ones read `default`), saved
/// as soon as the consumer acknowledges an event: a restarted bridge resumes after the
/// last acknowledged event. Without a usable WORK_ROOT it runs without persistence and
/// says so. Values that would leave WORK_ROOT (`..`, absolute paths, separators, NUL,
/// symbolic links out of the root) are refused at start.
///
/// Authentication: SERVICE_AUTH_TOKEN is sent as a bearer token to the consumer and, unless
/// WORKFLOWS_TOKEN is given, to skein. Without them, Google ID tokens for
/// WORKFLOWS_AUDIENCE (skein) and for the consumer's URL are sent, cached until shortly
/// before expiry: from the service-account key GOOGLE_APPLICATION_CREDENTIALS names, or
/// on Cloud Run (K_SERVICE set) or with GCE_METADATA_HOST set from the metadata server.
///
/// Health and metrics: with --listen, or PORT set (as Cloud Run sets it), the bridge
/// serves GET /healthz (200 while it runs; the body says whether the event stream is
/// open) and GET /metrics (Prometheus: tool calls delivered, results posted, failures,
/// position, connected).
///
/// Exit codes: 0 after SIGTERM or Ctrl-C, 2 for a configuration that cannot work.
#[derive(ClapArgs)]
#[command(
    after_help = "Example:\n  WORKFLOWS_BASE_URL=http://127.0.0.1:8080 CONSUMER_BASE_URL=http://127.0.0.1:7000 \\\n  X_USER_ID=u1 X_PROJECT_ID=p1 WORK_ROOT=./work skein bridge"
)]
pub(crate) struct Args {
    /// skein's base URL.
    #[arg(long, env = "WORKFLOWS_BASE_URL", value_name = "URL")]
    workflows_base_url: Option<String>,

    /// The audience of ID tokens for skein [default: WORKFLOWS_BASE_URL].
    #[arg(long, env = "WORKFLOWS_AUDIENCE", value_name = "AUDIENCE")]
    workflows_audience: Option<String>,

    /// The consumer's base URL (tool calls go to its /sessions/stream).
    #[arg(long, env = "CONSUMER_BASE_URL", value_name = "URL")]
    consumer_base_url: Option<String>,

    /// A static bearer token for the consumer (and for skein, unless WORKFLOWS_TOKEN).
    #[arg(
        long,
        env = "SERVICE_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    service_auth_token: Option<String>,

    /// A static bearer token for skein (a token of `skein server --config`).
    #[arg(
        long,
        env = "WORKFLOWS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    workflows_token: Option<String>,

    /// The user the tool calls run for.
    #[arg(long, env = "X_USER_ID", value_name = "ID")]
    x_user_id: Option<String>,

    /// The project the tool calls run for.
    #[arg(long, env = "X_PROJECT_ID", value_name = "ID")]
    x_project_id: Option<String>,

    #[arg(long, env = "X_WORKSPACE_ID", value_name = "ID")]
    x_workspace_id: Option<String>,

    #[arg(long, env = "X_SESSION_ID", value_name = "ID")]
    x_session_id: Option<String>,

    /// Without a saved cursor: start after this position of skein's log.
    #[arg(
        long,
        env = "SINCE_ID",
        value_name = "POSITION",
        conflicts_with = "since_time"
    )]
    since_id: Option<u64>,

    /// Without a saved cursor: start at this time (RFC 3339) [default: the bridge's start].
    #[arg(long, env = "SINCE_TIME", value_name = "TIME")]
    since_time: Option<String>,

    /// The longest silence on the event stream (skein sends a heartbeat every 15 s by
    /// default) before reconnecting, in milliseconds.
    #[arg(
        long,
        env = "EVENTS_HEARTBEAT_MS",
        value_name = "MS",
        default_value_t = 45_000
    )]
    events_heartbeat_ms: u64,

    /// The first wait before reconnecting or delivering again, in milliseconds; doubled
    /// on each failure, up to 30 s.
    #[arg(
        long,
        env = "RECONNECT_BACKOFF_MS",
        value_name = "MS",
        default_value_t = 1_000
    )]
    reconnect_backoff_ms: u64,

    /// Where the working directories live.
    #[arg(
        long,
        env = "WORK_ROOT",
        value_name = "DIR",
        default_value = "/mnt/work"
    )]
    work_root: PathBuf,

    /// The working directory under WORK_ROOT.
    #[arg(
        long,
        env = "WORK_PREFIX_TEMPLATE",
        value_name = "TEMPLATE",
        default_value = "{projectId}/{workspaceId}"
    )]
    work_prefix_template: String,

    /// The metadata server for ID tokens (host[:port]); set on Cloud Run by default.
    #[arg(long, env = "GCE_METADATA_HOST", value_name = "HOST")]
    gce_metadata_host: Option<String>,

    /// Serve /healthz and /metrics on this address [default: 0.0.0.0:$PORT when PORT is
    /// set, else nothing].
    #[arg(long, env = "SKEIN_BRIDGE_LISTEN", value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,

    /// The CloudEvent type of the results posted back to executions.
    #[arg(long, value_name = "TYPE", default_value = "dev.skein.tool.result")]
    result_type: String,
}

/// Where /healthz and /metrics are served: --listen, else every address on $PORT.
fn health_address(listen: Option<std::net::SocketAddr>) -> Result<Option<std::net::SocketAddr>> {
    if listen.is_some() {
        return Ok(listen);
    }
    match std::env::var("PORT") {
        Ok(port) => {
            let port: u16 = (port.trim().parse())
                .with_context(|| format!("PORT `{port}` is not a port number"))?;
            Ok(Some(std::net::SocketAddr::from(([0, 0, 0, 0], port))))
        }
        Err(_) => Ok(None),
    }
}

/// `/healthz` and `/metrics` from the bridge's counters.
async fn serve_health(
    listener: tokio::net::TcpListener,
    counters: std::sync::Arc<bridge::Counters>,
    stop: tokio_util::sync::CancellationToken,
) {
    use axum::routing::get;
    let health = counters.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(move || async move {
                let stream = if health.connected() {
                    "open"
                } else {
                    "reconnecting"
                };
                format!(
                    "ok: event stream {stream}, at position {}\n",
                    health.position()
                )
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    counters.prometheus(),
                )
            }),
        );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::warn!("skein bridge: /healthz stopped: {e}");
    }
}

pub(crate) fn run(args: Args) -> ExitCode {
    let health = match health_address(args.listen) {
        Ok(address) => address,
        Err(e) => {
            eprintln!("skein bridge: {e:#}");
            return ExitCode::from(2);
        }
    };
    let config = match config(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("skein bridge: {e:#}");
            return ExitCode::from(2);
        }
    };
    super::block_on(async move {
        let http = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
        {
            Ok(http) => http,
            Err(e) => {
                eprintln!("skein bridge: {e}");
                return ExitCode::from(1);
            }
        };
        let bridge = match bridge::Bridge::new(config, http) {
            Ok(bridge) => bridge,
            Err(e) => {
                eprintln!("skein bridge: {e}");
                return ExitCode::from(2);
            }
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(async move {
            super::server::shutdown_signal().await;
            signal.cancel();
        });
        if let Some(address) = health {
            let listener = match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("skein bridge: cannot listen on {address} for /healthz: {e}");
                    return ExitCode::from(2);
                }
            };
            tracing::info!(
                "skein bridge: /healthz and /metrics on http://{}",
                listener.local_addr().map_or(address, |a| a)
            );
            tokio::spawn(serve_health(listener, bridge.counters(), stop.clone()));
        }
        tracing::info!(
            "skein bridge: following skein's events{}",
            bridge
                .cursor_path()
                .map_or(String::new(), |p| format!(", cursor in {}", p.display()))
        );
        let stats = bridge.run(stop).await;
        tracing::info!(
            "skein bridge: stopped: {} tool call{} delivered, {} result{} posted, {} failed attempt{}",
            stats.delivered,
            if stats.delivered == 1 { "" } else { "s" },
            stats.results,
            if stats.results == 1 { "" } else { "s" },
            stats.failures,
            if stats.failures == 1 { "" } else { "s" },
        );
        ExitCode::SUCCESS
    })
}

fn base_url(text: &str, variable: &str) -> Result<Url> {
    let mut url = Url::parse(text)
        .with_context(|| format!("{variable} `{text}` is not a URL such as http://host:port"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("{variable} `{text}` is not an http or https URL");
    }
    // Joined paths go under it, not beside its last segment.
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

fn config(args: Args) -> Result<bridge::Config> {
    let mut missing = Vec::new();
    for (value, variable) in [
        (&args.workflows_base_url, "WORKFLOWS_BASE_URL"),
        (&args.consumer_base_url, "CONSUMER_BASE_URL"),
        (&args.x_user_id, "X_USER_ID"),
        (&args.x_project_id, "X_PROJECT_ID"),
    ] {
        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
            missing.push(variable);
        }
    }
    if !missing.is_empty() {
        bail!(
            "{} must be set (as environment variables or flags; see `skein bridge --help`)",
            missing.join(", ")
        );
    }
    let workflows_text = args.workflows_base_url.unwrap_or_default();
    let consumer_text = args.consumer_base_url.unwrap_or_default();
    let workflows_base_url = base_url(&workflows_text, "WORKFLOWS_BASE_URL")?;
    let consumer_base_url = base_url(&consumer_text, "CONSUMER_BASE_URL")?;
    let since_time = args
        .since_time
        .as_deref()
        .map(|t| {
            t.parse::<jiff::Timestamp>()
                .with_context(|| format!("SINCE_TIME `{t}` is not an RFC 3339 time"))
        })
        .transpose()?;
    if args.events_heartbeat_ms == 0 || args.reconnect_backoff_ms == 0 {
        bail!("EVENTS_HEARTBEAT_MS and RECONNECT_BACKOFF_MS must be above 0");
    }
    let metadata_host = args
        .gce_metadata_host
        .clone()
        .or_else(|| std::env::var_os("K_SERVICE").map(|_| "metadata.google.internal".to_string()));
    let key = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some();
    let credentials = |token: Option<String>| match (token, &metadata_host) {
        (Some(token), _) => Credentials::Static(token),
        (None, _) if key => Credentials::service_account_key(),
        (None, Some(host)) => Credentials::metadata(host),
        (None, None) => Credentials::None,
    };
    let workflows_token = args
        .workflows_token
        .clone()
        .or(args.service_auth_token.clone());
    Ok(bridge::Config {
        workflows_audience: args.workflows_audience.unwrap_or(workflows_text),
        consumer_audience: consumer_text,
        workflows_credentials: credentials(workflows_token),
        consumer_credentials: credentials(args.service_auth_token),
        workflows_base_url,
        consumer_base_url,
        context: bridge::Context {
            user_id: args.x_user_id.unwrap_or_default(),
            project_id: args.x_project_id.unwrap_or_default(),
            workspace_id: args.x_workspace_id.filter(|v| !v.is_empty()),
            session_id: args.x_session_id.filter(|v| !v.is_empty()),
        },
        since_id: args.since_id,
        since_time,
        heartbeat: Duration::from_millis(args.events_heartbeat_ms),
        reconnect_backoff: Duration::from_millis(args.reconnect_backoff_ms),
        max_backoff: Duration::from_secs(30),
        work_root: args.work_root,
        work_prefix_template: args.work_prefix_template,
        result_type: args.result_type,
    })
}
