//! `skein run` as a user meets it: the README's main job, and clear errors that
//! name the task for each kind of failure.

use std::process::Command;

use serde_json::Value;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_readme_main_job_renders_a_video_equal_to_a_single_process_render() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(&[
        "demo",
        "render",
        "--frames",
        "10",
        "--width",
        "48",
        "--height",
        "32",
        "--frames-per-chunk",
        "3",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let url = url::Url::parse(stdout.lines().next().unwrap()).unwrap();
    let video = std::fs::read(url.to_file_path().unwrap()).unwrap();
    let params = render::Params {
        frames: 10,
        width: 48,
        height: 32,
        ..Default::default()
    };
    assert_eq!(video, render::render_whole(&params));
    assert!(
        stderr.contains("10 frames") && stderr.contains("cost $"),
        "{stderr}"
    );
}

/// The render service as it is deployed (`skein demo render-service`, its own process,
/// listening on $PORT), and the render workflow run against it by `skein run`, written
/// in the DSL and in Cloud Workflows syntax: each gives the same video as a
/// single-process render.
#[test]
fn the_render_workflow_runs_against_the_deployable_render_service() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    let port = crate::server::free_port();
    let mut service = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["demo", "render-service", "--objects"])
        .arg(&objects)
        .env("PORT", port.to_string())
        .env("SKEIN_OBJECT_ALLOWLIST", "*")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let params = render::Params {
        frames: 7,
        width: 40,
        height: 24,
        ..Default::default()
    };
    let mut outcomes = Vec::new();
    for file in ["render.yaml", "render.workflows.yaml"] {
        let input = serde_json::json!({
            "service": format!("http://127.0.0.1:{port}"),
            "jobId": format!("deployed-{file}"),
            "params": params,
            "framesPerChunk": 3,
            "concurrency": 3,
        });
        let workflow = crate::repo().join("examples/render").join(file);
        outcomes.push((
            file,
            run(&[
                "run",
                workflow.to_str().unwrap(),
                "--input",
                &input.to_string(),
                "--data-dir",
                dir.path().join("journal").to_str().unwrap(),
                "--json",
            ]),
        ));
    }
    let _ = service.kill();
    let _ = service.wait();
    for (file, (code, stdout, stderr)) in outcomes {
        assert_eq!(code, Some(0), "{file}: {stderr}");
        let result: Value = serde_json::from_str(&stdout).unwrap();
        let output = &result["output"];
        assert_eq!(
            (result["status"].as_str(), &output["frames"]),
            (Some("completed"), &serde_json::json!(7)),
            "{file}: {result}"
        );
        let url = url::Url::parse(output["output"].as_str().unwrap()).unwrap();
        let video = std::fs::read(url.to_file_path().unwrap()).unwrap();
        assert_eq!(video, render::render_whole(&params), "{file}");
    }
}

#[test]
fn the_bundled_fan_out_runs() {
    let dir = tempfile::tempdir().unwrap();
    let example = super::repo().join("examples/fan-out.yaml");
    let (code, stdout, stderr) = run(&[
        "run",
        example.to_str().unwrap(),
        "--input",
        r#"{"count": 12}"#,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let output: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(output["total"], 506);
    assert_eq!(output["squares"].as_array().unwrap().len(), 12);
    assert!(
        stderr.contains("resume with: skein run --resume"),
        "{stderr}"
    );
}

/// Runs a one-task workflow and returns skein's exit code and stderr.
fn failing(name: &str, tasks: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "document: {{dsl: '1.0.3', namespace: test, name: {name}, version: '1.0.0'}}\n{tasks}"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, _, stderr) = run(&args);
    (code, stderr)
}

#[test]
fn a_fault_prints_the_whole_error_object() {
    let (code, stderr) = failing(
        "raise",
        "do:\n  - check:\n      raise:\n        error:\n          type: https://example.com/errors/nope\n          status: 409\n          title: Conflict\n          detail: ${ \"item \\(.id) is taken\" }\n",
        &["--input", r#"{"id": 7}"#],
    );
    assert_eq!(code, Some(1));
    for line in [
        "the workflow faulted at /do/0/check",
        "type:     https://example.com/errors/nope",
        "status:   409",
        "title:    Conflict",
        "detail:   item 7 is taken",
        "instance: /do/0/check",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

#[test]
fn each_kind_of_failure_is_clear_and_names_the_task() {
    let cases: [(&str, &str, &[&str], &[&str]); 4] = [
        (
            "invalid-input",
            "input:\n  schema:\n    format: json\n    document: { type: object, required: [ orderId ] }\ndo:\n  - a: { set: { x: 1 } }\n",
            &["--input", r#"{"order": 1}"#],
            &[
                "errors/validation",
                "The workflow input does not match its schema",
                "\"orderId\" is a required property",
            ],
        ),
        (
            "missing-secret",
            "use:\n  secrets: [ apiKey ]\ndo:\n  - fetch:\n      call: http\n      with:\n        method: get\n        endpoint:\n          uri: http://127.0.0.1:9/\n          authentication:\n            bearer:\n              use: apiKey\n",
            &[],
            &[
                "errors/authorization",
                "status:   403",
                "the secret `apiKey` was not provided",
                "instance: /do/0/fetch",
            ],
        ),
        (
            "unreachable",
            "do:\n  - fetch:\n      call: http\n      with: { method: get, endpoint: 'http://127.0.0.1:9/nothing' }\n",
            &[],
            &[
                "errors/communication",
                "status:   503",
                "GET http://127.0.0.1:9/nothing failed",
                "cannot connect",
                "instance: /do/0/fetch",
            ],
        ),
        (
            "shell-exit",
            "do:\n  - build:\n      run:\n        shell:\n          command: 'echo compile error >&2; exit 2'\n",
            &[],
            &[
                "errors/runtime",
                "The process exited with code 2",
                "compile error",
                "instance: /do/0/build",
            ],
        ),
    ];
    for (name, tasks, extra, needles) in cases {
        let (code, stderr) = failing(name, tasks, extra);
        assert_eq!(code, Some(1), "{name}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{name}: missing {needle:?} in:\n{stderr}"
            );
        }
    }
}

#[test]
fn an_invalid_workflow_is_refused_with_diagnostics_and_exit_two() {
    let (code, stderr) = failing("bad", "do:\n  - a:\n      sett: 1\n", &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("bad.yaml:4:7: error: unknown key `sett`"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_cancels_cleanly_and_kills_child_processes() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let file = dir.path().join("slow.yaml");
    std::fs::write(
        &file,
        format!(
            "document: {{dsl: '1.0.3', namespace: test, name: slow, version: '1.0.0'}}\ndo:\n  - sleep:\n      run:\n        shell:\n          command: 'echo $$ > {}; sleep 30'\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
        .args([
            "run",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !pid_file.exists()
        || std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .is_empty()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the shell task never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let shell: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("was cancelled"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "cancelled promptly, not after the sleep"
    );
    // The shell (and its `sleep`) are gone: signal 0 finds no such process.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        kill(Pid::from_raw(shell), None).is_err(),
        "the child process outlived the cancellation"
    );
}
