//! `skein bench --render`: the distributed render's speed beside a single-process render
//! of the same plan, and the overhead of a `run` task dispatched to a worker beside the
//! same command run directly.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

/// Sequential `run` tasks timed for the per-task overhead.
const TASKS: usize = 50;

pub(crate) async fn bench(rounds: usize) -> Result<()> {
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let params = render::Params::default();
    let (mut speedups, mut overheads) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let single = {
            let params = params.clone();
            let started = Instant::now();
            tokio::task::spawn_blocking(move || render::render_whole(&params)).await?;
            started.elapsed()
        };
        let dir = tempfile::tempdir()?;
        let (_, _, distributed) = super::demo::render_job(&params, 8, 16, dir.path(), None).await?;
        let speedup = single.as_secs_f64() / distributed.as_secs_f64();
        let (through_worker, direct) = run_task_overhead(dir.path()).await?;
        let overhead = (through_worker.as_secs_f64() - direct.as_secs_f64()) / TASKS as f64;
        println!(
            "round {round}: render {}x{}x{} frames single-process {:.3} s, distributed {:.3} s, speed-up {speedup:.2}; {TASKS} `run` tasks {:.3} s, direct {:.3} s, overhead {:.2} ms per task",
            params.width,
            params.height,
            params.frames,
            single.as_secs_f64(),
            distributed.as_secs_f64(),
            through_worker.as_secs_f64(),
            direct.as_secs_f64(),
            overhead * 1000.0
        );
        speedups.push(speedup);
        overheads.push(overhead * 1000.0);
    }
    let speedup = super::bench::median(&mut speedups);
    let overhead = super::bench::median(&mut overheads);
    println!(
        "median of {rounds} rounds: render speed-up {speedup:.2} (range {:.2} to {:.2}); `run` task overhead {overhead:.2} ms (range {:.2} to {:.2})",
        speedups[0],
        speedups[speedups.len() - 1],
        overheads[0],
        overheads[overheads.len() - 1],
    );
    Ok(())
}

/// [`TASKS`] sequential `run: shell` tasks of `true` through the embedded worker, and the
/// same commands run directly one after another.
async fn run_task_overhead(dir: &std::path::Path) -> Result<(Duration, Duration)> {
    let mut source = String::from(
        "document: {dsl: '1.0.3', namespace: bench, name: runs, version: '1.0.0'}\ndo:\n",
    );
    for i in 0..TASKS {
        source.push_str(&format!(
            "  - t{i}:\n      run: {{ shell: {{ command: 'true' }} }}\n"
        ));
    }
    let placement = super::workers_embedded(true).await?;
    let (store, _) = super::open_journal(dir, false)?;
    let engine = engine::Engine::new(
        store,
        std::sync::Arc::new(runtime::Runtime::new().with_workers(placement.workers.clone())),
        std::sync::Arc::new(engine::SystemClock),
    );
    let parsed = dsl::parse(&source, &dsl::Options::default());
    let Some(workflow) = parsed.workflow else {
        bail!("the benchmark workflow does not validate");
    };
    let started = Instant::now();
    let id = engine.create(&source, &workflow, None, json!({})).await?;
    let outcome = engine
        .run(&id, json!({}), tokio_util::sync::CancellationToken::new())
        .await?;
    let through_worker = started.elapsed();
    placement.shutdown().await;
    if !matches!(outcome, engine::Outcome::Completed(_)) {
        bail!("the `run` tasks did not complete: {outcome:?}");
    }
    let started = Instant::now();
    for _ in 0..TASKS {
        let status = tokio::process::Command::new("sh")
            .args(["-c", "true"])
            .status()
            .await?;
        if !status.success() {
            bail!("`sh -c true` failed");
        }
    }
    Ok((through_worker, started.elapsed()))
}
