//! The deploy files against the binary they deploy: every `skein` command line in them
//! (the image's CMD, Cloud Run services, Kubernetes Deployments, compose services, the
//! Terraform module) is one skein takes; the image's entrypoint, run as a process with
//! the image's settings, serves and passes its own HEALTHCHECK, and stops on SIGTERM; the
//! alert rules and the dashboard read only metrics that skein's processes serve. (The
//! files' own syntax is checked by `deploy/check.sh`; no image is built here, as no
//! registry is reachable to pull the base images from.)

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;

use crate::server::free_port;

fn deploy() -> std::path::PathBuf {
    super::repo().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The YAML documents of a file (several, separated by `---`).
fn documents(path: &Path) -> Vec<Value> {
    read(path)
        .split("\n---\n")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// The Dockerfile's instruction `name` (the first), without the keyword.
fn instruction(dockerfile: &str, name: &str) -> String {
    // Continuation lines joined, so that HEALTHCHECK … CMD is one.
    let joined = dockerfile.replace("\\\n", " ");
    joined
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("the Dockerfile has no {name}"))
        .trim()
        .to_string()
}

/// The `args` of every container of Kubernetes Deployments and Cloud Run services.
fn container_args(doc: &Value, out: &mut Vec<Vec<String>>) {
    let containers = &doc["spec"]["template"]["spec"]["containers"];
    for container in containers.as_array().into_iter().flatten() {
        if container["image"]
            .as_str()
            .is_some_and(|i| i.contains("skein"))
            && let Some(args) = container.get("args")
        {
            out.push(serde_json::from_value(args.clone()).unwrap());
        }
    }
}

#[test]
fn every_skein_command_line_in_the_deploy_files_is_one_skein_takes() {
    let mut commands: Vec<Vec<String>> = Vec::new();
    let cmd = instruction(&read(&deploy().join("Dockerfile")), "CMD");
    commands.push(serde_json::from_str(&cmd).unwrap());
    let mut yamls: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["cloudrun", "kubernetes/base"] {
        for entry in std::fs::read_dir(deploy().join(dir)).unwrap() {
            yamls.push(entry.unwrap().path());
        }
    }
    yamls.push(super::repo().join("examples/render/deploy/render-service.cloudrun.yaml"));
    for path in &yamls {
        for doc in documents(path) {
            container_args(&doc, &mut commands);
        }
    }
    for compose in [
        deploy().join("compose.yaml"),
        super::repo().join("examples/render/deploy/compose.yaml"),
    ] {
        let doc = &documents(&compose)[0];
        for service in doc["services"].as_object().unwrap().values() {
            if service["image"] == "skein" {
                commands.push(serde_json::from_value(service["command"].clone()).unwrap());
            }
        }
    }
    // Terraform: `args = [...]` lists, which are JSON.
    let args = regex::Regex::new(r"^\s*args\s*=\s*(\[.*\])\s*$").unwrap();
    for line in read(&deploy().join("terraform/main.tf")).lines() {
        if let Some(list) = args.captures(line) {
            commands.push(serde_json::from_str(&list[1]).unwrap());
        }
    }
    // CMD, 5 Cloud Run, 3 Kubernetes, 1 render service, 5 compose, 4 Terraform.
    assert_eq!(commands.len(), 19, "{commands:#?}");
    for args in commands {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skein"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skein {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `skein healthcheck` as the image's HEALTHCHECK runs it, with the image's settings.
async fn healthcheck(args: &[String], port: u16) -> bool {
    Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(args)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_entrypoint_serves_passes_its_healthcheck_and_stops_on_sigterm() {
    let dockerfile = read(&deploy().join("Dockerfile"));
    let binary = env!("CARGO_BIN_EXE_skein");
    let in_image = |args: Vec<String>| -> Vec<String> {
        let mut args = args;
        assert_eq!(args[0], "/usr/local/bin/skein", "{args:?}");
        args.remove(0);
        args
    };
    let entrypoint: Vec<String> =
        serde_json::from_str(&instruction(&dockerfile, "ENTRYPOINT")).unwrap();
    let cmd: Vec<String> = serde_json::from_str(&instruction(&dockerfile, "CMD")).unwrap();
    let health = instruction(&dockerfile, "HEALTHCHECK");
    let health: Vec<String> =
        serde_json::from_str(health.split(" CMD ").nth(1).expect("CMD")).unwrap();
    let health = in_image(health);
    // ENV KEY=VALUE pairs.
    let env: Vec<(String, String)> = instruction(&dockerfile, "ENV")
        .split_whitespace()
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect();
    assert!(env.iter().any(|(k, _)| k == "PORT"), "{env:?}");

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    assert!(!healthcheck(&health, port).await, "nothing listens yet");
    let sha = ring::digest::digest(&ring::digest::SHA256, b"image-token");
    let hex: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    // As `docker run -e PORT=… -e SKEIN_TOKENS=… skein` would start it.
    let mut server = Command::new(binary)
        .args(in_image(entrypoint).into_iter().chain(cmd))
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().cloned())
        .env("PORT", port.to_string())
        .env("SKEIN_TOKENS", format!("default:admin:{hex}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthcheck(&health, port).await {
        if let Ok(Some(status)) = server.try_wait() {
            let out = server.wait_with_output().await.unwrap();
            panic!(
                "the entrypoint exited {status}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "the healthcheck never passed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its journal is under the working directory (the image's WORKDIR), its logs JSON.
    assert!(dir.path().join(".skein").exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(15), server.wait_with_output())
        .await
        .expect("it stops within 15 s of SIGTERM")
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let first = String::from_utf8_lossy(&out.stderr);
    let first = first.lines().next().unwrap_or_default();
    let line: Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(line["severity"].is_string(), "{line}");
}

/// The metric names a Prometheus text exposition declares, with the sample names their
/// types give them (`_total` for counters; `_bucket`, `_sum`, `_count` for histograms).
fn declared(text: &str, names: &mut BTreeSet<String>) {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_string());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_and_the_dashboard_read_metrics_skein_serves() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let (port, worker_port) = (free_port(), free_port());
    // One start a second, so that a burst is refused and the quota family has a sample.
    let _server = crate::server::background(&["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--project-starts-per-second", "1"])
        .spawn()
        .unwrap();
    let _worker =
        crate::server::background(&["worker", "--listen", &format!("127.0.0.1:{worker_port}")])
            .spawn()
            .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    crate::server::healthy(&client, &base).await;
    // Families with labels show once they have a sample: lifecycle events, a refusal.
    let workflow = "document: {dsl: '1.0.3', namespace: test, name: m, version: '1.0.0'}
do:
  - one:
      set: { n: 1 }
";
    let mut refused = false;
    for _ in 0..5 {
        let (status, _) = crate::server::call(
            &client,
            format!("{base}/v1/executions?wait=10s"),
            Some(serde_json::json!({"workflow": workflow})),
        )
        .await;
        refused |= status == 429;
    }
    assert!(refused, "a burst of starts past the quota is refused");
    let mut names = BTreeSet::new();
    for url in [
        format!("{base}/metrics"),
        format!("http://127.0.0.1:{worker_port}/metrics"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let text = loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                break r.text().await.unwrap();
            }
            assert!(Instant::now() < deadline, "{url} never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        declared(&text, &mut names);
    }
    // The bridge's, from the same code its /metrics runs.
    declared(&bridge::Counters::default().prometheus(), &mut names);

    let metric = regex::Regex::new(r"\bskein_[a-z_]+").unwrap();
    for file in ["monitoring/rules.yaml", "monitoring/grafana-dashboard.json"] {
        let text = read(&deploy().join(file));
        let used: BTreeSet<&str> = metric.find_iter(&text).map(|m| m.as_str()).collect();
        assert!(used.len() >= 5, "{file}: {used:?}");
        for name in used {
            assert!(
                names.contains(name),
                "{file} reads `{name}`, which no skein process serves: {names:?}"
            );
        }
    }
}

/// `skein healthcheck --wait`, as the systemd unit runs it right after starting the
/// server: it keeps asking until the server answers, at the port SKEIN_LISTEN names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_waits_for_a_server_that_is_still_starting() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let check = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["healthcheck", "--wait", "20"])
        .env("SKEIN_LISTEN", &listen)
        .env_remove("PORT")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _server = crate::server::serve(port, None, dir.path());
    let out = check.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without --wait, nothing listening is a failure at once, saying where it asked.
    let out = Command::new(env!("CARGO_BIN_EXE_skein"))
        .args(["healthcheck", "--url", "http://127.0.0.1:9/healthz"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:9/healthz"));
}
