//! The JSON the API reads and writes. Kept apart from the store's and the engine's
//! types, so that either can change without changing what clients see.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/executions`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The workflow definition, as YAML or JSON text (or give `workflowRef`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workflow: String,
    /// A named workflow to start instead of `workflow`: `name` for its latest revision,
    /// or `name@revision`.
    #[serde(
        default,
        rename = "workflowRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub workflow_ref: Option<String>,
    /// The workflow's input; `{}` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// A client-chosen id, which makes the start idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Names and values to find the execution by (`?label=name:value` in lists and
    /// streams).
    #[serde(default, skip_serializing_if = "store::Labels::is_empty")]
    pub labels: store::Labels,
}

/// `POST /v1/workflows`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// 1 to 64 letters, digits, `-` and `_`, starting with a letter.
    pub name: String,
    /// The definition, as YAML or JSON text, in either syntax.
    pub workflow: String,
}

/// A revision of a named workflow.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    pub name: String,
    pub revision: u64,
    /// `serverless-workflow` or `cloud-workflows`.
    pub syntax: String,
    /// When this revision was deployed (RFC 3339).
    pub created_at: String,
    /// The definition; absent in lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The numbers of all the workflow's revisions, newest first (`GET
    /// /v1/workflows/{name}` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<u64>,
}

impl Workflow {
    /// The wire form of a revision, with its definition or without.
    pub fn of(deployed: store::Deployed, with_definition: bool) -> Workflow {
        let syntax = gcw::Syntax::of_text(&deployed.definition);
        Workflow {
            name: deployed.name,
            revision: deployed.revision,
            syntax: syntax.name().to_string(),
            created_at: rfc3339(deployed.created_at),
            workflow: with_definition.then_some(deployed.definition),
            revisions: Vec::new(),
        }
    }
}

/// `GET /v1/workflows`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<Workflow>,
}

/// An execution, as `GET /v1/executions/{id}` and the other endpoints return it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub id: String,
    pub workflow: WorkflowRef,
    /// `pending`, `running`, `waiting`, `suspended`, `completed`, `faulted` or `cancelled`.
    pub status: String,
    pub input: Value,
    #[serde(default, skip_serializing_if = "store::Labels::is_empty")]
    pub labels: store::Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The DSL's error object (type, status, title, detail, instance) of a faulted run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
    /// Task counters and fan-out progress; in `GET /v1/executions/{id}` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub tasks: TaskCounts,
    /// The latest counters of each `for` fan-out (the `for.concurrency` extension):
    /// `{task, total, done, failed, running}`.
    pub fan_outs: Vec<Value>,
}

/// Tasks by what happened to them so far. A retried task counts once per attempt in
/// `started`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct TaskCounts {
    pub started: u64,
    pub completed: u64,
    pub faulted: u64,
    pub cancelled: u64,
    pub retries: u64,
    /// Started and not yet completed, faulted or cancelled.
    pub running: u64,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WorkflowRef {
    pub namespace: String,
    pub name: String,
    pub version: String,
}

/// `GET /v1/executions`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionList {
    pub executions: Vec<Execution>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /v1/executions/{id}/events`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Delivered {
    /// The event's position in the execution's inbox.
    pub position: u64,
}

/// `GET /v1/executions/{id}/queries/{name}`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct QueryAnswer {
    /// What the query's `data` computed from the execution's state now.
    pub result: serde_json::Value,
}

/// `POST /v1/executions/{id}/updates/{name}` and `GET …/updates/{name}/{update}`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct UpdateAnswer {
    /// The update's id (the request's `Idempotency-Key`, or one chosen for it).
    pub update: String,
    pub name: String,
    /// Whether a listener has handled it; if not, ask again later.
    pub handled: bool,
    /// Whether the listener's `acceptIf` accepted it (absent until handled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// The listener's answer (absent until handled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// The body of every 4xx and 5xx response.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Error {
    /// A stable code, such as `not_found` or `invalid_workflow`.
    pub error: String,
    pub message: String,
    /// For `invalid_workflow`: each problem, with its line, column and JSON pointer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    /// JSON pointer of the offending node.
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// `error` or `warning` (`POST /v1/validate`; errors elsewhere say none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

impl Diagnostic {
    /// `diagnostics` of `source`, with their lines and columns, in order.
    pub fn all(source: &str, diagnostics: &[dsl::Diagnostic]) -> Vec<Diagnostic> {
        let index = dsl::LineIndex::new(source);
        diagnostics
            .iter()
            .map(|d| {
                let (line, column) = index.line_col(source, d.range.start);
                Diagnostic {
                    line,
                    column,
                    path: d.path.clone(),
                    message: d.message.clone(),
                    help: d.help.clone(),
                    severity: Some(if d.is_error() { "error" } else { "warning" }.into()),
                }
            })
            .collect()
    }
}

impl From<store::Execution> for Execution {
    fn from(e: store::Execution) -> Execution {
        Execution {
            workflow: WorkflowRef {
                namespace: e.namespace,
                name: e.name,
                version: e.version,
            },
            status: e.status.as_str().to_string(),
            input: e.input,
            labels: e.labels,
            output: e.output,
            error: e.error,
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
            progress: None,
            id: e.id,
        }
    }
}

/// Milliseconds since the epoch as an RFC 3339 time (the number, if out of range).
pub(crate) fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}
