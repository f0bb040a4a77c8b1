//! `skein demo render`: the distributed render on the embedded defaults. It starts the
//! render service (`crates/render`) on a loopback port, runs the render workflow on the
//! embedded engine with live per-chunk progress, and reports the video, its frames and
//! what it cost.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use engine::{Engine, Outcome, SystemClock};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The render workflow, built in, so that the demo runs from anywhere.
const RENDER_WORKFLOW: &str = include_str!("../../../../examples/render/render.yaml");

/// Run a bundled demonstration on the embedded defaults.
#[derive(ClapArgs)]
pub(crate) struct Args {
    #[command(subcommand)]
    demo: Demo,
}

#[derive(Subcommand)]
enum Demo {
    /// Render a Mandelbrot zoom in parallel chunks (plan -> chunks -> assemble), through
    /// a render service on the action-handler SDK and the workflow in
    /// examples/render/render.yaml; print the video's path, its frames and its cost.
    Render(RenderArgs),

    /// Serve the render example's worker service alone (POST / with the actions plan,
    /// renderChunk and assemble; GET /healthz), to deploy on a container platform
    /// (examples/render/deploy) and run examples/render/render.yaml against it from any
    /// skein: `skein run examples/render/render.yaml --input '{"service": URL, …}'`.
    /// Listens on 0.0.0.0:$PORT when PORT is set (as Cloud Run asks), else on --listen;
    /// stops on SIGTERM once the requests in flight are answered.
    RenderService(RenderServiceArgs),
}

#[derive(ClapArgs)]
struct RenderServiceArgs {
    /// Where to listen when PORT is not set.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// Where chunks and videos go: a directory or file://, or s3://, gs://, az:// with
    /// skein built with the s3, gcs or azure feature (configured from the environment:
    /// AWS_*, GOOGLE_*, AZURE_*).
    #[arg(
        long,
        env = "SKEIN_RENDER_OBJECTS",
        value_name = "URL",
        default_value = ".skein/objects/render"
    )]
    objects: String,
    /// Where objects may be written: URL prefixes (bucket and key prefix),
    /// comma-separated, or `*`; the plan's and chunks' URLs are checked against it.
    #[arg(long, env = "SKEIN_OBJECT_ALLOWLIST", value_name = "LIST")]
    allowlist: Option<String>,
}

#[derive(ClapArgs)]
struct RenderArgs {
    /// Frames of the video.
    #[arg(long, default_value_t = 48)]
    frames: u32,
    #[arg(long, default_value_t = 320)]
    width: u32,
    #[arg(long, default_value_t = 180)]
    height: u32,
    /// Frames in each chunk (the last chunk takes the remainder).
    #[arg(long, default_value_t = 8)]
    frames_per_chunk: u32,
    /// Chunks rendered at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// Where the journal and the objects (chunks, video) go.
    #[arg(long, value_name = "DIR", default_value = ".skein")]
    data_dir: PathBuf,
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::block_on(async {
        let result = match args.demo {
            Demo::Render(args) => render(args).await,
            Demo::RenderService(args) => render_service(args).await,
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("skein: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}

/// A render on the embedded defaults under `data_dir`; the workflow's output, the
/// events of its execution, and how long it took.
pub(crate) async fn render_job(
    params: &render::Params,
    frames_per_chunk: u32,
    concurrency: u32,
    data_dir: &std::path::Path,
    progress: Option<Arc<crate::progress::Progress>>,
) -> Result<(serde_json::Value, Vec<store::Event>, std::time::Duration)> {
    let objects_dir = data_dir.join("objects").join("render");
    let store = objects::Objects::open(
        objects_dir
            .to_str()
            .context("the data directory is not UTF-8")?,
        objects::Allowlist::everything(),
    )?;
    // The render service, logging to a file rather than over the progress line.
    std::fs::create_dir_all(data_dir)?;
    let log = std::fs::File::create(data_dir.join("render-service.log"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let service = format!("http://{}", listener.local_addr()?);
    let app = render::service(store).log_to(log).router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(super::no_delay(listener), app).await;
    });
    let (journal, _) = super::open_journal(data_dir, false)?;
    let mut engine = Engine::new(
        journal.clone(),
        Arc::new(runtime::Runtime::new()),
        Arc::new(SystemClock),
    );
    if let Some(progress) = progress {
        engine = engine.with_observer(progress);
    }
    let parsed = dsl::parse(RENDER_WORKFLOW, &dsl::Options::default());
    let Some(workflow) = parsed.workflow else {
        bail!("the built-in render workflow does not validate");
    };
    if let Some(why) = params.problem() {
        bail!("{why}");
    }
    let job = format!("job-{}", jiff::Timestamp::now().as_millisecond());
    let input = json!({
        "service": service, "jobId": job, "params": params,
        "framesPerChunk": frames_per_chunk, "concurrency": concurrency,
    });
    let started = std::time::Instant::now();
    let id = engine
        .create(RENDER_WORKFLOW, &workflow, None, input)
        .await?;
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let outcome = engine.run(&id, json!({}), cancel).await;
    let elapsed = started.elapsed();
    ctrl_c.abort();
    server.abort();
    let output = match outcome? {
        Outcome::Completed(output) => output,
        Outcome::Faulted(problem) => {
            bail!(
                "the render failed at {}: {}",
                problem.instance.unwrap_or_default(),
                problem.detail.or(problem.title).unwrap_or_default()
            )
        }
        Outcome::Cancelled => bail!("the render was cancelled"),
    };
    let events = journal.events(&id, 0, usize::MAX).await?;
    Ok((output, events, elapsed))
}

async fn render_service(args: RenderServiceArgs) -> Result<ExitCode> {
    let listen = match std::env::var("PORT") {
        Ok(port) => std::net::SocketAddr::from((
            [0, 0, 0, 0],
            port.parse::<u16>()
                .with_context(|| format!("PORT must be a port number, not `{port}`"))?,
        )),
        Err(_) => args.listen,
    };
    let allow = objects::Allowlist::parse(args.allowlist.as_deref())?;
    let store = objects::Objects::open(&args.objects, allow)
        .with_context(|| format!("cannot use {} for the render's objects", args.objects))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!(
        "skein render service listening on http://{} (objects in {})",
        listener.local_addr()?,
        args.objects
    );
    let app = render::service(store).router();
    axum::serve(super::no_delay(listener), app)
        .with_graceful_shutdown(super::server::shutdown_signal())
        .await
        .context("the render service failed")?;
    Ok(ExitCode::SUCCESS)
}

async fn render(args: RenderArgs) -> Result<ExitCode> {
    let params = render::Params {
        width: args.width,
        height: args.height,
        frames: args.frames,
        ..Default::default()
    };
    eprintln!(
        "skein: rendering {} frames of {}x{} in chunks of {}, {} at a time",
        args.frames, args.width, args.height, args.frames_per_chunk, args.concurrency
    );
    let progress = Arc::new(crate::progress::Progress::new());
    let result = render_job(
        &params,
        args.frames_per_chunk,
        args.concurrency,
        &args.data_dir,
        Some(progress.clone()),
    )
    .await;
    progress.finish();
    let (output, events, elapsed) = result?;

    // What it cost: the CPU of every chunk rendering the service reported (failed and
    // retried attempts too), a request per metered call, a step per task attempt.
    let data: Vec<(String, serde_json::Value)> = events
        .iter()
        .map(|e| (e.type_.clone(), e.data.value()))
        .collect();
    let costing = super::report::Costing::of(data.iter().map(|(t, d)| (t.as_str(), d)));
    let cost = costing.total(&super::report::Rates::load(None)?);
    println!("{}", output["output"].as_str().unwrap_or_default());
    if let Some(mp4) = output["mp4"].as_str() {
        println!("{mp4}");
    }
    eprintln!(
        "skein: {} frames, {} bytes, in {:.1} s; cost ${cost:.6} ({:.2} vCPU-s, {} requests of which {} failed, {} steps)",
        output["frames"],
        output["bytes"],
        elapsed.as_secs_f64(),
        costing.cpu_seconds,
        costing.attempts,
        costing.failed,
        costing.steps,
    );
    Ok(ExitCode::SUCCESS)
}
