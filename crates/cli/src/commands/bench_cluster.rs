//! `skein bench --postgres` and `--replicas`: the figures on PostgreSQL, on a database
//! the user names or on a throwaway cluster started from the system's binaries, and
//! executions/s through one, two, three… `skein server` replicas sharing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use store::postgres::{Options, PostgresStore};
use testkit::postgres::TempCluster;

/// The PostgreSQL the benchmark uses.
pub(crate) struct Postgres {
    /// The user's database, or none (then a fresh database on `cluster` each time).
    url: Option<String>,
    cluster: Option<TempCluster>,
    made: AtomicUsize,
}

impl Postgres {
    /// `url`, or a throwaway cluster when it is empty.
    pub(crate) async fn new(url: &str) -> Result<Postgres> {
        if !url.is_empty() {
            return Ok(Postgres {
                url: Some(url.to_string()),
                cluster: None,
                made: AtomicUsize::new(0),
            });
        }
        let cluster = TempCluster::start()
            .context("cannot start a throwaway PostgreSQL")?
            .context("no PostgreSQL server binaries here (initdb, pg_ctl); install the postgresql package, set SKEIN_PG_BIN, or give --postgres URL")?;
        eprintln!(
            "skein bench: a throwaway PostgreSQL on 127.0.0.1:{} ({})",
            cluster.port(),
            cluster.path().display()
        );
        Ok(Postgres {
            url: None,
            cluster: Some(cluster),
            made: AtomicUsize::new(0),
        })
    }

    /// A database to measure on: the user's, or a fresh one.
    async fn database(&self) -> Result<String> {
        match (&self.url, &self.cluster) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(cluster)) => {
                let n = self.made.fetch_add(1, Ordering::Relaxed);
                Ok(cluster.database(&format!("bench{n}"))?)
            }
            (None, None) => unreachable!("a URL or a cluster"),
        }
    }

    pub(crate) async fn store(&self) -> Result<Arc<dyn store::Store>> {
        Ok(self.postgres_store().await?)
    }

    /// A store on a database to measure on, as its own type.
    pub(crate) async fn postgres_store(&self) -> Result<Arc<PostgresStore>> {
        let url = self.database().await?;
        let store = PostgresStore::connect(Options::new(&url), Duration::from_secs(10)).await?;
        Ok(Arc::new(store))
    }
}

/// Executions/s through `count` replicas, for each count: closed-loop `clients` spread
/// round-robin over the replicas for `seconds`, each starting an execution of three
/// HTTP calls and waiting for its end.
pub(crate) async fn replicas(
    postgres: &Postgres,
    counts: &[usize],
    clients: usize,
    seconds: u64,
) -> Result<()> {
    if counts.contains(&0) || clients == 0 || seconds == 0 {
        bail!("--replicas counts, --replica-clients and --replica-seconds must be at least 1");
    }
    let noop = super::bench::noop_server().await?;
    let three = super::bench_api::three_calls(&noop);
    let body = serde_json::to_vec(&json!({"workflow": three, "input": {}}))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    for &count in counts {
        let database = postgres.database().await?;
        let mut servers = Vec::new();
        let mut bases = Vec::new();
        for i in 0..count {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            servers.push(
                tokio::process::Command::new(std::env::current_exe()?)
                    .args(["server", "--no-grpc", "--listen"])
                    .arg(format!("127.0.0.1:{port}"))
                    .args(["--database", &database, "--node-name"])
                    .arg(format!("bench-{i}"))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .context("cannot start a skein server replica")?,
            );
            bases.push(format!("http://127.0.0.1:{port}"));
        }
        for base in &bases {
            healthy(&client, base).await?;
        }
        // A few executions first, so that connections and caches are warm.
        for base in &bases {
            for _ in 0..5 {
                super::bench_api::start(&client, base, body.clone()).await?;
            }
        }
        let done = Arc::new(AtomicUsize::new(0));
        let until = Instant::now() + Duration::from_secs(seconds);
        let began = Instant::now();
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                let (client, base, body, done) = (
                    client.clone(),
                    bases[c % bases.len()].clone(),
                    body.clone(),
                    done.clone(),
                );
                tokio::spawn(async move {
                    while Instant::now() < until {
                        super::bench_api::start(&client, &base, body.clone()).await?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.await??;
        }
        let rate = done.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64();
        println!(
            "{count} replica{}: {rate:.0} completed executions/s ({clients} clients, {seconds} s, 3 HTTP calls each)",
            if count == 1 { "" } else { "s" }
        );
        for mut server in servers {
            let _ = server.kill().await;
        }
    }
    Ok(())
}

async fn healthy(client: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the replica at {base} did not come up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
