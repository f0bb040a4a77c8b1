//! `run.container` for real: the container engine's command line (`podman` or
//! `docker`, found on the worker's `PATH` or named by `--container-engine`), run as
//! processes on the workers like any other, so a container runs where `run` tasks run.
//!
//! A container is named after the task's step (or as the task names it). A resumed
//! attempt that finds its container waits for it and reads its logs instead of
//! starting a second one. A cancelled task stops its container. `cleanup: always`
//! removes it once its output is read, `eventually` after the time given (a timer of
//! this process: a restart forgets it, and the container keeps its
//! `dev.skein.cleanup` label for a sweep by hand), `never` leaves it.

use std::sync::Arc;

use engine::{Cleanup, ContainerSpec, ProcessControl, ProcessOutput, ProcessSpec};
use tokio_util::sync::CancellationToken;

use crate::Workers;

/// The container engine's own settings in this process's environment, passed on to
/// the engine's commands (the workers give tasks a clean environment).
const ENGINE_ENV: [&str; 9] = [
    "CONTAINERS_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINER_HOST",
    "XDG_RUNTIME_DIR",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
    "REGISTRY_AUTH_FILE",
];

/// How long a cancelled container gets to stop before it is killed.
const STOP_SECONDS: u32 = 5;

/// Runs `spec`'s container with `workers`; `engine` is the configured engine, if any.
pub(crate) async fn run(
    workers: &Arc<Workers>,
    engine: Option<&str>,
    spec: &ProcessSpec,
    container: &ContainerSpec,
    control: &ProcessControl,
) -> std::io::Result<ProcessOutput> {
    let engine = match engine {
        Some(engine) => engine.to_string(),
        None => find_engine(workers, spec).await?,
    };
    let cli = Cli {
        workers,
        engine: &engine,
        key: &spec.key,
    };
    let name = &container.name;
    // A cancel stops the container even when this future is dropped with the task:
    // a watcher of its own does it, until the container's work here is done.
    let done = CancellationToken::new();
    {
        let (workers, engine, key, name) = (
            workers.clone(),
            engine.clone(),
            spec.key.clone(),
            name.clone(),
        );
        let (cancel, done, cleanup) = (control.cancel.clone(), done.clone(), container.cleanup);
        tokio::spawn(async move {
            // Biased: a cancel drops this future too, and must win over `done` then.
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    let cli = Cli { workers: &workers, engine: &engine, key: &key };
                    let seconds = STOP_SECONDS.to_string();
                    let _ = cli.quiet("stop", &["stop", "--time", &seconds, &name]).await;
                    clean_up(&workers, &engine, &key, &name, cleanup).await;
                }
                _ = done.cancelled() => {}
            }
        });
    }
    let _done = done.drop_guard();
    let status = cli
        .quiet(
            "inspect",
            &[
                "container",
                "inspect",
                "--format",
                "{{.State.Status}}",
                name,
            ],
        )
        .await?;
    let output = if status.code == Some(0) {
        // Started by an earlier run of this attempt: wait for it and read what it said.
        let state = String::from_utf8_lossy(&status.stdout).trim().to_string();
        if matches!(state.as_str(), "created" | "configured" | "initialized") {
            cli.quiet("start", &["start", name]).await?;
        }
        let waited = cli.step("wait", &["wait", name], control).await?;
        let code = String::from_utf8_lossy(&waited.stdout).trim().parse().ok();
        let logs = cli.quiet("logs", &["logs", name]).await?;
        ProcessOutput {
            code: if control.cancel.is_cancelled() {
                None
            } else {
                code
            },
            stdout: logs.stdout,
            stderr: logs.stderr,
            usage: None,
        }
    } else {
        let args = run_args(container, spec);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = ProcessSpec {
            key: format!("{}#run", spec.key),
            program: engine.clone(),
            arguments: args.iter().map(|a| a.to_string()).collect(),
            environment: environment(&spec.environment),
            stdin: spec.stdin.clone(),
            container: None,
        };
        workers.run(&run, control).await?
    };
    clean_up(workers, &engine, &spec.key, name, container.cleanup).await;
    // The engine's own failures (it could not pull the image, say) exit with 125.
    if output.code == Some(125) {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(std::io::Error::other(format!(
            "{engine} could not run {} as {name}: {}",
            container.image,
            said.trim()
        )));
    }
    Ok(output)
}

/// Removes the container `name` as `policy` says: now, after a while (a timer of this
/// process), or never.
async fn clean_up(workers: &Arc<Workers>, engine: &str, key: &str, name: &str, policy: Cleanup) {
    let after = match policy {
        Cleanup::Never => return,
        Cleanup::Always => std::time::Duration::ZERO,
        Cleanup::Eventually(after) => after,
    };
    let (workers, engine, key, name) = (
        workers.clone(),
        engine.to_string(),
        key.to_string(),
        name.to_string(),
    );
    let remove = async move {
        tokio::time::sleep(after).await;
        let cli = Cli {
            workers: &workers,
            engine: &engine,
            key: &key,
        };
        let _ = cli.quiet("rm", &["rm", "--force", &name]).await;
    };
    if after.is_zero() {
        remove.await;
    } else {
        tokio::spawn(remove);
    }
}

/// The arguments of `ENGINE run` for the container.
fn run_args(container: &ContainerSpec, spec: &ProcessSpec) -> Vec<String> {
    let mut args = vec![
        "run".to_string(),
        "--name".into(),
        container.name.clone(),
        "--pull".into(),
        container.pull.clone(),
    ];
    if spec.stdin.is_some() {
        args.push("--interactive".into());
    }
    let cleanup = match container.cleanup {
        Cleanup::Always => "always".to_string(),
        Cleanup::Never => "never".to_string(),
        Cleanup::Eventually(after) => format!("after-{}s", after.as_secs()),
    };
    let labels = container
        .labels
        .iter()
        .cloned()
        .chain([("dev.skein.cleanup".to_string(), cleanup)]);
    for (k, v) in labels {
        args.extend(["--label".into(), format!("{k}={v}")]);
    }
    // Values travel in the engine's environment, not on its command line.
    for (k, _) in &spec.environment {
        args.extend(["--env".into(), k.clone()]);
    }
    for (host, inside) in &container.ports {
        args.extend(["--publish".into(), format!("{host}:{inside}")]);
    }
    for (host, inside) in &container.volumes {
        args.extend(["--volume".into(), format!("{host}:{inside}")]);
    }
    if container.command.is_some() {
        args.extend(["--entrypoint".into(), "sh".into()]);
    }
    args.push(container.image.clone());
    if let Some(command) = &container.command {
        args.extend(["-c".into(), command.clone(), "sh".into()]);
    }
    args.extend(spec.arguments.iter().cloned());
    args
}

/// `container` (the container's environment), then the engine's own settings from
/// this process.
fn environment(container: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = container.to_vec();
    for name in ENGINE_ENV {
        if let Ok(value) = std::env::var(name)
            && !env.iter().any(|(k, _)| k == name)
        {
            env.push((name.to_string(), value));
        }
    }
    env
}

/// `podman` or `docker`, as the worker's `PATH` has them.
async fn find_engine(workers: &Arc<Workers>, spec: &ProcessSpec) -> std::io::Result<String> {
    let found = workers
        .run(
            &ProcessSpec {
                key: format!("{}#engine", spec.key),
                program: "sh".into(),
                arguments: vec!["-c".into(), "command -v podman || command -v docker".into()],
                environment: Vec::new(),
                stdin: None,
                container: None,
            },
            &quiet_control(),
        )
        .await?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    if found.code != Some(0) || path.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no container engine: neither podman nor docker is on the worker's PATH \
             (install one, or name it with --container-engine)",
        ));
    }
    Ok(path)
}

/// The engine's command line, run on the workers.
struct Cli<'a> {
    workers: &'a Arc<Workers>,
    engine: &'a str,
    key: &'a str,
}

impl Cli<'_> {
    /// Runs `ENGINE ARGS` under `control`, as step `what` of the container's work.
    async fn step(
        &self,
        what: &str,
        args: &[&str],
        control: &ProcessControl,
    ) -> std::io::Result<ProcessOutput> {
        let spec = ProcessSpec {
            key: format!("{}#{what}", self.key),
            program: self.engine.to_string(),
            arguments: args.iter().map(|a| a.to_string()).collect(),
            environment: environment(&[]),
            stdin: None,
            container: None,
        };
        self.workers.run(&spec, control).await
    }

    /// Runs `ENGINE ARGS` to its end, whatever happens to the task, its output kept
    /// out of the task's.
    async fn quiet(&self, what: &str, args: &[&str]) -> std::io::Result<ProcessOutput> {
        self.step(what, args, &quiet_control()).await
    }
}

/// A control that is never cancelled or paused and drops output pieces.
fn quiet_control() -> ProcessControl {
    ProcessControl {
        cancel: CancellationToken::new(),
        paused: tokio::sync::watch::channel(false).1,
        output: Arc::new(|_: &str, _: &str| {}),
    }
}
