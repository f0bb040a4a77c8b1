//! `use.extensions` by the real binary: an extension that stands in for the calls it
//! matches (`before` ending with `exit`), and one around every task (`extend: all`)
//! whose `before` and `after` lists run, journaled, without being extended themselves.

use serde_json::{Value, json};

use crate::{skein, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_run_before_and_after_the_tasks_they_extend() {
    let base = crate::cloud_workflows::stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extended.yaml");
    std::fs::write(
        &file,
        format!(
            r#"document: {{dsl: '1.0.3', namespace: test, name: extended, version: '0.1.0'}}
use:
  extensions:
    - mockService:
        extend: call
        when: ($task.with.endpoint | tostring | startswith("https://mocked.service.com"))
        before:
          - mockResponse:
              set:
                mocked: true
              then: exit
    - counting:
        extend: all
        before:
          - countBefore:
              call: http
              with:
                method: get
                endpoint: {base}/flaky/extension-before
        after:
          - countAfter:
              call: http
              with:
                method: get
                endpoint: {base}/flaky/extension-after
do:
  - mocked:
      call: http
      with:
        method: get
        endpoint: https://mocked.service.com/orders
  - check:
      set:
        fromMock: ${{ . }}
      export:
        as: ${{ . }}
  - real:
      call: http
      with:
        method: get
        endpoint: {base}/echo
  - report:
      set:
        fromMock: ${{ $context.fromMock }}
        real: ${{ .method }}
"#
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = skein(&[
        "run",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        output,
        json!({"fromMock": {"mocked": true}, "real": "GET"}),
        "the mock stood in for the call"
    );
    // Four tasks, each counted after; before too, but for the call the mock stood in
    // for (its `exit` ends the `before` lists). The counting calls are not extended.
    // reqwest is built without a default TLS provider; skein's runtime installs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let count = |key: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let body = client
                .get(format!("{base}/flaky/{key}"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let seen: Value = serde_json::from_slice(&body).unwrap();
            seen["attempt"].as_u64().unwrap() - 1
        }
    };
    assert_eq!(count("extension-before").await, 3);
    assert_eq!(count("extension-after").await, 4);
}
