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
    /// The URL to GET [default: /healthz on SKEIN_LISTEN's port, else on $PORT, else on
    /// 8080, at 127.0.0.1].
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// How long to wait for one answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    timeout: u64,

    /// Keep asking, for up to this many seconds, until the answer is healthy (for a
    /// service manager's start-up check).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    wait: u64,
}

/// `/healthz` on this machine at the port the server was told to use.
fn default_url() -> String {
    let listen = std::env::var("SKEIN_LISTEN")
        .ok()
        .and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok());
    let port = match listen {
        Some(address) => address.port().to_string(),
        None => std::env::var("PORT").map_or_else(|_| "8080".into(), |p| p.trim().to_string()),
    };
    format!("http://127.0.0.1:{port}/healthz")
}

pub(crate) fn run(args: Args) -> ExitCode {
    let url = args.url.unwrap_or_else(default_url);
    let deadline = std::time::Instant::now() + Duration::from_secs(args.wait);
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
        loop {
            let why = match client.get(&url).send().await {
                Ok(response) if response.status().is_success() => return ExitCode::SUCCESS,
                Ok(response) => format!("{url} answered {}", response.status()),
                Err(e) => format!("{url}: {e}"),
            };
            if std::time::Instant::now() >= deadline {
                eprintln!("skein healthcheck: {why}");
                return ExitCode::from(1);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
