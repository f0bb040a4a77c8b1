//! `run.container` with Debian's podman, on an image built here from a root filesystem
//! of the host's own `sh`, `cat` and `sleep` (`podman import`: no registry is
//! reachable): stdin, command, arguments, environment, volumes, ports, exit codes,
//! cleanup; a resumed execution that finds its container instead of starting a second;
//! a cancel that stops the container; and no engine at all.
//!
//! podman runs containers on these machines with runc and explicit ulimits (crun
//! refuses the hybrid cgroup layout, and the default `RLIMIT_NOFILE` is above the
//! sandbox's hard limit): the tests give it a containers.conf that says so, through
//! CONTAINERS_CONF, which skein passes on to the engine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{call, free_port, healthy, outcome};

/// The image the tests run.
pub(crate) const IMAGE: &str = "localhost/skein-test-sh:1";

/// A directory with the containers.conf podman needs here, once podman can run the
/// test image; `None`, said aloud, where it cannot, unless SKEIN_REQUIRE_PODMAN=1 makes
/// that a failure.
pub(crate) fn podman() -> Option<tempfile::TempDir> {
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(
        conf.path().join("containers.conf"),
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    let problem = match build_image(conf.path()) {
        Ok(()) => return Some(conf),
        Err(e) => e,
    };
    let message = format!("podman cannot run the test image here: {problem}");
    assert!(
        std::env::var("SKEIN_REQUIRE_PODMAN").as_deref() != Ok("1"),
        "{message}"
    );
    eprintln!("SKIPPED: {message}");
    None
}

fn podman_command(conf: &Path) -> std::process::Command {
    let mut command = std::process::Command::new("podman");
    command.env("CONTAINERS_CONF", conf.join("containers.conf"));
    command
}

/// Imports the test image (once per machine) and checks a container of it runs.
fn build_image(conf: &Path) -> Result<(), String> {
    let exists = podman_command(conf)
        .args(["image", "exists", IMAGE])
        .status()
        .map_err(|e| format!("cannot start podman: {e}"))?;
    if !exists.success() {
        let root = tempfile::tempdir().unwrap();
        for program in ["/bin/sh", "/bin/cat", "/bin/sleep"] {
            copy_with_libraries(Path::new(program), root.path())?;
        }
        let tar = root.path().join("rootfs.tar");
        let packed = std::process::Command::new("tar")
            .arg("-C")
            .arg(root.path())
            .args(["--exclude", "rootfs.tar", "-cf"])
            .arg(&tar)
            .arg(".")
            .status()
            .map_err(|e| e.to_string())?;
        if !packed.success() {
            return Err("tar failed".into());
        }
        let imported = podman_command(conf)
            .args([
                "import",
                "--change",
                "CMD [\"/bin/sh\", \"-c\", \"echo hello from the image\"]",
            ])
            .arg(&tar)
            .arg(IMAGE)
            .output()
            .map_err(|e| e.to_string())?;
        if !imported.status.success() {
            return Err(String::from_utf8_lossy(&imported.stderr).into_owned());
        }
    }
    let ran = podman_command(conf)
        .args(["run", "--rm", IMAGE])
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&ran.stdout).trim() != "hello from the image" {
        return Err(format!(
            "a container of {IMAGE} did not run: {}",
            String::from_utf8_lossy(&ran.stderr).trim()
        ));
    }
    Ok(())
}

/// Copies `program` and the shared libraries `ldd` names into `root`, at their paths.
fn copy_with_libraries(program: &Path, root: &Path) -> Result<(), String> {
    let ldd = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| e.to_string())?;
    let mut files = vec![program.to_path_buf()];
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            files.push(PathBuf::from(word));
        }
    }
    for file in files {
        let target = root.join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::copy(std::fs::canonicalize(&file).unwrap(), &target)
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}

/// The names of the containers labelled with execution `id`.
fn containers_of(conf: &Path, id: &str) -> Vec<String> {
    let out = podman_command(conf)
        .args(["ps", "--all", "--filter"])
        .arg(format!("label=dev.skein.execution={id}"))
        .args(["--format", "{{.Names}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn inspect(conf: &Path, name: &str, format: &str) -> String {
    let out = podman_command(conf)
        .args(["container", "inspect", "--format", format, name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `skein run --json ARGS` in `dir`, its container engine configured by `conf`.
fn skein_run(dir: &Path, conf: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = crate::server::skein_run(dir);
    command
        .args(args)
        .env("CONTAINERS_CONF", conf.join("containers.conf"));
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_run_with_stdin_arguments_environment_volumes_and_ports() {
    let Some(conf) = podman() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let port = free_port();
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: containers, version: '1.0.0'}}
do:
  - setInput:
      set: {{message: Hello World}}
  - kept:
      input: {{from: '${{ .message }}'}}
      run:
        container:
          image: {IMAGE}
          stdin: '${{ . }}'
          command: |
            read input
            echo "STDIN was: $input"
            echo "ARGS are $1 $2"
            echo "greeting=$GREETING"
            echo written > /data/out.txt
            echo "to stderr" >&2
          arguments: [Foo, Bar]
          environment: {{GREETING: '${{ "hey " + . }}'}}
          volumes: {{'{data}': /data}}
          ports: {{'{port}': 8080}}
      export: {{as: '${{ $context + {{kept: .}} }}'}}
  - removed:
      run:
        container:
          image: {IMAGE}
          lifetime: {{cleanup: always}}
      export: {{as: '${{ $context + {{removed: .}} }}'}}
  - failing:
      run:
        container:
          image: {IMAGE}
          command: 'echo almost; exit 3'
          lifetime: {{cleanup: always}}
        return: all
      export: {{as: '${{ $context + {{failing: .}} }}'}}
  - all:
      set: '${{ $context }}'
"#,
        data = data.display()
    );
    std::fs::write(dir.path().join("containers.yaml"), workflow).unwrap();
    // Ids of their own, so that containers a failed earlier run left are not found.
    let id = format!("ctr-{}", uuid::Uuid::new_v4().simple());
    let outcome = outcome(&mut skein_run(
        dir.path(),
        conf.path(),
        &["containers.yaml", "--id", &id],
    ))
    .await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    let out = &outcome["output"];
    assert_eq!(
        out["kept"], "STDIN was: Hello World\nARGS are Foo Bar\ngreeting=hey Hello World\n",
        "{out:#}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("out.txt")).unwrap(),
        "written\n"
    );
    assert_eq!(out["removed"], "hello from the image\n");
    assert_eq!(out["failing"]["code"], 3);
    assert_eq!(out["failing"]["stdout"], "almost\n");

    // Only the kept container is left: named after its step, with its port.
    let left = containers_of(conf.path(), &id);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("skein-"), "{left:?}");
    assert_eq!(
        inspect(
            conf.path(),
            &left[0],
            "{{index .Config.Labels \"dev.skein.step\"}}"
        ),
        "/do/1/kept"
    );
    let ports = inspect(conf.path(), &left[0], "{{json .HostConfig.PortBindings}}");
    assert!(
        ports.contains("8080/tcp") && ports.contains(&port.to_string()),
        "{ports}"
    );
    podman_command(conf.path())
        .args(["rm", "--force"])
        .arg(&left[0])
        .output()
        .unwrap();
}

/// A resumed execution finds the container its first run started and waits for it; a
/// second container is never started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_execution_finds_its_container() {
    let Some(conf) = podman() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let workflow = format!(
        r#"
document: {{dsl: '1.0.3', namespace: test, name: resumed, version: '1.0.0'}}
do:
  - slow:
      run:
        container:
          image: {IMAGE}
          command: 'echo started >> /data/starts; sleep 3; echo done'
          volumes: {{'{}': /data}}
          lifetime: {{cleanup: always}}
"#,
        data.display()
    );
    std::fs::write(dir.path().join("resumed.yaml"), workflow).unwrap();
    let id = format!("ctr-{}", uuid::Uuid::new_v4().simple());
    let mut first = skein_run(dir.path(), conf.path(), &["resumed.yaml", "--id", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("starts").exists() {
        assert!(Instant::now() < deadline, "the container never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().await.unwrap();
    let outcome = outcome(&mut skein_run(dir.path(), conf.path(), &["--resume", &id])).await;
    assert_eq!(outcome["status"], "completed", "{outcome:#}");
    assert_eq!(outcome["output"], "done\n");
    assert_eq!(
        std::fs::read_to_string(data.join("starts")).unwrap(),
        "started\n",
        "the container ran once"
    );
    assert!(containers_of(conf.path(), &id).is_empty());
}

/// Cancelling the execution stops its container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_the_container() {
    let Some(conf) = podman() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = crate::server::background(&["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("CONTAINERS_CONF", conf.path().join("containers.conf"))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let workflow = format!(
        "document: {{dsl: '1.0.3', namespace: test, name: long, version: '1.0.0'}}\ndo:\n  - long:\n      run:\n        container:\n          image: {IMAGE}\n          command: 'sleep 300'\n"
    );
    let id = format!("ctr-{}", uuid::Uuid::new_v4().simple());
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions"),
        Some(json!({"workflow": workflow, "id": id})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let name = loop {
        let names = containers_of(conf.path(), &id);
        if let Some(name) = names.first()
            && inspect(conf.path(), name, "{{.State.Status}}") == "running"
        {
            break name.clone();
        }
        assert!(Instant::now() < deadline, "no running container");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, body) = call(
        &client,
        format!("{base}/v1/executions/{id}/cancel"),
        Some(json!({})),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = inspect(conf.path(), &name, "{{.State.Status}}");
        if state != "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the container still runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    podman_command(conf.path())
        .args(["rm", "--force", &name])
        .output()
        .unwrap();
}

/// Without a container engine, the task fails with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_engine_the_task_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "document: {dsl: '1.0.3', namespace: test, name: c, version: '1.0.0'}\ndo:\n  - boxed:\n      run:\n        container:\n          image: alpine\n",
    )
    .unwrap();
    // A PATH with a shell but no podman or docker.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/bin/sh", bin.path().join("sh")).unwrap();
    let outcome =
        outcome(skein_run(dir.path(), dir.path(), &["c.yaml"]).env("PATH", bin.path())).await;
    assert_eq!(outcome["status"], "faulted", "{outcome:#}");
    let error = &outcome["error"];
    assert_eq!(error["instance"], "/do/0/boxed");
    assert!(
        error["detail"]
            .as_str()
            .unwrap()
            .contains("neither podman nor docker"),
        "{error}"
    );
}

/// Debian's docker-registry on a port of its own, holding the test image as Docker
/// Hub's `alpine` and `hello-world`, and a registries.conf (in `conf`) that sends
/// `docker.io` there: the spec's examples name those images.
async fn registry(conf: &Path, storage: &Path) -> tokio::process::Child {
    let port = free_port();
    let config = storage.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.join("data").display()
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the registry did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in ["alpine", "hello-world"] {
        let pushed = podman_command(conf)
            .args(["push", "--tls-verify=false", IMAGE])
            .arg(format!("127.0.0.1:{port}/library/{name}:latest"))
            .output()
            .unwrap();
        assert!(
            pushed.status.success(),
            "{}",
            String::from_utf8_lossy(&pushed.stderr)
        );
    }
    std::fs::write(
        conf.join("registries.conf"),
        format!(
            "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"127.0.0.1:{port}\"\ninsecure = true\n"
        ),
    )
    .unwrap();
    child
}

/// The spec's `run.container` examples (and its `run.return` ones, which run a
/// container), their images pulled from the stand-in registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_container_examples_run() {
    let Some(spec) = testkit::spec::dir("the_spec_container_examples_run") else {
        return;
    };
    let Some(conf) = podman() else {
        return;
    };
    let has_registry = std::process::Command::new("sh")
        .args(["-c", "command -v docker-registry"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_registry {
        let message = "the spec's container examples need Debian's docker-registry to stand in \
                       for Docker Hub";
        assert!(
            std::env::var("SKEIN_REQUIRE_PODMAN").as_deref() != Ok("1"),
            "{message}"
        );
        eprintln!("SKIPPED: {message}");
        return;
    }
    let storage = tempfile::tempdir().unwrap();
    let _registry = registry(conf.path(), storage.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let hello = json!("hello from the image\n");
    let cases = [
        ("run-container.yaml", hello.clone()),
        ("run-container-cleanup-always.yaml", hello.clone()),
        ("run-container-cleanup-eventually.yaml", hello.clone()),
        ("run-container-with-pull-policy.yaml", hello.clone()),
        ("run-container-with-name.yaml", hello.clone()),
        (
            "run-container-stdin-and-arguments.yaml",
            json!("STDIN was: Hello World\nARGS are Foo Bar\n"),
        ),
        (
            "run-return-all.yaml",
            json!({"code": 0, "stdout": "hello from the image\n", "stderr": ""}),
        ),
        ("run-return-code.yaml", json!(0)),
        ("run-return-none.yaml", Value::Null),
        ("run-return-stderr.yaml", json!("")),
    ];
    let mut ids = Vec::new();
    for (file, expected) in cases {
        let id = format!("ex-{}", uuid::Uuid::new_v4().simple());
        let path = spec.join("examples").join(file);
        let outcome = outcome(
            skein_run(dir.path(), conf.path(), &["--id", &id])
                .arg(&path)
                .env(
                    "CONTAINERS_REGISTRIES_CONF",
                    conf.path().join("registries.conf"),
                ),
        )
        .await;
        assert_eq!(outcome["status"], "completed", "{file}: {outcome:#}");
        assert_eq!(outcome["output"], expected, "{file}");
        ids.push((file, id));
    }
    for (file, id) in ids {
        let left = containers_of(conf.path(), &id);
        if file.contains("cleanup-always") {
            assert!(left.is_empty(), "{file}: {left:?}");
        }
        for name in left {
            podman_command(conf.path())
                .args(["rm", "--force", &name])
                .output()
                .unwrap();
        }
    }
    podman_command(conf.path())
        .args(["rm", "--force", "hello-null-null-null"])
        .output()
        .unwrap();
}
