//! Zigflow documents run by the real binary: the suite of `crates/dsl/tests/zigflow/`
//! (see `suite`), the dialect's errors with their positions, what `--strict` says of
//! it, and `wait.until` waiting for a moment to come.

use std::time::{Duration, Instant};

use crate::{repo, skein, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_zigflow_document_of_the_suite_gives_its_expected_result() {
    crate::suite::every_document_gives_its_result(
        &repo().join("crates/dsl/tests/zigflow"),
        "http://127.0.0.1:9",
    )
    .await;
}

#[test]
fn the_dialect_is_checked_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "document:\n  dsl: 1.0.0\n  taskQueue: Orders_Queue\n  namespace: orders\n  workflowType: place-order\n  version: 0.0.1\n.anchors: {}\ndo:\n  - later:\n      wait:\n        until: next tuesday\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for expected in [
        "bad.yaml:3:14: error: the task queue `Orders_Queue` is not a DNS label, which Zigflow requires",
        "bad.yaml:4:3: error: `namespace` and `taskQueue` name the same thing",
        "bad.yaml:11:16: error: `until` `next tuesday` is not an RFC 3339 time",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
    assert!(
        !text.contains(".anchors"),
        "anchor holders are accepted:\n{text}"
    );

    // The DSL without the dialect still refuses a dot key.
    std::fs::write(
        &file,
        "document: {dsl: 1.0.0, namespace: n, name: w, version: 0.0.1}\n.anchors: {}\ndo:\n  - a:\n      set: {x: 1}\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("unknown key `.anchors`"),
        "{}",
        stderr(&out)
    );
}

/// Metadata that means something to Temporal is accepted, and `skein validate` says
/// that skein does not apply it, in the document and in a task.
#[test]
fn temporal_metadata_is_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meta.yaml");
    std::fs::write(
        &file,
        "document:\n  dsl: 1.0.0\n  taskQueue: zigflow\n  workflowType: meta\n  version: 0.0.1\n  metadata:\n    canMaxHistoryLength: 14\n    display: false\ndo:\n  - a:\n      metadata:\n        activityOptions:\n          startToCloseTimeout:\n            minutes: 1\n      set:\n        x: 1\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    for expected in [
        "meta.yaml:7:5: warning: `metadata.canMaxHistoryLength` is Zigflow's and is accepted, but not applied",
        "meta.yaml:12:9: warning: `metadata.activityOptions` is Zigflow's and is accepted, but not applied",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
    assert!(
        !text.contains("display"),
        "other metadata is free-form:\n{text}"
    );
}

#[test]
fn strict_says_what_is_zigflow_s_own() {
    let file = repo().join("crates/dsl/tests/zigflow/wait_until.yaml");
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = skein(&["validate", "--strict", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for expected in [
        "`taskQueue` and `workflowType` are Zigflow's dialect",
        "`wait.until` is Zigflow's extension",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
}

/// A moment a second and a half ahead is waited for, not skipped.
#[test]
fn wait_until_waits_for_a_moment_to_come() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo().join("crates/dsl/tests/zigflow/wait_until.yaml");
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500);
    let input = format!("{{\"deadline\": \"{deadline}\"}}");
    let started = Instant::now();
    let out = skein(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        &input,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1300),
        "finished after {took:?}, before the moment"
    );
}

/// `--env-allow` lets workflows read the variables it names (or whose prefix it gives)
/// from the process's environment, and no others.
#[test]
fn env_allow_names_what_workflows_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.yaml");
    std::fs::write(
        &file,
        "document: {dsl: 1.0.0, taskQueue: zigflow, workflowType: env, version: 0.0.1}\ndo:\n  - read:\n      set:\n        url: ${ $env.API_URL }\n        ziggy: ${ $env.ZIGGY_MODE }\n        secret: ${ $env.DB_PASSWORD }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["run", file.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--env-allow", "API_URL,ZIGGY_*"])
        .env("API_URL", "http://api.local")
        .env("ZIGGY_MODE", "fast")
        .env("DB_PASSWORD", "hunter2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"url": "http://api.local", "ziggy": "fast", "secret": null})
    );
}
