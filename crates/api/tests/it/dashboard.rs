//! What the dashboard reads beyond the executions API: the workflow graph (and that its
//! node ids are the task paths events carry, for both syntaxes), validation with
//! warnings, who the caller is, the list by creation time, and the server's picture.

use serde_json::{Value, json};

use super::{flow, serve, serve_with};

/// Every node id of a graph, depth first.
fn ids(nodes: &Value, out: &mut Vec<String>) {
    for node in nodes.as_array().unwrap() {
        out.push(node["id"].as_str().unwrap().to_string());
        for branch in node["branches"].as_array().into_iter().flatten() {
            ids(&branch["tasks"], out);
        }
    }
}

/// The `task` of every task event of execution `id`.
async fn event_tasks(server: &super::Server, id: &str) -> Vec<String> {
    let text = server
        .client
        .get(format!(
            "{}/v1/executions/{id}/events?follow=false",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut tasks: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|e| e["type"] == "io.serverlessworkflow.task.started.v1")
        .map(|e| e["data"]["task"].as_str().unwrap().to_string())
        .collect();
    tasks.dedup();
    tasks
}

#[tokio::test]
async fn the_graph_of_a_dsl_workflow_is_keyed_by_the_task_paths_of_its_events() {
    let server = serve().await;
    let tasks = "  - each:
      for: { each: n, in: '${ [1, 2, 3] }' }
      do:
        - guarded:
            try:
              - square:
                  set: '${ {v: ($n * $n)} }'
            catch:
              errors: { with: { type: https://serverlessworkflow.io/spec/1.0.0/errors/runtime } }
              do:
                - recover:
                    set: { v: 0 }
  - both:
      fork:
        branches:
          - left:
              set: { side: left }
          - right:
              set: { side: right }
  - decide:
      switch:
        - big: { when: '${ true }', then: done }
        - otherwise: { then: continue }
  - skipped:
      wait: { seconds: 1 }
  - done:
      set: { ok: true }
      then: end
";
    let (status, body) = server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflow": flow(tasks), "id": "drawn"}),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (201, Some("completed")));
    let (status, graph) = server.get("/v1/executions/drawn/graph").await;
    assert_eq!(status, 200, "{graph}");
    assert_eq!(graph["syntax"], "serverless-workflow");
    let top: Vec<&str> = (graph["tasks"].as_array().unwrap().iter())
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["for", "fork", "switch", "wait", "set"]);
    let each = &graph["tasks"][0];
    assert_eq!(each["detail"], "each n in [1, 2, 3]");
    let guarded = &each["branches"][0]["tasks"][0];
    let labels: Vec<&str> = (guarded["branches"].as_array().unwrap().iter())
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["try", "catch runtime"]);
    let fork: Vec<&str> = (graph["tasks"][1]["branches"].as_array().unwrap().iter())
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(fork, ["left", "right"]);
    assert_eq!(
        graph["tasks"][2]["cases"],
        json!([{"name": "big", "when": "true", "then": "done"},
               {"name": "otherwise", "then": "continue"}])
    );
    assert_eq!(graph["tasks"][4]["then"], "end");

    let mut nodes = Vec::new();
    ids(&graph["tasks"], &mut nodes);
    let ran = event_tasks(&server, "drawn").await;
    assert!(ran.len() >= 6, "{ran:?}");
    for task in &ran {
        assert!(nodes.contains(task), "{task} is not a node of {nodes:?}");
    }
    let (status, _) = server.get("/v1/executions/nope/graph").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_graph_of_a_cloud_workflows_document_is_its_steps() {
    let server = serve().await;
    let source = "main:
  params: [args]
  steps:
    - init:
        assign:
          - total: 0
    - loop:
        for:
          value: x
          in: ${args.items}
          steps:
            - add:
                assign:
                  - total: ${total + x}
    - check:
        switch:
          - condition: ${total > 5}
            next: big
        next: small
    - big:
        return: big
    - small:
        return: small
";
    let (status, body) = server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflow": source, "id": "steps", "input": {"items": [1, 2, 3]}}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str(), &body["output"]),
        (201, Some("completed"), &json!("big")),
        "{body}"
    );
    let (status, graph) = server.get("/v1/executions/steps/graph").await;
    assert_eq!(status, 200, "{graph}");
    assert_eq!(graph["syntax"], "cloud-workflows");
    let names: Vec<&str> = (graph["tasks"].as_array().unwrap().iter())
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    for step in ["init", "loop", "check", "big", "small"] {
        assert!(names.contains(&step), "{step} missing from {names:?}");
    }
    let mut nodes = Vec::new();
    ids(&graph["tasks"], &mut nodes);
    let ran = event_tasks(&server, "steps").await;
    assert!(!ran.is_empty());
    for task in &ran {
        assert!(nodes.contains(task), "{task} is not a node of {nodes:?}");
    }
}

#[tokio::test]
async fn validate_gives_every_diagnostic_with_its_line_and_the_graph_when_valid() {
    let server = serve().await;
    let (status, checked) = server
        .post(
            "/v1/validate",
            json!({"workflow": flow("  - a:\n      sett: {x: 1}\n")}),
        )
        .await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["valid"], false);
    assert!(checked.get("graph").is_none());
    let first = &checked["diagnostics"][0];
    assert_eq!(
        (first["line"].as_u64(), first["severity"].as_str()),
        (Some(4), Some("error")),
        "{checked}"
    );

    let schema = "document: {dsl: '1.0.3', namespace: t, name: typed, version: '1.0.0'}
input:
  schema:
    format: json
    document: {type: object, required: [n], properties: {n: {type: integer}}}
do:
  - a:
      set: {x: 1}
";
    let (status, checked) = server
        .post("/v1/validate", json!({"workflow": schema}))
        .await;
    assert_eq!(
        (status, &checked["valid"]),
        (200, &json!(true)),
        "{checked}"
    );
    assert_eq!(
        checked["graph"]["inputSchema"]["properties"]["n"]["type"],
        "integer"
    );
    let (status, refused) = server.post("/v1/validate", json!({"source": "x"})).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("`workflow`"),
        "{refused}"
    );
}

#[tokio::test]
async fn the_list_filters_by_creation_time() {
    let server = serve().await;
    let (_, first) = server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflow": flow(super::DOUBLE), "input": {"n": 1}, "id": "early"}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (_, second) = server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflow": flow(super::DOUBLE), "input": {"n": 2}, "id": "late"}),
        )
        .await;
    let listed = |page: Value| -> Vec<String> {
        (page["executions"].as_array().unwrap().iter())
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let since = second["createdAt"].as_str().unwrap();
    let (status, page) = server.get(&format!("/v1/executions?since={since}")).await;
    assert_eq!((status, listed(page)), (200, vec!["late".to_string()]));
    let (_, page) = server.get(&format!("/v1/executions?until={since}")).await;
    assert_eq!(listed(page), ["early"]);
    let (_, page) = server
        .get(&format!(
            "/v1/executions?since={}&until={since}",
            first["createdAt"].as_str().unwrap()
        ))
        .await;
    assert_eq!(listed(page), ["early"]);
    let (status, refused) = server.get("/v1/executions?since=yesterday").await;
    assert_eq!(status, 400);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("since=yesterday"),
        "{refused}"
    );
}

#[tokio::test]
async fn whoami_answers_200_with_or_without_a_good_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(
        dir.path(),
        api::Options {
            tokens: vec![super::token("alpha", "run", "s3cret")],
            ..Default::default()
        },
    )
    .await;
    let ask = |token: Option<&'static str>| {
        let mut request = server.client.get(format!("{}/v1/whoami", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, me) = ask(Some("s3cret")).await;
    assert_eq!(
        (status, me),
        (
            200,
            json!({"authenticated": true, "project": "alpha", "role": "run"})
        )
    );
    for token in [None, Some("wrong")] {
        let (status, me) = ask(token).await;
        assert_eq!((status, &me["authenticated"]), (200, &json!(false)), "{me}");
        assert!(me["reason"].is_string(), "{me}");
    }
    // The server page needs an admin token.
    let response = server
        .client
        .get(format!("{}/v1/server", server.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

struct Workers(Vec<String>);

impl api::WorkerMetrics for Workers {
    fn metrics(
        &self,
        _wait: std::time::Duration,
    ) -> futures::future::BoxFuture<'_, Vec<(String, Result<String, String>)>> {
        let urls = self.0.clone();
        Box::pin(async move {
            let workers = runtime::Workers::new(
                urls.iter().map(|u| url::Url::parse(u).unwrap()).collect(),
                None,
            );
            workers.metrics(std::time::Duration::from_secs(2)).await
        })
    }
}

#[tokio::test]
async fn the_server_picture_has_its_workers_load() {
    let dir = tempfile::tempdir().unwrap();
    let worker = worker::Worker::new(worker::Options {
        id: "pictured".into(),
        concurrency: 3,
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, worker::app(worker)).await.unwrap() });
    let down = {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        drop(taken);
        format!("http://127.0.0.1:{port}/")
    };
    let server = serve_with(
        dir.path(),
        api::Options {
            workers: Some(std::sync::Arc::new(Workers(vec![up.clone(), down.clone()]))),
            ..Default::default()
        },
    )
    .await;
    let (status, info) = server.get("/v1/server").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        (&info["node"], &info["replicas"]),
        (&json!("local"), &json!([]))
    );
    let workers = info["workers"].as_array().unwrap();
    assert_eq!(workers[0]["url"], up);
    assert!(
        workers[0]["metrics"]
            .as_str()
            .unwrap()
            .contains("skein_worker_slots 3"),
        "{info}"
    );
    assert_eq!(workers[1]["url"], down);
    assert!(workers[1]["error"].is_string(), "{info}");
}
