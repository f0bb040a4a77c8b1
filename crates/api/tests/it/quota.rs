//! Project quotas: a project over its running executions, its starts per second or its
//! event-stream clients gets 429 with `Retry-After` (gRPC: `RESOURCE_EXHAUSTED`),
//! counted in `/metrics`; another project on the same server is not affected.

use std::collections::HashMap;

use api::quota::{QuotaTable, Quotas};
use reqwest::Method;
use serde_json::json;

use super::{as_token, flow, serve_with};

/// Waits an hour: counts as running until cancelled.
const WAITS: &str = "  - wait:\n      wait: PT1H\n";

use super::token;

#[tokio::test]
async fn a_project_over_its_quota_gets_429_and_another_project_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let quotas = QuotaTable {
        default: Quotas::default(),
        projects: HashMap::from([
            (
                "alpha".to_string(),
                Quotas {
                    running: 1,
                    starts_per_second: 0,
                    stream_clients: 1,
                },
            ),
            (
                "gamma".to_string(),
                Quotas {
                    starts_per_second: 2,
                    ..Quotas::default()
                },
            ),
        ]),
    };
    let server = serve_with(
        dir.path(),
        api::Options {
            tokens: vec![
                token("alpha", "run", "alpha-secret"),
                token("beta", "admin", "beta-secret"),
                token("gamma", "run", "gamma-secret"),
            ],
            quotas,
            ..Default::default()
        },
    )
    .await;
    let (alpha, beta, gamma) = (
        Some("alpha-secret"),
        Some("beta-secret"),
        Some("gamma-secret"),
    );
    let start = |id: &str| json!({"workflow": flow(WAITS), "id": id});

    // Running: alpha may run one execution at once; beta is not held to that.
    let (status, body) = as_token(
        &server,
        alpha,
        Method::POST,
        "/v1/executions",
        Some(start("a1")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let response = server
        .client
        .post(format!("{}/v1/executions", server.base))
        .bearer_auth("alpha-secret")
        .header("content-type", "application/json")
        .body(start("a2").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "quota_exceeded", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("quota `running`"),
        "{body}"
    );
    for id in ["b1", "b2", "b3"] {
        let (status, body) = as_token(
            &server,
            beta,
            Method::POST,
            "/v1/executions",
            Some(start(id)),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // Once alpha's execution ends, alpha may start another.
    let (status, _) = as_token(
        &server,
        alpha,
        Method::POST,
        "/v1/executions/a1/cancel",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = as_token(
            &server,
            alpha,
            Method::POST,
            "/v1/executions",
            Some(start("a3")),
        )
        .await;
        if status == 201 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alpha stayed over its quota"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Starts per second: gamma's third start within a second is refused.
    let quick = |id: &str| json!({"workflow": flow("  - one:\n      set: {n: 1}\n"), "id": id});
    let mut statuses = Vec::new();
    for id in ["g1", "g2", "g3"] {
        statuses.push(
            as_token(
                &server,
                gamma,
                Method::POST,
                "/v1/executions",
                Some(quick(id)),
            )
            .await,
        );
    }
    assert_eq!(statuses[0].0, 201);
    assert_eq!(statuses[1].0, 201);
    assert_eq!(statuses[2].0, 429, "{}", statuses[2].1);
    assert!(
        statuses[2].1["message"]
            .as_str()
            .unwrap()
            .contains("starts-per-second")
    );

    // Event-stream clients: alpha may have one; its second gets 429, beta's do not.
    let open = |token: &'static str| {
        server
            .client
            .get(format!("{}/v1/events", server.base))
            .bearer_auth(token)
            .send()
    };
    let first = open("alpha-secret").await.unwrap();
    assert_eq!(first.status(), 200);
    let second = open("alpha-secret").await.unwrap();
    assert_eq!(second.status(), 429);
    let others = [
        open("beta-secret").await.unwrap(),
        open("beta-secret").await.unwrap(),
    ];
    assert!(others.iter().all(|r| r.status() == 200));
    drop(first);

    // Every refusal is counted, by project and quota.
    let metrics = server
        .client
        .get(format!("{}/metrics", server.base))
        .bearer_auth("beta-secret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "skein_quota_refusals_total{project=\"alpha\",quota=\"running\"}",
        "skein_quota_refusals_total{project=\"gamma\",quota=\"starts\"} 1",
        "skein_quota_refusals_total{project=\"alpha\",quota=\"stream-clients\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(!metrics.contains("project=\"beta\""), "{metrics}");

    // gRPC says RESOURCE_EXHAUSTED for the same refusal.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = server.service.clone();
    tokio::spawn(api::grpc::serve(
        service,
        listener,
        None,
        std::future::pending(),
    ));
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut runner = api::grpc::pb::runner_client::RunnerClient::new(channel);
    let mut request = tonic::Request::new(api::grpc::pb::ExecuteRequest {
        execution_id: "a4".into(),
        workflow_yaml: flow(WAITS),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer alpha-secret".parse().unwrap());
    let refused = runner.execute_async(request).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
}
