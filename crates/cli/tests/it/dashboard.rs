//! The dashboard, end to end: `skein server` with a token and the render service as
//! real processes, and `ui/e2e/dashboard.mjs` driving headless Chromium through them
//! (log in, start the render example and watch its fan-out bar reach 100% live, open a
//! failing execution, pause and resume, deep links, filters, a 10,000-task fan-out). Any
//! console error fails it. With SKEIN_SCREENSHOTS=DIR the script writes each page's
//! screenshot there (`docs/dashboard/` holds the committed ones). Also: the files'
//! headers, and `--no-ui`.
//!
//! It needs node, Chromium (Debian's `chromium`, or CHROMIUM) and `ui/node_modules`
//! (`npm ci` in `ui/`); where one is missing it says so and is skipped, unless
//! SKEIN_REQUIRE_BROWSER=1 (as `.ci/run` sets) makes that a failure.

use std::path::PathBuf;
use std::time::Duration;

use crate::server::{background, free_port};

/// The browser, or why there is none.
fn chromium() -> Result<PathBuf, String> {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("no Chromium at {} (set CHROMIUM)", path.display()))
    }
}

/// What the test runs with, or `None`, said aloud, where something is missing.
fn tools() -> Option<PathBuf> {
    let modules = crate::repo().join("ui/node_modules/playwright-core");
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = match (chromium(), modules.is_dir(), node) {
        (Ok(browser), true, true) => return Some(browser),
        (Err(why), _, _) => why,
        (_, false, _) => "no ui/node_modules (run `npm ci` in ui/)".to_string(),
        (_, _, false) => "no node on the PATH".to_string(),
    };
    let message = format!(
        "the dashboard's end-to-end test needs node, Chromium and ui/node_modules: {missing}"
    );
    assert!(
        std::env::var("SKEIN_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "{message}"
    );
    eprintln!("SKIPPED: {message}");
    None
}

async fn listening(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_browser() {
    let Some(browser) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (port, render_port) = (free_port(), free_port());
    let (token, reader) = ("dashboard-e2e-token", "dashboard-e2e-reader");
    let hex = |secret: &str| -> String {
        let sha = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
        sha.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    };

    let _render = background(&["demo", "render-service", "--objects"])
        .arg(dir.path().join("objects"))
        .env("PORT", render_port.to_string())
        .env("SKEIN_OBJECT_ALLOWLIST", "*")
        .spawn()
        .unwrap();
    let _server = background(&["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("journal"))
        .env(
            "SKEIN_TOKENS",
            format!("default:admin:{},default:read:{}", hex(token), hex(reader)),
        )
        .spawn()
        .unwrap();
    listening(render_port).await;
    listening(port).await;

    let mut script = tokio::process::Command::new("node");
    script
        .arg(crate::repo().join("ui/e2e/dashboard.mjs"))
        .current_dir(crate::repo().join("ui"))
        .env("SKEIN_URL", format!("http://127.0.0.1:{port}"))
        .env("SKEIN_TOKEN", token)
        .env("SKEIN_READ_TOKEN", reader)
        .env("RENDER_SERVICE", format!("http://127.0.0.1:{render_port}"))
        .env(
            "RENDER_WORKFLOW",
            crate::repo().join("examples/render/render.yaml"),
        )
        .env("CHROMIUM", &browser)
        .kill_on_drop(true);
    if let Some(shots) = std::env::var_os("SKEIN_SCREENSHOTS") {
        script.env("SCREENSHOTS", shots);
    }
    let out = tokio::time::timeout(Duration::from_secs(600), script.output())
        .await
        .expect("the browser test ended within 10 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("dashboard e2e: passed"), "{stdout}");
}

/// The files are served with their security headers and a page's path gets the app;
/// `--no-ui` serves none of it, and the API stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_unless_turned_off() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for no_ui in [false, true] {
        let port = free_port();
        let mut command = background(&["server", "--listen", &format!("127.0.0.1:{port}")]);
        command
            .arg("--data-dir")
            .arg(dir.path().join(format!("journal-{no_ui}")));
        if no_ui {
            command.arg("--no-ui");
        }
        let _server = command.spawn().unwrap();
        listening(port).await;
        let base = format!("http://127.0.0.1:{port}");
        let root = client.get(format!("{base}/")).send().await.unwrap();
        let page = client
            .get(format!("{base}/ui/executions/some-id"))
            .send()
            .await
            .unwrap();
        let api = client
            .get(format!("{base}/v1/executions"))
            .send()
            .await
            .unwrap();
        assert_eq!(api.status().as_u16(), 200);
        if no_ui {
            assert_eq!((root.status().as_u16(), page.status().as_u16()), (404, 404));
            continue;
        }
        assert_eq!(root.status().as_u16(), 307);
        assert_eq!(root.headers()["location"], "/ui/");
        assert_eq!(page.status().as_u16(), 200);
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert_eq!(page.headers()["cache-control"], "no-cache");
        let html = page.text().await.unwrap();
        let script = html
            .split("src=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page loads a script");
        let asset = client.get(format!("{base}{script}")).send().await.unwrap();
        assert_eq!(asset.status().as_u16(), 200);
        assert!(
            asset.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }
}
