//! `call: mcp` against the reference MCP server (`@modelcontextprotocol/server-everything`
//! from npm), over stdio and Streamable HTTP: every method the DSL names, a tool's error,
//! a timeout, a cancel; and a stdio server that exits in the middle of a call.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::server::free_port;

/// The reference server's entry point (`.ci/run` installs it and names its
/// node_modules in SKEIN_MCP_NODE_MODULES); `None`, said aloud, where it is missing,
/// unless SKEIN_REQUIRE_MCP=1 makes that a failure.
fn everything() -> Option<PathBuf> {
    let modules = std::env::var_os("SKEIN_MCP_NODE_MODULES").map(PathBuf::from);
    let entry = modules
        .map(|m| m.join("@modelcontextprotocol/server-everything/dist/index.js"))
        .filter(|p| p.is_file());
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if let (Some(entry), true) = (&entry, node) {
        return Some(entry.clone());
    }
    let message = "the MCP tests need node and @modelcontextprotocol/server-everything \
                   (set SKEIN_MCP_NODE_MODULES to the node_modules holding it, as .ci/run does)";
    assert!(
        std::env::var("SKEIN_REQUIRE_MCP").as_deref() != Ok("1"),
        "{message}"
    );
    eprintln!("SKIPPED: {message}");
    None
}

/// The reference server on Streamable HTTP at `port`; returns once it answers.
async fn http_server(entry: &Path, port: u16) -> Child {
    let child = Command::new("node")
        .arg(entry)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the MCP server did not listen on {port}");
}

async fn run(dir: &Path, workflow: &str) -> Value {
    std::fs::write(dir.join("mcp.yaml"), workflow).unwrap();
    crate::server::outcome(crate::server::skein_run(dir).arg("mcp.yaml")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_calls_reach_the_reference_server_over_stdio_and_http() {
    let Some(entry) = everything() else {
        return;
    };
    let port = free_port();
    let _server = http_server(&entry, port).await;
    let dir = tempfile::tempdir().unwrap();
    let entry = entry.display();
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: mcp, version: '1.0.0'}}
do:
  - tools:
      call: mcp
      with:
        method: tools/list
        transport:
          stdio: {{command: node, arguments: ['{entry}', stdio]}}
      export: {{as: '${{ $context + {{tools: [.tools[].name]}} }}'}}
  - sum:
      call: mcp
      with:
        method: tools/call
        parameters: {{name: get-sum, arguments: {{a: 2, b: 40}}}}
        transport:
          stdio: {{command: node, arguments: ['{entry}', stdio]}}
        client: {{name: skein-test, version: 0.0.1}}
      export: {{as: '${{ $context + {{sum: .content[0].text}} }}'}}
  - env:
      call: mcp
      with:
        method: tools/call
        parameters: {{name: get-env}}
        transport:
          stdio:
            command: node
            arguments: ['{entry}', stdio]
            environment: {{SKEIN_MCP_MARK: '${{ "from-" + ("no" + "body") }}'}}
      export: {{as: '${{ $context + {{env: .content[0].text}} }}'}}
  - structured:
      call: mcp
      with:
        method: tools/call
        parameters: {{name: get-structured-content, arguments: {{location: Chicago}}}}
        transport:
          http: {{endpoint: 'http://127.0.0.1:{port}/mcp'}}
      export: {{as: '${{ $context + {{structured: .structuredContent}} }}'}}
  - prompts:
      call: mcp
      with:
        method: prompts/list
        transport:
          http: {{endpoint: 'http://127.0.0.1:{port}/mcp'}}
      export: {{as: '${{ $context + {{prompts: [.prompts[].name]}} }}'}}
  - prompt:
      call: mcp
      with:
        method: prompts/get
        parameters: {{name: args-prompt, arguments: {{city: Lyon}}}}
        transport:
          http: {{endpoint: 'http://127.0.0.1:{port}/mcp'}}
      export: {{as: '${{ $context + {{prompt: .messages[0].content.text}} }}'}}
  - resources:
      call: mcp
      with:
        method: resources/list
        transport:
          http: {{endpoint: 'http://127.0.0.1:{port}/mcp'}}
      export: {{as: '${{ $context + {{resources: (.resources | length)}} }}'}}
  - templates:
      call: mcp
      with:
        method: resources/templates/list
        transport:
          http: {{endpoint: 'http://127.0.0.1:{port}/mcp'}}
      export: {{as: '${{ $context + {{templates: [.resourceTemplates[].uriTemplate]}} }}'}}
  - read:
      call: mcp
      with:
        method: resources/read
        parameters: {{uri: 'demo://resource/dynamic/text/7'}}
        transport:
          http: {{endpoint: 'http://127.0.0.1:{port}/mcp'}}
      export: {{as: '${{ $context + {{read: .contents[0]}} }}'}}
  - toolError:
      try:
        - badSum:
            call: mcp
            with:
              method: tools/call
              parameters: {{name: get-sum, arguments: {{a: one, b: 2}}}}
              transport:
                http: {{endpoint: 'http://127.0.0.1:{port}/mcp'}}
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{toolError: .}} }}'}}
  - slow:
      try:
        - longRunning:
            call: mcp
            with:
              method: tools/call
              parameters: {{name: trigger-long-running-operation, arguments: {{duration: 30, steps: 3}}}}
              timeout: PT0.5S
              transport:
                http: {{endpoint: 'http://127.0.0.1:{port}/mcp'}}
      catch:
        as: failure
        do:
          - keep:
              set: '${{ $failure }}'
      export: {{as: '${{ $context + {{slow: .}} }}'}}
  - all:
      set: '${{ $context }}'
"#
    );
    let started = std::time::Instant::now();
    let outcome = run(dir.path(), &workflow).await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    let out = &outcome["output"];
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"echo") && tools.contains(&"get-sum"),
        "{tools:?}"
    );
    assert!(
        out["sum"].as_str().unwrap().contains("42"),
        "{}",
        out["sum"]
    );
    assert!(
        out["env"].as_str().unwrap().contains("from-nobody"),
        "the stdio server got the evaluated environment: {}",
        out["env"]
    );
    let structured = &out["structured"];
    assert!(
        structured["temperature"].is_number() && structured["conditions"].is_string(),
        "{structured}"
    );
    assert!(
        out["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "args-prompt"),
        "{}",
        out["prompts"]
    );
    assert!(
        out["prompt"].as_str().unwrap().contains("Lyon"),
        "{}",
        out["prompt"]
    );
    assert!(out["resources"].as_u64().unwrap() > 0, "{out:#}");
    assert!(
        out["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().contains("{")),
        "{}",
        out["templates"]
    );
    assert_eq!(out["read"]["uri"], "demo://resource/dynamic/text/7");
    assert!(out["read"]["text"].is_string(), "{}", out["read"]);

    // A tool's own error is a runtime error that names the tool.
    let failure = &out["toolError"];
    assert_eq!(
        failure["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/runtime",
        "{failure}"
    );
    assert!(
        failure["title"].as_str().unwrap().contains("`get-sum`"),
        "{failure}"
    );
    assert_eq!(failure["data"]["isError"], true, "{failure}");
    // Past the call's timeout, the call is given up: a runtime error with status 408,
    // long before the 30 s the tool would take.
    let slow = &out["slow"];
    assert_eq!(slow["status"], 408, "{slow}");
    assert_eq!(
        slow["type"],
        "https://serverlessworkflow.io/spec/1.0.0/errors/runtime"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
}

/// A stdio server that exits in the middle of a call fails the task with a runtime
/// error that quotes what the server said on its way down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_that_crashes_mid_call_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_crash.py");
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: crash, version: '1.0.0'}}
do:
  - listed:
      call: mcp
      with:
        method: tools/list
        transport:
          stdio: {{command: python3, arguments: ['{script}']}}
      export: {{as: '${{ {{listed: [.tools[].name]}} }}'}}
  - explode:
      call: mcp
      with:
        method: tools/call
        parameters: {{name: explode}}
        transport:
          stdio: {{command: python3, arguments: ['{script}']}}
"#,
        script = script.display()
    );
    let outcome = run(dir.path(), &workflow).await;
    assert_eq!(outcome["status"], "faulted", "{outcome:#}");
    let error = &outcome["error"];
    assert_eq!(
        error["type"], "https://serverlessworkflow.io/spec/1.0.0/errors/runtime",
        "{error}"
    );
    assert_eq!(error["instance"], "/do/1/explode");
    let detail = error["detail"].as_str().unwrap();
    assert!(
        detail.contains("exited during the call") && detail.contains("boom"),
        "{detail}"
    );
}

/// Cancelling an execution in the middle of a stdio call stops the server it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_stops_its_stdio_server() {
    let Some(entry) = everything() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = crate::server::serve(port, None, &dir.path().join("data"));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    crate::server::healthy(&client, &base).await;
    // A mark of this test's own on the server's command line, to find its process by.
    let mark = format!("mark-{}", uuid::Uuid::new_v4().simple());
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: long, version: '1.0.0'}}
do:
  - long:
      call: mcp
      with:
        method: tools/call
        parameters: {{name: trigger-long-running-operation, arguments: {{duration: 60, steps: 2}}}}
        transport:
          stdio: {{command: node, arguments: ['{}', stdio, {mark}]}}
"#,
        entry.display()
    );
    let (status, body) = crate::server::call(
        &client,
        format!("{base}/v1/executions"),
        Some(serde_json::json!({"workflow": workflow, "id": "long"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let running = || {
        std::process::Command::new("pgrep")
            .args(["-f", &mark])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = crate::server::call(
        &client,
        format!("{base}/v1/executions/long/cancel"),
        Some(serde_json::json!({})),
    )
    .await;
    assert!(status < 300);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stdio server outlived the cancel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
