//! `skein callback-sink`: a small receiver of progress callbacks (the
//! skein.v1.ProgressCallback service), to see them work and to test against.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use api::grpc::pb;
use clap::Args as ClapArgs;
use tonic::{Request, Response, Status};

/// Receive progress reports from `skein server --callback-endpoint` and print them.
///
/// Serves the skein.v1.ProgressCallback gRPC service (proto/skein/v1/callback.proto) and
/// writes each report it accepts as one line of JSON, to stdout or appended to --output.
/// With --api-key it accepts only reports carrying `authorization: Bearer <key>`.
#[derive(ClapArgs)]
#[command(
    after_help = "Example:\n  skein callback-sink --listen 127.0.0.1:9091 --output reports.jsonl &\n  skein server --callback-endpoint 127.0.0.1:9091 --callback-plaintext"
)]
pub(crate) struct Args {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9091")]
    listen: SocketAddr,

    /// Append reports to this file (JSON lines) instead of printing them.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Accept only reports with this key.
    #[arg(
        long,
        env = "SKEIN_CALLBACK_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,

    /// TLS certificate chain (PEM); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// TLS private key (PEM); with --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::run_to_exit(serve(args))
}

struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
    api_key: Option<String>,
}

#[tonic::async_trait]
impl pb::progress_callback_server::ProgressCallback for Sink {
    async fn report_progress(
        &self,
        request: Request<pb::ProgressEvent>,
    ) -> Result<Response<pb::ProgressAck>, Status> {
        if let Some(key) = &self.api_key {
            let presented = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if presented != Some(key.as_str()) {
                return Err(Status::unauthenticated(
                    "this sink needs `authorization: Bearer <its --api-key>`",
                ));
            }
        }
        let r = request.into_inner();
        let line = serde_json::json!({
            "executionId": r.execution_id,
            "eventType": r.event_type,
            "workflowName": r.workflow_name,
            "status": r.status,
            "message": r.message,
            "sequence": r.sequence,
            "task": r.task,
            "timeMs": r.time_ms,
            "project": r.project,
        });
        let mut out = self.out.lock().expect("sink lock");
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| Status::unavailable(format!("the sink cannot write: {e}")))?;
        Ok(Response::new(pb::ProgressAck {}))
    }
}

async fn serve(args: Args) -> Result<()> {
    let out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let sink = Arc::new(Sink {
        out: Mutex::new(out),
        api_key: args.api_key.clone(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut builder = tonic::transport::Server::builder();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let identity = tonic::transport::Identity::from_pem(
            std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?,
            std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?,
        );
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .context("the TLS certificate or key is not usable")?;
    }
    eprintln!(
        "skein callback-sink listening on {}{}, writing to {}",
        listener.local_addr()?,
        if args.tls_cert.is_some() {
            " with TLS"
        } else {
            ""
        },
        args.output
            .as_ref()
            .map_or("stdout".to_string(), |p| p.display().to_string())
    );
    builder
        .add_service(pb::progress_callback_server::ProgressCallbackServer::from_arc(sink))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            super::server::shutdown_signal(),
        )
        .await
        .context("the sink failed")
}
