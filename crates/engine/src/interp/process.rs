//! `run.shell`, `run.script` and `run.container`: the process (or container) a task
//! asks for, handed to [`crate::Effects::process`] under the run's cancel token and
//! pause flag, with its output journaled as it comes and its use recorded for cost. The
//! process's key is the task's idempotency key, `{execution}:{key}`; a container is
//! named after it.

use std::sync::Arc;

use expr::{Problem, Template, types};
use program::{Process, ProcessReturn, Run as RunTask, ScriptSource};
use serde_json::{Value, json};
use store::{Json, Ticket};

use super::data::{eval, not_supported, plain_string, text};
use super::{Ctx, Res, TaskCx};
use crate::events::Lifecycle;
use crate::{Interrupt, ProcessSpec};

/// Runs a `run.shell` or `run.script` task.
pub(super) async fn run_process(
    cx: TaskCx<'_>,
    how: &RunTask,
    input: &Value,
    ctx: &mut Ctx,
) -> Res<Value> {
    let at = cx.at();
    // A script from an external resource is read (and journaled) first.
    let fetched = match &how.process {
        Process::Script(script) => match &script.source {
            ScriptSource::External(resource) => {
                let url = {
                    let vars = cx.vars(&ctx.value, input);
                    super::http::endpoint_url(&resource.endpoint.uri, input, &vars, at)?
                };
                let auth = resource.endpoint.authentication.as_ref();
                let what = "the script";
                let resource =
                    super::catalog::journaled_resource(cx, ctx, input, url, auth, "source", what);
                Some(resource.await?.1)
            }
            ScriptSource::Code(_) => None,
        },
        _ => None,
    };
    let vars = cx.vars(&ctx.value, input);
    // The program with its leading arguments, then the task's own arguments,
    // environment and stdin.
    let (command, extra) = match &how.process {
        Process::Shell(shell) => {
            let command = text(&shell.command, input, &vars, at)?;
            (
                (
                    "sh".to_string(),
                    vec!["-c".to_string(), command, "sh".to_string()],
                ),
                (
                    shell.arguments.as_slice(),
                    shell.environment.as_ref(),
                    shell.stdin.as_ref(),
                ),
            )
        }
        Process::Script(script) => {
            let code = match (&script.source, &fetched) {
                (ScriptSource::Code(code), _) => code,
                (ScriptSource::External(_), Some(text)) => text,
                (ScriptSource::External(_), None) => unreachable!("fetched above"),
            };
            // The code is passed on the command line, so the engine writes no file.
            let command = match script.language.to_ascii_lowercase().as_str() {
                "python" | "python3" => {
                    ("python3".to_string(), vec!["-c".to_string(), code.clone()])
                }
                "js" | "javascript" | "node" => {
                    let mut args = Vec::new();
                    if code.lines().any(|l| l.trim_start().starts_with("import ")) {
                        args.push("--input-type=module".to_string());
                    }
                    // `skein` stands where a script's path would, so arguments start at argv[2].
                    args.extend(["-e".to_string(), code.clone(), "skein".to_string()]);
                    ("node".to_string(), args)
                }
                other => {
                    return Err(not_supported(
                        at,
                        &format!("scripts in `{other}` (only python and js)"),
                    ));
                }
            };
            (
                command,
                (
                    script.arguments.as_slice(),
                    script.environment.as_ref(),
                    script.stdin.as_ref(),
                ),
            )
        }
        Process::Container(container) => {
            let mut spec = process_spec(
                (String::new(), Vec::new()),
                (
                    container.arguments.as_slice(),
                    container.environment.as_ref(),
                    container.stdin.as_ref(),
                ),
                input,
                &vars,
                at,
            )?;
            spec.container = Some(Box::new(container_spec(container, input, &vars, at)?));
            return process(cx, ctx.causal, spec, how, input).await;
        }
        Process::Workflow(_) => unreachable!("workflows are not processes"),
    };
    let spec = process_spec(command, extra, input, &vars, at)?;
    process(cx, ctx.causal, spec, how, input).await
}

/// Starts the process `spec` once the path's history (`after`) is durable, and, when
/// the task awaits it, turns its end into the task's output as `return` says.
async fn process(
    cx: TaskCx<'_>,
    after: Ticket,
    mut spec: ProcessSpec,
    how: &RunTask,
    input: &Value,
) -> Res<Value> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    let (return_, await_) = (how.return_, how.await_);
    run.barrier(after).await?;
    spec.key = format!("{}:{key}", run.id);
    let spec_key = spec.key.clone();
    if let Some(container) = &mut spec.container {
        if container.name.is_empty() {
            container.name = container_name(&spec_key);
        }
        container.labels.extend([
            ("dev.skein.execution".to_string(), run.id.clone()),
            ("dev.skein.step".to_string(), key.to_string()),
        ]);
    }
    let cancel = run.cancel.child_token();
    // Output is journaled as it comes, as events that nothing waits for.
    let sink: crate::OutputSink = {
        let (run, task) = (run.clone(), at.to_string());
        Arc::new(move |stream: &str, text: &str| {
            let data = json!({
                "workflow": run.qualified_name, "task": task, "stream": stream, "text": text,
            });
            run.record(
                vec![],
                vec![(Lifecycle::TaskOutput.as_str(), Json::of(&data))],
                None,
            );
        })
    };
    let control = crate::ProcessControl {
        cancel,
        paused: run.paused.clone(),
        output: sink,
    };
    if !await_ {
        let effects = run.effects.clone();
        let task = async move {
            let _ = effects.process(spec, control).await;
        };
        // In the task's span still, so that the worker joins the trace.
        tokio::spawn(tracing::Instrument::in_current_span(task));
        return Ok(input.clone());
    }
    let out = run
        .effects
        .process(spec, control)
        .await
        .map_err(|e| Problem {
            type_: types::RUNTIME.into(),
            status: 500,
            title: Some("The process could not start".into()),
            detail: Some(e.to_string()),
            instance: Some(at.to_string()),
            data: None,
        })?;
    // Every attempt's use is recorded, the failed ones too: cost counts them all.
    if let Some(usage) = out.usage {
        run.record_usage(at, &spec_key, json!(out.code), usage);
    }
    if run.cancel.is_cancelled() {
        return Err(Interrupt::Cancelled);
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let failed = out.code != Some(0);
    if failed
        && matches!(
            return_,
            ProcessReturn::Stdout | ProcessReturn::Stderr | ProcessReturn::None
        )
    {
        let how = out.code.map_or_else(
            || "was killed by a signal".to_string(),
            |c| format!("exited with code {c}"),
        );
        let tail: String = stderr
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Interrupt::Fault(Problem {
            type_: types::RUNTIME.into(),
            status: 500,
            title: Some(format!("The process {how}")),
            detail: Some(if tail.is_empty() {
                "no output on stderr".into()
            } else {
                tail
            }),
            instance: Some(at.to_string()),
            data: None,
        }));
    }
    Ok(match return_ {
        ProcessReturn::Stdout => Value::String(stdout),
        ProcessReturn::Stderr => Value::String(stderr),
        ProcessReturn::Code => json!(out.code),
        ProcessReturn::All => json!({"code": out.code, "stdout": stdout, "stderr": stderr}),
        ProcessReturn::None => Value::Null,
    })
}

/// What a `run.container` task asks of the container engine, evaluated; the name is
/// left empty when the task gives none (`process` makes one from the step key).
fn container_spec(
    container: &program::Container,
    input: &Value,
    vars: &expr::Vars,
    at: &str,
) -> Res<crate::ContainerSpec> {
    let pairs = |map: Option<&Value>| -> Vec<(String, String)> {
        map.and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), plain_string(v)))
            .collect()
    };
    let cleanup = match &container.lifetime {
        None | Some(program::ContainerLifetime::Never) => crate::Cleanup::Never,
        Some(program::ContainerLifetime::Always) => crate::Cleanup::Always,
        Some(program::ContainerLifetime::Eventually(after)) => {
            let ms = super::timers::duration_ms(after, input, vars, at)?;
            crate::Cleanup::Eventually(std::time::Duration::from_millis(ms.max(0) as u64))
        }
    };
    Ok(crate::ContainerSpec {
        image: container.image.clone(),
        name: match &container.name {
            Some(name) => text(name, input, vars, at)?,
            None => String::new(),
        },
        command: container
            .command
            .as_ref()
            .map(|c| text(c, input, vars, at))
            .transpose()?,
        ports: pairs(container.ports.as_ref()),
        volumes: pairs(container.volumes.as_ref()),
        pull: match container.pull_policy {
            program::PullPolicy::IfNotPresent => "missing",
            program::PullPolicy::Always => "always",
            program::PullPolicy::Never => "never",
        }
        .to_string(),
        cleanup,
        labels: Vec::new(),
    })
}

/// The name of the container of step `{execution}:{key}`: the same for every run of
/// that attempt, and a valid container name whatever the key holds.
fn container_name(spec_key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spec_key.as_bytes());
    let hex: String = digest.as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("skein-{hex}")
}

/// A process to start: `program` and its leading arguments, then the task's own
/// arguments, environment and stdin, evaluated.
fn process_spec(
    (program, mut arguments): (String, Vec<String>),
    (extra, env, stdin): (&[Template], Option<&Template>, Option<&Template>),
    input: &Value,
    vars: &expr::Vars,
    at: &str,
) -> Res<ProcessSpec> {
    for arg in extra {
        arguments.push(text(arg, input, vars, at)?);
    }
    Ok(ProcessSpec {
        key: String::new(),
        program,
        arguments,
        environment: environment(env, input, vars, at)?,
        stdin: stdin
            .map(|s| text(s, input, vars, at).map(String::into_bytes))
            .transpose()?,
        container: None,
    })
}

fn environment(
    env: Option<&Template>,
    input: &Value,
    vars: &expr::Vars,
    at: &str,
) -> Res<Vec<(String, String)>> {
    let Some(env) = env else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = eval(env, input, vars, at)? else {
        return Ok(Vec::new());
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, plain_string(&v)))
        .collect())
}
