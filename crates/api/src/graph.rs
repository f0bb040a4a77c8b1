//! The workflow as a graph, for the dashboard: `GET /v1/executions/{id}/graph` draws
//! the program an execution runs, and `POST /v1/validate` checks a definition and draws
//! it. Both read the lowered program, so a Cloud Workflows document's step graph and a
//! Serverless Workflow document's task tree come out in one shape.
//!
//! Each node's `id` is its task's reference, the JSON pointer that the execution's
//! lifecycle events carry as `task`: a client colours the graph by matching the two.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use program::{FlowDirective, NamedTask, Process, TaskKind, TaskList};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{Caller, Role};
use crate::error::{ApiResult, too_large};
use crate::{ApiError, Service, definition_options, owned, wire};

/// A workflow drawn as nested lists of tasks.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    /// `serverless-workflow` or `cloud-workflows`.
    pub syntax: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The top-level tasks (Cloud Workflows: the steps of `main`).
    pub tasks: Vec<Node>,
    /// `use.functions` (Cloud Workflows: the subworkflows), each drawn the same way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<Branch>,
    /// The signals, queries and updates the workflow listens for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Message>,
    /// The input's JSON schema, when the document gives one inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
}

/// One task.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The task's reference: a JSON pointer into the document, as events name it.
    pub id: String,
    pub name: String,
    /// The DSL's keyword: `call`, `do`, `for`, `fork`, `try`, `switch`, `run`, `wait`, ….
    pub kind: String,
    /// A short description: the call's method and endpoint, the process, the loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Where the flow goes after this task, when not to the next one: `end`, `exit`,
    /// `break`, `continue`, or a task's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    /// A `switch`'s cases, each with where it leads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<Case>,
    /// The lists inside: a `do`'s tasks, a loop's body, a `fork`'s branches, a `try`'s
    /// tasks and its `catch`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub branches: Vec<Branch>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Branch {
    pub label: String,
    #[schema(no_recursion)]
    pub tasks: Vec<Node>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Case {
    pub name: String,
    /// The condition's text; absent for the default case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    pub then: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Message {
    /// `signal`, `query` or `update`.
    pub kind: String,
    pub name: String,
}

/// `POST /v1/validate`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// The definition, as YAML or JSON text, in either syntax.
    pub workflow: String,
}

/// What `POST /v1/validate` found.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validated {
    /// No errors (warnings may remain).
    pub valid: bool,
    /// Every problem, errors and warnings, with line, column and JSON pointer.
    pub diagnostics: Vec<wire::Diagnostic>,
    /// The workflow drawn, when it is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph: Option<Graph>,
}

/// `GET /v1/executions/{id}/graph`: the program the execution runs.
#[utoipa::path(get, path = "/v1/executions/{id}/graph", tag = "executions", params(("id" = String, Path)), responses((status = 200, description = "The execution's workflow as a graph; node ids are the task references its events carry", body = Graph), (status = 404, description = "No such execution in the caller's project", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
pub(crate) async fn execution_graph(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Graph>> {
    caller.require(Role::Read)?;
    let execution = owned(&service, &caller, &id).await?;
    let parsed = gcw::parse_any(&execution.definition, &definition_options(&service));
    let Some(program) = parsed.workflow else {
        // It was valid when it started; a server with other limits may read it otherwise.
        return Err(ApiError::internal(format!(
            "the definition of `{id}` no longer reads as a workflow on this server"
        )));
    };
    Ok(Json(graph(&program, &execution.definition)))
}

/// `POST /v1/validate`: checks a definition as a start would, and draws it.
#[utoipa::path(post, path = "/v1/validate", tag = "workflows", request_body = ValidateRequest, responses((status = 200, description = "The diagnostics, and the graph of a valid workflow", body = Validated), (status = 413, description = "Over the definition size limit", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error)))]
pub(crate) async fn validate(
    State(service): State<Arc<Service>>,
    caller: Caller,
    body: Result<Json<ValidateRequest>, JsonRejection>,
) -> ApiResult<Json<Validated>> {
    caller.require(Role::Read)?;
    let Json(request) = body?;
    let limit = service.options().max_definition_bytes;
    if request.workflow.len() > limit {
        return Err(too_large(
            "the workflow definition",
            request.workflow.len(),
            limit,
            "--max-definition-bytes",
        ));
    }
    let parsed = gcw::parse_any(&request.workflow, &definition_options(&service));
    let diagnostics = wire::Diagnostic::all(&request.workflow, &parsed.diagnostics);
    let graph = parsed
        .workflow
        .as_ref()
        .map(|program| graph(program, &request.workflow));
    Ok(Json(Validated {
        valid: graph.is_some(),
        diagnostics,
        graph,
    }))
}

/// Draws `program`, read from `source`.
pub fn graph(program: &program::Program, source: &str) -> Graph {
    let document = &program.document;
    let mut messages = Vec::new();
    let mut collect = |nt: &NamedTask| {
        if let TaskKind::Messages(m) = &nt.task.kind {
            for handler in &m.handlers {
                messages.push(Message {
                    kind: handler.kind.as_str().to_string(),
                    name: handler.name.clone(),
                });
            }
        }
    };
    program.do_.each(&mut collect);
    for function in program.use_.functions.values() {
        if let TaskKind::Do(list) = &function.kind {
            list.each(&mut collect);
        }
    }
    let input_schema = program
        .input
        .as_ref()
        .and_then(|input| input.schema.as_ref())
        .and_then(|schema| match &schema.source {
            program::SchemaSource::Inline(document) => Some(document.clone()),
            program::SchemaSource::Resource(_) => None,
        });
    Graph {
        syntax: gcw::Syntax::of_text(source).name().to_string(),
        name: document.name.clone(),
        title: document.title.clone(),
        summary: document.summary.clone(),
        tasks: nodes(&program.do_, &program.definition),
        functions: (program.use_.functions.iter())
            .map(|(name, task)| Branch {
                label: name.clone(),
                tasks: match &task.kind {
                    TaskKind::Do(list) => nodes(list, &program.definition),
                    _ => Vec::new(),
                },
            })
            .collect(),
        messages,
        input_schema,
    }
}

fn nodes(list: &TaskList, definition: &Value) -> Vec<Node> {
    list.tasks.iter().map(|nt| node(nt, definition)).collect()
}

fn node(nt: &NamedTask, definition: &Value) -> Node {
    let branch = |label: &str, list: &TaskList| Branch {
        label: label.to_string(),
        tasks: nodes(list, definition),
    };
    let source = definition.pointer(&nt.reference);
    let mut kind = nt.task.kind.keyword().to_string();
    let mut detail = None;
    let mut branches = Vec::new();
    let mut cases = Vec::new();
    match &nt.task.kind {
        TaskKind::Call(call) => {
            detail = Some(call_detail(call, source));
        }
        TaskKind::Do(list) => branches.push(branch("do", list)),
        TaskKind::For(f) => {
            detail = Some(format!("each {} in {}", f.each, f.in_.text().trim()));
            branches.push(branch("each", &f.do_));
        }
        TaskKind::Fork(f) => {
            if f.compete {
                detail = Some("compete: the first branch to finish wins".into());
            }
            for nt in &f.branches.tasks {
                branches.push(Branch {
                    label: nt.name.clone(),
                    tasks: vec![node(nt, definition)],
                });
            }
        }
        TaskKind::Try(t) => {
            branches.push(branch("try", &t.try_));
            let mut label = "catch".to_string();
            if let Some(errors) = t.catch.errors.as_ref().and_then(|e| e.type_.as_ref()) {
                label.push(' ');
                label.push_str(errors.rsplit('/').next().unwrap_or(errors));
            }
            if t.catch.retry.is_some() {
                label.push_str(" (retry)");
            }
            branches.push(Branch {
                label,
                tasks: t
                    .catch
                    .do_
                    .as_ref()
                    .map(|list| nodes(list, definition))
                    .unwrap_or_default(),
            });
        }
        TaskKind::Listen(l) => {
            if let Some(list) = l.foreach.as_ref().and_then(|e| e.do_.as_ref()) {
                branches.push(branch("foreach", list));
            }
        }
        TaskKind::Messages(m) => {
            kind = "messages".into();
            detail = Some(
                m.handlers
                    .iter()
                    .map(|h| format!("{} {}", h.kind.as_str(), h.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        TaskKind::Run(run) => {
            detail = Some(match &run.process {
                Process::Container(c) => format!("container {}", c.image),
                Process::Script(s) => format!("script ({})", s.language),
                Process::Shell(_) => source
                    .and_then(|s| s.pointer("/run/shell/command"))
                    .and_then(Value::as_str)
                    .map_or_else(
                        || "shell".to_string(),
                        |c| format!("shell: {}", first_line(c)),
                    ),
                Process::Workflow(w) => format!("workflow {}.{}", w.name, w.namespace),
            });
        }
        TaskKind::Switch(s) => {
            for case in &s.cases {
                cases.push(Case {
                    name: case.name.clone(),
                    when: case.when.as_ref().map(|w| w.text().trim().to_string()),
                    then: directive(&case.then).unwrap_or_else(|| "continue".into()),
                });
            }
        }
        TaskKind::Wait(duration) => {
            detail = Some(match duration {
                program::Duration::Fixed(d) => format!("{d:?}"),
                program::Duration::Expr(e) => e.text().trim().to_string(),
                program::Duration::Until(_) => "until a moment".into(),
            });
        }
        TaskKind::Raise(_) | TaskKind::Emit(_) | TaskKind::Set(_) => {}
    }
    Node {
        id: nt.reference.clone(),
        name: nt.name.clone(),
        kind,
        detail,
        then: directive(&nt.task.then),
        cases,
        branches,
    }
}

/// `call: http GET https://…`, from the program and, for what it keeps as templates,
/// the source.
fn call_detail(call: &program::Call, source: Option<&Value>) -> String {
    match call {
        program::Call::Http(http) => {
            let uri = match &http.endpoint.uri {
                program::Uri::Template(t) => t.as_str().to_string(),
                program::Uri::Expr(e) => e.text().trim().to_string(),
            };
            format!("http {} {uri}", http.method.to_uppercase())
        }
        program::Call::Function(f) => f.name.clone(),
        other => {
            let what = source
                .and_then(|s| s.get("with"))
                .and_then(|w| {
                    ["method", "operationId", "operation", "tool"]
                        .iter()
                        .find_map(|k| w.get(*k).and_then(Value::as_str))
                })
                .unwrap_or_default();
            format!("{} {what}", other.kind_name())
                .trim_end()
                .to_string()
        }
    }
}

fn directive(then: &FlowDirective) -> Option<String> {
    match then {
        FlowDirective::Continue => None,
        FlowDirective::Exit => Some("exit".into()),
        FlowDirective::End => Some("end".into()),
        FlowDirective::Goto(name) => Some(name.clone()),
        FlowDirective::Break => Some("break".into()),
        FlowDirective::NextIteration => Some("continue".into()),
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut line: String = line.trim().chars().take(80).collect();
    if text.trim().lines().count() > 1 {
        line.push_str(" …");
    }
    line
}
