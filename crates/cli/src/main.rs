//! The `skein` binary: argument parsing and dispatch to the commands.
//!
//! Data goes to stdout; diagnostics, progress and errors go to stderr.
//! Exit codes: 0 success, 1 the input was invalid (or the work failed), 2 usage errors.

mod commands;
mod progress;
mod telemetry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// skein: a durable workflow orchestrator for the CNCF Serverless Workflow DSL.
#[derive(Parser)]
#[command(name = "skein", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Which logs to write: error, warn, info, debug or trace, or a filter in RUST_LOG's
    /// syntax (`info,api=debug`) [default: SKEIN_LOG, LOG_LEVEL or RUST_LOG, else info].
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,

    /// How logs look on stderr: `text`, or `json` (one object per line with Cloud
    /// Logging's fields: severity, message, time, logging.googleapis.com/trace).
    #[arg(
        long,
        global = true,
        env = "SKEIN_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: telemetry::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    Bench(commands::bench::Args),
    Bridge(commands::bridge::Args),
    CallbackSink(commands::callback_sink::Args),
    Demo(commands::demo::Args),
    Exec(commands::exec::Args),
    Healthcheck(commands::healthcheck::Args),
    Run(commands::run::Args),
    Server(Box<commands::server::Args>),
    Test(commands::test::Args),
    Upload(commands::upload::Args),
    Validate(commands::validate::Args),
    Worker(commands::worker::Args),
    Workflows(commands::workflows::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS provider for every client and server of the process (reqwest and tonic
    // are built without a default one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Traces, when OTEL_EXPORTER_OTLP_ENDPOINT asks for them, are sent when this drops.
    let _telemetry = match telemetry::init(cli.log_level.as_deref(), cli.log_format) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("skein: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Bench(args) => commands::bench::run(args),
        Command::Bridge(args) => commands::bridge::run(args),
        Command::CallbackSink(args) => commands::callback_sink::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Exec(args) => commands::exec::run(args),
        Command::Healthcheck(args) => commands::healthcheck::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Server(args) => commands::server::run(*args),
        Command::Test(args) => commands::test::run(args),
        Command::Upload(args) => commands::upload::run(args),
        Command::Validate(args) => commands::validate::run(args),
        Command::Worker(args) => commands::worker::run(args),
        Command::Workflows(args) => commands::workflows::run(args),
    }
}
