//! Cloud Workflows calls with `auth: {type: OIDC|OAuth2}` carry tokens of the server's
//! own Google identity: from a stand-in metadata server (`GCE_METADATA_HOST`), and from
//! a service-account key (`GOOGLE_APPLICATION_CREDENTIALS`) whose signed JWT a
//! stand-in token endpoint checks with the key's public half. Tokens are reused until
//! near their expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::stderr;

/// What the stand-ins saw: requests by path.
type Seen = Arc<Mutex<HashMap<String, u64>>>;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An unsigned JWT-shaped token with these claims, good for an hour.
fn token(claims: Value) -> String {
    let mut claims = claims;
    claims["exp"] = json!(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600
    );
    format!(
        "{}.{}.sig",
        b64(b"{\"alg\":\"none\"}"),
        b64(claims.to_string().as_bytes())
    )
}

fn count(seen: &Seen, what: &str) {
    *seen.lock().unwrap().entry(what.to_string()).or_default() += 1;
}

/// The metadata server's identity and token endpoints, which insist on the header.
/// `public_key`: with one, the token endpoint of a service account, which checks the
/// JWT's signature with it.
async fn stand_ins(public_key: Option<Vec<u8>>) -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/identity",
            get(
                |State((seen, _)): State<(Seen, Option<Arc<Vec<u8>>>)>,
                 headers: HeaderMap,
                 Query(q): Query<HashMap<String, String>>| async move {
                    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                        return (StatusCode::FORBIDDEN, String::new());
                    }
                    count(&seen, "identity");
                    (StatusCode::OK, token(json!({"aud": q.get("audience")})))
                },
            ),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(
                |State((seen, _)): State<(Seen, Option<Arc<Vec<u8>>>)>,
                 headers: HeaderMap,
                 Query(q): Query<HashMap<String, String>>| async move {
                    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                        return (StatusCode::FORBIDDEN, axum::Json(json!({})));
                    }
                    count(&seen, "token");
                    let scopes = q.get("scopes").cloned().unwrap_or_default();
                    (StatusCode::OK, axum::Json(json!({"access_token": format!("ya29.{scopes}"), "expires_in": 3599})))
                },
            ),
        )
        .route(
            "/oauth2/token",
            post(
                |State((seen, key)): State<(Seen, Option<Arc<Vec<u8>>>)>,
                 axum::Form(form): axum::Form<HashMap<String, String>>| async move {
                    let assertion = form.get("assertion").cloned().unwrap_or_default();
                    let parts: Vec<&str> = assertion.split('.').collect();
                    let decode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
                    let signed = format!("{}.{}", parts[0], parts[1]);
                    let public = ring::signature::UnparsedPublicKey::new(
                        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                        key.as_deref().cloned().unwrap_or_default(),
                    );
                    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                        || public.verify(signed.as_bytes(), &decode(parts[2])).is_err()
                    {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_grant"})));
                    }
                    count(&seen, "exchange");
                    let claims: Value = serde_json::from_slice(&decode(parts[1])).unwrap();
                    let answer = match claims.get("target_audience") {
                        Some(aud) => json!({"id_token": token(json!({"aud": aud, "sub": claims["iss"]}))}),
                        None => json!({"access_token": format!("ya29.key.{}", claims["scope"].as_str().unwrap()), "expires_in": 3599}),
                    };
                    (StatusCode::OK, axum::Json(answer))
                },
            ),
        )
        // The service the workflow calls: what Authorization it got.
        .route(
            "/whoami",
            get(|headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                let token = auth.strip_prefix("Bearer ").unwrap_or("");
                let claims = token
                    .split('.')
                    .nth(1)
                    .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                axum::Json(json!({"token": token, "claims": claims}))
            }),
        )
        .with_state((seen.clone(), public_key.map(Arc::new)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

/// Two OIDC calls to one service (one token, reused), one with an explicit audience,
/// and one OAuth2 call.
const WORKFLOW: &str = "main:
  params: [args]
  steps:
    - first:
        call: http.get
        args:
          url: ${args.base + \"/whoami\"}
          auth:
            type: OIDC
        result: first
    - again:
        call: http.get
        args:
          url: ${args.base + \"/whoami?again=1\"}
          auth:
            type: OIDC
        result: again
    - other:
        call: http.get
        args:
          url: ${args.base + \"/whoami\"}
          auth:
            type: OIDC
            audience: https://render.example
        result: other
    - access:
        call: http.get
        args:
          url: ${args.base + \"/whoami\"}
          auth:
            type: OAuth2
            scopes: [https://www.googleapis.com/auth/devstorage.read_only]
        result: access
    - done:
        return:
          first: ${first.body.claims.aud}
          same: ${first.body.token == again.body.token}
          other: ${other.body.claims.aud}
          access: ${access.body.token}
";

/// The same calls in the Serverless Workflow DSL, through skein's `authentication:
/// {google: …}` extension.
const DSL_WORKFLOW: &str = r#"document: {dsl: '1.0.3', namespace: test, name: google-auth, version: '1.0.0'}
use:
  authentications:
    render:
      google: { type: oidc, audience: https://render.example }
do:
  - first:
      call: http
      with:
        method: get
        endpoint:
          uri: '${ $workflow.input.base + "/whoami" }'
          authentication: { google: { type: oidc } }
      export: { as: '${ $context + {first: .} }' }
  - again:
      call: http
      with:
        method: get
        endpoint:
          uri: '${ $workflow.input.base + "/whoami?again=1" }'
          authentication: { google: { type: oidc } }
      export: { as: '${ $context + {again: .} }' }
  - other:
      call: http
      with:
        method: get
        endpoint:
          uri: '${ $workflow.input.base + "/whoami" }'
          authentication: { use: render }
      export: { as: '${ $context + {other: .} }' }
  - access:
      call: http
      with:
        method: get
        endpoint:
          uri: '${ $workflow.input.base + "/whoami" }'
          authentication:
            google:
              type: oauth2
              scopes: [https://www.googleapis.com/auth/devstorage.read_only]
  - done:
      set:
        first: ${ $context.first.claims.aud }
        same: ${ $context.first.token == $context.again.token }
        other: ${ $context.other.claims.aud }
        access: ${ .token }
"#;

fn run(base: &str, env: (&str, &str)) -> Value {
    run_document(base, env, "auth.yaml", WORKFLOW)
}

fn run_document(base: &str, env: (&str, &str), name: &str, text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["run", file.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--input",
            &json!({"base": format!("http://{base}")}).to_string(),
        ])
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env(env.0, env.1)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// ID tokens per audience (the URL by default) and access tokens per scopes, from the
/// metadata server, each taken once and reused.
/// Runs `text` (saved as `name`) with tokens from a stand-in metadata server: ID tokens
/// per audience (the URL by default) and access tokens per scopes, each taken once and
/// reused.
async fn with_metadata_tokens(name: &'static str, text: &'static str) {
    let (base, seen) = stand_ins(None).await;
    let answer = tokio::task::spawn_blocking({
        let base = base.clone();
        move || run_document(&base, ("GCE_METADATA_HOST", &base), name, text)
    })
    .await
    .unwrap();
    assert_eq!(
        answer,
        json!({
            "first": format!("http://{base}/whoami"),
            "same": true,
            "other": "https://render.example",
            "access": "ya29.https://www.googleapis.com/auth/devstorage.read_only",
        })
    );
    // One identity token per audience (the second call reused the first's), one access token.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        (seen.get("identity"), seen.get("token")),
        (Some(&2), Some(&1)),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_the_metadata_server() {
    with_metadata_tokens("auth.yaml", WORKFLOW).await;
}

/// The DSL's `authentication: {google: …}` extension takes the same tokens the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dsl_takes_google_tokens_through_its_authentication_extension() {
    with_metadata_tokens("auth.sw.yaml", DSL_WORKFLOW).await;
}

/// The same from a service-account key: a JWT signed with it (checked with its public
/// half) exchanged at its token URI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_a_service_account_key() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("key.pem");
    let generated = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .output()
        .expect("runs openssl");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let pem_text = std::fs::read_to_string(&pem).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            pem_text
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let public = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .unwrap()
        .public()
        .as_ref()
        .to_vec();
    let (base, seen) = stand_ins(Some(public)).await;
    let key = dir.path().join("key.json");
    std::fs::write(
        &key,
        json!({
            "type": "service_account",
            "client_email": "render@demo.iam.gserviceaccount.com",
            "private_key": pem_text,
            "token_uri": format!("http://{base}/oauth2/token"),
        })
        .to_string(),
    )
    .unwrap();
    let answer = tokio::task::spawn_blocking({
        let (base, key) = (base.clone(), key.to_str().unwrap().to_string());
        move || run(&base, ("GOOGLE_APPLICATION_CREDENTIALS", &key))
    })
    .await
    .unwrap();
    assert_eq!(answer["first"], format!("http://{base}/whoami"));
    assert_eq!(answer["same"], true);
    assert_eq!(answer["other"], "https://render.example");
    assert_eq!(
        answer["access"],
        "ya29.key.https://www.googleapis.com/auth/devstorage.read_only"
    );
    assert_eq!(
        seen.lock().unwrap().get("exchange"),
        Some(&3),
        "signed and exchanged three times"
    );
}

/// Without a usable identity, the call faults with an authentication error saying why.
#[test]
fn a_call_without_a_google_identity_fails_with_an_authentication_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.yaml");
    std::fs::write(
        &file,
        "- call:\n    call: http.get\n    args:\n      url: http://127.0.0.1:9/x\n      auth:\n        type: OIDC\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["run", file.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("GOOGLE_APPLICATION_CREDENTIALS", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("errors/authentication") && text.contains("missing.json"),
        "{text}"
    );
}

/// Connectors call the services' REST APIs: Cloud Storage, Pub/Sub and Secret Manager,
/// here stand-ins named by the usual emulator variables (and skein's own for Secret
/// Manager, which has no emulator). A connector skein does not run is a warning when the
/// document is checked, and a SystemError when the step runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_call_the_services_rest_apis() {
    use axum::body::Bytes;
    use axum::extract::Path;
    use axum::http::Method;
    use axum::routing::any;

    let stored = Arc::new(Mutex::new(HashMap::<String, String>::new()));
    let app = Router::new()
        .route(
            "/{*path}",
            any(
                |State(stored): State<Arc<Mutex<HashMap<String, String>>>>,
                 method: Method,
                 Path(path): Path<String>,
                 Query(q): Query<HashMap<String, String>>,
                 body: Bytes| async move {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let answer = match (method.as_str(), path.as_str()) {
                        ("POST", "upload/storage/v1/b/media/o") => {
                            let name = q.get("name").cloned().unwrap_or_default();
                            stored.lock().unwrap().insert(name.clone(), text.clone());
                            json!({"bucket": "media", "name": name, "size": text.len().to_string(), "uploadType": q.get("uploadType")})
                        }
                        ("GET", "storage/v1/b/media/o") => {
                            let items: Vec<Value> = stored.lock().unwrap().keys()
                                .filter(|k| k.starts_with(q.get("prefix").map_or("", String::as_str)))
                                .map(|k| json!({"name": k})).collect();
                            json!({"items": items})
                        }
                        ("GET", p) if p.starts_with("storage/v1/b/media/o/") => {
                            let name = p.trim_start_matches("storage/v1/b/media/o/");
                            match stored.lock().unwrap().get(name) {
                                Some(v) => json!({"name": name, "size": v.len().to_string()}),
                                None => return (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": 404}}))),
                            }
                        }
                        ("DELETE", p) if p.starts_with("storage/v1/b/media/o/") => {
                            stored.lock().unwrap().remove(p.trim_start_matches("storage/v1/b/media/o/"));
                            json!({})
                        }
                        ("POST", "v1/projects/demo/topics/renders:publish") => {
                            let sent: Value = serde_json::from_str(&text).unwrap_or_default();
                            json!({"messageIds": [format!("{}", sent["messages"].as_array().map_or(0, Vec::len))]})
                        }
                        ("GET", "v1/projects/demo/secrets/api-key/versions/latest:access") => {
                            json!({"name": "projects/demo/secrets/api-key/versions/3",
                                   "payload": {"data": base64::engine::general_purpose::STANDARD.encode("hunter2")}})
                        }
                        _ => return (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": 404, "path": path}}))),
                    };
                    (StatusCode::OK, axum::Json(answer))
                },
            ),
        )
        .with_state(stored);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let workflow = "main:
  steps:
    - upload:
        call: googleapis.storage.v1.objects.insert
        args:
          bucket: media
          name: renders/j1.mp4
          body: \"not really a video\"
        result: uploaded
    - list:
        call: googleapis.storage.v1.objects.list
        args:
          bucket: media
          prefix: renders/
        result: listed
    - get:
        call: googleapis.storage.v1.objects.get
        args:
          bucket: media
          object: renders/j1.mp4
        result: got
    - publish:
        call: googleapis.pubsub.v1.projects.topics.publish
        args:
          topic: projects/demo/topics/renders
          body:
            messages:
              - data: ${base64.encode(text.encode(\"done\"))}
        result: published
    - secret:
        call: googleapis.secretmanager.v1.projects.secrets.versions.accessString
        args:
          project_id: demo
          secret_id: api-key
        result: key
    - remove:
        call: googleapis.storage.v1.objects.delete
        args:
          bucket: media
          object: renders/j1.mp4
    - gone:
        try:
          call: googleapis.storage.v1.objects.get
          args:
            bucket: media
            object: renders/j1.mp4
        except:
          as: e
          steps:
            - note:
                assign:
                  - missing: ${e.code}
    - other:
        try:
          call: googleapis.compute.v1.instances.list
          args:
            project: demo
            zone: europe-west1-b
        except:
          as: e
          steps:
            - note2:
                assign:
                  - unavailable: ${e.message}
    - done:
        return:
          uploaded: ${uploaded.size}
          upload_type: ${uploaded.uploadType}
          listed: ${listed.items}
          got: ${got.name}
          published: ${published.messageIds}
          key: ${key}
          missing: ${missing}
          unavailable: ${unavailable}
";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("connectors.yaml");
    std::fs::write(&file, workflow).unwrap();
    let (file, data) = (file.to_str().unwrap().to_string(), dir.path().join("data"));
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["validate", &file])
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", stderr(&checked));
    assert!(
        stderr(&checked).contains(
            "warning: the connector `googleapis.compute.v1.instances.list` is not available in skein"
        ),
        "{}",
        stderr(&checked)
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
            .args(["run", &file, "--data-dir"])
            .arg(data)
            .env("STORAGE_EMULATOR_HOST", format!("http://{base}"))
            .env("PUBSUB_EMULATOR_HOST", &base)
            .env(
                "SKEIN_GOOGLEAPIS_SECRETMANAGER_ENDPOINT",
                format!("http://{base}"),
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer,
        json!({
            "uploaded": "18",
            "upload_type": "media",
            "listed": [{"name": "renders/j1.mp4"}],
            "got": "renders/j1.mp4",
            "published": ["1"],
            "key": "hunter2",
            "missing": 404,
            "unavailable": "the connector `googleapis.compute.v1.instances.list` is not available in skein",
        })
    );
}

/// Connectors that start long-running work wait for it, polling as `connector_params`
/// says: a Cloud Run job (a long-running operation, done on the third look), a BigQuery
/// job (done on the second), and an operation that fails (`OperationError`, caught);
/// `skip_polling` returns the operation as it started. Cloud Tasks and Firestore
/// connectors are single calls. All against one stand-in, named by skein's variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running_connectors_poll_until_the_work_ends() {
    use axum::body::Bytes;
    use axum::extract::Path;
    use axum::http::Method;
    use axum::routing::any;

    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/{*path}",
            any(
                |State(seen): State<Seen>, method: Method, Path(path): Path<String>, body: Bytes| async move {
                    let looks = {
                        let mut seen = seen.lock().unwrap();
                        let n = seen.entry(format!("{method} {path}")).or_default();
                        *n += 1;
                        *n
                    };
                    let sent: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let answer = match (method.as_str(), path.as_str()) {
                        ("POST", "v2/projects/demo/locations/eu/jobs/render:run") => {
                            json!({"name": "projects/demo/locations/eu/operations/op-1", "done": false})
                        }
                        ("GET", "v2/projects/demo/locations/eu/operations/op-1") => {
                            if looks < 2 {
                                json!({"name": "projects/demo/locations/eu/operations/op-1", "done": false})
                            } else {
                                json!({"name": "projects/demo/locations/eu/operations/op-1", "done": true,
                                       "response": {"name": "projects/demo/locations/eu/jobs/render/executions/e-1", "succeededCount": 1}})
                            }
                        }
                        ("POST", "v2/projects/demo/locations/eu/jobs/broken:run") => {
                            json!({"name": "projects/demo/locations/eu/operations/op-2", "done": false})
                        }
                        ("GET", "v2/projects/demo/locations/eu/operations/op-2") => {
                            json!({"name": "projects/demo/locations/eu/operations/op-2", "done": true,
                                   "error": {"code": 9, "message": "the task failed"}})
                        }
                        ("POST", "bigquery/v2/projects/demo/jobs") => json!({
                            "jobReference": {"projectId": "demo", "jobId": "q-1", "location": "EU"},
                            "status": {"state": "RUNNING"},
                            "configuration": sent["configuration"],
                        }),
                        ("GET", "bigquery/v2/projects/demo/jobs/q-1") => json!({
                            "jobReference": {"projectId": "demo", "jobId": "q-1", "location": "EU"},
                            "status": {"state": "DONE"},
                        }),
                        ("POST", "v2/projects/demo/locations/eu/queues/renders/tasks") => {
                            json!({"name": "projects/demo/locations/eu/queues/renders/tasks/t-1", "httpRequest": sent["task"]["httpRequest"]})
                        }
                        ("PATCH", "v1/projects/demo/databases/(default)/documents/jobs/j1") => {
                            json!({"name": "projects/demo/databases/(default)/documents/jobs/j1", "fields": sent["fields"]})
                        }
                        ("GET", "v1/projects/demo/databases/(default)/documents/jobs/j1") => {
                            json!({"name": "projects/demo/databases/(default)/documents/jobs/j1", "fields": {"state": {"stringValue": "done"}}})
                        }
                        _ => return (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": 404, "path": path}}))),
                    };
                    (StatusCode::OK, axum::Json(answer))
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let workflow = r#"main:
  steps:
    - run_job:
        call: googleapis.run.v2.projects.locations.jobs.run
        args:
          name: projects/demo/locations/eu/jobs/render
          connector_params:
            timeout: 60
            polling_policy:
              initial_delay: 0.05
              multiplier: 2
              max_delay: 0.2
        result: job
    - started_only:
        call: googleapis.run.v2.projects.locations.jobs.run
        args:
          name: projects/demo/locations/eu/jobs/render
          connector_params:
            skip_polling: true
        result: operation
    - broken:
        try:
          call: googleapis.run.v2.projects.locations.jobs.run
          args:
            name: projects/demo/locations/eu/jobs/broken
            connector_params:
              polling_policy:
                initial_delay: 0.05
        except:
          as: e
          steps:
            - note:
                assign:
                  - failure: ${e.tags}
                  - failure_says: ${e.message}
    - query:
        call: googleapis.bigquery.v2.jobs.insert
        args:
          projectId: demo
          body:
            configuration:
              query:
                query: SELECT 1
          connector_params:
            polling_policy:
              initial_delay: 0.05
        result: bq
    - enqueue:
        call: googleapis.cloudtasks.v2.projects.locations.queues.tasks.create
        args:
          parent: projects/demo/locations/eu/queues/renders
          body:
            task:
              httpRequest:
                url: https://render.example/chunk
        result: task
    - write:
        call: googleapis.firestore.v1.projects.databases.documents.patch
        args:
          name: projects/demo/databases/(default)/documents/jobs/j1
          body:
            fields:
              state:
                stringValue: running
        result: written
    - read:
        call: googleapis.firestore.v1.projects.databases.documents.get
        args:
          name: projects/demo/databases/(default)/documents/jobs/j1
        result: doc
    - done:
        return:
          job: ${job}
          operation_done: ${operation.done}
          failure: ${failure}
          failure_says: ${failure_says}
          bq: ${bq.status.state}
          task: ${task.name}
          written: ${written.fields.state.stringValue}
          read: ${doc.fields.state.stringValue}
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lro.yaml");
    std::fs::write(&file, workflow).unwrap();
    let (file, data) = (file.to_str().unwrap().to_string(), dir.path().join("data"));
    let out = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_skein"));
        command.args(["run", &file, "--data-dir"]).arg(data);
        for service in ["RUN", "BIGQUERY", "CLOUDTASKS", "FIRESTORE"] {
            command.env(format!("SKEIN_GOOGLEAPIS_{service}_ENDPOINT"), &base);
        }
        command.output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer,
        json!({
            "job": {"name": "projects/demo/locations/eu/jobs/render/executions/e-1", "succeededCount": 1},
            "operation_done": false,
            "failure": ["OperationError"],
            "failure_says": "operation \"projects/demo/locations/eu/operations/op-2\": the task failed",
            "bq": "DONE",
            "task": "projects/demo/locations/eu/queues/renders/tasks/t-1",
            "written": "running",
            "read": "done",
        })
    );
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.get("GET v2/projects/demo/locations/eu/operations/op-1"),
        Some(&2),
        "polled until done: {seen:?}"
    );
    assert_eq!(seen.get("GET bigquery/v2/projects/demo/jobs/q-1"), Some(&1));
}
