//! `skein bench --ui`: what the dashboard's executions list costs with a large store.
//! Fills a fresh SQLite journal (or PostgreSQL database, with `--postgres`) with
//! `--executions` executions (several workflows, statuses, labels and creation times),
//! serves the REST API on loopback, and times the requests the list page makes: the
//! first page, each filter, the next page, and the dashboard's own page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use engine::{Engine, SystemClock};
use futures::StreamExt as _;
use serde_json::json;
use store::{Batch, NewExecution, Status, StatusChange};

/// The workflows the executions are spread over.
const NAMES: [&str; 5] = ["render", "ingest", "report", "notify", "cleanup"];

/// Measures on `postgres`, or on a fresh SQLite journal when `None`.
pub(crate) async fn bench(
    postgres: Option<Arc<store::postgres::PostgresStore>>,
    executions: usize,
    runs: usize,
) -> Result<()> {
    if executions == 0 || runs == 0 {
        bail!("--executions and --runs must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn store::Store> = match &postgres {
        Some(store) => store.clone(),
        None => super::open_journal(dir.path(), false)?.0,
    };
    let began = Instant::now();
    let now = jiff::Timestamp::now().as_millisecond();
    // One creation a millisecond apart, oldest first, ending now.
    let first = now - executions as i64;
    let filler = store.clone();
    let mut creations = futures::stream::iter(0..executions)
        .map(|i| {
            let store = filler.clone();
            async move { fill(&*store, i, first + i as i64).await }
        })
        .buffer_unordered(256);
    let mut done: usize = 0;
    while let Some(result) = creations.next().await {
        result?;
        done += 1;
        if done.is_multiple_of(20_000) {
            eprintln!("skein bench: {done} executions stored");
        }
    }
    drop(creations);
    println!(
        "stored {executions} executions in {:.1} s",
        began.elapsed().as_secs_f64()
    );

    let engine = Arc::new(Engine::new(
        store,
        Arc::new(runtime::Runtime::new()),
        Arc::new(SystemClock),
    ));
    let service = api::Service::new(engine);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = api::app(service).merge(dashboard::router());
    tokio::spawn(async move {
        let _ = axum::serve(super::no_delay(listener), app).await;
    });
    let client = reqwest::Client::new();
    let rounds: &[&str] = match &postgres {
        Some(_) => &["right after the load", "after ANALYZE"],
        None => &[""],
    };
    for (i, round) in rounds.iter().enumerate() {
        if i == 1
            && let Some(postgres) = &postgres
        {
            postgres.analyze().await?;
        }
        if !round.is_empty() {
            println!("{round}:");
        }
        measure(&client, &base, first, executions, runs).await?;
    }
    Ok(())
}

/// Times each request of the list page `runs` times, over executions created from
/// `first` (milliseconds) on, one a millisecond.
async fn measure(
    client: &reqwest::Client,
    base: &str,
    first: i64,
    executions: usize,
    runs: usize,
) -> Result<()> {
    let first_page = get(client, &format!("{base}/v1/executions?limit=50")).await?;
    let cursor = first_page["nextCursor"]
        .as_str()
        .context("the first page has no next cursor")?
        .to_string();
    let window_end = jiff::Timestamp::from_millisecond(first + executions as i64 / 2)?;
    let window_start = jiff::Timestamp::from_millisecond(first + executions as i64 / 4)?;
    let queries = [
        ("first page (50)", "/v1/executions?limit=50".to_string()),
        (
            "next page",
            format!("/v1/executions?limit=50&cursor={cursor}"),
        ),
        (
            "status=faulted",
            "/v1/executions?limit=50&status=faulted".into(),
        ),
        ("name=report", "/v1/executions?limit=50&name=report".into()),
        (
            "label=team:audio",
            "/v1/executions?limit=50&label=team:audio".into(),
        ),
        (
            "time range",
            format!("/v1/executions?limit=50&since={window_start}&until={window_end}"),
        ),
        ("dashboard page", "/ui/".into()),
    ];
    println!("{runs} runs each, through HTTP on loopback:");
    for (what, path) in queries {
        let url = format!("{base}{path}");
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let began = Instant::now();
            let response = client.get(&url).send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            if !status.is_success() {
                bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
            }
            times.push(began.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let pct =
            |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "  {what:<18} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            pct(0.5),
            pct(0.99),
            times[times.len() - 1]
        );
    }
    Ok(())
}

/// Stores execution `i`, created at `at`: most completed, one in 20 faulted, one in 50
/// still running, spread over [`NAMES`], every tenth labelled `team: audio`.
async fn fill(store: &dyn store::Store, i: usize, at: i64) -> Result<()> {
    let mut labels = store::Labels::new();
    labels.insert(
        "team".into(),
        if i.is_multiple_of(10) {
            "audio"
        } else {
            "video"
        }
        .into(),
    );
    store
        .create(NewExecution {
            id: format!("bench-{i:07}"),
            namespace: "bench".into(),
            name: NAMES[i % NAMES.len()].into(),
            version: "1.0.0".into(),
            definition:
                "document: {dsl: '1.0.3', namespace: bench, name: x, version: '1.0.0'}\ndo: []"
                    .into(),
            input: json!({"item": i}),
            labels,
            project: store::DEFAULT_PROJECT.into(),
            created_at: at,
        })
        .await?;
    if i.is_multiple_of(50) {
        return Ok(());
    }
    let faulted = i % 20 == 7;
    let ticket = store.commit(Batch {
        execution: format!("bench-{i:07}"),
        status: Some(StatusChange {
            status: if faulted {
                Status::Faulted
            } else {
                Status::Completed
            },
            output: (!faulted).then(|| json!({"square": i * i})),
            error: faulted.then(|| json!({"type": "runtime", "status": 500, "title": "failed"})),
            at: at + 250,
        }),
        ..Default::default()
    });
    store.durable(ticket).await?;
    Ok(())
}

async fn get(client: &reqwest::Client, url: &str) -> Result<serde_json::Value> {
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(url).send())
        .await
        .context("timed out")??;
    Ok(response.error_for_status()?.json().await?)
}
