//! Named workflows through the REST API: deploy (revisions), list, get, start by
//! `workflowRef`, delete; bad names, definitions and references refused clearly.

use serde_json::{Value, json};

use crate::{DOUBLE, flow, serve};

const CLOUD: &str =
    "main:\n  params: [args]\n  steps:\n    - give:\n        return: ${args.n * 3}\n";

#[tokio::test]
async fn named_workflows_are_deployed_in_revisions_and_started_by_name() {
    let server = serve().await;
    let (status, first) = server
        .post(
            "/v1/workflows",
            json!({"name": "triple", "workflow": CLOUD}),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (&first["revision"], &first["syntax"]),
        (&json!(1), &json!("cloud-workflows"))
    );
    // The same definition: the same revision, 200.
    let (status, again) = server
        .post(
            "/v1/workflows",
            json!({"name": "triple", "workflow": CLOUD}),
        )
        .await;
    assert_eq!((status, &again["revision"]), (200, &json!(1)));
    // Another definition (the DSL this time): revision 2.
    let (status, second) = server
        .post(
            "/v1/workflows",
            json!({"name": "triple", "workflow": flow(DOUBLE)}),
        )
        .await;
    assert_eq!(
        (status, &second["revision"], &second["syntax"]),
        (201, &json!(2), &json!("serverless-workflow"))
    );

    let (status, list) = server.get("/v1/workflows").await;
    assert_eq!(status, 200);
    assert_eq!(list["workflows"].as_array().unwrap().len(), 1);
    assert_eq!(list["workflows"][0]["revision"], 2);
    assert!(
        list["workflows"][0].get("workflow").is_none(),
        "lists carry no definitions"
    );

    let (status, got) = server.get("/v1/workflows/triple?revision=1").await;
    assert_eq!((status, &got["workflow"]), (200, &json!(CLOUD)));
    assert_eq!(got["revisions"], json!([2, 1]));

    // Started by name: the latest revision, or the one named.
    let (status, latest) = server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflowRef": "triple", "input": {"n": 5}}),
        )
        .await;
    assert_eq!(
        (status, &latest["output"]),
        (201, &json!({"n": 10})),
        "{latest}"
    );
    assert_eq!(latest["workflow"]["name"], "triple");
    let (status, old) = server
        .post(
            "/v1/executions?wait=10s",
            json!({"workflowRef": "triple@1", "input": {"n": 5}}),
        )
        .await;
    assert_eq!((status, &old["output"]), (201, &json!(15)), "{old}");

    // Deleted: gone, and its executions stay.
    let (status, _) = {
        let response = server
            .client
            .delete(format!("{}/v1/workflows/triple", server.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), ())
    };
    assert_eq!(status, 204);
    let (status, missing) = server.get("/v1/workflows/triple").await;
    assert_eq!((status, &missing["error"]), (404, &json!("not_found")));
    let (status, _) = server
        .get(&format!("/v1/executions/{}", old["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_names_definitions_and_references_are_refused() {
    let server = serve().await;
    let (status, body) = server
        .post(
            "/v1/workflows",
            json!({"name": "9lives", "workflow": CLOUD}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not a valid workflow name"),
        "{body}"
    );

    let broken = "main:\n  steps:\n    - a:\n        return: ${nope}\n";
    let (status, body) = server
        .post(
            "/v1/workflows",
            json!({"name": "broken", "workflow": broken}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_workflow")),
        "{body}"
    );
    assert_eq!(body["diagnostics"][0]["line"], 4, "{body}");
    let (status, _) = server.get("/v1/workflows/broken").await;
    assert_eq!(status, 404, "nothing was deployed");

    for (start, message) in [
        (
            json!({"workflowRef": "absent"}),
            "there is no workflow `absent`",
        ),
        (
            json!({"workflowRef": "absent@x"}),
            "is not a workflow reference",
        ),
        (json!({"workflowRef": "a", "workflow": CLOUD}), "not both"),
        (json!({"input": {}}), "give `workflow`"),
    ] {
        let (status, body) = server.post("/v1/executions", start.clone()).await;
        assert!(matches!(status, 400 | 404), "{start}: {status} {body}");
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{start}: {body}"
        );
    }
}

/// Google's Workflows and Executions APIs over REST: a workflow created as a finished
/// operation, an execution created with a JSON `argument`, polled to SUCCEEDED, listed
/// and cancelled; errors in Google's form.
#[tokio::test]
async fn googles_rest_api_deploys_and_runs() {
    let server = serve().await;
    let base = "/v1/projects/demo/locations/us-central1";
    let (status, op) = server
        .post(
            &format!("{base}/workflows?workflowId=triple"),
            json!({"sourceContents": CLOUD}),
        )
        .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.cloud.workflows.v1.Workflow"
    );
    assert_eq!(
        op["response"]["name"],
        "projects/demo/locations/us-central1/workflows/triple"
    );
    let (status, again) = server
        .get(&format!("/v1/{}", op["name"].as_str().unwrap()))
        .await;
    assert_eq!((status, &again["done"]), (200, &json!(true)), "{again}");

    let (status, started) = server
        .post(
            &format!("{base}/workflows/triple/executions"),
            json!({"argument": "{\"n\": 4}"}),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let name = started["name"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let done = loop {
        let (_, e) = server.get(&format!("/v1/{name}")).await;
        if e["state"] != "ACTIVE" {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        (&done["state"], &done["result"]),
        (&json!("SUCCEEDED"), &json!("12")),
        "{done}"
    );
    assert_eq!(done["workflowRevisionId"], "000001");
    let (_, list) = server
        .get(&format!("{base}/workflows/triple/executions"))
        .await;
    assert_eq!(list["executions"][0]["name"], json!(name));
    // Cancelling one that has ended is refused, in Google's form.
    let (status, refused) = server.post(&format!("/v1/{name}:cancel"), json!({})).await;
    assert_eq!(
        (status, &refused["error"]["status"]),
        (409, &json!("FAILED_PRECONDITION")),
        "{refused}"
    );
    let (status, missing) = server.get(&format!("{base}/workflows/absent")).await;
    assert_eq!(
        (status, &missing["error"]["status"]),
        (404, &json!("NOT_FOUND")),
        "{missing}"
    );
    let (status, bad) = server
        .post(
            &format!("{base}/workflows/triple/executions"),
            json!({"argument": "{nope"}),
        )
        .await;
    assert_eq!((status, &bad["error"]["code"]), (400, &json!(400)), "{bad}");
}

/// Google's list of executions: pages (`pageSize`, `nextPageToken`), the BASIC and
/// FULL views, `filter` by state and labels, labels given at creation, and clear
/// refusals of what skein does not do.
#[tokio::test]
async fn googles_execution_lists_page_filter_and_view() {
    let server = serve().await;
    let base = "/v1/projects/demo/locations/eu";
    let (status, _) = server
        .post(
            &format!("{base}/workflows?workflowId=triple"),
            json!({"sourceContents": CLOUD}),
        )
        .await;
    assert_eq!(status, 200);
    let mut names = Vec::new();
    for (n, team) in [(json!(1), "a"), (json!(2), "b"), (json!("x"), "a")] {
        let (status, started) = server
            .post(
                &format!("{base}/workflows/triple/executions"),
                json!({"argument": json!({"n": n}).to_string(), "labels": {"team": team}}),
            )
            .await;
        assert_eq!(status, 200, "{started}");
        assert_eq!(started["labels"], json!({"team": team}), "{started}");
        names.push(started["name"].as_str().unwrap().to_string());
        // Apart in time, so that the newest-first order is certain.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Wait for all three to end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for name in &names {
        loop {
            let (_, e) = server.get(&format!("/v1/{name}")).await;
            if e["state"] != "ACTIVE" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{e}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let list = format!("{base}/workflows/triple/executions");
    let (status, page) = server.get(&format!("{list}?pageSize=2")).await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> = page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [names[2].as_str(), names[1].as_str()],
        "newest first"
    );
    assert!(
        page["executions"][0].get("argument").is_none(),
        "BASIC: {page}"
    );
    let token = page["nextPageToken"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, rest) = server
        .get(&format!("{list}?pageSize=2&pageToken={token}&view=FULL"))
        .await;
    assert_eq!(rest["executions"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["executions"][0]["name"], json!(names[0]));
    assert_eq!(rest["executions"][0]["argument"], json!("{\"n\":1}"));
    assert_eq!(rest["executions"][0]["labels"], json!({"team": "a"}));
    assert!(rest.get("nextPageToken").is_none(), "{rest}");

    let (_, team_a) = server
        .get(&format!("{list}?filter=labels.team%3D%22a%22"))
        .await;
    assert_eq!(
        team_a["executions"].as_array().unwrap().len(),
        2,
        "{team_a}"
    );
    // The third failed: "x" * 3 is a TypeError.
    let (_, failed) = server
        .get(&format!("{list}?filter=state%3D%22FAILED%22"))
        .await;
    assert_eq!(
        failed["executions"].as_array().unwrap().len(),
        1,
        "{failed}"
    );
    assert_eq!(failed["executions"][0]["name"], json!(names[2]));
    let (_, done) = server
        .get(&format!(
            "{list}?filter=state%3D%22SUCCEEDED%22%20AND%20labels.team%3Db"
        ))
        .await;
    let done: Vec<&Value> = done["executions"].as_array().unwrap().iter().collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["name"], json!(names[1]));

    for (query, says) in [
        ("filter=colour%3Dred", "does not filter by"),
        ("orderBy=startTime%20asc", "newest first"),
        ("pageToken=nonsense", "pageToken"),
        ("view=SOME", "BASIC or FULL"),
    ] {
        let (status, refused) = server.get(&format!("{list}?{query}")).await;
        assert_eq!(
            (status, &refused["error"]["status"]),
            (400, &json!("INVALID_ARGUMENT")),
            "{query}: {refused}"
        );
        assert!(
            refused["error"]["message"].as_str().unwrap().contains(says),
            "{query}: {refused}"
        );
    }
    let (status, refused) = server
        .post(
            &list,
            json!({"labels": {"skein.dev/workflow-revision": "x"}}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
}

/// The same over gRPC: deploy (new, then unchanged), list, get, start by reference,
/// delete, and NOT_FOUND for what is not there.
#[tokio::test]
async fn named_workflows_over_grpc() {
    use api::grpc::pb;

    let server = serve().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(api::grpc::serve(
        server.service.clone(),
        listener,
        None,
        std::future::pending(),
    ));
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut runner = pb::runner_client::RunnerClient::new(channel);

    let deploy = |definition: &str| pb::DeployWorkflowRequest {
        name: "triple".into(),
        definition: definition.into(),
    };
    let first = runner
        .deploy_workflow(deploy(CLOUD))
        .await
        .unwrap()
        .into_inner();
    let workflow = first.workflow.unwrap();
    assert!(first.created);
    assert_eq!(
        (workflow.revision, workflow.syntax.as_str()),
        (1, "cloud-workflows")
    );
    let again = runner
        .deploy_workflow(deploy(CLOUD))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created, "the same text is the same revision");
    let second = runner
        .deploy_workflow(deploy(&flow(DOUBLE)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.workflow.unwrap().revision, 2);
    let bad = runner
        .deploy_workflow(deploy("main: {steps: 3}"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    let list = runner
        .list_workflows(pb::ListWorkflowsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.workflows.len(), 1);
    assert_eq!(list.workflows[0].revision, 2);
    assert!(
        list.workflows[0].definition.is_empty(),
        "lists carry no definitions"
    );

    let got = runner
        .get_workflow(pb::WorkflowRef {
            name: "triple".into(),
            revision: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (got.definition.as_str(), got.revisions),
        (CLOUD, vec![2, 1])
    );

    let started = runner
        .execute_async(pb::ExecuteRequest {
            execution_id: "by-ref".into(),
            workflow_ref: "triple@1".into(),
            input: Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::StructValue(prost_types::Struct {
                    fields: [(
                        "n".to_string(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::NumberValue(5.0)),
                        },
                    )]
                    .into_iter()
                    .collect(),
                })),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(started.created);
    let (status, done) = server.get("/v1/executions/by-ref?wait=30s").await;
    assert_eq!((status, &done["output"]), (200, &json!(15)), "{done}");

    runner
        .delete_workflow(pb::WorkflowRef {
            name: "triple".into(),
            revision: 0,
        })
        .await
        .unwrap();
    let gone = runner
        .get_workflow(pb::WorkflowRef {
            name: "triple".into(),
            revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    let gone = runner
        .delete_workflow(pb::WorkflowRef {
            name: "triple".into(),
            revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
}
