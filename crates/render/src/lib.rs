//! The render example's worker service, on the action-handler SDK: `plan` splits a
//! Mandelbrot zoom into chunks of frames, `renderChunk` renders one chunk into object
//! storage, `assemble` checks every chunk's SHA-256 and joins them into one Y4M video
//! (and an MP4 when `ffmpeg` is installed and the storage is local).
//!
//! The plan carries a hash over everything that determines the pixels; a chunk or an
//! assembly whose plan hash does not match its parameters is refused before any work,
//! as a non-retryable error. The errors worth no retry are declared once, in
//! [`RenderError`], and classified in [`service`].

pub mod frames;

use std::sync::Arc;

use objects::Objects;
use serde::{Deserialize, Serialize};

pub use frames::Params;

/// Errors that a retry cannot fix: the service answers them with 400.
#[derive(Debug)]
pub enum RenderError {
    InvalidParams(String),
    PlanHashMismatch {
        expected: String,
        given: String,
    },
    BadChunk(String),
    ChunkCorrupt {
        index: u32,
        expected: String,
        found: String,
    },
}

impl RenderError {
    /// The `error` code of the 400 reply.
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::InvalidParams(_) => "invalid_params",
            RenderError::PlanHashMismatch { .. } => "plan_hash_mismatch",
            RenderError::BadChunk(_) => "bad_chunk",
            RenderError::ChunkCorrupt { .. } => "chunk_corrupt",
        }
    }
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::InvalidParams(why) => {
                write!(f, "the render parameters are not usable: {why}")
            }
            RenderError::PlanHashMismatch { expected, given } => write!(
                f,
                "the plan hash {given} does not match the parameters (their hash is {expected}); refusing before any work"
            ),
            RenderError::BadChunk(why) => write!(f, "the chunk is not part of the plan: {why}"),
            RenderError::ChunkCorrupt {
                index,
                expected,
                found,
            } => write!(
                f,
                "chunk {index} has SHA-256 {found}, not the {expected} recorded when it was rendered"
            ),
        }
    }
}

impl std::error::Error for RenderError {}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    objects::sha256_hex(bytes)
}

/// The plan hash: SHA-256 of the parameters as JSON, in their declared order.
pub fn plan_hash(p: &Params) -> String {
    sha256(&serde_json::to_vec(p).expect("parameters serialize"))
}

/// A range of frames, `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub index: u32,
    pub start: u32,
    pub end: u32,
}

/// Chunks of `per_chunk` frames; the last absorbs the remainder. No frames: no chunks.
pub fn chunks(frames: u32, per_chunk: u32) -> Vec<Chunk> {
    let per_chunk = per_chunk.max(1);
    let count = frames / per_chunk;
    (0..count)
        .map(|i| Chunk {
            index: i,
            start: i * per_chunk,
            end: if i + 1 == count {
                frames
            } else {
                (i + 1) * per_chunk
            },
        })
        .collect()
}

/// The whole video in one process: what the distributed render must equal, byte for
/// byte.
pub fn render_whole(p: &Params) -> Vec<u8> {
    let mut out = frames::header(p);
    out.extend(frames::render(p, 0, p.frames));
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanRequest {
    job_id: String,
    #[serde(default)]
    params: Params,
    #[serde(default = "default_per_chunk")]
    frames_per_chunk: u32,
    #[serde(default = "default_concurrency")]
    concurrency: u32,
}

fn default_per_chunk() -> u32 {
    8
}

fn default_concurrency() -> u32 {
    16
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Plan {
    job_id: String,
    plan_hash: String,
    params: Params,
    chunks: Vec<Chunk>,
    concurrency: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChunkRequest {
    job_id: String,
    plan_hash: String,
    params: Params,
    chunk: Chunk,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rendered {
    pub index: u32,
    pub key: String,
    pub sha256: String,
    pub frames: u32,
    pub bytes: u64,
}

/// The CPU time of the calling thread so far, in seconds (0 where it cannot be read).
fn thread_cpu_seconds() -> f64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssembleRequest {
    job_id: String,
    plan_hash: String,
    params: Params,
    chunks: Vec<Rendered>,
}

fn check_plan(p: &Params, given: &str) -> Result<(), RenderError> {
    if let Some(why) = p.problem() {
        return Err(RenderError::InvalidParams(why));
    }
    let expected = plan_hash(p);
    if expected != given {
        return Err(RenderError::PlanHashMismatch {
            expected,
            given: given.to_string(),
        });
    }
    Ok(())
}

fn check_job(id: &str) -> Result<(), RenderError> {
    if id.contains('/') {
        return Err(RenderError::InvalidParams(
            "`jobId` must be one name".into(),
        ));
    }
    objects::check_key(id).map_err(|e| RenderError::InvalidParams(e.to_string()))
}

/// The service: its actions, over `store`.
pub fn service(store: Objects) -> sdk::Service {
    let store = Arc::new(store);
    let (chunk_store, assemble_store) = (store.clone(), store);
    sdk::Service::new("render")
        .action("plan", |_ctx, request: PlanRequest| async move {
            check_job(&request.job_id)?;
            if let Some(why) = request.params.problem() {
                return Err(RenderError::InvalidParams(why).into());
            }
            Ok(Plan {
                plan_hash: plan_hash(&request.params),
                chunks: chunks(request.params.frames, request.frames_per_chunk),
                concurrency: request.concurrency.clamp(1, 1024),
                params: request.params,
                job_id: request.job_id,
            })
        })
        .action(
            "renderChunk",
            move |ctx: sdk::Context, request: ChunkRequest| {
                let store = chunk_store.clone();
                async move {
                    check_job(&request.job_id)?;
                    check_plan(&request.params, &request.plan_hash)?;
                    let Chunk { index, start, end } = request.chunk;
                    if start >= end || end > request.params.frames {
                        return Err(RenderError::BadChunk(format!(
                            "frames {start}..{end} of {}",
                            request.params.frames
                        ))
                        .into());
                    }
                    let params = request.params.clone();
                    let (bytes, cpu_seconds) = tokio::task::spawn_blocking(move || {
                        let before = thread_cpu_seconds();
                        let bytes = frames::render(&params, start, end);
                        (bytes, thread_cpu_seconds() - before)
                    })
                    .await?;
                    // Reported even if storing the chunk fails next: the work was done.
                    ctx.add_cpu_seconds(cpu_seconds);
                    let key = format!("{}/chunk-{index:05}.y4mf", request.job_id);
                    let sha256 = sha256(&bytes);
                    let len = bytes.len() as u64;
                    store.put(&key, bytes).await?;
                    Ok(Rendered {
                        index,
                        key,
                        sha256,
                        frames: end - start,
                        bytes: len,
                    })
                }
            },
        )
        .action("assemble", move |_ctx, request: AssembleRequest| {
            let store = assemble_store.clone();
            async move { assemble(&store, request).await }
        })
        .non_retryable(|e| {
            e.downcast_ref::<RenderError>()
                .map(|r| r.code().to_string())
        })
}

async fn assemble(store: &Objects, request: AssembleRequest) -> anyhow::Result<serde_json::Value> {
    check_job(&request.job_id)?;
    check_plan(&request.params, &request.plan_hash)?;
    let mut chunks = request.chunks;
    chunks.sort_by_key(|c| c.index);
    // The chunks must cover every frame once, in order.
    let covered: u32 = chunks.iter().map(|c| c.frames).sum();
    if covered != request.params.frames || chunks.is_empty() {
        return Err(RenderError::BadChunk(format!(
            "the chunks hold {covered} frames, the plan {}",
            request.params.frames
        ))
        .into());
    }
    let mut video = frames::header(&request.params);
    for chunk in &chunks {
        if !chunk.key.starts_with(&format!("{}/", request.job_id)) {
            return Err(RenderError::BadChunk(format!("`{}` is not this job's", chunk.key)).into());
        }
        let bytes = store.get(&chunk.key).await?;
        let found = sha256(&bytes);
        if found != chunk.sha256 {
            return Err(RenderError::ChunkCorrupt {
                index: chunk.index,
                expected: chunk.sha256.clone(),
                found,
            }
            .into());
        }
        video.extend_from_slice(&bytes);
    }
    let key = format!("{}/render.y4m", request.job_id);
    let digest = sha256(&video);
    let len = video.len();
    let url = store.put(&key, video).await?;
    let mp4 = mp4(&url).await;
    Ok(serde_json::json!({
        "output": url.as_str(),
        "mp4": mp4,
        "frames": request.params.frames,
        "bytes": len,
        "sha256": digest,
    }))
}

/// An MP4 beside a local Y4M, when `ffmpeg` is installed; `None` otherwise.
async fn mp4(y4m: &url::Url) -> Option<String> {
    let path = y4m.to_file_path().ok()?;
    let out = path.with_extension("mp4");
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&path)
        .args(["-pix_fmt", "yuv420p"])
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .ok()?;
    status.success().then(|| out.display().to_string())
}
