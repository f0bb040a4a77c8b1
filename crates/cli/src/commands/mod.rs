//! One module per `skein` command.

pub(crate) mod batch;
pub(crate) mod bench;
pub(crate) mod bench_abuse;
pub(crate) mod bench_api;
pub(crate) mod bench_cluster;
pub(crate) mod bench_render;
pub(crate) mod bench_ui;
pub(crate) mod bridge;
pub(crate) mod callback_sink;
pub(crate) mod demo;
pub(crate) mod egress;
pub(crate) mod exec;
pub(crate) mod healthcheck;
pub(crate) mod limits;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod schedules;
pub(crate) mod server;
pub(crate) mod test;
pub(crate) mod tls;
pub(crate) mod upload;
pub(crate) mod validate;
pub(crate) mod worker;
pub(crate) mod workflows;

/// Runs a command's async body on a multi-threaded runtime with roomy thread stacks
/// (the engine's walks over deep documents recurse).
pub(crate) fn block_on(
    body: impl std::future::Future<Output = std::process::ExitCode>,
) -> std::process::ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(rt) => rt.block_on(body),
        Err(e) => {
            eprintln!("skein: cannot start the async runtime: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Runs `body` on the async runtime: exit 0 when it succeeds; otherwise its error chain
/// on stderr and exit 1.
pub(crate) fn run_to_exit(
    body: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    block_on(async {
        match body.await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("skein: {e:#}");
                std::process::ExitCode::from(1)
            }
        }
    })
}

/// Opens the journal under `data_dir`: with `fast`, commits do not wait for the disk.
/// Returns it with the database file's path, for messages.
pub(crate) fn open_journal(
    data_dir: &std::path::Path,
    fast: bool,
) -> anyhow::Result<(std::sync::Arc<dyn store::Store>, std::path::PathBuf)> {
    use anyhow::Context;
    let durability = if fast {
        store::Durability::Process
    } else {
        store::Durability::Full
    };
    let db = data_dir.join("skein.db");
    let store = store::sqlite::SqliteStore::open(&db, durability)
        .with_context(|| format!("cannot open the journal at {}", db.display()))?;
    Ok((std::sync::Arc::new(store), db))
}

/// Where `run` tasks go.
pub(crate) struct Placement {
    pub(crate) workers: std::sync::Arc<runtime::Workers>,
    /// The worker inside this process, if that is where: shut it down before exiting,
    /// so that no task outlives the process.
    pub(crate) embedded: Option<std::sync::Arc<::worker::Worker>>,
}

impl Placement {
    /// Kills the embedded worker's tasks (abandoned work is resumed from the journal,
    /// and runs again there with the same key).
    pub(crate) async fn shutdown(&self) {
        if let Some(worker) = &self.embedded {
            worker.shutdown(std::time::Duration::ZERO).await;
        }
    }
}

/// The variables every workflow is given, as `skein run` and `skein server` take them.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct WorkflowEnvArgs {
    /// A variable every workflow is given: NAME=VALUE, repeatable. Cloud Workflows
    /// documents read it with `sys.get_env("NAME")` (it overrides the GOOGLE_CLOUD_*
    /// names skein fills in, such as GOOGLE_CLOUD_LOCATION); DSL and Zigflow documents
    /// as `$env.NAME`.
    #[arg(long = "workflow-env", value_name = "NAME=VALUE", value_parser = workflow_env)]
    workflow_env: Vec<(String, String)>,

    /// Variables of this process's environment that workflows may read, as with
    /// --workflow-env: names, or prefixes ending in `*` (`API_URL,ZIGGY_*`),
    /// comma-separated or repeated. None by default, so the server's own environment
    /// and secrets stay out of reach. --workflow-env wins over a variable of the same
    /// name.
    #[arg(long = "env-allow", value_name = "NAMES", value_delimiter = ',')]
    env_allow: Vec<String>,
}

impl WorkflowEnvArgs {
    pub(crate) fn env(&self) -> std::collections::BTreeMap<String, String> {
        let allowed = |name: &str| {
            self.env_allow
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == pattern,
                })
        };
        let mut env: std::collections::BTreeMap<String, String> =
            std::env::vars().filter(|(name, _)| allowed(name)).collect();
        env.extend(self.workflow_env.iter().cloned());
        env
    }
}

/// What the calls of a workflow may reach besides HTTP URLs, as `skein run` and
/// `skein server` take it.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ResourceArgs {
    /// The directory `file:` URLs of a workflow are read under (a gRPC call's proto, a
    /// catalog, a script or schema resource); relative ones start here, and none may
    /// lead out of it.
    #[arg(long, value_name = "DIR", default_value = ".")]
    files: std::path::PathBuf,

    /// Read no local files at all: a `file:` URL fails the task that names it.
    #[arg(long, conflicts_with = "files")]
    no_files: bool,

    /// Make `call: grpc` calls to HOST:PORT over TLS (they use TLS on port 443, and
    /// plain HTTP/2 elsewhere); `*` for every service. Repeatable. The system's
    /// certificate authorities are trusted (SSL_CERT_FILE adds one).
    #[arg(long = "grpc-call-tls", value_name = "HOST:PORT")]
    grpc_call_tls: Vec<String>,

    /// Send the calls of workflows for HOST to URL instead (its scheme, host and port;
    /// path and query kept; a gRPC call's host and port), for running documents that
    /// name public services against local stand-ins. Repeatable.
    #[arg(long = "map-host", value_name = "HOST=URL", value_parser = map_host)]
    map_hosts: Vec<(String, url::Url)>,

    /// The container engine `run.container` tasks use (`podman`, `docker`, or a path),
    /// on the worker that runs them; by default whichever of podman and docker is on
    /// the worker's PATH. Its settings in this process's environment (CONTAINERS_CONF,
    /// DOCKER_HOST, …) are passed on to it.
    #[arg(long, value_name = "PROGRAM", env = "SKEIN_CONTAINER_ENGINE")]
    container_engine: Option<String>,
}

impl ResourceArgs {
    /// The effects of `runtime` with these settings.
    pub(crate) fn effects(
        &self,
        runtime: runtime::Runtime,
    ) -> anyhow::Result<std::sync::Arc<dyn engine::Effects>> {
        let mut runtime = runtime
            .with_grpc_tls(self.grpc_call_tls.clone())
            .with_container_engine(self.container_engine.clone());
        if !self.no_files {
            let root = std::fs::canonicalize(&self.files)
                .map_err(|e| anyhow::anyhow!("--files {}: {e}", self.files.display()))?;
            runtime = runtime.with_files(root);
        }
        Ok(if self.map_hosts.is_empty() {
            std::sync::Arc::new(runtime)
        } else {
            std::sync::Arc::new(runtime::HostMap::new(runtime, self.map_hosts.clone()))
        })
    }
}

/// Reads `HOST=URL`, as `--map-host` takes it.
pub(crate) fn map_host(pair: &str) -> Result<(String, url::Url), String> {
    let Some((host, target)) = pair.split_once('=') else {
        return Err(format!("`{pair}` is not HOST=URL"));
    };
    let target = url::Url::parse(target).map_err(|e| format!("`{target}` is not a URL: {e}"))?;
    Ok((host.to_string(), target))
}

fn workflow_env(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("`{pair}` is not NAME=VALUE")),
    }
}

/// Where `run` tasks go, as `skein run` and `skein server` take it.
#[derive(clap::Args)]
pub(crate) struct PlacementArgs {
    /// A worker (`skein worker`) for `run` tasks; repeat for several, or list them in
    /// SKEIN_WORKERS (comma-separated). Without any, they run on a worker inside this
    /// process.
    #[arg(
        long = "worker",
        value_name = "URL",
        env = "SKEIN_WORKERS",
        value_delimiter = ','
    )]
    workers: Vec<url::Url>,

    /// The bearer token the workers expect.
    #[arg(
        long,
        env = "SKEIN_WORKER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    worker_token: Option<String>,

    /// Without --worker: at most this many `run` tasks at once on the worker inside this
    /// process.
    #[arg(long, value_name = "N", default_value_t = 256)]
    local_tasks: usize,

    /// Send the workers a Google ID token for their URL in X-Serverless-Authorization, as
    /// Cloud Run's IAM check reads it (from GOOGLE_APPLICATION_CREDENTIALS or the
    /// metadata server), besides the worker token: for workers on Cloud Run kept private.
    #[arg(long, env = "SKEIN_WORKER_GOOGLE_ID_TOKENS", requires = "workers")]
    worker_google_id_tokens: bool,
}

/// Where `run` tasks go: the workers `args` names, or, with none, a worker embedded in
/// this process on a loopback port, with a token of its own. An embedded worker's tasks
/// inherit this process's environment when `inherit_env` (for `skein run`, whose tasks
/// are the user's own).
pub(crate) async fn workers(args: &PlacementArgs, inherit_env: bool) -> anyhow::Result<Placement> {
    if !args.workers.is_empty() {
        return Ok(Placement {
            workers: std::sync::Arc::new({
                let workers =
                    runtime::Workers::new(args.workers.clone(), args.worker_token.clone());
                match args.worker_google_id_tokens {
                    true => {
                        workers.with_google_id_tokens(runtime::google::GoogleTokens::from_env())
                    }
                    false => workers,
                }
            }),
            embedded: None,
        });
    }
    embedded(args.local_tasks, inherit_env).await
}

/// A worker embedded in this process, with the default room.
pub(crate) async fn workers_embedded(inherit_env: bool) -> anyhow::Result<Placement> {
    embedded(256, inherit_env).await
}

async fn embedded(local_tasks: usize, inherit_env: bool) -> anyhow::Result<Placement> {
    let token = uuid::Uuid::new_v4().to_string();
    let worker = ::worker::Worker::new(::worker::Options {
        id: "embedded".into(),
        concurrency: local_tasks.max(1),
        token_sha256: Some(api::auth::hash(&token)),
        inherit_env,
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = url::Url::parse(&format!("http://{}", listener.local_addr()?))?;
    let app = ::worker::app(worker.clone());
    tokio::spawn(async move {
        let _ = axum::serve(no_delay(listener), app).await;
    });
    Ok(Placement {
        workers: std::sync::Arc::new(runtime::Workers::new(vec![url], Some(token))),
        embedded: Some(worker),
    })
}

/// `listener` with Nagle's algorithm off on every connection it accepts: an SSE event
/// or a response written in pieces goes out at once, instead of waiting up to 40 ms for
/// the peer's delayed acknowledgement.
pub(crate) fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    })
}
