//! `skein healthcheck`: asks a skein process on this machine whether it is healthy, for a
//! container's `HEALTHCHECK` (the image has no shell and no curl) and for scripts. Exit 0
//! on a 2xx answer, 1 otherwise, with the reason on stderr.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args as ClapArgs;

/// Checks that a skein server, worker or bridge answers its health endpoint.
#[derive(ClapArgs)]
#[command(
    after_help = "Examples:\n  skein healthcheck\n  skein healthcheck --url http://127.0.0.1:9000/healthz"
)]
pub(crate) struct Args {
    /// The URL to GET [default: http://127.0.0.1:$PORT/healthz, port 8080 without PORT].
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// How long to wait for the answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    timeout: u64,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let url = args.url.unwrap_or_else(|| {
        let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
        format!("http://127.0.0.1:{}/healthz", port.trim())
    });
    super::block_on(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(args.timeout.max(1)))
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                eprintln!("skein healthcheck: {e}");
                return ExitCode::from(1);
            }
        };
        match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
            Ok(response) => {
                eprintln!("skein healthcheck: {url} answered {}", response.status());
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("skein healthcheck: {url}: {e}");
                ExitCode::from(1)
            }
        }
    })
}
