//! The egress policy of a server several projects share: a workflow cannot reach a
//! metadata server, whether by its name, by another name that resolves to a
//! link-local address, or through a redirect; an allowed host still works.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use serde_json::json;
use tokio::process::Command;

use crate::server::{exec, free_port, healthy};

/// sha256("s3cret")
const TOKEN_SHA256: &str = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";

/// Serves `app` on a loopback port; returns the port.
async fn serve(app: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn calls_to_metadata_servers_are_refused_by_name_address_and_redirect() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A stand-in metadata server, which must never be reached.
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let metadata = serve(Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "the server's own access token" }
    }))
    .await;
    // An allowed service, which answers and redirects to the metadata server by name.
    let target = format!("http://metadata.google.internal:{metadata}/computeMetadata/v1/token");
    let service = serve(
        Router::new()
            .route("/ok", get(|| async { axum::Json(json!({"fine": true})) }))
            .route(
                "/redirect",
                get(move || {
                    let target = target.clone();
                    async move { axum::response::Redirect::temporary(&target) }
                }),
            ),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skein.yaml");
    std::fs::write(
        &config,
        format!("tokens:\n  - project: alpha\n    role: run\n    sha256: {TOKEN_SHA256}\n"),
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .args(["--resolve", "metadata.google.internal=127.0.0.1"])
        .args(["--resolve", "sneaky.test=169.254.169.254"])
        .args(["--resolve", "service.test=127.0.0.1"])
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    healthy(&reqwest::Client::new(), &base).await;

    let call = |name: &str, endpoint: String, redirect: bool| {
        format!(
            "  - {name}:
      export:
        as: '${{ $context + {{ {name}: . }} }}'
      try:
        - call:
            call: http
            with: {{method: get, endpoint: '{endpoint}', redirect: {redirect}}}
      catch:
        as: e
        do:
          - refused:
              set: '${{ {{type: ($e.type | split(\"/\") | last), status: $e.status, detail: $e.detail}} }}'
"
        )
    };
    let flow = dir.path().join("egress.yaml");
    let mut text =
        "document: {dsl: '1.0.3', namespace: test, name: egress, version: '1.0.0'}\ndo:\n"
            .to_string();
    text += &call(
        "byName",
        format!("http://metadata.google.internal:{metadata}/computeMetadata/v1/token"),
        false,
    );
    text += &call(
        "byAddress",
        "http://sneaky.test/computeMetadata/v1/token".into(),
        false,
    );
    text += &call(
        "byRedirect",
        format!("http://service.test:{service}/redirect"),
        true,
    );
    text += &call(
        "byLiteral",
        "http://169.254.169.254/computeMetadata/v1/token".into(),
        false,
    );
    text += &call(
        "allowed",
        format!("http://service.test:{service}/ok"),
        false,
    );
    text += "output:\n  as: '${ $context }'\n";
    std::fs::write(&flow, text).unwrap();
    let (code, out, err) = exec(
        &base,
        &[
            "--token",
            "s3cret",
            "--json",
            "start",
            flow.to_str().unwrap(),
            "--wait",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let done: serde_json::Value = serde_json::from_str(&out).unwrap();
    let output = &done["output"];
    for (task, says) in [
        ("byName", "rule `metadata.google.internal`"),
        (
            "byAddress",
            "169.254.169.254 (`sneaky.test`; rule `169.254.0.0/16`)",
        ),
        ("byRedirect", "rule `metadata.google.internal`"),
        ("byLiteral", "rule `169.254.0.0/16`"),
    ] {
        assert_eq!(output[task]["type"], "authorization", "{task}: {output}");
        assert_eq!(output[task]["status"], 403, "{task}: {output}");
        let detail = output[task]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{task}: {detail}");
    }
    assert_eq!(output["allowed"], json!({"fine": true}), "{output}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the metadata server was reached"
    );
}
