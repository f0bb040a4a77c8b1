//! The Serverless Workflow conformance kit, run by `skein test` against a local
//! stand-in for the few endpoints of petstore.swagger.io and httpbin.org it calls.

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

/// A minimal Swagger 2.0 description of the two petstore operations the kit calls.
fn swagger() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Petstore stand-in", "version": "1.0.0"},
        "host": "petstore.swagger.io",
        "basePath": "/v2",
        "schemes": ["https"],
        "paths": {
            "/pet/findByStatus": {"get": {
                "operationId": "findPetsByStatus",
                "parameters": [{"name": "status", "in": "query", "required": true, "type": "string"}],
                "responses": {"200": {"description": "pets"}}
            }},
            "/pet/{petId}": {"get": {
                "operationId": "getPetById",
                "parameters": [{"name": "petId", "in": "path", "required": true, "type": "integer"}],
                "responses": {"200": {"description": "a pet"}, "404": {"description": "not found"}}
            }}
        }
    })
}

fn pet(id: i64, status: &str) -> Value {
    json!({"id": id, "name": format!("pet-{id}"), "status": status, "category": {"id": 1, "name": "dog"}})
}

async fn stand_in() -> String {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": 1, "type": "error", "message": "Pet not found"})),
        )
    };
    let app = Router::new()
        .route("/v2/swagger.json", get(|| async { axum::Json(swagger()) }))
        .route(
            "/v2/pet/findByStatus",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let status = q.get("status").cloned().unwrap_or_default();
                    axum::Json(json!([pet(1, &status), pet(2, &status)]))
                },
            ),
        )
        .route(
            "/v2/pet/getPetByName/{name}",
            get(move |Path(_name): Path<String>| async move { not_found() }),
        )
        .route(
            "/v2/pet/{id}",
            get(move |Path(id): Path<String>| async move {
                match id.parse::<i64>() {
                    Ok(id) => (StatusCode::OK, axum::Json(pet(id, "available"))),
                    Err(_) => not_found(),
                }
            }),
        )
        .route(
            "/basic-auth/{user}/{password}",
            get(
                |Path((user, password)): Path<(String, String)>, headers: HeaderMap| async move {
                    use base64::Engine as _;
                    let expected = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("{user}:{password}"))
                    );
                    let given = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    if given == expected {
                        (
                            StatusCode::OK,
                            axum::Json(json!({"authenticated": true, "user": user})),
                        )
                    } else {
                        (
                            StatusCode::UNAUTHORIZED,
                            axum::Json(json!({"authenticated": false})),
                        )
                    }
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_conformance_kit_passes() {
    let Some(spec) = testkit::spec::dir("the_whole_conformance_kit_passes") else {
        return;
    };
    let base = stand_in().await;
    let features = spec.join("ctk/features");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .arg("test")
        .arg(&features)
        .args(["--map-host", &format!("petstore.swagger.io={base}")])
        .args(["--map-host", &format!("httpbin.org={base}")])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim_end().ends_with("21 passed, 0 failed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_feature_files_pass() {
    let base = stand_in().await;
    let features = super::repo().join("tests/features");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .arg("test")
        .arg(&features)
        .args(["--map-host", &format!("petstore.swagger.io={base}")])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        last.ends_with(" passed, 0 failed") && !last.starts_with("0 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_scenario_is_reported_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.feature");
    std::fs::write(
        &file,
        "Feature: Wrong\n  Scenario: Expects the wrong output\n    Given a workflow with definition:\n    \"\"\"yaml\n    document: {dsl: '1.0.3', namespace: t, name: w, version: '1.0.0'}\n    do:\n      - a: { set: { x: 1 } }\n    \"\"\"\n    When the workflow is executed\n    Then the workflow should complete with output:\n    \"\"\"yaml\n    x: 2\n    \"\"\"\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .arg("test")
        .arg(&file)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("FAIL") && stdout.contains("the output is {\"x\":1}, expected {\"x\":2}"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("0 passed, 1 failed"),
        "{stdout}"
    );
}
