//! `skein server` accepting OpenID Connect ID tokens: a local issuer serves discovery and
//! its keys (RS256 and ES256, from the test keys in `oidc/`, which protect nothing), and
//! tokens it signs are presented over REST, SSE and gRPC. Valid ones get the project and
//! role of the first matching rule; expired, early, wrongly addressed, foreign, tampered,
//! unsigned and HMAC-signed ones are refused with a reason; a key the issuer publishes
//! only later is picked up once the refresh interval has passed, not before.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::server::{free_port, healthy};

const AUDIENCE: &str = "https://skein.test";

/// The issuer's published keys and how often they were fetched.
#[derive(Default)]
struct Published {
    keys: Vec<Value>,
    fetches: u64,
}

type Shared = Arc<Mutex<Published>>;

/// A local issuer on loopback: its URL and its published keys.
async fn issuer(keys: Vec<Value>) -> (String, Shared) {
    let shared = Shared::default();
    shared.lock().unwrap().keys = keys;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let discovery = json!({
        "issuer": base,
        "jwks_uri": format!("{base}/keys"),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    });
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/keys",
            get(|State(shared): State<Shared>| async move {
                let mut published = shared.lock().unwrap();
                published.fetches += 1;
                axum::Json(json!({ "keys": published.keys }))
            }),
        )
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, shared)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/oidc");
    std::fs::read_to_string(path.join(name)).unwrap()
}

/// A signing key with its kid.
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl Key {
    fn rsa(name: &str) -> Key {
        Key {
            kid: name.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(fixture(&format!("{name}.pem")).as_bytes())
                .unwrap(),
            jwk: serde_json::from_str(&fixture(&format!("{name}.jwk.json"))).unwrap(),
        }
    }

    /// A P-256 key made now.
    fn ec(kid: &str) -> Key {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Key {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..]),
            }),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// Claims of a token from `iss` for `email`, good for an hour.
fn claims(iss: &str, email: &str) -> Value {
    json!({
        "iss": iss,
        "aud": AUDIENCE,
        "sub": format!("sub-{email}"),
        "email": email,
        "email_verified": true,
        "iat": now(),
        "exp": now() + 3600,
    })
}

/// The status and error message of GET `url` with `token`.
async fn status_of(client: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
    (status, body["message"].as_str().unwrap_or("").to_string())
}

/// Replaces a token's payload, keeping its header and signature.
fn tampered(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_of_a_trusted_issuer_are_checked_and_mapped_by_rules() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rsa = Key::rsa("rsa-1");
    let rotated = Key::rsa("rsa-2");
    let ec = Key::ec("ec-1");
    let (iss, published) = issuer(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    // Another issuer with the same keys: its tokens must not pass as the first's.
    let (stranger, _) = issuer(vec![rsa.jwk.clone()]).await;

    let dir = tempfile::tempdir().unwrap();
    let (port, grpc_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let mut server =
        crate::server::background(&["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc_port}")])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--oidc-issuer", &iss, "--oidc-audience", AUDIENCE])
            .args(["--oidc-rule", "email=*@example.com:render:run"])
            .args(["--oidc-rule", "groups=auditors:render:read"])
            .args(["--oidc-refresh", "2"])
            .spawn()
            .unwrap();
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let list = format!("{base}/v1/executions");

    // Nothing, or a token no issuer made, gets 401.
    let response = client.get(&list).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(status_of(&client, &list, "not-a-token").await.0, 401);

    // Valid RS256 and ES256 tokens act in the project of their rule.
    let ada = rsa.sign(&claims(&iss, "ada@example.com"));
    assert_eq!(status_of(&client, &list, &ada).await, (200, String::new()));
    assert_eq!(
        status_of(&client, &list, &ec.sign(&claims(&iss, "bob@example.com"))).await,
        (200, String::new())
    );
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: hello, version: '1.0.0'}
do:
  - hi:
      set: { said: hello }
";
    let started = client
        .post(format!("{base}/v1/executions?wait=30s"))
        .bearer_auth(&ada)
        .json(&json!({"workflow": workflow, "id": "by-ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 201);
    let body: Value = started.json().await.unwrap();
    assert_eq!(body["output"], json!({"said": "hello"}), "{body}");

    // The execution is in the rule's project, which the token's listing shows.
    let response = client.get(&list).bearer_auth(&ada).send().await.unwrap();
    let listed: Value = response.json().await.unwrap();
    assert!(listed.to_string().contains("by-ada"), "{listed}");

    // SSE with the token.
    let events = client
        .get(format!("{base}/v1/executions/by-ada/events?follow=false"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    assert!(events.text().await.unwrap().contains("workflow.completed"));
    let events = client
        .get(format!("{base}/v1/executions/by-ada/events?follow=false"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status().as_u16(), 401);

    // A read rule's caller may list but not start.
    let mut auditor = claims(&iss, "eve@elsewhere.org");
    auditor["groups"] = json!(["staff", "auditors"]);
    let auditor = rsa.sign(&auditor);
    assert_eq!(status_of(&client, &list, &auditor).await.0, 200);
    let refused = client
        .post(&list)
        .bearer_auth(&auditor)
        .json(&json!({"workflow": workflow}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);

    // A valid token that no rule matches is 403, with who it was.
    let (status, message) =
        status_of(&client, &list, &rsa.sign(&claims(&iss, "mallory@evil.org"))).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("mallory@evil.org"), "{message}");
    // An address its issuer has not verified matches no `email` rule.
    let mut unverified = claims(&iss, "ada@example.com");
    unverified["email_verified"] = json!(false);
    assert_eq!(
        status_of(&client, &list, &rsa.sign(&unverified)).await.0,
        403
    );

    // Refusals, each with its reason.
    let refusals = [
        ("exp", json!(now() - 600), "expired"),
        ("nbf", json!(now() + 600), "not valid yet"),
        ("aud", json!("https://other.test"), "another audience"),
        ("iss", json!(stranger.clone()), "not one this server trusts"),
    ];
    for (claim, value, reason) in refusals {
        let mut c = claims(&iss, "ada@example.com");
        c[claim] = value;
        let (status, message) = status_of(&client, &list, &rsa.sign(&c)).await;
        assert_eq!(status, 401, "{claim}: {message}");
        assert!(message.contains(reason), "{claim}: {message}");
    }
    // Within the minute of skew, a token just expired still passes.
    let mut c = claims(&iss, "ada@example.com");
    c["exp"] = json!(now() - 5);
    assert_eq!(status_of(&client, &list, &rsa.sign(&c)).await.0, 200);

    // A payload changed after signing: a different e-mail on Ada's signature.
    let forged = tampered(&ada, &claims(&iss, "root@example.com"));
    let (status, message) = status_of(&client, &list, &forged).await;
    assert_eq!(status, 401);
    assert!(message.contains("signature"), "{message}");

    // `alg: none` and HMAC (with the public key as the secret) are refused outright.
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims(&iss, "ada@example.com").to_string())
    );
    let (status, message) = status_of(&client, &list, &unsigned).await;
    assert_eq!(status, 401, "{message}");
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&iss, "ada@example.com"),
        &EncodingKey::from_secret(rsa.jwk["n"].as_str().unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, message) = status_of(&client, &list, &hmac).await;
    assert_eq!(status, 401);
    assert!(message.contains("RS256 and ES256 only"), "{message}");

    // A key the issuer does not publish yet: refused, and the keys are fetched again at
    // most once per refresh interval (two seconds here).
    let next = rotated.sign(&claims(&iss, "ada@example.com"));
    let (status, message) = status_of(&client, &list, &next).await;
    assert_eq!(status, 401);
    assert!(message.contains("`rsa-2` is not among"), "{message}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    published.lock().unwrap().keys.push(rotated.jwk.clone());
    let fetches = published.lock().unwrap().fetches;
    for _ in 0..5 {
        assert_eq!(status_of(&client, &list, &next).await.0, 200);
    }
    assert_eq!(
        published.lock().unwrap().fetches,
        fetches + 1,
        "one fetch picked up the rotated key"
    );
    // Then flooding with unknown kids costs nothing until the interval passes again.
    let mut bogus = Key::rsa("rsa-1");
    bogus.kid = "made-up".into();
    let fetches = published.lock().unwrap().fetches;
    for _ in 0..10 {
        assert_eq!(
            status_of(&client, &list, &bogus.sign(&claims(&iss, "x@example.com")))
                .await
                .0,
            401
        );
    }
    assert!(published.lock().unwrap().fetches <= fetches + 1);

    // gRPC: the same tokens in `authorization` metadata.
    let mut runner = crate::server::runner(grpc_port).await;
    let request = |token: &str| {
        let mut request = tonic::Request::new(api::grpc::pb::ExecutionRef {
            execution_id: "by-ada".into(),
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    let got = runner.get(request(&ada)).await.unwrap().into_inner();
    assert_eq!(got.id, "by-ada");
    let mut expired = claims(&iss, "ada@example.com");
    expired["exp"] = json!(now() - 600);
    let refused = runner.get(request(&rsa.sign(&expired))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("expired"), "{refused:?}");

    server.kill().await.unwrap();
}

/// The configuration file's `oidc:` section: issuers with audiences of their own, rules
/// limited to one issuer; a mistake in it is refused at start with where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_file_sets_issuers_and_rules_per_issuer() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rsa = Key::rsa("rsa-1");
    let (iss, _) = issuer(vec![rsa.jwk.clone()]).await;
    let (other, _) = issuer(vec![rsa.jwk.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skein.yaml");
    std::fs::write(
        &config,
        format!(
            "oidc:
  issuers:
    - {{issuer: '{iss}', audiences: ['{AUDIENCE}']}}
    - {{issuer: '{other}', audiences: [ci]}}
  rules:
    - {{claim: sub, match: 'repo:my-org/*', project: ci, role: run, issuer: '{other}'}}
    - {{claim: email, match: '*@example.com', project: render, role: read}}
"
        ),
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = crate::server::background(&["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let list = format!("{base}/v1/executions");
    let mut ci = claims(&other, "ci@example.com");
    ci["aud"] = json!("ci");
    ci["sub"] = json!("repo:my-org/app:ref:refs/heads/main");
    assert_eq!(status_of(&client, &list, &rsa.sign(&ci)).await.0, 200);
    // The same subject from the first issuer: the `sub` rule is the other issuer's, and
    // no e-mail rule matches it.
    let mut elsewhere = claims(&iss, "ci@nowhere.org");
    elsewhere["sub"] = json!("repo:my-org/app:ref:refs/heads/main");
    assert_eq!(
        status_of(&client, &list, &rsa.sign(&elsewhere)).await.0,
        403
    );
    // Each issuer's own audiences.
    let mut wrong = claims(&other, "ci@example.com");
    wrong["sub"] = json!("repo:my-org/app");
    assert_eq!(status_of(&client, &list, &rsa.sign(&wrong)).await.0, 401);

    std::fs::write(
        &config,
        format!("oidc:\n  issuers: [{{issuer: '{iss}', audiences: [x]}}]\n  rules:\n    - {{claim: email, match: '*', project: p, role: boss}}\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["server", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("oidc.rules[0]") && stderr.contains("`boss` is not a role"),
        "{stderr}"
    );
}
