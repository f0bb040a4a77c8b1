//! HTTP Digest authentication (RFC 7616) by the real binary, against a server in the
//! test that challenges and checks the answer itself (SHA-256, `qop=auth`).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::{skein, stderr};

const REALM: &str = "skein-test";
const NONCE: &str = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
const PASSWORD: &str = "Circle of Life";

fn sha256(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of `name` in a `Digest …` header, quoted or not.
fn param(header: &str, name: &str) -> Option<String> {
    let start = header.find(&format!("{name}="))? + name.len() + 1;
    let rest = &header[start..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted[..quoted.find('"')?].to_string(),
        None => rest.split(',').next()?.trim().to_string(),
    })
}

/// 401 with a challenge without credentials; 200 for the right answer, 401 otherwise.
async fn secret(
    seen: Arc<Mutex<Vec<bool>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> impl IntoResponse {
    let challenge = format!(
        "Digest realm=\"{REALM}\", qop=\"auth\", algorithm=SHA-256, nonce=\"{NONCE}\", opaque=\"xyz\""
    );
    let Some(answer) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        seen.lock().unwrap().push(false);
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", challenge)],
            axum::Json(json!({})),
        )
            .into_response();
    };
    let p = |n: &str| param(answer, n).unwrap_or_default();
    let ha1 = sha256(&format!("{}:{REALM}:{PASSWORD}", p("username")));
    let ha2 = sha256(&format!("GET:{}", p("uri")));
    let expected = sha256(&format!(
        "{ha1}:{NONCE}:{}:{}:auth:{ha2}",
        p("nc"),
        p("cnonce")
    ));
    let asked = uri.path_and_query().map(|p| p.as_str()).unwrap_or_default();
    let right = p("response") == expected
        && p("uri") == asked
        && p("opaque") == "xyz"
        && p("qop") == "auth";
    seen.lock().unwrap().push(right);
    if right {
        axum::Json(json!({"user": p("username")})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", challenge)],
            axum::Json(json!({})),
        )
            .into_response()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_authentication_answers_the_challenge() {
    let seen: Arc<Mutex<Vec<bool>>> = Arc::default();
    let app = Router::new().route(
        "/secret",
        get({
            let seen = seen.clone();
            move |uri: axum::http::Uri, headers: HeaderMap| secret(seen.clone(), uri, headers)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let workflow = |password: &str| {
        format!(
            "document: {{dsl: '1.0.3', namespace: test, name: digest, version: '1.0.0'}}
do:
  - fetch:
      call: http
      with:
        method: get
        endpoint:
          uri: {base}/secret?page=1
          authentication:
            digest:
              username: Mufasa
              password: {password}
"
        )
    };
    let file = dir.path().join("digest.yaml");
    let data = dir.path().join("data");
    let run = |text: String| {
        std::fs::write(&file, text).unwrap();
        let args: Vec<String> = vec![
            "run".into(),
            file.to_string_lossy().into_owned(),
            "--data-dir".into(),
            data.to_string_lossy().into_owned(),
        ];
        tokio::task::spawn_blocking(move || {
            skein(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let out = run(workflow(PASSWORD)).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let output: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!({"user": "Mufasa"}));
    // Challenged once, then answered right.
    assert_eq!(*seen.lock().unwrap(), [false, true]);

    seen.lock().unwrap().clear();
    let out = run(workflow("wrong")).await.unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    assert_eq!(*seen.lock().unwrap(), [false, false]);
}
