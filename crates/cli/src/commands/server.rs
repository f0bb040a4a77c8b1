//! `skein server`: the REST and gRPC APIs over the embedded store, running executions in
//! the background and resuming, at start, those a previous server left unfinished;
//! and, when configured, reporting their progress to a callback service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use engine::{Engine, SystemClock};

/// Serve the REST API (under /v1) and the gRPC API for starting, watching and steering
/// executions.
///
/// Executions run inside the server and are journaled in a SQLite file under the data
/// directory. At start the server resumes every execution that was unfinished when it
/// last stopped, however it stopped. On SIGTERM or Ctrl-C it stops accepting requests,
/// lets queued journal writes commit, and exits; running executions resume at the next
/// start.
///
/// Scaling out (--database postgres://…): several servers share one PostgreSQL database.
/// Each runs the executions it holds a lease of: those it started (while it has room,
/// --max-executions), and free ones it claims every --renew-every seconds (new ones no
/// server took, and those of a server whose lease expired: a server that died is taken
/// over after at most --lease seconds, and its executions resume from the journal
/// without re-running completed tasks). Any server accepts every request: cancel, pause
/// and resume reach the server that runs the execution, and event streams show the
/// events of executions running anywhere. The servers migrate the database themselves
/// at start (safely, several at once). A lost database connection stalls executions
/// until it is back; nothing is applied twice. /healthz fails while the database does
/// not answer; /metrics shows lease takeovers and claim latency.
///
/// Endpoints: POST /v1/executions (body {workflow, input?, id?}; ?wait=30s holds the
/// response until the end), GET /v1/executions[?status=&name=&limit=&cursor=],
/// GET /v1/executions/{id}[?wait=30s], POST /v1/executions/{id}/cancel (and /pause,
/// /resume),
/// POST /v1/executions/{id}/events (a CloudEvent for `listen`),
/// GET /v1/executions/{id}/events (the execution's events as a live SSE stream, resumable
/// with Last-Event-ID, ?since_id= or ?since_time=), GET /healthz, GET /metrics
/// (Prometheus).
///
/// gRPC (--grpc-listen, default 127.0.0.1:9090): service skein.v1.Runner (ExecuteAsync,
/// Get, Cancel, Pause, Resume, Watch, and DeployWorkflow, GetWorkflow, ListWorkflows,
/// DeleteWorkflow; proto/skein/v1/runner.proto), with the standard
/// health service and server reflection, so `grpcurl -plaintext 127.0.0.1:9090 list`
/// works. The same tokens as REST, in `authorization: Bearer …` metadata. TLS with
/// --grpc-tls-cert and --grpc-tls-key; plaintext is refused on a non-loopback address
/// unless --grpc-plaintext.
///
/// Progress callbacks (--callback-endpoint): each execution's progress (workflow started,
/// validating, validated, task started, task completed, workflow completed, failed,
/// cancelled, paused, resumed) is reported to a skein.v1.ProgressCallback service
/// (proto/skein/v1/callback.proto; `skein callback-sink` is one), in order per
/// execution, numbered 1, 2, 3… Reports are made from the journal, so none is lost to a
/// crash; a service that is down is retried with backoff, for --callback-max-age, and
/// never slows an execution. With --database the servers take turns: one reports for all,
/// and another takes over when it stops.
///
/// Authentication: bearer tokens, each bound to a project and a role (read, run or admin),
/// from --config FILE (YAML: `tokens: [{project, role, sha256}]`) or SKEIN_TOKENS
/// (`PROJECT:ROLE:SHA256,…`). Only the tokens' SHA-256 hashes are configured (for example
/// `printf %s "$TOKEN" | sha256sum`). A token sees and steers only its project's
/// executions. Without tokens there is one project and no authentication, and the server
/// listens on loopback addresses only.
///
/// OpenID Connect: ID tokens (JWTs) from trusted issuers are accepted as bearer tokens
/// too: Google's (`https://accounts.google.com`, for callers on Cloud Run, GKE or with a
/// service-account key), a Kubernetes cluster's, a CI system's, any provider's. Name the
/// issuers (--oidc-issuer), the audiences a token must be for (--oidc-audience, such as
/// the server's public URL) and rules CLAIM=GLOB:PROJECT:ROLE (--oidc-rule, first match
/// wins; a valid token that no rule matches gets 403), or the configuration's `oidc:
/// {issuers: [{issuer, audiences}], rules: [{claim, match, project, role, issuer?}]}`.
/// Keys come from the issuer's discovery document and are fetched again when a token
/// names an unknown one (at most once a minute). RS256 and ES256 only.
///
/// Secrets: --secret NAME=VALUE (every project), or the configuration's `secrets: [{name,
/// value | env | file, project?}]`, read at start. An execution sees, as `$secrets`, the
/// ones its workflow declares in `use.secrets`, and a start that declares one the server
/// lacks is refused. Events and API responses show secret text as `***`.
#[derive(ClapArgs)]
#[command(
    after_help = "Examples:\n  skein server\n  skein server --listen 127.0.0.1:9000 --data-dir /var/lib/skein\n  skein server --callback-endpoint progress.example.com:443 --callback-api-key \"$KEY\"\n  grpcurl -plaintext 127.0.0.1:9090 list\n  curl -s localhost:8080/v1/executions?wait=30s -d '{\"workflow\": \"…\", \"input\": {}}'"
)]
pub(crate) struct Args {
    /// The address to listen on (a loopback address unless tokens or OIDC issuers are set)
    /// [default: 0.0.0.0:$PORT when PORT is set, as on Cloud Run; else 127.0.0.1:8080].
    #[arg(long = "listen", env = "SKEIN_LISTEN", value_name = "ADDR")]
    listen_flag: Option<SocketAddr>,
    #[arg(skip = SocketAddr::from(([127, 0, 0, 1], 8080)))]
    listen: SocketAddr,

    /// The URL callers reach this server's REST API at, behind any proxy: Cloud Workflows
    /// callback endpoints (`events.create_callback_endpoint`) point there. Default:
    /// http://ADDR of --listen (127.0.0.1 for an unspecified address).
    #[arg(long, env = "SKEIN_PUBLIC_URL", value_name = "URL")]
    public_url: Option<url::Url>,

    /// The address of the gRPC API (a loopback address unless tokens or OIDC issuers are set)
    /// [default: 0.0.0.0:$GRPC_PORT when GRPC_PORT is set; else 127.0.0.1:9090].
    #[arg(long = "grpc-listen", env = "SKEIN_GRPC_LISTEN", value_name = "ADDR")]
    grpc_listen_flag: Option<SocketAddr>,
    #[arg(skip = SocketAddr::from(([127, 0, 0, 1], 9090)))]
    grpc_listen: SocketAddr,

    /// Serve no gRPC API.
    #[arg(long, conflicts_with_all = ["grpc_tls_cert", "grpc_plaintext"])]
    no_grpc: bool,

    /// Serve no dashboard (the web UI at / and /ui/, whose data comes through the API with
    /// the same tokens).
    #[arg(long, env = "SKEIN_NO_UI")]
    no_ui: bool,

    /// Serve the REST API over TLS with this certificate chain (PEM); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The REST API's TLS private key (PEM); with --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Require REST clients to present a certificate signed by this CA (PEM); with
    /// --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,

    /// The gRPC API's TLS certificate chain (PEM); with --grpc-tls-key.
    #[arg(long, value_name = "FILE", requires = "grpc_tls_key")]
    grpc_tls_cert: Option<PathBuf>,

    /// The gRPC API's TLS private key (PEM); with --grpc-tls-cert.
    #[arg(long, value_name = "FILE", requires = "grpc_tls_cert")]
    grpc_tls_key: Option<PathBuf>,

    /// Serve gRPC without TLS on a non-loopback address (behind a proxy that terminates
    /// TLS, say: Cloud Run, a service mesh).
    #[arg(long, env = "SKEIN_GRPC_PLAINTEXT")]
    grpc_plaintext: bool,

    /// Report progress to this skein.v1.ProgressCallback service: HOST:PORT (TLS unless
    /// --callback-plaintext) or a URL (https://… or http://…). STIGMER_SERVICE_ENDPOINT
    /// is read too, as seed 003's runner did.
    #[arg(long, env = "SKEIN_CALLBACK_ENDPOINT", value_name = "ENDPOINT")]
    callback_endpoint: Option<String>,

    /// The key sent with each report, as `authorization: Bearer <key>`
    /// (STIGMER_SERVICE_API_KEY is read too).
    #[arg(
        long,
        env = "SKEIN_CALLBACK_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    callback_api_key: Option<String>,

    /// Reach a HOST:PORT callback endpoint without TLS (also STIGMER_SERVICE_USE_TLS=false).
    #[arg(long, env = "SKEIN_CALLBACK_PLAINTEXT")]
    callback_plaintext: bool,

    /// Certificates (PEM) to trust for the callback endpoint, besides the system's.
    #[arg(long, value_name = "FILE")]
    callback_ca: Option<PathBuf>,

    /// How long an undeliverable progress report is retried before it is dropped (and
    /// counted in skein_callback_reports_dropped), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    callback_max_age: u64,

    /// The longest wait between two attempts to deliver a progress report, in seconds
    /// (the first wait is 0.2 s, doubled after each failure, with jitter).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    callback_max_backoff: u64,

    /// A YAML configuration file: `tokens: [{project, role, sha256}]` and `secrets:
    /// [{name, value | env | file, project?}]` (a secret without a project is for every
    /// project).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// A secret for every project's executions: NAME=VALUE, where VALUE is JSON or text.
    /// Command lines are visible to other local users; prefer the configuration's `env`
    /// or `file` secrets outside a laptop.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,

    /// Tokens as PROJECT:ROLE:SHA256 entries, comma-separated (added to the config file's).
    #[arg(
        long,
        env = "SKEIN_TOKENS",
        value_name = "LIST",
        hide_env_values = true
    )]
    tokens: Option<String>,

    /// Trust ID tokens from this OpenID Connect issuer: its URL, as tokens carry it in
    /// `iss` (https; http only on loopback). Repeatable; comma-separated in the variable.
    #[arg(
        long = "oidc-issuer",
        env = "SKEIN_OIDC_ISSUER",
        value_name = "URL",
        value_delimiter = ','
    )]
    oidc_issuers: Vec<String>,

    /// An audience (`aud`) the --oidc-issuer tokens must be for, such as this server's
    /// public URL. Repeatable; comma-separated in the variable.
    #[arg(
        long = "oidc-audience",
        env = "SKEIN_OIDC_AUDIENCE",
        value_name = "AUD",
        value_delimiter = ','
    )]
    oidc_audiences: Vec<String>,

    /// CLAIM=GLOB:PROJECT:ROLE: ID tokens whose claim matches the glob (`*`, `?`; a list
    /// claim such as `groups` matches if one item does) act in PROJECT with ROLE (read,
    /// run, admin). The first matching rule wins, the configuration file's first.
    /// Repeatable; comma-separated in the variable. Example: 'email=*@example.com:render:run'.
    #[arg(
        long = "oidc-rule",
        env = "SKEIN_OIDC_RULE",
        value_name = "RULE",
        value_delimiter = ','
    )]
    oidc_rules: Vec<String>,

    /// The shortest time between two fetches of an issuer's keys, in seconds: a token
    /// naming an unknown key fetches them again at most this often.
    #[arg(
        long,
        env = "SKEIN_OIDC_REFRESH",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    oidc_refresh: u64,

    /// Serve GET /metrics without a token (it otherwise needs the admin role): for a
    /// scraper that sends none, such as Cloud Run's Prometheus sidecar. The figures are
    /// counts across all projects, with project names in the quota refusals.
    #[arg(long, env = "SKEIN_OPEN_METRICS")]
    open_metrics: bool,

    /// Where the journal lives (without --database).
    #[arg(long, value_name = "DIR", default_value = ".skein")]
    data_dir: PathBuf,

    /// A PostgreSQL database shared with other servers (postgres://USER:PASSWORD@HOST:PORT/DB),
    /// instead of the SQLite file under --data-dir.
    #[arg(
        long,
        env = "SKEIN_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    database: Option<String>,

    /// Connections to the database this server keeps open (the journal writer, the
    /// listener for notifications, and reads).
    #[arg(long, value_name = "N", default_value_t = 16, requires = "database")]
    pool_size: u32,

    /// How long a lease on an execution lasts without renewal, in seconds: the longest
    /// the executions of a server that died wait before another server takes them over.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 15.0,
        requires = "database"
    )]
    lease: f64,

    /// How often leases are renewed and free executions claimed, in seconds (default: a
    /// third of --lease).
    #[arg(long, value_name = "SECONDS", requires = "database")]
    renew_every: Option<f64>,

    /// The most executions this server runs at once (with --database); beyond that, new
    /// ones wait for a server with room.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10_000,
        requires = "database"
    )]
    max_executions: usize,

    /// This server's name among those sharing the database, in logs and as the owner of
    /// its leases (default: the host name, the process id and a random suffix). No two
    /// servers running at once may share a name; a server restarted under its old name
    /// resumes that one's executions at once instead of after --lease.
    #[arg(long, value_name = "NAME", requires = "database")]
    node_name: Option<String>,

    #[command(flatten)]
    placement: super::PlacementArgs,

    /// Where `run.workflow` finds sub-workflows: DIR/{namespace}/{name}/{version}.yaml (or .json).
    #[arg(long, value_name = "DIR", default_value = "workflows")]
    catalog: PathBuf,

    /// Commit without waiting for the disk (survives a crash of skein, not of the machine).
    #[arg(long)]
    fast: bool,

    /// How often an idle event stream sends a heartbeat comment, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    heartbeat: u64,

    /// The largest request body the API accepts, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    max_body_bytes: usize,

    /// The largest workflow definition the API accepts, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_definition_bytes: usize,

    /// The largest workflow input the API accepts, in bytes of JSON.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    max_input_bytes: usize,

    #[command(flatten)]
    env: super::WorkflowEnvArgs,

    #[command(flatten)]
    resources: super::ResourceArgs,

    #[command(flatten)]
    limits: super::limits::LimitArgs,

    #[command(flatten)]
    quotas: super::limits::QuotaArgs,

    #[command(flatten)]
    egress: super::egress::EgressArgs,

    /// The most event-stream (SSE) clients at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_subscribers: usize,

    /// How long a shutdown waits for running work to let go, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    shutdown_grace: u64,
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::run_to_exit(serve(args))
}

/// The configuration file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    #[serde(default)]
    secrets: Vec<SecretEntry>,
    #[serde(default)]
    projects: Vec<ProjectEntry>,
    #[serde(default)]
    oidc: OidcEntry,
}

/// The configuration's `oidc:` section.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OidcEntry {
    #[serde(default)]
    issuers: Vec<api::oidc::IssuerConfig>,
    #[serde(default)]
    rules: Vec<RuleEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    claim: String,
    /// The glob the claim must match.
    #[serde(rename = "match")]
    pattern: String,
    project: String,
    role: String,
    /// Only tokens of this issuer.
    issuer: Option<String>,
}

/// What the configuration sets for one project, in place of the server's options.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectEntry {
    name: String,
    #[serde(default)]
    limits: super::limits::LimitOverrides,
    #[serde(default)]
    quotas: super::limits::QuotaOverrides,
    #[serde(default)]
    egress: super::egress::EgressOverrides,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretEntry {
    name: String,
    /// The value itself (text, or a mapping such as `{username, password}`).
    value: Option<serde_json::Value>,
    /// An environment variable holding the value.
    env: Option<String>,
    /// A file holding the value, such as a mounted secret volume.
    file: Option<PathBuf>,
    /// The one project whose executions get it; every project's when absent.
    project: Option<String>,
}

impl SecretEntry {
    /// The value, from wherever the entry says it is.
    fn value(&self) -> Result<serde_json::Value> {
        match (&self.value, &self.env, &self.file) {
            (Some(value), None, None) => Ok(value.clone()),
            (None, Some(var), None) => {
                let text = std::env::var(var).with_context(|| {
                    format!("the environment variable {var} is not set (or not UTF-8)")
                })?;
                Ok(super::run::secret_value(&text))
            }
            (None, None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Ok(super::run::secret_value(
                    text.trim_end_matches(['\n', '\r']),
                ))
            }
            _ => bail!("give exactly one of `value`, `env` or `file`"),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    project: String,
    role: String,
    /// The token's SHA-256, in hex.
    sha256: String,
}

/// The configuration file, or an empty one without `--config`.
fn config(args: &Args) -> Result<Config> {
    let Some(path) = &args.config else {
        return Ok(Config {
            tokens: Vec::new(),
            secrets: Vec::new(),
            projects: Vec::new(),
            oidc: OidcEntry::default(),
        });
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not a valid configuration", path.display()))
}

fn secrets(args: &Args, config: &Config) -> Result<api::Secrets> {
    let mut secrets = api::Secrets::default();
    for (i, entry) in config.secrets.iter().enumerate() {
        let path = args.config.as_deref().unwrap_or(std::path::Path::new(""));
        let value = entry
            .value()
            .with_context(|| format!("{}: secrets[{i}] (`{}`)", path.display(), entry.name))?;
        secrets.insert(entry.project.as_deref(), &entry.name, value);
    }
    for (name, value) in super::run::parse_secrets(&args.secrets)? {
        secrets.insert(None, &name, value);
    }
    Ok(secrets)
}

fn tokens(args: &Args, config: &Config) -> Result<Vec<api::auth::Token>> {
    let mut tokens = Vec::new();
    if let Some(path) = &args.config {
        for (i, entry) in config.tokens.iter().enumerate() {
            tokens.push(
                api::auth::Token::new(&entry.project, &entry.role, &entry.sha256)
                    .map_err(|e| anyhow::anyhow!("{}: tokens[{i}]: {e}", path.display()))?,
            );
        }
    }
    if let Some(list) = &args.tokens {
        for entry in list.split(',').filter(|e| !e.trim().is_empty()) {
            tokens.push(
                api::auth::Token::parse(entry)
                    .map_err(|e| anyhow::anyhow!("SKEIN_TOKENS / --tokens: {e}"))?,
            );
        }
    }
    Ok(tokens)
}

/// The OIDC issuers and rules: the configuration file's, then the flags'.
fn oidc(args: &Args, config: &Config) -> Result<Option<api::oidc::Oidc>> {
    let path = args.config.as_deref().unwrap_or(std::path::Path::new(""));
    let mut oidc = api::oidc::OidcConfig {
        issuers: config.oidc.issuers.clone(),
        rules: Vec::new(),
        refresh: Some(Duration::from_secs(args.oidc_refresh)),
    };
    for (i, r) in config.oidc.rules.iter().enumerate() {
        let rule =
            api::oidc::Rule::new(&r.claim, &r.pattern, &r.project, &r.role, r.issuer.clone())
                .map_err(|e| anyhow::anyhow!("{}: oidc.rules[{i}]: {e}", path.display()))?;
        oidc.rules.push(rule);
    }
    if !args.oidc_issuers.is_empty() && args.oidc_audiences.is_empty() {
        bail!(
            "--oidc-issuer needs --oidc-audience (SKEIN_OIDC_AUDIENCE): the audiences its tokens must be for"
        );
    }
    for issuer in &args.oidc_issuers {
        oidc.issuers.push(api::oidc::IssuerConfig {
            issuer: issuer.clone(),
            audiences: args.oidc_audiences.clone(),
        });
    }
    for rule in &args.oidc_rules {
        let rule = api::oidc::Rule::parse(rule)
            .map_err(|e| anyhow::anyhow!("--oidc-rule / SKEIN_OIDC_RULE: {e}"))?;
        oidc.rules.push(rule);
    }
    oidc.check().map_err(|e| anyhow::anyhow!(e))?;
    Ok((!oidc.is_empty()).then(|| api::oidc::Oidc::new(oidc)))
}

/// An environment variable's value, if set and not blank.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `0.0.0.0:PORT` from the port in variable `name`, if set.
fn port_from_env(name: &str) -> Result<Option<SocketAddr>> {
    let Some(port) = env_value(name) else {
        return Ok(None);
    };
    let port: u16 =
        (port.trim().parse()).with_context(|| format!("{name} `{port}` is not a port number"))?;
    Ok(Some(SocketAddr::from(([0, 0, 0, 0], port))))
}

/// The addresses and callback settings, from the flags and skein's variables first, then
/// from the names platforms and seed 003's runner use: PORT (Cloud Run), GRPC_PORT,
/// STIGMER_SERVICE_ENDPOINT, STIGMER_SERVICE_API_KEY and STIGMER_SERVICE_USE_TLS.
fn resolve_addresses(args: &mut Args) -> Result<()> {
    if let Some(listen) = args.listen_flag.or(port_from_env("PORT")?) {
        args.listen = listen;
    }
    if let Some(listen) = args.grpc_listen_flag.or(port_from_env("GRPC_PORT")?) {
        args.grpc_listen = listen;
    }
    if args.callback_endpoint.is_none() {
        args.callback_endpoint = env_value("STIGMER_SERVICE_ENDPOINT");
    }
    if args.callback_api_key.is_none() {
        args.callback_api_key = env_value("STIGMER_SERVICE_API_KEY");
    }
    if let Some(tls) = env_value("STIGMER_SERVICE_USE_TLS") {
        match tls.trim().to_ascii_lowercase().as_str() {
            "false" | "0" | "no" | "off" => args.callback_plaintext = true,
            "true" | "1" | "yes" | "on" => {}
            _ => bail!("STIGMER_SERVICE_USE_TLS `{tls}` is not true or false"),
        }
    }
    Ok(())
}

async fn serve(mut args: Args) -> Result<()> {
    resolve_addresses(&mut args)?;
    let config = config(&args)?;
    let tokens = tokens(&args, &config)?;
    let oidc = oidc(&args, &config)?;
    let secrets = secrets(&args, &config)?;
    let authenticated = !tokens.is_empty() || oidc.is_some();
    if !authenticated && !args.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {}: no tokens are configured (--config, SKEIN_TOKENS or \
             --oidc-issuer), so there is no authentication and skein server listens on \
             loopback addresses only (such as 127.0.0.1:8080)",
            args.listen
        );
    }
    if !authenticated && !args.no_grpc && !args.grpc_listen.ip().is_loopback() {
        bail!(
            "refusing to serve gRPC on {}: no tokens are configured (--config, SKEIN_TOKENS \
             or --oidc-issuer), \
             so there is no authentication and the gRPC API listens on loopback addresses \
             only (such as 127.0.0.1:9090)",
            args.grpc_listen
        );
    }
    let rest_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(super::tls::server_config(
            cert,
            key,
            args.tls_client_ca.as_deref(),
        )?),
        _ => None,
    };
    let grpc_tls = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
        (Some(cert), Some(key)) => Some(api::grpc::Tls {
            cert_pem: std::fs::read(cert)
                .with_context(|| format!("cannot read --grpc-tls-cert {}", cert.display()))?,
            key_pem: std::fs::read(key)
                .with_context(|| format!("cannot read --grpc-tls-key {}", key.display()))?,
        }),
        _ => None,
    };
    if !args.no_grpc
        && grpc_tls.is_none()
        && !args.grpc_plaintext
        && !args.grpc_listen.ip().is_loopback()
    {
        bail!(
            "refusing to serve gRPC without TLS on {}: give --grpc-tls-cert and --grpc-tls-key, \
             or --grpc-plaintext if a proxy in front terminates TLS",
            args.grpc_listen
        );
    }
    let mut auth = if !authenticated {
        "authentication off: no tokens configured, loopback only".to_string()
    } else if tokens.is_empty() {
        String::new()
    } else {
        let mut projects: Vec<&str> = tokens.iter().map(|t| t.project.as_str()).collect();
        projects.sort_unstable();
        projects.dedup();
        format!(
            "{} token{} for project{} {}",
            tokens.len(),
            if tokens.len() == 1 { "" } else { "s" },
            if projects.len() == 1 { "" } else { "s" },
            projects.join(", ")
        )
    };
    if let Some(oidc) = &oidc {
        let issuers: Vec<&str> = (oidc.config().issuers.iter())
            .map(|i| i.issuer.as_str())
            .collect();
        let rules = oidc.config().rules.len();
        if !auth.is_empty() {
            auth.push_str("; ");
        }
        auth.push_str(&format!(
            "ID tokens from {} ({rules} rule{})",
            issuers.join(", "),
            if rules == 1 { "" } else { "s" }
        ));
    }
    let secret_count = secrets.len();
    let mut cluster = cluster(&args)?;
    let (store, db) = match (&args.database, &cluster) {
        (Some(url), Some(cluster)) => {
            let mut options = store::postgres::Options::new(url);
            options.pool_size = args.pool_size;
            options.node = cluster.node.clone();
            let store = store::postgres::PostgresStore::connect(options, Duration::from_secs(60))
                .await
                .with_context(|| format!("cannot use the database {}", redacted(url)))?;
            let store: Arc<dyn store::Store> = Arc::new(store);
            (store, format!("{} as {}", redacted(url), cluster.node))
        }
        _ => {
            let (store, db) = super::open_journal(&args.data_dir, args.fast)?;
            (store, db.display().to_string())
        }
    };
    let placement = super::workers(&args.placement, false).await?;
    let overrides: Vec<_> = (config.projects.iter())
        .map(|p| (p.name.clone(), &p.egress))
        .collect();
    // Bound first, so that the address it got (for port 0) is the one egress keeps
    // workflows from and callbacks point to.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    if let Some(cluster) = &mut cluster {
        cluster.url = public_url(&args, bound);
    }
    let own = vec![bound, args.grpc_listen];
    let egress = (args.egress)
        .egress(authenticated, own, &overrides)
        .with_context(|| "invalid egress policy")?;
    let effects = args.resources.effects(
        runtime::Runtime::new()
            .with_catalog(args.catalog.clone())
            .with_workers(placement.workers.clone())
            .with_egress(egress),
    )?;
    let metrics = api::Metrics::new();
    store.observe_commits(metrics.commit_observer());
    let limits = args.limits.limits();
    let frontend = args.limits.frontend()?;
    let mut engine = Engine::new(store, effects, Arc::new(SystemClock))
        .with_observer(metrics.clone())
        .with_limits(limits.clone())
        .with_frontend(Arc::new(engine::Dsl(frontend.clone())))
        .with_env(args.env.env())
        .with_server_url(&public_url(&args, bound));
    for project in &config.projects {
        engine = engine.with_project_limits(&project.name, project.limits.apply(&limits));
    }
    let engine = Arc::new(engine);
    if args.heartbeat == 0 {
        bail!("--heartbeat must be at least 1 second");
    }
    let service = api::Service::with_options(
        engine,
        api::Options {
            heartbeat: Duration::from_secs(args.heartbeat),
            metrics,
            max_body_bytes: args.max_body_bytes,
            max_definition_bytes: args.max_definition_bytes,
            cloud_workflows: frontend.cloud_workflows,
            zigflow: frontend.zigflow,
            max_input_bytes: args.max_input_bytes,
            max_subscribers: args.max_subscribers,
            tokens,
            oidc: oidc.map(Arc::new),
            open_metrics: args.open_metrics,
            secrets: Arc::new(secrets),
            cluster,
            quotas: api::quota::QuotaTable {
                default: args.quotas.quotas(),
                projects: (config.projects.iter())
                    .map(|p| (p.name.clone(), p.quotas.apply(args.quotas.quotas())))
                    .collect(),
            },
            workers: Some(Arc::new(WorkerLoad(placement.workers.clone()))),
        },
    );
    let grpc_listener = match args.no_grpc {
        true => None,
        false => Some(
            tokio::net::TcpListener::bind(args.grpc_listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {} for gRPC (--grpc-listen; --no-grpc to serve none)",
                        args.grpc_listen
                    )
                })?,
        ),
    };
    // Before any execution runs, so that reporting starts before their first events.
    let callbacks = match &args.callback_endpoint {
        Some(endpoint) => Some(callbacks(&args, endpoint, &service).await?),
        None => None,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let mut background = tokio::task::JoinSet::new();
    let mut grpc_note = "gRPC off".to_string();
    if let Some(grpc_listener) = grpc_listener {
        grpc_note = format!(
            "gRPC on {}{}",
            grpc_listener.local_addr()?,
            if grpc_tls.is_some() { " with TLS" } else { "" }
        );
        let (service, stop) = (service.clone(), stop.clone());
        background.spawn(async move {
            api::grpc::serve(service, grpc_listener, grpc_tls, stop.cancelled_owned())
                .await
                .context("the gRPC server failed")
        });
    }
    let callback_note = match callbacks {
        Some(callbacks) => {
            let stop = stop.clone();
            background.spawn(async move {
                callbacks
                    .run(stop)
                    .await
                    .context("progress callbacks stopped")
            });
            format!(
                "; progress reported to {}",
                args.callback_endpoint.as_deref().unwrap_or_default()
            )
        }
        None => String::new(),
    };
    let resumed = service
        .resume_all()
        .await
        .context("cannot read the unfinished executions")?;
    let resumed = match service.options().cluster {
        Some(_) => "executions claimed by lease".to_string(),
        None => format!(
            "{resumed} execution{} resumed",
            if resumed == 1 { "" } else { "s" }
        ),
    };
    {
        let (service, stop) = (service.clone(), stop.clone());
        background.spawn(async move {
            service.run_cluster(stop.clone()).await;
            // It returns at once on one machine; elsewhere only when told to stop.
            stop.cancelled().await;
            Ok(())
        });
    }
    {
        // Schedules: run here, or by whichever server holds their lease.
        let (service, stop) = (service.clone(), stop.clone());
        let owner = service
            .options()
            .cluster
            .as_ref()
            .map_or_else(|| "local".to_string(), |c| c.node.clone());
        background.spawn(async move {
            service.run_schedules(owner, stop).await;
            Ok(())
        });
    }
    let scheme = if rest_tls.is_some() { "https" } else { "http" };
    let dashboard_note = match args.no_ui {
        true => String::new(),
        false => format!("; dashboard at {scheme}://{}/ui/", listener.local_addr()?),
    };
    tracing::info!(
        "skein server listening on {scheme}://{} ({grpc_note}; journal {db}, {resumed}; {auth}; {secret_count} secret{}{callback_note}{dashboard_note})",
        listener.local_addr()?,
        if secret_count == 1 { "" } else { "s" },
    );
    let mut app = api::app(service.clone());
    if !args.no_ui {
        app = app.merge(dashboard::router());
    }
    let http: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> =
        match rest_tls {
            Some(config) => Box::pin(super::tls::serve(listener, app, config, shutdown_signal())),
            None => Box::pin(async move {
                axum::serve(super::no_delay(listener), app)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
                    .map_err(anyhow::Error::from)
            }),
        };
    tokio::select! {
        served = http => served.context("the server failed")?,
        // A background part that stops on its own is a failure of the server.
        Some(ended) = background.join_next() => {
            ended.context("a part of the server panicked")??;
            bail!("a part of the server stopped unexpectedly");
        }
    }
    // One grace period for all of it: with the database away, nothing below may wait
    // for it longer (what is not committed by then resumes at the next start).
    let grace = Duration::from_secs(args.shutdown_grace);
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!("skein server: shutting down (within {grace:?})");
    stop.cancel();
    let parts = tokio::time::timeout_at(deadline, async {
        while let Some(ended) = background.join_next().await {
            if let Ok(Err(e)) = ended {
                eprintln!("skein server: {e:#}");
            }
        }
    });
    if parts.await.is_err() {
        tracing::warn!(
            "skein server: {} part(s) did not stop within {grace:?} (is the database away?); stopping them",
            background.len()
        );
        background.abort_all();
    }
    service.shutdown_by(deadline).await;
    placement.shutdown().await;
    Ok(())
}

/// The workers' `/metrics`, for the dashboard's server page.
struct WorkerLoad(Arc<runtime::Workers>);

impl api::WorkerMetrics for WorkerLoad {
    fn metrics(
        &self,
        wait: Duration,
    ) -> futures::future::BoxFuture<'_, Vec<(String, Result<String, String>)>> {
        Box::pin(self.0.metrics(wait))
    }
}

/// The lease settings of a server on a shared database, `None` on SQLite.
fn cluster(args: &Args) -> Result<Option<api::Cluster>> {
    let Some(url) = &args.database else {
        return Ok(None);
    };
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        bail!(
            "--database must be a postgres:// URL (without it, the journal is the SQLite file under --data-dir)"
        );
    }
    let seconds = |name: &str, value: f64| -> Result<Duration> {
        Duration::try_from_secs_f64(value)
            .ok()
            .filter(|d| *d >= Duration::from_millis(100))
            .with_context(|| format!("--{name} must be at least 0.1 seconds, not {value}"))
    };
    let lease = seconds("lease", args.lease)?;
    let renew_every = match args.renew_every {
        Some(value) => seconds("renew-every", value)?,
        None => lease / 3,
    };
    if renew_every >= lease {
        bail!(
            "--renew-every ({renew_every:?}) must be shorter than --lease ({lease:?}), or leases lapse between renewals"
        );
    }
    if args.max_executions == 0 {
        bail!("--max-executions must be at least 1");
    }
    let node = match &args.node_name {
        Some(name) => name.clone(),
        None => {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "skein".into());
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            format!("{host}-{}-{}", std::process::id(), &suffix[..6])
        }
    };
    Ok(Some(api::Cluster {
        node,
        lease,
        renew_every,
        capacity: args.max_executions,
        // Known once the listener is bound.
        url: String::new(),
    }))
}

/// A database URL without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The progress callbacks of the arguments, ready to run.
async fn callbacks(
    args: &Args,
    endpoint: &str,
    service: &api::Service,
) -> Result<api::callbacks::Callbacks> {
    let mut options = api::callbacks::Options::new(endpoint);
    // Servers on one database take turns reporting for all.
    options.turn = service
        .options()
        .cluster
        .as_ref()
        .map(|c| api::callbacks::Turn {
            owner: c.node.clone(),
            lease: c.lease,
        });
    options.api_key = args.callback_api_key.clone();
    options.tls = !args.callback_plaintext;
    options.max_age = Duration::from_secs(args.callback_max_age);
    options.max_backoff = Duration::from_secs(args.callback_max_backoff.max(1));
    if let Some(ca) = &args.callback_ca {
        options.ca_pem = Some(
            std::fs::read(ca)
                .with_context(|| format!("cannot read --callback-ca {}", ca.display()))?,
        );
    }
    if options.url().starts_with("http://") && !args.callback_plaintext {
        tracing::warn!(
            "skein server: progress reports to {endpoint} travel without TLS (the endpoint says http://)"
        );
    }
    Ok(
        api::callbacks::Callbacks::new(service.store().clone(), service.metrics().clone(), options)
            .await?,
    )
}

/// SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// The URL callers reach the REST API at: `--public-url`, or the address `--listen`
/// bound.
fn public_url(args: &Args, bound: std::net::SocketAddr) -> String {
    if let Some(url) = &args.public_url {
        return url.as_str().to_string();
    }
    let mut listen = bound;
    if listen.ip().is_unspecified() {
        listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{listen}")
}
