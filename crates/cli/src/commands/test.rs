//! `skein test DIR|FILE...`: run feature files written in the grammar of the
//! Serverless Workflow conformance kit (CTK) and report each scenario.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use engine::events::Lifecycle;
use engine::{Engine, Outcome, SystemClock};
use serde_json::Value;
use store::Durability;
use store::sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

/// Run conformance scenarios: feature files in the Serverless Workflow CTK's Gherkin grammar.
///
/// Each scenario defines a workflow (`Given a workflow with definition:`), perhaps its
/// input, runs it (`When the workflow is executed`) and checks the outcome: completion,
/// fault or cancellation, output values and properties, and the order tasks ran in.
/// Every scenario runs on a fresh journal in a scratch directory.
///
/// The last line is `N passed, N failed`. Exit status: 0 if every scenario passed,
/// 1 if any failed, 2 on usage errors.
#[derive(ClapArgs)]
#[command(
    after_help = "Example, the spec's conformance kit (scripts/fetch-spec.sh puts it in spec/):\n  skein test spec/ctk/features \\\n    --map-host petstore.swagger.io=http://127.0.0.1:8080"
)]
pub(crate) struct Args {
    /// Feature files, or directories searched for `*.feature` files.
    #[arg(required = true, value_name = "DIR|FILE")]
    paths: Vec<PathBuf>,

    /// Send requests for HOST to URL instead (scheme, host and port), keeping path and query.
    /// Repeatable; lets scenarios that call public services run against local stand-ins.
    #[arg(long = "map-host", value_name = "HOST=URL", value_parser = super::map_host)]
    map_hosts: Vec<(String, url::Url)>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    super::block_on(async {
        match run_all(args).await {
            Ok((passed, failed)) => {
                println!("{passed} passed, {failed} failed");
                if failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("skein: {e:#}");
                ExitCode::from(2)
            }
        }
    })
}

async fn run_all(args: Args) -> Result<(usize, usize)> {
    let map = args.map_hosts.clone();
    let mut files = Vec::new();
    for path in &args.paths {
        collect(path, &mut files).with_context(|| format!("cannot read {}", path.display()))?;
    }
    if files.is_empty() {
        bail!(
            "no .feature files in {}",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let store = Arc::new(SqliteStore::open(
        &scratch.path().join("skein.db"),
        Durability::Process,
    )?);
    // `run` tasks go to a worker in this process, as with `skein run`; they are the
    // user's own, so they see this process's environment.
    let placement = super::workers_embedded(true).await?;
    let runtime = runtime::Runtime::new().with_workers(placement.workers.clone());
    let effects = Arc::new(runtime::HostMap::new(runtime, map));
    let engine = Engine::new(store, effects, Arc::new(SystemClock));

    let (mut passed, mut failed) = (0, 0);
    for file in files {
        let name = file.display().to_string();
        let feature = match gherkin::Feature::parse_path(&file, gherkin::GherkinEnv::default()) {
            Ok(f) => f,
            Err(e) => {
                println!("FAIL {name}: the feature file does not parse: {e}");
                failed += 1;
                continue;
            }
        };
        for scenario in &feature.scenarios {
            match run_scenario(&engine, scenario).await {
                Ok(()) => {
                    passed += 1;
                    println!("ok   {name}: {}", scenario.name);
                }
                Err(why) => {
                    failed += 1;
                    println!(
                        "FAIL {name}: {} (line {})\n     {why}",
                        scenario.name, scenario.position.line
                    );
                }
            }
        }
    }
    placement.shutdown().await;
    Ok((passed, failed))
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|e| e == "feature") {
                collect(&entry, files)?;
            }
        }
    } else {
        std::fs::metadata(path)?;
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// What a scenario has set up and seen so far.
#[derive(Default)]
struct State {
    definition: Option<String>,
    input: Option<Value>,
    id: Option<String>,
    outcome: Option<Outcome>,
    /// Names of the tasks in the order they started.
    started: Vec<String>,
}

async fn run_scenario(engine: &Engine, scenario: &gherkin::Scenario) -> Result<(), String> {
    let mut state = State::default();
    for step in &scenario.steps {
        let text = step.value.trim();
        let doc = step.docstring.as_deref().map(docstring);
        step_(engine, &mut state, text, doc.as_deref())
            .await
            .map_err(|e| {
                format!(
                    "step `{} {}` (line {}): {e}",
                    step.keyword.trim(),
                    text,
                    step.position.line
                )
            })?;
    }
    Ok(())
}

async fn step_(
    engine: &Engine,
    state: &mut State,
    text: &str,
    doc: Option<&str>,
) -> Result<(), String> {
    let need_doc = || doc.ok_or_else(|| "this step needs a doc string (\"\"\")".to_string());
    match text {
        "a workflow with definition:" => state.definition = Some(need_doc()?.to_string()),
        "given the workflow input is:" | "the workflow input is:" => {
            state.input = Some(yaml(need_doc()?)?)
        }
        "the workflow is executed" => execute(engine, state).await?,
        "the workflow should complete" => {
            completed(state)?;
        }
        "the workflow should complete with output:" => {
            let output = completed(state)?;
            let expected = yaml(need_doc()?)?;
            if output != &expected {
                return Err(format!("the output is {output}, expected {expected}"));
            }
        }
        "the workflow should fault" => {
            faulted(state)?;
        }
        "the workflow should fault with error:" => {
            let actual = serde_json::to_value(faulted(state)?).unwrap_or_default();
            let expected = yaml(need_doc()?)?;
            let Value::Object(expected) = expected else {
                return Err("the expected error must be a mapping".into());
            };
            for (field, value) in expected {
                if actual.get(&field) != Some(&value) {
                    return Err(format!(
                        "the error's `{field}` is {}, expected {value} (error: {actual})",
                        actual.get(&field).unwrap_or(&Value::Null)
                    ));
                }
            }
        }
        "the workflow should cancel" => match &state.outcome {
            Some(Outcome::Cancelled) => {}
            other => return Err(format!("expected a cancellation, got {other:?}")),
        },
        _ => other_step(state, text, doc)?,
    }
    Ok(())
}

/// The parameterized steps: output properties and task order.
fn other_step(state: &State, text: &str, doc: Option<&str>) -> Result<(), String> {
    if let Some(list) = text.strip_prefix("the workflow output should have properties ") {
        let output = completed(state)?;
        for path in quoted(list) {
            if lookup(output, &path).is_none() {
                return Err(format!("the output has no property `{path}`: {output}"));
            }
        }
        return Ok(());
    }
    if let Some(rest) = text.strip_prefix("the workflow output should have a ") {
        let output = completed(state)?;
        let path = quoted(rest)
            .into_iter()
            .next()
            .ok_or("expected a quoted property path")?;
        let value = lookup(output, &path)
            .ok_or_else(|| format!("the output has no property `{path}`: {output}"))?;
        if rest.ends_with("property with value:") {
            let expected = yaml(doc.ok_or("this step needs a doc string")?)?;
            if value != &expected {
                return Err(format!("`{path}` is {value}, expected {expected}"));
            }
            return Ok(());
        }
        if let Some(count) = rest
            .split("property containing ")
            .nth(1)
            .and_then(|r| r.strip_suffix(" items"))
        {
            let count: usize = count
                .trim()
                .parse()
                .map_err(|_| format!("`{count}` is not a count"))?;
            let len = value
                .as_array()
                .map(Vec::len)
                .ok_or_else(|| format!("`{path}` is not a list: {value}"))?;
            if len != count {
                return Err(format!("`{path}` has {len} items, expected {count}"));
            }
            return Ok(());
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let position = |name: &str| state.started.iter().position(|t| t == name);
    match words.as_slice() {
        [task, "should", "run", "first"] => {
            if state.started.first().map(String::as_str) != Some(task) {
                return Err(format!(
                    "the first task was {:?} (tasks ran: {:?})",
                    state.started.first(),
                    state.started
                ));
            }
        }
        [task, "should", "run", "last"] => {
            if state.started.last().map(String::as_str) != Some(task) {
                return Err(format!(
                    "the last task was {:?} (tasks ran: {:?})",
                    state.started.last(),
                    state.started
                ));
            }
        }
        [a, "should", "run", order @ ("after" | "before"), b] => {
            let (pa, pb) = (position(a), position(b));
            let (Some(pa), Some(pb)) = (pa, pb) else {
                return Err(format!(
                    "`{a}` or `{b}` did not run (tasks ran: {:?})",
                    state.started
                ));
            };
            let ok = if *order == "after" { pa > pb } else { pa < pb };
            if !ok {
                return Err(format!(
                    "`{a}` did not run {order} `{b}` (tasks ran: {:?})",
                    state.started
                ));
            }
        }
        _ => return Err("skein does not know this step".into()),
    }
    Ok(())
}

async fn execute(engine: &Engine, state: &mut State) -> Result<(), String> {
    let source = state
        .definition
        .as_deref()
        .ok_or("no workflow was defined before it was executed")?;
    let parsed = gcw::parse_any(source, &dsl::Options::default());
    let Some(workflow) = parsed.workflow else {
        return Err(format!(
            "the workflow does not validate:\n{}",
            dsl::diagnostic::render("definition", source, &parsed.diagnostics)
        ));
    };
    let input = state
        .input
        .clone()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let id = engine
        .create(source, &workflow, None, input)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = engine
        .run(
            &id,
            Value::Object(Default::default()),
            CancellationToken::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let events = engine
        .store()
        .events(&id, 0, usize::MAX >> 1)
        .await
        .map_err(|e| e.to_string())?;
    state.started = events
        .iter()
        .filter(|e| e.type_ == Lifecycle::TaskStarted.as_str())
        .filter_map(|e| {
            e.data.value()["task"]
                .as_str()
                .and_then(|t| t.rsplit('/').next())
                .map(str::to_string)
        })
        .collect();
    state.id = Some(id);
    state.outcome = Some(outcome);
    Ok(())
}

fn completed(state: &State) -> Result<&Value, String> {
    match &state.outcome {
        Some(Outcome::Completed(output)) => Ok(output),
        Some(other) => Err(format!("expected completion, got {}", describe(other))),
        None => Err("the workflow was not executed".into()),
    }
}

fn faulted(state: &State) -> Result<&expr::Problem, String> {
    match &state.outcome {
        Some(Outcome::Faulted(p)) => Ok(p),
        Some(other) => Err(format!("expected a fault, got {}", describe(other))),
        None => Err("the workflow was not executed".into()),
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Completed(v) => format!("completion with output {v}"),
        Outcome::Faulted(p) => format!("a fault: {}", serde_json::to_value(p).unwrap_or_default()),
        Outcome::Cancelled => "a cancellation".into(),
    }
}

/// A doc string without its content-type line, dedented.
fn docstring(raw: &str) -> String {
    let body = match raw.split_once('\n') {
        Some((first, rest)) if !first.contains(':') && !first.trim().is_empty() => rest,
        _ => raw,
    };
    let indent = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn yaml(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str_with_options(text, serde_saphyr::options! { strict_booleans: true })
        .map_err(|e| format!("the doc string is not valid YAML: {e}"))
}

/// The 'single quoted' items of a step, in order.
fn quoted(text: &str) -> Vec<String> {
    text.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A dotted property path (`request.headers`) in a value.
fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}
