//! The spec's examples of the task kinds issue 19 added, run (not only validated), each
//! against a local stand-in for the service it names: `--map-host` sends their public
//! hosts to servers here, a stand-in `npx` starts a stand-in MCP server, a local
//! registry (Debian's docker-registry) stands in for Docker Hub.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::server::{call, free_port, healthy};

fn example(spec: &Path, name: &str) -> PathBuf {
    spec.join("examples").join(name)
}

/// `skein run EXAMPLE --json ARGS` in `dir`, with `env`; the outcome.
async fn run(dir: &Path, file: &Path, args: &[&str], env: &[(&str, String)]) -> Value {
    let mut command = crate::server::skein_run(dir);
    command.arg(file).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    crate::server::outcome(&mut command).await
}

async fn serve_router(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// call-grpc.yaml: `GreeterApi.Greeter/SayHello` on localhost:5011, its proto at
/// `file://app/greet.proto`: the Python grpcio service answers for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_example_runs() {
    let Some(spec) = testkit::spec::dir("the_grpc_example_runs") else {
        return;
    };
    let Some(python) = crate::grpc::grpc_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("app")).unwrap();
    std::fs::write(
        dir.path().join("app/greet.proto"),
        "syntax = \"proto3\";\npackage GreeterApi;\nservice Greeter {\n  rpc SayHello (HelloRequest) returns (HelloReply);\n}\nmessage HelloRequest { string name = 1; }\nmessage HelloReply { string message = 1; }\n",
    )
    .unwrap();
    let port = free_port();
    let _service = crate::grpc_call::python_service(&python, port, dir.path()).await;
    let outcome = run(
        dir.path(),
        &example(&spec, "call-grpc.yaml"),
        &[
            "--map-host",
            &format!("localhost=http://127.0.0.1:{port}"),
            "--input",
            r#"{"user": {"preferredDisplayName": "Ada"}}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(outcome["output"], json!({"message": "Hello, Ada"}));
}

/// call-mcp.yaml: `npx slack-mcp-serverr@latest --transport stdio`, with an `npx` on
/// PATH that starts the stand-in Slack server instead of fetching a package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_example_runs() {
    let Some(spec) = testkit::spec::dir("the_mcp_example_runs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let stand_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_stand_in.py");
    let npx = bin.join("npx");
    std::fs::write(
        &npx,
        format!("#!/bin/sh\nexec python3 '{}' \"$@\"\n", stand_in.display()),
    )
    .unwrap();
    std::fs::set_permissions(&npx, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let outcome = run(
        dir.path(),
        &example(&spec, "call-mcp.yaml"),
        &[],
        &[("PATH", path)],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    let posted = &outcome["output"]["structuredContent"];
    assert_eq!(posted["channel"], "C1234567890", "{outcome:#}");
    assert_eq!(posted["text"], "Hello, world! :wave:");
    assert_eq!(
        posted["argv"],
        json!(["slack-mcp-serverr@latest", "--transport", "stdio"])
    );
    assert_eq!(posted["token"], "xoxp-xv6Cv3jKqNW8esm5YnsftKwIzoQHUzAP");
}

/// call-custom-function-cataloged.yaml: the log function at its raw GitHub URL, served
/// here by a stand-in with a definition of our own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cataloged_function_example_runs() {
    let Some(spec) = testkit::spec::dir("the_cataloged_function_example_runs") else {
        return;
    };
    const LOG: &str = r#"input:
  schema:
    document:
      type: object
      required: [message]
      properties:
        message: {type: string}
        level: {type: string}
set:
  line: '${ "[" + (.level // "information") + "] " + .message }'
"#;
    let app = axum::Router::new().route(
        "/serverlessworkflow/catalog/main/functions/log/1.0.0/function.yaml",
        axum::routing::get(|| async { LOG }),
    );
    let port = serve_router(app).await;
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(
        dir.path(),
        &example(&spec, "call-custom-function-cataloged.yaml"),
        &[
            "--map-host",
            &format!("raw.githubusercontent.com=http://127.0.0.1:{port}"),
        ],
        &[],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(
        outcome["output"],
        json!({"line": "[information] Hello, world!"})
    );
}

/// mock-service-extension.yaml: its extension's `when` cannot be read for the
/// example's call (jq stops with a type error on `startswith` of an object), so it does
/// not apply, and the call goes to the stand-in; a call to mocked.service.com is mocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extension_example_runs() {
    let Some(spec) = testkit::spec::dir("the_extension_example_runs") else {
        return;
    };
    let app = axum::Router::new().route(
        "/sample",
        axum::routing::get(|| async { axum::Json(json!({"from": "the stand-in"})) }),
    );
    let port = serve_router(app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = example(&spec, "mock-service-extension.yaml");
    let map = format!("fake.com=http://127.0.0.1:{port}");
    let outcome = run(dir.path(), &file, &["--map-host", &map], &[]).await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(outcome["output"], json!({"from": "the stand-in"}));

    // The same document calling the mocked service (as a string endpoint, which its
    // `when` reads) gets the extension's response, and nothing is called.
    let mocked = std::fs::read_to_string(&file).unwrap().replace(
        "endpoint:\n          uri: https://fake.com/sample",
        "endpoint: https://mocked.service.com/sample",
    );
    let mocked_file = dir.path().join("mocked.yaml");
    std::fs::write(&mocked_file, mocked).unwrap();
    let outcome = run(dir.path(), &mocked_file, &[], &[]).await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(outcome["output"]["content"], json!({"foo": {"bar": "baz"}}));
}

/// The AsyncAPI examples, their document at https://fake.com/docs/asyncapi.json served
/// by a stand-in (AsyncAPI 3.0 for those that name an operation, 2.6 for the one that
/// names a channel), with an HTTP server for `findPetsByStatus` and a WebSocket server
/// that sends notifications for `getNotifications`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asyncapi_examples_run() {
    let Some(spec) = testkit::spec::dir("the_asyncapi_examples_run") else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ws = notifications().await;
    // What the stand-in HTTP server was sent: the Authorization header and the body.
    type Posted = Arc<Mutex<Vec<(Option<String>, Value)>>>;
    let posted: Posted = Arc::default();
    let document: Arc<Mutex<Value>> = Arc::default();
    let app = {
        let (posted, document) = (posted.clone(), document.clone());
        axum::Router::new()
            .route(
                "/docs/asyncapi.json",
                axum::routing::get(move || {
                    let doc = document.lock().unwrap().clone();
                    async move { axum::Json(doc) }
                }),
            )
            .route(
                "/pets/findByStatus",
                axum::routing::post(
                    move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        posted.lock().unwrap().push((auth, body));
                        async { "ok" }
                    },
                ),
            )
    };
    let web = serve_router(app).await;
    let v3 = json!({
        "asyncapi": "3.0.0",
        "info": {"title": "stand-in", "version": "1.0.0"},
        "servers": {
            "staging": {"host": format!("127.0.0.1:{web}"), "protocol": "http"},
            "sockets": {"host": format!("127.0.0.1:{ws}"), "protocol": "ws"},
        },
        "channels": {
            "pets": {"address": "/pets/findByStatus", "servers": [{"$ref": "#/servers/staging"}],
                     "messages": {"find": {"payload": {"type": "object", "required": ["petId"]}}}},
            "notifications": {"address": "/notifications", "servers": [{"$ref": "#/servers/sockets"}]},
        },
        "operations": {
            "findPetsByStatus": {"action": "send", "channel": {"$ref": "#/channels/pets"}},
            "getNotifications": {"action": "receive", "channel": {"$ref": "#/channels/notifications"}},
        },
    });
    *document.lock().unwrap() = v3;
    let dir = tempfile::tempdir().unwrap();
    let map = format!("fake.com=http://127.0.0.1:{web}");
    let context = json!({"userId": "u1", "contact": {"firstName": "Ada", "lastName": "Lovelace"}});

    // Publish: the pet's id from the input, the bearer token from the input.
    let input = json!({"pet": {"id": 42}, "token": "pet-token"}).to_string();
    let outcome = run(
        dir.path(),
        &example(&spec, "call-asyncapi-publish.yaml"),
        &["--map-host", &map, "--input", &input],
        &[],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(
        *posted.lock().unwrap(),
        vec![(Some("Bearer pet-token".to_string()), json!({"petId": 42}))]
    );

    // Five notifications for u1 from Ada Lovelace, over WebSocket.
    let outcome = run(
        dir.path(),
        &example(&spec, "call-asyncapi-subscribe-consume-amount.yaml"),
        &["--map-host", &map, "--input", &context.to_string()],
        &[],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    let got = outcome["output"].as_array().unwrap();
    assert_eq!(got.len(), 5, "{outcome:#}");
    assert!(
        got.iter()
            .all(|m| m["correlationId"] == "u1" && m["payload"]["from"]["firstName"] == "Ada"),
        "the filter let others through: {outcome:#}"
    );

    // `while` and `until` read `$context.consumedMessages`, which nothing in these
    // examples sets: given five in the input, both are done before waiting.
    let done = json!({"consumedMessages": [1, 2, 3, 4, 5], "userId": "u1"}).to_string();
    let outcome = run(
        dir.path(),
        &example(&spec, "call-asyncapi-subscribe-consume-while.yaml"),
        &["--map-host", &map, "--input", &done],
        &[],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(outcome["output"], json!([]));
    *document.lock().unwrap() = json!({
        "asyncapi": "2.6.0",
        "info": {"title": "stand-in", "version": "1.0.0"},
        "servers": {"sockets": {"url": format!("ws://127.0.0.1:{ws}"), "protocol": "ws"}},
        "channels": {"/notifications": {"subscribe": {"message": {"payload": {"type": "object"}}}}},
    });
    let outcome = run(
        dir.path(),
        &example(&spec, "call-asyncapi-subscribe-consume-until.yaml"),
        &["--map-host", &map, "--input", &done],
        &[],
    )
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");

    // `while: true` consumes forever, emitting an event per notification: on a server,
    // until it is cancelled.
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = crate::server::background(&["server", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--map-host", &map])
        .arg("--data-dir")
        .arg(data.path())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let v3_again = json!({
        "asyncapi": "3.0.0",
        "info": {"title": "stand-in", "version": "1.0.0"},
        "servers": {"sockets": {"host": format!("127.0.0.1:{ws}"), "protocol": "ws"}},
        "channels": {"notifications": {"address": "/notifications"}},
        "operations": {"getNotifications": {"action": "receive", "channel": {"$ref": "#/channels/notifications"}}},
    });
    *document.lock().unwrap() = v3_again;
    let workflow = std::fs::read_to_string(example(
        &spec,
        "call-asyncapi-subscribe-consume-forever-foreach.yaml",
    ))
    .unwrap();
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "input": context, "id": "forever"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = crate::server::event_log(&client, &base, "forever").await;
        if log.matches("Lovelace").count() >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no notifications emitted:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = call(
        &client,
        format!("{base}/v1/executions/forever/cancel"),
        Some(json!({})),
    )
    .await;
    assert!(status < 300);
}

/// A WebSocket server at any path that sends each connection notifications, one for
/// u1 from Ada Lovelace between others, as the DSL's inbound messages.
async fn notifications() -> u16 {
    use futures::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                for i in 0..100 {
                    let (user, first) = if i % 2 == 0 {
                        ("u1", "Ada")
                    } else {
                        ("u2", "Grace")
                    };
                    let message = json!({
                        "payload": {"n": i, "from": {"firstName": first, "lastName": if first == "Ada" { "Lovelace" } else { "Hopper" }}},
                        "correlationId": user,
                    });
                    if socket
                        .send(Message::text(message.to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    });
    port
}
