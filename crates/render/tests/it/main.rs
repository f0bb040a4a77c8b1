//! The render example end to end: the workflow in `examples/render/render.yaml` on the
//! real engine and journal, calling the render service on a loopback port (through a
//! proxy that fails requests, when a test wants it), with chunks in a local object store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use engine::{Engine, Outcome, SystemClock};
use serde_json::{Value, json};
use store::Durability;
use store::sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

fn small() -> render::Params {
    render::Params {
        width: 64,
        height: 36,
        frames: 20,
        max_iterations: 120,
        ..Default::default()
    }
}

/// The render service over a local object store in `dir`; its URL.
async fn service(dir: &std::path::Path) -> String {
    let store =
        objects::Objects::open(dir.to_str().unwrap(), objects::Allowlist::everything()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = render::service(store).log_to(std::io::sink()).router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// What the proxy does to request number `n` (from 0) with body `body`.
type Fault = Arc<dyn Fn(usize, &mut Value) -> Option<Response> + Send + Sync>;

/// A proxy to `target` that counts requests by action and lets `fault` answer (or
/// rewrite) them.
async fn proxy(target: String, fault: Fault) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let (client, target, fault, log, count) = (
            client.clone(),
            target.clone(),
            fault.clone(),
            log.clone(),
            count.clone(),
        );
        async move {
            let mut request: Value = serde_json::from_slice(&body).unwrap();
            log.lock()
                .unwrap()
                .push(request["action"].as_str().unwrap_or_default().to_string());
            let n = count.fetch_add(1, Ordering::SeqCst);
            if let Some(response) = fault(n, &mut request) {
                return response;
            }
            let answer = client
                .post(&target)
                .header("content-type", "application/json")
                .body(request.to_string())
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(answer.bytes().await.unwrap()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Runs the example workflow against `service` on a fresh journal.
async fn run(
    service: &str,
    params: &render::Params,
    per_chunk: u32,
) -> (Outcome, Vec<store::Event>) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("skein.db"), Durability::Full).unwrap());
    let engine = Engine::new(
        store,
        Arc::new(runtime::Runtime::new()),
        Arc::new(SystemClock),
    );
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/render/render.yaml"
    ))
    .unwrap();
    let parsed = dsl::parse(&source, &dsl::Options::default());
    let workflow = parsed
        .workflow
        .unwrap_or_else(|| panic!("{:#?}", parsed.diagnostics));
    let input = json!({
        "service": service, "jobId": "job-1", "params": params, "framesPerChunk": per_chunk,
    });
    let id = engine
        .create(&source, &workflow, None, input)
        .await
        .unwrap();
    let outcome = engine
        .run(&id, json!({}), CancellationToken::new())
        .await
        .unwrap();
    let events = engine.store().events(&id, 0, 100_000).await.unwrap();
    (outcome, events)
}

fn output_bytes(outcome: &Outcome) -> Vec<u8> {
    let Outcome::Completed(output) = outcome else {
        panic!("the render did not complete: {outcome:?}");
    };
    let url = url::Url::parse(output["output"].as_str().unwrap()).unwrap();
    std::fs::read(url.to_file_path().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributed_render_equals_the_single_process_one_byte_for_byte() {
    let objects = tempfile::tempdir().unwrap();
    let url = service(objects.path()).await;
    let params = small();
    let (outcome, events) = run(&url, &params, 6).await;
    let bytes = output_bytes(&outcome);
    assert_eq!(bytes, render::render_whole(&params), "the videos differ");
    assert_eq!(
        bytes.len(),
        render::frames::header(&params).len() + 20 * params.frame_len()
    );
    let Outcome::Completed(output) = &outcome else {
        unreachable!()
    };
    assert_eq!(output["frames"], 20);
    // Three chunks (6, 6 and 8 frames: the last absorbs the remainder), finishing one by
    // one: the fan-out's progress goes 1, 2, 3 of 3.
    let done: Vec<u64> = events
        .iter()
        .filter(|e| e.type_ == "dev.skein.task.progress.v1")
        .map(|e| e.data.value()["done"].as_u64().unwrap())
        .collect();
    assert_eq!(done, [1, 2, 3]);
    // Every call the service answered is metered; each chunk's reports its rendering CPU.
    let usage: Vec<Value> = events
        .iter()
        .filter(|e| e.type_ == "dev.skein.task.usage.v1")
        .map(|e| e.data.value())
        .collect();
    assert_eq!(usage.len(), 5, "plan, three chunks, assemble: {usage:?}");
    let chunk_cpu: Vec<f64> = usage
        .iter()
        .filter(|u| u["task"].as_str().unwrap().contains("renderChunk"))
        .map(|u| u["cpuSeconds"].as_f64().unwrap())
        .collect();
    assert_eq!(chunk_cpu.len(), 3);
    assert!(chunk_cpu.iter().all(|c| *c > 0.0), "{chunk_cpu:?}");
    for (index, frames) in [(0, 6), (1, 6), (2, 8)] {
        let chunk =
            std::fs::read(objects.path().join(format!("job-1/chunk-{index:05}.y4mf"))).unwrap();
        assert_eq!(chunk.len(), frames * params.frame_len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_render_survives_failing_and_dropped_requests() {
    let objects = tempfile::tempdir().unwrap();
    let target = service(objects.path()).await;
    // Of every ten requests: three answer 500 and one loses its connection mid-answer.
    let fault: Fault = Arc::new(|n, _| match n % 10 {
        1 | 4 | 7 => Some(
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(Body::from("{\"error\": \"internal\"}"))
                .unwrap(),
        ),
        9 => Some(
            Response::builder()
                .status(StatusCode::OK)
                .body(Body::from_stream(futures::stream::once(async {
                    Err::<Bytes, _>(std::io::Error::other("dropped"))
                })))
                .unwrap(),
        ),
        _ => None,
    });
    let (url, seen) = proxy(target, fault).await;
    let params = small();
    let (outcome, _) = run(&url, &params, 4).await;
    assert_eq!(output_bytes(&outcome), render::render_whole(&params));
    let seen = seen.lock().unwrap();
    assert!(seen.len() > 7, "some requests were retried: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_hash_mismatch_fails_at_once_without_retries() {
    let objects = tempfile::tempdir().unwrap();
    let target = service(objects.path()).await;
    let fault: Fault = Arc::new(|_, request| {
        if request["action"] == "renderChunk" {
            request["planHash"] = json!("0".repeat(64));
        }
        None
    });
    let (url, seen) = proxy(target, fault).await;
    let started = std::time::Instant::now();
    let (outcome, _) = run(&url, &small(), 10).await;
    let Outcome::Faulted(problem) = outcome else {
        panic!("expected a fault, got {outcome:?}");
    };
    assert_eq!(problem.status, 400, "{problem:?}");
    assert!(
        problem
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("plan hash"),
        "{problem:?}"
    );
    // No retry: each chunk asked once, and no 2 s backoff waited.
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().filter(|a| *a == "renderChunk").count() <= 2,
        "{seen:?}"
    );
    assert!(!seen.iter().any(|a| a == "assemble"), "{seen:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assembly_also_writes_an_mp4_when_ffmpeg_is_installed() {
    let found = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("SKEIN_REQUIRE_FFMPEG").as_deref() != Ok("1"),
            "SKEIN_REQUIRE_FFMPEG=1 but ffmpeg is not installed"
        );
        eprintln!("SKIPPED: ffmpeg is not installed, so the MP4 path is not tested here");
        return;
    }
    let objects = tempfile::tempdir().unwrap();
    let url = service(objects.path()).await;
    let params = small();
    let (outcome, _) = run(&url, &params, 10).await;
    let Outcome::Completed(output) = outcome else {
        panic!("the render did not complete: {outcome:?}");
    };
    let mp4 = output["mp4"].as_str().expect("an MP4 beside the Y4M");
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(mp4)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "64,36,20");
}
