//! `skein bench`: the engine's performance figures, measured here and now.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use engine::{Engine, Outcome, SystemClock};
use futures::StreamExt;
use serde_json::{Value, json};
use store::Durability;
use store::sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

/// Measure the engine: durable steps per second, and the cost of a fan-out of HTTP calls
/// beside the same requests sent directly.
///
/// (a) runs a workflow of sequential `set` tasks with full durability (every step
/// journaled, the result on disk before it is reported) and reports steps per second.
/// (b) runs a `for` fan-out of HTTP calls to a no-op server on 127.0.0.1, and the same
/// requests sent directly with reqwest at the same concurrency, and reports the ratio.
/// Each is run several times; medians are printed last. With --postgres, (a) and (b) run
/// on PostgreSQL too, next to SQLite. With --replicas, the figure is executions/s through
/// the REST API of one, two, three… `skein server` processes sharing one PostgreSQL.
#[derive(ClapArgs)]
pub(crate) struct Args {
    /// Rounds of each measurement.
    #[arg(long, default_value_t = 5)]
    rounds: usize,

    /// Sequential `set` tasks in (a).
    #[arg(long, default_value_t = 10_000)]
    steps: usize,

    /// HTTP calls in (b).
    #[arg(long, default_value_t = 1_000)]
    calls: usize,

    /// At most this many calls at once in (b).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// Commit without waiting for the disk, to see what durability costs.
    #[arg(long)]
    fast: bool,

    /// Measure the server through its REST API instead: W1 latency of one execution of
    /// three HTTP calls at a time, W2 throughput of such executions under concurrent
    /// clients, W3 a fan-out of `--calls` calls all at once (each started with `?wait`).
    #[arg(long)]
    api: bool,

    /// With --api: sequential runs measured in W1 (after 20 warm-ups); with --ui: requests
    /// of each kind.
    #[arg(long, default_value_t = 200)]
    runs: usize,

    /// With --api: concurrent clients in W2.
    #[arg(long, default_value_t = 32, requires = "api")]
    clients: usize,

    /// With --api: how long W2 runs, in seconds.
    #[arg(long, default_value_t = 20, requires = "api")]
    seconds: u64,

    /// With --api: event-stream subscribers in E1.
    #[arg(long, default_value_t = 1000, requires = "api")]
    subscribers: usize,

    /// With --api: measure W1 alone and then beside executions that try to take the
    /// server down (runaway expressions, a loop of a million tasks), for --seconds
    /// each; report W1's p50 and p99 both ways, how each abuse ended, and the memory
    /// used above idle.
    #[arg(long, requires = "api")]
    abuse: bool,

    /// With --api: the syntax W1–W3 are written in: the Serverless Workflow DSL, or the
    /// same workloads in Google Cloud Workflows syntax (`cloud-workflows`).
    #[arg(long, value_enum, default_value_t = Syntax::ServerlessWorkflow, requires = "api")]
    syntax: Syntax,

    /// Measure the render example instead: its speed-up over a single-process render of
    /// the same plan, and the overhead of a `run` task dispatched to a worker beside
    /// running the same command directly (`--rounds` rounds).
    #[arg(long, conflicts_with = "api")]
    render: bool,

    /// Run (a) and (b) on PostgreSQL as well: on this database URL, or, with no URL, on a
    /// throwaway cluster started from the system's PostgreSQL binaries.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["api", "render"])]
    postgres: Option<String>,

    /// Measure executions/s through the REST API of this many `skein server` replicas
    /// sharing one PostgreSQL (--postgres URL, or a throwaway cluster), for each count
    /// given, such as 1,2,3: `--replica-clients` clients spread over the replicas for
    /// `--replica-seconds`, each starting an execution of three HTTP calls and waiting.
    #[arg(long, value_name = "N,…", value_delimiter = ',', conflicts_with_all = ["api", "render"])]
    replicas: Vec<usize>,

    /// With --replicas: concurrent clients.
    #[arg(long = "replica-clients", value_name = "N", default_value_t = 32)]
    replica_clients: usize,

    /// With --replicas: how long each count is measured, in seconds.
    #[arg(long = "replica-seconds", value_name = "SECONDS", default_value_t = 15)]
    replica_seconds: u64,

    /// Measure what the dashboard's executions list costs with a large store instead:
    /// fill a fresh SQLite journal (or, with --postgres, a PostgreSQL database) with
    /// --executions executions, then time the list's first page, each filter and the
    /// next page through the REST API (--runs each).
    #[arg(long, conflicts_with_all = ["api", "render", "replicas"])]
    ui: bool,

    /// With --ui: executions in the store.
    #[arg(long, default_value_t = 100_000, requires = "ui")]
    executions: usize,
}

/// The syntax of the benchmark's workflows.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Syntax {
    ServerlessWorkflow,
    CloudWorkflows,
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::block_on(async {
        match bench(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("skein: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}

async fn bench(args: Args) -> Result<()> {
    if args.render {
        return super::bench_render::bench(args.rounds).await;
    }
    if args.ui {
        let postgres = match &args.postgres {
            Some(url) => Some(super::bench_cluster::Postgres::new(url).await?),
            None => None,
        };
        let store = match &postgres {
            Some(postgres) => Some(postgres.postgres_store().await?),
            None => None,
        };
        return super::bench_ui::bench(store, args.executions, args.runs).await;
    }
    if args.api {
        let base = noop_server().await?;
        let plan = super::bench_api::Plan {
            runs: args.runs,
            clients: args.clients,
            seconds: args.seconds,
            calls: args.calls,
            subscribers: args.subscribers,
            fast: args.fast,
            abuse: args.abuse,
            cloud_workflows: args.syntax == Syntax::CloudWorkflows,
        };
        return super::bench_api::bench(plan, &base).await;
    }
    if args.rounds == 0 || args.steps == 0 || args.calls == 0 || args.concurrency == 0 {
        bail!("--rounds, --steps, --calls and --concurrency must be at least 1");
    }
    let postgres = match (&args.postgres, args.replicas.is_empty()) {
        (None, true) => None,
        (url, _) => Some(super::bench_cluster::Postgres::new(url.as_deref().unwrap_or("")).await?),
    };
    if !args.replicas.is_empty() {
        let postgres = postgres.as_ref().expect("made above");
        return super::bench_cluster::replicas(
            postgres,
            &args.replicas,
            args.replica_clients,
            args.replica_seconds,
        )
        .await;
    }
    let base = noop_server().await?;
    let mut backends = vec![Backend::Sqlite(if args.fast {
        Durability::Process
    } else {
        Durability::Full
    })];
    if let Some(postgres) = &postgres {
        backends.push(Backend::Postgres(postgres));
    }
    let mut medians = Vec::new();
    for backend in &backends {
        let (mut rates, mut ratios, mut throughputs) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=args.rounds {
            let elapsed = sequential_steps(args.steps, backend).await?;
            let rate = args.steps as f64 / elapsed.as_secs_f64();
            let fan_out = fan_out(&base, args.calls, args.concurrency, backend).await?;
            let floor = direct(&base, args.calls, args.concurrency).await?;
            let ratio = fan_out.as_secs_f64() / floor.as_secs_f64();
            println!(
                "{} round {round}: (a) {} steps in {:.3} s = {:.0} steps/s; (b) fan-out {:.3} s, direct {:.3} s, ratio {:.2}",
                backend.name(),
                args.steps,
                elapsed.as_secs_f64(),
                rate,
                fan_out.as_secs_f64(),
                floor.as_secs_f64(),
                ratio,
            );
            rates.push(rate);
            ratios.push(ratio);
            throughputs.push(args.calls as f64 / fan_out.as_secs_f64());
        }
        medians.push(format!(
            "{}: (a) {:.0} durable steps/s (range {:.0} to {:.0}); (b) fan-out/direct ratio {:.2} (range {:.2} to {:.2}), fan-out {:.0} calls/s",
            backend.name(),
            median(&mut rates),
            rates[0],
            rates[rates.len() - 1],
            median(&mut ratios),
            ratios[0],
            ratios[ratios.len() - 1],
            median(&mut throughputs),
        ));
    }
    println!("median of {} rounds:", args.rounds);
    for line in medians {
        println!("  {line}");
    }
    Ok(())
}

/// Where (a) and (b) journal.
enum Backend<'a> {
    Sqlite(Durability),
    Postgres(&'a super::bench_cluster::Postgres),
}

impl Backend<'_> {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// A fresh store, and what must live as long as it.
    async fn open(&self) -> Result<(Arc<dyn store::Store>, Option<tempfile::TempDir>)> {
        Ok(match self {
            Backend::Sqlite(durability) => {
                let dir = tempfile::tempdir()?;
                let store = SqliteStore::open(&dir.path().join("skein.db"), *durability)?;
                (Arc::new(store), Some(dir))
            }
            Backend::Postgres(postgres) => (postgres.store().await?, None),
        })
    }
}

/// Sorts `values` and returns the median.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub(crate) async fn noop_server() -> Result<String> {
    let app = axum::Router::new().fallback(|| async { axum::Json(json!({"ok": true})) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(super::no_delay(listener), app).await;
    });
    Ok(base)
}

/// Runs `source` to completion on a fresh store and returns the wall time.
async fn timed_run(source: &str, input: Value, backend: &Backend<'_>) -> Result<Duration> {
    let (store, _dir) = backend.open().await?;
    let engine = Engine::new(
        store,
        Arc::new(runtime::Runtime::new()),
        Arc::new(SystemClock),
    );
    let parsed = dsl::parse(
        source,
        &dsl::Options {
            max_bytes: usize::MAX,
            ..Default::default()
        },
    );
    let workflow = parsed
        .workflow
        .context("the benchmark workflow does not validate")?;
    let started = Instant::now();
    let id = engine.create(source, &workflow, None, input).await?;
    match engine.run(&id, json!({}), CancellationToken::new()).await? {
        Outcome::Completed(_) => Ok(started.elapsed()),
        other => bail!("the benchmark workflow did not complete: {other:?}"),
    }
}

async fn sequential_steps(steps: usize, backend: &Backend<'_>) -> Result<Duration> {
    let mut source = String::from(
        "document: {dsl: '1.0.3', namespace: bench, name: steps, version: '1.0.0'}\ndo:\n",
    );
    for i in 0..steps {
        source.push_str(&format!(
            "  - s{i}:\n      set: '${{ {{ n: (.n + 1) }} }}'\n"
        ));
    }
    timed_run(&source, json!({"n": 0}), backend).await
}

async fn fan_out(
    base: &str,
    calls: usize,
    concurrency: usize,
    backend: &Backend<'_>,
) -> Result<Duration> {
    let source = format!(
        "document: {{dsl: '1.0.3', namespace: bench, name: fan-out, version: '1.0.0'}}
do:
  - fan:
      for: {{ in: '[range({calls})]', concurrency: {concurrency} }}
      do:
        - call:
            call: http
            with:
              method: get
              endpoint: '${{ \"{base}/noop/\\($item)\" }}'
"
    );
    timed_run(&source, json!({}), backend).await
}

/// The floor: the same requests, sent directly with reqwest at the same concurrency.
async fn direct(base: &str, calls: usize, concurrency: usize) -> Result<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(0..calls)
        .map(|i| {
            let client = client.clone();
            let url = format!("{base}/noop/{i}");
            async move {
                let response = client.get(url).send().await?;
                response.bytes().await?;
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<Result<()>>()?;
    Ok(started.elapsed())
}
