//! Cataloged and remote functions: `call: name:version@catalog` (a catalog of
//! `use.catalogs`, or the runtime's `default` one) and `call: URL`. The function's
//! definition (`functions/{name}/{version}/function.yaml` under the catalog's root, the
//! raw file for a GitHub or GitLab repository) is fetched once per call and journaled,
//! so a resumed execution runs the definition it started with; it is then lowered like
//! any task and run under `{key}/call` with `with` as its input, which its
//! `input.schema` checks.

use program::{CallTarget, FunctionCall, NamedTask};
use serde_json::{Value, json};
use store::{Step, StepState};

use super::http::{authorization, configuration, endpoint_url};
use super::task::run_task;
use super::{Ctx, Res, TaskCx};
use crate::{HttpRequest, Interrupt};

/// Where the runtime's own catalog is read (`Effects::definition`).
pub(crate) const DEFAULT_CATALOG: &str = "skein-catalog:";

pub(crate) async fn call(
    cx: TaskCx<'_>,
    function: &FunctionCall,
    input: &Value,
    ctx: &mut Ctx,
) -> Res<Value> {
    let (run, at) = (cx.run, cx.at());
    let (url, auth) = {
        let vars = cx.vars(&ctx.value, input);
        location(run, &function.target, input, &vars, at)?
    };
    let what = format!("the function `{}`", function.name);
    let (url, text) = journaled_resource(cx, ctx, input, url, auth, "def", &what).await?;
    let definition = dsl::tree(&text, &dsl::Options::default())
        .map_err(|d| {
            configuration(
                at,
                "Invalid function definition",
                format!("{url}: {}", d.message),
            )
        })?
        .to_json();
    let task = lower(run, &definition, &url, at)?;
    let args = match &function.with {
        Some(with) => cx.eval(with, input, &ctx.value)?,
        None => input.clone(),
    };
    let callee = NamedTask {
        name: function.name.clone(),
        reference: url,
        task,
    };
    let stepped = run_task(
        run,
        &callee,
        format!("{}/call", cx.key),
        cx.scope,
        args,
        ctx,
    )
    .await?;
    Ok(stepped.output)
}

/// The text of a resource a task needs (a function's definition, a script): read
/// once, at `url` with `auth`, and journaled under `{key}/{suffix}`, so that a resumed
/// task goes on with what it started with. Returns where it came from and the text.
pub(super) async fn journaled_resource(
    cx: TaskCx<'_>,
    ctx: &mut Ctx,
    input: &Value,
    url: url::Url,
    auth: Option<&program::AuthRef>,
    suffix: &str,
    what: &str,
) -> Res<(String, String)> {
    let (run, at) = (cx.run, cx.at());
    let key = format!("{}/{suffix}", cx.key);
    if let Some(StepState::Completed { output, .. }) = run.replayed(&key) {
        let field = |f: &str| output[f].as_str().unwrap_or_default().to_string();
        return Ok((field("url"), field("text")));
    }
    let mut headers = vec![(
        "accept".to_string(),
        "application/yaml, application/json, text/plain, */*".to_string(),
    )];
    if let Some(auth) = auth {
        let vars = cx.vars(&ctx.value, input);
        let header = authorization(run, ctx.causal, auth, &url, input, &vars, at)
            .await?
            .header(at, "catalogs and external resources")?;
        headers.push(("authorization".into(), header));
    }
    let request = HttpRequest::get(url.clone(), headers, &run.project);
    run.barrier(ctx.causal).await?;
    let text = tokio::select! {
        r = run.effects.definition(request) => r,
        _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
    }
    .map_err(|e| {
        configuration(
            at,
            "Cannot load a resource",
            format!("{what} from {url}: {e}"),
        )
    })?;
    let url = url.to_string();
    let ticket = run.record(
        vec![Step {
            key,
            state: StepState::Completed {
                output: json!({"url": url, "text": text}),
                context: None,
            },
        }],
        vec![],
        None,
    );
    // What the task does with it leaves the process only once this is durable.
    ctx.advance(ticket);
    Ok((url, text))
}

/// The function's definition as a task: lowered inside a document of its own by the
/// engine's front-end, so it is checked like any task of a workflow.
fn lower(run: &crate::run::Run, definition: &Value, url: &str, at: &str) -> Res<program::Task> {
    let document = json!({
        "document": {
            "dsl": "1.0.3", "namespace": "catalog", "name": "function", "version": "0.0.0",
        },
        "do": [{"function": definition}],
    });
    let program = run
        .frontend
        .lower(&document.to_string())
        .map_err(|e| configuration(at, "Invalid function definition", format!("{url}: {e}")))?;
    program
        .do_
        .tasks
        .into_iter()
        .next()
        .map(|t| t.task)
        .ok_or_else(|| {
            configuration(
                at,
                "Invalid function definition",
                format!("{url} defines no task"),
            )
        })
}

/// The URL of the function's definition, and the authentication to read it with.
fn location<'r>(
    run: &'r crate::run::Run,
    target: &CallTarget,
    input: &Value,
    vars: &expr::Vars<'_>,
    at: &str,
) -> Res<(url::Url, Option<&'r program::AuthRef>)> {
    let invalid = |detail: String| configuration(at, "Invalid function reference", detail);
    match target {
        CallTarget::Uri(uri) => {
            let url = url::Url::parse(uri).map_err(|e| invalid(format!("`{uri}`: {e}")))?;
            Ok((raw(url), None))
        }
        CallTarget::Catalog {
            function,
            version,
            catalog,
        } => {
            let segment = |s: &str| {
                !s.is_empty() && !s.contains(['/', '\\', '?', '#']) && s != "." && s != ".."
            };
            if !segment(function) || !segment(version) {
                return Err(invalid(format!(
                    "`{function}:{version}` does not name a function of a catalog"
                )));
            }
            let path = format!("functions/{function}/{version}/function.yaml");
            let Some(declared) = run.wf.use_.catalogs.get(catalog) else {
                // Only `default` gets here undeclared (the decoder checks the others).
                let url = url::Url::parse(&format!("{DEFAULT_CATALOG}{path}"))
                    .map_err(|e| invalid(e.to_string()))?;
                return Ok((url, None));
            };
            let mut root = raw(endpoint_url(&declared.endpoint.uri, input, vars, at)?);
            if !root.path().ends_with('/') {
                root.set_path(&format!("{}/", root.path()));
            }
            let url = root
                .join(&path)
                .map_err(|e| invalid(format!("{root}{path}: {e}")))?;
            Ok((url, declared.endpoint.authentication.as_ref()))
        }
        CallTarget::Use(_) => unreachable!("functions of use.functions are called in place"),
    }
}

/// The raw file of a GitHub or GitLab page (`https://github.com/o/r/tree/main/x` →
/// `https://raw.githubusercontent.com/o/r/refs/heads/main/x`; a repository without a
/// branch is its `main`), as the spec asks of catalogs hosted there; other URLs as
/// they are.
fn raw(url: url::Url) -> url::Url {
    let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    let rewritten = match url.host_str() {
        Some("github.com") => match segments.as_slice() {
            [owner, repo, "tree" | "blob", reference, rest @ ..] => Some(format!(
                "https://raw.githubusercontent.com/{owner}/{repo}/refs/heads/{reference}/{}",
                rest.join("/")
            )),
            [owner, repo] | [owner, repo, ""] => Some(format!(
                "https://raw.githubusercontent.com/{owner}/{repo}/refs/heads/main/"
            )),
            _ => None,
        },
        Some("gitlab.com") => {
            let at = segments.iter().position(|s| *s == "-");
            match at.map(|i| (&segments[..i], &segments[i + 1..])) {
                Some((project, ["tree" | "blob", reference, rest @ ..])) => Some(format!(
                    "https://gitlab.com/{}/-/raw/{reference}/{}",
                    project.join("/"),
                    rest.join("/")
                )),
                _ => None,
            }
        }
        _ => None,
    };
    rewritten
        .and_then(|r| url::Url::parse(&r).ok())
        .unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::raw;

    #[test]
    fn repository_pages_become_raw_files() {
        let r = |u: &str| raw(url::Url::parse(u).unwrap()).to_string();
        assert_eq!(
            r("https://github.com/serverlessworkflow/catalog/tree/main"),
            "https://raw.githubusercontent.com/serverlessworkflow/catalog/refs/heads/main/"
        );
        assert_eq!(
            r(
                "https://github.com/serverlessworkflow/catalog/tree/main/functions/log/1.0.0/function.yaml"
            ),
            "https://raw.githubusercontent.com/serverlessworkflow/catalog/refs/heads/main/functions/log/1.0.0/function.yaml"
        );
        assert_eq!(
            r("https://github.com/serverlessworkflow/catalog"),
            "https://raw.githubusercontent.com/serverlessworkflow/catalog/refs/heads/main/"
        );
        assert_eq!(
            r("https://gitlab.com/group/sub/catalog/-/tree/v2"),
            "https://gitlab.com/group/sub/catalog/-/raw/v2/"
        );
        assert_eq!(
            r("https://catalog.example.com/root"),
            "https://catalog.example.com/root"
        );
    }
}
