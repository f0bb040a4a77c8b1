//! `call: asyncapi` against real brokers started by the tests: Debian's mosquitto (MQTT)
//! and rabbitmq-server (AMQP 0-9-1), and an HTTP server, through an AsyncAPI 3.0
//! document served over HTTP: publishing (the payload checked against the message's
//! schema), subscribing with a filter and an amount, and a subscription that survives
//! a SIGKILL of the server with every message consumed exactly once.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::server::{call, free_port, healthy, serve};

/// Whether the brokers are installed; `false`, said aloud, where they are not, unless
/// SKEIN_REQUIRE_BROKERS=1 makes that a failure.
fn brokers() -> bool {
    let found = ["mosquitto", "/usr/lib/rabbitmq/bin/rabbitmq-server"]
        .iter()
        .all(|p| {
            Path::new(p).is_absolute() && Path::new(p).exists()
                || std::process::Command::new("sh")
                    .args(["-c", &format!("command -v {p}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        });
    if !found {
        let message = "the AsyncAPI tests need mosquitto and rabbitmq-server (Debian packages)";
        assert!(
            std::env::var("SKEIN_REQUIRE_BROKERS").as_deref() != Ok("1"),
            "{message}"
        );
        eprintln!("SKIPPED: {message}");
    }
    found
}

async fn listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// mosquitto on loopback `port`, anonymous, without persistence.
async fn mosquitto(dir: &Path, port: u16) -> Child {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    listening(port, "mosquitto").await;
    child
}

/// A process group, killed whole when dropped (RabbitMQ's script starts the Erlang VM
/// as its child).
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// A RabbitMQ node of its own on loopback `port` (its data in `dir`), run as this
/// user (Debian's wrapper would switch to the rabbitmq user).
async fn rabbitmq(dir: &Path, port: u16) -> Group {
    let base = dir.join("rabbitmq");
    for sub in ["mnesia", "log"] {
        std::fs::create_dir_all(base.join(sub)).unwrap();
    }
    std::fs::write(
        base.join("rabbitmq.conf"),
        format!("listeners.tcp.default = 127.0.0.1:{port}\n"),
    )
    .unwrap();
    let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
        .env("RABBITMQ_NODENAME", format!("skein{port}@localhost"))
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", free_port().to_string())
        .env("ERL_EPMD_PORT", free_port().to_string())
        .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
        .env("RABBITMQ_FEATURE_FLAGS_FILE", base.join("feature_flags"))
        .env("RABBITMQ_LOG_BASE", base.join("log"))
        .env("RABBITMQ_CONFIG_FILE", base.join("rabbitmq"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", base.join("plugins"))
        .env("RABBITMQ_PID_FILE", base.join("pid"))
        .env("HOME", &base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let group = Group(child);
    listening(port, "rabbitmq-server").await;
    group
}

/// The AsyncAPI document of the tests' brokers.
fn document(mqtt: u16, amqp: u16, web: u16, ws: u16) -> String {
    format!(
        r#"asyncapi: 3.0.0
info: {{title: Plant, version: 1.0.0}}
servers:
  broker: {{host: '127.0.0.1:{mqtt}', protocol: mqtt}}
  rabbit: {{host: '127.0.0.1:{amqp}', protocol: amqp}}
  web: {{host: '127.0.0.1:{web}', protocol: http, pathname: /ingest}}
  sockets: {{host: '127.0.0.1:{ws}', protocol: ws}}
channels:
  live:
    address: /live
    servers: [{{$ref: '#/servers/sockets'}}]
  readings:
    address: plant/readings
    servers: [{{$ref: '#/servers/broker'}}, {{$ref: '#/servers/web'}}]
    messages:
      reading: {{$ref: '#/components/messages/reading'}}
  orders:
    address: skein-orders
    servers: [{{$ref: '#/servers/rabbit'}}]
    messages:
      order: {{$ref: '#/components/messages/order'}}
operations:
  sendLive:
    action: send
    channel: {{$ref: '#/channels/live'}}
  receiveLive:
    action: receive
    channel: {{$ref: '#/channels/live'}}
  publishReading:
    action: send
    channel: {{$ref: '#/channels/readings'}}
    messages: [{{$ref: '#/channels/readings/messages/reading'}}]
  receiveReadings:
    action: receive
    channel: {{$ref: '#/channels/readings'}}
  placeOrder:
    action: send
    channel: {{$ref: '#/channels/orders'}}
  takeOrders:
    action: receive
    channel: {{$ref: '#/channels/orders'}}
components:
  messages:
    reading:
      payload: {{$ref: '#/components/schemas/reading'}}
    order:
      payload:
        type: object
        required: [item]
        properties:
          item: {{type: string}}
  schemas:
    reading:
      type: object
      required: [room, celsius]
      properties:
        room: {{type: string}}
        celsius: {{type: number}}
"#
    )
}

/// An HTTP server for the document (`/asyncapi.yaml`) and the `web` server's channel,
/// which keeps what it is sent.
async fn web(document: Arc<Mutex<String>>, received: Arc<Mutex<Vec<Value>>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route(
            "/asyncapi.yaml",
            axum::routing::get(move || {
                let text = document.lock().unwrap().clone();
                async move { text }
            }),
        )
        .route(
            "/ingest/plant/readings",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                received.lock().unwrap().push(body);
                async { "ok" }
            })
            // Read, the channel is a stream of server-sent readings: two that match
            // the schema, then one that does not.
            .get(|| async {
                (
                    [("content-type", "text/event-stream")],
                    "id: r1\ndata: {\"room\": \"attic\", \"celsius\": 30}\n\nid: r2\ndata: {\"room\": \"attic\", \"celsius\": 31}\n\ndata: {\"room\": 5}\n\n",
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// Waits until execution `id`'s `foreach` has handled `n` messages (its `slowly` task
/// completed `n` times).
async fn handled(client: &reqwest::Client, base: &str, id: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = crate::server::event_log(client, base, id).await;
        let done = log
            .lines()
            .filter(|l| l.contains("task.completed.v1") && l.contains("/slowly"))
            .count();
        if done >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription did not get going:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(client: &reqwest::Client, base: &str, id: &str, workflow: &str) {
    let (status, body) = call(
        client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "id": id})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn finished(client: &reqwest::Client, base: &str, id: &str) -> Value {
    let (_, body) = call(client, format!("{base}/v1/executions/{id}?wait=60s"), None).await;
    body
}

/// A workflow `send` that publishes a reading over MQTT for each `$n` of `range` (a jq
/// range), the payload a YAML flow mapping, pausing `pause` after each.
fn publisher(docs: &str, range: &str, payload: &str, pause: &str) -> String {
    format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: send, version: '1.0.0'}}
do:
  - send:
      for: {{in: '${{ [{range}] }}', each: n}}
      do:
        - one:
            call: asyncapi
            with:
              document: {{endpoint: '{docs}'}}
              operation: publishReading
              protocol: mqtt
              message:
                payload: {payload}
        - pause:
            wait: {pause}
"#
    )
}

/// A `skein server` with its journal under a test's directory, to kill mid-subscription
/// and start again on the same port and journal.
struct Restartable {
    port: u16,
    data: std::path::PathBuf,
    server: Child,
    base: String,
    client: reqwest::Client,
}

impl Restartable {
    async fn start(dir: &Path) -> Restartable {
        let port = free_port();
        let data = dir.join("data");
        let server = serve(port, None, &data);
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        healthy(&client, &base).await;
        Restartable {
            port,
            data,
            server,
            base,
            client,
        }
    }

    /// SIGKILL.
    async fn kill(&mut self) {
        self.server.kill().await.unwrap();
    }

    /// The same server again, on its port and journal, answering.
    async fn restart(&mut self) {
        self.server = serve(self.port, None, &self.data);
        healthy(&self.client, &self.base).await;
    }

    /// Execution `id` once it has ended, and its status is `completed`.
    async fn completed(&self, id: &str) -> Value {
        let body = finished(&self.client, &self.base, id).await;
        let log = crate::server::event_log(&self.client, &self.base, id).await;
        assert_eq!(body["status"], "completed", "{body:#}\n{log}");
        body
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_published_and_consumed_over_mqtt_and_http() {
    if !brokers() {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mqtt = free_port();
    let _mosquitto = mosquitto(dir.path(), mqtt).await;
    let (doc, received) = (Arc::new(Mutex::new(String::new())), Arc::default());
    let web_port = web(doc.clone(), Arc::clone(&received)).await;
    *doc.lock().unwrap() = document(mqtt, free_port(), web_port, free_port());
    let docs = format!("http://127.0.0.1:{web_port}/asyncapi.yaml");

    let port = free_port();
    let _server = serve(port, None, &dir.path().join("data"));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    healthy(&client, &base).await;

    let subscriber = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: watch, version: '1.0.0'}}
do:
  - watch:
      call: asyncapi
      with:
        document: {{endpoint: '{docs}'}}
        operation: receiveReadings
        protocol: mqtt
        subscription:
          filter: '${{ .payload.room == "kitchen" }}'
          consume: {{amount: 3, for: {{seconds: 50}}}}
          foreach:
            item: reading
            output: {{as: '${{ $reading.payload }}'}}
"#
    );
    start(&client, &base, "watch", &subscriber).await;
    // The publisher sends readings until the subscriber has three from the kitchen.
    let payload =
        r#"{room: '${ if $n % 2 == 0 then "kitchen" else "hall" end }', celsius: '${ 20 + $n }'}"#;
    let publisher = publisher(&docs, "range(0; 12)", payload, "PT0.25S");
    start(&client, &base, "send", &publisher).await;
    let watched = finished(&client, &base, "watch").await;
    assert_eq!(watched["status"], "completed", "{watched:#}");
    let readings = watched["output"].as_array().unwrap();
    assert_eq!(readings.len(), 3, "{watched:#}");
    let degrees: Vec<i64> = readings
        .iter()
        .map(|r| {
            assert_eq!(r["room"], "kitchen", "{r}");
            r["celsius"].as_i64().unwrap()
        })
        .collect();
    assert!(
        degrees.windows(2).all(|w| w[1] == w[0] + 2),
        "consecutive kitchen readings, in order: {degrees:?}"
    );
    let sent = finished(&client, &base, "send").await;
    assert_eq!(sent["status"], "completed", "{sent:#}");

    // A payload that does not match the message's schema is never sent.
    let invalid = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: bad, version: '1.0.0'}}
do:
  - bad:
      call: asyncapi
      with:
        document: {{endpoint: '{docs}'}}
        operation: publishReading
        protocol: mqtt
        message:
          payload: {{room: 7}}
"#
    );
    start(&client, &base, "bad", &invalid).await;
    let bad = finished(&client, &base, "bad").await;
    assert_eq!(
        bad["error"]["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/validation",
        "{bad:#}"
    );

    // Over HTTP, a message is a request to the channel's address on the server.
    let http = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: post, version: '1.0.0'}}
do:
  - post:
      call: asyncapi
      with:
        document: {{endpoint: '{docs}'}}
        operation: publishReading
        protocol: http
        message:
          payload: {{room: cellar, celsius: 11.5}}
"#
    );
    start(&client, &base, "post", &http).await;
    let posted = finished(&client, &base, "post").await;
    assert_eq!(posted["status"], "completed", "{posted:#}");
    assert_eq!(
        *received.lock().unwrap(),
        vec![json!({"room": "cellar", "celsius": 11.5})]
    );
}

/// Orders waiting in a durable RabbitMQ queue are consumed by a subscription whose
/// server is SIGKILLed in the middle: after the restart every order is in the output
/// exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_subscription_survives_a_crash_without_consuming_twice() {
    if !brokers() {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let amqp = free_port();
    let _rabbit = rabbitmq(dir.path(), amqp).await;
    let doc = Arc::new(Mutex::new(document(free_port(), amqp, 0, 0)));
    let web_port = web(doc.clone(), Arc::default()).await;
    let docs = format!("http://127.0.0.1:{web_port}/asyncapi.yaml");

    let mut server = Restartable::start(dir.path()).await;
    let (client, base) = (server.client.clone(), server.base.clone());

    let orders = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: place, version: '1.0.0'}}
do:
  - place:
      for: {{in: '${{ [range(1; 7)] }}', each: n}}
      do:
        - one:
            call: asyncapi
            with:
              document: {{endpoint: '{docs}'}}
              operation: placeOrder
              message:
                payload: {{item: '${{ "order-" + ($n | tostring) }}'}}
                headers: {{source: test}}
"#
    );
    start(&client, &base, "place", &orders).await;
    server.completed("place").await;

    let taker = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: take, version: '1.0.0'}}
do:
  - take:
      call: asyncapi
      with:
        document: {{endpoint: '{docs}'}}
        operation: takeOrders
        subscription:
          consume: {{amount: 6}}
          foreach:
            item: order
            do:
              - slowly:
                  wait: PT0.4S
            output: {{as: '${{ {{item: $order.payload.item, source: $order.headers.source}} }}'}}
"#
    );
    start(&client, &base, "take", &taker).await;
    // Killed once it is done with two orders.
    handled(&client, &base, "take", 2).await;
    server.kill().await;
    server.restart().await;
    let taken = server.completed("take").await;
    let items: Vec<&str> = taken["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o["source"], "test", "{o}");
            o["item"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        items,
        [
            "order-1", "order-2", "order-3", "order-4", "order-5", "order-6"
        ]
    );
}

/// A WebSocket server: a connection to `/live` that sends gets its messages kept; one
/// that listens gets `ticks` messages.
async fn sockets(kept: Arc<Mutex<Vec<String>>>, ticks: usize) -> u16 {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut connection = 0;
        while let Ok((stream, _)) = listener.accept().await {
            connection += 1;
            let kept = kept.clone();
            let first = connection == 1;
            tokio::spawn(async move {
                let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
                if first {
                    // The subscriber: it is sent ticks.
                    for i in 0..ticks {
                        let _ = socket
                            .send(Message::text(format!("{{\"tick\": {i}}}")))
                            .await;
                    }
                    while socket.next().await.is_some() {}
                } else {
                    while let Some(Ok(message)) = socket.next().await {
                        if let Message::Text(text) = message {
                            kept.lock().unwrap().push(text.to_string());
                        }
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_sent_and_received_over_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let kept: Arc<Mutex<Vec<String>>> = Arc::default();
    let ws = sockets(kept.clone(), 5).await;
    let doc = Arc::new(Mutex::new(document(0, 0, 0, ws)));
    let web_port = web(doc, Arc::default()).await;
    let docs = format!("http://127.0.0.1:{web_port}/asyncapi.yaml");
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: live, version: '1.0.0'}}
do:
  - listen:
      call: asyncapi
      with:
        document: {{endpoint: '{docs}'}}
        operation: receiveLive
        subscription:
          consume:
            until: '${{ length == 3 }}'
      output: {{as: '${{ [.[].payload.tick] }}'}}
  - say:
      call: asyncapi
      with:
        document: {{endpoint: '{docs}'}}
        operation: sendLive
        message:
          payload: {{heard: '${{ . }}'}}
"#
    );
    std::fs::write(dir.path().join("live.yaml"), workflow).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .current_dir(dir.path())
        .args(["run", "live.yaml", "--json"])
        .env("SKEIN_GRPC_LISTEN", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    let outcome: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(outcome["output"], json!({"heard": [0, 1, 2]}));
    let deadline = Instant::now() + Duration::from_secs(10);
    while kept.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *kept.lock().unwrap(),
        vec![r#"{"heard":[0,1,2]}"#.to_string()]
    );
}

/// Over HTTP a subscription reads the channel as server-sent events; a received message
/// that does not match the operation's schema faults the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_subscriptions_read_server_sent_events_and_check_them() {
    let doc = Arc::new(Mutex::new(String::new()));
    let web_port = web(doc.clone(), Arc::default()).await;
    *doc.lock().unwrap() = document(0, 0, web_port, 0);
    let docs = format!("http://127.0.0.1:{web_port}/asyncapi.yaml");
    let dir = tempfile::tempdir().unwrap();
    let workflow = |amount: u32| {
        format!(
            r#"
document: {{dsl: '1.0.3', namespace: test, name: feed, version: '1.0.0'}}
do:
  - read:
      call: asyncapi
      with:
        document: {{endpoint: '{docs}'}}
        operation: receiveReadings
        protocol: http
        subscription:
          consume: {{amount: {amount}}}
"#
        )
    };
    std::fs::write(dir.path().join("two.yaml"), workflow(2)).unwrap();
    std::fs::write(dir.path().join("three.yaml"), workflow(3)).unwrap();
    let outcome =
        crate::server::outcome(crate::server::skein_run(dir.path()).arg("two.yaml")).await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    let read = outcome["output"].as_array().unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0]["id"], "r1");
    assert_eq!(read[1]["payload"], json!({"room": "attic", "celsius": 31}));
    let outcome =
        crate::server::outcome(crate::server::skein_run(dir.path()).arg("three.yaml")).await;
    assert_eq!(outcome["status"], "faulted", "{outcome:#}");
    assert_eq!(
        outcome["error"]["type"],
        "https://serverlessworkflow.io/spec/1.0.0/errors/validation"
    );
}

/// An MQTT subscription (a session the broker keeps for the execution's step) whose
/// server is SIGKILLed in the middle: readings published while it is down wait in the
/// session, and after the restart every reading is in the output exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_subscription_survives_a_crash_without_consuming_twice() {
    if !brokers() {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mqtt = free_port();
    let _mosquitto = mosquitto(dir.path(), mqtt).await;
    let doc = Arc::new(Mutex::new(document(mqtt, 0, 0, 0)));
    let web_port = web(doc.clone(), Arc::default()).await;
    let docs = format!("http://127.0.0.1:{web_port}/asyncapi.yaml");

    let mut server = Restartable::start(dir.path()).await;
    let (client, base) = (server.client.clone(), server.base.clone());
    let taker = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: take, version: '1.0.0'}}
do:
  - take:
      call: asyncapi
      with:
        document: {{endpoint: '{docs}'}}
        operation: receiveReadings
        protocol: mqtt
        subscription:
          consume: {{amount: 6}}
          foreach:
            item: reading
            do:
              - slowly:
                  wait: PT0.3S
            output: {{as: '${{ $reading.payload.celsius }}'}}
"#
    );
    start(&client, &base, "take", &taker).await;
    // Subscribed once the first run stands in its subscription's wait: the broker
    // granted it before the task went on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !crate::server::event_log(&client, &base, "take")
        .await
        .contains("task.started.v1")
    {
        assert!(Instant::now() < deadline, "the subscriber did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The readings come from another process, which is not killed.
    let publisher = publisher(
        &docs,
        "range(1; 7)",
        "{room: lab, celsius: '${ $n }'}",
        "PT0.2S",
    );
    let publishing = dir.path().join("publisher");
    std::fs::create_dir(&publishing).unwrap();
    std::fs::write(publishing.join("send.yaml"), publisher).unwrap();
    let mut send = crate::server::skein_run(&publishing);
    send.arg("send.yaml");
    let sending = tokio::spawn(async move { crate::server::outcome(&mut send).await });
    // Killed once it is done with two readings; the rest arrive while it is down.
    handled(&client, &base, "take", 2).await;
    server.kill().await;
    let sent = sending.await.unwrap();
    assert_eq!(sent["status"], "completed", "{sent:#}");
    server.restart().await;
    let taken = server.completed("take").await;
    assert_eq!(taken["output"], json!([1, 2, 3, 4, 5, 6]), "{taken:#}");
}
